/*
 * tests/modules/storage_dynamodb - what only the DynamoDB backend promises.
 * Case "dynamodb_local" runs against DynamoDB Local (endpoint from
 * AWS_ENDPOINT_URL_DYNAMODB): tables
 * are provisioned only when asked, instances sharing a prefix share data,
 * the table layout docs/aws.md documents, cursors bound to their table and
 * index, DynamoDB's limits mapped to statuses, and a bounded failure when
 * the endpoint is unreachable. Each test uses a fresh table prefix.
 * Case "offline" needs no emulator: a scripted stub endpoint covers what
 * DynamoDB Local never does (transaction conflicts, empty pages with a
 * LastEvaluatedKey, 5xx, garbage answers), plus config and unreachable
 * endpoints. CK_RUN_CASE picks one (two CTest entries).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "loopback_stub.h"
#include "mock_host.h"
#include "odaws.h"

static const od_module_desc *DESC;
static const od_storage_ops *S;
static const od_host_api *H;
static char PREFIX[64];

static const od_index_def ITEM_INDEXES[] = {{"email", 1}, {"status", 0}};

typedef struct inst {
    od_module *mod;
    void *self;
} inst;

static void setup(void)
{
    char err[512];
    DESC = mock_load_module(MODULE_DIR "/storage_dynamodb.so", err, sizeof err);
    ck_assert_msg(DESC != NULL, "%s", err);
    S = DESC->ops;
    H = mock_host_api();
    /* Unique per test, forked (pid) or not (count). */
    static unsigned count;
    snprintf(PREFIX, sizeof PREFIX, "odt_%ld_%ld_%u_", (long)getpid(), (long)time(NULL),
             count++);
    mock_log_reset();
}

static od_module *module(const char *prefix, int create_missing)
{
    od_module *m = mock_module_new("storage");
    mock_config_set_string(m, "table_prefix", prefix);
    mock_config_set_bool(m, "create_missing", create_missing);
    mock_config_set_int(m, "max_retries", 1);
    return m;
}

static od_status inst_open(inst *i, int create_missing)
{
    i->mod = module(PREFIX, create_missing);
    i->self = NULL;
    return DESC->init(H, i->mod, &i->self);
}

static void inst_close(inst *i)
{
    if (i->self)
        DESC->destroy(i->self);
    mock_module_free(i->mod);
    memset(i, 0, sizeof *i);
}

static void define_items(const inst *i)
{
    od_table_def items = {sizeof items, "items", ITEM_INDEXES, 2};
    ck_assert_int_eq(S->define_table(i->self, &items), OD_OK);
}

static od_status put_item(const inst *i, const char *key, const char *email, const char *status)
{
    od_index_value idx[] = {{"email", email}, {"status", status}};
    return S->put(i->self, "items", key, "{}", 2, idx, 2, OD_PUT_UPSERT, 0, NULL);
}

/* ---- talking to DynamoDB directly, to check the layout ---- */

static const odaws_service DDB = {"dynamodb", "DYNAMODB", "DynamoDB_20120810"};

/* Run op on a table, with a key for GetItem; the parsed 2xx answer
 * (caller puts it). */
static json_object *aws(const char *op, const char *table, const char *pk)
{
    od_module *m = module(PREFIX, 0);
    odaws_client *c = NULL;
    odaws_response resp;
    char body[1024];
    json_object *out = NULL;
    ck_assert_int_eq(odaws_client_new(H, m, &DDB, &c), OD_OK);
    if (pk)
        snprintf(body, sizeof body, "{\"TableName\":\"%s\",\"Key\":{\"pk\":{\"S\":\"%s\"}}}",
                 table, pk);
    else
        snprintf(body, sizeof body, "{\"TableName\":\"%s\"}", table);
    ck_assert_int_eq(odaws_call(c, op, body, strlen(body), &resp), OD_OK);
    ck_assert_msg(odaws_ok(&resp), "%s: %s %s", op, resp.error_type, resp.error_message);
    out = odaws_parse(resp.body, resp.len);
    ck_assert_ptr_nonnull(out);
    odaws_response_clear(c, &resp);
    odaws_client_free(c);
    mock_module_free(m);
    return out;
}

static const char *path_str(json_object *o, const char *a, const char *b, const char *c)
{
    json_object *v = o;
    const char *keys[] = {a, b, c};
    for (size_t i = 0; i < 3 && keys[i] && v; i++)
        if (!json_object_object_get_ex(v, keys[i], &v))
            return NULL;
    return v ? json_object_get_string(v) : NULL;
}

static int has_gsi(json_object *describe, const char *name)
{
    json_object *table = NULL, *list = NULL, *n = NULL;
    json_object_object_get_ex(describe, "Table", &table);
    if (!json_object_object_get_ex(table, "GlobalSecondaryIndexes", &list))
        return 0;
    for (size_t i = 0; i < json_object_array_length(list); i++)
        if (json_object_object_get_ex(json_object_array_get_idx(list, i), "IndexName", &n) &&
            strcmp(json_object_get_string(n), name) == 0)
            return 1;
    return 0;
}

/* ---- tests ---- */

START_TEST(test_missing_tables_need_provision)
{
    inst a;
    ck_assert_int_eq(inst_open(&a, 0), OD_ERR_UNAVAILABLE);
    ck_assert(mock_log_contains("orderd --provision"));
    ck_assert(mock_log_contains("does not exist"));
    inst_close(&a);
    /* Provisioned once, a later instance without create_missing starts. */
    ck_assert_int_eq(inst_open(&a, 1), OD_OK);
    define_items(&a);
    inst_close(&a);
    ck_assert_int_eq(inst_open(&a, 0), OD_OK);
    define_items(&a);
    inst_close(&a);
}
END_TEST

START_TEST(test_undeclared_table_refused_without_provisioning)
{
    inst a;
    ck_assert_int_eq(inst_open(&a, 1), OD_OK);
    inst_close(&a);
    ck_assert_int_eq(inst_open(&a, 0), OD_OK);
    mock_log_reset();
    od_table_def items = {sizeof items, "items", ITEM_INDEXES, 2};
    ck_assert_int_eq(S->define_table(a.self, &items), OD_ERR_UNAVAILABLE);
    ck_assert(mock_log_contains("orderd --provision"));
    inst_close(&a);
}
END_TEST

