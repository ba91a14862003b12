/*
 * proto.c - msgpack codec for fanout's messages; see proto.h.
 *
 * msgpack-c allocates the elements of an array or map as soon as it reads
 * the count, before it has seen them, so a five-byte frame claiming four
 * billion elements would make it allocate gigabytes. prescan() walks the
 * frame first and refuses any container that claims more elements than
 * there are bytes left, which bounds every allocation by the frame size.
 * That bound alone is 24 times the frame (a 1-byte nil becomes a 24-byte
 * msgpack_object; a 4 MB frame of nils cost 96 MB), so the elements are
 * also summed and held to what a message of the frame's type can need:
 * its array, plus the one list a HEARTBEAT, BYE or TOKEN_GRANT carries.
 * Strings and bins cost nothing there: msgpack_unpack_next() points into
 * the frame, and rd_bytes() copies them out under their field's cap.
 */
#include "fmacros.h"
#include "proto.h"
#include "util.h"

#include <limits.h>
#include <msgpack.h>

/* The control socket's cap holds the largest JOB, CTL and HEARTBEAT. */
_Static_assert(PROTO_MAX_CONTROL_BYTES >=
                   PROTO_MAX_JOB_BYTES + PROTO_FRAME_OVERHEAD_BYTES,
               "a JOB must fit on the control socket");
_Static_assert(PROTO_MAX_CONTROL_BYTES >=
                   (size_t)PROTO_MAX_HELD * 14 + PROTO_FRAME_OVERHEAD_BYTES,
               "a full HEARTBEAT must fit on the control socket");

const char *proto_type_name(int type)
{
    static const char *const names[] = {
        "UNKNOWN",     "HELLO",     "JOB",   "HEARTBEAT", "TOKEN_REQ",
        "TOKEN_GRANT", "THROTTLED", "BYE",   "RESET",     "WORK",
        "RESULT",      "DONE",      "PAUSE", "RATEINFO",  "CTL",
        "CTL_REPLY",   "DRAIN",     "MULTI"};
    if (type < 1 || type > PROTO_LAST_TYPE)
        return names[0];
    return names[type];
}

size_t proto_max_frame_bytes(int type)
{
    if (type == PROTO_WORK)
        return PROTO_MAX_WORK_BYTES;
    if (type == PROTO_MULTI)
        return PROTO_MULTI_BYTES + PROTO_FRAME_OVERHEAD_BYTES;
    if (type == PROTO_RESULT)
        return PROTO_MAX_RESULT_BYTES;
    return PROTO_MAX_CONTROL_BYTES;
}

/* ---- encoding ---------------------------------------------------------- */

/* Where the packer writes: the caller's capped buffer, and whether the cap
 * was hit (msgpack-c reports write errors per call, which we check once). */
typedef struct sink {
    fo_buf *b;  /* destination */
    int failed; /* an append hit the cap */
} sink;

static int sbuf_write(void *data, const char *buf, size_t len)
{
    sink *s = data;
    if (s->failed || buf_append(s->b, buf, len) != FO_OK) {
        s->failed = 1;
        return -1;
    }
    return 0;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    if (!s) {
        msgpack_pack_nil(pk);
        return;
    }
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_bin(msgpack_packer *pk, const char *p, size_t n)
{
    if (!p) {
        msgpack_pack_nil(pk);
        return;
    }
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, p, n);
}

static void pack_refs(msgpack_packer *pk, const proto_ref *refs, uint32_t n)
{
    msgpack_pack_array(pk, (size_t)n * 2);
    for (uint32_t i = 0; i < n; i++) {
        msgpack_pack_uint64(pk, refs[i].batch);
        msgpack_pack_uint32(pk, refs[i].idx);
    }
}

