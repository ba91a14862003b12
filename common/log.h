/*
 * log.h - one logger for both programs.
 *
 * Each line carries time, level, role, pid and a stable event name such as
 * "worker.joined" or "proto.bad_version" that operators can alert on. The
 * level is checked before the arguments are evaluated (the Redis serverLog
 * habit), so debug logging in hot paths costs a compare. Lines go to stderr
 * in text or JSON form. Never log from a signal handler.
 *
 * Messages carry strings from peers and input (item ids, worker ids, error
 * text from an API), so every byte below 0x20, 0x7f and every byte that is
 * not part of valid UTF-8 is written as \xNN: a line is always one line,
 * and no item id can forge a log line or drive the terminal. Events about
 * one item may also carry fields (LOG_KV): JSON lines get them as keys, so
 * a log pipeline can filter on "item" or "http_status" without parsing the
 * message; text lines show only the message, which already says it all.
 */
#ifndef FANOUT_LOG_H
#define FANOUT_LOG_H

#include <stddef.h>

#include "error.h"

typedef enum {
    LOG_LVL_DEBUG = 0,
    LOG_LVL_INFO = 1,
    LOG_LVL_WARN = 2,
    LOG_LVL_ERROR = 3,
} log_level;

typedef enum { LOG_FMT_TEXT = 0, LOG_FMT_JSON = 1 } log_format;

/* Sets the role ("master", "worker"), minimum level and format. */
void log_init(const char *role, log_level level, log_format format);
/* Parses "debug|info|warn|error"; returns 0 or -1. */
int log_parse_level(const char *s, log_level *out);
/* Parses "text|json"; returns 0 or -1. */
int log_parse_format(const char *s, log_format *out);
/* The current minimum level. */
extern log_level log_min_level;
/* Called before a progress line is overwritten: clears a live terminal line
 * so log lines and the progress line do not mix. Set by the progress code. */
extern void (*log_before_write)(void);

/* One structured field of an event: a key and a string or an integer.
 * Keys are ours (never from input) and never one of the line's own keys
 * (time, level, role, pid, event, msg). */
typedef struct log_field {
    const char *key; /* JSON key, e.g. "item" */
    const char *str; /* string value, or NULL for the integer */
    long long num;   /* integer value when str is NULL */
} log_field;

/* A string field (NULL is written as ""), and an integer field. */
#define LOG_S(k, v) ((log_field){(k), (v) ? (v) : "", 0})
#define LOG_I(k, v) ((log_field){(k), NULL, (long long)(v)})
/* The fields argument of LOG_KV: a compound-literal array and its count. */
#define LOG_FIELDS(...)                                                        \
    (const log_field[]){__VA_ARGS__},                                          \
        sizeof((const log_field[]){__VA_ARGS__}) / sizeof(log_field)

/* Writes one line; use the LOG_* macros instead. */
void log_write(log_level level, const char *event, const char *fmt, ...)
    FO_PRINTF(3, 4);
/* Writes one line with fields; use LOG_KV instead. */
void log_write_kv(log_level level, const char *event, const log_field *fields,
                  size_t nfields, const char *fmt, ...) FO_PRINTF(5, 6);
/* Formats one line as log_write would (text or JSON, with its newline) into
 * out, for tests; returns its length. */
size_t log_format_line(char *out, size_t cap, log_level level,
                       const char *event, const log_field *fields,
                       size_t nfields, const char *msg);
/* Copies s into out with every byte below 0x20, 0x7f and every byte of
 * invalid UTF-8 written as \xNN; never cuts an escape or a character in
 * two. Returns the length written (out is NUL-terminated when cap > 0). */
size_t log_escape(char *out, size_t cap, const char *s);

#define LOG_AT(lvl, event, ...)                                                \
    do {                                                                       \
        if ((lvl) >= log_min_level)                                            \
            log_write((lvl), (event), __VA_ARGS__);                            \
    } while (0)
#define LOG_DEBUG(event, ...) LOG_AT(LOG_LVL_DEBUG, event, __VA_ARGS__)
#define LOG_INFO(event, ...) LOG_AT(LOG_LVL_INFO, event, __VA_ARGS__)
#define LOG_WARN(event, ...) LOG_AT(LOG_LVL_WARN, event, __VA_ARGS__)
#define LOG_ERROR(event, ...) LOG_AT(LOG_LVL_ERROR, event, __VA_ARGS__)

/* LOG_KV(LOG_LVL_INFO, "item.retry",
 *        LOG_FIELDS(LOG_S("item", id), LOG_I("attempt", n)),
 *        "id=%s attempt=%u", id, n);
 * Like LOG_AT: nothing, fields included, is evaluated below the level. */
#define LOG_KV(lvl, event, fields, ...)                                        \
    do {                                                                       \
        if ((lvl) >= log_min_level)                                            \
            log_write_kv((lvl), (event), fields, __VA_ARGS__);                 \
    } while (0)

#endif
