/*
 * tests/integration/harness.h - run a real orderd process and talk HTTP to it.
 *
 * The harness writes a config into a fresh temp dir, starts
 * $ORDERD_BUILD_DIR/orderd with stderr to a file, waits for the
 * "listening on http://127.0.0.1:PORT" log line and then drives the server
 * through libcurl (one keep-alive handle per process) or raw sockets.
 *
 * Every HTTP answer goes through the same checks (ih_request): never a 5xx
 * other than 503, always application/json with the orderd envelope (except
 * /metrics), and no forbidden string (password hashes, registered
 * passwords) anywhere in the headers or body. Suites run with CK_FORK=no so
 * the server is a child of the runner and its exit status can be checked;
 * main() must fold ih_failed_servers() into its exit code.
 *
 * Responses are owned by the harness and freed by ih_release(), which each
 * suite calls from a checked teardown, so tests never free by hand.
 */
#ifndef ORDERD_INTEG_HARNESS_H
#define ORDERD_INTEG_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <check.h>
#include <curl/curl.h>
#include <json-c/json.h>

/* Fixed test credentials, also written into the generated config. */
#define IH_JWT_SECRET "integration-test-secret-0123456789-abcdefghijklmnop"
#define IH_ADMIN_EMAIL "admin@test.local"
#define IH_ADMIN_PASSWORD "admin-password-1"
#define IH_MAX_BODY 65536

typedef struct ih_server {
    pid_t pid;             /* 0 once reaped */
    int port;
    int exit_code;         /* valid after ih_server_stop: 0..255, or -1 for a signal/timeout */
    char dir[128];         /* temp dir with orderd.conf and orderd.log */
    char log_path[192];
    char db_path[512];     /* set by ih_server_launch: the harness-made SQLite
                            * file its config names (ORDERD_TEST_BACKEND=sqlite),
                            * "" for none; read it, never remove it by hand */
} ih_server;

typedef struct ih_header {
    char *name, *value;
} ih_header;

typedef struct ih_response {
    CURLcode curl;          /* CURLE_OK when an HTTP answer arrived */
    long status;            /* 0 when none */
    long new_connections;   /* CURLINFO_NUM_CONNECTS: 0 = reused keep-alive */
    ih_header *headers;
    size_t n_headers;
    char *body;             /* NUL-terminated, never NULL */
    size_t body_len;
    struct json_object *json; /* parsed body or NULL */
} ih_response;

/* ---- backends ----
 * ORDERD_TEST_BACKEND selects what the generated configs use:
 *  "memory" (default);
 *  "aws": storage_dynamodb + queue_sqs, endpoints and dummy credentials from
 *    the AWS_* environment, tables and queues created at start-up. A fresh
 *    prefix per server keeps tests apart on shared emulators; servers given
 *    the same prefix share tables and queues;
 *  "sqlite": storage_sqlite + queue_sqlite on one file, so orders write the
 *    order, its Idempotency-Key record and its queue message in one
 *    transaction. The file is <prefix>.db in a directory the harness makes
 *    under $ORDERD_BUILD_DIR (integ-sqlite-XXXXXX). A fresh-prefix file
 *    belongs to the one server launched on it and is removed (with -wal,
 *    -shm, -journal) when that server stops cleanly; a file named by an
 *    explicit prefix may be shared or reopened, so it lives until the suite
 *    ends. ih_run_suite removes whatever is left and the directory when the
 *    run passed, and keeps them (printing where) when it failed. */
int ih_backend_is_aws(void); /* fails the test on an unknown value */
int ih_backend_is_sqlite(void); /* the same */
/* 1 when ORDERD_TEST_BACKEND names `name` ("memory" also when unset). No
 * check of the value, so it may run outside a test (suite set-up). */
int ih_backend_selected(const char *name);
/* A prefix no other server of any run has used: letters, digits, no
 * separator (the groups add "_" for tables and "-" for queues). */
void ih_unique_prefix(char *out, size_t cap);
/* The storage and queue groups for the selected backend (fails the test if
 * they do not fit in cap). prefix: NULL for a fresh one; unused for memory. */
void ih_backend_groups(char *out, size_t cap, const char *prefix);

/* ---- server lifecycle ----
 * Start with the default test config plus `extra` (more libconfig groups,
 * or NULL). Fails the current test (ck_assert) if it does not come up. */
