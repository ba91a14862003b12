/*
 * proto.h - the messages between fanout-master and fanout-worker.
 *
 * Every message is one ZeroMQ frame holding a msgpack array whose first two
 * elements are the protocol version and the message type, then the master's
 * epoch, then the type's fields (see proto/PROTOCOL.md for the conversation
 * and one line per message). A frame that does not decode, has trailing
 * bytes, an unknown version or type, or a field of the wrong type is
 * rejected with FO_EPROTO or FO_EVERSION; callers count it, log it and drop
 * it. Nothing from the wire is trusted: counts are checked against the bytes
 * present before anything is allocated, and strings are copied out with
 * caps.
 */
#ifndef FANOUT_PROTO_H
#define FANOUT_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "error.h"

#define PROTO_VERSION 2

/* Caps on what a peer may send, checked by proto_decode(). */
#define PROTO_MAX_HELD 100000           /* item refs in one heartbeat */
#define PROTO_MAX_GRANT 4096            /* tokens in one grant */
#define PROTO_MAX_TEXT_BYTES 4096       /* ids, hosts, errors */
#define PROTO_MAX_JOB_BYTES (1 << 20)   /* the job; a CTL command or reply */
#define PROTO_MAX_BODY_BYTES (64 << 20) /* a response body */
/* Elements of a message array: 17 today, the rest for optional fields a
 * newer peer may append. */
#define PROTO_MAX_FIELDS 32

/*
 * Frame caps, in bytes, for ZMQ_MAXMSGSIZE on each socket, so that libzmq
 * drops a frame no message of the socket's types can need before it is
 * buffered; proto_decode() checks the same ceilings per message type.
 *
 * A WORK carries what the master rendered from one input line: the key (at
 * most the line), the URL (the line plus what the template adds) and the
 * body (the master allows twice the line plus the template's text). A
 * RESULT carries the response and the key back. Both have a macro taking
 * the job's settings, which the master should use for its own sockets,
 * and a ceiling for the largest settings the options allow.
 */
#define PROTO_MAX_LINE_BYTES (64 << 20)     /* top of --max-line-bytes */
#define PROTO_RENDER_SLACK_BYTES (64 << 10) /* a template adds at most */
/* msgpack headers, integers and up to 8 fields of PROTO_MAX_TEXT_BYTES. */
#define PROTO_FRAME_OVERHEAD_BYTES (64 << 10)
/* A rendered URL for a line of line_bytes: the master's render() cap. */
#define PROTO_URL_BYTES(line_bytes)                                            \
    ((size_t)(line_bytes) + PROTO_RENDER_SLACK_BYTES)
/* A rendered body for a line of line_bytes: the master's render() cap. */
#define PROTO_RENDER_BODY_BYTES(line_bytes)                                    \
    (2 * (size_t)(line_bytes) + PROTO_RENDER_SLACK_BYTES)
/* A WORK frame for a job with --max-line-bytes line_bytes. */
#define PROTO_WORK_BYTES(line_bytes)                                           \
    ((size_t)(line_bytes) + PROTO_URL_BYTES(line_bytes) +                      \
     PROTO_RENDER_BODY_BYTES(line_bytes) + PROTO_FRAME_OVERHEAD_BYTES)
/* A RESULT frame for a job with --max-response-bytes response_bytes and
 * --max-line-bytes line_bytes (the key comes back too). */
#define PROTO_RESULT_BYTES(response_bytes, line_bytes)                         \
    ((size_t)(response_bytes) + (size_t)(line_bytes) +                         \
     PROTO_FRAME_OVERHEAD_BYTES)
/* Ceilings: WORK (work socket), RESULT (result socket), and every other
 * type (control socket: a JOB or CTL of PROTO_MAX_JOB_BYTES, a HEARTBEAT of
 * PROTO_MAX_HELD refs at 14 bytes each, with room to spare). */
#define PROTO_MAX_WORK_BYTES PROTO_WORK_BYTES(PROTO_MAX_LINE_BYTES)
#define PROTO_MAX_RESULT_BYTES                                                 \
    PROTO_RESULT_BYTES(PROTO_MAX_BODY_BYTES, PROTO_MAX_LINE_BYTES)
#define PROTO_MAX_CONTROL_BYTES (2 << 20)

