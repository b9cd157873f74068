// attempt.c: dispatch and the life of an attempt: start (counted in the
// store first), launch, timeout, stop, end, interruption, and forever
// restarts.
//
// DESIGN. Dispatch takes ready tasks while slots are free, marks each
// running with its attempt counted and queues that write; only when it has
// committed does the handler start (attempt_start_committed), so an
// attempt that crashes the broker is still counted. A loop handler ends
// through tb_run_finish, a pool handler when its worker returns; both
// arrive in attempt_run_done, and attempt_end decides what becomes of the
// task (sched_outcome) and queues the end state. A timeout or a stop gives
// a pool run up at once: the loop ends the attempt with a stub run and
// discards the worker's late result.
//
// A crash is not a failure. An attempt cut short by the death of the broker
// (found running in the store at start) or of a worker has no outcome of
// its own: attempt_interrupted gives the attempt back and counts a crash
// instead (sched_interrupted), in the one write that makes the task pending
// again, so the crash figure is as durable as the attempt was. A task
// interrupted max_crashes times is quarantined: dead, as a likely cause.
//
// Threads: loop thread only; pool runs are touched by a worker only while
// the pool holds them (see handlers/handlers.h).
// Ownership: the task owns its run (t->run) until the attempt ends; a pool
// run given up is owned by the pool until it comes back, then freed.

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "brokerimpl.h"
#include "log.h"
#include "util.h"

void
attempt_run_free(run *r)
{
	if (r->h != NULL && r->h->mode == HANDLER_POOL) {
		// A pool run owns a copy of the payload (see attempt_launch).
		free((void *) r->payload);
	}
	free(r->result);
	free(r->error);
	free(r);
}

// attempt_slot_free gives back the running slot of a task whose attempt
// ended or never started.
static void
attempt_slot_free(broker *b, task *t)
{
	t->slot = false;
	b->running--;
	t->q->running--;
	if (t->pool) {
		b->running_pool--;
	}
	worker_job_drop(t->wjob); // a worker's room comes back with it
	b->need_dispatch = true;
}

// attempt_refund puts a task whose attempt never ran (or was stopped by a
// graceful shutdown) back to pending, the attempt not counted and no crash
// either: nothing went wrong with the task.
static void
attempt_refund(broker *b, task *t)
{
	t->attempts--;
	task_set_state(b, t, TB_STATE_PENDING);
	sop_write_task(b, t, sop_task_written, NULL, 0, NULL);
}

// attempt_jitter returns a random number in [0, 1) for backoff jitter.
static double
attempt_jitter(int64_t now)
{
	uint32_t rnd = 0;

	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) < 0) {
		rnd = (uint32_t) now; // no entropy yet: jitter is a nicety
	}
	return (rnd / 4294967296.0);
}

// attempt_restart puts a forever task back to pending after a run ended,
// however it ended (sched_forever_restart decides the delay and whether it
// is crash looping).
static void
attempt_restart(broker *b, task *t, uint64_t dur_us, int64_t now)
{
	const config     *cfg = b->cfg;
	sched_forever_cfg fc  = {
		 .reset_us           = cfg->forever_reset_ms * 1000LL,
		 .backoff_us         = cfg->forever_backoff_ms * 1000LL,
		 .backoff_max_us     = cfg->forever_backoff_max_ms * 1000LL,
		 .window_us          = cfg->crashloop_window_ms * 1000LL,
		 .crashloop_restarts = (uint32_t) cfg->crashloop_restarts,
	};
	int     change;
	int64_t delay;

	delay = sched_forever_restart(
	    &t->fv, &fc, dur_us, util_mono_us(), attempt_jitter(now), &change);
	if (change & SCHED_FOREVER_RECOVERED) {
		t->q->crashloop--;
	}
	task_set_state(b, t, TB_STATE_PENDING);
	t->run_at = now + delay;
	if (change & SCHED_FOREVER_LOOPING) {
		t->q->crashloop++;
		log_warn(TASK_FMT ": forever task is crash looping: %u "
		                  "restarts within %ld ms",
		    TASK_ARGS(t), t->fv.window_restarts,
		    cfg->crashloop_window_ms);
		events_publish(
		    b->ev, "crashloop", &t->core, t->state, t->attempts, 0);
	}
	sop_write_task(b, t, sop_task_written, "restart", dur_us, NULL);
	task_schedule(b, t);
}

