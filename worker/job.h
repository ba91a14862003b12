/*
 * job.h - the JOB a master hands its workers, parsed from its JSON text.
 *
 * The master sends the job as a JSON object (PROTOCOL.md, JOB): the request
 * method and headers, the retry policy, the ports of the work and result
 * sockets, timing. job_parse() turns it into a job with defaults for
 * anything absent and expands ${VAR} in headers from this worker's
 * environment, since secrets live on the worker host. Only the variables
 * the worker's operator allowed (--allow-env) are expanded: without that,
 * whoever controls a master could have a worker send any of its host's
 * variables (AWS_SECRET_ACCESS_KEY, ...) to a URL of their choosing. A job
 * the worker cannot run (bad ports, no attempts allowed, a header naming a
 * variable that is not allowed or not set) is an error, never half-applied.
 */
#ifndef FANOUT_JOB_H
#define FANOUT_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "retry.h"
#include "transform.h"

/* Visible only so it can be embedded in the worker's state. */
typedef struct job {
    char *method;            /* HTTP method */
    char **headers;          /* expanded "Name: value" lines, owned */
    size_t nheaders;         /* how many */
    long timeout_ms;         /* per attempt */
    long connect_timeout_ms; /* per attempt */
    retry_policy retry;      /* attempts, throttling and backoff limits */
    size_t max_response;     /* response body cap, <= PROTO_MAX_BODY_BYTES */
    int64_t heartbeat_ns;    /* heartbeat interval */
    int64_t lease_ns;        /* master silence before re-hello */
    int rate_limited;        /* tokens carry times that matter */
    int64_t slack_ns;        /* lateness after which a token is dropped */
    transform xf;            /* --keep, --drop-response, --ok-when */
} job;

/* Sets the environment variables a JOB's headers may name as ${NAME} on
 * this worker (--allow-env), copying the names; n == 0 allows none and
 * frees the list. A worker has one such list for its whole life, set at
 * startup before the first JOB, so it is kept here rather than passed to
 * every job_parse(). Not thread-safe: call it from the worker's thread. */
void job_allow_env(char *const *names, size_t n);

/* Parses the JOB's JSON text into *j, which the caller later frees with
 * job_fini(). On error *j is left empty (job_fini() is still safe) and err
 * names the problem without ever quoting a header's value (it may be a
 * secret). Returns FO_OK; FO_EPROTO when the text is not a JSON object or
 * its retry policy or response settings are unusable; FO_EDENIED when
 * headers refer to variables that job_allow_env() did not allow (err names
 * every one, and the flags that would allow them); FO_EINVAL when a header
 * refers to an allowed variable that is not set here, or has an unclosed
 * "${". */
FO_WUR fo_err job_parse(const char *text, job *j, char *err, size_t errlen);

/* Frees what *j owns and zeroes it; safe on a zeroed job and twice. */
void job_fini(job *j);

#endif
