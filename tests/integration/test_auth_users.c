/*
 * integ_auth_users: the auth and users REST contract end to end - register,
 * login, tokens (bare, Bearer, forged, expired), admin listing with
 * pagination, per-user access, PATCH /api/users/me, token revocation by a
 * password change and the login rate limit.
 *
 * Login failures count towards the rate limit, so the tests that fail logins
 * on purpose get a server of their own; the shared server never sees one.
 */
#include "harness.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static ih_server srv;
static ih_server srv2; /* the second instance of the shared-storage test */

static void start_shared(void)
{
    ih_server_start(&srv, NULL);
}

static void stop_shared(void)
{
    ih_server_stop(&srv);
}

static void release(void)
{
    ih_release();
}

/* own_server tests stop their server themselves; this catches a failed one. */
static void release_and_stop(void)
{
    ih_release();
    if (srv.pid > 0)
        ih_server_stop(&srv);
    if (srv2.pid > 0)
        ih_server_stop(&srv2);
}

static const char *bearer(const char *token)
{
    return ih_printf("Authorization: Bearer %s", token);
}

static ih_response *get_with(const char *path, const char *authorization)
{
    const char *headers[] = { authorization, NULL };
    return ih_request(&srv, "GET", path, headers, NULL, 0);
}

static void assert_unauthorized(const ih_response *r)
{
    ih_assert_error(r, 401, "unauthorized");
    const char *www = ih_header_value(r, "WWW-Authenticate");
    ck_assert_msg(www && strncmp(www, "Bearer", 6) == 0, "WWW-Authenticate: %s",
                  www ? www : "(none)");
}

/* ---- registration ---- */

START_TEST(register_returns_customer)
{
    ih_forbid("alice-password-1");
    const char *body = "{\"name\":\"Alice\",\"email\":\"Alice.Smith@Example.COM\","
                       "\"password\":\"alice-password-1\"}";
    ih_response *r = ih_send_json(&srv, "POST", "/api/users", NULL, body);
    ck_assert_int_eq(r->status, 201);
    ck_assert_str_eq(ih_str(r, "data.email"), "alice.smith@example.com");
    ck_assert_str_eq(ih_str(r, "data.name"), "Alice");
    ck_assert_str_eq(ih_str(r, "data.role"), "customer");
    ck_assert_msg(ih_str(r, "data.id") && *ih_str(r, "data.id"), "no id: %s", r->body);
    ck_assert_ptr_nonnull(ih_json(r, "data.createdAt"));
    ck_assert_ptr_null(ih_json(r, "data.password"));

    /* The lower-cased address logs in whatever case is typed. */
    ck_assert_ptr_nonnull(ih_login(&srv, "ALICE.smith@example.com", "alice-password-1"));
}
END_TEST

START_TEST(duplicate_email_any_case_is_409)
{
    ih_register(&srv, "Dup", "dup@test.local", "dup-password-1");
    const char *again =
        "{\"name\":\"Dup2\",\"email\":\"DUP@Test.Local\",\"password\":\"dup-password-2\"}";
    ih_assert_error(ih_send_json(&srv, "POST", "/api/users", NULL, again), 409, "conflict");
    /* The admin's address is taken too. */
    const char *admin =
        "{\"name\":\"X\",\"email\":\"ADMIN@test.local\",\"password\":\"whatever-123\"}";
    ih_assert_error(ih_send_json(&srv, "POST", "/api/users", NULL, admin), 409, "conflict");
}
END_TEST

typedef struct bad_body {
    const char *body;
    const char *code; /* NULL: any 400 code */
} bad_body;

