/*
 * fuzz_rate.c - the small text parsers behind the options: rates
 * (gcra_parse_rate), durations, sizes, integers and log levels.
 *
 * The input, cut at its first NUL, is handed to each parser. Besides
 * crashes and undefined behaviour, accepted values are checked: a rate is
 * at least 1 per one of the three periods and formats back to itself, and
 * the limiter stays monotonic when fed it; durations and sizes are never
 * negative; integers respect the bounds asked for. A failure must come with
 * a message for the user.
 */
#include "fmacros.h"

#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "error.h"
#include "gcra.h"
#include "log.h"
#include "util.h"

static void fail(const char *what, const char *input)
{
    fprintf(stderr, "fuzz_rate: %s (input '%.100s')\n", what, input);
    abort();
}

static void check_rate(const char *s)
{
    gcra_rate r = {0, 0};
    char err[256] = "";
    fo_err rc = gcra_parse_rate(s, &r, err, sizeof err);
    if (rc != FO_OK) {
        if (rc != FO_EINVAL || err[0] == '\0')
            fail("gcra_parse_rate failed without FO_EINVAL and a reason", s);
        return;
    }
    if (r.count < 1 ||
        (r.period_ns != FO_NS_PER_S && r.period_ns != 60 * FO_NS_PER_S &&
         r.period_ns != 3600 * FO_NS_PER_S))
        fail("gcra_parse_rate accepted an impossible rate", s);
    char text[64];
    gcra_format_rate(r, text, sizeof text);
    gcra_rate back;
    if (gcra_parse_rate(text, &back, err, sizeof err) != FO_OK ||
        back.count != r.count || back.period_ns != r.period_ns)
        fail("a formatted rate does not parse back to itself", s);

    /* The limiter with this rate, a burst and a margin: spend times must
     * never go backwards and never precede "now". */
    gcra *g = gcra_new();
    int64_t burst = 1 + (int64_t)(strlen(s) % 7);
    if (gcra_add(g, r, burst, 10 * FO_NS_PER_MS) != FO_OK)
        fail("gcra_add refused a parsed rate", s);
    int64_t now = INT64_C(1000000000), last = 0;
    for (int i = 0; i < 16; i++) {
        int64_t t = gcra_take(g, now);
        if (t < now || t < last)
            fail("gcra_take went backwards", s);
        last = t;
        now += (int64_t)(i % 3) * FO_NS_PER_MS;
    }
    gcra_set_scale(g, 0.5);
    if (gcra_peek(g, now) < now)
        fail("gcra_peek before now", s);
    (void)gcra_rate_per_s(g);
    gcra_destroy(&g);
    gcra_destroy(&g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = xstrndup((const char *)data, size); /* stops at a NUL */

    check_rate(s);
    /* As the master reads --rate: comma-separated, leading spaces skipped. */
    char *copy = xstrdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        check_rate(tok);
    }
    free(copy);

    int64_t v = -1;
    if (util_parse_duration_ms(s, &v) == 0 && v < 0)
        fail("a negative duration", s);
    v = -1;
    if (util_parse_size(s, &v) == 0 && v < 0)
        fail("a negative size", s);
    static const int64_t bounds[][2] = {
        {INT64_MIN, INT64_MAX}, {0, 65533}, {1, 1000}, {-10, 10}};
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
        if (util_parse_i64(s, bounds[i][0], bounds[i][1], &v) == 0 &&
            (v < bounds[i][0] || v > bounds[i][1]))
            fail("util_parse_i64 returned a value out of bounds", s);
    }
    log_level lvl;
    if (log_parse_level(s, &lvl) == 0 &&
        (lvl < LOG_LVL_DEBUG || lvl > LOG_LVL_ERROR))
        fail("log_parse_level returned no level", s);
    log_format fmt;
    (void)log_parse_format(s, &fmt);
    free(s);
    return 0;
}
