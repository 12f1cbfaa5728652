/* test_common.c - odmod_common: strict JSON, field getters, validation,
 * pagination, password hashing and status replies. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "mock_host.h"
#include "odm.h"

static json_object *parse(const char *text, odm_err *e)
{
    memset(e, 0, sizeof *e);
    return odm_parse_object(text, strlen(text), e);
}

static void assert_rejected(const char *text, const char *msg_part)
{
    odm_err e;
    json_object *o = parse(text, &e);
    ck_assert_msg(o == NULL, "accepted: %s", text);
    ck_assert_msg(strstr(e.msg, msg_part) != NULL, "%s: message '%s' lacks '%s'", text, e.msg,
                  msg_part);
}

START_TEST(json_accepts_valid_objects)
{
    static const char *const ok[] = {
        "{}", " {\"a\":1} \n", "{\"a\":[1,2.5,-3e2,true,false,null],\"b\":{\"c\":\"d\"}}",
        "{\"s\":\"caf\xc3\xa9 \\u00e9 \\\"q\\\" 'x'\"}", "{\"n\":-9223372036854775808}",
        "{\"a\":{\"x\":1},\"b\":{\"x\":2}}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        odm_err e;
        json_object *o = parse(ok[i], &e);
        ck_assert_msg(o != NULL, "rejected %s: %s", ok[i], e.msg);
        json_object_put(o);
    }
}
END_TEST

START_TEST(json_rejects_what_json_c_accepts)
{
    assert_rejected("{\"a\":NaN}", "invalid literal");
    assert_rejected("{\"a\":Infinity}", "invalid literal");
    assert_rejected("{\"a\":-Infinity}", "number");
    assert_rejected("{'a':1}", "single quotes");
    assert_rejected("{\"a\":1,\"a\":2}", "duplicate key");
    assert_rejected("{\"o\":{\"a\":1,\"a\":2}}", "duplicate key");
    assert_rejected("{\"a\":\"x\ty\"}", "control character");
    assert_rejected("{\"a\":9223372036854775808}", "out of range");
    assert_rejected("{\"a\":-9223372036854775809}", "out of range");
    assert_rejected("{\"a\":99999999999999999999999}", "out of range");
    assert_rejected("{\"a\":1e400}", "out of range");
}
END_TEST

START_TEST(json_rejects_malformed_and_non_objects)
{
    assert_rejected("", "malformed");
    assert_rejected("{\"a\":1} xyz", "");
    assert_rejected("{\"a\":1}{\"b\":2}", "");
    assert_rejected("{\"a\":1,}", "malformed");
    assert_rejected("[1,2]", "must be a JSON object");
    assert_rejected("\"x\"", "must be a JSON object");
    assert_rejected("123", "must be a JSON object");
    assert_rejected("{\"a\":\"\xff\xfe\"}", "malformed");
    assert_rejected("{\"a\":01}", "malformed");
    char deep[128] = "{\"a\":";
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    assert_rejected(deep, "malformed");
}
END_TEST

START_TEST(json_embedded_nul_is_trailing_data)
{
    static const char text[] = "{\"a\":1}\0{\"b\":2}";
    odm_err e = {{0}};
    json_object *o = odm_parse_object(text, sizeof text - 1, &e);
    ck_assert_ptr_null(o);
    ck_assert_ptr_nonnull(strstr(e.msg, "unexpected data"));
}
END_TEST

START_TEST(get_string_types_and_bounds)
{
    odm_err e;
    json_object *o = parse("{\"s\":\"h\xc3\xa9llo\",\"n\":5,\"z\":\"a\\u0000b\",\"nul\":null,"
                           "\"empty\":\"\"}", &e);
    ck_assert_ptr_nonnull(o);
    const char *s = NULL;
    ck_assert_int_eq(odm_get_string(o, "s", 1, 5, 5, &s, &e), OD_OK); /* 5 characters, 6 bytes */
    ck_assert_str_eq(s, "h\xc3\xa9llo");
    ck_assert_int_eq(odm_get_string(o, "s", 1, 1, 4, &s, &e), OD_ERR_INVALID);
    ck_assert_str_eq(e.msg, "field 's' must be at most 4 characters");
    ck_assert_int_eq(odm_get_string(o, "s", 1, 6, 10, &s, &e), OD_ERR_INVALID);
    ck_assert_str_eq(e.msg, "field 's' must be at least 6 characters");
    ck_assert_int_eq(odm_get_string(o, "n", 1, 0, 10, &s, &e), OD_ERR_INVALID);
    ck_assert_str_eq(e.msg, "field 'n' must be a string");
    ck_assert_int_eq(odm_get_string(o, "z", 1, 0, 10, &s, &e), OD_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(e.msg, "NUL"));
    ck_assert_int_eq(odm_get_string(o, "empty", 1, 1, 10, &s, &e), OD_ERR_INVALID);
    ck_assert_str_eq(e.msg, "field 'empty' must not be empty");
    ck_assert_int_eq(odm_get_string(o, "missing", 1, 0, 10, &s, &e), OD_ERR_INVALID);
    ck_assert_str_eq(e.msg, "field 'missing' is required");
    s = "untouched";
    ck_assert_int_eq(odm_get_string(o, "missing", 0, 0, 10, &s, &e), OD_OK);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(odm_get_string(o, "nul", 0, 0, 10, &s, &e), OD_OK);
    ck_assert_ptr_null(s);
    json_object_put(o);
}
END_TEST

