/*
 * storage_sqlite - the durable embedded storage backend (OD_KIND_STORAGE).
 *
 * Documents, secondary indexes and counters live in one SQLite file in WAL
 * mode: documents(tbl, key, version, body); unique index values in
 * index_unique, whose PRIMARY KEY (tbl, idx, value) makes SQLite itself
 * refuse a second owner; non-unique entries in index_entries with PRIMARY
 * KEY (tbl, idx, value, key); counters(tbl, key, value) and the op tokens
 * of counter_add in counter_tokens(tbl, token, created_ms), kept 7 days.
 * A read is one statement on the caller's connection; a write is one
 * savepoint inside a group-committed BEGIN IMMEDIATE transaction (odsql.h),
 * and every statement walks a primary key or an index (no table scans). Cursors are
 * keyset cursors: "s1" + op ('s' scan / 'q' query) + direction ('a' / 'd') +
 * "." + base64url(last key) + "." + 16 hex digits of a hash over op,
 * direction, table, index, value and key, so a cursor from another query,
 * a truncated or an edited one is refused. Schema version: component
 * "storage" in table meta (see odsql.h); docs/sqlite.md has the layout.
 *
 * Config (group "storage"): path, durability, busy_timeout_ms (odsql.h).
 * Threads: none of its own. Each calling thread gets its own connection
 * (odsql) for reads; its writes may run on the connection of whichever
 * thread leads the group commit, so the *_txn functions touch only the
 * connection and args they are given. The table registry (odm_tables.h)
 * is written only by define_table during init on the main thread and read
 * without a lock afterwards.
 */
#include <stdio.h>
#include <string.h>

#include <orderd/orderd.h>

#include "odm_tables.h"
#include "odm_b64.h"
#include "odsql.h"

#define SS_TOKEN_MAX 255
#define SS_PAGE_MAX 1000
#define SS_TOKEN_TTL_MS (7LL * 24 * 3600 * 1000)
#define SS_HASH_HEX 16
#define SS_SCHEMA_VERSION 2

/* ---- schema ---- */

/* Version 1: the data tables. Version 2: token ages, so tokens older than
 * 7 days can be swept through an index (tokens of a v1 file are dated to
 * the migration, which keeps each at least 7 days). */
static const char SCHEMA_V1[] =
    "CREATE TABLE documents(tbl TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL,"
    " body BLOB NOT NULL, PRIMARY KEY(tbl, key)) WITHOUT ROWID;"
    "CREATE TABLE index_unique(tbl TEXT NOT NULL, idx TEXT NOT NULL, value TEXT NOT NULL,"
    " key TEXT NOT NULL, PRIMARY KEY(tbl, idx, value)) WITHOUT ROWID;"
    "CREATE INDEX index_unique_by_doc ON index_unique(tbl, key);"
    "CREATE TABLE index_entries(tbl TEXT NOT NULL, idx TEXT NOT NULL, value TEXT NOT NULL,"
    " key TEXT NOT NULL, PRIMARY KEY(tbl, idx, value, key)) WITHOUT ROWID;"
    "CREATE INDEX index_entries_by_doc ON index_entries(tbl, key);"
    "CREATE TABLE counters(tbl TEXT NOT NULL, key TEXT NOT NULL, value INTEGER NOT NULL,"
    " PRIMARY KEY(tbl, key)) WITHOUT ROWID;"
    "CREATE TABLE counter_tokens(tbl TEXT NOT NULL, token TEXT NOT NULL,"
    " PRIMARY KEY(tbl, token)) WITHOUT ROWID;";
static const char SCHEMA_V2[] =
    "ALTER TABLE counter_tokens ADD COLUMN created_ms INTEGER NOT NULL DEFAULT 0;"
    "UPDATE counter_tokens SET created_ms ="
    " CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER);"
    "CREATE INDEX counter_tokens_by_age ON counter_tokens(created_ms);";
static const char *const SCHEMA_STEPS[SS_SCHEMA_VERSION] = {SCHEMA_V1, SCHEMA_V2};

/* ---- statements (odsql caches them per connection) ---- */

enum {
    ST_GET,
    ST_VERSION,
    ST_UPSERT,
    ST_DELETE,
    ST_UNIQUE_CLEAR,
    ST_ENTRIES_CLEAR,
    ST_UNIQUE_ADD,
    ST_ENTRY_ADD,
    ST_LOOKUP,
    /* pages: [first page | after a key] x [ascending | descending] */
    ST_SCAN,
    ST_SCAN_DESC,
    ST_SCAN_AFTER,
    ST_SCAN_AFTER_DESC,
    ST_QUERY_U,
    ST_QUERY_U_DESC,
    ST_QUERY_U_AFTER,
    ST_QUERY_U_AFTER_DESC,
    ST_QUERY_E,
    ST_QUERY_E_DESC,
    ST_QUERY_E_AFTER,
    ST_QUERY_E_AFTER_DESC,
    ST_CTR_GET,
    ST_CTR_SET,
    ST_CTR_UPDATE,
    ST_CTR_DEL,
    ST_TOKEN_SEEN,
    ST_TOKEN_ADD,
    ST_TOKEN_SWEEP,
    ST_PING,
    ST_MESSAGE_ADD,
    ST_COUNT
};

