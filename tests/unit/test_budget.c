/* test_budget.c - the cluster-wide token budget, with a fake clock. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "budget.h"
#include "unit_assert.h"

#define MS INT64_C(1000000)
#define S (1000 * MS)
#define HORIZON (250 * MS)

typedef struct sent {
    int64_t at[4096];  /* absolute spend time of each token granted */
    size_t n;          /* tokens */
    size_t grants;     /* grant messages */
    budget_worker *to; /* last worker granted */
    int64_t now;       /* the fake clock at the grant */
} sent;

/* Spend times as the worker sees them: it hears of a grant one_way late
 * and spends each token at receipt + offset. */
static void on_grant(void *ctx, budget_worker *w, const uint32_t *offs,
                     uint32_t n)
{
    sent *s = ctx;
    s->grants++;
    s->to = w;
    for (uint32_t i = 0; i < n && s->n < 4096; i++)
        s->at[s->n++] = s->now + w->one_way_ns + (int64_t)offs[i] * 1000;
}

static budget *new_budget(int64_t count, int64_t period_ns, int64_t mif)
{
    gcra *g = gcra_new();
    if (count) {
        gcra_rate r = {.count = count, .period_ns = period_ns};
        assert_fo(FO_OK, gcra_add(g, r, 1, 0));
    }
    return budget_new(g, mif, HORIZON);
}

static size_t grant(budget *b, sent *s, int64_t now)
{
    s->now = now;
    return budget_grant(b, now, on_grant, s);
}

/* However often a greedy worker asks, no window of one second holds more
 * than the rate (plus the burst of one), and spend times are paced. */
static void test_grants_never_exceed_the_rate(void **state)
{
    (void)state;
    budget *b = new_budget(20, S, 0);
    budget_worker *w = budget_join(b, "w1", 2, 0);
    sent s = {0};
    for (int64_t now = 0; now < 10 * S; now += 7 * MS) {
        budget_request(b, w, 1000, w->granted, 0);
        grant(b, &s, now);
    }
    size_t before_10s = 0;
    for (size_t i = 0; i < s.n; i++)
        before_10s += s.at[i] < 10 * S;
    /* 20/s for 10 s, plus the burst of one; none lost to pacing. */
    assert_true(before_10s >= 195 && before_10s <= 201);
    for (size_t i = 1; i < s.n; i++)
        assert_true(s.at[i] - s.at[i - 1] >= 50 * MS - 1000);
    for (size_t i = 0; i + 20 < s.n; i++)
        assert_true(s.at[i + 20] - s.at[i] >= S - 1000);
    budget_destroy(&b);
    budget_destroy(&b);
}

/* A TOKEN_REQ that crossed a grant on the wire (it says "seen 0" although
 * 5 are on their way) does not make the budget grant those 5 again. */
static void test_request_crossing_a_grant_does_not_double_grant(void **state)
{
    (void)state;
    budget *b = new_budget(0, 0, 0);
    budget_worker *w = budget_join(b, "w1", 2, 0);
    sent s = {0};
    budget_request(b, w, 5, 0, 0);
    assert_int_equal(grant(b, &s, 0), 5);
    budget_request(b, w, 5, 0, 0); /* sent before the grant arrived */
    assert_int_equal(grant(b, &s, 1 * MS), 0);
    budget_request(b, w, 5, 5, 0); /* the worker saw them: wants 5 more */
    assert_int_equal(grant(b, &s, 2 * MS), 5);
    assert_int_equal(w->granted, 10);
    budget_destroy(&b);
}

/* Permits cap the calls in flight across workers; a release frees them,
 * and a worker that goes away returns what it held. */
