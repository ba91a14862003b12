/* http.c - libcurl multi driven by zmq_poll; see http.h. */
#include "fmacros.h"
#include "http.h"
#include "clock.h"
#include "log.h"
#include "util.h"

#include <curl/curl.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/socket.h>

#define HTTP_MAX_SOCKETS 65536

typedef struct call {
    CURL *easy;                   /* the transfer */
    fo_buf body;                  /* response body, capped */
    int capped;                   /* the cap was hit */
    char *retry_after;            /* Retry-After value */
    struct curl_slist *hdrs;      /* request headers, owned until done */
    ratelimit_info rl;            /* rate-limit headers */
    char errbuf[CURL_ERROR_SIZE]; /* libcurl's detail */
    int64_t start_ns;             /* when it started */
    void *user;                   /* caller's pointer */
    struct call *prev, *next;     /* the list of calls in flight */
} call;

typedef struct watched {
    curl_socket_t fd; /* descriptor libcurl uses */
    int what;         /* CURL_POLL_IN / OUT / INOUT */
} watched;

struct http {
    CURLM *multi;      /* the multi handle */
    http_done_fn done; /* completion callback */
    void *ctx;         /* its context */
    watched *socks;    /* descriptors to poll */
    size_t nsocks;     /* in use */
    size_t capsocks;   /* allocated */
    int64_t timer_ns;  /* libcurl's deadline, or -1 */
    int inflight;      /* calls running */
    call *calls;       /* calls in flight, for teardown */
    CURL **idle;       /* finished easy handles, reset and reused */
    size_t nidle;      /* how many */
};

/* Reusing easy handles saves an allocation storm per call; connections
 * live in the multi handle's cache either way. */
#define HTTP_IDLE_MAX 1024

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp,
                     void *socketp)
{
    http *h = userp;
    for (size_t i = 0; i < h->nsocks; i++) {
        if (h->socks[i].fd != s)
            continue;
        if (what == CURL_POLL_REMOVE)
            h->socks[i] = h->socks[--h->nsocks];
        else
            h->socks[i].what = what;
        return 0;
    }
    if (what == CURL_POLL_REMOVE)
        return 0;
    if (h->nsocks == h->capsocks) {
        if (h->capsocks >= HTTP_MAX_SOCKETS)
            return -1;
        h->capsocks = h->capsocks ? h->capsocks * 2 : 16;
        h->socks = xrealloc(h->socks, h->capsocks * sizeof *h->socks);
    }
    h->socks[h->nsocks].fd = s;
    h->socks[h->nsocks].what = what;
    h->nsocks++;
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    http *h = userp;
    h->timer_ns =
        timeout_ms < 0 ? -1 : clock_now_ns() + timeout_ms * FO_NS_PER_MS;
    return 0;
}

http *http_new(http_done_fn done, void *ctx)
{
    http *h = xcalloc(1, sizeof *h);
    h->multi = curl_multi_init();
    if (!h->multi) {
        free(h);
        return NULL;
    }
    h->done = done;
    h->ctx = ctx;
    h->timer_ns = -1;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    /* Keep enough idle connections for the concurrency we run at. */
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, 1024L);
    return h;
}

static void call_free(call *c)
{
    if (c->easy)
        curl_easy_cleanup(c->easy);
    buf_fini(&c->body);
    free(c->retry_after);
    curl_slist_free_all(c->hdrs);
    free(c);
}

void http_destroy(http **hp)
{
    http *h = *hp;
    if (!h)
        return;
    while (h->calls) {
        call *c = h->calls;
        h->calls = c->next;
        curl_multi_remove_handle(h->multi, c->easy);
        call_free(c);
    }
    curl_multi_cleanup(h->multi);
    for (size_t i = 0; i < h->nidle; i++)
        curl_easy_cleanup(h->idle[i]);
    free(h->idle);
    free(h->socks);
    FO_FREE(hp);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userp)
{
    call *c = userp;
    size_t n = size * nmemb;
    if (buf_append(&c->body, ptr, n) != FO_OK) {
        c->capped = 1;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userp)
{
    call *c = userp;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n > sizeof name - 1 && n < 256 &&
        strncasecmp(ptr, name, sizeof name - 1) == 0) {
        free(c->retry_after);
        /* Keep only the value: no blanks, no CRLF in logs. */
        const char *v = ptr + sizeof name - 1;
        size_t vl = n - (sizeof name - 1);
        while (vl && (*v == ' ' || *v == '\t')) {
            v++;
            vl--;
        }
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' ||
                      v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        c->retry_after = xstrndup(v, vl);
    } else if (n < 600 && (ptr[0] == 'r' || ptr[0] == 'R' || ptr[0] == 'x' ||
                           ptr[0] == 'X')) {
        ratelimit_header(&c->rl, ptr, n, clock_wall_ms());
    }
    return n;
}

/* A request the network holds back (a link down, a route flapping) would
 * reach the API whenever the network lets it go, together with everything
 * queued behind it: a burst the rate limit never allowed. The kernel gives
 * up on data unacknowledged for this long; the call fails, is retried with
 * a fresh token, and what was queued is never delivered. */
#define HTTP_TCP_USER_TIMEOUT_MS 3000

static int on_sockopt(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
    (void)clientp;
    if (purpose == CURLSOCKTYPE_IPCXN) {
        unsigned int ms = HTTP_TCP_USER_TIMEOUT_MS;
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
    }
    return CURL_SOCKOPT_OK;
}

