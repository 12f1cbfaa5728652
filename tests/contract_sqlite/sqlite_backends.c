/*
 * tests/contract_sqlite/sqlite_backends.c - what only the SQLite backends
 * promise, beyond the shared contract suites: data survives destroy + init
 * and a crash of the process, schema versions are recorded per component,
 * an older file is migrated and a newer one refused with a clear message,
 * bad config fails init, storage and queue share one file, many threads
 * and several instances (as several processes would) write at once without
 * SQLITE_BUSY escaping, and a long poll notices a send made through another
 * connection to the file; cursors are bound to their request and survive
 * a restart; op tokens are swept after 7 days.
 *
 * Every test works in its own temporary directory, removed afterwards.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sqlite_fixture.h"

#define N_THREADS 8
#define N_OPS 40

static void define_items(const backend *b)
{
    static const od_index_def idx[] = {{"email", 1}, {"status", 0}};
    od_table_def items = {sizeof items, "items", idx, 2};
    ck_assert_int_eq(S(b)->define_table(b->self, &items), OD_OK);
}

static od_status put_item(const backend *b, const char *key, const char *email)
{
    od_index_value iv[] = {{"email", email}, {"status", "open"}};
    return S(b)->put(b->self, "items", key, "{\"x\":1}", 7, iv, 2, OD_PUT_UPSERT, 0, NULL);
}

/* The schema version the file records for a component. */
static int64_t schema_version(const char *component)
{
    char q[128];
    snprintf(q, sizeof q, "SELECT version FROM meta WHERE component = '%s'", component);
    return fx_sql_int(fx_db_path, q);
}

static void assert_lookup(const backend *b, const char *email, const char *key)
{
    od_doc d = {0};
    ck_assert_int_eq(S(b)->lookup(b->self, "items", "email", email, &d), OD_OK);
    ck_assert_str_eq(d.key, key);
    od_doc_clear(H, &d);
}

/* ---- durability ---- */

START_TEST(test_storage_survives_reopen)
{
    backend b;
    int64_t v = 0;
    int32_t applied = -1;
    fx_open(&b, "storage_sqlite");
    define_items(&b);
    ck_assert_int_eq(put_item(&b, "k1", "a@x"), OD_OK);
    ck_assert_int_eq(put_item(&b, "k1", "a@x"), OD_OK); /* version 2 */
    ck_assert_int_eq(S(&b)->counter_set(b.self, "stock", "p", 10), OD_OK);
    ck_assert_int_eq(S(&b)->counter_add(b.self, "stock", "p", -3, 0, "op-1", &v, &applied), OD_OK);
    fx_close(&b);

    fx_open(&b, "storage_sqlite");
    define_items(&b);
    od_doc d = {0};
    ck_assert_int_eq(S(&b)->get(b.self, "items", "k1", &d), OD_OK);
    ck_assert_str_eq(d.body, "{\"x\":1}");
    ck_assert_uint_eq(d.version, 2);
    od_doc_clear(H, &d);
    assert_lookup(&b, "a@x", "k1");
    ck_assert_int_eq(put_item(&b, "k2", "a@x"), OD_ERR_EXISTS); /* the index survived too */
    /* The token survived: the redelivered op changes nothing. */
    ck_assert_int_eq(S(&b)->counter_add(b.self, "stock", "p", -3, 0, "op-1", &v, &applied), OD_OK);
    ck_assert_int_eq(applied, 0);
    ck_assert_int_eq(v, 7);
    fx_close(&b);
}
END_TEST

