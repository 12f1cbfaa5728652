/*
 * integ_crash: nothing accepted is ever lost or stuck.
 *
 * A real orderd on SQLite (one file for storage and queue) takes orders from
 * client threads while the test kills it with SIGKILL several times at random
 * moments and restarts it on the same file (new port, found in the new log).
 * Clients retry a request on a connection failure or a 5xx with the SAME
 * Idempotency-Key until they get 201/200/4xx. Before the last kill the
 * workers are stopped for 300 ms so orders pile up, and before the last
 * restart the test deletes every normal/priority queue row from the file:
 * each order still PENDING or PROCESSING then has no message left and only
 * the queue_worker sweeper can bring it home. Then nobody acts, and:
 *   - every order a client got 201/200 for exists and reaches a terminal
 *     state (COMPLETED/FAILED/CANCELLED) before a deadline;
 *   - a key never maps to two order ids (a replay answers the same id);
 *   - initial stock - final stock == units of COMPLETED orders, and the
 *     final stock is >= 0 (no order was reserved twice to visible effect);
 *   - GET /api/orders as admin lists exactly the ids the clients saw;
 *   - no killed process logged a sanitizer report, the last one exits 0.
 *
 * The harness's own config loads only auth and users on the memory
 * backends, so this suite writes its own config and fills an ih_server that
 * every harness call (ih_server_stop included) accepts. Client threads use
 * their own curl handles and never ck_assert (the harness and Check are
 * single-threaded): they record what they saw, the main thread asserts.
 * Timing is measured and printed on stderr (ctest -V shows it).
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N_CUSTOMERS 6
#define INITIAL_STOCK 300
#define N_KILLS 5
#define MAX_STARTS (N_KILLS + 1)
#define MAX_KEYS 2000          /* per client */
#define ORDER_PAUSE_MS 30      /* pacing between one client's orders */
#define RETRY_PAUSE_MS 25      /* between retries of one key */
#define KEY_DEADLINE_MS 40000  /* a key still unanswered after this is a failure */
#define SETTLE_TIMEOUT_MS 40000
#define HTTP_TIMEOUT_MS 10000

/* Worker and sweeper timing: the recovery bound is sweep_after_ms +
 * sweep_interval_ms after the last restart (plus the pipeline's run). */
#define VISIBILITY_MS 2000
#define SWEEP_INTERVAL_MS 300
#define SWEEP_AFTER_MS 1500

/* ---- the server: one temp dir, one database, one log per start ----------- */

static struct {
    ih_server srv;        /* the current process; srv.dir holds everything */
    int starts;
    char db[192];
    atomic_int port;      /* 0 while no server is up: clients wait */
    atomic_int stop;      /* clients: place no new key */
    int64_t last_start_ms;
} C;

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The config for one start on C.db (owned by the harness). */
static const char *crash_config(const char *durability)
{
    return ih_printf(
            "server: { listen = \"127.0.0.1:0\"; threads = 32; max_body_bytes = %d;"
            " log_level = \"info\"; keep_alive_timeout_ms = 500; };\n"
            "modules: { directory = \"%s/modules\";"
            " load = [\"auth\", \"users\", \"products\", \"orders\", \"queue_worker\","
            " \"step_validate\", \"step_reserve_stock\", \"step_complete\"]; };\n"
            "storage: { backend = \"sqlite\"; path = \"%s\"; durability = \"%s\"; };\n"
            "queue: { backend = \"sqlite\"; path = \"%s\"; durability = \"%s\"; };\n"
            "auth: { jwt_secret = \"%s\"; token_ttl_seconds = 3600;"
            " argon2_iterations = 1; argon2_memory_kib = 1024; };\n"
            "users: { admin_email = \"%s\"; admin_password = \"%s\";"
            " argon2_iterations = 1; argon2_memory_kib = 1024; };\n"
            "orders: { pipeline = [\"validate\", \"reserve_stock\", \"complete\"]; };\n"
            "queue_worker: { threads = 4; visibility_ms = %d; poll_wait_ms = 100;"
            " backoff_base_ms = 100; backoff_max_ms = 1000;"
            " sweep_interval_ms = %d; sweep_after_ms = %d; };\n",
            IH_MAX_BODY, getenv("ORDERD_BUILD_DIR"), C.db, durability, C.db, durability,
            IH_JWT_SECRET, IH_ADMIN_EMAIL, IH_ADMIN_PASSWORD, VISIBILITY_MS, SWEEP_INTERVAL_MS,
            SWEEP_AFTER_MS);
}

