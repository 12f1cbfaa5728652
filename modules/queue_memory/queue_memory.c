/*
 * queue_memory - the in-memory queue backend (OD_KIND_QUEUE).
 *
 * Three independent lanes (normal, priority, dead), each a min-heap of its
 * messages ordered by (visible_at, sequence) on the monotonic clock: the top
 * is the oldest message that is, or will next become, visible, so receive
 * is O(log n) per message and FIFO among visible messages. In-flight
 * messages stay in the heap with visible_at = end of their visibility
 * timeout, which is how redelivery happens without a timer thread. A hash
 * by sequence number finds a message from its receipt. Receipts are
 * "<lane>-<seq>.<32 hex>" with 128 random bits from host->random_bytes, new
 * on every receive, so only the latest one matches. Messages are lost on
 * exit: for development, tests and single-node demos.
 *
 * Config (group "queue"): memory_max_messages (per lane, default 100000):
 * a send to a full lane returns OD_ERR_UNAVAILABLE (back-pressure, retry
 * later) so a flood cannot take all memory. Threads: none of its own; each
 * lane has a mutex and a condition variable (CLOCK_MONOTONIC) that a
 * long-polling receive waits on and send/change_visibility signal. stop()
 * wakes every waiter; receive and send then return OD_ERR_CLOSED.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <orderd/orderd.h>

#define QM_MAX_DELAY_MS 900000
#define QM_MAX_WAIT_MS 20000
#define QM_MAX_VISIBILITY_MS (12 * 3600 * 1000) /* SQS's limit */
#define QM_DEFAULT_MAX_MESSAGES 100000
#define QM_ID_MAX 24                       /* "<lane>-<seq>" */
#define QM_RANDOM_BYTES 16
#define QM_RECEIPT_MAX (QM_ID_MAX + 1 + 2 * QM_RANDOM_BYTES)
#define QM_STOP_POLL_MS 1000 /* how often a long poll looks at host->stopping() */

typedef struct qm_msg {
    uint64_t seq;
    char id[QM_ID_MAX + 1];
    char receipt[QM_RECEIPT_MAX + 1]; /* "" until the first receive */
    char *body;
    size_t len;
    int64_t visible_at; /* monotonic ms */
    int64_t sent_ms;    /* wall clock */
    uint32_t receive_count;
    size_t heap_pos;
    struct qm_msg *hnext; /* hash chain */
} qm_msg;

typedef struct qm_lane {
    uint32_t number;
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t cond;  /* signalled when a message may have become visible */
    qm_msg **heap;        /* by (visible_at, seq) */
    size_t n, cap;
    qm_msg **buckets; /* by seq; power-of-two size */
    size_t n_buckets;
    uint64_t next_seq;
} qm_lane;

typedef struct qm_queue {
    const od_host_api *host;
    od_module *mod;
    size_t max_messages; /* per lane; read-only after init */
    atomic_int closed;   /* set by stop() */
    qm_lane lanes[OD_LANE_COUNT];
} qm_queue;

/* ---- time ---- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wait_until(qm_lane *l, int64_t at_ms)
{
    struct timespec ts = {.tv_sec = at_ms / 1000, .tv_nsec = (at_ms % 1000) * 1000000};
    pthread_cond_timedwait(&l->cond, &l->lock, &ts);
}

/* ---- the heap ---- */

static int msg_before(const qm_msg *a, const qm_msg *b)
{
    return a->visible_at != b->visible_at ? a->visible_at < b->visible_at : a->seq < b->seq;
}

static void heap_place(qm_lane *l, size_t i, qm_msg *m)
{
    l->heap[i] = m;
    m->heap_pos = i;
}

static void heap_up(qm_lane *l, size_t i)
{
    qm_msg *m = l->heap[i];
    while (i > 0 && msg_before(m, l->heap[(i - 1) / 2])) {
        heap_place(l, i, l->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_place(l, i, m);
}

static void heap_down(qm_lane *l, size_t i)
{
    qm_msg *m = l->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= l->n)
            break;
        if (c + 1 < l->n && msg_before(l->heap[c + 1], l->heap[c]))
            c++;
        if (!msg_before(l->heap[c], m))
            break;
        heap_place(l, i, l->heap[c]);
        i = c;
    }
    heap_place(l, i, m);
}

