/* backoff.c - full-jitter exponential backoff and Retry-After; backoff.h. */
#include "fmacros.h"
#include "backoff.h"

#include <ctype.h>
#include <time.h>

int64_t backoff_cap_ms(int64_t base_ms, int64_t max_ms, int attempt)
{
    if (base_ms <= 0 || max_ms <= 0)
        return 0;
    if (attempt < 1)
        attempt = 1;
    int64_t cap = base_ms;
    for (int i = 1; i < attempt; i++) {
        if (cap >= max_ms / 2) {
            cap = max_ms;
            break;
        }
        cap *= 2;
    }
    return cap < max_ms ? cap : max_ms;
}

int64_t backoff_delay_ms(int64_t base_ms, int64_t max_ms, int attempt,
                         uint64_t rnd)
{
    int64_t cap = backoff_cap_ms(base_ms, max_ms, attempt);
    if (cap <= 0)
        return 0;
    return (int64_t)(rnd % (uint64_t)(cap + 1));
}

int backoff_parse_retry_after(const char *value, int64_t now_wall_ms,
                              int64_t max_ms, int64_t *out_ms)
{
    while (*value == ' ' || *value == '\t')
        value++;
    size_t len = strlen(value);
    while (len && (value[len - 1] == ' ' || value[len - 1] == '\t' ||
                   value[len - 1] == '\r' || value[len - 1] == '\n'))
        len--;
    if (len == 0 || len > 64)
        return -1;
    char v[65];
    memcpy(v, value, len);
    v[len] = '\0';

    int all_digits = 1;
    for (size_t i = 0; i < len; i++)
        if (!isdigit((unsigned char)v[i]))
            all_digits = 0;
    if (all_digits) {
        const char *d = v;
        while (d[0] == '0' && d[1])
            d++;
        /* Anything with more than 9 digits is over any sane cap anyway. */
        int64_t secs =
            strlen(d) > 9 ? INT64_C(999999999) : strtoll(d, NULL, 10);
        int64_t ms = secs * 1000;
        *out_ms = ms > max_ms ? max_ms : ms;
        return 0;
    }
    /* IMF-fixdate, the only HTTP-date form senders may generate. */
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end != '\0')
        return -1;
    int64_t when_ms = (int64_t)timegm(&tm) * 1000;
    int64_t ms = when_ms - now_wall_ms;
    if (ms < 0)
        ms = 0;
    *out_ms = ms > max_ms ? max_ms : ms;
    return 0;
}

uint64_t backoff_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}