START_TEST(test_instances_share_data)
{
    inst a, b;
    od_doc d = {0};
    uint64_t v = 0;
    int64_t value = 0;
    int32_t applied = -1;
    ck_assert_int_eq(inst_open(&a, 1), OD_OK);
    define_items(&a);
    ck_assert_int_eq(inst_open(&b, 0), OD_OK);
    define_items(&b);
    ck_assert_int_eq(put_item(&a, "k1", "x@example.com", "open"), OD_OK);
    /* b sees a's document, its unique value and its version. */
    ck_assert_int_eq(S->lookup(b.self, "items", "email", "x@example.com", &d), OD_OK);
    ck_assert_str_eq(d.key, "k1");
    ck_assert_uint_eq(d.version, 1);
    od_doc_clear(H, &d);
    ck_assert_int_eq(put_item(&b, "k2", "x@example.com", "open"), OD_ERR_EXISTS);
    ck_assert_int_eq(S->put(b.self, "items", "k1", "{\"b\":1}", 7, NULL, 0, OD_PUT_IF_VERSION, 1,
                            &v),
                     OD_OK);
    ck_assert_uint_eq(v, 2);
    ck_assert_int_eq(S->get(a.self, "items", "k1", &d), OD_OK);
    ck_assert_str_eq(d.body, "{\"b\":1}");
    ck_assert_uint_eq(d.version, 2);
    od_doc_clear(H, &d);
    /* The email was dropped by b's put: a can take it for another key. */
    ck_assert_int_eq(put_item(&a, "k2", "x@example.com", "open"), OD_OK);
    /* An op token recorded by one instance holds for the other. */
    ck_assert_int_eq(S->counter_set(a.self, "stock", "p1", 10), OD_OK);
    ck_assert_int_eq(S->counter_add(a.self, "stock", "p1", -3, 0, "op-1", &value, &applied),
                     OD_OK);
    ck_assert_int_eq(applied, 1);
    ck_assert_int_eq(value, 7);
    ck_assert_int_eq(S->counter_add(b.self, "stock", "p1", -3, 0, "op-1", &value, &applied),
                     OD_OK);
    ck_assert_int_eq(applied, 0);
    ck_assert_int_eq(value, 7);
    inst_close(&b);
    inst_close(&a);
}
END_TEST

START_TEST(test_table_layout)
{
    inst a;
    char name[128];
    ck_assert_int_eq(inst_open(&a, 1), OD_OK);
    define_items(&a);
    ck_assert_int_eq(put_item(&a, "k1", "x@example.com", "open"), OD_OK);
    ck_assert_int_eq(S->counter_set(a.self, "stock", "p1", 5), OD_OK);
    /* GSIs for scan and the non-unique index; the unique one uses claims. */
    snprintf(name, sizeof name, "%sitems", PREFIX);
    json_object *t = aws("DescribeTable", name, NULL);
    ck_assert(has_gsi(t, "gsi_all"));
    ck_assert(has_gsi(t, "gsi_status"));
    ck_assert(!has_gsi(t, "gsi_email"));
    json_object_put(t);
    /* The document item. */
    json_object *item = aws("GetItem", name, "k1");
    ck_assert_str_eq(path_str(item, "Item", "body", "S"), "{}");
    ck_assert_str_eq(path_str(item, "Item", "ver", "N"), "1");
    ck_assert_str_eq(path_str(item, "Item", "sc", "S"), "1");
    ck_assert_str_eq(path_str(item, "Item", "ix_status", "S"), "open");
    ck_assert_str_eq(path_str(item, "Item", "ix_email", "S"), "x@example.com");
    json_object_put(item);
    /* The unique claim and the counter. */
    snprintf(name, sizeof name, "%suniques", PREFIX);
    item = aws("GetItem", name, "items#email#x@example.com");
    ck_assert_str_eq(path_str(item, "Item", "owner", "S"), "k1");
    json_object_put(item);
    snprintf(name, sizeof name, "%scounters", PREFIX);
    item = aws("GetItem", name, "stock#p1");
    ck_assert_str_eq(path_str(item, "Item", "v", "N"), "5");
    json_object_put(item);
    /* Op tokens expire through TTL on "exp". */
    snprintf(name, sizeof name, "%stokens", PREFIX);
    json_object *ttl = aws("DescribeTimeToLive", name, NULL);
    ck_assert_str_eq(path_str(ttl, "TimeToLiveDescription", "TimeToLiveStatus", NULL), "ENABLED");
    ck_assert_str_eq(path_str(ttl, "TimeToLiveDescription", "AttributeName", NULL), "exp");
    json_object_put(ttl);
    inst_close(&a);
}
END_TEST

START_TEST(test_cursor_bound_to_table_and_index)
{
    inst a;
    od_page p = {0};
    ck_assert_int_eq(inst_open(&a, 1), OD_OK);
    define_items(&a);
    od_table_def other = {sizeof other, "other", ITEM_INDEXES, 2};
    ck_assert_int_eq(S->define_table(a.self, &other), OD_OK);
    ck_assert_int_eq(put_item(&a, "a", "a@x", "open"), OD_OK);
    ck_assert_int_eq(put_item(&a, "b", "b@x", "open"), OD_OK);
    ck_assert_int_eq(S->scan(a.self, "items", NULL, 1, 0, &p), OD_OK);
    ck_assert_ptr_nonnull(p.next);
    char *scan_cursor = strdup(p.next);
    od_page_clear(H, &p);
    ck_assert_int_eq(S->query(a.self, "items", "status", "open", NULL, 1, 0, &p), OD_OK);
    ck_assert_ptr_nonnull(p.next);
    char *query_cursor = strdup(p.next);
    od_page_clear(H, &p);
    /* Each cursor works where it was made... */
    ck_assert_int_eq(S->scan(a.self, "items", scan_cursor, 10, 0, &p), OD_OK);
    ck_assert_uint_eq(p.count, 1);
    ck_assert_str_eq(p.items[0].key, "b");
    od_page_clear(H, &p);
    ck_assert_int_eq(S->query(a.self, "items", "status", "open", query_cursor, 10, 0, &p), OD_OK);
    ck_assert_uint_eq(p.count, 1);
    od_page_clear(H, &p);
    /* ...and nowhere else. */
    ck_assert_int_eq(S->scan(a.self, "other", scan_cursor, 10, 0, &p), OD_ERR_INVALID);
    ck_assert_int_eq(S->scan(a.self, "items", query_cursor, 10, 0, &p), OD_ERR_INVALID);
    ck_assert_int_eq(S->query(a.self, "items", "status", "open", scan_cursor, 10, 0, &p),
                     OD_ERR_INVALID);
    ck_assert_int_eq(S->query(a.self, "other", "status", "open", query_cursor, 10, 0, &p),
                     OD_ERR_INVALID);
    free(scan_cursor);
    free(query_cursor);
    inst_close(&a);
}
END_TEST

