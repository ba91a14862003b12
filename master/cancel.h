/*
 * cancel.h - fanout-ctl cancel: the items that are left get a record of
 * their own instead of a call.
 *
 * Once the cancelled job's calls in flight have ended (the master holds
 * every grant and waits for its permits to come back), each item not yet
 * recorded, queued or held by a worker that never started it, is recorded
 * "cancelled" through the commit buffer like any record, and so is every
 * item read after it, to the end of the input: the job then ends complete
 * (exit 1), and --redrive runs the cancelled items again.
 */
#ifndef FANOUT_CANCEL_H
#define FANOUT_CANCEL_H

#include <stdint.h>

#include "batches.h"
#include "budget.h"
#include "commit.h"
#include "dispatch.h"

/* Visible only so it can be embedded in the master. */
typedef struct canceller {
    int asked;          /* fanout-ctl cancel asked for it */
    int64_t drained_ns; /* when the calls in flight had ended, or 0 */
    int recording;      /* recording what is left */
} canceller;

/* One turn of a cancel (call it instead of dispatching once asked): holds
 * every grant; once the calls in flight have ended and their results had
 * 300 ms to land, records what is left, and each turn what was read
 * since, cancelled. */
void cancel_step(canceller *c, budget *bud, batches *bt, dispatcher *dp,
                 commit *cm, int64_t now);

/* Records cancelled every item in the dispatch queue and in the batch
 * being read and, with full (the first call), every pending or sent item
 * of the open batches; empties the dispatch queue. Returns how many it
 * recorded. */
uint64_t cancel_pending(batches *bt, dispatcher *dp, commit *cm, int full,
                        int64_t now);

#endif
