/*
 * ratectl.c - limits, adaptive scale and pauses; see ratectl.h.
 */
#include "fmacros.h"
#include "ratectl.h"
#include "clock.h"
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void ratectl_init(ratectl *rc, budget *bud, int64_t burst, int64_t margin_ms,
                  int adaptive_on, int64_t now)
{
    memset(rc, 0, sizeof *rc);
    rc->bud = bud;
    rc->burst = burst;
    rc->margin_ms = margin_ms;
    rc->adaptive_on = adaptive_on;
    rc->start_ns = now;
    adaptive_init(&rc->ad, adaptive_on);
    rc->applied_scale = 1.0;
}

static void apply_scale(ratectl *rc)
{
    double sc = adaptive_scale(&rc->ad);
    if (sc == rc->applied_scale)
        return;
    rc->applied_scale = sc;
    gcra_set_scale(budget_limiter(rc->bud), sc);
    if (rc->nrates)
        LOG_INFO("rate.adjusted", "effective rate now %.2f/s (%.0f%% of %s)",
                 gcra_rate_per_s(budget_limiter(rc->bud)), sc * 100,
                 rc->limit_text);
}

fo_err ratectl_set_limits(ratectl *rc, const gcra_rate *rates, size_t n,
                          int reset_adaptive, char *err, size_t errlen)
{
    gcra *lim = budget_limiter(rc->bud);
    gcra_clear(lim);
    rc->nrates = 0;
    rc->limit_text[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (gcra_add(lim, rates[i], rc->burst, rc->margin_ms * FO_NS_PER_MS) !=
            FO_OK) {
            snprintf(err, errlen, "--rate: too many limits (at most %d)",
                     GCRA_MAX_LIMITS);
            return FO_EINVAL;
        }
        rc->rates[rc->nrates++] = rates[i];
        char r[48];
        size_t used = strlen(rc->limit_text);
        gcra_format_rate(rates[i], r, sizeof r);
        snprintf(rc->limit_text + used, sizeof rc->limit_text - used, "%s%s",
                 i ? "+" : "", r);
    }
    if (reset_adaptive) {
        adaptive_init(&rc->ad, rc->adaptive_on);
        rc->applied_scale = 0;
        apply_scale(rc);
    }
    return FO_OK;
}

size_t ratectl_parse_list(const char *text, gcra_rate *rates, size_t cap)
{
    size_t n = 0;
    const char *p = text;
    while (*p && n < cap) {
        const char *plus = strchr(p, '+');
        size_t len = plus ? (size_t)(plus - p) : strlen(p);
        char tok[64], err[128];
        if (len < sizeof tok) {
            memcpy(tok, p, len);
            tok[len] = '\0';
            if (strcmp(tok, "none") != 0 &&
                gcra_parse_rate(tok, &rates[n], err, sizeof err) == FO_OK)
                n++;
        }
        if (!plus)
            break;
        p = plus + 1;
    }
    return n;
}

#define BUCKET_NS (100 * FO_NS_PER_MS)

/* Moves the 100 ms buckets (grants and successes) on to now's; never
 * back (the newest bucket may lie ahead: grants count at spend time). */
static void roll(ratectl *rc, int64_t now)
{
    int64_t t = now / BUCKET_NS;
    if (t <= rc->calls_t)
        return;
    int64_t steps = t - rc->calls_t;
    for (int64_t i = 1; i <= steps && i <= RATECTL_CALL_BUCKETS; i++) {
        rc->calls[(rc->calls_t + i) % RATECTL_CALL_BUCKETS] = 0;
        rc->okd[(rc->calls_t + i) % RATECTL_CALL_BUCKETS] = 0;
    }
    rc->calls_t = t;
}

void ratectl_granted(ratectl *rc, int64_t now, uint64_t n)
{
    /* Counted at the time the tokens may be spent, which may lie ahead of
     * the clock (up to the grant horizon). */
    int64_t t = now / BUCKET_NS;
    if (t > rc->calls_t)
        roll(rc, now);
    else if (t <= rc->calls_t - RATECTL_CALL_BUCKETS)
        return; /* older than the ring */
    rc->calls[t % RATECTL_CALL_BUCKETS] += n;
}

