/*
 * worker.c - fanout-worker's event loop; see worker.h.
 *
 * One thread, one zmq_poll: the control DEALER, the work PULL, the result
 * PUSH (only while results are queued) and libcurl's sockets. Each turn of
 * the loop spends the tokens whose time has come, asks the master for more
 * when what it wants changed, heartbeats, and sleeps until the earliest of:
 * the next token, the next retry, the next heartbeat, libcurl's timer.
 *
 * Token accounting with the master is exact without locks or acks: a
 * TOKEN_REQ says "I want W more, having seen S tokens so far"; the master
 * subtracts the tokens it granted that the worker had not yet seen, so a
 * request crossing a grant on the wire never makes it grant twice.
 */
#include "fmacros.h"
#include "worker.h"
#include "backoff.h"
#include "buf.h"
#include "clock.h"
#include "http.h"
#include "keys.h"
#include "log.h"
#include "proto.h"
#include "ring.h"
#include "template.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_POLL_ITEMS 4096
#define HELLO_INTERVAL_NS (1000 * FO_NS_PER_MS)
#define RETRY_AFTER_CAP_MS (3600 * 1000)
#define RESULT_LINGER_MS 5000

enum { WI_READY = 0, WI_WAIT = 1, WI_FLIGHT = 2 };

typedef struct witem {
    proto_ref ref;           /* where the master keeps it */
    char *key;               /* its id */
    char *url;               /* rendered URL */
    char *body;              /* rendered body or NULL */
    size_t body_len;         /* its length */
    char *idem;              /* Idempotency-Key */
    uint32_t attempts;       /* attempts made, throttled ones included */
    uint32_t throttled;      /* attempts answered 429/503+Retry-After */
    uint32_t unreachable;    /* attempts during an API outage (uncounted) */
    uint32_t last_http;      /* last HTTP status */
    char *last_error;        /* last error text */
    int64_t ready_at_ns;     /* when a waiting item may be retried */
    int state;               /* WI_* */
    struct curl_slist *hdrs; /* this call's headers, while in flight */
    uint32_t account;        /* token account the call was paid from */
    struct witem *qnext;     /* ready queue link */
} witem;

typedef struct job {
    char *method;               /* HTTP method */
    struct curl_slist *headers; /* expanded job headers */
    long timeout_ms;            /* per attempt */
    long connect_timeout_ms;    /* per attempt */
    uint32_t max_attempts;      /* attempts that count, at most */
    uint32_t max_throttled;     /* throttled attempts, at most */
    int64_t backoff_base_ms;    /* first retry's cap */
    int64_t backoff_max_ms;     /* largest cap */
    size_t max_response;        /* response body cap */
    int work_port;              /* master's PUSH port */
    int result_port;            /* master's PULL port */
    int64_t heartbeat_ns;       /* heartbeat interval */
    int64_t lease_ns;           /* master silence before re-hello */
    int rate_limited;           /* tokens carry times that matter */
    int64_t slack_ns;           /* lateness after which a token is dropped */
} job;

typedef struct outframe {
    fo_buf frame;          /* an encoded RESULT */
    int64_t sent_ns;       /* when the socket took it (recent list) */
    struct outframe *next; /* FIFO link */
} outframe;

/* Results sent within the last lease are kept, up to this many bytes, and
 * sent again to a new master: a master killed between receiving a result
 * and committing it would otherwise make the API call repeat. */
#define RECENT_MAX_BYTES (2u << 20)

typedef struct wstate {
    const worker_config *cfg;            /* options */
    void *zctx;                          /* ZeroMQ context */
    void *ctl;                           /* DEALER to the master */
    void *work;                          /* PULL of items */
    void *res;                           /* PUSH of results */
    char id[320];                        /* worker id */
    char host[256];                      /* our host name */
    char master_host[256];               /* host part of --master */
    uint64_t epoch;                      /* the current master's epoch */
    int have_job;                        /* a JOB arrived */
    int master_ok;                       /* the master spoke within the lease */
    job job;                             /* the current job */
    witem **items;                       /* held items */
    size_t nitems, capitems;             /* count, allocated */
    witem *rq_head, *rq_tail;            /* ready queue */
    size_t nready;                       /* its length */
    ring tok;                            /* tokens: spend times, in order */
    uint64_t seen;                       /* tokens received from this master */
    uint32_t released;                   /* permits to report released */
    int64_t last_want;                   /* want in the last TOKEN_REQ */
    uint64_t last_seen_sent;             /* seen in the last TOKEN_REQ */
    http *http;                          /* calls in flight */
    outframe *out_head, *out_tail;       /* results waiting for the socket */
    outframe *recent_head, *recent_tail; /* results sent lately */
    size_t recent_bytes;                 /* their size */
    int64_t last_master_ns;              /* last message from the master */
    int64_t next_hb_ns;                  /* next heartbeat */
    int64_t next_hello_ns;               /* next HELLO while unjoined */
    uint64_t rng;                        /* jitter source */
    int curve;                           /* Curve keys in use */
    keys_pair my_key;                    /* our key pair */
    char server_key[KEYS_Z85_LEN + 1];   /* the master's public key */
    void *monitor;            /* handshake events of the control socket */
    int64_t next_auth_log_ns; /* rate limit for auth failure logs */
    int64_t reopen_ns;        /* reopen the control socket at, or 0 */
    uint32_t account;         /* token account, new on every JOB */
    int64_t paused_until_ns;  /* no calls before this (API push-back) */
    int64_t next_rateinfo_ns; /* next RATEINFO report allowed */
    int64_t delay_us[32];     /* recent grant delays (wall, incl. offset) */
    size_t ndelay;            /* how many recorded */
    fo_buf scratch;           /* encode buffer */
    uint64_t n_ok, n_failed, n_retries, n_dropped_tokens, n_bad_frames;
    int api_answered;         /* the API has answered us (any HTTP status) */
    uint32_t transport_fail;  /* attempts in a row with no HTTP answer */
    int64_t outage_since_ns;  /* an API outage was declared then, or 0 */
    int64_t outage_logged_ns; /* when it was last logged */
} wstate;

