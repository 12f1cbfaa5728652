/*
 * orderd/storage.h - the storage backend ops (module kind OD_KIND_STORAGE).
 *
 * Data model, chosen so DynamoDB can implement every op with one call:
 *   - a table holds documents: JSON bytes under a string key (1..255 bytes,
 *     printable ASCII), each with a version the backend assigns (1 on create,
 *     +1 on every successful put) for optimistic concurrency;
 *   - a table may declare secondary indexes. A document names its value for
 *     each index when it is put; a document without a value for an index is
 *     not in it (sparse, like a GSI). A unique index refuses a second
 *     document with the same value (OD_ERR_EXISTS);
 *   - counters live in their own namespace: a signed 64-bit integer under a
 *     (table, key), changed atomically and conditionally (stock -= n only if
 *     stock >= n). An op token makes a counter change apply at most once, so
 *     a redelivered message never changes stock twice.
 *
 * Threads: every op may be called from many threads at once (HTTP workers,
 * queue workers) and may block for I/O up to the backend's timeout.
 * define_table is called only during init of later modules, on the main
 * thread. A backend that cannot reach its service returns OD_ERR_UNAVAILABLE.
 *
 * Memory: pointers passed in are borrowed for the call. Everything returned
 * through an od_doc / od_page is allocated with the host allocator and owned
 * by the caller, who releases it with od_doc_clear() / od_page_clear().
 *
 * Ordering and cursors: scan and query return documents in ascending
 * byte order of their primary key (descending when asked). Cursors are
 * opaque printable strings (URL-safe, <= 512 bytes) produced by the backend
 * and encode the last key returned (keyset pagination): walking pages while
 * documents are added or removed never repeats a document or skips one that
 * existed throughout. A cursor the backend did not produce -> OD_ERR_INVALID.
 */
#ifndef ORDERD_STORAGE_H
#define ORDERD_STORAGE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "orderd/status.h"
#include "orderd/module.h"
#include "orderd/queue.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OD_KEY_MAX 255
#define OD_CURSOR_MAX 512
#define OD_NAME_MAX 32     /* table and index names: [a-z0-9_]{1,32} */
#define OD_INDEXES_MAX 8   /* indexes per table */

typedef struct od_index_def {
    const char *name;   /* [a-z0-9_]{1,32} */
    uint32_t unique;    /* 1: at most one document per value */
} od_index_def;

typedef struct od_table_def {
    uint32_t size;                /* sizeof(od_table_def) */
    const char *name;             /* [a-z0-9_]{1,32} */
    const od_index_def *indexes;  /* borrowed for the call */
    uint32_t n_indexes;           /* <= 8 */
    /* append new members below this line only */
} od_table_def;

/* The value a document has for one index, given to put(). */
typedef struct od_index_value {
    const char *index; /* name from the table's od_table_def */
    const char *value; /* 1..255 bytes */
} od_index_value;

typedef struct od_doc {
    char *key;        /* NUL-terminated */
    char *body;       /* JSON bytes, NUL-terminated; len excludes the NUL */
    size_t len;
    uint64_t version; /* >= 1 */
} od_doc;

typedef struct od_page {
    od_doc *items;  /* array of count documents */
    size_t count;
    char *next;     /* cursor for the next page, NULL when this is the last */
} od_page;

/* put() conditions */
#define OD_PUT_UPSERT     0 /* create or replace */
#define OD_PUT_IF_ABSENT  1 /* create only; key exists -> OD_ERR_EXISTS */
#define OD_PUT_IF_VERSION 2 /* replace only if current version == expected; else OD_ERR_CONFLICT,
                               missing -> OD_ERR_NOT_FOUND */

/* One document write of put_batch(): put()'s arguments. */
typedef struct od_put {
    uint32_t size;                /* sizeof(od_put) */
    uint32_t cond;                /* OD_PUT_* */
    const char *table;
    const char *key;
    const char *body;
    size_t len;
    const od_index_value *idx;    /* n_idx values, as for put() */
    size_t n_idx;
    uint64_t expected;            /* for OD_PUT_IF_VERSION */
    /* append new members below this line only */
} od_put;

