/*
 * queue.h - message queues the master reads its items from (Redis
 * Streams, Azure Queue Storage): the driver interface, the registry that
 * picks a driver by URL, and what the drivers share.
 *
 * Each driver is a table of operations and capability flags (queue_driver)
 * that the registry (queue_registry.c) finds by the URL's scheme; callers
 * use the queue_* wrappers and ask for capabilities, never for a driver by
 * name. queue.c (the wrappers and the helpers the drivers share) knows no
 * driver, and no driver knows another.
 *
 * A queue is blocking. The master's thread opens it and, once the source
 * thread (source_queue.c) has ended, destroys it; in between only the
 * source thread calls it, one call at a time (describe's text is fixed at
 * open, so the master's thread may read it too). Every call is bounded by
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

/* Capability flags: what a driver's queue does that the source thread must
 * allow for (queue_driver.caps). The source asks for a capability, never
 * for a driver by name. */
enum {
    /* A message a master held comes back only when its lease times out:
     * nothing hands a dead master's messages out sooner (Azure; Redis
     * gives a consumer its own pending entries back at once). A master
     * records when the leases it holds end, and a restarted one does not
     * declare the queue empty before that. */
    QUEUE_CAP_LEASE_TIMEOUT_ONLY = 1u << 0,
    /* renew() extends leases (both drivers); without it a lease must
     * outlast the work, and renew is NULL. */
    QUEUE_CAP_RENEW = 1u << 1
};

typedef struct queue queue;
typedef struct queue_driver queue_driver;

/* A driver: one static const table per queue service, listed in the
 * registry (queue_registry.c), which picks one by the input URL's scheme.
 * Every operation is called only through the queue_* wrappers below. */
struct queue_driver {
    const char *scheme; /* URL scheme without "://" ("redis") */
    unsigned caps;      /* QUEUE_CAP_* */
    /* Opens the queue url names (its scheme is this driver's). Returns a
     * queue with q->driver set to this table, or NULL with err on a
     * configuration error. */
    queue *(*open)(const char *url, const queue_opts *o, char *err,
                   size_t errlen);
    int (*pull)(queue *q, size_t max, queue_msg *out, size_t *n, char *err,
                size_t errlen);
    int (*ack)(queue *q, queue_msg *msgs, size_t n, int *outcome, char *err,
               size_t errlen);
    /* NULL without QUEUE_CAP_RENEW. */
    int (*renew)(queue *q, queue_msg *msgs, size_t n, int *outcome, char *err,
                 size_t errlen);
    const char *(*describe)(queue *q);
    /* Frees q and everything it holds; never given NULL. */
    void (*destroy)(queue *q);
};

/* An open queue. Visible only so that a driver can embed it as the first
 * member of its own state; callers treat it as opaque. */
struct queue {
    const queue_driver *driver; /* the driver that opened it */
};

/* The drivers, for the registry (queue_registry.c) alone. */
extern const queue_driver queue_redis_driver;
extern const queue_driver queue_azure_driver;

/* The driver whose scheme input starts with ("redis://", "azure-queue://";
 * not "rediss://"), or NULL when input is not a queue URL. */
const queue_driver *queue_driver_find(const char *input);

/* 1 when input names a queue (queue_driver_find finds a driver). */
int queue_is_url(const char *input);

/* Opens the queue input names. Returns NULL with err on a configuration
 * error (not a queue URL, a bad URL, a missing credential), naming what is
 * wrong; a server that does not answer yet is not an error here (pull
 * reports it). The caller frees the queue with queue_destroy(). */
queue *queue_open(const char *input, const queue_opts *o, char *err,
                  size_t errlen);

/* 1 when q's driver has every capability in caps (QUEUE_CAP_*). */
int queue_has(const queue *q, unsigned caps);

/* Pulls up to max messages nobody holds, leased for opts.lease_ms; on the
 * first call after open it also returns messages a previous master left
 * unacknowledged, where the queue can tell (Redis: our consumer's pending
 * entries, and entries of other consumers idle for longer than the lease).
 * Sets *n (0 when the queue is empty). Returns 0, or -1 with err on an
 * error (the thread logs it and retries with backoff); messages already
 * in out[0..*n) are the caller's either way. out has room for max. */
int queue_pull(queue *q, size_t max, queue_msg *out, size_t *n, char *err,
               size_t errlen);

/* Acknowledges (deletes) msgs; sets outcome[i] to QUEUE_DONE, QUEUE_STALE
 * or QUEUE_RETRY. Returns 0, or -1 with err when nothing could be done
 * (every outcome QUEUE_RETRY). */
int queue_ack(queue *q, queue_msg *msgs, size_t n, int *outcome, char *err,
              size_t errlen);

/* Extends the leases of msgs by opts.lease_ms from now (Azure: updates
 * msgs[i].receipt); outcomes and return as for queue_ack. Only for a queue
 * with QUEUE_CAP_RENEW. */
int queue_renew(queue *q, queue_msg *msgs, size_t n, int *outcome, char *err,
                size_t errlen);

/* A short description for logs, without secrets ("redis 127.0.0.1:6379
 * stream jobs group fanout"); q owns it. */
const char *queue_describe(queue *q);

/* Frees *qp and NULLs it; safe on NULL and when called twice. */
void queue_destroy(queue **qp);

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
