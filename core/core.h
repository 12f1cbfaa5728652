/*
 * core/core.h - the core's internal interfaces (never installed, never seen
 * by modules). One section per core file; each file owns its section.
 *
 * Threads: od_core is built on the main thread during start-up and is
 * read-only once the HTTP server starts, except the atomics marked below.
 */
#ifndef ORDERD_CORE_H
#define ORDERD_CORE_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "orderd/orderd.h"

#ifndef ORDERD_VERSION
#define ORDERD_VERSION "0.0.0"
#endif

typedef struct od_config od_config;
typedef struct od_router od_router;
typedef struct od_metrics od_metrics;
typedef struct od_http od_http;

/* ---- log.c ----------------------------------------------------------------
 * One JSON object per line on stderr:
 *   {"ts":"2026-11-26T10:00:00.123Z","level":"info","module":"core","msg":"..."}
 * Any thread; each line is written with a single write(2). */
void od_log_set_level(int level);                 /* OD_LOG_* ; default INFO */
int od_log_level(void);
void od_logf(const char *module, int level, const char *fmt, ...) OD_PRINTF(3, 4);
void od_vlogf(const char *module, int level, const char *fmt, va_list ap);
/* The current UTC time as "2026-11-26T10:00:00.123Z" into out (>= 25 bytes),
 * without gmtime_r's global lock. Any thread. */
void od_log_timestamp(char *out, size_t cap);
/* Write an already formatted JSON object as one line (access log). */
void od_log_json_line(const char *json, size_t len);

/* ---- config.c -------------------------------------------------------------
 * Wraps libconfig. Errors are logged as "FILE:LINE: what (valid: ...)". */
od_config *od_config_load(const char *path);        /* NULL after logging the error */
void od_config_free(od_config *c);
const char *od_config_path(const od_config *c);
/* Typed getters on "group.key"; same contract as the host API getters:
 * missing -> def; wrong type/range -> logs file:line and returns OD_ERR_CONFIG.
 * Every successful or failed lookup marks the key as known. Environment
 * overrides (PORT, JWT_SECRET, ORDERD_ADMIN_EMAIL, ORDERD_ADMIN_PASSWORD) apply. */
od_status od_config_string(od_config *c, const char *group, const char *key, const char *def,
                           const char **out);
od_status od_config_int(od_config *c, const char *group, const char *key, int64_t def,
                        int64_t min, int64_t max, int64_t *out);
od_status od_config_bool(od_config *c, const char *group, const char *key, int def, int *out);
od_status od_config_strings(od_config *c, const char *group, const char *key,
                            const char *const **out, size_t *n);
/* Impose a boolean over the file's value (orderd --provision forces
 * storage.create_missing / queue.create_missing). Before any lookup. */
od_status od_config_force_bool(od_config *c, const char *group, const char *key, int value);
/* Log a warning for every key of every group nobody looked up, and for
 * unknown groups. */
void od_config_warn_unknown(od_config *c);
/* "FILE:LINE" where group.key is set (where the group is, or the config path,
 * when it is absent) into buf; returns buf. For errors found after a lookup,
 * e.g. an unknown storage backend. */
const char *od_config_where(od_config *c, const char *group, const char *key, char *buf,
                            size_t n);

/* ---- router.c -------------------------------------------------------------
 * Method + path with ":param" segments; literal segments beat parameters.
 * Built on the main thread, matched from many threads (read-only). */
#define OD_MAX_PARAMS 8
typedef struct od_route {
    const char *method;
    const char *pattern;     /* as registered */
    uint32_t access;         /* OD_ACCESS_* */
    od_handler_fn fn;
    /* Where the owning module's self lives (&od_loaded_module.self). Routes are
     * registered inside init(), before the module has returned its self, so the
     * handler is called as fn(*self_slot, req). */
    void *const *self_slot;
    const char *module;      /* owning module name, for logs */
} od_route;

typedef struct od_route_match {
    const od_route *route;
    size_t n_params;
    const char *param_names[OD_MAX_PARAMS];
    char *param_values[OD_MAX_PARAMS]; /* URL-decoded copies, freed by od_route_match_clear */
    char allow[64];                    /* for 405: "GET, POST" */
} od_route_match;

od_router *od_router_new(void);
void od_router_free(od_router *r);
/* OD_OK, OD_ERR_EXISTS (same method+pattern), OD_ERR_INVALID (bad pattern/method). */
od_status od_router_add(od_router *r, const char *method, const char *pattern, uint32_t access,
                        od_handler_fn fn, void *const *self_slot, const char *module);
