/*
 * orderd/host.h - the services the core hands to every module.
 *
 * init() receives `const od_host_api *host`; keep the pointer, it stays valid
 * until destroy() returns. Modules call nothing in the core by symbol.
 *
 * Conventions for every member below:
 *   - "init only": call from init() on the main thread; later calls fail.
 *   - "any thread": safe from HTTP workers and queue workers at once, never
 *     blocks longer than the call's own work (no global lock on the request
 *     path).
 *   - Strings passed in are borrowed for the call (the core copies what it
 *     keeps). Strings returned are owned by the core, valid as stated.
 *   - Memory the other side frees comes from alloc/calloc/realloc/strdup and
 *     goes back through free.
 */
#ifndef ORDERD_HOST_H
#define ORDERD_HOST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "orderd/module.h"
#include "orderd/queue.h"
#include "orderd/status.h"
#include "orderd/step.h"
#include "orderd/storage.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define OD_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define OD_PRINTF(f, a)
#endif

/* Log levels */
#define OD_LOG_ERROR 0
#define OD_LOG_WARN  1
#define OD_LOG_INFO  2
#define OD_LOG_DEBUG 3

/* Who may call a route. The core authenticates before the handler runs:
 * no or bad token on a USER/ADMIN route -> 401, a non-admin on an ADMIN
 * route -> 403; the handler never sees those requests. */
#define OD_ACCESS_PUBLIC 0
#define OD_ACCESS_USER   1
#define OD_ACCESS_ADMIN  2

#define OD_ROLE_CUSTOMER 1
#define OD_ROLE_ADMIN    2

#define OD_ID_MAX 64       /* user ids, order ids: 36-char UUIDs fit */
#define OD_UUID_STR_LEN 36

/* The authenticated caller of a request. */
typedef struct od_principal {
    uint32_t size;              /* sizeof(od_principal) */
    uint32_t role;              /* OD_ROLE_* */
    char user_id[OD_ID_MAX];    /* NUL-terminated */
    /* append new members below this line only */
} od_principal;

typedef struct od_request od_request; /* opaque, one per HTTP request */
typedef struct od_metric od_metric;   /* opaque metric handle */

/* A route handler. Runs on an HTTP worker thread, many at once; may block
 * (storage calls). It must answer through exactly one reply* call and then
 * return OD_OK. Returning an error without replying makes the core answer:
 * OD_ERR_UNAVAILABLE -> 503 unavailable, anything else -> 500 internal. */
typedef od_status (*od_handler_fn)(void *self, od_request *req);

/* The token verifier one module (auth) provides. token: the bearer token,
 * borrowed, len <= 8192. Fill *out (out->size is preset) and return OD_OK,
 * OD_ERR_INVALID for any bad token (-> 401), or OD_ERR_UNAVAILABLE when the
 * storage it checks tokens against cannot answer (-> 503). Runs on an HTTP
 * worker, many at once; may block on a storage read like a handler. */
typedef od_status (*od_authenticate_fn)(void *self, const char *token, size_t len,
                                        od_principal *out);

/* Metric types */
#define OD_METRIC_COUNTER   1
#define OD_METRIC_GAUGE     2
#define OD_METRIC_HISTOGRAM 3 /* observations in seconds, fixed buckets 1ms..10s */

/* A gauge the core reads at scrape time (e.g. queue depth). Runs on an HTTP
 * worker thread answering GET /metrics; may block briefly. */
typedef int64_t (*od_gauge_fn)(void *arg);

struct od_host_api {
    uint32_t size;      /* sizeof(od_host_api) of the core */
    uint16_t abi_major; /* the core's OD_ABI_MAJOR */
    uint16_t abi_minor; /* the core's OD_ABI_MINOR */

    /* ---- memory (any thread) ---- */
    void *(*alloc)(size_t n);
    void *(*calloc)(size_t n, size_t size);
    void *(*realloc)(void *p, size_t n);
    char *(*strdup)(const char *s);
    void (*free)(void *p);

    /* ---- logging (any thread). One line per call, prefixed with the
     * module name; never pass secrets. ---- */
    void (*log)(od_module *m, int level, const char *fmt, ...) OD_PRINTF(3, 4);

    /* ---- configuration: the module's own group (init only) ----
     * key: a member of the group, e.g. "token_ttl_seconds". Missing -> def.
     * Wrong type or out of range -> the core logs "file:line: ..." naming the
     * expected type/range and the call returns OD_ERR_CONFIG; fail init then.
     * Keys of the group no module asked for are warned about after init.
     * Some keys are overridden by the environment (JWT_SECRET -> auth.jwt_secret,
     * ORDERD_ADMIN_EMAIL/_PASSWORD -> users.admin_email/_password).
     * Strings returned stay valid until the module's destroy returns. */
    od_status (*config_string)(od_module *m, const char *key, const char *def, const char **out);
    od_status (*config_int)(od_module *m, const char *key, int64_t def, int64_t min, int64_t max,
                            int64_t *out);
    od_status (*config_bool)(od_module *m, const char *key, int def, int *out);
    /* An array of strings; *out points to *n strings (missing key -> n = 0). */
    od_status (*config_strings)(od_module *m, const char *key, const char *const **out, size_t *n);

