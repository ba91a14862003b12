/*
 * xmlmini.c - just enough XML for Azure Queue Storage's Get Messages and
 * error bodies; see xmlmini.h.
 */
#include "fmacros.h"
#include "xmlmini.h"

#include <stdint.h>
#include <string.h>

/* Finds the next element <name>...</name> in [s, end). Sets *v and *vl to
 * its raw content ("" for <name/>) and returns the position after it, or
 * NULL when there is none. Elements are never nested in themselves here. */
const char *xmlmini_elem(const char *s, const char *end, const char *name,
                         const char **v, size_t *vl)
{
    size_t nl = strlen(name);
    for (const char *p = s; p < end; p++) {
        p = memchr(p, '<', (size_t)(end - p));
        if (!p)
            return NULL;
        if ((size_t)(end - p) < nl + 2 || memcmp(p + 1, name, nl) != 0)
            continue;
        const char *q = p + 1 + nl;
        if (*q != '>' && *q != '/' && *q != ' ' && *q != '\t' && *q != '\r' &&
            *q != '\n')
            continue; /* a longer name with this prefix */
        const char *gt = memchr(q, '>', (size_t)(end - q));
        if (!gt)
            return NULL;
        if (gt[-1] == '/') {
            *v = gt;
            *vl = 0;
            return gt + 1;
        }
        for (const char *c = gt + 1; c < end; c++) {
            c = memchr(c, '<', (size_t)(end - c));
            if (!c)
                return NULL;
            if ((size_t)(end - c) >= nl + 3 && c[1] == '/' &&
                memcmp(c + 2, name, nl) == 0 && c[2 + nl] == '>') {
                *v = gt + 1;
                *vl = (size_t)(c - gt - 1);
                return c + 3 + nl;
            }
        }
        return NULL;
    }
    return NULL;
}

/* Writes the UTF-8 for entity body e (between '&' and ';') into u and
 * returns its length, or 0 when it is not an entity we know. */
static size_t xml_entity(const char *e, size_t n, char u[4])
{
    static const struct {
        const char *name;
        char c;
    } named[] = {
        {"lt", '<'}, {"gt", '>'}, {"amp", '&'}, {"quot", '"'}, {"apos", '\''}};
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (strlen(named[i].name) == n && memcmp(e, named[i].name, n) == 0) {
            u[0] = named[i].c;
            return 1;
        }
    if (n < 2 || e[0] != '#')
        return 0;
    int hex = e[1] == 'x' || e[1] == 'X';
    uint32_t cp = 0;
    size_t i = hex ? 2 : 1;
    if (i == n)
        return 0;
    for (; i < n; i++) {
        int c = (unsigned char)e[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (hex && c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (hex && c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return 0;
        cp = cp * (hex ? 16u : 10u) + (uint32_t)d;
        if (cp > 0x10FFFF)
            return 0;
    }
    /* NUL and surrogates are not characters a message can hold. */
    if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    if (cp < 0x80) {
        u[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    u[0] = (char)(0xF0 | (cp >> 18));
    u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Appends the text [s, s + n) to out with XML entities decoded; an unknown
 * entity stays as written. FO_ETOOBIG when out's cap is hit. */
fo_err xmlmini_text(fo_buf *out, const char *s, size_t n)
{
    const char *end = s + n;
    while (s < end) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        size_t lit = amp ? (size_t)(amp - s) : (size_t)(end - s);
        if (buf_append(out, s, lit) != FO_OK)
            return FO_ETOOBIG;
        if (!amp)
            break;
        /* The longest entity we know is "&#x10FFFF;". */
        size_t look = (size_t)(end - amp) < 12 ? (size_t)(end - amp) : 12;
        const char *semi = memchr(amp, ';', look);
        char u[4];
        size_t ul = semi ? xml_entity(amp + 1, (size_t)(semi - amp - 1), u) : 0;
        if (buf_append(out, ul ? u : "&", ul ? ul : 1) != FO_OK)
            return FO_ETOOBIG;
        s = ul ? semi + 1 : amp + 1;
    }
    return FO_OK;
}

/* Copies element name's decoded text into a string of at most cap bytes:
 * returns it (caller frees), or NULL when absent or longer. */
char *xmlmini_string(const char *s, const char *end, const char *name,
                     size_t cap)
{
    const char *v;
    size_t vl;
    if (!xmlmini_elem(s, end, name, &v, &vl))
        return NULL;
    fo_buf b;
    buf_init(&b, cap);
    if (xmlmini_text(&b, v, vl) != FO_OK) {
        buf_fini(&b);
        return NULL;
    }
    return buf_take(&b);
}
