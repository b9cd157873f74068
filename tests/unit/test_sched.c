// test_sched.c: the scheduler's ordering (priority, FIFO, due time), the
// retry backoff and the pure decisions of broker/scheduler.c: how an ended
// attempt ends its task, a forever task's restarts, backpressure. No
// broker, no loop, no real clock: time and jitter are arguments.

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "scheduler.h"
#include "task.h"

#define N 200

static task tasks[N];

static void
reset(void)
{
	memset(tasks, 0, sizeof(tasks));
	for (int i = 0; i < N; i++) {
		tasks[i].id = (uint64_t) i + 1;
	}
}

static void
test_ready_pops_higher_priority_first(void **state)
{
	sched_heapq h;

	(void) state;
	reset();
	sched_heapq_init(&h, SCHED_READY);
	tasks[0].priority = 0;
	tasks[1].priority = 5;
	tasks[2].priority = -3;
	tasks[3].priority = 9;
	for (int i = 0; i < 4; i++) {
		assert_int_equal(sched_push(&h, &tasks[i]), 0);
	}
	assert_ptr_equal(sched_pop(&h), &tasks[3]);
	assert_ptr_equal(sched_pop(&h), &tasks[1]);
	assert_ptr_equal(sched_pop(&h), &tasks[0]);
	assert_ptr_equal(sched_pop(&h), &tasks[2]);
	assert_null(sched_pop(&h));
	sched_heapq_fini(&h);
}

static void
test_ready_is_fifo_among_equal_priorities(void **state)
{
	sched_heapq h;

	(void) state;
	reset();
	sched_heapq_init(&h, SCHED_READY);
	// Pushed in a scrambled order; ids say the submission order.
	for (int i = 0; i < N; i++) {
		int j = (i * 73) % N; // 73 is coprime with 200: a permutation
		tasks[j].priority = 1;
		assert_int_equal(sched_push(&h, &tasks[j]), 0);
	}
	for (int i = 0; i < N; i++) {
		task *t = sched_pop(&h);
		assert_non_null(t);
		assert_int_equal(t->id, (uint64_t) i + 1);
		assert_int_equal(t->heap, SCHED_NONE);
	}
	sched_heapq_fini(&h);
}

static void
test_due_pops_earliest_run_at_first_then_lower_id(void **state)
{
	sched_heapq h;

	(void) state;
	reset();
	sched_heapq_init(&h, SCHED_DUE);
	tasks[0].run_at   = 300;
	tasks[1].run_at   = 100;
	tasks[2].run_at   = 200;
	tasks[3].run_at   = 100;
	tasks[3].priority = 50; // priority does not order the due heap
	for (int i = 0; i < 4; i++) {
		assert_int_equal(sched_push(&h, &tasks[i]), 0);
	}
	assert_ptr_equal(sched_peek(&h), &tasks[1]);
	assert_ptr_equal(sched_pop(&h), &tasks[1]);
	assert_ptr_equal(sched_pop(&h), &tasks[3]);
	assert_ptr_equal(sched_pop(&h), &tasks[2]);
	assert_ptr_equal(sched_pop(&h), &tasks[0]);
	sched_heapq_fini(&h);
}

static void
test_remove_from_the_middle_keeps_order(void **state)
{
	sched_heapq h;
	uint64_t    last_run_at = 0;
	int         popped      = 0;

	(void) state;
	reset();
	sched_heapq_init(&h, SCHED_DUE);
	for (int i = 0; i < N; i++) {
		tasks[i].run_at = (int64_t) ((i * 37) % N) * 10;
		assert_int_equal(sched_push(&h, &tasks[i]), 0);
	}
	// Remove every third task, wherever it sits in the heap.
	for (int i = 0; i < N; i += 3) {
		assert_int_equal(tasks[i].heap, SCHED_DUE);
		sched_remove(&h, &tasks[i]);
		assert_int_equal(tasks[i].heap, SCHED_NONE);
	}
	for (task *t; (t = sched_pop(&h)) != NULL; popped++) {
		assert_true((uint64_t) t->run_at >= last_run_at);
		assert_true((t->id - 1) % 3 != 0);
		last_run_at = (uint64_t) t->run_at;
	}
	assert_int_equal(popped, N - (N + 2) / 3);
	sched_heapq_fini(&h);
}

