// test_worker.c: workers through the real broker: real worker processes
// (tbworker.c, built beside this test; TB_WORKER_BIN) run tasks of the
// handler "job", which the broker declares with --worker-handler. Each
// test starts its own broker and workers, waits on conditions with
// deadlines (a worker's report line, a task's state, the workers list)
// and stops every process by its pid.
//
// The fencing test talks the worker protocol itself over a raw req0
// socket; the broker-kill flood re-executes this binary as a producer
// (argv[1] = "--flood").

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "tbp.h"

#define WAIT_MS TBH_MS(15000)
#define MAX_WORKERS 8

static const char *const broker_args[] = { "--worker-handler", "job", NULL };

// The workers a test started; teardown kills whatever is left.
static pid_t wpids[MAX_WORKERS];

static int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

// start_worker starts worker number n (report DIR/wN.rep, log DIR/wN.log)
// for url with slots and extra "--opt value" pairs (NULL-terminated).
static void
start_worker(tbh_fix *f, int n, const char *url, int slots,
    const char *const *extra, char *report, size_t size)
{
	char        slots_s[16], name[16], log[TBH_PATH];
	const char *argv[32];
	int         k = 0;

	snprintf(slots_s, sizeof(slots_s), "%d", slots);
	snprintf(name, sizeof(name), "w%d", n);
	snprintf(report, size, "%s/w%d.rep", f->b.dir, n);
	snprintf(log, sizeof(log), "%s/w%d.log", f->b.dir, n);
	argv[k++] = TB_WORKER_BIN;
	argv[k++] = "--url";
	argv[k++] = url != NULL ? url : f->b.url;
	argv[k++] = "--handler";
	argv[k++] = "job";
	argv[k++] = "--slots";
	argv[k++] = slots_s;
	argv[k++] = "--name";
	argv[k++] = name;
	argv[k++] = "--report";
	argv[k++] = report;
	for (int i = 0; extra != NULL && extra[i] != NULL && k < 30; i++) {
		argv[k++] = extra[i];
	}
	argv[k] = NULL;
	assert_int_equal(
	    tbh_spawn(&wpids[n], (char *const *) argv, log, log), 0);
}

static void
stop_workers(void)
{
	for (int i = 0; i < MAX_WORKERS; i++) {
		if (wpids[i] > 0) {
			kill(wpids[i], SIGCONT);
			tbh_kill_reap(wpids[i]);
			wpids[i] = 0;
		}
	}
}

static int
worker_teardown(void **state)
{
	stop_workers();
	return (tbh_teardown(state));
}

// nworkers returns how many workers the broker lists (-1: error).
static int
nworkers(tb_client *c)
{
	tb_worker_info *l;
	size_t          n;

	if (tb_workers(c, &l, &n) != TB_OK) {
		return (-1);
	}
	tb_workers_free(l, n);
	return ((int) n);
}

static void
wait_workers(tb_client *c, int want)
{
	int64_t end = tbh_now_ms() + WAIT_MS;

	while (nworkers(c) != want) {
		if (tbh_now_ms() > end) {
			print_error("%d worker(s) listed, want %d\n",
			    nworkers(c), want);
			fail();
		}
		tbh_sleep_ms(5);
	}
}

// rep_start finds "start ID ATTEMPT MONO PID" in the report at path: the
// attempt's start time and pid; attempt 0 matches any. Returns true if
// found.
static bool
rep_start(
    const char *path, tb_id id, unsigned attempt, int64_t *monop, int *pidp)
{
	size_t len;
	char  *buf   = tbh_read_file(path, &len);
	bool   found = false;

	for (char *line = buf; line != NULL && *line != '\0';) {
		char              *nl = strchr(line, '\n');
		unsigned long long i;
		unsigned           a;
		long long          mono;
		int                pid;
		if (nl == NULL) {
			break; // a line being written
		}
		*nl = '\0';
		if (sscanf(line, "start %llu %u %lld %d", &i, &a, &mono,
		        &pid) == 4 &&
		    i == id && (attempt == 0 || a == attempt)) {
			if (monop != NULL) {
				*monop = mono;
			}
			if (pidp != NULL) {
				*pidp = pid;
			}
			found = true;
			break;
		}
		line = nl + 1;
	}
	free(buf);
	return (found);
}

// rep_line says whether the report at path has the line text.
static bool
rep_line(const char *path, const char *text)
{
	size_t len;
	char  *buf   = tbh_read_file(path, &len);
	bool   found = false;

	for (char *line = buf; line != NULL && *line != '\0';) {
		char *nl = strchr(line, '\n');
		if (nl == NULL) {
			break;
		}
		*nl = '\0';
		if (strcmp(line, text) == 0) {
			found = true;
			break;
		}
		line = nl + 1;
	}
	free(buf);
	return (found);
}

static void
wait_line(const char *path, const char *text, int ms)
{
	int64_t end = tbh_now_ms() + ms;

	while (!rep_line(path, text)) {
		if (tbh_now_ms() > end) {
			print_error("no line '%s' in %s\n", text, path);
			fail();
		}
		tbh_sleep_ms(2);
	}
}

static void
wait_start(const char *path, tb_id id, unsigned attempt, int ms)
{
	int64_t end = tbh_now_ms() + ms;

	while (!rep_start(path, id, attempt, NULL, NULL)) {
		if (tbh_now_ms() > end) {
			print_error(
			    "task %llu attempt %u did not start in %s\n",
			    (unsigned long long) id, attempt, path);
			fail();
		}
		tbh_sleep_ms(1);
	}
}

// rep_max returns the "max N" of a worker's report (-1: none yet).
static int
rep_max(const char *path)
{
	size_t len;
	char  *buf = tbh_read_file(path, &len);
	char  *p   = buf != NULL ? strstr(buf, "max ") : NULL;
	int    n   = p != NULL ? atoi(p + 4) : -1;

	free(buf);
	return (n);
}

