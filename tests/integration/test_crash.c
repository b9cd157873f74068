// test_crash.c: kill -9 the broker under a flood of submissions; after a
// restart on the same data dir every acknowledged task exists and ends
// done (acknowledged-but-lost = 0). A crash is not a failure: an attempt
// cut short by the kill is not spent (tasks keep the default max_attempts
// 1 and still end done); it is counted in the task's crashes, and a task
// whose attempts were cut short max_crashes times (per task, per queue or
// the broker's) ends dead, quarantined. A database of the schema before
// crashes were counted opens with its tasks.
//
// The flooding producer is this binary re-executed with argv[1] = "--flood"
// (see main). It writes the ids of each acknowledged request to a file with
// write(2) right after the reply, so the file holds every acknowledgement
// the producer saw even though the broker dies mid-stream.

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define FLOOD_BATCH 20
#define MIN_ACKED 20000 // ids acknowledged before the kill
#define MAX_ACKED 1000000

// write_ids appends one line per id to fd in one write.
static int
write_ids(int fd, const tb_id *ids, size_t n)
{
	char   buf[FLOOD_BATCH * 24];
	size_t len = 0;

	for (size_t i = 0; i < n; i++) {
		len += (size_t) snprintf(buf + len, sizeof(buf) - len,
		    "%llu\n", (unsigned long long) ids[i]);
	}
	return (write(fd, buf, len) == (ssize_t) len ? 0 : -1);
}

// flood_main submits noop and sleep(1 ms) tasks to url, alternating one
// per request and batches of FLOOD_BATCH, until a submit fails (the broker
// died) or MAX_ACKED ids. Exit status 0 when it stopped on a broker error.
static int
flood_main(const char *url, const char *outfile)
{
	tb_client     *c;
	tb_task_spec   specs[FLOOD_BATCH];
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_id          ids[FLOOD_BATCH];
	void          *sleep1;
	size_t         sleep1_len;
	long           acked = 0;
	int            fd, rv = TB_OK;

	if ((fd = open(outfile, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC,
	         0644)) < 0) {
		fprintf(stderr, "flood: %s: %s\n", outfile, strerror(errno));
		return (1);
	}
	if ((rv = tb_client_open(&c, url)) != TB_OK ||
	    (rv = tb_client_set_timeout(c, 1000)) != TB_OK) {
		fprintf(stderr, "flood: open %s: %s\n", url, tb_errname(rv));
		return (1);
	}
	// The default max_attempts (1): a task interrupted by the kill
	// still ends done after the restart, since a crash spends no
	// attempt.
	sleep1 = tbh_pack_ms(1, &sleep1_len);
	for (int i = 0; i < FLOOD_BATCH; i++) {
		specs[i].handler     = i % 2 == 0 ? "noop" : "sleep";
		specs[i].payload     = i % 2 == 0 ? NULL : sleep1;
		specs[i].payload_len = i % 2 == 0 ? 0 : sleep1_len;
		specs[i].opts        = &o;
	}
	for (long round = 0; acked < MAX_ACKED; round++) {
		size_t n = round % 2 == 0 ? 1 : FLOOD_BATCH;

		if (n == 1) {
			rv = tb_submit(c, "noop", NULL, 0, &o, &ids[0]);
		} else {
			rv = tb_submit_batch(c, specs, n, ids);
		}
		if (rv != TB_OK) {
			break;
		}
		if (write_ids(fd, ids, n) != 0) {
			fprintf(stderr, "flood: write: %s\n", strerror(errno));
			rv = -1;
			break;
		}
		acked += (long) n;
	}
	fprintf(stderr, "flood: stopped after %ld acknowledged ids: %s\n",
	    acked, rv >= 0 ? tb_errname(rv) : "write error");
	close(fd);
	free(sleep1);
	tb_client_close(c);
	return (rv > 0 ? 0 : 1);
}

