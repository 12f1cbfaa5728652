/*
 * tests/mock_host.c - the host API without the core, for module unit tests.
 *
 * Everything is kept in simple arrays: tests register a handful of routes,
 * config keys and metrics. The log, metric and utility members take a mutex
 * or are atomic, so modules may be driven from many threads; set-up calls
 * (mock_config_set_*, mock_set_storage, ...) are single-threaded.
 */
#include "mock_host.h"

#include <dlfcn.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MOCK_MAX 64

enum { CFG_STRING, CFG_INT, CFG_BOOL, CFG_STRINGS };

typedef struct mock_cfg {
    char *key;
    int type;
    char *str;
    int64_t num;
    char **strs;
    size_t n;
} mock_cfg;

struct od_module {
    char *group;
    mock_cfg cfg[MOCK_MAX];
    size_t n_cfg;
};

typedef struct mock_route_entry {
    char method[16];
    char pattern[256];
    uint32_t access;
    od_handler_fn fn;
} mock_route_entry;

struct od_metric {
    char name[128];
    char labels[256];
    uint32_t type;
    atomic_llong value;
    atomic_ullong observations;
};

typedef struct kv {
    char *name;
    char *value;
} kv;

struct od_request {
    char *method, *path, *client, *body;
    size_t body_len;
    kv params[MOCK_MAX], query[MOCK_MAX], headers[MOCK_MAX], reply_headers[MOCK_MAX];
    size_t n_params, n_query, n_headers, n_reply_headers;
    od_principal principal;
    int has_principal;
    int status, replies;
    char *reply;
    void *arena[256];
    size_t n_arena;
};

static struct {
    pthread_mutex_t lock; /* guards logs and metric registration */
    char *logs[4096];
    size_t n_logs;
    mock_route_entry routes[MOCK_MAX];
    size_t n_routes;
    od_authenticate_fn authenticate;
    const od_storage *storage;
    const od_queue *queue;
    const od_step *steps[MOCK_MAX];
    size_t n_steps;
    const od_step *const *pipeline;
    size_t n_pipeline;
    od_metric *metrics[256];
    size_t n_metrics;
    atomic_llong now_ms;
} M = {.lock = PTHREAD_MUTEX_INITIALIZER};

static char *xstrdup(const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

/* ---- memory ---- */

static void *h_alloc(size_t n) { return malloc(n ? n : 1); }
static void *h_calloc(size_t n, size_t size) { return calloc(n ? n : 1, size ? size : 1); }
static void *h_realloc(void *p, size_t n) { return realloc(p, n ? n : 1); }
static char *h_strdup(const char *s) { return s ? strdup(s) : NULL; }
static void h_free(void *p) { free(p); }

/* ---- log ---- */

static void h_log(od_module *m, int level, const char *fmt, ...)
{
    char line[2048];
    int off = snprintf(line, sizeof line, "%s: ", m && m->group ? m->group : "?");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + off, sizeof line - (size_t)off, fmt, ap);
    va_end(ap);
    if (getenv("MOCK_VERBOSE"))
        fprintf(stderr, "[mock log %d] %s\n", level, line);
    pthread_mutex_lock(&M.lock);
    if (M.n_logs < sizeof M.logs / sizeof M.logs[0])
        M.logs[M.n_logs++] = xstrdup(line);
    pthread_mutex_unlock(&M.lock);
}

int mock_log_contains(const char *needle)
{
    int found = 0;
    pthread_mutex_lock(&M.lock);
    for (size_t i = 0; i < M.n_logs && !found; i++)
        found = strstr(M.logs[i], needle) != NULL;
    pthread_mutex_unlock(&M.lock);
    return found;
}

void mock_log_reset(void)
{
    pthread_mutex_lock(&M.lock);
    for (size_t i = 0; i < M.n_logs; i++)
        free(M.logs[i]);
    M.n_logs = 0;
    pthread_mutex_unlock(&M.lock);
}

/* ---- config ---- */

od_module *mock_module_new(const char *group)
{
    od_module *m = calloc(1, sizeof *m);
    if (!m)
        abort();
    m->group = xstrdup(group);
    return m;
}

static void cfg_clear(mock_cfg *c)
{
    free(c->key);
    free(c->str);
    for (size_t i = 0; i < c->n; i++)
        free(c->strs[i]);
    free(c->strs);
    memset(c, 0, sizeof *c);
}

void mock_module_free(od_module *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_cfg; i++)
        cfg_clear(&m->cfg[i]);
    free(m->group);
    free(m);
}

