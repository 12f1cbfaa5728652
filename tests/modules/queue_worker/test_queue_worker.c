/*
 * test_queue_worker - the queue_worker module against the mock host, the
 * real storage_memory and queue_memory backends, the test-only step_flaky
 * module and fake steps defined here (plain od_step structs).
 *
 * Every wait polls a condition with a deadline; no test sleeps "long enough".
 */
#include <check.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mock_host.h"

#define MAX_ORDERS 512
#define MAX_EVENTS 4096
#define WAIT_MS 20000

/* ---- recorder: what the fake steps saw ---------------------------------- */

typedef struct event {
    char kind; /* 'r' run, 'c' compensate */
    char step; /* fake step letter */
    char order[48];
    uint32_t attempt;
    int64_t at_ms;
} event;

/* Fake step policies. */
enum { FAKE_CONTINUE, FAKE_BY_CUSTOMER, FAKE_GATE };

typedef struct fake_step {
    char letter;
    int policy;
} fake_step;

static struct {
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t cond;
    event ev[MAX_EVENTS];
    size_t n;
    int gate_open;
    int in_gate; /* runs that reached the gate */
} R = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void record(char kind, char step, const od_step_ctx *ctx)
{
    pthread_mutex_lock(&R.lock);
    if (R.n < MAX_EVENTS) {
        event *e = &R.ev[R.n++];
        e->kind = kind;
        e->step = step;
        snprintf(e->order, sizeof e->order, "%s", ctx->order_id);
        e->attempt = ctx->attempt;
        e->at_ms = now_ms();
    }
    pthread_mutex_unlock(&R.lock);
}

static void gate_pass(void)
{
    pthread_mutex_lock(&R.lock);
    R.in_gate++;
    pthread_cond_broadcast(&R.cond);
    while (!R.gate_open)
        pthread_cond_wait(&R.cond, &R.lock);
    pthread_mutex_unlock(&R.lock);
}

static void gate_open(void)
{
    pthread_mutex_lock(&R.lock);
    R.gate_open = 1;
    pthread_cond_broadcast(&R.cond);
    pthread_mutex_unlock(&R.lock);
}

static int fake_run(void *arg, od_step_ctx *ctx)
{
    const fake_step *f = arg;
    record('r', f->letter, ctx);
    if (f->policy == FAKE_GATE)
        gate_pass();
    if (f->policy != FAKE_BY_CUSTOMER)
        return OD_STEP_CONTINUE;
    if (strstr(ctx->order_json, "\"customerId\":\"fail\"")) {
        snprintf(ctx->reason, sizeof ctx->reason, "customer_says_fail");
        return OD_STEP_FAIL;
    }
    if (strstr(ctx->order_json, "\"customerId\":\"retry\""))
        return OD_STEP_RETRY;
    if (strstr(ctx->order_json, "\"customerId\":\"retry1\"") && ctx->attempt == 1)
        return OD_STEP_RETRY;
    return OD_STEP_CONTINUE;
}

static void fake_compensate(void *arg, const od_step_ctx *ctx)
{
    const fake_step *f = arg;
    record('c', f->letter, ctx);
}

static const od_step_ops fake_ops = {sizeof(od_step_ops), fake_run, fake_compensate};

static fake_step fake_a = {'A', FAKE_CONTINUE}, fake_b = {'B', FAKE_CONTINUE},
                 fake_d = {'D', FAKE_CONTINUE}, fake_cust = {'X', FAKE_BY_CUSTOMER},
                 fake_gate = {'G', FAKE_GATE};
static const od_step step_a = {&fake_ops, &fake_a, "fake_a"};
static const od_step step_b = {&fake_ops, &fake_b, "fake_b"};
static const od_step step_d = {&fake_ops, &fake_d, "fake_d"};
static const od_step step_cust = {&fake_ops, &fake_cust, "fake_cust"};
static const od_step step_gate = {&fake_ops, &fake_gate, "fake_gate"};

/* Events of one kind+step, optionally for one order. */
static size_t count_events(char kind, char step, const char *order)
{
    size_t n = 0;
    pthread_mutex_lock(&R.lock);
    for (size_t i = 0; i < R.n; i++)
        if (R.ev[i].kind == kind && R.ev[i].step == step &&
            (!order || strcmp(R.ev[i].order, order) == 0))
            n++;
    pthread_mutex_unlock(&R.lock);
    return n;
}

/* ---- environment: backends, worker, flaky step --------------------------- */

typedef struct loaded {
    const od_module_desc *desc;
    od_module *mod;
    void *self;
} loaded;

static struct {
    loaded storage, queue, flaky, worker;
    od_storage st;
    od_queue q;
    od_step flaky_step;
    const od_step *pipeline[8];
    size_t n_pipeline;
    char ids[MAX_ORDERS][48];
    size_t n_ids;
} E;

static void load(loaded *l, const char *path, const char *group)
{
    char err[512] = "";
    l->desc = mock_load_module(path, err, sizeof err);
    ck_assert_msg(l->desc != NULL, "%s: %s", path, err);
    l->mod = mock_module_new(group);
}

static void init_loaded(loaded *l)
{
    od_status st = l->desc->init(mock_host_api(), l->mod, &l->self);
    ck_assert_msg(st == OD_OK, "%s init: %s", l->desc->name, od_status_str(st));
}

/* Metrics live as long as the mock host, i.e. the process: with CK_FORK=no
 * (valgrind, gdb) earlier tests add to them, so tests read the change since
 * their own start. */
static const char *const watched[][2] = {
    {"orderd_worker_messages_total", "outcome=\"processed\""},
    {"orderd_worker_messages_total", "outcome=\"retried\""},
    {"orderd_worker_messages_total", "outcome=\"failed\""},
    {"orderd_worker_messages_total", "outcome=\"dead_lettered\""},
    {"orderd_orders_status_changes_total", "status=\"COMPLETED\""},
    {"step_flaky_runs_total", ""},
    {"step_flaky_compensations_total", ""},
    {"orderd_sweeper_requeued_total", ""},
    {"orderd_sweeper_sweeps_total", ""},
};
#define N_WATCHED (sizeof watched / sizeof watched[0])
static int64_t baseline[N_WATCHED];