static void test_permits_cap_in_flight_and_come_back(void **state)
{
    (void)state;
    budget *b = new_budget(0, 0, 3);
    budget_worker *a = budget_join(b, "a", 1, 0);
    budget_worker *c = budget_join(b, "c", 1, 0);
    sent s = {0};
    budget_request(b, a, 10, 0, 0);
    budget_request(b, c, 10, 0, 0);
    assert_int_equal(grant(b, &s, 0), 3);
    assert_int_equal(budget_permits_in_use(b), 3);
    assert_int_equal(grant(b, &s, MS), 0);
    budget_worker *holder = a->permits ? a : c;
    int64_t held = holder->permits;
    budget_request(b, holder, 10, holder->granted, 1);
    assert_int_equal(budget_permits_in_use(b), 2);
    assert_int_equal(grant(b, &s, 2 * MS), 1);
    held = holder->permits + (holder == a ? c->permits : a->permits);
    assert_int_equal(held, 3);
    budget_remove(b, a);
    assert_int_equal(budget_permits_in_use(b), c->permits);
    /* A release never returns more than the worker holds. */
    budget_request(b, c, 0, c->granted, 1000);
    assert_int_equal(budget_permits_in_use(b), 0);
    assert_int_equal(c->permits, 0);
    budget_destroy(&b);
}

static void test_pause_stops_every_grant_until_it_ends(void **state)
{
    (void)state;
    budget *b = new_budget(100, S, 0);
    budget_worker *w = budget_join(b, "w", 1, 0);
    sent s = {0};
    budget_pause(b, 2 * S);
    budget_pause(b, 1 * S); /* a shorter pause never shortens it */
    assert_true(budget_paused_until(b) == 2 * S);
    budget_request(b, w, 10, 0, 0);
    assert_int_equal(grant(b, &s, S), 0);
    assert_true(budget_next_wake(b, S) >= 2 * S);
    assert_true(grant(b, &s, 2 * S) > 0);
    for (size_t i = 0; i < s.n; i++)
        assert_true(s.at[i] >= 2 * S);
    budget_destroy(&b);
}

/* Tokens are never granted further ahead than the horizon. */
static void test_no_token_beyond_the_horizon(void **state)
{
    (void)state;
    budget *b = new_budget(10, S, 0);
    budget_worker *w = budget_join(b, "w", 1, 0);
    sent s = {0};
    budget_request(b, w, 100, 0, 0);
    grant(b, &s, 0);
    assert_true(s.n >= 1 && s.n <= 3);
    for (size_t i = 0; i < s.n; i++)
        assert_true(s.at[i] <= HORIZON);
    budget_destroy(&b);
}

/* A rejoin (HELLO again) resets the account and returns the permits, and
 * the slot's generation changes so stale leases do not match. */
/* With one permit between two greedy workers (16 slots allocated, two
 * used), they take turns: each gets half the grants, not the first one
 * fifteen in sixteen. */
static void test_scarce_permits_are_shared_in_turns(void **state)
{
    (void)state;
    budget *b = new_budget(0, S, 1);
    budget_worker *w1 = budget_join(b, "w1", 2, 0);
    budget_worker *w2 = budget_join(b, "w2", 2, 0);
    sent s = {0};
    int got1 = 0, got2 = 0;
    for (int round = 0; round < 100; round++) {
        budget_request(b, w1, 8, w1->granted, w1->permits);
        budget_request(b, w2, 8, w2->granted, w2->permits);
        assert_int_equal(grant(b, &s, round * MS), 1);
        got1 += s.to == w1;
        got2 += s.to == w2;
    }
    assert_int_equal(got1, 50);
    assert_int_equal(got2, 50);
    budget_destroy(&b);
}

/* Budget pause: an operator's hold stops grants until it is lifted. */
static void test_operator_hold_stops_grants(void **state)
{
    (void)state;
    budget *b = new_budget(0, S, 0);
    budget_worker *w = budget_join(b, "w1", 2, 0);
    sent s = {0};
    budget_hold(b, 1);
    budget_request(b, w, 5, 0, 0);
    assert_int_equal(grant(b, &s, 0), 0);
    assert_true(budget_next_wake(b, 0) == INT64_MAX);
    budget_hold(b, 0);
    assert_int_equal(grant(b, &s, MS), 5);
    budget_destroy(&b);
}

static void test_rejoin_resets_the_account(void **state)
{
    (void)state;
    budget *b = new_budget(0, 0, 5);
    budget_worker *w = budget_join(b, "w", 1, 0);
    uint32_t gen = w->gen;
    sent s = {0};
    budget_request(b, w, 4, 0, 0);
    assert_int_equal(grant(b, &s, 0), 4);
    w = budget_join(b, "w", 1, MS);
    assert_int_equal(budget_permits_in_use(b), 0);
    assert_int_equal(w->granted, 0);
    assert_true(w->gen != gen);
    budget_destroy(&b);
}

