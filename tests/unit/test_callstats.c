/* test_callstats.c - status classes, latency histogram and the ring of
 * latest failures that /metrics, /status and the dashboard show; and the
 * --dashboard-token file reader. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "callstats.h"
#include "observe.h"

static void test_results_count_by_status_class(void **state)
{
    (void)state;
    callstats c;
    memset(&c, 0, sizeof c);
    static const uint32_t codes[] = {200, 204, 301, 404, 429, 500, 503, 0, 99};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        callstats_record(&c, codes[i] < 300, codes[i], 10, "x", NULL, 1, NULL,
                         1);
    assert_int_equal(c.by_class[CALLSTATS_2XX], 2);
    assert_int_equal(c.by_class[CALLSTATS_3XX], 1);
    assert_int_equal(c.by_class[CALLSTATS_4XX], 2);
    assert_int_equal(c.by_class[CALLSTATS_5XX], 2);
    assert_int_equal(c.by_class[CALLSTATS_NONE], 2); /* 0 and 99 */
    assert_string_equal(callstats_class_name(CALLSTATS_NONE), "none");
    assert_string_equal(callstats_class_name(CALLSTATS_4XX), "4xx");
}

static void test_latency_lands_in_its_bucket(void **state)
{
    (void)state;
    callstats c;
    memset(&c, 0, sizeof c);
    assert_true(callstats_quantile_ms(&c, 0.5) < 0);        /* nothing yet */
    callstats_record(&c, 1, 200, 5, "a", NULL, 1, NULL, 1); /* <= 5 ms */
    callstats_record(&c, 1, 200, 6, "b", NULL, 1, NULL, 1); /* <= 10 */
    callstats_record(&c, 1, 200, 120000, "c", NULL, 1, NULL, 1); /* +Inf */
    assert_int_equal(c.lat[0], 1);
    assert_int_equal(c.lat[1], 1);
    assert_int_equal(c.lat[CALLSTATS_LAT_BUCKETS - 1], 1);
    assert_int_equal(c.lat_count, 3);
    assert_true(c.lat_sum_s > 120.010 && c.lat_sum_s < 120.012);
    double p50 = callstats_quantile_ms(&c, 0.5);
    assert_true(p50 > 5 && p50 <= 10);
    /* The +Inf bucket answers its lower bound, 60 s. */
    assert_true(callstats_quantile_ms(&c, 1.0) == 60000.0);
}

static void test_ring_keeps_the_latest_failures_newest_first(void **state)
{
    (void)state;
    callstats c;
    memset(&c, 0, sizeof c);
    char id[32];
    for (int i = 0; i < CALLSTATS_FAILURES + 5; i++) {
        snprintf(id, sizeof id, "item-%d", i);
        callstats_record(&c, 0, 500, 1, id, "HTTP 500", 3, "w1",
                         (uint64_t)i + 1);
        callstats_record(&c, 1, 200, 1, "ok", NULL, 1, NULL, 0);
    }
    assert_int_equal(c.n_failures, CALLSTATS_FAILURES + 5);
    assert_int_equal(callstats_failures(&c), CALLSTATS_FAILURES);
    const callstats_failure *f = callstats_failure_at(&c, 0);
    snprintf(id, sizeof id, "item-%d", CALLSTATS_FAILURES + 4);
    assert_string_equal(f->id, id);
    assert_string_equal(f->error, "HTTP 500");
    assert_string_equal(f->worker, "w1");
    assert_int_equal(f->attempts, 3);
    assert_int_equal(f->at_us, CALLSTATS_FAILURES + 5);
    f = callstats_failure_at(&c, CALLSTATS_FAILURES - 1);
    assert_string_equal(f->id, "item-5"); /* 0..4 were replaced */
}

static void test_long_ids_and_errors_are_cut_to_fit(void **state)
{
    (void)state;
    callstats c;
    memset(&c, 0, sizeof c);
    char big[4096];
    memset(big, 'e', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    callstats_record(&c, 0, 0, 1, big, big, 1, big, 0);
    const callstats_failure *f = callstats_failure_at(&c, 0);
    assert_int_equal(strlen(f->id), CALLSTATS_ID_BYTES - 1);
    assert_int_equal(strlen(f->error), CALLSTATS_ERROR_BYTES - 1);
    assert_true(f->at_us > 0); /* 0: now */
    callstats_record(&c, 0, 0, 1, "x", NULL, 1, NULL, 1);
    assert_string_equal(callstats_failure_at(&c, 0)->error, "");
}

static int read_token(const char *content, char *buf, size_t cap, char *err)
{
    char path[] = "/tmp/fanout-test-token-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)),
                     (ssize_t)strlen(content));
    close(fd);
    int rc = observe_read_token(path, buf, cap, err, 300);
    unlink(path);
    return rc;
}

static void test_token_file_first_line_trimmed(void **state)
{
    (void)state;
    char tok[OBSERVE_TOKEN_MAX_BYTES + 1], err[300];
    assert_int_equal(
        read_token("  abcdefghijklmnop0123 \nsecond\n", tok, sizeof tok, err),
        0);
    assert_string_equal(tok, "abcdefghijklmnop0123");
    assert_int_equal(read_token("short\n", tok, sizeof tok, err), -1);
    assert_non_null(strstr(err, "16 to 256"));
    assert_int_equal(
        read_token("abcdefgh ijklmnopqrst\n", tok, sizeof tok, err), -1);
    assert_int_equal(read_token("", tok, sizeof tok, err), -1);
    assert_int_equal(
        observe_read_token("/nonexistent/token", tok, sizeof tok, err, 300),
        -1);
    assert_non_null(strstr(err, "/nonexistent/token"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_results_count_by_status_class),
        cmocka_unit_test(test_latency_lands_in_its_bucket),
        cmocka_unit_test(test_ring_keeps_the_latest_failures_newest_first),
        cmocka_unit_test(test_long_ids_and_errors_are_cut_to_fit),
        cmocka_unit_test(test_token_file_first_line_trimmed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
