/*
 * tests/integration/harness.c - see harness.h.
 *
 * Single-threaded by design: suites run with CK_FORK=no in one process, so
 * the bookkeeping below (owned allocations, forbidden strings, the curl
 * handle) needs no locking.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 20000
#define POLL_STEP_MS 10
#define HTTP_TIMEOUT_MS 15000

/* ---- harness-owned memory ------------------------------------------------ */

static void **owned;
static size_t n_owned, cap_owned;
static ih_response **responses;
static size_t n_responses, cap_responses;
static char **forbidden;     /* never in a response nor in the server log */
static size_t n_forbidden;
static char **log_secrets;   /* never in the server log (tokens: responses carry them) */
static size_t n_log_secrets;
static CURL *curl_handle;
static int failed_servers;

static void *grow(void *array, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return array;
    size_t n = *cap ? *cap * 2 : 16;
    void *p = realloc(array, n * elem);
    ck_assert_ptr_nonnull(p);
    *cap = n;
    return p;
}

static void *own(void *p)
{
    ck_assert_ptr_nonnull(p);
    owned = grow(owned, &cap_owned, n_owned + 1, sizeof *owned);
    owned[n_owned++] = p;
    return p;
}

char *ih_strdup(const char *s)
{
    return own(strdup(s));
}

char *ih_printf(const char *fmt, ...)
{
    va_list ap;
    char *out = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&out, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(n, 0);
    return own(out);
}

static void response_free(ih_response *r)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->body);
    json_object_put(r->json);
    free(r);
}

void ih_release(void)
{
    for (size_t i = 0; i < n_responses; i++)
        response_free(responses[i]);
    n_responses = 0;
    for (size_t i = 0; i < n_owned; i++)
        free(owned[i]);
    n_owned = 0;
}

static void push_string(char ***list, size_t *n, const char *s)
{
    char **p = realloc(*list, (*n + 1) * sizeof *p);
    if (!p || !(p[*n] = strdup(s))) {
        fprintf(stderr, "harness: out of memory\n");
        abort();
    }
    *list = p;
    (*n)++;
}

static void free_strings(char ***list, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        free((*list)[i]);
    free(*list);
    *list = NULL;
    *n = 0;
}

/* Callable outside a test (suite set-up), so no ck_assert here. */
void ih_forbid(const char *s)
{
    push_string(&forbidden, &n_forbidden, s);
}

int64_t ih_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ---- backends ------------------------------------------------------------ */

static const char *backend_env(void)
{
    const char *b = getenv("ORDERD_TEST_BACKEND");
    return b && *b ? b : "memory";
}

int ih_backend_selected(const char *name)
{
    return strcmp(backend_env(), name) == 0;
}

static const char *backend(void)
{
    const char *b = backend_env();
    /* A typo must not quietly test the memory backend instead. */
    ck_assert_msg(strcmp(b, "memory") == 0 || strcmp(b, "aws") == 0 || strcmp(b, "sqlite") == 0,
                  "ORDERD_TEST_BACKEND=\"%s\" (known: memory, aws, sqlite)", b);
    return b;
}

int ih_backend_is_aws(void)
{
    return strcmp(backend(), "aws") == 0;
}

int ih_backend_is_sqlite(void)
{
    return strcmp(backend(), "sqlite") == 0;
}

/* pid + wall-clock seconds + a counter: unique across servers of one run
 * and across runs against emulators that outlived an earlier one. */
void ih_unique_prefix(char *out, size_t cap)
{
    static unsigned counter;
    snprintf(out, cap, "it%ldt%ldn%u", (long)getpid(), (long)(time(NULL) % 1000000), ++counter);
}

/* SQLite files handed out by ih_backend_groups, in one directory of the
 * build tree per runner process (a shared one could be removed by one
 * suite while a parallel one creates a file in it). */
typedef struct db_file {
    char *path;
    int shared;  /* named by an explicit prefix: may be reopened, lives until the suite ends */
    int removed;
} db_file;

static db_file *db_files;
static size_t n_db_files, cap_db_files;
static char db_dir[448];
static int leftovers;        /* files or directories the clean-up could not remove */
static pid_t *launched;      /* every server forked, for the end-of-suite sweep */
static size_t n_launched, cap_launched;

