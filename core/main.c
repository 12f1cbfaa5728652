/*
 * main.c - orderd's command line and start-up / shutdown sequence.
 *
 *   orderd [-c FILE|--config FILE] [--check-config] [--provision] [--list-modules]
 *          [--version] [--help]
 *
 * Start-up: parse the config -> log level -> load the storage and queue
 * backends (storage_<storage.backend>.so, queue_<queue.backend>.so), then
 * the modules of modules.load in order -> check that orders.pipeline names
 * loaded steps (host->pipeline() hands them out) -> init storage, queue,
 * steps, services -> warn about unknown keys -> block SIGINT/SIGTERM and
 * ignore SIGPIPE -> start the modules -> serve -> on a signal drain HTTP,
 * stop the modules in reverse, destroy in reverse, exit 0. The signals are
 * blocked before start(), not just before the HTTP server: module threads
 * must inherit the mask too, or SIGTERM could land in one and kill the
 * process without a clean shutdown.
 * Any refusal is one log line and exit status 1.
 * --provision is --check-config with storage.create_missing and
 * queue.create_missing forced on: backends that keep their schema outside
 * orderd (DynamoDB tables, SQS queues) create what is missing during init;
 * running it twice is safe because creation is "if missing".
 *
 * Config keys read here: server.{listen, threads, max_body_bytes,
 * request_timeout_ms, keep_alive_timeout_ms, shutdown_timeout_ms, log_level,
 * cors_origin, development}, modules.{directory, load}, storage.backend,
 * queue.backend, orders.pipeline. Threads: main only; CivetWeb's threads
 * belong to http.c and the modules' threads to the modules.
 */
#include <dirent.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

#define LOG_MODULE "core"

typedef enum run_mode { MODE_SERVE, MODE_CHECK, MODE_PROVISION, MODE_LIST } run_mode;

/* Everything read from the server group, validated. */
typedef struct server_settings {
    const char *listen;
    int64_t threads, max_body, request_timeout_ms, keep_alive_timeout_ms, shutdown_timeout_ms;
    int log_level, development;
    const char *cors_origin;
} server_settings;

static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

static void usage(FILE *out)
{
    fprintf(out, "usage: orderd [-c FILE|--config FILE] [--check-config] [--provision]\n"
                 "              [--list-modules] [--version] [--help]\n"
                 "  -c, --config FILE  configuration file (default " ORDERD_DEFAULT_CONFIG ")\n"
                 "      --check-config parse the configuration, load and initialise every module,\n"
                 "                     print \"configuration OK\" and exit\n"
                 "      --provision    like --check-config, but the storage and queue backends\n"
                 "                     create missing tables/queues (safe to run twice)\n"
                 "      --list-modules list the modules the configuration loads and the other\n"
                 "                     modules in modules.directory\n"
                 "      --version      print the version and the module ABI\n");
}

/* ---- settings --------------------------------------------------------- */

static int read_log_level(od_config *cfg, int *level)
{
    const char *s;
    if (od_config_string(cfg, "server", "log_level", "info", &s) != OD_OK)
        return -1;
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, log_level_names[i]) == 0) {
            *level = i;
            return 0;
        }
    }
    char where[PATH_MAX + 16];
    const char *env = getenv("ORDERD_LOG_LEVEL");
    if (env && *env) /* the override won: blame it, not the file */
        snprintf(where, sizeof(where), "environment ORDERD_LOG_LEVEL");
    else
        od_config_where(cfg, "server", "log_level", where, sizeof(where));
    od_logf(LOG_MODULE, OD_LOG_ERROR,
            "%s: server.log_level \"%.32s\" is not valid (valid: error, warn, info, debug)", where,
            s);
    return -1;
}

static int read_server(od_config *cfg, server_settings *s)
{
    int ok = od_config_string(cfg, "server", "listen", "127.0.0.1:3000", &s->listen) == OD_OK;
    ok &= od_config_int(cfg, "server", "threads", 32, 1, 1024, &s->threads) == OD_OK;
    ok &= od_config_int(cfg, "server", "max_body_bytes", 1 << 20, 1024, 64 << 20, &s->max_body)
          == OD_OK;
    ok &= od_config_int(cfg, "server", "request_timeout_ms", 10000, 100, 600000,
                        &s->request_timeout_ms)
          == OD_OK;
    ok &= od_config_int(cfg, "server", "keep_alive_timeout_ms", 1000, 0, 60000,
                        &s->keep_alive_timeout_ms)
          == OD_OK;
    ok &= od_config_int(cfg, "server", "shutdown_timeout_ms", 10000, 0, 600000,
                        &s->shutdown_timeout_ms)
          == OD_OK;
    ok &= od_config_string(cfg, "server", "cors_origin", "", &s->cors_origin) == OD_OK;
    ok &= od_config_bool(cfg, "server", "development", 0, &s->development) == OD_OK;
    ok &= read_log_level(cfg, &s->log_level) == 0;
    return ok ? 0 : -1;
}

