// store_ops.c: store ops with the loop's context, and their hand-back.
//
// DESIGN. Every write the loop makes is a sop: a store_op (store.h) plus
// what the loop needs when it has committed, above all its done function,
// which lives beside the code that queued the op (submit.c's
// submit_committed, attempt.c's start, and so on), as libuv's uv__work
// carries its done callback. The store hands committed ops back in the
// order they were submitted; sop_complete_all calls each op's done in that
// order and frees the op. A task's state write (sop_write_task) is the
// common case: its done, sop_task_written, publishes the event the change
// announces, answers the request that asked for it and forgets the task
// once it has ended and nothing refers to it.
//
// Threads: loop thread only (the store's writer only reads an op's
// inputs between store_submit and its hand-back).
// Ownership: a sop owns ids, sc_own, result and error; everything else it
// points to is borrowed and outlives it (tasks count their ops in
// writes). A task write copies the task's result and error because it may
// wait long (kept by a store that cannot write) while the task moves on.
//
// A task write is marked keep (store.h, Store errors): a full disk or an
// I/O error does not lose it; the store writes it once it can, and its
// done (the event, the reply, forgetting an ended task) waits for that.
// Meanwhile the task stays in the table with its newer state, so status,
// list and stats show that state.

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brokerimpl.h"
#include "log.h"

sop *
sop_alloc(sop_done_fn done, task *t)
{
	sop *w;

	if ((w = calloc(1, sizeof(*w))) == NULL) {
		return (NULL);
	}
	w->done   = done;
	w->t      = t;
	w->op.arg = w;
	return (w);
}

void
sop_submit(broker *b, sop *w)
{
	store_submit(b->st, &w->op);
}

sop *
sop_write_task(broker *b, task *t, sop_done_fn done, const char *event,
    uint64_t dur, srv_req *req)
{
	sop *w;

	if ((w = sop_alloc(done, t)) == NULL) {
		// Without memory for the op the state change is not recorded;
		// on restart the task is recovered from its last stored state
		// (at-least-once still holds).
		log_err(TASK_FMT ": no memory to record state %s",
		    TASK_ARGS(t), tbp_state_name((int) t->state));
		if (req != NULL) {
			reply_error(req, TB_ENOMEM, NULL);
		}
		return (NULL);
	}
	if ((t->result_len > 0 &&
	        (w->result = malloc(t->result_len)) == NULL) ||
	    (t->error != NULL && (w->error = strdup(t->error)) == NULL)) {
		log_err(TASK_FMT ": no memory to record state %s",
		    TASK_ARGS(t), tbp_state_name((int) t->state));
		sop_discard(w);
		if (req != NULL) {
			reply_error(req, TB_ENOMEM, NULL);
		}
		return (NULL);
	}
	if (t->result_len > 0) {
		memcpy(w->result, t->result, t->result_len);
	}
	w->op.kind        = STORE_OP_UPDATE;
	w->op.keep        = true;
	w->op.id          = t->id;
	w->op.state       = t->state;
	w->op.attempts    = t->attempts;
	w->op.crashes     = t->crashes;
	w->op.max_crashes = t->max_crashes;
	w->op.run_at      = t->run_at;
	w->op.started_at  = t->started_at;
	w->op.finished_at = t->finished_at;
	w->op.result      = w->result;
	w->op.result_len  = t->result_len;
	w->op.error       = w->error;
	w->event          = event;
	w->ev_state       = t->state;
	w->ev_attempt     = t->attempts;
	w->ev_dur         = dur;
	w->req            = req;
	t->writes++;
	sop_submit(b, w);
	return (w);
}

void
sop_task_written(broker *b, sop *w)
{
	task *t = w->t;

	t->writes--;
	if (w->event != NULL) {
		events_publish(b->ev, w->event, &t->core, w->ev_state,
		    w->ev_attempt, w->ev_dur);
	}
	if (w->req != NULL) {
		tbp_task_info ti;
		task_info(&t->core, &ti);
		reply_task(w->req, &ti, false);
	}
	if (tbp_state_final((int) t->state) && t->writes == 0 &&
	    t->run == NULL) {
		// Ended and committed: answer waiters; status reads the store
		// from now on.
		held_wake(b, t);
		task_forget(b, t);
	}
	if (w->mc != NULL) {
		held_multi_done(w->mc, w->op.rv, 0);
	}
}

void
sop_done_nothing(broker *b, sop *w)
{
	(void) b;
	(void) w;
}

// sop_reply_committed answers the request of a sop_reply op.
static void
sop_reply_committed(broker *b, sop *w)
{
	char msg[160];

	(void) b;
	if (w->op.rv != TB_OK) {
		reply_error(
		    w->req, w->op.rv, sop_errmsg(&w->op, msg, sizeof(msg)));
	} else if (w->op.kind == STORE_OP_SCHED_DEL && w->op.count == 0) {
		reply_error(w->req, TB_ENOTFOUND, NULL);
	} else {
		reply_empty(w->req);
	}
}

int
sop_reply(broker *b, srv_req *req, const store_op *tmpl, store_sched *own)
{
	sop *w = sop_alloc(sop_reply_committed, NULL);

	if (w == NULL) {
		store_sched_free(own);
		return (TB_ENOMEM);
	}
	w->op      = *tmpl;
	w->op.arg  = w;
	w->op.next = NULL;
	w->req     = req;
	w->sc_own  = own;
	if (own != NULL) {
		w->op.sched = own;
		w->op.name  = own->name;
	}
	sop_submit(b, w);
	held_keep(b, req);
	return (TB_OK);
}

void
sop_discard(sop *w)
{
	free(w->ids);
	store_sched_free(w->sc_own);
	free(w->result);
	free(w->error);
	free(w);
}

const char *
sop_errmsg(const store_op *op, char *buf, size_t size)
{
	if (op->rv != TB_ESTORE || op->src == 0) {
		return (NULL);
	}
	snprintf(buf, size, "store cannot write: %s", store_errstr(op->src));
	return (buf);
}

void
sop_complete_all(broker *b)
{
	store_op *op;
	store_op *next;

	for (op = store_take_done(b->st); op != NULL; op = next) {
		sop *w = op->arg;
		next   = op->next;
		if (w->op.rv != TB_OK && w->t != NULL) {
			log_err(TASK_FMT
			    ": store could not record state "
			    "%s; the last stored state applies after a "
			    "restart",
			    TASK_ARGS(w->t),
			    tbp_state_name((int) w->op.state));
		}
		w->done(b, w);
		sop_discard(w);
	}
}
