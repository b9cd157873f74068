// tasks.c: the ops on tasks: submit, status, wait, cancel, list.
//
// Threads: loop thread only.

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../log.h"
#include "../util.h"
#include "ops.h"

#define LIST_BYTES_MAX (4u << 20) // results carried in one list reply

// handle_submit accepts the request's tasks; the ids go out after the
// commit (submit.c).
int
handle_submit(broker *b, srv_req *req)
{
	return (submit_tasks(b, req, req->req.tasks, req->req.ntasks, NULL));
}

// handle_status answers with the task: from memory while the loop holds
// it (its latest state may not be committed yet), else from the store.
int
handle_status(broker *b, srv_req *req)
{
	tbp_task_info ti;
	store_rec    *r;
	task         *t = task_find(b, req->req.id);
	int           rv;

	if (t != NULL && t->durable) {
		task_info(&t->core, &ti);
		return (tbp_enc_rep_task(
		    &req->out, req->req.op, req->req.req_id, &ti, false));
	}
	if (t != NULL) {
		return (TB_ENOTFOUND); // not accepted yet
	}
	if ((rv = store_get(b->st, req->req.id, &r)) != TB_OK) {
		return (rv);
	}
	task_info(r, &ti);
	rv = tbp_enc_rep_task(
	    &req->out, req->req.op, req->req.req_id, &ti, false);
	store_rec_free(r);
	return (rv);
}

// handle_wait holds the request until the task ends or the timeout (an
// hour at most) passes; a task that ended is answered at once.
int
handle_wait(broker *b, srv_req *req)
{
	task   *t  = task_find(b, req->req.id);
	int64_t ms = req->req.timeout_ms;

	if (t == NULL || !t->durable) {
		// Not in memory: it has ended (or never existed).
		return (handle_status(b, req));
	}
	ms = sched_hold_ms(ms, WAIT_MAX_MS);
	if (ms == 0) {
		tbp_task_info ti;
		task_info(&t->core, &ti);
		return (tbp_enc_rep_task(
		    &req->out, req->req.op, req->req.req_id, &ti, true));
	}
	return (held_wait(b, t, req, ms));
}

// handle_cancel ends a waiting task as cancelled once that is committed,
// or stops a running one and answers when it has ended.
int
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
	if (tbp_state_final((int) t->state)) {
		return (TB_ESTATE);
	}
	if (t->state == TB_STATE_RUNNING) {
		// Stop it as for a timeout; the reply waits for its end.
		if ((rv = held_wait(b, t, req, WAIT_MAX_MS)) != TB_OK) {
			return (rv);
		}
		t->cancelling = true;
		log_info(
		    "task %" PRIu64 ": cancel requested while running", t->id);
		if (t->run != NULL) {
			attempt_stop(b, t, t->run);
		} // else its start is being written: it is cancelled then
		return (TB_OK);
	}
	if (t->heap == SCHED_NONE) {
		return (TB_ESTATE);
	}
	task_unschedule(b, t);
	task_end(b, t, TB_STATE_CANCELLED, "cancelled");
	log_info(TASK_FMT ": cancelled", TASK_ARGS(t));
	held_keep(b, req); // answered by the write's done, or at once
	sop_write_task(b, t, sop_task_written, "cancelled", 0, req);
	return (TB_OK);
}

// handle_list answers with a page of tasks from the store, overlaid with
// the loop's newer fields for tasks it still holds (their latest state
// may not be committed yet).
int
handle_list(broker *b, srv_req *req)
{
	const tbp_req *in   = &req->req;
	store_rec    **recs = NULL;
	size_t         n    = 0;
	tbp_task_info *infos;
	size_t         nout;
	size_t         bytes = 0;
	store_filter   f;
	int64_t        now     = util_now_us();
	char          *queue   = NULL;
	char          *handler = NULL;
	int            rv;

	memset(&f, 0, sizeof(f));
	f.limit = in->limit == 0 ? 100 : in->limit;
	if (f.limit > TBP_MAX_LIST) {
		f.limit = TBP_MAX_LIST;
	}
	if ((in->queue.n > 0 && (queue = tbp_bytes_dup(in->queue)) == NULL) ||
	    (in->handler.n > 0 &&
	        (handler = tbp_bytes_dup(in->handler)) == NULL)) {
		free(queue);
		return (TB_ENOMEM);
	}
	f.queue    = queue;
	f.state    = in->state;
	f.handler  = handler;
	f.after_id = in->after_id;
	if (in->min_age_ms > 0) {
		f.created_before = sched_age_cutoff(now, in->min_age_ms);
	}
	if (in->max_age_ms > 0) {
		f.created_after = sched_age_cutoff(now, in->max_age_ms);
	}
	rv = store_list(b->st, &f, &recs, &n);
	free(handler);
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
		task_info(
		    t != NULL && t->durable ? &t->core : recs[i], &infos[i]);
		bytes += infos[i].result.n + infos[i].error.n;
		if (bytes > LIST_BYTES_MAX && i > 0) {
			nout = i; // the client pages on with after_id
			break;
		}
	}
	// Every record is freed below, also those past nout.
	rv = tbp_enc_rep_tasks(&req->out, in->req_id, infos, (uint32_t) nout);
	free(infos);
out:
	for (size_t i = 0; i < n; i++) {
		store_rec_free(recs[i]);
	}
	free(recs);
	return (rv);
}
