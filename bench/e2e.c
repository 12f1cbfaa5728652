/*
 * bench/e2e.c - the end-to-end order benchmark for bench/run.sh: THREADS
 * client threads POST ORDERS orders (one unit of PRODUCT_ID each, plain
 * POSTs, no Idempotency-Key) as fast as the server answers, then the main
 * thread polls GET /metrics until the worker has taken every accepted order
 * to COMPLETED or FAILED. It prints one line:
 *
 *   orders posted_ok non201 post_s e2e_s orders_per_s post_p50_ms post_p99_ms completed failed
 *
 * e2e_s runs from the first POST to the poll that saw the last order done,
 * so it overstates by at most one poll interval (POLL_MS). orders_per_s is
 * completed / e2e_s. Counts come from the difference of
 * orderd_orders_status_changes_total{status="COMPLETED"|"FAILED"} before
 * and after, so the server may have older orders.
 *
 *   e2e BASE_URL TOKEN PRODUCT_ID ORDERS THREADS [TIMEOUT_S]
 *
 * Threads: the posters share only `next` (atomic ticket counter) and write
 * disjoint slots of `latency_ns`; each has its own curl handle. The main
 * thread reads the results after pthread_join. Exit status: 0 if every
 * order was accepted and finished in time, 1 otherwise, 2 on usage errors.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_MS 5
#define THREADS_MAX 256
#define ORDERS_MAX 10000000L

typedef struct bench {
    const char *base_url;
    char orders_url[512];
    char metrics_url[512];
    char auth_header[2048];
    char body[256];
    long orders;
    atomic_long next;      /* the next order to post; >= orders means done */
    int64_t *latency_ns;   /* one slot per order, written by whoever posted it */
    int *http_status;      /* same indexing; 0 = transport error */
} bench;

typedef struct growbuf {
    char *p;
    size_t len, cap;
} growbuf;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static size_t discard_body(char *data, size_t size, size_t n, void *user)
{
    (void)data;
    (void)user;
    return size * n;
}

static size_t keep_body(char *data, size_t size, size_t n, void *user)
{
    growbuf *b = user;
    size_t add = size * n;
    if (b->len + add + 1 > b->cap) {
        size_t cap = (b->len + add + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return 0; /* curl reports a write error */
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, add);
    b->len += add;
    b->p[b->len] = '\0';
    return add;
}

/* One poster: takes tickets until none are left, one keep-alive handle. */
static void *post_orders(void *arg)
{
    bench *b = arg;
    CURL *c = curl_easy_init();
    struct curl_slist *headers = NULL;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, b->auth_header);
    if (!c || !headers) {
        curl_slist_free_all(headers);
        curl_easy_cleanup(c);
        return NULL; /* its tickets stay unposted: http_status 0 */
    }
    curl_easy_setopt(c, CURLOPT_URL, b->orders_url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, b->body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    for (;;) {
        long i = atomic_fetch_add(&b->next, 1);
        if (i >= b->orders)
            break;
        int64_t t0 = now_ns();
        long code = 0;
        if (curl_easy_perform(c) == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        b->latency_ns[i] = now_ns() - t0;
        b->http_status[i] = (int)code;
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return NULL;
}

/* The value of the exposition line `name{label} value`; -1 if absent. */
static long long metric_value(const char *text, const char *series)
{
    size_t len = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, series, len) == 0 && p[len] == ' ')
            return strtoll(p + len + 1, NULL, 10);
    }
    return -1;
}

/* Reads the COMPLETED and FAILED order counters; 0 on success. */
static int read_done(CURL *c, const bench *b, long long *completed, long long *failed)
{
    growbuf body = {0};
    curl_easy_setopt(c, CURLOPT_URL, b->metrics_url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    long code = 0;
    int rc = -1;
    if (curl_easy_perform(c) == CURLE_OK &&
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 200 &&
        body.p) {
        *completed =
            metric_value(body.p, "orderd_orders_status_changes_total{status=\"COMPLETED\"}");
        *failed = metric_value(body.p, "orderd_orders_status_changes_total{status=\"FAILED\"}");
        rc = *completed >= 0 && *failed >= 0 ? 0 : -1;
    }
    free(body.p);
    return rc;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n). */
static double percentile_ms(const int64_t *v, long n, double pct)
{
    if (n == 0)
        return 0;
    long rank = (long)((pct / 100.0) * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    return (double)v[rank - 1] / 1e6;
}

static long parse_long(const char *s, long min, long max, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "e2e: %s must be an integer in %ld..%ld, got \"%s\"\n", what, min, max, s);
        exit(2);
    }
    return v;
}

