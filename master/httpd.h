/*
 * httpd.h - a very small HTTP/1.1 server inside the master's event loop,
 * for /metrics (Prometheus text), /status (JSON), /healthz, the dashboard
 * at / and its few POST commands.
 *
 * It never blocks the loop: the listening socket and each connection are
 * non-blocking descriptors polled with the master's ZeroMQ sockets. A
 * request is at most 8 KiB, headers and body together; each connection
 * gets one response and is closed; at most 32 connections at once, each
 * dropped after 5 s. Every response says no-store, nosniff and a Content
 * Security Policy that lets a page load nothing but itself and /status.
 */
#ifndef FANOUT_HTTPD_H
#define FANOUT_HTTPD_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

typedef struct httpd httpd;

/* One parsed request; every pointer borrows the connection's buffer and
 * lives until the handler returns. */
typedef struct httpd_req {
    const char *method;        /* "GET", "HEAD" or "POST" */
    const char *path;          /* without the query string */
    const char *authorization; /* the Authorization header, or NULL */
    const char *body;          /* the body (NUL-terminated), "" for none */
    size_t body_len;           /* its length */
} httpd_req;

/* What the handler answers besides the body. */
typedef struct httpd_resp {
    int status;               /* 200, 400, 401, 403, 404, 405 */
    const char *content_type; /* a static string */
    const char *headers;      /* extra "Name: value\r\n" lines (static), or
                                 NULL */
} httpd_resp;

/* Renders the response body for req (a heap string the server frees) and
 * fills *resp, which comes set to 200 text/plain. */
typedef char *(*httpd_handler)(void *ctx, const httpd_req *req,
                               httpd_resp *resp);

/* Listens on "HOST:PORT" (PORT 0: any free port). Returns NULL with err. */
httpd *httpd_new(const char *addr, httpd_handler fn, void *ctx, char *err,
                 size_t errlen);
void httpd_destroy(httpd **h);
/* The port actually bound. */
int httpd_port(const httpd *h);
/* Appends poll items (the listener and connections); returns how many. */
size_t httpd_pollitems(const httpd *h, zmq_pollitem_t *items, size_t cap);
/* Serves whatever the poll found ready, and expires stale connections. */
void httpd_dispatch(httpd *h, const zmq_pollitem_t *items, size_t n,
                    int64_t now_ns);

#endif