static int64_t metric_delta(const char *name, const char *labels)
{
    for (size_t i = 0; i < N_WATCHED; i++)
        if (strcmp(watched[i][0], name) == 0 && strcmp(watched[i][1], labels) == 0)
            return mock_metric_value(name, labels) - baseline[i];
    ck_abort_msg("metric %s{%s} is not watched", name, labels);
    return 0;
}

static void backends_up(void)
{
    memset(&E, 0, sizeof E);
    mock_set_now_ms(0); /* real time unless a test fixes it */
    for (size_t i = 0; i < N_WATCHED; i++)
        baseline[i] = mock_metric_value(watched[i][0], watched[i][1]);
    mock_log_reset();
    pthread_mutex_lock(&R.lock);
    R.n = 0;
    R.gate_open = 0;
    R.in_gate = 0;
    pthread_mutex_unlock(&R.lock);
    load(&E.storage, MODULE_DIR "/storage_memory.so", "storage");
    init_loaded(&E.storage);
    load(&E.queue, MODULE_DIR "/queue_memory.so", "queue");
    init_loaded(&E.queue);
    E.st = (od_storage){E.storage.desc->ops, E.storage.self};
    E.q = (od_queue){E.queue.desc->ops, E.queue.self};
    mock_set_storage(&E.st);
    mock_set_queue(&E.q);
    static const od_index_def idx[] = {{"customer", 0}, {"status", 0}};
    od_table_def orders = {sizeof orders, "orders", idx, 2};
    ck_assert_int_eq(E.st.ops->define_table(E.st.self, &orders), OD_OK);
}

/* step_flaky with verdict/bad_attempts/reason; appended to the pipeline. */
static void flaky_up(const char *verdict, int64_t bad_attempts, const char *reason)
{
    load(&E.flaky, STEP_FLAKY_PATH, "step_flaky");
    mock_config_set_string(E.flaky.mod, "verdict", verdict);
    mock_config_set_int(E.flaky.mod, "bad_attempts", bad_attempts);
    mock_config_set_string(E.flaky.mod, "reason", reason);
    init_loaded(&E.flaky);
    E.flaky_step = (od_step){E.flaky.desc->ops, E.flaky.self, "step_flaky"};
    E.pipeline[E.n_pipeline++] = &E.flaky_step;
}

static void pipeline_add(const od_step *s) { E.pipeline[E.n_pipeline++] = s; }

/* Key/value config for the worker: {"threads", 2}, ... ; autostart apart. */
typedef struct kvi {
    const char *key;
    int64_t value;
} kvi;

static void worker_up(const kvi *cfg, size_t n, int autostart)
{
    mock_set_pipeline(E.pipeline, E.n_pipeline);
    load(&E.worker, MODULE_DIR "/queue_worker.so", "queue_worker");
    for (size_t i = 0; i < n; i++)
        mock_config_set_int(E.worker.mod, cfg[i].key, cfg[i].value);
    mock_config_set_bool(E.worker.mod, "autostart", autostart);
    init_loaded(&E.worker);
    ck_assert_int_eq(E.worker.desc->start(E.worker.self), OD_OK);
}

static void teardown(void)
{
    gate_open();
    if (E.worker.self) {
        E.worker.desc->stop(E.worker.self);
        E.worker.desc->destroy(E.worker.self);
    }
    if (E.flaky.self)
        E.flaky.desc->destroy(E.flaky.self);
    if (E.queue.self) {
        E.queue.desc->stop(E.queue.self);
        E.queue.desc->destroy(E.queue.self);
    }
    if (E.storage.self)
        E.storage.desc->destroy(E.storage.self);
    loaded *all[] = {&E.worker, &E.flaky, &E.queue, &E.storage};
    for (size_t i = 0; i < 4; i++)
        if (all[i]->mod)
            mock_module_free(all[i]->mod);
    mock_routes_reset();
}

/* ---- orders and messages -------------------------------------------------- */

static void put_order(const char *id, const char *customer, const char *status)
{
    char body[1024];
    int n = snprintf(body, sizeof body,
                     "{\"id\":\"%s\",\"customerId\":\"%s\",\"priority\":\"normal\",\"items\":[],"
                     "\"totalCents\":0,\"status\":\"%s\",\"reserved\":false,"
                     "\"history\":[{\"status\":\"%s\",\"at\":\"2026-11-26T10:00:00.000Z\"}],"
                     "\"attempts\":0,\"createdAt\":\"2026-11-26T10:00:00.000Z\","
                     "\"updatedAt\":\"2026-11-26T10:00:00.000Z\"}",
                     id, customer, status, status);
    od_index_value idx[] = {{"customer", customer}, {"status", status}};
    ck_assert_int_eq(E.st.ops->put(E.st.self, "orders", id, body, (size_t)n, idx, 2,
                                   OD_PUT_IF_ABSENT, 0, NULL),
                     OD_OK);
}

static void send_raw(uint32_t lane, const char *body)
{
    char *id = NULL;
    ck_assert_int_eq(E.q.ops->send(E.q.self, lane, body, strlen(body), 0, &id), OD_OK);
    free(id);
}

/* A PENDING order and its message; remembered in E.ids. */
static void enqueue_order(const char *id, const char *customer, uint32_t lane)
{
    put_order(id, customer, "PENDING");
    char body[128];
    snprintf(body, sizeof body, "{\"orderId\":\"%s\"}", id);
    send_raw(lane, body);
    snprintf(E.ids[E.n_ids++], sizeof E.ids[0], "%s", id);
}

/* The stored order, parsed (caller puts), or NULL. */
static json_object *order_get(const char *id)
{
    od_doc d = {0};
    if (E.st.ops->get(E.st.self, "orders", id, &d) != OD_OK)
        return NULL;
    json_object *o = json_tokener_parse(d.body);
    od_doc_clear(mock_host_api(), &d);
    return o;
}

