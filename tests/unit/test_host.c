/*
 * test_host.c - core/host.c: the host API table as a module sees it. UUIDv7
 * ids, init-only members (route, config, lookups) closing after init, config
 * bound to the module's group, one authenticator per process, step and
 * pipeline lookups, log lines prefixed with the module name.
 */
#include <check.h>
#include <json-c/json.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

static char dir[PATH_MAX];
static od_core core;
static const od_host_api *api;

/* ---- a fake loaded module: no .so, just a descriptor ------------------- */

static int fx_run(void *self, od_step_ctx *ctx)
{
    (void)self;
    (void)ctx;
    return OD_STEP_CONTINUE;
}

static const od_step_ops step_ops = {.size = sizeof(od_step_ops), .run = fx_run};

static od_loaded_module *fake_module(uint32_t kind, const char *name, const void *ops)
{
    od_module_desc *d = calloc(1, sizeof(*d));
    *d = (od_module_desc){OD_MODULE_HEADER(kind), .name = name, .ops = ops};
    od_loaded_module *lm = calloc(1, sizeof(*lm));
    lm->name = strdup(name);
    lm->path = strdup(name);
    lm->desc = d;
    lm->mod = od_host_module_new(&core, lm);
    ck_assert_ptr_nonnull(lm->mod);
    core.modules = realloc(core.modules, (core.n_modules + 1) * sizeof(*core.modules));
    core.modules[core.n_modules++] = lm;
    return lm;
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/orderd-host-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/orderd.conf", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("svc: { greeting = \"hi\"; };\n"
          "storage: { greeting = \"from storage\"; };\n"
          "orders: { pipeline = [\"step_b\", \"step_a\"]; };\n",
          f);
    fclose(f);
    memset(&core, 0, sizeof(core));
    core.config = od_config_load(path);
    ck_assert_ptr_nonnull(core.config);
    core.router = od_router_new();
    core.metrics = od_metrics_new();
    od_the_core = &core;
    api = od_host_api_get();
}

static void teardown(void)
{
    for (size_t i = 0; i < core.n_modules; i++) {
        od_host_module_free(core.modules[i]->mod);
        free((void *)core.modules[i]->desc);
        od_loader_free(core.modules[i]);
    }
    free(core.modules);
    od_router_free(core.router);
    od_metrics_free(core.metrics);
    od_config_free(core.config);
    od_the_core = NULL;
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static od_status handler(void *self, od_request *req)
{
    (void)self;
    (void)req;
    return OD_OK;
}

static od_status authenticate(void *self, const char *token, size_t len, od_principal *out)
{
    (void)self;
    (void)token;
    (void)len;
    (void)out;
    return OD_ERR_INVALID;
}

/* ---- tests ------------------------------------------------------------ */

START_TEST(table_header)
{
    ck_assert_uint_eq(api->size, sizeof(od_host_api));
    ck_assert_uint_eq(api->abi_major, OD_ABI_MAJOR);
    ck_assert_uint_eq(api->abi_minor, OD_ABI_MINOR);
    /* every member is filled, the http.c ones included */
    void (*const *fn)(void) =
        (void (*const *)(void))((const char *)api + offsetof(od_host_api, alloc));
    size_t n = (sizeof(od_host_api) - offsetof(od_host_api, alloc)) / sizeof(*fn);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fn[i] != NULL, "host API member %zu is NULL", i);
}
END_TEST

START_TEST(new_id_is_uuid_v7)
{
    char id[OD_UUID_STR_LEN + 1];
    int64_t before = api->now_ms();
    ck_assert_int_eq(api->new_id(id), OD_OK);
    int64_t after = api->now_ms();
    ck_assert_uint_eq(strlen(id), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            ck_assert_int_eq(id[i], '-');
        else
            ck_assert_msg(strchr("0123456789abcdef", id[i]) != NULL, "bad char in %s", id);
    }
    ck_assert_int_eq(id[14], '7');                 /* version */
    ck_assert_ptr_nonnull(strchr("89ab", id[19])); /* variant 10 */
    char hex[13];
    memcpy(hex, id, 8);
    memcpy(hex + 8, id + 9, 4);
    hex[12] = '\0';
    int64_t ms = strtoll(hex, NULL, 16);
    ck_assert_int_ge(ms, before);
    ck_assert_int_le(ms, after + 1); /* +1: the sequence may run the clock ahead */
}
END_TEST

