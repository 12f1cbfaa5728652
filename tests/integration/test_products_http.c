/*
 * integ_products: the /api/products REST contract against a real orderd -
 * create with every kind of bad input, exact money, access rules (public
 * list, signed-in reads, admin writes), duplicate names, 404s, the
 * pagination walk, the /id/:id alias, lookup by a %-encoded name, replace,
 * patch and delete.
 *
 * One shared server; every test uses product names of its own, so the tests
 * do not depend on each other's order.
 */
#include "orders_helpers.h"

#include <string.h>

static ih_server srv;
static const char *admin;    /* tokens, re-issued per test (ih_release frees them) */
static const char *customer;

static void start_shared(void)
{
    oh_server_start(&srv, "autostart = false; threads = 1;");
}

static void stop_shared(void)
{
    ih_server_stop(&srv);
}

static void login(void)
{
    admin = oh_admin(&srv);
    customer = ih_login(&srv, "shopper@test.local", "customer-password-1");
}

static void release(void)
{
    ih_release();
}

static void register_shopper(void)
{
    start_shared();
    ih_register(&srv, "Shopper", "shopper@test.local", "customer-password-1");
    ih_release();
}

static ih_response *post_product(const char *token, const char *body)
{
    return ih_send_json(&srv, "POST", "/api/products", token, body);
}

/* ---- create ---- */

START_TEST(create_returns_product)
{
    ih_response *r = post_product(admin, "{\"name\":\"  Lamp  \",\"price\":19.99,\"stock\":25,"
                                         "\"description\":\"A desk lamp\"}");
    ck_assert_int_eq(r->status, 201);
    const char *id = ih_str(r, "data.id");
    ck_assert_msg(id && *id, "no id: %s", r->body);
    ck_assert_str_eq(ih_str(r, "data.name"), "Lamp"); /* trimmed */
    ck_assert_str_eq(ih_str(r, "data.description"), "A desk lamp");
    ck_assert_msg(strstr(r->body, "\"price\":19.99,") != NULL, "price text: %s", r->body);
    ck_assert_int_eq(oh_int(r, "data.stock"), 25);
    ck_assert_ptr_nonnull(ih_str(r, "data.createdAt"));
    ck_assert_ptr_nonnull(ih_str(r, "data.updatedAt"));

    ih_response *got = ih_get(&srv, ih_printf("/api/products/%s", id), customer);
    ck_assert_int_eq(got->status, 200);
    ck_assert_str_eq(ih_str(got, "data.name"), "Lamp");
    ck_assert_str_eq(ih_str(got, "data.createdAt"), ih_str(r, "data.createdAt"));
}
END_TEST

typedef struct bad_body {
    const char *body;
    const char *code;
} bad_body;

static const bad_body bad_products[] = {
    { "", "invalid_json" },
    { "{", "invalid_json" },
    { "[]", "invalid_json" },
    { "{\"name\":\"B\",\"price\":1,\"stock\":1} x", "invalid_json" },
    { "{\"name\":\"B\",\"price\":NaN,\"stock\":1}", "invalid_json" },
    { "{\"name\":\"B\",\"price\":1e400,\"stock\":1}", "invalid_json" },
    { "{\"name\":\"B\",\"price\":1,\"stock\":99999999999999999999}", "invalid_json" },
    /* wrong types */
    { "{\"name\":123,\"price\":1,\"stock\":1}", "validation_failed" },
    { "{\"name\":[\"B\"],\"price\":1,\"stock\":1}", "validation_failed" },
    { "{\"name\":\"B\",\"price\":\"1.00\",\"stock\":1}", "validation_failed" },
    { "{\"name\":\"B\",\"price\":true,\"stock\":1}", "validation_failed" },
    { "{\"name\":\"B\",\"price\":1,\"stock\":1.5}", "validation_failed" },
    { "{\"name\":\"B\",\"price\":1,\"stock\":\"3\"}", "validation_failed" },
    { "{\"name\":\"B\",\"price\":1,\"stock\":1,\"description\":5}", "validation_failed" },
    /* out of range */
    { "{\"name\":\"B\",\"price\":1.999,\"stock\":1}", "validation_failed" },
    { "{\"name\":\"B\",\"price\":0.001,\"stock\":1}", "validation_failed" },
    { "{\"name\":\"B\",\"price\":-1,\"stock\":1}", "validation_failed" },
    { "{\"name\":\"B\",\"price\":-0.01,\"stock\":1}", "validation_failed" },
    { "{\"name\":\"B\",\"price\":1,\"stock\":-1}", "validation_failed" },
    { "{\"name\":\"B\",\"price\":1e20,\"stock\":1}", "validation_failed" },
    { "{\"name\":\"B\",\"price\":99999999999999999999.99,\"stock\":1}", "validation_failed" },
    { "{\"name\":\"B\",\"price\":1,\"stock\":1000000001}", "validation_failed" },
    { "{\"name\":\"B\",\"price\":1,\"stock\":9223372036854775807}", "validation_failed" },
    /* missing or empty */
    { "{}", "validation_failed" },
    { "{\"price\":1,\"stock\":1}", "validation_failed" },
    { "{\"name\":\"B\",\"stock\":1}", "validation_failed" },
    { "{\"name\":\"B\",\"price\":1}", "validation_failed" },
    { "{\"name\":\"B\",\"price\":null,\"stock\":1}", "validation_failed" },
    { "{\"name\":\"\",\"price\":1,\"stock\":1}", "validation_failed" },
    { "{\"name\":\"   \",\"price\":1,\"stock\":1}", "validation_failed" },
    { "{\"name\":\"B\\u0001\",\"price\":1,\"stock\":1}", "validation_failed" },
    { "{\"name\":\"B\",\"price\":1,\"stock\":1,\"color\":\"red\"}", "validation_failed" },
};

