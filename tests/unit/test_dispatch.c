/* test_dispatch.c - a worker's credit in items and in bytes
 * (--max-window-bytes, docs/internals/window.md). The sender has no socket:
 * its sends fail and are counted, which dispatch does not look at. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batches.h"
#include "budget.h"
#include "dispatch.h"
#include "gcra.h"
#include "sender.h"
#include "unit_assert.h"
#include "util.h"

typedef struct fixture {
    budget *bud;   /* the workers */
    batches bt;    /* the items */
    sender snd;    /* a sender without a socket */
    dispatcher dp; /* the module under test */
} fixture;

static int setup(void **state)
{
    fixture *f = xcalloc(1, sizeof *f);
    f->bud = budget_new(gcra_new(), 0, INT64_C(1000000000));
    batches_init(&f->bt, 7, 0);
    sender_init(&f->snd, NULL, 1);
    dispatch_init(&f->dp, &f->bt, f->bud, &f->snd, 5000, 1000, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    batches_fini(&f->bt);
    sender_fini(&f->snd);
    budget_destroy(&f->bud);
    free(f);
    return 0;
}

/* n pending items in one batch, each of `bytes` request bytes (a 10-byte
 * URL and the rest as body), queued for dispatch. */
static void add_items(fixture *f, uint32_t n, size_t bytes)
{
    for (uint32_t i = 0; i < n; i++) {
        proto_ref ref;
        mitem *it = batches_append(&f->bt, i + 1, &ref);
        char k[32];
        snprintf(k, sizeof k, "id%u", i);
        it->key = xstrdup(k);
        it->url = xstrdup("http://h/x");
        it->body_len = bytes - 10;
        it->body = xcalloc(1, it->body_len + 1);
        memset(it->body, 'b', it->body_len);
        it->state = MI_PENDING;
    }
    uint32_t from;
    mbatch *mb = batches_close(&f->bt, &from);
    assert_non_null(mb);
    batches_enqueue(&f->bt, mb, from);
}

static budget_worker *join(fixture *f, const char *name, uint32_t conc)
{
    budget_worker *w = budget_join(f->bud, name, strlen(name), 0);
    assert_non_null(w);
    w->concurrency = conc;
    return w;
}

/* Without a byte cap a worker holds 2 items per unit of concurrency. */
static void test_item_credit_alone(void **state)
{
    fixture *f = *state;
    add_items(f, 10, 100);
    budget_worker *w = join(f, "a", 2);
    dispatch_run(&f->dp, 0);
    assert_int_equal(w->assigned, 4);
    assert_int_equal(w->assigned_bytes, 400);
    assert_int_equal(dispatch_credit(&f->dp, w), 0);
}

/* Past its concurrency, a worker gets more only under its share of half
 * the window: 400 x 2 / (2 x 2) = 200 bytes, so 2 items of 100, not 4. */
static void test_bytes_bound_the_queue_past_concurrency(void **state)
{
    fixture *f = *state;
    f->dp.window_bytes = 400;
    add_items(f, 10, 100);
    budget_worker *w = join(f, "a", 2);
    dispatch_run(&f->dp, 0);
    assert_int_equal(w->assigned, 2);
    assert_int_equal(w->assigned_bytes, 200);
    assert_int_equal(dispatch_credit(&f->dp, w), 0);
    assert_false(dispatch_ready(&f->dp, 0));
    /* A result gives the bytes back, and the next item goes out. */
    mitem *it = batches_item(&f->bt, (proto_ref){0, 0});
    dispatch_done(&f->dp, it);
    assert_int_equal(w->assigned_bytes, 100);
    assert_true(dispatch_ready(&f->dp, 0));
    dispatch_run(&f->dp, 0);
    assert_int_equal(w->assigned, 2);
    assert_int_equal(w->assigned_bytes, 200);
}

/* The calls a worker runs are always fed: items larger than the whole
 * window still go out, one per unit of concurrency. */
static void test_items_larger_than_the_window_still_go_out(void **state)
{
    fixture *f = *state;
    f->dp.window_bytes = 64;
    add_items(f, 4, 1000);
    budget_worker *w = join(f, "a", 2);
    dispatch_run(&f->dp, 0);
    assert_int_equal(w->assigned, 2);
    assert_int_equal(w->assigned_bytes, 2000);
    /* A lease that runs out gives its bytes back too. */
    assert_int_equal(dispatch_requeue(&f->dp, (proto_ref){0, 1}), 1);
    assert_int_equal(w->assigned, 1);
    assert_int_equal(w->assigned_bytes, 1000);
}

/* Shares follow concurrency: with an 1,800-byte window and workers of 2
 * and 4, shares are 300 and 600 bytes, so 3 and 6 items of 100 bytes,
 * where the item credit alone gives 4 and 8. */
static void test_shares_follow_concurrency(void **state)
{
    fixture *f = *state;
    f->dp.window_bytes = 1800;
    add_items(f, 20, 100);
    budget_worker *a = join(f, "a", 2);
    budget_worker *b = join(f, "b", 4);
    dispatch_run(&f->dp, 0);
    assert_int_equal(a->assigned, 3);
    assert_int_equal(a->assigned_bytes, 300);
    assert_int_equal(b->assigned, 6);
    assert_int_equal(b->assigned_bytes, 600);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_item_credit_alone, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_bytes_bound_the_queue_past_concurrency, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_items_larger_than_the_window_still_go_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shares_follow_concurrency, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
