/*
 * worker.c - fanout-worker's event loop; see worker.h.
 *
 * One thread, one zmq_poll: the control DEALER, the work PULL, the result
 * PUSH (only while results are queued) and libcurl's sockets. Each turn of
 * the loop spends the tokens whose time has come, asks the master for more
 * when what it wants changed, heartbeats, and sleeps until the earliest of:
 * the next token, the next retry, the next heartbeat, libcurl's timer.
 *
 * The concepts live in their own modules: the sockets to the master
 * (wlink.h), the JOB (job.h), the held items (witems.h), the token ledger
 * (wtokens.h), the retry decision (retry.h), outage detection (outage.h),
 * queued and recently sent results (outbox.h) and libcurl (http.h). This
 * file keeps the loop, reads the sockets, and turns the modules' decisions
 * into messages and calls.
 */
#include "fmacros.h"
#include "worker.h"
#include "backoff.h"
#include "buf.h"
#include "clock.h"
#include "http.h"
#include "job.h"
#include "log.h"
#include "outage.h"
#include "outbox.h"
#include "proto.h"
#include "retry.h"
#include "transform.h"
#include "util.h"
#include "witems.h"
#include "wlink.h"
#include "wtokens.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <unistd.h>
#include <zmq.h>

/* Our own poll items: the control socket and its monitor. */
#define OWN_POLL_ITEMS 2
#define HELLO_INTERVAL_NS (1000 * FO_NS_PER_MS)

typedef struct wstate {
    const worker_config *cfg; /* options */
    wlink link;               /* sockets to the master */
    char id[320];             /* worker id */
    char host[256];           /* our host name */
    uint64_t epoch;           /* the current master's epoch */
    int have_job;             /* a JOB arrived */
    int master_ok;            /* the master spoke within the lease */
    job job;                  /* the current job */
    witems held;              /* items held */
    wtokens tok;              /* token ledger */
    http *http;               /* calls in flight */
    outbox ob;                /* results queued and sent lately */
    int64_t last_master_ns;   /* last message from the master */
    uint64_t hb_echo_us;      /* the master's last heartbeat's sent_us */
    int64_t hb_echo_at_us;    /* our wall clock when it came */
    int64_t next_hb_ns;       /* next heartbeat */
    int64_t next_hello_ns;    /* next HELLO while unjoined */
    uint64_t rng;             /* jitter source */
    int64_t paused_until_ns;  /* no calls before this (API push-back) */
    int64_t next_rateinfo_ns; /* next RATEINFO report allowed */
    int said_bye;             /* leaving: items that come now go back */
    uint32_t npaid;           /* pre-paid items received and not yet
                                 started (an upper bound: 0 means none,
                                 so the unkeyed loop skips their scan) */
    uint64_t n_ok, n_failed, n_retries, n_bad_frames; /* counters */
    uint64_t n_orphans_dropped; /* failed attempts of orphaned items */
    outage api;                 /* is the API down? */
} wstate;

static volatile sig_atomic_t stop_signal;
/* The master asked us to leave (fanout-ctl drain). */
static int drain_asked;

static void on_signal(int sig)
{
    stop_signal = sig;
}

/* ---- sockets --------------------------------------------------------- */

