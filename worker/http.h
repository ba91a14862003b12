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
 */
#ifndef FANOUT_HTTP_H
#define FANOUT_HTTP_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "buf.h"
#include "error.h"
#include "ratelimit.h"

/* One call to make. Strings are borrowed for the duration of http_start();
 * the headers list is borrowed until the call completes. */
typedef struct http_request {
    const char *method;         /* "GET", "POST", ... */
    const char *url;            /* absolute URL */
    const char *body;           /* request body or NULL */
    size_t body_len;            /* its length */
    struct curl_slist *headers; /* extra headers (borrowed) */
    long timeout_ms;            /* whole-call timeout */
    long connect_timeout_ms;    /* connect timeout */
    size_t max_response_bytes;  /* response body cap */
    void *user;                 /* handed back in the response */
} http_request;

/* The outcome of one call, valid during the completion callback only. */
typedef struct http_response {
    void *user;               /* from the request */
    CURLcode code;            /* CURLE_OK when a response arrived */
    long status;              /* HTTP status, 0 without a response */
    int body_capped;          /* the body went over the cap; aborted */
    const char *error;        /* human-readable error when code != OK */
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
/* Starts a call. Returns FO_OK, or FO_EIO if libcurl refused it (no
 * callback will come). */
FO_WUR fo_err http_start(http *h, const http_request *req);
/* Calls in flight. */
int http_inflight(const http *h);
/* Appends poll items for libcurl's sockets to items (at most cap); returns
 * how many were added. */
size_t http_pollitems(const http *h, zmq_pollitem_t *items, size_t cap);
/* Milliseconds until libcurl wants to be called, or -1 for no deadline. */
long http_timeout_ms(const http *h);
/* After zmq_poll: drives libcurl with the items http_pollitems() added,
 * fires its timeout when due, and calls done() for finished calls. */
void http_dispatch(http *h, const zmq_pollitem_t *items, size_t n);

#endif
