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
#include <zmq.h>

void fanin_init(fanin *f, void *pull, batches *bt, commit *cm, orphans *orph,
                ratectl *rc, budget *bud, int queue, uint64_t *n_bad)
{
    memset(f, 0, sizeof *f);
    f->pull = pull;
    f->bt = bt;
    f->cm = cm;
    f->orph = orph;
    f->rc = rc;
    f->bud = bud;
    f->queue = queue;
    f->n_bad = n_bad;
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
        orphans_stash(f->orph, r, now);
        return NULL;
    }
    r->u.result.ref = *ref;
    return it;
}

/* Results travel on the PULL socket, which has no routing ids: credit the
 * worker by the id it signs results with. */
static void credit_worker(fanin *f, const char *name)
{
    if (!name)
        return;
    for (size_t i = 0; i < budget_capacity(f->bud); i++) {
        budget_worker *w = budget_at(f->bud, i);
        if (w->used && !strcmp(w->name, name)) {
            w->results++;
            return;
        }
    }
}

void fanin_result(fanin *f, proto_msg *r, int64_t now)
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
        LOG_DEBUG("result.stale",
                  "result for batch %" PRIu64 " item %u is "
                  "not open (already committed?)",
                  r->u.result.ref.batch, r->u.result.ref.idx);
        return;
    }
    if (it->state == MI_COMMITTING || it->state == MI_DONE) {
        f->n_dup++;
        LOG_DEBUG("result.duplicate", "second result for id %s ignored",
                  it->key);
        return;
    }
    if (strcmp(it->key, r->u.result.key) != 0) {
        f->n_mismatch++;
        LOG_WARN("result.mismatch",
                 "result for batch %" PRIu64 " item %u "
                 "has id '%.80s', expected '%.80s'; ignored",
                 r->u.result.ref.batch, r->u.result.ref.idx, r->u.result.key,
                 it->key);
        return;
    }
    item_status st =
        r->u.result.status == PROTO_STATUS_OK ? ITEM_OK : ITEM_FAILED;
    if (st == ITEM_OK)
        ratectl_ok(f->rc, now, 1);
    credit_worker(f, r->u.result.worker);
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
                  .msg_id = it->msg_id};
    size_t len;
    char *line = record_format(&rec, &len);
    if (commit_add(f->cm, f->bt, r->u.result.ref, st, r->u.result.attempts,
                   r->u.result.throttled, line, len, now) != FO_OK) {
        free(line); /* checked above; kept for safety */
        f->n_dup++;
        return;
    }
    batches_release(it);
    if (st != ITEM_OK)
        LOG_DEBUG("item.failed", "id %s: %s", it->key,
                  r->u.result.error ? r->u.result.error : "failed");
}

void fanin_recv(fanin *f, int64_t now)
{
    for (int turn = 0; turn < 5000; turn++) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, f->pull, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            return;
        }
        proto_msg r;
        char err[256];
        fo_err rc = proto_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), &r,
                                 err, sizeof err);
        zmq_msg_close(&msg);
        if (rc || r.type != PROTO_RESULT) {
            uint64_t bad = ++*f->n_bad;
            if (bad <= 10 || bad % 1000 == 0)
                LOG_WARN(rc == FO_EVERSION ? "proto.bad_version"
                                           : "proto.bad_frame",
                         "dropped a frame on the result socket (%" PRIu64
                         " so far): %s",
                         bad, rc ? err : "not a RESULT");
            proto_msg_fini(&r);
            continue;
        }
        fanin_result(f, &r, now);
        proto_msg_fini(&r);
    }
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
    fanin_result(f, &r, now);
    proto_msg_fini(&r);
    return 1;
}
