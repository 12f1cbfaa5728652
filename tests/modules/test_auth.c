/* test_auth.c - the auth module: token verification, revocation, login,
 * rate limiting, start-up checks. Real storage_memory behind the mock host
 * (wrapped by a switchable failing get for the storage-error cases). */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>

#include "odm.h"
#include "test_support.h"

#define NOW_MS 1795687200000LL /* 2026-11-26T10:00:00Z */
#define NOW_S (NOW_MS / 1000)
#define SECRET "0123456789abcdef0123456789abcdef-test-secret"
#define PASSWORD "correct horse battery"
#define USER_ID "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"

static const od_module_desc *desc;
static od_module *mod;
static void *self;

static void configure(od_module *m)
{
    mock_config_set_int(m, "argon2_iterations", 1);
    mock_config_set_int(m, "argon2_memory_kib", 1024);
    mock_config_set_int(m, "login_max_failures", 3);
    mock_config_set_int(m, "login_window_seconds", 60);
}

static char user_hash[ODM_HASH_MAX]; /* of PASSWORD, made once per test */

/* Write (cond OD_PUT_UPSERT: replace) the user document; extra: more members
 * ("" or e.g. ",\"tokenVersion\":2"). */
static void write_user(const char *id, const char *email, const char *role, const char *extra,
                       uint32_t cond)
{
    char body[1024];
    if (user_hash[0] == '\0') {
        odm_hasher *hs = NULL;
        ck_assert_int_eq(odm_hasher_new(mock_host_api(), 1, 1024, 1, &hs), OD_OK);
        ck_assert_int_eq(odm_password_hash(hs, PASSWORD, strlen(PASSWORD), user_hash), OD_OK);
        odm_hasher_free(hs);
    }
    snprintf(body, sizeof body,
             "{\"id\":\"%s\",\"name\":\"Alice\",\"email\":\"%s\",\"role\":\"%s\","
             "\"passwordHash\":\"%s\",\"createdAt\":\"2026-11-26T10:00:00.000Z\","
             "\"updatedAt\":\"2026-11-26T10:00:00.000Z\"%s}",
             id, email, role, user_hash, extra);
    const od_index_value idx = {.index = "email", .value = email};
    const od_storage *st = ts_storage();
    ck_assert_int_eq(st->ops->put(st->self, "users", id, body, strlen(body), &idx, 1, cond, 0,
                                  NULL),
                     OD_OK);
}

static void put_user(const char *id, const char *email, const char *role)
{
    write_user(id, email, role, "", OD_PUT_IF_ABSENT);
}

/* A user whose e-mail is derived from the id (tokens only need the id). */
static void put_subject(const char *id, const char *role)
{
    char email[128];
    snprintf(email, sizeof email, "%s@example.com", id);
    put_user(id, email, role);
}

/* storage_memory with a get that fails while get_fails is set. */
static od_storage_ops flaky_ops;
static od_storage flaky;
static int get_fails;

static od_status flaky_get(void *st, const char *table, const char *key, od_doc *out)
{
    if (get_fails)
        return OD_ERR_UNAVAILABLE;
    return ts_storage()->ops->get(st, table, key, out);
}

static void setup(void)
{
    mock_set_now_ms(NOW_MS);
    mock_log_reset();
    ts_storage_up();
    user_hash[0] = '\0';
    get_fails = 0;
    flaky_ops = *ts_storage()->ops;
    flaky_ops.get = flaky_get;
    flaky = (od_storage){.ops = &flaky_ops, .self = ts_storage()->self};
    mock_set_storage(&flaky);
    desc = ts_load("auth");
    mod = mock_module_new("auth");
    mock_config_set_string(mod, "jwt_secret", SECRET);
    configure(mod);
    ck_assert_int_eq(desc->init(mock_host_api(), mod, &self), OD_OK);
    put_user(USER_ID, "alice@example.com", "customer");
}

static void teardown(void)
{
    desc->destroy(self);
    mock_module_free(mod);
    ts_storage_down();
}

/* ---- token helpers ---- */

static void b64url(const char *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)(unsigned char)in[i + 1] << 8;
        if (i + 2 < len)
            v |= (unsigned char)in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = tab[(v >> 6) & 63];
        if (i + 2 < len)
            out[o++] = tab[v & 63];
    }
    out[o] = '\0';
}

/* A token signed by libjwt with alg and key, carrying claims (JSON object). */
static char *make_token(jwt_alg_t alg, const char *key, const char *claims)
{
    jwt_t *j = NULL;
    ck_assert_int_eq(jwt_new(&j), 0);
    ck_assert_int_eq(jwt_add_grants_json(j, claims), 0);
    ck_assert_int_eq(jwt_set_alg(j, alg, (const unsigned char *)key, key ? (int)strlen(key) : 0),
                     0);
    char *t = jwt_encode_str(j);
    ck_assert_ptr_nonnull(t);
    jwt_free(j);
    return t;
}

static char *claims(char *buf, size_t cap, const char *extra)
{
    snprintf(buf, cap, "{\"sub\":\"%s\",\"role\":\"customer\",\"iss\":\"orderd\",%s}", USER_ID,
             extra);
    return buf;
}

static od_status verify(const char *token, od_principal *p)
{
    memset(p, 0, sizeof *p);
    p->size = sizeof *p;
    return mock_authenticator()(self, token, strlen(token), p);
}

