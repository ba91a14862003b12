/* adaptive.c - AIMD rate with a remembered failure level; adaptive.h. */
#include "fmacros.h"
#include "adaptive.h"

#define NS_PER_S INT64_C(1000000000)
#define MIN_SCALE 0.01
#define DECREASE 0.85
#define HOLD_AT 0.95
#define CLIMB 0.05 /* of the failure level, per second */
#define PROBE_FIRST 0.01
#define PROBE_MAX 0.25

void adaptive_init(adaptive *a, int enabled)
{
    a->enabled = enabled;
    a->scale = 1.0;
    a->fail = 0;
    a->probe = PROBE_FIRST;
    a->fail_ns = 0;
    a->next_step_ns = 0;
    a->header_cap = 1.0;
    a->throttles = 0;
}

int adaptive_on_throttle(adaptive *a, int64_t now, double observed)
{
    if (!a->enabled)
        return 0;
    /* The requests of one burst all see the same limit: one decrease. */
    if (a->fail_ns && now - a->fail_ns < NS_PER_S)
        return 0;
    double cur = adaptive_scale(a);
    a->fail = observed > MIN_SCALE && observed < cur ? observed : cur;
    a->scale = cur * DECREASE;
    if (a->scale > a->fail * HOLD_AT)
        a->scale = a->fail * HOLD_AT;
    if (a->scale < MIN_SCALE)
        a->scale = MIN_SCALE;
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
    double hold = a->fail * HOLD_AT;
    if (a->scale < hold) {
        a->scale += a->fail * CLIMB;
        if (a->scale > hold)
            a->scale = hold;
    } else if (now - a->fail_ns >= ADAPTIVE_HOLD_NS) {
        a->scale *= 1 + a->probe;
        a->probe *= 2;
        if (a->probe > PROBE_MAX)
            a->probe = PROBE_MAX;
        /* Well past the old failure level: the limit was raised. */
        if (a->scale > a->fail * 1.1)
            a->fail = a->scale;
    }
    if (a->scale > 1)
        a->scale = 1;
    return a->scale != before;
}

double adaptive_scale(const adaptive *a)
{
    return a->scale < a->header_cap ? a->scale : a->header_cap;
}