/* A queue message put_batch() enqueues in the same transaction: send()'s
 * arguments plus the queue it is for. */
typedef struct od_outbox {
    uint32_t size;                /* sizeof(od_outbox) */
    uint32_t lane;                /* OD_LANE_* */
    const od_queue *queue;        /* host->queue(): must share this backend's store */
    const char *body;             /* 1..OD_MESSAGE_MAX bytes */
    size_t len;
    uint32_t delay_ms;            /* 0..900000 */
    /* append new members below this line only */
} od_outbox;

#define OD_BATCH_MAX 16 /* puts per put_batch() */
#define OD_BATCH_NONE ((size_t)-1) /* put_batch()'s *failed when no one put failed */

/* Validation every backend applies to its arguments (static inline: no ABI
 * surface). Each walks at most its limit + 1 bytes. */
static inline int od_storage_valid_name(const char *s)
{
    size_t n = 0;
    if (!s)
        return 0;
    for (; s[n] && n <= OD_NAME_MAX; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
            return 0;
    return n >= 1 && n <= OD_NAME_MAX;
}

/* Keys: 1..OD_KEY_MAX bytes of printable ASCII (space included). */
static inline int od_storage_valid_key(const char *s)
{
    size_t n = 0;
    if (!s)
        return 0;
    for (; s[n] && n <= OD_KEY_MAX; n++)
        if ((unsigned char)s[n] < 0x20 || (unsigned char)s[n] > 0x7e)
            return 0;
    return n >= 1 && n <= OD_KEY_MAX;
}

/* A table definition: valid names, at most OD_INDEXES_MAX distinct indexes. */
static inline int od_storage_valid_table_def(const od_table_def *def)
{
    if (!def || def->size < sizeof(od_table_def) || !od_storage_valid_name(def->name) ||
        def->n_indexes > OD_INDEXES_MAX || (def->n_indexes > 0 && !def->indexes))
        return 0;
    for (uint32_t i = 0; i < def->n_indexes; i++) {
        if (!od_storage_valid_name(def->indexes[i].name))
            return 0;
        for (uint32_t j = 0; j < i; j++) {
            const char *a = def->indexes[i].name, *b = def->indexes[j].name;
            while (*a && *a == *b)
                a++, b++;
            if (*a == *b)
                return 0; /* the same name twice */
        }
    }
    return 1;
}

/* The shape of a put_batch() call every backend refuses the same way:
 * 1..OD_BATCH_MAX puts, none NULL or smaller than this od_put, no
 * (table, key) twice. Each put's own arguments are the backend's to check
 * as for put(). */
static inline int od_storage_valid_batch(const od_put *const *puts, size_t n)
{
    if (!puts || n < 1 || n > OD_BATCH_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!puts[i] || puts[i]->size < sizeof(od_put))
            return 0;
        for (size_t j = 0; j < i && puts[i]->table && puts[i]->key; j++) {
            const od_put *a = puts[i], *b = puts[j];
            if (b->table && b->key && strcmp(a->table, b->table) == 0 &&
                strcmp(a->key, b->key) == 0)
                return 0;
        }
    }
    return 1;
}

