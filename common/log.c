/* log.c - leveled, structured logging to stderr; see log.h. */
#include "fmacros.h"
#include "log.h"

#include <stdarg.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

log_level log_min_level = LOG_LVL_INFO;
void (*log_before_write)(void) = NULL;
static const char *log_role = "fanout";
static log_format log_fmt = LOG_FMT_TEXT;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_init(const char *role, log_level level, log_format format)
{
    log_role = role;
    log_min_level = level;
    log_fmt = format;
}

int log_parse_level(const char *s, log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (log_level)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = LOG_LVL_WARN;
        return 0;
    }
    return -1;
}

int log_parse_format(const char *s, log_format *out)
{
    if (strcmp(s, "text") == 0)
        *out = LOG_FMT_TEXT;
    else if (strcmp(s, "json") == 0)
        *out = LOG_FMT_JSON;
    else
        return -1;
    return 0;
}

/* Appends s to out as the inside of a JSON string. */
static size_t json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return n;
}

void log_write(log_level level, const char *event, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[40];
    size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof ts - tl, ".%03dZ", (int)(tv.tv_usec / 1000));

    char line[4608];
    if (log_fmt == LOG_FMT_JSON) {
        char emsg[4096];
        json_escape(emsg, sizeof emsg, msg);
        snprintf(line, sizeof line,
                 "{\"time\":\"%s\",\"level\":\"%s\",\"role\":\"%s\","
                 "\"pid\":%d,\"event\":\"%s\",\"msg\":\"%s\"}\n",
                 ts, level_names[level], log_role, (int)getpid(), event, emsg);
    } else {
        snprintf(line, sizeof line, "%s %s[%d] %s %s: %s\n", ts, log_role,
                 (int)getpid(), level_names[level], event, msg);
    }
    if (log_before_write)
        log_before_write();
    /* One write per line keeps lines whole when several processes share
     * a terminal or a log file. */
    ssize_t ignored = write(STDERR_FILENO, line, strlen(line));
    (void)ignored;
}
