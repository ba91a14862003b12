/*
 * testserver.c - fanout-testserver, a fast HTTP/1.1 server that plays the
 * part of an external rate-limited API for fanout's integration tests,
 * benchmarks and demo.
 *
 * Real APIs are slow, flaky and rate limited in ways a test cannot control,
 * so this server imitates them deterministically: the rate limiter is exact
 * (a ring of the last N accepted arrival times), failures come from a seeded
 * PRNG, and delays are driven by a timer heap instead of sleeping. It is a
 * single-threaded epoll loop, which keeps it cheap enough that it is never
 * the bottleneck of a benchmark and idles at 0% CPU. Everything a test wants
 * to assert afterwards is exposed through GET /stats and an optional
 * JSON-lines request log.
 */
/* accept4, signalfd and friends; harmless when the build passes it too. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_SEC 1000000000LL
#define MAX_HEADER_BYTES (64 * 1024)
#define MAX_BODY_BYTES (16 * 1024 * 1024)
#define MAX_BIG_BYTES (1ULL << 40)
#define MAX_RATE 10000000ULL
#define MAX_LATENCY_MS 3600000.0
/* Input buffer limit: a little more than the header cap, so that a buffer
 * that fills up without a complete header is always an oversized header. */
#define BUF_MAX (MAX_HEADER_BYTES + 4096)
/* A pipelining client could queue unbounded work; stop reading from a
 * connection once this many responses are waiting to be sent. */
#define MAX_QUEUED 256
#define DRAIN_NS (1 * NS_PER_SEC)
#define LISTEN_RETRY_NS (100 * 1000000LL)

struct sb { /* growable, always NUL-terminated string */
    char *p;
    size_t len, cap;
};

struct ring { /* arrival times in arrival order */
    int64_t *t;
    size_t cap, head, count;
};

struct timer {
    int64_t when;
    int fd; /* -1 means "re-arm the listener" */
    uint32_t id;
};

struct resp {
    struct resp *next;
    char *log; /* preformatted log line, written when sending starts */
    size_t log_len;
    size_t len, off;   /* bytes of data[] (head plus small body) */
    uint64_t big_left; /* streamed 'x' bytes still to send after data[] */
    int64_t ready;     /* monotonic time at which sending may start */
    bool hang, close_after, in_flight;
    char data[];
};

struct req {
    char *method, *target, *idem;
    uint64_t clen;
    bool keep_alive, head, expect;
};

struct conn {
    int fd;
    uint32_t id, events;
    char *buf;
    size_t len, cap, scan;
    struct req req; /* parsed request whose body is still arriving */
    uint64_t body_left;
    bool in_body, want_out, read_closed, closing, draining;
    int64_t drain_deadline;
    struct resp *qh, *qt;
    size_t qlen;
};

static struct {
    int ep, lfd, sfd;
    bool stop;
    int64_t start;
    uint32_t next_id;
    struct conn **conns; /* indexed by fd */
    size_t nconns;
    struct timer *heap;
    size_t heap_len, heap_cap;
    /* Settings; the first group can be changed through /control. */
    bool lim_on;
    uint64_t lim_n;
    int64_t lim_window;
    struct ring lim;
    double fail_pct;
    int64_t latency_ns;
    long long retry_after; /* -1: computed from the window */
    bool rl_headers;
    uint64_t rng;
    FILE *log;
    char *logbuf;
    /* Statistics for /stats. */
    uint64_t requests, accepted, seq, in_flight, max_in_flight;
    uint64_t status_count[600];
    struct ring win1, win10;
    size_t max1, max10;
    int64_t first_t, last_t;
    /* Per-key limit (--key-limit, --key-param): a strict sliding window
     * for each value of one query argument, as APIs limit per tenant. */
    const char *key_param;  /* the query argument, or NULL: off */
    uint64_t key_n;         /* calls per key per window, 0: count only */
    int64_t key_window;     /* the window */
    struct keyent *keys;    /* KEYS_MAX slots, open addressing */
    size_t nkeys;           /* slots used */
    uint64_t keys_overflow; /* requests of keys the table had no room for */
    const char *ovr_key;    /* --key-override: this key ... */
    uint64_t ovr_n;         /* ... has this limit instead */
    int64_t ovr_window;     /* per this window */
} g;

/* One key of the per-key limit. */
struct keyent {
    char *name;                 /* the key, NULL: free slot */
    struct ring lim;            /* its last n accepted arrivals */
    uint64_t n;                 /* its limit: n calls ... */
    int64_t window;             /* ... per window (n 0: none) */
    uint64_t accepted, limited; /* its calls let through, and answered 429 */
    int64_t first_t, last_t;    /* its first and last accepted call */
};

/* Keys tracked at most; /stats lists at most KEYS_SHOWN. */
#define KEYS_MAX 65536
#define KEYS_SHOWN 1000

static char xbuf[256 * 1024]; /* source of /big bodies, filled with 'x' */

static void die_oom(void)
{
    fputs("fanout-testserver: out of memory\n", stderr);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die_oom();
    return p;
}

static char *xmemdup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static long long ceil_secs(int64_t ns)
{
    return ns <= 0 ? 0 : (long long)((ns + NS_PER_SEC - 1) / NS_PER_SEC);
}

static double secs_since_start(int64_t t)
{
    return (double)(t - g.start) / 1e9;
}

/* ---- strings ---------------------------------------------------------- */

static void sb_reserve(struct sb *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        die_oom();
    b->p = p;
    b->cap = cap;
}

static void sb_append(struct sb *b, const char *s, size_t n)
{
    sb_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

__attribute__((format(printf, 2, 3))) static void
sb_printf(struct sb *b, const char *fmt, ...)
{
    va_list ap;
    sb_reserve(b, 128);
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            die_oom();
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        sb_reserve(b, (size_t)n);
    }
}

/* Appends s as a quoted JSON string. Bytes outside printable ASCII are
 * escaped as \u00XX so that the output is valid JSON whatever the client
 * sent, at the price of showing UTF-8 as individual bytes. */
static void sb_json_str(struct sb *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sb_reserve(b, n * 6 + 2);
    char *o = b->p + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            *o++ = '\\';
            *o++ = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[ch >> 4];
            o[5] = hex[ch & 15];
            o += 6;
        } else {
            *o++ = (char)ch;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
    b->p[b->len] = '\0';
}

