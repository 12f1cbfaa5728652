/* test_users.c - the users module: sign-up, profile, listing, authorization,
 * password change, admin bootstrap. Real storage_memory behind the mock
 * host, wrapped so a test can inject version conflicts. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "odm.h"
#include "test_support.h"

#define PASSWORD "s3cret-passw0rd"
#define OTHER_ID "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"

static const od_module_desc *desc;
static od_module *mod;
static void *self;

/* storage_memory with a put that can be told to fail IF_VERSION writes. */
static od_storage_ops hooked_ops;
static od_storage hooked;
static int conflicts_to_inject;

static od_status hooked_put(void *s, const char *table, const char *key, const char *body,
                            size_t len, const od_index_value *idx, size_t n_idx, uint32_t cond,
                            uint64_t expected, uint64_t *new_version)
{
    if (cond == OD_PUT_IF_VERSION && conflicts_to_inject > 0) {
        conflicts_to_inject--;
        return OD_ERR_CONFLICT;
    }
    return ts_storage()->ops->put(s, table, key, body, len, idx, n_idx, cond, expected,
                                  new_version);
}

static od_module *users_module(void)
{
    od_module *m = mock_module_new("users");
    mock_config_set_int(m, "argon2_iterations", 1);
    mock_config_set_int(m, "argon2_memory_kib", 1024);
    return m;
}

static void setup(void)
{
    mock_log_reset();
    mock_set_now_ms(0);
    ts_storage_up();
    hooked_ops = *ts_storage()->ops;
    hooked_ops.put = hooked_put;
    hooked.ops = &hooked_ops;
    hooked.self = ts_storage()->self;
    mock_set_storage(&hooked);
    conflicts_to_inject = 0;
    desc = ts_load("users");
    mod = users_module();
    ck_assert_int_eq(desc->init(mock_host_api(), mod, &self), OD_OK);
}

static void teardown(void)
{
    desc->destroy(self);
    mock_module_free(mod);
    ts_storage_down();
}

/* ---- helpers ---- */

static od_request *call(const char *method, const char *pattern, const char *body,
                        const char *as_user, uint32_t role)
{
    od_request *r = ts_request(method, pattern);
    if (body)
        mock_request_body(r, body);
    if (as_user)
        mock_request_principal(r, as_user, role);
    ts_run(self, r, method, pattern);
    ck_assert_ptr_null(strstr(mock_reply_body(r), "passwordHash"));
    ck_assert_ptr_null(strstr(mock_reply_body(r), "argon2"));
    ck_assert_ptr_null(strstr(mock_reply_body(r), PASSWORD));
    return r;
}

static od_request *signup(const char *name, const char *email)
{
    char body[512];
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"email\":\"%s\",\"password\":\"" PASSWORD "\"}",
             name, email);
    return call("POST", "/api/users", body, NULL, 0);
}

/* Sign up and return the new id (static buffer per call site is enough). */
static void signup_id(const char *name, const char *email, char *id)
{
    od_request *r = signup(name, email);
    ck_assert_int_eq(mock_reply_status(r), 201);
    snprintf(id, OD_UUID_STR_LEN + 1, "%s", ts_str(r, "data.id"));
    ts_free(r);
}

static od_request *get_user(const char *id, const char *as_user, uint32_t role)
{
    od_request *r = ts_request("GET", "/api/users/x");
    mock_request_param(r, "id", id);
    mock_request_principal(r, as_user, role);
    ts_run(self, r, "GET", "/api/users/:id");
    ck_assert_ptr_null(strstr(mock_reply_body(r), "passwordHash"));
    return r;
}

static int status_of(od_request *r)
{
    int s = mock_reply_status(r);
    ts_free(r);
    return s;
}

static char *stored_hash(const char *email, char *out)
{
    od_doc doc = {0};
    ck_assert_int_eq(ts_storage()->ops->lookup(ts_storage()->self, "users", "email", email, &doc),
                     OD_OK);
    json_object *o = json_tokener_parse(doc.body);
    json_object *h = NULL;
    ck_assert(json_object_object_get_ex(o, "passwordHash", &h));
    snprintf(out, ODM_HASH_MAX, "%s", json_object_get_string(h));
    json_object_put(o);
    od_doc_clear(mock_host_api(), &doc);
    return out;
}

