/*
 * test_adaptive.c - the adaptive rate with a fake clock: the controller
 * alone (adaptive.c), then what ratectl observes from grants, successes and
 * pauses and how a push-back turns that into a rate (issue 15: the rate fell
 * to 14% of the configured one after a 429 that followed the cluster's own
 * pause, and climbed back from there).
 */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "adaptive.h"
#include "budget.h"
#include "gcra.h"
#include "log.h"
#include "ratectl.h"

#define S INT64_C(1000000000)
#define MS INT64_C(1000000)

static int near(double x, double want, double tol)
{
    return x >= want - tol && x <= want + tol;
}

/* ---- the controller ---------------------------------------------------- */

static void test_starts_at_full_scale(void **state)
{
    (void)state;
    adaptive a;
    adaptive_init(&a, 1);
    assert_true(adaptive_scale(&a) == 1.0);
    assert_int_equal(adaptive_tick(&a, 5 * S), 0);
}

/* Calls went out for most of the last second and the API took half the
 * configured rate: that is its limit, and the rate goes straight there. */
static void test_measured_limit_is_held_not_undercut(void **state)
{
    (void)state;
    adaptive a;
    adaptive_init(&a, 1);
    adaptive_obs o = {.window = 0.5, .sending = 0.5, .per_sending = 1.0};
    assert_int_equal(adaptive_on_throttle(&a, 10 * S, &o), 1);
    assert_true(adaptive_scale(&a) == 0.5);
    assert_int_equal(a.measured, 1);
    for (int64_t t = 11; t < 10 + ADAPTIVE_HOLD_NS / S; t++)
        adaptive_tick(&a, t * S);
    assert_true(adaptive_scale(&a) == 0.5); /* held, no dip, no climb */
}

/* A push-back always lowers the rate, even when the API took all we sent
 * over the last second. */
static void test_stays_below_the_refused_rate(void **state)
{
    (void)state;
    adaptive a;
    adaptive_init(&a, 1);
    adaptive_obs o = {.window = 1.0, .sending = 1.0, .per_sending = 1.0};
    assert_int_equal(adaptive_on_throttle(&a, 10 * S, &o), 1);
    assert_true(adaptive_scale(&a) < 1.0);
    assert_true(adaptive_scale(&a) >= 0.95);
}

/* The case: the second before the 429 was mostly our own pause, so
 * little was accepted in it. That is no measure of the limit; per second
 * of sending the API took far more, and the rate stays near that. */
static void test_own_pause_is_not_read_as_the_limit(void **state)
{
    (void)state;
    adaptive a;
    adaptive_init(&a, 1);
    adaptive_obs o = {.window = 0.14, .sending = 0.2, .per_sending = 0.8};
    assert_int_equal(adaptive_on_throttle(&a, 10 * S, &o), 1);
    assert_true(near(adaptive_scale(&a), 0.8 * 0.85, 1e-9));
    assert_int_equal(a.measured, 0);
}

/* Never below what the API accepted in its last second. */
static void test_never_below_the_last_window(void **state)
{
    (void)state;
    adaptive a;
    adaptive_init(&a, 1);
    adaptive_obs o = {.window = 0.4, .sending = 0.3, .per_sending = 0.42};
    adaptive_on_throttle(&a, 10 * S, &o);
    assert_true(adaptive_scale(&a) >= 0.4); /* 0.85 * 0.42 would be 0.357 */
    /* Nothing known at all: a plain decrease, never a collapse. */
    adaptive_init(&a, 1);
    assert_int_equal(adaptive_on_throttle(&a, 10 * S, NULL), 1);
    assert_true(near(adaptive_scale(&a), 0.85, 1e-9));
}

/* After an unmeasured decrease it waits, then climbs back to just under
 * the bound rather than staying far below it. */
