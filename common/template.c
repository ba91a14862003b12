/*
 * template.c - {field} and ${ENV} templates; see template.h.
 *
 * Two rules keep an item's values from changing the request's shape. In a
 * URL, values are percent-encoded (so they never add '/', '?' or '#'), and a
 * path segment that a value turns into "." or ".." gets its dots from the
 * value encoded as %2E, because libcurl and servers collapse dot segments
 * ("/users/../delete" is "/delete"). In a JSON body, the parser notes which
 * fields sit inside a string literal of the template (the one in
 * '{{"n":"{name}"}}'), and those always render as string content, whatever
 * the value's type, so no value can close the string and add keys.
 */
#include "fmacros.h"
#include "template.h"
#include "util.h"

#include <ctype.h>

/* Where a field sits in the template read as JSON text. */
typedef enum json_slot {
    SLOT_BARE = 0,    /* outside any string: the value's JSON text */
    SLOT_QUOTED = 1,  /* inside a string: always string content */
    SLOT_ESCAPED = 2, /* inside a string, right after a backslash */
} json_slot;

typedef struct segment {
    int is_field;   /* 0: literal text; 1: a field path */
    char *text;     /* the literal, or the dotted path ("*" = whole item) */
    json_slot slot; /* fields: where the field sits if the text is JSON */
} segment;

struct template
{
    segment *segs; /* in order */
    size_t n;      /* segments */
    size_t fields; /* field segments */
};

static void push(template *t, int is_field, const char *s, size_t len)
{
    if (len == 0 && !is_field)
        return;
    t->segs = xrealloc(t->segs, (t->n + 1) * sizeof *t->segs);
    t->segs[t->n].is_field = is_field;
    t->segs[t->n].text = xstrndup(s, len);
    t->segs[t->n].slot = SLOT_BARE;
    t->n++;
    if (is_field)
        t->fields++;
}

/* Reads the literals as JSON text, assuming every field is one value (a
 * field's output never opens or closes a string: quoted fields are escaped,
 * bare ones are whole JSON values), and records where each field sits. A
 * template that is not JSON at all just gets some fields marked quoted; the
 * mark matters only in TEMPLATE_JSON. */
static void classify_slots(template *t)
{
    int in_str = 0, esc = 0;
    for (size_t i = 0; i < t->n; i++) {
        segment *s = &t->segs[i];
        if (s->is_field) {
            s->slot = !in_str ? SLOT_BARE : esc ? SLOT_ESCAPED : SLOT_QUOTED;
            esc = 0;
            continue;
        }
        for (const char *c = s->text; *c; c++) {
            if (!in_str)
                in_str = *c == '"';
            else if (esc)
                esc = 0;
            else if (*c == '\\')
                esc = 1;
            else if (*c == '"')
                in_str = 0;
        }
    }
}

fo_err template_parse(const char *src, template **out, char *err, size_t errlen)
{
    template *t = xcalloc(1, sizeof *t);
    fo_buf lit;
    buf_init(&lit, (size_t)1 << 30);
    fo_err rc = FO_OK;
    for (size_t i = 0; src[i];) {
        if (src[i] == '{' && src[i + 1] == '{') {
            rc = buf_append(&lit, "{", 1);
            i += 2;
        } else if (src[i] == '}' && src[i + 1] == '}') {
            rc = buf_append(&lit, "}", 1);
            i += 2;
        } else if (src[i] == '{') {
            const char *close = strchr(src + i + 1, '}');
            const char *open = strchr(src + i + 1, '{');
            if (!close || (open && open < close)) {
                snprintf(err, errlen,
                         "unclosed '{' at column %zu (write '{{' for a literal "
                         "brace)",
                         i + 1);
                rc = FO_EINVAL;
                goto out;
            }
            size_t flen = (size_t)(close - (src + i + 1));
            if (flen == 0) {
                snprintf(err, errlen, "empty field name '{}' at column %zu",
                         i + 1);
                rc = FO_EINVAL;
                goto out;
            }
            push(t, 0, buf_str(&lit), lit.len);
            buf_reset(&lit);
            push(t, 1, src + i + 1, flen);
            i += flen + 2;
        } else if (src[i] == '}') {
            snprintf(err, errlen,
                     "unmatched '}' at column %zu (write '}}' for a literal)",
                     i + 1);
            rc = FO_EINVAL;
            goto out;
        } else {
            rc = buf_append(&lit, &src[i], 1);
            i++;
        }
        if (rc)
            goto out;
    }
    push(t, 0, buf_str(&lit), lit.len);
    classify_slots(t);
out:
    buf_fini(&lit);
    if (rc) {
        template_destroy(&t);
        return rc;
    }
    *out = t;
    return FO_OK;
}

void template_destroy(template **tp)
{
    template *t = *tp;
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->segs[i].text);
    free(t->segs);
    FO_FREE(tp);
}

size_t template_nfields(const template *t)
{
    return t->fields;
}

