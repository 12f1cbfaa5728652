/*
 * tests/integration/test_two_instances.c - orderd scaled out, and orderd
 * when its AWS backend goes away (needs ORDERD_TEST_BACKEND=aws and the
 * emulators of tests/aws; registered there).
 *
 * Case "two_instances": two orderd processes share one table prefix and one
 * queue prefix, each with its own worker pool. Eight client threads send
 * one-unit orders through both (alternating per order) against a stock of
 * 30, cancel some through the other instance and replay some idempotency
 * keys through the other instance. Once the admin sees nothing PENDING or
 * PROCESSING and the shared queue is empty: exactly 30 COMPLETED, stock 0,
 * every order's history holds exactly one verdict, and a key races across
 * both instances into a single order.
 *
 * Case "outage": a third orderd on a private pair of emulators this test
 * starts itself (other ports, own run dir, so the shared fixture is never
 * touched). DynamoDB Local is frozen with SIGSTOP rather than killed: it
 * runs -inMemory, so a restart would come back without tables and nothing
 * could "resume". Frozen, every request must time out inside the client
 * budget and answer 503 `unavailable`; /health must answer 503 naming the
 * storage; after SIGCONT service resumes without a restart. Then the
 * private fauxqs is stopped for good and /health must name the queue.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "orders_helpers.h"

#define THREADS 8
#define ORDERS 200
#define STOCK 30
#define DRAIN_MS 300000
/* SQS rounds every timer up to whole seconds: a 1 s long poll and backoffs
 * of at least 1 s are what these values become there. */
#define WORKER                                                                                    \
    "threads = 4; poll_wait_ms = 1000; backoff_base_ms = 200; backoff_max_ms = 2000;"             \
    " visibility_ms = 20000; autostart = true;"

/* ---- two instances ---------------------------------------------------------- */

static ih_server inst[2];
static char backends[1024];

static void start_both(void)
{
    char prefix[64];
    /* On memory the two would share nothing: the test would prove nothing. */
    ck_assert_msg(ih_backend_is_aws(), "run with ORDERD_TEST_BACKEND=aws (ctest -L aws)");
    ih_unique_prefix(prefix, sizeof prefix);
    ih_backend_groups(backends, sizeof backends, prefix);
    /* One after the other: the first creates the tables and queues, the
     * second finds them (what `orderd --provision` then many starts does). */
    oh_server_start_with(&inst[0], WORKER, backends);
    oh_server_start_with(&inst[1], WORKER, backends);
}

static void stop_both(void)
{
    for (int i = 0; i < 2; i++)
        if (inst[i].pid > 0)
            ih_server_stop(&inst[i]);
}

static void release(void)
{
    ih_release();
}

typedef struct order_rec {
    char key[80];
    char id[64];
    long create_status;
    long replay_status;   /* the same keyed request through the other instance */
    int replay_same;      /* ...answered with the same order id, marked replayed */
    long cancel_status;   /* 0: the test does not cancel it */
} order_rec;

typedef struct client_arg {
    oh_client via[2];     /* one keep-alive client per instance */
    const char *token, *product;
    order_rec *orders;    /* this thread handles orders[first], [first + THREADS], ... */
    size_t first;
    pthread_barrier_t *start;
} client_arg;

static void create_keyed(client_arg *a, oh_client *c, order_rec *o)
{
    char body[160];
    oh_answer ans;
    snprintf(body, sizeof body, "{\"items\":[{\"productId\":\"%s\",\"quantity\":1}]}", a->product);
    if (oh_call(c, "POST", "/api/orders", a->token, o->key, body, &ans) == 0) {
        o->create_status = ans.status;
        const char *id = oh_data_str(&ans, "id");
        snprintf(o->id, sizeof o->id, "%s", id ? id : "");
    }
    oh_answer_free(&ans);
}

static void replay_keyed(client_arg *a, oh_client *c, order_rec *o)
{
    char body[160];
    oh_answer ans;
    snprintf(body, sizeof body, "{\"items\":[{\"productId\":\"%s\",\"quantity\":1}]}", a->product);
    if (oh_call(c, "POST", "/api/orders", a->token, o->key, body, &ans) == 0) {
        const char *id = oh_data_str(&ans, "id");
        o->replay_status = ans.status;
        o->replay_same = ans.replayed && id && strcmp(id, o->id) == 0;
    }
    oh_answer_free(&ans);
}

