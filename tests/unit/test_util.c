/* test_util.c - util_redact_url (common/util.h): every secret a --input or
 * --url may carry is masked, and everything else is kept as written. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "util.h"

static void check(const char *url, const char *want)
{
    char out[512];
    assert_ptr_equal(util_redact_url(url, out, sizeof out), out);
    assert_string_equal(out, want);
}

static void redis_password_alone_is_masked(void **state)
{
    (void)state;
    check("redis://:hunter2@host:6379/stream?group=g",
          "redis://:***@host:6379/stream?group=g");
}

static void redis_user_kept_password_masked(void **state)
{
    (void)state;
    check("redis://alice:hunter2@host/stream", "redis://alice:***@host/stream");
}

static void userinfo_without_colon_is_a_password(void **state)
{
    (void)state;
    check("redis://hunter2@host/s", "redis://***@host/s");
}

static void password_with_at_sign_is_masked_whole(void **state)
{
    (void)state;
    check("redis://:p@ss@host/s", "redis://:***@host/s");
}

static void sas_signature_is_masked(void **state)
{
    (void)state;
    check("azure-queue://acct/q?sv=2024-01-01&se=2030&sig=abc%2Bdef&sp=r",
          "azure-queue://acct/q?sv=2024-01-01&se=2030&sig=***&sp=r");
    check("https://a.example/x?SIG=abc#frag",
          "https://a.example/x?SIG=***#frag");
    check("https://a.example/x?token=t&api_key=k&keep=1",
          "https://a.example/x?token=***&api_key=***&keep=1");
}

static void plain_urls_and_paths_are_unchanged(void **state)
{
    (void)state;
    check("redis://host:6379/s?group=g", "redis://host:6379/s?group=g");
    check("items@2026.jsonl", "items@2026.jsonl");
    check("/data/a?b=sig", "/data/a?b=sig");
    check("-", "-");
    /* An '@' in the path is not userinfo. */
    check("https://h/p@x?sig=", "https://h/p@x?sig=***");
}

static void truncation_keeps_a_terminated_string(void **state)
{
    (void)state;
    char out[12];
    util_redact_url("redis://:secretpw@host/s", out, sizeof out);
    assert_string_equal(out, "redis://:**");
    assert_null(strstr(out, "secret"));
    char one[1];
    util_redact_url("redis://:pw@h/s", one, sizeof one);
    assert_string_equal(one, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(redis_password_alone_is_masked),
        cmocka_unit_test(redis_user_kept_password_masked),
        cmocka_unit_test(userinfo_without_colon_is_a_password),
        cmocka_unit_test(password_with_at_sign_is_masked_whole),
        cmocka_unit_test(sas_signature_is_masked),
        cmocka_unit_test(plain_urls_and_paths_are_unchanged),
        cmocka_unit_test(truncation_keeps_a_terminated_string),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
