/*
 * tests/integration/orders_helpers.c - see orders_helpers.h.
 *
 * The server start mirrors harness.c (same credentials, same log line, same
 * temp-dir layout, so ih_server_stop() checks and removes it the same way);
 * only the config differs. Everything but oh_client runs on the main thread.
 */
#include "orders_helpers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define POLL_STEP_MS 10
#define CLIENT_TIMEOUT_MS 15000

/* Test defaults: a quick long poll and backoff keep the suites fast. */
#define DEFAULT_WORKER                                                                            \
    "threads = 2; poll_wait_ms = 20; backoff_base_ms = 50; backoff_max_ms = 200;"                 \
    " visibility_ms = 10000; autostart = true;"

void oh_pause_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ---- server ---------------------------------------------------------------- */

/* The whole order flow: every module, the three built-in steps, the given
 * queue_worker settings and storage/queue groups (owned by the harness).
 * 40 HTTP threads: the concurrency suite keeps 16 keep-alive clients plus
 * the main thread's connection busy at once (thread per connection). */
static const char *order_flow_config(const char *build_dir, const char *worker,
                                     const char *backends)
{
    return ih_printf(
            "server: { listen = \"127.0.0.1:0\"; threads = 40; max_body_bytes = %d;"
            " keep_alive_timeout_ms = 1000; log_level = \"info\"; };\n"
            "modules: { directory = \"%s/modules\";"
            " load = [\"auth\", \"users\", \"products\", \"orders\", \"queue_worker\","
            " \"step_validate\", \"step_reserve_stock\", \"step_complete\"]; };\n"
            "%s"
            "auth: { jwt_secret = \"%s\"; token_ttl_seconds = 3600;"
            " login_max_failures = 5; login_window_seconds = 300;"
            " argon2_iterations = 1; argon2_memory_kib = 1024; };\n"
            "users: { admin_email = \"%s\"; admin_password = \"%s\";"
            " argon2_iterations = 1; argon2_memory_kib = 1024; };\n"
            "orders: { pipeline = [\"validate\", \"reserve_stock\", \"complete\"];"
            " max_items = 100; };\n"
            "queue_worker: { %s };\n",
            IH_MAX_BODY, build_dir, backends, IH_JWT_SECRET, IH_ADMIN_EMAIL,
            IH_ADMIN_PASSWORD, worker ? worker : DEFAULT_WORKER);
}

void oh_server_start(ih_server *s, const char *worker)
{
    char backends[1024];
    ih_backend_groups(backends, sizeof backends, NULL);
    oh_server_start_with(s, worker, backends);
}

void oh_server_start_with(ih_server *s, const char *worker, const char *backends)
{
    const char *build = getenv("ORDERD_BUILD_DIR");
    ck_assert_msg(build != NULL, "ORDERD_BUILD_DIR is not set (run through ctest)");
    memset(s, 0, sizeof *s);
    ih_server_launch(s, order_flow_config(build, worker, backends));
}

/* ---- main-thread shortcuts -------------------------------------------------- */

const char *oh_admin(ih_server *s)
{
    return ih_login(s, IH_ADMIN_EMAIL, IH_ADMIN_PASSWORD);
}

const char *oh_customer(ih_server *s, const char *email)
{
    ih_register(s, "Customer", email, "customer-password-1");
    return ih_login(s, email, "customer-password-1");
}

int64_t oh_int(const ih_response *r, const char *path)
{
    struct json_object *v = ih_json(r, path);
    ck_assert_msg(json_object_is_type(v, json_type_int), "%s is not an integer: %.300s", path,
                  r->body);
    return json_object_get_int64(v);
}

const char *oh_product(ih_server *s, const char *admin, const char *name, const char *price,
                       int64_t stock)
{
    struct json_object *quoted = json_object_new_string(name); /* JSON-escapes the name */
    const char *body =
        ih_printf("{\"name\":%s,\"price\":%s,\"stock\":%lld}",
                  json_object_to_json_string_ext(quoted, JSON_C_TO_STRING_PLAIN), price,
                  (long long)stock);
    json_object_put(quoted);
    ih_response *r = ih_send_json(s, "POST", "/api/products", admin, body);
    ck_assert_msg(r->status == 201, "create product %s: %ld %.300s", name, r->status, r->body);
    return ih_strdup(ih_str(r, "data.id"));
}