static void cancel(oh_client *c, const char *token, order_rec *o)
{
    char path[128];
    oh_answer ans;
    snprintf(path, sizeof path, "/api/orders/%s", o->id);
    if (oh_call(c, "DELETE", path, token, NULL, NULL, &ans) == 0)
        o->cancel_status = ans.status;
    oh_answer_free(&ans);
}

/* Order i goes to instance i % 2; every 10th is replayed and every 5th
 * (offset 1) cancelled through the other one, racing both workers. */
static void *client_main(void *arg)
{
    client_arg *a = arg;
    pthread_barrier_wait(a->start);
    for (size_t i = a->first; i < ORDERS; i += THREADS) {
        order_rec *o = &a->orders[i];
        oh_client *here = &a->via[i % 2], *other = &a->via[(i + 1) % 2];
        create_keyed(a, here, o);
        if (o->create_status != 201)
            continue;
        if (i % 10 == 0)
            replay_keyed(a, other, o);
        if (i % 5 == 1)
            cancel(other, a->token, o);
    }
    return NULL;
}

static void run_clients(order_rec *orders, const char *const *tokens, const char *product)
{
    client_arg args[THREADS];
    pthread_t threads[THREADS];
    pthread_barrier_t start;
    ck_assert_int_eq(pthread_barrier_init(&start, NULL, THREADS), 0);
    for (int t = 0; t < THREADS; t++) {
        args[t] = (client_arg){ .token = tokens[t], .product = product, .orders = orders,
                                .first = (size_t)t, .start = &start };
        for (int k = 0; k < 2; k++)
            ck_assert_int_eq(oh_client_init(&args[t].via[k], inst[k].port), 0);
        ck_assert_int_eq(pthread_create(&threads[t], NULL, client_main, &args[t]), 0);
    }
    int bad = 0;
    const char *first_bad = NULL;
    for (int t = 0; t < THREADS; t++) {
        ck_assert_int_eq(pthread_join(threads[t], NULL), 0);
        for (int k = 0; k < 2; k++) {
            if (args[t].via[k].bad && !first_bad)
                first_bad = ih_strdup(args[t].via[k].first_bad);
            bad += args[t].via[k].bad;
            oh_client_close(&args[t].via[k]);
        }
    }
    pthread_barrier_destroy(&start);
    ck_assert_msg(bad == 0, "%d answers broke the contract, first: %s", bad, first_bad);
}

/* Entries of the order's history with this status. */
static int history_count(const ih_response *r, const char *status)
{
    struct json_object *history = ih_json(r, "data.history");
    ck_assert_msg(json_object_is_type(history, json_type_array), "no history: %.300s", r->body);
    int n = 0;
    for (size_t i = 0; i < json_object_array_length(history); i++) {
        struct json_object *v = NULL;
        if (json_object_object_get_ex(json_object_array_get_idx(history, i), "status", &v) &&
            strcmp(json_object_get_string(v), status) == 0)
            n++;
    }
    return n;
}

/* The final state of order i, read through the instance that did not
 * create it; checks it was processed once in effect. Returns its status. */
static const char *check_final(const order_rec *o, size_t i, const char *admin)
{
    ih_response *r = ih_get(&inst[(i + 1) % 2], ih_printf("/api/orders/%s", o->id), admin);
    ck_assert_msg(r->status == 200, "order %s: %ld %s", o->id, r->status, r->body);
    const char *status = ih_str(r, "data.status");
    ck_assert_ptr_nonnull(status);
    int completed = history_count(r, "COMPLETED"), failed = history_count(r, "FAILED");
    if (o->cancel_status == 200) {
        ck_assert_msg(strcmp(status, "CANCELLED") == 0, "cancelled %zu ended %s", i, status);
        ck_assert_msg(completed + failed == 0, "cancelled %zu has a verdict: %.400s", i, r->body);
    } else if (strcmp(status, "COMPLETED") == 0 || strcmp(status, "FAILED") == 0) {
        ck_assert_msg(completed + failed == 1, "order %zu: %d COMPLETED + %d FAILED entries: %.600s",
                      i, completed, failed, r->body);
        ck_assert_int_eq(history_count(r, status), 1);
        if (failed)
            ck_assert_str_eq(oh_history_reason(r, "FAILED"), "insufficient_stock");
    } else {
        ck_abort_msg("order %zu ended %s (cancel %ld)", i, status, o->cancel_status);
    }
    return status;
}

