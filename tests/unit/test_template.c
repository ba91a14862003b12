/* test_template.c - request templates and ${ENV} expansion
 * (common/template.h). */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>

#include "buf.h"
#include "error.h"
#include "template.h"
#include "unit_assert.h"

/* Parses src and renders it for the JSON text item_json; returns the error
 * code, the output in *out (caller frees) and the reason in err. */
static fo_err render(const char *src, const char *item_json, template_mode mode,
                     size_t cap, char **out, char *err, size_t errlen)
{
    template *t = NULL;
    char perr[128] = "";
    fo_err e = template_parse(src, &t, perr, sizeof perr);
    if (e != FO_OK)
        fail_msg("parse '%s': %s: %s", src, fo_errname(e), perr);
    json_error_t jerr;
    json_t *item = json_loads(item_json, JSON_DECODE_ANY, &jerr);
    if (!item)
        fail_msg("bad test item %s: %s", item_json, jerr.text);
    fo_buf b;
    buf_init(&b, cap);
    err[0] = '\0';
    e = template_render(t, item, mode, &b, err, errlen);
    *out = buf_take(&b);
    json_decref(item);
    template_destroy(&t);
    return e;
}

/* Renders and asserts success and the exact output. */
static void expect(const char *src, const char *item_json, template_mode mode,
                   const char *want)
{
    char *out = NULL, err[128];
    fo_err e = render(src, item_json, mode, 1 << 16, &out, err, sizeof err);
    if (e != FO_OK)
        fail_msg("'%s': %s: %s", src, fo_errname(e), err);
    assert_string_equal(out, want);
    free(out);
}

/* Renders and asserts the error code and that err mentions `mention`. */
static void expect_err(const char *src, const char *item_json,
                       template_mode mode, size_t cap, fo_err want,
                       const char *mention)
{
    char *out = NULL, err[128];
    fo_err e = render(src, item_json, mode, cap, &out, err, sizeof err);
    free(out);
    assert_fo(want, e);
    assert_contains(err, mention);
}

static void test_url_mode_percent_encodes(void **state)
{
    (void)state;
    expect("https://x/{q}", "{\"q\":\"a b/c?d\"}", TEMPLATE_URL,
           "https://x/a%20b%2Fc%3Fd");
    expect("{q}", "{\"q\":\"AZaz09-_.~\"}", TEMPLATE_URL, "AZaz09-_.~");
    expect("{q}", "{\"q\":\"&=+%#\"}", TEMPLATE_URL, "%26%3D%2B%25%23");
    expect("{q}", "{\"q\":\"\\u00e9\"}", TEMPLATE_URL, "%C3%A9");
    expect("{q}", "{\"q\":\"\"}", TEMPLATE_URL, "");
}

static void test_numbers_and_booleans_as_json_text(void **state)
{
    (void)state;
    const char *item = "{\"n\":42,\"neg\":-3,\"f\":1.5,\"t\":true,"
                       "\"b\":false,\"z\":null}";
    expect("{n}/{neg}/{f}/{t}/{b}/{z}", item, TEMPLATE_URL,
           "42/-3/1.5/true/false/null");
    expect("{n},{neg},{f},{t},{b},{z}", item, TEMPLATE_JSON,
           "42,-3,1.5,true,false,null");
}

static void test_dotted_paths(void **state)
{
    (void)state;
    const char *item = "{\"user\":{\"name\":\"ann\",\"addr\":{\"zip\":"
                       "\"90210\"}},\"id\":7}";
    expect("/u/{id}/{user.name}/{user.addr.zip}", item, TEMPLATE_URL,
           "/u/7/ann/90210");
}

static void test_missing_field_names_it(void **state)
{
    (void)state;
    expect_err("/x/{id}", "{\"other\":1}", TEMPLATE_URL, 1 << 16, FO_EMISSING,
               "id");
    expect_err("{user.age}", "{\"user\":{\"name\":\"a\"}}", TEMPLATE_URL,
               1 << 16, FO_EMISSING, "user.age");
    /* A path that runs through a non-object is missing too. */
    expect_err("{user.name.x}", "{\"user\":{\"name\":\"a\"}}", TEMPLATE_URL,
               1 << 16, FO_EMISSING, "user.name.x");
}

static void test_brace_literals(void **state)
{
    (void)state;
    expect("{{x}}", "{}", TEMPLATE_RAW, "{x}");
    expect("a{{{id}}}b", "{\"id\":7}", TEMPLATE_RAW, "a{7}b");
    template *t = NULL;
    char err[128];
    assert_fo(FO_OK, template_parse("{{x}}", &t, err, sizeof err));
    assert_int_equal(template_nfields(t), 0);
    template_destroy(&t);
}

