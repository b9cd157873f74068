// loop.c: see loop.h. Everything here runs on the loop thread.

#include "loop.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <uthash.h>
#include <uv.h>

#include <tbp.h>

#include "events.h"
#include "handlers.h"
#include "log.h"
#include "pool.h"
#include "task.h"
#include "server.h"
#include "store.h"
#include "util.h"

#define RETRY_BASE_US 100000LL       // first retry after ~0.1 s
#define RETRY_CAP_US 60000000LL      // never more than a minute apart
#define WAIT_MAX_MS 3600000LL        // a wait lasts an hour at most
#define LIST_BYTES_MAX (4u << 20)    // results carried in one list reply
#define FINISH_GRACE_MS 5000         // for cancelled attempts to end
#define LINGER_MS 1000               // for the last replies to go out
#define REPLY_LATER 1000             // an op handler keeps the request

enum broker_phase {
	PHASE_RUNNING   = 0,
	PHASE_DRAINING  = 1, // running attempts may finish
	PHASE_FINISHING = 2, // waiting for the last writes
	PHASE_CLOSING   = 3, // sockets closing
};

enum wop_kind {
	W_SUBMIT = 0,
	W_START,  // attempt counted; start the handler when committed
	W_END,    // an attempt ended, or a cancel
	W_REQUEUE, // back to pending, attempt refunded (shutdown)
	W_FINISH, // barrier: everything before it has committed
};

typedef struct submit_ctx submit_ctx;

// ackwait is a duplicate submit waiting for the first copy's insert.
typedef struct ackwait {
	submit_ctx     *sc;
	uint32_t        idx;
	struct ackwait *next;
} ackwait;

// submit_ctx is one submit request between decode and reply.
struct submit_ctx {
	srv_req    *req;
	uint32_t    n;
	uint64_t   *ids;
	bool       *dup;
	task      **tasks; // new tasks, nrecs of them
	store_rec  *recs;  // views of tasks[i]; borrowed pointers
	store_rec **recp;
	uint64_t   *dup_ids;
	uint32_t    nrecs;
	uint32_t    parts; // the insert op and in-flight duplicates
	int         rv;
};

// waiter is a wait request parked on a task.
typedef struct waiter {
	srv_req       *req;
	task          *t;
	broker        *b;
	uv_timer_t     timer;
	struct waiter *next;
	struct waiter *prev;
} waiter;

// wop is one store op with the loop's context.
typedef struct wop {
	store_op    op;
	int         kind;
	task       *t;
	submit_ctx *sc;
	srv_req    *req;        // a cancel waiting for its commit
	const char *event;      // published once committed
	uint32_t    ev_state;   // state and attempt the event reports
	uint32_t    ev_attempt;
	uint64_t    ev_dur;
} wop;

struct broker {
	const config *cfg;
	uv_loop_t     loop;
	store        *st;
	pool         *pl;
	srv          *sv;
	events       *ev;
	uv_async_t    store_async;
	uv_async_t    pool_async;
	uv_signal_t   sigterm;
	uv_signal_t   sigint;
	uv_timer_t    due_timer;
	uv_timer_t    shutdown_timer;
	uv_timer_t    linger_timer;
	uv_prepare_t  prepare;
	bool          handles_up;
	bool          st_stopped;
	atomic_bool   pool_gone; // the pool no longer wakes the loop

	task       *by_id;  // uthash, hh
	task       *by_sid; // uthash, hh_sid
	sched_heapq ready;      // ready loop-handler tasks
	sched_heapq ready_pool; // ready pool-handler tasks
	sched_heapq due;
	uint64_t    next_id;
	uint64_t    counts[TB_STATE_CANCELLED + 1];
	uint64_t    submitted;
	uint64_t    completed;
	uint32_t    running; // tasks in state running
	uint32_t    running_pool; // of those, on pool handlers
	int64_t     start_mono;
	int         phase;
	bool        need_dispatch;
	int         linger_ticks;
	int         exit_code;
};

static void dispatch(broker *b);
static void check_drained(broker *b);
static void begin_shutdown(broker *b, const char *why);

// ---- tasks ---------------------------------------------------------------

static void
task_free(task *t)
{
	if (t == NULL) {
		return;
	}
	free(t->queue);
	free(t->handler);
	free(t->payload);
	free(t->result);
	free(t->error);
	free(t);
}

static task *
task_find(broker *b, uint64_t id)
{
	task *t;

	HASH_FIND(hh, b->by_id, &id, sizeof(id), t);
	return (t);
}

static void
task_index(broker *b, task *t)
{
	HASH_ADD(hh, b->by_id, id, sizeof(t->id), t);
	HASH_ADD(hh_sid, b->by_sid, sid, SCHED_SID_LEN, t);
}

static void
task_unindex(broker *b, task *t)
{
	HASH_DELETE(hh, b->by_id, t);
	HASH_DELETE(hh_sid, b->by_sid, t);
}

static void
task_set_state(broker *b, task *t, uint32_t state)
{
	b->counts[t->state]--;
	t->state = state;
	b->counts[state]++;
}

// heap_of returns the heap a waiting task belongs in: the due heap until
// its run_at, then the ready heap of its handler's kind. Pool tasks wait in
// their own heap so that they start only when a worker is free (and so are
// reported running only while one runs them), without holding up loop
// tasks behind them.
static sched_heapq *
heap_of(broker *b, const task *t, int64_t now)
{
	if (t->run_at > now) {
		return (&b->due);
	}
	return (t->pool ? &b->ready_pool : &b->ready);
}

// slot_free gives back the running slot of a task whose attempt ended or
// never started.
static void
slot_free(broker *b, const task *t)
{
	b->running--;
	if (t->pool) {
		b->running_pool--;
	}
	b->need_dispatch = true;
}

static void
task_set_handler_mode(task *t)
{
	const handler *h = handlers_find(t->handler, strlen(t->handler));

	t->pool = h != NULL && h->mode == HANDLER_POOL;
}

static void
task_info(const task *t, tbp_task_info *ti)
{
	memset(ti, 0, sizeof(*ti));
	ti->id           = t->id;
	ti->queue        = tbp_str(t->queue);
	ti->handler      = tbp_str(t->handler);
	ti->state        = t->state;
	ti->attempts     = t->attempts;
	ti->max_attempts = t->max_attempts;
	ti->priority     = t->priority;
	ti->created_at   = t->created_at;
	ti->started_at   = t->started_at;
	ti->finished_at  = t->finished_at;
	ti->result.p     = t->result;
	ti->result.n     = (uint32_t) t->result_len;
	ti->error        = tbp_str(t->error);
}

