// task.c: the task table (by id, submission id and key) and every
// conversion between a task's shapes: the stored row, the submitted entry,
// the loop's record and the wire's task info.
//
// Threads: loop thread only.
// Ownership: the table owns the records it indexes; task_from_rec takes
// over a stored row's memory.

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "brokerimpl.h"
#include "log.h"
#include "util.h"

void
task_free(task *t)
{
	if (t != NULL) {
		store_rec_fini(&t->core);
		free(t);
	}
}

task *
task_find(broker *b, uint64_t id)
{
	task *t;

	HASH_FIND(hh, b->by_id, &id, sizeof(id), t);
	return (t);
}

task *
task_find_key(broker *b, const char *key, size_t len)
{
	task *t;

	HASH_FIND(hh_key, b->by_key, key, len, t);
	return (t);
}

task *
task_known(broker *b, const tbp_task_in *in, bool *existingp)
{
	task *t;

	*existingp = false;
	HASH_FIND(hh_sid, b->by_sid, in->sid.p, TB_SID_LEN, t);
	if (t == NULL && in->key.n > 0 &&
	    (t = task_find_key(b, (const char *) in->key.p, in->key.n)) !=
	        NULL) {
		*existingp = true;
	}
	return (t);
}

void
task_key_index(broker *b, task *t)
{
	if (t->key != NULL && !t->key_indexed &&
	    task_find_key(b, t->key, strlen(t->key)) == NULL) {
		HASH_ADD_KEYPTR(hh_key, b->by_key, t->key, strlen(t->key), t);
		t->key_indexed = true;
	}
}

static void
task_key_unindex(broker *b, task *t)
{
	if (t->key_indexed) {
		HASH_DELETE(hh_key, b->by_key, t);
		t->key_indexed = false;
	}
}

void
task_index(broker *b, task *t)
{
	HASH_ADD(hh, b->by_id, id, sizeof(t->id), t);
	HASH_ADD(hh_sid, b->by_sid, sid, TB_SID_LEN, t);
	if (!tbp_state_final((int) t->state)) {
		task_key_index(b, t);
	}
}

void
task_unindex(broker *b, task *t)
{
	HASH_DELETE(hh, b->by_id, t);
	HASH_DELETE(hh_sid, b->by_sid, t);
	task_key_unindex(b, t);
}

void
task_forget(broker *b, task *t)
{
	task_unindex(b, t);
	task_free(t);
}

void
task_set_state(broker *b, task *t, uint32_t state)
{
	b->counts[t->state]--;
	t->q->counts[t->state]--;
	t->state = state;
	b->counts[state]++;
	t->q->counts[state]++;
	if (tbp_state_final((int) state)) {
		task_key_unindex(b, t);
		if (t->forever) {
			t->q->forever--;
			if (t->fv.crashloop) {
				t->q->crashloop--;
				t->fv.crashloop = false;
			}
		}
	}
	b->check_drain = true;
}

void
task_end(broker *b, task *t, uint32_t state, const char *why)
{
	task_set_state(b, t, state);
	t->finished_at = util_now_us();
	if (why != NULL) {
		free(t->error);
		t->error = strdup(why); // NULL without memory: no text
	}
	b->completed++;
}

// task_set_handler_mode notes whether t's handler runs on the pool or in
// workers (then t->wq is its ready heap).
static void
task_set_handler_mode(broker *b, task *t)
{
	const handler *h = handlers_find(t->handler, strlen(t->handler));

	t->pool = h != NULL && h->mode == HANDLER_POOL;
	t->wq   = h == NULL ? worker_heap_of(b, t->handler, t->q) : NULL;
}

