/* Unit tests for core/router.c: precedence, 404/405, decoding, validation. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

static od_status h_a(void *self, od_request *r) { (void)self; (void)r; return OD_OK; }
static od_status h_b(void *self, od_request *r) { (void)self; (void)r; return OD_OK; }

static od_router *rt;

static void setup(void) { rt = od_router_new(); ck_assert_ptr_nonnull(rt); }
static void teardown(void) { od_router_free(rt); }

static od_status add(const char *method, const char *pattern, od_handler_fn fn)
{
    return od_router_add(rt, method, pattern, OD_ACCESS_PUBLIC, fn, NULL, "test");
}

START_TEST(literal_beats_param)
{
    ck_assert_int_eq(add("GET", "/api/users/:id", h_a), OD_OK);
    ck_assert_int_eq(add("GET", "/api/users/me", h_b), OD_OK);
    od_route_match m;
    ck_assert_int_eq(od_router_match(rt, "GET", "/api/users/me", &m), 200);
    ck_assert_str_eq(m.route->pattern, "/api/users/me");
    ck_assert_uint_eq(m.n_params, 0);
    od_route_match_clear(&m);
    ck_assert_int_eq(od_router_match(rt, "GET", "/api/users/42", &m), 200);
    ck_assert_str_eq(m.route->pattern, "/api/users/:id");
    ck_assert_uint_eq(m.n_params, 1);
    ck_assert_str_eq(m.param_names[0], "id");
    ck_assert_str_eq(m.param_values[0], "42");
    od_route_match_clear(&m);
}
END_TEST

START_TEST(literal_first_segment_decides)
{
    /* /a/:x/c vs /a/b/:y: the literal at the first difference wins. */
    ck_assert_int_eq(add("GET", "/a/:x/c", h_a), OD_OK);
    ck_assert_int_eq(add("GET", "/a/b/:y", h_b), OD_OK);
    od_route_match m;
    ck_assert_int_eq(od_router_match(rt, "GET", "/a/b/c", &m), 200);
    ck_assert_str_eq(m.route->pattern, "/a/b/:y");
    od_route_match_clear(&m);
}
END_TEST

START_TEST(not_found_vs_method_not_allowed)
{
    ck_assert_int_eq(add("GET", "/api/orders", h_a), OD_OK);
    ck_assert_int_eq(add("POST", "/api/orders", h_a), OD_OK);
    ck_assert_int_eq(add("DELETE", "/api/orders/:id", h_a), OD_OK);
    od_route_match m;
    ck_assert_int_eq(od_router_match(rt, "PUT", "/api/orders", &m), 405);
    ck_assert_str_eq(m.allow, "GET, POST");
    ck_assert_ptr_null(m.route);
    od_route_match_clear(&m);
    /* The core answers OPTIONS (CORS preflight) from the same Allow list. */
    ck_assert_int_eq(od_router_match(rt, "OPTIONS", "/api/orders", &m), 405);
    ck_assert_str_eq(m.allow, "GET, POST");
    od_route_match_clear(&m);
    ck_assert_int_eq(od_router_match(rt, "GET", "/api/orders/7", &m), 405);
    ck_assert_str_eq(m.allow, "DELETE");
    od_route_match_clear(&m);
    ck_assert_int_eq(od_router_match(rt, "GET", "/api/nothing", &m), 404);
    od_route_match_clear(&m);
    ck_assert_int_eq(od_router_match(rt, "GET", "/api/orders/7/items", &m), 404);
    od_route_match_clear(&m);
}
END_TEST

START_TEST(trailing_slash_case_and_empty_segments)
{
    ck_assert_int_eq(add("GET", "/api/users", h_a), OD_OK);
    ck_assert_int_eq(add("GET", "/", h_b), OD_OK);
    od_route_match m;
    ck_assert_int_eq(od_router_match(rt, "GET", "/api/users/", &m), 404);
    ck_assert_int_eq(od_router_match(rt, "GET", "//api/users", &m), 404);
    ck_assert_int_eq(od_router_match(rt, "GET", "/API/users", &m), 404);
    ck_assert_int_eq(od_router_match(rt, "GET", "api/users", &m), 404);
    ck_assert_int_eq(od_router_match(rt, "GET", "/", &m), 200);
    ck_assert_str_eq(m.route->pattern, "/");
    od_route_match_clear(&m);
}
END_TEST

START_TEST(encoded_slash_in_param)
{
    ck_assert_int_eq(add("GET", "/api/products/name/:name", h_a), OD_OK);
    od_route_match m;
    ck_assert_int_eq(od_router_match(rt, "GET", "/api/products/name/a%2Fb", &m), 200);
    ck_assert_str_eq(m.param_values[0], "a/b");
    od_route_match_clear(&m);
    ck_assert_int_eq(od_router_match(rt, "GET", "/api/products/name/caf%C3%A9%20x+y", &m), 200);
    ck_assert_str_eq(m.param_values[0], "caf\xc3\xa9 x+y"); /* '+' is literal in a path */
    od_route_match_clear(&m);
    /* A literal segment also matches its %-encoded form. */
    ck_assert_int_eq(od_router_match(rt, "GET", "/api/%70roducts/name/x", &m), 200);
    od_route_match_clear(&m);
}
END_TEST