/* modules.directory; a relative one is relative to the config file. */
static int read_module_dir(od_config *cfg, char *out, size_t n)
{
    const char *dir;
    if (od_config_string(cfg, "modules", "directory", ORDERD_DEFAULT_MODULE_DIR, &dir) != OD_OK)
        return -1;
    if (dir[0] == '/') {
        snprintf(out, n, "%s", dir);
        return 0;
    }
    const char *path = od_config_path(cfg);
    const char *slash = strrchr(path, '/');
    int dlen = slash ? (int)(slash - path) : 1;
    snprintf(out, n, "%.*s/%s", dlen, slash ? path : ".", dir);
    return 0;
}

/* ---- loading ---------------------------------------------------------- */

typedef struct module_set {
    od_loaded_module **items; /* load order: storage, queue, then modules.load */
    size_t n;
    size_t cap;
} module_set;

static int set_push(module_set *set, od_loaded_module *m)
{
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 8;
        od_loaded_module **items = realloc(set->items, cap * sizeof(*items));
        if (!items)
            return -1;
        set->items = items;
        set->cap = cap;
    }
    set->items[set->n++] = m;
    return 0;
}

static void set_free(module_set *set)
{
    for (size_t i = 0; i < set->n; i++) {
        od_host_module_free(set->items[i]->mod);
        od_loader_free(set->items[i]);
    }
    free(set->items);
    set->items = NULL;
    set->n = set->cap = 0;
}

static int add_module(module_set *set, od_loaded_module *m)
{
    if (od_loader_check_unique(set->items, set->n, m) != OD_OK || set_push(set, m) != 0) {
        od_loader_free(m);
        return -1;
    }
    return 0;
}

static int compare_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "memory, sqlite": the backends of a kind found as <prefix>*.so in dir, sorted. */
static void list_backends(const char *dir, const char *prefix, char *out, size_t n)
{
    enum { MAX_LISTED = 64 };
    char *names[MAX_LISTED];
    size_t count = 0, plen = strlen(prefix), used = 0;
    out[0] = '\0';
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && count < MAX_LISTED) {
        size_t len = strlen(e->d_name);
        if (len <= plen + 3 || strncmp(e->d_name, prefix, plen) != 0
            || strcmp(e->d_name + len - 3, ".so") != 0)
            continue;
        char *name = strndup(e->d_name + plen, len - plen - 3);
        if (name)
            names[count++] = name;
    }
    closedir(d);
    qsort(names, count, sizeof(names[0]), compare_str);
    for (size_t i = 0; i < count; i++) {
        int w = snprintf(out + used, n - used, "%s%s", used ? ", " : "", names[i]);
        if (w > 0 && (size_t)w < n - used)
            used += (size_t)w;
        free(names[i]);
    }
}

/* Load <group>_<group.backend>.so, e.g. storage_memory.so. */
static int load_backend(od_config *cfg, const char *dir, const char *group, uint32_t kind,
                        module_set *set)
{
    const char *backend;
    if (od_config_string(cfg, group, "backend", "memory", &backend) != OD_OK)
        return -1;
    char name[64], path[PATH_MAX];
    snprintf(name, sizeof(name), "%s_%.40s", group, backend);
    snprintf(path, sizeof(path), "%s/%s.so", dir, name);
    if (strpbrk(backend, "/.") || access(path, F_OK) != 0) {
        char where[PATH_MAX + 16], known[512], prefix[16];
        snprintf(prefix, sizeof(prefix), "%s_", group);
        list_backends(dir, prefix, known, sizeof(known));
        od_logf(LOG_MODULE, OD_LOG_ERROR,
                "%s: unknown %s backend \"%.40s\" (valid: %s; found as %s*.so in %s)",
                od_config_where(cfg, group, "backend", where, sizeof(where)), group, backend,
                known[0] ? known : "none", prefix, dir);
        return -1;
    }
    od_loaded_module *m = od_loader_load(dir, name, kind);
    return m ? add_module(set, m) : -1;
}

