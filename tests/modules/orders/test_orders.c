/*
 * test_orders.c - the orders service against the mock host with the real
 * storage_memory and queue_memory backends: create (both item forms), list,
 * read, cancel, validation, authorization and idempotency, its expiry
 * (idempotency_ttl_hours) and the janitor that deletes expired records.
 * Every test runs once per way the module writes a new order (one suite
 * per FX_MODE_*), and each mode has tests of its own: what one create
 * writes, what a failed send or put_batch leaves behind, and the init log
 * line naming the mode.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "order_fixture.h"
#include "order_model.h"

static char widget[OD_UUID_STR_LEN + 1], gadget[OD_UUID_STR_LEN + 1];

static void setup(void)
{
    fx_up();
    fx_product("Widget", 1999, 10, widget);
    fx_product("Gadget", 500, 5, gadget);
}

static void teardown(void)
{
    fx_down();
}

static od_request *post(const char *user, const char *body, const char *key)
{
    return fx_call("POST", "/api/orders", NULL, user, OD_ROLE_CUSTOMER, body, key);
}

/* {"items":["<a>"]} or {"items":["<a>","<b>"]}, in a static buffer. */
static const char *items_body(const char *a, const char *b)
{
    static char buf[256];
    if (b)
        snprintf(buf, sizeof buf, "{\"items\":[\"%s\",\"%s\"]}", a, b);
    else
        snprintf(buf, sizeof buf, "{\"items\":[\"%s\"]}", a);
    return buf;
}

/* ---- create ---- */

START_TEST(create_string_form)
{
    char body[256];
    /* one unit per entry; repeated ids add up */
    snprintf(body, sizeof body, "{\"items\":[\"%s\",\"%s\",\"%s\"]}", widget, widget, widget);
    od_request *r = post(FX_ALICE, body, NULL);
    ck_assert_msg(mock_reply_status(r) == 201, "%s", mock_reply_body(r));
    ck_assert_str_eq(fx_str(r, "data.customerId"), FX_ALICE);
    ck_assert_str_eq(fx_str(r, "data.status"), "PENDING");
    ck_assert_str_eq(fx_str(r, "data.priority"), "normal");
    ck_assert_ptr_nonnull(fx_str(r, "data.createdAt"));
    ck_assert_ptr_nonnull(fx_str(r, "data.updatedAt"));
    ck_assert_ptr_null(fx_get(r, "data.totalCents"));
    ck_assert_int_eq(json_object_array_length(fx_get(r, "data.items")), 1);
    ck_assert_str_eq(fx_str(r, "data.items.0.productId"), widget);
    ck_assert_int_eq(fx_int(r, "data.items.0.quantity"), 3);
    ck_assert_ptr_nonnull(strstr(mock_reply_body(r), "\"unitPrice\":19.99"));
    ck_assert_ptr_nonnull(strstr(mock_reply_body(r), "\"total\":59.97"));
    fx_free(r);
}
END_TEST

START_TEST(create_object_form_high_priority)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"priority\":\"high\",\"items\":[{\"productId\":\"%s\",\"quantity\":2},"
             "{\"quantity\":4,\"productId\":\"%s\"}]}",
             widget, gadget);
    od_request *r = post(FX_ALICE, body, NULL);
    ck_assert_msg(mock_reply_status(r) == 201, "%s", mock_reply_body(r));
    ck_assert_str_eq(fx_str(r, "data.priority"), "high");
    ck_assert_int_eq(fx_int(r, "data.items.1.quantity"), 4);
    ck_assert_ptr_nonnull(strstr(mock_reply_body(r), "\"unitPrice\":5}"));
    ck_assert_ptr_nonnull(strstr(mock_reply_body(r), "\"total\":59.98"));
    char id[OD_UUID_STR_LEN + 1], want[128], got[4][128];
    snprintf(id, sizeof id, "%s", fx_str(r, "data.id"));
    fx_free(r);

    /* queued on the priority lane in the same request, nothing on normal */
    snprintf(want, sizeof want, "{\"orderId\":\"%s\"}", id);
    ck_assert_uint_eq(fx_drain(OD_LANE_NORMAL, got, 4), 0);
    ck_assert_uint_eq(fx_drain(OD_LANE_PRIORITY, got, 4), 1);
    ck_assert_str_eq(got[0], want);

    /* stored per docs/data-model.md */
    json_object *doc = fx_order_doc(id, NULL);
    ck_assert_str_eq(odo_str(doc, "status"), "PENDING");
    ck_assert_int_eq(odo_reserved(doc), 0);
    json_object *v = NULL;
    ck_assert(json_object_object_get_ex(doc, "totalCents", &v));
    ck_assert_int_eq(json_object_get_int64(v), 5998);
    ck_assert_int_eq(json_object_array_length(json_object_object_get(doc, "history")), 1);
    json_object_put(doc);
    ck_assert_int_eq(fx_metric("orderd_orders_created_total", "priority=\"high\""), 1);
    ck_assert_int_eq(fx_metric("orderd_orders_created_total", "priority=\"normal\""), 0);
    ck_assert_int_eq(fx_metric(ODO_METRIC_STATUS, "status=\"PENDING\""), 1);
}
END_TEST

static const char *const BAD_BODIES[] = {
    "",
    "[]",
    "{\"items\":[]}",
    "{\"items\":{}}",
    "{}",
    "{\"items\":[{\"productId\":\"W\",\"quantity\":0}]}",
    "{\"items\":[{\"productId\":\"W\",\"quantity\":-1}]}",
    "{\"items\":[{\"productId\":\"W\",\"quantity\":1000001}]}",
    "{\"items\":[{\"productId\":\"W\",\"quantity\":1.5}]}",
    "{\"items\":[{\"productId\":\"W\",\"quantity\":\"2\"}]}",
    "{\"items\":[{\"productId\":\"W\"}]}",
    "{\"items\":[{\"productId\":\"W\",\"quantity\":1,\"price\":1}]}",
    "{\"items\":[{\"productId\":\"W\",\"quantity\":600000},{\"productId\":\"W\",\"quantity\":"
    "600000}]}",
    "{\"items\":[\"W\",{\"productId\":\"W\",\"quantity\":1}]}",
    "{\"items\":[{\"productId\":\"W\",\"quantity\":1},\"W\"]}",
    "{\"items\":[7]}",
    "{\"items\":[\"\"]}",
    "{\"items\":[\"has space\"]}",
    "{\"items\":[\"W\"],\"priority\":\"urgent\"}",
    "{\"items\":[\"W\"],\"priority\":1}",
    "{\"items\":[\"W\"],\"customerId\":\"x\"}",
    "{\"items\":[\"W\"],\"items\":[\"W\"]}",
    "{\"items\":[\"W\"]",
    "{\"items\":[\"W\\u0000x\"]}",
};

START_TEST(create_rejects_bad_bodies)
{
    char body[512];
    const char *src = BAD_BODIES[_i];
    /* W stands for a real product id, so only the flaw under test fails */
    size_t o = 0;
    for (const char *p = src; *p && o < sizeof body - 40; p++) {
        if (*p == 'W' && p[1] == '"') {
            o += (size_t)snprintf(body + o, sizeof body - o, "%s", widget);
        } else {
            body[o++] = *p;
        }
    }
    body[o] = '\0';
    od_request *r = post(FX_ALICE, body, NULL);
    ck_assert_msg(mock_reply_status(r) == 400, "%s -> %d %s", body, mock_reply_status(r),
                  mock_reply_body(r));
    fx_free(r);
    ck_assert_uint_eq(fx_count_orders(), 0);
}
END_TEST

