/* test_proto.c - the master/worker message codec (proto/proto.h): round
 * trips of every type, and rejection of anything malformed or hostile. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <msgpack.h>

#include "backoff.h"
#include "buf.h"
#include "error.h"
#include "proto.h"
#include "unit_assert.h"

#define BIG_CAP ((size_t)PROTO_MAX_CONTROL_BYTES + PROTO_MAX_BODY_BYTES)

/*
 * A counting allocator. msgpack-c takes no allocator, but this executable's
 * malloc family interposes on every shared library's (ELF symbol lookup
 * finds the executable first), so the bytes msgpack-c asks for while a
 * frame decodes can be counted. Sanitizers bring their own malloc, so under
 * them the tests fall back to the error code alone.
 */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||     \
    __has_feature(memory_sanitizer)
#define NO_COUNTING 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define NO_COUNTING 1
#endif

static int counting;         /* count allocations now */
static size_t counted_bytes; /* bytes requested while counting */

#ifndef NO_COUNTING
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t count, size_t n);
void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);

void *malloc(size_t n)
{
    if (counting)
        counted_bytes += n;
    return __libc_malloc(n);
}

void *calloc(size_t count, size_t n)
{
    if (counting)
        counted_bytes += count * n;
    return __libc_calloc(count, n);
}

void *realloc(void *p, size_t n)
{
    if (counting)
        counted_bytes += n;
    return __libc_realloc(p, n);
}

void free(void *p)
{
    __libc_free(p);
}
#endif

/* Decodes p and returns the result; *bytes is what the decoder allocated,
 * or SIZE_MAX when this build cannot count. */
static fo_err decode_counted(const void *p, size_t n, size_t *bytes, char *err,
                             size_t errlen)
{
    proto_msg m;
    counted_bytes = 0;
    counting = 1;
    fo_err e = proto_decode(p, n, &m, err, errlen);
    counting = 0;
    proto_msg_fini(&m);
#ifdef NO_COUNTING
    *bytes = SIZE_MAX;
#else
    *bytes = counted_bytes;
#endif
    return e;
}

/* Decodes; on failure asserts that *m was left empty with a reason. */
static fo_err decode(const void *p, size_t n, proto_msg *m)
{
    char err[256] = "";
    fo_err e = proto_decode(p, n, m, err, sizeof err);
    if (e != FO_OK && getenv("PROTO_DEBUG"))
        fprintf(stderr, "decode: %s\n", err);
    if (e != FO_OK) {
        static const proto_msg empty;
        assert_memory_equal(m, &empty, sizeof empty);
        if (err[0] == '\0')
            fail_msg("%s without a reason in err", fo_errname(e));
    }
    return e;
}

/* Encodes in into *frame (caller finis it) and decodes it into *out. */
static void round_trip(const proto_msg *in, fo_buf *frame, proto_msg *out)
{
    buf_init(frame, BIG_CAP);
    assert_fo(FO_OK, proto_encode(in, frame));
    assert_true(frame->len > 0);
    assert_fo(FO_OK, decode(frame->data, frame->len, out));
    assert_int_equal(out->type, in->type);
    assert_int_equal(out->epoch, in->epoch);
}

/* A msgpack writer for hand-made frames. */
typedef struct packer {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} packer;

static void packer_init(packer *p)
{
    msgpack_sbuffer_init(&p->sb);
    msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
}

static void pack_header(packer *p, size_t n, uint32_t version, uint32_t type)
{
    msgpack_pack_array(&p->pk, n);
    msgpack_pack_uint32(&p->pk, version);
    msgpack_pack_uint32(&p->pk, type);
    msgpack_pack_uint64(&p->pk, 5);
}

static void expect_reject(packer *p, fo_err want)
{
    proto_msg m;
    assert_fo(want, decode(p->sb.data, p->sb.size, &m));
    msgpack_sbuffer_destroy(&p->sb);
}

/* ---- round trips ------------------------------------------------------- */

static void test_round_trip_hello(void **state)
{
    (void)state;
    proto_msg in = {.type = PROTO_HELLO, .epoch = 0};
    in.u.hello.worker_id = "host-a:4242";
    in.u.hello.host = "host-a";
    in.u.hello.pid = 4242;
    in.u.hello.concurrency = 64;
    fo_buf f;
    proto_msg out;
    round_trip(&in, &f, &out);
    assert_string_equal(out.u.hello.worker_id, "host-a:4242");
    assert_string_equal(out.u.hello.host, "host-a");
    assert_int_equal(out.u.hello.pid, 4242);
    assert_int_equal(out.u.hello.concurrency, 64);
    proto_msg_fini(&out);
    buf_fini(&f);
    /* A negative pid survives too (int64 field). */
    in.u.hello.pid = -7;
    round_trip(&in, &f, &out);
    assert_int_equal(out.u.hello.pid, -7);
    proto_msg_fini(&out);
    buf_fini(&f);
}

static void test_round_trip_job(void **state)
{
    (void)state;
    proto_msg in = {.type = PROTO_JOB, .epoch = UINT64_MAX};
    in.u.job.job_json = "{\"url\":\"https://x/{id}\",\"rate\":\"10/s\"}";
    fo_buf f;
    proto_msg out;
    round_trip(&in, &f, &out);
    assert_string_equal(out.u.job.job_json, in.u.job.job_json);
    proto_msg_fini(&out);
    buf_fini(&f);
}

static void test_round_trip_heartbeat_with_refs(void **state)
{
    (void)state;
    proto_ref refs[] = {{UINT64_MAX, UINT32_MAX}, {0, 0}, {5, 7}};
    proto_msg in = {.type = PROTO_HEARTBEAT, .epoch = 9};
    in.u.heartbeat.inflight = 3;
    in.u.heartbeat.nheld = 3;
    in.u.heartbeat.held = refs;
    fo_buf f;
    proto_msg out;
    round_trip(&in, &f, &out);
    assert_int_equal(out.u.heartbeat.inflight, 3);
    assert_int_equal(out.u.heartbeat.nheld, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(out.u.heartbeat.held[i].batch, refs[i].batch);
        assert_int_equal(out.u.heartbeat.held[i].idx, refs[i].idx);
    }
    proto_msg_fini(&out);
    buf_fini(&f);
    /* No refs (master -> worker). */
    in.u.heartbeat.nheld = 0;
    in.u.heartbeat.held = NULL;
    round_trip(&in, &f, &out);
    assert_int_equal(out.u.heartbeat.nheld, 0);
    assert_null(out.u.heartbeat.held);
    proto_msg_fini(&out);
    buf_fini(&f);
}