static void assert_rejected(const char *token, const char *what)
{
    od_principal p;
    ck_assert_msg(verify(token, &p) == OD_ERR_INVALID, "accepted: %s", what);
}

static void assert_signed_rejected(jwt_alg_t alg, const char *key, const char *extra,
                                   const char *what)
{
    char c[512];
    char *t = make_token(alg, key, claims(c, sizeof c, extra));
    assert_rejected(t, what);
    free(t);
}

#define TIMES "\"iat\":1795687200,\"exp\":1795690800"

START_TEST(valid_token_accepted)
{
    char c[512];
    char *t = make_token(JWT_ALG_HS256, SECRET, claims(c, sizeof c, TIMES));
    od_principal p;
    ck_assert_int_eq(verify(t, &p), OD_OK);
    ck_assert_str_eq(p.user_id, USER_ID);
    ck_assert_int_eq(p.role, OD_ROLE_CUSTOMER);
    free(t);
    put_subject("u1", "admin");
    snprintf(c, sizeof c, "{\"sub\":\"u1\",\"role\":\"admin\",\"iss\":\"orderd\",\"nbf\":%lld,%s}",
             NOW_S, TIMES);
    t = make_token(JWT_ALG_HS256, SECRET, c);
    ck_assert_int_eq(verify(t, &p), OD_OK);
    ck_assert_int_eq(p.role, OD_ROLE_ADMIN);
    ck_assert_str_eq(p.user_id, "u1");
    free(t);
}
END_TEST

START_TEST(alg_none_rejected)
{
    char c[512], head[128], body[512], tok[1024];
    b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}", 27, head);
    claims(c, sizeof c, TIMES);
    b64url(c, strlen(c), body);
    snprintf(tok, sizeof tok, "%s.%s.", head, body);
    assert_rejected(tok, "alg none, no signature");
    snprintf(tok, sizeof tok, "%s.%s.c2lnbmF0dXJl", head, body);
    assert_rejected(tok, "alg none with signature");
}
END_TEST

START_TEST(wrong_algorithm_or_key_rejected)
{
    assert_signed_rejected(JWT_ALG_HS512, SECRET, TIMES, "HS512 with our key");
    assert_signed_rejected(JWT_ALG_HS384, SECRET, TIMES, "HS384 with our key");
    assert_signed_rejected(JWT_ALG_HS256, "another-secret-of-at-least-32-bytes!!", TIMES,
                           "HS256 wrong key");
}
END_TEST

START_TEST(bad_claims_rejected)
{
    assert_signed_rejected(JWT_ALG_HS256, SECRET, "\"iat\":1795680000,\"exp\":1795687200",
                           "expired (exp == now)");
    assert_signed_rejected(JWT_ALG_HS256, SECRET, "\"iat\":1795687200", "missing exp");
    assert_signed_rejected(JWT_ALG_HS256, SECRET, "\"iat\":1795687200,\"exp\":\"1795690800\"",
                           "exp as string");
    assert_signed_rejected(JWT_ALG_HS256, SECRET, "\"iat\":1795687200,\"exp\":1795690800.5",
                           "exp as real");
    assert_signed_rejected(JWT_ALG_HS256, SECRET, "\"exp\":1795690800", "missing iat");
    assert_signed_rejected(JWT_ALG_HS256, SECRET, "\"iat\":1795687261,\"exp\":1795690800",
                           "iat 61 s in the future");
    assert_signed_rejected(JWT_ALG_HS256, SECRET, "\"nbf\":1795687300," TIMES, "nbf in future");

    char c[512];
    snprintf(c, sizeof c, "{\"sub\":\"%s\",\"role\":\"customer\",\"iss\":\"evil\",%s}", USER_ID,
             TIMES);
    char *t = make_token(JWT_ALG_HS256, SECRET, c);
    assert_rejected(t, "wrong iss");
    free(t);
    snprintf(c, sizeof c, "{\"sub\":\"%s\",\"role\":\"root\",\"iss\":\"orderd\",%s}", USER_ID, TIMES);
    t = make_token(JWT_ALG_HS256, SECRET, c);
    assert_rejected(t, "unknown role");
    free(t);
    snprintf(c, sizeof c, "{\"sub\":\"\",\"role\":\"customer\",\"iss\":\"orderd\",%s}", TIMES);
    t = make_token(JWT_ALG_HS256, SECRET, c);
    assert_rejected(t, "empty sub");
    free(t);
    char sub[65];
    memset(sub, 's', 64);
    sub[64] = '\0';
    snprintf(c, sizeof c, "{\"sub\":\"%s\",\"role\":\"customer\",\"iss\":\"orderd\",%s}", sub, TIMES);
    t = make_token(JWT_ALG_HS256, SECRET, c);
    assert_rejected(t, "64-char sub");
    free(t);
}
END_TEST

START_TEST(tampered_garbage_oversize_rejected)
{
    char c[512], body[512];
    char *t = make_token(JWT_ALG_HS256, SECRET, claims(c, sizeof c, TIMES));
    /* Same header and signature, payload claiming admin. */
    snprintf(c, sizeof c, "{\"sub\":\"%s\",\"role\":\"admin\",\"iss\":\"orderd\",%s}", USER_ID, TIMES);
    b64url(c, strlen(c), body);
    char *dot1 = strchr(t, '.'), *dot2 = strrchr(t, '.');
    char tampered[2048];
    snprintf(tampered, sizeof tampered, "%.*s.%s%s", (int)(dot1 - t), t, body, dot2);
    assert_rejected(tampered, "tampered payload");
    free(t);

    assert_rejected("garbage", "garbage");
    assert_rejected("a.b.c", "three garbage parts");
    assert_rejected("", "empty");
    char *big = malloc(8194);
    memset(big, 'a', 8193);
    big[8193] = '\0';
    assert_rejected(big, "8193 bytes");
    free(big);
}
END_TEST