// attempt_take_outcome moves the run's result and error to the task, the
// error saying "timed out" when the clock ended the attempt.
static void
attempt_take_outcome(task *t, run *r)
{
	free(t->result);
	free(t->error);
	t->result     = r->result;
	t->result_len = r->result_len;
	t->error      = r->failed ? r->error : NULL;
	if (!r->failed) {
		free(r->error);
	}
	r->result = NULL;
	r->error  = NULL;
	if (r->timed_out) {
		// Whatever the cancelled handler said, the cause is the clock.
		free(t->error);
		t->error  = NULL;
		r->failed = true;
		if (asprintf(&t->error, "timed out after %u ms",
		        t->timeout_ms) < 0) {
			t->error = NULL;
		}
	}
	if (r->failed && t->error == NULL) {
		t->error = strdup("failed"); // out of memory for the text
	}
}

// attempt_end records how an attempt ended and what becomes of the task.
static void
attempt_end(broker *b, task *t, run *r)
{
	int64_t   now = util_now_us();
	uint64_t  dur = (uint64_t) (util_mono_us() - r->t_start);
	sched_end e;

	attempt_timer_stop(r);
	t->run = NULL;
	attempt_slot_free(b, t);
	if (!t->requeue) {
		attempt_take_outcome(t, r);
	}
	e = (sched_end) {
		.requeue      = t->requeue,
		.cancelling   = t->cancelling,
		.forever      = t->forever,
		.failed       = r->failed,
		.no_retry     = r->no_retry,
		.attempts     = t->attempts,
		.max_attempts = t->max_attempts,
	};
	switch (sched_outcome(&e)) {
	case SCHED_REQUEUE:
		// Shutdown interrupted it: back to pending, attempt refunded.
		t->requeue = false;
		attempt_refund(b, t);
		break;
	case SCHED_CANCELLED:
		// A cancel stopped it: it ends here, whatever it was.
		t->cancelling = false;
		task_end(b, t, TB_STATE_CANCELLED, "cancelled");
		sop_write_task(b, t, sop_task_written, "cancelled", dur, NULL);
		log_info(TASK_FMT ": cancelled while running", TASK_ARGS(t));
		break;
	case SCHED_RESTART:
		attempt_restart(b, t, dur, now);
		break;
	case SCHED_DONE:
		task_end(b, t, TB_STATE_DONE, NULL);
		queue_note_done(t->q, now);
		sop_write_task(b, t, sop_task_written, "done", dur, NULL);
		break;
	case SCHED_RETRY:
		task_set_state(b, t, TB_STATE_FAILED);
		t->run_at = now +
		    sched_backoff_us(t->attempts, t->q->backoff_us,
		        t->q->backoff_max_us, attempt_jitter(now));
		sop_write_task(b, t, sop_task_written, "retry", dur, NULL);
		log_info(TASK_FMT ": attempt %u failed (%s); retry in "
		                  "%.1f s",
		    TASK_ARGS(t), t->attempts, t->error,
		    (double) (t->run_at - now) / 1e6);
		task_schedule(b, t);
		break;
	default:
		task_end(b, t, TB_STATE_DEAD, NULL);
		sop_write_task(b, t, sop_task_written, "dead", dur, NULL);
		log_info(TASK_FMT ": dead after %u attempts: %s", TASK_ARGS(t),
		    t->attempts, t->error);
		break;
	}
	attempt_run_free(r);
}

void
attempt_abandon(broker *b, task *t)
{
	run *r = t->run;

	(void) b;
	if (r == NULL) {
		return;
	}
	attempt_timer_stop(r);
	t->run = NULL;
	attempt_run_free(r);
}