static void log_path_of(int start, char *out, size_t cap)
{
    snprintf(out, cap, "%s/orderd-%d.log", C.srv.dir, start);
}

/* Start orderd on C.db, in the same dir, with a fresh log per start. */
static void server_start(const char *durability)
{
    ck_assert_int_lt(C.starts, MAX_STARTS);
    log_path_of(++C.starts, C.srv.log_path, sizeof C.srv.log_path);
    ih_server_launch(&C.srv, crash_config(durability));
    C.last_start_ms = ih_monotonic_ms();
    ih_reset_connection(); /* the main thread's keep-alive went with the old process */
    atomic_store(&C.port, C.srv.port);
}

/* SIGKILL the orderd we started (by its pid) and reap it. It must have been
 * alive: a server that died on its own would be a bug, not a kill. */
static void server_kill(void)
{
    atomic_store(&C.port, 0);
    ck_assert_int_gt(C.srv.pid, 0);
    ck_assert_int_eq(kill(C.srv.pid, SIGKILL), 0);
    int status = 0;
    ck_assert_int_eq(waitpid(C.srv.pid, &status, 0), C.srv.pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "orderd ended by itself before the kill (status %d)", status);
    C.srv.pid = 0;
}

/* ---- the database, opened by the test while no orderd runs --------------- */

static sqlite3 *db_open(void)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open_v2(C.db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static int64_t db_count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql,
                  sqlite3_errmsg(db));
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* What one transaction per new order guarantees on a shared file
 * (docs/sqlite.md, "Crash safety"), checked on the file a SIGKILL left
 * behind: no PENDING order without a normal/priority message naming it,
 * no Idempotency-Key record without its order. Without it a kill between
 * the writes would leave either. Returns the PENDING orders checked. */
static int64_t assert_no_half_written_orders(void)
{
    sqlite3 *db = db_open();
    int64_t pending = db_count(db, "SELECT count(*) FROM index_entries WHERE tbl = 'orders' AND "
                                   "idx = 'status' AND value = 'PENDING'");
    int64_t unqueued = db_count(
        db, "SELECT count(*) FROM index_entries e WHERE e.tbl = 'orders' AND e.idx = 'status'"
            " AND e.value = 'PENDING' AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.lane IN"
            " (0, 1) AND json_extract(CAST(m.body AS TEXT), '$.orderId') = e.key)");
    int64_t orphan_keys = db_count(
        db, "SELECT count(*) FROM documents i WHERE i.tbl = 'idempotency' AND NOT EXISTS"
            " (SELECT 1 FROM documents o WHERE o.tbl = 'orders'"
            " AND o.key = json_extract(CAST(i.body AS TEXT), '$.orderId'))");
    ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
    ck_assert_msg(unqueued == 0, "after kill %d: %lld of %lld PENDING orders have no message",
                  C.starts, (long long)unqueued, (long long)pending);
    ck_assert_msg(orphan_keys == 0, "after kill %d: %lld Idempotency-Key records without order",
                  C.starts, (long long)orphan_keys);
    return pending;
}

/* Simulate messages that are gone (e.g. orderd died between storing an
 * order and queueing it): drop every normal/priority message. Returns the
 * orders that are not terminal, i.e. that only the sweeper can finish. */
static int64_t drop_order_messages(int64_t *dropped)
{
    sqlite3 *db = db_open();
    int64_t stuck = db_count(db, "SELECT count(*) FROM index_entries WHERE tbl = 'orders' AND "
                                 "idx = 'status' AND value IN ('PENDING', 'PROCESSING')");
    *dropped = db_count(db, "SELECT count(*) FROM messages WHERE lane IN (0, 1)");
    char *err = NULL;
    ck_assert_msg(sqlite3_exec(db, "DELETE FROM messages WHERE lane IN (0, 1)", NULL, NULL, &err) ==
                      SQLITE_OK,
                  "delete messages: %s", err ? err : "?");
    ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
    return stuck;
}

/* Stop the workers (admin route) and let the clients go on for a while, so
 * the next kill leaves many PENDING orders behind, not just those in flight. */
static void pile_up_orders(const char *admin)
{
    ih_response *r = ih_send_json(&C.srv, "POST", "/api/orders/worker/stop", admin, "{}");
    ck_assert_msg(r->status == 200, "worker stop: %ld %.300s", r->status, r->body);
    pause_ms(300);
}

/* ---- client threads -------------------------------------------------------- */