static void send_ctl(wstate *w, const proto_msg *m)
{
    wlink_send_ctl(&w->link, m);
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

/* ---- results --------------------------------------------------------- */

static void flush_outbox(wstate *w)
{
    outbox_flush(&w->ob, wlink_send_result, &w->link, clock_now_ns(),
                 w->job.lease_ns, w->master_ok);
}

/* Queues the item's RESULT and frees it. status PROTO_STATUS_*; a RETRY
 * (keyed mode) carries retry_in_ms. */
static void report_item(wstate *w, witem *it, uint32_t status,
                        const char *error, const char *body, size_t body_len,
                        int64_t latency_ms, size_t dropped_bytes,
                        int64_t retry_in_ms)
{
    int ok = status == PROTO_STATUS_OK;
    proto_msg m = {.type = PROTO_RESULT, .epoch = w->epoch};
    m.u.result.ref = it->ref;
    m.u.result.key = it->key;
    m.u.result.status = status;
    m.u.result.retry_in_ms =
        retry_in_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)retry_in_ms;
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
    m.u.result.started_us = (uint64_t)it->started_us;
    m.u.result.finished_us = (uint64_t)clock_wall_us();
    m.u.result.dropped_len = dropped_bytes;
    LOG_KV(LOG_LVL_DEBUG, "item.done",
           LOG_FIELDS(LOG_S("item", it->key), LOG_S("worker", w->id),
                      LOG_S("status", ok ? "ok" : "failed"),
                      LOG_I("attempt", it->attempts),
                      LOG_I("http_status", it->last_http)),
           "id=%s %s after %u attempts (HTTP %ld)%s%s", it->key,
           ok                             ? "ok"
           : status == PROTO_STATUS_RETRY ? "to retry"
                                          : "failed",
           it->attempts, (long)it->last_http, error ? ": " : "",
           error ? error : "");
    fo_buf frame;
    buf_init(&frame, PROTO_MAX_CONTROL_BYTES + PROTO_MAX_BODY_BYTES);
    if (proto_encode(&m, &frame) != FO_OK) {
        /* Cannot happen with capped bodies; keep the item's outcome. */
        m.u.result.response = NULL;
        m.u.result.response_len = 0;
        buf_reset(&frame);
        if (proto_encode(&m, &frame) != FO_OK)
            LOG_KV(LOG_LVL_ERROR, "proto.encode_failed",
                   LOG_FIELDS(LOG_S("item", it->key), LOG_S("worker", w->id)),
                   "result for %s", it->key);
    }
    /* Sent on the next turn of the loop, with every other result that
     * completed on this one, in one envelope. */
    outbox_push(&w->ob, &frame);
    if (ok)
        w->n_ok++;
    else if (status == PROTO_STATUS_RETRY)
        w->n_retries++;
    else
        w->n_failed++;
    witems_finish(&w->held, it);
}

static void finish_item(wstate *w, witem *it, int ok, const char *error,
                        const char *body, size_t body_len, int64_t latency_ms,
                        size_t dropped_bytes)
{
    report_item(w, it, ok ? PROTO_STATUS_OK : PROTO_STATUS_FAILED, error, body,
                body_len, latency_ms, dropped_bytes, 0);
}

/* ---- HTTP ------------------------------------------------------------ */

static void schedule_retry(wstate *w, witem *it, int64_t delay_ms)
{
    if (it->prepaid) {
        /* Keyed mode: the master pays every attempt against the item's
         * key, so the retry goes back to it. */
        report_item(w, it, PROTO_STATUS_RETRY, it->last_error, NULL, 0, 0, 0,
                    delay_ms);
        return;
    }
    witems_wait(&w->held, it, clock_now_ns() + delay_ms * FO_NS_PER_MS);
    w->n_retries++;
    LOG_KV(LOG_LVL_DEBUG, "item.retry",
           LOG_FIELDS(LOG_S("item", it->key), LOG_S("worker", w->id),
                      LOG_I("attempt", it->attempts),
                      LOG_I("delay_ms", delay_ms)),
           "id=%s attempt=%u in %" PRId64 "ms: %s", it->key, it->attempts,
           delay_ms, it->last_error ? it->last_error : "");
}

/* A failed attempt of an item the master has taken back while it was in
 * flight (we rejoined it, or a new master came) is not retried: the master
 * may have given the item to another worker, which may have recorded it
 * by now. The master sends it again if nobody else has it. */
static void retry_or_drop(wstate *w, witem *it, int64_t delay_ms)
{
    if (!it->orphaned) {
        schedule_retry(w, it, delay_ms);
        return;
    }
    w->n_orphans_dropped++;
    LOG_KV(LOG_LVL_INFO, "item.orphan_dropped",
           LOG_FIELDS(LOG_S("item", it->key), LOG_S("worker", w->id),
                      LOG_I("attempt", it->attempts)),
           "id=%s: its attempt %u failed (%s) after the master took it "
           "back; not retrying it here",
           it->key, it->attempts, it->last_error ? it->last_error : "?");
    witems_finish(&w->held, it);
}

/* Drops every token held and starts no call before now + ms: the API asked
 * for quiet, and a token spent now would arrive inside the pause. */
