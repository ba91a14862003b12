/*
 * queue.c - what the queue drivers share: the calls through a driver's
 * table, query parameters, and turning a message's text into an item. It
 * knows no driver: queue_registry.c lists them.
 */
#include "fmacros.h"
#include "queue.h"
#include "util.h"

#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int queue_has(const queue *q, unsigned caps)
{
    return (q->driver->caps & caps) == caps;
}

int queue_pull(queue *q, size_t max, queue_msg *out, size_t *n, char *err,
               size_t errlen)
{
    return q->driver->pull(q, max, out, n, err, errlen);
}

int queue_ack(queue *q, queue_msg *msgs, size_t n, int *outcome, char *err,
              size_t errlen)
{
    return q->driver->ack(q, msgs, n, outcome, err, errlen);
}

int queue_renew(queue *q, queue_msg *msgs, size_t n, int *outcome, char *err,
                size_t errlen)
{
    assert(queue_has(q, QUEUE_CAP_RENEW) && q->driver->renew);
    return q->driver->renew(q, msgs, n, outcome, err, errlen);
}

const char *queue_describe(queue *q)
{
    return q->driver->describe(q);
}

void queue_destroy(queue **qp)
{
    if (!*qp)
        return;
    (*qp)->driver->destroy(*qp);
    *qp = NULL;
}

void queue_url_public(const char *url, char *out, size_t cap)
{
    const char *sep = strstr(url, "://");
    const char *hs = sep ? sep + 3 : url;
    size_t rest = strcspn(hs, "?");
    const char *at = memchr(hs, '@', rest);
    if (at) {
        rest -= (size_t)(at + 1 - hs);
        hs = at + 1;
    }
    char group[256] = "";
    queue_url_param(url, "group", group, sizeof group);
    snprintf(out, cap, "%.*s%.*s%s%s", (int)(sep ? sep + 3 - url : 0), url,
             (int)rest, hs, group[0] ? "?group=" : "", group);
}

void queue_msg_fini(queue_msg *m)
{
    free(m->id);
    free(m->receipt);
    free(m->body);
    free(m->bad);
    memset(m, 0, sizeof *m);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *queue_pct_decode(const char *s, size_t n, int plus_is_space, size_t *len)
{
    char *o = xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%' && n - i >= 3 && hexval(s[i + 1]) >= 0 &&
            hexval(s[i + 2]) >= 0) {
            c = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        o[k++] = (char)c;
    }
    o[k] = '\0';
    if (len)
        *len = k;
    return o;
}

int queue_url_param(const char *url, const char *name, char *buf, size_t cap)
{
    const char *q = strchr(url, '?');
    size_t nl = strlen(name);
    while (q) {
        q++;
        const char *end = q + strcspn(q, "&");
        if ((size_t)(end - q) >= nl && strncmp(q, name, nl) == 0 &&
            (q[nl] == '=' || q + nl == end)) {
            const char *v = q[nl] == '=' ? q + nl + 1 : end;
            size_t len;
            char *d = queue_pct_decode(v, (size_t)(end - v), 1, &len);
            int rc = len < cap ? 1 : -1;
            if (rc == 1)
                memcpy(buf, d, len + 1);
            free(d);
            return rc;
        }
        q = *end ? end : NULL;
    }
    return 0;
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Decodes standard or URL-safe base64 (padding optional, whitespace
 * ignored) into a new NUL-terminated buffer; NULL when it is not base64. */
static char *b64_decode(const char *s, size_t len, size_t *out_len)
{
    char *out = xmalloc(len / 4 * 3 + 4);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64val(c);
        if (v < 0 || pad) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (pad > 2 || bits >= 6) {
        free(out);
        return NULL;
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

static int is_object_text(const char *s, size_t len)
{
    json_t *o = json_loadb(s, len, 0, NULL);
    int ok = json_is_object(o);
    json_decref(o);
    return ok;
}

void queue_set_body(queue_msg *m, const char *text, size_t len,
                    const char *mode, size_t max_bytes)
{
    char why[160];
    if (len > max_bytes * 2 + 8) {
        m->too_big = 1;
        return;
    }
    int try_plain = strcmp(mode, "base64") != 0;
    int try_b64 = strcmp(mode, "none") != 0;
    if (try_plain && (!try_b64 || is_object_text(text, len))) {
        if (len > max_bytes) {
            m->too_big = 1;
            return;
        }
        m->body = xstrndup(text, len);
        m->len = len;
        return;
    }
    size_t dl = 0;
    char *d = try_b64 ? b64_decode(text, len, &dl) : NULL;
    if (d && dl > max_bytes) {
        free(d);
        m->too_big = 1;
        return;
    }
    if (d && (!try_plain || is_object_text(d, dl))) {
        m->body = d;
        m->len = dl;
        return;
    }
    free(d);
    snprintf(why, sizeof why, "%s",
             !try_b64     ? "the message is not a JSON object"
             : !try_plain ? "the message is not base64 of a JSON object"
                          : "the message is neither a JSON object nor "
                            "base64 of one");
    m->bad = xstrdup(why);
}
