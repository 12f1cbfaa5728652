/*
 * tests/contract/contract_queue.c - the queue contract (queue.h) run
 * against any queue backend: contract_queue <backend>.
 *
 * Timing: nothing sleeps a fixed "long enough". Tests that wait for a
 * visibility timeout or a delay use short timeouts (200-300 ms) and a
 * long-polling receive bounded by a generous deadline, so a slow machine
 * only makes them slower, never flaky.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"

#define DEADLINE_MS 10000 /* upper bound for anything that should happen soon */
#define LONG_VIS_MS 60000 /* visibility that will not expire during a test */

static contract_backend B;
static const od_queue_ops *Q;
static void *SELF;
static const od_host_api *H;

static void setup(void)
{
    contract_open(&B, "queue", OD_KIND_QUEUE);
    Q = B.desc->ops;
    SELF = B.self;
    H = mock_host_api();
    ck_assert_uint_ge(Q->size, sizeof(od_queue_ops));
}

static void teardown(void)
{
    contract_close(&B);
}

/* ---- helpers ---- */

static void send_str(uint32_t lane, const char *body, uint32_t delay_ms)
{
    ck_assert_int_eq(Q->send(SELF, lane, body, strlen(body), delay_ms, NULL), OD_OK);
}

/* Receive exactly one message (waiting up to wait_ms) into *m. */
static void receive_one(uint32_t lane, uint32_t wait_ms, uint32_t vis_ms, od_message *m)
{
    size_t n = 99;
    ck_assert_int_eq(Q->receive(SELF, lane, 1, wait_ms, vis_ms, m, &n), OD_OK);
    ck_assert_uint_eq(n, 1);
}

static void assert_empty(uint32_t lane)
{
    od_message m[1];
    size_t n = 99;
    ck_assert_int_eq(Q->receive(SELF, lane, 1, 0, LONG_VIS_MS, m, &n), OD_OK);
    ck_assert_uint_eq(n, 0);
}

/* Poll with receive long polls until one message arrives or the deadline
 * passes; returns the ms it took. */
static int64_t poll_one(uint32_t lane, uint32_t vis_ms, od_message *m)
{
    int64_t start = contract_now_ms();
    size_t n = 0;
    while (n == 0 && contract_now_ms() - start < DEADLINE_MS)
        ck_assert_int_eq(Q->receive(SELF, lane, 1, 1000, vis_ms, m, &n), OD_OK);
    ck_assert_msg(n == 1, "no message within %d ms", DEADLINE_MS);
    return contract_now_ms() - start;
}

static void assert_depth(uint32_t lane, int64_t visible, int64_t in_flight)
{
    int64_t v = -1, f = -1;
    ck_assert_int_eq(Q->depth(SELF, lane, &v, &f), OD_OK);
    ck_assert_int_eq(v, visible);
    ck_assert_int_eq(f, in_flight);
}

/* ---- basics ---- */

START_TEST(test_send_receive_delete)
{
    char *id = NULL;
    int64_t before = mock_host_api()->now_ms();
    ck_assert_int_eq(Q->send(SELF, OD_LANE_NORMAL, "{\"order\":1}", 11, 0, &id), OD_OK);
    ck_assert_ptr_nonnull(id);
    ck_assert_uint_gt(strlen(id), 0);
    od_message m = {0};
    receive_one(OD_LANE_NORMAL, 0, LONG_VIS_MS, &m);
    ck_assert_str_eq(m.id, id);
    ck_assert_str_eq(m.body, "{\"order\":1}");
    ck_assert_uint_eq(m.len, 11);
    ck_assert_uint_eq(m.lane, OD_LANE_NORMAL);
    ck_assert_uint_eq(m.receive_count, 1);
    ck_assert_int_ge(m.sent_ms, before - 1000);
    ck_assert_int_le(m.sent_ms, mock_host_api()->now_ms() + 1000);
    ck_assert_ptr_nonnull(m.receipt);
    assert_empty(OD_LANE_NORMAL); /* hidden while in flight */
    ck_assert_int_eq(Q->del(SELF, OD_LANE_NORMAL, m.receipt), OD_OK);
    if (!contract_skips("stale_delete"))
        ck_assert_int_eq(Q->del(SELF, OD_LANE_NORMAL, m.receipt), OD_ERR_NOT_FOUND);
    assert_depth(OD_LANE_NORMAL, 0, 0);
    od_message_clear(H, &m);
    H->free(id);
}
END_TEST

