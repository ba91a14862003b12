/*
 * clock.h - the two clocks fanout uses.
 *
 * Deadlines, pacing and leases use the monotonic clock in nanoseconds, which
 * never jumps. Wall time is only for logs and records. Time-dependent logic
 * (limiter, backoff) takes "now" as an argument rather than reading a clock,
 * so unit tests drive it with a fake clock.
 */
#ifndef FANOUT_CLOCK_H
#define FANOUT_CLOCK_H

#include <stdint.h>

#define FO_NS_PER_MS INT64_C(1000000)
#define FO_NS_PER_S INT64_C(1000000000)

/* Monotonic time in nanoseconds. */
int64_t clock_now_ns(void);
/* Wall-clock time in milliseconds since the Unix epoch. */
int64_t clock_wall_ms(void);
/* Wall-clock time in microseconds since the Unix epoch. */
int64_t clock_wall_us(void);

#endif
