/*
 * integ_orders: /api/orders and the queue worker against a real orderd -
 * create in both item forms, bad bodies, reads with history, who sees what,
 * admin filters, cancel, Idempotency-Key replays, the worker completing and
 * failing orders, its status/stop/start routes, process-queue and metrics.
 *
 * Case "worker": one server whose workers run (autostart). Case "manual": a
 * fresh server per test with autostart = false, so queue contents, counters
 * and metrics are exactly what the test put there. Waiting is always a poll
 * with a deadline (oh_wait_terminal), never a fixed sleep. Case
 * "shared_file", only with ORDERD_TEST_BACKEND=sqlite: the database file
 * read back holds one queue message per order.
 */
#include "orders_helpers.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#define WAIT_MS 15000
#define NO_SUCH_ID "00000000-0000-7000-8000-000000000000"

static ih_server srv;

static void start_auto(void)
{
    oh_server_start(&srv, NULL);
}

static void start_manual(void)
{
    oh_server_start(&srv, "threads = 2; poll_wait_ms = 20; backoff_base_ms = 50;"
                          " backoff_max_ms = 200; autostart = false;");
}

static void stop_server(void)
{
    if (srv.pid > 0)
        ih_server_stop(&srv);
}

static void release(void)
{
    ih_release();
}

static void release_and_stop(void)
{
    ih_release();
    stop_server();
}

static const char *bearer(const char *token)
{
    return ih_printf("Authorization: Bearer %s", token);
}

static ih_response *post_order(const char *token, const char *body)
{
    return ih_send_json(&srv, "POST", "/api/orders", token, body);
}

static ih_response *post_order_keyed(const char *token, const char *key, const char *body)
{
    const char *headers[] = { "Content-Type: application/json", bearer(token),
                              ih_printf("Idempotency-Key: %s", key), NULL };
    return ih_request(&srv, "POST", "/api/orders", headers, body, strlen(body));
}

static ih_response *cancel(const char *token, const char *order_id)
{
    const char *headers[] = { token ? bearer(token) : NULL, NULL };
    return ih_request(&srv, "DELETE", ih_printf("/api/orders/%s", order_id), headers, NULL, 0);
}

static ih_response *admin_post(const char *token, const char *path)
{
    const char *headers[] = { token ? bearer(token) : NULL, NULL };
    return ih_request(&srv, "POST", path, headers, NULL, 0);
}

/* Number of orders in one list answer (limit 100 is enough for a test). */
static size_t own_orders(const char *token)
{
    ih_response *r = ih_get(&srv, "/api/orders?limit=100", token);
    ck_assert_int_eq(r->status, 200);
    return json_object_array_length(ih_json(r, "data"));
}

/* The string member key of element i of the array at data. */
static const char *item_str(const ih_response *r, size_t i, const char *key)
{
    struct json_object *e = json_object_array_get_idx(ih_json(r, "data"), i), *v = NULL;
    return json_object_object_get_ex(e, key, &v) ? json_object_get_string(v) : NULL;
}

/* "\"id\",\"id\",..." n times: the string form of n units. */
static const char *repeat_item(const char *product_id, int n)
{
    const char *s = "";
    for (int i = 0; i < n; i++)
        s = ih_printf("%s%s\"%s\"", s, i ? "," : "", product_id);
    return s;
}

/* ---- create ---- */

START_TEST(create_in_both_item_forms)
{
    const char *admin = oh_admin(&srv);
    const char *t = oh_customer(&srv, "forms@test.local");
    const char *p = oh_product(&srv, admin, "Form Pen", "2.50", 100);
    const char *q = oh_product(&srv, admin, "Form Ink", "0.10", 100);

    /* String form: one unit per entry, repeats add up. */
    ih_response *r = post_order(t, ih_printf("{\"items\":[\"%s\",\"%s\",\"%s\"]}", p, q, p));
    ck_assert_msg(r->status == 201, "%ld %s", r->status, r->body);
    const char *first = ih_strdup(ih_str(r, "data.id"));
    ck_assert_str_eq(ih_str(r, "data.status"), "PENDING");
    ck_assert_str_eq(ih_str(r, "data.priority"), "normal");
    ck_assert_ptr_nonnull(ih_str(r, "data.customerId"));
    ck_assert_ptr_nonnull(ih_str(r, "data.createdAt"));
    ck_assert_ptr_nonnull(ih_str(r, "data.updatedAt"));
    ck_assert_uint_eq(json_object_array_length(ih_json(r, "data.items")), 2);
    const char *pen_line =
        ih_printf("{\"productId\":\"%s\",\"quantity\":2,\"unitPrice\":2.5}", p);
    ck_assert_msg(strstr(r->body, pen_line) != NULL, "pen line: %s", r->body);
    ck_assert_msg(strstr(r->body, "\"total\":5.1}") != NULL, "total: %s", r->body);

    /* Object form, priority high. */
    r = post_order(t, ih_printf("{\"items\":[{\"productId\":\"%s\",\"quantity\":3}],"
                                "\"priority\":\"high\"}", q));
    ck_assert_msg(r->status == 201, "%ld %s", r->status, r->body);
    ck_assert_str_eq(ih_str(r, "data.priority"), "high");
    ck_assert_msg(strstr(r->body, "\"total\":0.3}") != NULL, "total: %s", r->body);
    const char *id = ih_strdup(ih_str(r, "data.id"));
    ck_assert_str_eq(ih_str(oh_wait_terminal(&srv, t, id, WAIT_MS), "data.status"), "COMPLETED");
    ck_assert_str_eq(ih_str(oh_wait_terminal(&srv, t, first, WAIT_MS), "data.status"),
                     "COMPLETED");
    ck_assert_int_eq(oh_stock(&srv, t, q), 96);
    ck_assert_int_eq(oh_stock(&srv, t, p), 98);

    /* 100 lines is the limit, not over it. */
    const char *lines = repeat_item(p, 100);
    r = post_order(t, ih_printf("{\"items\":[%s]}", lines));
    ck_assert_msg(r->status == 201, "100 lines: %ld %s", r->status, r->body);
}
END_TEST