static const char *sqlite_file(const char *prefix, int shared)
{
    if (db_dir[0] == '\0') {
        const char *build = getenv("ORDERD_BUILD_DIR");
        ck_assert_msg(build != NULL, "ORDERD_BUILD_DIR is not set (run through ctest)");
        ck_assert_msg(strpbrk(build, "\"\\") == NULL, "ORDERD_BUILD_DIR %s cannot be quoted "
                      "in a libconfig string", build);
        int n = snprintf(db_dir, sizeof db_dir, "%s/integ-sqlite-XXXXXX", build);
        ck_assert_msg(n > 0 && (size_t)n < sizeof db_dir, "ORDERD_BUILD_DIR is too long");
        if (!mkdtemp(db_dir)) {
            int e = errno;
            db_dir[0] = '\0';
            ck_abort_msg("mkdtemp under %s: %s", build, strerror(e));
        }
    }
    char path[sizeof ((ih_server *)0)->db_path];
    int n = snprintf(path, sizeof path, "%s/%s.db", db_dir, prefix);
    ck_assert_msg(n > 0 && (size_t)n < sizeof path, "SQLite path too long for %s", prefix);
    for (size_t i = 0; i < n_db_files; i++)
        if (strcmp(db_files[i].path, path) == 0)
            return db_files[i].path; /* the same explicit prefix again */
    db_files = grow(db_files, &cap_db_files, n_db_files + 1, sizeof *db_files);
    db_files[n_db_files] = (db_file){ strdup(path), shared, 0 };
    ck_assert_ptr_nonnull(db_files[n_db_files].path);
    return db_files[n_db_files++].path;
}

/* The database and every file SQLite keeps beside it (docs/sqlite.md). */
static void remove_db(db_file *f)
{
    static const char *const suffix[] = { "", "-wal", "-shm", "-journal" };
    char path[sizeof ((ih_server *)0)->db_path + 16];
    for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++) {
        snprintf(path, sizeof path, "%s%s", f->path, suffix[i]);
        if (unlink(path) != 0 && errno != ENOENT) {
            fprintf(stderr, "harness: cannot remove %s: %s\n", path, strerror(errno));
            leftovers++;
        }
    }
    f->removed = 1;
}

static db_file *db_file_of(const ih_server *s)
{
    for (size_t i = 0; s->db_path[0] && i < n_db_files; i++)
        if (strcmp(db_files[i].path, s->db_path) == 0)
            return &db_files[i];
    return NULL;
}

/* The harness-made file the config names, or "" (matched with its quotes,
 * so "x1.db" does not match "x12.db"). */
static void find_db(ih_server *s, const char *config)
{
    s->db_path[0] = '\0';
    for (size_t i = 0; i < n_db_files; i++) {
        char quoted[sizeof s->db_path + 2];
        snprintf(quoted, sizeof quoted, "\"%s\"", db_files[i].path);
        if (strstr(config, quoted)) {
            snprintf(s->db_path, sizeof s->db_path, "%s", db_files[i].path);
            return;
        }
    }
}

/* End of the suite: no server may still hold a database (one a failed
 * test left running would otherwise die only with this process, after its
 * files went, and could recreate them), then every file and the directory
 * go when the run passed. Returns what could not be removed. */
static int end_of_suite_cleanup(int passed)
{
    for (size_t i = 0; i < n_launched; i++) {
        if (waitpid(launched[i], NULL, WNOHANG) == 0) {
            kill(launched[i], SIGKILL);
            waitpid(launched[i], NULL, 0);
        }
    }
    free(launched);
    launched = NULL;
    n_launched = cap_launched = 0;
    size_t kept = 0;
    for (size_t i = 0; i < n_db_files; i++) {
        if (!db_files[i].removed && passed)
            remove_db(&db_files[i]);
        kept += !db_files[i].removed;
        free(db_files[i].path);
    }
    free(db_files);
    db_files = NULL;
    n_db_files = cap_db_files = 0;
    if (db_dir[0] == '\0')
        return leftovers;
    if (kept) {
        fprintf(stderr, "SQLite files of the failed run kept in %s\n", db_dir);
    } else if (rmdir(db_dir) != 0) {
        fprintf(stderr, "harness: cannot remove %s: %s\n", db_dir, strerror(errno));
        leftovers++;
    }
    db_dir[0] = '\0';
    return leftovers;
}

