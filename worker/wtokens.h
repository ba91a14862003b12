/*
 * wtokens.h - the worker's side of token accounting with the master.
 *
 * The master grants tokens, each a time at which the worker may start one
 * call. The worker keeps them in order, spends each at its time on a ready
 * item, and drops one it cannot spend on time: a token saved up would let
 * calls bunch into a burst the rate limit never allowed. Every token not
 * turned into a call, and every call that finishes, is a permit released
 * back to the master.
 *
 * The accounting is exact without locks or acks: a TOKEN_REQ says "I want
 * W more, having seen S tokens so far"; the master subtracts the tokens it
 * granted that the worker had not yet seen, so a request crossing a grant
 * on the wire never makes it grant twice. wtokens_request() sends only
 * when what the worker wants differs from what the master already expects
 * to give it. The master keeps the other half of the ledger.
 *
 * Nothing here reads a clock or does I/O: callers pass the time in and send
 * the request themselves, so tests/unit/test_wtokens.c drives it with a
 * fake clock.
 */
#ifndef FANOUT_WTOKENS_H
#define FANOUT_WTOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "ring.h"

/* Grants whose delay is remembered to estimate the usual one. */
#define WTOKENS_DELAY_SAMPLES 32

/* Visible only so it can be embedded in the worker's state. */
typedef struct wtokens {
    ring due;           /* token times (monotonic ns), oldest first */
    uint64_t seen;      /* tokens received from this account */
    uint32_t released;  /* permits to report released */
    int64_t last_want;  /* want in the last TOKEN_REQ */
    uint64_t last_seen; /* seen in the last TOKEN_REQ */
    uint32_t account;   /* the master's account for us, new per JOB */
    uint64_t n_dropped; /* tokens dropped, for the final log line */
    int64_t delay_us[WTOKENS_DELAY_SAMPLES]; /* recent grant delays */
    size_t ndelay; /* delays recorded (may exceed the array) */
} wtokens;

/* What to do with the token at the front; see wtokens_next(). */
typedef enum wtokens_action {
    WTOKENS_NONE,  /* no token is due */
    WTOKENS_SPEND, /* a token was taken: start one call now */
    WTOKENS_DROP   /* a token was due but dropped (and released) */
} wtokens_action;

/* A TOKEN_REQ to send, from wtokens_request(). */
typedef struct wtokens_req {
    uint32_t want;     /* more tokens wanted */
    uint64_t seen;     /* tokens seen so far */
    uint32_t released; /* permits released since the last request */
} wtokens_req;

/* An empty ledger with account 0. */
void wtokens_init(wtokens *t);
/* Frees the token storage; safe twice. */
void wtokens_fini(wtokens *t);
/* A new JOB: the master has started a fresh account for us. Drops every
 * token and counter and moves to the next account number. */
void wtokens_reset(wtokens *t);
/* The current account number; a call records it when it starts, and its
 * permit is released only if the account is still the same. */
uint32_t wtokens_account(const wtokens *t);

/* How much later than usual a grant arrived, in ns (>= 0): the wall-clock
 * difference between the master's send stamp and now_wall_us is the
 * one-way delay plus the clocks' offset; its minimum over recent grants is
 * the usual delay, and anything above it is lateness (a busy or
 * descheduled loop). Returns 0 when sent_wall_us is 0 (no stamp). */
int64_t wtokens_lateness_ns(wtokens *t, uint64_t sent_wall_us,
                            int64_t now_wall_us);
/* Enqueues a grant of n tokens due at anchor_ns + offset_us[i] * 1000,
 * in order, and counts them as seen. */
void wtokens_grant(wtokens *t, int64_t anchor_ns, const uint32_t *offset_us,
                   uint32_t n);
/* Tokens held. */
size_t wtokens_held(const wtokens *t);
/* When the front token is due, or INT64_MAX when none is held. */
int64_t wtokens_next_due(const wtokens *t);

/* Takes the front token if it is due at now. A token later than slack_ns
 * (pass INT64_MAX when tokens carry no meaningful time) or
 * one that cannot be used (can_start == 0: paused, nothing ready, or no
 * free concurrency) is dropped, never kept for later. Call in a loop until
 * it returns WTOKENS_NONE, recomputing can_start after each SPEND. */
wtokens_action wtokens_next(wtokens *t, int64_t now, int64_t slack_ns,
                            int can_start);
/* Drops every token held (the API asked for quiet). */
void wtokens_drop_all(wtokens *t);
/* Releases n permits (calls that finished or never started). */
void wtokens_release(wtokens *t, uint32_t n);

/* Decides the next TOKEN_REQ. The worker wants a token for each ready item
 * it has free concurrency for (free_slots), less the tokens it holds. If
 * that differs from what the master already expects to grant, or permits
 * were released, fills *req, records it as sent and returns 1; else
 * returns 0 and nothing needs sending. */
int wtokens_request(wtokens *t, int64_t free_slots, size_t nready,
                    wtokens_req *req);

#endif
