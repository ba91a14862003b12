/* gcra.c - GCRA over several limits; see gcra.h for the algorithm. */
#include "fmacros.h"
#include "gcra.h"
#include "clock.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>

typedef struct limit {
    gcra_rate rate;    /* as configured */
    int64_t burst;     /* tokens that may be spent back to back */
    int64_t margin_ns; /* jitter allowance added to each period */
    int64_t t_ns;      /* emission interval at the current scale */
    int64_t tau_ns;    /* tolerance: t_ns * (burst - 1) */
    int64_t tat_ns;    /* theoretical arrival time */
    int started;       /* a token was taken: tat_ns is meaningful */
} limit;

/* Tolerances are clamped here (about 73 years) so that tat - tau cannot
 * overflow whatever the burst and scale. */
#define TAU_MAX_NS (INT64_MAX / 4)

struct gcra {
    limit limits[GCRA_MAX_LIMITS]; /* the limits that all hold */
    size_t n;                      /* limits in use */
    double scale;                  /* adaptive factor in (0, 1] */
};

fo_err gcra_parse_rate(const char *s, gcra_rate *out, char *err, size_t errlen)
{
    const char *slash = s ? strchr(s, '/') : NULL;
    if (!slash) {
        snprintf(err, errlen, "'%s' is not a rate: expected N/s, N/min or N/h",
                 s ? s : "");
        return FO_EINVAL;
    }
    char num[32];
    size_t nl = (size_t)(slash - s);
    if (nl == 0 || nl >= sizeof num) {
        snprintf(err, errlen, "'%s' is not a rate: expected N/s, N/min or N/h",
                 s);
        return FO_EINVAL;
    }
    memcpy(num, s, nl);
    num[nl] = '\0';
    int64_t count;
    if (util_parse_i64(num, INT64_MIN, INT64_MAX, &count) < 0) {
        snprintf(err, errlen,
                 "'%s' is not a rate: '%s' is not a whole number of requests",
                 s, num);
        return FO_EINVAL;
    }
    if (count <= 0) {
        snprintf(err, errlen,
                 "'%s': the count must be at least 1 (for no limit, leave "
                 "out --rate)",
                 s);
        return FO_EINVAL;
    }
    const char *u = slash + 1;
    int64_t period;
    if (!strcmp(u, "s") || !strcmp(u, "sec") || !strcmp(u, "second"))
        period = FO_NS_PER_S;
    else if (!strcmp(u, "m") || !strcmp(u, "min") || !strcmp(u, "minute"))
        period = 60 * FO_NS_PER_S;
    else if (!strcmp(u, "h") || !strcmp(u, "hour"))
        period = 3600 * FO_NS_PER_S;
    else {
        snprintf(err, errlen, "'%s': unknown unit '%s': expected s, min or h",
                 s, u);
        return FO_EINVAL;
    }
    if ((double)count / ((double)period / 1e9) > (double)GCRA_MAX_COUNT_PER_S) {
        snprintf(err, errlen, "'%s' is above the maximum of %" PRId64 "/s", s,
                 GCRA_MAX_COUNT_PER_S);
        return FO_EINVAL;
    }
    out->count = count;
    out->period_ns = period;
    return FO_OK;
}

void gcra_format_rate(gcra_rate r, char *buf, size_t cap)
{
    const char *unit = "s";
    if (r.period_ns == 60 * FO_NS_PER_S)
        unit = "min";
    else if (r.period_ns == 3600 * FO_NS_PER_S)
        unit = "h";
    snprintf(buf, cap, "%" PRId64 "/%s", r.count, unit);
}

gcra *gcra_new(void)
{
    gcra *g = xcalloc(1, sizeof *g);
    g->scale = 1.0;
    return g;
}

void gcra_destroy(gcra **g)
{
    FO_FREE(g);
}

static void recompute(gcra *g, limit *l)
{
    double t = (double)(l->rate.period_ns + l->margin_ns) /
               (double)l->rate.count / g->scale;
    l->t_ns = t < 1                    ? 1
              : t > (double)TAU_MAX_NS ? TAU_MAX_NS
                                       : (int64_t)ceil(t);
    double tau = (double)l->t_ns * (double)(l->burst - 1);
    l->tau_ns = tau > (double)TAU_MAX_NS ? TAU_MAX_NS : (int64_t)tau;
}

fo_err gcra_add(gcra *g, gcra_rate r, int64_t burst, int64_t margin_ns)
{
    if (g->n >= GCRA_MAX_LIMITS || r.count <= 0 || r.period_ns <= 0 ||
        burst < 1 || burst > 1000000 || margin_ns < 0)
        return FO_EINVAL;
    limit *l = &g->limits[g->n++];
    memset(l, 0, sizeof *l);
    l->rate = r;
    l->burst = burst;
    l->margin_ns = margin_ns;
    recompute(g, l);
    return FO_OK;
}

void gcra_clear(gcra *g)
{
    g->n = 0;
}

size_t gcra_count(const gcra *g)
{
    return g->n;
}

void gcra_set_scale(gcra *g, double factor)
{
    if (!(factor > 0))
        factor = 0.001;
    if (factor > 1)
        factor = 1;
    g->scale = factor;
    for (size_t i = 0; i < g->n; i++)
        recompute(g, &g->limits[i]);
}

int64_t gcra_peek(const gcra *g, int64_t now)
{
    int64_t t = now;
    for (size_t i = 0; i < g->n; i++) {
        if (!g->limits[i].started)
            continue;
        int64_t earliest = g->limits[i].tat_ns - g->limits[i].tau_ns;
        if (earliest > t)
            t = earliest;
    }
    return t;
}

int64_t gcra_take(gcra *g, int64_t now)
{
    int64_t t = gcra_peek(g, now);
    for (size_t i = 0; i < g->n; i++) {
        limit *l = &g->limits[i];
        int64_t base = l->started && l->tat_ns > t ? l->tat_ns : t;
        l->tat_ns = base + l->t_ns;
        l->started = 1;
    }
    return t;
}

double gcra_rate_per_s(const gcra *g)
{
    double best = 0;
    for (size_t i = 0; i < g->n; i++) {
        double r = 1e9 / (double)g->limits[i].t_ns;
        if (best == 0 || r < best)
            best = r;
    }
    return best;
}