static void local_pause(wstate *w, int64_t ms)
{
    int64_t until = clock_now_ns() + ms * FO_NS_PER_MS;
    if (until > w->paused_until_ns)
        w->paused_until_ns = until;
    wtokens_drop_all(&w->tok);
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

/* Reports an item that will not be retried, worded by the reason. */
static void fail_item(wstate *w, witem *it, const http_response *r,
                      const retry_decision *d, size_t dropped_bytes)
{
    char msg[1200];
    const char *body = r->body;
    size_t body_len = r->body_len;
    switch (d->reason) {
    case RETRY_FAIL_TOO_LARGE:
        snprintf(msg, sizeof msg,
                 "response body is larger than --max-response-bytes (%zu)",
                 w->job.max_response);
        body = NULL;
        body_len = 0;
        break;
    case RETRY_FAIL_THROTTLED:
        snprintf(msg, sizeof msg,
                 "throttled (HTTP %ld) %u times; giving up "
                 "(--max-throttled %u)",
                 r->status, it->throttled, w->job.retry.max_throttled);
        break;
    case RETRY_FAIL_EXHAUSTED:
        snprintf(msg, sizeof msg, "gave up after %u attempts: %s", d->counted,
                 it->last_error);
        if (r->outcome != HTTP_OUT_OK) {
            body = NULL;
            body_len = 0;
        }
        break;
    case RETRY_FAIL_REJECTED:
    case RETRY_FAIL_STATUS:
    case RETRY_FAIL_NONE:
    default:
        snprintf(msg, sizeof msg, "%s", it->last_error);
        break;
    }
    finish_item(w, it, 0, msg, body, body_len, r->latency_ms,
                body == r->body ? dropped_bytes : 0);
}

/* A call finished: ask retry_decide() what it means and act on it. */
static void on_http_done(void *ctx, const http_response *r)
{
    wstate *w = ctx;
    witem *it = r->user;
    /* A call paid from an account the master has since reset (we joined
     * again) holds no permit there: releasing it would free one that a
     * new token holds, and the in-flight cap would be exceeded. */
    if (!it->prepaid && it->account == wtokens_account(&w->tok))
        wtokens_release(&w->tok, 1);
    it->last_http = (uint32_t)r->status;
    int answered = r->outcome == HTTP_OUT_OK;
    int no_route = http_outcome_unreachable(r->outcome);
    /* The job's --keep/--drop-response/--ok-when, here on the worker so
     * that only what is kept crosses the network. */
    transform_result tr;
    transform_apply(&w->job.xf, r->body, r->body_len,
                    answered && r->status >= 200 && r->status < 300,
                    w->job.max_response, &tr);
    http_response kept = *r;
    kept.body = tr.body;
    kept.body_len = tr.body_len;
    retry_input in = {
        .answered = answered,
        .rejected = !tr.passed,
        .status = r->status,
        .too_large = r->outcome == HTTP_OUT_TOO_LARGE,
        .unreachable = no_route,
        .outage = outage_note(&w->api, answered, no_route, clock_now_ns()),
        .retry_after = r->retry_after,
        .now_wall_ms = clock_wall_ms(),
        .rnd = backoff_rand(&w->rng),
    };
    retry_counts counts = {it->attempts, it->throttled, it->unreachable};
    retry_decision d = retry_decide(&w->job.retry, &counts, &in);
    it->throttled = d.counts.throttled;
    it->unreachable = d.counts.unreachable;
    if (d.bad_retry_after)
        LOG_KV(LOG_LVL_WARN, "api.bad_retry_after",
               LOG_FIELDS(LOG_S("item", it->key), LOG_S("worker", w->id),
                          LOG_I("http_status", r->status)),
               "id=%s: ignoring malformed Retry-After '%.60s'", it->key,
               r->retry_after);
    /* Keyed mode: an API that limits per key reports that key's limit in
     * these headers, not the cluster's; its 429s pause the key instead. */
    if (!it->prepaid && ratelimit_known(&r->ratelimit))
        report_rateinfo(w, &r->ratelimit);
    if (d.pause_ms > 0 && !it->prepaid) {
        /* Push-back: stop our own calls now, and tell the master, which
         * pauses the whole cluster. (Keyed mode: the RETRY result pauses
         * only the item's key.) */
        local_pause(w, d.pause_ms);
        proto_msg m = {.type = PROTO_THROTTLED, .epoch = w->epoch};
        m.u.throttled.http_status = (uint32_t)r->status;
        m.u.throttled.retry_after_ms =
            d.retry_after_ms > 0 ? (uint32_t)d.retry_after_ms : 0;
        send_ctl(w, &m);
        witem_set_error(it, "HTTP %ld (throttled %u times)", r->status,
                        it->throttled);
    } else if (d.pause_ms > 0) {
        witem_set_error(it, "HTTP %ld (throttled %u times)", r->status,
                        it->throttled);
    } else if (d.verdict != RETRY_DONE && d.reason != RETRY_FAIL_TOO_LARGE) {
        if (!tr.passed)
            witem_set_error(it, "%s", tr.why);
        else if (answered)
            witem_set_error(it, "HTTP %ld", r->status);
        else
            witem_set_error(it, "%s", r->error);
    }
    switch (d.verdict) {
    case RETRY_DONE:
        finish_item(w, it, 1, NULL, kept.body, kept.body_len, r->latency_ms,
                    tr.dropped_bytes);
        break;
    case RETRY_FAIL:
        fail_item(w, it, &kept, &d, tr.dropped_bytes);
        break;
    case RETRY_OUTAGE:
        outage_waiting(&w->api, r->error, clock_now_ns());
        retry_or_drop(w, it, d.delay_ms);
        break;
    case RETRY_THROTTLED:
        /* Keyed mode: the master pauses the key for exactly what the API
         * asked (the item's backoff would hold the whole key longer). */
        schedule_retry(w, it, it->prepaid ? d.pause_ms : d.delay_ms);
        break;
    case RETRY_AGAIN:
    default:
        retry_or_drop(w, it, d.delay_ms);
        break;
    }
    transform_result_fini(&tr);
}

static void start_call(wstate *w, witem *it)
{
    char idem[300];
    snprintf(idem, sizeof idem, "Idempotency-Key: %s", it->idem);
    /* The job's headers and this item's key; http_start() copies them. */
    size_t nh = w->job.nheaders + 1;
    const char **hdrs = xcalloc(nh, sizeof *hdrs);
    for (size_t i = 0; i < w->job.nheaders; i++)
        hdrs[i] = w->job.headers[i];
    hdrs[nh - 1] = idem;
    it->account = wtokens_account(&w->tok);
    if (!it->started_us)
        it->started_us = clock_wall_us();
    it->attempts++;
    it->state = WI_FLIGHT;
    http_request req = {
        .method = w->job.method,
        .url = it->url,
        .body = it->body,
        .body_len = it->body_len,
        .headers = hdrs,
        .nheaders = nh,
        .timeout_ms = w->job.timeout_ms,
        .connect_timeout_ms = w->job.connect_timeout_ms,
        .max_response_bytes = w->job.max_response,
        .user = it,
    };
    fo_err rc = http_start(w->http, &req);
    free(hdrs);
    if (rc != FO_OK) {
        if (!it->prepaid)
            wtokens_release(&w->tok, 1);
        witem_set_error(it, "could not start the request for %s: %s", it->url,
                        fo_strerror(rc));
        finish_item(w, it, 0, it->last_error, NULL, 0, 0, 0);
    }
}

/* ---- tokens ---------------------------------------------------------- */

/* Spends every token whose time has come on a ready item, or drops it. */
static void spend_tokens(wstate *w, int64_t now)
{
    int64_t slack = w->job.rate_limited ? w->job.slack_ns : INT64_MAX;
    for (;;) {
        /* No attempt once the master may have taken our items back. */
        int can_start = retry_may_start(w->master_ok, now, w->last_master_ns,
                                        w->job.lease_ns, w->job.heartbeat_ns) &&
                        now >= w->paused_until_ns &&
                        witems_ready(&w->held) > 0 &&
                        http_inflight(w->http) < w->cfg->concurrency;
        wtokens_action a = wtokens_next(&w->tok, now, slack, can_start);
        if (a == WTOKENS_NONE)
            return;
        if (a == WTOKENS_SPEND)
            start_call(w, witems_pop_ready(&w->held));
    }
}

/* Keyed mode: starts the pre-paid items whose time has come, as slots
 * allow; returns when the next one is due (INT64_MAX: none). */
static int64_t start_paid(wstate *w, int64_t now)
{
    int64_t next = INT64_MAX;
    if (!w->npaid)
        return INT64_MAX;
    if (now < w->paused_until_ns)
        return w->paused_until_ns;
    while (http_inflight(w->http) < w->cfg->concurrency) {
        witem *it = witems_due_paid(&w->held, now, &next);
        if (!it) {
            if (next == INT64_MAX)
                w->npaid = 0; /* none left (some were dropped) */
            return next;
        }
        w->npaid--;
        if (now - it->ready_at_ns > w->job.slack_ns) {
            /* Late (we were slow, paused or out of slots): a call now
             * would land closer to the key's next one than its limit
             * allows. Hand it back, uncounted, to be paid again, as a
             * token is dropped that cannot be spent on time. */
            witem_set_error(it, "started too late for its pre-paid time");
            report_item(w, it, PROTO_STATUS_RETRY, it->last_error, NULL, 0, 0,
                        0, 0);
            continue;
        }
        start_call(w, it);
    }
    /* A call ending frees a slot and wakes the loop. */
    return INT64_MAX;
}

static void request_tokens(wstate *w)
{
    wtokens_req r;
    int64_t slots = w->cfg->concurrency - http_inflight(w->http);
    if (!wtokens_request(&w->tok, slots, witems_ready(&w->held), &r))
        return;
    proto_msg m = {.type = PROTO_TOKEN_REQ, .epoch = w->epoch};
    m.u.token_req.want = r.want;
    m.u.token_req.seen = r.seen;
    m.u.token_req.released = r.released;
    send_ctl(w, &m);
}

static void send_heartbeat(wstate *w)
{
    proto_msg m = {.type = PROTO_HEARTBEAT, .epoch = w->epoch};
    size_t held = witems_held(&w->held);
    proto_ref *refs = held ? xcalloc(held, sizeof *refs) : NULL;
    uint32_t n = witems_refs(&w->held, refs, PROTO_MAX_HELD);
    m.u.heartbeat.inflight = (uint32_t)http_inflight(w->http);
    m.u.heartbeat.nheld = n;
    m.u.heartbeat.held = refs;
    /* The master's round trip and clock offset to us come from these. */
    int64_t wall = clock_wall_us();
    m.u.heartbeat.sent_us = (uint64_t)wall;
    if (w->hb_echo_us && wall >= w->hb_echo_at_us) {
        m.u.heartbeat.echo_us = w->hb_echo_us;
        m.u.heartbeat.echo_held_us = (uint64_t)(wall - w->hb_echo_at_us);
    }
    send_ctl(w, &m);
    free(refs);
}

/* ---- messages -------------------------------------------------------- */

/* Takes a JOB. Returns FO_OK, or FO_EPROTO (logged) when this worker
 * cannot run it or reach its data ports. */
static fo_err on_job(wstate *w, proto_msg *m)
{
    job j;
    char err[512];
    fo_err rc = job_parse(m->u.job.job_json, &j, err, sizeof err);
    if (rc != FO_OK) {
        LOG_ERROR(rc == FO_EINVAL    ? "worker.bad_header"
                  : rc == FO_EDENIED ? "worker.env_not_allowed"
                                     : "proto.bad_job",
                  "%s", err);
        return FO_EPROTO;
    }
    if (w->have_job && (m->epoch != w->epoch || !w->master_ok)) {
        /* A new master, or ours after it lost us: either way it has given
         * what we had not started to others (or will). Calls in flight
         * finish and their results still count; results sent while it was
         * away may have been lost with the connection, so send them again
         * (the master records each item once). */
        witems_drop_unstarted(&w->held, NULL, NULL);
        outbox_resend_recent(&w->ob);
        if (m->epoch != w->epoch)
            LOG_INFO("master.changed",
                     "new master epoch %" PRIu64 " (was %" PRIu64 ")", m->epoch,
                     w->epoch);
    }
    job_fini(&w->job);
    w->job = j;
    w->epoch = m->epoch;
    /* The master starts our token account afresh on every JOB, and
     * measures our round trip again. */
    wtokens_reset(&w->tok);
    w->hb_echo_us = 0;
    if (!w->have_job || !w->master_ok)
        LOG_INFO("worker.joined",
                 "joined master %s (epoch %" PRIu64 ", concurrency %d)",
                 w->cfg->master, w->epoch, w->cfg->concurrency);
    w->have_job = 1;
    w->master_ok = 1;
    w->next_hb_ns = 0;
    return FO_OK;
}

/* An item for us. After our BYE it goes straight back: the master sent
 * it before the BYE reached it. */
static void on_work(wstate *w, proto_msg *m)
{
    if (w->said_bye) {
        proto_msg bye = {.type = PROTO_BYE, .epoch = w->epoch};
        proto_ref ref = m->u.work.ref;
        bye.u.bye.held = &ref;
        bye.u.bye.nheld = 1;
        send_ctl(w, &bye);
        return;
    }
    if (!m->u.work.prepaid) {
        witems_add(&w->held, m);
        return;
    }
    w->npaid++;
    witems_add_paid(&w->held, m,
                    clock_now_ns() + (int64_t)m->u.work.paid_offset_us * 1000);
}

/* One message from the master, alone or from a MULTI envelope. */
typedef struct inbound {
    wstate *w;
    int64_t now;
    fo_err *fatal; /* set by a JOB we cannot run */
    int quit;      /* the worker should exit */
} inbound;

static void bad_frame(wstate *w, fo_err rc, const char *err)
{
    w->n_bad_frames++;
    LOG_WARN(rc == FO_EVERSION ? "proto.bad_version" : "proto.bad_frame",
             "dropped a control frame: %s", err);
}

static void handle_frame(void *ctx, const void *data, size_t len)
{
    inbound *in = ctx;
    wstate *w = in->w;
    int64_t now = in->now;
    if (in->quit)
        return;
    proto_msg m;
    char err[256];
    fo_err rc = proto_decode(data, len, &m, err, sizeof err);
    if (rc) {
        bad_frame(w, rc, err);
        return;
    }
    int quit = 0;
    w->last_master_ns = now;
    switch (m.type) {
    case PROTO_JOB:
        if ((*in->fatal = on_job(w, &m)) != FO_OK)
            quit = 1;
        break;
    case PROTO_TOKEN_GRANT:
        /* Not while the master is lost: a grant that arrives then was held
         * up in the network (a cut link coming back delivers them all at
         * once, each seconds late); the JOB that answers our hello starts
         * a fresh account anyway. */
        if (m.epoch == w->epoch && w->have_job && w->master_ok) {
            /* A late grant's tokens keep their spacing from now
             * instead of bunching against the next grant's. */
            int64_t anchor =
                now - wtokens_lateness_ns(&w->tok, m.u.token_grant.sent_wall_us,
                                          clock_wall_us());
            wtokens_grant(&w->tok, anchor, m.u.token_grant.offset_us,
                          m.u.token_grant.n);
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
        if (w->cfg->once)
            quit = 1;
        break;
    case PROTO_WORK:
        on_work(w, &m);
        break;
    case PROTO_DRAIN:
        if (!drain_asked)
            LOG_INFO("worker.drain", "the master asks us to leave "
                                     "(fanout-ctl drain)");
        drain_asked = 1;
        break;
    case PROTO_HEARTBEAT:
        /* The first after a JOB is answered at once: the master waits
         * for our round trip before it grants us tokens. */
        if (!w->hb_echo_us && m.u.heartbeat.sent_us)
            w->next_hb_ns = 0;
        w->hb_echo_us = m.u.heartbeat.sent_us;
        w->hb_echo_at_us = clock_wall_us();
        break;
    default:
        break;
    }
    proto_msg_fini(&m);
    if (quit)
        in->quit = 1;
}

/* Returns 1 when the worker should exit: DONE with --once, or a JOB it
 * cannot run (*fatal set to the error). */
static int handle_control(wstate *w, int64_t now, fo_err *fatal)
{
    inbound in = {w, now, fatal, 0};
    for (int budget = 0; budget < 1000 && !in.quit; budget++) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, w->link.ctl, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            return 0;
        }
        const void *data = zmq_msg_data(&msg);
        size_t len = zmq_msg_size(&msg);
        if (proto_frame_type(data, len) == PROTO_MULTI) {
            char err[256];
            if (proto_multi_each(data, len, handle_frame, &in, err,
                                 sizeof err) < 0)
                bad_frame(w, FO_EPROTO, err);
        } else {
            handle_frame(&in, data, len);
        }
        zmq_msg_close(&msg);
    }
    return in.quit;
}

