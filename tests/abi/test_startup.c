/*
 * test_startup.c - the orderd binary's start-up and shutdown sequence, run
 * as a real process on the ABI fixtures: --check-config, the refusals main
 * makes (one line, exit 1), init order storage -> queue -> steps -> services,
 * destroy in reverse (also after a failed init), and a SIGTERM shutdown
 * that stops and destroys in reverse and exits 0.
 *
 * Waiting is polling with a deadline, never a fixed sleep.
 */
#include <check.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "orderd/module.h"

#define DEADLINE_MS 20000

static char fixture_dir[PATH_MAX];
static char tmp_dir[PATH_MAX];

/* ---- helpers ---------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_briefly(void)
{
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static const char *tmp_path(const char *name)
{
    static char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", tmp_dir, name);
    return path;
}

/* Write orderd.conf: modules from the fixture dir plus the given groups. */
static const char *write_config(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const char *write_config(const char *fmt, ...)
{
    static char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s", tmp_path("orderd.conf"));
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "server: { listen = \"127.0.0.1:0\"; threads = 2; shutdown_timeout_ms = 1000; };\n");
    fprintf(f, "modules: {\n  directory = \"%s\";\n", fixture_dir);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
    return path;
}

/* The whole file (malloc'd); "" while it does not exist yet. */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strdup(buf);
}

