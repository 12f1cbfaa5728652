/*
 * test_support.h - shared set-up for the auth and users suites: the real
 * storage_memory backend behind the mock host, module loading, requests and
 * reply inspection. Single-threaded; each Check test runs in its own fork.
 */
#ifndef ORDERD_TEST_SUPPORT_H
#define ORDERD_TEST_SUPPORT_H

#include <json-c/json.h>

#include "mock_host.h"

/* Load <build>/modules/storage_memory.so, init it and hand it to the mock. */
void ts_storage_up(void);
void ts_storage_down(void);
const od_storage *ts_storage(void);

/* Load <build>/modules/<name>.so (aborts the test when it cannot). */
const od_module_desc *ts_load(const char *name);

/* Call the handler registered for method+pattern with self. */
od_request *ts_request(const char *method, const char *path);
void ts_run(void *self, od_request *r, const char *method, const char *pattern);

/* The reply envelope parsed, cached per request; and lookups by dotted path
 * ("data.user.email"), NULL when absent. */
json_object *ts_reply(od_request *r);
json_object *ts_get(od_request *r, const char *path);
const char *ts_str(od_request *r, const char *path);
void ts_free(od_request *r);

#endif
