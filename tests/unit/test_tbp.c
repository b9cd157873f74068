// test_tbp.c: unit tests of the wire protocol library (proto/).
//
// Every test gets a fixture with one sbuffer and one of each decoded
// message; teardown finishes them all, so a failing assertion (cmocka
// longjmps out of the test) still leaves nothing allocated.

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "tbp.h"

typedef struct fx {
	msgpack_sbuffer sb;
	msgpack_packer  pk; // writes into sb, for hand-made messages
	tbp_req         req;
	tbp_rep         rep;
	tbp_event       ev;
} fx;

static int
setup(void **state)
{
	fx *f;

	if ((f = calloc(1, sizeof(*f))) == NULL) {
		return (-1);
	}
	msgpack_sbuffer_init(&f->sb);
	msgpack_packer_init(&f->pk, &f->sb, msgpack_sbuffer_write);
	msgpack_unpacked_init(&f->req.priv_);
	msgpack_unpacked_init(&f->rep.priv_);
	msgpack_unpacked_init(&f->ev.priv_);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	fx *f = *state;

	tbp_req_fini(&f->req);
	tbp_rep_fini(&f->rep);
	tbp_event_fini(&f->ev);
	msgpack_sbuffer_destroy(&f->sb);
	free(f);
	return (0);
}

// Decoding helpers: each finishes the previous message first, so a test
// may decode many times into the same fixture.

static int
dec_req(fx *f)
{
	tbp_req_fini(&f->req);
	return (tbp_req_decode(&f->req, f->sb.data, f->sb.size));
}

static int
dec_rep(fx *f)
{
	tbp_rep_fini(&f->rep);
	return (tbp_rep_decode(&f->rep, f->sb.data, f->sb.size));
}

static int
dec_ev(fx *f)
{
	tbp_event_fini(&f->ev);
	return (tbp_event_decode(&f->ev, f->sb.data, f->sb.size));
}

static int
dec_req_raw(fx *f, const void *buf, size_t len)
{
	tbp_req_fini(&f->req);
	return (tbp_req_decode(&f->req, buf, len));
}

static void
reset(fx *f)
{
	msgpack_sbuffer_clear(&f->sb);
}

// Hand-made messages.

static void
pk_key(fx *f, const char *s)
{
	msgpack_pack_str(&f->pk, strlen(s));
	msgpack_pack_str_body(&f->pk, s, strlen(s));
}

static void
pk_str(fx *f, const char *s)
{
	pk_key(f, s);
}

static void
pk_bin(fx *f, const void *p, size_t n)
{
	msgpack_pack_bin(&f->pk, n);
	if (n > 0) {
		msgpack_pack_bin_body(&f->pk, p, n);
	}
}

static void
pk_raw(fx *f, const void *p, size_t n)
{
	msgpack_sbuffer_write(&f->sb, p, n);
}

// pk_req_head packs [version, op, 7, map(nbody)]: the body's pairs follow.
static void
pk_req_head(fx *f, uint64_t version, uint64_t op, uint32_t nbody)
{
	msgpack_pack_array(&f->pk, 4);
	msgpack_pack_uint64(&f->pk, version);
	msgpack_pack_uint64(&f->pk, op);
	msgpack_pack_uint64(&f->pk, 7);
	msgpack_pack_map(&f->pk, nbody);
}

static const uint8_t SID[TB_SID_LEN] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
	13, 14, 15, 16 };

// pk_submit_head packs a submit of one task whose map has ntask pairs and
// starts with a valid sid; the caller packs the other ntask - 1 pairs.
static void
pk_submit_head(fx *f, uint32_t ntask)
{
	pk_req_head(f, TBP_VERSION, TBP_OP_SUBMIT, 1);
	pk_key(f, "tasks");
	msgpack_pack_array(&f->pk, 1);
	msgpack_pack_map(&f->pk, ntask);
	pk_key(f, "sid");
	pk_bin(f, SID, sizeof(SID));
}

static tbp_task_in
task_in(const char *handler)
{
	tbp_task_in t;

	memset(&t, 0, sizeof(t));
	t.sid.p   = SID;
	t.sid.n   = sizeof(SID);
	t.handler = tbp_str(handler);
	return (t);
}

static tbp_task_info
task_info(void)
{
	tbp_task_info t;

	memset(&t, 0, sizeof(t));
	t.id           = 42;
	t.queue        = tbp_str("mail");
	t.handler      = tbp_str("exec");
	t.state        = TB_STATE_DONE;
	t.attempts     = 2;
	t.max_attempts = 5;
	t.crashes      = 1;
	t.max_crashes  = 3;
	t.priority     = -3;
	t.created_at   = 1700000000000000;
	t.started_at   = 1700000000100000;
	t.finished_at  = 1700000000200000;
	return (t);
}

// enc_valid_submit encodes a submit of one full and one minimal task.
static void
enc_valid_submit(fx *f)
{
	static const uint8_t payload[] = { 0x81, 0xa1, 'n', 0x2a }; // {"n":42}
	tbp_task_in          t[2];

	t[0]              = task_in("exec");
	t[0].queue        = tbp_str("mail");
	t[0].payload.p    = payload;
	t[0].payload.n    = sizeof(payload);
	t[0].priority     = -5;
	t[0].max_attempts = 3;
	t[0].timeout_ms   = 1000;
	t[0].delay_ms     = 250;
	t[1]              = task_in("noop");
	assert_int_equal(tbp_enc_submit(&f->sb, 99, t, 2), TB_OK);
}

// Round trips.

static void
test_submit_round_trips(void **state)
{
	fx          *f = *state;
	tbp_task_in *t;

	enc_valid_submit(f);
	assert_int_equal(dec_req(f), TB_OK);
	assert_true(f->req.have_envelope);
	assert_int_equal(f->req.version, TBP_VERSION);
	assert_int_equal(f->req.op, TBP_OP_SUBMIT);
	assert_int_equal(f->req.req_id, 99);
	assert_int_equal(f->req.ntasks, 2);
	t = &f->req.tasks[0];
	assert_int_equal(t->sid.n, TB_SID_LEN);
	assert_memory_equal(t->sid.p, SID, TB_SID_LEN);
	assert_true(tbp_bytes_eq(t->handler, "exec"));
	assert_true(tbp_bytes_eq(t->queue, "mail"));
	assert_int_equal(t->payload.n, 4);
	assert_int_equal(t->payload.p[3], 0x2a);
	assert_int_equal(t->priority, -5);
	assert_int_equal(t->max_attempts, 3);
	assert_int_equal(t->timeout_ms, 1000);
	assert_int_equal(t->delay_ms, 250);
	t = &f->req.tasks[1];
	assert_true(tbp_bytes_eq(t->handler, "noop"));
	assert_int_equal(t->queue.n, 0);
	assert_int_equal(t->payload.n, 0);
	assert_int_equal(t->priority, 0);
	assert_int_equal(t->max_attempts, 0);
}

static void
test_submit_omits_zero_fields(void **state)
{
	fx         *f = *state;
	tbp_task_in t = task_in("noop");
	size_t      n;

	assert_int_equal(tbp_enc_submit(&f->sb, 1, &t, 1), TB_OK);
	n = f->sb.size;
	// [1,1,1,{"tasks":[{"sid":bin16,"handler":"noop"}]}]
	assert_int_equal(n, 4 + 1 + 6 + 1 + 1 + 4 + 18 + 8 + 5);
}

static void
test_status_and_cancel_round_trip(void **state)
{
	fx *f = *state;

	assert_int_equal(
	    tbp_enc_req_id(&f->sb, TBP_OP_STATUS, 5, UINT64_MAX), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.op, TBP_OP_STATUS);
	assert_true(f->req.id == UINT64_MAX);
	reset(f);
	assert_int_equal(tbp_enc_req_id(&f->sb, TBP_OP_CANCEL, 6, 12), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.op, TBP_OP_CANCEL);
	assert_int_equal(f->req.req_id, 6);
	assert_int_equal(f->req.id, 12);
}

static void
test_wait_round_trips(void **state)
{
	fx *f = *state;

	assert_int_equal(tbp_enc_wait(&f->sb, 8, 12, 5000), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.op, TBP_OP_WAIT);
	assert_int_equal(f->req.id, 12);
	assert_int_equal(f->req.timeout_ms, 5000);
}

static void
test_wait_without_timeout_decodes_minus_one(void **state)
{
	fx *f = *state;

	assert_int_equal(tbp_enc_wait(&f->sb, 8, 12, -1), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.timeout_ms, -1);
}

static void
test_list_round_trips(void **state)
{
	fx *f = *state;

	assert_int_equal(tbp_enc_list(&f->sb, 9, "mail", TB_STATE_DEAD, 50,
	                     1000, NULL, 0, 0),
	    TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.op, TBP_OP_LIST);
	assert_true(tbp_bytes_eq(f->req.queue, "mail"));
	assert_int_equal(f->req.state, TB_STATE_DEAD);
	assert_int_equal(f->req.limit, 50);
	assert_int_equal(f->req.after_id, 1000);
}

static void
test_list_defaults_when_fields_absent(void **state)
{
	fx *f = *state;

	assert_int_equal(
	    tbp_enc_list(&f->sb, 9, NULL, -1, 0, 0, NULL, 0, 0), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.queue.n, 0);
	assert_int_equal(f->req.state, -1);
	assert_int_equal(f->req.limit, 0);
	assert_int_equal(f->req.after_id, 0);
	assert_int_equal(f->req.timeout_ms, -1);
}

static void
test_empty_requests_round_trip(void **state)
{
	fx            *f     = *state;
	const uint32_t ops[] = { TBP_OP_PING, TBP_OP_STATS, TBP_OP_SHUTDOWN };

	for (size_t i = 0; i < 3; i++) {
		reset(f);
		assert_int_equal(
		    tbp_enc_req_empty(&f->sb, ops[i], 100 + i), TB_OK);
		assert_int_equal(dec_req(f), TB_OK);
		assert_int_equal(f->req.op, ops[i]);
		assert_int_equal(f->req.req_id, 100 + i);
	}
}

static void
test_rep_error_round_trips(void **state)
{
	fx *f = *state;

	assert_int_equal(tbp_enc_rep_error(&f->sb, TBP_OP_STATUS, 3,
	                     TB_ENOTFOUND, "no task 12"),
	    TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.status, TB_ENOTFOUND);
	assert_int_equal(f->rep.op, TBP_OP_STATUS);
	assert_int_equal(f->rep.req_id, 3);
	assert_true(tbp_bytes_eq(f->rep.errname, "not_found"));
	assert_true(tbp_bytes_eq(f->rep.message, "no task 12"));
	assert_false(f->rep.have_task);
}

