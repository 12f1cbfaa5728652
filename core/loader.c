/*
 * loader.c - loads one module file and checks its descriptor before any
 * other module code runs.
 *
 * Reads no config key (main passes modules.directory and the names). Owns no
 * thread; runs on the main thread during start-up only.
 *
 * Every refusal is one log line "module "NAME" (PATH): what is wrong", and
 * where useful what to do about it. The checks, in order: name syntax, the
 * file and its directory (not world-writable: anyone could swap the code we
 * are about to run; a world-writable directory is accepted only with the
 * sticky bit, as /tmp, because then only the file's owner can replace it),
 * dlopen(RTLD_NOW | RTLD_LOCAL) so missing symbols fail here and not at
 * first call, the entry symbol, magic, ABI version, descriptor size, kind,
 * callbacks and the kind's ops table.
 *
 * A refused module is dlclose()d: none of its code but the entry has run.
 * An accepted one never is (threads or callbacks may outlive any point where
 * we could prove it idle; PostgreSQL and Redis learnt this the hard way).
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core.h"

#define LOG_MODULE "core"
#define NAME_MAX_LEN 32

/* Size a descriptor or ops table must have for each ABI minor of major 1:
 * index = abi_minor. Append a row when a minor adds members. */
typedef struct abi_sizes {
    size_t desc, storage_ops, queue_ops, step_ops;
} abi_sizes;

static const abi_sizes sizes_by_minor[] = {
    /* 1.0 */ {sizeof(od_module_desc), offsetof(od_storage_ops, put_batch),
               offsetof(od_queue_ops, store), sizeof(od_step_ops)},
    /* 1.1 */ {sizeof(od_module_desc), sizeof(od_storage_ops), sizeof(od_queue_ops),
               sizeof(od_step_ops)},
};

_Static_assert(sizeof(sizes_by_minor) / sizeof(sizes_by_minor[0]) == OD_ABI_MINOR + 1,
               "one sizes_by_minor row per ABI minor");

static const char *const kind_names[] = {NULL, "service", "storage", "queue", "step"};

static const char *kind_name(uint32_t kind)
{
    return kind >= 1 && kind <= OD_KIND_STEP ? kind_names[kind] : "unknown";
}

/* [a-z0-9_]{1,32}: no '/', no '..', nothing a shell or a path could misread. */
static int name_valid(const char *name)
{
    size_t len = 0;
    for (const char *p = name; *p; p++, len++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return 0;
    return len >= 1 && len <= NAME_MAX_LEN;
}

/* One refusal line; fmt describes what is wrong. */
static void refuse(const char *name, const char *path, const char *fmt, ...) OD_PRINTF(3, 4);

static void refuse(const char *name, const char *path, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    od_logf(LOG_MODULE, OD_LOG_ERROR, "module \"%s\" (%s): %s", name, path, what);
}

/* ---- the file --------------------------------------------------------- */

static int dir_safe(const char *name, const char *path, const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        refuse(name, path, "modules directory %s does not exist (set modules.directory)", dir);
        return 0;
    }
    if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
        refuse(name, path,
               "modules directory %s is world-writable; refusing to load from it (chmod o-w %s)",
               dir, dir);
        return 0;
    }
    return 1;
}

static int file_safe(const char *name, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            refuse(name, path,
                   "file not found in the modules directory (is the name right? "
                   "see orderd --list-modules)");
        else
            refuse(name, path, "cannot stat the file: %s", strerror(errno));
        return 0;
    }
    if (!S_ISREG(st.st_mode)) {
        refuse(name, path, "not a regular file");
        return 0;
    }
    if (st.st_mode & S_IWOTH) {
        refuse(name, path, "file is world-writable; refusing to load it (chmod o-w %s)", path);
        return 0;
    }
    return 1;
}

/* ---- the descriptor --------------------------------------------------- */

