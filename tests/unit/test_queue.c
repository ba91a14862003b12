/* test_queue.c - what the queue drivers share: URL parameters and turning
 * a message's text into an item (plain JSON, or base64 of it). */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

/* The drivers are not under test here. */
queue_driver *queue_redis_open(const char *url, const queue_opts *o, char *err,
                               size_t errlen)
{
    (void)url, (void)o, (void)err, (void)errlen;
    return NULL;
}
queue_driver *queue_azure_open(const char *url, const queue_opts *o, char *err,
                               size_t errlen)
{
    (void)url, (void)o, (void)err, (void)errlen;
    return NULL;
}

static void test_url_params_are_found_and_decoded(void **state)
{
    (void)state;
    const char *u = "redis://h:1/s?group=my%20g&consumer=c+1&field=&x";
    char b[64];
    assert_int_equal(queue_url_param(u, "group", b, sizeof b), 1);
    assert_string_equal(b, "my g");
    assert_int_equal(queue_url_param(u, "consumer", b, sizeof b), 1);
    assert_string_equal(b, "c 1");
    assert_int_equal(queue_url_param(u, "field", b, sizeof b), 1);
    assert_string_equal(b, "");
    assert_int_equal(queue_url_param(u, "x", b, sizeof b), 1);
    assert_string_equal(b, "");
    /* A name that is a prefix of another is not it. */
    assert_int_equal(queue_url_param(u, "gro", b, sizeof b), 0);
    assert_int_equal(queue_url_param(u, "lease", b, sizeof b), 0);
    assert_int_equal(queue_url_param("redis://h/s", "group", b, sizeof b), 0);
    char tiny[3];
    assert_int_equal(queue_url_param(u, "group", tiny, sizeof tiny), -1);
}

static void test_pct_decode(void **state)
{
    (void)state;
    size_t len;
    char *d = queue_pct_decode("p%40ss+w%2", 10, 0, &len);
    assert_string_equal(d, "p@ss+w%2"); /* a cut escape stays as it is */
    assert_int_equal(len, 8);
    free(d);
    d = queue_pct_decode("a+b%20c", 7, 1, NULL);
    assert_string_equal(d, "a b c");
    free(d);
    d = queue_pct_decode("x%00y", 5, 0, &len);
    assert_int_equal(len, 3); /* an encoded NUL is kept, not the end */
    free(d);
}

static void test_is_url(void **state)
{
    (void)state;
    assert_true(queue_is_url("redis://h:6379/s?group=g"));
    assert_true(queue_is_url("azure-queue://acct/q"));
    assert_false(queue_is_url("items.jsonl"));
    assert_false(queue_is_url("-"));
}

static void test_public_url_hides_credentials_and_options(void **state)
{
    (void)state;
    char b[256];
    queue_url_public("redis://user:s3cret@h:6379/jobs?lease=5s&group=g", b,
                     sizeof b);
    assert_string_equal(b, "redis://h:6379/jobs?group=g");
    queue_url_public("redis://:pw@h/jobs?group=g", b, sizeof b);
    assert_string_equal(b, "redis://h/jobs?group=g");
    queue_url_public("azure-queue://acct/q?endpoint=http://x@y/z", b, sizeof b);
    assert_string_equal(b, "azure-queue://acct/q");
    queue_url_public("azure-queue://acct/q", b, sizeof b);
    assert_string_equal(b, "azure-queue://acct/q");
}

static void body(const char *text, const char *mode, size_t cap, queue_msg *m)
{
    memset(m, 0, sizeof *m);
    queue_set_body(m, text, strlen(text), mode, cap);
}

static void test_plain_and_base64_bodies(void **state)
{
    (void)state;
    queue_msg m;
    body("{\"id\":\"a\"}", "auto", 1024, &m);
    assert_non_null(m.body);
    assert_string_equal(m.body, "{\"id\":\"a\"}");
    queue_msg_fini(&m);
    /* base64 of {"id":"b"} as an SDK writes it, padded */
    body("eyJpZCI6ImIifQ==", "auto", 1024, &m);
    assert_non_null(m.body);
    assert_string_equal(m.body, "{\"id\":\"b\"}");
    assert_int_equal(m.len, strlen("{\"id\":\"b\"}"));
    queue_msg_fini(&m);
    /* unpadded and URL-safe alphabets decode too */
    body("eyJpZCI6ImIifQ", "base64", 1024, &m);
    assert_non_null(m.body);
    assert_string_equal(m.body, "{\"id\":\"b\"}");
    queue_msg_fini(&m);
    /* none: the text as it is, even when it is not an object (the master
     * records it invalid with the JSON error) */
    body("eyJpZCI6ImIifQ==", "none", 1024, &m);
    assert_string_equal(m.body, "eyJpZCI6ImIifQ==");
    queue_msg_fini(&m);
}

static void test_bad_and_oversized_bodies(void **state)
{
    (void)state;
    queue_msg m;
    body("not json, not base64!", "auto", 1024, &m);
    assert_null(m.body);
    assert_non_null(m.bad);
    assert_non_null(strstr(m.bad, "base64"));
    queue_msg_fini(&m);
    /* base64 of a JSON array is not an item */
    body("WzEsMl0=", "base64", 1024, &m);
    assert_non_null(m.body); /* decoded; the master says "not an object" */
    queue_msg_fini(&m);
    body("{\"id\":\"0123456789\"}", "auto", 8, &m);
    assert_true(m.too_big);
    assert_null(m.body);
    queue_msg_fini(&m);
    /* the cap applies to the decoded size */
    body("eyJpZCI6IjAxMjM0NTY3ODkifQ==", "auto", 8, &m);
    assert_true(m.too_big);
    queue_msg_fini(&m);
    body("", "auto", 8, &m);
    assert_null(m.body);
    assert_non_null(m.bad);
    queue_msg_fini(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_params_are_found_and_decoded),
        cmocka_unit_test(test_is_url),
        cmocka_unit_test(test_pct_decode),
        cmocka_unit_test(test_public_url_hides_credentials_and_options),
        cmocka_unit_test(test_plain_and_base64_bodies),
        cmocka_unit_test(test_bad_and_oversized_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