START_TEST(test_queue_survives_reopen)
{
    backend b;
    od_message m = {0};
    size_t n = 0;
    int64_t visible = -1, in_flight = -1;
    fx_open(&b, "queue_sqlite");
    ck_assert_int_eq(Q(&b)->send(b.self, OD_LANE_NORMAL, "one", 3, 0, NULL), OD_OK);
    ck_assert_int_eq(Q(&b)->send(b.self, OD_LANE_NORMAL, "two", 3, 0, NULL), OD_OK);
    ck_assert_int_eq(Q(&b)->receive(b.self, OD_LANE_NORMAL, 1, 0, 60000, &m, &n), OD_OK);
    ck_assert_uint_eq(n, 1);
    fx_close(&b);

    fx_open(&b, "queue_sqlite");
    ck_assert_int_eq(Q(&b)->depth(b.self, OD_LANE_NORMAL, &visible, &in_flight), OD_OK);
    ck_assert_int_eq(visible, 1);
    ck_assert_int_eq(in_flight, 1);
    /* The receipt handed out before the restart still acknowledges. */
    ck_assert_int_eq(Q(&b)->del(b.self, OD_LANE_NORMAL, m.receipt), OD_OK);
    od_message_clear(H, &m);
    ck_assert_int_eq(Q(&b)->receive(b.self, OD_LANE_NORMAL, 1, 0, 60000, &m, &n), OD_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(m.body, "two");
    od_message_clear(H, &m);
    fx_close(&b);
}
END_TEST

/* A child process writes and dies without destroy (as a crashed orderd
 * would); whatever it was told was written is there afterwards. */
static void crash_after_writes(const char *durability)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        backend b;
        uint64_t v = 0;
        if (fx_open_cfg(&b, "storage_sqlite", fx_db_path, durability, -1) != OD_OK)
            _exit(2);
        od_table_def plain = {sizeof plain, "plain", NULL, 0};
        if (S(&b)->define_table(b.self, &plain) != OD_OK ||
            S(&b)->put(b.self, "plain", "acked", "{}", 2, NULL, 0, OD_PUT_UPSERT, 0, &v) != OD_OK)
            _exit(3);
        _exit(0); /* no destroy, no checkpoint */
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    backend b;
    ck_assert_int_eq(fx_open_cfg(&b, "storage_sqlite", fx_db_path, durability, -1), OD_OK);
    od_table_def plain = {sizeof plain, "plain", NULL, 0};
    ck_assert_int_eq(S(&b)->define_table(b.self, &plain), OD_OK);
    od_doc d = {0};
    ck_assert_int_eq(S(&b)->get(b.self, "plain", "acked", &d), OD_OK);
    ck_assert_uint_eq(d.version, 1);
    od_doc_clear(H, &d);
    fx_close(&b);
}

START_TEST(test_survives_crash_full)
{
    crash_after_writes("full");
}
END_TEST

START_TEST(test_survives_crash_normal)
{
    crash_after_writes("normal");
}
END_TEST

/* ---- schema versions ---- */

