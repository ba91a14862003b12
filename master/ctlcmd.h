/*
 * ctlcmd.h - operators' commands (fanout-ctl): {"cmd":"status"},
 * {"cmd":"set","rate":[...]|"none","max_in_flight":N}, {"cmd":"pause"},
 * {"cmd":"resume"}, {"cmd":"drain","worker":NAME} and {"cmd":"cancel"}.
 *
 * Arrives as CTL on the control socket; the reply is a JSON object with
 * "ok" and either the status or an "error" naming the bad field. Settings
 * changed here (the rate, max-in-flight, a pause) are stored, so a
 * restarted master keeps them. pause stops every grant until resume:
 * calls in flight and tokens already granted (at most 250 ms ahead)
 * finish. drain asks one worker to hand back the items it has not
 * started, finish its calls and leave (as on SIGTERM). cancel makes the
 * master hold every grant, wait for the calls in flight and record every
 * item left "cancelled" (cancel.h); not for a queue, whose messages would
 * all have to be read to be recorded.
 */
#ifndef FANOUT_CTLCMD_H
#define FANOUT_CTLCMD_H

#include <stdint.h>

#include "budget.h"
#include "sender.h"
#include "observe.h"
#include "ratectl.h"
#include "store.h"

/* Visible only so it can be embedded in the master; pointers borrowed. */
typedef struct ctlcmd {
    observe *obs; /* status */
    ratectl *rc;  /* limits */
    budget *bud;  /* max in flight */
    store *st;    /* stored settings */
    sender *snd;  /* DRAIN to a worker */
    int *cancel;  /* set by cancel: the master records what is left */
    int queue;    /* the source is a queue (cancel is refused) */
} ctlcmd;

/* Applies a stored pause on start; returns 1 when the job is paused. */
int ctlcmd_restore(ctlcmd *c);

/* control_ctl_fn: ctx is a ctlcmd. Returns the reply (heap string). */
char *ctlcmd_handle(void *ctx, const char *json, int64_t now);

#endif
