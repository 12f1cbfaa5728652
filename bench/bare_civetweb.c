/*
 * bench/bare_civetweb.c - the baseline for bench/run.sh: CivetWeb with the
 * options orderd uses (keep-alive, tcp_nodelay, decode_url=no, no CORS
 * preflight handling) and one begin_request callback that answers every
 * request with the bytes orderd's GET /health sends - same headers, the
 * body read from a file captured from a running orderd - in one mg_write.
 * Whatever orderd costs on top of this is routing, the envelope, request
 * ids, metrics, the access log and module dispatch.
 *
 *   bare_civetweb PORT BODY_FILE [THREADS]     runs until SIGINT/SIGTERM
 *
 * Threads: CivetWeb's master and THREADS workers; main waits in sigwait().
 * The response template is built once before mg_start and only read later.
 */
#include <civetweb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BODY_MAX 8192

typedef struct bare {
    char keep_alive[BODY_MAX + 512]; /* the full response, Connection: keep-alive */
    size_t keep_alive_len;
    char close[BODY_MAX + 512];      /* the same with Connection: close */
    size_t close_len;
} bare;

static size_t build_response(char *out, size_t cap, const char *connection, const char *body,
                             size_t body_len)
{
    /* Byte for byte what core/http.c send_response() writes for /health. */
    int n = snprintf(out, cap,
                     "HTTP/1.1 200 OK\r\n"
                     "Connection: %s\r\n"
                     "X-Request-Id: 01936a6e-0000-7000-8000-000000000000\r\n"
                     "Cache-Control: no-store\r\n"
                     "X-Content-Type-Options: nosniff\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     connection, body_len);
    if (n < 0 || (size_t)n + body_len > cap)
        return 0;
    memcpy(out + n, body, body_len);
    return (size_t)n + body_len;
}

/* The client asked to keep the connection, as CivetWeb's should_keep_alive() decides. */
static int wants_keep_alive(const struct mg_connection *conn)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *h = mg_get_header(conn, "Connection");
    if (h)
        return strcasecmp(h, "keep-alive") == 0;
    return ri->http_version && strcmp(ri->http_version, "1.1") == 0;
}

static int begin_request(struct mg_connection *conn)
{
    const bare *b = mg_get_user_data(mg_get_context(conn));
    if (wants_keep_alive(conn))
        mg_write(conn, b->keep_alive, b->keep_alive_len);
    else
        mg_write(conn, b->close, b->close_len);
    return 200;
}

static int load_body(const char *path, char *body, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    *len = fread(body, 1, cap, f);
    int too_big = !feof(f);
    fclose(f);
    return too_big ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s PORT BODY_FILE [THREADS]\n", argv[0]);
        return 2;
    }
    static bare b;
    static char body[BODY_MAX];
    size_t body_len;
    if (load_body(argv[2], body, sizeof body, &body_len) != 0) {
        fprintf(stderr, "bare_civetweb: cannot read %s (max %d bytes)\n", argv[2], BODY_MAX);
        return 1;
    }
    b.keep_alive_len =
        build_response(b.keep_alive, sizeof b.keep_alive, "keep-alive", body, body_len);
    b.close_len = build_response(b.close, sizeof b.close, "close", body, body_len);

    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%s", argv[1]);
    const char *options[] = {
        "listening_ports", listen,
        "num_threads", argc > 3 ? argv[3] : "32",
        "request_timeout_ms", "10000",
        "enable_keep_alive", "yes",
        "keep_alive_timeout_ms", "1000",
        "tcp_nodelay", "1",
        "decode_url", "no",
        "access_control_allow_methods", "",
        "enable_auth_domain_check", "no",
        NULL,
    };
    /* Block the signals before CivetWeb starts its threads, so they inherit the mask. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct mg_callbacks callbacks = { .begin_request = begin_request };
    mg_init_library(0);
    struct mg_context *ctx = mg_start(&callbacks, &b, options);
    if (!ctx) {
        fprintf(stderr, "bare_civetweb: cannot listen on %s\n", listen);
        return 1;
    }
    fprintf(stderr, "bare_civetweb: listening on http://%s\n", listen);
    int sig;
    sigwait(&stop, &sig);
    mg_stop(ctx);
    mg_exit_library();
    return 0;
}
