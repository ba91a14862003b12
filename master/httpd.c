/* httpd.c - non-blocking /metrics and /status server; see httpd.h. */
#include "fmacros.h"
#include "httpd.h"
#include "clock.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTPD_MAX_CONNS 32
#define HTTPD_REQ_BYTES 8192
#define HTTPD_CONN_NS (5 * FO_NS_PER_S)

typedef struct conn {
    int fd;                   /* -1 when free */
    char in[HTTPD_REQ_BYTES]; /* request bytes */
    size_t in_len;            /* used */
    char *out;                /* response, once rendered */
    size_t out_len, out_off;  /* its size and progress */
    int64_t deadline_ns;      /* dropped after this */
} conn;

struct httpd {
    int lfd;                     /* listening socket */
    int port;                    /* bound port */
    httpd_handler fn;            /* renders bodies */
    void *ctx;                   /* its context */
    conn conns[HTTPD_MAX_CONNS]; /* connections */
};

httpd *httpd_new(const char *addr, httpd_handler fn, void *ctx, char *err,
                 size_t errlen)
{
    const char *colon = strrchr(addr, ':');
    if (!colon) {
        snprintf(err, errlen, "'%s' is not HOST:PORT", addr);
        return NULL;
    }
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    if (!host[0])
        snprintf(host, sizeof host, "0.0.0.0");
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host, colon + 1, &hints, &res);
    if (gai) {
        snprintf(err, errlen, "'%s': %s", addr, gai_strerror(gai));
        return NULL;
    }
    int fd =
        socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
        listen(fd, 64) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return NULL;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        snprintf(err, errlen, "%s: getsockname: %s", addr, strerror(errno));
        close(fd);
        return NULL;
    }
    httpd *h = xcalloc(1, sizeof *h);
    h->lfd = fd;
    h->port =
        ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                       : ((struct sockaddr_in *)&ss)->sin_port);
    h->fn = fn;
    h->ctx = ctx;
    for (int i = 0; i < HTTPD_MAX_CONNS; i++)
        h->conns[i].fd = -1;
    return h;
}

static void conn_close(conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    FO_FREE(&c->out);
    c->in_len = c->out_len = c->out_off = 0;
}

void httpd_destroy(httpd **hp)
{
    httpd *h = *hp;
    if (!h)
        return;
    for (int i = 0; i < HTTPD_MAX_CONNS; i++)
        conn_close(&h->conns[i]);
    close(h->lfd);
    FO_FREE(hp);
}

int httpd_port(const httpd *h)
{
    return h->port;
}

size_t httpd_pollitems(const httpd *h, zmq_pollitem_t *items, size_t cap)
{
    size_t n = 0;
    if (n < cap)
        items[n++] = (zmq_pollitem_t){NULL, h->lfd, ZMQ_POLLIN, 0};
    for (int i = 0; i < HTTPD_MAX_CONNS && n < cap; i++) {
        const conn *c = &h->conns[i];
        if (c->fd >= 0)
            items[n++] = (zmq_pollitem_t){NULL, c->fd,
                                          c->out ? ZMQ_POLLOUT : ZMQ_POLLIN, 0};
    }
    return n;
}

static void render(httpd *h, conn *c)
{
    char path[1024] = "";
    int status = 400;
    const char *ctype = "text/plain; charset=utf-8";
    char *body = NULL;
    if (!strncmp(c->in, "GET ", 4)) {
        const char *p = c->in + 4, *sp = strchr(p, ' ');
        if (sp && (size_t)(sp - p) < sizeof path) {
            memcpy(path, p, (size_t)(sp - p));
            path[sp - p] = '\0';
            char *q = strchr(path, '?');
            if (q)
                *q = '\0';
            body = h->fn(h->ctx, path, &status, &ctype);
        }
    } else {
        status = 405;
    }
    if (!body)
        body = xstrdup(status == 405 ? "only GET\n" : "bad request\n");
    const char *reason = status == 200   ? "OK"
                         : status == 404 ? "Not Found"
                         : status == 405 ? "Method Not Allowed"
                                         : "Bad Request";
    size_t blen = strlen(body);
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: "
                      "%zu\r\nConnection: close\r\n\r\n",
                      status, reason, ctype, blen);
    c->out = xmalloc((size_t)hl + blen);
    memcpy(c->out, head, (size_t)hl);
    memcpy(c->out + hl, body, blen);
    c->out_len = (size_t)hl + blen;
    c->out_off = 0;
    free(body);
}

void httpd_dispatch(httpd *h, const zmq_pollitem_t *items, size_t n,
                    int64_t now_ns)
{
    for (size_t k = 0; k < n; k++) {
        if (!items[k].revents)
            continue;
        if (items[k].fd == h->lfd) {
            for (;;) {
                int fd =
                    accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                    break;
                conn *slot = NULL;
                for (int i = 0; i < HTTPD_MAX_CONNS && !slot; i++)
                    if (h->conns[i].fd < 0)
                        slot = &h->conns[i];
                if (!slot) {
                    close(fd); /* full: the scraper retries */
                    continue;
                }
                slot->fd = fd;
                slot->deadline_ns = now_ns + HTTPD_CONN_NS;
            }
            continue;
        }
        for (int i = 0; i < HTTPD_MAX_CONNS; i++) {
            conn *c = &h->conns[i];
            if (c->fd != items[k].fd)
                continue;
            if (!c->out) {
                ssize_t r = read(c->fd, c->in + c->in_len,
                                 sizeof c->in - 1 - c->in_len);
                if (r <= 0) {
                    if (r == 0 || (errno != EAGAIN && errno != EINTR))
                        conn_close(c);
                    break;
                }
                c->in_len += (size_t)r;
                c->in[c->in_len] = '\0';
                if (strstr(c->in, "\r\n\r\n") || strstr(c->in, "\n\n"))
                    render(h, c);
                else if (c->in_len >= sizeof c->in - 1)
                    conn_close(c); /* headers over the cap */
            }
            if (c->out) {
                ssize_t w =
                    write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
                if (w > 0)
                    c->out_off += (size_t)w;
                if ((w < 0 && errno != EAGAIN && errno != EINTR) ||
                    c->out_off == c->out_len)
                    conn_close(c);
            }
            break;
        }
    }
    for (int i = 0; i < HTTPD_MAX_CONNS; i++)
        if (h->conns[i].fd >= 0 && now_ns > h->conns[i].deadline_ns)
            conn_close(&h->conns[i]);
}
