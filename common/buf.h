/*
 * buf.h - a growable byte buffer with a hard cap.
 *
 * Every buffer that grows from network or input data has a maximum set at
 * init; an append past it fails with FO_ETOOBIG instead of allocating (the
 * curl dynbuf rule). The data is always NUL-terminated for convenience, and
 * the terminator does not count towards len.
 */
#ifndef FANOUT_BUF_H
#define FANOUT_BUF_H

#include <stddef.h>

#include "error.h"

/* Embedded in the caller's struct; visible only for that reason. */
typedef struct fo_buf {
    char *data;   /* bytes, NUL-terminated; NULL until the first append */
    size_t len;   /* bytes used, excluding the terminator */
    size_t alloc; /* bytes allocated */
    size_t max;   /* hard cap on len */
} fo_buf;

/* Initialises an empty buffer that may hold at most max bytes. */
void buf_init(fo_buf *b, size_t max);
/* Frees the storage; the buffer is empty and reusable afterwards. */
void buf_fini(fo_buf *b);
/* Empties the buffer but keeps its storage. */
void buf_reset(fo_buf *b);
/* Appends n bytes. Returns FO_OK or FO_ETOOBIG (buffer unchanged). */
FO_WUR fo_err buf_append(fo_buf *b, const void *p, size_t n);
/* Appends a NUL-terminated string. */
FO_WUR fo_err buf_puts(fo_buf *b, const char *s);
/* Appends formatted text. Returns FO_OK or FO_ETOOBIG. */
FO_WUR fo_err buf_printf(fo_buf *b, const char *fmt, ...) FO_PRINTF(2, 3);
/* Returns the data as a heap string the caller frees, and empties b. */
char *buf_take(fo_buf *b);
/* Returns the data, or "" when empty; borrowed from b. */
const char *buf_str(const fo_buf *b);

#endif