static void
rec_info(const store_rec *r, tbp_task_info *ti)
{
	memset(ti, 0, sizeof(*ti));
	ti->id           = r->id;
	ti->queue        = tbp_str(r->queue);
	ti->handler      = tbp_str(r->handler);
	ti->state        = r->state;
	ti->attempts     = r->attempts;
	ti->max_attempts = r->max_attempts;
	ti->priority     = r->priority;
	ti->created_at   = r->created_at;
	ti->started_at   = r->started_at;
	ti->finished_at  = r->finished_at;
	ti->result.p     = r->result;
	ti->result.n     = (uint32_t) r->result_len;
	ti->error        = tbp_str(r->error);
}

// schedule puts a durable, waiting task in the heap its run_at calls for.
static void
schedule(broker *b, task *t)
{
	int64_t now = util_now_us();

	if (sched_push(heap_of(b, t, now), t) != 0) {
		// Out of memory for the heap: the task stays in the store and
		// runs after a restart; say so rather than lose it silently.
		log_err("task %" PRIu64 ": no memory to schedule it; it will "
		        "run after a restart",
		    t->id);
		return;
	}
	b->need_dispatch = true;
}

// ---- replies ---------------------------------------------------------------

static void
reply_error(srv_req *req, int code, const char *msg)
{
	msgpack_sbuffer_clear(&req->out);
	if (tbp_enc_rep_error(&req->out, req->req.op, req->req.req_id, code,
	        msg) != TB_OK) {
		msgpack_sbuffer_clear(&req->out);
	}
	srv_reply(req);
}

static void
reply_task(srv_req *req, const tbp_task_info *ti, bool timed_out)
{
	msgpack_sbuffer_clear(&req->out);
	if (tbp_enc_rep_task(&req->out, req->req.op, req->req.req_id, ti,
	        timed_out) != TB_OK) {
		reply_error(req, TB_ENOMEM, NULL);
		return;
	}
	srv_reply(req);
}

// ---- store ops -------------------------------------------------------------

static wop *
wop_alloc(int kind, task *t)
{
	wop *w;

	if ((w = calloc(1, sizeof(*w))) == NULL) {
		return (NULL);
	}
	w->kind   = kind;
	w->t      = t;
	w->op.arg = w;
	return (w);
}

// write_task queues an UPDATE with the task's current fields. The event,
// if any, is published once the write has committed.
static void
write_task(broker *b, task *t, int kind, const char *event, uint64_t dur,
    srv_req *req)
{
	wop *w;

	if ((w = wop_alloc(kind, t)) == NULL) {
		// Without memory for the op the state change is not recorded;
		// on restart the task is recovered from its last stored state
		// (at-least-once still holds).
		log_err("task %" PRIu64 ": no memory to record state %s", t->id,
		    util_state_name((int) t->state));
		if (req != NULL) {
			reply_error(req, TB_ENOMEM, NULL);
		}
		return;
	}
	w->op.kind        = STORE_OP_UPDATE;
	w->op.id          = t->id;
	w->op.state       = t->state;
	w->op.attempts    = t->attempts;
	w->op.run_at      = t->run_at;
	w->op.started_at  = t->started_at;
	w->op.finished_at = t->finished_at;
	w->op.result      = t->result;
	w->op.result_len  = t->result_len;
	w->op.error       = t->error;
	w->event          = event;
	w->ev_state       = t->state;
	w->ev_attempt     = t->attempts;
	w->ev_dur         = dur;
	w->req            = req;
	t->writes++;
	store_submit(b->st, &w->op);
}

// ---- attempts --------------------------------------------------------------

static void
run_free(run *r)
{
	free(r->result);
	free(r->error);
	free(r);
}

static void waiters_wake(broker *b, task *t);
static void run_timer_stop(run *r);

// task_ended is called when a task reached a final state whose write has
// committed: answer waiters and forget it if nothing else refers to it.
static void
task_maybe_forget(broker *b, task *t)
{
	if (!util_state_final((int) t->state) || t->writes > 0 ||
	    t->run != NULL) {
		return;
	}
	waiters_wake(b, t);
	task_unindex(b, t);
	task_free(t);
}

// end_attempt records how an attempt ended. Its result and error move from
// the run to the task.
static void
end_attempt(broker *b, task *t, run *r)
{
	int64_t  now = util_now_us();
	uint64_t dur = (uint64_t) (util_mono_us() - r->t_start);

	run_timer_stop(r);
	t->run = NULL;
	slot_free(b, t);

	if (t->requeue) {
		// Shutdown interrupted it: back to pending, attempt refunded.
		t->requeue = false;
		t->attempts--;
		task_set_state(b, t, TB_STATE_PENDING);
		write_task(b, t, W_REQUEUE, NULL, 0, NULL);
		run_free(r);
		check_drained(b);
		return;
	}

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
		t->error = NULL;
		r->failed = true;
		if (asprintf(&t->error, "timed out after %u ms", t->timeout_ms) <
		    0) {
			t->error = NULL;
		}
	}
	if (r->failed && t->error == NULL) {
		t->error = strdup("failed"); // out of memory for the text
	}

	if (!r->failed) {
		task_set_state(b, t, TB_STATE_DONE);
		t->finished_at = now;
		b->completed++;
		write_task(b, t, W_END, "done", dur, NULL);
	} else if (t->attempts < t->max_attempts) {
		uint32_t rnd = 0;
		if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) < 0) {
			rnd = (uint32_t) now;
		}
		task_set_state(b, t, TB_STATE_FAILED);
		t->run_at = now + sched_backoff_us(t->attempts, RETRY_BASE_US,
		                      RETRY_CAP_US, rnd / 4294967296.0);
		write_task(b, t, W_END, "failed", dur, NULL);
		log_info("task %" PRIu64 ": attempt %u failed (%s); retry in "
		         "%.1f s",
		    t->id, t->attempts, t->error,
		    (double) (t->run_at - now) / 1e6);
		schedule(b, t);
	} else {
		task_set_state(b, t, TB_STATE_DEAD);
		t->finished_at = now;
		b->completed++;
		write_task(b, t, W_END, "dead", dur, NULL);
		log_info("task %" PRIu64 ": dead after %u attempts: %s", t->id,
		    t->attempts, t->error);
	}
	run_free(r);
	check_drained(b);
}

