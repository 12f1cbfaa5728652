/*
 * metrics.c - Prometheus text exposition (format 0.0.4).
 *
 * Two kinds of series:
 *   - registered ones (core and modules, at init on the main thread):
 *     counters and gauges are one atomic int64, gauge functions are read at
 *     scrape time, histograms are atomic bucket counters with the sum kept
 *     as atomic integer microseconds (no atomic double in C11);
 *   - per-request HTTP series, found at run time by (route, method). They
 *     live in a fixed open-addressing table whose slots are filled with one
 *     compare-and-swap on first sight, so many workers can meet a new route
 *     at once without any lock; a status is an index into a per-series
 *     array of counters (100..599), so no new series is ever created for it.
 * Families render their HELP/TYPE lines once, series in registration order.
 *
 * Reads no config key, owns no thread. Registration: main thread only (the
 * family list is not locked). Updates and rendering: any thread, lock-free.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* Upper bounds in microseconds: 0.001 .. 10 s, plus +Inf as the last slot. */
static const int64_t bucket_us[] = {1000,   2500,   5000,    10000,   25000,   50000,  100000,
                                    250000, 500000, 1000000, 2500000, 5000000, 10000000};
static const char *const bucket_le[] = {"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
                                        "0.25",  "0.5",    "1",     "2.5",  "5",     "10"};
#define N_BUCKETS (sizeof bucket_us / sizeof bucket_us[0])

#define HTTP_SLOTS 1024      /* (route, method) pairs; routes x methods stays far below */
#define STATUS_MIN 100
#define STATUS_MAX 599

typedef struct histogram {
    atomic_llong buckets[N_BUCKETS + 1]; /* not cumulative; last = above 10 s */
    atomic_llong sum_us;
} histogram;

struct od_metric {
    uint32_t type;
    char *labels;              /* "" when none */
    atomic_llong value;        /* counter, gauge */
    histogram *hist;           /* histogram only */
    od_gauge_fn fn;            /* gauge function only */
    void *fn_arg;
    struct od_metric *next;    /* next series of the same family */
};

typedef struct family {
    char *name, *help;
    uint32_t type;
    od_metric *first, *last;
    struct family *next;
} family;

typedef struct http_series {
    char *route;
    char method[8];
    atomic_llong status[STATUS_MAX - STATUS_MIN + 1];
    histogram duration;
} http_series;

struct od_metrics {
    family *families, *last_family;
    _Atomic(http_series *) http[HTTP_SLOTS];
    atomic_llong http_dropped; /* table full: should never happen, but visible if it does */
};

od_metrics *od_metrics_new(void)
{
    return calloc(1, sizeof(od_metrics));
}

static void metric_free(od_metric *s)
{
    free(s->labels);
    free(s->hist);
    free(s);
}

void od_metrics_free(od_metrics *m)
{
    if (!m)
        return;
    for (family *f = m->families, *fn; f; f = fn) {
        fn = f->next;
        for (od_metric *s = f->first, *sn; s; s = sn) {
            sn = s->next;
            metric_free(s);
        }
        free(f->name);
        free(f->help);
        free(f);
    }
    for (size_t i = 0; i < HTTP_SLOTS; i++) {
        http_series *h = atomic_load(&m->http[i]);
        if (h) {
            free(h->route);
            free(h);
        }
    }
    free(m);
}

/* ---- registration (main thread) --------------------------------------- */