/* Page statements bind ?1 tbl, ?2 limit, ?3 after-key, ?4 idx, ?5 value. */
#define SCAN_SQL(where, order)                                                                     \
    "SELECT key, version, body FROM documents WHERE tbl = ?1" where " ORDER BY key" order          \
    " LIMIT ?2"
#define QUERY_SQL(table, where, order)                                                             \
    "SELECT d.key, d.version, d.body FROM " table " i JOIN documents d"                          \
    " ON d.tbl = i.tbl AND d.key = i.key WHERE i.tbl = ?1 AND i.idx = ?4 AND i.value = ?5" where \
    " ORDER BY i.key" order " LIMIT ?2"

static const char *const SQL[ST_COUNT] = {
    [ST_GET] = "SELECT key, version, body FROM documents WHERE tbl = ?1 AND key = ?2",
    [ST_VERSION] = "SELECT version FROM documents WHERE tbl = ?1 AND key = ?2",
    [ST_UPSERT] = "INSERT INTO documents(tbl, key, version, body) VALUES(?1, ?2, ?3, ?4)"
                  " ON CONFLICT(tbl, key) DO UPDATE SET version = excluded.version,"
                  " body = excluded.body",
    [ST_DELETE] = "DELETE FROM documents WHERE tbl = ?1 AND key = ?2",
    [ST_UNIQUE_CLEAR] = "DELETE FROM index_unique WHERE tbl = ?1 AND key = ?2",
    [ST_ENTRIES_CLEAR] = "DELETE FROM index_entries WHERE tbl = ?1 AND key = ?2",
    [ST_UNIQUE_ADD] = "INSERT INTO index_unique(tbl, idx, value, key) VALUES(?1, ?2, ?3, ?4)",
    [ST_ENTRY_ADD] = "INSERT INTO index_entries(tbl, idx, value, key) VALUES(?1, ?2, ?3, ?4)",
    [ST_LOOKUP] = "SELECT d.key, d.version, d.body FROM index_unique u JOIN documents d"
                  " ON d.tbl = u.tbl AND d.key = u.key"
                  " WHERE u.tbl = ?1 AND u.idx = ?2 AND u.value = ?3",
    [ST_SCAN] = SCAN_SQL("", ""),
    [ST_SCAN_DESC] = SCAN_SQL("", " DESC"),
    [ST_SCAN_AFTER] = SCAN_SQL(" AND key > ?3", ""),
    [ST_SCAN_AFTER_DESC] = SCAN_SQL(" AND key < ?3", " DESC"),
    [ST_QUERY_U] = QUERY_SQL("index_unique", "", ""),
    [ST_QUERY_U_DESC] = QUERY_SQL("index_unique", "", " DESC"),
    [ST_QUERY_U_AFTER] = QUERY_SQL("index_unique", " AND i.key > ?3", ""),
    [ST_QUERY_U_AFTER_DESC] = QUERY_SQL("index_unique", " AND i.key < ?3", " DESC"),
    [ST_QUERY_E] = QUERY_SQL("index_entries", "", ""),
    [ST_QUERY_E_DESC] = QUERY_SQL("index_entries", "", " DESC"),
    [ST_QUERY_E_AFTER] = QUERY_SQL("index_entries", " AND i.key > ?3", ""),
    [ST_QUERY_E_AFTER_DESC] = QUERY_SQL("index_entries", " AND i.key < ?3", " DESC"),
    [ST_CTR_GET] = "SELECT value FROM counters WHERE tbl = ?1 AND key = ?2",
    [ST_CTR_SET] = "INSERT INTO counters(tbl, key, value) VALUES(?1, ?2, ?3)"
                   " ON CONFLICT(tbl, key) DO UPDATE SET value = excluded.value",
    [ST_CTR_UPDATE] = "UPDATE counters SET value = ?3 WHERE tbl = ?1 AND key = ?2",
    [ST_CTR_DEL] = "DELETE FROM counters WHERE tbl = ?1 AND key = ?2",
    [ST_TOKEN_SEEN] = "SELECT 1 FROM counter_tokens WHERE tbl = ?1 AND token = ?2",
    [ST_TOKEN_ADD] = "INSERT INTO counter_tokens(tbl, token, created_ms) VALUES(?1, ?2, ?3)",
    /* Bounded: a sweep never makes one counter_add slow. */
    [ST_TOKEN_SWEEP] = "DELETE FROM counter_tokens WHERE (tbl, token) IN (SELECT tbl, token"
                       " FROM counter_tokens WHERE created_ms < ?1 ORDER BY created_ms LIMIT 64)",
    [ST_PING] = "SELECT version FROM meta WHERE component = 'storage'",
    /* queue_sqlite's table, written by put_batch when the file is shared */
    [ST_MESSAGE_ADD] = ODSQL_MESSAGE_INSERT,
};

