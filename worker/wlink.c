/* wlink.c - the worker's sockets to its master; see wlink.h. */
#include "fmacros.h"
#include "wlink.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <zmq.h>

/* On exit, results still queued get this long to reach the master. */
#define RESULT_LINGER_MS 5000

static void *make_socket(wlink *l, int type, int linger_ms, int64_t maxmsg)
{
    void *s = zmq_socket(l->zctx, type);
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
    if (l->curve) {
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, l->server_key, KEYS_Z85_LEN + 1);
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, l->my_key.public_key,
                       KEYS_Z85_LEN + 1);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, l->my_key.secret_key,
                       KEYS_Z85_LEN + 1);
    }
    return s;
}

/* Opens the control DEALER and watches its handshakes. Returns 0 or -1
 * (errno set) when the endpoint is unusable. */
static int open_control(wlink *l)
{
    static int generation;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://fanout.monitor.%d", generation++);
    /* Everything travels here, WORK included: the largest frame is a
     * WORK for the longest line a job may allow. */
    l->ctl = make_socket(l, ZMQ_DEALER, RESULT_LINGER_MS,
                         (int64_t)PROTO_MAX_WORK_BYTES);
    /* The master bounds what it queues for us by our credit. */
    int hwm = 100000;
    zmq_setsockopt(l->ctl, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(l->ctl, ZMQ_RCVHWM, &hwm, sizeof hwm);
    /* One routing id for the process: after a dropped connection the
     * master still knows us, and the items it gave us stay ours. */
    zmq_setsockopt(l->ctl, ZMQ_ROUTING_ID, l->rid, sizeof l->rid);
    if (zmq_socket_monitor(l->ctl, ep,
                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) == 0) {
        l->monitor = zmq_socket(l->zctx, ZMQ_PAIR);
        int linger = 0;
        zmq_setsockopt(l->monitor, ZMQ_LINGER, &linger, sizeof linger);
        if (zmq_connect(l->monitor, ep) != 0) {
            zmq_close(l->monitor);
            l->monitor = NULL;
        }
    }
    return zmq_connect(l->ctl, l->master);
}

static void close_control(wlink *l)
{
    if (l->monitor) {
        zmq_socket_monitor(l->ctl, NULL, 0);
        zmq_close(l->monitor);
        l->monitor = NULL;
    }
    if (l->ctl)
        zmq_close(l->ctl);
    l->ctl = NULL;
}

fo_err wlink_init(wlink *l, const char *master, const char *curve_secret,
                  const char *curve_server_key, char *err, size_t errlen)
{
    memset(l, 0, sizeof *l);
    buf_init(&l->scratch, PROTO_MAX_CONTROL_BYTES);
    l->master = master;
    /* main.c checked the form tcp://HOST:PORT. */
    const char *hp = master + 6;
    const char *colon = strrchr(hp, ':');
    snprintf(l->master_host, sizeof l->master_host, "%.*s", (int)(colon - hp),
             hp);
    if (curve_secret) {
        keys_pair sk;
        char kerr[600];
        if (keys_read(curve_secret, 1, &l->my_key, kerr, sizeof kerr) ||
            keys_read(curve_server_key, 0, &sk, kerr, sizeof kerr)) {
            snprintf(err, errlen, "%s %s",
                     l->my_key.secret_key[0] ? "--curve-server-key"
                                             : "--curve-secret",
                     kerr);
            return FO_EUSAGE;
        }
        memcpy(l->server_key, sk.public_key, sizeof l->server_key);
        l->curve = 1;
    }
    if (getrandom(l->rid, sizeof l->rid, 0) != (ssize_t)sizeof l->rid) {
        /* Unique enough: the master tells workers apart by it. */
        uint64_t t = (uint64_t)clock_now_ns() ^ ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < sizeof l->rid; i++)
            l->rid[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)i;
    }
    l->rid[0] = 'w'; /* a routing id must not start with a zero byte */
    l->zctx = zmq_ctx_new();
    if (open_control(l) != 0) {
        snprintf(err, errlen, "--master %s: %s", master, zmq_strerror(errno));
        return FO_EUSAGE;
    }
    return FO_OK;
}

void wlink_fini(wlink *l)
{
    close_control(l);
    if (l->zctx)
        zmq_ctx_term(l->zctx);
    l->zctx = NULL;
    buf_fini(&l->scratch);
}

void wlink_send_ctl(wlink *l, const proto_msg *m)
{
    buf_reset(&l->scratch);
    if (proto_encode(m, &l->scratch) != FO_OK) {
        LOG_ERROR("proto.encode_failed", "%s too large",
                  proto_type_name(m->type));
        return;
    }
    zmq_send(l->ctl, l->scratch.data, l->scratch.len, ZMQ_DONTWAIT);
}

int wlink_send_result(void *ctx, const void *data, size_t len)
{
    wlink *l = ctx;
    return zmq_send(l->ctl, data, len, ZMQ_DONTWAIT) < 0 ? -1 : 0;
}

void wlink_handle_monitor(wlink *l, int64_t now)
{
    if (!l->monitor)
        return;
    for (;;) {
        zmq_msg_t ev, ep;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, l->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        zmq_msg_init(&ep);
        if (zmq_msg_more(&ev))
            zmq_msg_recv(&ep, l->monitor, 0);
        uint16_t event = 0;
        if (zmq_msg_size(&ev) >= 2)
            memcpy(&event, zmq_msg_data(&ev), 2);
        /* libzmq does not try again after the master refused our key; the
         * operator may admit it later (SIGHUP on the master), so start a
         * fresh connection in a while. */
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH && !l->reopen_ns)
            l->reopen_ns = now + 2 * FO_NS_PER_S;
        if (now >= l->next_auth_log_ns) {
            l->next_auth_log_ns = now + 30 * FO_NS_PER_S;
            if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
                LOG_ERROR("curve.refused",
                          "the master at %s refused our Curve key: add this "
                          "worker's .pub to the master's --curve-allow",
                          l->master);
            else
                LOG_ERROR("worker.handshake_failed",
                          "handshake with %s failed: is it a fanout master, "
                          "and do both sides agree on Curve keys "
                          "(--curve-server-key)?",
                          l->master);
        }
        zmq_msg_close(&ev);
        zmq_msg_close(&ep);
    }
}

int wlink_reopen_due(wlink *l, int64_t now, char *err, size_t errlen)
{
    if (!l->reopen_ns || now < l->reopen_ns)
        return 0;
    l->reopen_ns = 0;
    close_control(l);
    if (open_control(l) != 0) {
        snprintf(err, errlen, "--master %s: %s", l->master,
                 zmq_strerror(errno));
        return -1;
    }
    return 1;
}
