/*
 * step_complete - order step "complete" (OD_KIND_STEP, config group
 * "complete", reads no keys, owns no threads).
 *
 * Moves the order PROCESSING -> COMPLETED with a conditional put that
 * appends to its history; a lost race re-reads and decides again, so an
 * order cancelled meanwhile is never completed (FAIL "order_cancelled").
 * A redelivery that finds the order COMPLETED continues without writing.
 * Bumps orderd_orders_status_changes_total{status="COMPLETED"}. State is
 * read-only after init; run() is called from many queue workers at once.
 */
#include <stdio.h>
#include <string.h>

#include "order_model.h"

typedef struct step_complete {
    const od_host_api *host;
    od_module *mod;
    odo_ctx db;
    od_metric *entered_completed;
} step_complete;

static int verdict(od_step_ctx *ctx, int verdict_code, const char *reason)
{
    snprintf(ctx->reason, sizeof ctx->reason, "%s", reason);
    return verdict_code;
}

static int is_processing(const char *status)
{
    return strcmp(status, ODO_PROCESSING) == 0;
}

/* The verdict for an order that was not (or no longer) PROCESSING. */
static int verdict_for(json_object *doc, od_step_ctx *ctx)
{
    const char *status = odo_str(doc, "status");
    if (strcmp(status, ODO_COMPLETED) == 0)
        return OD_STEP_CONTINUE; /* redelivered after it was completed */
    if (strcmp(status, ODO_CANCELLED) == 0)
        return verdict(ctx, OD_STEP_FAIL, "order_cancelled");
    return verdict(ctx, OD_STEP_FAIL, "order_not_processing");
}

static int complete_run(void *self, od_step_ctx *ctx)
{
    const step_complete *c = self;
    json_object *doc = NULL;
    uint64_t version = 0;
    od_status s = odo_load(&c->db, ctx->order_id, &doc, &version);
    if (s == OD_OK)
        s = odo_transition(&c->db, &doc, &version, ODO_COMPLETED, NULL, is_processing);
    int result;
    if (s == OD_OK) {
        c->host->metric_add(c->entered_completed, 1);
        result = OD_STEP_CONTINUE;
    } else if (s == OD_ERR_CONFLICT) {
        result = verdict_for(doc, ctx);
    } else if (s == OD_ERR_NOT_FOUND) {
        result = verdict(ctx, OD_STEP_FAIL, "order_not_found");
    } else if (s == OD_ERR_UNAVAILABLE || s == OD_ERR_CLOSED) {
        result = verdict(ctx, OD_STEP_RETRY, "storage_unavailable");
    } else {
        result = verdict(ctx, OD_STEP_FAIL, "storage_error");
    }
    json_object_put(doc);
    return result;
}

static od_status complete_init(const od_host_api *host, od_module *mod, void **self)
{
    const od_storage *storage = host->storage(mod);
    if (storage == NULL) {
        host->log(mod, OD_LOG_ERROR, "complete needs a storage backend");
        return OD_ERR_CONFIG;
    }
    od_metric *metric = host->metric(mod, OD_METRIC_COUNTER, ODO_METRIC_STATUS,
                                     ODO_METRIC_STATUS_HELP, "status=\"COMPLETED\"");
    step_complete *c = host->calloc(1, sizeof *c);
    if (c == NULL || metric == NULL) {
        host->free(c);
        return OD_ERR_NOMEM;
    }
    *c = (step_complete){host, mod, {host, storage}, metric};
    *self = c;
    return OD_OK;
}

static void complete_destroy(void *self)
{
    step_complete *c = self;
    c->host->free(c);
}

static const od_step_ops COMPLETE_OPS = {
    .size = sizeof(od_step_ops),
    .run = complete_run,
    .compensate = NULL, /* the last step: nothing runs after it to fail */
};

static const od_module_desc COMPLETE_MODULE = {
    .magic = OD_MODULE_MAGIC,
    .abi_major = OD_ABI_MAJOR,
    .abi_minor = OD_ABI_MINOR,
    .size = sizeof(od_module_desc),
    .kind = OD_KIND_STEP,
    .name = "complete",
    .version = "1.0.0",
    .description = "Order step: PROCESSING -> COMPLETED unless cancelled meanwhile",
    .init = complete_init,
    .destroy = complete_destroy,
    .ops = &COMPLETE_OPS,
};

OD_MODULE_EXPORT const od_module_desc *od_module_entry(void);
OD_MODULE_EXPORT const od_module_desc *od_module_entry(void)
{
    return &COMPLETE_MODULE;
}
