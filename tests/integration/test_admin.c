// test_admin.c: running a broker: pausing and resuming queues, concurrency
// limits, drain, purge, backpressure (queue_full), retention, listing with
// filters and paging, queue and broker figures, and the taskbroker CLI's
// admin commands. Each test starts its own broker.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness_json.h"

#define EVENT_MS TBH_MS(5000)
#define WAIT_MS TBH_MS(10000)

// queue_get fetches the figures of queue name into *qi (name not kept);
// false if the broker does not list it.
static bool
queue_get(tb_client *c, const char *name, tb_queue_info *qi)
{
	tb_queue_info *qs    = NULL;
	size_t         n     = 0;
	bool           found = false;

	TBH_OK(tb_queues(c, &qs, &n));
	for (size_t i = 0; i < n; i++) {
		if (strcmp(qs[i].name, name) == 0) {
			*qi      = qs[i];
			qi->name = NULL;
			found    = true;
		}
	}
	tb_queues_free(qs, n);
	return (found);
}

// starts_within counts start events of the tasks ids within ms: for
// absence checks.
static int
starts_within(tb_sub *s, const tb_id *ids, int n, int ms)
{
	int64_t deadline = tbh_now_ms() + ms;
	int     got      = 0;

	for (;;) {
		tb_event *e    = NULL;
		int64_t   left = deadline - tbh_now_ms();

		if (left <= 0 || tb_sub_recv(s, (int) left, &e) != TB_OK) {
			return (got);
		}
		for (int i = 0; i < n; i++) {
			if (tb_event_task_id(e) == ids[i] &&
			    strcmp(tb_event_name(e), "start") == 0) {
				got++;
			}
		}
		tb_event_free(e);
	}
}

// expect_pending checks every task of ids is still pending with no
// attempt.
static void
expect_pending(tb_client *c, const tb_id *ids, int n)
{
	for (int i = 0; i < n; i++) {
		tb_task *t = tbh_status(c, ids[i]);
		tbh_expect_state(t, TB_STATE_PENDING);
		assert_int_equal(tb_task_attempts(t), 0);
		tb_task_free(t);
	}
}

// A paused queue accepts tasks but starts none, stays paused across a
// restart, and runs them once resumed; other queues run meanwhile.
static void
test_paused_queue_accepts_starts_nothing_and_stays_paused(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_queue_info  qi;
	tb_id          ids[3], other;
	tb_task       *t;
	int            n;

	tbh_fix_start(f, NULL);
	f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	TBH_OK(tb_pause(f->c, "pq"));
	o.queue = "pq";
	for (int i = 0; i < 3; i++) {
		ids[i] = tbh_submit(f->c, "noop", NULL, 0, &o);
	}
	// Another queue is not affected.
	other = tbh_submit(f->c, "noop", NULL, 0, NULL);
	t     = tbh_wait_final(f->c, other, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);
	if ((n = starts_within(f->sub, ids, 3, TBH_MS(500))) != 0) {
		print_error("%d tasks of paused queue pq started\n", n);
		fail();
	}
	expect_pending(f->c, ids, 3);
	assert_true(queue_get(f->c, "pq", &qi));
	assert_int_equal(qi.paused, 1);
	assert_int_equal(qi.pending, 3);
	assert_int_equal(qi.running, 0);

	tbh_fix_restart(f);
	assert_true(queue_get(f->c, "pq", &qi));
	if (qi.paused != 1) {
		print_error("queue pq is not paused after a restart\n");
		fail();
	}
	if ((n = starts_within(f->sub, ids, 3, TBH_MS(500))) != 0) {
		print_error("%d tasks of paused queue pq started after a "
		            "restart\n",
		    n);
		fail();
	}
	expect_pending(f->c, ids, 3);

	// And across kill -9.
	tbh_log_note(&f->b, "=== test: kill -9 and restart ===");
	if (tbh_kill9(&f->b) != 0) {
		print_error("kill -9 failed\n");
		fail();
	}
	// Closed while no broker is up (see kill9_restart in
	// test_lifecycle.c: after the restart the close could wedge the new
	// broker's listener, nng 1.5.2).
	tb_sub_close(f->sub);
	f->sub = NULL;
	if (tbh_restart(&f->b) != 0) {
		print_error("restart after kill -9 failed\n");
		fail();
	}
	f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	assert_true(queue_get(f->c, "pq", &qi));
	assert_int_equal(qi.paused, 1);
	if ((n = starts_within(f->sub, ids, 3, TBH_MS(300))) != 0) {
		print_error("%d tasks of paused queue pq started after kill "
		            "-9\n",
		    n);
		fail();
	}
	expect_pending(f->c, ids, 3);

	TBH_OK(tb_resume(f->c, "pq"));
	for (int i = 0; i < 3; i++) {
		t = tbh_wait_final(f->c, ids[i], WAIT_MS);
		tbh_expect_state(t, TB_STATE_DONE);
		tb_task_free(t);
	}
	assert_true(queue_get(f->c, "pq", &qi));
	assert_int_equal(qi.paused, 0);
	assert_int_equal(qi.done, 3);
	f->passed = true;
}

