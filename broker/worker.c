// worker.c: workers, processes of the users' own that run the tasks of the
// handlers they name, and the third handler mode (HANDLER_WORKER) beside
// loop and pool.
//
// DESIGN. A worker says hello on the request socket (handlers, queues,
// slots) and is bound to the connection (nng pipe) the hello came on. It
// then keeps one worker_take outstanding, which the broker holds like a
// wait: it is answered the moment there is something to send (jobs,
// cancel notices, the stop notice of a shutdown), or empty after
// --worker-heartbeat. The broker knows what a worker can take from two
// figures: its slots less the attempts the broker has given it (running),
// and the free count of its held take less the jobs not yet sent in a
// reply (unsent); a worker with no take held gets nothing.
//
// A worker handler's ready tasks wait in one heap per (handler, queue),
// a wheap, so that the tasks of a handler no connected worker serves never
// hold up the others of their queue. attempt_dispatch visits a queue's
// wheaps with its other heaps; for the first task of each it picks the
// serving worker with the most room (worker_pick) and reserves a place on
// it (a wjob, linked to the task and the worker) before the attempt is
// counted in the store; the job is sent only once that has committed
// (worker_launch), so a dispatch the worker has seen is always durable.
//
// Liveness comes from the connection: when a worker's pipe closes, every
// attempt on it is interrupted at once (attempt_interrupted) and its tasks
// are ready for another worker. A peer that stops without closing (a
// stopped process, a dead tcp host) sends no new take after its last one
// was answered: after --worker-timeout the broker closes its pipe, which
// ends it the same way. Every job carries (task id, attempt), and
// worker_done is applied only when the task still runs that attempt on
// that worker (fencing); anything else is refused as stale and logged.
//
// A cancel, a timeout or a shutdown stop of a job the worker has seen
// sends it a cancel notice and starts --worker-cancel-grace; a job not yet
// sent is simply not sent. When the grace passes, the attempt ends anyway
// (as the stop asked) and the worker's late result is refused.
//
// Threads: loop thread only; the pipe-close notice comes from server.c
// through the loop.
// Ownership: the broker owns the worker handlers (b->whandlers, with their
// wheaps) until broker_close, and the workers (b->workers) until their
// connection ends. A wjob belongs to its task (t->wjob) and is linked on
// its worker while the worker exists; a grace timer is the wjob's and is
// freed by its close callback.

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "brokerimpl.h"
#include "log.h"
#include "util.h"

struct wheap {
	whandler     *wh;
	queue        *q;
	sched_heapq   ready;
	struct wheap *next_wh; // in wh->heaps
	struct wheap *next_q;  // in q->wheaps
};

struct whandler {
	char          *name;
	handler        def; // mode HANDLER_WORKER: what a run's h points to
	uint32_t       nworkers;
	bool           stored; // recorded in the store (or being)
	wheap         *heaps;
	UT_hash_handle hh;
};

struct wjob {
	task       *t;
	worker     *w; // NULL once the worker has gone
	run        *r; // set at launch
	uint32_t    attempt;
	bool        sent;        // in a take reply
	bool        cancel_want; // a cancel notice is to be sent
	bool        cancel_sent;
	uv_timer_t *grace;
	wjob       *next, *prev; // on w->jobs
};

struct worker {
	uint64_t   id;
	uint32_t   pipe;
	uint64_t   pid;
	char      *host;
	char      *name;
	whandler **handlers;
	uint32_t   nhandlers;
	char     **queues; // NULL: any
	uint32_t   nqueues;
	uint32_t   slots;
	uint32_t   running; // wjobs on it
	uint32_t   unsent;  // of those, not yet sent
	uint32_t   ncancels;
	uint64_t   done;
	int64_t    since;       // Unix µs
	int64_t    take_at;     // mono µs: the held take arrived
	int64_t    answered_at; // mono µs: the last take was answered
	srv_req   *take;        // the held take, or NULL
	uint32_t   take_free;
	uint64_t   take_dones; // the take's "dones"
	bool       flush;      // something to send
	bool       stop_sent;  // a reply carried the stop notice
	wjob      *jobs;
	worker    *next, *prev; // on b->workers
	broker    *b;
};

