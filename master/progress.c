/* progress.c - live progress line; see progress.h. */
#include "fmacros.h"
#include "progress.h"
#include "clock.h"
#include "log.h"

#include <inttypes.h>
#include <unistd.h>

static int line_live;
static int64_t last_ns;

static void clear_line(void)
{
    if (line_live) {
        ssize_t r = write(STDERR_FILENO, "\r\033[K", 4);
        (void)r;
        line_live = 0;
    }
}

int progress_parse(const char *s, progress_mode *out)
{
    if (!strcmp(s, "auto"))
        *out = isatty(STDERR_FILENO) ? PROGRESS_TTY : PROGRESS_PLAIN;
    else if (!strcmp(s, "tty"))
        *out = PROGRESS_TTY;
    else if (!strcmp(s, "plain"))
        *out = PROGRESS_PLAIN;
    else if (!strcmp(s, "off"))
        *out = PROGRESS_OFF;
    else
        return -1;
    if (*out == PROGRESS_TTY)
        log_before_write = clear_line;
    return 0;
}

static void fmt_eta(char *buf, size_t cap, double secs)
{
    if (secs < 0 || secs > 1e8) {
        snprintf(buf, cap, "--:--");
        return;
    }
    int64_t s = (int64_t)(secs + 0.5);
    if (s >= 3600)
        snprintf(buf, cap, "%" PRId64 "h%02d", s / 3600, (int)(s % 3600 / 60));
    else
        snprintf(buf, cap, "%d:%02d", (int)(s / 60), (int)(s % 60));
}

void progress_show(progress_mode mode, const progress_snapshot *p,
                   int64_t now_ns, int force)
{
    if (mode == PROGRESS_OFF)
        return;
    int64_t interval =
        mode == PROGRESS_TTY ? 200 * FO_NS_PER_MS : 5000 * FO_NS_PER_MS;
    if (!force && now_ns - last_ns < interval)
        return;
    last_ns = now_ns;
    char count[64], limit[160], eta[24];
    double frac = p->fraction;
    if (p->total >= 0) {
        snprintf(count, sizeof count, "%" PRId64 "/%" PRId64, p->done,
                 p->total);
        frac = p->total ? (double)p->done / (double)p->total : 1;
    } else {
        snprintf(count, sizeof count, "%" PRId64, p->done);
    }
    if (p->limit && *p->limit && p->scale < 0.999)
        snprintf(limit, sizeof limit, " (limit %s, now %.1f/s)", p->limit,
                 p->effective_per_s);
    else if (p->limit && *p->limit)
        snprintf(limit, sizeof limit, " (limit %s)", p->limit);
    else
        limit[0] = '\0';
    double remaining = -1;
    if (frac > 0 && frac <= 1 && p->rate_per_s > 0 && p->total >= 0)
        remaining = (double)(p->total - p->done) / p->rate_per_s;
    fmt_eta(eta, sizeof eta, remaining);
    char pct[16] = "";
    if (frac >= 0) /* unknown for a queue */
        snprintf(pct, sizeof pct, " %5.1f%%", frac * 100);
    char line[512];
    int n = snprintf(line, sizeof line,
                     "%s%s  %.1f/s%s  ok %" PRId64 "  failed %" PRId64
                     "  invalid %" PRId64 "  retries %" PRId64
                     "  throttled %" PRId64 "%s  workers %" PRId64
                     "  in flight %" PRId64 "  ETA %s",
                     count, pct, p->rate_per_s, limit, p->ok, p->failed,
                     p->invalid, p->retries, p->throttled,
                     p->paused == 2 ? "  PAUSED (fanout-ctl resume to go on)"
                     : p->paused    ? "  PAUSED (API push-back)"
                                    : "",
                     p->workers, p->inflight, eta);
    if (n < 0)
        return;
    char out[600];
    if (mode == PROGRESS_TTY) {
        n = snprintf(out, sizeof out, "\r\033[K%s", line);
        line_live = 1;
    } else {
        n = snprintf(out, sizeof out, "progress: %s\n", line);
    }
    ssize_t r = write(STDERR_FILENO, out, (size_t)n);
    (void)r;
}

void progress_finish(progress_mode mode)
{
    if (mode == PROGRESS_TTY && line_live) {
        ssize_t r = write(STDERR_FILENO, "\n", 1);
        (void)r;
        line_live = 0;
    }
}
