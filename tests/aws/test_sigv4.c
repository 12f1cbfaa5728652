/*
 * tests/aws/test_sigv4.c - the SigV4 signatures orderd really sends,
 * checked independently. Neither DynamoDB Local nor fauxqs verifies
 * signatures, so a signing bug would pass every emulator test and fail only
 * against AWS. Here a loopback listener captures the exact bytes that the
 * real storage_dynamodb.so and queue_sqs.so (loaded through the mock host,
 * endpoint = the listener, so Host carries a non-default port) send while
 * they init and run a few ops, answering with canned valid JSON. Each
 * captured request is then re-signed with OpenSSL following the AWS spec
 * (canonical request, string to sign, derived signing key) and its
 * Authorization header must match byte for byte: plain credentials and a
 * session token (X-Amz-Security-Token present and signed), regions
 * us-east-1 and eu-west-1, services dynamodb and sqs. Also: the secret key
 * appears in no captured byte and no log line, X-Amz-Date is within a
 * minute of now, "expect" is never signed. The re-computation itself is
 * proven on AWS's published example (IAM ListUsers, 20150830T123600Z) and
 * shown to notice a one-byte change. Needs no emulator.
 */
#include <check.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loopback_stub.h"
#include "mock_host.h"

#define TEST_KEY_ID "AKIDSIGV4TEST0001"
/* Shaped like a real secret ('/' and '+'), so encoding slips would show. */
#define TEST_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYSIGV4TESTKEY"
/* STS tokens contain '/', '+' and '='; they travel unescaped in a header. */
#define TEST_TOKEN "FwoGZXIvYXdzEXAMPLE//sigv4+session/token=="
#define DATE_SKEW_S 60

/* ---- the endpoint: records every request, answers by X-Amz-Target ---- */

static lstub L;

/* What the services answer: enough for init and the ops to succeed. One
 * DescribeTable answer serves every table (extra GSIs are ignored). */
typedef struct canned {
    const char *op;
    const char *body;
} canned;

#define DOC_ITEM "{\"pk\":{\"S\":\"o-1\"},\"body\":{\"S\":\"{\\\"n\\\":1}\"},\"ver\":{\"N\":\"1\"}}"

static const canned CANNED[] = {
    {"DescribeTable", "{\"Table\":{\"TableStatus\":\"ACTIVE\",\"GlobalSecondaryIndexes\":["
                      "{\"IndexName\":\"gsi_all\",\"IndexStatus\":\"ACTIVE\"},"
                      "{\"IndexName\":\"gsi_by_customer\",\"IndexStatus\":\"ACTIVE\"}]}}"},
    {"DescribeTimeToLive", "{\"TimeToLiveDescription\":{\"TimeToLiveStatus\":\"ENABLED\"}}"},
    {"GetItem", "{\"Item\":" DOC_ITEM "}"},
    {"UpdateItem", "{\"Attributes\":{\"ver\":{\"N\":\"1\"}}}"},
    {"PutItem", "{}"},
    {"Query", "{\"Items\":[" DOC_ITEM "],\"Count\":1}"},
    {"GetQueueUrl", "{\"QueueUrl\":\"http://sqs.localhost/000000000000/orderd-q\"}"},
    {"SendMessage", "{\"MessageId\":\"m-1\",\"MD5OfMessageBody\":\"5d41402abc4b2a76b9719d911017c592\"}"},
    {"ReceiveMessage", "{\"Messages\":[{\"MessageId\":\"m-1\",\"ReceiptHandle\":\"rh-1\","
                       "\"Body\":\"hello\",\"Attributes\":{\"ApproximateReceiveCount\":\"1\","
                       "\"SentTimestamp\":\"1700000000000\"}}]}"},
};

/* An unexpected operation gets a 400 so the op under test fails loudly. */
static const char UNKNOWN_OP[] =
    "{\"__type\":\"com.amazonaws.test#UnknownOperationException\",\"message\":\"not canned\"}";

