/*
 * test_steps.c - the validate, reserve_stock and complete steps against the
 * mock host with the real storage_memory backend, driven the way the queue
 * worker drives them; orders are created through the orders module. Covers
 * redelivery (stock moves once), all-or-nothing shortfalls, compensation
 * and cancels racing the pipeline.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "order_fixture.h"
#include "order_model.h"

#define VALIDATE (&FX.steps[0])
#define RESERVE (&FX.steps[1])
#define COMPLETE (&FX.steps[2])

static char widget[OD_UUID_STR_LEN + 1], gadget[OD_UUID_STR_LEN + 1];
static char reason[OD_REASON_MAX];

static void setup(void)
{
    fx_up();
    fx_product("Widget", 1999, 10, widget);
    fx_product("Gadget", 500, 5, gadget);
    reason[0] = '\0';
}

static void teardown(void)
{
    fx_down();
}

/* An order for widget x w and gadget x g, moved to PROCESSING as the
 * worker does before the first step. */
static void processing_order(int w, int g, char *id)
{
    char body[512];
    if (g > 0)
        snprintf(body, sizeof body,
                 "{\"items\":[{\"productId\":\"%s\",\"quantity\":%d},{\"productId\":\"%s\","
                 "\"quantity\":%d}]}",
                 widget, w, gadget, g);
    else
        snprintf(body, sizeof body, "{\"items\":[{\"productId\":\"%s\",\"quantity\":%d}]}", widget,
                 w);
    fx_order(FX_ALICE, body, id);
    fx_set_status(id, ODO_PROCESSING);
}

static const char *status_of(const char *id)
{
    static char status[32];
    json_object *doc = fx_order_doc(id, NULL);
    snprintf(status, sizeof status, "%s", odo_str(doc, "status"));
    json_object_put(doc);
    return status;
}

static int reserved(const char *id)
{
    json_object *doc = fx_order_doc(id, NULL);
    int r = odo_reserved(doc);
    json_object_put(doc);
    return r;
}

static int cancel(const char *id)
{
    od_request *r =
        fx_call("DELETE", "/api/orders/:id", id, FX_ALICE, OD_ROLE_CUSTOMER, NULL, NULL);
    int status = mock_reply_status(r);
    fx_free(r);
    return status;
}

/* ---- validate ---- */

START_TEST(validate_open_order_continues)
{
    char id[OD_UUID_STR_LEN + 1];
    processing_order(2, 1, id);
    ck_assert_int_eq(fx_run_step(VALIDATE, id, reason), OD_STEP_CONTINUE);
    fx_set_status(id, ODO_PENDING); /* PENDING is open too */
    ck_assert_int_eq(fx_run_step(VALIDATE, id, reason), OD_STEP_CONTINUE);
}
END_TEST

START_TEST(validate_fails_closed_order)
{
    static const char *const closed[] = {ODO_CANCELLED, ODO_COMPLETED, ODO_FAILED};
    for (size_t i = 0; i < 3; i++) {
        char id[OD_UUID_STR_LEN + 1];
        processing_order(1, 0, id);
        fx_set_status(id, closed[i]);
        ck_assert_int_eq(fx_run_step(VALIDATE, id, reason), OD_STEP_FAIL);
        ck_assert_str_eq(reason, "order_not_pending");
    }
}
END_TEST

START_TEST(validate_fails_deleted_product)
{
    char id[OD_UUID_STR_LEN + 1];
    processing_order(1, 1, id);
    ck_assert_int_eq(FX.st.ops->del(FX.st.self, ODO_TABLE_PRODUCTS, gadget, 0), OD_OK);
    ck_assert_int_eq(fx_run_step(VALIDATE, id, reason), OD_STEP_FAIL);
    ck_assert_str_eq(reason, "product_not_found");
}
END_TEST

/* ---- reserve_stock ---- */

