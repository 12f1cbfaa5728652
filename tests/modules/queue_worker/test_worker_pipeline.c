/*
 * test_worker_pipeline - queue_worker driving the real pipeline
 * validate -> reserve_stock -> complete, with orders created through the
 * orders module and the memory backends (the orders suite's fixture). Many
 * worker threads race for little stock: exactly stock / quantity orders may
 * complete, stock never goes negative and units are conserved.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "order_fixture.h"
#include "order_model.h"

#define N_ORDERS 240
#define STOCK 21
#define QTY 2
#define WAIT_MS 60000

static struct {
    fx_module worker;
    const od_step *pipeline[3];
    char ids[N_ORDERS][OD_UUID_STR_LEN + 1];
} W;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void worker_up(uint32_t threads)
{
    for (size_t i = 0; i < 3; i++)
        W.pipeline[i] = &FX.steps[i];
    mock_set_pipeline(W.pipeline, 3);
    char path[1024], err[512] = "";
    snprintf(path, sizeof path, "%s/queue_worker.so", MODULE_DIR);
    W.worker.desc = mock_load_module(path, err, sizeof err);
    ck_assert_msg(W.worker.desc != NULL, "%s", err);
    W.worker.mod = mock_module_new("queue_worker");
    mock_config_set_int(W.worker.mod, "threads", threads);
    mock_config_set_int(W.worker.mod, "poll_wait_ms", 20);
    mock_config_set_int(W.worker.mod, "backoff_base_ms", 5);
    mock_config_set_int(W.worker.mod, "backoff_max_ms", 50);
    ck_assert_int_eq(W.worker.desc->init(mock_host_api(), W.worker.mod, &W.worker.self), OD_OK);
    ck_assert_int_eq(W.worker.desc->start(W.worker.self), OD_OK);
}

static void worker_down(void)
{
    W.worker.desc->stop(W.worker.self);
    W.worker.desc->destroy(W.worker.self);
    mock_module_free(W.worker.mod);
}

/* Counts by status; *held = units held by orders marked reserved. */
static size_t count_status(const char *status, int64_t *held)
{
    size_t n = 0;
    for (size_t i = 0; i < N_ORDERS; i++) {
        json_object *doc = fx_order_doc(W.ids[i], NULL);
        if (strcmp(odo_str(doc, "status"), status) == 0) {
            n++;
            if (held && odo_reserved(doc))
                *held += QTY;
        }
        json_object_put(doc);
    }
    return n;
}

START_TEST(test_little_stock_many_threads)
{
    fx_up();
    char widget[OD_UUID_STR_LEN + 1];
    fx_product("Widget", 1999, STOCK, widget);
    worker_up(8);

    /* Orders arrive while eight workers are already taking them. */
    char body[256];
    for (size_t i = 0; i < N_ORDERS; i++) {
        snprintf(body, sizeof body,
                 "{\"items\":[{\"productId\":\"%s\",\"quantity\":%d}],\"priority\":\"%s\"}", widget,
                 QTY, i % 4 == 0 ? "high" : "normal");
        fx_order(i % 2 ? FX_ALICE : FX_BOB, body, W.ids[i]);
    }

    int64_t deadline = now_ms() + WAIT_MS;
    size_t done = 0;
    while (done < N_ORDERS) {
        ck_assert_msg(now_ms() < deadline, "only %zu of %d orders settled", done, N_ORDERS);
        ck_assert_int_ge(fx_stock(widget), 0); /* never negative, at any moment */
        done = count_status(ODO_COMPLETED, NULL) + count_status(ODO_FAILED, NULL);
        struct timespec tick = {0, 5 * 1000 * 1000};
        nanosleep(&tick, NULL);
    }

    worker_down(); /* joined: every settled order's message is acknowledged */
    int64_t held = 0;
    size_t completed = count_status(ODO_COMPLETED, &held);
    ck_assert_uint_eq(completed, STOCK / QTY);
    ck_assert_uint_eq(count_status(ODO_FAILED, NULL), N_ORDERS - STOCK / QTY);
    ck_assert_int_eq(held, (int64_t)(STOCK / QTY) * QTY);
    ck_assert_int_eq(fx_stock(widget) + held, STOCK); /* conserved */
    ck_assert_int_eq(fx_stock(widget), STOCK % QTY);

    for (size_t i = 0; i < N_ORDERS; i++) {
        json_object *doc = fx_order_doc(W.ids[i], NULL);
        if (strcmp(odo_str(doc, "status"), ODO_FAILED) == 0) {
            json_object *history = json_object_object_get(doc, "history");
            json_object *last =
                json_object_array_get_idx(history, json_object_array_length(history) - 1);
            ck_assert_str_eq(odo_str(last, "reason"), "insufficient_stock");
            ck_assert(!odo_reserved(doc));
        }
        json_object_put(doc);
    }
    int64_t visible = -1, in_flight = -1;
    for (uint32_t lane = 0; lane < OD_LANE_COUNT; lane++) {
        ck_assert_int_eq(FX.q.ops->depth(FX.q.self, lane, &visible, &in_flight), OD_OK);
        ck_assert_int_eq(visible + in_flight, 0);
    }
    fx_down();
}
END_TEST