/* Restore the order after l->heap[i]'s visible_at changed either way. */
static void heap_fix(qm_lane *l, size_t i)
{
    qm_msg *m = l->heap[i];
    heap_up(l, i);
    heap_down(l, m->heap_pos);
}

/* Capacity must have been reserved. */
static void heap_push(qm_lane *l, qm_msg *m)
{
    l->heap[l->n++] = m;
    heap_up(l, l->n - 1);
}

static void heap_remove(qm_lane *l, qm_msg *m)
{
    size_t i = m->heap_pos;
    qm_msg *last = l->heap[--l->n];
    if (i == l->n)
        return;
    heap_place(l, i, last);
    heap_fix(l, i);
}

static od_status heap_reserve(const od_host_api *h, qm_lane *l)
{
    if (l->n < l->cap)
        return OD_OK;
    size_t cap = l->cap ? l->cap * 2 : 64;
    qm_msg **heap = h->realloc(l->heap, cap * sizeof *heap);
    if (!heap)
        return OD_ERR_NOMEM;
    l->heap = heap;
    l->cap = cap;
    return OD_OK;
}

/* ---- the hash by sequence number ---- */

static void hash_grow(const od_host_api *h, qm_lane *l)
{
    size_t n = l->n_buckets ? l->n_buckets * 2 : 64;
    qm_msg **b = h->calloc(n, sizeof *b);
    if (!b)
        return; /* keep the old table: longer chains, still correct */
    for (size_t i = 0; i < l->n_buckets; i++) {
        for (qm_msg *m = l->buckets[i], *next; m; m = next) {
            next = m->hnext;
            m->hnext = b[m->seq & (n - 1)];
            b[m->seq & (n - 1)] = m;
        }
    }
    h->free(l->buckets);
    l->buckets = b;
    l->n_buckets = n;
}

static od_status hash_insert(const od_host_api *h, qm_lane *l, qm_msg *m)
{
    if (l->n >= l->n_buckets)
        hash_grow(h, l);
    if (!l->n_buckets)
        return OD_ERR_NOMEM;
    m->hnext = l->buckets[m->seq & (l->n_buckets - 1)];
    l->buckets[m->seq & (l->n_buckets - 1)] = m;
    return OD_OK;
}

static qm_msg *hash_find(const qm_lane *l, uint64_t seq)
{
    if (!l->n_buckets)
        return NULL;
    qm_msg *m = l->buckets[seq & (l->n_buckets - 1)];
    while (m && m->seq != seq)
        m = m->hnext;
    return m;
}

static void hash_remove(qm_lane *l, qm_msg *m)
{
    qm_msg **p = &l->buckets[m->seq & (l->n_buckets - 1)];
    while (*p != m)
        p = &(*p)->hnext;
    *p = m->hnext;
}

/* ---- receipts ---- */

static od_status receipt_new(const od_host_api *h, const qm_msg *m, char *out)
{
    static const char HEX[] = "0123456789abcdef";
    unsigned char rnd[QM_RANDOM_BYTES];
    if (h->random_bytes(rnd, sizeof rnd) != OD_OK)
        return OD_ERR_UNAVAILABLE;
    size_t n = strlen(m->id);
    memcpy(out, m->id, n);
    out[n++] = '.';
    for (size_t i = 0; i < sizeof rnd; i++) {
        out[n++] = HEX[rnd[i] >> 4];
        out[n++] = HEX[rnd[i] & 15];
    }
    out[n] = '\0';
    return OD_OK;
}

/* The sequence number a receipt of this lane names; 0 if malformed. */
static uint64_t receipt_seq(uint32_t lane, const char *receipt)
{
    if (strnlen(receipt, QM_RECEIPT_MAX + 1) > QM_RECEIPT_MAX || receipt[0] != (char)('0' + lane) ||
        receipt[1] != '-' || receipt[2] < '1' || receipt[2] > '9')
        return 0;
    char *end;
    uint64_t seq = strtoull(receipt + 2, &end, 10);
    return *end == '.' && strlen(end + 1) == 2 * QM_RANDOM_BYTES ? seq : 0;
}