static const char *canned_reply(void *arg, const lstub_req *req, size_t n, int *status)
{
    (void)arg, (void)n;
    char target[128];
    const char *dot;
    *status = 400;
    if (lstub_header(req, "X-Amz-Target", target, sizeof target) < 0 ||
        !(dot = strchr(target, '.')))
        return UNKNOWN_OP;
    for (size_t i = 0; i < sizeof CANNED / sizeof CANNED[0]; i++)
        if (strcmp(dot + 1, CANNED[i].op) == 0) {
            *status = 200;
            return CANNED[i].body;
        }
    return UNKNOWN_OP;
}

/* ---- an HTTP request, parsed ---- */

#define REQ_HEADERS 32

typedef struct header {
    char name[64]; /* lower-cased */
    char value[1024];
} header;

typedef struct http_req {
    char method[16];
    char path[512];
    char query[512];
    header h[REQ_HEADERS];
    size_t n;
    const char *body;
    size_t body_len;
} http_req;

static void add_header(http_req *r, const char *name, size_t name_len, const char *value,
                       size_t value_len)
{
    ck_assert_uint_lt(r->n, REQ_HEADERS);
    ck_assert_uint_lt(name_len, sizeof r->h[0].name);
    ck_assert_uint_lt(value_len, sizeof r->h[0].value);
    header *h = &r->h[r->n++];
    for (size_t i = 0; i < name_len; i++)
        h->name[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    h->name[name_len] = '\0';
    memcpy(h->value, value, value_len);
    h->value[value_len] = '\0';
}

static void parse_request(const lstub_req *c, http_req *r)
{
    memset(r, 0, sizeof *r);
    char target[512];
    const char *eol = strstr(c->head, "\r\n");
    ck_assert_ptr_nonnull(eol);
    ck_assert_int_eq(sscanf(c->head, "%15s %511s HTTP/1.1", r->method, target), 2);
    char *q = strchr(target, '?');
    if (q)
        *q++ = '\0';
    snprintf(r->path, sizeof r->path, "%s", target);
    snprintf(r->query, sizeof r->query, "%s", q ? q : "");
    const char *end = c->head + c->head_len - 2; /* the blank line's CRLF */
    for (const char *line = eol + 2; line < end;) {
        const char *next = strstr(line, "\r\n");
        const char *colon = memchr(line, ':', (size_t)(next - line));
        ck_assert_msg(colon != NULL, "header line without a colon");
        const char *v = colon + 1;
        add_header(r, line, (size_t)(colon - line), v, (size_t)(next - v));
        line = next + 2;
    }
    r->body = c->body;
    r->body_len = c->body_len;
}

/* The value of header `name` (lower-case) and how many times it occurs. */
static const char *header_get(const http_req *r, const char *name, int *count)
{
    const char *found = NULL;
    *count = 0;
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->h[i].name, name) == 0) {
            found = found ? found : r->h[i].value;
            (*count)++;
        }
    return found;
}

/* The one value of a header that must occur exactly once, trimmed. */
static const char *header_one(const http_req *r, const char *name)
{
    int count;
    const char *v = header_get(r, name, &count);
    ck_assert_msg(count == 1, "header %s occurs %d times", name, count);
    while (*v == ' ' || *v == '\t')
        v++;
    return v;
}

/* ---- SigV4, re-computed from the spec ---- */

typedef struct sbuf {
    char s[16384];
    size_t len;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->s + b->len, sizeof b->s - b->len, fmt, ap);
    va_end(ap);
    ck_assert_msg(n >= 0 && (size_t)n < sizeof b->s - b->len, "canonical request too long");
    b->len += (size_t)n;
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", in[i]);
}

static void sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int md_len = 0;
    ck_assert_int_eq(EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL), 1);
    ck_assert_uint_eq(md_len, 32);
    hex(md, 32, out);
}

static void hmac(const unsigned char *key, size_t key_len, const char *msg, unsigned char out[32])
{
    unsigned int len = 0;
    ck_assert_ptr_nonnull(HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg,
                               strlen(msg), out, &len));
    ck_assert_uint_eq(len, 32);
}

/* A header value as SigV4 canonicalizes it: outer blanks trimmed, inner
 * runs of spaces collapsed to one. */