// count_lines counts the complete lines in path.
static size_t
count_lines(const char *path)
{
	size_t len, n = 0;
	char  *buf = tbh_read_file(path, &len);

	for (size_t i = 0; buf != NULL && i < len; i++) {
		n += buf[i] == '\n';
	}
	free(buf);
	return (n);
}

static void
crash_case(tbh_fix *f, const char *durability)
{
	const char *const args[] = { "--durability", durability, NULL };
	char              ids_path[TBH_PATH];
	pid_t             pid;
	int64_t           deadline;
	tb_id            *ids;
	size_t            nids, nrows, missing, notdone, wrong, crashed;
	tbh_row          *rows;
	int               code;

	tbh_fix_start(f, args);
	snprintf(ids_path, sizeof(ids_path), "%s/acked.ids", f->b.dir);
	const char *const fargs[] = { "--flood", f->b.url, ids_path, NULL };
	if (tbh_spawn_self(&pid, fargs, NULL, NULL) != 0) {
		fail();
	}

	// Kill once enough submissions were acknowledged (a condition, not
	// a sleep); the flood keeps going while the broker dies.
	deadline = tbh_now_ms() + TBH_MS(30000);
	while (count_lines(ids_path) < MIN_ACKED) {
		if (tbh_waitpid(pid, 0) >= 0) {
			print_error("the flooding producer exited before %d "
			            "acknowledgements\n",
			    MIN_ACKED);
			fail();
		}
		if (tbh_now_ms() >= deadline) {
			print_error("fewer than %d acknowledgements in 30 s "
			            "(%zu)\n",
			    MIN_ACKED, count_lines(ids_path));
			tbh_kill_reap(pid);
			fail();
		}
		tbh_sleep_ms(20);
	}
	assert_int_equal(tbh_kill9(&f->b), 0);
	code = tbh_waitpid(pid, TBH_MS(15000));
	if (code != 0) {
		print_error("flooding producer exit %d after the kill%s\n",
		    code, code < 0 ? " (still running; killed)" : "");
		tbh_kill_reap(pid);
		fail();
	}

	tb_client_close(f->c);
	f->c = NULL;
	tbh_log_note(&f->b, "restart after kill -9");
	if (tbh_restart(&f->b) != 0) {
		print_error("the broker did not restart on its data dir\n");
		fail();
	}
	f->c = tbh_client(&f->b, 10000);
	assert_non_null(f->c);

	assert_int_equal(tbh_read_ids(ids_path, &ids, &nids), 0);
	print_message(
	    "%s: %zu ids acknowledged before kill -9\n", durability, nids);
	assert_true(nids >= MIN_ACKED);

	deadline = tbh_now_ms() + TBH_MS(60000);
	for (;;) {
		TBH_OK(tbh_list_all(f->c, &rows, &nrows));
		missing = notdone = wrong = crashed = 0;
		for (size_t i = 0; i < nids; i++) {
			const tbh_row *r = tbh_find_row(rows, nrows, ids[i]);
			if (r == NULL) {
				if (missing++ < 10) {
					print_error(
					    "acknowledged task %llu is "
					    "not in the store after "
					    "restart\n",
					    (unsigned long long) ids[i]);
				}
			} else if (r->state != TB_STATE_DONE) {
				notdone++;
			} else {
				// Done: its one attempt counted once, and at
				// most the one kill counted as a crash.
				wrong += r->attempts != 1 || r->crashes > 1;
				crashed += r->crashes == 1;
			}
		}
		if (missing > 0 || notdone == 0 || tbh_now_ms() >= deadline) {
			break;
		}
		free(rows);
		tbh_sleep_ms(100);
	}
	print_message("%s: %zu tasks in the store, %zu acknowledged ids "
	              "missing, %zu not done, %zu interrupted by the kill "
	              "(crashes 1), %zu with other figures\n",
	    durability, nrows, missing, notdone, crashed, wrong);
	if (notdone > 0 || wrong > 0) {
		for (size_t i = 0, shown = 0; i < nids && shown < 10; i++) {
			const tbh_row *r = tbh_find_row(rows, nrows, ids[i]);
			if (r != NULL &&
			    (r->state != TB_STATE_DONE || r->attempts != 1 ||
			        r->crashes > 1)) {
				print_error(
				    "task %llu: %s, attempts %u, crashes %u\n",
				    (unsigned long long) r->id,
				    tb_state_name(r->state), r->attempts,
				    r->crashes);
				shown++;
			}
		}
	}
	free(rows);
	free(ids);
	assert_int_equal(missing, 0);
	assert_int_equal(notdone, 0);
	assert_int_equal(wrong, 0);
	assert_true(tbh_running(&f->b));
	f->passed = true;
}