/* tmpl with every "PID" replaced by product_id. */
static const char *with_product(const char *tmpl, const char *product_id)
{
    const char *out = "", *pid;
    while ((pid = strstr(tmpl, "PID")) != NULL) {
        out = ih_printf("%s%.*s%s", out, (int)(pid - tmpl), tmpl, product_id);
        tmpl = pid + 3;
    }
    return ih_printf("%s%s", out, tmpl);
}

typedef struct bad_body {
    const char *body; /* "PID" stands for a real product id */
    long status;
    const char *code;
} bad_body;

static const bad_body bad_orders[] = {
    { "{", 400, "invalid_json" },
    { "[]", 400, "invalid_json" },
    { "{}", 400, "validation_failed" },
    { "{\"items\":[]}", 400, "validation_failed" },
    { "{\"items\":\"PID\"}", 400, "validation_failed" },
    { "{\"items\":{}}", 400, "validation_failed" },
    { "{\"items\":null}", 400, "validation_failed" },
    { "{\"items\":[123]}", 400, "validation_failed" },
    { "{\"items\":[{\"productId\":\"PID\",\"quantity\":0}]}", 400, "validation_failed" },
    { "{\"items\":[{\"productId\":\"PID\",\"quantity\":-1}]}", 400, "validation_failed" },
    { "{\"items\":[{\"productId\":\"PID\",\"quantity\":1.5}]}", 400, "validation_failed" },
    { "{\"items\":[{\"productId\":\"PID\",\"quantity\":\"2\"}]}", 400, "validation_failed" },
    { "{\"items\":[{\"productId\":\"PID\",\"quantity\":1000001}]}", 400, "validation_failed" },
    { "{\"items\":[{\"productId\":\"PID\",\"quantity\":99999999999999999999}]}", 400,
      "invalid_json" },
    { "{\"items\":[{\"productId\":\"PID\",\"quantity\":600000},"
      "{\"productId\":\"PID\",\"quantity\":600000}]}", 400, "validation_failed" },
    { "{\"items\":[{\"productId\":\"PID\"}]}", 400, "validation_failed" },
    { "{\"items\":[{\"quantity\":1}]}", 400, "validation_failed" },
    { "{\"items\":[{\"productId\":\"\",\"quantity\":1}]}", 400, "validation_failed" },
    { "{\"items\":[{\"productId\":\"PID\",\"quantity\":1,\"x\":1}]}", 400, "validation_failed" },
    { "{\"items\":[\"PID\",{\"productId\":\"PID\",\"quantity\":1}]}", 400, "validation_failed" },
    { "{\"items\":[\"PID\"],\"priority\":\"urgent\"}", 400, "validation_failed" },
    { "{\"items\":[\"PID\"],\"priority\":1}", 400, "validation_failed" },
    { "{\"items\":[\"PID\"],\"status\":\"COMPLETED\"}", 400, "validation_failed" },
    { "{\"items\":[\"" NO_SUCH_ID "\"]}", 404, "not_found" },
    { "{\"items\":[\"PID\",\"" NO_SUCH_ID "\"]}", 404, "not_found" },
};

