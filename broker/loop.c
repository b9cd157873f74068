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

#include <tbtime.h>

#include "events.h"
#include "handler_http.h"
#include "handler_sqlite.h"
#include "handlers.h"
#include "log.h"
#include "plugins.h"
#include "pool.h"
#include "task.h"
#include "server.h"
#include "store.h"
#include "util.h"

#define WAIT_MAX_MS 3600000LL        // a wait lasts an hour at most
#define LIST_BYTES_MAX (4u << 20)    // results carried in one list reply
#define FINISH_GRACE_MS 5000         // for cancelled attempts to end
#define LINGER_MS 1000               // for the last replies to go out
#define REPLY_LATER 1000             // an op handler keeps the request
#define PRUNE_BATCH 500              // rows one prune op deletes at most
#define PRUNE_EVERY_MS 1000
#define RETRY_MAX 100000             // tasks one retry request revives
#define CATCH_UP_MAX 1000            // missed due times fired per pass

enum broker_phase {
	PHASE_RUNNING   = 0,
	PHASE_DRAINING  = 1, // running attempts may finish
	PHASE_FINISHING = 2, // waiting for the last writes
	PHASE_CLOSING   = 3, // sockets closing
};

enum wop_kind {
	W_SUBMIT = 0,
	W_START,   // attempt counted; start the handler when committed
	W_END,     // an attempt ended, or a cancel
	W_REQUEUE, // back to pending, attempt refunded (shutdown)
	W_FINISH,  // barrier: everything before it has committed
	W_REPLY,   // reply to req once committed (pause, retry, schedules)
	W_PURGE,   // a delete; adjust the counts by what it removed
	W_PRUNE,   // a background delete of expired ended tasks
	W_SCHED,   // a schedule's state; nothing to do when committed
	W_REINSERT, // a retried task's row, in case a delete took it
};

// queue is one named queue: its settings, its ready tasks and its figures.
// Queues are created on first use and live as long as the broker.
typedef struct queue {
	char       *name;
	bool        paused;
	uint32_t    concurrency; // 0: no limit
	uint64_t    max_pending; // 0: no limit
	uint32_t    max_attempts;
	uint32_t    timeout_ms;
	int64_t     backoff_us;
	int64_t     backoff_max_us;
	sched_heapq ready;      // loop-handler tasks that may start
	sched_heapq ready_pool; // pool-handler tasks that may start
	uint64_t    counts[TB_STATE_CANCELLED + 1];
	uint32_t    running;
	uint64_t    inflight; // accepted, insert not yet committed
	uint32_t    forever;
	uint32_t    crashloop;
	uint64_t    scratch; // over_limit's count of new tasks
	int64_t     ring_sec[60]; // tasks done per second, last minute
	uint32_t    ring_n[60];
	UT_hash_handle hh;
} queue;

// periodic is one periodic schedule; sc holds its definition and state.
typedef struct schedule {
	store_sched   *sc;
	tbt_cron       cron;
	UT_hash_handle hh;
} periodic;

// drainer is a drain request waiting for a queue (or all) to empty.
typedef struct drainer {
	srv_req        *req;
	char           *queue; // NULL: every queue
	struct broker  *b;
	uv_timer_t      timer;
	struct drainer *next;
	struct drainer *prev;
} drainer;

// multi_ctx gathers a request that waits for several store ops (purge
// over many queues, retry of many tasks).
typedef struct multi_ctx {
	srv_req *req;
	uint32_t parts;
	uint64_t count;
	int      rv;
} multi_ctx;

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
	bool       *existing;   // the key matched an unfinished task
	const char *sched_name; // set when a schedule fired it (no req)
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
	multi_ctx  *mc;     // W_PURGE, W_REPLY parts
	queue      *q;      // W_PURGE, W_PRUNE
	uint64_t   *ids;    // W_PURGE by ids: owned
	store_sched *sc_own; // W_SCHED: a copy owned by the op
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
	bool          st_stopped;
	atomic_bool   pool_gone; // the pool no longer wakes the loop

	uv_timer_t    sched_timer;
	uv_timer_t    prune_timer;

	task       *by_id;  // uthash, hh
	task       *by_sid; // uthash, hh_sid
	task       *by_key; // uthash, hh_key
	queue      *queues; // uthash, hh
	periodic   *scheds; // uthash, hh
	drainer    *drainers;
	sched_heapq due;
	uint64_t    inflight;   // accepted, insert not yet committed
	uint32_t    prunes;     // prune ops in flight
	bool        prune_more; // the last pass hit its limit
	bool        check_drain;
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

// ---- queues ---------------------------------------------------------------

// queue_get returns the queue named name, creating it with the settings of
// its [queue NAME] section (or the broker-wide ones) on first use. NULL
// only when out of memory.
static queue *
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
	q->timeout_ms   = (uint32_t) QSET(timeout_ms, cfg->timeout_ms);
	q->backoff_us   = QSET(retry_backoff_ms, cfg->retry_backoff_ms) * 1000LL;
	q->backoff_max_us =
	    QSET(retry_backoff_max_ms, cfg->retry_backoff_max_ms) * 1000LL;
#undef QSET
	sched_heapq_init(&q->ready, SCHED_READY);
	sched_heapq_init(&q->ready_pool, SCHED_READY);
	HASH_ADD_KEYPTR(hh, b->queues, q->name, strlen(q->name), q);
	return (q);
}

static void
queue_free(queue *q)
{
	sched_heapq_fini(&q->ready);
	sched_heapq_fini(&q->ready_pool);
	free(q->name);
	free(q);
}

// queue_note_done counts a task that ended done, for "done in the last
// minute".
static void
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

// queue_waiting is how many of q's tasks wait to run (backpressure counts
// these, and the inserts not yet committed).
static uint64_t
queue_waiting(const queue *q)
{
	return (q->counts[TB_STATE_PENDING] + q->counts[TB_STATE_FAILED] +
	    q->inflight);
}

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
	free(t->key);
	free(t);
}

static task *
task_find(broker *b, uint64_t id)
{
	task *t;

	HASH_FIND(hh, b->by_id, &id, sizeof(id), t);
	return (t);
}

static task *
task_find_key(broker *b, const char *key, size_t len)
{
	task *t;

	HASH_FIND(hh_key, b->by_key, key, len, t);
	return (t);
}

static void
task_key_unindex(broker *b, task *t)
{
	if (t->key_indexed) {
		HASH_DELETE(hh_key, b->by_key, t);
		t->key_indexed = false;
	}
}

static void
task_index(broker *b, task *t)
{
	HASH_ADD(hh, b->by_id, id, sizeof(t->id), t);
	HASH_ADD(hh_sid, b->by_sid, sid, SCHED_SID_LEN, t);
	if (t->key != NULL && !util_state_final((int) t->state) &&
	    task_find_key(b, t->key, strlen(t->key)) == NULL) {
		HASH_ADD_KEYPTR(hh_key, b->by_key, t->key, strlen(t->key), t);
		t->key_indexed = true;
	}
}

static void
task_unindex(broker *b, task *t)
{
	HASH_DELETE(hh, b->by_id, t);
	HASH_DELETE(hh_sid, b->by_sid, t);
	task_key_unindex(b, t);
}

// task_set_state moves t to state, keeping the broker's and its queue's
// figures. A task that ends leaves the key index: its key may be used
// again.
static void
task_set_state(broker *b, task *t, uint32_t state)
{
	b->counts[t->state]--;
	t->q->counts[t->state]--;
	t->state = state;
	b->counts[state]++;
	t->q->counts[state]++;
	if (util_state_final((int) state)) {
		task_key_unindex(b, t);
		if (t->forever) {
			t->q->forever--;
			if (t->crashloop) {
				t->q->crashloop--;
				t->crashloop = false;
			}
		}
	}
	b->check_drain = true;
}

// heap_of returns the heap a waiting task belongs in: the due heap until
// its run_at, then its queue's ready heap of its handler's kind. Pool tasks
// wait in their own heap so that they start only when a worker is free
// (and so are reported running only while one runs them), without holding
// up loop tasks behind them.
static sched_heapq *
heap_of(broker *b, const task *t, int64_t now)
{
	if (t->run_at > now) {
		return (&b->due);
	}
	return (t->pool ? &t->q->ready_pool : &t->q->ready);
}

// heap_remove takes a waiting task out of whichever heap holds it.
static void
heap_remove(broker *b, task *t)
{
	if (t->heap == SCHED_DUE) {
		sched_remove(&b->due, t);
	} else if (t->heap == SCHED_READY) {
		sched_remove(t->pool ? &t->q->ready_pool : &t->q->ready, t);
	}
}

