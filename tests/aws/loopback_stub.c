/*
 * tests/aws/loopback_stub.c - the scripted loopback endpoint of
 * loopback_stub.h: one thread, poll() over the listener, a wake pipe and
 * the connections.
 */
#include "loopback_stub.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* Copy the request into its own allocation (head NULL: out of memory) and
 * log it; *copy is what the caller frees when the log is full. */
static lstub_req lstub_record(lstub *st, const char *buf, size_t head, size_t body, size_t *n,
                              char **copy)
{
    lstub_req r = {NULL, head, NULL, body};
    *copy = malloc(head + body + 2);
    if (!*copy)
        return r;
    r.head = memcpy(*copy, buf, head);
    r.head[head] = '\0';
    r.body = memcpy(*copy + head + 1, buf + head, body);
    r.body[body] = '\0';
    pthread_mutex_lock(&st->mu);
    *n = st->requests++;
    if (*n < LSTUB_LOG) {
        st->log[*n] = r;
        *copy = NULL;
    }
    pthread_mutex_unlock(&st->mu);
    return r;
}

/* One write: a body sent apart from its head would wait for the client's
 * delayed ACK (Nagle). */
static int lstub_reply(int fd, int status, const char *body)
{
    size_t len = strlen(body), cap = len + 128;
    char *out = malloc(cap);
    if (!out)
        return -1;
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d X\r\nContent-Type: application/x-amz-json-1.0\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     status, len, body);
    ssize_t w = n > 0 && (size_t)n < cap ? send(fd, out, (size_t)n, MSG_NOSIGNAL) : -1;
    free(out);
    return w == n ? 0 : -1;
}

/* Answer every complete request buffered on c; -1 when c must close. */
static int lstub_serve(lstub *st, lstub_conn *c)
{
    for (;;) {
        c->buf[c->len] = '\0';
        char *end = strstr(c->buf, "\r\n\r\n");
        if (!end)
            return 0;
        size_t head = (size_t)(end - c->buf) + 4, body = 0;
        const char *cl = strcasestr(c->buf, "\r\nContent-Length:");
        if (cl && cl < end)
            body = strtoul(cl + 17, NULL, 10);
        if (body > LSTUB_MAX_REQUEST - head)
            return -1;
        if (c->len < head + body)
            return 0;
        size_t n;
        char *unlogged;
        lstub_req r = lstub_record(st, c->buf, head, body, &n, &unlogged);
        if (!r.head)
            return -1; /* out of memory: the client sees the connection close */
        int status = 200;
        const char *reply = st->answer(st->arg, &r, n, &status);
        free(unlogged);
        memmove(c->buf, c->buf + head + body, c->len - head - body);
        c->len -= head + body;
        if (reply && lstub_reply(c->fd, status, reply) < 0)
            return -1;
    }
}

static void lstub_accept(lstub *st)
{
    int fd = accept(st->listen_fd, NULL, NULL);
    if (fd < 0)
        return;
    for (size_t i = 0; i < LSTUB_CONNS; i++)
        if (st->conns[i].fd < 0) {
            st->conns[i].buf = malloc(LSTUB_MAX_REQUEST + 1);
            if (!st->conns[i].buf)
                break;
            st->conns[i].fd = fd;
            st->conns[i].len = 0;
            pthread_mutex_lock(&st->mu);
            st->connections++;
            pthread_mutex_unlock(&st->mu);
            return;
        }
    close(fd);
}

static void lstub_close(lstub_conn *c)
{
    close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

static void *lstub_main(void *arg)
{
    lstub *st = arg;
    for (;;) {
        struct pollfd p[LSTUB_CONNS + 2];
        p[0] = (struct pollfd){.fd = st->wake[0], .events = POLLIN};
        p[1] = (struct pollfd){.fd = st->listen_fd, .events = POLLIN};
        for (size_t i = 0; i < LSTUB_CONNS; i++)
            p[i + 2] = (struct pollfd){.fd = st->conns[i].fd, .events = POLLIN};
        if (poll(p, LSTUB_CONNS + 2, -1) < 0 || p[0].revents)
            return NULL;
        if (p[1].revents)
            lstub_accept(st);
        for (size_t i = 0; i < LSTUB_CONNS; i++) {
            lstub_conn *c = &st->conns[i];
            if (c->fd < 0 || !p[i + 2].revents)
                continue;
            ssize_t n = read(c->fd, c->buf + c->len, LSTUB_MAX_REQUEST - c->len);
            if (n <= 0) {
                lstub_close(c);
                continue;
            }
            c->len += (size_t)n;
            if (lstub_serve(st, c) < 0)
                lstub_close(c);
        }
    }
}

void lstub_start(lstub *st, lstub_answer answer, void *arg)
{
    memset(st, 0, sizeof *st);
    st->answer = answer;
    st->arg = arg;
    pthread_mutex_init(&st->mu, NULL);
    for (size_t i = 0; i < LSTUB_CONNS; i++)
        st->conns[i].fd = -1;
    st->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(st->listen_fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    ck_assert_int_eq(bind(st->listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(st->listen_fd, 16), 0);
    ck_assert_int_eq(getsockname(st->listen_fd, (struct sockaddr *)&a, &len), 0);
    st->port = ntohs(a.sin_port);
    ck_assert_int_eq(pipe(st->wake), 0);
    ck_assert_int_eq(pthread_create(&st->thread, NULL, lstub_main, st), 0);
}

void lstub_stop(lstub *st)
{
    ck_assert_int_eq(write(st->wake[1], "x", 1), 1);
    pthread_join(st->thread, NULL);
    for (size_t i = 0; i < LSTUB_CONNS; i++)
        if (st->conns[i].fd >= 0)
            lstub_close(&st->conns[i]);
    close(st->listen_fd);
    close(st->wake[0]);
    close(st->wake[1]);
}

void lstub_free(lstub *st)
{
    size_t n = st->requests < LSTUB_LOG ? st->requests : LSTUB_LOG;
    for (size_t i = 0; i < n; i++)
        free(st->log[i].head);
    st->requests = 0;
    pthread_mutex_destroy(&st->mu);
}

size_t lstub_count(lstub *st)
{
    pthread_mutex_lock(&st->mu);
    size_t n = st->requests;
    pthread_mutex_unlock(&st->mu);
    return n;
}

size_t lstub_connections(lstub *st)
{
    pthread_mutex_lock(&st->mu);
    size_t n = st->connections;
    pthread_mutex_unlock(&st->mu);
    return n;
}

/* An entry never changes once logged: only finding it needs the lock. */
const lstub_req *lstub_request(lstub *st, size_t n)
{
    pthread_mutex_lock(&st->mu);
    const lstub_req *r = n < st->requests && n < LSTUB_LOG ? &st->log[n] : NULL;
    pthread_mutex_unlock(&st->mu);
    return r;
}

int lstub_header(const lstub_req *r, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *eol = strstr(r->head, "\r\n"); eol && eol[2] != '\r';
         eol = strstr(eol + 2, "\r\n")) {
        const char *h = eol + 2;
        if (strncasecmp(h, name, n) != 0 || h[n] != ':')
            continue;
        const char *v = h + n + 1;
        v += strspn(v, " \t");
        size_t len = strcspn(v, "\r\n");
        while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
            len--;
        snprintf(out, cap, "%.*s", (int)len, v);
        return 0;
    }
    return -1;
}