double ratectl_calls_per_s(ratectl *rc, int64_t now)
{
    roll(rc, now);
    /* Tokens due by now, over the last window: not the ones granted for
     * the next 250 ms. */
    int64_t t = now / BUCKET_NS;
    uint64_t sum = 0;
    for (int64_t b = t - RATECTL_CALL_BUCKETS + 1; b <= t; b++)
        if (b > rc->calls_t - RATECTL_CALL_BUCKETS)
            sum += rc->calls[b % RATECTL_CALL_BUCKETS];
    double window_s = RATECTL_CALL_BUCKETS / 10.0;
    double since_start = (double)(now - rc->start_ns) / 1e9;
    if (since_start < window_s && since_start > 0.5)
        window_s = since_start;
    return (double)sum / window_s;
}

void ratectl_ok(ratectl *rc, int64_t now, uint32_t n)
{
    int64_t t = now / (10 * FO_NS_PER_MS);
    if (t != rc->ok_t) {
        for (int64_t i = 1; i <= t - rc->ok_t && i <= RATECTL_OK_BUCKETS; i++)
            rc->ok[(rc->ok_t + i) % RATECTL_OK_BUCKETS] = 0;
        rc->ok_t = t;
    }
    rc->ok[t % RATECTL_OK_BUCKETS] += n;
    roll(rc, now);
    rc->okd[(now / BUCKET_NS) % RATECTL_CALL_BUCKETS] += n;
}

/* Whether a pause of ours overlapped [from, to). */
static int paused_during(const ratectl *rc, int64_t from, int64_t to)
{
    for (int i = 0; i < RATECTL_PAUSES; i++)
        if (rc->pause_until[i] && rc->pause_from[i] < to &&
            rc->pause_until[i] > from)
            return 1;
    return 0;
}

/* The API's limit is read from what it accepted, and the trap is reading
 * our own silence as its limit: over a second that was mostly a pause of
 * ours (after an earlier 429), or had nothing to send, it accepted little
 * because little was sent. So a 100 ms bucket counts as sending only when
 * tokens were granted or calls succeeded in it and no pause of ours
 * overlapped it. per_sending divides the successes of the last second's
 * worth of such buckets (looking back at most 5 s) by their length;
 * sending says how much of the last second they filled. window is the
 * plain count over the last second, which is what the API's own window saw;
 * adaptive.c decides which to believe. */
void ratectl_observe(ratectl *rc, int64_t now, adaptive_obs *obs)
{
    obs->window = obs->sending = obs->per_sending = 0;
    double base = ratectl_base_per_s(rc);
    if (base <= 0)
        return;
    ratectl_ok(rc, now, 0);
    uint64_t sum = 0;
    for (int i = 0; i < RATECTL_OK_BUCKETS; i++)
        sum += rc->ok[i];
    obs->window = (double)sum / base;
    int64_t last_s_ns = 0, sending_ns = 0;
    uint64_t ok = 0;
    for (int64_t k = 0; k < RATECTL_CALL_BUCKETS; k++) {
        int64_t b = rc->calls_t - k;
        if (b < 0 || sending_ns >= FO_NS_PER_S)
            break;
        int64_t from = b * BUCKET_NS;
        int64_t to = from + BUCKET_NS < now ? from + BUCKET_NS : now;
        size_t i = (size_t)(b % RATECTL_CALL_BUCKETS);
        if (to <= from || rc->calls[i] + rc->okd[i] == 0 ||
            paused_during(rc, from, to))
            continue;
        int64_t lo = from > now - FO_NS_PER_S ? from : now - FO_NS_PER_S;
        if (to > lo)
            last_s_ns += to - lo;
        ok += rc->okd[i];
        sending_ns += to - from;
    }
    obs->sending = (double)last_s_ns / 1e9;
    if (sending_ns >= 3 * BUCKET_NS)
        obs->per_sending = (double)ok * 1e9 / (double)sending_ns / base;
}

double ratectl_base_per_s(const ratectl *rc)
{
    double best = 0;
    for (size_t i = 0; i < rc->nrates; i++) {
        double r =
            (double)rc->rates[i].count * 1e9 / (double)rc->rates[i].period_ns;
        if (best == 0 || r < best)
            best = r;
    }
    return best;
}

double ratectl_effective_per_s(ratectl *rc)
{
    return gcra_rate_per_s(budget_limiter(rc->bud));
}