static int64_t worker_counter(ih_server *s, const char *admin, const char *name)
{
    return oh_int(ih_get(s, "/api/orders/worker/status", admin), ih_printf("data.%s", name));
}

START_TEST(orders_through_both_processed_once)
{
    const char *admin = oh_admin(&inst[0]);
    const char *product = oh_product(&inst[0], admin, "Shared stock", "4.50", STOCK);
    const char *tokens[THREADS];
    for (int t = 0; t < THREADS; t++) /* registered through either, logged in through the other */
        tokens[t] = oh_customer(&inst[t % 2], ih_printf("two%d@test.local", t));

    static order_rec orders[ORDERS];
    memset(orders, 0, sizeof orders);
    for (size_t i = 0; i < ORDERS; i++)
        snprintf(orders[i].key, sizeof orders[i].key, "two-%zu", i);

    int64_t t0 = ih_monotonic_ms();
    run_clients(orders, tokens, product);
    int64_t t_sent = ih_monotonic_ms();
    oh_wait_drained(&inst[0], admin, DRAIN_MS);
    oh_wait_drained(&inst[1], admin, DRAIN_MS);
    int64_t t_drained = ih_monotonic_ms();

    size_t completed = 0, failed = 0, cancelled = 0;
    for (size_t i = 0; i < ORDERS; i++) {
        const order_rec *o = &orders[i];
        ck_assert_msg(o->create_status == 201 && o->id[0], "order %zu: create answered %ld", i,
                      o->create_status);
        if (i % 10 == 0)
            ck_assert_msg(o->replay_status == 200 && o->replay_same,
                          "key %s through the other instance: %ld, same order %d", o->key,
                          o->replay_status, o->replay_same);
        if (i % 5 == 1)
            ck_assert_msg(o->cancel_status == 200 || o->cancel_status == 409,
                          "cancel %zu answered %ld", i, o->cancel_status);
        const char *status = check_final(o, i, admin);
        completed += strcmp(status, "COMPLETED") == 0;
        failed += strcmp(status, "FAILED") == 0;
        cancelled += strcmp(status, "CANCELLED") == 0;
    }
    ck_assert_uint_eq(completed, STOCK);
    ck_assert_uint_eq(completed + failed + cancelled, ORDERS);
    int64_t left = oh_stock(&inst[1], admin, product);
    ck_assert_int_eq(left, 0);
    ck_assert_int_eq(left + (int64_t)completed, STOCK);
    ck_assert_uint_eq(oh_count_status(&inst[1], admin, "COMPLETED"), STOCK);

    /* Both pools took part (a message goes to whichever polls first). */
    int64_t by_a = worker_counter(&inst[0], admin, "processed");
    int64_t by_b = worker_counter(&inst[1], admin, "processed");
    ck_assert_msg(by_a > 0 && by_b > 0, "processed by A %lld, by B %lld", (long long)by_a,
                  (long long)by_b);
    fprintf(stderr,
            "two instances: %d orders from %d threads, %zu completed, %zu failed, %zu cancelled;"
            " sent in %lld ms, drained after %lld ms more; worker A processed %lld, B %lld\n",
            ORDERS, THREADS, completed, failed, cancelled, (long long)(t_sent - t0),
            (long long)(t_drained - t_sent), (long long)by_a, (long long)by_b);
}
END_TEST

/* ---- one idempotency key raced through both instances ---- */

enum { RACERS = 8 };

typedef struct racer {
    oh_client client;
    const char *token, *body;
    pthread_barrier_t *start;
    long status;
    int replayed;
    char id[64];
} racer;

