/*
 * tests/aws/test_odaws.c - the shared AWS client (modules/aws_common) against
 * a scripted HTTP stub on loopback: configuration and environment defaults,
 * credentials never logged, the exact request shape (target, content type,
 * SigV4 headers, session token), error parsing, retries with backoff on 5xx
 * and throttling, UNAVAILABLE when retries run out or nothing listens,
 * bounded timeouts, close() aborting a long call, per-thread keep-alive
 * handles. Needs no emulator.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loopback_stub.h"
#include "mock_host.h"
#include "odaws.h"

static const odaws_service SQS = {.name = "sqs", .env_suffix = "SQS", .target_prefix = "AmazonSQS"};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the stub: replies scripted by request number ---- */

#define STUB_SCRIPT 8

typedef struct stub_reply {
    int status; /* 0 = never answer (hang) */
    const char *body;
} stub_reply;

static lstub S;
static struct {
    pthread_mutex_t mu; /* the test thread scripts, the stub's thread reads */
    stub_reply r[STUB_SCRIPT];
    size_t n;
} Script = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void stub_script(size_t n, const stub_reply *r)
{
    pthread_mutex_lock(&Script.mu);
    memcpy(Script.r, r, n * sizeof *r);
    Script.n = n;
    pthread_mutex_unlock(&Script.mu);
}

/* The reply follows the script by request number, the last entry repeating. */
static const char *scripted(void *arg, const lstub_req *req, size_t n, int *status)
{
    (void)arg, (void)req;
    pthread_mutex_lock(&Script.mu);
    stub_reply r = Script.r[n < Script.n ? n : Script.n - 1];
    pthread_mutex_unlock(&Script.mu);
    *status = r.status;
    return r.status ? r.body : NULL;
}

static int stub_requests(void)
{
    return (int)lstub_count(&S);
}

static const lstub_req *stub_last(void)
{
    const lstub_req *r = lstub_request(&S, lstub_count(&S) - 1);
    ck_assert_ptr_nonnull(r);
    return r;
}

/* ---- fixtures --------------------------------------------------------- */

static od_module *M;
static odaws_client *C;
static const od_host_api *H;

static void setup(void)
{
    H = mock_host_api();
    mock_log_reset();
    for (const char *const *v = (const char *const[]){"AWS_REGION", "AWS_DEFAULT_REGION",
                                                      "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS",
                                                      "AWS_SESSION_TOKEN", NULL};
         *v; v++)
        unsetenv(*v);
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE1234WXYZ", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t/K3y+never-logged", 1);
    M = mock_module_new("queue");
    C = NULL;
    stub_reply ok = {200, "{}"};
    stub_script(1, &ok);
    lstub_start(&S, scripted, NULL);
}

static void teardown(void)
{
    odaws_client_free(C);
    mock_module_free(M);
    lstub_stop(&S);
    lstub_free(&S);
}

/* A client pointed at the stub; fast retries so tests stay short. */
static void open_stub_client(int64_t max_retries, int64_t timeout_ms)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", S.port);
    mock_config_set_string(M, "endpoint", url);
    mock_config_set_int(M, "max_retries", max_retries);
    mock_config_set_int(M, "retry_base_ms", 5);
    mock_config_set_int(M, "timeout_ms", timeout_ms);
    ck_assert_int_eq(odaws_client_new(H, M, &SQS, &C), OD_OK);
}

/* ---- configuration ------------------------------------------------------ */

START_TEST(test_defaults)
{
    ck_assert_int_eq(odaws_client_new(H, M, &SQS, &C), OD_OK);
    ck_assert_str_eq(odaws_region(C), "us-east-1");
    ck_assert_str_eq(odaws_endpoint(C), "https://sqs.us-east-1.amazonaws.com/");
    ck_assert_int_eq(odaws_timeout_ms(C), 5000);
    ck_assert_int_eq(odaws_create_missing(C), 0);
}
END_TEST

