/*
 * order_model.h - the `orders` document and the stock rules shared by the
 * orders service and the order-step modules (library odmod_order).
 *
 * Not part of the ABI: linked statically into orders.so and the step_*.so
 * modules so the status machine, the history format and "release only what
 * was reserved" (docs/data-model.md) exist exactly once. Like odmod_common it
 * keeps no state: every function is re-entrant, and the json-c objects it
 * hands out belong to the calling thread.
 */
#ifndef ODO_ORDER_MODEL_H
#define ODO_ORDER_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "orderd/orderd.h"

#define ODO_TABLE_ORDERS "orders"
#define ODO_TABLE_IDEMPOTENCY "idempotency"
/* One document per Idempotency-Key record, keyed by its creation time so
 * the oldest come first (docs/data-model.md). */
#define ODO_TABLE_IDEM_EXPIRY "idempotency_expiry"
#define ODO_TABLE_PRODUCTS "products"
#define ODO_COUNTER_STOCK "stock"

#define ODO_INDEX_CUSTOMER "customer"
#define ODO_INDEX_STATUS "status"

#define ODO_PENDING "PENDING"
#define ODO_PROCESSING "PROCESSING"
#define ODO_COMPLETED "COMPLETED"
#define ODO_FAILED "FAILED"
#define ODO_CANCELLED "CANCELLED"

/* Product ids are ids from host->new_id; longer client strings are refused
 * before they reach a storage key or an op token. */
#define ODO_PRODUCT_ID_MAX 64

/* Bounded re-read loops for conditional puts that lose a race. */
#define ODO_PUT_RETRIES 16

/* The metric every status writer bumps (label status="..."). */
#define ODO_METRIC_STATUS "orderd_orders_status_changes_total"
#define ODO_METRIC_STATUS_HELP "Order status changes, by the status entered"

/* The backend pair every function below works with. */
typedef struct odo_ctx {
    const od_host_api *host;
    const od_storage *storage;
} odo_ctx;

/* 1 for one of the five statuses. */
int odo_status_valid(const char *status);

/* Read and parse an order: OD_OK with *doc (the caller puts it) and
 * *version; else *doc is NULL and the status is OD_ERR_NOT_FOUND,
 * OD_ERR_UNAVAILABLE, or OD_ERR_INTERNAL for a document that is not an
 * order. */
od_status odo_load(const odo_ctx *c, const char *order_id, json_object **doc, uint64_t *version);

/* An order's write as an od_put, for a storage put_batch: body and index
 * values borrow from doc (valid until doc changes or is put); put.idx
 * points into the struct itself, so fill it in place, don't copy it. */
#define ODO_N_INDEXES 2
typedef struct odo_put {
    od_put put;
    od_index_value idx[ODO_N_INDEXES];
} odo_put;
od_status odo_put_of(json_object *doc, uint32_t cond, uint64_t expected, odo_put *out);

/* Write an order with its index values (customer, status) under cond
 * (OD_PUT_*). Storage statuses pass through. */
od_status odo_store(const odo_ctx *c, json_object *doc, uint32_t cond, uint64_t expected,
                    uint64_t *new_version);

/* Field accessors; "" / 0 when absent. */
const char *odo_str(json_object *doc, const char *key);
int odo_reserved(json_object *doc);
/* 1 once reserve_stock gave the order's stock back (shortfall or
 * compensation): its reserve tokens are spent, it must never reserve again. */
int odo_released(json_object *doc);
/* 1 if the order was ever PROCESSING (its history says so). */
int odo_was_processing(json_object *doc);

/* The items array and one line of it (borrowed from doc). */
size_t odo_line_count(json_object *doc);
od_status odo_line(json_object *doc, size_t i, const char **product_id, int64_t *quantity);

/* Set status and updatedAt and append {status, at, reason?} to history
 * (reason may be NULL). Only mutates doc; the caller stores it. */
od_status odo_set_status(json_object *doc, const char *status, const char *reason, int64_t now_ms);

/* Set the status with a conditional put against *version, re-reading on
 * OD_ERR_CONFLICT. allowed(from) decides, for each status read, whether the
 * change may still happen; when it may not, returns OD_ERR_CONFLICT with
 * *doc holding the current order. On OD_OK *doc and *version are the written
 * order. *doc is replaced on every re-read (the caller owns the last one). */
typedef int (*odo_allowed_fn)(const char *from);
od_status odo_transition(const odo_ctx *c, json_object **doc, uint64_t *version, const char *status,
                         const char *reason, odo_allowed_fn allowed);

/* Stock. Each call uses the op tokens of docs/data-model.md, so it takes
 * or gives back a line's units at most once per order, however often it
 * runs.
 * reserve: OD_OK (reserved now or earlier), OD_ERR_CONFLICT (shortfall),
 *          OD_ERR_NOT_FOUND (no stock counter: the product is gone),
 *          OD_ERR_UNAVAILABLE.
 * release: for a line known to be reserved.
 * release_if_reserved: for a line whose reservation is unknown: re-issue
 *          the reservation first (applied = 0 proves it happened earlier,
 *          applied = 1 took exactly what the release gives back, a floor
 *          failure proves nothing was taken). */
od_status odo_stock_reserve(const odo_ctx *c, const char *order_id, const char *product_id,
                            int64_t quantity);
od_status odo_stock_release(const odo_ctx *c, const char *order_id, const char *product_id,
                            int64_t quantity);
od_status odo_stock_release_if_reserved(const odo_ctx *c, const char *order_id,
                                        const char *product_id, int64_t quantity);
/* release_if_reserved for every line of the order; stops at the first
 * error (the tokens make a later retry safe). */
od_status odo_stock_release_order(const odo_ctx *c, json_object *doc);

/* Integer cents as a JSON number written from the integer: 1999 -> 19.99,
 * 1900 -> 19, 1990 -> 19.9 (no binary floating point in the text). */
json_object *odo_money_new(int64_t cents);

/* Serialize for storage or a reply (plain, no slash escaping). */
const char *odo_json_text(json_object *o, size_t *len);

#endif /* ODO_ORDER_MODEL_H */