/* The stored tokenVersion: absent = 0; -1 when it is not an integer. */
static int64_t stored_token_version(const char *email)
{
    od_doc doc = {0};
    ck_assert_int_eq(ts_storage()->ops->lookup(ts_storage()->self, "users", "email", email, &doc),
                     OD_OK);
    json_object *o = json_tokener_parse(doc.body);
    json_object *v = NULL;
    int64_t tv = 0;
    if (json_object_object_get_ex(o, "tokenVersion", &v))
        tv = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
    json_object_put(o);
    od_doc_clear(mock_host_api(), &doc);
    return tv;
}

static int password_matches(const char *email, const char *password)
{
    char hash[ODM_HASH_MAX];
    odm_hasher *hs = NULL;
    ck_assert_int_eq(odm_hasher_new(mock_host_api(), 1, 1024, 1, &hs), OD_OK);
    od_status s = odm_password_verify(hs, stored_hash(email, hash), password, strlen(password));
    odm_hasher_free(hs);
    return s == OD_OK;
}

/* ---- sign-up ---- */

START_TEST(signup_creates_customer)
{
    od_request *r = signup("  Alice Smith ", "Alice@Example.COM");
    ck_assert_int_eq(mock_reply_status(r), 201);
    ck_assert(odm_is_uuid(ts_str(r, "data.id")));
    ck_assert_str_eq(ts_str(r, "data.name"), "Alice Smith");
    ck_assert_str_eq(ts_str(r, "data.email"), "alice@example.com");
    ck_assert_str_eq(ts_str(r, "data.role"), "customer");
    const char *created = ts_str(r, "data.createdAt");
    ck_assert_uint_eq(strlen(created), ODM_TIME_LEN);
    ck_assert_int_eq(created[ODM_TIME_LEN - 1], 'Z');
    ts_free(r);
    char hash[ODM_HASH_MAX];
    ck_assert_ptr_nonnull(strstr(stored_hash("alice@example.com", hash), "$argon2id$"));
    ck_assert(password_matches("alice@example.com", PASSWORD));
}
END_TEST

START_TEST(signup_duplicate_email_any_case_409)
{
    ck_assert_int_eq(status_of(signup("A", "dup@example.com")), 201);
    od_request *r = signup("B", "DUP@example.com");
    ck_assert_int_eq(mock_reply_status(r), 409);
    ck_assert_str_eq(ts_str(r, "error"), "conflict");
    ts_free(r);
}
END_TEST

