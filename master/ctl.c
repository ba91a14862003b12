/*
 * ctl.c - fanout-ctl: look at and steer a running job.
 *
 *   fanout-ctl --master tcp://HOST:5555 status
 *   fanout-ctl --master tcp://HOST:5555 set --rate 500/min --max-in-flight 16
 *   fanout-ctl --master tcp://HOST:5555 pause | resume
 *   fanout-ctl --master tcp://HOST:5555 drain WORKER
 *   fanout-ctl --master tcp://HOST:5555 list-failed
 *   fanout-ctl --master tcp://HOST:5555 cancel
 *
 * It speaks to the master's control socket like a worker would, with CTL
 * messages carrying JSON; the master answers with the job's status. Changes
 * take effect at once across all workers (the master is the only place that
 * grants tokens) and are stored with the job, so a restarted master keeps
 * them.
 */
#include "fmacros.h"
#include "ctlclient.h"
#include "keys.h"
#include "options.h"
#include "proto.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <time.h>
#include <zmq.h>

static const opt_def ctl_opts[] = {
    {"master", OPT_STRING, "tcp://127.0.0.1:5555", 0, 0, "tcp://HOST:PORT",
     "the master's control endpoint"},
    {"rate", OPT_LIST, NULL, 0, 0, "N/UNIT",
     "set: new rate limit(s), or 'none' for no limit"},
    {"max-in-flight", OPT_INT, NULL, 0, 1000000, "N",
     "set: new cluster-wide cap on calls in flight (0: none)"},
    {"key-rate", OPT_LIST, NULL, 0, 0, "N/UNIT",
     "set: new per-key limit(s) of a --rate-key job, or 'none'"},
    {"timeout", OPT_DURATION, "5s", 1, 600000, "DURATION",
     "how long to wait for the master's answer"},
    {"json", OPT_FLAG, "false", 0, 1, NULL, "print the raw JSON answer"},
    {"curve-secret", OPT_STRING, NULL, 0, 0, "FILE",
     "an operator's CurveZMQ key pair (its .pub in the master's --ctl-allow)"},
    {"curve-server-key", OPT_STRING, NULL, 0, 0, "FILE",
     "the master's public key"},
};

static const char usage[] =
    "usage: fanout-ctl [--master tcp://HOST:5555] status\n"
    "       fanout-ctl [--master tcp://HOST:5555] set [--rate N/UNIT]... "
    "[--max-in-flight N]\n"
    "                  [--key-rate N/UNIT]...\n"
    "       fanout-ctl [--master tcp://HOST:5555] pause | resume\n"
    "       fanout-ctl [--master tcp://HOST:5555] drain WORKER\n"
    "       fanout-ctl [--master tcp://HOST:5555] list-failed\n"
    "       fanout-ctl [--master tcp://HOST:5555] cancel\n"
    "\npause: no new calls until resume (calls in flight finish; kept across "
    "a\nmaster restart). drain: that worker (its ID in status) hands back the "
    "items it\nhas not started, finishes its calls and leaves. list-failed: "
    "the latest failed\nitems with their errors (every one is in "
    "results.jsonl). cancel: no new calls; the calls in flight end, then "
    "every item\nleft is recorded cancelled and the master exits 1 "
    "(--redrive runs them again).\n"
    "\nShows or changes a running fanout job. Exit status: 0 done, 2 usage "
    "error\n(also: the master needs Curve keys we were not given), 3 no "
    "answer from the\nmaster, or the master refused the command or our "
    "key.\n";

/* Monitor events that end the wait: how the handshake went. */
#define CTL_MONITOR_EVENTS                                                     \
    (ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |     \
     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)

/* Reads one monitor event (two frames: 16-bit event and 32-bit value, then
 * the endpoint). Returns 0, or -1 when it is not one. */
static int read_event(void *mon, int *event, int *value)
{
    zmq_msg_t f;
    zmq_msg_init(&f);
    int rc = -1;
    if (zmq_msg_recv(&f, mon, 0) >= 6) {
        const uint8_t *d = zmq_msg_data(&f);
        uint16_t ev;
        uint32_t val;
        memcpy(&ev, d, sizeof ev);
        memcpy(&val, d + 2, sizeof val);
        *event = ev;
        *value = (int)val;
        rc = 0;
    }
    int more = zmq_msg_more(&f);
    zmq_msg_close(&f);
    while (more) {
        zmq_msg_init(&f);
        zmq_msg_recv(&f, mon, 0);
        more = zmq_msg_more(&f);
        zmq_msg_close(&f);
    }
    return rc;
}

