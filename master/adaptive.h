/*
 * adaptive.h - the adaptive rate: slow down when the API pushes back, then
 * find the way back up.
 *
 * The controller holds a scale in (0, 1] applied to the configured limits.
 * On push-back (a 429, or 503 with Retry-After) it remembers the scale at
 * which it happened (the failure level), drops to 85% of it, climbs back
 * quickly to 95% of it and holds there: the API's real limit is just below
 * the failure level, and probing it again costs a 429 and a cluster-wide
 * pause each time. After a quiet hold it probes upwards, slowly at first
 * and then faster, so a limit that was raised is found again within
 * seconds. A limit announced in RateLimit headers caps the scale directly,
 * without any 429 at all. With adaptive mode off only the headers act.
 *
 * Time comes in as an argument; nothing here reads a clock.
 */
#ifndef FANOUT_ADAPTIVE_H
#define FANOUT_ADAPTIVE_H

#include <stdint.h>

typedef struct adaptive {
    int enabled;          /* AIMD on (--no-adaptive turns it off) */
    double scale;         /* current AIMD scale, (0, 1] */
    double fail;          /* scale at the last push-back, 0 none */
    double probe;         /* next multiplicative probe step */
    int64_t fail_ns;      /* when the last decrease happened */
    int64_t next_step_ns; /* next once-a-second adjustment */
    double header_cap;    /* cap from RateLimit headers, 1 none */
    int64_t throttles;    /* push-back events that decreased */
} adaptive;

/* Quiet time at 95% of the failure level before probing again. */
#define ADAPTIVE_HOLD_NS (10 * INT64_C(1000000000))

void adaptive_init(adaptive *a, int enabled);
/* A push-back at now. observed is the scale the API actually let through
 * over the last second (successful calls / configured rate), or 0 when
 * unknown: the real limit is at most that, so the controller drops there
 * at once instead of stepping down a second and a 429 at a time. Returns 1
 * when the scale went down (several 429s of one burst count once). */
int adaptive_on_throttle(adaptive *a, int64_t now, double observed);
/* The API announced limit requests per window_ms while the configured
 * limit is base_per_s: cap the scale so we stay under it. */
void adaptive_on_policy(adaptive *a, double limit_per_s, double base_per_s);
/* Called often; adjusts at most once a second. Returns 1 on a change. */
int adaptive_tick(adaptive *a, int64_t now);
/* The scale to apply: min(AIMD scale, header cap). */
double adaptive_scale(const adaptive *a);

#endif
