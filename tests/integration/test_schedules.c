// test_schedules.c: periodic schedules through the real broker: every and
// cron schedules, pause, resume, remove, persistence, and exactly one task
// per due time across restarts (one catch-up task for a missed period, or
// one per missed due time with catch_up). Each test starts its own broker.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness_json.h"

#define EVENT_MS TBH_MS(5000)
#define WAIT_MS TBH_MS(10000)

// sched is the part of a tb_schedule_info the tests compare.
typedef struct sched {
	char     handler[32];
	char     queue[32];
	char     cron[64]; // "" for none
	uint64_t every_ms;
	int      catch_up;
	int      paused;
	int64_t  next_at;
	int64_t  last_at;
	uint64_t fired;
	tb_id    last_task;
} sched;

// sched_get finds schedule name; false if the broker does not list it.
static bool
sched_get(tb_client *c, const char *name, sched *out)
{
	tb_schedule_info *l     = NULL;
	size_t            n     = 0;
	bool              found = false;

	TBH_OK(tb_schedule_list(c, &l, &n));
	for (size_t i = 0; i < n; i++) {
		if (strcmp(l[i].name, name) != 0) {
			continue;
		}
		memset(out, 0, sizeof(*out));
		snprintf(
		    out->handler, sizeof(out->handler), "%s", l[i].handler);
		snprintf(out->queue, sizeof(out->queue), "%s",
		    l[i].queue != NULL ? l[i].queue : "");
		snprintf(out->cron, sizeof(out->cron), "%s",
		    l[i].cron != NULL ? l[i].cron : "");
		out->every_ms  = l[i].every_ms;
		out->catch_up  = l[i].catch_up;
		out->paused    = l[i].paused;
		out->next_at   = l[i].next_at;
		out->last_at   = l[i].last_at;
		out->fired     = l[i].fired;
		out->last_task = l[i].last_task;
		found          = true;
	}
	tb_schedule_list_free(l, n);
	return (found);
}

// must_sched is sched_get that fails the test if name is not listed.
static sched
must_sched(tb_client *c, const char *name)
{
	sched s;

	if (!sched_get(c, name, &s)) {
		print_error("schedule %s is not listed\n", name);
		fail();
	}
	return (s);
}

// queue_tasks lists the tasks of queue in id order: ids and created_at
// into the arrays (max entries). Returns how many there are.
static int
queue_tasks(
    tb_client *c, const char *queue, tb_id *ids, int64_t *created, int max)
{
	tb_list_opts o  = TB_LIST_OPTS_INIT;
	tb_task    **ts = NULL;
	size_t       n  = 0;

	o.queue = queue;
	TBH_OK(tbh_list_every(c, o, &ts, &n));
	for (size_t i = 0; i < n && i < (size_t) max; i++) {
		ids[i]     = tb_task_id(ts[i]);
		created[i] = tb_task_created_at(ts[i]);
	}
	tb_task_list_free(ts, n);
	return ((int) n);
}

// fired_events receives events for ms and keeps the task ids of the
// "fired" events of queue (up to max). Returns how many came.
static int
fired_events(
    tb_sub *s, const char *queue, int ms, tb_id *ids, int64_t *times, int max)
{
	int64_t deadline = tbh_now_ms() + ms;
	int     n        = 0;

	for (;;) {
		tb_event *e    = NULL;
		int64_t   left = deadline - tbh_now_ms();

		if (left <= 0 || tb_sub_recv(s, (int) left, &e) != TB_OK) {
			return (n);
		}
		if (strcmp(tb_event_name(e), "fired") == 0 &&
		    strcmp(tb_event_queue(e), queue) == 0) {
			if (n < max) {
				ids[n]   = tb_event_task_id(e);
				times[n] = tb_event_time(e);
			}
			n++;
		}
		tb_event_free(e);
	}
}

static void
add_every(tb_client *c, const char *name, const char *queue, uint64_t ms,
    int catch_up)
{
	tb_schedule_spec sp = TB_SCHEDULE_SPEC_INIT;

	sp.name     = name;
	sp.handler  = "noop";
	sp.queue    = queue;
	sp.every_ms = ms;
	sp.catch_up = catch_up;
	TBH_OK(tb_schedule_add(c, &sp));
}

