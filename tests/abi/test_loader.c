/*
 * test_loader.c - the module loader against fixture modules that each break
 * one rule: every refusal is asserted as the exact log line, every good
 * module of each kind must load.
 *
 * Log lines are captured by pointing fd 2 at a temp file (each test runs in
 * its own fork, so nothing leaks between tests) and parsed as JSON.
 */
#include <check.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

static char fixture_dir[PATH_MAX];
static char tmp_dir[PATH_MAX];

/* ---- helpers ---------------------------------------------------------- */

typedef struct capture {
    int saved_fd;
    FILE *file;
} capture;

static void capture_begin(capture *c)
{
    fflush(stderr);
    c->file = tmpfile();
    ck_assert_ptr_nonnull(c->file);
    c->saved_fd = dup(STDERR_FILENO);
    ck_assert_int_ge(c->saved_fd, 0);
    ck_assert_int_ge(dup2(fileno(c->file), STDERR_FILENO), 0);
}

/* The "msg" of the last log line written since capture_begin (malloc'd). */
static char *capture_last_msg(capture *c)
{
    fflush(stderr);
    dup2(c->saved_fd, STDERR_FILENO);
    close(c->saved_fd);
    char line[8192], last[8192] = "";
    rewind(c->file);
    while (fgets(line, sizeof(line), c->file))
        snprintf(last, sizeof(last), "%s", line);
    fclose(c->file);
    json_object *o = json_tokener_parse(last);
    ck_assert_msg(o != NULL, "no JSON log line captured (got \"%s\")", last);
    json_object *msg;
    ck_assert(json_object_object_get_ex(o, "msg", &msg));
    char *s = strdup(json_object_get_string(msg));
    json_object_put(o);
    return s;
}

/* Load name from dir expecting a refusal; returns the refusal line. */
static char *refusal(const char *dir, const char *name, uint32_t kind)
{
    capture c;
    capture_begin(&c);
    od_loaded_module *m = od_loader_load(dir, name, kind);
    char *msg = capture_last_msg(&c);
    ck_assert_msg(m == NULL, "%s loaded but should have been refused", name);
    return msg;
}

static void expect_refusal(const char *name, uint32_t kind, const char *what)
{
    char want[PATH_MAX + 512];
    snprintf(want, sizeof(want), "module \"%s\" (%s/%s.so): %s", name, fixture_dir, name, what);
    char *got = refusal(fixture_dir, name, kind);
    ck_assert_str_eq(got, want);
    free(got);
}

static void copy_file(const char *from, const char *to, mode_t mode)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    ck_assert_ptr_nonnull(in);
    ck_assert_ptr_nonnull(out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
    ck_assert_int_eq(chmod(to, mode), 0); /* chmod: the umask does not apply */
}

static void setup(void)
{
    const char *dir = ABI_FIXTURE_DIR;
    ck_assert_msg(realpath(dir, fixture_dir) != NULL, "fixture dir %s missing", dir);
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/orderd-abi-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
}

static void teardown(void)
{
    char cmd[PATH_MAX + 16];
    chmod(tmp_dir, 0700);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* ---- good modules ----------------------------------------------------- */

static const struct {
    const char *name;
    uint32_t kind;
} good[] = {
    {"good_service", OD_KIND_SERVICE},
    {"good_storage", OD_KIND_STORAGE},
    {"good_queue", OD_KIND_QUEUE},
    {"good_step", OD_KIND_STEP},
};

START_TEST(good_modules_load)
{
    od_loaded_module *m = od_loader_load(fixture_dir, good[_i].name, good[_i].kind);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(m->name, good[_i].name);
    ck_assert_str_eq(m->desc->name, good[_i].name);
    ck_assert_uint_eq(m->desc->kind, good[_i].kind);
    ck_assert_ptr_nonnull(m->handle);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof(want), "%s/%s.so", fixture_dir, good[_i].name);
    ck_assert_str_eq(m->path, want);
    od_loader_free(m);
}
END_TEST

START_TEST(good_module_loads_with_any_kind)
{
    od_loaded_module *m = od_loader_load(fixture_dir, good[_i].name, 0);
    ck_assert_ptr_nonnull(m);
    od_loader_free(m);
}
END_TEST

/* ---- the file --------------------------------------------------------- */

START_TEST(refuses_missing_file)
{
    expect_refusal("does_not_exist", 0,
                   "file not found in the modules directory (is the name right? see orderd "
                   "--list-modules)");
}
END_TEST