static void
test_kill9_under_flood_loses_no_acknowledged_task_full(void **state)
{
	crash_case(*state, "full");
}

static void
test_kill9_under_flood_loses_no_acknowledged_task_normal(void **state)
{
	// synchronous=NORMAL survives a crash of the process (not of the
	// machine), so a kill -9 must lose nothing here either.
	crash_case(*state, "normal");
}

#define WAIT_MS TBH_MS(20000)
#define LONG_MS 60000 // a sleep that outlives every test: only kills end it

// expect_starts receives events until each of the n tasks ids has sent its
// "start" event (published once the start of the attempt has committed,
// when the handler really runs), each with crashes[i] crashes so far; fails
// after ms. Other events are skipped.
static void
expect_starts(tb_sub *s, const tb_id *ids, size_t n, uint32_t crashes, int ms)
{
	int64_t deadline = tbh_now_ms() + ms;
	bool    seen[64] = { false };
	size_t  left     = n;

	assert_true(n <= 64);
	while (left > 0) {
		tb_event *e = NULL;
		int64_t   t = deadline - tbh_now_ms();

		if (t <= 0 || tb_sub_recv(s, (int) t, &e) != TB_OK) {
			print_error(
			    "%zu of %zu tasks sent no start event within "
			    "%d ms\n",
			    left, n, ms);
			fail();
		}
		for (size_t i = 0; i < n; i++) {
			if (seen[i] || tb_event_task_id(e) != ids[i] ||
			    strcmp(tb_event_name(e), "start") != 0) {
				continue;
			}
			if (tb_event_crashes(e) != crashes) {
				print_error(
				    "task %llu started with %u crashes, "
				    "want %u\n",
				    (unsigned long long) ids[i],
				    tb_event_crashes(e), crashes);
				tb_event_free(e);
				fail();
			}
			seen[i] = true;
			left--;
		}
		tb_event_free(e);
	}
}

// kill9_restart kills the broker (SIGKILL) while its tasks run, starts it
// again on the same data dir and, with sub, subscribes afresh. The
// subscription is closed first, while the broker still answers; the client
// is kept and reconnects by itself.
static void
kill9_restart(tbh_fix *f, bool sub)
{
	tb_sub_close(f->sub);
	f->sub = NULL;
	assert_int_equal(tbh_kill9(&f->b), 0);
	tbh_log_note(&f->b, "=== test: restart after kill -9 ===");
	if (tbh_restart(&f->b) != 0) {
		print_error("the broker did not restart on its data dir\n");
		fail();
	}
	if (sub) {
		f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	}
}

// expect_task checks task id's state and figures now (or, with final, once
// it has ended); error (may be NULL: any) must be its error text exactly.
static void
expect_task(tbh_fix *f, tb_id id, bool final, int state, uint32_t attempts,
    uint32_t crashes, uint32_t max_crashes, const char *error)
{
	tb_task *t =
	    final ? tbh_wait_final(f->c, id, WAIT_MS) : tbh_status(f->c, id);
	const char *e = tb_task_error(t);

	if (tb_task_state(t) != state || tb_task_attempts(t) != attempts ||
	    tb_task_crashes(t) != crashes ||
	    tb_task_max_crashes(t) != max_crashes ||
	    (error != NULL && (e == NULL || strcmp(e, error) != 0))) {
		print_error("task %llu: %s, attempts %u, crashes %u/%u, error "
		            "'%s'; want %s, attempts %u, crashes %u/%u, error "
		            "'%s'\n",
		    (unsigned long long) id, tb_state_name(tb_task_state(t)),
		    tb_task_attempts(t), tb_task_crashes(t),
		    tb_task_max_crashes(t), e != NULL ? e : "(none)",
		    tb_state_name(state), attempts, crashes, max_crashes,
		    error != NULL ? error : "(any)");
		tb_task_free(t);
		fail();
	}
	tb_task_free(t);
}

