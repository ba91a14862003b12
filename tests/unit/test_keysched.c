/* test_keysched.c - the keyed scheduler (per-key limits), fake clock. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "keysched.h"
#include "unit_assert.h"

#define MS INT64_C(1000000)
#define S (1000 * MS)

static keysched *new_ks(int64_t per_s, int64_t mif)
{
    keysched *ks = keysched_new();
    if (per_s) {
        gcra_rate r = {.count = per_s, .period_ns = S};
        assert_fo(FO_OK, keysched_set_rates(ks, &r, 1, 0));
    }
    keysched_set_max_in_flight(ks, mif);
    return ks;
}

static void push(keysched *ks, const char *key, uint32_t idx, int64_t nb)
{
    keysched_push(ks, key, strlen(key), (proto_ref){1, idx}, nb);
}

/* Takes what can be paid by now; returns how many, indices into got. */
static size_t drain(keysched *ks, int64_t now, gcra *g, uint32_t *got,
                    size_t max)
{
    size_t n = 0;
    proto_ref ref;
    int64_t at;
    while (n < max && keysched_next(ks, now, now, g, NULL, NULL, &ref, &at))
        got[n++] = ref.idx;
    return n;
}

/* A key out of tokens does not hold back another key's items. */
static void test_no_head_of_line(void **state)
{
    (void)state;
    keysched *ks = new_ks(5, 0);
    push(ks, "a", 0, 0);
    push(ks, "a", 1, 0);
    push(ks, "a", 2, 0);
    push(ks, "b", 3, 0);
    uint32_t got[8];
    size_t n = drain(ks, 0, NULL, got, 8);
    assert_int_equal(2, n); /* a's first, then b's: a must wait 200 ms */
    assert_int_equal(0, got[0]);
    assert_int_equal(3, got[1]);
    assert_int_equal(0, drain(ks, 199 * MS, NULL, got, 8));
    assert_int_equal(1, drain(ks, 200 * MS, NULL, got, 8));
    assert_int_equal(1, got[0]);
    keysched_destroy(&ks);
    assert_null(ks);
}

/* Each key gets exactly its rate when the global limit is loose. */
static void test_rate_per_key(void **state)
{
    (void)state;
    keysched *ks = new_ks(5, 0);
    for (uint32_t i = 0; i < 100; i++)
        push(ks, i % 2 ? "x" : "y", i, 0);
    uint32_t got[100];
    size_t total = 0;
    for (int64_t t = 0; t < 2 * S; t += 10 * MS)
        total += drain(ks, t, NULL, got, 100);
    assert_int_equal(20, total); /* 2 keys x 5/s x 2 s */
    keysched_destroy(&ks);
}

/* Under a binding global limit, keys share it evenly. */
static void test_global_shared_fairly(void **state)
{
    (void)state;
    keysched *ks = new_ks(5, 0);
    gcra *g = gcra_new();
    assert_fo(FO_OK, gcra_add(g, (gcra_rate){15, S}, 1, 0));
    const char *keys[] = {"t0", "t1", "t2", "t3"};
    for (uint32_t i = 0; i < 400; i++)
        push(ks, keys[i % 4], i, 0);
    size_t per[4] = {0};
    uint32_t got[100];
    for (int64_t t = 0; t < 4 * S; t += MS) {
        size_t n = drain(ks, t, g, got, 100);
        for (size_t i = 0; i < n; i++)
            per[got[i] % 4]++;
    }
    size_t sum = per[0] + per[1] + per[2] + per[3];
    assert_in_range(sum, 59, 61); /* 15/s x 4 s */
    for (int k = 0; k < 4; k++)
        assert_in_range(per[k], 14, 16);
    gcra_destroy(&g);
    keysched_destroy(&ks);
}

/* Keys due at once come out in the order they were queued, so a stream
 * of new keys never starves an old one (its batch could not be compacted
 * and the master's memory would grow with the backlog). */
static void test_fifo_across_keys(void **state)
{
    (void)state;
    keysched *ks = new_ks(5, 0);
    char key[16];
    proto_ref ref;
    int64_t at;
    push(ks, "old", 0, 0);
    for (uint32_t i = 1; i < 200; i++) {
        snprintf(key, sizeof key, "new%u", i);
        push(ks, key, i, (int64_t)i * MS);
        if (i % 2 == 0) { /* take one for every two queued */
            assert_true(keysched_next(ks, (int64_t)i * MS, (int64_t)i * MS,
                                      NULL, NULL, NULL, &ref, &at));
            assert_int_equal(i / 2 - 1, ref.idx);
        }
    }
    keysched_destroy(&ks);
}

/* A paused key waits; the others go on. */
static void test_pause_one_key(void **state)
{
    (void)state;
    keysched *ks = new_ks(0, 0);
    keysched_pause(ks, "p", 1, 1 * S);
    push(ks, "p", 0, 0);
    push(ks, "q", 1, 0);
    uint32_t got[4];
    assert_int_equal(1, drain(ks, 0, NULL, got, 4));
    assert_int_equal(1, got[0]);
    assert_int_equal(S, keysched_next_wake(ks));
    assert_int_equal(1, drain(ks, S, NULL, got, 4));
    assert_int_equal(0, got[0]);
    assert_int_equal(1, keysched_throttled_total(ks));
    keysched_destroy(&ks);
}