#define OK_REST "\"email\":\"v@test.local\",\"password\":\"valid-password\""
static const bad_body bad_registrations[] = {
    { "", NULL },
    { "{", "invalid_json" },
    { "{\"name\":\"a\"," OK_REST "} x", "invalid_json" },
    { "{\"name\":\"a\"," OK_REST "}{}", "invalid_json" },
    { "[]", NULL },
    { "null", NULL },
    { "\"string\"", NULL },
    { "{" OK_REST "}", "validation_failed" },
    { "{\"name\":\"a\",\"password\":\"valid-password\"}", "validation_failed" },
    { "{\"name\":\"a\",\"email\":\"v@test.local\"}", "validation_failed" },
    { "{\"name\":\"\"," OK_REST "}", "validation_failed" },
    { "{\"name\":123," OK_REST "}", "validation_failed" },
    { "{\"name\":null," OK_REST "}", "validation_failed" },
    { "{\"name\":1e400," OK_REST "}", NULL },
    { "{\"name\":99999999999999999999999," OK_REST "}", NULL },
    { "{\"name\":NaN," OK_REST "}", NULL },
    { "{\"name\":\"a\",\"email\":[\"v@test.local\"],\"password\":\"valid-password\"}",
      "validation_failed" },
    { "{\"name\":\"a\",\"email\":\"v@test.local\",\"password\":{}}", "validation_failed" },
    { "{\"name\":\"a\",\"email\":\"v@test.local\",\"password\":12345678}", "validation_failed" },
    { "{\"name\":\"a\",\"email\":\"v@test.local\",\"password\":\"short\"}", "validation_failed" },
    { "{\"name\":\"a\",\"email\":\"not-an-email\",\"password\":\"valid-password\"}",
      "validation_failed" },
    { "{\"name\":\"a\",\"email\":\"v@\",\"password\":\"valid-password\"}", "validation_failed" },
    { "{\"name\":\"a\",\"email\":\"@test.local\",\"password\":\"valid-password\"}",
      "validation_failed" },
    { "{\"name\":\"a\",\"email\":\"v w@test.local\",\"password\":\"valid-password\"}",
      "validation_failed" },
    { "{\"name\":\"a\",\"email\":\"v\\u0000@test.local\",\"password\":\"valid-password\"}", NULL },
    { "{\"name\":\"\xff\xfe\"," OK_REST "}", NULL },
    { "{\"name\":\"\xc3\x28\"," OK_REST "}", NULL },
};

START_TEST(register_rejects_bad_input)
{
    for (size_t i = 0; i < sizeof bad_registrations / sizeof *bad_registrations; i++) {
        const bad_body *b = &bad_registrations[i];
        ih_response *r = ih_send_json(&srv, "POST", "/api/users", NULL, b->body);
        ck_assert_msg(r->status == 400, "case %zu %s -> %ld %s", i, b->body, r->status, r->body);
        if (b->code)
            ck_assert_msg(strcmp(ih_str(r, "error"), b->code) == 0, "case %zu %s -> %s", i,
                          b->body, r->body);
    }
    /* None of them created the user. */
    const char *ok = "{\"name\":\"V\"," OK_REST "}";
    ck_assert_int_eq(ih_send_json(&srv, "POST", "/api/users", NULL, ok)->status, 201);
}
END_TEST

/* ---- login and tokens ---- */

START_TEST(login_returns_token_and_user)
{
    const char *body = "{\"email\":\"" IH_ADMIN_EMAIL "\",\"password\":\"" IH_ADMIN_PASSWORD "\"}";
    ih_response *r = ih_send_json(&srv, "POST", "/api/login", NULL, body);
    ck_assert_int_eq(r->status, 200);
    const char *token = ih_str(r, "data.accessToken");
    ck_assert_ptr_nonnull(token);
    ck_assert_msg(strchr(token, '.') && strchr(strchr(token, '.') + 1, '.'), "not a JWT: %s",
                  token);
    ck_assert_str_eq(ih_str(r, "data.tokenType"), "Bearer");
    struct json_object *expires = ih_json(r, "data.expiresIn");
    ck_assert_msg(json_object_is_type(expires, json_type_int) && json_object_get_int64(expires) > 0,
                  "expiresIn: %s", r->body);
    ck_assert_str_eq(ih_str(r, "data.user.email"), IH_ADMIN_EMAIL);
    ck_assert_str_eq(ih_str(r, "data.user.role"), "admin");
    ck_assert_ptr_nonnull(ih_str(r, "data.user.id"));
    ck_assert_ptr_nonnull(ih_str(r, "data.user.name"));
}
END_TEST

START_TEST(bearer_and_bare_tokens)
{
    ih_register(&srv, "Tok", "tok@test.local", "tok-password-1");
    const char *t = ih_login(&srv, "tok@test.local", "tok-password-1");
    ih_response *r = get_with("/api/users/me", bearer(t));
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(ih_str(r, "data.email"), "tok@test.local");
    r = get_with("/api/users/me", ih_printf("Authorization: %s", t));
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(ih_str(r, "data.email"), "tok@test.local");

    assert_unauthorized(get_with("/api/users/me", NULL));
    assert_unauthorized(get_with("/api/users/me", "Authorization: Bearer"));
    assert_unauthorized(get_with("/api/users/me", "Authorization: Bearer garbage"));
    assert_unauthorized(get_with("/api/users/me", "Authorization: Bearer a.b.c"));
    assert_unauthorized(get_with("/api/users/me", "Authorization: Basic dXNlcjpwYXNz"));
    assert_unauthorized(get_with("/api/users/me", ih_printf("Authorization: Bearer %sx", t)));
    assert_unauthorized(get_with("/api/users/me", ih_printf("Authorization: Bearer  %s junk", t)));

    char *huge = ih_printf("Authorization: Bearer %9000d", 7);
    r = get_with("/api/users/me", huge);
    ck_assert_msg(r->status == 401 || r->status == 400, "9 kB token -> %ld", r->status);
}
END_TEST

