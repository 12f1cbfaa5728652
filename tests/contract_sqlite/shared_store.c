/*
 * tests/contract_sqlite/shared_store.c - storage_sqlite's put_batch carrying
 * a queue_sqlite message in the same transaction (ABI 1.1, docs/sqlite.md):
 * both modules name one file by the same store() string whatever path they
 * were given; the documents and the message commit together or not at all,
 * also when the message's own INSERT fails mid-transaction and when the
 * batch shares a group commit with others; a queue on another file (or one
 * built against ABI 1.0) is refused before anything is written; the message
 * is checked like send() checks it; notify() wakes a long poll at once; and
 * many writers and consumers at once see each document's message exactly
 * once.
 *
 * Every test works in its own temporary directory, removed afterwards.
 */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sqlite_fixture.h"

#define N_WRITERS 8
#define N_BATCHES 50
#define N_READERS 2

static char other_path[300]; /* a second database file, next to fx_db_path */

static void setup(void)
{
    fx_setup();
    snprintf(other_path, sizeof other_path, "%s/other.db", fx_dir);
}

/* orders (unique "ref") and idem: an order and its Idempotency-Key record,
 * as modules/orders writes them. */
static void define_tables(const backend *b)
{
    static const od_index_def ref[] = {{"ref", 1}};
    od_table_def orders = {sizeof orders, "orders", ref, 1};
    od_table_def idem = {sizeof idem, "idem", NULL, 0};
    ck_assert_int_eq(S(b)->define_table(b->self, &orders), OD_OK);
    ck_assert_int_eq(S(b)->define_table(b->self, &idem), OD_OK);
}

/* storage_sqlite + queue_sqlite on fx_db_path, tables defined. */
static void open_pair(backend *st, backend *q)
{
    fx_open(st, "storage_sqlite");
    fx_open(q, "queue_sqlite");
    define_tables(st);
}

/* Rows in the messages table: delayed and in-flight ones too. */
static int64_t messages_in(const char *path)
{
    return fx_sql_int(path, "SELECT count(*) FROM messages");
}

/* ---- a queue that counts notify() and passes both ops on ---- */

typedef struct counting_queue {
    od_queue_ops ops; /* store and notify only: all the storage may call */
    od_queue q;       /* what an outbox names */
    const backend *real;
    atomic_int notified[OD_LANE_COUNT];
} counting_queue;

static const char *cq_store(void *self)
{
    const counting_queue *c = self;
    return Q(c->real)->store(c->real->self);
}

static void cq_notify(void *self, uint32_t lane)
{
    counting_queue *c = self;
    ck_assert_uint_lt(lane, OD_LANE_COUNT);
    atomic_fetch_add(&c->notified[lane], 1);
    Q(c->real)->notify(c->real->self, lane);
}

static void counting_init(counting_queue *c, const backend *real)
{
    memset(c, 0, sizeof *c);
    c->ops.size = sizeof c->ops;
    c->ops.store = cq_store;
    c->ops.notify = cq_notify;
    c->q = (od_queue){&c->ops, c};
    c->real = real;
}

static int notified(counting_queue *c, uint32_t lane)
{
    return atomic_load(&c->notified[lane]);
}

/* ---- batches ---- */

static od_queue queue_of(const backend *q)
{
    return (od_queue){Q(q), q->self};
}

static od_outbox outbox(const od_queue *q, uint32_t lane, const char *body)
{
    return (od_outbox){sizeof(od_outbox), lane, q, body, body ? strlen(body) : 0, 0};
}

typedef struct order_batch {
    od_index_value ref;
    od_put order, idem;
    const od_put *puts[2];
} order_batch;

/* orders/<key> (ref = key) and idem/<key>, both IF_ABSENT. */
static void order_batch_init(order_batch *b, const char *key)
{
    b->ref = (od_index_value){"ref", key};
    b->order = (od_put){sizeof(od_put), OD_PUT_IF_ABSENT, "orders", key, "{\"o\":1}", 7,
                        &b->ref, 1, 0};
    b->idem = (od_put){sizeof(od_put), OD_PUT_IF_ABSENT, "idem", key, "{\"i\":1}", 7, NULL, 0, 0};
    b->puts[0] = &b->order;
    b->puts[1] = &b->idem;
}

static od_status put_order(const backend *st, const char *key, const od_outbox *msg,
                           size_t *failed)
{
    order_batch b;
    order_batch_init(&b, key);
    return S(st)->put_batch(st->self, b.puts, 2, msg, NULL, failed);
}