START_TEST(test_body_bytes)
{
    static char big[OD_MESSAGE_MAX];
    memset(big, 'b', sizeof big);
    ck_assert_int_eq(Q->send(SELF, OD_LANE_NORMAL, big, sizeof big, 0, NULL), OD_OK);
    ck_assert_int_eq(Q->send(SELF, OD_LANE_NORMAL, "abcdef", 3, 0, NULL), OD_OK);
    od_message m = {0};
    receive_one(OD_LANE_NORMAL, 0, LONG_VIS_MS, &m);
    ck_assert_uint_eq(m.len, sizeof big);
    ck_assert_int_eq(memcmp(m.body, big, sizeof big), 0);
    ck_assert_int_eq(m.body[m.len], '\0');
    od_message_clear(H, &m);
    receive_one(OD_LANE_NORMAL, 0, LONG_VIS_MS, &m);
    ck_assert_str_eq(m.body, "abc");
    od_message_clear(H, &m);
}
END_TEST

START_TEST(test_fifo_and_batch)
{
    char body[16];
    for (int i = 0; i < 15; i++) {
        snprintf(body, sizeof body, "m%02d", i);
        send_str(OD_LANE_NORMAL, body, 0);
    }
    od_message m[OD_RECEIVE_MAX];
    size_t n = 0, seen = 0;
    ck_assert_int_eq(Q->receive(SELF, OD_LANE_NORMAL, 4, 0, LONG_VIS_MS, m, &n), OD_OK);
    ck_assert_uint_eq(n, 4);
    for (size_t i = 0; i < n; i++, seen++) {
        snprintf(body, sizeof body, "m%02zu", seen);
        ck_assert_str_eq(m[i].body, body);
        ck_assert_int_eq(Q->del(SELF, OD_LANE_NORMAL, m[i].receipt), OD_OK);
        od_message_clear(H, &m[i]);
    }
    ck_assert_int_eq(Q->receive(SELF, OD_LANE_NORMAL, OD_RECEIVE_MAX, 0, LONG_VIS_MS, m, &n),
                     OD_OK);
    ck_assert_uint_eq(n, OD_RECEIVE_MAX);
    for (size_t i = 0; i < n; i++, seen++) {
        snprintf(body, sizeof body, "m%02zu", seen);
        ck_assert_str_eq(m[i].body, body);
        od_message_clear(H, &m[i]);
    }
    ck_assert_int_eq(Q->receive(SELF, OD_LANE_NORMAL, OD_RECEIVE_MAX, 0, LONG_VIS_MS, m, &n),
                     OD_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(m[0].body, "m14");
    od_message_clear(H, &m[0]);
}
END_TEST

START_TEST(test_validation)
{
    od_message m[OD_RECEIVE_MAX + 1];
    size_t n = 0;
    static char big[OD_MESSAGE_MAX + 1];
    ck_assert_int_eq(Q->send(SELF, OD_LANE_COUNT, "x", 1, 0, NULL), OD_ERR_INVALID);
    ck_assert_int_eq(Q->send(SELF, OD_LANE_NORMAL, "", 0, 0, NULL), OD_ERR_INVALID);
    ck_assert_int_eq(Q->send(SELF, OD_LANE_NORMAL, NULL, 1, 0, NULL), OD_ERR_INVALID);
    ck_assert_int_eq(Q->send(SELF, OD_LANE_NORMAL, big, sizeof big, 0, NULL), OD_ERR_TOO_LARGE);
    ck_assert_int_eq(Q->send(SELF, OD_LANE_NORMAL, "x", 1, 900001, NULL), OD_ERR_INVALID);
    ck_assert_int_eq(Q->receive(SELF, OD_LANE_COUNT, 1, 0, 1000, m, &n), OD_ERR_INVALID);
    ck_assert_int_eq(Q->receive(SELF, OD_LANE_NORMAL, 0, 0, 1000, m, &n), OD_ERR_INVALID);
    ck_assert_int_eq(Q->receive(SELF, OD_LANE_NORMAL, OD_RECEIVE_MAX + 1, 0, 1000, m, &n),
                     OD_ERR_INVALID);
    ck_assert_int_eq(Q->receive(SELF, OD_LANE_NORMAL, 1, 20001, 1000, m, &n), OD_ERR_INVALID);
    ck_assert_int_eq(Q->del(SELF, OD_LANE_COUNT, "r"), OD_ERR_INVALID);
    const char *garbage[] = {"", "x", "0-1.", "0-1.00000000000000000000000000000000",
                             "0-99999999999999999999999.ab", "1-1.zz", "../../etc"};
    /* "" can never be a receipt: every backend refuses it. */
    size_t n_garbage = contract_skips("malformed_receipt") ? 1 : sizeof garbage / sizeof *garbage;
    for (size_t i = 0; i < n_garbage; i++) {
        ck_assert_int_eq(Q->del(SELF, OD_LANE_NORMAL, garbage[i]), OD_ERR_NOT_FOUND);
        ck_assert_int_eq(Q->change_visibility(SELF, OD_LANE_NORMAL, garbage[i], 0),
                         OD_ERR_NOT_FOUND);
    }
    /* The largest allowed values work. */
    ck_assert_int_eq(Q->send(SELF, OD_LANE_NORMAL, "x", 1, 900000, NULL), OD_OK);
}
END_TEST

START_TEST(test_receipt_belongs_to_lane)
{
    send_str(OD_LANE_NORMAL, "a", 0);
    od_message m = {0};
    receive_one(OD_LANE_NORMAL, 0, LONG_VIS_MS, &m);
    if (!contract_skips("foreign_receipt"))
        ck_assert_int_eq(Q->del(SELF, OD_LANE_PRIORITY, m.receipt), OD_ERR_NOT_FOUND);
    ck_assert_int_eq(Q->del(SELF, OD_LANE_NORMAL, m.receipt), OD_OK);
    od_message_clear(H, &m);
}
END_TEST

/* ---- visibility ---- */

START_TEST(test_visibility_redelivery)
{
    send_str(OD_LANE_NORMAL, "again", 0);
    od_message first = {0}, second = {0};
    receive_one(OD_LANE_NORMAL, 0, 200, &first);
    ck_assert_uint_eq(first.receive_count, 1);
    poll_one(OD_LANE_NORMAL, LONG_VIS_MS, &second); /* after ~200 ms */
    ck_assert_str_eq(second.id, first.id);
    ck_assert_str_eq(second.body, "again");
    ck_assert_uint_eq(second.receive_count, 2);
    ck_assert_str_ne(second.receipt, first.receipt);
    /* Only the latest receipt acknowledges. */
    if (!contract_skips("stale_delete"))
        ck_assert_int_eq(Q->del(SELF, OD_LANE_NORMAL, first.receipt), OD_ERR_NOT_FOUND);
    ck_assert_int_eq(Q->change_visibility(SELF, OD_LANE_NORMAL, first.receipt, 0),
                     OD_ERR_NOT_FOUND);
    assert_depth(OD_LANE_NORMAL, 0, 1);
    ck_assert_int_eq(Q->del(SELF, OD_LANE_NORMAL, second.receipt), OD_OK);
    assert_depth(OD_LANE_NORMAL, 0, 0);
    od_message_clear(H, &first);
    od_message_clear(H, &second);
}
END_TEST

START_TEST(test_change_visibility_release)
{
    send_str(OD_LANE_NORMAL, "retry me", 0);
    od_message m = {0}, again = {0};
    receive_one(OD_LANE_NORMAL, 0, LONG_VIS_MS, &m);
    assert_empty(OD_LANE_NORMAL);
    ck_assert_int_eq(Q->change_visibility(SELF, OD_LANE_NORMAL, m.receipt, 0), OD_OK);
    receive_one(OD_LANE_NORMAL, 0, LONG_VIS_MS, &again); /* at once */
    ck_assert_str_eq(again.id, m.id);
    ck_assert_uint_eq(again.receive_count, 2);
    if (!contract_skips("stale_delete"))
        ck_assert_int_eq(Q->del(SELF, OD_LANE_NORMAL, m.receipt), OD_ERR_NOT_FOUND);
    ck_assert_int_eq(Q->del(SELF, OD_LANE_NORMAL, again.receipt), OD_OK);
    od_message_clear(H, &m);
    od_message_clear(H, &again);
}
END_TEST

START_TEST(test_change_visibility_extend)
{
    send_str(OD_LANE_NORMAL, "slow", 0);
    od_message m = {0}, again = {0};
    receive_one(OD_LANE_NORMAL, 0, 200, &m);
    ck_assert_int_eq(Q->change_visibility(SELF, OD_LANE_NORMAL, m.receipt, LONG_VIS_MS), OD_OK);
    /* Well past the original 200 ms, the message is still hidden. */
    size_t n = 99;
    ck_assert_int_eq(Q->receive(SELF, OD_LANE_NORMAL, 1, 700, LONG_VIS_MS, &again, &n), OD_OK);
    ck_assert_uint_eq(n, 0);
    /* Postpone to a short time: it comes back with a new receive. */
    ck_assert_int_eq(Q->change_visibility(SELF, OD_LANE_NORMAL, m.receipt, 200), OD_OK);
    poll_one(OD_LANE_NORMAL, LONG_VIS_MS, &again);
    ck_assert_uint_eq(again.receive_count, 2);
    od_message_clear(H, &m);
    od_message_clear(H, &again);
}
END_TEST

START_TEST(test_delay)
{
    int64_t start = contract_now_ms();
    send_str(OD_LANE_NORMAL, "later", 300);
    send_str(OD_LANE_NORMAL, "now", 0);
    od_message m = {0};
    receive_one(OD_LANE_NORMAL, 0, LONG_VIS_MS, &m);
    ck_assert_str_eq(m.body, "now"); /* the delayed one is not visible yet */
    od_message_clear(H, &m);
    if (contract_now_ms() - start < 250)
        assert_empty(OD_LANE_NORMAL);
    poll_one(OD_LANE_NORMAL, LONG_VIS_MS, &m);
    ck_assert_str_eq(m.body, "later");
    ck_assert_int_ge(contract_now_ms() - start, 290);
    od_message_clear(H, &m);
}
END_TEST

/* ---- long poll ---- */

typedef struct poller {
    uint32_t lane;
    uint32_t wait_ms;
    od_status status;
    size_t n;
    od_message m;
    int64_t took_ms;
} poller;

static void *poll_thread(void *p)
{
    poller *pl = p;
    int64_t start = contract_now_ms();
    pl->status = Q->receive(SELF, pl->lane, 1, pl->wait_ms, LONG_VIS_MS, &pl->m, &pl->n);
    pl->took_ms = contract_now_ms() - start;
    return NULL;
}

START_TEST(test_long_poll_wakes_on_send)
{
    poller pl = {.lane = OD_LANE_PRIORITY, .wait_ms = 20000};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, poll_thread, &pl), 0);
    send_str(OD_LANE_NORMAL, "other lane", 0); /* must not wake it with a message */
    send_str(OD_LANE_PRIORITY, "wake", 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(pl.status, OD_OK);
    ck_assert_uint_eq(pl.n, 1);
    ck_assert_str_eq(pl.m.body, "wake");
    /* Woken by the send, not by a timer: far below the 20 s wait, and below
     * any periodic re-check a backend may do (the memory one: 1 s). */
    ck_assert_int_lt(pl.took_ms, 800);
    od_message_clear(H, &pl.m);
}
END_TEST

