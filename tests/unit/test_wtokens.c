/* test_wtokens.c - the worker's token ledger (worker/wtokens.h), driven by
 * a fake clock: every call takes "now" as an argument. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "clock.h"
#include "wtokens.h"

#define MS FO_NS_PER_MS
#define T0 (INT64_C(1000) * FO_NS_PER_S) /* the fake clock's start */
#define SLACK (5 * MS)

static int setup(void **state)
{
    wtokens *t = test_malloc(sizeof *t);
    wtokens_init(t);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    wtokens *t = *state;
    wtokens_fini(t);
    wtokens_fini(t); /* safe twice */
    test_free(t);
    return 0;
}

static void test_grants_are_enqueued_in_order(void **state)
{
    wtokens *t = *state;
    static const uint32_t a[] = {0, 1000, 2000};
    static const uint32_t b[] = {3000, 4000};
    wtokens_grant(t, T0, a, 3);
    wtokens_grant(t, T0, b, 2);
    assert_int_equal(wtokens_held(t), 5);
    assert_int_equal(t->seen, 5);
    for (int i = 0; i < 5; i++) {
        int64_t due = T0 + i * MS;
        assert_int_equal(wtokens_next_due(t), due);
        assert_int_equal(wtokens_next(t, due, SLACK, 1), WTOKENS_SPEND);
    }
    assert_int_equal(wtokens_next_due(t), INT64_MAX);
}

static void test_token_not_due_is_kept(void **state)
{
    wtokens *t = *state;
    static const uint32_t a[] = {10000};
    wtokens_grant(t, T0, a, 1);
    assert_int_equal(wtokens_next(t, T0 + 9 * MS, SLACK, 1), WTOKENS_NONE);
    assert_int_equal(wtokens_held(t), 1);
    assert_int_equal(t->released, 0);
}

static void test_token_within_slack_is_spent(void **state)
{
    wtokens *t = *state;
    static const uint32_t a[] = {0};
    wtokens_grant(t, T0, a, 1);
    assert_int_equal(wtokens_next(t, T0 + SLACK, SLACK, 1), WTOKENS_SPEND);
    assert_int_equal(t->released, 0);
    assert_int_equal(t->n_dropped, 0);
}

static void test_late_token_is_dropped_not_saved_into_a_burst(void **state)
{
    wtokens *t = *state;
    /* Three tokens 1 ms apart; the loop wakes 20 ms late. */
    static const uint32_t a[] = {0, 1000, 2000};
    wtokens_grant(t, T0, a, 3);
    int64_t now = T0 + 20 * MS;
    int spent = 0;
    wtokens_action act;
    while ((act = wtokens_next(t, now, SLACK, 1)) != WTOKENS_NONE)
        spent += act == WTOKENS_SPEND;
    assert_int_equal(spent, 0);
    assert_int_equal(wtokens_held(t), 0);
    assert_int_equal(t->released, 3);
    assert_int_equal(t->n_dropped, 3);
}

static void test_lateness_does_not_matter_without_a_rate_limit(void **state)
{
    wtokens *t = *state;
    static const uint32_t a[] = {0};
    wtokens_grant(t, T0, a, 1);
    assert_int_equal(wtokens_next(t, T0 + 60 * FO_NS_PER_S, INT64_MAX, 1),
                     WTOKENS_SPEND);
}

static void test_token_that_cannot_start_is_dropped(void **state)
{
    wtokens *t = *state;
    static const uint32_t a[] = {0};
    wtokens_grant(t, T0, a, 1);
    assert_int_equal(wtokens_next(t, T0, SLACK, 0), WTOKENS_DROP);
    assert_int_equal(t->released, 1);
    assert_int_equal(wtokens_held(t), 0);
}

static void test_drop_all_releases_every_token(void **state)
{
    wtokens *t = *state;
    static const uint32_t a[] = {0, 1000, 2000, 3000};
    wtokens_grant(t, T0, a, 4);
    wtokens_drop_all(t);
    assert_int_equal(wtokens_held(t), 0);
    assert_int_equal(t->released, 4);
    assert_int_equal(t->n_dropped, 4);
}

static void test_request_is_capped_by_free_concurrency(void **state)
{
    wtokens *t = *state;
    wtokens_req r;
    assert_int_equal(wtokens_request(t, 4, 10, &r), 1);
    assert_int_equal(r.want, 4);
}

static void test_request_is_capped_by_ready_items(void **state)
{
    wtokens *t = *state;
    wtokens_req r;
    assert_int_equal(wtokens_request(t, 16, 3, &r), 1);
    assert_int_equal(r.want, 3);
}

static void test_request_subtracts_tokens_held(void **state)
{
    wtokens *t = *state;
    static const uint32_t a[] = {0, 1000};
    wtokens_grant(t, T0, a, 2);
    wtokens_req r;
    assert_int_equal(wtokens_request(t, 16, 5, &r), 1);
    assert_int_equal(r.want, 3);
    assert_int_equal(r.seen, 2);
}

