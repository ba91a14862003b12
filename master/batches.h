/*
 * batches.h - the master's open batches and their items.
 *
 * Items live in batches, in a ring ordered by batch number, plus the batch
 * being read (a pipe's items go out before it is full). The lowest open
 * batch is the resume point: the commit module pops it once every item is
 * committed, so memory is O(items in flight), whatever the backlog.
 *
 * This module owns the items' memory, the lookup of an item by its place
 * (batch, index) or, for queue items, by Idempotency-Key, and the dispatch
 * queue of items waiting to be pushed. It decides nothing about sending,
 * committing or leases: the callers move an item through its states.
 */
#ifndef FANOUT_BATCHES_H
#define FANOUT_BATCHES_H

#include <stddef.h>
#include <stdint.h>

#include "hmap.h"
#include "proto.h"
#include "ring.h"

/* An item's life in the master. */
typedef enum {
    MI_PENDING = 0,    /* waiting to be pushed (or back after a lease) */
    MI_SENT = 1,       /* pushed; a worker holds it under a lease */
    MI_COMMITTING = 2, /* its record waits in the commit buffer */
    MI_DONE = 3,       /* its record is committed */
} mitem_state;

/* Bytes of an Idempotency-Key, with its NUL. */
#define BATCHES_IDEM_BYTES 48

typedef struct mitem {
    uint8_t state;       /* mitem_state */
    uint32_t dispatches; /* times pushed */
    int64_t deadline_ns; /* lease end while MI_SENT */
    int64_t sent_ns;     /* when last pushed */
    int32_t holder;      /* worker slot it was dispatched to, or -1 */
    uint32_t holder_gen; /* that slot's generation */
    int32_t prev_holder; /* the holder before a re-dispatch, or -1 */
    uint32_t prev_gen;   /* that slot's generation */
    uint8_t claimed;     /* its holder listed it in a heartbeat */
    int64_t line_no;     /* input line (file), 0 for a queue */
    char *key;           /* id */
    char *url;           /* rendered URL, until its record is made */
    char *body;          /* rendered body or NULL */
    size_t body_len;     /* its length */
    char *msg_id;        /* queue message id, or NULL */
    uint64_t qhandle;    /* what acknowledges it (source_ack) */
    char *rkey;          /* --rate-key rendered, until its record, or NULL */
    uint32_t kattempts;  /* keyed mode: attempts made by earlier WORKs */
    uint32_t kthrottled; /* keyed mode: of which throttled */
    int64_t kwait_ns;    /* keyed mode: a retry waits until then */
    uint8_t kflight;     /* keyed mode: counted in flight for its key */
} mitem;

typedef struct mbatch {
    uint64_t no;        /* batch number */
    uint32_t n;         /* items */
    uint32_t done;      /* items committed */
    int64_t end_offset; /* input offset after its last line */
    int64_t next_line;  /* line number after its last line */
    uint64_t end_hash;  /* input hash through end_offset (source.h) */
    int acked;          /* queue: acknowledged (complete) */
    mitem *items;       /* n items */
} mbatch;

/* Visible only so it can be embedded in the master. */
typedef struct batches {
    ring open;             /* closed, uncommitted batches (mbatch) */
    mbatch bld;            /* the batch being read */
    size_t bld_cap;        /* its items allocated */
    uint32_t bld_queued;   /* of its items, those already queued */
    ring dq;               /* items to push (proto_ref), in order */
    hmap open_ids;         /* queue items by Idempotency-Key (proto_ref) */
    uint64_t idem_seed;    /* job identity hash, seeds Idempotency-Keys */
    uint64_t n_redispatch; /* items put back after a lease or a BYE */
} batches;

/* Empty; the first batch read gets number first_batch. */
void batches_init(batches *b, uint64_t idem_seed, uint64_t first_batch);
/* Frees every item; safe to call twice. */
void batches_fini(batches *b);

/* Closed open batches, oldest first: i < batches_len(). */
size_t batches_len(const batches *b);
mbatch *batches_at(const batches *b, size_t i);
/* The open batch (or the batch being read) numbered no, or NULL. */
mbatch *batches_find(batches *b, uint64_t no);
/* The item at ref, or NULL when its batch is not open. */
mitem *batches_item(batches *b, proto_ref ref);
/* 1 when the oldest open batch has every record committed. */
int batches_head_complete(const batches *b);
/* Frees the oldest open batch (its items must be committed). */
void batches_pop_head(batches *b);
/* 1 when no batch is open and none is being read. */
int batches_empty(const batches *b);

/* The item's Idempotency-Key: the same for every attempt, re-dispatch and
 * restart, derived from the job's identity, the line and the id (for a
 * queue item, the message id). */
void batches_idem_key(const batches *b, const mitem *it,
                      char out[BATCHES_IDEM_BYTES]);

/* Appends a zeroed item (holder -1, line_no set) to the batch being read
 * and returns it; *ref says where it is. The pointer is valid until the
 * next append. */
mitem *batches_append(batches *b, int64_t line_no, proto_ref *ref);
/* Queue items: index the item at ref under its Idempotency-Key (idem must
 * be batches_idem_key of it); the index entry goes when the item is freed. */
void batches_index(batches *b, const char *idem, proto_ref ref);
/* The open queue item whose Idempotency-Key is idem, or NULL. */
const proto_ref *batches_lookup(const batches *b, const char *idem);

/* Moves the batch being read into the open ring and returns it; the next
 * batch starts empty. NULL when the batch being read is empty. Its items
 * from *queued_from on have not been queued for dispatch yet. */
mbatch *batches_close(batches *b, uint32_t *queued_from);
/* Queues for dispatch every pending item of mb from index `from`. */
void batches_enqueue(batches *b, const mbatch *mb, uint32_t from);
/* Queues the pending items of the batch being read that are not queued
 * yet, without closing it (a pipe with nothing more to read for now). */
void batches_enqueue_building(batches *b);

/* Puts a sent item back in the dispatch queue (lease expired, worker gone,
 * handed back). Returns 1 when it was MI_SENT and went back, else 0. */
int batches_requeue(batches *b, proto_ref ref);

/* Frees an item's rendered request once its record is made. */
void batches_release(mitem *it);
/* Bytes of an item's rendered request (URL and body) while it holds one,
 * else 0: what --max-window-bytes and a worker's byte credit count. */
size_t batches_item_bytes(const mitem *it);

#endif