typedef struct od_storage_ops {
    uint32_t size; /* sizeof(od_storage_ops) */

    /* Declare a table (idempotent). Main thread, during init of the module
     * that owns the table. Returns OD_OK or OD_ERR_INVALID / _UNAVAILABLE. */
    od_status (*define_table)(void *self, const od_table_def *def);

    /* Read one document. OD_OK and *out filled, or OD_ERR_NOT_FOUND.
     * Strongly consistent: a read after a successful put sees it. */
    od_status (*get)(void *self, const char *table, const char *key, od_doc *out);

    /* Write one document under a condition (OD_PUT_*), with its index values
     * (n_idx may be 0; the previous values of the document are replaced).
     * expected: the version for OD_PUT_IF_VERSION, ignored otherwise.
     * *new_version (may be NULL) receives the version written.
     * Errors: OD_ERR_EXISTS (key exists for IF_ABSENT, or a unique index value
     * belongs to another document), OD_ERR_CONFLICT, OD_ERR_NOT_FOUND. */
    od_status (*put)(void *self, const char *table, const char *key, const char *body, size_t len,
                     const od_index_value *idx, size_t n_idx, uint32_t cond, uint64_t expected,
                     uint64_t *new_version);

    /* Delete one document; expected 0 = any version. OD_ERR_NOT_FOUND,
     * OD_ERR_CONFLICT when the version differs. */
    od_status (*del)(void *self, const char *table, const char *key, uint64_t expected);

    /* The document whose unique index has this value. OD_ERR_NOT_FOUND if none. */
    od_status (*lookup)(void *self, const char *table, const char *index, const char *value,
                        od_doc *out);

    /* Documents whose (unique or not) index has this value, a page at a time.
     * cursor: NULL for the first page. limit: 1..1000. descending: 0 or 1. */
    od_status (*query)(void *self, const char *table, const char *index, const char *value,
                       const char *cursor, uint32_t limit, uint32_t descending, od_page *out);

    /* All documents of a table, a page at a time (same cursor rules). */
    od_status (*scan)(void *self, const char *table, const char *cursor, uint32_t limit,
                      uint32_t descending, od_page *out);

    /* Atomically: value += delta only if the result is >= floor.
     * token: NULL, or an op id (<= 255 bytes) recorded with the change in the
     * same atomic step; a second call with the same token changes nothing and
     * reports *applied = 0 (tokens are kept at least 7 days).
     * *result (may be NULL) receives the value after the call.
     * *applied (may be NULL) is 1 when this call changed the value.
     * OD_ERR_NOT_FOUND: no such counter. OD_ERR_CONFLICT: result < floor. */
    od_status (*counter_add)(void *self, const char *table, const char *key, int64_t delta,
                             int64_t floor, const char *token, int64_t *result, int32_t *applied);
    /* Create or overwrite a counter. */
    od_status (*counter_set)(void *self, const char *table, const char *key, int64_t value);
    od_status (*counter_get)(void *self, const char *table, const char *key, int64_t *value);
    od_status (*counter_del)(void *self, const char *table, const char *key);

    /* Cheap liveness check for /health. OD_OK or OD_ERR_UNAVAILABLE. */
    od_status (*ping)(void *self);

    /* ---- ABI 1.1: optional, NULL when the backend cannot; test with
     * OD_HAS_OP(od_storage_ops, ops, member) ---- */

    /* Write puts[0..n) all or nothing: every put as put() would (same
     * conditions, validation and errors), in one transaction. n is
     * 1..OD_BATCH_MAX and no two puts name the same (table, key)
     * (OD_ERR_INVALID). When msg is not NULL its message is enqueued in the
     * same transaction, so the documents and the message exist together or
     * not at all. A backend can do that only for a queue keeping its
     * messages in the same store (store() below equals the queue's
     * store()); for any other queue it returns OD_ERR_UNSUPPORTED and
     * writes nothing: put the documents without msg and send() yourself.
     * After a commit that carried a message the backend calls
     * msg->queue->ops->notify() so waiting receivers see it at once.
     * versions: NULL, or n slots for the versions written.
     * *failed (may be NULL): the index of the put whose condition or unique
     * index value failed (OD_ERR_EXISTS / _CONFLICT / _NOT_FOUND), else
     * OD_BATCH_NONE. Any thread; blocks like put(). */
    od_status (*put_batch)(void *self, const od_put *const *puts, size_t n, const od_outbox *msg,
                           uint64_t *versions, size_t *failed);

    /* The store this backend writes to, as an opaque string naming the
     * technology and the place (storage_sqlite: "sqlite:" + the database
     * file's real path); owned by the backend, valid until destroy. A
     * storage and a queue backend whose store strings are equal share a
     * transaction: put_batch() can carry that queue's messages. */
    const char *(*store)(void *self);
    /* append new members below this line only */
} od_storage_ops;

/* What a module gets from host->storage(): the configured backend. */
typedef struct od_storage {
    const od_storage_ops *ops;
    void *self;
} od_storage;

#ifdef __cplusplus
}
#endif
#endif /* ORDERD_STORAGE_H */