static const char *str_field(json_object *o, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

static int64_t int_field(json_object *o, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : -1;
}

static int order_has_status(const char *id, const char *status)
{
    json_object *o = order_get(id);
    int yes = o && strcmp(str_field(o, "status"), status) == 0;
    json_object_put(o);
    return yes;
}

/* History entries with this status; *reason gets the last one's reason. */
static int history_count(const char *id, const char *status, char *reason, size_t len)
{
    json_object *o = order_get(id), *h = NULL;
    int n = 0;
    if (o && json_object_object_get_ex(o, "history", &h))
        for (size_t i = 0; i < json_object_array_length(h); i++) {
            json_object *e = json_object_array_get_idx(h, i);
            if (strcmp(str_field(e, "status"), status) != 0)
                continue;
            n++;
            if (reason)
                snprintf(reason, len, "%s", str_field(e, "reason") ? str_field(e, "reason") : "");
        }
    json_object_put(o);
    return n;
}

static size_t orders_with_status(const char *status)
{
    size_t n = 0;
    for (size_t i = 0; i < E.n_ids; i++)
        n += (size_t)order_has_status(E.ids[i], status);
    return n;
}

static int64_t lane_depth(uint32_t lane, int64_t *in_flight)
{
    int64_t visible = 0, flight = 0;
    ck_assert_int_eq(E.q.ops->depth(E.q.self, lane, &visible, &flight), OD_OK);
    if (in_flight)
        *in_flight = flight;
    return visible;
}

/* ---- polling ------------------------------------------------------------ */

typedef int (*pred_fn)(const void *arg);

static int wait_for(pred_fn pred, const void *arg, int64_t timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        if (pred(arg))
            return 1;
        if (now_ms() > deadline)
            return 0;
        struct timespec tick = {0, 2 * 1000 * 1000};
        nanosleep(&tick, NULL);
    }
}

typedef struct status_goal {
    const char *status;
    size_t n;
} status_goal;

static int reached(const void *arg)
{
    const status_goal *g = arg;
    return orders_with_status(g->status) >= g->n;
}

static void wait_orders(const char *status, size_t n)
{
    status_goal g = {status, n};
    ck_assert_msg(wait_for(reached, &g, WAIT_MS), "only %zu of %zu orders reached %s",
                  orders_with_status(status), n, status);
}

static int gate_has(const void *arg)
{
    pthread_mutex_lock(&R.lock);
    int n = R.in_gate;
    pthread_mutex_unlock(&R.lock);
    return n >= *(const int *)arg;
}

static int log_has(const void *arg) { return mock_log_contains(arg); }

/* ---- routes ------------------------------------------------------------- */

/* Call a worker route as an admin; returns the reply's "data" (caller puts). */
static json_object *call_route(const char *method, const char *path, int *status)
{
    uint32_t access = 0;
    od_handler_fn fn = mock_route(method, path, &access);
    ck_assert_msg(fn != NULL, "%s %s not registered", method, path);
    ck_assert_uint_eq(access, OD_ACCESS_ADMIN);
    od_request *req = mock_request_new(method, path);
    mock_request_principal(req, "admin-1", OD_ROLE_ADMIN);
    ck_assert_int_eq(fn(E.worker.self, req), OD_OK);
    ck_assert_int_eq(mock_reply_count(req), 1);
    *status = mock_reply_status(req);
    json_object *env = json_tokener_parse(mock_reply_body(req)), *data = NULL;
    ck_assert_ptr_nonnull(env);
    if (json_object_object_get_ex(env, "data", &data))
        json_object_get(data);
    json_object_put(env);
    mock_request_free(req);
    return data;
}

static int64_t metric(const char *outcome)
{
    char labels[64];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    return metric_delta("orderd_worker_messages_total", labels);
}

/* Join the workers: a message is acknowledged and counted after its order's
 * final write, so assertions on the queue or counters wait for this. */