/* base64url without padding, as JWTs use it. */
static char *b64url(const unsigned char *data, size_t len)
{
    char *out = ih_printf("%*s", (int)(4 * ((len + 2) / 3)) + 1, "");
    int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    for (int i = 0; i < n; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    return out;
}

static char *b64url_decode(const char *in, size_t len, size_t *out_len)
{
    size_t padded = (len + 3) / 4 * 4;
    char *std = ih_printf("%*s", (int)padded, "");
    for (size_t i = 0; i < padded; i++)
        std[i] = i >= len ? '=' : in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
    unsigned char *out = (unsigned char *)ih_printf("%*s", (int)padded, "");
    int n = EVP_DecodeBlock(out, (unsigned char *)std, (int)padded);
    ck_assert_int_ge(n, 0);
    *out_len = (size_t)n - (padded - len);
    out[*out_len] = '\0';
    return (char *)out;
}

static char *sign(const EVP_MD *md, const char *key, const char *header_b64,
                  const char *payload_b64)
{
    char *input = ih_printf("%s.%s", header_b64, payload_b64);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    ck_assert_ptr_nonnull(
        HMAC(md, key, (int)strlen(key), (unsigned char *)input, strlen(input), mac, &mac_len));
    return ih_printf("%s.%s", input, b64url(mac, mac_len));
}

static char *header_b64(const char *alg)
{
    const char *h = ih_printf("{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    return b64url((const unsigned char *)h, strlen(h));
}

typedef struct jwt_parts {
    char *header, *payload;
    struct json_object *claims; /* caller puts */
} jwt_parts;

static void split_token(const char *token, jwt_parts *p)
{
    const char *dot1 = strchr(token, '.');
    ck_assert_ptr_nonnull(dot1);
    const char *dot2 = strchr(dot1 + 1, '.');
    ck_assert_ptr_nonnull(dot2);
    p->header = ih_printf("%.*s", (int)(dot1 - token), token);
    p->payload = ih_printf("%.*s", (int)(dot2 - dot1 - 1), dot1 + 1);
    size_t len;
    char *json = b64url_decode(p->payload, strlen(p->payload), &len);
    p->claims = json_tokener_parse(json);
    ck_assert_msg(json_object_is_type(p->claims, json_type_object), "claims: %s", json);
}

static char *payload_with(struct json_object *claims, const char *key, struct json_object *value)
{
    struct json_object *copy = NULL;
    ck_assert_int_eq(json_object_deep_copy(claims, &copy, NULL), 0);
    json_object_object_add(copy, key, value);
    const char *s = json_object_to_json_string_ext(copy, JSON_C_TO_STRING_PLAIN);
    char *out = b64url((const unsigned char *)s, strlen(s));
    json_object_put(copy);
    return out;
}

START_TEST(forged_tokens_rejected)
{
    ih_register(&srv, "Forge", "forge@test.local", "forge-password-1");
    const char *t = ih_login(&srv, "forge@test.local", "forge-password-1");
    jwt_parts p;
    split_token(t, &p);
    struct json_object *exp = NULL;
    ck_assert_msg(json_object_object_get_ex(p.claims, "exp", &exp) &&
                      json_object_is_type(exp, json_type_int),
                  "token has no integer exp claim");

    /* Control: re-signing the same header and payload with the test secret
     * must work, or the forgeries below prove nothing. */
    char *control = sign(EVP_sha256(), IH_JWT_SECRET, p.header, p.payload);
    ck_assert_int_eq(get_with("/api/users/me", bearer(control))->status, 200);

    const char *none = ih_printf("%s.%s.", header_b64("none"), p.payload);
    assert_unauthorized(get_with("/api/users/me", bearer(none)));
    const char *none_sig =
        ih_printf("%s.%s.%s", header_b64("none"), p.payload, strrchr(t, '.') + 1);
    assert_unauthorized(get_with("/api/users/me", bearer(none_sig)));

    char *hs512 = sign(EVP_sha512(), IH_JWT_SECRET, header_b64("HS512"), p.payload);
    assert_unauthorized(get_with("/api/users/me", bearer(hs512)));

    char *wrong_key = sign(EVP_sha256(), "another-secret-that-is-long-enough-0123456789",
                           p.header, p.payload);
    assert_unauthorized(get_with("/api/users/me", bearer(wrong_key)));

    int64_t past = (int64_t)time(NULL) - 120;
    char *expired = sign(EVP_sha256(), IH_JWT_SECRET, p.header,
                         payload_with(p.claims, "exp", json_object_new_int64(past)));
    assert_unauthorized(get_with("/api/users/me", bearer(expired)));

    /* Claims changed but the old signature kept. */
    char *tampered = ih_printf("%s.%s.%s", p.header,
                               payload_with(p.claims, "role", json_object_new_string("admin")),
                               strrchr(t, '.') + 1);
    assert_unauthorized(get_with("/api/users", bearer(tampered)));
    json_object_put(p.claims);
}
END_TEST

/* ---- admin listing and pagination ---- */

START_TEST(listing_is_admin_only)
{
    ih_register(&srv, "Cust", "cust@test.local", "cust-password-1");
    const char *customer = ih_login(&srv, "cust@test.local", "cust-password-1");
    ih_assert_error(ih_get(&srv, "/api/users", customer), 403, "forbidden");
    assert_unauthorized(ih_get(&srv, "/api/users", NULL));

    const char *admin = ih_login(&srv, IH_ADMIN_EMAIL, IH_ADMIN_PASSWORD);
    ih_response *r = ih_get(&srv, "/api/users", admin);
    ck_assert_int_eq(r->status, 200);
    ck_assert_msg(json_object_is_type(ih_json(r, "data"), json_type_array), "data: %s", r->body);
    ck_assert_msg(json_object_object_get_ex(r->json, "next", NULL), "no next: %s", r->body);
}
END_TEST

START_TEST(limit_and_cursor_validated)
{
    const char *admin = ih_login(&srv, IH_ADMIN_EMAIL, IH_ADMIN_PASSWORD);
    static const char *const bad[] = {
        "limit=0",   "limit=101", "limit=abc",      "limit=-1",
        "limit=1.5", "limit=",    "limit=1e2",      "limit=99999999999999999999",
        "limit=%00", "limit=2x",  "cursor=garbage", "cursor=%ff%fe"
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ih_response *r = ih_get(&srv, ih_printf("/api/users?%s", bad[i]), admin);
        ih_assert_error(r, 400, "validation_failed");
    }
    ck_assert_int_eq(ih_get(&srv, "/api/users?limit=1", admin)->status, 200);
    ck_assert_int_eq(ih_get(&srv, "/api/users?limit=100", admin)->status, 200);
}
END_TEST

static int contains(char **ids, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ids[i], id) == 0)
            return 1;
    return 0;
}

