/*
 * source_queue.h - a message queue as a source (source.h): the master's
 * side and the thread that talks to the queue.
 */
#ifndef FANOUT_SOURCE_QUEUE_H
#define FANOUT_SOURCE_QUEUE_H

#include "queue.h"
#include "source.h"

typedef struct squeue squeue;

squeue *squeue_open(const source_cfg *c, char *err, size_t errlen, int *code);
void squeue_close(squeue **q, int64_t wait_ms);
int squeue_next(squeue *q, int64_t want, source_item *it, int64_t now);
const char *squeue_error(const squeue *q);
void *squeue_socket(squeue *q);
void squeue_tick(squeue *q, int64_t now, int holding);
void squeue_ack(squeue *q, const uint64_t *handles, size_t n);
void squeue_release(squeue *q, uint64_t handle);
char **squeue_take_acked(squeue *q, size_t *n);
void squeue_drain(squeue *q, int64_t wait_ms);

#endif
