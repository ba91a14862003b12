/*
 * fuzz_proto.c - proto_decode() on arbitrary frames.
 *
 * Every frame a peer sends goes through proto_decode(), so it must reject
 * anything malformed without crashing, leaking or allocating more than the
 * frame's type justifies (FO_ETOOBIG, naming the type). When a frame does
 * decode, the message is encoded again and decoded a second time: the two
 * decodings must agree field by field (strings compare as C strings, because
 * the encoder writes them with strlen(); extra trailing fields are dropped by
 * design).
 */
#include "fmacros.h"

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "error.h"
#include "proto.h"

#define BIG_CAP ((size_t)PROTO_MAX_WORK_BYTES)

static void die(const char *what, const proto_msg *m)
{
    fprintf(stderr, "fuzz_proto: round trip of %s changed %s\n",
            proto_type_name(m->type), what);
    abort();
}

static int str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static int bytes_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (!a || !b)
        return a == b && alen == blen;
    return alen == blen && memcmp(a, b, alen) == 0;
}

static int refs_eq(const proto_ref *a, uint32_t na, const proto_ref *b,
                   uint32_t nb)
{
    if (na != nb)
        return 0;
    for (uint32_t i = 0; i < na; i++)
        if (a[i].batch != b[i].batch || a[i].idx != b[i].idx)
            return 0;
    return 1;
}

