/* test_backoff.c - exponential backoff with full jitter and Retry-After
 * parsing (common/backoff.h). */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "backoff.h"

/* 2015-10-21 07:28:00 UTC in ms since the epoch. */
#define OCT21_0728_MS (INT64_C(1445412480) * 1000)
#define MAX_MS INT64_C(300000)

static void test_cap_doubles_then_caps(void **state)
{
    (void)state;
    static const int64_t want[] = {500,  1000,  2000,  4000,
                                   8000, 16000, 30000, 30000};
    for (int a = 1; a <= 8; a++)
        assert_int_equal(backoff_cap_ms(500, 30000, a), want[a - 1]);
}

static void test_cap_attempt_below_one_is_first_retry(void **state)
{
    (void)state;
    assert_int_equal(backoff_cap_ms(500, 30000, 0), 500);
    assert_int_equal(backoff_cap_ms(500, 30000, -3), 500);
}

static void test_cap_is_overflow_safe(void **state)
{
    (void)state;
    assert_int_equal(backoff_cap_ms(500, 30000, 200), 30000);
    assert_int_equal(backoff_cap_ms(500, 30000, 1 << 30), 30000);
    assert_int_equal(backoff_cap_ms(1, INT64_MAX, 200), INT64_MAX);
    assert_int_equal(backoff_cap_ms(INT64_MAX / 3, INT64_MAX, 10), INT64_MAX);
}

static void test_cap_base_above_max_is_max(void **state)
{
    (void)state;
    assert_int_equal(backoff_cap_ms(50000, 30000, 1), 30000);
}

static void test_cap_nonpositive_inputs_give_zero(void **state)
{
    (void)state;
    assert_int_equal(backoff_cap_ms(0, 30000, 3), 0);
    assert_int_equal(backoff_cap_ms(500, 0, 3), 0);
    assert_int_equal(backoff_delay_ms(0, 30000, 3, 12345), 0);
}

static void test_delay_within_zero_and_cap(void **state)
{
    (void)state;
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 100000; i++) {
        int64_t base = (int64_t)(backoff_rand(&seed) % 5000) + 1;
        int64_t max = (int64_t)(backoff_rand(&seed) % 100000) + 1;
        int attempt = (int)(backoff_rand(&seed) % 300);
        int64_t cap = backoff_cap_ms(base, max, attempt);
        int64_t d = backoff_delay_ms(base, max, attempt, backoff_rand(&seed));
        if (d < 0 || d > cap)
            fail_msg("delay %lld outside [0, %lld] (base %lld max %lld "
                     "attempt %d)",
                     (long long)d, (long long)cap, (long long)base,
                     (long long)max, attempt);
    }
    /* The extreme random values reach both ends of the range. */
    assert_int_equal(backoff_delay_ms(500, 30000, 8, 0), 0);
    assert_int_equal(backoff_delay_ms(500, 30000, 8, 30000), 30000);
    assert_true(backoff_delay_ms(500, 30000, 8, UINT64_MAX) <= 30000);
}

static void test_delay_is_spread_over_the_range(void **state)
{
    (void)state;
    uint64_t seed = 42;
    int buckets[10] = {0};
    for (int i = 0; i < 100000; i++) {
        int64_t d = backoff_delay_ms(500, 30000, 8, backoff_rand(&seed));
        buckets[d * 10 / 30001]++;
    }
    for (int b = 0; b < 10; b++)
        if (buckets[b] < 9000 || buckets[b] > 11000)
            fail_msg("bucket %d has %d of 100000", b, buckets[b]);
}

static void test_rand_nonzero_and_changes_state(void **state)
{
    (void)state;
    uint64_t s = 1;
    uint64_t a = backoff_rand(&s), b = backoff_rand(&s);
    assert_int_not_equal(s, 0);
    assert_int_not_equal(s, 1);
    assert_int_not_equal(a, b);
}

static int64_t retry_after(const char *v, int64_t now_ms, int64_t max_ms)
{
    int64_t out = -12345;
    int rc = backoff_parse_retry_after(v, now_ms, max_ms, &out);
    if (rc != 0) {
        assert_int_equal(rc, -1);
        return -1;
    }
    assert_true(out >= 0);
    return out;
}

static void test_retry_after_seconds(void **state)
{
    (void)state;
    assert_int_equal(retry_after("120", 0, MAX_MS), 120000);
    assert_int_equal(retry_after(" 5 ", 0, MAX_MS), 5000);
    assert_int_equal(retry_after("\t7\r\n", 0, MAX_MS), 7000);
    assert_int_equal(retry_after("0", 0, MAX_MS), 0);
}

static void test_retry_after_huge_is_capped(void **state)
{
    (void)state;
    assert_int_equal(retry_after("1000000", 0, MAX_MS), MAX_MS);
    assert_int_equal(retry_after("99999999999999999999999999", 0, MAX_MS),
                     MAX_MS);
}

/* RFC 9110 delta-seconds is 1*DIGIT: leading zeros do not change the
 * value. */
static void test_retry_after_leading_zeros(void **state)
{
    (void)state;
    assert_int_equal(retry_after("00005", 0, MAX_MS), 5000);
    assert_int_equal(retry_after("0000000000005", 0, MAX_MS), 5000);
}

static void test_retry_after_http_date(void **state)
{
    (void)state;
    const char *date = "Wed, 21 Oct 2015 07:28:00 GMT";
    assert_int_equal(retry_after(date, OCT21_0728_MS - 10000, MAX_MS), 10000);
    assert_int_equal(retry_after(date, OCT21_0728_MS - 2500, MAX_MS), 2500);
    /* Far ahead: capped. */
    assert_int_equal(retry_after(date, OCT21_0728_MS - 86400000, MAX_MS),
                     MAX_MS);
}

static void test_retry_after_past_date_is_zero(void **state)
{
    (void)state;
    const char *date = "Wed, 21 Oct 2015 07:28:00 GMT";
    assert_int_equal(retry_after(date, OCT21_0728_MS + 60000, MAX_MS), 0);
    assert_int_equal(retry_after(date, OCT21_0728_MS, MAX_MS), 0);
}

static void test_retry_after_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "soon",
        "-1",
        "12abc",
        "Wed, 99 Foo 2015",
        "",
        "   ",
        "1.5",
        "+5",
        "Wed, 21 Oct 2015 07:28:00 GMT trailing",
        "Wed, 21 Oct 2015 07:28:00",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t out = -12345;
        int rc = backoff_parse_retry_after(bad[i], 0, MAX_MS, &out);
        if (rc != -1)
            fail_msg("'%s': expected -1, got %d (%lld ms)", bad[i], rc,
                     (long long)out);
        assert_int_equal(out, -12345); /* untouched */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cap_doubles_then_caps),
        cmocka_unit_test(test_cap_attempt_below_one_is_first_retry),
        cmocka_unit_test(test_cap_is_overflow_safe),
        cmocka_unit_test(test_cap_base_above_max_is_max),
        cmocka_unit_test(test_cap_nonpositive_inputs_give_zero),
        cmocka_unit_test(test_delay_within_zero_and_cap),
        cmocka_unit_test(test_delay_is_spread_over_the_range),
        cmocka_unit_test(test_rand_nonzero_and_changes_state),
        cmocka_unit_test(test_retry_after_seconds),
        cmocka_unit_test(test_retry_after_huge_is_capped),
        cmocka_unit_test(test_retry_after_leading_zeros),
        cmocka_unit_test(test_retry_after_http_date),
        cmocka_unit_test(test_retry_after_past_date_is_zero),
        cmocka_unit_test(test_retry_after_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