START_TEST(create_rejects_bad_bodies)
{
    const char *admin = oh_admin(&srv);
    const char *t = oh_customer(&srv, "bad-bodies@test.local");
    const char *p = oh_product(&srv, admin, "Bad Body Cup", "1", 10);
    for (size_t i = 0; i < sizeof bad_orders / sizeof *bad_orders; i++) {
        const bad_body *b = &bad_orders[i];
        const char *body = with_product(b->body, p);
        ih_response *r = post_order(t, body);
        ck_assert_msg(r->status == b->status, "case %zu %s -> %ld %s", i, body, r->status, r->body);
        ih_assert_error(r, b->status, b->code);
    }
    ih_assert_error(post_order(t, ih_printf("{\"items\":[%s]}", repeat_item(p, 101))), 400,
                    "validation_failed");
    ih_assert_error(post_order(NULL, ih_printf("{\"items\":[\"%s\"]}", p)), 401, "unauthorized");

    /* 10 lines of 10^6 units at the highest price: 10^19 cents > INT64_MAX. */
    const char *lines = "";
    for (int i = 0; i < 10; i++) {
        const char *costly = oh_product(&srv, admin, ih_printf("Costly %d", i), "10000000000", 0);
        lines = ih_printf("%s%s{\"productId\":\"%s\",\"quantity\":1000000}", lines,
                          i ? "," : "", costly);
    }
    ih_assert_error(post_order(t, ih_printf("{\"items\":[%s]}", lines)), 400,
                    "validation_failed");
    /* Nothing was stored, queued or reserved. */
    ck_assert_uint_eq(own_orders(t), 0);
    ck_assert_int_eq(oh_stock(&srv, t, p), 10);
}
END_TEST

/* ---- reads ---- */

static void assert_history(const ih_response *r, const char *const *want, size_t n)
{
    struct json_object *h = ih_json(r, "data.history");
    ck_assert_msg(json_object_is_type(h, json_type_array) && json_object_array_length(h) == n,
                  "history: %s", r->body);
    for (size_t i = 0; i < n; i++) {
        struct json_object *e = json_object_array_get_idx(h, i), *v = NULL;
        ck_assert_msg(json_object_object_get_ex(e, "status", &v) &&
                          strcmp(json_object_get_string(v), want[i]) == 0,
                      "history[%zu] is not %s: %s", i, want[i], r->body);
        ck_assert_msg(json_object_object_get_ex(e, "at", &v) && json_object_get_string_len(v) > 0,
                      "history[%zu] without at: %s", i, r->body);
    }
}

START_TEST(get_with_history_only_for_owner_and_admin)
{
    const char *admin = oh_admin(&srv);
    const char *owner = oh_customer(&srv, "owner@test.local");
    const char *other = oh_customer(&srv, "other@test.local");
    const char *p = oh_product(&srv, admin, "History Mug", "4", 10);
    const char *id = oh_order(&srv, owner, p, 2);

    ih_response *r = oh_wait_terminal(&srv, owner, id, WAIT_MS);
    ck_assert_str_eq(ih_str(r, "data.status"), "COMPLETED");
    static const char *const flow[] = { "PENDING", "PROCESSING", "COMPLETED" };
    assert_history(r, flow, 3);
    /* updatedAt follows the last status change. */
    struct json_object *last = json_object_array_get_idx(ih_json(r, "data.history"), 2), *at;
    ck_assert(json_object_object_get_ex(last, "at", &at));
    ck_assert_str_eq(ih_str(r, "data.updatedAt"), json_object_get_string(at));
    ck_assert_int_eq(oh_stock(&srv, owner, p), 8);

    const char *path = ih_printf("/api/orders/%s", id);
    ck_assert_int_eq(ih_get(&srv, path, admin)->status, 200);
    /* Another customer learns nothing, not even that the id exists. */
    ih_assert_error(ih_get(&srv, path, other), 404, "not_found");
    ih_assert_error(cancel(other, id), 404, "not_found");
    ih_assert_error(ih_get(&srv, path, NULL), 401, "unauthorized");
    ih_assert_error(ih_get(&srv, "/api/orders/" NO_SUCH_ID, owner), 404, "not_found");
    ih_response *odd = ih_get(&srv, "/api/orders/%2e%2e%2fx", owner);
    ck_assert_msg(odd->status >= 400 && odd->status < 500, "odd id -> %ld", odd->status);

    /* Finished orders cannot be cancelled, and stay as they are. */
    ih_assert_error(cancel(owner, id), 409, "conflict");
    ih_assert_error(cancel(admin, id), 409, "conflict");
    ck_assert_str_eq(ih_str(ih_get(&srv, path, owner), "data.status"), "COMPLETED");
    ck_assert_int_eq(oh_stock(&srv, owner, p), 8);
}
END_TEST