static void test_nfields_counts_references(void **state)
{
    (void)state;
    template *t = NULL;
    char err[128];
    assert_fo(FO_OK, template_parse("{a}-{b}.{a}", &t, err, sizeof err));
    assert_int_equal(template_nfields(t), 3);
    template_destroy(&t);
    assert_null(t);
    template_destroy(&t); /* NULL-safe */
    assert_fo(FO_OK, template_parse("", &t, err, sizeof err));
    assert_int_equal(template_nfields(t), 0);
    template_destroy(&t);
}

static void test_object_or_array_in_url_rejected(void **state)
{
    (void)state;
    expect_err("/{o}", "{\"o\":{\"a\":1}}", TEMPLATE_URL, 1 << 16, FO_EINVAL,
               "o");
    expect_err("/{a}", "{\"a\":[1,2]}", TEMPLATE_URL, 1 << 16, FO_EINVAL, "a");
    /* Fine in a JSON body. */
    expect("{o}", "{\"o\":{\"a\":[1,2]}}", TEMPLATE_JSON, "{\"a\":[1,2]}");
}

static void expect_parse_error(const char *src, const char *mention)
{
    template *t = NULL;
    char err[128] = "";
    fo_err e = template_parse(src, &t, err, sizeof err);
    if (e != FO_EINVAL)
        fail_msg("'%s': expected EINVAL, got %s", src, fo_errname(e));
    assert_null(t);
    assert_contains(err, mention);
}

static void test_parse_errors_give_column(void **state)
{
    (void)state;
    expect_parse_error("abc{def", "column 4");
    expect_parse_error("ab}c", "column 3");
    expect_parse_error("x{}", "column 2");
    expect_parse_error("{a{b}", "column 1");
    expect_parse_error("{a}}", "column 4");
}

static void test_json_mode_escapes_without_quotes(void **state)
{
    (void)state;
    const char *item = "{\"m\":\"say \\\"hi\\\"\\nnext\\ttab\\u0001\\\\end\"}";
    expect("{m}", item, TEMPLATE_JSON,
           "say \\\"hi\\\"\\nnext\\ttab\\u0001\\\\end");
    /* The result is valid JSON once placed inside quotes, and round-trips. */
    char *out = NULL, err[128];
    assert_fo(FO_OK, render("{{\"msg\":\"{m}\"}}", item, TEMPLATE_JSON, 1 << 16,
                            &out, err, sizeof err));
    json_error_t jerr;
    json_t *doc = json_loads(out, 0, &jerr);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "msg")),
                        "say \"hi\"\nnext\ttab\x01\\end");
    json_decref(doc);
    free(out);
}

static void test_raw_mode_inserts_strings_as_is(void **state)
{
    (void)state;
    expect("<{s}>", "{\"s\":\"a b/\\\"c\\\"\"}", TEMPLATE_RAW, "<a b/\"c\">");
}

static void test_star_is_the_whole_item(void **state)
{
    (void)state;
    expect("{*}", "{\"a\":1}", TEMPLATE_JSON, "{\"a\":1}");
    expect("[{*}]", "{\"k\":\"v\"}", TEMPLATE_RAW, "[{\"k\":\"v\"}]");
    expect_err("/{*}", "{\"a\":1}", TEMPLATE_URL, 1 << 16, FO_EINVAL, "*");
    /* A scalar item is fine in a URL. */
    expect("/{*}", "\"a b\"", TEMPLATE_URL, "/a%20b");
}

static void test_output_cap_gives_etoobig(void **state)
{
    (void)state;
    /* The literal fits exactly; the field does not. */
    expect_err("0123456789{x}", "{\"x\":\"y\"}", TEMPLATE_URL, 10, FO_ETOOBIG,
               "10");
    /* Percent-encoding triples the size. */
    expect_err("{x}", "{\"x\":\"    \"}", TEMPLATE_URL, 11, FO_ETOOBIG,
               "bytes");
    /* Exactly at the cap is fine. */
    char *out = NULL, err[128];
    assert_fo(FO_OK, render("{x}", "{\"x\":\"    \"}", TEMPLATE_URL, 12, &out,
                            err, sizeof err));
    assert_string_equal(out, "%20%20%20%20");
    free(out);
}

/* ---- values that would change the request's shape ------------------- */