fo_err proto_encode(const proto_msg *m, fo_buf *out)
{
    size_t before = out->len;
    sink snk = {out, 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &snk, sbuf_write);
    static const size_t nfields[] = {0, 4,  1, 5, 3, 3, 2, 1, 0,
                                     6, 15, 0, 1, 4, 1, 1, 0, 0};
    /* A MULTI is written by proto_batch_finish(), never from a proto_msg. */
    if (m->type < 1 || m->type >= PROTO_MULTI)
        return FO_EINVAL;
    size_t extra = 0; /* optional trailing fields (keyed mode) */
    if (m->type == PROTO_WORK && m->u.work.prepaid)
        extra = 3;
    else if (m->type == PROTO_RESULT &&
             m->u.result.status == PROTO_STATUS_RETRY)
        extra = 1;
    msgpack_pack_array(&pk, 3 + nfields[m->type] + extra);
    msgpack_pack_uint32(&pk, PROTO_VERSION);
    msgpack_pack_uint32(&pk, (uint32_t)m->type);
    msgpack_pack_uint64(&pk, m->epoch);
    switch (m->type) {
    case PROTO_HELLO:
        pack_str(&pk, m->u.hello.worker_id);
        pack_str(&pk, m->u.hello.host);
        msgpack_pack_int64(&pk, m->u.hello.pid);
        msgpack_pack_uint32(&pk, m->u.hello.concurrency);
        break;
    case PROTO_JOB:
        pack_str(&pk, m->u.job.job_json);
        break;
    case PROTO_HEARTBEAT:
        msgpack_pack_uint32(&pk, m->u.heartbeat.inflight);
        pack_refs(&pk, m->u.heartbeat.held, m->u.heartbeat.nheld);
        msgpack_pack_uint64(&pk, m->u.heartbeat.sent_us);
        msgpack_pack_uint64(&pk, m->u.heartbeat.echo_us);
        msgpack_pack_uint64(&pk, m->u.heartbeat.echo_held_us);
        break;
    case PROTO_TOKEN_REQ:
        msgpack_pack_uint32(&pk, m->u.token_req.want);
        msgpack_pack_uint64(&pk, m->u.token_req.seen);
        msgpack_pack_uint32(&pk, m->u.token_req.released);
        break;
    case PROTO_TOKEN_GRANT:
        msgpack_pack_uint64(&pk, m->u.token_grant.total);
        msgpack_pack_uint64(&pk, m->u.token_grant.sent_wall_us);
        msgpack_pack_array(&pk, m->u.token_grant.n);
        for (uint32_t i = 0; i < m->u.token_grant.n; i++)
            msgpack_pack_uint32(&pk, m->u.token_grant.offset_us[i]);
        break;
    case PROTO_THROTTLED:
        msgpack_pack_uint32(&pk, m->u.throttled.http_status);
        msgpack_pack_uint32(&pk, m->u.throttled.retry_after_ms);
        break;
    case PROTO_BYE:
        pack_refs(&pk, m->u.bye.held, m->u.bye.nheld);
        break;
    case PROTO_PAUSE:
        msgpack_pack_uint32(&pk, m->u.pause.pause_ms);
        break;
    case PROTO_RATEINFO:
        msgpack_pack_int64(&pk, m->u.rateinfo.limit);
        msgpack_pack_int64(&pk, m->u.rateinfo.window_ms);
        msgpack_pack_int64(&pk, m->u.rateinfo.remaining);
        msgpack_pack_int64(&pk, m->u.rateinfo.reset_ms);
        break;
    case PROTO_CTL:
    case PROTO_CTL_REPLY:
        pack_str(&pk, m->u.ctl.json);
        break;
    case PROTO_WORK:
        msgpack_pack_uint64(&pk, m->u.work.ref.batch);
        msgpack_pack_uint32(&pk, m->u.work.ref.idx);
        pack_str(&pk, m->u.work.key);
        pack_str(&pk, m->u.work.url);
        pack_bin(&pk, m->u.work.body, m->u.work.body_len);
        pack_str(&pk, m->u.work.idem_key);
        if (m->u.work.prepaid) {
            msgpack_pack_uint32(&pk, m->u.work.paid_offset_us);
            msgpack_pack_uint32(&pk, m->u.work.attempts);
            msgpack_pack_uint32(&pk, m->u.work.throttled);
        }
        break;
    case PROTO_RESULT:
        msgpack_pack_uint64(&pk, m->u.result.ref.batch);
        msgpack_pack_uint32(&pk, m->u.result.ref.idx);
        pack_str(&pk, m->u.result.key);
        msgpack_pack_uint32(&pk, m->u.result.status);
        msgpack_pack_uint32(&pk, m->u.result.http_status);
        msgpack_pack_uint32(&pk, m->u.result.attempts);
        msgpack_pack_uint32(&pk, m->u.result.throttled);
        msgpack_pack_uint32(&pk, m->u.result.latency_ms);
        pack_str(&pk, m->u.result.error);
        pack_bin(&pk, m->u.result.response, m->u.result.response_len);
        pack_str(&pk, m->u.result.worker);
        pack_str(&pk, m->u.result.idem_key);
        msgpack_pack_uint64(&pk, m->u.result.started_us);
        msgpack_pack_uint64(&pk, m->u.result.finished_us);
        msgpack_pack_uint64(&pk, m->u.result.dropped_len);
        if (m->u.result.status == PROTO_STATUS_RETRY)
            msgpack_pack_uint32(&pk, m->u.result.retry_in_ms);
        break;
    default:
        break;
    }
    /* A packer write failure (the cap) leaves a partial frame: undo it. */
    if (snk.failed) {
        out->len = before;
        if (out->data)
            out->data[before] = '\0';
        return FO_ETOOBIG;
    }
    return FO_OK;
}

