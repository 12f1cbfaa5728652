/*
 * queue_sqlite - the durable embedded queue backend (OD_KIND_QUEUE).
 *
 * Messages of the three lanes live in one SQLite table, messages(id, lane,
 * body, visible_at_ms, receive_count, receipt, sent_ms), with an index on
 * (lane, visible_at_ms, id): the next visible message of a lane, FIFO by
 * the time it became visible then by send order, is the first entry of
 * that index. A receive claims up to `max` of them in one BEGIN IMMEDIATE
 * transaction: each gets a fresh receipt "<id>.<32 hex>" (128 bits from
 * host->random_bytes), receive_count + 1 and visible_at = now + visibility,
 * so an unacknowledged message simply becomes visible again; only the
 * latest receipt matches the row, older ones get OD_ERR_NOT_FOUND. Times
 * are wall-clock ms (host->now_ms), because another process sharing the
 * file must agree on them. Schema version: component "queue" in table meta
 * (odsql.h); docs/sqlite.md has the layout.
 *
 * Config (group "queue"): path, durability, busy_timeout_ms (odsql.h).
 * Threads: none of its own; each calling thread has its own connection for
 * reads (the peek before a claim), while sends, claims, deletes and
 * visibility changes are group-committed (odsql.h) and may run on another
 * caller's connection. A long poll waits outside the writer and only
 * queues a claim once the peek saw something visible.
 * Long poll: each lane has a mutex + condition variable (CLOCK_MONOTONIC)
 * and a generation counter bumped by send/change_visibility in this
 * process; a waiting receive sleeps on it but re-checks the database at
 * least every QS_RECHECK_MS (another process may send to the same file) and
 * when the earliest hidden message becomes visible. stop() wakes every
 * waiter; afterwards send and receive return OD_ERR_CLOSED.
 * Shared file: store() names the file ("sqlite:" + real path); a
 * storage_sqlite on the same file inserts messages in its own transactions
 * (put_batch) and calls notify(), which wakes the lane like a send.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <orderd/orderd.h>

#include "odsql.h"

#define QS_MAX_WAIT_MS 20000
#define QS_MAX_VISIBILITY_MS (12 * 3600 * 1000) /* SQS's limit */
#define QS_RECHECK_MS 150
#define QS_RANDOM_BYTES 16
#define QS_ID_MAX 20 /* decimal int64 */
#define QS_RECEIPT_MAX (QS_ID_MAX + 1 + 2 * QS_RANDOM_BYTES)
#define QS_SCHEMA_VERSION 1

static const char SCHEMA_V1[] = ODSQL_MESSAGES_SCHEMA_V1;
static const char *const SCHEMA_STEPS[QS_SCHEMA_VERSION] = {SCHEMA_V1};

enum {
    ST_SEND,
    ST_NEXT,
    ST_PICK,
    ST_CLAIM,
    ST_DELETE,
    ST_POSTPONE,
    ST_COUNT_VISIBLE,
    ST_COUNT_HIDDEN,
    ST_PING,
    ST_COUNT
};

static const char *const SQL[ST_COUNT] = {
    [ST_SEND] = ODSQL_MESSAGE_INSERT,
    [ST_NEXT] = "SELECT visible_at_ms FROM messages WHERE lane = ?1"
                " ORDER BY visible_at_ms, id LIMIT 1",
    [ST_PICK] = "SELECT id FROM messages WHERE lane = ?1 AND visible_at_ms <= ?2"
                " ORDER BY visible_at_ms, id LIMIT ?3",
    [ST_CLAIM] = "UPDATE messages SET visible_at_ms = ?2, receive_count = receive_count + 1,"
                 " receipt = ?3 WHERE id = ?1 RETURNING body, receive_count, sent_ms",
    [ST_DELETE] = "DELETE FROM messages WHERE id = ?1 AND lane = ?2 AND receipt = ?3",
    [ST_POSTPONE] = "UPDATE messages SET visible_at_ms = ?4"
                    " WHERE id = ?1 AND lane = ?2 AND receipt = ?3",
    [ST_COUNT_VISIBLE] = "SELECT count(*) FROM messages WHERE lane = ?1 AND visible_at_ms <= ?2",
    /* Delayed messages never received count as neither (as in SQS). */
    [ST_COUNT_HIDDEN] = "SELECT count(*) FROM messages WHERE lane = ?1 AND visible_at_ms > ?2"
                        " AND receive_count > 0",
    [ST_PING] = "SELECT version FROM meta WHERE component = 'queue'",
};

