// tbp_encode.c: the message encoders of tbp.h.
//
// Every encoder goes through a small tbp_enc: the packer writes into the
// caller's sbuffer and the first failure is remembered, so the encoders
// read as a plain list of fields. enc_end removes a half-written message
// on failure, which keeps the promise that b only ever grows by whole
// messages.

#include <stdlib.h>
#include <string.h>

#include "tbp.h"

typedef struct tbp_enc {
	msgpack_packer   pk;
	msgpack_sbuffer *b;
	size_t           start; // b->size before this message
	int              rv;    // first failure, or 0
} tbp_enc;

static void
enc_begin(tbp_enc *e, msgpack_sbuffer *b)
{
	e->b     = b;
	e->start = b->size;
	e->rv    = 0;
	msgpack_packer_init(&e->pk, b, msgpack_sbuffer_write);
}

static int
enc_end(tbp_enc *e)
{
	if (e->rv != 0) {
		e->b->size = e->start;
		return (TB_ENOMEM);
	}
	return (TB_OK);
}

// The msgpack_pack_* calls fail only when the sbuffer cannot grow.
static void
enc_check(tbp_enc *e, int rv)
{
	if (rv != 0 && e->rv == 0) {
		e->rv = rv;
	}
}

static void
enc_raw(tbp_enc *e, const void *p, size_t n)
{
	if (e->rv == 0 && n > 0) {
		enc_check(e, msgpack_sbuffer_write(e->b, p, n));
	}
}

static void
enc_array(tbp_enc *e, uint32_t n)
{
	if (e->rv == 0) {
		enc_check(e, msgpack_pack_array(&e->pk, n));
	}
}

static void
enc_map(tbp_enc *e, uint32_t n)
{
	if (e->rv == 0) {
		enc_check(e, msgpack_pack_map(&e->pk, n));
	}
}

static void
enc_u64(tbp_enc *e, uint64_t v)
{
	if (e->rv == 0) {
		enc_check(e, msgpack_pack_uint64(&e->pk, v));
	}
}

// msgpack-c writes non-negative values in the unsigned forms, so a decoder
// sees the same object whether the field is declared signed or not.
static void
enc_i64(tbp_enc *e, int64_t v)
{
	if (e->rv == 0) {
		enc_check(e, msgpack_pack_int64(&e->pk, v));
	}
}

static void
enc_bool(tbp_enc *e, bool v)
{
	if (e->rv == 0) {
		enc_check(e,
		    v ? msgpack_pack_true(&e->pk)
		      : msgpack_pack_false(&e->pk));
	}
}

// An empty view may hold a NULL pointer, which must not reach memcpy.
static void
enc_str(tbp_enc *e, tbp_bytes v)
{
	if (e->rv == 0) {
		enc_check(e, msgpack_pack_str(&e->pk, v.n));
	}
	if (e->rv == 0 && v.n > 0) {
		enc_check(e, msgpack_pack_str_body(&e->pk, v.p, v.n));
	}
}

static void
enc_bin(tbp_enc *e, tbp_bytes v)
{
	if (e->rv == 0) {
		enc_check(e, msgpack_pack_bin(&e->pk, v.n));
	}
	if (e->rv == 0 && v.n > 0) {
		enc_check(e, msgpack_pack_bin_body(&e->pk, v.p, v.n));
	}
}

static void
enc_key(tbp_enc *e, const char *key)
{
	enc_str(e, tbp_str(key));
}

static void
enc_req_head(tbp_enc *e, uint32_t op, uint64_t req_id)
{
	enc_array(e, 4);
	enc_u64(e, TBP_VERSION);
	enc_u64(e, op);
	enc_u64(e, req_id);
}

// A status is never negative on the wire; enc_i64 still writes a negative
// one faithfully so the decoder, not the encoder, rejects it.
static void
enc_rep_head(tbp_enc *e, uint32_t op, uint64_t req_id, int status)
{
	enc_array(e, 5);
	enc_u64(e, TBP_VERSION);
	enc_u64(e, op);
	enc_u64(e, req_id);
	enc_i64(e, status);
}