START_TEST(test_long_poll_times_out)
{
    int64_t start = contract_now_ms();
    od_message m;
    size_t n = 99;
    ck_assert_int_eq(Q->receive(SELF, OD_LANE_NORMAL, 1, 300, LONG_VIS_MS, &m, &n), OD_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_ge(contract_now_ms() - start, 250);
}
END_TEST

START_TEST(test_stop_wakes_waiters)
{
    if (!B.desc->stop)
        return; /* a backend without stop() has nothing to wake */
    poller pl = {.lane = OD_LANE_NORMAL, .wait_ms = 20000};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, poll_thread, &pl), 0);
    /* Give the poller a chance to block, without relying on it: stop must
     * end the receive whether it is already waiting or not. */
    od_message m;
    size_t n;
    Q->receive(SELF, OD_LANE_DEAD, 1, 100, 1000, &m, &n);
    contract_stop(&B);
    pthread_join(t, NULL);
    ck_assert_int_lt(pl.took_ms, 5000);
    ck_assert_uint_eq(pl.n, 0);
}
END_TEST

/* ---- depth and lanes ---- */

START_TEST(test_depth)
{
    assert_depth(OD_LANE_NORMAL, 0, 0);
    for (int i = 0; i < 3; i++)
        send_str(OD_LANE_NORMAL, "d", 0);
    assert_depth(OD_LANE_NORMAL, 3, 0);
    od_message m[2];
    size_t n = 0;
    ck_assert_int_eq(Q->receive(SELF, OD_LANE_NORMAL, 2, 0, LONG_VIS_MS, m, &n), OD_OK);
    ck_assert_uint_eq(n, 2);
    assert_depth(OD_LANE_NORMAL, 1, 2);
    ck_assert_int_eq(Q->del(SELF, OD_LANE_NORMAL, m[0].receipt), OD_OK);
    assert_depth(OD_LANE_NORMAL, 1, 1);
    ck_assert_int_eq(Q->change_visibility(SELF, OD_LANE_NORMAL, m[1].receipt, 0), OD_OK);
    assert_depth(OD_LANE_NORMAL, 2, 0);
    int64_t v = -1;
    ck_assert_int_eq(Q->depth(SELF, OD_LANE_NORMAL, &v, NULL), OD_OK);
    ck_assert_int_eq(v, 2);
    ck_assert_int_eq(Q->depth(SELF, OD_LANE_NORMAL, NULL, NULL), OD_OK);
    ck_assert_int_eq(Q->depth(SELF, OD_LANE_COUNT, &v, NULL), OD_ERR_INVALID);
    assert_depth(OD_LANE_PRIORITY, 0, 0);
    od_message_clear(H, &m[0]);
    od_message_clear(H, &m[1]);
}
END_TEST

