/*
 * test_products.c - the products module behind the mock host, on the real
 * storage_memory backend. The backend is reached through a thin pass-through
 * table (faults below) so tests can make one storage call fail on purpose:
 * a lost optimistic-concurrency race, or an unreachable backend.
 *
 * Each test runs in its own fork (Check's default), so the fixture loads
 * fresh modules every time and tests share no data.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "mock_host.h"

#define ADMIN_ID "0190b6a0-0000-7000-8000-00000000a001"
#define USER_ID "0190b6a0-0000-7000-8000-00000000b001"
#define MISSING_ID "0190b6a0-0000-7000-8000-000000000000"

/* ---- storage with injectable faults ---- */

static struct {
    const od_storage *real;
    od_status get;           /* returned by the next get instead of calling through */
    od_status scan;          /* same for scan */
    od_status version_put;   /* same for puts with OD_PUT_IF_VERSION ... */
    int version_put_times;   /* ... this many times (-1 = always) */
    atomic_int version_puts; /* IF_VERSION puts seen */
} F;

static od_storage_ops fault_ops;
static od_storage fault_storage = {&fault_ops, NULL};

static od_status f_get(void *self, const char *t, const char *k, od_doc *out)
{
    if (F.get != OD_OK)
        return F.get;
    return F.real->ops->get(F.real->self, t, k, out);
}

static od_status f_scan(void *self, const char *t, const char *c, uint32_t limit, uint32_t desc,
                        od_page *out)
{
    if (F.scan != OD_OK)
        return F.scan;
    return F.real->ops->scan(F.real->self, t, c, limit, desc, out);
}

static od_status f_put(void *self, const char *t, const char *k, const char *body, size_t len,
                       const od_index_value *idx, size_t n_idx, uint32_t cond, uint64_t expected,
                       uint64_t *new_version)
{
    if (cond == OD_PUT_IF_VERSION) {
        F.version_puts++;
        if (F.version_put != OD_OK && F.version_put_times != 0) {
            if (F.version_put_times > 0)
                F.version_put_times--;
            return F.version_put;
        }
    }
    return F.real->ops->put(F.real->self, t, k, body, len, idx, n_idx, cond, expected, new_version);
}

/* ---- fixture ---- */

static const od_module_desc *storage_desc, *products_desc;
static od_module *storage_mod, *products_mod;
static void *storage_self, *products_self;

static const od_module_desc *load(const char *name)
{
    const char *build = getenv("ORDERD_BUILD_DIR");
    char path[1024], err[512];
    ck_assert_msg(build != NULL, "ORDERD_BUILD_DIR is not set (run through ctest)");
    snprintf(path, sizeof path, "%s/modules/%s.so", build, name);
    const od_module_desc *d = mock_load_module(path, err, sizeof err);
    ck_assert_msg(d != NULL, "%s", err);
    return d;
}

static void storage_up(void)
{
    storage_desc = load("storage_memory");
    storage_mod = mock_module_new("storage");
    ck_assert_int_eq(storage_desc->init(mock_host_api(), storage_mod, &storage_self), OD_OK);
    static od_storage real;
    real = (od_storage){storage_desc->ops, storage_self};
    F.real = &real;
    F.get = F.scan = F.version_put = OD_OK;
    F.version_put_times = 0;
    atomic_store(&F.version_puts, 0);
    fault_ops = *(const od_storage_ops *)storage_desc->ops;
    fault_ops.get = f_get;
    fault_ops.scan = f_scan;
    fault_ops.put = f_put;
    fault_storage.self = storage_self; /* unwrapped ops go straight to the backend */
    mock_set_storage(&fault_storage);
}

static void setup(void)
{
    storage_up();
    products_desc = load("products");
    products_mod = mock_module_new("products");
    ck_assert_int_eq(products_desc->init(mock_host_api(), products_mod, &products_self), OD_OK);
}

static void teardown(void)
{
    if (products_desc && products_desc->destroy && products_self)
        products_desc->destroy(products_self);
    if (storage_desc && storage_desc->destroy && storage_self)
        storage_desc->destroy(storage_self);
    mock_module_free(products_mod);
    mock_module_free(storage_mod);
    products_self = storage_self = NULL;
    products_mod = storage_mod = NULL;
    mock_routes_reset();
    mock_set_storage(NULL);
}

/* ---- requests ---- */

typedef struct call {
    od_request *r;
    json_object *reply;
} call;

/* Run method+pattern as an admin (role) with an optional path parameter,
 * query string "k=v&k=v" and body; asserts one reply and OD_OK. */
static call run_as(uint32_t role, const char *method, const char *pattern, const char *param,
                   const char *value, const char *query, const char *body)
{
    od_handler_fn fn = mock_route(method, pattern, NULL);
    ck_assert_msg(fn != NULL, "no route %s %s", method, pattern);
    od_request *r = mock_request_new(method, pattern);
    if (param)
        mock_request_param(r, param, value);
    if (query) {
        char q[512];
        snprintf(q, sizeof q, "%s", query);
        for (char *save = NULL, *kv = strtok_r(q, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
            char *eq = strchr(kv, '=');
            ck_assert(eq != NULL);
            *eq = '\0';
            mock_request_query(r, kv, eq + 1);
        }
    }
    if (body)
        mock_request_body(r, body);
    if (role)
        mock_request_principal(r, role == OD_ROLE_ADMIN ? ADMIN_ID : USER_ID, role);
    ck_assert_int_eq(fn(products_self, r), OD_OK);
    ck_assert_int_eq(mock_reply_count(r), 1);
    json_object *reply = json_tokener_parse(mock_reply_body(r));
    ck_assert_msg(reply != NULL, "reply is not JSON: %s", mock_reply_body(r));
    return (call){r, reply};
}

static call run(const char *method, const char *pattern, const char *param, const char *value,
                const char *body)
{
    return run_as(OD_ROLE_ADMIN, method, pattern, param, value, NULL, body);
}

static void done(call *c)
{
    json_object_put(c->reply);
    mock_request_free(c->r);
}

static int status(const call *c)
{
    return mock_reply_status(c->r);
}

static json_object *field(const call *c, const char *a, const char *b)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(c->reply, a, &v))
        return NULL;
    if (b && !json_object_object_get_ex(v, b, &v))
        return NULL;
    return v;
}

