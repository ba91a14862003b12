/*
 * curve.h - CurveZMQ for the master's sockets: its key pair, the ZAP
 * handler that admits only listed worker keys, and SIGHUP reloads of that
 * list.
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

/* Visible only so it can be embedded in the master. */
typedef struct curve {
    void *zap;              /* the ZAP REP socket, or NULL when off */
    keys_pair server_key;   /* our key pair */
    uint8_t (*allowed)[32]; /* admitted worker keys, binary */
    size_t nallowed;        /* their count */
    const char *allow_dir;  /* --curve-allow (borrowed) */
    uint64_t n_denied;      /* handshakes refused */
} curve;

/* Reads the key pair and the allow list and binds the ZAP handler in zctx.
 * FO_EUSAGE (a bad key file or directory) or FO_EIO, with err. */
FO_WUR fo_err curve_start(curve *c, void *zctx, const char *secret_file,
                          const char *allow_dir, char *err, size_t errlen);
/* Closes the ZAP socket and frees the list; safe when never started. */
void curve_fini(curve *c);
/* Makes sock a Curve server in the "fanout" ZAP domain. */
void curve_serve(const curve *c, void *sock);
/* Reads the allow list again (SIGHUP); on error keeps the old one. */
void curve_reload(curve *c);
/* Answers waiting ZAP requests. */
void curve_handle(curve *c);

#endif
