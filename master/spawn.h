/*
 * spawn.h - --spawn-workers: local fanout-worker processes.
 *
 * They are the same binary an operator would start, run as separate
 * processes (fork + exec of fanout-worker next to fanout-master). Each asks
 * the kernel for SIGTERM if the master dies, so a kill -9 of the master
 * leaves no orphans behind.
 */
#ifndef FANOUT_SPAWN_H
#define FANOUT_SPAWN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct spawn_set {
    pid_t *pids; /* children, 0 once reaped */
    size_t n;    /* count */
} spawn_set;

/* Starts n workers connecting to endpoint. Returns 0, or -1 with err. */
int spawn_start(spawn_set *s, size_t n, const char *endpoint,
                int64_t concurrency, const char *level, char *err,
                size_t errlen);
/* Reaps children that exited, logging each; returns how many still run. */
size_t spawn_reap(spawn_set *s);
/* SIGTERM, wait up to timeout_ms, then SIGKILL; reaps all. */
void spawn_stop(spawn_set *s, int64_t timeout_ms);

#endif