static int doc_exists(const backend *st, const char *table, const char *key)
{
    od_doc d = {0};
    od_status s = S(st)->get(st->self, table, key, &d);
    ck_assert(s == OD_OK || s == OD_ERR_NOT_FOUND);
    od_doc_clear(H, &d);
    return s == OD_OK;
}

static void assert_no_order(const backend *st, const char *key)
{
    ck_assert_msg(!doc_exists(st, "orders", key), "orders/%s exists", key);
    ck_assert_msg(!doc_exists(st, "idem", key), "idem/%s exists", key);
}

/* Receive the one message on lane (no wait), check it and delete it. */
static void receive_one(const backend *q, uint32_t lane, const char *body, size_t len)
{
    od_message m = {0};
    size_t n = 0;
    ck_assert_int_eq(Q(q)->receive(q->self, lane, OD_RECEIVE_MAX, 0, 60000, &m, &n), OD_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(m.lane, lane);
    ck_assert_uint_eq(m.receive_count, 1);
    ck_assert_uint_eq(m.len, len);
    ck_assert(memcmp(m.body, body, len) == 0);
    ck_assert_int_eq(Q(q)->del(q->self, lane, m.receipt), OD_OK);
    od_message_clear(H, &m);
}

static void assert_lane_empty(const backend *q, uint32_t lane)
{
    od_message m = {0};
    size_t n = 9;
    int64_t visible = -1, in_flight = -1;
    ck_assert_int_eq(Q(q)->depth(q->self, lane, &visible, &in_flight), OD_OK);
    ck_assert_int_eq(visible, 0);
    ck_assert_int_eq(in_flight, 0);
    ck_assert_int_eq(Q(q)->receive(q->self, lane, 1, 0, 60000, &m, &n), OD_OK);
    ck_assert_uint_eq(n, 0);
}

/* ---- store() ---- */

/* A path to `abs` relative to the working directory, as a config file
 * might say "orderd.db". */
static void relative_path(const char *abs, char *out, size_t size)
{
    char cwd[4096];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    size_t n = 0;
    out[0] = '\0';
    for (const char *p = cwd; *p; p++)
        if (*p == '/' && p[1] && p[1] != '/')
            n += (size_t)snprintf(out + n, size - n, "../");
    snprintf(out + n, size - n, "%s", abs + 1);
    ck_assert(out[0] != '/');
}

START_TEST(test_store_names_the_file)
{
    char rel[8192], link[400], here[400], via_dir[420], expect[4200], *real;
    relative_path(fx_db_path, rel, sizeof rel);
    snprintf(link, sizeof link, "%s/link.db", fx_dir);
    snprintf(here, sizeof here, "%s/here", fx_dir);
    snprintf(via_dir, sizeof via_dir, "%s/orderd.db", here);
    backend st, q_rel, q_link, st_dir, q_other;
    fx_open(&st, "storage_sqlite");
    ck_assert_int_eq(symlink(fx_db_path, link), 0); /* the file's link */
    ck_assert_int_eq(symlink(".", here), 0);     /* a directory's link */
    real = realpath(fx_db_path, NULL);
    ck_assert_ptr_nonnull(real);
    snprintf(expect, sizeof expect, "sqlite:%s", real);
    free(real);
    fx_open_at(&q_rel, "queue_sqlite", rel);
    fx_open_at(&q_link, "queue_sqlite", link);
    fx_open_at(&st_dir, "storage_sqlite", via_dir);
    fx_open_at(&q_other, "queue_sqlite", other_path);
    ck_assert(OD_HAS_OP(od_storage_ops, S(&st), store));
    ck_assert(OD_HAS_OP(od_queue_ops, Q(&q_rel), store));
    ck_assert(OD_HAS_OP(od_queue_ops, Q(&q_rel), notify));
    ck_assert_str_eq(S(&st)->store(st.self), expect);
    ck_assert_str_eq(S(&st_dir)->store(st_dir.self), expect);
    ck_assert_str_eq(Q(&q_rel)->store(q_rel.self), expect);
    ck_assert_str_eq(Q(&q_link)->store(q_link.self), expect);
    ck_assert_str_ne(Q(&q_other)->store(q_other.self), expect);
    real = realpath(other_path, NULL);
    ck_assert_ptr_nonnull(real);
    snprintf(expect, sizeof expect, "sqlite:%s", real);
    free(real);
    ck_assert_str_eq(Q(&q_other)->store(q_other.self), expect);

    /* Through the symlink and the relative path it is one file and one
     * WAL: the message sent along through one name arrives at the other. */
    define_tables(&st);
    od_queue via_link = queue_of(&q_link);
    od_outbox m = outbox(&via_link, OD_LANE_NORMAL, "o-1");
    ck_assert_int_eq(put_order(&st, "o-1", &m, NULL), OD_OK);
    receive_one(&q_rel, OD_LANE_NORMAL, "o-1", 3);
    define_tables(&st_dir);
    ck_assert(doc_exists(&st_dir, "orders", "o-1"));
    fx_close(&q_other);
    fx_close(&st_dir);
    fx_close(&q_link);
    fx_close(&q_rel);
    fx_close(&st);
}
END_TEST

/* ---- the message rides along ---- */

START_TEST(test_batch_carries_message)
{
    backend st, q;
    counting_queue cq;
    open_pair(&st, &q);
    counting_init(&cq, &q);
    order_batch b;
    order_batch_init(&b, "o-1");
    od_outbox m = outbox(&cq.q, OD_LANE_PRIORITY, "{\"order\":\"o-1\"}");
    uint64_t versions[2] = {0, 0};
    size_t failed = 7;
    ck_assert_int_eq(S(&st)->put_batch(st.self, b.puts, 2, &m, versions, &failed), OD_OK);
    ck_assert_uint_eq(failed, OD_BATCH_NONE);
    ck_assert_uint_eq(versions[0], 1);
    ck_assert_uint_eq(versions[1], 1);
    ck_assert(doc_exists(&st, "orders", "o-1"));
    ck_assert(doc_exists(&st, "idem", "o-1"));
    ck_assert_int_eq(notified(&cq, OD_LANE_PRIORITY), 1);
    ck_assert_int_eq(notified(&cq, OD_LANE_NORMAL), 0);
    ck_assert_int_eq(notified(&cq, OD_LANE_DEAD), 0);
    int64_t visible = -1;
    ck_assert_int_eq(Q(&q)->depth(q.self, OD_LANE_PRIORITY, &visible, NULL), OD_OK);
    ck_assert_int_eq(visible, 1);
    assert_lane_empty(&q, OD_LANE_NORMAL);
    receive_one(&q, OD_LANE_PRIORITY, m.body, m.len);
    assert_lane_empty(&q, OD_LANE_PRIORITY);
    ck_assert_int_eq(messages_in(fx_db_path), 0);
    fx_close(&q);
    fx_close(&st);
}
END_TEST

START_TEST(test_batch_message_delay)
{
    const int64_t t0 = 1800000000000LL;
    backend st, q;
    open_pair(&st, &q);
    od_queue qq = queue_of(&q);
    od_outbox m = outbox(&qq, OD_LANE_NORMAL, "late");
    m.delay_ms = 5000;
    mock_set_now_ms(t0);
    ck_assert_int_eq(put_order(&st, "o-1", &m, NULL), OD_OK);
    ck_assert(doc_exists(&st, "orders", "o-1")); /* the documents are not delayed */
    assert_lane_empty(&q, OD_LANE_NORMAL);       /* delayed: neither visible nor in flight */
    ck_assert_int_eq(messages_in(fx_db_path), 1);
    mock_set_now_ms(t0 + 4999);
    assert_lane_empty(&q, OD_LANE_NORMAL);
    mock_set_now_ms(t0 + 5000);
    od_message got = {0};
    size_t n = 0;
    ck_assert_int_eq(Q(&q)->receive(q.self, OD_LANE_NORMAL, 1, 0, 60000, &got, &n), OD_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(got.body, "late");
    ck_assert_uint_eq(got.receive_count, 1);
    ck_assert_int_eq(got.sent_ms, t0);
    od_message_clear(H, &got);
    mock_set_now_ms(0);
    fx_close(&q);
    fx_close(&st);
}
END_TEST

/* ---- all or nothing ---- */

/* A batch whose second put fails takes the first put and the message
 * down with it, whatever the condition that failed. */
START_TEST(test_failed_put_sends_nothing)
{
    backend st, q;
    counting_queue cq;
    open_pair(&st, &q);
    counting_init(&cq, &q);
    od_index_value taken = {"ref", "ref-a"};
    ck_assert_int_eq(S(&st)->put(st.self, "orders", "a", "{}", 2, &taken, 1, OD_PUT_UPSERT, 0,
                                 NULL),
                     OD_OK);
    od_index_value ref_b = {"ref", "ref-b"};
    od_put first = {sizeof(od_put), OD_PUT_IF_ABSENT, "idem", "b", "{}", 2, NULL, 0, 0};
    od_put second[] = {
        {sizeof(od_put), OD_PUT_IF_ABSENT, "orders", "a", "{}", 2, &ref_b, 1, 0},  /* key exists */
        {sizeof(od_put), OD_PUT_IF_ABSENT, "orders", "b", "{}", 2, &taken, 1, 0},  /* unique ref */
        {sizeof(od_put), OD_PUT_IF_VERSION, "orders", "a", "{}", 2, &taken, 1, 9}, /* stale */
        {sizeof(od_put), OD_PUT_IF_VERSION, "orders", "c", "{}", 2, &ref_b, 1, 1}, /* missing */
    };
    static const od_status want[] = {OD_ERR_EXISTS, OD_ERR_EXISTS, OD_ERR_CONFLICT,
                                     OD_ERR_NOT_FOUND};
    od_outbox m = outbox(&cq.q, OD_LANE_NORMAL, "b");
    for (size_t i = 0; i < 4; i++) {
        const od_put *puts[] = {&first, &second[i]};
        size_t failed = 7;
        ck_assert_int_eq(S(&st)->put_batch(st.self, puts, 2, &m, NULL, &failed), want[i]);
        ck_assert_uint_eq(failed, 1);
        ck_assert(!doc_exists(&st, "idem", "b"));
        ck_assert(!doc_exists(&st, "orders", "b"));
        ck_assert(!doc_exists(&st, "orders", "c"));
        assert_lane_empty(&q, OD_LANE_NORMAL);
        ck_assert_int_eq(messages_in(fx_db_path), 0);
        ck_assert_int_eq(notified(&cq, OD_LANE_NORMAL), 0);
    }
    /* "a" kept its version and its ref. */
    od_doc d = {0};
    ck_assert_int_eq(S(&st)->lookup(st.self, "orders", "ref", "ref-a", &d), OD_OK);
    ck_assert_str_eq(d.key, "a");
    ck_assert_uint_eq(d.version, 1);
    od_doc_clear(H, &d);
    /* The same batch, once it can succeed, delivers once. */
    ck_assert_int_eq(put_order(&st, "b", &m, NULL), OD_OK);
    ck_assert_int_eq(notified(&cq, OD_LANE_NORMAL), 1);
    receive_one(&q, OD_LANE_NORMAL, "b", 1);
    fx_close(&q);
    fx_close(&st);
}
END_TEST

/* How a trigger refuses a row: the statement, the statement keeping what
 * it did before (nothing, for one row), or the whole transaction. */
static const char *const RAISE_KIND[] = {"ABORT", "FAIL", "ROLLBACK"};

/* Another connection adds a trigger that refuses rows of `on` (when). */
static void refuse(const char *kind, const char *on, const char *when)
{
    char text[300];
    snprintf(text, sizeof text,
             "CREATE TRIGGER refuse BEFORE INSERT ON %s %s BEGIN SELECT RAISE(%s, 'refused'); END;",
             on, when, kind);
    fx_sql(text);
}

/* The message's INSERT is the last statement of the transaction: when it
 * fails, the puts already made in the transaction must be undone; so must
 * they when a later put fails for a reason that is no condition. */
START_TEST(test_insert_failure_rolls_back)
{
    const char *kind = RAISE_KIND[_i];
    backend st, q;
    counting_queue cq;
    open_pair(&st, &q);
    counting_init(&cq, &q);
    od_outbox m = outbox(&cq.q, OD_LANE_NORMAL, "o-1");
    ck_assert_int_eq(put_order(&st, "o-0", &m, NULL), OD_OK); /* statements prepared */
    receive_one(&q, OD_LANE_NORMAL, "o-1", 3);
    ck_assert_int_eq(notified(&cq, OD_LANE_NORMAL), 1);

    refuse(kind, "messages", "");
    size_t failed = 7;
    od_status s = put_order(&st, "o-1", &m, &failed);
    ck_assert_msg(s != OD_OK, "RAISE(%s) on messages: committed", kind);
    /* No put failed: not a condition status, no index. */
    ck_assert(s != OD_ERR_EXISTS && s != OD_ERR_CONFLICT && s != OD_ERR_NOT_FOUND);
    ck_assert_uint_eq(failed, OD_BATCH_NONE);
    assert_no_order(&st, "o-1");
    ck_assert_int_eq(messages_in(fx_db_path), 0);
    ck_assert_int_eq(notified(&cq, OD_LANE_NORMAL), 1);
    /* Without a message the same documents go in: it was the INSERT. */
    ck_assert_int_eq(put_order(&st, "o-2", NULL, NULL), OD_OK);
    ck_assert(doc_exists(&st, "orders", "o-2"));

    fx_sql("DROP TRIGGER refuse");
    ck_assert_int_eq(put_order(&st, "o-1", &m, &failed), OD_OK);
    ck_assert_uint_eq(failed, OD_BATCH_NONE);
    ck_assert(doc_exists(&st, "orders", "o-1"));
    ck_assert_int_eq(notified(&cq, OD_LANE_NORMAL), 2);
    receive_one(&q, OD_LANE_NORMAL, "o-1", 3);
    assert_lane_empty(&q, OD_LANE_NORMAL);

    /* The second put fails for a reason that is no condition: the first
     * is undone, no message, and no put is blamed. */
    refuse(kind, "documents", "WHEN NEW.tbl = 'idem'");
    failed = 7;
    s = put_order(&st, "o-3", &m, &failed);
    ck_assert_msg(s != OD_OK, "RAISE(%s) on documents: committed", kind);
    ck_assert(s != OD_ERR_EXISTS && s != OD_ERR_CONFLICT && s != OD_ERR_NOT_FOUND);
    ck_assert_uint_eq(failed, OD_BATCH_NONE);
    assert_no_order(&st, "o-3");
    ck_assert_int_eq(messages_in(fx_db_path), 0);
    ck_assert_int_eq(notified(&cq, OD_LANE_NORMAL), 2);
    fx_sql("DROP TRIGGER refuse");
    ck_assert_int_eq(put_order(&st, "o-3", &m, NULL), OD_OK);
    ck_assert_int_eq(messages_in(fx_db_path), 1);
    fx_close(&q);
    fx_close(&st);
}
END_TEST

typedef struct grouped {
    const backend *st;
    const od_queue *q;
    atomic_int *entered;
    int id;
    od_status s;
    size_t failed;
} grouped;

/* Odd ids: a fresh order. Even ids: a fresh idem record, then "taken". */
static void *grouped_thread(void *p)
{
    grouped *g = p;
    char key[32];
    snprintf(key, sizeof key, "g%d", g->id);
    od_outbox m = outbox(g->q, OD_LANE_NORMAL, key);
    order_batch b;
    order_batch_init(&b, g->id % 2 ? key : "taken");
    b.idem.key = key;
    atomic_fetch_add(g->entered, 1);
    g->s = S(g->st)->put_batch(g->st->self, b.puts, 2, &m, NULL, &g->failed);
    return NULL;
}

/* Batches that share one group commit: a failing one leaves neither its
 * documents nor its message, and takes nothing of the others with it. */
START_TEST(test_group_commit_keeps_batches_apart)
{
    enum { N = 8 };
    backend st, q;
    open_pair(&st, &q);
    od_queue qq = queue_of(&q);
    ck_assert_int_eq(put_order(&st, "taken", NULL, NULL), OD_OK);
    sqlite3 *other = fx_other();
    fx_exec(other, "BEGIN IMMEDIATE");
    atomic_int entered = 0;
    grouped g[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        g[i] = (grouped){&st, &qq, &entered, i, -99, 7};
        ck_assert_int_eq(pthread_create(&t[i], NULL, grouped_thread, &g[i]), 0);
    }
    int64_t deadline = H->monotonic_ms() + 10000;
    while (atomic_load(&entered) < N && H->monotonic_ms() < deadline)
        sched_yield();
    ck_assert_int_eq(atomic_load(&entered), N);
    fx_exec(other, "COMMIT");
    sqlite3_close(other);
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);

    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "g%d", i);
        if (i % 2) {
            ck_assert_int_eq(g[i].s, OD_OK);
            ck_assert_uint_eq(g[i].failed, OD_BATCH_NONE);
            ck_assert(doc_exists(&st, "orders", key));
            ck_assert(doc_exists(&st, "idem", key));
        } else {
            ck_assert_int_eq(g[i].s, OD_ERR_EXISTS);
            ck_assert_uint_eq(g[i].failed, 0);
            ck_assert(!doc_exists(&st, "idem", key));
        }
    }
    ck_assert_int_eq(messages_in(fx_db_path), N / 2);
    int seen[N] = {0};
    for (int got = 0; got < N / 2;) {
        od_message m[OD_RECEIVE_MAX];
        size_t n = 0;
        int id = -1;
        ck_assert_int_eq(Q(&q)->receive(q.self, OD_LANE_NORMAL, OD_RECEIVE_MAX, 0, 60000, m, &n),
                         OD_OK);
        ck_assert_uint_gt(n, 0);
        for (size_t i = 0; i < n; i++, got++) {
            ck_assert_int_eq(sscanf(m[i].body, "g%d", &id), 1);
            ck_assert_int_eq(id % 2, 1);
            seen[id]++;
            ck_assert_int_eq(Q(&q)->del(q.self, OD_LANE_NORMAL, m[i].receipt), OD_OK);
            od_message_clear(H, &m[i]);
        }
    }
    for (int i = 1; i < N; i += 2)
        ck_assert_int_eq(seen[i], 1);
    assert_lane_empty(&q, OD_LANE_NORMAL);
    fx_close(&q);
    fx_close(&st);
}
END_TEST