START_TEST(test_lanes_independent)
{
    send_str(OD_LANE_PRIORITY, "p", 0);
    send_str(OD_LANE_DEAD, "d", 0);
    assert_empty(OD_LANE_NORMAL);
    assert_depth(OD_LANE_NORMAL, 0, 0);
    assert_depth(OD_LANE_PRIORITY, 1, 0);
    assert_depth(OD_LANE_DEAD, 1, 0);
    od_message m = {0};
    receive_one(OD_LANE_DEAD, 0, LONG_VIS_MS, &m);
    ck_assert_str_eq(m.body, "d");
    ck_assert_uint_eq(m.lane, OD_LANE_DEAD);
    if (!contract_skips("foreign_receipt"))
        ck_assert_int_eq(Q->del(SELF, OD_LANE_PRIORITY, m.receipt), OD_ERR_NOT_FOUND);
    ck_assert_int_eq(Q->del(SELF, OD_LANE_DEAD, m.receipt), OD_OK);
    od_message_clear(H, &m);
    receive_one(OD_LANE_PRIORITY, 0, LONG_VIS_MS, &m);
    ck_assert_str_eq(m.body, "p");
    ck_assert_uint_eq(m.lane, OD_LANE_PRIORITY);
    od_message_clear(H, &m);
    assert_empty(OD_LANE_PRIORITY);
}
END_TEST