static void quiesce(void)
{
    int status = 0;
    json_object_put(call_route("POST", "/api/orders/worker/stop", &status));
    ck_assert_int_eq(status, 200);
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(test_priority_first_without_starving_normal)
{
    backends_up();
    pipeline_add(&step_a);
    const kvi cfg[] = {{"threads", 1}, {"priority_weight", 2}, {"poll_wait_ms", 20}};
    worker_up(cfg, 3, 0);
    char id[16];
    for (int i = 0; i < 6; i++) {
        snprintf(id, sizeof id, "n%d", i);
        enqueue_order(id, "c1", OD_LANE_NORMAL);
        snprintf(id, sizeof id, "p%d", i);
        enqueue_order(id, "c1", OD_LANE_PRIORITY);
    }
    int status = 0;
    json_object_put(call_route("POST", "/api/orders/worker/start", &status));
    ck_assert_int_eq(status, 200);
    wait_orders("COMPLETED", 12);
    quiesce();

    char lanes[16] = "";
    pthread_mutex_lock(&R.lock);
    for (size_t i = 0; i < R.n && i < 12; i++)
        lanes[i] = R.ev[i].order[0] == 'p' ? 'P' : 'N';
    pthread_mutex_unlock(&R.lock);
    /* weight 2: two priority, one waiting normal, ... then the rest. */
    ck_assert_str_eq(lanes, "PPNPPNPPNNNN");
    ck_assert_int_eq(metric("processed"), 12);
    teardown();
}
END_TEST

START_TEST(test_retry_redelivered_after_backoff)
{
    backends_up();
    pipeline_add(&step_a);
    flaky_up("retry", 2, "not_yet");
    const kvi cfg[] = {{"threads", 1},          {"poll_wait_ms", 20},    {"backoff_base_ms", 200},
                       {"backoff_max_ms", 1000}, {"visibility_ms", 5000}, {"max_attempts", 5}};
    worker_up(cfg, 6, 1);
    uint64_t observed =
        mock_metric_observations("orderd_step_duration_seconds", "step=\"step_flaky\"");
    enqueue_order("o1", "c1", OD_LANE_NORMAL);
    wait_orders("COMPLETED", 1);
    quiesce();

    ck_assert_uint_eq(count_events('r', 'A', "o1"), 3);
    int64_t at[3];
    pthread_mutex_lock(&R.lock);
    for (uint32_t i = 0; i < 3; i++) {
        ck_assert_uint_eq(R.ev[i].attempt, i + 1); /* receive_count grows */
        at[i] = R.ev[i].at_ms;
    }
    pthread_mutex_unlock(&R.lock);
    /* backoff 200 then 400 ms, ±20%; the upper bound allows for the poll
     * and a loaded machine but stays far below visibility_ms (5 s). */
    int64_t d1 = at[1] - at[0], d2 = at[2] - at[1];
    ck_assert_msg(d1 >= 160 && d1 <= 240 + 700, "first redelivery after %lld ms", (long long)d1);
    ck_assert_msg(d2 >= 320 && d2 <= 480 + 700, "second redelivery after %lld ms", (long long)d2);

    json_object *o = order_get("o1");
    ck_assert_int_eq(int_field(o, "attempts"), 3);
    json_object_put(o);
    ck_assert_int_eq(history_count("o1", "PROCESSING", NULL, 0), 1);
    ck_assert_int_eq(history_count("o1", "COMPLETED", NULL, 0), 1);
    ck_assert_int_eq(metric("retried"), 2);
    ck_assert_int_eq(metric("processed"), 1);
    ck_assert_int_eq(metric_delta("step_flaky_runs_total", ""), 3);
    ck_assert_uint_eq(mock_metric_observations("orderd_step_duration_seconds",
                                               "step=\"step_flaky\"") - observed,
                      3);
    int64_t in_flight = 0;
    ck_assert_int_eq(lane_depth(OD_LANE_NORMAL, &in_flight), 0);
    ck_assert_int_eq(in_flight, 0);
    teardown();
}
END_TEST

static int dead_lettered_one(const void *arg)
{
    (void)arg;
    return metric("dead_lettered") == 1;
}

START_TEST(test_max_attempts_dead_letters_and_fails)
{
    backends_up();
    pipeline_add(&step_a);
    flaky_up("retry", 0, "still_broken");
    const kvi cfg[] = {{"threads", 2},
                       {"poll_wait_ms", 20},
                       {"backoff_base_ms", 10},
                       {"backoff_max_ms", 40},
                       {"max_attempts", 3}};
    worker_up(cfg, 5, 1);
    enqueue_order("o1", "c1", OD_LANE_NORMAL);
    wait_orders("FAILED", 1);
    ck_assert(wait_for(dead_lettered_one, NULL, WAIT_MS));
    quiesce();

    char reason[64] = "";
    ck_assert_int_eq(history_count("o1", "FAILED", reason, sizeof reason), 1);
    ck_assert_str_eq(reason, "max_attempts_exceeded");
    ck_assert_int_eq(metric_delta("step_flaky_runs_total", ""), 3);
    ck_assert_int_eq(metric_delta("step_flaky_compensations_total", ""), 0);
    ck_assert_uint_eq(count_events('c', 'A', "o1"), 1);
    ck_assert_int_eq(metric("retried"), 2);

    od_message m[2];
    size_t n = 0;
    ck_assert_int_eq(E.q.ops->receive(E.q.self, OD_LANE_DEAD, 2, 0, 1000, m, &n), OD_OK);
    ck_assert_uint_eq(n, 1);
    json_object *body = json_tokener_parse(m[0].body);
    ck_assert_str_eq(str_field(body, "orderId"), "o1");
    ck_assert_str_eq(str_field(body, "reason"), "max_attempts_exceeded");
    json_object_put(body);
    od_message_clear(mock_host_api(), &m[0]);
    int64_t in_flight = 0;
    ck_assert_int_eq(lane_depth(OD_LANE_NORMAL, &in_flight), 0);
    ck_assert_int_eq(in_flight, 0);
    teardown();
}
END_TEST

START_TEST(test_fail_compensates_in_reverse_once)
{
    backends_up();
    pipeline_add(&step_a);
    pipeline_add(&step_b);
    flaky_up("fail", 0, "insufficient_stock");
    pipeline_add(&step_d);
    const kvi cfg[] = {{"threads", 2}, {"poll_wait_ms", 20}};
    worker_up(cfg, 2, 1);
    enqueue_order("o1", "c1", OD_LANE_PRIORITY);
    wait_orders("FAILED", 1);
    quiesce();

    char seq[16] = "";
    pthread_mutex_lock(&R.lock);
    for (size_t i = 0; i < R.n && i < 7; i++) {
        seq[2 * i] = R.ev[i].kind;
        seq[2 * i + 1] = R.ev[i].step;
    }
    pthread_mutex_unlock(&R.lock);
    ck_assert_str_eq(seq, "rArBcBcA"); /* D never ran; B undone before A */
    ck_assert_int_eq(metric_delta("step_flaky_compensations_total", ""), 0);
    char reason[64] = "";
    ck_assert_int_eq(history_count("o1", "FAILED", reason, sizeof reason), 1);
    ck_assert_str_eq(reason, "insufficient_stock");
    ck_assert_int_eq(history_count("o1", "COMPLETED", NULL, 0), 0);
    int64_t in_flight = 0;
    ck_assert_int_eq(lane_depth(OD_LANE_PRIORITY, &in_flight), 0);
    ck_assert_int_eq(in_flight, 0);
    ck_assert_int_eq(lane_depth(OD_LANE_DEAD, NULL), 0);
    ck_assert_int_eq(metric("failed"), 1);
    teardown();
}
END_TEST

static void *call_stop(void *arg)
{
    int status = 0;
    json_object_put(call_route("POST", "/api/orders/worker/stop", &status));
    *(int *)arg = status;
    return NULL;
}

START_TEST(test_stop_while_processing_loses_nothing)
{
    backends_up();
    pipeline_add(&step_gate);
    const kvi cfg[] = {{"threads", 2}, {"poll_wait_ms", 20}, {"visibility_ms", 60000}};
    worker_up(cfg, 3, 1);
    char id[16];
    for (int i = 0; i < 6; i++) {
        snprintf(id, sizeof id, "o%d", i);
        enqueue_order(id, "c1", OD_LANE_NORMAL);
    }
    int two = 2;
    ck_assert(wait_for(gate_has, &two, WAIT_MS)); /* each worker holds one */

    pthread_t stopper;
    int stop_status = 0;
    pthread_create(&stopper, NULL, call_stop, &stop_status);
    ck_assert(wait_for(log_has, "stopping 2 worker threads", WAIT_MS));
    gate_open(); /* the held messages finish; nothing new is taken */
    pthread_join(stopper, NULL);
    ck_assert_int_eq(stop_status, 200);

    ck_assert_uint_eq(orders_with_status("COMPLETED"), 2);
    ck_assert_uint_eq(orders_with_status("PENDING"), 4);
    int64_t in_flight = -1;
    ck_assert_int_eq(lane_depth(OD_LANE_NORMAL, &in_flight), 4);
    ck_assert_int_eq(in_flight, 0);

    int status = 0;
    json_object *data = call_route("GET", "/api/orders/worker/status", &status);
    ck_assert_int_eq(json_object_get_boolean(json_object_object_get(data, "running")), 0);
    ck_assert_int_eq(int_field(data, "queueDepth"), 4);
    json_object_put(data);

    json_object_put(call_route("POST", "/api/orders/worker/start", &status));
    wait_orders("COMPLETED", 6);
    for (size_t i = 0; i < E.n_ids; i++) {
        ck_assert_uint_eq(count_events('r', 'G', E.ids[i]), 1);
        ck_assert_int_eq(history_count(E.ids[i], "COMPLETED", NULL, 0), 1);
    }
    teardown();
}
END_TEST

START_TEST(test_process_queue_counts)
{
    backends_up();
    pipeline_add(&step_cust);
    /* A long backoff keeps the retried message hidden for the whole test. */
    const kvi cfg[] = {{"threads", 2}, {"backoff_base_ms", 60000}, {"backoff_max_ms", 60000}};
    worker_up(cfg, 3, 0);
    enqueue_order("ok1", "c1", OD_LANE_NORMAL);
    enqueue_order("ok2", "c1", OD_LANE_PRIORITY);
    enqueue_order("ok3", "c1", OD_LANE_NORMAL);
    enqueue_order("bad", "fail", OD_LANE_NORMAL);
    enqueue_order("later", "retry", OD_LANE_NORMAL);
    put_order("gone", "c1", "COMPLETED"); /* a duplicate delivery */
    send_raw(OD_LANE_NORMAL, "{\"orderId\":\"gone\"}");
    send_raw(OD_LANE_NORMAL, "not json");
    send_raw(OD_LANE_NORMAL, "{\"orderId\":42}");
    send_raw(OD_LANE_NORMAL, "{\"orderId\":\"nosuchorder\"}");

    int status = 0;
    json_object *data = call_route("POST", "/api/orders/process-queue", &status);
    ck_assert_int_eq(status, 200);
    ck_assert_int_eq(int_field(data, "processed"), 4);
    ck_assert_int_eq(int_field(data, "failed"), 1);
    ck_assert_int_eq(int_field(data, "retried"), 1);
    ck_assert_int_eq(int_field(data, "deadLettered"), 3);
    ck_assert_int_eq(int_field(data, "total"), 9);
    json_object_put(data);

    ck_assert(order_has_status("ok1", "COMPLETED") && order_has_status("ok2", "COMPLETED"));
    ck_assert(order_has_status("bad", "FAILED"));
    ck_assert(order_has_status("later", "PROCESSING"));
    ck_assert_int_eq(lane_depth(OD_LANE_DEAD, NULL), 3);

    data = call_route("GET", "/api/orders/worker/status", &status);
    ck_assert_int_eq(status, 200);
    ck_assert_int_eq(json_object_get_boolean(json_object_object_get(data, "running")), 0);
    ck_assert_int_eq(int_field(data, "threads"), 0);
    ck_assert_int_eq(int_field(data, "processed"), 4);
    ck_assert_int_eq(int_field(data, "failed"), 1);
    ck_assert_int_eq(int_field(data, "retried"), 1);
    ck_assert_int_eq(int_field(data, "deadLettered"), 3);
    ck_assert_int_eq(int_field(data, "queueDepth"), 1); /* "later", waiting for its retry */
    json_object_put(data);

    /* Nothing visible now: an empty drain. */
    data = call_route("POST", "/api/orders/process-queue", &status);
    ck_assert_int_eq(int_field(data, "total"), 0);
    json_object_put(data);
    teardown();
}
END_TEST

START_TEST(test_cancelled_order_is_compensated_and_dropped)
{
    backends_up();
    pipeline_add(&step_a);
    pipeline_add(&step_b);
    const kvi cfg[] = {{"threads", 1}};
    worker_up(cfg, 1, 0);
    put_order("c1", "c1", "CANCELLED");
    send_raw(OD_LANE_NORMAL, "{\"orderId\":\"c1\"}");
    int status = 0;
    json_object *data = call_route("POST", "/api/orders/process-queue", &status);
    ck_assert_int_eq(int_field(data, "total"), 1);
    json_object_put(data);
    ck_assert_uint_eq(count_events('r', 'A', NULL) + count_events('r', 'B', NULL), 0);
    pthread_mutex_lock(&R.lock);
    ck_assert_uint_eq(R.n, 2);
    ck_assert(R.ev[0].kind == 'c' && R.ev[0].step == 'B');
    ck_assert(R.ev[1].kind == 'c' && R.ev[1].step == 'A');
    pthread_mutex_unlock(&R.lock);
    ck_assert(order_has_status("c1", "CANCELLED"));
    int64_t in_flight = 0;
    ck_assert_int_eq(lane_depth(OD_LANE_NORMAL, &in_flight), 0);
    ck_assert_int_eq(in_flight, 0);
    teardown();
}
END_TEST

START_TEST(test_many_threads_many_orders_once_each)
{
    backends_up();
    pipeline_add(&step_cust);
    const kvi cfg[] = {{"threads", 8},        {"poll_wait_ms", 20},   {"backoff_base_ms", 5},
                       {"backoff_max_ms", 20}, {"visibility_ms", 30000}};
    worker_up(cfg, 5, 1);
    char id[16];
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof id, "m%03d", i);
        enqueue_order(id, i % 5 == 0 ? "retry1" : "c1",
                      i % 3 == 0 ? OD_LANE_PRIORITY : OD_LANE_NORMAL);
    }
    wait_orders("COMPLETED", 300);
    quiesce();
    for (size_t i = 0; i < E.n_ids; i++) {
        size_t want = (i % 5 == 0) ? 2 : 1;
        ck_assert_uint_eq(count_events('r', 'X', E.ids[i]), want);
        ck_assert_int_eq(history_count(E.ids[i], "PROCESSING", NULL, 0), 1);
        ck_assert_int_eq(history_count(E.ids[i], "COMPLETED", NULL, 0), 1);
    }
    ck_assert_int_eq(metric("processed"), 300);
    ck_assert_int_eq(metric("retried"), 60);
    ck_assert_int_eq(
        metric_delta("orderd_orders_status_changes_total", "status=\"COMPLETED\""), 300);
    teardown();
}
END_TEST

