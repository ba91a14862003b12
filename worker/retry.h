/*
 * retry.h - what to do with an item after one HTTP attempt: a pure
 * decision.
 *
 * retry_decide() takes the job's retry policy, the item's attempt counters
 * and how the attempt ended, and returns one verdict: done, fail (with a
 * reason), retry after D ms, throttled (the API pushed back: pause, then
 * retry after D ms) or wait out an API outage (retry after D ms without
 * counting the attempt). It does no I/O, reads no clock and no global: the
 * wall time (for an HTTP-date Retry-After) and the random value for the
 * backoff's jitter are passed in, so every branch is unit-tested
 * (tests/unit/test_retry.c). The caller (worker.c) acts on the verdict:
 * pauses, tells the master, logs, reports the result or schedules the
 * retry.
 *
 * Counting: every attempt counts towards max_attempts except those the API
 * answered with push-back (they count towards max_throttled instead) and
 * those made during a declared outage (they count nowhere: the items wait
 * for the API rather than fail). The backoff grows with the attempts that
 * were not push-back, outage attempts included, so an outage is polled at
 * a slowing pace.
 *
 * A 2xx whose body fails the job's --ok-when check (rejected) fails at
 * once, or with retry_rejected counts and backs off like a 5xx.
 */
#ifndef FANOUT_RETRY_H
#define FANOUT_RETRY_H

#include <stdint.h>

/* The longest Retry-After honoured; a longer one is cut to this. */
#define RETRY_AFTER_CAP_MS (INT64_C(3600) * 1000)

/* Push-back without a usable Retry-After pauses for this long. */
#define RETRY_DEFAULT_PAUSE_MS 1000

/* The job's retry policy (from the JOB). */
typedef struct retry_policy {
    uint32_t max_attempts;   /* counted attempts, at most (>= 1) */
    uint32_t max_throttled;  /* push-back answers, at most */
    int64_t backoff_base_ms; /* the first retry's delay cap */
    int64_t backoff_max_ms;  /* the largest delay cap */
    int retry_rejected;      /* a rejected 2xx is retried (--ok-when-retry) */
} retry_policy;

/* An item's attempt counters. */
typedef struct retry_counts {
    uint32_t attempts;    /* attempts made, this one included */
    uint32_t throttled;   /* of those, answered with push-back */
    uint32_t unreachable; /* of those, made during an outage */
} retry_counts;

/* How the attempt ended, as the caller saw it. */
typedef struct retry_input {
    int answered;            /* a response arrived (any status) */
    long status;             /* its HTTP status */
    int too_large;           /* the body went over the cap */
    int unreachable;         /* the call never reached the API */
    int outage;              /* the worker has declared an API outage */
    int rejected;            /* a 2xx whose body fails --ok-when */
    const char *retry_after; /* the Retry-After header, or NULL */
    int64_t now_wall_ms;     /* wall time, for an HTTP-date Retry-After */
    uint64_t rnd;            /* a uniformly random value for the jitter */
} retry_input;

typedef enum retry_verdict {
    RETRY_DONE,      /* success: report the response */
    RETRY_FAIL,      /* final failure: report it, see retry_fail_reason */
    RETRY_AGAIN,     /* retry after delay_ms */
    RETRY_THROTTLED, /* push-back: pause pause_ms, retry after delay_ms */
    RETRY_OUTAGE     /* the API is down: retry after delay_ms, uncounted */
} retry_verdict;

typedef enum retry_fail_reason {
    RETRY_FAIL_NONE,      /* not a failure */
    RETRY_FAIL_TOO_LARGE, /* the body went over --max-response-bytes */
    RETRY_FAIL_STATUS,    /* an HTTP status that is not worth retrying */
    RETRY_FAIL_THROTTLED, /* pushed back max_throttled times */
    RETRY_FAIL_EXHAUSTED, /* max_attempts counted attempts failed */
    RETRY_FAIL_REJECTED   /* a 2xx whose body fails --ok-when */
} retry_fail_reason;

typedef struct retry_decision {
    retry_verdict verdict;    /* what to do */
    retry_fail_reason reason; /* why it failed (RETRY_FAIL only) */
    int64_t delay_ms;         /* retry after this long (AGAIN, THROTTLED,
                                 OUTAGE) */
    int64_t pause_ms;         /* >0: the API pushed back; stop calls this
                                 long and tell the master (also set when
                                 the item fails with FAIL_THROTTLED) */
    int64_t retry_after_ms;   /* the parsed, capped Retry-After, or -1 */
    int bad_retry_after;      /* a Retry-After was present but malformed */
    uint32_t counted;         /* attempts that count towards max_attempts */
    retry_counts counts;      /* the item's counters after this attempt */
} retry_decision;

/* Decides the item's fate after one attempt. Pure: the same arguments
 * always give the same decision. policy->max_attempts must be >= 1. */
retry_decision retry_decide(const retry_policy *policy,
                            const retry_counts *counts, const retry_input *in);

/* Whether a worker may start an attempt (a first call or a retry) now.
 * The master takes an item back once it has not heard from the worker for
 * a lease, and gives it to another worker. The worker measures silence on
 * its own clock from the last message it received, which may be up to a
 * heartbeat later than the last message of ours the master received. So it
 * starts no attempt once that silence reaches the lease less a heartbeat
 * and a tenth of the lease (retry_start_cutoff_ns), nor while it is not
 * joined (master_ok 0: it must hear a JOB first, which drops every item it
 * is not calling). Pure: no clock, no I/O. */
int64_t retry_start_cutoff_ns(int64_t lease_ns, int64_t heartbeat_ns);
int retry_may_start(int master_ok, int64_t now_ns, int64_t last_heard_ns,
                    int64_t lease_ns, int64_t heartbeat_ns);

/* A short name for a verdict ("done", "fail", ...), for logs and tests. */
const char *retry_verdict_name(retry_verdict v);

#endif