/* Calls in a row that could not reach the API that make an outage, and
 * how often a continuing outage is logged. */
#define OUTAGE_AFTER_FAILURES 3
#define OUTAGE_LOG_EVERY_NS (60 * FO_NS_PER_S)

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

/* ---- sockets --------------------------------------------------------- */

static void *make_socket(wstate *w, int type, int linger_ms, int maxmsg)
{
    void *s = zmq_socket(w->zctx, type);
    /* Reconnect quickly: a restarted master should see its workers again
     * within a second, not after a backoff grown during its downtime. */
    int ivl = 100, ivl_max = 500, hb = 1000, hbt = 3000;
    int64_t max = maxmsg;
    zmq_setsockopt(s, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
    zmq_setsockopt(s, ZMQ_HEARTBEAT_IVL, &hb, sizeof hb);
    zmq_setsockopt(s, ZMQ_HEARTBEAT_TIMEOUT, &hbt, sizeof hbt);
    if (max > 0)
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max);
    if (w->curve) {
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, w->server_key, KEYS_Z85_LEN + 1);
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, w->my_key.public_key,
                       KEYS_Z85_LEN + 1);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, w->my_key.secret_key,
                       KEYS_Z85_LEN + 1);
    }
    return s;
}

static int connect_data_sockets(wstate *w, int work_port, int result_port)
{
    char ep[400];
    if (w->work)
        zmq_close(w->work);
    if (w->res)
        zmq_close(w->res);
    w->work = make_socket(w, ZMQ_PULL, 0,
                          PROTO_MAX_CONTROL_BYTES + PROTO_MAX_BODY_BYTES);
    w->res = make_socket(w, ZMQ_PUSH, RESULT_LINGER_MS, 0);
    int hwm = 100000;
    zmq_setsockopt(w->res, ZMQ_SNDHWM, &hwm, sizeof hwm);
    snprintf(ep, sizeof ep, "tcp://%s:%d", w->master_host, work_port);
    if (zmq_connect(w->work, ep) != 0) {
        LOG_ERROR("worker.connect_failed", "connect %s: %s", ep,
                  zmq_strerror(errno));
        return -1;
    }
    snprintf(ep, sizeof ep, "tcp://%s:%d", w->master_host, result_port);
    if (zmq_connect(w->res, ep) != 0) {
        LOG_ERROR("worker.connect_failed", "connect %s: %s", ep,
                  zmq_strerror(errno));
        return -1;
    }
    return 0;
}

static void send_ctl(wstate *w, const proto_msg *m)
{
    buf_reset(&w->scratch);
    if (proto_encode(m, &w->scratch) != FO_OK) {
        LOG_ERROR("proto.encode_failed", "%s too large",
                  proto_type_name(m->type));
        return;
    }
    /* DEALER: a full pipe means the master is gone; the message is
     * regenerated later (heartbeat, hello, token request). */
    zmq_send(w->ctl, w->scratch.data, w->scratch.len, ZMQ_DONTWAIT);
}

static void send_hello(wstate *w)
{
    proto_msg m = {.type = PROTO_HELLO, .epoch = w->epoch};
    m.u.hello.worker_id = w->id;
    m.u.hello.host = w->host;
    m.u.hello.pid = getpid();
    m.u.hello.concurrency = (uint32_t)w->cfg->concurrency;
    send_ctl(w, &m);
}

/* ---- items ----------------------------------------------------------- */

static void rq_push(wstate *w, witem *it)
{
    it->state = WI_READY;
    it->qnext = NULL;
    if (w->rq_tail)
        w->rq_tail->qnext = it;
    else
        w->rq_head = it;
    w->rq_tail = it;
    w->nready++;
}

static witem *rq_pop(wstate *w)
{
    witem *it = w->rq_head;
    if (!it)
        return NULL;
    w->rq_head = it->qnext;
    if (!w->rq_head)
        w->rq_tail = NULL;
    w->nready--;
    return it;
}

static void item_free(witem *it)
{
    free(it->key);
    free(it->url);
    free(it->body);
    free(it->idem);
    free(it->last_error);
    curl_slist_free_all(it->hdrs);
    free(it);
}

static void held_remove(wstate *w, witem *it)
{
    for (size_t i = 0; i < w->nitems; i++) {
        if (w->items[i] == it) {
            w->items[i] = w->items[--w->nitems];
            return;
        }
    }
}

/* Drops every held item that is not in flight (ready or waiting). */
static void drop_unstarted(wstate *w, proto_ref **refs, uint32_t *nrefs)
{
    if (refs) {
        *refs = w->nitems ? xcalloc(w->nitems, sizeof **refs) : NULL;
        *nrefs = 0;
    }
    size_t keep = 0;
    for (size_t i = 0; i < w->nitems; i++) {
        witem *it = w->items[i];
        if (it->state == WI_FLIGHT) {
            w->items[keep++] = it;
            continue;
        }
        if (refs)
            (*refs)[(*nrefs)++] = it->ref;
        item_free(it);
    }
    w->nitems = keep;
    w->rq_head = w->rq_tail = NULL;
    w->nready = 0;
}

static void free_frames(outframe *f)
{
    while (f) {
        outframe *next = f->next;
        buf_fini(&f->frame);
        free(f);
        f = next;
    }
}

