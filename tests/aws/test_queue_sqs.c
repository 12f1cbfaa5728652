/*
 * tests/aws/test_queue_sqs.c - what only queue_sqs promises, against fauxqs
 * (the shared behaviour is tests/contract, run as contract_queue_sqs):
 * provisioning (missing queues fail init with a pointer to
 * `orderd --provision`; create_missing creates DLQ + redrive; a second
 * instance finds the queues), SQS's own redrive to the dead lane after
 * max_receive_count, refusing bodies SQS would reject, an unreachable
 * endpoint. Needs AWS_ENDPOINT_URL_SQS and keys (tests/aws/CMakeLists.txt).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mock_host.h"

#define DEADLINE_MS 15000

typedef struct backend {
    const od_module_desc *desc;
    od_module *mod;
    void *self;
} backend;

static const od_host_api *H;
static char Prefix[64];

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void setup(void)
{
    static unsigned calls;
    H = mock_host_api();
    mock_log_reset();
    snprintf(Prefix, sizeof Prefix, "tqs-%ld-%ld-%u-", (long)getpid(), (long)time(NULL), calls++);
}

/* Load and init queue_sqs with the given create_missing / max_receive_count. */
static od_status open_backend(backend *b, int create_missing, int64_t max_receive_count)
{
    char path[4096], err[256];
    const char *build = getenv("ORDERD_BUILD_DIR");
    snprintf(path, sizeof path, "%s/modules/queue_sqs.so", build ? build : ".");
    memset(b, 0, sizeof *b);
    b->desc = mock_load_module(path, err, sizeof err);
    ck_assert_msg(b->desc != NULL, "cannot load %s: %s", path, err);
    b->mod = mock_module_new("queue");
    mock_config_set_string(b->mod, "queue_prefix", Prefix);
    mock_config_set_bool(b->mod, "create_missing", create_missing);
    mock_config_set_int(b->mod, "max_receive_count", max_receive_count);
    mock_config_set_int(b->mod, "max_retries", 1);
    od_status st = b->desc->init(H, b->mod, &b->self);
    if (st != OD_OK) {
        mock_module_free(b->mod);
        b->mod = NULL;
    }
    return st;
}

static void close_backend(backend *b)
{
    if (!b->mod)
        return;
    b->desc->stop(b->self);
    b->desc->destroy(b->self);
    mock_module_free(b->mod);
    b->mod = NULL;
}

static const od_queue_ops *ops(const backend *b)
{
    return b->desc->ops;
}

START_TEST(test_missing_queues_need_provision)
{
    backend b;
    ck_assert_int_eq(open_backend(&b, 0, 10), OD_ERR_CONFIG);
    ck_assert(mock_log_contains("does not exist"));
    ck_assert(mock_log_contains("orderd --provision"));
}
END_TEST