START_TEST(test_ping)
{
    ck_assert_int_eq(Q->ping(SELF), OD_OK);
}
END_TEST

/* ---- concurrency: N consumers, M messages, each handled exactly once ---- */

#define N_CONSUMERS 6
#define N_MESSAGES 300

typedef struct consumers {
    atomic_int delivered[N_MESSAGES];
    atomic_int deleted;
    atomic_int errors;
} consumers;

static void *consumer_thread(void *p)
{
    consumers *c = p;
    int64_t start = contract_now_ms();
    while (atomic_load(&c->deleted) < N_MESSAGES && contract_now_ms() - start < 30000) {
        od_message m[OD_RECEIVE_MAX];
        size_t n = 0;
        if (Q->receive(SELF, OD_LANE_NORMAL, OD_RECEIVE_MAX, 200, LONG_VIS_MS, m, &n) != OD_OK)
            atomic_fetch_add(&c->errors, 1);
        for (size_t i = 0; i < n; i++) {
            int k = atoi(m[i].body);
            if (k >= 0 && k < N_MESSAGES)
                atomic_fetch_add(&c->delivered[k], 1);
            if (Q->del(SELF, OD_LANE_NORMAL, m[i].receipt) == OD_OK)
                atomic_fetch_add(&c->deleted, 1);
            else
                atomic_fetch_add(&c->errors, 1);
            od_message_clear(H, &m[i]);
        }
    }
    return NULL;
}