/* ---- state ---- */

typedef struct ss {
    const od_host_api *host;
    od_module *mod;
    odsql_db db;
    odm_tables tables;
} ss;

/* ---- validation ---- */

/* 1..max bytes. */
static int valid_bytes(const char *v, size_t max)
{
    if (!v)
        return 0;
    size_t n = strnlen(v, max + 1);
    return n > 0 && n <= max;
}

/* ---- define_table ---- */

static od_status ss_define_table(void *self, const od_table_def *def)
{
    ss *s = self;
    const odm_table *old;
    od_status status = odm_tables_check(&s->tables, def, &old);
    if (status == OD_OK && !old)
        odm_tables_add(&s->tables, def, NULL);
    return status;
}

/* ---- rows to documents ---- */

static int step_row(odsql_conn *c, sqlite3_stmt *st, od_status *s)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    *s = rc == SQLITE_DONE ? OD_OK : odsql_error(c, rc);
    return 0;
}

/* Columns 0 key, 1 version, 2 body into *out (host allocator). */
static od_status doc_from_row(const od_host_api *h, sqlite3_stmt *st, od_doc *out)
{
    const char *key = (const char *)sqlite3_column_text(st, 0);
    const void *body = sqlite3_column_blob(st, 2);
    size_t len = (size_t)sqlite3_column_bytes(st, 2);
    out->key = key ? h->strdup(key) : NULL;
    out->body = h->alloc(len + 1);
    if (!out->key || !out->body) {
        od_doc_clear(h, out);
        return OD_ERR_NOMEM;
    }
    if (len)
        memcpy(out->body, body, len);
    out->body[len] = '\0';
    out->len = len;
    out->version = (uint64_t)sqlite3_column_int64(st, 1);
    return OD_OK;
}

/* Run a statement expected to yield at most one document. */
static od_status one_doc(odsql_conn *c, sqlite3_stmt *st, od_doc *out)
{
    od_status s = OD_OK;
    if (!step_row(c, st, &s))
        return s == OD_OK ? OD_ERR_NOT_FOUND : s;
    return doc_from_row(c->owner->host, st, out);
}

static odsql_conn *conn(ss *s, od_status *status)
{
    return odsql_conn_get(&s->db, status);
}

/* ---- get / lookup ---- */

typedef struct get_args {
    const char *table, *key, *index, *value;
    od_doc *out;
} get_args;

static od_status get_read(odsql_conn *c, void *arg)
{
    get_args *a = arg;
    sqlite3_stmt *st = odsql_stmt(c, ST_GET);
    if (!st)
        return OD_ERR_INTERNAL;
    odsql_bind_text(st, 1, a->table);
    odsql_bind_text(st, 2, a->key);
    return one_doc(c, st, a->out);
}

static od_status ss_get(void *self, const char *table, const char *key, od_doc *out)
{
    ss *s = self;
    od_status status = OD_OK;
    if (!odm_table_find(&s->tables, table) || !od_storage_valid_key(key) || !out)
        return OD_ERR_INVALID;
    odsql_conn *c = conn(s, &status);
    get_args a = {table, key, NULL, NULL, out};
    return c ? odsql_read(c, get_read, &a) : status;
}

static od_status lookup_read(odsql_conn *c, void *arg)
{
    get_args *a = arg;
    sqlite3_stmt *st = odsql_stmt(c, ST_LOOKUP);
    if (!st)
        return OD_ERR_INTERNAL;
    odsql_bind_text(st, 1, a->table);
    odsql_bind_text(st, 2, a->index);
    odsql_bind_text(st, 3, a->value);
    return one_doc(c, st, a->out);
}

static od_status ss_lookup(void *self, const char *table, const char *index, const char *value,
                           od_doc *out)
{
    ss *s = self;
    od_status status = OD_OK;
    const odm_table *t = odm_table_find(&s->tables, table);
    const odm_index *x = t ? odm_index_find(t, index) : NULL;
    if (!x || !x->unique || !odm_tables_valid_value(&s->tables, value) || !out)
        return OD_ERR_INVALID;
    odsql_conn *c = conn(s, &status);
    get_args a = {table, NULL, index, value, out};
    return c ? odsql_read(c, lookup_read, &a) : status;
}

/* ---- put / del ---- */

typedef struct put_args {
    const odm_table *t;
    const char *key;
    const char *body;
    size_t len;
    const od_index_value *idx;
    size_t n_idx;
    uint32_t cond;
    uint64_t expected;
    uint64_t version; /* out */
} put_args;

/* Exec a statement that returns no rows. */
static od_status run(odsql_conn *c, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    return rc == SQLITE_DONE ? OD_OK : odsql_error(c, rc);
}