START_TEST(insufficient_stock_fails_with_reason)
{
    const char *admin = oh_admin(&srv);
    const char *t = oh_customer(&srv, "short@test.local");
    const char *p = oh_product(&srv, admin, "Scarce Gem", "100", 1);
    const char *q = oh_product(&srv, admin, "Plenty Stone", "1", 50);
    /* Two lines: the one that fits must be given back too. */
    ih_response *r = post_order(t, ih_printf("{\"items\":[{\"productId\":\"%s\",\"quantity\":5},"
                                             "{\"productId\":\"%s\",\"quantity\":2}]}", q, p));
    ck_assert_int_eq(r->status, 201);
    r = oh_wait_terminal(&srv, t, ih_strdup(ih_str(r, "data.id")), WAIT_MS);
    ck_assert_str_eq(ih_str(r, "data.status"), "FAILED");
    const char *reason = oh_history_reason(r, "FAILED");
    ck_assert_msg(reason && strcmp(reason, "insufficient_stock") == 0, "reason: %s", r->body);
    ck_assert_int_eq(oh_stock(&srv, t, p), 1);
    ck_assert_int_eq(oh_stock(&srv, t, q), 50);
    ih_assert_error(cancel(t, ih_str(r, "data.id")), 409, "conflict");
}
END_TEST

START_TEST(lists_own_newest_first_and_admin_filters)
{
    const char *admin = oh_admin(&srv);
    const char *a = oh_customer(&srv, "list-a@test.local");
    const char *b = oh_customer(&srv, "list-b@test.local");
    const char *p = oh_product(&srv, admin, "List Spoon", "1", 100);
    const char *a1 = oh_order(&srv, a, p, 1);
    const char *a2 = oh_order(&srv, a, p, 2);
    const char *b1 = oh_order(&srv, b, p, 1);
    ih_response *got = oh_wait_terminal(&srv, a, a1, WAIT_MS);
    const char *a_id = ih_strdup(ih_str(got, "data.customerId"));
    oh_wait_terminal(&srv, a, a2, WAIT_MS);
    oh_wait_terminal(&srv, b, b1, WAIT_MS);

    ih_response *r = ih_get(&srv, "/api/orders", a);
    ck_assert_int_eq(r->status, 200);
    ck_assert_uint_eq(json_object_array_length(ih_json(r, "data")), 2);
    ck_assert_str_eq(item_str(r, 0, "id"), a2); /* newest first */
    ck_assert_str_eq(item_str(r, 1, "id"), a1);
    ck_assert_msg(json_object_object_get_ex(r->json, "next", NULL), "no next: %s", r->body);
    r = ih_get(&srv, "/api/orders?limit=1", a);
    ck_assert_uint_eq(json_object_array_length(ih_json(r, "data")), 1);
    ck_assert_str_eq(item_str(r, 0, "id"), a2);
    ck_assert_ptr_nonnull(ih_str(r, "next"));
    r = ih_get(&srv, ih_printf("/api/orders?limit=1&cursor=%s", ih_str(r, "next")), a);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(item_str(r, 0, "id"), a1);

    /* The admin sees everyone's, and filters by customer or status. */
    r = ih_get(&srv, ih_printf("/api/orders?customerId=%s&limit=100", a_id), admin);
    ck_assert_int_eq(r->status, 200);
    ck_assert_uint_eq(json_object_array_length(ih_json(r, "data")), 2);
    for (size_t i = 0; i < 2; i++)
        ck_assert_str_eq(item_str(r, i, "customerId"), a_id);
    r = ih_get(&srv, "/api/orders?status=COMPLETED&limit=100", admin);
    ck_assert_int_eq(r->status, 200);
    size_t completed = json_object_array_length(ih_json(r, "data"));
    ck_assert_uint_ge(completed, 3);
    for (size_t i = 0; i < completed; i++)
        ck_assert_str_eq(item_str(r, i, "status"), "COMPLETED");
    ck_assert_uint_ge(json_object_array_length(ih_json(ih_get(&srv, "/api/orders?limit=100",
                                                              admin), "data")), 3);
    ck_assert_uint_eq(oh_count_status(&srv, admin, "CANCELLED"), 0);

    static const char *const bad_admin[] = { "status=DONE", "status=", "customerId=x%20y",
                                             "limit=0", "limit=101", "cursor=garbage",
                                             "status=PENDING&customerId=" NO_SUCH_ID };
    for (size_t i = 0; i < sizeof bad_admin / sizeof *bad_admin; i++)
        ih_assert_error(ih_get(&srv, ih_printf("/api/orders?%s", bad_admin[i]), admin), 400,
                        "validation_failed");
    /* Filters are for admins. */
    ih_assert_error(ih_get(&srv, "/api/orders?status=COMPLETED", a), 400, "validation_failed");
    ih_assert_error(ih_get(&srv, ih_printf("/api/orders?customerId=%s", a_id), b), 400,
                    "validation_failed");
    ih_assert_error(ih_get(&srv, "/api/orders", NULL), 401, "unauthorized");
}
END_TEST