// on_run_done is the owner callback of every run: run_finish for loop
// handlers, the pool's done list for pool handlers.
static void
on_run_done(run *r)
{
	task *t = r->owner;

	if (t == NULL) {
		run_free(r); // abandoned at shutdown; the task moved on
		return;
	}
	end_attempt(r->ctx, t, r);
}

static void
timer_closed(uv_handle_t *h)
{
	free(h);
}

static void
run_timer_stop(run *r)
{
	if (r->timer != NULL) {
		uv_timer_stop(r->timer);
		uv_close((uv_handle_t *) r->timer, timer_closed);
		r->timer = NULL;
	}
}

// stop_run asks a running attempt to end now (timeout, shutdown). A loop
// handler is cancelled and ends through run_finish as usual. A worker
// thread cannot be stopped: the loop gives up on the run, ends the attempt
// at once, and discards the run's late result when the pool returns it.
static void
stop_run(broker *b, task *t, run *r)
{
	atomic_store(&r->cancelled, true);
	if (r->h->mode == HANDLER_POOL) {
		run *stub = calloc(1, sizeof(*stub));
		if (stub == NULL) {
			return; // it ends when the worker returns, as usual
		}
		run_timer_stop(r);
		stub->t_start   = r->t_start;
		stub->timed_out = r->timed_out;
		stub->h         = r->h;
		r->owner        = NULL;
		t->run          = stub;
		end_attempt(b, t, stub);
	} else if (r->h->cancel != NULL) {
		r->h->cancel(r);
	}
}

static void
attempt_timeout(uv_timer_t *timer)
{
	run  *r = timer->data;
	task *t = r->owner;

	run_timer_stop(r);
	if (t == NULL || r->finished) {
		return;
	}
	r->timed_out = true;
	log_info("task %" PRIu64 ": attempt %u timed out after %u ms", t->id,
	    t->attempts, t->timeout_ms);
	stop_run(r->ctx, t, r);
}

static void
pool_job_run(pool_job *job)
{
	run *r = (run *) job;

	(void) r->h->start(r);
}

// launch starts the handler of a task whose attempt is now counted.
static void
launch(broker *b, task *t)
{
	const handler *h = handlers_find(t->handler, strlen(t->handler));
	run           *r;

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		// Handled as an interrupted attempt: back to pending, refunded.
		log_err("task %" PRIu64 ": no memory to start it", t->id);
		slot_free(b, t);
		t->attempts--;
		task_set_state(b, t, TB_STATE_PENDING);
		write_task(b, t, W_REQUEUE, NULL, 0, NULL);
		schedule(b, t);
		return;
	}
	r->task_id     = t->id;
	r->attempt     = t->attempts;
	r->payload     = t->payload;
	r->payload_len = t->payload_len;
	r->loop        = &b->loop;
	r->h           = h;
	r->done        = on_run_done;
	r->owner       = t;
	r->ctx         = b;
	r->t_start     = util_mono_us();
	atomic_init(&r->cancelled, false);
	t->run = r;
	events_publish(b->ev, "start", t, t->state, t->attempts, 0);
	if (t->timeout_ms > 0 && (r->timer = malloc(sizeof(uv_timer_t))) != NULL) {
		uv_timer_init(&b->loop, r->timer);
		r->timer->data = r;
		uv_timer_start(r->timer, attempt_timeout, t->timeout_ms, 0);
	}

	if (h->mode == HANDLER_POOL) {
		r->job.fn = pool_job_run;
		pool_submit(b->pl, &r->job); // the pool has r until it is done
		return;
	}
	if (h->start(r) != TB_OK) {
		if (!r->failed) {
			run_set_error(r, "handler %s could not start", h->name);
		}
		end_attempt(b, t, r);
	}
	// r may be freed here already (the handler finished at once).
}

// start_attempt counts a new attempt and queues that write; the handler
// runs once the write has committed.
static void
start_attempt(broker *b, task *t)
{
	if (handlers_find(t->handler, strlen(t->handler)) == NULL) {
		// A handler that existed when the task was accepted is gone
		// (e.g. a plugin was removed). It cannot run anywhere.
		task_set_state(b, t, TB_STATE_DEAD);
		free(t->error);
		t->error       = strdup("unknown handler");
		t->finished_at = util_now_us();
		b->completed++;
		write_task(b, t, W_END, "dead", 0, NULL);
		log_warn("task %" PRIu64 ": handler '%s' is not registered; "
		         "task is dead",
		    t->id, t->handler);
		return;
	}
	task_set_state(b, t, TB_STATE_RUNNING);
	t->attempts++;
	t->started_at = util_now_us();
	t->starting   = true;
	b->running++;
	if (t->pool) {
		b->running_pool++;
	}
	write_task(b, t, W_START, NULL, 0, NULL);
}

static void
dispatch(broker *b)
{
	task *t;

	b->need_dispatch = false;
	if (b->phase != PHASE_RUNNING) {
		return;
	}
	while (b->running < (uint32_t) b->cfg->max_running &&
	    b->running_pool < (uint32_t) b->cfg->workers &&
	    (t = sched_pop(&b->ready_pool)) != NULL) {
		start_attempt(b, t);
	}
	while (b->running < (uint32_t) b->cfg->max_running &&
	    (t = sched_pop(&b->ready)) != NULL) {
		start_attempt(b, t);
	}
}

static void
due_fired(uv_timer_t *timer)
{
	broker *b   = timer->data;
	int64_t now = util_now_us();
	task   *t;

	while ((t = sched_peek(&b->due)) != NULL && t->run_at <= now) {
		sched_remove(&b->due, t);
		if (sched_push(heap_of(b, t, now), t) != 0) {
			log_err("task %" PRIu64 ": no memory to schedule it",
			    t->id);
		}
	}
	b->need_dispatch = true;
}

// arm_due keeps the one timer set for the earliest delayed task.
static void
arm_due(broker *b)
{
	task   *t = sched_peek(&b->due);
	int64_t delay;

	if (t == NULL || b->phase != PHASE_RUNNING) {
		uv_timer_stop(&b->due_timer);
		return;
	}
	delay = (t->run_at - util_now_us() + 999) / 1000;
	uv_timer_start(&b->due_timer, due_fired,
	    delay > 0 ? (uint64_t) delay : 0, 0);
}