/* Parses exactly n decimal digits (no sign, no spaces) into *out. */
static bool parse_uint(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    if (!s || !((*s >= '0' && *s <= '9') || *s == '.'))
        return false;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Parses "N/UNIT" where UNIT names a second, a minute or an hour. */
static bool parse_rate(const char *s, uint64_t *n, int64_t *window)
{
    static const struct {
        const char *name;
        int64_t secs;
    } units[] = {{"s", 1},    {"sec", 1},     {"second", 1}, {"m", 60},
                 {"min", 60}, {"minute", 60}, {"h", 3600},   {"hour", 3600}};
    const char *slash = strchr(s, '/');
    if (!slash || !parse_uint(s, (size_t)(slash - s), MAX_RATE, n) || !*n)
        return false;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(slash + 1, units[i].name) == 0) {
            *window = units[i].secs * NS_PER_SEC;
            return true;
        }
    }
    return false;
}

/* ---- PRNG (xorshift64*, seeded through splitmix64) -------------------- */

static void rng_seed(uint64_t seed)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    g.rng = z ? z : 0x2545f4914f6cdd1dULL;
}

static uint64_t rng_next(void)
{
    uint64_t x = g.rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    g.rng = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* ---- rings of arrival times ------------------------------------------- */

static int64_t ring_get(const struct ring *r, size_t i)
{
    return r->t[(r->head + i) % r->cap];
}

/* Fixed capacity: once full, the oldest entry is overwritten. */
static void ring_push_fixed(struct ring *r, int64_t t)
{
    if (r->count < r->cap) {
        r->t[(r->head + r->count) % r->cap] = t;
        r->count++;
    } else {
        r->t[r->head] = t;
        r->head = (r->head + 1) % r->cap;
    }
}

/* Growing capacity, for windows that must hold every arrival they span. */
static void ring_push_grow(struct ring *r, int64_t t)
{
    if (r->count == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 1024;
        int64_t *nt = xmalloc(ncap * sizeof *nt);
        for (size_t i = 0; i < r->count; i++)
            nt[i] = ring_get(r, i);
        free(r->t);
        r->t = nt;
        r->cap = ncap;
        r->head = 0;
    }
    r->t[(r->head + r->count) % r->cap] = t;
    r->count++;
}

/* Number of entries strictly newer than bound. Entries are sorted because
 * they are pushed in arrival order, so a binary search is enough. */
static size_t ring_count_newer(const struct ring *r, int64_t bound)
{
    size_t lo = 0, hi = r->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ring_get(r, mid) <= bound)
            lo = mid + 1;
        else
            hi = mid;
    }
    return r->count - lo;
}

/* Records an accepted arrival in a sliding window of length w and returns
 * how many accepted arrivals the window (t - w, t] now holds. */
static size_t window_add(struct ring *r, int64_t t, int64_t w)
{
    while (r->count && r->t[r->head] <= t - w) {
        r->head = (r->head + 1) % r->cap;
        r->count--;
    }
    ring_push_grow(r, t);
    return r->count;
}

/* ---- per-key limiter -------------------------------------------------- */

static bool url_decode(const char *s, size_t n, char *out, size_t cap);

/* The value of query argument name in query (decoded into out), or NULL. */
static const char *query_arg(const char *query, const char *name, char *out,
                             size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = query; *p;) {
        size_t len = strcspn(p, "&");
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=')
            return url_decode(p + nl + 1, len - nl - 1, out, cap) ? out : NULL;
        p += len;
        if (*p == '&')
            p++;
    }
    return NULL;
}

/* The key's entry, added when new; NULL when the table is full. */
static struct keyent *key_find(const char *name)
{
    if (!g.keys) {
        g.keys = calloc(KEYS_MAX, sizeof *g.keys);
        if (!g.keys)
            die_oom();
    }
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    for (size_t i = 0; i < KEYS_MAX; i++) {
        struct keyent *k = &g.keys[(h + i) % KEYS_MAX];
        if (k->name && strcmp(k->name, name) == 0)
            return k;
        if (!k->name) {
            if (g.nkeys >= KEYS_MAX / 2)
                return NULL;
            k->name = xmalloc(strlen(name) + 1);
            memcpy(k->name, name, strlen(name) + 1);
            int ovr = g.ovr_key && strcmp(g.ovr_key, name) == 0;
            k->n = ovr ? g.ovr_n : g.key_n;
            k->window = ovr ? g.ovr_window : g.key_window;
            if (k->n) {
                k->lim.t = xmalloc((size_t)k->n * sizeof *k->lim.t);
                k->lim.cap = (size_t)k->n;
            }
            g.nkeys++;
            return k;
        }
    }
    return NULL;
}

/* Admits a call of key k at now; *wait is how long until it would be. */
static bool key_admit(struct keyent *k, int64_t now, int64_t *wait)
{
    if (!k->n || k->lim.count < k->lim.cap)
        return true;
    int64_t oldest = k->lim.t[k->lim.head];
    if (oldest <= now - k->window)
        return true;
    *wait = oldest + k->window - now;
    return false;
}

static void build_key_stats(struct sb *b)
{
    sb_printf(b, ",\"keys_overflow\":%" PRIu64 ",\"keys\":{", g.keys_overflow);
    const char *sep = "";
    size_t shown = 0;
    for (size_t i = 0; g.keys && i < KEYS_MAX && shown < KEYS_SHOWN; i++) {
        struct keyent *k = &g.keys[i];
        if (!k->name)
            continue;
        shown++;
        /* Keys come from the test's own items: no JSON escaping needed
         * for the tenant names tests use; others are skipped. */
        if (strpbrk(k->name, "\"\\") || strlen(k->name) > 200)
            continue;
        sb_printf(b,
                  "%s\"%s\":{\"accepted\":%" PRIu64 ",\"429\":%" PRIu64
                  ",\"first_t\":%.6f,\"last_t\":%.6f}",
                  sep, k->name, k->accepted, k->limited,
                  k->accepted ? secs_since_start(k->first_t) : 0.0,
                  k->accepted ? secs_since_start(k->last_t) : 0.0);
        sep = ",";
    }
    sb_printf(b, "}");
}

/* ---- rate limiter ----------------------------------------------------- */

/* Installs a new limit (n == 0 removes it). The most recent arrivals are
 * carried over so that tightening a limit takes effect immediately. */
static void limiter_set(uint64_t n, int64_t window)
{
    struct ring nr = {0};
    if (n) {
        nr.t = xmalloc((size_t)n * sizeof *nr.t);
        nr.cap = (size_t)n;
        size_t keep = g.lim.count < n ? g.lim.count : (size_t)n;
        for (size_t i = g.lim.count - keep; i < g.lim.count; i++)
            ring_push_fixed(&nr, ring_get(&g.lim, i));
    }
    free(g.lim.t);
    g.lim = nr;
    g.lim_on = n > 0;
    g.lim_n = n;
    g.lim_window = window;
}

/* The ring holds the last N accepted arrivals, so fewer than N of them lie
 * in (now - W, now] exactly when the ring is not full or its oldest entry
 * is at or before now - W. */