void ih_backend_groups(char *out, size_t cap, const char *prefix)
{
    const char *b = backend();
    if (strcmp(b, "memory") == 0) {
        snprintf(out, cap, "storage: { backend = \"memory\"; };\n"
                           "queue: { backend = \"memory\"; };\n");
        return;
    }
    char fresh[64];
    int shared = prefix != NULL;
    if (!prefix) {
        ih_unique_prefix(fresh, sizeof fresh);
        prefix = fresh;
    }
    int n;
    if (strcmp(b, "sqlite") == 0) {
        /* One file for both, so orders use the one-transaction path.
         * durability "normal": these suites never kill orderd or the OS,
         * and a commit survives an orderd crash either way (integ_crash
         * covers "full" under SIGKILL); an fsync per commit would only
         * slow the suites down, most of all integ_sqlite_concurrency. */
        const char *path = sqlite_file(prefix, shared);
        n = snprintf(out, cap,
                     "storage: { backend = \"sqlite\"; path = \"%s\"; durability = \"normal\"; };\n"
                     "queue: { backend = \"sqlite\"; path = \"%s\"; durability = \"normal\"; };\n",
                     path, path);
    } else {
        /* Endpoints, region and credentials stay in the environment (the
         * ORDERD_AWS_TEST_ENV of tests/aws), as in a real deployment. */
        n = snprintf(out, cap,
                     "storage: { backend = \"dynamodb\"; table_prefix = \"%s_\";"
                     " create_missing = true; };\n"
                     "queue: { backend = \"sqs\"; queue_prefix = \"%s-\";"
                     " create_missing = true; };\n",
                     prefix, prefix);
    }
    ck_assert_msg(n > 0 && (size_t)n < cap, "backend groups do not fit in %zu bytes", cap);
}

/* ---- server lifecycle ---------------------------------------------------- */

/* The default test config (auth + users) plus `extra` (owned by the harness). */
static const char *default_config(const char *build_dir, const char *extra)
{
    char backends[1024];
    ih_backend_groups(backends, sizeof backends, NULL);
    return ih_printf(
        "server: { listen = \"127.0.0.1:0\"; threads = 16; max_body_bytes = %d;"
        " log_level = \"info\"; };\n"
        "modules: { directory = \"%s/modules\"; load = [\"auth\", \"users\"]; };\n"
        "%s"
        "auth: { jwt_secret = \"%s\"; token_ttl_seconds = 3600;"
        " login_max_failures = 5; login_window_seconds = 300;"
        " argon2_iterations = 1; argon2_memory_kib = 1024; };\n"
        "users: { admin_email = \"%s\"; admin_password = \"%s\";"
        " argon2_iterations = 1; argon2_memory_kib = 1024; };\n"
        "%s\n",
        IH_MAX_BODY, build_dir, backends, IH_JWT_SECRET, IH_ADMIN_EMAIL, IH_ADMIN_PASSWORD,
        extra ? extra : "");
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s: %s", path, strerror(errno));
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

static void exec_server(const char *bin, const char *cfg, const char *log_path)
{
    /* If the test runner dies, the server must not outlive it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log_fd < 0 || null_fd < 0)
        _exit(126);
    dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    /* The environment overrides config keys; the test config must win. */
    unsetenv("PORT");
    unsetenv("JWT_SECRET");
    unsetenv("ORDERD_ADMIN_EMAIL");
    unsetenv("ORDERD_ADMIN_PASSWORD");
    /* ORDERD_TEST_WRAPPER="valgrind --error-exitcode=99" runs the server
     * under a tool; words are split on spaces, no quoting. */
    char *argv[32];
    size_t argc = 0;
    char *wrapper = getenv("ORDERD_TEST_WRAPPER");
    for (char *save = NULL, *w = wrapper ? strtok_r(wrapper, " ", &save) : NULL;
         w && argc < 28; w = strtok_r(NULL, " ", &save))
        argv[argc++] = w;
    argv[argc++] = (char *)bin;
    argv[argc++] = "-c";
    argv[argc++] = (char *)cfg;
    argv[argc] = NULL;
    execvp(argv[0], argv);
    _exit(127);
}

char *ih_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, mem);
    fclose(f);
    fclose(mem);
    return buf;
}

/* The port from {"msg":"listening on http://127.0.0.1:PORT"}; json-c may
 * have escaped the slashes, so only the host:port part is matched. */