// max_overlap returns the largest number of [started_at, finished_at)
// intervals of ts that overlap at one instant.
static int
max_overlap(tb_task **ts, int n)
{
	int best = 0;

	for (int i = 0; i < n; i++) {
		int64_t at = tb_task_started_at(ts[i]);
		int     k  = 0;

		for (int j = 0; j < n; j++) {
			if (tb_task_started_at(ts[j]) <= at &&
			    at < tb_task_finished_at(ts[j])) {
				k++;
			}
		}
		if (k > best) {
			best = k;
		}
	}
	return (best);
}

// [queue cq] concurrency = 2: at most two of its tasks run at once,
// whether seen through tb_queues while they run or through the tasks'
// start and finish times.
static void
test_queue_concurrency_2_from_config(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_task       *ts[6];
	tb_id          ids[6];
	tb_queue_info  qi;
	uint64_t       max_running = 0;
	int64_t        deadline;
	size_t         len;
	void          *p = tbh_pack_ms(300, &len);
	int            overlap;

	tbh_fix_start_config(f, "[queue cq]\nconcurrency = 2\n", NULL);
	o.queue = "cq";
	for (int i = 0; i < 6; i++) {
		ids[i] = tbh_submit(f->c, "sleep", p, len, &o);
	}
	free(p);
	deadline = tbh_now_ms() + WAIT_MS;
	for (;;) {
		assert_true(queue_get(f->c, "cq", &qi));
		assert_int_equal(qi.concurrency, 2);
		if (qi.running > max_running) {
			max_running = qi.running;
		}
		if (qi.done == 6 || tbh_now_ms() > deadline) {
			break;
		}
		tbh_sleep_ms(20);
	}
	for (int i = 0; i < 6; i++) {
		ts[i] = tbh_wait_final(f->c, ids[i], WAIT_MS);
		tbh_expect_state(ts[i], TB_STATE_DONE);
	}
	overlap = max_overlap(ts, 6);
	for (int i = 0; i < 6; i++) {
		tb_task_free(ts[i]);
	}
	print_message("concurrency 2: tb_queues running at most %llu, task "
	              "intervals overlap at most %d\n",
	    (unsigned long long) max_running, overlap);
	assert_true(max_running <= 2);
	assert_int_equal(overlap, 2);
	f->passed = true;
}

// tb_drain returns TB_ETIMEDOUT while tasks are left, TB_OK once the queue
// has nothing pending or running; a paused queue with tasks never drains.
static void
test_drain_waits_for_the_queue_and_times_out(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_id          ids[3];
	size_t         len;
	void          *p = tbh_pack_ms(400, &len);
	int64_t        t0;

	tbh_fix_start(f, NULL);
	o.queue = "dq";
	for (int i = 0; i < 3; i++) {
		ids[i] = tbh_submit(f->c, "sleep", p, len, &o);
	}
	free(p);
	t0 = tbh_now_ms();
	TBH_RV(tb_drain(f->c, "dq", 100), TB_ETIMEDOUT);
	assert_true(tbh_now_ms() - t0 >= 90);
	TBH_OK(tb_drain(f->c, "dq", WAIT_MS));
	for (int i = 0; i < 3; i++) {
		tb_task *t = tbh_status(f->c, ids[i]);
		tbh_expect_state(t, TB_STATE_DONE);
		tb_task_free(t);
	}
	// An empty queue drains at once.
	TBH_OK(tb_drain(f->c, "dq", 1000));

	TBH_OK(tb_pause(f->c, "dq"));
	tbh_submit(f->c, "noop", NULL, 0, &o);
	TBH_RV(tb_drain(f->c, "dq", 300), TB_ETIMEDOUT);
	TBH_OK(tb_resume(f->c, "dq"));
	TBH_OK(tb_drain(f->c, "dq", WAIT_MS));
	f->passed = true;
}

