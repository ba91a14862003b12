/* buf.c - capped growable buffer; see buf.h. */
#include "fmacros.h"
#include "buf.h"
#include "util.h"

#include <stdarg.h>

void buf_init(fo_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    b->max = max;
}

void buf_fini(fo_buf *b)
{
    FO_FREE(&b->data);
    b->len = 0;
    b->alloc = 0;
}

void buf_reset(fo_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static fo_err reserve(fo_buf *b, size_t n)
{
    if (n > b->max - b->len)
        return FO_ETOOBIG;
    size_t need = b->len + n + 1;
    if (need <= b->alloc)
        return FO_OK;
    size_t a = b->alloc ? b->alloc : 64;
    while (a < need)
        a *= 2;
    if (a > b->max + 1)
        a = b->max + 1;
    b->data = xrealloc(b->data, a);
    b->alloc = a;
    return FO_OK;
}

fo_err buf_append(fo_buf *b, const void *p, size_t n)
{
    fo_err err = reserve(b, n);
    if (err)
        return err;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return FO_OK;
}

fo_err buf_puts(fo_buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

fo_err buf_printf(fo_buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return FO_EINVAL;
    if ((size_t)n < sizeof small)
        return buf_append(b, small, (size_t)n);
    fo_err err = reserve(b, (size_t)n);
    if (err)
        return err;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return FO_OK;
}

char *buf_take(fo_buf *b)
{
    char *p = b->data ? b->data : xstrdup("");
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    return p;
}

const char *buf_str(const fo_buf *b)
{
    return b->data ? b->data : "";
}