/* ---- the loop -------------------------------------------------------- */

static void say_bye(wstate *w)
{
    /* Items the master sends before it reads this go back one by one
     * (on_work). */
    w->said_bye = 1;
    proto_msg m = {.type = PROTO_BYE, .epoch = w->epoch};
    witems_drop_unstarted(&w->held, &m.u.bye.held, &m.u.bye.nheld);
    send_ctl(w, &m);
    if (m.u.bye.nheld || http_inflight(w->http))
        LOG_INFO("worker.leaving",
                 "handing back %u unstarted items, "
                 "waiting for %d calls in flight",
                 m.u.bye.nheld, http_inflight(w->http));
    free(m.u.bye.held);
}

/* Everything due at now that does not wait on a socket, like Redis's
 * serverCron: master liveness, hello, retries, tokens, heartbeat, results.
 * Returns when the loop should wake next at the latest. */
static int64_t tick(wstate *w, int64_t now, int draining)
{
    /* Master liveness: after a lease of silence, say hello again. */
    if (w->master_ok && w->have_job &&
        now - w->last_master_ns > w->job.lease_ns) {
        LOG_WARN("master.lost",
                 "no word from the master for %" PRId64
                 " ms; keeping calls in flight and saying hello until "
                 "it answers",
                 (now - w->last_master_ns) / FO_NS_PER_MS);
        w->master_ok = 0;
        /* Its tokens were timed for a link that went quiet; spent now they
         * could land beside the ones it gave others meanwhile. */
        wtokens_drop_all(&w->tok);
    }
    if (!w->master_ok && now >= w->next_hello_ns && !draining) {
        send_hello(w);
        w->next_hello_ns = now + HELLO_INTERVAL_NS;
    }
    int64_t next_wake = witems_wake(&w->held, now);
    if (w->have_job && !draining) {
        int64_t paid = start_paid(w, now);
        if (paid < next_wake)
            next_wake = paid;
        spend_tokens(w, now);
        request_tokens(w);
    } else if (draining && w->tok.released) {
        request_tokens(w);
    }
    if (w->have_job && now >= w->next_hb_ns) {
        send_heartbeat(w);
        w->next_hb_ns = now + w->job.heartbeat_ns;
    }
    flush_outbox(w);

    /* Sleep until the earliest thing we have to do. */
    int64_t deadline = now + 1000 * FO_NS_PER_MS;
    if (wtokens_next_due(&w->tok) < deadline)
        deadline = wtokens_next_due(&w->tok);
    if (next_wake < deadline)
        deadline = next_wake;
    if (w->have_job && w->next_hb_ns < deadline)
        deadline = w->next_hb_ns;
    if (!w->master_ok && w->next_hello_ns < deadline)
        deadline = w->next_hello_ns;
    return deadline;
}

