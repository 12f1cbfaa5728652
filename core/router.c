/*
 * router.c - method + path matching for the core's single HTTP entry point.
 *
 * Patterns are "/seg/seg/..." where a segment is a literal or ":name". The
 * request path arrives raw (CivetWeb runs with decode_url=no), so each
 * segment is %-decoded on its own: "/api/products/name/a%2Fb" gives the
 * parameter "a/b". Rules, all deliberate:
 *   - case-sensitive; a literal segment beats a parameter at the first
 *     position where two matching patterns differ (/users/me before /users/:id);
 *   - empty segments never match: "/api/users/" and "//x" are 404 (no
 *     trailing-slash redirect: clients of a JSON API should use the exact URL);
 *   - a bad %-escape or an escape decoding to NUL anywhere in the path -> 400;
 *   - path known but not for this method -> 405 with the Allow list.
 * Matching compares the path against every route of the same segment count:
 * O(routes x segments), cheap for the few dozen routes orderd registers.
 *
 * Reads no config key, owns no thread. Built on the main thread; after the
 * server starts the router is read-only, so matching takes no lock.
 */
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define MAX_SEGMENTS 32
#define DECODE_STACK 2048

typedef struct segment {
    char *text;   /* literal text, or the parameter name without ':' */
    int is_param;
} segment;

typedef struct route_entry {
    od_route route;   /* first: od_route_match.route points here */
    char *method;
    char *pattern;
    char *module;
    size_t n_segs;
    segment segs[MAX_SEGMENTS];
} route_entry;

struct od_router {
    route_entry **routes; /* pointers, so od_route addresses stay stable */
    size_t n, cap;
};

/* The methods a route may have (host.h), in Allow-header order. HEAD is
 * served by GET routes and OPTIONS by the core (CORS), so neither is here. */
static const char *const known_methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
#define N_METHODS (sizeof known_methods / sizeof known_methods[0])

od_router *od_router_new(void)
{
    return calloc(1, sizeof(od_router));
}

static void route_entry_free(route_entry *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n_segs; i++)
        free(e->segs[i].text);
    free(e->method);
    free(e->pattern);
    free(e->module);
    free(e);
}

void od_router_free(od_router *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        route_entry_free(r->routes[i]);
    free(r->routes);
    free(r);
}

static int method_index(const char *method)
{
    for (size_t i = 0; i < N_METHODS; i++)
        if (strcmp(method, known_methods[i]) == 0)
            return (int)i;
    return -1;
}

/* RFC 3986 pchar minus '%' (a pattern is stored decoded, so it holds no escapes). */
static int is_literal_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("-._~!$&'()*+,;=@", c) != NULL;
}

static int is_valid_literal(const char *s, size_t n)
{
    if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return 0; /* dot segments never reach us intact */
    for (size_t i = 0; i < n; i++)
        if (!is_literal_char((unsigned char)s[i]))
            return 0;
    return 1;
}

static int is_ident_char(char c, int first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (!first && c >= '0' && c <= '9');
}

/* [A-Za-z_][A-Za-z0-9_]{0,31} */
static int is_valid_param_name(const char *s, size_t n)
{
    if (n == 0 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_ident_char(s[i], i == 0))
            return 0;
    return 1;
}

/* Split and validate a pattern into e->segs. "/" has zero segments. */
static od_status parse_pattern(route_entry *e, const char *pattern)
{
    if (pattern[0] != '/')
        return OD_ERR_INVALID;
    if (pattern[1] == '\0')
        return OD_OK;
    size_t n_params = 0;
    const char *p = pattern + 1;
    for (;;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || e->n_segs == MAX_SEGMENTS)
            return OD_ERR_INVALID; /* empty segment, "//" or trailing slash; too deep */
        int is_param = p[0] == ':';
        const char *text = p + is_param;
        size_t tlen = n - (size_t)is_param;
        if (is_param ? !is_valid_param_name(text, tlen) : !is_valid_literal(text, tlen))
            return OD_ERR_INVALID;
        if (is_param) {
            if (++n_params > OD_MAX_PARAMS)
                return OD_ERR_INVALID;
            for (size_t i = 0; i < e->n_segs; i++)
                if (e->segs[i].is_param && strlen(e->segs[i].text) == tlen &&
                    memcmp(e->segs[i].text, text, tlen) == 0)
                    return OD_ERR_INVALID; /* duplicate parameter name */
        }
        segment *s = &e->segs[e->n_segs];
        s->text = strndup(text, tlen);
        if (!s->text)
            return OD_ERR_NOMEM;
        s->is_param = is_param;
        e->n_segs++;
        if (p[n] == '\0')
            return OD_OK;
        p += n + 1;
    }
}

/* Same method and same shape: "/a/:x" and "/a/:y" could never be told apart. */
static int same_shape(const route_entry *a, const route_entry *b)
{
    if (strcmp(a->method, b->method) != 0 || a->n_segs != b->n_segs)
        return 0;
    for (size_t i = 0; i < a->n_segs; i++) {
        if (a->segs[i].is_param != b->segs[i].is_param)
            return 0;
        if (!a->segs[i].is_param && strcmp(a->segs[i].text, b->segs[i].text) != 0)
            return 0;
    }
    return 1;
}

static od_status append_route(od_router *r, route_entry *e)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        route_entry **grown = realloc(r->routes, cap * sizeof *grown);
        if (!grown)
            return OD_ERR_NOMEM;
        r->routes = grown;
        r->cap = cap;
    }
    r->routes[r->n++] = e;
    return OD_OK;
}