// Optional fields are left out at their zero value, which is also what the
// decoder assumes when they are absent.
static void
enc_task_in(tbp_enc *e, const tbp_task_in *t)
{
	uint32_t n = 2;

	n += (t->queue.n > 0) + (t->payload.n > 0) + (t->priority != 0) +
	    (t->max_attempts != 0) + (t->timeout_ms != 0) +
	    (t->delay_ms != 0) + (t->run_at != 0) + (t->key.n > 0) +
	    t->forever + (t->max_crashes != 0);
	enc_map(e, n);
	enc_key(e, "sid");
	enc_bin(e, t->sid);
	enc_key(e, "handler");
	enc_str(e, t->handler);
	if (t->queue.n > 0) {
		enc_key(e, "queue");
		enc_str(e, t->queue);
	}
	if (t->payload.n > 0) {
		enc_key(e, "payload");
		enc_bin(e, t->payload);
	}
	if (t->priority != 0) {
		enc_key(e, "priority");
		enc_i64(e, t->priority);
	}
	if (t->max_attempts != 0) {
		enc_key(e, "max_attempts");
		enc_u64(e, t->max_attempts);
	}
	if (t->timeout_ms != 0) {
		enc_key(e, "timeout_ms");
		enc_u64(e, t->timeout_ms);
	}
	if (t->delay_ms != 0) {
		enc_key(e, "delay_ms");
		enc_u64(e, t->delay_ms);
	}
	if (t->run_at != 0) {
		enc_key(e, "run_at");
		enc_i64(e, t->run_at);
	}
	if (t->key.n > 0) {
		enc_key(e, "key");
		enc_str(e, t->key);
	}
	if (t->forever) {
		enc_key(e, "forever");
		enc_bool(e, true);
	}
	if (t->max_crashes != 0) {
		enc_key(e, "max_crashes");
		enc_u64(e, t->max_crashes);
	}
}

static void
enc_task_info(tbp_enc *e, const tbp_task_info *t)
{
	enc_map(e, 15 + (t->result.n > 0) + (t->error.n > 0) + (t->key.n > 0));
	enc_key(e, "id");
	enc_u64(e, t->id);
	enc_key(e, "queue");
	enc_str(e, t->queue);
	enc_key(e, "handler");
	enc_str(e, t->handler);
	enc_key(e, "state");
	enc_u64(e, t->state);
	enc_key(e, "attempts");
	enc_u64(e, t->attempts);
	enc_key(e, "max_attempts");
	enc_u64(e, t->max_attempts);
	enc_key(e, "crashes");
	enc_u64(e, t->crashes);
	enc_key(e, "max_crashes");
	enc_u64(e, t->max_crashes);
	enc_key(e, "priority");
	enc_i64(e, t->priority);
	enc_key(e, "created_at");
	enc_i64(e, t->created_at);
	enc_key(e, "started_at");
	enc_i64(e, t->started_at);
	enc_key(e, "finished_at");
	enc_i64(e, t->finished_at);
	if (t->result.n > 0) {
		enc_key(e, "result");
		enc_bin(e, t->result);
	}
	if (t->error.n > 0) {
		enc_key(e, "error");
		enc_str(e, t->error);
	}
	enc_key(e, "run_at");
	enc_i64(e, t->run_at);
	enc_key(e, "timeout_ms");
	enc_u64(e, t->timeout_ms);
	enc_key(e, "forever");
	enc_bool(e, t->forever);
	if (t->key.n > 0) {
		enc_key(e, "key");
		enc_str(e, t->key);
	}
}

// enc_sched writes a schedule. A request carries only what defines it,
// with the optional fields left out at zero; a reply also carries the
// broker's bookkeeping and every field, so that a client sees the values
// the broker applied.
static void
enc_sched(tbp_enc *e, const tbp_sched *s, bool reply)
{
	uint32_t n = 2;

	n += (s->every_ms != 0) + (s->cron.n > 0) + (s->payload.n > 0);
	if (reply) {
		n += 1 + 3 + 2 + 4; // queue, limits, flags, bookkeeping
	} else {
		n += (s->queue.n > 0) + (s->priority != 0) +
		    (s->max_attempts != 0) + (s->timeout_ms != 0) +
		    s->catch_up + s->paused;
	}
	enc_map(e, n);
	enc_key(e, "name");
	enc_str(e, s->name);
	enc_key(e, "handler");
	enc_str(e, s->handler);
	if (reply || s->queue.n > 0) {
		enc_key(e, "queue");
		enc_str(e, s->queue);
	}
	if (s->payload.n > 0) {
		enc_key(e, "payload");
		enc_bin(e, s->payload);
	}
	if (reply || s->priority != 0) {
		enc_key(e, "priority");
		enc_i64(e, s->priority);
	}
	if (reply || s->max_attempts != 0) {
		enc_key(e, "max_attempts");
		enc_u64(e, s->max_attempts);
	}
	if (reply || s->timeout_ms != 0) {
		enc_key(e, "timeout_ms");
		enc_u64(e, s->timeout_ms);
	}
	if (s->every_ms != 0) {
		enc_key(e, "every_ms");
		enc_u64(e, s->every_ms);
	}
	if (s->cron.n > 0) {
		enc_key(e, "cron");
		enc_str(e, s->cron);
	}
	if (reply || s->catch_up) {
		enc_key(e, "catch_up");
		enc_bool(e, s->catch_up);
	}
	if (reply || s->paused) {
		enc_key(e, "paused");
		enc_bool(e, s->paused);
	}
	if (reply) {
		enc_key(e, "next_at");
		enc_i64(e, s->next_at);
		enc_key(e, "last_at");
		enc_i64(e, s->last_at);
		enc_key(e, "fired");
		enc_u64(e, s->fired);
		enc_key(e, "last_task");
		enc_u64(e, s->last_task);
	}
}