/* ---- the verified-token cache ---- */

static int64_t cache_metric(const char *result)
{
    char labels[64];
    snprintf(labels, sizeof labels, "result=\"%s\"", result);
    return mock_metric_value("orderd_auth_token_cache_total", labels);
}

/* A valid HS256 token for sub, expiring at exp. malloc'd. */
static char *token_for(const char *sub, const char *role, long long exp)
{
    char c[512];
    snprintf(c, sizeof c,
             "{\"sub\":\"%s\",\"role\":\"%s\",\"iss\":\"orderd\",\"iat\":%lld,\"exp\":%lld}", sub,
             role, NOW_S, exp);
    return make_token(JWT_ALG_HS256, SECRET, c);
}

START_TEST(cache_hit_gives_the_same_principal)
{
    put_subject("u1", "admin");
    char *t = token_for("u1", "admin", NOW_S + 3600);
    int64_t hits0 = cache_metric("hit"), misses0 = cache_metric("miss");
    od_principal p1, p2;
    ck_assert_int_eq(verify(t, &p1), OD_OK);
    ck_assert_int_eq(verify(t, &p2), OD_OK);
    ck_assert_int_eq(cache_metric("miss") - misses0, 1);
    ck_assert_int_eq(cache_metric("hit") - hits0, 1);
    ck_assert_str_eq(p2.user_id, "u1");
    ck_assert_int_eq(p2.role, OD_ROLE_ADMIN);
    ck_assert_mem_eq(&p1, &p2, sizeof p1);
    free(t);
}
END_TEST

START_TEST(cached_token_rejected_once_expired)
{
    char *t = token_for(USER_ID, "customer", NOW_S + 10);
    od_principal p;
    ck_assert_int_eq(verify(t, &p), OD_OK);
    mock_set_now_ms(NOW_MS + 9999);
    ck_assert_int_eq(verify(t, &p), OD_OK);
    int64_t misses0 = cache_metric("miss");
    mock_set_now_ms(NOW_MS + 10 * 1000); /* exp == now */
    ck_assert_int_eq(verify(t, &p), OD_ERR_INVALID);
    /* Decided from the cache entry, not by a new full check... */
    ck_assert_int_eq(cache_metric("miss") - misses0, 0);
    /* ...which is then gone: the next try is checked in full and fails too. */
    ck_assert_int_eq(verify(t, &p), OD_ERR_INVALID);
    ck_assert_int_eq(cache_metric("miss") - misses0, 1);
    free(t);
}
END_TEST

START_TEST(same_prefix_is_not_a_hit)
{
    char *t = token_for(USER_ID, "customer", NOW_S + 3600);
    od_principal p;
    ck_assert_int_eq(verify(t, &p), OD_OK);
    size_t len = strlen(t);
    char *forged = strdup(t);
    forged[len - 1] = forged[len - 1] == 'A' ? 'B' : 'A'; /* last signature character */
    assert_rejected(forged, "cached token with its last character changed");
    forged[len - 1] = '\0';
    assert_rejected(forged, "cached token minus its last character");
    free(forged);

    /* Two valid tokens that share the header prefix keep their own principals. */
    put_subject("u2", "admin");
    char *other = token_for("u2", "admin", NOW_S + 3600);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(verify(t, &p), OD_OK);
        ck_assert_str_eq(p.user_id, USER_ID);
        ck_assert_int_eq(p.role, OD_ROLE_CUSTOMER);
        ck_assert_int_eq(verify(other, &p), OD_OK);
        ck_assert_str_eq(p.user_id, "u2");
        ck_assert_int_eq(p.role, OD_ROLE_ADMIN);
    }
    free(other);
    free(t);
}
END_TEST

START_TEST(cache_slots_are_reused)
{
    /* Far more tokens than a thread's slots: old ones are evicted and
     * verified again, none is ever confused with another. */
    char sub[32];
    for (int i = 0; i < 200; i++) {
        snprintf(sub, sizeof sub, "user-%d", i);
        put_subject(sub, "customer");
    }
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 200; i++) {
            snprintf(sub, sizeof sub, "user-%d", i);
            char *t = token_for(sub, "customer", NOW_S + 3600);
            od_principal p;
            ck_assert_int_eq(verify(t, &p), OD_OK);
            ck_assert_str_eq(p.user_id, sub);
            free(t);
        }
    }
}
END_TEST

/* A valid token longer than the cache holds is verified in full every time
 * and still accepted: caching is an optimisation, never a gate. */
START_TEST(long_token_is_verified_every_time)
{
    char pad[700], c[1024];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    snprintf(c, sizeof c,
             "{\"sub\":\"%s\",\"role\":\"customer\",\"iss\":\"orderd\",\"iat\":%lld,"
             "\"exp\":%lld,\"pad\":\"%s\"}",
             USER_ID, NOW_S, NOW_S + 3600, pad);
    char *t = make_token(JWT_ALG_HS256, SECRET, c);
    ck_assert_uint_gt(strlen(t), 512);
    int64_t misses = cache_metric("miss"), hits = cache_metric("hit");
    for (int i = 0; i < 3; i++) {
        od_principal p;
        ck_assert_int_eq(verify(t, &p), OD_OK);
        ck_assert_str_eq(p.user_id, USER_ID);
    }
    ck_assert_int_eq(cache_metric("miss") - misses, 3);
    ck_assert_int_eq(cache_metric("hit") - hits, 0);
    free(t);
}
END_TEST