START_TEST(reserve_takes_stock_once_under_redelivery)
{
    char id[OD_UUID_STR_LEN + 1];
    processing_order(3, 2, id);
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_CONTINUE);
    ck_assert_int_eq(fx_stock(widget), 7);
    ck_assert_int_eq(fx_stock(gadget), 3);
    ck_assert_int_eq(reserved(id), 1);
    /* redelivered: nothing moves again */
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_CONTINUE);
    ck_assert_int_eq(fx_stock(widget), 7);
    ck_assert_int_eq(fx_stock(gadget), 3);
}
END_TEST

/* A crash after taking stock but before recording it: the rerun meets its
 * own tokens and takes nothing twice. */
START_TEST(reserve_rerun_after_unrecorded_reservation)
{
    char id[OD_UUID_STR_LEN + 1];
    processing_order(3, 2, id);
    odo_ctx c = {mock_host_api(), &FX.st};
    ck_assert_int_eq(odo_stock_reserve(&c, id, widget, 3), OD_OK);
    ck_assert_int_eq(fx_stock(widget), 7);
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_CONTINUE);
    ck_assert_int_eq(fx_stock(widget), 7);
    ck_assert_int_eq(fx_stock(gadget), 3);
}
END_TEST

START_TEST(reserve_shortfall_is_all_or_nothing)
{
    char id[OD_UUID_STR_LEN + 1];
    processing_order(4, 6, id); /* 6 gadgets, 5 on hand */
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_FAIL);
    ck_assert_str_eq(reason, "insufficient_stock");
    ck_assert_int_eq(fx_stock(widget), 10);
    ck_assert_int_eq(fx_stock(gadget), 5);
    ck_assert_int_eq(reserved(id), 0);
    /* and again (redelivery): still nothing held */
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_FAIL);
    ck_assert_int_eq(fx_stock(widget), 10);
    ck_assert_int_eq(fx_stock(gadget), 5);
}
END_TEST

/* The worker died after the shortfall gave stock back but before it wrote
 * FAILED; meanwhile stock arrived. The rerun must not count the spent
 * reserve tokens as stock held. */
START_TEST(reserve_rerun_after_shortfall_takes_nothing)
{
    char id[OD_UUID_STR_LEN + 1];
    processing_order(4, 6, id);
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_FAIL);
    ck_assert_int_eq(FX.st.ops->counter_set(FX.st.self, ODO_COUNTER_STOCK, gadget, 20), OD_OK);
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_FAIL);
    ck_assert_str_eq(reason, "stock_released");
    ck_assert_int_eq(fx_stock(widget), 10);
    ck_assert_int_eq(fx_stock(gadget), 20);
    ck_assert_int_eq(reserved(id), 0);
}
END_TEST

/* The same after a compensation: the order is still PROCESSING on rerun. */
START_TEST(reserve_rerun_after_compensation_takes_nothing)
{
    char id[OD_UUID_STR_LEN + 1];
    processing_order(3, 2, id);
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_CONTINUE);
    fx_compensate(RESERVE, id);
    ck_assert_int_eq(reserved(id), 0);
    ck_assert_int_eq(fx_run_step(VALIDATE, id, reason), OD_STEP_CONTINUE);
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_FAIL);
    ck_assert_str_eq(reason, "stock_released");
    ck_assert_int_eq(fx_stock(widget), 10);
    ck_assert_int_eq(fx_stock(gadget), 5);
}
END_TEST

START_TEST(reserve_compensate_releases_exactly_once)
{
    char id[OD_UUID_STR_LEN + 1];
    processing_order(3, 2, id);
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_CONTINUE);
    fx_compensate(RESERVE, id);
    ck_assert_int_eq(fx_stock(widget), 10);
    ck_assert_int_eq(fx_stock(gadget), 5);
    fx_compensate(RESERVE, id);
    ck_assert_int_eq(fx_stock(widget), 10);
    ck_assert_int_eq(fx_stock(gadget), 5);
    /* a late redelivery of run cannot take the stock back */
    fx_set_status(id, ODO_FAILED);
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_FAIL);
    ck_assert_int_eq(fx_stock(widget), 10);
}
END_TEST

/* compensate for a run that never reserved gives nothing away */
START_TEST(reserve_compensate_without_reservation)
{
    char id[OD_UUID_STR_LEN + 1];
    processing_order(3, 2, id);
    fx_compensate(RESERVE, id);
    ck_assert_int_eq(fx_stock(widget), 10);
    ck_assert_int_eq(fx_stock(gadget), 5);
}
END_TEST

