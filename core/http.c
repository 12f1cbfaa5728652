/*
 * http.c - the CivetWeb glue: every request enters through begin_request,
 * is routed by od_router, authenticated, has its body read under a cap, runs
 * its handler and is answered with ONE mg_write (status line, headers and
 * body from one buffer: per-line writes hit the 40 ms Nagle/delayed-ACK
 * stall). Also: X-Request-Id, CORS, the JSON envelopes, the access log,
 * per-request metrics, the built-in routes GET / and /health and /metrics,
 * and draining on shutdown (mg_stop alone drops in-flight responses).
 *
 * Config: none read directly; main passes server.{listen, threads,
 * max_body_bytes, request_timeout_ms, keep_alive_timeout_ms, cors_origin}
 * in od_http_config. Threads: CivetWeb's master and `threads` workers; each
 * request lives on one worker. Shared state is read-only after start except
 * core->stopping / core->in_flight (atomics) and the metrics (lock-free).
 *
 * Per-request memory comes from an arena whose first 8 KiB live in the
 * request struct on the worker's stack, so a typical authenticated read
 * allocates nothing but the router's parameter copies.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <civetweb.h>
#include <openssl/rand.h>

#include "core.h"

#define LOG_MOD "http"
#define ARENA_INLINE 8192
#define ARENA_CHUNK 16384
#define MAX_TOKEN 8192
#define MAX_QUERY_PARAMS 64
#define REQUEST_ID_MAX 128

/* Written on the main thread before mg_start2, read-only for the workers. */
struct od_http {
    od_core *core;
    struct mg_context *ctx;
    char *cors_origin;     /* NULL when CORS is off */
    int port;
    void *self;            /* = this; the built-in routes' self_slot points here */
    /* Until mg_start2 returns, CivetWeb logs from the main thread only: the
     * first message (e.g. the bind error) is kept for the start failure line. */
    atomic_int running;
    char start_error[200];
    /* When the newest request began (monotonic us): the drain waits for a
     * quiet spell so a request CivetWeb accepted just before SIGTERM is
     * answered (503 + close) instead of being cut off by mg_stop. Written
     * only while stopping, so the request path pays nothing for it. */
    atomic_llong last_begin_us;
};

#define DRAIN_QUIET_US (200 * 1000)

typedef struct arena_chunk {
    struct arena_chunk *next;
    _Alignas(max_align_t) unsigned char data[];
} arena_chunk;

typedef struct query_param {
    const char *name, *value;
} query_param;

/* One per request, on the worker's stack; only that worker touches it. */
struct od_request {
    od_http *http;
    struct mg_connection *conn;
    const struct mg_request_info *ri;
    const char *path;              /* raw, without the query */
    od_route_match match;
    const od_principal *principal; /* NULL on public routes */
    od_principal principal_buf;
    char id[REQUEST_ID_MAX + 1];

    const char *body;
    size_t body_len;
    int body_pending;              /* a body is on the wire and not read */

    query_param *query;
    size_t n_query;

    char *headers;                 /* extra "Name: value\r\n" lines, arena */
    size_t headers_len, headers_cap;

    int replied, status, must_close;
    size_t bytes_out;              /* body bytes sent, for the access log */

    unsigned char *arena_cur;
    size_t arena_left;
    arena_chunk *chunks;
    _Alignas(max_align_t) unsigned char arena_inline[ARENA_INLINE];
};

/* ---- small helpers ----------------------------------------------------- */

static int64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *arena_alloc(od_request *r, size_t n)
{
    if (n > SIZE_MAX - 64)
        return NULL;
    n = (n + 15) & ~(size_t)15;
    if (n <= r->arena_left) {
        void *p = r->arena_cur;
        r->arena_cur += n;
        r->arena_left -= n;
        return p;
    }
    size_t cap = n > ARENA_CHUNK / 2 ? n : ARENA_CHUNK;
    arena_chunk *c = malloc(sizeof *c + cap);
    if (!c)
        return NULL;
    c->next = r->chunks;
    r->chunks = c;
    if (cap > n) { /* a fresh general chunk becomes the current one */
        r->arena_cur = c->data + n;
        r->arena_left = cap - n;
    }
    return c->data;
}

static void arena_free(od_request *r)
{
    for (arena_chunk *c = r->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    r->chunks = NULL;
}

/* Length of s once JSON-escaped (without quotes). */
static size_t json_escaped_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t')
            n += 2;
        else if (c < 0x20 || c == 0x7f)
            n += 6;
        else
            n += 1;
    }
    return n;
}

/* Escape s into dst (room for json_escaped_len(s)); returns the end. */
static char *json_escape(char *dst, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            *dst++ = '\\';
            *dst++ = (char)c;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            *dst++ = '\\';
            *dst++ = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(dst, "\\u00", 4);
            dst[4] = hex[c >> 4];
            dst[5] = hex[c & 15];
            dst += 6;
        } else {
            *dst++ = (char)c;
        }
    }
    return dst;
}

