/*
 * jsonw.h - writing JSON text without building a tree, and recognising a
 * JSON text that can be copied as it is.
 *
 * The master writes one results.jsonl line per item. Parsing each response
 * into a jansson tree and serialising it again cost more than the rest of
 * the record; most APIs answer compact JSON, which can be copied verbatim.
 * jsonw_copyable() says when that is safe: exactly one JSON value, no
 * whitespace outside strings (leading and trailing whitespace is trimmed
 * first), valid UTF-8, and nothing a jansson reader would refuse or change
 * in meaning (no \u0000, no lone surrogates, no exponents or integers of
 * more than 18 digits, nesting at most JSONW_MAX_DEPTH). Anything else takes
 * the slow path (parse and re-serialise), as before.
 */
#ifndef FANOUT_JSONW_H
#define FANOUT_JSONW_H

#include <stddef.h>

#define JSONW_MAX_DEPTH 256

/* A growable string for one JSON text; never fails (aborts on OOM like
 * xmalloc). */
typedef struct jsonw {
    char *p;
    size_t len, cap;
} jsonw;

void jsonw_raw(jsonw *w, const char *s, size_t n);
void jsonw_lit(jsonw *w, const char *s); /* NUL-terminated, raw */
/* A JSON string: quoted and escaped as jansson does (", \, control
 * characters); bytes that are not UTF-8 become U+FFFD. */
void jsonw_str(jsonw *w, const char *s, size_t n);
void jsonw_int(jsonw *w, long long v);
/* ,"key": (or {"key": when first is set). key must need no escaping. */
void jsonw_key(jsonw *w, const char *key, int first);

/* 1 when s[0..n) is valid UTF-8. */
int jsonw_utf8_valid(const char *s, size_t n);

/* 1 when s[0..n) may be copied as it is (see above); *start and *len then
 * give the value without its surrounding whitespace. */
int jsonw_copyable(const char *s, size_t n, size_t *start, size_t *len);

#endif