static const char *str(const call *c, const char *a, const char *b)
{
    json_object *v = field(c, a, b);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static int64_t num(const call *c, const char *a, const char *b)
{
    json_object *v = field(c, a, b);
    ck_assert_msg(v && json_object_is_type(v, json_type_int), "%s.%s is not an integer in %s", a,
                  b ? b : "", mock_reply_body(c->r));
    return json_object_get_int64(v);
}

static void expect_error(call *c, int code, const char *error)
{
    ck_assert_msg(status(c) == code, "want %d, got %s", code, mock_reply_body(c->r));
    ck_assert_str_eq(str(c, "error", NULL), error);
    done(c);
}

/* POST a product; returns its id (static buffer, overwritten per call). */
static const char *create(const char *name, const char *price, int64_t stock)
{
    static char id[64];
    char body[2048];
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"price\":%s,\"stock\":%lld}", name, price,
             (long long)stock);
    call c = run("POST", "/api/products", NULL, NULL, body);
    ck_assert_msg(status(&c) == 201, "create %s: %s", name, mock_reply_body(c.r));
    snprintf(id, sizeof id, "%s", str(&c, "data", "id"));
    done(&c);
    return id;
}

static int64_t counter(const char *id)
{
    int64_t v = -1;
    od_status s = F.real->ops->counter_get(F.real->self, "stock", id, &v);
    return s == OD_OK ? v : s == OD_ERR_NOT_FOUND ? -1 : -2;
}

/* The stored priceCents of a product (from the raw document). */
static int64_t stored_cents(const char *id)
{
    od_doc d = {0};
    ck_assert_int_eq(F.real->ops->get(F.real->self, "products", id, &d), OD_OK);
    json_object *o = json_tokener_parse(d.body), *v = NULL;
    ck_assert(json_object_object_get_ex(o, "priceCents", &v));
    ck_assert(json_object_is_type(v, json_type_int));
    int64_t cents = json_object_get_int64(v);
    json_object_put(o);
    od_doc_clear(mock_host_api(), &d);
    return cents;
}

/* ---- routes ---- */

START_TEST(test_routes_declare_access)
{
    static const struct {
        const char *method, *pattern;
        uint32_t access;
    } want[] = {
        {"GET", "/api/products", OD_ACCESS_PUBLIC},
        {"POST", "/api/products", OD_ACCESS_ADMIN},
        {"GET", "/api/products/:id", OD_ACCESS_USER},
        {"GET", "/api/products/id/:id", OD_ACCESS_USER},
        {"GET", "/api/products/name/:name", OD_ACCESS_USER},
        {"PUT", "/api/products/:id", OD_ACCESS_ADMIN},
        {"PATCH", "/api/products/:id", OD_ACCESS_ADMIN},
        {"DELETE", "/api/products/:id", OD_ACCESS_ADMIN},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        uint32_t access = 99;
        ck_assert_msg(mock_route(want[i].method, want[i].pattern, &access) != NULL, "%s %s missing",
                      want[i].method, want[i].pattern);
        ck_assert_msg(access == want[i].access, "%s %s: access %u", want[i].method,
                      want[i].pattern, access);
    }
}
END_TEST

START_TEST(test_init_config_errors)
{
    teardown();
    storage_up();
    products_desc = load("products");
    products_mod = mock_module_new("products");
    mock_config_set_int(products_mod, "update_attempts", 0);
    ck_assert_int_eq(products_desc->init(mock_host_api(), products_mod, &products_self),
                     OD_ERR_CONFIG);
    products_self = NULL;
    mock_set_storage(NULL);
    mock_config_set_int(products_mod, "update_attempts", 3);
    ck_assert_int_eq(products_desc->init(mock_host_api(), products_mod, &products_self),
                     OD_ERR_CONFIG);
    ck_assert(mock_log_contains("no storage backend"));
    products_self = NULL;
}
END_TEST

/* ---- create ---- */

START_TEST(test_create_returns_product)
{
    call c = run("POST", "/api/products", NULL, NULL,
                 "{\"name\":\"  Widget \",\"price\":19.99,\"stock\":7,\"description\":\"Blue\"}");
    ck_assert_int_eq(status(&c), 201);
    const char *id = str(&c, "data", "id");
    ck_assert(id != NULL && strlen(id) == 36);
    ck_assert_str_eq(str(&c, "data", "name"), "Widget"); /* trimmed */
    ck_assert_str_eq(str(&c, "data", "description"), "Blue");
    ck_assert_int_eq(num(&c, "data", "stock"), 7);
    ck_assert_ptr_nonnull(strstr(mock_reply_body(c.r), "\"price\":19.99,"));
    ck_assert_str_eq(str(&c, "data", "createdAt"), str(&c, "data", "updatedAt"));
    ck_assert_int_eq(strlen(str(&c, "data", "createdAt")), 24);
    ck_assert_int_eq(counter(id), 7);
    ck_assert_int_eq(stored_cents(id), 1999);
    done(&c);

    c = run("POST", "/api/products", NULL, NULL, "{\"name\":\"Plain\",\"price\":3,\"stock\":0}");
    ck_assert_int_eq(status(&c), 201);
    ck_assert_str_eq(str(&c, "data", "description"), "");
    ck_assert_int_eq(num(&c, "data", "stock"), 0);
    done(&c);
}
END_TEST

