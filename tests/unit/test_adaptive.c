/* test_adaptive.c - the adaptive rate controller, with a fake clock. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "adaptive.h"

#define S INT64_C(1000000000)

static void test_starts_at_full_scale(void **state)
{
    (void)state;
    adaptive a;
    adaptive_init(&a, 1);
    assert_true(adaptive_scale(&a) == 1.0);
    assert_int_equal(adaptive_tick(&a, 5 * S), 0);
}

/* A 429 drops the scale below where it happened, and never raises it. */
static void test_push_back_lowers_below_the_failure_level(void **state)
{
    (void)state;
    adaptive a;
    adaptive_init(&a, 1);
    assert_int_equal(adaptive_on_throttle(&a, 10 * S, 0), 1);
    assert_true(adaptive_scale(&a) <= 0.95 * 1.0 + 1e-9);
    assert_true(adaptive_scale(&a) >= 0.8);
    assert_int_equal(a.throttles, 1);
}

/* What the API let through over the last second is its limit: the scale
 * drops there at once rather than a 429 at a time. */
static void test_observed_rate_sets_the_failure_level(void **state)
{
    (void)state;
    adaptive a;
    adaptive_init(&a, 1);
    adaptive_on_throttle(&a, 10 * S, 0.5);
    assert_true(a.fail > 0.49 && a.fail < 0.51);
    assert_true(adaptive_scale(&a) <= 0.5 * 0.95 + 1e-9);
}

/* The 429s of one burst count once. */
static void test_one_burst_decreases_once(void **state)
{
    (void)state;
    adaptive a;
    adaptive_init(&a, 1);
    assert_int_equal(adaptive_on_throttle(&a, 10 * S, 0), 1);
    double after = adaptive_scale(&a);
    assert_int_equal(adaptive_on_throttle(&a, 10 * S + S / 2, 0), 0);
    assert_true(adaptive_scale(&a) == after);
    assert_int_equal(adaptive_on_throttle(&a, 11 * S + 1, 0), 1);
    assert_true(adaptive_scale(&a) < after);
}

/* After the hold, it probes upward and finds a raised limit again; it
 * never goes past 1 (the configured rate). */
static void test_recovers_to_full_scale_and_never_above(void **state)
{
    (void)state;
    adaptive a;
    adaptive_init(&a, 1);
    adaptive_on_throttle(&a, 0, 0.5);
    double low = adaptive_scale(&a);
    int64_t t = 0;
    for (int i = 0; i < 120; i++) {
        t += S;
        adaptive_tick(&a, t);
        assert_true(adaptive_scale(&a) <= 1.0);
    }
    assert_true(adaptive_scale(&a) > low);
    assert_true(adaptive_scale(&a) == 1.0);
}

/* Adjustments happen at most once a second. */
static void test_ticks_at_most_once_a_second(void **state)
{
    (void)state;
    adaptive a;
    adaptive_init(&a, 1);
    adaptive_on_throttle(&a, 0, 0); /* 0.85, climbing to 0.95 */
    assert_int_equal(adaptive_tick(&a, S / 2), 0);
    assert_int_equal(adaptive_tick(&a, S), 1);
    assert_int_equal(adaptive_tick(&a, S + S / 2), 0);
}

/* Announced limits cap the scale, with or without adaptive mode. */
static void test_announced_limit_caps_the_scale(void **state)
{
    (void)state;
    adaptive a;
    adaptive_init(&a, 0);
    adaptive_on_policy(&a, 10, 40);
    assert_true(adaptive_scale(&a) == 0.25);
    assert_int_equal(adaptive_on_throttle(&a, S, 0), 0); /* mode off */
    adaptive_on_policy(&a, 400, 40);
    assert_true(adaptive_scale(&a) == 1.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_starts_at_full_scale),
        cmocka_unit_test(test_push_back_lowers_below_the_failure_level),
        cmocka_unit_test(test_observed_rate_sets_the_failure_level),
        cmocka_unit_test(test_one_burst_decreases_once),
        cmocka_unit_test(test_recovers_to_full_scale_and_never_above),
        cmocka_unit_test(test_ticks_at_most_once_a_second),
        cmocka_unit_test(test_announced_limit_caps_the_scale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