/* ---- idempotency ---- */

START_TEST(idempotency_key_replays_and_conflicts)
{
    const char *admin = oh_admin(&srv);
    const char *t = oh_customer(&srv, "idem@test.local");
    const char *u = oh_customer(&srv, "idem-other@test.local");
    const char *p = oh_product(&srv, admin, "Idem Plate", "3", 100);
    const char *object_form =
        ih_printf("{\"items\":[{\"productId\":\"%s\",\"quantity\":2}],\"priority\":\"normal\"}", p);

    /* An unknown product does not claim the key. */
    ih_assert_error(post_order_keyed(t, "key-1", "{\"items\":[\"" NO_SUCH_ID "\"]}"), 404,
                    "not_found");
    ih_response *first = post_order_keyed(t, "key-1", object_form);
    ck_assert_msg(first->status == 201, "%ld %s", first->status, first->body);
    ck_assert_ptr_null(ih_header_value(first, "Idempotent-Replayed"));
    const char *id = ih_strdup(ih_str(first, "data.id"));

    /* Same request in the other item form, other key order: a replay. */
    const char *string_form =
        ih_printf("{\"priority\":\"normal\",\"items\":[\"%s\",\"%s\"]}", p, p);
    ih_response *again = post_order_keyed(t, "key-1", string_form);
    ck_assert_msg(again->status == 200, "%ld %s", again->status, again->body);
    ck_assert_str_eq(ih_header_value(again, "Idempotent-Replayed"), "true");
    ck_assert_str_eq(ih_str(again, "data.id"), id);
    ck_assert_uint_eq(own_orders(t), 1);

    /* Same key, different request. */
    ih_assert_error(post_order_keyed(t, "key-1", ih_printf("{\"items\":[\"%s\"]}", p)), 409,
                    "conflict");
    ih_assert_error(post_order_keyed(t, "key-1", ih_printf("{\"items\":[\"%s\",\"%s\"],"
                                                           "\"priority\":\"high\"}", p, p)),
                    409, "conflict");
    ck_assert_uint_eq(own_orders(t), 1);

    /* Keys are per user. */
    ih_response *theirs = post_order_keyed(u, "key-1", object_form);
    ck_assert_msg(theirs->status == 201, "%ld %s", theirs->status, theirs->body);
    ck_assert_str_ne(ih_str(theirs, "data.id"), id);
    ck_assert_uint_eq(own_orders(u), 1);

    ih_assert_error(post_order_keyed(t, "has space", object_form), 400, "validation_failed");
    ih_assert_error(post_order_keyed(t, ih_printf("%0129d", 1), object_form), 400,
                    "validation_failed");
    ck_assert_int_eq(post_order_keyed(t, ih_printf("%0128d", 1), object_form)->status, 201);

    /* Exactly two orders of 2 units for t, one for u: 6 units once all ran. */
    oh_wait_terminal(&srv, t, id, WAIT_MS);
    oh_wait_drained(&srv, admin, WAIT_MS);
    ck_assert_int_eq(oh_stock(&srv, t, p), 94);
}
END_TEST

/* ---- worker routes (last in the case: it stops and restarts the worker) ---- */

static void assert_worker_state(const ih_response *r, int running, int64_t threads)
{
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    struct json_object *v = ih_json(r, "data.running");
    ck_assert_msg(json_object_is_type(v, json_type_boolean) &&
                      json_object_get_boolean(v) == running,
                  "running: %s", r->body);
    ck_assert_int_eq(oh_int(r, "data.threads"), threads);
    static const char *const counters[] = { "data.processed", "data.failed", "data.retried",
                                            "data.deadLettered" };
    for (size_t i = 0; i < sizeof counters / sizeof *counters; i++)
        ck_assert_int_ge(oh_int(r, counters[i]), 0);
    ck_assert_ptr_nonnull(ih_json(r, "data.queueDepth"));
}