static void test_climbs_back_near_the_bound_after_a_blind_decrease(void **s)
{
    (void)s;
    adaptive a;
    adaptive_init(&a, 1);
    adaptive_obs o = {.window = 0.1, .sending = 0.2, .per_sending = 0.6};
    adaptive_on_throttle(&a, 0, &o);
    assert_true(near(adaptive_scale(&a), 0.51, 1e-9));
    assert_int_equal(adaptive_tick(&a, 1 * S), 0); /* quiet first */
    assert_int_equal(adaptive_tick(&a, 2 * S), 0);
    int64_t t = 3 * S;
    for (int i = 0; i < 5; i++, t += S)
        adaptive_tick(&a, t);
    assert_true(near(adaptive_scale(&a), 0.6 * 0.95, 1e-9));
}

/* After the hold the rate probes from the estimate itself, 2% at a time at
 * first; a probe refused at the same level makes the next hold longer. */
static void test_probes_near_the_estimate(void **state)
{
    (void)state;
    adaptive a;
    adaptive_init(&a, 1);
    adaptive_obs o = {.window = 0.5, .sending = 1.0, .per_sending = 0.5};
    adaptive_on_throttle(&a, 0, &o);
    int64_t t = S;
    while (adaptive_scale(&a) == 0.5 && t < 200 * S) {
        adaptive_tick(&a, t);
        t += S;
    }
    assert_true(t - S >= ADAPTIVE_HOLD_NS);
    assert_true(near(adaptive_scale(&a), 0.51, 1e-9)); /* 2% above */
    /* The API refuses the probe, and again takes 0.5 a second. */
    int64_t refused = t;
    o.window = 0.5;
    assert_int_equal(adaptive_on_throttle(&a, refused, &o), 1);
    assert_true(near(adaptive_scale(&a), 0.5, 1e-9));
    assert_true(a.hold_ns > ADAPTIVE_HOLD_NS);
    for (t = refused + S; t < refused + ADAPTIVE_HOLD_NS + S; t += S)
        adaptive_tick(&a, t);
    assert_true(near(adaptive_scale(&a), 0.5, 1e-9)); /* still holding */
}

/* The count over the last second runs a call or two short of what the API
 * saw; a refused probe goes back to the level it started from, not to
 * that count. A limit that really dropped is followed down. */
static void test_refused_probe_returns_to_its_level(void **state)
{
    (void)state;
    adaptive a;
    adaptive_init(&a, 1);
    adaptive_obs o = {.window = 0.5, .sending = 1.0, .per_sending = 0.5};
    adaptive_on_throttle(&a, 0, &o);
    int64_t t = S;
    while (adaptive_scale(&a) == 0.5 && t < 200 * S)
        adaptive_tick(&a, t += S);
    assert_true(adaptive_scale(&a) > 0.5);
    o.window = 0.475; /* 19 of 20 counted */
    assert_int_equal(adaptive_on_throttle(&a, t + S, &o), 1);
    assert_true(adaptive_scale(&a) == 0.5);
    /* Later, refused while holding, with the API taking far less: down. */
    o.window = 0.3;
    assert_int_equal(adaptive_on_throttle(&a, t + 20 * S, &o), 1);
    assert_true(near(adaptive_scale(&a), 0.3, 1e-9));
}

/* A single 429 long into a hold, with the whole last second accepted at
 * the held rate, is arrival jitter: it pauses but does not lower the rate
 * for the rest of the job. A second one soon after does. */
static void test_jitter_at_the_held_level_is_forgiven(void **state)
{
    (void)state;
    adaptive a;
    adaptive_init(&a, 1);
    adaptive_obs o = {.window = 0.5, .sending = 0.6, .per_sending = 0.9};
    adaptive_on_throttle(&a, 0, &o);
    o = (adaptive_obs){.window = 0.49, .sending = 1.0, .per_sending = 0.49};
    int64_t t = ADAPTIVE_HOLD_NS - S; /* before the first probe */
    assert_int_equal(adaptive_on_throttle(&a, t, &o), 0);
    assert_true(adaptive_scale(&a) == 0.5);
    assert_int_equal(a.forgiven, 1);
    assert_int_equal(adaptive_on_throttle(&a, t + 5 * S, &o), 1);
    assert_true(adaptive_scale(&a) < 0.5);
}