#define CACHE_THREADS 4
#define CACHE_ROUNDS 2000

typedef struct cache_worker {
    const char *token, *shared;
    char sub[16];
    int wrong, ok;
} cache_worker;

/* No Check assertions here: they are only safe on the test's own thread. */
static void *cache_worker_run(void *arg)
{
    cache_worker *w = arg;
    for (int i = 0; i < CACHE_ROUNDS; i++) {
        od_principal p = {.size = sizeof p};
        const char *t = i % 3 == 2 ? w->shared : w->token;
        const char *want = i % 3 == 2 ? "shared" : w->sub;
        if (mock_authenticator()(self, t, strlen(t), &p) == OD_OK && strcmp(p.user_id, want) == 0)
            w->ok++;
        else
            w->wrong++;
    }
    return NULL;
}

START_TEST(cache_is_per_thread_and_consistent)
{
    pthread_t th[CACHE_THREADS];
    cache_worker w[CACHE_THREADS];
    char *tokens[CACHE_THREADS];
    put_subject("shared", "customer");
    for (int i = 0; i < CACHE_THREADS; i++) {
        char sub[16];
        snprintf(sub, sizeof sub, "worker-%d", i);
        put_subject(sub, "customer");
    }
    char *shared = token_for("shared", "customer", NOW_S + 3600);
    int64_t hits0 = cache_metric("hit"), misses0 = cache_metric("miss");
    for (int i = 0; i < CACHE_THREADS; i++) {
        w[i] = (cache_worker){.shared = shared};
        snprintf(w[i].sub, sizeof w[i].sub, "worker-%d", i);
        tokens[i] = token_for(w[i].sub, "customer", NOW_S + 3600);
        w[i].token = tokens[i];
        ck_assert_int_eq(pthread_create(&th[i], NULL, cache_worker_run, &w[i]), 0);
    }
    for (int i = 0; i < CACHE_THREADS; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        ck_assert_int_eq(w[i].wrong, 0);
        ck_assert_int_eq(w[i].ok, CACHE_ROUNDS);
        free(tokens[i]);
    }
    /* Each thread verifies each of its two tokens in full once. */
    ck_assert_int_eq(cache_metric("miss") - misses0, CACHE_THREADS * 2);
    ck_assert_int_eq(cache_metric("hit") - hits0, CACHE_THREADS * (CACHE_ROUNDS - 2));
    /* The main thread's cache is still alive here; teardown frees it. */
    od_principal p;
    ck_assert_int_eq(verify(shared, &p), OD_OK);
    free(shared);
}
END_TEST

/* ---- revocation: the token against its user's document ---- */

static int64_t checks(const char *result)
{
    char labels[64];
    snprintf(labels, sizeof labels, "result=\"%s\"", result);
    return mock_metric_value("orderd_auth_user_checks_total", labels);
}

/* A token for USER_ID with claims extra after the times (e.g. ",\"tv\":2"). */
static char *token_tv(const char *extra)
{
    char c[512];
    snprintf(c, sizeof c,
             "{\"sub\":\"%s\",\"role\":\"customer\",\"iss\":\"orderd\",\"iat\":%lld,"
             "\"exp\":%lld%s}",
             USER_ID, NOW_S, NOW_S + 3600, extra);
    return make_token(JWT_ALG_HS256, SECRET, c);
}

/* Bump the stored tokenVersion, as a password change does. */
static void set_token_version(int v)
{
    char extra[64];
    snprintf(extra, sizeof extra, ",\"tokenVersion\":%d", v);
    write_user(USER_ID, "alice@example.com", "customer", extra, OD_PUT_UPSERT);
}

START_TEST(token_version_must_match)
{
    set_token_version(2);
    char *none = token_tv(""), *one = token_tv(",\"tv\":1"), *two = token_tv(",\"tv\":2");
    char *neg = token_tv(",\"tv\":-1"), *str = token_tv(",\"tv\":\"2\"");
    assert_rejected(none, "no tv (= 0) against tokenVersion 2");
    assert_rejected(one, "tv 1 against tokenVersion 2");
    assert_rejected(neg, "tv -1");
    assert_rejected(str, "tv as a string");
    od_principal p;
    ck_assert_int_eq(verify(two, &p), OD_OK);
    ck_assert_str_eq(p.user_id, USER_ID);
    free(none), free(one), free(two), free(neg), free(str);

    /* No tokenVersion in the document = 0 = a token without tv. */
    put_subject("u0", "customer");
    char *old = token_for("u0", "customer", NOW_S + 3600);
    ck_assert_int_eq(verify(old, &p), OD_OK);
    free(old);
}
END_TEST

START_TEST(unknown_user_rejected)
{
    char *t = token_for("no-such-user", "admin", NOW_S + 3600);
    int64_t revoked0 = checks("revoked");
    assert_rejected(t, "token of a user that does not exist");
    ck_assert_int_eq(checks("revoked") - revoked0, 1);
    free(t);
}
END_TEST