/* The poll items for one turn: our sockets first, then libcurl's.
 * Returns how many, and in *http_first where the HTTP client's begin. */
static size_t poll_items(wstate *w, zmq_pollitem_t **pip, size_t *cap,
                         size_t *http_first)
{
    /* libcurl's sockets grow with the calls in flight (--concurrency): so
     * does the array, never a fixed cap that would leave some unpolled. */
    size_t need = OWN_POLL_ITEMS + http_nsocks(w->http);
    if (need > *cap) {
        *cap = need * 2;
        *pip = xrealloc(*pip, *cap * sizeof **pip);
    }
    zmq_pollitem_t *pi = *pip;
    size_t n = 0;
    short ev = ZMQ_POLLIN;
    if (outbox_pending(&w->ob))
        ev |= ZMQ_POLLOUT;
    pi[n++] = (zmq_pollitem_t){w->link.ctl, 0, ev, 0};
    if (w->link.monitor)
        pi[n++] = (zmq_pollitem_t){w->link.monitor, 0, ZMQ_POLLIN, 0};
    *http_first = n;
    return n + http_pollitems(w->http, pi + n, *cap - n);
}

/* Runs until a signal, DONE with --once, or a fatal error; see
 * worker_run() for the codes. */
static fo_err run_loop(wstate *w)
{
    int64_t drain_deadline = 0;
    int draining = 0, job_done = 0;
    fo_err rc = FO_OK;
    size_t pcap = 64;
    zmq_pollitem_t *pi = xcalloc(pcap, sizeof *pi);
    for (;;) {
        int64_t now = clock_now_ns();
        if ((stop_signal || job_done || drain_asked) && !draining) {
            draining = 1;
            drain_deadline = now + w->cfg->drain_timeout_ms * FO_NS_PER_MS;
            if (stop_signal)
                LOG_INFO("worker.stopping",
                         "signal %d: finishing calls in "
                         "flight",
                         (int)stop_signal);
            say_bye(w);
        }
        if (draining &&
            ((http_inflight(w->http) == 0 && !outbox_pending(&w->ob)) ||
             now >= drain_deadline))
            break;
        char lerr[600];
        int reopened = wlink_reopen_due(&w->link, now, lerr, sizeof lerr);
        if (reopened < 0) {
            LOG_ERROR("worker.connect_failed", "%s", lerr);
            rc = FO_EIO;
            break;
        }
        if (reopened)
            w->next_hello_ns = 0;

        int64_t deadline = tick(w, now, draining);
        long timeout =
            (long)((deadline - now + FO_NS_PER_MS - 1) / FO_NS_PER_MS);
        long ct = http_timeout_ms(w->http);
        if (ct >= 0 && ct < timeout)
            timeout = ct;
        if (timeout < 0)
            timeout = 0;

        size_t http_first;
        size_t n = poll_items(w, &pi, &pcap, &http_first);
        if (zmq_poll(pi, (int)n, timeout) < 0 && errno != EINTR) {
            LOG_ERROR("worker.poll_failed", "zmq_poll: %s",
                      zmq_strerror(errno));
            rc = FO_EIO;
            break;
        }
        now = clock_now_ns();
        wlink_handle_monitor(&w->link, now);
        fo_err fatal = FO_OK;
        if (handle_control(w, now, &fatal)) {
            if (fatal) {
                rc = fatal;
                break;
            }
            job_done = 1;
            continue;
        }
        http_dispatch(w->http, pi + http_first, n - http_first);
    }
    free(pi);
    if (w->tok.released)
        request_tokens(w);
    LOG_INFO("worker.stopped",
             "ok=%" PRIu64 " failed=%" PRIu64 " retries=%" PRIu64
             " dropped_tokens=%" PRIu64 " orphans_dropped=%" PRIu64,
             w->n_ok, w->n_failed, w->n_retries, w->tok.n_dropped,
             w->n_orphans_dropped);
    return rc;
}