START_TEST(pagination_walks_all_users_once)
{
    enum { CREATED = 7, PAGE = 2, MAX_USERS = 200 };
    const char *created[CREATED];
    for (int i = 0; i < CREATED; i++)
        created[i] =
            ih_register(&srv, "Page", ih_printf("page%d@test.local", i), "page-password-1");
    const char *admin = ih_login(&srv, IH_ADMIN_EMAIL, IH_ADMIN_PASSWORD);

    char *seen[MAX_USERS];
    size_t n_seen = 0;
    const char *cursor = NULL;
    do {
        const char *path = cursor ? ih_printf("/api/users?limit=%d&cursor=%s", PAGE, cursor)
                                  : ih_printf("/api/users?limit=%d", PAGE);
        ih_response *r = ih_get(&srv, path, admin);
        ck_assert_msg(r->status == 200, "%s -> %ld %s", path, r->status, r->body);
        struct json_object *items = ih_json(r, "data");
        ck_assert_uint_le(json_object_array_length(items), PAGE);
        for (size_t i = 0; i < json_object_array_length(items); i++) {
            struct json_object *id = NULL;
            json_object_object_get_ex(json_object_array_get_idx(items, i), "id", &id);
            ck_assert_ptr_nonnull(json_object_get_string(id));
            ck_assert_msg(!contains(seen, n_seen, json_object_get_string(id)), "repeated %s",
                          json_object_get_string(id));
            ck_assert_uint_lt(n_seen, MAX_USERS);
            seen[n_seen++] = ih_strdup(json_object_get_string(id));
        }
        const char *next = ih_str(r, "next");
        cursor = next ? ih_strdup(next) : NULL;
        ck_assert_msg(next || json_object_object_get_ex(r->json, "next", NULL), "no next key");
    } while (cursor);

    for (int i = 0; i < CREATED; i++)
        ck_assert_msg(contains(seen, n_seen, created[i]), "user %s never listed", created[i]);
    ih_response *all = ih_get(&srv, "/api/users?limit=100", admin);
    ck_assert_uint_eq(json_object_array_length(ih_json(all, "data")), n_seen);
}
END_TEST