static void test_round_trip_token_req(void **state)
{
    (void)state;
    proto_msg in = {.type = PROTO_TOKEN_REQ, .epoch = 3};
    in.u.token_req.want = 100;
    in.u.token_req.seen = UINT64_C(1) << 40;
    in.u.token_req.released = 17;
    fo_buf f;
    proto_msg out;
    round_trip(&in, &f, &out);
    assert_int_equal(out.u.token_req.want, 100);
    assert_int_equal(out.u.token_req.seen, UINT64_C(1) << 40);
    assert_int_equal(out.u.token_req.released, 17);
    proto_msg_fini(&out);
    buf_fini(&f);
}

static void test_round_trip_token_grant_with_offsets(void **state)
{
    (void)state;
    uint32_t offs[] = {0, 1, 1000, 65536, UINT32_MAX};
    proto_msg in = {.type = PROTO_TOKEN_GRANT, .epoch = 3};
    in.u.token_grant.total = 123456789;
    in.u.token_grant.n = 5;
    in.u.token_grant.offset_us = offs;
    fo_buf f;
    proto_msg out;
    round_trip(&in, &f, &out);
    assert_int_equal(out.u.token_grant.total, 123456789);
    assert_int_equal(out.u.token_grant.n, 5);
    assert_memory_equal(out.u.token_grant.offset_us, offs, sizeof offs);
    proto_msg_fini(&out);
    buf_fini(&f);
}

static void test_round_trip_throttled_bye_reset_done(void **state)
{
    (void)state;
    fo_buf f;
    proto_msg out;
    proto_msg th = {.type = PROTO_THROTTLED, .epoch = 1};
    th.u.throttled.http_status = 429;
    th.u.throttled.retry_after_ms = 1500;
    round_trip(&th, &f, &out);
    assert_int_equal(out.u.throttled.http_status, 429);
    assert_int_equal(out.u.throttled.retry_after_ms, 1500);
    proto_msg_fini(&out);
    buf_fini(&f);

    proto_ref refs[] = {{1, 2}, {3, 4}};
    proto_msg bye = {.type = PROTO_BYE, .epoch = 2};
    bye.u.bye.nheld = 2;
    bye.u.bye.held = refs;
    round_trip(&bye, &f, &out);
    assert_int_equal(out.u.bye.nheld, 2);
    assert_int_equal(out.u.bye.held[1].batch, 3);
    assert_int_equal(out.u.bye.held[1].idx, 4);
    proto_msg_fini(&out);
    buf_fini(&f);

    proto_msg reset = {.type = PROTO_RESET, .epoch = 11};
    round_trip(&reset, &f, &out);
    proto_msg_fini(&out);
    buf_fini(&f);
    proto_msg done = {.type = PROTO_DONE, .epoch = 12};
    round_trip(&done, &f, &out);
    proto_msg_fini(&out);
    buf_fini(&f);
}

static void test_round_trip_work_binary_body(void **state)
{
    (void)state;
    static const char body[] = "{\"a\":\0\xff\x01}";
    proto_msg in = {.type = PROTO_WORK, .epoch = 8};
    in.u.work.ref.batch = 77;
    in.u.work.ref.idx = 3;
    in.u.work.key = "item-1";
    in.u.work.url = "https://api.example/x/1";
    in.u.work.body = (char *)body;
    in.u.work.body_len = sizeof body - 1;
    in.u.work.idem_key = "0123456789abcdef";
    fo_buf f;
    proto_msg out;
    round_trip(&in, &f, &out);
    assert_int_equal(out.u.work.ref.batch, 77);
    assert_int_equal(out.u.work.ref.idx, 3);
    assert_string_equal(out.u.work.key, "item-1");
    assert_string_equal(out.u.work.url, in.u.work.url);
    assert_int_equal(out.u.work.body_len, sizeof body - 1);
    assert_memory_equal(out.u.work.body, body, sizeof body - 1);
    assert_string_equal(out.u.work.idem_key, "0123456789abcdef");
    proto_msg_fini(&out);
    buf_fini(&f);
    /* No body at all, and an empty body, stay distinct. */
    in.u.work.body = NULL;
    in.u.work.body_len = 0;
    round_trip(&in, &f, &out);
    assert_null(out.u.work.body);
    assert_int_equal(out.u.work.body_len, 0);
    proto_msg_fini(&out);
    buf_fini(&f);
    in.u.work.body = "";
    round_trip(&in, &f, &out);
    assert_non_null(out.u.work.body);
    assert_int_equal(out.u.work.body_len, 0);
    proto_msg_fini(&out);
    buf_fini(&f);
}

/* Keyed mode: a WORK with a pre-paid spend time and the item's history,
 * and a RESULT asking for a retry; an unkeyed WORK has neither. */
static void test_round_trip_keyed_work_and_retry(void **state)
{
    (void)state;
    proto_msg in = {.type = PROTO_WORK, .epoch = 8};
    in.u.work.ref = (proto_ref){5, 6};
    in.u.work.key = "k";
    in.u.work.url = "http://x/";
    in.u.work.idem_key = "i";
    fo_buf f;
    proto_msg out;
    round_trip(&in, &f, &out);
    assert_int_equal(0, out.u.work.prepaid);
    proto_msg_fini(&out);
    buf_fini(&f);
    in.u.work.prepaid = 1;
    in.u.work.paid_offset_us = 120000;
    in.u.work.attempts = 2;
    in.u.work.throttled = 1;
    round_trip(&in, &f, &out);
    assert_int_equal(1, out.u.work.prepaid);
    assert_int_equal(120000, out.u.work.paid_offset_us);
    assert_int_equal(2, out.u.work.attempts);
    assert_int_equal(1, out.u.work.throttled);
    proto_msg_fini(&out);
    buf_fini(&f);
    proto_msg r = {.type = PROTO_RESULT, .epoch = 8};
    r.u.result.ref = (proto_ref){5, 6};
    r.u.result.key = "k";
    r.u.result.status = PROTO_STATUS_RETRY;
    r.u.result.http_status = 429;
    r.u.result.attempts = 3;
    r.u.result.worker = "w";
    r.u.result.retry_in_ms = 2000;
    round_trip(&r, &f, &out);
    assert_int_equal(PROTO_STATUS_RETRY, out.u.result.status);
    assert_int_equal(2000, out.u.result.retry_in_ms);
    assert_int_equal(3, out.u.result.attempts);
    proto_msg_fini(&out);
    buf_fini(&f);
}