static int version_ok(const char *name, const char *path, const od_module_desc *d)
{
    if (d->abi_major != OD_ABI_MAJOR) {
        refuse(name, path,
               "built for ABI %u.%u, this orderd provides %d.%d; rebuild the module "
               "against this orderd's headers",
               d->abi_major, d->abi_minor, OD_ABI_MAJOR, OD_ABI_MINOR);
        return 0;
    }
    if (d->abi_minor > OD_ABI_MINOR) {
        refuse(name, path, "built for ABI %u.%u, newer than this orderd's %d.%d; upgrade orderd",
               d->abi_major, d->abi_minor, OD_ABI_MAJOR, OD_ABI_MINOR);
        return 0;
    }
    size_t need = sizes_by_minor[d->abi_minor].desc;
    if (d->size < need) {
        refuse(name, path, "descriptor size %u is too small for ABI %u.%u (needs %zu)", d->size,
               d->abi_major, d->abi_minor, need);
        return 0;
    }
    return 1;
}

static int kind_ok(const char *name, const char *path, const od_module_desc *d,
                   uint32_t expected_kind)
{
    if (d->kind < OD_KIND_SERVICE || d->kind > OD_KIND_STEP) {
        refuse(name, path, "unknown kind %u (valid: 1 service, 2 storage, 3 queue, 4 step)",
               d->kind);
        return 0;
    }
    if (expected_kind && d->kind != expected_kind) {
        refuse(name, path, "is a %s module, but the configuration uses it as a %s module",
               kind_name(d->kind), kind_name(expected_kind));
        return 0;
    }
    return 1;
}

/* Each op member of a table, by name, for the "missing op" messages. */
typedef struct op_member {
    const char *name;
    size_t offset;
} op_member;

/* clang-format off */
#define OP(type, m) {#m, offsetof(type, m)}
/* clang-format on */
static const op_member storage_required[] = {
    OP(od_storage_ops, define_table), OP(od_storage_ops, get),
    OP(od_storage_ops, put),          OP(od_storage_ops, del),
    OP(od_storage_ops, lookup),       OP(od_storage_ops, query),
    OP(od_storage_ops, scan),         OP(od_storage_ops, counter_add),
    OP(od_storage_ops, counter_set),  OP(od_storage_ops, counter_get),
    OP(od_storage_ops, counter_del),
};
static const op_member queue_required[] = {
    OP(od_queue_ops, send),  OP(od_queue_ops, receive),
    OP(od_queue_ops, del),   OP(od_queue_ops, change_visibility),
    OP(od_queue_ops, depth),
};
static const op_member step_required[] = {OP(od_step_ops, run)};
#undef OP

static int ops_members_ok(const char *name, const char *path, const od_module_desc *d,
                          const op_member *req, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        void (*fn)(void);
        memcpy(&fn, (const char *)d->ops + req[i].offset, sizeof(fn));
        if (!fn) {
            refuse(name, path, "%s op %s() is missing (required)", kind_name(d->kind), req[i].name);
            return 0;
        }
    }
    return 1;
}

static int ops_ok(const char *name, const char *path, const od_module_desc *d)
{
    if (d->kind == OD_KIND_SERVICE) {
        if (d->ops) {
            refuse(name, path, "a service module must set ops = NULL");
            return 0;
        }
        return 1;
    }
    if (!d->ops) {
        refuse(name, path, "a %s module needs an ops table (ops is NULL)", kind_name(d->kind));
        return 0;
    }
    const abi_sizes *sz = &sizes_by_minor[d->abi_minor];
    size_t need = d->kind == OD_KIND_STORAGE ? sz->storage_ops
                  : d->kind == OD_KIND_QUEUE ? sz->queue_ops
                                             : sz->step_ops;
    uint32_t have;
    memcpy(&have, d->ops, sizeof(have)); /* every ops table opens with uint32_t size */
    if (have < need) {
        refuse(name, path, "%s ops size %u is too small for ABI %u.%u (needs %zu)",
               kind_name(d->kind), have, d->abi_major, d->abi_minor, need);
        return 0;
    }
    switch (d->kind) {
    case OD_KIND_STORAGE:
        return ops_members_ok(name, path, d, storage_required,
                              sizeof(storage_required) / sizeof(storage_required[0]));
    case OD_KIND_QUEUE:
        return ops_members_ok(name, path, d, queue_required,
                              sizeof(queue_required) / sizeof(queue_required[0]));
    default:
        return ops_members_ok(name, path, d, step_required,
                              sizeof(step_required) / sizeof(step_required[0]));
    }
}

