/*
 * ctlcmd.h - operators' commands (fanout-ctl): {"cmd":"status"} and
 * {"cmd":"set","rate":[...]|"none","max_in_flight":N}.
 *
 * Arrives as CTL on the control socket; the reply is a JSON object with
 * "ok" and either the status or an "error" naming the bad field. Settings
 * changed here are stored, so a restarted master keeps them.
 */
#ifndef FANOUT_CTLCMD_H
#define FANOUT_CTLCMD_H

#include <stdint.h>

#include "budget.h"
#include "observe.h"
#include "ratectl.h"
#include "store.h"

/* Visible only so it can be embedded in the master; pointers borrowed. */
typedef struct ctlcmd {
    observe *obs; /* status */
    ratectl *rc;  /* limits */
    budget *bud;  /* max in flight */
    store *st;    /* stored settings */
} ctlcmd;

/* control_ctl_fn: ctx is a ctlcmd. Returns the reply (heap string). */
char *ctlcmd_handle(void *ctx, const char *json, int64_t now);

#endif
