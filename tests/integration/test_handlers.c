// test_handlers.c: every built-in handler end to end through the client
// library, the events they publish, retries, cancel, errors, and the
// taskbroker CLI. Each test starts its own broker.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "harness_json.h"

#define EVENT_MS TBH_MS(5000)
#define WAIT_MS TBH_MS(10000)

// collect_events receives events until a final event (done, dead,
// cancelled) for id arrives or timeout_ms passes. It keeps the events of
// task id (up to max) in evs and returns how many; *finalp is set if the
// final event came.
static size_t
collect_events(tb_sub *s, tb_id id, int timeout_ms, tb_event **evs, size_t max,
    bool *finalp)
{
	int64_t deadline = tbh_now_ms() + timeout_ms;
	size_t  n        = 0;

	*finalp = false;
	while (!*finalp) {
		tb_event   *e    = NULL;
		int64_t     left = deadline - tbh_now_ms();
		const char *name;

		if (left <= 0 || tb_sub_recv(s, (int) left, &e) != TB_OK) {
			break;
		}
		if (tb_event_task_id(e) != id) {
			tb_event_free(e);
			continue;
		}
		name    = tb_event_name(e);
		*finalp = strcmp(name, "done") == 0 ||
		    strcmp(name, "dead") == 0 ||
		    strcmp(name, "cancelled") == 0;
		if (n < max) {
			evs[n++] = e;
		} else {
			tb_event_free(e);
		}
	}
	return (n);
}

static void
free_events(tb_event **evs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		tb_event_free(evs[i]);
	}
}

static void
print_events(tb_event **evs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		print_message("  event seq %llu %s (task %llu, attempt %u)\n",
		    (unsigned long long) tb_event_seq(evs[i]),
		    tb_event_topic(evs[i]),
		    (unsigned long long) tb_event_task_id(evs[i]),
		    tb_event_attempt(evs[i]));
	}
}

// run_and_check submits one task of handler with payload, waits for its
// start and final events and its final state, and checks they agree.
// Returns the final task (free it).
static tb_task *
run_and_check(tbh_fix *f, const char *handler, const void *payload, size_t len,
    int want_state)
{
	tb_event *evs[16];
	size_t    n;
	bool      final;
	tb_id     id;
	tb_task  *t;
	char      topic[256];

	if (f->sub == NULL) {
		f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	}
	id = tbh_submit(f->c, handler, payload, len, NULL);
	n  = collect_events(f->sub, id, WAIT_MS, evs, 16, &final);
	if (!final || n < 2 || strcmp(tb_event_name(evs[0]), "start") != 0) {
		print_error("task %llu (%s): want a start event then a final "
		            "event, got %zu events%s:\n",
		    (unsigned long long) id, handler, n,
		    final ? "" : " and no final one");
		print_events(evs, n);
		free_events(evs, n);
		fail();
	}
	snprintf(topic, sizeof(topic), "tb.start.default.%s", handler);
	assert_string_equal(tb_event_topic(evs[0]), topic);
	snprintf(topic, sizeof(topic), "tb.%s.default.%s",
	    want_state == TB_STATE_DONE ? "done" : "dead", handler);
	assert_string_equal(tb_event_topic(evs[n - 1]), topic);
	assert_string_equal(tb_event_queue(evs[n - 1]), "default");
	assert_string_equal(tb_event_handler(evs[n - 1]), handler);
	assert_int_equal(tb_event_state(evs[n - 1]), want_state);
	assert_true(tb_event_seq(evs[n - 1]) > tb_event_seq(evs[0]));
	free_events(evs, n);

	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, want_state);
	assert_int_equal(tb_task_id(t), id);
	assert_string_equal(tb_task_handler(t), handler);
	assert_string_equal(tb_task_queue(t), "default");
	assert_int_equal(tb_task_attempts(t), 1);
	assert_true(tb_task_created_at(t) > 0);
	assert_true(tb_task_started_at(t) >= tb_task_created_at(t));
	assert_true(tb_task_finished_at(t) >= tb_task_started_at(t));
	return (t);
}

