/*
 * fanin.h - results from workers become records.
 *
 * Takes the RESULT messages the control module receives, finds the item
 * each belongs to (by place; for a queue item whose place changed across a
 * restart, by Idempotency-Key), drops what is stale, duplicate, mismatched
 * or about an item the sending worker does not hold (counted; see
 * dispatch.h), keeps a queue result whose message has not come back yet
 * (orphans, only in a restart's adoption window), and hands the record
 * line to the commit buffer. A result counts for an item at most once: the
 * commit module refuses a second record.
 */
#ifndef FANOUT_FANIN_H
#define FANOUT_FANIN_H

#include <stddef.h>
#include <stdint.h>

#include "batches.h"
#include "budget.h"
#include "callstats.h"
#include "commit.h"
#include "dispatch.h"
#include "orphans.h"
#include "proto.h"
#include "ratectl.h"

/* Visible only so it can be embedded in the master. */
typedef struct fanin {
    batches *bt;           /* open items (borrowed) */
    commit *cm;            /* the commit buffer (borrowed) */
    orphans *orph;         /* results kept for queue messages (borrowed) */
    ratectl *rc;           /* counts successes (borrowed) */
    dispatcher *dp;        /* who holds what (borrowed) */
    int queue;             /* the source is a queue */
    uint64_t n_dup;        /* a second result for a recorded item */
    uint64_t n_superseded; /* late results of an item sent to another */
    uint64_t n_stale;      /* results for items not open */
    uint64_t n_mismatch;   /* results whose id is not the item's */
    /* API calls behind results that were not recorded (late duplicates,
     * stale): this run's, and earlier runs' (stored). With the records'
     * attempts they add up to the calls the API received. */
    uint64_t unrecorded_calls, unrecorded_calls_before;
    /* The latest records' run of failures with one HTTP status (0: no
     * answer): --halt-on-repeat. */
    uint64_t fail_run;
    uint32_t fail_run_status;
    callstats calls; /* status classes, latencies, latest failures */
} fanin;

void fanin_init(fanin *f, batches *bt, commit *cm, orphans *orph, ratectl *rc,
                dispatcher *dp, int queue);
/* Handles one decoded RESULT from worker w (NULL: a kept orphan, checked
 * when it was kept); r stays the caller's (it may be moved into the
 * orphans, leaving it empty). */
void fanin_result(fanin *f, budget_worker *w, proto_msg *r, int64_t now);
/* Calls the API received for every result so far, recorded or not. */
uint64_t fanin_calls(const fanin *f, int64_t recorded_attempts);
/* A queue item just read: records the result an earlier run's call
 * produced for it, if one is kept. Returns 1 when it did. */
int fanin_take_orphan(fanin *f, mbatch *mb, uint32_t idx, int64_t now);

#endif
