/* test_job.c - job_parse (worker/job.h): ${NAME} in a header expands only
 * for the names the worker's operator allowed with --allow-env. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "job.h"

#define JOB_WITH(headers)                                                      \
    "{\"work_port\":5556,\"result_port\":5557,\"headers\":" headers "}"

static int setup(void **state)
{
    (void)state;
    setenv("FANOUT_TEST_TOKEN", "t0ken", 1);
    setenv("FANOUT_TEST_OTHER", "other", 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    job_allow_env(NULL, 0);
    return 0;
}

static void allowed_name_expands(void **state)
{
    (void)state;
    char *const names[] = {"FANOUT_TEST_TOKEN"};
    job_allow_env(names, 1);
    job j;
    char err[512] = "";
    assert_int_equal(
        job_parse(JOB_WITH("[\"Authorization: Bearer ${FANOUT_TEST_TOKEN}\"]"),
                  &j, err, sizeof err),
        FO_OK);
    assert_string_equal(j.headers[0], "Authorization: Bearer t0ken");
    job_fini(&j);
}

static void unallowed_names_are_all_named(void **state)
{
    (void)state;
    char *const names[] = {"FANOUT_TEST_TOKEN"};
    job_allow_env(names, 1);
    job j;
    char err[512] = "";
    fo_err rc = job_parse(
        JOB_WITH("[\"A: ${FANOUT_TEST_TOKEN} ${HOME}\", \"B: ${PATH}${HOME}\","
                 "\"C: $${NOT_A_REF}\"]"),
        &j, err, sizeof err);
    assert_int_equal(rc, FO_EDENIED);
    assert_string_equal(err, "the job asks for ${HOME}, ${PATH}, which this "
                             "worker does not allow; start it with "
                             "--allow-env HOME --allow-env PATH");
    assert_null(strstr(err, "t0ken"));
    assert_int_equal(j.nheaders, 0);
    job_fini(&j);
}

static void nothing_allowed_by_default(void **state)
{
    (void)state;
    job j;
    char err[512] = "";
    assert_int_equal(job_parse(JOB_WITH("[\"X: ${FANOUT_TEST_OTHER}\"]"), &j,
                               err, sizeof err),
                     FO_EDENIED);
    assert_non_null(strstr(err, "--allow-env FANOUT_TEST_OTHER"));
    /* Headers without references need no permission. */
    assert_int_equal(
        job_parse(JOB_WITH("[\"X: plain $$ text\"]"), &j, err, sizeof err),
        FO_OK);
    assert_string_equal(j.headers[0], "X: plain $ text");
    job_fini(&j);
}

static void allowed_but_unset_is_still_a_bad_header(void **state)
{
    (void)state;
    char *const names[] = {"FANOUT_TEST_UNSET_VAR"};
    unsetenv("FANOUT_TEST_UNSET_VAR");
    job_allow_env(names, 1);
    job j;
    char err[512] = "";
    assert_int_equal(job_parse(JOB_WITH("[\"X: ${FANOUT_TEST_UNSET_VAR}\"]"),
                               &j, err, sizeof err),
                     FO_EINVAL);
    assert_non_null(strstr(err, "FANOUT_TEST_UNSET_VAR is not set"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(allowed_name_expands, teardown),
        cmocka_unit_test_teardown(unallowed_names_are_all_named, teardown),
        cmocka_unit_test_teardown(nothing_allowed_by_default, teardown),
        cmocka_unit_test_teardown(allowed_but_unset_is_still_a_bad_header,
                                  teardown),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