/* The 429s of one burst count once. */
static void test_one_burst_decreases_once(void **state)
{
    (void)state;
    adaptive a;
    adaptive_init(&a, 1);
    assert_int_equal(adaptive_on_throttle(&a, 10 * S, NULL), 1);
    double after = adaptive_scale(&a);
    assert_int_equal(adaptive_on_throttle(&a, 10 * S + S / 2, NULL), 0);
    assert_true(adaptive_scale(&a) == after);
    assert_int_equal(adaptive_on_throttle(&a, 11 * S + 1, NULL), 1);
    assert_true(adaptive_scale(&a) < after);
}

/* After the hold, it probes upward and finds a raised limit again; it
 * never goes past 1 (the configured rate). */
static void test_recovers_to_full_scale_and_never_above(void **state)
{
    (void)state;
    adaptive a;
    adaptive_init(&a, 1);
    adaptive_obs o = {.window = 0.5, .sending = 1.0, .per_sending = 0.5};
    adaptive_on_throttle(&a, 0, &o);
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
    adaptive_obs o = {.window = 0.1, .sending = 0.1, .per_sending = 1.0};
    adaptive_on_throttle(&a, 0, &o); /* 0.85, climbing to 0.95 after 3 s */
    assert_int_equal(adaptive_tick(&a, 3 * S + S / 2), 1);
    assert_int_equal(adaptive_tick(&a, 4 * S), 0);
    assert_int_equal(adaptive_tick(&a, 4 * S + S / 2), 1);
}

/* Announced limits cap the scale, with or without adaptive mode. */
static void test_announced_limit_caps_the_scale(void **state)
{
    (void)state;
    adaptive a;
    adaptive_init(&a, 0);
    adaptive_on_policy(&a, 10, 40);
    assert_true(adaptive_scale(&a) == 0.25);
    assert_int_equal(adaptive_on_throttle(&a, S, NULL), 0); /* mode off */
    adaptive_on_policy(&a, 400, 40);
    assert_true(adaptive_scale(&a) == 1.0);
}

/* ---- what ratectl observes --------------------------------------------- */

typedef struct fixture {
    budget *bud;
    ratectl rc;
} fixture;