/* Drops recent results older than the lease or over the byte cap. */
static void prune_recent(wstate *w, int64_t now)
{
    /* While the master is away, what we sent may not have reached it. */
    if (!w->master_ok && w->recent_bytes <= RECENT_MAX_BYTES)
        return;
    while (w->recent_head && (now - w->recent_head->sent_ns > w->job.lease_ns ||
                              w->recent_bytes > RECENT_MAX_BYTES)) {
        outframe *f = w->recent_head;
        w->recent_head = f->next;
        if (!w->recent_head)
            w->recent_tail = NULL;
        w->recent_bytes -= f->frame.len;
        f->next = NULL;
        free_frames(f);
    }
}

static void flush_outbox(wstate *w)
{
    int64_t now = clock_now_ns();
    while (w->out_head) {
        outframe *f = w->out_head;
        if (zmq_send(w->res, f->frame.data, f->frame.len, ZMQ_DONTWAIT) < 0)
            break;
        w->out_head = f->next;
        if (!w->out_head)
            w->out_tail = NULL;
        f->next = NULL;
        f->sent_ns = now;
        if (w->recent_tail)
            w->recent_tail->next = f;
        else
            w->recent_head = f;
        w->recent_tail = f;
        w->recent_bytes += f->frame.len;
    }
    prune_recent(w, now);
}

/* A new master: what we sent lately may have died with the old one. */
static void resend_recent(wstate *w)
{
    if (!w->recent_head)
        return;
    w->recent_tail->next = w->out_head;
    if (!w->out_head)
        w->out_tail = w->recent_tail;
    w->out_head = w->recent_head;
    w->recent_head = w->recent_tail = NULL;
    w->recent_bytes = 0;
}

static void finish_item(wstate *w, witem *it, int ok, const char *error,
                        const char *body, size_t body_len, int64_t latency_ms)
{
    proto_msg m = {.type = PROTO_RESULT, .epoch = w->epoch};
    m.u.result.ref = it->ref;
    m.u.result.key = it->key;
    m.u.result.status = ok ? PROTO_STATUS_OK : PROTO_STATUS_FAILED;
    m.u.result.http_status = it->last_http;
    m.u.result.attempts = it->attempts;
    m.u.result.throttled = it->throttled;
    m.u.result.latency_ms =
        latency_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)latency_ms;
    m.u.result.error = (char *)error;
    m.u.result.response = (char *)body;
    m.u.result.response_len = body_len;
    m.u.result.worker = w->id;
    m.u.result.idem_key = it->idem;
    outframe *f = xcalloc(1, sizeof *f);
    buf_init(&f->frame, PROTO_MAX_CONTROL_BYTES + PROTO_MAX_BODY_BYTES);
    if (proto_encode(&m, &f->frame) != FO_OK) {
        /* Cannot happen with capped bodies; keep the item's outcome. */
        m.u.result.response = NULL;
        m.u.result.response_len = 0;
        buf_reset(&f->frame);
        if (proto_encode(&m, &f->frame) != FO_OK)
            LOG_ERROR("proto.encode_failed", "result for %s", it->key);
    }
    if (w->out_tail)
        w->out_tail->next = f;
    else
        w->out_head = f;
    w->out_tail = f;
    flush_outbox(w);
    if (ok)
        w->n_ok++;
    else
        w->n_failed++;
    held_remove(w, it);
    item_free(it);
}

/* ---- HTTP ------------------------------------------------------------ */

static void schedule_retry(wstate *w, witem *it, int64_t floor_ms)
{
    uint32_t counted = it->attempts - it->throttled;
    int64_t d =
        backoff_delay_ms(w->job.backoff_base_ms, w->job.backoff_max_ms,
                         (int)(counted ? counted : 1), backoff_rand(&w->rng));
    if (d < floor_ms)
        d = floor_ms;
    it->state = WI_WAIT;
    it->ready_at_ns = clock_now_ns() + d * FO_NS_PER_MS;
    w->n_retries++;
    LOG_DEBUG("item.retry", "id=%s attempt=%u in %" PRId64 "ms: %s", it->key,
              it->attempts, d, it->last_error ? it->last_error : "");
}

static void set_error(witem *it, const char *fmt, ...) FO_PRINTF(2, 3);
static void set_error(witem *it, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    free(it->last_error);
    it->last_error = xstrdup(buf);
}

/* Drops every token held and starts no call before now + ms: the API asked
 * for quiet, and a token spent now would arrive inside the pause. */
static void local_pause(wstate *w, int64_t ms)
{
    int64_t until = clock_now_ns() + ms * FO_NS_PER_MS;
    if (until > w->paused_until_ns)
        w->paused_until_ns = until;
    w->released += (uint32_t)w->tok.len;
    w->n_dropped_tokens += w->tok.len;
    ring_clear(&w->tok);
}

/* Passes the API's own view of its limit to the master, at most every
 * 200 ms unless it says the window is used up. */
static void report_rateinfo(wstate *w, const ratelimit_info *ri)
{
    int64_t now = clock_now_ns();
    if (now < w->next_rateinfo_ns && ri->remaining != 0)
        return;
    w->next_rateinfo_ns = now + 200 * FO_NS_PER_MS;
    proto_msg m = {.type = PROTO_RATEINFO, .epoch = w->epoch};
    m.u.rateinfo.limit = ri->limit;
    m.u.rateinfo.window_ms = ri->window_ms;
    m.u.rateinfo.remaining = ri->remaining;
    m.u.rateinfo.reset_ms = ri->reset_ms;
    send_ctl(w, &m);
}

/* 1 when the call never reached the API: no connection could be made (or
 * its name did not resolve), as opposed to an answer, a connection that
 * broke or timed out after it was made. */
static int unreachable(const http_response *r)
{
    switch (r->code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return 1;
    case CURLE_OPERATION_TIMEDOUT:
        /* libcurl says "Connection timed out" / "Resolving timed out"
         * before a connection, "Operation timed out" after. */
        return r->error && (!strncmp(r->error, "Connection timed out", 20) ||
                            !strncmp(r->error, "Resolving timed out", 19));
    default:
        return 0;
    }
}

