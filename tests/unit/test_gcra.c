/* test_gcra.c - the multi-limit GCRA limiter (common/gcra.h), driven by a
 * fake clock: "now" is just an int64 the tests choose. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "clock.h"
#include "error.h"
#include "gcra.h"
#include "unit_assert.h"

#define MS FO_NS_PER_MS
#define SEC FO_NS_PER_S
/* An arbitrary fake "now", far from zero so offsets are visible. */
#define T0 (INT64_C(1000) * SEC)

static gcra_rate rate(const char *s)
{
    gcra_rate r = {0, 0};
    char err[128] = "";
    fo_err e = gcra_parse_rate(s, &r, err, sizeof err);
    if (e != FO_OK)
        fail_msg("gcra_parse_rate(%s): %s: %s", s, fo_errname(e), err);
    return r;
}

static gcra *limiter(const char *r, int64_t burst, int64_t margin_ns)
{
    gcra *g = gcra_new();
    assert_fo(FO_OK, gcra_add(g, rate(r), burst, margin_ns));
    return g;
}

static void test_parse_accepts_valid_rates(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t count, period_ns;
    } ok[] = {
        {"100/s", 100, SEC},           {"1000/min", 1000, 60 * SEC},
        {"5/h", 5, 3600 * SEC},        {"20/sec", 20, SEC},
        {"3/minute", 3, 60 * SEC},     {"7/m", 7, 60 * SEC},
        {"2/hour", 2, 3600 * SEC},     {"1/second", 1, SEC},
        {"10000000/s", 10000000, SEC},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        gcra_rate r = rate(ok[i].s);
        assert_int_equal(r.count, ok[i].count);
        assert_int_equal(r.period_ns, ok[i].period_ns);
    }
}

static void test_parse_rejects_malformed_rates(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "0/s",
        "-5/min",
        "1000/fortnight",
        "abc",
        "",
        "10",
        "/s",
        "1.5/s",
        "10/",
        "10/S",
        " 10/s",
        "10 /s",
        "10000001/s",
        "99999999999999999999/s",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gcra_rate r = {0, 0};
        char err[128] = "";
        fo_err e = gcra_parse_rate(bad[i], &r, err, sizeof err);
        if (e != FO_EINVAL)
            fail_msg("'%s': expected EINVAL, got %s", bad[i], fo_errname(e));
        if (err[0] == '\0')
            fail_msg("'%s': no reason in err", bad[i]);
    }
}