// job payloads: {"sleep_ms": ms, "ignore_cancel": ign, "kill": kill}.
static void *
pack_job(uint64_t sleep_ms, bool ignore_cancel, bool kill_self, size_t *lenp)
{
	msgpack_sbuffer sb;
	msgpack_packer  pk;
	void           *p;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	tbh_pack_cstr(&pk, "sleep_ms");
	msgpack_pack_uint64(&pk, sleep_ms);
	tbh_pack_cstr(&pk, "ignore_cancel");
	ignore_cancel ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
	tbh_pack_cstr(&pk, "kill");
	kill_self ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
	p = malloc(sb.size);
	memcpy(p, sb.data, sb.size);
	*lenp = sb.size;
	msgpack_sbuffer_destroy(&sb);
	return (p);
}

static tb_id
submit_job(tb_client *c, uint64_t sleep_ms, bool ignore, bool kill_self,
    const tb_submit_opts *o)
{
	size_t len;
	void  *p  = pack_job(sleep_ms, ignore, kill_self, &len);
	tb_id  id = tbh_submit(c, "job", p, len, o);

	free(p);
	return (id);
}

// result_pid reads the {"pid": N} result of a done task.
static int
result_pid(const tb_task *t)
{
	size_t                len;
	const void           *p = tb_task_result(t, &len);
	msgpack_unpacked      up;
	const msgpack_object *v;
	int                   pid = -1;

	msgpack_unpacked_init(&up);
	if (p != NULL &&
	    msgpack_unpack_next(&up, p, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
	    (v = tbh_map_get(&up.data, "pid")) != NULL) {
		pid = (int) v->via.i64;
	}
	msgpack_unpacked_destroy(&up);
	return (pid);
}

// ---- tests -----------------------------------------------------------------

static void
test_worker_connecting_before_and_after_its_tasks_runs_them(void **state)
{
	tbh_fix *f = *state;
	char     rep[TBH_PATH];
	tb_id    early, late, id;
	tb_task *t;
	size_t   len;
	void    *p = pack_job(0, false, false, &len);

	tbh_fix_start(f, broker_args);
	// Declared but served by no one yet: accepted, waits.
	early = submit_job(f->c, 0, false, false, NULL);
	TBH_RV(tb_submit(f->c, "nosuch", p, len, NULL, &id), TB_ENOHANDLER);
	start_worker(f, 0, NULL, 1, NULL, rep, sizeof(rep));
	t = tbh_wait_final(f->c, early, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	assert_int_equal(result_pid(t), wpids[0]);
	assert_int_equal(tb_task_attempts(t), 1);
	tb_task_free(t);
	// Connected first, then the task.
	late = submit_job(f->c, 0, false, false, NULL);
	t    = tbh_wait_final(f->c, late, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);
	free(p);
	f->passed = true;
}

static void
test_cli_lists_workers_and_waiting_tasks(void **state)
{
	tbh_fix          *f           = *state;
	const char *const workers[]   = { "--json", "workers", NULL };
	const char *const workers_t[] = { "workers", NULL };
	const char *const stats[]     = { "--json", "stats", NULL };
	const char *const stats_t[]   = { "stats", NULL };
	char              rep[TBH_PATH], want[64];
	char             *out;

	tbh_fix_start(f, broker_args);
	// No worker yet: the task waits, and stats says so.
	(void) submit_job(f->c, 0, false, false, NULL);
	out = tbh_cli_ok(&f->b, stats);
	assert_non_null(strstr(out,
	    "\"worker_handlers\":[{\"name\":"
	    "\"job\",\"workers\":0,\"waiting\":1}]"));
	free(out);
	out = tbh_cli_ok(&f->b, stats_t);
	assert_non_null(strstr(out, "no worker connected"));
	free(out);
	start_worker(f, 0, NULL, 3, NULL, rep, sizeof(rep));
	wait_workers(f->c, 1);
	out = tbh_cli_ok(&f->b, workers);
	snprintf(want, sizeof(want), "\"pid\":%d", (int) wpids[0]);
	assert_non_null(strstr(out, want));
	assert_non_null(strstr(out, "\"handlers\":[\"job\"]"));
	assert_non_null(strstr(out, "\"slots\":3"));
	assert_non_null(strstr(out, "\"name\":\"w0\""));
	free(out);
	out = tbh_cli_ok(&f->b, workers_t);
	assert_non_null(strstr(out, "w0"));
	free(out);
	f->passed = true;
}

static void
test_registered_name_is_remembered(void **state)
{
	tbh_fix          *f      = *state;
	const char *const none[] = { NULL };
	char              rep[TBH_PATH];
	tb_id             id;
	tb_task          *t;

	tbh_fix_start(f, none);
	start_worker(f, 0, NULL, 1, NULL, rep, sizeof(rep));
	wait_workers(f->c, 1);
	stop_workers();
	wait_workers(f->c, 0);
	tb_client_close(f->c);
	f->c = NULL;
	assert_int_equal(tbh_stop(&f->b, TBH_MS(10000)), 0);
	assert_int_equal(tbh_restart(&f->b), 0);
	f->c = tbh_client(&f->b, 10000);
	// No worker connected, no --worker-handler: known from the store.
	id = submit_job(f->c, 0, false, false, NULL);
	start_worker(f, 1, NULL, 1, NULL, rep, sizeof(rep));
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);
	f->passed = true;
}

// kill9_case: worker 0 (2 slots) runs two long tasks; it is killed; both
// start again on worker 1 within bound_ms of the kill, no attempt spent.
static void
kill9_case(tbh_fix *f, const char *url, int bound_ms)
{
	char     rep0[TBH_PATH], rep1[TBH_PATH];
	tb_id    ids[2];
	int64_t  killed, started;
	tb_task *t;

	start_worker(f, 0, url, 2, NULL, rep0, sizeof(rep0));
	wait_workers(f->c, 1);
	for (int i = 0; i < 2; i++) {
		ids[i] = submit_job(f->c, 300, false, false, NULL);
	}
	for (int i = 0; i < 2; i++) {
		wait_start(rep0, ids[i], 1, WAIT_MS);
	}
	start_worker(f, 1, url, 2, NULL, rep1, sizeof(rep1));
	wait_workers(f->c, 2);
	killed = mono_us();
	assert_int_equal(kill(wpids[0], SIGKILL), 0);
	for (int i = 0; i < 2; i++) {
		int64_t end = tbh_now_ms() + WAIT_MS;
		while (!rep_start(rep1, ids[i], 0, &started, NULL)) {
			if (tbh_now_ms() > end) {
				print_error("task %llu did not start on the "
				            "other worker\n",
				    (unsigned long long) ids[i]);
				fail();
			}
			tbh_sleep_ms(1);
		}
		print_message("task %llu started on worker 1 %.1f ms after "
		              "the kill of worker 0\n",
		    (unsigned long long) ids[i],
		    (double) (started - killed) / 1000.0);
		assert_true(started - killed < (int64_t) bound_ms * 1000);
	}
	for (int i = 0; i < 2; i++) {
		t = tbh_wait_final(f->c, ids[i], WAIT_MS);
		tbh_expect_state(t, TB_STATE_DONE);
		// The interrupted attempt was refunded: one counted, and
		// the worker's death counted as a crash.
		assert_int_equal(tb_task_attempts(t), 1);
		assert_int_equal(tb_task_crashes(t), 1);
		assert_int_equal(result_pid(t), wpids[1]);
		tb_task_free(t);
	}
}

static void
test_kill9_of_a_worker_restarts_its_tasks_on_another_within_100ms(void **state)
{
	tbh_fix *f = *state;

	tbh_fix_start(f, broker_args);
	kill9_case(f, NULL, TBH_MS(100));
	f->passed = true;
}

// start_tcp starts the fixture's broker listening on tcp loopback (its
// url, which the harness pings and listens on, is set before the start)
// with args; the url is written to listen.
static void
start_tcp(tbh_fix *f, const char *const *args, char *listen, size_t size)
{
	char path[TBH_PATH];

	// The harness makes the temp dir (and its urls) once; the request
	// url is then replaced before the first start.
	assert_int_equal(
	    tbh_write_config(&f->b, "empty.ini", "", path, sizeof(path)), 0);
	snprintf(listen, size, "tcp://127.0.0.1:%d", tbh_free_tcp_port());
	snprintf(f->b.url, sizeof(f->b.url), "%s", listen);
	tbh_fix_start(f, args);
}

static void
test_kill9_of_a_worker_over_tcp(void **state)
{
	tbh_fix *f = *state;
	char     listen[64];
	// --exec-allow: a tcp listener with exec open to any program is
	// refused (README, Remote access).
	const char *const args[] = { "--worker-handler", "job", "--exec-allow",
		"/bin/true", NULL };

	start_tcp(f, args, listen, sizeof(listen));
	kill9_case(f, listen, TBH_MS(500));
	f->passed = true;
}

// raw_call sends the encoded request in b over s and decodes the reply.
static int
raw_call(nng_socket s, msgpack_sbuffer *b, tbp_rep *rep, void **bufp)
{
	size_t len;

	assert_int_equal(tbh_raw_call(s, b->data, b->size, bufp, &len), 0);
	msgpack_sbuffer_clear(b);
	assert_int_equal(tbp_rep_decode(rep, *bufp, len), TB_OK);
	return (rep->status);
}

static void
test_fencing_refuses_a_result_for_a_superseded_attempt(void **state)
{
	tbh_fix        *f = *state;
	nng_socket      s, s2;
	msgpack_sbuffer b;
	tbp_rep         rep;
	void           *buf;
	tbp_bytes       hs[1] = { tbp_str("job") };
	tbp_hello       h     = { .handlers = hs, .nhandlers = 1, .slots = 1 };
	tbp_done        d;
	uint64_t        wid;
	tb_id           id;
	uint32_t        attempt;
	tb_task        *t;
	tb_submit_opts  o = TB_SUBMIT_OPTS_INIT;

	tbh_fix_start(f, broker_args);
	assert_int_equal(tbh_raw_open(&s, f->b.url, TBH_MS(10000)), 0);
	msgpack_sbuffer_init(&b);
	TBH_OK(tbp_enc_worker_hello(&b, 1, &h));
	TBH_OK(raw_call(s, &b, &rep, &buf));
	wid = rep.worker_id;
	tbp_rep_fini(&rep);
	free(buf);
	o.max_attempts = 3;
	id             = submit_job(f->c, 0, false, false, &o);
	TBH_OK(tbp_enc_worker_take(&b, 2, wid, 1, 0));
	TBH_OK(raw_call(s, &b, &rep, &buf));
	assert_int_equal(rep.njobs, 1);
	assert_int_equal(rep.jobs[0].id, id);
	attempt = rep.jobs[0].attempt;
	assert_int_equal(attempt, 1);
	tbp_rep_fini(&rep);
	free(buf);

	// A result for an attempt that is not the current one: refused.
	memset(&d, 0, sizeof(d));
	d.id      = id;
	d.attempt = attempt + 1;
	d.ok      = true;
	d.result  = tbp_str("\xa4late");
	TBH_OK(tbp_enc_worker_done(&b, 3, wid, &d));
	TBH_RV(raw_call(s, &b, &rep, &buf), TB_ESTALE);
	tbp_rep_fini(&rep);
	free(buf);
	// The right attempt from another connection (a worker presumed
	// dead that reconnected): refused too.
	assert_int_equal(tbh_raw_open(&s2, f->b.url, TBH_MS(10000)), 0);
	d.attempt = attempt;
	TBH_OK(tbp_enc_worker_done(&b, 4, wid, &d));
	TBH_RV(raw_call(s2, &b, &rep, &buf), TB_ESTALE);
	tbp_rep_fini(&rep);
	free(buf);
	nng_close(s2);
	t = tbh_status(f->c, id);
	assert_int_equal(tb_task_state(t), TB_STATE_RUNNING);
	tb_task_free(t);

	// The worker's connection closes: the attempt is interrupted, and
	// the late result of attempt 1 that follows on a new connection is
	// refused; the task runs again as attempt 1 (refunded).
	nng_close(s);
	assert_int_equal(
	    tbh_wait_state(f->c, id, TB_STATE_PENDING, WAIT_MS), 0);
	assert_int_equal(tbh_raw_open(&s, f->b.url, TBH_MS(10000)), 0);
	TBH_OK(tbp_enc_worker_done(&b, 5, wid, &d));
	TBH_RV(raw_call(s, &b, &rep, &buf), TB_ESTALE);
	tbp_rep_fini(&rep);
	free(buf);
	TBH_OK(tbp_enc_worker_hello(&b, 6, &h));
	TBH_OK(raw_call(s, &b, &rep, &buf));
	wid = rep.worker_id;
	tbp_rep_fini(&rep);
	free(buf);
	TBH_OK(tbp_enc_worker_take(&b, 7, wid, 1, 0));
	TBH_OK(raw_call(s, &b, &rep, &buf));
	assert_int_equal(rep.njobs, 1);
	assert_int_equal(rep.jobs[0].id, id);
	assert_int_equal(rep.jobs[0].attempt, 1);
	tbp_rep_fini(&rep);
	free(buf);
	d.result = tbp_str("\xa2ok");
	TBH_OK(tbp_enc_worker_done(&b, 8, wid, &d));
	TBH_OK(raw_call(s, &b, &rep, &buf));
	tbp_rep_fini(&rep);
	free(buf);
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	{
		size_t      len;
		const char *r = tb_task_result(t, &len);
		assert_int_equal(len, 3);
		assert_memory_equal(r, "\xa2ok", 3);
	}
	assert_int_equal(tb_task_attempts(t), 1);
	tb_task_free(t);
	nng_close(s);
	msgpack_sbuffer_destroy(&b);
	f->passed = true;
}

// reap_restart restarts worker n (slots, report rep) if it has died.
static bool
reap_restart(tbh_fix *f, int n, int slots, char *rep, size_t size)
{
	if (wpids[n] > 0 && tbh_waitpid(wpids[n], 0) < 0) {
		return (false); // still running
	}
	start_worker(f, n, NULL, slots, NULL, rep, size);
	return (true);
}

static void
test_a_task_that_kills_its_worker_is_quarantined(void **state)
{
	tbh_fix       *f = *state;
	char           rep[2][TBH_PATH];
	tb_id          killer, ids[6];
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_task       *t;
	int            restarts = 0;
	int64_t        end;

	tbh_fix_start(f, broker_args);
	start_worker(f, 0, NULL, 2, NULL, rep[0], sizeof(rep[0]));
	start_worker(f, 1, NULL, 2, NULL, rep[1], sizeof(rep[1]));
	wait_workers(f->c, 2);
	// Default options for the killer: max_crashes 3.
	killer = submit_job(f->c, 0, false, true, NULL);
	// The others may share a worker with it when it dies, which is a
	// crash for them too: they get room for that.
	o.max_crashes = 20;
	for (int i = 0; i < 6; i++) {
		ids[i] = submit_job(f->c, 100, false, false, &o);
	}
	// Bring back every worker that dies, until the killer has ended.
	end = tbh_now_ms() + WAIT_MS;
	for (;;) {
		t = tbh_status(f->c, killer);
		if (tb_state_is_final(tb_task_state(t))) {
			break;
		}
		tb_task_free(t);
		for (int n = 0; n < 2; n++) {
			restarts +=
			    reap_restart(f, n, 2, rep[n], sizeof(rep[n]));
		}
		assert_true(tbh_now_ms() < end);
		tbh_sleep_ms(5);
	}
	print_message("killer ended %s after %u crashes, %u attempts (%d "
	              "worker restarts): %s\n",
	    tb_state_name(tb_task_state(t)), tb_task_crashes(t),
	    tb_task_attempts(t), restarts, tb_task_error(t));
	tbh_expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_crashes(t), 3);
	assert_int_equal(tb_task_attempts(t), 0);
	assert_non_null(strstr(tb_task_error(t), "quarantined"));
	tb_task_free(t);
	// The third death may not have been seen yet: wait for it.
	for (int64_t end2 = tbh_now_ms() + WAIT_MS; restarts < 3;
	     tbh_sleep_ms(5)) {
		for (int n = 0; n < 2; n++) {
			restarts +=
			    reap_restart(f, n, 2, rep[n], sizeof(rep[n]));
		}
		assert_true(tbh_now_ms() < end2);
	}
	end = tbh_now_ms() + WAIT_MS;
	for (int i = 0; i < 6; i++) {
		for (;;) {
			t = tbh_status(f->c, ids[i]);
			if (tb_state_is_final(tb_task_state(t))) {
				break;
			}
			tb_task_free(t);
			for (int n = 0; n < 2; n++) {
				(void) reap_restart(
				    f, n, 2, rep[n], sizeof(rep[n]));
			}
			assert_true(tbh_now_ms() < end);
			tbh_sleep_ms(5);
		}
		tbh_expect_state(t, TB_STATE_DONE);
		assert_int_equal(tb_task_attempts(t), 1);
		tb_task_free(t);
	}
	f->passed = true;
}

