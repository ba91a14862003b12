/*
 * transform.h - what a worker keeps of a response, and whether a 2xx
 * answer really is a success.
 *
 * The JOB carries the settings (PROTOCOL.md, JOB): --keep paths, which
 * store only those parts of a JSON response, as one object {PATH: value}
 * keyed by each path as written (a path the response lacks is left out);
 * --drop-response, which stores no response at all; and --ok-when, a
 * condition (jpath.h) a 2xx response must satisfy to count as ok, with
 * --ok-when-retry saying a response that fails it is retried like a 5xx
 * rather than failed at once. Running this on the worker means a large
 * response never crosses the network: only what is kept goes into the
 * RESULT.
 *
 * A response that is not JSON is kept as it is only when no --keep is
 * given; with --keep it is dropped and its size reported instead (the
 * record's response_bytes). --drop-response reports nothing.
 */
#ifndef FANOUT_TRANSFORM_H
#define FANOUT_TRANSFORM_H

#include <jansson.h>
#include <stddef.h>

#include "error.h"
#include "jpath.h"

/* A job's response settings. Visible only so it can be embedded in the
 * job; zeroed means "store the response as it is, every 2xx is ok". */
typedef struct transform {
    jpath *keep;      /* nkeep --keep paths, owned */
    size_t nkeep;     /* their count */
    int drop;         /* --drop-response */
    int has_check;    /* --ok-when given */
    jpath_cond check; /* the condition, when has_check */
    int check_retry;  /* --ok-when-retry */
} transform;

/* What transform_apply() made of one response. */
typedef struct transform_result {
    int passed;           /* 1: no --ok-when, or the body satisfies it */
    const char *body;     /* what to store: the input body, owned, or NULL */
    size_t body_len;      /* its length */
    size_t dropped_bytes; /* --keep: size of a body left out (not JSON) */
    char *owned;          /* body when it was built here (freed by fini) */
    char why[300];        /* when !passed: what the check saw */
} transform_result;

/* Reads the settings from a JOB object ("keep", "drop_response",
 * "ok_when", "ok_when_retry"; absent keys mean off) into *t. On error *t
 * is empty and err names the field. Returns FO_OK or FO_EPROTO. */
FO_WUR fo_err transform_from_job(const json_t *job, transform *t, char *err,
                                 size_t errlen);
/* Frees what *t owns and zeroes it; safe on a zeroed transform and twice. */
void transform_fini(transform *t);

/* Applies t to a response body of len bytes (NULL or len 0: none).
 * check says whether --ok-when applies (the caller sets it for 2xx
 * answers only). What --keep builds is held to cap bytes (the response
 * cap, which sizes the master's frames): a larger result (many paths, or
 * numbers printed longer) is left out and its size reported. The result
 * may point into body, so body must outlive it; free it with
 * transform_result_fini(). */
void transform_apply(const transform *t, const char *body, size_t len,
                     int check, size_t cap, transform_result *r);
/* Frees what r owns; safe twice. */
void transform_result_fini(transform_result *r);

#endif