START_TEST(role_comes_from_the_document)
{
    put_subject("u1", "admin");
    char *t = token_for(USER_ID, "admin", NOW_S + 3600); /* USER_ID is a customer */
    od_principal p;
    ck_assert_int_eq(verify(t, &p), OD_OK);
    ck_assert_int_eq(p.role, OD_ROLE_CUSTOMER);
    free(t);

    /* Demoted: the admin token keeps working, as a customer, once re-read. */
    t = token_for("u1", "admin", NOW_S + 3600);
    ck_assert_int_eq(verify(t, &p), OD_OK);
    ck_assert_int_eq(p.role, OD_ROLE_ADMIN);
    write_user("u1", "u1@example.com", "customer", "", OD_PUT_UPSERT);
    mock_set_now_ms(NOW_MS + 5000);
    ck_assert_int_eq(verify(t, &p), OD_OK);
    ck_assert_int_eq(p.role, OD_ROLE_CUSTOMER);
    free(t);
}
END_TEST

/* The cached answer stands for revocation_check_ms (default 5000) without
 * a storage read, then the document is read again. */
START_TEST(cache_hit_rechecks_after_interval)
{
    char *t = token_tv(""), *other = token_for("u2", "customer", NOW_S + 3600);
    put_subject("u2", "customer");
    od_principal p;
    ck_assert_int_eq(verify(other, &p), OD_OK); /* first: it may share t's slot */
    ck_assert_int_eq(verify(t, &p), OD_OK);
    int64_t valid0 = checks("valid"), hits0 = cache_metric("hit");
    mock_set_now_ms(NOW_MS + 4999);
    ck_assert_int_eq(verify(t, &p), OD_OK);
    ck_assert_int_eq(checks("valid") - valid0, 0); /* no storage read on a young hit */
    ck_assert_int_eq(cache_metric("hit") - hits0, 1);

    set_token_version(1); /* the password changed */
    ck_assert_int_eq(verify(t, &p), OD_OK); /* still inside the interval */
    mock_set_now_ms(NOW_MS + 5000);
    int64_t revoked0 = checks("revoked"), misses0 = cache_metric("miss");
    assert_rejected(t, "revoked token after revocation_check_ms");
    ck_assert_int_eq(checks("revoked") - revoked0, 1);
    ck_assert_int_eq(cache_metric("miss") - misses0, 0); /* decided by the re-check */
    assert_rejected(t, "revoked token, checked in full");
    ck_assert_int_eq(cache_metric("miss") - misses0, 1);

    /* Other users are unaffected; their re-check finds nothing changed. */
    ck_assert_int_eq(verify(other, &p), OD_OK);
    ck_assert_str_eq(p.user_id, "u2");
    free(t);
    free(other);
}
END_TEST

START_TEST(deleted_user_rejected_after_interval)
{
    char *t = token_tv("");
    od_principal p;
    ck_assert_int_eq(verify(t, &p), OD_OK);
    const od_storage *st = ts_storage();
    ck_assert_int_eq(st->ops->del(st->self, "users", USER_ID, 0), OD_OK);
    mock_set_now_ms(NOW_MS + 5000);
    assert_rejected(t, "token of a deleted user");
    free(t);
}
END_TEST

START_TEST(clock_stepped_back_rechecks)
{
    char *t = token_tv("");
    od_principal p;
    ck_assert_int_eq(verify(t, &p), OD_OK);
    set_token_version(1);
    mock_set_now_ms(NOW_MS - 1);
    assert_rejected(t, "revoked token after the clock went back");
    free(t);
}
END_TEST

/* Storage down: neither accept nor call the token bad (the core answers
 * 503); a young cached entry needs no storage and still works. */
START_TEST(storage_error_is_unavailable)
{
    char *t = token_tv(""), *fresh = token_for(USER_ID, "customer", NOW_S + 1800);
    od_principal p;
    ck_assert_int_eq(verify(t, &p), OD_OK);
    get_fails = 1;
    int64_t errors0 = checks("error");
    mock_set_now_ms(NOW_MS + 4000);
    ck_assert_int_eq(verify(t, &p), OD_OK); /* young hit: no read, no error */
    ck_assert_int_eq(verify(fresh, &p), OD_ERR_UNAVAILABLE); /* full check */
    mock_set_now_ms(NOW_MS + 5000);
    ck_assert_int_eq(verify(t, &p), OD_ERR_UNAVAILABLE); /* due re-check */
    ck_assert_int_eq(checks("error") - errors0, 2);
    get_fails = 0;
    int64_t misses0 = cache_metric("miss");
    ck_assert_int_eq(verify(t, &p), OD_OK); /* the entry survived: re-checked, */
    ck_assert_int_eq(cache_metric("miss") - misses0, 0); /* not verified in full */
    ck_assert_int_eq(verify(fresh, &p), OD_OK);

    /* A token revoked during the outage is refused once storage is back. */
    get_fails = 1;
    set_token_version(1);
    mock_set_now_ms(NOW_MS + 10000);
    ck_assert_int_eq(verify(t, &p), OD_ERR_UNAVAILABLE);
    get_fails = 0;
    assert_rejected(t, "revoked during the outage");
    free(t);
    free(fresh);
}
END_TEST

START_TEST(corrupt_token_version_rejected)
{
    write_user(USER_ID, "alice@example.com", "customer", ",\"tokenVersion\":\"1\"", OD_PUT_UPSERT);
    char *t = token_tv("");
    assert_rejected(t, "document with tokenVersion as a string");
    ck_assert(mock_log_contains("unreadable record"));
    free(t);
}
END_TEST