static void on_http_done(void *ctx, const http_response *r)
{
    wstate *w = ctx;
    witem *it = r->user;
    /* A call paid from an account the master has since reset (we joined
     * again) holds no permit there: releasing it would free one that a
     * new token holds, and the in-flight cap would be exceeded. */
    if (it->account == w->account)
        w->released++;
    curl_slist_free_all(it->hdrs);
    it->hdrs = NULL;
    it->last_http = (uint32_t)r->status;
    int no_route = unreachable(r);
    if (r->code == CURLE_OK) {
        w->api_answered = 1;
        w->transport_fail = 0;
        if (w->outage_since_ns) {
            LOG_INFO("api.reachable",
                     "the API answers again after %.1f s; waiting items "
                     "run now",
                     (double)(clock_now_ns() - w->outage_since_ns) / 1e9);
            w->outage_since_ns = 0;
        }
    } else if (no_route) {
        w->transport_fail++;
    }
    int64_t ra_ms = -1;
    if (r->retry_after &&
        backoff_parse_retry_after(r->retry_after, clock_wall_ms(),
                                  RETRY_AFTER_CAP_MS, &ra_ms) < 0) {
        LOG_WARN("api.bad_retry_after",
                 "id=%s: ignoring malformed Retry-After '%.60s'", it->key,
                 r->retry_after);
        ra_ms = -1;
    }
    if (ratelimit_known(&r->ratelimit))
        report_rateinfo(w, &r->ratelimit);
    if (r->body_capped) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "response body is larger than --max-response-bytes (%zu)",
                 w->job.max_response);
        finish_item(w, it, 0, msg, NULL, 0, r->latency_ms);
        return;
    }
    if (r->code == CURLE_OK && r->status >= 200 && r->status < 300) {
        finish_item(w, it, 1, NULL, r->body, r->body_len, r->latency_ms);
        return;
    }
    if (r->code == CURLE_OK &&
        (r->status == 429 || (r->status == 503 && ra_ms >= 0))) {
        /* Push-back: stop our own calls now, and tell the master, which
         * pauses the whole cluster. */
        local_pause(w, ra_ms > 0 ? ra_ms : 1000);
        it->throttled++;
        proto_msg m = {.type = PROTO_THROTTLED, .epoch = w->epoch};
        m.u.throttled.http_status = (uint32_t)r->status;
        m.u.throttled.retry_after_ms = ra_ms > 0 ? (uint32_t)ra_ms : 0;
        send_ctl(w, &m);
        set_error(it, "HTTP %ld (throttled %u times)", r->status,
                  it->throttled);
        if (it->throttled >= w->job.max_throttled) {
            char msg[200];
            snprintf(msg, sizeof msg,
                     "throttled (HTTP %ld) %u times; giving up "
                     "(--max-throttled %u)",
                     r->status, it->throttled, w->job.max_throttled);
            finish_item(w, it, 0, msg, r->body, r->body_len, r->latency_ms);
            return;
        }
        schedule_retry(w, it, ra_ms > 0 ? ra_ms : 0);
        return;
    }
    int retryable;
    if (r->code == CURLE_OK) {
        retryable = r->status >= 500 || r->status == 429;
        set_error(it, "HTTP %ld", r->status);
    } else {
        retryable = 1;
        set_error(it, "%s", r->error);
    }
    /* The API answered this worker before, and now several calls in a row
     * could not even connect: an outage (or this host lost its route to
     * the API), not a problem of the item. Such attempts do not count
     * towards --max-attempts: the items wait, retrying at the backoff's
     * pace, instead of failing, and run when the API answers again. An API
     * that never answered (a wrong URL) still fails items fast, and so
     * does a call that connected and then timed out (a slow endpoint). */
    if (no_route && w->api_answered &&
        w->transport_fail >= OUTAGE_AFTER_FAILURES) {
        it->unreachable++;
        int64_t now = clock_now_ns();
        if (!w->outage_since_ns) {
            w->outage_since_ns = w->outage_logged_ns = now;
            LOG_WARN("api.unreachable",
                     "%u calls in a row could not reach the API (%s); items "
                     "wait for it instead of failing",
                     w->transport_fail, r->error);
        } else if (now - w->outage_logged_ns >= OUTAGE_LOG_EVERY_NS) {
            w->outage_logged_ns = now;
            LOG_WARN("api.unreachable",
                     "the API has not been reachable for %.0f s (%s); items "
                     "still wait for it",
                     (double)(now - w->outage_since_ns) / 1e9, r->error);
        }
    }
    uint32_t counted = it->attempts - it->throttled - it->unreachable;
    if (!retryable) {
        finish_item(w, it, 0, it->last_error, r->body, r->body_len,
                    r->latency_ms);
    } else if (counted >= w->job.max_attempts) {
        char msg[1200];
        snprintf(msg, sizeof msg, "gave up after %u attempts: %s", counted,
                 it->last_error);
        finish_item(w, it, 0, msg, r->code == CURLE_OK ? r->body : NULL,
                    r->code == CURLE_OK ? r->body_len : 0, r->latency_ms);
    } else {
        schedule_retry(w, it, ra_ms > 0 ? ra_ms : 0);
    }
}

static void start_call(wstate *w, witem *it)
{
    struct curl_slist *h = NULL;
    for (struct curl_slist *s = w->job.headers; s; s = s->next)
        h = curl_slist_append(h, s->data);
    char idem[300];
    snprintf(idem, sizeof idem, "Idempotency-Key: %s", it->idem);
    h = curl_slist_append(h, idem);
    it->hdrs = h;
    it->account = w->account;
    it->attempts++;
    it->state = WI_FLIGHT;
    http_request req = {
        .method = w->job.method,
        .url = it->url,
        .body = it->body,
        .body_len = it->body_len,
        .headers = h,
        .timeout_ms = w->job.timeout_ms,
        .connect_timeout_ms = w->job.connect_timeout_ms,
        .max_response_bytes = w->job.max_response,
        .user = it,
    };
    if (http_start(w->http, &req) != FO_OK) {
        w->released++;
        curl_slist_free_all(it->hdrs);
        it->hdrs = NULL;
        set_error(it, "libcurl refused the request for %s", it->url);
        finish_item(w, it, 0, it->last_error, NULL, 0, 0);
    }
}

