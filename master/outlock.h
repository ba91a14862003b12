/*
 * outlock.h - one master per --out: an exclusive lock on DIR/lock.
 *
 * Two masters on one --out would both append to results.jsonl and move the
 * same cursor: records twice, or lost. So master_open() takes this lock
 * before it touches the store, and keeps it until master_close().
 *
 * The lock is flock(LOCK_EX | LOCK_NB) on DIR/lock, which holds the pid of
 * its holder as text so the refusal can name it. The kernel drops the lock
 * when the holder's file descriptor closes, so a master that was killed
 * (even with SIGKILL) never leaves a stale lock behind: the file stays,
 * the lock does not. The descriptor is O_CLOEXEC, so spawned workers never
 * inherit (and keep) it. flock() is per open file description and does not
 * work across NFS on every system: --out belongs on a local disk.
 */
#ifndef FANOUT_OUTLOCK_H
#define FANOUT_OUTLOCK_H

#include <stddef.h>

#include "error.h"

/* Visible only so it can be embedded in the master. */
typedef struct outlock {
    int fd; /* DIR/lock while held, else -1 */
} outlock;

/* Not held; outlock_release() on it does nothing. */
void outlock_init(outlock *l);
/* Takes the lock on dir/lock (created 0600, O_NOFOLLOW) and writes our pid
 * into it. FO_OK; FO_EUSAGE when another process holds it (err names the
 * directory, its pid when readable, and the lock file); FO_EIO when the
 * file cannot be opened or written (err names it and the call). */
FO_WUR fo_err outlock_acquire(outlock *l, const char *dir, char *err,
                              size_t errlen);
/* Drops the lock (the file stays: removing it would race with a master
 * that has just opened it); safe when not held and when called twice. */
void outlock_release(outlock *l);

#endif
