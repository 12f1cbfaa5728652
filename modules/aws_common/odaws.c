/*
 * odaws.c - the AWS JSON-protocol client (see odaws.h for the contract).
 *
 * Config keys (the calling module's own group): region, endpoint, timeout_ms,
 * connect_timeout_ms, max_retries, retry_base_ms, create_missing. Credentials:
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN only.
 * Threads: none of its own. Each calling thread lazily gets a handle slot
 * (CURL easy handle + its own curl error buffer) stored under the client's
 * pthread key; c->mu guards only the list of slots, which exists so that
 * odaws_client_free can release handles of threads that are still alive.
 * Shutdown: odaws_client_close sets `closing`; the libcurl progress callback
 * (called at least once a second, even while a long poll is idle) aborts the
 * transfer, and backoff sleeps check it every ODAWS_SLEEP_SLICE_MS.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "odaws.h"

#define ODAWS_BODY_MAX ((size_t)64 * 1024 * 1024) /* far above any DynamoDB/SQS answer */
#define ODAWS_BACKOFF_CAP_MS 5000
#define ODAWS_HEADER_MAX 2300                     /* "X-Amz-Security-Token: " + STS token */
#define ODAWS_SLEEP_SLICE_MS 100
#define ODAWS_CONTENT_TYPE "Content-Type: application/x-amz-json-1.0"

typedef struct odaws_slot {
    CURL *curl;
    odaws_client *client;
    struct odaws_slot *prev, *next;
} odaws_slot;

struct odaws_client {
    const od_host_api *host;
    od_module *mod;
    char *service;
    char *target_prefix;
    char *region;
    char *endpoint;
    char *sigv4;       /* "aws:amz:<region>:<service>" */
    char *key_id;      /* secret material: never logged in full */
    char *secret;
    char *token_header; /* "X-Amz-Security-Token: ..." or NULL */
    int64_t timeout_ms;
    int64_t connect_timeout_ms;
    int64_t max_retries;
    int64_t retry_base_ms;
    int create_missing;
    atomic_int closing; /* set by odaws_client_close; read by every call's progress callback */