static const char *error_code_for(int status)
{
    switch (status) {
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 409: return "conflict";
    case 413: return "payload_too_large";
    case 429: return "rate_limited";
    case 503: return "unavailable";
    default: return status >= 500 ? "internal" : "validation_failed";
    }
}

/* Like CivetWeb's header_has_option(): is `option` one of the comma list? */
static int header_has_token(const char *header, const char *option)
{
    size_t olen = strlen(option);
    for (const char *p = header; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        size_t t = n;
        while (t > 0 && (p[t - 1] == ' ' || p[t - 1] == '\t'))
            t--;
        if (t == olen && strncasecmp(p, option, olen) == 0)
            return 1;
        p += n;
    }
    return 0;
}

/* Mirrors CivetWeb's should_keep_alive(), so our Connection header always
 * says what CivetWeb will do; anything doubtful closes. 401 is in the list
 * because CivetWeb closes after a 401 whatever we say. */
static int keep_alive(const od_request *r)
{
    if (r->must_close || r->body_pending || r->status == 401 ||
        atomic_load(&r->http->core->stopping))
        return 0;
    const char *conn = mg_get_header(r->conn, "Connection");
    if (conn)
        return header_has_token(conn, "keep-alive");
    return r->ri->http_version && strcmp(r->ri->http_version, "1.1") == 0;
}

/* ---- response ---------------------------------------------------------- */

static od_status add_header_line(od_request *r, const char *name, const char *value)
{
    size_t need = strlen(name) + strlen(value) + 5; /* ": ", CRLF, sprintf's NUL */
    if (r->headers_len + need > r->headers_cap) {
        size_t cap = r->headers_cap ? r->headers_cap * 2 : 256;
        while (cap < r->headers_len + need)
            cap *= 2;
        char *grown = arena_alloc(r, cap);
        if (!grown)
            return OD_ERR_NOMEM;
        if (r->headers_len)
            memcpy(grown, r->headers, r->headers_len);
        r->headers = grown;
        r->headers_cap = cap;
    }
    r->headers_len += (size_t)sprintf(r->headers + r->headers_len, "%s: %s\r\n", name, value);
    return OD_OK;
}

static void add_cors_headers(od_request *r)
{
    if (!r->http->cors_origin)
        return;
    add_header_line(r, "Access-Control-Allow-Origin", r->http->cors_origin);
    add_header_line(r, "Access-Control-Expose-Headers", "X-Request-Id");
    if (strcmp(r->http->cors_origin, "*") != 0)
        add_header_line(r, "Vary", "Origin");
}

/* Appenders for the response, which is built on every request: printf's
 * format parsing was ~8% of a GET /api/users/me profile. The caller has
 * sized the buffer. */