/* ---- decoding ---------------------------------------------------------- */

static int rd_be(const unsigned char *p, size_t n, uint64_t *v)
{
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++)
        x = (x << 8) | p[i];
    *v = x;
    return 0;
}

/* Walks the frame; returns 0 when every container count and every length
 * fits in the bytes present and exactly one top-level object fills it, and
 * sets *elements to the sum of all container counts (a map's pairs count
 * twice), which is what msgpack-c will allocate msgpack_objects for. */
static int prescan(const unsigned char *p, size_t len, uint64_t *elements)
{
    size_t pos = 0;
    uint64_t pending = 1, total = 0;
    while (pending > 0) {
        if (pos >= len)
            return -1;
        unsigned char c = p[pos++];
        pending--;
        uint64_t skip = 0, elems = 0;
        size_t lenbytes = 0;
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
        } else if ((c & 0xf0) == 0x80) {
            elems = (uint64_t)(c & 0x0f) * 2;
        } else if ((c & 0xf0) == 0x90) {
            elems = c & 0x0f;
        } else if ((c & 0xe0) == 0xa0) {
            skip = c & 0x1f;
        } else {
            switch (c) {
            case 0xc4:
            case 0xd9:
                lenbytes = 1;
                break;
            case 0xc5:
            case 0xda:
                lenbytes = 2;
                break;
            case 0xc6:
            case 0xdb:
                lenbytes = 4;
                break;
            case 0xc7:
                lenbytes = 1;
                skip = 1;
                break;
            case 0xc8:
                lenbytes = 2;
                skip = 1;
                break;
            case 0xc9:
                lenbytes = 4;
                skip = 1;
                break;
            case 0xca:
            case 0xce:
            case 0xd2:
                skip = 4;
                break;
            case 0xcb:
            case 0xcf:
            case 0xd3:
                skip = 8;
                break;
            case 0xcc:
            case 0xd0:
                skip = 1;
                break;
            case 0xcd:
            case 0xd1:
                skip = 2;
                break;
            case 0xd4:
                skip = 2;
                break;
            case 0xd5:
                skip = 3;
                break;
            case 0xd6:
                skip = 5;
                break;
            case 0xd7:
                skip = 9;
                break;
            case 0xd8:
                skip = 17;
                break;
            case 0xdc:
            case 0xde: {
                if (len - pos < 2)
                    return -1;
                rd_be(p + pos, 2, &elems);
                pos += 2;
                if (c == 0xde)
                    elems *= 2;
                break;
            }
            case 0xdd:
            case 0xdf: {
                if (len - pos < 4)
                    return -1;
                rd_be(p + pos, 4, &elems);
                pos += 4;
                if (c == 0xdf)
                    elems *= 2;
                break;
            }
            default:
                return -1; /* 0xc1 is never used */
            }
        }
        if (lenbytes) {
            if (len - pos < lenbytes)
                return -1;
            uint64_t l;
            rd_be(p + pos, lenbytes, &l);
            pos += lenbytes;
            skip += l;
        }
        if (skip > len - pos)
            return -1;
        pos += (size_t)skip;
        /* Every element needs at least one byte. */
        if (elems > len - pos || pending + elems > len)
            return -1;
        pending += elems;
        total += elems; /* at most len per container, len containers */
    }
    *elements = total;
    return pos == len ? 0 : -1;
}