    pthread_key_t key; /* -> this thread's odaws_slot */
    int key_ready;
    pthread_mutex_t mu; /* guards slots (not taken on the call path once a thread has its slot) */
    odaws_slot *slots;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

/* The one process-wide state: libcurl's global init must happen exactly once
 * and before any thread uses libcurl; the core does not do it. */
static void curl_global_once(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- configuration ---------------------------------------------------- */

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static char *dup_printf(const od_host_api *h, const char *fmt, ...) OD_PRINTF(2, 3);
static char *dup_printf(const od_host_api *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = h->alloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* A region is a short [a-z0-9-] token; anything else would end up in a URL
 * and in the signature scope. */
static int region_valid(const char *r)
{
    size_t n = strlen(r);
    if (n == 0 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!islower((unsigned char)r[i]) && !isdigit((unsigned char)r[i]) && r[i] != '-')
            return 0;
    return 1;
}

static int endpoint_valid(const char *e)
{
    if (strncmp(e, "http://", 7) && strncmp(e, "https://", 8))
        return 0;
    for (const char *p = e; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return 0;
    return 1;
}

static od_status read_region(odaws_client *c)
{
    const od_host_api *h = c->host;
    const char *def = env_nonempty("AWS_REGION");
    if (!def)
        def = env_nonempty("AWS_DEFAULT_REGION");
    if (!def)
        def = "us-east-1";
    const char *region;
    if (h->config_string(c->mod, "region", def, &region) != OD_OK)
        return OD_ERR_CONFIG;
    if (!region_valid(region)) {
        h->log(c->mod, OD_LOG_ERROR, "region \"%s\" is not a region name like us-east-1", region);
        return OD_ERR_CONFIG;
    }
    c->region = h->strdup(region);
    return c->region ? OD_OK : OD_ERR_NOMEM;
}

static od_status read_endpoint(odaws_client *c, const odaws_service *svc)
{
    const od_host_api *h = c->host;
    char env[64];
    snprintf(env, sizeof env, "AWS_ENDPOINT_URL_%s", svc->env_suffix);
    const char *def = env_nonempty(env);
    if (!def)
        def = env_nonempty("AWS_ENDPOINT_URL");
    char *fallback = dup_printf(h, "https://%s.%s.amazonaws.com", svc->name, c->region);
    if (!fallback)
        return OD_ERR_NOMEM;
    const char *endpoint;
    od_status st = h->config_string(c->mod, "endpoint", def ? def : fallback, &endpoint);
    if (st == OD_OK && !endpoint_valid(endpoint)) {
        h->log(c->mod, OD_LOG_ERROR,
               "endpoint \"%s\" must be an http:// or https:// URL without spaces", endpoint);
        st = OD_ERR_CONFIG;
    }
    if (st == OD_OK) {
        /* Strip trailing slashes: the request path is always "/". */
        size_t n = strlen(endpoint);
        while (n > 0 && endpoint[n - 1] == '/')
            n--;
        c->endpoint = dup_printf(h, "%.*s/", (int)n, endpoint);
        st = c->endpoint ? OD_OK : OD_ERR_NOMEM;
    }
    h->free(fallback);
    return st;
}

static od_status read_numbers(odaws_client *c)
{
    const od_host_api *h = c->host;
    od_module *m = c->mod;
    if (h->config_int(m, "timeout_ms", 5000, 100, 600000, &c->timeout_ms) != OD_OK ||
        h->config_int(m, "connect_timeout_ms", 2000, 50, 60000, &c->connect_timeout_ms) != OD_OK ||
        h->config_int(m, "max_retries", 3, 0, 20, &c->max_retries) != OD_OK ||
        h->config_int(m, "retry_base_ms", 50, 1, 10000, &c->retry_base_ms) != OD_OK ||
        h->config_bool(m, "create_missing", 0, &c->create_missing) != OD_OK)
        return OD_ERR_CONFIG;
    return OD_OK;
}

/* Credentials: environment only. The key id is public-ish (it shows in
 * CloudTrail) but we still log only its last four characters. */
static od_status read_credentials(odaws_client *c)
{
    const od_host_api *h = c->host;
    const char *id = env_nonempty("AWS_ACCESS_KEY_ID");
    const char *secret = env_nonempty("AWS_SECRET_ACCESS_KEY");
    const char *token = env_nonempty("AWS_SESSION_TOKEN");
    if (!id || !secret) {
        h->log(c->mod, OD_LOG_ERROR,
               "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the "
               "environment (the config file never holds them)");
        return OD_ERR_CONFIG;
    }
    if (strchr(id, ':') || strlen(id) > 128 || (token && strlen(token) > ODAWS_HEADER_MAX - 32)) {
        h->log(c->mod, OD_LOG_ERROR, "AWS_ACCESS_KEY_ID or AWS_SESSION_TOKEN is malformed");
        return OD_ERR_CONFIG;
    }
    c->key_id = h->strdup(id);
    c->secret = h->strdup(secret);
    c->token_header = token ? dup_printf(h, "X-Amz-Security-Token: %s", token) : NULL;
    if (!c->key_id || !c->secret || (token && !c->token_header))
        return OD_ERR_NOMEM;
    size_t n = strlen(id);
    h->log(c->mod, OD_LOG_INFO, "credentials from environment (key id %.4s...%s)%s", id,
           n > 8 ? id + n - 4 : "", token ? " with session token" : "");
    return OD_OK;
}

/* ---- per-thread handles ----------------------------------------------- */

static void slot_unlink(odaws_client *c, odaws_slot *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        c->slots = s->next;
    if (s->next)
        s->next->prev = s->prev;
}

/* pthread key destructor: the thread is exiting, give its handle back. */
static void slot_release(void *p)
{
    odaws_slot *s = p;
    odaws_client *c = s->client;
    pthread_mutex_lock(&c->mu);
    slot_unlink(c, s);
    pthread_mutex_unlock(&c->mu);
    curl_easy_cleanup(s->curl);
    c->host->free(s);
}

static odaws_slot *slot_get(odaws_client *c)
{
    odaws_slot *s = pthread_getspecific(c->key);
    if (s)
        return s;
    s = c->host->calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->client = c;
    s->curl = curl_easy_init();
    if (!s->curl || pthread_setspecific(c->key, s) != 0) {
        curl_easy_cleanup(s->curl);
        c->host->free(s);
        return NULL;
    }
    pthread_mutex_lock(&c->mu);
    s->next = c->slots;
    if (c->slots)
        c->slots->prev = s;
    c->slots = s;
    pthread_mutex_unlock(&c->mu);
    return s;
}

/* ---- client ----------------------------------------------------------- */

od_status odaws_client_new(const od_host_api *host, od_module *mod, const odaws_service *svc,
                           odaws_client **out)
{
    *out = NULL;
    pthread_once(&curl_once, curl_global_once);
    if (curl_init_result != CURLE_OK) {
        host->log(mod, OD_LOG_ERROR, "curl_global_init failed: %s",
                  curl_easy_strerror(curl_init_result));
        return OD_ERR_INTERNAL;
    }
    odaws_client *c = host->calloc(1, sizeof *c);
    if (!c)
        return OD_ERR_NOMEM;
    c->host = host;
    c->mod = mod;
    pthread_mutex_init(&c->mu, NULL);
    od_status st = OD_ERR_NOMEM;
    c->service = host->strdup(svc->name);
    c->target_prefix = host->strdup(svc->target_prefix);
    if (c->service && c->target_prefix)
        st = read_region(c);
    if (st == OD_OK)
        st = read_endpoint(c, svc);
    if (st == OD_OK)
        st = read_numbers(c);
    if (st == OD_OK)
        st = read_credentials(c);
    if (st == OD_OK) {
        c->sigv4 = dup_printf(host, "aws:amz:%s:%s", c->region, c->service);
        st = c->sigv4 ? OD_OK : OD_ERR_NOMEM;
    }
    if (st == OD_OK) {
        st = pthread_key_create(&c->key, slot_release) == 0 ? OD_OK : OD_ERR_INTERNAL;
        c->key_ready = st == OD_OK;
    }
    if (st != OD_OK) {
        odaws_client_free(c);
        return st;
    }
    host->log(mod, OD_LOG_INFO, "%s endpoint %s, region %s", c->service, c->endpoint, c->region);
    *out = c;
    return OD_OK;
}

static void free_secret(const od_host_api *h, char *s)
{
    if (s) {
        /* volatile-free wipe: explicit_bzero is in glibc >= 2.25 */
        explicit_bzero(s, strlen(s));
        h->free(s);
    }
}

void odaws_client_free(odaws_client *c)
{
    if (!c)
        return;
    const od_host_api *h = c->host;
    /* Deleting the key first means no destructor can run for this client any
     * more; then the remaining slots are ours alone. */
    if (c->key_ready)
        pthread_key_delete(c->key);
    for (odaws_slot *s = c->slots, *next; s; s = next) {
        next = s->next;
        curl_easy_cleanup(s->curl);
        h->free(s);
    }
    pthread_mutex_destroy(&c->mu);
    free_secret(h, c->secret);
    free_secret(h, c->token_header);
    h->free(c->key_id);
    h->free(c->sigv4);
    h->free(c->endpoint);
    h->free(c->region);
    h->free(c->target_prefix);
    h->free(c->service);
    h->free(c);
}

void odaws_client_close(odaws_client *c)
{
    if (c)
        atomic_store(&c->closing, 1);
}

const char *odaws_region(const odaws_client *c) { return c->region; }
const char *odaws_endpoint(const odaws_client *c) { return c->endpoint; }
int odaws_create_missing(const odaws_client *c) { return c->create_missing; }
int64_t odaws_timeout_ms(const odaws_client *c) { return c->timeout_ms; }

/* ---- one HTTP exchange ------------------------------------------------ */

typedef struct body_buf {
    const od_host_api *host;
    char *p;
    size_t len, cap;
    int too_large;
} body_buf;

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    body_buf *b = arg;
    size_t n = size * nmemb;
    if (n > ODAWS_BODY_MAX - b->len) {
        b->too_large = 1;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = b->host->realloc(b->p, cap);
        if (!p)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

/* libcurl progress callback: non-zero aborts the transfer (client closing). */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const odaws_client *c = arg;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return atomic_load(&c->closing);
}

static struct curl_slist *build_headers(const odaws_client *c, const char *operation)
{
    char target[256];
    int n = snprintf(target, sizeof target, "X-Amz-Target: %s.%s", c->target_prefix, operation);
    if (n < 0 || (size_t)n >= sizeof target)
        return NULL;
    /* Never add "Name:" removal entries (e.g. "Expect:"): libcurl 7.88
     * signs them although it does not send them. */
    struct curl_slist *l = curl_slist_append(NULL, ODAWS_CONTENT_TYPE), *t;
    if (!l)
        return NULL;
    if (!(t = curl_slist_append(l, target)))
        goto fail;
    l = t;
    if (c->token_header) {
        if (!(t = curl_slist_append(l, c->token_header)))
            goto fail;
        l = t;
    }
    return l;
fail:
    curl_slist_free_all(l);
    return NULL;
}

/* Set every option for one attempt. curl_easy_reset keeps the connection
 * cache, so keep-alive survives it. */
static void setup_handle(odaws_client *c, CURL *h, struct curl_slist *headers,
                         const char *body, size_t len, int64_t timeout_ms, body_buf *buf,
                         char *errbuf)
{
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, c->endpoint);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, c->sigv4);
    curl_easy_setopt(h, CURLOPT_USERNAME, c->key_id);
    curl_easy_setopt(h, CURLOPT_PASSWORD, c->secret);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    /* POSTFIELDS (not a read callback): the SigV4 payload hash uses it. */
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, buf);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
}

static void copy_trunc(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* Fill error_type/error_message from an AWS JSON error body. */
static void parse_error(odaws_response *r)
{
    r->error_type[0] = r->error_message[0] = '\0';
    json_object *o = r->body ? odaws_parse(r->body, r->len) : NULL;
    json_object *v;
    if (o && json_object_object_get_ex(o, "__type", &v) && json_object_is_type(v, json_type_string)) {
        const char *t = json_object_get_string(v);
        const char *hash = strrchr(t, '#');
        copy_trunc(r->error_type, sizeof r->error_type, hash ? hash + 1 : t);
    }
    if (o && (json_object_object_get_ex(o, "message", &v) ||
              json_object_object_get_ex(o, "Message", &v)) &&
        json_object_is_type(v, json_type_string))
        copy_trunc(r->error_message, sizeof r->error_message, json_object_get_string(v));
    json_object_put(o);
    if (!r->error_type[0])
        snprintf(r->error_type, sizeof r->error_type, "HTTP%ld", r->http_status);
}

static int retryable_type(const char *t)
{
    static const char *const types[] = {
        "ThrottlingException",      "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",     "TooManyRequestsException",
        "ServiceUnavailable",       "InternalServerError",
        "Throttling",               "RequestThrottled",
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(t, types[i]))
            return 1;
    return 0;
}

typedef enum { ATTEMPT_FINAL, ATTEMPT_RETRY, ATTEMPT_NOMEM, ATTEMPT_CLOSED } attempt_result;

static attempt_result attempt(odaws_client *c, CURL *h, struct curl_slist *headers,
                              const char *body, size_t len, int64_t timeout_ms,
                              odaws_response *r, char *why, size_t why_cap)
{
    body_buf buf = {.host = c->host};
    char errbuf[CURL_ERROR_SIZE] = "";
    setup_handle(c, h, headers, body, len, timeout_ms, &buf, errbuf);
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        c->host->free(buf.p);
        if (rc == CURLE_WRITE_ERROR && !buf.too_large)
            return ATTEMPT_NOMEM;
        if (rc == CURLE_ABORTED_BY_CALLBACK)
            return ATTEMPT_CLOSED;
        snprintf(why, why_cap, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
        return ATTEMPT_RETRY;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->http_status);
    r->body = buf.p;
    r->len = buf.len;
    if (r->http_status >= 200 && r->http_status < 300)
        return ATTEMPT_FINAL;
    parse_error(r);
    if (r->http_status >= 500 || retryable_type(r->error_type)) {
        snprintf(why, why_cap, "HTTP %ld %s", r->http_status, r->error_type);
        return ATTEMPT_RETRY;
    }
    return ATTEMPT_FINAL;
}

static void reset_response(const odaws_client *c, odaws_response *r)
{
    c->host->free(r->body);
    memset(r, 0, sizeof *r);
}

/* Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"):
 * a uniform sleep in [0, min(cap, base * 2^attempt)], so many instances
 * retrying at once spread out instead of colliding again. */
static void backoff(odaws_client *c, int attempt_no)
{
    int64_t ceiling = c->retry_base_ms;
    for (int i = 0; i < attempt_no && ceiling < ODAWS_BACKOFF_CAP_MS; i++)
        ceiling *= 2;
    if (ceiling > ODAWS_BACKOFF_CAP_MS)
        ceiling = ODAWS_BACKOFF_CAP_MS;
    uint32_t rnd = 0;
    if (c->host->random_bytes(&rnd, sizeof rnd) != OD_OK)
        rnd = (uint32_t)c->host->monotonic_ms();
    int64_t ms = (int64_t)(rnd % (uint64_t)(ceiling + 1));
    while (ms > 0 && !atomic_load(&c->closing)) {
        int64_t slice = ms < ODAWS_SLEEP_SLICE_MS ? ms : ODAWS_SLEEP_SLICE_MS;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = slice * 1000000L};
        while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
            ;
        ms -= slice;
    }
}

static int operation_valid(const char *op)
{
    size_t n = strlen(op);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)op[i]))
            return 0;
    return 1;
}

