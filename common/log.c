/* log.c - leveled, structured logging to stderr; see log.h. */
#include "fmacros.h"
#include "log.h"
#include "util.h"

#include <stdarg.h>
#include <stdint.h>
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

size_t log_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    if (!cap)
        return 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t len = *p < 0x20 || *p == 0x7f ? 0 : util_utf8_len(p, SIZE_MAX);
        if (len == 0) {
            if (n + 4 >= cap)
                break;
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", *p);
            p++;
            continue;
        }
        if (n + len >= cap)
            break;
        memcpy(out + n, p, len);
        n += len;
        p += len;
    }
    out[n] = '\0';
    return n;
}

/* Appends s, already escaped by log_escape(), to out as the inside of a
 * JSON string: only '"' and '\\' are left to escape. */
static size_t json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 2 < cap; s++) {
        if (*s == '"' || *s == '\\')
            out[n++] = '\\';
        out[n++] = *s;
    }
    out[n] = '\0';
    return n;
}

/* Appends text to line at *n (bounded, NUL-terminated). */
static void append(char *line, size_t cap, size_t *n, const char *text)
{
    size_t l = strlen(text);
    if (*n + l >= cap)
        l = cap - *n - 1;
    memcpy(line + *n, text, l);
    *n += l;
    line[*n] = '\0';
}

/* Appends s as a JSON string, quotes included. */
static void append_json_str(char *line, size_t cap, size_t *n, const char *s)
{
    char esc[4096], js[8192];
    log_escape(esc, sizeof esc, s);
    json_escape(js, sizeof js, esc);
    append(line, cap, n, "\"");
    append(line, cap, n, js);
    append(line, cap, n, "\"");
}

size_t log_format_line(char *line, size_t cap, log_level level,
                       const char *event, const log_field *fields,
                       size_t nfields, const char *msg)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[40];
    size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof ts - tl, ".%03dZ", (int)(tv.tv_usec / 1000));

    /* Room for the newline whatever was cut. */
    size_t n = 0, room = cap - 1;
    line[0] = '\0';
    char head[256];
    if (log_fmt == LOG_FMT_JSON) {
        snprintf(head, sizeof head,
                 "{\"time\":\"%s\",\"level\":\"%s\",\"role\":\"%s\","
                 "\"pid\":%d,\"event\":",
                 ts, level_names[level], log_role, (int)getpid());
        append(line, room, &n, head);
        append_json_str(line, room, &n, event);
        append(line, room, &n, ",\"msg\":");
        append_json_str(line, room, &n, msg);
        for (size_t i = 0; i < nfields; i++) {
            append(line, room, &n, ",");
            append_json_str(line, room, &n, fields[i].key);
            append(line, room, &n, ":");
            if (fields[i].str) {
                append_json_str(line, room, &n, fields[i].str);
            } else {
                char num[32];
                snprintf(num, sizeof num, "%lld", fields[i].num);
                append(line, room, &n, num);
            }
        }
        /* A line cut short (only by fields far larger than ours) still
         * ends in "}" and its newline: no longer valid JSON, but still
         * exactly one line. */
        if (n + 1 >= room)
            n = room - 2;
        line[n++] = '}';
    } else {
        char esc[8192];
        log_escape(esc, sizeof esc, msg);
        snprintf(head, sizeof head, "%s %s[%d] %s %s: ", ts, log_role,
                 (int)getpid(), level_names[level], event);
        append(line, room, &n, head);
        append(line, room, &n, esc);
    }
    line[n++] = '\n';
    line[n] = '\0';
    return n;
}

static void write_line(log_level level, const char *event,
                       const log_field *fields, size_t nfields, const char *msg)
{
    char line[12288];
    size_t n =
        log_format_line(line, sizeof line, level, event, fields, nfields, msg);
    if (log_before_write)
        log_before_write();
    /* One write per line keeps lines whole when several processes share
     * a terminal or a log file. */
    ssize_t ignored = write(STDERR_FILENO, line, n);
    (void)ignored;
}

void log_write(log_level level, const char *event, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    write_line(level, event, NULL, 0, msg);
}

void log_write_kv(log_level level, const char *event, const log_field *fields,
                  size_t nfields, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    write_line(level, event, fields, nfields, msg);
}