static void
enc_qstat(tbp_enc *e, const tbp_qstat *q)
{
	enc_map(e, 14);
	enc_key(e, "name");
	enc_str(e, q->name);
	enc_key(e, "pending");
	enc_u64(e, q->pending);
	enc_key(e, "running");
	enc_u64(e, q->running);
	enc_key(e, "failed");
	enc_u64(e, q->failed);
	enc_key(e, "dead");
	enc_u64(e, q->dead);
	enc_key(e, "done");
	enc_u64(e, q->done);
	enc_key(e, "cancelled");
	enc_u64(e, q->cancelled);
	enc_key(e, "paused");
	enc_bool(e, q->paused);
	enc_key(e, "concurrency");
	enc_u64(e, q->concurrency);
	enc_key(e, "max_pending");
	enc_u64(e, q->max_pending);
	enc_key(e, "done_last_min");
	enc_u64(e, q->done_last_min);
	enc_key(e, "oldest_pending_ms");
	enc_u64(e, q->oldest_pending_ms);
	enc_key(e, "forever");
	enc_u64(e, q->forever);
	enc_key(e, "crashloop");
	enc_u64(e, q->crashloop);
}

int
tbp_enc_submit(
    msgpack_sbuffer *b, uint64_t req_id, const tbp_task_in *tasks, uint32_t n)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_req_head(&e, TBP_OP_SUBMIT, req_id);
	enc_map(&e, 1);
	enc_key(&e, "tasks");
	enc_array(&e, n);
	for (uint32_t i = 0; i < n; i++) {
		enc_task_in(&e, &tasks[i]);
	}
	return (enc_end(&e));
}

int
tbp_enc_req_id(msgpack_sbuffer *b, uint32_t op, uint64_t req_id, uint64_t id)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_req_head(&e, op, req_id);
	enc_map(&e, 1);
	enc_key(&e, "id");
	enc_u64(&e, id);
	return (enc_end(&e));
}

// A negative timeout is left out: the decoder reads an absent one as -1,
// "the broker's maximum", which is what every negative value means.
int
tbp_enc_wait(
    msgpack_sbuffer *b, uint64_t req_id, uint64_t id, int64_t timeout_ms)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_req_head(&e, TBP_OP_WAIT, req_id);
	enc_map(&e, timeout_ms >= 0 ? 2 : 1);
	enc_key(&e, "id");
	enc_u64(&e, id);
	if (timeout_ms >= 0) {
		enc_key(&e, "timeout_ms");
		enc_i64(&e, timeout_ms);
	}
	return (enc_end(&e));
}

int
tbp_enc_list(msgpack_sbuffer *b, uint64_t req_id, const char *queue,
    int32_t state, uint32_t limit, uint64_t after_id, const char *handler,
    uint64_t min_age_ms, uint64_t max_age_ms)
{
	tbp_enc   e;
	tbp_bytes q = tbp_str(queue);
	tbp_bytes h = tbp_str(handler);

	enc_begin(&e, b);
	enc_req_head(&e, TBP_OP_LIST, req_id);
	enc_map(&e,
	    (q.n > 0) + (state >= 0) + (limit > 0) + (after_id > 0) +
	        (h.n > 0) + (min_age_ms > 0) + (max_age_ms > 0));
	if (q.n > 0) {
		enc_key(&e, "queue");
		enc_str(&e, q);
	}
	if (state >= 0) {
		enc_key(&e, "state");
		enc_u64(&e, (uint64_t) state);
	}
	if (limit > 0) {
		enc_key(&e, "limit");
		enc_u64(&e, limit);
	}
	if (after_id > 0) {
		enc_key(&e, "after_id");
		enc_u64(&e, after_id);
	}
	if (h.n > 0) {
		enc_key(&e, "handler");
		enc_str(&e, h);
	}
	if (min_age_ms > 0) {
		enc_key(&e, "min_age_ms");
		enc_u64(&e, min_age_ms);
	}
	if (max_age_ms > 0) {
		enc_key(&e, "max_age_ms");
		enc_u64(&e, max_age_ms);
	}
	return (enc_end(&e));
}

