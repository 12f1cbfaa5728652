/*
 * tests/aws/loopback_stub.h - a scripted HTTP/1.1 endpoint on 127.0.0.1 for
 * the tests of the AWS clients (test_odaws, test_sigv4, test_storage_dynamodb).
 *
 * One thread poll()s the listener and up to LSTUB_CONNS keep-alive
 * connections. Each complete request (Content-Length bodies only, no TLS,
 * no chunking) is recorded first and then answered with what the test's
 * callback returns, as application/x-amz-json-1.0 in a single write. A test
 * reads the record from its own thread: a request its synchronous call made
 * is recorded by the time the call returns.
 */
#ifndef ORDERD_TEST_LOOPBACK_STUB_H
#define ORDERD_TEST_LOOPBACK_STUB_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define LSTUB_CONNS 16
#define LSTUB_MAX_REQUEST (1 << 20) /* a larger request closes its connection */
#define LSTUB_LOG 256               /* requests recorded; later ones are only counted */

typedef struct lstub_req {
    char *head; /* request line, headers and the blank line; NUL-terminated */
    size_t head_len;
    char *body; /* NUL-terminated */
    size_t body_len;
} lstub_req;

/* Called on the stub's thread for request n (0-based, in arrival order),
 * after it is recorded and without the stub's lock held. Returns the body
 * to answer with, status in *status (preset to 200); the body must stay
 * valid after the call (a literal). NULL: never answer, the client times
 * out. */
typedef const char *(*lstub_answer)(void *arg, const lstub_req *req, size_t n, int *status);

typedef struct lstub_conn {
    int fd;
    size_t len;
    char *buf; /* LSTUB_MAX_REQUEST + 1 */
} lstub_conn;

typedef struct lstub {
    uint16_t port; /* set by lstub_start */
    int listen_fd, wake[2];
    pthread_t thread;
    lstub_answer answer;
    void *arg;
    lstub_conn conns[LSTUB_CONNS]; /* the stub thread's own */
    pthread_mutex_t mu;            /* guards the members below */
    size_t requests, connections;
    lstub_req log[LSTUB_LOG];
} lstub;

/* Listen on an ephemeral loopback port and start the thread; asserts. */
void lstub_start(lstub *st, lstub_answer answer, void *arg);
/* Stop the thread and close every socket; the record stays readable. */
void lstub_stop(lstub *st);
/* Free the record (after lstub_stop). */
void lstub_free(lstub *st);

/* Requests received, recorded or not, and connections accepted. */
size_t lstub_count(lstub *st);
size_t lstub_connections(lstub *st);
/* Request n, or NULL when it was not received or not recorded. */
const lstub_req *lstub_request(lstub *st, size_t n);
/* The value of header `name` (any case), trimmed, into out: 0, or -1 when
 * the request has no such header. */
int lstub_header(const lstub_req *r, const char *name, char *out, size_t cap);

#endif