/* Compare without an early exit, so timing does not reveal a prefix. */
static int receipt_equal(const char *a, const char *b)
{
    size_t n = strlen(a);
    if (n != strlen(b))
        return 0;
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

/* The in-flight message a receipt names, or NULL (unknown or stale). */
static qm_msg *receipt_find(qm_lane *l, const char *receipt)
{
    qm_msg *m = hash_find(l, receipt_seq(l->number, receipt));
    return m && m->receipt[0] && receipt_equal(m->receipt, receipt) ? m : NULL;
}

/* ---- send ---- */

static qm_lane *lane_get(qm_queue *q, uint32_t lane)
{
    return lane < OD_LANE_COUNT ? &q->lanes[lane] : NULL;
}

static void msg_free(const od_host_api *h, qm_msg *m)
{
    if (m) {
        h->free(m->body);
        h->free(m);
    }
}

static qm_msg *msg_new(const od_host_api *h, const char *body, size_t len, uint32_t delay_ms)
{
    qm_msg *m = h->calloc(1, sizeof *m);
    if (!m || !(m->body = h->alloc(len + 1))) {
        msg_free(h, m);
        return NULL;
    }
    memcpy(m->body, body, len);
    m->body[len] = '\0';
    m->len = len;
    m->sent_ms = h->now_ms();
    m->visible_at = mono_ms() + delay_ms;
    return m;
}

/* Under the lane lock: number the message and make it receivable. */
static od_status lane_add(qm_queue *q, qm_lane *l, qm_msg *m)
{
    if (atomic_load(&q->closed))
        return OD_ERR_CLOSED;
    if (l->n >= q->max_messages)
        return OD_ERR_UNAVAILABLE;
    if (heap_reserve(q->host, l) != OD_OK)
        return OD_ERR_NOMEM;
    m->seq = l->next_seq++;
    snprintf(m->id, sizeof m->id, "%u-%llu", l->number, (unsigned long long)m->seq);
    if (hash_insert(q->host, l, m) != OD_OK)
        return OD_ERR_NOMEM;
    heap_push(l, m);
    pthread_cond_broadcast(&l->cond);
    return OD_OK;
}

static od_status qm_send(void *self, uint32_t lane, const char *body, size_t len,
                         uint32_t delay_ms, char **id_out)
{
    qm_queue *q = self;
    qm_lane *l = lane_get(q, lane);
    if (!l || !body || len == 0 || delay_ms > QM_MAX_DELAY_MS)
        return OD_ERR_INVALID;
    if (len > OD_MESSAGE_MAX)
        return OD_ERR_TOO_LARGE;
    qm_msg *m = msg_new(q->host, body, len, delay_ms);
    char id[QM_ID_MAX + 1];
    if (!m)
        return OD_ERR_NOMEM;
    pthread_mutex_lock(&l->lock);
    od_status s = lane_add(q, l, m);
    memcpy(id, m->id, sizeof id);
    pthread_mutex_unlock(&l->lock);
    if (s != OD_OK) {
        msg_free(q->host, m);
        return s;
    }
    if (id_out && !(*id_out = q->host->strdup(id)))
        return OD_ERR_NOMEM; /* sent all the same; the id is lost */
    return OD_OK;
}

/* ---- receive ---- */

/* Copy a message out with a fresh receipt; changes nothing on failure. */
static od_status deliver(const od_host_api *h, qm_msg *m, uint32_t lane, od_message *out)
{
    char receipt[QM_RECEIPT_MAX + 1];
    od_status s = receipt_new(h, m, receipt);
    if (s != OD_OK)
        return s;
    memset(out, 0, sizeof *out);
    out->id = h->strdup(m->id);
    out->receipt = h->strdup(receipt);
    out->body = h->alloc(m->len + 1);
    if (!out->id || !out->receipt || !out->body) {
        od_message_clear(h, out);
        return OD_ERR_NOMEM;
    }
    memcpy(out->body, m->body, m->len + 1);
    memcpy(m->receipt, receipt, sizeof receipt);
    m->receive_count++;
    out->len = m->len;
    out->lane = lane;
    out->receive_count = m->receive_count;
    out->sent_ms = m->sent_ms;
    return OD_OK;
}

/* Under the lane lock: hand out up to max visible messages. Taken messages
 * leave the heap until the end, so a zero visibility timeout cannot hand the
 * same message out twice in one call. */
static od_status take_visible(qm_queue *q, qm_lane *l, uint32_t max, uint32_t visibility_ms,
                              od_message *out, size_t *n)
{
    qm_msg *taken[OD_RECEIVE_MAX];
    int64_t now = mono_ms();
    od_status s = OD_OK;
    while (*n < max && l->n > 0 && l->heap[0]->visible_at <= now) {
        qm_msg *m = l->heap[0];
        s = deliver(q->host, m, l->number, &out[*n]);
        if (s != OD_OK)
            break;
        heap_remove(l, m);
        m->visible_at = now + visibility_ms;
        taken[(*n)++] = m;
    }
    for (size_t i = 0; i < *n; i++)
        heap_push(l, taken[i]); /* capacity is there: they just left */
    return *n > 0 ? OD_OK : s;
}

static od_status qm_receive(void *self, uint32_t lane, uint32_t max, uint32_t wait_ms,
                            uint32_t visibility_ms, od_message *out, size_t *n)
{
    qm_queue *q = self;
    qm_lane *l = lane_get(q, lane);
    if (!l || max < 1 || max > OD_RECEIVE_MAX || wait_ms > QM_MAX_WAIT_MS ||
        visibility_ms > QM_MAX_VISIBILITY_MS || !out || !n)
        return OD_ERR_INVALID;
    *n = 0;
    int64_t deadline = mono_ms() + wait_ms;
    od_status s = OD_OK;
    pthread_mutex_lock(&l->lock);
    for (;;) {
        if (atomic_load(&q->closed)) {
            s = OD_ERR_CLOSED;
            break;
        }
        s = take_visible(q, l, max, visibility_ms, out, n);
        int64_t now = mono_ms();
        if (s != OD_OK || *n > 0 || now >= deadline || q->host->stopping())
            break;
        int64_t wake = deadline;
        if (l->n > 0 && l->heap[0]->visible_at < wake)
            wake = l->heap[0]->visible_at;
        if (wake > now + QM_STOP_POLL_MS)
            wake = now + QM_STOP_POLL_MS;
        wait_until(l, wake);
    }
    pthread_mutex_unlock(&l->lock);
    return s;
}

/* ---- delete / change_visibility / depth ---- */

static od_status qm_del(void *self, uint32_t lane, const char *receipt)
{
    qm_queue *q = self;
    qm_lane *l = lane_get(q, lane);
    if (!l || !receipt)
        return OD_ERR_INVALID;
    pthread_mutex_lock(&l->lock);
    qm_msg *m = receipt_find(l, receipt);
    if (m) {
        heap_remove(l, m);
        hash_remove(l, m);
    }
    pthread_mutex_unlock(&l->lock);
    msg_free(q->host, m);
    return m ? OD_OK : OD_ERR_NOT_FOUND;
}

static od_status qm_change_visibility(void *self, uint32_t lane, const char *receipt,
                                      uint32_t visibility_ms)
{
    qm_queue *q = self;
    qm_lane *l = lane_get(q, lane);
    if (!l || !receipt || visibility_ms > QM_MAX_VISIBILITY_MS)
        return OD_ERR_INVALID;
    pthread_mutex_lock(&l->lock);
    qm_msg *m = receipt_find(l, receipt);
    if (m) {
        m->visible_at = mono_ms() + visibility_ms;
        heap_fix(l, m->heap_pos);
        pthread_cond_broadcast(&l->cond);
    }
    pthread_mutex_unlock(&l->lock);
    return m ? OD_OK : OD_ERR_NOT_FOUND;
}

/* O(n) over the lane: called at /metrics scrape time, not per message.
 * Delayed messages that were never received count as neither (as in SQS). */
static od_status qm_depth(void *self, uint32_t lane, int64_t *visible, int64_t *in_flight)
{
    qm_queue *q = self;
    qm_lane *l = lane_get(q, lane);
    if (!l)
        return OD_ERR_INVALID;
    int64_t vis = 0, fly = 0, now = mono_ms();
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->n; i++) {
        if (l->heap[i]->visible_at <= now)
            vis++;
        else if (l->heap[i]->receive_count > 0)
            fly++;
    }
    pthread_mutex_unlock(&l->lock);
    if (visible)
        *visible = vis;
    if (in_flight)
        *in_flight = fly;
    return OD_OK;
}

