/*
 * orders - the order service (OD_KIND_SERVICE, config group "orders").
 *
 * POST /api/orders prices the items from the product documents, stores the
 * order PENDING and queues {"orderId"} on the priority or normal lane in the
 * same request (an order that cannot be queued is removed again: 503);
 * GET /api/orders lists the caller's orders newest first (admins: all, with
 * ?status= or ?customerId=); GET and DELETE /api/orders/:id read and cancel
 * one order, answering 404 to anyone but its owner and admins. An
 * Idempotency-Key header makes POST safe to retry (docs/orders.md); its
 * record counts for `idempotency_ttl_hours`, and a janitor deletes expired
 * records in creation order (both in idempotency.c; this file is the HTTP
 * and order flow).
 * Config keys: `max_items` (1..1000, default 100: entries of "items"),
 * `idempotency_ttl_hours` (1..8760, default 24), `idempotency_sweep_interval_ms`
 * (0..86400000, default 60000, 0: no janitor); `pipeline` is read by the core
 * (docs/configuration.md). Threads: handlers run on the HTTP workers; the
 * janitor is one thread, started by start() and joined by stop(). Module
 * state is read-only after init except the janitor's stop flag and its
 * lock (metric updates are the host's lock-free atomics).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "idempotency.h"
#include "odm.h"
#include "order_model.h"

#define ORDERS_MAX_ITEMS_DEFAULT 100
#define ORDERS_MAX_ITEMS_LIMIT 1000
#define ORDERS_QUANTITY_MAX 1000000
#define IDEM_HEADER "Idempotency-Key"
/* A retry that finds the record but not yet the order waits this long for
 * the first request to write it, polling every IDEM_POLL_MS. */
#define IDEM_WAIT_MS 2000
#define IDEM_POLL_MS 20

typedef struct orders {
    const od_host_api *host;
    od_module *mod;
    odo_ctx db;
    const od_queue *queue;
    int batch;       /* storage has put_batch: record + order in one transaction */
    int shared;      /* ... and the queue message too (storage and queue share a store) */
    size_t max_items;
    od_metric *created_normal, *created_high;
    od_metric *entered_pending, *entered_cancelled;
    odi idem; /* Idempotency-Key records and their janitor */
} orders;

/* One priced line of a new order; product_id is borrowed from the body. */
typedef struct order_line {
    const char *product_id;
    int64_t quantity;
    int64_t unit_price_cents;
} order_line;

typedef struct order_request {
    order_line *lines; /* request arena, max_items entries */
    size_t n;
    int high;
    int64_t total_cents;
    char hash[ODI_HASH_LEN + 1]; /* of the canonical request */
} order_request;

static int printable_ascii(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++)
        if (n == max || s[n] < 0x21 || s[n] > 0x7e)
            return 0;
    return n > 0;
}

static int visible_to(const od_principal *who, json_object *doc)
{
    return who->role == OD_ROLE_ADMIN || strcmp(odo_str(doc, "customerId"), who->user_id) == 0;
}

static od_status reply_not_found(orders *o, od_request *req)
{
    return o->host->reply_error(req, 404, "not_found", "Order not found");
}

/* ---- API view ---- */