fo_err http_start(http *h, const http_request *req)
{
    call *c = xcalloc(1, sizeof *c);
    buf_init(&c->body, req->max_response_bytes);
    ratelimit_init(&c->rl);
    c->user = req->user;
    if (h->nidle) {
        c->easy = h->idle[--h->nidle];
        curl_easy_reset(c->easy);
    } else {
        c->easy = curl_easy_init();
    }
    if (!c->easy) {
        call_free(c);
        return FO_EIO;
    }
    CURL *e = c->easy;
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "fanout/" FANOUT_VERSION);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, on_sockopt);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
                     (curl_off_t)req->max_response_bytes);
    for (size_t i = 0; i < req->nheaders; i++) {
        struct curl_slist *l = curl_slist_append(c->hdrs, req->headers[i]);
        if (!l) {
            call_free(c);
            return FO_ENOMEM;
        }
        c->hdrs = l;
    }
    if (c->hdrs)
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->hdrs);
    if (req->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)req->body_len);
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req->body);
    }
    if (strcmp(req->method, "GET") == 0) {
        if (req->body)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "GET");
    } else if (strcmp(req->method, "POST") != 0 || !req->body) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
        if (strcmp(req->method, "HEAD") == 0)
            curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    }
    c->start_ns = clock_now_ns();
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        call_free(c);
        return FO_EIO;
    }
    c->next = h->calls;
    if (h->calls)
        h->calls->prev = c;
    h->calls = c;
    h->inflight++;
    return FO_OK;
}

int http_inflight(const http *h)
{
    return h->inflight;
}

size_t http_nsocks(const http *h)
{
    return h->nsocks;
}

size_t http_pollitems(const http *h, zmq_pollitem_t *items, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < h->nsocks && n < cap; i++, n++) {
        items[n].socket = NULL;
        items[n].fd = h->socks[i].fd;
        items[n].events = 0;
        items[n].revents = 0;
        if (h->socks[i].what & CURL_POLL_IN)
            items[n].events |= ZMQ_POLLIN;
        if (h->socks[i].what & CURL_POLL_OUT)
            items[n].events |= ZMQ_POLLOUT;
    }
    return n;
}

long http_timeout_ms(const http *h)
{
    if (h->timer_ns < 0)
        return -1;
    int64_t d = h->timer_ns - clock_now_ns();
    if (d <= 0)
        return 0;
    return (long)((d + FO_NS_PER_MS - 1) / FO_NS_PER_MS);
}

int http_outcome_unreachable(http_outcome o)
{
    return o == HTTP_OUT_CONNECT || o == HTTP_OUT_RESOLVE ||
           o == HTTP_OUT_CONNECT_TIMEOUT;
}

fo_err http_global_init(char *err, size_t errlen)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "libcurl failed to initialise");
        return FO_EIO;
    }
    return FO_OK;
}

void http_global_fini(void)
{
    curl_global_cleanup();
}

/* Maps libcurl's result to an outcome. A timeout is told apart by
 * libcurl's own message: "Connection timed out" / "Resolving timed out"
 * before a connection, "Operation timed out" after; libcurl has no
 * separate code for them. */
static http_outcome outcome_of(CURLcode code, int capped, const char *error)
{
    if (capped || code == CURLE_FILESIZE_EXCEEDED)
        return HTTP_OUT_TOO_LARGE;
    switch (code) {
    case CURLE_OK:
        return HTTP_OUT_OK;
    case CURLE_COULDNT_CONNECT:
        return HTTP_OUT_CONNECT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return HTTP_OUT_RESOLVE;
    case CURLE_OPERATION_TIMEDOUT:
        if (error && (!strncmp(error, "Connection timed out", 20) ||
                      !strncmp(error, "Resolving timed out", 19)))
            return HTTP_OUT_CONNECT_TIMEOUT;
        return HTTP_OUT_TIMEOUT;
    default:
        return HTTP_OUT_OTHER;
    }
}

static void finish(http *h)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *e = msg->easy_handle;
        call *c = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&c);
        http_response r;
        memset(&r, 0, sizeof r);
        r.user = c->user;
        CURLcode code = msg->data.result;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r.status);
        r.error = c->errbuf[0] ? c->errbuf : curl_easy_strerror(code);
        r.outcome = outcome_of(code, c->capped, r.error);
        r.body = buf_str(&c->body);
        r.body_len = c->body.len;
        r.retry_after = c->retry_after;
        r.ratelimit = c->rl;
        r.latency_ms = (clock_now_ns() - c->start_ns) / FO_NS_PER_MS;
        curl_multi_remove_handle(h->multi, e);
        if (c->prev)
            c->prev->next = c->next;
        else
            h->calls = c->next;
        if (c->next)
            c->next->prev = c->prev;
        h->inflight--;
        h->done(h->ctx, &r);
        if (h->nidle < HTTP_IDLE_MAX) {
            if (!h->idle)
                h->idle = xcalloc(HTTP_IDLE_MAX, sizeof *h->idle);
            h->idle[h->nidle++] = c->easy;
            c->easy = NULL;
        }
        call_free(c);
    }
}

void http_dispatch(http *h, const zmq_pollitem_t *items, size_t n)
{
    int running;
    for (size_t i = 0; i < n; i++) {
        if (!items[i].revents)
            continue;
        int ev = 0;
        if (items[i].revents & ZMQ_POLLIN)
            ev |= CURL_CSELECT_IN;
        if (items[i].revents & ZMQ_POLLOUT)
            ev |= CURL_CSELECT_OUT;
        if (items[i].revents & ZMQ_POLLERR)
            ev |= CURL_CSELECT_ERR;
        curl_multi_socket_action(h->multi, items[i].fd, ev, &running);
    }
    if (h->timer_ns >= 0 && clock_now_ns() >= h->timer_ns) {
        h->timer_ns = -1;
        curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    finish(h);
}
