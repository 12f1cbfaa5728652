/*
 * host.c - the od_host_api table every module receives, and the per-module
 * handle (struct od_module) behind its od_module * argument.
 *
 * Reads no config key itself: the config getters read the calling module's
 * own group (its descriptor name; "storage" / "queue" for backends). Owns no
 * thread.
 *
 * Threads: the table is built once (pthread_once) and read-only afterwards.
 * An od_module is written on the main thread only (start-up); after init its
 * fields are read-only, so HTTP and queue workers may log through it without
 * a lock. "init only" members check od_loaded_module.initialized, which main
 * sets on the main thread after init returned.
 */
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"

struct od_module {
    char *name;        /* descriptor name, for log lines and routes */
    const char *group; /* config group: name, or "storage" / "queue" */
    od_core *core;
    od_loaded_module *lm;
    od_step step;             /* what host->step() hands out when this is a step */
    const od_step **pipeline; /* what host->pipeline() handed out, owned */
    size_t n_pipeline;
};

od_core *od_the_core;

/* ---- lifecycle helpers -------------------------------------------------- */

/* True while the module's init runs: the only time it may register things. */
static int in_init(const od_module *m)
{
    return m && !m->lm->initialized;
}

static const char *module_group(const od_module_desc *d)
{
    switch (d->kind) {
    case OD_KIND_STORAGE: return "storage";
    case OD_KIND_QUEUE: return "queue";
    default: return d->name;
    }
}

struct od_module *od_host_module_new(od_core *core, od_loaded_module *lm)
{
    struct od_module *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->name = strdup(lm->desc->name);
    if (!m->name) {
        free(m);
        return NULL;
    }
    m->group = module_group(lm->desc);
    m->core = core;
    m->lm = lm;
    return m;
}

void od_host_module_free(struct od_module *m)
{
    if (!m)
        return;
    free(m->pipeline);
    free(m->name);
    free(m);
}

/* ---- memory ------------------------------------------------------------- */

static void *host_alloc(size_t n)
{
    return malloc(n);
}

static void *host_calloc(size_t n, size_t size)
{
    return calloc(n, size);
}

static void *host_realloc(void *p, size_t n)
{
    return realloc(p, n);
}

static char *host_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void host_free(void *p)
{
    free(p);
}

/* ---- log ---------------------------------------------------------------- */

static void host_log(od_module *m, int level, const char *fmt, ...) OD_PRINTF(3, 4);

static void host_log(od_module *m, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    od_vlogf(m ? m->name : "unknown", level, fmt, ap);
    va_end(ap);
}

/* ---- config ------------------------------------------------------------- */

/* Config is read during init only: the module copies what it needs then. */
static od_status config_call_ok(const od_module *m, const void *key, const void *out)
{
    if (!in_init(m))
        return OD_ERR_CLOSED;
    return key && out ? OD_OK : OD_ERR_INVALID;
}

static od_status host_config_string(od_module *m, const char *key, const char *def,
                                    const char **out)
{
    od_status st = config_call_ok(m, key, out);
    return st != OD_OK ? st : od_config_string(m->core->config, m->group, key, def, out);
}

static od_status host_config_int(od_module *m, const char *key, int64_t def, int64_t min,
                                 int64_t max, int64_t *out)
{
    od_status st = config_call_ok(m, key, out);
    return st != OD_OK ? st : od_config_int(m->core->config, m->group, key, def, min, max, out);
}

static od_status host_config_bool(od_module *m, const char *key, int def, int *out)
{
    od_status st = config_call_ok(m, key, out);
    return st != OD_OK ? st : od_config_bool(m->core->config, m->group, key, def, out);
}

static od_status host_config_strings(od_module *m, const char *key, const char *const **out,
                                     size_t *n)
{
    od_status st = config_call_ok(m, key, n ? (const void *)out : NULL);
    return st != OD_OK ? st : od_config_strings(m->core->config, m->group, key, out, n);
}

