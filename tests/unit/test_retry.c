/* test_retry.c - the worker's retry decision (worker/retry.h): one test
 * per branch, with the jitter's random value and the wall clock passed
 * in. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "backoff.h"
#include "retry.h"

/* 2015-10-21 07:28:00 UTC in ms since the epoch. */
#define OCT21_0728_MS (INT64_C(1445412480) * 1000)

static const retry_policy policy = {
    .max_attempts = 3,
    .max_throttled = 4,
    .backoff_base_ms = 500,
    .backoff_max_ms = 30000,
};

/* The random values tried for every bounded delay. */
static const uint64_t rnds[] = {0, 1, 0x9E3779B97F4A7C15ULL, UINT64_MAX};

static retry_input answered(long status)
{
    return (retry_input){.answered = 1, .status = status, .rnd = 12345};
}

static retry_input transport(int unreachable, int outage)
{
    return (retry_input){
        .unreachable = unreachable, .outage = outage, .rnd = 12345};
}

static retry_decision decide(uint32_t attempts, uint32_t throttled,
                             uint32_t unreachable, const retry_input *in)
{
    retry_counts c = {attempts, throttled, unreachable};
    return retry_decide(&policy, &c, in);
}

static void assert_verdict(retry_verdict want, const retry_decision *d)
{
    if (want != d->verdict)
        fail_msg("expected %s, got %s", retry_verdict_name(want),
                 retry_verdict_name(d->verdict));
}

static void test_2xx_is_done(void **state)
{
    (void)state;
    for (long s = 200; s < 300; s += 99) {
        retry_input in = answered(s);
        retry_decision d = decide(1, 0, 0, &in);
        assert_verdict(RETRY_DONE, &d);
        assert_int_equal(d.reason, RETRY_FAIL_NONE);
        assert_int_equal(d.pause_ms, 0);
    }
}

static void test_2xx_on_the_last_attempt_is_done(void **state)
{
    (void)state;
    retry_input in = answered(204);
    retry_decision d = decide(3, 0, 0, &in);
    assert_verdict(RETRY_DONE, &d);
}

static void test_4xx_fails_without_retry(void **state)
{
    (void)state;
    static const long codes[] = {400, 401, 404, 409, 422};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        retry_input in = answered(codes[i]);
        retry_decision d = decide(1, 0, 0, &in);
        assert_verdict(RETRY_FAIL, &d);
        assert_int_equal(d.reason, RETRY_FAIL_STATUS);
        assert_int_equal(d.pause_ms, 0);
    }
}

static void test_1xx_and_3xx_fail_without_retry(void **state)
{
    (void)state;
    retry_input in = answered(302);
    retry_decision d = decide(1, 0, 0, &in);
    assert_verdict(RETRY_FAIL, &d);
    assert_int_equal(d.reason, RETRY_FAIL_STATUS);
    in = answered(101);
    d = decide(1, 0, 0, &in);
    assert_int_equal(d.reason, RETRY_FAIL_STATUS);
}

static void test_5xx_retries_within_backoff_bounds(void **state)
{
    (void)state;
    for (uint32_t attempt = 1; attempt < policy.max_attempts; attempt++) {
        int64_t cap = backoff_cap_ms(policy.backoff_base_ms,
                                     policy.backoff_max_ms, (int)attempt);
        for (size_t i = 0; i < sizeof rnds / sizeof rnds[0]; i++) {
            retry_input in = answered(500);
            in.rnd = rnds[i];
            retry_decision d = decide(attempt, 0, 0, &in);
            assert_verdict(RETRY_AGAIN, &d);
            assert_in_range(d.delay_ms, 0, cap);
            assert_int_equal(d.delay_ms,
                             backoff_delay_ms(policy.backoff_base_ms,
                                              policy.backoff_max_ms,
                                              (int)attempt, rnds[i]));
        }
    }
}

static void test_transport_error_retries(void **state)
{
    (void)state;
    retry_input in = transport(0, 0);
    retry_decision d = decide(1, 0, 0, &in);
    assert_verdict(RETRY_AGAIN, &d);
    assert_in_range(d.delay_ms, 0, policy.backoff_base_ms);
}