static int port_from_log(const char *log)
{
    const char *p = log ? strstr(log, "listening on http") : NULL;
    if (!p)
        return 0;
    const char *host = strstr(p, "127.0.0.1:");
    const char *eol = strchr(p, '\n');
    if (!host || (eol && host > eol))
        return 0;
    long port = strtol(host + strlen("127.0.0.1:"), NULL, 10);
    return port > 0 && port < 65536 ? (int)port : 0;
}

const char *ih_server_log(const ih_server *s)
{
    char *log = ih_read_file(s->log_path);
    return log ? own(log) : "";
}

void ih_dump_log(const ih_server *s)
{
    char *log = ih_read_file(s->log_path);
    if (!log)
        return;
    size_t len = strlen(log);
    const char *tail = len > 4000 ? log + len - 4000 : log;
    fprintf(stderr, "---- %s (tail) ----\n%s\n---- end of log ----\n", s->log_path, tail);
    free(log);
}

/* Slow tools (valgrind) need longer; ORDERD_TEST_START_MS overrides. */
static int start_timeout_ms(void)
{
    const char *v = getenv("ORDERD_TEST_START_MS");
    long ms = v ? strtol(v, NULL, 10) : 0;
    return ms > 0 && ms < 600000 ? (int)ms : START_TIMEOUT_MS;
}

void ih_server_launch(ih_server *s, const char *config)
{
    const char *build = getenv("ORDERD_BUILD_DIR");
    ck_assert_msg(build != NULL, "ORDERD_BUILD_DIR is not set (run through ctest)");
    char bin[512], cfg[256];
    snprintf(bin, sizeof bin, "%s/orderd", build);
    ck_assert_msg(access(bin, X_OK) == 0, "%s is missing: build the orderd target", bin);

    if (s->dir[0] == '\0') {
        snprintf(s->dir, sizeof s->dir, "/tmp/orderd-integ-XXXXXX");
        ck_assert_msg(mkdtemp(s->dir) != NULL, "mkdtemp: %s", strerror(errno));
    }
    if (s->log_path[0] == '\0')
        snprintf(s->log_path, sizeof s->log_path, "%s/orderd.log", s->dir);
    snprintf(cfg, sizeof cfg, "%s/orderd.conf", s->dir);
    write_file(cfg, config);
    find_db(s, config);
    s->port = 0;
    s->exit_code = 0;
    launched = grow(launched, &cap_launched, n_launched + 1, sizeof *launched);

    fflush(NULL);
    s->pid = fork();
    ck_assert_int_ge(s->pid, 0);
    if (s->pid == 0)
        exec_server(bin, cfg, s->log_path);
    launched[n_launched++] = s->pid;

    int64_t deadline = ih_monotonic_ms() + start_timeout_ms();
    while (ih_monotonic_ms() < deadline) {
        char *log = ih_read_file(s->log_path);
        s->port = port_from_log(log);
        free(log);
        if (s->port)
            return;
        if (!ih_server_alive(s))
            break;
        sleep_ms(POLL_STEP_MS);
    }
    ih_dump_log(s);
    int alive = ih_server_alive(s);
    if (alive) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    failed_servers++;
    ck_abort_msg("orderd did not log 'listening on' within %d ms (%s; log %s)",
                 start_timeout_ms(), alive ? "still running" : "exited", s->log_path);
}

void ih_server_start(ih_server *s, const char *extra)
{
    const char *build = getenv("ORDERD_BUILD_DIR");
    ck_assert_msg(build != NULL, "ORDERD_BUILD_DIR is not set (run through ctest)");
    memset(s, 0, sizeof *s);
    ih_server_launch(s, default_config(build, extra));
}

/* Record how the process ended; waitpid with WNOHANG, so it never blocks. */
static int reap(ih_server *s, int options)
{
    int status;
    pid_t r = waitpid(s->pid, &status, options);
    if (r != s->pid)
        return 0;
    s->pid = 0;
    if (WIFEXITED(status)) {
        s->exit_code = WEXITSTATUS(status);
    } else {
        fprintf(stderr, "orderd killed by signal %d\n", WTERMSIG(status));
        s->exit_code = -1;
    }
    return 1;
}

int ih_server_alive(ih_server *s)
{
    return s->pid > 0 && !reap(s, WNOHANG);
}

static void remove_dir(const ih_server *s)
{
    char path[256];
    snprintf(path, sizeof path, "%s/orderd.conf", s->dir);
    unlink(path);
    unlink(s->log_path);
    rmdir(s->dir);
}