/* The current version of a document, 0 if none. */
static od_status current_version(odsql_conn *c, const char *table, const char *key,
                                 uint64_t *version)
{
    sqlite3_stmt *st = odsql_stmt(c, ST_VERSION);
    if (!st)
        return OD_ERR_INTERNAL;
    odsql_bind_text(st, 1, table);
    odsql_bind_text(st, 2, key);
    od_status s = OD_OK;
    *version = step_row(c, st, &s) ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
    return s;
}

static od_status clear_index_values(odsql_conn *c, const char *table, const char *key)
{
    static const int clear[] = {ST_UNIQUE_CLEAR, ST_ENTRIES_CLEAR};
    for (size_t i = 0; i < 2; i++) {
        sqlite3_stmt *st = odsql_stmt(c, (size_t)clear[i]);
        if (!st)
            return OD_ERR_INTERNAL;
        odsql_bind_text(st, 1, table);
        odsql_bind_text(st, 2, key);
        od_status s = run(c, st);
        if (s != OD_OK)
            return s;
    }
    return OD_OK;
}

/* A unique value another document owns fails on index_unique's primary
 * key: SQLITE_CONSTRAINT -> OD_ERR_EXISTS, and the transaction rolls back. */
static od_status add_index_values(odsql_conn *c, const put_args *a)
{
    for (size_t i = 0; i < a->n_idx; i++) {
        const odm_index *x = odm_index_find(a->t, a->idx[i].index);
        sqlite3_stmt *st = odsql_stmt(c, x->unique ? ST_UNIQUE_ADD : ST_ENTRY_ADD);
        if (!st)
            return OD_ERR_INTERNAL;
        odsql_bind_text(st, 1, a->t->name);
        odsql_bind_text(st, 2, x->name);
        odsql_bind_text(st, 3, a->idx[i].value);
        odsql_bind_text(st, 4, a->key);
        od_status s = run(c, st);
        if (s != OD_OK)
            return s;
    }
    return OD_OK;
}

static od_status check_condition(const put_args *a, uint64_t current)
{
    if (a->cond == OD_PUT_IF_ABSENT && current)
        return OD_ERR_EXISTS;
    if (a->cond == OD_PUT_IF_VERSION && !current)
        return OD_ERR_NOT_FOUND;
    if (a->cond == OD_PUT_IF_VERSION && current != a->expected)
        return OD_ERR_CONFLICT;
    return OD_OK;
}

static od_status put_txn(odsql_conn *c, void *arg)
{
    put_args *a = arg;
    uint64_t current = 0;
    od_status s = current_version(c, a->t->name, a->key, &current);
    if (s == OD_OK)
        s = check_condition(a, current);
    if (s != OD_OK)
        return s;
    sqlite3_stmt *st = odsql_stmt(c, ST_UPSERT);
    if (!st)
        return OD_ERR_INTERNAL;
    a->version = current + 1;
    odsql_bind_text(st, 1, a->t->name);
    odsql_bind_text(st, 2, a->key);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)a->version);
    int rc = sqlite3_bind_blob64(st, 4, a->body, a->len, SQLITE_STATIC);
    if (rc != SQLITE_OK) /* SQLITE_TOOBIG past SQLite's 1 GB limit */
        return odsql_error(c, rc);
    s = run(c, st);
    if (s == OD_OK && current)
        s = clear_index_values(c, a->t->name, a->key);
    return s == OD_OK ? add_index_values(c, a) : s;
}

static od_status ss_put(void *self, const char *table, const char *key, const char *body,
                        size_t len, const od_index_value *idx, size_t n_idx, uint32_t cond,
                        uint64_t expected, uint64_t *new_version)
{
    ss *s = self;
    od_status status = OD_OK;
    const odm_table *t = odm_table_find(&s->tables, table);
    if (!t || !od_storage_valid_key(key) || !body || cond > OD_PUT_IF_VERSION ||
        !odm_tables_values(&s->tables, t, idx, n_idx, NULL))
        return OD_ERR_INVALID;
    odsql_conn *c = conn(s, &status);
    if (!c)
        return status;
    put_args a = {t, key, body, len, idx, n_idx, cond, expected, 0};
    status = odsql_write(c, put_txn, &a);
    if (status == OD_OK && new_version)
        *new_version = a.version;
    return status;
}

/* ---- put_batch ---- */

typedef struct batch_args {
    put_args puts[OD_BATCH_MAX];
    size_t n;
    odsql_message msg; /* msg.body NULL: no message */
    size_t failed;     /* out */
} batch_args;

static int condition_failed(od_status s)
{
    return s == OD_ERR_EXISTS || s == OD_ERR_CONFLICT || s == OD_ERR_NOT_FOUND;
}

/* One savepoint of the group commit holds the whole batch, so an error
 * here rolls back every put before it, and the message with them. */
static od_status batch_txn(odsql_conn *c, void *arg)
{
    batch_args *a = arg;
    a->failed = OD_BATCH_NONE;
    for (size_t i = 0; i < a->n; i++) {
        od_status s = put_txn(c, &a->puts[i]);
        if (s != OD_OK) {
            a->failed = condition_failed(s) ? i : OD_BATCH_NONE;
            return s;
        }
    }
    if (!a->msg.body)
        return OD_OK;
    sqlite3_stmt *st = odsql_stmt(c, ST_MESSAGE_ADD);
    return st ? odsql_message_insert(c, st, &a->msg, NULL) : OD_ERR_INTERNAL;
}

