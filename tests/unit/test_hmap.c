/* test_hmap.c - the string-keyed map behind the master's id indexes. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "hmap.h"

typedef struct ref {
    uint64_t batch;
    uint32_t idx;
} ref;

static void test_values_are_stored_whole_not_packed(void **state)
{
    (void)state;
    hmap h;
    hmap_init(&h, sizeof(ref));
    /* An index past 2^20 and a batch past 2^44: the old JSON packing lost
     * both. */
    ref r = {(uint64_t)1 << 50, 3u << 20};
    hmap_put(&h, "fo-1", 4, &r);
    ref *got = hmap_get(&h, "fo-1", 4);
    assert_non_null(got);
    assert_true(got->batch == r.batch);
    assert_int_equal(got->idx, r.idx);
    assert_null(hmap_get(&h, "fo-2", 4));
    hmap_fini(&h);
}

static void test_put_replaces_and_del_removes(void **state)
{
    (void)state;
    hmap h;
    hmap_init(&h, sizeof(int));
    int a = 1, b = 2;
    hmap_put(&h, "k", 1, &a);
    hmap_put(&h, "k", 1, &b);
    assert_int_equal(hmap_len(&h), 1);
    assert_int_equal(*(int *)hmap_get(&h, "k", 1), 2);
    assert_int_equal(hmap_del(&h, "k", 1), 1);
    assert_int_equal(hmap_del(&h, "k", 1), 0);
    assert_null(hmap_get(&h, "k", 1));
    hmap_fini(&h);
    hmap_fini(&h);
}

/* Many inserts and deletes in a moving window, as a long job does: every
 * live key stays findable through growth, shrinking and backward shifts,
 * and the table's size follows the live keys, not the keys ever seen. */
static void test_moving_window_keeps_every_live_key(void **state)
{
    (void)state;
    hmap h;
    hmap_init(&h, sizeof(int));
    char k[32];
    const int window = 500, total = 200000;
    for (int i = 0; i < total; i++) {
        int n = snprintf(k, sizeof k, "fo-%d", i);
        hmap_put(&h, k, (size_t)n, &i);
        if (i >= window) {
            n = snprintf(k, sizeof k, "fo-%d", i - window);
            assert_int_equal(hmap_del(&h, k, (size_t)n), 1);
        }
        if (i % 9973 == 0)
            for (int j = i > window ? i - window + 1 : 0; j <= i; j++) {
                n = snprintf(k, sizeof k, "fo-%d", j);
                int *v = hmap_get(&h, k, (size_t)n);
                assert_non_null(v);
                assert_int_equal(*v, j);
            }
    }
    assert_int_equal(hmap_len(&h), window);
    assert_true(h.cap <= 4096);
    for (int i = total - window; i < total; i++) {
        int n = snprintf(k, sizeof k, "fo-%d", i);
        assert_int_equal(hmap_del(&h, k, (size_t)n), 1);
    }
    assert_int_equal(hmap_len(&h), 0);
    assert_true(h.cap <= 32);
    hmap_fini(&h);
}

static void test_keys_may_hold_any_bytes(void **state)
{
    (void)state;
    hmap h;
    hmap_init(&h, sizeof(int));
    int a = 7;
    hmap_put(&h, "a\0b", 3, &a);
    assert_null(hmap_get(&h, "a", 1));
    assert_non_null(hmap_get(&h, "a\0b", 3));
    hmap_fini(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_are_stored_whole_not_packed),
        cmocka_unit_test(test_put_replaces_and_del_removes),
        cmocka_unit_test(test_moving_window_keeps_every_live_key),
        cmocka_unit_test(test_keys_may_hold_any_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