static void
test_a_worker_limited_to_queues_gets_only_their_tasks(void **state)
{
	tbh_fix          *f    = *state;
	const char *const qa[] = { "--queue", "a", NULL };
	char              rep[2][TBH_PATH];
	tb_submit_opts    oa = TB_SUBMIT_OPTS_INIT;
	tb_submit_opts    ob = TB_SUBMIT_OPTS_INIT;
	tb_id             in_a, in_b;
	tb_task          *t;
	int64_t           end;

	tbh_fix_start(f, broker_args);
	start_worker(f, 0, NULL, 2, qa, rep[0], sizeof(rep[0]));
	wait_workers(f->c, 1);
	oa.queue = "a";
	ob.queue = "b";
	in_b     = submit_job(f->c, 0, false, false, &ob);
	in_a     = submit_job(f->c, 0, false, false, &oa);
	t        = tbh_wait_final(f->c, in_a, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	assert_int_equal(result_pid(t), wpids[0]);
	tb_task_free(t);
	// The queue-b task waits while only the queue-a worker is there (a
	// window for a negative check).
	end = tbh_now_ms() + TBH_MS(300);
	while (tbh_now_ms() < end) {
		assert_false(rep_start(rep[0], in_b, 0, NULL, NULL));
		tbh_sleep_ms(20);
	}
	t = tbh_status(f->c, in_b);
	assert_int_equal(tb_task_state(t), TB_STATE_PENDING);
	tb_task_free(t);
	start_worker(f, 1, NULL, 1, NULL, rep[1], sizeof(rep[1]));
	t = tbh_wait_final(f->c, in_b, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	assert_int_equal(result_pid(t), wpids[1]);
	tb_task_free(t);
	f->passed = true;
}

static void
test_slots_are_never_exceeded(void **state)
{
	tbh_fix *f = *state;
	char     rep[2][TBH_PATH];
	tb_id    ids[40];
	int      pids[2];

	tbh_fix_start(f, broker_args);
	start_worker(f, 0, NULL, 2, NULL, rep[0], sizeof(rep[0]));
	start_worker(f, 1, NULL, 3, NULL, rep[1], sizeof(rep[1]));
	wait_workers(f->c, 2);
	for (int i = 0; i < 40; i++) {
		ids[i] = submit_job(f->c, 20, false, false, NULL);
	}
	memset(pids, 0, sizeof(pids));
	for (int i = 0; i < 40; i++) {
		tb_task *t = tbh_wait_final(f->c, ids[i], WAIT_MS);
		tbh_expect_state(t, TB_STATE_DONE);
		pids[result_pid(t) == wpids[0] ? 0 : 1]++;
		tb_task_free(t);
	}
	// Both took part.
	assert_true(pids[0] > 0 && pids[1] > 0);
	for (int i = 0; i < 2; i++) {
		kill(wpids[i], SIGTERM);
		assert_int_equal(tbh_waitpid(wpids[i], WAIT_MS), 0);
		wpids[i] = 0;
	}
	print_message("most jobs at once: %d (2 slots), %d (3 slots)\n",
	    rep_max(rep[0]), rep_max(rep[1]));
	assert_true(rep_max(rep[0]) >= 1 && rep_max(rep[0]) <= 2);
	assert_true(rep_max(rep[1]) >= 1 && rep_max(rep[1]) <= 3);
	f->passed = true;
}

static void
test_priority_order_holds_across_two_workers(void **state)
{
	tbh_fix       *f = *state;
	char           rep[2][TBH_PATH];
	tb_id          block[2], ids[8];
	int            prio[8] = { 3, 7, 1, 5, 8, 2, 6, 4 };
	int64_t        at[8];
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;

	tbh_fix_start(f, broker_args);
	start_worker(f, 0, NULL, 1, NULL, rep[0], sizeof(rep[0]));
	start_worker(f, 1, NULL, 1, NULL, rep[1], sizeof(rep[1]));
	wait_workers(f->c, 2);
	// Both workers busy while the others are submitted.
	for (int i = 0; i < 2; i++) {
		block[i] = submit_job(f->c, 300, false, false, NULL);
	}
	for (int i = 0; i < 2; i++) {
		int64_t end = tbh_now_ms() + WAIT_MS;
		while (!rep_start(rep[0], block[i], 1, NULL, NULL) &&
		    !rep_start(rep[1], block[i], 1, NULL, NULL)) {
			assert_true(tbh_now_ms() < end);
			tbh_sleep_ms(1);
		}
	}
	for (int i = 0; i < 8; i++) {
		o.priority = prio[i];
		ids[i]     = submit_job(f->c, 30, false, false, &o);
	}
	for (int i = 0; i < 8; i++) {
		tb_task *t = tbh_wait_final(f->c, ids[i], WAIT_MS);
		tbh_expect_state(t, TB_STATE_DONE);
		// When the broker started it: two workers that free up at
		// once start their next jobs a few µs apart in either order,
		// but the broker hands them out in priority order.
		at[i] = tb_task_started_at(t);
		tb_task_free(t);
		assert_true(rep_start(rep[0], ids[i], 1, NULL, NULL) ||
		    rep_start(rep[1], ids[i], 1, NULL, NULL));
	}
	// A higher priority never started after a lower one.
	for (int i = 0; i < 8; i++) {
		for (int k = 0; k < 8; k++) {
			if (prio[i] > prio[k] && at[i] > at[k]) {
				print_error(
				    "priority %d started %lld us after "
				    "priority %d\n",
				    prio[i], (long long) (at[i] - at[k]),
				    prio[k]);
				fail();
			}
		}
	}
	f->passed = true;
}

static void
test_a_paused_queue_sends_nothing_to_workers(void **state)
{
	tbh_fix       *f = *state;
	char           rep[TBH_PATH];
	tb_id          ids[3];
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	int64_t        end;

	tbh_fix_start(f, broker_args);
	start_worker(f, 0, NULL, 2, NULL, rep, sizeof(rep));
	wait_workers(f->c, 1);
	TBH_OK(tb_pause(f->c, "p"));
	o.queue = "p";
	for (int i = 0; i < 3; i++) {
		ids[i] = submit_job(f->c, 0, false, false, &o);
	}
	// A window in which nothing may start (a negative check needs one).
	end = tbh_now_ms() + TBH_MS(500);
	while (tbh_now_ms() < end) {
		for (int i = 0; i < 3; i++) {
			assert_false(rep_start(rep, ids[i], 0, NULL, NULL));
		}
		tbh_sleep_ms(20);
	}
	for (int i = 0; i < 3; i++) {
		tb_task *t = tbh_status(f->c, ids[i]);
		assert_int_equal(tb_task_state(t), TB_STATE_PENDING);
		tb_task_free(t);
	}
	TBH_OK(tb_resume(f->c, "p"));
	for (int i = 0; i < 3; i++) {
		tb_task *t = tbh_wait_final(f->c, ids[i], WAIT_MS);
		tbh_expect_state(t, TB_STATE_DONE);
		tb_task_free(t);
	}
	f->passed = true;
}

// stop_case: a task in a worker is cancelled (by_timeout: times out);
// the worker cooperates or ignores it.
static void
stop_case(tbh_fix *f, bool by_timeout, bool ignore)
{
	const char *const args[] = { "--worker-handler", "job",
		"--worker-cancel-grace", "300ms", NULL };
	char              rep[TBH_PATH], line[64];
	tb_submit_opts    o = TB_SUBMIT_OPTS_INIT;
	tb_id             id;
	tb_task          *t;
	int64_t           t0;

	tbh_fix_start(f, args);
	start_worker(f, 0, NULL, 1, NULL, rep, sizeof(rep));
	wait_workers(f->c, 1);
	if (by_timeout) {
		o.timeout_ms = 200;
	}
	id = submit_job(f->c, ignore ? 1500 : 10000, ignore, false, &o);
	wait_start(rep, id, 1, WAIT_MS);
	t0 = tbh_now_ms();
	if (!by_timeout) {
		TBH_OK(tb_cancel(f->c, id, NULL));
	}
	t = tbh_wait_final(f->c, id, WAIT_MS);
	print_message("ended %s after %lld ms: %s\n",
	    tb_state_name(tb_task_state(t)), (long long) (tbh_now_ms() - t0),
	    tb_task_error(t) != NULL ? tb_task_error(t) : "");
	if (by_timeout) {
		tbh_expect_state(t, TB_STATE_DEAD);
		assert_non_null(strstr(tb_task_error(t), "timed out"));
	} else {
		tbh_expect_state(t, TB_STATE_CANCELLED);
	}
	tb_task_free(t);
	snprintf(line, sizeof(line), "cancel %llu 1", (unsigned long long) id);
	wait_line(rep, line, WAIT_MS);
	snprintf(line, sizeof(line), "end %llu 1 %s", (unsigned long long) id,
	    ignore ? "stale" : "ok");
	// Uncooperative: the attempt ended without the worker, whose late
	// result is refused (and changes nothing).
	wait_line(rep, line, WAIT_MS);
	t = tbh_status(f->c, id);
	tbh_expect_state(t, by_timeout ? TB_STATE_DEAD : TB_STATE_CANCELLED);
	assert_int_equal(tb_task_attempts(t), 1);
	tb_task_free(t);
}

static void
test_cancel_of_a_cooperative_worker_task(void **state)
{
	stop_case(*state, false, false);
	((tbh_fix *) *state)->passed = true;
}

static void
test_cancel_of_an_uncooperative_worker_task_ends_after_grace(void **state)
{
	stop_case(*state, false, true);
	((tbh_fix *) *state)->passed = true;
}

static void
test_timeout_of_a_cooperative_worker_task(void **state)
{
	stop_case(*state, true, false);
	((tbh_fix *) *state)->passed = true;
}

static void
test_timeout_of_an_uncooperative_worker_task_ends_after_grace(void **state)
{
	stop_case(*state, true, true);
	((tbh_fix *) *state)->passed = true;
}

static void
test_graceful_worker_stop_during_load_loses_nothing(void **state)
{
	tbh_fix          *f       = *state;
	const char *const grace[] = { "--stop-grace", "100", NULL };
	char              rep[2][TBH_PATH];
	tb_id             ids[30];
	bool              handed_back = false;

	tbh_fix_start(f, broker_args);
	start_worker(f, 0, NULL, 3, grace, rep[0], sizeof(rep[0]));
	wait_workers(f->c, 1);
	for (int i = 0; i < 30; i++) {
		ids[i] = submit_job(
		    f->c, i % 3 == 0 ? 1000 : 30, false, false, NULL);
	}
	wait_start(rep[0], ids[0], 1, WAIT_MS);
	start_worker(f, 1, NULL, 3, NULL, rep[1], sizeof(rep[1]));
	wait_workers(f->c, 2);
	kill(wpids[0], SIGTERM);
	assert_int_equal(tbh_waitpid(wpids[0], WAIT_MS), 0);
	wpids[0] = 0;
	for (int i = 0; i < 30; i++) {
		tb_task *t = tbh_wait_final(f->c, ids[i], WAIT_MS);
		tbh_expect_state(t, TB_STATE_DONE);
		// Handed back: the attempt is refunded, not spent, and no
		// crash is counted.
		assert_int_equal(tb_task_attempts(t), 1);
		assert_int_equal(tb_task_crashes(t), 0);
		handed_back = handed_back || result_pid(t) == wpids[1];
		tb_task_free(t);
	}
	assert_true(handed_back);
	f->passed = true;
}

static void
test_tcp_worker_stopped_with_sigstop_is_detected(void **state)
{
	tbh_fix *f = *state;
	char     listen[64];
	char     rep[2][TBH_PATH];
	tb_id    id;
	tb_task *t;
	int64_t  stopped, started;

	const char *const args[] = { "--worker-handler", "job", "--exec-allow",
		"/bin/true", "--worker-heartbeat", "200ms", "--worker-timeout",
		"400ms", NULL };
	start_tcp(f, args, listen, sizeof(listen));
	start_worker(f, 0, listen, 1, NULL, rep[0], sizeof(rep[0]));
	wait_workers(f->c, 1);
	id = submit_job(f->c, 3000, false, false, NULL);
	wait_start(rep[0], id, 1, WAIT_MS);
	start_worker(f, 1, listen, 1, NULL, rep[1], sizeof(rep[1]));
	wait_workers(f->c, 2);
	stopped = mono_us();
	assert_int_equal(kill(wpids[0], SIGSTOP), 0);
	{
		int64_t end = tbh_now_ms() + WAIT_MS;
		while (!rep_start(rep[1], id, 0, &started, NULL)) {
			assert_true(tbh_now_ms() < end);
			tbh_sleep_ms(2);
		}
	}
	print_message("the stopped worker's task started elsewhere %.0f ms "
	              "after SIGSTOP (heartbeat 200 + timeout 400)\n",
	    (double) (started - stopped) / 1000.0);
	// At most heartbeat + timeout, plus the broker's tick and slack.
	assert_true(started - stopped < (int64_t) TBH_MS(600 + 400) * 1000);
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	assert_int_equal(result_pid(t), wpids[1]);
	assert_int_equal(tb_task_attempts(t), 1);
	tb_task_free(t);
	f->passed = true;
}

static void
test_broker_shutdown_gives_worker_tasks_back_and_workers_reconnect(
    void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--worker-handler", "job",
		"--shutdown-timeout", "1", NULL };
	char              rep[TBH_PATH], line[64];
	tb_id             id;
	tb_task          *t;

	tbh_fix_start(f, args);
	start_worker(f, 0, NULL, 1, NULL, rep, sizeof(rep));
	wait_workers(f->c, 1);
	id = submit_job(f->c, 20000, false, false, NULL);
	wait_start(rep, id, 1, WAIT_MS);
	// SIGTERM: the running job gets shutdown-timeout (1 s), then a
	// cancel notice, which the worker obeys; the task goes back to
	// pending, its attempt refunded.
	tb_client_close(f->c);
	f->c = NULL;
	assert_int_equal(tbh_stop(&f->b, WAIT_MS), 0);
	snprintf(line, sizeof(line), "cancel %llu 1", (unsigned long long) id);
	wait_line(rep, line, WAIT_MS);
	// The same worker process reconnects to the restarted broker by
	// itself and runs the task again.
	assert_int_equal(tbh_restart(&f->b), 0);
	f->c = tbh_client(&f->b, 10000);
	wait_workers(f->c, 1);
	{
		int64_t end = tbh_now_ms() + WAIT_MS;
		for (;;) {
			t = tbh_status(f->c, id);
			if (tb_task_state(t) == TB_STATE_RUNNING) {
				tb_task_free(t);
				break;
			}
			tb_task_free(t);
			assert_true(tbh_now_ms() < end);
			tbh_sleep_ms(5);
		}
	}
	// Two runs of attempt 1 in the worker's report: the refunded one
	// and this one.
	for (int64_t end = tbh_now_ms() + WAIT_MS;; tbh_sleep_ms(2)) {
		size_t      len;
		char       *buf = tbh_read_file(rep, &len);
		char        want[64];
		int         n = 0;
		const char *p = buf;
		snprintf(want, sizeof(want), "start %llu 1 ",
		    (unsigned long long) id);
		while (p != NULL && (p = strstr(p, want)) != NULL) {
			n++;
			p++;
		}
		free(buf);
		assert_true(n <= 2);
		if (n == 2) {
			break;
		}
		assert_true(tbh_now_ms() < end);
	}
	t = tbh_status(f->c, id);
	assert_int_equal(tb_task_attempts(t), 1);
	assert_int_equal(tb_task_crashes(t), 0); // a shutdown is no crash
	tb_task_free(t);
	TBH_OK(tb_cancel(f->c, id, NULL));
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_CANCELLED);
	tb_task_free(t);
	f->passed = true;
}

