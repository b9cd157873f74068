// test_notify.c: what the broker does for systemd and log shippers. The
// service notification (broker/notify.c): the test plays systemd's part,
// a Unix datagram socket of its own named to the broker in $NOTIFY_SOCKET
// (and a watchdog period in $WATCHDOG_USEC), on which it reads what the
// broker sends. The log (broker/log.c): priority prefixes when stderr is
// the journal's stream ($JOURNAL_STREAM, here the log file's own device
// and inode), and --log-format json.

#include "harness.h"
#include "harness_json.h"

#include <fcntl.h>
#include <msgpack.h>
#include <sys/stat.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define WATCHDOG_USEC "200000" // 200 ms: a WATCHDOG=1 every 100 ms

// notify_socket binds a datagram socket at DIR/notify.sock into path.
static int
notify_socket(const tbh_broker *b, char *path, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int                fd;

	snprintf(path, len, "%s/notify.sock", b->dir);
	assert_true(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
	return (fd);
}

// expect_message reads datagrams until one holds want, within timeout_ms;
// the messages read are appended to seen (for the failure message).
static bool
expect_message(
    int fd, const char *want, int timeout_ms, char *seen, size_t seenlen)
{
	int64_t end = tbh_now_ms() + timeout_ms;

	for (;;) {
		struct pollfd p    = { .fd = fd, .events = POLLIN };
		int64_t       left = end - tbh_now_ms();
		char          buf[1024];
		ssize_t       n;

		if (left <= 0 || poll(&p, 1, (int) left) <= 0) {
			return (false);
		}
		if ((n = recv(fd, buf, sizeof(buf) - 1, 0)) <= 0) {
			continue;
		}
		buf[n] = '\0';
		strncat(seen, buf, seenlen - strlen(seen) - 1);
		strncat(seen, "|", seenlen - strlen(seen) - 1);
		if (strstr(buf, want) != NULL) {
			return (true);
		}
	}
}

// The broker says READY (with a STATUS of its counts) once it serves,
// keeps the watchdog fed at half its period, and says STOPPING at
// SIGTERM.
static void
test_ready_status_watchdog_and_stopping(void **state)
{
	tbh_fix *f = *state;
	char     path[TBH_PATH];
	char     seen[8192] = "";
	int      fd, fed = 0;
	int64_t  t0;

	assert_int_equal(tbh_broker_paths(&f->b), 0);
	fd = notify_socket(&f->b, path, sizeof(path));
	assert_int_equal(setenv("NOTIFY_SOCKET", path, 1), 0);
	assert_int_equal(setenv("WATCHDOG_USEC", WATCHDOG_USEC, 1), 0);
	tbh_fix_start(f, NULL);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	// tbh_fix_start returned once a ping was answered; READY was sent
	// before the loop ran, so it is already queued on the socket.
	if (!expect_message(fd, "READY=1", TBH_MS(2000), seen, sizeof(seen)) ||
	    strstr(seen,
	        "STATUS=serving: 0 pending, 0 running, 0 worker(s)") == NULL) {
		print_error("no READY=1 with its STATUS; got: %s\n", seen);
		fail();
	}
	// Five watchdog messages within 5 periods' worth of time, scaled.
	t0 = tbh_now_ms();
	while (fed < 5 && tbh_now_ms() - t0 < TBH_MS(1000)) {
		fed += expect_message(
		           fd, "WATCHDOG=1", TBH_MS(1000), seen, sizeof(seen))
		    ? 1
		    : 0;
	}
	if (fed < 5) {
		print_error("%d WATCHDOG=1 in %d ms; got: %s\n", fed,
		    TBH_MS(1000), seen);
		fail();
	}
	assert_int_equal(tbh_signal(&f->b, SIGTERM), 0);
	if (!expect_message(
	        fd, "STOPPING=1", TBH_MS(5000), seen, sizeof(seen))) {
		print_error("no STOPPING=1 at SIGTERM; got: %s\n", seen);
		fail();
	}
	assert_int_equal(tbh_wait_exit(&f->b, TBH_MS(10000)), 0);
	assert_int_equal(tbh_exit_code(&f->b), 0);
	close(fd);
	f->passed = true;
}

// Without $NOTIFY_SOCKET the broker runs as before and says nothing of
// systemd in its log.
static void
test_without_systemd_nothing_changes(void **state)
{
	tbh_fix *f = *state;
	char    *log;

	unsetenv("NOTIFY_SOCKET");
	tbh_fix_start(f, NULL);
	TBH_OK(tb_ping(f->c, NULL));
	log = tbh_read_file(f->b.log_path, NULL);
	assert_non_null(log);
	assert_null(strstr(log, "systemd"));
	free(log);
	f->passed = true;
}

// log_lines calls fn on each line of the broker's log that the broker
// wrote (the harness's own "=== " lines skipped); returns how many.
static int
log_lines(const tbh_fix *f, void (*fn)(const char *line, void *arg), void *arg)
{
	char *log  = tbh_read_file(f->b.log_path, NULL);
	char *save = NULL;
	int   n    = 0;

	assert_non_null(log);
	for (char *l = strtok_r(log, "\n", &save); l != NULL;
	     l       = strtok_r(NULL, "\n", &save)) {
		if (strncmp(l, "=== ", 4) != 0) {
			fn(l, arg);
			n++;
		}
	}
	free(log);
	return (n);
}

static void
check_journal_line(const char *l, void *arg)
{
	int *nwarn = arg;

	// "<N>level message": the priority matches the level, no time.
	if (!((strncmp(l, "<6>info  ", 9) == 0) ||
	        (strncmp(l, "<4>warn  ", 9) == 0 && ++*nwarn) ||
	        strncmp(l, "<7>debug ", 9) == 0 ||
	        strncmp(l, "<3>error ", 9) == 0)) {
		print_error("not a journal line: %s\n", l);
		fail();
	}
}

// With stderr the journal's stream, each line starts with its priority.
static void
test_journal_lines_carry_their_priority(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--log-level", "debug", NULL };
	char              stream[64];
	struct stat       st;
	int               fd, nwarn = 0;

	assert_int_equal(tbh_broker_paths(&f->b), 0);
	fd = open(f->b.log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	close(fd);
	snprintf(stream, sizeof(stream), "%llu:%llu",
	    (unsigned long long) st.st_dev, (unsigned long long) st.st_ino);
	assert_int_equal(setenv("JOURNAL_STREAM", stream, 1), 0);
	// A fault site armed for a hit that never comes: the broker warns
	// that it is armed, and that is all it does.
	assert_int_equal(setenv("TB_FAULT", "nng_epipe:100000000", 1), 0);
	tbh_fix_start(f, args);
	unsetenv("JOURNAL_STREAM");
	unsetenv("TB_FAULT");
	TBH_OK(tb_ping(f->c, NULL));
	assert_true(log_lines(f, check_journal_line, &nwarn) > 3);
	assert_true(nwarn > 0);
	f->passed = true;
}

// A JOURNAL_STREAM that is not stderr (inherited by a process whose
// stderr went elsewhere) changes nothing: lines keep their time.
static void
test_journal_stream_of_another_file_is_ignored(void **state)
{
	tbh_fix *f = *state;
	char    *log;

	assert_int_equal(setenv("JOURNAL_STREAM", "1:1", 1), 0);
	tbh_fix_start(f, NULL);
	unsetenv("JOURNAL_STREAM");
	log = tbh_read_file(f->b.log_path, NULL);
	assert_non_null(log);
	assert_null(strstr(log, "\n<6>"));
	assert_non_null(strstr(log, "Z info  taskbrokerd"));
	free(log);
	f->passed = true;
}

static void
check_json_line(const char *l, void *arg)
{
	int    *nready = arg;
	json_t *j      = tbh_json_parse("a --log-format json line", l);
	json_t *t      = json_object_get(j, "time"),
	       *v      = json_object_get(j, "level"),
	       *m      = json_object_get(j, "msg");

	assert_true(
	    json_is_string(t) && json_is_string(v) && json_is_string(m));
	assert_int_equal(json_object_size(j), 3);
	if (strcmp(json_string_value(v), "info") == 0 &&
	    strstr(json_string_value(m), " ready: requests on ") != NULL) {
		++*nready;
	}
	json_decref(j);
}

// --log-format json: every line is one JSON object with time, level and
// msg; a message with quotes and control characters stays valid JSON.
static void
test_json_log_lines(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--log-format", "json", NULL };
	int               nready = 0;
	tb_id             id;
	tb_task          *t;

	tbh_fix_start(f, args);
	// A sqlite task naming a database that does not exist dies, and its
	// error, which quotes the name, is logged: here a name with a quote
	// and a tab.
	{
		static const char name[] = "a\"b\tc";
		msgpack_sbuffer   sb;
		msgpack_packer    pk;
		char             *log;

		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_map(&pk, 2);
		msgpack_pack_str_with_body(&pk, "db", 2);
		msgpack_pack_str_with_body(&pk, name, sizeof(name) - 1);
		msgpack_pack_str_with_body(&pk, "sql", 3);
		msgpack_pack_str_with_body(&pk, "select 1", 8);
		id = tbh_submit(f->c, "sqlite", sb.data, sb.size, NULL);
		msgpack_sbuffer_destroy(&sb);
		t = tbh_wait_final(f->c, id, TBH_MS(10000));
		tbh_expect_state(t, TB_STATE_DEAD);
		tb_task_free(t);
		log = tbh_read_file(f->b.log_path, NULL);
		assert_non_null(log);
		assert_non_null(strstr(log, "a\\\"b\\u0009c"));
		// A line about a task names its queue and handler too.
		assert_non_null(strstr(log,
		    " (queue default, handler sqlite): "
		    "dead after 1 attempts: "));
		free(log);
	}
	assert_true(log_lines(f, check_json_line, &nready) > 3);
	assert_int_equal(nready, 1);
	f->passed = true;
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, tbh_teardown)
	const struct CMUnitTest tests[] = {
		T(test_ready_status_watchdog_and_stopping),
		T(test_without_systemd_nothing_changes),
		T(test_journal_lines_carry_their_priority),
		T(test_journal_stream_of_another_file_is_ignored),
		T(test_json_log_lines),
	};
#undef T
	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