START_TEST(worker_routes_admin_only_stop_start)
{
    const char *admin = oh_admin(&srv);
    const char *t = oh_customer(&srv, "worker-routes@test.local");
    static const char *const posts[] = { "/api/orders/worker/start", "/api/orders/worker/stop",
                                         "/api/orders/process-queue" };
    ih_assert_error(ih_get(&srv, "/api/orders/worker/status", t), 403, "forbidden");
    ih_assert_error(ih_get(&srv, "/api/orders/worker/status", NULL), 401, "unauthorized");
    for (size_t i = 0; i < sizeof posts / sizeof *posts; i++) {
        ih_assert_error(admin_post(t, posts[i]), 403, "forbidden");
        ih_assert_error(admin_post(NULL, posts[i]), 401, "unauthorized");
    }

    assert_worker_state(ih_get(&srv, "/api/orders/worker/status", admin), 1, 2);
    assert_worker_state(admin_post(admin, "/api/orders/worker/stop"), 0, 0);
    assert_worker_state(admin_post(admin, "/api/orders/worker/stop"), 0, 0); /* idempotent */
    assert_worker_state(ih_get(&srv, "/api/orders/worker/status", admin), 0, 0);

    /* While stopped, an order waits in the queue. */
    const char *p = oh_product(&srv, admin, "Worker Bowl", "5", 3);
    const char *id = oh_order(&srv, t, p, 1);
    ih_response *w = ih_get(&srv, "/api/orders/worker/status", admin);
    ck_assert_int_eq(oh_int(w, "data.queueDepth"), 1);
    ck_assert_str_eq(ih_str(ih_get(&srv, ih_printf("/api/orders/%s", id), t), "data.status"),
                     "PENDING");

    assert_worker_state(admin_post(admin, "/api/orders/worker/start"), 1, 2);
    assert_worker_state(admin_post(admin, "/api/orders/worker/start"), 1, 2);
    ck_assert_str_eq(ih_str(oh_wait_terminal(&srv, t, id, WAIT_MS), "data.status"), "COMPLETED");
    ck_assert_int_eq(oh_stock(&srv, t, p), 2);
}
END_TEST

/* ---- manual worker: a fresh server per test ---- */

/* The value of one series line ("name{labels} value") in /metrics. */
static double metric(const ih_response *m, const char *series)
{
    const char *line = m->body;
    size_t len = strlen(series);
    while ((line = strstr(line, series)) != NULL) {
        if ((line == m->body || line[-1] == '\n') && line[len] == ' ')
            return strtod(line + len + 1, NULL);
        line += len;
    }
    ck_abort_msg("no series %s in /metrics", series);
    return -1;
}

START_TEST(cancel_pending_gives_nothing_back_twice)
{
    const char *admin = oh_admin(&srv);
    const char *t = oh_customer(&srv, "cancel@test.local");
    const char *u = oh_customer(&srv, "cancel-other@test.local");
    const char *p = oh_product(&srv, admin, "Cancel Vase", "12.5", 5);
    const char *mine = oh_order(&srv, t, p, 3);
    const char *by_admin = oh_order(&srv, t, p, 2);

    ih_assert_error(cancel(u, mine), 404, "not_found");
    ih_assert_error(cancel(NULL, mine), 401, "unauthorized");
    ih_response *r = cancel(t, mine);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_str_eq(ih_str(r, "data.status"), "CANCELLED");
    static const char *const flow[] = { "PENDING", "CANCELLED" };
    assert_history(r, flow, 2);
    ck_assert_str_eq(oh_history_reason(r, "CANCELLED"), "cancelled_by_customer");
    r = cancel(admin, by_admin);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(oh_history_reason(r, "CANCELLED"), "cancelled_by_admin");
    ih_assert_error(cancel(t, mine), 409, "conflict");
    ck_assert_int_eq(oh_stock(&srv, t, p), 5);

    /* The worker meets two cancelled orders: nothing to do, no stock moves. */
    r = admin_post(admin, "/api/orders/process-queue");
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_int_eq(oh_int(r, "data.total"), 2);
    ck_assert_int_eq(oh_int(r, "data.processed"), 2);
    ck_assert_int_eq(oh_int(r, "data.failed"), 0);
    ck_assert_int_eq(oh_stock(&srv, t, p), 5);
    ck_assert_str_eq(ih_str(ih_get(&srv, ih_printf("/api/orders/%s", mine), t), "data.status"),
                     "CANCELLED");
    ck_assert_int_eq(oh_int(ih_get(&srv, "/api/orders/worker/status", admin), "data.queueDepth"),
                     0);
    ck_assert_int_eq(ih_server_stop(&srv), 0);
}
END_TEST

