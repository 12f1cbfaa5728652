/*
 * step_reserve_stock - order step "reserve_stock" (OD_KIND_STEP, config
 * group "reserve_stock", reads no keys, owns no threads).
 *
 * Takes every line's quantity from the `stock` counters, all or nothing:
 * each line is a counter_add(-qty, floor 0) with the op token
 * "reserve:<order>:<product>", so a redelivered message never takes stock
 * twice. Then it records "reserved":true on the order with a conditional
 * put; an order cancelled meanwhile gets its stock back and the step FAILs
 * "order_cancelled". On a shortfall it first records "released":true, then
 * gives back the lines already taken (tokens "release:...") and FAILs
 * "insufficient_stock"; compensate() does the same for every line ("release
 * only what was reserved", docs/data-model.md). "released" is final: a
 * rerun after a crash FAILs "stock_released" instead of counting spent
 * tokens as stock held. State is read-only after init; run() and
 * compensate() are called from many queue workers at once.
 */
#include <stdio.h>
#include <string.h>

#include "odm.h"
#include "order_model.h"

typedef struct step_reserve {
    const od_host_api *host;
    od_module *mod;
    odo_ctx db;
} step_reserve;

static int verdict(od_step_ctx *ctx, int verdict_code, const char *reason)
{
    snprintf(ctx->reason, sizeof ctx->reason, "%s", reason);
    return verdict_code;
}

/* RETRY what may pass later (an outage), FAIL what will not. */
static int storage_verdict(od_step_ctx *ctx, od_status s)
{
    if (s == OD_ERR_UNAVAILABLE || s == OD_ERR_CLOSED)
        return verdict(ctx, OD_STEP_RETRY, "storage_unavailable");
    return verdict(ctx, OD_STEP_FAIL, "storage_error");
}

/* Give back lines [0, n) of an order that holds them. */
static od_status release_first(const step_reserve *r, json_object *doc, size_t n)
{
    const char *order_id = odo_str(doc, "id");
    for (size_t i = 0; i < n; i++) {
        const char *product_id = NULL;
        int64_t quantity = 0;
        od_status s = odo_line(doc, i, &product_id, &quantity);
        if (s == OD_OK)
            s = odo_stock_release(&r->db, order_id, product_id, quantity);
        if (s != OD_OK)
            return s;
    }
    return OD_OK;
}

static int is_open(const char *status)
{
    return strcmp(status, ODO_PENDING) == 0 || strcmp(status, ODO_PROCESSING) == 0;
}

#define HOLD_RESERVED 1 /* "reserved": true */
#define HOLD_RELEASED 2 /* "reserved": false, "released": true */

/* Record what the order holds, against the version read; a lost race
 * re-reads and decides again, since a cancel may have come in between.
 * "released" is written BEFORE any stock is given back and is final: the
 * reserve tokens of a released line are spent, so a rerun (a redelivery
 * after a crash) would otherwise count stock it no longer holds.
 * OD_ERR_CONFLICT: the order is closed, or released when asked to record
 * a reservation; *doc is then the current order. */
static od_status record_hold(const step_reserve *r, json_object **doc, uint64_t *version, int hold)
{
    for (int attempt = 0; attempt < ODO_PUT_RETRIES; attempt++) {
        if (!is_open(odo_str(*doc, "status")))
            return OD_ERR_CONFLICT;
        if (odo_released(*doc))
            return hold == HOLD_RELEASED ? OD_OK : OD_ERR_CONFLICT;
        if (hold == HOLD_RESERVED && odo_reserved(*doc))
            return OD_OK;
        char at[ODM_TIME_LEN + 1];
        odm_iso8601(r->host->now_ms(), at);
        json_object_object_add(*doc, "reserved", json_object_new_boolean(hold == HOLD_RESERVED));
        json_object_object_add(*doc, "released", json_object_new_boolean(hold == HOLD_RELEASED));
        json_object_object_add(*doc, "updatedAt", json_object_new_string(at));
        od_status s = odo_store(&r->db, *doc, OD_PUT_IF_VERSION, *version, version);
        if (s != OD_ERR_CONFLICT)
            return s;
        json_object *fresh = NULL;
        if ((s = odo_load(&r->db, odo_str(*doc, "id"), &fresh, version)) != OD_OK)
            return s;
        json_object_put(*doc);
        *doc = fresh;
    }
    return OD_ERR_UNAVAILABLE; /* constant contention: RETRY later */
}