START_TEST(signup_bad_input_400)
{
    char longname[200], longemail[300], longpw[200], body[1024];
    memset(longname, 'n', 101);
    longname[101] = '\0';
    memset(longemail, 'e', 250);
    strcpy(longemail + 60, "@");
    memset(longemail + 61, 'd', 190);
    strcpy(longemail + 251, ".com");
    memset(longpw, 'p', 129);
    longpw[129] = '\0';
    static const struct {
        const char *body, *code, *msg;
    } cases[] = {
        {"", "invalid_json", NULL},
        {"{\"name\":\"A\",", "invalid_json", NULL},
        {"{\"name\":\"A\",\"email\":\"a@b.co\",\"password\":\"" PASSWORD "\"}x", "invalid_json",
         NULL},
        {"{\"name\":\"A\",\"email\":\"a@b.co\",\"password\":\"" PASSWORD "\",\"x\":NaN}",
         "invalid_json", NULL},
        {"{\"name\":\"\xff\xfe\",\"email\":\"a@b.co\",\"password\":\"" PASSWORD "\"}",
         "invalid_json", NULL},
        {"{\"name\":99999999999999999999999,\"email\":\"a@b.co\",\"password\":\"" PASSWORD "\"}",
         "invalid_json", NULL},
        {"{\"name\":1e400,\"email\":\"a@b.co\",\"password\":\"" PASSWORD "\"}", "invalid_json",
         NULL},
        {"{\"name\":12,\"email\":\"a@b.co\",\"password\":\"" PASSWORD "\"}", "validation_failed",
         "field 'name' must be a string"},
        {"{\"email\":\"a@b.co\",\"password\":\"" PASSWORD "\"}", "validation_failed",
         "field 'name' is required"},
        {"{\"name\":\"   \",\"email\":\"a@b.co\",\"password\":\"" PASSWORD "\"}",
         "validation_failed", "field 'name' must not be blank"},
        {"{\"name\":\"A\\nB\",\"email\":\"a@b.co\",\"password\":\"" PASSWORD "\"}",
         "validation_failed", "field 'name' must not contain control characters"},
        {"{\"name\":\"A\",\"email\":[\"a@b.co\"],\"password\":\"" PASSWORD "\"}",
         "validation_failed", "field 'email' must be a string"},
        {"{\"name\":\"A\",\"email\":\"a@b\",\"password\":\"" PASSWORD "\"}", "validation_failed",
         "field 'email' must be a valid email address"},
        {"{\"name\":\"A\",\"email\":\"a@b.co\",\"password\":\"short\"}", "validation_failed",
         "field 'password' must be at least 8 characters"},
        {"{\"name\":\"A\",\"email\":\"a@b.co\",\"password\":true}", "validation_failed",
         "field 'password' must be a string"},
        {"{\"name\":\"A\",\"email\":\"a@b.co\",\"password\":\"" PASSWORD "\",\"role\":\"admin\"}",
         "validation_failed", "unknown field 'role'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        od_request *r = call("POST", "/api/users", cases[i].body, NULL, 0);
        ck_assert_msg(mock_reply_status(r) == 400, "%s -> %d", cases[i].body, mock_reply_status(r));
        ck_assert_str_eq(ts_str(r, "error"), cases[i].code);
        if (cases[i].msg)
            ck_assert_str_eq(ts_str(r, "message"), cases[i].msg);
        ts_free(r);
    }
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"email\":\"a@b.co\",\"password\":\"" PASSWORD "\"}",
             longname);
    ck_assert_int_eq(status_of(call("POST", "/api/users", body, NULL, 0)), 400);
    snprintf(body, sizeof body, "{\"name\":\"A\",\"email\":\"%s\",\"password\":\"" PASSWORD "\"}",
             longemail);
    ck_assert_int_eq(status_of(call("POST", "/api/users", body, NULL, 0)), 400);
    snprintf(body, sizeof body, "{\"name\":\"A\",\"email\":\"a@b.co\",\"password\":\"%s\"}", longpw);
    ck_assert_int_eq(status_of(call("POST", "/api/users", body, NULL, 0)), 400);
    /* 100 two-byte characters are 100 characters, not 200. */
    char wide[256] = "";
    for (int i = 0; i < 100; i++)
        strcat(wide, "\xc3\xa9");
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"email\":\"w@b.co\",\"password\":\"" PASSWORD "\"}",
             wide);
    ck_assert_int_eq(status_of(call("POST", "/api/users", body, NULL, 0)), 201);
}
END_TEST

/* ---- reading ---- */

START_TEST(routes_have_the_right_access)
{
    uint32_t a = 99;
    ck_assert_ptr_nonnull(mock_route("POST", "/api/users", &a));
    ck_assert_uint_eq(a, OD_ACCESS_PUBLIC);
    ck_assert_ptr_nonnull(mock_route("GET", "/api/users", &a));
    ck_assert_uint_eq(a, OD_ACCESS_ADMIN);
    ck_assert_ptr_nonnull(mock_route("GET", "/api/users/me", &a));
    ck_assert_uint_eq(a, OD_ACCESS_USER);
    ck_assert_ptr_nonnull(mock_route("PATCH", "/api/users/me", &a));
    ck_assert_uint_eq(a, OD_ACCESS_USER);
    ck_assert_ptr_nonnull(mock_route("GET", "/api/users/:id", &a));
    ck_assert_uint_eq(a, OD_ACCESS_USER);
}
END_TEST