/* ---- tokens ---------------------------------------------------------- */

static int64_t tok_front(const wstate *w)
{
    return *(int64_t *)ring_at(&w->tok, 0);
}

/* Spends every token whose time has come on a ready item, or drops it. */
static void spend_tokens(wstate *w, int64_t now)
{
    while (w->tok.len > 0 && tok_front(w) <= now) {
        int64_t t = tok_front(w);
        ring_pop(&w->tok);
        int late = w->job.rate_limited && now - t > w->job.slack_ns;
        if (!late && now >= w->paused_until_ns && w->nready > 0 &&
            http_inflight(w->http) < w->cfg->concurrency) {
            start_call(w, rq_pop(w));
        } else {
            /* Never saved up: a late token would make a burst. */
            w->released++;
            w->n_dropped_tokens++;
        }
    }
}

static void request_tokens(wstate *w)
{
    int64_t slots = w->cfg->concurrency - http_inflight(w->http);
    int64_t need = slots < (int64_t)w->nready ? slots : (int64_t)w->nready;
    int64_t want = need - (int64_t)w->tok.len;
    if (want < 0)
        want = 0;
    int64_t expected = w->last_want - (int64_t)(w->seen - w->last_seen_sent);
    if (want == expected && w->released == 0)
        return;
    proto_msg m = {.type = PROTO_TOKEN_REQ, .epoch = w->epoch};
    m.u.token_req.want = (uint32_t)want;
    m.u.token_req.seen = w->seen;
    m.u.token_req.released = w->released;
    send_ctl(w, &m);
    w->released = 0;
    w->last_want = want;
    w->last_seen_sent = w->seen;
}

static void send_heartbeat(wstate *w)
{
    proto_msg m = {.type = PROTO_HEARTBEAT, .epoch = w->epoch};
    uint32_t n =
        w->nitems > PROTO_MAX_HELD ? PROTO_MAX_HELD : (uint32_t)w->nitems;
    proto_ref *refs = n ? xcalloc(n, sizeof *refs) : NULL;
    for (uint32_t i = 0; i < n; i++)
        refs[i] = w->items[i]->ref;
    m.u.heartbeat.inflight = (uint32_t)http_inflight(w->http);
    m.u.heartbeat.nheld = n;
    m.u.heartbeat.held = refs;
    send_ctl(w, &m);
    free(refs);
}

/* ---- messages -------------------------------------------------------- */

static void job_free(job *j)
{
    free(j->method);
    curl_slist_free_all(j->headers);
    memset(j, 0, sizeof *j);
}

static int64_t jint(json_t *o, const char *k, int64_t def)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? json_integer_value(v) : def;
}

/* Parses the JOB; returns 0, or -1 when the worker cannot do this job. */
static int parse_job(wstate *w, const char *text, job *j)
{
    json_error_t jerr;
    json_t *o = json_loads(text, 0, &jerr);
    if (!json_is_object(o)) {
        LOG_ERROR("proto.bad_job", "JOB is not a JSON object: %s", jerr.text);
        json_decref(o);
        return -1;
    }
    memset(j, 0, sizeof *j);
    json_t *m = json_object_get(o, "method");
    j->method = xstrdup(json_is_string(m) ? json_string_value(m) : "GET");
    j->timeout_ms = (long)jint(o, "timeout_ms", 30000);
    j->connect_timeout_ms = (long)jint(o, "connect_timeout_ms", 10000);
    j->max_attempts = (uint32_t)jint(o, "max_attempts", 5);
    j->max_throttled = (uint32_t)jint(o, "max_throttled", 50);
    j->backoff_base_ms = jint(o, "backoff_base_ms", 500);
    j->backoff_max_ms = jint(o, "backoff_max_ms", 30000);
    j->max_response = (size_t)jint(o, "max_response_bytes", 1 << 20);
    if (j->max_response > PROTO_MAX_BODY_BYTES)
        j->max_response = PROTO_MAX_BODY_BYTES;
    j->work_port = (int)jint(o, "work_port", 0);
    j->result_port = (int)jint(o, "result_port", 0);
    j->heartbeat_ns = jint(o, "heartbeat_ms", 1000) * FO_NS_PER_MS;
    j->lease_ns = jint(o, "lease_ms", 5000) * FO_NS_PER_MS;
    j->rate_limited = (int)jint(o, "rate_limited", 1);
    j->slack_ns = jint(o, "token_slack_ms", 5) * FO_NS_PER_MS;
    json_t *hs = json_object_get(o, "headers");
    size_t i;
    json_t *h;
    int rc = 0;
    json_array_foreach(hs, i, h)
    {
        if (!json_is_string(h))
            continue;
        fo_buf b;
        buf_init(&b, 65536);
        char err[256];
        if (template_expand_env(json_string_value(h), &b, err, sizeof err)) {
            /* Name the header but never print its value: it may be a
             * secret. */
            const char *colon = strchr(json_string_value(h), ':');
            int nl = colon ? (int)(colon - json_string_value(h)) : 0;
            LOG_ERROR("worker.bad_header", "--header '%.*s': %s", nl,
                      json_string_value(h), err);
            rc = -1;
        } else {
            j->headers = curl_slist_append(j->headers, buf_str(&b));
        }
        buf_fini(&b);
    }
    /* No "Expect: 100-continue" round trip before large bodies. */
    j->headers = curl_slist_append(j->headers, "Expect:");
    json_decref(o);
    if (j->work_port <= 0 || j->work_port > 65535 || j->result_port <= 0 ||
        j->result_port > 65535 || j->max_attempts < 1) {
        LOG_ERROR("proto.bad_job", "JOB has bad ports or retry policy");
        rc = -1;
    }
    if (rc)
        job_free(j);
    return rc;
}

