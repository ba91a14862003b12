/*
 * jsonl.h - a streaming line reader for JSONL input.
 *
 * Reads a file or pipe in chunks and hands out one line at a time, never
 * the whole input. Each line comes with its number and the byte offsets
 * where it starts and where the next line starts, which is what the master
 * records as its resume point. A line longer than the cap is not stored: it
 * is skipped up to its newline and reported as FO_ETOOBIG with its number,
 * so one broken line costs one record, not the job.
 */
#ifndef FANOUT_JSONL_H
#define FANOUT_JSONL_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct jsonl jsonl;

typedef struct jsonl_line {
    const char *data;   /* the line without its newline; borrowed until the
                           next call; not NUL-terminated reliably: use len */
    size_t len;         /* bytes in data (for FO_ETOOBIG: bytes seen) */
    int64_t line_no;    /* 1-based physical line number */
    int64_t offset;     /* byte offset of the line's first byte */
    int64_t end_offset; /* byte offset just past its newline */
} jsonl_line;

/* Returns a reader over fd (not owned: the caller closes it) whose first
 * line is number first_line_no at byte offset start_offset. */
jsonl *jsonl_new(int fd, size_t max_line, int64_t start_offset,
                 int64_t first_line_no);
/* Frees *r and NULLs it; safe on NULL. Does not close the fd. */
void jsonl_destroy(jsonl **r);
/* Reads the next line into *out. Returns FO_OK, FO_ETOOBIG (the line was
 * skipped; out has its number and offsets), FO_EAGAIN (the fd would block:
 * poll it and call again), FO_EEOF at the end, or FO_EIO (errno is set). */
FO_WUR fo_err jsonl_next(jsonl *r, jsonl_line *out);

#endif