START_TEST(test_environment_order)
{
    setenv("AWS_DEFAULT_REGION", "eu-west-1", 1);
    ck_assert_int_eq(odaws_client_new(H, M, &SQS, &C), OD_OK);
    ck_assert_str_eq(odaws_endpoint(C), "https://sqs.eu-west-1.amazonaws.com/");
    odaws_client_free(C);
    setenv("AWS_REGION", "ap-south-1", 1);
    setenv("AWS_ENDPOINT_URL", "http://generic:1", 1);
    ck_assert_int_eq(odaws_client_new(H, M, &SQS, &C), OD_OK);
    ck_assert_str_eq(odaws_region(C), "ap-south-1");
    ck_assert_str_eq(odaws_endpoint(C), "http://generic:1/");
    odaws_client_free(C);
    setenv("AWS_ENDPOINT_URL_SQS", "http://sqs-only:2//", 1);
    ck_assert_int_eq(odaws_client_new(H, M, &SQS, &C), OD_OK);
    ck_assert_str_eq(odaws_endpoint(C), "http://sqs-only:2/");
    odaws_client_free(C);
    /* The config file beats the environment. */
    mock_config_set_string(M, "endpoint", "http://from-config:3");
    mock_config_set_string(M, "region", "us-west-2");
    mock_config_set_bool(M, "create_missing", 1);
    ck_assert_int_eq(odaws_client_new(H, M, &SQS, &C), OD_OK);
    ck_assert_str_eq(odaws_endpoint(C), "http://from-config:3/");
    ck_assert_str_eq(odaws_region(C), "us-west-2");
    ck_assert_int_eq(odaws_create_missing(C), 1);
}
END_TEST

START_TEST(test_bad_config)
{
    mock_config_set_string(M, "endpoint", "ftp://x");
    ck_assert_int_eq(odaws_client_new(H, M, &SQS, &C), OD_ERR_CONFIG);
    ck_assert_ptr_null(C);
    mock_config_set_string(M, "endpoint", "http://a b");
    ck_assert_int_eq(odaws_client_new(H, M, &SQS, &C), OD_ERR_CONFIG);
    mock_config_set_string(M, "endpoint", "http://ok");
    mock_config_set_string(M, "region", "US_EAST/1");
    ck_assert_int_eq(odaws_client_new(H, M, &SQS, &C), OD_ERR_CONFIG);
    mock_config_set_string(M, "region", "us-east-1");
    mock_config_set_int(M, "max_retries", 100);
    ck_assert_int_eq(odaws_client_new(H, M, &SQS, &C), OD_ERR_CONFIG);
}
END_TEST

START_TEST(test_credentials_from_env_only)
{
    unsetenv("AWS_SECRET_ACCESS_KEY");
    ck_assert_int_eq(odaws_client_new(H, M, &SQS, &C), OD_ERR_CONFIG);
    ck_assert(mock_log_contains("AWS_SECRET_ACCESS_KEY"));
    setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t/K3y+never-logged", 1);
    setenv("AWS_SESSION_TOKEN", "T0KEN/with+slash=", 1);
    mock_log_reset();
    ck_assert_int_eq(odaws_client_new(H, M, &SQS, &C), OD_OK);
    ck_assert(mock_log_contains("key id AKID...WXYZ"));
    ck_assert(!mock_log_contains("AKIDEXAMPLE1234WXYZ"));
    ck_assert(!mock_log_contains("s3cr3t"));
    ck_assert(!mock_log_contains("T0KEN"));
}
END_TEST

/* ---- calls ---------------------------------------------------------------- */