od_status odaws_call_timeout(odaws_client *c, const char *operation, const char *body,
                             size_t len, int64_t min_timeout_ms, odaws_response *resp)
{
    memset(resp, 0, sizeof *resp);
    if (!operation || !operation_valid(operation) || (len && !body))
        return OD_ERR_INVALID;
    if (len == 0) {
        body = "{}"; /* DynamoDB answers an empty body with a 500 */
        len = 2;
    }
    if (atomic_load(&c->closing))
        return OD_ERR_CLOSED;
    odaws_slot *slot = slot_get(c);
    struct curl_slist *headers = slot ? build_headers(c, operation) : NULL;
    if (!headers)
        return OD_ERR_NOMEM;
    int64_t timeout = min_timeout_ms > c->timeout_ms ? min_timeout_ms : c->timeout_ms;
    char why[CURL_ERROR_SIZE + 64] = "";
    od_status st = OD_ERR_UNAVAILABLE;
    for (int i = 0; i <= c->max_retries; i++) {
        if (i > 0) {
            reset_response(c, resp);
            backoff(c, i - 1);
        }
        attempt_result a = attempt(c, slot->curl, headers, body, len, timeout, resp, why,
                                   sizeof why);
        if (a != ATTEMPT_RETRY) {
            st = a == ATTEMPT_FINAL ? OD_OK : a == ATTEMPT_NOMEM ? OD_ERR_NOMEM : OD_ERR_CLOSED;
            break;
        }
        if (atomic_load(&c->closing)) {
            st = OD_ERR_CLOSED;
            break;
        }
        c->host->log(c->mod, OD_LOG_DEBUG, "%s %s attempt %d failed: %s", c->service, operation,
                     i + 1, why);
    }
    curl_slist_free_all(headers);
    if (st == OD_ERR_UNAVAILABLE)
        c->host->log(c->mod, OD_LOG_WARN, "%s %s failed after %d attempt(s): %s", c->service,
                     operation, (int)c->max_retries + 1, why);
    return st;
}

