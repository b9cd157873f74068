// test_lifecycle.c: the life of a task through the real broker and the
// client library: priority and FIFO order within a queue, delayed starts,
// attempts, backoff and retries, per-attempt timeouts (and the process
// group of an exec task), idempotency keys, attempts and crashes across
// kill -9 and graceful shutdown, cancel, and forever tasks. Each test
// starts its own broker.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define EVENT_MS TBH_MS(5000)
#define WAIT_MS TBH_MS(10000)

// kill9_restart kills the broker with SIGKILL and starts it again.
static void
kill9_restart(tbh_fix *f)
{
	bool resub = f->sub != NULL;

	tbh_log_note(&f->b, "=== test: kill -9 and restart ===");
	if (tbh_kill9(&f->b) != 0) {
		print_error("kill -9 of the broker failed\n");
		fail();
	}
	// The old subscription goes while no broker is up: closed after
	// the restart, it could leave in the middle of the new broker's
	// handshake, which with nng 1.5.2 stops that listener for good.
	tb_sub_close(f->sub);
	f->sub = NULL;
	if (tbh_restart(&f->b) != 0) {
		print_error("broker did not come back after kill -9\n");
		fail();
	}
	if (resub) {
		f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	}
}

// id_index returns the index of id in ids, or -1.
static int
id_index(const tb_id *ids, int n, tb_id id)
{
	for (int i = 0; i < n; i++) {
		if (ids[i] == id) {
			return (i);
		}
	}
	return (-1);
}

// start_order receives events until each of the n tasks ids has had a
// start event (or timeout_ms passes) and writes the indexes of ids in the
// order their first start events came to order. Returns how many started.
static int
start_order(tb_sub *s, const tb_id *ids, int n, int timeout_ms, int *order)
{
	int64_t deadline = tbh_now_ms() + timeout_ms;
	int     got      = 0;

	while (got < n) {
		tb_event *e    = NULL;
		int64_t   left = deadline - tbh_now_ms();
		int       i;

		if (left <= 0 || tb_sub_recv(s, (int) left, &e) != TB_OK) {
			break;
		}
		i = id_index(ids, n, tb_event_task_id(e));
		if (i >= 0 && strcmp(tb_event_name(e), "start") == 0) {
			bool seen = false;
			for (int k = 0; k < got; k++) {
				seen = seen || order[k] == i;
			}
			if (!seen) {
				order[got++] = i;
			}
		}
		tb_event_free(e);
	}
	return (got);
}

// count_events receives events for timeout_ms and counts those of task id
// named name (NULL: any). For absence checks and for counting.
static int
count_events(tb_sub *s, tb_id id, const char *name, int timeout_ms)
{
	int64_t deadline = tbh_now_ms() + timeout_ms;
	int     n        = 0;

	for (;;) {
		tb_event *e    = NULL;
		int64_t   left = deadline - tbh_now_ms();

		if (left <= 0 || tb_sub_recv(s, (int) left, &e) != TB_OK) {
			return (n);
		}
		if (tb_event_task_id(e) == id &&
		    (name == NULL || strcmp(tb_event_name(e), name) == 0)) {
			n++;
		}
		tb_event_free(e);
	}
}

static const char concurrency1_ini[] = "[queue q]\nconcurrency = 1\n";

// With concurrency 1, tasks queued while q was paused start by priority,
// highest first, and in submission order among equal priorities.
static void
test_priority_order_within_a_queue(void **state)
{
	tbh_fix      *f       = *state;
	const int32_t prio[6] = { 0, 5, 9, 5, 0, 9 };
	// Indexes by start: 9s (2, 5), 5s (1, 3), 0s (0, 4).
	const int      want[6] = { 2, 5, 1, 3, 0, 4 };
	tb_id          ids[6];
	int            order[6];
	int            got;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;

	tbh_fix_start_config(f, concurrency1_ini, NULL);
	f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	TBH_OK(tb_pause(f->c, "q"));
	o.queue = "q";
	for (int i = 0; i < 6; i++) {
		o.priority = prio[i];
		ids[i]     = tbh_submit(f->c, "noop", NULL, 0, &o);
	}
	TBH_OK(tb_resume(f->c, "q"));
	got = start_order(f->sub, ids, 6, EVENT_MS, order);
	for (int i = 0; i < got; i++) {
		print_message("start %d: task %llu priority %d\n", i,
		    (unsigned long long) ids[order[i]], prio[order[i]]);
	}
	assert_int_equal(got, 6);
	for (int i = 0; i < 6; i++) {
		if (order[i] != want[i]) {
			print_error(
			    "start %d was task %llu (priority %d), want "
			    "task %llu (priority %d)\n",
			    i, (unsigned long long) ids[order[i]],
			    prio[order[i]], (unsigned long long) ids[want[i]],
			    prio[want[i]]);
			fail();
		}
	}
	// The store agrees: started_at increases in the same order.
	for (int i = 0; i < 6; i++) {
		tb_task *t = tbh_wait_final(f->c, ids[want[i]], WAIT_MS);
		tbh_expect_state(t, TB_STATE_DONE);
		assert_int_equal(tb_task_priority(t), prio[want[i]]);
		tb_task_free(t);
	}
	for (int i = 1; i < 6; i++) {
		tb_task *a  = tbh_status(f->c, ids[want[i - 1]]);
		tb_task *b  = tbh_status(f->c, ids[want[i]]);
		bool     ok = tb_task_started_at(b) >= tb_task_finished_at(a);

		if (!ok) {
			print_error(
			    "task %llu started at %lld before task %llu "
			    "finished at %lld with concurrency 1\n",
			    (unsigned long long) tb_task_id(b),
			    (long long) tb_task_started_at(b),
			    (unsigned long long) tb_task_id(a),
			    (long long) tb_task_finished_at(a));
		}
		tb_task_free(a);
		tb_task_free(b);
		assert_true(ok);
	}
	f->passed = true;
}

