/* cancel.c - recording what is left as cancelled; see cancel.h. */
#include "fmacros.h"
#include "cancel.h"
#include "clock.h"
#include "log.h"
#include "record.h"

#include <inttypes.h>

#include <stdlib.h>

static int cancel_one(batches *bt, dispatcher *dp, commit *cm, proto_ref ref,
                      int64_t now)
{
    mitem *it = batches_item(bt, ref);
    if (!it || (it->state != MI_PENDING && it->state != MI_SENT))
        return 0;
    record r = {.id = it->key,
                .status = ITEM_CANCELLED,
                .batch = ref.batch,
                .line = it->line_no,
                .latency_ms = -1,
                .error = "cancelled by fanout-ctl cancel; not called",
                .msg_id = it->msg_id};
    size_t len;
    char *line = record_format(&r, &len);
    if (commit_add(cm, bt, ref, ITEM_CANCELLED, 0, 0, line, len, now)) {
        free(line);
        return 0;
    }
    dispatch_done(dp, it);
    batches_release(it);
    return 1;
}

uint64_t cancel_pending(batches *bt, dispatcher *dp, commit *cm, int full,
                        int64_t now)
{
    uint64_t n = 0;
    if (full) {
        size_t nb = batches_len(bt);
        for (size_t i = 0; i < nb; i++) {
            mbatch *b = batches_at(bt, i);
            for (uint32_t k = 0; k < b->n; k++)
                n += (uint64_t)cancel_one(bt, dp, cm, (proto_ref){b->no, k},
                                          now);
        }
    }
    /* New items arrive in the dispatch queue, or wait in the batch being
     * read. */
    while (bt->dq.len) {
        proto_ref ref = *(proto_ref *)ring_at(&bt->dq, 0);
        ring_pop(&bt->dq);
        n += (uint64_t)cancel_one(bt, dp, cm, ref, now);
    }
    for (uint32_t k = 0; k < bt->bld.n; k++)
        n += (uint64_t)cancel_one(bt, dp, cm, (proto_ref){bt->bld.no, k}, now);
    return n;
}

void cancel_step(canceller *c, budget *bud, batches *bt, dispatcher *dp,
                 commit *cm, int64_t now)
{
    if (!budget_held(bud))
        budget_hold(bud, 1);
    if (!c->recording) {
        if (budget_permits_in_use(bud) + dispatch_keyed_inflight(dp) > 0) {
            c->drained_ns = 0;
            return;
        }
        if (!c->drained_ns)
            c->drained_ns = now;
        if (now - c->drained_ns < 300 * FO_NS_PER_MS)
            return;
    }
    uint64_t n = cancel_pending(bt, dp, cm, !c->recording, now);
    if (!c->recording)
        LOG_INFO("job.cancelled",
                 "calls in flight ended; recording the %" PRIu64
                 " items left, and the rest of the input, as cancelled",
                 n);
    c->recording = 1;
}