static void test_round_trip_result(void **state)
{
    (void)state;
    static const char resp[] = "bin\0ary";
    proto_msg in = {.type = PROTO_RESULT, .epoch = 4};
    in.u.result.ref.batch = 9;
    in.u.result.ref.idx = 10;
    in.u.result.key = "k";
    in.u.result.status = PROTO_STATUS_FAILED;
    in.u.result.http_status = 503;
    in.u.result.attempts = 5;
    in.u.result.throttled = 2;
    in.u.result.latency_ms = 1234;
    in.u.result.error = "HTTP 503 after 5 attempts";
    in.u.result.response = (char *)resp;
    in.u.result.response_len = sizeof resp - 1;
    in.u.result.worker = "w1";
    in.u.result.idem_key = "fo-1-2";
    fo_buf f;
    proto_msg out;
    round_trip(&in, &f, &out);
    assert_string_equal(out.u.result.idem_key, "fo-1-2");
    assert_int_equal(out.u.result.ref.batch, 9);
    assert_int_equal(out.u.result.ref.idx, 10);
    assert_string_equal(out.u.result.key, "k");
    assert_int_equal(out.u.result.status, PROTO_STATUS_FAILED);
    assert_int_equal(out.u.result.http_status, 503);
    assert_int_equal(out.u.result.attempts, 5);
    assert_int_equal(out.u.result.throttled, 2);
    assert_int_equal(out.u.result.latency_ms, 1234);
    assert_string_equal(out.u.result.error, in.u.result.error);
    assert_int_equal(out.u.result.response_len, sizeof resp - 1);
    assert_memory_equal(out.u.result.response, resp, sizeof resp - 1);
    assert_string_equal(out.u.result.worker, "w1");
    proto_msg_fini(&out);
    buf_fini(&f);
    /* Success without error or response. */
    in.u.result.status = PROTO_STATUS_OK;
    in.u.result.http_status = 200;
    in.u.result.error = NULL;
    in.u.result.response = NULL;
    in.u.result.response_len = 0;
    round_trip(&in, &f, &out);
    assert_int_equal(out.u.result.status, PROTO_STATUS_OK);
    assert_null(out.u.result.error);
    assert_null(out.u.result.response);
    assert_int_equal(out.u.result.response_len, 0);
    proto_msg_fini(&out);
    buf_fini(&f);
    /* The attempt times, when the worker gives them. */
    in.u.result.started_us = UINT64_C(1796464800123456);
    in.u.result.finished_us = UINT64_C(1796464801433000);
    round_trip(&in, &f, &out);
    assert_true(out.u.result.started_us == in.u.result.started_us);
    assert_true(out.u.result.finished_us == in.u.result.finished_us);
    proto_msg_fini(&out);
    buf_fini(&f);
    /* The size of a response the worker left out (--keep, not JSON). */
    in.u.result.dropped_len = 12345;
    round_trip(&in, &f, &out);
    assert_int_equal(out.u.result.dropped_len, 12345);
    proto_msg_fini(&out);
    buf_fini(&f);
    in.u.result.dropped_len = 0;
    /* A RESULT from an older worker, without idem_key and times, still
     * decodes. */
    in.u.result.idem_key = NULL;
    in.u.result.started_us = in.u.result.finished_us = 0;
    buf_init(&f, BIG_CAP);
    assert_fo(FO_OK, proto_encode(&in, &f));
    /* 18 elements: array16 header dc 00 12; the last four are nil 0 0 0. */
    assert_int_equal((unsigned char)f.data[0], 0xdc);
    assert_int_equal((unsigned char)f.data[2], 18);
    f.data[2] = (char)0x9e; /* say 14 */
    assert_fo(FO_OK, decode(f.data + 2, f.len - 2 - 4, &out));
    assert_null(out.u.result.idem_key);
    assert_true(out.u.result.started_us == 0);
    assert_string_equal(out.u.result.worker, "w1");
    proto_msg_fini(&out);
    buf_fini(&f);
}

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal(proto_type_name(PROTO_HELLO), "HELLO");
    assert_string_equal(proto_type_name(PROTO_TOKEN_GRANT), "TOKEN_GRANT");
    assert_string_equal(proto_type_name(PROTO_DONE), "DONE");
    assert_string_equal(proto_type_name(0), "UNKNOWN");
    assert_string_equal(proto_type_name(PROTO_PAUSE), "PAUSE");
    assert_string_equal(proto_type_name(PROTO_CTL_REPLY), "CTL_REPLY");
    assert_string_equal(proto_type_name(PROTO_DRAIN), "DRAIN");
    assert_string_equal(proto_type_name(PROTO_LAST_TYPE + 1), "UNKNOWN");
    assert_string_equal(proto_type_name(-1), "UNKNOWN");
}

/* ---- rejections -------------------------------------------------------- */

/* A valid WORK frame with a binary body, for truncation and mutation. */
static void work_frame(fo_buf *f)
{
    proto_msg in = {.type = PROTO_WORK, .epoch = 8};
    in.u.work.ref.batch = 300;
    in.u.work.ref.idx = 70000;
    in.u.work.key = "key";
    in.u.work.url = "https://h/p?q=1";
    in.u.work.body = "b\0dy";
    in.u.work.body_len = 4;
    in.u.work.idem_key = "idem";
    buf_init(f, 4096);
    assert_fo(FO_OK, proto_encode(&in, f));
}

static void test_empty_frame_rejected(void **state)
{
    (void)state;
    proto_msg m;
    static const char byte = 0;
    assert_fo(FO_EPROTO, decode(&byte, 0, &m));
}