START_TEST(create_rejects_too_many_lines)
{
    char body[8192];
    size_t o = (size_t)snprintf(body, sizeof body, "{\"items\":[");
    for (int i = 0; i < 101; i++)
        o += (size_t)snprintf(body + o, sizeof body - o, "%s\"%s\"", i ? "," : "", widget);
    snprintf(body + o, sizeof body - o, "]}");
    od_request *r = post(FX_ALICE, body, NULL);
    ck_assert_int_eq(mock_reply_status(r), 400);
    fx_free(r);
    /* 100 entries are fine (and add up to 100 units, over the stock of 10:
     * stock is the pipeline's business, not the API's) */
    body[o - (strlen(widget) + 3)] = '\0';
    strcat(body, "]}");
    r = post(FX_ALICE, body, NULL);
    ck_assert_msg(mock_reply_status(r) == 201, "%s", mock_reply_body(r));
    ck_assert_int_eq(fx_int(r, "data.items.0.quantity"), 100);
    fx_free(r);
}
END_TEST

START_TEST(create_unknown_product_is_404)
{
    od_request *r =
        post(FX_ALICE, items_body(widget, "0190a000-0000-7000-8000-00000000dead"), NULL);
    ck_assert_int_eq(mock_reply_status(r), 404);
    ck_assert_str_eq(fx_str(r, "error"), "not_found");
    fx_free(r);
    char got[1][128];
    ck_assert_uint_eq(fx_count_orders(), 0);
    ck_assert_uint_eq(fx_drain(OD_LANE_NORMAL, got, 1), 0);
}
END_TEST

START_TEST(storage_outage_is_503)
{
    char id[OD_UUID_STR_LEN + 1];
    fx_order(FX_ALICE, items_body(widget, NULL), id);
    fx_storage_unavailable(1);
    od_request *r[] = {
        post(FX_ALICE, items_body(widget, NULL), NULL),
        post(FX_ALICE, items_body(widget, NULL), "k"),
        fx_list(FX_ALICE, OD_ROLE_CUSTOMER, NULL, NULL, NULL, NULL),
        fx_call("GET", "/api/orders/:id", id, FX_ALICE, OD_ROLE_CUSTOMER, NULL, NULL),
        fx_call("DELETE", "/api/orders/:id", id, FX_ALICE, OD_ROLE_CUSTOMER, NULL, NULL),
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        ck_assert_msg(mock_reply_status(r[i]) == 503, "request %zu: %s", i, mock_reply_body(r[i]));
        ck_assert_str_eq(fx_str(r[i], "error"), "unavailable");
        fx_free(r[i]);
    }
    fx_storage_unavailable(0);
    ck_assert_uint_eq(fx_count_orders(), 1);
    json_object *doc = fx_order_doc(id, NULL);
    ck_assert_str_eq(odo_str(doc, "status"), "PENDING");
    json_object_put(doc);
}
END_TEST

/* ---- read ---- */

START_TEST(get_owner_admin_other)
{
    char id[OD_UUID_STR_LEN + 1];
    fx_order(FX_ALICE, items_body(widget, NULL), id);

    od_request *r = fx_call("GET", "/api/orders/:id", id, FX_ALICE, OD_ROLE_CUSTOMER, NULL, NULL);
    ck_assert_int_eq(mock_reply_status(r), 200);
    ck_assert_str_eq(fx_str(r, "data.id"), id);
    ck_assert_str_eq(fx_str(r, "data.history.0.status"), "PENDING");
    ck_assert_ptr_nonnull(fx_str(r, "data.history.0.at"));
    fx_free(r);

    r = fx_call("GET", "/api/orders/:id", id, FX_ADMIN, OD_ROLE_ADMIN, NULL, NULL);
    ck_assert_int_eq(mock_reply_status(r), 200);
    fx_free(r);

    r = fx_call("GET", "/api/orders/:id", id, FX_BOB, OD_ROLE_CUSTOMER, NULL, NULL);
    ck_assert_int_eq(mock_reply_status(r), 404);
    ck_assert_str_eq(fx_str(r, "error"), "not_found");
    fx_free(r);

    static const char *const bad_ids[] = {"nope", "", "0190A000-0000-7000-8000-00000000A11C",
                                          "0190a000-0000-7000-8000-00000000dead"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        r = fx_call("GET", "/api/orders/:id", bad_ids[i], FX_ADMIN, OD_ROLE_ADMIN, NULL, NULL);
        ck_assert_int_eq(mock_reply_status(r), 404);
        fx_free(r);
    }
}
END_TEST

/* ---- list ---- */

START_TEST(list_own_newest_first_paginated)
{
    char a1[OD_UUID_STR_LEN + 1], a2[OD_UUID_STR_LEN + 1], b1[OD_UUID_STR_LEN + 1];
    char saved[256];
    snprintf(saved, sizeof saved, "%s", items_body(widget, NULL));
    /* UUIDv7 ids order by millisecond: create them a millisecond apart */
    mock_set_now_ms(1790000000000LL);
    fx_order(FX_ALICE, saved, a1);
    mock_set_now_ms(1790000000001LL);
    fx_order(FX_BOB, saved, b1);
    mock_set_now_ms(1790000000002LL);
    fx_order(FX_ALICE, saved, a2);
    mock_set_now_ms(0);

    od_request *r = fx_list(FX_ALICE, OD_ROLE_CUSTOMER, "limit", "1", NULL, NULL);
    ck_assert_int_eq(mock_reply_status(r), 200);
    ck_assert_int_eq(json_object_array_length(fx_get(r, "data")), 1);
    ck_assert_str_eq(fx_str(r, "data.0.id"), a2);
    ck_assert_ptr_null(fx_get(r, "data.0.history"));
    char cursor[OD_CURSOR_MAX + 1];
    ck_assert_ptr_nonnull(fx_str(r, "next"));
    snprintf(cursor, sizeof cursor, "%s", fx_str(r, "next"));
    fx_free(r);

    r = fx_list(FX_ALICE, OD_ROLE_CUSTOMER, "limit", "1", "cursor", cursor);
    ck_assert_int_eq(mock_reply_status(r), 200);
    ck_assert_str_eq(fx_str(r, "data.0.id"), a1);
    fx_free(r);

    r = fx_list(FX_ALICE, OD_ROLE_CUSTOMER, NULL, NULL, NULL, NULL);
    ck_assert_int_eq(json_object_array_length(fx_get(r, "data")), 2);
    ck_assert(json_object_is_type(fx_get(r, "next"), json_type_null));
    fx_free(r);

    r = fx_list(FX_ADMIN, OD_ROLE_ADMIN, NULL, NULL, NULL, NULL);
    ck_assert_int_eq(json_object_array_length(fx_get(r, "data")), 3);
    ck_assert_str_eq(fx_str(r, "data.0.id"), a2);
    ck_assert_str_eq(fx_str(r, "data.1.id"), b1);
    fx_free(r);

    r = fx_list(FX_ADMIN, OD_ROLE_ADMIN, "customerId", FX_BOB, NULL, NULL);
    ck_assert_int_eq(json_object_array_length(fx_get(r, "data")), 1);
    ck_assert_str_eq(fx_str(r, "data.0.id"), b1);
    fx_free(r);
}
END_TEST

START_TEST(list_admin_status_filter)
{
    char a1[OD_UUID_STR_LEN + 1], a2[OD_UUID_STR_LEN + 1];
    char body[256];
    snprintf(body, sizeof body, "{\"items\":[\"%s\"]}", widget);
    fx_order(FX_ALICE, body, a1);
    fx_order(FX_ALICE, body, a2);
    fx_set_status(a1, "PROCESSING");

    od_request *r = fx_list(FX_ADMIN, OD_ROLE_ADMIN, "status", "PROCESSING", NULL, NULL);
    ck_assert_int_eq(mock_reply_status(r), 200);
    ck_assert_int_eq(json_object_array_length(fx_get(r, "data")), 1);
    ck_assert_str_eq(fx_str(r, "data.0.id"), a1);
    fx_free(r);
    r = fx_list(FX_ADMIN, OD_ROLE_ADMIN, "status", "PENDING", NULL, NULL);
    ck_assert_int_eq(json_object_array_length(fx_get(r, "data")), 1);
    ck_assert_str_eq(fx_str(r, "data.0.id"), a2);
    fx_free(r);
}
END_TEST