static int leaked(const char *log, const char *secret, const char *label)
{
    if (!strstr(log, secret))
        return 0;
    fprintf(stderr, "server log leaks %s\n", label ? label : secret);
    return 1;
}

/* The server log must not contain a password, hash, secret or token.
 * Returns the number of leaks found (each reported on stderr). */
static int log_leaks(const ih_server *s)
{
    static const char *const always[] = { "passwordHash", "$argon2", IH_JWT_SECRET };
    char *log = ih_read_file(s->log_path);
    if (!log)
        return 0;
    int leaks = 0;
    for (size_t i = 0; i < sizeof always / sizeof *always; i++)
        leaks += leaked(log, always[i], NULL);
    for (size_t i = 0; i < n_forbidden; i++)
        leaks += leaked(log, forbidden[i], NULL);
    for (size_t i = 0; i < n_log_secrets; i++)
        leaks += leaked(log, log_secrets[i], "an access token");
    free(log);
    return leaks;
}

int ih_server_stop(ih_server *s)
{
    ih_reset_connection();
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        int64_t deadline = ih_monotonic_ms() + STOP_TIMEOUT_MS;
        while (ih_server_alive(s) && ih_monotonic_ms() < deadline)
            sleep_ms(POLL_STEP_MS);
        if (s->pid > 0) {
            fprintf(stderr, "orderd did not exit within %d ms of SIGTERM\n", STOP_TIMEOUT_MS);
            kill(s->pid, SIGKILL);
            reap(s, 0);
            s->exit_code = -1;
        }
    }
    int leaks = log_leaks(s);
    db_file *db = db_file_of(s);
    if (s->exit_code != 0 || leaks) {
        failed_servers++;
        fprintf(stderr,
                "orderd exited with %d (want 0), %d secret(s) in its log; log kept in %s%s%s\n",
                s->exit_code, leaks, s->dir, db ? ", database in " : "", db ? db->path : "");
        ih_dump_log(s);
    } else {
        remove_dir(s);
        if (db && !db->shared && !db->removed)
            remove_db(db);
    }
    return s->exit_code;
}

int ih_failed_servers(void)
{
    return failed_servers;
}

/* ---- HTTP ---------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    FILE *mem = arg;
    return fwrite(data, size, n, mem);
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    ih_response *r = arg;
    size_t len = size * n;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new status line (after 100 Continue): forget earlier headers. */
        for (size_t i = 0; i < r->n_headers; i++) {
            free(r->headers[i].name);
            free(r->headers[i].value);
        }
        r->n_headers = 0;
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon)
        return len;
    const char *v = colon + 1, *end = data + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    ih_header *h = realloc(r->headers, (r->n_headers + 1) * sizeof *h);
    if (!h)
        return 0;
    r->headers = h;
    h[r->n_headers].name = strndup(data, (size_t)(colon - data));
    h[r->n_headers].value = strndup(v, (size_t)(end - v));
    if (!h[r->n_headers].name || !h[r->n_headers].value) {
        free(h[r->n_headers].name);
        free(h[r->n_headers].value);
        return 0; /* curl fails the transfer: CURLE_WRITE_ERROR */
    }
    r->n_headers++;
    return len;
}