typedef struct qs_lane {
    pthread_mutex_t lock; /* guards gen */
    pthread_cond_t cond;  /* broadcast when gen changes or on stop */
    uint64_t gen;         /* bumped when a message of the lane may have become visible */
} qs_lane;

typedef struct qs {
    const od_host_api *host;
    od_module *mod;
    odsql_db db;
    qs_lane lanes[OD_LANE_COUNT];
    atomic_int closed; /* set by stop() */
} qs;

/* ---- lanes: waiting and waking ---- */

static uint64_t lane_gen(qs_lane *l)
{
    pthread_mutex_lock(&l->lock);
    uint64_t gen = l->gen;
    pthread_mutex_unlock(&l->lock);
    return gen;
}

static void lane_wake(qs_lane *l)
{
    pthread_mutex_lock(&l->lock);
    l->gen++;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

/* Sleep until the lane's generation moves past gen, stop(), or wake_ms
 * (host monotonic clock) passes. */
static void lane_wait(qs *q, qs_lane *l, uint64_t gen, int64_t wake_ms)
{
    int64_t left = wake_ms - q->host->monotonic_ms();
    if (left <= 0)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += left / 1000;
    ts.tv_nsec += (left % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&l->lock);
    while (l->gen == gen && !atomic_load(&q->closed))
        if (pthread_cond_timedwait(&l->cond, &l->lock, &ts) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&l->lock);
}

/* ---- receipts ---- */

static od_status receipt_new(const od_host_api *h, int64_t id, char *out)
{
    unsigned char r[QS_RANDOM_BYTES];
    static const char hex[] = "0123456789abcdef";
    if (h->random_bytes(r, sizeof r) != OD_OK)
        return OD_ERR_INTERNAL;
    int n = snprintf(out, QS_RECEIPT_MAX + 1, "%" PRId64 ".", id);
    for (size_t i = 0; i < sizeof r; i++) {
        out[n++] = hex[r[i] >> 4];
        out[n++] = hex[r[i] & 15];
    }
    out[n] = '\0';
    return OD_OK;
}

/* The message id a receipt names, or 0 when it is not one of ours. */
static int64_t receipt_id(const char *receipt)
{
    if (!receipt || receipt[0] < '1' || receipt[0] > '9')
        return 0;
    int64_t id = 0;
    const char *p = receipt;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (p - receipt >= 18)
            return 0;
        id = id * 10 + (*p - '0');
    }
    if (*p++ != '.')
        return 0;
    size_t n = 0;
    for (; p[n]; n++)
        if (!((p[n] >= '0' && p[n] <= '9') || (p[n] >= 'a' && p[n] <= 'f')))
            return 0;
    return n == 2 * QS_RANDOM_BYTES ? id : 0;
}

/* ---- send ---- */

typedef struct send_args {
    odsql_message m;
    int64_t id; /* out */
} send_args;

static od_status run(odsql_conn *c, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    return rc == SQLITE_DONE ? OD_OK : odsql_error(c, rc);
}

static od_status send_txn(odsql_conn *c, void *arg)
{
    send_args *a = arg;
    sqlite3_stmt *st = odsql_stmt(c, ST_SEND);
    return st ? odsql_message_insert(c, st, &a->m, &a->id) : OD_ERR_INTERNAL;
}

static char *id_string(const od_host_api *h, int64_t id)
{
    char buf[QS_ID_MAX + 1];
    snprintf(buf, sizeof buf, "%" PRId64, id);
    return h->strdup(buf);
}

static od_status qs_send(void *self, uint32_t lane, const char *body, size_t len,
                         uint32_t delay_ms, char **id_out)
{
    qs *q = self;
    od_status s = OD_OK;
    if (id_out)
        *id_out = NULL;
    if (lane >= OD_LANE_COUNT || !body || len == 0 || delay_ms > ODSQL_MAX_DELAY_MS)
        return OD_ERR_INVALID;
    if (len > OD_MESSAGE_MAX)
        return OD_ERR_TOO_LARGE;
    if (atomic_load(&q->closed))
        return OD_ERR_CLOSED;
    odsql_conn *c = odsql_conn_get(&q->db, &s);
    if (!c)
        return s;
    int64_t now = q->host->now_ms();
    send_args a = {{lane, body, len, now + delay_ms, now}, 0};
    s = odsql_write(c, send_txn, &a);
    if (s != OD_OK)
        return s;
    lane_wake(&q->lanes[lane]);
    if (id_out && !(*id_out = id_string(q->host, a.id)))
        return OD_ERR_NOMEM; /* the message is sent; only its id is lost */
    return OD_OK;
}