START_TEST(list_rejects_bad_queries)
{
    static const char *const bad[][5] = {
        {"A", "limit", "0", NULL, NULL},         {"A", "limit", "101", NULL, NULL},
        {"A", "limit", "x", NULL, NULL},         {"A", "limit", "-1", NULL, NULL},
        {"A", "cursor", "garbage", NULL, NULL},  {"A", "status", "bogus", NULL, NULL},
        {"A", "customerId", "nope", NULL, NULL}, {"A", "status", "PENDING", "customerId", FX_BOB},
        {"C", "status", "PENDING", NULL, NULL},  {"C", "customerId", FX_BOB, NULL, NULL},
        {"C", "cursor", "garbage", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int admin = bad[i][0][0] == 'A';
        od_request *r =
            fx_list(admin ? FX_ADMIN : FX_ALICE, admin ? OD_ROLE_ADMIN : OD_ROLE_CUSTOMER,
                    bad[i][1], bad[i][2], bad[i][3], bad[i][4]);
        ck_assert_msg(mock_reply_status(r) == 400, "case %zu: %d %s", i, mock_reply_status(r),
                      mock_reply_body(r));
        ck_assert_str_eq(fx_str(r, "error"), "validation_failed");
        fx_free(r);
    }
}
END_TEST

/* ---- cancel ---- */

START_TEST(cancel_pending_then_again)
{
    char id[OD_UUID_STR_LEN + 1];
    fx_order(FX_ALICE, items_body(widget, NULL), id);

    od_request *r = fx_call("DELETE", "/api/orders/:id", id, FX_BOB, OD_ROLE_CUSTOMER, NULL, NULL);
    ck_assert_int_eq(mock_reply_status(r), 404);
    fx_free(r);

    r = fx_call("DELETE", "/api/orders/:id", id, FX_ALICE, OD_ROLE_CUSTOMER, NULL, NULL);
    ck_assert_msg(mock_reply_status(r) == 200, "%s", mock_reply_body(r));
    ck_assert_str_eq(fx_str(r, "data.status"), "CANCELLED");
    ck_assert_str_eq(fx_str(r, "data.history.1.status"), "CANCELLED");
    ck_assert_str_eq(fx_str(r, "data.history.1.reason"), "cancelled_by_customer");
    fx_free(r);
    ck_assert_int_eq(fx_stock(widget), 10); /* never reserved: untouched */
    ck_assert_int_eq(fx_metric(ODO_METRIC_STATUS, "status=\"CANCELLED\""), 1);

    r = fx_call("DELETE", "/api/orders/:id", id, FX_ALICE, OD_ROLE_CUSTOMER, NULL, NULL);
    ck_assert_int_eq(mock_reply_status(r), 409);
    ck_assert_str_eq(fx_str(r, "error"), "conflict");
    fx_free(r);
    ck_assert_int_eq(fx_metric(ODO_METRIC_STATUS, "status=\"CANCELLED\""), 1);
}
END_TEST

START_TEST(cancel_by_admin_and_terminal_409)
{
    char id[OD_UUID_STR_LEN + 1], done[OD_UUID_STR_LEN + 1], failed[OD_UUID_STR_LEN + 1];
    char body[256];
    snprintf(body, sizeof body, "{\"items\":[\"%s\"]}", widget);
    fx_order(FX_ALICE, body, id);
    fx_order(FX_ALICE, body, done);
    fx_order(FX_ALICE, body, failed);
    fx_set_status(id, "PROCESSING");
    fx_set_status(done, "PROCESSING");
    fx_set_status(done, "COMPLETED");
    fx_set_status(failed, "FAILED");

    od_request *r = fx_call("DELETE", "/api/orders/:id", id, FX_ADMIN, OD_ROLE_ADMIN, NULL, NULL);
    ck_assert_int_eq(mock_reply_status(r), 200);
    ck_assert_str_eq(fx_str(r, "data.history.2.reason"), "cancelled_by_admin");
    fx_free(r);
    const char *terminal[] = {done, failed};
    for (size_t i = 0; i < 2; i++) {
        r = fx_call("DELETE", "/api/orders/:id", terminal[i], FX_ALICE, OD_ROLE_CUSTOMER, NULL,
                    NULL);
        ck_assert_int_eq(mock_reply_status(r), 409);
        fx_free(r);
    }
    json_object *doc = fx_order_doc(done, NULL);
    ck_assert_str_eq(odo_str(doc, "status"), "COMPLETED");
    json_object_put(doc);
}
END_TEST

/* ---- idempotency ---- */

/* A fixed wall clock for the expiry tests (2026-09-21), and an hour. */
#define T0 1790000000000LL
#define HOUR_MS 3600000LL

START_TEST(idempotent_replay_and_conflict)
{
    char b1[256], b2[256], b3[256];
    snprintf(b1, sizeof b1,
             "{\"items\":[{\"productId\":\"%s\",\"quantity\":2}],\"priority\":\"high\"}", widget);
    /* same request: other key order, whitespace and item form */
    snprintf(b2, sizeof b2, " { \"priority\" : \"high\", \"items\" : [ \"%s\" , \"%s\" ] } ",
             widget, widget);
    snprintf(b3, sizeof b3,
             "{\"items\":[{\"productId\":\"%s\",\"quantity\":3}],\"priority\":\"high\"}", widget);

    od_request *r = post(FX_ALICE, b1, "key-1");
    ck_assert_int_eq(mock_reply_status(r), 201);
    ck_assert_ptr_null(mock_reply_header(r, "Idempotent-Replayed"));
    char id[OD_UUID_STR_LEN + 1];
    snprintf(id, sizeof id, "%s", fx_str(r, "data.id"));
    fx_free(r);

    r = post(FX_ALICE, b2, "key-1");
    ck_assert_msg(mock_reply_status(r) == 200, "%s", mock_reply_body(r));
    ck_assert_str_eq(fx_str(r, "data.id"), id);
    ck_assert_str_eq(mock_reply_header(r, "Idempotent-Replayed"), "true");
    fx_free(r);

    r = post(FX_ALICE, b3, "key-1");
    ck_assert_int_eq(mock_reply_status(r), 409);
    ck_assert_str_eq(fx_str(r, "error"), "conflict");
    fx_free(r);

    /* another user's identical key is another order */
    r = post(FX_BOB, b1, "key-1");
    ck_assert_int_eq(mock_reply_status(r), 201);
    ck_assert_str_ne(fx_str(r, "data.id"), id);
    fx_free(r);

    char got[4][128];
    ck_assert_uint_eq(fx_count_orders(), 2);
    ck_assert_uint_eq(fx_drain(OD_LANE_PRIORITY, got, 4), 2);
}
END_TEST

START_TEST(idempotency_key_validated)
{
    char body[256], key[200];
    snprintf(body, sizeof body, "{\"items\":[\"%s\"]}", widget);
    memset(key, 'k', 129);
    key[129] = '\0';
    const char *bad[] = {key, "", "has space", "tab\there", "caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        od_request *r = post(FX_ALICE, body, bad[i]);
        ck_assert_msg(mock_reply_status(r) == 400, "key %zu", i);
        fx_free(r);
    }
    key[128] = '\0';
    od_request *r = post(FX_ALICE, body, key);
    ck_assert_int_eq(mock_reply_status(r), 201);
    fx_free(r);
    ck_assert_uint_eq(fx_count_orders(), 1);
}
END_TEST

/* A 404 does not claim the key: the corrected request may reuse it. */
START_TEST(idempotency_key_free_after_404)
{
    od_request *r = post(FX_ALICE, items_body("0190a000-0000-7000-8000-00000000dead", NULL), "fix");
    ck_assert_int_eq(mock_reply_status(r), 404);
    fx_free(r);
    r = post(FX_ALICE, items_body(widget, NULL), "fix");
    ck_assert_msg(mock_reply_status(r) == 201, "%s", mock_reply_body(r));
    fx_free(r);
}
END_TEST

/* A request that died between writing its key record and its order: the
 * retry creates the order under the recorded id. */
START_TEST(idempotency_heals_stale_record)
{
    char body[256], id[OD_UUID_STR_LEN + 1];
    snprintf(body, sizeof body, "{\"items\":[\"%s\"]}", widget);
    mock_set_now_ms(T0);
    od_request *r = post(FX_ALICE, body, "crash");
    ck_assert_int_eq(mock_reply_status(r), 201);
    snprintf(id, sizeof id, "%s", fx_str(r, "data.id"));
    fx_free(r);
    ck_assert_int_eq(FX.st.ops->del(FX.st.self, ODO_TABLE_ORDERS, id, 0), OD_OK);
    mock_set_now_ms(T0 + 61000); /* stale, well within the TTL */

    r = post(FX_ALICE, body, "crash");
    ck_assert_msg(mock_reply_status(r) == 201, "%s", mock_reply_body(r));
    ck_assert_str_eq(fx_str(r, "data.id"), id);
    fx_free(r);
    mock_set_now_ms(0);
    ck_assert_uint_eq(fx_count_orders(), 1);
}
END_TEST

/* A fresh record without its order: the first request is still running. */
START_TEST(idempotency_in_progress_409)
{
    char body[256], id[OD_UUID_STR_LEN + 1];
    snprintf(body, sizeof body, "{\"items\":[\"%s\"]}", widget);
    od_request *r = post(FX_ALICE, body, "slow");
    snprintf(id, sizeof id, "%s", fx_str(r, "data.id"));
    fx_free(r);
    ck_assert_int_eq(FX.st.ops->del(FX.st.self, ODO_TABLE_ORDERS, id, 0), OD_OK);
    r = post(FX_ALICE, body, "slow");
    ck_assert_int_eq(mock_reply_status(r), 409);
    ck_assert_ptr_nonnull(strstr(fx_str(r, "message"), "in progress"));
    fx_free(r);
    ck_assert_uint_eq(fx_count_orders(), 0);
}
END_TEST

#define RACERS 8

typedef struct racer {
    pthread_barrier_t *go;
    const char *body, *key;
    int status;
    char id[OD_UUID_STR_LEN + 1];
} racer;

static void *race(void *arg)
{
    racer *x = arg;
    od_request *r = mock_request_new("POST", "/api/orders");
    mock_request_principal(r, FX_ALICE, OD_ROLE_CUSTOMER);
    mock_request_body(r, x->body);
    mock_request_header(r, "Idempotency-Key", x->key);
    od_handler_fn fn = mock_route("POST", "/api/orders", NULL);
    pthread_barrier_wait(x->go);
    fn(FX.orders.self, r);
    x->status = mock_reply_status(r);
    /* the id without json-c: objects must not cross threads, and this
     * thread's parse would be its own, but keep the racer minimal */
    const char *p = strstr(mock_reply_body(r), "\"id\":\"");
    if (p)
        snprintf(x->id, sizeof x->id, "%.36s", p + 6);
    mock_request_free(r);
    return NULL;
}

/* n requests with one body and key at once: exactly one creates the order,
 * every other one is answered with that same order. */
static void race_one_key(const char *body, const char *key, int n, char *winner)
{
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)n);
    pthread_t t[RACERS];
    racer x[RACERS];
    ck_assert_int_le(n, RACERS);
    for (int i = 0; i < n; i++) {
        x[i] = (racer){.go = &go, .body = body, .key = key};
        ck_assert_int_eq(pthread_create(&t[i], NULL, race, &x[i]), 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&go);
    int created = 0;
    for (int i = 0; i < n; i++) {
        ck_assert_msg(x[i].status == 201 || x[i].status == 200, "key %s racer %d got %d", key, i,
                      x[i].status);
        created += x[i].status == 201;
        ck_assert_uint_eq(strlen(x[i].id), OD_UUID_STR_LEN);
        ck_assert_str_eq(x[i].id, x[0].id);
    }
    ck_assert_int_eq(created, 1);
    if (winner)
        snprintf(winner, OD_UUID_STR_LEN + 1, "%s", x[0].id);
}

