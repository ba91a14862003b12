/*
 * sender.c - encoding and non-blocking sends; see sender.h.
 */
#include "fmacros.h"
#include "sender.h"

#include <zmq.h>

void sender_init(sender *s, void *ctl, uint64_t epoch)
{
    s->ctl = ctl;
    s->epoch = epoch;
    s->n_sent = s->n_lost = 0;
    buf_init(&s->scratch, PROTO_MAX_WORK_BYTES);
    buf_init(&s->env, PROTO_MAX_WORK_BYTES + PROTO_MULTI_BYTES +
                          PROTO_FRAME_OVERHEAD_BYTES);
    proto_batch_init(&s->batch);
    s->batch_rid = NULL;
}

void sender_fini(sender *s)
{
    buf_fini(&s->scratch);
    buf_fini(&s->env);
    proto_batch_fini(&s->batch);
}

/* Sends an encoded frame to rid. */
static void send_frame(sender *s, const void *rid, size_t rid_len,
                       const fo_buf *f)
{
    if (zmq_send(s->ctl, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(s->ctl, f->data, f->len, ZMQ_DONTWAIT) < 0)
        s->n_lost++;
    else
        s->n_sent++;
}

void sender_to(sender *s, const void *rid, size_t rid_len, proto_msg *msg)
{
    msg->epoch = s->epoch;
    buf_reset(&s->scratch);
    if (proto_encode(msg, &s->scratch) != FO_OK) {
        s->n_lost++;
        return;
    }
    send_frame(s, rid, rid_len, &s->scratch);
}

void sender_broadcast(sender *s, budget *bud, proto_msg *msg)
{
    for (size_t i = 0; i < budget_capacity(bud); i++) {
        budget_worker *w = budget_at(bud, i);
        if (w->used)
            sender_to(s, w->rid, w->rid_len, msg);
    }
}

void sender_batch_begin(sender *s, const void *rid, size_t rid_len)
{
    proto_batch_reset(&s->batch);
    s->batch_rid = rid;
    s->batch_rid_len = rid_len;
}

static void flush_batch(sender *s)
{
    if (!s->batch.n)
        return;
    if (proto_batch_finish(&s->batch, s->epoch, &s->env) == FO_OK)
        send_frame(s, s->batch_rid, s->batch_rid_len, &s->env);
    else
        s->n_lost++; /* cannot happen: the envelope's cap fits a batch */
    proto_batch_reset(&s->batch);
}

fo_err sender_batch_work(sender *s, proto_msg *msg)
{
    msg->epoch = s->epoch;
    buf_reset(&s->scratch);
    if (proto_encode(msg, &s->scratch) != FO_OK)
        return FO_ETOOBIG;
    if (!proto_batch_fits(&s->batch, s->scratch.len))
        flush_batch(s);
    proto_batch_add(&s->batch, s->scratch.data, s->scratch.len);
    return FO_OK;
}

void sender_batch_end(sender *s)
{
    flush_batch(s);
    s->batch_rid = NULL;
}