static od_status batch_put_args(const ss *s, const od_put *p, put_args *a)
{
    const odm_table *t = odm_table_find(&s->tables, p->table);
    if (!t || !od_storage_valid_key(p->key) || !p->body || p->cond > OD_PUT_IF_VERSION ||
        !odm_tables_values(&s->tables, t, p->idx, p->n_idx, NULL))
        return OD_ERR_INVALID;
    *a = (put_args){t, p->key, p->body, p->len, p->idx, p->n_idx, p->cond, p->expected, 0};
    return OD_OK;
}

static od_status batch_prepare(const ss *s, const od_put *const *puts, size_t n, batch_args *a)
{
    if (!od_storage_valid_batch(puts, n))
        return OD_ERR_INVALID;
    for (size_t i = 0; i < n; i++)
        if (batch_put_args(s, puts[i], &a->puts[i]) != OD_OK)
            return OD_ERR_INVALID;
    a->n = n;
    return OD_OK;
}

/* A message can ride along only into a queue_sqlite table in this file. */
static od_status batch_message(const ss *s, const od_outbox *m, batch_args *a)
{
    if (!m)
        return OD_OK;
    if (m->size < sizeof(od_outbox) || !m->queue || !m->queue->ops)
        return OD_ERR_INVALID;
    const od_queue_ops *q = m->queue->ops;
    const char *store = OD_HAS_OP(od_queue_ops, q, store) && OD_HAS_OP(od_queue_ops, q, notify)
                            ? q->store(m->queue->self)
                            : NULL;
    if (!store || !s->db.store || strcmp(store, s->db.store) != 0)
        return OD_ERR_UNSUPPORTED;
    if (m->lane >= OD_LANE_COUNT || !m->body || m->len == 0 || m->delay_ms > ODSQL_MAX_DELAY_MS)
        return OD_ERR_INVALID;
    if (m->len > OD_MESSAGE_MAX)
        return OD_ERR_TOO_LARGE;
    int64_t now = s->host->now_ms();
    a->msg = (odsql_message){m->lane, m->body, m->len, now + m->delay_ms, now};
    return OD_OK;
}

static od_status ss_put_batch(void *self, const od_put *const *puts, size_t n,
                              const od_outbox *msg, uint64_t *versions, size_t *failed)
{
    ss *s = self;
    batch_args a;
    a.failed = OD_BATCH_NONE;
    a.msg.body = NULL;
    if (failed)
        *failed = OD_BATCH_NONE;
    od_status status = batch_prepare(s, puts, n, &a);
    if (status == OD_OK)
        status = batch_message(s, msg, &a);
    odsql_conn *c = status == OD_OK ? conn(s, &status) : NULL;
    if (!c)
        return status;
    status = odsql_write(c, batch_txn, &a);
    if (failed)
        *failed = a.failed;
    if (status != OD_OK)
        return status;
    for (size_t i = 0; versions && i < n; i++)
        versions[i] = a.puts[i].version;
    if (a.msg.body)
        msg->queue->ops->notify(msg->queue->self, msg->lane);
    return OD_OK;
}

static const char *ss_store(void *self)
{
    ss *s = self;
    return s->db.store;
}

typedef struct del_args {
    const char *table, *key;
    uint64_t expected;
} del_args;

static od_status del_txn(odsql_conn *c, void *arg)
{
    del_args *a = arg;
    uint64_t current = 0;
    od_status s = current_version(c, a->table, a->key, &current);
    if (s != OD_OK)
        return s;
    if (!current)
        return OD_ERR_NOT_FOUND;
    if (a->expected && a->expected != current)
        return OD_ERR_CONFLICT;
    sqlite3_stmt *st = odsql_stmt(c, ST_DELETE);
    if (!st)
        return OD_ERR_INTERNAL;
    odsql_bind_text(st, 1, a->table);
    odsql_bind_text(st, 2, a->key);
    s = run(c, st);
    return s == OD_OK ? clear_index_values(c, a->table, a->key) : s;
}

static od_status ss_del(void *self, const char *table, const char *key, uint64_t expected)
{
    ss *s = self;
    od_status status = OD_OK;
    if (!odm_table_find(&s->tables, table) || !od_storage_valid_key(key))
        return OD_ERR_INVALID;
    odsql_conn *c = conn(s, &status);
    del_args a = {table, key, expected};
    return c ? odsql_write(c, del_txn, &a) : status;
}

/* ---- cursors ---- */

/* What a cursor belongs to: the page request minus the position. */
typedef struct page_ctx {
    char op;  /* 's' scan, 'q' query */
    char dir; /* 'a', 'd' */
    const char *table, *index, *value;
} page_ctx;

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Not a secret: it only makes a cursor from another request, or an edited
 * one, fail instead of naming some other position. */
