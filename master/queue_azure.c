/*
 * queue_azure.c - Azure Queue Storage as a source (not built yet).
 */
#include "fmacros.h"
#include "queue.h"

#include <stdio.h>

queue_driver *queue_azure_open(const char *url, const queue_opts *o,
                               char *err, size_t errlen)
{
    (void)o;
    snprintf(err, errlen, "%s: Azure Queue Storage is not built yet", url);
    return NULL;
}
