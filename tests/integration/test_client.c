// test_client.c: the client library's promises that concern the process
// using it: one handle shared by many threads, a handle used in a child
// after fork() returns TB_EFORK instead of aborting (nng is not
// fork-safe), and closing never hangs, also after the broker has gone.

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define NTHREADS 8
#define PER_THREAD 300

typedef struct worker {
	tb_client *c;
	tb_id      ids[PER_THREAD];
	int        rv; // first error, or TB_OK
} worker;

// worker_main submits PER_THREAD tasks, one per request, and waits for
// every tenth, all on the shared handle.
static void *
worker_main(void *arg)
{
	worker *w = arg;

	w->rv = TB_OK;
	for (int i = 0; i < PER_THREAD && w->rv == TB_OK; i++) {
		tb_task *t = NULL;
		w->rv = tb_submit(w->c, "noop", NULL, 0, NULL, &w->ids[i]);
		if (w->rv == TB_OK && i % 10 == 0) {
			w->rv = tb_wait(w->c, w->ids[i], 10000, &t);
			if (w->rv == TB_OK &&
			    tb_task_state(t) != TB_STATE_DONE) {
				w->rv = TB_EINTERNAL;
			}
			tb_task_free(t);
		}
	}
	return (NULL);
}

static int
cmp_id(const void *a, const void *b)
{
	tb_id x = *(const tb_id *) a;
	tb_id y = *(const tb_id *) b;

	return (x < y ? -1 : x > y);
}