/* A ratectl at --rate 40/s, adaptive on, its clock starting at 10 s. */
static int setup(void **state)
{
    log_init("test", LOG_LVL_ERROR, LOG_FMT_TEXT);
    fixture *f = test_calloc(1, sizeof *f);
    f->bud = budget_new(gcra_new(), 0, 200 * MS);
    assert_non_null(f->bud);
    ratectl_init(&f->rc, f->bud, 1, 10, 1, 10 * S);
    gcra_rate r;
    char err[128];
    assert_int_equal(gcra_parse_rate("40/s", &r, err, sizeof err), FO_OK);
    assert_int_equal(ratectl_set_limits(&f->rc, &r, 1, 1, err, sizeof err),
                     FO_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    budget_destroy(&f->bud);
    test_free(f);
    return 0;
}

/* Calls granted and accepted at per_s from `from` to `to` (exclusive);
 * returns how many. */
static int send_at(ratectl *rc, int64_t from, int64_t to, double per_s)
{
    int64_t step = (int64_t)(1e9 / per_s);
    int n = 0;
    for (int64_t t = from; t < to; t += step, n++) {
        ratectl_granted(rc, t, 1);
        ratectl_ok(rc, t + 2 * MS, 1);
    }
    return n;
}

/* Steady sending for the whole last second: all three figures agree. */
static void test_observe_steady_sending(void **state)
{
    fixture *f = *state;
    send_at(&f->rc, 10 * S, 12 * S, 20);
    adaptive_obs o;
    ratectl_observe(&f->rc, 12 * S, &o);
    assert_true(near(o.window * 40, 20, 1.01));
    assert_true(near(o.sending, 1.0, 0.01));
    assert_true(near(o.per_sending * 40, 20, 1.01));
}

/* Pauses excluded: 2 s at 20/s, our own 1 s pause, then 0.17 s at 32/s
 * before the next 429 (the trace). The last second holds few
 * successes, but per second of sending the API took 20 to 32. */
static void test_observe_leaves_out_our_pauses(void **state)
{
    fixture *f = *state;
    send_at(&f->rc, 10 * S, 12 * S, 20);
    assert_int_equal(ratectl_pause(&f->rc, 12 * S, 1000), 1);
    send_at(&f->rc, 13 * S, 13 * S + 170 * MS, 32);
    adaptive_obs o;
    int64_t now = 13 * S + 170 * MS;
    ratectl_observe(&f->rc, now, &o);
    assert_true(o.window * 40 < 7); /* what the old estimate used */
    assert_true(o.sending <= 0.25); /* not a measurement */
    assert_true(o.per_sending * 40 >= 19);
    assert_true(o.per_sending * 40 <= 33);
    /* And the push-back keeps the rate near that, not at 5.6/s. */
    ratectl_on_throttled(&f->rc, now, 1000, 429, "w1", 0);
    assert_true(ratectl_effective_per_s(&f->rc) >= 15);
    assert_true(ratectl_effective_per_s(&f->rc) < 40);
}

/* Empty windows excluded: nothing to send for 0.6 s is not a limit. */
static void test_observe_leaves_out_empty_stretches(void **state)
{
    fixture *f = *state;
    send_at(&f->rc, 10 * S, 11 * S, 20);
    send_at(&f->rc, 11 * S + 600 * MS, 12 * S, 20);
    adaptive_obs o;
    ratectl_observe(&f->rc, 12 * S, &o);
    assert_true(near(o.sending, 0.4, 0.01));
    assert_true(near(o.per_sending * 40, 20, 1.01));
    assert_true(o.window * 40 < 10);
}

/* A 429 after a full second of sending at 40/s of which the API took 20:
 * the limit is measured, the rate goes to it and not below. */
static void test_push_back_after_a_measured_second(void **state)
{
    fixture *f = *state;
    int64_t t = 10 * S, step = S / 40;
    for (int i = 0; t < 12 * S; t += step, i++) {
        ratectl_granted(&f->rc, t, 1);
        if (i % 2 == 0)
            ratectl_ok(&f->rc, t + 2 * MS, 1);
    }
    ratectl_on_throttled(&f->rc, t, 1000, 429, "w1", 0);
    assert_true(near(adaptive_scale(&f->rc.ad), 0.5, 0.03));
    assert_int_equal(f->rc.ad.measured, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_starts_at_full_scale),
        cmocka_unit_test(test_measured_limit_is_held_not_undercut),
        cmocka_unit_test(test_stays_below_the_refused_rate),
        cmocka_unit_test(test_own_pause_is_not_read_as_the_limit),
        cmocka_unit_test(test_never_below_the_last_window),
        cmocka_unit_test(
            test_climbs_back_near_the_bound_after_a_blind_decrease),
        cmocka_unit_test(test_probes_near_the_estimate),
        cmocka_unit_test(test_refused_probe_returns_to_its_level),
        cmocka_unit_test(test_jitter_at_the_held_level_is_forgiven),
        cmocka_unit_test(test_one_burst_decreases_once),
        cmocka_unit_test(test_recovers_to_full_scale_and_never_above),
        cmocka_unit_test(test_ticks_at_most_once_a_second),
        cmocka_unit_test(test_announced_limit_caps_the_scale),
        cmocka_unit_test_setup_teardown(test_observe_steady_sending, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_observe_leaves_out_our_pauses,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_observe_leaves_out_empty_stretches,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_back_after_a_measured_second,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