typedef enum proto_type {
    PROTO_HELLO = 1,       /* worker -> master: join */
    PROTO_JOB = 2,         /* master -> worker: the job and its settings */
    PROTO_HEARTBEAT = 3,   /* both ways: liveness; worker lists held items */
    PROTO_TOKEN_REQ = 4,   /* worker -> master: want tokens, release permits */
    PROTO_TOKEN_GRANT = 5, /* master -> worker: paced tokens */
    PROTO_THROTTLED = 6,   /* worker -> master: the API pushed back */
    PROTO_BYE = 7,         /* worker -> master: leaving, hands items back */
    PROTO_RESET = 8,       /* master -> worker: unknown to me, say hello */
    PROTO_WORK = 9,        /* master -> worker: one item */
    PROTO_RESULT = 10,     /* worker -> master: an item's outcome */
    PROTO_DONE = 11,       /* master -> worker: the job has finished */
    PROTO_PAUSE = 12,      /* master -> worker: drop tokens, wait */
    PROTO_RATEINFO = 13,   /* worker -> master: the API's limit headers */
    PROTO_CTL = 14,        /* fanout-ctl -> master: a JSON command */
    PROTO_CTL_REPLY = 15,  /* master -> fanout-ctl: a JSON answer */
    PROTO_DRAIN = 16,      /* master -> worker: hand back, finish, leave */
    PROTO_MULTI = 17,      /* both ways: several whole messages in one */
} proto_type;
#define PROTO_LAST_TYPE PROTO_MULTI

/* A MULTI envelope holds at most this many messages and, unless it holds
 * one message alone, at most this many bytes of them. */
#define PROTO_MULTI_MAX 1024
#define PROTO_MULTI_BYTES (256 << 10)

/* Returns the message type's name ("TOKEN_GRANT"), or "UNKNOWN". */
const char *proto_type_name(int type);
/* Returns the largest frame a message of this type may fill, in bytes:
 * PROTO_MAX_WORK_BYTES, PROTO_MAX_RESULT_BYTES or PROTO_MAX_CONTROL_BYTES
 * (also for unknown types). */
size_t proto_max_frame_bytes(int type);

/* An item's address: its batch and index in the batch. */
typedef struct proto_ref {
    uint64_t batch; /* batch number */
    uint32_t idx;   /* index within the batch */
} proto_ref;

/* Outcome codes in RESULT. */
/* RESULT status. RETRY (keyed mode only, --rate-key): the attempt failed
 * in a way worth retrying; the master queues the item again under its key
 * after retry_in_ms, and the record is made by a later attempt. */
enum { PROTO_STATUS_OK = 0, PROTO_STATUS_FAILED = 1, PROTO_STATUS_RETRY = 2 };

/* A decoded message. Strings are heap copies, NUL-terminated, owned by the
 * message and freed by proto_msg_fini(). */
typedef struct proto_msg {
    int type;       /* a proto_type */
    uint64_t epoch; /* the master's epoch (0 from a worker that has none) */
    union {
        struct {
            char *worker_id;      /* stable name, "host:pid" by default */
            char *host;           /* host name */
            int64_t pid;          /* process id */
            uint32_t concurrency; /* calls it can have in flight */
        } hello;
        struct {
            char *job_json; /* the job as JSON (see PROTOCOL.md) */
        } job;
        struct {
            uint32_t inflight; /* calls in flight */
            uint32_t nheld;    /* items held */
            proto_ref *held;   /* the items (worker -> master only) */
            /* Clock exchange (optional, together; 0 unknown): the
             * sender's wall clock at sending, the sent_us of the last
             * heartbeat it received from the peer, and how long ago it
             * received that one. The master takes each worker's round
             * trip and clock offset from these (NTP's arithmetic). */
            uint64_t sent_us;
            uint64_t echo_us;
            uint64_t echo_held_us;
        } heartbeat;
        struct {
            uint32_t want;     /* tokens wanted beyond those held */
            uint64_t seen;     /* tokens received so far, all grants */
            uint32_t released; /* permits released since the last REQ */
        } token_req;
        struct {
            uint64_t total;        /* tokens granted so far incl. these */
            uint64_t sent_wall_us; /* master's wall clock at sending */
            uint32_t n;            /* tokens in this grant */
            uint32_t *offset_us;   /* spend at receipt + offset */
        } token_grant;
        struct {
            uint32_t http_status;    /* 429 or 503 */
            uint32_t retry_after_ms; /* 0 when the server gave none */
        } throttled;
        struct {
            uint32_t nheld;  /* items handed back */
            proto_ref *held; /* which */
        } bye;
        struct {
            uint32_t pause_ms; /* no requests for this long */
        } pause;
        struct {
            int64_t limit;     /* requests per window, -1 unknown */
            int64_t window_ms; /* window, -1 unknown */
            int64_t remaining; /* left in this window, -1 unknown */
            int64_t reset_ms;  /* until the window resets, -1 unknown */
        } rateinfo;
        struct {
            char *json; /* command or reply */
        } ctl;
        struct {
            proto_ref ref;   /* where the item lives */
            char *key;       /* its id */
            char *url;       /* rendered URL */
            char *body;      /* rendered body, or NULL */
            size_t body_len; /* its length */
            char *idem_key;  /* Idempotency-Key header value */
            int prepaid;     /* keyed mode: the three below are sent (the
                                worker takes no token of its own) */
            uint32_t paid_offset_us; /* call at receipt + this */
            uint32_t attempts;       /* attempts made before this one */
            uint32_t throttled;      /* of which throttled */
        } work;
        struct {
            proto_ref ref;        /* which item */
            char *key;            /* its id, checked by the master */
            uint32_t status;      /* PROTO_STATUS_* */
            uint32_t http_status; /* last HTTP status, 0 if none */
            uint32_t attempts;    /* attempts made */
            uint32_t throttled;   /* of which throttled (429/503) */
            uint32_t latency_ms;  /* last attempt's duration */
            char *error;          /* why it failed, or NULL */
            char *response;       /* response body (may hold NULs) */
            size_t response_len;  /* its length */
            char *worker;         /* worker id */
            char *idem_key;       /* the WORK's Idempotency-Key, or NULL
                                     (optional: older workers omit it) */
            uint64_t started_us;  /* wall clock of the first attempt's
                                     start, 0 unknown (optional) */
            uint64_t finished_us; /* wall clock of the last attempt's end,
                                     0 unknown (optional) */
            uint64_t dropped_len; /* size of a response the worker left
                                     out (--keep of a body that is not
                                     JSON), 0 none (optional) */
            uint32_t retry_in_ms; /* RETRY: call again after this long
                                     (backoff or Retry-After) (optional) */
        } result;
    } u;
} proto_msg;

