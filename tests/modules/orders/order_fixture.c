/*
 * order_fixture.c - see order_fixture.h.
 */
#include "order_fixture.h"

#include <check.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "order_model.h"

fx_state FX;

/* ---- backends the tests can switch off: modules get these wrappers ---- */

static int write_mode = FX_MODE_STEPS; /* read by fx_up, reset by fx_down */
static atomic_int storage_down, batch_down, send_down;
static atomic_size_t n_batches, n_sends, n_notifies;
static _Atomic(fx_batch_hook) before_batch;
static _Atomic(fx_del_hook) before_del;
static const char *_Atomic before_del_table;

void fx_use_mode(int mode)
{
    ck_assert(mode >= 0 && mode < FX_MODES);
    write_mode = mode;
}

int fx_mode(void)
{
    return write_mode;
}

const char *fx_mode_name(int mode)
{
    static const char *const names[FX_MODES] = {"steps", "batch", "outbox"};
    return mode >= 0 && mode < FX_MODES ? names[mode] : "?";
}

void fx_storage_unavailable(int on)
{
    atomic_store(&storage_down, on);
}

void fx_batch_unavailable(int on)
{
    atomic_store(&batch_down, on);
}

void fx_send_unavailable(int on)
{
    atomic_store(&send_down, on);
}

void fx_before_batch(fx_batch_hook fn)
{
    atomic_store(&before_batch, fn);
}

void fx_before_del(const char *table, fx_del_hook fn)
{
    atomic_store(&before_del_table, table);
    atomic_store(&before_del, fn);
}

size_t fx_batches(void)
{
    return atomic_load(&n_batches);
}

size_t fx_sends(void)
{
    return atomic_load(&n_sends);
}

size_t fx_notifies(void)
{
    return atomic_load(&n_notifies);
}

#define REAL FX.st.ops
#define DOWN_OR(call) (atomic_load(&storage_down) ? OD_ERR_UNAVAILABLE : REAL->call)

static od_status w_define(void *x, const od_table_def *d)
{
    return DOWN_OR(define_table(FX.st.self, d));
}
static od_status w_get(void *x, const char *t, const char *k, od_doc *out)
{
    return DOWN_OR(get(FX.st.self, t, k, out));
}
static od_status w_put(void *x, const char *t, const char *k, const char *b, size_t len,
                       const od_index_value *idx, size_t n, uint32_t cond, uint64_t exp,
                       uint64_t *nv)
{
    return DOWN_OR(put(FX.st.self, t, k, b, len, idx, n, cond, exp, nv));
}
static od_status w_del(void *x, const char *t, const char *k, uint64_t exp)
{
    const char *table = atomic_load(&before_del_table);
    if (table && strcmp(table, t) == 0) {
        fx_del_hook hook = atomic_exchange(&before_del, NULL);
        if (hook)
            hook(k);
    }
    return DOWN_OR(del(FX.st.self, t, k, exp));
}
static od_status w_lookup(void *x, const char *t, const char *i, const char *v, od_doc *out)
{
    return DOWN_OR(lookup(FX.st.self, t, i, v, out));
}
static od_status w_query(void *x, const char *t, const char *i, const char *v, const char *c,
                         uint32_t l, uint32_t d, od_page *out)
{
    return DOWN_OR(query(FX.st.self, t, i, v, c, l, d, out));
}
static od_status w_scan(void *x, const char *t, const char *c, uint32_t l, uint32_t d, od_page *out)
{
    return DOWN_OR(scan(FX.st.self, t, c, l, d, out));
}
static od_status w_counter_add(void *x, const char *t, const char *k, int64_t delta, int64_t floor,
                               const char *tok, int64_t *res, int32_t *applied)
{
    return DOWN_OR(counter_add(FX.st.self, t, k, delta, floor, tok, res, applied));
}
static od_status w_counter_set(void *x, const char *t, const char *k, int64_t v)
{
    return DOWN_OR(counter_set(FX.st.self, t, k, v));
}
static od_status w_counter_get(void *x, const char *t, const char *k, int64_t *v)
{
    return DOWN_OR(counter_get(FX.st.self, t, k, v));
}
static od_status w_counter_del(void *x, const char *t, const char *k)
{
    return DOWN_OR(counter_del(FX.st.self, t, k));
}
static od_status w_ping(void *x)
{
    return DOWN_OR(ping(FX.st.self));
}

