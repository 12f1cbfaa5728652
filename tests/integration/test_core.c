/*
 * integ_core: the HTTP core of a real orderd process - envelopes, routing
 * errors, CORS, request ids, metrics, body limits, malformed requests,
 * keep-alive and graceful shutdown.
 */
#include "harness.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static ih_server srv; /* the "http" case's shared server */
static ih_server own; /* one per "shutdown" test */

static void start_shared(void)
{
    ih_server_start(&srv, NULL);
}

static void stop_shared(void)
{
    ih_server_stop(&srv);
}

static const char *raw_body(const char *raw)
{
    const char *p = strstr(raw, "\r\n\r\n");
    return p ? p + 4 : "";
}

static int has_member(struct json_object *array, const char *value)
{
    for (size_t i = 0; i < json_object_array_length(array); i++) {
        const char *s = json_object_get_string(json_object_array_get_idx(array, i));
        if (s && strcmp(s, value) == 0)
            return 1;
    }
    return 0;
}

static void assert_health(const char *path)
{
    ih_response *r = ih_get(&srv, path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(ih_str(r, "data.status"), "ok");
    ck_assert_ptr_nonnull(ih_str(r, "data.version"));
    struct json_object *uptime = ih_json(r, "data.uptimeSeconds");
    ck_assert_msg(json_object_is_type(uptime, json_type_int) && json_object_get_int64(uptime) >= 0,
                  "uptimeSeconds: %s", r->body);
    struct json_object *modules = ih_json(r, "data.modules");
    ck_assert_msg(json_object_is_type(modules, json_type_array), "modules: %s", r->body);
    ck_assert_msg(has_member(modules, "auth") && has_member(modules, "users"),
                  "modules lack auth/users: %s", r->body);
    ck_assert_ptr_nonnull(ih_json(r, "data.storage"));
    ck_assert_ptr_nonnull(ih_json(r, "data.queue"));
}

START_TEST(root_and_health_envelope)
{
    assert_health("/");
    assert_health("/health");
}
END_TEST

START_TEST(unknown_path_is_json_404)
{
    ih_assert_error(ih_get(&srv, "/no/such/path", NULL), 404, "not_found");
    /* CivetWeb patterns match by prefix; orderd's router must not. */
    ih_assert_error(ih_get(&srv, "/healthX", NULL), 404, "not_found");
    ih_assert_error(ih_get(&srv, "/api/usersX", NULL), 404, "not_found");
}
END_TEST

START_TEST(wrong_method_is_405_with_allow)
{
    ih_response *r = ih_request(&srv, "DELETE", "/health", NULL, NULL, 0);
    ih_assert_error(r, 405, "method_not_allowed");
    const char *allow = ih_header_value(r, "Allow");
    ck_assert_msg(allow && strstr(allow, "GET"), "Allow: %s", allow ? allow : "(none)");

    r = ih_request(&srv, "PUT", "/api/users/me", NULL, "{}", 2);
    ih_assert_error(r, 405, "method_not_allowed");
    allow = ih_header_value(r, "Allow");
    ck_assert_msg(allow && strstr(allow, "GET") && strstr(allow, "PATCH"), "Allow: %s",
                  allow ? allow : "(none)");
}
END_TEST

START_TEST(cors_preflight_not_permissive)
{
    const char *headers[] = { "Origin: https://evil.example",
                              "Access-Control-Request-Method: DELETE",
                              "Access-Control-Request-Headers: authorization", NULL };
    ih_response *r = ih_request(&srv, "OPTIONS", "/api/users/me", headers, NULL, 0);
    ck_assert_msg(r->curl == CURLE_OK, "curl %d", (int)r->curl);
    const char *origin = ih_header_value(r, "Access-Control-Allow-Origin");
    ck_assert_msg(!origin || (strcmp(origin, "*") != 0 && !strstr(origin, "evil.example")),
                  "preflight allowed origin %s", origin);
    const char *methods = ih_header_value(r, "Access-Control-Allow-Methods");
    ck_assert_msg(!methods || (!strstr(methods, "DELETE") && strcmp(methods, "*") != 0),
                  "preflight allowed methods %s", methods);
    ck_assert_msg(r->status >= 200 && r->status < 500, "preflight status %ld", r->status);
}
END_TEST

START_TEST(request_id_echoed_or_generated)
{
    const char *given[] = { "X-Request-Id: integ-req-42", NULL };
    ih_response *r = ih_request(&srv, "GET", "/health", given, NULL, 0);
    ck_assert_str_eq(ih_header_value(r, "X-Request-Id"), "integ-req-42");

    /* Errors carry it too. */
    r = ih_request(&srv, "GET", "/nope", given, NULL, 0);
    ck_assert_str_eq(ih_header_value(r, "X-Request-Id"), "integ-req-42");

    /* Ids that could smuggle something into logs or headers are replaced. */
    const char *hostile[] = { "X-Request-Id: a b\"c<script>", NULL };
    const char *id = ih_header_value(ih_request(&srv, "GET", "/health", hostile, NULL, 0),
                                     "X-Request-Id");
    ck_assert_msg(id && *id && !strpbrk(id, " \"<"), "hostile id echoed: %s", id);
    const char *long_id[] = { ih_printf("X-Request-Id: %0600d", 7), NULL };
    id = ih_header_value(ih_request(&srv, "GET", "/health", long_id, NULL, 0), "X-Request-Id");
    ck_assert_msg(id && *id && strlen(id) < 600, "600-char id echoed");

    const char *a = ih_header_value(ih_get(&srv, "/health", NULL), "X-Request-Id");
    const char *b = ih_header_value(ih_get(&srv, "/health", NULL), "X-Request-Id");
    ck_assert_msg(a && *a && b && *b, "no generated X-Request-Id");
    ck_assert_str_ne(a, b);
}
END_TEST

START_TEST(metrics_count_requests)
{
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(ih_get(&srv, "/health", NULL)->status, 200);
    ih_response *r = ih_get(&srv, "/metrics", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_msg(strstr(r->body, "orderd_http_requests_total"), "metrics: %.500s", r->body);
    const char *type = ih_header_value(r, "Content-Type");
    ck_assert_msg(type && strncmp(type, "text/plain", 10) == 0, "metrics type %s", type);
}
END_TEST

static char *big_json(size_t n)
{
    char *body = ih_printf("%*s", (int)n, "");
    memcpy(body, "{\"name\":\"", 9);
    memset(body + 9, 'a', n - 9 - 2);
    memcpy(body + n - 2, "\"}", 2);
    return body;
}

START_TEST(body_over_limit_is_413)
{
    char *body = big_json(IH_MAX_BODY + 1);
    const char *json[] = { "Content-Type: application/json", NULL };
    ih_response *r = ih_request(&srv, "POST", "/api/users", json, body, strlen(body));
    ih_assert_error(r, 413, "payload_too_large");

    /* Chunked: no Content-Length to check up front. */
    const char *chunked[] = { "Content-Type: application/json", "Transfer-Encoding: chunked",
                              NULL };
    r = ih_request(&srv, "POST", "/api/users", chunked, body, strlen(body));
    ih_assert_error(r, 413, "payload_too_large");

    /* Exactly at the limit is read and judged on content, not size. */
    body = big_json(IH_MAX_BODY);
    r = ih_request(&srv, "POST", "/api/users", json, body, strlen(body));
    ih_assert_error(r, 400, "validation_failed");
}
END_TEST

START_TEST(short_body_is_400_or_closed)
{
    static const char req[] = "POST /api/users HTTP/1.1\r\nHost: x\r\n"
                              "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                              "{\"name\":\"a\"}";
    char out[8192];
    ssize_t n = ih_raw(&srv, req, sizeof req - 1, 1, out, sizeof out, 30000);
    ck_assert_int_ge(n, 0);
    int status = ih_raw_status(out);
    ck_assert_msg(n == 0 || status == 400, "short body got: %.300s", out);
    ck_assert_int_eq(ih_get(&srv, "/health", NULL)->status, 200);
}
END_TEST

START_TEST(malformed_http_is_json_400)
{
    /* Headers beyond CivetWeb's 16 kB request buffer are malformed too. */
    char *huge_header = ih_printf("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: %20000d\r\n\r\n", 1);
    const char *const bad[] = {
        "THIS IS NOT HTTP\r\n\r\n",
        "GET  HTTP/1.1\r\n\r\n",
        "GET /health HTTP/1.1\r\nNo colon here\r\n\r\n",
        huge_header,
    };
    /* Well-formed but unusable framing: a 400 (CivetWeb says 411; we map it). */
    static const char *const bad_length[] = {
        "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        "POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    };
    for (size_t i = 0; i < sizeof bad_length / sizeof *bad_length; i++) {
        char out[8192];
        ssize_t n = ih_raw(&srv, bad_length[i], strlen(bad_length[i]), 0, out, sizeof out, 15000);
        ck_assert_int_gt(n, 0);
        int status = ih_raw_status(out);
        ck_assert_msg(status == 400, "length %zu got: %.300s", i, out);
        ck_assert_msg(strstr(raw_body(out), "\"error\":\"validation_failed\""), "length %zu: %.300s", i, out);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char out[8192];
        ssize_t n = ih_raw(&srv, bad[i], strlen(bad[i]), 0, out, sizeof out, 15000);
        ck_assert_int_gt(n, 0);
        ck_assert_msg(ih_raw_status(out) == 400, "request %zu got: %.300s", i, out);
        ck_assert_msg(strcasestr(out, "Content-Type: application/json"), "request %zu: %.300s", i,
                      out);
        ck_assert_msg(strstr(raw_body(out), "\"statusCode\":400"), "request %zu: %.300s", i, out);
    }
    ck_assert_int_eq(ih_get(&srv, "/health", NULL)->status, 200);
}
END_TEST

START_TEST(keep_alive_reuses_connection)
{
    ih_reset_connection();
    ih_response *a = ih_get(&srv, "/health", NULL);
    ih_response *b = ih_get(&srv, "/health", NULL);
    ck_assert_int_eq(a->status, 200);
    ck_assert_int_eq(b->status, 200);
    ck_assert_int_eq(a->new_connections, 1);
    ck_assert_msg(b->new_connections == 0, "second request opened a new connection");
}
END_TEST

START_TEST(errors_are_json)
{
    /* ih_request already insists on JSON; this walks the error codes. */
    ih_assert_error(ih_get(&srv, "/api/users/me", NULL), 401, "unauthorized");
    ih_assert_error(ih_send_json(&srv, "POST", "/api/users", NULL, "{"), 400, "invalid_json");
    ih_response *r = ih_request(&srv, "BREW", "/health", NULL, NULL, 0);
    ck_assert_msg(r->status == 405 || r->status == 400, "BREW -> %ld", r->status);
}
END_TEST

/* ---- shutdown: every test owns its server ---- */

START_TEST(sigterm_exits_zero)
{
    ih_server_start(&own, NULL);
    ck_assert_int_eq(ih_get(&own, "/health", NULL)->status, 200);
    ck_assert_int_eq(ih_server_stop(&own), 0);
}
END_TEST

/* GET /health on a fresh connection: the HTTP status, or 0 when the
 * connection was refused or closed without an answer. */
static int probe_health(ih_server *s, char *out, size_t cap)
{
    static const char req[] = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    ssize_t n = ih_raw(s, req, sizeof req - 1, 0, out, cap, 5000);
    if (n < 0)
        out[0] = '\0';
    return n > 0 ? ih_raw_status(out) : 0;
}

/* Poll until the server refuses work. Before the signal is handled a 200
 * is fine; after the first refusal, never again. */
static void wait_until_refusing(ih_server *s)
{
    char out[4096];
    int status = 200;
    int64_t deadline = ih_monotonic_ms() + 10000;
    while (status == 200 && ih_monotonic_ms() < deadline) {
        status = probe_health(s, out, sizeof out);
        ck_assert_msg(status == 0 || status == 200 || status == 503, "during drain: %.300s", out);
        if (status == 503)
            ck_assert_msg(strstr(raw_body(out), "\"error\":\"unavailable\""), "%.300s", out);
    }
    ck_assert_msg(status != 200, "server still answers 200 10 s after SIGTERM");
    status = probe_health(s, out, sizeof out);
    ck_assert_msg(status == 0 || status == 503, "after refusing: %.300s", out);
}

/* orderd_http_in_flight from /metrics; the scrape itself counts as one. */
static long in_flight(ih_server *s)
{
    ih_response *r = ih_get(s, "/metrics", NULL);
    const char *line = strstr(r->body, "\norderd_http_in_flight ");
    return line ? strtol(line + strlen("\norderd_http_in_flight "), NULL, 10) : -1;
}

START_TEST(sigterm_drains_in_flight_request)
{
    ih_server_start(&own, NULL);
    static const char body[] = "{\"name\":\"Drain\",\"email\":\"drain@test.local\","
                               "\"password\":\"drain-password\"}";
    char head[256];
    int head_len =
        snprintf(head, sizeof head,
                 "POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n",
                 sizeof body - 1);
    int fd = ih_connect(&own);
    ck_assert_int_ge(fd, 0);
    /* Headers and half the body: the request is now inside the server. */
    ck_assert_int_eq(ih_send_all(fd, head, (size_t)head_len), 0);
    ck_assert_int_eq(ih_send_all(fd, body, 10), 0);
    /* Wait until a handler really holds it (reading the body). A request
     * still in CivetWeb's accept queue when SIGTERM arrives is dropped
     * without an answer: the core only drains what reached its handler. */
    int64_t deadline = ih_monotonic_ms() + 10000;
    while (in_flight(&own) < 2 && ih_monotonic_ms() < deadline)
        ih_release();
    ck_assert_int_ge(in_flight(&own), 2);
    ih_reset_connection();

    ck_assert_int_eq(kill(own.pid, SIGTERM), 0);
    wait_until_refusing(&own);

    /* The rest of the body: the response must still arrive in full. */
    (void)ih_send_all(fd, body + 10, sizeof body - 1 - 10);
    char out[4096];
    ssize_t n = ih_read_all(fd, out, sizeof out, 15000);
    close(fd);
    int status = ih_raw_status(out);
    ck_assert_msg(n > 0 && (status == 201 || status == 503),
                  "in-flight request got %zd bytes: %.300s", n, out);
    ck_assert_msg(strstr(raw_body(out), "\"statusCode\""), "truncated response: %.300s", out);
    ck_assert_int_eq(ih_server_stop(&own), 0);
}
END_TEST

static void release(void)
{
    ih_release();
}

/* A failed shutdown test leaves its server running; stop it here. */
static void release_and_stop(void)
{
    ih_release();
    if (own.pid > 0)
        ih_server_stop(&own);
}

static Suite *core_suite(void)
{
    Suite *s = suite_create("integ_core");
    TCase *http = tcase_create("http");
    tcase_add_unchecked_fixture(http, start_shared, stop_shared);
    tcase_add_checked_fixture(http, NULL, release);
    tcase_add_test(http, root_and_health_envelope);
    tcase_add_test(http, unknown_path_is_json_404);
    tcase_add_test(http, wrong_method_is_405_with_allow);
    tcase_add_test(http, cors_preflight_not_permissive);
    tcase_add_test(http, request_id_echoed_or_generated);
    tcase_add_test(http, metrics_count_requests);
    tcase_add_test(http, body_over_limit_is_413);
    tcase_add_test(http, short_body_is_400_or_closed);
    tcase_add_test(http, malformed_http_is_json_400);
    tcase_add_test(http, keep_alive_reuses_connection);
    tcase_add_test(http, errors_are_json);
    suite_add_tcase(s, http);

    TCase *shutdown = tcase_create("shutdown");
    tcase_add_checked_fixture(shutdown, NULL, release_and_stop);
    tcase_add_test(shutdown, sigterm_exits_zero);
    tcase_add_test(shutdown, sigterm_drains_in_flight_request);
    suite_add_tcase(s, shutdown);
    return s;
}

int main(void)
{
    return ih_run_suite(core_suite());
}
