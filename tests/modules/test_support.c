/* test_support.c - see test_support.h. */
#include "test_support.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARSED 64

static od_module *storage_mod;
static void *storage_self;
static const od_module_desc *storage_desc;
static od_storage storage;

/* Parsed replies, released by ts_free. */
static struct {
    od_request *req;
    json_object *obj;
} parsed[MAX_PARSED];

const od_module_desc *ts_load(const char *name)
{
    const char *dir = getenv("ORDERD_BUILD_DIR");
    char path[1024], err[512] = "";
    ck_assert_msg(dir != NULL, "ORDERD_BUILD_DIR is not set (run through ctest)");
    snprintf(path, sizeof path, "%s/modules/%s.so", dir, name);
    const od_module_desc *d = mock_load_module(path, err, sizeof err);
    ck_assert_msg(d != NULL, "loading %s: %s", path, err);
    return d;
}

void ts_storage_up(void)
{
    mock_routes_reset();
    storage_desc = ts_load("storage_memory");
    storage_mod = mock_module_new("storage");
    ck_assert_int_eq(storage_desc->init(mock_host_api(), storage_mod, &storage_self), OD_OK);
    storage.ops = storage_desc->ops;
    storage.self = storage_self;
    mock_set_storage(&storage);
}

void ts_storage_down(void)
{
    mock_set_storage(NULL);
    if (storage_desc->destroy)
        storage_desc->destroy(storage_self);
    mock_module_free(storage_mod);
}

const od_storage *ts_storage(void)
{
    return &storage;
}

od_request *ts_request(const char *method, const char *path)
{
    return mock_request_new(method, path);
}

void ts_run(void *self, od_request *r, const char *method, const char *pattern)
{
    od_handler_fn fn = mock_route(method, pattern, NULL);
    ck_assert_msg(fn != NULL, "no route %s %s", method, pattern);
    od_status s = fn(self, r);
    ck_assert_msg(s == OD_OK, "%s %s returned %d", method, pattern, s);
    ck_assert_int_eq(mock_reply_count(r), 1);
}

json_object *ts_reply(od_request *r)
{
    size_t i = 0;
    for (; i < MAX_PARSED && parsed[i].req != NULL; i++)
        if (parsed[i].req == r)
            return parsed[i].obj;
    ck_assert(i < MAX_PARSED);
    const char *body = mock_reply_body(r);
    ck_assert_ptr_nonnull(body);
    json_object *o = json_tokener_parse(body);
    ck_assert_msg(o != NULL, "reply is not JSON: %s", body);
    parsed[i].req = r;
    parsed[i].obj = o;
    return o;
}

json_object *ts_get(od_request *r, const char *path)
{
    json_object *o = ts_reply(r);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
        if (!json_object_object_get_ex(o, k, &o))
            return NULL;
    }
    return o;
}

const char *ts_str(od_request *r, const char *path)
{
    json_object *o = ts_get(r, path);
    return json_object_is_type(o, json_type_string) ? json_object_get_string(o) : NULL;
}

void ts_free(od_request *r)
{
    for (size_t i = 0; i < MAX_PARSED; i++) {
        if (parsed[i].req == r) {
            json_object_put(parsed[i].obj);
            parsed[i].req = NULL;
            parsed[i].obj = NULL;
            /* keep the array dense: move the last used entry here */
            size_t last = i;
            while (last + 1 < MAX_PARSED && parsed[last + 1].req != NULL)
                last++;
            parsed[i] = parsed[last];
            parsed[last].req = NULL;
            parsed[last].obj = NULL;
        }
    }
    mock_request_free(r);
}