START_TEST(reserve_on_cancelled_order_fails)
{
    char id[OD_UUID_STR_LEN + 1];
    processing_order(3, 0, id);
    ck_assert_int_eq(cancel(id), 200);
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_FAIL);
    ck_assert_str_eq(reason, "order_cancelled");
    ck_assert_int_eq(fx_stock(widget), 10);
}
END_TEST

/* A late duplicate delivery meets an order another delivery completed: it
 * must fail without giving the completed order's units back (overselling). */
START_TEST(reserve_on_completed_order_keeps_its_stock)
{
    char id[OD_UUID_STR_LEN + 1];
    processing_order(3, 2, id);
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_CONTINUE);
    fx_set_status(id, ODO_COMPLETED);
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_FAIL);
    ck_assert_str_eq(reason, "order_not_pending");
    ck_assert_int_eq(fx_stock(widget), 7);
    ck_assert_int_eq(fx_stock(gadget), 3);
}
END_TEST

/* ---- cancel against the pipeline ---- */

START_TEST(cancel_after_reservation_restores_stock_once)
{
    char id[OD_UUID_STR_LEN + 1];
    processing_order(3, 2, id);
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_CONTINUE);
    ck_assert_int_eq(fx_stock(widget), 7);
    ck_assert_int_eq(cancel(id), 200);
    ck_assert_int_eq(fx_stock(widget), 10);
    ck_assert_int_eq(fx_stock(gadget), 5);
    /* a second cancel, a compensation and a redelivered reserve later: */
    ck_assert_int_eq(cancel(id), 409);
    fx_compensate(RESERVE, id);
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_FAIL);
    ck_assert_int_eq(fx_stock(widget), 10);
    ck_assert_int_eq(fx_stock(gadget), 5);
    ck_assert_int_eq(fx_run_step(COMPLETE, id, reason), OD_STEP_FAIL);
    ck_assert_str_eq(reason, "order_cancelled");
    ck_assert_str_eq(status_of(id), ODO_CANCELLED);
}
END_TEST

/* The reservation was taken but not recorded when the cancel came: the
 * cancel gives it back, and so does nobody else. */
START_TEST(cancel_between_reservation_and_record)
{
    char id[OD_UUID_STR_LEN + 1];
    processing_order(3, 0, id);
    odo_ctx c = {mock_host_api(), &FX.st};
    ck_assert_int_eq(odo_stock_reserve(&c, id, widget, 3), OD_OK);
    ck_assert_int_eq(cancel(id), 200);
    ck_assert_int_eq(fx_stock(widget), 10);
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_FAIL);
    ck_assert_str_eq(reason, "order_cancelled");
    ck_assert_int_eq(fx_stock(widget), 10);
}
END_TEST

START_TEST(reserve_missing_counter_fails_and_gives_back)
{
    char id[OD_UUID_STR_LEN + 1];
    processing_order(3, 2, id);
    ck_assert_int_eq(FX.st.ops->counter_del(FX.st.self, ODO_COUNTER_STOCK, gadget), OD_OK);
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_FAIL);
    ck_assert_str_eq(reason, "product_not_found");
    ck_assert_int_eq(fx_stock(widget), 10);
}
END_TEST

/* An outage is transient: RETRY, and nothing moved. */
START_TEST(storage_outage_retries)
{
    char id[OD_UUID_STR_LEN + 1];
    processing_order(3, 2, id);
    fx_storage_unavailable(1);
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(fx_run_step(&FX.steps[i], id, reason), OD_STEP_RETRY);
        ck_assert_str_eq(reason, "storage_unavailable");
    }
    fx_storage_unavailable(0);
    ck_assert_int_eq(fx_stock(widget), 10);
    ck_assert_str_eq(status_of(id), ODO_PROCESSING);
}
END_TEST

/* ---- complete ---- */