static od_status qm_ping(void *self)
{
    qm_queue *q = self;
    return atomic_load(&q->closed) ? OD_ERR_UNAVAILABLE : OD_OK;
}

/* ---- lifecycle ---- */

static od_status lane_init(qm_lane *l, uint32_t number)
{
    pthread_condattr_t attr;
    l->number = number;
    l->next_seq = 1;
    if (pthread_condattr_init(&attr) != 0)
        return OD_ERR_NOMEM;
    int rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&l->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0)
        return OD_ERR_NOMEM;
    if (pthread_mutex_init(&l->lock, NULL) != 0) {
        pthread_cond_destroy(&l->cond);
        return OD_ERR_NOMEM;
    }
    return OD_OK;
}

static void lane_destroy(const od_host_api *h, qm_lane *l)
{
    for (size_t i = 0; i < l->n; i++)
        msg_free(h, l->heap[i]);
    h->free(l->heap);
    h->free(l->buckets);
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->cond);
}

static void qm_free(qm_queue *q, uint32_t n_lanes)
{
    for (uint32_t i = 0; i < n_lanes; i++)
        lane_destroy(q->host, &q->lanes[i]);
    q->host->free(q);
}

static void qm_destroy(void *self)
{
    if (self)
        qm_free(self, OD_LANE_COUNT);
}

