/* jsonw.c - see jsonw.h. */
#include "fmacros.h"
#include "jsonw.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

static void reserve(jsonw *w, size_t more)
{
    if (w->len + more + 1 <= w->cap)
        return;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + more + 1)
        cap *= 2;
    w->p = xrealloc(w->p, cap);
    w->cap = cap;
}

void jsonw_raw(jsonw *w, const char *s, size_t n)
{
    reserve(w, n);
    memcpy(w->p + w->len, s, n);
    w->len += n;
    w->p[w->len] = '\0';
}

void jsonw_lit(jsonw *w, const char *s)
{
    jsonw_raw(w, s, strlen(s));
}

int jsonw_utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = util_utf8_len(u + i, n - i);
        if (!k)
            return 0;
        i += k;
    }
    return 1;
}

void jsonw_str(jsonw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    reserve(w, n + 2);
    w->p[w->len++] = '"';
    size_t i = 0;
    while (i < n) {
        /* Copy the longest run that needs no escaping in one go. */
        size_t j = i;
        while (j < n && u[j] >= 0x20 && u[j] < 0x80 && u[j] != '"' &&
               u[j] != '\\')
            j++;
        if (j > i) {
            jsonw_raw(w, s + i, j - i);
            i = j;
            continue;
        }
        unsigned c = u[i];
        if (c >= 0x80) {
            size_t k = util_utf8_len(u + i, n - i);
            if (k) {
                jsonw_raw(w, s + i, k);
                i += k;
            } else {
                jsonw_lit(w, "\xEF\xBF\xBD"); /* U+FFFD */
                i++;
            }
            continue;
        }
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t el = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
        }
        jsonw_raw(w, esc, el);
        i++;
    }
    jsonw_raw(w, "\"", 1);
}

void jsonw_int(jsonw *w, long long v)
{
    char t[32];
    int n = snprintf(t, sizeof t, "%lld", v);
    jsonw_raw(w, t, (size_t)n);
}

void jsonw_key(jsonw *w, const char *key, int first)
{
    reserve(w, strlen(key) + 4);
    w->p[w->len++] = first ? '{' : ',';
    w->p[w->len++] = '"';
    jsonw_lit(w, key);
    jsonw_raw(w, "\":", 2);
}

/* ---- the copyable check ---------------------------------------------- */

typedef struct scan {
    const unsigned char *s;
    size_t i, n;
} scan;

static int hex4(scan *sc, unsigned *v)
{
    if (sc->n - sc->i < 4)
        return 0;
    *v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned c = sc->s[sc->i++], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            return 0;
        *v = *v << 4 | d;
    }
    return 1;
}

static int str(scan *sc)
{
    sc->i++; /* the opening quote */
    while (sc->i < sc->n) {
        unsigned c = sc->s[sc->i];
        if (c == '"') {
            sc->i++;
            return 1;
        }
        if (c < 0x20)
            return 0;
        if (c >= 0x80) {
            size_t k = util_utf8_len(sc->s + sc->i, sc->n - sc->i);
            if (!k)
                return 0;
            sc->i += k;
            continue;
        }
        sc->i++;
        if (c != '\\')
            continue;
        if (sc->i >= sc->n)
            return 0;
        c = sc->s[sc->i++];
        if (strchr("\"\\/bfnrt", (int)c) && c)
            continue;
        unsigned v;
        if (c != 'u' || !hex4(sc, &v) || v == 0 || (v >= 0xDC00 && v <= 0xDFFF))
            return 0;
        if (v >= 0xD800 && v <= 0xDBFF) { /* needs its low half */
            if (sc->n - sc->i < 2 || sc->s[sc->i] != '\\' ||
                sc->s[sc->i + 1] != 'u')
                return 0;
            sc->i += 2;
            if (!hex4(sc, &v) || v < 0xDC00 || v > 0xDFFF)
                return 0;
        }
    }
    return 0;
}

static int digits(scan *sc)
{
    size_t from = sc->i;
    while (sc->i < sc->n && sc->s[sc->i] >= '0' && sc->s[sc->i] <= '9')
        sc->i++;
    return (int)(sc->i - from);
}

static int num(scan *sc)
{
    size_t from = sc->i;
    if (sc->s[sc->i] == '-')
        sc->i++;
    if (sc->i >= sc->n)
        return 0;
    int d;
    if (sc->s[sc->i] == '0') {
        sc->i++;
        d = 1;
    } else if (!(d = digits(sc)))
        return 0;
    int real = 0;
    if (sc->i < sc->n && sc->s[sc->i] == '.') {
        sc->i++;
        if (!digits(sc))
            return 0;
        real = 1;
    }
    if (sc->i < sc->n && (sc->s[sc->i] | 0x20) == 'e')
        return 0; /* an exponent may overflow a double: slow path */
    /* An integer beyond 64 bits fails a jansson reader; keep well clear. */
    return (real || d <= 18) && sc->i - from <= 300;
}

static int value(scan *sc, int depth)
{
    if (sc->i >= sc->n || depth > JSONW_MAX_DEPTH)
        return 0;
    unsigned c = sc->s[sc->i];
    if (c == '"')
        return str(sc);
    if (c == '-' || (c >= '0' && c <= '9'))
        return num(sc);
    static const char *const lits[] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(lits[k]);
        if (sc->n - sc->i >= l && !memcmp(sc->s + sc->i, lits[k], l)) {
            sc->i += l;
            return 1;
        }
    }
    if (c != '{' && c != '[')
        return 0;
    unsigned close = c == '{' ? '}' : ']';
    sc->i++;
    if (sc->i < sc->n && sc->s[sc->i] == close) {
        sc->i++;
        return 1;
    }
    for (;;) {
        if (close == '}') {
            if (sc->i >= sc->n || sc->s[sc->i] != '"' || !str(sc) ||
                sc->i >= sc->n || sc->s[sc->i] != ':')
                return 0;
            sc->i++;
        }
        if (!value(sc, depth + 1) || sc->i >= sc->n)
            return 0;
        c = sc->s[sc->i++];
        if (c == close)
            return 1;
        if (c != ',')
            return 0;
    }
}

static int ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int jsonw_copyable(const char *s, size_t n, size_t *start, size_t *len)
{
    size_t a = 0, b = n;
    while (a < b && ws((unsigned char)s[a]))
        a++;
    while (b > a && ws((unsigned char)s[b - 1]))
        b--;
    scan sc = {(const unsigned char *)s, a, b};
    if (a == b || !value(&sc, 0) || sc.i != b)
        return 0;
    *start = a;
    *len = b - a;
    return 1;
}