static uint64_t cursor_hash(const page_ctx *p, const char *key)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    char head[2] = {p->op, p->dir};
    h = fnv1a(h, head, 2);
    h = fnv1a(h, p->table, strlen(p->table) + 1);
    if (p->op == 'q') {
        h = fnv1a(h, p->index, strlen(p->index) + 1);
        h = fnv1a(h, p->value, strlen(p->value) + 1);
    }
    return fnv1a(h, key, strlen(key));
}

static char *cursor_encode(const od_host_api *h, const page_ctx *p, const char *key)
{
    char buf[OD_CURSOR_MAX + 1];
    size_t n = (size_t)snprintf(buf, sizeof buf, "s1%c%c.", p->op, p->dir);
    n += odm_b64url_encode(key, strlen(key), buf + n);
    snprintf(buf + n, sizeof buf - n, ".%016llx", (unsigned long long)cursor_hash(p, key));
    return h->strdup(buf);
}

/* Decode into key[OD_KEY_MAX + 1]; 0 if the cursor is not ours for p. */
static int cursor_decode(const page_ctx *p, const char *cursor, char *key)
{
    size_t n = strnlen(cursor, OD_CURSOR_MAX + 1);
    const char *dot = n <= OD_CURSOR_MAX ? strrchr(cursor, '.') : NULL;
    if (!dot || dot <= cursor + 5 || cursor[0] != 's' || cursor[1] != '1' ||
        cursor[2] != p->op || cursor[3] != p->dir || cursor[4] != '.' ||
        strlen(dot + 1) != SS_HASH_HEX)
        return 0;
    long len = odm_b64url_decode(cursor + 5, (size_t)(dot - cursor - 5), (unsigned char *)key,
                          OD_KEY_MAX);
    if (len <= 0)
        return 0;
    key[len] = '\0';
    if (!od_storage_valid_key(key))
        return 0;
    char hex[SS_HASH_HEX + 1];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)cursor_hash(p, key));
    return strcmp(hex, dot + 1) == 0;
}

/* ---- scan / query ---- */

typedef struct page_args {
    page_ctx ctx;
    int unique;        /* query: the index is unique */
    const char *after; /* key from the cursor, NULL on the first page */
    uint32_t limit;
    od_page *out;
} page_args;

static size_t page_statement(const page_args *a)
{
    size_t variant = (a->after ? 2u : 0u) + (a->ctx.dir == 'd' ? 1u : 0u);
    if (a->ctx.op == 's')
        return ST_SCAN + variant;
    return (a->unique ? ST_QUERY_U : ST_QUERY_E) + variant;
}

static od_status page_append(const od_host_api *h, od_page *p, size_t *cap, sqlite3_stmt *st)
{
    if (p->count == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        od_doc *items = h->realloc(p->items, ncap * sizeof *items);
        if (!items)
            return OD_ERR_NOMEM;
        p->items = items;
        *cap = ncap;
    }
    od_doc *d = &p->items[p->count];
    memset(d, 0, sizeof *d);
    od_status s = doc_from_row(h, st, d);
    if (s == OD_OK)
        p->count++;
    return s;
}

/* Reads limit + 1 rows: the extra one only says whether a next page exists. */
static od_status page_read(odsql_conn *c, void *arg)
{
    page_args *a = arg;
    const od_host_api *h = c->owner->host;
    sqlite3_stmt *st = odsql_stmt(c, page_statement(a));
    if (!st)
        return OD_ERR_INTERNAL;
    odsql_bind_text(st, 1, a->ctx.table);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)a->limit + 1);
    if (a->after)
        odsql_bind_text(st, 3, a->after);
    if (a->ctx.op == 'q') {
        odsql_bind_text(st, 4, a->ctx.index);
        odsql_bind_text(st, 5, a->ctx.value);
    }
    od_page *p = a->out;
    size_t cap = 0;
    od_status s = OD_OK;
    int more = 0;
    while (step_row(c, st, &s)) {
        if (p->count == a->limit) {
            more = 1;
            break;
        }
        if ((s = page_append(h, p, &cap, st)) != OD_OK)
            break;
    }
    if (s == OD_OK && more && !(p->next = cursor_encode(h, &a->ctx, p->items[p->count - 1].key)))
        s = OD_ERR_NOMEM;
    if (s != OD_OK)
        od_page_clear(h, p);
    return s;
}

static od_status page_run(ss *s, page_args *a, const char *cursor)
{
    char after[OD_KEY_MAX + 1];
    od_status status = OD_OK;
    memset(a->out, 0, sizeof *a->out);
    if (a->limit < 1 || a->limit > SS_PAGE_MAX)
        return OD_ERR_INVALID;
    if (cursor) {
        if (!cursor_decode(&a->ctx, cursor, after))
            return OD_ERR_INVALID;
        a->after = after;
    }
    odsql_conn *c = conn(s, &status);
    return c ? odsql_read(c, page_read, a) : status;
}

