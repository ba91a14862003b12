/*
 * http.h - HTTP calls on libcurl's multi interface, driven by zmq_poll.
 *
 * The worker has one thread and one wait: zmq_poll over its ZeroMQ sockets
 * and every socket libcurl is using. libcurl tells us which descriptors to
 * watch (CURLMOPT_SOCKETFUNCTION) and when its next timeout is
 * (CURLMOPT_TIMERFUNCTION); after the poll we hand the ready descriptors
 * back with curl_multi_socket_action(). Many calls are in flight in that one
 * thread and the multi handle's connection cache reuses connections across
 * calls. An idle worker sleeps in zmq_poll and uses no CPU.
 *
 * libcurl stays behind this header: callers see an http_outcome instead of
 * CURLcode, pass headers as plain strings, and never include <curl/curl.h>.
 * Every libcurl-specific judgement (which codes mean "never reached the
 * server", which message text tells a connect timeout from a slow answer)
 * is made in http.c.
 */
#ifndef FANOUT_HTTP_H
#define FANOUT_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "buf.h"
#include "error.h"
#include "ratelimit.h"

/* How a call ended. Values are stable within a build only; never send
 * them over the wire. */
typedef enum http_outcome {
    HTTP_OUT_OK = 0,          /* a response arrived (any status) */
    HTTP_OUT_CONNECT,         /* no connection could be made */
    HTTP_OUT_RESOLVE,         /* the host (or proxy) name did not resolve */
    HTTP_OUT_CONNECT_TIMEOUT, /* timed out resolving or connecting */
    HTTP_OUT_TIMEOUT,         /* timed out after the connection was made */
    HTTP_OUT_TOO_LARGE,       /* the body went over the cap; aborted */
    HTTP_OUT_OTHER            /* any other transport error */
} http_outcome;

/* 1 when the call never reached the server: no connection could be made,
 * its name did not resolve, or connecting timed out (as opposed to an
 * answer, or a connection that broke or timed out after it was made). */
int http_outcome_unreachable(http_outcome o);

/* Initialises the HTTP library once per process, before any http_new().
 * Returns FO_OK or FO_EIO (message in err). */
FO_WUR fo_err http_global_init(char *err, size_t errlen);
/* Undoes http_global_init(); call after every client is destroyed. */
void http_global_fini(void);

/* One call to make. Everything is borrowed for the duration of
 * http_start() only: the client copies what it keeps. */
typedef struct http_request {
    const char *method;         /* "GET", "POST", ... */
    const char *url;            /* absolute URL */
    const char *body;           /* request body or NULL */
    size_t body_len;            /* its length */
    const char *const *headers; /* extra "Name: value" lines */
    size_t nheaders;            /* how many */
    long timeout_ms;            /* whole-call timeout */
    long connect_timeout_ms;    /* connect timeout */
    size_t max_response_bytes;  /* response body cap */
    void *user;                 /* handed back in the response */
} http_request;

/* The outcome of one call, valid during the completion callback only. */
typedef struct http_response {
    void *user;               /* from the request */
    http_outcome outcome;     /* HTTP_OUT_OK when a response arrived */
    long status;              /* HTTP status, 0 without a response */
    const char *error;        /* human-readable error unless outcome OK */
    const char *body;         /* response body (NUL-terminated) */
    size_t body_len;          /* its length */
    const char *retry_after;  /* Retry-After header value, or NULL */
    ratelimit_info ratelimit; /* RateLimit / X-RateLimit headers */
    int64_t latency_ms;       /* duration of the call */
} http_response;

typedef void (*http_done_fn)(void *ctx, const http_response *resp);

typedef struct http http;

/* Returns a client that calls done(ctx, resp) as each call completes. */
http *http_new(http_done_fn done, void *ctx);
/* Aborts calls in flight (without callbacks) and frees *h; safe on NULL. */
void http_destroy(http **h);
/* Starts a call. Returns FO_OK, FO_ENOMEM when the headers could not be
 * copied, or FO_EIO if libcurl refused it (in both cases no
 * callback will come). */
FO_WUR fo_err http_start(http *h, const http_request *req);
/* Calls in flight. */
int http_inflight(const http *h);
/* Appends poll items for libcurl's sockets to items (at most cap); returns
 * how many were added. */
size_t http_pollitems(const http *h, zmq_pollitem_t *items, size_t cap);
/* How many items http_pollitems() would add. */
size_t http_nsocks(const http *h);
/* Milliseconds until libcurl wants to be called, or -1 for no deadline. */
long http_timeout_ms(const http *h);
/* After zmq_poll: drives libcurl with the items http_pollitems() added,
 * fires its timeout when due, and calls done() for finished calls. */
void http_dispatch(http *h, const zmq_pollitem_t *items, size_t n);

#endif