static bool limiter_admit(int64_t now, int64_t *wait)
{
    if (!g.lim_on || g.lim.count < g.lim.cap)
        return true;
    int64_t oldest = g.lim.t[g.lim.head];
    if (oldest <= now - g.lim_window)
        return true;
    *wait = oldest + g.lim_window - now;
    return false;
}

static void add_ratelimit_headers(struct sb *h, int64_t now)
{
    size_t inwin = ring_count_newer(&g.lim, now - g.lim_window);
    uint64_t remaining = g.lim_n > inwin ? g.lim_n - inwin : 0;
    long long reset = 0;
    if (inwin)
        reset = ceil_secs(ring_get(&g.lim, g.lim.count - inwin) + g.lim_window -
                          now);
    long long w = ceil_secs(g.lim_window);
    sb_printf(h,
              "X-RateLimit-Limit: %" PRIu64 "\r\n"
              "X-RateLimit-Remaining: %" PRIu64 "\r\n"
              "X-RateLimit-Reset: %lld\r\n"
              "RateLimit-Policy: %" PRIu64 ";w=%lld\r\n"
              "RateLimit: limit=%" PRIu64 ", remaining=%" PRIu64
              ", reset=%lld\r\n",
              g.lim_n, remaining, reset, g.lim_n, w, g.lim_n, remaining, reset);
}

/* ---- timers ----------------------------------------------------------- */

static void timer_push(int64_t when, int fd, uint32_t id)
{
    if (g.heap_len == g.heap_cap) {
        g.heap_cap = g.heap_cap ? g.heap_cap * 2 : 256;
        struct timer *h = realloc(g.heap, g.heap_cap * sizeof *h);
        if (!h)
            die_oom();
        g.heap = h;
    }
    size_t i = g.heap_len++;
    while (i > 0 && g.heap[(i - 1) / 2].when > when) {
        g.heap[i] = g.heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    g.heap[i] = (struct timer){when, fd, id};
}

static struct timer timer_pop(void)
{
    struct timer top = g.heap[0], last = g.heap[--g.heap_len];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= g.heap_len)
            break;
        if (c + 1 < g.heap_len && g.heap[c + 1].when < g.heap[c].when)
            c++;
        if (g.heap[c].when >= last.when)
            break;
        g.heap[i] = g.heap[c];
        i = c;
    }
    if (g.heap_len)
        g.heap[i] = last;
    return top;
}

/* Rounds up so that the loop never wakes before the earliest timer and
 * then spins with a zero timeout. */
static int next_timeout_ms(void)
{
    if (!g.heap_len)
        return -1;
    int64_t d = g.heap[0].when - now_ns();
    if (d <= 0)
        return 0;
    int64_t ms = (d + 999999) / 1000000;
    return ms > 86400000 ? 86400000 : (int)ms;
}

/* ---- responses -------------------------------------------------------- */

static const char *reason(int status)
{
    static const struct {
        int code;
        const char *text;
    } t[] = {{100, "Continue"},
             {200, "OK"},
             {204, "No Content"},
             {304, "Not Modified"},
             {400, "Bad Request"},
             {404, "Not Found"},
             {413, "Content Too Large"},
             {429, "Too Many Requests"},
             {431, "Request Header Fields Too Large"},
             {500, "Internal Server Error"},
             {501, "Not Implemented"},
             {503, "Service Unavailable"},
             {505, "HTTP Version Not Supported"}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].code == status)
            return t[i].text;
    return "Status";
}

/* Builds a complete response. 1xx and 204 responses carry neither a body
 * nor Content-Length (RFC 9110 forbids it); 304 says Content-Length: 0. A
 * HEAD request gets the headers of the equivalent GET. */
static struct resp *resp_new(int status, const char *ctype,
                             const struct sb *body, uint64_t big,
                             const struct sb *extra, bool head_only,
                             bool close_after)
{
    bool no_body = status < 200 || status == 204 || status == 304;
    struct sb h = {0};
    sb_printf(&h, "HTTP/1.1 %d %s\r\nServer: fanout-testserver\r\n", status,
              reason(status));
    if (!no_body)
        sb_printf(&h, "Content-Type: %s\r\nContent-Length: %" PRIu64 "\r\n",
                  ctype, big ? big : (uint64_t)body->len);
    else if (status == 304)
        sb_printf(&h, "Content-Length: 0\r\n");
    sb_printf(&h, "Connection: %s\r\n", close_after ? "close" : "keep-alive");
    if (extra && extra->len)
        sb_append(&h, extra->p, extra->len);
    sb_append(&h, "\r\n", 2);
    if (!no_body && !head_only && !big && body->len)
        sb_append(&h, body->p, body->len);
    struct resp *r = xmalloc(sizeof *r + h.len);
    memset(r, 0, sizeof *r);
    memcpy(r->data, h.p, h.len);
    r->len = h.len;
    r->big_left = (no_body || head_only) ? 0 : big;
    r->close_after = close_after;
    free(h.p);
    return r;
}

static void log_write(struct resp *r)
{
    if (!r->log)
        return;
    if (g.log && (fwrite(r->log, 1, r->log_len, g.log) != r->log_len ||
                  fflush(g.log) != 0)) {
        fputs("fanout-testserver: writing the log failed\n", stderr);
        fclose(g.log);
        g.log = NULL;
    }
    free(r->log);
    r->log = NULL;
}

static void resp_done(struct resp *r)
{
    if (r->in_flight)
        g.in_flight--;
    free(r->log);
    free(r);
}

static void conn_enqueue(struct conn *c, struct resp *r, int64_t now,
                         int64_t ready)
{
    r->ready = ready;
    if (c->qt)
        c->qt->next = r;
    else
        c->qh = r;
    c->qt = r;
    c->qlen++;
    if (ready > now)
        timer_push(ready, c->fd, c->id);
    if (r->close_after)
        c->closing = true;
}

static void queue_error(struct conn *c, int status, const char *msg)
{
    struct sb body = {0};
    sb_printf(&body, "{\"error\":\"%s\"}", msg);
    int64_t now = now_ns();
    conn_enqueue(
        c, resp_new(status, "application/json", &body, 0, NULL, false, true),
        now, now);
    free(body.p);
}

/* ---- connections ------------------------------------------------------ */

static void req_clear(struct req *q)
{
    free(q->method);
    free(q->target);
    free(q->idem);
    memset(q, 0, sizeof *q);
}

/* Requests still queued when a connection dies are logged anyway, so that
 * the log has exactly one line for every request the server dispatched. */
