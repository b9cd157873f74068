// test_wedge.c: no peer can stop the broker's listeners. With nng 1.5.2 a
// bare connect() and close() on a listener stopped it from accepting for
// good (the broker's guard, broker/guard.h, now starts a new one). Each
// test opens and closes 1,000 raw Unix or TCP connections on a listener,
// then a new client must be served within SERVED_MS (scaled for sanitizer
// builds), and the clients that were connected before keep being served. A
// second broker on a tcp endpoint fails clearly and the first keeps serving.

#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <nng/nng.h>

#define STORM 1000 // raw connections opened and closed on a listener

// SERVED_MS bounds the time from the storm's end to a new client's answer:
// the 100 ms the broker aims at, plus the 100 ms for which nng 1.5.2's
// listener stops accepting after a handshake that ended with the peer's
// shutdown (ECONNSHUT: the storm's rare connection that the broker had
// already written to). That pause is nng's and cannot be turned off.
#define SERVED_MS 200

// expect_new_client_served checks that a client opened now gets its ping
// answered within SERVED_MS.
static void
expect_new_client_served(const tbh_broker *b)
{
	int64_t    t0 = tbh_now_ms();
	int64_t    took;
	tb_client *c = NULL;
	int        rv;

	TBH_OK(tb_client_open(&c, b->url));
	TBH_OK(tb_client_set_timeout(c, TBH_MS(SERVED_MS)));
	rv   = tb_ping(c, NULL);
	took = tbh_now_ms() - t0;
	// Not timed: closing is the client's business, not the listener's
	// (client/sockclose.c bounds it).
	tb_client_close(c);
	fprintf(stderr, "a new client was answered %lld ms after the storm\n",
	    (long long) took);
	if (rv != TB_OK || took > TBH_MS(SERVED_MS)) {
		print_error("a new client after the storm: ping %s after %lld "
		            "ms (want an answer within %d ms)\n",
		    tb_strerror(rv), (long long) took, TBH_MS(SERVED_MS));
		fail();
	}
}

// expect_new_subscriber_served checks that a subscription opened now
// receives an event within SERVED_MS: it submits a noop task every 10 ms
// until one of their events arrives (PUB drops what it sends before the
// subscriber's connection is attached).
static void
expect_new_subscriber_served(const tbh_broker *b, tb_client *c)
{
	int64_t t0 = tbh_now_ms();
	tb_sub *s  = NULL;

	TBH_OK(tb_sub_open(&s, b->events_url, "tb."));
	for (;;) {
		tb_id     id = tbh_submit(c, "noop", NULL, 0, NULL);
		tb_event *e  = tbh_sub_expect(s, id, NULL, 10);
		if (e != NULL) {
			tb_event_free(e);
			break;
		}
		if (tbh_now_ms() - t0 > TBH_MS(SERVED_MS)) {
			tb_sub_close(s);
			print_error("a new subscriber after the storm got no "
			            "event within %d ms\n",
			    TBH_MS(SERVED_MS));
			fail();
		}
	}
	tb_sub_close(s);
}

// after_storm checks everything a storm must leave intact: the client
// that was connected before, a new client, a subscription opened before,
// a new subscriber, and a task run end to end.
static void
after_storm(tbh_fix *f)
{
	tb_id    id;
	tb_task *t;

	expect_new_client_served(&f->b);
	TBH_OK(tb_ping(f->c, NULL));
	expect_new_subscriber_served(&f->b, f->c);
	id = tbh_submit(f->c, "noop", NULL, 0, NULL);
	t  = tbh_wait_final(f->c, id, TBH_MS(10000));
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);
	// The subscription opened before the storm still gets events (it
	// reconnects by itself if its connection was closed).
	{
		int64_t end = tbh_now_ms() + TBH_MS(5000);
		bool    got = false;
		while (!got && tbh_now_ms() < end) {
			tb_event *e;
			id  = tbh_submit(f->c, "noop", NULL, 0, NULL);
			e   = tbh_sub_expect(f->sub, id, NULL, 100);
			got = e != NULL;
			tb_event_free(e);
		}
		assert_true(got);
	}
}

static void
test_ipc_request_listener_survives_a_storm(void **state)
{
	tbh_fix *f = *state;

	tbh_fix_start(f, NULL);
	f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	tbh_storm(f->b.url, STORM);
	after_storm(f);
	f->passed = true;
}

static void
test_ipc_events_listener_survives_a_storm(void **state)
{
	tbh_fix *f = *state;

	tbh_fix_start(f, NULL);
	f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	tbh_storm(f->b.events_url, STORM);
	after_storm(f);
	f->passed = true;
}

