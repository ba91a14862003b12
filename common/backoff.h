/*
 * backoff.h - retry delays: exponential backoff with full jitter, and the
 * parsing of Retry-After.
 *
 * Full jitter (delay drawn uniformly from [0, min(max, base * 2^(n-1))])
 * spreads the retries of many items that failed together, so they do not
 * come back as one wave. A Retry-After from the server is a floor on the
 * delay, never shortened by jitter.
 */
#ifndef FANOUT_BACKOFF_H
#define FANOUT_BACKOFF_H

#include <stdint.h>

/* The ceiling of the delay before retry number `attempt` (1 = the first
 * retry): min(max_ms, base_ms * 2^(attempt-1)), overflow-safe. */
int64_t backoff_cap_ms(int64_t base_ms, int64_t max_ms, int attempt);

/* A full-jitter delay in [0, backoff_cap_ms()], using rnd (any uniformly
 * random 64-bit value) as the random source. */
int64_t backoff_delay_ms(int64_t base_ms, int64_t max_ms, int attempt,
                         uint64_t rnd);

/* Parses a Retry-After value: delta-seconds ("120") or an HTTP-date
 * ("Wed, 21 Oct 2015 07:28:00 GMT"), relative to now_wall_ms. Dates in the
 * past give 0. Values are capped at max_ms. Returns 0 and sets *out_ms, or
 * -1 when the value is malformed. */
int backoff_parse_retry_after(const char *value, int64_t now_wall_ms,
                              int64_t max_ms, int64_t *out_ms);

/* A small fast PRNG (xorshift64*); state must be non-zero. */
uint64_t backoff_rand(uint64_t *state);

#endif