static void
test_heap_index_tracks_position(void **state)
{
	sched_heapq h;

	(void) state;
	reset();
	sched_heapq_init(&h, SCHED_READY);
	for (int i = 0; i < 50; i++) {
		tasks[i].priority = i % 7;
		assert_int_equal(sched_push(&h, &tasks[i]), 0);
	}
	for (size_t i = 0; i < h.n; i++) {
		assert_int_equal(h.v[i]->heap_idx, i);
	}
	sched_heapq_fini(&h);
}

static void
test_backoff_doubles_and_is_capped(void **state)
{
	(void) state;
	// r = 0: the fixed half only.
	assert_int_equal(sched_backoff_us(1, 100000, 60000000, 0.0), 50000);
	assert_int_equal(sched_backoff_us(2, 100000, 60000000, 0.0), 100000);
	assert_int_equal(sched_backoff_us(3, 100000, 60000000, 0.0), 200000);
	// Far past the cap it stays at the cap.
	assert_int_equal(
	    sched_backoff_us(40, 100000, 60000000, 0.0), 30000000);
	assert_int_equal(
	    sched_backoff_us(1000000, 100000, 60000000, 0.0), 30000000);
}

static void
test_backoff_jitter_stays_within_half_to_full(void **state)
{
	(void) state;
	for (double r = 0.0; r < 1.0; r += 0.125) {
		int64_t d = sched_backoff_us(4, 100000, 60000000, r);
		assert_true(d >= 400000);
		assert_true(d < 800000);
	}
	assert_true(sched_backoff_us(4, 100000, 60000000, 0.9) >
	    sched_backoff_us(4, 100000, 60000000, 0.1));
}

#define S 1000000LL // one second in µs

static void
test_every_next_is_the_next_grid_point_strictly_after(void **state)
{
	(void) state;
	// Grid 100 s + k * 30 s.
	assert_int_equal(
	    sched_next_due(30 * S, NULL, 100 * S, 50 * S), 100 * S);
	assert_int_equal(
	    sched_next_due(30 * S, NULL, 100 * S, 100 * S), 130 * S);
	assert_int_equal(
	    sched_next_due(30 * S, NULL, 100 * S, 129 * S), 130 * S);
	assert_int_equal(
	    sched_next_due(30 * S, NULL, 100 * S, 130 * S), 160 * S);
}

static void
test_every_after_downtime_skips_or_catches_up(void **state)
{
	int64_t due = 100 * S;
	int64_t now = 205 * S; // down over 130, 160, 190
	int     n   = 0;

	(void) state;
	// Skipping: one step lands after now, on the grid.
	assert_int_equal(sched_next_due(30 * S, NULL, due, now), 220 * S);
	// Catching up: each missed due time in turn.
	for (int64_t t = due; t <= now;
	     t         = sched_next_due(30 * S, NULL, t, t)) {
		n++;
	}
	assert_int_equal(n, 4); // 100, 130, 160, 190
}

static void
test_cron_next_comes_from_the_cron(void **state)
{
	tbt_cron c;
	int64_t  t = 1795250532LL * S; // 2026-11-21T08:42:12Z

	(void) state;
	assert_int_equal(tbt_cron_parse(&c, "*/5 * * * *", NULL), TB_OK);
	// 08:45:00, whatever "due" says.
	assert_int_equal(sched_next_due(0, &c, 0, t), 1795250700LL * S);
}

static void
test_schedule_sid_is_stable_and_distinct(void **state)
{
	uint8_t a[16], b[16], c[16], d[16];

	(void) state;
	sched_sid("nightly", 1000, a);
	sched_sid("nightly", 1000, b);
	sched_sid("nightly", 2000, c);
	sched_sid("hourly", 1000, d);
	assert_memory_equal(a, b, 16);
	assert_memory_not_equal(a, c, 16);
	assert_memory_not_equal(a, d, 16);
}

// ---- outcome of an ended attempt ------------------------------------------

static sched_end
ended(bool failed, uint32_t attempts, uint32_t max)
{
	sched_end e;

	memset(&e, 0, sizeof(e));
	e.failed       = failed;
	e.attempts     = attempts;
	e.max_attempts = max;
	return (e);
}

static void
test_outcome_success_is_done(void **state)
{
	sched_end e = ended(false, 1, 1);

	(void) state;
	assert_int_equal(sched_outcome(&e), SCHED_DONE);
	e.attempts     = 3;
	e.max_attempts = 5;
	assert_int_equal(sched_outcome(&e), SCHED_DONE);
}