static int desc_ok(const char *name, const char *path, const od_module_desc *d,
                   uint32_t expected_kind)
{
    if (!d) {
        refuse(name, path, "od_module_entry() returned NULL");
        return 0;
    }
    if (d->magic != OD_MODULE_MAGIC) {
        refuse(name, path, "not an orderd module (bad magic 0x%08x)", d->magic);
        return 0;
    }
    if (!version_ok(name, path, d) || !kind_ok(name, path, d, expected_kind))
        return 0;
    if (!d->name || !name_valid(d->name)) {
        refuse(name, path, "invalid descriptor name \"%.40s\" (use 1-32 of a-z, 0-9, _)",
               d->name ? d->name : "(null)");
        return 0;
    }
    if (!d->init) {
        refuse(name, path, "init() is missing (required)");
        return 0;
    }
    return ops_ok(name, path, d);
}

/* ---- load ------------------------------------------------------------- */

/* dlopen and call the entry. 0 after a refusal (then *handle is closed). */
static int open_module(const char *name, const char *path, void **handle,
                       const od_module_desc **desc)
{
    *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!*handle) {
        const char *err = dlerror();
        refuse(name, path, "cannot load: %s", err ? err : "unknown dlopen error");
        return 0;
    }
    od_module_entry_fn entry;
    dlerror();
    *(void **)(&entry) = dlsym(*handle, OD_ENTRY_SYMBOL);
    if (dlerror() || !entry) {
        refuse(name, path, "not an orderd module (no " OD_ENTRY_SYMBOL " symbol)");
        dlclose(*handle);
        return 0;
    }
    *desc = entry();
    return 1;
}

static od_loaded_module *loaded_new(const char *name, const char *path, void *handle,
                                    const od_module_desc *desc)
{
    od_loaded_module *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->name = strdup(name);
    m->path = strdup(path);
    m->handle = handle;
    m->desc = desc;
    if (!m->name || !m->path) {
        od_loader_free(m);
        return NULL;
    }
    return m;
}

od_loaded_module *od_loader_load(const char *dir, const char *name, uint32_t expected_kind)
{
    char dirbuf[PATH_MAX], path[PATH_MAX];
    /* The path is resolved so every message and /proc/self/maps shows where
     * the code came from; dlopen() must never search LD_LIBRARY_PATH. */
    const char *absdir = realpath(dir, dirbuf) ? dirbuf : dir;
    int w = snprintf(path, sizeof(path), "%s/%s.so", absdir, name);
    if (w < 0 || (size_t)w >= sizeof(path)) {
        refuse(name, absdir, "path too long");
        return NULL;
    }
    if (!name_valid(name)) {
        refuse(name, path, "invalid module name (use 1-32 of a-z, 0-9, _)");
        return NULL;
    }
    if (!dir_safe(name, path, absdir) || !file_safe(name, path))
        return NULL;
    void *handle;
    const od_module_desc *desc;
    if (!open_module(name, path, &handle, &desc))
        return NULL;
    if (!desc_ok(name, path, desc, expected_kind)) {
        dlclose(handle); /* nothing but the entry ran: safe to unload */
        return NULL;
    }
    od_loaded_module *m = loaded_new(name, path, handle, desc);
    if (!m) {
        od_logf(LOG_MODULE, OD_LOG_ERROR, "module \"%s\" (%s): out of memory", name, path);
        dlclose(handle);
    }
    return m;
}

void od_loader_free(od_loaded_module *m)
{
    if (!m)
        return;
    free(m->name);
    free(m->path);
    free(m);
}

od_status od_loader_check_unique(od_loaded_module *const *mods, size_t n, const od_loaded_module *m)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(mods[i]->path, m->path) == 0) {
            refuse(m->name, m->path, "listed twice; load each module once");
            return OD_ERR_EXISTS;
        }
        if (strcmp(mods[i]->desc->name, m->desc->name) == 0) {
            refuse(m->name, m->path, "duplicate module name \"%s\", already loaded from %s",
                   m->desc->name, mods[i]->path);
            return OD_ERR_EXISTS;
        }
    }
    return OD_OK;
}