static void test_5xx_on_the_last_attempt_is_exhausted(void **state)
{
    (void)state;
    retry_input in = answered(503);
    retry_decision d = decide(3, 0, 0, &in);
    assert_verdict(RETRY_FAIL, &d);
    assert_int_equal(d.reason, RETRY_FAIL_EXHAUSTED);
    assert_int_equal(d.counted, 3);
}

static void test_transport_error_on_the_last_attempt_is_exhausted(void **state)
{
    (void)state;
    retry_input in = transport(1, 0);
    retry_decision d = decide(3, 0, 0, &in);
    assert_verdict(RETRY_FAIL, &d);
    assert_int_equal(d.reason, RETRY_FAIL_EXHAUSTED);
}

static void test_too_large_fails_even_with_2xx(void **state)
{
    (void)state;
    retry_input in = answered(200);
    in.answered = 0;
    in.too_large = 1;
    retry_decision d = decide(1, 0, 0, &in);
    assert_verdict(RETRY_FAIL, &d);
    assert_int_equal(d.reason, RETRY_FAIL_TOO_LARGE);
}

static void
test_429_without_retry_after_pauses_default_and_retries(void **state)
{
    (void)state;
    retry_input in = answered(429);
    retry_decision d = decide(1, 0, 0, &in);
    assert_verdict(RETRY_THROTTLED, &d);
    assert_int_equal(d.pause_ms, RETRY_DEFAULT_PAUSE_MS);
    assert_int_equal(d.retry_after_ms, -1);
    assert_int_equal(d.counts.throttled, 1);
    assert_int_equal(d.counted, 0);
    assert_in_range(d.delay_ms, 0, policy.backoff_base_ms);
}

static void test_429_with_retry_after_waits_at_least_that_long(void **state)
{
    (void)state;
    retry_input in = answered(429);
    in.retry_after = "7";
    retry_decision d = decide(1, 0, 0, &in);
    assert_verdict(RETRY_THROTTLED, &d);
    assert_int_equal(d.retry_after_ms, 7000);
    assert_int_equal(d.pause_ms, 7000);
    assert_int_equal(d.delay_ms, 7000); /* above the 500 ms backoff cap */
}

static void test_retry_after_http_date_uses_the_wall_clock(void **state)
{
    (void)state;
    retry_input in = answered(429);
    in.retry_after = "Wed, 21 Oct 2015 07:28:30 GMT";
    in.now_wall_ms = OCT21_0728_MS;
    retry_decision d = decide(1, 0, 0, &in);
    assert_int_equal(d.retry_after_ms, 30000);
    assert_int_equal(d.delay_ms, 30000);
}

static void test_retry_after_is_capped(void **state)
{
    (void)state;
    retry_input in = answered(429);
    in.retry_after = "999999";
    retry_decision d = decide(1, 0, 0, &in);
    assert_int_equal(d.retry_after_ms, RETRY_AFTER_CAP_MS);
    assert_int_equal(d.pause_ms, RETRY_AFTER_CAP_MS);
    assert_int_equal(d.delay_ms, RETRY_AFTER_CAP_MS);
}

static void test_malformed_retry_after_is_flagged_and_ignored(void **state)
{
    (void)state;
    retry_input in = answered(429);
    in.retry_after = "soon";
    retry_decision d = decide(1, 0, 0, &in);
    assert_true(d.bad_retry_after);
    assert_int_equal(d.retry_after_ms, -1);
    assert_int_equal(d.pause_ms, RETRY_DEFAULT_PAUSE_MS);
}

static void test_503_with_retry_after_is_push_back(void **state)
{
    (void)state;
    retry_input in = answered(503);
    in.retry_after = "2";
    retry_decision d = decide(1, 0, 0, &in);
    assert_verdict(RETRY_THROTTLED, &d);
    assert_int_equal(d.pause_ms, 2000);
    assert_int_equal(d.counts.throttled, 1);
}

