/* test_transform.c - response transforms: the path parser and the
 * --ok-when parser (common/jpath.h), what the worker keeps of a response
 * (worker/transform.h) and the retry decision for a rejected 2xx. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "jpath.h"
#include "retry.h"
#include "transform.h"
#include "unit_assert.h"

/* The response cap the transforms are held to. */
#define CAP ((size_t)1 << 20)

static const char doc_text[] =
    "{\"id\":\"42\",\"status\":\"error\",\"code\":200,\"ok\":true,"
    "\"none\":null,\"a/b\":1,\"m~n\":2,\"a.b\":3,"
    "\"data\":{\"state\":\"done\",\"tags\":[\"x\",\"y\"],\"n\":2.0}}";

static json_t *doc(void)
{
    json_t *d = json_loads(doc_text, 0, NULL);
    assert_non_null(d);
    return d;
}

/* The value at path in the test document, as compact JSON (caller frees),
 * or NULL when missing. */
static char *get(const char *path)
{
    jpath p;
    char err[300];
    assert_fo(FO_OK, jpath_parse(path, &p, err, sizeof err));
    json_t *d = doc();
    json_t *v = jpath_get(&p, d);
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(d);
    jpath_fini(&p);
    return s;
}

static void assert_get(const char *path, const char *want)
{
    char *got = get(path);
    if (!want) {
        if (got)
            fail_msg("%s: expected missing, got %s", path, got);
        return;
    }
    if (!got)
        fail_msg("%s: expected %s, got missing", path, want);
    assert_string_equal(got, want);
    free(got);
}

static void test_dotted_paths_reach_members_and_elements(void **state)
{
    (void)state;
    assert_get("status", "\"error\"");
    assert_get("data.state", "\"done\"");
    assert_get("data.tags.1", "\"y\"");
    assert_get("data.tags", "[\"x\",\"y\"]");
    assert_get("data.tags.2", NULL);
    assert_get("data.missing", NULL);
    assert_get("status.deeper", NULL);
}

static void test_pointers_unescape_and_reach_the_same_values(void **state)
{
    (void)state;
    assert_get("/data/tags/0", "\"x\"");
    assert_get("/a~1b", "1");
    assert_get("/m~0n", "2");
    assert_get("/a.b", "3");
    assert_get("/a", NULL);
}

static void test_empty_pointer_is_the_whole_document(void **state)
{
    (void)state;
    jpath p;
    char err[300];
    assert_fo(FO_OK, jpath_parse("", &p, err, sizeof err));
    assert_int_equal(p.n, 0);
    json_t *d = doc();
    assert_ptr_equal(jpath_get(&p, d), d);
    json_decref(d);
    jpath_fini(&p);
}

static void test_array_indices_are_canonical_decimals(void **state)
{
    (void)state;
    assert_get("data.tags.01", NULL);
    assert_get("data.tags.-1", NULL);
    assert_get("data.tags.+1", NULL);
    assert_get("/data/tags/1", "\"y\"");
}

static void expect_path_error(const char *path, const char *why)
{
    jpath p;
    char err[300] = "";
    assert_fo(FO_EINVAL, jpath_parse(path, &p, err, sizeof err));
    assert_contains(err, why);
    assert_null(p.seg);
    jpath_fini(&p); /* safe on the emptied path */
}

static void test_bad_paths_are_refused_with_a_reason(void **state)
{
    (void)state;
    expect_path_error("a..b", "empty segment");
    expect_path_error(".a", "empty segment");
    expect_path_error("a.", "empty segment");
    expect_path_error("/a~2", "'~' must be followed by 0 or 1");
    expect_path_error("/a~", "'~' must be followed by 0 or 1");
    char longp[JPATH_MAX_BYTES + 2];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    expect_path_error(longp, "longer than");
    char deep[2 * (JPATH_MAX_SEGMENTS + 1) + 1];
    for (int i = 0; i <= JPATH_MAX_SEGMENTS; i++)
        memcpy(deep + 2 * i, "/a", 2);
    deep[sizeof deep - 1] = '\0';
    expect_path_error(deep, "more than");
}

/* ---- conditions ------------------------------------------------------ */

