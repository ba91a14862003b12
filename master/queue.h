/*
 * queue.h - drivers for message queues the master reads its items from
 * (Redis Streams, Azure Queue Storage).
 *
 * A driver is blocking, and only ever called from the master's source
 * thread (source_queue.c), one call at a time; every call is bounded by
 * the driver's own network timeouts (a few seconds), so the thread can
 * still stop. The thread owns the messages it pulled until they are
 * acknowledged: it renews their leases while the master works on them and
 * acknowledges (deletes) them only after the master committed their
 * records.
 *
 * A message's id is stable across deliveries: the master's store keeps the
 * ids whose record is committed but whose acknowledgement is not yet
 * confirmed, so a message delivered again after a crash is acknowledged,
 * not run again.
 */
#ifndef FANOUT_QUEUE_H
#define FANOUT_QUEUE_H

#include <stddef.h>
#include <stdint.h>

/* One message pulled from a queue. Every string is the message's own heap
 * copy, freed by queue_msg_fini(). */
typedef struct queue_msg {
    char *id;           /* message id, stable across deliveries */
    char *receipt;      /* what acknowledging or renewing it needs (Azure:
                           the pop receipt, updated by renew); may be NULL */
    char *body;         /* the item as JSON text, NUL-terminated; NULL when
                           too_big or bad */
    size_t len;         /* its length */
    int too_big;        /* the body was over the size cap */
    char *bad;          /* why the message is not an item (e.g. "base64 body
                           does not decode"), or NULL */
    int64_t deliveries; /* times delivered, when the queue says (else 0);
                           1 spares the master a store lookup: a first
                           delivery cannot have a record yet */
} queue_msg;

/* Per-message outcomes of ack and renew. */
enum {
    QUEUE_DONE = 0,  /* acknowledged (or already gone) / lease renewed */
    QUEUE_STALE = 1, /* our lease on it is lost (someone else may hold it
                        now): it will be delivered again */
    QUEUE_RETRY = 2  /* a transient error: try again later */
};

/* Options common to every driver, from the master's flags. */
typedef struct queue_opts {
    int64_t lease_ms;      /* how long a pulled message stays ours without
                              a renewal (Azure visibility timeout, Redis
                              claim idle time) */
    size_t max_item_bytes; /* bodies over this are too_big (not kept) */
    int64_t timeout_ms;    /* network timeout of one call */
    const char *consumer;  /* a name for this master (Redis consumer) */
} queue_opts;

typedef struct queue_driver queue_driver;
struct queue_driver {
    const char *kind; /* "redis", "azure-queue" */
    /* Pulls up to max messages nobody holds, leased for opts.lease_ms; on
     * the first call after open it also returns messages a previous
     * master left unacknowledged, where the queue can tell (Redis: our
     * consumer's pending entries, and entries of other consumers idle for
     * longer than the lease). Sets *n (0 when the queue is empty). Returns
     * 0, or -1 with err on an error (the thread logs it and retries with
     * backoff). out has room for max. */
    int (*pull)(queue_driver *q, size_t max, queue_msg *out, size_t *n,
                char *err, size_t errlen);
    /* Acknowledges (deletes) msgs; sets outcome[i] to QUEUE_DONE,
     * QUEUE_STALE or QUEUE_RETRY. Returns 0, or -1 with err when nothing
     * could be done (every outcome QUEUE_RETRY). */
    int (*ack)(queue_driver *q, queue_msg *msgs, size_t n, int *outcome,
               char *err, size_t errlen);
    /* Extends the leases of msgs by opts.lease_ms from now (Azure: updates
     * msgs[i].receipt); outcomes as for ack. */
    int (*renew)(queue_driver *q, queue_msg *msgs, size_t n, int *outcome,
                 char *err, size_t errlen);
    /* A short description for logs, without secrets
     * ("redis 127.0.0.1:6379 stream jobs group fanout"). */
    const char *(*describe)(queue_driver *q);
    /* Frees everything; safe on NULL. */
    void (*destroy)(queue_driver *q);
};

/* 1 when input names a queue (redis://, rediss://, azure-queue://). */
int queue_is_url(const char *input);

/* Opens the driver input names. Returns NULL with err on a configuration
 * error (a bad URL, a missing credential), naming what is wrong; a server
 * that does not answer yet is not an error here (pull reports it). */
queue_driver *queue_open(const char *input, const queue_opts *o, char *err,
                         size_t errlen);

/* The drivers. */
queue_driver *queue_redis_open(const char *url, const queue_opts *o, char *err,
                               size_t errlen);
queue_driver *queue_azure_open(const char *url, const queue_opts *o, char *err,
                               size_t errlen);

/* The queue URL without credentials or options, but the Redis group:
 * what identifies the queue, safe to log and show. */
void queue_url_public(const char *url, char *out, size_t cap);

/* Frees a message's strings and zeroes it. */
void queue_msg_fini(queue_msg *m);

/* Percent-decodes s[0..n) into a new string ('+' is a space when
 * plus_is_space, as in a query); *len (if given) is its length, which an
 * encoded NUL makes longer than strlen. */
char *queue_pct_decode(const char *s, size_t n, int plus_is_space, size_t *len);

/* Copies the value of query parameter name from url (after '?', '&'
 * separated, percent-decoded) into buf; returns 1 when present, 0 when
 * absent, -1 when longer than cap. */
int queue_url_param(const char *url, const char *name, char *buf, size_t cap);

/* Turns the text of a message into the item: a JSON object as is; with
 * base64 (as Azure's SDKs write messages) decoded first. mode is "auto"
 * (JSON if it parses as an object, else base64 of one), "base64" or
 * "none". Sets m->body/len, or m->bad with the reason, or m->too_big. */
void queue_set_body(queue_msg *m, const char *text, size_t len,
                    const char *mode, size_t max_bytes);

#endif