static void
test_noop_ends_done_with_start_and_done_events(void **state)
{
	tbh_fix       *f = *state;
	tb_task       *t;
	size_t         rlen = 0;
	const uint8_t *r;

	tbh_fix_start(f, NULL);
	t = run_and_check(f, "noop", NULL, 0, TB_STATE_DONE);
	r = tb_task_result(t, &rlen);
	// No result, or a msgpack nil.
	assert_true(rlen == 0 || (rlen == 1 && r[0] == 0xc0));
	assert_null(tb_task_error(t));
	tb_task_free(t);
	f->passed = true;
}

static void
test_noop_with_empty_map_payload(void **state)
{
	tbh_fix *f = *state;
	tb_task *t;
	size_t   len;
	void    *p = tbh_pack_empty(&len);

	tbh_fix_start(f, NULL);
	t = run_and_check(f, "noop", p, len, TB_STATE_DONE);
	free(p);
	tb_task_free(t);
	f->passed = true;
}

static void
test_sleep_ends_done_after_its_delay(void **state)
{
	tbh_fix *f = *state;
	tb_task *t;
	size_t   len;
	void    *p = tbh_pack_ms(300, &len);

	tbh_fix_start(f, NULL);
	t = run_and_check(f, "sleep", p, len, TB_STATE_DONE);
	free(p);
	// The task ran for at least its 300 ms (timers may round a little).
	if (tb_task_finished_at(t) - tb_task_started_at(t) < 290000) {
		print_error("sleep 300 ms ran %lld us\n",
		    (long long) (tb_task_finished_at(t) -
		        tb_task_started_at(t)));
		fail();
	}
	tb_task_free(t);
	f->passed = true;
}

static void
test_fail_ends_dead_with_default_message(void **state)
{
	tbh_fix *f = *state;
	tb_task *t;

	tbh_fix_start(f, NULL);
	t = run_and_check(f, "fail", NULL, 0, TB_STATE_DEAD);
	assert_non_null(tb_task_error(t));
	assert_non_null(strstr(tb_task_error(t), "failed on purpose"));
	tb_task_free(t);
	f->passed = true;
}

static void
test_fail_ends_dead_with_given_message(void **state)
{
	tbh_fix *f = *state;
	tb_task *t;
	size_t   len;
	void    *p = tbh_pack_message("boom 42", &len);

	tbh_fix_start(f, NULL);
	t = run_and_check(f, "fail", p, len, TB_STATE_DEAD);
	free(p);
	assert_non_null(tb_task_error(t));
	assert_non_null(strstr(tb_task_error(t), "boom 42"));
	tb_task_free(t);
	f->passed = true;
}

static void
test_block_ends_done_on_the_pool(void **state)
{
	tbh_fix *f = *state;
	tb_task *t;
	size_t   len;
	void    *p = tbh_pack_ms(200, &len);

	tbh_fix_start(f, NULL);
	t = run_and_check(f, "block", p, len, TB_STATE_DONE);
	free(p);
	assert_true(tb_task_finished_at(t) - tb_task_started_at(t) >= 190000);
	tb_task_free(t);
	f->passed = true;
}