/* What one order costs in each mode: committed put_batch calls, sends by
 * the module, notify calls. */
typedef struct writes {
    size_t batches, sends, notifies;
} writes;

static const writes PER_ORDER[FX_MODES] = {
    [FX_MODE_STEPS] = {0, 1, 0},
    [FX_MODE_BATCH] = {1, 1, 0},
    [FX_MODE_OUTBOX] = {1, 0, 1},
};

static void assert_writes(size_t orders)
{
    const writes *w = &PER_ORDER[fx_mode()];
    ck_assert_uint_eq(fx_batches(), orders * w->batches);
    ck_assert_uint_eq(fx_sends(), orders * w->sends);
    ck_assert_uint_eq(fx_notifies(), orders * w->notifies);
}

START_TEST(idempotency_concurrent_retries_make_one_order)
{
    char body[256];
    snprintf(body, sizeof body, "{\"items\":[\"%s\"]}", widget);
    race_one_key(body, "same-key", RACERS, NULL);
    ck_assert_uint_eq(fx_count_orders(), 1);
    ck_assert_uint_eq(fx_count_idem(), 1);
    ck_assert_uint_eq(fx_count_expiry(), 1);
    assert_writes(1);
    char got[RACERS][128];
    ck_assert_uint_eq(fx_drain(OD_LANE_NORMAL, got, RACERS), 1);
}
END_TEST

#define PAIRS 25

/* Two at a time, many times over: the race between claiming the key and
 * writing the order is narrow, so run it often. */
START_TEST(idempotency_concurrent_pairs)
{
    char body[256], key[32];
    snprintf(body, sizeof body, "{\"items\":[\"%s\"]}", widget);
    for (int i = 0; i < PAIRS; i++) {
        snprintf(key, sizeof key, "pair-%d", i);
        race_one_key(body, key, 2, NULL);
    }
    ck_assert_uint_eq(fx_count_orders(), PAIRS);
    ck_assert_uint_eq(fx_count_idem(), PAIRS);
    ck_assert_uint_eq(fx_count_expiry(), PAIRS);
    ck_assert_int_eq(fx_queued(), PAIRS);
    assert_writes(PAIRS);
}
END_TEST

/* ---- the three write paths ---- */

/* What each mode's init line says (the orders module's detect_transactions). */
static const char *const MODE_LOG[FX_MODES] = {
    [FX_MODE_STEPS] = "orders: new orders: Idempotency-Key record, then the order, then the queue",
    [FX_MODE_BATCH] = "orders: new orders: order and Idempotency-Key record in one transaction, "
                      "then the queue message",
    [FX_MODE_OUTBOX] = "orders: new orders: order, Idempotency-Key record and queue message in one "
                       "transaction (storage and queue share fixture:storage_memory+queue_memory)",
};

START_TEST(init_log_names_mode)
{
    for (int m = 0; m < FX_MODES; m++)
        ck_assert_msg(mock_log_contains(MODE_LOG[m]) == (m == fx_mode()),
                      "mode %s: log line of mode %s %s", fx_mode_name(fx_mode()), fx_mode_name(m),
                      m == fx_mode() ? "missing" : "present");
}
END_TEST

/* The record stored under alice's key names this order. */
static void assert_record_names(const char *key, const char *order_id)
{
    char k[256];
    od_doc d = {0};
    snprintf(k, sizeof k, "%s:%s", FX_ALICE, key);
    ck_assert_int_eq(FX.st.ops->get(FX.st.self, ODO_TABLE_IDEMPOTENCY, k, &d), OD_OK);
    json_object *rec = json_tokener_parse(d.body);
    od_doc_clear(mock_host_api(), &d);
    ck_assert_ptr_nonnull(rec);
    ck_assert_str_eq(odo_str(rec, "orderId"), order_id);
    json_object_put(rec);
}

static void assert_nothing_written(void)
{
    ck_assert_uint_eq(fx_count_orders(), 0);
    ck_assert_uint_eq(fx_count_idem(), 0);
    ck_assert_uint_eq(fx_count_expiry(), 0);
    ck_assert_int_eq(fx_queued(), 0);
    ck_assert_int_eq(fx_metric("orderd_orders_created_total", "priority=\"normal\""), 0);
}

