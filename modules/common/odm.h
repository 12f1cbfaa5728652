/*
 * odm.h - helpers shared by the in-tree modules (library odmod_common).
 *
 * Not part of the ABI: out-of-tree plugins need only include/orderd. Every
 * function here is re-entrant and keeps no global state; json-c objects are
 * created and released on the calling thread (Debian's json-c refcounts are
 * not atomic, so an object must never cross threads).
 *
 * Policies, decided once for every module:
 *   - Bodies are strict JSON objects: NaN/Infinity, single-quoted keys, raw
 *     control characters in strings, integers outside int64, non-finite
 *     numbers and duplicate keys (at any depth) are rejected with 400
 *     invalid_json, although json-c 0.16 accepts them.
 *   - Unknown fields are rejected with 400 validation_failed
 *     ("unknown field 'pasword'"): a typo must not silently drop a change.
 *   - String lengths are counted in characters (UTF-8 code points); strings
 *     containing U+0000 are rejected.
 */
#ifndef ODM_H
#define ODM_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "orderd/orderd.h"

/* A validation message for the client, e.g. "field 'email' must be a string". */
typedef struct odm_err {
    char msg[192];
} odm_err;

void odm_err_set(odm_err *e, const char *fmt, ...) OD_PRINTF(2, 3);

/* ---- JSON bodies (odm_json.c) ------------------------------------------- */

#define ODM_JSON_DEPTH 32

/* Parse buf[0..len) (buf[len] must be NUL) as one strict JSON object.
 * Returns a new object owned by the caller (json_object_put) or NULL with
 * e->msg set. */
json_object *odm_parse_object(const char *buf, size_t len, odm_err *e);

/* Parse the request body; on failure reply 400 invalid_json and return NULL
 * (the handler then just returns OD_OK). */
json_object *odm_body_object(const od_host_api *h, od_request *req);

/* Fail with "unknown field 'x'" when obj has a key not in allowed (NULL-terminated). */
od_status odm_only_fields(json_object *obj, const char *const *allowed, odm_err *e);

/* Typed getters. Missing (or JSON null) and !required -> OD_OK with *out
 * untouched (strings: NULL). Errors -> OD_ERR_INVALID with e->msg naming the
 * field. Returned strings are borrowed from obj. */
od_status odm_get_string(json_object *obj, const char *key, int required, size_t min_chars,
                         size_t max_chars, const char **out, odm_err *e);
od_status odm_get_int(json_object *obj, const char *key, int required, int64_t min, int64_t max,
                      int64_t *out, odm_err *e);
od_status odm_get_bool(json_object *obj, const char *key, int required, int *out, odm_err *e);

/* Serialize obj (plain, no slash escaping) and reply with the success
 * envelope. Does not consume obj. */
od_status odm_reply_json(const od_host_api *h, od_request *req, int status, const char *message,
                         json_object *data);
/* Serialize an array and reply with the list envelope. */
od_status odm_reply_list(const od_host_api *h, od_request *req, json_object *items,
                         const char *next_cursor);

/* ---- validation (odm_validate.c) ---------------------------------------- */

#define ODM_EMAIL_MAX 254

/* Number of UTF-8 code points in s[0..len), or SIZE_MAX if not valid UTF-8. */
size_t odm_utf8_len(const char *s, size_t len);

/* Validate an address (local@domain, <= 254 bytes, local part <= 64,
 * dot-atom characters, domain labels of [a-z0-9-] with at least one dot)
 * and write it lower-cased into out[ODM_EMAIL_MAX + 1]. */
od_status odm_email_normalize(const char *in, char *out);

/* Pagination from the query: limit 1..100 (default 50), digits only;
 * cursor <= OD_CURSOR_MAX printable ASCII. Errors -> OD_ERR_INVALID + e. */
#define ODM_LIMIT_DEFAULT 50
#define ODM_LIMIT_MAX 100
typedef struct odm_page_req {
    uint32_t limit;
    const char *cursor; /* borrowed from the request; NULL for the first page */
} odm_page_req;
od_status odm_page_params(const od_host_api *h, od_request *req, odm_page_req *out, odm_err *e);

/* "2026-11-26T10:00:00.123Z" into out[ODM_TIME_LEN + 1]. */
#define ODM_TIME_LEN 24
void odm_iso8601(int64_t ms, char *out);
/* The reverse, strictly (exactly that shape): ms since the epoch, or -1. */
int64_t odm_iso8601_parse(const char *s);

/* 8-4-4-4-12 lower-case hex, as host->new_id produces. */
int odm_is_uuid(const char *s);

/* ---- replies (odm_reply.c) ---------------------------------------------- */

/* 400 validation_failed with e->msg. */
od_status odm_reply_invalid(const od_host_api *h, od_request *req, const odm_err *e);
/* Map a backend status to its reply: NOT_FOUND 404 not_found, EXISTS and
 * CONFLICT 409 conflict, INVALID 400 validation_failed, TOO_LARGE 413
 * payload_too_large, UNAVAILABLE/CLOSED 503 unavailable, else 500 internal. */
od_status odm_reply_status(const od_host_api *h, od_request *req, od_status s);

/* ---- passwords (odm_password.c) ----------------------------------------- */

#define ODM_ARGON2_T_MIN 1
#define ODM_ARGON2_T_DEFAULT 2
#define ODM_ARGON2_M_MIN 1024
#define ODM_ARGON2_M_DEFAULT 19456
#define ODM_HASH_MAX 160 /* PHC string incl. NUL, ample for any sane cost */

/* Argon2id hashing with a cap on concurrent hashes: each hash holds
 * m_kib of memory, so an unbounded number of parallel logins could exhaust
 * RAM. Thread-safe; the counting semaphore is the only shared state. */
typedef struct odm_hasher odm_hasher;

/* max_parallel 0 = online CPUs * 2. */
od_status odm_hasher_new(const od_host_api *h, uint32_t t_cost, uint32_t m_kib,
                         uint32_t max_parallel, odm_hasher **out);
void odm_hasher_free(odm_hasher *hs);
/* PHC string "$argon2id$v=19$m=...,t=...,p=1$salt$hash" into out[ODM_HASH_MAX]. */
od_status odm_password_hash(odm_hasher *hs, const char *pw, size_t len, char *out);
/* OD_OK on match, OD_ERR_INVALID on mismatch, OD_ERR_INTERNAL for a
 * malformed stored hash. Constant time in the password. */
od_status odm_password_verify(odm_hasher *hs, const char *encoded, const char *pw, size_t len);

/* ---- rendered read views (odm_view_cache.c) ---------------------------- */

/* A per-thread cache of the JSON a read handler answered with for a stored
 * document, keyed by the document's key, version and exact bytes plus one
 * caller value (`extra`, e.g. the stock read with it; 0 if unused). A hit
 * skips parsing and rendering. Lookups take no lock; entries over 4 KiB are
 * not cached; at most 64 entries per thread. Create in init, free in
 * destroy (after the HTTP workers stopped). */
typedef struct odm_view_cache odm_view_cache;

od_status odm_view_cache_new(const od_host_api *h, odm_view_cache **out);
void odm_view_cache_free(odm_view_cache *vc);
/* The view rendered from exactly this document (and extra), or NULL. The
 * bytes stay valid until the calling thread's next store. */
const char *odm_view_cache_find(odm_view_cache *vc, const od_doc *doc, int64_t extra, size_t *len);
/* Remember view (copied) as this thread's rendering of doc (and extra). */
void odm_view_cache_store(odm_view_cache *vc, const od_doc *doc, int64_t extra, const char *view,
                          size_t view_len);

#endif /* ODM_H */
