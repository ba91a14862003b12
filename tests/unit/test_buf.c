/* test_buf.c - the capped growable buffer (common/buf.h). */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "buf.h"
#include "error.h"
#include "unit_assert.h"

static void test_new_buffer_is_empty_string(void **state)
{
    (void)state;
    fo_buf b;
    buf_init(&b, 16);
    assert_int_equal(b.len, 0);
    assert_string_equal(buf_str(&b), "");
    buf_fini(&b);
}

static void test_append_within_cap(void **state)
{
    (void)state;
    fo_buf b;
    buf_init(&b, 16);
    assert_fo(FO_OK, buf_append(&b, "hello", 5));
    assert_fo(FO_OK, buf_puts(&b, " world"));
    assert_int_equal(b.len, 11);
    assert_string_equal(buf_str(&b), "hello world");
    assert_int_equal(b.data[b.len], '\0');
    buf_fini(&b);
}

static void test_append_exactly_to_cap(void **state)
{
    (void)state;
    fo_buf b;
    buf_init(&b, 8);
    assert_fo(FO_OK, buf_append(&b, "12345678", 8));
    assert_int_equal(b.len, 8);
    assert_string_equal(buf_str(&b), "12345678");
    assert_fo(FO_OK, buf_append(&b, "", 0));
    assert_fo(FO_ETOOBIG, buf_append(&b, "9", 1));
    assert_int_equal(b.len, 8);
    buf_fini(&b);
}

static void test_append_past_cap_leaves_content_unchanged(void **state)
{
    (void)state;
    fo_buf b;
    buf_init(&b, 10);
    assert_fo(FO_OK, buf_puts(&b, "abcdef"));
    assert_fo(FO_ETOOBIG, buf_puts(&b, "ghijk")); /* 11 > 10 */
    assert_int_equal(b.len, 6);
    assert_string_equal(buf_str(&b), "abcdef");
    /* A smaller append still fits afterwards. */
    assert_fo(FO_OK, buf_puts(&b, "ghij"));
    assert_string_equal(buf_str(&b), "abcdefghij");
    buf_fini(&b);
}

static void test_zero_cap_refuses_any_byte(void **state)
{
    (void)state;
    fo_buf b;
    buf_init(&b, 0);
    assert_fo(FO_ETOOBIG, buf_append(&b, "x", 1));
    assert_int_equal(b.len, 0);
    assert_string_equal(buf_str(&b), "");
    buf_fini(&b);
}

static void test_binary_data_with_nul(void **state)
{
    (void)state;
    fo_buf b;
    buf_init(&b, 64);
    assert_fo(FO_OK, buf_append(&b, "a\0b", 3));
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "a\0b", 4);
    buf_fini(&b);
}

static void test_growth_over_many_appends(void **state)
{
    (void)state;
    fo_buf b;
    static const char digits[] = "0123456789";
    buf_init(&b, 100000);
    for (int i = 0; i < 10000; i++)
        assert_fo(FO_OK, buf_append(&b, &digits[i % 10], 1));
    assert_int_equal(b.len, 10000);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(b.data[i], '0' + i % 10);
    assert_int_equal(b.data[b.len], '\0');
    buf_fini(&b);
}

static void test_printf_short(void **state)
{
    (void)state;
    fo_buf b;
    buf_init(&b, 64);
    assert_fo(FO_OK, buf_printf(&b, "%s=%d", "n", 42));
    assert_fo(FO_OK, buf_printf(&b, ";%05.1f", 2.5));
    assert_string_equal(buf_str(&b), "n=42;002.5");
    buf_fini(&b);
}

static void test_printf_long_output(void **state)
{
    (void)state;
    char big[5001];
    for (size_t i = 0; i < 5000; i++)
        big[i] = (char)('a' + i % 26);
    big[5000] = '\0';
    fo_buf b;
    buf_init(&b, 1 << 20);
    assert_fo(FO_OK, buf_puts(&b, "<"));
    assert_fo(FO_OK, buf_printf(&b, "%s|%d", big, 7));
    assert_int_equal(b.len, 1 + 5000 + 2);
    assert_int_equal(b.data[0], '<');
    assert_memory_equal(b.data + 1, big, 5000);
    assert_string_equal(b.data + 5001, "|7");
    buf_fini(&b);
}

static void test_printf_past_cap_leaves_content_unchanged(void **state)
{
    (void)state;
    fo_buf b;
    buf_init(&b, 300);
    assert_fo(FO_OK, buf_puts(&b, "keep"));
    /* Short path (fits the internal 256-byte scratch) ... */
    assert_fo(FO_ETOOBIG, buf_printf(&b, "%0200d%0200d", 1, 2));
    assert_string_equal(buf_str(&b), "keep");
    /* ... and the long path. */
    assert_fo(FO_ETOOBIG, buf_printf(&b, "%0400d", 3));
    assert_int_equal(b.len, 4);
    assert_string_equal(buf_str(&b), "keep");
    buf_fini(&b);
}

static void test_take_transfers_ownership(void **state)
{
    (void)state;
    fo_buf b;
    buf_init(&b, 64);
    assert_fo(FO_OK, buf_puts(&b, "owned"));
    char *s = buf_take(&b);
    assert_string_equal(s, "owned");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_string_equal(buf_str(&b), "");
    /* The buffer is reusable and independent of the taken string. */
    assert_fo(FO_OK, buf_puts(&b, "again"));
    assert_string_equal(s, "owned");
    assert_string_equal(buf_str(&b), "again");
    free(s);
    buf_fini(&b);
}

static void test_take_empty_returns_heap_empty_string(void **state)
{
    (void)state;
    fo_buf b;
    buf_init(&b, 64);
    char *s = buf_take(&b);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
    buf_fini(&b);
}

static void test_reset_keeps_storage(void **state)
{
    (void)state;
    fo_buf b;
    buf_init(&b, 64);
    assert_fo(FO_OK, buf_puts(&b, "something"));
    size_t alloc = b.alloc;
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.alloc, alloc);
    assert_string_equal(buf_str(&b), "");
    assert_fo(FO_OK, buf_puts(&b, "x"));
    assert_string_equal(buf_str(&b), "x");
    buf_fini(&b);
}

static void test_fini_twice_is_safe_and_reusable(void **state)
{
    (void)state;
    fo_buf b;
    buf_init(&b, 64);
    assert_fo(FO_OK, buf_puts(&b, "data"));
    buf_fini(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    buf_fini(&b);
    assert_fo(FO_OK, buf_puts(&b, "more"));
    assert_string_equal(buf_str(&b), "more");
    buf_fini(&b);
    buf_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_buffer_is_empty_string),
        cmocka_unit_test(test_append_within_cap),
        cmocka_unit_test(test_append_exactly_to_cap),
        cmocka_unit_test(test_append_past_cap_leaves_content_unchanged),
        cmocka_unit_test(test_zero_cap_refuses_any_byte),
        cmocka_unit_test(test_binary_data_with_nul),
        cmocka_unit_test(test_growth_over_many_appends),
        cmocka_unit_test(test_printf_short),
        cmocka_unit_test(test_printf_long_output),
        cmocka_unit_test(test_printf_past_cap_leaves_content_unchanged),
        cmocka_unit_test(test_take_transfers_ownership),
        cmocka_unit_test(test_take_empty_returns_heap_empty_string),
        cmocka_unit_test(test_reset_keeps_storage),
        cmocka_unit_test(test_fini_twice_is_safe_and_reusable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