static int setup(bench *b, int argc, char **argv, long *threads, long *timeout_s)
{
    if (argc < 6 || argc > 7) {
        fprintf(stderr, "usage: e2e BASE_URL TOKEN PRODUCT_ID ORDERS THREADS [TIMEOUT_S]\n");
        return -1;
    }
    b->base_url = argv[1];
    b->orders = parse_long(argv[4], 1, ORDERS_MAX, "ORDERS");
    *threads = parse_long(argv[5], 1, THREADS_MAX, "THREADS");
    *timeout_s = argc == 7 ? parse_long(argv[6], 1, 3600, "TIMEOUT_S") : 120;
    int n1 = snprintf(b->orders_url, sizeof b->orders_url, "%s/api/orders", b->base_url);
    int n2 = snprintf(b->metrics_url, sizeof b->metrics_url, "%s/metrics", b->base_url);
    int n3 = snprintf(b->auth_header, sizeof b->auth_header, "Authorization: Bearer %s", argv[2]);
    int n4 = snprintf(b->body, sizeof b->body, "{\"items\":[\"%s\"]}", argv[3]);
    if (n1 < 0 || n2 < 0 || n3 < 0 || n4 < 0 || (size_t)n1 >= sizeof b->orders_url ||
        (size_t)n2 >= sizeof b->metrics_url || (size_t)n3 >= sizeof b->auth_header ||
        (size_t)n4 >= sizeof b->body) {
        fprintf(stderr, "e2e: URL, token or product id too long\n");
        return -1;
    }
    atomic_init(&b->next, 0);
    b->latency_ns = calloc((size_t)b->orders, sizeof *b->latency_ns);
    b->http_status = calloc((size_t)b->orders, sizeof *b->http_status);
    return b->latency_ns && b->http_status ? 0 : -1;
}

/* Posts every order from THREADS threads; *start_ns is taken before the first. */
static int post_all(bench *b, long threads, int64_t *start_ns)
{
    pthread_t tid[THREADS_MAX];
    long started = 0;
    *start_ns = now_ns();
    for (; started < threads; started++)
        if (pthread_create(&tid[started], NULL, post_orders, b) != 0)
            break;
    for (long i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    return started > 0 ? 0 : -1;
}

/* Polls until done_base + want orders are COMPLETED or FAILED, or the deadline. */
static int wait_done(const bench *b, long long completed0, long long failed0, long long want,
                     int64_t deadline_ns, long long *completed, long long *failed)
{
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    int rc = -1;
    for (;;) {
        long long comp, fail;
        if (read_done(c, b, &comp, &fail) == 0) {
            *completed = comp - completed0;
            *failed = fail - failed0;
            if (*completed + *failed >= want) {
                rc = 0;
                break;
            }
        }
        if (now_ns() > deadline_ns)
            break;
        nanosleep(&(struct timespec){.tv_nsec = POLL_MS * 1000000L}, NULL);
    }
    curl_easy_cleanup(c);
    return rc;
}

static int run(bench *b, long threads, long timeout_s)
{
    CURL *c = curl_easy_init();
    long long completed0 = 0, failed0 = 0, completed = 0, failed = 0;
    int base_ok = c && read_done(c, b, &completed0, &failed0) == 0;
    curl_easy_cleanup(c);
    if (!base_ok) {
        fprintf(stderr, "e2e: cannot read the order counters from %s\n", b->metrics_url);
        return 1;
    }
    int64_t start_ns;
    if (post_all(b, threads, &start_ns) != 0) {
        fprintf(stderr, "e2e: could not start any client thread\n");
        return 1;
    }
    int64_t posted_ns = now_ns();
    long ok = 0;
    for (long i = 0; i < b->orders; i++)
        ok += b->http_status[i] == 201;
    int done = wait_done(b, completed0, failed0, ok, posted_ns + (int64_t)timeout_s * 1000000000,
                         &completed, &failed);
    int64_t end_ns = now_ns();
    qsort(b->latency_ns, (size_t)b->orders, sizeof *b->latency_ns, cmp_i64);
    double post_s = (double)(posted_ns - start_ns) / 1e9, e2e_s = (double)(end_ns - start_ns) / 1e9;
    printf("%ld %ld %ld %.3f %.3f %.0f %.3f %.3f %lld %lld\n", b->orders, ok, b->orders - ok,
           post_s, e2e_s, (double)completed / e2e_s, percentile_ms(b->latency_ns, b->orders, 50),
           percentile_ms(b->latency_ns, b->orders, 99), completed, failed);
    if (done != 0)
        fprintf(stderr, "e2e: only %lld of %ld orders finished within %ld s\n", completed + failed,
                ok, timeout_s);
    return done == 0 && ok == b->orders ? 0 : 1;
}

int main(int argc, char **argv)
{
    bench b = {0};
    long threads = 0, timeout_s = 0;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 2;
    int rc = setup(&b, argc, argv, &threads, &timeout_s) == 0 ? run(&b, threads, timeout_s) : 2;
    free(b.latency_ns);
    free(b.http_status);
    curl_global_cleanup();
    return rc;
}