// With the broker's sendmsg fix switched off (the nng_epipe fault site),
// a storm stops the request listener as nng 1.5.2 does; the guard must
// notice, start a new listener, say so in the log, and serve new clients.
static void
test_guard_restarts_a_stopped_listener(void **state)
{
	tbh_fix    *f    = *state;
	const char *env  = getenv("ASAN_OPTIONS");
	char       *asan = env != NULL ? strdup(env) : NULL;
	char        opts[512];
	char       *log;

	// nng 1.5.2 never frees a closed listener's connections that were
	// negotiated but not accepted (the stopped listener's, the guard's
	// probe among them; see broker/guard.h), so this broker's exit
	// under AddressSanitizer reports them: leak checks off for it.
	snprintf(opts, sizeof(opts), "%s%sdetect_leaks=0",
	    asan != NULL ? asan : "", asan != NULL ? ":" : "");
	assert_int_equal(setenv("TB_FAULT", "nng_epipe:1+", 1), 0);
	assert_int_equal(setenv("ASAN_OPTIONS", opts, 1), 0);
	tbh_fix_start(f, NULL);
	unsetenv("TB_FAULT");
	if (asan != NULL) {
		setenv("ASAN_OPTIONS", asan, 1);
	} else {
		unsetenv("ASAN_OPTIONS");
	}
	free(asan);
	f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	// A storm stops the listener almost always; one that happened not to
	// (nng paused instead) is followed by another, up to 5.
	// Each round also negotiates a raw connection right after the storm,
	// with the listener (almost always) stopped: its transport negotiates
	// it and its core never reads it. When the guard replaces the
	// listener after that connection was made, the connection must end
	// (nng closes what the old listener held when the guard closes it),
	// so that a client on it reconnects instead of waiting for ever.
	for (int round = 0; round < 5; round++) {
		int64_t    t0 = tbh_now_ms();
		int64_t    took;
		tb_client *c = NULL;
		size_t     off;
		int        rv, fd;
		bool       replaced, after;

		tbh_storm(f->b.url, STORM);
		fd = tbh_raw_negotiate(f->b.url, 0x30, TBH_MS(2000));
		assert_true(fd >= 0);
		free(tbh_read_file(f->b.log_path, &off));
		// The guard needs GUARD_CONFIRM_MS (250) to be sure, on top
		// of the time a new client needs.
		TBH_OK(tb_client_open(&c, f->b.url));
		TBH_OK(tb_client_set_timeout(c, TBH_MS(1000)));
		rv   = tb_ping(c, NULL);
		took = tbh_now_ms() - t0;
		tb_client_close(c);
		fprintf(stderr,
		    "guard: a new client was answered %lld ms "
		    "after the storm\n",
		    (long long) took);
		TBH_OK(rv);
		log      = tbh_read_file(f->b.log_path, NULL);
		replaced = log != NULL && strstr(log, "started a new one");
		after    = log != NULL && strlen(log) > off &&
		    strstr(log + off, "started a new one");
		free(log);
		if (after && !tbh_fd_wait_eof(fd, TBH_MS(2000))) {
			close(fd);
			print_error("a connection made while the listener was "
			            "stopped was still open %d ms after the "
			            "guard replaced the listener\n",
			    TBH_MS(2000));
			fail();
		}
		close(fd);
		if (replaced) {
			break;
		}
	}
	TBH_OK(tb_ping(f->c, NULL));
	log = tbh_read_file(f->b.log_path, NULL);
	assert_non_null(log);
	if (strstr(log, "fault: nng_epipe fires") == NULL ||
	    strstr(log, "requests: the listener on") == NULL ||
	    strstr(log, "started a new one") == NULL) {
		print_error("the log does not show the fault firing and the "
		            "guard starting a new listener\n");
		free(log);
		fail();
	}
	free(log);
	f->passed = true;
}

// tcp_start_args starts the fixture's broker with both endpoints on
// loopback tcp and args (which must limit exec, as any tcp listener
// requires).
static void
tcp_start_args(tbh_fix *f, const char *const *args)
{
	tbh_broker *b = &f->b;

	assert_non_null(tbh_mkdtemp(b->dir, sizeof(b->dir)));
	snprintf(b->data_dir, sizeof(b->data_dir), "%s/data", b->dir);
	snprintf(b->log_path, sizeof(b->log_path), "%s/broker.log", b->dir);
	snprintf(
	    b->url, sizeof(b->url), "tcp://127.0.0.1:%d", tbh_free_tcp_port());
	snprintf(b->events_url, sizeof(b->events_url), "tcp://127.0.0.1:%d",
	    tbh_free_tcp_port());
	tbh_fix_start(f, args);
}

static void
tcp_start(tbh_fix *f)
{
	const char *const args[] = { "--exec-allow", "/bin/true", NULL };

	tcp_start_args(f, args);
}

static void
test_tcp_request_listener_survives_a_storm(void **state)
{
	tbh_fix *f = *state;

	tcp_start(f);
	f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	tbh_storm(f->b.url, STORM);
	after_storm(f);
	f->passed = true;
}

static void
test_tcp_events_listener_survives_a_storm(void **state)
{
	tbh_fix *f = *state;

	tcp_start(f);
	f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	tbh_storm(f->b.events_url, STORM);
	after_storm(f);
	f->passed = true;
}