/* ---- per-user access ---- */

START_TEST(user_by_id_self_other_admin)
{
    const char *a = ih_register(&srv, "Ann", "ann@test.local", "ann-password-1");
    const char *b = ih_register(&srv, "Bob", "bob@test.local", "bob-password-1");
    const char *ta = ih_login(&srv, "ann@test.local", "ann-password-1");
    const char *admin = ih_login(&srv, IH_ADMIN_EMAIL, IH_ADMIN_PASSWORD);

    ih_response *r = ih_get(&srv, ih_printf("/api/users/%s", a), ta);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(ih_str(r, "data.email"), "ann@test.local");
    ih_assert_error(ih_get(&srv, ih_printf("/api/users/%s", b), ta), 403, "forbidden");
    r = ih_get(&srv, ih_printf("/api/users/%s", b), admin);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(ih_str(r, "data.email"), "bob@test.local");
    ih_assert_error(ih_get(&srv, "/api/users/00000000-0000-7000-8000-000000000000", admin), 404,
                    "not_found");
    assert_unauthorized(ih_get(&srv, ih_printf("/api/users/%s", a), NULL));

    r = ih_get(&srv, "/api/users/%2e%2e%2fetc", admin);
    ck_assert_msg(r->status >= 400 && r->status < 500, "odd id -> %ld", r->status);
    r = ih_get(&srv, ih_printf("/api/users/%0300d", 1), admin);
    ck_assert_msg(r->status >= 400 && r->status < 500, "long id -> %ld", r->status);
}
END_TEST

/* ---- tests that fail logins: a server each ---- */

START_TEST(login_failures_look_alike)
{
    ih_server_start(&srv, NULL);
    ih_response *wrong_pw =
        ih_send_json(&srv, "POST", "/api/login", NULL,
                     "{\"email\":\"" IH_ADMIN_EMAIL "\",\"password\":\"nope-nope-1\"}");
    ih_assert_error(wrong_pw, 401, "invalid_credentials");
    ih_response *no_user =
        ih_send_json(&srv, "POST", "/api/login", NULL,
                     "{\"email\":\"ghost@test.local\",\"password\":\"nope-nope-1\"}");
    ih_assert_error(no_user, 401, "invalid_credentials");
    ck_assert_str_eq(ih_str(wrong_pw, "message"), ih_str(no_user, "message"));

    ih_assert_error(ih_send_json(&srv, "POST", "/api/login", NULL, "{\"email\":"), 400,
                    "invalid_json");
    ih_assert_error(ih_send_json(&srv, "POST", "/api/login", NULL,
                                 "{\"email\":1,\"password\":[]}"), 400, "validation_failed");
    ih_assert_error(ih_send_json(&srv, "POST", "/api/login", NULL, "{\"email\":\"a@b.co\"}"), 400,
                    "validation_failed");
    ck_assert_int_eq(ih_server_stop(&srv), 0);
}
END_TEST

START_TEST(login_rate_limited)
{
    ih_server_start(&srv, NULL);
    const char *bad = "{\"email\":\"" IH_ADMIN_EMAIL "\",\"password\":\"wrong-password\"}";
    for (int i = 1; i <= 4; i++)
        ih_assert_error(ih_send_json(&srv, "POST", "/api/login", NULL, bad), 401,
                        "invalid_credentials");
    ih_response *fifth = ih_send_json(&srv, "POST", "/api/login", NULL, bad);
    ck_assert_msg(fifth->status == 401 || fifth->status == 429, "5th failure -> %ld",
                  fifth->status);
    ih_response *r = ih_send_json(&srv, "POST", "/api/login", NULL, bad);
    ih_assert_error(r, 429, "rate_limited");
    const char *retry = ih_header_value(r, "Retry-After");
    ck_assert_msg(retry, "429 without Retry-After");
    char *end;
    long seconds = strtol(retry, &end, 10);
    ck_assert_msg(*end == '\0' && seconds > 0 && seconds <= 300, "Retry-After: %s", retry);
    ck_assert_int_eq(ih_server_stop(&srv), 0);
}
END_TEST