START_TEST(create_with_key_writes_each_once)
{
    char body[256], id[OD_UUID_STR_LEN + 1], want[128], got[4][128];
    snprintf(body, sizeof body, "%s", items_body(widget, NULL));
    od_request *r = post(FX_ALICE, body, "once");
    ck_assert_msg(mock_reply_status(r) == 201, "%s", mock_reply_body(r));
    snprintf(id, sizeof id, "%s", fx_str(r, "data.id"));
    fx_free(r);
    ck_assert_uint_eq(fx_count_orders(), 1);
    ck_assert_uint_eq(fx_count_idem(), 1);
    ck_assert_uint_eq(fx_count_expiry(), 1);
    ck_assert_int_eq(fx_queued(), 1);
    assert_record_names("once", id);
    assert_writes(1);

    r = post(FX_ALICE, body, "once");
    ck_assert_msg(mock_reply_status(r) == 200, "%s", mock_reply_body(r));
    ck_assert_str_eq(mock_reply_header(r, "Idempotent-Replayed"), "true");
    ck_assert_str_eq(fx_str(r, "data.id"), id);
    fx_free(r);
    ck_assert_uint_eq(fx_count_orders(), 1);
    ck_assert_uint_eq(fx_count_idem(), 1);
    assert_writes(1); /* the replay wrote and sent nothing */
    snprintf(want, sizeof want, "{\"orderId\":\"%s\"}", id);
    ck_assert_uint_eq(fx_drain(OD_LANE_NORMAL, got, 4), 1);
    ck_assert_str_eq(got[0], want);
    ck_assert_int_eq(fx_metric("orderd_orders_created_total", "priority=\"normal\""), 1);
}
END_TEST

/* Steps and batch modes send after the write: an order that cannot be
 * queued is removed with its record, so the retry creates it. */
START_TEST(send_failure_leaves_nothing)
{
    char body[256], id[OD_UUID_STR_LEN + 1];
    snprintf(body, sizeof body, "%s", items_body(widget, NULL));
    fx_send_unavailable(1);
    od_request *r = post(FX_ALICE, body, "k-1");
    ck_assert_msg(mock_reply_status(r) == 503, "%s", mock_reply_body(r));
    ck_assert_str_eq(fx_str(r, "error"), "unavailable");
    fx_free(r);
    assert_nothing_written();
    ck_assert_uint_eq(fx_batches(), PER_ORDER[fx_mode()].batches); /* written, then undone */

    fx_send_unavailable(0);
    r = post(FX_ALICE, body, "k-1");
    ck_assert_msg(mock_reply_status(r) == 201, "%s", mock_reply_body(r));
    ck_assert_ptr_null(mock_reply_header(r, "Idempotent-Replayed"));
    snprintf(id, sizeof id, "%s", fx_str(r, "data.id"));
    fx_free(r);
    ck_assert_uint_eq(fx_count_orders(), 1);
    ck_assert_uint_eq(fx_count_idem(), 1);
    ck_assert_int_eq(fx_queued(), 1);
    assert_record_names("k-1", id);
    ck_assert_int_eq(fx_metric("orderd_orders_created_total", "priority=\"normal\""), 1);
}
END_TEST

/* Outbox mode never calls send: the message rides in the transaction. */
START_TEST(outbox_needs_no_send)
{
    fx_send_unavailable(1);
    od_request *r = post(FX_ALICE, items_body(widget, NULL), "k-1");
    ck_assert_msg(mock_reply_status(r) == 201, "%s", mock_reply_body(r));
    fx_free(r);
    ck_assert_uint_eq(fx_count_orders(), 1);
    ck_assert_uint_eq(fx_count_idem(), 1);
    ck_assert_int_eq(fx_queued(), 1);
    assert_writes(1);
}
END_TEST

START_TEST(batch_failure_writes_nothing)
{
    char body[256];
    snprintf(body, sizeof body, "%s", items_body(widget, NULL));
    fx_batch_unavailable(1);
    const char *keys[] = {"k-1", NULL};
    for (size_t i = 0; i < 2; i++) {
        od_request *r = post(FX_ALICE, body, keys[i]);
        ck_assert_msg(mock_reply_status(r) == 503, "%s", mock_reply_body(r));
        ck_assert_str_eq(fx_str(r, "error"), "unavailable");
        fx_free(r);
    }
    assert_nothing_written();
    assert_writes(0);

    fx_batch_unavailable(0);
    od_request *r = post(FX_ALICE, body, "k-1");
    ck_assert_msg(mock_reply_status(r) == 201, "%s", mock_reply_body(r));
    ck_assert_ptr_null(mock_reply_header(r, "Idempotent-Replayed"));
    fx_free(r);
    ck_assert_uint_eq(fx_count_orders(), 1);
    ck_assert_uint_eq(fx_count_idem(), 1);
    ck_assert_int_eq(fx_queued(), 1);
    assert_writes(1);
}
END_TEST

/* Write the batch's order first, as a retry healing the same key would:
 * the batch then fails on its first put. */
static void write_order_first(const od_put *const *puts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(puts[i]->table, ODO_TABLE_ORDERS) == 0)
            ck_assert_int_eq(FX.st.ops->put(FX.st.self, puts[i]->table, puts[i]->key,
                                            puts[i]->body, puts[i]->len, puts[i]->idx,
                                            puts[i]->n_idx, OD_PUT_IF_ABSENT, 0, NULL),
                             OD_OK);
}

/* A batch that loses its condition commits nothing: no record and, in
 * outbox mode, no message; the module answers with the order that won
 * (whoever wrote it queued it) and sends nothing itself. */
START_TEST(batch_conflict_writes_no_message)
{
    fx_before_batch(write_order_first);
    od_request *r = post(FX_ALICE, items_body(widget, NULL), "k-1");
    ck_assert_msg(mock_reply_status(r) == 200, "%s", mock_reply_body(r));
    ck_assert_str_eq(mock_reply_header(r, "Idempotent-Replayed"), "true");
    fx_free(r);
    ck_assert_uint_eq(fx_count_orders(), 1);
    ck_assert_uint_eq(fx_count_idem(), 0);
    ck_assert_uint_eq(fx_count_expiry(), 0);
    ck_assert_int_eq(fx_queued(), 0);
    assert_writes(0);
}
END_TEST

/* ---- expiry of Idempotency-Key records ---- */

static od_request *post_at(int64_t now_ms, const char *user, const char *body, const char *key)
{
    mock_set_now_ms(now_ms);
    return post(user, body, key);
}

/* Post at now_ms, expect 201 and copy the id out. */
static void create_at(int64_t now_ms, const char *body, const char *key, char *id_out)
{
    od_request *r = post_at(now_ms, FX_ALICE, body, key);
    ck_assert_msg(mock_reply_status(r) == 201, "key %s: %s", key, mock_reply_body(r));
    ck_assert_ptr_null(mock_reply_header(r, "Idempotent-Replayed"));
    if (id_out)
        snprintf(id_out, OD_UUID_STR_LEN + 1, "%s", fx_str(r, "data.id"));
    fx_free(r);
}

static void expiry_key_of(char *out, size_t n, int64_t created_ms, const char *key)
{
    snprintf(out, n, "%013lld:%s:%s", (long long)created_ms, FX_ALICE, key);
}

/* Make a record look written before expiry docs existed: remove its doc. */
static void drop_expiry_doc(int64_t created_ms, const char *key)
{
    char k[256];
    expiry_key_of(k, sizeof k, created_ms, key);
    ck_assert_int_eq(FX.st.ops->del(FX.st.self, ODO_TABLE_IDEM_EXPIRY, k, 0), OD_OK);
}

static int64_t expired_metric(void)
{
    return fx_metric("orderd_idempotency_expired_total", "");
}

