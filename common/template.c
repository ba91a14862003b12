/* template.c - {field} and ${ENV} templates; see template.h. */
#include "fmacros.h"
#include "template.h"
#include "util.h"

typedef struct segment {
    int is_field; /* 0: literal text; 1: a field path */
    char *text;   /* the literal, or the dotted path ("*" = whole item) */
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
    t->n++;
    if (is_field)
        t->fields++;
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

static fo_err insert(fo_buf *out, const json_t *v, template_mode mode,
                     const char *name, char *err, size_t errlen)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (mode == TEMPLATE_URL)
            return url_encode(out, s, len);
        if (mode == TEMPLATE_JSON)
            return json_escape_into(out, s, len);
        return buf_append(out, s, len);
    }
    if (mode == TEMPLATE_URL && (json_is_object(v) || json_is_array(v))) {
        snprintf(err, errlen, "field '%s' is an %s and cannot go into a URL",
                 name, json_is_object(v) ? "object" : "array");
        return FO_EINVAL;
    }
    char *enc = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!enc)
        return FO_EINVAL;
    fo_err rc = mode == TEMPLATE_URL ? url_encode(out, enc, strlen(enc))
                                     : buf_puts(out, enc);
    free(enc);
    return rc;
}

fo_err template_render(const template *t, const json_t *item,
                       template_mode mode, fo_buf *out, char *err,
                       size_t errlen)
{
    for (size_t i = 0; i < t->n; i++) {
        const segment *s = &t->segs[i];
        fo_err rc;
        if (!s->is_field) {
            rc = buf_puts(out, s->text);
        } else {
            const json_t *v = lookup(item, s->text);
            if (!v) {
                snprintf(err, errlen, "missing field '%s'", s->text);
                return FO_EMISSING;
            }
            rc = insert(out, v, mode, s->text, err, errlen);
        }
        if (rc == FO_ETOOBIG)
            snprintf(err, errlen, "rendered request is larger than %zu bytes",
                     out->max);
        if (rc)
            return rc;
    }
    return FO_OK;
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