/* The modules of modules.load: services and steps only. */
static int load_listed(od_config *cfg, const char *dir, module_set *set)
{
    const char *const *names;
    size_t n;
    if (od_config_strings(cfg, "modules", "load", &names, &n) != OD_OK)
        return -1;
    for (size_t i = 0; i < n; i++) {
        od_loaded_module *m = od_loader_load(dir, names[i], 0);
        if (!m)
            return -1;
        uint32_t kind = m->desc->kind;
        if (kind == OD_KIND_STORAGE || kind == OD_KIND_QUEUE) {
            od_logf(LOG_MODULE, OD_LOG_ERROR,
                    "module \"%s\" (%s): is a %s backend; select it with %s.backend, not "
                    "modules.load",
                    m->name, m->path, kind == OD_KIND_STORAGE ? "storage" : "queue",
                    kind == OD_KIND_STORAGE ? "storage" : "queue");
            od_loader_free(m);
            return -1;
        }
        if (add_module(set, m) != 0)
            return -1;
    }
    return 0;
}

static const od_loaded_module *find_step_module(const module_set *set, const char *name)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->items[i]->desc->kind == OD_KIND_STEP
            && strcmp(set->items[i]->desc->name, name) == 0)
            return set->items[i];
    return NULL;
}

/* "validate, complete": the loaded step modules, for error messages. */
static void list_steps(const module_set *set, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < set->n && used < n; i++) {
        if (set->items[i]->desc->kind != OD_KIND_STEP)
            continue;
        int w = snprintf(out + used, n - used, "%s%s", used ? ", " : "", set->items[i]->desc->name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* orders.pipeline may name only loaded steps, each once: the queue worker
 * gets them resolved through host->pipeline(). */
static int check_pipeline(od_config *cfg, const module_set *set)
{
    const char *const *names;
    size_t n;
    if (od_config_strings(cfg, "orders", "pipeline", &names, &n) != OD_OK)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char where[PATH_MAX + 16], steps[512];
        od_config_where(cfg, "orders", "pipeline", where, sizeof(where));
        if (!find_step_module(set, names[i])) {
            list_steps(set, steps, sizeof(steps));
            od_logf(LOG_MODULE, OD_LOG_ERROR,
                    "%s: orders.pipeline: \"%.40s\" is not a loaded step module (loaded steps: "
                    "%s; add the step to modules.load)",
                    where, names[i], steps[0] ? steps : "none");
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(names[j], names[i]) == 0) {
                od_logf(LOG_MODULE, OD_LOG_ERROR,
                        "%s: orders.pipeline: step \"%s\" is listed twice", where, names[i]);
                return -1;
            }
        }
    }
    return 0;
}

static int load_all(od_config *cfg, const char *dir, module_set *set)
{
    if (load_backend(cfg, dir, "storage", OD_KIND_STORAGE, set) != 0
        || load_backend(cfg, dir, "queue", OD_KIND_QUEUE, set) != 0
        || load_listed(cfg, dir, set) != 0)
        return -1;
    return check_pipeline(cfg, set);
}

/* Init order: storage, queue, steps, services; config order within a kind.
 * Kinds are loaded storage, queue, then the list, so a stable partition of
 * the list (steps before services) is enough. */
static int order_for_init(module_set *set, od_core *core)
{
    static const uint32_t order[] = {OD_KIND_STORAGE, OD_KIND_QUEUE, OD_KIND_STEP, OD_KIND_SERVICE};
    core->modules = calloc(set->n ? set->n : 1, sizeof(*core->modules));
    if (!core->modules)
        return -1;
    core->n_modules = 0;
    for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++)
        for (size_t i = 0; i < set->n; i++)
            if (set->items[i]->desc->kind == order[k])
                core->modules[core->n_modules++] = set->items[i];
    return 0;
}

/* ---- lifecycle -------------------------------------------------------- */

static void destroy_modules(od_core *core)
{
    for (size_t i = core->n_modules; i-- > 0;) {
        od_loaded_module *m = core->modules[i];
        if (m->initialized && m->desc->destroy)
            m->desc->destroy(m->self);
        m->initialized = 0;
    }
}

static void stop_modules(od_core *core)
{
    for (size_t i = core->n_modules; i-- > 0;) {
        od_loaded_module *m = core->modules[i];
        if (m->started && m->desc->stop)
            m->desc->stop(m->self);
        m->started = 0;
    }
}