typedef struct placed {
    char key[32];
    int qty;
    long status;       /* final answer; 0 = never answered */
    char id[48];       /* order id of a 201/200 */
} placed;

typedef struct client {
    pthread_t tid;
    int n;
    char *token;         /* owned; read-only while the thread runs */
    const char *product; /* the test's; read-only while the thread runs */
    CURL *curl;
    placed *keys;
    size_t n_keys;
    unsigned seed;
    long retries;       /* requests repeated after a failure or 503 */
    int bad;            /* answers that broke the contract */
    char first_bad[256];
} client;

static void note_bad(client *c, const char *what, long status)
{
    if (c->bad++ == 0)
        snprintf(c->first_bad, sizeof c->first_bad, "%s (HTTP %ld)", what, status);
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    return fwrite(data, size, n, arg);
}

/* One POST /api/orders. 0 when an HTTP answer came (*status set), -1 if
 * the connection failed (the server is down or was killed mid-request). */
static int post_order(client *c, int port, placed *p, long *status)
{
    char url[64], auth[2048], idem[64], body[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/orders", port);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
    snprintf(idem, sizeof idem, "Idempotency-Key: %s", p->key);
    snprintf(body, sizeof body, "{\"items\":[{\"productId\":\"%s\",\"quantity\":%d}]}",
             c->product, p->qty);
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, idem);
    char *resp = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&resp, &len);
    if (!h || !mem) {
        note_bad(c, "out of memory", 0);
        curl_slist_free_all(h);
        if (mem)
            fclose(mem);
        free(resp);
        return -1;
    }
    curl_easy_reset(c->curl);
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, (long)HTTP_TIMEOUT_MS);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, mem);
    CURLcode rc = curl_easy_perform(c->curl);
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    fclose(mem);
    int answered = rc == CURLE_OK && *status > 0;
    if (answered && (*status == 201 || *status == 200)) {
        json_object *env = json_tokener_parse(resp), *data = NULL, *id = NULL;
        if (json_object_object_get_ex(env, "data", &data) &&
            json_object_object_get_ex(data, "id", &id) && json_object_is_type(id, json_type_string))
            snprintf(p->id, sizeof p->id, "%s", json_object_get_string(id));
        else
            note_bad(c, "201/200 without data.id", *status);
        json_object_put(env);
    }
    free(resp);
    return answered ? 0 : -1;
}

/* Retry with the same key until a 201/200/4xx (or the key's deadline). */
static void place(client *c, placed *p)
{
    int64_t deadline = ih_monotonic_ms() + KEY_DEADLINE_MS;
    for (;;) {
        long status = 0;
        int port = atomic_load(&C.port);
        if (port && post_order(c, port, p, &status) == 0 && status < 500) {
            p->status = status;
            return;
        }
        if (status >= 500 && status != 503)
            note_bad(c, "server error", status);
        if (ih_monotonic_ms() > deadline)
            return; /* p->status stays 0: reported by the main thread */
        c->retries++;
        pause_ms(RETRY_PAUSE_MS);
    }
}

static void *client_main(void *arg)
{
    client *c = arg;
    while (!atomic_load(&C.stop) && c->n_keys < MAX_KEYS) {
        placed *p = &c->keys[c->n_keys++];
        snprintf(p->key, sizeof p->key, "crash-%d-%zu", c->n, c->n_keys);
        p->qty = 1 + (int)(rand_r(&c->seed) % 2);
        place(c, p);
        pause_ms(ORDER_PAUSE_MS);
    }
    return NULL;
}

/* ---- what the clients saw ------------------------------------------------- */

typedef struct seen {
    char id[48];
    int qty;
    const char *key;
} seen;

static int seen_cmp(const void *a, const void *b)
{
    return strcmp(((const seen *)a)->id, ((const seen *)b)->id);
}

/* ---- admin views ------------------------------------------------------------ */

/* One order as the admin lists it. */
typedef struct row {
    char id[48];
    char status[16];
    int64_t units;
} row;

typedef struct listed {
    row *rows; /* sorted by id */
    size_t n, cap;
    size_t not_terminal;
    int64_t completed_units;
    size_t completed;
} listed;

static int row_cmp(const void *a, const void *b)
{
    return strcmp(((const row *)a)->id, ((const row *)b)->id);
}

static int is_terminal(const char *status)
{
    return strcmp(status, "COMPLETED") == 0 || strcmp(status, "FAILED") == 0 ||
           strcmp(status, "CANCELLED") == 0;
}

