/*
 * worker.h - fanout-worker: takes items from a master, makes the HTTP calls
 * it is granted tokens for, retries with backoff, and pushes results back.
 *
 * A worker is stateless: it knows only the master's control endpoint. It
 * says HELLO, receives the JOB (request template, retry policy, the ports of
 * the work and result sockets), and from then on holds items, asks for
 * tokens, spends each at its granted time, and reports. If the master goes
 * silent the worker keeps its calls in flight, stops starting new ones and
 * says HELLO again until a master answers.
 */
#ifndef FANOUT_WORKER_H
#define FANOUT_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct worker_config {
    const char *master;       /* control endpoint, tcp://HOST:PORT */
    int concurrency;          /* calls in flight at most */
    const char *id;           /* worker id, or NULL for host:pid */
    int once;                 /* exit when the master says the job is done */
    int64_t drain_timeout_ms; /* how long SIGTERM waits for calls */
    const char *curve_secret; /* our key pair file, or NULL */
    const char *curve_server_key; /* the master's public key file */
} worker_config;

/* Runs until stopped by a signal (or DONE with once). Returns FO_OK then,
 * or:
 *   FO_EUSAGE  a flag's value is unusable (--curve-secret,
 *              --curve-server-key, --master); err says which and why;
 *   FO_EIO     the HTTP client could not be created (err says so), or a
 *              socket failed in the loop;
 *   FO_EPROTO  the master sent a JOB this worker cannot run, or its data
 *              ports could not be connected.
 * Failures inside the loop are logged with their message id when they
 * happen and leave err empty; err is for failures before the loop.
 * Only main.c turns these into exit statuses. */
FO_WUR fo_err worker_run(const worker_config *cfg, char *err, size_t errlen);

#endif
