/*
 * odsql.h - the SQLite plumbing storage_sqlite and queue_sqlite share
 * (static library odsql, linked into both .so's with hidden visibility, like
 * odmod_common; not part of the ABI).
 *
 * One odsql_db per module instance. It reads the module's config keys
 * (group "storage" or "queue"):
 *   path             database file (default /var/lib/orderd/orderd.db; a
 *                    relative path is relative to the process CWD)
 *   durability       "full" (synchronous=FULL: an acknowledged write survives
 *                    power loss; default) or "normal" (synchronous=NORMAL:
 *                    survives a crash of orderd, not of the OS)
 *   busy_timeout_ms  how long one op waits for the write lock (default 5000)
 *
 * Connections: one per thread, opened lazily with SQLITE_OPEN_NOMUTEX (no
 * per-call mutex: a connection and its statements are only ever used by
 * the thread that opened it). A pthread key on the odsql_db finds the
 * thread's connection; all connections are also on a list under `lock` so
 * odsql_close() can close those of threads still alive, and the key's
 * destructor closes a connection when its thread exits. Statements are
 * prepared once per connection (SQLITE_PREPARE_PERSISTENT) and reused.
 *
 * Transactions: every writing transaction begins with BEGIN IMMEDIATE (a
 * deferred one that later writes fails at once with SQLITE_BUSY_SNAPSHOT
 * under contention, ignoring the busy timeout). Each op has a deadline of
 * busy_timeout_ms: the busy handler polls the lock in short steps until
 * then, and the whole transaction is retried with a bounded backoff if
 * SQLITE_BUSY/LOCKED still escapes. Past the deadline, or on I/O errors,
 * the op returns OD_ERR_UNAVAILABLE.
 *
 * Group commit: with durability "full" every COMMIT costs an fsync, so
 * writes are committed in groups (leader/follower, no thread of its own).
 * odsql_write() queues its op on the odsql_db; the first thread to find no
 * leader becomes the leader, takes up to ODSQL_BATCH_MAX queued ops, runs
 * them in ONE BEGIN IMMEDIATE transaction on its own connection, each
 * inside its own SAVEPOINT (an op's error rolls back that op only), COMMITs
 * once and wakes every op's thread with its own status; then it hands the
 * leadership to the oldest op still queued, if any. It never waits to fill
 * a batch: a batch is whatever queued up while the previous one committed.
 * An op returns only after the COMMIT containing it, so "acknowledged =
 * durable" holds as before. A batch has one deadline, busy_timeout_ms from
 * its start; BUSY past it, an I/O error or a failed COMMIT gives every op
 * of the batch the same error (none of them happened).
 *
 * Schema versions: table meta(component TEXT PRIMARY KEY, version INTEGER),
 * one row per component ("storage", "queue") because both may share a file.
 *
 * Shared file: odsql_db.store is "sqlite:" + the file's real path, what
 * both modules answer to the ABI's store() op. When storage_sqlite and
 * queue_sqlite name the same file, storage_sqlite's put_batch inserts the
 * order's queue message into queue_sqlite's messages table inside its own
 * transaction; the table's layout and the INSERT are defined once, here,
 * so the two modules cannot disagree on them.
 */
#ifndef ODSQL_H
#define ODSQL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "orderd/orderd.h"

typedef struct odsql_db odsql_db;

#define ODSQL_STORE_PREFIX "sqlite:"
#define ODSQL_MAX_DELAY_MS 900000 /* a message's delay, as SQS's */

/* queue_sqlite's messages table (component "queue", schema version 1). */
#define ODSQL_MESSAGES_SCHEMA_V1                                                                   \
    "CREATE TABLE messages(id INTEGER PRIMARY KEY AUTOINCREMENT, lane INTEGER NOT NULL,"          \
    " body BLOB NOT NULL, visible_at_ms INTEGER NOT NULL, receive_count INTEGER NOT NULL,"        \
    " receipt TEXT, sent_ms INTEGER NOT NULL);"                                                  \
    "CREATE INDEX messages_by_visibility ON messages(lane, visible_at_ms, id);"
#define ODSQL_MESSAGE_INSERT                                                                       \
    "INSERT INTO messages(lane, body, visible_at_ms, receive_count, receipt, sent_ms)"           \
    " VALUES(?1, ?2, ?3, 0, NULL, ?4)"

/* A message to insert with ODSQL_MESSAGE_INSERT; body is borrowed. */
typedef struct odsql_message {
    uint32_t lane;
    const char *body;
    size_t len;
    int64_t visible_at_ms, sent_ms; /* wall clock */
} odsql_message;

