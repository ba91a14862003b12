/* test_queue.c - the queue registry (a driver by URL scheme, capability
 * flags, the calls through a driver's table) and what the drivers share:
 * URL parameters and turning a message's text into an item (plain JSON, or
 * base64 of it). */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

/* A driver that only counts calls, to check the wrappers go through the
 * table they were opened with. */
typedef struct fake_q {
    queue base;     /* first, as in every driver */
    int pulls;      /* fake_pull calls */
    int *destroyed; /* set by fake_destroy */
} fake_q;

static int fake_pull(queue *q, size_t max, queue_msg *out, size_t *n, char *err,
                     size_t errlen)
{
    (void)max, (void)out, (void)err, (void)errlen;
    ((fake_q *)q)->pulls++;
    *n = 0;
    return 0;
}

static const char *fake_describe(queue *q)
{
    (void)q;
    return "fake";
}

static void fake_destroy(queue *q)
{
    *((fake_q *)q)->destroyed = 1;
}

static const queue_driver fake_driver = {.scheme = "fake",
                                         .caps = QUEUE_CAP_LEASE_TIMEOUT_ONLY,
                                         .pull = fake_pull,
                                         .describe = fake_describe,
                                         .destroy = fake_destroy};

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

static void test_drivers_are_found_by_scheme(void **state)
{
    (void)state;
    const queue_driver *r = queue_driver_find("redis://h:6379/s?group=g");
    assert_non_null(r);
    assert_string_equal(r->scheme, "redis");
    const queue_driver *a = queue_driver_find("azure-queue://acct/q");
    assert_non_null(a);
    assert_string_equal(a->scheme, "azure-queue");
    /* The scheme is the whole name before "://", not a prefix of it. */
    assert_null(queue_driver_find("rediss://h/s?group=g"));
    assert_null(queue_driver_find("redis:/h/s"));
    assert_null(queue_driver_find("azure-queue"));
    assert_null(queue_driver_find(""));
}

static void test_capabilities_say_who_must_wait_for_leases(void **state)
{
    (void)state;
    const queue_driver *r = queue_driver_find("redis://h/s");
    const queue_driver *a = queue_driver_find("azure-queue://acct/q");
    /* Azure hands a dead master's messages out only when their lease
     * times out; Redis gives them back at once (own pending entries). */
    assert_true(a->caps & QUEUE_CAP_LEASE_TIMEOUT_ONLY);
    assert_false(r->caps & QUEUE_CAP_LEASE_TIMEOUT_ONLY);
    assert_true(a->caps & QUEUE_CAP_RENEW);
    assert_true(r->caps & QUEUE_CAP_RENEW);
    assert_non_null(a->renew);
    assert_non_null(r->renew);
}

static void test_open_names_what_is_wrong(void **state)
{
    (void)state;
    queue_opts o = {.lease_ms = 30000, .max_item_bytes = 1024};
    char err[512] = "";
    assert_null(queue_open("items.jsonl", &o, err, sizeof err));
    assert_non_null(strstr(err, "not a queue URL"));
    /* Configuration errors come from the driver the scheme picked; no
     * server is contacted to find them. */
    assert_null(queue_open("redis://h:6379/jobs", &o, err, sizeof err));
    assert_non_null(strstr(err, "group"));
    assert_null(queue_open("azure-queue://A/q", &o, err, sizeof err));
    assert_non_null(strstr(err, "account"));
}

static void test_redis_opens_without_a_server(void **state)
{
    (void)state;
    queue_opts o = {.lease_ms = 30000, .max_item_bytes = 1024};
    char err[512] = "";
    queue *q =
        queue_open("redis://127.0.0.1:1/jobs?group=g", &o, err, sizeof err);
    assert_non_null(q);
    assert_ptr_equal(q->driver, queue_driver_find("redis://"));
    assert_true(queue_has(q, QUEUE_CAP_RENEW));
    assert_false(queue_has(q, QUEUE_CAP_LEASE_TIMEOUT_ONLY));
    assert_false(queue_has(q, QUEUE_CAP_RENEW | QUEUE_CAP_LEASE_TIMEOUT_ONLY));
    assert_non_null(strstr(queue_describe(q), "stream jobs group g"));
    queue_destroy(&q);
    assert_null(q);
    queue_destroy(&q); /* safe twice */
}

static void test_wrappers_call_the_queue_s_driver(void **state)
{
    (void)state;
    int destroyed = 0;
    fake_q *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->base.driver = &fake_driver;
    f->destroyed = &destroyed;
    queue *q = &f->base;
    queue_msg out[1];
    size_t n = 9;
    char err[64];
    assert_int_equal(queue_pull(q, 1, out, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(f->pulls, 1);
    assert_string_equal(queue_describe(q), "fake");
    assert_true(queue_has(q, QUEUE_CAP_LEASE_TIMEOUT_ONLY));
    assert_true(queue_has(q, 0));
    assert_false(queue_has(q, QUEUE_CAP_RENEW)); /* renew is NULL */
    queue_destroy(&q);
    assert_true(destroyed);
    assert_null(q);
    free(f);
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
        cmocka_unit_test(test_drivers_are_found_by_scheme),
        cmocka_unit_test(test_capabilities_say_who_must_wait_for_leases),
        cmocka_unit_test(test_open_names_what_is_wrong),
        cmocka_unit_test(test_redis_opens_without_a_server),
        cmocka_unit_test(test_wrappers_call_the_queue_s_driver),
        cmocka_unit_test(test_pct_decode),
        cmocka_unit_test(test_public_url_hides_credentials_and_options),
        cmocka_unit_test(test_plain_and_base64_bodies),
        cmocka_unit_test(test_bad_and_oversized_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