static int lane_empty(const void *arg)
{
    int64_t in_flight = 0;
    int64_t visible = lane_depth(*(const uint32_t *)arg, &in_flight);
    return visible + in_flight == 0;
}

/* Overwrite an order's status the way the orders module cancels. */
static void cancel_order(const char *id)
{
    od_doc d = {0};
    ck_assert_int_eq(E.st.ops->get(E.st.self, "orders", id, &d), OD_OK);
    json_object *o = json_tokener_parse(d.body);
    json_object_object_add(o, "status", json_object_new_string("CANCELLED"));
    const char *text = json_object_to_json_string(o);
    od_index_value idx[] = {{"customer", "c1"}, {"status", "CANCELLED"}};
    ck_assert_int_eq(E.st.ops->put(E.st.self, "orders", id, text, strlen(text), idx, 2,
                                   OD_PUT_IF_VERSION, d.version, NULL),
                     OD_OK);
    json_object_put(o);
    od_doc_clear(mock_host_api(), &d);
}

START_TEST(test_cancel_during_pipeline_is_never_completed)
{
    backends_up();
    pipeline_add(&step_a);
    pipeline_add(&step_gate);
    const kvi cfg[] = {{"threads", 1}, {"poll_wait_ms", 20}};
    worker_up(cfg, 2, 1);
    enqueue_order("o1", "c1", OD_LANE_NORMAL);
    int one = 1;
    ck_assert(wait_for(gate_has, &one, WAIT_MS));
    cancel_order("o1"); /* while the pipeline runs */
    gate_open();
    uint32_t lane = OD_LANE_NORMAL;
    ck_assert(wait_for(lane_empty, &lane, WAIT_MS));

    ck_assert(order_has_status("o1", "CANCELLED"));
    ck_assert_int_eq(history_count("o1", "COMPLETED", NULL, 0), 0);
    /* Everything the pipeline did is undone, last step first. */
    pthread_mutex_lock(&R.lock);
    ck_assert_uint_eq(R.n, 4);
    ck_assert(R.ev[2].kind == 'c' && R.ev[2].step == 'G');
    ck_assert(R.ev[3].kind == 'c' && R.ev[3].step == 'A');
    pthread_mutex_unlock(&R.lock);
    teardown();
}
END_TEST