START_TEST(get_by_id_self_other_admin)
{
    char alice[64], bob[64];
    signup_id("Alice", "alice@example.com", alice);
    signup_id("Bob", "bob@example.com", bob);
    od_request *r = get_user(alice, alice, OD_ROLE_CUSTOMER);
    ck_assert_int_eq(mock_reply_status(r), 200);
    ck_assert_str_eq(ts_str(r, "data.email"), "alice@example.com");
    ts_free(r);
    r = get_user(bob, alice, OD_ROLE_CUSTOMER);
    ck_assert_int_eq(mock_reply_status(r), 403);
    ck_assert_str_eq(ts_str(r, "error"), "forbidden");
    ts_free(r);
    ck_assert_int_eq(status_of(get_user(OTHER_ID, alice, OD_ROLE_CUSTOMER)), 403);
    r = get_user(bob, OTHER_ID, OD_ROLE_ADMIN);
    ck_assert_int_eq(mock_reply_status(r), 200);
    ck_assert_str_eq(ts_str(r, "data.name"), "Bob");
    ts_free(r);
    ck_assert_int_eq(status_of(get_user(OTHER_ID, OTHER_ID, OD_ROLE_ADMIN)), 404);
    ck_assert_int_eq(status_of(get_user("not-a-uuid", OTHER_ID, OD_ROLE_ADMIN)), 404);
    ck_assert_int_eq(status_of(get_user("../users", alice, OD_ROLE_CUSTOMER)), 404);
}
END_TEST

START_TEST(me_returns_own_account)
{
    char alice[64];
    signup_id("Alice", "alice@example.com", alice);
    od_request *r = call("GET", "/api/users/me", NULL, alice, OD_ROLE_CUSTOMER);
    ck_assert_int_eq(mock_reply_status(r), 200);
    ck_assert_str_eq(ts_str(r, "data.id"), alice);
    ck_assert_ptr_nonnull(ts_str(r, "data.updatedAt"));
    ts_free(r);
    /* A valid token for a user that no longer exists. */
    ck_assert_int_eq(status_of(call("GET", "/api/users/me", NULL, OTHER_ID, OD_ROLE_CUSTOMER)),
                     404);
}
END_TEST

static od_request *list(const char *limit, const char *cursor)
{
    od_request *r = ts_request("GET", "/api/users");
    mock_request_principal(r, OTHER_ID, OD_ROLE_ADMIN);
    if (limit)
        mock_request_query(r, "limit", limit);
    if (cursor)
        mock_request_query(r, "cursor", cursor);
    ts_run(self, r, "GET", "/api/users");
    ck_assert_ptr_null(strstr(mock_reply_body(r), "passwordHash"));
    return r;
}

START_TEST(list_pages_through_all_users)
{
    char id[64], email[64];
    for (int i = 0; i < 5; i++) {
        snprintf(email, sizeof email, "u%d@example.com", i);
        signup_id("U", email, id);
    }
    char cursor[OD_CURSOR_MAX + 1] = "";
    int seen = 0, pages = 0;
    do {
        od_request *r = list("2", cursor[0] ? cursor : NULL);
        ck_assert_int_eq(mock_reply_status(r), 200);
        json_object *items = ts_get(r, "data");
        ck_assert(json_object_is_type(items, json_type_array));
        seen += (int)json_object_array_length(items);
        const char *next = ts_str(r, "next");
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        ts_free(r);
        pages++;
    } while (cursor[0] && pages < 10);
    ck_assert_int_eq(seen, 5);
    ck_assert_int_eq(pages, 3);

    od_request *r = list(NULL, NULL);
    ck_assert_int_eq((int)json_object_array_length(ts_get(r, "data")), 5);
    ck_assert(json_object_is_type(ts_get(r, "next"), json_type_null));
    ts_free(r);
}
END_TEST

START_TEST(list_bad_params_400)
{
    static const char *const limits[] = {"0", "101", "abc", "5x", "-1", "1e2"};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        od_request *r = list(limits[i], NULL);
        ck_assert_int_eq(mock_reply_status(r), 400);
        ck_assert_str_eq(ts_str(r, "error"), "validation_failed");
        ts_free(r);
    }
    /* Printable but not produced by the backend: the backend says INVALID. */
    od_request *r = list(NULL, "not-a-real-cursor");
    ck_assert_int_eq(mock_reply_status(r), 400);
    ck_assert_str_eq(ts_str(r, "error"), "validation_failed");
    ts_free(r);
    ck_assert_int_eq(status_of(list(NULL, "has space")), 400);
}
END_TEST

/* ---- PATCH /api/users/me ---- */

static od_request *patch_me(const char *id, const char *body)
{
    return call("PATCH", "/api/users/me", body, id, OD_ROLE_CUSTOMER);
}

