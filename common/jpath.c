/* jpath.c - JSON paths and the --ok-when condition; see jpath.h. */
#include "fmacros.h"
#include "jpath.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jpath_fini(jpath *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->seg[i]);
    free(p->seg);
    free(p->text);
    memset(p, 0, sizeof *p);
}

static void add_seg(jpath *p, const char *s, size_t len)
{
    p->seg = xrealloc(p->seg, (p->n + 1) * sizeof *p->seg);
    char *c = xmalloc(len + 1);
    memcpy(c, s, len);
    c[len] = '\0';
    p->seg[p->n++] = c;
}

/* One JSON Pointer segment of len bytes at s, unescaped ("~1" is '/',
 * "~0" is '~'). Returns 0, or -1 for a '~' not followed by 0 or 1. */
static int add_pointer_seg(jpath *p, const char *s, size_t len)
{
    char *u = xmalloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '~') {
            u[n++] = s[i];
            continue;
        }
        if (i + 1 >= len || (s[i + 1] != '0' && s[i + 1] != '1')) {
            free(u);
            return -1;
        }
        u[n++] = s[i + 1] == '0' ? '~' : '/';
        i++;
    }
    add_seg(p, u, n);
    free(u);
    return 0;
}

fo_err jpath_parse(const char *text, jpath *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    size_t len = strlen(text);
    if (len > JPATH_MAX_BYTES) {
        snprintf(err, errlen, "path is longer than %d bytes", JPATH_MAX_BYTES);
        return FO_EINVAL;
    }
    const char *s = text, *end = text + len;
    if (len == 0 || text[0] == '/') {
        /* JSON Pointer: every '/' starts a segment. */
        while (s < end) {
            const char *seg = s + 1;
            const char *next = memchr(seg, '/', (size_t)(end - seg));
            if (!next)
                next = end;
            if (add_pointer_seg(p, seg, (size_t)(next - seg)) < 0) {
                snprintf(err, errlen,
                         "'%.100s': '~' must be followed by 0 or 1 in a "
                         "JSON Pointer",
                         text);
                goto bad;
            }
            s = next;
            if (p->n > JPATH_MAX_SEGMENTS)
                break;
        }
    } else {
        for (;;) {
            const char *dot = memchr(s, '.', (size_t)(end - s));
            const char *segend = dot ? dot : end;
            if (segend == s) {
                snprintf(err, errlen,
                         "'%.100s' has an empty segment (a dotted path is "
                         "a.b.0; a key with '.' needs a JSON Pointer, "
                         "/a.b)",
                         text);
                goto bad;
            }
            add_seg(p, s, (size_t)(segend - s));
            if (!dot || p->n > JPATH_MAX_SEGMENTS)
                break;
            s = dot + 1;
        }
    }
    if (p->n > JPATH_MAX_SEGMENTS) {
        snprintf(err, errlen, "'%.100s' has more than %d segments", text,
                 JPATH_MAX_SEGMENTS);
        goto bad;
    }
    p->text = xstrdup(text);
    return FO_OK;
bad:
    jpath_fini(p);
    return FO_EINVAL;
}

/* The array index a segment names: decimal, no sign, no leading zero.
 * Returns -1 when it names none. */