// submit_ms submits handler {"ms": ms} to queue (NULL: default) with
// max_crashes (0: the default) and otherwise default options.
static tb_id
submit_ms(tbh_fix *f, const char *handler, uint64_t ms, const char *queue,
    uint32_t max_crashes)
{
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	size_t         len;
	void          *p = tbh_pack_ms(ms, &len);
	tb_id          id;

	o.queue       = queue;
	o.max_crashes = max_crashes;
	id            = tbh_submit(f->c, handler, p, len, &o);
	free(p);
	return (id);
}

// kill -9 while loop (sleep) and pool (block) tasks with the default
// options (max_attempts 1) run: after the restart each runs again and ends
// done, its attempt counted once and one crash counted; the CLI shows it.
static void
test_kill9_during_attempts_refunds_them_and_counts_one_crash(void **state)
{
	tbh_fix    *f = *state;
	tb_id       ids[20];
	size_t      n = 0;
	char        idstr[32];
	char       *out;
	const char *want_error =
	    "interrupted: the broker stopped during attempt 1 (crash 1 of "
	    "max-crashes 3); it runs again";

	tbh_fix_start(f, NULL);
	f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	for (int i = 0; i < 16; i++) {
		ids[n++] = submit_ms(f, "sleep", 3000, NULL, 0);
	}
	for (int i = 0; i < 4; i++) { // the pool has 4 workers
		ids[n++] = submit_ms(f, "block", 3000, NULL, 0);
	}
	expect_starts(f->sub, ids, n, 0, WAIT_MS);
	expect_task(f, ids[0], false, TB_STATE_RUNNING, 1, 0, 3, NULL);

	kill9_restart(f, false);
	// Interrupted: pending again, or already running its next attempt;
	// the crash is counted and said until the attempt ends.
	for (size_t i = 0; i < n; i++) {
		tb_task *t = tbh_status(f->c, ids[i]);
		if ((tb_task_state(t) != TB_STATE_PENDING &&
		        tb_task_state(t) != TB_STATE_RUNNING) ||
		    tb_task_crashes(t) != 1 || tb_task_error(t) == NULL ||
		    strcmp(tb_task_error(t), want_error) != 0) {
			print_error("task %llu after the restart: %s, crashes "
			            "%u, error '%s'\n",
			    (unsigned long long) ids[i],
			    tb_state_name(tb_task_state(t)),
			    tb_task_crashes(t),
			    tb_task_error(t) ? tb_task_error(t) : "(none)");
			tb_task_free(t);
			fail();
		}
		tb_task_free(t);
	}
	for (size_t i = 0; i < n; i++) {
		expect_task(f, ids[i], true, TB_STATE_DONE, 1, 1, 3, NULL);
		tb_task *t = tbh_status(f->c, ids[i]);
		assert_int_equal(tb_task_max_attempts(t), 1);
		assert_null(tb_task_error(t)); // done: the last attempt's text
		tb_task_free(t);
	}

	// The CLI shows crashes beside attempts.
	snprintf(idstr, sizeof(idstr), "%llu", (unsigned long long) ids[0]);
	const char *const st[] = { "status", idstr, NULL };
	out                    = tbh_cli_ok(&f->b, st);
	assert_non_null(strstr(out, "attempts:     1/1\n"));
	assert_non_null(strstr(out, "crashes:      1/3\n"));
	free(out);
	const char *const ls[] = { "ls", "--state", "done", NULL };
	out                    = tbh_cli_ok(&f->b, ls);
	assert_non_null(strstr(out, "CRASHES"));
	assert_non_null(strstr(out, "1/3"));
	free(out);
	// submit --max-crashes sets the task's limit; 0 is a usage error.
	const char *const sub[] = { "submit", "noop", "--max-crashes", "5",
		"--wait", "--json", NULL };
	out                     = tbh_cli_ok(&f->b, sub);
	assert_non_null(strstr(out, "\"max_crashes\":5"));
	assert_non_null(strstr(out, "\"crashes\":0"));
	free(out);
	const char *const bad[] = { "submit", "noop", "--max-crashes", "0",
		NULL };
	free(tbh_cli_expect(&f->b, 2, bad));
	f->passed = true;
}

