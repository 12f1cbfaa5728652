/*
 * step_flaky - a test-only order step that misbehaves on purpose.
 *
 * run() answers `verdict` ("retry" or "fail") with ctx->reason = `reason` on
 * the first `bad_attempts` deliveries of an order (0 = on every delivery)
 * and CONTINUE afterwards; compensate() does nothing. Both count their
 * calls in the counters step_flaky_runs_total and
 * step_flaky_compensations_total, which the tests read through the mock
 * host. Config (group "step_flaky"): verdict (default "retry"), bad_attempts
 * (0..1000, default 0), reason (default "flaky"). Threads: none; run and
 * compensate are re-entrant (self is read-only after init, metric updates
 * are atomic in the host).
 */
#include <stdio.h>
#include <string.h>

#include "orderd/orderd.h"

typedef struct flaky {
    const od_host_api *host;
    int verdict;           /* OD_STEP_RETRY or OD_STEP_FAIL */
    int64_t bad_attempts;  /* 0 = every attempt */
    const char *reason;    /* owned by the host's config */
    od_metric *runs;
    od_metric *compensations;
} flaky;

static int flaky_run(void *arg, od_step_ctx *ctx)
{
    flaky *self = arg;
    self->host->metric_add(self->runs, 1);
    if (self->bad_attempts && ctx->attempt > self->bad_attempts)
        return OD_STEP_CONTINUE;
    snprintf(ctx->reason, sizeof ctx->reason, "%s", self->reason);
    return self->verdict;
}

static void flaky_compensate(void *arg, const od_step_ctx *ctx)
{
    flaky *self = arg;
    self->host->metric_add(self->compensations, 1);
}

static od_status flaky_read_verdict(flaky *self, od_module *mod)
{
    const char *verdict = NULL;
    od_status st = self->host->config_string(mod, "verdict", "retry", &verdict);
    if (st != OD_OK)
        return st;
    if (strcmp(verdict, "retry") == 0)
        self->verdict = OD_STEP_RETRY;
    else if (strcmp(verdict, "fail") == 0)
        self->verdict = OD_STEP_FAIL;
    else {
        self->host->log(mod, OD_LOG_ERROR, "verdict \"%s\" (known: retry, fail)", verdict);
        return OD_ERR_CONFIG;
    }
    return OD_OK;
}

static od_status flaky_init(const od_host_api *host, od_module *mod, void **out)
{
    flaky *self = host->calloc(1, sizeof *self);
    if (!self)
        return OD_ERR_NOMEM;
    self->host = host;
    od_status st = flaky_read_verdict(self, mod);
    if (st == OD_OK)
        st = host->config_int(mod, "bad_attempts", 0, 0, 1000, &self->bad_attempts);
    if (st == OD_OK)
        st = host->config_string(mod, "reason", "flaky", &self->reason);
    if (st != OD_OK) {
        host->free(self);
        return st;
    }
    self->runs = host->metric(mod, OD_METRIC_COUNTER, "step_flaky_runs_total", "run() calls", NULL);
    self->compensations = host->metric(mod, OD_METRIC_COUNTER, "step_flaky_compensations_total",
                                       "compensate() calls", NULL);
    *out = self;
    return OD_OK;
}

static void flaky_destroy(void *self)
{
    flaky *f = self;
    f->host->free(f);
}

static const od_step_ops flaky_ops = {
    .size = sizeof(od_step_ops),
    .run = flaky_run,
    .compensate = flaky_compensate,
};

static const od_module_desc flaky_desc = {
    .magic = OD_MODULE_MAGIC,
    .abi_major = OD_ABI_MAJOR,
    .abi_minor = OD_ABI_MINOR,
    .size = sizeof(od_module_desc),
    .kind = OD_KIND_STEP,
    .name = "step_flaky",
    .version = "test",
    .description = "Test step that returns RETRY/FAIL on purpose",
    .init = flaky_init,
    .destroy = flaky_destroy,
    .ops = &flaky_ops,
};

OD_MODULE_EXPORT const od_module_desc *od_module_entry(void);
OD_MODULE_EXPORT const od_module_desc *od_module_entry(void) { return &flaky_desc; }
