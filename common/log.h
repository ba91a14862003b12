/*
 * log.h - one logger for both programs.
 *
 * Each line carries time, level, role, pid and a stable event name such as
 * "worker.joined" or "proto.bad_version" that operators can alert on. The
 * level is checked before the arguments are evaluated (the Redis serverLog
 * habit), so debug logging in hot paths costs a compare. Lines go to stderr
 * in text or JSON form. Never log from a signal handler.
 */
#ifndef FANOUT_LOG_H
#define FANOUT_LOG_H

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

/* Writes one line; use the LOG_* macros instead. */
void log_write(log_level level, const char *event, const char *fmt, ...)
    FO_PRINTF(3, 4);

#define LOG_AT(lvl, event, ...)                                                \
    do {                                                                       \
        if ((lvl) >= log_min_level)                                            \
            log_write((lvl), (event), __VA_ARGS__);                            \
    } while (0)
#define LOG_DEBUG(event, ...) LOG_AT(LOG_LVL_DEBUG, event, __VA_ARGS__)
#define LOG_INFO(event, ...) LOG_AT(LOG_LVL_INFO, event, __VA_ARGS__)
#define LOG_WARN(event, ...) LOG_AT(LOG_LVL_WARN, event, __VA_ARGS__)
#define LOG_ERROR(event, ...) LOG_AT(LOG_LVL_ERROR, event, __VA_ARGS__)

#endif