START_TEST(test_provision_then_reuse)
{
    backend a, b;
    ck_assert_int_eq(open_backend(&a, 1, 10), OD_OK);
    char name[96];
    snprintf(name, sizeof name, "created SQS queue %sdead", Prefix);
    ck_assert(mock_log_contains(name));
    /* A second instance finds the same queues without creating any. */
    mock_log_reset();
    ck_assert_int_eq(open_backend(&b, 0, 10), OD_OK);
    ck_assert(!mock_log_contains("created SQS queue"));
    char *id = NULL;
    ck_assert_int_eq(ops(&a)->send(a.self, OD_LANE_PRIORITY, "{\"x\":1}", 7, 0, &id), OD_OK);
    od_message m = {0};
    size_t n = 0;
    ck_assert_int_eq(ops(&b)->receive(b.self, OD_LANE_PRIORITY, 1, 1000, 30000, &m, &n), OD_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(m.id, id);
    ck_assert_str_eq(m.body, "{\"x\":1}");
    ck_assert_int_eq(ops(&a)->del(a.self, OD_LANE_PRIORITY, m.receipt), OD_OK);
    od_message_clear(H, &m);
    H->free(id);
    close_backend(&b);
    close_backend(&a);
}
END_TEST

/* SQS moves a message to the DLQ on the receive after max_receive_count
 * receives, even if no worker ever dead-letters it itself. */
START_TEST(test_redrive_to_dead_lane)
{
    backend b;
    ck_assert_int_eq(open_backend(&b, 1, 2), OD_OK);
    const od_queue_ops *q = ops(&b);
    char *id = NULL;
    ck_assert_int_eq(q->send(b.self, OD_LANE_NORMAL, "poison", 6, 0, &id), OD_OK);
    for (uint32_t i = 1; i <= 2; i++) {
        od_message m = {0};
        size_t n = 0;
        ck_assert_int_eq(q->receive(b.self, OD_LANE_NORMAL, 1, 1000, 30000, &m, &n), OD_OK);
        ck_assert_uint_eq(n, 1);
        ck_assert_uint_eq(m.receive_count, i);
        ck_assert_int_eq(q->change_visibility(b.self, OD_LANE_NORMAL, m.receipt, 0), OD_OK);
        od_message_clear(H, &m);
    }
    od_message m = {0};
    size_t n = 0;
    ck_assert_int_eq(q->receive(b.self, OD_LANE_NORMAL, 1, 0, 30000, &m, &n), OD_OK);
    ck_assert_uint_eq(n, 0);
    int64_t start = now_ms();
    while (n == 0 && now_ms() - start < DEADLINE_MS)
        ck_assert_int_eq(q->receive(b.self, OD_LANE_DEAD, 1, 1000, 30000, &m, &n), OD_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(m.id, id);
    ck_assert_str_eq(m.body, "poison");
    ck_assert_uint_eq(m.lane, OD_LANE_DEAD);
    od_message_clear(H, &m);
    H->free(id);
    close_backend(&b);
}
END_TEST

START_TEST(test_bodies_sqs_rejects)
{
    backend b;
    ck_assert_int_eq(open_backend(&b, 1, 10), OD_OK);
    const od_queue_ops *q = ops(&b);
    const char *bad[] = {"a\x01z", "nul\0x", "\xff\xfe", "\xc0\xaf", "\xed\xa0\x80", "\xef\xbf\xbf"};
    const size_t len[] = {3, 5, 2, 2, 3, 3};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(q->send(b.self, OD_LANE_NORMAL, bad[i], len[i], 0, NULL) == OD_ERR_INVALID,
                      "body %zu accepted", i);
    /* Tabs, newlines and valid non-control UTF-8 go through intact. (AWS
     * also takes U+10000..U+10FFFF, which queue_sqs lets through; fauxqs
     * 2.4.1 refuses them, so they are not sent here.) */
    const char good[] = "{\"n\":\"\xc3\xa9\xe2\x82\xac\"}\t\r\n";
    ck_assert_int_eq(q->send(b.self, OD_LANE_NORMAL, good, sizeof good - 1, 0, NULL), OD_OK);
    od_message m = {0};
    size_t n = 0;
    ck_assert_int_eq(q->receive(b.self, OD_LANE_NORMAL, 1, 1000, 30000, &m, &n), OD_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(m.body, good);
    ck_assert_int_eq(q->del(b.self, OD_LANE_NORMAL, m.receipt), OD_OK);
    od_message_clear(H, &m);
    close_backend(&b);
}
END_TEST

START_TEST(test_unreachable_endpoint)
{
    setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:1", 1);
    backend b;
    int64_t start = now_ms();
    ck_assert_int_eq(open_backend(&b, 1, 10), OD_ERR_UNAVAILABLE);
    ck_assert_int_lt(now_ms() - start, 5000);
    ck_assert(mock_log_contains("cannot resolve SQS queue"));
}
END_TEST

static Suite *queue_sqs_suite(void)
{
    Suite *s = suite_create("queue_sqs");
    TCase *tc = tcase_create("sqs");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_missing_queues_need_provision);
    tcase_add_test(tc, test_provision_then_reuse);
    tcase_add_test(tc, test_redrive_to_dead_lane);
    tcase_add_test(tc, test_bodies_sqs_rejects);
    tcase_add_test(tc, test_unreachable_endpoint);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (!getenv("AWS_ENDPOINT_URL_SQS")) {
        fprintf(stderr, "test_queue_sqs: AWS_ENDPOINT_URL_SQS is not set (run through ctest)\n");
        return 1;
    }
    SRunner *sr = srunner_create(queue_sqs_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