/* Within the TTL nothing changes: the same request replays, another 409s. */
START_TEST(idem_ttl_replays_within)
{
    char body[256], other[256], id[OD_UUID_STR_LEN + 1];
    snprintf(body, sizeof body, "%s", items_body(widget, NULL));
    snprintf(other, sizeof other, "%s", items_body(gadget, NULL));
    create_at(T0, body, "ttl", id);
    ck_assert_uint_eq(fx_count_expiry(), 1);

    od_request *r = post_at(T0 + 24 * HOUR_MS - 1, FX_ALICE, body, "ttl");
    ck_assert_msg(mock_reply_status(r) == 200, "%s", mock_reply_body(r));
    ck_assert_str_eq(fx_str(r, "data.id"), id);
    ck_assert_str_eq(mock_reply_header(r, "Idempotent-Replayed"), "true");
    fx_free(r);
    r = post(FX_ALICE, other, "ttl");
    ck_assert_int_eq(mock_reply_status(r), 409);
    fx_free(r);
    mock_set_now_ms(0);
    ck_assert_uint_eq(fx_count_orders(), 1);
    ck_assert_int_eq(expired_metric(), 0);
}
END_TEST

/* After the TTL the key is free: a new order with a new id, and the old
 * request hash no longer counts either. */
START_TEST(idem_ttl_expired_key_creates_new_order)
{
    char body[256], other[256], id1[OD_UUID_STR_LEN + 1], id2[OD_UUID_STR_LEN + 1];
    char id3[OD_UUID_STR_LEN + 1];
    snprintf(body, sizeof body, "%s", items_body(widget, NULL));
    snprintf(other, sizeof other, "%s", items_body(gadget, NULL));
    create_at(T0, body, "ttl", id1);
    create_at(T0 + 24 * HOUR_MS, body, "ttl", id2);
    ck_assert_str_ne(id1, id2);
    assert_record_names("ttl", id2);
    ck_assert_uint_eq(fx_count_orders(), 2);
    ck_assert_uint_eq(fx_count_idem(), 1);
    ck_assert_uint_eq(fx_count_expiry(), 1); /* the old doc went with its record */
    ck_assert_int_eq(fx_queued(), 2);
    ck_assert_int_eq(expired_metric(), 1);

    od_request *r = post_at(T0 + 25 * HOUR_MS, FX_ALICE, body, "ttl");
    ck_assert_int_eq(mock_reply_status(r), 200);
    ck_assert_str_eq(fx_str(r, "data.id"), id2);
    fx_free(r);

    create_at(T0 + 48 * HOUR_MS, other, "ttl", id3);
    ck_assert_str_ne(id3, id2);
    mock_set_now_ms(0);
    assert_record_names("ttl", id3);
    ck_assert_uint_eq(fx_count_orders(), 3);
    ck_assert_uint_eq(fx_count_idem(), 1);
    ck_assert_uint_eq(fx_count_expiry(), 1);
    ck_assert_int_eq(expired_metric(), 2);
}
END_TEST

/* Concurrent requests on an expired key make exactly one new order; the
 * others replay it. The clock is fixed, so every claim races in the same
 * millisecond (one expiry doc key for all of them). */
START_TEST(idem_ttl_concurrent_make_one_order)
{
    char body[256], id1[OD_UUID_STR_LEN + 1], id2[OD_UUID_STR_LEN + 1];
    snprintf(body, sizeof body, "%s", items_body(widget, NULL));
    create_at(T0, body, "race", id1);
    mock_set_now_ms(T0 + 24 * HOUR_MS);
    race_one_key(body, "race", RACERS, id2);
    mock_set_now_ms(0);
    ck_assert_str_ne(id1, id2);
    assert_record_names("race", id2);
    ck_assert_uint_eq(fx_count_orders(), 2);
    ck_assert_uint_eq(fx_count_idem(), 1);
    ck_assert_uint_eq(fx_count_expiry(), 1);
    ck_assert_int_eq(fx_queued(), 2);
    ck_assert_int_eq(expired_metric(), 1);
}
END_TEST

#define TTL_PAIRS 10

START_TEST(idem_ttl_concurrent_pairs)
{
    char body[256], key[32];
    snprintf(body, sizeof body, "%s", items_body(widget, NULL));
    for (int i = 0; i < TTL_PAIRS; i++) {
        snprintf(key, sizeof key, "pair-%d", i);
        create_at(T0, body, key, NULL);
    }
    for (int i = 0; i < TTL_PAIRS; i++) {
        snprintf(key, sizeof key, "pair-%d", i);
        mock_set_now_ms(T0 + 24 * HOUR_MS + i);
        race_one_key(body, key, 2, NULL);
    }
    mock_set_now_ms(0);
    ck_assert_uint_eq(fx_count_orders(), 2 * TTL_PAIRS);
    ck_assert_uint_eq(fx_count_idem(), TTL_PAIRS);
    ck_assert_uint_eq(fx_count_expiry(), TTL_PAIRS);
    ck_assert_int_eq(fx_queued(), 2 * TTL_PAIRS);
    ck_assert_int_eq(expired_metric(), TTL_PAIRS);
}
END_TEST

/* A record from before expiry docs expires by its createdAt alone, races
 * included, and leaves no doc behind. */
START_TEST(idem_ttl_record_without_expiry_doc)
{
    char body[256], id1[OD_UUID_STR_LEN + 1], id2[OD_UUID_STR_LEN + 1];
    snprintf(body, sizeof body, "%s", items_body(widget, NULL));
    create_at(T0, body, "legacy", id1);
    drop_expiry_doc(T0, "legacy");
    od_request *r = post_at(T0 + 24 * HOUR_MS - 1, FX_ALICE, body, "legacy");
    ck_assert_int_eq(mock_reply_status(r), 200);
    fx_free(r);
    mock_set_now_ms(T0 + 24 * HOUR_MS);
    race_one_key(body, "legacy", RACERS, id2);
    mock_set_now_ms(0);
    ck_assert_str_ne(id1, id2);
    assert_record_names("legacy", id2);
    ck_assert_uint_eq(fx_count_orders(), 2);
    ck_assert_uint_eq(fx_count_idem(), 1);
    ck_assert_uint_eq(fx_count_expiry(), 1);
    ck_assert_int_eq(expired_metric(), 1);
}
END_TEST

/* An ender that died after marking the expiry doc ended: for IDEM_STALE_MS
 * nobody else deletes the record (the key answers 409 "in progress"), then
 * the next request takes the end over. */
START_TEST(idem_ttl_dead_ender_taken_over)
{
    char body[256], id1[OD_UUID_STR_LEN + 1], id2[OD_UUID_STR_LEN + 1], k[256], doc[256];
    snprintf(body, sizeof body, "%s", items_body(widget, NULL));
    create_at(T0, body, "dead", id1);
    int64_t ended = T0 + 24 * HOUR_MS;
    expiry_key_of(k, sizeof k, T0, "dead");
    int n = snprintf(doc, sizeof doc,
                     "{\"orderId\":\"%s\",\"createdAtMs\":%lld,\"endedAtMs\":%lld}", id1,
                     (long long)T0, (long long)ended);
    ck_assert_int_eq(FX.st.ops->put(FX.st.self, ODO_TABLE_IDEM_EXPIRY, k, doc, (size_t)n, NULL, 0,
                                    OD_PUT_IF_VERSION, 1, NULL),
                     OD_OK);
    od_request *r = post_at(ended + 1000, FX_ALICE, body, "dead");
    ck_assert_msg(mock_reply_status(r) == 409, "%s", mock_reply_body(r));
    ck_assert_ptr_nonnull(strstr(fx_str(r, "message"), "in progress"));
    fx_free(r);
    assert_record_names("dead", id1);

    create_at(ended + 60000, body, "dead", id2);
    mock_set_now_ms(0);
    ck_assert_str_ne(id1, id2);
    assert_record_names("dead", id2);
    ck_assert_uint_eq(fx_count_expiry(), 1);
    ck_assert_int_eq(expired_metric(), 1);
}
END_TEST

/* The ABA that record versions alone would allow: between a request's
 * look at an expired record and its delete, a concurrent request with the
 * same key runs start to finish. Had it ended the record too and claimed
 * the key afresh (its new record is at version 1 again), the first
 * request's delete would remove that new record and one key would make
 * two orders. The expiry doc lets only one of them end the record: the
 * second waits for the end, then answers 409 "in progress" (here, as the
 * first request is stuck in its delete until the second one returns). */