static const struct {
    const char *body, *error;
} BAD_CREATES[] = {
    {"not json", "invalid_json"},
    {"", "invalid_json"},
    {"[1,2]", "invalid_json"},
    {"{\"name\":\"A\",\"price\":1,\"stock\":1", "invalid_json"},
    {"{\"name\":\"A\",\"price\":1e400,\"stock\":1}", "invalid_json"},
    {"{\"name\":\"A\",\"price\":NaN,\"stock\":1}", "invalid_json"},
    {"{\"name\":\"A\",\"price\":Infinity,\"stock\":1}", "invalid_json"},
    {"{\"name\":\"\xff\xfe\",\"price\":1,\"stock\":1}", "invalid_json"},
    {"{\"name\":\"A\",\"name\":\"B\",\"price\":1,\"stock\":1}", "invalid_json"},
    {"{\"name\":\"A\",\"price\":1,\"stock\":1,\"colour\":\"red\"}", "validation_failed"},
    {"{\"price\":1,\"stock\":1}", "validation_failed"},
    {"{\"name\":\"A\",\"stock\":1}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":1}", "validation_failed"},
    {"{\"name\":null,\"price\":1,\"stock\":1}", "validation_failed"},
    {"{\"name\":5,\"price\":1,\"stock\":1}", "validation_failed"},
    {"{\"name\":\"   \",\"price\":1,\"stock\":1}", "validation_failed"},
    {"{\"name\":\"\",\"price\":1,\"stock\":1}", "validation_failed"},
    {"{\"name\":\"a\\u0000b\",\"price\":1,\"stock\":1}", "validation_failed"},
    {"{\"name\":\"a\\u0007b\",\"price\":1,\"stock\":1}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":\"19.99\",\"stock\":1}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":true,\"stock\":1}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":[1],\"stock\":1}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":19.999,\"stock\":1}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":0.001,\"stock\":1}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":1e-3,\"stock\":1}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":1e-400,\"stock\":1}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":-1,\"stock\":1}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":-0.5,\"stock\":1}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":10000000000.01,\"stock\":1}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":10000000001,\"stock\":1}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":1e11,\"stock\":1}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":9223372036854775807,\"stock\":1}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":1,\"stock\":5.0}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":1,\"stock\":2.5}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":1,\"stock\":-1}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":1,\"stock\":1000000001}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":1,\"stock\":\"5\"}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":1,\"stock\":true}", "validation_failed"},
    {"{\"name\":\"A\",\"price\":1,\"stock\":1,\"description\":5}", "validation_failed"},
};

START_TEST(test_create_rejects_bad_input)
{
    const char *body = BAD_CREATES[_i].body;
    call c = run("POST", "/api/products", NULL, NULL, body);
    ck_assert_msg(status(&c) == 400, "body %s -> %s", body, mock_reply_body(c.r));
    ck_assert_msg(strcmp(str(&c, "error", NULL), BAD_CREATES[_i].error) == 0, "body %s -> %s",
                  body, mock_reply_body(c.r));
    done(&c);
    /* Nothing was stored. */
    c = run_as(0, "GET", "/api/products", NULL, NULL, NULL, NULL);
    ck_assert_int_eq(json_object_array_length(field(&c, "data", NULL)), 0);
    done(&c);
}
END_TEST

/* "é" is 2 bytes, "𝄞" 4: limits count characters, not bytes. */
static char *repeat(const char *unit, size_t n)
{
    size_t len = strlen(unit);
    char *s = malloc(len * n + 1);
    ck_assert_ptr_nonnull(s);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * len, unit, len);
    s[len * n] = '\0';
    return s;
}

START_TEST(test_create_length_limits)
{
    char body[16384];
    char *name200 = repeat("\xf0\x9d\x84\x9e", 200); /* 800 bytes */
    char *name201 = repeat("a", 201);
    char *desc2000 = repeat("\xc3\xa9", 2000);
    char *desc2001 = repeat("a", 2001);

    snprintf(body, sizeof body, "{\"name\":\"%s\",\"price\":1,\"stock\":1}", name201);
    expect_error((call[]){run("POST", "/api/products", NULL, NULL, body)}, 400, "validation_failed");
    snprintf(body, sizeof body,
             "{\"name\":\"x\",\"price\":1,\"stock\":1,\"description\":\"%s\"}", desc2001);
    expect_error((call[]){run("POST", "/api/products", NULL, NULL, body)}, 400, "validation_failed");

    snprintf(body, sizeof body,
             "{\"name\":\"%s\",\"price\":1,\"stock\":1,\"description\":\"%s\"}", name200, desc2000);
    call c = run("POST", "/api/products", NULL, NULL, body);
    ck_assert_msg(status(&c) == 201, "%s", mock_reply_body(c.r));
    ck_assert_str_eq(str(&c, "data", "name"), name200);
    ck_assert_str_eq(str(&c, "data", "description"), desc2000);
    done(&c);

    /* A name longer than a storage index value is still unique and findable. */
    expect_error((call[]){run("POST", "/api/products", NULL, NULL, body)}, 409, "conflict");
    c = run_as(OD_ROLE_CUSTOMER, "GET", "/api/products/name/:name", "name", name200, NULL, NULL);
    ck_assert_int_eq(status(&c), 200);
    ck_assert_str_eq(str(&c, "data", "name"), name200);
    done(&c);
    free(name200);
    free(name201);
    free(desc2000);
    free(desc2001);
}
END_TEST