static void test_every_truncation_rejected(void **state)
{
    (void)state;
    fo_buf f;
    work_frame(&f);
    for (size_t n = 0; n < f.len; n++) {
        /* A heap copy of exactly n bytes, so ASan sees any over-read. */
        char *p = malloc(n ? n : 1);
        memcpy(p, f.data, n);
        proto_msg m;
        fo_err e = decode(p, n, &m);
        if (e != FO_EPROTO)
            fail_msg("prefix of %zu/%zu bytes: %s", n, f.len, fo_errname(e));
        free(p);
    }
    buf_fini(&f);
}

static void test_trailing_byte_rejected(void **state)
{
    (void)state;
    fo_buf f;
    work_frame(&f);
    proto_msg m;
    assert_fo(FO_OK, decode(f.data, f.len, &m));
    proto_msg_fini(&m);
    assert_fo(FO_OK, buf_append(&f, "\xc0", 1));
    assert_fo(FO_EPROTO, decode(f.data, f.len, &m));
    buf_fini(&f);
}

static void test_wrong_version(void **state)
{
    (void)state;
    packer p;
    packer_init(&p);
    pack_header(&p, 3, PROTO_VERSION + 1, PROTO_DONE);
    expect_reject(&p, FO_EVERSION);
    packer_init(&p);
    pack_header(&p, 3, 0, PROTO_DONE);
    expect_reject(&p, FO_EVERSION);
    /* A version that is not an integer is malformed, not another version. */
    packer_init(&p);
    msgpack_pack_array(&p.pk, 3);
    msgpack_pack_str_with_body(&p.pk, "1", 1);
    msgpack_pack_uint32(&p.pk, PROTO_DONE);
    msgpack_pack_uint64(&p.pk, 0);
    expect_reject(&p, FO_EPROTO);
}

static void test_unknown_type(void **state)
{
    (void)state;
    static const uint32_t types[] = {0, 12, 99, UINT32_MAX};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        packer p;
        packer_init(&p);
        pack_header(&p, 3, PROTO_VERSION, types[i]);
        expect_reject(&p, FO_EPROTO);
    }
}

static void test_wrong_field_types(void **state)
{
    (void)state;
    packer p;
    /* HELLO with a string pid. */
    packer_init(&p);
    pack_header(&p, 7, PROTO_VERSION, PROTO_HELLO);
    msgpack_pack_str_with_body(&p.pk, "w", 1);
    msgpack_pack_str_with_body(&p.pk, "h", 1);
    msgpack_pack_str_with_body(&p.pk, "123", 3);
    msgpack_pack_uint32(&p.pk, 4);
    expect_reject(&p, FO_EPROTO);
    /* TOKEN_REQ with a negative want. */
    packer_init(&p);
    pack_header(&p, 6, PROTO_VERSION, PROTO_TOKEN_REQ);
    msgpack_pack_int32(&p.pk, -1);
    msgpack_pack_uint32(&p.pk, 0);
    msgpack_pack_uint32(&p.pk, 0);
    expect_reject(&p, FO_EPROTO);
    /* THROTTLED with a float status. */
    packer_init(&p);
    pack_header(&p, 5, PROTO_VERSION, PROTO_THROTTLED);
    msgpack_pack_double(&p.pk, 429.0);
    msgpack_pack_uint32(&p.pk, 0);
    expect_reject(&p, FO_EPROTO);
    /* WORK with an integer url. */
    packer_init(&p);
    pack_header(&p, 9, PROTO_VERSION, PROTO_WORK);
    msgpack_pack_uint32(&p.pk, 1);
    msgpack_pack_uint32(&p.pk, 2);
    msgpack_pack_str_with_body(&p.pk, "k", 1);
    msgpack_pack_uint32(&p.pk, 3);
    msgpack_pack_nil(&p.pk);
    msgpack_pack_str_with_body(&p.pk, "i", 1);
    expect_reject(&p, FO_EPROTO);
}

static void test_missing_fields(void **state)
{
    (void)state;
    packer p;
    packer_init(&p);
    pack_header(&p, 5, PROTO_VERSION, PROTO_HELLO);
    msgpack_pack_str_with_body(&p.pk, "w", 1);
    msgpack_pack_str_with_body(&p.pk, "h", 1);
    expect_reject(&p, FO_EPROTO);
    packer_init(&p);
    msgpack_pack_array(&p.pk, 2);
    msgpack_pack_uint32(&p.pk, PROTO_VERSION);
    msgpack_pack_uint32(&p.pk, PROTO_DONE);
    expect_reject(&p, FO_EPROTO);
}

static void test_huge_counts_fail_fast(void **state)
{
    (void)state;
    /* Each claims 2^32-1 elements or bytes in a 10-byte frame. */
    static const unsigned char frames[][10] = {
        {0xdd, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0}, /* array32 */
        {0xdf, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0}, /* map32 */
        {0xdb, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0}, /* str32 */
        {0xc6, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0}, /* bin32 */
        {0xc9, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0}, /* ext32 */
        /* inside a valid-looking message: [1, 5, 0, 0, array32] */
        {0x95, 0x01, 0x05, 0x00, 0x00, 0xdd, 0xff, 0xff, 0xff, 0xff},
    };
    for (size_t i = 0; i < sizeof frames / sizeof frames[0]; i++) {
        proto_msg m;
        fo_err e = decode(frames[i], sizeof frames[i], &m);
        if (e != FO_EPROTO)
            fail_msg("frame %zu: expected EPROTO, got %s", i, fo_errname(e));
    }
}

static void test_map_instead_of_array(void **state)
{
    (void)state;
    packer p;
    packer_init(&p);
    msgpack_pack_map(&p.pk, 2);
    msgpack_pack_uint32(&p.pk, 0);
    msgpack_pack_uint32(&p.pk, PROTO_VERSION);
    msgpack_pack_uint32(&p.pk, 1);
    msgpack_pack_uint32(&p.pk, PROTO_DONE);
    expect_reject(&p, FO_EPROTO);
    packer_init(&p);
    msgpack_pack_uint32(&p.pk, 1);
    expect_reject(&p, FO_EPROTO);
}

