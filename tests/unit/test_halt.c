/* test_halt.c - when a job that cannot succeed stops (--halt-after,
 * --halt-on-repeat). */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "halt.h"

static int due(halt_cfg h, int64_t ok, int64_t failed, uint64_t run,
               uint32_t status, char *why)
{
    store_totals t;
    memset(&t, 0, sizeof t);
    t.ok = ok;
    t.failed = failed;
    t.items = ok + failed;
    return halt_due(&h, &t, run, status, why, 200);
}

static void test_off_by_default(void **state)
{
    (void)state;
    char why[200] = "";
    assert_int_equal(due((halt_cfg){0, 0, 0}, 0, 1000000, 1000000, 401, why),
                     0);
    assert_string_equal(why, "");
}

static void test_after_n_failed(void **state)
{
    (void)state;
    char why[200];
    assert_int_equal(due((halt_cfg){10, 0, 0}, 500, 9, 0, 0, why), 0);
    assert_int_equal(due((halt_cfg){10, 0, 0}, 500, 10, 0, 0, why), 1);
    assert_non_null(strstr(why, "10 items failed (--halt-after 10)"));
}

static void test_after_a_share_once_enough_are_recorded(void **state)
{
    (void)state;
    char why[200];
    /* 100% failed, but too few recorded to judge. */
    assert_int_equal(
        due((halt_cfg){0, 20, 0}, 0, HALT_MIN_RECORDED - 1, 0, 0, why), 0);
    assert_int_equal(due((halt_cfg){0, 20, 0}, 81, 19, 0, 0, why), 0);
    assert_int_equal(due((halt_cfg){0, 20, 0}, 80, 20, 0, 0, why), 1);
    assert_non_null(strstr(why, "20 of 100 recorded items failed"));
}

static void test_on_repeat_names_the_status(void **state)
{
    (void)state;
    char why[200];
    assert_int_equal(due((halt_cfg){0, 0, 5}, 100, 4, 4, 401, why), 0);
    assert_int_equal(due((halt_cfg){0, 0, 5}, 100, 5, 5, 401, why), 1);
    assert_non_null(strstr(why, "5 items in a row failed with HTTP 401"));
    assert_int_equal(due((halt_cfg){0, 0, 5}, 100, 5, 5, 0, why), 1);
    assert_non_null(strstr(why, "without an answer"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_by_default),
        cmocka_unit_test(test_after_n_failed),
        cmocka_unit_test(test_after_a_share_once_enough_are_recorded),
        cmocka_unit_test(test_on_repeat_names_the_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