static void
test_fifo_among_equal_priorities(void **state)
{
	tbh_fix       *f = *state;
	tb_id          ids[10];
	int            order[10];
	int            got;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;

	tbh_fix_start_config(f, concurrency1_ini, NULL);
	f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	TBH_OK(tb_pause(f->c, "q"));
	o.queue    = "q";
	o.priority = 3;
	for (int i = 0; i < 10; i++) {
		ids[i] = tbh_submit(f->c, "noop", NULL, 0, &o);
	}
	TBH_OK(tb_resume(f->c, "q"));
	got = start_order(f->sub, ids, 10, EVENT_MS, order);
	assert_int_equal(got, 10);
	for (int i = 0; i < 10; i++) {
		if (order[i] != i) {
			print_error(
			    "start %d was the task submitted %d-th "
			    "(id %llu); equal priorities must start in "
			    "submission order\n",
			    i, order[i], (unsigned long long) ids[order[i]]);
			fail();
		}
	}
	f->passed = true;
}

// check_held_until checks a task that may not start before not_before_us
// (Unix µs): pending now, still pending after a 500 ms wait (the absence
// under test), then done, started no earlier than not_before_us.
static void
check_held_until(tbh_fix *f, tb_id id, int64_t not_before_us)
{
	tb_task *t = tbh_status(f->c, id);
	int      rv;

	tbh_expect_state(t, TB_STATE_PENDING);
	assert_int_equal(tb_task_attempts(t), 0);
	if (tb_task_run_at(t) < not_before_us - 1000) {
		print_error("run_at %lld is before %lld\n",
		    (long long) tb_task_run_at(t), (long long) not_before_us);
		tb_task_free(t);
		fail();
	}
	tb_task_free(t);
	t  = NULL;
	rv = tb_wait(f->c, id, 500, &t);
	if (rv != TB_ETIMEDOUT) {
		print_error("delayed task %llu: tb_wait 500 ms returned %s, "
		            "want timed_out (it must not run yet)\n",
		    (unsigned long long) id, tb_errname(rv));
		tb_task_free(t);
		fail();
	}
	tbh_expect_state(t, TB_STATE_PENDING);
	assert_int_equal(tb_task_started_at(t), 0);
	tb_task_free(t);

	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	print_message("task %llu started %lld ms after its earliest start\n",
	    (unsigned long long) id,
	    (long long) (tb_task_started_at(t) - not_before_us) / 1000);
	// The broker's timer may fire a hair early; a millisecond is allowed.
	if (tb_task_started_at(t) < not_before_us - 1000) {
		print_error("task %llu started at %lld, %lld us before its "
		            "earliest start\n",
		    (unsigned long long) id, (long long) tb_task_started_at(t),
		    (long long) (not_before_us - tb_task_started_at(t)));
		tb_task_free(t);
		fail();
	}
	tb_task_free(t);
}

static void
test_delay_ms_holds_the_task_pending_until_due(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_task       *t;
	tb_id          id;

	tbh_fix_start(f, NULL);
	o.delay_ms = 1500;
	id         = tbh_submit(f->c, "noop", NULL, 0, &o);
	t          = tbh_status(f->c, id);
	// The delay counts from acceptance, which created_at records.
	int64_t due = tb_task_created_at(t) + 1500000;
	tb_task_free(t);
	check_held_until(f, id, due);
	f->passed = true;
}

static void
test_run_at_holds_the_task_pending_until_then(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_id          id;

	tbh_fix_start(f, NULL);
	o.run_at = tbh_wall_us() + 1500000;
	id       = tbh_submit(f->c, "noop", NULL, 0, &o);
	check_held_until(f, id, o.run_at);
	f->passed = true;
}

// A failing task is retried up to max_attempts with a backoff between
// attempts, publishes retry events, waits in state failed, and ends dead
// with the last attempt's error.
static void
test_max_attempts_with_backoff_ends_dead_with_last_error(void **state)
{
	const char *const args[]      = { "--retry-backoff", "400ms", NULL };
	tbh_fix          *f           = *state;
	tb_submit_opts    o           = TB_SUBMIT_OPTS_INIT;
	int64_t           start_us[4] = { 0 }, retry_us[4] = { 0 };
	int               nstart = 0, nretry = 0;
	bool              dead       = false;
	bool              saw_failed = false;
	size_t            len;
	void             *p = tbh_pack_message("boom 7", &len);
	int64_t           deadline;
	tb_task          *t;
	tb_id             id;

	tbh_fix_start(f, args);
	f->sub         = tbh_sub_open(&f->b, f->c, "tb.");
	o.max_attempts = 3;
	id             = tbh_submit(f->c, "fail", p, len, &o);
	free(p);
	deadline = tbh_now_ms() + TBH_MS(15000);
	while (!dead && tbh_now_ms() < deadline) {
		tb_event   *e = NULL;
		const char *name;

		if (tb_sub_recv(f->sub, (int) (deadline - tbh_now_ms()), &e) !=
		    TB_OK) {
			break;
		}
		if (tb_event_task_id(e) != id) {
			tb_event_free(e);
			continue;
		}
		name = tb_event_name(e);
		print_message("event %s attempt %u\n", tb_event_topic(e),
		    tb_event_attempt(e));
		if (strcmp(name, "start") == 0 && nstart < 4) {
			start_us[nstart++] = tb_event_time(e);
		} else if (strcmp(name, "retry") == 0 && nretry < 4) {
			retry_us[nretry++] = tb_event_time(e);
			if (nretry == 1) {
				// Between attempts it waits as failed.
				tb_task *w = tbh_status(f->c, id);
				saw_failed =
				    tb_task_state(w) == TB_STATE_FAILED &&
				    tb_task_attempts(w) == 1 &&
				    tb_task_run_at(w) > tb_event_time(e);
				if (!saw_failed) {
					print_error(
					    "after the first retry event "
					    "the task is %s, attempts %u, "
					    "run_at %lld\n",
					    tb_state_name(tb_task_state(w)),
					    tb_task_attempts(w),
					    (long long) tb_task_run_at(w));
				}
				tb_task_free(w);
			}
		} else if (strcmp(name, "dead") == 0) {
			dead = true;
			assert_int_equal(tb_event_attempt(e), 3);
			assert_non_null(tb_event_error(e));
			assert_non_null(strstr(tb_event_error(e), "boom 7"));
		}
		tb_event_free(e);
	}
	if (!dead || nstart != 3 || nretry != 2) {
		print_error("want 3 start, 2 retry events then dead; got %d "
		            "start, %d retry, dead %d\n",
		    nstart, nretry, dead);
		fail();
	}
	assert_true(saw_failed);
	// The backoff: 400 ms doubling, with jitter down to half of it.
	for (int i = 0; i < 2; i++) {
		int64_t gap = start_us[i + 1] - retry_us[i];
		int64_t min = (int64_t) 200000 << i;

		print_message(
		    "retry %d: next attempt %lld ms later (min %lld)\n", i + 1,
		    (long long) gap / 1000, (long long) min / 1000);
		if (gap < min - 5000) {
			print_error(
			    "attempt %d started %lld us after the retry "
			    "event; the backoff is at least %lld us\n",
			    i + 2, (long long) gap, (long long) min);
			fail();
		}
	}
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 3);
	assert_int_equal(tb_task_max_attempts(t), 3);
	assert_non_null(tb_task_error(t));
	assert_non_null(strstr(tb_task_error(t), "boom 7"));
	tb_task_free(t);
	f->passed = true;
}

