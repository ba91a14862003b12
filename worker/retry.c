/* retry.c - the retry decision; see retry.h. */
#include "fmacros.h"
#include "retry.h"
#include "backoff.h"

#include <stddef.h>

const char *retry_verdict_name(retry_verdict v)
{
    static const char *const names[] = {"done", "fail", "again", "throttled",
                                        "outage"};
    return (size_t)v < sizeof names / sizeof names[0] ? names[v] : "?";
}

/* The backoff before the next attempt, never shorter than a Retry-After.
 * The backoff's step is the attempts that were not push-back. */
static int64_t next_delay(const retry_policy *p, const retry_counts *c,
                          int64_t retry_after_ms, uint64_t rnd)
{
    uint32_t n = c->attempts - c->throttled;
    int64_t d = backoff_delay_ms(p->backoff_base_ms, p->backoff_max_ms,
                                 (int)(n ? n : 1), rnd);
    return d < retry_after_ms ? retry_after_ms : d;
}

static retry_decision fail(retry_decision d, retry_fail_reason why)
{
    d.verdict = RETRY_FAIL;
    d.reason = why;
    d.delay_ms = 0;
    return d;
}

retry_decision retry_decide(const retry_policy *p, const retry_counts *counts,
                            const retry_input *in)
{
    retry_decision d = {.verdict = RETRY_DONE,
                        .reason = RETRY_FAIL_NONE,
                        .retry_after_ms = -1,
                        .counts = *counts};
    if (in->retry_after &&
        backoff_parse_retry_after(in->retry_after, in->now_wall_ms,
                                  RETRY_AFTER_CAP_MS, &d.retry_after_ms) < 0) {
        d.bad_retry_after = 1;
        d.retry_after_ms = -1;
    }
    int64_t floor_ms = d.retry_after_ms > 0 ? d.retry_after_ms : 0;
    retry_counts *c = &d.counts;

    if (in->too_large)
        return fail(d, RETRY_FAIL_TOO_LARGE);
    if (in->answered && in->status >= 200 && in->status < 300) {
        if (!in->rejected)
            return d;
        /* The API said yes but the body says no (--ok-when). */
        d.counted = c->attempts - c->throttled - c->unreachable;
        if (!p->retry_rejected)
            return fail(d, RETRY_FAIL_REJECTED);
        if (d.counted >= p->max_attempts)
            return fail(d, RETRY_FAIL_EXHAUSTED);
        d.verdict = RETRY_AGAIN;
        d.delay_ms = next_delay(p, c, floor_ms, in->rnd);
        return d;
    }
    if (in->answered &&
        (in->status == 429 || (in->status == 503 && d.retry_after_ms >= 0))) {
        /* Push-back: counted apart, and the caller pauses the cluster. */
        c->throttled++;
        d.counted = c->attempts - c->throttled - c->unreachable;
        d.pause_ms =
            d.retry_after_ms > 0 ? d.retry_after_ms : RETRY_DEFAULT_PAUSE_MS;
        if (c->throttled >= p->max_throttled)
            return fail(d, RETRY_FAIL_THROTTLED);
        d.verdict = RETRY_THROTTLED;
        d.delay_ms = next_delay(p, c, floor_ms, in->rnd);
        return d;
    }
    /* 1xx, 3xx and 4xx will not change on a retry; 5xx and transport
     * errors may. */
    int retryable = !in->answered || in->status >= 500 || in->status == 429;
    int outage = !in->answered && in->unreachable && in->outage;
    if (outage)
        c->unreachable++;
    d.counted = c->attempts - c->throttled - c->unreachable;
    if (!retryable)
        return fail(d, RETRY_FAIL_STATUS);
    if (d.counted >= p->max_attempts)
        return fail(d, RETRY_FAIL_EXHAUSTED);
    d.verdict = outage ? RETRY_OUTAGE : RETRY_AGAIN;
    d.delay_ms = next_delay(p, c, floor_ms, in->rnd);
    return d;
}

int64_t retry_start_cutoff_ns(int64_t lease_ns, int64_t heartbeat_ns)
{
    int64_t cut = lease_ns - heartbeat_ns - lease_ns / 10;
    /* --lease is at least twice --heartbeat, so this stays above 0.4 of a
     * lease; a job that breaks that rule still gets a positive cutoff. */
    return cut > lease_ns / 4 ? cut : lease_ns / 4;
}

int retry_may_start(int master_ok, int64_t now_ns, int64_t last_heard_ns,
                    int64_t lease_ns, int64_t heartbeat_ns)
{
    if (!master_ok)
        return 0;
    return now_ns - last_heard_ns <
           retry_start_cutoff_ns(lease_ns, heartbeat_ns);
}