static void test_deep_nesting_rejected(void **state)
{
    (void)state;
    enum { DEPTH = 10000 };
    unsigned char *p = malloc(DEPTH + 8);
    assert_non_null(p);
    memset(p, 0x91, DEPTH - 1); /* fixarray of one element */
    p[DEPTH - 1] = 0x90;        /* innermost: empty */
    proto_msg m;
    /* 10000 one-element arrays: more than any message needs. */
    assert_fo(FO_ETOOBIG, decode(p, DEPTH, &m));
    /* The same inside a HEARTBEAT's held field: [1, 3, 0, 0, [[[...]]]]
     * fits the element cap of a heartbeat, and is malformed. */
    unsigned char *q = malloc(DEPTH + 8);
    assert_non_null(q);
    memcpy(q, "\x95\x01\x03\x00\x00", 5);
    memcpy(q + 5, p, DEPTH);
    assert_fo(FO_EPROTO, decode(q, DEPTH + 5, &m));
    free(q);
    free(p);
}

static void check_no_crash(const void *p, size_t n)
{
    proto_msg m;
    fo_err e = decode(p, n, &m);
    if (e != FO_OK && e != FO_EPROTO && e != FO_EVERSION && e != FO_ETOOBIG)
        fail_msg("unexpected %s", fo_errname(e));
    proto_msg_fini(&m);
}

static void test_random_frames_never_crash(void **state)
{
    (void)state;
    uint64_t seed = 0xF00DFACE12345678ULL;
    unsigned char frame[256];
    for (int it = 0; it < 5000; it++) {
        size_t n = (size_t)(backoff_rand(&seed) % sizeof frame) + 1;
        for (size_t i = 0; i < n; i++)
            frame[i] = (unsigned char)backoff_rand(&seed);
        /* Half of them start like a message, to get past the header. */
        if (it % 2 && n > 4) {
            frame[0] = (unsigned char)(0x90 | (frame[0] & 0x0f));
            frame[1] = 0x01;
            frame[2] = (unsigned char)(1 + frame[2] % 11);
        }
        unsigned char *copy = malloc(n); /* exact size for ASan */
        memcpy(copy, frame, n);
        check_no_crash(copy, n);
        free(copy);
    }
}

static void test_mutated_frames_never_crash(void **state)
{
    (void)state;
    fo_buf f;
    work_frame(&f);
    uint64_t seed = 0xDEADBEEFCAFEULL;
    unsigned char *copy = malloc(f.len);
    for (int it = 0; it < 5000; it++) {
        memcpy(copy, f.data, f.len);
        int flips = 1 + (int)(backoff_rand(&seed) % 4);
        for (int k = 0; k < flips; k++)
            copy[backoff_rand(&seed) % f.len] =
                (unsigned char)backoff_rand(&seed);
        check_no_crash(copy, f.len);
    }
    free(copy);
    buf_fini(&f);
}

static void test_grant_over_cap_rejected(void **state)
{
    (void)state;
    uint32_t *offs = calloc(PROTO_MAX_GRANT + 1, sizeof *offs);
    assert_non_null(offs);
    proto_msg in = {.type = PROTO_TOKEN_GRANT, .epoch = 1};
    in.u.token_grant.total = PROTO_MAX_GRANT;
    in.u.token_grant.n = PROTO_MAX_GRANT;
    in.u.token_grant.offset_us = offs;
    fo_buf f;
    proto_msg out;
    round_trip(&in, &f, &out); /* exactly at the cap is fine */
    assert_int_equal(out.u.token_grant.n, PROTO_MAX_GRANT);
    proto_msg_fini(&out);
    buf_fini(&f);
    in.u.token_grant.n = PROTO_MAX_GRANT + 1;
    buf_init(&f, BIG_CAP);
    assert_fo(FO_OK, proto_encode(&in, &f));
    assert_fo(FO_EPROTO, decode(f.data, f.len, &out));
    buf_fini(&f);
    free(offs);
}

static void test_heartbeat_over_cap_rejected(void **state)
{
    (void)state;
    proto_ref *refs = calloc(PROTO_MAX_HELD + 1, sizeof *refs);
    assert_non_null(refs);
    proto_msg in = {.type = PROTO_HEARTBEAT, .epoch = 1};
    in.u.heartbeat.nheld = PROTO_MAX_HELD;
    in.u.heartbeat.held = refs;
    fo_buf f;
    proto_msg out;
    round_trip(&in, &f, &out);
    assert_int_equal(out.u.heartbeat.nheld, PROTO_MAX_HELD);
    proto_msg_fini(&out);
    buf_fini(&f);
    in.u.heartbeat.nheld = PROTO_MAX_HELD + 1;
    buf_init(&f, BIG_CAP);
    assert_fo(FO_OK, proto_encode(&in, &f));
    assert_fo(FO_EPROTO, decode(f.data, f.len, &out));
    buf_fini(&f);
    free(refs);
}

/* ---- allocation caps --------------------------------------------------- */

/* Writes an array32 header claiming n elements at p. */
static size_t put_array32(unsigned char *p, uint32_t n)
{
    p[0] = 0xdd;
    p[1] = (unsigned char)(n >> 24);
    p[2] = (unsigned char)(n >> 16);
    p[3] = (unsigned char)(n >> 8);
    p[4] = (unsigned char)n;
    return 5;
}

/* Asserts that frame f of n bytes is refused with FO_ETOOBIG naming `name`
 * and that the decoder allocated (almost) nothing on the way. */
static void expect_refused_cheaply(const unsigned char *f, size_t n,
                                   const char *name)
{
    char err[256] = "";
    size_t bytes;
    fo_err e = decode_counted(f, n, &bytes, err, sizeof err);
    if (e != FO_ETOOBIG)
        fail_msg("%zu-byte %s frame: %s (%s)", n, name, fo_errname(e), err);
    assert_contains(err, name);
    if (bytes != SIZE_MAX && bytes > 4096)
        fail_msg("%zu-byte %s frame: the decoder allocated %zu bytes", n, name,
                 bytes);
}