// A second broker given the first one's tcp endpoint (its own data dir)
// fails to start, saying the address is in use, and the first keeps
// serving; the same for the events endpoint.
static void
test_second_broker_on_a_tcp_endpoint_fails_clearly(void **state)
{
	tbh_fix *f = *state;
	char     data[TBH_PATH], other[64];
	char    *err = NULL;
	int      code;

	tcp_start(f);
	snprintf(data, sizeof(data), "%s/data2", f->b.dir);
	snprintf(
	    other, sizeof(other), "tcp://127.0.0.1:%d", tbh_free_tcp_port());
	for (int i = 0; i < 2; i++) {
		const char *listen = i == 0 ? f->b.url : other;
		const char *events = i == 0 ? other : f->b.events_url;
		const char *taken  = i == 0 ? f->b.url : f->b.events_url;
		char *argv[] = { getenv("TB_BROKER_BIN"), "--data-dir", data,
			"--listen", (char *) listen, "--events",
			(char *) events, "--exec-allow", "/bin/true", NULL };

		code = tbh_run(argv, TBH_MS(10000), NULL, &err, f->b.dir);
		if (code != 1 || err == NULL || strstr(err, taken) == NULL ||
		    strstr(err, "in use") == NULL) {
			print_error("second broker on %s: exit %d, log:\n%s\n",
			    taken, code, err != NULL ? err : "");
			free(err);
			fail();
		}
		free(err);
		err = NULL;
		expect_new_client_served(&f->b);
		TBH_OK(tb_ping(f->c, NULL));
	}
	f->passed = true;
}

// dialer_connects returns how many connections this process's nng
// dialers for url have made (the client library's, here): it grows when
// the broker closed a client's connection and the client made a new one.
static uint64_t
dialer_connects(const char *url)
{
	nng_stat *root;
	uint64_t  n = 0;

	TBH_OK(nng_stats_get(&root) == 0 ? TB_OK : TB_ENOMEM);
	for (nng_stat *d = nng_stat_child(root); d != NULL;
	     d           = nng_stat_next(d)) {
		nng_stat *u, *c;
		if (strcmp(nng_stat_name(d), "dialer") == 0 &&
		    (u = nng_stat_find(d, "url")) != NULL &&
		    strcmp(nng_stat_string(u), url) == 0 &&
		    (c = nng_stat_find(d, "connect")) != NULL) {
			n += nng_stat_value(c);
		}
	}
	nng_stats_free(root);
	return (n);
}

// wait_verdict waits until the broker's log has, after offset, the
// guard's verdict on a suspected listener: kept (true) or replaced.
static bool
wait_verdict(tbh_fix *f, size_t offset)
{
	int64_t deadline = tbh_now_ms() + TBH_MS(5000);

	for (;;) {
		size_t len = 0;
		char  *log = tbh_read_file(f->b.log_path, &len);
		bool   kept, replaced;

		assert_non_null(log);
		kept     = len > offset && strstr(log + offset, "it is kept");
		replaced = len > offset &&
		    strstr(log + offset, "started a new one") != NULL;
		free(log);
		if (kept && replaced) {
			print_error("the guard both kept and replaced\n");
			fail();
		}
		if (kept || replaced) {
			return (kept);
		}
		if (tbh_now_ms() > deadline) {
			print_error("no verdict of the guard in 5 s\n");
			tbh_print_log(&f->b, 40);
			fail();
		}
		tbh_sleep_ms(5);
	}
}

// A tcp listener that only paused after failed handshakes (a peer that
// shut down cleanly) accepts the guard's probe and is kept: its clients'
// connections stay (so nng's REQ resends nothing of theirs). Before the
// probe the guard replaced any listener idle for 250 ms after such an
// error. A storm that stopped the listener for real (rare) is followed by
// another, up to 5.
static void
test_guard_keeps_a_listener_that_only_paused(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--exec-allow", "/bin/true",
		"--log-level", "debug", NULL };

	tcp_start_args(f, args);
	for (int round = 0; round < 5; round++) {
		uint64_t connects;
		size_t   offset = 0;
		char    *log;

		TBH_OK(tb_ping(f->c, NULL));
		connects = dialer_connects(f->b.url);
		assert_true(connects >= 1);
		log = tbh_read_file(f->b.log_path, &offset);
		free(log);
		tbh_storm(f->b.url, 20);
		if (!wait_verdict(f, offset)) {
			continue; // it had stopped: replaced, rightly
		}
		TBH_OK(tb_ping(f->c, NULL));
		assert_int_equal(dialer_connects(f->b.url), connects);
		f->passed = true;
		return;
	}
	print_error(
	    "5 storms, and the guard replaced the listener each time\n");
	fail();
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, tbh_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_ipc_request_listener_survives_a_storm),
		T(test_ipc_events_listener_survives_a_storm),
		T(test_tcp_request_listener_survives_a_storm),
		T(test_tcp_events_listener_survives_a_storm),
		T(test_second_broker_on_a_tcp_endpoint_fails_clearly),
		T(test_guard_restarts_a_stopped_listener),
		T(test_guard_keeps_a_listener_that_only_paused),
	};

	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
