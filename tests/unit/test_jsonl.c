/* test_jsonl.c - the capped streaming line reader (common/jsonl.h), over
 * temp files and pipes. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "error.h"
#include "jsonl.h"
#include "unit_assert.h"

/* Returns a read/write fd on an unlinked temp file holding data, at 0. */
static int temp_fd(const void *data, size_t len)
{
    char path[] = "/tmp/fo_unit_jsonl_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

static int temp_fd_str(const char *s)
{
    return temp_fd(s, strlen(s));
}

/* Reads the next line and checks code, text, number and offsets. */
static void expect_line(jsonl *r, fo_err code, const char *text,
                        int64_t line_no, int64_t offset, int64_t end_offset)
{
    jsonl_line ln;
    memset(&ln, 0, sizeof ln);
    fo_err e = jsonl_next(r, &ln);
    if (e != code)
        fail_msg("line %lld: expected %s, got %s", (long long)line_no,
                 fo_errname(code), fo_errname(e));
    if (text) {
        assert_int_equal(ln.len, strlen(text));
        assert_memory_equal(ln.data, text, ln.len);
    }
    assert_int_equal(ln.line_no, line_no);
    assert_int_equal(ln.offset, offset);
    assert_int_equal(ln.end_offset, end_offset);
}

static void expect_eof(jsonl *r)
{
    jsonl_line ln;
    assert_fo(FO_EEOF, jsonl_next(r, &ln));
    assert_fo(FO_EEOF, jsonl_next(r, &ln)); /* and again */
}

static void test_lines_numbers_and_offsets(void **state)
{
    (void)state;
    int fd = temp_fd_str("{\"a\":1}\n{\"b\":22}\nxyz\n");
    jsonl *r = jsonl_new(fd, 1024, 0, 1);
    expect_line(r, FO_OK, "{\"a\":1}", 1, 0, 8);
    expect_line(r, FO_OK, "{\"b\":22}", 2, 8, 17);
    expect_line(r, FO_OK, "xyz", 3, 17, 21);
    expect_eof(r);
    jsonl_destroy(&r);
    assert_null(r);
    jsonl_destroy(&r); /* NULL-safe */
    close(fd);
}

static void test_last_line_without_newline(void **state)
{
    (void)state;
    int fd = temp_fd_str("one\ntwo");
    jsonl *r = jsonl_new(fd, 1024, 0, 1);
    expect_line(r, FO_OK, "one", 1, 0, 4);
    expect_line(r, FO_OK, "two", 2, 4, 7);
    expect_eof(r);
    jsonl_destroy(&r);
    close(fd);
}

static void test_empty_input_is_eof(void **state)
{
    (void)state;
    int fd = temp_fd_str("");
    jsonl *r = jsonl_new(fd, 1024, 0, 1);
    expect_eof(r);
    jsonl_destroy(&r);
    close(fd);
}

static void test_empty_lines_are_zero_length(void **state)
{
    (void)state;
    int fd = temp_fd_str("\n\nx\n\n");
    jsonl *r = jsonl_new(fd, 1024, 0, 1);
    expect_line(r, FO_OK, "", 1, 0, 1);
    expect_line(r, FO_OK, "", 2, 1, 2);
    expect_line(r, FO_OK, "x", 3, 2, 4);
    expect_line(r, FO_OK, "", 4, 4, 5);
    expect_eof(r);
    jsonl_destroy(&r);
    close(fd);
}

static void test_nul_bytes_preserved(void **state)
{
    (void)state;
    static const char data[] = "a\0b\n\0\n";
    int fd = temp_fd(data, sizeof data - 1);
    jsonl *r = jsonl_new(fd, 1024, 0, 1);
    jsonl_line ln;
    assert_fo(FO_OK, jsonl_next(r, &ln));
    assert_int_equal(ln.len, 3);
    assert_memory_equal(ln.data, "a\0b", 3);
    assert_int_equal(ln.end_offset, 4);
    assert_fo(FO_OK, jsonl_next(r, &ln));
    assert_int_equal(ln.len, 1);
    assert_int_equal(ln.data[0], '\0');
    expect_eof(r);
    jsonl_destroy(&r);
    close(fd);
}

static void test_line_at_cap_is_accepted(void **state)
{
    (void)state;
    int fd = temp_fd_str("0123456789\n");
    jsonl *r = jsonl_new(fd, 10, 0, 1);
    expect_line(r, FO_OK, "0123456789", 1, 0, 11);
    expect_eof(r);
    jsonl_destroy(&r);
    close(fd);
}

static void test_overlong_line_in_buffer_is_skipped(void **state)
{
    (void)state;
    int fd = temp_fd_str("short\n0123456789ABCDEF\nafter\n");
    jsonl *r = jsonl_new(fd, 10, 0, 1);
    expect_line(r, FO_OK, "short", 1, 0, 6);
    jsonl_line ln;
    assert_fo(FO_ETOOBIG, jsonl_next(r, &ln));
    assert_int_equal(ln.line_no, 2);
    assert_int_equal(ln.offset, 6);
    assert_int_equal(ln.end_offset, 23);
    assert_int_equal(ln.len, 16);
    expect_line(r, FO_OK, "after", 3, 23, 29);
    expect_eof(r);
    jsonl_destroy(&r);
    close(fd);
}

static void test_overlong_line_spanning_reads_is_skipped(void **state)
{
    (void)state;
    const size_t big = 300000; /* several 64 KiB reads */
    char *data = malloc(big + 32);
    assert_non_null(data);
    memcpy(data, "first\n", 6);
    memset(data + 6, 'x', big);
    memcpy(data + 6 + big, "\nnext\n", 6);
    int fd = temp_fd(data, big + 12);
    free(data);
    jsonl *r = jsonl_new(fd, 1024, 0, 1);
    expect_line(r, FO_OK, "first", 1, 0, 6);
    jsonl_line ln;
    assert_fo(FO_ETOOBIG, jsonl_next(r, &ln));
    assert_int_equal(ln.line_no, 2);
    assert_int_equal(ln.offset, 6);
    assert_int_equal(ln.end_offset, (int64_t)(6 + big + 1));
    assert_int_equal(ln.len, big);
    expect_line(r, FO_OK, "next", 3, (int64_t)(7 + big), (int64_t)(12 + big));
    expect_eof(r);
    jsonl_destroy(&r);
    close(fd);
}

static void test_overlong_last_line_without_newline(void **state)
{
    (void)state;
    int fd = temp_fd_str("ok\n0123456789ABCDEF");
    jsonl *r = jsonl_new(fd, 10, 0, 1);
    expect_line(r, FO_OK, "ok", 1, 0, 3);
    jsonl_line ln;
    assert_fo(FO_ETOOBIG, jsonl_next(r, &ln));
    assert_int_equal(ln.line_no, 2);
    assert_int_equal(ln.offset, 3);
    assert_int_equal(ln.end_offset, 19);
    assert_int_equal(ln.len, 16);
    expect_eof(r);
    jsonl_destroy(&r);
    close(fd);
}

static void test_start_offset_and_first_line_no(void **state)
{
    (void)state;
    int fd = temp_fd_str("skipped\nsecond\nthird\n");
    /* The caller positions the fd at the resume point. */
    assert_int_equal(lseek(fd, 8, SEEK_SET), 8);
    jsonl *r = jsonl_new(fd, 1024, 8, 2);
    expect_line(r, FO_OK, "second", 2, 8, 15);
    expect_line(r, FO_OK, "third", 3, 15, 21);
    expect_eof(r);
    jsonl_destroy(&r);
    close(fd);
}

/* Formats test line i (without its newline) into buf. */
static int numbered_line(char *buf, size_t cap, int i)
{
    static const char pad[] = "....................................";
    return snprintf(buf, cap, "{\"i\":%d,\"pad\":\"%.*s\"}", i, i % 37, pad);
}

static void test_many_lines_across_chunks(void **state)
{
    (void)state;
    /* ~1.5 MB of lines of varying length: offsets must chain exactly
     * across many 64 KiB reads and buffer compactions. */
    enum { NLINES = 40000 };
    size_t cap = 2 << 20, len = 0;
    char *data = malloc(cap);
    assert_non_null(data);
    for (int i = 0; i < NLINES; i++) {
        len += (size_t)numbered_line(data + len, cap - len, i);
        data[len++] = '\n';
    }
    int fd = temp_fd(data, len);
    free(data);
    jsonl *r = jsonl_new(fd, 256, 0, 1);
    int64_t expect_off = 0;
    char want[128];
    for (int i = 0; i < NLINES; i++) {
        jsonl_line ln;
        assert_fo(FO_OK, jsonl_next(r, &ln));
        int wl = numbered_line(want, sizeof want, i);
        assert_int_equal(ln.len, (size_t)wl);
        assert_memory_equal(ln.data, want, ln.len);
        assert_int_equal(ln.line_no, i + 1);
        assert_int_equal(ln.offset, expect_off);
        assert_int_equal(ln.end_offset, expect_off + wl + 1);
        expect_off = ln.end_offset;
    }
    assert_int_equal(expect_off, (int64_t)len);
    expect_eof(r);
    jsonl_destroy(&r);
    close(fd);
}

static void test_nonblocking_pipe_gives_eagain(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    int fl = fcntl(p[0], F_GETFL);
    assert_int_equal(fcntl(p[0], F_SETFL, fl | O_NONBLOCK), 0);
    jsonl *r = jsonl_new(p[0], 1024, 0, 1);
    jsonl_line ln;
    assert_fo(FO_EAGAIN, jsonl_next(r, &ln));
    assert_int_equal(write(p[1], "a\nb", 3), 3);
    expect_line(r, FO_OK, "a", 1, 0, 2);
    /* "b" has no newline yet and the writer is still open. */
    assert_fo(FO_EAGAIN, jsonl_next(r, &ln));
    assert_int_equal(write(p[1], "c\n", 2), 2);
    expect_line(r, FO_OK, "bc", 2, 2, 5);
    assert_int_equal(write(p[1], "d", 1), 1);
    close(p[1]);
    expect_line(r, FO_OK, "d", 3, 5, 6);
    expect_eof(r);
    jsonl_destroy(&r);
    close(p[0]);
}

static void test_overlong_line_arriving_in_pieces(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    int fl = fcntl(p[0], F_GETFL);
    assert_int_equal(fcntl(p[0], F_SETFL, fl | O_NONBLOCK), 0);
    jsonl *r = jsonl_new(p[0], 10, 0, 1);
    jsonl_line ln;
    assert_int_equal(write(p[1], "0123456789AB", 12), 12);
    assert_fo(FO_EAGAIN, jsonl_next(r, &ln));
    assert_int_equal(write(p[1], "CDEF", 4), 4);
    assert_fo(FO_EAGAIN, jsonl_next(r, &ln));
    assert_int_equal(write(p[1], "G\nok\n", 5), 5);
    assert_fo(FO_ETOOBIG, jsonl_next(r, &ln));
    assert_int_equal(ln.line_no, 1);
    assert_int_equal(ln.offset, 0);
    assert_int_equal(ln.end_offset, 18);
    assert_int_equal(ln.len, 17);
    expect_line(r, FO_OK, "ok", 2, 18, 21);
    close(p[1]);
    expect_eof(r);
    jsonl_destroy(&r);
    close(p[0]);
}

static void test_bad_fd_gives_eio(void **state)
{
    (void)state;
    int fd = temp_fd_str("x\n");
    close(fd); /* now a closed descriptor: read() fails with EBADF */
    jsonl *r = jsonl_new(fd, 1024, 0, 1);
    jsonl_line ln;
    assert_fo(FO_EIO, jsonl_next(r, &ln));
    assert_int_equal(errno, EBADF);
    jsonl_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_numbers_and_offsets),
        cmocka_unit_test(test_last_line_without_newline),
        cmocka_unit_test(test_empty_input_is_eof),
        cmocka_unit_test(test_empty_lines_are_zero_length),
        cmocka_unit_test(test_nul_bytes_preserved),
        cmocka_unit_test(test_line_at_cap_is_accepted),
        cmocka_unit_test(test_overlong_line_in_buffer_is_skipped),
        cmocka_unit_test(test_overlong_line_spanning_reads_is_skipped),
        cmocka_unit_test(test_overlong_last_line_without_newline),
        cmocka_unit_test(test_start_offset_and_first_line_no),
        cmocka_unit_test(test_many_lines_across_chunks),
        cmocka_unit_test(test_nonblocking_pipe_gives_eagain),
        cmocka_unit_test(test_overlong_line_arriving_in_pieces),
        cmocka_unit_test(test_bad_fd_gives_eio),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