START_TEST(refuses_invalid_names)
{
    static const char *const bad[] = {
        "../good_service", "Good", "a/b", "", "a.b", "a23456789012345678901234567890123"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char want[PATH_MAX + 512];
        snprintf(want, sizeof(want),
                 "module \"%s\" (%s/%s.so): invalid module name (use 1-32 of a-z, 0-9, _)", bad[i],
                 fixture_dir, bad[i]);
        char *got = refusal(fixture_dir, bad[i], 0);
        ck_assert_str_eq(got, want);
        free(got);
    }
}
END_TEST

START_TEST(accepts_name_of_32)
{
    /* 32 characters is the limit: the refusal must be "not found", not "invalid". */
    const char *name = "a2345678901234567890123456789012";
    char *got = refusal(fixture_dir, name, 0);
    ck_assert_ptr_nonnull(strstr(got, "file not found"));
    free(got);
}
END_TEST

START_TEST(refuses_world_writable_file)
{
    char from[PATH_MAX + 32], to[PATH_MAX + 32], want[4 * PATH_MAX];
    snprintf(from, sizeof(from), "%s/good_service.so", fixture_dir);
    snprintf(to, sizeof(to), "%s/good_service.so", tmp_dir);
    copy_file(from, to, 0666);
    snprintf(want, sizeof(want),
             "module \"good_service\" (%s): file is world-writable; refusing to load it "
             "(chmod o-w %s)",
             to, to);
    char *got = refusal(tmp_dir, "good_service", 0);
    ck_assert_str_eq(got, want);
    free(got);
    /* The same file, not world-writable, loads: the mode was the only fault. */
    ck_assert_int_eq(chmod(to, 0644), 0);
    od_loaded_module *m = od_loader_load(tmp_dir, "good_service", 0);
    ck_assert_ptr_nonnull(m);
    od_loader_free(m);
}
END_TEST

START_TEST(refuses_world_writable_dir_without_sticky_bit)
{
    char from[PATH_MAX + 32], to[PATH_MAX + 32], want[4 * PATH_MAX];
    snprintf(from, sizeof(from), "%s/good_service.so", fixture_dir);
    snprintf(to, sizeof(to), "%s/good_service.so", tmp_dir);
    copy_file(from, to, 0644);
    ck_assert_int_eq(chmod(tmp_dir, 0777), 0);
    snprintf(want, sizeof(want),
             "module \"good_service\" (%s): modules directory %s is world-writable; refusing to "
             "load from it (chmod o-w %s)",
             to, tmp_dir, tmp_dir);
    char *got = refusal(tmp_dir, "good_service", 0);
    ck_assert_str_eq(got, want);
    free(got);
    /* With the sticky bit (as /tmp) only the owner can replace the file. */
    ck_assert_int_eq(chmod(tmp_dir, 01777), 0);
    od_loaded_module *m = od_loader_load(tmp_dir, "good_service", 0);
    ck_assert_ptr_nonnull(m);
    od_loader_free(m);
}
END_TEST

START_TEST(refuses_missing_dir)
{
    char dir[PATH_MAX + 16], want[3 * PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/nope", tmp_dir);
    snprintf(want, sizeof(want),
             "module \"good_service\" (%s/good_service.so): modules directory %s does not exist "
             "(set modules.directory)",
             dir, dir);
    char *got = refusal(dir, "good_service", 0);
    ck_assert_str_eq(got, want);
    free(got);
}
END_TEST

START_TEST(refuses_file_dlopen_cannot_load)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/garbage.so", tmp_dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("this is not an ELF file\n", f);
    fclose(f);
    char *got = refusal(tmp_dir, "garbage", 0);
    char want[3 * PATH_MAX];
    snprintf(want, sizeof(want), "module \"garbage\" (%s): cannot load: %s: ", path, path);
    /* dlerror()'s own wording follows; the prefix is ours. */
    ck_assert_msg(strncmp(got, want, strlen(want)) == 0, "got \"%s\"", got);
    ck_assert_msg(strstr(got, "invalid ELF header") || strstr(got, "file too short"), "got \"%s\"",
                  got);
    free(got);
}
END_TEST

/* ---- the descriptor --------------------------------------------------- */

START_TEST(refuses_no_entry)
{
    expect_refusal("no_entry", 0, "not an orderd module (no od_module_entry symbol)");
}
END_TEST