static void *racer_main(void *arg)
{
    racer *r = arg;
    oh_answer ans;
    pthread_barrier_wait(r->start);
    if (oh_call(&r->client, "POST", "/api/orders", r->token, "shared-key-1", r->body, &ans) == 0) {
        r->status = ans.status;
        r->replayed = ans.replayed;
        const char *id = oh_data_str(&ans, "id");
        snprintf(r->id, sizeof r->id, "%s", id ? id : "");
    }
    oh_answer_free(&ans);
    return NULL;
}

START_TEST(idempotency_key_shared_across_instances)
{
    const char *admin = oh_admin(&inst[1]);
    const char *product = oh_product(&inst[1], admin, "Keyed", "2", 100);
    const char *token = oh_customer(&inst[0], "keyed@test.local");
    const char *body = ih_printf("{\"items\":[{\"productId\":\"%s\",\"quantity\":1}]}", product);

    racer r[RACERS];
    pthread_t threads[RACERS];
    pthread_barrier_t start;
    ck_assert_int_eq(pthread_barrier_init(&start, NULL, RACERS), 0);
    for (int i = 0; i < RACERS; i++) {
        r[i] = (racer){ .token = token, .body = body, .start = &start };
        ck_assert_int_eq(oh_client_init(&r[i].client, inst[i % 2].port), 0);
        ck_assert_int_eq(pthread_create(&threads[i], NULL, racer_main, &r[i]), 0);
    }
    for (int i = 0; i < RACERS; i++)
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
    pthread_barrier_destroy(&start);

    int created = 0;
    for (int i = 0; i < RACERS; i++) {
        oh_client_close(&r[i].client);
        ck_assert_msg(r[i].client.bad == 0, "%s", r[i].client.first_bad);
        ck_assert_msg(r[i].status == 201 || (r[i].status == 200 && r[i].replayed),
                      "racer %d (instance %d) -> %ld (replayed %d)", i, i % 2, r[i].status,
                      r[i].replayed);
        created += r[i].status == 201;
        ck_assert_str_eq(r[i].id, r[0].id);
    }
    ck_assert_int_eq(created, 1);

    /* Later, sequentially: A and B both replay it; a different body conflicts on both. */
    for (int k = 0; k < 2; k++) {
        const char *h[] = { ih_printf("Authorization: Bearer %s", token),
                            "Idempotency-Key: shared-key-1", "Content-Type: application/json",
                            NULL };
        ih_response *again = ih_request(&inst[k], "POST", "/api/orders", h, body, strlen(body));
        ck_assert_msg(again->status == 200, "%ld %s", again->status, again->body);
        ck_assert_str_eq(ih_header_value(again, "Idempotent-Replayed"), "true");
        ck_assert_str_eq(ih_str(again, "data.id"), r[0].id);
        const char *other = ih_printf("{\"items\":[{\"productId\":\"%s\",\"quantity\":2}]}",
                                      product);
        ih_assert_error(ih_request(&inst[k], "POST", "/api/orders", h, other, strlen(other)),
                        409, "conflict");
    }
    ck_assert_str_eq(ih_str(oh_wait_terminal(&inst[0], token, r[0].id, DRAIN_MS), "data.status"),
                     "COMPLETED");
    ck_assert_int_eq(oh_stock(&inst[0], token, product), 99);
}
END_TEST

/* ---- outage of a private emulator pair ------------------------------------- */

#define OUTAGE_BUDGET_MS 12000  /* (timeout_ms 1000 + backoff) x 2 attempts, plus slack */
#define RECOVER_MS 60000

static ih_server lone;
static pid_t ddb_pid;

static const char *env_or_fail(const char *name)
{
    const char *v = getenv(name);
    ck_assert_msg(v && *v, "%s is not set (run through ctest -L aws)", name);
    return v;
}

/* aws-emulators.sh <verb> [svc] on the private ports and run dir; the
 * script waits (bounded) until a started emulator answers. */