/* The store both wrappers report in FX_MODE_OUTBOX. */
static const char FX_STORE[] = "fixture:storage_memory+queue_memory";

static const char *w_store(void *x)
{
    return FX_STORE;
}

/* storage_memory keeps no queue, so it cannot carry a message in its
 * transaction (it answers OD_ERR_UNSUPPORTED). To run the orders module's
 * outbox path anyway, FX_MODE_OUTBOX simulates a shared store here: both
 * wrappers report FX_STORE, and a batch with a message writes the documents
 * through the real put_batch (no message), then, only if that committed,
 * sends the message to queue_memory directly (not through the queue
 * wrapper, whose send the module must not need) and calls notify() as a
 * backend must. Not atomic like SQLite's one transaction: a reader could
 * see the documents a moment before the message. The tests never look in
 * between, and queue_memory's send fails only for want of memory. */
static od_status outbox_batch(const od_put *const *puts, size_t n, const od_outbox *msg,
                              uint64_t *versions, size_t *failed)
{
    const od_queue_ops *qo = msg->queue ? msg->queue->ops : NULL;
    if (failed)
        *failed = OD_BATCH_NONE;
    if (msg->size < sizeof(od_outbox) || !qo || !OD_HAS_OP(od_queue_ops, qo, store) ||
        !OD_HAS_OP(od_queue_ops, qo, notify) || strcmp(qo->store(msg->queue->self), FX_STORE) != 0)
        return OD_ERR_UNSUPPORTED;
    od_status s = REAL->put_batch(FX.st.self, puts, n, NULL, versions, failed);
    if (s != OD_OK)
        return s;
    s = FX.q.ops->send(FX.q.self, msg->lane, msg->body, msg->len, msg->delay_ms, NULL);
    if (s != OD_OK)
        return s;
    atomic_fetch_add(&n_batches, 1);
    qo->notify(msg->queue->self, msg->lane);
    return OD_OK;
}

static od_status w_put_batch(void *x, const od_put *const *puts, size_t n, const od_outbox *msg,
                             uint64_t *versions, size_t *failed)
{
    if (atomic_load(&storage_down) || atomic_load(&batch_down)) {
        if (failed)
            *failed = OD_BATCH_NONE;
        return OD_ERR_UNAVAILABLE;
    }
    fx_batch_hook hook = atomic_exchange(&before_batch, NULL);
    if (hook)
        hook(puts, n);
    if (msg)
        return outbox_batch(puts, n, msg, versions, failed);
    od_status s = REAL->put_batch(FX.st.self, puts, n, NULL, versions, failed);
    if (s == OD_OK)
        atomic_fetch_add(&n_batches, 1);
    return s;
}

#define SWITCHABLE_BASE                                                                            \
    .size = sizeof(od_storage_ops), .define_table = w_define, .get = w_get, .put = w_put,          \
    .del = w_del, .lookup = w_lookup, .query = w_query, .scan = w_scan,                            \
    .counter_add = w_counter_add, .counter_set = w_counter_set, .counter_get = w_counter_get,      \
    .counter_del = w_counter_del, .ping = w_ping

/* One ops table per mode, so the orders module's init sees the ops it
 * tests for (OD_HAS_OP) and chooses its write path from them. */
static const od_storage_ops SWITCHABLE_OPS[FX_MODES] = {
    [FX_MODE_STEPS] = {SWITCHABLE_BASE},
    [FX_MODE_BATCH] = {SWITCHABLE_BASE, .put_batch = w_put_batch},
    [FX_MODE_OUTBOX] = {SWITCHABLE_BASE, .put_batch = w_put_batch, .store = w_store},
};
static const od_storage SWITCHABLE[FX_MODES] = {
    {&SWITCHABLE_OPS[0], NULL}, {&SWITCHABLE_OPS[1], NULL}, {&SWITCHABLE_OPS[2], NULL}};