START_TEST(test_changed_definition_needs_new_gsi)
{
    inst a, b;
    ck_assert_int_eq(inst_open(&a, 1), OD_OK);
    od_table_def plain = {sizeof plain, "t", NULL, 0};
    ck_assert_int_eq(S->define_table(a.self, &plain), OD_OK);
    /* Another instance (newer code) declares a non-unique index on t: the
     * table exists without its GSI, which must be added by the operator. */
    ck_assert_int_eq(inst_open(&b, 1), OD_OK);
    od_index_def idx[] = {{"state", 0}};
    od_table_def indexed = {sizeof indexed, "t", idx, 1};
    ck_assert_int_eq(S->define_table(b.self, &indexed), OD_ERR_INVALID);
    ck_assert(mock_log_contains("has no GSI \"gsi_state\""));
    inst_close(&b);
    inst_close(&a);
}
END_TEST

START_TEST(test_limits)
{
    inst a;
    int64_t v = 0;
    ck_assert_int_eq(inst_open(&a, 1), OD_OK);
    define_items(&a);
    /* A body DynamoDB cannot hold in one item. */
    size_t big = 500 * 1024;
    char *body = malloc(big);
    ck_assert_ptr_nonnull(body);
    memset(body, ' ', big);
    body[0] = '{';
    body[big - 1] = '}';
    ck_assert_int_eq(S->put(a.self, "items", "big", body, big, NULL, 0, OD_PUT_UPSERT, 0, NULL),
                     OD_ERR_TOO_LARGE);
    free(body);
    /* Strings in DynamoDB are UTF-8: other bytes are refused, not mangled. */
    od_index_value bad = {"status", "\xff\xfe"};
    ck_assert_int_eq(S->put(a.self, "items", "k", "{}", 2, &bad, 1, OD_PUT_UPSERT, 0, NULL),
                     OD_ERR_INVALID);
    ck_assert_int_eq(S->put(a.self, "items", "k", "\"\xc3\"", 3, NULL, 0, OD_PUT_UPSERT, 0, NULL),
                     OD_ERR_INVALID);
    ck_assert_int_eq(S->put(a.self, "items", "k", "\"\xc3\xa9\"", 4, NULL, 0, OD_PUT_UPSERT, 0,
                            NULL),
                     OD_OK);
    /* Counters stay 64-bit: an overflow is refused and changes nothing. */
    ck_assert_int_eq(S->counter_set(a.self, "c", "max", INT64_MAX), OD_OK);
    ck_assert_int_eq(S->counter_add(a.self, "c", "max", 1, 0, NULL, &v, NULL), OD_ERR_INVALID);
    ck_assert_int_eq(S->counter_add(a.self, "c", "max", -1, INT64_MIN, NULL, &v, NULL), OD_OK);
    ck_assert_int_eq(v, INT64_MAX - 1);
    ck_assert_int_eq(S->counter_set(a.self, "c", "min", INT64_MIN), OD_OK);
    ck_assert_int_eq(S->counter_add(a.self, "c", "min", -1, INT64_MIN, "t1", &v, NULL),
                     OD_ERR_INVALID);
    /* No value could pass this floor. */
    ck_assert_int_eq(S->counter_set(a.self, "c", "x", 5), OD_OK);
    ck_assert_int_eq(S->counter_add(a.self, "c", "x", INT64_MIN, 0, NULL, &v, NULL),
                     OD_ERR_CONFLICT);
    ck_assert_int_eq(v, 5);
    ck_assert_int_eq(S->counter_get(a.self, "c", "x", &v), OD_OK);
    ck_assert_int_eq(v, 5);
    inst_close(&a);
}
END_TEST

/* ---- put_batch ---- */

static od_put mkput(const char *table, const char *key, uint32_t cond, uint64_t expected,
                    const od_index_value *idx, size_t n_idx)
{
    od_put p = {sizeof p, cond, table, key, "{}", 2, idx, n_idx, expected};
    return p;
}

/* put_batch without a message must return want and blame put `failed`
 * (OD_BATCH_NONE: none); `what` names the call in a failure. */
static void batch_expect(const inst *i, const char *what, const od_put *const *puts, size_t n,
                         uint64_t *versions, od_status want, size_t failed)
{
    size_t got = failed + 1; /* put_batch must set it */
    od_status s = S->put_batch(i->self, puts, n, NULL, versions, &got);
    ck_assert_msg(s == want, "%s: put_batch returned %d, want %d", what, s, want);
    ck_assert_msg(got == failed, "%s: failed = %zu, want %zu", what, got, failed);
}

static void batch2(const inst *i, od_put a, od_put b, uint64_t *versions, od_status want,
                   size_t failed)
{
    char what[160];
    const od_put *puts[] = {&a, &b};
    snprintf(what, sizeof what, "%s/%s + %s/%s", a.table, a.key, b.table, b.key);
    batch_expect(i, what, puts, 2, versions, want, failed);
}

/* The key owning a unique value, "" when none. */
static const char *owner_of(const inst *i, const char *email)
{
    static char key[64];
    od_doc d = {0};
    key[0] = '\0';
    if (S->lookup(i->self, "items", "email", email, &d) == OD_OK)
        snprintf(key, sizeof key, "%s", d.key);
    od_doc_clear(H, &d);
    return key;
}

static int exists(const inst *i, const char *table, const char *key)
{
    od_doc d = {0};
    od_status s = S->get(i->self, table, key, &d);
    od_doc_clear(H, &d);
    ck_assert(s == OD_OK || s == OD_ERR_NOT_FOUND);
    return s == OD_OK;
}

