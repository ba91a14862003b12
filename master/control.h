/*
 * control.h - the control socket: the conversation with each worker.
 *
 * Reads the ROUTER and hands each message to one handler per type: HELLO
 * registers a worker (its concurrency claim capped) and answers with the
 * JOB; HEARTBEAT renews the leases of the items it lists; TOKEN_REQ feeds
 * the budget; RESULT goes to fan-in; THROTTLED and RATEINFO go to rate
 * control (and a new pause to every worker); BYE hands items back. A
 * worker is believed only about the items it holds (dispatch.h). CTL (an
 * operator's command) goes to the callback the master gives.
 *
 * Roles: with Curve, the ZAP handler names each connection's role in its
 * User-Id ("worker" or "operator"); CTL from a worker key and worker
 * messages from an operator key are refused and counted. Without Curve
 * (no User-Id) every local peer may do both, as docs/security.md says.
 * A peer that never said HELLO is told to RESET. Malformed frames are
 * dropped and counted. It also expires workers gone silent.
 */
#ifndef FANOUT_CONTROL_H
#define FANOUT_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "batches.h"
#include "budget.h"
#include "dispatch.h"
#include "fanin.h"
#include "ratectl.h"
#include "sender.h"

/* Answers an operator's command: returns the reply's JSON (heap string,
 * freed by the caller). */
typedef char *(*control_ctl_fn)(void *ctx, const char *json, int64_t now);

/* Visible only so it can be embedded in the master. */
typedef struct control {
    void *sock;            /* the control ROUTER (borrowed) */
    budget *bud;           /* workers and tokens (borrowed) */
    sender *snd;           /* replies (borrowed) */
    ratectl *rc;           /* push-back reports (borrowed) */
    batches *bt;           /* items, for leases (borrowed) */
    dispatcher *dp;        /* who holds what (borrowed) */
    fanin *fi;             /* results (borrowed) */
    uint32_t max_conc;     /* cap on a worker's concurrency claim */
    const char *job_json;  /* the JOB sent on HELLO (borrowed) */
    int64_t lease_ns;      /* item and worker lease */
    control_ctl_fn on_ctl; /* operator commands */
    void *ctl_ctx;         /* its context */
    uint64_t *n_bad;       /* malformed frames */
    uint64_t n_reset;      /* RESETs sent to unknown peers */
    uint64_t n_forbidden;  /* messages refused for the sender's role */
} control;

void control_init(control *c, void *sock, budget *bud, sender *snd, ratectl *rc,
                  batches *bt, dispatcher *dp, fanin *fi, const char *job_json,
                  int64_t lease_ms, uint32_t max_conc, control_ctl_fn on_ctl,
                  void *ctl_ctx, uint64_t *n_bad);
/* Receives and handles up to a few thousand messages without blocking. */
void control_recv(control *c, int64_t now);
/* Workers silent for a lease lose their items (re-dispatched) and permits. */
void control_expire(control *c, int64_t now);

#endif