static int64_t order_units(struct json_object *order)
{
    struct json_object *items = NULL;
    int64_t units = 0;
    if (!json_object_object_get_ex(order, "items", &items))
        return -1;
    for (size_t i = 0; i < json_object_array_length(items); i++) {
        struct json_object *q = NULL;
        if (!json_object_object_get_ex(json_object_array_get_idx(items, i), "quantity", &q))
            return -1;
        units += json_object_get_int64(q);
    }
    return units;
}

static void add_row(listed *l, struct json_object *o)
{
    struct json_object *id = NULL, *status = NULL;
    ck_assert(json_object_object_get_ex(o, "id", &id) &&
              json_object_object_get_ex(o, "status", &status));
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->rows = realloc(l->rows, l->cap * sizeof *l->rows);
        ck_assert_ptr_nonnull(l->rows);
    }
    row *r = &l->rows[l->n++];
    snprintf(r->id, sizeof r->id, "%s", json_object_get_string(id));
    snprintf(r->status, sizeof r->status, "%s", json_object_get_string(status));
    r->units = order_units(o);
    if (!is_terminal(r->status))
        l->not_terminal++;
    else if (strcmp(r->status, "COMPLETED") == 0) {
        l->completed++;
        l->completed_units += r->units;
    }
}

/* Every order, as the admin lists them (all pages), sorted by id. */
static void list_orders(const char *admin, listed *l)
{
    free(l->rows);
    memset(l, 0, sizeof *l);
    const char *cursor = NULL;
    do {
        const char *path = cursor ? ih_printf("/api/orders?limit=100&cursor=%s", cursor)
                                  : "/api/orders?limit=100";
        ih_response *r = ih_get(&C.srv, path, admin);
        ck_assert_msg(r->status == 200, "GET %s: %ld %.300s", path, r->status, r->body);
        struct json_object *data = ih_json(r, "data");
        for (size_t i = 0; i < json_object_array_length(data); i++)
            add_row(l, json_object_array_get_idx(data, i));
        cursor = ih_str(r, "next");
    } while (cursor);
    if (l->n)
        qsort(l->rows, l->n, sizeof *l->rows, row_cmp);
    ih_release();
}

static int64_t stock_of(const char *admin, const char *product)
{
    ih_response *r = ih_get(&C.srv, ih_printf("/api/products/%s", product), admin);
    ck_assert_msg(r->status == 200, "product: %ld %.300s", r->status, r->body);
    struct json_object *v = ih_json(r, "data.stock");
    ck_assert_msg(json_object_is_type(v, json_type_int), "stock: %.300s", r->body);
    return json_object_get_int64(v);
}

static const char *make_product(const char *admin)
{
    char body[160];
    snprintf(body, sizeof body, "{\"name\":\"Crash widget\",\"price\":9.5,\"stock\":%d}",
             INITIAL_STOCK);
    ih_response *r = ih_send_json(&C.srv, "POST", "/api/products", admin, body);
    ck_assert_msg(r->status == 201, "product: %ld %.300s", r->status, r->body);
    ck_assert_ptr_nonnull(ih_str(r, "data.id"));
    return ih_strdup(ih_str(r, "data.id"));
}

/* Occurrences of needle in every log written so far. */
static int count_in_logs(const char *needle, int from_start)
{
    int n = 0;
    for (int i = from_start; i <= C.starts; i++) {
        char path[256];
        log_path_of(i, path, sizeof path);
        char *log = ih_read_file(path);
        for (const char *p = log; p && (p = strstr(p, needle)) != NULL; p++)
            n++;
        free(log);
    }
    return n;
}

/* Poll (admin list) until no order is PENDING or PROCESSING; returns the
 * time since the last restart. */
static int64_t wait_settled(const char *admin, listed *l)
{
    int64_t deadline = ih_monotonic_ms() + SETTLE_TIMEOUT_MS;
    for (;;) {
        list_orders(admin, l);
        if (l->not_terminal == 0)
            return ih_monotonic_ms() - C.last_start_ms;
        ck_assert_msg(ih_monotonic_ms() < deadline, "%zu of %zu orders still not terminal",
                      l->not_terminal, l->n);
        pause_ms(100);
    }
}

/* ---- the test ------------------------------------------------------------- */

static client clients[N_CUSTOMERS];

