/* util.c - aborting allocators, number/duration/size parsing, and URL
 * redaction for messages. */
#include "fmacros.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <unistd.h>

static void oom(size_t n)
{
    fprintf(stderr, "fanout: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p)
        oom(count * n);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    if (n) /* s may be NULL for an empty string (msgpack-c does that) */
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *xstrdup(const char *s)
{
    return s ? xstrndup(s, strlen(s)) : NULL;
}

int util_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Splits s into a non-negative decimal number and a unit suffix. */
static int split_number(const char *s, double *num, const char **unit)
{
    if (!s || !*s || !(isdigit((unsigned char)*s) || *s == '.'))
        return -1;
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0 || v != v)
        return -1;
    *num = v;
    *unit = end;
    return 0;
}

int util_parse_duration_ms(const char *s, int64_t *out_ms)
{
    double v;
    const char *u;
    if (split_number(s, &v, &u) < 0)
        return -1;
    double mul;
    if (*u == '\0' || strcmp(u, "ms") == 0)
        mul = 1;
    else if (strcmp(u, "s") == 0)
        mul = 1000;
    else if (strcmp(u, "m") == 0 || strcmp(u, "min") == 0)
        mul = 60000;
    else if (strcmp(u, "h") == 0)
        mul = 3600000;
    else
        return -1;
    double ms = v * mul;
    if (ms > (double)INT64_MAX / 2)
        return -1;
    *out_ms = (int64_t)(ms + 0.5);
    return 0;
}

int util_parse_size(const char *s, int64_t *out)
{
    double v;
    const char *u;
    if (split_number(s, &v, &u) < 0)
        return -1;
    double mul;
    if (*u == '\0' || strcasecmp(u, "b") == 0)
        mul = 1;
    else if (strcasecmp(u, "k") == 0 || strcasecmp(u, "kb") == 0 ||
             strcasecmp(u, "kib") == 0)
        mul = 1024.0;
    else if (strcasecmp(u, "m") == 0 || strcasecmp(u, "mb") == 0 ||
             strcasecmp(u, "mib") == 0)
        mul = 1024.0 * 1024;
    else if (strcasecmp(u, "g") == 0 || strcasecmp(u, "gb") == 0 ||
             strcasecmp(u, "gib") == 0)
        mul = 1024.0 * 1024 * 1024;
    else
        return -1;
    double n = v * mul;
    if (n > (double)INT64_MAX / 2)
        return -1;
    *out = (int64_t)n;
    return 0;
}

void util_hash_hex(const void *data, size_t len, uint64_t seed, char out[17])
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    /* A final avalanche so that similar keys do not share hex prefixes. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

int util_write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void util_self_dir(char *buf, size_t cap)
{
    ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
    if (n <= 0) {
        snprintf(buf, cap, ".");
        return;
    }
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash && slash != buf)
        *slash = '\0';
    else
        snprintf(buf, cap, ".");
}

/* Query parameters whose value is a credential (compared without case). */
static const char *const secret_params[] = {"sig",    "password",     "secret",
                                            "token",  "access_token", "key",
                                            "apikey", "api_key"};

static int is_secret_param(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof secret_params / sizeof secret_params[0]; i++)
        if (strlen(secret_params[i]) == len &&
            !strncasecmp(secret_params[i], name, len))
            return 1;
    return 0;
}

/* Appends n bytes of s to out at *k, keeping room for the NUL. */
static void put(char *out, size_t cap, size_t *k, const char *s, size_t n)
{
    for (size_t i = 0; i < n && *k + 1 < cap; i++)
        out[(*k)++] = s[i];
}

char *util_redact_url(const char *url, char *out, size_t cap)
{
    if (!cap)
        return out;
    size_t k = 0;
    const char *sep = strstr(url, "://");
    if (!sep) {
        put(out, cap, &k, url, strlen(url));
        out[k] = '\0';
        return out;
    }
    const char *p = sep + 3;
    put(out, cap, &k, url, (size_t)(p - url));
    /* The authority ends at the path, query or fragment; its userinfo at
     * the last '@' (a password may contain an unencoded '@'). */
    size_t auth_len = strcspn(p, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < auth_len; i++)
        if (p[i] == '@')
            at = p + i;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) /* user:password@ or :password@ */
            put(out, cap, &k, p, (size_t)(colon + 1 - p));
        put(out, cap, &k, "***", 3);
        p = at;
    }
    size_t upto = strcspn(p, "?#");
    put(out, cap, &k, p, upto);
    p += upto;
    if (*p == '?') {
        put(out, cap, &k, p, 1);
        p++;
        while (*p && *p != '#') {
            size_t plen = strcspn(p, "&#");
            size_t nlen = strcspn(p, "=&#");
            if (nlen < plen && is_secret_param(p, nlen)) {
                put(out, cap, &k, p, nlen + 1);
                put(out, cap, &k, "***", 3);
            } else {
                put(out, cap, &k, p, plen);
            }
            p += plen;
            if (*p == '&') {
                put(out, cap, &k, p, 1);
                p++;
            }
        }
    }
    put(out, cap, &k, p, strlen(p)); /* the fragment */
    out[k] = '\0';
    return out;
}

size_t util_utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t k;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        k = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        k = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < k || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < k; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return k;
}