/* ---- queues it cannot share ---- */

static const char *must_not_be_called(void *self)
{
    (void)self;
    ck_abort_msg("store() read past an ABI 1.0 ops table");
    return NULL;
}

/* A queue on another file, or one without store(), gets OD_ERR_UNSUPPORTED
 * and nothing is written anywhere. */
START_TEST(test_other_store_unsupported)
{
    backend st, q, q_other;
    open_pair(&st, &q);
    fx_open_at(&q_other, "queue_sqlite", other_path);
    od_queue other = queue_of(&q_other);
    /* An ABI 1.0 queue: its ops end before store(), whatever lies beyond. */
    od_queue_ops old_ops = *Q(&q);
    old_ops.size = (uint32_t)offsetof(od_queue_ops, store);
    old_ops.store = must_not_be_called;
    od_queue old = {&old_ops, q.self};
    const od_queue *refused[] = {&other, &old};
    for (size_t i = 0; i < 2; i++) {
        od_outbox m = outbox(refused[i], OD_LANE_NORMAL, "o-1");
        size_t failed = 7;
        ck_assert_int_eq(put_order(&st, "o-1", &m, &failed), OD_ERR_UNSUPPORTED);
        ck_assert_uint_eq(failed, OD_BATCH_NONE);
        assert_no_order(&st, "o-1");
        ck_assert_int_eq(messages_in(fx_db_path), 0);
        ck_assert_int_eq(messages_in(other_path), 0);
        assert_lane_empty(&q_other, OD_LANE_NORMAL);
    }
    /* Without msg the storage still writes: put, then send() yourself. */
    ck_assert_int_eq(put_order(&st, "o-1", NULL, NULL), OD_OK);
    ck_assert(doc_exists(&st, "orders", "o-1"));
    fx_close(&q_other);
    fx_close(&q);
    fx_close(&st);
}
END_TEST

