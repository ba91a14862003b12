/* test_spawn.c - which --allow-env names spawned workers get: the distinct
 * ${NAME}s of the job's headers, in the worker's own syntax. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "spawn.h"
#include "util.h"

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static void test_names_are_distinct_and_in_order(void **state)
{
    (void)state;
    char *const headers[] = {"Authorization: Bearer ${API_TOKEN}",
                             "X-Both: ${TENANT}-${API_TOKEN}", "X-Plain: 1"};
    size_t n;
    char **names = spawn_env_names(headers, 3, &n);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "API_TOKEN");
    assert_string_equal(names[1], "TENANT");
    free_names(names, n);
}

static void test_escapes_and_broken_references_name_nothing(void **state)
{
    (void)state;
    /* "$$" is a literal '$'; "${}" and an unclosed "${" are the worker's
     * to refuse; a bare "$NAME" is not a reference. */
    char *const headers[] = {"X-A: $${NOT_ME}", "X-B: ${}", "X-C: $HOME",
                             "X-D: ${UNCLOSED"};
    size_t n;
    char **names = spawn_env_names(headers, 4, &n);
    assert_int_equal(n, 0);
    assert_null(names);
}

static void test_no_headers_no_names(void **state)
{
    (void)state;
    size_t n = 7;
    assert_null(spawn_env_names(NULL, 0, &n));
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_are_distinct_and_in_order),
        cmocka_unit_test(test_escapes_and_broken_references_name_nothing),
        cmocka_unit_test(test_no_headers_no_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