static void
prepare_cb(uv_prepare_t *p)
{
	broker *b = p->data;

	if (b->need_dispatch) {
		dispatch(b);
	}
	arm_due(b);
}

// ---- waiters ---------------------------------------------------------------

static void
waiter_closed(uv_handle_t *h)
{
	free(h->data);
}

static void
waiter_unlink(waiter *w)
{
	if (w->prev != NULL) {
		w->prev->next = w->next;
	} else {
		w->t->waiters = w->next;
	}
	if (w->next != NULL) {
		w->next->prev = w->prev;
	}
	uv_timer_stop(&w->timer);
	uv_close((uv_handle_t *) &w->timer, waiter_closed);
}

static void
waiter_timeout(uv_timer_t *timer)
{
	waiter       *w = timer->data;
	tbp_task_info ti;

	task_info(w->t, &ti);
	reply_task(w->req, &ti, true);
	waiter_unlink(w);
}

static void
waiters_wake(broker *b, task *t)
{
	tbp_task_info ti;

	(void) b;
	task_info(t, &ti);
	while (t->waiters != NULL) {
		waiter *w = t->waiters;
		reply_task(w->req, &ti, false);
		waiter_unlink(w);
	}
}

// waiters_fail answers every waiter with code (at shutdown).
static void
waiters_fail(broker *b, int code)
{
	task *t;
	task *tmp;

	HASH_ITER(hh, b->by_id, t, tmp)
	{
		while (t->waiters != NULL) {
			waiter *w = t->waiters;
			reply_error(w->req, code, NULL);
			waiter_unlink(w);
		}
	}
}

// ---- submit ----------------------------------------------------------------

static void
submit_ctx_free(submit_ctx *sc)
{
	free(sc->ids);
	free(sc->dup);
	free(sc->tasks);
	free(sc->recs);
	free(sc->recp);
	free(sc->dup_ids);
	free(sc);
}

static void
submit_part_done(submit_ctx *sc)
{
	if (--sc->parts > 0) {
		return;
	}
	if (sc->rv != TB_OK) {
		reply_error(sc->req, sc->rv, NULL);
	} else {
		msgpack_sbuffer_clear(&sc->req->out);
		if (tbp_enc_rep_submit(&sc->req->out, sc->req->req.req_id,
		        sc->ids, sc->dup, sc->n) != TB_OK) {
			reply_error(sc->req, TB_ENOMEM, NULL);
		} else {
			srv_reply(sc->req);
		}
	}
	submit_ctx_free(sc);
}

// ackwaits_release answers the duplicates parked on t: with id on success,
// with the error otherwise.
static void
ackwaits_release(task *t, uint64_t id, int rv)
{
	ackwait *a;

	while ((a = t->ackwaits) != NULL) {
		t->ackwaits = a->next;
		if (rv == TB_OK) {
			a->sc->ids[a->idx] = id;
		} else {
			a->sc->rv = rv;
		}
		submit_part_done(a->sc);
		free(a);
	}
}

static task *
task_from_in(broker *b, const tbp_task_in *in, int64_t now)
{
	task *t;

	if ((t = calloc(1, sizeof(*t))) == NULL) {
		return (NULL);
	}
	memcpy(t->sid, in->sid.p, SCHED_SID_LEN);
	t->queue   = in->queue.n > 0 ? tbp_bytes_dup(in->queue)
	                             : strdup("default");
	t->handler = tbp_bytes_dup(in->handler);
	if (in->payload.n > 0 && (t->payload = malloc(in->payload.n)) != NULL) {
		memcpy(t->payload, in->payload.p, in->payload.n);
		t->payload_len = in->payload.n;
	}
	if (t->queue == NULL || t->handler == NULL ||
	    (in->payload.n > 0 && t->payload == NULL)) {
		task_free(t);
		return (NULL);
	}
	t->id           = b->next_id++;
	t->priority     = in->priority;
	t->state        = TB_STATE_PENDING;
	t->max_attempts = in->max_attempts > 0 ? in->max_attempts : 1;
	t->timeout_ms   = in->timeout_ms;
	t->created_at   = now;
	t->run_at       = now + (int64_t) in->delay_ms * 1000;
	task_set_handler_mode(t);
	return (t);
}

static void
rec_view(store_rec *r, const task *t)
{
	memset(r, 0, sizeof(*r));
	r->id = t->id;
	memcpy(r->sid, t->sid, STORE_SID_LEN);
	r->queue        = t->queue;
	r->handler      = t->handler;
	r->payload      = t->payload;
	r->payload_len  = t->payload_len;
	r->priority     = t->priority;
	r->state        = t->state;
	r->max_attempts = t->max_attempts;
	r->timeout_ms   = t->timeout_ms;
	r->run_at       = t->run_at;
	r->created_at   = t->created_at;
}