/* The backend as the config names it: "memory" for storage_memory.so. */
static const char *backend_name(const od_loaded_module *m, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(m->name, prefix, n) == 0 ? m->name + n : m->name;
}

/* After a backend's init the host API can hand it out to later modules. */
static void publish_backend(od_core *core, od_loaded_module *m)
{
    if (m->desc->kind == OD_KIND_STORAGE) {
        core->storage = (od_storage){.ops = m->desc->ops, .self = m->self};
        core->storage_name = backend_name(m, "storage_");
    } else if (m->desc->kind == OD_KIND_QUEUE) {
        core->queue = (od_queue){.ops = m->desc->ops, .self = m->self};
        core->queue_name = backend_name(m, "queue_");
    }
}

static int init_modules(od_core *core)
{
    const od_host_api *api = od_host_api_get();
    for (size_t i = 0; i < core->n_modules; i++) {
        od_loaded_module *m = core->modules[i];
        m->mod = od_host_module_new(core, m);
        if (!m->mod) {
            od_logf(LOG_MODULE, OD_LOG_ERROR, "out of memory");
            return -1;
        }
        od_status st = m->desc->init(api, m->mod, &m->self);
        if (st != OD_OK) {
            od_logf(LOG_MODULE, OD_LOG_ERROR, "module \"%s\" (%s): init failed: %s", m->name,
                    m->path, od_status_str(st));
            return -1;
        }
        m->initialized = 1;
        publish_backend(core, m);
    }
    return 0;
}

static int start_modules(od_core *core)
{
    for (size_t i = 0; i < core->n_modules; i++) {
        od_loaded_module *m = core->modules[i];
        od_status st = m->desc->start ? m->desc->start(m->self) : OD_OK;
        if (st != OD_OK) {
            od_logf(LOG_MODULE, OD_LOG_ERROR, "module \"%s\" (%s): start failed: %s", m->name,
                    m->path, od_status_str(st));
            return -1;
        }
        m->started = 1;
    }
    return 0;
}

/* ---- serving ---------------------------------------------------------- */

/* Block INT/TERM before any thread exists (the modules' start() may create
 * some, http.c creates CivetWeb's): threads inherit the mask, so sigwait()
 * in the main thread is the one place the signals arrive and no thread can
 * be killed by them midway. */
static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client hanging up is an EPIPE, not a death */
}

static int serve(od_core *core, const server_settings *s, const sigset_t *set)
{
    od_http_config hc = {
        .listen = s->listen,
        .threads = (int)s->threads,
        .max_body = (size_t)s->max_body,
        .request_timeout_ms = (int)s->request_timeout_ms,
        .keep_alive_timeout_ms = (int)s->keep_alive_timeout_ms,
        .cors_origin = s->cors_origin,
    };
    od_http *http = od_http_start(core, &hc);
    if (!http)
        return -1;
    od_logf(LOG_MODULE, OD_LOG_INFO, "orderd %s started: port %d, %zu modules", ORDERD_VERSION,
            od_http_port(http), core->n_modules);
    int sig = 0;
    sigwait(set, &sig);
    od_logf(LOG_MODULE, OD_LOG_INFO, "%s received, shutting down",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    atomic_store(&core->stopping, 1);
    od_http_stop(http, (int)s->shutdown_timeout_ms);
    return 0;
}

/* ---- --list-modules --------------------------------------------------- */

static const char *kind_str(uint32_t kind)
{
    static const char *const names[] = {"?", "service", "storage", "queue", "step"};
    return kind <= OD_KIND_STEP ? names[kind] : "?";
}

/* The file name is what modules.load takes; the module name (what steps
 * are called in orders.pipeline) is shown too when it differs. */
static void print_module(const od_loaded_module *m)
{
    const od_module_desc *d = m->desc;
    printf("  %-20s %-8s ABI %u.%u  %-10s %s", m->name, kind_str(d->kind), d->abi_major,
           d->abi_minor, d->version ? d->version : "-", d->description ? d->description : "");
    if (strcmp(m->name, d->name) != 0)
        printf(" (module name \"%s\")", d->name);
    putchar('\n');
}

static int is_listed(const module_set *set, const char *file)
{
    for (size_t i = 0; i < set->n; i++) {
        size_t len = strlen(set->items[i]->name);
        if (strncmp(file, set->items[i]->name, len) == 0 && strcmp(file + len, ".so") == 0)
            return 1;
    }
    return 0;
}

/* The other *.so of the directory: loaded (not initialised) for their descriptor. */
static void list_others(const char *dir, const module_set *set)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    printf("other modules in %s:\n", dir);
    int listed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".so") != 0 || is_listed(set, e->d_name))
            continue;
        char name[NAME_MAX + 1];
        snprintf(name, sizeof(name), "%.*s", (int)(len - 3), e->d_name);
        od_loaded_module *m = od_loader_load(dir, name, 0);
        if (m)
            print_module(m);
        listed += m != NULL;
        od_loader_free(m);
    }
    closedir(d);
    if (!listed)
        printf("  (none)\n");
}