START_TEST(get_int_and_bool)
{
    odm_err e;
    json_object *o = parse("{\"i\":42,\"d\":19.99,\"w\":19.0,\"s\":\"12\",\"big\":9223372036854775807,"
                           "\"b\":true,\"bi\":1}", &e);
    ck_assert_ptr_nonnull(o);
    int64_t n = 0;
    ck_assert_int_eq(odm_get_int(o, "i", 1, 0, 100, &n, &e), OD_OK);
    ck_assert_int_eq(n, 42);
    ck_assert_int_eq(odm_get_int(o, "i", 1, 0, 41, &n, &e), OD_ERR_INVALID);
    ck_assert_str_eq(e.msg, "field 'i' must be between 0 and 41");
    ck_assert_int_eq(odm_get_int(o, "d", 1, 0, 100, &n, &e), OD_ERR_INVALID);
    ck_assert_str_eq(e.msg, "field 'd' must be an integer");
    ck_assert_int_eq(odm_get_int(o, "w", 1, 0, 100, &n, &e), OD_ERR_INVALID);
    ck_assert_int_eq(odm_get_int(o, "s", 1, 0, 100, &n, &e), OD_ERR_INVALID);
    ck_assert_int_eq(odm_get_int(o, "big", 1, 0, INT64_MAX, &n, &e), OD_OK);
    ck_assert(n == INT64_MAX);
    int b = 0;
    ck_assert_int_eq(odm_get_bool(o, "b", 1, &b, &e), OD_OK);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(odm_get_bool(o, "bi", 1, &b, &e), OD_ERR_INVALID);
    ck_assert_str_eq(e.msg, "field 'bi' must be true or false");
    json_object_put(o);
}
END_TEST

START_TEST(only_fields_names_the_unknown_one)
{
    static const char *const allowed[] = {"email", "password", NULL};
    odm_err e;
    json_object *o = parse("{\"email\":\"a\",\"pasword\":\"b\"}", &e);
    ck_assert_int_eq(odm_only_fields(o, allowed, &e), OD_ERR_INVALID);
    ck_assert_str_eq(e.msg, "unknown field 'pasword'");
    json_object_put(o);
    o = parse("{\"email\":\"a\"}", &e);
    ck_assert_int_eq(odm_only_fields(o, allowed, &e), OD_OK);
    json_object_put(o);
}
END_TEST

START_TEST(utf8_length)
{
    ck_assert_uint_eq(odm_utf8_len("abc", 3), 3);
    ck_assert_uint_eq(odm_utf8_len("\xe2\x82\xac\xf0\x9f\x98\x80", 7), 2);
    ck_assert_uint_eq(odm_utf8_len("\xc0\xaf", 2), SIZE_MAX);     /* overlong */
    ck_assert_uint_eq(odm_utf8_len("\xed\xa0\x80", 3), SIZE_MAX); /* surrogate */
    ck_assert_uint_eq(odm_utf8_len("\xe2\x82", 2), SIZE_MAX);     /* truncated */
    ck_assert_uint_eq(odm_utf8_len("\xf4\x90\x80\x80", 4), SIZE_MAX);
}
END_TEST