// tb_purge of pending tasks of a paused queue deletes them (and nothing
// else).
static void
test_purge_pending_tasks_of_a_paused_queue(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_id          ids[4], keep;
	uint64_t       n = 99;
	tb_task       *t = NULL;

	tbh_fix_start(f, NULL);
	TBH_OK(tb_pause(f->c, "xq"));
	TBH_OK(tb_pause(f->c, "keepq"));
	o.queue = "xq";
	for (int i = 0; i < 4; i++) {
		ids[i] = tbh_submit(f->c, "noop", NULL, 0, &o);
	}
	o.queue = "keepq";
	keep    = tbh_submit(f->c, "noop", NULL, 0, &o);
	TBH_OK(tb_purge(f->c, "xq", TB_STATE_PENDING, 0, &n));
	assert_int_equal(n, 4);
	for (int i = 0; i < 4; i++) {
		TBH_RV(tb_status(f->c, ids[i], &t), TB_ENOTFOUND);
		assert_null(t);
	}
	assert_int_equal(tbh_count(f->c, "xq", -1), 0);
	t = tbh_status(f->c, keep);
	tbh_expect_state(t, TB_STATE_PENDING);
	tb_task_free(t);
	// Running and failed are not states purge takes.
	TBH_RV(tb_purge(f->c, NULL, TB_STATE_RUNNING, 0, &n), TB_EINVAL);
	f->passed = true;
}

// tb_purge with min_age_ms deletes only the dead tasks at least that old.
static void
test_purge_dead_tasks_by_age(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_id          old_id, young_id;
	uint64_t       n = 99;
	tb_task       *t = NULL;
	int64_t        old_created;

	tbh_fix_start(f, NULL);
	o.queue = "fq";
	old_id  = tbh_submit(f->c, "fail", NULL, 0, &o);
	t       = tbh_wait_final(f->c, old_id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DEAD);
	old_created = tb_task_created_at(t);
	tb_task_free(t);
	// Too young for a minute's age.
	TBH_OK(tb_purge(f->c, "fq", TB_STATE_DEAD, 60000, &n));
	assert_int_equal(n, 0);
	// Let the first one age past 800 ms (the passing time is what this
	// test is about).
	while (tbh_wall_us() < old_created + 800000) {
		tbh_sleep_ms(20);
	}
	young_id = tbh_submit(f->c, "fail", NULL, 0, &o);
	t        = tbh_wait_final(f->c, young_id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DEAD);
	tb_task_free(t);
	TBH_OK(tb_purge(f->c, "fq", TB_STATE_DEAD, 600, &n));
	assert_int_equal(n, 1);
	t = NULL;
	TBH_RV(tb_status(f->c, old_id, &t), TB_ENOTFOUND);
	t = tbh_status(f->c, young_id);
	tbh_expect_state(t, TB_STATE_DEAD);
	tb_task_free(t);
	f->passed = true;
}

// --queue-max-pending 5: the 6th pending task of a queue is refused with
// TB_EQUEUEFULL, a batch that would overflow creates nothing, other queues
// still accept.
static void
test_queue_max_pending_refuses_the_6th(void **state)
{
	const char *const args[] = { "--queue-max-pending", "5", NULL };
	tbh_fix          *f      = *state;
	tb_submit_opts    o      = TB_SUBMIT_OPTS_INIT;
	tb_task_spec      specs[2];
	tb_id             ids[2], id;
	tb_queue_info     qi;

	tbh_fix_start(f, args);
	TBH_OK(tb_pause(f->c, "bq"));
	TBH_OK(tb_pause(f->c, "bq2"));
	o.queue = "bq";
	for (int i = 0; i < 5; i++) {
		tbh_submit(f->c, "noop", NULL, 0, &o);
	}
	TBH_RV(tb_submit(f->c, "noop", NULL, 0, &o, &id), TB_EQUEUEFULL);
	assert_int_equal(tbh_count(f->c, "bq", -1), 5);

	o.queue = "bq2";
	for (int i = 0; i < 4; i++) {
		tbh_submit(f->c, "noop", NULL, 0, &o);
	}
	memset(specs, 0, sizeof(specs));
	specs[0].handler = "noop";
	specs[0].opts    = &o;
	specs[1]         = specs[0];
	TBH_RV(tb_submit_batch(f->c, specs, 2, ids), TB_EQUEUEFULL);
	assert_int_equal(tbh_count(f->c, "bq2", -1), 4);
	// One more fits.
	TBH_OK(tb_submit_batch(f->c, specs, 1, ids));
	assert_int_equal(tbh_count(f->c, "bq2", -1), 5);

	// Another queue accepts.
	id = tbh_submit(f->c, "noop", NULL, 0, NULL);
	tb_task_free(tbh_wait_final(f->c, id, WAIT_MS));
	assert_true(queue_get(f->c, "bq", &qi));
	assert_int_equal(qi.max_pending, 5);
	assert_int_equal(qi.pending, 5);

	// Once some run, there is room again.
	TBH_OK(tb_resume(f->c, "bq"));
	TBH_OK(tb_drain(f->c, "bq", WAIT_MS));
	o.queue = "bq";
	TBH_OK(tb_submit(f->c, "noop", NULL, 0, &o, &id));
	f->passed = true;
}