// An every=1s schedule fires about once a second, each fire creating
// exactly one task in its queue.
static void
test_every_1s_fires_about_once_a_second_one_task_each(void **state)
{
	tbh_fix *f = *state;
	tb_id    fired[16], ids[32];
	int64_t  times[16], created[32];
	int      nf, nt;
	sched    s;

	tbh_fix_start(f, NULL);
	f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	add_every(f->c, "tick", "sq", 1000, 0);
	s = must_sched(f->c, "tick");
	assert_int_equal(s.every_ms, 1000);
	assert_string_equal(s.queue, "sq");
	assert_string_equal(s.handler, "noop");
	assert_true(s.next_at > tbh_wall_us() - 100000);
	// The window is the behaviour under test, not a deadline: unscaled.
	nf = fired_events(f->sub, "sq", 3500, fired, times, 16);
	for (int i = 0; i < nf && i < 16; i++) {
		print_message("fired: task %llu at +%lld ms\n",
		    (unsigned long long) fired[i],
		    (long long) (times[i] - times[0]) / 1000);
	}
	if (nf < 2 || nf > 5) {
		print_error(
		    "every 1s: %d fired events in 3.5 s, want 2..4\n", nf);
		fail();
	}
	for (int i = 1; i < nf; i++) {
		int64_t gap = times[i] - times[i - 1];
		if (gap < 700000 || gap > 1300000) {
			print_error(
			    "fired events %d and %d are %lld ms apart\n",
			    i - 1, i, (long long) gap / 1000);
			fail();
		}
	}
	TBH_OK(tb_schedule_pause(f->c, "tick", 1));
	s  = must_sched(f->c, "tick");
	nt = queue_tasks(f->c, "sq", ids, created, 32);
	print_message("schedule fired %llu times; queue sq has %d tasks\n",
	    (unsigned long long) s.fired, nt);
	// One task per fire, no more.
	assert_int_equal((uint64_t) nt, s.fired);
	for (int i = 0; i < nf; i++) {
		bool in = false;
		for (int k = 0; k < nt; k++) {
			in = in || ids[k] == fired[i];
		}
		if (!in) {
			print_error(
			    "fired event for task %llu, not in queue sq\n",
			    (unsigned long long) fired[i]);
			fail();
		}
	}
	assert_int_equal(s.last_task, ids[nt - 1]);
	for (int i = 0; i < nt; i++) {
		tb_task *t = tbh_wait_final(f->c, ids[i], WAIT_MS);
		assert_int_equal(tb_task_state(t), TB_STATE_DONE);
		assert_string_equal(tb_task_handler(t), "noop");
		tb_task_free(t);
	}
	f->passed = true;
}

// A cron schedule is listed with its expression and a next_at in the
// future on a whole minute (hour for @hourly); a spec with both or neither
// of every and cron, or a bad expression, is refused.
static void
test_cron_schedule_next_at_is_a_future_whole_minute(void **state)
{
	tbh_fix         *f  = *state;
	tb_schedule_spec sp = TB_SCHEDULE_SPEC_INIT;
	int64_t          now;
	sched            s;

	tbh_fix_start(f, NULL);
	sp.name    = "minutely";
	sp.handler = "noop";
	sp.cron    = "* * * * *";
	TBH_OK(tb_schedule_add(f->c, &sp));
	sp.name = "hourly";
	sp.cron = "@hourly";
	TBH_OK(tb_schedule_add(f->c, &sp));
	now = tbh_wall_us();

	s = must_sched(f->c, "minutely");
	assert_string_equal(s.cron, "* * * * *");
	assert_int_equal(s.every_ms, 0);
	assert_int_equal(s.fired, 0);
	assert_int_equal(s.last_at, 0);
	print_message("minutely next_at %lld (now %lld)\n",
	    (long long) s.next_at, (long long) now);
	if (s.next_at <= now - 1000000 || s.next_at > now + 61000000 ||
	    s.next_at % 60000000 != 0) {
		print_error("cron * * * * *: next_at %lld, now %lld; want the "
		            "next whole minute\n",
		    (long long) s.next_at, (long long) now);
		fail();
	}
	s = must_sched(f->c, "hourly");
	if (s.next_at <= now - 1000000 || s.next_at > now + 3601000000LL ||
	    s.next_at % 3600000000LL != 0) {
		print_error("cron @hourly: next_at %lld, now %lld\n",
		    (long long) s.next_at, (long long) now);
		fail();
	}

	sp.name     = "both";
	sp.every_ms = 1000;
	TBH_RV(tb_schedule_add(f->c, &sp), TB_EINVAL);
	sp.cron     = NULL;
	sp.every_ms = 0;
	sp.name     = "neither";
	TBH_RV(tb_schedule_add(f->c, &sp), TB_EINVAL);
	sp.name = "bad";
	sp.cron = "61 * * * *";
	TBH_RV(tb_schedule_add(f->c, &sp), TB_EINVAL);
	sp.name    = "nohandler";
	sp.cron    = "* * * * *";
	sp.handler = "tbh_no_such_handler";
	TBH_RV(tb_schedule_add(f->c, &sp), TB_ENOHANDLER);
	assert_false(sched_get(f->c, "both", &s));
	assert_false(sched_get(f->c, "bad", &s));
	f->passed = true;
}