const char *ih_header_value(const ih_response *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

struct json_object *ih_json(const ih_response *r, const char *path)
{
    struct json_object *cur = r->json;
    char key[128];
    while (cur && *path) {
        size_t n = strcspn(path, ".");
        ck_assert_uint_lt(n, sizeof key);
        memcpy(key, path, n);
        key[n] = '\0';
        if (!json_object_is_type(cur, json_type_object) ||
            !json_object_object_get_ex(cur, key, &cur))
            return NULL;
        path += n + (path[n] == '.');
    }
    return cur;
}

const char *ih_str(const ih_response *r, const char *path)
{
    struct json_object *o = ih_json(r, path);
    return json_object_is_type(o, json_type_string) ? json_object_get_string(o) : NULL;
}

static void parse_json(ih_response *r)
{
    struct json_tokener *tok = json_tokener_new();
    ck_assert_ptr_nonnull(tok);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    r->json = json_tokener_parse_ex(tok, r->body, (int)r->body_len);
    int complete = r->json && json_tokener_get_parse_end(tok) == r->body_len;
    json_tokener_free(tok);
    ck_assert_msg(complete, "response body is not one JSON value: %.300s", r->body);
}

/* The envelope every orderd JSON answer carries. */
static void check_envelope(const char *what, const ih_response *r)
{
    ck_assert_msg(json_object_is_type(r->json, json_type_object), "%s: body is not an object",
                  what);
    struct json_object *code = ih_json(r, "statusCode");
    ck_assert_msg(json_object_is_type(code, json_type_int) &&
                      json_object_get_int64(code) == r->status,
                  "%s: statusCode does not match HTTP %ld: %.300s", what, r->status, r->body);
    ck_assert_msg(ih_str(r, "message") != NULL, "%s: no message: %.300s", what, r->body);
    if (r->status >= 400)
        ck_assert_msg(ih_str(r, "error") != NULL, "%s: error without code: %.300s", what, r->body);
    else
        ck_assert_msg(json_object_object_get_ex(r->json, "data", NULL),
                      "%s: success without data: %.300s", what, r->body);
}

static void check_no_secrets(const char *what, const ih_response *r)
{
    static const char *const always[] = { "passwordHash", "password_hash", "$argon2",
                                          IH_JWT_SECRET };
    for (size_t i = 0; i < sizeof always / sizeof *always; i++)
        ck_assert_msg(!strstr(r->body, always[i]), "%s: body leaks \"%s\"", what, always[i]);
    for (size_t i = 0; i < n_forbidden; i++) {
        ck_assert_msg(!strstr(r->body, forbidden[i]), "%s: body leaks \"%s\"", what, forbidden[i]);
        for (size_t h = 0; h < r->n_headers; h++)
            ck_assert_msg(!strstr(r->headers[h].value, forbidden[i]), "%s: header %s leaks \"%s\"",
                          what, r->headers[h].name, forbidden[i]);
    }
}

static void check_response(const char *method, const char *path, ih_response *r)
{
    char what[160];
    snprintf(what, sizeof what, "%s %.120s -> %ld", method, path, r->status);
    ck_assert_msg(r->status < 500 || r->status == 503, "%s (server error): %.300s", what, r->body);
    check_no_secrets(what, r);
    if (strncmp(path, "/metrics", 8) == 0 || r->body_len == 0)
        return;
    const char *type = ih_header_value(r, "Content-Type");
    ck_assert_msg(type && strncasecmp(type, "application/json", 16) == 0,
                  "%s: Content-Type %s, want application/json", what, type ? type : "(none)");
    parse_json(r);
    check_envelope(what, r);
}

static CURL *handle(void)
{
    if (!curl_handle) {
        curl_handle = curl_easy_init();
        ck_assert_ptr_nonnull(curl_handle);
    }
    /* reset keeps the live connection, so keep-alive carries over. */
    curl_easy_reset(curl_handle);
    return curl_handle;
}

void ih_reset_connection(void)
{
    if (curl_handle)
        curl_easy_cleanup(curl_handle);
    curl_handle = NULL;
}

static struct curl_slist *header_list(const char *const *headers)
{
    /* curl would otherwise add "Expect: 100-continue" to larger bodies. */
    struct curl_slist *list = curl_slist_append(NULL, "Expect:");
    for (size_t i = 0; headers && headers[i]; i++)
        list = curl_slist_append(list, headers[i]);
    ck_assert_ptr_nonnull(list);
    return list;
}

ih_response *ih_request(ih_server *s, const char *method, const char *path,
                        const char *const *headers, const char *body, size_t len)
{
    ih_response *r = calloc(1, sizeof *r);
    ck_assert_ptr_nonnull(r);
    responses = grow(responses, &cap_responses, n_responses + 1, sizeof *responses);
    responses[n_responses++] = r;

    char url[1200];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", s->port, path);
    struct curl_slist *list = header_list(headers);
    FILE *mem = open_memstream(&r->body, &r->body_len);
    ck_assert_ptr_nonnull(mem);

    CURL *c = handle();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)HTTP_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, mem);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    r->curl = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &r->new_connections);
    /* The handle keeps pointers to the list until the next reset. */
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(list);
    fclose(mem);
    if (r->curl != CURLE_OK)
        r->status = 0;
    else
        check_response(method, path, r);
    return r;
}

ih_response *ih_get(ih_server *s, const char *path, const char *token)
{
    const char *headers[2] = { token ? ih_printf("Authorization: Bearer %s", token) : NULL, NULL };
    return ih_request(s, "GET", path, headers, NULL, 0);
}

