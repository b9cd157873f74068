// sub.c: event subscriptions (tb_sub) and events (tb_event).
//
// A tb_sub is an nng sub0 socket dialled without blocking: events are best
// effort, and a subscriber may well start before the broker, in which case
// nng keeps trying to connect in the background. As for tb_client, the pid
// of the opening process is recorded and checked before every nng call,
// because nng aborts when used in a forked child. A tb_sub is used by one
// thread at a time, so it needs no lock.
//
// Threads: a tb_sub is used by one thread at a time; tb_event is plain
// data, usable from any thread.
// Lock order: no locks.
// Ownership: tb_sub_recv hands each event to the caller (tb_event_free);
// its strings live as long as the event.

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include <taskbroker.h>

#include "client_impl.h"
#include "tbp.h"

#define SUB_RECVMAXSZ (1u << 20) // an event carries at most one result
#define SUB_RECONNMINT_MS 10
#define SUB_RECONNMAXT_MS 1000
#define SUB_QUIET_MS 20      // no event for this long: the wire is idle
#define SUB_QUIET_MAX_MS 200 // what tb_sub_close waits for that at most

// SUB_SLICE_MS: tb_sub_recv waits in slices; after a slice with no event,
// a dialer that has stopped is replaced (tbc_redial).
#define SUB_SLICE_MS 500

struct tb_sub {
	pid_t        pid; // the process that opened the subscription
	nng_socket   sock;
	tbc_redialer redial; // its one dialer
	char        *url;
	tbc_conn     conn; // the settings, for a new dialer
};

struct tb_event {
	char    *topic;
	char    *event;
	char    *queue;
	char    *handler;
	char    *error;  // NULL: none
	uint8_t *result; // NULL: none
	size_t   result_len;
	uint64_t seq;
	tb_id    id;
	int      state;
	uint32_t attempt;
	uint32_t crashes;
	uint64_t duration_us;
	int64_t  time;
};

int
tb_sub_open(tb_sub **sp, const char *url, const char *prefix)
{
	return (tb_sub_open_opts(sp, url, prefix, NULL));
}

// sub_free frees what s holds, its socket already closed.
static void
sub_free(tb_sub *s)
{
	tbc_conn_fini(&s->conn);
	free(s->url);
	free(s);
}

int
tb_sub_open_opts(
    tb_sub **sp, const char *url, const char *prefix, const tb_conn_opts *opts)
{
	tb_sub *s;
	int     rv;

	if (sp == NULL) {
		return (TB_EINVAL);
	}
	if (url == NULL) {
		url = tb_default_events_url();
	}
	if (prefix == NULL) {
		prefix = "";
	}
	if (!tbc_url_ok(url)) {
		return (TB_EINVAL);
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		return (TB_ENOMEM);
	}
	// The settings are kept for a dialer that replaces a stopped one
	// (tbc_redial).
	if ((rv = tbc_conn_init(&s->conn, opts)) != TB_OK) {
		free(s);
		return (rv);
	}
	if ((s->url = strdup(url)) == NULL) {
		sub_free(s);
		return (TB_ENOMEM);
	}
	s->pid = getpid();
	if ((rv = nng_sub0_open(&s->sock)) != 0) {
		sub_free(s);
		return (tbp_nng_err(rv, TBP_NNG_CLIENT));
	}
	if ((rv = nng_socket_set_size(
	         s->sock, NNG_OPT_RECVMAXSZ, SUB_RECVMAXSZ)) != 0 ||
	    (rv = nng_socket_set_ms(
	         s->sock, NNG_OPT_RECONNMINT, SUB_RECONNMINT_MS)) != 0 ||
	    (rv = nng_socket_set_ms(
	         s->sock, NNG_OPT_RECONNMAXT, SUB_RECONNMAXT_MS)) != 0 ||
	    (rv = nng_socket_set(s->sock, NNG_OPT_SUB_SUBSCRIBE, prefix,
	         strlen(prefix))) != 0) {
		rv = tbp_nng_err(rv, TBP_NNG_CLIENT);
		goto fail;
	}
	// Non-blocking: a broker that is not up yet is dialled in the
	// background. Only a malformed url fails here.
	if ((rv = tbc_dial(s->sock, url, &s->conn, NNG_FLAG_NONBLOCK,
	         &s->redial.dialer)) != TB_OK) {
		goto fail;
	}
	s->redial.last = tbc_now_ms();
	*sp            = s;
	return (TB_OK);
fail:
	tbc_close_socket(s->sock);
	sub_free(s);
	return (rv);
}

// sub_wait_quiet reads and drops events until none has come for
// SUB_QUIET_MS, or SUB_QUIET_MAX_MS have passed. Closing a connection
// just as an event arrives on it is what leaves nng 1.5.2's reaper stuck
// for the life of the process (client/sockclose.c): every later close
// then hangs and no dialer of the process reconnects after a lost
// connection again. A subscription sees events at any moment, so it
// closes once its connection is idle, when it can be found idle.
static void
sub_wait_quiet(tb_sub *s)
{
	int64_t end = tbc_now_ms() + SUB_QUIET_MAX_MS;

	if (nng_socket_set_ms(s->sock, NNG_OPT_RECVTIMEO, SUB_QUIET_MS) != 0) {
		return;
	}
	while (tbc_now_ms() < end) {
		nng_msg *m;
		if (nng_recvmsg(s->sock, &m, 0) != 0) {
			return; // quiet (timed out), or closed
		}
		nng_msg_free(m);
	}
}

