/*
 * adaptive.h - the adaptive rate: slow down when the API pushes back, then
 * find the way back up.
 *
 * The controller holds a scale in (0, 1] applied to the configured limits;
 * it never goes above 1, so the adaptive rate never exceeds --rate. On
 * push-back (a 429, or 503 with Retry-After) it picks the level to hold
 * from what the master saw the API accept (adaptive_obs, filled by
 * ratectl):
 *
 * - Measured: calls were being sent for most of the last second (the
 *   cluster was neither paused nor idle), so what the API accepted in that
 *   second is its limit. The scale goes straight there, never below it,
 *   and holds: no climb from far below.
 * - Not measured (the second was mostly our own pause, or empty): the
 *   limit is at most what the API accepted per second while calls were
 *   actually being sent. The scale drops 15% below that bound (never below
 *   the last second's accepted rate), waits a few quiet seconds and climbs
 *   back to 95% of it.
 *
 * After a quiet hold at its level it probes upwards, by 2% first and then
 * faster, so a limit that was raised is found again. Each probe past a
 * fixed limit costs a 429 and a cluster-wide pause: a refused probe goes
 * back to the level it started from, and the hold grows while probes keep
 * failing there. A limit announced in RateLimit
 * headers caps the scale directly, without any 429 at all. With adaptive
 * mode off only the headers act.
 *
 * docs/internals/adaptive.md has the reasoning and the figures.
 * Time comes in as an argument; nothing here reads a clock.
 */
#ifndef FANOUT_ADAPTIVE_H
#define FANOUT_ADAPTIVE_H

#include <stdint.h>

typedef struct adaptive {
    int enabled;          /* AIMD on (--no-adaptive turns it off) */
    double scale;         /* current scale, (0, 1] */
    double level;         /* where it holds after a push-back, 0 none */
    double failed;        /* scale in force at the last push-back, 0 none */
    double probe;         /* next multiplicative probe step */
    int64_t fail_ns;      /* when the last decrease happened */
    int64_t climb_ns;     /* no climbing back to level before this */
    int64_t hold_ns;      /* quiet time at level before probing up */
    int64_t next_step_ns; /* next once-a-second adjustment */
    double header_cap;    /* cap from RateLimit headers, 1 none */
    int64_t throttles;    /* push-back events that decreased */
    int64_t measured;     /* of those, how many had a measured limit */
    int64_t forgiven;     /* push-backs at the held level not acted on */
} adaptive;

/* What the API was seen to accept just before a push-back, each as a
 * share of the configured rate (accepted calls/s / configured calls/s);
 * 0 means unknown. ratectl fills it (see observe() in ratectl.c). */
typedef struct adaptive_obs {
    double window;      /* accepted over the last second of wall time */
    double sending;     /* share of that second spent sending, 0..1 */
    double per_sending; /* accepted per second of sending (pauses and
                           empty stretches left out), last ~1 s of it */
} adaptive_obs;

/* Quiet time at the level before the first probe upwards. */
#define ADAPTIVE_HOLD_NS (30 * INT64_C(1000000000))
/* The longest hold, reached while probes keep failing at one level. */
#define ADAPTIVE_HOLD_MAX_NS (120 * INT64_C(1000000000))
/* Share of the last second that must have been spent sending for the
 * accepted count to measure the limit. */
#define ADAPTIVE_MEASURED_SHARE 0.45

void adaptive_init(adaptive *a, int enabled);
/* A push-back at now; obs may be NULL (nothing known). Returns 1 when the
 * scale went down (several 429s of one burst, within a second, count
 * once; one at the held level, 10 s or more after the last and with
 * the whole last second accepted, is taken for jitter and forgiven). The scale
 * never goes up here. */
int adaptive_on_throttle(adaptive *a, int64_t now, const adaptive_obs *obs);
/* The API announced limit_per_s while the configured limit is base_per_s:
 * cap the scale so we stay under it. */
void adaptive_on_policy(adaptive *a, double limit_per_s, double base_per_s);
/* Called often; adjusts at most once a second. Returns 1 on a change. */
int adaptive_tick(adaptive *a, int64_t now);
/* The scale to apply: min(AIMD scale, header cap). */
double adaptive_scale(const adaptive *a);

#endif
