/* outbox.c - queued and recently sent results; see outbox.h. */
#include "fmacros.h"
#include "outbox.h"
#include "util.h"

static void free_frames(outframe *f)
{
    while (f) {
        outframe *next = f->next;
        buf_fini(&f->frame);
        free(f);
        f = next;
    }
}

void outbox_init(outbox *ob)
{
    memset(ob, 0, sizeof *ob);
    proto_batch_init(&ob->batch);
    buf_init(&ob->env, PROTO_MAX_RESULT_BYTES + PROTO_MULTI_BYTES +
                           PROTO_FRAME_OVERHEAD_BYTES);
}

void outbox_fini(outbox *ob)
{
    free_frames(ob->out_head);
    free_frames(ob->recent_head);
    proto_batch_fini(&ob->batch);
    buf_fini(&ob->env);
    memset(ob, 0, sizeof *ob);
}

void outbox_push(outbox *ob, fo_buf *frame)
{
    outframe *f = xcalloc(1, sizeof *f);
    f->frame = *frame;
    memset(frame, 0, sizeof *frame);
    if (ob->out_tail)
        ob->out_tail->next = f;
    else
        ob->out_head = f;
    ob->out_tail = f;
}

int outbox_pending(const outbox *ob)
{
    return ob->out_head != NULL;
}

void outbox_prune(outbox *ob, int64_t now, int64_t lease_ns, int master_ok)
{
    if (!master_ok && ob->recent_bytes <= OUTBOX_RECENT_MAX_BYTES)
        return;
    while (ob->recent_head && (now - ob->recent_head->sent_ns > lease_ns ||
                               ob->recent_bytes > OUTBOX_RECENT_MAX_BYTES)) {
        outframe *f = ob->recent_head;
        ob->recent_head = f->next;
        if (!ob->recent_head)
            ob->recent_tail = NULL;
        ob->recent_bytes -= f->frame.len;
        f->next = NULL;
        free_frames(f);
    }
}

/* Moves the first n waiting frames to the recent list, sent at now. */
static void mark_sent(outbox *ob, size_t n, int64_t now)
{
    while (n-- > 0 && ob->out_head) {
        outframe *f = ob->out_head;
        ob->out_head = f->next;
        if (!ob->out_head)
            ob->out_tail = NULL;
        f->next = NULL;
        f->sent_ns = now;
        if (ob->recent_tail)
            ob->recent_tail->next = f;
        else
            ob->recent_head = f;
        ob->recent_tail = f;
        ob->recent_bytes += f->frame.len;
    }
}

void outbox_flush(outbox *ob, outbox_send_fn send, void *ctx, int64_t now,
                  int64_t lease_ns, int master_ok)
{
    while (ob->out_head) {
        proto_batch_reset(&ob->batch);
        for (outframe *f = ob->out_head;
             f && proto_batch_fits(&ob->batch, f->frame.len); f = f->next)
            proto_batch_add(&ob->batch, f->frame.data, f->frame.len);
        size_t n = ob->batch.n;
        /* The envelope's epoch is not read; the frames carry their own. */
        if (proto_batch_finish(&ob->batch, 0, &ob->env) != FO_OK ||
            send(ctx, ob->env.data, ob->env.len) < 0)
            break;
        mark_sent(ob, n, now);
    }
    outbox_prune(ob, now, lease_ns, master_ok);
}

void outbox_resend_recent(outbox *ob)
{
    if (!ob->recent_head)
        return;
    ob->recent_tail->next = ob->out_head;
    if (!ob->out_head)
        ob->out_tail = ob->recent_tail;
    ob->out_head = ob->recent_head;
    ob->recent_head = ob->recent_tail = NULL;
    ob->recent_bytes = 0;
}