// ---- worker handlers -----------------------------------------------------

whandler *
worker_handler_find(broker *b, const char *name, size_t len)
{
	whandler *wh;

	HASH_FIND(hh, b->whandlers, name, len, wh);
	return (wh);
}

// worker_handler_add returns the worker handler name, creating it; store
// says whether a new one is recorded in the store. NULL without memory.
static whandler *
worker_handler_add(broker *b, const char *name, size_t len, bool store)
{
	whandler *wh = worker_handler_find(b, name, len);
	sop      *w;

	if (wh == NULL) {
		if ((wh = calloc(1, sizeof(*wh))) == NULL ||
		    (wh->name = malloc(len + 1)) == NULL) {
			free(wh);
			return (NULL);
		}
		memcpy(wh->name, name, len);
		wh->name[len] = '\0';
		wh->def.name  = wh->name;
		wh->def.mode  = HANDLER_WORKER;
		HASH_ADD_KEYPTR(hh, b->whandlers, wh->name, len, wh);
	}
	if (store && !wh->stored && (w = sop_alloc(sop_done_nothing, NULL))) {
		wh->stored   = true;
		w->op.kind   = STORE_OP_WHANDLER_PUT;
		w->op.name   = wh->name; // lives until broker_close
		w->op.run_at = util_now_us();
		w->op.keep   = true;
		sop_submit(b, w);
		log_info("worker handler %s: recorded", wh->name);
	}
	return (wh);
}

static int
worker_stored_cb(void *arg, const char *name)
{
	whandler *wh = worker_handler_add(arg, name, strlen(name), false);

	if (wh == NULL) {
		return (TB_ENOMEM);
	}
	wh->stored = true;
	return (TB_OK);
}

int
worker_load(broker *b)
{
	const config_list *l = &b->cfg->worker_handlers;
	int                rv;

	for (size_t i = 0; i < l->n; i++) {
		const char *p = l->v[i];
		while (*p != '\0') {
			size_t n = strcspn(p, ", ");
			if (n > TBP_MAX_NAME ||
			    (n > 0 && handlers_find(p, n))) {
				log_err("--worker-handler %.*s: %s", (int) n,
				    p,
				    n > TBP_MAX_NAME ? "name too long"
				                     : "a built-in's name");
				return (TB_EINVAL);
			}
			if (n > 0 &&
			    worker_handler_add(b, p, n, false) == NULL) {
				return (TB_ENOMEM);
			}
			p += n;
			p += strspn(p, ", ");
		}
	}
	if ((rv = store_load_whandlers(b->st, worker_stored_cb, b)) != TB_OK) {
		return (rv);
	}
	return (TB_OK);
}

wheap *
worker_heap_of(broker *b, const char *handler, queue *q)
{
	whandler *wh = worker_handler_find(b, handler, strlen(handler));
	wheap    *h;

	if (wh == NULL) {
		return (NULL);
	}
	for (h = wh->heaps; h != NULL; h = h->next_wh) {
		if (h->q == q) {
			return (h);
		}
	}
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		return (NULL); // the caller sees no worker handler: logged
	}
	h->wh = wh;
	h->q  = q;
	sched_heapq_init(&h->ready, SCHED_READY);
	h->next_wh = wh->heaps;
	wh->heaps  = h;
	h->next_q  = q->wheaps;
	q->wheaps  = h;
	return (h);
}

const handler *
worker_handler_def(const wheap *h)
{
	return (&h->wh->def);
}

sched_heapq *
worker_heap_ready(wheap *h)
{
	return (&h->ready);
}

// ---- workers --------------------------------------------------------------

static worker *
worker_find(broker *b, uint64_t id)
{
	for (worker *w = b->workers; w != NULL; w = w->next) {
		if (w->id == id) {
			return (w);
		}
	}
	return (NULL);
}

