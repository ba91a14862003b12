/*
 * spawn.h - --spawn-workers: local fanout-worker processes.
 *
 * They are the same binary an operator would start, run as separate
 * processes (fork + exec of fanout-worker next to fanout-master). Each asks
 * the kernel for SIGTERM if the master dies, so a kill -9 of the master
 * leaves no orphans behind.
 *
 * What a worker inherits is chosen, not leaked: the master's --log-level
 * and --log-format, its environment without the FANOUT_* variables (those
 * configure the master, and would configure the worker too), and one
 * --allow-env NAME for every ${NAME} the job's --header values reference,
 * so that exactly those variables may expand in the worker.
 *
 * A worker's stderr is a pipe the master reads (spawn_reap(), on every
 * tick): each line is forwarded to the master's stderr, and the last error
 * line is kept, so that when every worker quits on a configuration error
 * the master can say why instead of waiting for workers that never come.
 * Reads never block and each worker's partial line is capped.
 */
#ifndef FANOUT_SPAWN_H
#define FANOUT_SPAWN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A worker's partial stderr line is forwarded once it reaches this size. */
#define SPAWN_LINE_MAX_BYTES 4096

/* How to start the workers (strings borrowed for the call). */
typedef struct spawn_cfg {
    const char *endpoint;         /* the master's control endpoint */
    int64_t concurrency;          /* their --concurrency */
    const char *log_level;        /* their --log-level */
    const char *log_format;       /* their --log-format */
    int json_log;                 /* the master logs JSON: wrap worker lines
                                     that are not JSON */
    char *const *headers;         /* the job's "K: V" headers */
    size_t nheaders;              /* their count */
    const char *curve_secret;     /* their --curve-secret, or NULL */
    const char *curve_server_key; /* their --curve-server-key, or NULL */
} spawn_cfg;

/* One worker. */
typedef struct spawn_child {
    pid_t pid;                       /* its pid, 0 once reaped */
    int fd;                          /* its stderr pipe, or -1 at EOF */
    int status;                      /* exit status once reaped, -1 signal */
    size_t len;                      /* bytes in line */
    char line[SPAWN_LINE_MAX_BYTES]; /* its partial stderr line */
} spawn_child;

typedef struct spawn_set {
    spawn_child *kids;   /* the workers */
    size_t n;            /* count */
    int json_log;        /* from spawn_cfg */
    char last_err[1024]; /* the last error line any worker wrote */
} spawn_set;

/* Starts cfg's workers, n of them. Returns 0, or -1 with err (those
 * already started stay in s for spawn_stop()). */
int spawn_start(spawn_set *s, size_t n, const spawn_cfg *cfg, char *err,
                size_t errlen);
/* The distinct NAMEs of ${NAME} in the headers, as a heap array of heap
 * strings (*n of them; free each and the array); NULL when none. */
char **spawn_env_names(char *const *headers, size_t nheaders, size_t *n);
/* Forwards the workers' stderr lines, then reaps those that exited,
 * logging each; returns how many still run. */
size_t spawn_reap(spawn_set *s);
/* 1 when every worker has exited with status 2 (the configuration or the
 * job cannot work: rerunning them would not help); line gets the last
 * error line they wrote ("" when none). */
int spawn_all_unusable(const spawn_set *s, char *line, size_t cap);
/* SIGTERM, wait up to timeout_ms, then SIGKILL; reaps all and closes the
 * pipes (forwarding what they held). Safe on an empty set. */
void spawn_stop(spawn_set *s, int64_t timeout_ms);

#endif