START_TEST(patch_name_and_password)
{
    char alice[64];
    signup_id("Alice", "alice@example.com", alice);
    od_request *r = patch_me(alice, "{\"name\":\" Alicia \"}");
    ck_assert_int_eq(mock_reply_status(r), 200);
    ck_assert_str_eq(ts_str(r, "data.name"), "Alicia");
    ts_free(r);
    r = get_user(alice, alice, OD_ROLE_CUSTOMER);
    ck_assert_str_eq(ts_str(r, "data.name"), "Alicia");
    ts_free(r);

    r = patch_me(alice, "{\"password\":\"new-passw0rd!\",\"currentPassword\":\"" PASSWORD "\"}");
    ck_assert_int_eq(mock_reply_status(r), 200);
    ts_free(r);
    ck_assert(password_matches("alice@example.com", "new-passw0rd!"));
    ck_assert(!password_matches("alice@example.com", PASSWORD));
}
END_TEST

/* A password change increments tokenVersion (revoking older tokens);
 * nothing else does, and the version never leaves the server. */
START_TEST(password_change_bumps_token_version)
{
    char alice[64], bob[64];
    signup_id("Alice", "alice@example.com", alice);
    signup_id("Bob", "bob@example.com", bob);
    ck_assert_int_eq(stored_token_version("alice@example.com"), 0);
    ts_free(patch_me(alice, "{\"name\":\"Alicia\"}"));
    ck_assert_int_eq(stored_token_version("alice@example.com"), 0);

    od_request *r =
        patch_me(alice, "{\"password\":\"new-passw0rd!\",\"currentPassword\":\"" PASSWORD "\"}");
    ck_assert_int_eq(mock_reply_status(r), 200);
    ck_assert_str_eq(ts_str(r, "message"), "Password changed; log in again with the new password");
    ck_assert_str_eq(ts_str(r, "data.id"), alice);
    ck_assert_ptr_null(strstr(mock_reply_body(r), "tokenVersion"));
    ts_free(r);
    ck_assert_int_eq(stored_token_version("alice@example.com"), 1);
    r = patch_me(alice, "{\"password\":\"third-passw0rd\",\"currentPassword\":\"new-passw0rd!\"}");
    ck_assert_int_eq(mock_reply_status(r), 200);
    ts_free(r);
    ck_assert_int_eq(stored_token_version("alice@example.com"), 2);

    /* A wrong current password changes nothing; other users are untouched. */
    ts_free(patch_me(alice, "{\"password\":\"fourth-passw0rd\",\"currentPassword\":\"nope\"}"));
    ck_assert_int_eq(stored_token_version("alice@example.com"), 2);
    ck_assert_int_eq(stored_token_version("bob@example.com"), 0);
    r = get_user(alice, alice, OD_ROLE_CUSTOMER);
    ck_assert_ptr_null(strstr(mock_reply_body(r), "tokenVersion"));
    ts_free(r);
}
END_TEST

/* Concurrent changes must not both write the same next version: the write
 * is conditional, the retry reads the version the other change wrote. */
START_TEST(password_change_retry_rereads_token_version)
{
    char alice[64];
    signup_id("Alice", "alice@example.com", alice);
    conflicts_to_inject = 1;
    od_request *r =
        patch_me(alice, "{\"password\":\"new-passw0rd!\",\"currentPassword\":\"" PASSWORD "\"}");
    ck_assert_int_eq(mock_reply_status(r), 200);
    ts_free(r);
    ck_assert_int_eq(stored_token_version("alice@example.com"), 1);
}
END_TEST

START_TEST(patch_password_needs_current)
{
    char alice[64];
    signup_id("Alice", "alice@example.com", alice);
    od_request *r = patch_me(alice, "{\"password\":\"new-passw0rd!\"}");
    ck_assert_int_eq(mock_reply_status(r), 400);
    ck_assert_str_eq(ts_str(r, "message"),
                     "field 'currentPassword' is required to change the password");
    ts_free(r);
    r = patch_me(alice, "{\"password\":\"new-passw0rd!\",\"currentPassword\":\"wrong-one\"}");
    ck_assert_int_eq(mock_reply_status(r), 401);
    ck_assert_str_eq(ts_str(r, "error"), "invalid_credentials");
    ts_free(r);
    ck_assert(password_matches("alice@example.com", PASSWORD));
}
END_TEST