int64_t oh_stock(ih_server *s, const char *token, const char *product_id)
{
    ih_response *r = ih_get(s, ih_printf("/api/products/%s", product_id), token);
    ck_assert_msg(r->status == 200, "product %s: %ld %.300s", product_id, r->status, r->body);
    return oh_int(r, "data.stock");
}

const char *oh_order(ih_server *s, const char *token, const char *product_id, int64_t quantity)
{
    const char *body = ih_printf("{\"items\":[{\"productId\":\"%s\",\"quantity\":%lld}]}",
                                 product_id, (long long)quantity);
    ih_response *r = ih_send_json(s, "POST", "/api/orders", token, body);
    ck_assert_msg(r->status == 201, "create order: %ld %.300s", r->status, r->body);
    ck_assert_str_eq(ih_str(r, "data.status"), "PENDING");
    return ih_strdup(ih_str(r, "data.id"));
}

static int is_terminal(const char *status)
{
    return status && (strcmp(status, "COMPLETED") == 0 || strcmp(status, "FAILED") == 0 ||
                      strcmp(status, "CANCELLED") == 0);
}

ih_response *oh_wait_terminal(ih_server *s, const char *token, const char *order_id,
                              int timeout_ms)
{
    const char *path = ih_printf("/api/orders/%s", order_id);
    int64_t deadline = ih_monotonic_ms() + timeout_ms;
    for (;;) {
        ih_response *r = ih_get(s, path, token);
        ck_assert_msg(r->status == 200, "GET %s: %ld %.300s", path, r->status, r->body);
        if (is_terminal(ih_str(r, "data.status")))
            return r;
        ck_assert_msg(ih_monotonic_ms() < deadline, "order %s still %s after %d ms", order_id,
                      ih_str(r, "data.status"), timeout_ms);
        oh_pause_ms(POLL_STEP_MS);
    }
}

const char *oh_history_reason(const ih_response *order, const char *status)
{
    struct json_object *history = ih_json(order, "data.history");
    ck_assert_msg(json_object_is_type(history, json_type_array), "no history: %.300s",
                  order->body);
    for (size_t i = 0; i < json_object_array_length(history); i++) {
        struct json_object *e = json_object_array_get_idx(history, i), *v = NULL;
        if (!json_object_object_get_ex(e, "status", &v) ||
            strcmp(json_object_get_string(v), status) != 0)
            continue;
        return json_object_object_get_ex(e, "reason", &v) ? json_object_get_string(v) : NULL;
    }
    return NULL;
}

size_t oh_count_status(ih_server *s, const char *admin, const char *status)
{
    size_t n = 0;
    const char *cursor = NULL;
    do {
        const char *path =
            cursor ? ih_printf("/api/orders?status=%s&limit=100&cursor=%s", status, cursor)
                   : ih_printf("/api/orders?status=%s&limit=100", status);
        ih_response *r = ih_get(s, path, admin);
        ck_assert_msg(r->status == 200, "%s: %ld %.300s", path, r->status, r->body);
        n += json_object_array_length(ih_json(r, "data"));
        const char *next = ih_str(r, "next");
        cursor = next ? ih_strdup(next) : NULL;
    } while (cursor);
    return n;
}

/* PENDING is counted before PROCESSING: orders only move forward and none
 * is being created, so "none pending, then none processing" means all are
 * terminal. queueDepth 0 means the worker also finished the messages of
 * cancelled orders (whose compensation moves stock transiently). */
void oh_wait_drained(ih_server *s, const char *admin, int timeout_ms)
{
    int64_t deadline = ih_monotonic_ms() + timeout_ms;
    for (;;) {
        size_t pending = oh_count_status(s, admin, "PENDING");
        size_t processing = pending ? 0 : oh_count_status(s, admin, "PROCESSING");
        ih_response *w = ih_get(s, "/api/orders/worker/status", admin);
        ck_assert_int_eq(w->status, 200);
        struct json_object *depth = ih_json(w, "data.queueDepth");
        int empty = json_object_is_type(depth, json_type_int) && json_object_get_int64(depth) == 0;
        if (pending == 0 && processing == 0 && empty)
            return;
        ck_assert_msg(ih_monotonic_ms() < deadline,
                      "not drained after %d ms: %zu pending, %zu processing, worker %.200s",
                      timeout_ms, pending, processing, w->body);
        oh_pause_ms(POLL_STEP_MS * 5);
    }
}

