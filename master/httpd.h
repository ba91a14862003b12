/*
 * httpd.h - a very small HTTP/1.1 server inside the master's event loop,
 * for /metrics (Prometheus text) and /status (JSON).
 *
 * It never blocks the loop: the listening socket and each connection are
 * non-blocking descriptors polled with the master's ZeroMQ sockets. A
 * request is at most 8 KiB of headers; each connection gets one response
 * and is closed; at most 32 connections at once, each dropped after 5 s.
 */
#ifndef FANOUT_HTTPD_H
#define FANOUT_HTTPD_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

typedef struct httpd httpd;

/* Renders the response body for path (a heap string the server frees);
 * sets *status (200, 404) and *content_type. */
typedef char *(*httpd_handler)(void *ctx, const char *path, int *status,
                               const char **content_type);

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