static int
handle_submit(broker *b, srv_req *req)
{
	const tbp_req *in  = &req->req;
	int64_t        now = util_now_us();
	submit_ctx    *sc;
	wop           *w;

	if (b->phase != PHASE_RUNNING) {
		return (TB_ESHUTTINGDOWN);
	}
	// All or nothing: check every task before creating any.
	for (uint32_t i = 0; i < in->ntasks; i++) {
		if (handlers_find((const char *) in->tasks[i].handler.p,
		        in->tasks[i].handler.n) == NULL) {
			log_warn("submit req %" PRIu64 ": task %u: unknown "
			         "handler '%.*s'",
			    in->req_id, i, (int) in->tasks[i].handler.n,
			    (const char *) in->tasks[i].handler.p);
			return (TB_ENOHANDLER);
		}
	}
	if ((sc = calloc(1, sizeof(*sc))) == NULL) {
		return (TB_ENOMEM);
	}
	sc->req   = req;
	sc->n     = in->ntasks;
	sc->ids   = calloc(in->ntasks, sizeof(*sc->ids));
	sc->dup   = calloc(in->ntasks, sizeof(*sc->dup));
	sc->tasks = calloc(in->ntasks, sizeof(*sc->tasks));
	sc->recs  = calloc(in->ntasks, sizeof(*sc->recs));
	sc->recp  = calloc(in->ntasks, sizeof(*sc->recp));
	sc->dup_ids = calloc(in->ntasks, sizeof(*sc->dup_ids));
	w           = wop_alloc(W_SUBMIT, NULL);
	if (sc->ids == NULL || sc->dup == NULL || sc->tasks == NULL ||
	    sc->recs == NULL || sc->recp == NULL || sc->dup_ids == NULL ||
	    w == NULL) {
		free(w);
		submit_ctx_free(sc);
		return (TB_ENOMEM);
	}
	sc->parts = 1; // the insert op, which also covers earlier inserts
	for (uint32_t i = 0; i < in->ntasks; i++) {
		const tbp_task_in *ti = &in->tasks[i];
		task              *t;
		HASH_FIND(hh_sid, b->by_sid, ti->sid.p, SCHED_SID_LEN, t);
		if (t != NULL) {
			// A second copy (nng's REQ resends after a reconnect).
			sc->dup[i] = true;
			sc->ids[i] = t->id;
			if (!t->durable) {
				ackwait *a = calloc(1, sizeof(*a));
				if (a == NULL) {
					sc->rv = TB_ENOMEM;
					continue;
				}
				a->sc       = sc;
				a->idx      = i;
				a->next     = t->ackwaits;
				t->ackwaits = a;
				sc->parts++;
			}
			continue;
		}
		if ((t = task_from_in(b, ti, now)) == NULL) {
			sc->rv = TB_ENOMEM;
			continue;
		}
		task_index(b, t);
		sc->ids[i] = t->id;
		rec_view(&sc->recs[sc->nrecs], t);
		sc->recp[sc->nrecs]  = &sc->recs[sc->nrecs];
		sc->tasks[sc->nrecs] = t;
		sc->nrecs++;
	}
	// Even with nothing new to insert the op goes through the writer:
	// its completion proves that every earlier insert has committed.
	w->sc          = sc;
	w->op.kind     = STORE_OP_INSERT;
	w->op.recs     = sc->recp;
	w->op.nrecs    = sc->nrecs;
	w->op.dup_ids  = sc->dup_ids;
	if (sc->nrecs == 0) {
		w->op.kind = STORE_OP_BARRIER;
	}
	store_submit(b->st, &w->op);
	return (REPLY_LATER);
}

static void
submit_committed(broker *b, wop *w)
{
	submit_ctx *sc = w->sc;

	for (uint32_t i = 0; i < sc->nrecs; i++) {
		task *t = sc->tasks[i];
		if (w->op.rv != TB_OK) {
			// Nothing of the batch is stored: forget the tasks.
			ackwaits_release(t, 0, w->op.rv);
			sc->rv = w->op.rv;
			task_unindex(b, t);
			task_free(t);
			continue;
		}
		if (sc->dup_ids[i] != 0) {
			// Stored by an earlier run of the broker.
			for (uint32_t j = 0; j < sc->n; j++) {
				if (sc->ids[j] == t->id) {
					sc->ids[j] = sc->dup_ids[i];
					sc->dup[j] = true;
				}
			}
			ackwaits_release(t, sc->dup_ids[i], TB_OK);
			task_unindex(b, t);
			task_free(t);
			continue;
		}
		t->durable = true;
		b->counts[TB_STATE_PENDING]++;
		b->submitted++;
		ackwaits_release(t, t->id, TB_OK);
		schedule(b, t);
	}
	if (w->op.rv != TB_OK) {
		log_err("submit req %" PRIu64 ": store failed; %u task(s) "
		        "refused",
		    sc->req->req.req_id, sc->nrecs);
	}
	submit_part_done(sc);
}

// ---- other ops -------------------------------------------------------------

static int
handle_ping(broker *b, srv_req *req)
{
	(void) b;
	return (tbp_enc_rep_ping(&req->out, req->req.req_id, TB_VERSION_STR,
	    (uint64_t) getpid()));
}

static int
handle_status(broker *b, srv_req *req)
{
	tbp_task_info ti;
	store_rec    *r;
	task         *t = task_find(b, req->req.id);
	int           rv;

	if (t != NULL && t->durable) {
		task_info(t, &ti);
		return (tbp_enc_rep_task(&req->out, req->req.op,
		    req->req.req_id, &ti, false));
	}
	if (t != NULL) {
		return (TB_ENOTFOUND); // not accepted yet
	}
	if ((rv = store_get(b->st, req->req.id, &r)) != TB_OK) {
		return (rv);
	}
	rec_info(r, &ti);
	rv = tbp_enc_rep_task(&req->out, req->req.op, req->req.req_id, &ti,
	    false);
	store_rec_free(r);
	return (rv);
}

static int
handle_wait(broker *b, srv_req *req)
{
	task   *t = task_find(b, req->req.id);
	waiter *w;
	int64_t ms = req->req.timeout_ms;

	if (t == NULL || !t->durable) {
		// Not in memory: it has ended (or never existed).
		return (handle_status(b, req));
	}
	if (ms < 0 || ms > WAIT_MAX_MS) {
		ms = WAIT_MAX_MS;
	}
	if (ms == 0) {
		tbp_task_info ti;
		task_info(t, &ti);
		return (tbp_enc_rep_task(
		    &req->out, req->req.op, req->req.req_id, &ti, true));
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		return (TB_ENOMEM);
	}
	w->req = req;
	w->t   = t;
	w->b   = b;
	uv_timer_init(&b->loop, &w->timer);
	w->timer.data = w;
	w->next       = t->waiters;
	if (t->waiters != NULL) {
		t->waiters->prev = w;
	}
	t->waiters = w;
	uv_timer_start(&w->timer, waiter_timeout, (uint64_t) ms, 0);
	return (REPLY_LATER);
}

static int
handle_cancel(broker *b, srv_req *req)
{
	task *t = task_find(b, req->req.id);
	int   rv;

	if (t == NULL || !t->durable) {
		// Not in memory: ended, or unknown.
		if ((rv = handle_status(b, req)) == TB_OK) {
			msgpack_sbuffer_clear(&req->out);
			return (TB_ESTATE);
		}
		return (rv);
	}
	if (t->state == TB_STATE_RUNNING || t->heap == SCHED_NONE) {
		return (TB_ESTATE);
	}
	sched_remove(t->heap == SCHED_DUE ? &b->due
	    : t->pool                     ? &b->ready_pool
	                                  : &b->ready,
	    t);
	task_set_state(b, t, TB_STATE_CANCELLED);
	t->finished_at = util_now_us();
	free(t->error);
	t->error = strdup("cancelled");
	b->completed++;
	log_info("task %" PRIu64 ": cancelled", t->id);
	write_task(b, t, W_END, "cancelled", 0, req);
	return (REPLY_LATER);
}