static void print_status(json_t *st)
{
    printf("items      %" JSON_INTEGER_FORMAT " recorded",
           json_integer_value(json_object_get(st, "items")));
    json_int_t total = json_integer_value(json_object_get(st, "total"));
    if (total >= 0)
        printf(" of %" JSON_INTEGER_FORMAT, total);
    printf(" (ok %" JSON_INTEGER_FORMAT ", failed %" JSON_INTEGER_FORMAT
           ", invalid %" JSON_INTEGER_FORMAT ")\n",
           json_integer_value(json_object_get(st, "items_ok")),
           json_integer_value(json_object_get(st, "items_failed")),
           json_integer_value(json_object_get(st, "items_invalid")));
    const char *rate = json_string_value(json_object_get(st, "rate"));
    printf("rate       %s, effective %.2f/s, calls now %.1f/s\n",
           rate && *rate ? rate : "no limit",
           json_real_value(json_object_get(st, "effective_per_s")),
           json_real_value(json_object_get(st, "calls_per_s")));
    printf("in flight  %" JSON_INTEGER_FORMAT " (max %" JSON_INTEGER_FORMAT
           ")   throttled %" JSON_INTEGER_FORMAT
           "   paused %" JSON_INTEGER_FORMAT " ms\n",
           json_integer_value(json_object_get(st, "in_flight")),
           json_integer_value(json_object_get(st, "max_in_flight")),
           json_integer_value(json_object_get(st, "throttled")),
           json_integer_value(json_object_get(st, "paused_ms")));
    if (json_is_true(json_object_get(st, "paused_by_operator")))
        printf("PAUSED     by fanout-ctl pause: no new calls until fanout-ctl "
               "resume\n");
    json_t *ws = json_object_get(st, "workers");
    printf("workers    %zu\n", json_array_size(ws));
    if (json_array_size(ws))
        printf("  %-24s %-16s %8s %5s %6s %9s %8s %9s %7s\n", "ID", "HOST",
               "PID", "HELD", "CALLS", "HEARTBEAT", "RESULTS", "RESULTS/S",
               "RTT");
    size_t i;
    json_t *w;
    json_array_foreach(ws, i, w)
    {
        printf("  %-24.24s %-16.16s %8" JSON_INTEGER_FORMAT
               " %5" JSON_INTEGER_FORMAT " %6" JSON_INTEGER_FORMAT
               " %7" JSON_INTEGER_FORMAT "ms %8" JSON_INTEGER_FORMAT
               " %9.1f %5.1fms%s\n",
               json_string_value(json_object_get(w, "id")),
               json_string_value(json_object_get(w, "host")),
               json_integer_value(json_object_get(w, "pid")),
               json_integer_value(json_object_get(w, "held")),
               json_integer_value(json_object_get(w, "in_flight")),
               json_integer_value(json_object_get(w, "last_heartbeat_ms")),
               json_integer_value(json_object_get(w, "results")),
               json_real_value(json_object_get(w, "results_per_s")),
               json_number_value(json_object_get(w, "rtt_ms")),
               json_is_true(json_object_get(w, "leaving")) ? " leaving" : "");
    }
    json_t *k = json_object_get(st, "keys");
    if (!k)
        return;
    printf("keys       %" JSON_INTEGER_FORMAT
           " active, rate %s per key, %" JSON_INTEGER_FORMAT
           " waiting, %" JSON_INTEGER_FORMAT " in flight, %" JSON_INTEGER_FORMAT
           " throttled\n",
           json_integer_value(json_object_get(k, "active")),
           json_string_value(json_object_get(k, "rate")),
           json_integer_value(json_object_get(k, "waiting")),
           json_integer_value(json_object_get(k, "in_flight")),
           json_integer_value(json_object_get(k, "throttled")));
    json_t *top = json_object_get(k, "top");
    if (json_array_size(top))
        printf("  %-32s %7s %6s %8s %9s %8s\n", "KEY", "WAITING", "CALLS",
               "IN-FLIGHT", "THROTTLED", "PAUSED");
    json_array_foreach(top, i, w)
    {
        printf("  %-32.32s %7" JSON_INTEGER_FORMAT " %6" JSON_INTEGER_FORMAT
               " %8" JSON_INTEGER_FORMAT " %9" JSON_INTEGER_FORMAT
               " %6" JSON_INTEGER_FORMAT "ms\n",
               json_string_value(json_object_get(w, "key")),
               json_integer_value(json_object_get(w, "waiting")),
               json_integer_value(json_object_get(w, "calls")),
               json_integer_value(json_object_get(w, "in_flight")),
               json_integer_value(json_object_get(w, "throttled")),
               json_integer_value(json_object_get(w, "paused_ms")));
    }
}