/* Reads a positive integer at p[*pos]; returns 0, or -1 for anything else. */
static int peek_uint(const unsigned char *p, size_t len, size_t *pos,
                     uint64_t *v)
{
    static const size_t widths[] = {1, 2, 4, 8}; /* 0xcc..0xcf */
    if (*pos >= len)
        return -1;
    unsigned char c = p[(*pos)++];
    if (c <= 0x7f) {
        *v = c;
        return 0;
    }
    if (c < 0xcc || c > 0xcf || len - *pos < widths[c - 0xcc])
        return -1;
    rd_be(p + *pos, widths[c - 0xcc], v);
    *pos += widths[c - 0xcc];
    return 0;
}

/* Returns the type of a frame that starts like a message (an array whose
 * first two elements are positive integers), or 0. Nothing is trusted yet:
 * the type only picks the caps the frame is held to. */
static int peek_type(const unsigned char *p, size_t len)
{
    size_t pos = 1;
    uint64_t version, type;
    if (len == 0)
        return 0;
    if (p[0] == 0xdc)
        pos = 3;
    else if (p[0] == 0xdd)
        pos = 5;
    else if ((p[0] & 0xf0) != 0x90)
        return 0;
    if (pos > len || peek_uint(p, len, &pos, &version) < 0 ||
        peek_uint(p, len, &pos, &type) < 0 || type > INT_MAX)
        return 0;
    return (int)type;
}

/* The msgpack_objects a message of this type may need: its array, plus the
 * one list that HEARTBEAT and BYE (refs of two elements) and TOKEN_GRANT
 * (offsets) carry. Unknown types get the array alone. */
static uint64_t max_elements(int type)
{
    uint64_t n = PROTO_MAX_FIELDS;
    if (type == PROTO_HEARTBEAT || type == PROTO_BYE)
        n += 2 * (uint64_t)PROTO_MAX_HELD;
    else if (type == PROTO_TOKEN_GRANT)
        n += PROTO_MAX_GRANT;
    else if (type == PROTO_MULTI)
        n += PROTO_MULTI_MAX;
    return n;
}

/* Holds the frame to its type's caps before msgpack-c sees it. Returns
 * FO_OK, FO_EPROTO for a frame that is not one msgpack object, or
 * FO_ETOOBIG naming the type. */
static fo_err precheck(const unsigned char *p, size_t len, char *err,
                       size_t errlen)
{
    int type = peek_type(p, len);
    char what[64];
    if (type >= 1 && type <= PROTO_LAST_TYPE)
        snprintf(what, sizeof what, "%s frame", proto_type_name(type));
    else if (type != 0)
        snprintf(what, sizeof what, "frame (unknown type %d)", type);
    else
        snprintf(what, sizeof what, "frame"); /* not shaped as a message */
    if (len > proto_max_frame_bytes(type)) {
        snprintf(err, errlen, "%s of %zu bytes is over the cap of %zu bytes",
                 what, len, proto_max_frame_bytes(type));
        return FO_ETOOBIG;
    }
    uint64_t elements;
    if (prescan(p, len, &elements) < 0) {
        snprintf(err, errlen, "%s of %zu bytes is not one valid msgpack object",
                 what, len);
        return FO_EPROTO;
    }
    if (elements > max_elements(type)) {
        snprintf(err, errlen,
                 "%s of %zu bytes holds %llu elements and would take %llu "
                 "bytes to decode, over the cap of %llu",
                 what, len, (unsigned long long)elements,
                 (unsigned long long)elements *
                     (unsigned long long)sizeof(msgpack_object),
                 (unsigned long long)max_elements(type) *
                     (unsigned long long)sizeof(msgpack_object));
        return FO_ETOOBIG;
    }
    return FO_OK;
}

typedef struct reader {
    const msgpack_object *a; /* the array's elements */
    uint32_t n;              /* their count */
    uint32_t i;              /* next element */
    char *err;               /* reason buffer */
    size_t errlen;           /* its size */
    int bad;                 /* set on the first error */
} reader;

static const msgpack_object *next(reader *r, const char *field)
{
    if (r->bad)
        return NULL;
    if (r->i >= r->n) {
        snprintf(r->err, r->errlen, "missing field '%s'", field);
        r->bad = 1;
        return NULL;
    }
    return &r->a[r->i++];
}

