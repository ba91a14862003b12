/*
 * gcra.h - the token budget's rate limiter: GCRA over several limits at once.
 *
 * Each limit l ("1000/min") keeps a theoretical arrival time TAT_l, an
 * emission interval T_l = (period + margin) / count and a tolerance
 * tau_l = T_l * (burst - 1). The next token may be spent at
 *     t = max(now, max_l(TAT_l - tau_l))
 * and taking it moves every TAT_l to max(TAT_l, t) + T_l. Because t is a
 * time, not a yes/no, a grant of k tokens carries k paced spend times and a
 * worker never fires them at once.
 *
 * The margin: the API counts arrivals in its own windows, and arrivals are
 * emission times plus network and scheduling jitter. Spreading a small
 * allowance (default 10 ms) over each window keeps jitter from pushing two
 * windows' worth of requests into one; it costs margin/period of the rate
 * (1% of 100/s, 0.02% of 1000/min).
 *
 * All functions take "now" in nanoseconds of a monotonic clock; nothing here
 * reads a clock, so tests drive it with a fake one.
 */
#ifndef FANOUT_GCRA_H
#define FANOUT_GCRA_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define GCRA_MAX_LIMITS 8
/* Rates above this are refused: a token every 100 ns. */
#define GCRA_MAX_COUNT_PER_S INT64_C(10000000)

/* A parsed rate: count requests per period. */
typedef struct gcra_rate {
    int64_t count;     /* requests allowed ... */
    int64_t period_ns; /* ... per this period */
} gcra_rate;

/* Parses "N/s", "N/sec", "N/min", "N/m", "N/h", "N/hour" (N a positive
 * integer). Returns FO_OK, or FO_EINVAL with a reason in err. */
FO_WUR fo_err gcra_parse_rate(const char *s, gcra_rate *out, char *err,
                              size_t errlen);
/* Formats a rate as "N/s", "N/min" or "N/h" into buf. */
void gcra_format_rate(gcra_rate r, char *buf, size_t cap);

typedef struct gcra gcra;

/* Returns a limiter with no limits (every token is available at once). */
gcra *gcra_new(void);
/* Frees *g and NULLs it; safe on NULL. */
void gcra_destroy(gcra **g);
/* Adds a limit. burst >= 1; margin_ns >= 0. Returns FO_EINVAL when full or
 * out of range. */
FO_WUR fo_err gcra_add(gcra *g, gcra_rate r, int64_t burst, int64_t margin_ns);
/* Removes all limits (no rate limit) but keeps the margin setting. */
void gcra_clear(gcra *g);
/* Number of limits. */
size_t gcra_count(const gcra *g);
/* Scales every limit's rate by factor in (0, 1]: the adaptive rate. */
void gcra_set_scale(gcra *g, double factor);
/* The earliest time the next token may be spent; >= now. */
int64_t gcra_peek(const gcra *g, int64_t now);
/* Takes the next token and returns its spend time (same as gcra_peek). */
int64_t gcra_take(gcra *g, int64_t now);
/* The effective combined rate in tokens per second (0 when unlimited). */
double gcra_rate_per_s(const gcra *g);

#endif
