/*
 * integ_fuzz: a bounded, reproducible fuzz of the two public JSON endpoints.
 * Mutated valid bodies, JSON fragments and random bytes go to POST
 * /api/users and POST /api/login; every answer must be a 2xx success or a
 * 4xx JSON error (ih_request checks the envelope), and the server must
 * still be healthy afterwards. A second test does the same with random
 * methods, paths, %-escapes and query strings. ORDERD_FUZZ_SEED and ORDERD_FUZZ_ROUNDS
 * override the fixed defaults.
 */
#include "harness.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_SEED 0x6f72646572640001ull
#define DEFAULT_ROUNDS 300
#define MAX_FUZZ_BODY 4096

static ih_server srv;
/* "Authorization: Bearer <admin token>", taken before the login fuzz can
 * trip the rate limit. Not harness-owned: it outlives ih_release(). */
static char admin_auth[2048];

static void start(void)
{
    ih_server_start(&srv, NULL);
    snprintf(admin_auth, sizeof admin_auth, "Authorization: Bearer %s",
             ih_login(&srv, IH_ADMIN_EMAIL, IH_ADMIN_PASSWORD));
}

static void stop(void)
{
    ih_server_stop(&srv);
}

typedef struct rng {
    uint64_t s;
} rng;

/* xorshift64*: small, fast and good enough to pick mutations. */
static uint64_t next(rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

static size_t below(rng *r, size_t n)
{
    return n ? (size_t)(next(r) % n) : 0;
}

static const char *const seeds[] = {
    "{\"name\":\"Fuzz\",\"email\":\"fuzz@test.local\",\"password\":\"fuzz-password-1\"}",
    "{\"email\":\"" IH_ADMIN_EMAIL "\",\"password\":\"not-the-password\"}",
    "{\"name\":[1,2,{\"a\":null}],\"email\":true,\"password\":-0.0e-7}",
    "{\"a\":{\"b\":{\"c\":[\"\\u00e9\\ud83d\\ude00\",1e308,-9223372036854775809]}}}",
};

static const char *const tokens[] = {
    "{", "}", "[", "]", "\"", ":", ",", "null", "true", "false", "1e999", "-0", "NaN",
    "\\u0000", "\\ud800", "\\", "\xff", "\xc3", "\xed\xa0\x80", "99999999999999999999999",
    "\"email\"", "\"password\"", "\"name\"", "\x00", "\t", "/*", "'",
};

typedef struct buf {
    char data[MAX_FUZZ_BODY];
    size_t len;
} buf;

static void insert(buf *b, size_t at, const char *s, size_t n)
{
    if (b->len + n > sizeof b->data)
        return;
    memmove(b->data + at + n, b->data + at, b->len - at);
    memcpy(b->data + at, s, n);
    b->len += n;
}

static void mutate_once(rng *r, buf *b)
{
    size_t at = below(r, b->len + 1);
    switch (below(r, 6)) {
    case 0: /* flip a byte */
        if (b->len)
            b->data[below(r, b->len)] ^= (char)(1u << below(r, 8));
        break;
    case 1: { /* insert a random byte */
        char c = (char)next(r);
        insert(b, at, &c, 1);
        break;
    }
    case 2: { /* delete a range */
        size_t n = below(r, b->len - at + 1);
        memmove(b->data + at, b->data + at + n, b->len - at - n);
        b->len -= n;
        break;
    }
    case 3: { /* insert a JSON-ish token; "\x00" is one NUL byte */
        const char *t = tokens[below(r, sizeof tokens / sizeof *tokens)];
        insert(b, at, t, *t ? strlen(t) : 1);
        break;
    }
    case 4: /* truncate */
        b->len = at;
        break;
    default: { /* duplicate a range */
        size_t n = below(r, b->len - at + 1);
        char tmp[MAX_FUZZ_BODY];
        memcpy(tmp, b->data + at, n);
        insert(b, at, tmp, n);
        break;
    }
    }
}

static void make_body(rng *r, buf *b)
{
    switch (below(r, 5)) {
    case 0: /* random bytes */
        b->len = below(r, 512);
        for (size_t i = 0; i < b->len; i++)
            b->data[i] = (char)next(r);
        break;
    case 1: { /* deep nesting */
        size_t depth = 1 + below(r, 2000);
        b->len = 0;
        for (size_t i = 0; i < depth && b->len < sizeof b->data; i++)
            b->data[b->len++] = below(r, 2) ? '[' : '{';
        break;
    }
    default: { /* a mutated seed */
        const char *s = seeds[below(r, sizeof seeds / sizeof *seeds)];
        b->len = strlen(s);
        memcpy(b->data, s, b->len);
        for (size_t n = 1 + below(r, 8); n > 0; n--)
            mutate_once(r, b);
        break;
    }
    }
}

static uint64_t env_u64(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 0) : def;
}

