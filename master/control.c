/*
 * control.c - one handler per control message; see control.h.
 */
#include "fmacros.h"
#include "control.h"
#include "clock.h"
#include "curve.h"
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

void control_init(control *c, void *sock, budget *bud, sender *snd, ratectl *rc,
                  batches *bt, dispatcher *dp, fanin *fi, const char *job_json,
                  int64_t lease_ms, uint32_t max_conc, control_ctl_fn on_ctl,
                  void *ctl_ctx, uint64_t *n_bad)
{
    memset(c, 0, sizeof *c);
    c->sock = sock;
    c->bud = bud;
    c->snd = snd;
    c->rc = rc;
    c->bt = bt;
    c->dp = dp;
    c->fi = fi;
    c->max_conc = max_conc ? max_conc : 1;
    c->job_json = job_json;
    c->lease_ns = lease_ms * FO_NS_PER_MS;
    c->on_ctl = on_ctl;
    c->ctl_ctx = ctl_ctx;
    c->n_bad = n_bad;
}

static void tell_pause(control *c, int64_t ms)
{
    proto_msg p = {.type = PROTO_PAUSE};
    p.u.pause.pause_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    sender_broadcast(c->snd, c->bud, &p);
}

static void on_ctl(control *c, const void *rid, size_t rid_len,
                   const proto_msg *msg, int64_t now)
{
    char *out = c->on_ctl(c->ctl_ctx, msg->u.ctl.json, now);
    proto_msg reply = {.type = PROTO_CTL_REPLY};
    reply.u.ctl.json = out;
    sender_to(c->snd, rid, rid_len, &reply);
    free(out);
}

/* HELLOs a worker queued while it could not reach us arrive together: the
 * first one joins it, the others rejoin. */
static void on_hello(control *c, budget_worker *w, const void *rid,
                     size_t rid_len, const proto_msg *msg, int64_t now)
{
    int known = w != NULL;
    uint32_t old_gen = known ? w->gen : 0;
    w = budget_join(c->bud, rid, rid_len, now);
    if (!w) {
        LOG_WARN("worker.refused", "worker %s refused: %d workers already",
                 msg->u.hello.worker_id, BUDGET_MAX_WORKERS);
        return;
    }
    snprintf(w->name, sizeof w->name, "%s", msg->u.hello.worker_id);
    snprintf(w->host, sizeof w->host, "%s", msg->u.hello.host);
    w->pid = msg->u.hello.pid;
    w->concurrency = msg->u.hello.concurrency ? msg->u.hello.concurrency : 1;
    if (w->concurrency > c->max_conc) {
        LOG_WARN("worker.concurrency_capped",
                 "worker %s claims concurrency %u; counting %u "
                 "(--max-worker-concurrency)",
                 w->name, w->concurrency, c->max_conc);
        w->concurrency = c->max_conc;
    }
    if (known)
        dispatch_rejoined(c->dp, w, old_gen);
    proto_msg job = {.type = PROTO_JOB};
    job.u.job.job_json = (char *)c->job_json;
    sender_to(c->snd, w->rid, w->rid_len, &job);
    /* Starts the clock exchange at once (the worker answers this first
     * heartbeat right away): its grants wait for its round trip. */
    proto_msg hb = {.type = PROTO_HEARTBEAT};
    hb.u.heartbeat.sent_us = (uint64_t)clock_wall_us();
    sender_to(c->snd, w->rid, w->rid_len, &hb);
    LOG_AT(known ? LOG_LVL_DEBUG : LOG_LVL_INFO,
           known ? "worker.rejoined" : "worker.joined",
           "worker %s (host %s, pid %" PRId64 ", concurrency %u)", w->name,
           w->host, w->pid, w->concurrency);
}

static void on_heartbeat(control *c, budget_worker *w, const proto_msg *msg,
                         int64_t now)
{
    w->inflight = msg->u.heartbeat.inflight;
    budget_clock_sample(w, msg->u.heartbeat.sent_us, msg->u.heartbeat.echo_us,
                        msg->u.heartbeat.echo_held_us, clock_wall_us());
    w->held = msg->u.heartbeat.nheld;
    for (uint32_t i = 0; i < msg->u.heartbeat.nheld; i++) {
        mitem *it = batches_item(c->bt, msg->u.heartbeat.held[i]);
        if (it && (it->state == MI_PENDING || it->state == MI_SENT) &&
            dispatch_check(c->dp, w, it, 1, now, "HEARTBEAT claim"))
            dispatch_listed(c->dp, w, it, now);
    }
}