static void
test_outcome_failure_retries_while_attempts_remain(void **state)
{
	sched_end e = ended(true, 1, 3);

	(void) state;
	assert_int_equal(sched_outcome(&e), SCHED_RETRY);
	e.attempts = 2;
	assert_int_equal(sched_outcome(&e), SCHED_RETRY);
	e.attempts = 3;
	assert_int_equal(sched_outcome(&e), SCHED_DEAD);
	e = ended(true, 1, 1);
	assert_int_equal(sched_outcome(&e), SCHED_DEAD);
}

static void
test_outcome_no_retry_failure_is_dead_at_once(void **state)
{
	sched_end e = ended(true, 1, 10);

	(void) state;
	e.no_retry = true;
	assert_int_equal(sched_outcome(&e), SCHED_DEAD);
	e.failed = false; // no_retry only matters for a failure
	assert_int_equal(sched_outcome(&e), SCHED_DONE);
}

static void
test_outcome_cancel_wins_over_the_attempt(void **state)
{
	sched_end e = ended(false, 1, 3);

	(void) state;
	e.cancelling = true;
	assert_int_equal(sched_outcome(&e), SCHED_CANCELLED);
	e.failed = true;
	assert_int_equal(sched_outcome(&e), SCHED_CANCELLED);
	e.forever = true; // a cancel stops a forever task for good
	assert_int_equal(sched_outcome(&e), SCHED_CANCELLED);
}

static void
test_outcome_forever_restarts_however_it_ended(void **state)
{
	sched_end e = ended(false, 1, 1);

	(void) state;
	e.forever = true;
	assert_int_equal(sched_outcome(&e), SCHED_RESTART);
	e.failed = true;
	assert_int_equal(sched_outcome(&e), SCHED_RESTART);
	e.no_retry = true;
	e.attempts = 7;
	assert_int_equal(sched_outcome(&e), SCHED_RESTART);
}

// A graceful shutdown that stops an attempt gives it back (no crash: see
// sched_interrupted for an attempt cut short by a death).
static void
test_outcome_shutdown_stop_is_given_back(void **state)
{
	sched_end e = ended(true, 3, 3);

	(void) state;
	e.requeue    = true; // shutdown: whatever else holds
	e.cancelling = true;
	e.forever    = true;
	assert_int_equal(sched_outcome(&e), SCHED_REQUEUE);
}

// ---- interrupted attempts (a crash is not a failure) ----------------------

static void
test_interrupted_refunds_the_attempt_and_counts_a_crash(void **state)
{
	sched_crash c;

	(void) state;
	// The default task: one attempt, counted when it started.
	assert_int_equal(
	    sched_interrupted(1, 0, 3, false, &c), SCHED_CRASH_READY);
	assert_int_equal(c.attempts, 0);
	assert_int_equal(c.crashes, 1);
	// A task on its fifth attempt, interrupted once before.
	assert_int_equal(
	    sched_interrupted(5, 1, 3, false, &c), SCHED_CRASH_READY);
	assert_int_equal(c.attempts, 4);
	assert_int_equal(c.crashes, 2);
}

static void
test_interrupted_quarantines_at_max_crashes(void **state)
{
	sched_crash c        = { 0, 0 };
	uint32_t    attempts = 0;
	int         outcome  = -1;

	(void) state;
	// Start (the attempt counted), crash, again: the third crash of
	// max_crashes 3 quarantines it, never the first two.
	for (uint32_t i = 1; i <= 3; i++) {
		attempts++; // attempt_start
		outcome = sched_interrupted(attempts, c.crashes, 3, false, &c);
		attempts = c.attempts;
		assert_int_equal(c.crashes, i);
		assert_int_equal(attempts, 0);
		assert_int_equal(outcome,
		    i < 3 ? SCHED_CRASH_READY : SCHED_CRASH_QUARANTINE);
	}
	assert_int_equal(
	    sched_interrupted(1, 0, 1, false, &c), SCHED_CRASH_QUARANTINE);
	assert_int_equal(c.crashes, 1);
	// Crashes already past the limit (a limit lowered since) quarantine.
	assert_int_equal(
	    sched_interrupted(2, 9, 4, false, &c), SCHED_CRASH_QUARANTINE);
	assert_int_equal(c.crashes, 10);
	assert_int_equal(c.attempts, 1);
}

static void
test_interrupted_attempts_never_run_out_before_crashes(void **state)
{
	sched_crash c        = { 0, 0 };
	uint32_t    attempts = 2; // two failed attempts already

	(void) state;
	// However often a task is interrupted, its attempts stay where its
	// own failures left them; only crashes grow.
	for (uint32_t i = 1; i < 1000; i++) {
		assert_int_equal(sched_interrupted(
		                     attempts + 1, c.crashes, 1000, false, &c),
		    SCHED_CRASH_READY);
		attempts = c.attempts;
		assert_int_equal(attempts, 2);
		assert_int_equal(c.crashes, i);
	}
}