START_TEST(create_rejects_bad_input)
{
    for (size_t i = 0; i < sizeof bad_products / sizeof *bad_products; i++) {
        const bad_body *b = &bad_products[i];
        ih_response *r = post_product(admin, b->body);
        ck_assert_msg(r->status == 400, "case %zu %s -> %ld %s", i, b->body, r->status, r->body);
        ih_assert_error(r, 400, b->code);
    }
    /* Nothing of it was stored: the name "B" is still free. */
    ck_assert_int_eq(post_product(admin, "{\"name\":\"B\",\"price\":1,\"stock\":1}")->status, 201);
}
END_TEST

/* unit written n times (harness-owned). */
static const char *repeat(const char *unit, int n)
{
    const char *s = "";
    for (int i = 0; i < n; i++)
        s = ih_printf("%s%s", s, unit);
    return s;
}

static ih_response *post_named(const char *name)
{
    return post_product(admin, ih_printf("{\"name\":\"%s\",\"price\":1,\"stock\":1}", name));
}

START_TEST(name_length_counts_characters)
{
    ck_assert_int_eq(post_named(repeat("n", 200))->status, 201);
    ih_assert_error(post_named(repeat("m", 201)), 400, "validation_failed");
    /* 200 two-byte characters are 200 characters, not 400. */
    ck_assert_int_eq(post_named(repeat("\xc3\xa9", 200))->status, 201);
    ih_assert_error(post_named(repeat("\xc3\xa9", 201)), 400, "validation_failed");

    /* 300 bytes: longer than a storage key, so indexed by hash; still
     * found by name and still unique. */
    ih_response *r = post_named(repeat("\xc3\xb6", 150));
    ck_assert_int_eq(r->status, 201);
    const char *id = ih_strdup(ih_str(r, "data.id"));
    r = ih_get(&srv, ih_printf("/api/products/name/%s", repeat("%C3%B6", 150)), customer);
    ck_assert_msg(r->status == 200, "long name lookup: %ld %s", r->status, r->body);
    ck_assert_str_eq(ih_str(r, "data.id"), id);
    ih_assert_error(post_named(repeat("\xc3\xb6", 150)), 409, "conflict");
}
END_TEST

START_TEST(price_is_exact)
{
    static const struct {
        const char *sent, *shown;
    } prices[] = {
        { "0.1", "0.1" }, { "0", "0" },        { "1.50", "1.5" },
        { "1.5e1", "15" }, { "1999e-2", "19.99" }, { "10000000000", "10000000000" },
    };
    for (size_t i = 0; i < sizeof prices / sizeof *prices; i++) {
        const char *body =
            ih_printf("{\"name\":\"Priced %zu\",\"price\":%s,\"stock\":0}", i, prices[i].sent);
        ih_response *r = post_product(admin, body);
        ck_assert_msg(r->status == 201, "price %s -> %ld %s", prices[i].sent, r->status, r->body);
        ck_assert_msg(strstr(r->body, ih_printf("\"price\":%s,", prices[i].shown)) != NULL,
                      "price %s shown as: %s", prices[i].sent, r->body);
    }
}
END_TEST