// slot_free gives back the running slot of a task whose attempt ended or
// never started.
static void
slot_free(broker *b, const task *t)
{
	b->running--;
	t->q->running--;
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
	ti->run_at       = t->run_at;
	ti->timeout_ms   = t->timeout_ms;
	ti->forever      = t->forever;
	ti->key          = tbp_str(t->key);
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
	ti->run_at       = r->run_at;
	ti->timeout_ms   = r->timeout_ms;
	ti->forever      = r->forever;
	ti->key          = tbp_str(r->key);
}

// task_from_rec builds a loop record from a stored row, taking over the
// row's memory (r is freed). NULL when out of memory (r is freed too).
static task *
task_from_rec(broker *b, store_rec *r)
{
	task *t;

	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->q = queue_get(b, r->queue)) == NULL) {
		free(t);
		store_rec_free(r);
		return (NULL);
	}
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
	t->key          = r->key;
	t->forever      = r->forever;
	t->durable      = true;
	free(r);
	task_set_handler_mode(t);
	return (t);
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
// if any, is published once the write has committed. Returns the op (to
// attach more context), or NULL when out of memory.
static wop *
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
		return (NULL);
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
	return (w);
}

// ---- attempts --------------------------------------------------------------

static void
run_free(run *r)
{
	if (r->h != NULL && r->h->mode == HANDLER_POOL) {
		// A pool run owns a copy of the payload (see launch).
		free((void *) r->payload);
	}
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

// jitter returns a random number in [0, 1) for backoff jitter.
static double
jitter(int64_t now)
{
	uint32_t rnd = 0;

	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) < 0) {
		rnd = (uint32_t) now; // no entropy yet: jitter is a nicety
	}
	return (rnd / 4294967296.0);
}