static long long seg_index(const char *s)
{
    if (!*s || (s[0] == '0' && s[1]) || strlen(s) > 18)
        return -1;
    long long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

json_t *jpath_get(const jpath *p, json_t *doc)
{
    json_t *v = doc;
    for (size_t i = 0; v && i < p->n; i++) {
        if (json_is_object(v)) {
            v = json_object_get(v, p->seg[i]);
        } else if (json_is_array(v)) {
            long long k = seg_index(p->seg[i]);
            v = k >= 0 && (size_t)k < json_array_size(v)
                    ? json_array_get(v, (size_t)k)
                    : NULL;
        } else {
            v = NULL;
        }
    }
    return v;
}

/* ---- conditions ------------------------------------------------------ */

void jpath_cond_fini(jpath_cond *c)
{
    jpath_fini(&c->path);
    for (size_t i = 0; i < c->nvals; i++)
        free(c->vals[i].text);
    free(c->vals);
    free(c->text);
    memset(c, 0, sizeof *c);
}

static const char *skip_ws(const char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    return s;
}

/* Reads one literal at *ps into c. In a list a bare word also ends at ','
 * or ']'. Returns 0 and moves *ps past it, or -1 with err. */
static int parse_lit(jpath_cond *c, const char **ps, int in_list, char *err,
                     size_t errlen)
{
    const char *s = skip_ws(*ps);
    jpath_lit lit = {0};
    if (*s == '"') {
        /* A JSON string: find its end, then let jansson unescape it. */
        const char *e = s + 1;
        while (*e && *e != '"')
            e += (*e == '\\' && e[1]) ? 2 : 1;
        if (*e != '"') {
            snprintf(err, errlen, "unterminated string in '%.100s'", c->text);
            return -1;
        }
        json_error_t je;
        json_t *str = json_loadb(s, (size_t)(e + 1 - s), JSON_DECODE_ANY, &je);
        if (!json_is_string(str)) {
            json_decref(str);
            snprintf(err, errlen, "bad string %.*s in '%.100s'",
                     (int)(e + 1 - s > 60 ? 60 : e + 1 - s), s, c->text);
            return -1;
        }
        lit.text = xstrdup(json_string_value(str));
        lit.quoted = 1;
        json_decref(str);
        s = e + 1;
    } else {
        const char *e = s;
        while (*e && !(in_list && (*e == ',' || *e == ']')))
            e++;
        const char *t = e;
        while (t > s && isspace((unsigned char)t[-1]))
            t--;
        if (t == s) {
            snprintf(err, errlen, "missing value in '%.100s'", c->text);
            return -1;
        }
        if (*s == '[' || *s == ']' || *s == ',') {
            snprintf(err, errlen,
                     "'%.100s': a list of values needs 'in' (PATH in "
                     "[a,b])",
                     c->text);
            return -1;
        }
        lit.text = xmalloc((size_t)(t - s) + 1);
        memcpy(lit.text, s, (size_t)(t - s));
        lit.text[t - s] = '\0';
        s = e;
    }
    if (c->nvals == JPATH_MAX_VALUES) {
        free(lit.text);
        snprintf(err, errlen, "more than %d values in '%.100s'",
                 JPATH_MAX_VALUES, c->text);
        return -1;
    }
    c->vals = xrealloc(c->vals, (c->nvals + 1) * sizeof *c->vals);
    c->vals[c->nvals++] = lit;
    *ps = s;
    return 0;
}

fo_err jpath_cond_parse(const char *text, jpath_cond *c, char *err,
                        size_t errlen)
{
    memset(c, 0, sizeof *c);
    if (strlen(text) > JPATH_MAX_COND_BYTES) {
        snprintf(err, errlen, "condition is longer than %d bytes",
                 JPATH_MAX_COND_BYTES);
        return FO_EINVAL;
    }
    c->text = xstrdup(text);
    const char *s = skip_ws(text);
    /* The path ends at a space, "==" or "!=". */
    const char *e = s;
    while (*e && !isspace((unsigned char)*e) &&
           !((e[0] == '=' || e[0] == '!') && e[1] == '='))
        e++;
    if (e == s) {
        snprintf(err, errlen,
                 "'%.100s' has no path (the form is PATH == VALUE, "
                 "PATH != VALUE or PATH in [V1,V2])",
                 text);
        goto bad;
    }
    char *ptext = xmalloc((size_t)(e - s) + 1);
    memcpy(ptext, s, (size_t)(e - s));
    ptext[e - s] = '\0';
    char perr[300];
    fo_err rc = jpath_parse(ptext, &c->path, perr, sizeof perr);
    free(ptext);
    if (rc) {
        snprintf(err, errlen, "%s", perr);
        goto bad;
    }
    s = skip_ws(e);
    if (s[0] == '=' && s[1] == '=') {
        c->op = JPATH_EQ;
        s += 2;
    } else if (s[0] == '!' && s[1] == '=') {
        c->op = JPATH_NE;
        s += 2;
    } else if (s > e && s[0] == 'i' && s[1] == 'n' &&
               (isspace((unsigned char)s[2]) || s[2] == '[')) {
        c->op = JPATH_IN;
        s += 2;
    } else {
        snprintf(err, errlen,
                 "'%.100s': expected ==, != or in after the path '%.100s'",
                 text, c->path.text);
        goto bad;
    }
    if (c->op == JPATH_IN) {
        s = skip_ws(s);
        if (*s != '[') {
            snprintf(err, errlen, "'%.100s': 'in' takes a list, [a,b]", text);
            goto bad;
        }
        s++;
        for (;;) {
            if (parse_lit(c, &s, 1, err, errlen) < 0)
                goto bad;
            s = skip_ws(s);
            if (*s == ',') {
                s++;
                continue;
            }
            if (*s == ']') {
                s++;
                break;
            }
            snprintf(err, errlen, "'%.100s': expected ',' or ']'", text);
            goto bad;
        }
    } else if (parse_lit(c, &s, 0, err, errlen) < 0) {
        goto bad;
    }
    s = skip_ws(s);
    if (*s) {
        snprintf(err, errlen, "'%.100s': unexpected text '%.40s' at the end",
                 text, s);
        goto bad;
    }
    return FO_OK;
bad:
    jpath_cond_fini(c);
    return FO_EINVAL;
}

/* 1 when text reads wholly as a finite number, *out set. */
static int as_number(const char *text, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(text, &end);
    if (end == text || *end || errno == ERANGE || !isfinite(d))
        return 0;
    /* strtod also reads "inf", "nan" and hex; JSON numbers start so. */
    if (!(isdigit((unsigned char)text[0]) ||
          (text[0] == '-' && isdigit((unsigned char)text[1]))))
        return 0;
    *out = d;
    return 1;
}

static int lit_matches(const jpath_lit *l, const json_t *v)
{
    if (!v)
        return 0;
    if (json_is_string(v))
        return strlen(l->text) == json_string_length(v) &&
               memcmp(l->text, json_string_value(v), json_string_length(v)) ==
                   0;
    if (l->quoted)
        return 0;
    if (json_is_true(v))
        return !strcmp(l->text, "true");
    if (json_is_false(v))
        return !strcmp(l->text, "false");
    if (json_is_null(v))
        return !strcmp(l->text, "null");
    double d;
    if (json_is_number(v) && as_number(l->text, &d))
        return json_number_value(v) == d;
    return 0;
}

int jpath_cond_eval(const jpath_cond *c, json_t *doc)
{
    json_t *v = doc ? jpath_get(&c->path, doc) : NULL;
    int any = 0;
    for (size_t i = 0; i < c->nvals && !any; i++)
        any = lit_matches(&c->vals[i], v);
    return c->op == JPATH_NE ? !any : any;
}