// With one worker thread, two blocking tasks of 300 ms cannot overlap: the
// second finishes at least 300 ms after the first, and its started_at is
// not before the first one's finished_at.
static void
test_block_with_one_worker_runs_one_at_a_time(void **state)
{
	const char *const args[] = { "--workers", "1", NULL };
	tbh_fix          *f      = *state;
	tb_task          *t1, *t2;
	tb_id             id1, id2;
	int64_t           gap;
	size_t            len;
	void             *p = tbh_pack_ms(300, &len);

	tbh_fix_start(f, args);
	id1 = tbh_submit(f->c, "block", p, len, NULL);
	id2 = tbh_submit(f->c, "block", p, len, NULL);
	free(p);
	t1 = tbh_wait_final(f->c, id1, WAIT_MS);
	t2 = tbh_wait_final(f->c, id2, WAIT_MS);
	tbh_expect_state(t1, TB_STATE_DONE);
	tbh_expect_state(t2, TB_STATE_DONE);
	gap = tb_task_finished_at(t2) - tb_task_finished_at(t1);
	if (gap < 0) {
		gap = -gap;
	}
	print_message("block x2, 1 worker: [%lld, %lld] and [%lld, %lld] us "
	              "(relative), finish gap %lld us\n",
	    0LL,
	    (long long) (tb_task_finished_at(t1) - tb_task_started_at(t1)),
	    (long long) (tb_task_started_at(t2) - tb_task_started_at(t1)),
	    (long long) (tb_task_finished_at(t2) - tb_task_started_at(t1)),
	    (long long) gap);
	if (gap < 290000) {
		print_error("with --workers 1 two block tasks of 300 ms "
		            "finished %lld us apart\n",
		    (long long) gap);
		fail();
	}
	// A pool task starts when a worker takes it, so the two
	// [started_at, finished_at] intervals do not overlap either.
	if (tb_task_started_at(t2) < tb_task_finished_at(t1) &&
	    tb_task_started_at(t1) < tb_task_finished_at(t2)) {
		print_error(
		    "with --workers 1 the intervals of two block tasks "
		    "overlap\n");
		fail();
	}
	tb_task_free(t1);
	tb_task_free(t2);
	f->passed = true;
}