START_TEST(test_create_duplicate_name_conflicts)
{
    create("Widget", "1", 5);
    call c = run("POST", "/api/products", NULL, NULL,
                 "{\"name\":\" Widget  \",\"price\":2,\"stock\":9}");
    ck_assert_int_eq(status(&c), 409);
    ck_assert_str_eq(str(&c, "error", NULL), "conflict");
    done(&c);
    /* The hash-prefixed index values cannot collide with literal names. */
    create("sha256:abc", "1", 1);
    create("sha256:", "1", 1);
    c = run_as(0, "GET", "/api/products", NULL, NULL, NULL, NULL);
    ck_assert_int_eq(json_object_array_length(field(&c, "data", NULL)), 3);
    done(&c);
}
END_TEST

/* ---- money ---- */

static const struct {
    const char *in, *out;
    int64_t cents;
} PRICES[] = {
    {"0.1", "0.1", 10},        {"0.2", "0.2", 20},        {"0.3", "0.3", 30},
    {"19.99", "19.99", 1999},  {"19.90", "19.9", 1990},   {"19.990", "19.99", 1999},
    {"19", "19", 1900},        {"19.0", "19", 1900},      {"0.05", "0.05", 5},
    {"0", "0", 0},             {"0.00", "0", 0},          {"-0", "0", 0},
    {"1999e-2", "19.99", 1999}, {"1.5E1", "15", 1500},    {"0.07e2", "7", 700},
    {"1e10", "10000000000", 1000000000000LL},
    {"10000000000.00", "10000000000", 1000000000000LL},
    {"9999999999.99", "9999999999.99", 999999999999LL},
    {"0e999", "0", 0},         {"1.10", "1.1", 110},      {"1234567.89", "1234567.89", 123456789},
};

START_TEST(test_price_round_trip_is_exact)
{
    char body[256], want[64], name[32];
    snprintf(name, sizeof name, "p%d", _i);
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"price\":%s,\"stock\":1}", name, PRICES[_i].in);
    call c = run("POST", "/api/products", NULL, NULL, body);
    ck_assert_msg(status(&c) == 201, "%s -> %s", PRICES[_i].in, mock_reply_body(c.r));
    snprintf(want, sizeof want, "\"price\":%s,", PRICES[_i].out);
    ck_assert_msg(strstr(mock_reply_body(c.r), want) != NULL, "%s -> %s", PRICES[_i].in,
                  mock_reply_body(c.r));
    char id[64];
    snprintf(id, sizeof id, "%s", str(&c, "data", "id"));
    done(&c);
    ck_assert_int_eq(stored_cents(id), PRICES[_i].cents);

    c = run_as(OD_ROLE_CUSTOMER, "GET", "/api/products/:id", "id", id, NULL, NULL);
    ck_assert_msg(strstr(mock_reply_body(c.r), want) != NULL, "%s", mock_reply_body(c.r));
    done(&c);
}
END_TEST

START_TEST(test_price_sum_stays_exact)
{
    /* 0.1 + 0.2 != 0.3 in binary floating point; in cents it is 10 + 20 = 30. */
    char a[64], b[64], s[64];
    snprintf(a, sizeof a, "%s", create("a", "0.1", 1));
    snprintf(b, sizeof b, "%s", create("b", "0.2", 1));
    snprintf(s, sizeof s, "%s", create("s", "0.3", 1));
    ck_assert_int_eq(stored_cents(a) + stored_cents(b), stored_cents(s));
}
END_TEST

/* ---- reads ---- */

START_TEST(test_get_by_id_alias_and_name)
{
    char id[64];
    snprintf(id, sizeof id, "%s", create("Gadget", "5.5", 3));
    static const char *const patterns[] = {"/api/products/:id", "/api/products/id/:id"};
    for (int i = 0; i < 2; i++) {
        call c = run_as(OD_ROLE_CUSTOMER, "GET", patterns[i], "id", id, NULL, NULL);
        ck_assert_int_eq(status(&c), 200);
        ck_assert_str_eq(str(&c, "data", "id"), id);
        ck_assert_str_eq(str(&c, "data", "name"), "Gadget");
        ck_assert_int_eq(num(&c, "data", "stock"), 3);
        ck_assert_ptr_nonnull(strstr(mock_reply_body(c.r), "\"price\":5.5,"));
        done(&c);
        expect_error((call[]){run_as(OD_ROLE_CUSTOMER, "GET", patterns[i], "id", MISSING_ID, NULL,
                                     NULL)},
                     404, "not_found");
        expect_error((call[]){run_as(OD_ROLE_CUSTOMER, "GET", patterns[i], "id", "../etc", NULL,
                                     NULL)},
                     404, "not_found");
    }
    call c = run_as(OD_ROLE_CUSTOMER, "GET", "/api/products/name/:name", "name", "Gadget", NULL,
                    NULL);
    ck_assert_int_eq(status(&c), 200);
    ck_assert_str_eq(str(&c, "data", "id"), id);
    done(&c);
    c = run_as(OD_ROLE_CUSTOMER, "GET", "/api/products/name/:name", "name", " Gadget\t", NULL,
               NULL); /* looked up the way names are stored: trimmed */
    ck_assert_int_eq(status(&c), 200);
    done(&c);
    expect_error((call[]){run_as(OD_ROLE_CUSTOMER, "GET", "/api/products/name/:name", "name",
                                 "gadget", NULL, NULL)},
                 404, "not_found");
    expect_error((call[]){run_as(OD_ROLE_CUSTOMER, "GET", "/api/products/name/:name", "name",
                                 "\xff", NULL, NULL)},
                 404, "not_found");
}
END_TEST