static void test_dot_segment_values_are_encoded(void **state)
{
    (void)state;
    const char *url = "http://api/v1/users/{id}/delete";
    expect(url, "{\"id\":\"..\"}", TEMPLATE_URL,
           "http://api/v1/users/%2E%2E/delete");
    expect(url, "{\"id\":\".\"}", TEMPLATE_URL,
           "http://api/v1/users/%2E/delete");
    /* Not a dot segment: stays readable. */
    expect(url, "{\"id\":\"...\"}", TEMPLATE_URL,
           "http://api/v1/users/.../delete");
    expect(url, "{\"id\":\"a.b\"}", TEMPLATE_URL,
           "http://api/v1/users/a.b/delete");
    /* '/' is encoded, so "a/.." stays one segment. */
    expect(url, "{\"id\":\"a/..\"}", TEMPLATE_URL,
           "http://api/v1/users/a%2F../delete");
    expect(url, "{\"id\":\"../..\"}", TEMPLATE_URL,
           "http://api/v1/users/..%2F../delete");
    /* At the end of the path, before a query, and as the whole path. */
    expect("http://api/u/{id}", "{\"id\":\"..\"}", TEMPLATE_URL,
           "http://api/u/%2E%2E");
    expect("http://api/u/{id}?x=1", "{\"id\":\"..\"}", TEMPLATE_URL,
           "http://api/u/%2E%2E?x=1");
    expect("http://api/{id}", "{\"id\":\".\"}", TEMPLATE_URL, "http://api/%2E");
    expect("/u/{id}/x", "{\"id\":\"..\"}", TEMPLATE_URL, "/u/%2E%2E/x");
}

static void test_dot_segment_from_several_parts(void **state)
{
    (void)state;
    /* Two fields, or a field and the template's own dot, make "..". */
    expect("http://api/u/{a}{b}/x", "{\"a\":\".\",\"b\":\".\"}", TEMPLATE_URL,
           "http://api/u/%2E%2E/x");
    expect("http://api/u/.{a}/x", "{\"a\":\".\"}", TEMPLATE_URL,
           "http://api/u/.%2E/x");
    expect("http://api/u/%2E{a}/x", "{\"a\":\".\"}", TEMPLATE_URL,
           "http://api/u/%2E%2E/x");
    expect("http://api/u/{a}{b}/x", "{\"a\":\"\",\"b\":\"..\"}", TEMPLATE_URL,
           "http://api/u/%2E%2E/x");
    /* Three dots are no dot segment. */
    expect("http://api/u/.{a}./x", "{\"a\":\".\"}", TEMPLATE_URL,
           "http://api/u/.../x");
}

static void test_dots_outside_the_path_stay(void **state)
{
    (void)state;
    /* In the query, the fragment and the host, ".." climbs nothing. */
    expect("http://api/u?id={id}", "{\"id\":\"..\"}", TEMPLATE_URL,
           "http://api/u?id=..");
    expect("http://api/u?a=1&{id}", "{\"id\":\".\"}", TEMPLATE_URL,
           "http://api/u?a=1&.");
    expect("http://api/u#{id}", "{\"id\":\"..\"}", TEMPLATE_URL,
           "http://api/u#..");
    expect("http://{h}/u", "{\"h\":\"..\"}", TEMPLATE_URL, "http://../u");
    /* The template's own dot segments are the operator's. */
    expect("http://api/a/../{id}", "{\"id\":\"x\"}", TEMPLATE_URL,
           "http://api/a/../x");
    /* Other modes are not URLs. */
    expect("/u/{id}/x", "{\"id\":\"..\"}", TEMPLATE_RAW, "/u/../x");
}

static void test_dot_encoding_respects_the_cap(void **state)
{
    (void)state;
    /* "/u/.." fits in 5 bytes; "/u/%2E%2E" needs 9. */
    expect_err("/u/{id}", "{\"id\":\"..\"}", TEMPLATE_URL, 5, FO_ETOOBIG,
               "5 bytes");
    char *out = NULL, err[128];
    assert_fo(FO_OK, render("/u/{id}", "{\"id\":\"..\"}", TEMPLATE_URL, 9, &out,
                            err, sizeof err));
    assert_string_equal(out, "/u/%2E%2E");
    free(out);
}

/* Renders body for item and returns the parsed document (caller decrefs);
 * fails unless the rendering is valid JSON. */
