/* httpd.c - non-blocking /metrics, /status and dashboard server; see
 * httpd.h. */
#include "fmacros.h"
#include "httpd.h"
#include "clock.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <strings.h>
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

/* Sent with every response: nothing is cached, nothing sniffed, and a
 * page may run only its own inline script and style, fetch only this
 * server and be framed by nobody. */
#define HTTPD_COMMON_HEADERS                                                   \
    "Cache-Control: no-store\r\n"                                              \
    "X-Content-Type-Options: nosniff\r\n"                                      \
    "Referrer-Policy: no-referrer\r\n"                                         \
    "Content-Security-Policy: default-src 'none'; script-src "                 \
    "'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "              \
    "connect-src 'self'; base-uri 'none'; form-action 'none'; "                \
    "frame-ancestors 'none'\r\n"

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Content Too Large";
    default:
        return "Error";
    }
}

/* The end of the headers (the first byte after the blank line), or 0 when
 * they have not all arrived. */
static size_t headers_end(const char *in)
{
    const char *crlf = strstr(in, "\r\n\r\n"), *lf = strstr(in, "\n\n");
    if (crlf && (!lf || crlf < lf))
        return (size_t)(crlf - in) + 4;
    if (lf)
        return (size_t)(lf - in) + 2;
    return 0;
}

/* Finds header name (with its colon) among the header lines of the
 * request in [in, end), the request line skipped; returns its value with
 * leading blanks skipped, or NULL. */
static char *find_header(char *in, const char *end, const char *name)
{
    size_t n = strlen(name);
    char *p = strchr(in, '\n');
    while (p && ++p < end) {
        if (!strncasecmp(p, name, n)) {
            char *v = p + n;
            while (*v == ' ' || *v == '\t')
                v++;
            return v;
        }
        p = strchr(p, '\n');
    }
    return NULL;
}

/* Parses the request in c->in (headers complete at hend, body complete)
 * in place, asks the handler for the body, and queues the response. */
static void render(httpd *h, conn *c, size_t hend, size_t clen)
{
    httpd_resp resp = {400, "text/plain; charset=utf-8", NULL};
    char *body = NULL;
    char *line_end = strpbrk(c->in, "\r\n");
    char *sp1 = strchr(c->in, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (line_end && sp1 && sp2 && sp2 < line_end && sp1[1] == '/') {
        const char *end = c->in + hend;
        char *auth = find_header(c->in, end, "Authorization:");
        if (auth)
            auth[strcspn(auth, "\r\n")] = '\0';
        *sp1 = *sp2 = '\0';
        char *q = strchr(sp1 + 1, '?');
        if (q)
            *q = '\0';
        c->in[hend + clen] = '\0';
        httpd_req req = {c->in, sp1 + 1, auth, c->in + hend, clen};
        int head = !strcmp(req.method, "HEAD");
        if (head)
            req.method = "GET";
        if (!strcmp(req.method, "GET") || !strcmp(req.method, "POST")) {
            resp.status = 200;
            body = h->fn(h->ctx, &req, &resp);
        } else {
            resp.status = 405;
            resp.headers = "Allow: GET, HEAD, POST\r\n";
        }
        if (head) {
            free(body);
            body = xstrdup("");
        }
    }
    if (!body)
        body = xstrdup(resp.status == 405 ? "only GET, HEAD and POST\n"
                                          : "bad request\n");
    size_t blen = strlen(body);
    char head[1024];
    int hl =
        snprintf(head, sizeof head,
                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: "
                 "%zu\r\n" HTTPD_COMMON_HEADERS "%sConnection: close\r\n\r\n",
                 resp.status, reason(resp.status), resp.content_type, blen,
                 resp.headers ? resp.headers : "");
    if (hl < 0 || (size_t)hl >= sizeof head)
        hl = snprintf(head, sizeof head, "HTTP/1.1 500 Error\r\n\r\n");
    c->out = xmalloc((size_t)hl + blen);
    memcpy(c->out, head, (size_t)hl);
    memcpy(c->out + hl, body, blen);
    c->out_len = (size_t)hl + blen;
    c->out_off = 0;
    free(body);
}

/* A request that breaks a cap gets a short answer, not a silent close. */
static void refuse(conn *c, int status)
{
    char *r = xmalloc(160);
    int n = snprintf(r, 160,
                     "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: "
                     "close\r\n\r\n",
                     status, reason(status));
    c->out = r;
    c->out_len = (size_t)n;
    c->out_off = 0;
}

/* Renders once the headers and the body they announce have arrived. */
static void maybe_render(httpd *h, conn *c)
{
    size_t hend = headers_end(c->in);
    if (!hend) {
        if (c->in_len >= sizeof c->in - 1)
            refuse(c, 413); /* headers over the cap */
        return;
    }
    size_t clen = 0;
    const char *cl = find_header(c->in, c->in + hend, "Content-Length:");
    if (cl) {
        char *endp;
        unsigned long long v = strtoull(cl, &endp, 10);
        if (endp == cl || *cl == '-' || v > sizeof c->in - 1 - hend) {
            refuse(c, endp == cl || *cl == '-' ? 400 : 413);
            return;
        }
        clen = (size_t)v;
    }
    if (c->in_len < hend + clen)
        return; /* the body is still coming */
    render(h, c, hend, clen);
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
                maybe_render(h, c);
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
