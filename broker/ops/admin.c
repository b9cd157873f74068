// admin.c: the broker and queue ops: ping, stats, queues, pause, resume,
// drain, retry, purge, shutdown.
//
// Threads: loop thread only.

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../log.h"
#include "../util.h"
#include "ops.h"

#define RETRY_MAX 100000 // tasks one retry request revives

// handle_ping answers with the broker's version and pid.
int
handle_ping(broker *b, srv_req *req)
{
	(void) b;
	return (tbp_enc_rep_ping(
	    &req->out, req->req.req_id, TB_VERSION_STR, (uint64_t) getpid()));
}

// handle_stats answers with the broker-wide figures.
int
handle_stats(broker *b, srv_req *req)
{
	tbp_stats st;
	queue    *q;
	queue    *tmp;

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
	HASH_ITER (hh, b->queues, q, tmp) {
		st.forever += q->forever;
		st.crashloop += q->crashloop;
	}
	{
		tbp_whstat *wh;
		uint32_t    nwh = worker_stats(b, &wh);
		int         rv;
		rv = tbp_enc_rep_stats_wh(
		    &req->out, req->req.req_id, &st, wh, nwh);
		free(wh);
		return (rv);
	}
}

// handle_queues answers with every queue's figures.
int
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
	HASH_ITER (hh, b->queues, q, tmp) {
		q->scratch = 0;
	}
	HASH_ITER (hh, b->by_id, t, ttmp) {
		if ((t->state == TB_STATE_PENDING ||
		        t->state == TB_STATE_FAILED) &&
		    t->durable &&
		    (t->q->scratch == 0 ||
		        (uint64_t) t->created_at < t->q->scratch)) {
			t->q->scratch = (uint64_t) t->created_at;
		}
	}
	HASH_ITER (hh, b->queues, q, tmp) {
		queue_info(q, now, &qs[n++]);
		if (n == TBP_MAX_QUEUES) {
			break;
		}
	}
	rv = tbp_enc_rep_queues(&req->out, req->req.req_id, qs, n);
	free(qs);
	return (rv);
}

// admin_pause_resume sets a queue's paused flag; the reply follows the
// commit of the flag.
static int
admin_pause_resume(broker *b, srv_req *req, bool paused)
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
	q->paused = paused;
	log_info("queue %s: %s", q->name, q->paused ? "paused" : "resumed");
	b->need_dispatch = true;
	b->check_drain   = true;
	memset(&op, 0, sizeof(op));
	op.kind   = STORE_OP_QUEUE_SET;
	op.queue  = q->name; // queues live as long as the broker
	op.paused = q->paused;
	return (sop_reply(b, req, &op, NULL));
}

// handle_pause stops a queue from starting tasks.
int
handle_pause(broker *b, srv_req *req)
{
	return (admin_pause_resume(b, req, true));
}

// handle_resume lets a paused queue start tasks again.
int
handle_resume(broker *b, srv_req *req)
{
	return (admin_pause_resume(b, req, false));
}

// handle_drain answers once a queue (or every queue) has drained, or at
// the timeout; with timeout 0, or when drained already, at once.
int
handle_drain(broker *b, srv_req *req)
{
	int64_t ms   = req->req.timeout_ms;
	char   *name = NULL;
	int     rv;

	if (req->req.queue.n > 0 &&
	    (name = tbp_bytes_dup(req->req.queue)) == NULL) {
		return (TB_ENOMEM);
	}
	if (held_drained(b, name) || ms == 0) {
		bool done = held_drained(b, name);
		free(name);
		return (tbp_enc_rep_drain(&req->out, req->req.req_id, !done));
	}
	ms = sched_hold_ms(ms, WAIT_MAX_MS);
	if ((rv = held_drain(b, req, name, ms)) != TB_OK) {
		free(name);
	}
	return (rv);
}

// admin_reinsert_committed is the done of a retried task's re-insert.
static void
admin_reinsert_committed(broker *b, sop *w)
{
	(void) b;
	w->t->writes--;
}

// reinsert_op is an INSERT of one task with the room it needs.
typedef struct reinsert_op {
	sop        w; // first: freed as a sop
	store_rec  rec;
	store_rec *recp;
	uint64_t   dup;
} reinsert_op;

// admin_reinsert queues the row of a task being retried again. The loop
// read the row from the store, but a prune or purge already queued may
// delete it before the retry's update lands; inserting it first (a no-op
// when the row is still there: same submission id) means the retried task
// is on disk whatever the order.
static void
admin_reinsert(broker *b, task *t)
{
	reinsert_op *ri = calloc(1, sizeof(*ri));

	if (ri == NULL) {
		log_warn(
		    "task %" PRIu64 ": no memory to re-insert its row", t->id);
		return;
	}
	ri->w.done       = admin_reinsert_committed;
	ri->w.t          = t;
	ri->w.op.arg     = &ri->w;
	ri->rec          = t->core; // a view: the task owns it all
	ri->recp         = &ri->rec;
	ri->w.op.kind    = STORE_OP_INSERT;
	ri->w.op.recs    = &ri->recp;
	ri->w.op.nrecs   = 1;
	ri->w.op.dup_ids = &ri->dup;
	t->writes++;
	sop_submit(b, &ri->w);
}