static bool
worker_serves(const worker *w, const wheap *h)
{
	bool handler = false;

	for (uint32_t i = 0; i < w->nhandlers && !handler; i++) {
		handler = w->handlers[i] == h->wh;
	}
	if (!handler) {
		return (false);
	}
	if (w->nqueues == 0) {
		return (true);
	}
	for (uint32_t i = 0; i < w->nqueues; i++) {
		if (strcmp(w->queues[i], h->q->name) == 0) {
			return (true);
		}
	}
	return (false);
}

// worker_room is how many more jobs w may be given now.
static uint32_t
worker_room(const worker *w)
{
	uint32_t by_slots;
	uint32_t by_take;

	if (w->take == NULL || w->running >= w->slots ||
	    w->unsent >= w->take_free) {
		return (0);
	}
	by_slots = w->slots - w->running;
	by_take  = w->take_free - w->unsent;
	return (by_slots < by_take ? by_slots : by_take);
}

// worker_pick returns the worker serving h with the most room, or NULL.
static worker *
worker_pick(broker *b, const wheap *h)
{
	worker  *best = NULL;
	uint32_t most = 0;

	if (h->wh->nworkers == 0) {
		return (NULL);
	}
	for (worker *w = b->workers; w != NULL; w = w->next) {
		uint32_t room = worker_room(w);
		if (room > most && worker_serves(w, h)) {
			best = w;
			most = room;
		}
	}
	return (best);
}

static void
worker_job_link(worker *w, wjob *j)
{
	j->w    = w;
	j->prev = NULL;
	j->next = w->jobs;
	if (w->jobs != NULL) {
		w->jobs->prev = j;
	}
	w->jobs = j;
	w->running++;
	if (!j->sent) {
		w->unsent++;
	}
}

static void
worker_job_unlink(wjob *j)
{
	worker *w = j->w;

	if (w == NULL) {
		return;
	}
	if (j->prev != NULL) {
		j->prev->next = j->next;
	} else {
		w->jobs = j->next;
	}
	if (j->next != NULL) {
		j->next->prev = j->prev;
	}
	w->running--;
	if (!j->sent) {
		w->unsent--;
	}
	if (j->cancel_want && !j->cancel_sent) {
		w->ncancels--;
	}
	j->w                = NULL;
	w->b->need_dispatch = true;
}

wheap *
worker_heap_next(const wheap *h)
{
	return (h->next_q);
}

task *
worker_dispatch_heap(broker *b, wheap *h)
{
	task   *t = sched_peek(&h->ready);
	worker *w;
	wjob   *j;

	if (t == NULL || (w = worker_pick(b, h)) == NULL ||
	    (j = calloc(1, sizeof(*j))) == NULL) {
		return (NULL);
	}
	sched_pop(&h->ready);
	j->t    = t;
	t->wjob = j; // the task owns j from here
	worker_job_link(w, j);
	return (t);
}

static void
worker_grace_closed(uv_handle_t *h)
{
	free(h);
}

static void
worker_grace_stop(wjob *j)
{
	if (j->grace != NULL) {
		uv_timer_stop(j->grace);
		uv_close((uv_handle_t *) j->grace, worker_grace_closed);
		j->grace = NULL;
	}
}

void
worker_job_quiet(wjob *j)
{
	if (j != NULL) {
		worker_grace_stop(j);
	}
}

void
worker_job_drop(wjob *j)
{
	if (j == NULL) {
		return;
	}
	worker_grace_stop(j);
	worker_job_unlink(j);
	if (j->t != NULL) {
		j->t->wjob = NULL;
	}
	free(j);
}

void
worker_job_discard(wjob *j)
{
	if (j == NULL) {
		return;
	}
	free(j->grace); // closed by broker_close's walk
	j->grace = NULL;
	worker_job_unlink(j);
	if (j->t != NULL) {
		j->t->wjob = NULL;
	}
	free(j);
}

int
worker_launch(broker *b, task *t, run *r)
{
	wjob *j = t->wjob;

	if (j == NULL || j->w == NULL) {
		return (TB_ECLOSED); // its worker went during the start write
	}
	j->r            = r;
	j->attempt      = t->attempts;
	r->hdata        = j;
	j->w->flush     = true;
	b->worker_flush = true;
	return (TB_OK);
}

