/*
 * tests/contract/contract_storage.c - the storage contract (storage.h) run
 * against any storage backend: contract_storage <backend>.
 *
 * Each test gets a freshly initialised backend (see contract.h for fresh
 * files / prefixes on persistent backends) with two tables:
 *   items: index "email" (unique) and "status" (not unique)
 *   plain: no indexes
 * and counters in the namespace "stock". The put_batch tests (an optional
 * op) add "tags": index "tag" (not unique) and "code" (unique).
 */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"

#define N_THREADS 8

static contract_backend B;
static const od_storage_ops *S;
static void *SELF;
static const od_host_api *H;

static const od_index_def ITEM_INDEXES[] = {{"email", 1}, {"status", 0}};

static void setup(void)
{
    contract_open(&B, "storage", OD_KIND_STORAGE);
    S = B.desc->ops;
    SELF = B.self;
    H = mock_host_api();
    ck_assert_uint_ge(S->size, offsetof(od_storage_ops, put_batch)); /* ABI 1.0's ops at least */
    od_table_def items = {sizeof items, "items", ITEM_INDEXES, 2};
    od_table_def plain = {sizeof plain, "plain", NULL, 0};
    ck_assert_int_eq(S->define_table(SELF, &items), OD_OK);
    ck_assert_int_eq(S->define_table(SELF, &plain), OD_OK);
}

static void teardown(void)
{
    contract_close(&B);
}

/* ---- helpers ---- */

static od_status put(const char *table, const char *key, const char *body, uint32_t cond,
                     uint64_t expected, uint64_t *version)
{
    return S->put(SELF, table, key, body, strlen(body), NULL, 0, cond, expected, version);
}

/* Put into items with optional email/status (NULL = not in that index). */
static od_status put_item(const char *key, const char *email, const char *status)
{
    od_index_value idx[2];
    size_t n = 0;
    if (email)
        idx[n++] = (od_index_value){"email", email};
    if (status)
        idx[n++] = (od_index_value){"status", status};
    return S->put(SELF, "items", key, "{}", 2, idx, n, OD_PUT_UPSERT, 0, NULL);
}

static void assert_doc(const char *table, const char *key, const char *body, uint64_t version)
{
    od_doc d = {0};
    ck_assert_int_eq(S->get(SELF, table, key, &d), OD_OK);
    ck_assert_str_eq(d.key, key);
    ck_assert_str_eq(d.body, body);
    ck_assert_uint_eq(d.len, strlen(body));
    ck_assert_uint_eq(d.version, version);
    od_doc_clear(H, &d);
}

static void assert_lookup(const char *email, const char *key)
{
    od_doc d = {0};
    od_status s = S->lookup(SELF, "items", "email", email, &d);
    if (!key) {
        ck_assert_int_eq(s, OD_ERR_NOT_FOUND);
        return;
    }
    ck_assert_int_eq(s, OD_OK);
    ck_assert_str_eq(d.key, key);
    od_doc_clear(H, &d);
}

/* Keys seen while walking pages; each page appended in order. */
typedef struct walk {
    char keys[256][32];
    size_t n;
    size_t pages;
} walk;

static void walk_page(walk *w, od_page *p, uint32_t limit)
{
    ck_assert_uint_le(p->count, limit);
    for (size_t i = 0; i < p->count; i++) {
        ck_assert_uint_lt(w->n, 256);
        ck_assert_uint_lt(strlen(p->items[i].key), 32);
        strcpy(w->keys[w->n++], p->items[i].key);
    }
    if (p->next) {
        ck_assert_uint_le(strlen(p->next), OD_CURSOR_MAX);
        for (const char *c = p->next; *c; c++)
            ck_assert_msg(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 "0123456789-_.~", *c) != NULL,
                          "cursor \"%s\" is not URL-safe", p->next);
    }
    w->pages++;
}

/* Walk a scan (index NULL) or query to the end. */
static void walk_all(walk *w, const char *table, const char *index, const char *value,
                     uint32_t limit, uint32_t desc)
{
    char *cursor = NULL;
    memset(w, 0, sizeof *w);
    do {
        od_page p = {0};
        od_status s = index ? S->query(SELF, table, index, value, cursor, limit, desc, &p)
                            : S->scan(SELF, table, cursor, limit, desc, &p);
        ck_assert_int_eq(s, OD_OK);
        walk_page(w, &p, limit);
        free(cursor);
        cursor = p.next ? strdup(p.next) : NULL;
        od_page_clear(H, &p);
        ck_assert_uint_lt(w->pages, 200);
    } while (cursor);
}

static void assert_sorted(const walk *w, uint32_t desc)
{
    for (size_t i = 1; i < w->n; i++) {
        int c = strcmp(w->keys[i - 1], w->keys[i]);
        ck_assert_msg(desc ? c > 0 : c < 0, "%s then %s", w->keys[i - 1], w->keys[i]);
    }
}

static size_t count_key(const walk *w, const char *key)
{
    size_t n = 0;
    for (size_t i = 0; i < w->n; i++)
        n += strcmp(w->keys[i], key) == 0;
    return n;
}

/* ---- documents ---- */

START_TEST(test_put_get_versions)
{
    uint64_t v = 0;
    od_doc d = {0};
    ck_assert_int_eq(S->get(SELF, "plain", "k1", &d), OD_ERR_NOT_FOUND);
    ck_assert_int_eq(put("plain", "k1", "{\"a\":1}", OD_PUT_UPSERT, 0, &v), OD_OK);
    ck_assert_uint_eq(v, 1);
    assert_doc("plain", "k1", "{\"a\":1}", 1);
    ck_assert_int_eq(put("plain", "k1", "{\"a\":2}", OD_PUT_UPSERT, 0, &v), OD_OK);
    ck_assert_uint_eq(v, 2);
    assert_doc("plain", "k1", "{\"a\":2}", 2);
    ck_assert_int_eq(put("plain", "k1", "{}", OD_PUT_UPSERT, 0, NULL), OD_OK);
    assert_doc("plain", "k1", "{}", 3);
    /* Tables are separate namespaces. */
    ck_assert_int_eq(S->get(SELF, "items", "k1", &d), OD_ERR_NOT_FOUND);
}
END_TEST

START_TEST(test_put_if_absent)
{
    uint64_t v = 0;
    ck_assert_int_eq(put("plain", "a", "{\"n\":1}", OD_PUT_IF_ABSENT, 0, &v), OD_OK);
    ck_assert_uint_eq(v, 1);
    ck_assert_int_eq(put("plain", "a", "{\"n\":2}", OD_PUT_IF_ABSENT, 0, &v), OD_ERR_EXISTS);
    assert_doc("plain", "a", "{\"n\":1}", 1);
}
END_TEST

START_TEST(test_put_if_version)
{
    uint64_t v = 0;
    ck_assert_int_eq(put("plain", "a", "{}", OD_PUT_IF_VERSION, 1, &v), OD_ERR_NOT_FOUND);
    ck_assert_int_eq(put("plain", "a", "{\"n\":1}", OD_PUT_UPSERT, 0, &v), OD_OK);
    ck_assert_int_eq(put("plain", "a", "{\"n\":2}", OD_PUT_IF_VERSION, 2, &v), OD_ERR_CONFLICT);
    ck_assert_int_eq(put("plain", "a", "{\"n\":2}", OD_PUT_IF_VERSION, 0, &v), OD_ERR_CONFLICT);
    assert_doc("plain", "a", "{\"n\":1}", 1);
    ck_assert_int_eq(put("plain", "a", "{\"n\":2}", OD_PUT_IF_VERSION, 1, &v), OD_OK);
    ck_assert_uint_eq(v, 2);
    ck_assert_int_eq(put("plain", "a", "{\"n\":3}", OD_PUT_IF_VERSION, 1, &v), OD_ERR_CONFLICT);
    assert_doc("plain", "a", "{\"n\":2}", 2);
}
END_TEST

