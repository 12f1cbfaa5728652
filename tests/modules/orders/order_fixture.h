/*
 * order_fixture.h - set-up shared by the orders and steps suites: the real
 * storage_memory and queue_memory backends and the orders / step modules,
 * each loaded from the build tree the way the core loads it, behind the
 * mock host. Modules reach the backends through wrappers that fail on
 * demand and show the orders module one of its three ways of writing a new
 * order (FX_MODE_*). Each Check test runs in its own fork: fx_up() in a checked
 * fixture, fx_down() frees everything so LeakSanitizer sees a clean exit.
 */
#ifndef ORDER_FIXTURE_H
#define ORDER_FIXTURE_H

#include <json-c/json.h>

#include "mock_host.h"

#define FX_ALICE "0190a000-0000-7000-8000-00000000a11c"
#define FX_BOB "0190a000-0000-7000-8000-000000000b0b"
#define FX_ADMIN "0190a000-0000-7000-8000-0000000ad111"

typedef struct fx_module {
    const od_module_desc *desc;
    od_module *mod;
    void *self;
} fx_module;

typedef struct fx_state {
    fx_module storage, queue, orders, validate, reserve, complete;
    od_storage st; /* the real backend */
    od_queue q;
    od_step steps[3]; /* validate, reserve_stock, complete */
} fx_state;

extern fx_state FX;

/* How the orders module writes a new order; it decides in init from the
 * ops the wrappers below show it (modules/orders/orders.c,
 * detect_transactions). */
enum {
    FX_MODE_STEPS,  /* storage without put_batch: record, order, send */
    FX_MODE_BATCH,  /* put_batch (storage_memory's): record + order, then send */
    FX_MODE_OUTBOX, /* storage and queue report one store: record + order + message
                       in one put_batch (simulated, see order_fixture.c) */
    FX_MODES
};
/* Set before fx_up(); fx_down() goes back to FX_MODE_STEPS. */
void fx_use_mode(int mode);
int fx_mode(void);
const char *fx_mode_name(int mode);

/* Backends, then the three steps and the orders module. */
void fx_up(void);
void fx_down(void);
/* An int the orders module reads from its config group at its next init
 * (set before fx_up; fx_down forgets them). */
void fx_orders_config(const char *key, int64_t value);

/* Modules see the backends through switches: on, every storage op of
 * theirs returns OD_ERR_UNAVAILABLE (FX.st, used by the fixture, stays up);
 * put_batch alone returns it; the queue's send returns it (FX.q stays up). */
void fx_storage_unavailable(int on);
void fx_batch_unavailable(int on);
void fx_send_unavailable(int on);
/* Run fn once, at the start of the next put_batch a module calls, with its
 * puts (to write what a concurrent request would have written first). */
typedef void (*fx_batch_hook)(const od_put *const *puts, size_t n);
void fx_before_batch(fx_batch_hook fn);
/* Run fn once, at the start of the next del a module calls on table (to
 * do what a concurrent request would do right then). */
typedef void (*fx_del_hook)(const char *key);
void fx_before_del(const char *table, fx_del_hook fn);
/* Since fx_up: put_batch calls that committed, sends through the queue
 * wrapper that succeeded, notify calls on the queue wrapper. */
size_t fx_batches(void);
size_t fx_sends(void);
size_t fx_notifies(void);

/* A counter's growth since fx_up (orders created, status changes). */
int64_t fx_metric(const char *name, const char *labels);

/* A product document (products table) and its stock counter; the id is
 * written to id_out[OD_UUID_STR_LEN + 1]. */
void fx_product(const char *name, int64_t price_cents, int64_t stock, char *id_out);
int64_t fx_stock(const char *product_id);

/* Run one orders route as a user. body/idem_key may be NULL. The request
 * is returned for inspection; free it with fx_free(). */
od_request *fx_call(const char *method, const char *pattern, const char *id, const char *user,
                    uint32_t role, const char *body, const char *idem_key);
od_request *fx_list(const char *user, uint32_t role, const char *query_name, const char *value,
                    const char *query2, const char *value2);
void fx_free(od_request *r);

/* The reply envelope, parsed (owned by the fixture until fx_free), and a
 * member by dotted path ("data.items.0.quantity"); NULL when absent. */
json_object *fx_get(od_request *r, const char *path);
const char *fx_str(od_request *r, const char *path);
int64_t fx_int(od_request *r, const char *path);

/* Create an order for user (string form body) and copy its id out. */
void fx_order(const char *user, const char *body, char *id_out);

/* The stored order document (caller puts it) and helpers to steer it. */
json_object *fx_order_doc(const char *order_id, uint64_t *version);
void fx_set_status(const char *order_id, const char *status);
size_t fx_count_orders(void);
size_t fx_count_idem(void);   /* Idempotency-Key records */
size_t fx_count_expiry(void); /* their idempotency_expiry documents */

/* Run a step on the stored order like the queue worker does. */
int fx_run_step(const od_step *step, const char *order_id, char *reason_out);
void fx_compensate(const od_step *step, const char *order_id);

/* Messages waiting on a lane; each receive takes them (visibility 60 s). */
size_t fx_drain(uint32_t lane, char bodies[][128], size_t max);
/* Messages on every lane, visible or in flight. */
int64_t fx_queued(void);

#endif
