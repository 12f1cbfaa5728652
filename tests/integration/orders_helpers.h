/*
 * tests/integration/orders_helpers.h - what the products, orders and
 * concurrency suites need beyond harness.h.
 *
 * 1. A server with the whole order flow loaded. ih_server_start()'s config
 *    loads auth and users only, and libconfig refuses a second `modules`
 *    group in `extra`; so oh_server_start() writes the whole config (same
 *    test credentials and cheap argon2) and starts it with
 *    ih_server_launch().
 * 2. Short catalogue/order calls for the main thread (they ck_assert).
 * 3. oh_client: one curl handle for one worker thread. The harness is
 *    single-threaded and ck_assert must not run off the main thread, so a
 *    client checks each answer itself (no 5xx, JSON envelope) and records
 *    the first violation; the main thread asserts oh_client.bad == 0.
 */
#ifndef ORDERD_INTEG_ORDERS_HELPERS_H
#define ORDERD_INTEG_ORDERS_HELPERS_H

#include <stdint.h>

#include "harness.h"

/* Start orderd with every module of the order flow and
 * orders.pipeline = validate, reserve_stock, complete. worker: the body of
 * the queue_worker group (e.g. "autostart = false;"), NULL for the test
 * defaults (2 threads, 20 ms long poll, 50 ms backoff). */
void oh_server_start(ih_server *s, const char *worker);
/* The same with these storage and queue groups (ih_backend_groups()), so
 * that several servers can share one set of tables and queues. */
void oh_server_start_with(ih_server *s, const char *worker, const char *backends);

/* The admin's access token (harness-owned). */
const char *oh_admin(ih_server *s);
/* Register and log in a customer; returns the token (harness-owned). */
const char *oh_customer(ih_server *s, const char *email);
/* POST /api/products as admin with a price written as JSON text ("19.99");
 * asserts 201 and returns the id (harness-owned). */
const char *oh_product(ih_server *s, const char *admin, const char *name, const char *price,
                       int64_t stock);
/* GET /api/products/:id -> data.stock, asserting 200. */
int64_t oh_stock(ih_server *s, const char *token, const char *product_id);
/* POST /api/orders {"items":[{"productId","quantity"}]}; asserts 201 and
 * returns the order id (harness-owned). */
const char *oh_order(ih_server *s, const char *token, const char *product_id, int64_t quantity);
/* GET /api/orders/:id until its status is COMPLETED, FAILED or CANCELLED or
 * timeout_ms passes (then the test fails). Returns the final answer. */
ih_response *oh_wait_terminal(ih_server *s, const char *token, const char *order_id,
                              int timeout_ms);
/* The reason of the history entry with this status, NULL if none. */
const char *oh_history_reason(const ih_response *order, const char *status);
/* An int64 member by dotted path; fails the test if absent or not an int. */
int64_t oh_int(const ih_response *r, const char *path);
/* Every order an admin sees with ?status=<status> (walks all pages). */
size_t oh_count_status(ih_server *s, const char *admin, const char *status);
/* Poll until the admin sees no PENDING and no PROCESSING order, or fail. */
void oh_wait_drained(ih_server *s, const char *admin, int timeout_ms);
/* Sleep between two polls of a condition that has a deadline. */
void oh_pause_ms(int ms);

/* ---- thread-safe client ---- */

typedef struct oh_client {
    CURL *curl;
    int port;
    int bad;            /* answers that broke the contract (5xx, no envelope, no answer) */
    char first_bad[512]; /* what the first of them was */
} oh_client;

/* One answer, parsed; json is owned by the caller (json_object_put). */
typedef struct oh_answer {
    long status;
    int replayed;             /* "Idempotent-Replayed: true" was present */
    struct json_object *json; /* the whole envelope or NULL */
} oh_answer;

int oh_client_init(oh_client *c, int port); /* 0 or -1 */
void oh_client_close(oh_client *c);
/* One request; token and idempotency_key may be NULL, body NULL for none.
 * Returns 0 if an answer with a valid envelope came (a.status then holds
 * the HTTP status), -1 otherwise (counted in c->bad). */
int oh_call(oh_client *c, const char *method, const char *path, const char *token,
            const char *idempotency_key, const char *body, oh_answer *a);
/* A string member of data (a.json's "data.<key>"), NULL if absent. */
const char *oh_data_str(const oh_answer *a, const char *key);
void oh_answer_free(oh_answer *a);

#endif /* ORDERD_INTEG_ORDERS_HELPERS_H */