/* ---- receive ---- */

typedef struct claim_args {
    uint32_t lane, max, visibility_ms;
    od_message *out;
    size_t n;
    int64_t next_visible; /* wall ms of the earliest message, INT64_MAX if none */
} claim_args;

static void clear_claimed(const od_host_api *h, claim_args *a)
{
    for (size_t i = 0; i < a->n; i++)
        od_message_clear(h, &a->out[i]);
    a->n = 0;
}

static od_status peek_read(odsql_conn *c, void *arg)
{
    claim_args *a = arg;
    sqlite3_stmt *st = odsql_stmt(c, ST_NEXT);
    if (!st)
        return OD_ERR_INTERNAL;
    sqlite3_bind_int(st, 1, (int)a->lane);
    int rc = sqlite3_step(st);
    a->next_visible = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : INT64_MAX;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? OD_OK : odsql_error(c, rc);
}

/* Up to max ids of visible messages, oldest first. */
static od_status pick(odsql_conn *c, const claim_args *a, int64_t now, int64_t *ids, size_t *n)
{
    sqlite3_stmt *st = odsql_stmt(c, ST_PICK);
    if (!st)
        return OD_ERR_INTERNAL;
    sqlite3_bind_int(st, 1, (int)a->lane);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int(st, 3, (int)a->max);
    int rc;
    *n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ids[(*n)++] = sqlite3_column_int64(st, 0);
    return rc == SQLITE_DONE ? OD_OK : odsql_error(c, rc);
}

static od_status message_fill(const od_host_api *h, sqlite3_stmt *st, int64_t id,
                              const char *receipt, uint32_t lane, od_message *m)
{
    const void *body = sqlite3_column_blob(st, 0);
    size_t len = (size_t)sqlite3_column_bytes(st, 0);
    memset(m, 0, sizeof *m);
    m->id = id_string(h, id);
    m->receipt = h->strdup(receipt);
    m->body = h->alloc(len + 1);
    if (!m->id || !m->receipt || !m->body) {
        od_message_clear(h, m);
        return OD_ERR_NOMEM;
    }
    if (len)
        memcpy(m->body, body, len);
    m->body[len] = '\0';
    m->len = len;
    m->lane = lane;
    m->receive_count = (uint32_t)sqlite3_column_int64(st, 1);
    m->sent_ms = sqlite3_column_int64(st, 2);
    return OD_OK;
}

static od_status claim_one(odsql_conn *c, claim_args *a, int64_t id, int64_t hidden_until)
{
    const od_host_api *h = c->owner->host;
    char receipt[QS_RECEIPT_MAX + 1];
    od_status s = receipt_new(h, id, receipt);
    sqlite3_stmt *st = s == OD_OK ? odsql_stmt(c, ST_CLAIM) : NULL;
    if (!st)
        return s == OD_OK ? OD_ERR_INTERNAL : s;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, hidden_until);
    odsql_bind_text(st, 3, receipt);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? OD_ERR_INTERNAL : odsql_error(c, rc);
    s = message_fill(h, st, id, receipt, a->lane, &a->out[a->n]);
    a->n += s == OD_OK;
    return s;
}

static od_status claim_txn(odsql_conn *c, void *arg)
{
    claim_args *a = arg;
    const od_host_api *h = c->owner->host;
    int64_t ids[OD_RECEIVE_MAX];
    size_t n = 0;
    clear_claimed(h, a); /* from an attempt whose COMMIT was retried */
    int64_t now = h->now_ms();
    od_status s = pick(c, a, now, ids, &n);
    for (size_t i = 0; i < n && s == OD_OK; i++)
        s = claim_one(c, a, ids[i], now + a->visibility_ms);
    if (s != OD_OK)
        clear_claimed(h, a);
    return s;
}

/* One look at the lane: claim what is visible. A cheap indexed read first,
 * so an idle long poll never takes the write lock. */
static od_status claim(qs *q, claim_args *a)
{
    od_status s = OD_OK;
    odsql_conn *c = odsql_conn_get(&q->db, &s);
    if (!c)
        return s;
    s = odsql_read(c, peek_read, a);
    if (s != OD_OK || a->next_visible > q->host->now_ms())
        return s;
    s = odsql_write(c, claim_txn, a);
    if (s != OD_OK)
        clear_claimed(q->host, a);
    return s;
}

static int64_t wake_time(qs *q, const claim_args *a, int64_t deadline)
{
    int64_t now = q->host->monotonic_ms();
    int64_t wake = now + QS_RECHECK_MS;
    if (a->next_visible != INT64_MAX) {
        int64_t until_visible = a->next_visible - q->host->now_ms();
        if (until_visible < QS_RECHECK_MS)
            wake = now + (until_visible > 0 ? until_visible : 0);
    }
    return wake < deadline ? wake : deadline;
}