// tb_retry puts a dead task back with its attempts reset: it runs
// max_attempts more times and ends dead again with attempts max_attempts.
static void
test_retry_by_id_reruns_a_dead_task_with_attempts_reset(void **state)
{
	const char *const args[] = { "--retry-backoff", "50ms", NULL };
	tbh_fix          *f      = *state;
	tb_submit_opts    o      = TB_SUBMIT_OPTS_INIT;
	tb_task          *t;
	tb_id             id, ok_id;
	int64_t           first_finish;
	int               starts;

	tbh_fix_start(f, args);
	f->sub         = tbh_sub_open(&f->b, f->c, "tb.");
	o.max_attempts = 2;
	id             = tbh_submit(f->c, "fail", NULL, 0, &o);
	t              = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 2);
	first_finish = tb_task_finished_at(t);
	tb_task_free(t);

	TBH_OK(tb_retry(f->c, id));
	// Two more attempts, numbered 1 and 2 again, then dead.
	starts = 0;
	for (int k = 1; k <= 2; k++) {
		tb_event *e = tbh_sub_expect(f->sub, id, "start", EVENT_MS);
		if (e == NULL) {
			print_error(
			    "after tb_retry: no start event %d for task "
			    "%llu\n",
			    k, (unsigned long long) id);
			fail();
		}
		if (tb_event_attempt(e) != (uint32_t) k) {
			print_error(
			    "after tb_retry: start event %d has attempt "
			    "%u, want %d (attempts reset)\n",
			    k, tb_event_attempt(e), k);
			tb_event_free(e);
			fail();
		}
		tb_event_free(e);
		starts++;
	}
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 2);
	assert_true(tb_task_finished_at(t) > first_finish);
	tb_task_free(t);
	assert_int_equal(starts, 2);

	// A done task cannot be retried; nor can an unknown one.
	ok_id = tbh_submit(f->c, "noop", NULL, 0, NULL);
	t     = tbh_wait_final(f->c, ok_id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);
	TBH_RV(tb_retry(f->c, ok_id), TB_ESTATE);
	TBH_RV(tb_retry(f->c, 987654321), TB_ENOTFOUND);
	f->passed = true;
}

// tb_retry of a dead task whose handler now succeeds ends it done: an exec
// task that fails while a file is missing, retried once the file exists.
static void
test_retry_by_id_of_a_dead_task_can_end_done(void **state)
{
	tbh_fix *f = *state;
	char     file[TBH_PATH], script[TBH_PATH + 16];
	size_t   len;
	void    *p;
	tb_task *t;
	FILE    *fp;
	tb_id    id;

	tbh_fix_start(f, NULL);
	snprintf(file, sizeof(file), "%s/retry-ok", f->b.dir);
	snprintf(script, sizeof(script), "test -e %s", file);
	const char *const argv[] = { "/bin/sh", "-c", script, NULL };
	p                        = tbh_pack_argv(argv, &len);
	id                       = tbh_submit(f->c, "exec", p, len, NULL);
	free(p);
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 1);
	assert_non_null(tb_task_error(t));
	tb_task_free(t);

	assert_non_null(fp = fopen(file, "w"));
	fclose(fp);
	TBH_OK(tb_retry(f->c, id));
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	assert_int_equal(tb_task_attempts(t), 1);
	assert_null(tb_task_error(t));
	tb_task_free(t);
	f->passed = true;
}