od_status od_router_add(od_router *r, const char *method, const char *pattern, uint32_t access,
                        od_handler_fn fn, void *const *self_slot, const char *module)
{
    if (!r || !method || !pattern || !fn || method_index(method) < 0 || access > OD_ACCESS_ADMIN)
        return OD_ERR_INVALID;
    route_entry *e = calloc(1, sizeof *e);
    if (!e)
        return OD_ERR_NOMEM;
    od_status st = parse_pattern(e, pattern);
    if (st == OD_OK) {
        e->method = strdup(method);
        e->pattern = strdup(pattern);
        e->module = strdup(module ? module : "core");
        if (!e->method || !e->pattern || !e->module)
            st = OD_ERR_NOMEM;
    }
    for (size_t i = 0; st == OD_OK && i < r->n; i++)
        if (same_shape(r->routes[i], e))
            st = OD_ERR_EXISTS;
    if (st == OD_OK) {
        e->route = (od_route){.method = e->method, .pattern = e->pattern, .access = access,
                              .fn = fn, .self_slot = self_slot, .module = e->module};
        st = append_route(r, e);
    }
    if (st != OD_OK)
        route_entry_free(e);
    return st;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode src[0..n) into dst (room for n + 1). -1 on a bad escape or a NUL. */
static int decode_segment(const char *src, size_t n, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '%') {
            int hi = i + 2 < n ? hex_value(src[i + 1]) : -1;
            int lo = i + 2 < n ? hex_value(src[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        dst[o++] = c;
    }
    dst[o] = '\0';
    return 0;
}

typedef struct split_path {
    size_t n;
    const char *seg[MAX_SEGMENTS]; /* decoded, NUL-terminated, inside buf */
    char *buf;
    char stack[DECODE_STACK];
} split_path;

/* 0 ok, 404 for a shape no route can have, 400 for a bad escape. */
static int split_and_decode(split_path *sp, const char *path)
{
    size_t len = strlen(path);
    sp->n = 0;
    sp->buf = len < sizeof sp->stack ? sp->stack : malloc(len + 1);
    if (!sp->buf)
        return 500;
    if (path[0] != '/')
        return 404;
    if (path[1] == '\0')
        return 0;
    int empty_segment = 0;
    char *out = sp->buf;
    const char *p = path + 1;
    for (;;) {
        size_t n = strcspn(p, "/");
        if (n == 0)
            empty_segment = 1; /* keep going: a bad escape later still means 400 */
        if (decode_segment(p, n, out) < 0)
            return 400;
        if (sp->n < MAX_SEGMENTS)
            sp->seg[sp->n] = out;
        sp->n++;
        out += strlen(out) + 1;
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
    return empty_segment || sp->n > MAX_SEGMENTS ? 404 : 0;
}

static int route_matches(const route_entry *e, const split_path *sp)
{
    if (e->n_segs != sp->n)
        return 0;
    for (size_t i = 0; i < sp->n; i++)
        if (!e->segs[i].is_param && strcmp(e->segs[i].text, sp->seg[i]) != 0)
            return 0;
    return 1;
}

/* 1 when a is more specific than b: a literal at the first differing segment. */
static int more_specific(const route_entry *a, const route_entry *b)
{
    for (size_t i = 0; i < a->n_segs; i++)
        if (a->segs[i].is_param != b->segs[i].is_param)
            return !a->segs[i].is_param;
    return 0;
}

static void build_allow(char *out, size_t cap, unsigned methods)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < N_METHODS; i++) {
        if (!(methods & (1u << i)))
            continue;
        size_t need = strlen(known_methods[i]) + (len ? 2 : 0);
        if (len + need + 1 > cap)
            break;
        if (len) {
            memcpy(out + len, ", ", 2);
            len += 2;
        }
        strcpy(out + len, known_methods[i]);
        len += strlen(known_methods[i]);
    }
}

static int fill_params(od_route_match *m, const route_entry *e, const split_path *sp)
{
    for (size_t i = 0; i < e->n_segs; i++) {
        if (!e->segs[i].is_param)
            continue;
        char *v = strdup(sp->seg[i]);
        if (!v)
            return 500;
        m->param_names[m->n_params] = e->segs[i].text;
        m->param_values[m->n_params++] = v;
    }
    return 200;
}

/* Besides core.h's 200/404/405/400: 500 when a parameter copy fails (OOM). */
int od_router_match(const od_router *r, const char *method, const char *path, od_route_match *m)
{
    memset(m, 0, sizeof *m);
    split_path sp;
    int rc = split_and_decode(&sp, path);
    if (rc == 0) {
        const route_entry *best = NULL;
        unsigned allowed = 0;
        for (size_t i = 0; i < r->n; i++) {
            const route_entry *e = r->routes[i];
            if (!route_matches(e, &sp))
                continue;
            allowed |= 1u << method_index(e->method);
            if (strcmp(e->method, method) == 0 && (!best || more_specific(e, best)))
                best = e;
        }
        if (best) {
            m->route = &best->route;
            rc = fill_params(m, best, &sp);
        } else if (allowed) {
            build_allow(m->allow, sizeof m->allow, allowed);
            rc = 405;
        } else {
            rc = 404;
        }
    }
    if (sp.buf != sp.stack)
        free(sp.buf);
    if (rc == 500)
        od_route_match_clear(m);
    return rc;
}

void od_route_match_clear(od_route_match *m)
{
    for (size_t i = 0; i < m->n_params; i++)
        free(m->param_values[i]);
    m->n_params = 0;
    m->route = NULL;
}
