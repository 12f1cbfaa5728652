/*
 * test_config.c - core/config.c: parse errors with file:line, typed getters
 * (wrong types, int64 ranges), environment overrides, unknown-key warnings
 * and @include resolution. Each test writes its configs into its own temp
 * dir and runs in its own fork (environment changes stay local).
 */
#include <check.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

static char dir[PATH_MAX];

/* ---- helpers ---------------------------------------------------------- */

/* Write dir/name and return its path in a static buffer. */
static const char *write_file(const char *name, const char *text)
{
    static char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Log capture: fd 2 into a temp file; the messages come back one per line. */
typedef struct capture {
    int saved_fd;
    FILE *file;
    char msgs[16384]; /* the "msg" fields, '\n'-separated */
    int count;
} capture;

static void capture_begin(capture *c)
{
    fflush(stderr);
    c->file = tmpfile();
    ck_assert_ptr_nonnull(c->file);
    c->saved_fd = dup(STDERR_FILENO);
    ck_assert_int_ge(dup2(fileno(c->file), STDERR_FILENO), 0);
    c->msgs[0] = '\0';
    c->count = 0;
}

static void capture_end(capture *c)
{
    fflush(stderr);
    dup2(c->saved_fd, STDERR_FILENO);
    close(c->saved_fd);
    rewind(c->file);
    char line[8192];
    size_t used = 0;
    while (fgets(line, sizeof(line), c->file)) {
        json_object *o = json_tokener_parse(line), *msg;
        ck_assert_msg(o && json_object_object_get_ex(o, "msg", &msg), "not a log line: %s", line);
        int w =
            snprintf(c->msgs + used, sizeof(c->msgs) - used, "%s\n", json_object_get_string(msg));
        ck_assert(w > 0 && (size_t)w < sizeof(c->msgs) - used);
        used += (size_t)w;
        c->count++;
        json_object_put(o);
    }
    fclose(c->file);
}

/* True when one captured message equals the formatted text exactly. */
static int captured(const capture *c, const char *fmt, ...) OD_PRINTF(2, 3);

static int captured(const capture *c, const char *fmt, ...)
{
    char want[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof(want), fmt, ap);
    va_end(ap);
    size_t len = strlen(want);
    for (const char *p = c->msgs; *p; p = strchr(p, '\n') + 1)
        if (strncmp(p, want, len) == 0 && p[len] == '\n')
            return 1;
    return 0;
}

static od_config *load_text(const char *text)
{
    return od_config_load(write_file("orderd.conf", text));
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/orderd-config-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    unsetenv("PORT");
    unsetenv("JWT_SECRET");
    unsetenv("ORDERD_ADMIN_EMAIL");
    unsetenv("ORDERD_ADMIN_PASSWORD");
    unsetenv("ORDERD_LOG_LEVEL");
}

static void teardown(void)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* ---- parsing ---------------------------------------------------------- */

START_TEST(parse_error_names_file_and_line)
{
    capture c;
    capture_begin(&c);
    od_config *cfg = load_text("server: {\n  threads = 4;\n  listen = ;\n};\n");
    capture_end(&c);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(captured(&c, "%s/orderd.conf:3: syntax error", dir), "got: %s", c.msgs);
}
END_TEST

START_TEST(missing_file_is_refused)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/absent.conf", dir);
    capture c;
    capture_begin(&c);
    od_config *cfg = od_config_load(path);
    capture_end(&c);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(
        captured(&c, "%s: cannot open the configuration file: No such file or directory", path),
        "got: %s", c.msgs);
}
END_TEST