START_TEST(public_endpoints_survive_garbage)
{
    rng r = { env_u64("ORDERD_FUZZ_SEED", DEFAULT_SEED) };
    uint64_t rounds = env_u64("ORDERD_FUZZ_ROUNDS", DEFAULT_ROUNDS);
    fprintf(stderr, "integ_fuzz: seed 0x%" PRIx64 ", %" PRIu64 " rounds\n", r.s, rounds);
    const char *json[] = { "Content-Type: application/json", NULL };
    buf b;
    for (uint64_t i = 0; i < rounds; i++) {
        make_body(&r, &b);
        const char *path = below(&r, 2) ? "/api/users" : "/api/login";
        ih_response *res = ih_request(&srv, "POST", path, json, b.data, b.len);
        ck_assert_msg(res->curl == CURLE_OK, "round %" PRIu64 ": no answer (curl %d)", i,
                      (int)res->curl);
        ck_assert_msg(res->status == 200 || res->status == 201 ||
                          (res->status >= 400 && res->status < 500),
                      "round %" PRIu64 " %s -> %ld: %.200s", i, path, res->status, res->body);
        if (i % 50 == 49)
            ih_release();
    }
    ck_assert_int_eq(ih_get(&srv, "/health", NULL)->status, 200);
    ck_assert_msg(ih_server_alive(&srv), "server died");
}
END_TEST

/* A URL-safe random string with valid, invalid and NUL %-escapes. */
static char *random_component(rng *r)
{
    static const char safe[] = "abcXYZ019-._~+&=%";
    static const char *const escapes[] = { "%00", "%2F", "%2e%2e", "%zz", "%", "%f", "%ff%fe",
                                           "%C3%A9", "%25", "%3F", "%23" };
    size_t len = below(r, 40);
    char *out = ih_printf("%*s", (int)(len * 6 + 1), "");
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (below(r, 4) == 0) {
            const char *e = escapes[below(r, sizeof escapes / sizeof *escapes)];
            memcpy(out + n, e, strlen(e));
            n += strlen(e);
        } else {
            out[n++] = safe[below(r, sizeof safe - 1)];
        }
    }
    out[n] = '\0';
    return out;
}

static const char *random_path(rng *r)
{
    const char *c = random_component(r);
    switch (below(r, 6)) {
    case 0: return ih_printf("/api/users?limit=%s", c);
    case 1: return ih_printf("/api/users?cursor=%s&limit=%d", c, (int)below(r, 120) - 10);
    case 2: return ih_printf("/api/users/%s", c);
    case 3: return ih_printf("/api/users/me?%s", c);
    case 4: return ih_printf("/api/%s/%s", c, random_component(r));
    default: return ih_printf("/%s", c);
    }
}

START_TEST(paths_and_queries_survive_garbage)
{
    rng r = { env_u64("ORDERD_FUZZ_SEED", DEFAULT_SEED) ^ 0x5a5a5a5a5a5a5a5aull };
    uint64_t rounds = env_u64("ORDERD_FUZZ_ROUNDS", DEFAULT_ROUNDS);
    static const char *const methods[] = { "GET", "POST", "PATCH", "PUT", "DELETE", "HEAD" };
    const char *auth[] = { admin_auth, "Authorization: Bearer x.y.z", NULL };
    for (uint64_t i = 0; i < rounds; i++) {
        const char *path = random_path(&r);
        const char *method = methods[below(&r, sizeof methods / sizeof *methods)];
        const char *headers[] = { auth[below(&r, 3)], NULL };
        ih_response *res = ih_request(&srv, method, path, headers, NULL, 0);
        ck_assert_msg(res->curl == CURLE_OK, "round %" PRIu64 " %s %s: no answer (curl %d)", i,
                      method, path, (int)res->curl);
        ck_assert_msg(res->status == 200 || (res->status >= 400 && res->status < 500),
                      "round %" PRIu64 " %s %s -> %ld: %.200s", i, method, path, res->status,
                      res->body);
        if (i % 50 == 49)
            ih_release();
    }
    ck_assert_int_eq(ih_get(&srv, "/health", NULL)->status, 200);
}
END_TEST

static void release(void)
{
    ih_release();
}

static Suite *fuzz_suite(void)
{
    Suite *s = suite_create("integ_fuzz");
    TCase *tc = tcase_create("public");
    tcase_add_unchecked_fixture(tc, start, stop);
    tcase_add_checked_fixture(tc, NULL, release);
    tcase_add_test(tc, public_endpoints_survive_garbage);
    tcase_add_test(tc, paths_and_queries_survive_garbage);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ih_run_suite(fuzz_suite());
}