static uint64_t rd_uint(reader *r, const char *field, uint64_t max)
{
    const msgpack_object *o = next(r, field);
    if (!o)
        return 0;
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max) {
        snprintf(r->err, r->errlen, "field '%s' is not an integer in range",
                 field);
        r->bad = 1;
        return 0;
    }
    return o->via.u64;
}

static int64_t rd_int(reader *r, const char *field)
{
    const msgpack_object *o = next(r, field);
    if (!o)
        return 0;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        return (int64_t)o->via.u64;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return o->via.i64;
    snprintf(r->err, r->errlen, "field '%s' is not an integer", field);
    r->bad = 1;
    return 0;
}

/* Copies a str or bin field (or nil when nullable) into a heap string. */
static char *rd_bytes(reader *r, const char *field, size_t max, int nullable,
                      size_t *lenp)
{
    const msgpack_object *o = next(r, field);
    if (lenp)
        *lenp = 0;
    if (!o)
        return NULL;
    if (o->type == MSGPACK_OBJECT_NIL && nullable)
        return NULL;
    const char *p;
    size_t n;
    if (o->type == MSGPACK_OBJECT_STR) {
        p = o->via.str.ptr;
        n = o->via.str.size;
    } else if (o->type == MSGPACK_OBJECT_BIN) {
        p = o->via.bin.ptr;
        n = o->via.bin.size;
    } else {
        snprintf(r->err, r->errlen, "field '%s' is not a string", field);
        r->bad = 1;
        return NULL;
    }
    if (n > max) {
        snprintf(r->err, r->errlen,
                 "field '%s' is %zu bytes, over the cap "
                 "of %zu",
                 field, n, max);
        r->bad = 1;
        return NULL;
    }
    if (lenp)
        *lenp = n;
    return xstrndup(p, n);
}

static proto_ref *rd_refs(reader *r, const char *field, uint32_t *count)
{
    const msgpack_object *o = next(r, field);
    *count = 0;
    if (!o)
        return NULL;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size % 2 ||
        o->via.array.size / 2 > PROTO_MAX_HELD) {
        snprintf(r->err, r->errlen, "field '%s' is not a list of item refs",
                 field);
        r->bad = 1;
        return NULL;
    }
    uint32_t n = o->via.array.size / 2;
    proto_ref *refs = n ? xcalloc(n, sizeof *refs) : NULL;
    reader sub = {o->via.array.ptr, o->via.array.size, 0, r->err, r->errlen, 0};
    for (uint32_t i = 0; i < n && !sub.bad; i++) {
        refs[i].batch = rd_uint(&sub, field, UINT64_MAX);
        refs[i].idx = (uint32_t)rd_uint(&sub, field, UINT32_MAX);
    }
    if (sub.bad) {
        free(refs);
        r->bad = 1;
        return NULL;
    }
    *count = n;
    return refs;
}