START_TEST(test_request_shape)
{
    setenv("AWS_SESSION_TOKEN", "T0KEN/with+slash=", 1);
    open_stub_client(0, 2000);
    stub_reply r = {200, "{\"QueueUrl\":\"http://q/1\"}"};
    stub_script(1, &r);
    odaws_response resp;
    const char body[] = "{\"QueueName\":\"a\"}";
    ck_assert_int_eq(odaws_call(C, "GetQueueUrl", body, strlen(body), &resp), OD_OK);
    ck_assert_int_eq(resp.http_status, 200);
    ck_assert_str_eq(resp.body, r.body);
    ck_assert_uint_eq(resp.len, strlen(r.body));
    ck_assert(odaws_ok(&resp));
    ck_assert_str_eq(resp.error_type, "");
    odaws_response_clear(C, &resp);
    const char *head = stub_last()->head;
    ck_assert_str_eq(stub_last()->body, body);
    ck_assert_ptr_nonnull(strstr(head, "POST / HTTP/1.1\r\n"));
    ck_assert_ptr_nonnull(strstr(head, "X-Amz-Target: AmazonSQS.GetQueueUrl\r\n"));
    ck_assert_ptr_nonnull(strstr(head, "Content-Type: application/x-amz-json-1.0\r\n"));
    ck_assert_ptr_nonnull(strstr(head, "X-Amz-Security-Token: T0KEN/with+slash=\r\n"));
    ck_assert_ptr_nonnull(strstr(head, "Authorization: AWS4-HMAC-SHA256 Credential="
                                       "AKIDEXAMPLE1234WXYZ/"));
    ck_assert_ptr_nonnull(strstr(head, "/us-east-1/sqs/aws4_request"));
    ck_assert_ptr_nonnull(strstr(head, "SignedHeaders=content-type;host;x-amz-date;"
                                       "x-amz-security-token;x-amz-target"));
    ck_assert_ptr_null(strstr(head, "s3cr3t"));
    ck_assert_ptr_null(strcasestr(head, "x-amz-content-sha256"));
    /* An empty body is sent as "{}" (DynamoDB answers "" with a 500). */
    ck_assert_int_eq(odaws_call(C, "ListQueues", NULL, 0, &resp), OD_OK);
    odaws_response_clear(C, &resp);
    ck_assert_str_eq(stub_last()->body, "{}");
    ck_assert_int_eq(odaws_call(C, "Bad.Op", "{}", 2, &resp), OD_ERR_INVALID);
    odaws_response_clear(C, &resp);
}
END_TEST

START_TEST(test_error_parsing_no_retry)
{
    open_stub_client(3, 2000);
    stub_reply r[] = {{400, "{\"__type\":\"com.amazonaws.sqs#QueueDoesNotExist\","
                            "\"message\":\"The specified queue does not exist.\"}"},
                      {400, "{\"__type\":\"ConditionalCheckFailedException\","
                            "\"Message\":\"The conditional request failed\"}"},
                      {403, "not json"}};
    stub_script(3, r);
    odaws_response resp;
    ck_assert_int_eq(odaws_call(C, "GetQueueUrl", "{}", 2, &resp), OD_OK);
    ck_assert_int_eq(resp.http_status, 400);
    ck_assert_str_eq(resp.error_type, "QueueDoesNotExist");
    ck_assert_str_eq(resp.error_message, "The specified queue does not exist.");
    ck_assert(odaws_is_error(&resp, "QueueDoesNotExist"));
    ck_assert_int_eq(odaws_status(&resp), OD_ERR_NOT_FOUND);
    odaws_response_clear(C, &resp);
    ck_assert_int_eq(stub_requests(), 1); /* a 4xx is final */
    ck_assert_int_eq(odaws_call(C, "PutItem", "{}", 2, &resp), OD_OK);
    ck_assert_str_eq(resp.error_type, "ConditionalCheckFailedException");
    ck_assert_str_eq(resp.error_message, "The conditional request failed");
    ck_assert_int_eq(odaws_status(&resp), OD_ERR_CONFLICT);
    odaws_response_clear(C, &resp);
    ck_assert_int_eq(odaws_call(C, "PutItem", "{}", 2, &resp), OD_OK);
    ck_assert_int_eq(resp.http_status, 403);
    ck_assert_str_eq(resp.error_type, "HTTP403");
    ck_assert_int_eq(odaws_status(&resp), OD_ERR_UNAVAILABLE);
    odaws_response_clear(C, &resp);
    ck_assert_int_eq(stub_requests(), 3);
}
END_TEST

START_TEST(test_retries_then_success)
{
    open_stub_client(3, 2000);
    stub_reply r[] = {{500, "{}"},
                      {400, "{\"__type\":\"com.amazonaws.dynamodb.v20120810#"
                            "ProvisionedThroughputExceededException\",\"message\":\"slow\"}"},
                      {400, "{\"__type\":\"ThrottlingException\"}"},
                      {200, "{\"ok\":1}"}};
    stub_script(4, r);
    odaws_response resp;
    ck_assert_int_eq(odaws_call(C, "GetItem", "{}", 2, &resp), OD_OK);
    ck_assert_int_eq(resp.http_status, 200);
    ck_assert_str_eq(resp.body, "{\"ok\":1}");
    ck_assert_str_eq(resp.error_type, "");
    odaws_response_clear(C, &resp);
    ck_assert_int_eq(stub_requests(), 4);
}
END_TEST