/* ---- the message is checked as send() checks it ---- */

START_TEST(test_message_validated)
{
    const int64_t t0 = 1800000000000LL;
    backend st, q;
    counting_queue cq;
    open_pair(&st, &q);
    counting_init(&cq, &q);
    char *big = malloc(OD_MESSAGE_MAX + 1);
    ck_assert_ptr_nonnull(big);
    for (size_t i = 0; i < OD_MESSAGE_MAX + 1; i++)
        big[i] = (char)('a' + i % 26);
    struct {
        uint32_t lane;
        const char *body;
        size_t len;
        uint32_t delay_ms;
        od_status want;
    } bad[] = {
        {OD_LANE_COUNT, "x", 1, 0, OD_ERR_INVALID},
        {UINT32_MAX, "x", 1, 0, OD_ERR_INVALID},
        {OD_LANE_NORMAL, "x", 0, 0, OD_ERR_INVALID},
        {OD_LANE_NORMAL, NULL, 1, 0, OD_ERR_INVALID},
        {OD_LANE_NORMAL, "x", 1, 900001, OD_ERR_INVALID},
        {OD_LANE_NORMAL, "x", 1, UINT32_MAX, OD_ERR_INVALID},
        {OD_LANE_NORMAL, big, OD_MESSAGE_MAX + 1, 0, OD_ERR_TOO_LARGE},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        od_outbox m = {sizeof m, bad[i].lane, &cq.q, bad[i].body, bad[i].len, bad[i].delay_ms};
        size_t failed = 7;
        ck_assert_msg(put_order(&st, "o-1", &m, &failed) == bad[i].want, "case %zu", i);
        ck_assert_uint_eq(failed, OD_BATCH_NONE);
        assert_no_order(&st, "o-1");
        ck_assert_int_eq(messages_in(fx_db_path), 0);
    }
    /* The same (table, key) twice: refused before a message is made. */
    od_put dup = {sizeof dup, OD_PUT_UPSERT, "idem", "o-1", "{}", 2, NULL, 0, 0};
    const od_put *twice[] = {&dup, &dup};
    od_outbox ok = outbox(&cq.q, OD_LANE_NORMAL, "x");
    ck_assert_int_eq(S(&st)->put_batch(st.self, twice, 2, &ok, NULL, NULL), OD_ERR_INVALID);
    assert_no_order(&st, "o-1");
    ck_assert_int_eq(messages_in(fx_db_path), 0);
    od_outbox small = outbox(&cq.q, OD_LANE_NORMAL, "x");
    small.size = sizeof small - 1;
    ck_assert_int_eq(put_order(&st, "o-1", &small, NULL), OD_ERR_INVALID);
    assert_no_order(&st, "o-1");
    for (uint32_t lane = 0; lane < OD_LANE_COUNT; lane++)
        ck_assert_int_eq(notified(&cq, lane), 0);

    /* The limits themselves are allowed: the largest body, the longest delay. */
    mock_set_now_ms(t0);
    od_outbox edge = {sizeof edge, OD_LANE_DEAD, &cq.q, big, OD_MESSAGE_MAX, 900000};
    ck_assert_int_eq(put_order(&st, "o-1", &edge, NULL), OD_OK);
    assert_lane_empty(&q, OD_LANE_DEAD);
    mock_set_now_ms(t0 + 900000);
    receive_one(&q, OD_LANE_DEAD, big, OD_MESSAGE_MAX);
    mock_set_now_ms(0);
    free(big);
    fx_close(&q);
    fx_close(&st);
}
END_TEST