static size_t queued_messages(void)
{
    int64_t total = 0;
    for (uint32_t lane = 0; lane < OD_LANE_COUNT; lane++) {
        int64_t visible = -1, in_flight = -1;
        ck_assert_int_eq(FX.q.ops->depth(FX.q.self, lane, &visible, &in_flight), OD_OK);
        total += visible + in_flight;
    }
    return (size_t)total;
}

/* What the sweeper relies on: a second and third {"orderId"} for the same
 * order (one on each lane, handled concurrently by eight threads) change
 * nothing visible - each order is reserved and settled once. Without the
 * worker's PROCESSING lease this failed about one run in ten: two
 * deliveries ran the pipeline at once, and reserve_stock gave back the
 * stock of an order the other run had just COMPLETED. */
#define DUP_ORDERS 30
START_TEST(test_duplicate_messages_are_harmless)
{
    fx_up();
    char widget[OD_UUID_STR_LEN + 1];
    fx_product("Widget", 1999, STOCK, widget);
    char body[256];
    snprintf(body, sizeof body, "{\"items\":[{\"productId\":\"%s\",\"quantity\":%d}]}",
             widget, QTY);
    for (size_t i = 0; i < DUP_ORDERS; i++) {
        fx_order(i % 2 ? FX_ALICE : FX_BOB, body, W.ids[i]);
        char msg[96];
        int n = snprintf(msg, sizeof msg, "{\"orderId\":\"%s\"}", W.ids[i]);
        for (uint32_t lane = OD_LANE_NORMAL; lane <= OD_LANE_PRIORITY; lane++)
            ck_assert_int_eq(FX.q.ops->send(FX.q.self, lane, msg, (size_t)n, 0, NULL), OD_OK);
    }
    ck_assert_uint_eq(queued_messages(), 3 * DUP_ORDERS);
    worker_up(8);

    int64_t deadline = now_ms() + WAIT_MS;
    while (queued_messages() > 0) {
        ck_assert_msg(now_ms() < deadline, "%zu messages left", queued_messages());
        ck_assert_int_ge(fx_stock(widget), 0);
        struct timespec tick = {0, 5 * 1000 * 1000};
        nanosleep(&tick, NULL);
    }
    worker_down();

    int64_t held = 0;
    size_t completed = 0, failed = 0;
    for (size_t i = 0; i < DUP_ORDERS; i++) {
        json_object *doc = fx_order_doc(W.ids[i], NULL);
        const char *status = odo_str(doc, "status");
        completed += strcmp(status, ODO_COMPLETED) == 0;
        failed += strcmp(status, ODO_FAILED) == 0;
        if (strcmp(status, ODO_COMPLETED) == 0 && odo_reserved(doc))
            held += QTY;
        /* One COMPLETED (or FAILED) history entry, however many deliveries. */
        json_object *history = json_object_object_get(doc, "history");
        size_t settled = 0;
        for (size_t h = 0; h < json_object_array_length(history); h++) {
            const char *st = odo_str(json_object_array_get_idx(history, h), "status");
            settled += strcmp(st, ODO_COMPLETED) == 0 || strcmp(st, ODO_FAILED) == 0;
        }
        ck_assert_uint_eq(settled, 1);
        json_object_put(doc);
    }
    ck_assert_uint_eq(completed, STOCK / QTY);
    ck_assert_uint_eq(failed, DUP_ORDERS - STOCK / QTY);
    ck_assert_int_eq(fx_stock(widget) + held, STOCK);
    ck_assert_int_eq(fx_stock(widget), STOCK % QTY);
    fx_down();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("queue_worker_pipeline");
    TCase *tc = tcase_create("pipeline");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_little_stock_many_threads);
    tcase_add_test(tc, test_duplicate_messages_are_harmless);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