// max-pending of a [queue] section limits that queue only.
static void
test_queue_max_pending_from_config(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_id          id;

	tbh_fix_start_config(f, "[queue small]\nmax-pending = 2\n", NULL);
	TBH_OK(tb_pause(f->c, "small"));
	TBH_OK(tb_pause(f->c, "big"));
	o.queue = "small";
	tbh_submit(f->c, "noop", NULL, 0, &o);
	tbh_submit(f->c, "noop", NULL, 0, &o);
	TBH_RV(tb_submit(f->c, "noop", NULL, 0, &o, &id), TB_EQUEUEFULL);
	o.queue = "big";
	for (int i = 0; i < 5; i++) {
		tbh_submit(f->c, "noop", NULL, 0, &o);
	}
	assert_int_equal(tbh_count(f->c, "small", -1), 2);
	assert_int_equal(tbh_count(f->c, "big", -1), 5);
	f->passed = true;
}

// --max-pending counts the pending tasks of all queues together.
static void
test_global_max_pending_counts_all_queues(void **state)
{
	const char *const args[] = { "--max-pending", "4", NULL };
	tbh_fix          *f      = *state;
	tb_submit_opts    o      = TB_SUBMIT_OPTS_INIT;
	tb_task_spec      spec;
	tb_id             id;

	tbh_fix_start(f, args);
	TBH_OK(tb_pause(f->c, "g1"));
	TBH_OK(tb_pause(f->c, "g2"));
	o.queue = "g1";
	tbh_submit(f->c, "noop", NULL, 0, &o);
	tbh_submit(f->c, "noop", NULL, 0, &o);
	o.queue = "g2";
	tbh_submit(f->c, "noop", NULL, 0, &o);
	tbh_submit(f->c, "noop", NULL, 0, &o);
	TBH_RV(tb_submit(f->c, "noop", NULL, 0, &o, &id), TB_EQUEUEFULL);
	o.queue = "g3";
	TBH_RV(tb_submit(f->c, "noop", NULL, 0, &o, &id), TB_EQUEUEFULL);
	memset(&spec, 0, sizeof(spec));
	spec.handler = "noop";
	TBH_RV(tb_submit_batch(f->c, &spec, 1, &id), TB_EQUEUEFULL);
	assert_int_equal(tbh_count(f->c, NULL, -1), 4);
	f->passed = true;
}

// --retention 1s: an ended task is pruned within seconds; a pending one
// is kept.
static void
test_retention_prunes_ended_tasks(void **state)
{
	const char *const args[] = { "--retention", "1s", NULL };
	tbh_fix          *f      = *state;
	tb_submit_opts    o      = TB_SUBMIT_OPTS_INIT;
	tb_task          *t;
	tb_id             done_id, pending_id;
	int64_t           t0, deadline;
	int               rv = TB_OK;

	tbh_fix_start(f, args);
	o.delay_ms = 60000;
	pending_id = tbh_submit(f->c, "noop", NULL, 0, &o);
	done_id    = tbh_submit(f->c, "noop", NULL, 0, NULL);
	t          = tbh_wait_final(f->c, done_id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);
	t0       = tbh_now_ms();
	deadline = t0 + TBH_MS(8000);
	while (tbh_now_ms() < deadline) {
		t  = NULL;
		rv = tb_status(f->c, done_id, &t);
		tb_task_free(t);
		if (rv != TB_OK) {
			break;
		}
		tbh_sleep_ms(100);
	}
	print_message("done task pruned after %lld ms (retention 1 s): %s\n",
	    (long long) (tbh_now_ms() - t0), tb_errname(rv));
	if (rv != TB_ENOTFOUND) {
		print_error("with --retention 1s a done task was still there "
		            "(%s) after 8 s\n",
		    tb_errname(rv));
		fail();
	}
	t = tbh_status(f->c, pending_id);
	tbh_expect_state(t, TB_STATE_PENDING);
	tb_task_free(t);
	f->passed = true;
}

// list_ids lists with o (paging through everything) into ids (the first
// max); returns how many tasks o selects.
static int
list_ids(tb_client *c, tb_list_opts o, tb_id *ids, int max)
{
	tb_task **ts = NULL;
	size_t    n  = 0;

	TBH_OK(tbh_list_every(c, o, &ts, &n));
	for (size_t i = 0; i < n && i < (size_t) max; i++) {
		ids[i] = tb_task_id(ts[i]);
	}
	tb_task_list_free(ts, n);
	return ((int) n);
}

