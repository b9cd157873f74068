// periodic.c: periodic schedules: loading, due times, firing, and their
// stored state.
//
// DESIGN. Every schedule has a next due time; one timer is set for the
// earliest (periodic_arm). When it fires, each due schedule submits its
// task through submit.c with a submission id made of its name and due
// time (sched_sid), so a fire repeated after a crash is the same task, and
// its state (next_at, last_at, fired) is written. A broker that was down
// over several due times fires once, or with catch_up once per missed
// time, up to CATCH_UP_MAX in one pass.
//
// Threads: loop thread only.
// Ownership: the broker's schedule table owns each periodic and its
// store_sched; a store op writes a copy of its own.

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "brokerimpl.h"
#include "log.h"
#include "util.h"

#define CATCH_UP_MAX 1000 // missed due times fired per pass

void
periodic_free(periodic *s)
{
	store_sched_free(s->sc);
	free(s);
}

// periodic_copy returns a deep copy of sc for a store op to own, or NULL.
static store_sched *
periodic_copy(const store_sched *sc)
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
	if (sc->payload_len > 0 &&
	    (c->payload = malloc(sc->payload_len)) != NULL) {
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

int
periodic_write(broker *b, periodic *s, srv_req *req)
{
	store_sched *copy = periodic_copy(s->sc);
	store_op     op;
	sop         *w;

	if (copy == NULL) {
		return (TB_ENOMEM);
	}
	memset(&op, 0, sizeof(op));
	op.kind = STORE_OP_SCHED_PUT;
	if (req != NULL) {
		return (sop_reply(b, req, &op, copy));
	}
	if ((w = sop_alloc(sop_done_nothing, NULL)) == NULL) {
		store_sched_free(copy);
		return (TB_ENOMEM);
	}
	w->op.kind  = STORE_OP_SCHED_PUT;
	w->op.sched = copy;
	w->sc_own   = copy;
	sop_submit(b, w);
	return (TB_OK);
}

int64_t
periodic_next(const periodic *s, int64_t due, int64_t t_us)
{
	return (sched_next_due(sched_every_us(s->sc->every_ms),
	    s->sc->cron != NULL ? &s->cron : NULL, due, t_us));
}

// periodic_fire_one submits the task of s for due time due.
static void
periodic_fire_one(broker *b, periodic *s, int64_t due)
{
	store_sched *sc = s->sc;
	tbp_task_in  in;
	uint8_t      sid[TB_SID_LEN];
	uint64_t     next = b->next_id;
	int          rv;

	memset(&in, 0, sizeof(in));
	sched_sid(sc->name, due, sid);
	in.sid      = (tbp_bytes) { sid, TB_SID_LEN };
	in.handler  = tbp_str(sc->handler);
	in.queue    = tbp_str(sc->queue);
	in.payload  = (tbp_bytes) { sc->payload, (uint32_t) sc->payload_len };
	in.priority = sc->priority;
	in.max_attempts = sc->max_attempts;
	in.timeout_ms   = sc->timeout_ms;
	if ((rv = submit_tasks(b, NULL, &in, 1, sc->name)) != TB_OK) {
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

// periodic_fire fires every schedule that is due: once, however many due
// times were missed, or once per missed time (up to CATCH_UP_MAX) with
// catch_up.
static void
periodic_fire(uv_timer_t *timer)
{
	broker   *b   = timer->data;
	int64_t   now = util_now_us();
	periodic *s;
	periodic *tmp;

	HASH_ITER (hh, b->scheds, s, tmp) {
		store_sched *sc = s->sc;
		int          n  = 0;
		if (sc->paused || sc->next_at > now ||
		    b->phase != PHASE_RUNNING) {
			continue;
		}
		do {
			int64_t due = sc->next_at;
			periodic_fire_one(b, s, due);
			sc->next_at =
			    periodic_next(s, due, sc->catch_up ? due : now);
		} while (
		    sc->catch_up && sc->next_at <= now && ++n < CATCH_UP_MAX);
		if (periodic_write(b, s, NULL) != TB_OK) {
			log_err("schedule %s: no memory to record its state",
			    sc->name);
		}
	}
	periodic_arm(b);
}

void
periodic_arm(broker *b)
{
	periodic *s;
	periodic *tmp;
	int64_t   first = INT64_MAX;
	int64_t   now   = util_now_us();

	HASH_ITER (hh, b->scheds, s, tmp) {
		if (!s->sc->paused && s->sc->next_at < first) {
			first = s->sc->next_at;
		}
	}
	if (first == INT64_MAX || b->phase != PHASE_RUNNING) {
		uv_timer_stop(&b->sched_timer);
		return;
	}
	uv_timer_start(&b->sched_timer, periodic_fire,
	    first > now ? (uint64_t) ((first - now + 999) / 1000) : 0, 0);
}

int
periodic_load(broker *b, store_sched *sc)
{
	periodic   *s;
	const char *why = NULL;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		store_sched_free(sc);
		return (TB_ENOMEM);
	}
	s->sc = sc;
	if (sc->cron != NULL &&
	    tbt_cron_parse(&s->cron, sc->cron, &why) != TB_OK) {
		log_err("schedule %s: bad cron '%s': %s; ignored", sc->name,
		    sc->cron, why != NULL ? why : "?");
		periodic_free(s);
		return (TB_OK);
	}
	if (sc->cron == NULL && sc->every_ms == 0) {
		log_err(
		    "schedule %s: neither every nor cron; ignored", sc->name);
		periodic_free(s);
		return (TB_OK);
	}
	HASH_ADD_KEYPTR(hh, b->scheds, sc->name, strlen(sc->name), s);
	return (TB_OK);
}

periodic *
periodic_find(broker *b, tbp_bytes name)
{
	periodic *s;

	HASH_FIND(hh, b->scheds, name.p, name.n, s);
	return (s);
}

void
periodic_info(const periodic *s, tbp_sched *o)
{
	const store_sched *sc = s->sc;

	memset(o, 0, sizeof(*o));
	o->name     = tbp_str(sc->name);
	o->handler  = tbp_str(sc->handler);
	o->queue    = tbp_str(sc->queue);
	o->payload  = (tbp_bytes) { sc->payload, (uint32_t) sc->payload_len };
	o->priority = sc->priority;
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