// One handle, eight threads submitting and waiting at once: every call
// succeeds, every id is distinct, every task ends done.
static void
test_one_handle_many_threads(void **state)
{
	tbh_fix  *f = *state;
	worker    w[NTHREADS];
	pthread_t th[NTHREADS];
	tb_id    *all;
	size_t    n = 0;

	tbh_fix_start(f, NULL);
	for (int i = 0; i < NTHREADS; i++) {
		w[i].c = f->c;
		assert_int_equal(
		    pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
	}
	all = calloc(NTHREADS * PER_THREAD, sizeof(*all));
	assert_non_null(all);
	for (int i = 0; i < NTHREADS; i++) {
		if (w[i].rv != TB_OK) {
			free(all);
			print_error("thread %d: %s\n", i, tb_errname(w[i].rv));
			fail();
		}
		memcpy(all + n, w[i].ids, sizeof(w[i].ids));
		n += PER_THREAD;
	}
	qsort(all, n, sizeof(*all), cmp_id);
	for (size_t i = 1; i < n; i++) {
		if (all[i] == all[i - 1]) {
			tb_id dup = all[i];
			free(all);
			print_error("id %llu returned twice\n",
			    (unsigned long long) dup);
			fail();
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (tbh_wait_state(
		        f->c, all[i], TB_STATE_DONE, TBH_MS(20000)) != 0) {
			tb_id id = all[i];
			free(all);
			print_error("task %llu did not end done\n",
			    (unsigned long long) id);
			fail();
		}
	}
	free(all);
	f->passed = true;
}

// in_child runs fn in a forked child and returns the child's exit code.
// The child makes no nng call of its own: only the library is exercised.
static int
in_child(tb_client *c)
{
	pid_t pid = fork();
	int   status;

	if (pid == 0) {
		tb_id    id;
		tb_stats st;
		int      bad = 0;
		bad |= tb_ping(c, NULL) != TB_EFORK;
		bad |= tb_submit(c, "noop", NULL, 0, NULL, &id) != TB_EFORK;
		bad |= tb_stats_get(c, &st) != TB_EFORK;
		tb_client_close(c); // must not touch nng either
		_exit(bad ? 1 : 0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid) {
		return (-1);
	}
	return (
	    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

// A handle that has connected, used in a child after fork(): every call
// returns TB_EFORK and closing it does not abort; the parent's handle
// keeps working.
static void
test_used_handle_in_forked_child_returns_efork(void **state)
{
	tbh_fix *f = *state;
	int      code;

	tbh_fix_start(f, NULL);
	TBH_OK(tb_ping(f->c, NULL));
	code = in_child(f->c);
	if (code != 0) {
		print_error("child exit %d: want 0 (every call TB_EFORK, no "
		            "abort)\n",
		    code);
		fail();
	}
	TBH_OK(tb_ping(f->c, NULL));
	f->passed = true;
}

// A handle opened but never used before fork(): the child still gets
// TB_EFORK (the handle belongs to the process that opened it).
static void
test_unused_handle_in_forked_child_returns_efork(void **state)
{
	tbh_fix   *f = *state;
	tb_client *c;
	int        code;

	tbh_fix_start(f, NULL);
	TBH_OK(tb_client_open(&c, f->b.url));
	code = in_child(c);
	TBH_OK(tb_ping(c, NULL));
	tb_client_close(c);
	if (code != 0) {
		print_error("child exit %d: want 0\n", code);
		fail();
	}
	f->passed = true;
}

// CLOSE_ROUNDS brokers are started and ended (killed, or stopped) under a
// connected client and subscription, which are closed at varying moments
// after the broker's end, while their sockets try to reconnect: each close
// returns within CLOSE_MAX_MS (nng 1.5.2's own nng_close can block for
// good in that race; the library bounds it).
#define CLOSE_ROUNDS 20
#define CLOSE_MAX_MS 3000

static void
test_close_after_the_broker_ended_returns_promptly(void **state)
{
	tbh_fix *f = *state;

	tbh_fix_start(f, NULL);
	for (int i = 0; i < CLOSE_ROUNDS; i++) {
		tb_client *c = tbh_client(&f->b, 0);
		tb_sub    *s = NULL;
		int64_t    t0;
		int64_t    took;

		assert_non_null(c);
		TBH_OK(tb_ping(c, NULL));
		TBH_OK(tb_sub_open(&s, f->b.events_url, "tb."));
		if (i % 2 == 0) {
			assert_int_equal(tbh_kill9(&f->b), 0);
		} else {
			assert_int_equal(tbh_stop(&f->b, TBH_MS(10000)), 0);
		}
		// Spread the closes over the sockets' reconnection
		// cycle.
		tbh_sleep_ms((i * 13) % 60);
		t0 = tbh_now_ms();
		tb_sub_close(s);
		tb_client_close(c);
		took = tbh_now_ms() - t0;
		if (took > CLOSE_MAX_MS) {
			print_error("round %d: close took %lld ms\n", i,
			    (long long) took);
			fail();
		}
		if (tbh_restart(&f->b) != 0) {
			fail();
		}
	}
	f->passed = true;
}

// A subscription opened before its broker exists waits with its dialer
// retrying; after a second without a connection tb_sub_recv replaces
// that dialer (nng 1.5.2's can stop for good; client/sub.c). The
// subscription must still get the broker's events once it is up.
static void
test_subscription_made_before_its_broker_gets_events(void **state)
{
	tbh_fix    *f = *state;
	tbh_broker *b = &f->b;
	tb_sub     *s = NULL;
	tb_event   *e = NULL;
	int64_t     end;
	bool        got = false;

	assert_int_equal(tbh_broker_paths(b), 0);
	TBH_OK(tb_sub_open(&s, b->events_url, "tb."));
	// Longer than TBC_REDIAL_MS without a connection: the dialer is
	// replaced during this wait.
	assert_int_equal(tb_sub_recv(s, TBH_MS(1500), &e), TB_ETIMEDOUT);
	assert_null(e);
	tbh_fix_start(f, NULL);
	end = tbh_now_ms() + TBH_MS(10000);
	while (!got && tbh_now_ms() < end) {
		tb_id id = tbh_submit(f->c, "noop", NULL, 0, NULL);
		e        = tbh_sub_expect(s, id, "done", 200);
		got      = e != NULL;
		tb_event_free(e);
	}
	tb_sub_close(s);
	assert_true(got);
	f->passed = true;
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, tbh_teardown)
	const struct CMUnitTest tests[] = {
		T(test_one_handle_many_threads),
		T(test_used_handle_in_forked_child_returns_efork),
		T(test_unused_handle_in_forked_child_returns_efork),
		T(test_close_after_the_broker_ended_returns_promptly),
		T(test_subscription_made_before_its_broker_gets_events),
	};
#undef T
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