static void
test_exec_echo_ends_done_with_output(void **state)
{
	const char *const     argv[] = { "/bin/echo", "hi", NULL };
	tbh_fix              *f      = *state;
	tb_task              *t;
	size_t                len, rlen = 0;
	void                 *p = tbh_pack_argv(argv, &len);
	const void           *r;
	msgpack_unpacked      u;
	const msgpack_object *v;

	tbh_fix_start(f, NULL);
	t = run_and_check(f, "exec", p, len, TB_STATE_DONE);
	free(p);
	r = tb_task_result(t, &rlen);
	assert_non_null(r);
	assert_true(rlen > 0);
	msgpack_unpacked_init(&u);
	assert_int_equal(
	    msgpack_unpack_next(&u, r, rlen, NULL), MSGPACK_UNPACK_SUCCESS);
	assert_int_equal(u.data.type, MSGPACK_OBJECT_MAP);
	v = tbh_map_get(&u.data, "exit_status");
	assert_non_null(v);
	assert_int_equal(v->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	assert_int_equal(v->via.u64, 0);
	v = tbh_map_get(&u.data, "term_signal");
	assert_non_null(v);
	assert_true(
	    v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 == 0);
	v = tbh_map_get(&u.data, "stdout");
	assert_non_null(v);
	if (v->type == MSGPACK_OBJECT_BIN) {
		assert_int_equal(v->via.bin.size, 3);
		assert_memory_equal(v->via.bin.ptr, "hi\n", 3);
	} else {
		// The contract says bin; a str is reported as a failure too.
		print_error(
		    "exec result stdout has msgpack type %d, want bin\n",
		    (int) v->type);
		fail();
	}
	v = tbh_map_get(&u.data, "stderr");
	assert_non_null(v);
	assert_true(v->type == MSGPACK_OBJECT_BIN && v->via.bin.size == 0);
	msgpack_unpacked_destroy(&u);
	assert_null(tb_task_error(t));
	tb_task_free(t);
	f->passed = true;
}

// expect_exec_dead runs an exec task of argv on a fresh broker and checks
// that it ends dead with a non-empty error.
static void
expect_exec_dead(tbh_fix *f, const char *const *argv)
{
	tb_task *t;
	size_t   len;
	void    *p = tbh_pack_argv(argv, &len);

	tbh_fix_start(f, NULL);
	t = run_and_check(f, "exec", p, len, TB_STATE_DEAD);
	free(p);
	assert_non_null(tb_task_error(t));
	assert_true(strlen(tb_task_error(t)) > 0);
	tb_task_free(t);
}

static void
test_exec_false_ends_dead_with_error(void **state)
{
	const char *const argv[] = { "/bin/false", NULL };
	tbh_fix          *f      = *state;

	expect_exec_dead(f, argv);
	f->passed = true;
}

static void
test_exec_missing_program_ends_dead_with_error(void **state)
{
	const char *const argv[] = { "/nonexistent/tbh-no-such-program",
		NULL };
	tbh_fix          *f      = *state;

	expect_exec_dead(f, argv);
	f->passed = true;
}

static void
test_unknown_handler_is_rejected(void **state)
{
	tbh_fix *f  = *state;
	tb_id    id = 0;

	tbh_fix_start(f, NULL);
	TBH_RV(tb_submit(f->c, "tbh_no_such_handler", NULL, 0, NULL, &id),
	    TB_ENOHANDLER);
	// The broker is fine afterwards.
	TBH_OK(tb_ping(f->c, NULL));
	f->passed = true;
}

static void
test_batch_with_unknown_handler_creates_nothing(void **state)
{
	tbh_fix     *f = *state;
	tb_task_spec specs[3];
	tb_id        ids[3];
	size_t       before;

	tbh_fix_start(f, NULL);
	before = tbh_count(f->c, NULL, -1);
	memset(specs, 0, sizeof(specs));
	specs[0].handler = "noop";
	specs[1].handler = "tbh_no_such_handler";
	specs[2].handler = "noop";
	TBH_RV(tb_submit_batch(f->c, specs, 3, ids), TB_ENOHANDLER);
	assert_int_equal(tbh_count(f->c, NULL, -1), before);
	f->passed = true;
}

static void
test_batch_of_100_noop_gets_increasing_ids_and_all_end_done(void **state)
{
	tbh_fix     *f = *state;
	tb_task_spec specs[100];
	tb_id        ids[100];
	size_t       before;

	tbh_fix_start(f, NULL);
	before = tbh_count(f->c, NULL, -1);
	memset(specs, 0, sizeof(specs));
	memset(ids, 0, sizeof(ids));
	for (int i = 0; i < 100; i++) {
		specs[i].handler = "noop";
	}
	TBH_OK(tb_submit_batch(f->c, specs, 100, ids));
	for (int i = 0; i < 100; i++) {
		assert_true(ids[i] != 0);
		if (i > 0 && ids[i] <= ids[i - 1]) {
			print_error(
			    "batch ids not increasing: ids[%d] = %llu, "
			    "ids[%d] = %llu\n",
			    i - 1, (unsigned long long) ids[i - 1], i,
			    (unsigned long long) ids[i]);
			fail();
		}
	}
	for (int i = 0; i < 100; i++) {
		tb_task *t = tbh_wait_final(f->c, ids[i], WAIT_MS);
		tbh_expect_state(t, TB_STATE_DONE);
		assert_int_equal(tb_task_attempts(t), 1);
		tb_task_free(t);
	}
	assert_int_equal(tbh_count(f->c, NULL, -1), before + 100);
	f->passed = true;
}

// Events carry a sequence number that increases by one per event; on a
// quiet broker with one subscriber none is dropped.
static void
test_event_seq_increases_by_one(void **state)
{
	tbh_fix *f         = *state;
	uint64_t prev      = 0;
	bool     have_prev = false;
	int      seen      = 0;

	tbh_fix_start(f, NULL);
	f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	for (int i = 0; i < 5; i++) {
		tb_id    id        = tbh_submit(f->c, "noop", NULL, 0, NULL);
		int64_t  deadline  = tbh_now_ms() + EVENT_MS;
		bool     done      = false;
		uint64_t start_seq = 0;

		while (!done) {
			tb_event *e    = NULL;
			int64_t   left = deadline - tbh_now_ms();

			if (left <= 0) {
				print_error("no done event for task %llu\n",
				    (unsigned long long) id);
				fail();
			}
			TBH_OK(tb_sub_recv(f->sub, (int) left, &e));
			if (have_prev && tb_event_seq(e) != prev + 1) {
				print_error("event %s for task %llu has seq "
				            "%llu after seq %llu\n",
				    tb_event_topic(e),
				    (unsigned long long) tb_event_task_id(e),
				    (unsigned long long) tb_event_seq(e),
				    (unsigned long long) prev);
				tb_event_free(e);
				fail();
			}
			prev      = tb_event_seq(e);
			have_prev = true;
			seen++;
			if (tb_event_task_id(e) == id) {
				if (strcmp(tb_event_name(e), "start") == 0) {
					start_seq = tb_event_seq(e);
				} else if (strcmp(tb_event_name(e), "done") ==
				    0) {
					assert_true(start_seq != 0);
					assert_true(
					    tb_event_seq(e) > start_seq);
					done = true;
				}
			}
			tb_event_free(e);
		}
	}
	assert_true(seen >= 10);
	f->passed = true;
}

static void
test_fail_with_3_attempts_retries_then_ends_dead(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_event      *evs[32];
	size_t         n;
	bool           final;
	int            nstart = 0, nfailed = 0;
	tb_id          id;
	tb_task       *t;

	tbh_fix_start(f, NULL);
	f->sub         = tbh_sub_open(&f->b, f->c, "tb.");
	o.max_attempts = 3;
	id             = tbh_submit(f->c, "fail", NULL, 0, &o);
	n = collect_events(f->sub, id, TBH_MS(15000), evs, 32, &final);
	for (size_t i = 0; i < n; i++) {
		const char *name = tb_event_name(evs[i]);
		nstart += strcmp(name, "start") == 0;
		nfailed += strcmp(name, "retry") == 0;
	}
	if (!final || strcmp(tb_event_name(evs[n - 1]), "dead") != 0 ||
	    nfailed < 1 || nstart != 3) {
		print_error("fail x3: want 3 start events, retry events, "
		            "then dead; got:\n");
		print_events(evs, n);
		free_events(evs, n);
		fail();
	}
	for (size_t i = 0, k = 0; i < n; i++) {
		if (i + 1 < n) {
			assert_true(
			    tb_event_seq(evs[i + 1]) > tb_event_seq(evs[i]));
		}
		if (strcmp(tb_event_name(evs[i]), "start") == 0) {
			// Start events number the attempts 1, 2, 3.
			assert_int_equal(tb_event_attempt(evs[i]), ++k);
		}
	}
	assert_int_equal(tb_event_attempt(evs[n - 1]), 3);
	free_events(evs, n);

	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 3);
	assert_int_equal(tb_task_max_attempts(t), 3);
	assert_non_null(tb_task_error(t));
	tb_task_free(t);
	f->passed = true;
}

