/* test_outfull.c - riding out a full --out disk (master/outfull.h): one
 * episode per run of failures, a doubling capped backoff, and the time
 * the episode lasted. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>

#include "outfull.h"

#define MS INT64_C(1000000)

static void test_only_space_errors_are_full(void **state)
{
    (void)state;
    assert_true(outfull_errno_is_full(ENOSPC));
    assert_true(outfull_errno_is_full(EDQUOT));
    assert_false(outfull_errno_is_full(EIO));
    assert_false(outfull_errno_is_full(EBADF));
    assert_false(outfull_errno_is_full(0));
}

static void test_one_episode_with_a_doubling_capped_backoff(void **state)
{
    (void)state;
    outfull f = {0};
    int64_t t = 1000 * MS;
    assert_true(outfull_may_try(&f, t));
    assert_true(outfull_failed(&f, t)); /* begins an episode: logged */
    assert_true(f.active);
    assert_false(outfull_may_try(&f, t + 99 * MS));
    assert_true(outfull_may_try(&f, t + 100 * MS));
    int64_t want = 100 * MS;
    for (int i = 0; i < 10; i++) {
        t = f.next_try_ns;
        assert_false(outfull_failed(&f, t)); /* the same episode */
        want = want * 2 > OUTFULL_MAX_NS ? OUTFULL_MAX_NS : want * 2;
        assert_int_equal(f.next_try_ns - t, want);
    }
    assert_int_equal(f.delay_ns, OUTFULL_MAX_NS);
    assert_int_equal(f.episodes, 1);
    assert_int_equal(f.failures, 11);
    assert_true(outfull_ok(&f, t + 7 * MS)); /* ends it: logged */
    assert_false(f.active);
    assert_int_equal(outfull_episode_ns(&f, t + 50 * MS),
                     t + 7 * MS - 1000 * MS);
    assert_false(outfull_ok(&f, t + 8 * MS)); /* nothing to end */
    assert_true(outfull_may_try(&f, t + 8 * MS));
}

static void test_a_new_episode_starts_from_the_first_delay(void **state)
{
    (void)state;
    outfull f = {0};
    outfull_failed(&f, 0);
    outfull_failed(&f, 100 * MS);
    outfull_ok(&f, 400 * MS);
    assert_true(outfull_failed(&f, 900 * MS));
    assert_int_equal(f.next_try_ns, 1000 * MS);
    assert_int_equal(f.episodes, 2);
    assert_int_equal(f.stalled_ns, 400 * MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_only_space_errors_are_full),
        cmocka_unit_test(test_one_episode_with_a_doubling_capped_backoff),
        cmocka_unit_test(test_a_new_episode_starts_from_the_first_delay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
