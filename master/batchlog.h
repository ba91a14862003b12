/*
 * batchlog.h - the --batches file: one line per completed batch.
 *
 *   {"batch":4,"first_line":41,"last_line":50,"items":{"41":"ok",...}}
 *   {"batch":7,"messages":["m1",...],"items":{"a":"failed",...}}
 *
 * The commit module owns it and writes it like results.jsonl: a batch's
 * line is formatted in the group commit that commits the batch's last
 * record (where the batch is popped), appended at the committed size and
 * fsynced before the store transaction, whose state then counts its bytes
 * (store_state.batches_size). After a crash, bytes past that are cut on
 * open, and the batch, not popped in the store, gets its line when it
 * completes again: every popped batch has exactly one line.
 *
 * The map needs every item's id and status. Records made in this life are
 * noted as they enter the commit buffer. Items whose record an earlier life
 * committed (a batch cut by a crash) are known by their line or message id
 * only; their ids and statuses come from a scan of results.jsonl on open,
 * from store_state.batches_scan: the offset of the oldest record of a
 * batch still open, kept with every commit, so the scan is O(records of
 * open batches), not O(results). A queue message that comes back after
 * its record was committed (its acknowledgement was lost) is listed only
 * if no line lists it yet: a record before batches_scan belongs to a batch
 * whose line was written, and the lines from the lowest batch of the
 * records read back are checked (batchlog_mark_written). After a repair
 * of results.jsonl (or
 * --redrive), the job starts over from the first line, and so does this
 * file: it is emptied, and the scan covers every record kept.
 */
#ifndef FANOUT_BATCHLOG_H
#define FANOUT_BATCHLOG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "batches.h"
#include "buf.h"
#include "error.h"
#include "hmap.h"
#include "status.h"

/* Visible only so it can be embedded in the commit module. */
typedef struct batchlog {
    int fd;             /* the file, or -1 while closed */
    char *path;         /* its path (owned), or NULL: --batches not given */
    hmap status;        /* (batch, idx) -> item_status, this life's records */
    hmap earlier;       /* "l:LINE" / "m:MSGID" -> batchlog_prev */
    char **prev_ids;    /* ids of the earlier records (owned; NULL: used) */
    size_t nprev;       /* slots in prev_ids */
    hmap first_off;     /* batch -> results.jsonl offset of its 1st record */
    int64_t scan_from;  /* offset the earlier records start at, or -1 */
    uint64_t min_batch; /* lowest batch of a remembered queue record */
    uint64_t n_unknown; /* items written as "unknown" (should stay 0) */
    int overflow;       /* the pending lines went over wbuf's cap */
    fo_buf wbuf;        /* what one group commit writes */
} batchlog;

/* Off until batchlog_open(); path NULL keeps it off. */
void batchlog_init(batchlog *bl, const char *path);
/* Frees everything and closes the file; safe twice. */
void batchlog_fini(batchlog *bl);
/* 1 when --batches is on. */
int batchlog_on(const batchlog *bl);

/* Opens the file and cuts it to good bytes (the committed size). When the
 * file is shorter than that (cut outside fanout) it warns and *good
 * becomes the file's size. restart: the job starts over from its first
 * line (a repair or --redrive; good is 0), said as such. FO_OK, or
 * FO_EUSAGE / FO_EIO with err. */
FO_WUR fo_err batchlog_open(batchlog *bl, int64_t *good, int restart, char *err,
                            size_t errlen);
/* Learns an earlier life's record (a parsed results.jsonl line) whose
 * batch may still complete in this life. Borrows rec. */
void batchlog_remember(batchlog *bl, const json_t *rec);
/* The queue confirmed msg_id's acknowledgement: its earlier record, if
 * remembered, is not needed (its message will not come back). */
void batchlog_forget(batchlog *bl, const char *msg_id);
/* Queue: marks the remembered messages that a line of the file (size
 * bytes, committed) already lists, so the batch they come back in leaves
 * them out: a message acknowledged too late is delivered again after its
 * batch's line was written. Reads back from the end only as far as the
 * lowest batch remembered. FO_OK or FO_EIO with err. */
FO_WUR fo_err batchlog_mark_written(batchlog *bl, int64_t size, char *err,
                                    size_t errlen);
/* Earlier records start at off in results.jsonl (or -1: none remembered),
 * which bounds the next scan while they are in use. */
void batchlog_set_scan_from(batchlog *bl, int64_t off);

/* A record for the item at ref entered the commit buffer. */
void batchlog_note(batchlog *bl, proto_ref ref, item_status st);
/* A record of batch no is being written at results.jsonl offset off. */
void batchlog_note_offset(batchlog *bl, uint64_t no, int64_t off);
/* Appends the line of the complete batch mb to the pending write and
 * forgets its items. queue: list message ids instead of lines. */
void batchlog_add_batch(batchlog *bl, const mbatch *mb, int queue);
/* The offset from which a scan finds every record of batches still open
 * (those of b past its first `popped`), or end when none is. */
int64_t batchlog_scan_from(const batchlog *bl, const batches *b, size_t popped,
                           int64_t end);
/* Writes the pending lines at *size and fsyncs them; *size grows by what
 * was written. FO_OK or FO_EIO with err. */
FO_WUR fo_err batchlog_write(batchlog *bl, int64_t *size, char *err,
                             size_t errlen);

#endif