static char *put_mem(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static char *put_str(char *p, const char *s)
{
    return put_mem(p, s, strlen(s));
}

static char *put_uint(char *p, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = digits[--n];
    return p;
}

/* The fixed text of the core's headers below, with room to spare. */
#define HEADERS_FIXED 256

/* Status line + headers + body in one buffer, one mg_write. HEAD gets the
 * headers only; 204 and 304 carry no body at all. */
static void send_response(od_request *r, int status, const char *content_type, const char *body,
                          size_t body_len)
{
    int no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    int head = strcmp(r->ri->request_method, "HEAD") == 0;
    r->status = status;
    add_cors_headers(r);
    if (r->must_close || r->body_pending)
        mg_disable_connection_keep_alive(r->conn);

    const char *reason = mg_get_response_code_text(r->conn, status);
    reason = reason ? reason : "";
    size_t cap = HEADERS_FIXED + strlen(reason) + strlen(r->id) + strlen(content_type) +
                 r->headers_len + (no_body || head ? 0 : body_len);
    char *out = arena_alloc(r, cap);
    if (!out) { /* nothing can be sent: close, so the client is not left waiting */
        od_logf(LOG_MOD, OD_LOG_ERROR, "request %s: out of memory for the response", r->id);
        r->must_close = 1;
        mg_disable_connection_keep_alive(r->conn);
        return;
    }
    char *p = put_str(out, "HTTP/1.1 ");
    p = put_uint(p, (uint64_t)status);
    *p++ = ' ';
    p = put_str(p, reason);
    p = put_str(p, keep_alive(r) ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n");
    p = put_str(p, "X-Request-Id: ");
    p = put_str(p, r->id);
    p = put_str(p, "\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n");
    if (!no_body) {
        p = put_str(p, "Content-Type: ");
        p = put_str(p, content_type);
        p = put_str(p, "\r\nContent-Length: ");
        p = put_uint(p, body_len);
        p = put_str(p, "\r\n");
    }
    if (r->headers_len) /* r->headers is NULL until a header is added */
        p = put_mem(p, r->headers, r->headers_len);
    p = put_str(p, "\r\n");
    if (!no_body && !head)
        p = put_mem(p, body, body_len);
    size_t len = (size_t)(p - out);
    if (mg_write(r->conn, out, len) != (int)len) {
        r->must_close = 1; /* the client left; nothing else to do */
        od_logf(LOG_MOD, OD_LOG_DEBUG, "request %s: response write failed", r->id);
    }
    r->bytes_out = no_body || head ? 0 : body_len;
}

/* {"statusCode":N,"message":"...","<key1>":<raw1>[,"next":...]}: key1 is
 * "data" or "error", raw1 its value as JSON text (trusted, not re-parsed). */
static od_status send_envelope(od_request *r, int status, const char *message, const char *key1,
                               const char *raw1, size_t raw1_len, const char *next_cursor,
                               int next_present)
{
    if (r->replied) {
        od_logf(LOG_MOD, OD_LOG_ERROR, "request %s (%s): second reply ignored", r->id, r->path);
        return OD_ERR_INVALID;
    }
    if (status < 100 || status > 599)
        return OD_ERR_INVALID;
    message = message ? message : "";
    size_t cap = 64 + json_escaped_len(message) + strlen(key1) + raw1_len +
                 (next_present ? 16 + (next_cursor ? json_escaped_len(next_cursor) : 0) : 0);
    char *body = arena_alloc(r, cap);
    if (!body)
        return OD_ERR_NOMEM;
    char *p = put_str(body, "{\"statusCode\":");
    p = put_uint(p, (uint64_t)status);
    p = put_str(p, ",\"message\":\"");
    p = json_escape(p, message);
    p = put_str(p, "\",\"");
    p = put_str(p, key1);
    p = put_str(p, "\":");
    p = put_mem(p, raw1, raw1_len);
    if (next_present) {
        p = put_str(p, ",\"next\":");
        if (next_cursor) {
            *p++ = '"';
            p = json_escape(p, next_cursor);
            *p++ = '"';
        } else {
            p = put_str(p, "null");
        }
    }
    *p++ = '}';
    r->replied = 1;
    send_response(r, status, "application/json", body, (size_t)(p - body));
    return OD_OK;
}

static od_status reply_error(od_request *r, int status, const char *code, const char *message)
{
    if (!code)
        return OD_ERR_INVALID;
    size_t elen = json_escaped_len(code);
    char *quoted = arena_alloc(r, elen + 3);
    if (!quoted)
        return OD_ERR_NOMEM;
    quoted[0] = '"';
    char *end = json_escape(quoted + 1, code);
    *end++ = '"';
    return send_envelope(r, status, message, "error", quoted, (size_t)(end - quoted), NULL, 0);
}

/* data_json NULL or empty -> "data":null (an empty value would be invalid JSON). */
static od_status reply(od_request *r, int status, const char *message, const char *data_json,
                       size_t len)
{
    if (!data_json || len == 0)
        return send_envelope(r, status, message, "data", "null", 4, NULL, 0);
    return send_envelope(r, status, message, "data", data_json, len, NULL, 0);
}

static od_status reply_list(od_request *r, int status, const char *message, const char *items_json,
                            size_t len, const char *next_cursor)
{
    if (!items_json || len == 0)
        return send_envelope(r, status, message, "data", "[]", 2, next_cursor, 1);
    return send_envelope(r, status, message, "data", items_json, len, next_cursor, 1);
}

static int is_token_char(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static od_status reply_header(od_request *r, const char *name, const char *value)
{
    static const char *const reserved[] = {"Content-Length", "Content-Type", "Connection",
                                           "Transfer-Encoding", "X-Request-Id"};
    if (r->replied || !name || !value || !*name)
        return OD_ERR_INVALID;
    for (const char *p = name; *p; p++)
        if (!is_token_char((unsigned char)*p))
            return OD_ERR_INVALID;
    for (const char *p = value; *p; p++)
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
            return OD_ERR_INVALID; /* CR/LF would split the response */
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strcasecmp(name, reserved[i]) == 0)
            return OD_ERR_INVALID;
    return add_header_line(r, name, value);
}

/* An error from the core itself (before or instead of the handler). */
static int fail(od_request *r, int status, const char *message)
{
    reply_error(r, status, error_code_for(status), message);
    return status;
}

/* ---- request accessors (host API) -------------------------------------- */

static const char *req_method(od_request *r) { return r->ri->request_method; }
static const char *req_path(od_request *r) { return r->path; }
static const char *req_client(od_request *r) { return r->ri->remote_addr; }
static const char *req_id(od_request *r) { return r->id; }
static const od_principal *req_principal(od_request *r) { return r->principal; }
static void *req_alloc(od_request *r, size_t n) { return arena_alloc(r, n); }

static const char *req_header(od_request *r, const char *name)
{
    return name ? mg_get_header(r->conn, name) : NULL;
}

static const char *req_param(od_request *r, const char *name)
{
    for (size_t i = 0; name && i < r->match.n_params; i++)
        if (strcmp(r->match.param_names[i], name) == 0)
            return r->match.param_values[i];
    return NULL;
}

static const char *req_query(od_request *r, const char *name)
{
    for (size_t i = 0; name && i < r->n_query; i++)
        if (strcmp(r->query[i].name, name) == 0)
            return r->query[i].value;
    return NULL;
}

static const char *req_body(od_request *r, size_t *len)
{
    if (len)
        *len = r->body_len;
    return r->body ? r->body : "";
}

void od_http_fill_host_api(od_host_api *api)
{
    api->req_method = req_method;
    api->req_path = req_path;
    api->req_param = req_param;
    api->req_query = req_query;
    api->req_header = req_header;
    api->req_body = req_body;
    api->req_principal = req_principal;
    api->req_client = req_client;
    api->req_id = req_id;
    api->req_alloc = req_alloc;
    api->reply = reply;
    api->reply_list = reply_list;
    api->reply_error = reply_error;
    api->reply_header = reply_header;
}

/* ---- request pipeline steps -------------------------------------------- */

static int valid_request_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= REQUEST_ID_MAX || !(isalnum((unsigned char)s[n]) || strchr("._:-", s[n])))
            return 0;
    return n > 0;
}