// worker_grace_fired ends an attempt whose worker did not end it within
// the grace after a cancel notice; the late result will be stale.
static void
worker_grace_fired(uv_timer_t *timer)
{
	wjob *j = timer->data;
	task *t = j->t;
	run  *r = j->r;

	worker_grace_stop(j);
	if (t == NULL || r == NULL || t->run != r) {
		return;
	}
	log_warn(TASK_FMT ": worker %" PRIu64 " did not stop attempt "
	                  "%u within %ld ms; the attempt ends without it",
	    TASK_ARGS(t), j->w != NULL ? j->w->id : 0, j->attempt,
	    ((broker *) r->ctx)->cfg->worker_cancel_grace_ms);
	if (!r->failed && !r->timed_out) {
		run_set_error(r, "worker did not stop within %ld ms",
		    ((broker *) r->ctx)->cfg->worker_cancel_grace_ms);
	}
	r->failed = true;
	attempt_run_done(r);
}

bool
worker_stop_job(broker *b, task *t, run *r)
{
	wjob *j = r->hdata;

	if (j == NULL || j->w == NULL || !j->sent) {
		// The worker never saw it: the attempt ends now.
		return (false);
	}
	if (!j->cancel_want) {
		j->cancel_want = true;
		j->w->ncancels++;
		j->w->flush     = true;
		b->worker_flush = true;
	}
	if (j->grace == NULL &&
	    (j->grace = malloc(sizeof(*j->grace))) != NULL) {
		uv_timer_init(&b->loop, j->grace);
		j->grace->data = j;
		uv_timer_start(j->grace, worker_grace_fired,
		    (uint64_t) b->cfg->worker_cancel_grace_ms, 0);
	}
	(void) t;
	return (true);
}

// worker_answer answers w's held take with what is to be sent: the jobs
// launched and not yet sent, the cancel notices, and stop when the
// broker is shutting down.
static void
worker_answer(broker *b, worker *w)
{
	srv_req *req = w->take;
	tbp_job *jobs;
	tbp_job *cancels;
	uint32_t nj = 0;
	uint32_t nc = 0;
	int64_t  now_ms;
	int      rv;

	if (req == NULL) {
		return;
	}
	jobs    = calloc(w->unsent + 1, sizeof(*jobs));
	cancels = calloc(w->ncancels + 1, sizeof(*cancels));
	if (jobs == NULL || cancels == NULL) {
		free(jobs);
		free(cancels);
		return; // tried again at the next pass or heartbeat
	}
	now_ms = util_now_us() / 1000;
	for (wjob *j = w->jobs; j != NULL; j = j->next) {
		task *t = j->t;
		if (!j->sent && j->r != NULL && nj < w->unsent) {
			jobs[nj++] = (tbp_job) {
				.id          = t->id,
				.attempt     = j->attempt,
				.crashes     = t->crashes,
				.handler     = tbp_str(t->handler),
				.queue       = tbp_str(t->queue),
				.payload     = { t->payload,
				        (uint32_t) t->payload_len },
				.deadline_ms = t->timeout_ms > 0
				    ? now_ms + t->timeout_ms
				    : 0,
			};
		}
		if (j->cancel_want && !j->cancel_sent && nc < w->ncancels) {
			cancels[nc++] = (tbp_job) {
				.id      = t->id,
				.attempt = j->attempt,
			};
		}
	}
	msgpack_sbuffer_clear(&req->out);
	rv = tbp_enc_rep_take(&req->out, req->req.req_id, jobs, nj, cancels,
	    nc, b->phase != PHASE_RUNNING);
	free(jobs);
	free(cancels);
	if (rv != TB_OK) {
		return;
	}
	for (wjob *j = w->jobs; j != NULL; j = j->next) {
		if (!j->sent && j->r != NULL) {
			j->sent = true;
			w->unsent--;
		}
		if (j->cancel_want && !j->cancel_sent) {
			j->cancel_sent = true;
			w->ncancels--;
		}
	}
	w->take        = NULL;
	w->flush       = false;
	w->stop_sent   = b->phase != PHASE_RUNNING;
	w->answered_at = util_mono_us();
	srv_reply(req);
}

