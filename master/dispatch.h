/*
 * dispatch.h - which worker gets which item, and what a worker is believed
 * about.
 *
 * Items go out as WORK on the control ROUTER, addressed to one worker, so
 * the master always knows who holds what. Each worker has a credit of
 * DISPATCH_CREDIT_PER_SLOT items per unit of (capped) concurrency; the
 * dispatcher hands the next items to the worker with the most free
 * credit, so N workers share the work in proportion to their concurrency
 * whoever connected first (the credit-based flow of zguide ch. 7).
 *
 * The holder of a SENT item is the worker it was dispatched to (its
 * budget slot and generation); the one before it is remembered too, so a
 * late result of a call made before a re-dispatch still counts. A worker
 * is believed only about items it holds: a RESULT, HEARTBEAT or BYE entry
 * for another item is dropped and counted (n_foreign). The single
 * exception is the adoption window after a restart (the store has an
 * earlier life): a worker may then claim, or deliver the result of, an
 * item this life has not dispatched yet, because the previous life gave
 * it out.
 *
 * Leases: an item goes back to the queue when no heartbeat of its holder
 * listed it for a lease, or when its holder never listed it within 2.5
 * heartbeats of the dispatch (the WORK was lost with a connection).
 */
#ifndef FANOUT_DISPATCH_H
#define FANOUT_DISPATCH_H

#include <stdint.h>

#include "batches.h"
#include "budget.h"
#include "keysched.h"
#include "ratectl.h"
#include "sender.h"

/* Items a worker may hold per unit of concurrency: one in flight and one
 * ready for the next token. */
#define DISPATCH_CREDIT_PER_SLOT 2
/* Bytes: past its first concurrency items, a worker is given more only
 * while the request bytes it holds are under its share of this part of
 * --max-window-bytes (shares in proportion to concurrency); the rest
 * stays with the master, read ahead for whichever worker frees first. */
#define DISPATCH_WINDOW_SHARE_DIVISOR 2

/* Visible only so it can be embedded in the master. */
typedef struct dispatcher {
    batches *bt;               /* items and the dispatch queue (borrowed) */
    budget *bud;               /* workers (borrowed) */
    sender *snd;               /* the way out (borrowed) */
    int64_t lease_ns;          /* an item's lease */
    int64_t unclaimed_ns;      /* 2.5 heartbeats */
    int64_t after_ns;          /* resume grace: nothing before this */
    int64_t adopt_until_ns;    /* adoption window end, 0: none */
    int64_t start_ns;          /* this life's start, for the first log */
    int64_t window_bytes;      /* --max-window-bytes, 0: no byte credit */
    int first_logged;          /* dispatch.first was logged */
    uint64_t n_sent;           /* WORK messages sent */
    uint64_t n_foreign;        /* claims and results about others' items */
    uint64_t n_too_big;        /* items that could not be encoded */
    uint64_t n_foreign_logged; /* for rate limiting the warning */
    keysched *ks;              /* keyed mode (--rate-key), or NULL */
    ratectl *rc;               /* keyed mode: counts the calls paid */
    int64_t horizon_ns;        /* keyed mode: spend times this far ahead */
    uint64_t n_retries;        /* keyed mode: RETRY results re-queued */
} dispatcher;

void dispatch_init(dispatcher *d, batches *bt, budget *bud, sender *snd,
                   int64_t lease_ms, int64_t heartbeat_ms, int64_t start_ns);
/* No dispatch before after_ns; claims about undispatched items are taken
 * until adopt_until_ns (0: never, a first life). */
void dispatch_set_resume(dispatcher *d, int64_t after_ns,
                         int64_t adopt_until_ns);

/*
 * Keyed mode (--rate-key): every attempt goes through the master. Items
 * wait in a keysched under their key (mitem.rkey) and go out only when
 * both their key's limits and the global limiter can pay within
 * horizon_ns; the WORK then carries the spend time (pre-paid: the worker
 * takes no token for it) and the attempts made so far. A retryable
 * failure comes back as a RESULT with status RETRY (dispatch_retry). The
 * global --max-in-flight counts items given out in keyed mode, since no
 * token permits are involved. dispatch_fini frees the keysched.
 */
void dispatch_set_keyed(dispatcher *d, const gcra_rate *rates, size_t nrates,
                        int64_t margin_ns, int64_t key_max_in_flight,
                        ratectl *rc, int64_t horizon_ns);
/* Frees what the dispatcher owns (the keysched); safe twice. */
void dispatch_fini(dispatcher *d);
/* Keyed mode: a RESULT with status RETRY from w, the item's holder now. The
 * item waits under its key for retry_in_ms; when this attempt was
 * throttled (its throttled count grew) the key pauses that long too.
 * Returns 1, or 0 when not in keyed mode or w is not its holder now (the
 * caller counts it stale). */
int dispatch_retry(dispatcher *d, const budget_worker *w, mitem *it,
                   proto_ref ref, const proto_msg *r, int64_t now);
/* Keyed mode: items given out and not back (0 otherwise). */
uint64_t dispatch_keyed_inflight(const dispatcher *d);
/* When a keyed dispatch could next send something by the clock alone
 * (INT64_MAX: not keyed, nothing waits, or it waits for a message). */
int64_t dispatch_next_wake(const dispatcher *d, int64_t now);

/* Items a worker may still be given: 0 once it holds 2 per unit of
 * concurrency, or its concurrency and its share of bytes (see
 * DISPATCH_WINDOW_SHARE_DIVISOR). The share is checked after each item,
 * so one item bigger than a share still goes out. */
uint32_t dispatch_credit(const dispatcher *d, const budget_worker *w);
/* Sends queued items to the workers with free credit, most free first. */
void dispatch_run(dispatcher *d, int64_t now);
/* 1 when items wait and some worker has free credit (dispatch_run would
 * send something now). */
int dispatch_ready(const dispatcher *d, int64_t now);

/* 1 when w holds it now or held it before its last re-dispatch. */
int dispatch_holds(const dispatcher *d, const budget_worker *w,
                   const mitem *it);
/* Whether w may report on it (see above): 1 yes, 0 no (counted, logged as
 * what). Adopts a pending, never dispatched item for w in the adoption
 * window when adopt is set. */
int dispatch_check(dispatcher *d, budget_worker *w, mitem *it, int adopt,
                   int64_t now, const char *what);
/* A heartbeat of w listed it (which w holds): renew its lease. A pending
 * item that w held before goes back to w rather than to the API twice. */
void dispatch_listed(dispatcher *d, budget_worker *w, mitem *it, int64_t now);
/* Its record is made: its holder's credit returns. */
void dispatch_done(dispatcher *d, mitem *it);
/* Puts a sent item back in the queue; returns 1 when it was sent. */
int dispatch_requeue(dispatcher *d, proto_ref ref);
/* Re-dispatches every item the worker holds; returns how many. */
size_t dispatch_requeue_worker(dispatcher *d, const budget_worker *w);
/* w re-joined (a new generation of its slot): its items stay its own. */
void dispatch_rejoined(dispatcher *d, budget_worker *w, uint32_t old_gen);
/* The lease scan: expired and unclaimed items go back to the queue. */
void dispatch_scan_leases(dispatcher *d, int64_t now, int64_t lease_ms);

#endif