static void canonical_value(const char *v, char *out, size_t cap)
{
    size_t n = 0;
    while (*v == ' ' || *v == '\t')
        v++;
    for (; *v; v++) {
        int blank = *v == ' ' || *v == '\t';
        if (blank && (n == 0 || out[n - 1] == ' '))
            continue;
        ck_assert_uint_lt(n + 1, cap);
        out[n++] = blank ? ' ' : *v;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

typedef struct scope {
    const char *amz_date; /* YYYYMMDDTHHMMSSZ */
    const char *region;
    const char *service;
} scope;

/* The canonical request's SHA-256 (hex) over the headers named in
 * `signed_list` ("a;b;c", sorted, lower-case); each must occur once. */
static void canonical_request_hash(const http_req *r, const char *signed_list, char out[65])
{
    static sbuf b; /* 16 KiB: off the stack; tests run one at a time */
    char payload[65], names[512];
    b.len = 0;
    sb_printf(&b, "%s\n%s\n%s\n", r->method, r->path, r->query);
    snprintf(names, sizeof names, "%s", signed_list);
    for (char *save = NULL, *name = strtok_r(names, ";", &save); name;
         name = strtok_r(NULL, ";", &save)) {
        char value[1024];
        canonical_value(header_one(r, name), value, sizeof value);
        sb_printf(&b, "%s:%s\n", name, value);
    }
    sha256_hex(r->body, r->body_len, payload);
    sb_printf(&b, "\n%s\n%s", signed_list, payload);
    sha256_hex(b.s, b.len, out);
}

static void sigv4_signature(const http_req *r, const char *signed_list, const scope *sc,
                            const char *secret, char out[65])
{
    char creq_hash[65], date[9], sts[512], key[256];
    unsigned char k[32];
    canonical_request_hash(r, signed_list, creq_hash);
    snprintf(date, sizeof date, "%.8s", sc->amz_date);
    snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", sc->amz_date,
             date, sc->region, sc->service, creq_hash);
    int n = snprintf(key, sizeof key, "AWS4%s", secret);
    ck_assert(n > 0 && (size_t)n < sizeof key);
    hmac((const unsigned char *)key, (size_t)n, date, k);
    hmac(k, 32, sc->region, k);
    hmac(k, 32, sc->service, k);
    hmac(k, 32, "aws4_request", k);
    unsigned char sig[32];
    hmac(k, 32, sts, sig);
    hex(sig, 32, out);
}

/* ---- checking one captured request ---- */

typedef struct expectation {
    const char *region;
    const char *service;
    const char *token; /* NULL: none may be sent */
} expectation;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* What libcurl must sign: host and x-amz-date (it adds both) plus every
 * header odaws passes, lower-cased and sorted. Built from the spec, not
 * read back from the request. */
static void expected_signed_list(const expectation *e, char *out, size_t cap)
{
    const char *names[5] = {"content-type", "host", "x-amz-date", "x-amz-target",
                            "x-amz-security-token"};
    size_t n = e->token ? 5 : 4;
    qsort(names, n, sizeof names[0], cmp_str);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strncat(out, names[i], cap - strlen(out) - 1);
        if (i + 1 < n)
            strncat(out, ";", cap - strlen(out) - 1);
    }
}

static void check_date_fresh(const char *amz_date)
{
    struct tm tm = {0};
    const char *end = strptime(amz_date, "%Y%m%dT%H%M%SZ", &tm);
    ck_assert_msg(end && *end == '\0' && strlen(amz_date) == 16, "X-Amz-Date \"%s\"", amz_date);
    long long skew = (long long)(timegm(&tm) - time(NULL));
    ck_assert_msg(skew >= -DATE_SKEW_S && skew <= DATE_SKEW_S, "X-Amz-Date %s is %lld s off",
                  amz_date, skew);
}

static void check_token(const http_req *r, const expectation *e)
{
    int count;
    const char *token = header_get(r, "x-amz-security-token", &count);
    if (!e->token) {
        ck_assert_int_eq(count, 0);
        return;
    }
    ck_assert_int_eq(count, 1);
    ck_assert_str_eq(token + strspn(token, " "), e->token);
}