// forever_restart puts a forever task back to pending after a run ended,
// however it ended. Quick restarts back off exponentially; a run of at
// least forever-reset resets the backoff. crashloop-restarts restarts
// within crashloop-window mark it as crash looping (in events and stats)
// until a run lasts long enough.
static void
forever_restart(broker *b, task *t, uint64_t dur_us, int64_t now)
{
	const config *cfg  = b->cfg;
	int64_t       mono = util_mono_us();
	int64_t       delay;

	if ((int64_t) dur_us >= cfg->forever_reset_ms * 1000LL) {
		t->quick_restarts = 0;
		if (t->crashloop) {
			t->crashloop = false;
			t->q->crashloop--;
		}
	} else {
		t->quick_restarts++;
	}
	if (t->window_start == 0 ||
	    mono - t->window_start > cfg->crashloop_window_ms * 1000LL) {
		t->window_start    = mono;
		t->window_restarts = 0;
	}
	t->window_restarts++;
	delay = t->quick_restarts == 0
	    ? 0
	    : sched_backoff_us(t->quick_restarts,
	          cfg->forever_backoff_ms * 2000LL, // equal jitter halves it
	          cfg->forever_backoff_max_ms * 2000LL, jitter(now));
	task_set_state(b, t, TB_STATE_PENDING);
	t->run_at = now + delay;
	if (!t->crashloop &&
	    t->window_restarts >= (uint32_t) cfg->crashloop_restarts) {
		t->crashloop = true;
		t->q->crashloop++;
		log_warn("task %" PRIu64 ": forever task is crash looping: %u "
		         "restarts within %ld ms",
		    t->id, t->window_restarts, cfg->crashloop_window_ms);
		events_publish(b->ev, "crashloop", t, t->state, t->attempts, 0);
	}
	write_task(b, t, W_END, "restart", dur_us, NULL);
	schedule(b, t);
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

	if (t->cancelling) {
		// A cancel stopped it: it ends here, whatever it was.
		t->cancelling = false;
		free(t->error);
		t->error = strdup("cancelled");
		task_set_state(b, t, TB_STATE_CANCELLED);
		t->finished_at = now;
		b->completed++;
		write_task(b, t, W_END, "cancelled", dur, NULL);
		log_info("task %" PRIu64 ": cancelled while running", t->id);
	} else if (t->forever) {
		forever_restart(b, t, dur, now);
	} else if (!r->failed) {
		task_set_state(b, t, TB_STATE_DONE);
		t->finished_at = now;
		b->completed++;
		queue_note_done(t->q, now);
		write_task(b, t, W_END, "done", dur, NULL);
	} else if (t->attempts < t->max_attempts && !r->no_retry) {
		task_set_state(b, t, TB_STATE_FAILED);
		t->run_at = now + sched_backoff_us(t->attempts, t->q->backoff_us,
		                      t->q->backoff_max_us, jitter(now));
		write_task(b, t, W_END, "retry", dur, NULL);
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
		r->h->cancel(r, r->h->hdata);
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
	events_publish(((broker *) r->ctx)->ev, "timeout", t, t->state,
	    t->attempts, (uint64_t) (util_mono_us() - r->t_start));
	stop_run(r->ctx, t, r);
}

static void
pool_job_run(pool_job *job)
{
	run *r = (run *) job;

	if (r->h->run(r, r->h->hdata) != 0 && !r->failed) {
		run_set_error(r, "handler %s failed", r->h->name);
	}
}

// launch starts the handler of a task whose attempt is now counted.
static void
launch(broker *b, task *t)
{
	const handler *h = handlers_find(t->handler, strlen(t->handler));
	run           *r;
	uint8_t       *pcopy = NULL;

	// A pool run gets its own copy of the payload: a worker may still
	// read it after the loop gave up on the run (timeout, cancel,
	// shutdown) and the task, with its payload, was freed.
	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (h->mode == HANDLER_POOL && t->payload_len > 0 &&
	        (pcopy = malloc(t->payload_len)) == NULL)) {
		free(r);
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
	if (pcopy != NULL) {
		memcpy(pcopy, t->payload, t->payload_len);
		r->payload = pcopy;
	}
	r->loop        = &b->loop;
	r->h           = h;
	r->done        = on_run_done;
	r->owner       = t;
	r->ctx         = b;
	r->timeout_ms  = t->timeout_ms;
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
	if (h->run(r, h->hdata) != TB_OK) {
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
	t->q->running++;
	if (t->pool) {
		b->running_pool++;
	}
	write_task(b, t, W_START, NULL, 0, NULL);
}

// queue_can_start says whether q may start another task now.
static bool
queue_can_start(const queue *q)
{
	return (!q->paused && (q->concurrency == 0 || q->running < q->concurrency));
}

static void
dispatch(broker *b)
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
		HASH_ITER(hh, b->queues, q, tmp)
		{
			if (b->running >= (uint32_t) b->cfg->max_running) {
				return;
			}
			if (!queue_can_start(q)) {
				continue;
			}
			if (b->running_pool < (uint32_t) b->cfg->workers &&
			    (t = sched_pop(&q->ready_pool)) != NULL) {
				start_attempt(b, t);
				progress = true;
			}
			if (queue_can_start(q) &&
			    b->running < (uint32_t) b->cfg->max_running &&
			    (t = sched_pop(&q->ready)) != NULL) {
				start_attempt(b, t);
				progress = true;
			}
		}
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

static void drainers_check(broker *b);
static void prune_pass(broker *b);

static void
prepare_cb(uv_prepare_t *p)
{
	broker *b = p->data;

	if (b->need_dispatch) {
		dispatch(b);
	}
	if (b->check_drain) {
		drainers_check(b);
	}
	if (b->prune_more && b->prunes == 0) {
		prune_pass(b);
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
static void drainers_fail(broker *b);

static void
waiters_fail(broker *b, int code)
{
	drainers_fail(b);
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
	free(sc->existing);
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
	if (sc->req == NULL) {
		; // a schedule fired it: nobody to answer
	} else if (sc->rv != TB_OK) {
		reply_error(sc->req, sc->rv, NULL);
	} else {
		msgpack_sbuffer_clear(&sc->req->out);
		if (tbp_enc_rep_submit2(&sc->req->out, sc->req->req.req_id,
		        sc->ids, sc->dup, sc->existing, sc->n) != TB_OK) {
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

// ackwait_add parks entry idx of sc on t until t's insert commits.
static int
ackwait_add(submit_ctx *sc, uint32_t idx, task *t)
{
	ackwait *a = calloc(1, sizeof(*a));

	if (a == NULL) {
		return (TB_ENOMEM);
	}
	a->sc       = sc;
	a->idx      = idx;
	a->next     = t->ackwaits;
	t->ackwaits = a;
	sc->parts++;
	return (TB_OK);
}

static task *
task_from_in(broker *b, queue *q, const tbp_task_in *in, int64_t now)
{
	task *t;

	if ((t = calloc(1, sizeof(*t))) == NULL) {
		return (NULL);
	}
	memcpy(t->sid, in->sid.p, SCHED_SID_LEN);
	t->q       = q;
	t->queue   = strdup(q->name);
	t->handler = tbp_bytes_dup(in->handler);
	if (in->payload.n > 0 && (t->payload = malloc(in->payload.n)) != NULL) {
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
	t->id           = b->next_id++;
	t->priority     = in->priority;
	t->state        = TB_STATE_PENDING;
	t->max_attempts = in->max_attempts > 0 ? in->max_attempts
	                                       : q->max_attempts;
	t->timeout_ms   = in->timeout_ms > 0 ? in->timeout_ms : q->timeout_ms;
	t->created_at   = now;
	t->run_at       = in->run_at > 0 ? in->run_at
	                                 : now + (int64_t) in->delay_ms * 1000;
	t->forever      = in->forever;
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
	r->key          = t->key;
	r->forever      = t->forever;
}

static queue *
queue_of_in(broker *b, const tbp_task_in *in)
{
	char   name[TBP_MAX_NAME + 1];
	size_t n = in->queue.n;

	if (n == 0) {
		return (queue_get(b, "default"));
	}
	if (n > TBP_MAX_NAME) {
		return (NULL); // the decoder refuses these; a stored one may not
	}
	memcpy(name, in->queue.p, n);
	name[n] = '\0';
	return (queue_get(b, name));
}

// task_known finds the task a submitted entry refers to: the same
// submission (a resent copy) or, with a key, an unfinished task with that
// key. *existingp says which.
static task *
task_known(broker *b, const tbp_task_in *ti, bool *existingp)
{
	task *t;

	*existingp = false;
	HASH_FIND(hh_sid, b->by_sid, ti->sid.p, SCHED_SID_LEN, t);
	if (t == NULL && ti->key.n > 0 &&
	    (t = task_find_key(b, (const char *) ti->key.p, ti->key.n)) !=
	        NULL) {
		*existingp = true;
	}
	return (t);
}

// over_limit checks backpressure before anything is created: the tasks of
// this request that would be new must fit under the global and the
// per-queue limits of waiting tasks. Returns TB_OK or TB_EQUEUEFULL.
static int
over_limit(broker *b, const tbp_task_in *tasks, uint32_t n, queue **qs)
{
	uint64_t fresh = 0;
	int      rv    = TB_OK;
	bool     existing;

	for (uint32_t i = 0; i < n; i++) {
		qs[i]->scratch = 0;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (task_known(b, &tasks[i], &existing) == NULL) {
			qs[i]->scratch++;
			fresh++;
		}
	}
	if (b->cfg->max_pending > 0 &&
	    b->counts[TB_STATE_PENDING] + b->counts[TB_STATE_FAILED] +
	            b->inflight + fresh >
	        (uint64_t) b->cfg->max_pending) {
		log_warn("submit: %" PRIu64 " task(s) refused: %" PRIu64
		         " already waiting (max-pending %ld)",
		    fresh, b->counts[TB_STATE_PENDING] + b->inflight,
		    b->cfg->max_pending);
		return (TB_EQUEUEFULL);
	}
	for (uint32_t i = 0; i < n && rv == TB_OK; i++) {
		queue *q = qs[i];
		if (q->max_pending > 0 && q->scratch > 0 &&
		    queue_waiting(q) + q->scratch > q->max_pending) {
			log_warn("submit: queue %s is full: %" PRIu64
			         " waiting, max-pending %" PRIu64,
			    q->name, queue_waiting(q), q->max_pending);
			rv = TB_EQUEUEFULL;
		}
	}
	return (rv);
}

// submit_tasks accepts n tasks: from a client's submit (req) or from a
// schedule (req NULL, sched_name set). All or nothing: every task is
// checked before any is created. The reply (or, for a schedule, the fired
// event) follows the commit.
static int
submit_tasks(broker *b, srv_req *req, const tbp_task_in *tasks, uint32_t n,
    const char *sched_name)
{
	int64_t     now = util_now_us();
	submit_ctx *sc;
	wop        *w;
	queue     **qs;
	int         rv;

	if (b->phase != PHASE_RUNNING) {
		return (TB_ESHUTTINGDOWN);
	}
	if ((qs = calloc(n, sizeof(*qs))) == NULL) {
		return (TB_ENOMEM);
	}
	for (uint32_t i = 0; i < n; i++) {
		if (handlers_find((const char *) tasks[i].handler.p,
		        tasks[i].handler.n) == NULL) {
			log_warn("submit: task %u: unknown handler '%.*s'", i,
			    (int) tasks[i].handler.n,
			    (const char *) tasks[i].handler.p);
			free(qs);
			return (TB_ENOHANDLER);
		}
		if ((qs[i] = queue_of_in(b, &tasks[i])) == NULL) {
			free(qs);
			return (TB_ENOMEM);
		}
	}
	if ((rv = over_limit(b, tasks, n, qs)) != TB_OK) {
		free(qs);
		return (rv);
	}
	if ((sc = calloc(1, sizeof(*sc))) == NULL) {
		free(qs);
		return (TB_ENOMEM);
	}
	sc->req        = req;
	sc->sched_name = sched_name;
	sc->n          = n;
	sc->ids        = calloc(n, sizeof(*sc->ids));
	sc->dup        = calloc(n, sizeof(*sc->dup));
	sc->existing   = calloc(n, sizeof(*sc->existing));
	sc->tasks      = calloc(n, sizeof(*sc->tasks));
	sc->recs       = calloc(n, sizeof(*sc->recs));
	sc->recp       = calloc(n, sizeof(*sc->recp));
	sc->dup_ids    = calloc(n, sizeof(*sc->dup_ids));
	w              = wop_alloc(W_SUBMIT, NULL);
	if (sc->ids == NULL || sc->dup == NULL || sc->existing == NULL ||
	    sc->tasks == NULL || sc->recs == NULL || sc->recp == NULL ||
	    sc->dup_ids == NULL || w == NULL) {
		free(w);
		free(qs);
		submit_ctx_free(sc);
		return (TB_ENOMEM);
	}
	sc->parts = 1; // the insert op, which also covers earlier inserts
	for (uint32_t i = 0; i < n; i++) {
		const tbp_task_in *ti = &tasks[i];
		bool               existing;
		task              *t = task_known(b, ti, &existing);
		if (t != NULL) {
			// A resent copy (nng's REQ resends after a reconnect),
			// or the key of an unfinished task: its id, nothing new.
			sc->dup[i]      = !existing;
			sc->existing[i] = existing;
			sc->ids[i]      = t->id;
			if (!t->durable && ackwait_add(sc, i, t) != TB_OK) {
				sc->rv = TB_ENOMEM;
			}
			continue;
		}
		if ((t = task_from_in(b, qs[i], ti, now)) == NULL) {
			sc->rv = TB_ENOMEM;
			continue;
		}
		task_index(b, t);
		t->q->inflight++;
		b->inflight++;
		sc->ids[i] = t->id;
		rec_view(&sc->recs[sc->nrecs], t);
		sc->recp[sc->nrecs]  = &sc->recs[sc->nrecs];
		sc->tasks[sc->nrecs] = t;
		sc->nrecs++;
	}
	free(qs);
	// Even with nothing new to insert the op goes through the writer:
	// its completion proves that every earlier insert has committed.
	w->sc         = sc;
	w->op.kind    = STORE_OP_INSERT;
	w->op.recs    = sc->recp;
	w->op.nrecs   = sc->nrecs;
	w->op.dup_ids = sc->dup_ids;
	if (sc->nrecs == 0) {
		w->op.kind = STORE_OP_BARRIER;
	}
	store_submit(b->st, &w->op);
	return (REPLY_LATER);
}

static int
handle_submit(broker *b, srv_req *req)
{
	return (submit_tasks(b, req, req->req.tasks, req->req.ntasks, NULL));
}

static void
submit_committed(broker *b, wop *w)
{
	submit_ctx *sc = w->sc;

	for (uint32_t i = 0; i < sc->nrecs; i++) {
		task *t = sc->tasks[i];
		t->q->inflight--;
		b->inflight--;
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
		t->q->counts[TB_STATE_PENDING]++;
		if (t->forever) {
			t->q->forever++;
		}
		b->submitted++;
		ackwaits_release(t, t->id, TB_OK);
		if (sc->sched_name != NULL) {
			events_publish(b->ev, "fired", t, t->state, 0, 0);
		}
		schedule(b, t);
	}
	if (w->op.rv != TB_OK) {
		log_err("submit: store failed; %u task(s) refused", sc->nrecs);
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

// waiter_add parks req on t until t ends (its final state committed) or
// ms pass; the reply is the task either way.
static int
waiter_add(broker *b, task *t, srv_req *req, int64_t ms)
{
	waiter *w;

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
	return (TB_OK);
}

static int
handle_wait(broker *b, srv_req *req)
{
	task   *t = task_find(b, req->req.id);
	int64_t ms = req->req.timeout_ms;
	int     rv;

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
	if ((rv = waiter_add(b, t, req, ms)) != TB_OK) {
		return (rv);
	}
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
	if (util_state_final((int) t->state)) {
		return (TB_ESTATE);
	}
	if (t->state == TB_STATE_RUNNING) {
		// Stop it as for a timeout; the reply waits for its end.
		if ((rv = waiter_add(b, t, req, WAIT_MAX_MS)) != TB_OK) {
			return (rv);
		}
		t->cancelling = true;
		log_info("task %" PRIu64 ": cancel requested while running",
		    t->id);
		if (t->run != NULL) {
			stop_run(b, t, t->run);
		} // else its start is being written: it is cancelled then
		return (REPLY_LATER);
	}
	if (t->heap == SCHED_NONE) {
		return (TB_ESTATE);
	}
	heap_remove(b, t);
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
	size_t         nout;
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
	{
		store_filter f;
		int64_t      now = util_now_us();
		char        *handler = NULL;
		if (req->req.handler.n > 0 &&
		    (handler = tbp_bytes_dup(req->req.handler)) == NULL) {
			free(queue);
			return (TB_ENOMEM);
		}
		memset(&f, 0, sizeof(f));
		f.queue    = queue;
		f.state    = req->req.state;
		f.handler  = handler;
		f.after_id = req->req.after_id;
		f.limit    = limit;
		if (req->req.min_age_ms > 0) {
			f.created_before = now - (int64_t) req->req.min_age_ms * 1000;
		}
		if (req->req.max_age_ms > 0) {
			f.created_after = now - (int64_t) req->req.max_age_ms * 1000;
		}
		rv = store_list2(b->st, &f, &recs, &n);
		free(handler);
	}
	free(queue);
	if (rv != TB_OK) {
		return (rv);
	}
	if ((infos = calloc(n > 0 ? n : 1, sizeof(*infos))) == NULL) {
		rv = TB_ENOMEM;
		goto out;
	}
	nout = n;
	for (size_t i = 0; i < n; i++) {
		task *t = task_find(b, recs[i]->id);
		if (t != NULL && t->durable) {
			task_info(t, &infos[i]);
		} else {
			rec_info(recs[i], &infos[i]);
		}
		bytes += infos[i].result.n + infos[i].error.n;
		if (bytes > LIST_BYTES_MAX && i > 0) {
			nout = i; // the client pages on with after_id
			break;
		}
	}
	// Every record is freed below, also those past nout.
	rv = tbp_enc_rep_tasks(
	    &req->out, req->req.req_id, infos, (uint32_t) nout);
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
	st.schedules = HASH_CNT(hh, b->scheds);
	{
		queue *q;
		queue *tmp;
		HASH_ITER(hh, b->queues, q, tmp)
		{
			st.forever += q->forever;
			st.crashloop += q->crashloop;
		}
	}
	return (tbp_enc_rep_stats(&req->out, req->req.req_id, &st));
}

// ---- admin ops: retry, pause, resume, drain, purge, queues --------------------

// multi_ctx_new starts gathering a request's store ops; the extra part is
// released by multi_ctx_seal once every op has been queued.
static multi_ctx *
multi_ctx_new(srv_req *req)
{
	multi_ctx *mc = calloc(1, sizeof(*mc));

	if (mc != NULL) {
		mc->req   = req;
		mc->parts = 1;
	}
	return (mc);
}

static void
multi_part_done(multi_ctx *mc, int rv, uint64_t count)
{
	if (rv != TB_OK) {
		mc->rv = rv;
	}
	mc->count += count;
	if (--mc->parts > 0) {
		return;
	}
	if (mc->rv != TB_OK) {
		reply_error(mc->req, mc->rv, NULL);
	} else {
		msgpack_sbuffer_clear(&mc->req->out);
		if (tbp_enc_rep_count(&mc->req->out, mc->req->req.op,
		        mc->req->req.req_id, mc->count) != TB_OK) {
			reply_error(mc->req, TB_ENOMEM, NULL);
		} else {
			srv_reply(mc->req);
		}
	}
	free(mc);
}

static void
multi_ctx_seal(multi_ctx *mc)
{
	multi_part_done(mc, TB_OK, 0);
}

// revive puts an ended (dead or cancelled) task back to pending with its
// attempts reset; the write is one part of mc.
// reinsert_op is an INSERT of one task with the room it needs.
typedef struct reinsert_op {
	wop        w; // first: freed as a wop
	store_rec  rec;
	store_rec *recp;
	uint64_t   dup;
} reinsert_op;

// reinsert queues the row of a task being retried again. The loop read
// the row from the store, but a prune or purge already queued may delete
// it before the retry's update lands; inserting it first (a no-op when
// the row is still there: same submission id) means the retried task is
// on disk whatever the order.
static void
reinsert(broker *b, task *t)
{
	reinsert_op *ri = calloc(1, sizeof(*ri));

	if (ri == NULL) {
		log_warn("task %" PRIu64 ": no memory to re-insert its row",
		    t->id);
		return;
	}
	ri->w.kind       = W_REINSERT;
	ri->w.t          = t;
	ri->w.op.arg     = &ri->w;
	rec_view(&ri->rec, t);
	ri->recp         = &ri->rec;
	ri->w.op.kind    = STORE_OP_INSERT;
	ri->w.op.recs    = &ri->recp;
	ri->w.op.nrecs   = 1;
	ri->w.op.dup_ids = &ri->dup;
	t->writes++;
	store_submit(b->st, &ri->w.op);
}

static void
revive(broker *b, task *t, multi_ctx *mc)
{
	int64_t now = util_now_us();
	wop    *w;

	task_set_state(b, t, TB_STATE_PENDING);
	if (t->forever) {
		t->q->forever++;
	}
	if (t->key != NULL && !t->key_indexed &&
	    task_find_key(b, t->key, strlen(t->key)) == NULL) {
		HASH_ADD_KEYPTR(hh_key, b->by_key, t->key, strlen(t->key), t);
		t->key_indexed = true;
	}
	t->attempts    = 0;
	t->run_at      = now;
	t->started_at  = 0;
	t->finished_at = 0;
	free(t->error);
	free(t->result);
	t->error      = NULL;
	t->result     = NULL;
	t->result_len = 0;
	mc->count++;
	reinsert(b, t);
	if ((w = write_task(b, t, W_END, NULL, 0, NULL)) != NULL) {
		// The op is only read by the writer; its context is ours.
		w->mc = mc;
		mc->parts++;
	}
	log_info("task %" PRIu64 ": retried by request", t->id);
	schedule(b, t);
}

static bool
retryable(uint32_t state)
{
	return (state == TB_STATE_DEAD || state == TB_STATE_CANCELLED);
}

static int
handle_retry(broker *b, srv_req *req)
{
	const tbp_req *in = &req->req;
	multi_ctx     *mc;
	char          *queue = NULL;
	int            state = in->state >= 0 ? in->state : TB_STATE_DEAD;
	uint64_t       after = 0;
	int            rv    = TB_OK;

	if (b->phase != PHASE_RUNNING) {
		return (TB_ESHUTTINGDOWN);
	}
	if (!in->have_id && !retryable((uint32_t) state)) {
		return (TB_EINVAL);
	}
	if ((mc = multi_ctx_new(req)) == NULL) {
		return (TB_ENOMEM);
	}
	if (in->have_id) {
		task      *t = task_find(b, in->id);
		store_rec *r;
		if (t != NULL) {
			rv = t->durable && retryable(t->state) ? TB_OK
			                                       : TB_ESTATE;
		} else if ((rv = store_get(b->st, in->id, &r)) == TB_OK) {
			if (!retryable(r->state)) {
				store_rec_free(r);
				rv = TB_ESTATE;
			} else if ((t = task_from_rec(b, r)) == NULL) {
				rv = TB_ENOMEM;
			} else {
				task_index(b, t);
			}
		}
		if (rv != TB_OK) {
			free(mc);
			return (rv);
		}
		revive(b, t, mc);
		multi_ctx_seal(mc);
		return (REPLY_LATER);
	}
	if (in->queue.n > 0 && (queue = tbp_bytes_dup(in->queue)) == NULL) {
		free(mc);
		return (TB_ENOMEM);
	}
	// Page through the store; every matching task has ended, so the
	// store has it, unless the loop still holds it (then skip it: its
	// final write is in flight and it will be picked up next time).
	while (mc->count < RETRY_MAX) {
		store_filter f;
		store_rec  **recs = NULL;
		size_t       n    = 0;
		memset(&f, 0, sizeof(f));
		f.queue    = queue;
		f.state    = state;
		f.after_id = after;
		f.limit    = 1000;
		if ((rv = store_list2(b->st, &f, &recs, &n)) != TB_OK || n == 0) {
			free(recs);
			break;
		}
		for (size_t i = 0; i < n; i++) {
			task *t;
			after = recs[i]->id;
			if (task_find(b, recs[i]->id) != NULL) {
				store_rec_free(recs[i]);
				continue;
			}
			if ((t = task_from_rec(b, recs[i])) == NULL) {
				rv = TB_ENOMEM;
				continue;
			}
			task_index(b, t);
			revive(b, t, mc);
		}
		free(recs);
		if (rv != TB_OK) {
			break;
		}
	}
	free(queue);
	if (rv != TB_OK) {
		mc->rv = rv;
	}
	multi_ctx_seal(mc);
	return (REPLY_LATER);
}

// queue_op_reply queues a write whose commit answers req with an empty ok.
static int
write_reply(broker *b, srv_req *req, store_op *tmpl, store_sched *own)
{
	wop *w = wop_alloc(W_REPLY, NULL);

	if (w == NULL) {
		store_sched_free(own);
		return (TB_ENOMEM);
	}
	w->op        = *tmpl;
	w->op.arg    = w;
	w->op.next   = NULL;
	w->req       = req;
	w->sc_own    = own;
	if (own != NULL) {
		w->op.sched = own;
		w->op.name  = own->name;
	}
	store_submit(b->st, &w->op);
	return (REPLY_LATER);
}

static int
handle_pause_resume(broker *b, srv_req *req)
{
	char     name[TBP_MAX_NAME + 1];
	queue   *q;
	store_op op;

	if (req->req.queue.n == 0 || req->req.queue.n > TBP_MAX_NAME) {
		return (TB_EINVAL);
	}
	memcpy(name, req->req.queue.p, req->req.queue.n);
	name[req->req.queue.n] = '\0';
	if ((q = queue_get(b, name)) == NULL) {
		return (TB_ENOMEM);
	}
	q->paused = req->req.op == TBP_OP_PAUSE;
	log_info("queue %s: %s", q->name, q->paused ? "paused" : "resumed");
	b->need_dispatch = true;
	b->check_drain   = true;
	memset(&op, 0, sizeof(op));
	op.kind   = STORE_OP_QUEUE_SET;
	op.queue  = q->name; // queues live as long as the broker
	op.paused = q->paused;
	return (write_reply(b, req, &op, NULL));
}

static bool
drained(broker *b, const char *name)
{
	queue *q;

	if (name == NULL) {
		return (b->counts[TB_STATE_PENDING] + b->counts[TB_STATE_FAILED] +
		        b->counts[TB_STATE_RUNNING] + b->inflight ==
		    0);
	}
	HASH_FIND_STR(b->queues, name, q);
	return (q == NULL || queue_waiting(q) + q->counts[TB_STATE_RUNNING] == 0);
}

static void
drainer_closed(uv_handle_t *h)
{
	drainer *d = h->data;

	free(d->queue);
	free(d);
}

static void
drainer_end(broker *b, drainer *d, bool timed_out)
{
	if (d->prev != NULL) {
		d->prev->next = d->next;
	} else {
		b->drainers = d->next;
	}
	if (d->next != NULL) {
		d->next->prev = d->prev;
	}
	if (d->req != NULL) {
		msgpack_sbuffer_clear(&d->req->out);
		(void) tbp_enc_rep_drain(&d->req->out, d->req->req.req_id,
		    timed_out);
		srv_reply(d->req);
	}
	uv_timer_stop(&d->timer);
	uv_close((uv_handle_t *) &d->timer, drainer_closed);
}

static void
drainer_timeout(uv_timer_t *timer)
{
	drainer *d = timer->data;

	drainer_end(d->b, d, true);
}

static void
drainers_check(broker *b)
{
	drainer *d = b->drainers;

	b->check_drain = false;
	while (d != NULL) {
		drainer *next = d->next;
		if (drained(b, d->queue)) {
			drainer_end(b, d, false);
		}
		d = next;
	}
}

// drainers_fail answers every drain request with shutting_down.
static void
drainers_fail(broker *b)
{
	while (b->drainers != NULL) {
		drainer *d = b->drainers;
		reply_error(d->req, TB_ESHUTTINGDOWN, NULL);
		d->req = NULL;
		drainer_end(b, d, true);
	}
}

static int
handle_drain(broker *b, srv_req *req)
{
	drainer *d;
	int64_t  ms   = req->req.timeout_ms;
	char    *name = NULL;

	if (req->req.queue.n > 0 &&
	    (name = tbp_bytes_dup(req->req.queue)) == NULL) {
		return (TB_ENOMEM);
	}
	if (drained(b, name) || ms == 0) {
		bool done = drained(b, name);
		free(name);
		return (tbp_enc_rep_drain(&req->out, req->req.req_id, !done));
	}
	if ((d = calloc(1, sizeof(*d))) == NULL) {
		free(name);
		return (TB_ENOMEM);
	}
	if (ms < 0 || ms > WAIT_MAX_MS) {
		ms = WAIT_MAX_MS;
	}
	d->req   = req;
	d->queue = name;
	d->b     = b;
	d->next  = b->drainers;
	if (b->drainers != NULL) {
		b->drainers->prev = d;
	}
	b->drainers = d;
	uv_timer_init(&b->loop, &d->timer);
	d->timer.data = d;
	uv_timer_start(&d->timer, drainer_timeout, (uint64_t) ms, 0);
	return (REPLY_LATER);
}

// purge_memory deletes waiting tasks (pending, or failed and waiting for a
// retry), which the loop holds, and returns how many went.
static int
purge_memory(broker *b, multi_ctx *mc, const char *qname, uint32_t state,
    int64_t before)
{
	uint64_t *ids = NULL;
	size_t    n = 0, cap = 0;
	task     *t;
	task     *tmp;
	wop      *w;

	HASH_ITER(hh, b->by_id, t, tmp)
	{
		if (t->state != state || !t->durable || t->heap == SCHED_NONE ||
		    t->writes > 0 || t->waiters != NULL || t->ackwaits != NULL ||
		    (qname != NULL && strcmp(t->queue, qname) != 0) ||
		    (before != 0 && t->created_at >= before)) {
			continue;
		}
		if (n == cap) {
			size_t    ncap = cap ? cap * 2 : 256;
			uint64_t *nids = realloc(ids, ncap * sizeof(*ids));
			if (nids == NULL) {
				break; // purge what we have
			}
			ids = nids;
			cap = ncap;
		}
		ids[n++] = t->id;
		heap_remove(b, t);
		b->counts[state]--;
		t->q->counts[state]--;
		if (t->forever) {
			t->q->forever--;
			if (t->crashloop) {
				t->q->crashloop--;
			}
		}
		task_unindex(b, t);
		task_free(t);
	}
	b->check_drain = true;
	if (n == 0) {
		free(ids);
		return (TB_OK);
	}
	if ((w = wop_alloc(W_PURGE, NULL)) == NULL) {
		// The tasks are gone from memory but not from the store; they
		// come back at the next start. Say so.
		log_err("purge: no memory to delete %zu task(s) from the store",
		    n);
		free(ids);
		return (TB_ENOMEM);
	}
	w->ids       = ids;
	w->op.kind   = STORE_OP_DELETE;
	w->op.ids    = ids;
	w->op.nids   = (uint32_t) n;
	w->mc        = mc;
	mc->count += n;
	mc->parts++;
	store_submit(b->st, &w->op);
	return (TB_OK);
}

static int
handle_purge(broker *b, srv_req *req)
{
	const tbp_req *in = &req->req;
	multi_ctx     *mc;
	char          *qname = NULL;
	int64_t        before = 0;
	queue         *q;
	queue         *tmp;
	int            rv     = TB_OK;

	if (in->state < 0 || in->state > TB_STATE_CANCELLED ||
	    in->state == TB_STATE_RUNNING) {
		return (TB_EINVAL); // running tasks are cancelled, not purged
	}
	if (in->queue.n > 0 && (qname = tbp_bytes_dup(in->queue)) == NULL) {
		return (TB_ENOMEM);
	}
	if (in->min_age_ms > 0) {
		before = util_now_us() - (int64_t) in->min_age_ms * 1000;
	}
	if ((mc = multi_ctx_new(req)) == NULL) {
		free(qname);
		return (TB_ENOMEM);
	}
	if (in->state == TB_STATE_PENDING || in->state == TB_STATE_FAILED) {
		rv = purge_memory(b, mc, qname, (uint32_t) in->state, before);
	} else {
		HASH_ITER(hh, b->queues, q, tmp)
		{
			wop *w;
			if ((qname != NULL && strcmp(q->name, qname) != 0) ||
			    q->counts[in->state] == 0) {
				continue;
			}
			if ((w = wop_alloc(W_PURGE, NULL)) == NULL) {
				rv = TB_ENOMEM;
				break;
			}
			w->q                 = q;
			w->mc                = mc;
			w->op.kind           = STORE_OP_DELETE;
			w->op.queue          = q->name;
			w->op.del_state      = in->state;
			w->op.created_before = before;
			mc->parts++;
			store_submit(b->st, &w->op);
		}
	}
	free(qname);
	if (rv != TB_OK) {
		mc->rv = rv;
	}
	log_info("purge: %s tasks of %s older than %" PRIu64 " ms",
	    util_state_name(in->state),
	    in->queue.n > 0 ? "one queue" : "every queue", in->min_age_ms);
	multi_ctx_seal(mc);
	return (REPLY_LATER);
}

// prune_pass deletes, in small batches, ended tasks whose retention has
// passed, one op per queue and final state, so no write holds the
// database for long. Runs every PRUNE_EVERY_MS, and again at once while
// a batch comes back full.
static void
prune_pass(broker *b)
{
	static const uint32_t finals[] = { TB_STATE_DONE, TB_STATE_DEAD,
		TB_STATE_CANCELLED };
	int64_t cutoff = util_now_us() - b->cfg->retention_ms * 1000LL;
	queue  *q;
	queue  *tmp;

	b->prune_more = false;
	if (b->cfg->retention_ms <= 0 || b->prunes > 0 ||
	    b->phase != PHASE_RUNNING) {
		return;
	}
	HASH_ITER(hh, b->queues, q, tmp)
	{
		for (size_t i = 0; i < 3; i++) {
			wop *w;
			if (q->counts[finals[i]] == 0 ||
			    (w = wop_alloc(W_PRUNE, NULL)) == NULL) {
				continue;
			}
			w->q                  = q;
			w->op.kind            = STORE_OP_DELETE;
			w->op.queue           = q->name;
			w->op.del_state       = (int32_t) finals[i];
			w->op.finished_before = cutoff;
			w->op.limit           = PRUNE_BATCH;
			b->prunes++;
			store_submit(b->st, &w->op);
		}
	}
}

static void
prune_tick(uv_timer_t *timer)
{
	prune_pass(timer->data);
}

static int
handle_queues(broker *b, srv_req *req)
{
	tbp_qstat *qs;
	uint32_t   n = 0;
	queue     *q;
	queue     *tmp;
	task      *t;
	task      *ttmp;
	int64_t    now = util_now_us();
	int        rv;

	if ((qs = calloc(HASH_CNT(hh, b->queues) + 1, sizeof(*qs))) == NULL) {
		return (TB_ENOMEM);
	}
	// Oldest waiting task per queue: one pass over the tasks in memory
	// (every waiting task is there); scratch holds its created_at.
	HASH_ITER(hh, b->queues, q, tmp)
	{
		q->scratch = 0;
	}
	HASH_ITER(hh, b->by_id, t, ttmp)
	{
		if ((t->state == TB_STATE_PENDING || t->state == TB_STATE_FAILED) &&
		    t->durable &&
		    (t->q->scratch == 0 || (uint64_t) t->created_at < t->q->scratch)) {
			t->q->scratch = (uint64_t) t->created_at;
		}
	}
	HASH_ITER(hh, b->queues, q, tmp)
	{
		tbp_qstat *s = &qs[n++];
		s->name      = tbp_str(q->name);
		s->pending   = q->counts[TB_STATE_PENDING];
		s->running   = q->counts[TB_STATE_RUNNING];
		s->failed    = q->counts[TB_STATE_FAILED];
		s->dead      = q->counts[TB_STATE_DEAD];
		s->done      = q->counts[TB_STATE_DONE];
		s->cancelled = q->counts[TB_STATE_CANCELLED];
		s->paused    = q->paused;
		s->concurrency   = q->concurrency;
		s->max_pending   = q->max_pending;
		s->done_last_min = queue_done_last_min(q, now);
		s->oldest_pending_ms =
		    q->scratch == 0 ? 0 : (uint64_t) (now - (int64_t) q->scratch) / 1000;
		s->forever   = q->forever;
		s->crashloop = q->crashloop;
		if (n == TBP_MAX_QUEUES) {
			break;
		}
	}
	rv = tbp_enc_rep_queues(&req->out, req->req.req_id, qs, n);
	free(qs);
	return (rv);
}

// ---- periodic schedules --------------------------------------------------------

static void
sched_free(periodic *s)
{
	store_sched_free(s->sc);
	free(s);
}

// sched_copy returns a deep copy of sc for a store op to own, or NULL.
static store_sched *
sched_copy(const store_sched *sc)
{
	store_sched *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		return (NULL);
	}
	*c         = *sc;
	c->name    = strdup(sc->name);
	c->handler = strdup(sc->handler);
	c->queue   = strdup(sc->queue);
	c->cron    = sc->cron != NULL ? strdup(sc->cron) : NULL;
	c->payload = NULL;
	if (sc->payload_len > 0 && (c->payload = malloc(sc->payload_len)) != NULL) {
		memcpy(c->payload, sc->payload, sc->payload_len);
	}
	if (c->name == NULL || c->handler == NULL || c->queue == NULL ||
	    (sc->cron != NULL && c->cron == NULL) ||
	    (sc->payload_len > 0 && c->payload == NULL)) {
		store_sched_free(c);
		return (NULL);
	}
	return (c);
}

// sched_write records s's current definition and state; req, if given, is
// answered once that has committed.
static int
sched_write(broker *b, periodic *s, srv_req *req)
{
	store_sched *copy = sched_copy(s->sc);
	store_op     op;
	wop         *w;

	if (copy == NULL) {
		return (TB_ENOMEM);
	}
	memset(&op, 0, sizeof(op));
	op.kind = STORE_OP_SCHED_PUT;
	if (req != NULL) {
		return (write_reply(b, req, &op, copy));
	}
	if ((w = wop_alloc(W_SCHED, NULL)) == NULL) {
		store_sched_free(copy);
		return (TB_ENOMEM);
	}
	w->op.kind  = STORE_OP_SCHED_PUT;
	w->op.sched = copy;
	w->sc_own   = copy;
	store_submit(b->st, &w->op);
	return (TB_OK);
}

// sched_next returns the first due time of s strictly after t_us.
static int64_t
sched_next(const periodic *s, int64_t due, int64_t t_us)
{
	return (sched_next_due((int64_t) s->sc->every_ms * 1000,
	    s->sc->cron != NULL ? &s->cron : NULL, due, t_us));
}

static void
sched_fire_one(broker *b, periodic *s, int64_t due)
{
	store_sched *sc = s->sc;
	tbp_task_in  in;
	uint8_t      sid[16];
	uint64_t     next = b->next_id;
	int          rv;

	memset(&in, 0, sizeof(in));
	sched_sid(sc->name, due, sid);
	in.sid          = (tbp_bytes) { sid, 16 };
	in.handler      = tbp_str(sc->handler);
	in.queue        = tbp_str(sc->queue);
	in.payload      = (tbp_bytes) { sc->payload, (uint32_t) sc->payload_len };
	in.priority     = sc->priority;
	in.max_attempts = sc->max_attempts;
	in.timeout_ms   = sc->timeout_ms;
	rv = submit_tasks(b, NULL, &in, 1, sc->name);
	if (rv != REPLY_LATER) {
		log_warn("schedule %s: due time %" PRId64 " not fired: %s",
		    sc->name, due, tbp_err_message(rv));
		return;
	}
	if (b->next_id != next) {
		sc->last_task = next; // the id the new task was given
	}
	sc->fired++;
	sc->last_at = due;
	log_info("schedule %s: fired task %" PRIu64, sc->name, sc->last_task);
}

static void sched_arm(broker *b);

// sched_fire fires every schedule that is due: once, however many due
// times were missed, or once per missed time (up to CATCH_UP_MAX) with
// catch_up.
static void
sched_fire(uv_timer_t *timer)
{
	broker   *b   = timer->data;
	int64_t   now = util_now_us();
	periodic *s;
	periodic *tmp;

	HASH_ITER(hh, b->scheds, s, tmp)
	{
		store_sched *sc = s->sc;
		int          n  = 0;
		if (sc->paused || sc->next_at > now || b->phase != PHASE_RUNNING) {
			continue;
		}
		do {
			int64_t due = sc->next_at;
			sched_fire_one(b, s, due);
			sc->next_at = sched_next(s, due, sc->catch_up ? due : now);
		} while (sc->catch_up && sc->next_at <= now &&
		    ++n < CATCH_UP_MAX);
		if (sched_write(b, s, NULL) != TB_OK) {
			log_err("schedule %s: no memory to record its state",
			    sc->name);
		}
	}
	sched_arm(b);
}

// sched_arm sets the one schedule timer for the earliest due time.
static void
sched_arm(broker *b)
{
	periodic *s;
	periodic *tmp;
	int64_t   first = INT64_MAX;
	int64_t   now   = util_now_us();

	HASH_ITER(hh, b->scheds, s, tmp)
	{
		if (!s->sc->paused && s->sc->next_at < first) {
			first = s->sc->next_at;
		}
	}
	if (first == INT64_MAX || b->phase != PHASE_RUNNING) {
		uv_timer_stop(&b->sched_timer);
		return;
	}
	uv_timer_start(&b->sched_timer, sched_fire,
	    first > now ? (uint64_t) ((first - now + 999) / 1000) : 0, 0);
}

// sched_load adds a stored or new schedule to the loop; it owns sc.
static int
sched_load(broker *b, store_sched *sc)
{
	periodic   *s;
	const char *why = NULL;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		store_sched_free(sc);
		return (TB_ENOMEM);
	}
	s->sc = sc;
	if (sc->cron != NULL && tbt_cron_parse(&s->cron, sc->cron, &why) != TB_OK) {
		log_err("schedule %s: bad cron '%s': %s; ignored", sc->name,
		    sc->cron, why != NULL ? why : "?");
		sched_free(s);
		return (TB_OK);
	}
	if (sc->cron == NULL && sc->every_ms == 0) {
		log_err("schedule %s: neither every nor cron; ignored", sc->name);
		sched_free(s);
		return (TB_OK);
	}
	HASH_ADD_KEYPTR(hh, b->scheds, sc->name, strlen(sc->name), s);
	return (TB_OK);
}

static int
sched_load_cb(void *arg, store_sched *sc)
{
	return (sched_load(arg, sc));
}

static int
handle_sched_add(broker *b, srv_req *req)
{
	const tbp_sched *in  = &req->req.sched;
	int64_t          now = util_now_us();
	store_sched     *sc;
	periodic        *s;
	periodic        *old;
	tbt_cron         cron;
	const char      *why = NULL;
	int              rv;

	if (handlers_find((const char *) in->handler.p, in->handler.n) ==
	    NULL) {
		return (TB_ENOHANDLER);
	}
	if (in->cron.n > 0) {
		char expr[TBP_MAX_CRON + 1];
		memcpy(expr, in->cron.p, in->cron.n);
		expr[in->cron.n] = '\0';
		if (tbt_cron_parse(&cron, expr, &why) != TB_OK) {
			log_warn("schedule_add: bad cron '%s': %s", expr, why);
			return (TB_EINVAL);
		}
	}
	if ((sc = calloc(1, sizeof(*sc))) == NULL) {
		return (TB_ENOMEM);
	}
	sc->name    = tbp_bytes_dup(in->name);
	sc->handler = tbp_bytes_dup(in->handler);
	sc->queue   = in->queue.n > 0 ? tbp_bytes_dup(in->queue)
	                              : strdup("default");
	sc->cron    = in->cron.n > 0 ? tbp_bytes_dup(in->cron) : NULL;
	if (in->payload.n > 0 && (sc->payload = malloc(in->payload.n)) != NULL) {
		memcpy(sc->payload, in->payload.p, in->payload.n);
		sc->payload_len = in->payload.n;
	}
	if (sc->name == NULL || sc->handler == NULL || sc->queue == NULL ||
	    (in->cron.n > 0 && sc->cron == NULL) ||
	    (in->payload.n > 0 && sc->payload == NULL)) {
		store_sched_free(sc);
		return (TB_ENOMEM);
	}
	sc->priority     = in->priority;
	sc->max_attempts = in->max_attempts;
	sc->timeout_ms   = in->timeout_ms;
	sc->every_ms     = in->cron.n > 0 ? 0 : in->every_ms;
	sc->catch_up     = in->catch_up;
	sc->paused       = in->paused;
	sc->created_at   = now;
	HASH_FIND_STR(b->scheds, sc->name, old);
	if (old != NULL) {
		// Replacing a definition keeps its history.
		sc->created_at = old->sc->created_at;
		sc->last_at    = old->sc->last_at;
		sc->fired      = old->sc->fired;
		sc->last_task  = old->sc->last_task;
		HASH_DEL(b->scheds, old);
		sched_free(old);
	}
	if ((rv = sched_load(b, sc)) != TB_OK) {
		return (rv);
	}
	// sched_load may have freed sc (a definition it ignores).
	HASH_FIND(hh, b->scheds, in->name.p, in->name.n, s);
	if (s == NULL) {
		return (TB_EINVAL);
	}
	if (s->sc->cron != NULL) {
		s->sc->next_at = tbt_cron_next(&s->cron, now);
	} else {
		s->sc->next_at = now + (int64_t) s->sc->every_ms * 1000;
	}
	log_info("schedule %s: %s, handler %s, queue %s", s->sc->name,
	    old != NULL ? "replaced" : "added", s->sc->handler, s->sc->queue);
	sched_arm(b);
	return (sched_write(b, s, req));
}

static void
sched_info(const periodic *s, tbp_sched *o)
{
	const store_sched *sc = s->sc;

	memset(o, 0, sizeof(*o));
	o->name         = tbp_str(sc->name);
	o->handler      = tbp_str(sc->handler);
	o->queue        = tbp_str(sc->queue);
	o->payload      = (tbp_bytes) { sc->payload, (uint32_t) sc->payload_len };
	o->priority     = sc->priority;
	o->max_attempts = sc->max_attempts;
	o->timeout_ms   = sc->timeout_ms;
	o->every_ms     = sc->every_ms;
	o->cron         = tbp_str(sc->cron);
	o->catch_up     = sc->catch_up;
	o->paused       = sc->paused;
	o->next_at      = sc->next_at;
	o->last_at      = sc->last_at;
	o->fired        = sc->fired;
	o->last_task    = sc->last_task;
}

static int
handle_sched_list(broker *b, srv_req *req)
{
	tbp_sched *list;
	uint32_t   n = 0;
	periodic  *s;
	periodic  *tmp;
	int        rv;

	if ((list = calloc(HASH_CNT(hh, b->scheds) + 1, sizeof(*list))) ==
	    NULL) {
		return (TB_ENOMEM);
	}
	HASH_ITER(hh, b->scheds, s, tmp)
	{
		if (n == TBP_MAX_SCHEDULES) {
			break;
		}
		sched_info(s, &list[n++]);
	}
	rv = tbp_enc_rep_scheds(&req->out, req->req.req_id, list, n);
	free(list);
	return (rv);
}

static periodic *
sched_find(broker *b, tbp_bytes name)
{
	periodic *s;

	HASH_FIND(hh, b->scheds, name.p, name.n, s);
	return (s);
}

static int
handle_sched_rm(broker *b, srv_req *req)
{
	periodic *s = sched_find(b, req->req.name);
	store_op  op;

	if (s == NULL) {
		return (TB_ENOTFOUND);
	}
	HASH_DEL(b->scheds, s);
	log_info("schedule %s: removed", s->sc->name);
	memset(&op, 0, sizeof(op));
	op.kind = STORE_OP_SCHED_DEL;
	// The op owns the removed definition until it has committed.
	store_sched *own = s->sc;
	free(s);
	sched_arm(b);
	return (write_reply(b, req, &op, own));
}

static int
handle_sched_pause(broker *b, srv_req *req)
{
	periodic *s   = sched_find(b, req->req.name);
	int64_t   now = util_now_us();

	if (s == NULL) {
		return (TB_ENOTFOUND);
	}
	s->sc->paused = req->req.paused;
	if (!s->sc->paused && !s->sc->catch_up && s->sc->next_at < now) {
		// Resumed: the time it was paused over is not made up.
		s->sc->next_at = sched_next(s, s->sc->next_at, now);
	}
	log_info("schedule %s: %s", s->sc->name,
	    s->sc->paused ? "paused" : "resumed");
	sched_arm(b);
	return (sched_write(b, s, req));
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
	[TBP_OP_PING]        = handle_ping,
	[TBP_OP_SUBMIT]      = handle_submit,
	[TBP_OP_STATUS]      = handle_status,
	[TBP_OP_WAIT]        = handle_wait,
	[TBP_OP_CANCEL]      = handle_cancel,
	[TBP_OP_LIST]        = handle_list,
	[TBP_OP_STATS]       = handle_stats,
	[TBP_OP_SHUTDOWN]    = handle_shutdown,
	[TBP_OP_RETRY]       = handle_retry,
	[TBP_OP_PAUSE]       = handle_pause_resume,
	[TBP_OP_RESUME]      = handle_pause_resume,
	[TBP_OP_DRAIN]       = handle_drain,
	[TBP_OP_PURGE]       = handle_purge,
	[TBP_OP_SCHED_ADD]   = handle_sched_add,
	[TBP_OP_SCHED_LIST]  = handle_sched_list,
	[TBP_OP_SCHED_RM]    = handle_sched_rm,
	[TBP_OP_SCHED_PAUSE] = handle_sched_pause,
	[TBP_OP_QUEUES]      = handle_queues,
};

_Static_assert(sizeof(ops) / sizeof(ops[0]) == TBP_OP_COUNT,
    "every op in TBP_OPS needs a handler");

// op_read_only says whether op answers at once without writing.
static bool
op_read_only(uint32_t op)
{
	switch (op) {
	case TBP_OP_PING:
	case TBP_OP_STATUS:
	case TBP_OP_LIST:
	case TBP_OP_STATS:
	case TBP_OP_SHUTDOWN:
	case TBP_OP_QUEUES:
	case TBP_OP_SCHED_LIST:
		return (true);
	default:
		return (false);
	}
}

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
	if (b->phase >= PHASE_FINISHING && !op_read_only(req->req.op)) {
		// The last writes are being flushed and the socket closes
		// soon: a request held now (wait, drain, cancel) or answered
		// after a commit would outlive the server's records.
		reply_error(req, TB_ESHUTTINGDOWN, NULL);
		return;
	}
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
static void multi_part_done(multi_ctx *mc, int rv, uint64_t count);

static void
op_committed(broker *b, wop *w)
{
	task *t = w->t;

	if (w->op.rv != TB_OK && t != NULL && w->kind != W_SUBMIT) {
		log_err("task %" PRIu64 ": store could not record state %s; "
		        "the last stored state applies after a restart",
		    t->id, util_state_name((int) w->op.state));
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
		if (t->cancelling) {
			// Cancelled while its start was being written: it
			// never ran, so the attempt is refunded.
			t->cancelling = false;
			slot_free(b, t);
			t->attempts--;
			task_set_state(b, t, TB_STATE_CANCELLED);
			t->finished_at = util_now_us();
			free(t->error);
			t->error = strdup("cancelled");
			b->completed++;
			write_task(b, t, W_END, "cancelled", 0, NULL);
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
	case W_REPLY:
		if (w->req != NULL) {
			if (w->op.rv != TB_OK) {
				reply_error(w->req, w->op.rv, NULL);
			} else if (w->op.kind == STORE_OP_SCHED_DEL &&
			    w->op.count == 0) {
				reply_error(w->req, TB_ENOTFOUND, NULL);
			} else {
				msgpack_sbuffer_clear(&w->req->out);
				(void) tbp_enc_rep_empty(&w->req->out,
				    w->req->req.op, w->req->req.req_id);
				srv_reply(w->req);
			}
		}
		break;
	case W_PURGE:
	case W_PRUNE:
		if (w->kind == W_PRUNE) {
			b->prunes--;
			if (w->op.count >= PRUNE_BATCH) {
				b->prune_more = true;
			}
		}
		if (w->op.nids == 0 && w->q != NULL) {
			// Rows deleted from the store only: take them off the
			// figures (in-memory purges were counted already).
			uint64_t n = w->op.count;
			uint32_t st = (uint32_t) w->op.del_state;
			n = n > w->q->counts[st] ? w->q->counts[st] : n;
			w->q->counts[st] -= n;
			b->counts[st] -= n > b->counts[st] ? b->counts[st] : n;
		}
		break;
	case W_SCHED:
		break;
	case W_REINSERT:
		t->writes--;
		break;
	}
	if (w->mc != NULL) {
		multi_part_done(w->mc, w->op.rv,
		    w->kind == W_PURGE && w->op.nids == 0 ? w->op.count : 0);
	}
	free(w->ids);
	store_sched_free(w->sc_own);
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
	{
		// Attempts that ignored their cancel: their timers must neither
		// keep the loop alive nor fire once the event socket is gone.
		task *t;
		task *tmp;
		HASH_ITER(hh, b->by_id, t, tmp)
		{
			if (t->run != NULL) {
				run_timer_stop(t->run);
			}
		}
	}
	srv_close(b->sv);
	b->sv = NULL;
	events_close(b->ev);
	b->ev = NULL;
	// Stop the threads that post to the asyncs before closing those.
	stop_threads(b);
	sqlite_handler_stop();
	http_handler_stop();
	handlers_stop();
	close_handle((uv_handle_t *) &b->sigterm);
	close_handle((uv_handle_t *) &b->sigint);
	close_handle((uv_handle_t *) &b->due_timer);
	close_handle((uv_handle_t *) &b->shutdown_timer);
	close_handle((uv_handle_t *) &b->linger_timer);
	close_handle((uv_handle_t *) &b->sched_timer);
	close_handle((uv_handle_t *) &b->prune_timer);
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

	if ((t = task_from_rec(b, r)) == NULL) {
		return (TB_ENOMEM);
	}
	task_index(b, t);
	if (t->forever) {
		t->q->forever++;
	}
	if (sched_push(heap_of(b, t, util_now_us()), t) != 0) {
		return (TB_ENOMEM);
	}
	return (TB_OK);
}

static int
queue_counts_cb(void *arg, const char *name, int state, uint64_t n)
{
	queue *q = queue_get(arg, name);

	if (q == NULL) {
		return (TB_ENOMEM);
	}
	if (state >= 0 && state <= TB_STATE_CANCELLED) {
		q->counts[state] = n;
	}
	return (TB_OK);
}

static int
queue_paused_cb(void *arg, const char *name, bool paused)
{
	queue *q = queue_get(arg, name);

	if (q == NULL) {
		return (TB_ENOMEM);
	}
	q->paused = paused;
	if (paused) {
		log_info("queue %s: paused (as it was left)", name);
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
	// Handlers first: built-ins, then sqlite and http, then plugins, so
	// a plugin cannot take a built-in's name. Any failure stops the start.
	if ((rv = handlers_init(&b->loop, cfg)) != TB_OK ||
	    (rv = sqlite_handler_init(cfg)) != TB_OK ||
	    (rv = http_handler_init(cfg)) != TB_OK ||
	    (rv = plugins_load(cfg)) != TB_OK) {
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
	if ((rv = store_queue_counts(b->st, queue_counts_cb, b)) != TB_OK ||
	    (rv = store_load_queues(b->st, queue_paused_cb, b)) != TB_OK ||
	    (rv = store_load_schedules(b->st, sched_load_cb, b)) != TB_OK) {
		log_err("store: cannot load queues and schedules of %s", path);
		goto fail;
	}


	uv_async_init(&b->loop, &b->store_async, store_async_cb);
	uv_async_init(&b->loop, &b->pool_async, pool_async_cb);
	uv_timer_init(&b->loop, &b->due_timer);
	uv_timer_init(&b->loop, &b->shutdown_timer);
	uv_timer_init(&b->loop, &b->linger_timer);
	uv_timer_init(&b->loop, &b->sched_timer);
	uv_timer_init(&b->loop, &b->prune_timer);
	b->sched_timer.data = b->prune_timer.data = b;
	uv_prepare_init(&b->loop, &b->prepare);
	uv_signal_init(&b->loop, &b->sigterm);
	uv_signal_init(&b->loop, &b->sigint);
	b->store_async.data = b->pool_async.data = b;
	b->due_timer.data = b->shutdown_timer.data = b->linger_timer.data = b;
	b->prepare.data = b->sigterm.data = b->sigint.data = b;

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
	uv_timer_start(&b->prune_timer, prune_tick, PRUNE_EVERY_MS,
	    PRUNE_EVERY_MS);
	sched_arm(b);
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
	sqlite_handler_stop();
	http_handler_stop();
	handlers_stop();
	// Whatever was opened on the loop (also on a failed start) closes
	// here, so the loop can be closed.
	uv_walk(&b->loop, close_walk, NULL);
	uv_run(&b->loop, UV_RUN_DEFAULT);
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
	handlers_fini();
	plugins_unload();
	// The secondary indexes first: clearing one reads its head task.
	HASH_CLEAR(hh_sid, b->by_sid);
	HASH_CLEAR(hh_key, b->by_key);
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
	sched_heapq_fini(&b->due);
	{
		queue    *q, *qtmp;
		periodic *sc, *stmp;
		HASH_ITER(hh, b->queues, q, qtmp)
		{
			HASH_DEL(b->queues, q);
			queue_free(q);
		}
		HASH_ITER(hh, b->scheds, sc, stmp)
		{
			HASH_DEL(b->scheds, sc);
			sched_free(sc);
		}
	}
	free(b);
}
