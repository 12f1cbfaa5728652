/*
 * odaws_json.c - json-c glue for the AWS JSON protocols: serialize a request
 * object and call, parse answers, DynamoDB attribute values. Every object is
 * created and released on the calling thread (Debian's json-c refcounts are
 * not atomic).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "odaws.h"

#define ODAWS_JSON_DEPTH 64 /* DynamoDB documents nest up to 32 levels, plus wrappers */

json_object *odaws_parse(const char *body, size_t len)
{
    if (!body || len == 0 || len > INT32_MAX - 1)
        return NULL;
    json_tokener *tok = json_tokener_new_ex(ODAWS_JSON_DEPTH);
    if (!tok)
        return NULL;
    /* The body is NUL-terminated: len + 1 makes the NUL mark the end. */
    json_object *o = json_tokener_parse_ex(tok, body, (int)len + 1);
    int ok = o && json_tokener_get_error(tok) == json_tokener_success &&
             json_object_is_type(o, json_type_object);
    json_tokener_free(tok);
    if (!ok) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

od_status odaws_call_json(odaws_client *c, const char *operation, json_object *req,
                          int64_t min_timeout_ms, odaws_response *resp, json_object **out)
{
    *out = NULL;
    size_t len = 0;
    const char *body = json_object_to_json_string_length(
        req, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (!body) {
        memset(resp, 0, sizeof *resp);
        return OD_ERR_NOMEM;
    }
    od_status st = odaws_call_timeout(c, operation, body, len, min_timeout_ms, resp);
    if (st != OD_OK || !odaws_ok(resp))
        return st;
    /* Some emulators answer an empty body where AWS sends "{}". */
    *out = resp->len ? odaws_parse(resp->body, resp->len) : json_object_new_object();
    if (!*out) {
        /* A 2xx we cannot read: treat like a broken backend, not a client error. */
        snprintf(resp->error_type, sizeof resp->error_type, "MalformedResponse");
        resp->http_status = 502;
        return OD_OK;
    }
    return OD_OK;
}

/* ---- DynamoDB attribute values ---------------------------------------- */

static json_object *av_wrap(const char *type, json_object *v)
{
    if (!v)
        return NULL;
    json_object *o = json_object_new_object();
    if (!o || json_object_object_add(o, type, v) != 0) {
        json_object_put(o);
        json_object_put(v);
        return NULL;
    }
    return o;
}

json_object *odaws_av_s(const char *s)
{
    return av_wrap("S", json_object_new_string(s));
}

json_object *odaws_av_s_len(const char *s, size_t len)
{
    if (len > INT32_MAX)
        return NULL;
    return av_wrap("S", json_object_new_string_len(s, (int)len));
}

json_object *odaws_av_n(int64_t n)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRId64, n);
    return av_wrap("N", json_object_new_string(buf));
}

static od_status av_member(json_object *item, const char *name, const char *type,
                           json_object **out)
{
    json_object *av, *v;
    if (!item || !json_object_object_get_ex(item, name, &av))
        return OD_ERR_NOT_FOUND;
    if (!json_object_object_get_ex(av, type, &v) || !json_object_is_type(v, json_type_string))
        return OD_ERR_INVALID;
    *out = v;
    return OD_OK;
}

od_status odaws_av_get_s(json_object *item, const char *name, const char **out, size_t *len)
{
    json_object *v;
    od_status st = av_member(item, name, "S", &v);
    if (st != OD_OK)
        return st;
    *out = json_object_get_string(v);
    if (len)
        *len = (size_t)json_object_get_string_len(v);
    return OD_OK;
}

od_status odaws_av_get_n(json_object *item, const char *name, int64_t *out)
{
    json_object *v;
    od_status st = av_member(item, name, "N", &v);
    if (st != OD_OK)
        return st;
    const char *s = json_object_get_string(v);
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return OD_ERR_INVALID;
    *out = (int64_t)n;
    return OD_OK;
}