void
tb_sub_close(tb_sub *s)
{
	if (s == NULL) {
		return;
	}
	if (getpid() == s->pid) {
		sub_wait_quiet(s);
		tbc_close_socket(s->sock);
	} // else a forked child: nng would abort; free the memory only
	sub_free(s);
}

void
tb_event_free(tb_event *e)
{
	if (e == NULL) {
		return;
	}
	free(e->topic);
	free(e->event);
	free(e->queue);
	free(e->handler);
	free(e->error);
	free(e->result);
	free(e);
}

static int
event_copy(tb_event **ep, const tbp_event *in)
{
	tb_event *e;

	if ((e = calloc(1, sizeof(*e))) == NULL) {
		return (TB_ENOMEM);
	}
	e->seq         = in->seq;
	e->id          = in->id;
	e->state       = (int) in->state;
	e->attempt     = in->attempt;
	e->crashes     = in->crashes;
	e->duration_us = in->duration_us;
	e->time        = in->time;
	if ((e->topic = tbp_bytes_dup(in->topic)) == NULL ||
	    (e->event = tbp_bytes_dup(in->event)) == NULL ||
	    (e->queue = tbp_bytes_dup(in->queue)) == NULL ||
	    (e->handler = tbp_bytes_dup(in->handler)) == NULL) {
		goto fail;
	}
	if (in->error.n > 0 && (e->error = tbp_bytes_dup(in->error)) == NULL) {
		goto fail;
	}
	if (in->result.n > 0) {
		if ((e->result = malloc(in->result.n)) == NULL) {
			goto fail;
		}
		memcpy(e->result, in->result.p, in->result.n);
		e->result_len = in->result.n;
	}
	*ep = e;
	return (TB_OK);
fail:
	tb_event_free(e);
	return (TB_ENOMEM);
}

int
tb_sub_recv(tb_sub *s, int timeout_ms, tb_event **ep)
{
	nng_msg  *msg = NULL;
	tbp_event ev;
	int       rv;

	if (s == NULL || ep == NULL) {
		return (TB_EINVAL);
	}
	*ep = NULL;
	if (getpid() != s->pid) {
		return (TB_EFORK);
	}
	// In slices of SUB_SLICE_MS, replacing a stopped dialer after each
	// slice that brought nothing.
	for (int64_t end = tbc_now_ms() + timeout_ms;;) {
		int64_t left =
		    timeout_ms < 0 ? SUB_SLICE_MS : end - tbc_now_ms();

		if (left < 0) {
			left = 0;
		}
		rv = nng_socket_set_ms(s->sock, NNG_OPT_RECVTIMEO,
		    (nng_duration) (left < SUB_SLICE_MS ? left
		                                        : SUB_SLICE_MS));
		if (rv != 0) {
			return (tbp_nng_err(rv, TBP_NNG_CLIENT));
		}
		if ((rv = nng_recvmsg(s->sock, &msg, 0)) == 0) {
			break;
		}
		if (rv != NNG_ETIMEDOUT ||
		    (timeout_ms >= 0 && tbc_now_ms() >= end)) {
			return (tbp_nng_err(rv, TBP_NNG_CLIENT));
		}
		tbc_redial(&s->redial, s->sock, s->url, &s->conn);
	}
	if (tbp_event_decode(&ev, nng_msg_body(msg), nng_msg_len(msg)) ==
	    TB_OK) {
		rv = event_copy(ep, &ev);
	} else {
		rv = TB_EPROTO;
	}
	tbp_event_fini(&ev);
	nng_msg_free(msg);
	return (rv);
}

const char *
tb_event_topic(const tb_event *e)
{
	return (e->topic);
}

const char *
tb_event_name(const tb_event *e)
{
	return (e->event);
}

uint64_t
tb_event_seq(const tb_event *e)
{
	return (e->seq);
}

tb_id
tb_event_task_id(const tb_event *e)
{
	return (e->id);
}

int
tb_event_state(const tb_event *e)
{
	return (e->state);
}

uint32_t
tb_event_attempt(const tb_event *e)
{
	return (e->attempt);
}

uint32_t
tb_event_crashes(const tb_event *e)
{
	return (e->crashes);
}

uint64_t
tb_event_duration_us(const tb_event *e)
{
	return (e->duration_us);
}

int64_t
tb_event_time(const tb_event *e)
{
	return (e->time);
}

const char *
tb_event_queue(const tb_event *e)
{
	return (e->queue);
}

const char *
tb_event_handler(const tb_event *e)
{
	return (e->handler);
}

const void *
tb_event_result(const tb_event *e, size_t *lenp)
{
	if (lenp != NULL) {
		*lenp = e->result_len;
	}
	return (e->result);
}

const char *
tb_event_error(const tb_event *e)
{
	return (e->error);
}