static void verify_request(const lstub_req *c, const expectation *e)
{
    http_req r;
    char host[64], list[256], sig[65], want[1024];
    /* The secret has no CRLF: it cannot straddle the head and the body. */
    ck_assert_msg(!memmem(c->head, c->head_len, TEST_SECRET, strlen(TEST_SECRET)) &&
                      !memmem(c->body, c->body_len, TEST_SECRET, strlen(TEST_SECRET)),
                  "the secret key went on the wire");
    parse_request(c, &r);
    ck_assert_str_eq(r.method, "POST");
    ck_assert_str_eq(r.path, "/");
    ck_assert_str_eq(r.query, "");
    snprintf(host, sizeof host, "127.0.0.1:%u", L.port);
    ck_assert_str_eq(header_one(&r, "host"), host);
    const char *amz_date = header_one(&r, "x-amz-date");
    check_date_fresh(amz_date);
    check_token(&r, e);
    const char *auth = header_one(&r, "authorization");
    ck_assert_msg(strstr(auth, "expect") == NULL, "Expect is signed: %s", auth);
    expected_signed_list(e, list, sizeof list);
    scope sc = {amz_date, e->region, e->service};
    sigv4_signature(&r, list, &sc, TEST_SECRET, sig);
    snprintf(want, sizeof want,
             "AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/%s/aws4_request, SignedHeaders=%s, "
             "Signature=%s",
             TEST_KEY_ID, amz_date, e->region, e->service, list, sig);
    ck_assert_str_eq(auth, want);
}

/* Every request captured since `from`: all verified, and the operations
 * named in `ops` (NULL-terminated) among them. */
static void verify_since(size_t from, const expectation *e, const char *const *ops)
{
    size_t n = lstub_count(&L);
    ck_assert_uint_gt(n, from);
    for (size_t i = from; i < n; i++) {
        const lstub_req *c = lstub_request(&L, i);
        ck_assert_msg(c != NULL, "request %zu was not recorded", i);
        verify_request(c, e);
    }
    for (; *ops; ops++) {
        char needle[128];
        int seen = 0;
        snprintf(needle, sizeof needle, ".%s\r\n", *ops);
        for (size_t i = from; i < n && !seen; i++)
            seen = strstr(lstub_request(&L, i)->head, needle) != NULL;
        ck_assert_msg(seen, "no %s request was captured", *ops);
    }
    ck_assert_int_eq(mock_log_contains(TEST_SECRET), 0);
}

/* ---- driving the real modules ---- */

static const od_host_api *H;

static void setup(void)
{
    H = mock_host_api();
    mock_log_reset();
    static const char *const clear[] = {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
                                        "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SQS",
                                        "AWS_SESSION_TOKEN"};
    for (size_t i = 0; i < sizeof clear / sizeof clear[0]; i++)
        unsetenv(clear[i]);
    setenv("AWS_ACCESS_KEY_ID", TEST_KEY_ID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET, 1);
    lstub_start(&L, canned_reply, NULL);
}

static void teardown(void)
{
    lstub_stop(&L);
    lstub_free(&L);
}

typedef struct loaded {
    const od_module_desc *desc;
    od_module *mod;
    void *self;
} loaded;

/* Load modules/<so> and init it against the listener; region NULL leaves
 * it to the environment. */
static void load_and_init(loaded *m, const char *so, const char *group, const char *region)
{
    char path[4096], err[256], url[64];
    const char *build = getenv("ORDERD_BUILD_DIR");
    snprintf(path, sizeof path, "%s/modules/%s", build ? build : ".", so);
    m->desc = mock_load_module(path, err, sizeof err);
    ck_assert_msg(m->desc != NULL, "cannot load %s: %s", path, err);
    m->mod = mock_module_new(group);
    snprintf(url, sizeof url, "http://127.0.0.1:%u", L.port);
    mock_config_set_string(m->mod, "endpoint", url);
    mock_config_set_int(m->mod, "max_retries", 0);
    if (region)
        mock_config_set_string(m->mod, "region", region);
    ck_assert_int_eq(m->desc->init(H, m->mod, &m->self), OD_OK);
}

static void unload(loaded *m)
{
    if (m->desc->stop)
        m->desc->stop(m->self);
    if (m->desc->destroy)
        m->desc->destroy(m->self);
    mock_module_free(m->mod);
}

