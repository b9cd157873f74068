// test_faults.c: store failures injected into the real broker through the
// fault seam (broker/fault.h, armed with TB_FAULT in the broker's
// environment): a failed write is refused or logged exactly as a real
// failed COMMIT would be, nothing acknowledged is lost, and the broker
// serves on.
//
// The countdown (SQLite's test_malloc.c): a scenario whose store commits
// come in a known order is run with the Nth commit failing, for N = 1, 2,
// 3, ..., each run on a fresh broker, until a run in which the fault never
// fires and everything succeeds. Pruning is off (--retention 0) and
// nothing runs in the background, so the scenario's commits are the only
// ones; the broker's log says at which hit the fault fired, and the test
// checks that it is the one it expected.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define WAIT_MS TBH_MS(10000)
#define DELAY_MS 3600000u // delayed tasks stay pending for the whole test
#define BATCH 3

// The commits of the countdown scenario, in order, when none fails.
enum step {
	STEP_SUBMIT_A = 1, // one delayed task
	STEP_SUBMIT_B,     // another one
	STEP_SUBMIT_BATCH, // BATCH delayed tasks in one request
	STEP_SUBMIT_RUN,   // a noop task that runs at once: its insert,
	STEP_START_RUN,    // the start of its attempt (running, attempt 1),
	STEP_END_RUN,      // and its end (done)
	NSTEPS = STEP_END_RUN,
};

static const char *const broker_args[] = { "--retention", "0", NULL };

// start_armed starts the fixture's broker with TB_FAULT=spec in its
// environment only; a restart runs without it.
static void
start_armed(tbh_fix *f, const char *spec)
{
	assert_int_equal(setenv("TB_FAULT", spec, 1), 0);
	tbh_fix_start(f, broker_args);
	unsetenv("TB_FAULT");
	tbh_log_note(&f->b, "=== test: TB_FAULT=%s ===", spec);
}

// stop_fresh stops the fixture's broker, removes its dir and zeroes it for
// the next start.
static void
stop_fresh(tbh_fix *f)
{
	tb_client_close(f->c); // while the broker still answers
	f->c = NULL;
	tbh_cleanup(&f->b, false);
	memset(&f->b, 0, sizeof(f->b));
}

// log_count returns how many times needle occurs in the broker's log.
static int
log_count(const tbh_fix *f, const char *needle)
{
	char       *log = tbh_read_file(f->b.log_path, NULL);
	const char *p;
	int         n = 0;

	assert_non_null(log);
	for (p = log; (p = strstr(p, needle)) != NULL; p += strlen(needle)) {
		n++;
	}
	free(log);
	return (n);
}

// expect_log fails unless the broker's log holds needle exactly want
// times (want < 0: at least once).
static void
expect_log(const tbh_fix *f, const char *needle, int want)
{
	int n = log_count(f, needle);

	if (want < 0 ? n == 0 : n != want) {
		print_error("broker log: \"%s\" %d times, want %s%d\n", needle,
		    n, want < 0 ? "at least " : "", want < 0 ? 1 : want);
		fail();
	}
}

// expect_task fails unless task id is in state with attempts attempts;
// a final state is waited for (wait set), the others read at once.
static void
expect_task(tbh_fix *f, tb_id id, int state, uint32_t attempts, bool wait)
{
	tb_task *t =
	    wait ? tbh_wait_final(f->c, id, WAIT_MS) : tbh_status(f->c, id);

	tbh_expect_state(t, state);
	if (tb_task_attempts(t) != attempts) {
		print_error("task %llu: %u attempts, want %u\n",
		    (unsigned long long) id, tb_task_attempts(t), attempts);
		tb_task_free(t);
		fail();
	}
	tb_task_free(t);
}

// submit_at submits one task as step step of a run whose commit n fails:
// refused with TB_ESTORE at that step, else accepted. Returns its id, or 0.
static tb_id
submit_at(
    tbh_fix *f, int step, int n, const char *handler, const tb_submit_opts *o)
{
	tb_id id = 0;
	int   rv = tb_submit(f->c, handler, NULL, 0, o, &id);

	if (step == n) {
		TBH_RV(rv, TB_ESTORE);
		return (0);
	}
	TBH_OK(rv);
	assert_true(id != 0);
	return (id);
}