/* Transaction control statements, prepared once per connection. */
enum { ODSQL_TX_BEGIN, ODSQL_TX_COMMIT, ODSQL_TX_ROLLBACK, ODSQL_TX_SAVEPOINT, ODSQL_TX_RELEASE,
       ODSQL_TX_UNDO, ODSQL_TX_COUNT };

typedef struct odsql_conn {
    sqlite3 *db;
    sqlite3_stmt **stmts;  /* by the module's statement number, prepared lazily */
    sqlite3_stmt *tx[ODSQL_TX_COUNT];
    int64_t deadline_ms;   /* monotonic: when the current op stops waiting for locks */
    int last_rc;           /* extended result code of the last failure */
    odsql_db *owner;
    struct odsql_conn *prev, *next; /* owner->conns, under owner->lock */
} odsql_conn;

struct odsql_db {
    const od_host_api *host;
    od_module *mod;
    const char *component;     /* "storage" / "queue": meta row and messages */
    const char *path;          /* config string: valid until destroy */
    char *store;               /* "sqlite:" + real path (host allocator) */
    int full_sync;             /* durability = "full" */
    int64_t busy_timeout_ms;
    const char *const *sql;    /* the module's statements, by number */
    size_t n_sql;
    pthread_key_t key;         /* this thread's odsql_conn */
    pthread_mutex_t lock;      /* guards conns */
    odsql_conn *conns;
    /* Group commit (see above). gc_lock guards the queue and gc_leader;
     * it is never held while SQL runs. */
    pthread_mutex_t gc_lock;
    struct odsql_op *gc_head, *gc_tail; /* ops waiting for a batch, FIFO */
    int gc_leader;                      /* a thread is running a batch */
};

/* One schema step: SQL run inside the migration transaction to go from
 * version (index) to version (index + 1). */
typedef struct odsql_schema {
    const char *const *steps;  /* steps[v] migrates v -> v + 1; steps[0] creates */
    int version;               /* the version this orderd writes (= number of steps) */
} odsql_schema;

/* Read config, set up the key and lock, open the main thread's connection,
 * switch the file to WAL and create or migrate the component's schema.
 * Logs what went wrong and returns OD_ERR_CONFIG / _UNAVAILABLE / _NOMEM;
 * on failure nothing is left allocated. */
od_status odsql_open(odsql_db *d, const od_host_api *host, od_module *mod, const char *component,
                     const char *const *sql, size_t n_sql, const odsql_schema *schema);
/* Close every connection still open and the key. Main thread, after every
 * thread that used the db stopped using it. */
void odsql_close(odsql_db *d);

/* The calling thread's connection (opened on first use), with the op's
 * deadline set to now + busy_timeout_ms. NULL (and *s set) on failure. */
odsql_conn *odsql_conn_get(odsql_db *d, od_status *s);
/* The prepared statement `i` of the module's list, reset and unbound after
 * the previous use. NULL if it cannot be prepared (logged). */
sqlite3_stmt *odsql_stmt(odsql_conn *c, size_t i);
/* Map an SQLite result code to a status (and remember it for retries):
 * BUSY/LOCKED -> UNAVAILABLE (retried), a primary key or unique constraint
 * -> EXISTS, NOMEM -> NOMEM, TOOBIG -> TOO_LARGE; logged: IOERR/FULL/
 * CANTOPEN/READONLY/PROTOCOL/PERM -> UNAVAILABLE, anything else -> INTERNAL. */
od_status odsql_error(odsql_conn *c, int rc);

/* Run fn inside BEGIN IMMEDIATE ... COMMIT; fn's error rolls back fn's
 * changes only. fn may run on ANOTHER thread's connection, in one
 * transaction with other threads' ops (group commit): it must use only the
 * connection it is given and arg, and may run more than once (a retried
 * batch), so it must reset its outputs. Blocks until the COMMIT that holds
 * fn's changes returned. Retried with backoff while SQLite reports
 * BUSY/LOCKED and the deadline allows. */
typedef od_status (*odsql_txn_fn)(odsql_conn *c, void *arg);
od_status odsql_write(odsql_conn *c, odsql_txn_fn fn, void *arg);
/* Run fn (reads only, autocommit statements) with the same busy retries. */
od_status odsql_read(odsql_conn *c, odsql_txn_fn fn, void *arg);

/* Run the prepared ODSQL_MESSAGE_INSERT statement st for m, inside the
 * caller's write transaction; *id (may be NULL) gets the message id. */
od_status odsql_message_insert(odsql_conn *c, sqlite3_stmt *st, const odsql_message *m,
                               int64_t *id);

/* Bind a C string without copying it (SQLITE_STATIC): the caller keeps it
 * alive until the statement is reset. Returns an SQLite rc. */
int odsql_bind_text(sqlite3_stmt *st, int i, const char *s);

#endif
