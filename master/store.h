/*
 * store.h - the master's durable state: embedded SQLite in WAL mode with
 * synchronous=FULL, inside --out.
 *
 * It holds the job's identity, the epoch, the source cursor (the resume
 * point: the first byte of the lowest batch not yet complete), the size of
 * results.jsonl that is known good, running totals, and one row per
 * committed item of batches above the cursor. Rows of batches below the
 * cursor are deleted in the same transaction that moves it, so the store is
 * O(items in flight), never O(backlog).
 *
 * Everything that changes after a group of results arrives (rows, cursor,
 * results size, totals) changes in one transaction: a crash leaves the
 * state before or after it, never between.
 */
#ifndef FANOUT_STORE_H
#define FANOUT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "status.h"

typedef struct store store;

/* The resume point: the next line to read. */
typedef struct store_cursor {
    int64_t offset;  /* byte offset in the input */
    int64_t line_no; /* its line number (1-based) */
    uint64_t batch;  /* the batch number it starts */
    uint64_t hash;   /* file/stdin: hash of the input before offset (see
                        source.c), 0 when unknown (a queue, an old store) */
} store_cursor;

/* A point the cursor passed, kept so a resumed stdin job can say where its
 * input first differs from the one the job started with. */
typedef struct store_mark {
    int64_t offset;  /* cursor offset */
    int64_t line_no; /* cursor line */
    uint64_t hash;   /* cursor hash (never 0) */
} store_mark;

/* Marks kept at most. A new one is added once the cursor is 1/32 of the
 * span they cover past the last, and when they are full every other one
 * goes: they stay spread over the input read so far, and locate a
 * difference to about 1/16 of it (the cursor itself is checked too). */
#define STORE_MAX_MARKS 64

/* Totals over the whole job, all runs together. */
typedef struct store_totals {
    int64_t items;     /* records written */
    int64_t ok;        /* status ok */
    int64_t failed;    /* status failed */
    int64_t invalid;   /* status invalid */
    int64_t cancelled; /* status cancelled */
    int64_t attempts;  /* HTTP attempts behind recorded items */
    int64_t throttled; /* of which throttled */
    int64_t active_ms; /* time spent running, all runs */
} store_totals;

/* Everything a group commit writes besides its rows. */
typedef struct store_state {
    store_cursor cursor;  /* resume point */
    int64_t results_size; /* bytes of results.jsonl that are committed */
    int64_t batches_size; /* bytes of the --batches file committed */
    int64_t batches_scan; /* results.jsonl offset of the oldest record of
                             a batch still open (batchlog.h) */
    store_totals totals;  /* totals */
    int finished;         /* the job is complete */
} store_state;

/* One committed item. An item from a queue is keyed by its message id
 * instead of its place: the row says its record is committed, and stays
 * until the queue confirms the message is acknowledged (forget), so a
 * message delivered again after a crash is acknowledged, not run again. */
typedef struct store_row {
    uint64_t batch;     /* its batch */
    uint32_t idx;       /* its index */
    item_status status; /* its final status */
    const char *msg_id; /* queue message id, or NULL */
} store_row;

/* Opens or creates DIR/state.db. identity is a JSON object describing the
 * job; a store created for a different identity is refused with
 * FO_EMISMATCH and err naming the first field that differs. The epoch is
 * incremented on every open. Returns FO_OK or FO_ESTORE with err. */
FO_WUR fo_err store_open(const char *dir, const char *identity, store **out,
                         char *err, size_t errlen);
/* Closes *s and NULLs it; safe on NULL. */
void store_close(store **s);
/* The epoch of this open. */
uint64_t store_epoch(const store *s);
/* The state as last committed. */
const store_state *store_get_state(const store *s);
/* The marks the cursor passed, oldest first (*n of them; borrowed until the
 * next commit). A commit that moves the cursor to a known hash may add
 * one (see STORE_MAX_MARKS). */
const store_mark *store_input_marks(const store *s, size_t *n);
/* Calls fn for every committed row (batches above the cursor), in order. */
FO_WUR fo_err store_each_row(store *s,
                             void (*fn)(void *ctx, const store_row *row),
                             void *ctx);
/* Commits rows and the new state in one durable transaction, and forgets
 * the queue messages whose acknowledgement the queue confirmed. Returns
 * FO_OK or FO_ESTORE with err (disk full, I/O error): the caller must
 * stop. */
FO_WUR fo_err store_commit(store *s, const store_row *rows, size_t n,
                           const char *const *forget, size_t nforget,
                           const store_state *st, char *err, size_t errlen);
/* 1 when the queue message's record is committed and its acknowledgement
 * not yet confirmed. */
int store_message_done(store *s, const char *id);
/* A stored setting (e.g. a rate changed at run time), or NULL; the string
 * is the caller's to free. */
char *store_get_setting(store *s, const char *key);
/* Stores a setting durably (its own transaction); value NULL removes it. */
FO_WUR fo_err store_set_setting(store *s, const char *key, const char *value);

/* Repair: after results.jsonl was rewritten from a scan (a torn or
 * truncated file, or --redrive dropping failed records), the job restarts
 * from the first input line and skips every line whose record is present.
 * store_repair_begin() opens the transaction and forgets the rows;
 * store_repair_add() records one present line; store_repair_commit() sets
 * the new state (cursor at the start) and commits. Lines below the cursor
 * are dropped from the present set as it moves, so it shrinks as the
 * repair run proceeds. */
FO_WUR fo_err store_repair_begin(store *s, char *err, size_t errlen);
FO_WUR fo_err store_repair_add(store *s, int64_t line);
FO_WUR fo_err store_repair_commit(store *s, const store_state *st, char *err,
                                  size_t errlen);
/* 1 when some input lines are known present (a repair is under way). */
int store_repairing(const store *s);
/* 1 when line's record is already in results.jsonl (repair runs only). */
int store_present(store *s, int64_t line);

/* 1 when the last failed store_commit() failed for lack of space
 * (SQLite's "database or disk is full"). */
int store_full(const store *s);

#endif