START_TEST(test_put_batch_local)
{
    inst a;
    uint64_t v[OD_BATCH_MAX] = {0};
    size_t failed = 0;
    ck_assert_int_eq(inst_open(&a, 1), OD_OK);
    define_items(&a);
    od_table_def idem = {sizeof idem, "idem", NULL, 0};
    ck_assert_int_eq(S->define_table(a.self, &idem), OD_OK);
    const od_index_value ea[] = {{"email", "a@x"}}, ea2[] = {{"email", "a2@x"}},
                         ez[] = {{"email", "z@x"}};
    /* An idempotency record and a document with a unique value, together. */
    batch2(&a, mkput("idem", "k1", OD_PUT_IF_ABSENT, 0, NULL, 0),
           mkput("items", "a", OD_PUT_IF_ABSENT, 0, ea, 1), v, OD_OK, OD_BATCH_NONE);
    ck_assert_uint_eq(v[0], 1);
    ck_assert_uint_eq(v[1], 1);
    ck_assert_str_eq(owner_of(&a, "a@x"), "a");
    /* Refused in DynamoDB: the caller's condition, a value held outside. */
    batch2(&a, mkput("idem", "k2", OD_PUT_IF_ABSENT, 0, NULL, 0),
           mkput("idem", "k1", OD_PUT_IF_ABSENT, 0, NULL, 0), v, OD_ERR_EXISTS, 1);
    batch2(&a, mkput("idem", "k2", OD_PUT_IF_ABSENT, 0, NULL, 0),
           mkput("idem", "k1", OD_PUT_IF_VERSION, 5, NULL, 0), NULL, OD_ERR_CONFLICT, 1);
    batch2(&a, mkput("idem", "k2", OD_PUT_IF_ABSENT, 0, NULL, 0),
           mkput("idem", "nope", OD_PUT_IF_VERSION, 1, NULL, 0), NULL, OD_ERR_NOT_FOUND, 1);
    batch2(&a, mkput("idem", "k2", OD_PUT_IF_ABSENT, 0, NULL, 0),
           mkput("items", "b", OD_PUT_UPSERT, 0, ea, 1), NULL, OD_ERR_EXISTS, 1);
    ck_assert(!exists(&a, "idem", "k2"));
    ck_assert(!exists(&a, "items", "b"));
    /* Refused by what was read (a exists): the puts before it still go to
     * DynamoDB, in a transaction that commits nothing, so the first
     * failing put is the one reported. */
    batch2(&a, mkput("idem", "k1", OD_PUT_IF_ABSENT, 0, NULL, 0),
           mkput("items", "a", OD_PUT_IF_ABSENT, 0, ea, 1), NULL, OD_ERR_EXISTS, 0);
    batch2(&a, mkput("idem", "k2", OD_PUT_IF_ABSENT, 0, NULL, 0),
           mkput("items", "a", OD_PUT_IF_ABSENT, 0, ea, 1), NULL, OD_ERR_EXISTS, 1);
    ck_assert(!exists(&a, "idem", "k2"));
    /* A value moves from a to b within a batch, in that order... */
    batch2(&a, mkput("items", "a", OD_PUT_IF_VERSION, 1, ea2, 1),
           mkput("items", "b", OD_PUT_IF_ABSENT, 0, ea, 1), v, OD_OK, OD_BATCH_NONE);
    ck_assert_uint_eq(v[0], 2);
    ck_assert_uint_eq(v[1], 1);
    ck_assert_str_eq(owner_of(&a, "a@x"), "b");
    ck_assert_str_eq(owner_of(&a, "a2@x"), "a");
    /* ...but not the other way round: put c runs while a still holds it. */
    batch2(&a, mkput("items", "c", OD_PUT_UPSERT, 0, ea2, 1),
           mkput("items", "a", OD_PUT_UPSERT, 0, NULL, 0), NULL, OD_ERR_EXISTS, 0);
    /* Two puts taking one new value: the second fails. */
    batch2(&a, mkput("items", "d", OD_PUT_UPSERT, 0, ez, 1),
           mkput("items", "e", OD_PUT_UPSERT, 0, ez, 1), NULL, OD_ERR_EXISTS, 1);
    ck_assert_str_eq(owner_of(&a, "z@x"), "");
    ck_assert_str_eq(owner_of(&a, "a2@x"), "a");
    /* Upserts report the versions they wrote. */
    batch2(&a, mkput("items", "a", OD_PUT_UPSERT, 0, ea2, 1),
           mkput("idem", "k1", OD_PUT_UPSERT, 0, NULL, 0), v, OD_OK, OD_BATCH_NONE);
    ck_assert_uint_eq(v[0], 3);
    ck_assert_uint_eq(v[1], 2);
    /* A message cannot join: nothing written. */
    od_put p = mkput("idem", "k9", OD_PUT_IF_ABSENT, 0, NULL, 0);
    const od_put *one[] = {&p};
    od_outbox msg = {sizeof msg, OD_LANE_NORMAL, NULL, "m", 1, 0};
    ck_assert_int_eq(S->put_batch(a.self, one, 1, &msg, NULL, &failed), OD_ERR_UNSUPPORTED);
    ck_assert(!exists(&a, "idem", "k9"));
    /* A full batch of claimed writes: 16 documents, 32 claims and releases. */
    od_put many[OD_BATCH_MAX];
    const od_put *ptrs[OD_BATCH_MAX];
    char keys[OD_BATCH_MAX][16], emails[OD_BATCH_MAX][16];
    od_index_value idx[OD_BATCH_MAX][1];
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < OD_BATCH_MAX; i++) {
            snprintf(keys[i], sizeof keys[i], "m%zu", i);
            snprintf(emails[i], sizeof emails[i], "m%zu.%d@x", i, round);
            idx[i][0] = (od_index_value){"email", emails[i]};
            many[i] = mkput("items", keys[i], OD_PUT_UPSERT, 0, idx[i], 1);
            ptrs[i] = &many[i];
        }
        batch_expect(&a, "a full batch", ptrs, OD_BATCH_MAX, v, OD_OK, OD_BATCH_NONE);
        ck_assert_uint_eq(v[15], (uint64_t)round + 1);
    }
    ck_assert_str_eq(owner_of(&a, "m15.1@x"), "m15");
    ck_assert_str_eq(owner_of(&a, "m15.0@x"), "");
    inst_close(&a);
}
END_TEST

START_TEST(test_unreachable_endpoint_is_bounded)
{
    /* Nothing listens on port 9 of loopback: refused at once, retried
     * once, then UNAVAILABLE well within timeout x attempts. */
    od_module *m = module(PREFIX, 1);
    void *self = NULL;
    mock_config_set_string(m, "endpoint", "http://127.0.0.1:9");
    mock_config_set_int(m, "retry_base_ms", 10);
    mock_config_set_int(m, "timeout_ms", 1000);
    mock_config_set_int(m, "connect_timeout_ms", 500);
    int64_t start = H->monotonic_ms();
    ck_assert_int_eq(DESC->init(H, m, &self), OD_ERR_UNAVAILABLE);
    ck_assert_int_lt(H->monotonic_ms() - start, 2 * (1000 + 5000));
    mock_module_free(m);
}
END_TEST

START_TEST(test_bad_prefix)
{
    od_module *m = module("no spaces!", 1);
    void *self = NULL;
    ck_assert_int_eq(DESC->init(H, m, &self), OD_ERR_CONFIG);
    ck_assert(mock_log_contains("storage.table_prefix"));
    mock_module_free(m);
}
END_TEST

/* ---- a scripted DynamoDB stand-in on loopback (tests/aws/loopback_stub.h)
 * answer() picks the reply for the n-th request of an operation. */

typedef const char *(*stub_answer)(const char *op, unsigned nth, int *status);