static void on_throttled(control *c, budget_worker *w, const proto_msg *msg,
                         int64_t now)
{
    int64_t ra = msg->u.throttled.retry_after_ms;
    if (ratectl_on_throttled(c->rc, now, ra, msg->u.throttled.http_status,
                             w->name, (int32_t)(w - budget_at(c->bud, 0))))
        tell_pause(c, (budget_paused_until(c->bud) - now) / FO_NS_PER_MS);
}

static void on_rateinfo(control *c, budget_worker *w, const proto_msg *msg,
                        int64_t now)
{
    if (ratectl_on_rateinfo(c->rc, now, msg->u.rateinfo.limit,
                            msg->u.rateinfo.window_ms,
                            msg->u.rateinfo.remaining, msg->u.rateinfo.reset_ms,
                            w->name, (int32_t)(w - budget_at(c->bud, 0))))
        tell_pause(c, (budget_paused_until(c->bud) - now) / FO_NS_PER_MS);
}

static void on_bye(control *c, budget_worker *w, const proto_msg *msg)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < msg->u.bye.nheld; i++) {
        mitem *it = batches_item(c->bt, msg->u.bye.held[i]);
        if (it && it->state == MI_SENT &&
            it->holder == (int32_t)(w - budget_at(c->bud, 0)) &&
            it->holder_gen == w->gen)
            if (dispatch_requeue(c->dp, msg->u.bye.held[i])) {
                /* Handed back: it no longer has it, whatever it says. */
                it->prev_holder = -1;
                n++;
            }
    }
    if (!w->leaving)
        LOG_INFO("worker.leaving", "worker %s leaves; %u items handed back",
                 w->name, n);
    w->leaving = 1;
}

/* One message from a registered worker. */
static void on_worker_msg(control *c, budget_worker *w, proto_msg *msg,
                          int64_t now)
{
    w->last_seen_ns = now;
    switch (msg->type) {
    case PROTO_HEARTBEAT:
        on_heartbeat(c, w, msg, now);
        break;
    case PROTO_TOKEN_REQ:
        budget_request(c->bud, w, msg->u.token_req.want, msg->u.token_req.seen,
                       msg->u.token_req.released);
        break;
    case PROTO_THROTTLED:
        on_throttled(c, w, msg, now);
        break;
    case PROTO_RATEINFO:
        on_rateinfo(c, w, msg, now);
        break;
    case PROTO_BYE:
        on_bye(c, w, msg);
        break;
    case PROTO_RESULT:
        fanin_result(c->fi, w, (proto_msg *)msg, now);
        break;
    default:
        ++*c->n_bad;
        LOG_WARN("proto.unexpected", "unexpected %s from worker %s",
                 proto_type_name(msg->type), w->name);
        break;
    }
}

/* 1 when a peer of this role may send this message; else counts, logs and
 * answers a CTL with the reason. */
static int allowed(control *c, int role, const void *rid, size_t rid_len,
                   const proto_msg *msg)
{
    int is_ctl = msg->type == PROTO_CTL;
    if (curve_role_may_send(role, msg->type))
        return 1;
    c->n_forbidden++;
    if (c->n_forbidden <= 10 || c->n_forbidden % 1000 == 0)
        LOG_WARN("peer.forbidden",
                 "refused %s from a %s key (%" PRIu64 " so far): %s",
                 proto_type_name(msg->type), curve_role_name(role),
                 c->n_forbidden,
                 is_ctl ? "commands need an operator key (--ctl-allow)"
                        : "operator keys may only send commands");
    if (is_ctl) {
        proto_msg reply = {.type = PROTO_CTL_REPLY};
        reply.u.ctl.json =
            (char *)"{\"ok\":false,\"error\":\"forbidden: this key "
                    "is a worker key; commands need a key in the "
                    "master's --ctl-allow\"}";
        sender_to(c->snd, rid, rid_len, &reply);
    }
    return 0;
}

/* Receives one message: the routing id frame and one body frame. Returns
 * 0 when nothing was waiting, 1 with the body (the caller closes both),
 * or 2 for a multipart body (its extra frames drained, body closed). */