int ratectl_pause(ratectl *rc, int64_t now, int64_t ms)
{
    if (ms > RATECTL_MAX_PAUSE_MS)
        ms = RATECTL_MAX_PAUSE_MS;
    int64_t until = now + ms * FO_NS_PER_MS;
    if (until <= budget_paused_until(rc->bud))
        return 0;
    budget_pause(rc->bud, until);
    unsigned slot = rc->npauses++ % RATECTL_PAUSES;
    rc->pause_from[slot] = now;
    rc->pause_until[slot] = until;
    return 1;
}

/* A pause over RATECTL_SINGLE_PAUSE_MS stops the whole cluster for long:
 * one worker's word (a misread header, a hostile peer) is not enough, a
 * second worker must report one within that time. Returns the pause to
 * take. */
static int64_t agreed_pause(ratectl *rc, int64_t now, int64_t ms,
                            const char *worker, int32_t who)
{
    if (ms <= RATECTL_SINGLE_PAUSE_MS)
        return ms;
    int agreed =
        rc->long_ra_ns &&
        now - rc->long_ra_ns <= RATECTL_SINGLE_PAUSE_MS * FO_NS_PER_MS &&
        rc->long_ra_who != who;
    rc->long_ra_ns = now;
    rc->long_ra_who = who;
    if (agreed)
        return ms;
    rc->n_capped++;
    LOG_WARN("api.long_pause_capped",
             "worker %s reports a pause of %" PRId64 " ms; pausing %" PRId64
             " ms unless another worker reports one too",
             worker, ms, RATECTL_SINGLE_PAUSE_MS);
    return RATECTL_SINGLE_PAUSE_MS;
}

int ratectl_on_throttled(ratectl *rc, int64_t now, int64_t retry_after_ms,
                         unsigned http_status, const char *worker, int32_t who)
{
    rc->n_throttled++;
    int64_t ra = retry_after_ms ? retry_after_ms : 1000;
    if (ra > RATECTL_MAX_PAUSE_MS)
        ra = RATECTL_MAX_PAUSE_MS;
    ra = agreed_pause(rc, now, ra, worker, who);
    int64_t until = now + ra * FO_NS_PER_MS;
    int extended = ratectl_pause(rc, now, ra);
    adaptive_obs obs;
    ratectl_observe(rc, now, &obs);
    if (adaptive_on_throttle(&rc->ad, now, &obs)) {
        double base = ratectl_base_per_s(rc);
        LOG_INFO("rate.estimate",
                 "push-back: the API accepted %.1f/s over the last second "
                 "(%.0f%% of it spent sending), %.1f/s per second of sending",
                 obs.window * base, obs.sending * 100, obs.per_sending * base);
        apply_scale(rc);
    }
    if (until > rc->paused_logged_until + FO_NS_PER_S) {
        LOG_WARN("api.throttled",
                 "HTTP %u from the API (via %s): all calls "
                 "paused for %" PRId64 " ms",
                 http_status, worker, ra);
        rc->paused_logged_until = until;
    }
    return extended;
}

int ratectl_on_rateinfo(ratectl *rc, int64_t now, int64_t limit,
                        int64_t window_ms, int64_t remaining, int64_t reset_ms,
                        const char *worker, int32_t who)
{
    if (limit > 0 && window_ms > 0 && rc->nrates) {
        double before = adaptive_scale(&rc->ad);
        adaptive_on_policy(&rc->ad, (double)limit * 1000.0 / (double)window_ms,
                           ratectl_base_per_s(rc));
        if (adaptive_scale(&rc->ad) < before)
            LOG_INFO("api.policy",
                     "the API announces %" PRId64 " per %" PRId64
                     " ms; staying under it",
                     limit, window_ms);
        apply_scale(rc);
    }
    if (remaining != 0 || reset_ms <= 0)
        return 0;
    int64_t ms = agreed_pause(
        rc, now,
        reset_ms > RATECTL_MAX_PAUSE_MS ? RATECTL_MAX_PAUSE_MS : reset_ms,
        worker, who);
    if (now + ms * FO_NS_PER_MS > budget_paused_until(rc->bud)) {
        rc->n_quota_pauses++;
        LOG_INFO("api.quota_used",
                 "the API reports no requests left in its "
                 "window: pausing %" PRId64 " ms",
                 ms);
    }
    return ratectl_pause(rc, now, ms);
}

void ratectl_tick(ratectl *rc, int64_t now)
{
    if (adaptive_tick(&rc->ad, now))
        apply_scale(rc);
}