/* ---- notify ---- */

typedef struct poller {
    const backend *q;
    uint32_t lane, wait_ms;
    atomic_int *started;
    od_message m;
    size_t n;
    od_status s;
    int64_t took_ms;
} poller;

static void *poll_thread(void *p)
{
    poller *a = p;
    atomic_fetch_add(a->started, 1);
    int64_t start = H->monotonic_ms();
    a->s = Q(a->q)->receive(a->q->self, a->lane, 1, a->wait_ms, 60000, &a->m, &a->n);
    a->took_ms = H->monotonic_ms() - start;
    return NULL;
}

/* A receiver long-polling the lane gets the message put_batch committed
 * long before its 10 s wait runs out: put_batch called notify() on that
 * lane only. A receiver on a lane nobody sends to waits its full time. */
START_TEST(test_notify_wakes_long_poll)
{
    backend st, q;
    counting_queue cq;
    open_pair(&st, &q);
    counting_init(&cq, &q);
    atomic_int started = 0;
    poller waiting = {&q, OD_LANE_NORMAL, 10000, &started, {0}, 9, -99, 0};
    poller idle = {&q, OD_LANE_PRIORITY, 1500, &started, {0}, 9, -99, 0};
    pthread_t t[2];
    ck_assert_int_eq(pthread_create(&t[0], NULL, poll_thread, &waiting), 0);
    ck_assert_int_eq(pthread_create(&t[1], NULL, poll_thread, &idle), 0);
    int64_t deadline = H->monotonic_ms() + 10000;
    while (atomic_load(&started) < 2 && H->monotonic_ms() < deadline)
        sched_yield();
    ck_assert_int_eq(atomic_load(&started), 2);
    od_outbox m = outbox(&cq.q, OD_LANE_NORMAL, "wake");
    ck_assert_int_eq(put_order(&st, "o-1", &m, NULL), OD_OK);
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    ck_assert_int_eq(notified(&cq, OD_LANE_NORMAL), 1);
    ck_assert_int_eq(notified(&cq, OD_LANE_PRIORITY), 0);
    ck_assert_int_eq(waiting.s, OD_OK);
    ck_assert_uint_eq(waiting.n, 1);
    ck_assert_str_eq(waiting.m.body, "wake");
    ck_assert_msg(waiting.took_ms < 5000, "woken after %lld ms", (long long)waiting.took_ms);
    ck_assert_int_eq(idle.s, OD_OK);
    ck_assert_uint_eq(idle.n, 0);
    ck_assert_int_ge(idle.took_ms, 1500);
    od_message_clear(H, &waiting.m);
    fx_close(&q);
    fx_close(&st);
}
END_TEST