static od_status qs_receive(void *self, uint32_t lane, uint32_t max, uint32_t wait_ms,
                            uint32_t visibility_ms, od_message *out, size_t *n)
{
    qs *q = self;
    if (n)
        *n = 0;
    if (lane >= OD_LANE_COUNT || max < 1 || max > OD_RECEIVE_MAX || wait_ms > QS_MAX_WAIT_MS ||
        visibility_ms > QS_MAX_VISIBILITY_MS || !out || !n)
        return OD_ERR_INVALID;
    qs_lane *l = &q->lanes[lane];
    int64_t deadline = q->host->monotonic_ms() + wait_ms;
    claim_args a = {lane, max, visibility_ms, out, 0, INT64_MAX};
    for (;;) {
        if (atomic_load(&q->closed))
            return OD_ERR_CLOSED;
        /* Read the generation before looking, so a send that lands after
         * the look still wakes the wait below. */
        uint64_t gen = lane_gen(l);
        od_status s = claim(q, &a);
        if (s != OD_OK || a.n > 0) {
            *n = a.n;
            return s;
        }
        if (q->host->monotonic_ms() >= deadline || q->host->stopping())
            return OD_OK;
        lane_wait(q, l, gen, wake_time(q, &a, deadline));
    }
}

/* ---- delete / change_visibility ---- */

typedef struct receipt_args {
    uint32_t lane;
    int64_t id;
    const char *receipt;
    int64_t visible_at; /* change_visibility only */
    int postpone;
} receipt_args;

static od_status receipt_txn(odsql_conn *c, void *arg)
{
    receipt_args *a = arg;
    sqlite3_stmt *st = odsql_stmt(c, a->postpone ? ST_POSTPONE : ST_DELETE);
    if (!st)
        return OD_ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, a->id);
    sqlite3_bind_int(st, 2, (int)a->lane);
    odsql_bind_text(st, 3, a->receipt);
    if (a->postpone)
        sqlite3_bind_int64(st, 4, a->visible_at);
    od_status s = run(c, st);
    return s == OD_OK && sqlite3_changes(c->db) == 0 ? OD_ERR_NOT_FOUND : s;
}

static od_status by_receipt(qs *q, uint32_t lane, const char *receipt, int postpone,
                            uint32_t visibility_ms)
{
    od_status s = OD_OK;
    if (lane >= OD_LANE_COUNT || visibility_ms > QS_MAX_VISIBILITY_MS)
        return OD_ERR_INVALID;
    int64_t id = receipt_id(receipt);
    if (!id)
        return OD_ERR_NOT_FOUND;
    odsql_conn *c = odsql_conn_get(&q->db, &s);
    if (!c)
        return s;
    receipt_args a = {lane, id, receipt, q->host->now_ms() + visibility_ms, postpone};
    s = odsql_write(c, receipt_txn, &a);
    if (s == OD_OK && postpone)
        lane_wake(&q->lanes[lane]);
    return s;
}

static od_status qs_del(void *self, uint32_t lane, const char *receipt)
{
    return by_receipt(self, lane, receipt, 0, 0);
}

static od_status qs_change_visibility(void *self, uint32_t lane, const char *receipt,
                                      uint32_t visibility_ms)
{
    return by_receipt(self, lane, receipt, 1, visibility_ms);
}

/* ---- depth / ping ---- */

typedef struct depth_args {
    uint32_t lane;
    int64_t now, visible, in_flight;
} depth_args;

static od_status count(odsql_conn *c, size_t which, const depth_args *a, int64_t *out)
{
    sqlite3_stmt *st = odsql_stmt(c, which);
    if (!st)
        return OD_ERR_INTERNAL;
    sqlite3_bind_int(st, 1, (int)a->lane);
    sqlite3_bind_int64(st, 2, a->now);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        return odsql_error(c, rc);
    *out = sqlite3_column_int64(st, 0);
    return OD_OK;
}

static od_status depth_read(odsql_conn *c, void *arg)
{
    depth_args *a = arg;
    od_status s = count(c, ST_COUNT_VISIBLE, a, &a->visible);
    return s == OD_OK ? count(c, ST_COUNT_HIDDEN, a, &a->in_flight) : s;
}