od_status odaws_call(odaws_client *c, const char *operation, const char *body, size_t len,
                     odaws_response *resp)
{
    return odaws_call_timeout(c, operation, body, len, 0, resp);
}

void odaws_response_clear(const odaws_client *c, odaws_response *resp)
{
    reset_response(c, resp);
}

/* ---- outcome helpers -------------------------------------------------- */

int odaws_ok(const odaws_response *r)
{
    return r->http_status >= 200 && r->http_status < 300;
}

int odaws_is_error(const odaws_response *r, const char *type)
{
    return !odaws_ok(r) && !strcmp(r->error_type, type);
}

od_status odaws_status(const odaws_response *r)
{
    static const struct {
        const char *type;
        od_status st;
    } map[] = {
        {"ResourceNotFoundException", OD_ERR_NOT_FOUND},
        {"QueueDoesNotExist", OD_ERR_NOT_FOUND},
        {"ConditionalCheckFailedException", OD_ERR_CONFLICT},
        {"ValidationException", OD_ERR_INVALID},
        {"InvalidParameterValue", OD_ERR_INVALID},
        {"MissingParameter", OD_ERR_INVALID},
        {"ItemCollectionSizeLimitExceededException", OD_ERR_TOO_LARGE},
    };
    if (odaws_ok(r))
        return OD_OK;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(r->error_type, map[i].type))
            return map[i].st;
    return OD_ERR_UNAVAILABLE;
}