START_TEST(new_ids_increase_strictly)
{
    char prev[OD_UUID_STR_LEN + 1], id[OD_UUID_STR_LEN + 1];
    ck_assert_int_eq(api->new_id(prev), OD_OK);
    for (int i = 0; i < 20000; i++) { /* > 4096: crosses the per-ms sequence */
        ck_assert_int_eq(api->new_id(id), OD_OK);
        ck_assert_msg(strcmp(prev, id) < 0, "%s !< %s", prev, id);
        memcpy(prev, id, sizeof(id));
    }
}
END_TEST

#define ID_THREADS 4
#define IDS_PER_THREAD 5000

typedef struct id_batch {
    char ids[IDS_PER_THREAD][OD_UUID_STR_LEN + 1];
    int ordered; /* 1 if this thread saw its own ids strictly increase */
} id_batch;

static void *make_ids(void *arg)
{
    id_batch *b = arg;
    b->ordered = 1;
    for (int i = 0; i < IDS_PER_THREAD; i++) {
        if (api->new_id(b->ids[i]) != OD_OK)
            b->ordered = 0;
        if (i > 0 && strcmp(b->ids[i - 1], b->ids[i]) >= 0)
            b->ordered = 0;
    }
    return NULL;
}

static int compare_ids(const void *a, const void *b)
{
    return strcmp(a, b);
}

START_TEST(new_ids_unique_across_threads)
{
    id_batch *batches = calloc(ID_THREADS, sizeof(*batches));
    pthread_t threads[ID_THREADS];
    for (int t = 0; t < ID_THREADS; t++)
        ck_assert_int_eq(pthread_create(&threads[t], NULL, make_ids, &batches[t]), 0);
    for (int t = 0; t < ID_THREADS; t++)
        pthread_join(threads[t], NULL);
    for (int t = 0; t < ID_THREADS; t++)
        ck_assert_msg(batches[t].ordered, "thread %d saw ids out of order", t);
    /* all ids of all threads, sorted: no two equal */
    size_t n = 0;
    char(*flat)[OD_UUID_STR_LEN + 1] = calloc(ID_THREADS * IDS_PER_THREAD, sizeof(*flat));
    for (int t = 0; t < ID_THREADS; t++)
        for (int i = 0; i < IDS_PER_THREAD; i++)
            memcpy(flat[n++], batches[t].ids[i], sizeof(flat[0]));
    qsort(flat, n, sizeof(flat[0]), compare_ids);
    for (size_t i = 1; i < n; i++)
        ck_assert_msg(strcmp(flat[i - 1], flat[i]) != 0, "duplicate id %s", flat[i]);
    free(flat);
    free(batches);
}
END_TEST

START_TEST(random_bytes_fill)
{
    unsigned char a[32] = {0}, b[32] = {0};
    ck_assert_int_eq(api->random_bytes(a, sizeof(a)), OD_OK);
    ck_assert_int_eq(api->random_bytes(b, sizeof(b)), OD_OK);
    ck_assert(memcmp(a, b, sizeof(a)) != 0);
}
END_TEST

START_TEST(routes_only_during_init)
{
    od_loaded_module *lm = fake_module(OD_KIND_SERVICE, "svc", NULL);
    ck_assert_int_eq(api->route(lm->mod, "GET", "/api/x", OD_ACCESS_PUBLIC, handler), OD_OK);
    ck_assert_int_eq(api->route(lm->mod, "GET", "/api/x", OD_ACCESS_PUBLIC, handler),
                     OD_ERR_EXISTS);
    ck_assert_int_eq(api->route(lm->mod, "GET", "/api/y", 7, handler), OD_ERR_INVALID);
    lm->initialized = 1;
    ck_assert_int_eq(api->route(lm->mod, "GET", "/api/z", OD_ACCESS_PUBLIC, handler),
                     OD_ERR_CLOSED);
    const char *s;
    ck_assert_int_eq(api->config_string(lm->mod, "greeting", "", &s), OD_ERR_CLOSED);
    od_route_match m;
    ck_assert_int_eq(od_router_match(core.router, "GET", "/api/x", &m), 200);
    ck_assert_ptr_eq(m.route->self_slot, &lm->self); /* the handler will see init's self */
    od_route_match_clear(&m);
}
END_TEST