typedef struct stub {
    lstub ls;
    stub_answer answer;
} stub;

static const char DESCRIBE_OK[] =
    "{\"Table\":{\"TableStatus\":\"ACTIVE\",\"GlobalSecondaryIndexes\":"
    "[{\"IndexName\":\"gsi_all\",\"IndexStatus\":\"ACTIVE\"}]}}";

/* Whatever init and define_table ask: every table exists, TTL is on. */
static const char *stub_schema(const char *op, int *status)
{
    *status = 200;
    if (strcmp(op, "DescribeTable") == 0)
        return DESCRIBE_OK;
    if (strcmp(op, "DescribeTimeToLive") == 0)
        return "{\"TimeToLiveDescription\":{\"TimeToLiveStatus\":\"ENABLED\"}}";
    return NULL;
}

/* The operation a request names, "" when it is not a DynamoDB one. */
static void stub_op(const lstub_req *r, char *op, size_t cap)
{
    static const char PFX[] = "DynamoDB_20120810.";
    char target[128];
    op[0] = '\0';
    if (lstub_header(r, "X-Amz-Target", target, sizeof target) != 0 ||
        strncmp(target, PFX, sizeof PFX - 1) != 0)
        return;
    size_t n = strlen(target + sizeof PFX - 1);
    if (n < cap) /* a longer name is no operation the stub answers */
        memcpy(op, target + sizeof PFX - 1, n + 1);
}

/* How many of the first `end` requests name op. */
static unsigned stub_count_in(stub *st, const char *op, size_t end)
{
    char o[48];
    unsigned n = 0;
    for (size_t i = 0; i < end; i++) {
        const lstub_req *r = lstub_request(&st->ls, i);
        if (r) {
            stub_op(r, o, sizeof o);
            n += strcmp(o, op) == 0;
        }
    }
    return n;
}

static unsigned stub_count(stub *st, const char *op)
{
    return stub_count_in(st, op, lstub_count(&st->ls));
}

/* The body of the nth request of an operation. */
static const char *stub_body(stub *st, const char *op, unsigned nth)
{
    char o[48];
    for (size_t i = 0, end = lstub_count(&st->ls); i < end; i++) {
        const lstub_req *r = lstub_request(&st->ls, i);
        ck_assert_ptr_nonnull(r);
        stub_op(r, o, sizeof o);
        if (strcmp(o, op) == 0 && nth-- == 0)
            return r->body;
    }
    ck_abort_msg("no %s request", op);
    return NULL;
}

static const char *stub_dispatch(void *arg, const lstub_req *req, size_t n, int *status)
{
    stub *st = arg;
    char op[48];
    stub_op(req, op, sizeof op);
    const char *reply = stub_schema(op, status);
    return reply ? reply : st->answer(op, stub_count_in(st, op, n), status);
}

/* The module on a fresh stub, with table "t" (no indexes) defined. */
static void stub_open(stub *st, stub_answer answer, inst *i)
{
    char endpoint[64];
    st->answer = answer;
    lstub_start(&st->ls, stub_dispatch, st);
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%u", st->ls.port);
    i->mod = module(PREFIX, 0);
    mock_config_set_string(i->mod, "endpoint", endpoint);
    mock_config_set_int(i->mod, "retry_base_ms", 1);
    ck_assert_int_eq(DESC->init(H, i->mod, &i->self), OD_OK);
    od_table_def t = {sizeof t, "t", NULL, 0};
    ck_assert_int_eq(S->define_table(i->self, &t), OD_OK);
}

/* Destroy the module, then stop the stub; its record stays readable until
 * lstub_free. */
static void stub_close(stub *st, inst *i)
{
    inst_close(i);
    lstub_stop(&st->ls);
}

static const char CONFLICT[] =
    "{\"__type\":\"com.amazonaws.dynamodb.v20120810#TransactionCanceledException\","
    "\"Message\":\"Transaction cancelled [TransactionConflict, None]\","
    "\"CancellationReasons\":[{\"Code\":\"TransactionConflict\"},{\"Code\":\"None\"}]}";

static const char *conflict_twice(const char *op, unsigned nth, int *status)
{
    if (strcmp(op, "TransactWriteItems") == 0 && nth < 2) {
        *status = 400;
        return CONFLICT;
    }
    return strcmp(op, "GetItem") == 0 ? "{\"Item\":{\"v\":{\"N\":\"7\"}}}" : "{}";
}

START_TEST(test_transaction_conflict_retried)
{
    stub st;
    inst a;
    int64_t v = 0;
    int32_t applied = -1;
    stub_open(&st, conflict_twice, &a);
    ck_assert_int_eq(S->counter_add(a.self, "stock", "p1", -3, 0, "op-1", &v, &applied), OD_OK);
    ck_assert_int_eq(applied, 1);
    ck_assert_int_eq(v, 7);
    stub_close(&st, &a);
    /* Three submissions, each with its own ClientRequestToken. */
    const char *tokens[3];
    ck_assert_uint_eq(stub_count(&st, "TransactWriteItems"), 3);
    for (unsigned i = 0; i < 3; i++) {
        tokens[i] = strstr(stub_body(&st, "TransactWriteItems", i), "\"ClientRequestToken\":\"");
        ck_assert_ptr_nonnull(tokens[i]);
    }
    ck_assert(strncmp(tokens[0], tokens[1], 60) != 0);
    ck_assert(strncmp(tokens[1], tokens[2], 60) != 0);
    lstub_free(&st.ls);
}
END_TEST

static const char *always_conflict(const char *op, unsigned nth, int *status)
{
    *status = 400;
    return strcmp(op, "TransactWriteItems") == 0 ? CONFLICT : "{}";
}

START_TEST(test_endless_conflict_gives_up)
{
    stub st;
    inst a;
    stub_open(&st, always_conflict, &a);
    ck_assert_int_eq(S->counter_add(a.self, "stock", "p1", -1, 0, "op-1", NULL, NULL),
                     OD_ERR_UNAVAILABLE);
    stub_close(&st, &a);
    ck_assert_uint_eq(stub_count(&st, "TransactWriteItems"), 12);
    lstub_free(&st.ls);
}
END_TEST

/* Two pages with nothing in them (Limit counts items read, not returned),
 * then the item: one scan page, no silent truncation. */