// Retrying by id ignores queue and state: the decoder refuses a request
// that names both an id and a filter, so none is written.
int
tbp_enc_retry(msgpack_sbuffer *b, uint64_t req_id, bool have_id, uint64_t id,
    const char *queue, int32_t state)
{
	tbp_enc   e;
	tbp_bytes q = tbp_str(queue);

	enc_begin(&e, b);
	enc_req_head(&e, TBP_OP_RETRY, req_id);
	if (have_id) {
		enc_map(&e, 1);
		enc_key(&e, "id");
		enc_u64(&e, id);
		return (enc_end(&e));
	}
	enc_map(&e, (q.n > 0) + (state >= 0));
	if (q.n > 0) {
		enc_key(&e, "queue");
		enc_str(&e, q);
	}
	if (state >= 0) {
		enc_key(&e, "state");
		enc_u64(&e, (uint64_t) state);
	}
	return (enc_end(&e));
}

// A NULL or empty queue is written as "", which the decoder refuses: the
// mistake is reported by whoever receives it, as for a negative status.
int
tbp_enc_queue_op(
    msgpack_sbuffer *b, uint32_t op, uint64_t req_id, const char *queue)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_req_head(&e, op, req_id);
	enc_map(&e, 1);
	enc_key(&e, "queue");
	enc_str(&e, tbp_str(queue));
	return (enc_end(&e));
}

// As for wait, a negative timeout is left out and decodes as -1.
int
tbp_enc_drain(
    msgpack_sbuffer *b, uint64_t req_id, const char *queue, int64_t timeout_ms)
{
	tbp_enc   e;
	tbp_bytes q = tbp_str(queue);

	enc_begin(&e, b);
	enc_req_head(&e, TBP_OP_DRAIN, req_id);
	enc_map(&e, (q.n > 0) + (timeout_ms >= 0));
	if (q.n > 0) {
		enc_key(&e, "queue");
		enc_str(&e, q);
	}
	if (timeout_ms >= 0) {
		enc_key(&e, "timeout_ms");
		enc_i64(&e, timeout_ms);
	}
	return (enc_end(&e));
}

// state is required, so it is always written; a negative one goes out as
// such and the decoder refuses it.
int
tbp_enc_purge(msgpack_sbuffer *b, uint64_t req_id, const char *queue,
    int32_t state, uint64_t min_age_ms)
{
	tbp_enc   e;
	tbp_bytes q = tbp_str(queue);

	enc_begin(&e, b);
	enc_req_head(&e, TBP_OP_PURGE, req_id);
	enc_map(&e, 1 + (q.n > 0) + (min_age_ms > 0));
	if (q.n > 0) {
		enc_key(&e, "queue");
		enc_str(&e, q);
	}
	enc_key(&e, "state");
	enc_i64(&e, state);
	if (min_age_ms > 0) {
		enc_key(&e, "min_age_ms");
		enc_u64(&e, min_age_ms);
	}
	return (enc_end(&e));
}

int
tbp_enc_sched_add(msgpack_sbuffer *b, uint64_t req_id, const tbp_sched *s)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_req_head(&e, TBP_OP_SCHED_ADD, req_id);
	enc_map(&e, 1);
	enc_key(&e, "schedule");
	enc_sched(&e, s, false);
	return (enc_end(&e));
}

int
tbp_enc_sched_name(msgpack_sbuffer *b, uint32_t op, uint64_t req_id,
    const char *name, bool paused)
{
	tbp_enc e;
	bool    pause = (op == TBP_OP_SCHED_PAUSE);

	enc_begin(&e, b);
	enc_req_head(&e, op, req_id);
	enc_map(&e, pause ? 2 : 1);
	enc_key(&e, "name");
	enc_str(&e, tbp_str(name));
	if (pause) {
		enc_key(&e, "paused");
		enc_bool(&e, paused);
	}
	return (enc_end(&e));
}

int
tbp_enc_req_empty(msgpack_sbuffer *b, uint32_t op, uint64_t req_id)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_req_head(&e, op, req_id);
	enc_map(&e, 0);
	return (enc_end(&e));
}