static int list_modules(od_config *cfg, const char *dir)
{
    module_set set = {0};
    int rc = load_all(cfg, dir, &set);
    printf("modules loaded by %s:\n", od_config_path(cfg));
    for (size_t i = 0; i < set.n; i++)
        print_module(set.items[i]);
    list_others(dir, &set);
    set_free(&set);
    return rc == 0 ? 0 : 1;
}

/* ---- main ------------------------------------------------------------- */

typedef struct options {
    const char *config;
    run_mode mode;
} options;

/* 0 = go on, 1 = exit 0 (help/version printed), -1 = usage error. */
static int parse_args(int argc, char **argv, options *o)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'C'},
        {"provision", no_argument, NULL, 'P'},
        {"list-modules", no_argument, NULL, 'L'}, {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    o->config = ORDERD_DEFAULT_CONFIG;
    o->mode = MODE_SERVE;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': o->config = optarg; break;
        case 'C': o->mode = MODE_CHECK; break;
        case 'P': o->mode = MODE_PROVISION; break;
        case 'L': o->mode = MODE_LIST; break;
        case 'V':
            printf("orderd %s (module ABI %d.%d)\n", ORDERD_VERSION, OD_ABI_MAJOR, OD_ABI_MINOR);
            return 1;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "orderd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Init everything; in check mode tear down again, else serve until a signal. */
static int run(od_core *core, module_set *set, const server_settings *s, run_mode mode)
{
    int rc = -1;
    if (order_for_init(set, core) != 0 || init_modules(core) != 0)
        goto out;
    od_config_warn_unknown(core->config);
    if (mode == MODE_CHECK || mode == MODE_PROVISION) {
        rc = 0;
        goto out;
    }
    core->started_ms = od_host_api_get()->now_ms();
    sigset_t signals;
    block_signals(&signals);
    if (start_modules(core) == 0)
        rc = serve(core, s, &signals);
    stop_modules(core);
out:
    destroy_modules(core);
    return rc;
}

int main(int argc, char **argv)
{
    options o;
    int a = parse_args(argc, argv, &o);
    if (a != 0)
        return a > 0 ? 0 : 2;
    od_config *cfg = od_config_load(o.config);
    if (!cfg)
        return 1;
    server_settings s;
    char dir[PATH_MAX];
    if (read_server(cfg, &s) != 0 || read_module_dir(cfg, dir, sizeof(dir)) != 0) {
        od_config_free(cfg);
        return 1;
    }
    od_log_set_level(s.log_level);
    if (o.mode == MODE_PROVISION && (od_config_force_bool(cfg, "storage", "create_missing", 1) ||
                                     od_config_force_bool(cfg, "queue", "create_missing", 1))) {
        od_config_free(cfg);
        return 1;
    }
    if (o.mode == MODE_LIST) {
        int rc = list_modules(cfg, dir);
        od_config_free(cfg);
        return rc;
    }
    od_core core = {.config = cfg, .max_body = (size_t)s.max_body, .development = s.development};
    od_the_core = &core;
    core.router = od_router_new();
    core.metrics = od_metrics_new();
    module_set set = {0};
    int rc = 1;
    if (core.router && core.metrics && load_all(cfg, dir, &set) == 0)
        rc = run(&core, &set, &s, o.mode) == 0 ? 0 : 1;
    if (rc == 0 && o.mode == MODE_CHECK)
        printf("configuration OK\n");
    else if (rc == 0 && o.mode == MODE_PROVISION)
        printf("provisioning OK: storage \"%s\" and queue \"%s\" are ready\n",
               core.storage_name ? core.storage_name : "none",
               core.queue_name ? core.queue_name : "none");
    else if (rc == 0)
        od_logf(LOG_MODULE, OD_LOG_INFO, "orderd stopped");
    od_the_core = NULL;
    set_free(&set);
    free(core.modules);
    od_router_free(core.router);
    od_metrics_free(core.metrics);
    od_config_free(cfg);
    return rc;
}
