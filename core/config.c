/*
 * config.c - the configuration file: libconfig 1.5 underneath, typed
 * getters on "group.key" above, environment overrides and the warnings for
 * keys nobody asked for.
 *
 * Reads no key itself: main, the host API (for modules) and the tests ask.
 * It knows which groups exist (server, modules, storage, queue and the names
 * in modules.load) only to warn about unknown ones. Environment overrides:
 * PORT (the port of server.listen), JWT_SECRET, ORDERD_ADMIN_EMAIL,
 * ORDERD_ADMIN_PASSWORD, ORDERD_LOG_LEVEL; an empty variable counts as unset.
 *
 * Threads: none. Loaded and queried on the main thread during start-up
 * (lookups record which keys are known, so they mutate the od_config);
 * strings handed out stay valid until od_config_free().
 *
 * libconfig pitfalls handled here: @include resolves against the CWD unless
 * an include dir is set (we set the config file's directory); the int
 * getters silently give 0 for an int64 out of int range (we always read
 * int64 and range-check); auto-conversion stays off so "3" or 3.5 is a type
 * error, not a silent truncation.
 */
#include <errno.h>
#include <inttypes.h>
#include <libconfig.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define LOG_MODULE "config"

/* An environment variable that replaces one string key. */
typedef struct env_override {
    const char *env;
    const char *group;
    const char *key;
} env_override;

static const env_override env_overrides[] = {
    {"JWT_SECRET", "auth", "jwt_secret"},
    {"ORDERD_ADMIN_EMAIL", "users", "admin_email"},
    {"ORDERD_ADMIN_PASSWORD", "users", "admin_password"},
    {"ORDERD_LOG_LEVEL", "server", "log_level"},
};

/* Groups that exist whatever modules are loaded. */
static const char *const core_groups[] = {"server", "modules", "storage", "queue"};

/* A growable list of owned pointers (strings and string arrays handed out). */
typedef struct ptr_list {
    void **items;
    size_t n, cap;
} ptr_list;

/* A boolean the command line imposes over the file (orderd --provision). */
typedef struct forced_bool {
    char group[32];
    char key[64];
    int value;
} forced_bool;

struct od_config {
    config_t cfg;
    char *path;
    char *include_dir;
    ptr_list known; /* "group.key" strings looked up so far */
    ptr_list owned; /* memory handed out by getters, freed with the config */
    forced_bool forced[4];
    size_t n_forced;
};

static const char *env_value(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static int ptr_list_push(ptr_list *l, void *p)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        void **items = realloc(l->items, cap * sizeof(*items));
        if (!items)
            return -1;
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = p;
    return 0;
}

static void ptr_list_free(ptr_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = l->cap = 0;
}

