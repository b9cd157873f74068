// submit.c: accepting tasks: duplicates, keys, backpressure, and the reply
// after the commit.
//
// DESIGN. A submit is all or nothing: every entry is checked (handler,
// queue, backpressure) before any task is created. New tasks enter the
// table at once, not yet durable, so that a resent copy arriving before
// the commit finds them; their INSERT goes to the store as one op. A
// duplicate of a task whose insert is still in flight is parked on that
// task (an ackwait) and answered with it. The reply leaves when the insert
// op and every parked duplicate have been answered; the op goes through
// the writer even with nothing new to insert, because its completion
// proves that every earlier insert has committed.
//
// A store that cannot write (a full disk, an I/O error) fails the insert
// op: the request gets store_error with the store's cause in the message,
// its new tasks are forgotten, and nothing of it was acknowledged. The
// store logs the outage once; refusals during it are logged at debug
// level only.
//
// Threads: loop thread only.
// Ownership: a submit_ctx lives from the request to its reply; its tasks
// belong to the table from task_index on.

#include <inttypes.h>
#include <stdlib.h>

#include "brokerimpl.h"
#include "log.h"
#include "util.h"

// ackwait is a duplicate submit waiting for the first copy's insert.
typedef struct ackwait {
	submit_ctx     *sc;
	uint32_t        idx;
	struct ackwait *next;
} ackwait;

// submit_ctx is one submit request between decode and reply.
struct submit_ctx {
	srv_req    *req; // NULL when a schedule fired it
	uint32_t    n;
	uint64_t   *ids;
	bool       *dup;
	bool       *existing; // the key matched an unfinished task
	task      **tasks;    // new tasks, nrecs of them
	store_rec  *recs;     // views of tasks[i]: nothing freed through them
	store_rec **recp;
	uint64_t   *dup_ids;
	uint32_t    nrecs;
	uint32_t    parts; // the insert op and in-flight duplicates
	int         rv;
	store_op    failed; // with rv TB_ESTORE: rv and src of the failed op
	const char *sched_name; // set when a schedule fired it
};

void
submit_ctx_free(submit_ctx *sc)
{
	free(sc); // its arrays live in the same allocation
}

// submit_part_done completes one part of sc; the last answers the
// request.
static void
submit_part_done(submit_ctx *sc)
{
	if (--sc->parts > 0) {
		return;
	}
	char msg[160];

	if (sc->req == NULL) {
		; // a schedule fired it: nobody to answer
	} else if (sc->rv != TB_OK) {
		reply_error(sc->req, sc->rv,
		    sc->rv == TB_ESTORE
		        ? sop_errmsg(&sc->failed, msg, sizeof(msg))
		        : NULL);
	} else {
		msgpack_sbuffer_clear(&sc->req->out);
		reply_send(sc->req,
		    tbp_enc_rep_submit(&sc->req->out, sc->req->req.req_id,
		        sc->ids, sc->dup, sc->existing, sc->n) == TB_OK
		        ? TB_OK
		        : TB_ENOMEM);
	}
	submit_ctx_free(sc);
}

// submit_ackwaits_release answers the duplicates parked on t: with id on
// success, with the error of op (rv, src) otherwise.
static void
submit_ackwaits_release(task *t, uint64_t id, const store_op *op)
{
	ackwait *a;

	while ((a = t->ackwaits) != NULL) {
		t->ackwaits = a->next;
		if (op->rv == TB_OK) {
			a->sc->ids[a->idx] = id;
		} else {
			a->sc->rv         = op->rv;
			a->sc->failed.rv  = op->rv;
			a->sc->failed.src = op->src;
		}
		submit_part_done(a->sc);
		free(a);
	}
}

void
submit_ackwaits_free(task *t)
{
	ackwait *a;

	while ((a = t->ackwaits) != NULL) {
		t->ackwaits = a->next;
		free(a);
	}
}

// submit_ackwait_add parks entry idx of sc on t until t's insert commits.
static int
submit_ackwait_add(submit_ctx *sc, uint32_t idx, task *t)
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