static void conn_close(struct conn *c)
{
    while (c->qh) {
        struct resp *r = c->qh;
        c->qh = r->next;
        log_write(r);
        resp_done(r);
    }
    req_clear(&c->req);
    close(c->fd);
    g.conns[c->fd] = NULL;
    free(c->buf);
    free(c);
}

static void conn_update_events(struct conn *c)
{
    uint32_t ev = 0;
    if (!c->read_closed) {
        ev = EPOLLRDHUP;
        if (c->draining || c->closing ||
            (c->qlen < MAX_QUEUED && (c->len < c->cap || c->cap < BUF_MAX)))
            ev |= EPOLLIN;
    }
    if (c->want_out)
        ev |= EPOLLOUT;
    if (ev == c->events)
        return;
    struct epoll_event e = {
        .events = ev, .data.u64 = ((uint64_t)c->id << 32) | (uint32_t)c->fd};
    epoll_ctl(g.ep, EPOLL_CTL_MOD, c->fd, &e);
    c->events = ev;
}

/* Writes every queued response that is due, in order. Returns false if the
 * connection was closed (and freed). */
static bool conn_flush(struct conn *c)
{
    int64_t now = now_ns();
    c->want_out = false;
    while (c->qh && !c->qh->hang && c->qh->ready <= now) {
        struct resp *r = c->qh;
        log_write(r);
        while (r->off < r->len || r->big_left) {
            const char *p = r->data + r->off;
            size_t n = r->len - r->off;
            if (n == 0) {
                p = xbuf;
                n = r->big_left < sizeof xbuf ? (size_t)r->big_left
                                              : sizeof xbuf;
            }
            ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                c->want_out = true;
                return true;
            }
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                conn_close(c);
                return false;
            }
            if (r->off < r->len)
                r->off += (size_t)w;
            else
                r->big_left -= (uint64_t)w;
        }
        c->qh = r->next;
        if (!c->qh)
            c->qt = NULL;
        c->qlen--;
        bool close_after = r->close_after;
        resp_done(r);
        if (close_after) {
            /* Half-close and keep reading until the client closes, so that
             * unread request bytes do not make the kernel reset the
             * connection before the client has read the response. */
            shutdown(c->fd, SHUT_WR);
            c->draining = true;
            c->drain_deadline = now + DRAIN_NS;
            timer_push(c->drain_deadline, c->fd, c->id);
            return true;
        }
    }
    return true;
}

/* Returns the length of the request head (through the blank line), or 0
 * if it is not complete yet; *scan remembers where to resume looking. */
static size_t find_header_end(const char *p, size_t n, size_t *scan)
{
    size_t i = *scan;
    while (i < n) {
        const char *nl = memchr(p + i, '\n', n - i);
        if (!nl)
            break;
        size_t k = (size_t)(nl - p);
        if (k + 1 < n && p[k + 1] == '\n')
            return k + 2;
        if (k + 2 < n && p[k + 1] == '\r' && p[k + 2] == '\n')
            return k + 3;
        if (k + 2 >= n) {
            *scan = k;
            return 0;
        }
        i = k + 1;
    }
    *scan = n;
    return 0;
}

static bool name_is(const char *s, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(s, name, n) == 0;
}

/* Fills *q from a complete request head. Returns 0 or an HTTP status to
 * answer with before closing the connection. */
static int parse_request(const char *p, size_t n, struct req *q)
{
    const char *end = p + n, *eol = memchr(p, '\n', n);
    size_t ll = (size_t)(eol - p);
    if (ll && p[ll - 1] == '\r')
        ll--;
    const char *sp1 = memchr(p, ' ', ll);
    if (!sp1 || sp1 == p)
        return 400;
    const char *t = sp1 + 1;
    const char *sp2 = memchr(t, ' ', (size_t)(p + ll - t));
    if (!sp2 || sp2 == t)
        return 400;
    const char *ver = sp2 + 1;
    size_t vlen = (size_t)(p + ll - ver);
    bool http11;
    if (vlen == 8 && memcmp(ver, "HTTP/1.1", 8) == 0)
        http11 = true;
    else if (vlen == 8 && memcmp(ver, "HTTP/1.0", 8) == 0)
        http11 = false;
    else
        return vlen > 5 && memcmp(ver, "HTTP/", 5) == 0 ? 505 : 400;

    bool have_clen = false, chunked = false, ka = false, close = false;
    for (const char *line = eol + 1; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t len = (size_t)(nl - line);
        if (len && line[len - 1] == '\r')
            len--;
        if (len == 0)
            break;
        const char *colon = memchr(line, ':', len);
        if (!colon || colon == line)
            return 400;
        size_t nlen = (size_t)(colon - line);
        const char *v = colon + 1, *vend = line + len;
        while (v < vend && (*v == ' ' || *v == '\t'))
            v++;
        while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        size_t vl = (size_t)(vend - v);
        if (name_is(line, nlen, "content-length")) {
            uint64_t cl;
            if (!parse_uint(v, vl, UINT64_MAX, &cl) ||
                (have_clen && cl != q->clen))
                return 400;
            have_clen = true;
            q->clen = cl;
        } else if (name_is(line, nlen, "transfer-encoding")) {
            chunked = chunked || !name_is(v, vl, "identity");
        } else if (name_is(line, nlen, "connection")) {
            for (const char *tok = v; tok < vend;) {
                const char *comma = memchr(tok, ',', (size_t)(vend - tok));
                const char *te = comma ? comma : vend, *ts = tok;
                while (ts < te && (*ts == ' ' || *ts == '\t'))
                    ts++;
                while (te > ts && (te[-1] == ' ' || te[-1] == '\t'))
                    te--;
                close = close || name_is(ts, (size_t)(te - ts), "close");
                ka = ka || name_is(ts, (size_t)(te - ts), "keep-alive");
                tok = comma ? comma + 1 : vend;
            }
        } else if (name_is(line, nlen, "idempotency-key")) {
            free(q->idem);
            q->idem = xmemdup(v, vl);
        } else if (name_is(line, nlen, "expect")) {
            q->expect = name_is(v, vl, "100-continue");
        }
        line = nl + 1;
    }
    if (chunked)
        return 501;
    if (q->clen > MAX_BODY_BYTES)
        return 413;
    q->method = xmemdup(p, (size_t)(sp1 - p));
    q->target = xmemdup(t, (size_t)(sp2 - t));
    if (!q->idem)
        q->idem = xmemdup("", 0);
    q->head = strcmp(q->method, "HEAD") == 0;
    q->keep_alive = !close && (http11 || ka);
    return 0;
}

/* ---- routes ----------------------------------------------------------- */

