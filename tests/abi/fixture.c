/*
 * fixture.c - one source for every ABI fixture module. Each fixture is this
 * file built with FIXTURE_NAME, FIXTURE_KIND and at most one FIXTURE_BREAK_*
 * define (see CMakeLists.txt), so each breaks exactly one loader rule and
 * otherwise is a valid module of its kind.
 */
#include <stddef.h>
#include <orderd/orderd.h>

#ifndef FIXTURE_DESC_NAME
#define FIXTURE_DESC_NAME FIXTURE_NAME
#endif

#ifndef FIXTURE_BREAK_NO_INIT
/* The good fixtures are real enough for the start-up tests: they read one
 * key of their group, log their lifecycle and own memory from the host. */
typedef struct fx_self {
    const od_host_api *host;
    od_module *mod;
} fx_self;

static od_status fx_init(const od_host_api *host, od_module *mod, void **self)
{
    const char *greeting;
    if (host->config_string(mod, "greeting", "hello", &greeting) != OD_OK)
        return OD_ERR_CONFIG;
#ifdef FIXTURE_BREAK_INIT_FAILS
    host->log(mod, OD_LOG_INFO, "init fails on purpose");
    return OD_ERR_CONFIG;
#endif
    fx_self *fx = host->alloc(sizeof(*fx));
    if (!fx)
        return OD_ERR_NOMEM;
    fx->host = host;
    fx->mod = mod;
    int create_missing = 0; /* what orderd --provision forces on for backends */
    if (host->config_bool(mod, "create_missing", 0, &create_missing) != OD_OK)
        return OD_ERR_CONFIG;
    if (create_missing)
        host->log(mod, OD_LOG_INFO, "creating what is missing");
    host->log(mod, OD_LOG_INFO, "init %s", greeting);
    *self = fx;
    return OD_OK;
}

static od_status fx_start(void *self)
{
    fx_self *fx = self;
    fx->host->log(fx->mod, OD_LOG_INFO, "start");
    return OD_OK;
}

static void fx_stop(void *self)
{
    fx_self *fx = self;
    fx->host->log(fx->mod, OD_LOG_INFO, "stop");
}

static void fx_destroy(void *self)
{
    fx_self *fx = self;
    fx->host->log(fx->mod, OD_LOG_INFO, "destroy");
    fx->host->free(fx);
}
#endif

#if FIXTURE_KIND == OD_KIND_STORAGE
static od_status fx_define_table(void *self, const od_table_def *def)
{
    return OD_OK;
}
static od_status fx_get(void *self, const char *t, const char *k, od_doc *out)
{
    return OD_ERR_NOT_FOUND;
}
static od_status fx_put(void *self, const char *t, const char *k, const char *b, size_t len,
                        const od_index_value *idx, size_t n_idx, uint32_t cond, uint64_t expected,
                        uint64_t *new_version)
{
    return OD_ERR_UNSUPPORTED;
}
static od_status fx_del(void *self, const char *t, const char *k, uint64_t expected)
{
    return OD_ERR_NOT_FOUND;
}
static od_status fx_lookup(void *self, const char *t, const char *i, const char *v, od_doc *out)
{
    return OD_ERR_NOT_FOUND;
}
static od_status fx_query(void *self, const char *t, const char *i, const char *v,
                          const char *cursor, uint32_t limit, uint32_t desc, od_page *out)
{
    return OD_ERR_UNSUPPORTED;
}
static od_status fx_scan(void *self, const char *t, const char *cursor, uint32_t limit,
                         uint32_t desc, od_page *out)
{
    return OD_ERR_UNSUPPORTED;
}
static od_status fx_counter_add(void *self, const char *t, const char *k, int64_t delta,
                                int64_t floor, const char *token, int64_t *result, int32_t *applied)
{
    return OD_ERR_NOT_FOUND;
}
static od_status fx_counter_set(void *self, const char *t, const char *k, int64_t v)
{
    return OD_OK;
}
static od_status fx_counter_get(void *self, const char *t, const char *k, int64_t *v)
{
    return OD_ERR_NOT_FOUND;
}
static od_status fx_counter_del(void *self, const char *t, const char *k)
{
    return OD_ERR_NOT_FOUND;
}
static const od_storage_ops fx_ops = {
#ifdef FIXTURE_BREAK_OPS_SIZE
    .size = 8,
#elif defined(FIXTURE_ABI_1_0)
    .size = offsetof(od_storage_ops, put_batch),
#else
    .size = sizeof(od_storage_ops),
#endif
    .define_table = fx_define_table,
#ifndef FIXTURE_BREAK_OPS_MEMBER
    .get = fx_get,
#endif
    .put = fx_put,
    .del = fx_del,
    .lookup = fx_lookup,
    .query = fx_query,
    .scan = fx_scan,
    .counter_add = fx_counter_add,
    .counter_set = fx_counter_set,
    .counter_get = fx_counter_get,
    .counter_del = fx_counter_del,
};
#define FIXTURE_OPS (&fx_ops)

