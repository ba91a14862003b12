/* test_outlock.c - one master per --out: the lock on DIR/lock, in a
 * temporary directory. flock() locks an open file description, so two
 * acquisitions in one process conflict just as two masters do. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "outlock.h"
#include "unit_assert.h"
#include "util.h"

typedef struct fixture {
    char dir[64];  /* the --out directory */
    char err[600]; /* error text */
} fixture;

static int setup(void **state)
{
    fixture *f = xcalloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/fanout-test-outlock-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static void test_second_holder_is_refused_naming_the_first(void **state)
{
    fixture *f = *state;
    outlock a, b;
    outlock_init(&a);
    outlock_init(&b);
    assert_fo(FO_OK, outlock_acquire(&a, f->dir, f->err, sizeof f->err));
    assert_fo(FO_EUSAGE, outlock_acquire(&b, f->dir, f->err, sizeof f->err));
    char want[200];
    snprintf(want, sizeof want,
             "--out %s is in use by fanout-master pid %ld (lock %s/lock)",
             f->dir, (long)getpid(), f->dir);
    assert_contains(f->err, want);
    assert_int_equal(b.fd, -1);
    outlock_release(&a);
    outlock_release(&a); /* twice is harmless */
    assert_fo(FO_OK, outlock_acquire(&b, f->dir, f->err, sizeof f->err));
    outlock_release(&b);
}

static void test_lock_file_is_private_and_holds_the_pid(void **state)
{
    fixture *f = *state;
    outlock a;
    outlock_init(&a);
    assert_fo(FO_OK, outlock_acquire(&a, f->dir, f->err, sizeof f->err));
    char path[128], text[32] = "";
    snprintf(path, sizeof path, "%s/lock", f->dir);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    assert_non_null(fgets(text, sizeof text, fp));
    fclose(fp);
    assert_int_equal(strtol(text, NULL, 10), (long)getpid());
    outlock_release(&a);
}

static void test_a_symlinked_lock_file_is_not_followed(void **state)
{
    fixture *f = *state;
    char path[128], target[128];
    snprintf(path, sizeof path, "%s/lock", f->dir);
    snprintf(target, sizeof target, "%s/elsewhere", f->dir);
    assert_int_equal(symlink(target, path), 0);
    outlock a;
    outlock_init(&a);
    assert_fo(FO_EIO, outlock_acquire(&a, f->dir, f->err, sizeof f->err));
    assert_contains(f->err, path);
    assert_int_equal(access(target, F_OK), -1); /* nothing created there */
}

static void test_a_missing_directory_names_it(void **state)
{
    fixture *f = *state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/nope", f->dir);
    outlock a;
    outlock_init(&a);
    assert_fo(FO_EIO, outlock_acquire(&a, dir, f->err, sizeof f->err));
    assert_contains(f->err, dir);
    outlock_release(&a); /* not held: nothing to do */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_second_holder_is_refused_naming_the_first, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_lock_file_is_private_and_holds_the_pid, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_symlinked_lock_file_is_not_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_missing_directory_names_it,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
