/*
 * budget.h - the cluster-wide token budget and the registry of workers.
 *
 * The master is the only place that grants tokens. Each worker says how
 * many it wants (TOKEN_REQ); on every pass the budget walks the workers
 * round-robin and grants each what the limiter allows within a short
 * horizon, as paced spend times. Each token also holds one permit of the
 * in-flight cap until the worker reports the attempt finished (or drops the
 * token, or goes silent for a lease, when its permits come back).
 */
#ifndef FANOUT_BUDGET_H
#define FANOUT_BUDGET_H

#include <stddef.h>
#include <stdint.h>

#include "gcra.h"

#define BUDGET_MAX_WORKERS 4096
#define BUDGET_ID_BYTES 256
#define BUDGET_CLOCK_SAMPLES 8 /* round trips kept per worker */
/* A round trip longer than this is not a sample (a stalled peer). */
#define BUDGET_MAX_RTT_US (10 * INT64_C(1000000))

typedef struct budget_worker {
    int used;                           /* slot in use */
    uint32_t gen;                       /* bumped when the slot is reused */
    unsigned char rid[BUDGET_ID_BYTES]; /* ZeroMQ routing id */
    size_t rid_len;                     /* its length */
    char name[256];                     /* worker id it gave */
    char host[256];                     /* host it runs on */
    int64_t pid;                        /* its pid */
    uint32_t concurrency;               /* calls it runs at once */
    int64_t joined_ns;                  /* when it said hello */
    int64_t last_seen_ns;               /* last message */
    int leaving;                        /* said BYE */
    int64_t want;                       /* tokens wanted at its last request */
    uint64_t seen;                      /* tokens it had seen then */
    uint64_t granted;                   /* tokens granted in all */
    int64_t permits;                    /* permits it holds */
    uint32_t inflight;                  /* calls in flight (heartbeat) */
    uint32_t held;                      /* items held (heartbeat) */
    uint64_t results;                   /* results received from it */
    uint32_t assigned;                  /* items dispatched to it, held */
    /* From heartbeats: the round trip and the worker's clock minus ours,
     * taken from the sample with the shortest round trip among the last
     * BUDGET_CLOCK_SAMPLES (the least queueing). one_way_ns is half that
     * round trip: grants are timed so that the worker, hearing of them
     * that much later, spends each token when the limiter meant it. */
    int64_t rtt_samples[BUDGET_CLOCK_SAMPLES];
    int64_t offset_samples[BUDGET_CLOCK_SAMPLES];
    uint32_t nclock;         /* samples taken */
    int64_t rtt_us;          /* best round trip, -1 unknown */
    int64_t offset_us;       /* its clock offset (worker - master) */
    int64_t one_way_ns;      /* rtt / 2, 0 unknown */
    uint64_t assigned_bytes; /* their request bytes */
} budget_worker;

typedef struct budget budget;

/* Sends a grant: called by budget_grant for each worker that gets tokens. */
typedef void (*budget_send_fn)(void *ctx, budget_worker *w,
                               const uint32_t *offset_us, uint32_t n);

/* Takes ownership of lim. max_in_flight 0 means no cap. */
budget *budget_new(gcra *lim, int64_t max_in_flight, int64_t horizon_ns);
void budget_destroy(budget **b);
gcra *budget_limiter(budget *b);
void budget_set_max_in_flight(budget *b, int64_t n);
int64_t budget_max_in_flight(const budget *b);

/* Finds the worker with this routing id, or NULL. */
budget_worker *budget_find(budget *b, const void *rid, size_t len);
/* Registers (or re-registers, resetting its account) a worker. Returns
 * NULL when the registry is full. */
budget_worker *budget_join(budget *b, const void *rid, size_t len, int64_t now);
/* Removes a worker; its permits come back. */
void budget_remove(budget *b, budget_worker *w);
/* Records a TOKEN_REQ. */
void budget_request(budget *b, budget_worker *w, int64_t want, uint64_t seen,
                    int64_t released);
/* Takes one heartbeat's clock exchange: the worker sent its heartbeat at
 * sent_us (its clock), echoing our heartbeat sent at echo_us (our clock)
 * that it had received held_us before; it reached us at now_us (our wall
 * clock). Ignores a sample that does not add up. */
void budget_clock_sample(budget_worker *w, uint64_t sent_us, uint64_t echo_us,
                         uint64_t held_us, int64_t now_us);
/* Grants what can be granted now; returns the number of tokens granted. */
size_t budget_grant(budget *b, int64_t now, budget_send_fn send, void *ctx);
/* The next time a grant could become possible by the clock alone, or
 * INT64_MAX when nobody waits or only a permit release can help. */
int64_t budget_next_wake(const budget *b, int64_t now);
/* A worker gets no tokens until its round trip is known (a heartbeat's
 * clock exchange), or for at most wait_ns after it joined (0, the
 * default: no wait). */
void budget_set_clock_wait(budget *b, int64_t wait_ns);
/* Stops all grants until `until`. */
void budget_pause(budget *b, int64_t until);
int64_t budget_paused_until(const budget *b);
/* An operator's pause (fanout-ctl pause): no grants at all while on, until
 * turned off; calls in flight and tokens already granted finish. */
void budget_hold(budget *b, int on);
int budget_held(const budget *b);

/* Iteration over live workers: index 0 .. budget_capacity()-1, skip !used. */
size_t budget_capacity(const budget *b);
budget_worker *budget_at(budget *b, size_t i);
/* Live workers (not leaving) and their summed concurrency. */
size_t budget_live(const budget *b, int64_t *concurrency);
int64_t budget_permits_in_use(const budget *b);
uint64_t budget_tokens_granted(const budget *b);

#endif
