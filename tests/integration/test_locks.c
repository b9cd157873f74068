// test_locks.c: one broker per data directory and per ipc socket path. A
// second broker on either refuses to start, naming the first one's pid,
// and the first keeps serving new clients (a second broker that reached
// nng's listen would have probed the socket and deafened it). The locks
// go with the broker, however it ends.

#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// second_broker runs a second taskbrokerd on data_dir, listen and events
// to its end and returns its exit code; *errp receives its log.
static int
second_broker(tbh_fix *f, const char *data_dir, const char *listen,
    const char *events, char **errp)
{
	char *argv[] = { getenv("TB_BROKER_BIN"), "--data-dir",
		(char *) data_dir, "--listen", (char *) listen, "--events",
		(char *) events, NULL };

	assert_non_null(argv[0]);
	return (tbh_run(argv, TBH_MS(10000), NULL, errp, f->b.dir));
}

// expect_refused checks that a second broker exited 1 naming the first
// one's pid and what it holds.
static void
expect_refused(tbh_fix *f, int code, const char *log, const char *what)
{
	char pid[32];

	snprintf(pid, sizeof(pid), "pid %ld", (long) f->b.pid);
	if (code != 1 || log == NULL || strstr(log, what) == NULL ||
	    strstr(log, pid) == NULL || strstr(log, "in use") == NULL) {
		print_error(
		    "second broker: exit %d, log:\n%s\n(wanted exit 1, "
		    "'%s' and '%s')\n",
		    code, log != NULL ? log : "", what, pid);
		fail();
	}
}

// expect_serving checks that the first broker answers a client that
// connects now, within a second.
static void
expect_serving(tbh_fix *f)
{
	tb_client *c = tbh_client(&f->b, TBH_MS(1000));

	assert_non_null(c);
	TBH_OK(tb_ping(c, NULL));
	tb_client_close(c);
}

static void
test_second_broker_on_the_data_dir_is_refused(void **state)
{
	tbh_fix *f = *state;
	char     listen[TBH_PATH];
	char     events[TBH_PATH];
	char    *log = NULL;
	int      code;

	tbh_fix_start(f, NULL);
	snprintf(listen, sizeof(listen), "ipc://%s/other.sock", f->b.dir);
	snprintf(events, sizeof(events), "ipc://%s/other-ev.sock", f->b.dir);
	code = second_broker(f, f->b.data_dir, listen, events, &log);
	expect_refused(f, code, log, "data directory");
	free(log);
	expect_serving(f);
	// The first one still runs tasks to their end.
	{
		tb_id    id = tbh_submit(f->c, "noop", NULL, 0, NULL);
		tb_task *t  = tbh_wait_final(f->c, id, TBH_MS(10000));
		tbh_expect_state(t, TB_STATE_DONE);
		tb_task_free(t);
	}
	f->passed = true;
}

static void
test_second_broker_on_the_socket_is_refused_and_first_serves(void **state)
{
	tbh_fix *f = *state;
	char     data[TBH_PATH];
	char     events[TBH_PATH];
	char    *log = NULL;
	int      code;

	tbh_fix_start(f, NULL);
	snprintf(data, sizeof(data), "%s/data2", f->b.dir);
	snprintf(events, sizeof(events), "ipc://%s/other-ev.sock", f->b.dir);
	// The same request socket, then the same events socket.
	code = second_broker(f, data, f->b.url, events, &log);
	expect_refused(f, code, log, f->b.url);
	free(log);
	expect_serving(f);
	log = NULL;
	snprintf(events, sizeof(events), "ipc://%s/other.sock", f->b.dir);
	code = second_broker(f, data, events, f->b.events_url, &log);
	expect_refused(f, code, log, f->b.events_url);
	free(log);
	expect_serving(f);
	f->passed = true;
}

static void
test_locks_are_released_by_kill9(void **state)
{
	tbh_fix *f = *state;

	tbh_fix_start(f, NULL);
	tb_client_close(f->c);
	f->c = NULL;
	assert_int_equal(tbh_kill9(&f->b), 0);
	// The lock files stay behind; the locks went with the process.
	if (tbh_restart(&f->b) != 0) {
		fail();
	}
	f->c = tbh_client(&f->b, 0);
	assert_non_null(f->c);
	TBH_OK(tb_ping(f->c, NULL));
	f->passed = true;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, tbh_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_second_broker_on_the_data_dir_is_refused),
		T(test_second_broker_on_the_socket_is_refused_and_first_serves),
		T(test_locks_are_released_by_kill9),
	};

	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
