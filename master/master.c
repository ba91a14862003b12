/*
 * master.c - fanout-master's event loop; see master.h.
 *
 * One thread and one zmq_poll over the control ROUTER (every message to
 * and from workers, items and results included) and the input when it is
 * a pipe. Each turn: handle messages, read more input while fewer items
 * than the window are outstanding, dispatch items to workers with free
 * credit, grant tokens, commit results that have waited a few
 * milliseconds, and on a 100 ms tick expire leases, heartbeat and draw
 * progress.
 *
 * The work itself lives in modules, each owning its state (the Redis
 * serverCron habit): batches (items and the dispatch queue), intake
 * (reading and rendering), dispatch (who holds what), fanin (results to
 * records), commit (group
 * commit and results.jsonl), orphans, ratectl (limits, adaptive, pauses),
 * sender, control (the worker conversation), ctlcmd (operators), observe
 * (/status, /metrics, summaries) and curve (ZAP). This file wires them
 * together, owns the sockets, and runs the loop.
 */
#include "fmacros.h"
#include "master.h"
#include "batches.h"
#include "budget.h"
#include "clock.h"
#include "commit.h"
#include "control.h"
#include "ctlcmd.h"
#include "curve.h"
#include "dispatch.h"
#include "cancel.h"
#include "fanin.h"
#include "halt.h"
#include "httpd.h"
#include "intake.h"
#include "keystat.h"
#include "log.h"
#include "observe.h"
#include "orphans.h"
#include "outlock.h"
#include "progress.h"
#include "proto.h"
#include "queue.h"
#include "ratectl.h"
#include "sender.h"
#include "spawn.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define TICK_NS (100 * FO_NS_PER_MS)
#define GRANT_HORIZON_NS (250 * FO_NS_PER_MS)
#define WINDOW_MAX 100000
#define MAX_POLL_ITEMS 48

/* After a restart, workers reconnect within half a second (their reconnect
 * interval is capped there), report the items they still hold and flush
 * results meant for the old master. Dispatching before that would call the
 * API again for items whose results are on their way. */
#define RESUME_GRACE_NS (800 * FO_NS_PER_MS)
/* How long after a restart workers may claim items and deliver results
 * this life has not given out: a lease, and at least this. */
#define ADOPT_MIN_NS (10 * FO_NS_PER_S)

struct master {
    const master_config *cfg;   /* options */
    store *st;                  /* durable state */
    budget *bud;                /* tokens and workers */
    void *zctx;                 /* ZeroMQ context */
    void *ctl;                  /* the control ROUTER */
    char ctl_ep[300];           /* its bound endpoint */
    char host[256];             /* --bind's host */
    char *job_json;             /* the JOB sent to workers */
    batches bt;                 /* open batches and the dispatch queue */
    intake in;                  /* source to batches */
    commit cm;                  /* records to disk */
    orphans orph;               /* queue results of an earlier run */
    ratectl rc;                 /* limits, adaptive scale, pauses */
    sender snd;                 /* the way out to workers */
    dispatcher dp;              /* items to workers, who holds what */
    fanin fi;                   /* results to records */
    control cs;                 /* the worker conversation */
    ctlcmd cc;                  /* operators' commands */
    observe obs;                /* status, metrics, summaries */
    curve cv;                   /* Curve keys and ZAP */
    httpd *http;                /* /metrics and /status, or NULL */
    spawn_set spawned;          /* local workers */
    outlock lock;               /* --out is ours while held */
    int64_t no_worker_since_ns; /* since when no worker is live, or 0 */
    int64_t no_worker_warn_ns;  /* next "no worker" warning */
    int already_done;           /* the job was complete before this run */
    int64_t run_start_ns;       /* this run's start */
    int64_t next_tick_ns;       /* next housekeeping */
    int64_t next_hb_ns;         /* next heartbeat to workers */
    int64_t next_lease_ns;      /* next lease scan */
    int stopping;               /* a signal asked us to stop */
    int64_t stop_deadline_ns;   /* drain deadline */
    int64_t drained_ns;         /* when permits reached zero */
    uint64_t n_bad_frames;      /* frames dropped on any socket */
    halt_cfg halt;              /* --halt-after, --halt-on-repeat */
    canceller cancel;           /* fanout-ctl cancel */
    char halt_reason[200];      /* why they stopped the job, or "" */
};

static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t stop_now; /* a second stop signal came */
static volatile sig_atomic_t reload_signal;

static void on_hup(int sig)
{
    (void)sig;
    reload_signal = 1;
}

static void on_signal(int sig)
{
    /* A second signal means "now": the loop stops without draining, but
     * through the normal exit, so that what is committed stays so. */
    if (stop_signal)
        stop_now = 1;
    stop_signal = sig;
}

/* ---- grants and dispatch -------------------------------------------- */