// tbp_req_add_token rewrites the request [version, op, req_id, body] at
// b->data + start as the same request whose body map has one more pair,
// "token": token, appended at its end (a map's pairs have no order). It
// builds the new message aside and copies it over the old one only once
// b has room for it, so that an error leaves b as it was.
int
tbp_req_add_token(msgpack_sbuffer *b, size_t start, tbp_bytes token)
{
	const uint8_t  *p;
	size_t          len;
	size_t          off = 1;
	size_t          used;
	size_t          hlen;
	uint32_t        n;
	msgpack_sbuffer tmp;
	tbp_enc         e;
	int             rv;

	if (b == NULL || start >= b->size || token.n < 1 ||
	    token.n > TBP_MAX_TOKEN) {
		return (TB_EINVAL);
	}
	p   = (const uint8_t *) b->data + start;
	len = b->size - start;
	if (p[0] != 0x94) { // fixarray of 4: every encoder above writes it
		return (TB_EINVAL);
	}
	for (int i = 0; i < 3; i++) {
		if (tbp_check(p + off, len - off, 1, &used) != TB_OK) {
			return (TB_EINVAL);
		}
		off += used;
	}
	if (off >= len ||
	    tbp_check(p + off, len - off, TBP_MAX_DEPTH + 1, &used) != TB_OK ||
	    off + used != len) {
		return (TB_EINVAL); // the body must end the message
	}
	if (p[off] >= 0x80 && p[off] <= 0x8f) {
		n    = p[off] & 0x0f;
		hlen = 1;
	} else if (p[off] == 0xde) {
		n    = ((uint32_t) p[off + 1] << 8) | p[off + 2];
		hlen = 3;
	} else if (p[off] == 0xdf) {
		n = ((uint32_t) p[off + 1] << 24) |
		    ((uint32_t) p[off + 2] << 16) |
		    ((uint32_t) p[off + 3] << 8) | p[off + 4];
		hlen = 5;
	} else {
		return (TB_EINVAL);
	}
	if (n == UINT32_MAX) {
		return (TB_EINVAL);
	}
	msgpack_sbuffer_init(&tmp);
	enc_begin(&e, &tmp);
	enc_raw(&e, p, off);
	enc_map(&e, n + 1);
	enc_raw(&e, p + off + hlen, len - off - hlen);
	enc_key(&e, "token");
	enc_str(&e, token);
	if ((rv = enc_end(&e)) == TB_OK && start + tmp.size > b->alloc) {
		char *nd = realloc(b->data, start + tmp.size);
		if (nd == NULL) {
			rv = TB_ENOMEM;
		} else {
			b->data  = nd;
			b->alloc = start + tmp.size;
		}
	}
	if (rv == TB_OK) {
		memcpy(b->data + start, tmp.data, tmp.size);
		b->size = start + tmp.size;
	}
	msgpack_sbuffer_destroy(&tmp);
	return (rv);
}

int
tbp_enc_rep_error(msgpack_sbuffer *b, uint32_t op, uint64_t req_id, int status,
    const char *message)
{
	tbp_enc e;

	if (message == NULL) {
		message = tbp_err_message(status);
	}
	enc_begin(&e, b);
	enc_rep_head(&e, op, req_id, status);
	enc_map(&e, 2);
	enc_key(&e, "error");
	enc_str(&e, tbp_str(tbp_err_name(status)));
	enc_key(&e, "message");
	enc_str(&e, tbp_str(message));
	return (enc_end(&e));
}

// dup and existing may be NULL: no task was a duplicate or matched a key.
// (A reply of an older broker has no "existing", which the decoder reads as
// all false.)
int
tbp_enc_rep_submit(msgpack_sbuffer *b, uint64_t req_id, const uint64_t *ids,
    const bool *dup, const bool *existing, uint32_t n)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_rep_head(&e, TBP_OP_SUBMIT, req_id, TB_OK);
	enc_map(&e, 3);
	enc_key(&e, "ids");
	enc_array(&e, n);
	for (uint32_t i = 0; i < n; i++) {
		enc_u64(&e, ids[i]);
	}
	enc_key(&e, "dup");
	enc_array(&e, n);
	for (uint32_t i = 0; i < n; i++) {
		enc_bool(&e, dup != NULL && dup[i]);
	}
	enc_key(&e, "existing");
	enc_array(&e, n);
	for (uint32_t i = 0; i < n; i++) {
		enc_bool(&e, existing != NULL && existing[i]);
	}
	return (enc_end(&e));
}

int
tbp_enc_rep_count(
    msgpack_sbuffer *b, uint32_t op, uint64_t req_id, uint64_t count)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_rep_head(&e, op, req_id, TB_OK);
	enc_map(&e, 1);
	enc_key(&e, "count");
	enc_u64(&e, count);
	return (enc_end(&e));
}

int
tbp_enc_rep_drain(msgpack_sbuffer *b, uint64_t req_id, bool timed_out)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_rep_head(&e, TBP_OP_DRAIN, req_id, TB_OK);
	enc_map(&e, 1);
	enc_key(&e, "timed_out");
	enc_bool(&e, timed_out);
	return (enc_end(&e));
}

int
tbp_enc_rep_scheds(
    msgpack_sbuffer *b, uint64_t req_id, const tbp_sched *s, uint32_t n)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_rep_head(&e, TBP_OP_SCHED_LIST, req_id, TB_OK);
	enc_map(&e, 1);
	enc_key(&e, "schedules");
	enc_array(&e, n);
	for (uint32_t i = 0; i < n; i++) {
		enc_sched(&e, &s[i], true);
	}
	return (enc_end(&e));
}

