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

#include <stdint.h>

typedef struct worker_config {
    const char *master;       /* control endpoint, tcp://HOST:PORT */
    int concurrency;          /* calls in flight at most */
    const char *id;           /* worker id, or NULL for host:pid */
    int once;                 /* exit when the master says the job is done */
    int64_t drain_timeout_ms; /* how long SIGTERM waits for calls */
    const char *curve_secret; /* our key pair file, or NULL */
    const char *curve_server_key; /* the master's public key file */
} worker_config;

/* Runs until stopped by a signal (or DONE with once). Returns the process
 * exit status. */
int worker_run(const worker_config *cfg);

#endif
