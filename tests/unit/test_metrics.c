/* Unit tests for core/metrics.c: exact exposition text and concurrency. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

static od_metrics *mx;

static void setup(void) { mx = od_metrics_new(); ck_assert_ptr_nonnull(mx); }
static void teardown(void) { od_metrics_free(mx); }

static char *render(void)
{
    size_t len = 0;
    char *text = od_metrics_render(mx, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(strlen(text), len);
    return text;
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

START_TEST(counter_with_labels_exact_text)
{
    od_metric *c = od_metrics_register(mx, OD_METRIC_COUNTER, "orderd_orders_total",
                                       "Orders created.", "status=\"PENDING\"");
    od_metric *c2 = od_metrics_register(mx, OD_METRIC_COUNTER, "orderd_orders_total",
                                        "Orders created.", "status=\"PAID\"");
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_ne(c, c2);
    ck_assert_ptr_eq(od_metrics_register(mx, OD_METRIC_COUNTER, "orderd_orders_total",
                                         "Orders created.", "status=\"PENDING\""), c);
    od_metric_add(c, 3);
    od_metric_add(c2, 1);
    char *text = render();
    const char *expect = "# HELP orderd_orders_total Orders created.\n"
                         "# TYPE orderd_orders_total counter\n"
                         "orderd_orders_total{status=\"PENDING\"} 3\n"
                         "orderd_orders_total{status=\"PAID\"} 1\n";
    ck_assert_msg(strncmp(text, expect, strlen(expect)) == 0, "got:\n%s", text);
    ck_assert_int_eq(count_of(text, "# TYPE orderd_orders_total"), 1);
    free(text);
}
END_TEST

START_TEST(gauge_and_gauge_fn)
{
    od_metric *g = od_metrics_register(mx, OD_METRIC_GAUGE, "depth", "Queue depth.", NULL);
    od_metric_set(g, 10);
    od_metric_add(g, -3);
    ck_assert_int_eq(od_metrics_gauge_fn(mx, "answer", "The answer.", "k=\"v\"",
                                         (od_gauge_fn)(void (*)(void))NULL, NULL),
                     OD_ERR_INVALID);
    char *text = render();
    ck_assert_ptr_nonnull(strstr(text, "# TYPE depth gauge\ndepth 7\n"));
    free(text);
}
END_TEST

static int64_t forty_two(void *arg) { return *(const int64_t *)arg; }

START_TEST(gauge_fn_read_at_scrape)
{
    int64_t v = 42;
    ck_assert_int_eq(od_metrics_gauge_fn(mx, "answer", "The answer.", "k=\"v\"", forty_two, &v),
                     OD_OK);
    ck_assert_int_eq(od_metrics_gauge_fn(mx, "answer", "The answer.", "k=\"v\"", forty_two, &v),
                     OD_ERR_EXISTS);
    v = 43;
    char *text = render();
    ck_assert_ptr_nonnull(strstr(text, "# HELP answer The answer.\n# TYPE answer gauge\n"
                                       "answer{k=\"v\"} 43\n"));
    free(text);
}
END_TEST

START_TEST(histogram_exact_text)
{
    od_metric *h = od_metrics_register(mx, OD_METRIC_HISTOGRAM, "step_seconds", "Step time.",
                                       "step=\"pay\"");
    ck_assert_ptr_nonnull(h);
    od_metric_observe(h, 0.001);  /* on a bound: counts in le="0.001" */
    od_metric_observe(h, 0.003);
    od_metric_observe(h, 0.2);
    od_metric_observe(h, 42.0);   /* above every bound: only +Inf */
    char *text = render();
    const char *expect =
        "# HELP step_seconds Step time.\n"
        "# TYPE step_seconds histogram\n"
        "step_seconds_bucket{step=\"pay\",le=\"0.001\"} 1\n"
        "step_seconds_bucket{step=\"pay\",le=\"0.0025\"} 1\n"
        "step_seconds_bucket{step=\"pay\",le=\"0.005\"} 2\n"
        "step_seconds_bucket{step=\"pay\",le=\"0.01\"} 2\n"
        "step_seconds_bucket{step=\"pay\",le=\"0.025\"} 2\n"
        "step_seconds_bucket{step=\"pay\",le=\"0.05\"} 2\n"
        "step_seconds_bucket{step=\"pay\",le=\"0.1\"} 2\n"
        "step_seconds_bucket{step=\"pay\",le=\"0.25\"} 3\n"
        "step_seconds_bucket{step=\"pay\",le=\"0.5\"} 3\n"
        "step_seconds_bucket{step=\"pay\",le=\"1\"} 3\n"
        "step_seconds_bucket{step=\"pay\",le=\"2.5\"} 3\n"
        "step_seconds_bucket{step=\"pay\",le=\"5\"} 3\n"
        "step_seconds_bucket{step=\"pay\",le=\"10\"} 3\n"
        "step_seconds_bucket{step=\"pay\",le=\"+Inf\"} 4\n"
        "step_seconds_sum{step=\"pay\"} 42.204000\n"
        "step_seconds_count{step=\"pay\"} 4\n";
    ck_assert_msg(strncmp(text, expect, strlen(expect)) == 0, "got:\n%s", text);
    free(text);
}
END_TEST

