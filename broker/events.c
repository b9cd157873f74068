// events.c: see events.h.

#include "events.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>

#include <tbp.h>

#include "guard.h"
#include "log.h"
#include "util.h"

struct events {
	nng_socket      sock;
	guard          *guard;
	uint64_t        seq;
	msgpack_sbuffer buf; // reused for every event
};

int
events_open(events **ep, uv_loop_t *loop, const char *url,
    const guard_access *access, const remote *rem)
{
	events *ev;
	int     rv;

	if ((ev = calloc(1, sizeof(*ev))) == NULL) {
		return (TB_ENOMEM);
	}
	msgpack_sbuffer_init(&ev->buf);
	if ((rv = nng_pub0_open(&ev->sock)) != 0) {
		log_err("events: open pub socket: %s", nng_strerror(rv));
		msgpack_sbuffer_destroy(&ev->buf);
		free(ev);
		return (TB_ESYSTEM);
	}
	if ((rv = guard_listen(&ev->guard, loop, ev->sock, url, "events",
	         access, remote_tls(rem))) != TB_OK) {
		events_close(ev);
		return (rv);
	}
	*ep = ev;
	return (TB_OK);
}

void
events_publish(events *ev, const char *event, const taskrec *t, uint32_t state,
    uint32_t attempt, uint64_t duration_us)
{
	tbp_event e;
	int       rv;

	memset(&e, 0, sizeof(e));
	e.seq         = ++ev->seq;
	e.event       = tbp_str(event);
	e.id          = t->id;
	e.queue       = tbp_str(t->queue);
	e.handler     = tbp_str(t->handler);
	e.state       = state;
	e.attempt     = attempt;
	e.crashes     = t->crashes;
	e.duration_us = duration_us;
	e.time        = util_now_us();
	e.result.p    = t->result;
	e.result.n    = (uint32_t) t->result_len;
	e.error       = tbp_str(t->error);

	msgpack_sbuffer_clear(&ev->buf);
	if (tbp_enc_event(&ev->buf, &e) != TB_OK) {
		log_warn("events: cannot encode event %s for task %llu", event,
		    (unsigned long long) t->id);
		return;
	}
	// PUB never blocks; it drops for slow subscribers. NONBLOCK keeps
	// that promise even if nng's behaviour ever changes.
	if ((rv = nng_send(ev->sock, ev->buf.data, ev->buf.size,
	         NNG_FLAG_NONBLOCK)) != 0) {
		log_debug("events: send seq %llu: %s",
		    (unsigned long long) e.seq, nng_strerror(rv));
	}
}

void
events_close(events *ev)
{
	if (ev == NULL) {
		return;
	}
	guard_close(ev->guard);
	nng_close(ev->sock);
	msgpack_sbuffer_destroy(&ev->buf);
	free(ev);
}
