/* test_jsonw.c - JSON written by hand, the copyable check, and the record
 * line that uses both (against jansson's reading of the same line). */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "record.h"

static int copyable(const char *s)
{
    size_t a, n;
    return jsonw_copyable(s, strlen(s), &a, &n);
}

static void test_copyable_only_when_safe(void **state)
{
    (void)state;
    const char *yes[] = {
        "{}",
        "[]",
        "{\"a\":1}",
        "{\"a\":[1,2,{\"b\":null}],\"c\":true}",
        "\"text\"",
        "0",
        "-12.5",
        "false",
        "  {\"a\":\"b\"}\n",
        "{\"s\":\"caf\xC3\xA9 \\u00e9 \\ud83d\\ude00 \\\" \\\\ \\/\"}",
        "123456789012345678",
        "[\"\xF0\x9F\x98\x80\"]"};
    const char *no[] = {"",
                        " ",
                        "{\"a\": 1}",
                        "{ }",
                        "[1, 2]",
                        "{\"a\":1}x",
                        "{\"a\":1}{}",
                        "{\"a\":1",
                        "{a:1}",
                        "[1,]",
                        "{\"a\":1,}",
                        "01",
                        "1.",
                        "-",
                        "1e5",
                        "1234567890123456789",
                        "\"\\u0000\"",
                        "\"\\ud800\"",
                        "\"\\udc00\"",
                        "\"\\x\"",
                        "\"a\nb\"",
                        "\"\xC3\"",
                        "\"\xED\xA0\x80\"",
                        "tru",
                        "nul",
                        "NaN",
                        "[\"\xFF\"]",
                        "\"unterminated"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        if (!copyable(yes[i]))
            fail_msg("should be copyable: %s", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        if (copyable(no[i]))
            fail_msg("should not be copyable: %s", no[i]);
    /* Deep nesting takes the slow path rather than the stack. */
    char deep[2 * JSONW_MAX_DEPTH + 8];
    size_t k = 0;
    for (int i = 0; i < JSONW_MAX_DEPTH + 2; i++)
        deep[k++] = '[';
    for (int i = 0; i < JSONW_MAX_DEPTH + 2; i++)
        deep[k++] = ']';
    assert_false(jsonw_copyable(deep, k, &(size_t){0}, &(size_t){0}));
}

static void test_strings_escape_like_jansson(void **state)
{
    (void)state;
    const char in[] = "a\"b\\c\n\t\x01 caf\xC3\xA9 \xFF end";
    jsonw w = {0};
    jsonw_str(&w, in, sizeof in - 1);
    assert_string_equal(w.p, "\"a\\\"b\\\\c\\n\\t\\u0001 caf\xC3\xA9 "
                             "\xEF\xBF\xBD end\"");
    json_error_t e;
    json_t *v = json_loads(w.p, JSON_DECODE_ANY, &e);
    assert_non_null(v);
    json_decref(v);
    free(w.p);
}

/* The line reads back (with jansson, as the repair scan does) to the same
 * fields whichever path the response took. */
static void test_record_line_reads_back(void **state)
{
    (void)state;
    const char *resps[] = {"{\"ok\":true,\"n\":[1,2.5]}\n",
                           "{\n  \"pretty\": 1\n}",
                           "1e3",
                           "plain text",
                           "bad \xFF bytes",
                           "nul\0inside"};
    size_t lens[] = {0, 0, 0, 0, 0, 10};
    for (size_t i = 0; i < sizeof resps / sizeof *resps; i++) {
        size_t rl = lens[i] ? lens[i] : strlen(resps[i]);
        record r = {.id = "it\"em-1",
                    .status = ITEM_OK,
                    .http_status = 200,
                    .attempts = 2,
                    .batch = 7,
                    .line = 42,
                    .latency_ms = 31,
                    .response = resps[i],
                    .response_len = rl,
                    .worker = "w1",
                    .started_us = 1765015200120000,
                    .finished_us = 1765015201433000};
        size_t len;
        char *line = record_format(&r, &len);
        assert_int_equal(line[len - 1], '\n');
        assert_null(memchr(line, '\n', len - 1));
        json_error_t e;
        json_t *o = json_loadb(line, len, 0, &e);
        if (!o)
            fail_msg("%s: %s", line, e.text);
        assert_string_equal(json_string_value(json_object_get(o, "id")),
                            "it\"em-1");
        assert_int_equal(json_integer_value(json_object_get(o, "line")), 42);
        assert_string_equal(json_string_value(json_object_get(o, "started_at")),
                            "2025-12-06T10:00:00.120Z");
        json_t *resp = json_object_get(o, "response");
        switch (i) {
        case 0:
            assert_true(json_is_true(json_object_get(resp, "ok")));
            /* copied as it came, without the newline */
            assert_non_null(strstr(line, "\"response\":{\"ok\":true,"
                                         "\"n\":[1,2.5]},\"worker\""));
            break;
        case 1:
            assert_int_equal(
                json_integer_value(json_object_get(resp, "pretty")), 1);
            break;
        case 2:
            assert_true(json_is_real(resp));
            break;
        case 3:
            assert_string_equal(json_string_value(resp), "plain text");
            break;
        default: /* not UTF-8, or a NUL: only the size */
            assert_null(resp);
            assert_int_equal(
                json_integer_value(json_object_get(o, "response_bytes")),
                (json_int_t)rl);
        }
        json_decref(o);
        free(line);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copyable_only_when_safe),
        cmocka_unit_test(test_strings_escape_like_jansson),
        cmocka_unit_test(test_record_line_reads_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