/* ---- routes and authentication -------------------------------------------- */

static od_status host_route(od_module *m, const char *method, const char *pattern, uint32_t access,
                            od_handler_fn fn)
{
    if (!in_init(m))
        return OD_ERR_CLOSED;
    if (!method || !pattern || !fn || access > OD_ACCESS_ADMIN)
        return OD_ERR_INVALID;
    /* The handler gets *self_slot: init has not returned self yet. */
    return od_router_add(m->core->router, method, pattern, access, fn, &m->lm->self, m->name);
}

static od_status host_set_authenticator(od_module *m, od_authenticate_fn fn)
{
    if (!in_init(m))
        return OD_ERR_CLOSED;
    if (!fn)
        return OD_ERR_INVALID;
    if (m->core->authenticate)
        return OD_ERR_EXISTS;
    m->core->authenticate = fn;
    m->core->auth_self_slot = &m->lm->self;
    return OD_OK;
}

/* ---- backends and steps --------------------------------------------------- */

static const od_storage *host_storage(od_module *m)
{
    if (!in_init(m) || !m->core->storage.ops)
        return NULL;
    return &m->core->storage;
}

static const od_queue *host_queue(od_module *m)
{
    if (!in_init(m) || !m->core->queue.ops)
        return NULL;
    return &m->core->queue;
}

/* Only a step whose init succeeded: its self is final then. */
static const od_step *find_step(const od_core *core, const char *name)
{
    for (size_t i = 0; i < core->n_modules; i++) {
        od_loaded_module *lm = core->modules[i];
        if (lm->desc->kind != OD_KIND_STEP || !lm->initialized || !lm->mod
            || strcmp(lm->desc->name, name) != 0)
            continue;
        od_step *s = &lm->mod->step;
        s->ops = lm->desc->ops;
        s->self = lm->self;
        s->name = lm->mod->name;
        return s;
    }
    return NULL;
}

static const od_step *host_step(od_module *m, const char *name)
{
    if (!in_init(m) || !name)
        return NULL;
    return find_step(m->core, name);
}

/* orders.pipeline resolved to step handles. main checked at start-up that
 * every name is a loaded step, and steps init before every service, so a
 * miss here means the step's init has not run: a configuration error. */
static od_status host_pipeline(od_module *m, const od_step *const **steps, size_t *n)
{
    if (!in_init(m))
        return OD_ERR_CLOSED;
    if (!steps || !n)
        return OD_ERR_INVALID;
    const char *const *names;
    size_t count;
    od_status st = od_config_strings(m->core->config, "orders", "pipeline", &names, &count);
    if (st != OD_OK)
        return st;
    free(m->pipeline);
    m->pipeline = calloc(count ? count : 1, sizeof(*m->pipeline));
    m->n_pipeline = 0;
    if (!m->pipeline)
        return OD_ERR_NOMEM;
    for (size_t i = 0; i < count; i++) {
        m->pipeline[i] = find_step(m->core, names[i]);
        if (!m->pipeline[i]) {
            od_logf(m->name, OD_LOG_ERROR, "orders.pipeline: step \"%s\" is not initialised",
                    names[i]);
            return OD_ERR_CONFIG;
        }
    }
    m->n_pipeline = count;
    *steps = m->pipeline;
    *n = count;
    return OD_OK;
}

/* ---- metrics -------------------------------------------------------------- */

static od_metric *host_metric(od_module *m, uint32_t type, const char *name, const char *help,
                              const char *labels)
{
    if (!in_init(m) || !name)
        return NULL;
    return od_metrics_register(m->core->metrics, type, name, help ? help : "", labels);
}

static od_status host_gauge_fn(od_module *m, const char *name, const char *help, const char *labels,
                               od_gauge_fn fn, void *arg)
{
    if (!in_init(m))
        return OD_ERR_CLOSED;
    if (!name || !fn)
        return OD_ERR_INVALID;
    return od_metrics_gauge_fn(m->core->metrics, name, help ? help : "", labels, fn, arg);
}