// tb_retry_queue retries the dead tasks of one queue only.
static void
test_retry_queue_requeues_only_that_queues_dead_tasks(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_id          dead_ids[3], other, done_id;
	int64_t        other_finish, done_finish;
	uint64_t       count = 0;
	tb_task       *t;

	tbh_fix_start(f, NULL);
	o.queue = "rq";
	for (int i = 0; i < 3; i++) {
		dead_ids[i] = tbh_submit(f->c, "fail", NULL, 0, &o);
	}
	done_id = tbh_submit(f->c, "noop", NULL, 0, &o);
	o.queue = "other";
	other   = tbh_submit(f->c, "fail", NULL, 0, &o);
	for (int i = 0; i < 3; i++) {
		t = tbh_wait_final(f->c, dead_ids[i], WAIT_MS);
		tbh_expect_state(t, TB_STATE_DEAD);
		tb_task_free(t);
	}
	t = tbh_wait_final(f->c, other, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DEAD);
	other_finish = tb_task_finished_at(t);
	tb_task_free(t);
	t = tbh_wait_final(f->c, done_id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	done_finish = tb_task_finished_at(t);
	tb_task_free(t);

	TBH_OK(tb_retry_queue(f->c, "rq", TB_STATE_DEAD, &count));
	if (count != 3) {
		print_error("tb_retry_queue(rq, dead) counted %llu, want 3\n",
		    (unsigned long long) count);
		fail();
	}
	for (int i = 0; i < 3; i++) {
		t = tbh_wait_final(f->c, dead_ids[i], WAIT_MS);
		tbh_expect_state(t, TB_STATE_DEAD);
		assert_int_equal(tb_task_attempts(t), 1);
		tb_task_free(t);
	}
	t = tbh_status(f->c, other);
	tbh_expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_finished_at(t), other_finish);
	tb_task_free(t);
	t = tbh_status(f->c, done_id);
	tbh_expect_state(t, TB_STATE_DONE);
	assert_int_equal(tb_task_finished_at(t), done_finish);
	tb_task_free(t);

	// Nothing dead is left in rq... until the retried ones died again;
	// a retry of an empty queue counts 0.
	TBH_OK(tb_retry_queue(f->c, "nosuchq", TB_STATE_DEAD, &count));
	assert_int_equal(count, 0);
	f->passed = true;
}

// A per-attempt timeout ends the attempt as timed out and counts as a
// failed attempt: with max_attempts 2 there are two timeout events, one
// retry, and the task ends dead.
static void
test_timeout_is_a_failed_attempt_and_is_retried(void **state)
{
	const char *const args[] = { "--retry-backoff", "50ms", NULL };
	tbh_fix          *f      = *state;
	tb_submit_opts    o      = TB_SUBMIT_OPTS_INIT;
	size_t            len;
	void             *p        = tbh_pack_ms(10000, &len);
	int               ntimeout = 0, nretry = 0, nstart = 0;
	bool              dead = false;
	int64_t           deadline, t0;
	tb_task          *t;
	tb_id             id;

	tbh_fix_start(f, args);
	f->sub         = tbh_sub_open(&f->b, f->c, "tb.");
	o.max_attempts = 2;
	o.timeout_ms   = 300;
	t0             = tbh_now_ms();
	id             = tbh_submit(f->c, "sleep", p, len, &o);
	free(p);
	deadline = tbh_now_ms() + TBH_MS(8000);
	while (!dead && tbh_now_ms() < deadline) {
		tb_event *e = NULL;

		if (tb_sub_recv(f->sub, (int) (deadline - tbh_now_ms()), &e) !=
		    TB_OK) {
			break;
		}
		if (tb_event_task_id(e) == id) {
			const char *name = tb_event_name(e);
			nstart += strcmp(name, "start") == 0;
			ntimeout += strcmp(name, "timeout") == 0;
			nretry += strcmp(name, "retry") == 0;
			dead = strcmp(name, "dead") == 0;
		}
		tb_event_free(e);
	}
	print_message("sleep 10 s, timeout 300 ms x2: %d start, %d timeout, "
	              "%d retry, dead %d after %lld ms\n",
	    nstart, ntimeout, nretry, dead, (long long) (tbh_now_ms() - t0));
	if (!dead || nstart != 2 || ntimeout != 2 || nretry != 1) {
		print_error(
		    "want 2 start, 2 timeout, 1 retry events and dead\n");
		fail();
	}
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 2);
	assert_int_equal(tb_task_timeout_ms(t), 300);
	assert_non_null(tb_task_error(t));
	if (strstr(tb_task_error(t), "timed out") == NULL) {
		print_error("error is \"%s\", want it to say timed out\n",
		    tb_task_error(t));
		tb_task_free(t);
		fail();
	}
	tb_task_free(t);
	f->passed = true;
}

// shell_argv_payload packs an exec payload running a shell that starts a
// background `sleep MARK` and a foreground one.
static void *
shell_argv_payload(const char *marker, size_t *lenp)
{
	static char script[256];

	snprintf(script, sizeof(script), "sleep %s & sleep %s; wait", marker,
	    marker);
	const char *const argv[] = { "/bin/sh", "-c", script, NULL };
	return (tbh_pack_argv(argv, lenp));
}

// An exec task that runs out of time is killed with its whole process
// group: a background child of its shell does not survive.
static void
test_exec_timeout_kills_the_process_group(void **state)
{
	const char *const args[] = { "--exec-kill-grace", "500ms", NULL };
	tbh_fix          *f      = *state;
	tb_submit_opts    o      = TB_SUBMIT_OPTS_INIT;
	char              marker[64];
	size_t            len;
	void             *p;
	int               n;
	tb_task          *t;
	tb_id             id;

	tbh_marker_make(marker, sizeof(marker));
	p = shell_argv_payload(marker, &len);
	tbh_fix_start(f, args);
	o.timeout_ms = 1500;
	id           = tbh_submit(f->c, "exec", p, len, &o);
	free(p);
	n = tbh_marker_wait(marker, 2, TBH_MS(1200));
	if (n < 2) {
		print_error("exec task %llu: %d processes with argument %s, "
		            "want 2 (the shell's two sleeps)\n",
		    (unsigned long long) id, n, marker);
		tbh_marker_kill(marker);
		fail();
	}
	t = tbh_wait_final(f->c, id, WAIT_MS);
	if (tb_task_state(t) != TB_STATE_DEAD || tb_task_error(t) == NULL ||
	    strstr(tb_task_error(t), "timed out") == NULL) {
		print_error(
		    "exec with timeout: task is %s, error %s; want dead, "
		    "timed out\n",
		    tb_state_name(tb_task_state(t)),
		    tb_task_error(t) ? tb_task_error(t) : "(none)");
		tb_task_free(t);
		tbh_marker_kill(marker);
		fail();
	}
	tb_task_free(t);
	n = tbh_marker_wait(marker, 0, TBH_MS(3000));
	if (n != 0) {
		print_error("after the exec task timed out, %d processes with "
		            "argument %s survive (the process group was not "
		            "killed)\n",
		    n, marker);
		tbh_marker_kill(marker);
		fail();
	}
	f->passed = true;
}