static void make_customers(void)
{
    for (int i = 0; i < N_CUSTOMERS; i++) {
        char email[64], password[64];
        snprintf(email, sizeof email, "crash%d@test.local", i);
        snprintf(password, sizeof password, "crash-password-%d", i);
        ih_register(&C.srv, "Crash", email, password);
        clients[i] = (client){.n = i, .seed = 1234u + (unsigned)i};
        clients[i].token = strdup(ih_login(&C.srv, email, password));
        clients[i].keys = calloc(MAX_KEYS, sizeof *clients[i].keys);
        clients[i].curl = curl_easy_init();
        ck_assert(clients[i].token && clients[i].keys && clients[i].curl);
    }
}

/* What the clients got: ids of 201/200 answers, sorted. */
static seen *collect_seen(size_t *n, size_t *answered_4xx, size_t *unanswered)
{
    seen *all = calloc((size_t)N_CUSTOMERS * MAX_KEYS, sizeof *all);
    ck_assert_ptr_nonnull(all);
    *n = *answered_4xx = *unanswered = 0;
    for (int i = 0; i < N_CUSTOMERS; i++) {
        client *c = &clients[i];
        ck_assert_msg(c->bad == 0, "client %d: %d bad answers, first: %s", i, c->bad,
                      c->first_bad);
        for (size_t k = 0; k < c->n_keys; k++) {
            placed *p = &c->keys[k];
            if (p->status == 0) {
                (*unanswered)++;
            } else if (p->status >= 400) {
                (*answered_4xx)++;
            } else {
                all[*n] = (seen){.qty = p->qty, .key = p->key};
                snprintf(all[*n].id, sizeof all[*n].id, "%s", p->id);
                (*n)++;
            }
        }
    }
    qsort(all, *n, sizeof *all, seen_cmp);
    return all;
}

/* Every key that got an id answers the same id again (200, replayed). */
static void assert_replays(void)
{
    for (int i = 0; i < N_CUSTOMERS; i++)
        for (size_t k = 0; k < clients[i].n_keys; k++) {
            placed *p = &clients[i].keys[k];
            if (p->status != 200 && p->status != 201)
                continue;
            const char *headers[] = {
                "Content-Type: application/json",
                ih_printf("Authorization: Bearer %s", clients[i].token),
                ih_printf("Idempotency-Key: %s", p->key), NULL};
            const char *body = ih_printf("{\"items\":[{\"productId\":\"%s\",\"quantity\":%d}]}",
                                         clients[i].product, p->qty);
            ih_response *r = ih_request(&C.srv, "POST", "/api/orders", headers, body, strlen(body));
            ck_assert_msg(r->status == 200, "replay %s: %ld %.200s", p->key, r->status, r->body);
            ck_assert_msg(ih_str(r, "data.id") && strcmp(ih_str(r, "data.id"), p->id) == 0,
                          "key %s maps to %s and to %s", p->key, p->id, ih_str(r, "data.id"));
        }
    ih_release();
}

static void remove_files(void)
{
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    char path[256];
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s%s", C.db, suffixes[i]);
        unlink(path);
    }
    for (int i = 1; i < C.starts; i++) { /* the last log is ih_server_stop's */
        log_path_of(i, path, sizeof path);
        unlink(path);
    }
}