fo_err proto_decode(const void *data, size_t len, proto_msg *m, char *err,
                    size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (len == 0) {
        snprintf(err, errlen, "frame of 0 bytes");
        return FO_EPROTO;
    }
    fo_err pre = precheck(data, len, err, errlen);
    if (pre != FO_OK)
        return pre;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    fo_err rc = FO_OK;
    if (msgpack_unpack_next(&up, data, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != len) {
        snprintf(err, errlen, "frame does not decode as msgpack");
        rc = FO_EPROTO;
        goto out;
    }
    const msgpack_object *root = &up.data;
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size < 3) {
        snprintf(err, errlen, "frame is not a message array");
        rc = FO_EPROTO;
        goto out;
    }
    reader r = {root->via.array.ptr, root->via.array.size, 0, err, errlen, 0};
    uint64_t version = rd_uint(&r, "version", UINT32_MAX);
    if (!r.bad && version != PROTO_VERSION) {
        snprintf(err, errlen, "protocol version %llu (this build speaks %d)",
                 (unsigned long long)version, PROTO_VERSION);
        rc = FO_EVERSION;
        goto out;
    }
    m->type = (int)rd_uint(&r, "type", UINT32_MAX);
    m->epoch = rd_uint(&r, "epoch", UINT64_MAX);
    if (r.bad) {
        rc = FO_EPROTO;
        goto out;
    }
    switch (m->type) {
    case PROTO_HELLO:
        m->u.hello.worker_id =
            rd_bytes(&r, "worker_id", PROTO_MAX_TEXT_BYTES, 0, NULL);
        m->u.hello.host = rd_bytes(&r, "host", PROTO_MAX_TEXT_BYTES, 0, NULL);
        m->u.hello.pid = rd_int(&r, "pid");
        m->u.hello.concurrency = (uint32_t)rd_uint(&r, "concurrency", 1000000);
        break;
    case PROTO_JOB:
        m->u.job.job_json = rd_bytes(&r, "job", PROTO_MAX_JOB_BYTES, 0, NULL);
        break;
    case PROTO_HEARTBEAT:
        m->u.heartbeat.inflight = (uint32_t)rd_uint(&r, "inflight", 1000000);
        m->u.heartbeat.held = rd_refs(&r, "held", &m->u.heartbeat.nheld);
        if (r.i + 2 < r.n) { /* optional, together */
            m->u.heartbeat.sent_us = rd_uint(&r, "sent_us", UINT64_MAX);
            m->u.heartbeat.echo_us = rd_uint(&r, "echo_us", UINT64_MAX);
            m->u.heartbeat.echo_held_us =
                rd_uint(&r, "echo_held_us", UINT64_MAX);
        }
        break;
    case PROTO_TOKEN_REQ:
        m->u.token_req.want = (uint32_t)rd_uint(&r, "want", 1000000);
        m->u.token_req.seen = rd_uint(&r, "seen", UINT64_MAX);
        m->u.token_req.released = (uint32_t)rd_uint(&r, "released", 1000000);
        break;
    case PROTO_TOKEN_GRANT: {
        m->u.token_grant.total = rd_uint(&r, "total", UINT64_MAX);
        m->u.token_grant.sent_wall_us = rd_uint(&r, "sent_wall_us", UINT64_MAX);
        const msgpack_object *o = next(&r, "offsets");
        if (!o)
            break;
        if (o->type != MSGPACK_OBJECT_ARRAY ||
            o->via.array.size > PROTO_MAX_GRANT) {
            snprintf(err, errlen,
                     "field 'offsets' is not a list of at most "
                     "%d tokens",
                     PROTO_MAX_GRANT);
            r.bad = 1;
            break;
        }
        uint32_t n = o->via.array.size;
        m->u.token_grant.offset_us = n ? xcalloc(n, sizeof(uint32_t)) : NULL;
        reader sub = {o->via.array.ptr, n, 0, err, errlen, 0};
        for (uint32_t i = 0; i < n; i++)
            m->u.token_grant.offset_us[i] =
                (uint32_t)rd_uint(&sub, "offsets", UINT32_MAX);
        m->u.token_grant.n = n;
        r.bad |= sub.bad;
        break;
    }
    case PROTO_THROTTLED:
        m->u.throttled.http_status = (uint32_t)rd_uint(&r, "status", 999);
        m->u.throttled.retry_after_ms =
            (uint32_t)rd_uint(&r, "retry_after_ms", UINT32_MAX);
        break;
    case PROTO_BYE:
        m->u.bye.held = rd_refs(&r, "held", &m->u.bye.nheld);
        break;
    case PROTO_RESET:
    case PROTO_DONE:
    case PROTO_DRAIN:
        break;
    case PROTO_PAUSE:
        m->u.pause.pause_ms = (uint32_t)rd_uint(&r, "pause_ms", UINT32_MAX);
        break;
    case PROTO_RATEINFO:
        m->u.rateinfo.limit = rd_int(&r, "limit");
        m->u.rateinfo.window_ms = rd_int(&r, "window_ms");
        m->u.rateinfo.remaining = rd_int(&r, "remaining");
        m->u.rateinfo.reset_ms = rd_int(&r, "reset_ms");
        break;
    case PROTO_CTL:
    case PROTO_CTL_REPLY:
        m->u.ctl.json = rd_bytes(&r, "json", PROTO_MAX_JOB_BYTES, 0, NULL);
        break;
    case PROTO_WORK:
        m->u.work.ref.batch = rd_uint(&r, "batch", UINT64_MAX);
        m->u.work.ref.idx = (uint32_t)rd_uint(&r, "idx", UINT32_MAX);
        m->u.work.key = rd_bytes(&r, "key", PROTO_MAX_LINE_BYTES, 0, NULL);
        m->u.work.url =
            rd_bytes(&r, "url", PROTO_URL_BYTES(PROTO_MAX_LINE_BYTES), 0, NULL);
        m->u.work.body =
            rd_bytes(&r, "body", PROTO_RENDER_BODY_BYTES(PROTO_MAX_LINE_BYTES),
                     1, &m->u.work.body_len);
        m->u.work.idem_key =
            rd_bytes(&r, "idem_key", PROTO_MAX_TEXT_BYTES, 0, NULL);
        if (r.i + 2 < r.n) { /* optional, together: keyed mode */
            m->u.work.prepaid = 1;
            m->u.work.paid_offset_us =
                (uint32_t)rd_uint(&r, "paid_offset_us", UINT32_MAX);
            m->u.work.attempts = (uint32_t)rd_uint(&r, "attempts", UINT32_MAX);
            m->u.work.throttled =
                (uint32_t)rd_uint(&r, "throttled", UINT32_MAX);
        }
        break;
    case PROTO_RESULT:
        m->u.result.ref.batch = rd_uint(&r, "batch", UINT64_MAX);
        m->u.result.ref.idx = (uint32_t)rd_uint(&r, "idx", UINT32_MAX);
        m->u.result.key = rd_bytes(&r, "key", PROTO_MAX_LINE_BYTES, 0, NULL);
        m->u.result.status =
            (uint32_t)rd_uint(&r, "status", PROTO_STATUS_RETRY);
        m->u.result.http_status = (uint32_t)rd_uint(&r, "http_status", 999);
        m->u.result.attempts = (uint32_t)rd_uint(&r, "attempts", UINT32_MAX);
        m->u.result.throttled = (uint32_t)rd_uint(&r, "throttled", UINT32_MAX);
        m->u.result.latency_ms =
            (uint32_t)rd_uint(&r, "latency_ms", UINT32_MAX);
        m->u.result.error =
            rd_bytes(&r, "error", PROTO_MAX_TEXT_BYTES, 1, NULL);
        m->u.result.response = rd_bytes(&r, "response", PROTO_MAX_BODY_BYTES, 1,
                                        &m->u.result.response_len);
        m->u.result.worker =
            rd_bytes(&r, "worker", PROTO_MAX_TEXT_BYTES, 0, NULL);
        if (r.i < r.n) /* optional */
            m->u.result.idem_key =
                rd_bytes(&r, "idem_key", PROTO_MAX_TEXT_BYTES, 1, NULL);
        if (r.i + 1 < r.n) { /* optional, together */
            m->u.result.started_us = rd_uint(&r, "started_us", UINT64_MAX);
            m->u.result.finished_us = rd_uint(&r, "finished_us", UINT64_MAX);
        }
        if (r.i < r.n) /* optional */
            m->u.result.dropped_len =
                rd_uint(&r, "dropped_len", PROTO_MAX_BODY_BYTES);
        if (r.i < r.n) /* optional */
            m->u.result.retry_in_ms =
                (uint32_t)rd_uint(&r, "retry_in_ms", UINT32_MAX);
        break;
    default:
        snprintf(err, errlen, "unknown message type %d", m->type);
        r.bad = 1;
        break;
    }
    if (r.bad)
        rc = FO_EPROTO;
out:
    msgpack_unpacked_destroy(&up);
    if (rc)
        proto_msg_fini(m);
    return rc;
}

