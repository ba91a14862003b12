/* test_log.c - common/log: peer-supplied text never breaks or forges a
 * line, and JSON lines carry an event's fields as keys. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>

#include "log.h"

static size_t esc(const char *in, char *out, size_t cap)
{
    return log_escape(out, cap, in);
}

static void control_bytes_become_hex(void **state)
{
    (void)state;
    char out[128];
    esc("a\nb\rc\td\x1b[31me\x7f", out, sizeof out);
    assert_string_equal(out, "a\\x0ab\\x0dc\\x09d\\x1b[31me\\x7f");
}

static void valid_utf8_is_kept(void **state)
{
    (void)state;
    char out[128];
    const char *s = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    assert_int_equal(esc(s, out, sizeof out), strlen(s));
    assert_string_equal(out, s);
}

static void invalid_utf8_becomes_hex(void **state)
{
    (void)state;
    char out[128];
    /* A lone continuation byte, an overlong '/', a surrogate, a cut
     * sequence at the end. */
    esc("x\x80y\xc0\xafz\xed\xa0\x80w\xe2\x82", out, sizeof out);
    assert_string_equal(out, "x\\x80y\\xc0\\xafz\\xed\\xa0\\x80w\\xe2\\x82");
}

static void escape_is_never_cut_in_two(void **state)
{
    (void)state;
    char out[6];
    /* "ab" fits, "\x0a" (4 bytes) does not: it is left out whole. */
    assert_int_equal(esc("ab\ncd", out, sizeof out), 2);
    assert_string_equal(out, "ab");
    char o2[4];
    esc("a\xc3\xa9", o2, sizeof o2); /* 'a' + 2-byte char + NUL fits */
    assert_string_equal(o2, "a\xc3\xa9");
    char o3[3];
    esc("a\xc3\xa9", o3, sizeof o3);
    assert_string_equal(o3, "a");
}

static void text_line_is_one_line(void **state)
{
    (void)state;
    log_init("worker", LOG_LVL_DEBUG, LOG_FMT_TEXT);
    char line[1024];
    size_t n = log_format_line(
        line, sizeof line, LOG_LVL_WARN, "item.retry", NULL, 0,
        "id=evil\n2026-01-01T00:00:00.000Z master[1] info job.done: forged");
    assert_int_equal(n, strlen(line));
    assert_ptr_equal(strchr(line, '\n'), line + n - 1);
    assert_non_null(strstr(line, " worker["));
    assert_non_null(strstr(line, "warn item.retry: id=evil\\x0a2026"));
}

static void json_line_has_fields_as_keys(void **state)
{
    (void)state;
    log_init("master", LOG_LVL_DEBUG, LOG_FMT_JSON);
    char line[2048];
    const log_field f[] = {
        LOG_S("item", "id-\"7\"\n\xff"),
        LOG_S("worker", "w1"),
        LOG_I("attempt", 3),
        LOG_I("delay_ms", 1500),
        LOG_I("http_status", 503),
        LOG_S("status", NULL),
    };
    size_t n = log_format_line(line, sizeof line, LOG_LVL_INFO, "item.retry", f,
                               sizeof f / sizeof f[0], "retry\tnow");
    assert_int_equal(line[n - 1], '\n');
    assert_null(memchr(line, '\n', n - 1));
    json_error_t jerr;
    json_t *o = json_loadb(line, n, 0, &jerr);
    if (!o)
        fail_msg("not JSON (%s): %s", jerr.text, line);
    assert_string_equal(json_string_value(json_object_get(o, "event")),
                        "item.retry");
    assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(o, "msg")),
                        "retry\\x09now");
    assert_string_equal(json_string_value(json_object_get(o, "item")),
                        "id-\"7\"\\x0a\\xff");
    assert_string_equal(json_string_value(json_object_get(o, "worker")), "w1");
    assert_int_equal(json_integer_value(json_object_get(o, "attempt")), 3);
    assert_int_equal(json_integer_value(json_object_get(o, "delay_ms")), 1500);
    assert_int_equal(json_integer_value(json_object_get(o, "http_status")),
                     503);
    assert_string_equal(json_string_value(json_object_get(o, "status")), "");
    json_decref(o);
    log_init("test", LOG_LVL_INFO, LOG_FMT_TEXT);
}

static void json_line_cut_short_is_still_one_line(void **state)
{
    (void)state;
    log_init("master", LOG_LVL_DEBUG, LOG_FMT_JSON);
    char line[64];
    size_t n = log_format_line(line, sizeof line, LOG_LVL_INFO, "e", NULL, 0,
                               "a long message that does not fit in the line");
    assert_int_equal(n, strlen(line));
    assert_int_equal(line[n - 1], '\n');
    assert_int_equal(line[n - 2], '}');
    log_init("test", LOG_LVL_INFO, LOG_FMT_TEXT);
}

static int evaluated;
static const char *count_eval(void)
{
    evaluated++;
    return "x";
}

static void fields_below_the_level_are_not_evaluated(void **state)
{
    (void)state;
    log_init("test", LOG_LVL_WARN, LOG_FMT_TEXT);
    evaluated = 0;
    LOG_KV(LOG_LVL_DEBUG, "t.debug", LOG_FIELDS(LOG_S("item", count_eval())),
           "%s", count_eval());
    assert_int_equal(evaluated, 0);
    log_init("test", LOG_LVL_INFO, LOG_FMT_TEXT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(control_bytes_become_hex),
        cmocka_unit_test(valid_utf8_is_kept),
        cmocka_unit_test(invalid_utf8_becomes_hex),
        cmocka_unit_test(escape_is_never_cut_in_two),
        cmocka_unit_test(text_line_is_one_line),
        cmocka_unit_test(json_line_has_fields_as_keys),
        cmocka_unit_test(json_line_cut_short_is_still_one_line),
        cmocka_unit_test(fields_below_the_level_are_not_evaluated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
