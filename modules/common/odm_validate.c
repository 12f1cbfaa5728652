/*
 * odm_validate.c - validation of client strings: UTF-8, e-mail addresses,
 * pagination parameters, ids; and the one timestamp format we store.
 */
#include "odm.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define EMAIL_LOCAL_MAX 64
#define EMAIL_LABEL_MAX 63

/* Length of the UTF-8 sequence that starts with byte b, 0 if b cannot start one. */
static size_t utf8_seq_len(unsigned char b)
{
    if (b < 0x80)
        return 1;
    if (b >= 0xc2 && b <= 0xdf)
        return 2;
    if (b >= 0xe0 && b <= 0xef)
        return 3;
    if (b >= 0xf0 && b <= 0xf4)
        return 4;
    return 0;
}

/* Rejects overlong forms, surrogates and code points above U+10FFFF. */
static int utf8_seq_valid(const unsigned char *p, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if (n == 3 && p[0] == 0xe0 && p[1] < 0xa0)
        return 0;
    if (n == 3 && p[0] == 0xed && p[1] > 0x9f)
        return 0;
    if (n == 4 && p[0] == 0xf0 && p[1] < 0x90)
        return 0;
    if (n == 4 && p[0] == 0xf4 && p[1] > 0x8f)
        return 0;
    return 1;
}

size_t odm_utf8_len(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t chars = 0;
    for (size_t i = 0; i < len; chars++) {
        size_t n = utf8_seq_len(p[i]);
        if (n == 0 || n > len - i || !utf8_seq_valid(p + i, n))
            return SIZE_MAX;
        i += n;
    }
    return chars;
}

static int is_atext(char c)
{
    return isalnum((unsigned char)c) || (c != '\0' && strchr("!#$%&'*+/=?^_`{|}~-", c) != NULL);
}

/* Dot-atom: atoms of atext separated by single dots. */
static int local_part_valid(const char *s, size_t len)
{
    if (len == 0 || len > EMAIL_LOCAL_MAX || s[0] == '.' || s[len - 1] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '.' ? s[i + 1] == '.' : !is_atext(s[i]))
            return 0;
    }
    return 1;
}

/* Host name labels of letters, digits and inner hyphens; at least two labels. */
static int domain_valid(const char *s, size_t len)
{
    size_t label = 0, labels = 1;
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
            labels++;
        } else if (isalnum((unsigned char)c) || (c == '-' && label > 0)) {
            if (++label > EMAIL_LABEL_MAX)
                return 0;
        } else {
            return 0;
        }
    }
    return label > 0 && s[len - 1] != '-' && labels >= 2;
}

od_status odm_email_normalize(const char *in, char *out)
{
    size_t len = strlen(in);
    const char *at = strrchr(in, '@');
    if (len > ODM_EMAIL_MAX || at == NULL)
        return OD_ERR_INVALID;
    size_t local = (size_t)(at - in);
    if (!local_part_valid(in, local) || !domain_valid(at + 1, len - local - 1))
        return OD_ERR_INVALID;
    for (size_t i = 0; i <= len; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    return OD_OK;
}

static od_status parse_limit(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    size_t n = strlen(s);
    /* Digits only: strtoul would take "-1", " 5", "5x" prefixes and "1e2" as 1. */
    if (n == 0 || n > 3)
        return OD_ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return OD_ERR_INVALID;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    if (v < 1 || v > ODM_LIMIT_MAX)
        return OD_ERR_INVALID;
    *out = v;
    return OD_OK;
}

static int printable_ascii(const char *s)
{
    for (; *s != '\0'; s++)
        if (*s < 0x21 || *s > 0x7e)
            return 0;
    return 1;
}

od_status odm_page_params(const od_host_api *h, od_request *req, odm_page_req *out, odm_err *e)
{
    const char *limit = h->req_query(req, "limit");
    const char *cursor = h->req_query(req, "cursor");
    out->limit = ODM_LIMIT_DEFAULT;
    out->cursor = NULL;
    if (limit != NULL && parse_limit(limit, &out->limit) != OD_OK) {
        odm_err_set(e, "query parameter 'limit' must be an integer between 1 and %d",
                    ODM_LIMIT_MAX);
        return OD_ERR_INVALID;
    }
    if (cursor != NULL) {
        if (cursor[0] == '\0' || strlen(cursor) > OD_CURSOR_MAX || !printable_ascii(cursor)) {
            odm_err_set(e, "query parameter 'cursor' is not a valid cursor");
            return OD_ERR_INVALID;
        }
        out->cursor = cursor;
    }
    return OD_OK;
}

void odm_iso8601(int64_t ms, char *out)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, ODM_TIME_LEN + 1, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, ODM_TIME_LEN + 1 - n, ".%03dZ", (int)(ms % 1000));
}

int64_t odm_iso8601_parse(const char *s)
{
    struct tm tm = {0};
    int ms = 0, used = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &used) != 7 ||
        used == 0 || s[used] != '\0')
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? -1 : (int64_t)t * 1000 + ms;
}

int odm_is_uuid(const char *s)
{
    static const char dash_at[] = {8, 13, 18, 23};
    if (strlen(s) != OD_UUID_STR_LEN)
        return 0;
    for (size_t i = 0, d = 0; i < OD_UUID_STR_LEN; i++) {
        if (d < sizeof dash_at && (size_t)dash_at[d] == i) {
            if (s[i] != '-')
                return 0;
            d++;
        } else if (!isdigit((unsigned char)s[i]) && (s[i] < 'a' || s[i] > 'f')) {
            return 0;
        }
    }
    return 1;
}