/* init (DescribeTable, DescribeTimeToLive), define_table, then put
 * (UpdateItem), get (GetItem), query (Query) and counter_set (PutItem). */
static void run_dynamodb(const char *region_config, const expectation *e)
{
    static const char *const ops[] = {"DescribeTable", "DescribeTimeToLive", "UpdateItem",
                                      "GetItem", "Query", "PutItem", NULL};
    loaded m;
    load_and_init(&m, "storage_dynamodb.so", "storage", region_config);
    const od_storage_ops *s = m.desc->ops;
    const od_index_def idx = {"by_customer", 0};
    const od_table_def def = {sizeof def, "orders", &idx, 1};
    const od_index_value iv = {"by_customer", "c-1"};
    uint64_t version = 0;
    od_doc doc = {0};
    od_page page = {0};
    ck_assert_int_eq(s->define_table(m.self, &def), OD_OK);
    /* UTF-8 and a run of spaces: the payload is hashed as sent, never trimmed. */
    static const char body[] = "{\"note\":\"caf\xc3\xa9  \xc3\xa9t\xc3\xa9 / + =\"}";
    ck_assert_int_eq(s->put(m.self, "orders", "o-1", body, sizeof body - 1, &iv, 1,
                            OD_PUT_UPSERT, 0, &version), OD_OK);
    ck_assert_uint_eq(version, 1);
    ck_assert_int_eq(s->get(m.self, "orders", "o-1", &doc), OD_OK);
    ck_assert_str_eq(doc.body, "{\"n\":1}");
    od_doc_clear(H, &doc);
    ck_assert_int_eq(s->query(m.self, "orders", "by_customer", "c-1", NULL, 10, 0, &page), OD_OK);
    ck_assert_uint_eq(page.count, 1);
    od_page_clear(H, &page);
    ck_assert_int_eq(s->counter_set(m.self, "orders", "seq", 5), OD_OK);
    unload(&m);
    verify_since(0, e, ops);
}

