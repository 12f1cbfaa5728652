/*
 * storage_dynamodb - the storage backend for scale-out (OD_KIND_STORAGE):
 * any number of orderd instances share DynamoDB tables (docs/aws.md).
 *
 * Each od table is the DynamoDB table <prefix><name>, one item per document:
 * pk S (the key), body S (the JSON bytes), ver N, sc S = "1" and ix_<index> S
 * for each index value it has. DynamoDB Scan is unordered, so scan is a Query
 * on the GSI gsi_all (hash sc, range pk) and a non-unique index a Query on
 * gsi_<index> (hash ix_<index>, range pk): both walk in key order with
 * keyset cursors. gsi_all puts every item of a table under one partition
 * key: fine for the listings scan serves, a hot partition if scans ran at
 * high rates. GSI reads are eventually consistent in AWS (a query may miss
 * a document written a moment ago); get and lookup always read strongly.
 * A unique index value is a claim item in <prefix>uniques (pk
 * "<table>#<index>#<value>", owner) written in the same TransactWriteItems
 * as the document, so two documents never hold one value. Counters are
 * items of <prefix>counters (pk "<table>#<key>", v N) changed by one
 * conditional UpdateItem; an op token adds a Put into <prefix>tokens (pk
 * "<table>#<token>", exp = TTL attribute) to the same transaction.
 * put_batch writes all its documents and their claims in one
 * TransactWriteItems. store() is NULL: no queue keeps its messages in
 * DynamoDB, so a batch never carries one.
 *
 * Config (group "storage"): table_prefix (default "orderd_") plus odaws's
 * keys: region, endpoint, timeout_ms, connect_timeout_ms, max_retries,
 * retry_base_ms, create_missing (odaws.h). Credentials: environment only.
 * Threads: none of its own. Ops run on many threads at once; the table
 * registry (odm_tables.h) is written only by define_table on the main thread
 * and read without a lock afterwards, and odaws gives each thread its own
 * handle.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <orderd/orderd.h>

#include "odaws.h"
#include "odm_b64.h"
#include "odm_tables.h"

#define DD_MAX_INDEXES OD_INDEXES_MAX
#define DD_NAME_MAX OD_NAME_MAX
#define DD_ATTR_MAX (DD_NAME_MAX + 4) /* "ix_" + name, "gsi_" + name */
#define DD_VALUE_MAX 255
#define DD_TOKEN_MAX 255
#define DD_PAGE_MAX 1000
#define DD_PREFIX_MAX 200
#define DD_TABLE_NAME_MAX 255
/* "<table>#<index>#<value>" and "<table>#<token>" */
#define DD_PK_MAX (DD_NAME_MAX * 2 + DD_VALUE_MAX + 3)
/* DynamoDB refuses items over 400 KB; names, key, version and index values
 * of a document take far less than the margin. */
#define DD_BODY_MAX (400 * 1024 - 4096)
/* The contract keeps tokens at least 7 days; TTL deletes lazily, never
 * early, and the hour covers clock skew between instances. */
#define DD_TOKEN_TTL_S (7LL * 24 * 3600 + 3600)
#define DD_CONFLICT_TRIES 12
#define DD_BACKOFF_BASE_MS 5
#define DD_BACKOFF_CAP_MS 500
#define DD_ACTIVE_WAIT_MS (5LL * 60 * 1000)
#define DD_ACTIVE_POLL_MS 250
#define DD_CURSOR_TAG "d1."
#define DD_RETRY 1 /* internal: the item changed under us, read again */

static const odaws_service DD_SERVICE = {"dynamodb", "DYNAMODB", "DynamoDB_20120810"};

/* ---- state ---- */

/* What DynamoDB adds to a table of the registry (its ext). */
typedef struct dd_table {
    const odm_table *def;                       /* name and indexes */
    char ddb[DD_TABLE_NAME_MAX + 1];            /* <prefix><name> */
    char attr[DD_MAX_INDEXES][DD_ATTR_MAX + 1]; /* ix_<index>, by index position */
} dd_table;

typedef struct dd {
    const od_host_api *host;
    od_module *mod;
    odaws_client *aws;
    char uniques[DD_TABLE_NAME_MAX + 1];
    char counters[DD_TABLE_NAME_MAX + 1];
    char tokens[DD_TABLE_NAME_MAX + 1];
    const char *prefix; /* owned by the core's config */
    odm_tables tables;
    dd_table dd_tables[ODM_TABLES_MAX]; /* by registry id */
} dd;

/* A GSI a document table needs: gsi_all on sc, gsi_<index> on ix_<index>. */
typedef struct dd_gsi {
    char index[DD_ATTR_MAX + 1];
    char attr[DD_ATTR_MAX + 1];
} dd_gsi;

/* ---- validation ---- */

/* Strict UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF): DynamoDB strings are Unicode, and other bytes would come back
 * changed instead of refused. */