static int64_t int_member(json_object *o, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static json_object *view_item(json_object *line)
{
    json_object *item = json_object_new_object();
    if (item == NULL)
        return NULL;
    json_object_object_add(item, "productId", json_object_new_string(odo_str(line, "productId")));
    json_object_object_add(item, "quantity", json_object_new_int64(int_member(line, "quantity")));
    json_object_object_add(item, "unitPrice", odo_money_new(int_member(line, "unitPriceCents")));
    return item;
}

/* The order as clients see it: money as numbers, internals left out. */
static json_object *order_view(json_object *doc, int with_history)
{
    static const char *const strings[] = {"id",       "customerId", "status",
                                          "priority", "createdAt",  "updatedAt"};
    json_object *view = json_object_new_object(), *items = json_object_new_array(), *v = NULL;
    if (view == NULL || items == NULL) {
        json_object_put(view);
        json_object_put(items);
        return NULL;
    }
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        json_object_object_add(view, strings[i], json_object_new_string(odo_str(doc, strings[i])));
    json_object *lines = json_object_object_get(doc, "items");
    for (size_t i = 0, n = odo_line_count(doc); i < n; i++)
        json_object_array_add(items, view_item(json_object_array_get_idx(lines, i)));
    json_object_object_add(view, "items", items);
    json_object_object_add(view, "total", odo_money_new(int_member(doc, "totalCents")));
    if (with_history && json_object_object_get_ex(doc, "history", &v))
        json_object_object_add(view, "history", json_object_get(v));
    return view;
}

static od_status reply_order(orders *o, od_request *req, int status, const char *message,
                             json_object *doc, int with_history)
{
    json_object *view = order_view(doc, with_history);
    if (view == NULL)
        return OD_ERR_NOMEM;
    od_status s = odm_reply_json(o->host, req, status, message, view);
    json_object_put(view);
    return s;
}

/* ---- parsing POST bodies ---- */

static od_status add_line(order_request *rq, const char *product_id, int64_t quantity, odm_err *e)
{
    if (!printable_ascii(product_id, ODO_PRODUCT_ID_MAX)) {
        odm_err_set(e, "'productId' must be a product id");
        return OD_ERR_INVALID;
    }
    for (size_t i = 0; i < rq->n; i++) {
        if (strcmp(rq->lines[i].product_id, product_id) == 0) {
            /* Repeated ids add up, within the same bound as one line. */
            if (rq->lines[i].quantity + quantity > ORDERS_QUANTITY_MAX) {
                odm_err_set(e, "quantity of product '%s' must be at most %d", product_id,
                            ORDERS_QUANTITY_MAX);
                return OD_ERR_INVALID;
            }
            rq->lines[i].quantity += quantity;
            return OD_OK;
        }
    }
    rq->lines[rq->n++] = (order_line){product_id, quantity, 0};
    return OD_OK;
}

static od_status parse_item_object(order_request *rq, json_object *item, odm_err *e)
{
    static const char *const fields[] = {"productId", "quantity", NULL};
    const char *product_id = NULL;
    int64_t quantity = 0;
    od_status s = odm_only_fields(item, fields, e);
    if (s == OD_OK)
        s = odm_get_string(item, "productId", 1, 1, ODO_PRODUCT_ID_MAX, &product_id, e);
    if (s == OD_OK)
        s = odm_get_int(item, "quantity", 1, 1, ORDERS_QUANTITY_MAX, &quantity, e);
    return s == OD_OK ? add_line(rq, product_id, quantity, e) : s;
}

static od_status add_string_item(order_request *rq, json_object *item, odm_err *e)
{
    const char *product_id = json_object_get_string(item);
    /* An embedded NUL would cut the id short and name another product. */
    if (strlen(product_id) != (size_t)json_object_get_string_len(item)) {
        odm_err_set(e, "'items' entries must be product ids");
        return OD_ERR_INVALID;
    }
    return add_line(rq, product_id, 1, e);
}

/* "items": ["<id>", ...] (one unit each) or [{"productId", "quantity"}, ...],
 * never both in one request. */
static od_status parse_items(orders *o, json_object *body, order_request *rq, odm_err *e)
{
    json_object *items = NULL;
    if (!json_object_object_get_ex(body, "items", &items) ||
        !json_object_is_type(items, json_type_array)) {
        odm_err_set(e, "field 'items' is required and must be an array");
        return OD_ERR_INVALID;
    }
    size_t n = json_object_array_length(items);
    if (n == 0 || n > o->max_items) {
        odm_err_set(e, "field 'items' must have 1 to %zu entries", o->max_items);
        return OD_ERR_INVALID;
    }
    json_type form = json_object_get_type(json_object_array_get_idx(items, 0));
    if (form != json_type_string && form != json_type_object) {
        odm_err_set(e, "'items' entries must be product ids or {productId, quantity} objects");
        return OD_ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *item = json_object_array_get_idx(items, i);
        od_status s;
        if (json_object_get_type(item) != form) {
            odm_err_set(e, "'items' must not mix product ids and objects");
            return OD_ERR_INVALID;
        }
        if (form == json_type_string)
            s = add_string_item(rq, item, e);
        else
            s = parse_item_object(rq, item, e);
        if (s != OD_OK)
            return s;
    }
    return OD_OK;
}

static od_status parse_priority(json_object *body, order_request *rq, odm_err *e)
{
    const char *priority = NULL;
    od_status s = odm_get_string(body, "priority", 0, 1, 16, &priority, e);
    if (s != OD_OK)
        return s;
    if (priority != NULL && strcmp(priority, "high") != 0 && strcmp(priority, "normal") != 0) {
        odm_err_set(e, "field 'priority' must be \"high\" or \"normal\"");
        return OD_ERR_INVALID;
    }
    rq->high = priority != NULL && strcmp(priority, "high") == 0;
    return OD_OK;
}

static int line_cmp(const void *a, const void *b)
{
    const order_line *x = *(const order_line *const *)a, *y = *(const order_line *const *)b;
    return strcmp(x->product_id, y->product_id);
}

/* The lines in product order (the request arena holds the array). */
static const order_line **sorted_lines(orders *o, od_request *req, const order_request *rq)
{
    const order_line **sorted = o->host->req_alloc(req, rq->n * sizeof *sorted);
    if (sorted == NULL)
        return NULL;
    for (size_t i = 0; i < rq->n; i++)
        sorted[i] = &rq->lines[i];
    qsort(sorted, rq->n, sizeof *sorted, line_cmp);
    return sorted;
}

static int digest_printf(EVP_MD_CTX *md, const char *fmt, ...) OD_PRINTF(2, 3);
static int digest_printf(EVP_MD_CTX *md, const char *fmt, ...)
{
    char text[ODO_PRODUCT_ID_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return n > 0 && (size_t)n < sizeof text && EVP_DigestUpdate(md, text, (size_t)n) == 1;
}

/* SHA-256 of the normalised request, "orders/v1 priority=<p>" and one
 * "<productId> <quantity>" per merged line in product order: key order,
 * whitespace, line order and item form do not change it. */
static od_status hash_request(orders *o, od_request *req, order_request *rq)
{
    const order_line **sorted = sorted_lines(o, req, rq);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    int ok = sorted != NULL && md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
             digest_printf(md, "orders/v1 priority=%s\n", rq->high ? "high" : "normal");
    for (size_t i = 0; ok && i < rq->n; i++)
        ok = digest_printf(md, "%s %lld\n", sorted[i]->product_id, (long long)sorted[i]->quantity);
    ok = ok && EVP_DigestFinal_ex(md, digest, &dlen) == 1 && dlen * 2 == ODI_HASH_LEN;
    EVP_MD_CTX_free(md);
    for (unsigned int i = 0; ok && i < dlen; i++)
        snprintf(rq->hash + 2 * i, 3, "%02x", digest[i]);
    return ok ? OD_OK : OD_ERR_NOMEM;
}

static od_status parse_request(orders *o, od_request *req, json_object *body, order_request *rq,
                               odm_err *e)
{
    static const char *const fields[] = {"items", "priority", NULL};
    rq->lines = o->host->req_alloc(req, o->max_items * sizeof *rq->lines);
    if (rq->lines == NULL)
        return OD_ERR_NOMEM;
    od_status s = odm_only_fields(body, fields, e);
    if (s == OD_OK)
        s = parse_items(o, body, rq, e);
    if (s == OD_OK)
        s = parse_priority(body, rq, e);
    if (s == OD_OK)
        s = hash_request(o, req, rq);
    return s;
}

/* ---- products ---- */

static od_status product_price(orders *o, const char *product_id, int64_t *cents)
{
    od_doc d = {0};
    od_status s = o->db.storage->ops->get(o->db.storage->self, ODO_TABLE_PRODUCTS, product_id, &d);
    if (s != OD_OK)
        return s;
    json_object *p = json_tokener_parse(d.body), *v = NULL;
    od_doc_clear(o->host, &d);
    s = OD_ERR_INTERNAL;
    if (p && json_object_object_get_ex(p, "priceCents", &v) &&
        json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0) {
        *cents = json_object_get_int64(v);
        s = OD_OK;
    }
    json_object_put(p);
    return s;
}

/* Capture unit prices now: later price changes never alter an order. On
 * OD_ERR_NOT_FOUND *missing names the unknown product. */
static od_status price_lines(orders *o, order_request *rq, const char **missing, odm_err *e)
{
    rq->total_cents = 0;
    for (size_t i = 0; i < rq->n; i++) {
        order_line *l = &rq->lines[i];
        od_status s = product_price(o, l->product_id, &l->unit_price_cents);
        if (s == OD_ERR_NOT_FOUND || s == OD_ERR_INVALID) {
            *missing = l->product_id;
            return OD_ERR_NOT_FOUND;
        }
        if (s != OD_OK)
            return s;
        int64_t line_total;
        if (__builtin_mul_overflow(l->quantity, l->unit_price_cents, &line_total) ||
            __builtin_add_overflow(rq->total_cents, line_total, &rq->total_cents)) {
            odm_err_set(e, "the order total is too large");
            return OD_ERR_INVALID;
        }
    }
    return OD_OK;
}

/* ---- the order document ---- */

static json_object *order_doc_new(orders *o, const char *customer_id, const char *order_id,
                                  const order_request *rq)
{
    json_object *doc = json_object_new_object(), *items = json_object_new_array();
    if (doc == NULL || items == NULL) {
        json_object_put(doc);
        json_object_put(items);
        return NULL;
    }
    json_object_object_add(doc, "id", json_object_new_string(order_id));
    json_object_object_add(doc, "customerId", json_object_new_string(customer_id));
    json_object_object_add(doc, "priority", json_object_new_string(rq->high ? "high" : "normal"));
    for (size_t i = 0; i < rq->n; i++) {
        json_object *line = json_object_new_object();
        json_object_object_add(line, "productId", json_object_new_string(rq->lines[i].product_id));
        json_object_object_add(line, "quantity", json_object_new_int64(rq->lines[i].quantity));
        json_object_object_add(line, "unitPriceCents",
                               json_object_new_int64(rq->lines[i].unit_price_cents));
        json_object_array_add(items, line);
    }
    json_object_object_add(doc, "items", items);
    json_object_object_add(doc, "totalCents", json_object_new_int64(rq->total_cents));
    json_object_object_add(doc, "reserved", json_object_new_boolean(0));
    json_object_object_add(doc, "released", json_object_new_boolean(0));
    json_object_object_add(doc, "attempts", json_object_new_int(0));
    int64_t now = o->host->now_ms();
    char at[ODM_TIME_LEN + 1];
    odm_iso8601(now, at);
    json_object_object_add(doc, "createdAt", json_object_new_string(at));
    if (odo_set_status(doc, ODO_PENDING, NULL, now) != OD_OK) {
        json_object_put(doc);
        return NULL;
    }
    return doc;
}

#define ORDER_MESSAGE_MAX (OD_ID_MAX + 32)

static size_t order_message(const char *order_id, char *msg)
{
    return (size_t)snprintf(msg, ORDER_MESSAGE_MAX, "{\"orderId\":\"%s\"}", order_id);
}

static uint32_t order_lane(int high)
{
    return high ? OD_LANE_PRIORITY : OD_LANE_NORMAL;
}

static od_status enqueue(orders *o, const char *order_id, int high)
{
    char msg[ORDER_MESSAGE_MAX];
    size_t n = order_message(order_id, msg);
    return o->queue->ops->send(o->queue->self, order_lane(high), msg, n, 0, NULL);
}

/* ---- POST /api/orders ---- */

static od_status reply_replayed(orders *o, od_request *req, json_object *doc)
{
    o->host->reply_header(req, "Idempotent-Replayed", "true");
    return reply_order(o, req, 200, "Order already created", doc, 0);
}

/* Which write of a new order found its key taken (OD_ERR_EXISTS). */
enum { TAKEN_NONE, TAKEN_KEY, TAKEN_ORDER };

/* An order that could not be queued must not exist: remove it and its
 * claim, so a retry with the same key creates it afresh. */
static od_status unstore_unqueued(orders *o, const char *order_id, uint64_t version,
                                  const odi_claim *claim, od_status why)
{
    o->host->log(o->mod, OD_LOG_WARN, "order %s not queued (%s): removed", order_id,
                 od_status_str(why));
    od_status ds = o->db.storage->ops->del(o->db.storage->self, ODO_TABLE_ORDERS, order_id, version);
    if (ds != OD_OK)
        o->host->log(o->mod, OD_LOG_ERROR, "cannot remove unqueued order %s: %s", order_id,
                     od_status_str(ds));
    odi_forget(&o->idem, claim);
    return OD_ERR_UNAVAILABLE;
}

/* Without put_batch: the claim (odi_claim_put: its expiry doc, then its
 * record), then the order, then the message; each later failure undoes
 * the earlier writes. A crash between them leaves a claim without an
 * order (replay() heals it) or an unqueued order (the queue worker's
 * sweeper queues it). */
static od_status store_in_steps(orders *o, json_object *doc, const char *order_id, int high,
                                const odi_claim *claim, uint64_t *version, int *taken)
{
    od_status s = OD_OK;
    if (claim && (s = odi_claim_put(&o->idem, claim)) != OD_OK) {
        *taken = s == OD_ERR_EXISTS ? TAKEN_KEY : TAKEN_NONE;
        return s;
    }
    s = odo_store(&o->db, doc, OD_PUT_IF_ABSENT, 0, version);
    if (s == OD_ERR_EXISTS)
        *taken = TAKEN_ORDER;
    if (s != OD_OK) {
        odi_forget(&o->idem, claim);
        return s;
    }
    s = enqueue(o, order_id, high);
    return s == OD_OK ? OD_OK : unstore_unqueued(o, order_id, *version, claim, s);
}

/* With put_batch: the claim (record and expiry doc) and the order in one
 * transaction, and the queue message in it too when the queue shares the
 * storage's store (docs/sqlite.md); else the message is sent after the
 * commit. */
static od_status store_in_batch(orders *o, json_object *doc, const char *order_id, int high,
                                const odi_claim *claim, uint64_t *version, int *taken)
{
    const od_storage *st = o->db.storage;
    od_put key_put = {0}, expiry_put = {0};
    odo_put order_put;
    if (claim)
        odi_claim_puts(claim, &key_put, &expiry_put);
    od_status s = odo_put_of(doc, OD_PUT_IF_ABSENT, 0, &order_put);
    if (s != OD_OK)
        return s;
    const od_put *puts[3] = {&order_put.put, &key_put, &expiry_put};
    size_t n = claim ? 3 : 1, failed = OD_BATCH_NONE;
    uint64_t versions[3] = {0, 0, 0};
    char msg[ORDER_MESSAGE_MAX];
    od_outbox box = {.size = sizeof box, .lane = order_lane(high), .queue = o->queue,
                     .body = msg, .len = order_message(order_id, msg)};
    s = st->ops->put_batch(st->self, puts, n, o->shared ? &box : NULL, versions, &failed);
    if (s == OD_ERR_EXISTS)
        *taken = failed == 0 ? TAKEN_ORDER : failed < n ? TAKEN_KEY : TAKEN_NONE;
    if (s != OD_OK)
        return s;
    *version = versions[0];
    if (o->shared || (s = enqueue(o, order_id, high)) == OD_OK)
        return OD_OK;
    return unstore_unqueued(o, order_id, *version, claim, s);
}

static od_status reply_created(orders *o, od_request *req, const order_request *rq,
                               json_object *doc)
{
    o->host->metric_add(rq->high ? o->created_high : o->created_normal, 1);
    o->host->metric_add(o->entered_pending, 1);
    return reply_order(o, req, 201, "Order created", doc, 0);
}

/* A retry healing this key's record wrote the order first: that one is queued. */
static od_status reply_existing(orders *o, od_request *req, const char *order_id)
{
    json_object *doc = NULL;
    uint64_t version = 0;
    od_status s = odo_load(&o->db, order_id, &doc, &version);
    s = s == OD_OK ? reply_replayed(o, req, doc) : odm_reply_status(o->host, req, s);
    json_object_put(doc);
    return s;
}

/* Store the priced order under order_id, with its Idempotency-Key claim
 * when given, and queue it. The order only exists if it is queued. When
 * another request holds the claim's key, nothing is answered and *lost is
 * set: look at the key again. */
static od_status commit_order(orders *o, od_request *req, const char *customer_id,
                              const char *order_id, order_request *rq, odi_claim *claim,
                              int *lost)
{
    json_object *doc = order_doc_new(o, customer_id, order_id, rq);
    uint64_t version = 0;
    int taken = TAKEN_NONE;
    if (doc == NULL)
        return OD_ERR_NOMEM;
    if (claim)
        odi_claim_fill(&o->idem, claim, order_id);
    od_status s = o->batch ? store_in_batch(o, doc, order_id, rq->high, claim, &version, &taken)
                           : store_in_steps(o, doc, order_id, rq->high, claim, &version, &taken);
    if (s == OD_OK) {
        s = reply_created(o, req, rq, doc);
        json_object_put(doc);
        return s;
    }
    json_object_put(doc);
    if (s != OD_ERR_EXISTS || taken == TAKEN_NONE)
        return odm_reply_status(o->host, req, s);
    if (taken == TAKEN_ORDER || lost == NULL)
        return reply_existing(o, req, order_id);
    /* Another request claimed the key between our look and our write. */
    *lost = 1;
    return OD_OK;
}

/* Price the lines; on failure the reply (404 for an unknown product) has
 * been given and the status is not OD_OK. */
static od_status price_or_reply(orders *o, od_request *req, order_request *rq, int *replied)
{
    const char *missing = NULL;
    odm_err e = {{0}};
    od_status s = price_lines(o, rq, &missing, &e);
    *replied = s != OD_OK;
    if (s == OD_ERR_NOT_FOUND) {
        odm_err_set(&e, "product '%s' not found", missing);
        return o->host->reply_error(req, 404, "not_found", e.msg);
    }
    if (s == OD_ERR_INVALID)
        return odm_reply_invalid(o->host, req, &e);
    return s == OD_OK ? OD_OK : odm_reply_status(o->host, req, s);
}

static od_status price_and_commit(orders *o, od_request *req, const char *customer_id,
                                  const char *order_id, order_request *rq)
{
    int replied = 0;
    od_status s = price_or_reply(o, req, rq, &replied);
    if (replied)
        return s;
    return commit_order(o, req, customer_id, order_id, rq, NULL, NULL);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A retry of a key already taken: the same request gets the original
 * order, a different one 409. Without put_batch the first request writes
 * its record before its order, so the order may not be there yet: wait for
 * it briefly (with put_batch both appear together and the first look hits). */
static od_status replay(orders *o, od_request *req, const char *customer_id, const odi_record *rec,
                        order_request *rq)
{
    if (strcmp(rec->hash, rq->hash) != 0)
        return o->host->reply_error(req, 409, "conflict",
                                    "Idempotency-Key was already used with a different request");
    int64_t deadline = o->host->monotonic_ms() + IDEM_WAIT_MS;
    for (;;) {
        json_object *doc = NULL;
        uint64_t version = 0;
        od_status s = odo_load(&o->db, rec->order_id, &doc, &version);
        if (s == OD_OK) {
            s = reply_replayed(o, req, doc);
            json_object_put(doc);
            return s;
        }
        if (s != OD_ERR_NOT_FOUND)
            return odm_reply_status(o->host, req, s);
        if (o->host->now_ms() - rec->created_ms > ODI_STALE_MS)
            return price_and_commit(o, req, customer_id, rec->order_id, rq);
        if (o->host->monotonic_ms() >= deadline)
            return o->host->reply_error(req, 409, "conflict",
                                        "A request with this Idempotency-Key is in progress");
        sleep_ms(IDEM_POLL_MS);
    }
}

/* Answer the request with the key free: price (once: an unknown product
 * answers 404 before the key is claimed, so the client may correct the
 * body and retry with the same key), then claim and commit. *lost: as
 * for commit_order. */
static od_status claim_free_key(orders *o, od_request *req, const char *customer_id,
                                const char *idem_key, order_request *rq, char *order_id,
                                int *lost)
{
    if (order_id[0] == '\0') {
        od_status s = o->host->new_id(order_id);
        if (s != OD_OK)
            return s;
        int replied = 0;
        s = price_or_reply(o, req, rq, &replied);
        if (replied)
            return s;
    }
    odi_claim claim = {.key = idem_key, .hash = rq->hash};
    return commit_order(o, req, customer_id, order_id, rq, &claim, lost);
}

/* Look at the key until this request is answered: a live record replays,
 * an expired one is ended (odi_end) and the key claimed afresh, a free
 * key is claimed. Losing a race means looking again; after IDEM_WAIT_MS
 * of that the answer is 409 "in progress". */
static od_status create_idempotent(orders *o, od_request *req, const char *customer_id,
                                   const char *key, order_request *rq)
{
    char idem_key[ODI_RECORD_KEY_MAX];
    char order_id[OD_UUID_STR_LEN + 1] = "";
    int64_t deadline = o->host->monotonic_ms() + IDEM_WAIT_MS;
    snprintf(idem_key, sizeof idem_key, "%s:%s", customer_id, key);
    for (int misses = 0;;) {
        odi_record rec;
        int lost = 0, deleted = 0;
        od_status s = odi_find(&o->idem, idem_key, &rec);
        if (s == OD_OK && !odi_expired(&o->idem, &rec))
            return replay(o, req, customer_id, &rec, rq);
        if (s == OD_OK) {
            s = odi_end(&o->idem, idem_key, &rec, &deleted);
            if (s == OD_ERR_CONFLICT)
                misses += 2; /* someone else is ending it: give them time */
            else if (s != OD_OK)
                return odm_reply_status(o->host, req, s);
        } else if (s == OD_ERR_NOT_FOUND) {
            s = claim_free_key(o, req, customer_id, idem_key, rq, order_id, &lost);
            if (!lost)
                return s;
            misses++; /* the winner's record is usually there at once */
        } else {
            return odm_reply_status(o->host, req, s);
        }
        if (misses < 2)
            continue;
        if (o->host->monotonic_ms() >= deadline)
            return o->host->reply_error(req, 409, "conflict",
                                        "A request with this Idempotency-Key is in progress");
        sleep_ms(IDEM_POLL_MS);
    }
}

static od_status h_create(void *self, od_request *req)
{
    orders *o = self;
    const od_principal *who = o->host->req_principal(req);
    const char *key = o->host->req_header(req, IDEM_HEADER);
    if (key != NULL && !printable_ascii(key, ODI_KEY_MAX))
        return o->host->reply_error(req, 400, "validation_failed",
                                    "Idempotency-Key must be 1 to 128 visible ASCII characters");
    json_object *body = odm_body_object(o->host, req);
    if (body == NULL)
        return OD_OK;
    order_request rq = {0};
    odm_err e = {{0}};
    od_status s = parse_request(o, req, body, &rq, &e);
    if (s == OD_ERR_INVALID)
        s = odm_reply_invalid(o->host, req, &e);
    else if (s == OD_OK && key != NULL)
        s = create_idempotent(o, req, who->user_id, key, &rq);
    else if (s == OD_OK) {
        char order_id[OD_UUID_STR_LEN + 1];
        s = o->host->new_id(order_id);
        if (s == OD_OK)
            s = price_and_commit(o, req, who->user_id, order_id, &rq);
    }
    json_object_put(body); /* last: rq borrows product ids from it */
    return s;
}

/* ---- GET /api/orders ---- */

typedef struct list_filter {
    const char *index; /* NULL: scan */
    const char *value;
} list_filter;

/* Customers see their own orders; admins all, optionally by one filter. */
static od_status list_filter_of(orders *o, od_request *req, const od_principal *who, list_filter *f,
                                odm_err *e)
{
    const char *status = o->host->req_query(req, "status");
    const char *customer = o->host->req_query(req, "customerId");
    *f = (list_filter){NULL, NULL};
    if (who->role != OD_ROLE_ADMIN) {
        if (status != NULL || customer != NULL) {
            odm_err_set(e, "filters 'status' and 'customerId' are for admins");
            return OD_ERR_INVALID;
        }
        *f = (list_filter){ODO_INDEX_CUSTOMER, who->user_id};
    } else if (status != NULL && customer != NULL) {
        odm_err_set(e, "use either 'status' or 'customerId', not both");
        return OD_ERR_INVALID;
    } else if (status != NULL) {
        if (!odo_status_valid(status)) {
            odm_err_set(e, "query parameter 'status' must be one of PENDING, PROCESSING, "
                           "COMPLETED, FAILED, CANCELLED");
            return OD_ERR_INVALID;
        }
        *f = (list_filter){ODO_INDEX_STATUS, status};
    } else if (customer != NULL) {
        if (!odm_is_uuid(customer)) {
            odm_err_set(e, "query parameter 'customerId' must be a user id");
            return OD_ERR_INVALID;
        }
        *f = (list_filter){ODO_INDEX_CUSTOMER, customer};
    }
    return OD_OK;
}

static od_status reply_page(orders *o, od_request *req, const od_page *page)
{
    json_object *items = json_object_new_array();
    if (items == NULL)
        return OD_ERR_NOMEM;
    for (size_t i = 0; i < page->count; i++) {
        json_object *doc = json_tokener_parse(page->items[i].body);
        json_object *view = doc ? order_view(doc, 0) : NULL;
        if (view != NULL)
            json_object_array_add(items, view);
        else
            o->host->log(o->mod, OD_LOG_ERROR, "order %s is not a valid document",
                         page->items[i].key);
        json_object_put(doc);
    }
    od_status s = odm_reply_list(o->host, req, items, page->next);
    json_object_put(items);
    return s;
}

static od_status h_list(void *self, od_request *req)
{
    orders *o = self;
    const od_principal *who = o->host->req_principal(req);
    odm_page_req pr;
    list_filter f;
    odm_err e = {{0}};
    if (odm_page_params(o->host, req, &pr, &e) != OD_OK ||
        list_filter_of(o, req, who, &f, &e) != OD_OK)
        return odm_reply_invalid(o->host, req, &e);
    const od_storage *st = o->db.storage;
    od_page page = {0};
    /* Ids are UUIDv7, so descending key order is newest first. */
    od_status s;
    if (f.index != NULL)
        s = st->ops->query(st->self, ODO_TABLE_ORDERS, f.index, f.value, pr.cursor, pr.limit, 1,
                           &page);
    else
        s = st->ops->scan(st->self, ODO_TABLE_ORDERS, pr.cursor, pr.limit, 1, &page);
    if (s == OD_ERR_INVALID) {
        odm_err_set(&e, "query parameter 'cursor' is not a valid cursor");
        return odm_reply_invalid(o->host, req, &e);
    }
    if (s != OD_OK)
        return odm_reply_status(o->host, req, s);
    s = reply_page(o, req, &page);
    od_page_clear(o->host, &page);
    return s;
}

/* ---- GET /api/orders/:id ---- */

/* The order named by the path if the caller may see it; else a 404 (or
 * the backend's status) has been answered and *doc is NULL. */
static od_status load_visible(orders *o, od_request *req, json_object **doc, uint64_t *version)
{
    const char *id = o->host->req_param(req, "id");
    const od_principal *who = o->host->req_principal(req);
    *doc = NULL;
    if (id == NULL || !odm_is_uuid(id))
        return reply_not_found(o, req);
    od_status s = odo_load(&o->db, id, doc, version);
    if (s == OD_ERR_NOT_FOUND)
        return reply_not_found(o, req);
    if (s != OD_OK)
        return odm_reply_status(o->host, req, s);
    if (!visible_to(who, *doc)) {
        /* 404, not 403: ids of other people's orders are not confirmed. */
        json_object_put(*doc);
        *doc = NULL;
        return reply_not_found(o, req);
    }
    return OD_OK;
}

static od_status h_get(void *self, od_request *req)
{
    orders *o = self;
    json_object *doc = NULL;
    uint64_t version = 0;
    od_status s = load_visible(o, req, &doc, &version);
    if (doc == NULL)
        return s;
    s = reply_order(o, req, 200, "OK", doc, 1);
    json_object_put(doc);
    return s;
}

/* ---- DELETE /api/orders/:id ---- */

static int cancellable(const char *status)
{
    return strcmp(status, ODO_PENDING) == 0 || strcmp(status, ODO_PROCESSING) == 0;
}

/* Give back stock the order may hold. Only an order that reached
 * PROCESSING can hold any; the tokens make a repeat (a retried DELETE
 * after a failed release) give back nothing twice. */
static od_status release_stock(orders *o, json_object *doc)
{
    if (!odo_reserved(doc) && !odo_was_processing(doc))
        return OD_OK;
    od_status s = odo_stock_release_order(&o->db, doc);
    if (s != OD_OK)
        o->host->log(o->mod, OD_LOG_WARN, "order %s cancelled, stock not yet released: %s",
                     odo_str(doc, "id"), od_status_str(s));
    return s;
}

static od_status reply_not_cancellable(orders *o, od_request *req, json_object *doc)
{
    char msg[96];
    const char *status = odo_str(doc, "status");
    /* A retried DELETE finishes a release an earlier one could not do. */
    if (strcmp(status, ODO_CANCELLED) == 0 && release_stock(o, doc) != OD_OK)
        return o->host->reply_error(req, 503, "unavailable", "Stock release pending, retry");
    snprintf(msg, sizeof msg, "Order is %s and can no longer be cancelled", status);
    return o->host->reply_error(req, 409, "conflict", msg);
}

static od_status h_cancel(void *self, od_request *req)
{
    orders *o = self;
    json_object *doc = NULL;
    uint64_t version = 0;
    od_status s = load_visible(o, req, &doc, &version);
    if (doc == NULL)
        return s;
    const od_principal *who = o->host->req_principal(req);
    const char *reason = strcmp(odo_str(doc, "customerId"), who->user_id) == 0
                             ? "cancelled_by_customer"
                             : "cancelled_by_admin";
    s = odo_transition(&o->db, &doc, &version, ODO_CANCELLED, reason, cancellable);
    if (s == OD_ERR_CONFLICT) {
        s = reply_not_cancellable(o, req, doc);
    } else if (s != OD_OK) {
        s = odm_reply_status(o->host, req, s);
    } else {
        o->host->metric_add(o->entered_cancelled, 1);
        if (release_stock(o, doc) != OD_OK)
            s = o->host->reply_error(req, 503, "unavailable",
                                     "Order cancelled; stock release pending, retry the request");
        else
            s = reply_order(o, req, 200, "Order cancelled", doc, 1);
    }
    json_object_put(doc);
    return s;
}

/* ---- lifecycle ---- */

static const od_index_def ORDER_INDEXES[] = {
    {ODO_INDEX_CUSTOMER, 0},
    {ODO_INDEX_STATUS, 0},
};

static od_status define_tables(orders *o)
{
    const od_table_def tables[] = {
        {sizeof(od_table_def), ODO_TABLE_ORDERS, ORDER_INDEXES, 2},
        {sizeof(od_table_def), ODO_TABLE_IDEMPOTENCY, NULL, 0},
        {sizeof(od_table_def), ODO_TABLE_IDEM_EXPIRY, NULL, 0},
    };
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        od_status s = o->db.storage->ops->define_table(o->db.storage->self, &tables[i]);
        if (s != OD_OK) {
            o->host->log(o->mod, OD_LOG_ERROR, "cannot define table %s: %s", tables[i].name,
                         od_status_str(s));
            return s;
        }
    }
    return OD_OK;
}

static od_status register_metrics(orders *o)
{
    const od_host_api *h = o->host;
    static const char created[] = "orderd_orders_created_total";
    static const char created_help[] = "Orders accepted, by priority";
    o->created_normal =
        h->metric(o->mod, OD_METRIC_COUNTER, created, created_help, "priority=\"normal\"");
    o->created_high =
        h->metric(o->mod, OD_METRIC_COUNTER, created, created_help, "priority=\"high\"");
    o->entered_pending = h->metric(o->mod, OD_METRIC_COUNTER, ODO_METRIC_STATUS,
                                   ODO_METRIC_STATUS_HELP, "status=\"PENDING\"");
    o->entered_cancelled = h->metric(o->mod, OD_METRIC_COUNTER, ODO_METRIC_STATUS,
                                     ODO_METRIC_STATUS_HELP, "status=\"CANCELLED\"");
    od_status s = odi_metrics(&o->idem);
    return o->created_normal && o->created_high && o->entered_pending && o->entered_cancelled &&
                   s == OD_OK
               ? OD_OK
               : OD_ERR_NOMEM;
}

static od_status register_routes(orders *o)
{
    static const struct {
        const char *method, *pattern;
        od_handler_fn fn;
    } routes[] = {
        {"POST", "/api/orders", h_create},
        {"GET", "/api/orders", h_list},
        {"GET", "/api/orders/:id", h_get},
        {"DELETE", "/api/orders/:id", h_cancel},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        od_status s = o->host->route(o->mod, routes[i].method, routes[i].pattern, OD_ACCESS_USER,
                                     routes[i].fn);
        if (s != OD_OK)
            return s;
    }
    return OD_OK;
}

static od_status read_config(orders *o)
{
    int64_t max_items = 0;
    od_status s = o->host->config_int(o->mod, "max_items", ORDERS_MAX_ITEMS_DEFAULT, 1,
                                      ORDERS_MAX_ITEMS_LIMIT, &max_items);
    if (s == OD_OK)
        s = odi_config(&o->idem, o->host, o->mod, o->db.storage);
    o->max_items = (size_t)max_items;
    return s;
}

/* Decide once, here, how a new order is written (module state is read-only
 * afterwards), and tell the operator. */
static void detect_transactions(orders *o)
{
    const od_storage_ops *st = o->db.storage->ops;
    const od_queue_ops *q = o->queue->ops;
    o->batch = OD_HAS_OP(od_storage_ops, st, put_batch);
    const char *st_store = OD_HAS_OP(od_storage_ops, st, store) ? st->store(o->db.storage->self) : NULL;
    const char *q_store = OD_HAS_OP(od_queue_ops, q, store) ? q->store(o->queue->self) : NULL;
    o->shared = o->batch && st_store && q_store && strcmp(st_store, q_store) == 0;
    if (o->shared)
        o->host->log(o->mod, OD_LOG_INFO,
                     "new orders: order, Idempotency-Key record and queue message in one "
                     "transaction (storage and queue share %s)", st_store);
    else
        o->host->log(o->mod, OD_LOG_INFO, "new orders: %s, then the queue message",
                     o->batch ? "order and Idempotency-Key record in one transaction"
                              : "Idempotency-Key record, then the order");
}

static od_status orders_init(const od_host_api *host, od_module *mod, void **self)
{
    orders *o = host->calloc(1, sizeof *o);
    if (o == NULL)
        return OD_ERR_NOMEM;
    o->host = host;
    o->mod = mod;
    o->db = (odo_ctx){host, host->storage(mod)};
    o->queue = host->queue(mod);
    od_status s = OD_OK;
    if (o->db.storage == NULL || o->queue == NULL) {
        host->log(mod, OD_LOG_ERROR, "orders needs a storage and a queue backend");
        s = OD_ERR_CONFIG;
    }
    if (s == OD_OK)
        s = read_config(o);
    if (s == OD_OK)
        detect_transactions(o);
    if (s == OD_OK)
        s = define_tables(o);
    if (s == OD_OK)
        s = register_metrics(o);
    if (s == OD_OK)
        s = register_routes(o);
    if (s == OD_OK)
        s = odi_sync_init(&o->idem);
    if (s != OD_OK) {
        host->free(o);
        return s;
    }
    *self = o;
    return OD_OK;
}

/* Main thread: starts the idempotency janitor (idempotency.c). */
static od_status orders_start(void *self)
{
    orders *o = self;
    return odi_janitor_start(&o->idem);
}

/* Main thread: wakes the janitor whether it waits or sweeps, and joins it. */
static void orders_stop(void *self)
{
    orders *o = self;
    odi_janitor_stop(&o->idem);
}

static void orders_destroy(void *self)
{
    orders *o = self;
    odi_destroy(&o->idem);
    o->host->free(o);
}

static const od_module_desc ORDERS_MODULE = {
    .magic = OD_MODULE_MAGIC,
    .abi_major = OD_ABI_MAJOR,
    .abi_minor = OD_ABI_MINOR,
    .size = sizeof(od_module_desc),
    .kind = OD_KIND_SERVICE,
    .name = "orders",
    .version = "1.0.0",
    .description = "Orders: create, list, read and cancel; queues new orders",
    .init = orders_init,
    .start = orders_start,
    .stop = orders_stop,
    .destroy = orders_destroy,
    .ops = NULL,
};

OD_MODULE_EXPORT const od_module_desc *od_module_entry(void);
OD_MODULE_EXPORT const od_module_desc *od_module_entry(void)
{
    return &ORDERS_MODULE;
}
