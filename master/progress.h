/*
 * progress.h - the live progress line.
 *
 * On a terminal, one line redrawn in place a few times a second; elsewhere
 * (CI logs, files) a plain line every few seconds. Log lines clear the live
 * line first so the two never mix.
 */
#ifndef FANOUT_PROGRESS_H
#define FANOUT_PROGRESS_H

#include <stdint.h>

typedef enum {
    PROGRESS_OFF = 0,
    PROGRESS_TTY = 1,
    PROGRESS_PLAIN = 2,
} progress_mode;

typedef struct progress_snapshot {
    int64_t done;           /* items recorded */
    int64_t total;          /* items expected, or -1 when unknown */
    double fraction;        /* 0..1 by bytes when total is unknown, or -1 */
    double rate_per_s;      /* attempts per second, recent */
    const char *limit;      /* configured limits as text, "" for none */
    double effective_per_s; /* the limiter's rate now (adaptive, headers) */
    double scale;           /* effective / configured, 1 when untouched */
    int64_t ok, failed, invalid, retries, throttled; /* counters */
    int64_t workers;                                 /* live workers */
    int64_t inflight; /* calls in flight (permits in use) */
    int paused;       /* 1 paused after push-back, 2 by fanout-ctl pause */
} progress_snapshot;

/* Parses "auto|tty|plain|off"; auto picks tty when stderr is a terminal. */
int progress_parse(const char *s, progress_mode *out);
/* Draws (tty) or prints (plain) the snapshot if its interval has passed,
 * or always when force is set. */
void progress_show(progress_mode mode, const progress_snapshot *p,
                   int64_t now_ns, int force);
/* Ends a live line with a newline (before the summary). */
void progress_finish(progress_mode mode);

#endif
