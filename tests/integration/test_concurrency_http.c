/*
 * integ_concurrency: the stock invariants under concurrent HTTP load.
 *
 * 16 client threads, each with its own curl handle and its own customer
 * account, hit one orderd whose 4 queue workers run at the same time:
 *
 * - no_overselling: 300 one-unit orders against 25 units must end as
 *   exactly 25 COMPLETED and 275 FAILED (insufficient_stock) with stock 0;
 *   150 orders of 1..3 units against 40 units must end with
 *   units(COMPLETED) == 40 - final stock, final stock >= 0, and every
 *   failed order wanting more than the final stock (stock only goes down in
 *   this phase, so a shortfall then is a shortfall at the end).
 * - cancels_conserve_stock: cancels of PENDING orders (worker stopped),
 *   then cancels racing the restarted worker; afterwards every 200 cancel is
 *   CANCELLED, every 409 one COMPLETED or FAILED, and
 *   stock + units(COMPLETED) == initial stock.
 * - idempotent_retries_make_one_order: 8 threads send the same keyed
 *   request at once; exactly one 201, seven 200 replays of the same order.
 *
 * Threads never call ck_assert (Check is not thread-safe): they record
 * what they saw, and the main thread asserts after joining them. Every
 * answer is checked for "no 5xx" and the envelope by oh_call.
 */
#include "orders_helpers.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CLIENTS 16
#define DRAIN_MS 60000

static ih_server srv;
static const char *tokens[CLIENTS]; /* one customer per client thread; per test */
static const char *admin;

static void start_shared(void)
{
    oh_server_start(&srv, "threads = 4; poll_wait_ms = 20; backoff_base_ms = 50;"
                          " backoff_max_ms = 200; visibility_ms = 10000; autostart = true;");
    for (int i = 0; i < CLIENTS; i++)
        ih_register(&srv, "Racer", ih_printf("racer%d@test.local", i), "customer-password-1");
    ih_release();
}

static void stop_shared(void)
{
    ih_server_stop(&srv);
}

static void login_all(void)
{
    admin = oh_admin(&srv);
    for (int i = 0; i < CLIENTS; i++)
        tokens[i] = ih_login(&srv, ih_printf("racer%d@test.local", i), "customer-password-1");
}

static void release(void)
{
    ih_release();
}

/* ---- one order as the threads saw it ---- */

typedef struct order_rec {
    const char *product_id;
    int64_t quantity;
    long create_status;
    long cancel_status; /* 0: not cancelled by the test */
    int cancel;         /* the test cancels it (in the current phase) */
    char id[64];
} order_rec;

typedef enum job { JOB_CREATE, JOB_CANCEL } job;

typedef struct client_arg {
    oh_client client;
    const char *token;
    pthread_barrier_t *start;
    job what;
    order_rec *orders;  /* this client handles orders[first], [first + step], ... */
    size_t first, step, n;
} client_arg;

static void create_one(client_arg *a, order_rec *o)
{
    char body[256];
    oh_answer ans;
    snprintf(body, sizeof body, "{\"items\":[{\"productId\":\"%s\",\"quantity\":%lld}]}",
             o->product_id, (long long)o->quantity);
    if (oh_call(&a->client, "POST", "/api/orders", a->token, NULL, body, &ans) == 0) {
        o->create_status = ans.status;
        const char *id = oh_data_str(&ans, "id");
        snprintf(o->id, sizeof o->id, "%s", id ? id : "");
    }
    oh_answer_free(&ans);
}

static void cancel_one(client_arg *a, order_rec *o)
{
    char path[128];
    oh_answer ans;
    snprintf(path, sizeof path, "/api/orders/%s", o->id);
    if (oh_call(&a->client, "DELETE", path, a->token, NULL, NULL, &ans) == 0)
        o->cancel_status = ans.status;
    oh_answer_free(&ans);
}

static void *client_main(void *arg)
{
    client_arg *a = arg;
    pthread_barrier_wait(a->start);
    for (size_t i = a->first; i < a->n; i += a->step) {
        order_rec *o = &a->orders[i];
        if (a->what == JOB_CREATE)
            create_one(a, o);
        else if (o->cancel)
            cancel_one(a, o);
    }
    return NULL;
}

