/*
 * witems.h - the items a worker holds: received, waiting for a token,
 * waiting out a backoff, or in flight.
 *
 * Each item is in exactly one state. Ready items form a FIFO, so items are
 * called in the order they arrived (retries rejoin at the back); waiting
 * items carry the time their backoff ends; items in flight belong to the
 * HTTP client until their call completes. The set owns every item and
 * frees it on witems_finish(), witems_drop_unstarted() or witems_fini().
 * No clock is read here: callers pass the time in.
 */
#ifndef FANOUT_WITEMS_H
#define FANOUT_WITEMS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "proto.h"

typedef enum witem_state {
    WI_READY = 0,  /* in the ready queue, waiting for a token */
    WI_WAIT = 1,   /* waiting for its backoff to end (ready_at_ns) */
    WI_FLIGHT = 2, /* its call is in flight */
    WI_PAID = 3    /* keyed mode: pre-paid, waiting for its time */
} witem_state;

/* One item. The strings are owned by the item. */
typedef struct witem {
    proto_ref ref;        /* where the master keeps it */
    char *key;            /* its id */
    char *url;            /* rendered URL */
    char *body;           /* rendered body or NULL */
    size_t body_len;      /* its length */
    char *idem;           /* Idempotency-Key */
    uint32_t attempts;    /* attempts made, throttled ones included */
    int64_t started_us;   /* wall clock when the first attempt started */
    uint32_t throttled;   /* attempts answered 429/503+Retry-After */
    uint32_t unreachable; /* attempts during an API outage (uncounted) */
    uint32_t last_http;   /* last HTTP status */
    char *last_error;     /* last error text, or NULL */
    int64_t ready_at_ns;  /* when a waiting item may be retried */
    witem_state state;    /* WI_* */
    uint32_t account;     /* token account the call was paid from */
    int orphaned;         /* in flight when the master took the item back
                             (we rejoined, or left): never retried */
    struct witem *qnext;  /* ready queue link */
    int prepaid;          /* keyed mode: the master paid; no token, and a
                             retry goes back to the master */
} witem;

/* Visible only so it can be embedded in the worker's state. */
typedef struct witems {
    witem **items;            /* every held item, in no particular order */
    size_t n;                 /* how many */
    size_t cap;               /* allocated */
    witem *rq_head, *rq_tail; /* the ready queue */
    size_t nready;            /* its length */
} witems;

/* An empty set. */
void witems_init(witems *s);
/* Frees every item, in flight or not; safe twice. Call only once no call
 * can complete any more (the HTTP client is gone). */
void witems_fini(witems *s);

/* Takes a decoded WORK message's item into a new held item at the back of
 * the ready queue. Its strings move to the item (the message keeps NULLs;
 * the caller still finalises it). */
witem *witems_add(witems *s, proto_msg *work);
/* Held items. */
size_t witems_held(const witems *s);
/* Ready items. */
size_t witems_ready(const witems *s);
/* Takes the front of the ready queue, or NULL; the caller sets its new
 * state (WI_FLIGHT when its call starts). */
witem *witems_pop_ready(witems *s);
/* Puts an item into WI_WAIT until ready_at_ns. */
void witems_wait(witems *s, witem *it, int64_t ready_at_ns);
/* Moves waiting items whose time has come to the ready queue; returns the
 * earliest remaining wake-up time, or INT64_MAX. */
int64_t witems_wake(witems *s, int64_t now_ns);
/* Removes an item from the set and frees it (its result was queued). */
void witems_finish(witems *s, witem *it);
/* Frees every item that is not in flight, ready and waiting alike (they
 * go back to the master), and marks the items in flight orphaned: the
 * master may give them to another worker, so their call's final outcome
 * is still reported but a failed attempt is never retried. With refs non-NULL,
 * returns their references in a new array in *refs (the caller frees it; NULL
 * when none) and their number in *nrefs. */
void witems_drop_unstarted(witems *s, proto_ref **refs, uint32_t *nrefs);
/* Copies the references of up to max held items into refs; returns how
 * many. */
uint32_t witems_refs(const witems *s, proto_ref *refs, uint32_t max);

/* Replaces the item's last error with formatted text. */
void witem_set_error(witem *it, const char *fmt, ...) FO_PRINTF(2, 3);

/* Keyed mode (a WORK with a pre-paid spend time): takes the item like
 * witems_add() but keeps it out of the ready queue, waiting (WI_PAID) to
 * be called at at_ns without a token. The attempts and throttled counts
 * continue the item's history from the WORK. */
witem *witems_add_paid(witems *s, proto_msg *work, int64_t at_ns);
/* A pre-paid item whose time has come, or NULL; *next (when not NULL)
 * becomes the earliest time of the others, or INT64_MAX. O(held). */
witem *witems_due_paid(witems *s, int64_t now, int64_t *next);

#endif