START_TEST(test_list_walks_every_page)
{
    enum { N = 7 };
    char ids[N][64];
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "item %d", i);
        snprintf(ids[i], sizeof ids[i], "%s", create(name, "1.25", i));
    }
    int seen[N] = {0}, pages = 0, total = 0;
    char cursor[600] = "";
    do {
        char query[700];
        snprintf(query, sizeof query, cursor[0] ? "limit=3&cursor=%s" : "limit=3", cursor);
        call c = run_as(0, "GET", "/api/products", NULL, NULL, query, NULL);
        ck_assert_int_eq(status(&c), 200);
        json_object *items = field(&c, "data", NULL);
        size_t n = json_object_array_length(items);
        ck_assert(n >= 1 && n <= 3);
        for (size_t k = 0; k < n; k++) {
            json_object *id = NULL;
            json_object_object_get_ex(json_object_array_get_idx(items, k), "id", &id);
            for (int i = 0; i < N; i++)
                seen[i] += strcmp(ids[i], json_object_get_string(id)) == 0;
        }
        total += (int)n;
        pages++;
        json_object *next = field(&c, "next", NULL);
        cursor[0] = '\0';
        if (next != NULL)
            snprintf(cursor, sizeof cursor, "%s", json_object_get_string(next));
        done(&c);
    } while (cursor[0] && pages < 10);
    ck_assert_int_eq(pages, 3);
    ck_assert_int_eq(total, N);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(seen[i], 1);
}
END_TEST

