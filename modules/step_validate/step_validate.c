/*
 * step_validate - order step "validate" (OD_KIND_STEP, config group
 * "validate", reads no keys, owns no threads).
 *
 * Re-reads the order (the snapshot in the step context may be stale) and
 * fails it unless it is still PENDING or PROCESSING ("order_not_pending")
 * and every product it names still exists ("product_not_found"). A storage
 * outage is a RETRY. It changes nothing, so redelivery is harmless. State
 * is read-only after init; run() is called from many queue workers at once.
 */
#include <stdio.h>
#include <string.h>

#include "order_model.h"

typedef struct step_validate {
    const od_host_api *host;
    od_module *mod;
    odo_ctx db;
} step_validate;

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

static od_status product_exists(const step_validate *v, const char *product_id)
{
    od_doc d = {0};
    od_status s = v->db.storage->ops->get(v->db.storage->self, ODO_TABLE_PRODUCTS, product_id, &d);
    od_doc_clear(v->host, &d);
    return s == OD_ERR_INVALID ? OD_ERR_NOT_FOUND : s;
}

static int check_products(const step_validate *v, json_object *doc, od_step_ctx *ctx)
{
    size_t n = odo_line_count(doc);
    if (n == 0)
        return verdict(ctx, OD_STEP_FAIL, "order_has_no_items");
    for (size_t i = 0; i < n; i++) {
        const char *product_id = NULL;
        int64_t quantity = 0;
        od_status s = odo_line(doc, i, &product_id, &quantity);
        if (s == OD_OK)
            s = product_exists(v, product_id);
        if (s == OD_ERR_NOT_FOUND)
            return verdict(ctx, OD_STEP_FAIL, "product_not_found");
        if (s != OD_OK)
            return storage_verdict(ctx, s);
    }
    return OD_STEP_CONTINUE;
}

static int validate_run(void *self, od_step_ctx *ctx)
{
    const step_validate *v = self;
    json_object *doc = NULL;
    uint64_t version = 0;
    od_status s = odo_load(&v->db, ctx->order_id, &doc, &version);
    if (s == OD_ERR_NOT_FOUND)
        return verdict(ctx, OD_STEP_FAIL, "order_not_found");
    if (s != OD_OK)
        return storage_verdict(ctx, s);
    const char *status = odo_str(doc, "status");
    int result;
    if (strcmp(status, ODO_PENDING) != 0 && strcmp(status, ODO_PROCESSING) != 0)
        result = verdict(ctx, OD_STEP_FAIL, "order_not_pending");
    else
        result = check_products(v, doc, ctx);
    json_object_put(doc);
    return result;
}

static od_status validate_init(const od_host_api *host, od_module *mod, void **self)
{
    const od_storage *storage = host->storage(mod);
    if (storage == NULL) {
        host->log(mod, OD_LOG_ERROR, "validate needs a storage backend");
        return OD_ERR_CONFIG;
    }
    step_validate *v = host->calloc(1, sizeof *v);
    if (v == NULL)
        return OD_ERR_NOMEM;
    *v = (step_validate){host, mod, {host, storage}};
    *self = v;
    return OD_OK;
}

static void validate_destroy(void *self)
{
    step_validate *v = self;
    v->host->free(v);
}

static const od_step_ops VALIDATE_OPS = {
    .size = sizeof(od_step_ops), .run = validate_run, .compensate = NULL, /* nothing to undo */
};

static const od_module_desc VALIDATE_MODULE = {
    .magic = OD_MODULE_MAGIC,
    .abi_major = OD_ABI_MAJOR,
    .abi_minor = OD_ABI_MINOR,
    .size = sizeof(od_module_desc),
    .kind = OD_KIND_STEP,
    .name = "validate",
    .version = "1.0.0",
    .description = "Order step: the order is still open and its products exist",
    .init = validate_init,
    .destroy = validate_destroy,
    .ops = &VALIDATE_OPS,
};

OD_MODULE_EXPORT const od_module_desc *od_module_entry(void);
OD_MODULE_EXPORT const od_module_desc *od_module_entry(void)
{
    return &VALIDATE_MODULE;
}