static void
test_cancel_pending_task_ends_cancelled(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_task       *t = NULL;
	tb_event      *e;
	tb_id          id;

	tbh_fix_start(f, NULL);
	f->sub     = tbh_sub_open(&f->b, f->c, "tb.");
	o.delay_ms = 60000;
	id         = tbh_submit(f->c, "noop", NULL, 0, &o);
	TBH_OK(tb_status(f->c, id, &t));
	tbh_expect_state(t, TB_STATE_PENDING);
	tb_task_free(t);
	t = NULL;

	TBH_OK(tb_cancel(f->c, id, &t));
	assert_non_null(t);
	tbh_expect_state(t, TB_STATE_CANCELLED);
	tb_task_free(t);
	t = NULL;

	TBH_OK(tb_status(f->c, id, &t));
	tbh_expect_state(t, TB_STATE_CANCELLED);
	assert_int_equal(tb_task_attempts(t), 0);
	tb_task_free(t);

	if ((e = tbh_sub_expect(f->sub, id, "cancelled", EVENT_MS)) == NULL) {
		print_error("no cancelled event for task %llu\n",
		    (unsigned long long) id);
		fail();
	}
	assert_string_equal(tb_event_topic(e), "tb.cancelled.default.noop");
	tb_event_free(e);

	// A second cancel finds it ended.
	TBH_RV(tb_cancel(f->c, id, NULL), TB_ESTATE);
	f->passed = true;
}

static void
test_cancel_done_task_is_wrong_state(void **state)
{
	tbh_fix *f = *state;
	tb_task *t;
	tb_id    id;

	tbh_fix_start(f, NULL);
	id = tbh_submit(f->c, "noop", NULL, 0, NULL);
	t  = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);
	TBH_RV(tb_cancel(f->c, id, NULL), TB_ESTATE);
	f->passed = true;
}

