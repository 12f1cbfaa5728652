/*
 * odm_json.c - strict JSON request bodies and typed field getters on json-c 0.16.
 *
 * json-c's STRICT mode still accepts NaN/Infinity, single-quoted keys, raw
 * control characters in strings and duplicate keys, and clamps integers
 * beyond int64 silently. After json-c has checked the structure, a second
 * pass over the raw text (lex_check) rejects those; duplicate keys are found
 * by comparing the number of keys in the text with the number in the tree.
 */
#include "odm.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NUMBER_TEXT_MAX 64

void odm_err_set(odm_err *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
}

static int is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Skip a string starting at the opening quote; returns the index after the
 * closing quote or 0 on a raw control character. */
static size_t lex_string(const char *s, size_t len, size_t i, odm_err *e)
{
    for (i++; i < len && s[i] != '"'; i++) {
        if (s[i] == '\\') {
            i++;
        } else if ((unsigned char)s[i] < 0x20) {
            odm_err_set(e, "raw control character in a string (escape it)");
            return 0;
        }
    }
    return i + 1;
}

/* Check one number token; json-c already checked its grammar. */
static size_t lex_number(const char *s, size_t len, size_t i, odm_err *e)
{
    char text[NUMBER_TEXT_MAX + 1];
    size_t n = 0;
    int is_real = 0;

    while (i + n < len && strchr("+-0123456789.eE", s[i + n]) != NULL && s[i + n] != '\0')
        n++;
    if (n == 0 || n > NUMBER_TEXT_MAX) {
        odm_err_set(e, n ? "number too long" : "invalid number");
        return 0;
    }
    memcpy(text, s + i, n);
    text[n] = '\0';
    is_real = strpbrk(text, ".eE") != NULL;

    char *end = NULL;
    errno = 0;
    if (is_real) {
        double d = strtod(text, &end);
        if (!isfinite(d) || (errno == ERANGE && fabs(d) > 1.0)) {
            odm_err_set(e, "number out of range");
            return 0;
        }
    } else {
        (void)strtoll(text, &end, 10);
        if (errno == ERANGE) {
            odm_err_set(e, "integer out of range (must fit in 64 bits)");
            return 0;
        }
    }
    if (end == text || *end != '\0') {
        odm_err_set(e, "invalid number");
        return 0;
    }
    return i + n;
}

/* Literals: only true, false and null (json-c also takes NaN and Infinity). */
static size_t lex_word(const char *s, size_t len, size_t i, odm_err *e)
{
    size_t n = 0;
    while (i + n < len && isalpha((unsigned char)s[i + n]))
        n++;
    if ((n == 4 && (memcmp(s + i, "true", 4) == 0 || memcmp(s + i, "null", 4) == 0)) ||
        (n == 5 && memcmp(s + i, "false", 5) == 0))
        return i + n;
    odm_err_set(e, "invalid literal '%.*s'", (int)(n > 16 ? 16 : n), s + i);
    return 0;
}

static int next_is_colon(const char *s, size_t len, size_t i)
{
    while (i < len && is_json_space(s[i]))
        i++;
    return i < len && s[i] == ':';
}

/* Second pass over text json-c accepted; counts object keys into *keys. */
static od_status lex_check(const char *s, size_t len, size_t *keys, odm_err *e)
{
    size_t i = 0;
    *keys = 0;
    while (i < len) {
        char c = s[i];
        if (c == '"') {
            i = lex_string(s, len, i, e);
            if (i == 0)
                return OD_ERR_INVALID;
            if (next_is_colon(s, len, i))
                (*keys)++;
        } else if (c == '-' || isdigit((unsigned char)c)) {
            i = lex_number(s, len, i, e);
            if (i == 0)
                return OD_ERR_INVALID;
        } else if (isalpha((unsigned char)c)) {
            i = lex_word(s, len, i, e);
            if (i == 0)
                return OD_ERR_INVALID;
        } else if (c == '\'') {
            odm_err_set(e, "single quotes are not JSON");
            return OD_ERR_INVALID;
        } else {
            i++;
        }
    }
    return OD_OK;
}

static size_t count_keys(json_object *o)
{
    size_t n = 0;
    if (json_object_is_type(o, json_type_object)) {
        json_object_object_foreach(o, k, v) {
            (void)k;
            n += 1 + count_keys(v);
        }
    } else if (json_object_is_type(o, json_type_array)) {
        size_t len = json_object_array_length(o);
        for (size_t i = 0; i < len; i++)
            n += count_keys(json_object_array_get_idx(o, i));
    }
    return n;
}