/* The order is closed to reservations: give back whatever it may hold. */
static int fail_closed(const step_reserve *r, json_object *doc, od_step_ctx *ctx)
{
    const char *status = odo_str(doc, "status");
    /* A COMPLETED order keeps its stock: another delivery finished it while
     * this one ran, and giving its units back would oversell. Only an order
     * that ended without completing may hold stock this run just took. */
    if (strcmp(status, ODO_COMPLETED) == 0)
        return verdict(ctx, OD_STEP_FAIL, "order_not_pending");
    od_status s = odo_stock_release_order(&r->db, doc);
    if (s != OD_OK)
        return storage_verdict(ctx, s);
    return verdict(ctx, OD_STEP_FAIL,
                   strcmp(status, ODO_CANCELLED) == 0 ? "order_cancelled" : "order_not_pending");
}

/* Line `failed` could not be reserved: mark the order released, then give
 * back lines [0, failed). If the mark cannot be written nothing is given
 * back and the step is retried: the rerun holds the same lines. */
static int give_up(const step_reserve *r, json_object **doc, uint64_t *version, size_t failed,
                   const char *reason, od_step_ctx *ctx)
{
    od_status s = record_hold(r, doc, version, HOLD_RELEASED);
    if (s == OD_ERR_CONFLICT)
        return fail_closed(r, *doc, ctx);
    if (s == OD_OK)
        s = release_first(r, *doc, failed);
    return s == OD_OK ? verdict(ctx, OD_STEP_FAIL, reason) : storage_verdict(ctx, s);
}

/* Reserve every line or none. */
static int reserve_lines(const step_reserve *r, json_object **doc, uint64_t *version,
                         od_step_ctx *ctx)
{
    size_t n = odo_line_count(*doc);
    for (size_t i = 0; i < n; i++) {
        const char *product_id = NULL;
        int64_t quantity = 0;
        od_status s = odo_line(*doc, i, &product_id, &quantity);
        if (s != OD_OK)
            return verdict(ctx, OD_STEP_FAIL, "order_corrupt");
        s = odo_stock_reserve(&r->db, ctx->order_id, product_id, quantity);
        if (s == OD_ERR_CONFLICT)
            return give_up(r, doc, version, i, "insufficient_stock", ctx);
        if (s == OD_ERR_NOT_FOUND)
            return give_up(r, doc, version, i, "product_not_found", ctx);
        if (s != OD_OK)
            return storage_verdict(ctx, s);
    }
    od_status s = record_hold(r, doc, version, HOLD_RESERVED);
    if (s == OD_ERR_CONFLICT && !is_open(odo_str(*doc, "status")))
        return fail_closed(r, *doc, ctx);
    if (s == OD_ERR_CONFLICT) /* released meanwhile: the releaser gives it all back */
        return verdict(ctx, OD_STEP_FAIL, "stock_released");
    return s == OD_OK ? OD_STEP_CONTINUE : storage_verdict(ctx, s);
}