START_TEST(test_list_defaults_and_bad_params)
{
    call c = run_as(0, "GET", "/api/products", NULL, NULL, NULL, NULL);
    ck_assert_int_eq(status(&c), 200);
    ck_assert_int_eq(json_object_array_length(field(&c, "data", NULL)), 0);
    ck_assert_ptr_nonnull(strstr(mock_reply_body(c.r), "\"next\":null"));
    done(&c);
    create("only", "2", 2);
    c = run_as(0, "GET", "/api/products", NULL, NULL, "limit=100", NULL);
    ck_assert_int_eq(json_object_array_length(field(&c, "data", NULL)), 1);
    done(&c);
    static const char *const bad[] = {"limit=0", "limit=101", "limit=abc", "limit=-1",
                                      "limit=", "cursor=bogus", "cursor=m1sa.!!"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_error((call[]){run_as(0, "GET", "/api/products", NULL, NULL, bad[i], NULL)}, 400,
                     "validation_failed");
}
END_TEST

/* ---- replace and patch ---- */

START_TEST(test_put_replaces_everything)
{
    char id[64];
    call c = run("POST", "/api/products", NULL, NULL,
                 "{\"name\":\"Old\",\"price\":1,\"stock\":4,\"description\":\"keep?\"}");
    snprintf(id, sizeof id, "%s", str(&c, "data", "id"));
    char created[32];
    snprintf(created, sizeof created, "%s", str(&c, "data", "createdAt"));
    done(&c);

    mock_set_now_ms(4102444800123LL); /* 2100-01-01T00:00:00.123Z */
    c = run("PUT", "/api/products/:id", "id", id, "{\"name\":\"New\",\"price\":2.5,\"stock\":40}");
    ck_assert_int_eq(status(&c), 200);
    ck_assert_str_eq(str(&c, "data", "name"), "New");
    ck_assert_str_eq(str(&c, "data", "description"), ""); /* absent in a PUT: reset */
    ck_assert_int_eq(num(&c, "data", "stock"), 40);
    ck_assert_str_eq(str(&c, "data", "createdAt"), created);
    ck_assert_str_eq(str(&c, "data", "updatedAt"), "2100-01-01T00:00:00.123Z");
    ck_assert_ptr_nonnull(strstr(mock_reply_body(c.r), "\"price\":2.5,"));
    done(&c);
    mock_set_now_ms(0);
    ck_assert_int_eq(counter(id), 40);
    ck_assert_int_eq(stored_cents(id), 250);

    /* The old name is free again, the new one is taken. */
    create("Old", "1", 1);
    expect_error((call[]){run("PUT", "/api/products/:id", "id", id,
                              "{\"name\":\"New\",\"price\":2.5}")},
                 400, "validation_failed");
    expect_error((call[]){run("PUT", "/api/products/:id", "id", MISSING_ID,
                              "{\"name\":\"X\",\"price\":1,\"stock\":1}")},
                 404, "not_found");
    expect_error((call[]){run("PUT", "/api/products/:id", "id", "nope",
                              "{\"name\":\"X\",\"price\":1,\"stock\":1}")},
                 404, "not_found");
    expect_error((call[]){run("PUT", "/api/products/:id", "id", id, "{\"name\":")}, 400,
                 "invalid_json");
}
END_TEST

START_TEST(test_rename_to_taken_name_conflicts)
{
    char a[64];
    create("Taken", "1", 1);
    snprintf(a, sizeof a, "%s", create("Mine", "1", 8));
    expect_error((call[]){run("PUT", "/api/products/:id", "id", a,
                              "{\"name\":\"Taken\",\"price\":9,\"stock\":99}")},
                 409, "conflict");
    expect_error((call[]){run("PATCH", "/api/products/:id", "id", a,
                              "{\"name\":\"Taken\",\"stock\":77}")},
                 409, "conflict");
    /* A refused rename changes nothing, stock included. */
    ck_assert_int_eq(counter(a), 8);
    ck_assert_int_eq(stored_cents(a), 100);
    call c = run_as(OD_ROLE_CUSTOMER, "GET", "/api/products/name/:name", "name", "Mine", NULL, NULL);
    ck_assert_int_eq(status(&c), 200);
    done(&c);
    /* Renaming to its own name is not a conflict. */
    c = run("PATCH", "/api/products/:id", "id", a, "{\"name\":\"Mine\"}");
    ck_assert_int_eq(status(&c), 200);
    done(&c);
}
END_TEST

START_TEST(test_patch_changes_only_what_is_sent)
{
    char id[64];
    call c = run("POST", "/api/products", NULL, NULL,
                 "{\"name\":\"P\",\"price\":10.1,\"stock\":3,\"description\":\"d\"}");
    snprintf(id, sizeof id, "%s", str(&c, "data", "id"));
    done(&c);

    c = run("PATCH", "/api/products/:id", "id", id, "{\"price\":0.3}");
    ck_assert_int_eq(status(&c), 200);
    ck_assert_str_eq(str(&c, "data", "name"), "P");
    ck_assert_str_eq(str(&c, "data", "description"), "d");
    ck_assert_int_eq(num(&c, "data", "stock"), 3);
    ck_assert_ptr_nonnull(strstr(mock_reply_body(c.r), "\"price\":0.3,"));
    done(&c);

    c = run("PATCH", "/api/products/:id", "id", id, "{\"stock\":0,\"description\":\"\"}");
    ck_assert_int_eq(status(&c), 200);
    ck_assert_int_eq(num(&c, "data", "stock"), 0);
    ck_assert_str_eq(str(&c, "data", "description"), "");
    done(&c);
    ck_assert_int_eq(counter(id), 0);
    ck_assert_int_eq(stored_cents(id), 30);

    expect_error((call[]){run("PATCH", "/api/products/:id", "id", id, "{}")}, 400,
                 "validation_failed");
    expect_error((call[]){run("PATCH", "/api/products/:id", "id", id, "{\"price\":1.234}")}, 400,
                 "validation_failed");
    expect_error((call[]){run("PATCH", "/api/products/:id", "id", id, "{\"stock\":1.5}")}, 400,
                 "validation_failed");
    expect_error((call[]){run("PATCH", "/api/products/:id", "id", id, "{\"id\":\"x\"}")}, 400,
                 "validation_failed");
    expect_error((call[]){run("PATCH", "/api/products/:id", "id", MISSING_ID, "{\"stock\":1}")},
                 404, "not_found");
}
END_TEST

START_TEST(test_update_retries_lost_race)
{
    char id[64];
    snprintf(id, sizeof id, "%s", create("Race", "1", 1));
    F.version_put = OD_ERR_CONFLICT;
    F.version_put_times = 2;
    call c = run("PATCH", "/api/products/:id", "id", id, "{\"stock\":5}");
    ck_assert_int_eq(status(&c), 200);
    done(&c);
    ck_assert_int_eq(atomic_load(&F.version_puts), 3);
    ck_assert_int_eq(counter(id), 5);

    /* A document that never stops changing: give up after update_attempts (5). */
    F.version_put_times = -1;
    atomic_store(&F.version_puts, 0);
    expect_error((call[]){run("PATCH", "/api/products/:id", "id", id, "{\"stock\":6}")}, 409,
                 "conflict");
    ck_assert_int_eq(atomic_load(&F.version_puts), 5);
    ck_assert_int_eq(counter(id), 5);
}
END_TEST

START_TEST(test_backend_unavailable_is_503)
{
    char id[64];
    snprintf(id, sizeof id, "%s", create("Down", "1", 1));
    F.get = OD_ERR_UNAVAILABLE;
    F.scan = OD_ERR_UNAVAILABLE;
    expect_error((call[]){run_as(OD_ROLE_CUSTOMER, "GET", "/api/products/:id", "id", id, NULL,
                                 NULL)},
                 503, "unavailable");
    expect_error((call[]){run_as(0, "GET", "/api/products", NULL, NULL, NULL, NULL)}, 503,
                 "unavailable");
    expect_error((call[]){run("PATCH", "/api/products/:id", "id", id, "{\"stock\":5}")}, 503,
                 "unavailable");
    expect_error((call[]){run("DELETE", "/api/products/:id", "id", id, NULL)}, 503,
                 "unavailable");
}
END_TEST

/* ---- concurrency ---- */

enum { RACERS = 8, RACE_ROUNDS = 10 };

typedef struct racer {
    const char *method, *pattern, *id, *body;
    int ok, conflict, other;
} racer;

/* Handlers run on many workers at once: each racer sends its requests from
 * its own thread and counts the outcomes (Check asserts stay on the main
 * thread). */
static void *race(void *arg)
{
    racer *rc = arg;
    for (int i = 0; i < RACE_ROUNDS; i++) {
        od_request *r = mock_request_new(rc->method, rc->pattern);
        if (rc->id)
            mock_request_param(r, "id", rc->id);
        mock_request_body(r, rc->body);
        mock_request_principal(r, ADMIN_ID, OD_ROLE_ADMIN);
        od_status s = mock_route(rc->method, rc->pattern, NULL)(products_self, r);
        int code = mock_reply_status(r);
        if (s == OD_OK && (code == 200 || code == 201))
            rc->ok++;
        else if (s == OD_OK && code == 409)
            rc->conflict++;
        else
            rc->other++;
        mock_request_free(r);
    }
    return NULL;
}

static void race_all(racer *rcs)
{
    pthread_t t[RACERS];
    for (int i = 0; i < RACERS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, race, &rcs[i]), 0);
    for (int i = 0; i < RACERS; i++)
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
}

START_TEST(test_concurrent_creates_keep_names_unique)
{
    racer rcs[RACERS];
    for (int i = 0; i < RACERS; i++)
        rcs[i] = (racer){"POST", "/api/products", NULL,
                         "{\"name\":\"Same\",\"price\":1,\"stock\":1}", 0, 0, 0};
    race_all(rcs);
    int ok = 0, conflict = 0, other = 0;
    for (int i = 0; i < RACERS; i++)
        ok += rcs[i].ok, conflict += rcs[i].conflict, other += rcs[i].other;
    ck_assert_int_eq(ok, 1);
    ck_assert_int_eq(conflict, RACERS * RACE_ROUNDS - 1);
    ck_assert_int_eq(other, 0);
}
END_TEST

