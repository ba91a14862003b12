/*
 * outage.h - telling an API outage from a bad item.
 *
 * The API answered this worker before, and now several calls in a row
 * could not even reach it (no connection, no name resolution, a connect
 * timeout): an outage, or this host lost its route to the API, not a
 * problem of the item. While an outage is declared, retry_decide() does
 * not count such attempts towards --max-attempts: the items wait, retrying
 * at the backoff's pace, and run when the API answers again. An API that
 * never answered (a wrong URL) still fails items fast, and so does a call
 * that connected and then timed out (a slow endpoint).
 *
 * The clock is passed in. The module logs the outage's start, a reminder
 * every minute, and its end (api.unreachable / api.reachable).
 */
#ifndef FANOUT_OUTAGE_H
#define FANOUT_OUTAGE_H

#include <stdint.h>

/* Calls in a row that could not reach the API that make an outage. */
#define OUTAGE_AFTER_FAILURES 3

/* Visible only so it can be embedded in the worker's state. */
typedef struct outage {
    int api_answered;  /* the API has answered us (any HTTP status) */
    uint32_t fails;    /* calls in a row that could not reach it */
    int64_t since_ns;  /* when items started waiting for it, or 0 */
    int64_t logged_ns; /* when that was last logged */
} outage;

/* No outage; the API has not answered yet. */
void outage_init(outage *o);
/* Notes how a call ended: answered (any HTTP status), or unreachable
 * (never reached the API). Returns 1 while an outage is declared. Logs
 * api.reachable when an answer ends an outage items were waiting on. */
int outage_note(outage *o, int answered, int unreachable, int64_t now_ns);
/* An item waits for the API (retry_decide() said RETRY_OUTAGE): logs
 * api.unreachable with the transport error when the wait starts, then
 * at most once a minute. */
void outage_waiting(outage *o, const char *error, int64_t now_ns);

#endif