START_TEST(values_and_defaults)
{
    od_config *cfg =
        load_text("server: { threads = 8; development = true; listen = \"0.0.0.0:80\"; };\n"
                  "modules: { load = [\"auth\", \"users\"]; };\n");
    ck_assert_ptr_nonnull(cfg);
    int64_t i = 0;
    ck_assert_int_eq(od_config_int(cfg, "server", "threads", 32, 1, 1024, &i), OD_OK);
    ck_assert_int_eq(i, 8);
    ck_assert_int_eq(od_config_int(cfg, "server", "shutdown_timeout_ms", 10000, 0, 600000, &i),
                     OD_OK);
    ck_assert_int_eq(i, 10000);
    int b = 0;
    ck_assert_int_eq(od_config_bool(cfg, "server", "development", 0, &b), OD_OK);
    ck_assert_int_eq(b, 1);
    const char *s = NULL;
    ck_assert_int_eq(od_config_string(cfg, "server", "listen", "x", &s), OD_OK);
    ck_assert_str_eq(s, "0.0.0.0:80");
    ck_assert_int_eq(od_config_string(cfg, "auth", "issuer", "orderd", &s), OD_OK);
    ck_assert_str_eq(s, "orderd");
    const char *const *names;
    size_t n = 0;
    ck_assert_int_eq(od_config_strings(cfg, "modules", "load", &names, &n), OD_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(names[0], "auth");
    ck_assert_str_eq(names[1], "users");
    ck_assert_int_eq(od_config_strings(cfg, "modules", "absent", &names, &n), OD_OK);
    ck_assert_uint_eq(n, 0);
    od_config_free(cfg);
}
END_TEST

/* ---- types and ranges ------------------------------------------------- */

START_TEST(wrong_types_name_file_line_and_expected_type)
{
    od_config *cfg = load_text("server: {\n"
                               "  threads = \"many\";\n"
                               "  listen = 3000;\n"
                               "  development = \"yes\";\n"
                               "  ratio = 0.5;\n"
                               "};\n"
                               "modules: { load = \"auth\"; };\n");
    ck_assert_ptr_nonnull(cfg);
    capture c;
    capture_begin(&c);
    int64_t i;
    const char *s;
    int b;
    const char *const *names;
    size_t n;
    ck_assert_int_eq(od_config_int(cfg, "server", "threads", 32, 1, 1024, &i), OD_ERR_CONFIG);
    ck_assert_int_eq(od_config_string(cfg, "server", "listen", "", &s), OD_ERR_CONFIG);
    ck_assert_int_eq(od_config_bool(cfg, "server", "development", 0, &b), OD_ERR_CONFIG);
    ck_assert_int_eq(od_config_int(cfg, "server", "ratio", 1, 0, 10, &i), OD_ERR_CONFIG);
    ck_assert_int_eq(od_config_strings(cfg, "modules", "load", &names, &n), OD_ERR_CONFIG);
    capture_end(&c);
    const char *p = od_config_path(cfg);
    ck_assert_msg(captured(&c, "%s:2: server.threads must be an integer in 1..1024", p), "%s",
                  c.msgs);
    ck_assert_msg(captured(&c, "%s:3: server.listen must be a string, e.g. \"text\"", p), "%s",
                  c.msgs);
    ck_assert_msg(captured(&c, "%s:4: server.development must be true or false", p), "%s", c.msgs);
    /* auto-convert stays off: 0.5 is not silently truncated to 0 */
    ck_assert_msg(captured(&c, "%s:5: server.ratio must be an integer in 0..10", p), "%s", c.msgs);
    ck_assert_msg(
        captured(&c, "%s:7: modules.load must be an array of strings, e.g. [\"a\", \"b\"]", p),
        "%s", c.msgs);
    od_config_free(cfg);
}
END_TEST

START_TEST(int64_values_are_range_checked_not_zeroed)
{
    od_config *cfg = load_text("server: {\n  threads = 5000000000L;\n  max_body_bytes = 512;\n};\n"
                               "orders: {\n  big = 5000000000L;\n  neg = -2147483649L;\n};\n");
    ck_assert_ptr_nonnull(cfg);
    capture c;
    capture_begin(&c);
    int64_t i = 7;
    ck_assert_int_eq(od_config_int(cfg, "server", "threads", 32, 1, 1024, &i), OD_ERR_CONFIG);
    ck_assert_int_eq(i, 7); /* untouched on error */
    ck_assert_int_eq(od_config_int(cfg, "server", "max_body_bytes", 1 << 20, 1024, 64 << 20, &i),
                     OD_ERR_CONFIG);
    capture_end(&c);
    const char *p = od_config_path(cfg);
    ck_assert_msg(
        captured(&c, "%s:2: server.threads = 5000000000 is out of range (valid: 1..1024)", p), "%s",
        c.msgs);
    ck_assert_msg(captured(&c,
                           "%s:3: server.max_body_bytes = 512 is out of range (valid: "
                           "1024..67108864)",
                           p),
                  "%s", c.msgs);
    ck_assert_int_eq(od_config_int(cfg, "orders", "big", 0, 0, INT64_MAX, &i), OD_OK);
    ck_assert_int_eq(i, 5000000000LL);
    ck_assert_int_eq(od_config_int(cfg, "orders", "neg", 0, INT64_MIN, 0, &i), OD_OK);
    ck_assert_int_eq(i, -2147483649LL);
    od_config_free(cfg);
}
END_TEST

/* ---- environment ------------------------------------------------------ */

START_TEST(port_env_replaces_the_port_of_listen)
{
    setenv("PORT", "8080", 1);
    od_config *cfg = load_text("server: { listen = \"0.0.0.0:3000\"; };\n");
    ck_assert_ptr_nonnull(cfg);
    const char *s;
    ck_assert_int_eq(od_config_string(cfg, "server", "listen", "127.0.0.1:3000", &s), OD_OK);
    ck_assert_str_eq(s, "0.0.0.0:8080");
    od_config_free(cfg);
    /* also applies to the default */
    cfg = load_text("server: { };\n");
    ck_assert_int_eq(od_config_string(cfg, "server", "listen", "127.0.0.1:3000", &s), OD_OK);
    ck_assert_str_eq(s, "127.0.0.1:8080");
    od_config_free(cfg);
}
END_TEST

START_TEST(port_env_is_validated)
{
    static const char *const bad[] = {"0", "65536", "80x", "-1", "+80", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("PORT", bad[i], 1);
        capture c;
        capture_begin(&c);
        od_config *cfg = load_text("server: { };\n");
        capture_end(&c);
        ck_assert_msg(cfg == NULL, "PORT=%s accepted", bad[i]);
        ck_assert_msg(captured(&c,
                               "environment PORT=\"%.16s\" is not a port number (valid: 1..65535)",
                               bad[i]),
                      "%s", c.msgs);
    }
    setenv("PORT", "65535", 1);
    od_config *cfg = load_text("server: { };\n");
    ck_assert_ptr_nonnull(cfg);
    od_config_free(cfg);
}
END_TEST

START_TEST(secret_env_overrides_file_value)
{
    od_config *cfg = load_text("auth: { jwt_secret = \"from-file\"; };\n");
    const char *s;
    ck_assert_int_eq(od_config_string(cfg, "auth", "jwt_secret", "", &s), OD_OK);
    ck_assert_str_eq(s, "from-file");
    setenv("JWT_SECRET", "from-env-0123456789abcdef0123456789", 1);
    ck_assert_int_eq(od_config_string(cfg, "auth", "jwt_secret", "", &s), OD_OK);
    ck_assert_str_eq(s, "from-env-0123456789abcdef0123456789");
    setenv("JWT_SECRET", "", 1); /* empty = unset */
    ck_assert_int_eq(od_config_string(cfg, "auth", "jwt_secret", "", &s), OD_OK);
    ck_assert_str_eq(s, "from-file");
    setenv("ORDERD_ADMIN_EMAIL", "root@example.com", 1);
    setenv("ORDERD_ADMIN_PASSWORD", "pw-from-env", 1);
    setenv("ORDERD_LOG_LEVEL", "debug", 1);
    ck_assert_int_eq(od_config_string(cfg, "users", "admin_email", "", &s), OD_OK);
    ck_assert_str_eq(s, "root@example.com");
    ck_assert_int_eq(od_config_string(cfg, "users", "admin_password", "", &s), OD_OK);
    ck_assert_str_eq(s, "pw-from-env");
    ck_assert_int_eq(od_config_string(cfg, "server", "log_level", "info", &s), OD_OK);
    ck_assert_str_eq(s, "debug");
    od_config_free(cfg);
}
END_TEST

/* ---- unknown keys ----------------------------------------------------- */

START_TEST(unknown_keys_and_groups_warn_with_file_line)
{
    od_config *cfg = load_text("server: {\n"
                               "  threads = 4;\n"
                               "  thread = 8;\n"
                               "};\n"
                               "modules: { load = [\"auth\"]; };\n"
                               "auth: {\n"
                               "  jwt_secret = \"x\";\n"
                               "  issuer = \"me\";\n"
                               "  isuer = \"typo\";\n"
                               "};\n"
                               "payments: { key = 1; };\n"
                               "stray = 1;\n");
    ck_assert_ptr_nonnull(cfg);
    int64_t i;
    const char *s;
    const char *const *names;
    size_t n;
    ck_assert_int_eq(od_config_int(cfg, "server", "threads", 32, 1, 1024, &i), OD_OK);
    ck_assert_int_eq(od_config_strings(cfg, "modules", "load", &names, &n), OD_OK);
    ck_assert_int_eq(od_config_string(cfg, "auth", "issuer", "orderd", &s), OD_OK);
    capture c;
    capture_begin(&c);
    od_config_warn_unknown(cfg);
    capture_end(&c);
    const char *p = od_config_path(cfg);
    ck_assert_msg(
        captured(&c, "%s:3: unknown key \"server.thread\" (nothing reads it; misspelt?)", p), "%s",
        c.msgs);
    ck_assert_msg(captured(&c, "%s:9: unknown key \"auth.isuer\" (nothing reads it; misspelt?)", p),
                  "%s", c.msgs);
    ck_assert_msg(captured(&c,
                           "%s:11: unknown group \"payments\" (not server, modules, storage, "
                           "queue or a module in modules.load)",
                           p),
                  "%s", c.msgs);
    ck_assert_msg(captured(&c,
                           "%s:12: unknown top-level setting \"stray\" (settings belong in a "
                           "group)",
                           p),
                  "%s", c.msgs);
    /* auth.jwt_secret was never read here but is env-mapped: no warning. */
    ck_assert_int_eq(c.count, 4);
    od_config_free(cfg);
}
END_TEST

START_TEST(looked_up_missing_or_failed_keys_are_known)
{
    od_config *cfg = load_text("server: { threads = \"x\"; };\n");
    int64_t i;
    capture c;
    capture_begin(&c);
    ck_assert_int_eq(od_config_int(cfg, "server", "threads", 32, 1, 1024, &i), OD_ERR_CONFIG);
    capture_end(&c);
    capture_begin(&c);
    od_config_warn_unknown(cfg);
    capture_end(&c);
    ck_assert_int_eq(c.count, 0);
    od_config_free(cfg);
}
END_TEST

/* ---- @include --------------------------------------------------------- */

START_TEST(include_resolves_next_to_the_config_not_the_cwd)
{
    write_file("extra.conf", "auth: { issuer = \"included\"; };\n");
    const char *path =
        write_file("orderd.conf", "server: { threads = 2; };\n@include \"extra.conf\"\n");
    char copy[PATH_MAX + 64];
    snprintf(copy, sizeof(copy), "%s", path);
    ck_assert_int_eq(chdir("/"), 0);
    od_config *cfg = od_config_load(copy);
    ck_assert_ptr_nonnull(cfg);
    const char *s;
    ck_assert_int_eq(od_config_string(cfg, "auth", "issuer", "orderd", &s), OD_OK);
    ck_assert_str_eq(s, "included");
    od_config_free(cfg);
}
END_TEST

START_TEST(errors_in_included_file_name_that_file)
{
    write_file("extra.conf", "auth: {\n  issuer = [1, \"two\"];\n};\n");
    char extra[PATH_MAX + 32];
    snprintf(extra, sizeof(extra), "%s/extra.conf", dir);
    capture c;
    capture_begin(&c);
    od_config *cfg = load_text("server: { threads = 2; };\n@include \"extra.conf\"\n");
    capture_end(&c);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(captured(&c, "%s:2: mismatched element type in array", extra), "%s", c.msgs);
}
END_TEST

START_TEST(where_points_at_the_setting)
{
    od_config *cfg =
        load_text("server: {\n  threads = 2;\n};\nstorage: {\n  backend = \"x\";\n};\n");
    char buf[PATH_MAX + 32], want[PATH_MAX + 32];
    const char *p = od_config_path(cfg);
    snprintf(want, sizeof(want), "%s:5", p);
    ck_assert_str_eq(od_config_where(cfg, "storage", "backend", buf, sizeof(buf)), want);
    snprintf(want, sizeof(want), "%s:4", p);
    ck_assert_str_eq(od_config_where(cfg, "storage", "path", buf, sizeof(buf)), want);
    ck_assert_str_eq(od_config_where(cfg, "queue", "backend", buf, sizeof(buf)), p);
    od_config_free(cfg);
}
END_TEST

/* The shipped files parse and carry the documented defaults. */
START_TEST(shipped_configs_parse)
{
    const char *src = getenv("ORDERD_SOURCE_DIR"), *build = getenv("ORDERD_BUILD_DIR");
    ck_assert_ptr_nonnull(src);
    ck_assert_ptr_nonnull(build);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/conf/orderd.conf", src);
    od_config *cfg = od_config_load(path);
    ck_assert_ptr_nonnull(cfg);
    const char *s;
    int64_t i;
    int b;
    ck_assert_int_eq(od_config_string(cfg, "server", "listen", "", &s), OD_OK);
    ck_assert_str_eq(s, "127.0.0.1:3000");
    ck_assert_int_eq(od_config_int(cfg, "server", "threads", 0, 1, 1024, &i), OD_OK);
    ck_assert_int_eq(i, 32);
    ck_assert_int_eq(od_config_int(cfg, "server", "max_body_bytes", 0, 1024, 64 << 20, &i), OD_OK);
    ck_assert_int_eq(i, 1 << 20);
    ck_assert_int_eq(od_config_bool(cfg, "server", "development", 1, &b), OD_OK);
    ck_assert_int_eq(b, 0);
    ck_assert_int_eq(od_config_string(cfg, "auth", "jwt_secret", "x", &s), OD_OK);
    ck_assert_str_eq(s, ""); /* secrets come from the environment */
    ck_assert_int_eq(od_config_string(cfg, "storage", "backend", "", &s), OD_OK);
    ck_assert_str_eq(s, "sqlite"); /* the durable default */
    ck_assert_int_eq(od_config_string(cfg, "queue", "backend", "", &s), OD_OK);
    ck_assert_str_eq(s, "sqlite");
    od_config_free(cfg);
    snprintf(path, sizeof(path), "%s/orderd-dev.conf", build);
    cfg = od_config_load(path);
    ck_assert_ptr_nonnull(cfg);
    ck_assert_int_eq(od_config_bool(cfg, "server", "development", 0, &b), OD_OK);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(od_config_bool(cfg, "auth", "generate_dev_secret", 0, &b), OD_OK);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(od_config_string(cfg, "modules", "directory", "", &s), OD_OK);
    ck_assert_ptr_nonnull(strstr(s, "/modules"));
    ck_assert_ptr_null(strchr(s, '@')); /* configure_file substituted it */
    od_config_free(cfg);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, parse_error_names_file_and_line);
    tcase_add_test(tc, missing_file_is_refused);
    tcase_add_test(tc, values_and_defaults);
    tcase_add_test(tc, wrong_types_name_file_line_and_expected_type);
    tcase_add_test(tc, int64_values_are_range_checked_not_zeroed);
    tcase_add_test(tc, port_env_replaces_the_port_of_listen);
    tcase_add_test(tc, port_env_is_validated);
    tcase_add_test(tc, secret_env_overrides_file_value);
    tcase_add_test(tc, unknown_keys_and_groups_warn_with_file_line);
    tcase_add_test(tc, looked_up_missing_or_failed_keys_are_known);
    tcase_add_test(tc, include_resolves_next_to_the_config_not_the_cwd);
    tcase_add_test(tc, errors_in_included_file_name_that_file);
    tcase_add_test(tc, where_points_at_the_setting);
    tcase_add_test(tc, shipped_configs_parse);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
