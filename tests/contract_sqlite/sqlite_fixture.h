/*
 * tests/contract_sqlite/sqlite_fixture.h - what the SQLite backend suites
 * (sqlite_backends.c, group_commit.c, shared_store.c) share: a temporary
 * directory per test holding the database file, storage_sqlite.so and
 * queue_sqlite.so loaded and opened through the mock host, and plain SQL on
 * the file through a connection of its own (as another process would).
 */
#ifndef ORDERD_TEST_SQLITE_FIXTURE_H
#define ORDERD_TEST_SQLITE_FIXTURE_H

#include <sqlite3.h>
#include <stdint.h>

#include "mock_host.h"

extern char fx_dir[256];     /* this test's temporary directory */
extern char fx_db_path[300]; /* fx_dir/orderd.db */
extern const od_host_api *H; /* mock_host_api() */

/* Check fixtures: fx_setup makes fx_dir (under $ORDERD_BUILD_DIR, else
 * /tmp) and resets the mock log and clock; fx_teardown removes fx_dir and
 * everything in it, and resets the clock. */
void fx_setup(void);
void fx_teardown(void);

typedef struct backend {
    const od_module_desc *desc;
    od_module *mod;
    void *self;
} backend;

static inline const od_storage_ops *S(const backend *b)
{
    return b->desc->ops;
}

static inline const od_queue_ops *Q(const backend *b)
{
    return b->desc->ops;
}

/* $ORDERD_BUILD_DIR/modules/<name>.so, loaded as the core would; asserts. */
const od_module_desc *fx_load(const char *name);
/* Load <name> (storage_* in config group "storage", else "queue"), set
 * path, durability and busy_timeout_ms (NULL / < 0: the module's default),
 * init it and start it if it has start. The status of the step that
 * failed, and then nothing is left to close; asserts only that it loads,
 * so a forked child can _exit on a status instead. */
od_status fx_open_cfg(backend *b, const char *name, const char *path, const char *durability,
                      int64_t busy_ms);
/* fx_open_cfg with the defaults, which must succeed. */
void fx_open_at(backend *b, const char *name, const char *path);
void fx_open(backend *b, const char *name); /* at fx_db_path */
void fx_close(backend *b);                  /* stop, destroy */

/* A connection of its own to fx_db_path (close with sqlite3_close). */
sqlite3 *fx_other(void);
/* Run SQL on db; it must succeed. */
void fx_exec(sqlite3 *db, const char *sql);
/* Run SQL on fx_db_path in a connection opened for it. */
void fx_sql(const char *sql);
/* The first column of the first row of a query on the file at path. */
int64_t fx_sql_int(const char *path, const char *query);

#endif