static void build_stats(struct sb *b)
{
    sb_printf(b,
              "{\"requests\":%" PRIu64 ",\"accepted\":%" PRIu64 ",\"status\":{",
              g.requests, g.accepted);
    const char *sep = "";
    for (int s = 0; s < 600; s++) {
        if (g.status_count[s]) {
            sb_printf(b, "%s\"%d\":%" PRIu64, sep, s, g.status_count[s]);
            sep = ",";
        }
    }
    sb_printf(b,
              "},\"max_in_flight\":%" PRIu64 ",\"in_flight\":%" PRIu64
              ",\"max_in_1s\":%zu,\"max_in_10s\":%zu,\"first_t\":%.6f,"
              "\"last_t\":%.6f}",
              g.max_in_flight, g.in_flight, g.max1, g.max10,
              g.requests ? secs_since_start(g.first_t) : 0.0,
              g.requests ? secs_since_start(g.last_t) : 0.0);
    if (g.key_param) {
        b->len--; /* reopen the object */
        build_key_stats(b);
        sb_printf(b, "}");
    }
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decodes the %XX escapes of a query component into out (size cap). */
static bool url_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o + 1 >= cap)
            return false;
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        int hi = i + 2 < n ? hex_value(s[i + 1]) : -1;
        int lo = i + 2 < n ? hex_value(s[i + 2]) : -1;
        if (hi < 0 || lo < 0)
            return false;
        out[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[o] = '\0';
    return true;
}

/* Applies /control parameters, all or nothing. Returns the HTTP status. */
static int handle_control(const char *query, struct sb *body)
{
    bool set_rate = false, set_fail = false, set_lat = false;
    uint64_t n = 0;
    int64_t window = 0;
    double fail = 0, lat = 0;
    const char *err = NULL;
    for (const char *p = query; *p && !err;) {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        char key[64], val[256];
        if (!eq || !url_decode(p, (size_t)(eq - p), key, sizeof key) ||
            !url_decode(eq + 1, len - (size_t)(eq + 1 - p), val, sizeof val))
            err = "malformed query";
        else if (strcmp(key, "rate") == 0) {
            set_rate = true;
            if (strcmp(val, "none") != 0 && !parse_rate(val, &n, &window))
                err = "bad rate, want N/s, N/min, N/h or none";
        } else if (strcmp(key, "fail_pct") == 0) {
            set_fail = true;
            if (!parse_double(val, 0, 100, &fail))
                err = "bad fail_pct, want 0..100";
        } else if (strcmp(key, "latency_ms") == 0) {
            set_lat = true;
            if (!parse_double(val, 0, MAX_LATENCY_MS, &lat))
                err = "bad latency_ms";
        } else {
            err = "unknown parameter";
        }
        p += len;
        if (*p == '&')
            p++;
    }
    if (err) {
        sb_printf(body, "{\"ok\":false,\"error\":\"%s\"}", err);
        return 400;
    }
    if (set_rate)
        limiter_set(n, window);
    if (set_fail)
        g.fail_pct = fail;
    if (set_lat)
        g.latency_ns = (int64_t)(lat * 1e6);
    sb_printf(body, "{\"ok\":true}");
    return 200;
}

/* Requests seen per path for /json-flip (FNV-1a hash of the path; a
 * collision only merges two paths' counts, which tests avoid by using few
 * paths). */
#define FLIP_SLOTS 4096
static uint32_t flip_seen[FLIP_SLOTS];

static uint32_t flip_count(const char *path, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)path[i]) * 1099511628211ULL;
    return ++flip_seen[h % FLIP_SLOTS];
}

/* Nested JSON answers for response transforms (--keep, --ok-when):
 * /json/ID ("status":"ok"), /json-error/ID ("status":"error"),
 * /json-flip/K/ID ("error" for the first K requests of that path, then
 * "ok") and /text/ID (not JSON). */
static int json_route(const char *target, size_t plen, uint64_t seq,
                      struct sb *body, const char **ctype)
{
    const char *id = NULL, *st = "ok";
    if (strncmp(target, "/json/", 6) == 0) {
        id = target + 6;
    } else if (strncmp(target, "/json-error/", 12) == 0) {
        id = target + 12;
        st = "error";
    } else if (strncmp(target, "/json-flip/", 11) == 0) {
        const char *slash = memchr(target + 11, '/', plen - 11);
        uint64_t k;
        if (!slash || !parse_uint(target + 11, (size_t)(slash - target - 11),
                                  1000000, &k)) {
            sb_printf(body, "{\"error\":\"bad flip count\"}");
            return 400;
        }
        id = slash + 1;
        if (flip_count(target, plen) <= k)
            st = "error";
    } else if (strncmp(target, "/text/", 6) == 0) {
        *ctype = "text/plain";
        sb_printf(body, "hello %.*s", (int)(plen - 6), target + 6);
        return 200;
    } else {
        return -1;
    }
    size_t idlen = plen - (size_t)(id - target);
    sb_printf(body, "{\"id\":");
    sb_json_str(body, id, idlen);
    sb_printf(body,
              ",\"status\":\"%s\",\"data\":{\"state\":\"%s\","
              "\"tags\":[\"a\",\"b\"],\"n\":%" PRIu64 "},"
              "\"blob\":\"%s\"}",
              st, strcmp(st, "ok") ? "failed" : "done", seq,
              "0123456789abcdef0123456789abcdef0123456789abcdef");
    return 200;
}

/* Picks the answer for an accepted request on a limited route. Returns the
 * status, or 0 for a request that must never be answered. */
static int route(const char *target, size_t plen, uint64_t seq, struct sb *body,
                 const char **ctype, uint64_t *big)
{
    uint64_t v;
    if (name_is(target, plen, "/hang") || strncmp(target, "/hang/", 6) == 0)
        return 0;
    if (strncmp(target, "/status/", 8) == 0) {
        if ((plen != 11 && (plen < 11 || target[11] != '/')) ||
            !parse_uint(target + 8, 3, 599, &v) || v < 100) {
            sb_printf(body, "{\"error\":\"bad status\"}");
            return 400;
        }
        sb_printf(body, "{\"status\":%d}", (int)v);
        return (int)v;
    }
    if (strncmp(target, "/big/", 5) == 0) {
        if (!parse_uint(target + 5, plen - 5, MAX_BIG_BYTES, &v)) {
            sb_printf(body, "{\"error\":\"bad size\"}");
            return 400;
        }
        *big = v;
        *ctype = "application/octet-stream";
        return 200;
    }
    int js = json_route(target, plen, seq, body, ctype);
    if (js >= 0)
        return js;
    /* Top 53 bits as a uniform double in [0, 1), scaled to percent. */
    if (g.fail_pct > 0 &&
        (double)(rng_next() >> 11) * 0x1.0p-53 * 100.0 < g.fail_pct) {
        int status = (rng_next() & 1) ? 503 : 500;
        sb_printf(body, "{\"ok\":false,\"status\":%d,\"n\":%" PRIu64 "}",
                  status, seq);
        return status;
    }
    sb_printf(body, "{\"ok\":true,\"path\":");
    sb_json_str(body, target, strlen(target));
    sb_printf(body, ",\"n\":%" PRIu64 "}", seq);
    return 200;
}