// attempt_give_back ends t's attempt, whose run has ended without an
// outcome (t->run NULL), with the attempt refunded: the task is pending
// and ready again at once (it waits for the next start if a shutdown has
// begun), or cancelled if a cancel asked for its end meanwhile. event
// (may be NULL) is published once that is written.
static void
attempt_give_back(broker *b, task *t, const char *event)
{
	if (t->slot) {
		attempt_slot_free(b, t); // and the worker's room
	}
	t->attempts--;
	t->requeue = false;
	if (t->cancelling) {
		t->cancelling = false;
		task_end(b, t, TB_STATE_CANCELLED, "cancelled");
		sop_write_task(b, t, sop_task_written, "cancelled", 0, NULL);
		return;
	}
	task_set_state(b, t, TB_STATE_PENDING);
	sop_write_task(b, t, sop_task_written, event, 0, NULL);
	if (b->phase == PHASE_RUNNING) {
		task_schedule(b, t);
	}
}

void
attempt_handed_back(broker *b, task *t)
{
	log_info(TASK_FMT ": attempt %u given back: its worker did "
	                  "not run it",
	    TASK_ARGS(t), t->attempts);
	attempt_abandon(b, t);
	attempt_give_back(b, t, NULL);
}

void
attempt_interrupted(broker *b, task *t, const char *why)
{
	sched_crash c;
	char       *msg = NULL;
	int64_t     now = util_now_us();
	int         outcome;

	assert(t->state == TB_STATE_RUNNING && t->run == NULL && !t->starting);
	if (t->slot) {
		attempt_slot_free(b, t);
	}
	outcome = sched_interrupted(
	    t->attempts, t->crashes, t->max_crashes, t->cancelling, &c);
	t->attempts = c.attempts;
	t->crashes  = c.crashes;
	t->requeue  = false; // pending again in any case: nothing to give back
	switch (outcome) {
	case SCHED_CRASH_CANCELLED:
		t->cancelling = false;
		task_end(b, t, TB_STATE_CANCELLED, "cancelled");
		sop_write_task(b, t, sop_task_written, "cancelled", 0, NULL);
		log_info(TASK_FMT ": cancelled; %s during its attempt",
		    TASK_ARGS(t), why);
		break;
	case SCHED_CRASH_QUARANTINE:
		if (asprintf(&msg,
		        "quarantined: %s during %u attempts of this task "
		        "(max-crashes %u); it may be what kills it",
		        why, t->crashes, t->max_crashes) < 0) {
			msg = NULL; // task_end keeps the old text
		}
		task_end(b, t, TB_STATE_DEAD, msg);
		sop_write_task(b, t, sop_task_written, "dead", 0, NULL);
		log_warn(TASK_FMT ": %s", TASK_ARGS(t),
		    msg != NULL ? msg : "quarantined");
		free(msg);
		break;
	default:
		if (asprintf(&msg,
		        "interrupted: %s during attempt %u (crash %u of "
		        "max-crashes %u); it runs again",
		        why, t->attempts + 1, t->crashes,
		        t->max_crashes) >= 0) {
			free(t->error);
			t->error = msg;
		}
		task_set_state(b, t, TB_STATE_PENDING);
		if (t->run_at > now) {
			t->run_at = now; // ready again at once
		}
		sop_write_task(b, t, sop_task_written, "interrupted", 0, NULL);
		log_info(TASK_FMT ": interrupted (%s); crash %u of %u, "
		                  "pending again with %u attempt(s) spent",
		    TASK_ARGS(t), why, t->crashes, t->max_crashes,
		    t->attempts);
		task_schedule(b, t);
		break;
	}
}

void
attempt_run_done(run *r)
{
	task *t = r->owner;

	if (t == NULL) {
		attempt_run_free(r); // given up at shutdown; the task moved on
		return;
	}
	attempt_end(r->ctx, t, r);
}

static void
attempt_timer_closed(uv_handle_t *h)
{
	free(h);
}

void
attempt_timer_stop(run *r)
{
	if (r->timer != NULL) {
		uv_timer_stop(r->timer);
		uv_close((uv_handle_t *) r->timer, attempt_timer_closed);
		r->timer = NULL;
	}
}

void
attempt_stop(broker *b, task *t, run *r)
{
	atomic_store(&r->cancelled, true);
	if (r->h->mode == HANDLER_WORKER) {
		if (!worker_stop_job(b, t, r)) {
			attempt_end(b, t, r); // the worker never saw it
		}
		return;
	}
	if (r->h->mode == HANDLER_POOL) {
		run *stub = calloc(1, sizeof(*stub));
		if (stub == NULL) {
			return; // it ends when the worker returns, as usual
		}
		attempt_timer_stop(r);
		stub->t_start   = r->t_start;
		stub->timed_out = r->timed_out;
		stub->h         = r->h;
		r->owner        = NULL;
		t->run          = stub;
		attempt_end(b, t, stub);
	} else if (r->h->cancel != NULL) {
		r->h->cancel(r, r->h->hdata);
	}
}