/* ---- thread-safe client ------------------------------------------------------ */

typedef struct capture {
    FILE *body;
    int json_type;
    int replayed;
} capture;

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    return fwrite(data, size, n, ((capture *)arg)->body);
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    capture *cap = arg;
    size_t len = size * n;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0)
        cap->json_type = cap->replayed = 0;
    else if (len >= 30 && strncasecmp(data, "Content-Type: application/json", 30) == 0)
        cap->json_type = 1;
    else if (len >= 25 && strncasecmp(data, "Idempotent-Replayed: true", 25) == 0)
        cap->replayed = 1;
    return len;
}

int oh_client_init(oh_client *c, int port)
{
    memset(c, 0, sizeof *c);
    c->port = port;
    c->curl = curl_easy_init();
    return c->curl ? 0 : -1;
}

void oh_client_close(oh_client *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
    c->curl = NULL;
}

static int client_bad(oh_client *c, const char *method, const char *path, const char *what,
                      const char *body)
{
    if (c->bad++ == 0)
        snprintf(c->first_bad, sizeof c->first_bad, "%s %s: %s: %.300s", method, path, what,
                 body ? body : "");
    return -1;
}

/* The envelope check of harness.c, without ck_assert. */
static const char *envelope_problem(const oh_answer *a)
{
    struct json_object *code = NULL, *v = NULL;
    if (!json_object_is_type(a->json, json_type_object))
        return "body is not a JSON object";
    if (!json_object_object_get_ex(a->json, "statusCode", &code) ||
        !json_object_is_type(code, json_type_int) || json_object_get_int64(code) != a->status)
        return "statusCode does not match the HTTP status";
    if (!json_object_object_get_ex(a->json, "message", &v) ||
        !json_object_is_type(v, json_type_string))
        return "no message";
    if (a->status >= 400 && (!json_object_object_get_ex(a->json, "error", &v) ||
                             !json_object_is_type(v, json_type_string)))
        return "error answer without an error code";
    if (a->status < 400 && !json_object_object_get_ex(a->json, "data", NULL))
        return "success without data";
    return NULL;
}

static struct curl_slist *client_headers(const char *token, const char *key)
{
    char line[1200];
    struct curl_slist *list = curl_slist_append(NULL, "Expect:");
    list = curl_slist_append(list, "Content-Type: application/json");
    if (token) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", token);
        list = curl_slist_append(list, line);
    }
    if (key) {
        snprintf(line, sizeof line, "Idempotency-Key: %s", key);
        list = curl_slist_append(list, line);
    }
    return list;
}

int oh_call(oh_client *c, const char *method, const char *path, const char *token,
            const char *idempotency_key, const char *body, oh_answer *a)
{
    char url[1200], *text = NULL;
    size_t text_len = 0;
    capture cap = { .body = open_memstream(&text, &text_len) };
    struct curl_slist *list = client_headers(token, idempotency_key);
    memset(a, 0, sizeof *a);
    if (!cap.body || !list) {
        if (cap.body)
            fclose(cap.body);
        free(text);
        curl_slist_free_all(list);
        return client_bad(c, method, path, "out of memory", NULL);
    }
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", c->port, path);
    curl_easy_reset(c->curl); /* keeps the keep-alive connection */
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, (long)CLIENT_TIMEOUT_MS);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &cap);
    curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, &cap);
    if (body) {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    }
    CURLcode rc = curl_easy_perform(c->curl);
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &a->status);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(list);
    fclose(cap.body);

    const char *problem = NULL;
    if (rc != CURLE_OK)
        problem = curl_easy_strerror(rc);
    else if (a->status >= 500 && a->status != 503)
        problem = "server error";
    else if (!cap.json_type)
        problem = "Content-Type is not application/json";
    else if (!(a->json = json_tokener_parse(text)))
        problem = "body is not JSON";
    else
        problem = envelope_problem(a);
    a->replayed = cap.replayed;
    int ret = problem ? client_bad(c, method, path, problem, text) : 0;
    free(text);
    return ret;
}

const char *oh_data_str(const oh_answer *a, const char *key)
{
    struct json_object *data = NULL, *v = NULL;
    if (!json_object_object_get_ex(a->json, "data", &data) ||
        !json_object_object_get_ex(data, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

void oh_answer_free(oh_answer *a)
{
    json_object_put(a->json);
    a->json = NULL;
}
