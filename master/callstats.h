/*
 * callstats.h - what the recorded results say about the calls: their final
 * HTTP status class, the latency of their last attempt, and the latest
 * failures with their errors, for /metrics, /status and the dashboard.
 *
 * Fan-in feeds it once per recorded result (never for a duplicate or stale
 * one), so its counts agree with results.jsonl. A result carries only its
 * item's last attempt: earlier attempts that were retried are counted in
 * fanout_attempts_total, not here. Everything is fixed-size: a struct to
 * embed, no allocation, no init beyond zeroing.
 */
#ifndef FANOUT_CALLSTATS_H
#define FANOUT_CALLSTATS_H

#include <stddef.h>
#include <stdint.h>

/* Final HTTP status classes; NONE is a call that got no response
 * (connection error, timeout). */
typedef enum {
    CALLSTATS_2XX,
    CALLSTATS_3XX,
    CALLSTATS_4XX,
    CALLSTATS_5XX,
    CALLSTATS_NONE,
    CALLSTATS_NCLASS
} callstats_class;

/* Latency histogram: upper bounds in seconds, then one +Inf bucket. */
#define CALLSTATS_LAT_BUCKETS 14
extern const double callstats_lat_bounds_s[CALLSTATS_LAT_BUCKETS - 1];

/* Failures kept, the newest replacing the oldest. */
#define CALLSTATS_FAILURES 20
#define CALLSTATS_ID_BYTES 128    /* an id is cut to this, NUL included */
#define CALLSTATS_ERROR_BYTES 256 /* an error is cut to this */

typedef struct callstats_failure {
    char id[CALLSTATS_ID_BYTES];       /* the item's id */
    char error[CALLSTATS_ERROR_BYTES]; /* why it failed ("" unknown) */
    char worker[64];                   /* worker that reported it */
    uint32_t http_status;              /* last HTTP status, 0 none */
    uint32_t attempts;                 /* attempts made */
    int64_t at_us;                     /* wall clock when it ended */
} callstats_failure;

/* Visible only so it can be embedded (in fanin); zeroed means empty. */
typedef struct callstats {
    uint64_t by_class[CALLSTATS_NCLASS];        /* results per status class */
    uint64_t lat[CALLSTATS_LAT_BUCKETS];        /* results per latency bucket */
    double lat_sum_s;                           /* sum of their latencies */
    uint64_t lat_count;                         /* results with a latency */
    callstats_failure ring[CALLSTATS_FAILURES]; /* latest failures */
    uint64_t n_failures;                        /* failures seen in all */
} callstats;

/* Counts one recorded result. ok: its status is ok; error, worker: NULL
 * when absent (copied, cut to fit); finished_us 0: now. */
void callstats_record(callstats *c, int ok, uint32_t http_status,
                      uint32_t latency_ms, const char *id, const char *error,
                      uint32_t attempts, const char *worker,
                      uint64_t finished_us);
/* The class's label: "2xx", "3xx", "4xx", "5xx", "none". */
const char *callstats_class_name(callstats_class k);
/* How many failures are kept (at most CALLSTATS_FAILURES). */
size_t callstats_failures(const callstats *c);
/* The k-th kept failure, 0 the newest; k < callstats_failures(). */
const callstats_failure *callstats_failure_at(const callstats *c, size_t k);
/* The q-quantile (0..1) of the latencies in ms, interpolated within its
 * bucket as Prometheus does; -1 when there is none. */
double callstats_quantile_ms(const callstats *c, double q);

#endif