static int recv_one(control *c, zmq_msg_t *rid, zmq_msg_t *body, int *role)
{
    zmq_msg_init(rid);
    if (zmq_msg_recv(rid, c->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(rid);
        return 0;
    }
    zmq_msg_init(body);
    int got =
        zmq_msg_more(rid) ? zmq_msg_recv(body, c->sock, ZMQ_DONTWAIT) >= 0 : 0;
    /* Drain any further frames of a malformed multipart message. */
    while (got && zmq_msg_more(body)) {
        zmq_msg_t extra;
        zmq_msg_init(&extra);
        zmq_msg_recv(&extra, c->sock, ZMQ_DONTWAIT);
        int again = zmq_msg_more(&extra);
        zmq_msg_close(&extra);
        got = 2;
        if (!again)
            break;
    }
    *role = curve_role_of(got ? zmq_msg_gets(body, "User-Id") : NULL);
    if (got != 1) {
        zmq_msg_close(body);
        return 2;
    }
    return 1;
}

static void count_bad(control *c, fo_err rc, const char *err)
{
    uint64_t bad = ++*c->n_bad;
    if (bad <= 10 || bad % 1000 == 0)
        LOG_WARN(rc == FO_EVERSION ? "proto.bad_version" : "proto.bad_frame",
                 "dropped a control frame (%" PRIu64 " so far): %s", bad, err);
}

/* One peer's message, alone or from a MULTI envelope. */
typedef struct peer_frame {
    control *c;
    const void *id; /* routing id */
    size_t idlen;
    int role; /* from the ZAP handler */
    int64_t now;
    int reset_sent; /* one RESET per envelope is enough */
    int *frames;    /* frames handled this turn */
} peer_frame;

static void handle_frame(void *ctx, const void *data, size_t len)
{
    peer_frame *f = ctx;
    control *c = f->c;
    ++*f->frames;
    proto_msg msg;
    char err[256];
    fo_err rc = proto_decode(data, len, &msg, err, sizeof err);
    if (rc) {
        count_bad(c, rc, err);
        return;
    }
    budget_worker *w = budget_find(c->bud, f->id, f->idlen);
    if (!allowed(c, f->role, f->id, f->idlen, &msg)) {
        /* refused and counted */
    } else if (msg.type == PROTO_CTL) {
        on_ctl(c, f->id, f->idlen, &msg, f->now);
    } else if (msg.type == PROTO_HELLO) {
        on_hello(c, w, f->id, f->idlen, &msg, f->now);
    } else if (!w) {
        if (!f->reset_sent) {
            proto_msg reset = {.type = PROTO_RESET};
            sender_to(c->snd, f->id, f->idlen, &reset);
            c->n_reset++;
            f->reset_sent = 1;
        }
    } else {
        on_worker_msg(c, w, &msg, f->now);
    }
    proto_msg_fini(&msg);
}

void control_recv(control *c, int64_t now)
{
    /* A turn handles a few thousand messages, so the rest of the loop
     * (dispatch, grants, commits) runs in between. */
    int frames = 0;
    while (frames < 5000) {
        zmq_msg_t rid, body;
        int role;
        int got = recv_one(c, &rid, &body, &role);
        if (!got)
            return;
        if (got == 2) {
            count_bad(c, FO_EPROTO, "multipart frame");
            zmq_msg_close(&rid);
            frames++;
            continue;
        }
        peer_frame f = {
            c, zmq_msg_data(&rid), zmq_msg_size(&rid), role, now, 0, &frames};
        const void *data = zmq_msg_data(&body);
        size_t len = zmq_msg_size(&body);
        if (proto_frame_type(data, len) == PROTO_MULTI) {
            char err[256];
            if (proto_multi_each(data, len, handle_frame, &f, err, sizeof err) <
                0) {
                count_bad(c, FO_EPROTO, err);
                frames++;
            }
        } else {
            handle_frame(&f, data, len);
        }
        zmq_msg_close(&body);
        zmq_msg_close(&rid);
    }
}

static void expire_worker(control *c, budget_worker *w, const char *why)
{
    size_t n = dispatch_requeue_worker(c->dp, w);
    LOG_WARN("worker.lost",
             "worker %s (host %s, pid %" PRId64 ") %s; %zu "
             "items re-dispatched, %" PRId64 " permits returned",
             w->name, w->host, w->pid, why, n, w->permits);
    budget_remove(c->bud, w);
}

void control_expire(control *c, int64_t now)
{
    for (size_t i = 0; i < budget_capacity(c->bud); i++) {
        budget_worker *w = budget_at(c->bud, i);
        if (w->used && now - w->last_seen_ns > c->lease_ns)
            expire_worker(c, w, w->leaving ? "left" : "went silent");
    }
}
