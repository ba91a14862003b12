/*
 * commit.h - the commit buffer, group commit, and results.jsonl.
 *
 * A result becomes a record here. commit_add() takes the record's line into
 * the buffer (the item moves to MI_COMMITTING); commit_flush() appends the
 * buffered lines to results.jsonl, fsyncs it, then commits their rows, the
 * new results size, the totals and the cursor in one store transaction.
 * The cursor moves past a batch only with its last record, and only then is
 * a queue batch acknowledged. After a crash the store says how many bytes of
 * results.jsonl are good; commit_open_results() cuts anything past that, and
 * rewrites the file from a scan of itself when it is shorter than committed
 * or for --redrive. docs/internals/commit.md has the whole contract.
 * With --batches, the batch file is written in the same group commit, just
 * before the transaction, and counted by it the same way (batchlog.h).
 *
 * Errors come back as fo_err with a message naming the file; the caller
 * stops (nothing committed is lost; a re-run resumes). A full disk is not
 * an error (without --batches): commit_flush() logs it once, keeps the
 * records buffered and tries again after a backoff (outfull.h); while it
 * lasts c->full.active is set and the master takes no new items.
 */
#ifndef FANOUT_COMMIT_H
#define FANOUT_COMMIT_H

#include <stddef.h>
#include <stdint.h>

#include "batches.h"
#include "batchlog.h"
#include "buf.h"
#include "error.h"
#include "outfull.h"
#include "source.h"
#include "status.h"
#include "store.h"

/* A group commit waits this long for more records, or this many. */
#define COMMIT_DELAY_NS (2 * INT64_C(1000000))
#define COMMIT_MAX_ROWS 2000
/* Buckets of the commit latency histogram (the last is +Inf). */
#define COMMIT_HIST_BUCKETS 12

/* One record waiting for the next group commit. */
typedef struct commit_pending {
    proto_ref ref;      /* which item */
    item_status status; /* its final status */
    int64_t attempts;   /* attempts behind it */
    int64_t throttled;  /* throttled attempts */
    char *line;         /* the results.jsonl line (owned) */
    size_t len;         /* its length */
} commit_pending;

/* Visible only so it can be embedded in the master. */
typedef struct commit {
    store *st;              /* the state store (borrowed) */
    const char *out;        /* --out directory (borrowed) */
    source *src;            /* acknowledges queue batches, or NULL */
    int queue;              /* the source is a queue: no cursor */
    store_state state;      /* working copy of the committed state */
    commit_pending *cb;     /* the commit buffer */
    size_t len, cap;        /* its records, allocated */
    int64_t first_ns;       /* when its oldest record arrived */
    int64_t outstanding;    /* items read and not yet committed */
    int64_t held_bytes;     /* their bytes: request, then record */
    int results_fd;         /* results.jsonl, or -1 */
    fo_buf wbuf;            /* what one flush writes */
    char **forget;          /* queue ids acknowledged, to forget */
    size_t nforget;         /* their count */
    int64_t active_base_ms; /* active time of earlier runs */
    int64_t run_start_ns;   /* this run's start */
    uint64_t hist[COMMIT_HIST_BUCKETS]; /* flush durations by bucket */
    double sum_s;                       /* their sum, seconds */
    uint64_t count;                     /* flushes */
    batchlog bl;                        /* the --batches file */
    outfull full;                       /* a full --out disk (outfull.h) */
    int space_err;                      /* the last write ran out of space */
} commit;

/* Upper bounds of the histogram's buckets, seconds (the last is +Inf). */
extern const double commit_hist_bounds[COMMIT_HIST_BUCKETS - 1];

/* Starts with the store's committed state; out names --out in messages. */
void commit_init(commit *c, store *st, const char *out, int64_t now);
/* Frees the buffer and closes results.jsonl; safe to call twice. Records
 * still buffered are dropped (their items run again on the next start). */
void commit_fini(commit *c);

/* Opens --out/results.jsonl and brings it in line with the store: cuts a
 * tail written after the last commit, or (when the file is shorter than
 * committed, or with redrive) rewrites it from a scan of itself, keeping
 * every whole record once (dropping failed ones with redrive), and puts
 * the job in repair mode. A queue job cannot repair (its messages are
 * gone): FO_EIO. line_cap bounds one line of the scan. Returns FO_OK,
 * FO_EUSAGE (cannot open the file), or FO_EIO/FO_ESTORE, with err. */
FO_WUR fo_err commit_open_results(commit *c, int queue, int redrive,
                                  size_t line_cap, char *err, size_t errlen);
/* --batches: write one line per completed batch to path (NULL: off).
 * Call before commit_open_results(), which opens it. Borrows path. */
void commit_set_batches(commit *c, const char *path);
/* The source whose queue batches are acknowledged after their commit. */
void commit_set_source(commit *c, source *src, int queue);

/* Takes the record line of the item at ref into the buffer and moves the
 * item to MI_COMMITTING. On FO_OK the buffer owns line. FO_EINVAL when the
 * item is not open or already has a record (the caller still owns line):
 * an item is recorded at most once. held_bytes then counts the record
 * instead of the item's request, which the caller frees next. */
FO_WUR fo_err commit_add(commit *c, batches *b, proto_ref ref,
                         item_status status, int64_t attempts,
                         int64_t throttled, char *line, size_t len,
                         int64_t now);
/* 1 when the buffer should be flushed now: full, old enough, stopping, or
 * (empty) the oldest batch is complete, so its cursor can move. */
int commit_due(const commit *c, const batches *b, int64_t now, int stopping);
/* The latest time by which commit_due() becomes true by the clock alone,
 * or INT64_MAX. */
int64_t commit_deadline(const commit *c);
/* Group commit: writes and fsyncs the buffered lines, then commits rows,
 * cursor, totals and the queue ids to forget in one transaction; pops
 * complete batches (acknowledging queue batches). src_eof says whether the
 * job can be finished. Returns FO_OK, or FO_EIO / FO_ESTORE with err. */
FO_WUR fo_err commit_flush(commit *c, batches *b, int src_eof, int64_t now,
                           char *err, size_t errlen);
/* Marks the job finished when nothing was left to do (empty input, or
 * resumed with nothing left). */
FO_WUR fo_err commit_finish(commit *c, char *err, size_t errlen);
/* Queue: ids whose acknowledgement the queue confirmed (takes the heap
 * strings, not the array); forgotten with the next flush. */
void commit_forget(commit *c, char **ids, size_t n);
/* Queue: acknowledges mb when every record of it is committed. */
void commit_ack_batch(commit *c, mbatch *mb);

#endif