START_TEST(test_retries_exhausted)
{
    open_stub_client(2, 2000);
    stub_reply r = {503, "{\"__type\":\"ServiceUnavailable\"}"};
    stub_script(1, &r);
    odaws_response resp;
    ck_assert_int_eq(odaws_call(C, "GetItem", "{}", 2, &resp), OD_ERR_UNAVAILABLE);
    odaws_response_clear(C, &resp);
    ck_assert_int_eq(stub_requests(), 3);
    ck_assert(mock_log_contains("GetItem failed after 3 attempt(s)"));
}
END_TEST

START_TEST(test_unreachable)
{
    /* A port nobody listens on: bind, read the port, close. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", ntohs(a.sin_port));
    mock_config_set_string(M, "endpoint", url);
    mock_config_set_int(M, "max_retries", 2);
    mock_config_set_int(M, "retry_base_ms", 5);
    ck_assert_int_eq(odaws_client_new(H, M, &SQS, &C), OD_OK);
    odaws_response resp;
    int64_t t0 = now_ms();
    ck_assert_int_eq(odaws_call(C, "ListQueues", "{}", 2, &resp), OD_ERR_UNAVAILABLE);
    ck_assert_int_lt(now_ms() - t0, 2000);
    ck_assert_int_eq(resp.http_status, 0);
    odaws_response_clear(C, &resp);
}
END_TEST

START_TEST(test_timeout_bounded)
{
    open_stub_client(1, 300);
    stub_reply hang = {0, NULL};
    stub_script(1, &hang);
    odaws_response resp;
    int64_t t0 = now_ms();
    ck_assert_int_eq(odaws_call(C, "GetItem", "{}", 2, &resp), OD_ERR_UNAVAILABLE);
    int64_t took = now_ms() - t0;
    odaws_response_clear(C, &resp);
    ck_assert_int_eq(stub_requests(), 2);
    /* two attempts of 300 ms plus at most 10 ms of backoff */
    ck_assert_int_ge(took, 550);
    ck_assert_int_lt(took, 3000);
}
END_TEST

typedef struct long_call {
    od_status st;
    int64_t took;
} long_call;

static void *long_call_thread(void *p)
{
    long_call *lc = p;
    odaws_response resp;
    int64_t t0 = now_ms();
    lc->st = odaws_call_timeout(C, "ReceiveMessage", "{}", 2, 20000, &resp);
    lc->took = now_ms() - t0;
    odaws_response_clear(C, &resp);
    return NULL;
}

START_TEST(test_close_aborts_call)
{
    open_stub_client(3, 1000);
    stub_reply hang = {0, NULL};
    stub_script(1, &hang);
    long_call lc = {0};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, long_call_thread, &lc), 0);
    int64_t deadline = now_ms() + 5000;
    while (stub_requests() == 0 && now_ms() < deadline)
        usleep(5000); /* polling the stub with a deadline */
    ck_assert_int_eq(stub_requests(), 1);
    odaws_client_close(C);
    pthread_join(t, NULL);
    ck_assert_int_eq(lc.st, OD_ERR_CLOSED);
    ck_assert_int_lt(lc.took, 3000); /* far below the 20 s the call allowed */
    odaws_response resp;
    ck_assert_int_eq(odaws_call(C, "ListQueues", "{}", 2, &resp), OD_ERR_CLOSED);
    odaws_response_clear(C, &resp);
    ck_assert_int_eq(stub_requests(), 1);
}
END_TEST

#define N_THREADS 4
#define N_CALLS 25

static void *caller_thread(void *p)
{
    atomic_int *ok = p;
    for (int i = 0; i < N_CALLS; i++) {
        odaws_response resp;
        if (odaws_call(C, "GetItem", "{}", 2, &resp) == OD_OK && odaws_ok(&resp))
            atomic_fetch_add(ok, 1);
        odaws_response_clear(C, &resp);
    }
    return NULL; /* the thread's handle is freed by the key destructor */
}

