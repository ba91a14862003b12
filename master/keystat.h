/*
 * keystat.h - per-key limits seen from outside: /status, /metrics and
 * fanout-ctl set --key-rate.
 *
 * The keyed scheduler (keysched.h) may hold millions of keys over a job,
 * so nothing here lists them all: /status and fanout-ctl status show the
 * active count and the top KEYSCHED_TOP_MAX keys by items waiting and in
 * flight; /metrics has fixed series plus at most KEYSCHED_TOP_MAX labelled
 * ones (bounded cardinality). Kept apart from observe.c and ctlcmd.c so
 * that those stay about the whole job.
 */
#ifndef FANOUT_KEYSTAT_H
#define FANOUT_KEYSTAT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "dispatch.h"
#include "store.h"

/* Adds "keys" to a /status object (nothing when not in keyed mode):
 * rate_limits, active, waiting, in_flight, throttled, retries, top. */
void keystat_status(const dispatcher *d, json_t *status, int64_t now);
/* Appends the fanout_key* series to b (nothing when not keyed). Returns
 * 0, or -1 when b is full. */
int keystat_metrics(const dispatcher *d, fo_buf *b, int64_t now);
/* fanout-ctl set's "key_rate": a list of N/UNIT, or "none". Applies it
 * live and stores it with the job (st may be NULL). Returns 0, or -1 with
 * err (not keyed, or a bad rate). */
int keystat_set_rate(dispatcher *d, store *st, json_t *key_rate,
                     int64_t margin_ns, char *err, size_t errlen);
/* Applies a key rate stored by an earlier fanout-ctl set; returns 1 when
 * there was one. */
int keystat_restore(dispatcher *d, store *st, int64_t margin_ns);

#endif