// submit_over_limit checks backpressure before anything is created: the
// tasks of this request that would be new must fit under the global and
// the per-queue limits of waiting tasks. Returns TB_OK or TB_EQUEUEFULL.
static int
submit_over_limit(broker *b, const tbp_task_in *tasks, uint32_t n, queue **qs)
{
	uint64_t fresh = 0;
	uint64_t waiting;
	bool     existing;

	for (uint32_t i = 0; i < n; i++) {
		qs[i]->scratch = 0; // new tasks of this request, per queue
	}
	for (uint32_t i = 0; i < n; i++) {
		if (task_known(b, &tasks[i], &existing) == NULL) {
			qs[i]->scratch++;
			fresh++;
		}
	}
	waiting = b->counts[TB_STATE_PENDING] + b->counts[TB_STATE_FAILED] +
	    b->inflight;
	if (sched_admit(waiting, fresh, (uint64_t) b->cfg->max_pending) !=
	    TB_OK) {
		log_warn("submit: %" PRIu64 " task(s) refused: %" PRIu64
		         " already waiting (max-pending %ld)",
		    fresh, b->counts[TB_STATE_PENDING] + b->inflight,
		    b->cfg->max_pending);
		return (TB_EQUEUEFULL);
	}
	for (uint32_t i = 0; i < n; i++) {
		queue *q = qs[i];
		if (q->scratch > 0 &&
		    sched_admit(queue_waiting(q), q->scratch,
		        q->max_pending) != TB_OK) {
			log_warn("submit: queue %s is full: %" PRIu64
			         " waiting, max-pending %" PRIu64,
			    q->name, queue_waiting(q), q->max_pending);
			return (TB_EQUEUEFULL);
		}
	}
	return (TB_OK);
}

// submit_committed is the done of a submit's insert op: the new tasks are
// durable (or, if the commit failed, forgotten) and scheduled.
static void
submit_committed(broker *b, sop *w)
{
	submit_ctx *sc = w->sc;

	for (uint32_t i = 0; i < sc->nrecs; i++) {
		task *t = sc->tasks[i];
		t->q->inflight--;
		b->inflight--;
		if (w->op.rv != TB_OK) {
			// Nothing of the batch is stored: forget the tasks.
			submit_ackwaits_release(t, 0, &w->op);
			sc->rv         = w->op.rv;
			sc->failed.rv  = w->op.rv;
			sc->failed.src = w->op.src;
			task_forget(b, t);
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
			submit_ackwaits_release(t, sc->dup_ids[i], &w->op);
			task_forget(b, t);
			continue;
		}
		t->durable = true;
		b->counts[TB_STATE_PENDING]++;
		t->q->counts[TB_STATE_PENDING]++;
		if (t->forever) {
			t->q->forever++;
		}
		b->submitted++;
		submit_ackwaits_release(t, t->id, &w->op);
		if (sc->sched_name != NULL) {
			events_publish(
			    b->ev, "fired", &t->core, t->state, 0, 0);
		}
		task_schedule(b, t);
	}
	if (w->op.rv == TB_ESTORE && store_error_transient(w->op.src)) {
		// The store has logged the outage once; not one line per
		// refused submit.
		log_debug("submit: store cannot write (%s); %u task(s) "
		          "refused",
		    store_errstr(w->op.src), sc->nrecs);
	} else if (w->op.rv != TB_OK) {
		log_err("submit: store failed; %u task(s) refused", sc->nrecs);
	}
	submit_part_done(sc);
}