static void
test_example_worker_serves_upper(void **state)
{
	tbh_fix          *f      = *state;
	const char *const none[] = { NULL };
	char              log[TBH_PATH];
	const char       *argv[3];
	msgpack_sbuffer   sb;
	msgpack_packer    pk;
	tb_id             id;
	tb_task          *t;
	size_t            len;
	const char       *r;

	tbh_fix_start(f, none);
	snprintf(log, sizeof(log), "%s/example.log", f->b.dir);
	argv[0] = TB_EXAMPLE_WORKER_BIN;
	argv[1] = f->b.url;
	argv[2] = NULL;
	assert_int_equal(
	    tbh_spawn(&wpids[0], (char *const *) argv, log, log), 0);
	wait_workers(f->c, 1);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	tbh_pack_cstr(&pk, "text");
	tbh_pack_cstr(&pk, "hello");
	id = tbh_submit(f->c, "upper", sb.data, sb.size, NULL);
	msgpack_sbuffer_destroy(&sb);
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	r = tb_task_result(t, &len);
	assert_non_null(r);
	assert_non_null(memmem(r, len, "HELLO", 5));
	tb_task_free(t);
	// An empty text fails without a retry.
	{
		tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
		o.max_attempts   = 3;
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_map(&pk, 1);
		tbh_pack_cstr(&pk, "text");
		tbh_pack_cstr(&pk, "");
		id = tbh_submit(f->c, "upper", sb.data, sb.size, &o);
		msgpack_sbuffer_destroy(&sb);
	}
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 1);
	tb_task_free(t);
	// SIGTERM: a graceful stop, exit 0.
	kill(wpids[0], SIGTERM);
	assert_int_equal(tbh_waitpid(wpids[0], WAIT_MS), 0);
	wpids[0] = 0;
	wait_workers(f->c, 0);
	f->passed = true;
}