// wait_log polls the broker's log until it holds needle or timeout_ms
// passes; fails the test then.
static void
wait_log(const tbh_fix *f, const char *needle, int timeout_ms)
{
	int64_t deadline = tbh_now_ms() + timeout_ms;

	while (log_count(f, needle) == 0) {
		if (tbh_now_ms() >= deadline) {
			print_error("broker log: no \"%s\" within %d ms\n",
			    needle, timeout_ms);
			fail();
		}
		tbh_sleep_ms(10);
	}
}

// wait_run_ended waits until the noop task id has ended and the write of
// its end has come back. end_lost: that write fails. The broker then
// forgets the task as ended while the store still says running, so status
// and wait would answer from the store (running) until a restart; the
// test waits for the broker's log line instead and checks the stored
// state after the restart.
static void
wait_run_ended(tbh_fix *f, tb_id id, bool end_lost)
{
	char     line[96];
	tb_task *t;

	if (end_lost) {
		snprintf(line, sizeof(line),
		    "task %llu: store could not record state done",
		    (unsigned long long) id);
		wait_log(f, line, WAIT_MS);
		return;
	}
	// Answered once the end is committed (a waiter is woken then).
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);
}

// scenario is what one countdown run had acknowledged.
typedef struct scenario {
	int    n; // the commit that fails
	tb_id  a, b;
	tb_id  batch[BATCH]; // all 0 if the batch was refused
	tb_id  run;          // the noop task, 0 if refused
	tb_id  later;        // submitted after the fault fired, 0 if none
	size_t acked;        // tasks acknowledged
} scenario;

// check_acked checks every task the run acknowledged, and that there are
// no others: the delayed ones pending and untouched, the noop and the
// later task done. restarted: after a restart, when the noop task whose
// end was not recorded has run again.
static void
check_acked(tbh_fix *f, const scenario *sc, bool restarted)
{
	if (sc->a != 0) {
		expect_task(f, sc->a, TB_STATE_PENDING, 0, false);
	}
	if (sc->b != 0) {
		expect_task(f, sc->b, TB_STATE_PENDING, 0, false);
	}
	for (int i = 0; i < BATCH; i++) {
		if (sc->batch[i] != 0) {
			expect_task(
			    f, sc->batch[i], TB_STATE_PENDING, 0, false);
		}
	}
	if (sc->run != 0 && (restarted || sc->n != STEP_END_RUN)) {
		// Its end not stored, the store still says running: after the
		// restart that attempt counts as interrupted and the task runs
		// again (at-least-once), ending done after its second attempt.
		expect_task(f, sc->run, TB_STATE_DONE,
		    restarted && sc->n == STEP_END_RUN ? 2 : 1, true);
	}
	if (sc->later != 0) {
		expect_task(f, sc->later, TB_STATE_DONE, 1, true);
	}
	assert_int_equal(tbh_count(f->c, NULL, -1), sc->acked);
}