static char *log_line(const struct req *q, const char *target, int status,
                      int64_t now, size_t *len)
{
    struct timespec wall; /* called on arrival, so this is arrival time */
    clock_gettime(CLOCK_REALTIME, &wall);
    struct sb l = {0};
    sb_printf(&l, "{\"t\":%.6f,\"wall\":%lld.%06ld,\"method\":",
              secs_since_start(now), (long long)wall.tv_sec,
              wall.tv_nsec / 1000);
    sb_json_str(&l, q->method, strlen(q->method));
    sb_printf(&l, ",\"path\":");
    sb_json_str(&l, target, strlen(target));
    sb_printf(&l, ",\"status\":%d,\"idem\":", status);
    sb_json_str(&l, q->idem, strlen(q->idem));
    sb_printf(&l, ",\"bytes\":%" PRIu64 "}\n", q->clen);
    *len = l.len;
    return l.p;
}

static void dispatch(struct conn *c, const struct req *q)
{
    int64_t now = now_ns();
    const char *target = q->target, *ctype = "application/json";
    size_t plen = strcspn(target, "?");
    const char *query = target[plen] == '?' ? target + plen + 1 : "";
    struct sb body = {0}, extra = {0};
    bool close_after = !q->keep_alive, stats = name_is(target, plen, "/stats");

    if (stats || name_is(target, plen, "/control")) {
        int status = 200;
        if (stats)
            build_stats(&body);
        else
            status = handle_control(query, &body);
        conn_enqueue(
            c, resp_new(status, ctype, &body, 0, NULL, q->head, close_after),
            now, now);
        free(body.p);
        return;
    }

    if (!g.requests++)
        g.first_t = now;
    g.last_t = now;
    int status;
    uint64_t big = 0;
    int64_t wait = 0;
    struct keyent *key = NULL;
    if (g.key_param) {
        char kbuf[1024];
        const char *kn = query_arg(query, g.key_param, kbuf, sizeof kbuf);
        if (kn && !(key = key_find(kn)))
            g.keys_overflow++;
    }
    if (key && !key_admit(key, now, &wait)) {
        /* The key's own limit: its Retry-After, and the global limiter
         * does not see the call. */
        long long s = g.retry_after >= 0 ? g.retry_after : ceil_secs(wait);
        if (s < 1 && g.retry_after < 0)
            s = 1;
        status = 429;
        key->limited++;
        sb_printf(&extra, "Retry-After: %lld\r\n", s);
        sb_printf(&body,
                  "{\"error\":\"rate limited for this key\","
                  "\"retry_after\":%lld}",
                  s);
    } else if (!limiter_admit(now, &wait)) {
        long long s = g.retry_after >= 0 ? g.retry_after : ceil_secs(wait);
        if (s < 1 && g.retry_after < 0)
            s = 1;
        status = 429;
        sb_printf(&extra, "Retry-After: %lld\r\n", s);
        sb_printf(&body, "{\"error\":\"rate limited\",\"retry_after\":%lld}",
                  s);
    } else {
        if (g.lim_on)
            ring_push_fixed(&g.lim, now);
        if (key) {
            if (key->n)
                ring_push_fixed(&key->lim, now);
            if (!key->accepted++)
                key->first_t = now;
            key->last_t = now;
        }
        g.accepted++;
        size_t in1 = window_add(&g.win1, now, NS_PER_SEC);
        size_t in10 = window_add(&g.win10, now, 10 * NS_PER_SEC);
        g.max1 = in1 > g.max1 ? in1 : g.max1;
        g.max10 = in10 > g.max10 ? in10 : g.max10;
        status = route(target, plen, ++g.seq, &body, &ctype, &big);
    }
    if (g.rl_headers && g.lim_on)
        add_ratelimit_headers(&extra, now);
    if (status)
        g.status_count[status]++;

    struct resp *r = resp_new(status ? status : 200, ctype, &body, big, &extra,
                              q->head, close_after);
    r->hang = status == 0;
    r->in_flight = true;
    if (++g.in_flight > g.max_in_flight)
        g.max_in_flight = g.in_flight;
    if (g.log)
        r->log = log_line(q, target, status, now, &r->log_len);
    conn_enqueue(c, r, now, now + g.latency_ns);
    free(body.p);
    free(extra.p);
}

/* Parses and dispatches buffered requests. Returns true if it stopped only
 * because too many responses are already queued. */
static bool conn_process(struct conn *c)
{
    size_t pos = 0;
    bool blocked = false;
    while (!c->closing) {
        if (c->qlen >= MAX_QUEUED) {
            blocked = true;
            break;
        }
        size_t avail = c->len - pos;
        if (c->in_body) {
            size_t take = avail < c->body_left ? avail : (size_t)c->body_left;
            pos += take;
            c->body_left -= take;
            if (c->body_left)
                break;
            c->in_body = false;
            dispatch(c, &c->req);
            req_clear(&c->req);
            continue;
        }
        /* RFC 9112 asks servers to ignore blank lines before a request. */
        while (c->scan == 0 && avail &&
               (c->buf[pos] == '\r' || c->buf[pos] == '\n')) {
            pos++;
            avail--;
        }
        if (avail == 0)
            break;
        size_t hlen = find_header_end(c->buf + pos, avail, &c->scan);
        if (hlen == 0 && avail <= MAX_HEADER_BYTES)
            break;
        c->scan = 0;
        if (hlen == 0 || hlen > MAX_HEADER_BYTES) {
            queue_error(c, 431, "request header too large");
            break;
        }
        int err = parse_request(c->buf + pos, hlen, &c->req);
        pos += hlen;
        if (err) {
            req_clear(&c->req);
            queue_error(c, err,
                        err == 413   ? "request body too large"
                        : err == 501 ? "chunked bodies unsupported"
                                     : "bad request");
            break;
        }
        if (c->req.clen == 0) {
            dispatch(c, &c->req);
            req_clear(&c->req);
            continue;
        }
        if (c->req.expect) {
            /* Answer 100 Continue so that curl and friends do not wait a
             * second before sending the body. */
            struct resp *r = xmalloc(sizeof *r + 25);
            memset(r, 0, sizeof *r);
            memcpy(r->data, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            r->len = 25;
            int64_t now = now_ns();
            conn_enqueue(c, r, now, now);
        }
        c->in_body = true;
        c->body_left = c->req.clen;
    }
    if (c->closing)
        pos = c->len; /* nothing after the last response will be read */
    memmove(c->buf, c->buf + pos, c->len - pos);
    c->len -= pos;
    return blocked;
}

/* Reads what the socket has. Returns false if the connection was closed. */
static bool conn_read(struct conn *c)
{
    if (c->draining || c->closing) {
        char scratch[16384];
        ssize_t n = recv(c->fd, scratch, sizeof scratch, 0);
        if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
            return true;
        if (c->draining) {
            conn_close(c);
            return false;
        }
        c->read_closed = true;
        return true;
    }
    if (c->cap - c->len < 1024 && c->cap < BUF_MAX) {
        size_t ncap = c->cap * 2 < BUF_MAX ? c->cap * 2 : BUF_MAX;
        char *nb = realloc(c->buf, ncap);
        if (!nb)
            die_oom();
        c->buf = nb;
        c->cap = ncap;
    }
    if (c->len == c->cap)
        return true;
    ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (n > 0)
        c->len += (size_t)n;
    else if (n == 0)
        c->read_closed = true;
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        conn_close(c);
        return false;
    }
    return true;
}