static od_status wq_send(void *x, uint32_t lane, const char *b, size_t len, uint32_t delay,
                         char **id)
{
    if (atomic_load(&send_down))
        return OD_ERR_UNAVAILABLE;
    od_status s = FX.q.ops->send(FX.q.self, lane, b, len, delay, id);
    if (s == OD_OK)
        atomic_fetch_add(&n_sends, 1);
    return s;
}
static od_status wq_receive(void *x, uint32_t lane, uint32_t max, uint32_t wait, uint32_t vis,
                            od_message *out, size_t *n)
{
    return FX.q.ops->receive(FX.q.self, lane, max, wait, vis, out, n);
}
static od_status wq_del(void *x, uint32_t lane, const char *receipt)
{
    return FX.q.ops->del(FX.q.self, lane, receipt);
}
static od_status wq_change_visibility(void *x, uint32_t lane, const char *receipt, uint32_t ms)
{
    return FX.q.ops->change_visibility(FX.q.self, lane, receipt, ms);
}
static od_status wq_depth(void *x, uint32_t lane, int64_t *visible, int64_t *in_flight)
{
    return FX.q.ops->depth(FX.q.self, lane, visible, in_flight);
}
static od_status wq_ping(void *x)
{
    return FX.q.ops->ping(FX.q.self);
}
/* queue_memory's send already woke its receivers: only count. */
static void wq_notify(void *x, uint32_t lane)
{
    atomic_fetch_add(&n_notifies, 1);
}

#define SWITCHABLE_QUEUE_BASE                                                                      \
    .size = sizeof(od_queue_ops), .send = wq_send, .receive = wq_receive, .del = wq_del,           \
    .change_visibility = wq_change_visibility, .depth = wq_depth, .ping = wq_ping

static const od_queue_ops SWITCHABLE_QUEUE_OPS[FX_MODES] = {
    [FX_MODE_STEPS] = {SWITCHABLE_QUEUE_BASE},
    [FX_MODE_BATCH] = {SWITCHABLE_QUEUE_BASE},
    [FX_MODE_OUTBOX] = {SWITCHABLE_QUEUE_BASE, .store = w_store, .notify = wq_notify},
};
static const od_queue SWITCHABLE_QUEUE[FX_MODES] = {
    {&SWITCHABLE_QUEUE_OPS[0], NULL}, {&SWITCHABLE_QUEUE_OPS[1], NULL},
    {&SWITCHABLE_QUEUE_OPS[2], NULL}};

/* Parsed replies, so fx_get can hand out borrowed members. */
typedef struct fx_reply {
    od_request *req;
    json_object *json;
} fx_reply;
static fx_reply replies[64];

static void load(fx_module *m, const char *file, const char *group)
{
    char path[1024], err[512];
    const char *build = getenv("ORDERD_BUILD_DIR");
    ck_assert_msg(build != NULL, "ORDERD_BUILD_DIR is not set");
    snprintf(path, sizeof path, "%s/modules/%s.so", build, file);
    m->desc = mock_load_module(path, err, sizeof err);
    ck_assert_msg(m->desc != NULL, "%s", err);
    m->mod = mock_module_new(group);
}

/* Config the orders module gets at its next init. */
#define FX_CONFIG_MAX 8
static struct {
    const char *key;
    int64_t value;
} orders_config[FX_CONFIG_MAX];
static size_t n_orders_config;

void fx_orders_config(const char *key, int64_t value)
{
    ck_assert_uint_lt(n_orders_config, FX_CONFIG_MAX);
    orders_config[n_orders_config].key = key;
    orders_config[n_orders_config++].value = value;
}

static void init(fx_module *m)
{
    od_status s = m->desc->init(mock_host_api(), m->mod, &m->self);
    ck_assert_msg(s == OD_OK, "%s init: %s", m->desc->name, od_status_str(s));
    if (m->desc->start)
        ck_assert_int_eq(m->desc->start(m->self), OD_OK);
}

static void fini(fx_module *m)
{
    if (m->self && m->desc->stop)
        m->desc->stop(m->self);
    if (m->self && m->desc->destroy)
        m->desc->destroy(m->self);
    mock_module_free(m->mod);
    memset(m, 0, sizeof *m);
}