static void test_frame_of_nils_refused_before_allocating(void **state)
{
    (void)state;
    /* [1, RESULT, 0, nil x ~4M]: 4 MiB that msgpack-c would have turned
     * into 96 MiB of msgpack_objects. */
    enum { N = 4 << 20 };
    unsigned char *f = malloc(N);
    assert_non_null(f);
    size_t at = put_array32(f, N - 5);
    f[at++] = PROTO_VERSION;
    f[at++] = PROTO_RESULT;
    f[at++] = 0;
    memset(f + at, 0xc0, N - at);
    expect_refused_cheaply(f, N, "RESULT");
    /* [1, HEARTBEAT, 0, 0, [nil x ~1.9M]]: within the control frame cap,
     * ten times the refs a heartbeat may list. */
    size_t n = PROTO_MAX_CONTROL_BYTES - 64;
    memcpy(f, "\x95\x01\x03\x00\x00", 5);
    at = 5 + put_array32(f + 5, (uint32_t)(n - 10));
    memset(f + at, 0xc0, n - at);
    expect_refused_cheaply(f, n, "HEARTBEAT");
    /* The same nils as a map: pairs count twice. */
    at = 5;
    f[at++] = 0xdf;
    uint32_t pairs = (uint32_t)((n - 10) / 2);
    f[at++] = (unsigned char)(pairs >> 24);
    f[at++] = (unsigned char)(pairs >> 16);
    f[at++] = (unsigned char)(pairs >> 8);
    f[at++] = (unsigned char)pairs;
    memset(f + at, 0xc0, 2 * (size_t)pairs);
    expect_refused_cheaply(f, at + 2 * (size_t)pairs, "HEARTBEAT");
    free(f);
}

static void test_nested_empty_arrays_refused(void **state)
{
    (void)state;
    /* [1, WORK, 0, [], [], ...]: each empty array is one element of the
     * message array, far past what a WORK has. */
    enum { N = 1 << 20 };
    unsigned char *f = malloc(N);
    assert_non_null(f);
    size_t at = put_array32(f, N - 5);
    f[at++] = PROTO_VERSION;
    f[at++] = PROTO_WORK;
    f[at++] = 0;
    memset(f + at, 0x90, N - at);
    expect_refused_cheaply(f, N, "WORK");
    /* [1, BYE, 0, [[[[...]]]]]: one list, but nested 1M deep. */
    memcpy(f, "\x94\x01\x07\x00", 4);
    memset(f + 4, 0x91, N - 5);
    f[N - 1] = 0x90;
    expect_refused_cheaply(f, N, "BYE");
    /* A TOKEN_GRANT may carry PROTO_MAX_GRANT offsets, not a heartbeat's
     * worth. */
    memcpy(f, "\x96\x01\x05\x00\x00\x00", 6);
    at = 6 + put_array32(f + 6, 2 * PROTO_MAX_GRANT);
    memset(f + at, 0x00, 2 * PROTO_MAX_GRANT);
    expect_refused_cheaply(f, at + 2 * PROTO_MAX_GRANT, "TOKEN_GRANT");
    free(f);
}

static void test_unknown_type_gets_the_smallest_caps(void **state)
{
    (void)state;
    /* [1, 99, 0, nil x 100]: more elements than any message array. */
    unsigned char f[128];
    memcpy(f, "\xdc\x00\x67\x01\x63\x00", 6);
    memset(f + 6, 0xc0, 100);
    expect_refused_cheaply(f, 106, "frame (unknown type 99)");
    assert_int_equal(proto_max_frame_bytes(99), PROTO_MAX_CONTROL_BYTES);
    assert_int_equal(proto_max_frame_bytes(0), PROTO_MAX_CONTROL_BYTES);
}

static void test_frame_over_its_type_cap_refused(void **state)
{
    (void)state;
    assert_int_equal(proto_max_frame_bytes(PROTO_WORK), PROTO_MAX_WORK_BYTES);
    assert_int_equal(proto_max_frame_bytes(PROTO_RESULT),
                     PROTO_MAX_RESULT_BYTES);
    assert_int_equal(proto_max_frame_bytes(PROTO_CTL), PROTO_MAX_CONTROL_BYTES);
    assert_true(PROTO_MAX_RESULT_BYTES > PROTO_MAX_BODY_BYTES);
    assert_true(PROTO_WORK_BYTES(1 << 20) < PROTO_MAX_WORK_BYTES);
    /* A CTL one byte over the control cap is refused by its size alone. */
    size_t n = PROTO_MAX_CONTROL_BYTES + 1;
    unsigned char *f = malloc(n);
    assert_non_null(f);
    memcpy(f, "\x94\x01\x0e\x00\xdb", 5);
    uint32_t sl = (uint32_t)(n - 9);
    f[5] = (unsigned char)(sl >> 24);
    f[6] = (unsigned char)(sl >> 16);
    f[7] = (unsigned char)(sl >> 8);
    f[8] = (unsigned char)sl;
    memset(f + 9, 'x', sl);
    expect_refused_cheaply(f, n, "CTL");
    free(f);
}

/* Round-trips in and asserts it decodes, allocating no more than its type
 * allows plus copies of the payload bytes (payload). */
static void round_trip_within_caps(const proto_msg *in, size_t payload)
{
    fo_buf f;
    buf_init(&f, BIG_CAP);
    assert_fo(FO_OK, proto_encode(in, &f));
    char err[256] = "";
    size_t bytes;
    fo_err e = decode_counted(f.data, f.len, &bytes, err, sizeof err);
    if (e != FO_OK)
        fail_msg("%s of %zu bytes: %s (%s)", proto_type_name(in->type), f.len,
                 fo_errname(e), err);
    /* msgpack-c's zone doubles its chunks: twice the objects, at worst. */
    size_t allowed = 2 * (2 * (size_t)PROTO_MAX_HELD + PROTO_MAX_FIELDS) *
                         sizeof(msgpack_object) +
                     2 * payload + 65536;
    /* The payload is copied out, so a working count sees at least that. */
    if (bytes != SIZE_MAX && bytes < payload)
        fail_msg("%s: counted %zu bytes, below the %zu copied out",
                 proto_type_name(in->type), bytes, payload);
    if (bytes != SIZE_MAX && bytes > allowed)
        fail_msg("%s: allocated %zu bytes, allowed %zu",
                 proto_type_name(in->type), bytes, allowed);
    buf_fini(&f);
}

