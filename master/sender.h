/*
 * sender.h - the master's one way out to workers.
 *
 * Every message the master sends is encoded here into one scratch buffer
 * and handed to the control ROUTER without blocking, addressed to one
 * worker by its routing id, or to every worker. A message ZeroMQ cannot
 * queue (the peer is gone) is dropped and counted: the protocol repeats
 * what matters (heartbeats, grants on request), and a WORK nobody listed
 * goes back to the queue (dispatch.h). The socket is borrowed.
 */
#ifndef FANOUT_SENDER_H
#define FANOUT_SENDER_H

#include <stddef.h>
#include <stdint.h>

#include "budget.h"
#include "buf.h"
#include "error.h"
#include "proto.h"

/* Visible only so it can be embedded in the master. */
typedef struct sender {
    void *ctl;             /* the control ROUTER (borrowed) */
    uint64_t epoch;        /* stamped on every message */
    fo_buf scratch;        /* encode buffer */
    fo_buf env;            /* a batch's envelope */
    proto_batch batch;     /* WORK collected for one worker */
    const void *batch_rid; /* its routing id (borrowed until the end) */
    size_t batch_rid_len;
    uint64_t n_sent; /* messages queued */
    uint64_t n_lost; /* messages ZeroMQ would not take */
} sender;

void sender_init(sender *s, void *ctl, uint64_t epoch);
void sender_fini(sender *s);
/* Sends msg (its epoch is set here) to the peer with routing id rid. */
void sender_to(sender *s, const void *rid, size_t rid_len, proto_msg *msg);
/* Sends msg to every worker in the budget's registry. */
void sender_broadcast(sender *s, budget *bud, proto_msg *msg);
/* WORK for one worker goes out in MULTI envelopes (proto.h): begin with
 * its routing id (borrowed until sender_batch_end), add each WORK, end.
 * sender_batch_work returns FO_OK (queued, or dropped because the peer is
 * gone: counted in n_lost) or FO_ETOOBIG when it cannot be encoded. */
void sender_batch_begin(sender *s, const void *rid, size_t rid_len);
FO_WUR fo_err sender_batch_work(sender *s, proto_msg *msg);
void sender_batch_end(sender *s);

#endif
