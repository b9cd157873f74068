// schedules.c: the ops on periodic schedules: add (or replace), list,
// remove, pause and resume.
//
// Threads: loop thread only.

#include <stdlib.h>
#include <string.h>

#include "../log.h"
#include "../util.h"
#include "ops.h"

// schedules_from_in builds a stored schedule from a request's definition,
// or NULL when out of memory.
static store_sched *
schedules_from_in(const tbp_sched *in, int64_t now)
{
	store_sched *sc;

	if ((sc = calloc(1, sizeof(*sc))) == NULL) {
		return (NULL);
	}
	sc->name    = tbp_bytes_dup(in->name);
	sc->handler = tbp_bytes_dup(in->handler);
	sc->queue =
	    in->queue.n > 0 ? tbp_bytes_dup(in->queue) : strdup("default");
	sc->cron = in->cron.n > 0 ? tbp_bytes_dup(in->cron) : NULL;
	if (in->payload.n > 0 &&
	    (sc->payload = malloc(in->payload.n)) != NULL) {
		memcpy(sc->payload, in->payload.p, in->payload.n);
		sc->payload_len = in->payload.n;
	}
	if (sc->name == NULL || sc->handler == NULL || sc->queue == NULL ||
	    (in->cron.n > 0 && sc->cron == NULL) ||
	    (in->payload.n > 0 && sc->payload == NULL)) {
		store_sched_free(sc);
		return (NULL);
	}
	sc->priority     = in->priority;
	sc->max_attempts = in->max_attempts;
	sc->timeout_ms   = in->timeout_ms;
	sc->every_ms     = in->cron.n > 0 ? 0 : in->every_ms;
	sc->catch_up     = in->catch_up;
	sc->paused       = in->paused;
	sc->created_at   = now;
	return (sc);
}

// handle_sched_add adds a schedule, or replaces the one with its name
// (keeping its history); the reply follows the commit.
int
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
	        NULL &&
	    worker_handler_find(
	        b, (const char *) in->handler.p, in->handler.n) == NULL) {
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
	if ((sc = schedules_from_in(in, now)) == NULL) {
		return (TB_ENOMEM);
	}
	HASH_FIND_STR(b->scheds, sc->name, old);
	if (old != NULL) {
		// Replacing a definition keeps its history.
		sc->created_at = old->sc->created_at;
		sc->last_at    = old->sc->last_at;
		sc->fired      = old->sc->fired;
		sc->last_task  = old->sc->last_task;
		HASH_DEL(b->scheds, old);
		periodic_free(old);
	}
	if ((rv = periodic_load(b, sc)) != TB_OK) {
		return (rv);
	}
	// periodic_load may have freed sc (a definition it ignores).
	if ((s = periodic_find(b, in->name)) == NULL) {
		return (TB_EINVAL);
	}
	if (s->sc->cron != NULL) {
		s->sc->next_at = tbt_cron_next(&s->cron, now);
	} else {
		s->sc->next_at = now + sched_every_us(s->sc->every_ms);
	}
	log_info("schedule %s: %s, handler %s, queue %s", s->sc->name,
	    old != NULL ? "replaced" : "added", s->sc->handler, s->sc->queue);
	periodic_arm(b);
	return (periodic_write(b, s, req));
}

// handle_sched_list answers with every schedule.
int
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
	HASH_ITER (hh, b->scheds, s, tmp) {
		if (n == TBP_MAX_SCHEDULES) {
			break;
		}
		periodic_info(s, &list[n++]);
	}
	rv = tbp_enc_rep_scheds(&req->out, req->req.req_id, list, n);
	free(list);
	return (rv);
}

// handle_sched_rm removes a schedule; the reply follows the commit.
int
handle_sched_rm(broker *b, srv_req *req)
{
	periodic    *s = periodic_find(b, req->req.name);
	store_sched *own;
	store_op     op;

	if (s == NULL) {
		return (TB_ENOTFOUND);
	}
	HASH_DEL(b->scheds, s);
	log_info("schedule %s: removed", s->sc->name);
	memset(&op, 0, sizeof(op));
	op.kind = STORE_OP_SCHED_DEL;
	own     = s->sc; // the op owns the definition until it has committed
	free(s);
	periodic_arm(b);
	return (sop_reply(b, req, &op, own));
}

// handle_sched_pause pauses or resumes a schedule; the reply follows the
// commit.
int
handle_sched_pause(broker *b, srv_req *req)
{
	periodic *s   = periodic_find(b, req->req.name);
	int64_t   now = util_now_us();

	if (s == NULL) {
		return (TB_ENOTFOUND);
	}
	s->sc->paused = req->req.paused;
	if (!s->sc->paused && !s->sc->catch_up && s->sc->next_at < now) {
		// Resumed: the time it was paused over is not made up.
		s->sc->next_at = periodic_next(s, s->sc->next_at, now);
	}
	log_info("schedule %s: %s", s->sc->name,
	    s->sc->paused ? "paused" : "resumed");
	periodic_arm(b);
	return (periodic_write(b, s, req));
}
