// shutdown.c: a graceful shutdown's phases, its deadline, and the one
// teardown sequence.
//
// DESIGN. SIGTERM, SIGINT or the shutdown op move the broker from RUNNING
// to DRAINING: submits are refused, nothing new starts, and running
// attempts get shutdown-timeout seconds. At the deadline what still runs
// is stopped and goes back to pending, its attempt refunded; a second
// signal moves the deadline to now. When nothing runs, FINISHING queues a
// barrier behind every write; when it commits, CLOSING answers every held
// request, publishes the final event and lets the last replies leave
// (LINGER_MS at most) before the teardown closes sockets, threads and
// handles, after which uv_run returns.
//
// Threads: loop thread only.

#include <inttypes.h>
#include <signal.h>
#include <string.h>

#include "brokerimpl.h"
#include "handlers/http.h"
#include "handlers/sqlite.h"
#include "log.h"

#define FINISH_GRACE_MS 5000 // for cancelled attempts to end
#define LINGER_MS 1000       // for the last replies to go out

static void
shutdown_close_handle(uv_handle_t *h)
{
	if (h->loop != NULL && !uv_is_closing(h)) {
		uv_close(h, NULL);
	}
}

// shutdown_stop_threads stops the pool and the store writer (committing
// whatever is still queued). Idempotent.
static void
shutdown_stop_threads(broker *b)
{
	pool_job *unrun = NULL;

	if (b->pl != NULL) {
		if (pool_stop(b->pl, 1000, &unrun) == 0) {
			pool_close(b->pl);
		} else {
			// A blocking handler ignored its cancel flag; its
			// thread ends with the process.
			log_warn("pool: a worker is still busy; leaving it");
		}
		b->pl = NULL;
		atomic_store(&b->pool_gone, true);
	}
	for (pool_job *j = unrun; j != NULL;) {
		pool_job *next = j->next;
		attempt_run_free(
		    (run *) j); // given-up runs the pool never ran
		j = next;
	}
	if (b->st != NULL && !b->st_stopped) {
		store_stop(b->st);
		b->st_stopped = true;
	}
}

void
shutdown_teardown(broker *b)
{
	srv_close(b->sv);
	b->sv = NULL;
	events_close(b->ev);
	b->ev = NULL;
	remote_close(b->rem); // after the listeners that used its TLS
	b->rem = NULL;
	// Stop the threads that post to the asyncs before closing those.
	shutdown_stop_threads(b);
	sqlite_handler_stop();
	http_handler_stop();
	handlers_stop();
}

static void
shutdown_linger_tick(uv_timer_t *timer)
{
	broker *b = timer->data;
	task   *t;
	task   *tmp;

	if (srv_sending(b->sv) > 0 && ++b->linger_ticks * 10 < LINGER_MS) {
		return;
	}
	uv_timer_stop(timer);
	// Attempts that ignored their cancel: their timers must neither keep
	// the loop alive nor fire once the event socket is gone.
	HASH_ITER (hh, b->by_id, t, tmp) {
		if (t->run != NULL) {
			attempt_timer_stop(t->run);
		}
		worker_job_quiet(t->wjob);
	}
	shutdown_teardown(b);
	{
		uv_handle_t *const own[] = {
			(uv_handle_t *) &b->sigterm,
			(uv_handle_t *) &b->sigint,
			(uv_handle_t *) &b->due_timer,
			(uv_handle_t *) &b->shutdown_timer,
			(uv_handle_t *) &b->linger_timer,
			(uv_handle_t *) &b->sched_timer,
			(uv_handle_t *) &b->prune_timer,
			(uv_handle_t *) &b->worker_timer,
			(uv_handle_t *) &b->prepare,
			(uv_handle_t *) &b->store_async,
			(uv_handle_t *) &b->pool_async,
		};
		for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
			shutdown_close_handle(own[i]);
		}
	}
	// uv_run returns once these close callbacks have run.
}

