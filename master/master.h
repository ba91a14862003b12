/*
 * master.h - fanout-master: reads the source, cuts batches, dispatches
 * items, grants tokens, fans results in, commits them durably, writes
 * results.jsonl and summary.json.
 */
#ifndef FANOUT_MASTER_H
#define FANOUT_MASTER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "gcra.h"

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
    int64_t max_worker_concurrency;   /* cap on a HELLO's claim */
    const char *bind;                 /* control endpoint */
    int insecure;                     /* allow non-loopback without keys */
    int64_t lease_ms;                 /* silence before items come back */
    int64_t heartbeat_ms;             /* heartbeat interval */
    int64_t drain_timeout_ms;         /* SIGTERM: wait for calls this long */
    int64_t window;                   /* max items outstanding, 0 = auto */
    int64_t max_window_bytes;         /* their bytes at most, 0 = no cap */
    const char *ready_file;           /* where to write endpoints, or NULL */
    const char *progress;             /* auto|tty|plain|off */
    const char *log_level;            /* for spawned workers */
    const char *log_format;           /* text|json, for spawned workers */
    int64_t no_worker_warning_ms;     /* warn when no worker this long */
    int64_t halt_after_n;             /* stop at this many failed, 0 off */
    int64_t halt_after_pct;           /* or this % failed, 0 off */
    int64_t halt_on_repeat;           /* or this many failing alike */
    const char *on_finish;            /* shell command at the end, or NULL */
    const char *notify;               /* URL to POST summary.json to, or NULL */
    int redrive;                      /* re-run items whose record is failed */
    int adaptive;                     /* AIMD on push-back */
    int follow;                       /* queues: wait when empty */
    int64_t idle_grace_ms;            /* queues: empty this long = end */
    const char *curve_secret;         /* master key pair file, or NULL */
    const char *curve_allow;          /* directory of admitted .pub keys */
    const char *ctl_allow;            /* operators' .pub keys, or NULL */
    const char *metrics;              /* HOST:PORT for /metrics, or NULL */
    const char *dashboard_token;      /* its POSTs' secret, or NULL */
    const char *metrics_textfile;     /* final metrics go here, or NULL */
    char *const *keep;                /* --keep paths (worker applies) */
    size_t nkeep;                     /* their count */
    int drop_response;                /* --drop-response */
    const char *ok_when;              /* --ok-when condition, or NULL */
    int ok_when_retry;                /* retry a 2xx that fails it */
    const char *batches;              /* batches file path, or NULL */

    /* Per-key limits (keysched.h). */
    const char *rate_key;              /* --rate-key template, or NULL */
    gcra_rate krates[GCRA_MAX_LIMITS]; /* --key-rate limits, all hold */
    size_t nkrates;                    /* their count */
    int64_t key_max_in_flight;         /* per-key cap, 0 none */
} master_config;

typedef struct master master;

/* How a run ended, for main.c to pick the exit status. */
typedef enum {
    MASTER_FINISHED = 0, /* every item has a record */
    MASTER_STOPPED = 1,  /* a signal stopped it; a re-run resumes */
    MASTER_HALTED = 2,   /* a second signal stopped it at once, without
                            draining; a re-run resumes */
} master_end;

/* Validates the configuration, checks the input can be opened, locks --out
 * (one master per --out: another holding it is FO_EUSAGE naming its pid),
 * opens it (state store, results.jsonl),
 * the source and the sockets, writes the ready file and starts any local
 * workers. FO_EUSAGE or FO_EMISMATCH for a configuration the user must
 * change, another code for a runtime failure; err says which flag, file or
 * call. On failure *out is NULL and nothing is left open. A job found
 * already complete opens fine: master_run() then ends at once. */
FO_WUR fo_err master_open(const master_config *cfg, master **out, char *err,
                          size_t errlen);
/* Runs the job until every item is recorded or a signal stops it, then
 * writes summary.json and prints the summary. FO_OK with *end, or the
 * fatal error (err says what; it was logged with its event id): FO_EUSAGE
 * when every spawned worker quit on a configuration error and no other
 * worker is there to do the job. */
FO_WUR fo_err master_run(master *m, master_end *end, char *err, size_t errlen);
/* 1 when some recorded item failed or was invalid. */
int master_some_failed(const master *m);
/* Stops local workers, closes everything and frees *m; safe on NULL. */
void master_close(master **m);

#endif