static mock_cfg *cfg_find(od_module *m, const char *key)
{
    for (size_t i = 0; i < m->n_cfg; i++)
        if (strcmp(m->cfg[i].key, key) == 0)
            return &m->cfg[i];
    return NULL;
}

static mock_cfg *cfg_slot(od_module *m, const char *key, int type)
{
    mock_cfg *c = cfg_find(m, key);
    if (c)
        cfg_clear(c);
    else if (m->n_cfg < MOCK_MAX)
        c = &m->cfg[m->n_cfg++];
    else
        abort();
    c->key = xstrdup(key);
    c->type = type;
    return c;
}

void mock_config_set_string(od_module *m, const char *key, const char *value)
{
    cfg_slot(m, key, CFG_STRING)->str = xstrdup(value);
}

void mock_config_set_int(od_module *m, const char *key, int64_t value)
{
    cfg_slot(m, key, CFG_INT)->num = value;
}

void mock_config_set_bool(od_module *m, const char *key, int value)
{
    cfg_slot(m, key, CFG_BOOL)->num = value != 0;
}

void mock_config_set_strings(od_module *m, const char *key, const char *const *values, size_t n)
{
    mock_cfg *c = cfg_slot(m, key, CFG_STRINGS);
    c->strs = calloc(n ? n : 1, sizeof *c->strs);
    if (!c->strs)
        abort();
    for (size_t i = 0; i < n; i++)
        c->strs[i] = xstrdup(values[i]);
    c->n = n;
}

static od_status cfg_type_error(od_module *m, const char *key, const char *want)
{
    h_log(m, OD_LOG_ERROR, "mock.conf:1: %s.%s must be %s", m->group, key, want);
    return OD_ERR_CONFIG;
}

static od_status h_config_string(od_module *m, const char *key, const char *def, const char **out)
{
    mock_cfg *c = cfg_find(m, key);
    if (!c) {
        *out = def;
        return OD_OK;
    }
    if (c->type != CFG_STRING)
        return cfg_type_error(m, key, "a string");
    *out = c->str;
    return OD_OK;
}

static od_status h_config_int(od_module *m, const char *key, int64_t def, int64_t min, int64_t max,
                              int64_t *out)
{
    mock_cfg *c = cfg_find(m, key);
    int64_t v = def;
    if (c) {
        if (c->type != CFG_INT)
            return cfg_type_error(m, key, "an integer");
        v = c->num;
    }
    if (v < min || v > max) {
        h_log(m, OD_LOG_ERROR, "mock.conf:1: %s.%s = %lld is out of range (valid: %lld..%lld)",
              m->group, key, (long long)v, (long long)min, (long long)max);
        return OD_ERR_CONFIG;
    }
    *out = v;
    return OD_OK;
}

static od_status h_config_bool(od_module *m, const char *key, int def, int *out)
{
    mock_cfg *c = cfg_find(m, key);
    if (!c) {
        *out = def;
        return OD_OK;
    }
    if (c->type != CFG_BOOL)
        return cfg_type_error(m, key, "true or false");
    *out = (int)c->num;
    return OD_OK;
}

static od_status h_config_strings(od_module *m, const char *key, const char *const **out, size_t *n)
{
    mock_cfg *c = cfg_find(m, key);
    if (!c) {
        *out = NULL;
        *n = 0;
        return OD_OK;
    }
    if (c->type != CFG_STRINGS)
        return cfg_type_error(m, key, "an array of strings");
    *out = (const char *const *)c->strs;
    *n = c->n;
    return OD_OK;
}

/* ---- routes, authenticator, backends ---- */

static od_status h_route(od_module *m, const char *method, const char *pattern, uint32_t access,
                         od_handler_fn fn)
{
    if (!method || !pattern || !fn || pattern[0] != '/')
        return OD_ERR_INVALID;
    if (mock_route(method, pattern, NULL))
        return OD_ERR_EXISTS;
    if (M.n_routes == MOCK_MAX)
        return OD_ERR_NOMEM;
    mock_route_entry *e = &M.routes[M.n_routes++];
    snprintf(e->method, sizeof e->method, "%s", method);
    snprintf(e->pattern, sizeof e->pattern, "%s", pattern);
    e->access = access;
    e->fn = fn;
    return OD_OK;
}

od_handler_fn mock_route(const char *method, const char *pattern, uint32_t *access)
{
    for (size_t i = 0; i < M.n_routes; i++) {
        if (strcmp(M.routes[i].method, method) == 0 && strcmp(M.routes[i].pattern, pattern) == 0) {
            if (access)
                *access = M.routes[i].access;
            return M.routes[i].fn;
        }
    }
    return NULL;
}