// quarantine_msg writes the error of a task quarantined after n crashes.
static const char *
quarantine_msg(char *buf, size_t size, uint32_t n)
{
	snprintf(buf, size,
	    "quarantined: the broker stopped during %u attempts of this task "
	    "(max-crashes %u); it may be what kills it",
	    n, n);
	return (buf);
}

// A task the broker dies during, every time, ends dead after max_crashes
// crashes instead of looping: the per-task limit (2) wins over its
// queue's, a [queue] section's (1) over the broker's, and the broker's
// (--max-crashes 4 in the config file) over the default 3. Each round runs
// the live tasks until their start events say the handler runs, pauses
// their queues (so that after the restart they wait, and each round is one
// attempt), and kills the broker.
static void
test_kill9_during_each_attempt_quarantines_at_max_crashes(void **state)
{
	tbh_fix          *f   = *state;
	const char *const ini = "[broker]\nmax-crashes = 4\n"
	                        "[queue fragile]\nmax-crashes = 1\n";
	enum { A, B, C, D, N };
	tb_id          ids[N];
	const uint32_t max[N]  = { 2, 4, 1, 100 };
	bool           dead[N] = { false };
	char           msg[256];

	tbh_fix_start_config(f, ini, NULL);
	f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	TBH_OK(tb_pause(f->c, "cq"));
	TBH_OK(tb_pause(f->c, "fragile"));
	ids[A] = submit_ms(f, "sleep", LONG_MS, "cq", 2);
	ids[B] = submit_ms(f, "sleep", LONG_MS, "cq", 0);
	ids[C] = submit_ms(f, "sleep", LONG_MS, "fragile", 0);
	ids[D] = submit_ms(f, "block", LONG_MS, "cq", 100);
	for (int i = 0; i < N; i++) {
		expect_task(
		    f, ids[i], false, TB_STATE_PENDING, 0, 0, max[i], NULL);
	}

	for (uint32_t round = 1; round <= 4; round++) {
		tb_id  live[N];
		int    idx[N];
		size_t n = 0;

		for (int i = 0; i < N; i++) {
			if (!dead[i]) {
				idx[n]    = i;
				live[n++] = ids[i];
			}
		}
		print_message(
		    "round %u: %zu task(s) run, then kill -9\n", round, n);
		TBH_OK(tb_resume(f->c, "cq"));
		if (!dead[C]) {
			TBH_OK(tb_resume(f->c, "fragile"));
		}
		expect_starts(f->sub, live, n, round - 1, WAIT_MS);
		for (size_t i = 0; i < n; i++) {
			// Each attempt counted before it ran, only one.
			expect_task(f, live[i], false, TB_STATE_RUNNING, 1,
			    round - 1, max[idx[i]], NULL);
		}
		TBH_OK(tb_pause(f->c, "cq"));
		TBH_OK(tb_pause(f->c, "fragile"));
		kill9_restart(f, round < 4);

		for (int i = 0; i < N; i++) {
			if (dead[i]) {
				continue; // it stays as it ended
			}
			if (round >= max[i]) {
				dead[i] = true;
				expect_task(f, ids[i], true, TB_STATE_DEAD, 0,
				    max[i], max[i],
				    quarantine_msg(msg, sizeof(msg), max[i]));
			} else {
				expect_task(f, ids[i], false, TB_STATE_PENDING,
				    0, round, max[i], NULL);
			}
		}
	}
	assert_true(dead[A] && dead[B] && dead[C] && !dead[D]);
	// The ended ones stay so across another restart (read back from the
	// store, not from memory).
	tbh_fix_restart(f);
	expect_task(f, ids[A], false, TB_STATE_DEAD, 0, 2, 2,
	    quarantine_msg(msg, sizeof(msg), 2));
	expect_task(f, ids[C], false, TB_STATE_DEAD, 0, 1, 1,
	    quarantine_msg(msg, sizeof(msg), 1));
	expect_task(f, ids[D], false, TB_STATE_PENDING, 0, 4, 100, NULL);
	// A retry gives a quarantined task a clean slate: attempts and
	// crashes both start again from 0.
	TBH_OK(tb_retry(f->c, ids[C]));
	expect_task(f, ids[C], false, TB_STATE_PENDING, 0, 0, 1, NULL);
	TBH_OK(tb_cancel(f->c, ids[C], NULL));
	TBH_OK(tb_cancel(f->c, ids[D], NULL));
	f->passed = true;
}