// The same key while the first task has not ended gives back its id, and
// the batch call flags it as existing; once it has ended the key makes a
// new task.
static void
test_idempotency_key_returns_the_unfinished_task(void **state)
{
	tbh_fix       *f  = *state;
	tb_submit_opts o  = TB_SUBMIT_OPTS_INIT;
	tb_submit_opts o2 = TB_SUBMIT_OPTS_INIT;
	tb_task_spec   specs[2];
	tb_id          id1, id2, ids[2] = { 0, 0 };
	uint32_t       flags[2] = { 99, 99 };
	size_t         n;
	tb_task       *t;

	tbh_fix_start(f, NULL);
	o.key      = "k1";
	o.delay_ms = 60000;
	o.queue    = "keys";
	id1        = tbh_submit(f->c, "noop", NULL, 0, &o);
	id2        = tbh_submit(f->c, "noop", NULL, 0, &o);
	assert_int_equal(id2, id1);
	t = tbh_status(f->c, id1);
	assert_non_null(tb_task_key(t));
	assert_string_equal(tb_task_key(t), "k1");
	tb_task_free(t);

	o2.key      = "k2";
	o2.queue    = "keys";
	o2.delay_ms = 60000;
	memset(specs, 0, sizeof(specs));
	specs[0].handler = "noop";
	specs[0].opts    = &o;
	specs[1].handler = "noop";
	specs[1].opts    = &o2;
	TBH_OK(tb_submit_batch_flags(f->c, specs, 2, ids, flags));
	assert_int_equal(ids[0], id1);
	assert_true((flags[0] & TB_SUBMIT_EXISTING) != 0);
	assert_true(ids[1] != id1 && ids[1] != 0);
	assert_true((flags[1] & TB_SUBMIT_EXISTING) == 0);
	TBH_OK(tbh_count_tasks(f->c, "keys", -1, &n));
	assert_int_equal(n, 2);

	// Ended (cancelled): the key is free again.
	TBH_OK(tb_cancel(f->c, id1, NULL));
	id2 = tbh_submit(f->c, "noop", NULL, 0, &o);
	assert_true(id2 != id1);
	TBH_OK(tbh_count_tasks(f->c, "keys", -1, &n));
	assert_int_equal(n, 3);

	// Ended done: the same.
	o.key      = "k3";
	o.delay_ms = 0;
	id1        = tbh_submit(f->c, "noop", NULL, 0, &o);
	t          = tbh_wait_final(f->c, id1, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);
	id2 = tbh_submit(f->c, "noop", NULL, 0, &o);
	assert_true(id2 != id1);
	f->passed = true;
}

// An idempotency key still holds after a restart (graceful and kill -9):
// the unfinished task is found again, not duplicated.
static void
test_idempotency_key_holds_across_restart(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_task_spec   spec;
	uint32_t       flags = 0;
	tb_id          id1, id2 = 0;
	size_t         n;

	tbh_fix_start(f, NULL);
	o.key      = "restart-key";
	o.delay_ms = 60000;
	o.queue    = "keys";
	id1        = tbh_submit(f->c, "noop", NULL, 0, &o);
	tbh_fix_restart(f);
	memset(&spec, 0, sizeof(spec));
	spec.handler = "noop";
	spec.opts    = &o;
	TBH_OK(tb_submit_batch_flags(f->c, &spec, 1, &id2, &flags));
	assert_int_equal(id2, id1);
	assert_true((flags & TB_SUBMIT_EXISTING) != 0);
	kill9_restart(f);
	id2 = tbh_submit(f->c, "noop", NULL, 0, &o);
	assert_int_equal(id2, id1);
	TBH_OK(tbh_count_tasks(f->c, "keys", -1, &n));
	assert_int_equal(n, 1);
	f->passed = true;
}