// worker_has_news says whether w's held take should be answered now.
static bool
worker_has_news(broker *b, const worker *w)
{
	if (w->ncancels > 0 || (b->phase != PHASE_RUNNING && !w->stop_sent)) {
		return (true);
	}
	for (const wjob *j = w->jobs; j != NULL; j = j->next) {
		if (!j->sent && j->r != NULL) {
			return (true);
		}
	}
	return (false);
}

void
worker_flush(broker *b)
{
	b->worker_flush = false;
	for (worker *w = b->workers; w != NULL; w = w->next) {
		if (w->flush && w->take != NULL && worker_has_news(b, w)) {
			worker_answer(b, w);
		}
	}
}

// worker_remove ends w: its attempts are interrupted (those still being
// started go back when their start write commits), its held take is
// answered (if its connection is still there, which it is not when it
// closed), and it is freed.
static void
worker_remove(broker *b, worker *w, const char *why)
{
	char text[160];

	log_info("worker %" PRIu64 " (%s, pid %" PRIu64 "): connection %s; "
	         "%u attempt(s) interrupted",
	    w->id, w->name, w->pid, why, w->running);
	snprintf(text, sizeof(text),
	    "its worker's connection %s (worker "
	    "%" PRIu64 ")",
	    why, w->id);
	while (w->jobs != NULL) {
		wjob *j = w->jobs;
		task *t = j->t;
		if (j->r != NULL && t != NULL && t->run == j->r && !j->sent) {
			// Launched but never sent: the worker did not see it,
			// so its death is no crash of this task.
			attempt_handed_back(b, t); // drops j
		} else if (j->r != NULL && t != NULL && t->run == j->r) {
			attempt_abandon(b, t);
			attempt_interrupted(b, t, text); // drops j
		} else {
			worker_job_unlink(j); // the start write sees j->w NULL
		}
	}
	if (w->take != NULL) {
		srv_req *req = w->take;
		w->take      = NULL;
		reply_error(req, TB_ENOTFOUND, "worker gone");
	}
	for (uint32_t i = 0; i < w->nhandlers; i++) {
		w->handlers[i]->nworkers--;
	}
	if (w->prev != NULL) {
		w->prev->next = w->next;
	} else {
		b->workers = w->next;
	}
	if (w->next != NULL) {
		w->next->prev = w->prev;
	}
	for (uint32_t i = 0; i < w->nqueues; i++) {
		free(w->queues[i]);
	}
	free(w->queues);
	free(w->handlers);
	free(w->host);
	free(w->name);
	free(w);
	b->check_drain = true;
}

void
worker_pipe_gone(uint32_t pipe, void *arg)
{
	broker *b = arg;
	worker *w = b->workers;

	while (w != NULL) {
		worker *next = w->next;
		if (pipe == 0 ? !srv_pipe_alive(w->pipe) : w->pipe == pipe) {
			worker_remove(b, w, "closed");
		}
		w = next;
	}
}

// worker_tick answers takes held for a heartbeat and ends workers that
// sent no take for --worker-timeout after the last was answered.
static void
worker_tick(uv_timer_t *timer)
{
	broker *b   = timer->data;
	int64_t now = util_mono_us();
	int64_t hb  = b->cfg->worker_heartbeat_ms * 1000LL;
	int64_t to  = b->cfg->worker_timeout_ms * 1000LL;
	worker *w   = b->workers;

	while (w != NULL) {
		worker *next = w->next;
		if (w->take != NULL && now - w->take_at >= hb) {
			worker_answer(b, w);
		} else if (w->take == NULL && now - w->answered_at >= to) {
			char why[64];
			snprintf(why, sizeof(why),
			    "was closed: no take for %ld ms",
			    b->cfg->worker_timeout_ms);
			srv_pipe_close(w->pipe);
			worker_remove(b, w, why);
		}
		w = next;
	}
}