static int on_job(wstate *w, proto_msg *m)
{
    job j;
    if (parse_job(w, m->u.job.job_json, &j) < 0)
        return -1;
    int ports_changed = !w->have_job || j.work_port != w->job.work_port ||
                        j.result_port != w->job.result_port;
    if (w->have_job && (m->epoch != w->epoch || !w->master_ok)) {
        /* A new master, or ours after it lost us: either way it has given
         * what we had not started to others (or will). Calls in flight
         * finish and their results still count; results sent while it was
         * away may have been lost with the connection, so send them again
         * (the master records each item once). */
        drop_unstarted(w, NULL, NULL);
        resend_recent(w);
        if (m->epoch != w->epoch)
            LOG_INFO("master.changed",
                     "new master epoch %" PRIu64 " (was %" PRIu64 ")", m->epoch,
                     w->epoch);
    }
    job_free(&w->job);
    w->job = j;
    w->epoch = m->epoch;
    /* The master starts our token account afresh on every JOB. */
    w->account++;
    ring_clear(&w->tok);
    w->ndelay = 0;
    w->seen = 0;
    w->released = 0;
    w->last_want = 0;
    w->last_seen_sent = 0;
    if (ports_changed &&
        connect_data_sockets(w, j.work_port, j.result_port) < 0)
        return -1;
    if (!w->have_job || !w->master_ok)
        LOG_INFO("worker.joined",
                 "joined master %s (epoch %" PRIu64 ", concurrency %d)",
                 w->cfg->master, w->epoch, w->cfg->concurrency);
    w->have_job = 1;
    w->master_ok = 1;
    w->next_hb_ns = 0;
    return 0;
}

/* How much later than usual this grant arrived. The wall-clock difference
 * between the master's send stamp and our receipt is the one-way delay plus
 * the offset between the two clocks; its minimum over recent grants is the
 * usual delay, and anything above it is lateness (a busy or descheduled
 * loop) that would otherwise shift every token of the grant later and
 * bunch it against the next grant's. */
static int64_t grant_lateness_ns(wstate *w, const proto_msg *m)
{
    if (!m->u.token_grant.sent_wall_us)
        return 0;
    int64_t d = clock_wall_us() - (int64_t)m->u.token_grant.sent_wall_us;
    w->delay_us[w->ndelay++ % 32] = d;
    size_t n = w->ndelay < 32 ? w->ndelay : 32;
    int64_t min = d;
    for (size_t i = 0; i < n; i++)
        if (w->delay_us[i] < min)
            min = w->delay_us[i];
    return (d - min) * 1000;
}

/* Returns 1 when the worker should exit (DONE with --once). */
static int handle_control(wstate *w, int64_t now, int *fatal)
{
    for (int budget = 0; budget < 1000; budget++) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, w->ctl, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            return 0;
        }
        proto_msg m;
        char err[256];
        fo_err rc = proto_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), &m,
                                 err, sizeof err);
        zmq_msg_close(&msg);
        if (rc) {
            w->n_bad_frames++;
            LOG_WARN(rc == FO_EVERSION ? "proto.bad_version"
                                       : "proto.bad_frame",
                     "dropped a control frame: %s", err);
            continue;
        }
        w->last_master_ns = now;
        switch (m.type) {
        case PROTO_JOB:
            if (on_job(w, &m) < 0) {
                *fatal = 1;
                proto_msg_fini(&m);
                return 1;
            }
            break;
        case PROTO_TOKEN_GRANT:
            if (m.epoch == w->epoch && w->have_job) {
                int64_t anchor = now - grant_lateness_ns(w, &m);
                for (uint32_t i = 0; i < m.u.token_grant.n; i++)
                    *(int64_t *)ring_push(&w->tok) =
                        (anchor + (int64_t)m.u.token_grant.offset_us[i] * 1000);
                w->seen += m.u.token_grant.n;
            }
            break;
        case PROTO_RESET:
            /* Every message queued while the master was away draws a
             * RESET; one HELLO answers them all. */
            if (w->master_ok || now >= w->next_hello_ns) {
                LOG_INFO("master.reset", "the master does not know us; "
                                         "saying hello");
                send_hello(w);
                w->next_hello_ns = now + HELLO_INTERVAL_NS / 2;
            }
            w->master_ok = 0;
            break;
        case PROTO_PAUSE:
            if (m.epoch == w->epoch)
                local_pause(w, m.u.pause.pause_ms);
            break;
        case PROTO_DONE:
            LOG_INFO("job.done", "the master reports the job finished");
            if (w->cfg->once) {
                proto_msg_fini(&m);
                return 1;
            }
            break;
        case PROTO_HEARTBEAT:
        default:
            break;
        }
        proto_msg_fini(&m);
    }
    return 0;
}

static void handle_work(wstate *w)
{
    if (!w->work)
        return;
    for (int budget = 0; budget < 10000; budget++) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, w->work, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            return;
        }
        proto_msg m;
        char err[256];
        fo_err rc = proto_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), &m,
                                 err, sizeof err);
        zmq_msg_close(&msg);
        if (rc || m.type != PROTO_WORK) {
            w->n_bad_frames++;
            LOG_WARN("proto.bad_frame", "dropped a work frame: %s",
                     rc ? err : "not WORK");
            proto_msg_fini(&m);
            continue;
        }
        witem *it = xcalloc(1, sizeof *it);
        it->ref = m.u.work.ref;
        it->key = m.u.work.key;
        it->url = m.u.work.url;
        it->body = m.u.work.body;
        it->body_len = m.u.work.body_len;
        it->idem = m.u.work.idem_key;
        m.u.work.key = m.u.work.url = m.u.work.body = m.u.work.idem_key = NULL;
        proto_msg_fini(&m);
        if (w->nitems == w->capitems) {
            w->capitems = w->capitems ? w->capitems * 2 : 64;
            w->items = xrealloc(w->items, w->capitems * sizeof *w->items);
        }
        w->items[w->nitems++] = it;
        rq_push(w, it);
    }
}