static char aba_body[256];
static int aba_status;

static void concurrent_post(const char *key)
{
    (void)key;
    od_request *r = post(FX_ALICE, aba_body, "aba");
    aba_status = mock_reply_status(r);
    fx_free(r);
}

START_TEST(idem_ttl_end_has_no_aba)
{
    char id1[OD_UUID_STR_LEN + 1], id2[OD_UUID_STR_LEN + 1];
    snprintf(aba_body, sizeof aba_body, "%s", items_body(widget, NULL));
    create_at(T0, aba_body, "aba", id1);
    fx_before_del(ODO_TABLE_IDEMPOTENCY, concurrent_post);
    create_at(T0 + 24 * HOUR_MS, aba_body, "aba", id2);
    mock_set_now_ms(0);
    ck_assert_int_eq(aba_status, 409);
    ck_assert_str_ne(id1, id2);
    assert_record_names("aba", id2);
    ck_assert_uint_eq(fx_count_orders(), 2);
    ck_assert_uint_eq(fx_count_idem(), 1);
    ck_assert_uint_eq(fx_count_expiry(), 1);
    ck_assert_int_eq(expired_metric(), 1);
}
END_TEST

/* ---- the janitor ---- */

/* Poll (no fixed sleeps) until the tables hold what is expected. */
static int tables_reach(size_t idem, size_t expiry, int64_t expired, int64_t within_ms)
{
    const od_host_api *h = mock_host_api();
    int64_t deadline = h->monotonic_ms() + within_ms;
    for (;;) {
        if (fx_count_idem() == idem && fx_count_expiry() == expiry && expired_metric() == expired)
            return 1;
        if (h->monotonic_ms() >= deadline)
            return 0;
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

#define JANITOR_WAIT_MS 20000 /* generous: sanitizers and a loaded machine */

static void assert_tables(size_t idem, size_t expiry, int64_t expired)
{
    ck_assert_msg(tables_reach(idem, expiry, expired, JANITOR_WAIT_MS),
                  "want %zu records, %zu expiry docs, %lld expired; have %zu, %zu, %lld", idem,
                  expiry, (long long)expired, fx_count_idem(), fx_count_expiry(),
                  (long long)expired_metric());
}

/* TTL 1 h: records of T0 expire at T0 + 1 h; the janitor deletes exactly
 * those and their docs, leaves fresh ones and records without a doc. */
START_TEST(janitor_deletes_expired_only)
{
    char body[256], key[32], id[OD_UUID_STR_LEN + 1];
    snprintf(body, sizeof body, "%s", items_body(widget, NULL));
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "old-%d", i);
        create_at(T0, body, key, NULL);
    }
    create_at(T0, body, "legacy", NULL);
    drop_expiry_doc(T0, "legacy");
    for (int i = 0; i < 3; i++) {
        snprintf(key, sizeof key, "new-%d", i);
        create_at(T0 + HOUR_MS + 1, body, key, NULL);
    }
    mock_set_now_ms(T0 + HOUR_MS + 1); /* cutoff T0 + 1 ms: only the old ones */
    assert_tables(3 + 1, 3, 5);
    ck_assert(mock_log_contains("orders: idempotency sweep: "));
    ck_assert_uint_eq(fx_count_orders(), 9); /* orders are never touched */
    for (int i = 0; i < 3; i++) {
        snprintf(key, sizeof key, "new-%d", i);
        od_request *r = post(FX_ALICE, body, key);
        ck_assert_int_eq(mock_reply_status(r), 200);
        fx_free(r);
    }
    create_at(T0 + HOUR_MS + 1, body, "old-0", id);
    mock_set_now_ms(0);
    assert_record_names("old-0", id);
}
END_TEST

#define JANITOR_MANY 250 /* > 2 pages of IDEM_SWEEP_PAGE */

START_TEST(janitor_across_pages)
{
    char body[256], key[32];
    snprintf(body, sizeof body, "%s", items_body(widget, NULL));
    for (int i = 0; i < JANITOR_MANY; i++) {
        snprintf(key, sizeof key, "many-%03d", i);
        create_at(T0 + i, body, key, NULL);
    }
    /* Counted while the clock still says T0 + 249 ms: nothing has expired.
     * Creating "fresh" moves it past the TTL, and from then on the janitor
     * (every 10 ms) may already be sweeping. */
    ck_assert_uint_eq(fx_count_expiry(), JANITOR_MANY);
    create_at(T0 + 2 * HOUR_MS, body, "fresh", NULL);
    mock_set_now_ms(T0 + 2 * HOUR_MS);
    assert_tables(1, 1, JANITOR_MANY);
    mock_set_now_ms(0);
    ck_assert_uint_eq(fx_count_orders(), JANITOR_MANY + 1);
}
END_TEST

/* A doc whose record has moved on to a newer generation (or is gone) is
 * deleted alone: the janitor never deletes a record its doc does not name. */
START_TEST(janitor_spares_newer_generation)
{
    char body[256], id1[OD_UUID_STR_LEN + 1], id2[OD_UUID_STR_LEN + 1], k[256], doc[256];
    snprintf(body, sizeof body, "%s", items_body(widget, NULL));
    create_at(T0, body, "gen", id1);
    create_at(T0 + 2 * HOUR_MS, body, "gen", id2);
    /* the first generation's doc again, as a crash would have left it */
    expiry_key_of(k, sizeof k, T0, "gen");
    int n = snprintf(doc, sizeof doc, "{\"orderId\":\"%s\",\"createdAtMs\":%lld}", id1,
                     (long long)T0);
    ck_assert_int_eq(FX.st.ops->put(FX.st.self, ODO_TABLE_IDEM_EXPIRY, k, doc, (size_t)n, NULL, 0,
                                    OD_PUT_IF_ABSENT, 0, NULL),
                     OD_OK);
    /* and a doc whose record is gone altogether */
    create_at(T0 + 1, body, "gone", NULL);
    char gone[256];
    snprintf(gone, sizeof gone, "%s:gone", FX_ALICE);
    ck_assert_int_eq(FX.st.ops->del(FX.st.self, ODO_TABLE_IDEMPOTENCY, gone, 0), OD_OK);
    mock_set_now_ms(T0 + 2 * HOUR_MS);
    assert_tables(1, 1, 1); /* the first generation ended by the request */
    mock_set_now_ms(0);
    assert_record_names("gen", id2);
}
END_TEST

/* stop() wakes a janitor that waits for its next sweep (default 60 s). */
START_TEST(janitor_stop_is_prompt)
{
    const od_host_api *h = mock_host_api();
    ck_assert(mock_log_contains("orders: idempotency janitor: every 60000 ms, deletes "
                                "Idempotency-Key records older than 24 h"));
    int64_t t = h->monotonic_ms();
    FX.orders.desc->stop(FX.orders.self);
    ck_assert_int_lt(h->monotonic_ms() - t, 1000);
}
END_TEST

/* ... and one that is in the middle of a long sweep. */
START_TEST(janitor_stop_while_sweeping)
{
    const od_host_api *h = mock_host_api();
    char body[256], key[32];
    snprintf(body, sizeof body, "%s", items_body(widget, NULL));
    for (int i = 0; i < JANITOR_MANY; i++) {
        snprintf(key, sizeof key, "many-%03d", i);
        create_at(T0 + i, body, key, NULL);
    }
    mock_set_now_ms(T0 + 2 * HOUR_MS);
    int64_t t = h->monotonic_ms();
    FX.orders.desc->stop(FX.orders.self);
    ck_assert_int_lt(h->monotonic_ms() - t, 1000);
    mock_set_now_ms(0);
}
END_TEST