static void send_grant(void *ctx, budget_worker *w, const uint32_t *offs,
                       uint32_t n)
{
    master *m = ctx;
    proto_msg msg = {.type = PROTO_TOKEN_GRANT};
    msg.u.token_grant.total = w->granted;
    msg.u.token_grant.sent_wall_us = (uint64_t)clock_wall_us();
    msg.u.token_grant.n = n;
    msg.u.token_grant.offset_us = (uint32_t *)offs;
    sender_to(&m->snd, w->rid, w->rid_len, &msg);
    /* Counted when they may be spent, not when granted (up to 250 ms
     * earlier): the calls/s shown is then what the API sees, never more
     * than the limit when the API sees no more. */
    int64_t now = clock_now_ns() + w->one_way_ns;
    for (uint32_t i = 0; i < n; i++)
        ratectl_granted(&m->rc, now + (int64_t)offs[i] * 1000, 1);
}

/* Items outstanding at most. An item holds its place until its record is
 * committed, a few ms after its call ended: with a fast API much of the
 * window waits on the commit, so it is several times the calls that fit in
 * flight. The calls that fit in flight are read whatever their bytes. */
static intake_window window(master *m)
{
    if (m->cm.full.active) /* --out is full: take nothing new (outfull.h) */
        return (intake_window){0, 0};
    int64_t conc, cap = budget_max_in_flight(m->bud);
    budget_live(m->bud, &conc);
    intake_window w = {m->cfg->window, cap > 0 && cap < conc ? cap : conc};
    if (w.items > 0)
        return w;
    w.items = conc ? 4 * conc + 256 : 0;
    if (w.items < 2 * m->cfg->batch_size)
        w.items = 2 * m->cfg->batch_size;
    w.items = w.items > WINDOW_MAX ? WINDOW_MAX : w.items;
    return w;
}

static void tick(master *m, int64_t now)
{
    orphans_expire(&m->orph, now);
    control_expire(&m->cs, now);
    if (now >= m->next_lease_ns) {
        dispatch_scan_leases(&m->dp, now, m->cfg->lease_ms);
        m->next_lease_ns = now + 250 * FO_NS_PER_MS;
    }
    if (now >= m->next_hb_ns) {
        proto_msg hb = {.type = PROTO_HEARTBEAT};
        hb.u.heartbeat.sent_us = (uint64_t)clock_wall_us();
        sender_broadcast(&m->snd, m->bud, &hb);
        m->next_hb_ns = now + m->cfg->heartbeat_ms * FO_NS_PER_MS;
    }
    if (m->spawned.n)
        spawn_reap(&m->spawned);
    ratectl_tick(&m->rc, now);
}

/* ---- the loop -------------------------------------------------------- */

/* 1 (with err) when every spawned worker quit on a configuration error
 * (status 2) and no other worker is live: nothing will do the job, so
 * waiting would hang. */
static int workers_unusable(master *m, char *err, size_t errlen)
{
    char line[1024];
    if (!m->spawned.n || budget_live(m->bud, NULL) > 0 ||
        !spawn_all_unusable(&m->spawned, line, sizeof line))
        return 0;
    snprintf(err, errlen,
             "every spawned worker exited with status 2 (it cannot run this "
             "job as configured) and no other worker is connected; the last "
             "one said: %s",
             line[0] ? line : "(nothing)");
    return 1;
}

/* Says how to start a worker when none has been live for
 * --no-worker-warning, and again every minute. */
static void warn_no_worker(master *m, int64_t now)
{
    int64_t after_ns = m->cfg->no_worker_warning_ms * FO_NS_PER_MS;
    if (budget_live(m->bud, NULL) > 0 || m->stopping) {
        m->no_worker_since_ns = 0;
        return;
    }
    if (!m->no_worker_since_ns) {
        m->no_worker_since_ns = now;
        m->no_worker_warn_ns = now + after_ns;
    }
    if (after_ns <= 0 || now < m->no_worker_warn_ns)
        return;
    m->no_worker_warn_ns = now + 60 * FO_NS_PER_S;
    char ep[320];
    const char *cp = strrchr(m->ctl_ep, ':');
    snprintf(ep, sizeof ep, "tcp://%s:%s",
             strcmp(m->host, "0.0.0.0") && strcmp(m->host, "*") ? m->host
                                                                : "HOST",
             cp ? cp + 1 : "PORT");
    LOG_WARN("master.no_worker",
             "no worker has connected for %" PRId64
             " s; start one with: fanout-worker --master %s (or re-run with "
             "--spawn-workers N)",
             (now - m->no_worker_since_ns + FO_NS_PER_S / 2) / FO_NS_PER_S, ep);
}

/* Logs a fatal error with its event id; returns rc. */
static fo_err fail(fo_err rc, const char *event, const char *err)
{
    LOG_ERROR(event, "%s", err);
    return rc;
}

/* Builds the poll set for this turn; returns its size, *http_first the
 * index of the web server's items. */