// A paused schedule stops firing; resumed, it fires again.
static void
test_schedule_pause_stops_firing_and_resume_restarts(void **state)
{
	tbh_fix *f = *state;
	tb_id    ids[8];
	int64_t  times[8];
	int      n;
	sched    s, s2;

	tbh_fix_start(f, NULL);
	f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	add_every(f->c, "p", "pq", 1000, 0);
	// Wait for the first fire, taking its event off the subscription.
	n = 0;
	for (int64_t deadline = tbh_now_ms() + TBH_MS(3000);
	     n == 0 && tbh_now_ms() < deadline;) {
		n = fired_events(f->sub, "pq", 100, ids, times, 8);
	}
	if (n == 0) {
		print_error("schedule p never fired\n");
		fail();
	}
	TBH_OK(tb_schedule_pause(f->c, "p", 1));
	s = must_sched(f->c, "p");
	assert_int_equal(s.paused, 1);
	// The absence under test: nothing fires for 1.8 s.
	n  = fired_events(f->sub, "pq", TBH_MS(1800), ids, times, 8);
	s2 = must_sched(f->c, "p");
	if (n != 0 || s2.fired != s.fired) {
		print_error("paused schedule fired: %d events, fired %llu -> "
		            "%llu\n",
		    n, (unsigned long long) s.fired,
		    (unsigned long long) s2.fired);
		fail();
	}
	TBH_OK(tb_schedule_pause(f->c, "p", 0));
	s2 = must_sched(f->c, "p");
	assert_int_equal(s2.paused, 0);
	// Resumed: the paused time is not made up, next_at is ahead.
	assert_true(s2.next_at > tbh_wall_us() - 50000);
	n = 0;
	for (int64_t deadline = tbh_now_ms() + TBH_MS(2500);
	     n == 0 && tbh_now_ms() < deadline;) {
		n = fired_events(f->sub, "pq", 200, ids, times, 8);
	}
	if (n == 0) {
		print_error("resumed schedule did not fire within 2.5 s\n");
		fail();
	}
	s2 = must_sched(f->c, "p");
	assert_int_equal(s2.fired, s.fired + (uint64_t) n);
	f->passed = true;
}

// tb_schedule_rm removes a schedule: it is no longer listed, it fires no
// more, and a second rm (or a pause) finds nothing. Adding a schedule with
// an existing name replaces it.
static void
test_schedule_rm_removes_and_add_replaces(void **state)
{
	tbh_fix *f = *state;
	tb_stats st;
	sched    s;

	tbh_fix_start(f, NULL);
	add_every(f->c, "gone", "rmq", 3600000, 0);
	add_every(f->c, "gone", "rmq", 7200000, 0);
	s = must_sched(f->c, "gone");
	assert_int_equal(s.every_ms, 7200000);
	TBH_OK(tb_stats_get(f->c, &st));
	assert_int_equal(st.schedules, 1);
	TBH_OK(tb_schedule_rm(f->c, "gone"));
	assert_false(sched_get(f->c, "gone", &s));
	TBH_RV(tb_schedule_rm(f->c, "gone"), TB_ENOTFOUND);
	TBH_RV(tb_schedule_pause(f->c, "gone", 1), TB_ENOTFOUND);
	TBH_OK(tb_stats_get(f->c, &st));
	assert_int_equal(st.schedules, 0);
	f->passed = true;
}