// admin_revive puts an ended (dead or cancelled) task back to pending with
// its attempts reset; the write is one part of mc.
static void
admin_revive(broker *b, task *t, multi_ctx *mc)
{
	sop *w;

	task_set_state(b, t, TB_STATE_PENDING);
	if (t->forever) {
		t->q->forever++;
	}
	task_key_index(b, t);
	t->attempts    = 0;
	t->crashes     = 0; // a quarantined task gets its crashes back too
	t->run_at      = util_now_us();
	t->started_at  = 0;
	t->finished_at = 0;
	free(t->error);
	free(t->result);
	t->error      = NULL;
	t->result     = NULL;
	t->result_len = 0;
	held_multi_add(mc, 1);
	admin_reinsert(b, t);
	if ((w = sop_write_task(b, t, sop_task_written, NULL, 0, NULL)) !=
	    NULL) {
		w->mc = mc; // one more part; its done completes it
	} else {
		held_multi_done(mc, TB_OK, 0);
	}
	log_info(TASK_FMT ": retried by request", TASK_ARGS(t));
	task_schedule(b, t);
}

static bool
admin_retryable(uint32_t state)
{
	return (state == TB_STATE_DEAD || state == TB_STATE_CANCELLED);
}

// admin_retry_one finds task id, which must have ended dead or cancelled,
// and takes it into the table. Returns TB_OK, TB_ESTATE, TB_ENOTFOUND...
static int
admin_retry_one(broker *b, uint64_t id, task **tp)
{
	task      *t = task_find(b, id);
	store_rec *r;
	int        rv;

	if (t != NULL) {
		*tp = t;
		return (t->durable && admin_retryable(t->state) ? TB_OK
		                                                : TB_ESTATE);
	}
	if ((rv = store_get(b->st, id, &r)) != TB_OK) {
		return (rv);
	}
	if (!admin_retryable(r->state)) {
		store_rec_free(r);
		return (TB_ESTATE);
	}
	if ((t = task_from_rec(b, r)) == NULL) {
		return (TB_ENOMEM);
	}
	task_index(b, t);
	*tp = t;
	return (TB_OK);
}

// admin_retry_all revives every task of queue (NULL: any) in state,
// paging through the store; a task the loop still holds is skipped (its
// final write is in flight; it is picked up next time).
static int
admin_retry_all(broker *b, multi_ctx *mc, const char *queue, int state)
{
	uint64_t after   = 0;
	uint64_t revived = 0;
	int      rv      = TB_OK;

	while (revived < RETRY_MAX) {
		store_filter f;
		store_rec  **recs = NULL;
		size_t       n    = 0;
		memset(&f, 0, sizeof(f));
		f.queue    = queue;
		f.state    = state;
		f.after_id = after;
		f.limit    = 1000;
		if ((rv = store_list(b->st, &f, &recs, &n)) != TB_OK ||
		    n == 0) {
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
			admin_revive(b, t, mc);
			revived++;
		}
		free(recs);
		if (rv != TB_OK) {
			break;
		}
	}
	return (rv);
}

// handle_retry puts dead or cancelled tasks (one by id, or every one of a
// queue and state) back to pending; the count goes out once every write
// has committed.
int
handle_retry(broker *b, srv_req *req)
{
	const tbp_req *in = &req->req;
	multi_ctx     *mc;
	char          *queue = NULL;
	int            state = in->state >= 0 ? in->state : TB_STATE_DEAD;
	int            rv;

	if (b->phase != PHASE_RUNNING) {
		return (TB_ESHUTTINGDOWN);
	}
	if (!in->have_id && !admin_retryable((uint32_t) state)) {
		return (TB_EINVAL);
	}
	if ((mc = held_multi_new(req)) == NULL) {
		return (TB_ENOMEM);
	}
	if (in->have_id) {
		task *t = NULL;
		if ((rv = admin_retry_one(b, in->id, &t)) != TB_OK) {
			held_multi_free(mc);
			return (rv);
		}
		admin_revive(b, t, mc);
		held_multi_seal(b, mc, TB_OK);
		return (TB_OK);
	}
	if (in->queue.n > 0 && (queue = tbp_bytes_dup(in->queue)) == NULL) {
		held_multi_free(mc);
		return (TB_ENOMEM);
	}
	rv = admin_retry_all(b, mc, queue, state);
	free(queue);
	held_multi_seal(b, mc, rv);
	return (TB_OK);
}