static int emulators(const char *verb, const char *svc)
{
    const char *script = env_or_fail("ORDERD_AWS_EMU_SCRIPT");
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setenv("AWS_EMU_RUN", getenv("ORDERD_OUTAGE_RUN"), 1);
        setenv("AWS_EMU_DDB_PORT", getenv("ORDERD_OUTAGE_DDB_PORT"), 1);
        setenv("AWS_EMU_SQS_PORT", getenv("ORDERD_OUTAGE_SQS_PORT"), 1);
        execl(script, script, verb, svc, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static pid_t read_ddb_pid(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/ddb.pid", env_or_fail("ORDERD_OUTAGE_RUN"));
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    long pid = 0;
    ck_assert_int_eq(fscanf(f, "%ld", &pid), 1);
    fclose(f);
    ck_assert_int_gt(pid, 1);
    return (pid_t)pid;
}

static void start_private(void)
{
    env_or_fail("ORDERD_OUTAGE_RUN");
    env_or_fail("ORDERD_OUTAGE_DDB_PORT");
    env_or_fail("ORDERD_OUTAGE_SQS_PORT");
    ck_assert_int_eq(emulators("start", "ddb"), 0);
    ck_assert_int_eq(emulators("start", "sqs"), 0);
    ddb_pid = read_ddb_pid();

    char prefix[64], groups[1024];
    ih_unique_prefix(prefix, sizeof prefix);
    /* Endpoints in the config win over the shared emulators' AWS_ENDPOINT_URL_*.
     * A short per-attempt timeout and one retry bound how long a request
     * may wait for a backend that does not answer. */
    int n = snprintf(groups, sizeof groups,
                     "storage: { backend = \"dynamodb\"; table_prefix = \"%s_\";"
                     " create_missing = true; endpoint = \"http://127.0.0.1:%s\";"
                     " timeout_ms = 1000; max_retries = 1; retry_base_ms = 50; };\n"
                     "queue: { backend = \"sqs\"; queue_prefix = \"%s-\"; create_missing = true;"
                     " endpoint = \"http://127.0.0.1:%s\"; timeout_ms = 1000; max_retries = 1;"
                     " retry_base_ms = 50; };\n",
                     prefix, getenv("ORDERD_OUTAGE_DDB_PORT"), prefix,
                     getenv("ORDERD_OUTAGE_SQS_PORT"));
    ck_assert(n > 0 && (size_t)n < sizeof groups);
    oh_server_start_with(&lone, WORKER, groups);
}

static void stop_private(void)
{
    if (ddb_pid > 0)
        kill(ddb_pid, SIGCONT); /* never leave a frozen JVM behind */
    if (lone.pid > 0)
        ih_server_stop(&lone);
    emulators("stop", "ddb");
    emulators("stop", "sqs");
}

/* A request that needs the storage: 503 unavailable, within the budget. */
static void assert_unavailable_in_time(const char *method, const char *path, const char *token,
                                       const char *body)
{
    int64_t t0 = ih_monotonic_ms();
    ih_response *r = body ? ih_send_json(&lone, method, path, token, body)
                          : ih_get(&lone, path, token);
    int64_t took = ih_monotonic_ms() - t0;
    ih_assert_error(r, 503, "unavailable");
    ck_assert_msg(took < OUTAGE_BUDGET_MS, "%s %s took %lld ms", method, path, (long long)took);
    fprintf(stderr, "outage: %s %s -> 503 unavailable in %lld ms\n", method, path,
            (long long)took);
}

/* GET /health over a raw socket, so the test sees the exact bytes of the
 * degraded answer (a 503 error envelope that also carries "data").
 * Returns the body (owned by the caller) and the status. */
static struct json_object *raw_health(int *status)
{
    static const char req[] = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "Connection: close\r\n\r\n";
    char buf[8192];
    ssize_t n = ih_raw(&lone, req, sizeof req - 1, 0, buf, sizeof buf, 15000);
    ck_assert_msg(n > 0, "/health: no answer");
    *status = ih_raw_status(buf);
    const char *body = strstr(buf, "\r\n\r\n");
    ck_assert_msg(body != NULL, "/health: no body: %s", buf);
    struct json_object *j = json_tokener_parse(body + 4);
    ck_assert_msg(j != NULL, "/health: not JSON: %s", body + 4);
    return j;
}

static const char *member(struct json_object *o, const char *a, const char *b)
{
    struct json_object *v = NULL;
    if (!json_object_object_get_ex(o, a, &v) || (b && !json_object_object_get_ex(v, b, &v)))
        return NULL;
    return json_object_get_string(v);
}

/* /health answers `status` and says which check failed ("ok" or not). */
static void assert_health(int status, int storage_ok, int queue_ok)
{
    int got = 0;
    struct json_object *j = raw_health(&got);
    struct json_object *data = NULL;
    json_object_object_get_ex(j, "data", &data);
    const char *text = json_object_to_json_string(j);
    const char *storage = member(data, "storage", NULL), *queue = member(data, "queue", NULL);
    const char *s = member(data, "checks", "storage"), *q = member(data, "checks", "queue");
    const char *error = member(j, "error", NULL);
    int envelope_ok = status == 200 ? error == NULL : error && strcmp(error, "unavailable") == 0;
    int ok = got == status && envelope_ok && storage && strcmp(storage, "dynamodb") == 0 && queue &&
             strcmp(queue, "sqs") == 0 && s && q && (strcmp(s, "ok") == 0) == storage_ok &&
             (strcmp(q, "ok") == 0) == queue_ok;
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", text);
    json_object_put(j);
    ck_assert_msg(ok, "/health %d (want %d, storage ok %d, queue ok %d): %s", got, status,
                  storage_ok, queue_ok, copy);
    fprintf(stderr, "outage: /health %d: %s\n", got, copy);
}

/* Poll /health until 200 or the deadline; returns how long it took. */
static int64_t wait_healthy(void)
{
    int64_t t0 = ih_monotonic_ms();
    for (;;) {
        int status = 0;
        json_object_put(raw_health(&status));
        if (status == 200)
            return ih_monotonic_ms() - t0;
        ck_assert_msg(ih_monotonic_ms() - t0 < RECOVER_MS, "not healthy after %d ms (%d)",
                      RECOVER_MS, status);
        oh_pause_ms(100);
    }
}

START_TEST(storage_down_answers_503_and_recovers)
{
    const char *admin = oh_admin(&lone);
    const char *product = oh_product(&lone, admin, "Outage", "1", 10);
    const char *token = oh_customer(&lone, "outage@test.local");
    assert_health(200, 1, 1);

    ck_assert_int_eq(kill(ddb_pid, SIGSTOP), 0); /* DynamoDB Local stops answering */
    assert_unavailable_in_time("GET", ih_printf("/api/products/%s", product), token, NULL);
    assert_unavailable_in_time("POST", "/api/orders", token,
                               ih_printf("{\"items\":[\"%s\"]}", product));
    assert_unavailable_in_time("POST", "/api/login", NULL,
                               "{\"email\":\"outage@test.local\",\"password\":\"x-password-1\"}");
    assert_health(503, 0, 1);
    ck_assert_msg(ih_server_alive(&lone), "orderd died during the outage");

    ck_assert_int_eq(kill(ddb_pid, SIGCONT), 0);
    int64_t took = wait_healthy();
    fprintf(stderr, "outage: healthy again %lld ms after SIGCONT\n", (long long)took);
    const char *id = oh_order(&lone, token, product, 2);
    ck_assert_str_eq(ih_str(oh_wait_terminal(&lone, token, id, RECOVER_MS), "data.status"),
                     "COMPLETED");
    ck_assert_int_eq(oh_stock(&lone, token, product), 8);

    /* The queue's emulator gone for good: /health names the queue. */
    ck_assert_int_eq(emulators("stop", "sqs"), 0);
    assert_health(503, 1, 0);
    ck_assert_msg(ih_server_alive(&lone), "orderd died when the queue went away");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("integ_two_instances");
    TCase *two = tcase_create("two_instances");
    tcase_set_timeout(two, 600);
    tcase_add_unchecked_fixture(two, start_both, stop_both);
    tcase_add_checked_fixture(two, NULL, release);
    tcase_add_test(two, orders_through_both_processed_once);
    tcase_add_test(two, idempotency_key_shared_across_instances);
    suite_add_tcase(s, two);

    TCase *outage = tcase_create("outage");
    tcase_set_timeout(outage, 600);
    tcase_add_unchecked_fixture(outage, start_private, stop_private);
    tcase_add_checked_fixture(outage, NULL, release);
    tcase_add_test(outage, storage_down_answers_503_and_recovers);
    suite_add_tcase(s, outage);
    return ih_run_suite(s);
}