static void
test_rep_error_defaults_message(void **state)
{
	fx *f = *state;

	assert_int_equal(tbp_enc_rep_error(
	                     &f->sb, TBP_OP_SUBMIT, 3, TB_ESHUTTINGDOWN, NULL),
	    TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_true(tbp_bytes_eq(f->rep.errname, "shutting_down"));
	assert_true(
	    tbp_bytes_eq(f->rep.message, tbp_err_message(TB_ESHUTTINGDOWN)));
}

static void
test_rep_error_may_answer_unknown_op(void **state)
{
	fx *f = *state;

	assert_int_equal(
	    tbp_enc_rep_error(&f->sb, 77, 3, TB_EUNKNOWNOP, NULL), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.op, 77);
	assert_int_equal(f->rep.status, TB_EUNKNOWNOP);
}

static void
test_rep_submit_round_trips(void **state)
{
	fx            *f     = *state;
	const uint64_t ids[] = { 10, 11, UINT64_MAX };
	const bool     dup[] = { false, true, false };

	assert_int_equal(
	    tbp_enc_rep_submit(&f->sb, 4, ids, dup, NULL, 3), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.status, TB_OK);
	assert_int_equal(f->rep.nids, 3);
	assert_int_equal(f->rep.ids[0], 10);
	assert_true(f->rep.ids[2] == UINT64_MAX);
	assert_false(f->rep.dup[0]);
	assert_true(f->rep.dup[1]);
}

static void
test_rep_submit_without_dup_reads_false(void **state)
{
	fx            *f     = *state;
	const uint64_t ids[] = { 10, 11 };

	assert_int_equal(
	    tbp_enc_rep_submit(&f->sb, 4, ids, NULL, NULL, 2), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.nids, 2);
	assert_false(f->rep.dup[0]);
	assert_false(f->rep.dup[1]);
}

static void
assert_task_info_equal(const tbp_task_info *a, const tbp_task_info *b)
{
	assert_true(a->id == b->id);
	assert_int_equal(a->queue.n, b->queue.n);
	assert_memory_equal(a->queue.p, b->queue.p, a->queue.n);
	assert_int_equal(a->handler.n, b->handler.n);
	assert_memory_equal(a->handler.p, b->handler.p, a->handler.n);
	assert_int_equal(a->state, b->state);
	assert_int_equal(a->attempts, b->attempts);
	assert_int_equal(a->max_attempts, b->max_attempts);
	assert_int_equal(a->crashes, b->crashes);
	assert_int_equal(a->max_crashes, b->max_crashes);
	assert_int_equal(a->priority, b->priority);
	assert_true(a->created_at == b->created_at);
	assert_true(a->started_at == b->started_at);
	assert_true(a->finished_at == b->finished_at);
	assert_true(a->run_at == b->run_at);
	assert_int_equal(a->timeout_ms, b->timeout_ms);
	assert_int_equal(a->forever, b->forever);
	assert_int_equal(a->key.n, b->key.n);
	if (a->key.n > 0) {
		assert_memory_equal(a->key.p, b->key.p, a->key.n);
	}
	assert_int_equal(a->result.n, b->result.n);
	if (a->result.n > 0) {
		assert_memory_equal(a->result.p, b->result.p, a->result.n);
	}
	assert_int_equal(a->error.n, b->error.n);
	if (a->error.n > 0) {
		assert_memory_equal(a->error.p, b->error.p, a->error.n);
	}
}

static void
test_rep_task_round_trips(void **state)
{
	fx           *f = *state;
	tbp_task_info t = task_info();

	assert_int_equal(
	    tbp_enc_rep_task(&f->sb, TBP_OP_STATUS, 5, &t, false), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_true(f->rep.have_task);
	assert_false(f->rep.timed_out);
	assert_task_info_equal(&f->rep.task, &t);
}

static void
test_rep_task_carries_result_and_error(void **state)
{
	fx                  *f        = *state;
	static const uint8_t result[] = { 0x92, 0x01, 0xc3 }; // [1, true]
	tbp_task_info        t        = task_info();

	t.result.p = result;
	t.result.n = sizeof(result);
	t.error    = tbp_str("exit status 3");
	assert_int_equal(
	    tbp_enc_rep_task(&f->sb, TBP_OP_CANCEL, 5, &t, false), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_task_info_equal(&f->rep.task, &t);
}

static void
test_rep_wait_round_trips_timed_out(void **state)
{
	fx           *f = *state;
	tbp_task_info t = task_info();

	t.state = TB_STATE_RUNNING;
	assert_int_equal(
	    tbp_enc_rep_task(&f->sb, TBP_OP_WAIT, 5, &t, true), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.op, TBP_OP_WAIT);
	assert_true(f->rep.timed_out);
	assert_task_info_equal(&f->rep.task, &t);
}

static void
test_rep_tasks_round_trips(void **state)
{
	fx           *f = *state;
	tbp_task_info t[3];

	for (int i = 0; i < 3; i++) {
		t[i]    = task_info();
		t[i].id = 100 + i;
	}
	t[1].error = tbp_str("boom");
	assert_int_equal(tbp_enc_rep_tasks(&f->sb, 6, t, 3), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.ntasks, 3);
	for (int i = 0; i < 3; i++) {
		assert_task_info_equal(&f->rep.tasks[i], &t[i]);
	}
}

static void
test_rep_tasks_empty_list(void **state)
{
	fx *f = *state;

	assert_int_equal(tbp_enc_rep_tasks(&f->sb, 6, NULL, 0), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.ntasks, 0);
	assert_null(f->rep.tasks);
}

static void
test_rep_stats_round_trips(void **state)
{
	fx       *f  = *state;
	tbp_stats st = { 1, 2, 3, 4, 5, 6, 7, 8, UINT64_MAX, 16, 4321, 9, 10,
		11 };

	assert_int_equal(tbp_enc_rep_stats(&f->sb, 7, &st), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_memory_equal(&f->rep.stats, &st, sizeof(st));
}

static void
test_rep_ping_round_trips(void **state)
{
	fx *f = *state;

	assert_int_equal(
	    tbp_enc_rep_ping(&f->sb, 8, TB_VERSION_STRING, 1234), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.op, TBP_OP_PING);
	assert_true(tbp_bytes_eq(f->rep.version_str, TB_VERSION_STRING));
	assert_int_equal(f->rep.pid, 1234);
}

static void
test_rep_empty_round_trips(void **state)
{
	fx *f = *state;

	assert_int_equal(tbp_enc_rep_empty(&f->sb, TBP_OP_SHUTDOWN, 9), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.op, TBP_OP_SHUTDOWN);
	assert_int_equal(f->rep.status, TB_OK);
	assert_int_equal(f->rep.req_id, 9);
}

static tbp_event
event(void)
{
	tbp_event e;

	memset(&e, 0, sizeof(e));
	e.seq         = 17;
	e.event       = tbp_str("done");
	e.id          = 42;
	e.queue       = tbp_str("default");
	e.handler     = tbp_str("noop");
	e.state       = TB_STATE_DONE;
	e.attempt     = 1;
	e.crashes     = 2;
	e.duration_us = 1500;
	e.time        = 1700000000000000;
	return (e);
}

static void
test_event_round_trips(void **state)
{
	fx                  *f        = *state;
	static const uint8_t result[] = { 0xc0 };
	tbp_event            e        = event();

	e.result.p = result;
	e.result.n = 1;
	e.error    = tbp_str("late");
	assert_int_equal(tbp_enc_event(&f->sb, &e), TB_OK);
	assert_memory_equal(f->sb.data, "tb.done.default.noop\0", 21);
	assert_int_equal(dec_ev(f), TB_OK);
	assert_true(tbp_bytes_eq(f->ev.topic, "tb.done.default.noop"));
	assert_int_equal(f->ev.seq, 17);
	assert_true(tbp_bytes_eq(f->ev.event, "done"));
	assert_int_equal(f->ev.id, 42);
	assert_true(tbp_bytes_eq(f->ev.queue, "default"));
	assert_true(tbp_bytes_eq(f->ev.handler, "noop"));
	assert_int_equal(f->ev.state, TB_STATE_DONE);
	assert_int_equal(f->ev.attempt, 1);
	assert_int_equal(f->ev.crashes, 2);
	assert_int_equal(f->ev.duration_us, 1500);
	assert_true(f->ev.time == 1700000000000000);
	assert_int_equal(f->ev.result.n, 1);
	assert_true(tbp_bytes_eq(f->ev.error, "late"));
}

static void
test_views_outlive_the_input_buffer(void **state)
{
	fx   *f = *state;
	char *copy;

	enc_valid_submit(f);
	assert_non_null(copy = malloc(f->sb.size));
	memcpy(copy, f->sb.data, f->sb.size);
	assert_int_equal(dec_req_raw(f, copy, f->sb.size), TB_OK);
	memset(copy, 0xff, f->sb.size);
	free(copy); // ASan would flag a view into it
	assert_true(tbp_bytes_eq(f->req.tasks[0].handler, "exec"));
	assert_true(tbp_bytes_eq(f->req.tasks[1].handler, "noop"));
}

static void
test_fini_twice_is_safe(void **state)
{
	fx *f = *state;

	enc_valid_submit(f);
	assert_int_equal(dec_req(f), TB_OK);
	tbp_req_fini(&f->req);
	tbp_req_fini(&f->req);
	assert_null(f->req.tasks);
	assert_int_equal(f->req.ntasks, 0);
}

static void
test_encoders_append_whole_messages(void **state)
{
	fx    *f = *state;
	size_t used;

	assert_int_equal(tbp_enc_req_empty(&f->sb, TBP_OP_PING, 1), TB_OK);
	assert_int_equal(tbp_enc_wait(&f->sb, 2, 3, 4), TB_OK);
	assert_int_equal(
	    tbp_check(f->sb.data, f->sb.size, TBP_MAX_DEPTH, &used), TB_OK);
	assert_true(used < f->sb.size);
	assert_int_equal(
	    tbp_req_decode(&f->req, f->sb.data + used, f->sb.size - used),
	    TB_OK);
	assert_int_equal(f->req.op, TBP_OP_WAIT);
}

static void
test_names_come_from_the_lists(void **state)
{
	(void) state;
	assert_string_equal(tbp_op_name(TBP_OP_PING), "ping");
	assert_string_equal(tbp_op_name(TBP_OP_SHUTDOWN), "shutdown");
	assert_string_equal(tbp_op_name(TBP_OP_COUNT), "unknown");
	assert_string_equal(tbp_op_name(UINT32_MAX), "unknown");
	assert_string_equal(tbp_err_name(TB_OK), "ok");
	assert_string_equal(tbp_err_name(TB_ENOTFOUND), "not_found");
	assert_string_equal(tbp_err_name(-1), "unknown");
	assert_string_equal(tbp_err_name(1000), "unknown");
	assert_string_equal(tbp_err_message(TB_EBADREQ), "malformed request");
	assert_string_equal(tbp_err_message(-1), "unknown error");
}

// The state names as they go over the wire, in the CLI's output and in
// the broker's logs, spelled out here rather than taken from TB_STATES.
static const struct {
	int         state;
	const char *name;
	bool        final;
} want_states[] = {
	{ TB_STATE_PENDING, "pending", false },
	{ TB_STATE_RUNNING, "running", false },
	{ TB_STATE_DONE, "done", true },
	{ TB_STATE_FAILED, "failed", false },
	{ TB_STATE_DEAD, "dead", true },
	{ TB_STATE_CANCELLED, "cancelled", true },
};
#define NWANT_STATES (sizeof(want_states) / sizeof(want_states[0]))

static void
test_state_names_round_trip(void **state)
{
	(void) state;
	assert_int_equal(TBP_NSTATES, NWANT_STATES);
	for (size_t i = 0; i < NWANT_STATES; i++) {
		int st = -1;

		assert_int_equal(want_states[i].state, (int) i); // dense
		assert_string_equal(
		    tbp_state_name(want_states[i].state), want_states[i].name);
		assert_int_equal(
		    tbp_state_parse(want_states[i].name, &st), TB_OK);
		assert_int_equal(st, want_states[i].state);
		assert_string_equal(tbp_state_name(st), want_states[i].name);
	}
}

static void
test_state_parse_refuses_unknown_names(void **state)
{
	static const char *const bad[] = { "", "DEAD", "Pending", "unknown",
		"pending ", " done", "cancel", "cancelled\n", "doneX" };
	int                      st;

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		st = 42;
		assert_int_equal(tbp_state_parse(bad[i], &st), TB_EINVAL);
		assert_int_equal(st, 42); // untouched
	}
	assert_int_equal(tbp_state_parse(NULL, &st), TB_EINVAL);
	assert_int_equal(st, 42);
	assert_int_equal(tbp_state_parse("done", NULL), TB_EINVAL);
}

static void
test_state_name_of_no_state_is_unknown(void **state)
{
	(void) state;
	assert_string_equal(tbp_state_name(-1), "unknown");
	assert_string_equal(tbp_state_name(TBP_NSTATES), "unknown");
	assert_string_equal(tbp_state_name(INT_MAX), "unknown");
	assert_string_equal(tbp_state_name(INT_MIN), "unknown");
}

static void
test_state_final_is_done_dead_cancelled(void **state)
{
	(void) state;
	for (size_t i = 0; i < NWANT_STATES; i++) {
		assert_int_equal(tbp_state_final(want_states[i].state),
		    want_states[i].final);
	}
	assert_false(tbp_state_final(-1));
	assert_false(tbp_state_final(TBP_NSTATES));
	assert_false(tbp_state_final(INT_MAX));
}

// Every nng code tbp_nng_err does not send to TB_ESYSTEM in every context,
// and what each context gets: the broker's and the client's maps as they
// were before they became one.
static const struct {
	int nng;
	int broker, client, dial;
} want_nng[] = {
	{ NNG_ENOMEM, TB_ENOMEM, TB_ENOMEM, TB_ENOMEM },
	{ NNG_ETIMEDOUT, TB_ETIMEDOUT, TB_ETIMEDOUT, TB_ETIMEDOUT },
	{ NNG_ECLOSED, TB_ECLOSED, TB_ECLOSED, TB_ECLOSED },
	{ NNG_EINVAL, TB_EINVAL, TB_EINVAL, TB_EINVAL },
	{ NNG_ENOTSUP, TB_EINVAL, TB_ESYSTEM, TB_EINVAL },
	{ NNG_EADDRINVAL, TB_EINVAL, TB_EUNREACHABLE, TB_EUNREACHABLE },
	{ NNG_EADDRINUSE, TB_EBUSY, TB_ESYSTEM, TB_ESYSTEM },
	{ NNG_EPROTO, TB_ESYSTEM, TB_EPROTO, TB_EPROTO },
	{ NNG_ECONNREFUSED, TB_ESYSTEM, TB_EUNREACHABLE, TB_EUNREACHABLE },
	{ NNG_ECONNRESET, TB_ESYSTEM, TB_EUNREACHABLE, TB_EUNREACHABLE },
	{ NNG_ECONNSHUT, TB_ESYSTEM, TB_EUNREACHABLE, TB_EUNREACHABLE },
	{ NNG_ECONNABORTED, TB_ESYSTEM, TB_EUNREACHABLE, TB_EUNREACHABLE },
	{ NNG_ENOENT, TB_ESYSTEM, TB_EUNREACHABLE, TB_EUNREACHABLE },
	{ NNG_EUNREACHABLE, TB_ESYSTEM, TB_EUNREACHABLE, TB_EUNREACHABLE },
	{ NNG_EPEERAUTH, TB_ESYSTEM, TB_ETLS, TB_ETLS },
	{ NNG_ECRYPTO, TB_ESYSTEM, TB_ETLS, TB_ETLS },
	{ NNG_EPERM, TB_ESYSTEM, TB_EUNREACHABLE, TB_EUNREACHABLE },
	{ NNG_EAGAIN, TB_ESYSTEM, TB_ESYSTEM, TB_EUNREACHABLE },
};

static void
test_nng_err_maps_each_code(void **state)
{
	(void) state;
	assert_int_equal(tbp_nng_err(0, TBP_NNG_BROKER), TB_OK);
	assert_int_equal(tbp_nng_err(0, TBP_NNG_CLIENT), TB_OK);
	assert_int_equal(tbp_nng_err(0, TBP_NNG_DIAL), TB_OK);
	for (size_t i = 0; i < sizeof(want_nng) / sizeof(want_nng[0]); i++) {
		assert_int_equal(tbp_nng_err(want_nng[i].nng, TBP_NNG_BROKER),
		    want_nng[i].broker);
		assert_int_equal(tbp_nng_err(want_nng[i].nng, TBP_NNG_CLIENT),
		    want_nng[i].client);
		assert_int_equal(tbp_nng_err(want_nng[i].nng, TBP_NNG_DIAL),
		    want_nng[i].dial);
	}
}

static void
test_nng_err_defaults_to_system(void **state)
{
	static const int other[] = { NNG_EINTR, NNG_EBUSY, NNG_ESTATE,
		NNG_ENOSPC, NNG_EEXIST, NNG_EREADONLY, NNG_EWRITEONLY,
		NNG_ECANCELED, NNG_ENOFILES, NNG_EAMBIGUOUS, NNG_EBADTYPE,
		NNG_EINTERNAL, NNG_ESYSERR | 2, NNG_ETRANERR | 1, -1, 12345 };

	(void) state;
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		assert_int_equal(
		    tbp_nng_err(other[i], TBP_NNG_BROKER), TB_ESYSTEM);
		assert_int_equal(
		    tbp_nng_err(other[i], TBP_NNG_CLIENT), TB_ESYSTEM);
		assert_int_equal(
		    tbp_nng_err(other[i], TBP_NNG_DIAL), TB_ESYSTEM);
	}
}

static void
test_nng_err_refuses_unknown_ctx(void **state)
{
	(void) state;
	assert_int_equal(
	    tbp_nng_err(NNG_ENOMEM, TBP_NNG_CTX_COUNT), TB_EINTERNAL);
	assert_int_equal(
	    tbp_nng_err(NNG_ENOMEM, (tbp_nng_ctx) -1), TB_EINTERNAL);
}

static void
test_bytes_helpers(void **state)
{
	tbp_bytes v = tbp_str("abc");
	tbp_bytes e = tbp_str(NULL);
	char     *s;

	(void) state;
	assert_int_equal(v.n, 3);
	assert_true(tbp_bytes_eq(v, "abc"));
	assert_false(tbp_bytes_eq(v, "ab"));
	assert_false(tbp_bytes_eq(v, "abcd"));
	assert_int_equal(e.n, 0);
	assert_true(tbp_bytes_eq(e, ""));
	assert_true(tbp_bytes_eq(e, NULL));
	v.n = 2;
	assert_non_null(s = tbp_bytes_dup(v));
	assert_string_equal(s, "ab");
	free(s);
	assert_non_null(s = tbp_bytes_dup(e));
	assert_string_equal(s, "");
	free(s);
}

// Malformed input.

static void
test_req_rejects_every_truncation(void **state)
{
	fx *f = *state;

	enc_valid_submit(f);
	for (size_t n = 0; n < f->sb.size; n++) {
		assert_int_equal(dec_req_raw(f, f->sb.data, n), TB_EBADREQ);
		assert_false(f->req.have_envelope);
		assert_int_not_equal(
		    tbp_check(f->sb.data, n, TBP_MAX_DEPTH, NULL), TB_OK);
	}
}

static void
test_rep_rejects_every_truncation(void **state)
{
	fx           *f = *state;
	tbp_task_info t[2];

	t[0]       = task_info();
	t[1]       = task_info();
	t[1].error = tbp_str("boom");
	assert_int_equal(tbp_enc_rep_tasks(&f->sb, 6, t, 2), TB_OK);
	for (size_t n = 0; n < f->sb.size; n++) {
		tbp_rep_fini(&f->rep);
		assert_int_equal(
		    tbp_rep_decode(&f->rep, f->sb.data, n), TB_EPROTO);
	}
}

static void
test_event_rejects_every_truncation(void **state)
{
	fx       *f = *state;
	tbp_event e = event();

	assert_int_equal(tbp_enc_event(&f->sb, &e), TB_OK);
	for (size_t n = 0; n < f->sb.size; n++) {
		tbp_event_fini(&f->ev);
		assert_int_equal(
		    tbp_event_decode(&f->ev, f->sb.data, n), TB_EPROTO);
	}
}

static void
test_req_rejects_trailing_bytes(void **state)
{
	fx *f = *state;

	enc_valid_submit(f);
	pk_raw(f, "\x00", 1);
	assert_int_equal(dec_req(f), TB_EBADREQ);
	assert_false(f->req.have_envelope);
}

static void
test_rep_rejects_trailing_bytes(void **state)
{
	fx *f = *state;

	assert_int_equal(tbp_enc_rep_empty(&f->sb, TBP_OP_SHUTDOWN, 1), TB_OK);
	pk_raw(f, "\xc0", 1);
	assert_int_equal(dec_rep(f), TB_EPROTO);
}

static void
test_event_rejects_trailing_bytes(void **state)
{
	fx       *f = *state;
	tbp_event e = event();

	assert_int_equal(tbp_enc_event(&f->sb, &e), TB_OK);
	pk_raw(f, "\x01", 1);
	assert_int_equal(dec_ev(f), TB_EPROTO);
}

static void
test_req_rejects_non_array(void **state)
{
	fx *f = *state;

	msgpack_pack_map(&f->pk, 0);
	assert_int_equal(dec_req(f), TB_EBADREQ);
	reset(f);
	msgpack_pack_uint64(&f->pk, 1);
	assert_int_equal(dec_req(f), TB_EBADREQ);
	assert_false(f->req.have_envelope);
}

static void
test_req_rejects_short_envelope(void **state)
{
	fx *f = *state;

	msgpack_pack_array(&f->pk, 3);
	msgpack_pack_uint64(&f->pk, TBP_VERSION);
	msgpack_pack_uint64(&f->pk, TBP_OP_PING);
	msgpack_pack_uint64(&f->pk, 5);
	assert_int_equal(dec_req(f), TB_EBADREQ);
	// The first three fields were there, so an error reply is possible.
	assert_true(f->req.have_envelope);
	assert_int_equal(f->req.req_id, 5);
	reset(f);
	msgpack_pack_array(&f->pk, 2);
	msgpack_pack_uint64(&f->pk, TBP_VERSION);
	msgpack_pack_uint64(&f->pk, TBP_OP_PING);
	assert_int_equal(dec_req(f), TB_EBADREQ);
	assert_false(f->req.have_envelope);
}

static void
test_req_rejects_long_envelope(void **state)
{
	fx *f = *state;

	msgpack_pack_array(&f->pk, 5);
	msgpack_pack_uint64(&f->pk, TBP_VERSION);
	msgpack_pack_uint64(&f->pk, TBP_OP_PING);
	msgpack_pack_uint64(&f->pk, 5);
	msgpack_pack_map(&f->pk, 0);
	msgpack_pack_nil(&f->pk);
	assert_int_equal(dec_req(f), TB_EBADREQ);
	assert_true(f->req.have_envelope);
}

static void
test_req_rejects_wrong_envelope_types(void **state)
{
	fx *f = *state;

	msgpack_pack_array(&f->pk, 4);
	msgpack_pack_uint64(&f->pk, TBP_VERSION);
	pk_str(f, "ping");
	msgpack_pack_uint64(&f->pk, 5);
	msgpack_pack_map(&f->pk, 0);
	assert_int_equal(dec_req(f), TB_EBADREQ);
	assert_false(f->req.have_envelope);
	reset(f);
	msgpack_pack_array(&f->pk, 4);
	msgpack_pack_uint64(&f->pk, TBP_VERSION);
	msgpack_pack_uint64(&f->pk, TBP_OP_PING);
	msgpack_pack_int64(&f->pk, -5);
	msgpack_pack_map(&f->pk, 0);
	assert_int_equal(dec_req(f), TB_EBADREQ);
	assert_false(f->req.have_envelope);
}

static void
test_req_rejects_newer_version(void **state)
{
	fx *f = *state;

	pk_req_head(f, TBP_VERSION + 1, TBP_OP_SUBMIT, 1);
	pk_key(f, "something_new");
	msgpack_pack_true(&f->pk);
	assert_int_equal(dec_req(f), TB_EVERSION);
	assert_true(f->req.have_envelope);
	assert_int_equal(f->req.version, TBP_VERSION + 1);
	assert_int_equal(f->req.op, TBP_OP_SUBMIT);
	assert_int_equal(f->req.req_id, 7);
}

static void
test_req_rejects_newer_version_of_any_shape(void **state)
{
	fx *f = *state;

	// A later version may change what follows req_id.
	msgpack_pack_array(&f->pk, 3);
	msgpack_pack_uint64(&f->pk, TBP_VERSION + 1);
	msgpack_pack_uint64(&f->pk, 200);
	msgpack_pack_uint64(&f->pk, 8);
	assert_int_equal(dec_req(f), TB_EVERSION);
	assert_int_equal(f->req.req_id, 8);
}

static void
test_req_rejects_version_zero(void **state)
{
	fx *f = *state;

	pk_req_head(f, 0, TBP_OP_PING, 0);
	assert_int_equal(dec_req(f), TB_EBADREQ);
	assert_true(f->req.have_envelope);
	assert_int_equal(f->req.req_id, 7);
}

static void
test_req_rejects_unknown_op(void **state)
{
	fx *f = *state;

	pk_req_head(f, TBP_VERSION, TBP_OP_COUNT, 0);
	assert_int_equal(dec_req(f), TB_EUNKNOWNOP);
	assert_true(f->req.have_envelope);
	assert_int_equal(f->req.op, TBP_OP_COUNT);
	assert_int_equal(f->req.req_id, 7);
}

static void
test_req_rejects_body_not_map(void **state)
{
	fx *f = *state;

	msgpack_pack_array(&f->pk, 4);
	msgpack_pack_uint64(&f->pk, TBP_VERSION);
	msgpack_pack_uint64(&f->pk, TBP_OP_PING);
	msgpack_pack_uint64(&f->pk, 5);
	msgpack_pack_array(&f->pk, 0);
	assert_int_equal(dec_req(f), TB_EBADREQ);
	assert_true(f->req.have_envelope);
}

static void
test_req_rejects_non_string_key(void **state)
{
	fx *f = *state;

	pk_req_head(f, TBP_VERSION, TBP_OP_STATUS, 2);
	pk_key(f, "id");
	msgpack_pack_uint64(&f->pk, 1);
	msgpack_pack_uint64(&f->pk, 1);
	msgpack_pack_uint64(&f->pk, 1);
	assert_int_equal(dec_req(f), TB_EBADREQ);
}

// Hostile length prefixes: each header claims far more than the buffer
// holds. The test passes only if nothing big is reserved, which ASan's
// allocation limit and the CI's memory limit would notice.
static void
test_check_rejects_hostile_lengths(void **state)
{
	static const uint8_t hostile[][6] = {
		{ 0xdd, 0xff, 0xff, 0xff, 0xff, 0x00 }, // array32
		{ 0xdf, 0xff, 0xff, 0xff, 0xff, 0x00 }, // map32
		{ 0xdb, 0xff, 0xff, 0xff, 0xff, 0x00 }, // str32
		{ 0xc6, 0xff, 0xff, 0xff, 0xff, 0x00 }, // bin32
		{ 0xc9, 0xff, 0xff, 0xff, 0xff, 0x00 }, // ext32
		{ 0xdc, 0xff, 0xff, 0x00, 0x00, 0x00 }, // array16
	};
	fx *f = *state;

	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		assert_int_equal(
		    tbp_check(hostile[i], 6, TBP_MAX_DEPTH, NULL), TB_EBADREQ);
		assert_int_equal(dec_req_raw(f, hostile[i], 6), TB_EBADREQ);
	}
}

static void
test_req_rejects_hostile_lengths_inside(void **state)
{
	fx *f = *state;

	// A well-formed start, then an array32 claiming 4G elements.
	pk_req_head(f, TBP_VERSION, TBP_OP_SUBMIT, 1);
	pk_key(f, "tasks");
	pk_raw(f, "\xdd\xff\xff\xff\xff\x80\x80\x80", 8);
	assert_int_equal(dec_req(f), TB_EBADREQ);
	reset(f);
	pk_submit_head(f, 2);
	pk_key(f, "handler");
	pk_raw(f,
	    "\xdb\xff\xff\xff\xff"
	    "exec",
	    9); // str32 of 4 GB
	assert_int_equal(dec_req(f), TB_EBADREQ);
	reset(f);
	pk_submit_head(f, 3);
	pk_key(f, "handler");
	pk_str(f, "exec");
	pk_key(f, "payload");
	pk_raw(f, "\xc6\xff\xff\xff\xff\x80", 6); // bin32 of 4 GB
	assert_int_equal(dec_req(f), TB_EBADREQ);
}

static void
test_check_counts_map_pairs_against_bytes(void **state)
{
	// map16 of 2 pairs needs 4 objects; 3 bytes cannot hold them.
	static const uint8_t m[] = { 0xde, 0x00, 0x02, 0x01, 0x02, 0x03 };

	(void) state;
	assert_int_equal(tbp_check(m, sizeof(m), 8, NULL), TB_EBADREQ);
}

static void
test_check_accepts_every_type(void **state)
{
	// nil, false, true, ints of each width, floats, str8, bin8, ext8,
	// fixext1, negative fixint, int8, empty str, in one array16.
	static const uint8_t m[]  = { 0xdc, 0x00, 0x10, 0xc0, 0xc2, 0xc3, 0xcc,
		 0x01, 0xcd, 0x00, 0x01, 0xce, 0, 0, 0, 1, 0xd3, 0, 0, 0, 0, 0,
		 0, 0, 1, 0xca, 0, 0, 0, 0, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xd9,
		 1, 'x', 0xc4, 1, 7, 0xc7, 1, 5, 9, 0xd4, 5, 9, 0xff, 0xd0,
		 0x80, 0xa0 };
	size_t               used = 0;

	(void) state;
	assert_int_equal(tbp_check(m, sizeof(m), 1, &used), TB_OK);
	assert_int_equal(used, sizeof(m));
}

static void
test_check_reports_first_object_length(void **state)
{
	static const uint8_t m[] = { 0x91, 0x01, 0x02, 0x03 };
	size_t               used;

	(void) state;
	assert_int_equal(tbp_check(m, sizeof(m), 4, &used), TB_OK);
	assert_int_equal(used, 2);
}

static void
test_check_rejects_reserved_byte(void **state)
{
	static const uint8_t m[] = { 0x92, 0x01, 0xc1 };

	(void) state;
	assert_int_equal(tbp_check(m, sizeof(m), 4, NULL), TB_EBADREQ);
	assert_int_equal(tbp_check(m + 2, 1, 4, NULL), TB_EBADREQ);
}

static void
test_req_rejects_reserved_byte(void **state)
{
	fx *f = *state;

	pk_req_head(f, TBP_VERSION, TBP_OP_STATUS, 2);
	pk_key(f, "id");
	msgpack_pack_uint64(&f->pk, 1);
	pk_key(f, "x");
	pk_raw(f, "\xc1", 1);
	assert_int_equal(dec_req(f), TB_EBADREQ);
}

static void
pk_nested(fx *f, unsigned depth)
{
	for (unsigned i = 0; i < depth; i++) {
		msgpack_pack_array(&f->pk, 1);
	}
	msgpack_pack_nil(&f->pk);
}

static void
test_check_limits_depth(void **state)
{
	fx *f = *state;

	pk_nested(f, TBP_MAX_DEPTH);
	assert_int_equal(
	    tbp_check(f->sb.data, f->sb.size, TBP_MAX_DEPTH, NULL), TB_OK);
	reset(f);
	pk_nested(f, TBP_MAX_DEPTH + 1);
	assert_int_equal(
	    tbp_check(f->sb.data, f->sb.size, TBP_MAX_DEPTH, NULL),
	    TB_ETOOBIG);
	// Empty containers count too, as they do for msgpack-c.
	assert_int_equal(tbp_check("\x90", 1, 0, NULL), TB_ETOOBIG);
	assert_int_equal(tbp_check("\x90", 1, 1, NULL), TB_OK);
	assert_int_equal(tbp_check("\x05", 1, 0, NULL), TB_OK);
}

static void
test_check_survives_very_deep_input(void **state)
{
	fx *f = *state;

	// Far deeper than the walker's own stack, with a huge max_depth.
	pk_nested(f, 100000);
	assert_int_equal(
	    tbp_check(f->sb.data, f->sb.size, UINT32_MAX, NULL), TB_ETOOBIG);
}

static void
test_req_rejects_deep_envelope(void **state)
{
	fx *f = *state;

	pk_req_head(f, TBP_VERSION, TBP_OP_PING, 1);
	pk_key(f, "extra");
	pk_nested(f, TBP_MAX_DEPTH); // 2 levels already open
	assert_int_equal(dec_req(f), TB_ETOOBIG);
	assert_false(f->req.have_envelope);
}

static void
test_req_accepts_deepest_allowed_envelope(void **state)
{
	fx *f = *state;

	pk_req_head(f, TBP_VERSION, TBP_OP_PING, 1);
	pk_key(f, "extra");
	pk_nested(f, TBP_MAX_DEPTH - 2);
	assert_int_equal(dec_req(f), TB_OK);
}

static void
pk_task_with_payload(fx *f, const void *p, size_t n)
{
	pk_submit_head(f, 3);
	pk_key(f, "handler");
	pk_str(f, "exec");
	pk_key(f, "payload");
	pk_bin(f, p, n);
}

static void
test_req_rejects_deep_payload(void **state)
{
	fx             *f = *state;
	msgpack_sbuffer p;
	msgpack_packer  pk;

	msgpack_sbuffer_init(&p);
	msgpack_packer_init(&pk, &p, msgpack_sbuffer_write);
	for (unsigned i = 0; i < TBP_MAX_DEPTH + 1; i++) {
		msgpack_pack_map(&pk, 1);
		msgpack_pack_str(&pk, 1);
		msgpack_pack_str_body(&pk, "k", 1);
	}
	msgpack_pack_nil(&pk);
	pk_task_with_payload(f, p.data, p.size);
	msgpack_sbuffer_destroy(&p);
	assert_int_equal(dec_req(f), TB_ETOOBIG);
	assert_true(f->req.have_envelope);
}

static void
test_req_rejects_payload_not_one_object(void **state)
{
	fx *f = *state;

	pk_task_with_payload(f, "\x01\x02", 2); // two objects
	assert_int_equal(dec_req(f), TB_EBADREQ);
	reset(f);
	pk_task_with_payload(f, "\x92\x01", 2); // truncated
	assert_int_equal(dec_req(f), TB_EBADREQ);
	reset(f);
	pk_task_with_payload(f, "\xc1", 1); // reserved
	assert_int_equal(dec_req(f), TB_EBADREQ);
	reset(f);
	pk_task_with_payload(f, "\x92\x01\x02", 3); // exactly one: fine
	assert_int_equal(dec_req(f), TB_OK);
}

static void
test_req_rejects_payload_over_limit(void **state)
{
	fx      *f = *state;
	uint8_t *p;

	// One bin8-wrapped string object of exactly TBP_MAX_PAYLOAD + 1.
	assert_non_null(p = calloc(1, TBP_MAX_PAYLOAD + 1));
	p[0] = 0xc6;
	p[1] = (uint8_t) ((TBP_MAX_PAYLOAD - 4) >> 24);
	p[2] = (uint8_t) ((TBP_MAX_PAYLOAD - 4) >> 16);
	p[3] = (uint8_t) ((TBP_MAX_PAYLOAD - 4) >> 8);
	p[4] = (uint8_t) (TBP_MAX_PAYLOAD - 4);
	pk_task_with_payload(f, p, TBP_MAX_PAYLOAD + 1);
	assert_int_equal(dec_req(f), TB_ETOOBIG);
	reset(f);
	// One byte less is exactly the limit and one valid object.
	p[4] = (uint8_t) (TBP_MAX_PAYLOAD - 5);
	pk_task_with_payload(f, p, TBP_MAX_PAYLOAD);
	assert_int_equal(dec_req(f), TB_OK);
	free(p);
}

static void
test_req_rejects_long_names(void **state)
{
	fx  *f = *state;
	char name[TBP_MAX_NAME + 2];

	memset(name, 'h', sizeof(name));
	name[TBP_MAX_NAME + 1] = '\0';
	pk_submit_head(f, 2);
	pk_key(f, "handler");
	pk_str(f, name);
	assert_int_equal(dec_req(f), TB_ETOOBIG);
	reset(f);
	pk_submit_head(f, 3);
	pk_key(f, "handler");
	pk_str(f, "exec");
	pk_key(f, "queue");
	pk_str(f, name);
	assert_int_equal(dec_req(f), TB_ETOOBIG);
	reset(f);
	name[TBP_MAX_NAME] = '\0'; // exactly the limit
	pk_submit_head(f, 3);
	pk_key(f, "handler");
	pk_str(f, name);
	pk_key(f, "queue");
	pk_str(f, name);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.tasks[0].queue.n, TBP_MAX_NAME);
}