static od_status ss_query(void *self, const char *table, const char *index, const char *value,
                          const char *cursor, uint32_t limit, uint32_t descending, od_page *out)
{
    ss *s = self;
    const odm_table *t = odm_table_find(&s->tables, table);
    const odm_index *x = t ? odm_index_find(t, index) : NULL;
    if (!x || !odm_tables_valid_value(&s->tables, value) || descending > 1 || !out)
        return OD_ERR_INVALID;
    page_args a = {{'q', descending ? 'd' : 'a', t->name, x->name, value}, (int)x->unique, NULL,
                   limit, out};
    return page_run(s, &a, cursor);
}

static od_status ss_scan(void *self, const char *table, const char *cursor, uint32_t limit,
                         uint32_t descending, od_page *out)
{
    ss *s = self;
    const odm_table *t = odm_table_find(&s->tables, table);
    if (!t || descending > 1 || !out)
        return OD_ERR_INVALID;
    page_args a = {{'s', descending ? 'd' : 'a', t->name, NULL, NULL}, 0, NULL, limit, out};
    return page_run(s, &a, cursor);
}

/* ---- counters ---- */

typedef struct ctr_args {
    const char *table, *key, *token;
    int64_t delta, floor, value; /* value: in for set, out otherwise */
    int32_t applied;
    int64_t now_ms;
} ctr_args;

static od_status counter_value(odsql_conn *c, const ctr_args *a, int64_t *value)
{
    sqlite3_stmt *st = odsql_stmt(c, ST_CTR_GET);
    if (!st)
        return OD_ERR_INTERNAL;
    odsql_bind_text(st, 1, a->table);
    odsql_bind_text(st, 2, a->key);
    od_status s = OD_OK;
    if (!step_row(c, st, &s))
        return s == OD_OK ? OD_ERR_NOT_FOUND : s;
    *value = sqlite3_column_int64(st, 0);
    return OD_OK;
}

static od_status token_seen(odsql_conn *c, const ctr_args *a, int *seen)
{
    sqlite3_stmt *st = odsql_stmt(c, ST_TOKEN_SEEN);
    if (!st)
        return OD_ERR_INTERNAL;
    odsql_bind_text(st, 1, a->table);
    odsql_bind_text(st, 2, a->token);
    od_status s = OD_OK;
    *seen = step_row(c, st, &s);
    return s;
}

static od_status token_record(odsql_conn *c, const ctr_args *a)
{
    sqlite3_stmt *st = odsql_stmt(c, ST_TOKEN_ADD);
    if (!st)
        return OD_ERR_INTERNAL;
    odsql_bind_text(st, 1, a->table);
    odsql_bind_text(st, 2, a->token);
    sqlite3_bind_int64(st, 3, a->now_ms);
    od_status s = run(c, st);
    if (s != OD_OK || !(st = odsql_stmt(c, ST_TOKEN_SWEEP)))
        return s == OD_OK ? OD_ERR_INTERNAL : s;
    sqlite3_bind_int64(st, 1, a->now_ms - SS_TOKEN_TTL_MS);
    return run(c, st);
}

static od_status counter_store(odsql_conn *c, const ctr_args *a, size_t which, int64_t value)
{
    sqlite3_stmt *st = odsql_stmt(c, which);
    if (!st)
        return OD_ERR_INTERNAL;
    odsql_bind_text(st, 1, a->table);
    odsql_bind_text(st, 2, a->key);
    sqlite3_bind_int64(st, 3, value);
    return run(c, st);
}

static od_status add_txn(odsql_conn *c, void *arg)
{
    ctr_args *a = arg;
    int seen = 0;
    a->applied = 0; /* a retried batch runs this again */
    od_status s = a->token ? token_seen(c, a, &seen) : OD_OK;
    if (s == OD_OK)
        s = counter_value(c, a, &a->value);
    if (s != OD_OK || seen)
        return s; /* a redelivered op: report the value, change nothing */
    int64_t next;
    if (__builtin_add_overflow(a->value, a->delta, &next))
        return OD_ERR_INVALID;
    if (next < a->floor)
        return OD_ERR_CONFLICT;
    s = counter_store(c, a, ST_CTR_UPDATE, next);
    if (s == OD_OK && a->token)
        s = token_record(c, a);
    if (s == OD_OK) {
        a->value = next;
        a->applied = 1;
    }
    return s;
}

static od_status ss_counter_add(void *self, const char *table, const char *key, int64_t delta,
                                int64_t floor, const char *token, int64_t *result,
                                int32_t *applied)
{
    ss *s = self;
    od_status status = OD_OK;
    if (applied)
        *applied = 0;
    if (!od_storage_valid_name(table) || !od_storage_valid_key(key) || (token && !valid_bytes(token, SS_TOKEN_MAX)))
        return OD_ERR_INVALID;
    odsql_conn *c = conn(s, &status);
    if (!c)
        return status;
    ctr_args a = {table, key, token, delta, floor, 0, 0, s->host->now_ms()};
    status = odsql_write(c, add_txn, &a);
    /* The floor refused the change: the value is unchanged and reported. */
    if ((status == OD_OK || status == OD_ERR_CONFLICT) && result)
        *result = a.value;
    if (status == OD_OK && applied)
        *applied = a.applied;
    return status;
}