// A schedule survives a restart with its definition and state.
static void
test_schedule_survives_restart(void **state)
{
	tbh_fix         *f  = *state;
	tb_schedule_spec sp = TB_SCHEDULE_SPEC_INIT;
	sched            a, b, a2, b2;
	int              code;

	tbh_fix_start(f, NULL);
	add_every(f->c, "slow", "persq", 3600000, 1);
	sp.name         = "cronjob";
	sp.handler      = "noop";
	sp.queue        = "persq";
	sp.cron         = "*/5 * * * *";
	sp.priority     = 7;
	sp.max_attempts = 3;
	sp.timeout_ms   = 2000;
	TBH_OK(tb_schedule_add(f->c, &sp));
	TBH_OK(tb_schedule_pause(f->c, "cronjob", 1));
	a = must_sched(f->c, "slow");
	b = must_sched(f->c, "cronjob");

	if ((code = tbh_stop(&f->b, TBH_MS(15000))) != 0) {
		print_error("broker stop: exit %d\n", code);
		fail();
	}
	if (tbh_restart(&f->b) != 0) {
		print_error("broker did not restart\n");
		fail();
	}
	a2 = must_sched(f->c, "slow");
	b2 = must_sched(f->c, "cronjob");
	assert_int_equal(a2.every_ms, 3600000);
	assert_int_equal(a2.catch_up, 1);
	assert_int_equal(a2.next_at, a.next_at);
	assert_string_equal(a2.queue, "persq");
	assert_string_equal(b2.cron, "*/5 * * * *");
	assert_int_equal(b2.paused, 1);
	assert_int_equal(b2.next_at, b.next_at);
	{
		tb_schedule_info *l = NULL;
		size_t            n = 0;
		TBH_OK(tb_schedule_list(f->c, &l, &n));
		assert_int_equal(n, 2);
		for (size_t i = 0; i < n; i++) {
			if (strcmp(l[i].name, "cronjob") == 0) {
				assert_int_equal(l[i].priority, 7);
				assert_int_equal(l[i].max_attempts, 3);
				assert_int_equal(l[i].timeout_ms, 2000);
			}
		}
		tb_schedule_list_free(l, n);
	}
	f->passed = true;
}

// stop_gap_restart waits for a fire of schedule name, stops the broker
// (SIGTERM), keeps it down for gap_ms, and restarts it. *stopped_us is the
// wall time once it had exited.
static void
stop_gap_restart(tbh_fix *f, const char *name, int gap_ms, int64_t *stopped_us)
{
	int64_t  t0;
	int      code;
	uint64_t first;

	first = must_sched(f->c, name).fired;
	for (int64_t deadline = tbh_now_ms() + TBH_MS(3000);;) {
		if (must_sched(f->c, name).fired > first) {
			break;
		}
		if (tbh_now_ms() > deadline) {
			print_error("schedule %s did not fire\n", name);
			fail();
		}
		tbh_sleep_ms(20);
	}
	tbh_log_note(&f->b, "=== test: SIGTERM, down %d ms ===", gap_ms);
	if ((code = tbh_stop(&f->b, TBH_MS(15000))) != 0) {
		print_error("broker stop: exit %d\n", code);
		fail();
	}
	*stopped_us = tbh_wall_us();
	t0          = tbh_now_ms();
	// The broker being down for a while is the point of the test.
	while (tbh_now_ms() < t0 + gap_ms) {
		tbh_sleep_ms(20);
	}
	if (tbh_restart(&f->b) != 0) {
		print_error("broker did not restart\n");
		fail();
	}
}

// first_after polls queue until a task created after us exists; returns
// its created_at.
static int64_t
first_after(tb_client *c, const char *queue, int64_t us)
{
	tb_id   ids[64];
	int64_t created[64];

	for (int64_t deadline = tbh_now_ms() + TBH_MS(5000);;) {
		int     n     = queue_tasks(c, queue, ids, created, 64);
		int64_t first = 0;

		for (int i = 0; i < n && i < 64; i++) {
			if (created[i] > us &&
			    (first == 0 || created[i] < first)) {
				first = created[i];
			}
		}
		if (first != 0) {
			return (first);
		}
		if (tbh_now_ms() > deadline) {
			print_error(
			    "no task in %s created after the restart\n",
			    queue);
			fail();
		}
		tbh_sleep_ms(20);
	}
}

// count_between counts the tasks of queue created in (lo, hi].
static int
count_between(tb_client *c, const char *queue, int64_t lo, int64_t hi)
{
	tb_id   ids[64];
	int64_t created[64];
	int     n = queue_tasks(c, queue, ids, created, 64);
	int     k = 0;

	for (int i = 0; i < n && i < 64; i++) {
		k += created[i] > lo && created[i] <= hi;
	}
	return (k);
}

// How long the broker is kept down over an every=1s schedule: two due
// times are missed, and the catch-up pass comes well before the next due
// time on the 1 s grid, so that a regular fire cannot be mistaken for part
// of it.
#define GAP_MS 2300