int
worker_start(broker *b)
{
	long tick = b->cfg->worker_heartbeat_ms;

	if (b->cfg->worker_timeout_ms < tick) {
		tick = b->cfg->worker_timeout_ms;
	}
	tick /= 10;
	tick = tick < 10 ? 10 : tick > 500 ? 500 : tick;
	uv_timer_init(&b->loop, &b->worker_timer);
	b->worker_timer.data = b;
	uv_timer_start(
	    &b->worker_timer, worker_tick, (uint64_t) tick, (uint64_t) tick);
	b->next_worker_id = (uint64_t) util_now_us();
	return (srv_on_pipe_gone(b->sv, worker_pipe_gone, b));
}

void
worker_shutdown(broker *b)
{
	for (worker *w = b->workers; w != NULL; w = w->next) {
		w->flush = true;
	}
	b->worker_flush = true;
}

void
worker_fail_all(broker *b)
{
	for (worker *w = b->workers; w != NULL; w = w->next) {
		if (w->take != NULL) {
			worker_answer(b, w);
		}
		if (w->take != NULL) {
			srv_req *req = w->take;
			w->take      = NULL;
			reply_error(req, TB_ESHUTTINGDOWN, NULL);
		}
	}
}

void
worker_fini(broker *b)
{
	whandler *wh;
	whandler *tmp;

	while (b->workers != NULL) {
		worker *w  = b->workers;
		b->workers = w->next;
		while (w->jobs != NULL) {
			wjob *j = w->jobs;
			worker_job_unlink(j);
		}
		for (uint32_t i = 0; i < w->nqueues; i++) {
			free(w->queues[i]);
		}
		free(w->queues);
		free(w->handlers);
		free(w->host);
		free(w->name);
		free(w);
	}
	HASH_ITER (hh, b->whandlers, wh, tmp) {
		HASH_DEL(b->whandlers, wh);
		while (wh->heaps != NULL) {
			wheap *h  = wh->heaps;
			wh->heaps = h->next_wh;
			sched_heapq_fini(&h->ready);
			free(h);
		}
		free(wh->name);
		free(wh);
	}
}

// ---- the ops ---------------------------------------------------------------

int
worker_hello(broker *b, srv_req *req)
{
	const tbp_hello *in = &req->req.hello;
	worker          *w;

	for (uint32_t i = 0; i < in->nhandlers; i++) {
		if (handlers_find(
		        (const char *) in->handlers[i].p, in->handlers[i].n)) {
			log_warn("worker_hello: '%.*s' is a built-in "
			         "handler's name",
			    (int) in->handlers[i].n, in->handlers[i].p);
			return (TB_EINVAL);
		}
	}
	if ((w = calloc(1, sizeof(*w))) == NULL ||
	    (w->handlers = calloc(in->nhandlers, sizeof(*w->handlers))) ==
	        NULL ||
	    (in->nqueues > 0 &&
	        (w->queues = calloc(in->nqueues, sizeof(*w->queues))) ==
	            NULL) ||
	    (w->host = tbp_bytes_dup(in->host)) == NULL ||
	    (w->name = tbp_bytes_dup(in->name)) == NULL) {
		goto nomem;
	}
	for (uint32_t i = 0; i < in->nqueues; i++) {
		if ((w->queues[i] = tbp_bytes_dup(in->queues[i])) == NULL) {
			goto nomem;
		}
		w->nqueues = i + 1;
	}
	for (uint32_t i = 0; i < in->nhandlers; i++) {
		whandler *wh = worker_handler_add(b,
		    (const char *) in->handlers[i].p, in->handlers[i].n, true);
		if (wh == NULL) {
			goto nomem;
		}
		w->handlers[w->nhandlers++] = wh;
		wh->nworkers++;
	}
	w->b           = b;
	w->id          = ++b->next_worker_id;
	w->pipe        = srv_req_pipe(req);
	w->pid         = in->pid;
	w->slots       = in->slots;
	w->since       = util_now_us();
	w->answered_at = util_mono_us();
	w->next        = b->workers;
	if (b->workers != NULL) {
		b->workers->prev = w;
	}
	b->workers = w;
	log_info("worker %" PRIu64 " (%s, pid %" PRIu64 " on %s): hello, %u "
	         "slot(s), %u handler(s), first %s",
	    w->id, w->name, w->pid, w->host, w->slots, w->nhandlers,
	    w->handlers[0]->name);
	return (tbp_enc_rep_hello(&req->out, req->req.req_id, w->id,
	            (uint32_t) b->cfg->worker_heartbeat_ms,
	            (uint32_t) b->cfg->worker_timeout_ms) == TB_OK
	        ? TB_OK
	        : TB_ENOMEM);
nomem:
	if (w != NULL) {
		for (uint32_t i = 0; i < w->nhandlers; i++) {
			w->handlers[i]->nworkers--;
		}
		for (uint32_t i = 0; i < w->nqueues; i++) {
			free(w->queues[i]);
		}
		free(w->queues);
		free(w->handlers);
		free(w->host);
		free(w->name);
		free(w);
	}
	return (TB_ENOMEM);
}