START_TEST(process_queue_counts_and_metrics)
{
    const char *admin = oh_admin(&srv);
    const char *t = oh_customer(&srv, "pq@test.local");
    const char *p = oh_product(&srv, admin, "Queue Lamp", "8", 4);
    /* Whatever the order of processing, 5 never fits in 4 and 2 + 2 do. */
    const char *ok1 = oh_order(&srv, t, p, 2);
    const char *too_many = oh_order(&srv, t, p, 5);
    ih_response *r = post_order(t, ih_printf("{\"items\":[{\"productId\":\"%s\",\"quantity\":2}],"
                                             "\"priority\":\"high\"}", p));
    ck_assert_int_eq(r->status, 201);
    const char *ok2 = ih_strdup(ih_str(r, "data.id"));

    r = ih_get(&srv, "/api/orders/worker/status", admin);
    assert_worker_state(r, 0, 0);
    ck_assert_int_eq(oh_int(r, "data.queueDepth"), 3);
    ck_assert_int_eq(oh_count_status(&srv, admin, "PENDING"), 3);

    r = admin_post(admin, "/api/orders/process-queue");
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_int_eq(oh_int(r, "data.total"), 3);
    ck_assert_int_eq(oh_int(r, "data.processed"), 2);
    ck_assert_int_eq(oh_int(r, "data.failed"), 1);
    ck_assert_int_eq(oh_int(r, "data.retried"), 0);

    /* process-queue runs on the request thread: all done when it answers. */
    ck_assert_str_eq(ih_str(ih_get(&srv, ih_printf("/api/orders/%s", ok1), t), "data.status"),
                     "COMPLETED");
    ck_assert_str_eq(ih_str(ih_get(&srv, ih_printf("/api/orders/%s", ok2), t), "data.status"),
                     "COMPLETED");
    r = ih_get(&srv, ih_printf("/api/orders/%s", too_many), t);
    ck_assert_str_eq(ih_str(r, "data.status"), "FAILED");
    ck_assert_str_eq(oh_history_reason(r, "FAILED"), "insufficient_stock");
    ck_assert_int_eq(oh_stock(&srv, t, p), 0);

    r = admin_post(admin, "/api/orders/process-queue");
    ck_assert_int_eq(oh_int(r, "data.total"), 0);
    r = ih_get(&srv, "/api/orders/worker/status", admin);
    ck_assert_int_eq(oh_int(r, "data.processed"), 2);
    ck_assert_int_eq(oh_int(r, "data.failed"), 1);
    ck_assert_int_eq(oh_int(r, "data.queueDepth"), 0);

    ih_response *m = ih_get(&srv, "/metrics", NULL);
    ck_assert_int_eq(m->status, 200);
    ck_assert_double_eq(metric(m, "orderd_orders_created_total{priority=\"normal\"}"), 2);
    ck_assert_double_eq(metric(m, "orderd_orders_created_total{priority=\"high\"}"), 1);
    ck_assert_double_eq(metric(m, "orderd_orders_status_changes_total{status=\"PENDING\"}"), 3);
    ck_assert_double_eq(metric(m, "orderd_orders_status_changes_total{status=\"PROCESSING\"}"),
                        3);
    ck_assert_double_eq(metric(m, "orderd_orders_status_changes_total{status=\"COMPLETED\"}"), 2);
    ck_assert_double_eq(metric(m, "orderd_orders_status_changes_total{status=\"FAILED\"}"), 1);
    ck_assert_double_eq(metric(m, "orderd_worker_messages_total{outcome=\"processed\"}"), 2);
    ck_assert_double_eq(metric(m, "orderd_worker_messages_total{outcome=\"failed\"}"), 1);
    ck_assert_double_eq(metric(m, "orderd_worker_messages_total{outcome=\"retried\"}"), 0);
    ck_assert_double_eq(metric(m, "orderd_worker_messages_total{outcome=\"dead_lettered\"}"), 0);
    ck_assert_int_eq(ih_server_stop(&srv), 0);
}
END_TEST

/* ---- one transaction on a shared SQLite file ---- */

#define SHARED_ORDERS 12

/* The integer a one-row query returns; arg binds ?1 when not NULL. */
static int64_t db_int(sqlite3 *db, const char *sql, const char *arg)
{
    sqlite3_stmt *st = NULL;
    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql,
                  sqlite3_errmsg(db));
    if (arg)
        ck_assert_int_eq(sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT), SQLITE_OK);
    ck_assert_msg(sqlite3_step(st) == SQLITE_ROW, "%s: %s", sql, sqlite3_errmsg(db));
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* Orders, normal/priority messages and the orderId of a message (the body
 * orders sends: {"orderId":"..."}), as the file holds them. */
#define ORDER_DOCS "SELECT count(*) FROM documents WHERE tbl = 'orders'"
#define ORDER_MSGS "SELECT count(*) FROM messages WHERE lane IN (0, 1)"
#define MSG_ORDER_ID "json_extract(CAST(m.body AS TEXT), '$.orderId')"

/* With the worker off nothing takes a message, so the file must hold
 * exactly one per accepted order: the order and its message were one
 * COMMIT. Plain, keyed (and replayed) and priority orders; a rejected one. */