/* Returns 200 (matched), 404 (no path matches), 405 (path matches, method
 * does not: m->allow lists the methods) or 400 (bad %-encoding in a segment). */
int od_router_match(const od_router *r, const char *method, const char *path, od_route_match *m);
void od_route_match_clear(od_route_match *m);

/* ---- metrics.c ------------------------------------------------------------
 * Prometheus text exposition. Registration on the main thread; updates
 * lock-free from any thread; render from any thread. */
od_metrics *od_metrics_new(void);
void od_metrics_free(od_metrics *m);
od_metric *od_metrics_register(od_metrics *m, uint32_t type, const char *name, const char *help,
                               const char *labels);
od_status od_metrics_gauge_fn(od_metrics *m, const char *name, const char *help,
                              const char *labels, od_gauge_fn fn, void *arg);
void od_metric_add(od_metric *metric, int64_t delta);
void od_metric_set(od_metric *metric, int64_t value);
void od_metric_observe(od_metric *metric, double value);
/* Count one HTTP request (route pattern or "unmatched"), lock-free. */
void od_metrics_http(od_metrics *m, const char *route, const char *method, int status,
                     double seconds);
/* Render into a malloc'd NUL-terminated buffer. */
char *od_metrics_render(od_metrics *m, size_t *len);

/* ---- loader.c -------------------------------------------------------------
 * Loads module files by name from the modules directory. */
typedef struct od_loaded_module {
    char *name;                    /* file name without .so */
    char *path;
    void *handle;                  /* dlopen handle, never closed */
    const od_module_desc *desc;
    struct od_module *mod;         /* the handle given to init (host.c) */
    void *self;
    int initialized, started;
} od_loaded_module;

/* Load "<dir>/<name>.so" and check the descriptor. On refusal logs one line
 * ("module NAME: ...") and returns NULL. expected_kind 0 = any. */
od_loaded_module *od_loader_load(const char *dir, const char *name, uint32_t expected_kind);
void od_loader_free(od_loaded_module *m); /* does not dlclose */
/* Refuse m when its file or its descriptor name is already among mods[0..n):
 * logs one line and returns OD_ERR_EXISTS, else OD_OK. */
od_status od_loader_check_unique(od_loaded_module *const *mods, size_t n,
                                 const od_loaded_module *m);

/* ---- host.c ---------------------------------------------------------------
 * The od_host_api table and the core context. */
typedef struct od_core {
    od_config *config;
    od_router *router;
    od_metrics *metrics;
    od_loaded_module **modules;   /* in init order: storage, queue, steps, services */
    size_t n_modules;
    od_storage storage;           /* .ops NULL if none */
    od_queue queue;               /* .ops NULL if none */
    const char *storage_name;     /* backend name, e.g. "memory" */
    const char *queue_name;
    od_authenticate_fn authenticate;
    void *const *auth_self_slot;  /* as od_route.self_slot: the auth module's self */
    int64_t started_ms;           /* wall clock at start, for uptime */
    size_t max_body;              /* server.max_body_bytes */
    int development;              /* server.development */
    atomic_int stopping;          /* set once shutdown began */
    atomic_long in_flight;        /* requests inside a handler */
} od_core;

extern od_core *od_the_core;      /* set once in main, for the host API's stopping() */
const od_host_api *od_host_api_get(void);
struct od_module *od_host_module_new(od_core *core, od_loaded_module *lm);
void od_host_module_free(struct od_module *m);

/* ---- http.c ---------------------------------------------------------------
 * CivetWeb glue: one entry handler, body reading, single-write responses,
 * access log, /, /health, /metrics, CORS, drain on shutdown. */
typedef struct od_http_config {
    const char *listen;          /* "127.0.0.1:3000" */
    int threads;
    size_t max_body;
    int request_timeout_ms;
    int keep_alive_timeout_ms;
    const char *cors_origin;     /* NULL/"" = no CORS headers */
} od_http_config;

od_http *od_http_start(od_core *core, const od_http_config *cfg); /* NULL after logging */
int od_http_port(const od_http *h);       /* the bound port (for port 0) */
/* Answer 503 to new requests, wait up to timeout_ms for in-flight ones, then mg_stop. */
void od_http_stop(od_http *h, int timeout_ms);
/* Fill the req_* and reply* members of the host API table. */
void od_http_fill_host_api(od_host_api *api);

#endif /* ORDERD_CORE_H */
