/*
 * curve.c - the master's ZAP handler and key lists; see curve.h.
 */
#include "fmacros.h"
#include "curve.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static fo_err load_allow(curve *c, char *err, size_t errlen)
{
    keys_pair *pubs;
    size_t n;
    if (keys_read_dir(c->allow_dir, &pubs, &n, err, errlen))
        return FO_EUSAGE;
    free(c->allowed);
    c->allowed = xcalloc(n ? n : 1, sizeof *c->allowed);
    for (size_t i = 0; i < n; i++)
        zmq_z85_decode(c->allowed[i], pubs[i].public_key);
    c->nallowed = n;
    free(pubs);
    return FO_OK;
}

fo_err curve_start(curve *c, void *zctx, const char *secret_file,
                   const char *allow_dir, char *err, size_t errlen)
{
    char e[600];
    c->allow_dir = allow_dir;
    if (keys_read(secret_file, 1, &c->server_key, e, sizeof e)) {
        snprintf(err, errlen, "--curve-secret %s", e);
        return FO_EUSAGE;
    }
    if (load_allow(c, e, sizeof e)) {
        snprintf(err, errlen, "--curve-allow %s", e);
        return FO_EUSAGE;
    }
    c->zap = zmq_socket(zctx, ZMQ_REP);
    int linger = 0;
    zmq_setsockopt(c->zap, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(c->zap, "inproc://zeromq.zap.01") != 0) {
        snprintf(err, errlen,
                 "cannot start the Curve authentication handler: %s",
                 zmq_strerror(errno));
        return FO_EIO;
    }
    LOG_INFO("curve.enabled",
             "all sockets encrypted; %zu worker keys admitted from %s",
             c->nallowed, allow_dir);
    return FO_OK;
}

void curve_fini(curve *c)
{
    if (c->zap)
        zmq_close(c->zap);
    c->zap = NULL;
    FO_FREE(&c->allowed);
    c->nallowed = 0;
}

void curve_serve(const curve *c, void *sock)
{
    int server = 1;
    zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &server, sizeof server);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, c->server_key.secret_key,
                   KEYS_Z85_LEN + 1);
    zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "fanout", 6);
}

/* SIGHUP: read --curve-allow again, so a new worker host can join without a
 * restart. Connections already admitted stay: ZAP runs at the handshake. */
void curve_reload(curve *c)
{
    char err[600];
    size_t before = c->nallowed;
    if (load_allow(c, err, sizeof err)) {
        LOG_ERROR("curve.reload_failed",
                  "--curve-allow %s; still admitting the %zu keys from before",
                  err, before);
        return;
    }
    LOG_INFO("curve.reloaded", "%zu worker keys admitted from %s", c->nallowed,
             c->allow_dir);
}

/* Answers ZAP requests: admit a CURVE client whose key is listed. */
void curve_handle(curve *c)
{
    if (!c->zap)
        return;
    for (int turn = 0; turn < 100; turn++) {
        zmq_msg_t f[8];
        int nf = 0, more = 1;
        while (more && nf < 8) {
            zmq_msg_init(&f[nf]);
            if (zmq_msg_recv(&f[nf], c->zap, nf ? 0 : ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&f[nf]);
                if (nf == 0)
                    return;
                break;
            }
            more = zmq_msg_more(&f[nf]);
            nf++;
        }
        while (more) { /* more frames than a ZAP request has: drain */
            zmq_msg_t x;
            zmq_msg_init(&x);
            zmq_msg_recv(&x, c->zap, 0);
            more = zmq_msg_more(&x);
            zmq_msg_close(&x);
        }
        int ok = 0;
        char addr[64] = "?", keytxt[41] = "?";
        if (nf == 7 && zmq_msg_size(&f[5]) == 5 &&
            !memcmp(zmq_msg_data(&f[5]), "CURVE", 5) &&
            zmq_msg_size(&f[6]) == 32) {
            const uint8_t *key = zmq_msg_data(&f[6]);
            for (size_t i = 0; i < c->nallowed && !ok; i++)
                ok = !memcmp(c->allowed[i], key, 32);
            zmq_z85_encode(keytxt, key, 32);
            snprintf(addr, sizeof addr, "%.*s",
                     (int)(zmq_msg_size(&f[3]) < 63 ? zmq_msg_size(&f[3]) : 63),
                     (const char *)zmq_msg_data(&f[3]));
        }
        const char *rid = nf > 1 ? zmq_msg_data(&f[1]) : "";
        size_t rid_len = nf > 1 ? zmq_msg_size(&f[1]) : 0;
        zmq_send(c->zap, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(c->zap, rid, rid_len, ZMQ_SNDMORE);
        zmq_send(c->zap, ok ? "200" : "400", 3, ZMQ_SNDMORE);
        zmq_send(c->zap, ok ? "OK" : "key not admitted", ok ? 2 : 16,
                 ZMQ_SNDMORE);
        zmq_send(c->zap, "", 0, ZMQ_SNDMORE);
        zmq_send(c->zap, "", 0, 0);
        if (!ok) {
            c->n_denied++;
            if (c->n_denied <= 20 || c->n_denied % 1000 == 0)
                LOG_WARN("curve.denied",
                         "refused a connection from %s with key %s: not in "
                         "--curve-allow (%" PRIu64 " so far)",
                         addr, keytxt, c->n_denied);
        }
        for (int i = 0; i < nf; i++)
            zmq_msg_close(&f[i]);
    }
}