START_TEST(test_concurrent_patches_lose_no_update)
{
    char id[64];
    snprintf(id, sizeof id, "%s", create("Busy", "1", 1));
    racer rcs[RACERS];
    for (int i = 0; i < RACERS; i++)
        rcs[i] = (racer){"PATCH", "/api/products/:id", id, "{\"price\":2.22}", 0, 0, 0};
    race_all(rcs);
    int ok = 0, other = 0;
    for (int i = 0; i < RACERS; i++)
        ok += rcs[i].ok, other += rcs[i].other;
    /* 409 is allowed (retries exhausted under contention); 5xx is not. */
    ck_assert_int_ge(ok, 1);
    ck_assert_int_eq(other, 0);
    ck_assert_int_eq(stored_cents(id), 222);
}
END_TEST

/* ---- delete ---- */

START_TEST(test_delete_removes_product_and_stock)
{
    char id[64];
    snprintf(id, sizeof id, "%s", create("Doomed", "7.07", 12));
    call c = run("DELETE", "/api/products/:id", "id", id, NULL);
    ck_assert_int_eq(status(&c), 200);
    ck_assert_str_eq(str(&c, "data", "id"), id);
    ck_assert_int_eq(num(&c, "data", "stock"), 12);
    ck_assert_ptr_nonnull(strstr(mock_reply_body(c.r), "\"price\":7.07,"));
    done(&c);
    ck_assert_int_eq(counter(id), -1);
    expect_error((call[]){run_as(OD_ROLE_CUSTOMER, "GET", "/api/products/:id", "id", id, NULL,
                                 NULL)},
                 404, "not_found");
    expect_error((call[]){run("DELETE", "/api/products/:id", "id", id, NULL)}, 404, "not_found");
    expect_error((call[]){run("DELETE", "/api/products/:id", "id", "bad id", NULL)}, 404,
                 "not_found");
    /* The name is free again. */
    create("Doomed", "1", 1);
}
END_TEST

/* ---- rendered-view cache ---- */

/* Copy the whole envelope of a 200 GET as a customer into out. */
static void get_body(const char *pattern, const char *param, const char *value, char *out,
                     size_t cap)
{
    call c = run_as(OD_ROLE_CUSTOMER, "GET", pattern, param, value, NULL, NULL);
    ck_assert_msg(status(&c) == 200, "%s", mock_reply_body(c.r));
    snprintf(out, cap, "%s", mock_reply_body(c.r));
    done(&c);
}

typedef struct get_job {
    const char *id;
    char body[1024];
} get_job;

static void *get_on_new_thread(void *arg)
{
    get_job *j = arg;
    od_request *r = mock_request_new("GET", "/api/products/:id");
    mock_request_param(r, "id", j->id);
    mock_request_principal(r, USER_ID, OD_ROLE_CUSTOMER);
    j->body[0] = '\0';
    if (mock_route("GET", "/api/products/:id", NULL)(products_self, r) == OD_OK &&
        mock_reply_status(r) == 200)
        snprintf(j->body, sizeof j->body, "%s", mock_reply_body(r));
    mock_request_free(r);
    return NULL;
}

/* First read on a thread renders with json-c, the next ones (by id, alias,
 * name) come from that thread's cache, a new thread renders again: all the
 * same bytes. */
START_TEST(test_cached_view_equals_fresh_render)
{
    char id[64], miss[1024], hit[1024], other[1024];
    snprintf(id, sizeof id, "%s", create("Cached", "5.25", 7));
    get_body("/api/products/:id", "id", id, miss, sizeof miss);
    get_body("/api/products/:id", "id", id, hit, sizeof hit);
    ck_assert_str_eq(hit, miss);
    ck_assert_ptr_nonnull(strstr(hit, "\"price\":5.25,\"stock\":7,"));
    get_body("/api/products/id/:id", "id", id, other, sizeof other);
    ck_assert_str_eq(other, miss);
    get_body("/api/products/name/:name", "name", "Cached", other, sizeof other);
    ck_assert_str_eq(other, miss);

    get_job j = {.id = id};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, get_on_new_thread, &j), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_str_eq(j.body, miss);
}
END_TEST

START_TEST(test_changes_visible_right_after_cached_read)
{
    char id[64], body[1024];
    snprintf(id, sizeof id, "%s", create("Fresh", "1", 10));
    for (int i = 0; i < 2; i++) /* the second read is a cache hit */
        get_body("/api/products/:id", "id", id, body, sizeof body);
    /* A reservation moves only the counter. */
    ck_assert_int_eq(F.real->ops->counter_set(F.real->self, "stock", id, 4), OD_OK);
    get_body("/api/products/:id", "id", id, body, sizeof body);
    ck_assert_ptr_nonnull(strstr(body, "\"stock\":4,"));
    get_body("/api/products/name/:name", "name", "Fresh", body, sizeof body);
    ck_assert_ptr_nonnull(strstr(body, "\"stock\":4,"));
    /* An update moves the document. */
    call c = run("PATCH", "/api/products/:id", "id", id, "{\"price\":2.5}");
    ck_assert_int_eq(status(&c), 200);
    done(&c);
    get_body("/api/products/:id", "id", id, body, sizeof body);
    ck_assert_ptr_nonnull(strstr(body, "\"price\":2.5,\"stock\":4,"));
    /* A deleted product is gone, cached or not. */
    c = run("DELETE", "/api/products/:id", "id", id, NULL);
    done(&c);
    expect_error((call[]){run_as(OD_ROLE_CUSTOMER, "GET", "/api/products/:id", "id", id, NULL,
                                 NULL)},
                 404, "not_found");
}
END_TEST