static int reserve_run(void *self, od_step_ctx *ctx)
{
    const step_reserve *r = self;
    json_object *doc = NULL;
    uint64_t version = 0;
    od_status s = odo_load(&r->db, ctx->order_id, &doc, &version);
    if (s != OD_OK)
        return s == OD_ERR_NOT_FOUND ? verdict(ctx, OD_STEP_FAIL, "order_not_found")
                                     : storage_verdict(ctx, s);
    int result;
    if (!is_open(odo_str(doc, "status")))
        result = fail_closed(r, doc, ctx);
    else if (odo_released(doc))
        result = verdict(ctx, OD_STEP_FAIL, "stock_released"); /* a rerun after giving back */
    else if (odo_reserved(doc))
        result = OD_STEP_CONTINUE; /* redelivered after the reservation was recorded */
    else
        result = reserve_lines(r, &doc, &version, ctx);
    json_object_put(doc);
    return result;
}

static json_object *parse_snapshot(const od_step_ctx *ctx)
{
    json_tokener *tok = json_tokener_new();
    json_object *doc =
        tok ? json_tokener_parse_ex(tok, ctx->order_json, (int)ctx->order_len) : NULL;
    if (tok)
        json_tokener_free(tok);
    if (doc != NULL && strcmp(odo_str(doc, "id"), ctx->order_id) != 0) {
        json_object_put(doc);
        doc = NULL;
    }
    return doc;
}

/* Mark the order released (so a rerun cannot count spent tokens as stock
 * held), then give back what the tokens say it holds. The lines come from
 * the current order, or from the snapshot when it cannot be read (items
 * never change). Giving back goes ahead even if the mark cannot be
 * written: holding stock for a failed order forever is the worse outcome. */
static void reserve_compensate(void *self, const od_step_ctx *ctx)
{
    const step_reserve *r = self;
    json_object *doc = NULL;
    uint64_t version = 0;
    od_status s = odo_load(&r->db, ctx->order_id, &doc, &version);
    if (s == OD_OK)
        s = record_hold(r, &doc, &version, HOLD_RELEASED);
    if (s != OD_OK && s != OD_ERR_CONFLICT)
        r->host->log(r->mod, OD_LOG_WARN, "order %s: cannot mark it released: %s", ctx->order_id,
                     od_status_str(s));
    if (doc == NULL)
        doc = parse_snapshot(ctx);
    s = doc ? odo_stock_release_order(&r->db, doc) : OD_ERR_INTERNAL;
    if (s != OD_OK)
        r->host->log(r->mod, OD_LOG_ERROR, "order %s: stock not released: %s", ctx->order_id,
                     od_status_str(s));
    json_object_put(doc);
}

static od_status reserve_init(const od_host_api *host, od_module *mod, void **self)
{
    const od_storage *storage = host->storage(mod);
    if (storage == NULL) {
        host->log(mod, OD_LOG_ERROR, "reserve_stock needs a storage backend");
        return OD_ERR_CONFIG;
    }
    step_reserve *r = host->calloc(1, sizeof *r);
    if (r == NULL)
        return OD_ERR_NOMEM;
    *r = (step_reserve){host, mod, {host, storage}};
    *self = r;
    return OD_OK;
}

static void reserve_destroy(void *self)
{
    step_reserve *r = self;
    r->host->free(r);
}

static const od_step_ops RESERVE_OPS = {
    .size = sizeof(od_step_ops),
    .run = reserve_run,
    .compensate = reserve_compensate,
};

static const od_module_desc RESERVE_MODULE = {
    .magic = OD_MODULE_MAGIC,
    .abi_major = OD_ABI_MAJOR,
    .abi_minor = OD_ABI_MINOR,
    .size = sizeof(od_module_desc),
    .kind = OD_KIND_STEP,
    .name = "reserve_stock",
    .version = "1.0.0",
    .description = "Order step: reserve stock for every line, all or nothing",
    .init = reserve_init,
    .destroy = reserve_destroy,
    .ops = &RESERVE_OPS,
};

OD_MODULE_EXPORT const od_module_desc *od_module_entry(void);
OD_MODULE_EXPORT const od_module_desc *od_module_entry(void)
{
    return &RESERVE_MODULE;
}