// An attempt is counted when it starts, before the handler runs, so an
// attempt the broker dies during is noticed at the next start: it is not
// spent (a crash is not a failure) but counted in crashes, and a broker
// killed during every attempt ends the task dead, quarantined, after
// max_crashes (here --max-crashes 2), never running it more often. The
// queue is paused before each kill, so that after the restart the task
// waits for the new subscription and each round is one attempt.
static void
test_attempts_counted_before_start_across_kill9(void **state)
{
	const char *const args[] = { "--max-crashes", "2", NULL };
	tbh_fix          *f      = *state;
	tb_submit_opts    o      = TB_SUBMIT_OPTS_INIT;
	size_t            len;
	void             *p = tbh_pack_ms(10000, &len);
	tb_task          *t;
	tb_event         *e;
	tb_id             id;

	tbh_fix_start(f, args);
	f->sub         = tbh_sub_open(&f->b, f->c, "tb.");
	o.max_attempts = 2;
	o.queue        = "lq";
	id             = tbh_submit(f->c, "sleep", p, len, &o);
	free(p);
	for (uint32_t k = 1; k <= 2; k++) {
		if ((e = tbh_sub_expect(f->sub, id, "start", WAIT_MS)) ==
		    NULL) {
			print_error("task %llu did not start (round %u)\n",
			    (unsigned long long) id, k);
			fail();
		}
		assert_int_equal(tb_event_crashes(e), k - 1);
		tb_event_free(e);
		t = tbh_status(f->c, id);
		print_message("round %u running: attempts %u, crashes %u\n", k,
		    tb_task_attempts(t), tb_task_crashes(t));
		if (tb_task_attempts(t) != 1 || tb_task_crashes(t) != k - 1) {
			tb_task_free(t);
			fail();
		}
		tb_task_free(t);
		TBH_OK(tb_pause(f->c, "lq"));
		kill9_restart(f);
		if (k < 2) {
			t = tbh_status(f->c, id);
			print_message("after kill -9: %s, attempts %u, "
			              "crashes %u\n",
			    tb_state_name(tb_task_state(t)),
			    tb_task_attempts(t), tb_task_crashes(t));
			tbh_expect_state(t, TB_STATE_PENDING);
			if (tb_task_attempts(t) != 0 ||
			    tb_task_crashes(t) != 1) {
				tb_task_free(t);
				fail();
			}
			tb_task_free(t);
			TBH_OK(tb_resume(f->c, "lq"));
		}
	}
	t = tbh_wait_final(f->c, id, WAIT_MS);
	print_message("after two kill -9: %s, attempts %u, crashes %u, "
	              "error %s\n",
	    tb_state_name(tb_task_state(t)), tb_task_attempts(t),
	    tb_task_crashes(t),
	    tb_task_error(t) ? tb_task_error(t) : "(none)");
	tbh_expect_state(t, TB_STATE_DEAD);
	if (tb_task_attempts(t) != 0 || tb_task_crashes(t) != 2 ||
	    tb_task_max_crashes(t) != 2 || tb_task_error(t) == NULL ||
	    strcmp(tb_task_error(t),
	        "quarantined: the broker stopped during 2 attempts of this "
	        "task (max-crashes 2); it may be what kills it") != 0) {
		tb_task_free(t);
		fail();
	}
	tb_task_free(t);
	f->passed = true;
}

// A graceful shutdown that interrupts an attempt gives it back: the task
// with max_attempts 1 runs again after the restart and ends done.
static void
test_graceful_shutdown_does_not_count_an_attempt(void **state)
{
	const char *const args[] = { "--shutdown-timeout", "0", NULL };
	tbh_fix          *f      = *state;
	tb_submit_opts    o      = TB_SUBMIT_OPTS_INIT;
	size_t            len;
	void             *p = tbh_pack_ms(1000, &len);
	tb_task          *t;
	tb_id             id;

	tbh_fix_start(f, args);
	o.max_attempts = 1;
	id             = tbh_submit(f->c, "sleep", p, len, &o);
	free(p);
	if (tbh_wait_state(f->c, id, TB_STATE_RUNNING, WAIT_MS) != 0) {
		print_error(
		    "task %llu did not start\n", (unsigned long long) id);
		fail();
	}
	tbh_fix_restart(f);
	t = tbh_wait_final(f->c, id, WAIT_MS);
	print_message("after a graceful restart: %s, attempts %u\n",
	    tb_state_name(tb_task_state(t)), tb_task_attempts(t));
	tbh_expect_state(t, TB_STATE_DONE);
	assert_int_equal(tb_task_attempts(t), 1);
	tb_task_free(t);
	f->passed = true;
}

// A pending delayed task cancelled ends cancelled with no attempt, stays
// so across a restart, and never runs.
static void
test_cancel_pending_delayed_task_survives_restart(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_task       *t = NULL;
	int64_t        deadline;
	tb_id          id;

	tbh_fix_start(f, NULL);
	o.delay_ms     = 1000;
	o.max_attempts = 3;
	id             = tbh_submit(f->c, "noop", NULL, 0, &o);
	TBH_OK(tb_cancel(f->c, id, &t));
	tbh_expect_state(t, TB_STATE_CANCELLED);
	assert_int_equal(tb_task_attempts(t), 0);
	tb_task_free(t);
	tbh_fix_restart(f);
	// Until past its due time (the absence under test) it stays
	// cancelled and never starts.
	deadline = tbh_now_ms() + 1300;
	do {
		t = tbh_status(f->c, id);
		tbh_expect_state(t, TB_STATE_CANCELLED);
		assert_int_equal(tb_task_attempts(t), 0);
		assert_int_equal(tb_task_started_at(t), 0);
		tb_task_free(t);
		tbh_sleep_ms(100);
	} while (tbh_now_ms() < deadline);
	f->passed = true;
}

// A running sleep task cancelled ends cancelled at once and is not retried
// even with attempts left.
static void
test_cancel_running_sleep_ends_cancelled_without_retry(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	size_t         len;
	void          *p = tbh_pack_ms(10000, &len);
	tb_task       *t = NULL;
	tb_event      *e;
	int64_t        t0;
	int            again;
	tb_id          id;

	tbh_fix_start(f, NULL);
	f->sub         = tbh_sub_open(&f->b, f->c, "tb.");
	o.max_attempts = 3;
	id             = tbh_submit(f->c, "sleep", p, len, &o);
	free(p);
	if ((e = tbh_sub_expect(f->sub, id, "start", EVENT_MS)) == NULL) {
		print_error(
		    "no start event for task %llu\n", (unsigned long long) id);
		fail();
	}
	tb_event_free(e);
	t0 = tbh_now_ms();
	TBH_OK(tb_cancel(f->c, id, &t));
	print_message("cancel of a running sleep returned after %lld ms\n",
	    (long long) (tbh_now_ms() - t0));
	tbh_expect_state(t, TB_STATE_CANCELLED);
	assert_int_equal(tb_task_attempts(t), 1);
	tb_task_free(t);
	assert_true(tbh_now_ms() - t0 < TBH_MS(3000));
	// No new attempt: no start or retry event for a second.
	again = count_events(f->sub, id, "start", TBH_MS(1000));
	if (again != 0) {
		print_error(
		    "the cancelled task started %d more times\n", again);
		fail();
	}
	t = tbh_status(f->c, id);
	tbh_expect_state(t, TB_STATE_CANCELLED);
	assert_int_equal(tb_task_attempts(t), 1);
	tb_task_free(t);
	f->passed = true;
}