START_TEST(bad_escapes_are_400)
{
    ck_assert_int_eq(add("GET", "/api/products/:id", h_a), OD_OK);
    static const char *const bad[] = {"/api/products/%", "/api/products/%4", "/api/products/%zz",
                                      "/api/products/a%00b", "/api/%G0/x", "/nothing/%2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        od_route_match m;
        ck_assert_msg(od_router_match(rt, "GET", bad[i], &m) == 400, "%s", bad[i]);
        od_route_match_clear(&m);
    }
}
END_TEST

START_TEST(many_params)
{
    ck_assert_int_eq(add("GET", "/:a/:b/:c/:d/:e/:f/:g/:h", h_a), OD_OK);
    od_route_match m;
    ck_assert_int_eq(od_router_match(rt, "GET", "/1/2/3/4/5/6/7/8", &m), 200);
    ck_assert_uint_eq(m.n_params, 8);
    ck_assert_str_eq(m.param_names[7], "h");
    ck_assert_str_eq(m.param_values[7], "8");
    ck_assert_str_eq(m.param_names[0], "a");
    ck_assert_str_eq(m.param_values[0], "1");
    od_route_match_clear(&m);
    ck_assert_int_eq(add("GET", "/x/:a/:b/:c/:d/:e/:f/:g/:h/:i", h_a), OD_ERR_INVALID);
}
END_TEST

START_TEST(duplicates_are_exists)
{
    ck_assert_int_eq(add("GET", "/api/users/:id", h_a), OD_OK);
    ck_assert_int_eq(add("GET", "/api/users/:id", h_b), OD_ERR_EXISTS);
    ck_assert_int_eq(add("GET", "/api/users/:other", h_b), OD_ERR_EXISTS);
    ck_assert_int_eq(add("PUT", "/api/users/:id", h_b), OD_OK);
}
END_TEST

START_TEST(invalid_patterns)
{
    static const char *const bad[] = {"", "api", "/api/", "//api", "/api//x", "/:", "/:1x",
                                      "/a/:id/:id", "/a b", "/a%2Fb", "/..", "/a/./b", "/a?b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(add("GET", bad[i], h_a) == OD_ERR_INVALID, "%s", bad[i]);
    ck_assert_int_eq(add("FETCH", "/ok", h_a), OD_ERR_INVALID);
    ck_assert_int_eq(add("get", "/ok", h_a), OD_ERR_INVALID);
    ck_assert_int_eq(add("HEAD", "/ok", h_a), OD_ERR_INVALID);    /* served by GET */
    ck_assert_int_eq(add("OPTIONS", "/ok", h_a), OD_ERR_INVALID); /* answered by the core */
    ck_assert_int_eq(od_router_add(rt, "GET", "/ok", 7, h_a, NULL, "t"), OD_ERR_INVALID);
    ck_assert_int_eq(od_router_add(rt, "GET", "/ok", OD_ACCESS_PUBLIC, NULL, NULL, "t"),
                     OD_ERR_INVALID);
    ck_assert_int_eq(add("GET", "/ok", h_a), OD_OK);
}
END_TEST

START_TEST(route_fields_kept)
{
    void *self = (void *)0x1234;
    void *const *slot = &self;
    ck_assert_int_eq(od_router_add(rt, "PATCH", "/x/:id", OD_ACCESS_ADMIN, h_b, slot, "mod"),
                     OD_OK);
    od_route_match m;
    ck_assert_int_eq(od_router_match(rt, "PATCH", "/x/9", &m), 200);
    ck_assert_ptr_eq(m.route->fn, h_b);
    ck_assert_ptr_eq(m.route->self_slot, slot);
    ck_assert_uint_eq(m.route->access, OD_ACCESS_ADMIN);
    ck_assert_str_eq(m.route->module, "mod");
    ck_assert_str_eq(m.route->method, "PATCH");
    od_route_match_clear(&m);
}
END_TEST

START_TEST(long_path_uses_heap)
{
    ck_assert_int_eq(add("GET", "/f/:v", h_a), OD_OK);
    size_t n = 5000;
    char *path = malloc(n + 4);
    memcpy(path, "/f/", 3);
    memset(path + 3, 'z', n);
    path[n + 3] = '\0';
    od_route_match m;
    ck_assert_int_eq(od_router_match(rt, "GET", path, &m), 200);
    ck_assert_uint_eq(strlen(m.param_values[0]), n);
    od_route_match_clear(&m);
    free(path);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, literal_beats_param);
    tcase_add_test(tc, literal_first_segment_decides);
    tcase_add_test(tc, not_found_vs_method_not_allowed);
    tcase_add_test(tc, trailing_slash_case_and_empty_segments);
    tcase_add_test(tc, encoded_slash_in_param);
    tcase_add_test(tc, bad_escapes_are_400);
    tcase_add_test(tc, many_params);
    tcase_add_test(tc, duplicates_are_exists);
    tcase_add_test(tc, invalid_patterns);
    tcase_add_test(tc, route_fields_kept);
    tcase_add_test(tc, long_path_uses_heap);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
