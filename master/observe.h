/*
 * observe.h - what the master shows: /status JSON, /metrics, the progress
 * line, summary.json and the closing summary on stderr; and on --metrics,
 * /healthz, the dashboard at / with its /history, and its commands (POST
 * /api/pause, /api/resume, /api/rate).
 *
 * It only reads the other modules (given at init) and renders; it changes
 * nothing, except through the dashboard's commands: those go to the same
 * handler as fanout-ctl's (ctlcmd, reached through control's callback),
 * and only with the --dashboard-token secret as a Bearer token; without
 * --dashboard-token they are refused (403) and the page is read-only.
 * Every figure is read from the module that owns it, so /status,
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
#include "httpd.h"
#include "intake.h"
#include "orphans.h"
#include "progress.h"
#include "ratectl.h"
#include "store.h"

/* The dashboard's charts start with this history: one sample a second. */
#define OBSERVE_HISTORY 300

typedef struct observe_sample {
    int64_t at_ms;      /* wall clock */
    double calls_per_s; /* tokens granted per second (5 s window) */
    double limit_per_s; /* configured limit, 0 none */
    double effective;   /* what the limiter granted per second */
    uint32_t throttled; /* push-back reports in this second */
    uint32_t retries;   /* retries recorded in this second */
} observe_sample;

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
    const char *token;        /* --dashboard-token's secret, or NULL */
    const char *textfile;     /* --metrics-textfile, or NULL */
    const char *halted;       /* why --halt-after stopped the job, or "" */
    struct dispatcher *dp;    /* per-key figures (keystat.h), or NULL */
    observe_sample hist[OBSERVE_HISTORY]; /* the last samples, a ring */
    uint64_t nhist;                       /* samples taken in all */
    int64_t next_sample_ns;               /* when the next is due */
    uint64_t last_throttled;              /* counters at the last sample */
    int64_t last_retries;                 /* (for per-second deltas) */
} observe;

/* Longest --dashboard-token secret, and the shortest accepted. */
#define OBSERVE_TOKEN_MAX_BYTES 256
#define OBSERVE_TOKEN_MIN_BYTES 16

/* The /status object (also fanout-ctl status); the caller decrefs it. */
json_t *observe_status(observe *o, int64_t now);
/* The Prometheus text of /metrics (heap string, caller frees). Series
 * whose value is not known are left out, never shown as -1. */
char *observe_metrics(observe *o, int64_t now);
/* httpd's handler: ctx is the observe. GET /, /healthz, /metrics,
 * /status; POST /api/pause, /api/resume, /api/rate. */
char *observe_http(void *ctx, const httpd_req *req, httpd_resp *resp);
/* Reads the --dashboard-token file into buf (cap bytes): its first line,
 * surrounding blanks removed, OBSERVE_TOKEN_MIN_BYTES to
 * OBSERVE_TOKEN_MAX_BYTES long. 0, or -1 with err naming the problem. */
int observe_read_token(const char *path, char *buf, size_t cap, char *err,
                       size_t errlen);
/* Draws the progress line (force: whatever the interval), and once a
 * second takes a sample for the dashboard's history (GET /history). */
void observe_progress(observe *o, int64_t now, int force);
/* Writes --out/summary.json atomically, and with --metrics-textfile the
 * final metrics (for node_exporter's textfile collector: no process_*
 * series, which would clash with its own); finished says whether the job
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