// countdown_run runs the scenario on a fresh broker whose store commit n
// fails, checks it, and returns whether the fault fired.
static bool
countdown_run(tbh_fix *f, int n)
{
	tb_submit_opts delayed = TB_SUBMIT_OPTS_INIT;
	tb_submit_opts now     = TB_SUBMIT_OPTS_INIT;
	tb_task_spec   specs[BATCH];
	tb_id          ids[BATCH] = { 0 };
	scenario       sc         = { .n = n };
	char           spec[64];
	char           fired_at[64];
	bool           fired;
	int            rv;

	print_message("countdown: TB_FAULT=store_commit:%d\n", n);
	snprintf(spec, sizeof(spec), "store_commit:%d", n);
	start_armed(f, spec);
	delayed.delay_ms = DELAY_MS;
	// Attempts to spare: an attempt whose end was not stored is run
	// again after the restart, not ended dead as interrupted.
	now.max_attempts = 3;

	sc.a = submit_at(f, STEP_SUBMIT_A, n, "noop", &delayed);
	sc.b = submit_at(f, STEP_SUBMIT_B, n, "noop", &delayed);
	for (int i = 0; i < BATCH; i++) {
		specs[i] = (tb_task_spec) { "noop", NULL, 0, &delayed };
	}
	rv = tb_submit_batch(f->c, specs, BATCH, ids);
	if (n == STEP_SUBMIT_BATCH) {
		TBH_RV(rv, TB_ESTORE); // all or nothing
	} else {
		TBH_OK(rv);
		memcpy(sc.batch, ids, sizeof(ids));
	}
	// The noop task's insert, start and end are three commits in a
	// row: the next insert waits for its end to be answered.
	sc.run = submit_at(f, STEP_SUBMIT_RUN, n, "noop", &now);
	if (sc.run != 0) {
		wait_run_ended(f, sc.run, n == STEP_END_RUN);
	}
	sc.acked = (sc.a != 0) + (sc.b != 0) + (sc.run != 0) +
	    (sc.batch[0] != 0 ? BATCH : 0);

	// The log says whether, and at which hit, the fault fired.
	fired = n <= NSTEPS;
	snprintf(fired_at, sizeof(fired_at),
	    "fault: store_commit fires at "
	    "hit %d\n",
	    n);
	expect_log(f, fired_at, fired ? 1 : 0);
	expect_log(f, "fault: store_commit fires", fired ? 1 : 0);
	if (fired) {
		// Logged as a real failed COMMIT is.
		expect_log(f, "store: batch of ", 1);
	}
	if (n <= STEP_SUBMIT_RUN) {
		expect_log(f, "submit: store failed;", 1);
	} else if (n == STEP_START_RUN) {
		expect_log(f, "store could not record state running", 1);
	} else if (n == STEP_END_RUN) {
		expect_log(f, "store could not record state done", 1);
	}

	// Everything acknowledged before (and after) the failure is there,
	// and the broker serves on: a new task runs to done.
	check_acked(f, &sc, false);
	if (fired) {
		sc.later = tbh_submit(f->c, "noop", NULL, 0, &now);
		sc.acked++;
		expect_task(f, sc.later, TB_STATE_DONE, 1, true);
	}

	// And all of it is on disk: a restart without the fault finds it.
	tbh_fix_restart(f);
	check_acked(f, &sc, true);
	expect_log(f, "fault: store_commit fires", fired ? 1 : 0);
	stop_fresh(f);
	return (fired);
}

static void
test_faults_countdown_store_commit(void **state)
{
	tbh_fix *f = *state;
	int      n;

	for (n = 1; countdown_run(f, n); n++) {
		assert_true(n <= NSTEPS); // the scenario must end
	}
	// The first run the fault did not reach is the one past the last
	// commit: every commit of the scenario has been failed once.
	assert_int_equal(n, NSTEPS + 1);
	f->passed = true;
}

static void
test_faults_store_begin_refuses_one_submit(void **state)
{
	tbh_fix *f  = *state;
	tb_id    id = 0;

	start_armed(f, "store_begin:1");
	TBH_RV(tb_submit(f->c, "noop", NULL, 0, NULL, &id), TB_ESTORE);
	expect_log(f, "fault: store_begin fires at hit 1\n", 1);
	assert_int_equal(tbh_count(f->c, NULL, -1), 0);
	id = tbh_submit(f->c, "noop", NULL, 0, NULL);
	expect_task(f, id, TB_STATE_DONE, 1, true);
	tbh_fix_restart(f);
	expect_task(f, id, TB_STATE_DONE, 1, false);
	assert_int_equal(tbh_count(f->c, NULL, -1), 1);
	f->passed = true;
}

static void
test_faults_store_insert_refuses_the_whole_batch(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_task_spec   specs[BATCH];
	tb_id          ids[BATCH] = { 0 };

	// The second row of the batch fails: the first is rolled back too.
	start_armed(f, "store_insert:2");
	o.delay_ms = DELAY_MS;
	for (int i = 0; i < BATCH; i++) {
		specs[i] = (tb_task_spec) { "noop", NULL, 0, &o };
	}
	TBH_RV(tb_submit_batch(f->c, specs, BATCH, ids), TB_ESTORE);
	expect_log(f, "fault: store_insert fires at hit 2\n", 1);
	assert_int_equal(tbh_count(f->c, NULL, -1), 0);
	TBH_OK(tb_submit_batch(f->c, specs, BATCH, ids));
	tbh_fix_restart(f);
	for (int i = 0; i < BATCH; i++) {
		expect_task(f, ids[i], TB_STATE_PENDING, 0, false);
	}
	assert_int_equal(tbh_count(f->c, NULL, -1), BATCH);
	f->passed = true;
}

