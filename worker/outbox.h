/*
 * outbox.h - results waiting for the result socket, and the results sent
 * lately, kept to be sent again to a new master.
 *
 * Results are queued as encoded frames and handed to the socket as it
 * takes them (it refuses when its pipe is full or the master is away),
 * those waiting together in one MULTI envelope (proto.h), so a burst of
 * results costs one send.
 * A frame the socket took is not yet committed: a master killed between
 * receiving a result and committing it would otherwise lose it, and the
 * item's API call would be repeated. So each sent frame moves to a
 * "recent" list, kept for a lease and up to a byte cap, and a new master
 * gets the whole list again (outbox_resend_recent(); the master records
 * each item once, so duplicates are harmless).
 *
 * The socket is reached through a send callback, so the module has no
 * ZeroMQ dependency and no clock of its own.
 */
#ifndef FANOUT_OUTBOX_H
#define FANOUT_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "proto.h"

/* Results sent within the last lease are kept, up to this many bytes. */
#define OUTBOX_RECENT_MAX_BYTES (2u << 20)

/* One queued or recently sent frame. */
typedef struct outframe {
    fo_buf frame;          /* an encoded RESULT */
    int64_t sent_ns;       /* when the socket took it (recent list) */
    struct outframe *next; /* FIFO link */
} outframe;

/* Visible only so it can be embedded in the worker's state. */
typedef struct outbox {
    outframe *out_head, *out_tail;       /* waiting for the socket */
    outframe *recent_head, *recent_tail; /* sent lately, oldest first */
    size_t recent_bytes;                 /* their total frame size */
    proto_batch batch;                   /* frames of the next send */
    fo_buf env;                          /* its envelope */
} outbox;

/* Hands one frame to the socket without blocking: returns 0 when it was
 * taken, -1 when it must wait (pipe full, no peer). */
typedef int (*outbox_send_fn)(void *ctx, const void *data, size_t len);

/* An empty outbox. */
void outbox_init(outbox *ob);
/* Frees every frame, queued and recent; safe twice. */
void outbox_fini(outbox *ob);
/* Queues a frame: the outbox takes ownership of *frame's storage and
 * leaves *frame empty (re-initialise it before reuse). */
void outbox_push(outbox *ob, fo_buf *frame);
/* 1 when frames are waiting for the socket. */
int outbox_pending(const outbox *ob);
/* Sends queued frames in order, in envelopes of up to PROTO_MULTI_MAX
 * frames and PROTO_MULTI_BYTES, until the socket refuses one, stamping
 * each sent frame with now and moving it to the recent list, then prunes
 * the recent list (outbox_prune()). */
void outbox_flush(outbox *ob, outbox_send_fn send, void *ctx, int64_t now,
                  int64_t lease_ns, int master_ok);
/* Drops recent frames older than lease_ns or over the byte cap. While the
 * master is away (master_ok == 0) only the byte cap applies: what was sent
 * may not have reached it. */
void outbox_prune(outbox *ob, int64_t now, int64_t lease_ns, int master_ok);
/* A new master: puts every recent frame back at the front of the queue,
 * oldest first. */
void outbox_resend_recent(outbox *ob);

#endif
