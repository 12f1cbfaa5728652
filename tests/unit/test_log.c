/* Unit tests for core/log.c: line format, escaping, truncation, level filter. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "core.h"

static FILE *captured;

/* Each test runs in its own fork (CK_FORK), so redirecting stderr is local. */
static void setup(void)
{
    captured = tmpfile();
    ck_assert_ptr_nonnull(captured);
    ck_assert_int_ge(dup2(fileno(captured), STDERR_FILENO), 0);
    od_log_set_level(OD_LOG_INFO);
}

static void teardown(void) { fclose(captured); }

/* Everything written so far, NUL-terminated (caller frees). */
static char *output(void)
{
    long n = lseek(fileno(captured), 0, SEEK_CUR);
    char *buf = calloc(1, (size_t)n + 1);
    ck_assert_int_eq(pread(fileno(captured), buf, (size_t)n, 0), n);
    return buf;
}

static json_object *parse_line(const char *line)
{
    json_tokener *tok = json_tokener_new();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *o = json_tokener_parse_ex(tok, line, (int)strlen(line));
    ck_assert_msg(o != NULL, "not JSON: %s", line);
    json_tokener_free(tok);
    return o;
}

static const char *field(json_object *o, const char *key)
{
    json_object *v;
    ck_assert_msg(json_object_object_get_ex(o, key, &v), "missing %s", key);
    return json_object_get_string(v);
}

START_TEST(one_json_line_with_fields)
{
    od_logf("users", OD_LOG_WARN, "hello %d", 42);
    char *out = output();
    size_t len = strlen(out);
    ck_assert_uint_gt(len, 0);
    ck_assert_int_eq(out[len - 1], '\n');
    ck_assert_ptr_eq(strchr(out, '\n'), out + len - 1); /* exactly one line */
    out[len - 1] = '\0';
    json_object *o = parse_line(out);
    ck_assert_str_eq(field(o, "level"), "warn");
    ck_assert_str_eq(field(o, "module"), "users");
    ck_assert_str_eq(field(o, "msg"), "hello 42");
    const char *ts = field(o, "ts");
    ck_assert_uint_eq(strlen(ts), 24); /* 2026-11-26T10:00:00.123Z */
    ck_assert_int_eq(ts[10], 'T');
    ck_assert_int_eq(ts[23], 'Z');
    /* The hand-rolled calendar agrees with gmtime_r (to the minute; a test
     * straddling a minute boundary compares against both sides). */
    time_t now = time(NULL);
    char a[32], b[32];
    struct tm tm;
    strftime(a, sizeof a, "%Y-%m-%dT%H:%M", gmtime_r(&now, &tm));
    now -= 60;
    strftime(b, sizeof b, "%Y-%m-%dT%H:%M", gmtime_r(&now, &tm));
    ck_assert_msg(strncmp(ts, a, 16) == 0 || strncmp(ts, b, 16) == 0, "%s vs %s", ts, a);
    json_object_put(o);
    free(out);
}
END_TEST

START_TEST(escapes_quotes_newlines_controls)
{
    od_logf("core", OD_LOG_ERROR, "a\"b\\c\nd\te\x01f \xc3\xa9");
    char *out = output();
    out[strlen(out) - 1] = '\0';
    ck_assert_ptr_null(strchr(out, '\n'));
    json_object *o = parse_line(out);
    ck_assert_str_eq(field(o, "msg"), "a\"b\\c\nd\te\x01f \xc3\xa9");
    json_object_put(o);
    free(out);
}
END_TEST

START_TEST(long_message_truncated_but_valid)
{
    char *big = malloc(10000);
    memset(big, '"', 9999); /* worst case: every byte needs escaping */
    big[9999] = '\0';
    od_logf("core", OD_LOG_INFO, "%s", big);
    char *out = output();
    out[strlen(out) - 1] = '\0';
    json_object *o = parse_line(out);
    const char *msg = field(o, "msg");
    ck_assert_uint_gt(strlen(msg), 100);
    ck_assert_str_eq(msg + strlen(msg) - 3, "...");
    json_object_put(o);
    free(out);
    free(big);
}
END_TEST

START_TEST(level_filter)
{
    od_logf("core", OD_LOG_DEBUG, "hidden");
    od_log_set_level(OD_LOG_ERROR);
    ck_assert_int_eq(od_log_level(), OD_LOG_ERROR);
    od_logf("core", OD_LOG_WARN, "hidden too");
    od_logf("core", OD_LOG_ERROR, "shown");
    char *out = output();
    ck_assert_ptr_null(strstr(out, "hidden"));
    ck_assert_ptr_nonnull(strstr(out, "\"msg\":\"shown\""));
    free(out);
}
END_TEST

START_TEST(json_line_appends_newline)
{
    od_log_json_line("{\"a\":1}", 7);
    char *out = output();
    ck_assert_str_eq(out, "{\"a\":1}\n");
    free(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, one_json_line_with_fields);
    tcase_add_test(tc, escapes_quotes_newlines_controls);
    tcase_add_test(tc, long_message_truncated_but_valid);
    tcase_add_test(tc, level_filter);
    tcase_add_test(tc, json_line_appends_newline);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