// ---- kill -9 of the broker under a flood -----------------------------------

#define FLOOD_PRODUCERS 4
#define FLOOD_KILLS 10

// flood_main submits job tasks (1 ms of work) to url, one per request,
// writing each acknowledged id to outfile, until the file stop exists.
// Submits that fail (the broker is down) are retried with the same
// submission: tb_submit resends through nng, and a new call after an
// error may make a second task, which is fine (it is acknowledged too).
static int
flood_main(const char *url, const char *outfile, const char *stopfile)
{
	tb_client     *c;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	size_t         len;
	void          *p = pack_job(1, false, false, &len);
	int            fd;

	if ((fd = open(outfile, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC,
	         0644)) < 0 ||
	    tb_client_open(&c, url) != TB_OK) {
		return (1);
	}
	(void) tb_client_set_timeout(c, 2000);
	// Default options (max_attempts 1): an attempt cut short by the
	// broker's death is a crash, not a spent attempt.
	while (access(stopfile, F_OK) != 0) {
		tb_id id;
		char  line[32];
		int   n;
		if (tb_submit(c, "job", p, len, &o, &id) != TB_OK) {
			usleep(5000);
			continue;
		}
		n = snprintf(
		    line, sizeof(line), "%llu\n", (unsigned long long) id);
		if (write(fd, line, (size_t) n) != n) {
			return (1);
		}
	}
	close(fd);
	free(p);
	tb_client_close(c);
	return (0);
}

