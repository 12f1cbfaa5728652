/*
 * tests/contract_sqlite/sqlite_fixture.c - the shared fixture of the SQLite
 * backend suites (sqlite_fixture.h).
 */
#include "sqlite_fixture.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char fx_dir[256];
char fx_db_path[300];
const od_host_api *H;

void fx_setup(void)
{
    const char *base = getenv("ORDERD_BUILD_DIR");
    /* Named after the suite, so a directory left behind says whose it is. */
    snprintf(fx_dir, sizeof fx_dir, "%s/%s-XXXXXX", base ? base : "/tmp",
             program_invocation_short_name);
    ck_assert_ptr_nonnull(mkdtemp(fx_dir));
    snprintf(fx_db_path, sizeof fx_db_path, "%s/orderd.db", fx_dir);
    H = mock_host_api();
    mock_log_reset();
    mock_set_now_ms(0);
}

/* The database with its -wal/-shm/-journal, and whatever links a test made. */
void fx_teardown(void)
{
    DIR *d = opendir(fx_dir);
    if (d) {
        char p[600];
        for (struct dirent *e; (e = readdir(d));) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", fx_dir, e->d_name);
            if (unlink(p) < 0 && (errno == EISDIR || errno == EPERM))
                rmdir(p);
        }
        closedir(d);
    }
    rmdir(fx_dir);
    mock_set_now_ms(0);
}

const od_module_desc *fx_load(const char *name)
{
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/modules/%s.so", getenv("ORDERD_BUILD_DIR"), name);
    const od_module_desc *d = mock_load_module(path, err, sizeof err);
    ck_assert_msg(d != NULL, "%s", err);
    return d;
}

od_status fx_open_cfg(backend *b, const char *name, const char *path, const char *durability,
                      int64_t busy_ms)
{
    memset(b, 0, sizeof *b);
    b->desc = fx_load(name);
    b->mod = mock_module_new(strncmp(name, "storage", 7) == 0 ? "storage" : "queue");
    mock_config_set_string(b->mod, "path", path);
    if (durability)
        mock_config_set_string(b->mod, "durability", durability);
    if (busy_ms >= 0)
        mock_config_set_int(b->mod, "busy_timeout_ms", busy_ms);
    od_status s = b->desc->init(H, b->mod, &b->self);
    if (s == OD_OK && b->desc->start && (s = b->desc->start(b->self)) != OD_OK)
        b->desc->destroy(b->self);
    if (s != OD_OK) {
        mock_module_free(b->mod);
        b->mod = NULL;
    }
    return s;
}

void fx_open_at(backend *b, const char *name, const char *path)
{
    ck_assert_int_eq(fx_open_cfg(b, name, path, NULL, -1), OD_OK);
}

void fx_open(backend *b, const char *name)
{
    fx_open_at(b, name, fx_db_path);
}

void fx_close(backend *b)
{
    if (b->desc->stop)
        b->desc->stop(b->self);
    b->desc->destroy(b->self);
    mock_module_free(b->mod);
    memset(b, 0, sizeof *b);
}

sqlite3 *fx_other(void)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(fx_db_path, &db), SQLITE_OK);
    return db;
}

void fx_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, err ? err : "?");
}

void fx_sql(const char *sql)
{
    sqlite3 *db = fx_other();
    fx_exec(db, sql);
    sqlite3_close(db);
}

int64_t fx_sql_int(const char *path, const char *query)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, query, -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}