static void test_503_without_retry_after_is_a_counted_retry(void **state)
{
    (void)state;
    retry_input in = answered(503);
    retry_decision d = decide(1, 0, 0, &in);
    assert_verdict(RETRY_AGAIN, &d);
    assert_int_equal(d.pause_ms, 0);
    assert_int_equal(d.counts.throttled, 0);
    assert_int_equal(d.counted, 1);
}

static void test_500_with_retry_after_waits_at_least_that_long(void **state)
{
    (void)state;
    retry_input in = answered(500);
    in.retry_after = "10";
    retry_decision d = decide(1, 0, 0, &in);
    assert_verdict(RETRY_AGAIN, &d);
    assert_int_equal(d.pause_ms, 0);
    assert_int_equal(d.delay_ms, 10000);
}

static void
test_throttled_attempts_do_not_count_towards_max_attempts(void **state)
{
    (void)state;
    /* Five attempts, three of them push-back: two counted, one left. */
    retry_input in = answered(500);
    retry_decision d = decide(5, 3, 0, &in);
    assert_verdict(RETRY_AGAIN, &d);
    assert_int_equal(d.counted, 2);
}

static void test_max_throttled_reached_fails(void **state)
{
    (void)state;
    retry_input in = answered(429);
    retry_decision d = decide(4, 3, 0, &in);
    assert_verdict(RETRY_FAIL, &d);
    assert_int_equal(d.reason, RETRY_FAIL_THROTTLED);
    assert_int_equal(d.counts.throttled, 4);
    /* The push-back still pauses the cluster. */
    assert_int_equal(d.pause_ms, RETRY_DEFAULT_PAUSE_MS);
}

static void test_backoff_step_skips_throttled_attempts(void **state)
{
    (void)state;
    /* Attempt 6 after 4 push-backs: the backoff is that of retry 2. */
    retry_input in = answered(500);
    in.rnd = UINT64_MAX;
    retry_decision d = decide(6, 4, 0, &in);
    assert_int_equal(d.delay_ms, backoff_delay_ms(500, 30000, 2, UINT64_MAX));
}

static void test_outage_attempt_is_not_counted(void **state)
{
    (void)state;
    /* The last counted attempt, but the API is down: wait, do not fail. */
    retry_input in = transport(1, 1);
    retry_decision d = decide(3, 0, 0, &in);
    assert_verdict(RETRY_OUTAGE, &d);
    assert_int_equal(d.counts.unreachable, 1);
    assert_int_equal(d.counted, 2);
    assert_int_equal(d.pause_ms, 0);
}

static void test_outage_backoff_keeps_growing(void **state)
{
    (void)state;
    /* Uncounted for max_attempts, but the backoff still slows the polls. */
    retry_input in = transport(1, 1);
    in.rnd = UINT64_MAX;
    retry_decision d = decide(10, 0, 8, &in);
    assert_verdict(RETRY_OUTAGE, &d);
    assert_int_equal(d.delay_ms, backoff_delay_ms(500, 30000, 10, UINT64_MAX));
}

static void test_unreachable_before_an_outage_is_counted(void **state)
{
    (void)state;
    retry_input in = transport(1, 0);
    retry_decision d = decide(1, 0, 0, &in);
    assert_verdict(RETRY_AGAIN, &d);
    assert_int_equal(d.counts.unreachable, 0);
    assert_int_equal(d.counted, 1);
}

static void test_timeout_during_an_outage_is_counted(void **state)
{
    (void)state;
    /* Connected, then timed out: a slow endpoint, not an outage. */
    retry_input in = transport(0, 1);
    retry_decision d = decide(3, 0, 0, &in);
    assert_verdict(RETRY_FAIL, &d);
    assert_int_equal(d.reason, RETRY_FAIL_EXHAUSTED);
}

static void test_decision_is_pure(void **state)
{
    (void)state;
    retry_input in = answered(500);
    in.retry_after = "1";
    retry_decision a = decide(2, 1, 0, &in);
    retry_decision b = decide(2, 1, 0, &in);
    assert_int_equal(a.verdict, b.verdict);
    assert_int_equal(a.delay_ms, b.delay_ms);
    assert_int_equal(a.pause_ms, b.pause_ms);
    assert_int_equal(a.counted, b.counted);
    assert_int_equal(a.counts.throttled, b.counts.throttled);
}