START_TEST(test_delete)
{
    uint64_t v = 0;
    ck_assert_int_eq(S->del(SELF, "plain", "a", 0), OD_ERR_NOT_FOUND);
    ck_assert_int_eq(put("plain", "a", "{}", OD_PUT_UPSERT, 0, NULL), OD_OK);
    ck_assert_int_eq(put("plain", "a", "{}", OD_PUT_UPSERT, 0, &v), OD_OK);
    ck_assert_int_eq(S->del(SELF, "plain", "a", 1), OD_ERR_CONFLICT);
    assert_doc("plain", "a", "{}", 2);
    ck_assert_int_eq(S->del(SELF, "plain", "a", 2), OD_OK);
    od_doc d = {0};
    ck_assert_int_eq(S->get(SELF, "plain", "a", &d), OD_ERR_NOT_FOUND);
    ck_assert_int_eq(S->del(SELF, "plain", "a", 0), OD_ERR_NOT_FOUND);
    /* Any version with expected 0; a re-created document starts again. */
    ck_assert_int_eq(put("plain", "b", "{}", OD_PUT_UPSERT, 0, NULL), OD_OK);
    ck_assert_int_eq(S->del(SELF, "plain", "b", 0), OD_OK);
    ck_assert_int_eq(put("plain", "b", "{}", OD_PUT_IF_ABSENT, 0, &v), OD_OK);
    ck_assert_uint_eq(v, 1);
}
END_TEST

START_TEST(test_body_bytes_kept)
{
    /* Bodies are bytes of a given length: a body with no trailing NUL in
     * the buffer, and a large body, come back exactly. */
    char big[70000];
    memset(big, 'x', sizeof big);
    big[0] = '"';
    big[sizeof big - 1] = '"';
    ck_assert_int_eq(S->put(SELF, "plain", "big", big, sizeof big, NULL, 0, OD_PUT_UPSERT, 0, NULL),
                     OD_OK);
    ck_assert_int_eq(S->put(SELF, "plain", "cut", "[1,2]xyz", 5, NULL, 0, OD_PUT_UPSERT, 0, NULL),
                     OD_OK);
    od_doc d = {0};
    ck_assert_int_eq(S->get(SELF, "plain", "big", &d), OD_OK);
    ck_assert_uint_eq(d.len, sizeof big);
    ck_assert_int_eq(memcmp(d.body, big, sizeof big), 0);
    ck_assert_int_eq(d.body[d.len], '\0');
    od_doc_clear(H, &d);
    assert_doc("plain", "cut", "[1,2]", 1);
}
END_TEST