void proto_msg_fini(proto_msg *m)
{
    switch (m->type) {
    case PROTO_HELLO:
        free(m->u.hello.worker_id);
        free(m->u.hello.host);
        break;
    case PROTO_JOB:
        free(m->u.job.job_json);
        break;
    case PROTO_HEARTBEAT:
        free(m->u.heartbeat.held);
        break;
    case PROTO_TOKEN_GRANT:
        free(m->u.token_grant.offset_us);
        break;
    case PROTO_BYE:
        free(m->u.bye.held);
        break;
    case PROTO_CTL:
    case PROTO_CTL_REPLY:
        free(m->u.ctl.json);
        break;
    case PROTO_WORK:
        free(m->u.work.key);
        free(m->u.work.url);
        free(m->u.work.body);
        free(m->u.work.idem_key);
        break;
    case PROTO_RESULT:
        free(m->u.result.key);
        free(m->u.result.error);
        free(m->u.result.response);
        free(m->u.result.worker);
        free(m->u.result.idem_key);
        break;
    default:
        break;
    }
    memset(m, 0, sizeof *m);
}

/* ---- MULTI envelopes --------------------------------------------------- */

void proto_batch_init(proto_batch *b)
{
    memset(b, 0, sizeof *b);
    buf_init(&b->frames, PROTO_MAX_WORK_BYTES + PROTO_MULTI_BYTES);
}