START_TEST(patch_me)
{
    ih_server_start(&srv, NULL);
    ih_forbid("patch-password-1");
    ih_forbid("patch-password-2");
    ih_register(&srv, "Pat", "pat@test.local", "patch-password-1");
    const char *t = ih_login(&srv, "pat@test.local", "patch-password-1");

    assert_unauthorized(ih_send_json(&srv, "PATCH", "/api/users/me", NULL, "{\"name\":\"X\"}"));
    ih_assert_error(ih_send_json(&srv, "PATCH", "/api/users/me", t, "{\"name\":"), 400,
                    "invalid_json");
    ih_assert_error(ih_send_json(&srv, "PATCH", "/api/users/me", t,
                                 "{\"name\":123,\"currentPassword\":\"patch-password-1\"}"),
                    400, "validation_failed");

    /* A password change needs the current password, and the right one. */
    ih_response *r =
        ih_send_json(&srv, "PATCH", "/api/users/me", t, "{\"password\":\"patch-password-2\"}");
    ck_assert_msg(r->status >= 400 && r->status < 500, "no currentPassword -> %ld", r->status);
    r = ih_send_json(&srv, "PATCH", "/api/users/me", t,
                     "{\"password\":\"patch-password-2\",\"currentPassword\":\"wrong-password\"}");
    ck_assert_msg(r->status >= 400 && r->status < 500, "wrong currentPassword -> %ld", r->status);
    ih_assert_error(
        ih_send_json(&srv, "PATCH", "/api/users/me", t,
                     "{\"password\":\"short\",\"currentPassword\":\"patch-password-1\"}"),
        400, "validation_failed");
    t = ih_login(&srv, "pat@test.local", "patch-password-1");

    r = ih_send_json(&srv, "PATCH", "/api/users/me", t,
                     "{\"name\":\"Renamed\",\"currentPassword\":\"patch-password-1\"}");
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(ih_str(r, "data.name"), "Renamed");
    ck_assert_str_eq(ih_str(ih_get(&srv, "/api/users/me", t), "data.name"), "Renamed");

    /* A role in the body is never honoured. */
    r = ih_send_json(&srv, "PATCH", "/api/users/me", t,
                     "{\"role\":\"admin\",\"currentPassword\":\"patch-password-1\"}");
    ck_assert_msg(r->status == 200 || r->status == 400, "role patch -> %ld", r->status);
    ck_assert_str_eq(ih_str(ih_get(&srv, "/api/users/me", t), "data.role"), "customer");

    r = ih_send_json(
        &srv, "PATCH", "/api/users/me", t,
        "{\"password\":\"patch-password-2\",\"currentPassword\":\"patch-password-1\"}");
    ck_assert_int_eq(r->status, 200);
    ck_assert_ptr_nonnull(ih_login(&srv, "pat@test.local", "patch-password-2"));
    ih_assert_error(
        ih_send_json(&srv, "POST", "/api/login", NULL,
                     "{\"email\":\"pat@test.local\",\"password\":\"patch-password-1\"}"),
        401, "invalid_credentials");
    ck_assert_int_eq(ih_server_stop(&srv), 0);
}
END_TEST

/* ---- revocation ---- */

/* The default test config with auth.revocation_check_ms = ms, on the
 * backend's storage named by prefix (NULL: a fresh one). */
static void launch_with_recheck(ih_server *s, int ms, const char *prefix)
{
    const char *build = getenv("ORDERD_BUILD_DIR");
    ck_assert_msg(build != NULL, "ORDERD_BUILD_DIR is not set (run through ctest)");
    char backends[1024];
    ih_backend_groups(backends, sizeof backends, prefix);
    memset(s, 0, sizeof *s);
    ih_server_launch(
        s,
        ih_printf("server: { listen = \"127.0.0.1:0\"; threads = 16; max_body_bytes = %d;"
                  " log_level = \"info\"; };\n"
                  "modules: { directory = \"%s/modules\"; load = [\"auth\", \"users\"]; };\n"
                  "%s"
                  "auth: { jwt_secret = \"%s\"; token_ttl_seconds = 3600;"
                  " revocation_check_ms = %d;"
                  " argon2_iterations = 1; argon2_memory_kib = 1024; };\n"
                  "users: { admin_email = \"%s\"; admin_password = \"%s\";"
                  " argon2_iterations = 1; argon2_memory_kib = 1024; };\n",
                  IH_MAX_BODY, build, backends, IH_JWT_SECRET, ms, IH_ADMIN_EMAIL,
                  IH_ADMIN_PASSWORD));
}