/* Moves waiting items whose backoff is over to the ready queue; returns the
 * earliest remaining wake-up time (or INT64_MAX). */
static int64_t wake_waiting(wstate *w, int64_t now)
{
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < w->nitems; i++) {
        witem *it = w->items[i];
        if (it->state != WI_WAIT)
            continue;
        if (it->ready_at_ns <= now)
            rq_push(w, it);
        else if (it->ready_at_ns < next)
            next = it->ready_at_ns;
    }
    return next;
}

/* Opens the control DEALER and watches its handshakes. Returns 0 or -1
 * (errno set) when the endpoint is unusable. */
static int open_control(wstate *w)
{
    static int generation;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://fanout.monitor.%d", generation++);
    w->ctl = make_socket(w, ZMQ_DEALER, 0, PROTO_MAX_CONTROL_BYTES);
    if (zmq_socket_monitor(w->ctl, ep,
                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) == 0) {
        w->monitor = zmq_socket(w->zctx, ZMQ_PAIR);
        int linger = 0;
        zmq_setsockopt(w->monitor, ZMQ_LINGER, &linger, sizeof linger);
        if (zmq_connect(w->monitor, ep) != 0) {
            zmq_close(w->monitor);
            w->monitor = NULL;
        }
    }
    return zmq_connect(w->ctl, w->cfg->master);
}

static void close_control(wstate *w)
{
    if (w->monitor) {
        zmq_socket_monitor(w->ctl, NULL, 0);
        zmq_close(w->monitor);
        w->monitor = NULL;
    }
    zmq_close(w->ctl);
    w->ctl = NULL;
}

/* Logs handshake failures on the control socket: a master that refuses
 * our Curve key otherwise looks like one that is simply not there. */
static void handle_monitor(wstate *w, int64_t now)
{
    for (;;) {
        zmq_msg_t ev, ep;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, w->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        zmq_msg_init(&ep);
        if (zmq_msg_more(&ev))
            zmq_msg_recv(&ep, w->monitor, 0);
        uint16_t event = 0;
        if (zmq_msg_size(&ev) >= 2)
            memcpy(&event, zmq_msg_data(&ev), 2);
        /* libzmq does not try again after the master refused our key; the
         * operator may admit it later (SIGHUP on the master), so start a
         * fresh connection in a while. */
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH && !w->reopen_ns)
            w->reopen_ns = now + 2 * FO_NS_PER_S;
        if (now >= w->next_auth_log_ns) {
            w->next_auth_log_ns = now + 30 * FO_NS_PER_S;
            if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
                LOG_ERROR("curve.refused",
                          "the master at %s refused our Curve key: add this "
                          "worker's .pub to the master's --curve-allow",
                          w->cfg->master);
            else
                LOG_ERROR("worker.handshake_failed",
                          "handshake with %s failed: is it a fanout master, "
                          "and do both sides agree on Curve keys "
                          "(--curve-server-key)?",
                          w->cfg->master);
        }
        zmq_msg_close(&ev);
        zmq_msg_close(&ep);
    }
}

/* ---- the loop -------------------------------------------------------- */

static void say_bye(wstate *w)
{
    /* Take in whatever is already on its way, then stop the master's PUSH
     * from routing more here, so the BYE lists every item we received. */
    handle_work(w);
    if (w->work) {
        zmq_close(w->work);
        w->work = NULL;
    }
    proto_msg m = {.type = PROTO_BYE, .epoch = w->epoch};
    drop_unstarted(w, &m.u.bye.held, &m.u.bye.nheld);
    send_ctl(w, &m);
    if (m.u.bye.nheld || http_inflight(w->http))
        LOG_INFO("worker.leaving",
                 "handing back %u unstarted items, "
                 "waiting for %d calls in flight",
                 m.u.bye.nheld, http_inflight(w->http));
    free(m.u.bye.held);
}

