/*
 * master.h - fanout-master: reads the source, cuts batches, dispatches
 * items, grants tokens, fans results in, commits them durably, writes
 * results.jsonl and summary.json.
 */
#ifndef FANOUT_MASTER_H
#define FANOUT_MASTER_H

#include <stddef.h>
#include <stdint.h>

#include "gcra.h"

/* Exit statuses: the user contract. */
#define EXIT_ALL_OK 0
#define EXIT_SOME_FAILED 1
#define EXIT_USAGE 2
#define EXIT_FATAL 3

typedef struct master_config {
    const char *input;    /* path, "-", or a queue URL */
    const char *url;      /* URL template */
    const char *method;   /* HTTP method */
    char *const *headers; /* "K: V" templates (env expanded on worker) */
    size_t nheaders;      /* their count */
    const char *body;     /* body template or NULL */
    const char *key;      /* id field */
    gcra_rate rates[GCRA_MAX_LIMITS]; /* limits that all hold */
    size_t nrates;                    /* their count (0: no limit) */
    int64_t burst;                    /* tokens back to back */
    int64_t rate_margin_ms;           /* jitter allowance per window */
    int64_t max_in_flight;            /* cluster-wide cap, 0 none */
    int64_t batch_size;               /* items per batch */
    int64_t max_attempts;             /* attempts per item */
    int64_t max_throttled;            /* throttled attempts per item */
    int64_t backoff_base_ms;          /* first retry cap */
    int64_t backoff_max_ms;           /* largest retry cap */
    int64_t timeout_ms;               /* per attempt */
    int64_t connect_timeout_ms;       /* per attempt */
    int64_t max_response_bytes;       /* response cap */
    int64_t max_line_bytes;           /* input line cap */
    const char *out;                  /* output directory */
    int64_t spawn_workers;            /* local workers to start */
    int64_t worker_concurrency;       /* their --concurrency */
    const char *bind;                 /* control endpoint */
    int insecure;                     /* allow non-loopback without keys */
    int64_t lease_ms;                 /* silence before items come back */
    int64_t heartbeat_ms;             /* heartbeat interval */
    int64_t drain_timeout_ms;         /* SIGTERM: wait for calls this long */
    int64_t window;                   /* max items outstanding, 0 = auto */
    const char *ready_file;           /* where to write endpoints, or NULL */
    const char *progress;             /* auto|tty|plain|off */
    const char *log_level;            /* for spawned workers */
    int redrive;                      /* re-run items whose record is failed */
    int adaptive;                     /* AIMD on push-back */
    int follow;                       /* queues: wait when empty */
    int64_t idle_grace_ms;            /* queues: empty this long = end */
    const char *curve_secret;         /* master key pair file, or NULL */
    const char *curve_allow;          /* directory of admitted .pub keys */
    const char *metrics;              /* HOST:PORT for /metrics, or NULL */
} master_config;

/* Runs the job; returns the exit status. */
int master_run(const master_config *cfg);

#endif