// list_overlay replaces stored fields with the loop's newer ones for tasks
// it still holds (their latest state may not be committed yet).
static int
handle_list(broker *b, srv_req *req)
{
	store_rec    **recs = NULL;
	size_t         n    = 0;
	tbp_task_info *infos;
	uint32_t       limit = req->req.limit;
	size_t         bytes = 0;
	char          *queue = NULL;
	int            rv;

	if (limit == 0) {
		limit = 100;
	}
	if (limit > TBP_MAX_LIST) {
		limit = TBP_MAX_LIST;
	}
	if (req->req.queue.n > 0 &&
	    (queue = tbp_bytes_dup(req->req.queue)) == NULL) {
		return (TB_ENOMEM);
	}
	rv = store_list(b->st, queue, req->req.state, req->req.after_id, limit,
	    &recs, &n);
	free(queue);
	if (rv != TB_OK) {
		return (rv);
	}
	if ((infos = calloc(n > 0 ? n : 1, sizeof(*infos))) == NULL) {
		rv = TB_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		task *t = task_find(b, recs[i]->id);
		if (t != NULL && t->durable) {
			task_info(t, &infos[i]);
		} else {
			rec_info(recs[i], &infos[i]);
		}
		bytes += infos[i].result.n + infos[i].error.n;
		if (bytes > LIST_BYTES_MAX && i > 0) {
			n = i; // the client pages on with after_id
			break;
		}
	}
	rv = tbp_enc_rep_tasks(&req->out, req->req.req_id, infos, (uint32_t) n);
	free(infos);
out:
	for (size_t i = 0; i < n; i++) {
		store_rec_free(recs[i]);
	}
	free(recs);
	return (rv);
}

static int
handle_stats(broker *b, srv_req *req)
{
	tbp_stats st;

	memset(&st, 0, sizeof(st));
	st.pending   = b->counts[TB_STATE_PENDING];
	st.running   = b->counts[TB_STATE_RUNNING];
	st.done      = b->counts[TB_STATE_DONE];
	st.failed    = b->counts[TB_STATE_FAILED];
	st.dead      = b->counts[TB_STATE_DEAD];
	st.cancelled = b->counts[TB_STATE_CANCELLED];
	st.submitted = b->submitted;
	st.completed = b->completed;
	st.uptime_ms = (uint64_t) (util_mono_us() - b->start_mono) / 1000;
	st.workers   = (uint32_t) b->cfg->workers;
	st.pid       = (uint32_t) getpid();
	return (tbp_enc_rep_stats(&req->out, req->req.req_id, &st));
}

static int
handle_shutdown(broker *b, srv_req *req)
{
	int rv = tbp_enc_rep_empty(&req->out, req->req.op, req->req.req_id);

	if (rv == TB_OK) {
		srv_reply(req);
		begin_shutdown(b, "shutdown requested by a client");
		return (REPLY_LATER); // already replied
	}
	return (rv);
}

typedef int (*op_handler)(broker *, srv_req *);

// ops maps each TBP_OPS entry to its handler.
static const op_handler ops[] = {
	[TBP_OP_PING]     = handle_ping,
	[TBP_OP_SUBMIT]   = handle_submit,
	[TBP_OP_STATUS]   = handle_status,
	[TBP_OP_WAIT]     = handle_wait,
	[TBP_OP_CANCEL]   = handle_cancel,
	[TBP_OP_LIST]     = handle_list,
	[TBP_OP_STATS]    = handle_stats,
	[TBP_OP_SHUTDOWN] = handle_shutdown,
};

_Static_assert(sizeof(ops) / sizeof(ops[0]) == TBP_OP_COUNT,
    "every op in TBP_OPS needs a handler");

// broker_handle is the dispatcher: decode result in, one reply out. It is
// the only place that turns an error code into an error reply.
static void
broker_handle(srv_req *req, void *arg)
{
	broker *b = arg;
	int     rv;

	if (req->decode_rv != TB_OK) {
		log_warn("request %s (op %u, req %" PRIu64 ", %zu bytes): %s",
		    req->req.have_envelope ? tbp_op_name(req->req.op) : "?",
		    req->req.op, req->req.req_id, req->raw_len,
		    tbp_err_message(req->decode_rv));
		reply_error(req, req->decode_rv, NULL);
		return;
	}
	msgpack_sbuffer_clear(&req->out);
	rv = ops[req->req.op](b, req);
	if (rv == REPLY_LATER) {
		return;
	}
	if (rv != TB_OK) {
		if (rv != TB_ENOTFOUND && rv != TB_ESTATE) {
			log_warn("request %s (req %" PRIu64 "): %s",
			    tbp_op_name(req->req.op), req->req.req_id,
			    tbp_err_message(rv));
		}
		reply_error(req, rv, NULL);
		return;
	}
	srv_reply(req);
}

// ---- store and pool completions ---------------------------------------------

static void finish_closing(broker *b);

static void
op_committed(broker *b, wop *w)
{
	task *t = w->t;

	if (w->op.rv != TB_OK && w->kind != W_SUBMIT) {
		log_err("task %" PRIu64 ": store could not record state %s; "
		        "the last stored state applies after a restart",
		    t != NULL ? t->id : 0,
		    t != NULL ? util_state_name((int) w->op.state) : "-");
	}
	switch (w->kind) {
	case W_SUBMIT:
		submit_committed(b, w);
		break;
	case W_START:
		t->writes--;
		t->starting = false;
		if (b->phase != PHASE_RUNNING) {
			// Shutdown began before the handler could start: the
			// attempt never ran, so it is refunded.
			slot_free(b, t);
			t->attempts--;
			task_set_state(b, t, TB_STATE_PENDING);
			write_task(b, t, W_REQUEUE, NULL, 0, NULL);
			check_drained(b);
			break;
		}
		launch(b, t);
		break;
	case W_END:
	case W_REQUEUE:
		t->writes--;
		if (w->event != NULL) {
			events_publish(b->ev, w->event, t, w->ev_state,
			    w->ev_attempt, w->ev_dur);
		}
		if (w->req != NULL) {
			tbp_task_info ti;
			task_info(t, &ti);
			reply_task(w->req, &ti, false);
		}
		task_maybe_forget(b, t);
		break;
	case W_FINISH:
		finish_closing(b);
		break;
	}
	free(w);
}

static void
store_async_cb(uv_async_t *a)
{
	broker   *b = a->data;
	store_op *op;
	store_op *next;

	for (op = store_take_done(b->st); op != NULL; op = next) {
		next = op->next;
		op_committed(b, (wop *) op->arg);
	}
}