/* A fresh auth instance with revocation_check_ms set; NULL when init fails. */
static void *init_recheck(int64_t ms, od_status *status)
{
    mock_routes_reset();
    od_module *m = mock_module_new("auth");
    mock_config_set_string(m, "jwt_secret", SECRET);
    mock_config_set_int(m, "revocation_check_ms", ms);
    configure(m);
    void *x = NULL;
    *status = desc->init(mock_host_api(), m, &x);
    mock_module_free(m);
    return *status == OD_OK ? x : NULL;
}

START_TEST(recheck_zero_reads_every_time)
{
    od_status s;
    void *x = init_recheck(0, &s);
    ck_assert_int_eq(s, OD_OK);
    char *t = token_tv("");
    od_principal p = {.size = sizeof p};
    int64_t valid0 = checks("valid"), hits0 = cache_metric("hit");
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(mock_authenticator()(x, t, strlen(t), &p), OD_OK);
    ck_assert_int_eq(checks("valid") - valid0, 3);
    ck_assert_int_eq(cache_metric("hit") - hits0, 2); /* the signature is not checked again */
    set_token_version(1);
    ck_assert_int_eq(mock_authenticator()(x, t, strlen(t), &p), OD_ERR_INVALID);
    free(t);
    desc->destroy(x);
}
END_TEST

START_TEST(recheck_range_enforced)
{
    od_status s;
    void *x = init_recheck(3600000, &s);
    ck_assert_int_eq(s, OD_OK);
    desc->destroy(x);
    ck_assert_ptr_null(init_recheck(-1, &s));
    ck_assert_int_eq(s, OD_ERR_CONFIG);
    ck_assert_ptr_null(init_recheck(3600001, &s));
    ck_assert_int_eq(s, OD_ERR_CONFIG);
}
END_TEST

/* ---- login ---- */

static od_request *login(const char *body, const char *client)
{
    od_request *r = ts_request("POST", "/api/login");
    mock_request_body(r, body);
    if (client)
        mock_request_client(r, client);
    ts_run(self, r, "POST", "/api/login");
    return r;
}

static int login_status(const char *email, const char *password, const char *client)
{
    char body[512];
    snprintf(body, sizeof body, "{\"email\":\"%s\",\"password\":\"%s\"}", email, password);
    od_request *r = login(body, client);
    int status = mock_reply_status(r);
    ts_free(r);
    return status;
}

START_TEST(login_success_issues_working_token)
{
    uint32_t access = 99;
    ck_assert_ptr_nonnull(mock_route("POST", "/api/login", &access));
    ck_assert_uint_eq(access, OD_ACCESS_PUBLIC);
    od_request *r = login("{\"email\":\"Alice@Example.com\",\"password\":\"" PASSWORD "\"}", NULL);
    ck_assert_int_eq(mock_reply_status(r), 200);
    ck_assert_str_eq(ts_str(r, "data.tokenType"), "Bearer");
    ck_assert_int_eq(json_object_get_int64(ts_get(r, "data.expiresIn")), 3600);
    ck_assert_str_eq(ts_str(r, "data.user.id"), USER_ID);
    ck_assert_str_eq(ts_str(r, "data.user.email"), "alice@example.com");
    ck_assert_str_eq(ts_str(r, "data.user.name"), "Alice");
    ck_assert_str_eq(ts_str(r, "data.user.role"), "customer");
    ck_assert_ptr_null(strstr(mock_reply_body(r), "argon2"));
    ck_assert_ptr_null(strstr(mock_reply_body(r), "passwordHash"));
    od_principal p;
    ck_assert_int_eq(verify(ts_str(r, "data.accessToken"), &p), OD_OK);
    ck_assert_str_eq(p.user_id, USER_ID);
    ts_free(r);

    /* The token carries the current tokenVersion as "tv". */
    set_token_version(7);
    r = login("{\"email\":\"alice@example.com\",\"password\":\"" PASSWORD "\"}", NULL);
    ck_assert_int_eq(mock_reply_status(r), 200);
    jwt_t *j = NULL;
    ck_assert_int_eq(jwt_decode(&j, ts_str(r, "data.accessToken"), (const unsigned char *)SECRET,
                                (int)strlen(SECRET)),
                     0);
    ck_assert_int_eq(jwt_get_grant_int(j, "tv"), 7);
    jwt_free(j);
    ck_assert_int_eq(verify(ts_str(r, "data.accessToken"), &p), OD_OK);
    ts_free(r);

    /* One hour later the token has expired. */
    r = login("{\"email\":\"alice@example.com\",\"password\":\"" PASSWORD "\"}", NULL);
    char *token = strdup(ts_str(r, "data.accessToken"));
    ts_free(r);
    mock_set_now_ms(NOW_MS + 3600 * 1000);
    ck_assert_int_eq(verify(token, &p), OD_ERR_INVALID);
    free(token);
}
END_TEST

START_TEST(login_failures_look_the_same)
{
    od_request *wrong = login("{\"email\":\"alice@example.com\",\"password\":\"nope\"}", NULL);
    od_request *unknown = login("{\"email\":\"bob@example.com\",\"password\":\"nope\"}", NULL);
    ck_assert_int_eq(mock_reply_status(wrong), 401);
    ck_assert_int_eq(mock_reply_status(unknown), 401);
    ck_assert_str_eq(ts_str(wrong, "error"), "invalid_credentials");
    ck_assert_str_eq(mock_reply_body(wrong), mock_reply_body(unknown));
    ts_free(wrong);
    ts_free(unknown);
}
END_TEST