// shutdown_flushed is the done of the final barrier: every write queued
// before it has committed.
static void
shutdown_flushed(broker *b, sop *w)
{
	taskrec none;
	char    empty[1] = "";

	b->phase = PHASE_CLOSING;
	held_fail_all(b, TB_ESHUTTINGDOWN);
	worker_fail_all(b); // with the stop notice
	memset(&none, 0, sizeof(none));
	none.queue   = empty;
	none.handler = empty;
	events_publish(b->ev, "shutdown", &none, 0, 0, 0);
	if (w != NULL && w->op.rv != TB_OK) {
		// The store cannot write: store_stop tries the kept writes a
		// few more times and logs what it could not write.
		log_warn("shutdown: the store cannot write; %u write(s) "
		         "kept in memory are tried once more before the exit",
		    store_kept(b->st));
	} else {
		log_info("shutdown: all writes committed; %" PRIu64
		         " task(s) left pending for the next start",
		    b->counts[TB_STATE_PENDING] + b->counts[TB_STATE_FAILED]);
	}
	// Let the last replies leave before the socket closes.
	b->linger_ticks = 0;
	uv_timer_start(&b->linger_timer, shutdown_linger_tick, 10, 10);
}

// shutdown_finish queues the barrier that ends the shutdown.
static void
shutdown_finish(broker *b)
{
	sop *w;

	if (b->phase >= PHASE_FINISHING) {
		return;
	}
	b->phase = PHASE_FINISHING;
	uv_timer_stop(&b->shutdown_timer);
	if ((w = sop_alloc(shutdown_flushed, NULL)) == NULL) {
		shutdown_flushed(b, NULL); // store_stop flushes anyway
		return;
	}
	w->op.kind = STORE_OP_BARRIER;
	sop_submit(b, w);
}

void
shutdown_check(broker *b)
{
	if (b->phase == PHASE_DRAINING && b->running == 0) {
		shutdown_finish(b);
	}
}

// shutdown_deadline stops every attempt still running at the deadline;
// each goes back to pending without spending its attempt. Attempts that
// do not end within FINISH_GRACE_MS are left behind.
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
		HASH_ITER (hh, b->by_id, t, tmp) {
			run *r = t->run;
			if (r == NULL) {
				continue;
			}
			n++;
			t->requeue = true;
			atomic_store(&r->cancelled, true);
			attempt_stop(b, t, r);
		}
		log_info("shutdown: timeout; cancelled %d running task(s)", n);
		// Cancelled loop attempts end within moments; if one does not,
		// stop waiting after a grace period.
		uv_timer_start(timer, shutdown_deadline, FINISH_GRACE_MS,
		    FINISH_GRACE_MS);
		return;
	}
	if (b->running > 0) {
		log_warn(
		    "shutdown: %u attempt(s) did not end after cancel; "
		    "they count as interrupted (a crash) at the next start",
		    b->running);
	}
	shutdown_finish(b);
}

void
shutdown_begin(broker *b, const char *why)
{
	if (b->phase != PHASE_RUNNING) {
		return;
	}
	b->phase = PHASE_DRAINING;
	notify_stopping(b);
	uv_timer_stop(&b->due_timer);
	worker_shutdown(b); // workers are told to take nothing more
	log_info("shutdown: %s; %u task(s) running, waiting up to %d s", why,
	    b->running, b->cfg->shutdown_timeout);
	uv_timer_start(&b->shutdown_timer, shutdown_deadline,
	    (uint64_t) b->cfg->shutdown_timeout * 1000, 0);
	shutdown_check(b);
}

void
shutdown_signal_cb(uv_signal_t *s, int signum)
{
	broker *b = s->data;

	if (b->phase == PHASE_DRAINING &&
	    uv_timer_get_repeat(&b->shutdown_timer) == 0) {
		// A second signal skips the rest of the grace time.
		log_info("shutdown: signal %d again; cancelling now", signum);
		uv_timer_start(&b->shutdown_timer, shutdown_deadline, 0, 0);
		return;
	}
	shutdown_begin(b, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}