START_TEST(refuses_entry_null)
{
    expect_refusal("entry_null", 0, "od_module_entry() returned NULL");
}
END_TEST

START_TEST(refuses_bad_magic)
{
    expect_refusal("bad_magic", 0, "not an orderd module (bad magic 0x12345678)");
}
END_TEST

START_TEST(refuses_other_abi_major)
{
    char what[160];
    snprintf(what, sizeof(what),
             "built for ABI %d.%d, this orderd provides %d.%d; rebuild the module against "
             "this orderd's headers",
             OD_ABI_MAJOR + 1, OD_ABI_MINOR, OD_ABI_MAJOR, OD_ABI_MINOR);
    expect_refusal("abi_major", 0, what);
}
END_TEST

START_TEST(refuses_newer_abi_minor)
{
    char what[160];
    snprintf(what, sizeof(what), "built for ABI %d.%d, newer than this orderd's %d.%d; upgrade orderd",
             OD_ABI_MAJOR, OD_ABI_MINOR + 1, OD_ABI_MAJOR, OD_ABI_MINOR);
    expect_refusal("abi_minor", 0, what);
}
END_TEST

/* A backend built against 1.0 has no 1.1 members: it still loads, and its
 * shorter ops table reads as "no put_batch / store". */
START_TEST(loads_backends_built_for_abi_1_0)
{
    od_loaded_module *st = od_loader_load(fixture_dir, "storage_abi_1_0", OD_KIND_STORAGE);
    od_loaded_module *q = od_loader_load(fixture_dir, "queue_abi_1_0", OD_KIND_QUEUE);
    ck_assert_ptr_nonnull(st);
    ck_assert_ptr_nonnull(q);
    ck_assert_uint_eq(st->desc->abi_minor, 0);
    const od_storage_ops *so = st->desc->ops;
    const od_queue_ops *qo = q->desc->ops;
    ck_assert_uint_eq(so->size, offsetof(od_storage_ops, put_batch));
    ck_assert_int_eq(OD_HAS_OP(od_storage_ops, so, ping), 0); /* present in 1.0 but unset */
    ck_assert_int_eq(OD_HAS_OP(od_storage_ops, so, get), 1);
    ck_assert_uint_eq(qo->size, offsetof(od_queue_ops, store));
    ck_assert_int_eq(OD_HAS_OP(od_queue_ops, qo, send), 1);
    od_loader_free(st);
    od_loader_free(q);
}
END_TEST

START_TEST(refuses_small_descriptor)
{
    char what[128];
    snprintf(what, sizeof(what), "descriptor size 16 is too small for ABI %d.%d (needs %zu)",
             OD_ABI_MAJOR, OD_ABI_MINOR, sizeof(od_module_desc));
    expect_refusal("small_desc", 0, what);
}
END_TEST

START_TEST(refuses_unknown_kind)
{
    expect_refusal("bad_kind", 0, "unknown kind 9 (valid: 1 service, 2 storage, 3 queue, 4 step)");
}
END_TEST

START_TEST(refuses_kind_other_than_expected)
{
    expect_refusal("good_service", OD_KIND_STORAGE,
                   "is a service module, but the configuration uses it as a storage module");
    expect_refusal("good_storage", OD_KIND_QUEUE,
                   "is a storage module, but the configuration uses it as a queue module");
}
END_TEST

START_TEST(refuses_missing_init)
{
    expect_refusal("no_init", 0, "init() is missing (required)");
}
END_TEST

START_TEST(refuses_service_with_ops)
{
    expect_refusal("service_ops", 0, "a service module must set ops = NULL");
}
END_TEST

START_TEST(refuses_backend_without_ops)
{
    expect_refusal("storage_no_ops", 0, "a storage module needs an ops table (ops is NULL)");
}
END_TEST

START_TEST(refuses_small_ops)
{
    char what[128];
    snprintf(what, sizeof(what), "storage ops size 8 is too small for ABI %d.%d (needs %zu)",
             OD_ABI_MAJOR, OD_ABI_MINOR, sizeof(od_storage_ops));
    expect_refusal("storage_small_ops", 0, what);
}
END_TEST

START_TEST(refuses_missing_required_ops)
{
    expect_refusal("storage_no_get", 0, "storage op get() is missing (required)");
    expect_refusal("queue_no_depth", 0, "queue op depth() is missing (required)");
    expect_refusal("step_no_run", 0, "step op run() is missing (required)");
}
END_TEST