START_TEST(test_threads_keep_alive)
{
    open_stub_client(0, 2000);
    atomic_int ok = 0;
    pthread_t t[N_THREADS];
    for (size_t i = 0; i < N_THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, caller_thread, &ok), 0);
    for (size_t i = 0; i < N_THREADS; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(atomic_load(&ok), N_THREADS * N_CALLS);
    ck_assert_int_eq(stub_requests(), N_THREADS * N_CALLS);
    /* one connection per thread, reused for every call */
    ck_assert_uint_le(lstub_connections(&S), N_THREADS);
    /* The main thread's handle is still alive: odaws_client_free frees it. */
    odaws_response resp;
    ck_assert_int_eq(odaws_call(C, "GetItem", "{}", 2, &resp), OD_OK);
    odaws_response_clear(C, &resp);
}
END_TEST

START_TEST(test_call_json)
{
    open_stub_client(0, 2000);
    stub_reply r[] = {{200, "{\"Item\":{\"n\":{\"N\":\"-42\"},\"s\":{\"S\":\"a/b\"}}}"},
                      {200, ""},
                      {200, "[1]"}};
    stub_script(3, r);
    json_object *req = json_object_new_object(), *out;
    json_object_object_add(req, "Key", odaws_av_s("x/y"));
    json_object_object_add(req, "N", odaws_av_n(INT64_MIN));
    odaws_response resp;
    ck_assert_int_eq(odaws_call_json(C, "GetItem", req, 0, &resp, &out), OD_OK);
    ck_assert_str_eq(stub_last()->body,
                     "{\"Key\":{\"S\":\"x/y\"},\"N\":{\"N\":\"-9223372036854775808\"}}");
    json_object *item;
    ck_assert(json_object_object_get_ex(out, "Item", &item));
    int64_t n = 0;
    const char *s;
    size_t len;
    ck_assert_int_eq(odaws_av_get_n(item, "n", &n), OD_OK);
    ck_assert_int_eq(n, -42);
    ck_assert_int_eq(odaws_av_get_s(item, "s", &s, &len), OD_OK);
    ck_assert_str_eq(s, "a/b");
    ck_assert_uint_eq(len, 3);
    ck_assert_int_eq(odaws_av_get_n(item, "s", &n), OD_ERR_INVALID);
    ck_assert_int_eq(odaws_av_get_s(item, "missing", &s, NULL), OD_ERR_NOT_FOUND);
    json_object_put(out);
    odaws_response_clear(C, &resp);
    /* An empty 2xx body reads as {} (local-aws-sqs answers an empty receive so). */
    ck_assert_int_eq(odaws_call_json(C, "ReceiveMessage", req, 0, &resp, &out), OD_OK);
    ck_assert(odaws_ok(&resp));
    ck_assert_int_eq(json_object_object_length(out), 0);
    json_object_put(out);
    odaws_response_clear(C, &resp);
    /* A 2xx that is not a JSON object is a broken backend, not success. */
    ck_assert_int_eq(odaws_call_json(C, "GetItem", req, 0, &resp, &out), OD_OK);
    ck_assert(!odaws_ok(&resp));
    ck_assert_ptr_null(out);
    ck_assert_int_eq(odaws_status(&resp), OD_ERR_UNAVAILABLE);
    odaws_response_clear(C, &resp);
    json_object_put(req);
}
END_TEST

static Suite *odaws_suite(void)
{
    Suite *s = suite_create("odaws");
    TCase *cfg = tcase_create("config");
    tcase_add_checked_fixture(cfg, setup, teardown);
    tcase_add_test(cfg, test_defaults);
    tcase_add_test(cfg, test_environment_order);
    tcase_add_test(cfg, test_bad_config);
    tcase_add_test(cfg, test_credentials_from_env_only);
    suite_add_tcase(s, cfg);
    TCase *calls = tcase_create("calls");
    tcase_add_checked_fixture(calls, setup, teardown);
    tcase_add_test(calls, test_request_shape);
    tcase_add_test(calls, test_error_parsing_no_retry);
    tcase_add_test(calls, test_retries_then_success);
    tcase_add_test(calls, test_retries_exhausted);
    tcase_add_test(calls, test_unreachable);
    tcase_add_test(calls, test_timeout_bounded);
    tcase_add_test(calls, test_close_aborts_call);
    tcase_add_test(calls, test_threads_keep_alive);
    tcase_add_test(calls, test_call_json);
    suite_add_tcase(s, calls);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(odaws_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