/* ---- access ---- */

static void assert_unauthorized(const ih_response *r)
{
    ih_assert_error(r, 401, "unauthorized");
}

START_TEST(access_rules)
{
    const char *id = oh_product(&srv, admin, "Guarded", "5", 3);
    const char *one = ih_printf("/api/products/%s", id);
    const char *body = "{\"name\":\"Guarded\",\"price\":5,\"stock\":3}";

    /* The list is public; everything else needs a token. */
    ih_response *r = ih_get(&srv, "/api/products", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_msg(json_object_is_type(ih_json(r, "data"), json_type_array), "%s", r->body);
    assert_unauthorized(ih_get(&srv, one, NULL));
    assert_unauthorized(ih_get(&srv, ih_printf("/api/products/id/%s", id), NULL));
    assert_unauthorized(ih_get(&srv, "/api/products/name/Guarded", NULL));
    assert_unauthorized(post_product(NULL, "{\"name\":\"X\",\"price\":1,\"stock\":1}"));
    assert_unauthorized(ih_send_json(&srv, "PUT", one, NULL, body));
    assert_unauthorized(ih_send_json(&srv, "PATCH", one, NULL, "{\"stock\":1}"));
    assert_unauthorized(ih_request(&srv, "DELETE", one, NULL, NULL, 0));
    assert_unauthorized(ih_get(&srv, one, "not-a-token"));

    /* A customer reads but never writes. */
    ck_assert_int_eq(ih_get(&srv, one, customer)->status, 200);
    ih_assert_error(post_product(customer, "{\"name\":\"X\",\"price\":1,\"stock\":1}"), 403,
                    "forbidden");
    ih_assert_error(ih_send_json(&srv, "PUT", one, customer, body), 403, "forbidden");
    ih_assert_error(ih_send_json(&srv, "PATCH", one, customer, "{\"stock\":999}"), 403,
                    "forbidden");
    const char *auth[] = { ih_printf("Authorization: Bearer %s", customer), NULL };
    ih_assert_error(ih_request(&srv, "DELETE", one, auth, NULL, 0), 403, "forbidden");
    ck_assert_int_eq(oh_stock(&srv, customer, id), 3);
}
END_TEST

/* ---- conflicts and 404s ---- */

START_TEST(duplicate_name_is_409)
{
    oh_product(&srv, admin, "Unique Chair", "10", 1);
    ih_assert_error(post_product(admin, "{\"name\":\"Unique Chair\",\"price\":11,\"stock\":2}"),
                    409, "conflict");
    ih_assert_error(post_product(admin, "{\"name\":\" Unique Chair \",\"price\":11,\"stock\":2}"),
                    409, "conflict");
    /* A rename onto a taken name conflicts too, and changes nothing. */
    const char *other = oh_product(&srv, admin, "Other Chair", "10", 1);
    const char *path = ih_printf("/api/products/%s", other);
    ih_assert_error(ih_send_json(&srv, "PATCH", path, admin, "{\"name\":\"Unique Chair\"}"), 409,
                    "conflict");
    ih_assert_error(ih_send_json(&srv, "PUT", path, admin,
                                 "{\"name\":\"Unique Chair\",\"price\":1,\"stock\":1}"),
                    409, "conflict");
    ck_assert_str_eq(ih_str(ih_get(&srv, path, admin), "data.name"), "Other Chair");
}
END_TEST

START_TEST(unknown_ids_are_404)
{
    const char *missing = "/api/products/00000000-0000-7000-8000-000000000000";
    const char *auth[] = { ih_printf("Authorization: Bearer %s", admin), NULL };
    ih_assert_error(ih_get(&srv, missing, customer), 404, "not_found");
    ih_assert_error(ih_get(&srv, "/api/products/id/00000000-0000-7000-8000-000000000000",
                           customer),
                    404, "not_found");
    ih_assert_error(ih_get(&srv, "/api/products/name/No%20Such%20Thing", customer), 404,
                    "not_found");
    ih_assert_error(ih_send_json(&srv, "PUT", missing, admin,
                                 "{\"name\":\"Ghost\",\"price\":1,\"stock\":1}"),
                    404, "not_found");
    ih_assert_error(ih_send_json(&srv, "PATCH", missing, admin, "{\"stock\":1}"), 404,
                    "not_found");
    ih_assert_error(ih_request(&srv, "DELETE", missing, auth, NULL, 0), 404, "not_found");

    /* Odd ids are client errors, never 500. */
    static const char *const odd[] = { "/api/products/%2e%2e%2fetc", "/api/products/%00",
                                       "/api/products/a%20b", "/api/products/%ff%fe" };
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
        ih_response *r = ih_get(&srv, odd[i], customer);
        ck_assert_msg(r->status >= 400 && r->status < 500, "%s -> %ld", odd[i], r->status);
    }
    ih_response *r = ih_get(&srv, ih_printf("/api/products/%0300d", 7), customer);
    ck_assert_msg(r->status >= 400 && r->status < 500, "long id -> %ld", r->status);
}
END_TEST