static void
test_unknown_id_is_not_found(void **state)
{
	tbh_fix *f = *state;
	tb_task *t = NULL;

	tbh_fix_start(f, NULL);
	TBH_RV(tb_status(f->c, 987654321, &t), TB_ENOTFOUND);
	assert_null(t);
	TBH_RV(tb_cancel(f->c, 987654321, NULL), TB_ENOTFOUND);
	TBH_RV(tb_wait(f->c, 987654321, 100, &t), TB_ENOTFOUND);
	tb_task_free(t);
	f->passed = true;
}

static void
test_wait_timeout_returns_timed_out_with_the_task(void **state)
{
	tbh_fix *f = *state;
	tb_task *t = NULL;
	size_t   len;
	void    *p = tbh_pack_ms(3000, &len);
	tb_id    id;
	int64_t  t0, took;

	tbh_fix_start(f, NULL);
	id = tbh_submit(f->c, "sleep", p, len, NULL);
	free(p);
	t0 = tbh_now_ms();
	TBH_RV(tb_wait(f->c, id, 200, &t), TB_ETIMEDOUT);
	took = tbh_now_ms() - t0;
	print_message("tb_wait(200 ms) on a 3 s sleep returned after %lld "
	              "ms\n",
	    (long long) took);
	assert_true(took >= 190);
	assert_true(took < 2500);
	assert_non_null(t);
	assert_int_equal(tb_task_id(t), id);
	assert_false(tb_state_is_final(tb_task_state(t)));
	tb_task_free(t);
	f->passed = true;
}

// timeout_ms cancels an attempt that runs too long; with one attempt the
// task ends dead with an error, long before the sleep would end.
static void
test_timeout_ms_ends_a_long_attempt(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_task       *t;
	size_t         len;
	void          *p = tbh_pack_ms(10000, &len);
	tb_id          id;
	int64_t        t0;

	tbh_fix_start(f, NULL);
	o.timeout_ms = 200;
	t0           = tbh_now_ms();
	id           = tbh_submit(f->c, "sleep", p, len, &o);
	free(p);
	t = tbh_wait_final(f->c, id, TBH_MS(5000));
	print_message("sleep 10 s with timeout_ms 200: %s after %lld ms, "
	              "error: %s\n",
	    tb_state_name(tb_task_state(t)), (long long) (tbh_now_ms() - t0),
	    tb_task_error(t) ? tb_task_error(t) : "(none)");
	tbh_expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 1);
	assert_non_null(tb_task_error(t));
	tb_task_free(t);
	f->passed = true;
}

// A task in a named queue reports it, and its events carry it in the topic.
static void
test_named_queue_shows_in_task_and_topics(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_event      *e;
	tb_task       *t;
	tb_id          id;

	tbh_fix_start(f, NULL);
	f->sub  = tbh_sub_open(&f->b, f->c, "tb.");
	o.queue = "mail";
	id      = tbh_submit(f->c, "noop", NULL, 0, &o);
	if ((e = tbh_sub_expect(f->sub, id, "done", EVENT_MS)) == NULL) {
		print_error("no done event for task %llu in queue mail\n",
		    (unsigned long long) id);
		fail();
	}
	assert_string_equal(tb_event_topic(e), "tb.done.mail.noop");
	assert_string_equal(tb_event_queue(e), "mail");
	tb_event_free(e);
	t = tbh_wait_final(f->c, id, WAIT_MS);
	assert_string_equal(tb_task_queue(t), "mail");
	tb_task_free(t);
	f->passed = true;
}

// The CLI (tbh_cli runs it with --broker and the broker's URL).

static void
test_cli_submit_exec_wait_prints_result(void **state)
{
	tbh_fix *f = *state;
	char    *out;

	tbh_fix_start(f, NULL);
	const char *const args[] = { "submit", "exec", "--wait", "--",
		"/bin/echo", "hi", NULL };
	out                      = tbh_cli_ok(&f->b, args);
	if (out == NULL || strstr(out, "hi") == NULL) {
		print_error("taskbroker submit exec --wait: stdout: %s\n",
		    out != NULL ? out : "(none)");
		free(out);
		fail();
	}
	free(out);
	f->passed = true;
}

