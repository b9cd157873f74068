// test_faults.c: store failures injected into the real broker through the
// fault seam (broker/fault.h, armed with TB_FAULT in the broker's
// environment): a failed submit is refused with store_error, a failed
// task state change is kept and written once the store can write again,
// nothing acknowledged is lost, and the broker serves on.
//
// The countdowns (SQLite's test_malloc.c and faultsim): a scenario is run
// with the Nth hit of a fault site failing, for N = 1, 2, 3, ..., each run
// on a fresh broker, until a run in which the fault never fires. The first
// countdown fails each store commit of a scenario whose commits come in a
// known order, and checks which request or write it hit. The workload
// countdowns fail the Nth commit, WAL write (as an I/O error and as a full
// disk) and fsync of a workload whose writes interleave as they come
// (group commit), and check the guarantees: every submit is answered ok or
// store_error, every acknowledged task runs to done with its one attempt,
// the broker stops cleanly, and after a restart without the fault every
// acknowledged task is there. Pruning is off (--retention 0) and nothing
// runs in the background, so the scenario's writes are the only ones.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

// The workload countdowns: WL_SINGLE submits of one noop task, then a
// batch of WL_BATCH, each answered before the next is sent; the tasks run
// at once, so their starts and ends commit between the submits. WL_RUNS
// bounds a countdown (a workload that never ends fails the test).
#define WL_SINGLE 3
#define WL_BATCH 2
#define WL_TASKS (WL_SINGLE + WL_BATCH)
#define WL_RUNS 400

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
// its end has committed (a waiter is woken then). A failed start or end
// write is kept by the store and committed by its retry.
static void
wait_run_ended(tbh_fix *f, tb_id id)
{
	tb_task *t = tbh_wait_final(f->c, id, WAIT_MS);

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
// later task done after one attempt (a failed write of its start or end
// was kept and written, so it neither ran twice nor lost its end).
static void
check_acked(tbh_fix *f, const scenario *sc)
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
	if (sc->run != 0) {
		expect_task(f, sc->run, TB_STATE_DONE, 1, true);
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
	// Attempts to spare (an attempt whose end was not stored is run
	// again after the restart, as interrupted: refunded, one crash).
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
		wait_run_ended(f, sc.run);
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
		// Logged as a real failed COMMIT is: one line when the store
		// fails, one when it writes again (the next batch; below).
		expect_log(f, "store: cannot write: disk I/O error", 1);
	}
	// A state change is never given up: nothing is reported lost.
	expect_log(f, "store could not record state", 0);

	// Everything acknowledged before (and after) the failure is there,
	// and the broker serves on: a new task runs to done.
	check_acked(f, &sc);
	if (fired) {
		sc.later = tbh_submit(f->c, "noop", NULL, 0, &now);
		sc.acked++;
		expect_task(f, sc.later, TB_STATE_DONE, 1, true);
		expect_log(f, "store: writing again after", 1);
	}

	// And all of it is on disk: a restart without the fault finds it.
	tbh_fix_restart(f);
	check_acked(f, &sc);
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
test_faults_failed_start_write_is_kept_until_it_commits(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_id          id;

	// Commit 1 inserts the task; commit 2, the start of its attempt,
	// fails. The store keeps the write and commits it at its retry;
	// only then does the handler start, and the task ends done after
	// its one attempt, with nothing reported lost.
	start_armed(f, "store_commit:2");
	o.max_attempts = 1;
	id             = tbh_submit(f->c, "noop", NULL, 0, &o);
	expect_task(f, id, TB_STATE_DONE, 1, true);
	expect_log(f, "fault: store_commit fires at hit 2\n", 1);
	expect_log(f, "store: cannot write: ", 1);
	expect_log(f, "store: writing again after", 1);
	expect_log(f, "store could not record state", 0);
	tbh_fix_restart(f);
	expect_task(f, id, TB_STATE_DONE, 1, false);
	f->passed = true;
}

static void
test_faults_unwritten_start_never_runs_the_handler(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_task       *t;
	void          *p;
	size_t         len;
	tb_id          id;

	// Every commit from the second on fails: the start of the attempt
	// is kept in memory, never written, and the handler never starts
	// (an attempt runs only once it is counted in the store). The task
	// shows running from memory meanwhile. After kill -9 the store still
	// has it pending with no attempt, so it runs from there: one attempt,
	// not an interrupted one that would end it dead.
	start_armed(f, "store_commit:2+");
	o.max_attempts = 1;
	p              = tbh_pack_ms(50, &len);
	id             = tbh_submit(f->c, "sleep", p, len, &o);
	free(p);
	assert_int_equal(
	    tbh_wait_state(f->c, id, TB_STATE_RUNNING, WAIT_MS), 0);
	wait_log(f, "fault: store_commit fires at hit 3\n", WAIT_MS);
	expect_log(f, "store: cannot write: ", 1);
	t = tbh_status(f->c, id);
	assert_int_equal(tb_task_state(t), TB_STATE_RUNNING);
	tb_task_free(t);
	tbh_log_note(&f->b, "=== test: kill -9 and restart ===");
	assert_int_equal(tbh_kill9(&f->b), 0);
	assert_int_equal(tbh_restart(&f->b), 0);
	expect_task(f, id, TB_STATE_DONE, 1, true);
	f->passed = true;
}

// template_db is a task store with the schema and no task, made once by a
// broker without faults, so that a workload run's faults hit the workload
// and not the migration at the first start.
static char template_db[TBH_PATH];

static void
make_template(tbh_fix *f)
{
	char   path[TBH_PATH + 32];
	char  *db;
	size_t len;
	FILE  *fp;

	if (template_db[0] != '\0') {
		return;
	}
	tbh_fix_start(f, broker_args);
	tb_client_close(f->c);
	f->c = NULL;
	assert_int_equal(tbh_stop(&f->b, TBH_MS(15000)), 0);
	snprintf(path, sizeof(path), "%s/taskbroker.db", f->b.data_dir);
	assert_non_null(db = tbh_read_file(path, &len));
	snprintf(template_db, sizeof(template_db), "%s/tbh-template-%d.db",
	    tbh_tmp_root(), (int) getpid());
	assert_non_null(fp = fopen(template_db, "w"));
	assert_int_equal(fwrite(db, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
	free(db);
	tbh_cleanup(&f->b, false);
	memset(&f->b, 0, sizeof(f->b));
}

// start_from_template makes the fixture's dir, copies the template store
// into its data dir, and starts the broker armed with spec.
static void
start_from_template(tbh_fix *f, const char *spec)
{
	char   cfg[TBH_PATH + 32];
	char   path[TBH_PATH + 32];
	char  *db;
	size_t len;
	FILE  *fp;

	assert_int_equal(
	    tbh_write_config(&f->b, "unused.ini", "", cfg, sizeof(cfg)), 0);
	snprintf(path, sizeof(path), "%s/taskbroker.db", f->b.data_dir);
	assert_non_null(db = tbh_read_file(template_db, &len));
	assert_non_null(fp = fopen(path, "w"));
	assert_int_equal(fwrite(db, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
	free(db);
	start_armed(f, spec);
}

// workload_submit sends one submit (n tasks, a batch when n > 1) and adds
// the ids it is answered with to ids[*np]; a refusal must be store_error.
static void
workload_submit(tbh_fix *f, uint32_t n, tb_id *ids, size_t *np)
{
	tb_task_spec specs[WL_BATCH];
	tb_id        got[WL_BATCH] = { 0 };
	int          rv;

	assert_true(n >= 1 && n <= WL_BATCH);
	for (uint32_t i = 0; i < n; i++) {
		specs[i] = (tb_task_spec) { "noop", NULL, 0, NULL };
	}
	rv = n == 1 ? tb_submit(f->c, "noop", NULL, 0, NULL, &got[0])
	            : tb_submit_batch(f->c, specs, n, got);
	if (rv == TB_ESTORE) {
		return; // refused: nothing of it was acknowledged
	}
	TBH_OK(rv);
	for (uint32_t i = 0; i < n; i++) {
		assert_true(got[i] != 0);
		ids[(*np)++] = got[i];
	}
}

// workload_check checks that every acknowledged task ran to done after
// exactly one attempt: a write that failed was kept and written, so no
// attempt was lost or run twice.
static void
workload_check(tbh_fix *f, const tb_id *ids, size_t n, bool wait)
{
	for (size_t i = 0; i < n; i++) {
		expect_task(f, ids[i], TB_STATE_DONE, 1, wait);
	}
}

// workload_run runs the workload on a fresh broker whose site fails at
// its kth hit, checks it before and after a restart without the fault,
// and returns whether the fault fired.
static bool
workload_run(tbh_fix *f, const char *site, int k)
{
	tb_id  ids[WL_TASKS + 1];
	size_t n = 0;
	size_t total;
	char   spec[64];
	char   fires[64];
	bool   fired;

	snprintf(spec, sizeof(spec), "%s:%d", site, k);
	start_from_template(f, spec);
	for (int i = 0; i < WL_SINGLE; i++) {
		workload_submit(f, 1, ids, &n);
	}
	workload_submit(f, WL_BATCH, ids, &n);
	// Answered from memory, once the end of each is committed.
	workload_check(f, ids, n, true);
	snprintf(fires, sizeof(fires), "fault: %s fires at hit %d\n", site, k);
	fired = log_count(f, fires) == 1;
	expect_log(f, "fault: ", fired ? 2 : 1); // armed, fired
	expect_log(f, "store could not record state", 0);
	if (fired) {
		// The broker serves on: one more task (the first write after
		// a refused last submit) runs, and the store says it
		// recovered.
		expect_log(f, "store: cannot write: ", 1);
		ids[n] = tbh_submit(f->c, "noop", NULL, 0, NULL);
		expect_task(f, ids[n++], TB_STATE_DONE, 1, true);
		expect_log(f, "store: writing again after", 1);
	}
	// A clean stop (exit 0), then the store has everything.
	tbh_fix_restart(f);
	workload_check(f, ids, n, false);
	total = tbh_count(f->c, NULL, -1);
	if (strcmp(site, "store_fsync") == 0 ? total < n : total != n) {
		// After a failed fsync the refused write may be on disk all
		// the same (a refused submit's tasks then exist and run):
		// never fewer tasks than were acknowledged.
		print_error("%s: %zu tasks stored, %zu acknowledged\n", spec,
		    total, n);
		fail();
	}
	stop_fresh(f);
	return (fired);
}

// countdown_step is how far apart the hits a workload countdown fails
// are: 1 (every hit) unless TB_COUNTDOWN_STEP says otherwise. The
// ThreadSanitizer run of CI sets it: there a broker takes about a second
// to start and every hit of WAL writes costs two starts, so the full
// countdown (done by the plain and ASan runs) would take many minutes
// while it looks for races, not for a missed hit.
static int
countdown_step(void)
{
	const char *s    = getenv("TB_COUNTDOWN_STEP");
	int         step = s != NULL ? atoi(s) : 1;

	return (step >= 1 ? step : 1);
}

// workload_countdown fails site at hit k = 1, 1 + step, ... until a run in
// which it does not fire, and reports how many runs that took.
static void
workload_countdown(tbh_fix *f, const char *site)
{
	int64_t t0   = tbh_now_ms();
	int     step = countdown_step();
	int     k, runs = 0;

	make_template(f);
	for (k = 1;; k += step) {
		runs++;
		if (!workload_run(f, site, k)) {
			break;
		}
		if (k >= WL_RUNS) {
			print_error(
			    "%s: still firing after %d runs\n", site, runs);
			fail();
		}
	}
	assert_true(runs > 1); // the workload hit the site at least once
	print_message("countdown %s: %d runs (fault fired in %d, every %d "
	              "hit) in %lld ms\n",
	    site, runs, runs - 1, step, (long long) (tbh_now_ms() - t0));
	f->passed = true;
}

static void
test_faults_countdown_workload_commit(void **state)
{
	workload_countdown(*state, "store_commit");
}

static void
test_faults_countdown_workload_wal_write(void **state)
{
	workload_countdown(*state, "store_wal_write");
}

static void
test_faults_countdown_workload_wal_full(void **state)
{
	workload_countdown(*state, "store_wal_full");
}

static void
test_faults_countdown_workload_fsync(void **state)
{
	workload_countdown(*state, "store_fsync");
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
		T(test_faults_failed_start_write_is_kept_until_it_commits),
		T(test_faults_unwritten_start_never_runs_the_handler),
		T(test_faults_countdown_workload_commit),
		T(test_faults_countdown_workload_wal_write),
		T(test_faults_countdown_workload_wal_full),
		T(test_faults_countdown_workload_fsync),
		T(test_faults_bad_spec_stops_the_start),
	};

	int rv;

	tbh_filter_from_env();
	rv = cmocka_run_group_tests(tests, NULL, NULL);
	if (template_db[0] != '\0') {
		(void) unlink(template_db);
	}
	return (rv);
}