static int eval(const char *cond, json_t *d)
{
    jpath_cond c;
    char err[300];
    fo_err rc = jpath_cond_parse(cond, &c, err, sizeof err);
    if (rc)
        fail_msg("'%s' did not parse: %s", cond, err);
    int r = jpath_cond_eval(&c, d);
    jpath_cond_fini(&c);
    return r;
}

static void test_conditions_parse_with_or_without_spaces(void **state)
{
    (void)state;
    jpath_cond c;
    char err[300];
    assert_fo(FO_OK, jpath_cond_parse("status!=error", &c, err, sizeof err));
    assert_int_equal(c.op, JPATH_NE);
    assert_string_equal(c.path.text, "status");
    assert_int_equal(c.nvals, 1);
    assert_string_equal(c.vals[0].text, "error");
    assert_false(c.vals[0].quoted);
    jpath_cond_fini(&c);
    assert_fo(FO_OK,
              jpath_cond_parse(" /status == \"ok\" ", &c, err, sizeof err));
    assert_int_equal(c.op, JPATH_EQ);
    assert_string_equal(c.path.text, "/status");
    assert_string_equal(c.vals[0].text, "ok");
    assert_true(c.vals[0].quoted);
    jpath_cond_fini(&c);
    assert_fo(FO_OK, jpath_cond_parse("data.state in [done, ok ,\"a,b\"]", &c,
                                      err, sizeof err));
    assert_int_equal(c.op, JPATH_IN);
    assert_int_equal(c.nvals, 3);
    assert_string_equal(c.vals[0].text, "done");
    assert_string_equal(c.vals[1].text, "ok");
    assert_string_equal(c.vals[2].text, "a,b");
    jpath_cond_fini(&c);
    assert_fo(FO_OK, jpath_cond_parse("a in[x]", &c, err, sizeof err));
    assert_int_equal(c.op, JPATH_IN);
    jpath_cond_fini(&c);
    /* A bare word runs to the end, spaces inside included. */
    assert_fo(FO_OK, jpath_cond_parse("a == two words ", &c, err, sizeof err));
    assert_string_equal(c.vals[0].text, "two words");
    jpath_cond_fini(&c);
}

static void expect_cond_error(const char *cond, const char *why)
{
    jpath_cond c;
    char err[300] = "";
    assert_fo(FO_EINVAL, jpath_cond_parse(cond, &c, err, sizeof err));
    assert_contains(err, why);
    assert_null(c.text);
    jpath_cond_fini(&c);
}

static void test_bad_conditions_are_refused_with_a_reason(void **state)
{
    (void)state;
    expect_cond_error("", "has no path");
    expect_cond_error("==ok", "has no path");
    expect_cond_error("status", "expected ==, != or in");
    expect_cond_error("status = ok", "expected ==, != or in");
    expect_cond_error("status==", "missing value");
    expect_cond_error("status==  ", "missing value");
    expect_cond_error("status==\"ok", "unterminated string");
    expect_cond_error("status==\"ok\" x", "unexpected text");
    expect_cond_error("status==\"\\q\"", "bad string");
    expect_cond_error("status==[a]", "needs 'in'");
    expect_cond_error("status in ok", "'in' takes a list");
    expect_cond_error("status in [a", "expected ',' or ']'");
    expect_cond_error("status in [a b", "expected ',' or ']'");
    expect_cond_error("status in [a,]", "missing value");
    expect_cond_error("status in [a] b", "unexpected text");
    expect_cond_error("a..b==1", "empty segment");
    expect_cond_error("statusin [a]", "expected ==, != or in");
    char longc[JPATH_MAX_COND_BYTES + 8];
    memset(longc, 'a', sizeof longc - 1);
    memcpy(longc, "a==", 3);
    longc[sizeof longc - 1] = '\0';
    expect_cond_error(longc, "longer than");
    char many[8 + 2 * (JPATH_MAX_VALUES + 1)];
    size_t k = 0;
    memcpy(many, "a in [", 6);
    k = 6;
    for (int i = 0; i <= JPATH_MAX_VALUES; i++) {
        many[k++] = 'x';
        many[k++] = i < JPATH_MAX_VALUES ? ',' : ']';
    }
    many[k] = '\0';
    expect_cond_error(many, "more than");
}