static int poll_items(master *m, zmq_pollitem_t *pi, int *http_first)
{
    int n = 0;
    pi[n++] = (zmq_pollitem_t){m->ctl, 0, ZMQ_POLLIN, 0};
    if (m->cv.zap)
        pi[n++] = (zmq_pollitem_t){m->cv.zap, 0, ZMQ_POLLIN, 0};
    void *psock = NULL;
    int pfd = -1;
    /* A queue's thread also reports acknowledgements: poll it always. */
    if (source_pollable(m->in.src, &psock, &pfd) && !m->stopping &&
        (m->in.queue || intake_has_room(&m->in, window(m))))
        pi[n++] = (zmq_pollitem_t){psock, pfd, ZMQ_POLLIN, 0};
    *http_first = n;
    if (m->http)
        n += (int)httpd_pollitems(m->http, pi + n, MAX_POLL_ITEMS - (size_t)n);
    return n;
}

/* How long the poll may sleep, in ms. */
static long poll_timeout(master *m, int64_t now)
{
    int64_t deadline = m->next_tick_ns;
    if (commit_deadline(&m->cm) < deadline)
        deadline = commit_deadline(&m->cm);
    if (!m->stopping) {
        int64_t g = budget_next_wake(m->bud, now);
        int64_t k = dispatch_next_wake(&m->dp, now);
        if (g > k)
            g = k;
        if (g < deadline)
            deadline = g;
        if (m->dp.after_ns > now && m->dp.after_ns < deadline)
            deadline = m->dp.after_ns;
    }
    long timeout = (long)((deadline - now + FO_NS_PER_MS - 1) / FO_NS_PER_MS);
    void *psock = NULL;
    int pfd = -1;
    int pollable = source_pollable(m->in.src, &psock, &pfd);
    /* A commit just made room in the window, or items wait for a worker
     * with free credit: go round again at once rather than sleep until
     * the next event. Each of these runs dry in one turn, so this never
     * spins. */
    if (!m->stopping && budget_live(m->bud, NULL) > 0 &&
        now >= m->dp.after_ns &&
        ((!pollable && intake_has_room(&m->in, window(m))) ||
         dispatch_ready(&m->dp, now)))
        timeout = 0;
    return timeout < 0 ? 0 : timeout;
}

/* 1 once a stop has drained (or timed out). */
static int stop_done(master *m, int64_t now)
{
    if (!m->stopping)
        return 0;
    if (budget_permits_in_use(m->bud) == 0 && !m->drained_ns &&
        dispatch_keyed_inflight(&m->dp) == 0)
        m->drained_ns = now;
    /* A worker sends a result before the token request that releases
     * its permit, but give late ones a moment to land. */
    return (m->drained_ns && now - m->drained_ns > 300 * FO_NS_PER_MS) ||
           now >= m->stop_deadline_ns || budget_live(m->bud, NULL) == 0;
}

static fo_err run_loop(master *m, master_end *end, char *err, size_t errlen)
{
    zmq_pollitem_t pi[MAX_POLL_ITEMS];
    for (;;) {
        int64_t now = clock_now_ns();
        if (stop_now) {
            LOG_WARN("master.stop_now",
                     "second signal: stopping now; what is committed stays "
                     "committed, and re-running the same command resumes");
            *end = MASTER_HALTED;
            return FO_OK;
        }
        if (!m->stopping && halt_due(&m->halt, &m->cm.state.totals,
                                     m->fi.fail_run, m->fi.fail_run_status,
                                     m->halt_reason, sizeof m->halt_reason)) {
            m->stopping = 1;
            m->stop_deadline_ns = now + m->cfg->drain_timeout_ms * FO_NS_PER_MS;
            LOG_ERROR("job.halted",
                      "%s: no new calls; stopping once the %" PRId64
                      " in flight end. Fix the cause, then re-run the same "
                      "command to resume (--redrive to retry the failed "
                      "items)",
                      m->halt_reason, budget_permits_in_use(m->bud));
        }
        if (stop_signal && !m->stopping) {
            m->stopping = 1;
            m->stop_deadline_ns = now + m->cfg->drain_timeout_ms * FO_NS_PER_MS;
            LOG_INFO("master.stopping",
                     "signal %d: no new calls; waiting up to %" PRId64
                     " ms for %" PRId64 " calls in flight",
                     (int)stop_signal, m->cfg->drain_timeout_ms,
                     budget_permits_in_use(m->bud));
        }
        if (!m->stopping) {
            if (intake_read(&m->in, window(m), now, err, errlen))
                return fail(FO_EIO, "source.read_failed", err);
            if (m->cancel.asked)
                cancel_step(&m->cancel, m->bud, &m->bt, &m->dp, &m->cm, now);
            else
                dispatch_run(&m->dp, now);
            /* Offsets are relative to the moment of sending: a stale "now"
             * would shift every token of this grant later. */
            budget_grant(m->bud, clock_now_ns(), send_grant, m);
        }
        if (commit_due(&m->cm, &m->bt, now, m->stopping)) {
            fo_err rc =
                commit_flush(&m->cm, &m->bt, m->in.eof, now, err, errlen);
            if (rc)
                return fail(rc,
                            rc == FO_ESTORE ? "store.commit_failed"
                                            : "results.write_failed",
                            err);
        }
        if (m->in.eof && batches_empty(&m->bt) && m->cm.len == 0) {
            /* Empty input, or resumed with nothing left. */
            if (commit_finish(&m->cm, err, errlen))
                return fail(FO_ESTORE, "store.commit_failed", err);
            *end = MASTER_FINISHED;
            return FO_OK;
        }
        if (now >= m->next_tick_ns) {
            tick(m, now);
            if (workers_unusable(m, err, errlen))
                return fail(FO_EUSAGE, "workers.unusable", err);
            warn_no_worker(m, now);
            if (m->cm.nforget && !m->cm.len) {
                fo_err rc =
                    commit_flush(&m->cm, &m->bt, m->in.eof, now, err, errlen);
                if (rc)
                    return fail(rc, "store.commit_failed", err);
            }
            observe_progress(&m->obs, now, 0);
            m->next_tick_ns = now + TICK_NS;
        }
        if (stop_done(m, now)) {
            *end = MASTER_STOPPED;
            return FO_OK;
        }
        long timeout = poll_timeout(m, now);
        int http_first;
        int n = poll_items(m, pi, &http_first);
        if (zmq_poll(pi, n, timeout) < 0 && errno != EINTR) {
            snprintf(err, errlen, "zmq_poll: %s", zmq_strerror(errno));
            return fail(FO_EIO, "master.poll_failed", err);
        }
        now = clock_now_ns();
        if (reload_signal) {
            reload_signal = 0;
            if (m->cv.zap)
                curve_reload(&m->cv);
        }
        curve_handle(&m->cv);
        if (m->http)
            httpd_dispatch(m->http, pi + http_first, (size_t)(n - http_first),
                           now);
        control_recv(&m->cs, now);
        intake_tick(&m->in, now);
    }
}