void proto_batch_fini(proto_batch *b)
{
    buf_fini(&b->frames);
    free(b->lens);
    memset(b, 0, sizeof *b);
}

void proto_batch_reset(proto_batch *b)
{
    buf_reset(&b->frames);
    b->n = 0;
}

int proto_batch_fits(const proto_batch *b, size_t len)
{
    return b->n == 0 ||
           (b->n < PROTO_MULTI_MAX && b->frames.len + len <= PROTO_MULTI_BYTES);
}

void proto_batch_add(proto_batch *b, const void *frame, size_t len)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 16;
        b->lens = xrealloc(b->lens, b->cap * sizeof *b->lens);
    }
    /* The cap (the largest WORK plus a batch) is never reached: callers
     * ask proto_batch_fits() first. */
    if (buf_append(&b->frames, frame, len) != FO_OK)
        return;
    b->lens[b->n++] = len;
}

fo_err proto_batch_finish(const proto_batch *b, uint64_t epoch, fo_buf *out)
{
    buf_reset(out);
    if (b->n == 1)
        return buf_append(out, b->frames.data, b->frames.len);
    sink snk = {out, 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &snk, sbuf_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint32(&pk, PROTO_VERSION);
    msgpack_pack_uint32(&pk, PROTO_MULTI);
    msgpack_pack_uint64(&pk, epoch);
    msgpack_pack_array(&pk, b->n);
    size_t off = 0;
    for (size_t i = 0; i < b->n; i++) {
        msgpack_pack_bin(&pk, b->lens[i]);
        msgpack_pack_bin_body(&pk, b->frames.data + off, b->lens[i]);
        off += b->lens[i];
    }
    return snk.failed ? FO_ETOOBIG : FO_OK;
}

int proto_frame_type(const void *data, size_t len)
{
    return peek_type(data, len);
}

int proto_multi_each(const void *data, size_t len, proto_frame_fn fn, void *ctx,
                     char *err, size_t errlen)
{
    if (peek_type(data, len) != PROTO_MULTI) {
        snprintf(err, errlen, "not a MULTI frame");
        return -1;
    }
    if (precheck(data, len, err, errlen) != FO_OK)
        return -1;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int n = -1;
    if (msgpack_unpack_next(&up, data, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != len) {
        snprintf(err, errlen, "MULTI frame does not decode as msgpack");
        goto out;
    }
    const msgpack_object *root = &up.data;
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size < 4) {
        snprintf(err, errlen, "MULTI frame is not a message array");
        goto out;
    }
    const msgpack_object *f = root->via.array.ptr;
    if (f[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        f[0].via.u64 != PROTO_VERSION) {
        snprintf(err, errlen, "MULTI frame of another protocol version");
        goto out;
    }
    const msgpack_object *list = &f[3];
    if (list->type != MSGPACK_OBJECT_ARRAY ||
        list->via.array.size > PROTO_MULTI_MAX) {
        snprintf(err, errlen,
                 "MULTI frame without a list of at most %d "
                 "frames",
                 PROTO_MULTI_MAX);
        goto out;
    }
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        const msgpack_object *e = &list->via.array.ptr[i];
        if (e->type != MSGPACK_OBJECT_BIN ||
            peek_type((const unsigned char *)e->via.bin.ptr, e->via.bin.size) ==
                PROTO_MULTI) {
            snprintf(err, errlen,
                     "MULTI frame holds something other than "
                     "messages");
            goto out;
        }
    }
    /* The bins point into data (msgpack-c does not copy them). */
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        const msgpack_object *e = &list->via.array.ptr[i];
        fn(ctx, e->via.bin.ptr, e->via.bin.size);
    }
    n = (int)list->via.array.size;
out:
    msgpack_unpacked_destroy(&up);
    return n;
}