/* Storage whose get() fails with OD_ERR_UNAVAILABLE while `outage` is set. */
static atomic_int outage;
static od_storage_ops flaky_storage_ops;
static od_storage flaky_storage;

static od_status get_or_outage(void *self, const char *table, const char *key, od_doc *out)
{
    if (atomic_load(&outage))
        return OD_ERR_UNAVAILABLE;
    return E.st.ops->get(self, table, key, out);
}

static int retried_twice(const void *arg)
{
    (void)arg;
    return metric("retried") >= 2;
}

START_TEST(test_storage_outage_postpones_never_drops)
{
    backends_up();
    flaky_storage_ops = *E.st.ops;
    flaky_storage_ops.get = get_or_outage;
    flaky_storage = (od_storage){&flaky_storage_ops, E.st.self};
    mock_set_storage(&flaky_storage);
    atomic_store(&outage, 1);
    pipeline_add(&step_a);
    const kvi cfg[] = {{"threads", 1},         {"poll_wait_ms", 20}, {"backoff_base_ms", 20},
                       {"backoff_max_ms", 40}, {"max_attempts", 2}};
    worker_up(cfg, 5, 1);
    enqueue_order("o1", "c1", OD_LANE_NORMAL);
    ck_assert(wait_for(retried_twice, NULL, WAIT_MS));

    /* More deliveries than max_attempts, yet the order is untouched and
     * its message still queued: an outage is not a step's RETRY. */
    ck_assert_uint_eq(count_events('r', 'A', NULL), 0);
    ck_assert(order_has_status("o1", "PENDING"));
    int64_t in_flight = 0;
    ck_assert_int_eq(lane_depth(OD_LANE_NORMAL, &in_flight) + in_flight, 1);
    ck_assert_int_eq(lane_depth(OD_LANE_DEAD, NULL), 0);

    atomic_store(&outage, 0);
    wait_orders("COMPLETED", 1);
    quiesce();
    ck_assert_uint_eq(count_events('r', 'A', "o1"), 1);
    ck_assert_int_eq(metric("dead_lettered"), 0);
    teardown();
}
END_TEST

static void *toggle(void *arg)
{
    for (int i = 0; i < 15; i++) {
        int status = 0;
        const char *path = (i + *(int *)arg) % 2 ? "/api/orders/worker/start"
                                                 : "/api/orders/worker/stop";
        json_object_put(call_route("POST", path, &status));
        if (status != 200)
            return (void *)1;
    }
    return NULL;
}

START_TEST(test_concurrent_start_stop)
{
    backends_up();
    const kvi cfg[] = {{"threads", 3}, {"poll_wait_ms", 10}};
    worker_up(cfg, 2, 1);
    pthread_t t[4];
    int seeds[4] = {0, 1, 2, 3};
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, toggle, &seeds[i]);
    for (int i = 0; i < 4; i++) {
        void *rc = NULL;
        pthread_join(t[i], &rc);
        ck_assert_ptr_null(rc);
    }
    int status = 0;
    json_object *data = call_route("POST", "/api/orders/worker/start", &status);
    ck_assert(json_object_get_boolean(json_object_object_get(data, "running")));
    ck_assert_int_eq(int_field(data, "threads"), 3);
    json_object_put(data);
    /* Still working after all that. */
    enqueue_order("o1", "c1", OD_LANE_NORMAL);
    wait_orders("COMPLETED", 1);
    /* After the module's stop() nothing restarts. */
    E.worker.desc->stop(E.worker.self);
    data = call_route("POST", "/api/orders/worker/start", &status);
    ck_assert_int_eq(status, 503);
    json_object_put(data);
    teardown();
}
END_TEST