START_TEST(test_kill9_under_load_loses_nothing)
{
    snprintf(C.srv.dir, sizeof C.srv.dir, "/tmp/orderd-crash-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(C.srv.dir));
    snprintf(C.db, sizeof C.db, "%s/orderd.db", C.srv.dir);
    server_start("normal");
    /* Copies: ih_release() frees what the harness hands out. */
    char *admin = strdup(ih_login(&C.srv, IH_ADMIN_EMAIL, IH_ADMIN_PASSWORD));
    ck_assert_ptr_nonnull(admin);
    char *product = strdup(make_product(admin));
    ck_assert_ptr_nonnull(product);
    make_customers();
    for (int i = 0; i < N_CUSTOMERS; i++) {
        clients[i].product = product;
        ck_assert_int_eq(pthread_create(&clients[i].tid, NULL, client_main, &clients[i]), 0);
    }

    /* Kill at random moments a few hundred ms apart; the second half of the
     * starts run with durability "full". Before the last restart every
     * queued order message is dropped: the sweeper must rescue the rest. */
    unsigned seed = (unsigned)ih_monotonic_ms();
    int64_t stuck = 0, dropped = 0, pending_checked = 0;
    for (int k = 0; k < N_KILLS; k++) {
        pause_ms(250 + (int)(rand_r(&seed) % 400));
        if (k == N_KILLS - 1)
            pile_up_orders(admin);
        server_kill();
        pending_checked += assert_no_half_written_orders();
        if (k == N_KILLS - 1)
            stuck = drop_order_messages(&dropped);
        server_start(k + 1 >= N_KILLS / 2 ? "full" : "normal");
    }
    pause_ms(500); /* a few orders on the last process too */
    atomic_store(&C.stop, 1);
    for (int i = 0; i < N_CUSTOMERS; i++)
        pthread_join(clients[i].tid, NULL);

    listed l = {0};
    int64_t recovery_ms = wait_settled(admin, &l);

    size_t n_seen = 0, n_4xx = 0, n_unanswered = 0;
    seen *saw = collect_seen(&n_seen, &n_4xx, &n_unanswered);
    ck_assert_msg(n_unanswered == 0, "%zu keys never got an answer", n_unanswered);
    ck_assert_msg(n_seen > 0, "no order was accepted");

    /* Each id once (no two keys share an order) and the admin list holds
     * exactly the ids the clients saw: none lost, no phantom. */
    for (size_t i = 1; i < n_seen; i++)
        ck_assert_msg(strcmp(saw[i - 1].id, saw[i].id) != 0, "keys %s and %s share order %s",
                      saw[i - 1].key, saw[i].key, saw[i].id);
    ck_assert_msg(l.n == n_seen, "admin lists %zu orders, clients saw %zu", l.n, n_seen);
    for (size_t i = 0; i < n_seen; i++) {
        ck_assert_msg(strcmp(l.rows[i].id, saw[i].id) == 0, "listed %s, client saw %s",
                      l.rows[i].id, saw[i].id);
        /* ... holding what its client asked for */
        ck_assert_msg(l.rows[i].units == saw[i].qty, "order %s: %lld units, key %s asked %d",
                      l.rows[i].id, (long long)l.rows[i].units, saw[i].key, saw[i].qty);
    }

    /* Stock conserved: only COMPLETED orders hold units, each once. */
    int64_t final_stock = stock_of(admin, product);
    ck_assert_int_ge(final_stock, 0);
    ck_assert_msg(INITIAL_STOCK - final_stock == l.completed_units,
                  "stock %d -> %lld, but COMPLETED orders hold %lld units", INITIAL_STOCK,
                  (long long)final_stock, (long long)l.completed_units);

    assert_replays();

    /* Every order stuck at the last kill lost its message: each needed the
     * last process's sweeper. */
    int requeued_last = count_in_logs("; re-queued", C.starts);
    ck_assert_int_gt(stuck, 0);
    ck_assert_msg(requeued_last >= stuck, "%lld orders were stuck, sweeper re-queued %d",
                  (long long)stuck, requeued_last);
    ck_assert_msg(recovery_ms < SETTLE_TIMEOUT_MS, "recovery took %lld ms",
                  (long long)recovery_ms);
    int sanitizer = count_in_logs("Sanitizer", 1) + count_in_logs("runtime error:", 1);
    ck_assert_msg(sanitizer == 0, "%d sanitizer reports in the logs of %s", sanitizer, C.srv.dir);

    long retries = 0;
    for (int i = 0; i < N_CUSTOMERS; i++)
        retries += clients[i].retries;
    fprintf(stderr,
            "integ_crash: %d kills, %zu orders accepted (%zu completed, %lld units), %zu keys "
            "answered 4xx, %ld client retries; %lld PENDING orders found queued after the kills; "
            "at the last kill %lld orders were not terminal "
            "and %lld messages were dropped, the sweeper re-queued %d (all processes: %d); all "
            "terminal %lld ms after the last restart (bound: sweep_after_ms %d + "
            "sweep_interval_ms %d + pipeline)\n",
            N_KILLS, n_seen, l.completed, (long long)l.completed_units, n_4xx, retries,
            (long long)pending_checked, (long long)stuck, (long long)dropped, requeued_last, count_in_logs("; re-queued", 1),
            (long long)recovery_ms, SWEEP_AFTER_MS, SWEEP_INTERVAL_MS);

    free(saw);
    free(l.rows);
    for (int i = 0; i < N_CUSTOMERS; i++) {
        curl_easy_cleanup(clients[i].curl);
        free(clients[i].keys);
        free(clients[i].token);
    }
    free(admin);
    free(product);
    ih_release();
    ck_assert_int_eq(ih_server_stop(&C.srv), 0);
    remove_files();
    rmdir(C.srv.dir);
}
END_TEST

static Suite *crash_suite(void)
{
    Suite *s = suite_create("integ_crash");
    TCase *tc = tcase_create("crash");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_kill9_under_load_loses_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ih_run_suite(crash_suite());
}
