/*
 * odsql.c - per-thread SQLite connections, cached statements, IMMEDIATE
 * transactions with bounded busy retries, group commit, and per-component
 * schema versions, shared by storage_sqlite and queue_sqlite (see odsql.h).
 */
#include "odsql.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ODSQL_DEFAULT_PATH "/var/lib/orderd/orderd.db"
#define ODSQL_DEFAULT_BUSY_MS 5000
#define ODSQL_MAX_BUSY_MS 600000
#define ODSQL_BACKOFF_MAX_MS 32

static const char META_CREATE[] =
    "CREATE TABLE IF NOT EXISTS meta(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    " WITHOUT ROWID";
static const char META_GET[] = "SELECT version FROM meta WHERE component = ?1";
static const char META_SET[] = "INSERT INTO meta(component, version) VALUES(?1, ?2)"
                               " ON CONFLICT(component) DO UPDATE SET version = excluded.version";

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* SQLite's own busy handler sleeps up to 100 ms between attempts, which
 * leaves the lock idle most of the time when threads of this process take
 * turns. Poll in short steps instead, until the op's deadline. */
static int busy_wait(void *arg, int count)
{
    odsql_conn *c = arg;
    if (c->owner->host->monotonic_ms() >= c->deadline_ms)
        return 0;
    sleep_us(count < 4 ? 100L << count : 1000L);
    return 1;
}

int odsql_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* The environment failed (disk, permissions, locks): retry later. */
static int environmental(int primary)
{
    return primary == SQLITE_IOERR || primary == SQLITE_FULL || primary == SQLITE_CANTOPEN ||
           primary == SQLITE_READONLY || primary == SQLITE_PROTOCOL || primary == SQLITE_PERM;
}

od_status odsql_error(odsql_conn *c, int rc)
{
    odsql_db *d = c->owner;
    int primary = rc & 0xff;
    c->last_rc = rc;
    switch (primary) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return OD_ERR_UNAVAILABLE; /* retried by the caller until the deadline */
    case SQLITE_CONSTRAINT:
        /* A primary key or unique index refused a second row. */
        if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
            return OD_ERR_EXISTS;
        break;
    case SQLITE_NOMEM:
        return OD_ERR_NOMEM;
    case SQLITE_TOOBIG:
        return OD_ERR_TOO_LARGE;
    default:
        break;
    }
    d->host->log(d->mod, OD_LOG_ERROR, "%s \"sqlite\": %s: %s (%d)", d->component, d->path,
                 sqlite3_errmsg(c->db), rc);
    return environmental(primary) ? OD_ERR_UNAVAILABLE : OD_ERR_INTERNAL;
}

/* ---- connections ---- */

static void conn_free(const od_host_api *h, odsql_conn *c)
{
    if (c->stmts) {
        for (size_t i = 0; i < c->owner->n_sql; i++)
            sqlite3_finalize(c->stmts[i]);
        h->free(c->stmts);
    }
    for (size_t i = 0; i < ODSQL_TX_COUNT; i++)
        sqlite3_finalize(c->tx[i]);
    sqlite3_close_v2(c->db);
    h->free(c);
}

/* Key destructor: the thread that owned the connection is exiting. */
static void conn_release(void *p)
{
    odsql_conn *c = p;
    odsql_db *d = c->owner;
    pthread_mutex_lock(&d->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        d->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&d->lock);
    conn_free(d->host, c);
}

static int conn_pragmas(odsql_db *d, sqlite3 *db)
{
    /* Per connection, not per file. journal_size_limit: a WAL that grew
     * during a burst is cut back to 64 MiB at the next checkpoint. */
    return sqlite3_exec(db,
                        d->full_sync ? "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                                       "PRAGMA journal_size_limit=67108864"
                                     : "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
                                       "PRAGMA journal_size_limit=67108864",
                        NULL, NULL, NULL);
}

