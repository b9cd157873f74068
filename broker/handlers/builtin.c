// handlers/builtin.c: the built-in handlers noop, sleep, fail and block;
// see builtin.h. Loop thread, except block_start, which runs on a worker
// thread.

#include "handlers/builtin.h"

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <taskbroker/defs.h>

#include "handlers/handlers.h"

// payload_ms reads the non-negative integer "ms" of the payload into *msp.
static int
payload_ms(run *r, uint64_t *msp)
{
	msgpack_unpacked      up;
	const msgpack_object *v;
	int                   rv = TB_OK;

	msgpack_unpacked_init(&up);
	if (run_payload(r, &up) != TB_OK) {
		rv = TB_EBADREQ;
	} else if ((v = payload_get(&up.data, "ms")) == NULL ||
	    v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
		rv = TB_EBADREQ;
	} else {
		*msp = v->via.u64;
	}
	msgpack_unpacked_destroy(&up);
	if (rv != TB_OK) {
		run_set_error(r,
		    "payload must be a map with a non-negative "
		    "integer \"ms\"");
	}
	return (rv);
}

// noop: succeeds at once.
static int
noop_start(run *r, void *hdata)
{
	(void) hdata;
	run_finish(r);
	return (TB_OK);
}

// fail: fails at once, with the payload's "message" if it has one.
static int
fail_start(run *r, void *hdata)
{
	msgpack_unpacked      up;
	const msgpack_object *v;

	msgpack_unpacked_init(&up);
	if (run_payload(r, &up) == TB_OK &&
	    (v = payload_get(&up.data, "message")) != NULL &&
	    v->type == MSGPACK_OBJECT_STR) {
		run_set_error(
		    r, "%.*s", (int) v->via.str.size, v->via.str.ptr);
	} else {
		run_set_error(r, "failed on purpose");
	}
	msgpack_unpacked_destroy(&up);
	run_finish(r);
	return (TB_OK);
}

// sleep: a loop timer; costs no thread while it waits.
static void
sleep_closed(uv_handle_t *h)
{
	run *r = h->data;

	free(h);
	r->hdata = NULL;
	run_finish(r);
}

static void
sleep_fired(uv_timer_t *t)
{
	uv_close((uv_handle_t *) t, sleep_closed);
}

static int
sleep_start(run *r, void *hdata)
{
	uv_timer_t *t;
	uint64_t    ms;
	int         rv;

	if ((rv = payload_ms(r, &ms)) != TB_OK) {
		return (rv);
	}
	if ((t = malloc(sizeof(*t))) == NULL) {
		run_set_error(r, "out of memory");
		return (TB_ENOMEM);
	}
	uv_timer_init(r->loop, t);
	t->data  = r;
	r->hdata = t;
	uv_timer_start(t, sleep_fired, ms, 0);
	return (TB_OK);
}

static void
sleep_cancel(run *r, void *hdata)
{
	uv_timer_t *t = r->hdata;

	if (t != NULL && !uv_is_closing((uv_handle_t *) t)) {
		uv_timer_stop(t);
		run_set_error(r, "cancelled");
		uv_close((uv_handle_t *) t, sleep_closed);
	}
}

// block: sleeps on a worker thread, in slices so a cancel is seen soon.
static int
block_start(run *r, void *hdata)
{
	uint64_t        ms;
	struct timespec ts;

	if (payload_ms(r, &ms) != TB_OK) {
		return (TB_EBADREQ);
	}
	while (ms > 0 && !run_is_cancelled(r)) {
		uint64_t slice = ms < 10 ? ms : 10;
		ts.tv_sec      = 0;
		ts.tv_nsec     = (long) slice * 1000000L;
		nanosleep(&ts, NULL);
		ms -= slice;
	}
	if (run_is_cancelled(r)) {
		run_set_error(r, "cancelled");
	}
	return (TB_OK);
}

static const tb_handler_def builtin_handlers[] = {
	{ "noop", TB_HANDLER_LOOP, noop_start, NULL, NULL },
	{ "sleep", TB_HANDLER_LOOP, sleep_start, sleep_cancel, NULL },
	{ "fail", TB_HANDLER_LOOP, fail_start, NULL, NULL },
	{ "block", TB_HANDLER_POOL, block_start, NULL, NULL },
};

int
builtin_register(void)
{
	int rv;

	for (size_t i = 0;
	     i < sizeof(builtin_handlers) / sizeof(builtin_handlers[0]); i++) {
		if ((rv = handlers_register(&builtin_handlers[i])) != TB_OK) {
			return (rv);
		}
	}
	return (TB_OK);
}