/* Order i belongs to client i % CLIENTS, so one customer creates and
 * cancels it. Returns after every thread has finished; asserts that every
 * answer kept the contract. */
static void run_clients(job what, order_rec *orders, size_t n)
{
    client_arg args[CLIENTS];
    pthread_t threads[CLIENTS];
    pthread_barrier_t start;
    ck_assert_int_eq(pthread_barrier_init(&start, NULL, CLIENTS), 0);
    for (int i = 0; i < CLIENTS; i++) {
        args[i] = (client_arg){ .token = tokens[i], .start = &start, .what = what,
                                .orders = orders, .first = (size_t)i, .step = CLIENTS, .n = n };
        ck_assert_int_eq(oh_client_init(&args[i].client, srv.port), 0);
    }
    for (int i = 0; i < CLIENTS; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, client_main, &args[i]), 0);
    int bad = 0;
    const char *first_bad = NULL;
    for (int i = 0; i < CLIENTS; i++) {
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
        if (args[i].client.bad && !first_bad)
            first_bad = ih_strdup(args[i].client.first_bad);
        bad += args[i].client.bad;
        oh_client_close(&args[i].client);
    }
    pthread_barrier_destroy(&start);
    ck_assert_msg(bad == 0, "%d answers broke the contract, first: %s", bad, first_bad);
}

static void assert_all_created(const order_rec *orders, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(orders[i].create_status == 201 && orders[i].id[0],
                      "order %zu: create answered %ld", i, orders[i].create_status);
}

/* The final state of one order, read by its owner. */
static ih_response *final_order(const order_rec *o, size_t i)
{
    ih_response *r = ih_get(&srv, ih_printf("/api/orders/%s", o->id), tokens[i % CLIENTS]);
    ck_assert_msg(r->status == 200, "order %s: %ld %s", o->id, r->status, r->body);
    return r;
}

static int status_is(const ih_response *r, const char *status)
{
    const char *got = ih_str(r, "data.status");
    return got && strcmp(got, status) == 0;
}

static void assert_failed_for_stock(const ih_response *r)
{
    const char *reason = oh_history_reason(r, "FAILED");
    ck_assert_msg(reason && strcmp(reason, "insufficient_stock") == 0, "FAILED for another "
                  "reason: %.400s", r->body);
}

/* ---- no overselling ---- */

START_TEST(no_overselling)
{
    enum { UNIT_ORDERS = 300, MIXED_ORDERS = 150, N = UNIT_ORDERS + MIXED_ORDERS };
    enum { UNIT_STOCK = 25, MIXED_STOCK = 40 };
    const char *unit = oh_product(&srv, admin, "Scarce Unit", "1.99", UNIT_STOCK);
    const char *mixed = oh_product(&srv, admin, "Scarce Mixed", "0.50", MIXED_STOCK);
    order_rec orders[N];
    memset(orders, 0, sizeof orders);
    for (size_t i = 0; i < N; i++) {
        orders[i].product_id = i < UNIT_ORDERS ? unit : mixed;
        orders[i].quantity = i < UNIT_ORDERS ? 1 : 1 + (int64_t)(i % 3);
    }

    run_clients(JOB_CREATE, orders, N);
    assert_all_created(orders, N);
    oh_wait_drained(&srv, admin, DRAIN_MS);

    int64_t unit_left = oh_stock(&srv, admin, unit), mixed_left = oh_stock(&srv, admin, mixed);
    size_t unit_completed = 0, unit_failed = 0;
    int64_t mixed_sold = 0;
    for (size_t i = 0; i < N; i++) {
        ih_response *r = final_order(&orders[i], i);
        int completed = status_is(r, "COMPLETED");
        if (!completed) {
            ck_assert_msg(status_is(r, "FAILED"), "order %zu ended %s", i,
                          ih_str(r, "data.status"));
            assert_failed_for_stock(r);
            /* Stock only fell in this phase: a shortfall then is one now. */
            if (i >= UNIT_ORDERS)
                ck_assert_msg(orders[i].quantity > mixed_left,
                              "order of %lld failed, but %lld are left",
                              (long long)orders[i].quantity, (long long)mixed_left);
        }
        if (i < UNIT_ORDERS)
            completed ? unit_completed++ : unit_failed++;
        else if (completed)
            mixed_sold += orders[i].quantity;
    }
    ck_assert_uint_eq(unit_completed, UNIT_STOCK);
    ck_assert_uint_eq(unit_failed, UNIT_ORDERS - UNIT_STOCK);
    ck_assert_int_eq(unit_left, 0);
    ck_assert_int_ge(mixed_left, 0);
    ck_assert_int_eq(mixed_sold, MIXED_STOCK - mixed_left);
    /* The 50 one-unit orders alone want more than 40 units, so one of
     * them failed, and the final stock is below its quantity, 1. */
    ck_assert_int_eq(mixed_left, 0);
}
END_TEST