START_TEST(test_validation)
{
    char long_key[OD_KEY_MAX + 2];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    od_doc d = {0};
    ck_assert_int_eq(put("plain", "", "{}", OD_PUT_UPSERT, 0, NULL), OD_ERR_INVALID);
    ck_assert_int_eq(put("plain", long_key, "{}", OD_PUT_UPSERT, 0, NULL), OD_ERR_INVALID);
    ck_assert_int_eq(put("plain", "a\nb", "{}", OD_PUT_UPSERT, 0, NULL), OD_ERR_INVALID);
    ck_assert_int_eq(put("plain", "a\x7f", "{}", OD_PUT_UPSERT, 0, NULL), OD_ERR_INVALID);
    ck_assert_int_eq(put("nosuchtable", "a", "{}", OD_PUT_UPSERT, 0, NULL), OD_ERR_INVALID);
    ck_assert_int_eq(put("plain", "a", "{}", 7, 0, NULL), OD_ERR_INVALID);
    ck_assert_int_eq(S->put(SELF, "plain", "a", NULL, 0, NULL, 0, OD_PUT_UPSERT, 0, NULL),
                     OD_ERR_INVALID);
    ck_assert_int_eq(S->put(SELF, "plain", NULL, "{}", 2, NULL, 0, OD_PUT_UPSERT, 0, NULL),
                     OD_ERR_INVALID);
    ck_assert_int_eq(S->get(SELF, "plain", long_key, &d), OD_ERR_INVALID);
    ck_assert_int_eq(S->get(SELF, "nosuchtable", "a", &d), OD_ERR_INVALID);
    ck_assert_int_eq(S->del(SELF, "plain", "", 0), OD_ERR_INVALID);
    /* The longest valid key works. */
    long_key[OD_KEY_MAX] = '\0';
    ck_assert_int_eq(put("plain", long_key, "{}", OD_PUT_UPSERT, 0, NULL), OD_OK);
    assert_doc("plain", long_key, "{}", 1);
    ck_assert_int_eq(put("plain", "with space ~!", "{}", OD_PUT_UPSERT, 0, NULL), OD_OK);
    /* Index values: unknown index, empty value, too long, named twice. */
    char long_value[300];
    memset(long_value, 'v', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';
    od_index_value bad[][2] = {{{"nosuch", "x"}}, {{"email", ""}}, {{"email", long_value}},
                               {{"status", "a"}, {"status", "b"}}};
    size_t n_bad[] = {1, 1, 1, 2};
    for (size_t i = 0; i < 4; i++)
        ck_assert_int_eq(S->put(SELF, "items", "x", "{}", 2, bad[i], n_bad[i], OD_PUT_UPSERT, 0,
                                NULL),
                         OD_ERR_INVALID);
    ck_assert_int_eq(S->get(SELF, "items", "x", &d), OD_ERR_NOT_FOUND);
    /* Bad table definitions. */
    od_table_def bad_name = {sizeof bad_name, "Bad-Name", NULL, 0};
    ck_assert_int_eq(S->define_table(SELF, &bad_name), OD_ERR_INVALID);
    od_index_def dup[] = {{"a", 0}, {"a", 1}};
    od_table_def dup_idx = {sizeof dup_idx, "dups", dup, 2};
    ck_assert_int_eq(S->define_table(SELF, &dup_idx), OD_ERR_INVALID);
}
END_TEST

START_TEST(test_define_table_idempotent)
{
    od_table_def items = {sizeof items, "items", ITEM_INDEXES, 2};
    ck_assert_int_eq(put_item("a", "a@x", "new"), OD_OK);
    ck_assert_int_eq(S->define_table(SELF, &items), OD_OK);
    assert_lookup("a@x", "a"); /* data survives a repeated definition */
}
END_TEST

/* ---- indexes ---- */

START_TEST(test_unique_index)
{
    ck_assert_int_eq(put_item("a", "x@example.com", NULL), OD_OK);
    assert_lookup("x@example.com", "a");
    /* Another document cannot take the value, and nothing of it is written. */
    ck_assert_int_eq(put_item("b", "x@example.com", NULL), OD_ERR_EXISTS);
    od_doc d = {0};
    ck_assert_int_eq(S->get(SELF, "items", "b", &d), OD_ERR_NOT_FOUND);
    /* The owner may put its own value again. */
    ck_assert_int_eq(put_item("a", "x@example.com", "s"), OD_OK);
    assert_lookup("x@example.com", "a");
    /* Changing the value frees the old one. */
    ck_assert_int_eq(put_item("a", "y@example.com", NULL), OD_OK);
    assert_lookup("x@example.com", NULL);
    assert_lookup("y@example.com", "a");
    ck_assert_int_eq(put_item("b", "x@example.com", NULL), OD_OK);
    assert_lookup("x@example.com", "b");
    /* A put without the index value drops the document from the index. */
    ck_assert_int_eq(put_item("a", NULL, NULL), OD_OK);
    assert_lookup("y@example.com", NULL);
    ck_assert_int_eq(put_item("c", "y@example.com", NULL), OD_OK);
    /* Deleting frees the value. */
    ck_assert_int_eq(S->del(SELF, "items", "b", 0), OD_OK);
    assert_lookup("x@example.com", NULL);
    ck_assert_int_eq(put_item("d", "x@example.com", NULL), OD_OK);
    assert_lookup("x@example.com", "d");
}
END_TEST

START_TEST(test_unique_conflict_keeps_old_document)
{
    uint64_t v = 0;
    ck_assert_int_eq(put_item("a", "a@x", "s1"), OD_OK);
    ck_assert_int_eq(put_item("b", "b@x", "s1"), OD_OK);
    /* b tries to take a's email: refused, and b keeps its body, version and
     * index values. */
    od_index_value idx[] = {{"email", "a@x"}, {"status", "s2"}};
    ck_assert_int_eq(S->put(SELF, "items", "b", "{\"new\":1}", 9, idx, 2, OD_PUT_UPSERT, 0, &v),
                     OD_ERR_EXISTS);
    assert_doc("items", "b", "{}", 1);
    assert_lookup("b@x", "b");
    assert_lookup("a@x", "a");
    walk w;
    walk_all(&w, "items", "status", "s2", 10, 0);
    ck_assert_uint_eq(w.n, 0);
}
END_TEST

START_TEST(test_lookup_errors)
{
    od_doc d = {0};
    ck_assert_int_eq(S->lookup(SELF, "items", "email", "nobody@x", &d), OD_ERR_NOT_FOUND);
    ck_assert_int_eq(S->lookup(SELF, "items", "nosuch", "v", &d), OD_ERR_INVALID);
    ck_assert_int_eq(S->lookup(SELF, "nosuchtable", "email", "v", &d), OD_ERR_INVALID);
    ck_assert_int_eq(S->lookup(SELF, "items", "email", "", &d), OD_ERR_INVALID);
    /* lookup is for unique indexes; a non-unique one is queried. */
    ck_assert_int_eq(put_item("a", NULL, "open"), OD_OK);
    ck_assert_int_eq(S->lookup(SELF, "items", "status", "open", &d), OD_ERR_INVALID);
}
END_TEST

START_TEST(test_query_pagination)
{
    /* 30 documents, every third one "open"; keys inserted out of order. */
    char key[16];
    for (int i = 29; i >= 0; i--) {
        snprintf(key, sizeof key, "k%02d", (i * 7) % 30);
        ck_assert_int_eq(put_item(key, NULL, ((i * 7) % 30) % 3 == 0 ? "open" : "done"), OD_OK);
    }
    for (uint32_t desc = 0; desc <= 1; desc++) {
        for (uint32_t limit = 1; limit <= 11; limit += 3) {
            walk w;
            walk_all(&w, "items", "status", "open", limit, desc);
            ck_assert_uint_eq(w.n, 10);
            assert_sorted(&w, desc);
            for (size_t i = 0; i < w.n; i++)
                ck_assert_int_eq(atoi(w.keys[i] + 1) % 3, 0);
            ck_assert_str_eq(w.keys[0], desc ? "k27" : "k00");
        }
    }
    walk w;
    walk_all(&w, "items", "status", "nothing", 5, 0);
    ck_assert_uint_eq(w.n, 0);
    ck_assert_uint_eq(w.pages, 1);
    /* Moving a document to another value moves it between queries. */
    ck_assert_int_eq(put_item("k03", NULL, "done"), OD_OK);
    walk_all(&w, "items", "status", "open", 4, 0);
    ck_assert_uint_eq(w.n, 9);
    ck_assert_uint_eq(count_key(&w, "k03"), 0);
    walk_all(&w, "items", "status", "done", 100, 0);
    ck_assert_uint_eq(w.n, 21);
    ck_assert_uint_eq(count_key(&w, "k03"), 1);
}
END_TEST

START_TEST(test_query_unique_index)
{
    ck_assert_int_eq(put_item("a", "a@x", NULL), OD_OK);
    walk w;
    walk_all(&w, "items", "email", "a@x", 10, 0);
    ck_assert_uint_eq(w.n, 1);
    ck_assert_str_eq(w.keys[0], "a");
}
END_TEST

START_TEST(test_scan_pagination)
{
    char key[16];
    walk w;
    walk_all(&w, "plain", NULL, NULL, 5, 0);
    ck_assert_uint_eq(w.n, 0);
    for (int i = 0; i < 23; i++) {
        snprintf(key, sizeof key, "key-%02d", (i * 5) % 23);
        ck_assert_int_eq(put("plain", key, "{}", OD_PUT_UPSERT, 0, NULL), OD_OK);
    }
    for (uint32_t desc = 0; desc <= 1; desc++) {
        walk_all(&w, "plain", NULL, NULL, 5, desc);
        ck_assert_uint_eq(w.n, 23);
        ck_assert_uint_ge(w.pages, 5);
        ck_assert_uint_le(w.pages, 6);
        assert_sorted(&w, desc);
        ck_assert_str_eq(w.keys[0], desc ? "key-22" : "key-00");
    }
    /* A page of exactly limit documents. */
    od_page p = {0};
    ck_assert_int_eq(S->scan(SELF, "plain", NULL, 7, 0, &p), OD_OK);
    ck_assert_uint_eq(p.count, 7);
    ck_assert_ptr_nonnull(p.next);
    od_page_clear(H, &p);
    walk_all(&w, "plain", NULL, NULL, 1000, 0);
    ck_assert_uint_eq(w.n, 23);
    ck_assert_uint_eq(w.pages, 1);
    /* Byte order, not collation: "B" < "_" < "a" < "b" < "~". */
    const char *keys[] = {"b", "~", "_", "B", "a"};
    for (size_t i = 0; i < 5; i++)
        ck_assert_int_eq(put("items", keys[i], "{}", OD_PUT_UPSERT, 0, NULL), OD_OK);
    walk_all(&w, "items", NULL, NULL, 2, 0);
    ck_assert_uint_eq(w.n, 5);
    ck_assert_str_eq(w.keys[0], "B");
    ck_assert_str_eq(w.keys[1], "_");
    ck_assert_str_eq(w.keys[2], "a");
    ck_assert_str_eq(w.keys[4], "~");
}
END_TEST

START_TEST(test_page_bodies)
{
    ck_assert_int_eq(put("plain", "a", "{\"v\":\"a\"}", OD_PUT_UPSERT, 0, NULL), OD_OK);
    ck_assert_int_eq(put("plain", "b", "{\"v\":\"b\"}", OD_PUT_UPSERT, 0, NULL), OD_OK);
    ck_assert_int_eq(put("plain", "b", "{\"v\":\"B\"}", OD_PUT_UPSERT, 0, NULL), OD_OK);
    od_page p = {0};
    ck_assert_int_eq(S->scan(SELF, "plain", NULL, 10, 0, &p), OD_OK);
    ck_assert_uint_eq(p.count, 2);
    ck_assert_ptr_null(p.next);
    ck_assert_str_eq(p.items[0].body, "{\"v\":\"a\"}");
    ck_assert_uint_eq(p.items[0].version, 1);
    ck_assert_str_eq(p.items[1].body, "{\"v\":\"B\"}");
    ck_assert_uint_eq(p.items[1].len, 9);
    ck_assert_uint_eq(p.items[1].version, 2);
    od_page_clear(H, &p);
}
END_TEST

/* Walk with limit 4 while documents come and go between pages: every
 * document that existed throughout appears exactly once. */
static void churn_walk(const char *index, uint32_t desc)
{
    char key[16];
    for (int i = 0; i < 40; i += 2) { /* k00, k02, ... k38 */
        snprintf(key, sizeof key, "k%02d", i);
        ck_assert_int_eq(put_item(key, NULL, "open"), OD_OK);
    }
    walk w;
    memset(&w, 0, sizeof w);
    char *cursor = NULL;
    int round = 0;
    do {
        od_page p = {0};
        od_status s = index ? S->query(SELF, "items", index, "open", cursor, 4, desc, &p)
                            : S->scan(SELF, "items", cursor, 4, desc, &p);
        ck_assert_int_eq(s, OD_OK);
        walk_page(&w, &p, 4);
        free(cursor);
        cursor = p.next ? strdup(p.next) : NULL;
        od_page_clear(H, &p);
        /* Insert new odd keys everywhere, and delete one even key below
         * k10 (seen early ascending) and one above k30 (seen early descending). */
        for (int j = 0; j < 3; j++) {
            snprintf(key, sizeof key, "k%02d", (round * 13 + j * 11) % 40 | 1);
            ck_assert_int_eq(put_item(key, NULL, "open"), OD_OK);
        }
        if (round < 4) {
            snprintf(key, sizeof key, "k%02d", round * 2 + 2);
            ck_assert_int_eq(S->del(SELF, "items", key, 0), OD_OK);
            snprintf(key, sizeof key, "k%02d", 36 - round * 2);
            ck_assert_int_eq(S->del(SELF, "items", key, 0), OD_OK);
        }
        round++;
        ck_assert_int_lt(round, 100);
    } while (cursor);
    assert_sorted(&w, desc);
    /* Survivors: even keys never deleted. */
    for (int i = 0; i < 40; i += 2) {
        snprintf(key, sizeof key, "k%02d", i);
        int deleted = (i >= 2 && i <= 8) || (i >= 30 && i <= 36);
        if (!deleted)
            ck_assert_msg(count_key(&w, key) == 1, "%s seen %zu times", key, count_key(&w, key));
        else
            ck_assert_uint_le(count_key(&w, key), 1);
    }
}

START_TEST(test_scan_cursor_stability)
{
    churn_walk(NULL, (uint32_t)_i);
}
END_TEST

START_TEST(test_query_cursor_stability)
{
    churn_walk("status", (uint32_t)_i);
}
END_TEST

START_TEST(test_garbage_cursor)
{
    ck_assert_int_eq(put_item("a", "a@x", "open"), OD_OK);
    ck_assert_int_eq(put_item("b", "b@x", "open"), OD_OK);
    char huge[2048];
    memset(huge, 'A', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    const char *garbage[] = {"", "x", "garbage", "m1", "m1sa.", "m1sa.!!!!", "m1sa.Y", "%00%00",
                             "\x01\x02", "null", huge};
    for (size_t i = 0; i < sizeof garbage / sizeof *garbage; i++) {
        od_page p = {0};
        ck_assert_int_eq(S->scan(SELF, "items", garbage[i], 10, 0, &p), OD_ERR_INVALID);
        ck_assert_ptr_null(p.items);
        ck_assert_int_eq(S->query(SELF, "items", "status", "open", garbage[i], 10, 0, &p),
                         OD_ERR_INVALID);
    }
    od_page p = {0};
    ck_assert_int_eq(S->scan(SELF, "items", NULL, 1, 0, &p), OD_OK);
    ck_assert_ptr_nonnull(p.next);
    /* A real cursor with a byte changed in the middle is not a valid cursor
     * or still names a position; it must never crash. Truncations too. */
    char *c = strdup(p.next);
    od_page_clear(H, &p);
    for (size_t cut = 0; cut < strlen(c); cut++) {
        char *t = strndup(c, cut);
        od_status s = S->scan(SELF, "items", t, 10, 0, &p);
        ck_assert(s == OD_OK || s == OD_ERR_INVALID);
        od_page_clear(H, &p);
        free(t);
    }
    free(c);
}
END_TEST

START_TEST(test_page_arguments)
{
    od_page p = {0};
    ck_assert_int_eq(S->scan(SELF, "plain", NULL, 0, 0, &p), OD_ERR_INVALID);
    ck_assert_int_eq(S->scan(SELF, "plain", NULL, 1001, 0, &p), OD_ERR_INVALID);
    ck_assert_int_eq(S->scan(SELF, "plain", NULL, 10, 2, &p), OD_ERR_INVALID);
    ck_assert_int_eq(S->scan(SELF, "nosuchtable", NULL, 10, 0, &p), OD_ERR_INVALID);
    ck_assert_int_eq(S->query(SELF, "items", "nosuch", "v", NULL, 10, 0, &p), OD_ERR_INVALID);
    ck_assert_int_eq(S->query(SELF, "items", "status", "", NULL, 10, 0, &p), OD_ERR_INVALID);
    ck_assert_int_eq(S->query(SELF, "items", "status", "v", NULL, 0, 0, &p), OD_ERR_INVALID);
    ck_assert_int_eq(S->scan(SELF, "plain", NULL, 1000, 1, &p), OD_OK);
    od_page_clear(H, &p);
}
END_TEST

/* ---- counters ---- */

START_TEST(test_counter_floor)
{
    int64_t v = -1;
    int32_t applied = -1;
    ck_assert_int_eq(S->counter_get(SELF, "stock", "p1", &v), OD_ERR_NOT_FOUND);
    ck_assert_int_eq(S->counter_add(SELF, "stock", "p1", 1, 0, NULL, &v, &applied),
                     OD_ERR_NOT_FOUND);
    ck_assert_int_eq(S->counter_set(SELF, "stock", "p1", 5), OD_OK);
    ck_assert_int_eq(S->counter_add(SELF, "stock", "p1", -3, 0, NULL, &v, &applied), OD_OK);
    ck_assert_int_eq(v, 2);
    ck_assert_int_eq(applied, 1);
    applied = -1;
    ck_assert_int_eq(S->counter_add(SELF, "stock", "p1", -3, 0, NULL, &v, &applied),
                     OD_ERR_CONFLICT);
    ck_assert_int_eq(applied, 0);
    ck_assert_int_eq(S->counter_get(SELF, "stock", "p1", &v), OD_OK);
    ck_assert_int_eq(v, 2);
    ck_assert_int_eq(S->counter_add(SELF, "stock", "p1", -2, 0, NULL, NULL, NULL), OD_OK);
    ck_assert_int_eq(S->counter_get(SELF, "stock", "p1", &v), OD_OK);
    ck_assert_int_eq(v, 0);
    /* Negative floors and increments. */
    ck_assert_int_eq(S->counter_add(SELF, "stock", "p1", -5, -5, NULL, &v, NULL), OD_OK);
    ck_assert_int_eq(v, -5);
    ck_assert_int_eq(S->counter_add(SELF, "stock", "p1", 15, 0, NULL, &v, NULL), OD_OK);
    ck_assert_int_eq(v, 10);
    /* Overwrite, delete. */
    ck_assert_int_eq(S->counter_set(SELF, "stock", "p1", 42), OD_OK);
    ck_assert_int_eq(S->counter_get(SELF, "stock", "p1", &v), OD_OK);
    ck_assert_int_eq(v, 42);
    ck_assert_int_eq(S->counter_del(SELF, "stock", "p1"), OD_OK);
    ck_assert_int_eq(S->counter_get(SELF, "stock", "p1", &v), OD_ERR_NOT_FOUND);
    ck_assert_int_eq(S->counter_del(SELF, "stock", "p1"), OD_ERR_NOT_FOUND);
    /* Counters do not share keys across namespaces or with documents. */
    ck_assert_int_eq(S->counter_set(SELF, "stock", "p2", 1), OD_OK);
    ck_assert_int_eq(S->counter_get(SELF, "reserved", "p2", &v), OD_ERR_NOT_FOUND);
    od_doc d = {0};
    ck_assert_int_eq(S->get(SELF, "plain", "p2", &d), OD_ERR_NOT_FOUND);
    ck_assert_int_eq(S->counter_set(SELF, "stock", "", 1), OD_ERR_INVALID);
}
END_TEST

START_TEST(test_counter_tokens)
{
    int64_t v = 0;
    int32_t applied = -1;
    ck_assert_int_eq(S->counter_set(SELF, "stock", "p1", 10), OD_OK);
    ck_assert_int_eq(S->counter_add(SELF, "stock", "p1", -4, 0, "order-1:p1", &v, &applied),
                     OD_OK);
    ck_assert_int_eq(applied, 1);
    ck_assert_int_eq(v, 6);
    /* Redelivered: nothing changes, the current value is reported. */
    ck_assert_int_eq(S->counter_add(SELF, "stock", "p1", -4, 0, "order-1:p1", &v, &applied),
                     OD_OK);
    ck_assert_int_eq(applied, 0);
    ck_assert_int_eq(v, 6);
    ck_assert_int_eq(S->counter_get(SELF, "stock", "p1", &v), OD_OK);
    ck_assert_int_eq(v, 6);
    /* A refused change does not consume its token. */
    ck_assert_int_eq(S->counter_add(SELF, "stock", "p1", -7, 0, "order-2:p1", &v, &applied),
                     OD_ERR_CONFLICT);
    ck_assert_int_eq(applied, 0);
    ck_assert_int_eq(S->counter_set(SELF, "stock", "p1", 7), OD_OK);
    ck_assert_int_eq(S->counter_add(SELF, "stock", "p1", -7, 0, "order-2:p1", &v, &applied),
                     OD_OK);
    ck_assert_int_eq(applied, 1);
    ck_assert_int_eq(v, 0);
    /* Compensation with its own token. */
    ck_assert_int_eq(S->counter_add(SELF, "stock", "p1", 4, 0, "cancel-1:p1", &v, &applied), OD_OK);
    ck_assert_int_eq(S->counter_add(SELF, "stock", "p1", 4, 0, "cancel-1:p1", &v, &applied), OD_OK);
    ck_assert_int_eq(applied, 0);
    ck_assert_int_eq(v, 4);
    char long_token[300];
    memset(long_token, 't', sizeof long_token - 1);
    long_token[sizeof long_token - 1] = '\0';
    ck_assert_int_eq(S->counter_add(SELF, "stock", "p1", 1, 0, long_token, &v, &applied),
                     OD_ERR_INVALID);
}
END_TEST

/* ---- concurrency ---- */

typedef struct race {
    pthread_barrier_t start;
    int ok[N_THREADS];
    int other[N_THREADS]; /* unexpected statuses */
    uint64_t version;     /* for the version race */
} race;

static void run_threads(void *(*fn)(void *), race *r)
{
    pthread_t t[N_THREADS];
    void *arg[N_THREADS][2];
    pthread_barrier_init(&r->start, NULL, N_THREADS);
    for (size_t i = 0; i < N_THREADS; i++) {
        arg[i][0] = r;
        arg[i][1] = (void *)i;
        ck_assert_int_eq(pthread_create(&t[i], NULL, fn, arg[i]), 0);
    }
    for (size_t i = 0; i < N_THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&r->start);
}

static int sum(const int *v)
{
    int s = 0;
    for (size_t i = 0; i < N_THREADS; i++)
        s += v[i];
    return s;
}

static void *decrement_thread(void *p)
{
    race *r = ((void **)p)[0];
    size_t me = (size_t)((void **)p)[1];
    pthread_barrier_wait(&r->start);
    for (int i = 0; i < 60; i++) {
        od_status s = S->counter_add(SELF, "stock", "hot", -1, 0, NULL, NULL, NULL);
        r->ok[me] += s == OD_OK;
        r->other[me] += s != OD_OK && s != OD_ERR_CONFLICT;
    }
    return NULL;
}

START_TEST(test_concurrent_decrement_floor)
{
    race r = {0};
    int64_t v = -1;
    ck_assert_int_eq(S->counter_set(SELF, "stock", "hot", 100), OD_OK);
    run_threads(decrement_thread, &r); /* 8 x 60 attempts on 100 units */
    ck_assert_int_eq(sum(r.ok), 100);
    ck_assert_int_eq(sum(r.other), 0);
    ck_assert_int_eq(S->counter_get(SELF, "stock", "hot", &v), OD_OK);
    ck_assert_int_eq(v, 0);
}
END_TEST

static void *token_thread(void *p)
{
    race *r = ((void **)p)[0];
    size_t me = (size_t)((void **)p)[1];
    pthread_barrier_wait(&r->start);
    int32_t applied = 0;
    od_status s = S->counter_add(SELF, "stock", "hot", -1, 0, "same-op", NULL, &applied);
    r->ok[me] = s == OD_OK && applied == 1;
    r->other[me] = s != OD_OK;
    return NULL;
}

START_TEST(test_concurrent_token_once)
{
    race r = {0};
    int64_t v = -1;
    ck_assert_int_eq(S->counter_set(SELF, "stock", "hot", 100), OD_OK);
    run_threads(token_thread, &r);
    ck_assert_int_eq(sum(r.ok), 1);
    ck_assert_int_eq(sum(r.other), 0);
    ck_assert_int_eq(S->counter_get(SELF, "stock", "hot", &v), OD_OK);
    ck_assert_int_eq(v, 99);
}
END_TEST

static void *absent_thread(void *p)
{
    race *r = ((void **)p)[0];
    size_t me = (size_t)((void **)p)[1];
    char body[32];
    snprintf(body, sizeof body, "{\"t\":%zu}", me);
    pthread_barrier_wait(&r->start);
    od_status s = put("plain", "same", body, OD_PUT_IF_ABSENT, 0, NULL);
    r->ok[me] = s == OD_OK;
    r->other[me] = s != OD_OK && s != OD_ERR_EXISTS;
    return NULL;
}

START_TEST(test_concurrent_if_absent)
{
    race r = {0};
    run_threads(absent_thread, &r);
    ck_assert_int_eq(sum(r.ok), 1);
    ck_assert_int_eq(sum(r.other), 0);
    for (size_t i = 0; i < N_THREADS; i++) {
        if (r.ok[i]) {
            char body[32];
            snprintf(body, sizeof body, "{\"t\":%zu}", i);
            assert_doc("plain", "same", body, 1); /* the winner's body */
        }
    }
}
END_TEST

static void *unique_thread(void *p)
{
    race *r = ((void **)p)[0];
    size_t me = (size_t)((void **)p)[1];
    char key[16];
    snprintf(key, sizeof key, "u%zu", me);
    pthread_barrier_wait(&r->start);
    od_index_value idx = {"email", "taken@x"};
    od_status s = S->put(SELF, "items", key, "{}", 2, &idx, 1, OD_PUT_UPSERT, 0, NULL);
    r->ok[me] = s == OD_OK;
    r->other[me] = s != OD_OK && s != OD_ERR_EXISTS;
    return NULL;
}

START_TEST(test_concurrent_unique_value)
{
    race r = {0};
    run_threads(unique_thread, &r);
    ck_assert_int_eq(sum(r.ok), 1);
    ck_assert_int_eq(sum(r.other), 0);
    for (size_t i = 0; i < N_THREADS; i++) {
        char key[16];
        snprintf(key, sizeof key, "u%zu", i);
        if (r.ok[i])
            assert_lookup("taken@x", key);
    }
}
END_TEST

static void *version_thread(void *p)
{
    race *r = ((void **)p)[0];
    size_t me = (size_t)((void **)p)[1];
    pthread_barrier_wait(&r->start);
    od_status s = put("plain", "doc", "{\"w\":1}", OD_PUT_IF_VERSION, r->version, NULL);
    r->ok[me] = s == OD_OK;
    r->other[me] = s != OD_OK && s != OD_ERR_CONFLICT;
    return NULL;
}

START_TEST(test_concurrent_if_version)
{
    uint64_t v = 0;
    ck_assert_int_eq(put("plain", "doc", "{}", OD_PUT_UPSERT, 0, &v), OD_OK);
    for (int round = 0; round < 5; round++) {
        race r = {.version = v};
        run_threads(version_thread, &r);
        ck_assert_int_eq(sum(r.ok), 1); /* exactly one writer per version */
        ck_assert_int_eq(sum(r.other), 0);
        v++;
        assert_doc("plain", "doc", "{\"w\":1}", v);
    }
}
END_TEST

START_TEST(test_ping)
{
    ck_assert_int_eq(S->ping(SELF), OD_OK);
}
END_TEST

/* ---- put_batch (ABI 1.1, optional) ---- */

/* A backend without put_batch passes these tests, each saying it skipped. */
#define NEED_PUT_BATCH()                                                                           \
    do {                                                                                           \
        if (!OD_HAS_OP(od_storage_ops, S, put_batch)) {                                           \
            fprintf(stderr, "%s: no put_batch, %s skipped\n", contract_backend_name(), __func__);  \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define NOT_SET ((size_t)12345) /* *failed before the call: the backend must overwrite it */

static const od_index_def TAG_INDEXES[] = {{"tag", 0}, {"code", 1}};

/* setup() plus "tags": index "tag" (not unique) and "code" (unique), so one
 * batch can write index values into two tables. */
static void batch_setup(void)
{
    setup();
    od_table_def tags = {sizeof tags, "tags", TAG_INDEXES, 2};
    ck_assert_int_eq(S->define_table(SELF, &tags), OD_OK);
}

static od_put mkput(const char *table, const char *key, const char *body, uint32_t cond,
                    uint64_t expected, const od_index_value *idx, size_t n_idx)
{
    return (od_put){sizeof(od_put), cond, table, key, body, body ? strlen(body) : 0,
                    idx, n_idx, expected};
}

/* put_batch(puts[0..n), msg) through an array of pointers, as callers build it. */
static od_status batch_msg(const od_put *puts, size_t n, const od_outbox *msg, uint64_t *versions,
                           size_t *failed)
{
    const od_put *p[OD_BATCH_MAX + 1];
    ck_assert_uint_le(n, OD_BATCH_MAX + 1);
    for (size_t i = 0; i < n; i++)
        p[i] = &puts[i];
    return S->put_batch(SELF, p, n, msg, versions, failed);
}

static od_status batch(const od_put *puts, size_t n, uint64_t *versions, size_t *failed)
{
    return batch_msg(puts, n, NULL, versions, failed);
}

/* The keys of a query (index) or scan (index NULL), in order, as "a,b,c". */
static void assert_keys(const char *table, const char *index, const char *value, const char *keys)
{
    walk w;
    char got[512] = "";
    walk_all(&w, table, index, value, 100, 0);
    for (size_t i = 0; i < w.n; i++) {
        ck_assert_uint_lt(strlen(got) + strlen(w.keys[i]) + 2, sizeof got);
        if (i)
            strcat(got, ",");
        strcat(got, w.keys[i]);
    }
    ck_assert_msg(strcmp(got, keys) == 0, "%s %s=%s: got [%s], want [%s]", table,
                  index ? index : "(scan)", value ? value : "", got, keys);
}

static void assert_code(const char *code, const char *key)
{
    od_doc d = {0};
    od_status s = S->lookup(SELF, "tags", "code", code, &d);
    ck_assert_int_eq(s, key ? OD_OK : OD_ERR_NOT_FOUND);
    if (key)
        ck_assert_str_eq(d.key, key);
    od_doc_clear(H, &d);
}

START_TEST(test_batch_applies_all)
{
    NEED_PUT_BATCH();
    od_index_value item_idx[] = {{"email", "k@x"}, {"status", "open"}};
    od_index_value tag_idx[] = {{"tag", "red"}, {"code", "c1"}};
    /* The same key in three tables is three documents, not a duplicate. */
    od_put p[] = {mkput("items", "k", "{\"i\":1}", OD_PUT_IF_ABSENT, 0, item_idx, 2),
                  mkput("tags", "k", "{\"t\":1}", OD_PUT_UPSERT, 0, tag_idx, 2),
                  mkput("plain", "k", "[1,2]xyz", OD_PUT_UPSERT, 0, NULL, 0)};
    p[2].len = 5; /* bodies are bytes of a length, as for put() */
    uint64_t v[3] = {0, 0, 0};
    size_t failed = NOT_SET;
    ck_assert_int_eq(batch(p, 3, v, &failed), OD_OK);
    ck_assert_uint_eq(failed, OD_BATCH_NONE);
    ck_assert_uint_eq(v[0], 1);
    ck_assert_uint_eq(v[1], 1);
    ck_assert_uint_eq(v[2], 1);
    assert_doc("items", "k", "{\"i\":1}", 1);
    assert_doc("tags", "k", "{\"t\":1}", 1);
    assert_doc("plain", "k", "[1,2]", 1);
    assert_lookup("k@x", "k");
    assert_keys("items", "status", "open", "k");
    assert_code("c1", "k");
    assert_keys("tags", "tag", "red", "k");
    /* Again, conditioned on those versions: every version is bumped. */
    p[0] = mkput("items", "k", "{\"i\":2}", OD_PUT_IF_VERSION, 1, item_idx, 2);
    p[1] = mkput("tags", "k", "{\"t\":2}", OD_PUT_IF_VERSION, 1, tag_idx, 1);
    od_index_value k2_idx[] = {{"tag", "red"}, {"code", "c2"}};
    p[2] = mkput("tags", "k2", "{}", OD_PUT_IF_ABSENT, 0, k2_idx, 2);
    failed = NOT_SET;
    ck_assert_int_eq(batch(p, 3, v, &failed), OD_OK);
    ck_assert_uint_eq(failed, OD_BATCH_NONE);
    ck_assert_uint_eq(v[0], 2);
    ck_assert_uint_eq(v[1], 2);
    ck_assert_uint_eq(v[2], 1);
    assert_doc("items", "k", "{\"i\":2}", 2);
    assert_doc("tags", "k", "{\"t\":2}", 2);
    assert_keys("tags", "tag", "red", "k,k2");
    assert_code("c1", NULL); /* k's second put has no code */
    assert_code("c2", "k2");
    /* versions and failed may both be NULL. */
    p[0] = mkput("plain", "k", "{}", OD_PUT_UPSERT, 0, NULL, 0);
    ck_assert_int_eq(batch(p, 1, NULL, NULL), OD_OK);
    assert_doc("plain", "k", "{}", 2);
}
END_TEST

START_TEST(test_batch_upsert_replaces_index_values)
{
    NEED_PUT_BATCH();
    ck_assert_int_eq(put_item("u", "u1@x", "old"), OD_OK);
    ck_assert_int_eq(put_item("w", "w@x", "old"), OD_OK);
    od_index_value u_idx[] = {{"status", "new"}, {"email", "u2@x"}};
    od_put p[] = {mkput("items", "u", "{\"u\":2}", OD_PUT_UPSERT, 0, u_idx, 2),
                  mkput("items", "w", "{\"w\":2}", OD_PUT_UPSERT, 0, NULL, 0)};
    uint64_t v[2] = {0, 0};
    ck_assert_int_eq(batch(p, 2, v, NULL), OD_OK);
    ck_assert_uint_eq(v[0], 2);
    ck_assert_uint_eq(v[1], 2);
    assert_doc("items", "u", "{\"u\":2}", 2);
    assert_doc("items", "w", "{\"w\":2}", 2);
    /* Old values gone, new ones there; w is in no index any more. */
    assert_keys("items", "status", "old", "");
    assert_keys("items", "status", "new", "u");
    assert_lookup("u1@x", NULL);
    assert_lookup("w@x", NULL);
    assert_lookup("u2@x", "u");
    /* The freed values can be taken again. */
    ck_assert_int_eq(put_item("x", "u1@x", "old"), OD_OK);
    ck_assert_int_eq(put_item("y", "w@x", NULL), OD_OK);
}
END_TEST

/* A value freed by an earlier put of the batch may be taken by a later one,
 * as two put() calls in that order would. */
START_TEST(test_batch_unique_handover)
{
    NEED_PUT_BATCH();
    ck_assert_int_eq(put_item("a", "e@x", NULL), OD_OK);
    od_index_value a_idx = {"email", "e2@x"}, b_idx = {"email", "e@x"};
    od_put p[] = {mkput("items", "a", "{}", OD_PUT_UPSERT, 0, &a_idx, 1),
                  mkput("items", "b", "{}", OD_PUT_IF_ABSENT, 0, &b_idx, 1)};
    size_t failed = NOT_SET;
    ck_assert_int_eq(batch(p, 2, NULL, &failed), OD_OK);
    ck_assert_uint_eq(failed, OD_BATCH_NONE);
    assert_lookup("e@x", "b");
    assert_lookup("e2@x", "a");
}
END_TEST

/* Refused batches: puts 0 and 1 are fine (a new indexed document, a change
 * to an existing one); put 2 is the one refused and nothing at all is written. */
static const od_index_value NEW_IDX[] = {{"email", "new@x"}, {"status", "s_new"}};

static void seed(void)
{
    ck_assert_int_eq(put("plain", "p", "{\"v\":1}", OD_PUT_UPSERT, 0, NULL), OD_OK);
    ck_assert_int_eq(put_item("i", "i@x", "s1"), OD_OK);
}

static void assert_seed_only(void)
{
    assert_doc("plain", "p", "{\"v\":1}", 1);
    assert_doc("items", "i", "{}", 1);
    assert_keys("plain", NULL, NULL, "p");
    assert_keys("items", NULL, NULL, "i");
    assert_keys("tags", NULL, NULL, "");
    assert_lookup("i@x", "i");
    assert_lookup("new@x", NULL);
    assert_keys("items", "status", "s1", "i");
    assert_keys("items", "status", "s_new", "");
}

static void two_good_puts(od_put *p)
{
    p[0] = mkput("items", "new", "{\"n\":1}", OD_PUT_IF_ABSENT, 0, NEW_IDX, 2);
    p[1] = mkput("plain", "p", "{\"v\":2}", OD_PUT_UPSERT, 0, NULL, 0);
}

static const od_index_value OWNED_IDX = {"email", "i@x"};
static const od_index_value TAKEN_IDX = {"email", "new@x"};

static const struct {
    od_put put;
    od_status status;
} REFUSED[] = {
    {{sizeof(od_put), OD_PUT_IF_ABSENT, "items", "i", "{}", 2, NULL, 0, 0}, OD_ERR_EXISTS},
    {{sizeof(od_put), OD_PUT_IF_VERSION, "items", "i", "{}", 2, NULL, 0, 2}, OD_ERR_CONFLICT},
    {{sizeof(od_put), OD_PUT_IF_VERSION, "items", "i", "{}", 2, NULL, 0, 0}, OD_ERR_CONFLICT},
    {{sizeof(od_put), OD_PUT_IF_VERSION, "plain", "gone", "{}", 2, NULL, 0, 1}, OD_ERR_NOT_FOUND},
    /* a unique value another document owns */
    {{sizeof(od_put), OD_PUT_UPSERT, "items", "other", "{}", 2, &OWNED_IDX, 1, 0}, OD_ERR_EXISTS},
    /* ...or that put 0 of this batch takes: the later put is refused, as a
     * second put() would be */
    {{sizeof(od_put), OD_PUT_UPSERT, "items", "other", "{}", 2, &TAKEN_IDX, 1, 0}, OD_ERR_EXISTS},
    {{sizeof(od_put), OD_PUT_IF_ABSENT, "items", "other", "{}", 2, &TAKEN_IDX, 1, 0},
     OD_ERR_EXISTS},
};

START_TEST(test_batch_all_or_nothing)
{
    NEED_PUT_BATCH();
    seed();
    od_put p[3];
    two_good_puts(p);
    p[2] = REFUSED[_i].put;
    uint64_t v[3] = {0, 0, 0};
    size_t failed = NOT_SET;
    ck_assert_int_eq(batch(p, 3, v, &failed), REFUSED[_i].status);
    ck_assert_uint_eq(failed, 2);
    assert_seed_only();
    /* The refusal left no lock or half state behind: the good puts alone go. */
    failed = NOT_SET;
    ck_assert_int_eq(batch(p, 2, v, &failed), OD_OK);
    ck_assert_uint_eq(failed, OD_BATCH_NONE);
    ck_assert_uint_eq(v[0], 1);
    ck_assert_uint_eq(v[1], 2);
    assert_lookup("new@x", "new");
}
END_TEST

/* The refused put first: *failed is its index, not the last one tried. */
START_TEST(test_batch_failed_index_first)
{
    NEED_PUT_BATCH();
    seed();
    od_put p[3];
    two_good_puts(p);
    p[2] = p[0];
    p[0] = mkput("items", "i", "{}", OD_PUT_IF_VERSION, 7, NULL, 0);
    size_t failed = NOT_SET;
    ck_assert_int_eq(batch(p, 3, NULL, &failed), OD_ERR_CONFLICT);
    ck_assert_uint_eq(failed, 0);
    assert_seed_only();
}
END_TEST

static const od_index_value UNKNOWN_IDX = {"nosuch", "x"};
static const od_index_value EMPTY_IDX = {"email", ""};
static const od_index_value TWICE_IDX[] = {{"status", "a"}, {"status", "b"}};
static const od_index_value PLAIN_IDX = {"email", "z@x"}; /* plain has no indexes */
static const char LONG_KEY[] = /* OD_KEY_MAX + 1 bytes */
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk";
_Static_assert(sizeof LONG_KEY == OD_KEY_MAX + 2, "LONG_KEY is one byte too long");

static const od_put INVALID_PUTS[] = {
    {sizeof(od_put), OD_PUT_UPSERT, "nosuchtable", "a", "{}", 2, NULL, 0, 0},
    {sizeof(od_put), OD_PUT_UPSERT, NULL, "a", "{}", 2, NULL, 0, 0},
    {sizeof(od_put), OD_PUT_UPSERT, "plain", "", "{}", 2, NULL, 0, 0},
    {sizeof(od_put), OD_PUT_UPSERT, "plain", NULL, "{}", 2, NULL, 0, 0},
    {sizeof(od_put), OD_PUT_UPSERT, "plain", "a\nb", "{}", 2, NULL, 0, 0},
    {sizeof(od_put), OD_PUT_UPSERT, "plain", LONG_KEY, "{}", 2, NULL, 0, 0},
    {sizeof(od_put), 7, "plain", "a", "{}", 2, NULL, 0, 0},
    {sizeof(od_put), OD_PUT_UPSERT, "plain", "a", NULL, 0, NULL, 0, 0},
    {sizeof(od_put), OD_PUT_UPSERT, "items", "a", "{}", 2, &UNKNOWN_IDX, 1, 0},
    {sizeof(od_put), OD_PUT_UPSERT, "items", "a", "{}", 2, &EMPTY_IDX, 1, 0},
    {sizeof(od_put), OD_PUT_UPSERT, "items", "a", "{}", 2, TWICE_IDX, 2, 0},
    {sizeof(od_put), OD_PUT_UPSERT, "plain", "a", "{}", 2, &PLAIN_IDX, 1, 0},
    /* the same (table, key) as put 0 or put 1, whatever the condition */
    {sizeof(od_put), OD_PUT_UPSERT, "items", "new", "{}", 2, NULL, 0, 0},
    {sizeof(od_put), OD_PUT_IF_VERSION, "plain", "p", "{}", 2, NULL, 0, 1},
    /* a caller built against a shorter od_put */
    {(uint32_t)offsetof(od_put, expected), OD_PUT_UPSERT, "plain", "a", "{}", 2, NULL, 0, 0},
    {0, OD_PUT_UPSERT, "plain", "a", "{}", 2, NULL, 0, 0},
};

START_TEST(test_batch_invalid_put)
{
    NEED_PUT_BATCH();
    seed();
    od_put p[3];
    two_good_puts(p);
    p[2] = INVALID_PUTS[_i];
    size_t failed = NOT_SET;
    ck_assert_int_eq(batch(p, 3, NULL, &failed), OD_ERR_INVALID);
    ck_assert_uint_eq(failed, OD_BATCH_NONE);
    assert_seed_only();
}
END_TEST

START_TEST(test_batch_invalid_shape)
{
    NEED_PUT_BATCH();
    seed();
    od_put p[OD_BATCH_MAX + 1];
    const od_put *ptrs[3];
    char keys[OD_BATCH_MAX + 1][8];
    size_t failed = NOT_SET;
    two_good_puts(p);
    ck_assert_int_eq(batch(p, 0, NULL, &failed), OD_ERR_INVALID);
    ck_assert_uint_eq(failed, OD_BATCH_NONE);
    failed = NOT_SET;
    ck_assert_int_eq(S->put_batch(SELF, NULL, 1, NULL, NULL, &failed), OD_ERR_INVALID);
    ck_assert_uint_eq(failed, OD_BATCH_NONE);
    ptrs[0] = &p[0];
    ptrs[1] = NULL;
    ptrs[2] = &p[1];
    failed = NOT_SET;
    ck_assert_int_eq(S->put_batch(SELF, ptrs, 3, NULL, NULL, &failed), OD_ERR_INVALID);
    ck_assert_uint_eq(failed, OD_BATCH_NONE);
    /* OD_BATCH_MAX + 1 good puts: too many; OD_BATCH_MAX: fine. */
    for (size_t i = 0; i <= OD_BATCH_MAX; i++) {
        snprintf(keys[i], sizeof keys[i], "b%02zu", i);
        p[i] = mkput("plain", keys[i], "{}", OD_PUT_IF_ABSENT, 0, NULL, 0);
    }
    failed = NOT_SET;
    ck_assert_int_eq(batch(p, OD_BATCH_MAX + 1, NULL, &failed), OD_ERR_INVALID);
    ck_assert_uint_eq(failed, OD_BATCH_NONE);
    assert_seed_only();
    uint64_t v[OD_BATCH_MAX];
    ck_assert_int_eq(batch(p, OD_BATCH_MAX, v, NULL), OD_OK);
    for (size_t i = 0; i < OD_BATCH_MAX; i++) {
        ck_assert_uint_eq(v[i], 1);
        assert_doc("plain", keys[i], "{}", 1);
    }
    walk w;
    walk_all(&w, "plain", NULL, NULL, 100, 0);
    ck_assert_uint_eq(w.n, OD_BATCH_MAX + 1); /* and "p" */
    ck_assert_uint_eq(count_key(&w, keys[OD_BATCH_MAX]), 0);
}
END_TEST

/* A queue put_batch cannot enqueue on: counts the calls the backend makes. */
typedef struct fake_queue {
    const char *store; /* what store() answers */
    int store_calls;
    int notify_calls;
} fake_queue;

static const char *fake_store(void *self)
{
    fake_queue *f = self;
    f->store_calls++;
    return f->store;
}

static void fake_notify(void *self, uint32_t lane)
{
    fake_queue *f = self;
    (void)lane;
    f->notify_calls++;
}

/* msg on queue q: OD_ERR_UNSUPPORTED, nothing written, no notify. */
static void assert_msg_refused(const od_queue *q)
{
    od_put p[2];
    two_good_puts(p);
    od_outbox msg = {sizeof msg, OD_LANE_NORMAL, q, "{\"order\":1}", 11, 0};
    size_t failed = NOT_SET;
    ck_assert_int_eq(batch_msg(p, 2, &msg, NULL, &failed), OD_ERR_UNSUPPORTED);
    ck_assert_uint_eq(failed, OD_BATCH_NONE);
    assert_seed_only();
    ck_assert_int_eq(((fake_queue *)q->self)->notify_calls, 0);
}

START_TEST(test_batch_msg_other_store)
{
    NEED_PUT_BATCH();
    seed();
    fake_queue f = {"nowhere:x", 0, 0};
    od_queue_ops ops = {.size = sizeof ops, .store = fake_store, .notify = fake_notify};
    od_queue q = {&ops, &f};
    assert_msg_refused(&q);
    ops.store = NULL; /* a queue that shares no store */
    assert_msg_refused(&q);
    if (!OD_HAS_OP(od_storage_ops, S, store))
        return;
    /* Our own store string, one byte short or one too long: still another store. */
    const char *mine = S->store(SELF);
    ck_assert_ptr_nonnull(mine);
    ck_assert_uint_gt(strlen(mine), 0);
    char near[1024];
    ck_assert_uint_lt(strlen(mine), sizeof near - 1);
    ops.store = fake_store;
    f.store = near;
    snprintf(near, sizeof near, "%.*s", (int)strlen(mine) - 1, mine);
    assert_msg_refused(&q);
    snprintf(near, sizeof near, "%sx", mine);
    assert_msg_refused(&q);
}
END_TEST

/* An ABI 1.0 queue has no store member, whatever lies past its size. */
START_TEST(test_batch_msg_old_queue)
{
    NEED_PUT_BATCH();
    seed();
    const char *mine = OD_HAS_OP(od_storage_ops, S, store) ? S->store(SELF) : "nowhere:x";
    fake_queue f = {mine, 0, 0};
    od_queue_ops ops = {.size = offsetof(od_queue_ops, store), .store = fake_store,
                        .notify = fake_notify};
    od_queue q = {&ops, &f};
    assert_msg_refused(&q);
    ck_assert_int_eq(f.store_calls, 0);
}
END_TEST

static void *claim_thread(void *p)
{
    race *r = ((void **)p)[0];
    size_t me = (size_t)((void **)p)[1];
    char order[32], body[32];
    snprintf(order, sizeof order, "order:%zu", me);
    snprintf(body, sizeof body, "{\"t\":%zu}", me);
    od_put puts[] = {mkput("plain", "claim:K", body, OD_PUT_IF_ABSENT, 0, NULL, 0),
                     mkput("plain", order, body, OD_PUT_IF_ABSENT, 0, NULL, 0)};
    size_t failed = NOT_SET;
    pthread_barrier_wait(&r->start);
    od_status s = batch(puts, 2, NULL, &failed);
    r->ok[me] = s == OD_OK && failed == OD_BATCH_NONE;
    r->other[me] = !r->ok[me] && (s != OD_ERR_EXISTS || failed != 0);
    return NULL;
}

START_TEST(test_batch_concurrent_claim)
{
    NEED_PUT_BATCH();
    race r = {0};
    run_threads(claim_thread, &r);
    ck_assert_int_eq(sum(r.ok), 1);
    ck_assert_int_eq(sum(r.other), 0);
    walk w;
    walk_all(&w, "plain", NULL, NULL, 100, 0);
    ck_assert_uint_eq(w.n, 2); /* the claim and one order */
    for (size_t i = 0; i < N_THREADS; i++) {
        if (!r.ok[i])
            continue;
        char order[32], body[32];
        snprintf(order, sizeof order, "order:%zu", i);
        snprintf(body, sizeof body, "{\"t\":%zu}", i);
        assert_doc("plain", "claim:K", body, 1);
        assert_doc("plain", order, body, 1);
    }
}
END_TEST

static Suite *storage_suite(void)
{
    static char name[96];
    snprintf(name, sizeof name, "contract_storage(%s)", contract_backend_name());
    Suite *s = suite_create(name);
    TCase *docs = tcase_create("documents");
    tcase_add_checked_fixture(docs, setup, teardown);
    tcase_add_test(docs, test_put_get_versions);
    tcase_add_test(docs, test_put_if_absent);
    tcase_add_test(docs, test_put_if_version);
    tcase_add_test(docs, test_delete);
    tcase_add_test(docs, test_body_bytes_kept);
    tcase_add_test(docs, test_validation);
    tcase_add_test(docs, test_define_table_idempotent);
    tcase_add_test(docs, test_ping);
    suite_add_tcase(s, docs);

    TCase *idx = tcase_create("indexes_and_pages");
    tcase_add_checked_fixture(idx, setup, teardown);
    tcase_add_test(idx, test_unique_index);
    tcase_add_test(idx, test_unique_conflict_keeps_old_document);
    tcase_add_test(idx, test_lookup_errors);
    tcase_add_test(idx, test_query_pagination);
    tcase_add_test(idx, test_query_unique_index);
    tcase_add_test(idx, test_scan_pagination);
    tcase_add_test(idx, test_page_bodies);
    tcase_add_loop_test(idx, test_scan_cursor_stability, 0, 2);
    tcase_add_loop_test(idx, test_query_cursor_stability, 0, 2);
    tcase_add_test(idx, test_garbage_cursor);
    tcase_add_test(idx, test_page_arguments);
    suite_add_tcase(s, idx);

    TCase *ctr = tcase_create("counters");
    tcase_add_checked_fixture(ctr, setup, teardown);
    tcase_add_test(ctr, test_counter_floor);
    tcase_add_test(ctr, test_counter_tokens);
    suite_add_tcase(s, ctr);

    TCase *conc = tcase_create("concurrency");
    tcase_add_checked_fixture(conc, setup, teardown);
    tcase_add_test(conc, test_concurrent_decrement_floor);
    tcase_add_test(conc, test_concurrent_token_once);
    tcase_add_test(conc, test_concurrent_if_absent);
    tcase_add_test(conc, test_concurrent_unique_value);
    tcase_add_test(conc, test_concurrent_if_version);
    suite_add_tcase(s, conc);

    TCase *bat = tcase_create("put_batch");
    tcase_add_checked_fixture(bat, batch_setup, teardown);
    tcase_add_test(bat, test_batch_applies_all);
    tcase_add_test(bat, test_batch_upsert_replaces_index_values);
    tcase_add_test(bat, test_batch_unique_handover);
    tcase_add_loop_test(bat, test_batch_all_or_nothing, 0, sizeof REFUSED / sizeof *REFUSED);
    tcase_add_test(bat, test_batch_failed_index_first);
    tcase_add_loop_test(bat, test_batch_invalid_put, 0, sizeof INVALID_PUTS / sizeof *INVALID_PUTS);
    tcase_add_test(bat, test_batch_invalid_shape);
    tcase_add_test(bat, test_batch_msg_other_store);
    tcase_add_test(bat, test_batch_msg_old_queue);
    tcase_add_test(bat, test_batch_concurrent_claim);
    suite_add_tcase(s, bat);
    return s;
}

int main(int argc, char **argv)
{
    return contract_main(argc, argv, storage_suite);
}