/* ---- reads ---- */

START_TEST(id_alias_and_name_lookup)
{
    const char *name = "Tool / Set 10 pcs";
    const char *id = oh_product(&srv, admin, name, "7.25", 4);
    ih_response *a = ih_get(&srv, ih_printf("/api/products/%s", id), customer);
    ih_response *b = ih_get(&srv, ih_printf("/api/products/id/%s", id), customer);
    ck_assert_int_eq(a->status, 200);
    ck_assert_int_eq(b->status, 200);
    ck_assert_str_eq(a->body, b->body);

    /* '/' and spaces %-encoded: one path segment, decoded once. */
    ih_response *r = ih_get(&srv, "/api/products/name/Tool%20%2F%20Set%2010%20pcs", customer);
    ck_assert_msg(r->status == 200, "by name: %ld %s", r->status, r->body);
    ck_assert_str_eq(ih_str(r, "data.id"), id);
    ck_assert_str_eq(ih_str(r, "data.name"), name);
    /* The raw '/' is another route, and the name is exact. */
    r = ih_get(&srv, "/api/products/name/Tool%20/%20Set%2010%20pcs", customer);
    ck_assert_msg(r->status == 404, "unencoded '/': %ld %s", r->status, r->body);
    ih_assert_error(ih_get(&srv, "/api/products/name/tool%20%2F%20set%2010%20pcs", customer), 404,
                    "not_found");
}
END_TEST

static int listed(char **ids, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ids[i], id) == 0)
            return 1;
    return 0;
}