// worker_of returns the worker req names, if it came on that worker's
// connection.
static worker *
worker_of(broker *b, srv_req *req)
{
	worker *w = worker_find(b, req->req.worker_id);

	if (w == NULL || w->pipe != srv_req_pipe(req)) {
		return (NULL);
	}
	return (w);
}

int
worker_take(broker *b, srv_req *req)
{
	worker *w = worker_of(b, req);

	if (w == NULL) {
		return (TB_ENOTFOUND);
	}
	if (w->take != NULL) {
		// A second take (a resend): the first is answered empty.
		srv_req *old = w->take;
		w->take      = NULL;
		reply_error(old, TB_EBUSY, "a newer take replaced this one");
	}
	w->take       = req;
	w->take_free  = req->req.free;
	w->take_dones = req->req.dones;
	w->take_at    = util_mono_us();
	held_keep(b, req);
	if (worker_has_news(b, w)) {
		w->flush        = true;
		b->worker_flush = true;
	}
	b->need_dispatch = true;
	return (TB_OK);
}

// worker_apply applies one result d of worker w (NULL: unknown, or not
// on its connection): TB_OK, or TB_ESTALE when (id, attempt) is not a
// running attempt of w's (fencing; logged, nothing changes).
static int
worker_apply(broker *b, worker *w, uint64_t wid, const tbp_done *d)
{
	task *t = task_find(b, d->id);
	wjob *j = t != NULL ? t->wjob : NULL;
	run  *r;

	if (w != NULL && w->take != NULL && d->seq > w->take_dones) {
		// The worker counted this job as held when it sent its take:
		// the take has one slot more now (tbp.h, worker_take).
		w->take_free++;
		w->take_dones    = d->seq;
		b->need_dispatch = true;
	}
	if (w == NULL || j == NULL || j->w != w || j->r == NULL ||
	    t->run != j->r || j->attempt != d->attempt) {
		log_warn("worker %" PRIu64 ": result for task %" PRIu64
		         " attempt %u refused (stale): %s",
		    wid, d->id, d->attempt,
		    w == NULL       ? "unknown worker"
		        : t == NULL ? "no such task running"
		                    : "not that worker's current attempt");
		return (TB_ESTALE);
	}
	r = j->r;
	if (d->ok) {
		run_set_result(r, d->result.p, d->result.n);
	} else {
		run_set_error(r, "%.*s", (int) d->error.n,
		    d->error.n > 0 ? (const char *) d->error.p : "failed");
		r->no_retry = !d->retryable;
	}
	w->done++;
	attempt_run_done(r); // drops j
	return (TB_OK);
}