START_TEST(test_bad_config_fails_init)
{
    backends_up();
    static const kvi bad[][2] = {{{"threads", 0}, {"max_attempts", 5}},
                                 {{"threads", 65}, {"max_attempts", 5}},
                                 {{"max_attempts", 0}, {"threads", 1}},
                                 {{"backoff_base_ms", 5000}, {"backoff_max_ms", 1000}}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        loaded w = {0};
        load(&w, MODULE_DIR "/queue_worker.so", "queue_worker");
        for (size_t k = 0; k < 2; k++)
            mock_config_set_int(w.mod, bad[i][k].key, bad[i][k].value);
        ck_assert_int_eq(w.desc->init(mock_host_api(), w.mod, &w.self), OD_ERR_CONFIG);
        mock_module_free(w.mod);
        mock_routes_reset();
    }
    teardown();
}
END_TEST

/* ---- the sweeper ---------------------------------------------------------- */

/* put_order() writes updatedAt = 2026-11-26T10:00:00.000Z; this is that
 * instant, so tests set the host clock relative to the orders' progress. */
static int64_t order_time_ms(void)
{
    struct tm tm = {.tm_year = 126, .tm_mon = 10, .tm_mday = 26, .tm_hour = 10};
    return (int64_t)timegm(&tm) * 1000;
}

static int64_t requeued(void) { return metric_delta("orderd_sweeper_requeued_total", ""); }
static int64_t sweeps(void) { return metric_delta("orderd_sweeper_sweeps_total", ""); }

static int sweeps_reached(const void *arg) { return sweeps() >= *(const int64_t *)arg; }

/* Wait until `more` further sweeps have completed. */
static void wait_sweeps(int64_t more)
{
    int64_t goal = sweeps() + more;
    ck_assert_msg(wait_for(sweeps_reached, &goal, WAIT_MS), "only %lld of %lld sweeps",
                  (long long)sweeps(), (long long)goal);
}

static int requeued_reached(const void *arg) { return requeued() >= *(const int64_t *)arg; }

static const kvi sweep_cfg[] = {{"threads", 2},           {"poll_wait_ms", 20},
                                {"sweep_interval_ms", 10}, {"sweep_after_ms", 1000},
                                {"visibility_ms", 5000}};
#define SWEEP_CFG_N (sizeof sweep_cfg / sizeof sweep_cfg[0])

/* Orders whose message is gone (orderd died between storing and queueing,
 * or a worker died and the message was lost): PENDING and PROCESSING ones
 * come back once sweep_after_ms passed without progress, and only then. */
START_TEST(test_sweeper_requeues_orders_without_message)
{
    backends_up();
    int64_t t0 = order_time_ms();
    mock_set_now_ms(t0 + 999);
    pipeline_add(&step_a);
    put_order("lost", "c1", "PENDING");
    put_order("dead", "c1", "PROCESSING");
    snprintf(E.ids[E.n_ids++], sizeof E.ids[0], "lost");
    snprintf(E.ids[E.n_ids++], sizeof E.ids[0], "dead");
    worker_up(sweep_cfg, SWEEP_CFG_N, 1);

    wait_sweeps(3); /* 999 ms without progress: not yet */
    ck_assert_int_eq(requeued(), 0);
    ck_assert_uint_eq(count_events('r', 'A', NULL), 0);
    ck_assert(order_has_status("lost", "PENDING"));

    mock_set_now_ms(t0 + 1000);
    wait_orders("COMPLETED", 2);
    ck_assert_int_eq(requeued(), 2);
    json_object *o = order_get("lost");
    ck_assert_str_eq(str_field(o, "requeuedAt"), "2026-11-26T10:00:01.000Z");
    json_object_put(o);

    wait_sweeps(3); /* settled orders are left alone */
    quiesce();
    ck_assert_int_eq(requeued(), 2);
    ck_assert_uint_eq(count_events('r', 'A', "lost"), 1);
    ck_assert_uint_eq(count_events('r', 'A', "dead"), 1);
    mock_set_now_ms(0);
    teardown();
}
END_TEST

static atomic_int send_down;
static od_queue_ops flaky_queue_ops;
static od_queue flaky_queue;

static od_status send_or_outage(void *self, uint32_t lane, const char *body, size_t len,
                                uint32_t delay_ms, char **id_out)
{
    if (atomic_load(&send_down))
        return OD_ERR_UNAVAILABLE;
    return E.q.ops->send(self, lane, body, len, delay_ms, id_out);
}

/* The put that records requeuedAt comes before the send. When the send
 * fails the order is not lost: the first sweep after sweep_after_ms more
 * sends again. A "high" order goes back on the priority lane. */
START_TEST(test_sweeper_send_failure_is_retried_after_sweep_after)
{
    backends_up();
    flaky_queue_ops = *E.q.ops;
    flaky_queue_ops.send = send_or_outage;
    flaky_queue = (od_queue){&flaky_queue_ops, E.q.self};
    mock_set_queue(&flaky_queue);
    atomic_store(&send_down, 1);
    int64_t t0 = order_time_ms();
    mock_set_now_ms(t0 + 5000);
    put_order("o1", "c1", "PENDING");
    od_doc d = {0};
    ck_assert_int_eq(E.st.ops->get(E.st.self, "orders", "o1", &d), OD_OK);
    char *high = strstr(d.body, "\"normal\"");
    ck_assert_ptr_nonnull(high);
    memcpy(high, "\"high\"  ", 8); /* same length, still valid JSON */
    od_index_value idx[] = {{"customer", "c1"}, {"status", "PENDING"}};
    ck_assert_int_eq(E.st.ops->put(E.st.self, "orders", "o1", d.body, d.len, idx, 2,
                                   OD_PUT_IF_VERSION, d.version, NULL),
                     OD_OK);
    od_doc_clear(mock_host_api(), &d);
    worker_up(sweep_cfg, SWEEP_CFG_N, 0);

    ck_assert(wait_for(log_has, "re-queueing failed", WAIT_MS));
    atomic_store(&send_down, 0);
    wait_sweeps(3); /* requeuedAt was recorded: no resend before sweep_after_ms */
    ck_assert_int_eq(requeued(), 0);
    ck_assert_int_eq(lane_depth(OD_LANE_PRIORITY, NULL), 0);

    mock_set_now_ms(t0 + 6000);
    int64_t one = 1;
    ck_assert(wait_for(requeued_reached, &one, WAIT_MS));
    wait_sweeps(2);
    ck_assert_int_eq(requeued(), 1);
    ck_assert_int_eq(lane_depth(OD_LANE_PRIORITY, NULL), 1);
    ck_assert_int_eq(lane_depth(OD_LANE_NORMAL, NULL), 0);
    mock_set_now_ms(0);
    teardown();
}
END_TEST