static od_status set_txn(odsql_conn *c, void *arg)
{
    ctr_args *a = arg;
    return counter_store(c, a, ST_CTR_SET, a->value);
}

static od_status del_counter_txn(odsql_conn *c, void *arg)
{
    ctr_args *a = arg;
    sqlite3_stmt *st = odsql_stmt(c, ST_CTR_DEL);
    if (!st)
        return OD_ERR_INTERNAL;
    odsql_bind_text(st, 1, a->table);
    odsql_bind_text(st, 2, a->key);
    od_status s = run(c, st);
    return s == OD_OK && sqlite3_changes(c->db) == 0 ? OD_ERR_NOT_FOUND : s;
}

static od_status get_counter_read(odsql_conn *c, void *arg)
{
    ctr_args *a = arg;
    return counter_value(c, a, &a->value);
}

/* counter_set / _get / _del share validation and the connection. */
static od_status counter_op(ss *s, const char *table, const char *key, int64_t *value,
                            odsql_txn_fn fn, int writes)
{
    od_status status = OD_OK;
    if (!od_storage_valid_name(table) || !od_storage_valid_key(key) || !value)
        return OD_ERR_INVALID;
    odsql_conn *c = conn(s, &status);
    if (!c)
        return status;
    ctr_args a = {table, key, NULL, 0, 0, *value, 0, 0};
    status = writes ? odsql_write(c, fn, &a) : odsql_read(c, fn, &a);
    if (status == OD_OK)
        *value = a.value;
    return status;
}

static od_status ss_counter_set(void *self, const char *table, const char *key, int64_t value)
{
    return counter_op(self, table, key, &value, set_txn, 1);
}

static od_status ss_counter_get(void *self, const char *table, const char *key, int64_t *value)
{
    if (!value)
        return OD_ERR_INVALID;
    *value = 0;
    return counter_op(self, table, key, value, get_counter_read, 0);
}

static od_status ss_counter_del(void *self, const char *table, const char *key)
{
    int64_t unused = 0;
    return counter_op(self, table, key, &unused, del_counter_txn, 1);
}

/* ---- ping ---- */

static od_status ping_read(odsql_conn *c, void *arg)
{
    (void)arg;
    sqlite3_stmt *st = odsql_stmt(c, ST_PING);
    if (!st)
        return OD_ERR_UNAVAILABLE;
    od_status s = OD_OK;
    if (!step_row(c, st, &s))
        return OD_ERR_UNAVAILABLE;
    return OD_OK;
}

static od_status ss_ping(void *self)
{
    ss *s = self;
    od_status status = OD_OK;
    odsql_conn *c = conn(s, &status);
    if (!c)
        return OD_ERR_UNAVAILABLE;
    return odsql_read(c, ping_read, NULL) == OD_OK ? OD_OK : OD_ERR_UNAVAILABLE;
}

/* ---- lifecycle ---- */

static od_status ss_init(const od_host_api *host, od_module *mod, void **self)
{
    static const odsql_schema schema = {SCHEMA_STEPS, SS_SCHEMA_VERSION};
    ss *s = host->calloc(1, sizeof *s);
    if (!s)
        return OD_ERR_NOMEM;
    s->host = host;
    s->mod = mod;
    odm_tables_init(&s->tables, host, mod, "sqlite", NULL);
    od_status status = odsql_open(&s->db, host, mod, "storage", SQL, ST_COUNT, &schema);
    if (status != OD_OK) {
        host->free(s);
        return status;
    }
    *self = s;
    return OD_OK;
}

static void ss_destroy(void *self)
{
    ss *s = self;
    odsql_close(&s->db);
    s->host->free(s);
}

static const od_storage_ops OPS = {
    .size = sizeof(od_storage_ops),
    .define_table = ss_define_table,
    .get = ss_get,
    .put = ss_put,
    .del = ss_del,
    .lookup = ss_lookup,
    .query = ss_query,
    .scan = ss_scan,
    .counter_add = ss_counter_add,
    .counter_set = ss_counter_set,
    .counter_get = ss_counter_get,
    .counter_del = ss_counter_del,
    .ping = ss_ping,
    .put_batch = ss_put_batch,
    .store = ss_store,
};

static const od_module_desc DESC = {
    OD_MODULE_HEADER(OD_KIND_STORAGE),
    .name = "storage_sqlite",
    .version = "0.1.0",
    .description = "SQLite storage: durable documents, indexes and counters in one file (WAL)",
    .init = ss_init,
    .destroy = ss_destroy,
    .ops = &OPS,
};

OD_MODULE_EXPORT const od_module_desc *od_module_entry(void)
{
    return &DESC;
}