START_TEST(patch_bad_input_400)
{
    char alice[64];
    signup_id("Alice", "alice@example.com", alice);
    static const char *const bodies[] = {
        "{}", "", "{\"name\":1}", "{\"name\":\"\"}", "{\"email\":\"x@y.co\"}",
        "{\"password\":\"short\",\"currentPassword\":\"" PASSWORD "\"}", "{\"name\":\"A\"} {}",
        "{\"name\":\"A\",\"name\":\"B\"}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        ck_assert_msg(status_of(patch_me(alice, bodies[i])) == 400, "body %s", bodies[i]);
}
END_TEST

START_TEST(patch_retries_one_conflict_then_409)
{
    char alice[64];
    signup_id("Alice", "alice@example.com", alice);
    conflicts_to_inject = 1;
    od_request *r = patch_me(alice, "{\"name\":\"Retried\"}");
    ck_assert_int_eq(mock_reply_status(r), 200);
    ck_assert_str_eq(ts_str(r, "data.name"), "Retried");
    ts_free(r);
    ck_assert_int_eq(conflicts_to_inject, 0);

    conflicts_to_inject = 2;
    r = patch_me(alice, "{\"name\":\"Lost\"}");
    ck_assert_int_eq(mock_reply_status(r), 409);
    ck_assert_str_eq(ts_str(r, "error"), "conflict");
    ts_free(r);
    r = get_user(alice, alice, OD_ROLE_CUSTOMER);
    ck_assert_str_eq(ts_str(r, "data.name"), "Retried");
    ts_free(r);
}
END_TEST

/* ---- rendered-view cache ---- */

typedef struct reader {
    const char *id;
    char body[1024]; /* the envelope this thread saw, or "" */
} reader;

static void *read_me_once(void *arg)
{
    reader *rd = arg;
    od_request *r = mock_request_new("GET", "/api/users/me");
    mock_request_principal(r, rd->id, OD_ROLE_CUSTOMER);
    rd->body[0] = '\0';
    if (mock_route("GET", "/api/users/me", NULL)(self, r) == OD_OK && mock_reply_status(r) == 200)
        snprintf(rd->body, sizeof rd->body, "%s", mock_reply_body(r));
    mock_request_free(r);
    return NULL;
}

/* The first read on a thread renders with json-c, the second comes from
 * that thread's cache; a new thread renders again. All three must agree. */
START_TEST(cached_view_equals_fresh_render)
{
    char alice[64];
    signup_id("Alice", "alice@example.com", alice);
    od_request *miss = call("GET", "/api/users/me", NULL, alice, OD_ROLE_CUSTOMER);
    od_request *hit = call("GET", "/api/users/me", NULL, alice, OD_ROLE_CUSTOMER);
    ck_assert_int_eq(mock_reply_status(hit), 200);
    ck_assert_str_eq(mock_reply_body(hit), mock_reply_body(miss));
    ck_assert_str_eq(ts_str(hit, "data.email"), "alice@example.com");
    ck_assert_ptr_null(strstr(mock_reply_body(hit), "passwordHash"));

    reader rd = {.id = alice};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, read_me_once, &rd), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_str_eq(rd.body, mock_reply_body(hit));
    ts_free(miss);
    ts_free(hit);
}
END_TEST

/* Cached views are per document: two users read in turn on one thread. */
START_TEST(cached_views_keep_users_apart)
{
    char alice[64], bob[64];
    signup_id("Alice", "alice@example.com", alice);
    signup_id("Bob", "bob@example.com", bob);
    for (int i = 0; i < 3; i++) {
        od_request *r = get_user(alice, OTHER_ID, OD_ROLE_ADMIN);
        ck_assert_str_eq(ts_str(r, "data.id"), alice);
        ts_free(r);
        r = get_user(bob, OTHER_ID, OD_ROLE_ADMIN);
        ck_assert_str_eq(ts_str(r, "data.id"), bob);
        ts_free(r);
    }
}
END_TEST