static void start_with_recheck(int ms)
{
    launch_with_recheck(&srv, ms, NULL);
}

/* GET /api/users/me over n fresh connections, so several worker threads
 * (each with its own token cache) answer; the number of 200s. */
static int me_ok_on_fresh_connections(const char *token, int n)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        ih_reset_connection();
        ok += ih_get(&srv, "/api/users/me", token)->status == 200;
    }
    ih_reset_connection();
    return ok;
}

static const char *change_password(const char *token, const char *from, const char *to)
{
    ih_response *r = ih_send_json(
        &srv, "PATCH", "/api/users/me", token,
        ih_printf("{\"password\":\"%s\",\"currentPassword\":\"%s\"}", to, from));
    ck_assert_msg(r->status == 200, "password change -> %ld: %s", r->status, r->body);
    return ih_str(r, "message");
}

/* revocation_check_ms = 0: every request checks the user document, so the
 * old tokens fail at once on every thread. */
START_TEST(password_change_revokes_tokens)
{
    start_with_recheck(0);
    ih_forbid("revoke-password-1");
    ih_forbid("revoke-password-2");
    ih_forbid("bystander-password");
    const char *id = ih_register(&srv, "Rev", "rev@test.local", "revoke-password-1");
    ih_register(&srv, "By", "by@test.local", "bystander-password");
    const char *t1 = ih_login(&srv, "rev@test.local", "revoke-password-1");
    const char *t2 = ih_login(&srv, "rev@test.local", "revoke-password-1");
    const char *other = ih_login(&srv, "by@test.local", "bystander-password");
    ck_assert_int_eq(me_ok_on_fresh_connections(t1, 8), 8);
    ck_assert_int_eq(me_ok_on_fresh_connections(t2, 8), 8);

    const char *msg = change_password(t1, "revoke-password-1", "revoke-password-2");
    ck_assert_str_eq(msg, "Password changed; log in again with the new password");
    for (int i = 0; i < 8; i++) {
        ih_reset_connection();
        assert_unauthorized(ih_get(&srv, "/api/users/me", t1));
        assert_unauthorized(ih_get(&srv, "/api/users/me", t2));
    }
    /* A revoked token cannot change the password back either. */
    assert_unauthorized(ih_send_json(
        &srv, "PATCH", "/api/users/me", t2,
        "{\"password\":\"revoke-password-1\",\"currentPassword\":\"revoke-password-2\"}"));

    const char *fresh = ih_login(&srv, "rev@test.local", "revoke-password-2");
    ih_response *r = ih_get(&srv, "/api/users/me", fresh);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(ih_str(r, "data.id"), id);
    ck_assert_int_eq(me_ok_on_fresh_connections(other, 8), 8);

    /* A name change revokes nothing. */
    r = ih_send_json(&srv, "PATCH", "/api/users/me", fresh, "{\"name\":\"Revd\"}");
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(ih_str(r, "message"), "User updated");
    ck_assert_int_eq(me_ok_on_fresh_connections(fresh, 4), 4);
    ck_assert_int_eq(ih_server_stop(&srv), 0);
}
END_TEST

/* With a cache interval, a token cached on many threads still stops working
 * once the interval has passed: polled with a deadline. */
START_TEST(cached_token_revoked_within_interval)
{
    start_with_recheck(300);
    ih_forbid("cached-password-1");
    ih_forbid("cached-password-2");
    ih_register(&srv, "Cached", "cached@test.local", "cached-password-1");
    /* Copies: the loop below releases harness-owned strings. */
    char *old = strdup(ih_login(&srv, "cached@test.local", "cached-password-1"));
    char *admin = strdup(ih_login(&srv, IH_ADMIN_EMAIL, IH_ADMIN_PASSWORD));
    ck_assert_int_eq(me_ok_on_fresh_connections(old, 16), 16);
    ck_assert_int_eq(me_ok_on_fresh_connections(admin, 4), 4);
    change_password(old, "cached-password-1", "cached-password-2");

    /* Every answer is a 200 (a cached entry younger than 300 ms) or a 401;
     * after the interval, 32 fresh connections in a row must all be 401. */
    int64_t deadline = ih_monotonic_ms() + 10000;
    int refused_in_a_row = 0;
    while (refused_in_a_row < 32) {
        ck_assert_msg(ih_monotonic_ms() < deadline, "old token still accepted after 10 s");
        ih_reset_connection();
        long status = ih_get(&srv, "/api/users/me", old)->status;
        ck_assert_msg(status == 200 || status == 401, "old token -> %ld", status);
        refused_in_a_row = status == 401 ? refused_in_a_row + 1 : 0;
        ih_release();
    }
    ih_reset_connection();
    ck_assert_int_eq(me_ok_on_fresh_connections(admin, 4), 4);
    const char *fresh = ih_login(&srv, "cached@test.local", "cached-password-2");
    ck_assert_int_eq(me_ok_on_fresh_connections(fresh, 4), 4);
    free(old);
    free(admin);
    ck_assert_int_eq(ih_server_stop(&srv), 0);
}
END_TEST