static void
attempt_timeout(uv_timer_t *timer)
{
	run  *r = timer->data;
	task *t = r->owner;

	attempt_timer_stop(r);
	if (t == NULL || r->finished) {
		return;
	}
	r->timed_out = true;
	log_info(TASK_FMT ": attempt %u timed out after %u ms", TASK_ARGS(t),
	    t->attempts, t->timeout_ms);
	events_publish(((broker *) r->ctx)->ev, "timeout", &t->core, t->state,
	    t->attempts, (uint64_t) (util_mono_us() - r->t_start));
	attempt_stop(r->ctx, t, r);
}

static void
attempt_pool_run(pool_job *job)
{
	run *r = (run *) job;

	if (r->h->run(r, r->h->hdata) != 0 && !r->failed) {
		run_set_error(r, "handler %s failed", r->h->name);
	}
}

// attempt_handler returns t's handler: a registered one, or the
// definition of its worker handler; NULL when neither exists.
static const handler *
attempt_handler(const task *t)
{
	if (t->wq != NULL) {
		return (worker_handler_def(t->wq));
	}
	return (handlers_find(t->handler, strlen(t->handler)));
}

// attempt_launch starts the handler of a task whose attempt is counted.
static void
attempt_launch(broker *b, task *t)
{
	const handler *h = attempt_handler(t);
	run           *r;
	uint8_t       *pcopy = NULL;

	// A pool run gets its own copy of the payload: a worker may still
	// read it after the loop gave up on the run (timeout, cancel,
	// shutdown) and the task, with its payload, was freed.
	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (h->mode == HANDLER_POOL && t->payload_len > 0 &&
	        (pcopy = malloc(t->payload_len)) == NULL)) {
		free(r);
		// Handled as an interrupted attempt: back to pending,
		// refunded.
		log_err(TASK_FMT ": no memory to start it", TASK_ARGS(t));
		attempt_slot_free(b, t);
		attempt_refund(b, t);
		task_schedule(b, t);
		return;
	}
	r->task_id     = t->id;
	r->queue       = t->queue;
	r->attempt     = t->attempts;
	r->payload     = t->payload;
	r->payload_len = t->payload_len;
	if (pcopy != NULL) {
		memcpy(pcopy, t->payload, t->payload_len);
		r->payload = pcopy;
	}
	r->loop       = &b->loop;
	r->h          = h;
	r->done       = attempt_run_done;
	r->owner      = t;
	r->ctx        = b;
	r->timeout_ms = t->timeout_ms;
	r->t_start    = util_mono_us();
	atomic_init(&r->cancelled, false);
	t->run = r;
	events_publish(b->ev, "start", &t->core, t->state, t->attempts, 0);
	if (t->timeout_ms > 0 &&
	    (r->timer = malloc(sizeof(uv_timer_t))) != NULL) {
		uv_timer_init(&b->loop, r->timer);
		r->timer->data = r;
		uv_timer_start(r->timer, attempt_timeout, t->timeout_ms, 0);
	}

	if (h->mode == HANDLER_WORKER) {
		if (worker_launch(b, t, r) != TB_OK) {
			// Its worker went during the start write and never saw
			// it: given back, no crash.
			attempt_handed_back(b, t);
		}
		return; // sent with the worker's next take reply
	}
	if (h->mode == HANDLER_POOL) {
		r->job.fn = attempt_pool_run;
		pool_submit(b->pl, &r->job); // the pool has r until it is done
		return;
	}
	if (h->run(r, h->hdata) != TB_OK) {
		if (!r->failed) {
			run_set_error(
			    r, "handler %s could not start", h->name);
		}
		attempt_end(b, t, r);
	}
	// r may be freed here already (the handler finished at once).
}

