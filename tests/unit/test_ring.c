/* test_ring.c - the growable FIFO shared by master and worker. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ring.h"

static void test_fifo_order_across_growth_and_wrap(void **state)
{
    (void)state;
    ring r;
    ring_init(&r, sizeof(int64_t));
    int64_t next_in = 0, next_out = 0;
    /* Interleave pushes and pops so the head wraps before each growth. */
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 37; i++)
            *(int64_t *)ring_push(&r) = next_in++;
        for (int i = 0; i < 29; i++) {
            assert_int_equal(*(int64_t *)ring_at(&r, 0), next_out);
            ring_pop(&r);
            next_out++;
        }
        for (size_t i = 0; i < r.len; i++)
            assert_int_equal(*(int64_t *)ring_at(&r, i), next_out + (int64_t)i);
    }
    assert_int_equal(r.len, (size_t)(next_in - next_out));
    ring_fini(&r);
    ring_fini(&r);
}

static void test_push_returns_a_zeroed_slot(void **state)
{
    (void)state;
    ring r;
    ring_init(&r, 3 * sizeof(int));
    int *a = ring_push(&r);
    a[0] = a[1] = a[2] = 7;
    ring_pop(&r);
    int *b = ring_push(&r);
    assert_int_equal(b[0] + b[1] + b[2], 0);
    ring_clear(&r);
    assert_int_equal(r.len, 0);
    ring_fini(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_order_across_growth_and_wrap),
        cmocka_unit_test(test_push_returns_a_zeroed_slot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