/* Revocation reaches every instance sharing the storage (SQLite file,
 * DynamoDB tables; the memory backend cannot be shared). */
START_TEST(revocation_reaches_other_instance)
{
    if (ih_backend_selected("memory"))
        return;
    char prefix[64];
    ih_unique_prefix(prefix, sizeof prefix);
    launch_with_recheck(&srv, 300, prefix);
    launch_with_recheck(&srv2, 300, prefix);
    ih_forbid("shared-password-1");
    ih_forbid("shared-password-2");
    ih_register(&srv, "Shared", "shared@test.local", "shared-password-1");
    char *old = strdup(ih_login(&srv, "shared@test.local", "shared-password-1"));
    /* Cached on several of the second instance's threads. */
    for (int i = 0; i < 8; i++) {
        ih_reset_connection();
        ck_assert_int_eq(ih_get(&srv2, "/api/users/me", old)->status, 200);
    }
    change_password(old, "shared-password-1", "shared-password-2");

    int64_t deadline = ih_monotonic_ms() + 10000;
    int refused_in_a_row = 0;
    while (refused_in_a_row < 32) {
        ck_assert_msg(ih_monotonic_ms() < deadline,
                      "the other instance accepts the old token after 10 s");
        ih_reset_connection();
        long status = ih_get(&srv2, "/api/users/me", old)->status;
        ck_assert_msg(status == 200 || status == 401, "old token -> %ld", status);
        refused_in_a_row = status == 401 ? refused_in_a_row + 1 : 0;
        ih_release();
    }
    ih_reset_connection();
    const char *fresh = ih_login(&srv2, "shared@test.local", "shared-password-2");
    ck_assert_int_eq(ih_get(&srv, "/api/users/me", fresh)->status, 200);
    ck_assert_int_eq(ih_get(&srv2, "/api/users/me", fresh)->status, 200);
    free(old);
    ck_assert_int_eq(ih_server_stop(&srv2), 0);
    ck_assert_int_eq(ih_server_stop(&srv), 0);
}
END_TEST

static Suite *auth_users_suite(void)
{
    ih_forbid(IH_ADMIN_PASSWORD);
    Suite *s = suite_create("integ_auth_users");
    TCase *shared = tcase_create("shared");
    tcase_add_unchecked_fixture(shared, start_shared, stop_shared);
    tcase_add_checked_fixture(shared, NULL, release);
    tcase_add_test(shared, register_returns_customer);
    tcase_add_test(shared, duplicate_email_any_case_is_409);
    tcase_add_test(shared, register_rejects_bad_input);
    tcase_add_test(shared, login_returns_token_and_user);
    tcase_add_test(shared, bearer_and_bare_tokens);
    tcase_add_test(shared, forged_tokens_rejected);
    tcase_add_test(shared, listing_is_admin_only);
    tcase_add_test(shared, limit_and_cursor_validated);
    tcase_add_test(shared, pagination_walks_all_users_once);
    tcase_add_test(shared, user_by_id_self_other_admin);
    suite_add_tcase(s, shared);

    TCase *own = tcase_create("own_server");
    tcase_add_checked_fixture(own, NULL, release_and_stop);
    tcase_add_test(own, login_failures_look_alike);
    tcase_add_test(own, login_rate_limited);
    tcase_add_test(own, patch_me);
    tcase_add_test(own, password_change_revokes_tokens);
    tcase_add_test(own, cached_token_revoked_within_interval);
    tcase_add_test(own, revocation_reaches_other_instance);
    suite_add_tcase(s, own);
    return s;
}

int main(void)
{
    return ih_run_suite(auth_users_suite());
}
