/* tests/contract/contract.c - loading and configuring a backend for the
 * contract suites (see contract.h). */
#include "contract.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *backend_name = "";

const char *contract_backend_name(void)
{
    return backend_name;
}

void contract_set_backend(const char *name)
{
    backend_name = name;
}

int64_t contract_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int all_digits(const char *s)
{
    if (*s == '-')
        s++;
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* "%p" -> a token unique to this process and call (tests fork by default). */
static void expand_value(const char *in, char *out, size_t outlen)
{
    static unsigned calls;
    char token[48];
    snprintf(token, sizeof token, "%ld_%ld_%u", (long)getpid(), (long)time(NULL), calls++);
    size_t o = 0;
    for (const char *p = in; *p && o + 1 < outlen; p++) {
        if (p[0] == '%' && p[1] == 'p') {
            o += (size_t)snprintf(out + o, outlen - o, "%s", token);
            p++;
        } else {
            out[o++] = *p;
        }
    }
    out[o < outlen ? o : outlen - 1] = '\0';
}

static void set_one(od_module *m, char *pair)
{
    char *eq = strchr(pair, '=');
    ck_assert_msg(eq != NULL, "ORDERD_CONTRACT_CONFIG: \"%s\" is not key=value", pair);
    *eq = '\0';
    char value[1024];
    expand_value(eq + 1, value, sizeof value);
    if (all_digits(value))
        mock_config_set_int(m, pair, strtoll(value, NULL, 10));
    else if (strcmp(value, "true") == 0 || strcmp(value, "false") == 0)
        mock_config_set_bool(m, pair, value[0] == 't');
    else
        mock_config_set_string(m, pair, value);
}

static void configure(od_module *m)
{
    const char *cfg = getenv("ORDERD_CONTRACT_CONFIG");
    if (!cfg || !*cfg)
        return;
    char *copy = strdup(cfg), *save = NULL;
    ck_assert_ptr_nonnull(copy);
    for (char *pair = strtok_r(copy, ";", &save); pair; pair = strtok_r(NULL, ";", &save))
        if (*pair)
            set_one(m, pair);
    free(copy);
}

void contract_open(contract_backend *b, const char *group, uint32_t kind)
{
    const char *dir = getenv("ORDERD_CONTRACT_MODULE_DIR");
    const char *build = getenv("ORDERD_BUILD_DIR");
    char path[4096], err[512];
    if (dir)
        snprintf(path, sizeof path, "%s/%s.so", dir, backend_name);
    else
        snprintf(path, sizeof path, "%s/modules/%s.so", build ? build : ".", backend_name);
    memset(b, 0, sizeof *b);
    b->desc = mock_load_module(path, err, sizeof err);
    ck_assert_msg(b->desc != NULL, "cannot load %s: %s", path, err);
    ck_assert_uint_eq(b->desc->kind, kind);
    ck_assert_ptr_nonnull(b->desc->ops);
    b->mod = mock_module_new(group);
    configure(b->mod);
    od_status s = b->desc->init(mock_host_api(), b->mod, &b->self);
    ck_assert_msg(s == OD_OK, "%s init: %s", backend_name, od_status_str(s));
    if (b->desc->start)
        ck_assert_int_eq(b->desc->start(b->self), OD_OK);
    b->started = 1;
}

void contract_stop(contract_backend *b)
{
    if (b->started && b->desc->stop)
        b->desc->stop(b->self);
    b->started = 0;
}

void contract_close(contract_backend *b)
{
    if (!b->desc)
        return;
    contract_stop(b);
    if (b->desc->destroy)
        b->desc->destroy(b->self);
    mock_module_free(b->mod);
    memset(b, 0, sizeof *b);
}

int contract_skips(const char *capability)
{
    const char *list = getenv("ORDERD_CONTRACT_SKIP");
    size_t n = strlen(capability);
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, capability, n) == 0)
            return 1;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

int contract_main(int argc, char **argv, Suite *(*make_suite)(void))
{
    const char *env = getenv("ORDERD_CONTRACT_BACKEND");
    if (argc > 1)
        backend_name = argv[1];
    else if (env)
        backend_name = env;
    if (!*backend_name) {
        fprintf(stderr, "usage: %s BACKEND (or set ORDERD_CONTRACT_BACKEND)\n", argv[0]);
        return 2;
    }
    SRunner *sr = srunner_create(make_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