static bool
has_id(const tb_id *ids, int n, tb_id id)
{
	for (int i = 0; i < n; i++) {
		if (ids[i] == id) {
			return (true);
		}
	}
	return (false);
}

// tb_list filters by queue, state, handler and age, and pages with
// after_id in id order.
static void
test_list_filters_and_paging(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_list_opts   lo;
	tb_id          la[3], lb_dead[2], lb_pend, late[2];
	tb_id          got[64], all[64];
	int            n, nall;
	int64_t        mark;
	tb_task       *t;

	tbh_fix_start(f, NULL);
	o.queue = "la";
	for (int i = 0; i < 3; i++) {
		la[i] = tbh_submit(f->c, "noop", NULL, 0, &o);
	}
	o.queue = "lb";
	for (int i = 0; i < 2; i++) {
		lb_dead[i] = tbh_submit(f->c, "fail", NULL, 0, &o);
	}
	o.delay_ms = 60000;
	lb_pend    = tbh_submit(f->c, "sleep", NULL, 0, &o);
	o.delay_ms = 0;
	for (int i = 0; i < 3; i++) {
		tb_task_free(tbh_wait_final(f->c, la[i], WAIT_MS));
	}
	for (int i = 0; i < 2; i++) {
		tb_task_free(tbh_wait_final(f->c, lb_dead[i], WAIT_MS));
	}

	lo       = (tb_list_opts) TB_LIST_OPTS_INIT;
	lo.queue = "la";
	n        = list_ids(f->c, lo, got, 64);
	assert_int_equal(n, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(got[i], la[i]);
	}

	lo       = (tb_list_opts) TB_LIST_OPTS_INIT;
	lo.state = TB_STATE_DEAD;
	n        = list_ids(f->c, lo, got, 64);
	assert_int_equal(n, 2);
	assert_true(has_id(got, n, lb_dead[0]) && has_id(got, n, lb_dead[1]));

	lo         = (tb_list_opts) TB_LIST_OPTS_INIT;
	lo.handler = "fail";
	n          = list_ids(f->c, lo, got, 64);
	assert_int_equal(n, 2);

	lo       = (tb_list_opts) TB_LIST_OPTS_INIT;
	lo.queue = "lb";
	lo.state = TB_STATE_PENDING;
	n        = list_ids(f->c, lo, got, 64);
	assert_int_equal(n, 1);
	assert_int_equal(got[0], lb_pend);

	lo         = (tb_list_opts) TB_LIST_OPTS_INIT;
	lo.queue   = "la";
	lo.handler = "fail";
	assert_int_equal(list_ids(f->c, lo, got, 64), 0);

	// Age: two more tasks at least 700 ms after the first six.
	t    = tbh_status(f->c, lb_pend);
	mark = tb_task_created_at(t);
	tb_task_free(t);
	while (tbh_wall_us() < mark + 700000) {
		tbh_sleep_ms(20);
	}
	o.queue = "lc";
	for (int i = 0; i < 2; i++) {
		late[i] = tbh_submit(f->c, "noop", NULL, 0, &o);
	}
	lo            = (tb_list_opts) TB_LIST_OPTS_INIT;
	lo.min_age_ms = 500;
	n             = list_ids(f->c, lo, got, 64);
	assert_int_equal(n, 6);
	assert_false(has_id(got, n, late[0]) || has_id(got, n, late[1]));
	lo            = (tb_list_opts) TB_LIST_OPTS_INIT;
	lo.max_age_ms = 500;
	n             = list_ids(f->c, lo, got, 64);
	assert_int_equal(n, 2);
	assert_true(has_id(got, n, late[0]) && has_id(got, n, late[1]));

	// Paging by two gives every task once, in id order.
	lo   = (tb_list_opts) TB_LIST_OPTS_INIT;
	nall = list_ids(f->c, lo, all, 64);
	assert_int_equal(nall, 8);
	lo       = (tb_list_opts) TB_LIST_OPTS_INIT;
	lo.limit = 2;
	n        = 0;
	for (int pages = 0; pages < 10; pages++) {
		tb_task **ts = NULL;
		size_t    k  = 0;

		TBH_OK(tb_list(f->c, &lo, &ts, &k));
		assert_true(k <= 2);
		for (size_t i = 0; i < k && n < 64; i++) {
			got[n++] = tb_task_id(ts[i]);
		}
		if (k > 0) {
			lo.after_id = tb_task_id(ts[k - 1]);
		}
		tb_task_list_free(ts, k);
		if (k == 0) {
			break;
		}
	}
	assert_int_equal(n, nall);
	for (int i = 0; i < n; i++) {
		assert_int_equal(got[i], all[i]);
		if (i > 0) {
			assert_true(got[i] > got[i - 1]);
		}
	}
	f->passed = true;
}

