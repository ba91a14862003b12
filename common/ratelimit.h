/*
 * ratelimit.h - what an API says about its own limit in response headers.
 *
 * Understands the IETF draft headers (RateLimit-Policy: 60;w=1 and
 * RateLimit: limit=60, remaining=5, reset=1, or the later form
 * RateLimit: "default";r=5;t=1) and the common X-RateLimit-Limit,
 * X-RateLimit-Remaining and X-RateLimit-Reset (delta seconds, or a Unix
 * time as GitHub sends it). Headers are fed one at a time as they arrive;
 * anything malformed is ignored, never trusted.
 */
#ifndef FANOUT_RATELIMIT_H
#define FANOUT_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ratelimit_info {
    int64_t limit;     /* requests per window, -1 unknown */
    int64_t window_ms; /* the policy's window, -1 unknown */
    int64_t remaining; /* requests left in this window, -1 unknown */
    int64_t reset_ms;  /* time until the window resets, -1 unknown */
} ratelimit_info;

/* Sets every field unknown. */
void ratelimit_init(ratelimit_info *ri);
/* Feeds one header line ("Name: value", CRLF optional). Returns 1 when it
 * was a rate-limit header that was understood, else 0. now_wall_ms turns an
 * absolute reset time into a delay. */
int ratelimit_header(ratelimit_info *ri, const char *line, size_t len,
                     int64_t now_wall_ms);
/* 1 when anything is known. */
int ratelimit_known(const ratelimit_info *ri);

#endif
