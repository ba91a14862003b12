/* test_store.c - the cursor's input hash and the marks the store keeps
 * where the cursor has been (what a resumed stdin is checked against), on
 * a real state store in a temporary directory. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "unit_assert.h"
#include "util.h"

typedef struct fixture {
    char dir[64];  /* the --out directory */
    store *st;     /* its state store */
    char err[600]; /* error text */
} fixture;

static void open_store(fixture *f)
{
    assert_fo(FO_OK,
              store_open(f->dir, "{\"job\":1}", &f->st, f->err, sizeof f->err));
}

static int setup(void **state)
{
    fixture *f = xcalloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/fanout-test-store-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    open_store(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    store_close(&f->st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

/* Moves the cursor to batch b (10 lines of 100 bytes each) with hash h. */
static void move_cursor(fixture *f, uint64_t b, uint64_t h)
{
    store_state st = *store_get_state(f->st);
    st.cursor = (store_cursor){(int64_t)b * 1000, (int64_t)b * 10 + 1, b, h};
    assert_fo(FO_OK, store_commit(f->st, NULL, 0, NULL, 0, &st, f->err,
                                  sizeof f->err));
}

static void test_the_cursor_hash_survives_a_restart(void **state)
{
    fixture *f = *state;
    move_cursor(f, 3, 0xfeedface12345678ULL);
    store_close(&f->st);
    open_store(f);
    assert_true(store_get_state(f->st)->cursor.hash == 0xfeedface12345678ULL);
    size_t n;
    const store_mark *m = store_input_marks(f->st, &n);
    assert_int_equal(n, 1);
    assert_int_equal(m[0].offset, 3000);
    assert_int_equal(m[0].line_no, 31);
    assert_true(m[0].hash == 0xfeedface12345678ULL);
}

static void test_marks_thin_out_evenly_and_keep_the_latest(void **state)
{
    fixture *f = *state;
    for (uint64_t b = 1; b <= 1000; b++)
        move_cursor(f, b, b * 7919);
    size_t n;
    const store_mark *m = store_input_marks(f->st, &n);
    assert_true(n >= STORE_MAX_MARKS / 4 && n <= STORE_MAX_MARKS);
    assert_int_equal(m[0].offset, 1000); /* the first stays */
    /* Spread over the whole input: no gap (nor the rest after the last
     * mark) wider than 1/8 of it. */
    for (size_t i = 1; i < n; i++) {
        assert_true(m[i].offset > m[i - 1].offset);
        assert_true(m[i].offset - m[i - 1].offset <= 1000 * 1000 / 8);
        assert_true(m[i].hash == (uint64_t)m[i].offset / 1000 * 7919);
    }
    assert_true(1000 * 1000 - m[n - 1].offset <= 1000 * 1000 / 8);
    store_mark kept[STORE_MAX_MARKS]; /* m is the store's, gone on close */
    memcpy(kept, m, n * sizeof *m);
    store_close(&f->st);
    open_store(f);
    size_t n2;
    const store_mark *m2 = store_input_marks(f->st, &n2);
    assert_int_equal(n2, n);
    assert_memory_equal(m2, kept, n * sizeof *m);
    assert_true(store_get_state(f->st)->cursor.hash == 1000 * 7919);
}

static void test_an_unknown_hash_adds_no_mark(void **state)
{
    fixture *f = *state;
    move_cursor(f, 1, 11);
    move_cursor(f, 2, 0); /* a queue, or an old store's file */
    size_t n;
    store_input_marks(f->st, &n);
    assert_int_equal(n, 1);
}

static void test_a_cursor_moved_back_drops_the_marks_past_it(void **state)
{
    fixture *f = *state;
    for (uint64_t b = 1; b <= 5; b++)
        move_cursor(f, b, b);
    move_cursor(f, 0, 0); /* a repair starts over */
    move_cursor(f, 2, 2);
    size_t n;
    const store_mark *m = store_input_marks(f->st, &n);
    assert_int_equal(n, 2);
    assert_int_equal(m[1].offset, 2000);
}

static void test_a_symlinked_state_db_is_not_followed(void **state)
{
    (void)state;
    char dir[64], path[128], target[128], err[600];
    snprintf(dir, sizeof dir, "/tmp/fanout-test-store-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/state.db", dir);
    snprintf(target, sizeof target, "%s/elsewhere.db", dir);
    assert_int_equal(symlink(target, path), 0);
    store *st = NULL;
    assert_fo(FO_ESTORE, store_open(dir, "{\"job\":1}", &st, err, sizeof err));
    assert_null(st);
    assert_int_equal(access(target, F_OK), -1);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_the_cursor_hash_survives_a_restart,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_marks_thin_out_evenly_and_keep_the_latest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_unknown_hash_adds_no_mark,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_cursor_moved_back_drops_the_marks_past_it, setup, teardown),
        cmocka_unit_test(test_a_symlinked_state_db_is_not_followed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