// submit_ctx_alloc returns a zeroed context with room for n entries, its
// arrays in the same allocation (widest members first, so each is
// aligned), or NULL.
static submit_ctx *
submit_ctx_alloc(uint32_t n)
{
	submit_ctx *sc;
	uint8_t    *p;

	if ((sc = calloc(1,
	         sizeof(*sc) +
	             n *
	                 (sizeof(*sc->ids) + sizeof(*sc->dup_ids) +
	                     sizeof(*sc->tasks) + sizeof(*sc->recs) +
	                     sizeof(*sc->recp) + sizeof(*sc->dup) +
	                     sizeof(*sc->existing)))) == NULL) {
		return (NULL);
	}
	p        = (uint8_t *) (sc + 1);
	sc->n    = n;
	sc->recs = (store_rec *) p;
	p += n * sizeof(*sc->recs);
	sc->ids = (uint64_t *) p;
	p += n * sizeof(*sc->ids);
	sc->dup_ids = (uint64_t *) p;
	p += n * sizeof(*sc->dup_ids);
	sc->tasks = (task **) p;
	p += n * sizeof(*sc->tasks);
	sc->recp = (store_rec **) p;
	p += n * sizeof(*sc->recp);
	sc->dup = (bool *) p;
	p += n * sizeof(*sc->dup);
	sc->existing = (bool *) p;
	return (sc);
}

// submit_check finds the queue of every entry and refuses the request if
// an entry names an unknown handler or the tasks do not fit.
static int
submit_check(broker *b, const tbp_task_in *tasks, uint32_t n, queue **qs)
{
	for (uint32_t i = 0; i < n; i++) {
		if (handlers_find((const char *) tasks[i].handler.p,
		        tasks[i].handler.n) == NULL &&
		    worker_handler_find(b, (const char *) tasks[i].handler.p,
		        tasks[i].handler.n) == NULL) {
			log_warn("submit: task %u: unknown handler '%.*s'", i,
			    (int) tasks[i].handler.n,
			    (const char *) tasks[i].handler.p);
			return (TB_ENOHANDLER);
		}
		if ((qs[i] = queue_of_in(b, &tasks[i])) == NULL) {
			return (TB_ENOMEM);
		}
	}
	return (submit_over_limit(b, tasks, n, qs));
}

int
submit_tasks(broker *b, srv_req *req, const tbp_task_in *tasks, uint32_t n,
    const char *sched_name)
{
	int64_t     now = util_now_us();
	submit_ctx *sc  = NULL;
	sop        *w   = NULL;
	queue     **qs;
	int         rv;

	if (b->phase != PHASE_RUNNING) {
		return (TB_ESHUTTINGDOWN);
	}
	if ((qs = calloc(n, sizeof(*qs))) == NULL) {
		return (TB_ENOMEM);
	}
	if ((rv = submit_check(b, tasks, n, qs)) != TB_OK) {
		goto fail;
	}
	if ((sc = submit_ctx_alloc(n)) == NULL ||
	    (w = sop_alloc(submit_committed, NULL)) == NULL) {
		rv = TB_ENOMEM;
		goto fail;
	}
	sc->req        = req;
	sc->sched_name = sched_name;
	sc->parts      = 1; // the insert op, which also covers earlier inserts
	for (uint32_t i = 0; i < n; i++) {
		const tbp_task_in *ti = &tasks[i];
		bool               existing;
		task              *t = task_known(b, ti, &existing);
		if (t != NULL) {
			// A resent copy (nng's REQ resends after a reconnect),
			// or the key of an unfinished task: its id, nothing
			// new.
			sc->dup[i]      = !existing;
			sc->existing[i] = existing;
			sc->ids[i]      = t->id;
			if (!t->durable &&
			    submit_ackwait_add(sc, i, t) != TB_OK) {
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
		sc->ids[i]           = t->id;
		sc->recs[sc->nrecs]  = t->core; // a view: the task owns it all
		sc->recp[sc->nrecs]  = &sc->recs[sc->nrecs];
		sc->tasks[sc->nrecs] = t;
		sc->nrecs++;
	}
	free(qs);
	w->sc         = sc;
	w->op.kind    = sc->nrecs == 0 ? STORE_OP_BARRIER : STORE_OP_INSERT;
	w->op.recs    = sc->recp;
	w->op.nrecs   = sc->nrecs;
	w->op.dup_ids = sc->dup_ids;
	sop_submit(b, w);
	if (req != NULL) {
		held_keep(b, req);
	}
	return (TB_OK);
fail:
	free(w);
	if (sc != NULL) {
		submit_ctx_free(sc);
	}
	free(qs);
	return (rv);
}