// Down for about 2.3 s over an every=1s schedule (two due times missed),
// the broker fires one catch-up task when it comes back, not one per
// missed second; then it goes on once a second.
static void
test_missed_due_times_fire_once_after_restart(void **state)
{
	tbh_fix *f = *state;
	int64_t  stopped, c1;
	int      burst;
	sched    s;
	tb_id    ids[64];
	int64_t  created[64];
	int      n;

	tbh_fix_start(f, NULL);
	add_every(f->c, "miss", "mq", 1000, 0);
	stop_gap_restart(f, "miss", GAP_MS, &stopped);
	c1 = first_after(f->c, "mq", stopped);
	// Tasks fired for missed due times come in one pass, within
	// milliseconds; the next regular fire is on the 1 s grid.
	while (tbh_wall_us() < c1 + 200000) {
		tbh_sleep_ms(20);
	}
	burst = count_between(f->c, "mq", stopped, c1 + 100000);
	print_message("after %d ms down: %d task(s) created in the first "
	              "100 ms after the first one after the restart (%lld ms "
	              "after the stop)\n",
	    GAP_MS, burst, (long long) (c1 - stopped) / 1000);
	if (burst != 1) {
		print_error("want exactly 1 catch-up task for the missed "
		            "period, got %d\n",
		    burst);
		fail();
	}
	// It goes on: the next regular fire comes within about a second.
	for (int64_t deadline = tbh_now_ms() + TBH_MS(2500);;) {
		if (count_between(f->c, "mq", stopped, INT64_MAX) >= 2) {
			break;
		}
		if (tbh_now_ms() > deadline) {
			print_error("no regular fire after the catch-up\n");
			fail();
		}
		tbh_sleep_ms(50);
	}
	TBH_OK(tb_schedule_pause(f->c, "miss", 1));
	s = must_sched(f->c, "miss");
	n = queue_tasks(f->c, "mq", ids, created, 64);
	assert_int_equal((uint64_t) n, s.fired);
	f->passed = true;
}

// With catch_up, every missed due time fires once (and only once) when
// the broker comes back.
static void
test_catch_up_fires_each_missed_due_time_once(void **state)
{
	tbh_fix *f = *state;
	int64_t  stopped, c1, last_before = 0;
	int      burst, want;
	tb_id    ids[64];
	int64_t  created[64];
	int      n;
	sched    s;

	tbh_fix_start(f, NULL);
	add_every(f->c, "cu", "cuq", 1000, 1);
	stop_gap_restart(f, "cu", GAP_MS, &stopped);
	c1 = first_after(f->c, "cuq", stopped);
	while (tbh_wall_us() < c1 + 200000) {
		tbh_sleep_ms(20);
	}
	n = queue_tasks(f->c, "cuq", ids, created, 64);
	for (int i = 0; i < n && i < 64; i++) {
		if (created[i] <= stopped && created[i] > last_before) {
			last_before = created[i];
		}
	}
	// The due times after the last fire before the stop, up to the
	// catch-up pass (fires come a few ms after their due time).
	want  = (int) ((c1 - last_before + 10000) / 1000000);
	burst = count_between(f->c, "cuq", stopped, c1 + 100000);
	print_message(
	    "catch_up: %d task(s) in the catch-up pass %lld ms after "
	    "the last fire before the stop; want %d\n",
	    burst, (long long) (c1 - last_before) / 1000, want);
	if (burst < 2 || burst != want) {
		print_error(
		    "catch_up: want one task per missed due time (%d), "
		    "got %d\n",
		    want, burst);
		fail();
	}
	TBH_OK(tb_schedule_pause(f->c, "cu", 1));
	s = must_sched(f->c, "cu");
	n = queue_tasks(f->c, "cuq", ids, created, 64);
	assert_int_equal((uint64_t) n, s.fired);
	// Exactly once overall: one task per due time from the first fire
	// to the last one.
	{
		int64_t span = s.last_at - created[0];
		int     due  = (int) ((span + 500000) / 1000000) + 1;
		print_message(
		    "catch_up: %d tasks over %d due times\n", n, due);
		assert_int_equal(n, due);
	}
	f->passed = true;
}

