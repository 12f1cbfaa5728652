/*
 * queue_worker - runs queued orders through the order pipeline.
 *
 * Worker threads receive {"orderId"} messages, priority lane first (after
 * `priority_weight` priority messages in a row a waiting normal message goes
 * next, so normal orders are never starved), move the order PENDING ->
 * PROCESSING, run the steps of `orders.pipeline` and settle the order
 * COMPLETED or FAILED, compensating in reverse the steps that already ran.
 * A RETRY verdict or a storage outage postpones the message with exponential
 * backoff and ±20% jitter through change_visibility (a worker never sleeps);
 * a RETRY at delivery `max_attempts` dead-letters the message and fails the
 * order. When every step continued and the order is still PROCESSING (the
 * pipeline has no `complete` step), the worker completes it itself. The
 * PROCESSING write carries a lease (message, until) so a second message for
 * the same order waits instead of running the pipeline alongside. Admin
 * routes report counters, start and stop the workers, and drain the queue on
 * the request thread. Config (group "queue_worker"): threads, max_attempts,
 * backoff_base_ms, backoff_max_ms, visibility_ms, poll_wait_ms, autostart,
 * priority_weight, sweep_interval_ms, sweep_after_ms (docs/queue-worker.md).
 * Threads: `threads` workers, started by start() (if autostart) or POST
 * /api/orders/worker/start, joined by stop() or POST /api/orders/worker/stop;
 * and one sweeper (unless sweep_interval_ms = 0), started by start() and
 * joined by stop(), which re-queues PENDING/PROCESSING orders that made no
 * progress for sweep_after_ms: the safety net for an order whose message is
 * gone (e.g. orderd died between storing the order and queueing it).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "odm.h"
#include "orderd/orderd.h"

#define QW_TABLE "orders"
#define QW_STATUS_TRIES 8      /* re-reads after version conflicts before backing off */
#define QW_DRAIN_CAP 1000      /* process-queue: most messages per request */
#define QW_DRAIN_TIME_MS 10000 /* process-queue: time limit per request */
#define QW_JITTER_PCT 20       /* backoff jitter: ±20% */
#define QW_STATUS_LEN 16
#define QW_SWEEP_PAGE 100      /* orders per storage query of a sweep */

enum qw_outcome { QW_PROCESSED, QW_RETRIED, QW_FAILED, QW_DEAD, QW_OUTCOMES };

static const char *const qw_outcome_labels[QW_OUTCOMES] = {
    "outcome=\"processed\"", "outcome=\"retried\"", "outcome=\"failed\"",
    "outcome=\"dead_lettered\""};

/* The statuses the worker writes, with their metric labels. */
static const char *const qw_written_status[] = {"PROCESSING", "COMPLETED", "FAILED"};
static const char *const qw_written_labels[] = {"status=\"PROCESSING\"", "status=\"COMPLETED\"",
                                                "status=\"FAILED\""};
#define QW_WRITTEN (sizeof qw_written_status / sizeof qw_written_status[0])

static const char *const qw_lane_labels[OD_LANE_COUNT] = {"lane=\"normal\"", "lane=\"priority\"",
                                                          "lane=\"dead\""};

typedef struct qw qw;

typedef struct qw_config {
    uint32_t threads;
    uint32_t max_attempts;
    uint32_t backoff_base_ms;
    uint32_t backoff_max_ms;
    uint32_t visibility_ms;
    uint32_t poll_wait_ms;
    uint32_t priority_weight;
    uint32_t sweep_interval_ms; /* 0: no sweeper */
    uint32_t sweep_after_ms;
    int autostart;
} qw_config;

/* Lane choice of one consumer (a worker thread, or one process-queue call).
 * Owned by that consumer alone, so it needs no lock. */
typedef struct qw_picker {
    uint32_t streak; /* priority messages taken in a row */
    uint32_t idle;   /* idle long-polls so far: alternates the lane polled */
} qw_picker;

typedef struct qw_worker {
    qw *self;
    pthread_t tid;
    qw_picker picker;
} qw_worker;

typedef struct qw_gauge {
    qw *self;
    uint32_t lane;
} qw_gauge;

struct qw {
    const od_host_api *host;
    od_module *mod;
    const od_storage *storage;
    const od_queue *queue;
    const od_step *const *steps; /* the pipeline, owned by the core */
    size_t n_steps;
    qw_config cfg;

    /* Metric handles: written at init, read-only afterwards. */
    od_metric *outcome_metric[QW_OUTCOMES];
    od_metric *status_metric[QW_WRITTEN];
    od_metric **step_seconds; /* one histogram per pipeline step */
    qw_gauge gauges[OD_LANE_COUNT];

    /* Outcome totals for the status route; atomics, any thread. */
    atomic_llong outcomes[QW_OUTCOMES];

    /* The worker set. ctl_lock serializes start/stop from HTTP threads and
     * the core's start()/stop(): workers, n_workers and closed are only
     * touched under it. Workers never take ctl_lock, so joining them while
     * holding it cannot deadlock. running and stop_requested are atomics so
     * workers and the status route read them without the lock. */
    pthread_mutex_t ctl_lock;
    qw_worker *workers;
    uint32_t n_workers;
    int closed; /* module stop() began: no restart */
    atomic_uint running_threads;
    atomic_int stop_requested;

    /* Wakes workers that pause after a queue error, when stop is requested. */
    pthread_mutex_t wake_lock;
    pthread_cond_t wake;

    /* The sweeper. sweeper_started is only touched by start()/stop() on
     * the main thread. sweep_stop is an atomic the sweeper polls between
     * orders; stop() sets it under sweep_lock and signals sweep_wake so a
     * sweeper waiting for its next interval cannot miss the wake-up. */
    od_metric *requeued_metric;
    pthread_t sweeper;
    od_metric *sweeps_metric;
    int sweeper_started;
    atomic_int sweep_stop;
    pthread_mutex_t sweep_lock;
    pthread_cond_t sweep_wake;
};

/* One order as read from storage. Owned by the thread that loaded it. */
typedef struct qw_order {
    const char *id;     /* borrowed from the caller */
    od_doc doc;
    json_object *obj;   /* doc.body parsed */
    const char *status; /* borrowed from obj */
} qw_order;

/* ---- small helpers ------------------------------------------------------ */

static int should_stop(const qw *self)
{
    return atomic_load(&self->stop_requested) || self->host->stopping();
}

static void count(qw *self, enum qw_outcome o)
{
    atomic_fetch_add(&self->outcomes[o], 1);
    self->host->metric_add(self->outcome_metric[o], 1);
}