// SCHEMA_V2 is the task store exactly as schema version 2 shipped it
// (store.c's migrations 0 -> 1 -> 2), before crashes were counted.
#define SCHEMA_V2                                                            \
	"CREATE TABLE tasks(id INTEGER PRIMARY KEY, sid BLOB NOT NULL "      \
	"UNIQUE, queue TEXT NOT NULL, handler TEXT NOT NULL, payload BLOB, " \
	"priority INTEGER NOT NULL, state INTEGER NOT NULL, attempts "       \
	"INTEGER NOT NULL, max_attempts INTEGER NOT NULL, timeout_ms "       \
	"INTEGER NOT NULL, run_at INTEGER NOT NULL, created_at INTEGER "     \
	"NOT NULL, started_at INTEGER NOT NULL, finished_at INTEGER NOT "    \
	"NULL, result BLOB, error TEXT);"                                    \
	"CREATE INDEX tasks_unfinished ON tasks(state) "                     \
	"WHERE (state < 2 OR state = 3);"                                    \
	"CREATE INDEX tasks_queue_state ON tasks(queue, state);"             \
	"ALTER TABLE tasks ADD COLUMN key TEXT;"                             \
	"ALTER TABLE tasks ADD COLUMN forever INTEGER NOT NULL DEFAULT 0;"   \
	"CREATE TABLE queues(name TEXT PRIMARY KEY, paused INTEGER NOT "     \
	"NULL DEFAULT 0);"                                                   \
	"CREATE TABLE schedules(name TEXT PRIMARY KEY, handler TEXT NOT "    \
	"NULL, queue TEXT NOT NULL, payload BLOB, priority INTEGER NOT "     \
	"NULL, max_attempts INTEGER NOT NULL, timeout_ms INTEGER NOT "       \
	"NULL, every_ms INTEGER NOT NULL, cron TEXT, catch_up INTEGER NOT "  \
	"NULL, paused INTEGER NOT NULL, created_at INTEGER NOT NULL, "       \
	"next_at INTEGER NOT NULL, last_at INTEGER NOT NULL, fired "         \
	"INTEGER NOT NULL, last_task INTEGER NOT NULL);"                     \
	"CREATE TABLE meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL);"         \
	"CREATE INDEX tasks_queue_state_finished"                            \
	"  ON tasks(queue, state, finished_at);"