int
worker_done(broker *b, srv_req *req)
{
	worker   *w = worker_of(b, req);
	uint32_t  n = req->req.nresults;
	uint32_t *st;
	int       rv;

	if (n == 0) {
		if ((rv = worker_apply(
		         b, w, req->req.worker_id, &req->req.done)) != TB_OK) {
			return (rv);
		}
		return (tbp_enc_rep_empty(
		            &req->out, req->req.op, req->req.req_id) == TB_OK
		        ? TB_OK
		        : TB_ENOMEM);
	}
	// Several results: each is applied or refused on its own, and the
	// reply says which.
	if ((st = calloc(n, sizeof(*st))) == NULL) {
		return (TB_ENOMEM);
	}
	for (uint32_t i = 0; i < n; i++) {
		st[i] = (uint32_t) worker_apply(
		    b, w, req->req.worker_id, &req->req.results[i]);
	}
	rv = tbp_enc_rep_dones(&req->out, req->req.req_id, st, n);
	free(st);
	return (rv == TB_OK ? TB_OK : TB_ENOMEM);
}

int
worker_bye(broker *b, srv_req *req)
{
	worker *w = worker_of(b, req);

	if (w == NULL) {
		return (TB_ENOTFOUND);
	}
	for (uint32_t i = 0; i < req->req.nids; i++) {
		task *t = task_find(b, req->req.ids[i]);
		if (t != NULL && t->wjob != NULL && t->wjob->w == w &&
		    t->run != NULL && t->run == t->wjob->r) {
			attempt_handed_back(b, t);
		}
	}
	worker_remove(b, w, "ended with a goodbye");
	return (
	    tbp_enc_rep_empty(&req->out, req->req.op, req->req.req_id) == TB_OK
	        ? TB_OK
	        : TB_ENOMEM);
}

int
worker_list(broker *b, srv_req *req)
{
	uint32_t   n = 0;
	tbp_winfo *v;
	tbp_bytes *names;
	size_t     nnames = 0;
	int        rv;

	for (worker *w = b->workers; w != NULL; w = w->next) {
		n++;
		nnames += w->nhandlers + w->nqueues;
	}
	if (n > TBP_MAX_WORKERS) {
		n = TBP_MAX_WORKERS;
	}
	v     = calloc(n + 1, sizeof(*v));
	names = calloc(nnames + 1, sizeof(*names));
	if (v == NULL || names == NULL) {
		free(v);
		free(names);
		return (TB_ENOMEM);
	}
	nnames = 0;
	n      = 0;
	for (worker *w = b->workers; w != NULL && n < TBP_MAX_WORKERS;
	     w         = w->next, n++) {
		tbp_winfo *o = &v[n];
		o->id        = w->id;
		o->pid       = w->pid;
		o->host      = tbp_str(w->host);
		o->name      = tbp_str(w->name);
		o->handlers  = &names[nnames];
		for (uint32_t i = 0; i < w->nhandlers; i++) {
			names[nnames++] = tbp_str(w->handlers[i]->name);
		}
		o->nhandlers = w->nhandlers;
		o->queues    = &names[nnames];
		for (uint32_t i = 0; i < w->nqueues; i++) {
			names[nnames++] = tbp_str(w->queues[i]);
		}
		o->nqueues = w->nqueues;
		o->slots   = w->slots;
		o->running = w->running;
		o->done    = w->done;
		o->since   = w->since;
	}
	rv = tbp_enc_rep_workers(&req->out, req->req.req_id, v, n);
	free(v);
	free(names);
	return (rv == TB_OK ? TB_OK : TB_ENOMEM);
}

uint32_t
worker_stats(broker *b, tbp_whstat **vp)
{
	uint32_t    n = HASH_COUNT(b->whandlers);
	tbp_whstat *v;
	whandler   *wh;
	whandler   *tmp;
	uint32_t    i = 0;

	*vp = NULL;
	if (n == 0 || (v = calloc(n, sizeof(*v))) == NULL) {
		return (0);
	}
	HASH_ITER (hh, b->whandlers, wh, tmp) {
		v[i].name    = tbp_str(wh->name);
		v[i].workers = wh->nworkers;
		for (wheap *h = wh->heaps; h != NULL; h = h->next_wh) {
			v[i].waiting += h->ready.n;
		}
		i++;
	}
	*vp = v;
	return (n);
}

uint32_t
worker_count(const broker *b)
{
	uint32_t n = 0;

	for (const worker *w = b->workers; w != NULL; w = w->next) {
		n++;
	}
	return (n);
}