static void
test_interrupted_cancel_wins_over_the_crash(void **state)
{
	sched_crash c;

	(void) state;
	assert_int_equal(
	    sched_interrupted(1, 0, 3, true, &c), SCHED_CRASH_CANCELLED);
	assert_int_equal(c.attempts, 0);
	assert_int_equal(c.crashes, 1);
	assert_int_equal(sched_interrupted(1, 2, 3, true, &c),
	    SCHED_CRASH_CANCELLED); // even at max_crashes
	assert_int_equal(c.crashes, 3);
}

static void
test_interrupted_edges_do_not_wrap(void **state)
{
	sched_crash c;

	(void) state;
	// No attempt counted (never happens; must not wrap to UINT32_MAX).
	assert_int_equal(
	    sched_interrupted(0, 0, 3, false, &c), SCHED_CRASH_READY);
	assert_int_equal(c.attempts, 0);
	// The crash count saturates instead of wrapping to 0.
	assert_int_equal(
	    sched_interrupted(1, UINT32_MAX, UINT32_MAX, false, &c),
	    SCHED_CRASH_QUARANTINE);
	assert_int_equal(c.crashes, UINT32_MAX);
	assert_int_equal(
	    sched_interrupted(1, UINT32_MAX - 1, UINT32_MAX, false, &c),
	    SCHED_CRASH_QUARANTINE);
	// A limit of 0 (never set) counts as 1: the task must not loop.
	assert_int_equal(
	    sched_interrupted(1, 0, 0, false, &c), SCHED_CRASH_QUARANTINE);
}

// ---- forever restarts
// -------------------------------------------------------

static const sched_forever_cfg fcfg = {
	.reset_us           = 10000000, // 10 s
	.backoff_us         = 1000000,  // 1 s
	.backoff_max_us     = 8000000,  // 8 s
	.window_us          = 60000000, // 1 min
	.crashloop_restarts = 3,
};

static void
test_forever_quick_exits_back_off_exponentially(void **state)
{
	sched_forever f;
	int64_t       mono = 1000000;
	int           change;

	(void) state;
	memset(&f, 0, sizeof(f));
	// With r = 0 the delay is the fixed half of the doubled backoff: the
	// configured backoff itself, then twice, four times, up to the cap.
	assert_int_equal(
	    sched_forever_restart(&f, &fcfg, 100, mono, 0.0, &change),
	    1000000);
	assert_int_equal(
	    sched_forever_restart(&f, &fcfg, 100, mono, 0.0, &change),
	    2000000);
	assert_int_equal(
	    sched_forever_restart(&f, &fcfg, 100, mono, 0.0, &change),
	    4000000);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(
		    sched_forever_restart(&f, &fcfg, 100, mono, 0.0, NULL),
		    8000000);
	}
	// r near 1 adds up to the other half.
	assert_true(sched_forever_restart(&f, &fcfg, 100, mono, 0.999, NULL) >
	    15000000);
	assert_int_equal(f.quick_restarts, 9);
}

static void
test_forever_long_run_restarts_at_once_and_resets(void **state)
{
	sched_forever f;

	(void) state;
	memset(&f, 0, sizeof(f));
	(void) sched_forever_restart(&f, &fcfg, 100, 1, 0.0, NULL);
	(void) sched_forever_restart(&f, &fcfg, 100, 2, 0.0, NULL);
	assert_int_equal(f.quick_restarts, 2);
	assert_int_equal(
	    sched_forever_restart(&f, &fcfg, 10000000, 3, 0.5, NULL), 0);
	assert_int_equal(f.quick_restarts, 0);
	// The next quick exit starts the backoff from the beginning.
	assert_int_equal(
	    sched_forever_restart(&f, &fcfg, 100, 4, 0.0, NULL), 1000000);
}