int
tbp_enc_rep_queues(
    msgpack_sbuffer *b, uint64_t req_id, const tbp_qstat *q, uint32_t n)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_rep_head(&e, TBP_OP_QUEUES, req_id, TB_OK);
	enc_map(&e, 1);
	enc_key(&e, "queues");
	enc_array(&e, n);
	for (uint32_t i = 0; i < n; i++) {
		enc_qstat(&e, &q[i]);
	}
	return (enc_end(&e));
}

int
tbp_enc_rep_task(msgpack_sbuffer *b, uint32_t op, uint64_t req_id,
    const tbp_task_info *t, bool timed_out)
{
	tbp_enc e;
	bool    wait = (op == TBP_OP_WAIT);

	enc_begin(&e, b);
	enc_rep_head(&e, op, req_id, TB_OK);
	enc_map(&e, wait ? 2 : 1);
	enc_key(&e, "task");
	enc_task_info(&e, t);
	if (wait) {
		enc_key(&e, "timed_out");
		enc_bool(&e, timed_out);
	}
	return (enc_end(&e));
}

int
tbp_enc_rep_tasks(msgpack_sbuffer *b, uint64_t req_id,
    const tbp_task_info *tasks, uint32_t n)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_rep_head(&e, TBP_OP_LIST, req_id, TB_OK);
	enc_map(&e, 1);
	enc_key(&e, "tasks");
	enc_array(&e, n);
	for (uint32_t i = 0; i < n; i++) {
		enc_task_info(&e, &tasks[i]);
	}
	return (enc_end(&e));
}

int
tbp_enc_rep_stats(msgpack_sbuffer *b, uint64_t req_id, const tbp_stats *st)
{
	return (tbp_enc_rep_stats_wh(b, req_id, st, NULL, 0));
}

int
tbp_enc_rep_stats_wh(msgpack_sbuffer *b, uint64_t req_id, const tbp_stats *st,
    const tbp_whstat *wh, uint32_t nwh)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_rep_head(&e, TBP_OP_STATS, req_id, TB_OK);
	enc_map(&e, 14 + (nwh > 0));
	if (nwh > 0) {
		enc_key(&e, "whandlers");
		enc_array(&e, nwh);
		for (uint32_t i = 0; i < nwh; i++) {
			enc_map(&e, 3);
			enc_key(&e, "name");
			enc_str(&e, wh[i].name);
			enc_key(&e, "workers");
			enc_u64(&e, wh[i].workers);
			enc_key(&e, "waiting");
			enc_u64(&e, wh[i].waiting);
		}
	}
	enc_key(&e, "pending");
	enc_u64(&e, st->pending);
	enc_key(&e, "running");
	enc_u64(&e, st->running);
	enc_key(&e, "done");
	enc_u64(&e, st->done);
	enc_key(&e, "failed");
	enc_u64(&e, st->failed);
	enc_key(&e, "dead");
	enc_u64(&e, st->dead);
	enc_key(&e, "cancelled");
	enc_u64(&e, st->cancelled);
	enc_key(&e, "submitted");
	enc_u64(&e, st->submitted);
	enc_key(&e, "completed");
	enc_u64(&e, st->completed);
	enc_key(&e, "uptime_ms");
	enc_u64(&e, st->uptime_ms);
	enc_key(&e, "workers");
	enc_u64(&e, st->workers);
	enc_key(&e, "pid");
	enc_u64(&e, st->pid);
	enc_key(&e, "schedules");
	enc_u64(&e, st->schedules);
	enc_key(&e, "forever");
	enc_u64(&e, st->forever);
	enc_key(&e, "crashloop");
	enc_u64(&e, st->crashloop);
	return (enc_end(&e));
}

int
tbp_enc_rep_ping(
    msgpack_sbuffer *b, uint64_t req_id, const char *version, uint64_t pid)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_rep_head(&e, TBP_OP_PING, req_id, TB_OK);
	enc_map(&e, 2);
	enc_key(&e, "version");
	enc_str(&e, tbp_str(version));
	enc_key(&e, "pid");
	enc_u64(&e, pid);
	return (enc_end(&e));
}

int
tbp_enc_rep_empty(msgpack_sbuffer *b, uint32_t op, uint64_t req_id)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_rep_head(&e, op, req_id, TB_OK);
	enc_map(&e, 0);
	return (enc_end(&e));
}