static void define_products(void)
{
    static const od_index_def idx[] = {{"name", 1}};
    od_table_def def = {sizeof def, ODO_TABLE_PRODUCTS, idx, 1};
    ck_assert_int_eq(FX.st.ops->define_table(FX.st.self, &def), OD_OK);
}

static void step_up(fx_module *m, const char *file, const char *name, od_step *step)
{
    load(m, file, name);
    init(m);
    *step = (od_step){m->desc->ops, m->self, m->desc->name};
    mock_add_step(step);
}

/* Metric values when the test began: the mock's metrics are per process,
 * and with CK_FORK=no every test shares them. */
static const char *const METRICS[][2] = {
    {"orderd_orders_created_total", "priority=\"normal\""},
    {"orderd_orders_created_total", "priority=\"high\""},
    {ODO_METRIC_STATUS, "status=\"PENDING\""},
    {ODO_METRIC_STATUS, "status=\"CANCELLED\""},
    {ODO_METRIC_STATUS, "status=\"COMPLETED\""},
    {"orderd_idempotency_expired_total", ""},
};
static int64_t metric_base[sizeof METRICS / sizeof METRICS[0]];

int64_t fx_metric(const char *name, const char *labels)
{
    for (size_t i = 0; i < sizeof METRICS / sizeof METRICS[0]; i++)
        if (strcmp(METRICS[i][0], name) == 0 && strcmp(METRICS[i][1], labels) == 0)
            return mock_metric_value(name, labels) - metric_base[i];
    ck_abort_msg("metric %s{%s} is not tracked by the fixture", name, labels);
    return 0;
}

void fx_up(void)
{
    for (size_t i = 0; i < sizeof METRICS / sizeof METRICS[0]; i++)
        metric_base[i] = mock_metric_value(METRICS[i][0], METRICS[i][1]);
    memset(&FX, 0, sizeof FX);
    mock_routes_reset();
    mock_log_reset();
    fx_storage_unavailable(0);
    fx_batch_unavailable(0);
    fx_send_unavailable(0);
    fx_before_batch(NULL);
    fx_before_del(NULL, NULL);
    atomic_store(&n_batches, 0);
    atomic_store(&n_sends, 0);
    atomic_store(&n_notifies, 0);
    load(&FX.storage, "storage_memory", "storage");
    init(&FX.storage);
    FX.st = (od_storage){FX.storage.desc->ops, FX.storage.self};
    ck_assert_msg(write_mode == FX_MODE_STEPS || OD_HAS_OP(od_storage_ops, FX.st.ops, put_batch),
                  "storage_memory has no put_batch");
    mock_set_storage(&SWITCHABLE[write_mode]);
    load(&FX.queue, "queue_memory", "queue");
    init(&FX.queue);
    FX.q = (od_queue){FX.queue.desc->ops, FX.queue.self};
    mock_set_queue(&SWITCHABLE_QUEUE[write_mode]);
    define_products();
    step_up(&FX.validate, "step_validate", "validate", &FX.steps[0]);
    step_up(&FX.reserve, "step_reserve_stock", "reserve_stock", &FX.steps[1]);
    step_up(&FX.complete, "step_complete", "complete", &FX.steps[2]);
    load(&FX.orders, "orders", "orders");
    for (size_t i = 0; i < n_orders_config; i++)
        mock_config_set_int(FX.orders.mod, orders_config[i].key, orders_config[i].value);
    init(&FX.orders);
}

void fx_down(void)
{
    for (size_t i = 0; i < sizeof replies / sizeof replies[0]; i++) {
        json_object_put(replies[i].json);
        replies[i] = (fx_reply){0};
    }
    fini(&FX.orders);
    fini(&FX.complete);
    fini(&FX.reserve);
    fini(&FX.validate);
    fini(&FX.queue);
    fini(&FX.storage);
    mock_set_storage(NULL);
    mock_set_queue(NULL);
    mock_routes_reset();
    write_mode = FX_MODE_STEPS;
    n_orders_config = 0;
}