/* splitmix64: a bijection of its counter, so ids from one thread never
 * repeat; each thread starts from its own random seed. Ids need to be
 * unique, not secret: RAND_bytes per request took ~9% of a request's CPU
 * (DRBG locking), this takes nanoseconds. */
static uint64_t next_id_word(void)
{
    static _Thread_local uint64_t state;
    static _Thread_local int seeded;
    if (!seeded) {
        if (RAND_bytes((unsigned char *)&state, sizeof state) != 1)
            state = (uint64_t)monotonic_us() ^ (uint64_t)(uintptr_t)&state;
        seeded = 1;
    }
    uint64_t z = (state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void assign_request_id(od_request *r)
{
    const char *given = mg_get_header(r->conn, "X-Request-Id");
    if (given && valid_request_id(given)) {
        strcpy(r->id, given);
        return;
    }
    unsigned char u[16];
    uint64_t w[2] = {next_id_word(), next_id_word()};
    memcpy(u, w, sizeof u);
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40); /* UUID version 4 */
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    static const char hex[] = "0123456789abcdef";
    char *p = r->id;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[u[i] >> 4];
        *p++ = hex[u[i] & 15];
    }
    *p = '\0';
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decode one query component ('+' is a space) into the arena; NULL on a bad
 * escape or a NUL byte. */
static char *decode_query_part(od_request *r, const char *s, size_t n)
{
    char *out = arena_alloc(r, n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = i + 2 < n ? hex_digit(s[i + 1]) : -1;
            int lo = i + 2 < n ? hex_digit(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi | lo) == 0)
                return NULL;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return out;
}

/* Parse the query string once; 0 or 400. */
static int parse_query(od_request *r)
{
    const char *q = r->ri->query_string;
    if (!q || !*q)
        return 0;
    r->query = arena_alloc(r, MAX_QUERY_PARAMS * sizeof *r->query);
    if (!r->query)
        return 500;
    while (*q) {
        size_t n = strcspn(q, "&");
        if (n > 0) {
            if (r->n_query == MAX_QUERY_PARAMS)
                return 400;
            size_t k = strcspn(q, "=&");
            query_param *qp = &r->query[r->n_query];
            qp->name = decode_query_part(r, q, k);
            qp->value = k < n ? decode_query_part(r, q + k + 1, n - k - 1) : "";
            if (!qp->name || !qp->value)
                return 400;
            r->n_query++;
        }
        q += n + (q[n] == '&');
    }
    return 0;
}

/* 0, 401, 403 or 503 (the verifier could not reach the storage it checks
 * tokens against). The token is "Bearer <t>" or, as the old system sent it,
 * the bare token. */
static int authenticate(od_request *r)
{
    const od_route *route = r->match.route;
    od_core *core = r->http->core;
    if (route->access == OD_ACCESS_PUBLIC)
        return 0;
    const char *token = mg_get_header(r->conn, "Authorization");
    if (!token)
        return 401;
    if (strncasecmp(token, "Bearer", 6) == 0 && (token[6] == ' ' || token[6] == '\0'))
        token += 6;
    while (*token == ' ')
        token++;
    size_t len = strlen(token);
    while (len > 0 && token[len - 1] == ' ')
        len--;
    if (len == 0 || len > MAX_TOKEN || !core->authenticate)
        return 401;
    char copy[MAX_TOKEN + 1]; /* the verifier gets a NUL-terminated token */
    memcpy(copy, token, len);
    copy[len] = '\0';
    r->principal_buf = (od_principal){.size = sizeof(od_principal)};
    void *auth_self = core->auth_self_slot ? *core->auth_self_slot : NULL;
    od_status st = core->authenticate(auth_self, copy, len, &r->principal_buf);
    if (st == OD_ERR_UNAVAILABLE)
        return 503;
    if (st != OD_OK)
        return 401;
    r->principal_buf.user_id[OD_ID_MAX - 1] = '\0';
    r->principal = &r->principal_buf;
    if (route->access == OD_ACCESS_ADMIN && r->principal_buf.role != OD_ROLE_ADMIN)
        return 403;
    return 0;
}

/* Read the whole body under the cap; 0, 400 or 413. mg_read() returns 0 both
 * at the end and when request_timeout_ms runs out, so a short body is only
 * caught by comparing with Content-Length. */
static int read_body(od_request *r)
{
    long long cl = r->ri->content_length;
    size_t cap = r->http->core->max_body;
    if (!r->body_pending)
        return 0;
    if (cl > 0 && (unsigned long long)cl > cap)
        return 413; /* not read: the connection closes */
    size_t want = cl >= 0 ? (size_t)cl : cap + 1; /* chunked: one byte more detects > cap */
    size_t room = cl >= 0 ? want : (cap < 16384 ? cap + 1 : 16384);
    char *buf = arena_alloc(r, room + 1);
    size_t len = 0;
    while (buf && len < want) {
        if (len == room) { /* chunked body outgrew the buffer: double it */
            size_t bigger = room * 2 < want ? room * 2 : want;
            char *grown = arena_alloc(r, bigger + 1);
            if (grown)
                memcpy(grown, buf, len);
            buf = grown;
            room = bigger;
            continue;
        }
        int n = mg_read(r->conn, buf + len, room - len);
        if (n < 0)
            return 400;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (!buf)
        return 500;
    if (cl < 0 && len > cap)
        return 413;
    if (cl >= 0 && len != (size_t)cl)
        return 400;
    buf[len] = '\0';
    r->body = buf;
    r->body_len = len;
    r->body_pending = 0;
    return 0;
}

static int has_body(const struct mg_connection *conn, const struct mg_request_info *ri)
{
    const char *te = mg_get_header(conn, "Transfer-Encoding");
    return ri->content_length > 0 || (te && header_has_token(te, "chunked"));
}

/* OPTIONS: a CORS preflight when CORS is on, otherwise an ordinary 404/405. */
static int preflight(od_request *r)
{
    int rc = od_router_match(r->http->core->router, "OPTIONS", r->path, &r->match);
    if (rc != 405)
        return fail(r, rc, rc == 404 ? "no such resource" : "bad request path");
    if (!r->http->cors_origin) {
        add_header_line(r, "Allow", r->match.allow);
        return fail(r, 405, "method not allowed");
    }
    add_header_line(r, "Access-Control-Allow-Methods", r->match.allow);
    add_header_line(r, "Access-Control-Allow-Headers", "Authorization, Content-Type, X-Request-Id");
    add_header_line(r, "Access-Control-Max-Age", "600");
    r->replied = 1;
    send_response(r, 204, "application/json", "", 0);
    return 204;
}

static int route_request(od_request *r)
{
    const char *method = r->ri->request_method;
    if (strcmp(method, "HEAD") == 0)
        method = "GET"; /* same handler; send_response drops the body */
    int rc = od_router_match(r->http->core->router, method, r->path, &r->match);
    switch (rc) {
    case 200: return 0;
    case 404: return fail(r, 404, "no such resource");
    case 405:
        add_header_line(r, "Allow", r->match.allow);
        return fail(r, 405, "method not allowed");
    case 400: return fail(r, 400, "bad %-encoding in the request path");
    default: return fail(r, 500, "internal error");
    }
}

/* Run the handler; answer for it if it did not. */
static int run_handler(od_request *r)
{
    const od_route *route = r->match.route;
    od_status st = route->fn(route->self_slot ? *route->self_slot : NULL, r);
    if (r->replied)
        return r->status;
    if (st == OD_ERR_UNAVAILABLE)
        return fail(r, 503, "service unavailable, retry later");
    od_logf(LOG_MOD, OD_LOG_ERROR, "%s %s (module %s) returned %s without replying",
            route->method, route->pattern, route->module, od_status_str(st));
    return fail(r, 500, "internal error");
}

static int handle(od_request *r)
{
    if (atomic_load(&r->http->core->stopping)) {
        r->must_close = 1;
        return fail(r, 503, "server is shutting down");
    }
    if (strcmp(r->ri->request_method, "OPTIONS") == 0)
        return preflight(r);
    if (route_request(r))
        return r->status;
    /* Authenticate first: an anonymous client learns nothing from a 400. */
    int rc = authenticate(r);
    if (rc == 401) {
        add_header_line(r, "WWW-Authenticate", "Bearer");
        return fail(r, 401, "missing or invalid token");
    }
    if (rc == 403)
        return fail(r, 403, "admin role required");
    if (rc == 503)
        return fail(r, 503, "service unavailable, retry later");
    rc = parse_query(r);
    if (rc)
        return fail(r, rc, rc == 400 ? "bad %-encoding in the query string" : "internal error");
    rc = read_body(r);
    if (rc) {
        r->must_close = 1;
        return fail(r, rc, rc == 413   ? "request body too large"
                           : rc == 400 ? "request body shorter than Content-Length"
                                       : "internal error");
    }
    return run_handler(r);
}

/* ---- access log -------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_raw(sbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (n > b->cap - b->len)
        n = b->cap - b->len;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* A quoted JSON string, at most `max` input bytes of s. */
static void sb_str(sbuf *b, const char *s, size_t max)
{
    char tmp[1024 * 6 + 3];
    char cut[1025];
    if (max > 1024)
        max = 1024;
    snprintf(cut, sizeof cut, "%.*s", (int)max, s ? s : "");
    char *end = json_escape(tmp + 1, cut);
    tmp[0] = '"';
    *end++ = '"';
    *end = '\0';
    sb_raw(b, tmp);
}

static void access_log(const od_request *r, int64_t duration_us)
{
    if (od_log_level() < OD_LOG_INFO)
        return;
    char line[8192], ts[96], num[128];
    sbuf b = {line, 0, sizeof line};
    od_log_timestamp(ts, sizeof ts);
    sb_raw(&b, "{\"ts\":\"");
    sb_raw(&b, ts);
    sb_raw(&b, "\",\"level\":\"info\",\"module\":\"access\",\"request_id\":");
    sb_str(&b, r->id, REQUEST_ID_MAX);
    sb_raw(&b, ",\"remote\":");
    sb_str(&b, r->ri->remote_addr, 64);
    sb_raw(&b, ",\"method\":");
    sb_str(&b, r->ri->request_method, 16);
    sb_raw(&b, ",\"path\":");
    sb_str(&b, r->path, 512);
    sb_raw(&b, ",\"route\":");
    if (r->match.route)
        sb_str(&b, r->match.route->pattern, 256);
    else
        sb_raw(&b, "null");
    snprintf(num, sizeof num, ",\"status\":%d,\"bytes\":%zu,\"duration_ms\":%lld.%03lld,\"user\":",
             r->status, r->bytes_out, (long long)duration_us / 1000, (long long)duration_us % 1000);
    sb_raw(&b, num);
    if (r->principal)
        sb_str(&b, r->principal->user_id, OD_ID_MAX);
    else
        sb_raw(&b, "null");
    sb_raw(&b, "}");
    od_log_json_line(line, b.len);
}

/* ---- CivetWeb callbacks ------------------------------------------------ */

static int begin_request(struct mg_connection *conn)
{
    od_http *h = mg_get_user_data(mg_get_context(conn));
    od_core *core = h->core;
    int64_t t0 = monotonic_us();
    /* Counted from the very start (before the stopping check): the drain in
     * od_http_stop waits for every request that could still write. */
    atomic_fetch_add(&core->in_flight, 1);
    if (atomic_load_explicit(&core->stopping, memory_order_relaxed))
        atomic_store(&h->last_begin_us, t0);

    od_request req; /* on the worker's stack: no allocation per request */
    od_request *r = &req;
    memset(r, 0, offsetof(od_request, arena_inline)); /* the arena needs no zeroing */
    r->http = h;
    r->conn = conn;
    r->ri = mg_get_request_info(conn);
    r->arena_cur = r->arena_inline;
    r->arena_left = sizeof r->arena_inline;
    r->path = r->ri->local_uri_raw ? r->ri->local_uri_raw : r->ri->local_uri;
    r->body_pending = has_body(conn, r->ri);
    assign_request_id(r);

    int status = r->path ? handle(r) : fail(r, 400, "bad request target");
    if (!r->replied) /* only when even the error reply failed (OOM) */
        status = 500;

    int64_t dt = monotonic_us() - t0;
    od_metrics_http(core->metrics, r->match.route ? r->match.route->pattern : NULL,
                    r->ri->request_method, status, (double)dt / 1e6);
    access_log(r, dt);
    od_route_match_clear(&r->match);
    arena_free(r);
    atomic_fetch_sub(&core->in_flight, 1);
    return status;
}

/* CivetWeb's own errors (malformed request, oversized headers...): answer in
 * our envelope instead of its text/plain page. */
static int http_error(struct mg_connection *conn, int status, const char *errmsg)
{
    (void)errmsg; /* may echo client input; the status says enough */
    if (status == 411)
        status = 400; /* CivetWeb's answer to an unparsable Content-Length: a bad request */
    const char *reason = mg_get_response_code_text(conn, status);
    char body[256], out[768];
    int blen = snprintf(body, sizeof body,
                        "{\"statusCode\":%d,\"message\":\"%s\",\"error\":\"%s\"}", status,
                        reason ? reason : "error", error_code_for(status));
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     "Connection: close\r\nCache-Control: no-store\r\n"
                     "X-Content-Type-Options: nosniff\r\n\r\n%s",
                     status, reason ? reason : "", blen, body);
    mg_disable_connection_keep_alive(conn);
    mg_write(conn, out, (size_t)n);
    const struct mg_request_info *ri = mg_get_request_info(conn);
    od_http *h = mg_get_user_data(mg_get_context(conn));
    od_metrics_http(h->core->metrics, NULL, ri && ri->request_method ? ri->request_method : "",
                    status, 0.0);
    return 0;
}

static int log_message(const struct mg_connection *conn, const char *message)
{
    const struct mg_context *ctx = conn ? mg_get_context(conn) : NULL;
    od_http *h = ctx ? mg_get_user_data(ctx) : NULL;
    if (h && !atomic_load(&h->running) && !h->start_error[0])
        snprintf(h->start_error, sizeof h->start_error, "%s", message);
    od_logf("civetweb", OD_LOG_WARN, "%s", message);
    return 1;
}

/* ---- built-in routes --------------------------------------------------- */

static const char *ping_result(od_status st) { return st == OD_OK ? "ok" : od_status_str(st); }

static size_t append_json_str(char *dst, const char *s)
{
    if (!s) {
        memcpy(dst, "null", 4);
        return 4;
    }
    dst[0] = '"';
    char *end = json_escape(dst + 1, s);
    *end++ = '"';
    return (size_t)(end - dst);
}

static od_status handle_health(void *self, od_request *r)
{
    od_http *h = self;
    od_core *core = h->core;
    od_status st_storage = core->storage.ops && core->storage.ops->ping
                               ? core->storage.ops->ping(core->storage.self) : OD_OK;
    od_status st_queue = core->queue.ops && core->queue.ops->ping
                             ? core->queue.ops->ping(core->queue.self) : OD_OK;
    int ok = st_storage == OD_OK && st_queue == OD_OK;

    size_t cap = 512 + json_escaped_len(core->storage_name ? core->storage_name : "") +
                 json_escaped_len(core->queue_name ? core->queue_name : "");
    for (size_t i = 0; i < core->n_modules; i++)
        cap += json_escaped_len(core->modules[i]->name) + 3;
    char *buf = req_alloc(r, cap);
    if (!buf)
        return OD_ERR_NOMEM;
    int64_t up = (wall_ms() - core->started_ms) / 1000;
    char *p = buf + sprintf(buf, "{\"status\":\"%s\",\"version\":\"%s\",\"uptimeSeconds\":%" PRId64
                                 ",\"modules\":[",
                            ok ? "ok" : "degraded", ORDERD_VERSION, up < 0 ? 0 : up);
    for (size_t i = 0; i < core->n_modules; i++) {
        if (i)
            *p++ = ',';
        p += append_json_str(p, core->modules[i]->name);
    }
    p += sprintf(p, "],\"storage\":");
    p += append_json_str(p, core->storage.ops ? core->storage_name : NULL);
    p += sprintf(p, ",\"queue\":");
    p += append_json_str(p, core->queue.ops ? core->queue_name : NULL);
    p += sprintf(p, ",\"checks\":{\"storage\":\"%s\",\"queue\":\"%s\"}}",
                 core->storage.ops ? ping_result(st_storage) : "none",
                 core->queue.ops ? ping_result(st_queue) : "none");
    if (ok)
        return reply(r, 200, "ok", buf, (size_t)(p - buf));
    /* Degraded: the error envelope (error "unavailable", as every 503) that
     * still carries the checks, so a load balancer and an operator both
     * see which backend is down. */
    static const char err[] = "\"unavailable\",\"data\":";
    char *raw = req_alloc(r, sizeof err + (size_t)(p - buf));
    if (!raw)
        return OD_ERR_NOMEM;
    memcpy(raw, err, sizeof err - 1);
    memcpy(raw + sizeof err - 1, buf, (size_t)(p - buf));
    return send_envelope(r, 503, "degraded: a backend is unavailable", "error", raw,
                         sizeof err - 1 + (size_t)(p - buf), NULL, 0);
}

static od_status handle_metrics(void *self, od_request *r)
{
    od_http *h = self;
    size_t len = 0;
    char *text = od_metrics_render(h->core->metrics, &len);
    if (!text)
        return OD_ERR_NOMEM;
    r->replied = 1;
    send_response(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
    return OD_OK;
}

static int64_t gauge_uptime(void *arg)
{
    const od_core *core = arg;
    return (wall_ms() - core->started_ms) / 1000;
}

static int64_t gauge_in_flight(void *arg)
{
    od_core *core = arg;
    return atomic_load(&core->in_flight);
}

static int register_builtins(od_http *h)
{
    od_core *core = h->core;
    static const struct {
        const char *pattern;
        od_handler_fn fn;
    } routes[] = {{"/", handle_health}, {"/health", handle_health}, {"/metrics", handle_metrics}};
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        od_status st = od_router_add(core->router, "GET", routes[i].pattern, OD_ACCESS_PUBLIC,
                                     routes[i].fn, &h->self, "core");
        if (st != OD_OK) {
            od_logf(LOG_MOD, OD_LOG_ERROR, "cannot register built-in route GET %s: %s",
                    routes[i].pattern, od_status_str(st));
            return -1;
        }
    }
    /* EXISTS is fine: a second server on the same core (tests) reuses them. */
    od_metrics_gauge_fn(core->metrics, "orderd_uptime_seconds", "Seconds since orderd started.",
                        NULL, gauge_uptime, core);
    od_metrics_gauge_fn(core->metrics, "orderd_http_in_flight",
                        "HTTP requests being processed.", NULL, gauge_in_flight, core);
    return 0;
}

/* ---- start / stop ------------------------------------------------------ */

/* "127.0.0.1:3000" -> "127.0.0.1"; a bare port listens everywhere. */
static void listen_host(const char *listen, char *out, size_t cap)
{
    const char *colon = strrchr(listen, ':');
    if (!colon)
        snprintf(out, cap, "0.0.0.0");
    else
        snprintf(out, cap, "%.*s", (int)(colon - listen), listen);
}

od_http *od_http_start(od_core *core, const od_http_config *cfg)
{
    od_http *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->core = core;
    h->self = h;
    if (cfg->cors_origin && *cfg->cors_origin && !(h->cors_origin = strdup(cfg->cors_origin))) {
        free(h);
        return NULL;
    }
    if (register_builtins(h) < 0) {
        free(h->cors_origin);
        free(h);
        return NULL;
    }
    char threads[16], req_to[16], ka_to[16];
    snprintf(threads, sizeof threads, "%d", cfg->threads > 0 ? cfg->threads : 32);
    snprintf(req_to, sizeof req_to, "%d", cfg->request_timeout_ms);
    snprintf(ka_to, sizeof ka_to, "%d", cfg->keep_alive_timeout_ms);
    const char *options[] = {
        "listening_ports", cfg->listen,
        "num_threads", threads,
        "request_timeout_ms", req_to,
        "enable_keep_alive", "yes",
        "keep_alive_timeout_ms", ka_to,
        "tcp_nodelay", "1",
        "decode_url", "no",
        "access_control_allow_methods", "", /* else CivetWeb answers preflights itself */
        "enable_auth_domain_check", "no",
        NULL,
    };
    struct mg_callbacks callbacks = {.begin_request = begin_request,
                                     .http_error = http_error,
                                     .log_message = log_message};
    struct mg_init_data init = {.callbacks = &callbacks, .user_data = h,
                                .configuration_options = options};
    char err[256] = "";
    unsigned code = 0;
    struct mg_error_data error = {.code = &code, .text = err, .text_buffer_size = sizeof err};
    mg_init_library(0);
    h->ctx = mg_start2(&init, &error);
    if (!h->ctx) {
        od_logf(LOG_MOD, OD_LOG_ERROR, "cannot listen on %s: %s (check server.listen)",
                cfg->listen, h->start_error[0] ? h->start_error : *err ? err : "unknown error");
        mg_exit_library();
        free(h->cors_origin);
        free(h);
        return NULL;
    }
    atomic_store(&h->running, 1);
    struct mg_server_port ports[4];
    int n = mg_get_server_ports(h->ctx, 4, ports);
    h->port = n > 0 ? ports[0].port : 0;
    char host[128];
    listen_host(cfg->listen, host, sizeof host);
    od_logf(LOG_MOD, OD_LOG_INFO, "listening on http://%s:%d", host, h->port);
    return h;
}

int od_http_port(const od_http *h)
{
    return h ? h->port : 0;
}

void od_http_stop(od_http *h, int timeout_ms)
{
    if (!h)
        return;
    od_core *core = h->core;
    atomic_store(&h->last_begin_us, monotonic_us());
    atomic_store(&core->stopping, 1);
    int64_t deadline = monotonic_us() + (int64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000;
    const struct timespec step = {0, 5 * 1000 * 1000};
    /* Done when nothing runs and no request began for DRAIN_QUIET_US: the
     * ones that arrive meanwhile get 503 + Connection: close and go away. */
    while (monotonic_us() < deadline &&
           (atomic_load(&core->in_flight) > 0 ||
            monotonic_us() - atomic_load(&h->last_begin_us) < DRAIN_QUIET_US))
        nanosleep(&step, NULL);
    long left = atomic_load(&core->in_flight);
    if (left > 0)
        od_logf(LOG_MOD, OD_LOG_WARN, "%ld request(s) still running after %d ms; stopping anyway",
                left, timeout_ms);
    mg_stop(h->ctx);
    mg_exit_library();
    free(h->cors_origin);
    free(h);
}