START_TEST(update_visible_right_after_cached_read)
{
    char alice[64];
    signup_id("Alice", "alice@example.com", alice);
    for (int i = 0; i < 2; i++) /* the second read is a cache hit */
        ck_assert_int_eq(status_of(get_user(alice, alice, OD_ROLE_CUSTOMER)), 200);
    ts_free(patch_me(alice, "{\"name\":\"Alicia\"}"));
    od_request *r = get_user(alice, alice, OD_ROLE_CUSTOMER);
    ck_assert_str_eq(ts_str(r, "data.name"), "Alicia");
    ts_free(r);
    r = call("GET", "/api/users/me", NULL, alice, OD_ROLE_CUSTOMER);
    ck_assert_str_eq(ts_str(r, "data.name"), "Alicia");
    ts_free(r);
}
END_TEST

START_TEST(deleted_user_not_served_from_cache)
{
    char alice[64];
    signup_id("Alice", "alice@example.com", alice);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(status_of(get_user(alice, alice, OD_ROLE_CUSTOMER)), 200);
    ck_assert_int_eq(ts_storage()->ops->del(ts_storage()->self, "users", alice, 0), OD_OK);
    ck_assert_int_eq(status_of(get_user(alice, alice, OD_ROLE_CUSTOMER)), 404);
}
END_TEST

enum { CACHE_READERS = 4, CACHE_ROUNDS = 200 };

typedef struct cache_racer {
    const char *id;
    const char *email;
    int renamer; /* this thread also renames its user every round */
    int ok, wrong;
} cache_racer;

static void *cache_race(void *arg)
{
    cache_racer *rc = arg;
    for (int i = 0; i < CACHE_ROUNDS; i++) {
        if (rc->renamer && i % 10 == 0) {
            char body[64];
            snprintf(body, sizeof body, "{\"name\":\"Name %d\"}", i);
            od_request *p = mock_request_new("PATCH", "/api/users/me");
            mock_request_body(p, body);
            mock_request_principal(p, rc->id, OD_ROLE_CUSTOMER);
            if (mock_route("PATCH", "/api/users/me", NULL)(self, p) != OD_OK ||
                mock_reply_status(p) != 200)
                rc->wrong++;
            mock_request_free(p);
        }
        reader rd = {.id = rc->id};
        read_me_once(&rd);
        char want[128];
        snprintf(want, sizeof want, "\"email\":\"%s\"", rc->email);
        if (strstr(rd.body, want) != NULL && strstr(rd.body, rc->id) != NULL &&
            strstr(rd.body, "passwordHash") == NULL)
            rc->ok++;
        else
            rc->wrong++;
    }
    return NULL;
}

/* Four workers read (and one renames) at once: every reply is its own
 * user's, complete, and the last rename is what a final read sees. */
START_TEST(cache_safe_under_concurrency)
{
    char ids[CACHE_READERS][64];
    static const char *const emails[CACHE_READERS] = {"a@example.com", "b@example.com",
                                                      "c@example.com", "d@example.com"};
    cache_racer rcs[CACHE_READERS];
    pthread_t t[CACHE_READERS];
    for (int i = 0; i < CACHE_READERS; i++) {
        signup_id("User", emails[i], ids[i]);
        rcs[i] = (cache_racer){.id = ids[i], .email = emails[i], .renamer = i == 0};
    }
    for (int i = 0; i < CACHE_READERS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, cache_race, &rcs[i]), 0);
    for (int i = 0; i < CACHE_READERS; i++) {
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
        ck_assert_int_eq(rcs[i].wrong, 0);
        ck_assert_int_eq(rcs[i].ok, CACHE_ROUNDS);
    }
    od_request *r = call("GET", "/api/users/me", NULL, ids[0], OD_ROLE_CUSTOMER);
    char last[32];
    snprintf(last, sizeof last, "Name %d", (CACHE_ROUNDS - 1) / 10 * 10);
    ck_assert_str_eq(ts_str(r, "data.name"), last);
    ts_free(r);
}
END_TEST

/* ---- admin bootstrap ---- */

static od_status boot_admin(const char *email, const char *password)
{
    mock_routes_reset();
    od_module *m = users_module();
    if (email)
        mock_config_set_string(m, "admin_email", email);
    if (password)
        mock_config_set_string(m, "admin_password", password);
    void *x = NULL;
    od_status s = desc->init(mock_host_api(), m, &x);
    if (s == OD_OK) {
        s = desc->start(x);
        desc->destroy(x);
    }
    mock_module_free(m);
    return s;
}