START_TEST(email_normalization)
{
    char out[ODM_EMAIL_MAX + 1];
    ck_assert_int_eq(odm_email_normalize("Alice.Smith+tag@Example.COM", out), OD_OK);
    ck_assert_str_eq(out, "alice.smith+tag@example.com");
    ck_assert_int_eq(odm_email_normalize("a@b.co", out), OD_OK);
    static const char *const bad[] = {
        "", "plain", "@example.com", "a@", "a@b", "a b@c.com", "a@b..com", ".a@b.com", "a.@b.com",
        "a..b@c.com", "a@-b.com", "a@b-.com", "a@b.com.", "a@b_c.com", "\"q\"@b.com", "a@@b.com",
        "\xc3\xa9@b.com",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(odm_email_normalize(bad[i], out) == OD_ERR_INVALID, "accepted '%s'", bad[i]);
    char longer[300];
    memset(longer, 'a', 65);
    strcpy(longer + 65, "@b.com");
    ck_assert_int_eq(odm_email_normalize(longer, out), OD_ERR_INVALID); /* local part > 64 */
    memset(longer, 'a', 250);
    strcpy(longer + 10, "@");
    memset(longer + 11, 'b', 240);
    strcpy(longer + 251, ".cm");
    ck_assert_int_eq(odm_email_normalize(longer, out), OD_ERR_INVALID); /* 254 < len */
}
END_TEST

static od_status page_with(const char *limit, const char *cursor, odm_page_req *pr, odm_err *e)
{
    od_request *r = mock_request_new("GET", "/x");
    if (limit)
        mock_request_query(r, "limit", limit);
    if (cursor)
        mock_request_query(r, "cursor", cursor);
    od_status s = odm_page_params(mock_host_api(), r, pr, e);
    mock_request_free(r);
    return s;
}

START_TEST(page_params)
{
    odm_page_req pr;
    odm_err e;
    ck_assert_int_eq(page_with(NULL, NULL, &pr, &e), OD_OK);
    ck_assert_uint_eq(pr.limit, 50);
    ck_assert_ptr_null(pr.cursor);
    ck_assert_int_eq(page_with("1", NULL, &pr, &e), OD_OK);
    ck_assert_uint_eq(pr.limit, 1);
    ck_assert_int_eq(page_with("100", NULL, &pr, &e), OD_OK);
    ck_assert_uint_eq(pr.limit, 100);
    static const char *const bad[] = {"0", "101", "abc", "5x", "-1", "1e2", "", " 5", "+5", "0100"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(page_with(bad[i], NULL, &pr, &e) == OD_ERR_INVALID, "limit '%s'", bad[i]);
        ck_assert_ptr_nonnull(strstr(e.msg, "'limit'"));
    }
    char cursor[OD_CURSOR_MAX + 2];
    memset(cursor, 'c', OD_CURSOR_MAX);
    cursor[OD_CURSOR_MAX] = '\0';
    ck_assert_int_eq(page_with(NULL, cursor, &pr, &e), OD_OK);
    cursor[OD_CURSOR_MAX] = 'c';
    cursor[OD_CURSOR_MAX + 1] = '\0';
    ck_assert_int_eq(page_with(NULL, cursor, &pr, &e), OD_ERR_INVALID);
    ck_assert_int_eq(page_with(NULL, "a b", &pr, &e), OD_ERR_INVALID);
    ck_assert_int_eq(page_with(NULL, "a\x7f", &pr, &e), OD_ERR_INVALID);
    ck_assert_int_eq(page_with(NULL, "", &pr, &e), OD_ERR_INVALID);
}
END_TEST

START_TEST(timestamps_and_ids)
{
    char t[ODM_TIME_LEN + 1];
    odm_iso8601(1795687200123LL, t);
    ck_assert_str_eq(t, "2026-11-26T10:00:00.123Z");
    odm_iso8601(0, t);
    ck_assert_str_eq(t, "1970-01-01T00:00:00.000Z");
    ck_assert_int_eq(odm_iso8601_parse("2026-11-26T10:00:00.123Z"), 1795687200123LL);
    ck_assert_int_eq(odm_iso8601_parse(t), 0);
    ck_assert_int_eq(odm_iso8601_parse("2026-11-26T10:00:00.123Zx"), -1);
    ck_assert_int_eq(odm_iso8601_parse("2026-11-26T10:00:00Z"), -1);
    ck_assert_int_eq(odm_iso8601_parse(""), -1);
    ck_assert_int_eq(odm_iso8601_parse(NULL), -1);
    ck_assert(odm_is_uuid("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
    ck_assert(!odm_is_uuid("0190A1B2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
    ck_assert(!odm_is_uuid("0190a1b2c3d4-7e5f-8a9b-0c1d2e3f4a5b0"));
    ck_assert(!odm_is_uuid("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5"));
    ck_assert(!odm_is_uuid("../../etc/passwd"));
    ck_assert(!odm_is_uuid(""));
}
END_TEST

START_TEST(password_hash_and_verify)
{
    odm_hasher *hs = NULL;
    ck_assert_int_eq(odm_hasher_new(mock_host_api(), 1, 512, 0, &hs), OD_ERR_INVALID);
    ck_assert_int_eq(odm_hasher_new(mock_host_api(), 0, 1024, 0, &hs), OD_ERR_INVALID);
    ck_assert_int_eq(odm_hasher_new(mock_host_api(), 1, 1024, 2, &hs), OD_OK);
    char h1[ODM_HASH_MAX], h2[ODM_HASH_MAX];
    ck_assert_int_eq(odm_password_hash(hs, "correct horse", 13, h1), OD_OK);
    ck_assert_int_eq(odm_password_hash(hs, "correct horse", 13, h2), OD_OK);
    ck_assert_ptr_nonnull(strstr(h1, "$argon2id$v=19$m=1024,t=1,p=1$"));
    ck_assert_str_ne(h1, h2); /* fresh salt each time */
    ck_assert_int_eq(odm_password_verify(hs, h1, "correct horse", 13), OD_OK);
    ck_assert_int_eq(odm_password_verify(hs, h2, "correct horse", 13), OD_OK);
    ck_assert_int_eq(odm_password_verify(hs, h1, "correct hors", 12), OD_ERR_INVALID);
    ck_assert_int_eq(odm_password_verify(hs, "$2b$10$abcdefghijklmnopqrstuv", "x", 1),
                     OD_ERR_INTERNAL);
    ck_assert_int_eq(odm_password_verify(hs, "$argon2id$garbage", "x", 1), OD_ERR_INTERNAL);
    odm_hasher_free(hs);
}
END_TEST

START_TEST(status_replies)
{
    static const struct {
        od_status s;
        int http;
        const char *code;
    } map[] = {
        {OD_ERR_NOT_FOUND, 404, "\"not_found\""},    {OD_ERR_EXISTS, 409, "\"conflict\""},
        {OD_ERR_CONFLICT, 409, "\"conflict\""},      {OD_ERR_INVALID, 400, "\"validation_failed\""},
        {OD_ERR_UNAVAILABLE, 503, "\"unavailable\""}, {OD_ERR_CLOSED, 503, "\"unavailable\""},
        {OD_ERR_TOO_LARGE, 413, "\"payload_too_large\""}, {OD_ERR_INTERNAL, 500, "\"internal\""},
        {OD_ERR_NOMEM, 500, "\"internal\""},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        od_request *r = mock_request_new("GET", "/x");
        ck_assert_int_eq(odm_reply_status(mock_host_api(), r, map[i].s), OD_OK);
        ck_assert_int_eq(mock_reply_status(r), map[i].http);
        ck_assert_ptr_nonnull(strstr(mock_reply_body(r), map[i].code));
        mock_request_free(r);
    }
}
END_TEST

START_TEST(body_reply_helpers)
{
    const od_host_api *h = mock_host_api();
    od_request *r = mock_request_new("POST", "/x");
    mock_request_body(r, "{\"a\":NaN}");
    ck_assert_ptr_null(odm_body_object(h, r));
    ck_assert_int_eq(mock_reply_status(r), 400);
    ck_assert_ptr_nonnull(strstr(mock_reply_body(r), "\"invalid_json\""));
    mock_request_free(r);

    r = mock_request_new("GET", "/x");
    json_object *data = json_object_new_object();
    json_object_object_add(data, "url", json_object_new_string("a/b"));
    ck_assert_int_eq(odm_reply_json(h, r, 201, "Created", data), OD_OK);
    ck_assert_ptr_nonnull(strstr(mock_reply_body(r), "\"data\":{\"url\":\"a/b\"}"));
    ck_assert_int_eq(mock_reply_status(r), 201);
    json_object_put(data);
    mock_request_free(r);
}
END_TEST

static Suite *common_suite(void)
{
    Suite *s = suite_create("common");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, json_accepts_valid_objects);
    tcase_add_test(tc, json_rejects_what_json_c_accepts);
    tcase_add_test(tc, json_rejects_malformed_and_non_objects);
    tcase_add_test(tc, json_embedded_nul_is_trailing_data);
    tcase_add_test(tc, get_string_types_and_bounds);
    tcase_add_test(tc, get_int_and_bool);
    tcase_add_test(tc, only_fields_names_the_unknown_one);
    tcase_add_test(tc, utf8_length);
    tcase_add_test(tc, email_normalization);
    tcase_add_test(tc, page_params);
    tcase_add_test(tc, timestamps_and_ids);
    tcase_add_test(tc, password_hash_and_verify);
    tcase_add_test(tc, status_replies);
    tcase_add_test(tc, body_reply_helpers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(common_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