void mock_routes_reset(void)
{
    M.n_routes = 0;
    M.authenticate = NULL;
}

static od_status h_set_authenticator(od_module *m, od_authenticate_fn fn)
{
    if (M.authenticate)
        return OD_ERR_EXISTS;
    M.authenticate = fn;
    return OD_OK;
}

od_authenticate_fn mock_authenticator(void) { return M.authenticate; }

void mock_set_storage(const od_storage *s) { M.storage = s; }
void mock_set_queue(const od_queue *q) { M.queue = q; }

void mock_add_step(const od_step *s)
{
    if (M.n_steps < MOCK_MAX)
        M.steps[M.n_steps++] = s;
}

void mock_set_pipeline(const od_step *const *steps, size_t n)
{
    M.pipeline = steps;
    M.n_pipeline = n;
}

static od_status h_pipeline(od_module *m, const od_step *const **steps, size_t *n)
{
    *steps = M.pipeline;
    *n = M.n_pipeline;
    return OD_OK;
}

static const od_storage *h_storage(od_module *m) { return M.storage; }
static const od_queue *h_queue(od_module *m) { return M.queue; }

static const od_step *h_step(od_module *m, const char *name)
{
    for (size_t i = 0; i < M.n_steps; i++)
        if (strcmp(M.steps[i]->name, name) == 0)
            return M.steps[i];
    return NULL;
}

/* ---- metrics ---- */

static od_metric *metric_find(const char *name, const char *labels)
{
    for (size_t i = 0; i < M.n_metrics; i++)
        if (strcmp(M.metrics[i]->name, name) == 0 && strcmp(M.metrics[i]->labels, labels) == 0)
            return M.metrics[i];
    return NULL;
}

static od_metric *h_metric(od_module *m, uint32_t type, const char *name, const char *help,
                           const char *labels)
{
    if (!name || type < OD_METRIC_COUNTER || type > OD_METRIC_HISTOGRAM)
        return NULL;
    pthread_mutex_lock(&M.lock);
    od_metric *x = metric_find(name, labels ? labels : "");
    if (!x && M.n_metrics < sizeof M.metrics / sizeof M.metrics[0]) {
        x = calloc(1, sizeof *x);
        if (x) {
            snprintf(x->name, sizeof x->name, "%s", name);
            snprintf(x->labels, sizeof x->labels, "%s", labels ? labels : "");
            x->type = type;
            M.metrics[M.n_metrics++] = x;
        }
    }
    pthread_mutex_unlock(&M.lock);
    return x;
}

static void h_metric_add(od_metric *x, int64_t d)
{
    if (x)
        atomic_fetch_add(&x->value, d);
}

static void h_metric_set(od_metric *x, int64_t v)
{
    if (x)
        atomic_store(&x->value, v);
}

static void h_metric_observe(od_metric *x, double v)
{
    if (x)
        atomic_fetch_add(&x->observations, 1);
}

static od_status h_gauge_fn(od_module *m, const char *name, const char *help, const char *labels,
                            od_gauge_fn fn, void *arg)
{
    return name && fn ? OD_OK : OD_ERR_INVALID;
}

int64_t mock_metric_value(const char *name, const char *labels)
{
    pthread_mutex_lock(&M.lock);
    od_metric *x = metric_find(name, labels ? labels : "");
    pthread_mutex_unlock(&M.lock);
    return x ? atomic_load(&x->value) : 0;
}

uint64_t mock_metric_observations(const char *name, const char *labels)
{
    pthread_mutex_lock(&M.lock);
    od_metric *x = metric_find(name, labels ? labels : "");
    pthread_mutex_unlock(&M.lock);
    return x ? atomic_load(&x->observations) : 0;
}

/* ---- utilities ---- */

static od_status h_random_bytes(void *buf, size_t n)
{
    return RAND_bytes(buf, (int)n) == 1 ? OD_OK : OD_ERR_INTERNAL;
}

static int64_t h_now_ms(void)
{
    int64_t fixed = atomic_load(&M.now_ms);
    if (fixed)
        return fixed;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mock_set_now_ms(int64_t ms) { atomic_store(&M.now_ms, ms); }

static int64_t h_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* UUIDv7: 48-bit ms timestamp, version 7, variant 10, the rest random. */
static od_status h_new_id(char *out)
{
    unsigned char u[16];
    if (h_random_bytes(u, sizeof u) != OD_OK)
        return OD_ERR_INTERNAL;
    uint64_t ms = (uint64_t)h_now_ms();
    for (int i = 0; i < 6; i++)
        u[i] = (unsigned char)(ms >> (40 - 8 * i));
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x70);
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[u[i] >> 4];
        out[o++] = hex[u[i] & 15];
    }
    out[o] = '\0';
    return OD_OK;
}

