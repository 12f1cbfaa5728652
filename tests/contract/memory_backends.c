/*
 * tests/contract/memory_backends.c - what the memory backends promise beyond
 * the shared contract: their config keys, limits, cursor strictness and token
 * retention. The shared behaviour is in contract_storage / contract_queue.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"

#define DAY_MS (24LL * 3600 * 1000)

static contract_backend B;

static void teardown(void)
{
    contract_close(&B);
    mock_set_now_ms(0);
}

/* ---- storage_memory ---- */

static const od_storage_ops *S;

static void storage_setup(void)
{
    static const od_index_def idx[] = {{"email", 1}, {"status", 0}};
    contract_set_backend("storage_memory");
    contract_open(&B, "storage", OD_KIND_STORAGE);
    ck_assert_str_eq(B.desc->name, "storage_memory");
    S = B.desc->ops;
    od_table_def items = {sizeof items, "items", idx, 2};
    ck_assert_int_eq(S->define_table(B.self, &items), OD_OK);
}

START_TEST(test_cursor_strictness)
{
    od_index_value iv = {"status", "open"};
    for (int i = 0; i < 3; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        ck_assert_int_eq(S->put(B.self, "items", key, "{}", 2, &iv, 1, OD_PUT_UPSERT, 0, NULL),
                         OD_OK);
    }
    od_page p = {0};
    ck_assert_int_eq(S->scan(B.self, "items", NULL, 1, 0, &p), OD_OK);
    ck_assert_str_eq(p.next, "m1sa.azA"); /* base64url("k0") */
    char scan_cursor[64];
    strcpy(scan_cursor, p.next);
    od_page_clear(mock_host_api(), &p);
    /* Another direction, another op, non-canonical or padded base64, a key
     * that is not a valid key: all refused. */
    ck_assert_int_eq(S->scan(B.self, "items", scan_cursor, 1, 1, &p), OD_ERR_INVALID);
    ck_assert_int_eq(S->query(B.self, "items", "status", "open", scan_cursor, 1, 0, &p),
                     OD_ERR_INVALID);
    const char *bad[] = {"m1sa.azB", "m1sa.azA=", "m1sa.AA", "m1sa.Cg", "m2sa.azA", "m1xa.azA"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(S->scan(B.self, "items", bad[i], 1, 0, &p) == OD_ERR_INVALID, "%s", bad[i]);
    /* The genuine one continues after k0. */
    ck_assert_int_eq(S->scan(B.self, "items", scan_cursor, 5, 0, &p), OD_OK);
    ck_assert_uint_eq(p.count, 2);
    ck_assert_str_eq(p.items[0].key, "k1");
    ck_assert_ptr_null(p.next);
    od_page_clear(mock_host_api(), &p);
}
END_TEST

START_TEST(test_table_definitions)
{
    static const od_index_def other[] = {{"email", 0}};
    od_table_def redefined = {sizeof redefined, "items", other, 1};
    ck_assert_int_eq(S->define_table(B.self, &redefined), OD_ERR_INVALID);
    ck_assert(mock_log_contains("redefined"));
    char name[16];
    od_status s = OD_OK;
    int defined = 1;
    for (int i = 0; i < 100 && s == OD_OK; i++) {
        snprintf(name, sizeof name, "t%d", i);
        od_table_def t = {sizeof t, name, NULL, 0};
        s = S->define_table(B.self, &t);
        defined += s == OD_OK;
    }
    ck_assert_int_eq(s, OD_ERR_INVALID);
    ck_assert_int_eq(defined, 64);
    od_doc d = {0};
    ck_assert_int_eq(S->lookup(B.self, "items", "status", "open", &d), OD_ERR_INVALID);
    /* Counter tables: 64 too, and counters need no define_table. */
    for (int i = 0; i < 64; i++) {
        snprintf(name, sizeof name, "c%d", i);
        ck_assert_int_eq(S->counter_set(B.self, name, "k", i), OD_OK);
    }
    ck_assert_int_eq(S->counter_set(B.self, "one_too_many", "k", 1), OD_ERR_INVALID);
    ck_assert_int_eq(S->counter_set(B.self, "c63", "k", 1), OD_OK);
    int64_t v = 0;
    ck_assert_int_eq(S->counter_get(B.self, "c17", "k", &v), OD_OK);
    ck_assert_int_eq(v, 17);
}
END_TEST

static od_status add_token(const char *token, int32_t *applied)
{
    return S->counter_add(B.self, "stock", "p", 1, 0, token, NULL, applied);
}

START_TEST(test_tokens_kept_seven_days)
{
    const int64_t t0 = 1800000000000LL;
    char token[32];
    int32_t applied = -1;
    mock_set_now_ms(t0);
    ck_assert_int_eq(S->counter_set(B.self, "stock", "p", 0), OD_OK);
    for (int i = 0; i < 1023; i++) {
        snprintf(token, sizeof token, "a%d", i);
        ck_assert_int_eq(add_token(token, &applied), OD_OK);
    }
    mock_set_now_ms(t0 + 6 * DAY_MS);
    ck_assert_int_eq(add_token("b0", &applied), OD_OK); /* 1024 tokens: a sweep runs */
    ck_assert_int_eq(add_token("a0", &applied), OD_OK);
    ck_assert_int_eq(applied, 0); /* 6 days old: still remembered */
    mock_set_now_ms(t0 + 8 * DAY_MS);
    for (int i = 1; i <= 1024; i++) { /* up to 2048 tokens: the next sweep */
        snprintf(token, sizeof token, "b%d", i);
        ck_assert_int_eq(add_token(token, &applied), OD_OK);
    }
    ck_assert_int_eq(add_token("b0", &applied), OD_OK);
    ck_assert_int_eq(applied, 0);
    ck_assert_int_eq(add_token("a0", &applied), OD_OK);
    ck_assert_int_eq(applied, 1); /* 8 days old: forgotten */
}
END_TEST

/* ---- queue_memory ---- */

static const od_queue_ops *Q;

static void queue_setup_limited(void)
{
    contract_set_backend("queue_memory");
    setenv("ORDERD_CONTRACT_CONFIG", "memory_max_messages=3", 1);
    contract_open(&B, "queue", OD_KIND_QUEUE);
    unsetenv("ORDERD_CONTRACT_CONFIG");
    ck_assert_str_eq(B.desc->name, "queue_memory");
    Q = B.desc->ops;
}

START_TEST(test_queue_full)
{
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(Q->send(B.self, OD_LANE_NORMAL, "m", 1, 0, NULL), OD_OK);
    ck_assert_int_eq(Q->send(B.self, OD_LANE_NORMAL, "m", 1, 0, NULL), OD_ERR_UNAVAILABLE);
    ck_assert_int_eq(Q->send(B.self, OD_LANE_DEAD, "m", 1, 0, NULL), OD_OK); /* per lane */
    od_message m = {0};
    size_t n = 0;
    ck_assert_int_eq(Q->receive(B.self, OD_LANE_NORMAL, 1, 0, 1000, &m, &n), OD_OK);
    ck_assert_uint_eq(n, 1);
    /* In flight still counts... */
    ck_assert_int_eq(Q->send(B.self, OD_LANE_NORMAL, "m", 1, 0, NULL), OD_ERR_UNAVAILABLE);
    /* ...until deleted. */
    ck_assert_int_eq(Q->del(B.self, OD_LANE_NORMAL, m.receipt), OD_OK);
    ck_assert_int_eq(Q->send(B.self, OD_LANE_NORMAL, "m", 1, 0, NULL), OD_OK);
    od_message_clear(mock_host_api(), &m);
}
END_TEST

START_TEST(test_closed_after_stop)
{
    od_message m;
    size_t n = 9;
    ck_assert_int_eq(Q->send(B.self, OD_LANE_NORMAL, "m", 1, 0, NULL), OD_OK);
    contract_stop(&B);
    ck_assert_int_eq(Q->send(B.self, OD_LANE_NORMAL, "m", 1, 0, NULL), OD_ERR_CLOSED);
    ck_assert_int_eq(Q->receive(B.self, OD_LANE_NORMAL, 1, 0, 1000, &m, &n), OD_ERR_CLOSED);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(Q->ping(B.self), OD_ERR_UNAVAILABLE);
}
END_TEST

START_TEST(test_queue_bad_config)
{
    char err[256];
    const od_module_desc *d;
    char path[4096];
    snprintf(path, sizeof path, "%s/modules/queue_memory.so", getenv("ORDERD_BUILD_DIR"));
    d = mock_load_module(path, err, sizeof err);
    ck_assert_msg(d != NULL, "%s", err);
    od_module *mod = mock_module_new("queue");
    mock_config_set_int(mod, "memory_max_messages", 0);
    void *self = NULL;
    ck_assert_int_eq(d->init(mock_host_api(), mod, &self), OD_ERR_CONFIG);
    ck_assert_ptr_null(self);
    mock_module_free(mod);
}
END_TEST

static Suite *memory_suite(void)
{
    Suite *s = suite_create("memory_backends");
    TCase *st = tcase_create("storage_memory");
    tcase_add_checked_fixture(st, storage_setup, teardown);
    tcase_add_test(st, test_cursor_strictness);
    tcase_add_test(st, test_table_definitions);
    tcase_add_test(st, test_tokens_kept_seven_days);
    suite_add_tcase(s, st);
    TCase *q = tcase_create("queue_memory");
    tcase_add_checked_fixture(q, queue_setup_limited, teardown);
    tcase_add_test(q, test_queue_full);
    tcase_add_test(q, test_closed_after_stop);
    tcase_add_test(q, test_queue_bad_config);
    suite_add_tcase(s, q);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(memory_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