static void test_request_never_negative(void **state)
{
    wtokens *t = *state;
    static const uint32_t a[] = {0, 1000, 2000};
    wtokens_grant(t, T0, a, 3);
    wtokens_req r;
    /* Nothing ready, three tokens held: want 0, which the master already
     * expects after the grant (last want 0 - 3 seen = -3 != 0), so it is
     * said once. */
    assert_int_equal(wtokens_request(t, 16, 0, &r), 1);
    assert_int_equal(r.want, 0);
    assert_int_equal(wtokens_request(t, 16, 0, &r), 0);
}

static void test_unchanged_want_is_not_sent_again(void **state)
{
    wtokens *t = *state;
    wtokens_req r;
    assert_int_equal(wtokens_request(t, 8, 8, &r), 1);
    assert_int_equal(wtokens_request(t, 8, 8, &r), 0);
}

static void test_request_crossing_a_grant_does_not_double_count(void **state)
{
    wtokens *t = *state;
    wtokens_req r;
    assert_int_equal(wtokens_request(t, 5, 5, &r), 1);
    assert_int_equal(r.want, 5);
    assert_int_equal(r.seen, 0);
    /* The master grants 3 of the 5; the worker still wants 5 in all. The
     * 2 outstanding are what the master already expects: no request. */
    static const uint32_t a[] = {0, 1000, 2000};
    wtokens_grant(t, T0, a, 3);
    assert_int_equal(wtokens_request(t, 5, 5, &r), 0);
    /* The rest arrives: still nothing to ask. */
    static const uint32_t b[] = {3000, 4000};
    wtokens_grant(t, T0, b, 2);
    assert_int_equal(wtokens_request(t, 5, 5, &r), 0);
}

static void test_request_reports_seen_so_master_subtracts_grants(void **state)
{
    wtokens *t = *state;
    wtokens_req r;
    assert_int_equal(wtokens_request(t, 5, 5, &r), 1);
    static const uint32_t a[] = {0, 1000};
    wtokens_grant(t, T0, a, 2);
    /* Two more items became ready: want 7 - 2 held = 5, seen 2. */
    assert_int_equal(wtokens_request(t, 7, 7, &r), 1);
    assert_int_equal(r.want, 5);
    assert_int_equal(r.seen, 2);
}

static void test_released_permits_are_reported_once(void **state)
{
    wtokens *t = *state;
    wtokens_req r;
    assert_int_equal(wtokens_request(t, 4, 4, &r), 1);
    wtokens_release(t, 2);
    assert_int_equal(wtokens_request(t, 4, 4, &r), 1);
    assert_int_equal(r.released, 2);
    assert_int_equal(wtokens_request(t, 4, 4, &r), 0);
}

static void test_reset_starts_a_new_account(void **state)
{
    wtokens *t = *state;
    static const uint32_t a[] = {0, 1000};
    wtokens_grant(t, T0, a, 2);
    wtokens_release(t, 1);
    uint32_t before = wtokens_account(t);
    wtokens_reset(t);
    assert_int_equal(wtokens_account(t), before + 1);
    assert_int_equal(wtokens_held(t), 0);
    assert_int_equal(t->seen, 0);
    assert_int_equal(t->released, 0);
    wtokens_req r;
    assert_int_equal(wtokens_request(t, 3, 3, &r), 1);
    assert_int_equal(r.want, 3);
    assert_int_equal(r.seen, 0);
}

static void test_lateness_is_measured_against_the_fastest_grant(void **state)
{
    wtokens *t = *state;
    int64_t wall = INT64_C(1700000000000000);
    /* Unstamped grants are never late. */
    assert_int_equal(wtokens_lateness_ns(t, 0, wall), 0);
    /* Usual delay 300 us (offset included); one grant arrives 2 ms late. */
    assert_int_equal(wtokens_lateness_ns(t, (uint64_t)(wall - 300), wall), 0);
    assert_int_equal(wtokens_lateness_ns(t, (uint64_t)(wall - 400), wall),
                     100 * 1000);
    assert_int_equal(wtokens_lateness_ns(t, (uint64_t)(wall - 2300), wall),
                     2000 * 1000);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_grants_are_enqueued_in_order),
        T(test_token_not_due_is_kept),
        T(test_token_within_slack_is_spent),
        T(test_late_token_is_dropped_not_saved_into_a_burst),
        T(test_lateness_does_not_matter_without_a_rate_limit),
        T(test_token_that_cannot_start_is_dropped),
        T(test_drop_all_releases_every_token),
        T(test_request_is_capped_by_free_concurrency),
        T(test_request_is_capped_by_ready_items),
        T(test_request_subtracts_tokens_held),
        T(test_request_never_negative),
        T(test_unchanged_want_is_not_sent_again),
        T(test_request_crossing_a_grant_does_not_double_count),
        T(test_request_reports_seen_so_master_subtracts_grants),
        T(test_released_permits_are_reported_once),
        T(test_reset_starts_a_new_account),
        T(test_lateness_is_measured_against_the_fastest_grant),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
