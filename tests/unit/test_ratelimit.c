/* test_ratelimit.c - RateLimit / X-RateLimit header parsing. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ratelimit.h"

static int feed(ratelimit_info *ri, const char *line)
{
    return ratelimit_header(ri, line, strlen(line), 1700000000000LL);
}

static void test_ietf_policy_keeps_the_lowest_rate(void **state)
{
    (void)state;
    ratelimit_info ri;
    ratelimit_init(&ri);
    /* 1000 an hour binds long before 60 a second does. */
    assert_int_equal(feed(&ri, "RateLimit-Policy: 60;w=1, 1000;w=3600\r\n"), 1);
    assert_int_equal(ri.limit, 1000);
    assert_int_equal(ri.window_ms, 3600000);
    ratelimit_init(&ri);
    assert_int_equal(feed(&ri, "ratelimit-policy: \"burst\";q=100;w=60"), 1);
    assert_int_equal(ri.limit, 100);
    assert_int_equal(ri.window_ms, 60000);
}

static void test_ietf_fields_both_drafts(void **state)
{
    (void)state;
    ratelimit_info ri;
    ratelimit_init(&ri);
    assert_int_equal(feed(&ri, "RateLimit: limit=60, remaining=5, reset=2"), 1);
    assert_int_equal(ri.limit, 60);
    assert_int_equal(ri.remaining, 5);
    assert_int_equal(ri.reset_ms, 2000);
    ratelimit_init(&ri);
    assert_int_equal(feed(&ri, "RateLimit: \"default\";r=0;t=30"), 1);
    assert_int_equal(ri.remaining, 0);
    assert_int_equal(ri.reset_ms, 30000);
}

static void test_x_ratelimit_with_delta_and_unix_reset(void **state)
{
    (void)state;
    ratelimit_info ri;
    ratelimit_init(&ri);
    assert_int_equal(feed(&ri, "X-RateLimit-Limit: 5000"), 1);
    assert_int_equal(feed(&ri, "X-RateLimit-Remaining: 4999\r\n"), 1);
    assert_int_equal(feed(&ri, "X-RateLimit-Reset: 10"), 1);
    assert_int_equal(ri.limit, 5000);
    assert_int_equal(ri.remaining, 4999);
    assert_int_equal(ri.reset_ms, 10000);
    /* GitHub sends a Unix time: 30 s after "now" in feed(). */
    assert_int_equal(feed(&ri, "X-RateLimit-Reset: 1700000030"), 1);
    assert_int_equal(ri.reset_ms, 30000);
    assert_int_equal(feed(&ri, "X-RateLimit-Reset: 1600000000"), 1);
    assert_int_equal(ri.reset_ms, 0);
}

static void test_malformed_and_unrelated_headers_are_ignored(void **state)
{
    (void)state;
    ratelimit_info ri;
    ratelimit_init(&ri);
    const char *bad[] = {"X-RateLimit-Limit: lots",
                         "X-RateLimit-Remaining: -1",
                         "X-RateLimit-Limit:",
                         "RateLimit-Policy: w=1",
                         "RateLimit-Policy: 10;w=0",
                         "Content-Type: application/json",
                         "no colon here",
                         "RateLimit: nothing=useful"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(feed(&ri, bad[i]), 0);
    assert_int_equal(ratelimit_known(&ri), 0);
    char huge[2000];
    memset(huge, '9', sizeof huge);
    memcpy(huge, "X-RateLimit-Limit: ", 19);
    assert_int_equal(ratelimit_header(&ri, huge, sizeof huge, 0), 0);
    assert_int_equal(feed(&ri, "X-RateLimit-Limit: 99999999999999999999"), 1);
    assert_true(ri.limit > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ietf_policy_keeps_the_lowest_rate),
        cmocka_unit_test(test_ietf_fields_both_drafts),
        cmocka_unit_test(test_x_ratelimit_with_delta_and_unix_reset),
        cmocka_unit_test(test_malformed_and_unrelated_headers_are_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
