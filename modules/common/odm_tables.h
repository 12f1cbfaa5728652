/*
 * odm_tables.h - the table registry of the storage backends (library
 * odmod_tables): the tables define_table declared and their indexes, and
 * the argument checks that follow from them, written once so that every
 * backend refuses exactly the same calls.
 *
 * Not part of the ABI. Threads: written only by define_table, which
 * storage.h confines to the main thread during init; read by every thread
 * without a lock afterwards (init happens-before the server starts), so
 * nothing here locks. A table never moves or changes once added, so the
 * pointers returned stay valid until the backend frees the registry.
 */
#ifndef ODM_TABLES_H
#define ODM_TABLES_H

#include <stddef.h>
#include <stdint.h>

#include "orderd/orderd.h"

#define ODM_TABLES_MAX 64
#define ODM_VALUE_MAX 255 /* index values: 1..255 bytes */

typedef struct odm_index {
    char name[OD_NAME_MAX + 1];
    uint32_t unique;
} odm_index;

typedef struct odm_table {
    char name[OD_NAME_MAX + 1];
    odm_index indexes[OD_INDEXES_MAX]; /* in the order of the first definition */
    uint32_t n_indexes;
    uint32_t n_unique;
    size_t id; /* 0.. in the order tables were added: a stable position */
    void *ext; /* the backend's own state for the table, as given to add */
} odm_table;

typedef struct odm_tables {
    const od_host_api *host;
    od_module *mod;
    const char *backend;                   /* names the backend in log lines: "sqlite" */
    int (*valid_value)(const char *value); /* extra rule for index values, or NULL */
    odm_table tables[ODM_TABLES_MAX];
    size_t n;
} odm_tables;

/* An empty registry. backend is borrowed (a literal); valid_value, if not
 * NULL, is asked about every index value that is 1..ODM_VALUE_MAX bytes. */
void odm_tables_init(odm_tables *r, const od_host_api *h, od_module *mod, const char *backend,
                     int (*valid_value)(const char *value));

/* define_table's first half. OD_ERR_INVALID for a bad definition, a table
 * defined before with other indexes (the same ones in another order are the
 * same definition) or a full registry, the last two logged; else OD_OK with
 * *old the table when it is defined already (nothing to do), or NULL: the
 * backend sets the table up, then adds it. */
od_status odm_tables_check(const odm_tables *r, const od_table_def *def, const odm_table **old);

/* define_table's second half, for a def that odm_tables_check found new
 * (so this cannot fail): the table gets id r->n as it was before the call,
 * which the backend may use to place its own state before adding. */
const odm_table *odm_tables_add(odm_tables *r, const od_table_def *def, void *ext);

/* The table or index of that name, or NULL (name NULL included). */
const odm_table *odm_table_find(const odm_tables *r, const char *name);
const odm_index *odm_index_find(const odm_table *t, const char *name);

/* The position of x in t->indexes. */
static inline uint32_t odm_index_pos(const odm_table *t, const odm_index *x)
{
    return (uint32_t)(x - t->indexes);
}

/* An index value: 1..ODM_VALUE_MAX bytes, and what r->valid_value says. */
int odm_tables_valid_value(const odm_tables *r, const char *value);

/* put()'s index values: each names an index of t at most once and is a valid
 * value. by_pos (may be NULL) receives each index's value by position, NULL
 * where none is given. Returns 1 when all are valid, else 0. */
int odm_tables_values(const odm_tables *r, const odm_table *t, const od_index_value *idx,
                      size_t n_idx, const char *by_pos[OD_INDEXES_MAX]);

#endif /* ODM_TABLES_H */