// tb_queues reports pending, running and done counts, the paused flag,
// done_last_min, and an oldest_pending_ms that grows.
static void
test_queues_figures(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_queue_info  qi;
	tb_id          id, run_id;
	size_t         len;
	void          *p = tbh_pack_ms(10000, &len);
	uint64_t       age1;
	int64_t        t1;

	tbh_fix_start(f, NULL);
	o.queue = "fd";
	for (int i = 0; i < 2; i++) {
		id = tbh_submit(f->c, "noop", NULL, 0, &o);
		tb_task_free(tbh_wait_final(f->c, id, WAIT_MS));
	}
	assert_true(queue_get(f->c, "fd", &qi));
	assert_int_equal(qi.done, 2);
	assert_int_equal(qi.pending, 0);
	assert_int_equal(qi.paused, 0);
	if (qi.done_last_min < 2) {
		print_error("queue fd: done_last_min %llu after 2 done\n",
		    (unsigned long long) qi.done_last_min);
		fail();
	}

	o.queue = "fr";
	run_id  = tbh_submit(f->c, "sleep", p, len, &o);
	free(p);
	if (tbh_wait_state(f->c, run_id, TB_STATE_RUNNING, WAIT_MS) != 0) {
		print_error("sleep task did not start\n");
		fail();
	}
	assert_true(queue_get(f->c, "fr", &qi));
	assert_int_equal(qi.running, 1);

	TBH_OK(tb_pause(f->c, "fp"));
	o.queue = "fp";
	tbh_submit(f->c, "noop", NULL, 0, &o);
	tbh_submit(f->c, "noop", NULL, 0, &o);
	assert_true(queue_get(f->c, "fp", &qi));
	assert_int_equal(qi.pending, 2);
	assert_int_equal(qi.paused, 1);
	age1 = qi.oldest_pending_ms;
	t1   = tbh_now_ms();
	while (tbh_now_ms() < t1 + 400) {
		tbh_sleep_ms(20);
	}
	assert_true(queue_get(f->c, "fp", &qi));
	print_message("oldest_pending_ms %llu then %llu 400 ms later\n",
	    (unsigned long long) age1,
	    (unsigned long long) qi.oldest_pending_ms);
	if (qi.oldest_pending_ms < age1 + 350) {
		print_error("oldest_pending_ms went from %llu to %llu in 400 "
		            "ms\n",
		    (unsigned long long) age1,
		    (unsigned long long) qi.oldest_pending_ms);
		fail();
	}
	TBH_OK(tb_cancel(f->c, run_id, NULL));
	f->passed = true;
}

// tb_stats counts schedules defined and forever tasks not ended.
static void
test_stats_count_schedules_and_forever_tasks(void **state)
{
	tbh_fix         *f  = *state;
	tb_submit_opts   o  = TB_SUBMIT_OPTS_INIT;
	tb_schedule_spec sp = TB_SCHEDULE_SPEC_INIT;
	tb_stats         st;
	size_t           len;
	void            *p = tbh_pack_ms(60000, &len);
	tb_id            id;

	tbh_fix_start(f, NULL);
	TBH_OK(tb_stats_get(f->c, &st));
	assert_int_equal(st.schedules, 0);
	assert_int_equal(st.forever, 0);
	sp.name     = "hourly";
	sp.handler  = "noop";
	sp.every_ms = 3600000;
	TBH_OK(tb_schedule_add(f->c, &sp));
	sp.name = "hourly2";
	TBH_OK(tb_schedule_add(f->c, &sp));
	o.forever = 1;
	id        = tbh_submit(f->c, "sleep", p, len, &o);
	free(p);
	TBH_OK(tb_stats_get(f->c, &st));
	assert_int_equal(st.schedules, 2);
	assert_int_equal(st.forever, 1);
	TBH_OK(tb_cancel(f->c, id, NULL));
	TBH_OK(tb_schedule_rm(f->c, "hourly"));
	TBH_OK(tb_stats_get(f->c, &st));
	assert_int_equal(st.schedules, 1);
	assert_int_equal(st.forever, 0);
	f->passed = true;
}

// The CLI.