static void
test_kill9_of_the_broker_during_a_flood_loses_nothing(void **state)
{
	tbh_fix *f = *state;
	char     rep[2][TBH_PATH];
	char     out[FLOOD_PRODUCERS][TBH_PATH];
	char     stop[TBH_PATH];
	pid_t    prod[FLOOD_PRODUCERS];
	size_t   total = 0;
	uint32_t rnd;

	tbh_fix_start(f, broker_args);
	start_worker(f, 0, NULL, 4, NULL, rep[0], sizeof(rep[0]));
	start_worker(f, 1, NULL, 4, NULL, rep[1], sizeof(rep[1]));
	wait_workers(f->c, 2);
	snprintf(stop, sizeof(stop), "%s/stop", f->b.dir);
	for (int i = 0; i < FLOOD_PRODUCERS; i++) {
		snprintf(
		    out[i], sizeof(out[i]), "%s/acked%d.ids", f->b.dir, i);
		const char *const a[] = { "--flood", f->b.url, out[i], stop,
			NULL };
		assert_int_equal(tbh_spawn_self(&prod[i], a, NULL, NULL), 0);
	}
	for (int k = 0; k < FLOOD_KILLS; k++) {
		// A random moment 100..400 ms into the flood.
		if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd)) {
			rnd = 0;
		}
		tbh_sleep_ms(100 + (int) (rnd % 300));
		assert_int_equal(tbh_kill9(&f->b), 0);
		assert_int_equal(tbh_restart(&f->b), 0);
	}
	tbh_sleep_ms(200);
	{
		FILE *sf = fopen(stop, "w");
		assert_non_null(sf);
		fclose(sf);
	}
	for (int i = 0; i < FLOOD_PRODUCERS; i++) {
		assert_int_equal(tbh_waitpid(prod[i], WAIT_MS), 0);
	}
	tb_client_close(f->c);
	f->c = tbh_client(&f->b, 10000);
	for (int i = 0; i < FLOOD_PRODUCERS; i++) {
		tb_id *ids;
		size_t n;
		assert_int_equal(tbh_read_ids(out[i], &ids, &n), 0);
		total += n;
		for (size_t k = 0; k < n; k++) {
			tb_task *t = tbh_wait_final(f->c, ids[k], WAIT_MS);
			if (tb_task_state(t) != TB_STATE_DONE) {
				print_error("task %llu ended %s: %s\n",
				    (unsigned long long) ids[k],
				    tb_state_name(tb_task_state(t)),
				    tb_task_error(t) ? tb_task_error(t) : "");
				fail();
			}
			tb_task_free(t);
		}
		free(ids);
	}
	print_message("%zu acknowledged tasks over %d broker kills, all "
	              "done\n",
	    total, FLOOD_KILLS);
	assert_true(total > 100);
	f->passed = true;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, worker_teardown)

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		T(test_worker_connecting_before_and_after_its_tasks_runs_them),
		T(test_registered_name_is_remembered),
		T(test_cli_lists_workers_and_waiting_tasks),
		T(test_kill9_of_a_worker_restarts_its_tasks_on_another_within_100ms),
		T(test_kill9_of_a_worker_over_tcp),
		T(test_fencing_refuses_a_result_for_a_superseded_attempt),
		T(test_a_task_that_kills_its_worker_is_quarantined),
		T(test_a_worker_limited_to_queues_gets_only_their_tasks),
		T(test_slots_are_never_exceeded),
		T(test_priority_order_holds_across_two_workers),
		T(test_a_paused_queue_sends_nothing_to_workers),
		T(test_cancel_of_a_cooperative_worker_task),
		T(test_cancel_of_an_uncooperative_worker_task_ends_after_grace),
		T(test_timeout_of_a_cooperative_worker_task),
		T(test_timeout_of_an_uncooperative_worker_task_ends_after_grace),
		T(test_graceful_worker_stop_during_load_loses_nothing),
		T(test_tcp_worker_stopped_with_sigstop_is_detected),
		T(test_broker_shutdown_gives_worker_tasks_back_and_workers_reconnect),
		T(test_example_worker_serves_upper),
		T(test_kill9_of_the_broker_during_a_flood_loses_nothing),
	};

	if (argc == 5 && strcmp(argv[1], "--flood") == 0) {
		return (flood_main(argv[2], argv[3], argv[4]));
	}
	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