static void test_conditions_compare_as_documented(void **state)
{
    (void)state;
    json_t *d = doc();
    assert_true(eval("status==error", d));
    assert_false(eval("status!=error", d));
    assert_true(eval("/status == \"error\"", d));
    assert_false(eval("status == \"err\"", d));
    assert_true(eval("data.state in [done,ok]", d));
    assert_false(eval("data.state in [ok, pending]", d));
    /* Bare words match numbers, true, false and null; quoted ones only
     * strings. */
    assert_true(eval("code==200", d));
    assert_true(eval("code==200.0", d));
    assert_false(eval("code==\"200\"", d));
    assert_true(eval("data.n==2", d));
    assert_true(eval("ok==true", d));
    assert_false(eval("ok==\"true\"", d));
    assert_true(eval("none==null", d));
    assert_false(eval("code==2e", d));
    assert_true(eval("data.tags.0==x", d));
    /* A missing path equals nothing. */
    assert_false(eval("missing==x", d));
    assert_true(eval("missing!=x", d));
    assert_false(eval("missing in [x]", d));
    /* Not JSON: every path is missing. */
    assert_true(eval("status!=error", NULL));
    assert_false(eval("status==ok", NULL));
    json_decref(d);
}

/* ---- what the worker keeps ------------------------------------------- */

static void job_transform(const char *job_json, transform *t)
{
    json_t *j = json_loads(job_json, 0, NULL);
    char err[300];
    fo_err rc = transform_from_job(j, t, err, sizeof err);
    json_decref(j);
    if (rc)
        fail_msg("%s: %s", job_json, err);
}

static void test_keep_stores_only_the_chosen_paths(void **state)
{
    (void)state;
    transform t;
    job_transform("{\"keep\":[\"data.state\",\"/data/tags/1\",\"nope\"]}", &t);
    transform_result r;
    transform_apply(&t, doc_text, strlen(doc_text), 1, CAP, &r);
    assert_true(r.passed);
    assert_non_null(r.owned);
    assert_string_equal(r.body, "{\"data.state\":\"done\",\"/data/tags/1\":"
                                "\"y\"}");
    assert_int_equal(r.body_len, strlen(r.body));
    transform_result_fini(&r);
    transform_result_fini(&r);
    /* Not JSON: dropped, its size reported. */
    transform_apply(&t, "hello", 5, 1, CAP, &r);
    assert_null(r.body);
    assert_int_equal(r.dropped_bytes, 5);
    transform_result_fini(&r);
    transform_fini(&t);
    transform_fini(&t);
}

static void test_keep_is_held_to_the_response_cap(void **state)
{
    (void)state;
    transform t;
    job_transform("{\"keep\":[\"\",\"data\"]}", &t);
    transform_result r;
    size_t len = strlen(doc_text);
    transform_apply(&t, doc_text, len, 1, len, &r);
    /* The whole document and a part of it: more than the body itself. */
    assert_null(r.body);
    assert_null(r.owned);
    assert_true(r.dropped_bytes > len);
    transform_result_fini(&r);
    transform_apply(&t, doc_text, len, 1, 2 * len, &r);
    assert_non_null(r.body);
    assert_int_equal(r.dropped_bytes, 0);
    transform_result_fini(&r);
    transform_fini(&t);
}

static void test_without_keep_a_body_is_kept_as_it_is(void **state)
{
    (void)state;
    transform t;
    job_transform("{}", &t);
    transform_result r;
    static const char body[] = "hello";
    transform_apply(&t, body, 5, 1, CAP, &r);
    assert_true(r.passed);
    assert_ptr_equal(r.body, body);
    assert_int_equal(r.body_len, 5);
    assert_null(r.owned);
    transform_result_fini(&r);
    transform_fini(&t);
}

static void test_drop_response_stores_nothing(void **state)
{
    (void)state;
    transform t;
    job_transform("{\"drop_response\":1}", &t);
    transform_result r;
    transform_apply(&t, doc_text, strlen(doc_text), 1, CAP, &r);
    assert_null(r.body);
    assert_int_equal(r.body_len, 0);
    assert_int_equal(r.dropped_bytes, 0); /* stores none, not even a size */
    transform_result_fini(&r);
    transform_fini(&t);
}