// attempt_start_committed is the done of an attempt's start write: launch
// the handler, unless a shutdown or a cancel came first.
static void
attempt_start_committed(broker *b, sop *w)
{
	task *t = w->t;

	t->writes--;
	t->starting = false;
	if (b->phase != PHASE_RUNNING) {
		// Shutdown began before the handler could start: the attempt
		// never ran, so it is refunded.
		attempt_slot_free(b, t);
		attempt_refund(b, t);
		return;
	}
	if (t->cancelling) {
		// Cancelled while its start was being written: it never ran,
		// so the attempt is refunded.
		t->cancelling = false;
		attempt_slot_free(b, t);
		t->attempts--;
		task_end(b, t, TB_STATE_CANCELLED, "cancelled");
		sop_write_task(b, t, sop_task_written, "cancelled", 0, NULL);
		return;
	}
	attempt_launch(b, t);
}

// attempt_start counts a new attempt and queues that write; the handler
// runs once the write has committed.
static void
attempt_start(broker *b, task *t)
{
	if (attempt_handler(t) == NULL) {
		// A handler that existed when the task was accepted is gone
		// (e.g. a plugin was removed). It cannot run anywhere.
		task_end(b, t, TB_STATE_DEAD, "unknown handler");
		sop_write_task(b, t, sop_task_written, "dead", 0, NULL);
		log_warn(TASK_FMT ": handler '%s' is not registered; "
		                  "task is dead",
		    TASK_ARGS(t), t->handler);
		return;
	}
	task_set_state(b, t, TB_STATE_RUNNING);
	t->attempts++;
	t->started_at = util_now_us();
	t->starting   = true;
	t->slot       = true;
	b->running++;
	t->q->running++;
	if (t->pool) {
		b->running_pool++;
	}
	sop_write_task(b, t, attempt_start_committed, NULL, 0, NULL);
}

void
attempt_dispatch(broker *b)
{
	task *t;

	b->need_dispatch = false;
	if (b->phase != PHASE_RUNNING) {
		return;
	}
	// Round robin over the queues, one task of each per round, so a
	// queue with a deep backlog does not starve the others; within a
	// queue the heap gives priority, then FIFO.
	for (bool progress = true; progress;) {
		queue *q;
		queue *tmp;
		progress = false;
		HASH_ITER (hh, b->queues, q, tmp) {
			if (b->running >= (uint32_t) b->cfg->max_running) {
				return;
			}
			if (!queue_can_start(q)) {
				continue;
			}
			if (b->running_pool < (uint32_t) b->cfg->workers &&
			    (t = sched_pop(&q->ready_pool)) != NULL) {
				attempt_start(b, t);
				progress = true;
			}
			if (queue_can_start(q) &&
			    b->running < (uint32_t) b->cfg->max_running &&
			    (t = sched_pop(&q->ready)) != NULL) {
				attempt_start(b, t);
				progress = true;
			}
			// Worker handlers: one heap per handler, so that one
			// no worker serves holds up nothing else.
			for (wheap *h = q->wheaps; h != NULL;
			     h        = worker_heap_next(h)) {
				if (!queue_can_start(q) ||
				    b->running >=
				        (uint32_t) b->cfg->max_running) {
					break;
				}
				if ((t = worker_dispatch_heap(b, h)) != NULL) {
					attempt_start(b, t);
					progress = true;
				}
			}
		}
	}
}

// attempt_due_fired moves the delayed tasks whose time has come to their
// ready heaps.
static void
attempt_due_fired(uv_timer_t *timer)
{
	broker *b   = timer->data;
	int64_t now = util_now_us();
	task   *t;

	while ((t = sched_peek(&b->due)) != NULL && t->run_at <= now) {
		sched_remove(&b->due, t);
		if (task_push(b, t, now) != 0) {
			log_err(TASK_FMT ": no memory to schedule it",
			    TASK_ARGS(t));
		}
	}
	b->need_dispatch = true;
}

void
attempt_arm_due(broker *b)
{
	task   *t = sched_peek(&b->due);
	int64_t delay;

	if (t == NULL || b->phase != PHASE_RUNNING) {
		uv_timer_stop(&b->due_timer);
		return;
	}
	delay = (t->run_at - util_now_us() + 999) / 1000;
	uv_timer_start(&b->due_timer, attempt_due_fired,
	    delay > 0 ? (uint64_t) delay : 0, 0);
}