static void
test_req_rejects_empty_handler(void **state)
{
	fx *f = *state;

	pk_submit_head(f, 2);
	pk_key(f, "handler");
	pk_str(f, "");
	assert_int_equal(dec_req(f), TB_EBADREQ);
}

static void
test_req_rejects_nul_in_names(void **state)
{
	fx *f = *state;

	pk_submit_head(f, 2);
	pk_key(f, "handler");
	msgpack_pack_str(&f->pk, 3);
	msgpack_pack_str_body(&f->pk, "a\0b", 3);
	assert_int_equal(dec_req(f), TB_EBADREQ);
}

static void
pk_tasks(fx *f, uint32_t n)
{
	pk_req_head(f, TBP_VERSION, TBP_OP_SUBMIT, 1);
	pk_key(f, "tasks");
	msgpack_pack_array(&f->pk, n);
	for (uint32_t i = 0; i < n; i++) {
		msgpack_pack_map(&f->pk, 2);
		pk_key(f, "sid");
		pk_bin(f, SID, sizeof(SID));
		pk_key(f, "handler");
		pk_str(f, "noop");
	}
}

static void
test_req_accepts_max_tasks(void **state)
{
	fx *f = *state;

	pk_tasks(f, TBP_MAX_TASKS);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.ntasks, TBP_MAX_TASKS);
}