/* ---- many writers, many consumers ---- */

typedef struct traffic {
    const backend *st, *q;
    const od_queue *qq;
    atomic_int seen[N_WRITERS * N_BATCHES];
    atomic_int received, errors;
    int64_t deadline;
} traffic;

typedef struct traffic_arg {
    traffic *t;
    int me;
} traffic_arg;

static uint32_t lane_of(int batch)
{
    return batch % 2 ? OD_LANE_PRIORITY : OD_LANE_NORMAL;
}

static void *writer_thread(void *p)
{
    traffic_arg *a = p;
    char key[32];
    for (int i = 0; i < N_BATCHES; i++) {
        snprintf(key, sizeof key, "o-%d-%d", a->me, i);
        od_outbox m = outbox(a->t->qq, lane_of(i), key);
        if (put_order(a->t->st, key, &m, NULL) != OD_OK)
            atomic_fetch_add(&a->t->errors, 1);
    }
    return NULL;
}

/* Reader `me` drains lane `me` until every message arrived or time is up. */
static void *reader_thread(void *p)
{
    traffic_arg *a = p;
    traffic *t = a->t;
    const uint32_t lane = (uint32_t)a->me;
    while (atomic_load(&t->received) < N_WRITERS * N_BATCHES && H->monotonic_ms() < t->deadline) {
        od_message m[OD_RECEIVE_MAX];
        size_t n = 0;
        if (Q(t->q)->receive(t->q->self, lane, OD_RECEIVE_MAX, 500, 60000, m, &n) != OD_OK) {
            atomic_fetch_add(&t->errors, 1);
            return NULL;
        }
        for (size_t i = 0; i < n; i++) {
            int w = -1, b = -1;
            if (sscanf(m[i].body, "o-%d-%d", &w, &b) != 2 || w < 0 || w >= N_WRITERS || b < 0 ||
                b >= N_BATCHES || lane_of(b) != lane || m[i].receive_count != 1 ||
                Q(t->q)->del(t->q->self, lane, m[i].receipt) != OD_OK)
                atomic_fetch_add(&t->errors, 1);
            else
                atomic_fetch_add(&t->seen[w * N_BATCHES + b], 1);
            atomic_fetch_add(&t->received, 1);
            od_message_clear(H, &m[i]);
        }
    }
    return NULL;
}