static pid_t spawn(const char *config, const char *opt)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int out = open(tmp_path("stdout"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int err = open(tmp_path("stderr"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(out, STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        if (opt)
            execl(ORDERD_BIN, "orderd", "-c", config, opt, (char *)NULL);
        else
            execl(ORDERD_BIN, "orderd", "-c", config, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid)
{
    int64_t deadline = now_ms() + DEADLINE_MS;
    int status;
    pid_t r;
    while ((r = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
        pause_briefly();
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ck_abort_msg("orderd did not exit within %d ms", DEADLINE_MS);
    }
    ck_assert_msg(WIFEXITED(status), "orderd died from signal %d", WTERMSIG(status));
    return WEXITSTATUS(status);
}

/* Run orderd -c config [opt] to completion; stdout/stderr land in tmp_dir. */
static int run(const char *config, const char *opt)
{
    return wait_exit(spawn(config, opt));
}

/* The "msg" fields of stderr's log lines, as "module: msg\n" lines. */
static char *log_lines(void)
{
    char *raw = read_file(tmp_path("stderr"));
    size_t cap = strlen(raw) + 1, used = 0;
    char *out = calloc(1, cap);
    for (char *line = strtok(raw, "\n"); line; line = strtok(NULL, "\n")) {
        json_object *o = json_tokener_parse(line), *mod, *msg;
        if (o && json_object_object_get_ex(o, "module", &mod)
            && json_object_object_get_ex(o, "msg", &msg))
            used += (size_t)snprintf(out + used, cap - used, "%s: %s\n",
                                     json_object_get_string(mod), json_object_get_string(msg));
        json_object_put(o);
    }
    free(raw);
    return out;
}

/* The fixtures' lifecycle lines only, in order, for sequence assertions. */
static char *lifecycle(void)
{
    char *all = log_lines();
    char *out = calloc(1, strlen(all) + 1);
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n")) {
        const char *msg = strstr(line, ": ");
        if (msg
            && (strncmp(msg + 2, "init", 4) == 0 || strcmp(msg + 2, "start") == 0
                || strcmp(msg + 2, "stop") == 0 || strcmp(msg + 2, "destroy") == 0)) {
            strcat(out, line);
            strcat(out, "\n");
        }
    }
    free(all);
    return out;
}

static void assert_logged(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void assert_logged(const char *fmt, ...)
{
    char want[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof(want), fmt, ap);
    va_end(ap);
    char *all = log_lines();
    ck_assert_msg(strstr(all, want) != NULL, "expected log line\n  %s\ngot\n%s", want, all);
    free(all);
}

static void setup(void)
{
    ck_assert_ptr_nonnull(realpath(ABI_FIXTURE_DIR, fixture_dir));
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/orderd-startup-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
    unsetenv("PORT");
    unsetenv("ORDERD_LOG_LEVEL");
}

static void teardown(void)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_dir);
    ck_assert_int_eq(system(cmd), 0);
}

#define GOOD_MODULES                                                                               \
    "  load = [\"good_service\", \"good_step\"];\n};\n"                                            \
    "storage: { backend = \"fixture\"; greeting = \"s\"; };\n"                                     \
    "queue: { backend = \"fixture\"; };\n"

/* The running ABI as the CLI prints it, e.g. "1.1". */
#define STR_(x) #x
#define STR(x) STR_(x)
#define ABI_NOW STR(OD_ABI_MAJOR) "." STR(OD_ABI_MINOR)

/* ---- tests ------------------------------------------------------------ */

START_TEST(version_and_help_exit_0)
{
    const char *cfg = write_config(GOOD_MODULES);
    ck_assert_int_eq(run(cfg, "--version"), 0);
    char *out = read_file(tmp_path("stdout"));
    ck_assert_msg(strstr(out, "(module ABI " ABI_NOW ")") != NULL, "%s", out);
    free(out);
    ck_assert_int_eq(run(cfg, "--help"), 0);
    ck_assert_int_eq(run(cfg, "--no-such-option"), 2);
}
END_TEST

START_TEST(check_config_inits_in_order_and_destroys_in_reverse)
{
    const char *cfg =
        write_config(GOOD_MODULES "good_service: { greeting = \"hi\"; typo = 1; };\n");
    ck_assert_int_eq(run(cfg, "--check-config"), 0);
    char *out = read_file(tmp_path("stdout"));
    ck_assert_str_eq(out, "configuration OK\n");
    free(out);
    char *seq = lifecycle();
    ck_assert_str_eq(seq, "storage_fixture: init s\n"
                          "queue_fixture: init hello\n"
                          "good_step: init hello\n"
                          "good_service: init hi\n"
                          "good_service: destroy\n"
                          "good_step: destroy\n"
                          "queue_fixture: destroy\n"
                          "storage_fixture: destroy\n");
    free(seq);
    assert_logged("config: %s:8: unknown key \"good_service.typo\" (nothing reads it; misspelt?)",
                  cfg);
}
END_TEST

START_TEST(provision_forces_create_missing_on_backends_only)
{
    const char *cfg = write_config(GOOD_MODULES);
    ck_assert_int_eq(run(cfg, "--provision"), 0);
    char *out = read_file(tmp_path("stdout"));
    ck_assert_str_eq(out, "provisioning OK: storage \"fixture\" and queue \"fixture\" are ready\n");
    free(out);
    assert_logged("storage_fixture: creating what is missing");
    assert_logged("queue_fixture: creating what is missing");
    char *logs = log_lines();
    ck_assert_msg(strstr(logs, "good_service: creating") == NULL, "%s", logs);
    free(logs);
    /* Without --provision the default (false) stands. */
    ck_assert_int_eq(run(cfg, "--check-config"), 0);
    logs = log_lines();
    ck_assert_msg(strstr(logs, "creating what is missing") == NULL, "%s", logs);
    free(logs);
}
END_TEST

START_TEST(unknown_backend_names_line_and_choices)
{
    const char *cfg = write_config("  load = [];\n};\nstorage: {\n  backend = \"dynamo\";\n};\n");
    ck_assert_int_eq(run(cfg, "--check-config"), 1);
    assert_logged("core: %s:7: unknown storage backend \"dynamo\" (valid: abi_1_0, fixture, no_get, no_ops, "
                  "small_ops; found as storage_*.so in %s)",
                  cfg, fixture_dir);
}
END_TEST

START_TEST(backend_in_modules_load_is_refused)
{
    const char *cfg = write_config("  load = [\"good_storage\"];\n};\n"
                                   "storage: { backend = \"fixture\"; };\n"
                                   "queue: { backend = \"fixture\"; };\n");
    ck_assert_int_eq(run(cfg, "--check-config"), 1);
    assert_logged(
        "core: module \"good_storage\" (%s/good_storage.so): is a storage backend; select "
        "it with storage.backend, not modules.load",
        fixture_dir);
}
END_TEST

START_TEST(duplicate_module_is_refused)
{
    const char *cfg = write_config("  load = [\"good_service\", \"dup_service\"];\n};\n"
                                   "storage: { backend = \"fixture\"; };\n"
                                   "queue: { backend = \"fixture\"; };\n");
    ck_assert_int_eq(run(cfg, "--check-config"), 1);
    assert_logged("core: module \"dup_service\" (%s/dup_service.so): duplicate module name "
                  "\"good_service\", already loaded from %s/good_service.so",
                  fixture_dir, fixture_dir);
    char *seq = lifecycle();
    ck_assert_str_eq(seq, ""); /* nothing was initialised */
    free(seq);
}
END_TEST

START_TEST(failed_init_destroys_the_initialised_in_reverse)
{
    const char *cfg =
        write_config("  load = [\"good_step\", \"good_service\", \"init_fails\"];\n};\n"
                     "storage: { backend = \"fixture\"; };\n"
                     "queue: { backend = \"fixture\"; };\n");
    ck_assert_int_eq(run(cfg, "--check-config"), 1);
    assert_logged("core: module \"init_fails\" (%s/init_fails.so): init failed: config",
                  fixture_dir);
    char *seq = lifecycle();
    ck_assert_str_eq(seq, "storage_fixture: init hello\n"
                          "queue_fixture: init hello\n"
                          "good_step: init hello\n"
                          "good_service: init hello\n"
                          "init_fails: init fails on purpose\n"
                          "good_service: destroy\n"
                          "good_step: destroy\n"
                          "queue_fixture: destroy\n"
                          "storage_fixture: destroy\n");
    free(seq);
    char *out = read_file(tmp_path("stdout"));
    ck_assert_str_eq(out, "");
    free(out);
}
END_TEST

START_TEST(wrong_config_type_fails_init)
{
    const char *cfg = write_config(GOOD_MODULES "good_service: {\n  greeting = 42;\n};\n");
    ck_assert_int_eq(run(cfg, "--check-config"), 1);
    assert_logged("config: %s:9: good_service.greeting must be a string, e.g. \"text\"", cfg);
}
END_TEST

START_TEST(pipeline_must_name_loaded_steps)
{
    const char *cfg =
        write_config(GOOD_MODULES "orders: {\n  pipeline = [\"good_step\", \"pay\"];\n};\n");
    ck_assert_int_eq(run(cfg, "--check-config"), 1);
    assert_logged("core: %s:9: orders.pipeline: \"pay\" is not a loaded step module (loaded steps: "
                  "good_step; add the step to modules.load)",
                  cfg);
}
END_TEST

START_TEST(invalid_server_settings_are_refused)
{
    const char *cfg = write_config(GOOD_MODULES);
    setenv("ORDERD_LOG_LEVEL", "verbose", 1);
    ck_assert_int_eq(run(cfg, "--check-config"), 1);
    assert_logged("core: environment ORDERD_LOG_LEVEL: server.log_level \"verbose\" is not valid "
                  "(valid: error, warn, info, debug)");
    unsetenv("ORDERD_LOG_LEVEL");
    char absent[PATH_MAX + 64];
    snprintf(absent, sizeof(absent), "%s", tmp_path("absent.conf"));
    ck_assert_int_eq(run(absent, "--check-config"), 1);
    assert_logged("config: %s: cannot open the configuration file: No such file or directory",
                  absent);
}
END_TEST

START_TEST(sigterm_stops_and_destroys_in_reverse_and_exits_0)
{
    const char *cfg = write_config(GOOD_MODULES);
    pid_t pid = spawn(cfg, NULL);
    int64_t deadline = now_ms() + DEADLINE_MS;
    int started = 0;
    while (!started && now_ms() < deadline) {
        char *all = log_lines();
        started = strstr(all, "core: orderd ") && strstr(all, " started: port ");
        free(all);
        if (!started)
            pause_briefly();
    }
    ck_assert_msg(started, "orderd did not start");
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    ck_assert_int_eq(wait_exit(pid), 0);
    char *seq = lifecycle();
    ck_assert_str_eq(seq, "storage_fixture: init s\n"
                          "queue_fixture: init hello\n"
                          "good_step: init hello\n"
                          "good_service: init hello\n"
                          "storage_fixture: start\n"
                          "queue_fixture: start\n"
                          "good_step: start\n"
                          "good_service: start\n"
                          "good_service: stop\n"
                          "good_step: stop\n"
                          "queue_fixture: stop\n"
                          "storage_fixture: stop\n"
                          "good_service: destroy\n"
                          "good_step: destroy\n"
                          "queue_fixture: destroy\n"
                          "storage_fixture: destroy\n");
    free(seq);
}
END_TEST

START_TEST(list_modules_shows_configured_and_other_modules)
{
    const char *cfg = write_config(GOOD_MODULES);
    ck_assert_int_eq(run(cfg, "--list-modules"), 0);
    char *out = read_file(tmp_path("stdout"));
    ck_assert_msg(strstr(out, "  good_service         service  ABI " ABI_NOW "  1.2.3      ABI test "
                              "fixture good_service\n"),
                  "%s", out);
    ck_assert_msg(strstr(out, "other modules in "), "%s", out);
    ck_assert_msg(strstr(out, "  good_queue           queue    ABI " ABI_NOW), "%s", out);
    /* configured modules are listed before the others, and only once */
    ck_assert(strstr(out, "good_service") < strstr(out, "other modules"));
    ck_assert_ptr_null(strstr(strstr(out, "other modules"), "  good_step "));
    free(out);
}
END_TEST

static Suite *startup_suite(void)
{
    Suite *s = suite_create("abi_startup");
    TCase *tc = tcase_create("startup");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, version_and_help_exit_0);
    tcase_add_test(tc, check_config_inits_in_order_and_destroys_in_reverse);
    tcase_add_test(tc, provision_forces_create_missing_on_backends_only);
    tcase_add_test(tc, unknown_backend_names_line_and_choices);
    tcase_add_test(tc, backend_in_modules_load_is_refused);
    tcase_add_test(tc, duplicate_module_is_refused);
    tcase_add_test(tc, failed_init_destroys_the_initialised_in_reverse);
    tcase_add_test(tc, wrong_config_type_fails_init);
    tcase_add_test(tc, pipeline_must_name_loaded_steps);
    tcase_add_test(tc, invalid_server_settings_are_refused);
    tcase_add_test(tc, sigterm_stops_and_destroys_in_reverse_and_exits_0);
    tcase_add_test(tc, list_modules_shows_configured_and_other_modules);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(startup_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