// A data dir left by the previous broker (schema 2) as kill -9 left it,
// its task 1 running: the new broker migrates it, keeps every task, runs
// the interrupted one again as interrupted (one crash, the queue's
// max-crashes filled in, its one attempt not spent) and the pending one.
static void
test_schema2_store_opens_with_its_tasks_and_interrupts_the_running_one(
    void **state)
{
	tbh_fix *f = *state;
	char     cfg[TBH_PATH], db_path[TBH_PATH + 16];
	sqlite3 *db  = NULL;
	char    *err = NULL;
	tb_task *t;
	tb_id    id;

	// The harness makes the dir before the first start.
	assert_int_equal(
	    tbh_write_config(&f->b, "unused.ini", "", cfg, sizeof(cfg)), 0);
	snprintf(db_path, sizeof(db_path), "%s/taskbroker.db", f->b.data_dir);
	assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
	if (sqlite3_exec(db,
	        "PRAGMA journal_mode = WAL;" SCHEMA_V2
	        // 1: running ({"ms": 50}); 2: pending; 3: done with a key;
	        // 4: dead with an error.
	        "INSERT INTO tasks VALUES(1, "
	        "x'01000000000000000000000000000000', 'default', 'sleep', "
	        "x'81a26d7332', 0, 1, 1, 1, 0, 10, 11, 12, 0, NULL, NULL, "
	        "NULL, 0);"
	        "INSERT INTO tasks VALUES(2, "
	        "x'02000000000000000000000000000000', 'default', 'noop', "
	        "NULL, 0, 0, 0, 1, 0, 20, 21, 0, 0, NULL, NULL, NULL, 0);"
	        "INSERT INTO tasks VALUES(3, "
	        "x'03000000000000000000000000000000', 'default', 'noop', "
	        "NULL, 0, 2, 1, 1, 0, 30, 31, 32, 33, NULL, NULL, 'k-3', "
	        "0);"
	        "INSERT INTO tasks VALUES(4, "
	        "x'04000000000000000000000000000000', 'default', 'noop', "
	        "NULL, 0, 4, 1, 1, 0, 40, 41, 42, 43, NULL, 'old error', "
	        "NULL, 0);"
	        "INSERT INTO meta VALUES('max_id', 4);"
	        "PRAGMA user_version = 2;",
	        NULL, NULL, &err) != SQLITE_OK) {
		print_error("building the schema-2 store: %s\n", err);
		sqlite3_free(err);
		sqlite3_close(db);
		fail();
	}
	sqlite3_close(db);

	tbh_fix_start(f, NULL);
	expect_task(f, 1, true, TB_STATE_DONE, 1, 1, 3, NULL);
	expect_task(f, 2, true, TB_STATE_DONE, 1, 0, 3, NULL);
	// Ended before the migration: as they were, crashes 0 and no limit
	// recorded (0).
	expect_task(f, 3, false, TB_STATE_DONE, 1, 0, 0, NULL);
	t = tbh_status(f->c, 3);
	assert_string_equal(tb_task_key(t), "k-3");
	assert_true(tb_task_finished_at(t) == 33);
	tb_task_free(t);
	expect_task(f, 4, false, TB_STATE_DEAD, 1, 0, 0, "old error");
	// Ids go on from the old store's highest.
	id = tbh_submit(f->c, "noop", NULL, 0, NULL);
	assert_int_equal(id, 5);
	expect_task(f, id, true, TB_STATE_DONE, 1, 0, 3, NULL);
	f->passed = true;
}

int
main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "--flood") == 0) {
		return (flood_main(argv[2], argv[3]));
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_kill9_under_flood_loses_no_acknowledged_task_full,
		    tbh_setup, tbh_teardown),
		cmocka_unit_test_setup_teardown(
		    test_kill9_under_flood_loses_no_acknowledged_task_normal,
		    tbh_setup, tbh_teardown),
		cmocka_unit_test_setup_teardown(
		    test_kill9_during_attempts_refunds_them_and_counts_one_crash,
		    tbh_setup, tbh_teardown),
		cmocka_unit_test_setup_teardown(
		    test_kill9_during_each_attempt_quarantines_at_max_crashes,
		    tbh_setup, tbh_teardown),
		cmocka_unit_test_setup_teardown(
		    test_schema2_store_opens_with_its_tasks_and_interrupts_the_running_one,
		    tbh_setup, tbh_teardown),
	};
	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
