/*
 * odaws.h - a minimal AWS JSON-protocol client shared by the DynamoDB and SQS
 * backends (static PIC library odaws, hidden visibility, linked into each
 * module; not part of the ABI).
 *
 * Everything goes through libcurl's built-in SigV4 (CURLOPT_AWS_SIGV4) and
 * json-c; there is no AWS SDK. Every call is
 *     POST <endpoint>/   Content-Type: application/x-amz-json-1.0
 *                        X-Amz-Target: <target_prefix>.<Operation>
 *                        [X-Amz-Security-Token: <token>]
 * with the JSON body signed as the payload. DynamoDB and SQS (JSON protocol)
 * both use this shape.
 *
 * Configuration, read from the module's own config group at
 * odaws_client_new() (so: from init(), on the main thread):
 *   region              default env AWS_REGION, AWS_DEFAULT_REGION, "us-east-1"
 *   endpoint            default env AWS_ENDPOINT_URL_<ENV_SUFFIX> (DYNAMODB,
 *                       SQS), then AWS_ENDPOINT_URL, else
 *                       https://<service>.<region>.amazonaws.com
 *   timeout_ms          per attempt (default 5000)
 *   connect_timeout_ms  default 2000
 *   max_retries         retries after the first attempt (default 3)
 *   retry_base_ms       backoff base (default 50): attempt n sleeps a random
 *                       0..min(base * 2^n, 5000) ms ("full jitter")
 *   create_missing      bool, default false: the module may create its
 *                       tables/queues (orderd --provision forces it on)
 * Credentials come from the environment only (AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN), never from the config
 * file; only a truncated key id is ever logged.
 *
 * Threads: a client is built and freed on the main thread; odaws_call* may
 * run on any number of threads at once. Each thread gets its own CURL easy
 * handle (a pthread key on the client), reused across calls for keep-alive;
 * no lock is taken on the call path except when a thread makes its first
 * call. The key's destructor frees a thread's handle when the thread exits;
 * odaws_client_free frees the rest, and must run only after every thread
 * that used the client stopped calling it (module stop() joined them).
 *
 * curl_global_init: the core does not call it. The first odaws_client_new of
 * the process calls curl_global_init(CURL_GLOBAL_DEFAULT) once (pthread_once);
 * it is never undone (curl_global_cleanup is not thread-safe and another
 * module may still use libcurl).
 */
#ifndef ODAWS_H
#define ODAWS_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "orderd/orderd.h"

typedef struct odaws_client odaws_client;

/* What odaws_client_new needs to know about the service. All borrowed. */
typedef struct odaws_service {
    const char *name;          /* SigV4 service name and host prefix: "dynamodb", "sqs" */
    const char *env_suffix;    /* AWS_ENDPOINT_URL_<env_suffix>: "DYNAMODB", "SQS" */
    const char *target_prefix; /* X-Amz-Target prefix: "DynamoDB_20120810", "AmazonSQS" */
} odaws_service;

/* The outcome of one call that reached the service. */
typedef struct odaws_response {
    long http_status;        /* e.g. 200, 400 */
    char *body;              /* NUL-terminated, host-allocated; len excludes the NUL */
    size_t len;
    char error_type[128];    /* "" on 2xx; else text after '#' in "__type" (or all of it) */
    char error_message[512]; /* "" or "message"/"Message" of the error body */
} odaws_response;

/* Build a client from the module's config group and the environment.
 * Logs (through host->log) the endpoint, region and truncated key id.
 * Returns OD_OK, OD_ERR_CONFIG (bad key, no credentials, bad endpoint) or
 * OD_ERR_NOMEM. *out is owned by the caller: odaws_client_free. */
od_status odaws_client_new(const od_host_api *host, od_module *mod, const odaws_service *svc,
                           odaws_client **out);
void odaws_client_free(odaws_client *c); /* NULL is a no-op */

/* Begin shutdown (module stop(), main thread): calls in flight on other
 * threads abort within about a second (long polls included) and return
 * OD_ERR_CLOSED; later calls return OD_ERR_CLOSED at once. Idempotent.
 * Call it before joining threads that may be blocked in odaws_call*. */