/* Follows a dotted path through nested objects; NULL when absent. */
static const json_t *lookup(const json_t *item, const char *path)
{
    if (strcmp(path, "*") == 0)
        return item;
    const json_t *cur = item;
    const char *p = path;
    while (cur && *p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (!json_is_object(cur))
            return NULL;
        cur = json_object_getn(cur, p, len);
        p += len;
        if (*p == '.')
            p++;
    }
    return cur;
}

static fo_err url_encode(fo_buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        fo_err rc;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
            c == '~') {
            rc = buf_append(out, &s[i], 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = buf_append(out, e, 3);
        }
        if (rc)
            return rc;
    }
    return FO_OK;
}

static fo_err json_escape_into(fo_buf *out, const char *s, size_t len)
{
    /* Let jansson do the escaping, then drop the surrounding quotes. */
    json_t *str = json_stringn_nocheck(s, len);
    char *enc = json_dumps(str, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(str);
    if (!enc)
        return FO_EINVAL;
    size_t el = strlen(enc);
    fo_err rc = buf_append(out, enc + 1, el >= 2 ? el - 2 : 0);
    free(enc);
    return rc;
}

/* Inserts v into a JSON string: strings escaped, anything else as its JSON
 * text escaped, so {"a":1} becomes {\"a\":1}. */
static fo_err insert_quoted(fo_buf *out, const json_t *v)
{
    if (json_is_string(v))
        return json_escape_into(out, json_string_value(v),
                                json_string_length(v));
    char *enc = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!enc)
        return FO_EINVAL;
    fo_err rc = json_escape_into(out, enc, strlen(enc));
    free(enc);
    return rc;
}

/* Inserts v as mode and seg's slot ask. Returns FO_OK, FO_ETOOBIG, or
 * FO_EINVAL with the reason in err. */
static fo_err insert(fo_buf *out, const json_t *v, template_mode mode,
                     const segment *seg, char *err, size_t errlen)
{
    const char *name = seg->text;
    fo_err rc;
    if (mode == TEMPLATE_JSON && seg->slot == SLOT_ESCAPED) {
        /* The value's first character would finish the template's escape
         * and could close the string; no sane template does this. */
        snprintf(err, errlen,
                 "field '%s' follows a backslash inside a JSON string", name);
        return FO_EINVAL;
    }
    if (mode == TEMPLATE_URL && (json_is_object(v) || json_is_array(v))) {
        snprintf(err, errlen, "field '%s' is an %s and cannot go into a URL",
                 name, json_is_object(v) ? "object" : "array");
        return FO_EINVAL;
    }
    if (mode == TEMPLATE_JSON && seg->slot == SLOT_QUOTED) {
        rc = insert_quoted(out, v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (mode == TEMPLATE_URL)
            rc = url_encode(out, s, len);
        else if (mode == TEMPLATE_JSON)
            rc = json_escape_into(out, s, len);
        else
            rc = buf_append(out, s, len);
    } else {
        char *enc = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        if (!enc) {
            rc = FO_EINVAL;
        } else {
            rc = mode == TEMPLATE_URL ? url_encode(out, enc, strlen(enc))
                                      : buf_puts(out, enc);
            free(enc);
        }
    }
    if (rc == FO_EINVAL)
        snprintf(err, errlen, "field '%s' could not be encoded", name);
    return rc;
}

/* Bytes [from, to) of the output came from a field's value. */
typedef struct span {
    size_t from; /* first byte */
    size_t to;   /* one past the last */
} span;

static int in_spans(const span *sp, size_t n, size_t at)
{
    for (size_t i = 0; i < n; i++)
        if (at >= sp[i].from && at < sp[i].to)
            return 1;
    return 0;
}

/* Finds the path of the URL in s[0, n): after "scheme://authority" when
 * there is one, else from the start, up to '?' or '#'. Values cannot add
 * any of these characters (they are percent-encoded), so the template's
 * literals alone decide where the path is. */
static void path_bounds(const char *s, size_t n, size_t *from, size_t *to)
{
    size_t i = 0, j = 0;
    while (j < n && (isalnum((unsigned char)s[j]) || s[j] == '+' ||
                     s[j] == '-' || s[j] == '.'))
        j++;
    if (j > 0 && n - j >= 3 && memcmp(s + j, "://", 3) == 0) {
        i = j + 3;
        while (i < n && s[i] != '/' && s[i] != '?' && s[i] != '#')
            i++;
    }
    size_t e = i;
    while (e < n && s[e] != '?' && s[e] != '#')
        e++;
    *from = i;
    *to = e;
}

/* Returns 1 when s[0, n) is a dot segment: "." or "..", counting "%2E" as a
 * dot as URL parsers (WHATWG) do. */
static int is_dot_segment(const char *s, size_t n)
{
    size_t dots = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == '.') {
            i++;
        } else if (n - i >= 3 && s[i] == '%' && s[i + 1] == '2' &&
                   (s[i + 2] == 'E' || s[i + 2] == 'e')) {
            i += 3;
        } else {
            return 0;
        }
        dots++;
    }
    return dots == 1 || dots == 2;
}