ih_response *ih_send_json(ih_server *s, const char *method, const char *path,
                          const char *token, const char *json)
{
    const char *headers[3] = { "Content-Type: application/json",
                               token ? ih_printf("Authorization: Bearer %s", token) : NULL, NULL };
    return ih_request(s, method, path, headers, json, strlen(json));
}

void ih_assert_error(const ih_response *r, long status, const char *code)
{
    ck_assert_msg(r->status == status, "want HTTP %ld, got %ld (curl %d): %.300s", status,
                  r->status, (int)r->curl, r->body);
    const char *got = ih_str(r, "error");
    ck_assert_msg(got && strcmp(got, code) == 0, "want error \"%s\", got: %.300s", code, r->body);
}

const char *ih_login(ih_server *s, const char *email, const char *password)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "email", json_object_new_string(email));
    json_object_object_add(o, "password", json_object_new_string(password));
    char *body = ih_strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    ih_response *r = ih_send_json(s, "POST", "/api/login", NULL, body);
    ck_assert_msg(r->status == 200, "login %s: %ld %.300s", email, r->status, r->body);
    const char *token = ih_str(r, "data.accessToken");
    ck_assert_ptr_nonnull(token);
    push_string(&log_secrets, &n_log_secrets, token);
    return ih_strdup(token);
}

const char *ih_register(ih_server *s, const char *name, const char *email, const char *password)
{
    ih_forbid(password); /* no later response may echo it */
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "email", json_object_new_string(email));
    json_object_object_add(o, "password", json_object_new_string(password));
    char *body = ih_strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    ih_response *r = ih_send_json(s, "POST", "/api/users", NULL, body);
    ck_assert_msg(r->status == 201, "register %s: %ld %.300s", email, r->status, r->body);
    const char *id = ih_str(r, "data.id");
    ck_assert_ptr_nonnull(id);
    return ih_strdup(id);
}

/* ---- raw sockets --------------------------------------------------------- */

int ih_connect(const ih_server *s)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)s->port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

ssize_t ih_read_all(int fd, char *out, size_t cap, int timeout_ms)
{
    size_t got = 0;
    int64_t deadline = ih_monotonic_ms() + timeout_ms;
    while (got + 1 < cap) {
        int left = (int)(deadline - ih_monotonic_ms());
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (left <= 0 || poll(&p, 1, left) <= 0)
            break;
        ssize_t n = recv(fd, out + got, cap - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    out[got] = '\0';
    return (ssize_t)got;
}

static int send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int ih_send_all(int fd, const void *data, size_t len)
{
    return send_all(fd, data, len);
}

ssize_t ih_raw(const ih_server *s, const void *data, size_t len, int shut_wr, char *out,
               size_t cap, int timeout_ms)
{
    int fd = ih_connect(s);
    if (fd < 0)
        return -1;
    /* A failed send is not an error here: the server may close early. */
    (void)send_all(fd, data, len);
    if (shut_wr)
        shutdown(fd, SHUT_WR);
    ssize_t n = ih_read_all(fd, out, cap, timeout_ms);
    close(fd);
    return n;
}

int ih_raw_status(const char *raw)
{
    int status = 0;
    if (sscanf(raw, "HTTP/1.%*d %d", &status) != 1)
        return 0;
    return status;
}

/* ---- runner -------------------------------------------------------------- */

int ih_run_suite(Suite *suite)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "curl_global_init failed\n");
        return EXIT_FAILURE;
    }
    signal(SIGPIPE, SIG_IGN);
    SRunner *sr = srunner_create(suite);
    /* The server must be our child to check its exit status; see harness.h. */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    int left = end_of_suite_cleanup(!failed && !failed_servers);
    ih_release();
    ih_reset_connection();
    curl_global_cleanup();
    free_strings(&forbidden, &n_forbidden);
    free_strings(&log_secrets, &n_log_secrets);
    free(owned);
    free(responses);
    if (failed_servers)
        fprintf(stderr, "%d orderd process(es) exited non-zero, crashed, hung or logged a secret\n",
                failed_servers);
    if (left)
        fprintf(stderr, "%d file(s) or directories of SQLite test databases left behind\n", left);
    return failed || failed_servers || left ? EXIT_FAILURE : EXIT_SUCCESS;
}
