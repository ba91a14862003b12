/* ctlclient.c - fanout-ctl's reading of answers and silences; see
 * ctlclient.h. */
#include "fmacros.h"
#include "ctlclient.h"

#include <jansson.h>
#include <zmq.h>

ctlclient_verdict ctlclient_reply(const char *json, char *msg, size_t msglen)
{
    json_t *st = json_loads(json, 0, NULL);
    json_t *ok = json_object_get(st, "ok");
    ctlclient_verdict v;
    if (!json_is_boolean(ok)) {
        snprintf(msg, msglen, "bad answer from the master: %.200s", json);
        v = CTLCLIENT_BAD;
    } else if (json_is_true(ok)) {
        v = CTLCLIENT_OK;
    } else {
        const char *why = json_string_value(json_object_get(st, "error"));
        if (!why)
            why = "no reason given";
        if (!strncmp(why, "forbidden", 9)) {
            snprintf(msg, msglen,
                     "the master refused: %s (fanout-ctl needs an operator "
                     "key, one in the master's --ctl-allow directory, not a "
                     "worker's)",
                     why);
            v = CTLCLIENT_FORBIDDEN;
        } else {
            snprintf(msg, msglen, "the master refused: %s", why);
            v = CTLCLIENT_REFUSED;
        }
    }
    json_decref(st);
    return v;
}

int ctlclient_handshake_failed(int event, int value, int have_keys,
                               const char *ep, char *msg, size_t msglen)
{
    int failed = event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
                 event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
                 event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
    /* Without keys we speak ZMTP's NULL mechanism, whose handshake with a
     * fanout-master fails only when the master wants Curve. Which event
     * we see depends on which side notices first: the mismatch
     * (PROTOCOL), or the master closing on us (NO_DETAIL). */
    if (failed && !have_keys) {
        snprintf(msg, msglen,
                 "the master at %s requires Curve keys: pass "
                 "--curve-secret and --curve-server-key (an operator's key "
                 "pair, and the master's .pub)",
                 ep);
        return 1;
    }
    switch (event) {
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
            snprintf(msg, msglen,
                     "the master at %s does not use Curve keys: drop "
                     "--curve-secret and --curve-server-key",
                     ep);
        else
            snprintf(msg, msglen,
                     "the handshake with %s failed (ZeroMQ protocol error "
                     "0x%x): is a fanout-master of this version there?",
                     ep, (unsigned)value);
        return 1;
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        snprintf(msg, msglen,
                 "the master at %s refused our Curve key (--curve-secret): "
                 "its public key must be in the master's --ctl-allow "
                 "directory",
                 ep);
        return 1;
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        snprintf(msg, msglen,
                 "the handshake with %s failed: check that "
                 "--curve-server-key is this master's public key",
                 ep);
        return 1;
    default:
        return 0;
    }
}

void ctlclient_no_answer(const char *ep, long long timeout_ms, int have_keys,
                         int handshake_ok, char *msg, size_t msglen)
{
    const char *hint =
        handshake_ok ? "the master is there but did not answer in time"
        : have_keys  ? "is a fanout-master running there, and is "
                       "--curve-server-key its public key?"
                     : "is a fanout-master running there? If it uses Curve "
                       "keys, pass --curve-secret and --curve-server-key";
    snprintf(msg, msglen, "no answer from %s within %lld ms: %s", ep,
             timeout_ms, hint);
}