static void print_failures(json_t *st)
{
    json_t *fs = json_object_get(st, "failures");
    json_int_t seen = json_integer_value(json_object_get(st, "failures_seen"));
    if (!json_array_size(fs)) {
        printf("no failed items\n");
        return;
    }
    printf("%-32s %5s %8s  %s\n", "ID", "HTTP", "ATTEMPTS", "ERROR");
    size_t i;
    json_t *f;
    json_array_foreach(fs, i, f)
    {
        printf("%-32s %5" JSON_INTEGER_FORMAT " %8" JSON_INTEGER_FORMAT
               "  %s\n",
               json_string_value(json_object_get(f, "id")),
               json_integer_value(json_object_get(f, "http_status")),
               json_integer_value(json_object_get(f, "attempts")),
               json_string_value(json_object_get(f, "error")));
    }
    if (seen > (json_int_t)json_array_size(fs))
        printf("the newest %zu of %" JSON_INTEGER_FORMAT
               " failed items; every one is in the job's results.jsonl "
               "(\"status\":\"failed\")\n",
               json_array_size(fs), seen);
}

int main(int argc, char **argv)
{
    char err[512] = "";
    int status;
    opts *o = opts_parse(ctl_opts, sizeof ctl_opts / sizeof ctl_opts[0], argc,
                         argv, usage, "fanout-ctl " FANOUT_VERSION, &status,
                         err, sizeof err);
    int rc = 2;
    json_t *req = NULL;
    void *ctx = NULL, *sock = NULL, *mon = NULL;
    if (status == 1) {
        rc = 0;
        goto out;
    }
    if (status == 2) {
        fprintf(stderr, "fanout-ctl: %s\n", err);
        goto out;
    }
    size_t npos;
    char *const *pos = opts_positional(o, &npos);
    static const char *const cmds[] = {
        "status", "set", "pause", "resume", "drain", "list-failed", "cancel"};
    int known = 0;
    for (size_t i = 0; npos && i < sizeof cmds / sizeof cmds[0]; i++)
        known |= !strcmp(pos[0], cmds[i]);
    if (!known || npos != (size_t)(strcmp(pos[0], "drain") ? 1 : 2)) {
        fprintf(stderr, "fanout-ctl: expected one command: status, set, pause, "
                        "resume, drain WORKER, list-failed or cancel (see "
                        "--help)\n");
        goto out;
    }
    /* list-failed reads the failures from the status. */
    int list_failed = !strcmp(pos[0], "list-failed");
    req = json_pack("{s:s}", "cmd", list_failed ? "status" : pos[0]);
    if (!strcmp(pos[0], "drain"))
        json_object_set_new(req, "worker", json_string(pos[1]));
    if (!strcmp(pos[0], "set")) {
        size_t nr;
        char *const *rates = opts_list(o, "rate", &nr);
        size_t nk;
        char *const *krates = opts_list(o, "key-rate", &nk);
        if (!nr && !nk && !opts_given(o, "max-in-flight")) {
            fprintf(stderr, "fanout-ctl: set: give --rate, --key-rate "
                            "and/or --max-in-flight\n");
            goto out;
        }
        if (nk == 1 && !strcmp(krates[0], "none")) {
            json_object_set_new(req, "key_rate", json_string("none"));
        } else if (nk) {
            json_t *arr = json_array();
            for (size_t i = 0; i < nk; i++)
                json_array_append_new(arr, json_string(krates[i]));
            json_object_set_new(req, "key_rate", arr);
        }
        if (nr == 1 && !strcmp(rates[0], "none")) {
            json_object_set_new(req, "rate", json_string("none"));
        } else if (nr) {
            json_t *arr = json_array();
            for (size_t i = 0; i < nr; i++)
                json_array_append_new(arr, json_string(rates[i]));
            json_object_set_new(req, "rate", arr);
        }
        if (opts_given(o, "max-in-flight"))
            json_object_set_new(req, "max_in_flight",
                                json_integer(opts_num(o, "max-in-flight")));
    }
    const char *ep = opts_str(o, "master");
    ctx = zmq_ctx_new();
    sock = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    int64_t maxmsg = PROTO_MAX_CONTROL_BYTES;
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    int have_keys =
        opts_str(o, "curve-secret") || opts_str(o, "curve-server-key");
    /* The monitor tells a handshake the master refused (no keys, or a key
     * it does not admit) from a master that is not there. */
    if (zmq_socket_monitor(sock, "inproc://fanout-ctl-monitor",
                           CTL_MONITOR_EVENTS) == 0) {
        mon = zmq_socket(ctx, ZMQ_PAIR);
        zmq_setsockopt(mon, ZMQ_LINGER, &linger, sizeof linger);
        if (zmq_connect(mon, "inproc://fanout-ctl-monitor") != 0) {
            zmq_close(mon);
            mon = NULL;
        }
    }
    if (have_keys) {
        keys_pair mine, srv;
        if (!opts_str(o, "curve-secret") || !opts_str(o, "curve-server-key") ||
            keys_read(opts_str(o, "curve-secret"), 1, &mine, err, sizeof err) ||
            keys_read(opts_str(o, "curve-server-key"), 0, &srv, err,
                      sizeof err)) {
            fprintf(stderr,
                    "fanout-ctl: --curve-secret and "
                    "--curve-server-key go together: %s\n",
                    err);
            goto out;
        }
        zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, srv.public_key,
                       KEYS_Z85_LEN + 1);
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, mine.public_key,
                       KEYS_Z85_LEN + 1);
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, mine.secret_key,
                       KEYS_Z85_LEN + 1);
    }
    if (zmq_connect(sock, ep) != 0) {
        fprintf(stderr, "fanout-ctl: --master %s: %s\n", ep,
                zmq_strerror(errno));
        goto out;
    }
    char *text = json_dumps(req, JSON_COMPACT);
    proto_msg m = {.type = PROTO_CTL};
    m.u.ctl.json = text;
    fo_buf b;
    buf_init(&b, PROTO_MAX_CONTROL_BYTES);
    if (proto_encode(&m, &b) != FO_OK) {
        free(text);
        buf_fini(&b);
        goto out;
    }
    free(text);
    zmq_send(sock, b.data, b.len, 0);
    buf_fini(&b);
    rc = 3;
    long long timeout_ms = (long long)opts_num(o, "timeout");
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int handshake_ok = 0, answered = 0;
    for (;;) {
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long long left =
            timeout_ms - ((long long)(t1.tv_sec - t0.tv_sec) * 1000 +
                          (t1.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0)
            break;
        zmq_pollitem_t pi[2] = {{sock, 0, ZMQ_POLLIN, 0},
                                {mon, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(pi, mon ? 2 : 1, (long)left) < 0 && errno != EINTR)
            break;
        if (pi[0].revents & ZMQ_POLLIN) {
            answered = 1;
            break;
        }
        int event, value;
        if (mon && (pi[1].revents & ZMQ_POLLIN) &&
            read_event(mon, &event, &value) == 0) {
            if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
                handshake_ok = 1;
            else if (ctlclient_handshake_failed(event, value, have_keys, ep,
                                                err, sizeof err)) {
                fprintf(stderr, "fanout-ctl: %s\n", err);
                /* No keys where keys are needed: fix the command line. */
                rc = have_keys ? 3 : 2;
                goto out;
            }
        }
    }
    if (!answered) {
        ctlclient_no_answer(ep, timeout_ms, have_keys, handshake_ok, err,
                            sizeof err);
        fprintf(stderr, "fanout-ctl: %s\n", err);
        goto out;
    }
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    zmq_msg_recv(&msg, sock, 0);
    proto_msg rep;
    fo_err e = proto_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), &rep, err,
                            sizeof err);
    zmq_msg_close(&msg);
    if (e || rep.type != PROTO_CTL_REPLY) {
        fprintf(stderr, "fanout-ctl: bad answer from %s: %s\n", ep,
                e ? err : "not a CTL_REPLY");
        proto_msg_fini(&rep);
        goto out;
    }
    char why[1024];
    ctlclient_verdict v = ctlclient_reply(rep.u.ctl.json, why, sizeof why);
    json_t *st = NULL;
    if (v != CTLCLIENT_OK) {
        fprintf(stderr, "fanout-ctl: %s\n", why);
    } else {
        st = json_loads(rep.u.ctl.json, 0, NULL);
        if (opts_num(o, "json"))
            printf("%s\n", rep.u.ctl.json);
        else if (list_failed)
            print_failures(st);
        else
            print_status(st);
        rc = 0;
    }
    json_decref(st);
    proto_msg_fini(&rep);
out:
    json_decref(req);
    if (mon)
        zmq_close(mon);
    if (sock)
        zmq_close(sock);
    if (ctx)
        zmq_ctx_term(ctx);
    opts_destroy(&o);
    return rc;
}