void odaws_client_close(odaws_client *c);

/* Settings as resolved (valid until odaws_client_free). */
const char *odaws_region(const odaws_client *c);
const char *odaws_endpoint(const odaws_client *c);
int odaws_create_missing(const odaws_client *c);
int64_t odaws_timeout_ms(const odaws_client *c);

/* POST one operation. body[0..len) is the JSON request (len 0 sends "{}").
 * Retries with exponential backoff + full jitter on network errors,
 * timeouts, 5xx and throttling errors (ThrottlingException,
 * ProvisionedThroughputExceededException, RequestLimitExceeded,
 * TooManyRequestsException, ServiceUnavailable, InternalServerError).
 * Returns:
 *   OD_OK            a final answer arrived: check resp->http_status (2xx or
 *                    a non-retryable 4xx with error_type/error_message set)
 *   OD_ERR_UNAVAILABLE  unreachable, timed out or still failing after
 *                    max_retries (bounded by (timeout + backoff) * attempts)
 *   OD_ERR_CLOSED    odaws_client_close was called
 *   OD_ERR_INVALID   bad arguments; OD_ERR_NOMEM
 * On any return *resp is valid and must be released: odaws_response_clear. */
od_status odaws_call(odaws_client *c, const char *operation, const char *body, size_t len,
                     odaws_response *resp);
/* Same, with this call's per-attempt timeout raised to at least
 * min_timeout_ms (SQS long polls: must exceed WaitTimeSeconds). */
od_status odaws_call_timeout(odaws_client *c, const char *operation, const char *body,
                             size_t len, int64_t min_timeout_ms, odaws_response *resp);
void odaws_response_clear(const odaws_client *c, odaws_response *resp);

/* 1 if the call succeeded with 2xx. */
int odaws_ok(const odaws_response *resp);
/* 1 if resp carries the error type `type` (e.g. "QueueDoesNotExist"). */
int odaws_is_error(const odaws_response *resp, const char *type);
/* A generic mapping of a final non-2xx answer to a status for errors the
 * caller did not handle itself: ResourceNotFoundException / QueueDoesNotExist
 * -> NOT_FOUND, ConditionalCheckFailedException -> CONFLICT,
 * ValidationException / InvalidParameterValue / MissingParameter -> INVALID,
 * auth errors and anything else -> UNAVAILABLE (logged by the caller);
 * 2xx -> OK. */
od_status odaws_status(const odaws_response *resp);

/* ---- JSON helpers (any thread; objects never cross threads) -------------- */

/* Serialize req (plain, no slash escaping) and odaws_call it; on a 2xx answer
 * parse the body into *out (a new object, caller puts it; an empty body reads
 * as {}). *out is NULL otherwise. A 2xx body that is not a JSON object is
 * reported as resp->http_status 502, error_type "MalformedResponse" (so
 * odaws_ok() is false and odaws_status() says UNAVAILABLE). Does not consume
 * req. Return value and resp as in odaws_call_timeout. */
od_status odaws_call_json(odaws_client *c, const char *operation, json_object *req,
                          int64_t min_timeout_ms, odaws_response *resp, json_object **out);

/* Parse a response body as a JSON object; NULL if it is not one. */
json_object *odaws_parse(const char *body, size_t len);

/* DynamoDB attribute values ({"S":"x"}, {"N":"12"}). New objects, owned by
 * the caller (or stolen by json_object_object_add). NULL on OOM. */
json_object *odaws_av_s(const char *s);
json_object *odaws_av_s_len(const char *s, size_t len);
json_object *odaws_av_n(int64_t n);
/* Read item[name] as {"S":..} (borrowed string, *len may be NULL) or as
 * {"N":..} holding an int64. OD_ERR_NOT_FOUND when absent, OD_ERR_INVALID
 * when of another type or not an integer. */
od_status odaws_av_get_s(json_object *item, const char *name, const char **out, size_t *len);
od_status odaws_av_get_n(json_object *item, const char *name, int64_t *out);

#endif /* ODAWS_H */