// admin_purge_committed is the done of a purge's delete: the figures lose
// what only the store held, and the op's part of the reply completes.
static void
admin_purge_committed(broker *b, sop *w)
{
	uint64_t count = 0;

	if (w->op.nids == 0) {
		// Rows deleted from the store only: take them off the figures
		// (in-memory purges were counted already).
		queue_deleted(
		    b, w->q, (uint32_t) w->op.del_state, w->op.count);
		count = w->op.count;
	}
	held_multi_done(w->mc, w->op.rv, count);
}

// admin_purge_memory deletes waiting tasks (pending, or failed and
// waiting for a retry), which the loop holds, and adds them to mc.
static int
admin_purge_memory(broker *b, multi_ctx *mc, const char *qname, uint32_t state,
    int64_t before)
{
	uint64_t *ids = NULL;
	size_t    n = 0, cap = 0;
	task     *t;
	task     *tmp;
	sop      *w;

	HASH_ITER (hh, b->by_id, t, tmp) {
		if (t->state != state || !t->durable ||
		    t->heap == SCHED_NONE || t->writes > 0 ||
		    t->waiters != NULL || t->ackwaits != NULL ||
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
		task_unschedule(b, t);
		b->counts[state]--;
		t->q->counts[state]--;
		if (t->forever) {
			t->q->forever--;
			if (t->fv.crashloop) {
				t->q->crashloop--;
			}
		}
		task_forget(b, t);
	}
	b->check_drain = true;
	if (n == 0) {
		free(ids);
		return (TB_OK);
	}
	if ((w = sop_alloc(admin_purge_committed, NULL)) == NULL) {
		// The tasks are gone from memory but not from the store; they
		// come back at the next start. Say so.
		log_err(
		    "purge: no memory to delete %zu task(s) from the store",
		    n);
		free(ids);
		return (TB_ENOMEM);
	}
	w->ids     = ids;
	w->op.kind = STORE_OP_DELETE;
	w->op.ids  = ids;
	w->op.nids = (uint32_t) n;
	w->mc      = mc;
	held_multi_add(mc, n);
	sop_submit(b, w);
	return (TB_OK);
}

// admin_purge_store deletes ended tasks in state, which only the store
// holds: one delete op per queue that has any.
static int
admin_purge_store(
    broker *b, multi_ctx *mc, const char *qname, int32_t state, int64_t before)
{
	queue *q;
	queue *tmp;

	HASH_ITER (hh, b->queues, q, tmp) {
		sop *w;
		if ((qname != NULL && strcmp(q->name, qname) != 0) ||
		    q->counts[state] == 0) {
			continue;
		}
		if ((w = sop_alloc(admin_purge_committed, NULL)) == NULL) {
			return (TB_ENOMEM);
		}
		w->q                 = q;
		w->mc                = mc;
		w->op.kind           = STORE_OP_DELETE;
		w->op.queue          = q->name;
		w->op.del_state      = state;
		w->op.created_before = before;
		held_multi_add(mc, 0);
		sop_submit(b, w);
	}
	return (TB_OK);
}

// handle_purge deletes tasks of a queue (or all) in one state, older than
// min_age_ms; the count goes out once every delete has committed.
int
handle_purge(broker *b, srv_req *req)
{
	const tbp_req *in = &req->req;
	multi_ctx     *mc;
	char          *qname  = NULL;
	int64_t        before = 0;
	int            rv;

	if (in->state < 0 || in->state > TB_STATE_CANCELLED ||
	    in->state == TB_STATE_RUNNING) {
		return (TB_EINVAL); // running tasks are cancelled, not purged
	}
	if (in->queue.n > 0 && (qname = tbp_bytes_dup(in->queue)) == NULL) {
		return (TB_ENOMEM);
	}
	if (in->min_age_ms > 0) {
		before = sched_age_cutoff(util_now_us(), in->min_age_ms);
	}
	if ((mc = held_multi_new(req)) == NULL) {
		free(qname);
		return (TB_ENOMEM);
	}
	if (in->state == TB_STATE_PENDING || in->state == TB_STATE_FAILED) {
		rv = admin_purge_memory(
		    b, mc, qname, (uint32_t) in->state, before);
	} else {
		rv = admin_purge_store(b, mc, qname, in->state, before);
	}
	free(qname);
	log_info("purge: %s tasks of %s older than %" PRIu64 " ms",
	    tbp_state_name(in->state),
	    in->queue.n > 0 ? "one queue" : "every queue", in->min_age_ms);
	held_multi_seal(b, mc, rv);
	return (TB_OK);
}

// handle_shutdown acknowledges the request; the shutdown begins once the
// reply is on its way (at the loop's next pass).
int
handle_shutdown(broker *b, srv_req *req)
{
	int rv = tbp_enc_rep_empty(&req->out, req->req.op, req->req.req_id);

	if (rv == TB_OK) {
		b->shutdown_why = "shutdown requested by a client";
	}
	return (rv);
}