static int is_name_char(char c, int first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

static int valid_name(const char *s)
{
    if (!s || !*s)
        return 0;
    for (size_t i = 0; s[i]; i++)
        if (!is_name_char(s[i], i == 0))
            return 0;
    return 1;
}

/* name="value"(,name="value")* with \\ \" \n escapes inside values. */
static int valid_labels(const char *s)
{
    if (!*s)
        return 1;
    for (;;) {
        if (!is_name_char(*s, 1) || *s == ':')
            return 0;
        while (is_name_char(*s, 0) && *s != ':')
            s++;
        if (s[0] != '=' || s[1] != '"')
            return 0;
        for (s += 2; *s != '"'; s++) {
            if (*s == '\0' || *s == '\n')
                return 0;
            if (*s == '\\' && (s[1] == '\\' || s[1] == '"' || s[1] == 'n'))
                s++;
            else if (*s == '\\')
                return 0;
        }
        s++;
        if (*s == '\0')
            return 1;
        if (*s++ != ',')
            return 0;
    }
}

static family *find_family(od_metrics *m, const char *name)
{
    for (family *f = m->families; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static family *add_family(od_metrics *m, uint32_t type, const char *name, const char *help)
{
    family *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    if (!f->name || !f->help) {
        free(f->name);
        free(f->help);
        free(f);
        return NULL;
    }
    f->type = type;
    if (m->last_family)
        m->last_family->next = f;
    else
        m->families = f;
    m->last_family = f;
    return f;
}

/* Finds or creates the series; *created tells which. NULL on a bad name,
 * labels or type clash (logged) or OOM. */
static od_metric *series_for(od_metrics *m, uint32_t type, const char *name, const char *help,
                             const char *labels, int *created)
{
    *created = 0;
    labels = labels ? labels : "";
    if (!m || type < OD_METRIC_COUNTER || type > OD_METRIC_HISTOGRAM || !valid_name(name) ||
        !valid_labels(labels)) {
        od_logf("core", OD_LOG_ERROR, "metric %s: invalid name, type or labels \"%s\"",
                name ? name : "(null)", labels);
        return NULL;
    }
    family *f = find_family(m, name);
    if (f && f->type != type) {
        od_logf("core", OD_LOG_ERROR, "metric %s: registered again with another type", name);
        return NULL;
    }
    if (f)
        for (od_metric *s = f->first; s; s = s->next)
            if (strcmp(s->labels, labels) == 0)
                return s;
    if (!f && !(f = add_family(m, type, name, help)))
        return NULL;
    od_metric *s = calloc(1, sizeof *s);
    if (!s || !(s->labels = strdup(labels)) ||
        (type == OD_METRIC_HISTOGRAM && !(s->hist = calloc(1, sizeof *s->hist)))) {
        if (s)
            metric_free(s);
        return NULL;
    }
    s->type = type;
    if (f->last)
        f->last->next = s;
    else
        f->first = s;
    f->last = s;
    *created = 1;
    return s;
}

od_metric *od_metrics_register(od_metrics *m, uint32_t type, const char *name, const char *help,
                               const char *labels)
{
    int created;
    od_metric *s = series_for(m, type, name, help, labels, &created);
    if (s && s->fn) {
        od_logf("core", OD_LOG_ERROR, "metric %s: already registered as a gauge function", name);
        return NULL;
    }
    return s;
}

od_status od_metrics_gauge_fn(od_metrics *m, const char *name, const char *help,
                              const char *labels, od_gauge_fn fn, void *arg)
{
    if (!fn)
        return OD_ERR_INVALID;
    int created;
    od_metric *s = series_for(m, OD_METRIC_GAUGE, name, help, labels, &created);
    if (!s)
        return OD_ERR_INVALID;
    if (!created)
        return OD_ERR_EXISTS;
    s->fn = fn;
    s->fn_arg = arg;
    return OD_OK;
}

/* ---- updates (any thread) --------------------------------------------- */

void od_metric_add(od_metric *metric, int64_t delta)
{
    if (metric && metric->type != OD_METRIC_HISTOGRAM)
        atomic_fetch_add_explicit(&metric->value, delta, memory_order_relaxed);
}

void od_metric_set(od_metric *metric, int64_t value)
{
    if (metric && metric->type == OD_METRIC_GAUGE)
        atomic_store_explicit(&metric->value, value, memory_order_relaxed);
}

static void histogram_observe(histogram *h, double seconds)
{
    if (!(seconds >= 0)) /* NaN or negative: a clock step, not a measurement */
        seconds = 0;
    if (seconds > 1e9)
        seconds = 1e9;
    int64_t us = (int64_t)(seconds * 1e6 + 0.5);
    size_t i = 0;
    while (i < N_BUCKETS && us > bucket_us[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

void od_metric_observe(od_metric *metric, double value)
{
    if (metric && metric->type == OD_METRIC_HISTOGRAM)
        histogram_observe(metric->hist, value);
}

/* Methods come from clients: anything unknown is folded into "OTHER" so a
 * client cannot create series at will. */
static const char *canonical_method(const char *method)
{
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(method, known[i]) == 0)
            return known[i];
    return "OTHER";
}

static size_t http_hash(const char *route, const char *method)
{
    size_t h = 1469598103934665603u; /* FNV-1a */
    for (const char *p = route; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211u;
    for (const char *p = method; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211u;
    return h;
}

static int http_series_is(const http_series *h, const char *route, const char *method)
{
    return strcmp(h->method, method) == 0 && strcmp(h->route, route) == 0;
}

static http_series *http_series_new(const char *route, const char *method)
{
    http_series *h = calloc(1, sizeof *h);
    if (h && !(h->route = strdup(route))) {
        free(h);
        return NULL;
    }
    if (h)
        snprintf(h->method, sizeof h->method, "%s", method);
    return h;
}

/* Lock-free find-or-insert: probe; an empty slot is claimed with CAS. A
 * loser of the race frees its copy and re-reads the slot, which may hold
 * the very series it wanted. */
static http_series *http_series_get(od_metrics *m, const char *route, const char *method)
{
    size_t start = http_hash(route, method) % HTTP_SLOTS;
    http_series *mine = NULL;
    for (size_t n = 0; n < HTTP_SLOTS; n++) {
        _Atomic(http_series *) *slot = &m->http[(start + n) % HTTP_SLOTS];
        http_series *cur = atomic_load_explicit(slot, memory_order_acquire);
        if (!cur) {
            if (!mine && !(mine = http_series_new(route, method)))
                return NULL;
            if (atomic_compare_exchange_strong_explicit(slot, &cur, mine, memory_order_acq_rel,
                                                        memory_order_acquire))
                return mine;
        }
        if (http_series_is(cur, route, method)) {
            if (mine) {
                free(mine->route);
                free(mine);
            }
            return cur;
        }
    }
    if (mine) {
        free(mine->route);
        free(mine);
    }
    return NULL;
}

void od_metrics_http(od_metrics *m, const char *route, const char *method, int status,
                     double seconds)
{
    if (!m)
        return;
    http_series *h = http_series_get(m, route ? route : "unmatched", canonical_method(method));
    if (!h) {
        atomic_fetch_add_explicit(&m->http_dropped, 1, memory_order_relaxed);
        return;
    }
    if (status < STATUS_MIN || status > STATUS_MAX)
        status = 500;
    atomic_fetch_add_explicit(&h->status[status - STATUS_MIN], 1, memory_order_relaxed);
    histogram_observe(&h->duration, seconds);
}

/* ---- rendering (any thread) ------------------------------------------- */

typedef struct out_buf {
    char *p;
    size_t len, cap;
    int oom;
} out_buf;

static void out_reserve(out_buf *b, size_t n)
{
    if (b->oom || b->len + n + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (b->len + n + 1 > cap)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void out_printf(out_buf *b, const char *fmt, ...) OD_PRINTF(2, 3);
static void out_printf(out_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    out_reserve(b, (size_t)n);
    if (b->oom)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* HELP text escapes only backslash and newline (format 0.0.4). */
static void out_help(out_buf *b, const char *name, const char *help, uint32_t type)
{
    static const char *const types[] = {"", "counter", "gauge", "histogram"};
    out_printf(b, "# HELP %s ", name);
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            out_printf(b, "\\\\");
        else if (*p == '\n')
            out_printf(b, "\\n");
        else
            out_printf(b, "%c", *p);
    }
    out_printf(b, "\n# TYPE %s %s\n", name, types[type]);
}

/* Label value escaping: backslash, quote, newline. */
static void out_label_value(out_buf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            out_printf(b, "\\%c", *v);
        else if (*v == '\n')
            out_printf(b, "\\n");
        else
            out_printf(b, "%c", *v);
    }
}

/* labels: the series' own (may be ""), extra: one more pair or "". */
static void out_series(out_buf *b, const char *name, const char *suffix, const char *labels,
                       const char *extra, const char *value)
{
    const char *sep = *labels && *extra ? "," : "";
    if (*labels || *extra)
        out_printf(b, "%s%s{%s%s%s} %s\n", name, suffix, labels, sep, extra, value);
    else
        out_printf(b, "%s%s %s\n", name, suffix, value);
}

static void out_histogram(out_buf *b, const char *name, const char *labels, histogram *h)
{
    char extra[32], value[32];
    long long cumulative = 0;
    for (size_t i = 0; i <= N_BUCKETS; i++) {
        cumulative += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        snprintf(extra, sizeof extra, "le=\"%s\"", i < N_BUCKETS ? bucket_le[i] : "+Inf");
        snprintf(value, sizeof value, "%lld", cumulative);
        out_series(b, name, "_bucket", labels, extra, value);
    }
    long long us = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
    snprintf(value, sizeof value, "%lld.%06lld", us / 1000000, us % 1000000);
    out_series(b, name, "_sum", labels, "", value);
    /* _count equals the +Inf bucket: read once, so the two always agree. */
    snprintf(value, sizeof value, "%lld", cumulative);
    out_series(b, name, "_count", labels, "", value);
}

static void render_family(out_buf *b, const family *f)
{
    out_help(b, f->name, f->help, f->type);
    for (od_metric *s = f->first; s; s = s->next) {
        if (s->type == OD_METRIC_HISTOGRAM) {
            out_histogram(b, f->name, s->labels, s->hist);
            continue;
        }
        long long v = s->fn ? (long long)s->fn(s->fn_arg)
                            : atomic_load_explicit(&s->value, memory_order_relaxed);
        char value[32];
        snprintf(value, sizeof value, "%lld", v);
        out_series(b, f->name, "", s->labels, "", value);
    }
}

/* route="...",method="..." with the route escaped. */
static void http_labels(char *out, size_t cap, const http_series *h)
{
    out_buf lb = {0};
    out_label_value(&lb, h->route);
    snprintf(out, cap, "route=\"%s\",method=\"%s\"", lb.p ? lb.p : "", h->method);
    free(lb.p);
}

static void render_http(out_buf *b, od_metrics *m)
{
    static const char requests[] = "orderd_http_requests_total";
    static const char duration[] = "orderd_http_request_duration_seconds";
    char labels[600], value[32], status[24];
    out_help(b, requests, "HTTP requests by route pattern, method and status.", OD_METRIC_COUNTER);
    for (size_t i = 0; i < HTTP_SLOTS; i++) {
        http_series *h = atomic_load_explicit(&m->http[i], memory_order_acquire);
        if (!h)
            continue;
        http_labels(labels, sizeof labels, h);
        for (int s = 0; s <= STATUS_MAX - STATUS_MIN; s++) {
            long long n = atomic_load_explicit(&h->status[s], memory_order_relaxed);
            if (n == 0)
                continue;
            snprintf(status, sizeof status, "status=\"%d\"", s + STATUS_MIN);
            snprintf(value, sizeof value, "%lld", n);
            out_series(b, requests, "", labels, status, value);
        }
    }
    out_help(b, duration, "HTTP request duration by route pattern and method, in seconds.",
             OD_METRIC_HISTOGRAM);
    for (size_t i = 0; i < HTTP_SLOTS; i++) {
        http_series *h = atomic_load_explicit(&m->http[i], memory_order_acquire);
        if (!h)
            continue;
        http_labels(labels, sizeof labels, h);
        out_histogram(b, duration, labels, &h->duration);
    }
    long long dropped = atomic_load_explicit(&m->http_dropped, memory_order_relaxed);
    if (dropped) { /* only when the table overflowed: rendered so it is noticed */
        out_help(b, "orderd_http_metrics_dropped_total",
                 "HTTP requests not counted because the series table was full.",
                 OD_METRIC_COUNTER);
        out_printf(b, "orderd_http_metrics_dropped_total %lld\n", dropped);
    }
}

char *od_metrics_render(od_metrics *m, size_t *len)
{
    out_buf b = {0};
    out_reserve(&b, 4096);
    for (const family *f = m->families; f; f = f->next)
        render_family(&b, f);
    render_http(&b, m);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    b.p[b.len] = '\0';
    if (len)
        *len = b.len;
    return b.p;
}