/* An orders module of its own, initialized with one int config key. */
static od_status orders_init_with(const char *key, int64_t value)
{
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/modules/orders.so", getenv("ORDERD_BUILD_DIR"));
    const od_module_desc *desc = mock_load_module(path, err, sizeof err);
    ck_assert_msg(desc != NULL, "%s", err);
    od_module *m = mock_module_new("orders");
    mock_config_set_int(m, key, value);
    mock_routes_reset(); /* the fixture's module registered them already */
    void *self = NULL;
    od_status s = desc->init(mock_host_api(), m, &self);
    if (s == OD_OK) {
        ck_assert_int_eq(desc->start(self), OD_OK);
        desc->stop(self);
        desc->destroy(self);
    }
    mock_module_free(m);
    return s;
}

START_TEST(janitor_config_ranges)
{
    static const struct {
        const char *key;
        int64_t value;
        int ok;
        const char *log;
    } cases[] = {
        {"idempotency_ttl_hours", 0, 0,
         "orders.idempotency_ttl_hours = 0 is out of range (valid: 1..8760)"},
        {"idempotency_ttl_hours", -1, 0, "orders.idempotency_ttl_hours = -1 is out of range"},
        {"idempotency_ttl_hours", 8761, 0, "orders.idempotency_ttl_hours = 8761 is out of range"},
        {"idempotency_ttl_hours", 1, 1, "older than 1 h"},
        {"idempotency_ttl_hours", 8760, 1, "older than 8760 h"},
        {"idempotency_sweep_interval_ms", -1, 0,
         "orders.idempotency_sweep_interval_ms = -1 is out of range (valid: 0..86400000)"},
        {"idempotency_sweep_interval_ms", 86400001, 0,
         "orders.idempotency_sweep_interval_ms = 86400001 is out of range"},
        {"idempotency_sweep_interval_ms", 0, 1, "idempotency janitor off"},
        {"idempotency_sweep_interval_ms", 86400000, 1, "every 86400000 ms"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mock_log_reset();
        od_status s = orders_init_with(cases[i].key, cases[i].value);
        ck_assert_msg((s == OD_OK) == cases[i].ok, "%s = %lld: %s", cases[i].key,
                      (long long)cases[i].value, od_status_str(s));
        if (!cases[i].ok)
            ck_assert_int_eq(s, OD_ERR_CONFIG);
        ck_assert_msg(mock_log_contains(cases[i].log), "%s = %lld: no log \"%s\"", cases[i].key,
                      (long long)cases[i].value, cases[i].log);
    }
}
END_TEST

typedef void (*setup_fn)(void);

#define MODE_SETUP(mode)                                                                           \
    static void setup_##mode(void)                                                                 \
    {                                                                                              \
        fx_use_mode(mode);                                                                         \
        setup();                                                                                   \
    }                                                                                              \
    static void janitor_setup_##mode(void)                                                         \
    {                                                                                              \
        fx_orders_config("idempotency_ttl_hours", 1);                                              \
        fx_orders_config("idempotency_sweep_interval_ms", 10);                                     \
        setup_##mode();                                                                            \
    }
MODE_SETUP(FX_MODE_STEPS)
MODE_SETUP(FX_MODE_BATCH)
MODE_SETUP(FX_MODE_OUTBOX)

static const setup_fn SETUPS[FX_MODES] = {
    [FX_MODE_STEPS] = setup_FX_MODE_STEPS,
    [FX_MODE_BATCH] = setup_FX_MODE_BATCH,
    [FX_MODE_OUTBOX] = setup_FX_MODE_OUTBOX,
};

/* The janitor sweeps every 10 ms and expires records after 1 h. */
static const setup_fn JANITOR_SETUPS[FX_MODES] = {
    [FX_MODE_STEPS] = janitor_setup_FX_MODE_STEPS,
    [FX_MODE_BATCH] = janitor_setup_FX_MODE_BATCH,
    [FX_MODE_OUTBOX] = janitor_setup_FX_MODE_OUTBOX,
};

static Suite *orders_suite(int mode)
{
    /* Check keeps the name's pointer */
    static const char *const names[FX_MODES] = {"orders_steps", "orders_batch", "orders_outbox"};
    Suite *s = suite_create(names[mode]);
    TCase *tc = tcase_create("api");
    tcase_add_checked_fixture(tc, SETUPS[mode], teardown);
    tcase_add_test(tc, create_string_form);
    tcase_add_test(tc, create_object_form_high_priority);
    tcase_add_loop_test(tc, create_rejects_bad_bodies, 0,
                        (int)(sizeof BAD_BODIES / sizeof BAD_BODIES[0]));
    tcase_add_test(tc, create_rejects_too_many_lines);
    tcase_add_test(tc, create_unknown_product_is_404);
    tcase_add_test(tc, get_owner_admin_other);
    tcase_add_test(tc, list_own_newest_first_paginated);
    tcase_add_test(tc, list_admin_status_filter);
    tcase_add_test(tc, list_rejects_bad_queries);
    tcase_add_test(tc, cancel_pending_then_again);
    tcase_add_test(tc, cancel_by_admin_and_terminal_409);
    tcase_add_test(tc, storage_outage_is_503);
    suite_add_tcase(s, tc);

    TCase *idem = tcase_create("idempotency");
    tcase_add_checked_fixture(idem, SETUPS[mode], teardown);
    tcase_add_test(idem, idempotent_replay_and_conflict);
    tcase_add_test(idem, idempotency_key_validated);
    tcase_add_test(idem, idempotency_key_free_after_404);
    tcase_add_test(idem, idempotency_heals_stale_record);
    tcase_add_test(idem, idempotency_in_progress_409);
    tcase_add_test(idem, idempotency_concurrent_retries_make_one_order);
    tcase_add_test(idem, idempotency_concurrent_pairs);
    suite_add_tcase(s, idem);

    TCase *w = tcase_create("write_path");
    tcase_add_checked_fixture(w, SETUPS[mode], teardown);
    tcase_add_test(w, init_log_names_mode);
    tcase_add_test(w, create_with_key_writes_each_once);
    if (mode == FX_MODE_OUTBOX)
        tcase_add_test(w, outbox_needs_no_send);
    else
        tcase_add_test(w, send_failure_leaves_nothing);
    if (mode != FX_MODE_STEPS) {
        tcase_add_test(w, batch_failure_writes_nothing);
        tcase_add_test(w, batch_conflict_writes_no_message);
    }
    suite_add_tcase(s, w);

    TCase *ttl = tcase_create("idempotency_ttl");
    tcase_add_checked_fixture(ttl, SETUPS[mode], teardown);
    tcase_add_test(ttl, idem_ttl_replays_within);
    tcase_add_test(ttl, idem_ttl_expired_key_creates_new_order);
    tcase_add_test(ttl, idem_ttl_concurrent_make_one_order);
    tcase_add_test(ttl, idem_ttl_concurrent_pairs);
    tcase_add_test(ttl, idem_ttl_record_without_expiry_doc);
    /* Ending a record does not depend on the mode, and each of these waits
     * 2 s for an "in progress" answer: one mode each. */
    if (mode == FX_MODE_STEPS)
        tcase_add_test(ttl, idem_ttl_end_has_no_aba);
    if (mode == FX_MODE_BATCH)
        tcase_add_test(ttl, idem_ttl_dead_ender_taken_over);
    tcase_add_test(ttl, janitor_stop_is_prompt);
    if (mode == FX_MODE_STEPS) /* config is read before the mode matters */
        tcase_add_test(ttl, janitor_config_ranges);
    suite_add_tcase(s, ttl);

    TCase *jan = tcase_create("janitor");
    tcase_add_checked_fixture(jan, JANITOR_SETUPS[mode], teardown);
    tcase_set_timeout(jan, 60);
    tcase_add_test(jan, janitor_deletes_expired_only);
    tcase_add_test(jan, janitor_across_pages);
    tcase_add_test(jan, janitor_spares_newer_generation);
    tcase_add_test(jan, janitor_stop_while_sweeping);
    suite_add_tcase(s, jan);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(orders_suite(FX_MODE_STEPS));
    srunner_add_suite(sr, orders_suite(FX_MODE_BATCH));
    srunner_add_suite(sr, orders_suite(FX_MODE_OUTBOX));
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