static int count_users(void)
{
    od_page page = {0};
    ck_assert_int_eq(ts_storage()->ops->scan(ts_storage()->self, "users", NULL, 1000, 0, &page),
                     OD_OK);
    int n = (int)page.count;
    od_page_clear(mock_host_api(), &page);
    return n;
}

START_TEST(admin_bootstrap_idempotent)
{
    mock_log_reset();
    ck_assert_int_eq(boot_admin("Root@Example.com", "admin-passw0rd"), OD_OK);
    ck_assert(mock_log_contains("created admin account root@example.com"));
    ck_assert(!mock_log_contains("admin-passw0rd"));
    ck_assert_int_eq(count_users(), 1);
    ck_assert(password_matches("root@example.com", "admin-passw0rd"));
    od_doc doc = {0};
    ck_assert_int_eq(ts_storage()->ops->lookup(ts_storage()->self, "users", "email",
                                               "root@example.com", &doc),
                     OD_OK);
    ck_assert_ptr_nonnull(strstr(doc.body, "\"role\":\"admin\""));
    ck_assert_ptr_nonnull(strstr(doc.body, "\"name\":\"Administrator\""));
    od_doc_clear(mock_host_api(), &doc);

    mock_log_reset();
    ck_assert_int_eq(boot_admin("root@example.com", "a-different-password"), OD_OK);
    ck_assert(!mock_log_contains("created admin"));
    ck_assert_int_eq(count_users(), 1);
    ck_assert(password_matches("root@example.com", "admin-passw0rd"));
    /* No admin configured: nothing happens. */
    ck_assert_int_eq(boot_admin(NULL, NULL), OD_OK);
    ck_assert_int_eq(count_users(), 1);
}
END_TEST

START_TEST(admin_without_password_refused)
{
    mock_log_reset();
    ck_assert_int_eq(boot_admin("root@example.com", NULL), OD_ERR_CONFIG);
    ck_assert(mock_log_contains("ORDERD_ADMIN_PASSWORD"));
    ck_assert_int_eq(boot_admin("root@example.com", "short"), OD_ERR_CONFIG);
    ck_assert_int_eq(boot_admin("not an email", "admin-passw0rd"), OD_ERR_CONFIG);
    ck_assert_int_eq(count_users(), 0);
}
END_TEST

static Suite *users_suite(void)
{
    Suite *s = suite_create("users");
    TCase *tc = tcase_create("http");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, signup_creates_customer);
    tcase_add_test(tc, signup_duplicate_email_any_case_409);
    tcase_add_test(tc, signup_bad_input_400);
    tcase_add_test(tc, routes_have_the_right_access);
    tcase_add_test(tc, get_by_id_self_other_admin);
    tcase_add_test(tc, me_returns_own_account);
    tcase_add_test(tc, list_pages_through_all_users);
    tcase_add_test(tc, list_bad_params_400);
    tcase_add_test(tc, patch_name_and_password);
    tcase_add_test(tc, patch_password_needs_current);
    tcase_add_test(tc, password_change_bumps_token_version);
    tcase_add_test(tc, password_change_retry_rereads_token_version);
    tcase_add_test(tc, patch_bad_input_400);
    tcase_add_test(tc, patch_retries_one_conflict_then_409);
    suite_add_tcase(s, tc);

    TCase *cache = tcase_create("view_cache");
    tcase_add_checked_fixture(cache, setup, teardown);
    tcase_add_test(cache, cached_view_equals_fresh_render);
    tcase_add_test(cache, cached_views_keep_users_apart);
    tcase_add_test(cache, update_visible_right_after_cached_read);
    tcase_add_test(cache, deleted_user_not_served_from_cache);
    tcase_add_test(cache, cache_safe_under_concurrency);
    suite_add_tcase(s, cache);

    TCase *boot = tcase_create("bootstrap");
    tcase_add_checked_fixture(boot, setup, teardown);
    tcase_add_test(boot, admin_bootstrap_idempotent);
    tcase_add_test(boot, admin_without_password_refused);
    suite_add_tcase(s, boot);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(users_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