/* Keep p until od_config_free; returns p, or NULL (and frees p) on OOM. */
static void *own(od_config *c, void *p)
{
    if (p && ptr_list_push(&c->owned, p) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

/* ---- known keys ------------------------------------------------------- */

static int is_known(const od_config *c, const char *group, const char *key)
{
    size_t glen = strlen(group), klen = strcspn(key, "./:");
    for (size_t i = 0; i < c->known.n; i++) {
        const char *k = c->known.items[i];
        if (strncmp(k, group, glen) == 0 && k[glen] == '.' && strncmp(k + glen + 1, key, klen) == 0
            && k[glen + 1 + klen] == '\0')
            return 1;
    }
    return 0;
}

/* Only the first path component counts: asking for "a.b" makes "a" known. */
static void mark_known(od_config *c, const char *group, const char *key)
{
    if (is_known(c, group, key))
        return;
    size_t klen = strcspn(key, "./:");
    size_t len = strlen(group) + 1 + klen + 1;
    char *s = malloc(len);
    if (!s)
        return; /* worst case a spurious warning later */
    snprintf(s, len, "%s.%.*s", group, (int)klen, key);
    if (ptr_list_push(&c->known, s) != 0)
        free(s);
}

/* ---- load ------------------------------------------------------------- */

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* libconfig names an included file as written in @include, relative to the
 * include dir; show it as a path the user can open. */
static const char *display_file(const od_config *c, const char *file, char *buf, size_t n)
{
    if (!file)
        return c->path;
    if (file[0] == '/' || strcmp(file, c->path) == 0)
        return file;
    snprintf(buf, n, "%s/%s", c->include_dir, file);
    return buf;
}

static void log_read_error(const od_config *c)
{
    const config_t *cfg = &c->cfg;
    if (config_error_type(cfg) == CONFIG_ERR_FILE_IO && !config_error_file(cfg)) {
        od_logf(LOG_MODULE, OD_LOG_ERROR, "%s: cannot read the configuration file", c->path);
        return;
    }
    char buf[PATH_MAX];
    od_logf(LOG_MODULE, OD_LOG_ERROR, "%s:%d: %s",
            display_file(c, config_error_file(cfg), buf, sizeof(buf)), config_error_line(cfg),
            config_error_text(cfg));
}

/* PORT must be a plain decimal 1..65535; refuse it at load, not at first use. */
static int port_env_valid(void)
{
    const char *port = env_value("PORT");
    if (!port)
        return 1;
    char *end;
    errno = 0;
    long v = strtol(port, &end, 10);
    if (errno || *end || end == port || port[0] == '+' || port[0] == '-' || v < 1 || v > 65535) {
        od_logf(LOG_MODULE, OD_LOG_ERROR,
                "environment PORT=\"%.16s\" is not a port number (valid: 1..65535)", port);
        return 0;
    }
    return 1;
}

od_config *od_config_load(const char *path)
{
    od_config *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    config_init(&c->cfg);
    c->path = strdup(path);
    c->include_dir = dir_of(path);
    if (!c->path || !c->include_dir) {
        od_config_free(c);
        return NULL;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        od_logf(LOG_MODULE, OD_LOG_ERROR, "%s: cannot open the configuration file: %s", path,
                strerror(errno));
        od_config_free(c);
        return NULL;
    }
    fclose(f);
    /* @include "x.conf" must mean next to this file, not next to the CWD. */
    config_set_include_dir(&c->cfg, c->include_dir);
    config_set_auto_convert(&c->cfg, 0);
    if (config_read_file(&c->cfg, path) != CONFIG_TRUE) {
        log_read_error(c);
        od_config_free(c);
        return NULL;
    }
    if (!port_env_valid()) {
        od_config_free(c);
        return NULL;
    }
    return c;
}

void od_config_free(od_config *c)
{
    if (!c)
        return;
    config_destroy(&c->cfg);
    ptr_list_free(&c->known);
    ptr_list_free(&c->owned);
    free(c->path);
    free(c->include_dir);
    free(c);
}

const char *od_config_path(const od_config *c)
{
    return c->path;
}

/* ---- lookups ---------------------------------------------------------- */

/* "FILE:LINE" of a setting, into buf. */
static const char *setting_where(const od_config *c, const config_setting_t *s, char *buf, size_t n)
{
    char file[PATH_MAX];
    snprintf(buf, n, "%s:%u", display_file(c, config_setting_source_file(s), file, sizeof(file)),
             config_setting_source_line(s));
    return buf;
}

/* The setting group.key, or NULL; marks the key known either way. */
static config_setting_t *find(od_config *c, const char *group, const char *key)
{
    mark_known(c, group, key);
    config_setting_t *g = config_setting_get_member(config_root_setting(&c->cfg), group);
    if (!g || !config_setting_is_group(g))
        return NULL;
    return config_setting_lookup(g, key);
}

static od_status type_error(od_config *c, const config_setting_t *s, const char *group,
                            const char *key, const char *expected)
{
    char where[PATH_MAX + 16];
    od_logf(LOG_MODULE, OD_LOG_ERROR, "%s: %s.%s must be %s",
            setting_where(c, s, where, sizeof(where)), group, key, expected);
    return OD_ERR_CONFIG;
}

static const env_override *override_for(const char *group, const char *key)
{
    for (size_t i = 0; i < sizeof(env_overrides) / sizeof(env_overrides[0]); i++)
        if (strcmp(env_overrides[i].group, group) == 0 && strcmp(env_overrides[i].key, key) == 0)
            return &env_overrides[i];
    return NULL;
}

/* server.listen with its port replaced by $PORT ("host:port" or "port"). */
static const char *listen_with_port(od_config *c, const char *listen, const char *port)
{
    const char *colon = strrchr(listen, ':');
    int host_len = colon ? (int)(colon - listen) : 0;
    size_t len = (size_t)host_len + 1 + strlen(port) + 1;
    char *s = own(c, malloc(len));
    if (!s)
        return NULL;
    if (colon)
        snprintf(s, len, "%.*s:%s", host_len, listen, port);
    else
        snprintf(s, len, "%s", port);
    return s;
}

od_status od_config_string(od_config *c, const char *group, const char *key, const char *def,
                           const char **out)
{
    const config_setting_t *s = find(c, group, key);
    const env_override *ov = override_for(group, key);
    const char *env = ov ? env_value(ov->env) : NULL;
    if (env) { /* the environment wins even over a mistyped file value */
        *out = env;
        return OD_OK;
    }
    const char *v = def;
    if (s) {
        if (config_setting_type(s) != CONFIG_TYPE_STRING)
            return type_error(c, s, group, key, "a string, e.g. \"text\"");
        v = config_setting_get_string(s);
    }
    const char *port = env_value("PORT");
    if (port && v && strcmp(group, "server") == 0 && strcmp(key, "listen") == 0) {
        v = listen_with_port(c, v, port);
        if (!v)
            return OD_ERR_NOMEM;
    }
    *out = v;
    return OD_OK;
}

od_status od_config_int(od_config *c, const char *group, const char *key, int64_t def, int64_t min,
                        int64_t max, int64_t *out)
{
    const config_setting_t *s = find(c, group, key);
    if (!s) {
        *out = def;
        return OD_OK;
    }
    int type = config_setting_type(s);
    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
        char expected[96];
        snprintf(expected, sizeof(expected), "an integer in %" PRId64 "..%" PRId64, min, max);
        return type_error(c, s, group, key, expected);
    }
    /* Always int64: config_setting_get_int() turns an int64 out of int range into 0. */
    int64_t v = config_setting_get_int64(s);
    if (v < min || v > max) {
        char where[PATH_MAX + 16];
        od_logf(LOG_MODULE, OD_LOG_ERROR,
                "%s: %s.%s = %" PRId64 " is out of range (valid: %" PRId64 "..%" PRId64 ")",
                setting_where(c, s, where, sizeof(where)), group, key, v, min, max);
        return OD_ERR_CONFIG;
    }
    *out = v;
    return OD_OK;
}

od_status od_config_force_bool(od_config *c, const char *group, const char *key, int value)
{
    if (c->n_forced == sizeof(c->forced) / sizeof(c->forced[0]) ||
        strlen(group) >= sizeof(c->forced[0].group) || strlen(key) >= sizeof(c->forced[0].key))
        return OD_ERR_INVALID;
    forced_bool *f = &c->forced[c->n_forced++];
    snprintf(f->group, sizeof(f->group), "%s", group);
    snprintf(f->key, sizeof(f->key), "%s", key);
    f->value = value ? 1 : 0;
    return OD_OK;
}

static const forced_bool *forced_for(const od_config *c, const char *group, const char *key)
{
    for (size_t i = 0; i < c->n_forced; i++)
        if (strcmp(c->forced[i].group, group) == 0 && strcmp(c->forced[i].key, key) == 0)
            return &c->forced[i];
    return NULL;
}

od_status od_config_bool(od_config *c, const char *group, const char *key, int def, int *out)
{
    const forced_bool *f = forced_for(c, group, key);
    if (f) {
        mark_known(c, group, key);
        *out = f->value;
        return OD_OK;
    }
    const config_setting_t *s = find(c, group, key);
    if (!s) {
        *out = def ? 1 : 0;
        return OD_OK;
    }
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return type_error(c, s, group, key, "true or false");
    *out = config_setting_get_bool(s) ? 1 : 0;
    return OD_OK;
}

od_status od_config_strings(od_config *c, const char *group, const char *key,
                            const char *const **out, size_t *n)
{
    const config_setting_t *s = find(c, group, key);
    *out = NULL;
    *n = 0;
    if (!s)
        return OD_OK;
    static const char expected[] = "an array of strings, e.g. [\"a\", \"b\"]";
    int type = config_setting_type(s);
    if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
        return type_error(c, s, group, key, expected);
    int len = config_setting_length(s);
    for (int i = 0; i < len; i++)
        if (config_setting_type(config_setting_get_elem(s, (unsigned)i)) != CONFIG_TYPE_STRING)
            return type_error(c, s, group, key, expected);
    if (len == 0)
        return OD_OK;
    /* The strings belong to libconfig; only the pointer array is ours. */
    const char **arr = own(c, calloc((size_t)len, sizeof(*arr)));
    if (!arr)
        return OD_ERR_NOMEM;
    for (int i = 0; i < len; i++)
        arr[i] = config_setting_get_string_elem(s, i);
    *out = arr;
    *n = (size_t)len;
    return OD_OK;
}

const char *od_config_where(od_config *c, const char *group, const char *key, char *buf, size_t n)
{
    const config_setting_t *g = config_setting_get_member(config_root_setting(&c->cfg), group);
    const config_setting_t *s =
        g && config_setting_is_group(g) ? config_setting_lookup((config_setting_t *)g, key) : NULL;
    if (!s)
        s = g;
    if (s)
        setting_where(c, s, buf, n);
    else
        snprintf(buf, n, "%s", c->path);
    return buf;
}

/* ---- unknown keys ----------------------------------------------------- */

/* A group is expected when the core owns it, modules.load names it or a
 * key of it was asked for (the core reads orders.pipeline, for one). */
static int group_expected(od_config *c, const char *name)
{
    for (size_t i = 0; i < sizeof(core_groups) / sizeof(core_groups[0]); i++)
        if (strcmp(core_groups[i], name) == 0)
            return 1;
    size_t nlen = strlen(name);
    for (size_t i = 0; i < c->known.n; i++) {
        const char *k = c->known.items[i];
        if (strncmp(k, name, nlen) == 0 && k[nlen] == '.')
            return 1;
    }
    const config_setting_t *load = config_lookup(&c->cfg, "modules.load");
    int len = load && config_setting_is_aggregate(load) ? config_setting_length(load) : 0;
    for (int i = 0; i < len; i++) {
        const char *m = config_setting_get_string_elem(load, i);
        if (m && strcmp(m, name) == 0)
            return 1;
    }
    return 0;
}

static void warn_setting(od_config *c, const config_setting_t *s, const char *what)
{
    char where[PATH_MAX + 16];
    od_logf(LOG_MODULE, OD_LOG_WARN, "%s: %s", setting_where(c, s, where, sizeof(where)), what);
}

static void warn_unknown_members(od_config *c, const config_setting_t *g)
{
    const char *group = config_setting_name(g);
    int len = config_setting_length(g);
    for (int i = 0; i < len; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *key = config_setting_name(s);
        /* env-mapped keys count as known: setting them in the file is legitimate. */
        if (is_known(c, group, key) || override_for(group, key))
            continue;
        char what[256];
        snprintf(what, sizeof(what), "unknown key \"%s.%s\" (nothing reads it; misspelt?)", group,
                 key);
        warn_setting(c, s, what);
    }
}

void od_config_warn_unknown(od_config *c)
{
    const config_setting_t *root = config_root_setting(&c->cfg);
    int len = config_setting_length(root);
    for (int i = 0; i < len; i++) {
        const config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        const char *name = config_setting_name(s);
        char what[256];
        if (!config_setting_is_group(s)) {
            snprintf(what, sizeof(what),
                     "unknown top-level setting \"%s\" (settings belong in a group)", name);
            warn_setting(c, s, what);
        } else if (!group_expected(c, name)) {
            snprintf(what, sizeof(what),
                     "unknown group \"%s\" (not server, modules, storage, queue or a module in "
                     "modules.load)",
                     name);
            warn_setting(c, s, what);
        } else {
            warn_unknown_members(c, s);
        }
    }
}
