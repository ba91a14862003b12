/* outage.c - telling an API outage from a bad item; see outage.h. */
#include "fmacros.h"
#include "outage.h"
#include "clock.h"
#include "log.h"

#include <string.h>

/* How often a continuing outage is logged. */
#define OUTAGE_LOG_EVERY_NS (60 * FO_NS_PER_S)

void outage_init(outage *o)
{
    memset(o, 0, sizeof *o);
}

int outage_note(outage *o, int answered, int unreachable, int64_t now)
{
    if (answered) {
        o->api_answered = 1;
        o->fails = 0;
        if (o->since_ns) {
            LOG_INFO("api.reachable",
                     "the API answers again after %.1f s; waiting items "
                     "run now",
                     (double)(now - o->since_ns) / 1e9);
            o->since_ns = 0;
        }
    } else if (unreachable) {
        o->fails++;
    }
    return o->api_answered && o->fails >= OUTAGE_AFTER_FAILURES;
}

void outage_waiting(outage *o, const char *error, int64_t now)
{
    if (!o->since_ns) {
        o->since_ns = o->logged_ns = now;
        LOG_WARN("api.unreachable",
                 "%u calls in a row could not reach the API (%s); items "
                 "wait for it instead of failing",
                 o->fails, error);
    } else if (now - o->logged_ns >= OUTAGE_LOG_EVERY_NS) {
        o->logged_ns = now;
        LOG_WARN("api.unreachable",
                 "the API has not been reachable for %.0f s (%s); items "
                 "still wait for it",
                 (double)(now - o->since_ns) / 1e9, error);
    }
}