// expect_time checks that key of o is a number of Unix seconds that
// matches us (Unix µs) to the millisecond and has a fraction.
static void
expect_time(json_t *o, const char *key, int64_t us)
{
	json_t *v = json_object_get(o, key);
	double  s;

	if (v == NULL || !json_is_number(v)) {
		print_error(
		    "status --json: \"%s\" is missing or not a number\n", key);
		fail();
	}
	s = json_number_value(v);
	if (s < us / 1e6 - 0.001 || s > us / 1e6 + 0.001) {
		print_error("status --json: \"%s\" is %.6f, the task says "
		            "%.6f\n",
		    key, s, us / 1e6);
		fail();
	}
	if (!json_is_real(v)) {
		print_error("status --json: \"%s\" is an integer (%.0f); want "
		            "seconds with a fraction\n",
		    key, s);
		fail();
	}
}

static void
test_cli_status_json_has_every_field(void **state)
{
	tbh_fix                 *f = *state;
	tb_submit_opts           o = TB_SUBMIT_OPTS_INIT;
	char                     idstr[32];
	char                    *out;
	json_t                  *j;
	tb_task                 *t;
	tb_id                    id;
	static const char *const keys[] = { "id", "state", "attempts",
		"max_attempts", "crashes", "max_crashes", "queue", "handler",
		"priority", "error", "result", "created_at", "started_at",
		"finished_at", NULL };

	tbh_fix_start(f, NULL);
	o.queue        = "cliq";
	o.priority     = 4;
	o.max_attempts = 2;
	id             = tbh_submit(f->c, "noop", NULL, 0, &o);
	t              = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	snprintf(idstr, sizeof(idstr), "%llu", (unsigned long long) id);
	const char *const args[] = { "status", "--json", idstr, NULL };
	out                      = tbh_cli_ok(&f->b, args);
	j                        = tbh_json_parse("status --json", out);
	free(out);
	assert_true(json_is_object(j));
	for (int i = 0; keys[i] != NULL; i++) {
		if (json_object_get(j, keys[i]) == NULL) {
			print_error("status --json has no \"%s\"\n", keys[i]);
			json_decref(j);
			tb_task_free(t);
			fail();
		}
	}
	assert_int_equal(json_integer_value(json_object_get(j, "id")), id);
	assert_string_equal(
	    json_string_value(json_object_get(j, "state")), "done");
	assert_int_equal(
	    json_integer_value(json_object_get(j, "attempts")), 1);
	assert_int_equal(
	    json_integer_value(json_object_get(j, "max_attempts")), 2);
	assert_int_equal(json_integer_value(json_object_get(j, "crashes")), 0);
	assert_int_equal(
	    json_integer_value(json_object_get(j, "max_crashes")), 3);
	assert_string_equal(
	    json_string_value(json_object_get(j, "queue")), "cliq");
	assert_string_equal(
	    json_string_value(json_object_get(j, "handler")), "noop");
	assert_int_equal(
	    json_integer_value(json_object_get(j, "priority")), 4);
	assert_true(json_is_null(json_object_get(j, "error")));
	expect_time(j, "created_at", tb_task_created_at(t));
	expect_time(j, "started_at", tb_task_started_at(t));
	expect_time(j, "finished_at", tb_task_finished_at(t));
	json_decref(j);
	tb_task_free(t);
	f->passed = true;
}

static void
test_cli_submit_with_lifecycle_options(void **state)
{
	tbh_fix *f = *state;
	char    *out, *end;
	tb_task *t;
	tb_id    id, id2;

	tbh_fix_start(f, NULL);
	// The delay must outlast two CLI runs, which take about a second
	// each under ThreadSanitizer: with 1 s the task had run already.
	const char *const args[] = { "submit", "noop", "--delay", "5s",
		"--priority", "3", "--max-attempts", "2", "--timeout", "5s",
		"--key", "k1", NULL };
	out                      = tbh_cli_ok(&f->b, args);
	id                       = strtoull(out, &end, 10);
	if (id == 0 || end == out) {
		print_error("submit printed \"%s\", want an id\n", out);
		free(out);
		fail();
	}
	free(out);
	t = NULL;
	TBH_OK(tb_status(f->c, id, &t));
	tbh_expect_state(t, TB_STATE_PENDING);
	assert_int_equal(tb_task_priority(t), 3);
	assert_int_equal(tb_task_max_attempts(t), 2);
	assert_int_equal(tb_task_timeout_ms(t), 5000);
	assert_non_null(tb_task_key(t));
	assert_string_equal(tb_task_key(t), "k1");
	{
		int64_t d = tb_task_run_at(t) - tb_task_created_at(t);
		if (d < 4990000 || d > 5100000) {
			print_error("--delay 5s: run_at is %lld us after "
			            "created_at\n",
			    (long long) d);
			tb_task_free(t);
			fail();
		}
	}
	tb_task_free(t);
	// The same key again: the same task, said to exist.
	out = tbh_cli_ok(&f->b, args);
	id2 = strtoull(out, NULL, 10);
	assert_int_equal(id2, id);
	assert_non_null(strstr(out, "existing"));
	free(out);
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);
	f->passed = true;
}