static void test_largest_valid_frames_still_decode(void **state)
{
    (void)state;
    /* A full HEARTBEAT with the widest refs fits the control cap. */
    proto_ref *refs = calloc(PROTO_MAX_HELD, sizeof *refs);
    assert_non_null(refs);
    for (uint32_t i = 0; i < PROTO_MAX_HELD; i++)
        refs[i] = (proto_ref){UINT64_MAX - i, UINT32_MAX - i};
    proto_msg in = {.type = PROTO_HEARTBEAT, .epoch = 1};
    in.u.heartbeat.nheld = PROTO_MAX_HELD;
    in.u.heartbeat.held = refs;
    round_trip_within_caps(&in, PROTO_MAX_HELD * sizeof *refs);
    in = (proto_msg){.type = PROTO_BYE, .epoch = 1};
    in.u.bye.nheld = PROTO_MAX_HELD;
    in.u.bye.held = refs;
    round_trip_within_caps(&in, PROTO_MAX_HELD * sizeof *refs);
    free(refs);
    /* A JOB and a CTL of the largest JSON allowed. */
    char *json = malloc(PROTO_MAX_JOB_BYTES + 1);
    assert_non_null(json);
    memset(json, ' ', PROTO_MAX_JOB_BYTES);
    json[PROTO_MAX_JOB_BYTES] = '\0';
    in = (proto_msg){.type = PROTO_JOB, .epoch = 1};
    in.u.job.job_json = json;
    round_trip_within_caps(&in, PROTO_MAX_JOB_BYTES);
    in = (proto_msg){.type = PROTO_CTL_REPLY, .epoch = 1};
    in.u.ctl.json = json;
    round_trip_within_caps(&in, PROTO_MAX_JOB_BYTES);
    free(json);
    /* RESULT and WORK may be larger than the control cap. */
    size_t big = PROTO_MAX_CONTROL_BYTES * 2;
    char *body = calloc(big, 1);
    assert_non_null(body);
    in = (proto_msg){.type = PROTO_RESULT, .epoch = 1};
    in.u.result.key = "k";
    in.u.result.response = body;
    in.u.result.response_len = big;
    in.u.result.worker = "w";
    round_trip_within_caps(&in, big);
    in = (proto_msg){.type = PROTO_WORK, .epoch = 1};
    in.u.work.key = "k";
    in.u.work.url = "http://x/";
    in.u.work.body = body;
    in.u.work.body_len = big;
    in.u.work.idem_key = "i";
    round_trip_within_caps(&in, big);
    free(body);
}

static void test_round_trip_pause_rateinfo_ctl(void **state)
{
    (void)state;
    fo_buf f;
    proto_msg out;
    proto_msg in = {.type = PROTO_PAUSE, .epoch = 2};
    in.u.pause.pause_ms = 1234;
    round_trip(&in, &f, &out);
    assert_int_equal(out.u.pause.pause_ms, 1234);
    proto_msg_fini(&out);
    buf_fini(&f);
    in = (proto_msg){.type = PROTO_RATEINFO, .epoch = 2};
    in.u.rateinfo.limit = 100;
    in.u.rateinfo.window_ms = -1;
    in.u.rateinfo.remaining = 0;
    in.u.rateinfo.reset_ms = INT64_MAX;
    round_trip(&in, &f, &out);
    assert_int_equal(out.u.rateinfo.limit, 100);
    assert_int_equal(out.u.rateinfo.window_ms, -1);
    assert_int_equal(out.u.rateinfo.remaining, 0);
    assert_int_equal(out.u.rateinfo.reset_ms, INT64_MAX);
    proto_msg_fini(&out);
    buf_fini(&f);
    static const int ctl_types[] = {PROTO_CTL, PROTO_CTL_REPLY};
    for (size_t i = 0; i < 2; i++) {
        in = (proto_msg){.type = ctl_types[i], .epoch = 2};
        in.u.ctl.json = "{\"cmd\":\"status\"}";
        round_trip(&in, &f, &out);
        assert_string_equal(out.u.ctl.json, "{\"cmd\":\"status\"}");
        proto_msg_fini(&out);
        buf_fini(&f);
    }
}

static void test_encode_past_cap_leaves_buffer(void **state)
{
    (void)state;
    proto_msg in = {.type = PROTO_WORK, .epoch = 8};
    in.u.work.key = "key";
    in.u.work.url = "https://a.long.host.example/with/a/long/path";
    in.u.work.idem_key = "idem";
    fo_buf f;
    buf_init(&f, 20);
    assert_fo(FO_OK, buf_puts(&f, "prefix"));
    assert_fo(FO_ETOOBIG, proto_encode(&in, &f));
    assert_int_equal(f.len, 6);
    assert_string_equal(buf_str(&f), "prefix");
    buf_fini(&f);
    /* Also from an empty buffer with a tiny cap. */
    buf_init(&f, 2);
    assert_fo(FO_ETOOBIG, proto_encode(&in, &f));
    assert_int_equal(f.len, 0);
    buf_fini(&f);
}

static void test_encode_unknown_type_writes_nothing(void **state)
{
    (void)state;
    proto_msg in = {.type = 42, .epoch = 1};
    fo_buf f;
    buf_init(&f, 1024);
    assert_fo(FO_EINVAL, proto_encode(&in, &f));
    assert_int_equal(f.len, 0);
    buf_fini(&f);
}

static void test_fini_twice_is_safe(void **state)
{
    (void)state;
    fo_buf f;
    work_frame(&f);
    proto_msg m;
    assert_fo(FO_OK, decode(f.data, f.len, &m));
    proto_msg_fini(&m);
    assert_int_equal(m.type, 0);
    assert_null(m.u.work.key);
    proto_msg_fini(&m);
    proto_msg zero;
    memset(&zero, 0, sizeof zero);
    proto_msg_fini(&zero);
    buf_fini(&f);
}

/* ---- MULTI envelopes --------------------------------------------------- */

typedef struct seen_frames {
    int n;
    int types[8];
} seen_frames;

static void on_frame(void *ctx, const void *data, size_t len)
{
    seen_frames *s = ctx;
    proto_msg m;
    char err[256];
    assert_fo(FO_OK, proto_decode(data, len, &m, err, sizeof err));
    if (s->n < 8)
        s->types[s->n] = m.type;
    s->n++;
    proto_msg_fini(&m);
}

static void add_msg(proto_batch *b, proto_msg *m)
{
    fo_buf f;
    buf_init(&f, BIG_CAP);
    assert_fo(FO_OK, proto_encode(m, &f));
    assert_true(proto_batch_fits(b, f.len));
    proto_batch_add(b, f.data, f.len);
    buf_fini(&f);
}