START_TEST(one_message_per_order_on_shared_file)
{
    const char *chose = "in one transaction (storage and queue share sqlite:";
    ck_assert_msg(strstr(ih_server_log(&srv), chose), "orders did not take the shared path");
    ck_assert_msg(srv.db_path[0] != '\0', "no harness-made SQLite file in the config");
    const char *admin = oh_admin(&srv);
    const char *t = oh_customer(&srv, "shared-file@test.local");
    const char *p = oh_product(&srv, admin, "Shared Jar", "2", 1000);
    const char *ids[SHARED_ORDERS];
    int64_t high = 0, keyed = 0;
    for (int i = 0; i < SHARED_ORDERS; i++) {
        const char *body = ih_printf("{\"items\":[{\"productId\":\"%s\",\"quantity\":1}],"
                                     "\"priority\":\"%s\"}", p, i % 4 == 3 ? "high" : "normal");
        high += i % 4 == 3;
        ih_response *r;
        if (i % 3 == 1) {
            const char *key = ih_printf("shared-file-%d", i);
            r = post_order_keyed(t, key, body);
            ck_assert_int_eq(post_order_keyed(t, key, body)->status, 200); /* a replay */
            keyed++;
        } else {
            r = post_order(t, body);
        }
        ck_assert_msg(r->status == 201, "order %d: %ld %s", i, r->status, r->body);
        ids[i] = ih_strdup(ih_str(r, "data.id"));
    }
    ih_assert_error(post_order(t, "{\"items\":[\"" NO_SUCH_ID "\"]}"), 404, "not_found");
    ck_assert_int_eq(oh_int(ih_get(&srv, "/api/orders/worker/status", admin), "data.queueDepth"),
                     SHARED_ORDERS);

    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open_v2(srv.db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    ck_assert_int_eq(db_int(db, ORDER_DOCS, NULL), SHARED_ORDERS);
    ck_assert_int_eq(db_int(db, ORDER_MSGS, NULL), SHARED_ORDERS);
    ck_assert_int_eq(db_int(db, "SELECT count(*) FROM messages WHERE lane = 1", NULL), high);
    ck_assert_int_eq(db_int(db, "SELECT count(*) FROM documents WHERE tbl = 'idempotency'", NULL),
                     keyed);
    /* No order without exactly one message, no message without its order. */
    ck_assert_int_eq(db_int(db, ORDER_DOCS " AND (SELECT count(*) FROM messages m WHERE m.lane IN"
                                " (0, 1) AND " MSG_ORDER_ID " = documents.key) <> 1", NULL), 0);
    ck_assert_int_eq(db_int(db, "SELECT count(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM"
                                " documents o WHERE o.tbl = 'orders' AND o.key = " MSG_ORDER_ID ")",
                            NULL), 0);
    for (int i = 0; i < SHARED_ORDERS; i++)
        ck_assert_int_eq(db_int(db, "SELECT count(*) FROM messages m JOIN documents o ON"
                                    " o.tbl = 'orders' AND o.key = " MSG_ORDER_ID
                                    " WHERE o.key = ?1", ids[i]), 1);
    ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);

    /* A clean stop removes the file and what SQLite keeps beside it. */
    const char *path = ih_strdup(srv.db_path);
    ck_assert_int_eq(ih_server_stop(&srv), 0);
    static const char *const files[] = { "", "-wal", "-shm", "-journal" };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        ck_assert_msg(access(ih_printf("%s%s", path, files[i]), F_OK) != 0, "%s%s left behind",
                      path, files[i]);
}
END_TEST

static Suite *orders_suite(void)
{
    ih_forbid(IH_ADMIN_PASSWORD);
    Suite *s = suite_create("integ_orders");
    TCase *worker = tcase_create("worker");
    tcase_add_unchecked_fixture(worker, start_auto, stop_server);
    tcase_add_checked_fixture(worker, NULL, release);
    tcase_add_test(worker, create_in_both_item_forms);
    tcase_add_test(worker, create_rejects_bad_bodies);
    tcase_add_test(worker, get_with_history_only_for_owner_and_admin);
    tcase_add_test(worker, insufficient_stock_fails_with_reason);
    tcase_add_test(worker, lists_own_newest_first_and_admin_filters);
    tcase_add_test(worker, idempotency_key_replays_and_conflicts);
    tcase_add_test(worker, worker_routes_admin_only_stop_start);
    suite_add_tcase(s, worker);

    TCase *manual = tcase_create("manual");
    tcase_add_checked_fixture(manual, start_manual, release_and_stop);
    tcase_add_test(manual, cancel_pending_gives_nothing_back_twice);
    tcase_add_test(manual, process_queue_counts_and_metrics);
    suite_add_tcase(s, manual);

    /* Only on one SQLite file for storage and queue (integ_sqlite_orders). */
    if (ih_backend_selected("sqlite")) {
        TCase *shared = tcase_create("shared_file");
        tcase_add_checked_fixture(shared, start_manual, release_and_stop);
        tcase_add_test(shared, one_message_per_order_on_shared_file);
        suite_add_tcase(s, shared);
    }
    return s;
}

int main(void)
{
    return ih_run_suite(orders_suite());
}