/* Parses, answers and re-arms a connection after anything happened to it. */
static void conn_service(struct conn *c)
{
    for (;;) {
        bool blocked = !c->draining && conn_process(c);
        if (!conn_flush(c))
            return;
        if (!blocked || c->qlen >= MAX_QUEUED || c->draining)
            break;
    }
    /* After the peer stops sending, finish what can still be answered; a
     * hanging request never will be, so it ends the connection. */
    if (c->read_closed && (!c->qh || c->qh->hang || c->draining)) {
        conn_close(c);
        return;
    }
    conn_update_events(c);
}

static void conn_new(int fd)
{
    if ((size_t)fd >= g.nconns) {
        size_t n = g.nconns ? g.nconns : 1024;
        while (n <= (size_t)fd)
            n *= 2;
        struct conn **t = realloc(g.conns, n * sizeof *t);
        if (!t)
            die_oom();
        memset(t + g.nconns, 0, (n - g.nconns) * sizeof *t);
        g.conns = t;
        g.nconns = n;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        die_oom();
    c->fd = fd;
    if (++g.next_id == 0)
        g.next_id = 1;
    c->id = g.next_id;
    c->cap = 4096;
    c->buf = xmalloc(c->cap);
    c->events = EPOLLIN | EPOLLRDHUP;
    struct epoll_event e = {.events = c->events,
                            .data.u64 = ((uint64_t)c->id << 32) | (uint32_t)fd};
    g.conns[fd] = c;
    if (epoll_ctl(g.ep, EPOLL_CTL_ADD, fd, &e) < 0)
        conn_close(c);
}

static void on_accept(void)
{
    for (int i = 0; i < 256; i++) {
        int fd = accept4(g.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                /* Out of descriptors: the listener would stay readable and
                 * spin the loop, so park it for a moment. */
                epoll_ctl(g.ep, EPOLL_CTL_DEL, g.lfd, NULL);
                timer_push(now_ns() + LISTEN_RETRY_NS, -1, 0);
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_new(fd);
    }
}

static void run_timers(void)
{
    int64_t now = now_ns();
    while (g.heap_len && g.heap[0].when <= now) {
        struct timer t = timer_pop();
        if (t.fd < 0) {
            struct epoll_event e = {.events = EPOLLIN, .data.u64 = 0};
            e.data.u64 = (uint32_t)g.lfd;
            epoll_ctl(g.ep, EPOLL_CTL_ADD, g.lfd, &e);
            continue;
        }
        struct conn *c = (size_t)t.fd < g.nconns ? g.conns[t.fd] : NULL;
        if (!c || c->id != t.id)
            continue; /* the connection is gone */
        if (c->draining && now >= c->drain_deadline)
            conn_close(c);
        else if (!c->draining)
            conn_service(c);
    }
}

/* ---- startup ---------------------------------------------------------- */

static void usage(void)
{
    fputs("usage: fanout-testserver [options]\n"
          "HTTP/1.1 server imitating a rate-limited API for fanout tests.\n"
          "  --bind ADDR           address to listen on (default 127.0.0.1)\n"
          "  --port N              port, 0 for an ephemeral one (default 0)\n"
          "  --port-file PATH      write the bound port to PATH (atomically)\n"
          "  --rate N/UNIT         strict sliding-window limit, UNIT s|min|h\n"
          "  --fail-pct P          answer 500/503 to P% of accepted requests\n"
          "  --seed N              seed of the failure PRNG (default 1)\n"
          "  --latency-ms MS       delay every response by MS milliseconds\n"
          "  --log PATH            append one JSON line per request to PATH\n"
          "  --retry-after S       fixed Retry-After value for 429 responses\n"
          "  --ratelimit-headers   send X-RateLimit-* and RateLimit headers\n"
          "  --key-param NAME      count calls per value of query argument "
          "NAME\n"
          "                        (in /stats \"keys\")\n"
          "  --key-limit N/UNIT    with --key-param: a strict sliding-window "
          "limit\n"
          "                        per key; over it, 429 with Retry-After\n"
          "  --key-override K=N/UNIT  with --key-param: key K has this "
          "limit instead\n"
          "  --help                show this help\n",
          stdout);
}

static void bad_value(const char *flag, const char *value)
{
    fprintf(stderr, "fanout-testserver: invalid value for %s: '%s'\n", flag,
            value ? value : "");
    exit(2);
}

static int open_listener(const char *addr, uint64_t port)
{
    char ports[16];
    snprintf(ports, sizeof ports, "%" PRIu64, port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *res, *ai;
    if (getaddrinfo(addr, ports, &hints, &res) != 0)
        bad_value("--bind", addr);
    int fd = -1;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family,
                    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 4096) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "fanout-testserver: cannot listen on %s port %s: %s\n",
                addr, ports, strerror(errno));
        exit(1);
    }
    return fd;
}

static void write_port_file(const char *path, int lfd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    memset(&ss, 0, sizeof ss);
    int port = 0;
    if (getsockname(lfd, (struct sockaddr *)&ss, &sl) == 0)
        port = ntohs(ss.ss_family == AF_INET6
                         ? ((struct sockaddr_in6 *)&ss)->sin6_port
                         : ((struct sockaddr_in *)&ss)->sin_port);
    size_t n = strlen(path) + 5;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    bool ok = f && fprintf(f, "%d\n", port) > 0;
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "fanout-testserver: cannot write --port-file %s: %s\n",
                path, strerror(errno));
        exit(1);
    }
    free(tmp);
}