static void test_multi_round_trip(void **state)
{
    (void)state;
    proto_batch b;
    proto_batch_init(&b);
    fo_buf env;
    buf_init(&env, BIG_CAP);
    char err[256];
    /* One message alone is written as itself. */
    proto_msg done = {.type = PROTO_DONE, .epoch = 3};
    add_msg(&b, &done);
    assert_fo(FO_OK, proto_batch_finish(&b, 3, &env));
    assert_int_equal(proto_frame_type(env.data, env.len), PROTO_DONE);
    /* Three become one MULTI; each comes out whole, in order. */
    proto_msg work = {.type = PROTO_WORK, .epoch = 3};
    work.u.work.key = "k";
    work.u.work.url = "http://x/k";
    work.u.work.idem_key = "fo-1-2";
    add_msg(&b, &work);
    proto_msg reset = {.type = PROTO_RESET, .epoch = 3};
    add_msg(&b, &reset);
    assert_fo(FO_OK, proto_batch_finish(&b, 3, &env));
    assert_int_equal(proto_frame_type(env.data, env.len), PROTO_MULTI);
    seen_frames s = {0};
    assert_int_equal(
        proto_multi_each(env.data, env.len, on_frame, &s, err, sizeof err), 3);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.types[0], PROTO_DONE);
    assert_int_equal(s.types[1], PROTO_WORK);
    assert_int_equal(s.types[2], PROTO_RESET);
    /* proto_decode refuses an envelope: it is not one message. */
    proto_msg m;
    assert_int_not_equal(proto_decode(env.data, env.len, &m, err, sizeof err),
                         FO_OK);
    /* A batch is full at PROTO_MULTI_MAX frames. */
    proto_batch_reset(&b);
    for (int i = 0; i < PROTO_MULTI_MAX; i++)
        add_msg(&b, &reset);
    fo_buf f;
    buf_init(&f, BIG_CAP);
    assert_fo(FO_OK, proto_encode(&reset, &f));
    assert_false(proto_batch_fits(&b, f.len));
    buf_fini(&f);
    buf_fini(&env);
    proto_batch_fini(&b);
}

static void test_multi_rejects_nesting_and_junk(void **state)
{
    (void)state;
    char err[256];
    seen_frames s = {0};
    /* [2, 17, 0, [bin(MULTI [2,17,0,[]])]]: an envelope inside one. */
    const unsigned char nested[] = {0x94, 0x02, 0x11, 0x00, 0x91, 0xc4,
                                    0x05, 0x94, 0x02, 0x11, 0x00, 0x90};
    assert_int_equal(
        proto_multi_each(nested, sizeof nested, on_frame, &s, err, sizeof err),
        -1);
    /* [2, 17, 0, [1]]: not a frame. */
    const unsigned char junk[] = {0x94, 0x02, 0x11, 0x00, 0x91, 0x01};
    assert_int_equal(
        proto_multi_each(junk, sizeof junk, on_frame, &s, err, sizeof err), -1);
    /* [2, 17, 0]: no list. */
    const unsigned char short_[] = {0x93, 0x02, 0x11, 0x00};
    assert_int_equal(
        proto_multi_each(short_, sizeof short_, on_frame, &s, err, sizeof err),
        -1);
    /* A list longer than PROTO_MULTI_MAX is refused before any frame. */
    unsigned char big[16 + 3 * (PROTO_MULTI_MAX + 1)];
    size_t n = 0;
    big[n++] = 0x94;
    big[n++] = 0x02;
    big[n++] = 0x11;
    big[n++] = 0x00;
    big[n++] = 0xdc;
    big[n++] = (unsigned char)((PROTO_MULTI_MAX + 1) >> 8);
    big[n++] = (unsigned char)((PROTO_MULTI_MAX + 1) & 0xff);
    for (int i = 0; i <= PROTO_MULTI_MAX; i++) {
        big[n++] = 0xc4;
        big[n++] = 0x01;
        big[n++] = 0xc0;
    }
    assert_int_equal(proto_multi_each(big, n, on_frame, &s, err, sizeof err),
                     -1);
    assert_int_equal(s.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_hello),
        cmocka_unit_test(test_round_trip_job),
        cmocka_unit_test(test_round_trip_heartbeat_with_refs),
        cmocka_unit_test(test_round_trip_token_req),
        cmocka_unit_test(test_round_trip_token_grant_with_offsets),
        cmocka_unit_test(test_round_trip_throttled_bye_reset_done),
        cmocka_unit_test(test_round_trip_work_binary_body),
        cmocka_unit_test(test_round_trip_result),
        cmocka_unit_test(test_round_trip_keyed_work_and_retry),
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_empty_frame_rejected),
        cmocka_unit_test(test_every_truncation_rejected),
        cmocka_unit_test(test_trailing_byte_rejected),
        cmocka_unit_test(test_wrong_version),
        cmocka_unit_test(test_unknown_type),
        cmocka_unit_test(test_wrong_field_types),
        cmocka_unit_test(test_missing_fields),
        cmocka_unit_test(test_huge_counts_fail_fast),
        cmocka_unit_test(test_map_instead_of_array),
        cmocka_unit_test(test_deep_nesting_rejected),
        cmocka_unit_test(test_random_frames_never_crash),
        cmocka_unit_test(test_mutated_frames_never_crash),
        cmocka_unit_test(test_grant_over_cap_rejected),
        cmocka_unit_test(test_heartbeat_over_cap_rejected),
        cmocka_unit_test(test_frame_of_nils_refused_before_allocating),
        cmocka_unit_test(test_nested_empty_arrays_refused),
        cmocka_unit_test(test_unknown_type_gets_the_smallest_caps),
        cmocka_unit_test(test_frame_over_its_type_cap_refused),
        cmocka_unit_test(test_largest_valid_frames_still_decode),
        cmocka_unit_test(test_round_trip_pause_rateinfo_ctl),
        cmocka_unit_test(test_encode_past_cap_leaves_buffer),
        cmocka_unit_test(test_encode_unknown_type_writes_nothing),
        cmocka_unit_test(test_fini_twice_is_safe),
        cmocka_unit_test(test_multi_round_trip),
        cmocka_unit_test(test_multi_rejects_nesting_and_junk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