/* Sets up everything but the loop; worker_close() undoes it, also after
 * a failure here. */
static fo_err worker_open(wstate *w, const worker_config *cfg, char *err,
                          size_t errlen)
{
    memset(w, 0, sizeof *w);
    w->cfg = cfg;
    witems_init(&w->held);
    wtokens_init(&w->tok);
    outbox_init(&w->ob);
    outage_init(&w->api);
    gethostname(w->host, sizeof w->host - 1);
    if (cfg->id)
        snprintf(w->id, sizeof w->id, "%s", cfg->id);
    else
        snprintf(w->id, sizeof w->id, "%.255s:%d", w->host, (int)getpid());
    w->rng = (uint64_t)clock_now_ns() ^ ((uint64_t)getpid() << 32) ^ 1;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    fo_err rc = wlink_init(&w->link, cfg->master, cfg->curve_secret,
                           cfg->curve_server_key, err, errlen);
    if (rc != FO_OK)
        return rc;
    w->http = http_new(on_http_done, w);
    if (!w->http) {
        snprintf(err, errlen, "could not create the HTTP client");
        return FO_EIO;
    }
    return FO_OK;
}

static void worker_close(wstate *w)
{
    http_destroy(&w->http);
    witems_fini(&w->held);
    outbox_fini(&w->ob);
    wtokens_fini(&w->tok);
    job_fini(&w->job);
    wlink_fini(&w->link);
}

fo_err worker_run(const worker_config *cfg, char *err, size_t errlen)
{
    wstate w;
    err[0] = '\0';
    fo_err rc = worker_open(&w, cfg, err, errlen);
    if (rc == FO_OK) {
        LOG_INFO("worker.started", "id=%s master=%s concurrency=%d", w.id,
                 cfg->master, cfg->concurrency);
        rc = run_loop(&w);
    }
    worker_close(&w);
    return rc;
}
