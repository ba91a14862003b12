/*
 * queue_registry.c - the queue drivers fanout knows, and picking one by
 * the input URL's scheme; see queue.h.
 *
 * The only file that names the drivers: queue.c and each driver know none
 * but themselves, so a test or a fuzz target can link one driver alone.
 * Adding a driver is a line in the table below.
 */
#include "fmacros.h"
#include "queue.h"
#include "util.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

static const queue_driver *const drivers[] = {
    &queue_redis_driver,
    &queue_azure_driver,
};

const queue_driver *queue_driver_find(const char *input)
{
    for (size_t i = 0; i < sizeof drivers / sizeof drivers[0]; i++) {
        const char *scheme = drivers[i]->scheme;
        size_t n = strlen(scheme);
        if (strncmp(input, scheme, n) == 0 && strncmp(input + n, "://", 3) == 0)
            return drivers[i];
    }
    return NULL;
}

int queue_is_url(const char *input)
{
    return queue_driver_find(input) != NULL;
}

queue *queue_open(const char *input, const queue_opts *o, char *err,
                  size_t errlen)
{
    const queue_driver *d = queue_driver_find(input);
    if (!d) {
        char shown[512];
        snprintf(err, errlen, "not a queue URL: %s",
                 util_redact_url(input, shown, sizeof shown));
        return NULL;
    }
    queue *q = d->open(input, o, err, errlen);
    assert(!q || q->driver == d);
    return q;
}
