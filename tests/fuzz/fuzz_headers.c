/*
 * fuzz_headers.c - response-header parsing in the worker.
 *
 * Two layers, as the worker runs them:
 *  1. worker/http.c's libcurl header callback (on_header, static: reached by
 *     including http.c), fed the input one header line at a time, each in
 *     an exactly sized heap copy so that a read past the line is caught;
 *     the Retry-After value it keeps then goes through
 *  2. backoff_parse_retry_after(), with the worker's cap, as
 *     worker/retry.c:retry_decide() does.
 * The whole input is also parsed as a bare Retry-After value against a few
 * clocks and caps. Checked: an accepted delay lies in [0, cap], and a
 * delta-seconds value gives exactly min(seconds * 1000, cap).
 */
#include "fmacros.h"

#include "http.c" /* NOLINT(bugprone-suspicious-include) */

#include <ctype.h>
#include <stddef.h>
#include <stdint.h>

#include "backoff.h"
#include "retry.h" /* RETRY_AFTER_CAP_MS only; retry.c is not linked */

static void fail(const char *what, const char *value)
{
    fprintf(stderr, "fuzz_headers: %s (value '%.100s')\n", what, value);
    abort();
}

static void check_retry_after(const char *v, int64_t now, int64_t cap)
{
    int64_t ms = -7;
    if (backoff_parse_retry_after(v, now, cap, &ms) != 0)
        return;
    if (ms < 0 || ms > cap)
        fail("Retry-After delay outside [0, cap]", v);
    /* Delta-seconds: 1*DIGIT, optional surrounding blanks. */
    const char *p = v;
    while (*p == ' ' || *p == '\t')
        p++;
    const char *d = p;
    while (isdigit((unsigned char)*p))
        p++;
    const char *q = p;
    while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
        q++;
    while (p - d > 1 && *d == '0')
        d++; /* leading zeros do not count towards the 9 digits */
    if (p > d && *q == '\0' && p - d <= 9) {
        long long secs = strtoll(d, NULL, 10);
        long long want = secs * 1000 > cap ? cap : secs * 1000;
        if (ms != want)
            fail("delta-seconds parsed to the wrong delay", v);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Layer 1 and 2: header lines through the curl callback. */
    call *c = xcalloc(1, sizeof *c);
    const uint8_t *p = data, *end = data + size;
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
        char *line = xmalloc(n ? n : 1);
        memcpy(line, p, n);
        if (on_header(line, 1, n, c) != n)
            fail("on_header did not consume the whole line", "");
        free(line);
        p += n;
    }
    if (c->retry_after) {
        int64_t ms;
        if (backoff_parse_retry_after(c->retry_after, clock_wall_ms(),
                                      RETRY_AFTER_CAP_MS, &ms) == 0 &&
            (ms < 0 || ms > RETRY_AFTER_CAP_MS))
            fail("Retry-After from a header outside [0, cap]", c->retry_after);
    }
    call_free(c);

    /* The input as one bare value. */
    char *v = xstrndup((const char *)data, size);
    static const int64_t nows[] = {0, INT64_C(1732490000000),
                                   INT64_C(253402300799000)};
    static const int64_t caps[] = {0, 1, RETRY_AFTER_CAP_MS, INT64_MAX / 4};
    for (size_t i = 0; i < sizeof nows / sizeof nows[0]; i++)
        for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++)
            check_retry_after(v, nows[i], caps[k]);
    free(v);
    return 0;
}
