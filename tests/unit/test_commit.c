/* test_commit.c - group commit, the cursor, and results.jsonl repair, on a
 * real state store in a temporary directory. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batches.h"
#include "commit.h"
#include "store.h"
#include "unit_assert.h"
#include "util.h"

#define MS INT64_C(1000000)

typedef struct fixture {
    char dir[64];  /* the --out directory */
    store *st;     /* its state store */
    batches bt;    /* open batches */
    commit cm;     /* the module under test */
    char err[600]; /* error text */
} fixture;

static void open_store(fixture *f)
{
    assert_fo(FO_OK,
              store_open(f->dir, "{\"job\":1}", &f->st, f->err, sizeof f->err));
    commit_init(&f->cm, f->st, f->dir, 0);
    assert_fo(FO_OK, commit_open_results(&f->cm, 0, 0, 1 << 20, f->err,
                                         sizeof f->err));
}

static int setup(void **state)
{
    fixture *f = xcalloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/fanout-test-commit-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    open_store(f);
    batches_init(&f->bt, 42, 0);
    *state = f;
    return 0;
}

static void close_store(fixture *f)
{
    commit_fini(&f->cm);
    store_close(&f->st);
}

static int teardown(void **state)
{
    fixture *f = *state;
    close_store(f);
    batches_fini(&f->bt);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

/* Reads a batch of n items (lines first_line..) into the open ring. */
static void read_batch(fixture *f, uint32_t n, int64_t first_line)
{
    for (uint32_t i = 0; i < n; i++) {
        proto_ref ref;
        mitem *it = batches_append(&f->bt, first_line + i, &ref);
        char k[32];
        snprintf(k, sizeof k, "id%lld", (long long)(first_line + i));
        it->key = xstrdup(k);
        f->bt.bld.end_offset = (first_line + i) * 10;
        f->bt.bld.next_line = first_line + i + 1;
        f->cm.outstanding++;
    }
    uint32_t from;
    assert_non_null(batches_close(&f->bt, &from));
}

static fo_err record(fixture *f, uint64_t batch, uint32_t idx, item_status st)
{
    char line[64];
    int n = snprintf(line, sizeof line, "{\"batch\":%llu,\"idx\":%u}\n",
                     (unsigned long long)batch, idx);
    char *copy = xstrdup(line);
    fo_err rc = commit_add(&f->cm, &f->bt, (proto_ref){batch, idx}, st, 1, 0,
                           copy, (size_t)n, 0);
    if (rc)
        free(copy);
    return rc;
}

static off_t file_size(const fixture *f)
{
    char p[128];
    snprintf(p, sizeof p, "%s/results.jsonl", f->dir);
    struct stat sb;
    return stat(p, &sb) == 0 ? sb.st_size : -1;
}

/* An item gets one record, whatever arrives twice. */
static void test_an_item_is_recorded_once(void **state)
{
    fixture *f = *state;
    read_batch(f, 2, 1);
    assert_fo(FO_OK, record(f, 0, 0, ITEM_OK));
    assert_fo(FO_EINVAL, record(f, 0, 0, ITEM_OK));
    assert_fo(FO_OK,
              commit_flush(&f->cm, &f->bt, 0, MS, f->err, sizeof f->err));
    assert_fo(FO_EINVAL, record(f, 0, 0, ITEM_FAILED)); /* committed */
    assert_fo(FO_EINVAL, record(f, 7, 0, ITEM_OK));     /* not open */
    assert_int_equal(f->cm.state.totals.items, 1);
    assert_int_equal(f->cm.state.totals.ok, 1);
    assert_int_equal(file_size(f), (off_t)f->cm.state.results_size);
    assert_int_equal(f->cm.outstanding, 1);
}

/* held_bytes counts an item's request until its record is made, then the
 * record until it is committed (--max-window-bytes, docs/internals). */
static void test_held_bytes_follow_request_then_record(void **state)
{
    fixture *f = *state;
    read_batch(f, 2, 1);
    mitem *a = batches_item(&f->bt, (proto_ref){0, 0});
    mitem *b = batches_item(&f->bt, (proto_ref){0, 1});
    a->url = xstrdup("http://h/1"); /* 10 bytes */
    a->body = xstrdup("0123456789abcdef");
    a->body_len = 16;
    b->url = xstrdup("http://h/22"); /* 11 bytes, no body */
    assert_int_equal(batches_item_bytes(a), 26);
    assert_int_equal(batches_item_bytes(b), 11);
    f->cm.held_bytes = 26 + 11; /* as intake counts them once rendered */
    assert_fo(FO_OK, record(f, 0, 0, ITEM_OK));
    batches_release(a);
    assert_int_equal(batches_item_bytes(a), 0);
    size_t rec_a = f->cm.cb[0].len;
    assert_int_equal(f->cm.held_bytes, (int64_t)(rec_a + 11));
    /* A second record for the same item changes nothing. */
    assert_fo(FO_EINVAL, record(f, 0, 0, ITEM_OK));
    assert_int_equal(f->cm.held_bytes, (int64_t)(rec_a + 11));
    assert_fo(FO_OK,
              commit_flush(&f->cm, &f->bt, 0, MS, f->err, sizeof f->err));
    assert_int_equal(f->cm.held_bytes, 11);
    assert_fo(FO_OK, record(f, 0, 1, ITEM_FAILED));
    batches_release(b);
    assert_fo(FO_OK,
              commit_flush(&f->cm, &f->bt, 0, 2 * MS, f->err, sizeof f->err));
    assert_int_equal(f->cm.held_bytes, 0);
}

/* The cursor moves past a batch only with its last record, in order. */
static void test_cursor_moves_past_complete_batches_only(void **state)
{
    fixture *f = *state;
    read_batch(f, 2, 1); /* batch 0: lines 1-2 */
    read_batch(f, 2, 3); /* batch 1: lines 3-4 */
    assert_fo(FO_OK, record(f, 1, 0, ITEM_OK));
    assert_fo(FO_OK, record(f, 1, 1, ITEM_FAILED));
    assert_fo(FO_OK, record(f, 0, 0, ITEM_INVALID));
    assert_fo(FO_OK,
              commit_flush(&f->cm, &f->bt, 0, MS, f->err, sizeof f->err));
    /* Batch 1 is complete but batch 0 is not: the resume point stays. */
    assert_int_equal(f->cm.state.cursor.batch, 0);
    assert_int_equal(f->cm.state.cursor.line_no, 1);
    assert_int_equal(batches_len(&f->bt), 2);
    assert_fo(FO_OK, record(f, 0, 1, ITEM_OK));
    assert_fo(FO_OK,
              commit_flush(&f->cm, &f->bt, 1, 2 * MS, f->err, sizeof f->err));
    assert_int_equal(f->cm.state.cursor.batch, 2);
    assert_int_equal(f->cm.state.cursor.line_no, 5);
    assert_int_equal(batches_len(&f->bt), 0);
    assert_int_equal(f->cm.state.finished, 1);
    const store_totals *t = &f->cm.state.totals;
    assert_int_equal(t->items, 4);
    assert_int_equal(t->ok, 2);
    assert_int_equal(t->failed, 1);
    assert_int_equal(t->invalid, 1);
    /* What was committed is what the store has after a reopen. */
    close_store(f);
    open_store(f);
    assert_int_equal(f->cm.state.cursor.batch, 2);
    assert_int_equal(f->cm.state.totals.items, 4);
}

/* Bytes written after the last commit (a crash between the write and the
 * transaction) are cut on the next open. */
static void test_uncommitted_tail_is_cut_on_open(void **state)
{
    fixture *f = *state;
    read_batch(f, 1, 1);
    assert_fo(FO_OK, record(f, 0, 0, ITEM_OK));
    assert_fo(FO_OK,
              commit_flush(&f->cm, &f->bt, 0, MS, f->err, sizeof f->err));
    off_t good = file_size(f);
    close_store(f);
    char p[128];
    snprintf(p, sizeof p, "%s/results.jsonl", f->dir);
    FILE *fp = fopen(p, "a");
    assert_non_null(fp);
    fputs("{\"torn\":", fp);
    fclose(fp);
    assert_true(file_size(f) > good);
    open_store(f);
    assert_int_equal(file_size(f), good);
}

/* A full disk (/dev/full: ENOSPC) is ridden out: the flush reports OK,
 * nothing is committed, the record stays buffered, the next try waits for
 * the backoff, and once writes work again it is committed once. */
static void test_full_disk_keeps_the_records_and_retries(void **state)
{
    fixture *f = *state;
    read_batch(f, 1, 1);
    assert_fo(FO_OK, record(f, 0, 0, ITEM_OK));
    int good_fd = f->cm.results_fd;
    f->cm.results_fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
    assert_true(f->cm.results_fd >= 0);
    assert_fo(FO_OK,
              commit_flush(&f->cm, &f->bt, 0, MS, f->err, sizeof f->err));
    assert_true(f->cm.full.active);
    assert_int_equal(f->cm.full.episodes, 1);
    assert_int_equal(f->cm.len, 1);
    assert_int_equal(f->cm.state.totals.items, 0);
    assert_int_equal(store_get_state(f->st)->totals.items, 0);
    /* Not before the backoff, however due the buffer is. */
    assert_int_equal(commit_due(&f->cm, &f->bt, 2 * MS, 1), 0);
    assert_true(commit_deadline(&f->cm) == MS + OUTFULL_FIRST_NS);
    /* Still full: the same episode, a longer wait. */
    int64_t t = MS + OUTFULL_FIRST_NS;
    assert_int_equal(commit_due(&f->cm, &f->bt, t, 0), 1);
    assert_fo(FO_OK, commit_flush(&f->cm, &f->bt, 0, t, f->err, sizeof f->err));
    assert_int_equal(f->cm.full.episodes, 1);
    assert_int_equal(f->cm.full.failures, 2);
    /* Room again. */
    close(f->cm.results_fd);
    f->cm.results_fd = good_fd;
    t = f->cm.full.next_try_ns;
    assert_fo(FO_OK, commit_flush(&f->cm, &f->bt, 0, t, f->err, sizeof f->err));
    assert_false(f->cm.full.active);
    assert_int_equal(f->cm.len, 0);
    assert_int_equal(f->cm.state.totals.items, 1);
    assert_int_equal(store_get_state(f->st)->totals.items, 1);
    assert_int_equal(file_size(f), f->cm.state.results_size);
}

/* Another write error is not ridden out: the flush fails with a message
 * naming the file, and nothing is committed (the items run again on the
 * next start). */
static void test_write_failure_commits_nothing(void **state)
{
    fixture *f = *state;
    read_batch(f, 1, 1);
    assert_fo(FO_OK, record(f, 0, 0, ITEM_OK));
    close(f->cm.results_fd);
    f->cm.results_fd = open("/dev/null", O_RDONLY | O_CLOEXEC); /* EBADF */
    assert_true(f->cm.results_fd >= 0);
    assert_fo(FO_EIO,
              commit_flush(&f->cm, &f->bt, 0, MS, f->err, sizeof f->err));
    assert_non_null(strstr(f->err, "results.jsonl"));
    assert_false(f->cm.full.active);
    assert_int_equal(f->cm.state.totals.items, 0);
    assert_int_equal(store_get_state(f->st)->totals.items, 0);
}

/* The buffer flushes when its oldest record has waited long enough, or
 * at once when stopping. */
static void test_flush_is_due_by_age_or_stop(void **state)
{
    fixture *f = *state;
    read_batch(f, 2, 1);
    assert_int_equal(commit_due(&f->cm, &f->bt, 0, 0), 0);
    assert_fo(FO_OK, record(f, 0, 0, ITEM_OK));
    assert_int_equal(commit_due(&f->cm, &f->bt, 0, 0), 0);
    assert_int_equal(commit_due(&f->cm, &f->bt, 0, 1), 1);
    assert_int_equal(commit_due(&f->cm, &f->bt, COMMIT_DELAY_NS, 0), 1);
    assert_true(commit_deadline(&f->cm) == COMMIT_DELAY_NS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_an_item_is_recorded_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_held_bytes_follow_request_then_record, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_cursor_moves_past_complete_batches_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uncommitted_tail_is_cut_on_open,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_full_disk_keeps_the_records_and_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_failure_commits_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_is_due_by_age_or_stop, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
