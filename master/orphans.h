/*
 * orphans.h - results of a previous run waiting for their queue message.
 *
 * A worker resends the results of calls that were in flight when the
 * master died. For a file the restarted master reads the same lines into
 * the same batches and takes them; a queue's messages come back in another
 * order (Redis at once, Azure when their leases end), so such a result is
 * matched by its Idempotency-Key, derived from the message id: it waits
 * here, bounded in count, bytes and time, until its message is pulled
 * again, and is recorded instead of calling the API a second time.
 * docs/internals/orphans.md has the contract.
 */
#ifndef FANOUT_ORPHANS_H
#define FANOUT_ORPHANS_H

#include <stddef.h>
#include <stdint.h>

#include "hmap.h"
#include "proto.h"
#include "ring.h"

#define ORPHANS_MAX 10000                          /* results kept at most */
#define ORPHANS_MAX_BYTES ((size_t)64 << 20)       /* their response bytes */
#define ORPHANS_TTL_NS (300 * INT64_C(1000000000)) /* how long each waits */

/* Visible only so it can be embedded in the master. */
typedef struct orphans {
    ring fifo;          /* orphan *, oldest first */
    hmap ix;            /* the same by Idempotency-Key (orphan *) */
    size_t bytes;       /* response bytes held */
    uint64_t n_used;    /* recorded from a kept result */
    uint64_t n_dropped; /* expired or pushed out by the caps */
    uint64_t n_dup;     /* a second result for a key already kept */
} orphans;

void orphans_init(orphans *o);
/* Frees every kept result; safe to call twice. */
void orphans_fini(orphans *o);
/* Keeps the RESULT r until its message comes back: r is moved out (left
 * empty). A second result for the same key is dropped (counted). The
 * oldest results make room when a cap is reached. */
void orphans_stash(orphans *o, proto_msg *r, int64_t now);
/* Takes the kept result for idem into *out (the caller finis it): 1, or 0
 * when none is kept. */
int orphans_take(orphans *o, const char *idem, proto_msg *out);
/* Drops results older than ORPHANS_TTL_NS. */
void orphans_expire(orphans *o, int64_t now);
/* Results kept now. */
size_t orphans_len(const orphans *o);

#endif