START_TEST(config_is_bound_to_the_module_group)
{
    od_loaded_module *svc = fake_module(OD_KIND_SERVICE, "svc", NULL);
    od_loaded_module *st = fake_module(OD_KIND_STORAGE, "storage_x", NULL);
    const char *s;
    ck_assert_int_eq(api->config_string(svc->mod, "greeting", "", &s), OD_OK);
    ck_assert_str_eq(s, "hi");
    ck_assert_int_eq(api->config_string(st->mod, "greeting", "", &s), OD_OK);
    ck_assert_str_eq(s, "from storage");
    int64_t v;
    ck_assert_int_eq(api->config_int(svc->mod, "greeting", 1, 0, 9, &v), OD_ERR_CONFIG);
    ck_assert_int_eq(api->config_int(svc->mod, NULL, 1, 0, 9, &v), OD_ERR_INVALID);
}
END_TEST

START_TEST(one_authenticator_per_process)
{
    od_loaded_module *a = fake_module(OD_KIND_SERVICE, "auth", NULL);
    od_loaded_module *b = fake_module(OD_KIND_SERVICE, "auth2", NULL);
    ck_assert_int_eq(api->set_authenticator(a->mod, authenticate), OD_OK);
    ck_assert_int_eq(api->set_authenticator(b->mod, authenticate), OD_ERR_EXISTS);
    ck_assert_ptr_eq(core.authenticate, authenticate);
    ck_assert_ptr_eq(core.auth_self_slot, &a->self);
}
END_TEST

START_TEST(backends_and_steps_lookup)
{
    od_loaded_module *a = fake_module(OD_KIND_STEP, "step_a", &step_ops);
    od_loaded_module *b = fake_module(OD_KIND_STEP, "step_b", &step_ops);
    od_loaded_module *q = fake_module(OD_KIND_SERVICE, "queue_worker", NULL);
    ck_assert_ptr_null(api->storage(q->mod));        /* none configured */
    ck_assert_ptr_null(api->step(q->mod, "step_a")); /* not initialised yet */
    a->initialized = 1;
    a->self = (void *)0x1;
    const od_step *s = api->step(q->mod, "step_a");
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_eq(s->ops, &step_ops);
    ck_assert_ptr_eq(s->self, (void *)0x1);
    ck_assert_str_eq(s->name, "step_a");
    ck_assert_ptr_null(api->step(q->mod, "nope"));
    const od_step *const *steps;
    size_t n;
    ck_assert_int_eq(api->pipeline(q->mod, &steps, &n), OD_ERR_CONFIG); /* step_b not ready */
    b->initialized = 1;
    ck_assert_int_eq(api->pipeline(q->mod, &steps, &n), OD_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(steps[0]->name, "step_b"); /* config order */
    ck_assert_str_eq(steps[1]->name, "step_a");
}
END_TEST

START_TEST(log_is_prefixed_with_the_module)
{
    od_loaded_module *lm = fake_module(OD_KIND_SERVICE, "svc", NULL);
    FILE *f = tmpfile();
    int saved = dup(STDERR_FILENO);
    dup2(fileno(f), STDERR_FILENO);
    api->log(lm->mod, OD_LOG_WARN, "hello %d", 42);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(f);
    char line[1024] = "";
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
    fclose(f);
    json_object *o = json_tokener_parse(line), *v;
    ck_assert_ptr_nonnull(o);
    ck_assert(json_object_object_get_ex(o, "module", &v));
    ck_assert_str_eq(json_object_get_string(v), "svc");
    ck_assert(json_object_object_get_ex(o, "level", &v));
    ck_assert_str_eq(json_object_get_string(v), "warn");
    ck_assert(json_object_object_get_ex(o, "msg", &v));
    ck_assert_str_eq(json_object_get_string(v), "hello 42");
    json_object_put(o);
}
END_TEST

START_TEST(stopping_follows_the_core)
{
    ck_assert_int_eq(api->stopping(), 0);
    atomic_store(&core.stopping, 1);
    ck_assert_int_eq(api->stopping(), 1);
}
END_TEST

static Suite *host_suite(void)
{
    Suite *s = suite_create("host");
    TCase *tc = tcase_create("host");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, table_header);
    tcase_add_test(tc, new_id_is_uuid_v7);
    tcase_add_test(tc, new_ids_increase_strictly);
    tcase_add_test(tc, new_ids_unique_across_threads);
    tcase_add_test(tc, random_bytes_fill);
    tcase_add_test(tc, routes_only_during_init);
    tcase_add_test(tc, config_is_bound_to_the_module_group);
    tcase_add_test(tc, one_authenticator_per_process);
    tcase_add_test(tc, backends_and_steps_lookup);
    tcase_add_test(tc, log_is_prefixed_with_the_module);
    tcase_add_test(tc, stopping_follows_the_core);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(host_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