/* ---- cancels ---- */

static ih_response *admin_post(const char *path)
{
    const char *headers[] = { ih_printf("Authorization: Bearer %s", admin), NULL };
    ih_response *r = ih_request(&srv, "POST", path, headers, NULL, 0);
    ck_assert_msg(r->status == 200, "%s: %ld %s", path, r->status, r->body);
    return r;
}

START_TEST(cancels_conserve_stock)
{
    enum { N = 192, STOCK = 60 };
    const char *p = oh_product(&srv, admin, "Contested", "3", STOCK);
    /* A completed order cannot be cancelled, and keeps its units. */
    const char *done = oh_order(&srv, tokens[0], p, 2);
    ck_assert_str_eq(ih_str(oh_wait_terminal(&srv, tokens[0], done, DRAIN_MS), "data.status"),
                     "COMPLETED");
    const char *headers[] = { ih_printf("Authorization: Bearer %s", tokens[0]), NULL };
    ih_assert_error(ih_request(&srv, "DELETE", ih_printf("/api/orders/%s", done), headers, NULL,
                               0), 409, "conflict");

    order_rec orders[N];
    memset(orders, 0, sizeof orders);
    for (size_t i = 0; i < N; i++) {
        orders[i].product_id = p;
        orders[i].quantity = 1 + (int64_t)(i % 3);
    }

    /* Phase 1: worker stopped, every order PENDING; cancel a third. */
    ih_response *w = admin_post("/api/orders/worker/stop");
    ck_assert_int_eq(oh_int(w, "data.threads"), 0);
    run_clients(JOB_CREATE, orders, N);
    assert_all_created(orders, N);
    for (size_t i = 0; i < N; i++)
        orders[i].cancel = i % 3 == 0;
    run_clients(JOB_CANCEL, orders, N);
    for (size_t i = 0; i < N; i += 3)
        ck_assert_msg(orders[i].cancel_status == 200, "cancel of PENDING %zu -> %ld", i,
                      orders[i].cancel_status);
    ck_assert_int_eq(oh_stock(&srv, admin, p), STOCK - 2);

    /* Phase 2: cancels race the restarted worker: 200 or 409, both fine. */
    for (size_t i = 0; i < N; i++)
        orders[i].cancel = i % 3 == 1;
    admin_post("/api/orders/worker/start");
    run_clients(JOB_CANCEL, orders, N);
    oh_wait_drained(&srv, admin, DRAIN_MS);

    int64_t left = oh_stock(&srv, admin, p), sold = 2;
    size_t cancelled = 0;
    for (size_t i = 0; i < N; i++) {
        ih_response *r = final_order(&orders[i], i);
        long c = orders[i].cancel_status;
        ck_assert_msg(c == 0 || c == 200 || c == 409, "cancel %zu -> %ld", i, c);
        if (c == 200) {
            ck_assert_msg(status_is(r, "CANCELLED"), "cancelled %zu ended %s", i,
                          ih_str(r, "data.status"));
            cancelled++;
        } else if (status_is(r, "FAILED")) {
            assert_failed_for_stock(r);
        } else {
            ck_assert_msg(status_is(r, "COMPLETED"), "order %zu ended %s (cancel %ld)", i,
                          ih_str(r, "data.status"), c);
            sold += orders[i].quantity;
        }
    }
    ck_assert_int_ge(left, 0);
    ck_assert_int_eq(left + sold, STOCK);
    ck_assert_uint_eq(oh_count_status(&srv, admin, "CANCELLED"), cancelled);
    ck_assert_uint_ge(cancelled, N / 3);
}
END_TEST