static void compare(const proto_msg *a, const proto_msg *b)
{
    if (a->type != b->type)
        die("the type", a);
    if (a->epoch != b->epoch)
        die("the epoch", a);
    switch (a->type) {
    case PROTO_HELLO:
        if (!str_eq(a->u.hello.worker_id, b->u.hello.worker_id) ||
            !str_eq(a->u.hello.host, b->u.hello.host) ||
            a->u.hello.pid != b->u.hello.pid ||
            a->u.hello.concurrency != b->u.hello.concurrency)
            die("a HELLO field", a);
        break;
    case PROTO_JOB:
        if (!str_eq(a->u.job.job_json, b->u.job.job_json))
            die("the job", a);
        break;
    case PROTO_HEARTBEAT:
        if (a->u.heartbeat.inflight != b->u.heartbeat.inflight ||
            !refs_eq(a->u.heartbeat.held, a->u.heartbeat.nheld,
                     b->u.heartbeat.held, b->u.heartbeat.nheld))
            die("a HEARTBEAT field", a);
        break;
    case PROTO_TOKEN_REQ:
        if (a->u.token_req.want != b->u.token_req.want ||
            a->u.token_req.seen != b->u.token_req.seen ||
            a->u.token_req.released != b->u.token_req.released)
            die("a TOKEN_REQ field", a);
        break;
    case PROTO_TOKEN_GRANT:
        if (a->u.token_grant.total != b->u.token_grant.total ||
            a->u.token_grant.sent_wall_us != b->u.token_grant.sent_wall_us ||
            a->u.token_grant.n != b->u.token_grant.n)
            die("a TOKEN_GRANT field", a);
        for (uint32_t i = 0; i < a->u.token_grant.n; i++)
            if (a->u.token_grant.offset_us[i] != b->u.token_grant.offset_us[i])
                die("a token offset", a);
        break;
    case PROTO_THROTTLED:
        if (a->u.throttled.http_status != b->u.throttled.http_status ||
            a->u.throttled.retry_after_ms != b->u.throttled.retry_after_ms)
            die("a THROTTLED field", a);
        break;
    case PROTO_BYE:
        if (!refs_eq(a->u.bye.held, a->u.bye.nheld, b->u.bye.held,
                     b->u.bye.nheld))
            die("the BYE refs", a);
        break;
    case PROTO_PAUSE:
        if (a->u.pause.pause_ms != b->u.pause.pause_ms)
            die("the pause", a);
        break;
    case PROTO_RATEINFO:
        if (a->u.rateinfo.limit != b->u.rateinfo.limit ||
            a->u.rateinfo.window_ms != b->u.rateinfo.window_ms ||
            a->u.rateinfo.remaining != b->u.rateinfo.remaining ||
            a->u.rateinfo.reset_ms != b->u.rateinfo.reset_ms)
            die("a RATEINFO field", a);
        break;
    case PROTO_CTL:
    case PROTO_CTL_REPLY:
        if (!str_eq(a->u.ctl.json, b->u.ctl.json))
            die("the command", a);
        break;
    case PROTO_WORK:
        if (a->u.work.ref.batch != b->u.work.ref.batch ||
            a->u.work.ref.idx != b->u.work.ref.idx ||
            !str_eq(a->u.work.key, b->u.work.key) ||
            !str_eq(a->u.work.url, b->u.work.url) ||
            !bytes_eq(a->u.work.body, a->u.work.body_len, b->u.work.body,
                      b->u.work.body_len) ||
            !str_eq(a->u.work.idem_key, b->u.work.idem_key))
            die("a WORK field", a);
        break;
    case PROTO_RESULT:
        if (a->u.result.ref.batch != b->u.result.ref.batch ||
            a->u.result.ref.idx != b->u.result.ref.idx ||
            !str_eq(a->u.result.key, b->u.result.key) ||
            a->u.result.status != b->u.result.status ||
            a->u.result.http_status != b->u.result.http_status ||
            a->u.result.attempts != b->u.result.attempts ||
            a->u.result.throttled != b->u.result.throttled ||
            a->u.result.latency_ms != b->u.result.latency_ms ||
            !str_eq(a->u.result.error, b->u.result.error) ||
            !bytes_eq(a->u.result.response, a->u.result.response_len,
                      b->u.result.response, b->u.result.response_len) ||
            !str_eq(a->u.result.worker, b->u.result.worker))
            die("a RESULT field", a);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Each frame of a MULTI envelope keeps the same contract as a frame. */
static void on_inner(void *ctx, const void *frame, size_t len)
{
    (void)ctx;
    if (proto_frame_type(frame, len) == PROTO_MULTI)
        abort(); /* nesting must have been refused */
    LLVMFuzzerTestOneInput(frame, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    proto_msg m;
    char err[256] = "";
    if (proto_frame_type(data, size) == PROTO_MULTI) {
        int n = proto_multi_each(data, size, on_inner, NULL, err, sizeof err);
        if (n < 0 && err[0] == '\0')
            abort();
        if (n > PROTO_MULTI_MAX)
            abort();
    }
    fo_err rc = proto_decode(data, size, &m, err, sizeof err);
    if (rc != FO_OK) {
        /* The contract: an error leaves *m empty and names a reason. */
        static const proto_msg empty;
        if (memcmp(&m, &empty, sizeof m) != 0 || err[0] == '\0') {
            fprintf(stderr,
                    "fuzz_proto: %s without an empty message or "
                    "a reason\n",
                    fo_errname(rc));
            abort();
        }
        if (rc != FO_EPROTO && rc != FO_EVERSION && rc != FO_ETOOBIG)
            abort();
        if (rc == FO_ETOOBIG && !strstr(err, "frame")) {
            fprintf(stderr, "fuzz_proto: ETOOBIG without the type: %s\n", err);
            abort();
        }
        return 0;
    }
    if (size > proto_max_frame_bytes(m.type)) {
        fprintf(stderr, "fuzz_proto: a %s over its frame cap decoded\n",
                proto_type_name(m.type));
        abort();
    }
    fo_buf frame;
    buf_init(&frame, BIG_CAP);
    if (proto_encode(&m, &frame) != FO_OK) {
        fprintf(stderr, "fuzz_proto: a decoded %s does not encode\n",
                proto_type_name(m.type));
        abort();
    }
    proto_msg m2;
    rc = proto_decode(frame.data, frame.len, &m2, err, sizeof err);
    if (rc != FO_OK) {
        fprintf(stderr, "fuzz_proto: re-encoded %s does not decode: %s\n",
                proto_type_name(m.type), err);
        abort();
    }
    compare(&m, &m2);
    proto_msg_fini(&m2);
    proto_msg_fini(&m);
    proto_msg_fini(&m); /* documented as safe to call twice */
    buf_fini(&frame);
    return 0;
}