START_TEST(pagination_walks_all_once)
{
    enum { CREATED = 9, PAGE = 2, MAX_SEEN = 400 };
    const char *created[CREATED];
    for (int i = 0; i < CREATED; i++)
        created[i] = oh_product(&srv, admin, ih_printf("Paged %d", i), "1", i);

    char *seen[MAX_SEEN];
    size_t n_seen = 0;
    const char *cursor = NULL;
    do {
        const char *path = cursor ? ih_printf("/api/products?limit=%d&cursor=%s", PAGE, cursor)
                                  : ih_printf("/api/products?limit=%d", PAGE);
        ih_response *r = ih_get(&srv, path, NULL);
        ck_assert_msg(r->status == 200, "%s -> %ld %s", path, r->status, r->body);
        struct json_object *items = ih_json(r, "data");
        ck_assert_uint_le(json_object_array_length(items), PAGE);
        for (size_t i = 0; i < json_object_array_length(items); i++) {
            struct json_object *id = NULL;
            json_object_object_get_ex(json_object_array_get_idx(items, i), "id", &id);
            ck_assert_ptr_nonnull(json_object_get_string(id));
            ck_assert_msg(!listed(seen, n_seen, json_object_get_string(id)), "repeated %s",
                          json_object_get_string(id));
            ck_assert_uint_lt(n_seen, MAX_SEEN);
            seen[n_seen++] = ih_strdup(json_object_get_string(id));
        }
        ck_assert_msg(json_object_object_get_ex(r->json, "next", NULL), "no next: %s", r->body);
        const char *next = ih_str(r, "next");
        cursor = next ? ih_strdup(next) : NULL;
    } while (cursor);

    for (int i = 0; i < CREATED; i++)
        ck_assert_msg(listed(seen, n_seen, created[i]), "product %s never listed", created[i]);
    ih_response *all = ih_get(&srv, "/api/products?limit=100", NULL);
    ck_assert_uint_eq(json_object_array_length(ih_json(all, "data")), n_seen);

    static const char *const bad[] = { "limit=0", "limit=101", "limit=abc", "limit=-1",
                                       "limit=1.5", "limit=99999999999999999999",
                                       "cursor=garbage", "cursor=%ff%fe" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ih_assert_error(ih_get(&srv, ih_printf("/api/products?%s", bad[i]), NULL), 400,
                        "validation_failed");
}
END_TEST

/* ---- writes ---- */

START_TEST(replace_patch_delete)
{
    const char *id = oh_product(&srv, admin, "Kettle", "30", 5);
    const char *path = ih_printf("/api/products/%s", id);
    ih_response *r = ih_send_json(&srv, "PATCH", path, admin,
                                  "{\"description\":\"Steel\",\"price\":29.5}");
    ck_assert_msg(r->status == 200, "patch: %ld %s", r->status, r->body);
    ck_assert_str_eq(ih_str(r, "data.name"), "Kettle");
    ck_assert_str_eq(ih_str(r, "data.description"), "Steel");
    ck_assert_msg(strstr(r->body, "\"price\":29.5,") != NULL, "%s", r->body);
    ck_assert_int_eq(oh_int(r, "data.stock"), 5);

    /* PUT replaces: the description absent from the body is gone. */
    r = ih_send_json(&srv, "PUT", path, admin,
                     "{\"name\":\"Kettle 2\",\"price\":31,\"stock\":8}");
    ck_assert_msg(r->status == 200, "put: %ld %s", r->status, r->body);
    ck_assert_str_eq(ih_str(r, "data.name"), "Kettle 2");
    ck_assert_str_eq(ih_str(r, "data.description"), "");
    ck_assert_int_eq(oh_int(r, "data.stock"), 8);
    ck_assert_str_eq(ih_str(r, "data.id"), id);
    ck_assert_int_eq(oh_stock(&srv, customer, id), 8);

    ih_assert_error(ih_send_json(&srv, "PUT", path, admin, "{\"name\":\"Kettle 3\"}"), 400,
                    "validation_failed");
    ih_assert_error(ih_send_json(&srv, "PATCH", path, admin, "{}"), 400, "validation_failed");
    ih_assert_error(ih_send_json(&srv, "PATCH", path, admin, "{\"price\":1.234}"), 400,
                    "validation_failed");
    ih_assert_error(ih_send_json(&srv, "PATCH", path, admin, "{\"stock\":-5}"), 400,
                    "validation_failed");
    ih_assert_error(ih_send_json(&srv, "PATCH", path, admin, "{\"id\":\"x\"}"), 400,
                    "validation_failed");
    ih_assert_error(ih_send_json(&srv, "PATCH", path, admin, "{\"stock\":"), 400, "invalid_json");
    /* The old name was freed by the rename. */
    ck_assert_int_eq(post_product(admin, "{\"name\":\"Kettle\",\"price\":1,\"stock\":1}")->status,
                     201);

    const char *auth[] = { ih_printf("Authorization: Bearer %s", admin), NULL };
    r = ih_request(&srv, "DELETE", path, auth, NULL, 0);
    ck_assert_msg(r->status == 200, "delete: %ld %s", r->status, r->body);
    ck_assert_str_eq(ih_str(r, "data.id"), id);
    ck_assert_str_eq(ih_str(r, "data.name"), "Kettle 2");
    ih_assert_error(ih_get(&srv, path, customer), 404, "not_found");
    ih_assert_error(ih_get(&srv, "/api/products/name/Kettle%202", customer), 404, "not_found");
    ih_assert_error(ih_request(&srv, "DELETE", path, auth, NULL, 0), 404, "not_found");
    /* Its name can be used again. */
    ck_assert_int_eq(
        post_product(admin, "{\"name\":\"Kettle 2\",\"price\":1,\"stock\":1}")->status, 201);
}
END_TEST

static Suite *products_suite(void)
{
    ih_forbid(IH_ADMIN_PASSWORD);
    Suite *s = suite_create("integ_products");
    TCase *tc = tcase_create("shared");
    tcase_add_unchecked_fixture(tc, register_shopper, stop_shared);
    tcase_add_checked_fixture(tc, login, release);
    tcase_add_test(tc, create_returns_product);
    tcase_add_test(tc, create_rejects_bad_input);
    tcase_add_test(tc, name_length_counts_characters);
    tcase_add_test(tc, price_is_exact);
    tcase_add_test(tc, access_rules);
    tcase_add_test(tc, duplicate_name_is_409);
    tcase_add_test(tc, unknown_ids_are_404);
    tcase_add_test(tc, id_alias_and_name_lookup);
    tcase_add_test(tc, pagination_walks_all_once);
    tcase_add_test(tc, replace_patch_delete);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ih_run_suite(products_suite());
}