/* ---- utilities ------------------------------------------------------------ */

static od_status host_random_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) { /* RAND_bytes takes an int */
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        if (RAND_bytes(p, chunk) != 1)
            return OD_ERR_INTERNAL;
        p += chunk;
        n -= (size_t)chunk;
    }
    return OD_OK;
}

static int64_t clock_ms(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t host_now_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

static int64_t host_monotonic_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

/* The last UUIDv7 prefix handed out: 48-bit ms timestamp << 12 | 12-bit
 * sequence (RFC 9562 method 1, the counter lives in rand_a). A CAS keeps ids
 * strictly increasing across threads without a lock; when a millisecond's
 * 4096 sequence numbers run out, the timestamp field runs ahead, which the
 * RFC allows. */
static _Atomic uint64_t uuid_last;

static uint64_t uuid_next_prefix(void)
{
    uint64_t now = (uint64_t)host_now_ms() & 0xFFFFFFFFFFFFull;
    uint64_t last = atomic_load_explicit(&uuid_last, memory_order_relaxed);
    uint64_t next;
    do {
        next = now << 12;
        if (next <= last)
            next = last + 1;
    } while (!atomic_compare_exchange_weak_explicit(&uuid_last, &last, next, memory_order_relaxed,
                                                    memory_order_relaxed));
    return next;
}

static od_status host_new_id(char *out)
{
    unsigned char u[16];
    if (host_random_bytes(u + 8, 8) != OD_OK)
        return OD_ERR_INTERNAL;
    uint64_t prefix = uuid_next_prefix();
    uint64_t ms = prefix >> 12;
    for (int i = 0; i < 6; i++)
        u[i] = (unsigned char)(ms >> (40 - 8 * i));
    u[6] = (unsigned char)(0x70 | ((prefix >> 8) & 0x0F)); /* version 7 */
    u[7] = (unsigned char)(prefix & 0xFF);
    u[8] = (unsigned char)((u[8] & 0x3F) | 0x80); /* variant 10 */
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[u[i] >> 4];
        *p++ = hex[u[i] & 0x0F];
    }
    *p = '\0';
    return OD_OK;
}

static int host_stopping(void)
{
    return od_the_core ? atomic_load(&od_the_core->stopping) : 0;
}

/* ---- the table ------------------------------------------------------------ */

static od_host_api host_api;
static pthread_once_t host_api_once = PTHREAD_ONCE_INIT;

static void host_api_build(void)
{
    host_api = (od_host_api){
        .size = (uint32_t)sizeof(od_host_api),
        .abi_major = OD_ABI_MAJOR,
        .abi_minor = OD_ABI_MINOR,
        .alloc = host_alloc,
        .calloc = host_calloc,
        .realloc = host_realloc,
        .strdup = host_strdup,
        .free = host_free,
        .log = host_log,
        .config_string = host_config_string,
        .config_int = host_config_int,
        .config_bool = host_config_bool,
        .config_strings = host_config_strings,
        .route = host_route,
        .set_authenticator = host_set_authenticator,
        .storage = host_storage,
        .queue = host_queue,
        .step = host_step,
        .pipeline = host_pipeline,
        .metric = host_metric,
        .metric_add = od_metric_add,
        .metric_set = od_metric_set,
        .metric_observe = od_metric_observe,
        .gauge_fn = host_gauge_fn,
        .random_bytes = host_random_bytes,
        .new_id = host_new_id,
        .now_ms = host_now_ms,
        .monotonic_ms = host_monotonic_ms,
        .stopping = host_stopping,
    };
    od_http_fill_host_api(&host_api);
}

const od_host_api *od_host_api_get(void)
{
    pthread_once(&host_api_once, host_api_build);
    return &host_api;
}