// The topic goes out as raw bytes before the map because nng's SUB matches
// subscriptions against the start of the message.
int
tbp_enc_event(msgpack_sbuffer *b, const tbp_event *ev)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_raw(&e, "tb.", 3);
	enc_raw(&e, ev->event.p, ev->event.n);
	enc_raw(&e, ".", 1);
	enc_raw(&e, ev->queue.p, ev->queue.n);
	enc_raw(&e, ".", 1);
	enc_raw(&e, ev->handler.p, ev->handler.n);
	enc_raw(&e, "", 1); // the NUL that ends the topic
	enc_map(&e, 10 + (ev->result.n > 0) + (ev->error.n > 0));
	enc_key(&e, "seq");
	enc_u64(&e, ev->seq);
	enc_key(&e, "event");
	enc_str(&e, ev->event);
	enc_key(&e, "id");
	enc_u64(&e, ev->id);
	enc_key(&e, "queue");
	enc_str(&e, ev->queue);
	enc_key(&e, "handler");
	enc_str(&e, ev->handler);
	enc_key(&e, "state");
	enc_u64(&e, ev->state);
	enc_key(&e, "attempt");
	enc_u64(&e, ev->attempt);
	enc_key(&e, "crashes");
	enc_u64(&e, ev->crashes);
	enc_key(&e, "duration_us");
	enc_u64(&e, ev->duration_us);
	enc_key(&e, "time");
	enc_i64(&e, ev->time);
	if (ev->result.n > 0) {
		enc_key(&e, "result");
		enc_bin(&e, ev->result);
	}
	if (ev->error.n > 0) {
		enc_key(&e, "error");
		enc_str(&e, ev->error);
	}
	return (enc_end(&e));
}

// ---- workers
// ----------------------------------------------------------------

static void
enc_names(tbp_enc *e, const tbp_bytes *v, uint32_t n)
{
	enc_array(e, n);
	for (uint32_t i = 0; i < n; i++) {
		enc_str(e, v[i]);
	}
}

int
tbp_enc_worker_hello(msgpack_sbuffer *b, uint64_t req_id, const tbp_hello *h)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_req_head(&e, TBP_OP_WORKER_HELLO, req_id);
	enc_map(&e, 5 + (h->nqueues > 0));
	enc_key(&e, "handlers");
	enc_names(&e, h->handlers, h->nhandlers);
	if (h->nqueues > 0) {
		enc_key(&e, "queues");
		enc_names(&e, h->queues, h->nqueues);
	}
	enc_key(&e, "slots");
	enc_u64(&e, h->slots);
	enc_key(&e, "pid");
	enc_u64(&e, h->pid);
	enc_key(&e, "host");
	enc_str(&e, h->host);
	enc_key(&e, "name");
	enc_str(&e, h->name);
	return (enc_end(&e));
}

int
tbp_enc_worker_take(msgpack_sbuffer *b, uint64_t req_id, uint64_t worker_id,
    uint32_t free, uint64_t dones)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_req_head(&e, TBP_OP_WORKER_TAKE, req_id);
	enc_map(&e, 3);
	enc_key(&e, "dones");
	enc_u64(&e, dones);
	enc_key(&e, "worker_id");
	enc_u64(&e, worker_id);
	enc_key(&e, "free");
	enc_u64(&e, free);
	return (enc_end(&e));
}

int
tbp_enc_worker_done(
    msgpack_sbuffer *b, uint64_t req_id, uint64_t worker_id, const tbp_done *d)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_req_head(&e, TBP_OP_WORKER_DONE, req_id);
	enc_map(&e, 6 + (d->result.n > 0) + (d->error.n > 0));
	enc_key(&e, "seq");
	enc_u64(&e, d->seq);
	enc_key(&e, "worker_id");
	enc_u64(&e, worker_id);
	enc_key(&e, "id");
	enc_u64(&e, d->id);
	enc_key(&e, "attempt");
	enc_u64(&e, d->attempt);
	enc_key(&e, "ok");
	enc_bool(&e, d->ok);
	enc_key(&e, "retryable");
	enc_bool(&e, d->retryable);
	if (d->result.n > 0) {
		enc_key(&e, "result");
		enc_bin(&e, d->result);
	}
	if (d->error.n > 0) {
		enc_key(&e, "error");
		enc_str(&e, d->error);
	}
	return (enc_end(&e));
}

static void
enc_done_entry(tbp_enc *e, const tbp_done *d)
{
	enc_map(e, 5 + (d->result.n > 0) + (d->error.n > 0));
	enc_key(e, "seq");
	enc_u64(e, d->seq);
	enc_key(e, "id");
	enc_u64(e, d->id);
	enc_key(e, "attempt");
	enc_u64(e, d->attempt);
	enc_key(e, "ok");
	enc_bool(e, d->ok);
	enc_key(e, "retryable");
	enc_bool(e, d->retryable);
	if (d->result.n > 0) {
		enc_key(e, "result");
		enc_bin(e, d->result);
	}
	if (d->error.n > 0) {
		enc_key(e, "error");
		enc_str(e, d->error);
	}
}

int
tbp_enc_worker_dones(msgpack_sbuffer *b, uint64_t req_id, uint64_t worker_id,
    const tbp_done *d, uint32_t n)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_req_head(&e, TBP_OP_WORKER_DONE, req_id);
	enc_map(&e, 2);
	enc_key(&e, "worker_id");
	enc_u64(&e, worker_id);
	enc_key(&e, "results");
	enc_array(&e, n);
	for (uint32_t i = 0; i < n; i++) {
		enc_done_entry(&e, &d[i]);
	}
	return (enc_end(&e));
}

