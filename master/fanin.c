/*
 * fanin.c - RESULT messages to records; see fanin.h.
 */
#include "fmacros.h"
#include "fanin.h"
#include "log.h"
#include "record.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

void fanin_init(fanin *f, batches *bt, commit *cm, orphans *orph, ratectl *rc,
                dispatcher *dp, int queue)
{
    memset(f, 0, sizeof *f);
    f->bt = bt;
    f->cm = cm;
    f->orph = orph;
    f->rc = rc;
    f->dp = dp;
    f->queue = queue;
}

/* A queue item's place can differ from what the worker was told (an
 * earlier run's WORK): find it by Idempotency-Key. Returns the item with
 * r's ref corrected, or NULL when the result was kept for later or is
 * stale. */
static mitem *find_queue_item(fanin *f, proto_msg *r, int64_t now)
{
    const proto_ref *ref = batches_lookup(f->bt, r->u.result.idem_key);
    mitem *it = ref ? batches_item(f->bt, *ref) : NULL;
    if (!it) {
        /* Only a restarted master waits for an earlier life's results. */
        if (now < f->dp->adopt_until_ns)
            orphans_stash(f->orph, r, now);
        else
            f->n_stale++;
        return NULL;
    }
    r->u.result.ref = *ref;
    return it;
}

void fanin_result(fanin *f, budget_worker *w, proto_msg *r, int64_t now)
{
    mitem *it = batches_item(f->bt, r->u.result.ref);
    if (f->queue && r->u.result.idem_key &&
        (!it || strcmp(it->key, r->u.result.key) != 0)) {
        it = find_queue_item(f, r, now);
        if (!it)
            return;
    }
    if (!it) {
        f->n_stale++;
        f->unrecorded_calls += r->u.result.attempts;
        LOG_DEBUG("result.stale",
                  "result for batch %" PRIu64 " item %u is "
                  "not open (already committed?)",
                  r->u.result.ref.batch, r->u.result.ref.idx);
        return;
    }
    if (w && !dispatch_check(f->dp, w, it, 0, now, "RESULT"))
        return;
    if (w && it->state == MI_SENT &&
        (it->holder != (int32_t)(w - budget_at(f->dp->bud, 0)) ||
         it->holder_gen != w->gen)) {
        /* A late result from the worker that held the item before its
         * lease ran out, while another worker holds it now: that one may
         * be about to call it, and a record now would make its call one
         * after the record. Its result records the item instead (a
         * repeated call with the same Idempotency-Key). */
        f->n_superseded++;
        f->unrecorded_calls += r->u.result.attempts;
        LOG_DEBUG("result.superseded",
                  "late result for id %s from %s ignored: it was sent to "
                  "another worker meanwhile",
                  it->key, w->name);
        return;
    }
    if (it->state == MI_COMMITTING || it->state == MI_DONE) {
        f->n_dup++;
        f->unrecorded_calls += r->u.result.attempts;
        LOG_DEBUG("result.duplicate", "second result for id %s ignored",
                  it->key);
        return;
    }
    if (strcmp(it->key, r->u.result.key) != 0) {
        f->n_mismatch++;
        f->unrecorded_calls += r->u.result.attempts;
        LOG_WARN("result.mismatch",
                 "result for batch %" PRIu64 " item %u "
                 "has id '%.80s', expected '%.80s'; ignored",
                 r->u.result.ref.batch, r->u.result.ref.idx, r->u.result.key,
                 it->key);
        return;
    }
    if (r->u.result.status == PROTO_STATUS_RETRY) {
        /* Keyed mode: the item waits under its key for another attempt. */
        if (!dispatch_retry(f->dp, w, it, r->u.result.ref, r, now))
            f->n_stale++;
        return;
    }
    item_status st =
        r->u.result.status == PROTO_STATUS_OK ? ITEM_OK : ITEM_FAILED;
    if (st == ITEM_OK)
        ratectl_ok(f->rc, now, 1);
    if (w)
        w->results++;
    record rec = {.id = it->key,
                  .status = st,
                  .http_status = (int)r->u.result.http_status,
                  .attempts = (int)r->u.result.attempts,
                  .throttled = (int)r->u.result.throttled,
                  .batch = r->u.result.ref.batch,
                  .line = it->line_no,
                  .latency_ms = r->u.result.latency_ms,
                  .error = r->u.result.error,
                  .response = r->u.result.response,
                  .response_len = r->u.result.response_len,
                  .worker = r->u.result.worker,
                  .msg_id = it->msg_id,
                  .started_us = r->u.result.started_us,
                  .finished_us = r->u.result.finished_us,
                  .dropped_len = r->u.result.dropped_len};
    size_t len;
    char *line = record_format(&rec, &len);
    if (commit_add(f->cm, f->bt, r->u.result.ref, st, r->u.result.attempts,
                   r->u.result.throttled, line, len, now) != FO_OK) {
        free(line); /* checked above; kept for safety */
        f->n_dup++;
        return;
    }
    callstats_record(&f->calls, st == ITEM_OK, r->u.result.http_status,
                     r->u.result.latency_ms, it->key, r->u.result.error,
                     r->u.result.attempts, r->u.result.worker,
                     r->u.result.finished_us);
    dispatch_done(f->dp, it);
    if (st == ITEM_OK) {
        f->fail_run = 0;
    } else if (f->fail_run && f->fail_run_status == r->u.result.http_status) {
        f->fail_run++;
    } else {
        f->fail_run = 1;
        f->fail_run_status = r->u.result.http_status;
    }
    batches_release(it);
    if (st != ITEM_OK)
        LOG_DEBUG("item.failed", "id %s: %s", it->key,
                  r->u.result.error ? r->u.result.error : "failed");
}

int fanin_take_orphan(fanin *f, mbatch *mb, uint32_t idx, int64_t now)
{
    char idem[BATCHES_IDEM_BYTES];
    batches_idem_key(f->bt, &mb->items[idx], idem);
    proto_msg r;
    if (!orphans_take(f->orph, idem, &r))
        return 0;
    r.u.result.ref = (proto_ref){mb->no, idx};
    LOG_DEBUG("result.recovered",
              "id %s: recorded the result an earlier run's call produced",
              mb->items[idx].key);
    fanin_result(f, NULL, &r, now);
    proto_msg_fini(&r);
    return 1;
}

uint64_t fanin_calls(const fanin *f, int64_t recorded_attempts)
{
    return (uint64_t)recorded_attempts + f->unrecorded_calls_before +
           f->unrecorded_calls;
}