/* init (GetQueueUrl x3), then send (SendMessage) and receive (ReceiveMessage). */
static void run_sqs(const char *region_config, const expectation *e)
{
    static const char *const ops[] = {"GetQueueUrl", "SendMessage", "ReceiveMessage", NULL};
    loaded m;
    load_and_init(&m, "queue_sqs.so", "queue", region_config);
    const od_queue_ops *q = m.desc->ops;
    char *id = NULL;
    od_message msg[1];
    size_t n = 0;
    static const char body[] = "{\"order_id\":\"o-1\",\"note\":\"\xc3\xa9  / + = \\\"q\\\"\"}";
    ck_assert_int_eq(q->send(m.self, OD_LANE_NORMAL, body, sizeof body - 1, 0, &id), OD_OK);
    ck_assert_str_eq(id, "m-1");
    H->free(id);
    ck_assert_int_eq(q->receive(m.self, OD_LANE_NORMAL, 1, 0, 30000, msg, &n), OD_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(msg[0].body, "hello");
    od_message_clear(H, &msg[0]);
    unload(&m);
    verify_since(0, e, ops);
}

/* ---- tests ---- */

/* AWS's published example (IAM ListUsers, "Create a signed AWS API
 * request"): proves canonical_request_hash and sigv4_signature right. */
START_TEST(test_known_answer_vector)
{
    static const char *const lines[][2] = {
        {"content-type", "application/x-www-form-urlencoded; charset=utf-8"},
        {"host", "iam.amazonaws.com"},
        {"x-amz-date", "20150830T123600Z"},
    };
    http_req r;
    memset(&r, 0, sizeof r);
    snprintf(r.method, sizeof r.method, "GET");
    snprintf(r.path, sizeof r.path, "/");
    snprintf(r.query, sizeof r.query, "Action=ListUsers&Version=2010-05-08");
    for (size_t i = 0; i < 3; i++)
        add_header(&r, lines[i][0], strlen(lines[i][0]), lines[i][1], strlen(lines[i][1]));
    r.body = "";
    const char *list = "content-type;host;x-amz-date";
    char creq[65], sig[65];
    canonical_request_hash(&r, list, creq);
    ck_assert_str_eq(creq, "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
    scope sc = {"20150830T123600Z", "us-east-1", "iam"};
    sigv4_signature(&r, list, &sc, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", sig);
    ck_assert_str_eq(sig, "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
}
END_TEST

/* Trimming and collapsing as the spec asks: " a   b  " -> "a b". */
START_TEST(test_canonical_value)
{
    char out[64];
    canonical_value("  a   b  c ", out, sizeof out);
    ck_assert_str_eq(out, "a b c");
    canonical_value("x", out, sizeof out);
    ck_assert_str_eq(out, "x");
    canonical_value("   ", out, sizeof out);
    ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(test_dynamodb_plain_eu_west_1)
{
    const expectation e = {"eu-west-1", "dynamodb", NULL};
    run_dynamodb("eu-west-1", &e);
}
END_TEST

START_TEST(test_dynamodb_session_token)
{
    setenv("AWS_SESSION_TOKEN", TEST_TOKEN, 1);
    const expectation e = {"us-east-1", "dynamodb", TEST_TOKEN};
    run_dynamodb(NULL, &e);
}
END_TEST

START_TEST(test_sqs_plain_env_region)
{
    setenv("AWS_REGION", "eu-west-1", 1);
    const expectation e = {"eu-west-1", "sqs", NULL};
    run_sqs(NULL, &e);
}
END_TEST

START_TEST(test_sqs_session_token_eu_west_1)
{
    setenv("AWS_SESSION_TOKEN", TEST_TOKEN, 1);
    const expectation e = {"eu-west-1", "sqs", TEST_TOKEN};
    run_sqs("eu-west-1", &e);
}
END_TEST

/* The check is not vacuous: a captured request whose body, a signed
 * header or the region differs by one byte no longer verifies. */
START_TEST(test_recompute_notices_changes)
{
    setenv("AWS_SESSION_TOKEN", TEST_TOKEN, 1);
    const expectation e = {"eu-west-1", "sqs", TEST_TOKEN};
    run_sqs("eu-west-1", &e);
    const lstub_req *c = lstub_request(&L, lstub_count(&L) - 1);
    ck_assert_ptr_nonnull(c);
    http_req r;
    char list[256], good[65], sig[65];
    parse_request(c, &r);
    expected_signed_list(&e, list, sizeof list);
    scope sc = {header_one(&r, "x-amz-date"), e.region, e.service};
    sigv4_signature(&r, list, &sc, TEST_SECRET, good);
    ck_assert_ptr_nonnull(strstr(header_one(&r, "authorization"), good));

    char body[4096];
    ck_assert_uint_gt(r.body_len, 0);
    ck_assert_uint_lt(r.body_len, sizeof body);
    memcpy(body, r.body, r.body_len);
    body[0] ^= 1;
    http_req changed = r;
    changed.body = body;
    sigv4_signature(&changed, list, &sc, TEST_SECRET, sig);
    ck_assert_str_ne(sig, good);

    changed = r;
    for (size_t i = 0; i < changed.n; i++)
        if (strcmp(changed.h[i].name, "x-amz-security-token") == 0)
            changed.h[i].value[strlen(changed.h[i].value) - 1] ^= 1;
    sigv4_signature(&changed, list, &sc, TEST_SECRET, sig);
    ck_assert_str_ne(sig, good);

    scope other = {sc.amz_date, "eu-west-2", e.service};
    sigv4_signature(&r, list, &other, TEST_SECRET, sig);
    ck_assert_str_ne(sig, good);
}
END_TEST

static Suite *sigv4_suite(void)
{
    Suite *s = suite_create("sigv4");
    TCase *vec = tcase_create("vectors");
    tcase_add_test(vec, test_known_answer_vector);
    tcase_add_test(vec, test_canonical_value);
    suite_add_tcase(s, vec);
    TCase *wire = tcase_create("wire");
    tcase_add_checked_fixture(wire, setup, teardown);
    tcase_add_test(wire, test_dynamodb_plain_eu_west_1);
    tcase_add_test(wire, test_dynamodb_session_token);
    tcase_add_test(wire, test_sqs_plain_env_region);
    tcase_add_test(wire, test_sqs_session_token_eu_west_1);
    tcase_add_test(wire, test_recompute_notices_changes);
    suite_add_tcase(s, wire);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sigv4_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
