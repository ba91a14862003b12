/*
 * intake.h - from the source to open batches: reading, rendering, cutting
 * batches.
 *
 * Pulls items from the source while the window has room, renders each
 * one's request (URL and body templates), records a bad line as invalid
 * (it never reaches a worker), skips what an earlier run already recorded,
 * and closes a batch at --batch-size items (a queue's batch is what was
 * there). Closed batches' pending items go to the dispatch queue.
 */
#ifndef FANOUT_INTAKE_H
#define FANOUT_INTAKE_H

#include <stddef.h>
#include <stdint.h>

#include "batches.h"
#include "commit.h"
#include "error.h"
#include "fanin.h"
#include "source.h"
#include "store.h"
#include "template.h"

/* What intake needs from the job's options. */
typedef struct intake_cfg {
    const char *input;        /* path, "-", or a queue URL */
    const char *url;          /* URL template */
    const char *body;         /* body template or NULL */
    const char *method;       /* HTTP method (POST/PUT/PATCH send the item) */
    const char *key;          /* id field */
    const char *rate_key;     /* --rate-key template, or NULL */
    int64_t batch_size;       /* items per batch */
    int64_t max_line_bytes;   /* item size cap */
    int follow;               /* queues: wait when empty */
    int64_t idle_grace_ms;    /* queues: empty this long = the end */
    int64_t max_window_bytes; /* bytes outstanding at most (0: no cap) */
} intake_cfg;

/* How much intake may read ahead, worked out by the master each turn. */
typedef struct intake_window {
    int64_t items;   /* items outstanding at most */
    int64_t at_once; /* calls that may be in flight at once: this many
                        items are read whatever --max-window-bytes says */
} intake_window;

/* Visible only so it can be embedded in the master. */
typedef struct intake {
    intake_cfg cfg;         /* options (strings borrowed) */
    template *url_t;        /* URL template */
    template *body_t;       /* body template, or NULL */
    template *rkey_t;       /* --rate-key template, or NULL */
    int body_whole_item;    /* POST/PUT/PATCH without --body: the item */
    source *src;            /* the source, or NULL before intake_open */
    int queue;              /* it is a queue */
    char shown[1024];       /* --input without credentials */
    int eof;                /* the source is exhausted */
    int64_t in_size;        /* regular file size, or -1 */
    int64_t total_items;    /* items in the job, or -1 when unknown */
    store_row *prev;        /* rows committed by an earlier run */
    size_t nprev;           /* their count */
    batches *bt;            /* where items go (borrowed) */
    commit *cm;             /* invalid records go here (borrowed) */
    fanin *fi;              /* recovers orphaned results (borrowed) */
    store *st;              /* the store (borrowed) */
    uint64_t n_blank;       /* blank lines skipped */
    uint64_t n_dup_msgs;    /* queue messages delivered while held */
    uint64_t n_redelivered; /* queue messages found recorded already */
    uint64_t n_acked;       /* queue acknowledgements confirmed */
} intake;

/* Parses the templates. FO_EUSAGE with err naming --url or --body. */
FO_WUR fo_err intake_init(intake *in, const intake_cfg *cfg, char *err,
                          size_t errlen);
/* Closes the source and frees everything; safe to call twice. */
void intake_fini(intake *in);
/* The job's identity for the store: input (absolute, without credentials),
 * URL, method, body, key and batch size (heap JSON, caller frees). */
char *intake_identity(const intake_cfg *cfg);
/* Opens the source at the committed cursor, loads the rows an earlier run
 * committed above it, and sets the first batch number. *code is the exit
 * status a failure calls for (usage or fatal). */
FO_WUR fo_err intake_open(intake *in, store *st, const store_state *state,
                          void *zctx, batches *bt, commit *cm, fanin *fi,
                          char *err, size_t errlen);
/* 1 when the input is not exhausted, fewer than window.items items are
 * outstanding, and either their bytes (cm->held_bytes) are under
 * --max-window-bytes or fewer than window.at_once are outstanding:
 * intake_read would read. So what is held is at most the calls in flight
 * plus --max-window-bytes (and one item). */
int intake_has_room(const intake *in, intake_window window);
/* Reads items while intake_has_room(). FO_OK, or FO_EIO with err (a read
 * error: fatal). */
FO_WUR fo_err intake_read(intake *in, intake_window window, int64_t now,
                          char *err, size_t errlen);

/* Queue housekeeping: events from the queue thread, and the ids whose
 * acknowledgement the queue confirmed go to the commit module to forget. */
void intake_tick(intake *in, int64_t now);

/* The first batch number a queue job uses, past any an earlier run may
 * have used after its last commit. */
#define INTAKE_QUEUE_BATCH_GAP 100001

#endif