static int valid_utf8(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                   : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (!len || i + len > n)
            return 0;
        uint32_t cp = len == 1 ? c : c & (0x7fu >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        static const uint32_t MIN[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < MIN[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

/* 1..max bytes of UTF-8. */
static int valid_bytes(const char *v, size_t max)
{
    if (!v)
        return 0;
    size_t n = strnlen(v, max + 1);
    return n > 0 && n <= max && valid_utf8(v, n);
}

/* DynamoDB table names allow [A-Za-z0-9_.-]. */
static int valid_prefix(const char *p)
{
    size_t n = strlen(p);
    if (n > DD_PREFIX_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') ||
              (p[i] >= '0' && p[i] <= '9') || p[i] == '_' || p[i] == '.' || p[i] == '-'))
            return 0;
    return 1;
}

/* An index value is a DynamoDB string: UTF-8 (the registry checked its length). */
static int valid_index_value(const char *v)
{
    return valid_utf8(v, strlen(v));
}

static const dd_table *table_find(const dd *d, const char *name)
{
    const odm_table *t = odm_table_find(&d->tables, name);
    return t ? t->ext : NULL;
}

/* The attribute that holds a document's value for x. */
static const char *ix_attr(const dd_table *t, const odm_index *x)
{
    return t->attr[odm_index_pos(t->def, x)];
}

/* The value a put gives for an index, NULL when not in it. */
static const char *index_value(const od_index_value *idx, size_t n_idx, const char *index)
{
    for (size_t i = 0; i < n_idx; i++)
        if (strcmp(idx[i].index, index) == 0)
            return idx[i].value;
    return NULL;
}

/* ---- building requests ----
 * json-c constructors return NULL when out of memory; these helpers record
 * that in *ok and free what could not be attached, so a request is built
 * straight through and checked once (dd_call). */

static json_object *jput(json_object *parent, const char *key, json_object *v, int *ok)
{
    if (parent && v && json_object_object_add(parent, key, v) == 0)
        return v;
    json_object_put(v);
    *ok = 0;
    return NULL;
}

static json_object *jpush(json_object *arr, json_object *v, int *ok)
{
    if (arr && v && json_object_array_add(arr, v) == 0)
        return v;
    json_object_put(v);
    *ok = 0;
    return NULL;
}

/* parent[key] as an object, created on first use. */
static json_object *jchild(json_object *parent, const char *key, int *ok)
{
    json_object *c = NULL;
    if (parent && json_object_object_get_ex(parent, key, &c))
        return c;
    return jput(parent, key, json_object_new_object(), ok);
}

static void jstr(json_object *o, const char *key, const char *s, int *ok)
{
    jput(o, key, json_object_new_string(s), ok);
}

/* ExpressionAttributeNames: every attribute goes through an alias, so
 * reserved words (status, name, ...) never matter. */
static void ex_name(json_object *req, const char *alias, const char *attr, int *ok)
{
    jstr(jchild(req, "ExpressionAttributeNames", ok), alias, attr, ok);
}

static void ex_value(json_object *req, const char *alias, json_object *av, int *ok)
{
    jput(jchild(req, "ExpressionAttributeValues", ok), alias, av, ok);
}

/* A request for one table: {"TableName": name}. */
static json_object *req_new(const char *table, int *ok)
{
    json_object *req = json_object_new_object();
    if (!req)
        *ok = 0;
    jstr(req, "TableName", table, ok);
    return req;
}

/* req.Key = {"pk": {"S": pk}} */
static void req_key(json_object *req, const char *pk, int *ok)
{
    jput(jchild(req, "Key", ok), "pk", odaws_av_s(pk), ok);
}

/* The conditions an item write can carry. */
enum { COND_NONE, COND_ABSENT, COND_EXISTS, COND_VERSION };

static void req_condition(json_object *req, int cond, uint64_t version, int *ok)
{
    static const char *const EXPR[] = {NULL, "attribute_not_exists(#pk)",
                                       "attribute_exists(#pk)", "#ver = :e"};
    if (cond == COND_NONE)
        return;
    jstr(req, "ConditionExpression", EXPR[cond], ok);
    if (cond == COND_VERSION) {
        ex_name(req, "#ver", "ver", ok);
        ex_value(req, ":e", odaws_av_n((int64_t)version), ok);
    } else {
        ex_name(req, "#pk", "pk", ok);
    }
}

/* GetItem, strongly consistent, of the named attributes only. */
static json_object *req_get(const char *table, const char *pk, const char *const *attrs,
                            size_t n_attrs, int *ok)
{
    json_object *req = req_new(table, ok);
    char projection[256] = "", alias[24];
    req_key(req, pk, ok);
    jput(req, "ConsistentRead", json_object_new_boolean(1), ok);
    for (size_t i = 0; i < n_attrs; i++) {
        snprintf(alias, sizeof alias, "#a%zu", i);
        ex_name(req, alias, attrs[i], ok);
        size_t n = strlen(projection);
        snprintf(projection + n, sizeof projection - n, "%s%s", i ? ", " : "", alias);
    }
    jstr(req, "ProjectionExpression", projection, ok);
    return req;
}

/* ---- calling DynamoDB ---- */

typedef struct dd_reply {
    odaws_response resp;
    json_object *body; /* parsed answer: the result, or the error (reasons, old item) */
} dd_reply;

static void reply_clear(const dd *d, dd_reply *r)
{
    odaws_response_clear(d->aws, &r->resp);
    json_object_put(r->body);
    r->body = NULL;
}

/* Sleep a random 0..min(base * 2^attempt, cap) ms ("full jitter"), so
 * instances racing for one item spread out instead of colliding again. */
static void backoff(const dd *d, unsigned attempt)
{
    uint32_t r = 0;
    int64_t cap = (int64_t)DD_BACKOFF_BASE_MS << (attempt < 7 ? attempt : 7);
    if (cap > DD_BACKOFF_CAP_MS)
        cap = DD_BACKOFF_CAP_MS;
    d->host->random_bytes(&r, sizeof r);
    int64_t ms = (int64_t)(r % (uint32_t)(cap + 1));
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A fresh ClientRequestToken for each transaction we submit: odaws's own
 * retries resend the same body, so a commit whose answer was lost is not
 * applied twice, while our conflict retries get a new one. */
static int set_request_token(const dd *d, json_object *req)
{
    unsigned char raw[16];
    char hex[33];
    if (d->host->random_bytes(raw, sizeof raw) != OD_OK)
        return 0;
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    int ok = 1;
    jstr(req, "ClientRequestToken", hex, &ok);
    return ok;
}

static const char *reason_code(json_object *err, size_t i)
{
    json_object *reasons = NULL, *code = NULL;
    if (!json_object_object_get_ex(err, "CancellationReasons", &reasons) ||
        !json_object_is_type(reasons, json_type_array) ||
        !json_object_object_get_ex(json_object_array_get_idx(reasons, i), "Code", &code))
        return "";
    return json_object_get_string(code);
}

static size_t reason_count(json_object *err)
{
    json_object *reasons = NULL;
    if (!json_object_object_get_ex(err, "CancellationReasons", &reasons) ||
        !json_object_is_type(reasons, json_type_array))
        return 0;
    return json_object_array_length(reasons);
}

/* The old item DynamoDB returned with a failed condition (ALL_OLD); reason
 * index i for a transaction, (size_t)-1 for a single-item write. */
static json_object *failed_item(json_object *err, size_t i)
{
    json_object *holder = err, *reasons = NULL, *item = NULL;
    if (i != (size_t)-1) {
        if (!json_object_object_get_ex(err, "CancellationReasons", &reasons))
            return NULL;
        holder = json_object_array_get_idx(reasons, i);
    }
    return json_object_object_get_ex(holder, "Item", &item) ? item : NULL;
}

/* Contention, not a verdict: another transaction held an item, or a
 * transaction was throttled. Retried here with backoff. */
static int is_conflict(const dd_reply *r)
{
    if (odaws_is_error(&r->resp, "TransactionConflictException") ||
        odaws_is_error(&r->resp, "TransactionInProgressException"))
        return 1;
    if (!odaws_is_error(&r->resp, "TransactionCanceledException"))
        return 0;
    int contention = 0;
    for (size_t i = 0; i < reason_count(r->body); i++) {
        const char *code = reason_code(r->body, i);
        if (strcmp(code, "ConditionalCheckFailed") == 0 || strcmp(code, "ValidationError") == 0)
            return 0;
        contention |= strcmp(code, "TransactionConflict") == 0 ||
                      strcmp(code, "ThrottlingError") == 0 ||
                      strcmp(code, "ProvisionedThroughputExceeded") == 0;
    }
    return contention;
}

/* A transaction cancelled for no condition of ours: a request DynamoDB
 * refused (e.g. an index value that is not UTF-8), or the service. */
static od_status cancel_other(const dd_reply *r)
{
    for (size_t i = 0; i < reason_count(r->body); i++)
        if (strcmp(reason_code(r->body, i), "ValidationError") == 0)
            return OD_ERR_INVALID;
    return OD_ERR_UNAVAILABLE;
}

/* A final error answer the caller does not handle itself. */
static od_status reply_error(const dd *d, const char *op, const dd_reply *r)
{
    const odaws_response *resp = &r->resp;
    if (odaws_is_error(resp, "ConditionalCheckFailedException") ||
        odaws_is_error(resp, "TransactionCanceledException"))
        return OD_ERR_CONFLICT; /* callers refine these */
    if (odaws_is_error(resp, "ValidationException") &&
        strstr(resp->error_message, "Item size") != NULL)
        return OD_ERR_TOO_LARGE;
    if (odaws_is_error(resp, "ValidationException") ||
        odaws_is_error(resp, "SerializationException"))
        return OD_ERR_INVALID;
    if (odaws_is_error(resp, "ResourceNotFoundException") && strcmp(op, "DescribeTable") == 0)
        return OD_ERR_UNAVAILABLE; /* table_describe's answer, not an incident */
    if (odaws_is_error(resp, "ResourceNotFoundException"))
        d->host->log(d->mod, OD_LOG_ERROR, "DynamoDB %s: table missing (%s); "
                     "run `orderd --provision` to create the tables", op, resp->error_message);
    else
        d->host->log(d->mod, OD_LOG_ERROR, "DynamoDB %s: HTTP %ld %s: %s", op,
                     resp->http_status, resp->error_type, resp->error_message);
    return OD_ERR_UNAVAILABLE;
}

/* Run one operation and free req. OD_OK: a 2xx answer, parsed into
 * r->body. Otherwise the mapped status, with r->resp and r->body (the
 * parsed error) kept for the caller to refine. r is always to be cleared. */
static od_status dd_call(dd *d, const char *op, json_object *req, int ok, dd_reply *r)
{
    int transaction = strcmp(op, "TransactWriteItems") == 0;
    od_status s = ok ? OD_OK : OD_ERR_NOMEM;
    memset(r, 0, sizeof *r);
    for (unsigned attempt = 0; s == OD_OK; attempt++) {
        if (transaction && !set_request_token(d, req)) {
            s = OD_ERR_NOMEM;
            break;
        }
        s = odaws_call_json(d->aws, op, req, 0, &r->resp, &r->body);
        if (s != OD_OK || odaws_ok(&r->resp))
            break;
        r->body = odaws_parse(r->resp.body, r->resp.len);
        if (!is_conflict(r)) {
            s = reply_error(d, op, r);
            break;
        }
        if (attempt + 1 == DD_CONFLICT_TRIES) {
            d->host->log(d->mod, OD_LOG_WARN, "DynamoDB %s: still contended after %d tries",
                         op, DD_CONFLICT_TRIES);
            s = OD_ERR_UNAVAILABLE;
            break;
        }
        reply_clear(d, r);
        backoff(d, attempt);
    }
    json_object_put(req);
    return s;
}

/* GetItem: OD_OK and *item (caller puts it), or OD_ERR_NOT_FOUND. */
static od_status get_item(dd *d, const char *table, const char *pk, const char *const *attrs,
                          size_t n_attrs, json_object **item)
{
    int ok = 1;
    dd_reply r;
    json_object *found = NULL;
    *item = NULL;
    od_status s = dd_call(d, "GetItem", req_get(table, pk, attrs, n_attrs, &ok), ok, &r);
    if (s == OD_OK)
        s = json_object_object_get_ex(r.body, "Item", &found) ? OD_OK : OD_ERR_NOT_FOUND;
    if (s == OD_OK)
        *item = json_object_get(found);
    reply_clear(d, &r);
    return s;
}

/* ---- items to documents ---- */

static od_status doc_from_item(const dd *d, json_object *item, od_doc *out)
{
    const od_host_api *h = d->host;
    const char *key = NULL, *body = NULL;
    size_t len = 0;
    int64_t ver = 0;
    if (odaws_av_get_s(item, "pk", &key, NULL) != OD_OK ||
        odaws_av_get_s(item, "body", &body, &len) != OD_OK ||
        odaws_av_get_n(item, "ver", &ver) != OD_OK || ver < 1) {
        h->log(d->mod, OD_LOG_ERROR, "DynamoDB item is not an orderd document (pk, body, ver)");
        return OD_ERR_INTERNAL;
    }
    out->key = h->strdup(key);
    out->body = h->alloc(len + 1);
    if (!out->key || !out->body) {
        od_doc_clear(h, out);
        return OD_ERR_NOMEM;
    }
    memcpy(out->body, body, len);
    out->body[len] = '\0';
    out->len = len;
    out->version = (uint64_t)ver;
    return OD_OK;
}

static const char *const DOC_ATTRS[] = {"pk", "body", "ver"};

/* ---- tables: describe, create, wait ---- */

static size_t table_gsis(const dd_table *t, const od_table_def *def,
                         dd_gsi gsi[DD_MAX_INDEXES + 1])
{
    size_t n = 0;
    snprintf(gsi[n].index, sizeof gsi[n].index, "gsi_all");
    snprintf(gsi[n].attr, sizeof gsi[n].attr, "sc");
    n++;
    for (uint32_t i = 0; i < def->n_indexes; i++) {
        if (def->indexes[i].unique)
            continue; /* served by the claims in <prefix>uniques */
        snprintf(gsi[n].index, sizeof gsi[n].index, "gsi_%s", def->indexes[i].name);
        snprintf(gsi[n].attr, sizeof gsi[n].attr, "%s", t->attr[i]);
        n++;
    }
    return n;
}

static int gsi_state(json_object *table, const char *index, int *active)
{
    json_object *list = NULL, *name = NULL, *status = NULL;
    if (!json_object_object_get_ex(table, "GlobalSecondaryIndexes", &list))
        return 0;
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *g = json_object_array_get_idx(list, i);
        if (json_object_object_get_ex(g, "IndexName", &name) &&
            strcmp(json_object_get_string(name), index) == 0) {
            *active = json_object_object_get_ex(g, "IndexStatus", &status) &&
                      strcmp(json_object_get_string(status), "ACTIVE") == 0;
            return 1;
        }
    }
    return 0;
}

/* DescribeTable: OD_OK with *active (the table and its GSIs are ACTIVE) and
 * *missing (the first needed GSI it lacks, or NULL); OD_ERR_NOT_FOUND. */
static od_status table_describe(dd *d, const char *name, const dd_gsi *gsi, size_t n_gsi,
                                int *active, const char **missing)
{
    int ok = 1;
    dd_reply r;
    json_object *table = NULL, *status = NULL;
    od_status s = dd_call(d, "DescribeTable", req_new(name, &ok), ok, &r);
    if (s != OD_OK && odaws_is_error(&r.resp, "ResourceNotFoundException"))
        s = OD_ERR_NOT_FOUND;
    if (s == OD_OK && !json_object_object_get_ex(r.body, "Table", &table))
        s = OD_ERR_UNAVAILABLE;
    if (s == OD_OK) {
        *active = json_object_object_get_ex(table, "TableStatus", &status) &&
                  strcmp(json_object_get_string(status), "ACTIVE") == 0;
        *missing = NULL;
        for (size_t i = 0; i < n_gsi && !*missing; i++) {
            int gsi_active = 0;
            if (!gsi_state(table, gsi[i].index, &gsi_active))
                *missing = gsi[i].index;
            *active &= gsi_active;
        }
    }
    reply_clear(d, &r);
    return s;
}

static json_object *key_schema(const char *hash, const char *range, int *ok)
{
    json_object *ks = json_object_new_array();
    json_object *h = jpush(ks, json_object_new_object(), ok);
    jstr(h, "AttributeName", hash, ok);
    jstr(h, "KeyType", "HASH", ok);
    if (range) {
        json_object *r = jpush(ks, json_object_new_object(), ok);
        jstr(r, "AttributeName", range, ok);
        jstr(r, "KeyType", "RANGE", ok);
    }
    if (!ks)
        *ok = 0;
    return ks;
}

static void attr_def(json_object *defs, const char *attr, int *ok)
{
    json_object *a = jpush(defs, json_object_new_object(), ok);
    jstr(a, "AttributeName", attr, ok);
    jstr(a, "AttributeType", "S", ok);
}

/* CreateTable: hash key pk, on-demand capacity, the GSIs (range pk,
 * projection ALL). Another instance creating it at once is fine. */
static od_status table_create(dd *d, const char *name, const dd_gsi *gsi, size_t n_gsi)
{
    int ok = 1;
    dd_reply r;
    json_object *req = req_new(name, &ok);
    jstr(req, "BillingMode", "PAY_PER_REQUEST", &ok);
    jput(req, "KeySchema", key_schema("pk", NULL, &ok), &ok);
    json_object *defs = jput(req, "AttributeDefinitions", json_object_new_array(), &ok);
    attr_def(defs, "pk", &ok);
    json_object *list = n_gsi ? jput(req, "GlobalSecondaryIndexes", json_object_new_array(), &ok)
                              : NULL;
    for (size_t i = 0; i < n_gsi; i++) {
        attr_def(defs, gsi[i].attr, &ok);
        json_object *g = jpush(list, json_object_new_object(), &ok);
        jstr(g, "IndexName", gsi[i].index, &ok);
        jput(g, "KeySchema", key_schema(gsi[i].attr, "pk", &ok), &ok);
        jstr(jchild(g, "Projection", &ok), "ProjectionType", "ALL", &ok);
    }
    od_status s = dd_call(d, "CreateTable", req, ok, &r);
    if (s != OD_OK && odaws_is_error(&r.resp, "ResourceInUseException"))
        s = OD_OK;
    reply_clear(d, &r);
    return s;
}

static od_status table_wait_active(dd *d, const char *name, const dd_gsi *gsi, size_t n_gsi)
{
    int64_t deadline = d->host->monotonic_ms() + DD_ACTIVE_WAIT_MS;
    for (;;) {
        int active = 0;
        const char *missing = NULL;
        od_status s = table_describe(d, name, gsi, n_gsi, &active, &missing);
        if (s == OD_OK && active && !missing)
            return OD_OK;
        if (s != OD_OK && s != OD_ERR_NOT_FOUND) /* NOT_FOUND: not visible yet */
            return s;
        if (d->host->monotonic_ms() > deadline) {
            d->host->log(d->mod, OD_LOG_ERROR, "DynamoDB table \"%s\" not ACTIVE after %lld s",
                         name, (long long)(DD_ACTIVE_WAIT_MS / 1000));
            return OD_ERR_UNAVAILABLE;
        }
        struct timespec ts = {0, DD_ACTIVE_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* The TTL status of a table ("ENABLED", "DISABLED", ...) into out. */
static od_status ttl_status(dd *d, const char *name, char *out, size_t cap)
{
    int ok = 1;
    dd_reply r;
    json_object *desc = NULL, *status = NULL;
    od_status s = dd_call(d, "DescribeTimeToLive", req_new(name, &ok), ok, &r);
    snprintf(out, cap, "DISABLED");
    if (s == OD_OK && json_object_object_get_ex(r.body, "TimeToLiveDescription", &desc) &&
        json_object_object_get_ex(desc, "TimeToLiveStatus", &status))
        snprintf(out, cap, "%s", json_object_get_string(status));
    reply_clear(d, &r);
    return s;
}

/* Op tokens expire through DynamoDB TTL on "exp". Without it they only
 * cost storage, so trouble here is a warning, never a failed start. */
static void tokens_ttl_ensure(dd *d)
{
    char status[32];
    int ok = 1;
    dd_reply r;
    if (ttl_status(d, d->tokens, status, sizeof status) != OD_OK ||
        strcmp(status, "ENABLED") == 0 || strcmp(status, "ENABLING") == 0)
        return;
    if (!odaws_create_missing(d->aws)) {
        d->host->log(d->mod, OD_LOG_WARN, "DynamoDB table \"%s\" has no TTL: old op tokens "
                     "stay forever; run `orderd --provision` or enable TTL on \"exp\"",
                     d->tokens);
        return;
    }
    json_object *req = req_new(d->tokens, &ok);
    json_object *spec = jchild(req, "TimeToLiveSpecification", &ok);
    jput(spec, "Enabled", json_object_new_boolean(1), &ok);
    jstr(spec, "AttributeName", "exp", &ok);
    if (dd_call(d, "UpdateTimeToLive", req, ok, &r) != OD_OK)
        d->host->log(d->mod, OD_LOG_WARN, "DynamoDB UpdateTimeToLive on \"%s\" failed (%s): "
                     "enable TTL on attribute \"exp\" by hand", d->tokens, r.resp.error_type);
    reply_clear(d, &r);
}

/* Make sure a table exists with the GSIs it needs: create it when
 * create_missing is set, else tell the operator how to provision. */
static od_status table_ensure(dd *d, const char *name, const dd_gsi *gsi, size_t n_gsi)
{
    int active = 0;
    const char *missing = NULL;
    od_status s = table_describe(d, name, gsi, n_gsi, &active, &missing);
    if (s == OD_ERR_NOT_FOUND && !odaws_create_missing(d->aws)) {
        d->host->log(d->mod, OD_LOG_ERROR, "DynamoDB table \"%s\" does not exist at %s (%s): "
                     "create the tables with `orderd --provision` (or set "
                     "storage.create_missing = true)", name, odaws_endpoint(d->aws),
                     odaws_region(d->aws));
        return OD_ERR_UNAVAILABLE;
    }
    if (s == OD_ERR_NOT_FOUND) {
        d->host->log(d->mod, OD_LOG_INFO, "creating DynamoDB table \"%s\"", name);
        s = table_create(d, name, gsi, n_gsi);
        return s == OD_OK ? table_wait_active(d, name, gsi, n_gsi) : s;
    }
    if (s != OD_OK)
        return s;
    if (missing) {
        d->host->log(d->mod, OD_LOG_ERROR, "DynamoDB table \"%s\" has no GSI \"%s\": it was "
                     "made for another definition; add the index (hash %s-style attribute, "
                     "range pk, projection ALL) or use another storage.table_prefix",
                     name, missing, strcmp(missing, "gsi_all") == 0 ? "sc" : "ix_<index>");
        return OD_ERR_INVALID;
    }
    return active ? OD_OK : table_wait_active(d, name, gsi, n_gsi);
}

/* ---- define_table ---- */

/* The DynamoDB names of a table being defined (t->def is set once it is in
 * the registry). */
static void table_fill(const dd *d, dd_table *t, const od_table_def *def)
{
    memset(t, 0, sizeof *t);
    snprintf(t->ddb, sizeof t->ddb, "%s%s", d->prefix, def->name);
    for (uint32_t i = 0; i < def->n_indexes; i++)
        snprintf(t->attr[i], sizeof t->attr[i], "ix_%s", def->indexes[i].name);
}

static od_status dd_define_table(void *self, const od_table_def *def)
{
    dd *d = self;
    const odm_table *old;
    od_status s = odm_tables_check(&d->tables, def, &old);
    if (s != OD_OK || old)
        return s;
    dd_table *t = &d->dd_tables[d->tables.n]; /* the id the table gets */
    dd_gsi gsi[DD_MAX_INDEXES + 1];
    table_fill(d, t, def);
    s = table_ensure(d, t->ddb, gsi, table_gsis(t, def, gsi));
    if (s == OD_OK)
        t->def = odm_tables_add(&d->tables, def, t);
    return s;
}

/* ---- get / lookup ---- */

static od_status dd_get(void *self, const char *table, const char *key, od_doc *out)
{
    dd *d = self;
    const dd_table *t = table_find(d, table);
    json_object *item = NULL;
    if (!t || !od_storage_valid_key(key) || !out)
        return OD_ERR_INVALID;
    od_status s = get_item(d, t->ddb, key, DOC_ATTRS, 3, &item);
    if (s == OD_OK)
        s = doc_from_item(d, item, out);
    json_object_put(item);
    return s;
}

static void claim_pk(const dd_table *t, const odm_index *x, const char *value,
                     char pk[DD_PK_MAX + 1])
{
    snprintf(pk, DD_PK_MAX + 1, "%s#%s#%s", t->def->name, x->name, value);
}

/* The claim names the owner; the owner's own ix_ attribute must still hold
 * the value (a put may have moved it between the two reads). */
static od_status dd_lookup(void *self, const char *table, const char *index, const char *value,
                           od_doc *out)
{
    dd *d = self;
    const dd_table *t = table_find(d, table);
    const odm_index *x = t ? odm_index_find(t->def, index) : NULL;
    if (!x || !x->unique || !odm_tables_valid_value(&d->tables, value) || !out)
        return OD_ERR_INVALID;
    char pk[DD_PK_MAX + 1];
    const char *owner = NULL, *held = NULL;
    const char *const claim_attrs[] = {"owner"};
    const char *const doc_attrs[] = {"pk", "body", "ver", ix_attr(t, x)};
    json_object *claim = NULL, *item = NULL;
    claim_pk(t, x, value, pk);
    od_status s = get_item(d, d->uniques, pk, claim_attrs, 1, &claim);
    if (s == OD_OK && odaws_av_get_s(claim, "owner", &owner, NULL) != OD_OK)
        s = OD_ERR_INTERNAL;
    if (s == OD_OK)
        s = get_item(d, t->ddb, owner, doc_attrs, 4, &item);
    if (s == OD_OK && (odaws_av_get_s(item, ix_attr(t, x), &held, NULL) != OD_OK ||
                       strcmp(held, value) != 0))
        s = OD_ERR_NOT_FOUND;
    if (s == OD_OK)
        s = doc_from_item(d, item, out);
    json_object_put(claim);
    json_object_put(item);
    return s;
}

/* ---- put ---- */

typedef struct put_args {
    const dd_table *t;
    const char *key;
    const char *body;
    size_t len;
    const od_index_value *idx;
    size_t n_idx;
    uint32_t cond;
    uint64_t expected;
    int want_version; /* the caller asked for the new version */
    uint64_t version; /* out */
} put_args;

static void cat(char *buf, size_t cap, const char *s)
{
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, "%s", s);
}

/* The UpdateItem that writes a document: body, scan marker, version + 1,
 * and each index attribute set when given or removed when not (sparse). */
static json_object *doc_update(const put_args *a, int *ok)
{
    const dd_table *t = a->t;
    char set[1024] = "SET #b = :b, #sc = :sc, #ver = if_not_exists(#ver, :zero) + :one";
    char remove[256] = "", alias[16], value_alias[16];
    json_object *req = req_new(t->ddb, ok);
    req_key(req, a->key, ok);
    ex_name(req, "#b", "body", ok);
    ex_name(req, "#sc", "sc", ok);
    ex_name(req, "#ver", "ver", ok);
    ex_value(req, ":b", odaws_av_s_len(a->body, a->len), ok);
    ex_value(req, ":sc", odaws_av_s("1"), ok);
    ex_value(req, ":zero", odaws_av_n(0), ok);
    ex_value(req, ":one", odaws_av_n(1), ok);
    for (uint32_t i = 0; i < t->def->n_indexes; i++) {
        const char *v = index_value(a->idx, a->n_idx, t->def->indexes[i].name);
        snprintf(alias, sizeof alias, "#x%u", i);
        snprintf(value_alias, sizeof value_alias, ":x%u", i);
        ex_name(req, alias, t->attr[i], ok);
        if (v) {
            cat(set, sizeof set, ", ");
            cat(set, sizeof set, alias);
            cat(set, sizeof set, " = ");
            cat(set, sizeof set, value_alias);
            ex_value(req, value_alias, odaws_av_s(v), ok);
        } else {
            cat(remove, sizeof remove, *remove ? ", " : " REMOVE ");
            cat(remove, sizeof remove, alias);
        }
    }
    cat(set, sizeof set, remove);
    jstr(req, "UpdateExpression", set, ok);
    return req;
}

/* A table without unique indexes: one conditional UpdateItem. */
static od_status put_single(dd *d, put_args *a)
{
    static const int COND[] = {COND_NONE, COND_ABSENT, COND_VERSION};
    int ok = 1;
    dd_reply r;
    int64_t ver = 0;
    /* UPDATED_NEW echoes the body too: ask only when the version is unknown. */
    int ask_version = a->cond == OD_PUT_UPSERT && a->want_version;
    json_object *req = doc_update(a, &ok);
    req_condition(req, COND[a->cond], a->expected, &ok);
    if (ask_version)
        jstr(req, "ReturnValues", "UPDATED_NEW", &ok);
    else
        jstr(req, "ReturnValuesOnConditionCheckFailure", "ALL_OLD", &ok);
    od_status s = dd_call(d, "UpdateItem", req, ok, &r);
    if (s == OD_OK && ask_version) {
        json_object *attrs = NULL;
        json_object_object_get_ex(r.body, "Attributes", &attrs);
        s = odaws_av_get_n(attrs, "ver", &ver) == OD_OK ? OD_OK : OD_ERR_INTERNAL;
        a->version = (uint64_t)ver;
    } else if (s == OD_OK) {
        a->version = a->cond == OD_PUT_IF_ABSENT ? 1 : a->expected + 1;
    } else if (odaws_is_error(&r.resp, "ConditionalCheckFailedException")) {
        s = a->cond == OD_PUT_IF_ABSENT ? OD_ERR_EXISTS
            : failed_item(r.body, (size_t)-1) ? OD_ERR_CONFLICT
                                              : OD_ERR_NOT_FOUND;
    }
    reply_clear(d, &r);
    return s;
}

/* The current version and unique values of a document, read strongly
 * (NULL *item: no such document). */
static od_status read_current(dd *d, const dd_table *t, const char *key, json_object **item,
                              int64_t *version)
{
    const char *attrs[2 + DD_MAX_INDEXES] = {"pk", "ver"};
    size_t n = 2;
    for (uint32_t i = 0; i < t->def->n_indexes; i++)
        if (t->def->indexes[i].unique)
            attrs[n++] = t->attr[i];
    *version = 0;
    od_status s = get_item(d, t->ddb, key, attrs, n, item);
    if (s == OD_ERR_NOT_FOUND)
        return OD_OK;
    if (s == OD_OK && (odaws_av_get_n(*item, "ver", version) != OD_OK || *version < 1))
        s = OD_ERR_INTERNAL;
    return s;
}

/* put()'s condition against what we read (old NULL: no such document). */
static od_status cond_verdict(const put_args *a, const json_object *old, int64_t ver)
{
    if (old && a->cond == OD_PUT_IF_ABSENT)
        return OD_ERR_EXISTS;
    if (!old && a->cond == OD_PUT_IF_VERSION)
        return OD_ERR_NOT_FOUND;
    if (old && a->cond == OD_PUT_IF_VERSION && (uint64_t)ver != a->expected)
        return OD_ERR_CONFLICT;
    return OD_OK;
}

/* {"Put": claim} or {"Delete": claim}, valid only if the claim is free or
 * already ours, or (also != NULL) held by the document that gives the value
 * up earlier in the same batch. */
static json_object *claim_op(const dd *d, const dd_table *t, const odm_index *x,
                             const char *value, const char *owner, const char *also, int put,
                             int *ok)
{
    char pk[DD_PK_MAX + 1];
    json_object *op = json_object_new_object();
    json_object *body = jput(op, put ? "Put" : "Delete", req_new(d->uniques, ok), ok);
    claim_pk(t, x, value, pk);
    if (put) {
        json_object *item = jchild(body, "Item", ok);
        jput(item, "pk", odaws_av_s(pk), ok);
        jput(item, "owner", odaws_av_s(owner), ok);
    } else {
        req_key(body, pk, ok);
    }
    jstr(body, "ConditionExpression", also ? "attribute_not_exists(#pk) OR #o = :k OR #o = :k2"
                                           : "attribute_not_exists(#pk) OR #o = :k", ok);
    ex_name(body, "#pk", "pk", ok);
    ex_name(body, "#o", "owner", ok);
    ex_value(body, ":k", odaws_av_s(owner), ok);
    if (also)
        ex_value(body, ":k2", odaws_av_s(also), ok);
    if (!op)
        *ok = 0;
    return op;
}

/* What each TransactItems entry is and which put it belongs to, to read the
 * positional CancellationReasons. In order of precedence within one put:
 * OP_DOC the document pinned to the version read (failing: it moved, read
 * again), OP_DOC_ABSENT / OP_DOC_VERSION the document under the caller's own
 * condition (nothing read), the unique claims, and OP_STOP, an entry no
 * item passes (batch_round). */
enum { OP_DOC, OP_DOC_ABSENT, OP_DOC_VERSION, OP_CLAIM, OP_RELEASE, OP_STOP };

#define DD_TXN_MAX 100 /* items per TransactWriteItems */
/* DynamoDB caps a transaction at 4 MB of items: bodies plus DD_ITEM_EXTRA
 * per item (the margin DD_BODY_MAX keeps for key, names and index values). */
#define DD_TXN_BYTES_MAX (4 * 1000 * 1000)
#define DD_ITEM_EXTRA (400 * 1024 - DD_BODY_MAX)

typedef struct claim_txn {
    json_object *items;
    uint8_t kinds[DD_TXN_MAX];
    uint8_t put[DD_TXN_MAX]; /* the batch index of the put the entry is for */
    size_t n;
    od_status stop; /* the verdict OP_STOP stands for */
} claim_txn;

static void txn_add(claim_txn *x, json_object *op, int kind, size_t put, int *ok)
{
    if (x->n == DD_TXN_MAX) { /* put_batch's bound keeps us below */
        json_object_put(op);
        *ok = 0;
    } else if (jpush(x->items, op, ok)) {
        x->kinds[x->n] = (uint8_t)kind;
        x->put[x->n++] = (uint8_t)put;
    }
}

/* One put of a batch (put() is a batch of one), as planned for a round. */
typedef struct batch_put {
    put_args a;
    int pinned;       /* read first, the write conditioned on that read */
    json_object *old; /* pinned: the current item (version, unique values) or NULL */
    int64_t ver;      /* pinned: its version, 0 when there is none */
} batch_put;

/* The other put of the batch whose document holds value for u by what we
 * read (a unique value has one holder), else n. */
static size_t batch_holder(const batch_put *b, size_t n, size_t self, const odm_index *u,
                           const char *value)
{
    const char *attr = ix_attr(b[self].a.t, u);
    for (size_t j = 0; j < n; j++) {
        const char *was = NULL;
        if (j != self && b[j].a.t == b[self].a.t && b[j].old &&
            odaws_av_get_s(b[j].old, attr, &was, NULL) == OD_OK && strcmp(was, value) == 0)
            return j;
    }
    return n;
}

/* The first put of b[from..to) giving value for u of t, else to. */
static size_t batch_claimer(const batch_put *b, size_t from, size_t to, const dd_table *t,
                            const odm_index *u, const char *value)
{
    for (size_t j = from; j < to; j++) {
        const char *v = b[j].a.t == t ? index_value(b[j].a.idx, b[j].a.n_idx, u->name) : NULL;
        if (v && strcmp(v, value) == 0)
            return j;
    }
    return to;
}

/* Puts apply in order, as if put() ran for each: a unique value that an
 * earlier put of the batch takes, or that a later one still holds, is
 * taken for put i. Only values held outside the batch are left to
 * DynamoDB. */
static od_status batch_taken(const batch_put *b, size_t n, size_t i)
{
    const put_args *a = &b[i].a;
    for (size_t k = 0; k < a->n_idx; k++) {
        const odm_index *u = odm_index_find(a->t->def, a->idx[k].index);
        const char *v = a->idx[k].value;
        size_t holder = u->unique ? batch_holder(b, n, i, u, v) : n;
        if (u->unique && (batch_claimer(b, 0, i, a->t, u, v) < i || (holder < n && holder > i)))
            return OD_ERR_EXISTS;
    }
    return OD_OK;
}

/* Claim put i's new unique values, release its old ones that changed. A
 * transaction names an item once, so a value moving between two documents
 * of the batch is one claim: the taker's, allowed to replace the giver's
 * (batch_taken made sure the giver comes first). */
static void txn_claims(const dd *d, const batch_put *b, size_t n, size_t i, claim_txn *x,
                       int *ok)
{
    const put_args *a = &b[i].a;
    for (uint32_t k = 0; k < a->t->def->n_indexes; k++) {
        const odm_index *u = &a->t->def->indexes[k];
        if (!u->unique)
            continue;
        const char *now = index_value(a->idx, a->n_idx, u->name), *was = NULL;
        if (b[i].old && odaws_av_get_s(b[i].old, a->t->attr[k], &was, NULL) != OD_OK)
            was = NULL;
        if (now) {
            size_t giver = batch_holder(b, n, i, u, now);
            txn_add(x, claim_op(d, a->t, u, now, a->key, giver < n ? b[giver].a.key : NULL, 1,
                                ok), OP_CLAIM, i, ok);
        }
        if (was && (!now || strcmp(was, now) != 0) &&
            batch_claimer(b, i + 1, n, a->t, u, was) == n)
            txn_add(x, claim_op(d, a->t, u, was, a->key, NULL, 0, ok), OP_RELEASE, i, ok);
    }
}

/* The document's Update: pinned to what we read, or under the caller's
 * condition (ALL_OLD tells a missing document from another version). */
static void txn_doc(claim_txn *x, const batch_put *p, size_t i, int *ok)
{
    const put_args *a = &p->a;
    int kind = OP_DOC;
    json_object *op = json_object_new_object();
    json_object *update = jput(op, "Update", doc_update(a, ok), ok);
    if (p->pinned) {
        req_condition(update, p->old ? COND_VERSION : COND_ABSENT, (uint64_t)p->ver, ok);
    } else if (a->cond == OD_PUT_IF_ABSENT) {
        req_condition(update, COND_ABSENT, 0, ok);
        kind = OP_DOC_ABSENT;
    } else if (a->cond == OD_PUT_IF_VERSION) {
        req_condition(update, COND_VERSION, a->expected, ok);
        jstr(update, "ReturnValuesOnConditionCheckFailure", "ALL_OLD", ok);
        kind = OP_DOC_VERSION;
    }
    txn_add(x, op, kind, i, ok);
}

/* An entry no item passes (see batch_round). An Update rather than a
 * ConditionCheck, which would need dynamodb:ConditionCheckItem in every
 * IAM policy; it could only ever set the scan marker a document has. */
static json_object *stop_op(const put_args *a, int *ok)
{
    json_object *op = json_object_new_object();
    json_object *never = jput(op, "Update", req_new(a->t->ddb, ok), ok);
    req_key(never, a->key, ok);
    jstr(never, "UpdateExpression", "SET #sc = :sc", ok);
    jstr(never, "ConditionExpression", "attribute_exists(#pk) AND attribute_not_exists(#pk)", ok);
    ex_name(never, "#pk", "pk", ok);
    ex_name(never, "#sc", "sc", ok);
    ex_value(never, ":sc", odaws_av_s("1"), ok);
    if (!op)
        *ok = 0;
    return op;
}

/* Map a cancelled transaction. The first put (in batch order) with a
 * failed condition decides, its document before its claims: a pinned
 * document that moved -> DD_RETRY; the caller's condition -> EXISTS,
 * CONFLICT or NOT_FOUND; a value claimed by a document outside the batch ->
 * EXISTS. *failed: that put. */
static od_status txn_verdict(const dd *d, const claim_txn *x, const dd_reply *r, size_t *failed)
{
    size_t who = OD_BATCH_NONE, at = 0, n = reason_count(r->body);
    for (size_t i = 0; i < x->n && i < n; i++) {
        if (strcmp(reason_code(r->body, i), "ConditionalCheckFailed") != 0)
            continue;
        if (who != OD_BATCH_NONE && x->put[i] != who)
            break;
        if (who == OD_BATCH_NONE || x->kinds[i] < x->kinds[at])
            at = i;
        who = x->put[i];
    }
    if (who == OD_BATCH_NONE)
        return cancel_other(r);
    *failed = who;
    switch (x->kinds[at]) {
    case OP_DOC:
        return DD_RETRY;
    case OP_DOC_ABSENT:
    case OP_CLAIM:
        return OD_ERR_EXISTS;
    case OP_DOC_VERSION:
        return failed_item(r->body, at) ? OD_ERR_CONFLICT : OD_ERR_NOT_FOUND;
    case OP_STOP:
        return x->stop;
    default:
        d->host->log(d->mod, OD_LOG_ERROR, "DynamoDB: a unique claim of this document is "
                     "owned by another one (%s)", r->resp.error_message);
        return OD_ERR_INTERNAL;
    }
}

static od_status run_claim_txn(dd *d, claim_txn *x, int ok, size_t *failed)
{
    dd_reply r;
    json_object *req = json_object_new_object();
    jput(req, "TransactItems", x->items, &ok);
    od_status s = dd_call(d, "TransactWriteItems", req, ok, &r);
    if (s != OD_OK && odaws_is_error(&r.resp, "TransactionCanceledException"))
        s = txn_verdict(d, x, &r, failed);
    else if (s == OD_OK && x->stop != OD_OK)
        s = OD_ERR_INTERNAL; /* cannot happen: OP_STOP fails every transaction */
    reply_clear(d, &r);
    return s;
}

/* Read what the pinned puts are conditioned on. */
static od_status batch_read(dd *d, batch_put *b, size_t n)
{
    od_status s = OD_OK;
    for (size_t i = 0; i < n && s == OD_OK; i++)
        if (b[i].pinned)
            s = read_current(d, b[i].a.t, b[i].a.key, &b[i].old, &b[i].ver);
    return s;
}

/* One round: read, plan in put order, then one transaction. A put refused
 * by what we read (its condition, or a unique value the batch itself
 * takes) ends the plan: when an earlier put may still fail in DynamoDB,
 * the earlier puts go in with an OP_STOP for this one, a transaction that
 * commits nothing and tells which put fails first. */
static od_status batch_round(dd *d, batch_put *b, size_t n, size_t *failed)
{
    claim_txn x = {.items = json_object_new_array()};
    int ok = 1, may_fail = 0;
    size_t i = 0;
    od_status s = batch_read(d, b, n);
    for (; s == OD_OK && i < n; i++) {
        if (b[i].pinned && (x.stop = cond_verdict(&b[i].a, b[i].old, b[i].ver)) == OD_OK)
            x.stop = batch_taken(b, n, i);
        if (x.stop != OD_OK)
            break;
        txn_doc(&x, &b[i], i, &ok);
        txn_claims(d, b, n, i, &x, &ok);
        may_fail |= b[i].pinned || b[i].a.cond != OD_PUT_UPSERT;
    }
    if (s != OD_OK || (x.stop != OD_OK && !may_fail)) {
        json_object_put(x.items);
        *failed = i;
        return s != OD_OK ? s : x.stop;
    }
    if (x.stop != OD_OK)
        txn_add(&x, stop_op(&b[i].a, &ok), OP_STOP, i, &ok);
    s = run_claim_txn(d, &x, ok, failed);
    for (i = 0; s == OD_OK && i < n; i++) {
        const put_args *a = &b[i].a;
        b[i].a.version = b[i].pinned ? (uint64_t)b[i].ver + 1
                         : a->cond == OD_PUT_IF_VERSION ? a->expected + 1
                         : a->cond == OD_PUT_IF_ABSENT      ? 1
                                                            : 0; /* not asked for */
    }
    return s;
}

/* Rounds until no pinned document moved between our read and our write. */
static od_status batch_run(dd *d, batch_put *b, size_t n, size_t *failed)
{
    for (unsigned round = 0; round < DD_CONFLICT_TRIES; round++) {
        od_status s = batch_round(d, b, n, failed);
        for (size_t i = 0; i < n; i++) {
            json_object_put(b[i].old);
            b[i].old = NULL;
            b[i].ver = 0;
        }
        if (s != DD_RETRY)
            return s;
        backoff(d, round);
    }
    d->host->log(d->mod, OD_LOG_WARN, "DynamoDB put: documents changed %d times while writing",
                 DD_CONFLICT_TRIES);
    return OD_ERR_UNAVAILABLE;
}

/* put()'s argument checks; *t the table. */
static od_status put_check(const dd *d, const char *table, const char *key, const char *body,
                           size_t len, const od_index_value *idx, size_t n_idx, uint32_t cond,
                           const dd_table **t)
{
    *t = table_find(d, table);
    if (!*t || !od_storage_valid_key(key) || !body || cond > OD_PUT_IF_VERSION ||
        !odm_tables_values(&d->tables, (*t)->def, idx, n_idx, NULL))
        return OD_ERR_INVALID;
    if (len > DD_BODY_MAX)
        return OD_ERR_TOO_LARGE;
    return valid_utf8(body, len) ? OD_OK : OD_ERR_INVALID;
}

/* A table without unique indexes: one conditional UpdateItem. With unique
 * indexes: read, then write document and claims in one transaction
 * conditioned on the read; again if the document moved. */
static od_status dd_put(void *self, const char *table, const char *key, const char *body,
                        size_t len, const od_index_value *idx, size_t n_idx, uint32_t cond,
                        uint64_t expected, uint64_t *new_version)
{
    dd *d = self;
    const dd_table *t = NULL;
    size_t failed = OD_BATCH_NONE;
    od_status s = put_check(d, table, key, body, len, idx, n_idx, cond, &t);
    if (s != OD_OK)
        return s;
    batch_put b = {{t, key, body, len, idx, n_idx, cond, expected, new_version != NULL, 0}, 1,
                   NULL, 0};
    s = t->def->n_unique ? batch_run(d, &b, 1, &failed) : put_single(d, &b.a);
    if (s == OD_OK && new_version)
        *new_version = b.a.version;
    return s;
}

/* ---- put_batch ----
 * One TransactWriteItems for the whole batch. A put on a table with unique
 * indexes (or an upsert whose version is wanted: a transaction returns no
 * values) is read first and pinned to that read, as put() does; any other
 * put carries its own condition, so a batch of such puts (the order and its
 * idempotency record) is that one call and no read. */

/* Entries the batch's transaction may need: the document, a claim per
 * unique value given, a release per unique index of the table. */
static size_t put_items(const dd_table *t, const od_put *p)
{
    size_t n = 1 + t->def->n_unique;
    for (size_t k = 0; k < p->n_idx; k++)
        n += odm_index_find(t->def, p->idx[k].index)->unique;
    return n;
}

static od_status batch_check(const dd *d, const od_put *const *puts, size_t n, int pin_upserts,
                             batch_put *b)
{
    size_t items = 0, bytes = 0;
    /* Also what DynamoDB demands: a transaction names an item once. */
    if (!od_storage_valid_batch(puts, n))
        return OD_ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        const od_put *p = puts[i];
        const dd_table *t = NULL;
        od_status s = put_check(d, p->table, p->key, p->body, p->len, p->idx, p->n_idx, p->cond,
                                &t);
        if (s != OD_OK)
            return s;
        b[i] = (batch_put){{t, p->key, p->body, p->len, p->idx, p->n_idx, p->cond, p->expected,
                            pin_upserts, 0},
                           t->def->n_unique || (pin_upserts && p->cond == OD_PUT_UPSERT), NULL, 0};
        items += put_items(t, p);
        bytes += p->len;
    }
    /* A bound from the arguments alone, so a batch never fails for what
     * the documents held before. */
    if (items > DD_TXN_MAX || bytes + items * DD_ITEM_EXTRA > DD_TXN_BYTES_MAX)
        return OD_ERR_TOO_LARGE;
    return OD_OK;
}

static od_status dd_put_batch(void *self, const od_put *const *puts, size_t n,
                              const od_outbox *msg, uint64_t *versions, size_t *failed)
{
    dd *d = self;
    batch_put b[OD_BATCH_MAX];
    size_t at = OD_BATCH_NONE;
    if (failed)
        *failed = OD_BATCH_NONE;
    if (msg)
        return OD_ERR_UNSUPPORTED; /* no queue's messages live in DynamoDB (store() NULL) */
    od_status s = batch_check(d, puts, n, versions != NULL, b);
    if (s != OD_OK)
        return s;
    if (n == 1 && !b[0].a.t->def->n_unique) { /* put()'s single UpdateItem is atomic already */
        s = put_single(d, &b[0].a);
        at = 0;
    } else {
        s = batch_run(d, b, n, &at);
    }
    if (failed && (s == OD_ERR_EXISTS || s == OD_ERR_CONFLICT || s == OD_ERR_NOT_FOUND))
        *failed = at;
    for (size_t i = 0; s == OD_OK && versions && i < n; i++)
        versions[i] = b[i].a.version;
    return s;
}

/* ---- del ---- */

static od_status del_single(dd *d, const dd_table *t, const char *key, uint64_t expected)
{
    int ok = 1;
    dd_reply r;
    json_object *req = req_new(t->ddb, &ok);
    req_key(req, key, &ok);
    req_condition(req, expected ? COND_VERSION : COND_EXISTS, expected, &ok);
    jstr(req, "ReturnValuesOnConditionCheckFailure", "ALL_OLD", &ok);
    od_status s = dd_call(d, "DeleteItem", req, ok, &r);
    if (s != OD_OK && odaws_is_error(&r.resp, "ConditionalCheckFailedException"))
        s = failed_item(r.body, (size_t)-1) ? OD_ERR_CONFLICT : OD_ERR_NOT_FOUND;
    reply_clear(d, &r);
    return s;
}

static od_status del_claimed_once(dd *d, const dd_table *t, const char *key, uint64_t expected,
                                  json_object *old, int64_t ver)
{
    if (!old)
        return OD_ERR_NOT_FOUND;
    if (expected && (uint64_t)ver != expected)
        return OD_ERR_CONFLICT;
    int ok = 1;
    size_t failed = OD_BATCH_NONE;
    claim_txn x = {.items = json_object_new_array()};
    batch_put self = {.a = {.t = t, .key = key}, .old = old}; /* no values: release all */
    json_object *doc = json_object_new_object();
    json_object *del = jput(doc, "Delete", req_new(t->ddb, &ok), &ok);
    req_key(del, key, &ok);
    req_condition(del, COND_VERSION, (uint64_t)ver, &ok);
    txn_add(&x, doc, OP_DOC, 0, &ok);
    txn_claims(d, &self, 1, 0, &x, &ok);
    return run_claim_txn(d, &x, ok, &failed);
}

static od_status del_claimed(dd *d, const dd_table *t, const char *key, uint64_t expected)
{
    for (unsigned round = 0; round < DD_CONFLICT_TRIES; round++) {
        json_object *old = NULL;
        int64_t ver = 0;
        od_status s = read_current(d, t, key, &old, &ver);
        if (s == OD_OK)
            s = del_claimed_once(d, t, key, expected, old, ver);
        json_object_put(old);
        if (s != DD_RETRY)
            return s;
        backoff(d, round);
    }
    return OD_ERR_UNAVAILABLE;
}

static od_status dd_del(void *self, const char *table, const char *key, uint64_t expected)
{
    dd *d = self;
    const dd_table *t = table_find(d, table);
    if (!t || !od_storage_valid_key(key))
        return OD_ERR_INVALID;
    return t->def->n_unique ? del_claimed(d, t, key, expected) : del_single(d, t, key, expected);
}

/* ---- cursors ----
 * "d1." + base64url(table "\n" index "\n" last key), index "" for scan.
 * DynamoDB's LastEvaluatedKey on a GSI is (pk, hash attribute); the hash
 * value is the query's own, so the last key is all a cursor must carry,
 * which keeps it under OD_CURSOR_MAX for 255-byte keys (keys and names
 * cannot contain "\n"). */

#define DD_CURSOR_RAW (DD_NAME_MAX * 2 + OD_KEY_MAX + 2)

static char *cursor_encode(const od_host_api *h, const char *table, const char *index,
                           const char *key)
{
    char raw[DD_CURSOR_RAW + 1], buf[OD_CURSOR_MAX + 1] = DD_CURSOR_TAG;
    int n = snprintf(raw, sizeof raw, "%s\n%s\n%s", table, index, key);
    odm_b64url_encode(raw, (size_t)n, buf + strlen(DD_CURSOR_TAG));
    return h->strdup(buf);
}

/* The key in a cursor made for this table and index; 0 if it is not one. */
static int cursor_decode(const char *cursor, const char *table, const char *index,
                         char key[OD_KEY_MAX + 1])
{
    size_t tag = strlen(DD_CURSOR_TAG), n = strnlen(cursor, OD_CURSOR_MAX + 1);
    char raw[DD_CURSOR_RAW + 1];
    if (n > OD_CURSOR_MAX || strncmp(cursor, DD_CURSOR_TAG, tag) != 0)
        return 0;
    long len = odm_b64url_decode(cursor + tag, n - tag, (unsigned char *)raw, DD_CURSOR_RAW);
    if (len < 0)
        return 0;
    raw[len] = '\0';
    if (strlen(raw) != (size_t)len)
        return 0;
    char *first = strchr(raw, '\n'), *second = first ? strchr(first + 1, '\n') : NULL;
    if (!second)
        return 0;
    *first = *second = '\0';
    if (strcmp(raw, table) != 0 || strcmp(first + 1, index) != 0 || !od_storage_valid_key(second + 1))
        return 0;
    snprintf(key, OD_KEY_MAX + 1, "%s", second + 1);
    return 1;
}

/* ---- scan / query ---- */

typedef struct page_req {
    const dd_table *t;
    const char *cursor_index; /* "" for scan */
    char gsi[DD_ATTR_MAX + 1];
    char hash_attr[DD_ATTR_MAX + 1];
    const char *hash_value;
    uint32_t limit;
    uint32_t desc;
} page_req;

/* Query one GSI page of at most `want` items from after `start` (NULL:
 * the beginning); appends to docs and sets *next to the LastEvaluatedKey's
 * pk (host memory) or NULL. */
static od_status page_call(dd *d, const page_req *p, const char *start, uint32_t want,
                           od_doc *docs, size_t *n, char **next)
{
    int ok = 1;
    dd_reply r;
    json_object *req = req_new(p->t->ddb, &ok), *items = NULL, *lek = NULL;
    const char *pk = NULL;
    jstr(req, "IndexName", p->gsi, &ok);
    jstr(req, "KeyConditionExpression", "#h = :h", &ok);
    jstr(req, "ProjectionExpression", "#pk, #b, #ver", &ok);
    ex_name(req, "#h", p->hash_attr, &ok);
    ex_name(req, "#pk", "pk", &ok);
    ex_name(req, "#b", "body", &ok);
    ex_name(req, "#ver", "ver", &ok);
    ex_value(req, ":h", odaws_av_s(p->hash_value), &ok);
    jput(req, "ScanIndexForward", json_object_new_boolean(!p->desc), &ok);
    jput(req, "Limit", json_object_new_int64(want), &ok);
    if (start) {
        json_object *esk = jchild(req, "ExclusiveStartKey", &ok);
        jput(esk, "pk", odaws_av_s(start), &ok);
        jput(esk, p->hash_attr, odaws_av_s(p->hash_value), &ok);
    }
    *next = NULL;
    od_status s = dd_call(d, "Query", req, ok, &r);
    if (s == OD_OK && !json_object_object_get_ex(r.body, "Items", &items))
        s = OD_ERR_UNAVAILABLE;
    size_t count = s == OD_OK ? json_object_array_length(items) : 0;
    for (size_t i = 0; i < count && i < want && s == OD_OK; i++) {
        s = doc_from_item(d, json_object_array_get_idx(items, i), &docs[*n]);
        *n += s == OD_OK;
    }
    if (s == OD_OK && json_object_object_get_ex(r.body, "LastEvaluatedKey", &lek)) {
        if (odaws_av_get_s(lek, "pk", &pk, NULL) != OD_OK)
            s = OD_ERR_INTERNAL;
        else if (!(*next = d->host->strdup(pk)))
            s = OD_ERR_NOMEM;
    }
    reply_clear(d, &r);
    return s;
}

/* Collect limit + 1 items (following LastEvaluatedKey through empty or
 * short pages, never truncating silently): the extra one only tells that a
 * next page exists, so the last page never ends with an empty one. */
static od_status page_run(dd *d, const page_req *p, const char *after, od_page *out)
{
    const od_host_api *h = d->host;
    od_doc *docs = h->calloc((size_t)p->limit + 1, sizeof *docs);
    char *start = after ? h->strdup(after) : NULL;
    size_t n = 0;
    od_status s = docs && (start || !after) ? OD_OK : OD_ERR_NOMEM;
    do {
        char *next = NULL;
        if (s == OD_OK)
            s = page_call(d, p, start, p->limit + 1 - (uint32_t)n, docs, &n, &next);
        h->free(start);
        start = next;
    } while (s == OD_OK && start && n <= p->limit);
    h->free(start);
    if (s == OD_OK && n > p->limit) {
        od_doc_clear(h, &docs[--n]);
        out->next = cursor_encode(h, p->t->def->name, p->cursor_index, docs[n - 1].key);
        s = out->next ? OD_OK : OD_ERR_NOMEM;
    }
    if (s != OD_OK) {
        for (size_t i = 0; docs && i < n; i++)
            od_doc_clear(h, &docs[i]);
        h->free(docs);
        return s;
    }
    out->items = docs;
    out->count = n;
    return OD_OK;
}

static od_status page_start(dd *d, page_req *p, const char *cursor, od_page *out)
{
    char after[OD_KEY_MAX + 1];
    if (cursor && !cursor_decode(cursor, p->t->def->name, p->cursor_index, after))
        return OD_ERR_INVALID;
    memset(out, 0, sizeof *out);
    return page_run(d, p, cursor ? after : NULL, out);
}

/* A unique index holds at most one document: its page is a lookup. */
static od_status query_unique(dd *d, const char *table, const char *index, const char *value,
                              const char *cursor, od_page *out)
{
    od_doc doc = {0};
    if (cursor)
        return OD_ERR_INVALID; /* such a page never has a next one */
    od_status s = dd_lookup(d, table, index, value, &doc);
    memset(out, 0, sizeof *out);
    if (s == OD_ERR_NOT_FOUND)
        return OD_OK;
    if (s == OD_OK && !(out->items = d->host->calloc(1, sizeof *out->items))) {
        od_doc_clear(d->host, &doc);
        s = OD_ERR_NOMEM;
    }
    if (s == OD_OK) {
        out->items[0] = doc;
        out->count = 1;
    }
    return s;
}

static od_status dd_query(void *self, const char *table, const char *index, const char *value,
                          const char *cursor, uint32_t limit, uint32_t descending, od_page *out)
{
    dd *d = self;
    const dd_table *t = table_find(d, table);
    const odm_index *x = t ? odm_index_find(t->def, index) : NULL;
    if (!x || !odm_tables_valid_value(&d->tables, value) || limit < 1 || limit > DD_PAGE_MAX ||
        descending > 1 || !out)
        return OD_ERR_INVALID;
    if (x->unique)
        return query_unique(d, table, index, value, cursor, out);
    page_req p = {.t = t, .cursor_index = x->name, .hash_value = value, .limit = limit,
                  .desc = descending};
    snprintf(p.gsi, sizeof p.gsi, "gsi_%s", x->name);
    snprintf(p.hash_attr, sizeof p.hash_attr, "%s", ix_attr(t, x));
    return page_start(d, &p, cursor, out);
}

static od_status dd_scan(void *self, const char *table, const char *cursor, uint32_t limit,
                         uint32_t descending, od_page *out)
{
    dd *d = self;
    const dd_table *t = table_find(d, table);
    if (!t || limit < 1 || limit > DD_PAGE_MAX || descending > 1 || !out)
        return OD_ERR_INVALID;
    page_req p = {.t = t, .cursor_index = "", .gsi = "gsi_all", .hash_attr = "sc",
                  .hash_value = "1", .limit = limit, .desc = descending};
    return page_start(d, &p, cursor, out);
}

/* ---- counters ---- */

static int counter_pk(const char *table, const char *key, char pk[DD_PK_MAX + 1])
{
    if (!od_storage_valid_name(table) || !od_storage_valid_key(key))
        return 0;
    snprintf(pk, DD_PK_MAX + 1, "%s#%s", table, key);
    return 1;
}

static json_object *av_n128(__int128 v)
{
    char buf[48], *p = buf + sizeof buf - 1;
    unsigned __int128 u = v < 0 ? -(unsigned __int128)v : (unsigned __int128)v;
    *p = '\0';
    do {
        *--p = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    json_object *av = json_object_new_object();
    int ok = 1;
    jstr(av, "N", p, &ok);
    if (!ok) {
        json_object_put(av);
        return NULL;
    }
    return av;
}

typedef struct ctr_args {
    char pk[DD_PK_MAX + 1];
    int64_t delta, floor;
    const char *token;
    int64_t result; /* out */
    int32_t applied; /* out */
} ctr_args;

static od_status counter_read(dd *d, const char *pk, int64_t *value)
{
    const char *const attrs[] = {"v"};
    json_object *item = NULL;
    od_status s = get_item(d, d->counters, pk, attrs, 1, &item);
    if (s == OD_OK && odaws_av_get_n(item, "v", value) != OD_OK)
        s = OD_ERR_INTERNAL;
    json_object_put(item);
    return s;
}

/* value + delta must land in [floor, INT64_MAX] and never overflow: the
 * bounds on the old value, computed in 128 bits (DynamoDB numbers are
 * decimal with 38 digits, so they compare exactly). 0: no old value fits. */
static int counter_bounds(int64_t delta, int64_t floor, __int128 *lo, __int128 *hi)
{
    __int128 by_floor = (__int128)floor - delta, by_min = (__int128)INT64_MIN - delta;
    *lo = by_floor > by_min ? by_floor : by_min;
    *hi = delta > 0 ? (__int128)INT64_MAX - delta : (__int128)INT64_MAX;
    return *lo <= *hi;
}

/* The counter UpdateItem, plain or as a transaction entry. */
static json_object *counter_update(const dd *d, const ctr_args *a, __int128 lo, __int128 hi,
                                   int *ok)
{
    json_object *req = req_new(d->counters, ok);
    req_key(req, a->pk, ok);
    jstr(req, "UpdateExpression", "SET #v = #v + :d", ok);
    jstr(req, "ConditionExpression", "#v BETWEEN :lo AND :hi", ok);
    jstr(req, "ReturnValuesOnConditionCheckFailure", "ALL_OLD", ok);
    ex_name(req, "#v", "v", ok);
    ex_value(req, ":d", odaws_av_n(a->delta), ok);
    ex_value(req, ":lo", av_n128(lo), ok);
    ex_value(req, ":hi", av_n128(hi), ok);
    return req;
}

/* A refused change: no counter, an overflow (INVALID, as the other
 * backends) or the floor. old: the item from ALL_OLD or NULL. */
static od_status counter_refused(ctr_args *a, json_object *old)
{
    int64_t v = 0, sum = 0;
    if (!old || odaws_av_get_n(old, "v", &v) != OD_OK)
        return OD_ERR_NOT_FOUND;
    a->result = v;
    return __builtin_add_overflow(v, a->delta, &sum) ? OD_ERR_INVALID : OD_ERR_CONFLICT;
}

static od_status counter_add_plain(dd *d, ctr_args *a, __int128 lo, __int128 hi)
{
    int ok = 1;
    dd_reply r;
    json_object *req = counter_update(d, a, lo, hi, &ok), *attrs = NULL;
    jstr(req, "ReturnValues", "UPDATED_NEW", &ok);
    od_status s = dd_call(d, "UpdateItem", req, ok, &r);
    if (s == OD_OK) {
        json_object_object_get_ex(r.body, "Attributes", &attrs);
        s = odaws_av_get_n(attrs, "v", &a->result) == OD_OK ? OD_OK : OD_ERR_INTERNAL;
        a->applied = s == OD_OK;
    } else if (odaws_is_error(&r.resp, "ConditionalCheckFailedException")) {
        s = counter_refused(a, failed_item(r.body, (size_t)-1));
    }
    reply_clear(d, &r);
    return s;
}

/* The token entry: refused when the token was recorded before. */
static json_object *token_put(const dd *d, const ctr_args *a, const char *table, int *ok)
{
    char pk[DD_PK_MAX + 1];
    snprintf(pk, sizeof pk, "%s#%s", table, a->token);
    json_object *req = req_new(d->tokens, ok);
    json_object *item = jchild(req, "Item", ok);
    jput(item, "pk", odaws_av_s(pk), ok);
    jput(item, "exp", odaws_av_n(d->host->now_ms() / 1000 + DD_TOKEN_TTL_S), ok);
    jstr(req, "ConditionExpression", "attribute_not_exists(#pk)", ok);
    ex_name(req, "#pk", "pk", ok);
    return req;
}

/* Counter change and token record in one transaction. The new value is
 * read afterwards (a transaction returns none), so under concurrent changes
 * *result may already include later ones. */
static od_status counter_add_token(dd *d, ctr_args *a, const char *table, __int128 lo,
                                   __int128 hi)
{
    int ok = 1;
    dd_reply r;
    json_object *req = json_object_new_object(), *op = NULL;
    json_object *items = jput(req, "TransactItems", json_object_new_array(), &ok);
    op = jpush(items, json_object_new_object(), &ok);
    jput(op, "Update", counter_update(d, a, lo, hi, &ok), &ok);
    op = jpush(items, json_object_new_object(), &ok);
    jput(op, "Put", token_put(d, a, table, &ok), &ok);
    od_status s = dd_call(d, "TransactWriteItems", req, ok, &r);
    a->applied = s == OD_OK;
    if (s != OD_OK && odaws_is_error(&r.resp, "TransactionCanceledException")) {
        if (strcmp(reason_code(r.body, 1), "ConditionalCheckFailed") == 0)
            s = OD_OK; /* a redelivered op: report the value, change nothing */
        else if (strcmp(reason_code(r.body, 0), "ConditionalCheckFailed") == 0)
            s = counter_refused(a, failed_item(r.body, 0));
        else
            s = cancel_other(&r);
    }
    reply_clear(d, &r);
    if (s == OD_OK)
        s = counter_read(d, a->pk, &a->result);
    return s;
}

static od_status dd_counter_add(void *self, const char *table, const char *key, int64_t delta,
                                int64_t floor, const char *token, int64_t *result,
                                int32_t *applied)
{
    dd *d = self;
    ctr_args a = {.delta = delta, .floor = floor, .token = token};
    __int128 lo, hi;
    if (applied)
        *applied = 0;
    if (!counter_pk(table, key, a.pk) || (token && !valid_bytes(token, DD_TOKEN_MAX)))
        return OD_ERR_INVALID;
    od_status s;
    if (!counter_bounds(delta, floor, &lo, &hi)) {
        s = counter_read(d, a.pk, &a.result); /* nothing could pass: only report */
        s = s == OD_OK ? OD_ERR_CONFLICT : s;
    } else {
        s = token ? counter_add_token(d, &a, table, lo, hi) : counter_add_plain(d, &a, lo, hi);
    }
    if (result && (s == OD_OK || s == OD_ERR_CONFLICT))
        *result = a.result;
    if (applied)
        *applied = a.applied;
    return s;
}

static od_status dd_counter_set(void *self, const char *table, const char *key, int64_t value)
{
    dd *d = self;
    char pk[DD_PK_MAX + 1];
    int ok = 1;
    dd_reply r;
    if (!counter_pk(table, key, pk))
        return OD_ERR_INVALID;
    json_object *req = req_new(d->counters, &ok);
    json_object *item = jchild(req, "Item", &ok);
    jput(item, "pk", odaws_av_s(pk), &ok);
    jput(item, "v", odaws_av_n(value), &ok);
    od_status s = dd_call(d, "PutItem", req, ok, &r);
    reply_clear(d, &r);
    return s;
}

static od_status dd_counter_get(void *self, const char *table, const char *key, int64_t *value)
{
    dd *d = self;
    char pk[DD_PK_MAX + 1];
    if (!counter_pk(table, key, pk) || !value)
        return OD_ERR_INVALID;
    return counter_read(d, pk, value);
}

static od_status dd_counter_del(void *self, const char *table, const char *key)
{
    dd *d = self;
    char pk[DD_PK_MAX + 1];
    int ok = 1;
    dd_reply r;
    if (!counter_pk(table, key, pk))
        return OD_ERR_INVALID;
    json_object *req = req_new(d->counters, &ok);
    req_key(req, pk, &ok);
    req_condition(req, COND_EXISTS, 0, &ok);
    od_status s = dd_call(d, "DeleteItem", req, ok, &r);
    if (s != OD_OK && odaws_is_error(&r.resp, "ConditionalCheckFailedException"))
        s = OD_ERR_NOT_FOUND;
    reply_clear(d, &r);
    return s;
}

/* ---- ping ---- */

/* A strongly consistent GetItem of a key no counter can have (table names
 * are never empty): a data-plane call, cheap enough for every /health of
 * every instance, unlike DescribeTable's low control-plane limits. */
static od_status dd_ping(void *self)
{
    dd *d = self;
    const char *const attrs[] = {"pk"};
    json_object *item = NULL;
    od_status s = get_item(d, d->counters, "#ping", attrs, 1, &item);
    json_object_put(item);
    return s == OD_OK || s == OD_ERR_NOT_FOUND ? OD_OK : OD_ERR_UNAVAILABLE;
}

/* ---- lifecycle ---- */

static od_status read_config(dd *d)
{
    const od_host_api *h = d->host;
    od_status s = h->config_string(d->mod, "table_prefix", "orderd_", &d->prefix);
    if (s != OD_OK)
        return s;
    if (!valid_prefix(d->prefix)) {
        h->log(d->mod, OD_LOG_ERROR, "storage.table_prefix \"%s\": use at most %d of "
               "A-Z a-z 0-9 _ . -", d->prefix, DD_PREFIX_MAX);
        return OD_ERR_CONFIG;
    }
    snprintf(d->uniques, sizeof d->uniques, "%suniques", d->prefix);
    snprintf(d->counters, sizeof d->counters, "%scounters", d->prefix);
    snprintf(d->tokens, sizeof d->tokens, "%stokens", d->prefix);
    return OD_OK;
}

static od_status shared_tables_ensure(dd *d)
{
    od_status s = table_ensure(d, d->uniques, NULL, 0);
    if (s == OD_OK)
        s = table_ensure(d, d->counters, NULL, 0);
    if (s == OD_OK)
        s = table_ensure(d, d->tokens, NULL, 0);
    if (s == OD_OK)
        tokens_ttl_ensure(d);
    return s;
}

static void dd_destroy(void *self)
{
    dd *d = self;
    odaws_client_free(d->aws);
    d->host->free(d);
}

static od_status dd_init(const od_host_api *host, od_module *mod, void **self)
{
    dd *d = host->calloc(1, sizeof *d);
    if (!d)
        return OD_ERR_NOMEM;
    d->host = host;
    d->mod = mod;
    odm_tables_init(&d->tables, host, mod, "dynamodb", valid_index_value);
    od_status s = read_config(d);
    if (s == OD_OK)
        s = odaws_client_new(host, mod, &DD_SERVICE, &d->aws);
    if (s == OD_OK)
        s = shared_tables_ensure(d);
    if (s != OD_OK) {
        dd_destroy(d);
        return s;
    }
    host->log(mod, OD_LOG_INFO, "DynamoDB storage: tables \"%s*\" at %s", d->prefix,
              odaws_endpoint(d->aws));
    *self = d;
    return OD_OK;
}

static const od_storage_ops OPS = {
    .size = sizeof(od_storage_ops),
    .define_table = dd_define_table,
    .get = dd_get,
    .put = dd_put,
    .del = dd_del,
    .lookup = dd_lookup,
    .query = dd_query,
    .scan = dd_scan,
    .counter_add = dd_counter_add,
    .counter_set = dd_counter_set,
    .counter_get = dd_counter_get,
    .counter_del = dd_counter_del,
    .ping = dd_ping,
    .put_batch = dd_put_batch,
    /* .store stays NULL: no queue keeps its messages in DynamoDB, so none
     * can join our transactions (put_batch refuses a message). */
};

static const od_module_desc DESC = {
    OD_MODULE_HEADER(OD_KIND_STORAGE),
    .name = "storage_dynamodb",
    .version = "0.1.0",
    .description = "DynamoDB storage: documents, GSIs, unique claims and counters shared by "
                   "many instances",
    .init = dd_init,
    .destroy = dd_destroy,
    .ops = &OPS,
};

OD_MODULE_EXPORT const od_module_desc *od_module_entry(void)
{
    return &DESC;
}