START_TEST(complete_processing_order)
{
    char id[OD_UUID_STR_LEN + 1];
    processing_order(2, 0, id);
    ck_assert_int_eq(fx_run_step(VALIDATE, id, reason), OD_STEP_CONTINUE);
    ck_assert_int_eq(fx_run_step(RESERVE, id, reason), OD_STEP_CONTINUE);
    ck_assert_int_eq(fx_run_step(COMPLETE, id, reason), OD_STEP_CONTINUE);
    ck_assert_str_eq(status_of(id), ODO_COMPLETED);
    ck_assert_int_eq(fx_metric(ODO_METRIC_STATUS, "status=\"COMPLETED\""), 1);

    od_request *r = fx_call("GET", "/api/orders/:id", id, FX_ALICE, OD_ROLE_CUSTOMER, NULL, NULL);
    ck_assert_str_eq(fx_str(r, "data.history.0.status"), "PENDING");
    ck_assert_str_eq(fx_str(r, "data.history.1.status"), "PROCESSING");
    ck_assert_str_eq(fx_str(r, "data.history.2.status"), "COMPLETED");
    fx_free(r);

    /* redelivered: no second write, no second count */
    ck_assert_int_eq(fx_run_step(COMPLETE, id, reason), OD_STEP_CONTINUE);
    ck_assert_int_eq(fx_metric(ODO_METRIC_STATUS, "status=\"COMPLETED\""), 1);
    json_object *doc = fx_order_doc(id, NULL);
    ck_assert_int_eq(json_object_array_length(json_object_object_get(doc, "history")), 3);
    json_object_put(doc);

    /* completed orders cannot be cancelled; the stock stays sold */
    ck_assert_int_eq(cancel(id), 409);
    ck_assert_int_eq(fx_stock(widget), 8);
    ck_assert_str_eq(status_of(id), ODO_COMPLETED);
}
END_TEST

START_TEST(complete_refuses_cancelled_and_pending)
{
    char id[OD_UUID_STR_LEN + 1], pending[OD_UUID_STR_LEN + 1];
    processing_order(1, 0, id);
    ck_assert_int_eq(cancel(id), 200);
    ck_assert_int_eq(fx_run_step(COMPLETE, id, reason), OD_STEP_FAIL);
    ck_assert_str_eq(reason, "order_cancelled");
    char body[256];
    snprintf(body, sizeof body, "{\"items\":[\"%s\"]}", widget);
    fx_order(FX_ALICE, body, pending); /* the worker never took it */
    ck_assert_int_eq(fx_run_step(COMPLETE, pending, reason), OD_STEP_FAIL);
    ck_assert_str_eq(reason, "order_not_processing");
    ck_assert_str_eq(status_of(pending), ODO_PENDING);
}
END_TEST

static Suite *steps_suite(void)
{
    Suite *s = suite_create("steps");
    TCase *tc = tcase_create("steps");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, validate_open_order_continues);
    tcase_add_test(tc, validate_fails_closed_order);
    tcase_add_test(tc, validate_fails_deleted_product);
    tcase_add_test(tc, reserve_takes_stock_once_under_redelivery);
    tcase_add_test(tc, reserve_rerun_after_unrecorded_reservation);
    tcase_add_test(tc, reserve_shortfall_is_all_or_nothing);
    tcase_add_test(tc, reserve_rerun_after_shortfall_takes_nothing);
    tcase_add_test(tc, reserve_rerun_after_compensation_takes_nothing);
    tcase_add_test(tc, reserve_compensate_releases_exactly_once);
    tcase_add_test(tc, reserve_compensate_without_reservation);
    tcase_add_test(tc, reserve_on_cancelled_order_fails);
    tcase_add_test(tc, reserve_on_completed_order_keeps_its_stock);
    tcase_add_test(tc, reserve_missing_counter_fails_and_gives_back);
    tcase_add_test(tc, storage_outage_retries);
    tcase_add_test(tc, cancel_after_reservation_restores_stock_once);
    tcase_add_test(tc, cancel_between_reservation_and_record);
    tcase_add_test(tc, complete_processing_order);
    tcase_add_test(tc, complete_refuses_cancelled_and_pending);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(steps_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