static json_t *render_json(const char *body, const char *item)
{
    char *out = NULL, err[128];
    fo_err e =
        render(body, item, TEMPLATE_JSON, 1 << 16, &out, err, sizeof err);
    if (e != FO_OK)
        fail_msg("'%s': %s: %s", body, fo_errname(e), err);
    json_error_t jerr;
    json_t *doc = json_loads(out, 0, &jerr);
    if (!doc)
        fail_msg("'%s' rendered invalid JSON: %s (%s)", body, out, jerr.text);
    free(out);
    return doc;
}

static void test_quoted_slot_string_cannot_break_out(void **state)
{
    (void)state;
    /* Quotes, backslashes and control characters stay string content. */
    static const char *const values[] = {
        "\"",
        "\\",
        "\\\"",
        "x\",\"admin\":true,\"y\":\"",
        "\\\",\"admin\":true,\"y\":\"\\",
        "a\nb\rc\td\x01\x1f",
        "}]",
        "{id}",
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        json_t *item = json_pack("{s:s}", "name", values[i]);
        char *item_json = json_dumps(item, 0);
        json_t *doc = render_json("{{\"name\":\"{name}\",\"k\":1}}", item_json);
        assert_int_equal(json_object_size(doc), 2);
        assert_string_equal(json_string_value(json_object_get(doc, "name")),
                            values[i]);
        json_decref(doc);
        free(item_json);
        json_decref(item);
    }
}

static void test_quoted_slot_other_values_become_strings(void **state)
{
    (void)state;
    const char *item = "{\"o\":{\"a\":\"x\\\"y\"},\"l\":[1,\"2\"],\"n\":42,"
                       "\"t\":true,\"z\":null}";
    expect("{{\"v\":\"{o}\"}}", item, TEMPLATE_JSON,
           "{\"v\":\"{\\\"a\\\":\\\"x\\\\\\\"y\\\"}\"}");
    expect("{{\"v\":\"{l}\"}}", item, TEMPLATE_JSON,
           "{\"v\":\"[1,\\\"2\\\"]\"}");
    expect("{{\"v\":\"{n}/{t}/{z}\"}}", item, TEMPLATE_JSON,
           "{\"v\":\"42/true/null\"}");
    json_t *doc = render_json("{{\"v\":\"{o}\"}}", item);
    assert_string_equal(json_string_value(json_object_get(doc, "v")),
                        "{\"a\":\"x\\\"y\"}");
    json_decref(doc);
    /* {*} inside a string is the item's JSON text as a string. */
    doc = render_json("{{\"all\":\"{*}\"}}", "{\"k\":\"\\\"\"}");
    assert_string_equal(json_string_value(json_object_get(doc, "all")),
                        "{\"k\":\"\\\"\"}");
    json_decref(doc);
}

static void test_unquoted_slot_keeps_json_text(void **state)
{
    (void)state;
    const char *item =
        "{\"o\":{\"a\":1},\"n\":42,\"s\":\"x\\\"y\",\"q\":\"\\\"\"}";
    /* Numbers and objects as JSON text, strings escaped without quotes. */
    expect("{{\"o\":{o},\"n\":{n}}}", item, TEMPLATE_JSON,
           "{\"o\":{\"a\":1},\"n\":42}");
    expect("[{s}]", item, TEMPLATE_JSON, "[x\\\"y]");
    /* Escaped quotes in a key, and strings after a quoted slot, are read
     * right: the third field is outside any string again. */
    expect("{{\"a\\\"b\":\"{s}\",\"c\":{o}}}", item, TEMPLATE_JSON,
           "{\"a\\\"b\":\"x\\\"y\",\"c\":{\"a\":1}}");
    expect("{{\"x\":\"{q}\",\"y\":{n}}}", item, TEMPLATE_JSON,
           "{\"x\":\"\\\"\",\"y\":42}");
}

static void test_field_after_backslash_in_string_refused(void **state)
{
    (void)state;
    expect_err("{{\"a\":\"x\\{v}\"}}", "{\"v\":\"\\\"\"}", TEMPLATE_JSON,
               1 << 16, FO_EINVAL, "backslash");
    /* A finished escape before the field is fine. */
    expect("{{\"a\":\"x\\\\{v}\"}}", "{\"v\":\"y\"}", TEMPLATE_JSON,
           "{\"a\":\"x\\\\y\"}");
    /* Only JSON mode reads the template as JSON. */
    expect("a\\{v}", "{\"v\":\"y\"}", TEMPLATE_RAW, "a\\y");
}

/* ---- ${ENV} ------------------------------------------------------------ */

