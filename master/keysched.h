/*
 * keysched.h - the keyed scheduler: per-key (per-tenant) rate limits
 * without head-of-line blocking (--rate-key, --key-rate,
 * --key-max-in-flight).
 *
 * With --rate-key every HTTP attempt goes through the master: an item
 * waits here under its key (the --rate-key template rendered from the
 * item) until both its key's limiter and the global one can pay, and the
 * master then sends it with a pre-paid spend time. Each active key holds
 * its own GCRA state (one theoretical arrival time per --key-rate, burst
 * 1, the --rate-margin allowance), a pause (a 429's Retry-After for that
 * key), its calls in flight and a FIFO of its waiting items. Keys that can
 * take an item sit in a min-heap ordered by the time they next can
 * (eligible time); keysched_next() takes from the top only, so a key
 * that is out of tokens, paused or at its in-flight cap never blocks the
 * others. Under a binding global limit the heap serves the key that has
 * waited longest first, which shares the global rate evenly.
 *
 * Memory is O(active keys): an entry is freed by keysched_expire() once
 * it has nothing waiting or in flight, its bucket has refilled and its
 * pause has ended. Nothing reads a clock; callers pass the time, so the
 * unit tests drive it with a fake clock (tests/unit/test_keysched.c).
 */
#ifndef FANOUT_KEYSCHED_H
#define FANOUT_KEYSCHED_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "gcra.h"
#include "proto.h"

/* --key-rate limits at most (each holds for every key). */
#define KEYSCHED_MAX_LIMITS 8
/* Top keys reported by /status and /metrics at most. */
#define KEYSCHED_TOP_MAX 10
/* Bytes of a key kept for reporting (longer keys are cut). */
#define KEYSCHED_SHOWN_BYTES 128

typedef struct keysched keysched;

/* Whether a queued item is still waiting to be sent (it may have been
 * recorded, cancelled or adopted since it was queued): 1 yes. */
typedef int (*keysched_valid_fn)(void *ctx, proto_ref ref);

/* One key's figures, for /status and /metrics. */
typedef struct keysched_stat {
    char key[KEYSCHED_SHOWN_BYTES]; /* the key, cut to fit */
    uint64_t waiting;               /* items waiting */
    uint32_t inflight;              /* items sent, not yet back */
    uint64_t calls;                 /* attempts paid */
    uint64_t throttled;             /* 429s that paused it */
    int64_t paused_ms;              /* pause left, 0 none */
} keysched_stat;

/* A scheduler with no limit and no in-flight cap. Never NULL. */
keysched *keysched_new(void);
/* Frees *ks and NULLs it; safe on NULL. */
void keysched_destroy(keysched **ks);

/* Replaces the per-key limits (n 0: none) live; margin_ns is added to
 * each limit's period as in gcra.h. FO_EINVAL when n is too large or a
 * rate is out of range; nothing changes then. */
FO_WUR fo_err keysched_set_rates(keysched *ks, const gcra_rate *r, size_t n,
                                 int64_t margin_ns);
/* The limits now in force; returns their count. */
size_t keysched_rates(const keysched *ks, gcra_rate *out, size_t max);
/* Calls in flight per key at most (0: no cap). */
void keysched_set_max_in_flight(keysched *ks, int64_t n);

/* Queues an item under key (klen bytes, copied) to be sent no earlier
 * than not_before_ns. Pass at least the current time: keys are served in
 * the order they became able to pay, so an item queued now must not look
 * older than one that has waited (0 would put it before them all). */
void keysched_push(keysched *ks, const char *key, size_t klen, proto_ref ref,
                   int64_t not_before_ns);
/*
 * Takes the next item whose key can be paid by `by` (now plus the
 * dispatch horizon), skipping keys that cannot. global, when not NULL,
 * must be able to pay by then too; both are charged at the same moment.
 * Items valid() rejects are dropped on the way. Returns 1 with *ref, the
 * spend time *at (>= now) and the key counted in flight, or 0 when
 * nothing can be paid by `by`.
 */
int keysched_next(keysched *ks, int64_t now, int64_t by, gcra *global,
                  keysched_valid_fn valid, void *ctx, proto_ref *ref,
                  int64_t *at);
/* An item of key that keysched_next() gave out is back (recorded,
 * re-queued or lost with its worker): its in-flight slot frees. */
void keysched_release(keysched *ks, const char *key, size_t klen);
/* A 429 for key: no call of it before until_ns. Counted. */
void keysched_pause(keysched *ks, const char *key, size_t klen,
                    int64_t until_ns);
/* Frees idle keys (see above); returns how many. keysched_expire walks
 * every key (O(active)); keysched_expire_idle frees from the front of
 * the idle list, in the order keys went idle, and stops at the first
 * that has not refilled (O(freed)): cheap enough for every dispatch, with
 * keysched_expire now and then for keys a pause or a rate change put out
 * of order. */
size_t keysched_expire(keysched *ks, int64_t now);
size_t keysched_expire_idle(keysched *ks, int64_t now);

/* When keysched_next() could next give something, by the clock alone
 * (INT64_MAX: nothing waits, or every waiting key is at its cap). */
int64_t keysched_next_wake(const keysched *ks);
/* Keys held (active), items waiting, calls in flight. */
size_t keysched_active(const keysched *ks);
uint64_t keysched_waiting(const keysched *ks);
uint64_t keysched_inflight(const keysched *ks);
/* 429s that paused a key, in all. */
uint64_t keysched_throttled_total(const keysched *ks);
/* Up to max (<= KEYSCHED_TOP_MAX) keys with the most waiting and in
 * flight, then the most calls, into out; returns how many. O(active). */
size_t keysched_top(const keysched *ks, int64_t now, keysched_stat *out,
                    size_t max);

#endif
