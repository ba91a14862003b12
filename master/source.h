/*
 * source.h - where the master's items come from: a JSONL file, stdin, or a
 * message queue (Redis Streams, Azure Queue Storage).
 *
 * Every kind gives the same guarantees, through three steps:
 *   - pull: source_next() hands out items one at a time, never blocking;
 *     SOURCE_AGAIN means nothing is ready now (poll source_pollitem());
 *   - acknowledge: once every record of a batch is committed, the master
 *     acknowledges its items. For a file or stdin the acknowledgement is
 *     the resume cursor the master commits itself; a queue's messages are
 *     acknowledged (XACK, deleted) by source_ack();
 *   - recover: on open, whatever a previous run pulled and never
 *     acknowledged comes back: a file resumes at the committed cursor, and
 *     a queue hands its unacknowledged messages out again (at once for
 *     Redis, when their lease runs out for Azure).
 * A queue message can come back although its record is committed (a crash
 * between the commit and the acknowledgement): the master keeps the ids of
 * such messages in its store until the queue confirms the acknowledgement
 * (source_take_acked()), and acknowledges a message it finds there instead
 * of running it again.
 */
#ifndef FANOUT_SOURCE_H
#define FANOUT_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "store.h"

typedef struct source source;

typedef struct source_cfg {
    const char *input;      /* path, "-", or a queue URL */
    int64_t max_line_bytes; /* item size cap */
    int follow;             /* queues: keep running when empty */
    int64_t idle_grace_ms;  /* queues: empty this long = the end */
    int64_t lease_ms;       /* queues: lease (visibility timeout) */
    int64_t timeout_ms;     /* queues: network timeout per call */
    void *zctx;             /* ZeroMQ context (the queue thread's socket) */
    store *st;              /* the store (a queue's lease deadline; the
                               input marks a resumed stdin is checked
                               against) */
    int expect_end;         /* stdin: the job is complete, so nothing but
                               blank lines may follow the cursor */
} source_cfg;

/* One item handed out; the pointers stay valid until the next call. */
typedef struct source_item {
    const char *data;   /* the item's JSON text */
    size_t len;         /* its length */
    fo_err rc;          /* FO_OK, FO_ETOOBIG (over the cap), FO_EINVAL */
    const char *bad;    /* with FO_EINVAL: why it is not an item */
    int64_t line_no;    /* file: its line number; queue: 0 */
    int64_t end_offset; /* file: the offset after it; queue: 0 */
    const char *msg_id; /* queue: the message id; file: NULL */
    uint64_t handle;    /* queue: what source_ack() takes */
    int first;          /* queue: its first delivery (no record yet) */
    uint64_t hash;      /* file: hash of the input through this line (the
                           cursor's hash), 0 unknown; queue: 0 */
} source_item;

enum { SOURCE_ITEM, SOURCE_AGAIN, SOURCE_EOF, SOURCE_ERROR };

/* Opens the source named by c->input at the committed cursor. Returns NULL
 * with err and *code (an exit status) on failure.
 *
 * stdin cannot seek: the lines before the cursor are read again, hashed,
 * and checked against the hashes the store kept where the cursor has been
 * (store_input_marks()). A stdin that differs from the one the job started
 * with, ends before the cursor, or (expect_end) holds more items after a
 * complete job, is refused with *code 2 and err naming the line near the
 * first difference: resuming it would skip or misnumber items silently. A
 * regular file seeks to the cursor; one shorter than the cursor is
 * refused. */
source *source_open(const source_cfg *c, const store_cursor *cur, char *err,
                    size_t errlen, int *code);
/* Queues: stops pulling and waits up to wait_ms for the acknowledgements
 * still to make (their ids then come from source_take_acked()). */
void source_drain(source *s, int64_t wait_ms);
/* Closes the source (a queue drains first, waiting up to wait_ms). Safe on
 * NULL. */
void source_close(source **s, int64_t wait_ms);

/* The next item (SOURCE_ITEM), SOURCE_AGAIN, SOURCE_EOF, or SOURCE_ERROR
 * (a read error; source_error() says what). want is how many items the
 * master could take now; a queue pulls up to that many at once. */
int source_next(source *s, int64_t want, source_item *it, int64_t now);
const char *source_error(const source *s);

/* 1 for a queue. */
int source_is_queue(const source *s);
/* A socket or fd to poll for input, in a zmq_pollitem_t's terms: returns 1
 * and sets *socket or *fd, or 0 when there is nothing to poll (a regular
 * file is always ready). */
int source_pollable(source *s, void **socket, int *fd);
/* Queue housekeeping: events from the queue thread, the lease deadline. */
void source_tick(source *s, int64_t now, int holding);

/* Queues: acknowledges items whose records are committed (handles from
 * source_item). Asynchronous; confirmed ids come from source_take_acked. */
void source_ack(source *s, const uint64_t *handles, size_t n);
/* Queues: a duplicate delivery of a message already held: let it go
 * without acknowledging it. */
void source_release(source *s, uint64_t handle);
/* Queues: the ids whose acknowledgement the queue confirmed since the last
 * call (an array of heap strings the caller frees, with *n). */
char **source_take_acked(source *s, size_t *n);

/* File: the input's size (regular files), or -1; the number of items
 * from the cursor to the end when cheap to count, or -1. */
int64_t source_size(const source *s);
int64_t source_count_rest(source *s);

#endif