static void
pool_async_cb(uv_async_t *a)
{
	broker   *b = a->data;
	pool_job *j;
	pool_job *next;

	for (j = pool_take_done(b->pl); j != NULL; j = next) {
		next = j->next;
		on_run_done((run *) j);
	}
}

static void
wake_store(void *arg)
{
	uv_async_send(arg);
}

// wake_pool is the pool's notify. A worker abandoned at shutdown may finish
// after the loop has closed its async; it must not touch it then.
static void
wake_pool(void *arg)
{
	broker *b = arg;

	if (!atomic_load(&b->pool_gone)) {
		uv_async_send(&b->pool_async);
	}
}

// ---- shutdown ------------------------------------------------------------

static void
close_handle(uv_handle_t *h)
{
	if (h->loop != NULL && !uv_is_closing(h)) {
		uv_close(h, NULL);
	}
}

// stop_threads stops the pool and the store writer (committing whatever is
// still queued). Idempotent.
static void
stop_threads(broker *b)
{
	pool_job *unrun = NULL;

	if (b->pl != NULL) {
		if (pool_stop(b->pl, 1000, &unrun) == 0) {
			pool_close(b->pl);
		} else {
			// A blocking handler ignored its cancel flag; its thread
			// ends with the process.
			log_warn("pool: a worker is still busy; leaving it");
		}
		b->pl = NULL;
		atomic_store(&b->pool_gone, true);
	}
	for (pool_job *j = unrun; j != NULL;) {
		pool_job *next = j->next;
		run_free((run *) j); // abandoned runs the pool never started
		j = next;
	}
	if (b->st != NULL && !b->st_stopped) {
		store_stop(b->st);
		b->st_stopped = true;
	}
}

static void
close_walk(uv_handle_t *h, void *arg)
{
	(void) arg;
	close_handle(h);
}

static void
linger_tick(uv_timer_t *timer)
{
	broker *b = timer->data;

	if (srv_sending(b->sv) > 0 && ++b->linger_ticks * 10 < LINGER_MS) {
		return;
	}
	uv_timer_stop(timer);
	srv_close(b->sv);
	b->sv = NULL;
	events_close(b->ev);
	b->ev = NULL;
	// Stop the threads that post to the asyncs before closing those.
	stop_threads(b);
	close_handle((uv_handle_t *) &b->sigterm);
	close_handle((uv_handle_t *) &b->sigint);
	close_handle((uv_handle_t *) &b->due_timer);
	close_handle((uv_handle_t *) &b->shutdown_timer);
	close_handle((uv_handle_t *) &b->linger_timer);
	close_handle((uv_handle_t *) &b->prepare);
	close_handle((uv_handle_t *) &b->store_async);
	close_handle((uv_handle_t *) &b->pool_async);
	// uv_run returns once these close callbacks have run.
}

// finish_closing runs when every write queued before it has committed.
static void
finish_closing(broker *b)
{
	task  shutdown_task;
	char  empty[1] = "";

	b->phase = PHASE_CLOSING;
	waiters_fail(b, TB_ESHUTTINGDOWN);
	memset(&shutdown_task, 0, sizeof(shutdown_task));
	shutdown_task.queue   = empty;
	shutdown_task.handler = empty;
	events_publish(b->ev, "shutdown", &shutdown_task, 0, 0, 0);
	log_info("shutdown: all writes committed; %" PRIu64
	         " task(s) left pending for the next start",
	    b->counts[TB_STATE_PENDING] + b->counts[TB_STATE_FAILED]);
	// Let the last replies leave before the socket closes.
	b->linger_ticks = 0;
	uv_timer_start(&b->linger_timer, linger_tick, 10, 10);
}

static void
finish(broker *b)
{
	wop *w;

	if (b->phase >= PHASE_FINISHING) {
		return;
	}
	b->phase = PHASE_FINISHING;
	uv_timer_stop(&b->shutdown_timer);
	if ((w = wop_alloc(W_FINISH, NULL)) == NULL) {
		finish_closing(b); // the store flushes at store_stop anyway
		return;
	}
	w->op.kind = STORE_OP_BARRIER;
	store_submit(b->st, &w->op);
}

static void
check_drained(broker *b)
{
	if (b->phase == PHASE_DRAINING && b->running == 0) {
		finish(b);
	}
}

// cancel_running ends every attempt still running at the shutdown
// deadline; each goes back to pending without spending its attempt.
static void
shutdown_deadline(uv_timer_t *timer)
{
	broker *b = timer->data;
	task   *t;
	task   *tmp;
	int     n = 0;

	if (b->phase != PHASE_DRAINING) {
		return;
	}
	if (b->running > 0 && uv_timer_get_repeat(timer) == 0) {
		HASH_ITER(hh, b->by_id, t, tmp)
		{
			run *r = t->run;
			if (r == NULL) {
				continue;
			}
			n++;
			t->requeue = true;
			atomic_store(&r->cancelled, true);
			stop_run(b, t, r);
		}
		log_info("shutdown: timeout; cancelled %d running task(s)", n);
		// Cancelled loop attempts end within moments; if one does not,
		// stop waiting after a grace period.
		uv_timer_start(timer, shutdown_deadline, FINISH_GRACE_MS,
		    FINISH_GRACE_MS);
		return;
	}
	if (b->running > 0) {
		log_warn("shutdown: %u attempt(s) did not end after cancel; "
		         "they count as interrupted",
		    b->running);
	}
	finish(b);
}

static void
begin_shutdown(broker *b, const char *why)
{
	if (b->phase != PHASE_RUNNING) {
		return;
	}
	b->phase = PHASE_DRAINING;
	uv_timer_stop(&b->due_timer);
	log_info("shutdown: %s; %u task(s) running, waiting up to %d s", why,
	    b->running, b->cfg->shutdown_timeout);
	uv_timer_start(&b->shutdown_timer, shutdown_deadline,
	    (uint64_t) b->cfg->shutdown_timeout * 1000, 0);
	check_drained(b);
}

