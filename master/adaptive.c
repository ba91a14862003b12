/* adaptive.c - the adaptive rate after push-back; see adaptive.h. */
#include "fmacros.h"
#include "adaptive.h"

#define NS_PER_S INT64_C(1000000000)
#define MIN_SCALE 0.01
/* Not measured: drop this far below the bound, then climb to HOLD_AT. */
#define DECREASE 0.85
#define HOLD_AT 0.95
#define CLIMB 0.05 /* of the level, per second */
/* Quiet time after an unmeasured decrease before climbing back: an API
 * whose allowance ran out right after our pause refuses again at once. */
#define QUIET_NS (3 * NS_PER_S)
/* Measured: never hold above this share of the scale that was refused. */
#define BELOW_REFUSED 0.98
/* Probes start just above the level; each second the step doubles. */
#define PROBE_FIRST 0.02
#define PROBE_MAX 0.25
/* A lone push-back at the held level this long after the previous one
 * may be forgiven as jitter (see adaptive_on_throttle). */
#define JITTER_AFTER_NS (10 * NS_PER_S)
/* A probe refused while the API took at least this share of the level it
 * started from: back to that level. */
#define PROBE_REFUSED 0.9
/* A push-back this close to the previous level is the same limit again. */
#define SAME_LEVEL 0.03

static double dmin(double x, double y)
{
    return x < y ? x : y;
}
static double dmax(double x, double y)
{
    return x > y ? x : y;
}

void adaptive_init(adaptive *a, int enabled)
{
    a->enabled = enabled;
    a->scale = 1.0;
    a->level = 0;
    a->failed = 0;
    a->probe = PROBE_FIRST;
    a->fail_ns = 0;
    a->climb_ns = 0;
    a->hold_ns = ADAPTIVE_HOLD_NS;
    a->next_step_ns = 0;
    a->header_cap = 1.0;
    a->throttles = 0;
    a->measured = 0;
    a->forgiven = 0;
}

int adaptive_on_throttle(adaptive *a, int64_t now, const adaptive_obs *obs)
{
    if (!a->enabled)
        return 0;
    /* The requests of one burst all see the same limit: one decrease. */
    if (a->fail_ns && now - a->fail_ns < NS_PER_S)
        return 0;
    adaptive_obs o = {0, 0, 0};
    if (obs)
        o = *obs;
    double cur = adaptive_scale(a);
    double prev_level = a->level;
    /* Holding at the level, long after the last push-back, and the API
     * still took at least that rate over a whole second of sending: the
     * limit has not moved, two calls just arrived too close together (the
     * API counts arrivals, which a loaded host jitters). The pause is
     * enough; lowering the rate for the rest of the job is not. Never twice
     * within JITTER_AFTER_NS, so a limit that did drop a little is still
     * followed. */
    if (a->level > 0 && cur <= a->level &&
        now - a->fail_ns >= JITTER_AFTER_NS && o.sending >= 1.0 - SAME_LEVEL &&
        o.window >= cur * HOLD_AT) {
        a->fail_ns = now;
        a->next_step_ns = now + NS_PER_S;
        a->forgiven++;
        return 0;
    }
    /* What the API verifiably took in its last second: never go below it,
     * yet always below the rate it just refused. */
    double took = dmin(o.window, cur * BELOW_REFUSED);
    int measured = o.window > MIN_SCALE && o.sending >= ADAPTIVE_MEASURED_SHARE;
    if (measured && cur > prev_level && prev_level > 0 &&
        o.window >= prev_level * PROBE_REFUSED) {
        /* A probe refused, with the API still taking about the level we
         * held before it: the limit is that level. The count is a call or
         * two short at times (results reach us a little after the calls
         * reached the API), which is no reason to hold lower from now on. */
        a->scale = prev_level;
        a->measured++;
    } else if (measured) {
        a->level = took;
        a->scale = took;
        a->climb_ns = now;
        a->measured++;
    } else {
        /* Per second of sending the API took at most per_sending: the
         * limit is at most that, however long our own pauses were. */
        double bound = o.per_sending > MIN_SCALE && o.per_sending < cur
                           ? o.per_sending
                           : cur;
        a->level = dmax(bound * HOLD_AT, took);
        a->scale = dmax(bound * DECREASE, took);
        a->climb_ns = now + QUIET_NS;
    }
    if (a->scale < MIN_SCALE)
        a->scale = MIN_SCALE;
    if (a->level < a->scale)
        a->level = a->scale;
    /* A probe refused at the level it started from: the limit has not
     * moved, and probing again soon would only cost another pause. */
    if (measured && prev_level > 0 &&
        a->level >= prev_level * (1 - SAME_LEVEL) &&
        a->level <= prev_level * (1 + SAME_LEVEL)) {
        a->hold_ns *= 4;
        if (a->hold_ns > ADAPTIVE_HOLD_MAX_NS)
            a->hold_ns = ADAPTIVE_HOLD_MAX_NS;
    } else {
        a->hold_ns = ADAPTIVE_HOLD_NS;
    }
    a->failed = cur;
    a->probe = PROBE_FIRST;
    a->fail_ns = now;
    a->next_step_ns = now + NS_PER_S;
    a->throttles++;
    return 1;
}

void adaptive_on_policy(adaptive *a, double limit_per_s, double base_per_s)
{
    if (limit_per_s <= 0 || base_per_s <= 0)
        return;
    double cap = limit_per_s / base_per_s;
    a->header_cap = cap > 1 ? 1 : cap < MIN_SCALE ? MIN_SCALE : cap;
}

int adaptive_tick(adaptive *a, int64_t now)
{
    if (!a->enabled || a->scale >= 1.0 || now < a->next_step_ns)
        return 0;
    a->next_step_ns = now + NS_PER_S;
    double before = a->scale;
    if (a->scale < a->level) {
        if (now >= a->climb_ns)
            a->scale = dmin(a->scale + a->level * CLIMB, a->level);
    } else if (now - a->fail_ns >= a->hold_ns) {
        /* Probe from the level itself, not from far below it. */
        a->scale *= 1 + a->probe;
        a->probe = dmin(a->probe * 2, PROBE_MAX);
        /* Well past the rate last refused: the limit was raised. */
        if (a->scale > a->failed * 1.1) {
            a->level = a->scale;
            a->failed = a->scale;
        }
    }
    if (a->scale > 1)
        a->scale = 1;
    return a->scale != before;
}

double adaptive_scale(const adaptive *a)
{
    return a->scale < a->header_cap ? a->scale : a->header_cap;
}