static void expect_env(const char *src, fo_err want, const char *want_out,
                       const char *mention)
{
    fo_buf b;
    buf_init(&b, 4096);
    char err[128] = "";
    fo_err e = template_expand_env(src, &b, err, sizeof err);
    if (e != want)
        fail_msg("'%s': expected %s, got %s (%s)", src, fo_errname(want),
                 fo_errname(e), err);
    if (want_out)
        assert_string_equal(buf_str(&b), want_out);
    if (mention)
        assert_contains(err, mention);
    buf_fini(&b);
}

static void test_env_expansion(void **state)
{
    (void)state;
    assert_int_equal(setenv("FO_UNIT_TOKEN", "s3cr3t", 1), 0);
    assert_int_equal(setenv("FO_UNIT_EMPTY", "", 1), 0);
    expect_env("Bearer ${FO_UNIT_TOKEN}", FO_OK, "Bearer s3cr3t", NULL);
    expect_env("${FO_UNIT_TOKEN}${FO_UNIT_TOKEN}", FO_OK, "s3cr3ts3cr3t", NULL);
    expect_env("[${FO_UNIT_EMPTY}]", FO_OK, "[]", NULL);
    expect_env("no refs {id} $x", FO_OK, "no refs {id} $x", NULL);
    unsetenv("FO_UNIT_TOKEN");
    unsetenv("FO_UNIT_EMPTY");
}

static void test_env_dollar_dollar_is_literal(void **state)
{
    (void)state;
    assert_int_equal(setenv("FO_UNIT_TOKEN", "s3cr3t", 1), 0);
    expect_env("cost $$5", FO_OK, "cost $5", NULL);
    expect_env("$${FO_UNIT_TOKEN}", FO_OK, "${FO_UNIT_TOKEN}", NULL);
    expect_env("$$$${FO_UNIT_TOKEN}", FO_OK, "$${FO_UNIT_TOKEN}", NULL);
    expect_env("$$${FO_UNIT_TOKEN}", FO_OK, "$s3cr3t", NULL);
    unsetenv("FO_UNIT_TOKEN");
}

static void test_env_unset_variable_named(void **state)
{
    (void)state;
    unsetenv("FO_UNIT_NOT_SET");
    expect_env("x ${FO_UNIT_NOT_SET} y", FO_EMISSING, NULL, "FO_UNIT_NOT_SET");
}

static void test_env_unclosed_is_einval(void **state)
{
    (void)state;
    expect_env("abc ${FO_UNIT_TOKEN", FO_EINVAL, NULL, "column 5");
    expect_env("${}", FO_EINVAL, NULL, "column 1");
}

static void test_has_env(void **state)
{
    (void)state;
    assert_int_equal(template_has_env("Bearer ${TOKEN}"), 1);
    assert_int_equal(template_has_env("${A"), 1);
    assert_int_equal(template_has_env("plain {id}"), 0);
    assert_int_equal(template_has_env("$TOKEN"), 0);
    assert_int_equal(template_has_env(""), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_mode_percent_encodes),
        cmocka_unit_test(test_numbers_and_booleans_as_json_text),
        cmocka_unit_test(test_dotted_paths),
        cmocka_unit_test(test_missing_field_names_it),
        cmocka_unit_test(test_brace_literals),
        cmocka_unit_test(test_nfields_counts_references),
        cmocka_unit_test(test_object_or_array_in_url_rejected),
        cmocka_unit_test(test_parse_errors_give_column),
        cmocka_unit_test(test_json_mode_escapes_without_quotes),
        cmocka_unit_test(test_raw_mode_inserts_strings_as_is),
        cmocka_unit_test(test_star_is_the_whole_item),
        cmocka_unit_test(test_output_cap_gives_etoobig),
        cmocka_unit_test(test_dot_segment_values_are_encoded),
        cmocka_unit_test(test_dot_segment_from_several_parts),
        cmocka_unit_test(test_dots_outside_the_path_stay),
        cmocka_unit_test(test_dot_encoding_respects_the_cap),
        cmocka_unit_test(test_quoted_slot_string_cannot_break_out),
        cmocka_unit_test(test_quoted_slot_other_values_become_strings),
        cmocka_unit_test(test_unquoted_slot_keeps_json_text),
        cmocka_unit_test(test_field_after_backslash_in_string_refused),
        cmocka_unit_test(test_env_expansion),
        cmocka_unit_test(test_env_dollar_dollar_is_literal),
        cmocka_unit_test(test_env_unset_variable_named),
        cmocka_unit_test(test_env_unclosed_is_einval),
        cmocka_unit_test(test_has_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