/* Two instances (two orderd processes sharing storage and queue) sweep the
 * same stale order: the conditional put lets exactly one of them send. */
START_TEST(test_two_sweepers_requeue_once)
{
    backends_up();
    int64_t t0 = order_time_ms();
    mock_set_now_ms(t0 + 5000);
    for (int i = 0; i < 20; i++) {
        char id[16];
        snprintf(id, sizeof id, "o%02d", i);
        put_order(id, "c1", "PENDING");
    }
    worker_up(sweep_cfg, SWEEP_CFG_N, 0);
    mock_routes_reset(); /* the routes are per process; the second one registers them again */
    loaded second = {0};
    load(&second, MODULE_DIR "/queue_worker.so", "queue_worker");
    for (size_t i = 0; i < SWEEP_CFG_N; i++)
        mock_config_set_int(second.mod, sweep_cfg[i].key, sweep_cfg[i].value);
    mock_config_set_bool(second.mod, "autostart", 0);
    init_loaded(&second);
    ck_assert_int_eq(second.desc->start(second.self), OD_OK);

    int64_t all = 20;
    ck_assert(wait_for(requeued_reached, &all, WAIT_MS));
    wait_sweeps(6); /* both instances swept again since */
    second.desc->stop(second.self);
    second.desc->destroy(second.self);
    mock_module_free(second.mod);
    ck_assert_int_eq(requeued(), 20);
    ck_assert_int_eq(lane_depth(OD_LANE_NORMAL, NULL), 20);
    mock_set_now_ms(0);
    teardown();
}
END_TEST

static int queue_empty(const void *arg)
{
    (void)arg;
    for (uint32_t lane = 0; lane < OD_LANE_COUNT; lane++) {
        int64_t visible = 0, in_flight = 0;
        if (E.q.ops->depth(E.q.self, lane, &visible, &in_flight) != OD_OK ||
            visible + in_flight > 0)
            return 0;
    }
    return 1;
}

/* A second message for an order another delivery is running (a sweeper
 * re-queue, a duplicate) waits for the lease instead of running the
 * pipeline at the same time; afterwards it is acknowledged as a duplicate. */
START_TEST(test_lease_keeps_duplicates_from_running_concurrently)
{
    backends_up();
    pipeline_add(&step_gate);
    const kvi cfg[] = {{"threads", 2}, {"poll_wait_ms", 10}, {"backoff_base_ms", 10},
                       {"backoff_max_ms", 20}, {"visibility_ms", 30000}};
    worker_up(cfg, 5, 1);
    enqueue_order("o1", "c1", OD_LANE_NORMAL);
    int one = 1;
    ck_assert(wait_for(gate_has, &one, WAIT_MS)); /* the first delivery holds it */
    send_raw(OD_LANE_PRIORITY, "{\"orderId\":\"o1\"}");
    ck_assert(wait_for(retried_twice, NULL, WAIT_MS)); /* postponed, more than once */
    ck_assert_uint_eq(count_events('r', 'G', "o1"), 1);
    json_object *o = order_get("o1");
    ck_assert_ptr_nonnull(str_field(o, "leaseMessage"));
    ck_assert_ptr_nonnull(str_field(o, "leaseUntil"));
    json_object_put(o);
    gate_open();
    wait_orders("COMPLETED", 1);
    ck_assert(wait_for(queue_empty, NULL, WAIT_MS)); /* the duplicate was acknowledged */
    quiesce();
    ck_assert_uint_eq(count_events('r', 'G', "o1"), 1);
    teardown();
}
END_TEST

START_TEST(test_sweeper_bad_config_fails_init)
{
    backends_up();
    static const kvi bad[] = {{"sweep_interval_ms", -1}, {"sweep_after_ms", 999},
                              {"sweep_after_ms", 86400001}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        loaded w = {0};
        load(&w, MODULE_DIR "/queue_worker.so", "queue_worker");
        mock_config_set_int(w.mod, bad[i].key, bad[i].value);
        ck_assert_int_eq(w.desc->init(mock_host_api(), w.mod, &w.self), OD_ERR_CONFIG);
        mock_module_free(w.mod);
        mock_routes_reset();
    }
    /* sweep_interval_ms = 0: no sweeper, stale orders stay as they are. */
    mock_set_now_ms(order_time_ms() + 5000);
    put_order("o1", "c1", "PENDING");
    const kvi off[] = {{"sweep_interval_ms", 0}, {"sweep_after_ms", 1000}};
    worker_up(off, 2, 1);
    ck_assert(wait_for(log_has, "worker threads started", WAIT_MS));
    ck_assert(!mock_log_contains("sweeper started"));
    mock_set_now_ms(0);
    teardown();
}
END_TEST

static Suite *queue_worker_suite(void)
{
    Suite *s = suite_create("queue_worker");
    TCase *tc = tcase_create("worker");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_priority_first_without_starving_normal);
    tcase_add_test(tc, test_retry_redelivered_after_backoff);
    tcase_add_test(tc, test_max_attempts_dead_letters_and_fails);
    tcase_add_test(tc, test_fail_compensates_in_reverse_once);
    tcase_add_test(tc, test_stop_while_processing_loses_nothing);
    tcase_add_test(tc, test_process_queue_counts);
    tcase_add_test(tc, test_cancelled_order_is_compensated_and_dropped);
    tcase_add_test(tc, test_many_threads_many_orders_once_each);
    tcase_add_test(tc, test_cancel_during_pipeline_is_never_completed);
    tcase_add_test(tc, test_storage_outage_postpones_never_drops);
    tcase_add_test(tc, test_concurrent_start_stop);
    tcase_add_test(tc, test_bad_config_fails_init);
    tcase_add_test(tc, test_sweeper_requeues_orders_without_message);
    tcase_add_test(tc, test_sweeper_send_failure_is_retried_after_sweep_after);
    tcase_add_test(tc, test_two_sweepers_requeue_once);
    tcase_add_test(tc, test_sweeper_bad_config_fails_init);
    tcase_add_test(tc, test_lease_keeps_duplicates_from_running_concurrently);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(queue_worker_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