void
task_info(const taskrec *c, tbp_task_info *ti)
{
	memset(ti, 0, sizeof(*ti));
	ti->id           = c->id;
	ti->queue        = tbp_str(c->queue);
	ti->handler      = tbp_str(c->handler);
	ti->state        = c->state;
	ti->attempts     = c->attempts;
	ti->max_attempts = c->max_attempts;
	ti->crashes      = c->crashes;
	ti->max_crashes  = c->max_crashes;
	ti->priority     = c->priority;
	ti->created_at   = c->created_at;
	ti->started_at   = c->started_at;
	ti->finished_at  = c->finished_at;
	ti->result.p     = c->result;
	ti->result.n     = (uint32_t) c->result_len;
	ti->error        = tbp_str(c->error);
	ti->run_at       = c->run_at;
	ti->timeout_ms   = c->timeout_ms;
	ti->forever      = c->forever;
	ti->key          = tbp_str(c->key);
}

task *
task_from_rec(broker *b, store_rec *r)
{
	task *t;

	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->q = queue_get(b, r->queue)) == NULL) {
		free(t);
		store_rec_free(r);
		return (NULL);
	}
	t->core    = *r; // the row's strings and bytes are the task's now
	t->durable = true;
	free(r);
	if (t->max_crashes == 0) {
		// A row of a broker before schema 3: its queue's setting.
		t->max_crashes = t->q->max_crashes;
	}
	task_set_handler_mode(b, t);
	return (t);
}

task *
task_from_in(broker *b, queue *q, const tbp_task_in *in, int64_t now)
{
	task *t;

	if ((t = calloc(1, sizeof(*t))) == NULL) {
		return (NULL);
	}
	memcpy(t->sid, in->sid.p, TB_SID_LEN);
	t->q       = q;
	t->queue   = strdup(q->name);
	t->handler = tbp_bytes_dup(in->handler);
	if (in->payload.n > 0 &&
	    (t->payload = malloc(in->payload.n)) != NULL) {
		memcpy(t->payload, in->payload.p, in->payload.n);
		t->payload_len = in->payload.n;
	}
	if (in->key.n > 0) {
		t->key = tbp_bytes_dup(in->key);
	}
	if (t->queue == NULL || t->handler == NULL ||
	    (in->payload.n > 0 && t->payload == NULL) ||
	    (in->key.n > 0 && t->key == NULL)) {
		task_free(t);
		return (NULL);
	}
	t->id       = b->next_id++;
	t->priority = in->priority;
	t->state    = TB_STATE_PENDING;
	t->max_attempts =
	    in->max_attempts > 0 ? in->max_attempts : q->max_attempts;
	t->max_crashes =
	    in->max_crashes > 0 ? in->max_crashes : q->max_crashes;
	t->timeout_ms = in->timeout_ms > 0 ? in->timeout_ms : q->timeout_ms;
	t->created_at = now;
	t->run_at     = sched_run_at(now, in->run_at, in->delay_ms);
	t->forever    = in->forever;
	task_set_handler_mode(b, t);
	return (t);
}

// task_heap_of returns the heap a waiting task belongs in: the due heap
// until its run_at, then its queue's ready heap of its handler's kind.
// Pool tasks wait in their own heap so that they start only when a worker
// is free (and so are reported running only while one runs them), without
// holding up loop tasks behind them.
static sched_heapq *
task_heap_of(broker *b, const task *t, int64_t now)
{
	if (t->run_at > now) {
		return (&b->due);
	}
	if (t->wq != NULL) {
		return (worker_heap_ready(t->wq));
	}
	return (t->pool ? &t->q->ready_pool : &t->q->ready);
}

int
task_push(broker *b, task *t, int64_t now)
{
	return (sched_push(task_heap_of(b, t, now), t));
}

void
task_schedule(broker *b, task *t)
{
	if (task_push(b, t, util_now_us()) != 0) {
		// Out of memory for the heap: the task stays in the store and
		// runs after a restart; say so rather than lose it silently.
		log_err(TASK_FMT ": no memory to schedule it; it will "
		                 "run after a restart",
		    TASK_ARGS(t));
		return;
	}
	b->need_dispatch = true;
}

void
task_unschedule(broker *b, task *t)
{
	if (t->heap == SCHED_DUE) {
		sched_remove(&b->due, t);
	} else if (t->heap == SCHED_READY) {
		sched_remove(task_heap_of(b, t, INT64_MAX), t);
	}
}