static void
test_cli_pause_resume_drain_retry_purge(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_queue_info  qi;
	char           idstr[32];
	tb_task       *t = NULL;
	tb_id          id, nid;

	tbh_fix_start(f, NULL);
	const char *const pause[]  = { "pause", "q", NULL };
	const char *const resume[] = { "resume", "q", NULL };
	const char *const drain[]  = { "drain", "q", NULL };
	const char *const purge[]  = { "purge", "--state", "dead", NULL };

	free(tbh_cli_ok(&f->b, pause));
	assert_true(queue_get(f->c, "q", &qi));
	assert_int_equal(qi.paused, 1);
	o.queue = "q";
	nid     = tbh_submit(f->c, "noop", NULL, 0, &o);
	id      = tbh_submit(f->c, "fail", NULL, 0, &o);
	free(tbh_cli_ok(&f->b, resume));
	assert_true(queue_get(f->c, "q", &qi));
	assert_int_equal(qi.paused, 0);
	free(tbh_cli_ok(&f->b, drain));
	t = tbh_status(f->c, nid);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);
	t = tbh_status(f->c, id);
	tbh_expect_state(t, TB_STATE_DEAD);
	int64_t finished = tb_task_finished_at(t);
	tb_task_free(t);

	snprintf(idstr, sizeof(idstr), "%llu", (unsigned long long) id);
	const char *const retry[] = { "retry", idstr, NULL };
	free(tbh_cli_ok(&f->b, retry));
	t = NULL;
	for (int64_t deadline = tbh_now_ms() + WAIT_MS;;) {
		t = tbh_status(f->c, id);
		if (tb_task_state(t) == TB_STATE_DEAD &&
		    tb_task_finished_at(t) > finished) {
			break;
		}
		tb_task_free(t);
		t = NULL;
		if (tbh_now_ms() > deadline) {
			print_error(
			    "after `taskbroker retry %s` the task did not "
			    "run and end dead again\n",
			    idstr);
			fail();
		}
		tbh_sleep_ms(20);
	}
	tb_task_free(t);
	free(tbh_cli_ok(&f->b, purge));
	t = NULL;
	TBH_RV(tb_status(f->c, id, &t), TB_ENOTFOUND);
	t = tbh_status(f->c, nid);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);
	f->passed = true;
}

static void
test_cli_stats_json_has_queues_array(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	char          *out;
	json_t        *j, *qs;
	bool           found = false;
	size_t         i;
	json_t        *q;
	tb_id          id;

	tbh_fix_start(f, NULL);
	o.queue = "statq";
	id      = tbh_submit(f->c, "noop", NULL, 0, &o);
	tb_task_free(tbh_wait_final(f->c, id, WAIT_MS));
	const char *const args[] = { "stats", "--json", NULL };
	out                      = tbh_cli_ok(&f->b, args);
	j                        = tbh_json_parse("stats --json", out);
	free(out);
	qs = json_object_get(j, "queues");
	if (!json_is_array(qs)) {
		print_error("stats --json has no \"queues\" array\n");
		json_decref(j);
		fail();
	}
	json_array_foreach(qs, i, q)
	{
		json_t *name = json_object_get(q, "name");
		if (json_is_string(name) &&
		    strcmp(json_string_value(name), "statq") == 0) {
			found = true;
			assert_int_equal(
			    json_integer_value(json_object_get(q, "done")), 1);
		}
	}
	json_decref(j);
	assert_true(found);
	f->passed = true;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, tbh_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_paused_queue_accepts_starts_nothing_and_stays_paused),
		T(test_queue_concurrency_2_from_config),
		T(test_drain_waits_for_the_queue_and_times_out),
		T(test_purge_pending_tasks_of_a_paused_queue),
		T(test_purge_dead_tasks_by_age),
		T(test_queue_max_pending_refuses_the_6th),
		T(test_queue_max_pending_from_config),
		T(test_global_max_pending_counts_all_queues),
		T(test_retention_prunes_ended_tasks),
		T(test_list_filters_and_paging),
		T(test_queues_figures),
		T(test_stats_count_schedules_and_forever_tasks),
		T(test_cli_status_json_has_every_field),
		T(test_cli_submit_with_lifecycle_options),
		T(test_cli_pause_resume_drain_retry_purge),
		T(test_cli_stats_json_has_queues_array),
	};

	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
