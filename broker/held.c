// held.c: requests held past their handler, and the one way to hold one.
//
// DESIGN. Most requests are answered when their handler returns. Some are
// answered later: a submit or an admin write once its transaction has
// committed, a wait when its task ends, a drain when its queue empties, a
// purge or retry once all of its store ops have committed. The handler
// that keeps such a request calls held_keep (directly, or through the
// calls below that hold it) and returns TB_OK; the dispatcher then leaves
// the request alone, and whoever holds it answers it exactly once. This
// is Redis's blocked.c idea: a flag set by the handler, read by the
// dispatcher, not a magic return value. The flag is the broker's, not the
// request's: once a reply has been sent the request may be reused by the
// server, so the dispatcher must not read it.
//
// Waiters are parked on their task (a list per task) with a timer each;
// drainers on the broker, checked whenever figures change (check_drain).
// At shutdown every held wait and drain is answered shutting_down.
//
// Threads: loop thread only.
// Ownership: a waiter or drainer owns its timer and is freed by the
// timer's close callback; a multi_ctx frees itself with its last part.

#include <stdlib.h>

#include "brokerimpl.h"

// waiter is a wait (or running-task cancel) request parked on a task.
typedef struct waiter {
	srv_req       *req;
	task          *t;
	uv_timer_t     timer;
	struct waiter *next;
	struct waiter *prev;
} waiter;

// drainer is a drain request waiting for a queue (or all) to empty.
struct drainer {
	srv_req        *req;
	char           *queue; // NULL: every queue
	broker         *b;
	uv_timer_t      timer;
	struct drainer *next;
	struct drainer *prev;
};

// multi_ctx gathers a request that waits for several store ops.
struct multi_ctx {
	srv_req *req;
	uint32_t parts; // ops not yet committed, plus one until sealed
	uint64_t count;
	int      rv;
};

void
held_keep(broker *b, srv_req *req)
{
	(void) req;
	b->req_held = true;
}

// ---- waiters --------------------------------------------------------------

static void
held_waiter_closed(uv_handle_t *h)
{
	free(h->data);
}

static void
held_waiter_unlink(waiter *w)
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
	uv_close((uv_handle_t *) &w->timer, held_waiter_closed);
}

static void
held_waiter_timeout(uv_timer_t *timer)
{
	waiter       *w = timer->data;
	tbp_task_info ti;

	task_info(&w->t->core, &ti);
	reply_task(w->req, &ti, true);
	held_waiter_unlink(w);
}

int
held_wait(broker *b, task *t, srv_req *req, int64_t ms)
{
	waiter *w;

	if ((w = calloc(1, sizeof(*w))) == NULL) {
		return (TB_ENOMEM);
	}
	w->req = req;
	w->t   = t;
	uv_timer_init(&b->loop, &w->timer);
	w->timer.data = w;
	w->next       = t->waiters;
	if (t->waiters != NULL) {
		t->waiters->prev = w;
	}
	t->waiters = w;
	uv_timer_start(&w->timer, held_waiter_timeout, (uint64_t) ms, 0);
	held_keep(b, req);
	return (TB_OK);
}

void
held_wake(broker *b, task *t)
{
	tbp_task_info ti;

	(void) b;
	task_info(&t->core, &ti);
	while (t->waiters != NULL) {
		waiter *w = t->waiters;
		reply_task(w->req, &ti, false);
		held_waiter_unlink(w);
	}
}

// ---- drainers -------------------------------------------------------------

bool
held_drained(broker *b, const char *name)
{
	queue *q;

	if (name == NULL) {
		return (b->counts[TB_STATE_PENDING] +
		        b->counts[TB_STATE_FAILED] +
		        b->counts[TB_STATE_RUNNING] + b->inflight ==
		    0);
	}
	HASH_FIND_STR(b->queues, name, q);
	return (
	    q == NULL || queue_waiting(q) + q->counts[TB_STATE_RUNNING] == 0);
}

static void
held_drainer_closed(uv_handle_t *h)
{
	drainer *d = h->data;

	free(d->queue);
	free(d);
}

// held_drainer_end answers d (unless it was answered already: req NULL)
// and frees it.
static void
held_drainer_end(broker *b, drainer *d, bool timed_out)
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
		(void) tbp_enc_rep_drain(
		    &d->req->out, d->req->req.req_id, timed_out);
		srv_reply(d->req);
	}
	uv_timer_stop(&d->timer);
	uv_close((uv_handle_t *) &d->timer, held_drainer_closed);
}

static void
held_drainer_timeout(uv_timer_t *timer)
{
	drainer *d = timer->data;

	held_drainer_end(d->b, d, true);
}

int
held_drain(broker *b, srv_req *req, char *name, int64_t ms)
{
	drainer *d;

	if ((d = calloc(1, sizeof(*d))) == NULL) {
		return (TB_ENOMEM);
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
	uv_timer_start(&d->timer, held_drainer_timeout, (uint64_t) ms, 0);
	held_keep(b, req);
	return (TB_OK);
}

void
held_drain_check(broker *b)
{
	drainer *d = b->drainers;

	b->check_drain = false;
	while (d != NULL) {
		drainer *next = d->next;
		if (held_drained(b, d->queue)) {
			held_drainer_end(b, d, false);
		}
		d = next;
	}
}

void
held_fail_all(broker *b, int code)
{
	task *t;
	task *tmp;

	while (b->drainers != NULL) {
		drainer *d = b->drainers;
		reply_error(d->req, TB_ESHUTTINGDOWN, NULL);
		d->req = NULL;
		held_drainer_end(b, d, true);
	}
	HASH_ITER (hh, b->by_id, t, tmp) {
		while (t->waiters != NULL) {
			waiter *w = t->waiters;
			reply_error(w->req, code, NULL);
			held_waiter_unlink(w);
		}
	}
}

// ---- multi-part replies ---------------------------------------------------

multi_ctx *
held_multi_new(srv_req *req)
{
	multi_ctx *mc = calloc(1, sizeof(*mc));

	if (mc != NULL) {
		mc->req   = req;
		mc->parts = 1; // released by held_multi_seal
	}
	return (mc);
}

void
held_multi_add(multi_ctx *mc, uint64_t count)
{
	mc->parts++;
	mc->count += count;
}

void
held_multi_done(multi_ctx *mc, int rv, uint64_t count)
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
		reply_count(mc->req, mc->count);
	}
	free(mc);
}

void
held_multi_seal(broker *b, multi_ctx *mc, int rv)
{
	held_keep(b, mc->req);
	held_multi_done(mc, rv, 0);
}

void
held_multi_free(multi_ctx *mc)
{
	free(mc);
}