    /* ---- routes (init only) ----
     * method: "GET", "POST", "PUT", "PATCH", "DELETE".
     * pattern: "/api/users/:id" — literal segments and ":name" parameters;
     * a literal beats a parameter (/api/users/me before /api/users/:id).
     * Duplicate method+pattern -> OD_ERR_EXISTS. */
    od_status (*route)(od_module *m, const char *method, const char *pattern, uint32_t access,
                       od_handler_fn fn);
    /* Register the token verifier (one per process; a second -> OD_ERR_EXISTS). */
    od_status (*set_authenticator)(od_module *m, od_authenticate_fn fn);

    /* ---- backends and steps (init only; the result stays valid until the
     * module's destroy). NULL when none is configured / no such step. ---- */
    const od_storage *(*storage)(od_module *m);
    const od_queue *(*queue)(od_module *m);
    const od_step *(*step)(od_module *m, const char *name);
    /* The order pipeline: the steps named by `orders.pipeline`, in order.
     * *steps points to *n step handles (n = 0 when none is configured). The
     * core checked at start-up that each name is a loaded step module. */
    od_status (*pipeline)(od_module *m, const od_step *const **steps, size_t *n);

    /* ---- metrics ----
     * Register at init only. name: [a-zA-Z_:][a-zA-Z0-9_:]*; labels: NULL or
     * a Prometheus label list without braces, e.g. "status=\"PENDING\"".
     * The same name+labels returns the same handle. Updates: any thread,
     * lock-free. */
    od_metric *(*metric)(od_module *m, uint32_t type, const char *name, const char *help,
                         const char *labels);
    void (*metric_add)(od_metric *metric, int64_t delta);    /* counter, gauge */
    void (*metric_set)(od_metric *metric, int64_t value);    /* gauge */
    void (*metric_observe)(od_metric *metric, double value); /* histogram */
    od_status (*gauge_fn)(od_module *m, const char *name, const char *help, const char *labels,
                          od_gauge_fn fn, void *arg);

    /* ---- utilities (any thread) ---- */
    od_status (*random_bytes)(void *buf, size_t n);   /* CSPRNG */
    /* A new time-ordered UUIDv7, lower-case, into out[OD_UUID_STR_LEN + 1]. */
    od_status (*new_id)(char *out);
    int64_t (*now_ms)(void);       /* wall clock, ms since the epoch */
    int64_t (*monotonic_ms)(void); /* for durations and deadlines */
    int (*stopping)(void);         /* 1 once shutdown began */

    /* ---- the request (handler's thread, valid until the handler returns) ---- */
    const char *(*req_method)(od_request *r);
    const char *(*req_path)(od_request *r);            /* raw path, without the query */
    /* Path parameter by name, URL-decoded; NULL if the pattern has none. */
    const char *(*req_param)(od_request *r, const char *name);
    /* Query parameter, URL-decoded; NULL if absent. */
    const char *(*req_query)(od_request *r, const char *name);
    const char *(*req_header)(od_request *r, const char *name); /* case-insensitive */
    /* The body, NUL-terminated (never NULL; "" when empty); *len excludes the
     * NUL. Already capped at server.max_body_bytes and checked against
     * Content-Length by the core. */
    const char *(*req_body)(od_request *r, size_t *len);
    /* The caller; NULL on a public route. */
    const od_principal *(*req_principal)(od_request *r);
    const char *(*req_client)(od_request *r); /* remote IP address */
    const char *(*req_id)(od_request *r);     /* X-Request-Id, accepted or generated */
    /* Scratch memory freed by the core after the response. NULL on OOM. */
    void *(*req_alloc)(od_request *r, size_t n);

    /* ---- the response (handler's thread; exactly one reply* per request) ----
     * Success envelope: {"statusCode":N,"message":"...","data":<data_json>}.
     * data_json: a JSON value (borrowed, copied), or NULL for null. */
    od_status (*reply)(od_request *r, int status, const char *message, const char *data_json,
                       size_t len);
    /* List envelope: {"statusCode":N,"message":"...","data":<items_json>,"next":<cursor|null>}. */
    od_status (*reply_list)(od_request *r, int status, const char *message, const char *items_json,
                            size_t len, const char *next_cursor);
    /* Error envelope: {"statusCode":N,"message":"...","error":"<code>"}. */
    od_status (*reply_error)(od_request *r, int status, const char *code, const char *message);
    /* Add a response header (before reply*); name and value are validated
     * and copied. Content-Type/-Length are the core's. */
    od_status (*reply_header)(od_request *r, const char *name, const char *value);
    /* append new members below this line only */
};

/* Release what a backend returned. */
static inline void od_doc_clear(const od_host_api *h, od_doc *d)
{
    h->free(d->key);
    h->free(d->body);
    d->key = d->body = NULL;
    d->len = 0;
}

static inline void od_page_clear(const od_host_api *h, od_page *p)
{
    for (size_t i = 0; i < p->count; i++)
        od_doc_clear(h, &p->items[i]);
    h->free(p->items);
    h->free(p->next);
    p->items = NULL;
    p->next = NULL;
    p->count = 0;
}

static inline void od_message_clear(const od_host_api *h, od_message *m)
{
    h->free(m->id);
    h->free(m->receipt);
    h->free(m->body);
    m->id = m->receipt = m->body = NULL;
    m->len = 0;
}

#ifdef __cplusplus
}
#endif
#endif /* ORDERD_HOST_H */