void fx_product(const char *name, int64_t price_cents, int64_t stock, char *id_out)
{
    char body[512];
    ck_assert_int_eq(mock_host_api()->new_id(id_out), OD_OK);
    int n = snprintf(
        body, sizeof body,
        "{\"id\":\"%s\",\"name\":\"%s\",\"description\":\"\",\"priceCents\":%lld,"
        "\"createdAt\":\"2026-11-26T10:00:00.000Z\",\"updatedAt\":\"2026-11-26T10:00:00.000Z\"}",
        id_out, name, (long long)price_cents);
    od_index_value idx = {"name", name};
    ck_assert_int_eq(FX.st.ops->put(FX.st.self, ODO_TABLE_PRODUCTS, id_out, body, (size_t)n, &idx,
                                    1, OD_PUT_IF_ABSENT, 0, NULL),
                     OD_OK);
    ck_assert_int_eq(FX.st.ops->counter_set(FX.st.self, ODO_COUNTER_STOCK, id_out, stock), OD_OK);
}

int64_t fx_stock(const char *product_id)
{
    int64_t v = -1;
    ck_assert_int_eq(FX.st.ops->counter_get(FX.st.self, ODO_COUNTER_STOCK, product_id, &v), OD_OK);
    return v;
}

static od_request *run(od_request *r, const char *method, const char *pattern)
{
    uint32_t access = 0;
    od_handler_fn fn = mock_route(method, pattern, &access);
    ck_assert_msg(fn != NULL, "no route %s %s", method, pattern);
    ck_assert_uint_eq(access, OD_ACCESS_USER);
    ck_assert_int_eq(fn(FX.orders.self, r), OD_OK);
    ck_assert_int_eq(mock_reply_count(r), 1);
    return r;
}

od_request *fx_call(const char *method, const char *pattern, const char *id, const char *user,
                    uint32_t role, const char *body, const char *idem_key)
{
    od_request *r = mock_request_new(method, pattern);
    mock_request_principal(r, user, role);
    if (id)
        mock_request_param(r, "id", id);
    if (body)
        mock_request_body(r, body);
    if (idem_key)
        mock_request_header(r, "Idempotency-Key", idem_key);
    return run(r, method, pattern);
}

od_request *fx_list(const char *user, uint32_t role, const char *query_name, const char *value,
                    const char *query2, const char *value2)
{
    od_request *r = mock_request_new("GET", "/api/orders");
    mock_request_principal(r, user, role);
    if (query_name)
        mock_request_query(r, query_name, value);
    if (query2)
        mock_request_query(r, query2, value2);
    return run(r, "GET", "/api/orders");
}

static fx_reply *reply_slot(od_request *r)
{
    fx_reply *free_slot = NULL;
    for (size_t i = 0; i < sizeof replies / sizeof replies[0]; i++) {
        if (replies[i].req == r)
            return &replies[i];
        if (!free_slot && !replies[i].req)
            free_slot = &replies[i];
    }
    ck_assert_ptr_nonnull(free_slot);
    free_slot->req = r;
    free_slot->json = json_tokener_parse(mock_reply_body(r));
    ck_assert_msg(free_slot->json != NULL, "reply is not JSON: %s", mock_reply_body(r));
    return free_slot;
}

void fx_free(od_request *r)
{
    for (size_t i = 0; i < sizeof replies / sizeof replies[0]; i++) {
        if (replies[i].req == r) {
            json_object_put(replies[i].json);
            replies[i] = (fx_reply){0};
        }
    }
    mock_request_free(r);
}

json_object *fx_get(od_request *r, const char *path)
{
    json_object *cur = reply_slot(r)->json;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *save = NULL, *part = strtok_r(buf, ".", &save); cur && part;
         part = strtok_r(NULL, ".", &save)) {
        if (json_object_is_type(cur, json_type_array)) {
            char *end = NULL;
            long i = strtol(part, &end, 10);
            cur = *end == '\0' ? json_object_array_get_idx(cur, (size_t)i) : NULL;
        } else if (!json_object_object_get_ex(cur, part, &cur)) {
            cur = NULL;
        }
    }
    return cur;
}

