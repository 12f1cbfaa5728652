/*
 * step_max_total - an example order step built out of tree against the
 * installed SDK (orderd-dev: <orderd/orderd.h> and `pkg-config orderd`).
 *
 * The step "max_total" (OD_KIND_STEP) fails every order whose totalCents is
 * above a configured limit, with the reason "total_above_limit"; an order at
 * or below the limit continues. It reads one key of its group,
 *   max_total: { max_total_cents = 50000; };   (required, 0..2^63-2)
 * and counts rejections in orderd_max_total_rejected_total. It owns no
 * threads: run() is called from many queue workers at once and only reads
 * self, which is immutable after init (the counter is the core's, lock-free).
 * It changes nothing, so there is nothing to compensate and a redelivery
 * gives the same verdict.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>
#include <orderd/orderd.h>

typedef struct max_total {
    const od_host_api *host;
    od_module *mod;
    int64_t max_total_cents;
    od_metric *rejected;
} max_total;

static int verdict(od_step_ctx *ctx, int code, const char *reason)
{
    snprintf(ctx->reason, sizeof ctx->reason, "%s", reason);
    return code;
}

/* The order's totalCents, or -1 when the document has no sane one. Parsed
 * per call: json-c objects must not be shared between worker threads. */
static int64_t order_total_cents(const char *json, size_t len)
{
    if (len > INT32_MAX - 1)
        return -1;
    json_tokener *tok = json_tokener_new();
    if (tok == NULL)
        return -1;
    json_object *doc = json_tokener_parse_ex(tok, json, (int)len);
    json_tokener_free(tok);

    int64_t total = -1;
    json_object *v;
    if (json_object_object_get_ex(doc, "totalCents", &v) &&
        json_object_is_type(v, json_type_int)) {
        errno = 0;
        int64_t cents = json_object_get_int64(v);
        if (errno == 0 && cents >= 0 && cents < INT64_MAX) /* INT64_MAX: clamped */
            total = cents;
    }
    json_object_put(doc);
    return total;
}

static int max_total_run(void *self, od_step_ctx *ctx)
{
    const max_total *m = self;
    int64_t total = order_total_cents(ctx->order_json, ctx->order_len);
    if (total < 0) /* validate runs first; a document without a total is broken */
        return verdict(ctx, OD_STEP_FAIL, "invalid_total");
    if (total > m->max_total_cents) {
        m->host->metric_add(m->rejected, 1);
        return verdict(ctx, OD_STEP_FAIL, "total_above_limit");
    }
    return OD_STEP_CONTINUE;
}

static od_status max_total_init(const od_host_api *host, od_module *mod, void **self)
{
    /* A limit has no safe default: the out-of-range default marks "missing". */
    const int64_t missing = INT64_MAX;
    int64_t limit;
    od_status s = host->config_int(mod, "max_total_cents", missing, 0, missing - 1, &limit);
    if (s != OD_OK)
        return s;
    if (limit == missing) {
        host->log(mod, OD_LOG_ERROR,
                  "max_total.max_total_cents is required, e.g. max_total: { max_total_cents = 50000; };");
        return OD_ERR_CONFIG;
    }
    max_total *m = host->calloc(1, sizeof *m);
    if (m == NULL)
        return OD_ERR_NOMEM;
    m->host = host;
    m->mod = mod;
    m->max_total_cents = limit;
    m->rejected = host->metric(mod, OD_METRIC_COUNTER, "orderd_max_total_rejected_total",
                               "Orders failed by max_total for a total above the limit", NULL);
    if (m->rejected == NULL) {
        host->free(m);
        return OD_ERR_NOMEM;
    }
    host->log(mod, OD_LOG_INFO, "orders above %lld cents fail with total_above_limit",
              (long long)limit);
    *self = m;
    return OD_OK;
}

static void max_total_destroy(void *self)
{
    max_total *m = self;
    m->host->free(m);
}

static const od_step_ops max_total_ops = {
    .size = sizeof(od_step_ops),
    .run = max_total_run,
    .compensate = NULL,
};

static const od_module_desc max_total_desc = {
    OD_MODULE_HEADER(OD_KIND_STEP),
    .name = "max_total",
    .version = "1.0.0",
    .description = "order step: fail orders whose total is above max_total_cents",
    .init = max_total_init,
    .destroy = max_total_destroy,
    .ops = &max_total_ops,
};

OD_MODULE_EXPORT const od_module_desc *od_module_entry(void)
{
    return &max_total_desc;
}