static int h_stopping(void) { return 0; }

/* ---- requests ---- */

static void kv_add(kv *arr, size_t *n, const char *name, const char *value)
{
    if (*n == MOCK_MAX)
        abort();
    arr[*n].name = xstrdup(name);
    arr[*n].value = xstrdup(value);
    (*n)++;
}

static const char *kv_get(const kv *arr, size_t n, const char *name, int nocase)
{
    for (size_t i = 0; i < n; i++)
        if ((nocase ? strcasecmp(arr[i].name, name) : strcmp(arr[i].name, name)) == 0)
            return arr[i].value;
    return NULL;
}

static void kv_free(kv *arr, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(arr[i].name);
        free(arr[i].value);
    }
}

od_request *mock_request_new(const char *method, const char *path)
{
    od_request *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    r->method = xstrdup(method);
    r->path = xstrdup(path);
    r->client = xstrdup("127.0.0.1");
    r->body = xstrdup("");
    return r;
}

void mock_request_param(od_request *r, const char *n, const char *v) { kv_add(r->params, &r->n_params, n, v); }
void mock_request_query(od_request *r, const char *n, const char *v) { kv_add(r->query, &r->n_query, n, v); }
void mock_request_header(od_request *r, const char *n, const char *v) { kv_add(r->headers, &r->n_headers, n, v); }

void mock_request_body(od_request *r, const char *body)
{
    free(r->body);
    r->body = xstrdup(body ? body : "");
    r->body_len = strlen(r->body);
}

void mock_request_principal(od_request *r, const char *user_id, uint32_t role)
{
    r->principal.size = sizeof r->principal;
    r->principal.role = role;
    snprintf(r->principal.user_id, sizeof r->principal.user_id, "%s", user_id);
    r->has_principal = 1;
}

void mock_request_client(od_request *r, const char *addr)
{
    free(r->client);
    r->client = xstrdup(addr);
}

int mock_reply_status(const od_request *r) { return r->status; }
const char *mock_reply_body(const od_request *r) { return r->reply; }
int mock_reply_count(const od_request *r) { return r->replies; }

const char *mock_reply_header(const od_request *r, const char *name)
{
    return kv_get(r->reply_headers, r->n_reply_headers, name, 1);
}

void mock_request_free(od_request *r)
{
    if (!r)
        return;
    kv_free(r->params, r->n_params);
    kv_free(r->query, r->n_query);
    kv_free(r->headers, r->n_headers);
    kv_free(r->reply_headers, r->n_reply_headers);
    for (size_t i = 0; i < r->n_arena; i++)
        free(r->arena[i]);
    free(r->method);
    free(r->path);
    free(r->client);
    free(r->body);
    free(r->reply);
    free(r);
}

static const char *h_req_method(od_request *r) { return r->method; }
static const char *h_req_path(od_request *r) { return r->path; }
static const char *h_req_param(od_request *r, const char *n) { return kv_get(r->params, r->n_params, n, 0); }
static const char *h_req_query(od_request *r, const char *n) { return kv_get(r->query, r->n_query, n, 0); }
static const char *h_req_header(od_request *r, const char *n) { return kv_get(r->headers, r->n_headers, n, 1); }

static const char *h_req_body(od_request *r, size_t *len)
{
    if (len)
        *len = r->body_len;
    return r->body;
}

static const od_principal *h_req_principal(od_request *r) { return r->has_principal ? &r->principal : NULL; }
static const char *h_req_client(od_request *r) { return r->client; }
static const char *h_req_id(od_request *r) { return "mock-request-id"; }

static void *h_req_alloc(od_request *r, size_t n)
{
    if (r->n_arena == sizeof r->arena / sizeof r->arena[0])
        return NULL;
    void *p = calloc(1, n ? n : 1);
    if (p)
        r->arena[r->n_arena++] = p;
    return p;
}

