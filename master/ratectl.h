/*
 * ratectl.h - rate control: the limits in force, the adaptive scale, and
 * cluster-wide pauses.
 *
 * The token budget grants against one GCRA limiter; this module decides
 * what that limiter allows. It holds the configured limits (changed at run
 * time by fanout-ctl), turns push-back reports (THROTTLED) and the API's
 * RateLimit headers (RATEINFO) into a lower scale or a pause, and keeps the
 * rolling counts that the progress line and /metrics show. It never sends:
 * a call that starts a pause returns 1, and the caller tells the workers.
 * Time comes in as an argument; nothing here reads a clock.
 */
#ifndef FANOUT_RATECTL_H
#define FANOUT_RATECTL_H

#include <stddef.h>
#include <stdint.h>

#include "adaptive.h"
#include "budget.h"
#include "error.h"
#include "gcra.h"

#define RATECTL_CALL_BUCKETS 50 /* 100 ms buckets: calls/s over 5 s */
#define RATECTL_OK_BUCKETS 100  /* 10 ms buckets: successes over 1 s */
#define RATECTL_PAUSES 8        /* recent pauses remembered */
/* No report pauses the cluster for longer than this. */
#define RATECTL_MAX_PAUSE_MS (3600 * INT64_C(1000))
/* One worker's Retry-After pauses the cluster at most this long; a longer
 * pause needs a second worker to report one within this time. */
#define RATECTL_SINGLE_PAUSE_MS (10 * INT64_C(1000))

/* Visible only so it can be embedded in the master. */
typedef struct ratectl {
    budget *bud;                          /* its limiter and pause (borrowed) */
    int64_t burst;                        /* --burst */
    int64_t margin_ms;                    /* --rate-margin */
    int adaptive_on;                      /* --adaptive */
    gcra_rate rates[GCRA_MAX_LIMITS];     /* limits in force */
    size_t nrates;                        /* their count */
    char limit_text[128];                 /* "20/s+1000/min", "" for none */
    adaptive ad;                          /* the adaptive controller */
    double applied_scale;                 /* scale last given to the limiter */
    uint64_t calls[RATECTL_CALL_BUCKETS]; /* tokens granted per bucket */
    uint32_t okd[RATECTL_CALL_BUCKETS];   /* successes, same buckets */
    int64_t calls_t;                      /* index time of the newest */
    int64_t pause_from[RATECTL_PAUSES];   /* recent pauses: start, */
    int64_t pause_until[RATECTL_PAUSES];  /* and end (0: unused) */
    unsigned npauses;                     /* pauses recorded in all */
    uint32_t ok[RATECTL_OK_BUCKETS];      /* successes per bucket */
    int64_t ok_t;                         /* index time of the newest */
    int64_t start_ns;                     /* this run's start */
    uint64_t n_throttled;                 /* THROTTLED reports */
    uint64_t n_quota_pauses;     /* pauses from RateLimit remaining=0 */
    int64_t paused_logged_until; /* last pause logged */
    int64_t long_ra_ns;          /* when a long Retry-After was reported */
    int32_t long_ra_who;         /* by which worker slot */
    uint64_t n_capped;           /* single long reports cut short */
} ratectl;

void ratectl_init(ratectl *rc, budget *bud, int64_t burst, int64_t margin_ms,
                  int adaptive_on, int64_t now);
/* Replaces the limits in force; FO_EINVAL (too many) with err. With
 * reset_adaptive the adaptive state starts over (a new ceiling). */
FO_WUR fo_err ratectl_set_limits(ratectl *rc, const gcra_rate *rates, size_t n,
                                 int reset_adaptive, char *err, size_t errlen);
/* Parses "20/s+1000/min" or "none" (a stored setting) into rates. Returns
 * the count; unparseable parts are skipped. */
size_t ratectl_parse_list(const char *text, gcra_rate *rates, size_t cap);

/* n tokens may be spent at `now` (a grant counts each token at its spend
 * time, at most the grant horizon ahead). */
void ratectl_granted(ratectl *rc, int64_t now, uint64_t n);
/* n calls succeeded at now. The adaptive rate reads these counts, the
 * grants and the pauses to tell what the API accepted while calls were
 * being sent from what it accepted while the cluster stood still. */
void ratectl_ok(ratectl *rc, int64_t now, uint32_t n);
/* Tokens granted per second over the last 5 s (less at the start). */
double ratectl_calls_per_s(ratectl *rc, int64_t now);
/* The lowest configured limit per second, 0 for none. */
double ratectl_base_per_s(const ratectl *rc);
/* What the limiter grants now, per second. */
double ratectl_effective_per_s(ratectl *rc);

/* Pauses every grant until now + ms (capped at RATECTL_MAX_PAUSE_MS),
 * and remembers the pause so the adaptive rate leaves it out. Returns 1 when
 * that extends the pause in force: the caller then tells the workers to drop
 * the tokens they hold. */
int ratectl_pause(ratectl *rc, int64_t now, int64_t ms);
/* Worker slot `who` (named worker) reports push-back (429, or 503 with
 * Retry-After): pauses for retry_after_ms (1 s when 0; over
 * RATECTL_SINGLE_PAUSE_MS only when another worker agreed, see above) and
 * lowers the adaptive scale. Returns 1 when the pause was extended. */
int ratectl_on_throttled(ratectl *rc, int64_t now, int64_t retry_after_ms,
                         unsigned http_status, const char *worker, int32_t who);
/* A worker relays RateLimit headers: caps the scale under an announced
 * limit, and pauses until the reset when no requests are left (a long
 * pause needs agreement, as for THROTTLED). Returns 1
 * when the pause was extended. */
int ratectl_on_rateinfo(ratectl *rc, int64_t now, int64_t limit,
                        int64_t window_ms, int64_t remaining, int64_t reset_ms,
                        const char *worker, int32_t who);
/* Once-a-second adaptive steps. */
void ratectl_tick(ratectl *rc, int64_t now);
/* What the API was seen to accept up to now (see adaptive_obs): over the
 * last second, the share of it spent sending, and per second of sending
 * with the cluster's own pauses and empty 100 ms stretches left out. All
 * 0 when no rate is configured. Exposed for the unit tests. */
void ratectl_observe(ratectl *rc, int64_t now, adaptive_obs *obs);

#endif