static json_object *tokenize(const char *buf, size_t len, odm_err *e)
{
    json_tokener *tok = json_tokener_new_ex(ODM_JSON_DEPTH);
    if (tok == NULL) {
        odm_err_set(e, "out of memory");
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    /* len + 1: the NUL tells json-c the input ended (a bare number would
     * otherwise be "continue") and stops at an embedded NUL. */
    json_object *o = json_tokener_parse_ex(tok, buf, (int)len + 1);
    enum json_tokener_error err = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (o == NULL || err != json_tokener_success) {
        odm_err_set(e, "malformed JSON: %s", json_tokener_error_desc(err));
        json_object_put(o);
        return NULL;
    }
    while (end < len && is_json_space(buf[end]))
        end++;
    if (end < len) {
        odm_err_set(e, "unexpected data after the JSON value at byte %zu", end);
        json_object_put(o);
        return NULL;
    }
    return o;
}

json_object *odm_parse_object(const char *buf, size_t len, odm_err *e)
{
    if (len > (size_t)INT32_MAX - 1) {
        odm_err_set(e, "body too large");
        return NULL;
    }
    json_object *o = tokenize(buf, len, e);
    if (o == NULL)
        return NULL;
    size_t text_keys = 0;
    if (lex_check(buf, len, &text_keys, e) != OD_OK)
        goto fail;
    if (!json_object_is_type(o, json_type_object)) {
        odm_err_set(e, "body must be a JSON object");
        goto fail;
    }
    if (text_keys != count_keys(o)) {
        odm_err_set(e, "duplicate key in object");
        goto fail;
    }
    return o;
fail:
    json_object_put(o);
    return NULL;
}

json_object *odm_body_object(const od_host_api *h, od_request *req)
{
    size_t len = 0;
    const char *body = h->req_body(req, &len);
    odm_err e = {{0}};
    json_object *o = odm_parse_object(body, len, &e);
    if (o == NULL)
        h->reply_error(req, 400, "invalid_json", e.msg);
    return o;
}

od_status odm_only_fields(json_object *obj, const char *const *allowed, odm_err *e)
{
    json_object_object_foreach(obj, key, val) {
        (void)val;
        size_t i = 0;
        while (allowed[i] != NULL && strcmp(allowed[i], key) != 0)
            i++;
        if (allowed[i] == NULL) {
            odm_err_set(e, "unknown field '%.64s'", key);
            return OD_ERR_INVALID;
        }
    }
    return OD_OK;
}

/* The member, or NULL when absent or null (both mean "not given"). */
static json_object *member(json_object *obj, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(obj, key, &v))
        return NULL;
    return v;
}

static od_status missing(const char *key, int required, odm_err *e)
{
    if (!required)
        return OD_OK;
    odm_err_set(e, "field '%s' is required", key);
    return OD_ERR_INVALID;
}

od_status odm_get_string(json_object *obj, const char *key, int required, size_t min_chars,
                         size_t max_chars, const char **out, odm_err *e)
{
    json_object *v = member(obj, key);
    *out = NULL;
    if (v == NULL)
        return missing(key, required, e);
    if (!json_object_is_type(v, json_type_string)) {
        odm_err_set(e, "field '%s' must be a string", key);
        return OD_ERR_INVALID;
    }
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    size_t chars = odm_utf8_len(s, len);
    if (memchr(s, '\0', len) != NULL || chars == SIZE_MAX) {
        odm_err_set(e, "field '%s' must be valid UTF-8 without NUL characters", key);
        return OD_ERR_INVALID;
    }
    if (chars < min_chars) {
        if (min_chars == 1)
            odm_err_set(e, "field '%s' must not be empty", key);
        else
            odm_err_set(e, "field '%s' must be at least %zu characters", key, min_chars);
        return OD_ERR_INVALID;
    }
    if (chars > max_chars) {
        odm_err_set(e, "field '%s' must be at most %zu characters", key, max_chars);
        return OD_ERR_INVALID;
    }
    *out = s;
    return OD_OK;
}

od_status odm_get_int(json_object *obj, const char *key, int required, int64_t min, int64_t max,
                      int64_t *out, odm_err *e)
{
    json_object *v = member(obj, key);
    if (v == NULL)
        return missing(key, required, e);
    /* Doubles are refused even when integral (19.0): json-c would truncate
     * 19.99 to 19. Integers beyond int64 never get here (lex_check). */
    if (!json_object_is_type(v, json_type_int)) {
        odm_err_set(e, "field '%s' must be an integer", key);
        return OD_ERR_INVALID;
    }
    int64_t n = json_object_get_int64(v);
    if (n < min || n > max) {
        odm_err_set(e, "field '%s' must be between %lld and %lld", key, (long long)min,
                    (long long)max);
        return OD_ERR_INVALID;
    }
    *out = n;
    return OD_OK;
}

od_status odm_get_bool(json_object *obj, const char *key, int required, int *out, odm_err *e)
{
    json_object *v = member(obj, key);
    if (v == NULL)
        return missing(key, required, e);
    if (!json_object_is_type(v, json_type_boolean)) {
        odm_err_set(e, "field '%s' must be true or false", key);
        return OD_ERR_INVALID;
    }
    *out = json_object_get_boolean(v) ? 1 : 0;
    return OD_OK;
}

static const char *serialize(json_object *o, size_t *len)
{
    return json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, len);
}

od_status odm_reply_json(const od_host_api *h, od_request *req, int status, const char *message,
                         json_object *data)
{
    if (data == NULL)
        return h->reply(req, status, message, NULL, 0);
    size_t len = 0;
    const char *text = serialize(data, &len);
    if (text == NULL)
        return OD_ERR_NOMEM;
    return h->reply(req, status, message, text, len);
}

od_status odm_reply_list(const od_host_api *h, od_request *req, json_object *items,
                         const char *next_cursor)
{
    size_t len = 0;
    const char *text = serialize(items, &len);
    if (text == NULL)
        return OD_ERR_NOMEM;
    return h->reply_list(req, 200, "OK", text, len, next_cursor);
}