static const char *empty_pages(const char *op, unsigned nth, int *status)
{
    if (strcmp(op, "Query") != 0)
        return "{}";
    if (nth < 2)
        return nth == 0 ? "{\"Items\":[],\"LastEvaluatedKey\":{\"pk\":{\"S\":\"a\"},"
                          "\"sc\":{\"S\":\"1\"}}}"
                        : "{\"Items\":[],\"LastEvaluatedKey\":{\"pk\":{\"S\":\"b\"},"
                          "\"sc\":{\"S\":\"1\"}}}";
    return "{\"Items\":[{\"pk\":{\"S\":\"c\"},\"body\":{\"S\":\"{}\"},"
           "\"ver\":{\"N\":\"3\"}}]}";
}

START_TEST(test_empty_pages_followed)
{
    stub st;
    inst a;
    od_page p = {0};
    stub_open(&st, empty_pages, &a);
    ck_assert_int_eq(S->scan(a.self, "t", NULL, 5, 0, &p), OD_OK);
    ck_assert_uint_eq(p.count, 1);
    ck_assert_str_eq(p.items[0].key, "c");
    ck_assert_uint_eq(p.items[0].version, 3);
    ck_assert_ptr_null(p.next);
    od_page_clear(H, &p);
    stub_close(&st, &a);
    ck_assert_uint_eq(stub_count(&st, "Query"), 3);
    /* Each follow-up starts after the previous LastEvaluatedKey. */
    for (unsigned q = 0; q < 3; q++) {
        const char *esk = strstr(stub_body(&st, "Query", q), "\"ExclusiveStartKey\"");
        if (q == 0)
            ck_assert_ptr_null(esk);
        else
            ck_assert(esk && strstr(esk, q == 1 ? "\"a\"" : "\"b\""));
    }
    lstub_free(&st.ls);
}
END_TEST

/* A broken service: 5xx on every data call, or 200 with a body that is
 * not JSON. Never a crash, never a 4xx-style status. */
static const char *broken(const char *op, unsigned nth, int *status)
{
    if (strcmp(op, "PutItem") == 0)
        return "not json";
    *status = 500;
    return "{\"__type\":\"InternalServerError\"}";
}

START_TEST(test_broken_service_unavailable)
{
    stub st;
    inst a;
    od_doc d = {0};
    stub_open(&st, broken, &a);
    ck_assert_int_eq(S->ping(a.self), OD_ERR_UNAVAILABLE);
    ck_assert_int_eq(S->get(a.self, "t", "k", &d), OD_ERR_UNAVAILABLE);
    ck_assert_int_eq(S->counter_set(a.self, "stock", "p1", 1), OD_ERR_UNAVAILABLE);
    stub_close(&st, &a);
    ck_assert_uint_eq(stub_count(&st, "GetItem"), 4); /* ping and get, each retried once */
    lstub_free(&st.ls);
}
END_TEST

/* ---- put_batch against the stub: the request built, the reasons read ---- */

/* The nth request body of an operation, parsed (caller puts it). */
static json_object *stub_request(stub *st, const char *op, unsigned nth)
{
    return json_tokener_parse(stub_body(st, op, nth));
}

static const char *plain(json_object *o)
{
    return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
}

/* TransactItems[i].<kind>.<member> of a request, as a string. */
static const char *txn_str(json_object *req, size_t i, const char *kind, const char *member)
{
    json_object *items = NULL, *v = NULL;
    json_object_object_get_ex(req, "TransactItems", &items);
    json_object *item = json_object_array_get_idx(items, i);
    if (!json_object_object_get_ex(item, kind, &v) || !json_object_object_get_ex(v, member, &v))
        return NULL;
    return json_object_get_string(v);
}

/* TransactItems[i] is a `kind` with condition cond (NULL: none). */
static void txn_cond(json_object *req, size_t i, const char *kind, const char *cond)
{
    const char *got = txn_str(req, i, kind, "ConditionExpression");
    ck_assert_msg(cond ? got && strcmp(got, cond) == 0 : got == NULL,
                  "TransactItems[%zu].%s: condition %s, want %s", i, kind, got ? got : "none",
                  cond ? cond : "none");
}

static size_t txn_len(json_object *req)
{
    json_object *items = NULL;
    json_object_object_get_ex(req, "TransactItems", &items);
    return json_object_array_length(items);
}

static void define_u(const inst *i)
{
    static const od_index_def email[] = {{"email", 1}};
    od_table_def u = {sizeof u, "u", email, 1};
    ck_assert_int_eq(S->define_table(i->self, &u), OD_OK);
}

#define CANCELLED(reasons)                                                                    \
    "{\"__type\":\"com.amazonaws.dynamodb.v20120810#TransactionCanceledException\","          \
    "\"Message\":\"Transaction cancelled\",\"CancellationReasons\":[" reasons "]}"
#define R_NONE "{\"Code\":\"None\"}"
#define R_FAILED "{\"Code\":\"ConditionalCheckFailed\",\"Message\":\"failed\"}"
#define R_FAILED_OLD "{\"Code\":\"ConditionalCheckFailed\",\"Item\":{\"pk\":{\"S\":\"b\"}," \
                     "\"ver\":{\"N\":\"4\"}}}"

static const char *batch_ok(const char *op, unsigned nth, int *status)
{
    (void)op, (void)nth, (void)status;
    return "{}";
}

START_TEST(test_put_batch_request)
{
    stub st;
    inst a;
    stub_open(&st, batch_ok, &a);
    od_put p[] = {
        {sizeof(od_put), OD_PUT_IF_ABSENT, "t", "k1", "{\"a\":1}", 7, NULL, 0, 0},
        {sizeof(od_put), OD_PUT_IF_VERSION, "t", "k2", "{}", 2, NULL, 0, 3},
        {sizeof(od_put), OD_PUT_UPSERT, "t", "k3", "{}", 2, NULL, 0, 0},
    };
    const od_put *puts[] = {&p[0], &p[1], &p[2]};
    batch_expect(&a, "three puts", puts, 3, NULL, OD_OK, OD_BATCH_NONE);
    stub_close(&st, &a);
    /* The order and its idempotency record: one call, nothing read. */
    ck_assert_uint_eq(stub_count(&st, "GetItem"), 0);
    ck_assert_uint_eq(stub_count(&st, "TransactWriteItems"), 1);
    json_object *req = stub_request(&st, "TransactWriteItems", 0);
    ck_assert_uint_eq(txn_len(req), 3);
    ck_assert_ptr_nonnull(strstr(plain(req), "\"ClientRequestToken\""));
    char table[96];
    snprintf(table, sizeof table, "%st", PREFIX);
    ck_assert_str_eq(txn_str(req, 0, "Update", "TableName"), table);
    txn_cond(req, 0, "Update", "attribute_not_exists(#pk)");
    txn_cond(req, 1, "Update", "#ver = :e");
    ck_assert_str_eq(txn_str(req, 1, "Update", "ReturnValuesOnConditionCheckFailure"), "ALL_OLD");
    ck_assert_ptr_nonnull(strstr(plain(req), "\":e\":{\"N\":\"3\"}"));
    txn_cond(req, 2, "Update", NULL);
    ck_assert_ptr_null(txn_str(req, 0, "Update", "ReturnValuesOnConditionCheckFailure"));
    json_object_put(req);
    lstub_free(&st.ls);
}
END_TEST