/* ---- idempotent retries ---- */

enum { RETRIES = 8, ROUNDS = 4 };

typedef struct retry_arg {
    oh_client client;
    const char *token, *key, *body;
    pthread_barrier_t *start;
    long status;
    int replayed;
    char id[64];
} retry_arg;

static void *retry_main(void *arg)
{
    retry_arg *a = arg;
    oh_answer ans;
    pthread_barrier_wait(a->start);
    if (oh_call(&a->client, "POST", "/api/orders", a->token, a->key, a->body, &ans) == 0) {
        a->status = ans.status;
        a->replayed = ans.replayed;
        const char *id = oh_data_str(&ans, "id");
        snprintf(a->id, sizeof a->id, "%s", id ? id : "");
    }
    oh_answer_free(&ans);
    return NULL;
}

/* RETRIES threads send the same keyed request at once. */
static void race_one_key(const char *token, const char *key, const char *body)
{
    retry_arg args[RETRIES];
    pthread_t threads[RETRIES];
    pthread_barrier_t start;
    ck_assert_int_eq(pthread_barrier_init(&start, NULL, RETRIES), 0);
    for (int i = 0; i < RETRIES; i++) {
        args[i] = (retry_arg){ .token = token, .key = key, .body = body, .start = &start };
        ck_assert_int_eq(oh_client_init(&args[i].client, srv.port), 0);
        ck_assert_int_eq(pthread_create(&threads[i], NULL, retry_main, &args[i]), 0);
    }
    for (int i = 0; i < RETRIES; i++)
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
    pthread_barrier_destroy(&start);

    int created = 0;
    for (int i = 0; i < RETRIES; i++) {
        oh_client_close(&args[i].client);
        ck_assert_msg(args[i].client.bad == 0, "%s", args[i].client.first_bad);
        ck_assert_msg(args[i].status == 201 || (args[i].status == 200 && args[i].replayed),
                      "retry %d -> %ld (replayed %d)", i, args[i].status, args[i].replayed);
        created += args[i].status == 201;
        ck_assert_str_eq(args[i].id, args[0].id);
    }
    ck_assert_int_eq(created, 1);
}

START_TEST(idempotent_retries_make_one_order)
{
    const char *t = oh_customer(&srv, "retrier@test.local");
    const char *p = oh_product(&srv, admin, "Retried Item", "1", 1000);
    const char *body = ih_printf("{\"items\":[{\"productId\":\"%s\",\"quantity\":3}]}", p);
    for (int round = 0; round < ROUNDS; round++)
        race_one_key(t, ih_printf("retry-key-%d", round), body);

    ih_response *r = ih_get(&srv, "/api/orders?limit=100", t);
    ck_assert_int_eq(r->status, 200);
    ck_assert_uint_eq(json_object_array_length(ih_json(r, "data")), ROUNDS);
    oh_wait_drained(&srv, admin, DRAIN_MS);
    ck_assert_int_eq(oh_stock(&srv, t, p), 1000 - 3 * ROUNDS);
}
END_TEST

static Suite *concurrency_suite(void)
{
    ih_forbid(IH_ADMIN_PASSWORD);
    Suite *s = suite_create("integ_concurrency");
    TCase *tc = tcase_create("shared");
    tcase_add_unchecked_fixture(tc, start_shared, stop_shared);
    tcase_add_checked_fixture(tc, login_all, release);
    tcase_add_test(tc, no_overselling);
    tcase_add_test(tc, cancels_conserve_stock);
    tcase_add_test(tc, idempotent_retries_make_one_order);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ih_run_suite(concurrency_suite());
}