static void test_format_round_trips(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {{"100/s", "100/s"},    {"1000/min", "1000/min"},
                 {"5/h", "5/h"},        {"20/sec", "20/s"},
                 {"3/minute", "3/min"}, {"2/hour", "2/h"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gcra_rate r = rate(cases[i].in);
        char buf[32];
        gcra_format_rate(r, buf, sizeof buf);
        assert_string_equal(buf, cases[i].out);
        gcra_rate back = rate(buf);
        assert_int_equal(back.count, r.count);
        assert_int_equal(back.period_ns, r.period_ns);
    }
}

static void test_no_limits_peek_is_now(void **state)
{
    (void)state;
    gcra *g = gcra_new();
    assert_int_equal(gcra_count(g), 0);
    assert_true(gcra_rate_per_s(g) == 0);
    static const int64_t nows[] = {0, 1, T0, -5 * SEC, INT64_C(1) << 60};
    for (size_t i = 0; i < sizeof nows / sizeof nows[0]; i++) {
        assert_int_equal(gcra_peek(g, nows[i]), nows[i]);
        for (int k = 0; k < 100; k++)
            assert_int_equal(gcra_take(g, nows[i]), nows[i]);
    }
    gcra_destroy(&g);
    assert_null(g);
}

static void test_pacing_burst_1(void **state)
{
    (void)state;
    gcra *g = limiter("10/s", 1, 0);
    for (int64_t i = 0; i < 20; i++) {
        /* peek does not consume */
        assert_int_equal(gcra_peek(g, T0), T0 + i * 100 * MS);
        assert_int_equal(gcra_peek(g, T0), T0 + i * 100 * MS);
        assert_int_equal(gcra_take(g, T0), T0 + i * 100 * MS);
    }
    gcra_destroy(&g);
}

static void test_burst_3_then_paced(void **state)
{
    (void)state;
    gcra *g = limiter("10/s", 3, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(gcra_take(g, T0), T0);
    for (int64_t i = 1; i <= 10; i++)
        assert_int_equal(gcra_take(g, T0), T0 + i * 100 * MS);
    gcra_destroy(&g);
}

static void test_late_caller_gets_now_not_the_past(void **state)
{
    (void)state;
    gcra *g = limiter("10/s", 1, 0);
    assert_int_equal(gcra_take(g, T0), T0);
    /* The caller comes back 250 ms later: the token is for "now". */
    assert_int_equal(gcra_take(g, T0 + 250 * MS), T0 + 250 * MS);
    assert_int_equal(gcra_take(g, T0 + 250 * MS), T0 + 350 * MS);
    gcra_destroy(&g);
}

static void test_idle_does_not_accumulate_beyond_burst(void **state)
{
    (void)state;
    gcra *g = limiter("10/s", 3, 0);
    for (int i = 0; i < 10; i++)
        (void)gcra_take(g, T0);
    int64_t later = T0 + 3600 * SEC;
    int back_to_back = 0;
    while (gcra_take(g, later) == later && back_to_back < 1000)
        back_to_back++;
    assert_int_equal(back_to_back, 3);
    /* The 4th token (consumed by the loop's last call) was paced. */
    assert_int_equal(gcra_peek(g, later), later + 200 * MS);
    gcra_destroy(&g);
}

static void test_margin_widens_interval(void **state)
{
    (void)state;
    gcra *g = limiter("100/s", 1, 10 * MS);
    int64_t prev = gcra_take(g, T0);
    for (int i = 0; i < 50; i++) {
        int64_t t = gcra_take(g, T0);
        assert_int_equal(t - prev, 10100 * 1000); /* 10.1 ms */
        prev = t;
    }
    assert_float_equal(gcra_rate_per_s(g), 1e9 / 10.1e6, 1e-9);
    gcra_destroy(&g);
}

/* Counts the token times in the half-open window [times[i], +w). */
static size_t window_count(const int64_t *times, size_t n, size_t i, int64_t w)
{
    size_t c = 0;
    for (size_t j = i; j < n && times[j] < times[i] + w; j++)
        c++;
    return c;
}

static void test_several_limits_hold_in_every_window(void **state)
{
    (void)state;
    gcra *g = gcra_new();
    assert_fo(FO_OK, gcra_add(g, rate("20/s"), 1, 0));
    assert_fo(FO_OK, gcra_add(g, rate("100/min"), 1, 0));
    assert_int_equal(gcra_count(g), 2);
    static int64_t times[4096];
    size_t n = 0;
    int64_t now = T0;
    while (n < sizeof times / sizeof times[0]) {
        int64_t t = gcra_take(g, now);
        assert_true(t >= now);
        if (t >= T0 + 120 * SEC)
            break;
        times[n++] = t;
        now = t; /* take the next one as soon as allowed */
    }
    for (size_t i = 0; i < n; i++) {
        size_t in1 = window_count(times, n, i, SEC);
        size_t in60 = window_count(times, n, i, 60 * SEC);
        if (in1 > 20 || in60 > 100)
            fail_msg("window at +%lld ns: %zu in 1 s, %zu in 60 s",
                     (long long)(times[i] - T0), in1, in60);
    }
    /* ... and the limiter is not needlessly slow: 100/min for 2 min. */
    assert_int_equal(n, 200);
    gcra_destroy(&g);
}

static void test_strictest_limit_wins_at_each_step(void **state)
{
    (void)state;
    /* 10/s burst 5 would allow 5 at once; 1/s burst 2 allows only 2. */
    gcra *g = gcra_new();
    assert_fo(FO_OK, gcra_add(g, rate("10/s"), 5, 0));
    assert_fo(FO_OK, gcra_add(g, rate("1/s"), 2, 0));
    static const int64_t want[] = {T0, T0, T0 + SEC, T0 + 2 * SEC,
                                   T0 + 3 * SEC};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_int_equal(gcra_take(g, T0), want[i]);
    gcra_destroy(&g);
}

static void test_rate_per_s_is_the_minimum(void **state)
{
    (void)state;
    gcra *g = gcra_new();
    assert_fo(FO_OK, gcra_add(g, rate("20/s"), 1, 0));
    assert_float_equal(gcra_rate_per_s(g), 20.0, 1e-9);
    assert_fo(FO_OK, gcra_add(g, rate("100/min"), 1, 0));
    assert_float_equal(gcra_rate_per_s(g), 100.0 / 60.0, 1e-9);
    assert_fo(FO_OK, gcra_add(g, rate("1000/h"), 1, 0));
    assert_float_equal(gcra_rate_per_s(g), 1000.0 / 3600.0, 1e-6);
    gcra_destroy(&g);
}

static void test_scale_halves_the_rate(void **state)
{
    (void)state;
    gcra *g = limiter("10/s", 1, 0);
    gcra_set_scale(g, 0.5);
    assert_float_equal(gcra_rate_per_s(g), 5.0, 1e-9);
    assert_int_equal(gcra_take(g, T0), T0);
    assert_int_equal(gcra_take(g, T0), T0 + 200 * MS);
    assert_int_equal(gcra_take(g, T0), T0 + 400 * MS);
    gcra_set_scale(g, 1.0);
    assert_float_equal(gcra_rate_per_s(g), 10.0, 1e-9);
    /* Out-of-range factors are clamped into (0, 1]. */
    gcra_set_scale(g, 2.0);
    assert_float_equal(gcra_rate_per_s(g), 10.0, 1e-9);
    gcra_set_scale(g, 0.0);
    assert_true(gcra_rate_per_s(g) > 0);
    assert_true(gcra_rate_per_s(g) < 10.0);
    gcra_destroy(&g);
}

static void test_add_rejects_bad_limits(void **state)
{
    (void)state;
    gcra *g = gcra_new();
    gcra_rate ok = rate("10/s");
    gcra_rate zero = {0, SEC};
    gcra_rate noperiod = {10, 0};
    assert_fo(FO_EINVAL, gcra_add(g, ok, 0, 0));
    assert_fo(FO_EINVAL, gcra_add(g, ok, 1, -1));
    assert_fo(FO_EINVAL, gcra_add(g, zero, 1, 0));
    assert_fo(FO_EINVAL, gcra_add(g, noperiod, 1, 0));
    assert_int_equal(gcra_count(g), 0);
    for (int i = 0; i < GCRA_MAX_LIMITS; i++)
        assert_fo(FO_OK, gcra_add(g, ok, 1, 0));
    assert_fo(FO_EINVAL, gcra_add(g, ok, 1, 0));
    assert_int_equal(gcra_count(g), GCRA_MAX_LIMITS);
    gcra_destroy(&g);
}

static void test_clear_removes_all_limits(void **state)
{
    (void)state;
    gcra *g = limiter("1/h", 1, 0);
    (void)gcra_take(g, T0);
    assert_true(gcra_peek(g, T0) > T0);
    gcra_clear(g);
    assert_int_equal(gcra_count(g), 0);
    assert_int_equal(gcra_peek(g, T0), T0);
    assert_int_equal(gcra_take(g, T0), T0);
    gcra_destroy(&g);
    gcra_destroy(&g); /* NULL-safe */
}

/* Accepted extremes (burst up to 1e6, a slow rate, a scale in (0, 1]) must
 * not overflow the int64 arithmetic: a fresh limiter allows `burst` tokens
 * at once. */
static void test_extreme_burst_and_scale_do_not_overflow(void **state)
{
    (void)state;
    gcra *g = limiter("1/h", 1000000, 0);
    gcra_set_scale(g, 0.5);
    int64_t peek = gcra_peek(g, T0);
    int64_t first = gcra_take(g, T0);
    int64_t second = gcra_take(g, T0);
    gcra_destroy(&g); /* before asserting, so a failure does not leak */
    assert_int_equal(peek, T0);
    assert_int_equal(first, T0);
    assert_int_equal(second, T0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_accepts_valid_rates),
        cmocka_unit_test(test_parse_rejects_malformed_rates),
        cmocka_unit_test(test_format_round_trips),
        cmocka_unit_test(test_no_limits_peek_is_now),
        cmocka_unit_test(test_pacing_burst_1),
        cmocka_unit_test(test_burst_3_then_paced),
        cmocka_unit_test(test_late_caller_gets_now_not_the_past),
        cmocka_unit_test(test_idle_does_not_accumulate_beyond_burst),
        cmocka_unit_test(test_margin_widens_interval),
        cmocka_unit_test(test_several_limits_hold_in_every_window),
        cmocka_unit_test(test_strictest_limit_wins_at_each_step),
        cmocka_unit_test(test_rate_per_s_is_the_minimum),
        cmocka_unit_test(test_scale_halves_the_rate),
        cmocka_unit_test(test_add_rejects_bad_limits),
        cmocka_unit_test(test_clear_removes_all_limits),
        cmocka_unit_test(test_extreme_burst_and_scale_do_not_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
