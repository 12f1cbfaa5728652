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
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

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

/* ---- a scripted DynamoDB stand-in on loopback ----
 * One thread serves one connection at a time (the module's calls come from
 * the test thread, over one keep-alive handle). answer() picks the reply
 * for the n-th request of an operation. */

#define STUB_MAX 64

typedef struct stub stub;
typedef const char *(*stub_answer)(const char *op, unsigned nth, int *status);

struct stub {
    int fd;
    int port;
    pthread_t thread;
    stub_answer answer;
    pthread_mutex_t lock; /* guards the log below */
    char ops[STUB_MAX][48];
    char *bodies[STUB_MAX];
    size_t n;
};

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

static unsigned stub_count(stub *st, const char *op)
{
    unsigned n = 0;
    for (size_t i = 0; i < st->n; i++)
        n += strcmp(st->ops[i], op) == 0;
    return n;
}

/* Read one request: the X-Amz-Target operation and the body. 0 at EOF. */
static int stub_read(int fd, char *op, size_t op_cap, char **body)
{
    static const size_t CAP = 1 << 20;
    char *buf = malloc(CAP + 1), *end = NULL;
    size_t n = 0, want = 0;
    while (buf && (!end || n < want)) {
        ssize_t r = read(fd, buf + n, CAP - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        buf[n] = '\0';
        if (!end && (end = strstr(buf, "\r\n\r\n"))) {
            char *cl = strcasestr(buf, "\r\ncontent-length:");
            want = (size_t)(end + 4 - buf) + (cl ? strtoul(cl + 17, NULL, 10) : 0);
        }
    }
    if (!buf || !end || n < want) {
        free(buf);
        return 0;
    }
    static const char TARGET[] = "\r\nx-amz-target: DynamoDB_20120810.";
    char *target = strcasestr(buf, TARGET);
    target = target ? target + strlen(TARGET) : buf + n;
    snprintf(op, op_cap, "%.*s", (int)strcspn(target, "\r\n"), target);
    *body = strdup(end + 4);
    free(buf);
    return 1;
}

static void stub_reply(int fd, int status, const char *body)
{
    char head[256];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nContent-Type: "
                     "application/x-amz-json-1.0\r\nContent-Length: %zu\r\n\r\n",
                     status, strlen(body));
    ck_assert_int_eq(write(fd, head, (size_t)n), n);
    ck_assert_int_eq(write(fd, body, strlen(body)), (ssize_t)strlen(body));
}

static void stub_serve(stub *st, int conn)
{
    char op[48];
    char *body = NULL;
    while (stub_read(conn, op, sizeof op, &body)) {
        pthread_mutex_lock(&st->lock);
        unsigned nth = stub_count(st, op);
        if (st->n < STUB_MAX) {
            snprintf(st->ops[st->n], sizeof st->ops[st->n], "%s", op);
            st->bodies[st->n++] = body;
            body = NULL;
        }
        pthread_mutex_unlock(&st->lock);
        free(body);
        int status = 200;
        const char *reply = stub_schema(op, &status);
        if (!reply)
            reply = st->answer(op, nth, &status);
        stub_reply(conn, status, reply);
    }
    close(conn);
}

static void *stub_main(void *arg)
{
    stub *st = arg;
    int conn;
    while ((conn = accept(st->fd, NULL, NULL)) >= 0)
        stub_serve(st, conn);
    return NULL;
}

static void stub_start(stub *st, stub_answer answer)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    memset(st, 0, sizeof *st);
    st->answer = answer;
    pthread_mutex_init(&st->lock, NULL);
    st->fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(st->fd, 0);
    ck_assert_int_eq(bind(st->fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(st->fd, 4), 0);
    ck_assert_int_eq(getsockname(st->fd, (struct sockaddr *)&a, &len), 0);
    st->port = ntohs(a.sin_port);
    ck_assert_int_eq(pthread_create(&st->thread, NULL, stub_main, st), 0);
}

/* Call after the module's destroy closed its connection; the request log
 * stays readable until stub_free. */
