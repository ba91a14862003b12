/*
 * outfull.h - riding out a full --out disk.
 *
 * When a group commit cannot write results.jsonl or the state store for
 * lack of space (ENOSPC, EDQUOT, SQLite's "database or disk is full"),
 * the master does not exit: the records stay in the commit buffer, the
 * read-ahead window closes (no new items are taken), and the commit is
 * tried again after a backoff that doubles from OUTFULL_FIRST_NS to
 * OUTFULL_MAX_NS. One warning per episode, one line when it ends; both are
 * counted (/metrics, summary.json). What the buffer can hold is bounded by
 * the window: nothing new is read while the episode lasts.
 *
 * A pure state machine: the caller passes the time in and does the I/O.
 */
#ifndef FANOUT_OUTFULL_H
#define FANOUT_OUTFULL_H

#include <stdint.h>

#define OUTFULL_FIRST_NS (100 * INT64_C(1000000))
#define OUTFULL_MAX_NS (1000 * INT64_C(1000000))

typedef struct outfull {
    int active;          /* an episode is on: the last commit failed */
    int64_t since_ns;    /* when it began */
    int64_t next_try_ns; /* the next commit attempt, not before */
    int64_t delay_ns;    /* the current backoff */
    uint64_t episodes;   /* episodes begun */
    uint64_t failures;   /* commits that failed for lack of space */
    int64_t stalled_ns;  /* time spent in ended episodes */
} outfull;

/* 1 when errno from a write or fsync means the disk is full. */
int outfull_errno_is_full(int err);
/* A commit failed for lack of space at now. Returns 1 when this begins an
 * episode (the caller logs it), 0 when one was on already. */
int outfull_failed(outfull *f, int64_t now);
/* A commit succeeded at now. Returns 1 when this ends an episode (the
 * caller logs it; outfull_last_ns() says how long it was). */
int outfull_ok(outfull *f, int64_t now);
/* 1 when a commit may be tried at now. */
int outfull_may_try(const outfull *f, int64_t now);
/* How long the episode that just ended lasted, or the one on. */
int64_t outfull_episode_ns(const outfull *f, int64_t now);

#endif
