/*
 * orderd/step.h - order-step plugins (module kind OD_KIND_STEP).
 *
 * The orders group of the config lists the pipeline as step names, e.g.
 *   orders: { pipeline = ["validate", "reserve_stock", "complete"]; };
 * A queue worker thread runs each received order through the steps in order.
 * run() returns a verdict:
 *   OD_STEP_CONTINUE  go on with the next step;
 *   OD_STEP_RETRY     a transient problem: the message comes back after
 *                     exponential backoff; after max_attempts the order is
 *                     dead-lettered and FAILED (max_attempts_exceeded);
 *   OD_STEP_FAIL      a permanent problem: compensate() of every step that
 *                     already returned CONTINUE runs in reverse order, and the
 *                     order becomes FAILED with ctx->reason.
 * Delivery is at least once, so run() and compensate() must be idempotent:
 * the same order may be run again after a crash, from the first step.
 *
 * Threads: run and compensate are called from many queue worker threads at
 * once and may block (storage calls). They reach storage and the config
 * through the host API saved at init.
 */
#ifndef ORDERD_STEP_H
#define ORDERD_STEP_H

#include <stddef.h>
#include <stdint.h>
#include "orderd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OD_STEP_CONTINUE 0
#define OD_STEP_RETRY    1
#define OD_STEP_FAIL     2

#define OD_REASON_MAX 128

typedef struct od_step_ctx {
    uint32_t size;          /* sizeof(od_step_ctx) */
    uint32_t attempt;       /* delivery count, 1 on the first */
    const char *order_id;   /* borrowed for the call */
    const char *order_json; /* the order document when the pipeline started; borrowed */
    size_t order_len;
    /* Set by run() on RETRY/FAIL: a short snake_case reason, e.g.
     * "insufficient_stock"; NUL-terminated, truncated to fit. */
    char reason[OD_REASON_MAX];
    /* append new members below this line only */
} od_step_ctx;

typedef struct od_step_ops {
    uint32_t size; /* sizeof(od_step_ops) */
    /* Required. Returns OD_STEP_*. */
    int (*run)(void *self, od_step_ctx *ctx);
    /* Optional: undo what run() did for this order (idempotent). */
    void (*compensate)(void *self, const od_step_ctx *ctx);
    /* append new members below this line only */
} od_step_ops;

typedef struct od_step {
    const od_step_ops *ops;
    void *self;
    const char *name;
} od_step;

#ifdef __cplusplus
}
#endif
#endif /* ORDERD_STEP_H */