static void
test_cli_status_json_prints_one_object(void **state)
{
	tbh_fix *f = *state;
	char    *out;
	char     idstr[32];
	json_t  *j;
	tb_task *t;
	tb_id    id;

	tbh_fix_start(f, NULL);
	id = tbh_submit(f->c, "fail", NULL, 0, NULL);
	t  = tbh_wait_final(f->c, id, WAIT_MS);
	tb_task_free(t);
	snprintf(idstr, sizeof(idstr), "%llu", (unsigned long long) id);
	const char *const args[] = { "status", "--json", idstr, NULL };
	out                      = tbh_cli_ok(&f->b, args);
	assert_non_null(out);
	// One object and nothing else (JSON_DISABLE_EOF_CHECK off).
	j = tbh_json_parse("status --json", out);
	assert_true(json_is_object(j));
	assert_true(json_is_integer(json_object_get(j, "id")));
	assert_int_equal(json_integer_value(json_object_get(j, "id")), id);
	assert_true(json_is_string(json_object_get(j, "state")));
	assert_string_equal(
	    json_string_value(json_object_get(j, "state")), "dead");
	assert_true(json_is_integer(json_object_get(j, "attempts")));
	assert_int_equal(
	    json_integer_value(json_object_get(j, "attempts")), 1);
	if (json_object_get(j, "result") == NULL) {
		print_error("status --json has no \"result\" key:\n%s\n", out);
		fail();
	}
	assert_true(json_is_string(json_object_get(j, "error")));
	assert_non_null(strstr(json_string_value(json_object_get(j, "error")),
	    "failed on purpose"));
	json_decref(j);
	free(out);
	f->passed = true;
}

static void
test_cli_ping_ok_exits_0(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "ping", NULL };

	tbh_fix_start(f, NULL);
	free(tbh_cli_ok(&f->b, args));
	f->passed = true;
}

static void
test_cli_ping_unreachable_exits_3(void **state)
{
	tbh_fix          *f       = *state;
	const char *const args[]  = { "ping", NULL };
	tbh_broker        nowhere = { 0 }; // only its URL, no process
	int64_t           t0      = tbh_now_ms();

	snprintf(nowhere.url, sizeof(nowhere.url), "%s",
	    "ipc:///nonexistent/x.sock");
	free(tbh_cli_expect(&nowhere, 3, args));
	print_message("unreachable ping took %lld ms\n",
	    (long long) (tbh_now_ms() - t0));
	f->passed = true;
}

static void
test_cli_unknown_command_exits_2(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "tbh-frobnicate", NULL };

	tbh_fix_start(f, NULL);
	free(tbh_cli_expect(&f->b, 2, args));
	f->passed = true;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, tbh_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_noop_ends_done_with_start_and_done_events),
		T(test_noop_with_empty_map_payload),
		T(test_sleep_ends_done_after_its_delay),
		T(test_fail_ends_dead_with_default_message),
		T(test_fail_ends_dead_with_given_message),
		T(test_block_ends_done_on_the_pool),
		T(test_block_with_one_worker_runs_one_at_a_time),
		T(test_exec_echo_ends_done_with_output),
		T(test_exec_false_ends_dead_with_error),
		T(test_exec_missing_program_ends_dead_with_error),
		T(test_unknown_handler_is_rejected),
		T(test_batch_with_unknown_handler_creates_nothing),
		T(test_batch_of_100_noop_gets_increasing_ids_and_all_end_done),
		T(test_event_seq_increases_by_one),
		T(test_fail_with_3_attempts_retries_then_ends_dead),
		T(test_cancel_pending_task_ends_cancelled),
		T(test_cancel_done_task_is_wrong_state),
		T(test_unknown_id_is_not_found),
		T(test_wait_timeout_returns_timed_out_with_the_task),
		T(test_timeout_ms_ends_a_long_attempt),
		T(test_named_queue_shows_in_task_and_topics),
		T(test_cli_submit_exec_wait_prints_result),
		T(test_cli_status_json_prints_one_object),
		T(test_cli_ping_ok_exits_0),
		T(test_cli_ping_unreachable_exits_3),
		T(test_cli_unknown_command_exits_2),
	};

	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