static void
signal_cb(uv_signal_t *s, int signum)
{
	broker *b = s->data;

	if (b->phase == PHASE_DRAINING && uv_timer_get_repeat(
	                                       &b->shutdown_timer) == 0) {
		// A second signal skips the rest of the grace time.
		log_info("shutdown: signal %d again; cancelling now", signum);
		uv_timer_start(&b->shutdown_timer, shutdown_deadline, 0, 0);
		return;
	}
	begin_shutdown(b, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

// ---- open / run / close ----------------------------------------------------

static int
recover_cb(void *arg, store_rec *r)
{
	broker *b = arg;
	task   *t;

	if ((t = calloc(1, sizeof(*t))) == NULL) {
		store_rec_free(r);
		return (TB_ENOMEM);
	}
	// Take over the record's memory.
	t->id = r->id;
	memcpy(t->sid, r->sid, SCHED_SID_LEN);
	t->queue        = r->queue;
	t->handler      = r->handler;
	t->payload      = r->payload;
	t->payload_len  = r->payload_len;
	t->priority     = r->priority;
	t->state        = r->state;
	t->attempts     = r->attempts;
	t->max_attempts = r->max_attempts;
	t->timeout_ms   = r->timeout_ms;
	t->run_at       = r->run_at;
	t->created_at   = r->created_at;
	t->started_at   = r->started_at;
	t->finished_at  = r->finished_at;
	t->result       = r->result;
	t->result_len   = r->result_len;
	t->error        = r->error;
	t->durable      = true;
	free(r);
	task_index(b, t);
	task_set_handler_mode(t);
	if (sched_push(heap_of(b, t, util_now_us()), t) != 0) {
		return (TB_ENOMEM);
	}
	return (TB_OK);
}

int
broker_open(broker **bp, const config *cfg)
{
	broker *b;
	char   *path = NULL;
	int     rv;

	if ((b = calloc(1, sizeof(*b))) == NULL) {
		return (TB_ENOMEM);
	}
	b->cfg = cfg;
	sched_heapq_init(&b->ready, SCHED_READY);
	sched_heapq_init(&b->ready_pool, SCHED_READY);
	sched_heapq_init(&b->due, SCHED_DUE);
	b->start_mono = util_mono_us();
	if ((rv = uv_loop_init(&b->loop)) != 0) {
		log_err("loop: init: %s", uv_strerror(rv));
		free(b);
		return (TB_ESYSTEM);
	}

	if (asprintf(&path, "%s/taskbroker.db", cfg->data_dir) < 0) {
		rv = TB_ENOMEM;
		goto fail;
	}
	if ((rv = store_open(&b->st, path, cfg->durability)) != TB_OK) {
		goto fail;
	}
	{
		uint64_t max_id = 0;
		if ((rv = store_recover(b->st, &max_id, b->counts, recover_cb,
		         b)) != TB_OK) {
			log_err("store: recovery of %s failed", path);
			goto fail;
		}
		b->next_id = max_id + 1;
		log_info("store: %s: %" PRIu64 " task(s) to run from an "
		         "earlier start, next id %" PRIu64,
		    path, (uint64_t) HASH_CNT(hh, b->by_id), b->next_id);
	}

	uv_async_init(&b->loop, &b->store_async, store_async_cb);
	uv_async_init(&b->loop, &b->pool_async, pool_async_cb);
	uv_timer_init(&b->loop, &b->due_timer);
	uv_timer_init(&b->loop, &b->shutdown_timer);
	uv_timer_init(&b->loop, &b->linger_timer);
	uv_prepare_init(&b->loop, &b->prepare);
	uv_signal_init(&b->loop, &b->sigterm);
	uv_signal_init(&b->loop, &b->sigint);
	b->store_async.data = b->pool_async.data = b;
	b->due_timer.data = b->shutdown_timer.data = b->linger_timer.data = b;
	b->prepare.data = b->sigterm.data = b->sigint.data = b;
	b->handles_up                                      = true;

	if ((rv = store_start(b->st, wake_store, &b->store_async)) != TB_OK) {
		goto fail;
	}
	if ((rv = pool_open(&b->pl, cfg->workers, wake_pool, b)) != TB_OK) {
		goto fail;
	}
	if ((rv = events_open(&b->ev, cfg->events)) != TB_OK) {
		goto fail;
	}
	if ((rv = srv_open(&b->sv, &b->loop, cfg->listen, broker_handle, b)) !=
	    TB_OK) {
		goto fail;
	}
	uv_prepare_start(&b->prepare, prepare_cb);
	uv_signal_start(&b->sigterm, signal_cb, SIGTERM);
	uv_signal_start(&b->sigint, signal_cb, SIGINT);
	b->need_dispatch = true;
	free(path);
	*bp = b;
	return (TB_OK);
fail:
	free(path);
	b->exit_code = 1;
	broker_close(b);
	return (rv);
}

int
broker_run(broker *b)
{
	log_info("taskbrokerd %s ready: requests on %s, events on %s, pid %d",
	    TB_VERSION_STR, b->cfg->listen, b->cfg->events, (int) getpid());
	uv_run(&b->loop, UV_RUN_DEFAULT);
	return (b->exit_code);
}

void
broker_close(broker *b)
{
	task *t;
	task *tmp;

	if (b == NULL) {
		return;
	}
	// Close all, stop all, then free.
	if (b->sv != NULL) {
		srv_close(b->sv);
		b->sv = NULL;
	}
	events_close(b->ev);
	b->ev = NULL;
	stop_threads(b);
	if (b->handles_up) {
		uv_walk(&b->loop, close_walk, NULL);
		uv_run(&b->loop, UV_RUN_DEFAULT);
	}
	// Anything the store completed after the loop stopped is ours.
	if (b->st != NULL) {
		store_op *op = store_take_done(b->st);
		while (op != NULL) {
			store_op *next = op->next;
			wop      *w    = op->arg;
			if (w->kind == W_SUBMIT) {
				submit_ctx_free(w->sc);
			}
			free(w);
			op = next;
		}
	}
	store_close(b->st);
	(void) uv_loop_close(&b->loop);
	// The sid index first: clearing it reads its head task.
	HASH_CLEAR(hh_sid, b->by_sid);
	HASH_ITER(hh, b->by_id, t, tmp)
	{
		ackwait *a;
		while ((a = t->ackwaits) != NULL) {
			t->ackwaits = a->next;
			free(a);
		}
		if (t->run != NULL && t->run->h->mode != HANDLER_POOL) {
			free(t->run->timer); // closed by the walk above
			run_free(t->run);
		}
		HASH_DELETE(hh, b->by_id, t);
		task_free(t);
	}
	sched_heapq_fini(&b->ready);
	sched_heapq_fini(&b->ready_pool);
	sched_heapq_fini(&b->due);
	free(b);
}