// A broker killed (kill -9) right after a fire and restarted at once
// neither fires that due time again nor skips one: over the run, the
// schedule's tasks are one per due time, about a second apart.
static void
test_fires_once_per_due_time_across_kill9(void **state)
{
	tbh_fix *f = *state;
	tb_id    ids[64];
	int64_t  created[64];
	int      n;
	sched    s;

	tbh_fix_start(f, NULL);
	add_every(f->c, "k9", "k9q", 1000, 0);
	for (int round = 0; round < 2; round++) {
		uint64_t before = must_sched(f->c, "k9").fired;

		for (int64_t deadline = tbh_now_ms() + TBH_MS(3000);;) {
			if (must_sched(f->c, "k9").fired > before) {
				break;
			}
			if (tbh_now_ms() > deadline) {
				print_error("schedule k9 did not fire\n");
				fail();
			}
			tbh_sleep_ms(5);
		}
		tbh_log_note(
		    &f->b, "=== test: kill -9 right after a fire ===");
		if (tbh_kill9(&f->b) != 0 || tbh_restart(&f->b) != 0) {
			print_error("kill -9 and restart failed\n");
			fail();
		}
	}
	// One more regular fire after the last restart.
	{
		uint64_t before = must_sched(f->c, "k9").fired;
		for (int64_t deadline = tbh_now_ms() + TBH_MS(3000);;) {
			if (must_sched(f->c, "k9").fired > before) {
				break;
			}
			if (tbh_now_ms() > deadline) {
				print_error(
				    "schedule k9 did not fire after the "
				    "restarts\n");
				fail();
			}
			tbh_sleep_ms(20);
		}
	}
	TBH_OK(tb_schedule_pause(f->c, "k9", 1));
	s = must_sched(f->c, "k9");
	n = queue_tasks(f->c, "k9q", ids, created, 64);
	for (int i = 0; i < n && i < 64; i++) {
		print_message("task %llu created at +%lld ms\n",
		    (unsigned long long) ids[i],
		    (long long) (created[i] - created[0]) / 1000);
	}
	assert_int_equal((uint64_t) n, s.fired);
	for (int i = 1; i < n && i < 64; i++) {
		int64_t gap = created[i] - created[i - 1];
		if (gap < 700000 || gap > 1300000) {
			print_error(
			    "tasks %llu and %llu of an every=1s schedule "
			    "were created %lld ms apart across kill -9\n",
			    (unsigned long long) ids[i - 1],
			    (unsigned long long) ids[i],
			    (long long) gap / 1000);
			fail();
		}
	}
	f->passed = true;
}

// The CLI: schedule add, then schedule ls --json lists it.
static void
test_cli_schedule_add_and_ls_json(void **state)
{
	tbh_fix *f = *state;
	char    *out;
	json_t  *j, *arr, *it;
	size_t   i;
	bool     found = false;
	sched    s;

	tbh_fix_start(f, NULL);
	const char *const add[] = { "schedule", "add", "clitick", "noop",
		"--every", "1s", NULL };
	const char *const ls[]  = { "schedule", "ls", "--json", NULL };
	free(tbh_cli_ok(&f->b, add));
	s = must_sched(f->c, "clitick");
	assert_int_equal(s.every_ms, 1000);
	out = tbh_cli_ok(&f->b, ls);
	assert_non_null(out);
	j = tbh_json_parse("schedule ls --json", out);
	free(out);
	// An array of schedules, or an object holding one.
	arr = json_is_array(j) ? j : json_object_get(j, "schedules");
	if (!json_is_array(arr)) {
		print_error("schedule ls --json: no array of schedules\n");
		json_decref(j);
		fail();
	}
	json_array_foreach(arr, i, it)
	{
		json_t *name = json_object_get(it, "name");
		if (json_is_string(name) &&
		    strcmp(json_string_value(name), "clitick") == 0) {
			found = true;
			assert_string_equal(
			    json_string_value(json_object_get(it, "handler")),
			    "noop");
		}
	}
	json_decref(j);
	assert_true(found);
	TBH_OK(tb_schedule_rm(f->c, "clitick"));
	f->passed = true;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, tbh_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_every_1s_fires_about_once_a_second_one_task_each),
		T(test_cron_schedule_next_at_is_a_future_whole_minute),
		T(test_schedule_pause_stops_firing_and_resume_restarts),
		T(test_schedule_rm_removes_and_add_replaces),
		T(test_schedule_survives_restart),
		T(test_missed_due_times_fire_once_after_restart),
		T(test_catch_up_fires_each_missed_due_time_once),
		T(test_fires_once_per_due_time_across_kill9),
		T(test_cli_schedule_add_and_ls_json),
	};

	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