static void
test_req_rejects_too_many_tasks(void **state)
{
	fx *f = *state;

	pk_tasks(f, TBP_MAX_TASKS + 1);
	assert_int_equal(dec_req(f), TB_ETOOBIG);
	assert_true(f->req.have_envelope);
}

static void
test_req_rejects_zero_tasks(void **state)
{
	fx *f = *state;

	pk_tasks(f, 0);
	assert_int_equal(dec_req(f), TB_EBADREQ);
}

static void
test_req_rejects_wrong_sid_length(void **state)
{
	fx *f = *state;

	for (size_t n = 0; n <= TB_SID_LEN + 1; n++) {
		if (n == TB_SID_LEN) {
			continue;
		}
		reset(f);
		pk_req_head(f, TBP_VERSION, TBP_OP_SUBMIT, 1);
		pk_key(f, "tasks");
		msgpack_pack_array(&f->pk, 1);
		msgpack_pack_map(&f->pk, 2);
		pk_key(f, "sid");
		pk_bin(f, "0123456789abcdefg", n);
		pk_key(f, "handler");
		pk_str(f, "noop");
		assert_int_equal(dec_req(f), TB_EBADREQ);
	}
}

static void
test_req_accepts_sid_as_str(void **state)
{
	fx *f = *state;

	pk_req_head(f, TBP_VERSION, TBP_OP_SUBMIT, 1);
	pk_key(f, "tasks");
	msgpack_pack_array(&f->pk, 1);
	msgpack_pack_map(&f->pk, 2);
	pk_key(f, "sid");
	pk_str(f, "0123456789abcdef");
	pk_key(f, "handler");
	pk_str(f, "noop");
	assert_int_equal(dec_req(f), TB_OK);
	assert_memory_equal(f->req.tasks[0].sid.p, "0123456789abcdef", 16);
}

// One task field of a wrong type or out of range, after a valid handler.
static void
test_req_rejects_wrong_task_field_types(void **state)
{
	fx *f = *state;
	struct {
		const char *key;
		int         kind; // what to pack
	} cases[] = {
		{ "priority", 0 },     // "x"
		{ "priority", 1 },     // INT32_MAX + 1
		{ "priority", 2 },     // INT32_MIN - 1
		{ "max_attempts", 3 }, // -1
		{ "max_attempts", 4 }, // UINT32_MAX + 1
		{ "max_crashes", 3 },  // -1
		{ "max_crashes", 4 },  // UINT32_MAX + 1
		{ "max_crashes", 0 },  // "x"
		{ "timeout_ms", 5 },   // 1.5
		{ "delay_ms", 6 },     // true
		{ "queue", 7 },        // 5
		{ "payload", 7 },      // 5
		{ "sid", 8 },          // [ ]
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		reset(f);
		pk_submit_head(f, 3);
		pk_key(f, "handler");
		pk_str(f, "exec");
		pk_key(f, cases[i].key);
		switch (cases[i].kind) {
		case 0:
			pk_str(f, "x");
			break;
		case 1:
			msgpack_pack_int64(&f->pk, (int64_t) INT32_MAX + 1);
			break;
		case 2:
			msgpack_pack_int64(&f->pk, (int64_t) INT32_MIN - 1);
			break;
		case 3:
			msgpack_pack_int64(&f->pk, -1);
			break;
		case 4:
			msgpack_pack_uint64(&f->pk, (uint64_t) UINT32_MAX + 1);
			break;
		case 5:
			msgpack_pack_double(&f->pk, 1.5);
			break;
		case 6:
			msgpack_pack_true(&f->pk);
			break;
		case 7:
			msgpack_pack_uint64(&f->pk, 5);
			break;
		default:
			msgpack_pack_array(&f->pk, 0);
			break;
		}
		assert_int_equal(dec_req(f), TB_EBADREQ);
	}
}

static void
test_req_accepts_field_extremes(void **state)
{
	fx *f = *state;

	pk_submit_head(f, 5);
	pk_key(f, "handler");
	pk_str(f, "exec");
	pk_key(f, "priority");
	msgpack_pack_int64(&f->pk, INT32_MIN);
	pk_key(f, "max_attempts");
	msgpack_pack_uint64(&f->pk, UINT32_MAX);
	pk_key(f, "delay_ms");
	msgpack_pack_int8(&f->pk, 3); // a signed form of a positive value
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.tasks[0].priority, INT32_MIN);
	assert_true(f->req.tasks[0].max_attempts == UINT32_MAX);
	assert_int_equal(f->req.tasks[0].delay_ms, 3);
}

static void
test_req_rejects_wrong_body_types(void **state)
{
	fx *f = *state;

	pk_req_head(f, TBP_VERSION, TBP_OP_STATUS, 1);
	pk_key(f, "id");
	pk_str(f, "12");
	assert_int_equal(dec_req(f), TB_EBADREQ);
	reset(f);
	pk_req_head(f, TBP_VERSION, TBP_OP_WAIT, 2);
	pk_key(f, "id");
	msgpack_pack_uint64(&f->pk, 1);
	pk_key(f, "timeout_ms");
	msgpack_pack_uint64(&f->pk, UINT64_MAX);
	assert_int_equal(dec_req(f), TB_EBADREQ);
	reset(f);
	pk_req_head(f, TBP_VERSION, TBP_OP_LIST, 1);
	pk_key(f, "state");
	msgpack_pack_int64(&f->pk, -1);
	assert_int_equal(dec_req(f), TB_EBADREQ);
	reset(f);
	pk_req_head(f, TBP_VERSION, TBP_OP_SUBMIT, 1);
	pk_key(f, "tasks");
	msgpack_pack_map(&f->pk, 0);
	assert_int_equal(dec_req(f), TB_EBADREQ);
	reset(f);
	pk_req_head(f, TBP_VERSION, TBP_OP_SUBMIT, 1);
	pk_key(f, "tasks");
	msgpack_pack_array(&f->pk, 1);
	pk_str(f, "task");
	assert_int_equal(dec_req(f), TB_EBADREQ);
}

static void
test_req_accepts_negative_wait_timeout(void **state)
{
	fx *f = *state;

	pk_req_head(f, TBP_VERSION, TBP_OP_WAIT, 2);
	pk_key(f, "id");
	msgpack_pack_uint64(&f->pk, 1);
	pk_key(f, "timeout_ms");
	msgpack_pack_int64(&f->pk, -30);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.timeout_ms, -30);
}

static void
test_req_rejects_missing_fields(void **state)
{
	fx            *f     = *state;
	const uint32_t ops[] = { TBP_OP_STATUS, TBP_OP_WAIT, TBP_OP_CANCEL,
		TBP_OP_SUBMIT };

	for (size_t i = 0; i < 4; i++) {
		reset(f);
		pk_req_head(f, TBP_VERSION, ops[i], 0);
		assert_int_equal(dec_req(f), TB_EBADREQ);
		assert_true(f->req.have_envelope);
	}
	reset(f);
	pk_req_head(f, TBP_VERSION, TBP_OP_SUBMIT, 1);
	pk_key(f, "tasks");
	msgpack_pack_array(&f->pk, 1);
	msgpack_pack_map(&f->pk, 1);
	pk_key(f, "handler"); // no sid
	pk_str(f, "noop");
	assert_int_equal(dec_req(f), TB_EBADREQ);
	reset(f);
	pk_submit_head(f, 1); // no handler
	assert_int_equal(dec_req(f), TB_EBADREQ);
}

static void
test_req_treats_nil_as_absent(void **state)
{
	fx *f = *state;

	pk_req_head(f, TBP_VERSION, TBP_OP_LIST, 2);
	pk_key(f, "queue");
	msgpack_pack_nil(&f->pk);
	pk_key(f, "state");
	msgpack_pack_nil(&f->pk);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.state, -1);
	reset(f);
	pk_req_head(f, TBP_VERSION, TBP_OP_STATUS, 1);
	pk_key(f, "id");
	msgpack_pack_nil(&f->pk); // a required field may not be nil
	assert_int_equal(dec_req(f), TB_EBADREQ);
}

static void
test_req_ignores_unknown_keys(void **state)
{
	fx *f = *state;

	pk_req_head(f, TBP_VERSION, TBP_OP_STATUS, 3);
	pk_key(f, "future");
	msgpack_pack_map(&f->pk, 1);
	pk_key(f, "a");
	msgpack_pack_array(&f->pk, 2);
	msgpack_pack_double(&f->pk, 2.5);
	pk_bin(f, "xy", 2);
	pk_key(f, "id");
	msgpack_pack_uint64(&f->pk, 33);
	pk_key(f, "queue"); // not a status field: ignored
	msgpack_pack_uint64(&f->pk, 5);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.id, 33);
	reset(f);
	pk_submit_head(f, 3);
	pk_key(f, "handler");
	pk_str(f, "noop");
	pk_key(f, "colour");
	pk_str(f, "blue");
	assert_int_equal(dec_req(f), TB_OK);
}

static void
test_req_rejects_message_over_limit(void **state)
{
	fx      *f = *state;
	uint8_t *big;

	// Valid msgpack of TBP_MAX_MSG + 1 bytes: the size alone refuses it.
	assert_non_null(big = calloc(1, TBP_MAX_MSG + 1));
	big[0] = 0xc6;
	big[1] = (uint8_t) ((TBP_MAX_MSG - 4) >> 24);
	big[2] = (uint8_t) ((TBP_MAX_MSG - 4) >> 16);
	big[3] = (uint8_t) ((TBP_MAX_MSG - 4) >> 8);
	big[4] = (uint8_t) (TBP_MAX_MSG - 4);
	assert_int_equal(dec_req_raw(f, big, TBP_MAX_MSG + 1), TB_ETOOBIG);
	tbp_rep_fini(&f->rep);
	assert_int_equal(
	    tbp_rep_decode(&f->rep, big, TBP_MAX_MSG + 1), TB_ETOOBIG);
	tbp_event_fini(&f->ev);
	assert_int_equal(
	    tbp_event_decode(&f->ev, big, TBP_MAX_MSG + 1), TB_EPROTO);
	free(big);
}

static void
test_req_rejects_too_many_objects(void **state)
{
	fx *f = *state;

	// 300,000 nils in an ignored field: small on the wire (about
	// 300 KB) but about 7 MB once unpacked.
	pk_req_head(f, TBP_VERSION, TBP_OP_PING, 1);
	pk_key(f, "junk");
	msgpack_pack_array(&f->pk, 300000);
	for (int i = 0; i < 300000; i++) {
		msgpack_pack_nil(&f->pk);
	}
	assert_int_equal(dec_req(f), TB_ETOOBIG);
}

static void
test_req_rejects_null_and_empty_buffers(void **state)
{
	fx *f = *state;

	assert_int_equal(dec_req_raw(f, NULL, 0), TB_EBADREQ);
	assert_int_equal(dec_req_raw(f, "", 0), TB_EBADREQ);
	assert_int_equal(tbp_check(NULL, 0, 4, NULL), TB_EBADREQ);
}

// Replies.

static void
pk_rep_head(
    fx *f, uint64_t version, uint64_t op, int64_t status, uint32_t nbody)
{
	msgpack_pack_array(&f->pk, 5);
	msgpack_pack_uint64(&f->pk, version);
	msgpack_pack_uint64(&f->pk, op);
	msgpack_pack_uint64(&f->pk, 7);
	msgpack_pack_int64(&f->pk, status);
	msgpack_pack_map(&f->pk, nbody);
}

static void
test_rep_rejects_bad_envelopes(void **state)
{
	fx *f = *state;

	pk_rep_head(f, TBP_VERSION + 1, TBP_OP_PING, 0, 0);
	assert_int_equal(dec_rep(f), TB_EPROTO);
	reset(f);
	pk_rep_head(f, 0, TBP_OP_PING, 0, 0);
	assert_int_equal(dec_rep(f), TB_EPROTO);
	reset(f);
	pk_rep_head(f, TBP_VERSION, TBP_OP_PING, -1, 0);
	assert_int_equal(dec_rep(f), TB_EPROTO);
	reset(f);
	pk_rep_head(f, TBP_VERSION, TBP_OP_COUNT, 0, 0);
	assert_int_equal(dec_rep(f), TB_EPROTO);
	reset(f);
	pk_req_head(f, TBP_VERSION, TBP_OP_PING, 0); // a request
	assert_int_equal(dec_rep(f), TB_EPROTO);
}

