/*
 * orderd/module.h - what a module .so exports and how the core loads it.
 *
 * A module exports exactly one symbol, the function
 *
 *     OD_MODULE_EXPORT const od_module_desc *od_module_entry(void);
 *
 * (a function, not a data symbol: dlsym() is only guaranteed for functions).
 * The loader dlopen()s the file with RTLD_NOW | RTLD_LOCAL, calls the entry
 * and checks magic, abi_major, abi_minor, size and kind BEFORE calling any
 * other module code. A module loads when its abi_major equals the core's,
 * its abi_minor is <= the core's and its size covers every member of the
 * version it claims. Modules are never dlclose()d while orderd runs.
 *
 * Build a module with -fvisibility=hidden, every function static except the
 * entry, and link it with -Wl,-z,defs: a module calls nothing in the core by
 * symbol, everything goes through the od_host_api table handed to init().
 *
 * Lifecycle (all on the main thread, in this order):
 *
 *   entry    loader, once. No side effects: return a pointer to a static const
 *            descriptor.
 *   init     core, in dependency order: storage -> queue -> steps -> services,
 *            and within a kind in the order of the config. Read config,
 *            register routes and metrics, allocate state. Start no thread.
 *            On failure return a negative status; the module's destroy is
 *            NOT called, so init frees what it allocated before failing.
 *   start    core, after every init succeeded, before the HTTP server
 *            accepts. May start threads. Optional (NULL).
 *   ...      route handlers run on HTTP worker threads, steps on queue
 *            worker threads, many at once: module state is read-only after
 *            init except what the module guards with its own locks.
 *   stop     core, after the HTTP server stopped accepting and every
 *            in-flight request finished, in reverse start order. Join every
 *            thread the module started. Optional (NULL).
 *   destroy  core, reverse init order. Free what init allocated. Optional.
 *
 * No callback of a module runs before its init returned OD_OK or after its
 * stop began.
 */
#ifndef ORDERD_MODULE_H
#define ORDERD_MODULE_H

#include <stddef.h>
#include <stdint.h>
#include "orderd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OD_MODULE_MAGIC 0x4d44524fu /* "ORDM" little-endian */

/* ABI version. Major changes break every module; minor only appends.
 * 1.0: initial.
 * 1.1: optional storage put_batch/store and queue store/notify: an atomic
 *      multi-document write that can carry a queue message (storage.h). */
#define OD_ABI_MAJOR 1
#define OD_ABI_MINOR 1

/* 1 when a size-prefixed ops table has the optional member `m` set. A module
 * built against an older minor has a shorter table, so test before calling:
 *     if (OD_HAS_OP(od_storage_ops, st->ops, put_batch)) ... */
#define OD_HAS_OP(type, ops, m)                                                                    \
    ((ops)->size >= offsetof(type, m) + sizeof((ops)->m) && (ops)->m != NULL)

#define OD_ENTRY_SYMBOL "od_module_entry"

#if defined(__GNUC__)
#define OD_MODULE_EXPORT __attribute__((visibility("default")))
#else
#define OD_MODULE_EXPORT
#endif

/* Module kinds. Each kind except service has its own ops table. */
#define OD_KIND_SERVICE 1 /* routes only; ops = NULL                    */
#define OD_KIND_STORAGE 2 /* ops = const od_storage_ops * (storage.h)   */
#define OD_KIND_QUEUE   3 /* ops = const od_queue_ops * (queue.h)       */
#define OD_KIND_STEP    4 /* ops = const od_step_ops * (step.h)         */

typedef struct od_host_api od_host_api; /* host.h */
typedef struct od_module od_module;     /* opaque: the core's handle for one loaded module */

typedef struct od_module_desc {
    uint32_t magic;     /* OD_MODULE_MAGIC */
    uint16_t abi_major; /* OD_ABI_MAJOR the module was built against */
    uint16_t abi_minor; /* OD_ABI_MINOR the module was built against */
    uint32_t size;      /* sizeof(od_module_desc) the module was built with */
    uint32_t kind;      /* OD_KIND_* */

    /* Unique module name: [a-z0-9_]{1,32}. For services and steps it is also
     * the config group the module reads (storage and queue backends read the
     * "storage" / "queue" group) and, for steps, the name the pipeline uses. */
    const char *name;
    const char *version;     /* the module's own version, free-form */
    const char *description; /* one line, for --list-modules */

    /* Required. host: valid until destroy returns. mod: the module's handle,
     * passed back to every host call that acts for this module. *self: set it
     * to the module's state; the core hands it to every other callback. */
    od_status (*init)(const od_host_api *host, od_module *mod, void **self);
    od_status (*start)(void *self); /* optional */
    void (*stop)(void *self);       /* optional */
    void (*destroy)(void *self);    /* optional */

    /* The kind's ops table (see above); must be non-NULL for storage, queue
     * and step modules, NULL for services. Static, const, outlives the module. */
    const void *ops;
    /* append new members below this line only */
} od_module_desc;

/* Fill the version header of a descriptor:
 *   static const od_module_desc desc = { OD_MODULE_HEADER(OD_KIND_SERVICE), .name = "x", ... }; */
#define OD_MODULE_HEADER(kind_)                                                                    \
    .magic = OD_MODULE_MAGIC, .abi_major = OD_ABI_MAJOR, .abi_minor = OD_ABI_MINOR,                \
    .size = (uint32_t)sizeof(od_module_desc), .kind = (kind_)

/* The one symbol every module exports. */
typedef const od_module_desc *(*od_module_entry_fn)(void);
OD_MODULE_EXPORT const od_module_desc *od_module_entry(void);

#ifdef __cplusplus
}
#endif
#endif /* ORDERD_MODULE_H */