/* JSON string escaping for the envelope's message. */
static void json_escape(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; s && *s && o + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

static od_status set_reply(od_request *r, int status, char *body)
{
    r->replies++;
    if (r->replies > 1) {
        free(body);
        return OD_ERR_INVALID;
    }
    r->status = status;
    r->reply = body;
    return OD_OK;
}

static od_status envelope(od_request *r, int status, const char *message, const char *data,
                          size_t len, int list, const char *next)
{
    char msg[1024], nx[1100];
    json_escape(msg, sizeof msg, message);
    if (next)
        snprintf(nx, sizeof nx, ",\"next\":\"%s\"", next);
    else
        snprintf(nx, sizeof nx, "%s", list ? ",\"next\":null" : "");
    size_t cap = len + sizeof msg + sizeof nx + 64;
    char *body = malloc(cap);
    if (!body)
        return OD_ERR_NOMEM;
    snprintf(body, cap, "{\"statusCode\":%d,\"message\":\"%s\",\"data\":%.*s%s}", status, msg,
             data ? (int)len : 4, data ? data : "null", nx);
    return set_reply(r, status, body);
}

static od_status h_reply(od_request *r, int status, const char *message, const char *data, size_t len)
{
    return envelope(r, status, message, data, len, 0, NULL);
}

static od_status h_reply_list(od_request *r, int status, const char *message, const char *items,
                              size_t len, const char *next)
{
    return envelope(r, status, message, items, len, 1, next);
}

static od_status h_reply_error(od_request *r, int status, const char *code, const char *message)
{
    char msg[1024], cd[128];
    json_escape(msg, sizeof msg, message);
    json_escape(cd, sizeof cd, code);
    size_t cap = sizeof msg + sizeof cd + 64;
    char *body = malloc(cap);
    if (!body)
        return OD_ERR_NOMEM;
    snprintf(body, cap, "{\"statusCode\":%d,\"message\":\"%s\",\"error\":\"%s\"}", status, msg, cd);
    return set_reply(r, status, body);
}

static od_status h_reply_header(od_request *r, const char *name, const char *value)
{
    if (!name || !value || strpbrk(value, "\r\n"))
        return OD_ERR_INVALID;
    kv_add(r->reply_headers, &r->n_reply_headers, name, value);
    return OD_OK;
}

/* ---- loading a module like the core does ---- */

const od_module_desc *mock_load_module(const char *path, char *err, size_t errlen)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, errlen, "%s", dlerror());
        return NULL;
    }
    od_module_entry_fn entry;
    *(void **)&entry = dlsym(h, OD_ENTRY_SYMBOL);
    if (!entry) {
        snprintf(err, errlen, "%s: not an orderd module", path);
        return NULL;
    }
    const od_module_desc *d = entry();
    if (!d || d->magic != OD_MODULE_MAGIC || d->abi_major != OD_ABI_MAJOR ||
        d->abi_minor > OD_ABI_MINOR || d->size < sizeof(od_module_desc) || !d->init) {
        snprintf(err, errlen, "%s: bad descriptor", path);
        return NULL;
    }
    return d; /* never dlclose'd, as in the core */
}

/* ---- the table ---- */

static const od_host_api API = {
    .size = sizeof(od_host_api),
    .abi_major = OD_ABI_MAJOR,
    .abi_minor = OD_ABI_MINOR,
    .alloc = h_alloc,
    .calloc = h_calloc,
    .realloc = h_realloc,
    .strdup = h_strdup,
    .free = h_free,
    .log = h_log,
    .config_string = h_config_string,
    .config_int = h_config_int,
    .config_bool = h_config_bool,
    .config_strings = h_config_strings,
    .route = h_route,
    .set_authenticator = h_set_authenticator,
    .storage = h_storage,
    .queue = h_queue,
    .step = h_step,
    .pipeline = h_pipeline,
    .metric = h_metric,
    .metric_add = h_metric_add,
    .metric_set = h_metric_set,
    .metric_observe = h_metric_observe,
    .gauge_fn = h_gauge_fn,
    .random_bytes = h_random_bytes,
    .new_id = h_new_id,
    .now_ms = h_now_ms,
    .monotonic_ms = h_monotonic_ms,
    .stopping = h_stopping,
    .req_method = h_req_method,
    .req_path = h_req_path,
    .req_param = h_req_param,
    .req_query = h_req_query,
    .req_header = h_req_header,
    .req_body = h_req_body,
    .req_principal = h_req_principal,
    .req_client = h_req_client,
    .req_id = h_req_id,
    .req_alloc = h_req_alloc,
    .reply = h_reply,
    .reply_list = h_reply_list,
    .reply_error = h_reply_error,
    .reply_header = h_reply_header,
};

const od_host_api *mock_host_api(void) { return &API; }
