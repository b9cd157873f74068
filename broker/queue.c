// queue.c: queue records (settings, ready heaps) and their figures.
//
// Threads: loop thread only.
// Ownership: the broker's queue table owns every queue; queues live as
// long as the broker.

#include <stdlib.h>
#include <string.h>

#include "brokerimpl.h"

queue *
queue_get(broker *b, const char *name)
{
	const config       *cfg = b->cfg;
	const config_queue *cq;
	queue              *q;
	long                v;

	HASH_FIND_STR(b->queues, name, q);
	if (q != NULL) {
		return (q);
	}
	if ((q = calloc(1, sizeof(*q))) == NULL ||
	    (q->name = strdup(name)) == NULL) {
		free(q);
		return (NULL);
	}
	cq = config_queue_find(cfg, name);
#define QSET(field, cfgfield) \
	((cq != NULL && cq->field >= 0) ? cq->field : (cfgfield))
	v               = QSET(concurrency, 0);
	q->concurrency  = (uint32_t) v;
	v               = QSET(max_pending, cfg->queue_max_pending);
	q->max_pending  = (uint64_t) v;
	q->max_attempts = (uint32_t) QSET(max_attempts, cfg->max_attempts);
	q->max_crashes  = (uint32_t) QSET(max_crashes, cfg->max_crashes);
	q->timeout_ms   = (uint32_t) QSET(timeout_ms, cfg->timeout_ms);
	q->backoff_us = QSET(retry_backoff_ms, cfg->retry_backoff_ms) * 1000LL;
	q->backoff_max_us =
	    QSET(retry_backoff_max_ms, cfg->retry_backoff_max_ms) * 1000LL;
#undef QSET
	sched_heapq_init(&q->ready, SCHED_READY);
	sched_heapq_init(&q->ready_pool, SCHED_READY);
	HASH_ADD_KEYPTR(hh, b->queues, q->name, strlen(q->name), q);
	return (q);
}

queue *
queue_of_in(broker *b, const tbp_task_in *in)
{
	char   name[TBP_MAX_NAME + 1];
	size_t n = in->queue.n;

	if (n == 0) {
		return (queue_get(b, "default"));
	}
	if (n > TBP_MAX_NAME) {
		return (
		    NULL); // the decoder refuses these; a stored one may not
	}
	memcpy(name, in->queue.p, n);
	name[n] = '\0';
	return (queue_get(b, name));
}

void
queue_free(queue *q)
{
	sched_heapq_fini(&q->ready);
	sched_heapq_fini(&q->ready_pool);
	free(q->name);
	free(q);
}

void
queue_note_done(queue *q, int64_t now_us)
{
	int64_t sec = now_us / 1000000;
	int     i   = (int) (sec % 60);

	if (q->ring_sec[i] != sec) {
		q->ring_sec[i] = sec;
		q->ring_n[i]   = 0;
	}
	q->ring_n[i]++;
}

// queue_done_last_min is how many of q's tasks ended done in the last 60
// seconds.
static uint64_t
queue_done_last_min(const queue *q, int64_t now_us)
{
	int64_t  sec = now_us / 1000000;
	uint64_t n   = 0;

	for (int i = 0; i < 60; i++) {
		if (sec - q->ring_sec[i] < 60) {
			n += q->ring_n[i];
		}
	}
	return (n);
}

uint64_t
queue_waiting(const queue *q)
{
	return (q->counts[TB_STATE_PENDING] + q->counts[TB_STATE_FAILED] +
	    q->inflight);
}

bool
queue_can_start(const queue *q)
{
	return (!q->paused &&
	    (q->concurrency == 0 || q->running < q->concurrency));
}

void
queue_deleted(broker *b, queue *q, uint32_t state, uint64_t n)
{
	n = n > q->counts[state] ? q->counts[state] : n;
	q->counts[state] -= n;
	b->counts[state] -= n > b->counts[state] ? b->counts[state] : n;
}

void
queue_info(const queue *q, int64_t now, tbp_qstat *s)
{
	memset(s, 0, sizeof(*s));
	s->name              = tbp_str(q->name);
	s->pending           = q->counts[TB_STATE_PENDING];
	s->running           = q->counts[TB_STATE_RUNNING];
	s->failed            = q->counts[TB_STATE_FAILED];
	s->dead              = q->counts[TB_STATE_DEAD];
	s->done              = q->counts[TB_STATE_DONE];
	s->cancelled         = q->counts[TB_STATE_CANCELLED];
	s->paused            = q->paused;
	s->concurrency       = q->concurrency;
	s->max_pending       = q->max_pending;
	s->done_last_min     = queue_done_last_min(q, now);
	s->oldest_pending_ms = q->scratch == 0
	    ? 0
	    : (uint64_t) (now - (int64_t) q->scratch) / 1000;
	s->forever           = q->forever;
	s->crashloop         = q->crashloop;
}