static void stub_stop(stub *st)
{
    shutdown(st->fd, SHUT_RDWR);
    pthread_join(st->thread, NULL);
    close(st->fd);
    pthread_mutex_destroy(&st->lock);
}

static void stub_free(stub *st)
{
    for (size_t i = 0; i < st->n; i++)
        free(st->bodies[i]);
    st->n = 0;
}

/* The module on the stub, with table "t" (no indexes) defined. */
static void stub_open(stub *st, inst *i)
{
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", st->port);
    i->mod = module(PREFIX, 0);
    mock_config_set_string(i->mod, "endpoint", endpoint);
    mock_config_set_int(i->mod, "retry_base_ms", 1);
    ck_assert_int_eq(DESC->init(H, i->mod, &i->self), OD_OK);
    od_table_def t = {sizeof t, "t", NULL, 0};
    ck_assert_int_eq(S->define_table(i->self, &t), OD_OK);
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
    stub_start(&st, conflict_twice);
    stub_open(&st, &a);
    ck_assert_int_eq(S->counter_add(a.self, "stock", "p1", -3, 0, "op-1", &v, &applied), OD_OK);
    ck_assert_int_eq(applied, 1);
    ck_assert_int_eq(v, 7);
    inst_close(&a);
    stub_stop(&st);
    /* Three submissions, each with its own ClientRequestToken. */
    const char *tokens[3];
    size_t n = 0;
    for (size_t i = 0; i < st.n; i++)
        if (strcmp(st.ops[i], "TransactWriteItems") == 0) {
            ck_assert_uint_lt(n, 3);
            tokens[n] = strstr(st.bodies[i], "\"ClientRequestToken\":\"");
            ck_assert_ptr_nonnull(tokens[n]);
            n++;
        }
    ck_assert_uint_eq(n, 3);
    ck_assert(strncmp(tokens[0], tokens[1], 60) != 0);
    ck_assert(strncmp(tokens[1], tokens[2], 60) != 0);
    stub_free(&st);
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
    stub_start(&st, always_conflict);
    stub_open(&st, &a);
    ck_assert_int_eq(S->counter_add(a.self, "stock", "p1", -1, 0, "op-1", NULL, NULL),
                     OD_ERR_UNAVAILABLE);
    inst_close(&a);
    stub_stop(&st);
    ck_assert_uint_eq(stub_count(&st, "TransactWriteItems"), 12);
    stub_free(&st);
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
    stub_start(&st, empty_pages);
    stub_open(&st, &a);
    ck_assert_int_eq(S->scan(a.self, "t", NULL, 5, 0, &p), OD_OK);
    ck_assert_uint_eq(p.count, 1);
    ck_assert_str_eq(p.items[0].key, "c");
    ck_assert_uint_eq(p.items[0].version, 3);
    ck_assert_ptr_null(p.next);
    od_page_clear(H, &p);
    inst_close(&a);
    stub_stop(&st);
    ck_assert_uint_eq(stub_count(&st, "Query"), 3);
    /* Each follow-up starts after the previous LastEvaluatedKey. */
    size_t q = 0;
    for (size_t i = 0; i < st.n; i++) {
        if (strcmp(st.ops[i], "Query") != 0)
            continue;
        const char *esk = strstr(st.bodies[i], "\"ExclusiveStartKey\"");
        if (q == 0)
            ck_assert_ptr_null(esk);
        else
            ck_assert(esk && strstr(esk, q == 1 ? "\"a\"" : "\"b\""));
        q++;
    }
    stub_free(&st);
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
    stub_start(&st, broken);
    stub_open(&st, &a);
    ck_assert_int_eq(S->ping(a.self), OD_ERR_UNAVAILABLE);
    ck_assert_int_eq(S->get(a.self, "t", "k", &d), OD_ERR_UNAVAILABLE);
    ck_assert_int_eq(S->counter_set(a.self, "stock", "p1", 1), OD_ERR_UNAVAILABLE);
    inst_close(&a);
    stub_stop(&st);
    ck_assert_uint_eq(stub_count(&st, "GetItem"), 4); /* ping and get, each retried once */
    stub_free(&st);
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