// A running exec task cancelled ends cancelled and its processes go.
static void
test_cancel_running_exec_kills_its_processes(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	char           marker[64];
	size_t         len;
	void          *p;
	tb_task       *t = NULL;
	int            n;
	tb_id          id;

	tbh_marker_make(marker, sizeof(marker));
	p = shell_argv_payload(marker, &len);
	tbh_fix_start(f, NULL);
	o.max_attempts = 3;
	id             = tbh_submit(f->c, "exec", p, len, &o);
	free(p);
	if ((n = tbh_marker_wait(marker, 2, TBH_MS(5000))) < 2) {
		print_error(
		    "exec task: %d processes with argument %s, want 2\n", n,
		    marker);
		tbh_marker_kill(marker);
		fail();
	}
	TBH_OK(tb_cancel(f->c, id, &t));
	if (tb_task_state(t) != TB_STATE_CANCELLED) {
		print_error("cancelled exec task is %s\n",
		    tb_state_name(tb_task_state(t)));
		tb_task_free(t);
		tbh_marker_kill(marker);
		fail();
	}
	tb_task_free(t);
	n = tbh_marker_wait(marker, 0, TBH_MS(3000));
	if (n != 0) {
		print_error("after cancel, %d processes with argument %s "
		            "survive\n",
		    n, marker);
		tbh_marker_kill(marker);
		fail();
	}
	t = tbh_status(f->c, id);
	tbh_expect_state(t, TB_STATE_CANCELLED);
	assert_int_equal(tb_task_attempts(t), 1);
	tb_task_free(t);
	f->passed = true;
}

static const char *const quick_forever_args[] = { "--forever-backoff", "50ms",
	"--forever-backoff-max", "100ms", NULL };

// A forever task that ends is started again (restart events, attempts
// grow) until it is cancelled.
static void
test_forever_task_restarts_until_cancelled(void **state)
{
	tbh_fix       *f        = *state;
	tb_submit_opts o        = TB_SUBMIT_OPTS_INIT;
	int            restarts = 0, after;
	int64_t        deadline;
	tb_task       *t = NULL;
	tb_stats       st;
	tb_id          id;

	tbh_fix_start(f, quick_forever_args);
	f->sub    = tbh_sub_open(&f->b, f->c, "tb.");
	o.forever = 1;
	id        = tbh_submit(f->c, "noop", NULL, 0, &o);
	deadline  = tbh_now_ms() + TBH_MS(5000);
	while (restarts < 3 && tbh_now_ms() < deadline) {
		tb_event *e = tbh_sub_expect(
		    f->sub, id, "restart", (int) (deadline - tbh_now_ms()));
		if (e == NULL) {
			break;
		}
		tb_event_free(e);
		restarts++;
	}
	if (restarts < 3) {
		print_error("forever noop: %d restart events in 5 s, want 3\n",
		    restarts);
		fail();
	}
	t = tbh_status(f->c, id);
	assert_int_equal(tb_task_forever(t), 1);
	assert_false(tb_state_is_final(tb_task_state(t)));
	if (tb_task_attempts(t) < 3) {
		print_error("forever task after 3 restarts has attempts %u\n",
		    tb_task_attempts(t));
		tb_task_free(t);
		fail();
	}
	tb_task_free(t);
	TBH_OK(tb_stats_get(f->c, &st));
	assert_int_equal(st.forever, 1);

	t = NULL;
	TBH_OK(tb_cancel(f->c, id, &t));
	tbh_expect_state(t, TB_STATE_CANCELLED);
	tb_task_free(t);
	// Stopped for good: no start or restart for 700 ms.
	after = count_events(f->sub, id, NULL, TBH_MS(700));
	// The cancelled event itself may still be in flight.
	t = tbh_status(f->c, id);
	tbh_expect_state(t, TB_STATE_CANCELLED);
	tb_task_free(t);
	if (after > 1) {
		print_error(
		    "%d events for the forever task after cancel\n", after);
		fail();
	}
	TBH_OK(tb_stats_get(f->c, &st));
	assert_int_equal(st.forever, 0);
	f->passed = true;
}