static od_status qs_depth(void *self, uint32_t lane, int64_t *visible, int64_t *in_flight)
{
    qs *q = self;
    od_status s = OD_OK;
    if (lane >= OD_LANE_COUNT)
        return OD_ERR_INVALID;
    odsql_conn *c = odsql_conn_get(&q->db, &s);
    if (!c)
        return s;
    depth_args a = {lane, q->host->now_ms(), 0, 0};
    s = odsql_read(c, depth_read, &a);
    if (s == OD_OK && visible)
        *visible = a.visible;
    if (s == OD_OK && in_flight)
        *in_flight = a.in_flight;
    return s;
}

static od_status ping_read(odsql_conn *c, void *arg)
{
    (void)arg;
    sqlite3_stmt *st = odsql_stmt(c, ST_PING);
    return st && sqlite3_step(st) == SQLITE_ROW ? OD_OK : OD_ERR_UNAVAILABLE;
}

static od_status qs_ping(void *self)
{
    qs *q = self;
    od_status s = OD_OK;
    if (atomic_load(&q->closed))
        return OD_ERR_UNAVAILABLE;
    odsql_conn *c = odsql_conn_get(&q->db, &s);
    return c && odsql_read(c, ping_read, NULL) == OD_OK ? OD_OK : OD_ERR_UNAVAILABLE;
}

/* ---- the shared store (storage_sqlite's put_batch) ---- */

static const char *qs_store(void *self)
{
    qs *q = self;
    return q->db.store;
}

/* storage_sqlite committed a message to our table: wake the lane's long
 * polls now rather than at their next QS_RECHECK_MS look. */
static void qs_notify(void *self, uint32_t lane)
{
    qs *q = self;
    if (lane < OD_LANE_COUNT)
        lane_wake(&q->lanes[lane]);
}

/* ---- lifecycle ---- */

static void lanes_destroy(qs *q, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        pthread_cond_destroy(&q->lanes[i].cond);
        pthread_mutex_destroy(&q->lanes[i].lock);
    }
}

static od_status lanes_init(qs *q)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return OD_ERR_NOMEM;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    size_t i = 0;
    for (; i < OD_LANE_COUNT; i++) {
        if (pthread_mutex_init(&q->lanes[i].lock, NULL) != 0)
            break;
        if (pthread_cond_init(&q->lanes[i].cond, &attr) != 0) {
            pthread_mutex_destroy(&q->lanes[i].lock);
            break;
        }
    }
    pthread_condattr_destroy(&attr);
    if (i == OD_LANE_COUNT)
        return OD_OK;
    lanes_destroy(q, i);
    return OD_ERR_NOMEM;
}

static od_status qs_init(const od_host_api *host, od_module *mod, void **self)
{
    static const odsql_schema schema = {SCHEMA_STEPS, QS_SCHEMA_VERSION};
    qs *q = host->calloc(1, sizeof *q);
    if (!q)
        return OD_ERR_NOMEM;
    q->host = host;
    q->mod = mod;
    atomic_init(&q->closed, 0);
    od_status s = lanes_init(q);
    if (s != OD_OK) {
        host->free(q);
        return s;
    }
    s = odsql_open(&q->db, host, mod, "queue", SQL, ST_COUNT, &schema);
    if (s != OD_OK) {
        lanes_destroy(q, OD_LANE_COUNT);
        host->free(q);
        return s;
    }
    *self = q;
    return OD_OK;
}

/* Wake every long poll; they and every later send/receive see `closed`. */
static void qs_stop(void *self)
{
    qs *q = self;
    atomic_store(&q->closed, 1);
    for (size_t i = 0; i < OD_LANE_COUNT; i++)
        lane_wake(&q->lanes[i]);
}

static void qs_destroy(void *self)
{
    qs *q = self;
    odsql_close(&q->db);
    lanes_destroy(q, OD_LANE_COUNT);
    q->host->free(q);
}

static const od_queue_ops OPS = {
    .size = sizeof(od_queue_ops),
    .send = qs_send,
    .receive = qs_receive,
    .del = qs_del,
    .change_visibility = qs_change_visibility,
    .depth = qs_depth,
    .ping = qs_ping,
    .store = qs_store,
    .notify = qs_notify,
};

static const od_module_desc DESC = {
    OD_MODULE_HEADER(OD_KIND_QUEUE),
    .name = "queue_sqlite",
    .version = "0.1.0",
    .description = "SQLite queue: durable lanes with visibility timeouts in one file (WAL)",
    .init = qs_init,
    .stop = qs_stop,
    .destroy = qs_destroy,
    .ops = &OPS,
};

OD_MODULE_EXPORT const od_module_desc *od_module_entry(void)
{
    return &DESC;
}