START_TEST(login_bad_input_is_400)
{
    static const struct {
        const char *body, *code;
    } cases[] = {
        {"", "invalid_json"},
        {"{\"email\":", "invalid_json"},
        {"{\"email\":\"a@b.co\",\"password\":\"x\"} trailing", "invalid_json"},
        {"[\"a@b.co\"]", "invalid_json"},
        {"{\"email\":\"a@b.co\",\"email\":\"c@d.co\",\"password\":\"x\"}", "invalid_json"},
        {"{\"password\":\"x\"}", "validation_failed"},
        {"{\"email\":\"a@b.co\"}", "validation_failed"},
        {"{\"email\":42,\"password\":\"x\"}", "validation_failed"},
        {"{\"email\":\"a@b.co\",\"password\":12345678}", "validation_failed"},
        {"{\"email\":\"not-an-email\",\"password\":\"x\"}", "validation_failed"},
        {"{\"email\":\"a@b.co\",\"password\":\"x\",\"admin\":true}", "validation_failed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        od_request *r = login(cases[i].body, NULL);
        ck_assert_msg(mock_reply_status(r) == 400, "%s -> %d", cases[i].body, mock_reply_status(r));
        ck_assert_str_eq(ts_str(r, "error"), cases[i].code);
        ts_free(r);
    }
}
END_TEST

static int64_t logins_metric(const char *result)
{
    char labels[64];
    snprintf(labels, sizeof labels, "result=\"%s\"", result);
    return mock_metric_value("orderd_logins_total", labels);
}

START_TEST(rate_limit_after_failures)
{
    int64_t ok0 = logins_metric("success"), bad0 = logins_metric("invalid_credentials");
    int64_t limited0 = logins_metric("rate_limited");
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(login_status("alice@example.com", "wrong", "10.0.0.1"), 401);
    od_request *r = login("{\"email\":\"alice@example.com\",\"password\":\"" PASSWORD "\"}",
                          "10.0.0.1");
    ck_assert_int_eq(mock_reply_status(r), 429);
    ck_assert_str_eq(ts_str(r, "error"), "rate_limited");
    ck_assert_str_eq(mock_reply_header(r, "Retry-After"), "60");
    ts_free(r);
    /* Other clients and other e-mails are not affected. */
    ck_assert_int_eq(login_status("alice@example.com", PASSWORD, "10.0.0.2"), 200);
    ck_assert_int_eq(login_status("ALICE@example.com", "wrong", "10.0.0.1"), 429);
    ck_assert_int_eq(login_status("bob@example.com", "wrong", "10.0.0.1"), 401);

    mock_set_now_ms(NOW_MS + 45 * 1000);
    r = login("{\"email\":\"alice@example.com\",\"password\":\"x\"}", "10.0.0.1");
    ck_assert_str_eq(mock_reply_header(r, "Retry-After"), "15");
    ts_free(r);
    mock_set_now_ms(NOW_MS + 60 * 1000);
    ck_assert_int_eq(login_status("alice@example.com", PASSWORD, "10.0.0.1"), 200);

    ck_assert_int_eq(logins_metric("success") - ok0, 2);
    ck_assert_int_eq(logins_metric("invalid_credentials") - bad0, 4);
    ck_assert_int_eq(logins_metric("rate_limited") - limited0, 3);
}
END_TEST

#define THREADS 4
#define ROUNDS 10

typedef struct worker {
    int index;
    int ok_logins, rejected_logins, ok_tokens;
} worker;

/* No Check assertions here: they are only safe on the test's own thread. */
static void *login_worker(void *arg)
{
    worker *w = arg;
    char client[32];
    snprintf(client, sizeof client, "10.1.0.%d", w->index);
    for (int i = 0; i < ROUNDS; i++) {
        od_request *r = ts_request("POST", "/api/login");
        mock_request_client(r, client);
        mock_request_body(r, "{\"email\":\"alice@example.com\",\"password\":\"" PASSWORD "\"}");
        mock_route("POST", "/api/login", NULL)(self, r);
        json_object *o = json_tokener_parse(mock_reply_body(r));
        json_object *data = NULL, *tok = NULL;
        if (mock_reply_status(r) == 200 && json_object_object_get_ex(o, "data", &data) &&
            json_object_object_get_ex(data, "accessToken", &tok)) {
            od_principal p = {.size = sizeof p};
            const char *t = json_object_get_string(tok);
            w->ok_logins++;
            if (mock_authenticator()(self, t, strlen(t), &p) == OD_OK &&
                strcmp(p.user_id, USER_ID) == 0)
                w->ok_tokens++;
        }
        json_object_put(o);
        mock_request_free(r);

        r = ts_request("POST", "/api/login");
        mock_request_client(r, client);
        mock_request_body(r, "{\"email\":\"alice@example.com\",\"password\":\"wrong\"}");
        mock_route("POST", "/api/login", NULL)(self, r);
        w->rejected_logins += mock_reply_status(r) == 401;
        mock_request_free(r);
    }
    return NULL;
}

START_TEST(concurrent_logins_and_verification)
{
    pthread_t th[THREADS];
    worker w[THREADS];
    int64_t ok0 = logins_metric("success");
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.index = i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, login_worker, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(w[i].ok_logins, ROUNDS);
        ck_assert_int_eq(w[i].ok_tokens, ROUNDS);
        ck_assert_int_eq(w[i].rejected_logins, ROUNDS);
    }
    ck_assert_int_eq(logins_metric("success") - ok0, THREADS * ROUNDS);
}
END_TEST

