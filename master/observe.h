/*
 * observe.h - what the master shows: /status JSON, /metrics, the progress
 * line, summary.json and the closing summary on stderr.
 *
 * It only reads the other modules (given at init) and renders; it changes
 * nothing. Every figure is read from the module that owns it, so /status,
 * /metrics, the progress line and summary.json cannot disagree.
 */
#ifndef FANOUT_OBSERVE_H
#define FANOUT_OBSERVE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "batches.h"
#include "budget.h"
#include "commit.h"
#include "control.h"
#include "fanin.h"
#include "intake.h"
#include "orphans.h"
#include "progress.h"
#include "ratectl.h"
#include "store.h"

/* Visible only so it can be embedded in the master; every pointer is
 * borrowed. */
typedef struct observe {
    const char *out;          /* --out, for messages */
    store *st;                /* the epoch */
    batches *bt;              /* re-dispatch counts */
    commit *cm;               /* committed totals, commit latencies */
    intake *in;               /* source figures */
    fanin *fi;                /* result counters */
    orphans *orph;            /* recovered results */
    ratectl *rc;              /* limits, rates */
    budget *bud;              /* workers, permits */
    control *ctl;             /* control counters */
    const uint64_t *n_denied; /* Curve handshakes refused, or NULL */
    progress_mode pmode;      /* the progress line */
} observe;

/* The /status object (also fanout-ctl status); the caller decrefs it. */
json_t *observe_status(observe *o, int64_t now);
/* The Prometheus text of /metrics (heap string, caller frees). */
char *observe_metrics(observe *o, int64_t now);
/* httpd's handler: ctx is the observe. */
char *observe_http(void *ctx, const char *path, int *status,
                   const char **content_type);
/* Draws the progress line (force: whatever the interval). */
void observe_progress(observe *o, int64_t now, int force);
/* Writes --out/summary.json atomically; finished says whether the job
 * completed (its exit status is then 0 or 1, else 3). Logs a failure. */
void observe_write_summary(observe *o, int finished);
/* Prints the closing lines on stderr. */
void observe_print_summary(observe *o, int finished);
/* 1 when some item failed or was invalid (exit status 1), else 0. */
int observe_some_failed(const observe *o);

/* Writes data to path through path.tmp, fsync and rename. 0 or -1 with
 * errno. */
int observe_write_file_atomic(const char *path, const char *data, size_t len);

#endif