/* Encodes m as one frame appended to out. Returns FO_OK or FO_ETOOBIG. */
FO_WUR fo_err proto_encode(const proto_msg *m, fo_buf *out);

/*
 * MULTI = [version, 17, epoch, [frame bin, ...]]: whole encoded messages
 * travelling as one ZeroMQ message, so a burst of WORK or RESULT costs one
 * send and one wake-up instead of one per item. A frame inside is any
 * message but MULTI, and each is decoded with its own type's caps.
 *
 * proto_batch collects encoded frames (proto_batch_add) and writes the
 * envelope (proto_batch_finish); a batch of one frame is written as that
 * frame alone.
 */
typedef struct proto_batch {
    fo_buf frames; /* the frames, back to back */
    size_t *lens;  /* each one's length */
    size_t n, cap; /* frames, allocated lengths */
} proto_batch;

void proto_batch_init(proto_batch *b);
void proto_batch_fini(proto_batch *b);
void proto_batch_reset(proto_batch *b);
/* 1 when a frame of len bytes still fits: the batch is empty, or under
 * PROTO_MULTI_MAX frames and PROTO_MULTI_BYTES bytes with it. */
int proto_batch_fits(const proto_batch *b, size_t len);
/* Appends an encoded frame (copied). */
void proto_batch_add(proto_batch *b, const void *frame, size_t len);
/* Writes the batch to out (replacing its contents): the one frame, or a
 * MULTI envelope with epoch. FO_OK or FO_ETOOBIG (out's cap). */
FO_WUR fo_err proto_batch_finish(const proto_batch *b, uint64_t epoch,
                                 fo_buf *out);

/* The type field of a frame, or 0 when it does not look like a message. */
int proto_frame_type(const void *data, size_t len);
/* Calls fn(ctx, frame, len) for each frame in a MULTI envelope, the frame
 * pointing into data. Returns how many, or -1 with err set for an
 * envelope that is malformed or over its caps (nothing was called then). */
typedef void (*proto_frame_fn)(void *ctx, const void *frame, size_t len);
int proto_multi_each(const void *data, size_t len, proto_frame_fn fn, void *ctx,
                     char *err, size_t errlen);
/* Decodes one frame into *m (which the caller later finalises). Returns
 * FO_OK; FO_EPROTO for a frame that is malformed or breaks a field cap;
 * FO_EVERSION for another protocol version; or FO_ETOOBIG, naming the type,
 * for a frame over proto_max_frame_bytes() or one whose containers would
 * make msgpack-c allocate more than a message of that type can need (it
 * allocates sizeof(msgpack_object) per element, 24 bytes for a 1-byte nil,
 * before we could look at them). On error *m is left empty and err holds
 * a reason. */
FO_WUR fo_err proto_decode(const void *data, size_t len, proto_msg *m,
                           char *err, size_t errlen);
/* Frees what m owns and zeroes it; safe to call twice. */
void proto_msg_fini(proto_msg *m);

#endif