/* One put_batch of two puts and what it must return. */
typedef struct batch_step {
    const od_put *const *puts;
    uint64_t *versions;
    od_status want;
    size_t failed;
} batch_step;

/* The steps in order, on a fresh stub with tables t and u; the stub is
 * closed after them, its record readable until lstub_free. */
static void stub_batches(stub *st, stub_answer answer, const batch_step *steps, size_t n)
{
    inst a;
    char what[32];
    stub_open(st, answer, &a);
    define_u(&a);
    for (size_t k = 0; k < n; k++) {
        snprintf(what, sizeof what, "step %zu", k);
        batch_expect(&a, what, steps[k].puts, 2, steps[k].versions, steps[k].want,
                     steps[k].failed);
    }
    stub_close(st, &a);
}

/* Answers to the TransactWriteItems of test_put_batch_reasons, in order. */
static const char *const REASONS[] = {
    CANCELLED(R_NONE "," R_FAILED_OLD),      /* IF_VERSION, the document exists: conflict */
    CANCELLED(R_NONE "," R_FAILED),          /* IF_VERSION, no old item: not found */
    CANCELLED(R_FAILED "," R_FAILED_OLD),    /* the first failing put is reported */
    CANCELLED(R_NONE "," R_NONE "," R_FAILED), /* put 1's unique claim */
    CANCELLED("{\"Code\":\"ValidationError\"}," R_NONE), /* refused by DynamoDB */
    CANCELLED(R_NONE "," R_FAILED "," R_NONE), /* put 1's pinned document moved */
    "{}",                                    /* ...and the second round commits */
};

static const char *batch_reasons(const char *op, unsigned nth, int *status)
{
    if (strcmp(op, "GetItem") == 0)
        return "{}"; /* u's documents do not exist yet */
    if (nth >= sizeof REASONS / sizeof REASONS[0])
        return "{}";
    *status = REASONS[nth][0] == '{' && REASONS[nth][1] == '}' ? 200 : 400;
    return REASONS[nth];
}

START_TEST(test_put_batch_reasons)
{
    stub st;
    uint64_t v[2] = {0};
    const od_index_value e[] = {{"email", "e@x"}};
    od_put p[] = {
        {sizeof(od_put), OD_PUT_IF_ABSENT, "t", "a", "{}", 2, NULL, 0, 0},
        {sizeof(od_put), OD_PUT_IF_VERSION, "t", "b", "{}", 2, NULL, 0, 3},
        {sizeof(od_put), OD_PUT_UPSERT, "u", "x", "{}", 2, e, 1, 0},
    };
    const od_put *versioned[] = {&p[0], &p[1]}, *claimed[] = {&p[0], &p[2]};
    const batch_step steps[] = {
        {versioned, NULL, OD_ERR_CONFLICT, 1},
        {versioned, NULL, OD_ERR_NOT_FOUND, 1},
        {versioned, NULL, OD_ERR_EXISTS, 0},
        {claimed, NULL, OD_ERR_EXISTS, 1},
        {versioned, NULL, OD_ERR_INVALID, OD_BATCH_NONE},
        {claimed, v, OD_OK, OD_BATCH_NONE},
    };
    stub_batches(&st, batch_reasons, steps, sizeof steps / sizeof steps[0]);
    ck_assert_uint_eq(v[0], 1);
    ck_assert_uint_eq(v[1], 1);
    ck_assert_uint_eq(stub_count(&st, "TransactWriteItems"), 7);
    /* u/x is read before each claimed batch, twice for the retried one. */
    ck_assert_uint_eq(stub_count(&st, "GetItem"), 3);
    /* The claimed write: t/a under its own condition, u/x pinned to "absent"
     * (what was read), the claim of e@x for x. */
    json_object *req = stub_request(&st, "TransactWriteItems", 3);
    ck_assert_uint_eq(txn_len(req), 3);
    txn_cond(req, 1, "Update", "attribute_not_exists(#pk)");
    txn_cond(req, 2, "Put", "attribute_not_exists(#pk) OR #o = :k");
    ck_assert_ptr_nonnull(strstr(plain(req), "\"u#email#e@x\""));
    json_object_put(req);
    lstub_free(&st.ls);
}
END_TEST

/* u/x exists with version 2 and e@x: an IF_ABSENT put on it is refused by
 * the read; t/a before it can only fail in DynamoDB. */
static const char *batch_probe(const char *op, unsigned nth, int *status)
{
    if (strcmp(op, "GetItem") == 0)
        return "{\"Item\":{\"pk\":{\"S\":\"x\"},\"ver\":{\"N\":\"2\"},"
               "\"ix_email\":{\"S\":\"e@x\"}}}";
    *status = 400;
    return nth == 0 ? CANCELLED(R_NONE "," R_FAILED) : CANCELLED(R_FAILED "," R_FAILED);
}

START_TEST(test_put_batch_refused_by_read)
{
    stub st;
    const od_index_value e[] = {{"email", "e@x"}};
    od_put p[] = {
        {sizeof(od_put), OD_PUT_IF_ABSENT, "t", "a", "{}", 2, NULL, 0, 0},
        {sizeof(od_put), OD_PUT_IF_ABSENT, "u", "x", "{}", 2, e, 1, 0},
        {sizeof(od_put), OD_PUT_UPSERT, "t", "c", "{}", 2, NULL, 0, 0},
    };
    const od_put *probed[] = {&p[0], &p[1]}, *direct[] = {&p[2], &p[1]};
    const batch_step steps[] = {
        {probed, NULL, OD_ERR_EXISTS, 1}, /* only the refused put fails; */
        {probed, NULL, OD_ERR_EXISTS, 0}, /* then t/a fails first */
        {direct, NULL, OD_ERR_EXISTS, 1}, /* an upsert before it cannot fail: no transaction */
    };
    stub_batches(&st, batch_probe, steps, sizeof steps / sizeof steps[0]);
    ck_assert_uint_eq(stub_count(&st, "TransactWriteItems"), 2);
    /* t/a's update, then an entry no item passes in place of u/x. */
    json_object *req = stub_request(&st, "TransactWriteItems", 0);
    ck_assert_uint_eq(txn_len(req), 2);
    txn_cond(req, 0, "Update", "attribute_not_exists(#pk)");
    txn_cond(req, 1, "Update", "attribute_exists(#pk) AND attribute_not_exists(#pk)");
    json_object_put(req);
    lstub_free(&st.ls);
}
END_TEST