START_TEST(test_versions_recorded_per_component)
{
    backend st, q;
    fx_open(&st, "storage_sqlite");
    fx_open(&q, "queue_sqlite"); /* the same file, the default layout */
    ck_assert_int_eq(schema_version("storage"), 2);
    ck_assert_int_eq(schema_version("queue"), 1);
    /* Both work on the shared file at once. */
    define_items(&st);
    ck_assert_int_eq(put_item(&st, "k", "e@x"), OD_OK);
    ck_assert_int_eq(Q(&q)->send(q.self, OD_LANE_PRIORITY, "m", 1, 0, NULL), OD_OK);
    int64_t visible = 0;
    ck_assert_int_eq(Q(&q)->depth(q.self, OD_LANE_PRIORITY, &visible, NULL), OD_OK);
    ck_assert_int_eq(visible, 1);
    ck_assert_int_eq(fx_sql_int(fx_db_path, "SELECT count(*) FROM pragma_journal_mode"
                                            " WHERE journal_mode = 'wal'"),
                     1);
    struct stat sb; /* password hashes inside: not world-readable */
    ck_assert_int_eq(stat(fx_db_path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0600);
    fx_close(&q);
    fx_close(&st);
}
END_TEST

/* A file on which component (the module's config group) records schema
 * version `newer`, above the `supported` one: init refuses it and says what
 * to do. */
static void newer_refused(const char *component, int newer, int supported)
{
    backend b;
    char module[32], text[128], msg[512];
    snprintf(module, sizeof module, "%s_sqlite", component);
    fx_open(&b, module);
    fx_close(&b);
    snprintf(text, sizeof text, "UPDATE meta SET version = %d WHERE component = '%s'", newer,
             component);
    fx_sql(text);
    ck_assert_int_eq(fx_open_cfg(&b, module, fx_db_path, NULL, -1), OD_ERR_CONFIG);
    snprintf(msg, sizeof msg,
             "%s \"sqlite\": %s has schema version %d, this orderd supports up to %d; "
             "upgrade orderd or restore a backup",
             component, fx_db_path, newer, supported);
    ck_assert_msg(mock_log_contains(msg), "missing log line: %s", msg);
}

START_TEST(test_newer_storage_refused)
{
    backend b;
    newer_refused("storage", 3, 2);
    /* The file is untouched and the queue, a separate component, still opens. */
    ck_assert_int_eq(schema_version("storage"), 3);
    fx_open(&b, "queue_sqlite");
    fx_close(&b);
}
END_TEST

START_TEST(test_newer_queue_refused)
{
    newer_refused("queue", 7, 1);
}
END_TEST

/* The storage layout of schema version 1, as an orderd of that version
 * wrote it (token ages came with version 2). */
static const char STORAGE_V1[] =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE meta(component TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO meta VALUES('storage', 1);"
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
    " PRIMARY KEY(tbl, token)) WITHOUT ROWID;"
    "INSERT INTO documents VALUES('items', 'old', 4, CAST('{\"v\":1}' AS BLOB));"
    "INSERT INTO index_unique VALUES('items', 'email', 'old@x', 'old');"
    "INSERT INTO index_entries VALUES('items', 'status', 'open', 'old');"
    "INSERT INTO counters VALUES('stock', 'p', 5);"
    "INSERT INTO counter_tokens VALUES('stock', 'op-old');";

START_TEST(test_migrates_v1)
{
    fx_sql(STORAGE_V1);
    backend b;
    fx_open(&b, "storage_sqlite");
    ck_assert(mock_log_contains("schema version 1 -> 2"));
    ck_assert_int_eq(schema_version("storage"), 2);
    /* Migrated tokens are dated to the migration: kept 7 more days. */
    ck_assert_int_gt(fx_sql_int(fx_db_path, "SELECT min(created_ms) FROM counter_tokens"),
                     H->now_ms() - 60000);
    define_items(&b);
    od_doc d = {0};
    ck_assert_int_eq(S(&b)->get(b.self, "items", "old", &d), OD_OK);
    ck_assert_str_eq(d.body, "{\"v\":1}");
    ck_assert_uint_eq(d.version, 4);
    od_doc_clear(H, &d);
    assert_lookup(&b, "old@x", "old");
    od_page p = {0};
    ck_assert_int_eq(S(&b)->query(b.self, "items", "status", "open", NULL, 10, 0, &p), OD_OK);
    ck_assert_uint_eq(p.count, 1);
    od_page_clear(H, &p);
    int64_t v = 0;
    int32_t applied = -1;
    ck_assert_int_eq(S(&b)->counter_add(b.self, "stock", "p", -1, 0, "op-old", &v, &applied),
                     OD_OK);
    ck_assert_int_eq(applied, 0);
    ck_assert_int_eq(S(&b)->counter_add(b.self, "stock", "p", -1, 0, "op-new", &v, &applied),
                     OD_OK);
    ck_assert_int_eq(applied, 1);
    ck_assert_int_eq(v, 4);
    fx_close(&b);
    /* Opening again migrates nothing. */
    mock_log_reset();
    fx_open(&b, "storage_sqlite");
    ck_assert(!mock_log_contains("schema version"));
    fx_close(&b);
}
END_TEST

/* ---- cursors and tokens ---- */

START_TEST(test_cursor_bound_to_request)
{
    backend b;
    fx_open(&b, "storage_sqlite");
    define_items(&b);
    od_table_def plain = {sizeof plain, "plain", NULL, 0};
    ck_assert_int_eq(S(&b)->define_table(b.self, &plain), OD_OK);
    ck_assert_int_eq(put_item(&b, "k0", "0@x"), OD_OK);
    ck_assert_int_eq(put_item(&b, "k1", "1@x"), OD_OK);
    od_page p = {0};
    ck_assert_int_eq(S(&b)->scan(b.self, "items", NULL, 1, 0, &p), OD_OK);
    ck_assert_ptr_nonnull(p.next);
    char cursor[OD_CURSOR_MAX + 1];
    strcpy(cursor, p.next);
    od_page_clear(H, &p);
    ck_assert_int_eq(strncmp(cursor, "s1sa.", 5), 0);
    /* Another direction, table or op; an edited hash or key. */
    ck_assert_int_eq(S(&b)->scan(b.self, "items", cursor, 1, 1, &p), OD_ERR_INVALID);
    ck_assert_int_eq(S(&b)->scan(b.self, "plain", cursor, 1, 0, &p), OD_ERR_INVALID);
    ck_assert_int_eq(S(&b)->query(b.self, "items", "status", "open", cursor, 1, 0, &p),
                     OD_ERR_INVALID);
    char edited[OD_CURSOR_MAX + 1];
    strcpy(edited, cursor);
    edited[strlen(edited) - 1] = edited[strlen(edited) - 1] == '0' ? '1' : '0';
    ck_assert_int_eq(S(&b)->scan(b.self, "items", edited, 1, 0, &p), OD_ERR_INVALID);
    strcpy(edited, cursor);
    edited[5] = edited[5] == 'A' ? 'B' : 'A';
    ck_assert_int_eq(S(&b)->scan(b.self, "items", edited, 1, 0, &p), OD_ERR_INVALID);
    ck_assert_int_eq(S(&b)->scan(b.self, "items", "s1sa.0123456789abcdef", 1, 0, &p),
                     OD_ERR_INVALID);
    /* A query cursor is bound to its value too. */
    ck_assert_int_eq(S(&b)->query(b.self, "items", "status", "open", NULL, 1, 0, &p), OD_OK);
    ck_assert_ptr_nonnull(p.next);
    strcpy(cursor, p.next);
    od_page_clear(H, &p);
    ck_assert_int_eq(S(&b)->query(b.self, "items", "status", "done", cursor, 1, 0, &p),
                     OD_ERR_INVALID);
    /* The genuine cursor still works after a restart. */
    fx_close(&b);
    fx_open(&b, "storage_sqlite");
    define_items(&b);
    ck_assert_int_eq(S(&b)->query(b.self, "items", "status", "open", cursor, 5, 0, &p), OD_OK);
    ck_assert_uint_eq(p.count, 1);
    ck_assert_str_eq(p.items[0].key, "k1");
    ck_assert_ptr_null(p.next);
    od_page_clear(H, &p);
    fx_close(&b);
}
END_TEST

START_TEST(test_tokens_expire_after_seven_days)
{
    const int64_t day = 24LL * 3600 * 1000, t0 = 1800000000000LL;
    backend b;
    int32_t applied = -1;
    fx_open(&b, "storage_sqlite");
    mock_set_now_ms(t0);
    ck_assert_int_eq(S(&b)->counter_set(b.self, "stock", "p", 0), OD_OK);
    ck_assert_int_eq(S(&b)->counter_add(b.self, "stock", "p", 1, 0, "a", NULL, &applied), OD_OK);
    mock_set_now_ms(t0 + 6 * day);
    ck_assert_int_eq(S(&b)->counter_add(b.self, "stock", "p", 1, 0, "b", NULL, &applied), OD_OK);
    ck_assert_int_eq(S(&b)->counter_add(b.self, "stock", "p", 1, 0, "a", NULL, &applied), OD_OK);
    ck_assert_int_eq(applied, 0); /* 6 days: remembered */
    mock_set_now_ms(t0 + 8 * day);
    ck_assert_int_eq(S(&b)->counter_add(b.self, "stock", "p", 1, 0, "c", NULL, &applied), OD_OK);
    /* "a" swept */
    ck_assert_int_eq(fx_sql_int(fx_db_path, "SELECT count(*) FROM counter_tokens"), 2);
    ck_assert_int_eq(S(&b)->counter_add(b.self, "stock", "p", 1, 0, "a", NULL, &applied), OD_OK);
    ck_assert_int_eq(applied, 1);
    ck_assert_int_eq(S(&b)->counter_add(b.self, "stock", "p", 1, 0, "b", NULL, &applied), OD_OK);
    ck_assert_int_eq(applied, 0); /* 2 days: remembered */
    mock_set_now_ms(0);
    fx_close(&b);
}
END_TEST

/* ---- config ---- */

START_TEST(test_bad_config)
{
    backend b;
    ck_assert_int_eq(fx_open_cfg(&b, "storage_sqlite", fx_db_path, "fast", -1), OD_ERR_CONFIG);
    ck_assert(mock_log_contains("durability = \"fast\" is not valid (valid: full, normal)"));
    char missing[400];
    snprintf(missing, sizeof missing, "%s/no/such/dir/orderd.db", fx_dir);
    ck_assert_int_ne(fx_open_cfg(&b, "queue_sqlite", missing, NULL, -1), OD_OK);
    ck_assert(mock_log_contains("cannot open"));
    b.desc = fx_load("storage_sqlite");
    b.mod = mock_module_new("storage");
    mock_config_set_string(b.mod, "path", fx_db_path);
    mock_config_set_int(b.mod, "busy_timeout_ms", -1);
    ck_assert_int_eq(b.desc->init(H, b.mod, &b.self), OD_ERR_CONFIG);
    mock_module_free(b.mod);
    ck_assert_int_eq(fx_open_cfg(&b, "storage_sqlite", ":memory:", NULL, -1), OD_ERR_CONFIG);
    ck_assert(mock_log_contains("path = \":memory:\" is not valid"));
    /* A file that is not a database. */
    FILE *f = fopen(fx_db_path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("this is not an SQLite database, just some text that is long enough to matter\n", f);
    fclose(f);
    ck_assert_int_ne(fx_open_cfg(&b, "storage_sqlite", fx_db_path, NULL, -1), OD_OK);
}
END_TEST

/* ---- concurrency ---- */

typedef struct writers {
    backend *instances; /* threads spread over these */
    size_t n_instances;
    pthread_barrier_t start;
    int errors;
    pthread_mutex_t lock;
} writers;

typedef struct writer_arg {
    writers *w;
    size_t me;
} writer_arg;

static void *writer_thread(void *p)
{
    writer_arg *a = p;
    writers *w = a->w;
    const backend *b = &w->instances[a->me % w->n_instances];
    char key[32], email[48], token[32];
    int errors = 0;
    pthread_barrier_wait(&w->start);
    for (int i = 0; i < N_OPS; i++) {
        snprintf(key, sizeof key, "t%zu-%d", a->me, i);
        snprintf(email, sizeof email, "%s@x", key);
        snprintf(token, sizeof token, "op-%zu-%d", a->me, i);
        errors += put_item(b, key, email) != OD_OK;
        errors += S(b)->counter_add(b->self, "stock", "hot", -1, 0, token, NULL, NULL) != OD_OK;
        od_doc d = {0};
        errors += S(b)->get(b->self, "items", key, &d) != OD_OK;
        od_doc_clear(H, &d);
    }
    pthread_mutex_lock(&w->lock);
    w->errors += errors;
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void run_writers(backend *instances, size_t n_instances)
{
    writers w = {instances, n_instances, {{0}}, 0, PTHREAD_MUTEX_INITIALIZER};
    pthread_t t[N_THREADS];
    writer_arg args[N_THREADS];
    pthread_barrier_init(&w.start, NULL, N_THREADS);
    for (size_t i = 0; i < N_THREADS; i++) {
        args[i] = (writer_arg){&w, i};
        ck_assert_int_eq(pthread_create(&t[i], NULL, writer_thread, &args[i]), 0);
    }
    for (size_t i = 0; i < N_THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&w.start);
    ck_assert_int_eq(w.errors, 0);
    int64_t v = -1;
    ck_assert_int_eq(S(&instances[0])->counter_get(instances[0].self, "stock", "hot", &v), OD_OK);
    ck_assert_int_eq(v, 100000 - N_THREADS * N_OPS);
    od_page p = {0};
    ck_assert_int_eq(S(&instances[0])->scan(instances[0].self, "items", NULL, 1000, 0, &p), OD_OK);
    ck_assert_uint_eq(p.count, N_THREADS * N_OPS);
    od_page_clear(H, &p);
}

START_TEST(test_concurrent_writers_one_instance)
{
    backend b;
    fx_open(&b, "storage_sqlite");
    define_items(&b);
    ck_assert_int_eq(S(&b)->counter_set(b.self, "stock", "hot", 100000), OD_OK);
    run_writers(&b, 1);
    fx_close(&b);
}
END_TEST

/* Two instances on one file contend like two processes: their threads
 * meet only in SQLite's file locks, not in any lock of the module. */
START_TEST(test_concurrent_writers_two_instances)
{
    backend b[2];
    for (size_t i = 0; i < 2; i++) {
        fx_open(&b[i], "storage_sqlite");
        define_items(&b[i]);
    }
    ck_assert_int_eq(S(&b[0])->counter_set(b[0].self, "stock", "hot", 100000), OD_OK);
    run_writers(b, 2);
    fx_close(&b[1]);
    fx_close(&b[0]);
}
END_TEST

/* Another process holds the write lock longer than busy_timeout_ms: writes
 * give up with UNAVAILABLE (HTTP 503) after about that long, reads go on. */
START_TEST(test_busy_timeout_unavailable)
{
    backend b;
    ck_assert_int_eq(fx_open_cfg(&b, "storage_sqlite", fx_db_path, NULL, 200), OD_OK);
    define_items(&b);
    ck_assert_int_eq(put_item(&b, "k", "k@x"), OD_OK);
    sqlite3 *other = fx_other();
    fx_exec(other, "BEGIN IMMEDIATE");
    int64_t start = H->monotonic_ms();
    ck_assert_int_eq(put_item(&b, "k2", "k2@x"), OD_ERR_UNAVAILABLE);
    int64_t took = H->monotonic_ms() - start;
    ck_assert_int_ge(took, 190);
    ck_assert_int_lt(took, 3000);
    ck_assert(mock_log_contains("database still locked after busy_timeout_ms = 200"));
    od_doc d = {0};
    ck_assert_int_eq(S(&b)->get(b.self, "items", "k", &d), OD_OK); /* WAL: readers go on */
    od_doc_clear(H, &d);
    fx_exec(other, "COMMIT");
    sqlite3_close(other);
    ck_assert_int_eq(put_item(&b, "k2", "k2@x"), OD_OK);
    fx_close(&b);
}
END_TEST

typedef struct poll_arg {
    const backend *b;
    od_message m;
    size_t n;
    od_status s;
} poll_arg;

static void *poll_thread(void *p)
{
    poll_arg *a = p;
    a->s = Q(a->b)->receive(a->b->self, OD_LANE_NORMAL, 1, 10000, 60000, &a->m, &a->n);
    return NULL;
}

/* A send through another instance (another process, in production) wakes
 * no condition variable here: the long poll must find it by re-checking. */
START_TEST(test_long_poll_sees_other_instance)
{
    backend consumer, producer;
    fx_open(&consumer, "queue_sqlite");
    fx_open(&producer, "queue_sqlite");
    poll_arg a = {&consumer, {0}, 0, -99};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, poll_thread, &a), 0);
    int64_t start = H->monotonic_ms();
    ck_assert_int_eq(Q(&producer)->send(producer.self, OD_LANE_NORMAL, "hi", 2, 0, NULL), OD_OK);
    pthread_join(t, NULL);
    ck_assert_int_eq(a.s, OD_OK);
    ck_assert_uint_eq(a.n, 1);
    ck_assert_str_eq(a.m.body, "hi");
    ck_assert_int_lt(H->monotonic_ms() - start, 2000); /* a re-check, not the 10 s wait */
    od_message_clear(H, &a.m);
    fx_close(&producer);
    fx_close(&consumer);
}
END_TEST

static Suite *sqlite_suite(void)
{
    Suite *s = suite_create("sqlite_backends");
    TCase *dur = tcase_create("durability");
    tcase_add_checked_fixture(dur, fx_setup, fx_teardown);
    tcase_add_test(dur, test_storage_survives_reopen);
    tcase_add_test(dur, test_queue_survives_reopen);
    tcase_add_test(dur, test_survives_crash_full);
    tcase_add_test(dur, test_survives_crash_normal);
    suite_add_tcase(s, dur);

    TCase *schema = tcase_create("schema");
    tcase_add_checked_fixture(schema, fx_setup, fx_teardown);
    tcase_add_test(schema, test_versions_recorded_per_component);
    tcase_add_test(schema, test_newer_storage_refused);
    tcase_add_test(schema, test_newer_queue_refused);
    tcase_add_test(schema, test_migrates_v1);
    tcase_add_test(schema, test_bad_config);
    suite_add_tcase(s, schema);

    TCase *cur = tcase_create("cursors_and_tokens");
    tcase_add_checked_fixture(cur, fx_setup, fx_teardown);
    tcase_add_test(cur, test_cursor_bound_to_request);
    tcase_add_test(cur, test_tokens_expire_after_seven_days);
    suite_add_tcase(s, cur);

    TCase *conc = tcase_create("concurrency");
    tcase_add_checked_fixture(conc, fx_setup, fx_teardown);
    tcase_add_test(conc, test_concurrent_writers_one_instance);
    tcase_add_test(conc, test_concurrent_writers_two_instances);
    tcase_add_test(conc, test_long_poll_sees_other_instance);
    tcase_add_test(conc, test_busy_timeout_unavailable);
    suite_add_tcase(s, conc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sqlite_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
