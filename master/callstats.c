/*
 * callstats.c - status classes, latencies and latest failures; see
 * callstats.h.
 */
#include "fmacros.h"
#include "callstats.h"
#include "clock.h"

#include <stdio.h>
#include <string.h>

/* From a fast local API (ms) to a slow batch endpoint (a minute). */
const double callstats_lat_bounds_s[CALLSTATS_LAT_BUCKETS - 1] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

static callstats_class class_of(uint32_t http_status)
{
    if (http_status >= 200 && http_status < 300)
        return CALLSTATS_2XX;
    if (http_status >= 300 && http_status < 400)
        return CALLSTATS_3XX;
    if (http_status >= 400 && http_status < 500)
        return CALLSTATS_4XX;
    if (http_status >= 500 && http_status < 600)
        return CALLSTATS_5XX;
    return CALLSTATS_NONE;
}

void callstats_record(callstats *c, int ok, uint32_t http_status,
                      uint32_t latency_ms, const char *id, const char *error,
                      uint32_t attempts, const char *worker,
                      uint64_t finished_us)
{
    c->by_class[class_of(http_status)]++;
    double s = (double)latency_ms / 1000.0;
    int b = 0;
    while (b < CALLSTATS_LAT_BUCKETS - 1 && s > callstats_lat_bounds_s[b])
        b++;
    c->lat[b]++;
    c->lat_sum_s += s;
    c->lat_count++;
    if (ok)
        return;
    callstats_failure *f = &c->ring[c->n_failures % CALLSTATS_FAILURES];
    c->n_failures++;
    snprintf(f->id, sizeof f->id, "%s", id ? id : "");
    snprintf(f->error, sizeof f->error, "%s", error ? error : "");
    snprintf(f->worker, sizeof f->worker, "%s", worker ? worker : "");
    f->http_status = http_status;
    f->attempts = attempts;
    f->at_us = finished_us ? (int64_t)finished_us : clock_wall_us();
}

const char *callstats_class_name(callstats_class k)
{
    static const char *const names[CALLSTATS_NCLASS] = {"2xx", "3xx", "4xx",
                                                        "5xx", "none"};
    return k < CALLSTATS_NCLASS ? names[k] : "none";
}

size_t callstats_failures(const callstats *c)
{
    return c->n_failures < CALLSTATS_FAILURES ? (size_t)c->n_failures
                                              : CALLSTATS_FAILURES;
}

const callstats_failure *callstats_failure_at(const callstats *c, size_t k)
{
    uint64_t newest = c->n_failures - 1;
    return &c->ring[(newest - k) % CALLSTATS_FAILURES];
}

double callstats_quantile_ms(const callstats *c, double q)
{
    if (!c->lat_count)
        return -1;
    double rank = q * (double)c->lat_count;
    uint64_t cum = 0;
    for (int b = 0; b < CALLSTATS_LAT_BUCKETS; b++) {
        uint64_t prev = cum;
        cum += c->lat[b];
        if ((double)cum < rank || !c->lat[b])
            continue;
        /* The +Inf bucket has no upper bound: answer its lower one. */
        double lo = b ? callstats_lat_bounds_s[b - 1] : 0;
        if (b == CALLSTATS_LAT_BUCKETS - 1)
            return lo * 1000.0;
        double hi = callstats_lat_bounds_s[b];
        double frac = (rank - (double)prev) / (double)c->lat[b];
        return (lo + (hi - lo) * frac) * 1000.0;
    }
    return callstats_lat_bounds_s[CALLSTATS_LAT_BUCKETS - 2] * 1000.0;
}