static void
test_rep_rejects_missing_task(void **state)
{
	fx *f = *state;

	pk_rep_head(f, TBP_VERSION, TBP_OP_STATUS, 0, 0);
	assert_int_equal(dec_rep(f), TB_EPROTO);
	reset(f);
	pk_rep_head(f, TBP_VERSION, TBP_OP_STATUS, 0, 1);
	pk_key(f, "task");
	msgpack_pack_map(&f->pk, 1);
	pk_key(f, "state"); // no id
	msgpack_pack_uint64(&f->pk, 1);
	assert_int_equal(dec_rep(f), TB_EPROTO);
}

static void
test_rep_rejects_result_over_limit(void **state)
{
	fx           *f = *state;
	tbp_task_info t = task_info();
	uint8_t      *big;

	assert_non_null(big = calloc(1, TBP_MAX_RESULT + 1));
	t.result.p = big;
	t.result.n = TBP_MAX_RESULT + 1;
	assert_int_equal(
	    tbp_enc_rep_task(&f->sb, TBP_OP_STATUS, 5, &t, false), TB_OK);
	free(big);
	assert_int_equal(dec_rep(f), TB_ETOOBIG);
}

static void
test_rep_rejects_list_over_limit(void **state)
{
	fx            *f = *state;
	tbp_task_info *t;

	assert_non_null(t = calloc(TBP_MAX_LIST + 1, sizeof(*t)));
	assert_int_equal(tbp_enc_rep_tasks(&f->sb, 6, t, TBP_MAX_LIST), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	reset(f);
	assert_int_equal(
	    tbp_enc_rep_tasks(&f->sb, 6, t, TBP_MAX_LIST + 1), TB_OK);
	free(t);
	assert_int_equal(dec_rep(f), TB_ETOOBIG);
}

static void
test_rep_rejects_submit_mismatch(void **state)
{
	fx *f = *state;

	pk_rep_head(f, TBP_VERSION, TBP_OP_SUBMIT, 0, 2);
	pk_key(f, "ids");
	msgpack_pack_array(&f->pk, 2);
	msgpack_pack_uint64(&f->pk, 1);
	msgpack_pack_uint64(&f->pk, 2);
	pk_key(f, "dup");
	msgpack_pack_array(&f->pk, 1);
	msgpack_pack_false(&f->pk);
	assert_int_equal(dec_rep(f), TB_EPROTO);
	reset(f);
	pk_rep_head(f, TBP_VERSION, TBP_OP_SUBMIT, 0, 0); // no ids
	assert_int_equal(dec_rep(f), TB_EPROTO);
}

static void
test_rep_rejects_too_many_ids(void **state)
{
	fx       *f = *state;
	uint64_t *ids;

	assert_non_null(ids = calloc(TBP_MAX_TASKS + 1, sizeof(*ids)));
	assert_int_equal(
	    tbp_enc_rep_submit(&f->sb, 4, ids, NULL, NULL, TBP_MAX_TASKS + 1),
	    TB_OK);
	free(ids);
	assert_int_equal(dec_rep(f), TB_ETOOBIG);
}

// Events.

static void
test_event_rejects_missing_nul(void **state)
{
	fx *f = *state;

	pk_raw(f, "tb.done.default.noop", 20);
	assert_int_equal(dec_ev(f), TB_EPROTO);
}

static void
test_event_rejects_long_topic(void **state)
{
	fx  *f = *state;
	char topic[3 * TBP_MAX_NAME + 18];

	memset(topic, 't', sizeof(topic));
	pk_raw(f, topic, sizeof(topic));
	pk_raw(f, "", 1);
	msgpack_pack_map(&f->pk, 1);
	pk_key(f, "event");
	pk_str(f, "done");
	assert_int_equal(dec_ev(f), TB_EPROTO);
}

static void
test_event_accepts_minimal_map(void **state)
{
	fx *f = *state;

	pk_raw(f, "tb.shutdown..", 14);
	msgpack_pack_map(&f->pk, 1);
	pk_key(f, "event");
	pk_str(f, "shutdown");
	assert_int_equal(dec_ev(f), TB_OK);
	assert_true(tbp_bytes_eq(f->ev.topic, "tb.shutdown.."));
	assert_true(tbp_bytes_eq(f->ev.event, "shutdown"));
}

static void
test_event_rejects_body_not_map(void **state)
{
	fx *f = *state;

	pk_raw(f, "tb.done.a.b", 12);
	msgpack_pack_array(&f->pk, 0);
	assert_int_equal(dec_ev(f), TB_EPROTO);
	reset(f);
	pk_raw(f, "tb.done.a.b", 12); // nothing after the NUL
	assert_int_equal(dec_ev(f), TB_EPROTO);
}

static void
test_event_rejects_wrong_field_types(void **state)
{
	fx *f = *state;

	pk_raw(f, "tb.done.a.b", 12);
	msgpack_pack_map(&f->pk, 2);
	pk_key(f, "event");
	pk_str(f, "done");
	pk_key(f, "id");
	pk_str(f, "42");
	assert_int_equal(dec_ev(f), TB_EPROTO);
}

// Golden bad inputs: every tests/data/proto_*.bin must be refused by each
// decoder without a crash (the ASan build checks for leaks and overreads).
static void
test_golden_bad_inputs_are_refused(void **state)
{
	fx            *f = *state;
	const char    *dir;
	DIR           *d;
	struct dirent *de;
	int            nfiles = 0;

	assert_non_null(dir = getenv("TB_TEST_DATA"));
	assert_non_null(d = opendir(dir));
	while ((de = readdir(d)) != NULL) {
		char    path[4096];
		FILE   *fp;
		uint8_t buf[65536];
		size_t  n;
		size_t  len = strlen(de->d_name);

		if (strncmp(de->d_name, "proto_", 6) != 0 || len < 4 ||
		    strcmp(de->d_name + len - 4, ".bin") != 0) {
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if ((fp = fopen(path, "rb")) == NULL) {
			closedir(d);
			fail_msg("cannot open %s", path);
		}
		n = fread(buf, 1, sizeof(buf), fp);
		fclose(fp);
		if (dec_req_raw(f, buf, n) == TB_OK) {
			closedir(d);
			fail_msg("%s decoded as a request", de->d_name);
		}
		tbp_rep_fini(&f->rep);
		if (tbp_rep_decode(&f->rep, buf, n) == TB_OK) {
			closedir(d);
			fail_msg("%s decoded as a reply", de->d_name);
		}
		tbp_event_fini(&f->ev);
		if (tbp_event_decode(&f->ev, buf, n) == TB_OK) {
			closedir(d);
			fail_msg("%s decoded as an event", de->d_name);
		}
		nfiles++;
	}
	closedir(d);
	assert_true(nfiles >= 5);
}

// The task lifecycle: new fields of existing messages.

static void
test_submit_round_trips_lifecycle_fields(void **state)
{
	fx          *f = *state;
	tbp_task_in  t[2];
	tbp_task_in *d;

	t[0]         = task_in("exec");
	t[0].run_at  = 1700000000123456;
	t[0].key     = tbp_str("invoice-2024-17");
	t[0].forever = true;
	t[1]         = task_in("noop");
	t[1].run_at  = -5; // before the epoch still round-trips
	assert_int_equal(tbp_enc_submit(&f->sb, 3, t, 2), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.ntasks, 2);
	d = &f->req.tasks[0];
	assert_true(d->run_at == 1700000000123456);
	assert_true(tbp_bytes_eq(d->key, "invoice-2024-17"));
	assert_true(d->forever);
	d = &f->req.tasks[1];
	assert_true(d->run_at == -5);
	assert_int_equal(d->key.n, 0);
	assert_false(d->forever);
}

// max_crashes is sent only when set, and read back as sent; absent (an
// older client) it is 0, the queue's default.
static void
test_submit_round_trips_max_crashes(void **state)
{
	fx         *f = *state;
	tbp_task_in t[2];
	size_t      with;

	t[0]             = task_in("exec");
	t[0].max_crashes = 7;
	t[1]             = task_in("exec");
	assert_int_equal(tbp_enc_submit(&f->sb, 3, t, 1), TB_OK);
	with = f->sb.size;
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.tasks[0].max_crashes, 7);
	reset(f);
	assert_int_equal(tbp_enc_submit(&f->sb, 3, &t[1], 1), TB_OK);
	assert_true(f->sb.size + strlen("max_crashes") + 2 == with);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.tasks[0].max_crashes, 0);
}

// A reply or event of a broker that knows nothing of crashes (no such
// keys) reads as 0 crashes; a task reply always carries both keys.
static void
test_crash_figures_absent_read_zero(void **state)
{
	fx           *f = *state;
	tbp_task_info t = task_info();

	t.crashes     = 0;
	t.max_crashes = 0;
	assert_int_equal(
	    tbp_enc_rep_task(&f->sb, TBP_OP_STATUS, 5, &t, false), TB_OK);
	assert_non_null(memmem(f->sb.data, f->sb.size,
	    "\xa7"
	    "crashes",
	    8));
	assert_non_null(memmem(f->sb.data, f->sb.size,
	    "\xab"
	    "max_crashes",
	    12));
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.task.crashes, 0);
	assert_int_equal(f->rep.task.max_crashes, 0);

	reset(f);
	msgpack_pack_array(&f->pk, 5);
	msgpack_pack_uint32(&f->pk, TBP_VERSION);
	msgpack_pack_uint32(&f->pk, TBP_OP_STATUS);
	msgpack_pack_uint64(&f->pk, 5);
	msgpack_pack_int(&f->pk, 0);
	msgpack_pack_map(&f->pk, 1);
	pk_key(f, "task");
	msgpack_pack_map(&f->pk, 3);
	pk_key(f, "id");
	msgpack_pack_uint64(&f->pk, 8);
	pk_key(f, "state");
	msgpack_pack_uint32(&f->pk, TB_STATE_DONE);
	pk_key(f, "attempts");
	msgpack_pack_uint32(&f->pk, 1);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_true(f->rep.have_task);
	assert_int_equal(f->rep.task.attempts, 1);
	assert_int_equal(f->rep.task.crashes, 0);
	assert_int_equal(f->rep.task.max_crashes, 0);
}

static void
test_req_rejects_bad_key(void **state)
{
	fx  *f = *state;
	char key[TBP_MAX_KEY + 2];

	memset(key, 'k', sizeof(key));
	key[TBP_MAX_KEY] = '\0';
	pk_submit_head(f, 3);
	pk_key(f, "handler");
	pk_str(f, "noop");
	pk_key(f, "key");
	pk_str(f, key); // exactly TBP_MAX_KEY
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.tasks[0].key.n, TBP_MAX_KEY);

	reset(f);
	key[TBP_MAX_KEY]     = 'k';
	key[TBP_MAX_KEY + 1] = '\0';
	pk_submit_head(f, 3);
	pk_key(f, "handler");
	pk_str(f, "noop");
	pk_key(f, "key");
	pk_str(f, key);
	assert_int_equal(dec_req(f), TB_ETOOBIG);

	reset(f);
	pk_submit_head(f, 3);
	pk_key(f, "handler");
	pk_str(f, "noop");
	pk_key(f, "key");
	pk_str(f, "");
	assert_int_equal(dec_req(f), TB_EBADREQ);

	reset(f);
	pk_submit_head(f, 3);
	pk_key(f, "handler");
	pk_str(f, "noop");
	pk_key(f, "key");
	pk_bin(f, "a\0b", 3);
	assert_int_equal(dec_req(f), TB_EBADREQ);
}

static void
test_req_rejects_wrong_lifecycle_task_types(void **state)
{
	fx *f = *state;

	pk_submit_head(f, 3);
	pk_key(f, "handler");
	pk_str(f, "noop");
	pk_key(f, "forever");
	msgpack_pack_uint64(&f->pk, 1);
	assert_int_equal(dec_req(f), TB_EBADREQ);

	reset(f);
	pk_submit_head(f, 3);
	pk_key(f, "handler");
	pk_str(f, "noop");
	pk_key(f, "run_at");
	pk_str(f, "tomorrow");
	assert_int_equal(dec_req(f), TB_EBADREQ);
}

static void
test_list_round_trips_lifecycle_filters(void **state)
{
	fx *f = *state;

	assert_int_equal(tbp_enc_list(&f->sb, 8, "mail", TB_STATE_DEAD, 50,
	                     1234, "exec", 60000, 3600000),
	    TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.op, TBP_OP_LIST);
	assert_true(tbp_bytes_eq(f->req.queue, "mail"));
	assert_int_equal(f->req.state, TB_STATE_DEAD);
	assert_int_equal(f->req.limit, 50);
	assert_int_equal(f->req.after_id, 1234);
	assert_true(tbp_bytes_eq(f->req.handler, "exec"));
	assert_int_equal(f->req.min_age_ms, 60000);
	assert_int_equal(f->req.max_age_ms, 3600000);

	reset(f);
	assert_int_equal(
	    tbp_enc_list(&f->sb, 8, NULL, -1, 0, 0, NULL, 0, 0), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.handler.n, 0);
	assert_int_equal(f->req.min_age_ms, 0);
	assert_int_equal(f->req.max_age_ms, 0);
	assert_int_equal(f->req.state, -1);
}