START_TEST(success_resets_failures)
{
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(login_status("alice@example.com", "wrong", "10.0.0.1"), 401);
    ck_assert_int_eq(login_status("alice@example.com", PASSWORD, "10.0.0.1"), 200);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(login_status("alice@example.com", "wrong", "10.0.0.1"), 401);
    ck_assert_int_eq(login_status("alice@example.com", PASSWORD, "10.0.0.1"), 200);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(login_status("alice@example.com", "wrong", "10.0.0.1"), 401);
    ck_assert_int_eq(login_status("alice@example.com", PASSWORD, "10.0.0.1"), 429);
}
END_TEST

START_TEST(rate_limit_memory_is_bounded)
{
    /* Far more keys than slots: old entries are evicted, nothing breaks. */
    char email[64];
    for (int i = 0; i < 1100; i++) {
        snprintf(email, sizeof email, "u%d@example.com", i);
        ck_assert_int_eq(login_status(email, "wrong", "10.9.9.9"), 401);
    }
    ck_assert_int_eq(login_status("alice@example.com", PASSWORD, "10.9.9.9"), 200);
}
END_TEST

/* ---- init ---- */

static od_status init_with(const char *secret, int dev, void **out)
{
    mock_routes_reset();
    od_module *m = mock_module_new("auth");
    if (secret)
        mock_config_set_string(m, "jwt_secret", secret);
    mock_config_set_bool(m, "generate_dev_secret", dev);
    configure(m);
    od_status s = desc->init(mock_host_api(), m, out);
    if (s == OD_OK)
        desc->destroy(*out);
    mock_module_free(m);
    return s;
}

START_TEST(short_or_missing_secret_refused)
{
    void *x = NULL;
    mock_log_reset();
    ck_assert_int_eq(init_with("0123456789abcdef0123456789abcde", 0, &x), OD_ERR_CONFIG);
    ck_assert(mock_log_contains("JWT_SECRET"));
    ck_assert(!mock_log_contains("0123456789abcdef0123456789abcde"));
    ck_assert_int_eq(init_with(NULL, 0, &x), OD_ERR_CONFIG);
    /* The dev flag does not rescue a short secret that was set. */
    ck_assert_int_eq(init_with("short", 1, &x), OD_ERR_CONFIG);
    ck_assert(!mock_log_contains("\"short\""));
}
END_TEST

START_TEST(dev_secret_generated_with_warning)
{
    void *x = NULL;
    mock_log_reset();
    ck_assert_int_eq(init_with(NULL, 1, &x), OD_OK);
    ck_assert(mock_log_contains("development only"));
    ck_assert(mock_log_contains("restart"));
    mock_log_reset();
    ck_assert_int_eq(init_with(SECRET, 0, &x), OD_OK);
    ck_assert(!mock_log_contains(SECRET));
}
END_TEST

static Suite *auth_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *tok = tcase_create("token");
    tcase_add_checked_fixture(tok, setup, teardown);
    tcase_add_test(tok, valid_token_accepted);
    tcase_add_test(tok, alg_none_rejected);
    tcase_add_test(tok, wrong_algorithm_or_key_rejected);
    tcase_add_test(tok, bad_claims_rejected);
    tcase_add_test(tok, tampered_garbage_oversize_rejected);
    tcase_add_test(tok, cache_hit_gives_the_same_principal);
    tcase_add_test(tok, cached_token_rejected_once_expired);
    tcase_add_test(tok, same_prefix_is_not_a_hit);
    tcase_add_test(tok, cache_slots_are_reused);
    tcase_add_test(tok, long_token_is_verified_every_time);
    tcase_add_test(tok, cache_is_per_thread_and_consistent);
    tcase_add_test(tok, token_version_must_match);
    tcase_add_test(tok, unknown_user_rejected);
    tcase_add_test(tok, role_comes_from_the_document);
    tcase_add_test(tok, cache_hit_rechecks_after_interval);
    tcase_add_test(tok, deleted_user_rejected_after_interval);
    tcase_add_test(tok, clock_stepped_back_rechecks);
    tcase_add_test(tok, storage_error_is_unavailable);
    tcase_add_test(tok, corrupt_token_version_rejected);
    tcase_add_test(tok, recheck_zero_reads_every_time);
    tcase_add_test(tok, recheck_range_enforced);
    suite_add_tcase(s, tok);

    TCase *lg = tcase_create("login");
    tcase_add_checked_fixture(lg, setup, teardown);
    tcase_add_test(lg, login_success_issues_working_token);
    tcase_add_test(lg, login_failures_look_the_same);
    tcase_add_test(lg, login_bad_input_is_400);
    tcase_add_test(lg, rate_limit_after_failures);
    tcase_add_test(lg, success_resets_failures);
    tcase_add_test(lg, rate_limit_memory_is_bounded);
    tcase_add_test(lg, concurrent_logins_and_verification);
    suite_add_tcase(s, lg);

    TCase *in = tcase_create("init");
    tcase_add_checked_fixture(in, setup, teardown);
    tcase_add_test(in, short_or_missing_secret_refused);
    tcase_add_test(in, dev_secret_generated_with_warning);
    suite_add_tcase(s, in);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(auth_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