#elif FIXTURE_KIND == OD_KIND_QUEUE
static od_status fx_send(void *self, uint32_t lane, const char *body, size_t len, uint32_t delay_ms,
                         char **id_out)
{
    return OD_ERR_UNSUPPORTED;
}
static od_status fx_receive(void *self, uint32_t lane, uint32_t max, uint32_t wait_ms,
                            uint32_t visibility_ms, od_message *out, size_t *n)
{
    *n = 0;
    return OD_OK;
}
static od_status fx_del(void *self, uint32_t lane, const char *receipt)
{
    return OD_ERR_NOT_FOUND;
}
static od_status fx_change_visibility(void *self, uint32_t lane, const char *receipt,
                                      uint32_t visibility_ms)
{
    return OD_ERR_NOT_FOUND;
}
static od_status fx_depth(void *self, uint32_t lane, int64_t *visible, int64_t *in_flight)
{
    return OD_OK;
}
static const od_queue_ops fx_ops = {
#ifdef FIXTURE_ABI_1_0
    .size = offsetof(od_queue_ops, store),
#else
    .size = sizeof(od_queue_ops),
#endif
    .send = fx_send,
    .receive = fx_receive,
    .del = fx_del,
    .change_visibility = fx_change_visibility,
#ifndef FIXTURE_BREAK_OPS_MEMBER
    .depth = fx_depth,
#endif
};
#define FIXTURE_OPS (&fx_ops)

#elif FIXTURE_KIND == OD_KIND_STEP
static int fx_run(void *self, od_step_ctx *ctx)
{
    return OD_STEP_CONTINUE;
}
static const od_step_ops fx_ops = {
    .size = sizeof(od_step_ops),
#ifndef FIXTURE_BREAK_OPS_MEMBER
    .run = fx_run,
#endif
};
#define FIXTURE_OPS (&fx_ops)

#else /* service */
#ifdef FIXTURE_BREAK_SERVICE_OPS
static const uint32_t fx_ops = 4;
#define FIXTURE_OPS (&fx_ops)
#else
#define FIXTURE_OPS NULL
#endif
#endif

#ifdef FIXTURE_BREAK_NO_OPS
#undef FIXTURE_OPS
#define FIXTURE_OPS NULL
#endif

#ifdef FIXTURE_BREAK_MAGIC
#define FX_MAGIC 0x12345678u
#else
#define FX_MAGIC OD_MODULE_MAGIC
#endif
#ifdef FIXTURE_BREAK_ABI_MAJOR
#define FX_MAJOR (OD_ABI_MAJOR + 1)
#else
#define FX_MAJOR OD_ABI_MAJOR
#endif
#ifdef FIXTURE_BREAK_ABI_MINOR
#define FX_MINOR (OD_ABI_MINOR + 1)
#elif defined(FIXTURE_ABI_1_0)
#define FX_MINOR 0 /* a module built before 1.1: its ops end where 1.0's did */
#else
#define FX_MINOR OD_ABI_MINOR
#endif
#ifdef FIXTURE_BREAK_SIZE
#define FX_SIZE 16
#else
#define FX_SIZE sizeof(od_module_desc)
#endif
#ifdef FIXTURE_BREAK_KIND
#define FX_KIND 9
#else
#define FX_KIND FIXTURE_KIND
#endif

/* The header spelt out (not OD_MODULE_HEADER) so one field can be broken. */
static const od_module_desc fx_desc = {
    .magic = FX_MAGIC,
    .abi_major = FX_MAJOR,
    .abi_minor = FX_MINOR,
    .size = FX_SIZE,
    .kind = FX_KIND,
    .name = FIXTURE_DESC_NAME,
    .version = "1.2.3",
    .description = "ABI test fixture " FIXTURE_NAME,
#ifndef FIXTURE_BREAK_NO_INIT
    .init = fx_init,
    .start = fx_start,
    .stop = fx_stop,
    .destroy = fx_destroy,
#endif
    .ops = FIXTURE_OPS,
};

#ifndef FIXTURE_BREAK_NO_ENTRY
OD_MODULE_EXPORT const od_module_desc *od_module_entry(void)
{
#ifdef FIXTURE_BREAK_ENTRY_NULL
    (void)fx_desc;
    return NULL;
#else
    return &fx_desc;
#endif
}
#else
/* Exports something, but not the entry. */
OD_MODULE_EXPORT const od_module_desc *od_module_entry_v2(void);
OD_MODULE_EXPORT const od_module_desc *od_module_entry_v2(void)
{
    return &fx_desc;
}
#endif