static void
test_faults_persistent_commit_failure_refuses_every_write(void **state)
{
	tbh_fix *f  = *state;
	tb_id    id = 0;

	// A store that cannot commit at all (a full disk, say): every
	// submit is refused, reads still work, and nothing is lost or
	// half-written once the store works again.
	start_armed(f, "store_commit:1+");
	for (int i = 0; i < 3; i++) {
		TBH_RV(tb_submit(f->c, "noop", NULL, 0, NULL, &id), TB_ESTORE);
	}
	TBH_OK(tb_ping(f->c, NULL));
	assert_int_equal(tbh_count(f->c, NULL, -1), 0);
	expect_log(f, "fault: store_commit fires at hit 3\n", 1);
	tbh_fix_restart(f);
	assert_int_equal(tbh_count(f->c, NULL, -1), 0);
	id = tbh_submit(f->c, "noop", NULL, 0, NULL);
	expect_task(f, id, TB_STATE_DONE, 1, true);
	f->passed = true;
}

static void
test_faults_lost_start_then_crash_runs_from_stored_state(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_task       *t;
	void          *p;
	size_t         len;
	tb_id          id;

	// Commit 1 inserts the task; commit 2, the start of its attempt,
	// fails. The handler runs all the same (logged), and the broker
	// dies during it: the store still has the task pending with no
	// attempt, so after the restart it runs again from there.
	start_armed(f, "store_commit:2");
	o.max_attempts = 1;
	p              = tbh_pack_ms(2000, &len);
	id             = tbh_submit(f->c, "sleep", p, len, &o);
	free(p);
	// Running in memory from dispatch on; the failed write comes back
	// after that, and is logged.
	assert_int_equal(
	    tbh_wait_state(f->c, id, TB_STATE_RUNNING, WAIT_MS), 0);
	wait_log(f, "store could not record state running", WAIT_MS);
	expect_log(f, "fault: store_commit fires at hit 2\n", 1);
	assert_int_equal(tbh_wait_state(f->c, id, TB_STATE_RUNNING, 0), 0);
	tbh_log_note(&f->b, "=== test: kill -9 and restart ===");
	assert_int_equal(tbh_kill9(&f->b), 0);
	assert_int_equal(tbh_restart(&f->b), 0);
	// Not ended yet: the first run was cut short (it sleeps 2 s), and
	// this is a second one.
	t = tbh_status(f->c, id);
	assert_false(tb_state_is_final(tb_task_state(t)));
	tb_task_free(t);
	// One attempt, not two: the one cut short was never stored, so it
	// neither counts nor makes the single allowed attempt the last (it
	// would have ended dead, "interrupted").
	expect_task(f, id, TB_STATE_DONE, 1, true);
	f->passed = true;
}

static void
test_faults_bad_spec_stops_the_start(void **state)
{
	tbh_fix *f = *state;
	int      rv;

	assert_int_equal(setenv("TB_FAULT", "store_commit:0", 1), 0);
	rv = tbh_start(&f->b, broker_args);
	unsetenv("TB_FAULT");
	assert_int_equal(rv, -1);
	assert_false(tbh_running(&f->b));
	assert_int_equal(tbh_exit_code(&f->b), 2);
	expect_log(f, "fault: bad TB_FAULT entry \"store_commit:0\"", 1);
	f->passed = true;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, tbh_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_faults_countdown_store_commit),
		T(test_faults_store_begin_refuses_one_submit),
		T(test_faults_store_insert_refuses_the_whole_batch),
		T(test_faults_persistent_commit_failure_refuses_every_write),
		T(test_faults_lost_start_then_crash_runs_from_stored_state),
		T(test_faults_bad_spec_stops_the_start),
	};

	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
