/*
 * sender.h - the master's one way out to workers.
 *
 * Every message the master sends is encoded here into one scratch buffer
 * and handed to ZeroMQ without blocking: control messages to one worker by
 * its routing id on the ROUTER, to every worker, and WORK on the PUSH
 * socket. A control message that cannot be queued is dropped (the
 * protocol repeats what matters: heartbeats, grants on request); a WORK
 * that cannot be queued stays with the caller. The sockets are borrowed.
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
    void *ctl;       /* the control ROUTER (borrowed) */
    void *push;      /* the work PUSH (borrowed) */
    uint64_t epoch;  /* stamped on every message */
    fo_buf scratch;  /* encode buffer */
    uint64_t n_sent; /* control messages queued */
    uint64_t n_lost; /* control messages ZeroMQ would not take */
} sender;

void sender_init(sender *s, void *ctl, void *push, uint64_t epoch);
void sender_fini(sender *s);
/* Sends msg (its epoch is set here) to the peer with routing id rid. */
void sender_to(sender *s, const void *rid, size_t rid_len, proto_msg *msg);
/* Sends msg to every worker in the budget's registry. */
void sender_broadcast(sender *s, budget *bud, proto_msg *msg);
/* Pushes a WORK message. FO_OK; FO_EAGAIN when the socket would block
 * (try again when it is writable); FO_ETOOBIG when it cannot be encoded. */
FO_WUR fo_err sender_work(sender *s, proto_msg *msg);

#endif