int worker_run(const worker_config *cfg)
{
    wstate ws;
    wstate *w = &ws;
    memset(w, 0, sizeof *w);
    w->cfg = cfg;
    buf_init(&w->scratch, PROTO_MAX_CONTROL_BYTES);
    ring_init(&w->tok, sizeof(int64_t));
    gethostname(w->host, sizeof w->host - 1);
    if (cfg->id)
        snprintf(w->id, sizeof w->id, "%s", cfg->id);
    else
        snprintf(w->id, sizeof w->id, "%.255s:%d", w->host, (int)getpid());
    const char *hp = cfg->master + 6;
    const char *colon = strrchr(hp, ':');
    snprintf(w->master_host, sizeof w->master_host, "%.*s", (int)(colon - hp),
             hp);
    w->rng = (uint64_t)clock_now_ns() ^ ((uint64_t)getpid() << 32) ^ 1;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 0;
    char kerr[600];
    if (cfg->curve_secret) {
        keys_pair sk;
        if (keys_read(cfg->curve_secret, 1, &w->my_key, kerr, sizeof kerr) ||
            keys_read(cfg->curve_server_key, 0, &sk, kerr, sizeof kerr)) {
            fprintf(stderr, "fanout-worker: %s %s\n",
                    w->my_key.secret_key[0] ? "--curve-server-key"
                                            : "--curve-secret",
                    kerr);
            buf_fini(&w->scratch);
            return 2;
        }
        memcpy(w->server_key, sk.public_key, sizeof w->server_key);
        w->curve = 1;
    }
    w->zctx = zmq_ctx_new();
    if (open_control(w) != 0) {
        fprintf(stderr, "fanout-worker: --master %s: %s\n", cfg->master,
                zmq_strerror(errno));
        rc = 2;
        goto out;
    }
    w->http = http_new(on_http_done, w);
    LOG_INFO("worker.started", "id=%s master=%s concurrency=%d", w->id,
             cfg->master, cfg->concurrency);

    int64_t drain_deadline = 0;
    int draining = 0, job_done = 0;
    zmq_pollitem_t *pi = xcalloc(MAX_POLL_ITEMS, sizeof *pi);
    for (;;) {
        int64_t now = clock_now_ns();
        if ((stop_signal || job_done) && !draining) {
            draining = 1;
            drain_deadline = now + cfg->drain_timeout_ms * FO_NS_PER_MS;
            if (stop_signal)
                LOG_INFO("worker.stopping",
                         "signal %d: finishing calls in "
                         "flight",
                         (int)stop_signal);
            say_bye(w);
        }
        if (draining && ((http_inflight(w->http) == 0 && !w->out_head) ||
                         now >= drain_deadline))
            break;

        /* Master liveness: after a lease of silence, say hello again. */
        if (w->master_ok && w->have_job &&
            now - w->last_master_ns > w->job.lease_ns) {
            LOG_WARN("master.lost",
                     "no word from the master for %" PRId64
                     " ms; keeping calls in flight and saying hello until "
                     "it answers",
                     (now - w->last_master_ns) / FO_NS_PER_MS);
            w->master_ok = 0;
        }
        if (w->reopen_ns && now >= w->reopen_ns) {
            w->reopen_ns = 0;
            close_control(w);
            if (open_control(w) != 0) {
                LOG_ERROR("worker.connect_failed", "--master %s: %s",
                          cfg->master, zmq_strerror(errno));
                rc = 3;
                break;
            }
            w->next_hello_ns = 0;
        }
        if (!w->master_ok && now >= w->next_hello_ns && !draining) {
            send_hello(w);
            w->next_hello_ns = now + HELLO_INTERVAL_NS;
        }

        int64_t next_wake = wake_waiting(w, now);
        if (w->have_job && !draining) {
            spend_tokens(w, now);
            request_tokens(w);
        } else if (draining && w->released) {
            request_tokens(w);
        }
        if (w->have_job && now >= w->next_hb_ns) {
            send_heartbeat(w);
            w->next_hb_ns = now + w->job.heartbeat_ns;
        }
        flush_outbox(w);

        /* Sleep until the earliest thing we have to do. */
        int64_t deadline = now + 1000 * FO_NS_PER_MS;
        if (w->tok.len && tok_front(w) < deadline)
            deadline = tok_front(w);
        if (next_wake < deadline)
            deadline = next_wake;
        if (w->have_job && w->next_hb_ns < deadline)
            deadline = w->next_hb_ns;
        if (!w->master_ok && w->next_hello_ns < deadline)
            deadline = w->next_hello_ns;
        long timeout =
            (long)((deadline - now + FO_NS_PER_MS - 1) / FO_NS_PER_MS);
        long ct = http_timeout_ms(w->http);
        if (ct >= 0 && ct < timeout)
            timeout = ct;
        if (timeout < 0)
            timeout = 0;

        size_t n = 0;
        pi[n++] = (zmq_pollitem_t){w->ctl, 0, ZMQ_POLLIN, 0};
        size_t work_i = 0, res_i = 0;
        if (w->work) {
            work_i = n;
            pi[n++] = (zmq_pollitem_t){w->work, 0, ZMQ_POLLIN, 0};
        }
        if (w->res && w->out_head) {
            res_i = n;
            pi[n++] = (zmq_pollitem_t){w->res, 0, ZMQ_POLLOUT, 0};
        }
        if (w->monitor)
            pi[n++] = (zmq_pollitem_t){w->monitor, 0, ZMQ_POLLIN, 0};
        size_t curl_first = n;
        n += http_pollitems(w->http, pi + n, MAX_POLL_ITEMS - n);
        if (zmq_poll(pi, (int)n, timeout) < 0 && errno != EINTR) {
            LOG_ERROR("worker.poll_failed", "zmq_poll: %s",
                      zmq_strerror(errno));
            rc = 3;
            break;
        }
        now = clock_now_ns();
        if (w->monitor)
            handle_monitor(w, now);
        int fatal = 0;
        if (handle_control(w, now, &fatal)) {
            if (fatal) {
                rc = 2;
                break;
            }
            job_done = 1;
            continue;
        }
        if (work_i || w->work)
            handle_work(w);
        (void)res_i;
        http_dispatch(w->http, pi + curl_first, n - curl_first);
    }
    free(pi);
    if (w->released)
        request_tokens(w);
    LOG_INFO("worker.stopped",
             "ok=%" PRIu64 " failed=%" PRIu64 " retries=%" PRIu64
             " dropped_tokens=%" PRIu64,
             w->n_ok, w->n_failed, w->n_retries, w->n_dropped_tokens);
out:
    http_destroy(&w->http);
    drop_unstarted(w, NULL, NULL);
    for (size_t i = 0; i < w->nitems; i++)
        item_free(w->items[i]);
    free(w->items);
    free_frames(w->out_head);
    free_frames(w->recent_head);
    ring_fini(&w->tok);
    job_free(&w->job);
    buf_fini(&w->scratch);
    if (w->work)
        zmq_close(w->work);
    if (w->res)
        zmq_close(w->res);
    if (w->ctl)
        close_control(w);
    zmq_ctx_term(w->zctx);
    return rc;
}
