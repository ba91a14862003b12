/*
 * ctlclient.h - what fanout-ctl makes of the master's answer, or of its
 * silence, as messages for the operator. Kept apart from ctl.c's main() so
 * that each case is unit-tested without a master.
 *
 * Three ways a command fails besides a bad flag: the master refuses it
 * ({"ok":false,"error":...}, "forbidden: ..." when our key is a worker's);
 * the Curve handshake fails (we brought no keys to a master that needs
 * them, or a key it does not admit), which the socket monitor reports as
 * an event; or nothing answers at all.
 */
#ifndef FANOUT_CTLCLIENT_H
#define FANOUT_CTLCLIENT_H

#include <stddef.h>

typedef enum {
    CTLCLIENT_OK = 0,        /* "ok": true; print the status */
    CTLCLIENT_REFUSED = 1,   /* "ok": false: a bad value, say */
    CTLCLIENT_FORBIDDEN = 2, /* "ok": false, error "forbidden: ...": role */
    CTLCLIENT_BAD = 3,       /* not a JSON object with "ok" */
} ctlclient_verdict;

/* Reads a CTL_REPLY's JSON. For anything but CTLCLIENT_OK, writes the line
 * to print (without "fanout-ctl: " and newline) into msg; for FORBIDDEN it
 * adds what to do about it. */
ctlclient_verdict ctlclient_reply(const char *json, char *msg, size_t msglen);

/* A socket monitor event (ZMQ_EVENT_*) with its value, seen while waiting
 * for the answer. Returns 0 when the event is no failure (connected,
 * handshake succeeded, ...), else 1 with the line to print in msg: the
 * master needs Curve keys (have_keys 0 and a mechanism mismatch), does not
 * admit ours, or the handshake failed otherwise. ep is the endpoint. */
int ctlclient_handshake_failed(int event, int value, int have_keys,
                               const char *ep, char *msg, size_t msglen);

/* The line to print when nothing answered within timeout_ms. */
void ctlclient_no_answer(const char *ep, long long timeout_ms, int have_keys,
                         int handshake_ok, char *msg, size_t msglen);

#endif