static void
test_rep_task_round_trips_lifecycle_fields(void **state)
{
	fx           *f = *state;
	tbp_task_info t = task_info();

	t.run_at     = 1700000009000000;
	t.timeout_ms = 30000;
	t.forever    = true;
	t.key        = tbp_str("nightly");
	assert_int_equal(
	    tbp_enc_rep_task(&f->sb, TBP_OP_STATUS, 5, &t, false), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_task_info_equal(&f->rep.task, &t);

	reset(f);
	t.key     = tbp_str(NULL);
	t.forever = false;
	assert_int_equal(tbp_enc_rep_tasks(&f->sb, 6, &t, 1), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.ntasks, 1);
	assert_task_info_equal(&f->rep.tasks[0], &t);
}

static void
test_rep_submit_round_trips_existing(void **state)
{
	fx            *f           = *state;
	const uint64_t ids[3]      = { 10, 11, 5 };
	const bool     dup[3]      = { false, true, false };
	const bool     existing[3] = { false, false, true };

	assert_int_equal(
	    tbp_enc_rep_submit(&f->sb, 4, ids, dup, existing, 3), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.nids, 3);
	for (int i = 0; i < 3; i++) {
		assert_true(f->rep.ids[i] == ids[i]);
		assert_int_equal(f->rep.dup[i], dup[i]);
		assert_int_equal(f->rep.existing[i], existing[i]);
	}
	reset(f);
	assert_int_equal(
	    tbp_enc_rep_submit(&f->sb, 4, ids, NULL, NULL, 3), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	for (int i = 0; i < 3; i++) {
		assert_false(f->rep.dup[i]);
		assert_false(f->rep.existing[i]);
	}
}

static void
test_rep_submit_without_existing_reads_false(void **state)
{
	fx *f = *state;

	// A submit reply as a broker from before idempotency keys sent it:
	// {"ids", "dup"} and no "existing".
	pk_rep_head(f, TBP_VERSION, TBP_OP_SUBMIT, 0, 2);
	pk_key(f, "ids");
	msgpack_pack_array(&f->pk, 2);
	msgpack_pack_uint64(&f->pk, 1);
	msgpack_pack_uint64(&f->pk, 2);
	pk_key(f, "dup");
	msgpack_pack_array(&f->pk, 2);
	msgpack_pack_true(&f->pk);
	msgpack_pack_false(&f->pk);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.nids, 2);
	assert_non_null(f->rep.existing);
	assert_false(f->rep.existing[0]);
	assert_false(f->rep.existing[1]);
	assert_true(f->rep.dup[0]);
}

static void
test_rep_submit_rejects_existing_mismatch(void **state)
{
	fx *f = *state;

	pk_rep_head(f, TBP_VERSION, TBP_OP_SUBMIT, 0, 2);
	pk_key(f, "ids");
	msgpack_pack_array(&f->pk, 2);
	msgpack_pack_uint64(&f->pk, 1);
	msgpack_pack_uint64(&f->pk, 2);
	pk_key(f, "existing");
	msgpack_pack_array(&f->pk, 1);
	msgpack_pack_true(&f->pk);
	assert_int_equal(dec_rep(f), TB_EPROTO);
}

// The lifecycle ops.

static void
test_retry_by_id_round_trips(void **state)
{
	fx *f = *state;

	assert_int_equal(
	    tbp_enc_retry(&f->sb, 9, true, 77, "ignored", 3), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.op, TBP_OP_RETRY);
	assert_true(f->req.have_id);
	assert_int_equal(f->req.id, 77);
	assert_int_equal(f->req.queue.n, 0);
	assert_int_equal(f->req.state, -1);
}

static void
test_retry_by_filter_round_trips(void **state)
{
	fx *f = *state;

	assert_int_equal(
	    tbp_enc_retry(&f->sb, 9, false, 0, "mail", TB_STATE_CANCELLED),
	    TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_false(f->req.have_id);
	assert_true(tbp_bytes_eq(f->req.queue, "mail"));
	assert_int_equal(f->req.state, TB_STATE_CANCELLED);

	reset(f);
	assert_int_equal(tbp_enc_retry(&f->sb, 9, false, 0, NULL, -1), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_false(f->req.have_id);
	assert_int_equal(f->req.queue.n, 0);
	assert_int_equal(f->req.state, -1);
}

static void
test_retry_rejects_id_with_filter(void **state)
{
	fx *f = *state;

	pk_req_head(f, TBP_VERSION, TBP_OP_RETRY, 2);
	pk_key(f, "id");
	msgpack_pack_uint64(&f->pk, 1);
	pk_key(f, "queue");
	pk_str(f, "mail");
	assert_int_equal(dec_req(f), TB_EBADREQ);
}

static void
test_pause_and_resume_round_trip(void **state)
{
	fx            *f     = *state;
	const uint32_t ops[] = { TBP_OP_PAUSE, TBP_OP_RESUME };

	for (size_t i = 0; i < 2; i++) {
		reset(f);
		assert_int_equal(
		    tbp_enc_queue_op(&f->sb, ops[i], 10, "mail"), TB_OK);
		assert_int_equal(dec_req(f), TB_OK);
		assert_int_equal(f->req.op, ops[i]);
		assert_true(tbp_bytes_eq(f->req.queue, "mail"));
	}
}

static void
test_pause_rejects_missing_or_empty_queue(void **state)
{
	fx *f = *state;

	pk_req_head(f, TBP_VERSION, TBP_OP_PAUSE, 0);
	assert_int_equal(dec_req(f), TB_EBADREQ);
	reset(f);
	pk_req_head(f, TBP_VERSION, TBP_OP_RESUME, 1);
	pk_key(f, "queue");
	msgpack_pack_nil(&f->pk); // nil is absent
	assert_int_equal(dec_req(f), TB_EBADREQ);
	reset(f);
	assert_int_equal(
	    tbp_enc_queue_op(&f->sb, TBP_OP_PAUSE, 10, NULL), TB_OK);
	assert_int_equal(dec_req(f), TB_EBADREQ);
}

static void
test_drain_round_trips(void **state)
{
	fx *f = *state;

	assert_int_equal(tbp_enc_drain(&f->sb, 11, "mail", 5000), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.op, TBP_OP_DRAIN);
	assert_true(tbp_bytes_eq(f->req.queue, "mail"));
	assert_int_equal(f->req.timeout_ms, 5000);

	reset(f);
	assert_int_equal(tbp_enc_drain(&f->sb, 11, NULL, -7), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.queue.n, 0);
	assert_int_equal(f->req.timeout_ms, -1);
}

static void
test_purge_round_trips(void **state)
{
	fx *f = *state;

	assert_int_equal(
	    tbp_enc_purge(&f->sb, 12, "mail", TB_STATE_DONE, 86400000), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.op, TBP_OP_PURGE);
	assert_true(tbp_bytes_eq(f->req.queue, "mail"));
	assert_int_equal(f->req.state, TB_STATE_DONE);
	assert_int_equal(f->req.min_age_ms, 86400000);

	reset(f);
	assert_int_equal(
	    tbp_enc_purge(&f->sb, 12, NULL, TB_STATE_PENDING, 0), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.queue.n, 0);
	assert_int_equal(f->req.state, TB_STATE_PENDING);
	assert_int_equal(f->req.min_age_ms, 0);
}

static void
test_purge_rejects_missing_state(void **state)
{
	fx *f = *state;

	pk_req_head(f, TBP_VERSION, TBP_OP_PURGE, 1);
	pk_key(f, "queue");
	pk_str(f, "mail");
	assert_int_equal(dec_req(f), TB_EBADREQ);
	reset(f);
	// The encoder writes a negative state as is; the decoder refuses it.
	assert_int_equal(tbp_enc_purge(&f->sb, 12, NULL, -1, 0), TB_OK);
	assert_int_equal(dec_req(f), TB_EBADREQ);
}

static tbp_sched
sched(const char *name)
{
	tbp_sched s;

	memset(&s, 0, sizeof(s));
	s.name    = tbp_str(name);
	s.handler = tbp_str("report");
	return (s);
}

static void
assert_bytes_equal(tbp_bytes a, tbp_bytes b)
{
	assert_int_equal(a.n, b.n);
	if (a.n > 0) {
		assert_memory_equal(a.p, b.p, a.n);
	}
}

static void
assert_sched_equal(const tbp_sched *a, const tbp_sched *b, bool reply)
{
	assert_bytes_equal(a->name, b->name);
	assert_bytes_equal(a->handler, b->handler);
	assert_bytes_equal(a->queue, b->queue);
	assert_bytes_equal(a->payload, b->payload);
	assert_bytes_equal(a->cron, b->cron);
	assert_int_equal(a->priority, b->priority);
	assert_int_equal(a->max_attempts, b->max_attempts);
	assert_int_equal(a->timeout_ms, b->timeout_ms);
	assert_true(a->every_ms == b->every_ms);
	assert_int_equal(a->catch_up, b->catch_up);
	assert_int_equal(a->paused, b->paused);
	if (reply) {
		assert_true(a->next_at == b->next_at);
		assert_true(a->last_at == b->last_at);
		assert_true(a->fired == b->fired);
		assert_true(a->last_task == b->last_task);
	}
}

static void
test_sched_add_round_trips_every(void **state)
{
	fx                  *f         = *state;
	static const uint8_t payload[] = { 0x91, 0x07 }; // [7]
	tbp_sched            s         = sched("hourly");

	s.queue        = tbp_str("reports");
	s.payload.p    = payload;
	s.payload.n    = sizeof(payload);
	s.priority     = -2;
	s.max_attempts = 4;
	s.timeout_ms   = 60000;
	s.every_ms     = 3600000;
	s.catch_up     = true;
	s.paused       = true;
	assert_int_equal(tbp_enc_sched_add(&f->sb, 13, &s), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.op, TBP_OP_SCHED_ADD);
	assert_sched_equal(&f->req.sched, &s, false);
}

static void
test_sched_add_round_trips_cron(void **state)
{
	fx       *f = *state;
	tbp_sched s = sched("nightly");

	s.cron = tbp_str("30 2 * * *");
	assert_int_equal(tbp_enc_sched_add(&f->sb, 13, &s), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_sched_equal(&f->req.sched, &s, false);
	assert_true(tbp_bytes_eq(f->req.sched.cron, "30 2 * * *"));
	assert_true(f->req.sched.every_ms == 0);
}

static void
test_sched_add_ignores_reply_fields(void **state)
{
	fx *f = *state;

	// The bookkeeping belongs to the broker: a client cannot set it.
	pk_req_head(f, TBP_VERSION, TBP_OP_SCHED_ADD, 1);
	pk_key(f, "schedule");
	msgpack_pack_map(&f->pk, 4);
	pk_key(f, "name");
	pk_str(f, "n");
	pk_key(f, "handler");
	pk_str(f, "h");
	pk_key(f, "cron");
	pk_str(f, "@daily");
	pk_key(f, "next_at");
	msgpack_pack_int64(&f->pk, 99);
	assert_int_equal(dec_req(f), TB_OK);
	assert_true(f->req.sched.next_at == 0);
}

static void
test_sched_add_rejects_both_or_neither(void **state)
{
	fx       *f = *state;
	tbp_sched s = sched("x");

	assert_int_equal(tbp_enc_sched_add(&f->sb, 13, &s), TB_OK);
	assert_int_equal(dec_req(f), TB_EBADREQ); // neither
	reset(f);
	s.every_ms = 1000;
	s.cron     = tbp_str("* * * * *");
	assert_int_equal(tbp_enc_sched_add(&f->sb, 13, &s), TB_OK);
	assert_int_equal(dec_req(f), TB_EBADREQ); // both
	reset(f);
	// An every_ms of 0 is no every_ms at all.
	pk_req_head(f, TBP_VERSION, TBP_OP_SCHED_ADD, 1);
	pk_key(f, "schedule");
	msgpack_pack_map(&f->pk, 3);
	pk_key(f, "name");
	pk_str(f, "n");
	pk_key(f, "handler");
	pk_str(f, "h");
	pk_key(f, "every_ms");
	msgpack_pack_uint64(&f->pk, 0);
	assert_int_equal(dec_req(f), TB_EBADREQ);
}

static void
test_sched_add_rejects_bad_fields(void **state)
{
	fx       *f = *state;
	tbp_sched s = sched("");
	char      cron[TBP_MAX_CRON + 2];

	s.every_ms = 1000;
	assert_int_equal(tbp_enc_sched_add(&f->sb, 13, &s), TB_OK);
	assert_int_equal(dec_req(f), TB_EBADREQ); // empty name

	reset(f);
	s          = sched("x");
	s.handler  = tbp_str(NULL);
	s.every_ms = 1000;
	assert_int_equal(tbp_enc_sched_add(&f->sb, 13, &s), TB_OK);
	assert_int_equal(dec_req(f), TB_EBADREQ); // empty handler

	reset(f);
	memset(cron, '*', sizeof(cron));
	cron[TBP_MAX_CRON + 1] = '\0';
	s                      = sched("x");
	s.cron                 = tbp_str(cron);
	assert_int_equal(tbp_enc_sched_add(&f->sb, 13, &s), TB_OK);
	assert_int_equal(dec_req(f), TB_ETOOBIG); // cron too long

	reset(f);
	s           = sched("x");
	s.every_ms  = 1000;
	s.payload.p = (const uint8_t *) "\x91\x01\x02";
	s.payload.n = 3; // two objects
	assert_int_equal(tbp_enc_sched_add(&f->sb, 13, &s), TB_OK);
	assert_int_equal(dec_req(f), TB_EBADREQ);

	reset(f);
	pk_req_head(f, TBP_VERSION, TBP_OP_SCHED_ADD, 0); // no schedule
	assert_int_equal(dec_req(f), TB_EBADREQ);

	reset(f);
	pk_req_head(f, TBP_VERSION, TBP_OP_SCHED_ADD, 1);
	pk_key(f, "schedule");
	pk_str(f, "hourly"); // not a map
	assert_int_equal(dec_req(f), TB_EBADREQ);
}

static void
test_sched_name_round_trips(void **state)
{
	fx *f = *state;

	assert_int_equal(
	    tbp_enc_sched_name(&f->sb, TBP_OP_SCHED_RM, 14, "nightly", true),
	    TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.op, TBP_OP_SCHED_RM);
	assert_true(tbp_bytes_eq(f->req.name, "nightly"));
	assert_false(f->req.paused); // rm carries no flag

	reset(f);
	assert_int_equal(tbp_enc_sched_name(
	                     &f->sb, TBP_OP_SCHED_PAUSE, 14, "nightly", true),
	    TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.op, TBP_OP_SCHED_PAUSE);
	assert_true(tbp_bytes_eq(f->req.name, "nightly"));
	assert_true(f->req.paused);

	reset(f);
	assert_int_equal(tbp_enc_sched_name(
	                     &f->sb, TBP_OP_SCHED_PAUSE, 14, "nightly", false),
	    TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_false(f->req.paused);
}

static void
test_sched_name_rejects_missing_name(void **state)
{
	fx *f = *state;

	pk_req_head(f, TBP_VERSION, TBP_OP_SCHED_RM, 0);
	assert_int_equal(dec_req(f), TB_EBADREQ);
	reset(f);
	assert_int_equal(
	    tbp_enc_sched_name(&f->sb, TBP_OP_SCHED_PAUSE, 14, "", true),
	    TB_OK);
	assert_int_equal(dec_req(f), TB_EBADREQ);
}

static void
test_new_empty_requests_round_trip(void **state)
{
	fx            *f     = *state;
	const uint32_t ops[] = { TBP_OP_SCHED_LIST, TBP_OP_QUEUES };

	for (size_t i = 0; i < 2; i++) {
		reset(f);
		assert_int_equal(tbp_enc_req_empty(&f->sb, ops[i], 15), TB_OK);
		assert_int_equal(dec_req(f), TB_OK);
		assert_int_equal(f->req.op, ops[i]);
	}
	assert_string_equal(tbp_op_name(TBP_OP_SCHED_LIST), "schedule_list");
	assert_string_equal(tbp_op_name(TBP_OP_QUEUES), "queues");
}

static void
test_rep_count_round_trips(void **state)
{
	fx            *f     = *state;
	const uint32_t ops[] = { TBP_OP_RETRY, TBP_OP_PURGE };

	for (size_t i = 0; i < 2; i++) {
		reset(f);
		assert_int_equal(
		    tbp_enc_rep_count(&f->sb, ops[i], 16, UINT64_MAX - i),
		    TB_OK);
		assert_int_equal(dec_rep(f), TB_OK);
		assert_int_equal(f->rep.op, ops[i]);
		assert_true(f->rep.count == UINT64_MAX - i);
	}
}

static void
test_rep_drain_round_trips(void **state)
{
	fx *f = *state;

	assert_int_equal(tbp_enc_rep_drain(&f->sb, 17, true), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.op, TBP_OP_DRAIN);
	assert_true(f->rep.timed_out);
	reset(f);
	assert_int_equal(tbp_enc_rep_drain(&f->sb, 17, false), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_false(f->rep.timed_out);
}

static void
test_rep_empty_answers_new_ops(void **state)
{
	fx            *f     = *state;
	const uint32_t ops[] = { TBP_OP_PAUSE, TBP_OP_RESUME, TBP_OP_SCHED_ADD,
		TBP_OP_SCHED_RM, TBP_OP_SCHED_PAUSE };

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		reset(f);
		assert_int_equal(tbp_enc_rep_empty(&f->sb, ops[i], 18), TB_OK);
		assert_int_equal(dec_rep(f), TB_OK);
		assert_int_equal(f->rep.op, ops[i]);
		assert_int_equal(f->rep.status, TB_OK);
	}
	reset(f);
	assert_int_equal(
	    tbp_enc_rep_error(&f->sb, TBP_OP_SUBMIT, 18, TB_EQUEUEFULL, NULL),
	    TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.status, TB_EQUEUEFULL);
	assert_true(tbp_bytes_eq(f->rep.errname, "queue_full"));
}

static void
test_rep_scheds_round_trips(void **state)
{
	fx                  *f         = *state;
	static const uint8_t payload[] = { 0xa1, 'x' }; // "x"
	tbp_sched            s[2];

	s[0]           = sched("hourly");
	s[0].queue     = tbp_str("default");
	s[0].every_ms  = 3600000;
	s[0].payload.p = payload;
	s[0].payload.n = sizeof(payload);
	s[0].priority  = 3;
	s[0].next_at   = 1700000003600000;
	s[0].last_at   = 1700000000000000;
	s[0].fired     = 12;
	s[0].last_task = 991;
	s[0].paused    = true;
	s[1]           = sched("nightly");
	s[1].cron      = tbp_str("0 3 * * *");
	s[1].catch_up  = true;
	s[1].next_at   = 1700000100000000;
	assert_int_equal(tbp_enc_rep_scheds(&f->sb, 19, s, 2), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.op, TBP_OP_SCHED_LIST);
	assert_int_equal(f->rep.nscheds, 2);
	assert_sched_equal(&f->rep.scheds[0], &s[0], true);
	assert_sched_equal(&f->rep.scheds[1], &s[1], true);

	reset(f);
	assert_int_equal(tbp_enc_rep_scheds(&f->sb, 19, NULL, 0), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.nscheds, 0);
	assert_null(f->rep.scheds);
}

static void
test_rep_rejects_too_many_schedules(void **state)
{
	fx        *f = *state;
	tbp_sched *s;

	assert_non_null(s = calloc(TBP_MAX_SCHEDULES + 1, sizeof(*s)));
	for (uint32_t i = 0; i <= TBP_MAX_SCHEDULES; i++) {
		s[i] = sched("s");
	}
	assert_int_equal(
	    tbp_enc_rep_scheds(&f->sb, 19, s, TBP_MAX_SCHEDULES), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.nscheds, TBP_MAX_SCHEDULES);
	reset(f);
	assert_int_equal(
	    tbp_enc_rep_scheds(&f->sb, 19, s, TBP_MAX_SCHEDULES + 1), TB_OK);
	free(s);
	assert_int_equal(dec_rep(f), TB_ETOOBIG);
}

static void
test_rep_rejects_bad_schedules(void **state)
{
	fx *f = *state;

	pk_rep_head(f, TBP_VERSION, TBP_OP_SCHED_LIST, 0, 0); // no array
	assert_int_equal(dec_rep(f), TB_EPROTO);
	reset(f);
	pk_rep_head(f, TBP_VERSION, TBP_OP_SCHED_LIST, 0, 1);
	pk_key(f, "schedules");
	msgpack_pack_array(&f->pk, 1);
	msgpack_pack_map(&f->pk, 1);
	pk_key(f, "handler"); // no name
	pk_str(f, "h");
	assert_int_equal(dec_rep(f), TB_EPROTO);
}

static tbp_qstat
qstat(const char *name, uint64_t base)
{
	tbp_qstat q;

	memset(&q, 0, sizeof(q));
	q.name              = tbp_str(name);
	q.pending           = base + 1;
	q.running           = base + 2;
	q.failed            = base + 3;
	q.dead              = base + 4;
	q.done              = base + 5;
	q.cancelled         = base + 6;
	q.paused            = (base % 2) == 1;
	q.concurrency       = (uint32_t) base + 7;
	q.max_pending       = base + 8;
	q.done_last_min     = base + 9;
	q.oldest_pending_ms = base + 10;
	q.forever           = (uint32_t) base + 11;
	q.crashloop         = (uint32_t) base + 12;
	return (q);
}

static void
test_rep_queues_round_trips(void **state)
{
	fx       *f = *state;
	tbp_qstat q[2];

	q[0]             = qstat("default", 0);
	q[1]             = qstat("mail", 101);
	q[1].max_pending = UINT64_MAX;
	assert_int_equal(tbp_enc_rep_queues(&f->sb, 20, q, 2), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.op, TBP_OP_QUEUES);
	assert_int_equal(f->rep.nqueues, 2);
	for (int i = 0; i < 2; i++) {
		const tbp_qstat *a = &f->rep.queues[i];
		const tbp_qstat *b = &q[i];

		assert_bytes_equal(a->name, b->name);
		assert_true(a->pending == b->pending);
		assert_true(a->running == b->running);
		assert_true(a->failed == b->failed);
		assert_true(a->dead == b->dead);
		assert_true(a->done == b->done);
		assert_true(a->cancelled == b->cancelled);
		assert_int_equal(a->paused, b->paused);
		assert_int_equal(a->concurrency, b->concurrency);
		assert_true(a->max_pending == b->max_pending);
		assert_true(a->done_last_min == b->done_last_min);
		assert_true(a->oldest_pending_ms == b->oldest_pending_ms);
		assert_int_equal(a->forever, b->forever);
		assert_int_equal(a->crashloop, b->crashloop);
	}
}

static void
test_rep_rejects_too_many_queues(void **state)
{
	fx        *f = *state;
	tbp_qstat *q;

	assert_non_null(q = calloc(TBP_MAX_QUEUES + 1, sizeof(*q)));
	assert_int_equal(
	    tbp_enc_rep_queues(&f->sb, 20, q, TBP_MAX_QUEUES), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.nqueues, TBP_MAX_QUEUES);
	reset(f);
	assert_int_equal(
	    tbp_enc_rep_queues(&f->sb, 20, q, TBP_MAX_QUEUES + 1), TB_OK);
	free(q);
	assert_int_equal(dec_rep(f), TB_ETOOBIG);
}

static void
test_rep_stats_reads_old_broker(void **state)
{
	fx *f = *state;

	// A broker from before the lifecycle sends 11 counters.
	pk_rep_head(f, TBP_VERSION, TBP_OP_STATS, 0, 1);
	pk_key(f, "pending");
	msgpack_pack_uint64(&f->pk, 4);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.stats.pending, 4);
	assert_int_equal(f->rep.stats.schedules, 0);
	assert_int_equal(f->rep.stats.forever, 0);
	assert_int_equal(f->rep.stats.crashloop, 0);
}

// ---- every number a request carries is range-checked --------------------

// range_case is one request with one number field set to value: an
// extreme one (refused as bad_request) or one at its bound (accepted).
typedef struct range_case {
	uint32_t    op;
	const char *field;
	bool        negative; // value is -(magnitude)
	uint64_t    magnitude;
	int         want;
} range_case;

// pk_range_req packs c's request: the op's required fields, then c's.
static void
pk_range_req(fx *f, const range_case *c)
{
	switch (c->op) {
	case TBP_OP_SUBMIT:
		pk_submit_head(f, 3);
		pk_key(f, "handler");
		pk_str(f, "noop");
		break;
	case TBP_OP_WAIT:
		pk_req_head(f, TBP_VERSION, c->op, 2);
		pk_key(f, "id");
		msgpack_pack_uint64(&f->pk, 1);
		break;
	case TBP_OP_PURGE:
		pk_req_head(f, TBP_VERSION, c->op, 2);
		pk_key(f, "state");
		msgpack_pack_uint64(&f->pk, TB_STATE_DONE);
		break;
	case TBP_OP_SCHED_ADD:
		pk_req_head(f, TBP_VERSION, c->op, 1);
		pk_key(f, "schedule");
		msgpack_pack_map(&f->pk, 3);
		pk_key(f, "name");
		pk_str(f, "s");
		pk_key(f, "handler");
		pk_str(f, "noop");
		break;
	default: // list, drain: nothing required
		pk_req_head(f, TBP_VERSION, c->op, 1);
		break;
	}
	pk_key(f, c->field);
	if (c->negative) {
		msgpack_pack_int64(&f->pk, -(int64_t) c->magnitude);
	} else {
		msgpack_pack_uint64(&f->pk, c->magnitude);
	}
}

static void
test_req_numbers_out_of_range_are_bad_requests(void **state)
{
	fx *f = *state;
	// The ages of this list would overflow now - age * 1000 in the
	// broker (the case a fuzzer found); every other field the same way.
	const uint64_t   dmax    = (uint64_t) TBP_MAX_DURATION_MS;
	const uint64_t   tmax    = (uint64_t) TBP_MAX_TIME_US;
	const uint64_t   imin    = (uint64_t) 1 << 31;
	const range_case cases[] = {
		{ TBP_OP_LIST, "min_age_ms", false, (uint64_t) 1 << 62,
		    TB_EBADREQ },
		{ TBP_OP_LIST, "min_age_ms", false, dmax + 1, TB_EBADREQ },
		{ TBP_OP_LIST, "min_age_ms", false, dmax, TB_OK },
		{ TBP_OP_LIST, "max_age_ms", false, UINT64_MAX, TB_EBADREQ },
		{ TBP_OP_LIST, "max_age_ms", false, dmax, TB_OK },
		{ TBP_OP_PURGE, "min_age_ms", false, dmax + 1, TB_EBADREQ },
		{ TBP_OP_PURGE, "min_age_ms", false, dmax, TB_OK },
		{ TBP_OP_WAIT, "timeout_ms", false, dmax + 1, TB_EBADREQ },
		{ TBP_OP_WAIT, "timeout_ms", false, dmax, TB_OK },
		{ TBP_OP_WAIT, "timeout_ms", true, imin + 1, TB_EBADREQ },
		{ TBP_OP_WAIT, "timeout_ms", true, imin, TB_OK },
		{ TBP_OP_WAIT, "timeout_ms", true, 1, TB_OK },
		{ TBP_OP_DRAIN, "timeout_ms", false, INT64_MAX, TB_EBADREQ },
		{ TBP_OP_DRAIN, "timeout_ms", true, (uint64_t) INT64_MAX,
		    TB_EBADREQ },
		{ TBP_OP_DRAIN, "timeout_ms", false, dmax, TB_OK },
		{ TBP_OP_SUBMIT, "run_at", false, tmax + 1, TB_EBADREQ },
		{ TBP_OP_SUBMIT, "run_at", true, tmax + 1, TB_EBADREQ },
		{ TBP_OP_SUBMIT, "run_at", false, tmax, TB_OK },
		{ TBP_OP_SUBMIT, "run_at", true, tmax, TB_OK },
		{ TBP_OP_SCHED_ADD, "every_ms", false, dmax + 1, TB_EBADREQ },
		{ TBP_OP_SCHED_ADD, "every_ms", false, dmax, TB_OK },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const range_case *c = &cases[i];
		int               rv;
		reset(f);
		pk_range_req(f, c);
		if ((rv = dec_req(f)) != c->want) {
			print_error("%s %s = %s%llu: %s, wanted %s\n",
			    tbp_op_name(c->op), c->field,
			    c->negative ? "-" : "",
			    (unsigned long long) c->magnitude,
			    tbp_err_name(rv), tbp_err_name(c->want));
			fail();
		}
		// A refused request still names its op and id for the reply.
		assert_true(f->req.have_envelope);
	}
}

// Tokens (remote access): any request may carry one; it is added after
// encoding, whatever the op and the size of the body's map header.

static void
test_token_is_added_to_every_kind_of_body(void **state)
{
	fx          *f     = *state;
	tbp_bytes    token = tbp_str("s3cret-s3cret-s3cret");
	tbp_task_in *t;

	// An empty body (fixmap 0), a body with fields, and a submit.
	assert_int_equal(tbp_enc_req_empty(&f->sb, TBP_OP_PING, 3), TB_OK);
	assert_int_equal(tbp_req_add_token(&f->sb, 0, token), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_true(f->req.have_token);
	assert_true(tbp_bytes_eq(f->req.token, "s3cret-s3cret-s3cret"));
	assert_int_equal(f->req.req_id, 3);
	reset(f);
	assert_int_equal(tbp_enc_wait(&f->sb, 8, 12, 5000), TB_OK);
	assert_int_equal(tbp_req_add_token(&f->sb, 0, token), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_true(f->req.have_token);
	assert_int_equal(f->req.id, 12);
	assert_int_equal(f->req.timeout_ms, 5000);
	reset(f);
	enc_valid_submit(f);
	assert_int_equal(tbp_req_add_token(&f->sb, 0, token), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_true(f->req.have_token);
	assert_int_equal(f->req.ntasks, 2);
	t = &f->req.tasks[0];
	assert_true(tbp_bytes_eq(t->queue, "mail"));
}

static void
test_token_grows_a_full_fixmap_header(void **state)
{
	fx *f = *state;

	// 15 pairs: the header must become a map16 to hold the 16th.
	pk_req_head(f, TBP_VERSION, TBP_OP_PING, 15);
	for (int i = 0; i < 15; i++) {
		char k[8];
		snprintf(k, sizeof(k), "x%d", i);
		pk_key(f, k);
		msgpack_pack_uint64(&f->pk, (uint64_t) i);
	}
	assert_int_equal(
	    tbp_req_add_token(&f->sb, 0, tbp_str("0123456789abcdef")), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_true(f->req.have_token);
	assert_true(tbp_bytes_eq(f->req.token, "0123456789abcdef"));
}

static void
test_token_refuses_what_is_no_request(void **state)
{
	fx    *f = *state;
	size_t n;

	assert_int_equal(tbp_enc_rep_empty(&f->sb, TBP_OP_PING, 1), TB_OK);
	n = f->sb.size;
	assert_int_equal(tbp_req_add_token(&f->sb, 0, tbp_str("tok")),
	    TB_EINVAL); // a reply: five elements
	assert_int_equal(f->sb.size, n);
	reset(f);
	assert_int_equal(tbp_enc_req_empty(&f->sb, TBP_OP_PING, 1), TB_OK);
	assert_int_equal(tbp_req_add_token(&f->sb, 0, tbp_str("")), TB_EINVAL);
	{
		char big[TBP_MAX_TOKEN + 2];
		memset(big, 'a', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		assert_int_equal(
		    tbp_req_add_token(&f->sb, 0, tbp_str(big)), TB_EINVAL);
	}
	// A token at an offset: the second of two messages.
	n = f->sb.size;
	assert_int_equal(tbp_enc_req_id(&f->sb, TBP_OP_STATUS, 2, 9), TB_OK);
	assert_int_equal(tbp_req_add_token(&f->sb, n, tbp_str("tok")), TB_OK);
	assert_int_equal(
	    dec_req_raw(f, f->sb.data + n, f->sb.size - n), TB_OK);
	assert_true(f->req.have_token);
	assert_int_equal(f->req.id, 9);
}

static void
test_token_is_read_even_when_the_version_is_newer(void **state)
{
	fx *f = *state;

	pk_req_head(f, TBP_VERSION + 1, TBP_OP_PING, 1);
	pk_key(f, "token");
	pk_str(f, "tok");
	assert_int_equal(dec_req(f), TB_EVERSION);
	assert_true(f->req.have_token);
	reset(f);
	pk_req_head(f, TBP_VERSION, TBP_OP_PING, 1);
	pk_key(f, "token");
	msgpack_pack_uint64(&f->pk, 5); // not a string: absent
	assert_int_equal(dec_req(f), TB_OK);
	assert_false(f->req.have_token);
}

static void
test_token_equal_compares_whole_tokens(void **state)
{
	(void) state;
	assert_true(tbp_token_equal(tbp_str("abcdef"), tbp_str("abcdef")));
	assert_false(tbp_token_equal(tbp_str("abcdeg"), tbp_str("abcdef")));
	assert_false(tbp_token_equal(tbp_str("abcde"), tbp_str("abcdef")));
	assert_false(tbp_token_equal(tbp_str("abcdefg"), tbp_str("abcdef")));
	assert_false(tbp_token_equal(tbp_str(""), tbp_str("abcdef")));
	assert_false(tbp_token_equal(tbp_str(""), tbp_str("")));
}

// ---- workers
// ----------------------------------------------------------------

static void
test_worker_hello_round_trips(void **state)
{
	fx       *f     = *state;
	tbp_bytes hs[2] = { tbp_str("resize"), tbp_str("mail") };
	tbp_bytes qs[1] = { tbp_str("bulk") };
	tbp_hello h     = { .handlers = hs,
		    .nhandlers        = 2,
		    .queues           = qs,
		    .nqueues          = 1,
		    .slots            = 8,
		    .pid              = 42,
		    .host             = tbp_str("h"),
		    .name             = tbp_str("w1") };

	assert_int_equal(tbp_enc_worker_hello(&f->sb, 1, &h), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.op, TBP_OP_WORKER_HELLO);
	assert_int_equal(f->req.hello.nhandlers, 2);
	assert_true(tbp_bytes_eq(f->req.hello.handlers[1], "mail"));
	assert_int_equal(f->req.hello.nqueues, 1);
	assert_true(tbp_bytes_eq(f->req.hello.queues[0], "bulk"));
	assert_int_equal(f->req.hello.slots, 8);
	assert_int_equal(f->req.hello.pid, 42);
	assert_true(tbp_bytes_eq(f->req.hello.name, "w1"));
}

static void
test_worker_hello_refuses_no_handlers_or_bad_slots(void **state)
{
	fx       *f     = *state;
	tbp_bytes hs[1] = { tbp_str("x") };
	tbp_hello h     = { .handlers = hs, .nhandlers = 0, .slots = 1 };

	assert_int_equal(tbp_enc_worker_hello(&f->sb, 1, &h), TB_OK);
	assert_int_equal(dec_req(f), TB_EBADREQ);
	reset(f);
	h.nhandlers = 1;
	h.slots     = 0;
	assert_int_equal(tbp_enc_worker_hello(&f->sb, 1, &h), TB_OK);
	assert_int_equal(dec_req(f), TB_EBADREQ);
	reset(f);
	h.slots = TBP_MAX_SLOTS + 1;
	assert_int_equal(tbp_enc_worker_hello(&f->sb, 1, &h), TB_OK);
	assert_int_equal(dec_req(f), TB_EBADREQ);
}

static void
test_worker_take_done_bye_round_trip(void **state)
{
	fx      *f      = *state;
	tbp_done d      = { .id = 9,
		     .attempt   = 2,
		     .ok        = false,
		     .error     = tbp_str("boom"),
		     .retryable = false,
		     .seq       = 5 };
	uint64_t ids[3] = { 1, 2, UINT64_MAX };

	assert_int_equal(tbp_enc_worker_take(&f->sb, 1, 77, 3, 4), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.worker_id, 77);
	assert_int_equal(f->req.free, 3);
	assert_int_equal(f->req.dones, 4);
	reset(f);
	assert_int_equal(tbp_enc_worker_done(&f->sb, 2, 77, &d), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.done.id, 9);
	assert_int_equal(f->req.done.attempt, 2);
	assert_false(f->req.done.ok);
	assert_false(f->req.done.retryable);
	assert_int_equal(f->req.done.seq, 5);
	assert_true(tbp_bytes_eq(f->req.done.error, "boom"));
	reset(f);
	assert_int_equal(tbp_enc_worker_bye(&f->sb, 3, 77, ids, 3), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.nids, 3);
	assert_int_equal(f->req.ids[2], UINT64_MAX);
}

static void
test_worker_done_of_several_results_round_trips(void **state)
{
	fx      *f     = *state;
	tbp_done d[2]  = { { .id          = 1,
		               .attempt   = 1,
		               .ok        = true,
		               .result    = tbp_str("\x01"),
		               .retryable = true,
		               .seq       = 7 },
		 { .id          = 2,
		     .attempt   = 3,
		     .ok        = false,
		     .error     = tbp_str("no"),
		     .retryable = false,
		     .seq       = 8 } };
	uint32_t st[2] = { TB_OK, TB_ESTALE };

	assert_int_equal(tbp_enc_worker_dones(&f->sb, 1, 9, d, 2), TB_OK);
	assert_int_equal(dec_req(f), TB_OK);
	assert_int_equal(f->req.worker_id, 9);
	assert_int_equal(f->req.nresults, 2);
	assert_int_equal(f->req.results[0].seq, 7);
	assert_true(f->req.results[0].ok);
	assert_true(f->req.results[0].retryable);
	assert_int_equal(f->req.results[1].attempt, 3);
	assert_false(f->req.results[1].retryable);
	assert_true(tbp_bytes_eq(f->req.results[1].error, "no"));
	reset(f);
	assert_int_equal(tbp_enc_rep_dones(&f->sb, 1, st, 2), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.nstatuses, 2);
	assert_int_equal(f->rep.statuses[1], TB_ESTALE);
}

static void
test_worker_done_refuses_a_result_over_the_limit(void **state)
{
	fx      *f   = *state;
	uint8_t *big = calloc(1, TBP_MAX_RESULT + 1);
	tbp_done d   = { .id = 1, .attempt = 1, .ok = true };

	d.result = (tbp_bytes) { big, TBP_MAX_RESULT + 1 };
	assert_int_equal(tbp_enc_worker_done(&f->sb, 1, 1, &d), TB_OK);
	assert_int_equal(dec_req(f), TB_ETOOBIG);
	free(big);
}

static void
test_rep_hello_take_workers_round_trip(void **state)
{
	fx        *f          = *state;
	tbp_job    jobs[2]    = { { .id            = 5,
		                      .attempt     = 1,
		                      .crashes     = 2,
		                      .handler     = tbp_str("resize"),
		                      .queue       = tbp_str("q"),
		                      .payload     = tbp_str("\x80"),
		                      .deadline_ms = 1234 },
		      { .id        = 6,
		          .attempt = 3,
		          .handler = tbp_str("resize"),
		          .queue   = tbp_str("default") } };
	tbp_job    cancels[1] = { { .id = 4, .attempt = 7 } };
	tbp_bytes  hs[2]      = { tbp_str("a"), tbp_str("b") };
	tbp_winfo  w          = { .id = 3,
		          .pid        = 99,
		          .host       = tbp_str("h"),
		          .name       = tbp_str("n"),
		          .handlers   = hs,
		          .nhandlers  = 2,
		          .slots      = 4,
		          .running    = 1,
		          .done       = 10,
		          .since      = 55 };
	tbp_whstat wh = { .name = tbp_str("a"), .workers = 2, .waiting = 17 };
	tbp_stats  st;

	assert_int_equal(tbp_enc_rep_hello(&f->sb, 1, 3, 5000, 15000), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.worker_id, 3);
	assert_int_equal(f->rep.heartbeat_ms, 5000);
	assert_int_equal(f->rep.wtimeout_ms, 15000);
	reset(f);
	assert_int_equal(
	    tbp_enc_rep_take(&f->sb, 2, jobs, 2, cancels, 1, true), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.njobs, 2);
	assert_int_equal(f->rep.jobs[0].crashes, 2);
	assert_int_equal(f->rep.jobs[0].deadline_ms, 1234);
	assert_int_equal(f->rep.jobs[0].payload.n, 1);
	assert_true(tbp_bytes_eq(f->rep.jobs[1].queue, "default"));
	assert_int_equal(f->rep.ncancels, 1);
	assert_int_equal(f->rep.cancels[0].attempt, 7);
	assert_true(f->rep.stop);
	reset(f);
	assert_int_equal(tbp_enc_rep_workers(&f->sb, 3, &w, 1), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.nworkers, 1);
	assert_int_equal(f->rep.workers[0].pid, 99);
	assert_int_equal(f->rep.workers[0].nhandlers, 2);
	assert_true(tbp_bytes_eq(f->rep.workers[0].handlers[1], "b"));
	assert_int_equal(f->rep.workers[0].nqueues, 0);
	assert_int_equal(f->rep.workers[0].since, 55);
	reset(f);
	memset(&st, 0, sizeof(st));
	st.pending = 3;
	assert_int_equal(tbp_enc_rep_stats_wh(&f->sb, 4, &st, &wh, 1), TB_OK);
	assert_int_equal(dec_rep(f), TB_OK);
	assert_int_equal(f->rep.stats.pending, 3);
	assert_int_equal(f->rep.nwhstats, 1);
	assert_int_equal(f->rep.whstats[0].waiting, 17);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_submit_round_trips),
		T(test_worker_hello_round_trips),
		T(test_worker_hello_refuses_no_handlers_or_bad_slots),
		T(test_worker_take_done_bye_round_trip),
		T(test_worker_done_of_several_results_round_trips),
		T(test_worker_done_refuses_a_result_over_the_limit),
		T(test_rep_hello_take_workers_round_trip),
		T(test_token_is_added_to_every_kind_of_body),
		T(test_token_grows_a_full_fixmap_header),
		T(test_token_refuses_what_is_no_request),
		T(test_token_is_read_even_when_the_version_is_newer),
		T(test_token_equal_compares_whole_tokens),
		T(test_submit_omits_zero_fields),
		T(test_status_and_cancel_round_trip),
		T(test_wait_round_trips),
		T(test_wait_without_timeout_decodes_minus_one),
		T(test_list_round_trips),
		T(test_list_defaults_when_fields_absent),
		T(test_empty_requests_round_trip),
		T(test_rep_error_round_trips),
		T(test_rep_error_defaults_message),
		T(test_rep_error_may_answer_unknown_op),
		T(test_rep_submit_round_trips),
		T(test_rep_submit_without_dup_reads_false),
		T(test_rep_task_round_trips),
		T(test_rep_task_carries_result_and_error),
		T(test_rep_wait_round_trips_timed_out),
		T(test_rep_tasks_round_trips),
		T(test_rep_tasks_empty_list),
		T(test_rep_stats_round_trips),
		T(test_rep_ping_round_trips),
		T(test_rep_empty_round_trips),
		T(test_event_round_trips),
		T(test_views_outlive_the_input_buffer),
		T(test_fini_twice_is_safe),
		T(test_encoders_append_whole_messages),
		T(test_names_come_from_the_lists),
		T(test_state_names_round_trip),
		T(test_state_parse_refuses_unknown_names),
		T(test_state_name_of_no_state_is_unknown),
		T(test_state_final_is_done_dead_cancelled),
		T(test_nng_err_maps_each_code),
		T(test_nng_err_defaults_to_system),
		T(test_nng_err_refuses_unknown_ctx),
		T(test_bytes_helpers),
		T(test_req_rejects_every_truncation),
		T(test_rep_rejects_every_truncation),
		T(test_event_rejects_every_truncation),
		T(test_req_rejects_trailing_bytes),
		T(test_rep_rejects_trailing_bytes),
		T(test_event_rejects_trailing_bytes),
		T(test_req_rejects_non_array),
		T(test_req_rejects_short_envelope),
		T(test_req_rejects_long_envelope),
		T(test_req_rejects_wrong_envelope_types),
		T(test_req_rejects_newer_version),
		T(test_req_rejects_newer_version_of_any_shape),
		T(test_req_rejects_version_zero),
		T(test_req_rejects_unknown_op),
		T(test_req_rejects_body_not_map),
		T(test_req_rejects_non_string_key),
		T(test_check_rejects_hostile_lengths),
		T(test_req_rejects_hostile_lengths_inside),
		T(test_check_counts_map_pairs_against_bytes),
		T(test_check_accepts_every_type),
		T(test_check_reports_first_object_length),
		T(test_check_rejects_reserved_byte),
		T(test_req_rejects_reserved_byte),
		T(test_check_limits_depth),
		T(test_check_survives_very_deep_input),
		T(test_req_rejects_deep_envelope),
		T(test_req_accepts_deepest_allowed_envelope),
		T(test_req_rejects_deep_payload),
		T(test_req_rejects_payload_not_one_object),
		T(test_req_rejects_payload_over_limit),
		T(test_req_rejects_long_names),
		T(test_req_rejects_empty_handler),
		T(test_req_rejects_nul_in_names),
		T(test_req_accepts_max_tasks),
		T(test_req_rejects_too_many_tasks),
		T(test_req_rejects_zero_tasks),
		T(test_req_rejects_wrong_sid_length),
		T(test_req_accepts_sid_as_str),
		T(test_req_rejects_wrong_task_field_types),
		T(test_req_accepts_field_extremes),
		T(test_req_rejects_wrong_body_types),
		T(test_req_accepts_negative_wait_timeout),
		T(test_req_rejects_missing_fields),
		T(test_req_treats_nil_as_absent),
		T(test_req_ignores_unknown_keys),
		T(test_req_rejects_message_over_limit),
		T(test_req_rejects_too_many_objects),
		T(test_req_rejects_null_and_empty_buffers),
		T(test_rep_rejects_bad_envelopes),
		T(test_rep_rejects_missing_task),
		T(test_rep_rejects_result_over_limit),
		T(test_rep_rejects_list_over_limit),
		T(test_rep_rejects_submit_mismatch),
		T(test_rep_rejects_too_many_ids),
		T(test_event_rejects_missing_nul),
		T(test_event_rejects_long_topic),
		T(test_event_accepts_minimal_map),
		T(test_event_rejects_body_not_map),
		T(test_event_rejects_wrong_field_types),
		T(test_golden_bad_inputs_are_refused),
		T(test_submit_round_trips_lifecycle_fields),
		T(test_submit_round_trips_max_crashes),
		T(test_crash_figures_absent_read_zero),
		T(test_req_rejects_bad_key),
		T(test_req_numbers_out_of_range_are_bad_requests),
		T(test_req_rejects_wrong_lifecycle_task_types),
		T(test_list_round_trips_lifecycle_filters),
		T(test_rep_task_round_trips_lifecycle_fields),
		T(test_rep_submit_round_trips_existing),
		T(test_rep_submit_without_existing_reads_false),
		T(test_rep_submit_rejects_existing_mismatch),
		T(test_retry_by_id_round_trips),
		T(test_retry_by_filter_round_trips),
		T(test_retry_rejects_id_with_filter),
		T(test_pause_and_resume_round_trip),
		T(test_pause_rejects_missing_or_empty_queue),
		T(test_drain_round_trips),
		T(test_purge_round_trips),
		T(test_purge_rejects_missing_state),
		T(test_sched_add_round_trips_every),
		T(test_sched_add_round_trips_cron),
		T(test_sched_add_ignores_reply_fields),
		T(test_sched_add_rejects_both_or_neither),
		T(test_sched_add_rejects_bad_fields),
		T(test_sched_name_round_trips),
		T(test_sched_name_rejects_missing_name),
		T(test_new_empty_requests_round_trip),
		T(test_rep_count_round_trips),
		T(test_rep_drain_round_trips),
		T(test_rep_empty_answers_new_ops),
		T(test_rep_scheds_round_trips),
		T(test_rep_rejects_too_many_schedules),
		T(test_rep_rejects_bad_schedules),
		T(test_rep_queues_round_trips),
		T(test_rep_rejects_too_many_queues),
		T(test_rep_stats_reads_old_broker),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