START_TEST(test_put_batch_refused_without_request)
{
    stub st;
    inst a;
    size_t failed = 0;
    stub_open(&st, batch_ok, &a);
    static const od_index_def many[] = {{"u1", 1}, {"u2", 1}, {"u3", 1}, {"u4", 1},
                                        {"u5", 1}, {"u6", 1}, {"u7", 1}, {"u8", 1}};
    od_table_def w = {sizeof w, "w", many, 8};
    ck_assert_int_eq(S->define_table(a.self, &w), OD_OK);
    od_put p = {sizeof(od_put), OD_PUT_UPSERT, "t", "k", "{}", 2, NULL, 0, 0};
    od_put q = p, small = p;
    q.key = "q";
    small.size = sizeof(od_put) - 1;
    const od_put *puts[OD_BATCH_MAX + 1];
    for (size_t i = 0; i <= OD_BATCH_MAX; i++)
        puts[i] = &p;
    /* A message never joins a DynamoDB transaction. */
    od_outbox msg = {sizeof msg, OD_LANE_NORMAL, NULL, "m", 1, 0};
    const od_put *pq[] = {&p, &q};
    ck_assert_int_eq(S->put_batch(a.self, pq, 2, &msg, NULL, &failed), OD_ERR_UNSUPPORTED);
    ck_assert_uint_eq(failed, OD_BATCH_NONE);
    /* Arguments as put() checks them, plus the batch's own. */
    ck_assert_int_eq(S->put_batch(a.self, puts, 2, NULL, NULL, &failed), OD_ERR_INVALID);
    ck_assert_int_eq(S->put_batch(a.self, puts, 0, NULL, NULL, &failed), OD_ERR_INVALID);
    ck_assert_int_eq(S->put_batch(a.self, puts, OD_BATCH_MAX + 1, NULL, NULL, &failed),
                     OD_ERR_INVALID);
    ck_assert_int_eq(S->put_batch(a.self, NULL, 1, NULL, NULL, &failed), OD_ERR_INVALID);
    const od_put *with_null[] = {&p, NULL}, *with_small[] = {&p, &small};
    ck_assert_int_eq(S->put_batch(a.self, with_null, 2, NULL, NULL, &failed), OD_ERR_INVALID);
    ck_assert_int_eq(S->put_batch(a.self, with_small, 2, NULL, NULL, &failed), OD_ERR_INVALID);
    od_put bad = q;
    bad.table = "missing";
    const od_put *with_bad[] = {&p, &bad};
    ck_assert_int_eq(S->put_batch(a.self, with_bad, 2, NULL, NULL, &failed), OD_ERR_INVALID);
    bad = q;
    bad.cond = 7;
    ck_assert_int_eq(S->put_batch(a.self, with_bad, 2, NULL, NULL, &failed), OD_ERR_INVALID);
    /* DynamoDB's limits: 100 items and 4 MB per transaction. Six puts on w
     * with all 8 values may need 6 x 17 entries (document, 8 claims, 8
     * releases); without values 6 x 9 fit. */
    od_put wide[6];
    const od_put *wides[6];
    char keys[6][8], vals[6][8][8];
    od_index_value wv[6][8];
    for (size_t i = 0; i < 6; i++) {
        snprintf(keys[i], sizeof keys[i], "w%zu", i);
        for (size_t k = 0; k < 8; k++) {
            snprintf(vals[i][k], sizeof vals[i][k], "%zu.%zu", i, k);
            wv[i][k] = (od_index_value){many[k].name, vals[i][k]};
        }
        wide[i] = (od_put){sizeof(od_put), OD_PUT_UPSERT, "w", keys[i], "{}", 2, wv[i], 8, 0};
        wides[i] = &wide[i];
    }
    ck_assert_int_eq(S->put_batch(a.self, wides, 6, NULL, NULL, &failed), OD_ERR_TOO_LARGE);
    size_t big = 300 * 1024;
    char *body = malloc(big);
    ck_assert_ptr_nonnull(body);
    memset(body, ' ', big);
    body[0] = '{';
    body[big - 1] = '}';
    od_put bigs[14];
    const od_put *bigp[14];
    char bkeys[14][8];
    for (size_t i = 0; i < 14; i++) {
        snprintf(bkeys[i], sizeof bkeys[i], "b%zu", i);
        bigs[i] = (od_put){sizeof(od_put), OD_PUT_UPSERT, "t", bkeys[i], body, big, NULL, 0, 0};
        bigp[i] = &bigs[i];
    }
    ck_assert_int_eq(S->put_batch(a.self, bigp, 14, NULL, NULL, &failed), OD_ERR_TOO_LARGE);
    ck_assert_uint_eq(failed, OD_BATCH_NONE);
    free(body);
    stub_close(&st, &a);
    ck_assert_uint_eq(stub_count(&st, "TransactWriteItems"), 0);
    ck_assert_uint_eq(stub_count(&st, "GetItem"), 0);
    ck_assert_uint_eq(stub_count(&st, "UpdateItem"), 0);
    lstub_free(&st.ls);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("storage_dynamodb");
    TCase *tc = tcase_create("dynamodb_local");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_missing_tables_need_provision);
    tcase_add_test(tc, test_undeclared_table_refused_without_provisioning);
    tcase_add_test(tc, test_instances_share_data);
    tcase_add_test(tc, test_table_layout);
    tcase_add_test(tc, test_cursor_bound_to_table_and_index);
    tcase_add_test(tc, test_changed_definition_needs_new_gsi);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_put_batch_local);
    suite_add_tcase(s, tc);
    TCase *stubbed = tcase_create("offline");
    tcase_add_checked_fixture(stubbed, setup, NULL);
    tcase_set_timeout(stubbed, 60);
    tcase_add_test(stubbed, test_unreachable_endpoint_is_bounded);
    tcase_add_test(stubbed, test_bad_prefix);
    tcase_add_test(stubbed, test_transaction_conflict_retried);
    tcase_add_test(stubbed, test_endless_conflict_gives_up);
    tcase_add_test(stubbed, test_empty_pages_followed);
    tcase_add_test(stubbed, test_broken_service_unavailable);
    tcase_add_test(stubbed, test_put_batch_request);
    tcase_add_test(stubbed, test_put_batch_reasons);
    tcase_add_test(stubbed, test_put_batch_refused_by_read);
    tcase_add_test(stubbed, test_put_batch_refused_without_request);
    suite_add_tcase(s, stubbed);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
