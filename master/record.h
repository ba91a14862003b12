/*
 * record.h - one line of results.jsonl.
 *
 *   {"id":"42","status":"ok","http_status":200,"attempts":2,"batch":4,
 *    "latency_ms":31,"started_at":"2026-12-05T10:00:00.120Z",
 *    "finished_at":"2026-12-05T10:00:01.433Z","response":{...}}
 *
 * status is ok, failed (with error) or invalid (with error naming the
 * line). A response that is JSON is embedded as JSON; other UTF-8 text as a
 * string; bytes that are not UTF-8 are left out and counted in
 * response_bytes, as is a response the worker left out (--keep of a body
 * that is not JSON).
 */
#ifndef FANOUT_RECORD_H
#define FANOUT_RECORD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct record {
    const char *id;       /* item id */
    item_status status;   /* final status */
    int http_status;      /* last HTTP status, 0 for none */
    int attempts;         /* attempts made */
    int throttled;        /* of which throttled */
    uint64_t batch;       /* batch number */
    int64_t line;         /* input line number */
    int64_t latency_ms;   /* last attempt's duration, -1 for none */
    const char *error;    /* error text or NULL */
    const char *response; /* response body or NULL */
    size_t response_len;  /* its length */
    const char *worker;   /* worker id or NULL */
    const char *msg_id;   /* queue message id (instead of line) or NULL */
    uint64_t started_us;  /* first attempt's start, wall clock; 0 none */
    uint64_t finished_us; /* last attempt's end, wall clock; 0 none */
    uint64_t dropped_len; /* a response the worker left out, 0 none */
} record;

/* Returns the record as one JSON line ending in '\n' (caller frees). */
char *record_format(const record *r, size_t *len);

/* Returns o serialised with jansson flags as a heap string ending in '\n'
 * (caller frees); *len (if given) is its length. Borrows o. */
char *record_json_line(const json_t *o, size_t flags, size_t *len);

#endif
