/*
 * orderd/queue.h - the queue backend ops (module kind OD_KIND_QUEUE).
 *
 * Semantics are SQS's, so SQS implements each op with one call:
 *   - three lanes: normal, priority and dead-letter, each its own queue;
 *   - at-least-once delivery: receive() hides a message for a visibility
 *     timeout and hands out a receipt; delete(receipt) acknowledges it; if
 *     not deleted in time it becomes visible again with receive_count + 1;
 *   - change_visibility(receipt, ms) postpones redelivery (retry backoff) or
 *     releases the message at once (0);
 *   - only the receipt of the latest receive is valid: an older one gets
 *     OD_ERR_NOT_FOUND and acknowledges nothing.
 * The backend does not dead-letter on its own unless configured to; the
 * queue worker moves a message by send(OD_LANE_DEAD) + delete().
 *
 * Threads: every op may be called from many threads at once and may block
 * (receive up to wait_ms). Memory: as in storage.h; messages returned are
 * owned by the caller and released with od_message_clear().
 */
#ifndef ORDERD_QUEUE_H
#define ORDERD_QUEUE_H

#include <stddef.h>
#include <stdint.h>
#include "orderd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OD_LANE_NORMAL   0
#define OD_LANE_PRIORITY 1
#define OD_LANE_DEAD     2
#define OD_LANE_COUNT    3

#define OD_MESSAGE_MAX (256 * 1024) /* SQS's body limit */
#define OD_RECEIVE_MAX 10           /* SQS's MaxNumberOfMessages */

typedef struct od_message {
    char *id;               /* backend message id, NUL-terminated */
    char *receipt;          /* handle for delete/change_visibility */
    char *body;             /* NUL-terminated; len excludes the NUL */
    size_t len;
    uint32_t lane;          /* OD_LANE_* it was received from */
    uint32_t receive_count; /* 1 on first delivery */
    int64_t sent_ms;        /* wall clock, ms since the epoch */
} od_message;

typedef struct od_queue_ops {
    uint32_t size; /* sizeof(od_queue_ops) */

    /* Enqueue body (1..OD_MESSAGE_MAX bytes) on a lane, visible after delay_ms
     * (0..900000). *id_out (may be NULL) receives the message id. */
    od_status (*send)(void *self, uint32_t lane, const char *body, size_t len, uint32_t delay_ms,
                      char **id_out);

    /* Receive up to max (1..OD_RECEIVE_MAX) messages from a lane into out[],
     * waiting up to wait_ms (0..20000) for the first one, hiding each for
     * visibility_ms. *n receives the count (0 on timeout). */
    od_status (*receive)(void *self, uint32_t lane, uint32_t max, uint32_t wait_ms,
                         uint32_t visibility_ms, od_message *out, size_t *n);

    /* Acknowledge. OD_ERR_NOT_FOUND for an unknown or stale receipt. */
    od_status (*del)(void *self, uint32_t lane, const char *receipt);

    /* Make an in-flight message visible again after visibility_ms (0 = now).
     * OD_ERR_NOT_FOUND for an unknown or stale receipt. */
    od_status (*change_visibility)(void *self, uint32_t lane, const char *receipt,
                                   uint32_t visibility_ms);

    /* Approximate counts: visible (waiting) and in flight (received, not
     * deleted). Either pointer may be NULL. */
    od_status (*depth)(void *self, uint32_t lane, int64_t *visible, int64_t *in_flight);

    /* Cheap liveness check for /health. */
    od_status (*ping)(void *self);

    /* ---- ABI 1.1: optional, NULL when the backend cannot; test with
     * OD_HAS_OP(od_queue_ops, ops, member) ---- */

    /* The store this queue keeps its messages in, as od_storage_ops.store
     * describes; a storage backend with the same string may enqueue on this
     * queue inside its own transactions (put_batch). notify is then set too. */
    const char *(*store)(void *self);
    /* Messages were committed to lane by another module's transaction in
     * the shared store: wake the receivers waiting on that lane. Any thread;
     * never blocks for long. */
    void (*notify)(void *self, uint32_t lane);
    /* append new members below this line only */
} od_queue_ops;

typedef struct od_queue {
    const od_queue_ops *ops;
    void *self;
} od_queue;

#ifdef __cplusplus
}
#endif
#endif /* ORDERD_QUEUE_H */
