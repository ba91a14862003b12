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
    buf_init(&s->scratch, PROTO_MAX_CONTROL_BYTES + PROTO_MAX_BODY_BYTES);
}

void sender_fini(sender *s)
{
    buf_fini(&s->scratch);
}

/* Sends the encoded scratch buffer to rid. */
static void send_scratch(sender *s, const void *rid, size_t rid_len)
{
    if (zmq_send(s->ctl, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(s->ctl, s->scratch.data, s->scratch.len, ZMQ_DONTWAIT) < 0)
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
    send_scratch(s, rid, rid_len);
}

void sender_broadcast(sender *s, budget *bud, proto_msg *msg)
{
    for (size_t i = 0; i < budget_capacity(bud); i++) {
        budget_worker *w = budget_at(bud, i);
        if (w->used)
            sender_to(s, w->rid, w->rid_len, msg);
    }
}

fo_err sender_work(sender *s, const void *rid, size_t rid_len, proto_msg *msg)
{
    msg->epoch = s->epoch;
    buf_reset(&s->scratch);
    if (proto_encode(msg, &s->scratch) != FO_OK)
        return FO_ETOOBIG;
    send_scratch(s, rid, rid_len);
    return FO_OK;
}