void ih_server_start(ih_server *s, const char *extra);
/* Start orderd on a whole config the caller wrote (libconfig text, e.g.
 * the full order flow or SQLite). s->dir and s->log_path are used when set
 * (a restart on the same data, a fresh log per start), else a new temp dir
 * and <dir>/orderd.log; the config goes to <dir>/orderd.conf. Same wait,
 * failure and stop rules as ih_server_start. s->db_path is set when the
 * config names a SQLite file of ih_backend_groups. */
void ih_server_launch(ih_server *s, const char *config);
/* SIGTERM, wait up to 20 s, record the exit status. Returns exit_code.
 * A non-zero exit, or a password, hash, secret or access token found in
 * the server log, is counted for ih_failed_servers() and keeps the temp dir
 * and database for a look; otherwise both are removed (a fresh-prefix
 * SQLite file with its -wal/-shm, see "backends"). */
int ih_server_stop(ih_server *s);
/* 1 while the process has not exited (reaps it if it has). */
int ih_server_alive(ih_server *s);
/* Number of servers that exited non-zero, crashed, hung or logged a secret. */
int ih_failed_servers(void);
/* Print the last lines of the server log to stderr (for failures). */
void ih_dump_log(const ih_server *s);
/* The whole server log so far (harness-owned), "" if there is none. */
const char *ih_server_log(const ih_server *s);
/* A whole file, malloc'd (free() it); NULL if it cannot be opened. */
char *ih_read_file(const char *path);

/* ---- HTTP ----
 * headers: NULL-terminated "Name: value" list or NULL. body may be NULL.
 * The response is checked as described above and owned by the harness. */
ih_response *ih_request(ih_server *s, const char *method, const char *path,
                        const char *const *headers, const char *body, size_t len);
ih_response *ih_get(ih_server *s, const char *path, const char *token);
ih_response *ih_send_json(ih_server *s, const char *method, const char *path,
                          const char *token, const char *json);
/* Free every response and curl list handed out so far. */
void ih_release(void);
/* Drop the keep-alive connection (next request opens a new one). */
void ih_reset_connection(void);

/* Case-insensitive header lookup; NULL if absent. */
const char *ih_header_value(const ih_response *r, const char *name);
/* JSON by dotted path ("data.user.id"); NULL if absent. */
struct json_object *ih_json(const ih_response *r, const char *path);
/* The string at path, or NULL if absent or not a string. */
const char *ih_str(const ih_response *r, const char *path);
/* Assert an error envelope: HTTP status, body statusCode and error code. */
void ih_assert_error(const ih_response *r, long status, const char *code);

/* Strings that must never appear in any response (copied). */
void ih_forbid(const char *s);

/* ---- raw sockets, for what curl will not send ----
 * Connect, send data, optionally shut down the write side, and read until
 * the peer closes or timeout_ms passes. Returns bytes read (NUL-terminated
 * in out), or -1 if the connection could not be made. */
ssize_t ih_raw(const ih_server *s, const void *data, size_t len, int shut_wr, char *out,
               size_t cap, int timeout_ms);
/* Open a connection for hand-driven tests; -1 on failure. */
int ih_connect(const ih_server *s);
int ih_send_all(int fd, const void *data, size_t len); /* 0 or -1 */
/* Read until the peer closes, cap-1 bytes or timeout_ms; NUL-terminates. */
ssize_t ih_read_all(int fd, char *out, size_t cap, int timeout_ms);
/* The status code of a raw HTTP response, 0 if none. */
int ih_raw_status(const char *raw);

/* ---- helpers ---- */
/* Log in and return the access token (harness-owned), asserting success. */
const char *ih_login(ih_server *s, const char *email, const char *password);
/* Register a user and return its id (harness-owned), asserting 201. The
 * password is added to the forbidden strings. */
const char *ih_register(ih_server *s, const char *name, const char *email, const char *password);
/* A string owned by the harness until ih_release(). */
char *ih_strdup(const char *s);
char *ih_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int64_t ih_monotonic_ms(void);

/* Run a suite, CK_FORK=no semantics; returns the process exit code. */
int ih_run_suite(Suite *suite);

#endif /* ORDERD_INTEG_HARNESS_H */