static void
test_forever_crashloop_within_window_and_recovery(void **state)
{
	sched_forever f;
	int           change = -1;

	(void) state;
	memset(&f, 0, sizeof(f));
	(void) sched_forever_restart(&f, &fcfg, 100, 1000000, 0.0, &change);
	assert_int_equal(change, 0);
	(void) sched_forever_restart(&f, &fcfg, 100, 2000000, 0.0, &change);
	assert_int_equal(change, 0);
	assert_false(f.crashloop);
	// The third restart within the minute makes it a crash loop, once.
	(void) sched_forever_restart(&f, &fcfg, 100, 3000000, 0.0, &change);
	assert_int_equal(change, SCHED_FOREVER_LOOPING);
	assert_true(f.crashloop);
	(void) sched_forever_restart(&f, &fcfg, 100, 4000000, 0.0, &change);
	assert_int_equal(change, 0);
	// A long run ends it; the window started over long ago.
	(void) sched_forever_restart(
	    &f, &fcfg, 20000000, 200000000, 0.0, &change);
	assert_int_equal(change, SCHED_FOREVER_RECOVERED);
	assert_false(f.crashloop);
	assert_int_equal(f.window_restarts, 1);
}

static void
test_forever_restarts_spread_over_windows_are_no_crashloop(void **state)
{
	sched_forever f;
	int           change;

	(void) state;
	memset(&f, 0, sizeof(f));
	for (int i = 1; i <= 10; i++) {
		// Two restarts per window of a minute, never three.
		int64_t mono = (int64_t) i * 35000000;
		(void) sched_forever_restart(
		    &f, &fcfg, 100, mono, 0.0, &change);
		assert_int_equal(change, 0);
		assert_false(f.crashloop);
	}
}

// ---- backpressure
// -----------------------------------------------------------

static void
test_admit_refuses_what_does_not_fit(void **state)
{
	(void) state;
	assert_int_equal(sched_admit(0, 10, 10), TB_OK);
	assert_int_equal(sched_admit(5, 5, 10), TB_OK);
	assert_int_equal(sched_admit(5, 6, 10), TB_EQUEUEFULL);
	assert_int_equal(sched_admit(10, 1, 10), TB_EQUEUEFULL);
	// Nothing new, but already over (a lowered limit): refused.
	assert_int_equal(sched_admit(11, 0, 10), TB_EQUEUEFULL);
	assert_int_equal(sched_admit(10, 0, 10), TB_OK);
}

static void
test_admit_without_limit_takes_everything(void **state)
{
	(void) state;
	assert_int_equal(sched_admit(0, 0, 0), TB_OK);
	assert_int_equal(sched_admit(UINT64_MAX / 2, 1000000, 0), TB_OK);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ready_pops_higher_priority_first),
		cmocka_unit_test(test_ready_is_fifo_among_equal_priorities),
		cmocka_unit_test(
		    test_due_pops_earliest_run_at_first_then_lower_id),
		cmocka_unit_test(test_remove_from_the_middle_keeps_order),
		cmocka_unit_test(test_heap_index_tracks_position),
		cmocka_unit_test(test_backoff_doubles_and_is_capped),
		cmocka_unit_test(
		    test_backoff_jitter_stays_within_half_to_full),
		cmocka_unit_test(
		    test_every_next_is_the_next_grid_point_strictly_after),
		cmocka_unit_test(
		    test_every_after_downtime_skips_or_catches_up),
		cmocka_unit_test(test_cron_next_comes_from_the_cron),
		cmocka_unit_test(test_schedule_sid_is_stable_and_distinct),
		cmocka_unit_test(test_outcome_success_is_done),
		cmocka_unit_test(
		    test_outcome_failure_retries_while_attempts_remain),
		cmocka_unit_test(
		    test_outcome_no_retry_failure_is_dead_at_once),
		cmocka_unit_test(test_outcome_cancel_wins_over_the_attempt),
		cmocka_unit_test(
		    test_outcome_forever_restarts_however_it_ended),
		cmocka_unit_test(test_outcome_shutdown_stop_is_given_back),
		cmocka_unit_test(
		    test_interrupted_refunds_the_attempt_and_counts_a_crash),
		cmocka_unit_test(test_interrupted_quarantines_at_max_crashes),
		cmocka_unit_test(
		    test_interrupted_attempts_never_run_out_before_crashes),
		cmocka_unit_test(test_interrupted_cancel_wins_over_the_crash),
		cmocka_unit_test(test_interrupted_edges_do_not_wrap),
		cmocka_unit_test(
		    test_forever_quick_exits_back_off_exponentially),
		cmocka_unit_test(
		    test_forever_long_run_restarts_at_once_and_resets),
		cmocka_unit_test(
		    test_forever_crashloop_within_window_and_recovery),
		cmocka_unit_test(
		    test_forever_restarts_spread_over_windows_are_no_crashloop),
		cmocka_unit_test(test_admit_refuses_what_does_not_fit),
		cmocka_unit_test(test_admit_without_limit_takes_everything),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
