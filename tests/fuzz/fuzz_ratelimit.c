/*
 * fuzz_ratelimit.c - RateLimit / X-RateLimit response-header parsing
 * (common/ratelimit.h).
 *
 * The input is split into header lines, each fed to ratelimit_header() in an
 * exactly sized heap copy (libcurl's lines are not NUL-terminated), against
 * a clock taken from the first bytes. Checked besides crashes: every field
 * stays either -1 (unknown) or a non-negative number, a window is never
 * zero, and a line that is not "Name: value" is never understood.
 */
#include "fmacros.h"

#include <stddef.h>
#include <stdint.h>

#include "ratelimit.h"
#include "util.h"

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_ratelimit: %s\n", what);
    abort();
}

static void check(const ratelimit_info *ri)
{
    if (ri->limit < -1 || ri->remaining < -1 || ri->reset_ms < -1 ||
        ri->window_ms < -1 || ri->window_ms == 0)
        fail("a field is neither unknown nor a sane number");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t now = INT64_C(1732490000000);
    if (size >= 1 && data[0] == 0xff)
        now = 0;
    ratelimit_info ri;
    ratelimit_init(&ri);
    check(&ri);
    if (ratelimit_known(&ri))
        fail("known right after init");
    const uint8_t *p = data, *end = data + size;
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
        char *line = xmalloc(n ? n : 1);
        memcpy(line, p, n);
        int got = ratelimit_header(&ri, line, n, now);
        if (got != 0 && got != 1)
            fail("ratelimit_header returned neither 0 nor 1");
        if (got && !memchr(line, ':', n))
            fail("understood a line without a colon");
        if (got && !ratelimit_known(&ri) && ri.window_ms < 0)
            fail("understood a header but learned nothing");
        check(&ri);
        free(line);
        p += n;
    }
    return 0;
}