const char *fx_str(od_request *r, const char *path)
{
    json_object *v = fx_get(r, path);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

int64_t fx_int(od_request *r, const char *path)
{
    json_object *v = fx_get(r, path);
    ck_assert_msg(v != NULL, "no %s in %s", path, mock_reply_body(r));
    return json_object_get_int64(v);
}

void fx_order(const char *user, const char *body, char *id_out)
{
    od_request *r = fx_call("POST", "/api/orders", NULL, user, OD_ROLE_CUSTOMER, body, NULL);
    ck_assert_msg(mock_reply_status(r) == 201, "%s", mock_reply_body(r));
    snprintf(id_out, OD_UUID_STR_LEN + 1, "%s", fx_str(r, "data.id"));
    fx_free(r);
}

static odo_ctx db(void)
{
    return (odo_ctx){mock_host_api(), &FX.st};
}

json_object *fx_order_doc(const char *order_id, uint64_t *version)
{
    odo_ctx c = db();
    json_object *doc = NULL;
    uint64_t v = 0;
    ck_assert_int_eq(odo_load(&c, order_id, &doc, &v), OD_OK);
    if (version)
        *version = v;
    return doc;
}

static int any_status(const char *from)
{
    (void)from;
    return 1;
}

void fx_set_status(const char *order_id, const char *status)
{
    odo_ctx c = db();
    uint64_t v = 0;
    json_object *doc = fx_order_doc(order_id, &v);
    ck_assert_int_eq(odo_transition(&c, &doc, &v, status, NULL, any_status), OD_OK);
    json_object_put(doc);
}

static size_t count_table(const char *table)
{
    od_page page = {0};
    ck_assert_int_eq(FX.st.ops->scan(FX.st.self, table, NULL, 1000, 0, &page), OD_OK);
    size_t n = page.count;
    od_page_clear(mock_host_api(), &page);
    return n;
}

size_t fx_count_orders(void)
{
    return count_table(ODO_TABLE_ORDERS);
}

size_t fx_count_idem(void)
{
    return count_table(ODO_TABLE_IDEMPOTENCY);
}

size_t fx_count_expiry(void)
{
    return count_table(ODO_TABLE_IDEM_EXPIRY);
}

static void step_ctx(const char *order_id, od_doc *d, od_step_ctx *ctx)
{
    ck_assert_int_eq(FX.st.ops->get(FX.st.self, ODO_TABLE_ORDERS, order_id, d), OD_OK);
    *ctx = (od_step_ctx){.size = sizeof *ctx,
                         .attempt = 1,
                         .order_id = order_id,
                         .order_json = d->body,
                         .order_len = d->len};
}

int fx_run_step(const od_step *step, const char *order_id, char *reason_out)
{
    od_doc d = {0};
    od_step_ctx ctx;
    step_ctx(order_id, &d, &ctx);
    int verdict = step->ops->run(step->self, &ctx);
    if (reason_out)
        snprintf(reason_out, OD_REASON_MAX, "%s", verdict == OD_STEP_CONTINUE ? "" : ctx.reason);
    od_doc_clear(mock_host_api(), &d);
    return verdict;
}

void fx_compensate(const od_step *step, const char *order_id)
{
    od_doc d = {0};
    od_step_ctx ctx;
    step_ctx(order_id, &d, &ctx);
    step->ops->compensate(step->self, &ctx);
    od_doc_clear(mock_host_api(), &d);
}

size_t fx_drain(uint32_t lane, char bodies[][128], size_t max)
{
    size_t total = 0;
    for (;;) {
        od_message msgs[OD_RECEIVE_MAX];
        size_t n = 0;
        ck_assert_int_eq(FX.q.ops->receive(FX.q.self, lane, OD_RECEIVE_MAX, 0, 60000, msgs, &n),
                         OD_OK);
        for (size_t i = 0; i < n; i++) {
            if (total < max)
                snprintf(bodies[total], 128, "%s", msgs[i].body);
            total++;
            od_message_clear(mock_host_api(), &msgs[i]);
        }
        if (n == 0)
            return total;
    }
}

int64_t fx_queued(void)
{
    int64_t total = 0;
    for (uint32_t lane = 0; lane < OD_LANE_COUNT; lane++) {
        int64_t visible = 0, in_flight = 0;
        ck_assert_int_eq(FX.q.ops->depth(FX.q.self, lane, &visible, &in_flight), OD_OK);
        total += visible + in_flight;
    }
    return total;
}