static odsql_conn *conn_open(odsql_db *d, od_status *s)
{
    const od_host_api *h = d->host;
    odsql_conn *c = h->calloc(1, sizeof *c);
    if (c)
        c->stmts = h->calloc(d->n_sql ? d->n_sql : 1, sizeof *c->stmts);
    if (!c || !c->stmts) {
        h->free(c);
        *s = OD_ERR_NOMEM;
        return NULL;
    }
    c->owner = d;
    /* NOMUTEX: the connection never leaves this thread (see odsql.h). */
    const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(d->path, &c->db, flags, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(c->db, 1);
        sqlite3_busy_handler(c->db, busy_wait, c);
        c->deadline_ms = h->monotonic_ms() + d->busy_timeout_ms;
        rc = conn_pragmas(d, c->db);
    }
    if (rc != SQLITE_OK) {
        h->log(d->mod, OD_LOG_ERROR, "%s \"sqlite\": cannot open %s: %s", d->component, d->path,
               c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        conn_free(h, c);
        *s = OD_ERR_UNAVAILABLE;
        return NULL;
    }
    return c;
}

odsql_conn *odsql_conn_get(odsql_db *d, od_status *s)
{
    odsql_conn *c = pthread_getspecific(d->key);
    if (!c) {
        c = conn_open(d, s);
        if (!c)
            return NULL;
        if (pthread_setspecific(d->key, c) != 0) {
            conn_free(d->host, c);
            *s = OD_ERR_NOMEM;
            return NULL;
        }
        pthread_mutex_lock(&d->lock);
        c->next = d->conns;
        if (d->conns)
            d->conns->prev = c;
        d->conns = c;
        pthread_mutex_unlock(&d->lock);
    }
    c->deadline_ms = d->host->monotonic_ms() + d->busy_timeout_ms;
    return c;
}

sqlite3_stmt *odsql_stmt(odsql_conn *c, size_t i)
{
    sqlite3_stmt *st = c->stmts[i];
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return st;
    }
    int rc = sqlite3_prepare_v3(c->db, c->owner->sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (rc != SQLITE_OK) {
        odsql_error(c, rc);
        return NULL;
    }
    c->stmts[i] = st;
    return st;
}

/* ---- transactions ---- */

/* A statement left mid-result keeps its read snapshot open: end them all
 * before COMMIT and before the connection goes back to idle. */
static void reset_busy_statements(sqlite3 *db)
{
    for (sqlite3_stmt *st = sqlite3_next_stmt(db, NULL); st; st = sqlite3_next_stmt(db, st))
        if (sqlite3_stmt_busy(st))
            sqlite3_reset(st);
}

static int exec(odsql_conn *c, const char *sql)
{
    return sqlite3_exec(c->db, sql, NULL, NULL, NULL);
}

/* The lock was busy (not a failure of the op itself). */
static int busy_escaped(const odsql_conn *c, od_status s)
{
    int primary = c->last_rc & 0xff;
    return s == OD_ERR_UNAVAILABLE && (primary == SQLITE_BUSY || primary == SQLITE_LOCKED);
}

/* Busy again: retry while the deadline allows, else say why we give up. */
static int retryable(const odsql_conn *c, od_status s)
{
    const odsql_db *d = c->owner;
    if (!busy_escaped(c, s))
        return 0;
    if (d->host->monotonic_ms() < c->deadline_ms)
        return 1;
    d->host->log(d->mod, OD_LOG_WARN,
                 "%s \"sqlite\": %s: database still locked after busy_timeout_ms = %lld",
                 d->component, d->path, (long long)d->busy_timeout_ms);
    return 0;
}

static void backoff(const odsql_conn *c, unsigned attempt)
{
    int64_t ms = attempt < 5 ? (int64_t)1 << attempt : ODSQL_BACKOFF_MAX_MS;
    int64_t left = c->deadline_ms - c->owner->host->monotonic_ms();
    if (ms > left)
        ms = left > 0 ? left : 0;
    sleep_us((long)ms * 1000);
}

/* ---- group commit (odsql.h) ---- */

#define ODSQL_BATCH_MAX 64

static const char *const TX_SQL[ODSQL_TX_COUNT] = {
    [ODSQL_TX_BEGIN] = "BEGIN IMMEDIATE",
    [ODSQL_TX_COMMIT] = "COMMIT",
    [ODSQL_TX_ROLLBACK] = "ROLLBACK",
    [ODSQL_TX_SAVEPOINT] = "SAVEPOINT odsql_op",
    [ODSQL_TX_RELEASE] = "RELEASE odsql_op",
    [ODSQL_TX_UNDO] = "ROLLBACK TO odsql_op",
};

enum { OP_QUEUED, OP_LEAD, OP_DONE };

/* One odsql_write() call, on its caller's stack until it returns. */
typedef struct odsql_op {
    odsql_txn_fn fn;
    void *arg;
    od_status status;      /* written by the leader, read after OP_DONE */
    int state;             /* OP_*, under gc_lock */
    pthread_cond_t wake;   /* signalled under gc_lock when state changes */
    struct odsql_op *next; /* gc queue, under gc_lock */
} odsql_op;

/* Step a transaction control statement (prepared once: a batch runs
 * 2 + 2 * ops of them, and parsing each would cost more than running it). */
static int tx(odsql_conn *c, int which)
{
    sqlite3_stmt *st = c->tx[which];
    if (!st) {
        int rc = sqlite3_prepare_v3(c->db, TX_SQL[which], -1, SQLITE_PREPARE_PERSISTENT, &st,
                                    NULL);
        if (rc != SQLITE_OK)
            return rc;
        c->tx[which] = st;
    }
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Run one op inside its own savepoint. Its failure (a condition, a unique
 * value, a bad number: normal outcomes) undoes its own changes only and is
 * its status. Returns an error only when the whole transaction cannot go
 * on: SQLite rolled it back, or BUSY escaped (the batch is retried). */
static od_status op_run(odsql_conn *c, odsql_op *op)
{
    int rc = tx(c, ODSQL_TX_SAVEPOINT);
    if (rc != SQLITE_OK)
        return odsql_error(c, rc);
    c->last_rc = SQLITE_OK;
    op->status = op->fn(c, op->arg);
    reset_busy_statements(c->db);
    if (sqlite3_get_autocommit(c->db)) /* I/O error, full disk, no memory */
        return op->status != OD_OK ? op->status : OD_ERR_INTERNAL;
    if (busy_escaped(c, op->status))
        return op->status;
    if (op->status != OD_OK && (rc = tx(c, ODSQL_TX_UNDO)) != SQLITE_OK)
        return odsql_error(c, rc);
    rc = tx(c, ODSQL_TX_RELEASE);
    return rc == SQLITE_OK ? OD_OK : odsql_error(c, rc);
}

/* One attempt: BEGIN IMMEDIATE, every op, COMMIT. OD_OK when committed
 * (each op has its own status), else the status of every op of the batch:
 * none of their changes happened. */
static od_status batch_once(odsql_conn *c, odsql_op *const *ops, size_t n)
{
    int rc = tx(c, ODSQL_TX_BEGIN);
    if (rc != SQLITE_OK)
        return odsql_error(c, rc);
    od_status s = OD_OK;
    for (size_t i = 0; i < n && s == OD_OK; i++)
        s = op_run(c, ops[i]);
    if (s == OD_OK && (rc = tx(c, ODSQL_TX_COMMIT)) != SQLITE_OK)
        s = odsql_error(c, rc);
    if (!sqlite3_get_autocommit(c->db))
        tx(c, ODSQL_TX_ROLLBACK);
    return s;
}

/* The whole batch shares one deadline, counted from its start: no op gives
 * up on the lock sooner than busy_timeout_ms after its batch began. */
static void batch_run(odsql_conn *c, odsql_op *const *ops, size_t n)
{
    odsql_db *d = c->owner;
    c->deadline_ms = d->host->monotonic_ms() + d->busy_timeout_ms;
    for (unsigned attempt = 0;; attempt++) {
        c->last_rc = SQLITE_OK;
        od_status s = batch_once(c, ops, n);
        if (s == OD_OK)
            return;
        if (!retryable(c, s)) {
            for (size_t i = 0; i < n; i++)
                ops[i]->status = s;
            return;
        }
        backoff(c, attempt);
    }
}

/* Under gc_lock. */
static void queue_push(odsql_db *d, odsql_op *op)
{
    if (d->gc_tail)
        d->gc_tail->next = op;
    else
        d->gc_head = op;
    d->gc_tail = op;
}

/* Under gc_lock. */
static size_t queue_take(odsql_db *d, odsql_op **ops, size_t max)
{
    size_t n = 0;
    while (d->gc_head && n < max) {
        ops[n++] = d->gc_head;
        d->gc_head = d->gc_head->next;
    }
    if (!d->gc_head)
        d->gc_tail = NULL;
    return n;
}

/* Called and returns with gc_lock held. The leader's own op is the head of
 * the queue (it was pushed on an empty queue, or handed the lead as the
 * head), so it is in this batch. SQL runs without the lock: ops queue up
 * meanwhile and form the next batch. */
static void lead(odsql_db *d, odsql_conn *c)
{
    odsql_op *batch[ODSQL_BATCH_MAX];
    size_t n = queue_take(d, batch, ODSQL_BATCH_MAX);
    pthread_mutex_unlock(&d->gc_lock);
    batch_run(c, batch, n);
    pthread_mutex_lock(&d->gc_lock);
    for (size_t i = 0; i < n; i++) {
        /* A follower returns (and its op goes away) only after it gets
         * gc_lock back, so signalling under the lock is safe. */
        batch[i]->state = OP_DONE;
        pthread_cond_signal(&batch[i]->wake);
    }
    /* Hand over rather than lead on: this thread's caller is waiting too,
     * and while the next leader wakes up more ops queue, so batches stay
     * large (leading on measured 2-3x slower at 8 writer threads). */
    if (d->gc_head) {
        d->gc_head->state = OP_LEAD;
        pthread_cond_signal(&d->gc_head->wake);
    } else {
        d->gc_leader = 0;
    }
}

od_status odsql_write(odsql_conn *c, odsql_txn_fn fn, void *arg)
{
    odsql_db *d = c->owner;
    odsql_op op = {fn, arg, OD_OK, OP_QUEUED, PTHREAD_COND_INITIALIZER, NULL};
    pthread_mutex_lock(&d->gc_lock);
    queue_push(d, &op);
    if (!d->gc_leader) {
        d->gc_leader = 1;
        op.state = OP_LEAD;
    }
    while (op.state == OP_QUEUED)
        pthread_cond_wait(&op.wake, &d->gc_lock);
    if (op.state == OP_LEAD)
        lead(d, c);
    pthread_mutex_unlock(&d->gc_lock);
    pthread_cond_destroy(&op.wake);
    return op.status;
}

od_status odsql_read(odsql_conn *c, odsql_txn_fn fn, void *arg)
{
    for (unsigned attempt = 0;; attempt++) {
        c->last_rc = SQLITE_OK;
        od_status s = fn(c, arg);
        reset_busy_statements(c->db);
        if (!retryable(c, s))
            return s;
        backoff(c, attempt);
    }
}

/* ---- schema ---- */

typedef struct migration {
    odsql_db *d;
    const odsql_schema *schema;
    int from;
} migration;

static int meta_version(odsql_conn *c, const char *component, int *version)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, META_GET, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        odsql_bind_text(st, 1, component);
        rc = sqlite3_step(st);
        *version = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    return rc;
}

static int meta_store(odsql_conn *c, const char *component, int version)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, META_SET, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        odsql_bind_text(st, 1, component);
        sqlite3_bind_int(st, 2, version);
        rc = sqlite3_step(st);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Inside BEGIN IMMEDIATE, so two processes opening one file at once cannot
 * both migrate it. */
static od_status migrate_txn(odsql_conn *c, void *arg)
{
    migration *m = arg;
    odsql_db *d = m->d;
    int rc = exec(c, META_CREATE);
    if (rc == SQLITE_OK)
        rc = meta_version(c, d->component, &m->from);
    if (rc != SQLITE_OK)
        return odsql_error(c, rc);
    if (m->from > m->schema->version || m->from < 0) {
        d->host->log(d->mod, OD_LOG_ERROR,
                     "%s \"sqlite\": %s has schema version %d, this orderd supports up to %d; "
                     "upgrade orderd or restore a backup",
                     d->component, d->path, m->from, m->schema->version);
        return OD_ERR_CONFIG;
    }
    for (int v = m->from; v < m->schema->version; v++) {
        rc = exec(c, m->schema->steps[v]);
        if (rc != SQLITE_OK) {
            d->host->log(d->mod, OD_LOG_ERROR,
                         "%s \"sqlite\": %s: migrating schema version %d to %d failed: %s",
                         d->component, d->path, v, v + 1, sqlite3_errmsg(c->db));
            return OD_ERR_INTERNAL;
        }
    }
    rc = m->from == m->schema->version ? SQLITE_OK
                                       : meta_store(c, d->component, m->schema->version);
    return rc == SQLITE_OK ? OD_OK : odsql_error(c, rc);
}

static od_status prepare_file(odsql_db *d, odsql_conn *c, const odsql_schema *schema)
{
    /* WAL is a property of the file: readers never block the one writer. */
    int rc = exec(c, "PRAGMA journal_mode=WAL");
    if (rc != SQLITE_OK) {
        d->host->log(d->mod, OD_LOG_ERROR, "%s \"sqlite\": %s: cannot switch to WAL: %s",
                     d->component, d->path, sqlite3_errmsg(c->db));
        return OD_ERR_UNAVAILABLE;
    }
    migration m = {d, schema, 0};
    od_status s = odsql_write(c, migrate_txn, &m);
    if (s == OD_OK && m.from == 0)
        d->host->log(d->mod, OD_LOG_INFO, "%s \"sqlite\": %s: created schema version %d",
                     d->component, d->path, schema->version);
    else if (s == OD_OK && m.from != schema->version)
        d->host->log(d->mod, OD_LOG_INFO, "%s \"sqlite\": %s: migrated schema version %d -> %d",
                     d->component, d->path, m.from, schema->version);
    return s;
}

/* ---- config ---- */

static od_status read_config(odsql_db *d)
{
    const od_host_api *h = d->host;
    const char *durability = NULL;
    od_status s = h->config_string(d->mod, "path", ODSQL_DEFAULT_PATH, &d->path);
    if (s == OD_OK)
        s = h->config_string(d->mod, "durability", "full", &durability);
    if (s == OD_OK)
        s = h->config_int(d->mod, "busy_timeout_ms", ODSQL_DEFAULT_BUSY_MS, 0, ODSQL_MAX_BUSY_MS,
                          &d->busy_timeout_ms);
    if (s != OD_OK)
        return OD_ERR_CONFIG;
    if (!d->path || !d->path[0] || d->path[0] == ':' || strncmp(d->path, "file:", 5) == 0) {
        /* Each thread opens its own connection: an in-memory database or
         * a URI would not be one shared database. */
        h->log(d->mod, OD_LOG_ERROR,
               "%s \"sqlite\": path = \"%s\" is not valid: give a file name (not empty, "
               "\":memory:\" or a file: URI)", d->component, d->path ? d->path : "");
        return OD_ERR_CONFIG;
    }
    if (strcmp(durability, "full") != 0 && strcmp(durability, "normal") != 0) {
        h->log(d->mod, OD_LOG_ERROR,
               "%s \"sqlite\": durability = \"%s\" is not valid (valid: full, normal)",
               d->component, durability);
        return OD_ERR_CONFIG;
    }
    d->full_sync = strcmp(durability, "full") == 0;
    return OD_OK;
}

/* The file holds password hashes: create it 0600 rather than SQLite's
 * 0644 & ~umask. SQLite gives the -wal and -shm files the same mode. An
 * empty file is a valid empty database. */
static void create_private(odsql_db *d)
{
    int fd = open(d->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    else if (errno != EEXIST)
        d->host->log(d->mod, OD_LOG_DEBUG, "%s \"sqlite\": %s: %s", d->component, d->path,
                     strerror(errno)); /* sqlite3_open_v2 reports it properly */
}

/* "sqlite:" + the file's canonical path: two modules naming one file by
 * different paths (relative, through a symlink) get the same string. */
static od_status store_name(odsql_db *d)
{
    char *real = realpath(d->path, NULL);
    if (!real) {
        d->host->log(d->mod, OD_LOG_ERROR, "%s \"sqlite\": %s: %s", d->component, d->path,
                     strerror(errno));
        return OD_ERR_UNAVAILABLE;
    }
    size_t n = strlen(real);
    d->store = d->host->alloc(sizeof ODSQL_STORE_PREFIX + n);
    if (d->store) {
        memcpy(d->store, ODSQL_STORE_PREFIX, sizeof ODSQL_STORE_PREFIX - 1);
        memcpy(d->store + sizeof ODSQL_STORE_PREFIX - 1, real, n + 1);
    }
    free(real);
    return d->store ? OD_OK : OD_ERR_NOMEM;
}

od_status odsql_open(odsql_db *d, const od_host_api *host, od_module *mod, const char *component,
                     const char *const *sql, size_t n_sql, const odsql_schema *schema)
{
    memset(d, 0, sizeof *d);
    d->host = host;
    d->mod = mod;
    d->component = component;
    d->sql = sql;
    d->n_sql = n_sql;
    od_status s = read_config(d);
    if (s != OD_OK)
        return s;
    if (pthread_key_create(&d->key, conn_release) != 0)
        return OD_ERR_NOMEM;
    pthread_mutex_init(&d->lock, NULL);
    pthread_mutex_init(&d->gc_lock, NULL);
    create_private(d);
    odsql_conn *c = odsql_conn_get(d, &s);
    if (c)
        s = prepare_file(d, c, schema);
    if (s == OD_OK)
        s = store_name(d);
    if (s != OD_OK)
        odsql_close(d);
    return s;
}

void odsql_close(odsql_db *d)
{
    /* Deleting the key first: a thread exiting from now on does not run
     * conn_release, its connection is closed here. */
    pthread_key_delete(d->key);
    pthread_mutex_lock(&d->lock);
    odsql_conn *c = d->conns;
    d->conns = NULL;
    pthread_mutex_unlock(&d->lock);
    while (c) {
        odsql_conn *next = c->next;
        conn_free(d->host, c);
        c = next;
    }
    pthread_mutex_destroy(&d->lock);
    pthread_mutex_destroy(&d->gc_lock);
    d->host->free(d->store);
    d->store = NULL;
}

od_status odsql_message_insert(odsql_conn *c, sqlite3_stmt *st, const odsql_message *m,
                               int64_t *id)
{
    sqlite3_bind_int(st, 1, (int)m->lane);
    sqlite3_bind_blob64(st, 2, m->body, m->len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, m->visible_at_ms);
    sqlite3_bind_int64(st, 4, m->sent_ms);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        return odsql_error(c, rc);
    if (id)
        *id = sqlite3_last_insert_rowid(c->db);
    return OD_OK;
}