/* A retry's not-before holds its key until then. */
static void test_not_before(void **state)
{
    (void)state;
    keysched *ks = new_ks(0, 0);
    push(ks, "k", 0, 500 * MS);
    uint32_t got[4];
    assert_int_equal(0, drain(ks, 0, NULL, got, 4));
    assert_int_equal(1, drain(ks, 500 * MS, NULL, got, 4));
    keysched_destroy(&ks);
}

/* --key-max-in-flight: a key at its cap takes nothing until a release. */
static void test_in_flight_cap(void **state)
{
    (void)state;
    keysched *ks = new_ks(0, 1);
    push(ks, "k", 0, 0);
    push(ks, "k", 1, 0);
    push(ks, "m", 2, 0);
    uint32_t got[4];
    assert_int_equal(2, drain(ks, 0, NULL, got, 4));
    assert_int_equal(2, keysched_inflight(ks));
    assert_int_equal(INT64_MAX, keysched_next_wake(ks));
    keysched_release(ks, "k", 1);
    assert_int_equal(1, drain(ks, 0, NULL, got, 4));
    assert_int_equal(1, got[0]);
    keysched_destroy(&ks);
}

/* Idle keys are freed once their bucket refills: memory follows the
 * active keys, not the keys ever seen. */
static void test_idle_keys_expire(void **state)
{
    (void)state;
    keysched *ks = new_ks(5, 0);
    char key[32];
    uint32_t got[16];
    for (uint32_t i = 0; i < 10000; i++) {
        snprintf(key, sizeof key, "tenant-%u", i);
        push(ks, key, i, 0);
        assert_int_equal(1, drain(ks, i * MS, NULL, got, 16));
        keysched_release(ks, key, strlen(key));
        keysched_expire_idle(ks, i * MS);
    }
    /* Only keys whose 200 ms interval has not passed are still held. */
    assert_in_range(keysched_active(ks), 190, 210);
    /* A pause keeps its key past its refill. */
    keysched_pause(ks, "tenant-9999", 11, 30 * S);
    keysched_expire_idle(ks, 20 * S);
    assert_int_equal(1, keysched_active(ks));
    keysched_expire(ks, 20 * S);
    assert_int_equal(1, keysched_active(ks));
    keysched_expire(ks, 30 * S);
    assert_int_equal(0, keysched_active(ks));
    assert_int_equal(0, keysched_waiting(ks));
    keysched_destroy(&ks);
}

/* An item that is no longer pending is skipped, not paid for. */
static int only_odd(void *ctx, proto_ref ref)
{
    (void)ctx;
    return ref.idx % 2 == 1;
}

static void test_invalid_skipped(void **state)
{
    (void)state;
    keysched *ks = new_ks(5, 0);
    push(ks, "k", 0, 0);
    push(ks, "k", 1, 0);
    proto_ref ref;
    int64_t at;
    assert_int_equal(1,
                     keysched_next(ks, 0, 0, NULL, only_odd, NULL, &ref, &at));
    assert_int_equal(1, ref.idx);
    assert_int_equal(0, at);
    keysched_destroy(&ks);
}

/* Spend times come ahead within the horizon, spaced by the key's rate. */
static void test_horizon_times(void **state)
{
    (void)state;
    keysched *ks = new_ks(10, 0);
    for (uint32_t i = 0; i < 5; i++)
        push(ks, "k", i, 0);
    proto_ref ref;
    int64_t at, last = -1;
    size_t n = 0;
    while (keysched_next(ks, 0, 250 * MS, NULL, NULL, NULL, &ref, &at)) {
        if (last >= 0)
            assert_int_equal(100 * MS, at - last);
        last = at;
        n++;
    }
    assert_int_equal(3, n); /* 0, 100, 200 ms */
    keysched_destroy(&ks);
}

static void test_top_and_rates(void **state)
{
    (void)state;
    keysched *ks = new_ks(5, 0);
    for (uint32_t i = 0; i < 30; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%u", i % 12);
        push(ks, key, i, 0);
    }
    keysched_stat top[KEYSCHED_TOP_MAX];
    size_t n = keysched_top(ks, 0, top, 50);
    assert_int_equal(KEYSCHED_TOP_MAX, n);
    assert_int_equal(3, top[0].waiting);
    assert_int_equal(2, top[KEYSCHED_TOP_MAX - 1].waiting);
    gcra_rate r[2] = {{1, S}, {50, 60 * S}}, back[4];
    assert_fo(FO_OK, keysched_set_rates(ks, r, 2, 0));
    assert_int_equal(2, keysched_rates(ks, back, 4));
    assert_fo(FO_EINVAL, keysched_set_rates(ks, (gcra_rate[]){{0, S}}, 1, 0));
    assert_int_equal(2, keysched_rates(ks, back, 4));
    keysched_destroy(&ks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_head_of_line),
        cmocka_unit_test(test_rate_per_key),
        cmocka_unit_test(test_global_shared_fairly),
        cmocka_unit_test(test_fifo_across_keys),
        cmocka_unit_test(test_pause_one_key),
        cmocka_unit_test(test_not_before),
        cmocka_unit_test(test_in_flight_cap),
        cmocka_unit_test(test_idle_keys_expire),
        cmocka_unit_test(test_invalid_skipped),
        cmocka_unit_test(test_horizon_times),
        cmocka_unit_test(test_top_and_rates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