/* Views above the per-entry cap are rendered every time, and still fresh. */
START_TEST(test_large_view_not_cached_but_correct)
{
    char *desc = repeat("d", 2000), body[8192], first[8192], second[8192];
    char id[64];
    snprintf(body, sizeof body, "{\"name\":\"Big\",\"price\":1,\"stock\":1,\"description\":\"%s\"}",
             desc);
    call c = run("POST", "/api/products", NULL, NULL, body);
    ck_assert_int_eq(status(&c), 201);
    snprintf(id, sizeof id, "%s", str(&c, "data", "id"));
    done(&c);
    get_body("/api/products/:id", "id", id, first, sizeof first);
    get_body("/api/products/:id", "id", id, second, sizeof second);
    ck_assert_str_eq(first, second);
    ck_assert_ptr_nonnull(strstr(first, desc));
    ck_assert_int_eq(F.real->ops->counter_set(F.real->self, "stock", id, 9), OD_OK);
    get_body("/api/products/:id", "id", id, second, sizeof second);
    ck_assert_ptr_nonnull(strstr(second, "\"stock\":9,"));
    free(desc);
}
END_TEST

enum { VIEW_READERS = 4, VIEW_ROUNDS = 300 };

typedef struct view_reader {
    const char *ids[2];
    int changer; /* also moves the first product's stock every round */
    int ok, wrong;
} view_reader;

/* A reply is right when it is JSON for the product asked for, with a
 * stock in the range the changer moves it through. */
static int view_is_right(od_request *r, const char *id)
{
    json_object *o = json_tokener_parse(mock_reply_body(r)), *data = NULL, *v = NULL;
    int right = mock_reply_status(r) == 200 && json_object_object_get_ex(o, "data", &data) &&
                json_object_object_get_ex(data, "id", &v) &&
                strcmp(json_object_get_string(v), id) == 0 &&
                json_object_object_get_ex(data, "stock", &v) && json_object_get_int64(v) >= 0 &&
                json_object_get_int64(v) <= VIEW_ROUNDS;
    json_object_put(o);
    return right;
}

static void *view_race(void *arg)
{
    view_reader *vr = arg;
    for (int i = 0; i < VIEW_ROUNDS; i++) {
        if (vr->changer &&
            F.real->ops->counter_set(F.real->self, "stock", vr->ids[0], i + 1) != OD_OK)
            vr->wrong++;
        const char *id = vr->ids[i % 2];
        od_request *r = mock_request_new("GET", "/api/products/:id");
        mock_request_param(r, "id", id);
        mock_request_principal(r, USER_ID, OD_ROLE_CUSTOMER);
        if (mock_route("GET", "/api/products/:id", NULL)(products_self, r) == OD_OK &&
            view_is_right(r, id))
            vr->ok++;
        else
            vr->wrong++;
        mock_request_free(r);
    }
    return NULL;
}

START_TEST(test_cached_views_under_concurrency)
{
    char a[64], b[64], body[1024];
    snprintf(a, sizeof a, "%s", create("Racy A", "1", 0));
    snprintf(b, sizeof b, "%s", create("Racy B", "2", 0));
    view_reader vr[VIEW_READERS];
    pthread_t t[VIEW_READERS];
    for (int i = 0; i < VIEW_READERS; i++) {
        vr[i] = (view_reader){.ids = {a, b}, .changer = i == 0};
        ck_assert_int_eq(pthread_create(&t[i], NULL, view_race, &vr[i]), 0);
    }
    for (int i = 0; i < VIEW_READERS; i++) {
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
        ck_assert_int_eq(vr[i].wrong, 0);
        ck_assert_int_eq(vr[i].ok, VIEW_ROUNDS);
    }
    get_body("/api/products/:id", "id", a, body, sizeof body);
    char want[32];
    snprintf(want, sizeof want, "\"stock\":%d,", VIEW_ROUNDS);
    ck_assert_ptr_nonnull(strstr(body, want));
}
END_TEST

static Suite *products_suite(void)
{
    Suite *s = suite_create("products");
    TCase *tc = tcase_create("api");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_routes_declare_access);
    tcase_add_test(tc, test_init_config_errors);
    tcase_add_test(tc, test_create_returns_product);
    tcase_add_loop_test(tc, test_create_rejects_bad_input, 0,
                        (int)(sizeof BAD_CREATES / sizeof BAD_CREATES[0]));
    tcase_add_test(tc, test_create_length_limits);
    tcase_add_test(tc, test_create_duplicate_name_conflicts);
    tcase_add_loop_test(tc, test_price_round_trip_is_exact, 0,
                        (int)(sizeof PRICES / sizeof PRICES[0]));
    tcase_add_test(tc, test_price_sum_stays_exact);
    tcase_add_test(tc, test_get_by_id_alias_and_name);
    tcase_add_test(tc, test_list_walks_every_page);
    tcase_add_test(tc, test_list_defaults_and_bad_params);
    tcase_add_test(tc, test_put_replaces_everything);
    tcase_add_test(tc, test_rename_to_taken_name_conflicts);
    tcase_add_test(tc, test_patch_changes_only_what_is_sent);
    tcase_add_test(tc, test_update_retries_lost_race);
    tcase_add_test(tc, test_backend_unavailable_is_503);
    tcase_add_test(tc, test_delete_removes_product_and_stock);
    tcase_add_test(tc, test_concurrent_creates_keep_names_unique);
    tcase_add_test(tc, test_concurrent_patches_lose_no_update);
    suite_add_tcase(s, tc);

    TCase *cache = tcase_create("view_cache");
    tcase_add_checked_fixture(cache, setup, teardown);
    tcase_add_test(cache, test_cached_view_equals_fresh_render);
    tcase_add_test(cache, test_changes_visible_right_after_cached_read);
    tcase_add_test(cache, test_large_view_not_cached_but_correct);
    tcase_add_test(cache, test_cached_views_under_concurrency);
    suite_add_tcase(s, cache);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(products_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