/* Rewrites out[base, len) so that no path segment that a value touched is a
 * dot segment: the value's dots in such a segment become "%2E". A dot
 * segment written in the template itself is the operator's and stays. */
static fo_err encode_dot_segments(fo_buf *out, size_t base, const span *sp,
                                  size_t nsp)
{
    const char *s = out->data ? out->data + base : "";
    size_t n = out->len - base, from, to;
    path_bounds(s, n, &from, &to);
    int found = 0;
    for (size_t a = from; a < to && !found;) {
        size_t b = a;
        while (b < to && s[b] != '/')
            b++;
        if (is_dot_segment(s + a, b - a))
            for (size_t k = a; k < b && !found; k++)
                found = in_spans(sp, nsp, base + k);
        a = b + 1;
    }
    if (!found)
        return FO_OK; /* the usual case: nothing to copy */
    char *copy = xstrndup(s, n);
    out->len = base;
    out->data[base] = '\0';
    fo_err rc = FO_OK;
    for (size_t a = 0; a < n && rc == FO_OK;) {
        /* A path segment in one piece; anything else a byte at a time. */
        size_t b = a;
        int dot = 0;
        if (a >= from && a < to) {
            while (b < to && copy[b] != '/')
                b++;
            dot = is_dot_segment(copy + a, b - a);
        }
        if (b == a)
            b = a + 1;
        for (size_t k = a; k < b && rc == FO_OK; k++) {
            if (dot && copy[k] == '.' && in_spans(sp, nsp, base + k))
                rc = buf_append(out, "%2E", 3);
            else
                rc = buf_append(out, &copy[k], 1);
        }
        a = b;
    }
    free(copy);
    return rc;
}

fo_err template_render(const template *t, const json_t *item,
                       template_mode mode, fo_buf *out, char *err,
                       size_t errlen)
{
    size_t base = out->len, nsp = 0;
    span *sp = mode == TEMPLATE_URL && t->fields
                   ? xmalloc(t->fields * sizeof *sp)
                   : NULL;
    fo_err rc = FO_OK;
    for (size_t i = 0; i < t->n && rc == FO_OK; i++) {
        const segment *s = &t->segs[i];
        if (!s->is_field) {
            rc = buf_puts(out, s->text);
            continue;
        }
        const json_t *v = lookup(item, s->text);
        if (!v) {
            snprintf(err, errlen, "missing field '%s'", s->text);
            rc = FO_EMISSING;
            break;
        }
        size_t from = out->len;
        rc = insert(out, v, mode, s, err, errlen);
        if (sp)
            sp[nsp++] = (span){from, out->len};
    }
    if (rc == FO_OK && sp)
        rc = encode_dot_segments(out, base, sp, nsp);
    if (rc == FO_ETOOBIG)
        snprintf(err, errlen, "rendered request is larger than %zu bytes",
                 out->max);
    free(sp);
    return rc;
}

int template_env_next(const char *src, size_t *pos, const char **name,
                      size_t *len)
{
    for (size_t i = *pos; src[i];) {
        if (src[i] == '$' && src[i + 1] == '$') {
            i += 2;
        } else if (src[i] == '$' && src[i + 1] == '{') {
            const char *close = strchr(src + i + 2, '}');
            if (!close)
                return 0;
            *name = src + i + 2;
            *len = (size_t)(close - *name);
            *pos = (size_t)(close + 1 - src);
            return 1;
        } else {
            i++;
        }
    }
    return 0;
}

int template_has_env(const char *src)
{
    return strstr(src, "${") != NULL;
}

fo_err template_expand_env(const char *src, fo_buf *out, char *err,
                           size_t errlen)
{
    for (size_t i = 0; src[i];) {
        fo_err rc;
        if (src[i] == '$' && src[i + 1] == '$') {
            rc = buf_append(out, "$", 1);
            i += 2;
        } else if (src[i] == '$' && src[i + 1] == '{') {
            const char *close = strchr(src + i + 2, '}');
            if (!close) {
                snprintf(err, errlen, "unclosed '${' at column %zu", i + 1);
                return FO_EINVAL;
            }
            size_t nl = (size_t)(close - (src + i + 2));
            char name[256];
            if (nl == 0 || nl >= sizeof name) {
                snprintf(err, errlen, "bad variable name at column %zu", i + 1);
                return FO_EINVAL;
            }
            memcpy(name, src + i + 2, nl);
            name[nl] = '\0';
            const char *val = getenv(name);
            if (!val) {
                snprintf(err, errlen, "environment variable %s is not set",
                         name);
                return FO_EMISSING;
            }
            rc = buf_puts(out, val);
            i += nl + 3;
        } else {
            rc = buf_append(out, &src[i], 1);
            i++;
        }
        if (rc)
            return rc;
    }
    return FO_OK;
}