/* The master takes items back after a lease of silence; a worker stops
 * starting attempts a heartbeat and a tenth of a lease before that. */
#define MS INT64_C(1000000)

static void test_start_cutoff_is_before_the_lease_by_a_heartbeat(void **state)
{
    (void)state;
    /* The soak's --lease 2s --heartbeat 500ms: 2000 - 500 - 200. */
    assert_int_equal(retry_start_cutoff_ns(2000 * MS, 500 * MS), 1300 * MS);
    /* The defaults' ratio: well before the lease. */
    assert_true(retry_start_cutoff_ns(5000 * MS, 1000 * MS) <
                5000 * MS - 1000 * MS);
    /* A heartbeat as long as the lease still gives a positive cutoff. */
    assert_int_equal(retry_start_cutoff_ns(1000 * MS, 1000 * MS), 250 * MS);
}

static void test_no_attempt_after_the_cutoff_of_silence(void **state)
{
    (void)state;
    int64_t heard = 10000 * MS, lease = 2000 * MS, hb = 500 * MS;
    assert_true(retry_may_start(1, heard, heard, lease, hb));
    assert_true(retry_may_start(1, heard + 1299 * MS, heard, lease, hb));
    assert_false(retry_may_start(1, heard + 1300 * MS, heard, lease, hb));
    /* Long past the lease (a SIGSTOP, a cut link): never. */
    assert_false(retry_may_start(1, heard + 60000 * MS, heard, lease, hb));
}

static void test_no_attempt_while_not_joined(void **state)
{
    (void)state;
    /* master_ok 0: lost or RESET; only a JOB (which drops every item not
     * in flight) lets attempts start again. */
    int64_t heard = 10000 * MS;
    assert_false(retry_may_start(0, heard, heard, 2000 * MS, 500 * MS));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_2xx_is_done),
        cmocka_unit_test(test_2xx_on_the_last_attempt_is_done),
        cmocka_unit_test(test_4xx_fails_without_retry),
        cmocka_unit_test(test_1xx_and_3xx_fail_without_retry),
        cmocka_unit_test(test_5xx_retries_within_backoff_bounds),
        cmocka_unit_test(test_transport_error_retries),
        cmocka_unit_test(test_5xx_on_the_last_attempt_is_exhausted),
        cmocka_unit_test(test_transport_error_on_the_last_attempt_is_exhausted),
        cmocka_unit_test(test_too_large_fails_even_with_2xx),
        cmocka_unit_test(
            test_429_without_retry_after_pauses_default_and_retries),
        cmocka_unit_test(test_429_with_retry_after_waits_at_least_that_long),
        cmocka_unit_test(test_retry_after_http_date_uses_the_wall_clock),
        cmocka_unit_test(test_retry_after_is_capped),
        cmocka_unit_test(test_malformed_retry_after_is_flagged_and_ignored),
        cmocka_unit_test(test_503_with_retry_after_is_push_back),
        cmocka_unit_test(test_503_without_retry_after_is_a_counted_retry),
        cmocka_unit_test(test_500_with_retry_after_waits_at_least_that_long),
        cmocka_unit_test(
            test_throttled_attempts_do_not_count_towards_max_attempts),
        cmocka_unit_test(test_max_throttled_reached_fails),
        cmocka_unit_test(test_backoff_step_skips_throttled_attempts),
        cmocka_unit_test(test_outage_attempt_is_not_counted),
        cmocka_unit_test(test_outage_backoff_keeps_growing),
        cmocka_unit_test(test_unreachable_before_an_outage_is_counted),
        cmocka_unit_test(test_timeout_during_an_outage_is_counted),
        cmocka_unit_test(test_decision_is_pure),
        cmocka_unit_test(test_start_cutoff_is_before_the_lease_by_a_heartbeat),
        cmocka_unit_test(test_no_attempt_after_the_cutoff_of_silence),
        cmocka_unit_test(test_no_attempt_while_not_joined),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
