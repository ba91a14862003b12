/* ratelimit.c - RateLimit / X-RateLimit header parsing; see ratelimit.h. */
#include "fmacros.h"
#include "ratelimit.h"

#include <ctype.h>
#include <strings.h>

#define VALUE_MAX 512
#define NUM_MAX INT64_C(1000000000000) /* far beyond any real limit */

void ratelimit_init(ratelimit_info *ri)
{
    ri->limit = ri->window_ms = ri->remaining = ri->reset_ms = -1;
}

int ratelimit_known(const ratelimit_info *ri)
{
    return ri->limit >= 0 || ri->remaining >= 0 || ri->reset_ms >= 0;
}

/* Parses a non-negative integer (an optional fraction is truncated) at *p,
 * advancing it. Returns -1 when there is none. */
static int64_t number(const char **p)
{
    const char *s = *p;
    while (*s == ' ' || *s == '\t')
        s++;
    if (!isdigit((unsigned char)*s))
        return -1;
    int64_t v = 0;
    while (isdigit((unsigned char)*s)) {
        if (v < NUM_MAX)
            v = v * 10 + (*s - '0');
        s++;
    }
    if (*s == '.') {
        s++;
        while (isdigit((unsigned char)*s))
            s++;
    }
    *p = s;
    return v > NUM_MAX ? NUM_MAX : v;
}

/* A whole value that is just a number. */
static int64_t only_number(const char *v)
{
    const char *p = v;
    int64_t n = number(&p);
    while (*p == ' ' || *p == '\t')
        p++;
    return *p ? -1 : n;
}

/* "60;w=1, 1000;w=3600": keeps the policy with the lowest rate. */
static int parse_policy(ratelimit_info *ri, const char *v)
{
    int found = 0;
    const char *p = v;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (*p == '"') { /* draft-08: "name";q=60;w=1 */
            const char *q = strchr(p + 1, '"');
            if (!q)
                return found;
            p = q + 1;
        }
        int64_t limit = number(&p), window = -1;
        while (*p && *p != ',') {
            if (*p == ';') {
                p++;
                while (*p == ' ')
                    p++;
                if ((p[0] == 'w' || p[0] == 'W') && p[1] == '=') {
                    p += 2;
                    window = number(&p);
                    continue;
                }
                if ((p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
                    p += 2;
                    limit = number(&p);
                    continue;
                }
                /* Another parameter, or the end: never step past a NUL. */
                continue;
            }
            p++;
        }
        if (limit > 0 && window > 0) {
            double rate = (double)limit / (double)window;
            double cur =
                ri->limit > 0 && ri->window_ms > 0
                    ? (double)ri->limit * 1000.0 / (double)ri->window_ms
                    : -1;
            if (cur < 0 || rate < cur) {
                ri->limit = limit;
                ri->window_ms = window * 1000;
            }
            found = 1;
        }
    }
    return found;
}

/* "limit=60, remaining=5, reset=1" or "\"default\";r=5;t=1". */
static int parse_fields(ratelimit_info *ri, const char *v)
{
    int found = 0;
    const char *p = v;
    while (*p) {
        while (*p && !isalpha((unsigned char)*p))
            p++;
        const char *k = p;
        while (isalpha((unsigned char)*p))
            p++;
        size_t kl = (size_t)(p - k);
        if (*p != '=')
            continue;
        p++;
        int64_t n = number(&p);
        if (n < 0)
            continue;
        if ((kl == 5 && !strncasecmp(k, "limit", 5)) ||
            (kl == 1 && (*k == 'l' || *k == 'q'))) {
            ri->limit = n;
            found = 1;
        } else if ((kl == 9 && !strncasecmp(k, "remaining", 9)) ||
                   (kl == 1 && *k == 'r')) {
            ri->remaining = n;
            found = 1;
        } else if ((kl == 5 && !strncasecmp(k, "reset", 5)) ||
                   (kl == 1 && *k == 't')) {
            ri->reset_ms = n * 1000;
            found = 1;
        }
    }
    return found;
}

int ratelimit_header(ratelimit_info *ri, const char *line, size_t len,
                     int64_t now_wall_ms)
{
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return 0;
    size_t nl = (size_t)(colon - line);
    const char *vs = colon + 1;
    size_t vl = len - nl - 1;
    while (vl && (*vs == ' ' || *vs == '\t')) {
        vs++;
        vl--;
    }
    while (vl && (vs[vl - 1] == '\r' || vs[vl - 1] == '\n' ||
                  vs[vl - 1] == ' ' || vs[vl - 1] == '\t'))
        vl--;
    if (vl == 0 || vl >= VALUE_MAX)
        return 0;
    char v[VALUE_MAX];
    memcpy(v, vs, vl);
    v[vl] = '\0';
#define IS(name) (nl == sizeof(name) - 1 && !strncasecmp(line, name, nl))
    if (IS("RateLimit-Policy"))
        return parse_policy(ri, v);
    if (IS("RateLimit"))
        return parse_fields(ri, v);
    int64_t n = only_number(v);
    if (n < 0)
        return 0;
    if (IS("X-RateLimit-Limit") || IS("RateLimit-Limit")) {
        ri->limit = n;
        return 1;
    }
    if (IS("X-RateLimit-Remaining") || IS("RateLimit-Remaining")) {
        ri->remaining = n;
        return 1;
    }
    if (IS("X-RateLimit-Reset") || IS("RateLimit-Reset")) {
        /* A Unix time (GitHub) rather than a delay. */
        if (n > 1000000000) {
            int64_t d = n * 1000 - now_wall_ms;
            ri->reset_ms = d > 0 ? d : 0;
        } else {
            ri->reset_ms = n * 1000;
        }
        return 1;
    }
#undef IS
    return 0;
}