START_TEST(refuses_invalid_descriptor_name)
{
    expect_refusal("bad_desc_name", 0,
                   "invalid descriptor name \"Bad-Name\" (use 1-32 of a-z, 0-9, _)");
}
END_TEST

/* ---- duplicates ------------------------------------------------------- */

START_TEST(refuses_duplicate_descriptor_name)
{
    od_loaded_module *a = od_loader_load(fixture_dir, "good_service", 0);
    od_loaded_module *b = od_loader_load(fixture_dir, "dup_service", 0);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    capture c;
    capture_begin(&c);
    ck_assert_int_eq(od_loader_check_unique(&a, 1, b), OD_ERR_EXISTS);
    char *got = capture_last_msg(&c);
    char want[3 * PATH_MAX];
    snprintf(want, sizeof(want),
             "module \"dup_service\" (%s/dup_service.so): duplicate module name "
             "\"good_service\", already loaded from %s/good_service.so",
             fixture_dir, fixture_dir);
    ck_assert_str_eq(got, want);
    free(got);
    od_loader_free(a);
    od_loader_free(b);
}
END_TEST

START_TEST(refuses_same_file_twice)
{
    od_loaded_module *a = od_loader_load(fixture_dir, "good_step", 0);
    od_loaded_module *b = od_loader_load(fixture_dir, "good_step", 0);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    capture c;
    capture_begin(&c);
    ck_assert_int_eq(od_loader_check_unique(&a, 1, b), OD_ERR_EXISTS);
    char *got = capture_last_msg(&c);
    char want[2 * PATH_MAX];
    snprintf(want, sizeof(want),
             "module \"good_step\" (%s/good_step.so): listed twice; load each "
             "module once",
             fixture_dir);
    ck_assert_str_eq(got, want);
    free(got);
    od_loader_free(a);
    od_loader_free(b);
}
END_TEST

START_TEST(distinct_modules_are_unique)
{
    od_loaded_module *mods[2] = {od_loader_load(fixture_dir, "good_service", 0),
                                 od_loader_load(fixture_dir, "good_storage", 0)};
    od_loaded_module *c = od_loader_load(fixture_dir, "good_queue", 0);
    ck_assert_ptr_nonnull(mods[0]);
    ck_assert_ptr_nonnull(mods[1]);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(od_loader_check_unique(mods, 2, c), OD_OK);
    od_loader_free(mods[0]);
    od_loader_free(mods[1]);
    od_loader_free(c);
}
END_TEST

static Suite *loader_suite(void)
{
    Suite *s = suite_create("abi_loader");
    TCase *tc = tcase_create("loader");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, good_modules_load, 0, (int)(sizeof(good) / sizeof(good[0])));
    tcase_add_loop_test(tc, good_module_loads_with_any_kind, 0,
                        (int)(sizeof(good) / sizeof(good[0])));
    tcase_add_test(tc, refuses_missing_file);
    tcase_add_test(tc, refuses_invalid_names);
    tcase_add_test(tc, accepts_name_of_32);
    tcase_add_test(tc, refuses_world_writable_file);
    tcase_add_test(tc, refuses_world_writable_dir_without_sticky_bit);
    tcase_add_test(tc, refuses_missing_dir);
    tcase_add_test(tc, refuses_file_dlopen_cannot_load);
    tcase_add_test(tc, refuses_no_entry);
    tcase_add_test(tc, refuses_entry_null);
    tcase_add_test(tc, refuses_bad_magic);
    tcase_add_test(tc, refuses_other_abi_major);
    tcase_add_test(tc, refuses_newer_abi_minor);
    tcase_add_test(tc, loads_backends_built_for_abi_1_0);
    tcase_add_test(tc, refuses_small_descriptor);
    tcase_add_test(tc, refuses_unknown_kind);
    tcase_add_test(tc, refuses_kind_other_than_expected);
    tcase_add_test(tc, refuses_missing_init);
    tcase_add_test(tc, refuses_service_with_ops);
    tcase_add_test(tc, refuses_backend_without_ops);
    tcase_add_test(tc, refuses_small_ops);
    tcase_add_test(tc, refuses_missing_required_ops);
    tcase_add_test(tc, refuses_invalid_descriptor_name);
    tcase_add_test(tc, refuses_duplicate_descriptor_name);
    tcase_add_test(tc, refuses_same_file_twice);
    tcase_add_test(tc, distinct_modules_are_unique);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(loader_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
