// test_notify.c: systemd's service notification (broker/notify.c). The
// test plays systemd's part: a Unix datagram socket of its own, named to
// the broker in $NOTIFY_SOCKET (and a watchdog period in $WATCHDOG_USEC),
// on which it reads what the broker sends.

#include "harness.h"

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

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, tbh_teardown)
	const struct CMUnitTest tests[] = {
		T(test_ready_status_watchdog_and_stopping),
		T(test_without_systemd_nothing_changes),
	};
#undef T
	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
