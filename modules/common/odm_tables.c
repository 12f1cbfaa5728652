/*
 * odm_tables.c - the storage backends' table registry (odm_tables.h).
 * Linear searches: a backend has a handful of tables of at most 8 indexes,
 * and the names sit inline, so a lookup is a few strcmp on one cache line
 * each.
 */
#include "odm_tables.h"

#include <string.h>

void odm_tables_init(odm_tables *r, const od_host_api *h, od_module *mod, const char *backend,
                     int (*valid_value)(const char *value))
{
    memset(r, 0, sizeof *r);
    r->host = h;
    r->mod = mod;
    r->backend = backend;
    r->valid_value = valid_value;
}

const odm_table *odm_table_find(const odm_tables *r, const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->tables[i].name, name) == 0)
            return &r->tables[i];
    return NULL;
}

const odm_index *odm_index_find(const odm_table *t, const char *name)
{
    const odm_index *x = t->indexes, *end = x + t->n_indexes;
    while (name && x < end && strcmp(x->name, name) != 0)
        x++;
    return name && x < end ? x : NULL;
}

/* The same indexes, each as unique as before; their order does not matter
 * (def has no name twice, so equal counts make it a one-to-one match). */
static int same_definition(const odm_table *t, const od_table_def *def)
{
    if (t->n_indexes != def->n_indexes)
        return 0;
    for (uint32_t i = 0; i < def->n_indexes; i++) {
        const odm_index *x = odm_index_find(t, def->indexes[i].name);
        if (!x || x->unique != (def->indexes[i].unique != 0))
            return 0;
    }
    return 1;
}

od_status odm_tables_check(const odm_tables *r, const od_table_def *def, const odm_table **old)
{
    *old = NULL;
    if (!od_storage_valid_table_def(def))
        return OD_ERR_INVALID;
    const odm_table *t = odm_table_find(r, def->name);
    if (t && same_definition(t, def)) {
        *old = t;
        return OD_OK;
    }
    if (t) {
        r->host->log(r->mod, OD_LOG_ERROR, "storage \"%s\": table \"%s\" redefined with other "
                     "indexes", r->backend, def->name);
        return OD_ERR_INVALID;
    }
    if (r->n == ODM_TABLES_MAX) {
        r->host->log(r->mod, OD_LOG_ERROR, "storage \"%s\": table \"%s\": more than %d tables",
                     r->backend, def->name, ODM_TABLES_MAX);
        return OD_ERR_INVALID;
    }
    return OD_OK;
}

const odm_table *odm_tables_add(odm_tables *r, const od_table_def *def, void *ext)
{
    odm_table *t = &r->tables[r->n];
    memset(t, 0, sizeof *t);
    strcpy(t->name, def->name);
    for (uint32_t i = 0; i < def->n_indexes; i++) {
        strcpy(t->indexes[i].name, def->indexes[i].name);
        t->indexes[i].unique = def->indexes[i].unique != 0;
        t->n_unique += t->indexes[i].unique;
    }
    t->n_indexes = def->n_indexes;
    t->id = r->n++;
    t->ext = ext;
    return t;
}

int odm_tables_valid_value(const odm_tables *r, const char *value)
{
    if (!value)
        return 0;
    size_t n = strnlen(value, ODM_VALUE_MAX + 1);
    return n > 0 && n <= ODM_VALUE_MAX && (!r->valid_value || r->valid_value(value));
}

int odm_tables_values(const odm_tables *r, const odm_table *t, const od_index_value *idx,
                      size_t n_idx, const char *by_pos[OD_INDEXES_MAX])
{
    const char *scratch[OD_INDEXES_MAX];
    const char **v = by_pos ? by_pos : scratch;
    memset(v, 0, sizeof scratch);
    if ((n_idx > 0 && !idx) || n_idx > t->n_indexes)
        return 0;
    for (size_t i = 0; i < n_idx; i++) {
        const odm_index *x = odm_index_find(t, idx[i].index);
        if (!x || v[odm_index_pos(t, x)] || !odm_tables_valid_value(r, idx[i].value))
            return 0;
        v[odm_index_pos(t, x)] = idx[i].value;
    }
    return 1;
}