int
tbp_enc_rep_dones(
    msgpack_sbuffer *b, uint64_t req_id, const uint32_t *st, uint32_t n)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_rep_head(&e, TBP_OP_WORKER_DONE, req_id, TB_OK);
	enc_map(&e, 1);
	enc_key(&e, "status");
	enc_array(&e, n);
	for (uint32_t i = 0; i < n; i++) {
		enc_u64(&e, st[i]);
	}
	return (enc_end(&e));
}

int
tbp_enc_worker_bye(msgpack_sbuffer *b, uint64_t req_id, uint64_t worker_id,
    const uint64_t *ids, uint32_t n)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_req_head(&e, TBP_OP_WORKER_BYE, req_id);
	enc_map(&e, 2);
	enc_key(&e, "worker_id");
	enc_u64(&e, worker_id);
	enc_key(&e, "hand_back");
	enc_array(&e, n);
	for (uint32_t i = 0; i < n; i++) {
		enc_u64(&e, ids[i]);
	}
	return (enc_end(&e));
}

int
tbp_enc_rep_hello(msgpack_sbuffer *b, uint64_t req_id, uint64_t worker_id,
    uint32_t heartbeat_ms, uint32_t timeout_ms)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_rep_head(&e, TBP_OP_WORKER_HELLO, req_id, TB_OK);
	enc_map(&e, 3);
	enc_key(&e, "worker_id");
	enc_u64(&e, worker_id);
	enc_key(&e, "heartbeat_ms");
	enc_u64(&e, heartbeat_ms);
	enc_key(&e, "timeout_ms");
	enc_u64(&e, timeout_ms);
	return (enc_end(&e));
}

static void
enc_job(tbp_enc *e, const tbp_job *j, bool full)
{
	enc_map(e, full ? 6 + (j->payload.n > 0) : 2);
	enc_key(e, "id");
	enc_u64(e, j->id);
	enc_key(e, "attempt");
	enc_u64(e, j->attempt);
	if (!full) {
		return;
	}
	enc_key(e, "crashes");
	enc_u64(e, j->crashes);
	enc_key(e, "handler");
	enc_str(e, j->handler);
	enc_key(e, "queue");
	enc_str(e, j->queue);
	enc_key(e, "deadline_ms");
	enc_i64(e, j->deadline_ms);
	if (j->payload.n > 0) {
		enc_key(e, "payload");
		enc_bin(e, j->payload);
	}
}

int
tbp_enc_rep_take(msgpack_sbuffer *b, uint64_t req_id, const tbp_job *jobs,
    uint32_t njobs, const tbp_job *cancels, uint32_t ncancels, bool stop)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_rep_head(&e, TBP_OP_WORKER_TAKE, req_id, TB_OK);
	enc_map(&e, 3);
	enc_key(&e, "jobs");
	enc_array(&e, njobs);
	for (uint32_t i = 0; i < njobs; i++) {
		enc_job(&e, &jobs[i], true);
	}
	enc_key(&e, "cancels");
	enc_array(&e, ncancels);
	for (uint32_t i = 0; i < ncancels; i++) {
		enc_job(&e, &cancels[i], false);
	}
	enc_key(&e, "stop");
	enc_bool(&e, stop);
	return (enc_end(&e));
}

int
tbp_enc_rep_workers(
    msgpack_sbuffer *b, uint64_t req_id, const tbp_winfo *w, uint32_t n)
{
	tbp_enc e;

	enc_begin(&e, b);
	enc_rep_head(&e, TBP_OP_WORKERS, req_id, TB_OK);
	enc_map(&e, 1);
	enc_key(&e, "workers");
	enc_array(&e, n);
	for (uint32_t i = 0; i < n; i++) {
		enc_map(&e, 10);
		enc_key(&e, "id");
		enc_u64(&e, w[i].id);
		enc_key(&e, "pid");
		enc_u64(&e, w[i].pid);
		enc_key(&e, "host");
		enc_str(&e, w[i].host);
		enc_key(&e, "name");
		enc_str(&e, w[i].name);
		enc_key(&e, "handlers");
		enc_names(&e, w[i].handlers, w[i].nhandlers);
		enc_key(&e, "queues");
		enc_names(&e, w[i].queues, w[i].nqueues);
		enc_key(&e, "slots");
		enc_u64(&e, w[i].slots);
		enc_key(&e, "running");
		enc_u64(&e, w[i].running);
		enc_key(&e, "done");
		enc_u64(&e, w[i].done);
		enc_key(&e, "since");
		enc_i64(&e, w[i].since);
	}
	return (enc_end(&e));
}