static void *producer_thread(void *p)
{
    (void)p;
    char body[16];
    for (int i = 0; i < N_MESSAGES; i++) {
        int len = snprintf(body, sizeof body, "%d", i);
        if (Q->send(SELF, OD_LANE_NORMAL, body, (size_t)len, 0, NULL) != OD_OK)
            abort();
    }
    return NULL;
}

START_TEST(test_concurrent_consumers)
{
    static consumers c; /* zeroed: static storage */
    pthread_t t[N_CONSUMERS], prod;
    for (size_t i = 0; i < N_CONSUMERS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, consumer_thread, &c), 0);
    ck_assert_int_eq(pthread_create(&prod, NULL, producer_thread, NULL), 0);
    pthread_join(prod, NULL);
    for (size_t i = 0; i < N_CONSUMERS; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(atomic_load(&c.errors), 0);
    ck_assert_int_eq(atomic_load(&c.deleted), N_MESSAGES);
    for (size_t i = 0; i < N_MESSAGES; i++)
        ck_assert_msg(atomic_load(&c.delivered[i]) == 1, "message %zu delivered %d times", i,
                      atomic_load(&c.delivered[i]));
    assert_depth(OD_LANE_NORMAL, 0, 0);
}
END_TEST

static Suite *queue_suite(void)
{
    static char name[96];
    snprintf(name, sizeof name, "contract_queue(%s)", contract_backend_name());
    Suite *s = suite_create(name);
    TCase *basic = tcase_create("basics");
    tcase_add_checked_fixture(basic, setup, teardown);
    tcase_add_test(basic, test_send_receive_delete);
    tcase_add_test(basic, test_body_bytes);
    tcase_add_test(basic, test_fifo_and_batch);
    tcase_add_test(basic, test_validation);
    tcase_add_test(basic, test_receipt_belongs_to_lane);
    tcase_add_test(basic, test_depth);
    tcase_add_test(basic, test_lanes_independent);
    tcase_add_test(basic, test_ping);
    suite_add_tcase(s, basic);

    TCase *timing = tcase_create("visibility_and_waiting");
    tcase_add_checked_fixture(timing, setup, teardown);
    tcase_add_test(timing, test_visibility_redelivery);
    tcase_add_test(timing, test_change_visibility_release);
    tcase_add_test(timing, test_change_visibility_extend);
    tcase_add_test(timing, test_delay);
    tcase_add_test(timing, test_long_poll_wakes_on_send);
    tcase_add_test(timing, test_long_poll_times_out);
    tcase_add_test(timing, test_stop_wakes_waiters);
    suite_add_tcase(s, timing);

    TCase *conc = tcase_create("concurrency");
    tcase_add_checked_fixture(conc, setup, teardown);
    tcase_add_test(conc, test_concurrent_consumers);
    suite_add_tcase(s, conc);
    return s;
}

int main(int argc, char **argv)
{
    return contract_main(argc, argv, queue_suite);
}