/* The clock exchange: a worker 50 ms away each way whose clock runs 3 s
 * ahead. The best of the samples (the least queueing) wins; a sample that
 * does not add up is ignored. */
static void test_clock_sample_takes_the_shortest_round_trip(void **state)
{
    (void)state;
    budget *b = new_budget(20, S, 0);
    budget_worker *w = budget_join(b, "w1", 2, 0);
    assert_int_equal(w->rtt_us, -1);
    assert_int_equal(w->one_way_ns, 0);
    const int64_t ahead = 3000000, d = 50000; /* us */
    int64_t queueing[] = {30000, 0, 12000, 70000};
    for (int i = 0; i < 4; i++) {
        int64_t t1 = 1000000000 + i * INT64_C(1000000); /* our HB sent */
        int64_t t2 = t1 + d + ahead;                    /* worker got it */
        int64_t held = 400000;                          /* it kept it */
        int64_t t3 = t2 + held;                         /* its HB sent */
        int64_t t4 = t3 - ahead + d + queueing[i];      /* we got it */
        budget_clock_sample(w, (uint64_t)t3, (uint64_t)t1, (uint64_t)held, t4);
    }
    assert_int_equal(w->rtt_us, 2 * d);
    assert_int_equal(w->offset_us, ahead);
    assert_int_equal(w->one_way_ns, d * 1000);
    /* Echo of a heartbeat "from the future": no sample. */
    budget_clock_sample(w, 5, 10000000000, 0, 1000);
    budget_clock_sample(w, 0, 0, 0, 1000);
    assert_int_equal(w->nclock, 4);
    budget_destroy(&b);
}

/* Two workers, one next door and one 50 ms away, share a strict 20/s:
 * the spend times the workers see (the far one hears of its grants 50 ms
 * late) are still spaced by the rate, and the far worker gets its share. */
static void test_far_worker_spends_on_the_limiter_schedule(void **state)
{
    (void)state;
    budget *b = new_budget(20, S, 0);
    budget_worker *near = budget_join(b, "w1", 2, 0);
    budget_worker *far = budget_join(b, "w2", 2, 0);
    far->one_way_ns = 50 * MS;
    sent s = {0};
    size_t to_far = 0;
    for (int64_t now = 0; now < 5 * S; now += 10 * MS) {
        budget_request(b, near, 1000, near->granted, 0);
        budget_request(b, far, 1000, far->granted, 0);
        size_t before = s.n;
        grant(b, &s, now);
        if (s.n > before && s.to == far)
            to_far += s.n - before;
    }
    assert_true(s.n >= 90);
    assert_true(far->granted >= s.n / 3);
    /* Sorted spend times: never two within the emission interval. */
    for (size_t i = 1; i < s.n; i++)
        for (size_t j = i; j > 0 && s.at[j] < s.at[j - 1]; j--) {
            int64_t t = s.at[j];
            s.at[j] = s.at[j - 1];
            s.at[j - 1] = t;
        }
    for (size_t i = 1; i < s.n; i++)
        assert_true(s.at[i] - s.at[i - 1] >= 50 * MS - 1000);
    (void)to_far;
    budget_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grants_never_exceed_the_rate),
        cmocka_unit_test(test_request_crossing_a_grant_does_not_double_grant),
        cmocka_unit_test(test_permits_cap_in_flight_and_come_back),
        cmocka_unit_test(test_pause_stops_every_grant_until_it_ends),
        cmocka_unit_test(test_no_token_beyond_the_horizon),
        cmocka_unit_test(test_rejoin_resets_the_account),
        cmocka_unit_test(test_scarce_permits_are_shared_in_turns),
        cmocka_unit_test(test_operator_hold_stops_grants),
        cmocka_unit_test(test_clock_sample_takes_the_shortest_round_trip),
        cmocka_unit_test(test_far_worker_spends_on_the_limiter_schedule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