// Quick restarts past --crashloop-restarts within the window mark the task
// as crash looping: an event, and the crashloop figure of stats and of its
// queue; cancel clears it.
static void
test_forever_crashloop_is_reported(void **state)
{
	const char *const args[] = { "--forever-backoff", "50ms",
		"--forever-backoff-max", "100ms", "--crashloop-restarts", "3",
		"--crashloop-window", "10s", NULL };
	const char *const argv[] = { "/bin/true", NULL };
	tbh_fix          *f      = *state;
	tb_submit_opts    o      = TB_SUBMIT_OPTS_INIT;
	tb_event         *e;
	tb_queue_info    *qs = NULL;
	size_t            nq = 0, len;
	void             *p  = tbh_pack_argv(argv, &len);
	tb_stats          st;
	tb_id             id;
	bool              found = false;

	tbh_fix_start(f, args);
	f->sub    = tbh_sub_open(&f->b, f->c, "tb.");
	o.forever = 1;
	o.queue   = "loopy";
	id        = tbh_submit(f->c, "exec", p, len, &o);
	free(p);
	if ((e = tbh_sub_expect(f->sub, id, "crashloop", TBH_MS(8000))) ==
	    NULL) {
		print_error("no crashloop event for a forever /bin/true\n");
		fail();
	}
	assert_string_equal(tb_event_topic(e), "tb.crashloop.loopy.exec");
	tb_event_free(e);
	TBH_OK(tb_stats_get(f->c, &st));
	assert_int_equal(st.crashloop, 1);
	assert_int_equal(st.forever, 1);
	TBH_OK(tb_queues(f->c, &qs, &nq));
	for (size_t i = 0; i < nq; i++) {
		if (strcmp(qs[i].name, "loopy") == 0) {
			found = true;
			assert_int_equal(qs[i].crashloop, 1);
			assert_int_equal(qs[i].forever, 1);
		}
	}
	tb_queues_free(qs, nq);
	assert_true(found);

	TBH_OK(tb_cancel(f->c, id, NULL));
	TBH_OK(tb_stats_get(f->c, &st));
	assert_int_equal(st.crashloop, 0);
	assert_int_equal(st.forever, 0);
	f->passed = true;
}

// A forever task stops at a graceful shutdown (the broker exits promptly)
// and runs again after the restart.
static void
test_forever_task_stops_at_shutdown_and_runs_after_restart(void **state)
{
	const char *const args[] = { "--shutdown-timeout", "0", NULL };
	tbh_fix          *f      = *state;
	tb_submit_opts    o      = TB_SUBMIT_OPTS_INIT;
	size_t            len;
	void             *p = tbh_pack_ms(60000, &len);
	tb_task          *t;
	tb_stats          st;
	int64_t           t0;
	tb_id             id;

	tbh_fix_start(f, args);
	o.forever = 1;
	id        = tbh_submit(f->c, "sleep", p, len, &o);
	free(p);
	if (tbh_wait_state(f->c, id, TB_STATE_RUNNING, WAIT_MS) != 0) {
		print_error("forever sleep did not start\n");
		fail();
	}
	t0 = tbh_now_ms();
	tbh_fix_restart(f);
	print_message("stop and restart with a running forever task: %lld "
	              "ms\n",
	    (long long) (tbh_now_ms() - t0));
	if (tbh_wait_state(f->c, id, TB_STATE_RUNNING, WAIT_MS) != 0) {
		print_error("forever sleep did not run again after restart\n");
		fail();
	}
	t = tbh_status(f->c, id);
	assert_int_equal(tb_task_forever(t), 1);
	tb_task_free(t);
	TBH_OK(tb_stats_get(f->c, &st));
	assert_int_equal(st.forever, 1);
	TBH_OK(tb_cancel(f->c, id, NULL));
	f->passed = true;
}

// After kill -9 a restarting forever task is picked up again.
static void
test_forever_task_runs_again_after_kill9(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_task       *t;
	tb_event      *e;
	uint32_t       before;
	tb_id          id;

	tbh_fix_start(f, quick_forever_args);
	f->sub    = tbh_sub_open(&f->b, f->c, "tb.");
	o.forever = 1;
	id        = tbh_submit(f->c, "noop", NULL, 0, &o);
	if ((e = tbh_sub_expect(f->sub, id, "restart", EVENT_MS)) == NULL) {
		print_error("no restart event for a forever noop\n");
		fail();
	}
	tb_event_free(e);
	kill9_restart(f);
	// The new broker restarts the task at once, possibly before the
	// subscription reconnects (its restart event is then lost): watch the
	// stored attempt count instead, from the first look after the start.
	t      = tbh_status(f->c, id);
	before = tb_task_attempts(t);
	tb_task_free(t);
	for (int64_t end = tbh_now_ms() + EVENT_MS;;) {
		t = tbh_status(f->c, id);
		if (tb_task_attempts(t) > before) {
			tb_task_free(t);
			break;
		}
		tb_task_free(t);
		if (tbh_now_ms() > end) {
			print_error("the forever noop did not run again after "
			            "kill -9\n");
			fail();
		}
		tbh_sleep_ms(10);
	}
	t = tbh_status(f->c, id);
	assert_true(tb_task_attempts(t) > before);
	assert_false(tb_state_is_final(tb_task_state(t)));
	tb_task_free(t);
	TBH_OK(tb_cancel(f->c, id, NULL));
	f->passed = true;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, tbh_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_priority_order_within_a_queue),
		T(test_fifo_among_equal_priorities),
		T(test_delay_ms_holds_the_task_pending_until_due),
		T(test_run_at_holds_the_task_pending_until_then),
		T(test_max_attempts_with_backoff_ends_dead_with_last_error),
		T(test_retry_by_id_reruns_a_dead_task_with_attempts_reset),
		T(test_retry_by_id_of_a_dead_task_can_end_done),
		T(test_retry_queue_requeues_only_that_queues_dead_tasks),
		T(test_timeout_is_a_failed_attempt_and_is_retried),
		T(test_exec_timeout_kills_the_process_group),
		T(test_idempotency_key_returns_the_unfinished_task),
		T(test_idempotency_key_holds_across_restart),
		T(test_attempts_counted_before_start_across_kill9),
		T(test_graceful_shutdown_does_not_count_an_attempt),
		T(test_cancel_pending_delayed_task_survives_restart),
		T(test_cancel_running_sleep_ends_cancelled_without_retry),
		T(test_cancel_running_exec_kills_its_processes),
		T(test_forever_task_restarts_until_cancelled),
		T(test_forever_crashloop_is_reported),
		T(test_forever_task_stops_at_shutdown_and_runs_after_restart),
		T(test_forever_task_runs_again_after_kill9),
	};

	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
