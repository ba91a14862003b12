/*
 * curve.h - CurveZMQ for the master's sockets: its key pair, the ZAP
 * handler that admits only listed keys, and SIGHUP reloads of the lists.
 *
 * A key has one role. Worker keys (--curve-allow DIR) may speak the worker
 * protocol; operator keys (--ctl-allow DIR, fanout-ctl users) may send CTL.
 * The ZAP handler admits a key from either list and sets the connection's
 * ZAP user id to "worker" or "operator"; libzmq then attaches it to every
 * message from that peer (zmq_msg_gets(msg, "User-Id")), and
 * curve_role_of() turns it back into a role for the code that decides what
 * a message may do. A key listed in both directories is a configuration
 * error, refused at startup and on reload, never resolved by a guess.
 *
 * The ZAP handler must exist before the first Curve socket binds: without
 * one, libzmq admits every client that knows the server's public key.
 */
#ifndef FANOUT_CURVE_H
#define FANOUT_CURVE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "keys.h"

/* What a peer's key may do. */
typedef enum {
    CURVE_ROLE_NONE = 0,     /* Curve is off (loopback, no keys): as before */
    CURVE_ROLE_WORKER = 1,   /* a key from --curve-allow */
    CURVE_ROLE_OPERATOR = 2, /* a key from --ctl-allow */
} curve_role;

/* The ZAP user ids of the two roles. */
#define CURVE_USER_WORKER "worker"
#define CURVE_USER_OPERATOR "operator"

/* Visible only so it can be embedded in the master. */
typedef struct curve {
    void *zap;                /* the ZAP REP socket, or NULL when off */
    keys_pair server_key;     /* our key pair */
    uint8_t (*allowed)[32];   /* admitted worker keys, binary */
    size_t nallowed;          /* their count */
    uint8_t (*operators)[32]; /* admitted operator keys, binary */
    size_t noperators;        /* their count */
    const char *allow_dir;    /* --curve-allow (borrowed) */
    const char *ctl_dir;      /* --ctl-allow (borrowed), or NULL */
    uint8_t spawned[32];      /* the key of the workers we spawn */
    int has_spawned;          /* spawned is set */
    int workers_may_be_none;  /* set before curve_start: an empty
                                 --curve-allow is fine (we spawn ours) */
    uint64_t n_denied;        /* handshakes refused */
} curve;

/* Reads the key pair and both allow lists (ctl_dir may be NULL: no
 * operator keys) and binds the ZAP handler in zctx. FO_EUSAGE (a bad key
 * file or directory, or a key in both lists) or FO_EIO, with err. */
FO_WUR fo_err curve_start(curve *c, void *zctx, const char *secret_file,
                          const char *allow_dir, const char *ctl_dir, char *err,
                          size_t errlen);
/* Keys for the workers this master spawns (--spawn-workers): makes a key
 * pair, admits its public key as a worker's (for this run, whatever the
 * allow lists say after a reload), and writes dir/worker.key (0600) and
 * our public key as dir/master.pub; their paths go to key_path and
 * server_pub (cap bytes each). FO_EIO with err when they cannot be
 * written. */
FO_WUR fo_err curve_spawn_keys(curve *c, const char *dir, char *key_path,
                               char *server_pub, size_t cap, char *err,
                               size_t errlen);
/* Closes the ZAP socket and frees the list; safe when never started. */
void curve_fini(curve *c);
/* Makes sock a Curve server in the "fanout" ZAP domain. */
void curve_serve(const curve *c, void *sock);
/* Reads both allow lists again (SIGHUP); on any error keeps the old ones. */
void curve_reload(curve *c);
/* Answers waiting ZAP requests. */
void curve_handle(curve *c);

/* The role of a message's sender from its ZAP user id (the "User-Id"
 * property of a received zmq_msg_t): CURVE_ROLE_WORKER or _OPERATOR, and
 * CURVE_ROLE_NONE for NULL or anything else, which is what a master
 * without Curve sees (every local process is trusted as before). */
int curve_role_of(const char *user_id);
/* 1 when a peer of this role may send a message of this proto type (the
 * PROTO_* numbers) to the master: a worker key everything of the worker
 * protocol but CTL, an operator key only CTL, and NONE (Curve off)
 * everything. */
int curve_role_may_send(int role, int msg_type);
/* "worker", "operator" or "any peer (no Curve)", for messages. */
const char *curve_role_name(int role);

#endif
