/*
 * wlink.h - the worker's ZeroMQ connections to its master.
 *
 * One DEALER connecting to the master's ROUTER carries every message:
 * HELLO, JOB, tokens, heartbeats, WORK and RESULT. It has a routing id of
 * its own, random per process, so a dropped and restored connection is
 * still the same worker to the master. Options: fast reconnect, ZMTP
 * heartbeats, a message size cap, a linger that lets queued results out
 * on exit, and Curve keys when given. A monitor on the socket turns
 * handshake failures into
 * log lines: a master that refuses our Curve key otherwise looks like one
 * that is simply not there; after a refusal the control socket is reopened
 * a little later, since libzmq does not try again on its own.
 *
 * The struct is visible so the worker can embed it and poll its sockets
 * (ctl, monitor; NULL when closed); only this module opens and closes
 * them. Single-threaded, like every socket (zguide ch. 2).
 */
#ifndef FANOUT_WLINK_H
#define FANOUT_WLINK_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "error.h"
#include "keys.h"
#include "proto.h"

typedef struct wlink {
    const char *master;                /* control endpoint (borrowed) */
    char master_host[256];             /* its host part */
    unsigned char rid[16];             /* our routing id */
    void *zctx;                        /* ZeroMQ context */
    void *ctl;                         /* DEALER to the master */
    void *monitor;                     /* handshake events of ctl, or NULL */
    int curve;                         /* Curve keys in use */
    keys_pair my_key;                  /* our key pair */
    char server_key[KEYS_Z85_LEN + 1]; /* the master's public key */
    int64_t next_auth_log_ns;          /* rate limit for handshake logs */
    int64_t reopen_ns;                 /* reopen the control socket, or 0 */
    fo_buf scratch;                    /* control message encode buffer */
} wlink;

/* Reads the Curve key files (both or neither may be NULL), creates the
 * context and connects the control socket to master ("tcp://HOST:PORT",
 * borrowed for the link's lifetime). Returns FO_OK, or FO_EUSAGE with err
 * naming the flag (--curve-secret, --curve-server-key or --master). Call
 * wlink_fini() either way. */
FO_WUR fo_err wlink_init(wlink *l, const char *master, const char *curve_secret,
                         const char *curve_server_key, char *err,
                         size_t errlen);
/* Closes every socket and the context; safe twice. */
void wlink_fini(wlink *l);

/* Encodes and sends a control message without blocking. A full pipe
 * means the master is gone; the message is dropped and the caller's loop
 * regenerates it later (heartbeat, hello, token request). */
void wlink_send_ctl(wlink *l, const proto_msg *m);
/* Sends an encoded RESULT without blocking: 0 when the socket took it, -1
 * when it must wait. Matches outbox_send_fn (ctx is the wlink). */
int wlink_send_result(void *ctx, const void *data, size_t len);
/* Reads handshake events, logs them (at most every 30 s) and schedules a
 * reopen after a refused key. */
void wlink_handle_monitor(wlink *l, int64_t now_ns);
/* Reopens the control socket if one is scheduled for now_ns or earlier.
 * Returns 1 when it was reopened (say HELLO again), 0 when nothing was
 * due, or -1 with err set when the endpoint is no longer usable. */
int wlink_reopen_due(wlink *l, int64_t now_ns, char *err, size_t errlen);

#endif