struct opts {
    const char *bind, *port_file, *log;
    uint64_t port, seed;
};

/* Accepts "--flag value" and "--flag=value". */
static void parse_args(int argc, char **argv, struct opts *o)
{
    static const char *const valued[] = {
        "--bind",        "--port",      "--port-file",  "--rate",
        "--fail-pct",    "--seed",      "--latency-ms", "--log",
        "--retry-after", "--key-param", "--key-limit",  "--key-override"};
    uint64_t u;
    double d;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq = strchr(arg, '=');
        char flag[32];
        snprintf(flag, sizeof flag, "%.*s",
                 (int)(eq ? (size_t)(eq - arg) : strlen(arg)), arg);
        if (strcmp(flag, "--help") == 0 || strcmp(flag, "-h") == 0) {
            usage();
            exit(0);
        }
        if (strcmp(arg, "--ratelimit-headers") == 0) {
            g.rl_headers = true;
            continue;
        }
        bool known = false;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++)
            known = known || strcmp(flag, valued[k]) == 0;
        if (!known) {
            fprintf(stderr, "fanout-testserver: unknown option '%s'\n", arg);
            exit(2);
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            fprintf(stderr, "fanout-testserver: %s needs a value\n", flag);
            exit(2);
        }
        bool ok = true;
        if (strcmp(flag, "--bind") == 0) {
            o->bind = v;
        } else if (strcmp(flag, "--port") == 0) {
            ok = parse_uint(v, strlen(v), 65535, &o->port);
        } else if (strcmp(flag, "--port-file") == 0) {
            o->port_file = v;
        } else if (strcmp(flag, "--log") == 0) {
            o->log = v;
        } else if (strcmp(flag, "--rate") == 0) {
            int64_t w;
            ok = parse_rate(v, &u, &w);
            if (ok)
                limiter_set(u, w);
        } else if (strcmp(flag, "--key-param") == 0) {
            ok = *v != '\0';
            g.key_param = v;
        } else if (strcmp(flag, "--key-override") == 0) {
            const char *eqv = strchr(v, '=');
            ok = eqv && eqv > v && parse_rate(eqv + 1, &g.ovr_n, &g.ovr_window);
            if (ok) {
                char *name = xmalloc((size_t)(eqv - v) + 1);
                memcpy(name, v, (size_t)(eqv - v));
                name[eqv - v] = '\0';
                g.ovr_key = name;
            }
        } else if (strcmp(flag, "--key-limit") == 0) {
            ok = parse_rate(v, &g.key_n, &g.key_window);
        } else if (strcmp(flag, "--fail-pct") == 0) {
            ok = parse_double(v, 0, 100, &g.fail_pct);
        } else if (strcmp(flag, "--seed") == 0) {
            ok = parse_uint(v, strlen(v), UINT64_MAX, &o->seed);
        } else if (strcmp(flag, "--latency-ms") == 0) {
            ok = parse_double(v, 0, MAX_LATENCY_MS, &d);
            g.latency_ns = ok ? (int64_t)(d * 1e6) : 0;
        } else if (strcmp(flag, "--retry-after") == 0) {
            ok = parse_uint(v, strlen(v), 86400 * 365, &u);
            g.retry_after = ok ? (long long)u : -1;
        }
        if (!ok)
            bad_value(flag, v);
    }
}

static void on_conn_event(struct conn *c, uint32_t ev)
{
    if (ev & (EPOLLERR | EPOLLHUP)) {
        conn_close(c);
        return;
    }
    if (ev & EPOLLIN) {
        if (!conn_read(c))
            return;
    } else if (ev & EPOLLRDHUP) {
        c->read_closed = true;
    }
    conn_service(c);
}

int main(int argc, char **argv)
{
    struct opts o = {.bind = "127.0.0.1", .seed = 1};
    g.retry_after = -1;
    parse_args(argc, argv, &o);
    rng_seed(o.seed);
    memset(xbuf, 'x', sizeof xbuf);
    g.start = now_ns();

    if (o.log) {
        g.log = fopen(o.log, "a");
        if (!g.log) {
            fprintf(stderr, "fanout-testserver: cannot open --log %s: %s\n",
                    o.log, strerror(errno));
            return 1;
        }
        g.logbuf = xmalloc(1 << 20);
        setvbuf(g.log, g.logbuf, _IOFBF, 1 << 20);
    }

    /* Thousands of keep-alive connections need more than the usual 1024
     * descriptors; take whatever the hard limit allows. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max < (1 << 20) ? rl.rlim_max : (1 << 20);
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* Signals arrive through a signalfd so that shutdown happens in the
     * loop, where flushing the log is safe. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    /* A shell starting us in the background may have set SIGINT to be
     * ignored, and ignored signals never reach a signalfd. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    g.sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    if (g.sfd < 0 || g.ep < 0) {
        perror("fanout-testserver: signalfd/epoll");
        return 1;
    }
    g.lfd = open_listener(o.bind, o.port);
    struct epoll_event e = {.events = EPOLLIN};
    e.data.u64 = (uint32_t)g.lfd;
    epoll_ctl(g.ep, EPOLL_CTL_ADD, g.lfd, &e);
    e.data.u64 = (uint32_t)g.sfd;
    epoll_ctl(g.ep, EPOLL_CTL_ADD, g.sfd, &e);
    if (o.port_file)
        write_port_file(o.port_file, g.lfd);

    struct epoll_event evs[256];
    while (!g.stop) {
        int n = epoll_wait(g.ep, evs, 256, next_timeout_ms());
        if (n < 0 && errno != EINTR) {
            perror("fanout-testserver: epoll_wait");
            break;
        }
        for (int i = 0; i < n && !g.stop; i++) {
            /* Connections are tagged with an id as well as their fd, so an
             * event for a connection closed earlier in this batch (whose fd
             * may already be reused) is recognised and dropped. */
            uint32_t id = (uint32_t)(evs[i].data.u64 >> 32);
            int fd = (int)(uint32_t)evs[i].data.u64;
            struct conn *c = (size_t)fd < g.nconns ? g.conns[fd] : NULL;
            if (id == 0 && fd == g.lfd)
                on_accept();
            else if (id == 0 && fd == g.sfd)
                g.stop = true;
            else if (c && c->id == id)
                on_conn_event(c, evs[i].events);
        }
        run_timers();
    }

    close(g.lfd);
    for (size_t i = 0; i < g.nconns; i++)
        if (g.conns[i])
            conn_close(g.conns[i]);
    if (g.log)
        fclose(g.log);
    close(g.sfd);
    close(g.ep);
    free(g.logbuf);
    free(g.conns);
    free(g.heap);
    free(g.lim.t);
    free(g.win1.t);
    free(g.win10.t);
    return 0;
}