/* ---- setup ----------------------------------------------------------- */

static int endpoint_port(void *sock, char *ep, size_t cap)
{
    size_t len = cap;
    if (zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &len) != 0)
        return -1;
    const char *colon = strrchr(ep, ':');
    int64_t port;
    if (!colon || util_parse_i64(colon + 1, 1, 65535, &port) < 0)
        return -1;
    return (int)port;
}

static void *make_socket(master *m, int type, int64_t maxmsg)
{
    void *s = zmq_socket(m->zctx, type);
    int linger = 0, hb = 1000, hbt = 3000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_HEARTBEAT_IVL, &hb, sizeof hb);
    zmq_setsockopt(s, ZMQ_HEARTBEAT_TIMEOUT, &hbt, sizeof hbt);
    if (maxmsg > 0)
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    return s;
}

static fo_err bind_sockets(master *m, int64_t port, char *err, size_t errlen)
{
    /* Every message of every type travels here: the largest a worker may
     * send is a RESULT with this job's largest response and line; the
     * decoder caps each type by what it can need. */
    size_t cap =
        PROTO_RESULT_BYTES(m->cfg->max_response_bytes, m->cfg->max_line_bytes);
    if (cap < PROTO_MAX_CONTROL_BYTES)
        cap = PROTO_MAX_CONTROL_BYTES;
    m->ctl = make_socket(m, ZMQ_ROUTER, (int64_t)cap);
    /* Credit bounds the WORK queued per worker; the rest is control. */
    int hwm = 1000000, handover = 1;
    zmq_setsockopt(m->ctl, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(m->ctl, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(m->ctl, ZMQ_ROUTER_HANDOVER, &handover, sizeof handover);
    if (m->cv.zap)
        curve_serve(&m->cv, m->ctl);
    char ep[300];
    if (port == 0)
        snprintf(ep, sizeof ep, "tcp://%s:*", m->host);
    else
        snprintf(ep, sizeof ep, "tcp://%s:%" PRId64, m->host, port);
    if (zmq_bind(m->ctl, ep) != 0) {
        snprintf(err, errlen, "--bind: cannot listen on %s: %s", ep,
                 zmq_strerror(errno));
        return FO_EUSAGE;
    }
    if (endpoint_port(m->ctl, m->ctl_ep, sizeof m->ctl_ep) < 0) {
        snprintf(err, errlen, "cannot read back the endpoint of %s", ep);
        return FO_EIO;
    }
    return FO_OK;
}

static char *build_job_json(master *m)
{
    const master_config *c = m->cfg;
    json_t *o = json_object();
    json_object_set_new(o, "method", json_string(c->method));
    json_t *hs = json_array();
    int has_ct = 0;
    for (size_t i = 0; i < c->nheaders; i++) {
        json_array_append_new(hs, json_string(c->headers[i]));
        if (strncasecmp(c->headers[i], "content-type:", 13) == 0)
            has_ct = 1;
    }
    if ((m->in.body_t || m->in.body_whole_item) && !has_ct)
        json_array_append_new(hs, json_string("Content-Type: "
                                              "application/json"));
    json_object_set_new(o, "headers", hs);
    json_object_set_new(o, "timeout_ms", json_integer(c->timeout_ms));
    json_object_set_new(o, "connect_timeout_ms",
                        json_integer(c->connect_timeout_ms));
    json_object_set_new(o, "max_attempts", json_integer(c->max_attempts));
    json_object_set_new(o, "max_throttled", json_integer(c->max_throttled));
    json_object_set_new(o, "backoff_base_ms", json_integer(c->backoff_base_ms));
    json_object_set_new(o, "backoff_max_ms", json_integer(c->backoff_max_ms));
    json_object_set_new(o, "max_response_bytes",
                        json_integer(c->max_response_bytes));
    json_object_set_new(o, "heartbeat_ms", json_integer(c->heartbeat_ms));
    json_object_set_new(o, "lease_ms", json_integer(c->lease_ms));
    json_object_set_new(o, "rate_limited", json_integer(c->nrates > 0));
    json_object_set_new(
        o, "token_slack_ms",
        json_integer(c->rate_margin_ms / 2 > 0 ? c->rate_margin_ms / 2 : 1));
    /* Response settings: the worker applies them (worker/transform.h). */
    if (c->nkeep) {
        json_t *ka = json_array();
        for (size_t i = 0; i < c->nkeep; i++)
            json_array_append_new(ka, json_string(c->keep[i]));
        json_object_set_new(o, "keep", ka);
    }
    if (c->drop_response)
        json_object_set_new(o, "drop_response", json_integer(1));
    if (c->ok_when) {
        json_object_set_new(o, "ok_when", json_string(c->ok_when));
        json_object_set_new(o, "ok_when_retry", json_integer(c->ok_when_retry));
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* Limits and max-in-flight changed at run time by fanout-ctl outlive a
 * restart. */
static fo_err apply_limits(master *m, char *err, size_t errlen)
{
    gcra_rate rates[GCRA_MAX_LIMITS];
    size_t nrates = m->cfg->nrates;
    memcpy(rates, m->cfg->rates, sizeof rates);
    char *stored = store_get_setting(m->st, "rate");
    if (stored) {
        nrates = ratectl_parse_list(stored, rates, GCRA_MAX_LIMITS);
        LOG_INFO("ctl.rate",
                 "using the rate set by fanout-ctl (%s), not --rate", stored);
        free(stored);
    }
    if (ratectl_set_limits(&m->rc, rates, nrates, 0, err, errlen))
        return FO_EUSAGE;
    stored = store_get_setting(m->st, "max_in_flight");
    if (stored) {
        int64_t v;
        if (util_parse_i64(stored, 0, 1000000, &v) == 0) {
            budget_set_max_in_flight(m->bud, v);
            LOG_INFO("ctl.max_in_flight",
                     "using max-in-flight %s set by fanout-ctl, not "
                     "--max-in-flight",
                     stored);
        }
        free(stored);
    }
    return FO_OK;
}

/* A file --input opens: checked before --out is created, so that a typo
 * leaves no --out behind. (It is opened again at the cursor later.) */
static fo_err check_input(const char *input, char *err, size_t errlen)
{
    if (!strcmp(input, "-") || queue_is_url(input))
        return FO_OK;
    int fd = open(input, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "--input %s: %s", input, strerror(errno));
        return FO_EUSAGE;
    }
    struct stat sb;
    int dir = fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode);
    close(fd);
    if (dir) {
        snprintf(err, errlen, "--input %s is a directory, not a JSONL file",
                 input);
        return FO_EUSAGE;
    }
    return FO_OK;
}

/* --out exists (0700: it holds the items' results), is writable and ours
 * alone (the lock); the store opens for this job. */
static fo_err open_out(master *m, char *err, size_t errlen)
{
    const master_config *cfg = m->cfg;
    fo_err lrc;
    if ((lrc = check_input(cfg->input, err, errlen)))
        return lrc;
    if (mkdir(cfg->out, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "--out %s: %s", cfg->out, strerror(errno));
        return FO_EUSAGE;
    }
    if (access(cfg->out, W_OK) != 0) {
        snprintf(err, errlen, "--out %s is not writable: %s", cfg->out,
                 strerror(errno));
        return FO_EUSAGE;
    }
    if ((lrc = outlock_acquire(&m->lock, cfg->out, err, errlen)))
        return lrc;
    char *identity = intake_identity(&m->in.cfg);
    char hex[17], e[900];
    util_hash_hex(identity, strlen(identity), 0, hex);
    uint64_t idem_seed = strtoull(hex, NULL, 16);
    fo_err rc = store_open(cfg->out, identity, &m->st, e, sizeof e);
    free(identity);
    if (rc) {
        snprintf(err, errlen, "--out %s: %s%s", cfg->out, e,
                 rc == FO_EMISMATCH ? "; use another --out, or delete this "
                                      "one to start over"
                                    : "");
        return rc;
    }
    batches_init(&m->bt, idem_seed, 0);
    commit_init(&m->cm, m->st, cfg->out, m->run_start_ns);
    commit_set_batches(&m->cm, cfg->batches);
    return FO_OK;
}

/* Serves /metrics and /status on --metrics; url gets where. */
static fo_err start_http(master *m, char *url, size_t cap, char *err,
                         size_t errlen)
{
    const char *addr = m->cfg->metrics;
    char e[600];
    m->http = httpd_new(addr, observe_http, &m->obs, e, sizeof e);
    if (!m->http) {
        snprintf(err, errlen, "--metrics: %s", e);
        return FO_EUSAGE;
    }
    /* Where a scraper on this host reaches it. */
    const char *mc = strrchr(addr, ':');
    char mhost[256];
    snprintf(mhost, sizeof mhost, "%.*s", (int)(mc - addr), addr);
    if (!mhost[0] || !strcmp(mhost, "0.0.0.0") || !strcmp(mhost, "*"))
        snprintf(mhost, sizeof mhost, "127.0.0.1");
    snprintf(url, cap, "http://%s:%d", mhost, httpd_port(m->http));
    LOG_INFO("metrics.listening", "serving %s/metrics and %s/status", url, url);
    return FO_OK;
}

static fo_err write_ready(master *m, const char *metrics_url, char *err,
                          size_t errlen)
{
    char ready[1600];
    int n = snprintf(ready, sizeof ready,
                     "{\"control\":\"%s\",\"metrics\":\"%s\",\"pid\":%d,"
                     "\"epoch\":%" PRIu64 "}\n",
                     m->ctl_ep, metrics_url, (int)getpid(), store_epoch(m->st));
    if (observe_write_file_atomic(m->cfg->ready_file, ready, (size_t)n)) {
        snprintf(err, errlen, "--ready-file %s: %s", m->cfg->ready_file,
                 strerror(errno));
        return FO_EUSAGE;
    }
    return FO_OK;
}

static fo_err spawn_workers(master *m, char *err, size_t errlen)
{
    char ep[320];
    const char *whost = m->host;
    if (!strcmp(whost, "*") || !strcmp(whost, "0.0.0.0"))
        whost = "127.0.0.1";
    const char *cp = strrchr(m->ctl_ep, ':');
    snprintf(ep, sizeof ep, "tcp://%s:%s", whost, cp + 1);
    /* Under Curve, our own workers get a key pair made for this run and
     * admitted for it, kept in --out (0700). */
    char wkey[4200] = "", mpub[4200] = "";
    if (m->cv.zap) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/.spawned-keys", m->cfg->out);
        if (curve_spawn_keys(&m->cv, dir, wkey, mpub, sizeof wkey, err, errlen))
            return FO_EIO;
    }
    spawn_cfg sc = {.endpoint = ep,
                    .curve_secret = wkey[0] ? wkey : NULL,
                    .curve_server_key = mpub[0] ? mpub : NULL,
                    .concurrency = m->cfg->worker_concurrency,
                    .log_level = m->cfg->log_level,
                    .log_format = m->cfg->log_format,
                    .json_log = !strcmp(m->cfg->log_format, "json"),
                    .headers = m->cfg->headers,
                    .nheaders = m->cfg->nheaders};
    if (spawn_start(&m->spawned, (size_t)m->cfg->spawn_workers, &sc, err,
                    errlen) < 0)
        return FO_EIO;
    return FO_OK;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Wires the modules to each other once every piece exists. */
static void wire(master *m)
{
    fanin_init(&m->fi, &m->bt, &m->cm, &m->orph, &m->rc, &m->dp, m->in.queue);
    char *uc = store_get_setting(m->st, "unrecorded_calls");
    if (uc) {
        m->fi.unrecorded_calls_before = strtoull(uc, NULL, 10);
        free(uc);
    }
    m->cc = (ctlcmd){&m->obs, &m->rc,           m->bud,     m->st,
                     &m->snd, &m->cancel.asked, m->in.queue};
    control_init(&m->cs, m->ctl, m->bud, &m->snd, &m->rc, &m->bt, &m->dp,
                 &m->fi, m->job_json, m->cfg->lease_ms,
                 (uint32_t)m->cfg->max_worker_concurrency, ctlcmd_handle,
                 &m->cc, &m->n_bad_frames);
    m->obs = (observe){.out = m->cfg->out,
                       .st = m->st,
                       .bt = &m->bt,
                       .cm = &m->cm,
                       .in = &m->in,
                       .fi = &m->fi,
                       .orph = &m->orph,
                       .rc = &m->rc,
                       .bud = m->bud,
                       .ctl = &m->cs,
                       .n_denied = &m->cv.n_denied,
                       .pmode = m->obs.pmode,
                       .token = m->cfg->dashboard_token,
                       .textfile = m->cfg->metrics_textfile,
                       .halted = m->halt_reason,
                       .dp = &m->dp};
}

/* A complete job's input must not have grown unseen: stdin is read and
 * refused when it differs from what the job ran (intake_open checks it);
 * a file with items past the end the job reached gets a warning. */
static fo_err check_finished_input(master *m, char *err, size_t errlen)
{
    const master_config *cfg = m->cfg;
    if (queue_is_url(cfg->input))
        return FO_OK;
    fo_err rc = intake_open(&m->in, m->st, &m->cm.state, NULL, &m->bt, &m->cm,
                            &m->fi, err, errlen);
    if (rc || !strcmp(cfg->input, "-"))
        return rc;
    if (source_count_rest(m->in.src) > 0)
        LOG_WARN("source.grown",
                 "--input %s has items after line %" PRId64
                 ", where this job ended; they are not run (this --out "
                 "holds a complete job: use another --out for them)",
                 cfg->input, m->cm.state.cursor.line_no - 1);
    return FO_OK;
}

static fo_err open_all(master *m, char *err, size_t errlen)
{
    const master_config *cfg = m->cfg;
    fo_err rc;
    if (progress_parse(cfg->progress, &m->obs.pmode) < 0) {
        snprintf(err, errlen,
                 "--progress: '%s' is not one of auto, tty, plain, off",
                 cfg->progress);
        return FO_EUSAGE;
    }
    intake_cfg icfg = {.input = cfg->input,
                       .url = cfg->url,
                       .body = cfg->body,
                       .method = cfg->method,
                       .key = cfg->key,
                       .rate_key = cfg->rate_key,
                       .batch_size = cfg->batch_size,
                       .max_line_bytes = cfg->max_line_bytes,
                       .follow = cfg->follow,
                       .idle_grace_ms = cfg->idle_grace_ms,
                       .max_window_bytes = cfg->max_window_bytes};
    if ((rc = intake_init(&m->in, &icfg, err, errlen)))
        return rc;
    if ((rc = open_out(m, err, errlen)))
        return rc;
    m->bud = budget_new(gcra_new(), cfg->max_in_flight, GRANT_HORIZON_NS);
    budget_set_clock_wait(m->bud, 1000 * FO_NS_PER_MS);
    ratectl_init(&m->rc, m->bud, cfg->burst, cfg->rate_margin_ms, cfg->adaptive,
                 m->run_start_ns);
    if ((rc = apply_limits(m, err, errlen)))
        return rc;

    m->cc = (ctlcmd){.bud = m->bud, .st = m->st};
    ctlcmd_restore(&m->cc);
    int is_queue = queue_is_url(cfg->input);
    if ((rc = commit_open_results(
             &m->cm, is_queue, cfg->redrive,
             (size_t)cfg->max_response_bytes * 8 + (1 << 20), err, errlen)))
        return rc;
    /* A queue's job is never over: a new run reads what came since. */
    if (m->cm.state.finished && is_queue)
        m->cm.state.finished = 0;
    wire(m);
    if (m->cm.state.finished) {
        m->already_done = 1;
        return check_finished_input(m, err, errlen);
    }
    m->zctx = zmq_ctx_new();
    if ((rc = intake_open(&m->in, m->st, &m->cm.state, m->zctx, &m->bt, &m->cm,
                          &m->fi, err, errlen)))
        return rc;
    commit_set_source(&m->cm, m->in.src, m->in.queue);
    m->fi.queue = m->in.queue;

    const char *hp = cfg->bind + 6;
    const char *colon = strrchr(hp, ':');
    snprintf(m->host, sizeof m->host, "%.*s", (int)(colon - hp), hp);
    if (!strcmp(m->host, "localhost"))
        snprintf(m->host, sizeof m->host, "127.0.0.1");
    int64_t port = 0;
    util_parse_i64(colon + 1, 0, 65533, &port);
    m->cv.workers_may_be_none = cfg->spawn_workers > 0;
    if (cfg->curve_secret &&
        (rc = curve_start(&m->cv, m->zctx, cfg->curve_secret, cfg->curve_allow,
                          cfg->ctl_allow, err, errlen)))
        return rc;
    if ((rc = bind_sockets(m, port, err, errlen)))
        return rc;
    sender_init(&m->snd, m->ctl, store_epoch(m->st));
    dispatch_init(&m->dp, &m->bt, m->bud, &m->snd, cfg->lease_ms,
                  cfg->heartbeat_ms, m->run_start_ns);
    m->dp.window_bytes = cfg->max_window_bytes;
    if (cfg->rate_key)
        dispatch_set_keyed(&m->dp, cfg->krates, cfg->nkrates,
                           cfg->rate_margin_ms * FO_NS_PER_MS,
                           cfg->key_max_in_flight, &m->rc, GRANT_HORIZON_NS);
    keystat_restore(&m->dp, m->st, cfg->rate_margin_ms * FO_NS_PER_MS);
    m->job_json = build_job_json(m);
    wire(m);
    char metrics_url[300] = "";
    if (cfg->metrics &&
        (rc = start_http(m, metrics_url, sizeof metrics_url, err, errlen)))
        return rc;
    if (cfg->ready_file && (rc = write_ready(m, metrics_url, err, errlen)))
        return rc;
    if (store_epoch(m->st) > 1) {
        /* An earlier life may have given items out: their holders may
         * claim them, and deliver results, for a while (dispatch.h). */
        int64_t now = clock_now_ns(), adopt = cfg->lease_ms * FO_NS_PER_MS;
        if (adopt < ADOPT_MIN_NS)
            adopt = ADOPT_MIN_NS;
        int resumed = m->cm.state.totals.items > 0 || m->in.nprev > 0;
        dispatch_set_resume(&m->dp, resumed ? now + RESUME_GRACE_NS : 0,
                            now + adopt);
    }
    char resume[64] = "";
    if (!m->in.queue)
        snprintf(resume, sizeof resume, " at line %" PRId64,
                 m->cm.state.cursor.line_no);
    LOG_INFO("master.started",
             "epoch %" PRIu64 ", listening on %s; resuming%s (%" PRId64
             " items already recorded)",
             store_epoch(m->st), m->ctl_ep, resume, m->cm.state.totals.items);
    install_signals();
    if (cfg->spawn_workers > 0 && (rc = spawn_workers(m, err, errlen)))
        return rc;
    return FO_OK;
}

fo_err master_open(const master_config *cfg, master **out, char *err,
                   size_t errlen)
{
    master *m = xcalloc(1, sizeof *m);
    m->cfg = cfg;
    m->run_start_ns = clock_now_ns();
    m->halt =
        (halt_cfg){cfg->halt_after_n, cfg->halt_after_pct, cfg->halt_on_repeat};
    m->cm.results_fd = -1; /* commit_fini before commit_init closes none */
    outlock_init(&m->lock);
    orphans_init(&m->orph);
    fo_err rc = open_all(m, err, errlen);
    if (rc) {
        master_close(&m);
        *out = NULL;
        return rc;
    }
    *out = m;
    return FO_OK;
}

int master_some_failed(const master *m)
{
    return observe_some_failed(&m->obs);
}

/* The closing summary: observe's lines, or with --log-format json one
 * event, so that every line on stderr is JSON. */
static void print_summary(master *m, int finished)
{
    if (strcmp(m->cfg->log_format, "json") != 0) {
        observe_print_summary(&m->obs, finished);
        return;
    }
    const store_totals *t = &m->cm.state.totals;
    LOG_INFO("job.summary",
             "%s: %" PRId64 " items (%" PRId64 " ok, %" PRId64
             " failed, %" PRId64 " invalid), %" PRId64 " calls, %" PRId64
             " throttled; results %s/results.jsonl, summary %s/summary.json%s",
             finished ? "done" : "stopped", t->items, t->ok, t->failed,
             t->invalid, t->attempts, t->throttled, m->cfg->out, m->cfg->out,
             finished ? "" : "; re-run the same command to resume");
}

fo_err master_run(master *m, master_end *end, char *err, size_t errlen)
{
    *end = MASTER_FINISHED;
    if (m->already_done) {
        LOG_INFO("job.finished",
                 "the job in %s is already complete; nothing to do",
                 m->cfg->out);
        print_summary(m, 1);
        return FO_OK;
    }
    fo_err rc = run_loop(m, end, err, errlen);
    int64_t now = clock_now_ns();
    char e2[512];
    if (m->cm.len && !rc &&
        commit_flush(&m->cm, &m->bt, m->in.eof, now, e2, sizeof e2))
        LOG_ERROR("store.commit_failed", "%s", e2);
    if (m->orph.n_used)
        LOG_INFO("result.recovered",
                 "%" PRIu64 " calls in flight when an earlier run stopped "
                 "were recorded from their results, not made again",
                 m->orph.n_used);
    if (m->in.queue && !rc && *end != MASTER_HALTED) {
        /* Wait for the last acknowledgements, and forget them (not when
         * told to stop at once: a message acknowledged late comes back,
         * is found recorded, and is acknowledged then). */
        source_drain(m->in.src, 10000);
        intake_tick(&m->in, now);
        if (m->cm.nforget &&
            commit_flush(&m->cm, &m->bt, m->in.eof, now, e2, sizeof e2))
            LOG_ERROR("store.commit_failed", "%s", e2);
    }
    observe_progress(&m->obs, now, 1);
    progress_finish(m->obs.pmode);
    int finished = !rc && *end == MASTER_FINISHED;
    if (finished) {
        proto_msg done = {.type = PROTO_DONE};
        sender_broadcast(&m->snd, m->bud, &done);
    }
    if (m->fi.unrecorded_calls) {
        char v[32];
        snprintf(v, sizeof v, "%" PRIu64,
                 m->fi.unrecorded_calls_before + m->fi.unrecorded_calls);
        if (store_set_setting(m->st, "unrecorded_calls", v))
            LOG_WARN("store.setting_failed",
                     "could not store the count of unrecorded calls");
    }
    observe_write_summary(&m->obs, finished);
    if (!rc)
        print_summary(m, finished);
    return rc;
}

void master_close(master **mp)
{
    master *m = *mp;
    if (!m)
        return;
    if (m->spawned.n) /* after a second signal, workers get 1 s to go */
        spawn_stop(&m->spawned, stop_now ? 1000 : 5000);
    batches_fini(&m->bt);
    dispatch_fini(&m->dp);
    commit_fini(&m->cm);
    intake_fini(&m->in);
    orphans_fini(&m->orph);
    free(m->job_json);
    budget_destroy(&m->bud);
    store_close(&m->st);
    sender_fini(&m->snd);
    if (m->ctl)
        zmq_close(m->ctl);
    curve_fini(&m->cv);
    httpd_destroy(&m->http);
    if (m->zctx)
        zmq_ctx_term(m->zctx);
    outlock_release(&m->lock); /* last: everything in --out is closed */
    free(m);
    *mp = NULL;
}