static void test_ok_when_rejects_a_body_and_says_why(void **state)
{
    (void)state;
    transform t;
    job_transform("{\"ok_when\":\"status!=error\",\"ok_when_retry\":1}", &t);
    assert_true(t.has_check);
    assert_true(t.check_retry);
    transform_result r;
    transform_apply(&t, doc_text, strlen(doc_text), 1, CAP, &r);
    assert_false(r.passed);
    assert_contains(r.why, "--ok-when 'status!=error'");
    assert_contains(r.why, "status is \"error\"");
    assert_memory_equal(r.body, doc_text, strlen(doc_text));
    transform_result_fini(&r);
    /* Not a 2xx: the caller does not ask for the check. */
    transform_apply(&t, doc_text, strlen(doc_text), 0, CAP, &r);
    assert_true(r.passed);
    transform_result_fini(&r);
    transform_fini(&t);
    job_transform("{\"ok_when\":\"data.state==done\"}", &t);
    transform_apply(&t, "<html>", 6, 1, CAP, &r);
    assert_false(r.passed);
    assert_contains(r.why, "not JSON");
    transform_result_fini(&r);
    transform_fini(&t);
}

static void test_a_bad_job_is_refused(void **state)
{
    (void)state;
    static const char *bad[] = {"{\"keep\":\"a\"}", "{\"keep\":[1]}",
                                "{\"keep\":[\"a..b\"]}",
                                "{\"ok_when\":\"status\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = json_loads(bad[i], 0, NULL);
        transform t;
        char err[300] = "";
        assert_fo(FO_EPROTO, transform_from_job(j, &t, err, sizeof err));
        assert_contains(err, "JOB");
        assert_null(t.keep);
        transform_fini(&t);
        json_decref(j);
    }
}

/* ---- the retry decision for a rejected 2xx --------------------------- */

static void test_a_rejected_2xx_fails_or_is_retried(void **state)
{
    (void)state;
    retry_policy p = {.max_attempts = 3,
                      .max_throttled = 4,
                      .backoff_base_ms = 500,
                      .backoff_max_ms = 30000};
    retry_input in = {.answered = 1, .status = 200, .rejected = 1, .rnd = 7};
    retry_counts c = {1, 0, 0};
    retry_decision d = retry_decide(&p, &c, &in);
    assert_int_equal(d.verdict, RETRY_FAIL);
    assert_int_equal(d.reason, RETRY_FAIL_REJECTED);
    p.retry_rejected = 1;
    d = retry_decide(&p, &c, &in);
    assert_int_equal(d.verdict, RETRY_AGAIN);
    assert_true(d.delay_ms >= 0 && d.delay_ms <= 500);
    c.attempts = 3;
    d = retry_decide(&p, &c, &in);
    assert_int_equal(d.verdict, RETRY_FAIL);
    assert_int_equal(d.reason, RETRY_FAIL_EXHAUSTED);
    assert_int_equal(d.counted, 3);
    /* Accepted: done, whatever the policy. */
    in.rejected = 0;
    d = retry_decide(&p, &c, &in);
    assert_int_equal(d.verdict, RETRY_DONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dotted_paths_reach_members_and_elements),
        cmocka_unit_test(test_pointers_unescape_and_reach_the_same_values),
        cmocka_unit_test(test_empty_pointer_is_the_whole_document),
        cmocka_unit_test(test_array_indices_are_canonical_decimals),
        cmocka_unit_test(test_bad_paths_are_refused_with_a_reason),
        cmocka_unit_test(test_conditions_parse_with_or_without_spaces),
        cmocka_unit_test(test_bad_conditions_are_refused_with_a_reason),
        cmocka_unit_test(test_conditions_compare_as_documented),
        cmocka_unit_test(test_keep_stores_only_the_chosen_paths),
        cmocka_unit_test(test_keep_is_held_to_the_response_cap),
        cmocka_unit_test(test_without_keep_a_body_is_kept_as_it_is),
        cmocka_unit_test(test_drop_response_stores_nothing),
        cmocka_unit_test(test_ok_when_rejects_a_body_and_says_why),
        cmocka_unit_test(test_a_bad_job_is_refused),
        cmocka_unit_test(test_a_rejected_2xx_fails_or_is_retried),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