/* Wake every long poll; they return OD_ERR_CLOSED at once. */
static void qm_stop(void *self)
{
    qm_queue *q = self;
    atomic_store(&q->closed, 1);
    for (uint32_t i = 0; i < OD_LANE_COUNT; i++) {
        pthread_mutex_lock(&q->lanes[i].lock);
        pthread_cond_broadcast(&q->lanes[i].cond);
        pthread_mutex_unlock(&q->lanes[i].lock);
    }
}

static od_status qm_init(const od_host_api *host, od_module *mod, void **self)
{
    int64_t max;
    od_status s = host->config_int(mod, "memory_max_messages", QM_DEFAULT_MAX_MESSAGES, 1,
                                   100000000, &max);
    if (s != OD_OK)
        return s;
    qm_queue *q = host->calloc(1, sizeof *q);
    if (!q)
        return OD_ERR_NOMEM;
    q->host = host;
    q->mod = mod;
    q->max_messages = (size_t)max;
    atomic_init(&q->closed, 0);
    for (uint32_t i = 0; i < OD_LANE_COUNT; i++) {
        if (lane_init(&q->lanes[i], i) != OD_OK) {
            qm_free(q, i);
            return OD_ERR_NOMEM;
        }
    }
    *self = q;
    return OD_OK;
}

static const od_queue_ops OPS = {
    .size = sizeof(od_queue_ops),
    .send = qm_send,
    .receive = qm_receive,
    .del = qm_del,
    .change_visibility = qm_change_visibility,
    .depth = qm_depth,
    .ping = qm_ping,
};

static const od_module_desc DESC = {
    OD_MODULE_HEADER(OD_KIND_QUEUE),
    .name = "queue_memory",
    .version = "1.0.0",
    .description = "in-memory queue backend (development and tests; not durable)",
    .init = qm_init,
    .stop = qm_stop,
    .destroy = qm_destroy,
    .ops = &OPS,
};

OD_MODULE_EXPORT const od_module_desc *od_module_entry(void)
{
    return &DESC;
}