START_TEST(test_concurrent_batches_and_consumers)
{
    backend st, q;
    open_pair(&st, &q);
    od_queue qq = queue_of(&q);
    traffic t;
    memset(&t, 0, sizeof t);
    t.st = &st;
    t.q = &q;
    t.qq = &qq;
    t.deadline = H->monotonic_ms() + 45000;
    pthread_t w[N_WRITERS], r[N_READERS];
    traffic_arg wa[N_WRITERS], ra[N_READERS];
    for (int i = 0; i < N_READERS; i++) {
        ra[i] = (traffic_arg){&t, i};
        ck_assert_int_eq(pthread_create(&r[i], NULL, reader_thread, &ra[i]), 0);
    }
    for (int i = 0; i < N_WRITERS; i++) {
        wa[i] = (traffic_arg){&t, i};
        ck_assert_int_eq(pthread_create(&w[i], NULL, writer_thread, &wa[i]), 0);
    }
    for (int i = 0; i < N_WRITERS; i++)
        pthread_join(w[i], NULL);
    for (int i = 0; i < N_READERS; i++)
        pthread_join(r[i], NULL);
    ck_assert_int_eq(atomic_load(&t.errors), 0);
    ck_assert_int_eq(atomic_load(&t.received), N_WRITERS * N_BATCHES);
    char key[32];
    for (int i = 0; i < N_WRITERS * N_BATCHES; i++) {
        snprintf(key, sizeof key, "o-%d-%d", i / N_BATCHES, i % N_BATCHES);
        ck_assert_msg(atomic_load(&t.seen[i]) == 1, "%s: %d messages", key,
                      atomic_load(&t.seen[i]));
        ck_assert(doc_exists(&st, "orders", key));
    }
    od_page p = {0};
    ck_assert_int_eq(S(&st)->scan(st.self, "orders", NULL, 1000, 0, &p), OD_OK);
    ck_assert_uint_eq(p.count, N_WRITERS * N_BATCHES);
    od_page_clear(H, &p);
    assert_lane_empty(&q, OD_LANE_NORMAL);
    assert_lane_empty(&q, OD_LANE_PRIORITY);
    ck_assert_int_eq(messages_in(fx_db_path), 0);
    fx_close(&q);
    fx_close(&st);
}
END_TEST

static Suite *shared_suite(void)
{
    Suite *s = suite_create("sqlite_shared_store");
    TCase *store = tcase_create("store");
    tcase_add_checked_fixture(store, setup, fx_teardown);
    tcase_add_test(store, test_store_names_the_file);
    tcase_add_test(store, test_other_store_unsupported);
    suite_add_tcase(s, store);

    TCase *batch = tcase_create("batch");
    tcase_add_checked_fixture(batch, setup, fx_teardown);
    tcase_add_test(batch, test_batch_carries_message);
    tcase_add_test(batch, test_batch_message_delay);
    tcase_add_test(batch, test_failed_put_sends_nothing);
    tcase_add_loop_test(batch, test_insert_failure_rolls_back, 0, 3);
    tcase_add_test(batch, test_message_validated);
    suite_add_tcase(s, batch);

    TCase *conc = tcase_create("concurrency");
    tcase_add_checked_fixture(conc, setup, fx_teardown);
    tcase_add_test(conc, test_group_commit_keeps_batches_apart);
    tcase_add_test(conc, test_notify_wakes_long_poll);
    tcase_add_test(conc, test_concurrent_batches_and_consumers);
    suite_add_tcase(s, conc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(shared_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