START_TEST(http_requests_and_duration)
{
    od_metrics_http(mx, "/api/users/:id", "GET", 200, 0.002);
    od_metrics_http(mx, "/api/users/:id", "GET", 200, 0.002);
    od_metrics_http(mx, "/api/users/:id", "GET", 404, 0.5);
    od_metrics_http(mx, NULL, "BREW", 404, 0.0);
    char *text = render();
    ck_assert_int_eq(count_of(text, "# TYPE orderd_http_requests_total counter\n"), 1);
    ck_assert_int_eq(count_of(text, "# TYPE orderd_http_request_duration_seconds histogram\n"), 1);
    ck_assert_ptr_nonnull(strstr(text, "orderd_http_requests_total{route=\"/api/users/:id\","
                                       "method=\"GET\",status=\"200\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(text, "orderd_http_requests_total{route=\"/api/users/:id\","
                                       "method=\"GET\",status=\"404\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "orderd_http_requests_total{route=\"unmatched\","
                                       "method=\"OTHER\",status=\"404\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "orderd_http_request_duration_seconds_bucket{route=\"/api/"
                                       "users/:id\",method=\"GET\",le=\"0.0025\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(text, "orderd_http_request_duration_seconds_count{route=\"/api/"
                                       "users/:id\",method=\"GET\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(text, "orderd_http_request_duration_seconds_sum{route=\"/api/"
                                       "users/:id\",method=\"GET\"} 0.504000\n"));
    free(text);
}
END_TEST

START_TEST(invalid_registrations)
{
    ck_assert_ptr_null(od_metrics_register(mx, OD_METRIC_COUNTER, "1bad", "x", NULL));
    ck_assert_ptr_null(od_metrics_register(mx, OD_METRIC_COUNTER, "bad-name", "x", NULL));
    ck_assert_ptr_null(od_metrics_register(mx, 9, "ok_name", "x", NULL));
    ck_assert_ptr_null(od_metrics_register(mx, OD_METRIC_COUNTER, "ok", "x", "a=b"));
    ck_assert_ptr_null(od_metrics_register(mx, OD_METRIC_COUNTER, "ok", "x", "a=\"b\"}"));
    ck_assert_ptr_null(od_metrics_register(mx, OD_METRIC_COUNTER, "ok", "x", "a=\"b\nc\""));
    ck_assert_ptr_nonnull(
        od_metrics_register(mx, OD_METRIC_COUNTER, "ok", "x", "a=\"b\",c=\"\\\"\""));
    /* Same name, another type: refused. */
    ck_assert_ptr_null(od_metrics_register(mx, OD_METRIC_GAUGE, "ok", "x", NULL));
}
END_TEST

START_TEST(help_is_escaped)
{
    od_metrics_register(mx, OD_METRIC_COUNTER, "esc_total", "a\\b\nc", NULL);
    char *text = render();
    ck_assert_ptr_nonnull(strstr(text, "# HELP esc_total a\\\\b\\nc\n"));
    free(text);
}
END_TEST

#define THREADS 8
#define ADDS 100000

typedef struct worker_arg {
    od_metric *counter;
    od_metric *hist;
    int id;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    char route[32];
    snprintf(route, sizeof route, "/r/%d", a->id % 3); /* races on first sight */
    for (int i = 0; i < ADDS; i++) {
        od_metric_add(a->counter, 1);
        if (i % 100 == 0) {
            od_metric_observe(a->hist, 0.001);
            od_metrics_http(mx, route, "GET", 200, 0.001);
        }
    }
    return NULL;
}

START_TEST(concurrent_adds_are_exact)
{
    od_metric *c = od_metrics_register(mx, OD_METRIC_COUNTER, "hits_total", "Hits.", NULL);
    od_metric *h = od_metrics_register(mx, OD_METRIC_HISTOGRAM, "lat_seconds", "Lat.", NULL);
    pthread_t t[THREADS];
    worker_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (worker_arg){c, h, i};
        ck_assert_int_eq(pthread_create(&t[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    char *text = render();
    char line[128];
    snprintf(line, sizeof line, "hits_total %d\n", THREADS * ADDS);
    ck_assert_msg(strstr(text, line) != NULL, "missing %s in\n%s", line, text);
    snprintf(line, sizeof line, "lat_seconds_count %d\n", THREADS * ADDS / 100);
    ck_assert_ptr_nonnull(strstr(text, line));
    /* Threads 0,3,6 -> /r/0; 1,4,7 -> /r/1; 2,5 -> /r/2: one series each. */
    snprintf(line, sizeof line, "route=\"/r/0\",method=\"GET\",status=\"200\"} %d\n",
             3 * ADDS / 100);
    ck_assert_ptr_nonnull(strstr(text, line));
    snprintf(line, sizeof line, "route=\"/r/2\",method=\"GET\",status=\"200\"} %d\n",
             2 * ADDS / 100);
    ck_assert_ptr_nonnull(strstr(text, line));
    ck_assert_int_eq(count_of(text, "route=\"/r/1\",method=\"GET\",status=\"200\"}"), 1);
    free(text);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, counter_with_labels_exact_text);
    tcase_add_test(tc, gauge_and_gauge_fn);
    tcase_add_test(tc, gauge_fn_read_at_scrape);
    tcase_add_test(tc, histogram_exact_text);
    tcase_add_test(tc, http_requests_and_duration);
    tcase_add_test(tc, invalid_registrations);
    tcase_add_test(tc, help_is_escaped);
    tcase_add_test(tc, concurrent_adds_are_exact);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
