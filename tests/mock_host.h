/*
 * tests/mock_host.h - an od_host_api without the core, for module unit tests
 * and backend contract suites (collectd's plugin_mock.c idea).
 *
 * Single-threaded set-up; the memory, log, utility and metric members are
 * thread-safe so concurrency tests can call modules from many threads.
 */
#ifndef ORDERD_MOCK_HOST_H
#define ORDERD_MOCK_HOST_H

#include <stddef.h>
#include <stdint.h>
#include "orderd/orderd.h"

const od_host_api *mock_host_api(void);

/* A module handle whose config group is `group` (e.g. "auth", "storage"). */
od_module *mock_module_new(const char *group);
void mock_module_free(od_module *m);
/* Config values the module will read (copied). */
void mock_config_set_string(od_module *m, const char *key, const char *value);
void mock_config_set_int(od_module *m, const char *key, int64_t value);
void mock_config_set_bool(od_module *m, const char *key, int value);
void mock_config_set_strings(od_module *m, const char *key, const char *const *values, size_t n);

/* What host->storage()/queue()/step() return (borrowed; NULL = none). */
void mock_set_storage(const od_storage *s);
void mock_set_queue(const od_queue *q);
void mock_add_step(const od_step *s); /* s->name is the lookup key */
/* What host->pipeline() returns (borrowed array of n steps). */
void mock_set_pipeline(const od_step *const *steps, size_t n);

/* Load a module .so the way the core does (dlopen RTLD_NOW|RTLD_LOCAL, entry,
 * magic/ABI/size checks) and return its descriptor; NULL + message on error. */
const od_module_desc *mock_load_module(const char *path, char *err, size_t errlen);

/* Routes and the authenticator registered through the host. */
od_handler_fn mock_route(const char *method, const char *pattern, uint32_t *access);
od_authenticate_fn mock_authenticator(void);
void mock_routes_reset(void);

/* Requests: build one, call a handler with it, inspect the reply. */
od_request *mock_request_new(const char *method, const char *path);
void mock_request_param(od_request *r, const char *name, const char *value);
void mock_request_query(od_request *r, const char *name, const char *value);
void mock_request_header(od_request *r, const char *name, const char *value);
void mock_request_body(od_request *r, const char *body);
void mock_request_principal(od_request *r, const char *user_id, uint32_t role);
void mock_request_client(od_request *r, const char *addr);
int mock_reply_status(const od_request *r);              /* 0 = no reply yet */
const char *mock_reply_body(const od_request *r);        /* the whole envelope JSON */
const char *mock_reply_header(const od_request *r, const char *name);
int mock_reply_count(const od_request *r);               /* reply* calls made */
void mock_request_free(od_request *r);

/* Log lines written through host->log ("module: text"), for assertions. */
int mock_log_contains(const char *needle);
void mock_log_reset(void);

/* Metric values by name+labels (counters/gauges); 0 if unknown. */
int64_t mock_metric_value(const char *name, const char *labels);
uint64_t mock_metric_observations(const char *name, const char *labels);

/* Wall clock the host reports; 0 = real time. */
void mock_set_now_ms(int64_t ms);

#endif