static int is_printable_key(const char *s, size_t len)
{
    if (len == 0 || len > OD_KEY_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return 0;
    return 1;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* min(base * 2^(attempt-1), max), then ±20% jitter from the CSPRNG so that
 * orders that failed together do not come back together. */
static uint32_t backoff_ms(const qw *self, uint32_t attempt)
{
    uint64_t b = self->cfg.backoff_base_ms;
    for (uint32_t i = 1; i < attempt && b < self->cfg.backoff_max_ms; i++)
        b *= 2;
    if (b > self->cfg.backoff_max_ms)
        b = self->cfg.backoff_max_ms;
    uint32_t r = UINT32_MAX / 2;
    if (self->host->random_bytes(&r, sizeof r) != OD_OK)
        r = UINT32_MAX / 2; /* no jitter beats no retry */
    uint64_t low = b - b * QW_JITTER_PCT / 100;
    uint64_t span = b * 2 * QW_JITTER_PCT / 100;
    return (uint32_t)(low + r % (span + 1));
}

static const char *str_member(json_object *obj, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* ---- queue operations on the message being handled ---------------------- */

static void ack(qw *self, const od_message *msg)
{
    od_status st = self->queue->ops->del(self->queue->self, msg->lane, msg->receipt);
    if (st == OD_ERR_NOT_FOUND)
        self->host->log(self->mod, OD_LOG_WARN,
                        "message %s: receipt expired before it was acknowledged; raise "
                        "queue_worker.visibility_ms above the pipeline's run time",
                        msg->id);
    else if (st != OD_OK)
        self->host->log(self->mod, OD_LOG_WARN,
                        "message %s: acknowledge failed (%s); it will be redelivered", msg->id,
                        od_status_str(st));
}

/* Hand the message back for a later attempt. If even that fails, the
 * visibility timeout brings it back: nothing is dropped. */
static enum qw_outcome postpone(qw *self, const od_message *msg)
{
    uint32_t delay = backoff_ms(self, msg->receive_count);
    od_status st = self->queue->ops->change_visibility(self->queue->self, msg->lane, msg->receipt,
                                                       delay);
    if (st != OD_OK)
        self->host->log(self->mod, OD_LOG_WARN,
                        "message %s: postponing failed (%s); redelivery after visibility_ms",
                        msg->id, od_status_str(st));
    return QW_RETRIED;
}

static enum qw_outcome postpone_after(qw *self, const od_message *msg, const char *what,
                                      od_status cause)
{
    self->host->log(self->mod, OD_LOG_WARN, "message %s: %s: %s; retrying later", msg->id, what,
                    od_status_str(cause));
    return postpone(self, msg);
}

/* Move a message to the dead-letter lane: send first, then acknowledge, so a
 * crash in between duplicates a dead letter instead of losing one. */
static enum qw_outcome dead_letter_body(qw *self, const od_message *msg, const char *body,
                                        size_t len)
{
    od_status st = self->queue->ops->send(self->queue->self, OD_LANE_DEAD, body, len, 0, NULL);
    if (st != OD_OK)
        return postpone_after(self, msg, "dead-lettering failed", st);
    ack(self, msg);
    return QW_DEAD;
}

static od_status send_dead_letter(qw *self, const char *order_id, const char *reason)
{
    json_object *o = json_object_new_object();
    if (!o)
        return OD_ERR_NOMEM;
    json_object_object_add(o, "orderId", json_object_new_string(order_id));
    json_object_object_add(o, "reason", json_object_new_string(reason));
    size_t len = 0;
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    od_status st = s ? self->queue->ops->send(self->queue->self, OD_LANE_DEAD, s, len, 0, NULL)
                     : OD_ERR_NOMEM;
    json_object_put(o);
    return st;
}

static enum qw_outcome dead_letter(qw *self, const od_message *msg, const char *order_id,
                                   const char *reason)
{
    self->host->log(self->mod, OD_LOG_WARN, "order %s: dead-lettered: %s", order_id, reason);
    od_status st = send_dead_letter(self, order_id, reason);
    if (st != OD_OK)
        return postpone_after(self, msg, "dead-lettering failed", st);
    ack(self, msg);
    return QW_DEAD;
}

/* ---- orders ------------------------------------------------------------- */

static void order_free(qw *self, qw_order *o)
{
    od_doc_clear(self->host, &o->doc);
    json_object_put(o->obj);
    o->obj = NULL;
    o->status = NULL;
}

/* Parse o->doc (already read). OD_ERR_INVALID: not an order we can read;
 * o is then freed. */
static od_status order_parse(qw *self, qw_order *o)
{
    odm_err e;
    json_object *status = NULL;
    o->obj = odm_parse_object(o->doc.body, o->doc.len, &e);
    if (!o->obj || !json_object_object_get_ex(o->obj, "status", &status) ||
        !json_object_is_type(status, json_type_string)) {
        order_free(self, o);
        return OD_ERR_INVALID;
    }
    o->status = json_object_get_string(status);
    return OD_OK;
}

/* OD_ERR_INVALID: the stored document is not an order we can read. */
static od_status order_load(qw *self, const char *id, qw_order *o)
{
    memset(o, 0, sizeof *o);
    o->id = id;
    od_status st = self->storage->ops->get(self->storage->self, QW_TABLE, id, &o->doc);
    return st == OD_OK ? order_parse(self, o) : st;
}

static int status_is(const char *status, const char *want) { return strcmp(status, want) == 0; }

static int status_is_final(const char *status)
{
    return status_is(status, "COMPLETED") || status_is(status, "FAILED") ||
           status_is(status, "CANCELLED");
}

static void count_status(qw *self, const char *status)
{
    for (size_t i = 0; i < QW_WRITTEN; i++)
        if (status_is(status, qw_written_status[i]))
            self->host->metric_add(self->status_metric[i], 1);
}

/* Apply the change to o->obj: status, a history entry when the status
 * changes, attempts (if >= 0) and updatedAt. */
static od_status order_edit(qw *self, qw_order *o, const char *status, const char *reason,
                            int64_t attempts)
{
    char now[ODM_TIME_LEN + 1];
    odm_iso8601(self->host->now_ms(), now);
    if (!status_is(o->status, status)) {
        json_object *history = NULL;
        if (!json_object_object_get_ex(o->obj, "history", &history) ||
            !json_object_is_type(history, json_type_array)) {
            history = json_object_new_array();
            json_object_object_add(o->obj, "history", history);
        }
        json_object *entry = json_object_new_object();
        if (!history || !entry) {
            json_object_put(entry);
            return OD_ERR_NOMEM;
        }
        json_object_object_add(entry, "status", json_object_new_string(status));
        json_object_object_add(entry, "at", json_object_new_string(now));
        if (reason)
            json_object_object_add(entry, "reason", json_object_new_string(reason));
        json_object_array_add(history, entry);
    }
    /* Replacing "status" frees the string o->status borrows. */
    json_object_object_add(o->obj, "status", json_object_new_string(status));
    json_object *st = NULL;
    json_object_object_get_ex(o->obj, "status", &st);
    o->status = json_object_get_string(st);
    if (attempts >= 0)
        json_object_object_add(o->obj, "attempts", json_object_new_int64(attempts));
    json_object_object_add(o->obj, "updatedAt", json_object_new_string(now));
    return o->status ? OD_OK : OD_ERR_NOMEM;
}

/* Conditional put of the edited order with its index values (a put
 * replaces them all, so customer and status are both given). On success
 * o->doc holds what was written; on failure the caller reloads. */
static od_status order_store(qw *self, qw_order *o)
{
    size_t len = 0;
    const char *body = json_object_to_json_string_length(
        o->obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    char *copy = body ? self->host->strdup(body) : NULL;
    if (!copy)
        return OD_ERR_NOMEM;
    od_index_value idx[2];
    size_t n_idx = 0;
    json_object *customer = NULL;
    if (json_object_object_get_ex(o->obj, "customerId", &customer) &&
        json_object_is_type(customer, json_type_string))
        idx[n_idx++] = (od_index_value){"customer", json_object_get_string(customer)};
    idx[n_idx++] = (od_index_value){"status", o->status};
    uint64_t version = 0;
    od_status st = self->storage->ops->put(self->storage->self, QW_TABLE, o->id, copy, len,
                                           idx, n_idx, OD_PUT_IF_VERSION, o->doc.version,
                                           &version);
    if (st != OD_OK) {
        self->host->free(copy);
        return st;
    }
    self->host->free(o->doc.body);
    o->doc.body = copy;
    o->doc.len = len;
    o->doc.version = version;
    return OD_OK;
}

static od_status order_write(qw *self, qw_order *o, const char *status, const char *reason,
                             int64_t attempts)
{
    int changed = !status_is(o->status, status);
    od_status st = order_edit(self, o, status, reason, attempts);
    if (st == OD_OK)
        st = order_store(self, o);
    if (st == OD_OK && changed)
        count_status(self, status);
    return st;
}

/* Move the order to `target` unless it already is in a final state,
 * re-reading after version conflicts. final[] receives the status it ended
 * in (e.g. CANCELLED when a customer cancelled meanwhile). */
static od_status order_settle(qw *self, const char *id, const char *target, const char *reason,
                              char final[QW_STATUS_LEN])
{
    for (int tries = 0; tries < QW_STATUS_TRIES; tries++) {
        qw_order o;
        od_status st = order_load(self, id, &o);
        if (st != OD_OK)
            return st;
        if (!status_is_final(o.status))
            st = order_write(self, &o, target, reason, -1);
        snprintf(final, QW_STATUS_LEN, "%s", o.status);
        order_free(self, &o);
        if (st != OD_ERR_CONFLICT)
            return st;
    }
    return OD_ERR_CONFLICT;
}

/* ---- the pipeline ------------------------------------------------------- */

/* Undo steps [0, n_done) in reverse. Compensations are idempotent, so
 * running one for a step that did nothing is harmless. */
static void compensate(qw *self, const od_step_ctx *ctx, size_t n_done)
{
    for (size_t i = n_done; i-- > 0;) {
        const od_step *s = self->steps[i];
        if (s->ops->compensate)
            s->ops->compensate(s->self, ctx);
    }
}

static int run_step(qw *self, size_t i, od_step_ctx *ctx)
{
    const od_step *s = self->steps[i];
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ctx->reason[0] = '\0';
    int verdict = s->ops->run(s->self, ctx);
    self->host->metric_observe(self->step_seconds[i], seconds_since(&t0));
    ctx->reason[OD_REASON_MAX - 1] = '\0';
    if (verdict != OD_STEP_CONTINUE && verdict != OD_STEP_RETRY && verdict != OD_STEP_FAIL) {
        self->host->log(self->mod, OD_LOG_ERROR, "step %s returned unknown verdict %d", s->name,
                        verdict);
        snprintf(ctx->reason, sizeof ctx->reason, "invalid_step_verdict");
        return OD_STEP_FAIL;
    }
    if (verdict == OD_STEP_FAIL && ctx->reason[0] == '\0')
        snprintf(ctx->reason, sizeof ctx->reason, "%s_failed", s->name);
    return verdict;
}

/* After the final write: a customer may have cancelled meanwhile, in which
 * case nothing may stay reserved. */
static void after_settle(qw *self, const od_step_ctx *ctx, const char *final)
{
    if (status_is(final, "CANCELLED"))
        compensate(self, ctx, self->n_steps);
}

/* FAIL (or attempts exhausted): compensate what ran, then FAILED, then
 * acknowledge. A crash in between leaves the message to come back. */
static enum qw_outcome fail_order(qw *self, const od_message *msg, const od_step_ctx *ctx,
                                  size_t n_done, const char *reason, enum qw_outcome outcome)
{
    compensate(self, ctx, n_done);
    char final[QW_STATUS_LEN] = "";
    od_status st = order_settle(self, ctx->order_id, "FAILED", reason, final);
    if (st != OD_OK && st != OD_ERR_NOT_FOUND)
        return postpone_after(self, msg, "failing the order", st);
    after_settle(self, ctx, final);
    ack(self, msg);
    return outcome;
}

/* The dead letter is sent before the order is failed: if failing it is
 * postponed, the next delivery may dead-letter a second time (at least
 * once), but never zero times. */
static enum qw_outcome give_up(qw *self, const od_message *msg, const od_step_ctx *ctx,
                               size_t n_done)
{
    self->host->log(self->mod, OD_LOG_WARN, "order %s: %u attempts failed; dead-lettered",
                    ctx->order_id, msg->receive_count);
    od_status st = send_dead_letter(self, ctx->order_id, "max_attempts_exceeded");
    if (st != OD_OK)
        return postpone_after(self, msg, "dead-lettering failed", st);
    return fail_order(self, msg, ctx, n_done, "max_attempts_exceeded", QW_DEAD);
}

static enum qw_outcome complete_order(qw *self, const od_message *msg, const od_step_ctx *ctx)
{
    char final[QW_STATUS_LEN] = "";
    od_status st = order_settle(self, ctx->order_id, "COMPLETED", NULL, final);
    if (st != OD_OK && st != OD_ERR_NOT_FOUND)
        return postpone_after(self, msg, "completing the order", st);
    after_settle(self, ctx, final);
    ack(self, msg);
    return QW_PROCESSED;
}

/* o is PROCESSING (just written); run every step on it. */
static enum qw_outcome run_pipeline(qw *self, const od_message *msg, const char *id,
                                    const qw_order *o)
{
    od_step_ctx ctx = {.size = sizeof ctx,
                       .attempt = msg->receive_count,
                       .order_id = id,
                       .order_json = o->doc.body,
                       .order_len = o->doc.len};
    for (size_t i = 0; i < self->n_steps; i++) {
        int verdict = run_step(self, i, &ctx);
        if (verdict == OD_STEP_CONTINUE)
            continue;
        if (verdict == OD_STEP_RETRY && msg->receive_count < self->cfg.max_attempts)
            return postpone(self, msg);
        if (verdict == OD_STEP_RETRY)
            return give_up(self, msg, &ctx, i);
        char reason[OD_REASON_MAX];
        snprintf(reason, sizeof reason, "%s", ctx.reason);
        return fail_order(self, msg, &ctx, i, reason, QW_FAILED);
    }
    return complete_order(self, msg, &ctx);
}

static enum qw_outcome handle_cancelled(qw *self, const od_message *msg, const char *id,
                                        const qw_order *o)
{
    od_step_ctx ctx = {.size = sizeof ctx,
                       .attempt = msg->receive_count,
                       .order_id = id,
                       .order_json = o->doc.body,
                       .order_len = o->doc.len};
    compensate(self, &ctx, self->n_steps);
    ack(self, msg);
    return QW_PROCESSED;
}

/* ---- the PROCESSING lease ------------------------------------------------
 *
 * The PROCESSING write records which message runs the pipeline
 * ("leaseMessage": "<lane>:<message id>") and until when ("leaseUntil" =
 * now + visibility_ms, when the queue would hand that message out again).
 * A delivery of ANOTHER message for the same order (a sweeper re-queue, a
 * duplicate) that finds an unexpired lease is postponed instead of running
 * the pipeline concurrently: steps are idempotent when run again, not
 * necessarily when run twice at the same time. A redelivery of the SAME
 * message (retry backoff, a worker that died) takes the lease over at
 * once: the queue already guarantees one holder per message. */

#define QW_HOLDER_MAX (OD_KEY_MAX + 16)

static void lease_holder(const od_message *msg, char out[QW_HOLDER_MAX])
{
    snprintf(out, QW_HOLDER_MAX, "%u:%s", msg->lane, msg->id);
}

/* ms left on a lease another holder (or anyone, holder NULL) has; 0 if none. */
static int64_t lease_left_ms(const qw_order *o, const char *holder, int64_t now)
{
    if (!status_is(o->status, "PROCESSING"))
        return 0;
    const char *by = str_member(o->obj, "leaseMessage");
    int64_t until = odm_iso8601_parse(str_member(o->obj, "leaseUntil"));
    if (!by || (holder && strcmp(by, holder) == 0) || until <= now)
        return 0;
    return until - now;
}

static od_status lease_take(qw *self, qw_order *o, const char *holder, int64_t now)
{
    char until[ODM_TIME_LEN + 1];
    odm_iso8601(now + self->cfg.visibility_ms, until);
    json_object *by = json_object_new_string(holder), *at = json_object_new_string(until);
    if (!by || !at) {
        json_object_put(by);
        json_object_put(at);
        return OD_ERR_NOMEM;
    }
    json_object_object_add(o->obj, "leaseMessage", by);
    json_object_object_add(o->obj, "leaseUntil", at);
    return OD_OK;
}

/* Come back after the usual backoff, but no later than the lease ends. */
static enum qw_outcome wait_for_lease(qw *self, const od_message *msg, const char *id,
                                      int64_t left_ms)
{
    uint32_t delay = backoff_ms(self, msg->receive_count);
    if (delay > left_ms)
        delay = (uint32_t)left_ms;
    self->host->log(self->mod, OD_LOG_DEBUG,
                    "order %s: another delivery runs it (lease %lld ms left); message %s back "
                    "in %u ms",
                    id, (long long)left_ms, msg->id, delay);
    od_status st = self->queue->ops->change_visibility(self->queue->self, msg->lane, msg->receipt,
                                                       delay);
    if (st != OD_OK)
        self->host->log(self->mod, OD_LOG_WARN,
                        "message %s: postponing failed (%s); redelivery after visibility_ms",
                        msg->id, od_status_str(st));
    return QW_RETRIED;
}

/* One decision on a loaded order; PENDING/PROCESSING orders are (re)marked
 * PROCESSING with attempts = receive_count and the lease, and run.
 * *conflict is set when that write lost a race: the caller re-reads and
 * decides again (and then finds the winner's lease). */
static enum qw_outcome decide(qw *self, const od_message *msg, const char *id, qw_order *o,
                              int *conflict)
{
    *conflict = 0;
    if (status_is(o->status, "COMPLETED") || status_is(o->status, "FAILED")) {
        ack(self, msg); /* a duplicate delivery: already done */
        return QW_PROCESSED;
    }
    if (status_is(o->status, "CANCELLED"))
        return handle_cancelled(self, msg, id, o);
    if (!status_is(o->status, "PENDING") && !status_is(o->status, "PROCESSING"))
        return dead_letter(self, msg, id, "corrupt_order");
    char holder[QW_HOLDER_MAX];
    lease_holder(msg, holder);
    int64_t now = self->host->now_ms();
    int64_t left = lease_left_ms(o, holder, now);
    if (left > 0)
        return wait_for_lease(self, msg, id, left);
    od_status st = lease_take(self, o, holder, now);
    if (st == OD_OK)
        st = order_write(self, o, "PROCESSING", NULL, msg->receive_count);
    if (st == OD_OK)
        return run_pipeline(self, msg, id, o);
    if (st == OD_ERR_CONFLICT) {
        *conflict = 1;
        return QW_RETRIED;
    }
    return postpone_after(self, msg, "marking the order PROCESSING", st);
}

static enum qw_outcome handle_order(qw *self, const od_message *msg, const char *id)
{
    for (int tries = 0; tries < QW_STATUS_TRIES; tries++) {
        qw_order o;
        od_status st = order_load(self, id, &o);
        if (st == OD_ERR_NOT_FOUND)
            return dead_letter(self, msg, id, "order_not_found");
        if (st == OD_ERR_INVALID)
            return dead_letter(self, msg, id, "corrupt_order");
        if (st != OD_OK)
            return postpone_after(self, msg, "reading the order", st);
        int conflict = 0;
        enum qw_outcome out = decide(self, msg, id, &o, &conflict);
        order_free(self, &o);
        if (!conflict)
            return out;
    }
    return postpone_after(self, msg, "marking the order PROCESSING", OD_ERR_CONFLICT);
}

/* {"orderId":"<1..255 printable>"} into id[OD_KEY_MAX + 1]. */
static od_status parse_message(const od_message *msg, char *id)
{
    odm_err e;
    json_object *obj = odm_parse_object(msg->body, msg->len, &e);
    json_object *v = NULL;
    od_status st = OD_ERR_INVALID;
    if (obj && json_object_object_get_ex(obj, "orderId", &v) &&
        json_object_is_type(v, json_type_string) &&
        is_printable_key(json_object_get_string(v), (size_t)json_object_get_string_len(v))) {
        snprintf(id, OD_KEY_MAX + 1, "%s", json_object_get_string(v));
        st = OD_OK;
    }
    json_object_put(obj);
    return st;
}

static enum qw_outcome handle_message(qw *self, const od_message *msg)
{
    char id[OD_KEY_MAX + 1];
    if (parse_message(msg, id) != OD_OK) {
        /* Forwarded verbatim, so an operator can see what was sent. */
        self->host->log(self->mod, OD_LOG_WARN, "message %s: not {\"orderId\"}; dead-lettered",
                        msg->id);
        return dead_letter_body(self, msg, msg->body, msg->len);
    }
    return handle_order(self, msg, id);
}

/* ---- receiving ---------------------------------------------------------- */

static od_status receive_one(qw *self, uint32_t lane, uint32_t wait_ms, od_message *msg, int *got)
{
    size_t n = 0;
    od_status st = self->queue->ops->receive(self->queue->self, lane, 1, wait_ms,
                                             self->cfg.visibility_ms, msg, &n);
    *got = st == OD_OK && n == 1;
    if (*got)
        msg->lane = lane;
    return st;
}

/* Priority first, a waiting normal message after priority_weight priority
 * ones in a row. Both lanes are tried without waiting; only then one lane is
 * long-polled for wait_ms (if > 0), alternating, so when idle the worker
 * threads split between the lanes. *got = 0 when nothing came. */
static od_status next_message(qw *self, qw_picker *p, uint32_t wait_ms, od_message *msg, int *got)
{
    uint32_t first = p->streak >= self->cfg.priority_weight ? OD_LANE_NORMAL : OD_LANE_PRIORITY;
    uint32_t lanes[3] = {first, first == OD_LANE_NORMAL ? OD_LANE_PRIORITY : OD_LANE_NORMAL,
                         (p->idle & 1) ? OD_LANE_NORMAL : OD_LANE_PRIORITY};
    size_t tries = wait_ms ? 3 : 2;
    *got = 0;
    for (size_t i = 0; i < tries; i++) {
        od_status st = receive_one(self, lanes[i], i == 2 ? wait_ms : 0, msg, got);
        if (st != OD_OK)
            return st;
        if (*got) {
            p->streak = lanes[i] == OD_LANE_PRIORITY ? p->streak + 1 : 0;
            return OD_OK;
        }
    }
    p->idle++;
    return OD_OK;
}

/* ---- worker threads ----------------------------------------------------- */

/* After a queue error: wait poll_wait_ms, or less if stop is requested, so
 * an unreachable queue does not turn the workers into a busy loop. */
static struct timespec deadline_after(uint32_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    return until;
}

static void pause_after_error(qw *self)
{
    struct timespec until = deadline_after(self->cfg.poll_wait_ms);
    pthread_mutex_lock(&self->wake_lock);
    int rc = 0;
    while (!atomic_load(&self->stop_requested) && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&self->wake, &self->wake_lock, &until);
    pthread_mutex_unlock(&self->wake_lock);
}

static void *worker_main(void *arg)
{
    qw_worker *w = arg;
    qw *self = w->self;
    while (!should_stop(self)) {
        od_message msg = {0};
        int got = 0;
        od_status st = next_message(self, &w->picker, self->cfg.poll_wait_ms, &msg, &got);
        if (st != OD_OK) {
            self->host->log(self->mod, OD_LOG_WARN, "receive failed: %s", od_status_str(st));
            pause_after_error(self);
            continue;
        }
        if (!got)
            continue;
        if (should_stop(self)) {
            /* Not started yet: give it back at once rather than hold it for
             * visibility_ms. */
            self->queue->ops->change_visibility(self->queue->self, msg.lane, msg.receipt, 0);
        } else {
            count(self, handle_message(self, &msg));
        }
        od_message_clear(self->host, &msg);
    }
    return NULL;
}

/* Caller holds ctl_lock. */
static void workers_stop_locked(qw *self)
{
    if (!self->workers)
        return;
    pthread_mutex_lock(&self->wake_lock);
    atomic_store(&self->stop_requested, 1);
    pthread_cond_broadcast(&self->wake);
    pthread_mutex_unlock(&self->wake_lock);
    self->host->log(self->mod, OD_LOG_INFO, "stopping %u worker threads", self->n_workers);
    for (uint32_t i = 0; i < self->n_workers; i++)
        pthread_join(self->workers[i].tid, NULL);
    self->host->free(self->workers);
    self->workers = NULL;
    self->n_workers = 0;
    atomic_store(&self->running_threads, 0);
}

/* Caller holds ctl_lock. Workers block every signal: the core's main thread
 * is the one that handles them. */
static od_status workers_start_locked(qw *self)
{
    if (self->closed)
        return OD_ERR_CLOSED;
    if (self->workers)
        return OD_OK;
    qw_worker *w = self->host->calloc(self->cfg.threads, sizeof *w);
    if (!w)
        return OD_ERR_NOMEM;
    atomic_store(&self->stop_requested, 0);
    self->workers = w;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    od_status st = OD_OK;
    for (self->n_workers = 0; self->n_workers < self->cfg.threads; self->n_workers++) {
        qw_worker *t = &w[self->n_workers];
        t->self = self;
        t->picker.idle = self->n_workers; /* idle threads split between the lanes */
        if (pthread_create(&t->tid, NULL, worker_main, t) != 0) {
            st = OD_ERR_INTERNAL;
            break;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (st != OD_OK) {
        self->host->log(self->mod, OD_LOG_ERROR, "could not start worker thread %u of %u",
                        self->n_workers + 1, self->cfg.threads);
        workers_stop_locked(self);
        return st;
    }
    atomic_store(&self->running_threads, self->n_workers);
    self->host->log(self->mod, OD_LOG_INFO, "%u worker threads started", self->n_workers);
    return OD_OK;
}

static od_status workers_start(qw *self)
{
    pthread_mutex_lock(&self->ctl_lock);
    od_status st = workers_start_locked(self);
    pthread_mutex_unlock(&self->ctl_lock);
    return st;
}

static void workers_stop(qw *self, int close)
{
    pthread_mutex_lock(&self->ctl_lock);
    self->closed |= close;
    workers_stop_locked(self);
    pthread_mutex_unlock(&self->ctl_lock);
}

/* ---- the sweeper --------------------------------------------------------
 *
 * The worker's own recovery covers a worker that dies mid-pipeline: its
 * message stays in flight and comes back after visibility_ms. The sweeper
 * covers the order whose message is gone - orderd died between storing the
 * order and queueing it, a message was lost by the backend or deleted by
 * hand: every sweep_interval_ms it walks the PENDING and PROCESSING orders
 * (index "status") and re-queues those without progress for sweep_after_ms.
 * A duplicate message is harmless: the PROCESSING lease keeps it from
 * running alongside the first, and the conditional status writes and the
 * steps' counter tokens make a later second run a no-op. It uses only the
 * storage and queue ops, so it keeps any backend pair honest. */

/* When anyone last moved the order along: updatedAt (every status write)
 * or requeuedAt (the sweeper), whichever is later. -1 when neither can be
 * read: such an order is re-queued, a duplicate beats a stuck order. */
static int64_t last_progress_ms(json_object *order)
{
    int64_t updated = odm_iso8601_parse(str_member(order, "updatedAt"));
    int64_t requeued = odm_iso8601_parse(str_member(order, "requeuedAt"));
    return updated > requeued ? updated : requeued;
}

static int sweeper_stopping(const qw *self)
{
    return atomic_load(&self->sweep_stop) || self->host->stopping();
}

/* {"orderId"} on the lane the orders module would have used. */
static od_status send_order_message(qw *self, const qw_order *o)
{
    const char *priority = str_member(o->obj, "priority");
    uint32_t lane = priority && status_is(priority, "high") ? OD_LANE_PRIORITY : OD_LANE_NORMAL;
    json_object *msg = json_object_new_object();
    if (!msg)
        return OD_ERR_NOMEM;
    json_object_object_add(msg, "orderId", json_object_new_string(o->id));
    size_t len = 0;
    const char *s = json_object_to_json_string_length(
        msg, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    od_status st = s ? self->queue->ops->send(self->queue->self, lane, s, len, 0, NULL)
                     : OD_ERR_NOMEM;
    json_object_put(msg);
    return st;
}

/* Record requeuedAt with a conditional put, then send. The put decides:
 * of several sweepers sharing the storage (many orderd instances) only the
 * one whose put wins sends. If the send then fails, the order carries the
 * new requeuedAt and the first sweep after sweep_after_ms tries again;
 * nothing is lost, it is only late. Sending first would instead let every
 * instance send on every sweep. Returns the put's status; a lost race
 * (CONFLICT, NOT_FOUND) means someone else moved the order: fine. */
static od_status requeue(qw *self, qw_order *o, int64_t now)
{
    char at[ODM_TIME_LEN + 1];
    odm_iso8601(now, at);
    json_object *v = json_object_new_string(at);
    if (!v || json_object_object_add(o->obj, "requeuedAt", v) != 0) {
        json_object_put(v);
        return OD_ERR_NOMEM;
    }
    /* Replacing a member frees nothing o->status borrows ("status" stays). */
    od_status st = order_store(self, o);
    if (st != OD_OK)
        return st;
    st = send_order_message(self, o);
    if (st != OD_OK) {
        self->host->log(self->mod, OD_LOG_WARN,
                        "order %s: re-queueing failed (%s); the sweep after sweep_after_ms "
                        "tries again",
                        o->id, od_status_str(st));
        return OD_OK;
    }
    self->host->metric_add(self->requeued_metric, 1);
    self->host->log(self->mod, OD_LOG_INFO, "order %s: %s without progress for %u ms; re-queued",
                    o->id, o->status, self->cfg.sweep_after_ms);
    return OD_OK;
}

/* One document of a sweep page; takes ownership of *doc. Returns
 * OD_ERR_UNAVAILABLE (end this sweep) only for a storage outage. */
static od_status sweep_doc(qw *self, od_doc *doc, int64_t now)
{
    qw_order o = {.doc = *doc};
    memset(doc, 0, sizeof *doc);
    o.id = o.doc.key;
    if (order_parse(self, &o) != OD_OK) {
        od_doc_clear(self->host, &o.doc); /* unreadable: the worker dead-letters it if queued */
        return OD_OK;
    }
    od_status st = OD_OK;
    /* A PROCESSING order under an unexpired lease has a worker on it. */
    if (!status_is_final(o.status) && lease_left_ms(&o, NULL, now) == 0 &&
        now - last_progress_ms(o.obj) >= self->cfg.sweep_after_ms)
        st = requeue(self, &o, now);
    order_free(self, &o);
    return st == OD_ERR_UNAVAILABLE ? st : OD_OK;
}

/* Walk the orders with this status, a bounded page at a time. Documents
 * whose put we make keep their status, so the keyset cursor stays valid. */
static od_status sweep_status(qw *self, const char *status, int64_t now)
{
    const od_storage *db = self->storage;
    char *cursor = NULL;
    od_status st = OD_OK;
    do {
        od_page page = {0};
        st = db->ops->query(db->self, QW_TABLE, "status", status, cursor, QW_SWEEP_PAGE, 0, &page);
        self->host->free(cursor);
        cursor = NULL;
        for (size_t i = 0; st == OD_OK && i < page.count && !sweeper_stopping(self); i++)
            st = sweep_doc(self, &page.items[i], now);
        if (st == OD_OK) {
            cursor = page.next;
            page.next = NULL;
        }
        od_page_clear(self->host, &page);
    } while (cursor && !sweeper_stopping(self));
    self->host->free(cursor);
    return st;
}

static void sweep(qw *self)
{
    static const char *const stuck[] = {"PENDING", "PROCESSING"};
    int64_t now = self->host->now_ms();
    for (size_t i = 0; i < sizeof stuck / sizeof stuck[0] && !sweeper_stopping(self); i++) {
        od_status st = sweep_status(self, stuck[i], now);
        if (st != OD_OK)
            self->host->log(self->mod, OD_LOG_WARN, "sweep of %s orders stopped: %s; next in %u ms",
                            stuck[i], od_status_str(st), self->cfg.sweep_interval_ms);
    }
    self->host->metric_add(self->sweeps_metric, 1);
}

/* Wait one interval; 0 once stop is requested. */
static int sweeper_wait(qw *self)
{
    struct timespec until = deadline_after(self->cfg.sweep_interval_ms);
    pthread_mutex_lock(&self->sweep_lock);
    int rc = 0;
    while (!atomic_load(&self->sweep_stop) && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&self->sweep_wake, &self->sweep_lock, &until);
    pthread_mutex_unlock(&self->sweep_lock);
    return !sweeper_stopping(self);
}

static void *sweeper_main(void *arg)
{
    qw *self = arg;
    while (sweeper_wait(self))
        sweep(self);
    return NULL;
}

/* Main thread (start). Blocks every signal in the thread, like workers. */
static od_status sweeper_start(qw *self)
{
    if (self->cfg.sweep_interval_ms == 0)
        return OD_OK;
    atomic_store(&self->sweep_stop, 0);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&self->sweeper, NULL, sweeper_main, self);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        self->host->log(self->mod, OD_LOG_ERROR, "could not start the sweeper thread");
        return OD_ERR_INTERNAL;
    }
    self->sweeper_started = 1;
    self->host->log(self->mod, OD_LOG_INFO,
                    "sweeper started: every %u ms, re-queues orders without progress for %u ms",
                    self->cfg.sweep_interval_ms, self->cfg.sweep_after_ms);
    return OD_OK;
}

/* Main thread (stop, destroy). */
static void sweeper_stop(qw *self)
{
    if (!self->sweeper_started)
        return;
    pthread_mutex_lock(&self->sweep_lock);
    atomic_store(&self->sweep_stop, 1);
    pthread_cond_broadcast(&self->sweep_wake);
    pthread_mutex_unlock(&self->sweep_lock);
    pthread_join(self->sweeper, NULL);
    self->sweeper_started = 0;
}

/* ---- routes ------------------------------------------------------------- */

/* Waiting plus in-flight messages of the normal and priority lanes. */
static od_status pending_messages(qw *self, int64_t *out, int with_in_flight)
{
    *out = 0;
    for (uint32_t lane = OD_LANE_NORMAL; lane <= OD_LANE_PRIORITY; lane++) {
        int64_t visible = 0, in_flight = 0;
        od_status st = self->queue->ops->depth(self->queue->self, lane, &visible, &in_flight);
        if (st != OD_OK)
            return st;
        *out += visible + (with_in_flight ? in_flight : 0);
    }
    return OD_OK;
}

static od_status reply_status(qw *self, od_request *req, const char *message)
{
    int64_t depth = 0;
    char depth_text[24] = "null"; /* unknown while the queue is unreachable */
    if (pending_messages(self, &depth, 1) == OD_OK)
        snprintf(depth_text, sizeof depth_text, "%lld", (long long)depth);
    char data[384];
    int n = snprintf(data, sizeof data,
                     "{\"running\":%s,\"threads\":%u,\"processed\":%lld,\"failed\":%lld,"
                     "\"retried\":%lld,\"deadLettered\":%lld,\"queueDepth\":%s}",
                     atomic_load(&self->running_threads) ? "true" : "false",
                     atomic_load(&self->running_threads),
                     (long long)atomic_load(&self->outcomes[QW_PROCESSED]),
                     (long long)atomic_load(&self->outcomes[QW_FAILED]),
                     (long long)atomic_load(&self->outcomes[QW_RETRIED]),
                     (long long)atomic_load(&self->outcomes[QW_DEAD]), depth_text);
    return self->host->reply(req, 200, message, data, (size_t)n);
}

static od_status route_status(void *arg, od_request *req)
{
    return reply_status(arg, req, "Worker status");
}

static od_status route_start(void *arg, od_request *req)
{
    qw *self = arg;
    od_status st = workers_start(self);
    if (st != OD_OK)
        return odm_reply_status(self->host, req, st);
    return reply_status(self, req, "Worker started");
}

static od_status route_stop(void *arg, od_request *req)
{
    qw *self = arg;
    workers_stop(self, 0);
    return reply_status(self, req, "Worker stopped");
}

/* Drain what is queued now, on this thread: at most the messages visible
 * at the start (capped at QW_DRAIN_CAP) and for at most QW_DRAIN_TIME_MS, so
 * a queue that keeps filling cannot hold the request forever. */
static od_status route_process_queue(void *arg, od_request *req)
{
    qw *self = arg;
    int64_t budget = 0;
    od_status st = pending_messages(self, &budget, 0);
    if (st != OD_OK)
        return odm_reply_status(self->host, req, st);
    if (budget > QW_DRAIN_CAP)
        budget = QW_DRAIN_CAP;
    int64_t deadline = self->host->monotonic_ms() + QW_DRAIN_TIME_MS;
    int64_t counts[QW_OUTCOMES] = {0}, total = 0;
    qw_picker picker = {0};
    while (total < budget && self->host->monotonic_ms() < deadline && !self->host->stopping()) {
        od_message msg = {0};
        int got = 0;
        st = next_message(self, &picker, 0, &msg, &got);
        if (st != OD_OK && total == 0)
            return odm_reply_status(self->host, req, st);
        if (st != OD_OK || !got)
            break;
        enum qw_outcome o = handle_message(self, &msg);
        od_message_clear(self->host, &msg);
        count(self, o);
        counts[o]++;
        total++;
    }
    char data[256];
    int n = snprintf(data, sizeof data,
                     "{\"processed\":%lld,\"failed\":%lld,\"retried\":%lld,\"deadLettered\":%lld,"
                     "\"total\":%lld}",
                     (long long)counts[QW_PROCESSED], (long long)counts[QW_FAILED],
                     (long long)counts[QW_RETRIED], (long long)counts[QW_DEAD], (long long)total);
    return self->host->reply(req, 200, "Queue processed", data, (size_t)n);
}

/* ---- metrics ------------------------------------------------------------ */

static int64_t gauge_depth(void *arg)
{
    const qw_gauge *g = arg;
    int64_t visible = 0, in_flight = 0;
    const od_queue *q = g->self->queue;
    if (q->ops->depth(q->self, g->lane, &visible, &in_flight) != OD_OK)
        return -1; /* queue unreachable */
    return visible + in_flight;
}

static od_status register_metrics(qw *self)
{
    const od_host_api *h = self->host;
    for (size_t i = 0; i < QW_OUTCOMES; i++)
        self->outcome_metric[i] =
            h->metric(self->mod, OD_METRIC_COUNTER, "orderd_worker_messages_total",
                      "Queue messages handled by the worker, by outcome", qw_outcome_labels[i]);
    for (size_t i = 0; i < QW_WRITTEN; i++)
        self->status_metric[i] =
            h->metric(self->mod, OD_METRIC_COUNTER, "orderd_orders_status_changes_total",
                      "Order status changes, by the status entered", qw_written_labels[i]);
    self->requeued_metric =
        h->metric(self->mod, OD_METRIC_COUNTER, "orderd_sweeper_requeued_total",
                  "Orders the sweeper re-queued after sweep_after_ms without progress", NULL);
    self->sweeps_metric = h->metric(self->mod, OD_METRIC_COUNTER, "orderd_sweeper_sweeps_total",
                                    "Sweeps of PENDING/PROCESSING orders completed", NULL);
    self->step_seconds = h->calloc(self->n_steps ? self->n_steps : 1, sizeof *self->step_seconds);
    if (!self->step_seconds)
        return OD_ERR_NOMEM;
    for (size_t i = 0; i < self->n_steps; i++) {
        char labels[64];
        snprintf(labels, sizeof labels, "step=\"%s\"", self->steps[i]->name);
        self->step_seconds[i] = h->metric(self->mod, OD_METRIC_HISTOGRAM,
                                          "orderd_step_duration_seconds",
                                          "Time one order spent in a pipeline step", labels);
    }
    for (uint32_t lane = 0; lane < OD_LANE_COUNT; lane++) {
        self->gauges[lane] = (qw_gauge){self, lane};
        const char *name = lane == OD_LANE_DEAD ? "orderd_queue_dead_letter_depth"
                                                : "orderd_queue_depth";
        od_status st = h->gauge_fn(self->mod, name,
                                   "Messages waiting or in flight (-1: queue unreachable)",
                                   qw_lane_labels[lane], gauge_depth, &self->gauges[lane]);
        if (st != OD_OK)
            return st;
    }
    return OD_OK;
}

/* ---- lifecycle ---------------------------------------------------------- */

static od_status config_u32(qw *self, const char *key, int64_t def, int64_t min, int64_t max,
                            uint32_t *out)
{
    int64_t v = 0;
    od_status st = self->host->config_int(self->mod, key, def, min, max, &v);
    *out = (uint32_t)v;
    return st;
}

static od_status read_config(qw *self)
{
    qw_config *c = &self->cfg;
    od_status st = OD_OK;
    if ((st = config_u32(self, "threads", 4, 1, 64, &c->threads)) != OD_OK ||
        (st = config_u32(self, "max_attempts", 5, 1, 100, &c->max_attempts)) != OD_OK ||
        (st = config_u32(self, "backoff_base_ms", 500, 1, 3600000, &c->backoff_base_ms)) != OD_OK ||
        (st = config_u32(self, "backoff_max_ms", 60000, 1, 3600000, &c->backoff_max_ms)) != OD_OK ||
        (st = config_u32(self, "visibility_ms", 30000, 100, 43200000, &c->visibility_ms)) != OD_OK ||
        (st = config_u32(self, "poll_wait_ms", 1000, 1, 20000, &c->poll_wait_ms)) != OD_OK ||
        (st = config_u32(self, "priority_weight", 4, 1, 1000, &c->priority_weight)) != OD_OK ||
        (st = config_u32(self, "sweep_interval_ms", 30000, 0, 86400000, &c->sweep_interval_ms)) !=
            OD_OK ||
        (st = config_u32(self, "sweep_after_ms", 60000, 1000, 86400000, &c->sweep_after_ms)) !=
            OD_OK ||
        (st = self->host->config_bool(self->mod, "autostart", 1, &c->autostart)) != OD_OK)
        return st;
    if (c->backoff_base_ms > c->backoff_max_ms) {
        self->host->log(self->mod, OD_LOG_ERROR,
                        "backoff_base_ms (%u) must not exceed backoff_max_ms (%u)",
                        c->backoff_base_ms, c->backoff_max_ms);
        return OD_ERR_CONFIG;
    }
    /* Not an error: a duplicate is harmless, only wasteful. */
    if (c->sweep_interval_ms && c->sweep_after_ms < c->visibility_ms)
        self->host->log(self->mod, OD_LOG_WARN,
                        "sweep_after_ms (%u) is below visibility_ms (%u): orders whose message "
                        "is merely in flight will be re-queued too",
                        c->sweep_after_ms, c->visibility_ms);
    return OD_OK;
}

static od_status attach_backends(qw *self)
{
    self->storage = self->host->storage(self->mod);
    self->queue = self->host->queue(self->mod);
    if (!self->storage || !self->queue) {
        self->host->log(self->mod, OD_LOG_ERROR,
                        "needs a storage and a queue backend (configure storage and queue)");
        return OD_ERR_CONFIG;
    }
    return self->host->pipeline(self->mod, &self->steps, &self->n_steps);
}

static od_status register_routes(qw *self)
{
    static const struct {
        const char *method, *pattern;
        od_handler_fn fn;
    } routes[] = {
        {"GET", "/api/orders/worker/status", route_status},
        {"POST", "/api/orders/worker/start", route_start},
        {"POST", "/api/orders/worker/stop", route_stop},
        {"POST", "/api/orders/process-queue", route_process_queue},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        od_status st = self->host->route(self->mod, routes[i].method, routes[i].pattern,
                                         OD_ACCESS_ADMIN, routes[i].fn);
        if (st != OD_OK)
            return st;
    }
    return OD_OK;
}

static od_status init_sync(qw *self)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return OD_ERR_NOMEM;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&self->wake, &attr);
    if (rc == 0 && (rc = pthread_cond_init(&self->sweep_wake, &attr)) != 0)
        pthread_cond_destroy(&self->wake);
    pthread_condattr_destroy(&attr);
    if (rc != 0)
        return OD_ERR_NOMEM;
    pthread_mutex_init(&self->ctl_lock, NULL);
    pthread_mutex_init(&self->wake_lock, NULL);
    pthread_mutex_init(&self->sweep_lock, NULL);
    return OD_OK;
}

static od_status qw_init(const od_host_api *host, od_module *mod, void **out)
{
    qw *self = host->calloc(1, sizeof *self);
    if (!self)
        return OD_ERR_NOMEM;
    self->host = host;
    self->mod = mod;
    od_status st = read_config(self);
    if (st == OD_OK)
        st = attach_backends(self);
    if (st == OD_OK)
        st = register_metrics(self);
    if (st == OD_OK)
        st = register_routes(self);
    if (st == OD_OK)
        st = init_sync(self);
    if (st != OD_OK) {
        host->free(self->step_seconds);
        host->free(self);
        return st;
    }
    *out = self;
    return OD_OK;
}

/* The sweeper runs even when the workers do not autostart: re-queueing is
 * safe without consumers, and another instance may be consuming. */
static od_status qw_start(void *arg)
{
    qw *self = arg;
    od_status st = self->cfg.autostart ? workers_start(self) : OD_OK;
    if (st == OD_OK && (st = sweeper_start(self)) != OD_OK)
        workers_stop(self, 1);
    return st;
}

static void qw_stop(void *arg)
{
    qw *self = arg;
    sweeper_stop(self);
    workers_stop(self, 1);
}

static void qw_destroy(void *arg)
{
    qw *self = arg;
    qw_stop(self); /* in case stop() was never called */
    pthread_cond_destroy(&self->sweep_wake);
    pthread_mutex_destroy(&self->sweep_lock);
    pthread_cond_destroy(&self->wake);
    pthread_mutex_destroy(&self->wake_lock);
    pthread_mutex_destroy(&self->ctl_lock);
    self->host->free(self->step_seconds);
    self->host->free(self);
}

static const od_module_desc qw_desc = {
    .magic = OD_MODULE_MAGIC,
    .abi_major = OD_ABI_MAJOR,
    .abi_minor = OD_ABI_MINOR,
    .size = sizeof(od_module_desc),
    .kind = OD_KIND_SERVICE,
    .name = "queue_worker",
    .version = "1.0.0",
    .description = "Runs queued orders through the pipeline; worker admin routes",
    .init = qw_init,
    .start = qw_start,
    .stop = qw_stop,
    .destroy = qw_destroy,
    .ops = NULL,
};

OD_MODULE_EXPORT const od_module_desc *od_module_entry(void);
OD_MODULE_EXPORT const od_module_desc *od_module_entry(void) { return &qw_desc; }
