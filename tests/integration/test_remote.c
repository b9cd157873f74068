// test_remote.c: remote access control. The real broker listens on
// tls+tcp:// and tcp:// loopback ports, the real client library and CLI
// talk to it: TLS with a server certificate only (the client verifies the
// broker's CA) for requests and events; mutual TLS, where a client without
// a certificate, or with one of another CA, is refused and one signed by
// the broker's CA is served (admin requests too); a client that does not
// trust the broker's CA, or expects another name, fails with tls_error;
// the token, accepted when right and answered with unauthorized (nothing
// created) when missing or wrong, with one log line for many refusals;
// and the start-up policy: no tcp listener on a non-loopback address
// without a token or client certificates, refused before anything is
// created or bound, while loopback needs neither.
//
// TLS material: made afresh for each run by tests/data/remote_tls/gen.sh
// (openssl) in a temporary directory.

#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOKEN "3f1c9a7e5b2d4c6a8e0f1b3d5c7a9e2f"
#define WRONG_TOKEN "0000000000000000000000000000000f"

static char tls_dir[TBH_PATH]; // the generated certificates and keys
static char ca[TBH_PATH + 16], other_ca[TBH_PATH + 16];
static char server_cert[TBH_PATH + 16], server_key[TBH_PATH + 16];
static char client_cert[TBH_PATH + 16], client_key[TBH_PATH + 16];
static char rogue_cert[TBH_PATH + 16], rogue_key[TBH_PATH + 16];

// second is a test's second broker; teardown stops it by its pid and
// removes its dir, also after a failed assertion.
static tbh_broker second;

// use_urls points the fixture's broker at scheme://host:port endpoints for
// requests and events (fresh loopback ports), making its dir first, and
// tells the harness to reach it with conn.
static void
use_urls(tbh_fix *f, const char *scheme, const char *ev_scheme,
    const tb_conn_opts *conn)
{
	char path[TBH_PATH + 16];

	assert_int_equal(
	    tbh_write_config(&f->b, "unused", "", path, sizeof(path)),
	    0); // makes the dir and the default paths
	snprintf(f->b.url, sizeof(f->b.url), "%s://127.0.0.1:%d", scheme,
	    tbh_free_tcp_port());
	if (ev_scheme != NULL) {
		snprintf(f->b.events_url, sizeof(f->b.events_url),
		    "%s://127.0.0.1:%d", ev_scheme, tbh_free_tcp_port());
	}
	f->b.conn = conn;
}

// write_secret writes text to DIR/name with mode and returns its path in
// path.
static void
write_secret(tbh_fix *f, const char *name, const char *text, mode_t mode,
    char *path, size_t size)
{
	assert_int_equal(tbh_write_config(&f->b, name, text, path, size), 0);
	assert_int_equal(chmod(path, mode), 0);
}

// count_in_log counts the lines of the broker's log that contain s.
static int
count_in_log(const tbh_fix *f, const char *s)
{
	char *log = tbh_read_file(f->b.log_path, NULL);
	int   n   = 0;

	assert_non_null(log);
	for (const char *p = log; (p = strstr(p, s)) != NULL; p += strlen(s)) {
		n++;
	}
	free(log);
	return (n);
}

// open_with opens a client on the fixture's broker with conn, asserting
// success; requests time out after 3 s.
static tb_client *
open_with(const tbh_fix *f, const tb_conn_opts *conn)
{
	tb_client *c = NULL;

	TBH_OK(tb_client_open_opts(&c, f->b.url, conn));
	TBH_OK(tb_client_set_timeout(c, TBH_MS(3000)));
	return (c);
}

// submit_and_wait submits a noop and waits for it to be done.
static void
submit_and_wait(tb_client *c)
{
	tb_id    id = tbh_submit(c, "noop", NULL, 0, NULL);
	tb_task *t  = tbh_wait_final(c, id, TBH_MS(10000));

	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);
}

static const char *const exec_allow[] = { "--exec-allow", "/bin/true", NULL };

// TLS with a server certificate only: the client verifies the broker
// against the test CA; requests and events both go over TLS.
static void
test_tls_serves_requests_and_events(void **state)
{
	tbh_fix     *f    = *state;
	tb_conn_opts conn = TB_CONN_OPTS_INIT;
	tb_event    *e;
	tb_id        id;

	conn.tls_ca_file = ca;
	use_urls(f, "tls+tcp", "tls+tcp", &conn);
	{
		const char *const args[] = { "--tls-cert", server_cert,
			"--tls-key", server_key, "--exec-allow", "/bin/true",
			NULL };
		tbh_fix_start(f, args);
	}
	submit_and_wait(f->c);
	f->sub = tbh_sub_open(&f->b, f->c, "tb.done.");
	id     = tbh_submit(f->c, "noop", NULL, 0, NULL);
	assert_non_null(e = tbh_sub_expect(f->sub, id, "done", TBH_MS(5000)));
	tb_event_free(e);
	// No client certificates were asked for: tcp peers are not admins.
	TBH_RV(tb_pause(f->c, "q"), TB_EUNAUTHORIZED);
	f->passed = true;
}

// 1,000 raw connect-and-close on each tls+tcp listener (nng 1.5.2 stopped
// accepting after one), then a new client and a new subscriber are served
// (within 1 s: a tls listener cannot be probed, see broker/guard.h).
static void
test_tls_listeners_survive_a_storm(void **state)
{
	tbh_fix     *f    = *state;
	tb_conn_opts conn = TB_CONN_OPTS_INIT;

	conn.tls_ca_file = ca;
	use_urls(f, "tls+tcp", "tls+tcp", &conn);
	{
		const char *const args[] = { "--tls-cert", server_cert,
			"--tls-key", server_key, "--exec-allow", "/bin/true",
			NULL };
		tbh_fix_start(f, args);
	}
	tbh_storm(f->b.url, 1000);
	tbh_storm(f->b.events_url, 1000);
	{
		int64_t    t0 = tbh_now_ms();
		tb_client *c  = open_with(f, &conn);
		TBH_OK(tb_client_set_timeout(c, TBH_MS(1000)));
		TBH_OK(tb_ping(c, NULL));
		fprintf(stderr,
		    "tls: a new client was answered %lld ms after "
		    "the storms\n",
		    (long long) (tbh_now_ms() - t0));
		tb_client_close(c);
	}
	TBH_OK(tb_ping(f->c, NULL));
	f->sub = tbh_sub_open(&f->b, f->c, "tb.done.");
	submit_and_wait(f->c);
	f->passed = true;
}

// A client that does not trust the broker's CA, or expects another name,
// fails with tls_error, and the CLI says so and exits 3.
static void
test_tls_untrusted_broker_fails_clearly(void **state)
{
	tbh_fix          *f    = *state;
	tb_conn_opts      conn = TB_CONN_OPTS_INIT;
	tb_conn_opts      bad  = TB_CONN_OPTS_INIT;
	tb_client        *c;
	char             *err    = NULL;
	const char *const ping[] = { "--tls-ca", other_ca, "ping", NULL };

	conn.tls_ca_file = ca;
	use_urls(f, "tls+tcp", NULL, &conn);
	{
		const char *const args[] = { "--tls-cert", server_cert,
			"--tls-key", server_key, "--exec-allow", "/bin/true",
			NULL };
		tbh_fix_start(f, args);
	}
	bad.tls_ca_file = other_ca;
	c               = open_with(f, &bad);
	TBH_RV(tb_ping(c, NULL), TB_ETLS);
	tb_client_close(c);
	// The system's store does not know the test CA either.
	bad.tls_ca_file = NULL;
	c               = open_with(f, &bad);
	TBH_RV(tb_ping(c, NULL), TB_ETLS);
	tb_client_close(c);
	bad.tls_ca_file     = ca;
	bad.tls_server_name = "broker.example.com";
	c                   = open_with(f, &bad);
	TBH_RV(tb_ping(c, NULL), TB_ETLS);
	tb_client_close(c);

	assert_int_equal(tbh_cli(&f->b, NULL, &err, ping), 3);
	if (strstr(err, "TLS handshake failed") == NULL ||
	    strstr(err, "--tls-ca") == NULL) {
		print_error("CLI stderr: %s\n", err);
		free(err);
		fail();
	}
	free(err);
	// The broker serves on.
	TBH_OK(tb_ping(f->c, NULL));
	f->passed = true;
}

// With --tls-ca, requests and events need a client certificate signed by
// that CA: none, or one of another CA, is refused at the handshake; a
// good one is served, admin requests included.
static void
test_mutual_tls_requires_a_client_certificate(void **state)
{
	tbh_fix     *f    = *state;
	tb_conn_opts conn = TB_CONN_OPTS_INIT;
	tb_conn_opts bad  = TB_CONN_OPTS_INIT;
	tb_client   *c;
	tb_sub      *anon = NULL;
	tb_event    *e;
	tb_id        id;
	char        *out;

	conn.tls_ca_file   = ca;
	conn.tls_cert_file = client_cert;
	conn.tls_key_file  = client_key;
	use_urls(f, "tls+tcp", "tls+tcp", &conn);
	{
		// A wildcard address (the later --listen wins; clients dial
		// 127.0.0.1): client certificates make it allowed.
		char listen[64];
		snprintf(listen, sizeof(listen), "tls+tcp://0.0.0.0:%s",
		    strrchr(f->b.url, ':') + 1);
		const char *const args[] = { "--listen", listen, "--tls-cert",
			server_cert, "--tls-key", server_key, "--tls-ca", ca,
			"--exec-allow", "/bin/true", NULL };
		tbh_fix_start(f, args);
	}
	submit_and_wait(f->c);
	TBH_OK(tb_pause(f->c, "q")); // a proven peer is an admin
	TBH_OK(tb_resume(f->c, "q"));

	bad.tls_ca_file = ca; // no certificate
	c               = open_with(f, &bad);
	TBH_RV(tb_ping(c, NULL), TB_ETLS);
	tb_client_close(c);
	bad.tls_cert_file = rogue_cert; // signed by another CA
	bad.tls_key_file  = rogue_key;
	c                 = open_with(f, &bad);
	TBH_RV(tb_ping(c, NULL), TB_ETLS);
	tb_client_close(c);

	// The CLI with the certificate.
	{
		const char *const args[] = { "--tls-ca", ca, "--tls-cert",
			client_cert, "--tls-key", client_key, "submit", "noop",
			"--wait", NULL };
		out                      = tbh_cli_ok(&f->b, args);
		free(out);
	}

	// Events: a subscriber with the certificate gets them; one without
	// gets none of the same events.
	bad.tls_cert_file = NULL;
	bad.tls_key_file  = NULL;
	TBH_OK(tb_sub_open_opts(&anon, f->b.events_url, "tb.", &bad));
	f->sub = tbh_sub_open(&f->b, f->c, "tb.done.");
	id     = tbh_submit(f->c, "noop", NULL, 0, NULL);
	assert_non_null(e = tbh_sub_expect(f->sub, id, "done", TBH_MS(5000)));
	tb_event_free(e);
	e = NULL;
	TBH_RV(tb_sub_recv(anon, TBH_MS(500), &e), TB_ETIMEDOUT);
	tb_sub_close(anon);
	f->passed = true;
}

// The token: with it a client submits, waits and may send admin
// requests; without it, or with another, every request is unauthorized
// and creates nothing.
static void
test_token_is_required_on_tcp(void **state)
{
	tbh_fix     *f    = *state;
	tb_conn_opts conn = TB_CONN_OPTS_INIT;
	tb_conn_opts bad  = TB_CONN_OPTS_INIT;
	tb_client   *c;
	tb_id        id = 0;
	char         token_path[TBH_PATH + 16];
	char        *out;

	write_secret(
	    f, "token", TOKEN "\n", 0600, token_path, sizeof(token_path));
	conn.token_file = token_path;
	use_urls(f, "tcp", NULL, &conn);
	{
		const char *const args[] = { "--token-file", token_path,
			"--exec-allow", "/bin/true", NULL };
		tbh_fix_start(f, args);
	}
	submit_and_wait(f->c);
	TBH_OK(tb_pause(f->c, "q"));
	TBH_OK(tb_resume(f->c, "q"));

	bad.token = ""; // none, whatever the environment says
	c         = open_with(f, &bad);
	TBH_RV(tb_submit(c, "noop", NULL, 0, NULL, &id), TB_EUNAUTHORIZED);
	TBH_RV(tb_ping(c, NULL), TB_EUNAUTHORIZED);
	tb_client_close(c);
	bad.token = WRONG_TOKEN;
	c         = open_with(f, &bad);
	TBH_RV(tb_submit(c, "noop", NULL, 0, NULL, &id), TB_EUNAUTHORIZED);
	TBH_RV(tb_shutdown(c), TB_EUNAUTHORIZED);
	tb_client_close(c);
	bad.token = TOKEN "x"; // a longer one with the right prefix
	c         = open_with(f, &bad);
	TBH_RV(tb_submit(c, "noop", NULL, 0, NULL, &id), TB_EUNAUTHORIZED);
	tb_client_close(c);
	// Only the one good submit created a task.
	assert_int_equal(tbh_count(f->c, NULL, -1), 1);

	// The token as an option value and through the CLI's --token-file.
	bad.token = TOKEN;
	c         = open_with(f, &bad);
	TBH_OK(tb_ping(c, NULL));
	tb_client_close(c);
	{
		const char *const args[] = { "--token-file", token_path,
			"submit", "noop", "--wait", NULL };
		out                      = tbh_cli_ok(&f->b, args);
		free(out);
	}
	{
		const char *const args[] = { "ping", NULL };
		char             *err    = NULL;
		assert_int_equal(tbh_cli(&f->b, NULL, &err, args), 1);
		assert_non_null(strstr(err, "not allowed for this client"));
		free(err);
	}
	assert_int_equal(tbh_count(f->c, NULL, -1), 2);
	f->passed = true;
}

// Twenty refused requests from one peer make one log line.
static void
test_refusals_are_logged_once_per_peer(void **state)
{
	tbh_fix     *f    = *state;
	tb_conn_opts conn = TB_CONN_OPTS_INIT;
	tb_conn_opts bad  = TB_CONN_OPTS_INIT;
	tb_client   *c;
	char         token_path[TBH_PATH + 16];

	write_secret(f, "token", TOKEN, 0600, token_path, sizeof(token_path));
	conn.token = TOKEN;
	use_urls(f, "tcp", NULL, &conn);
	{
		const char *const args[] = { "--token-file", token_path,
			"--exec-allow", "/bin/true", NULL };
		tbh_fix_start(f, args);
	}
	bad.token = WRONG_TOKEN;
	for (int i = 0; i < 20; i++) {
		// A new client each time: a new connection, the same peer.
		c = open_with(f, &bad);
		TBH_RV(tb_ping(c, NULL), TB_EUNAUTHORIZED);
		tb_client_close(c);
	}
	// The line is written before the reply is sent.
	assert_int_equal(count_in_log(f, "missing or wrong token"), 1);
	assert_int_equal(count_in_log(f, "from 127.0.0.1 refused"), 1);
	TBH_OK(tb_ping(f->c, NULL));
	f->passed = true;
}

// run_broker runs the broker with --data-dir DIR/data-N and args to its
// exit (or kills it after 10 s) and returns its exit code; *errp gets its
// stderr.
static int
run_broker(
    tbh_fix *f, const char *const *args, char **errp, char *data, size_t size)
{
	static int n;
	char      *argv[TBH_MAX_ARGS + 4];
	int        k = 0;

	snprintf(data, size, "%s/data-%d", f->b.dir, ++n);
	argv[k++] = getenv("TB_BROKER_BIN");
	argv[k++] = "--data-dir";
	argv[k++] = data;
	for (int i = 0; args[i] != NULL && k < TBH_MAX_ARGS + 2; i++) {
		argv[k++] = (char *) args[i];
	}
	argv[k] = NULL;
	return (tbh_run(argv, TBH_MS(10000), NULL, errp, f->b.dir));
}

// expect_refused runs the broker with args and fails unless it exits with
// code having said want on stderr, without creating its data dir (the
// check comes before anything is created or bound).
static void
expect_refused(tbh_fix *f, const char *const *args, int code, const char *want)
{
	char        data[TBH_PATH + 16];
	char       *err = NULL;
	int         got = run_broker(f, args, &err, data, sizeof(data));
	struct stat st;

	if (got != code || err == NULL || strstr(err, want) == NULL) {
		print_error("want exit %d and '%s', got exit %d:\n%s\n", code,
		    want, got, err != NULL ? err : "");
		free(err);
		fail();
	}
	free(err);
	if (code == 2 && stat(data, &st) == 0) {
		print_error("the refused broker created %s\n", data);
		fail();
	}
}

// The start-up policy: a non-loopback tcp listener needs a token or
// client certificates, a non-loopback events listener client
// certificates; TLS options must fit the endpoints; secrets must be
// private.
static void
test_unsafe_configurations_are_refused(void **state)
{
	tbh_fix *f = *state;
	char     any[64], any_ev[64], lo[64], lo_tls[64], ipc[TBH_PATH + 16];
	char     token_path[TBH_PATH + 16], open_token[TBH_PATH + 16];
	char     short_token[TBH_PATH + 16];

	write_secret(f, "token", TOKEN, 0600, token_path, sizeof(token_path));
	write_secret(
	    f, "open-token", TOKEN, 0644, open_token, sizeof(open_token));
	write_secret(
	    f, "short-token", "abc", 0600, short_token, sizeof(short_token));
	snprintf(any, sizeof(any), "tcp://0.0.0.0:%d", tbh_free_tcp_port());
	snprintf(
	    any_ev, sizeof(any_ev), "tcp://0.0.0.0:%d", tbh_free_tcp_port());
	snprintf(lo, sizeof(lo), "tcp://127.0.0.1:%d", tbh_free_tcp_port());
	snprintf(lo_tls, sizeof(lo_tls), "tls+tcp://127.0.0.1:%d",
	    tbh_free_tcp_port());
	snprintf(ipc, sizeof(ipc), "ipc://%s/ev.sock", f->b.dir);
	{
		const char *const a[] = { "--listen", any, "--events", ipc,
			"--exec-allow", "/bin/true", NULL };
		expect_refused(f, a, 2, "--token-file FILE");
	}
	{
		char v6[64];
		snprintf(v6, sizeof(v6), "tcp://[::]:%d", tbh_free_tcp_port());
		const char *const a[] = { "--listen", v6, "--events", ipc,
			"--exec-allow", "/bin/true", NULL };
		expect_refused(f, a, 2, "nothing would authenticate them");
	}
	{
		// TLS without client certificates proves nothing either.
		char tls_any[64];
		snprintf(tls_any, sizeof(tls_any), "tls+tcp://0.0.0.0:%d",
		    tbh_free_tcp_port());
		const char *const a[] = { "--listen", tls_any, "--events", ipc,
			"--tls-cert", server_cert, "--tls-key", server_key,
			"--exec-allow", "/bin/true", NULL };
		expect_refused(f, a, 2, "--tls-ca FILE");
	}
	{
		// A token does not guard events.
		const char *const a[] = { "--listen", lo, "--events", any_ev,
			"--token-file", token_path, "--exec-allow",
			"/bin/true", NULL };
		expect_refused(f, a, 2, "cannot authenticate its subscribers");
	}
	{
		const char *const a[] = { "--listen", lo_tls, "--events", ipc,
			"--exec-allow", "/bin/true", NULL };
		expect_refused(f, a, 2, "--tls-cert FILE and --tls-key FILE");
	}
	{
		const char *const a[] = { "--listen", lo, "--events", ipc,
			"--tls-cert", server_cert, "--tls-key", server_key,
			"--exec-allow", "/bin/true", NULL };
		expect_refused(f, a, 2, "drop the TLS options");
	}
	{
		const char *const a[] = { "--listen", "ws://127.0.0.1:1",
			"--events", ipc, NULL };
		expect_refused(f, a, 2, "ipc://PATH, tcp://HOST:PORT");
	}
	{
		const char *const a[] = { "--listen", lo, "--events", ipc,
			"--token-file", open_token, "--exec-allow",
			"/bin/true", NULL };
		expect_refused(f, a, 1, "chmod o-rwx");
	}
	{
		const char *const a[] = { "--listen", lo, "--events", ipc,
			"--token-file", short_token, "--exec-allow",
			"/bin/true", NULL };
		expect_refused(f, a, 1, "16 to 256 printable characters");
	}
	f->passed = true;
}

// Loopback needs no proof; a wildcard address with a token starts too
// (and asks it of every client, here over 127.0.0.1).
static void
test_loopback_and_token_listeners_start(void **state)
{
	tbh_fix     *f    = *state;
	tb_conn_opts none = TB_CONN_OPTS_INIT;
	tb_conn_opts tok  = TB_CONN_OPTS_INIT;
	tbh_broker  *b2   = &second;
	tb_client   *c;
	char         token_path[TBH_PATH + 16];
	char         any[64];

	none.token = "";
	use_urls(f, "tcp", "tcp", &none);
	tbh_fix_start(f, exec_allow);
	submit_and_wait(f->c);
	// Without a token nothing proves a tcp peer: no admin requests.
	TBH_RV(tb_pause(f->c, "q"), TB_EUNAUTHORIZED);
	f->sub = tbh_sub_open(&f->b, f->c, "tb.done.");

	write_secret(f, "token", TOKEN, 0600, token_path, sizeof(token_path));
	tok.token = TOKEN;
	assert_non_null(tbh_mkdtemp(b2->dir, sizeof(b2->dir)));
	snprintf(b2->data_dir, sizeof(b2->data_dir), "%.63s/data", b2->dir);
	snprintf(
	    b2->log_path, sizeof(b2->log_path), "%.63s/broker.log", b2->dir);
	snprintf(b2->events_url, sizeof(b2->events_url), "ipc://%.63s/ev.sock",
	    b2->dir);
	{
		int port = tbh_free_tcp_port();
		snprintf(any, sizeof(any), "tcp://0.0.0.0:%d", port);
		snprintf(b2->url, sizeof(b2->url), "tcp://127.0.0.1:%d", port);
	}
	b2->conn = &tok;
	{
		// The later --listen wins: every interface; tbh_start pings
		// b2->url, over loopback.
		const char *const args[] = { "--listen", any, "--token-file",
			token_path, "--exec-allow", "/bin/true", NULL };
		assert_int_equal(tbh_start(b2, args), 0);
	}
	c = NULL;
	TBH_OK(tb_client_open_opts(&c, b2->url, &tok));
	TBH_OK(tb_ping(c, NULL));
	tb_client_close(c);
	TBH_OK(tb_client_open_opts(&c, b2->url, &none));
	TBH_RV(tb_ping(c, NULL), TB_EUNAUTHORIZED);
	tb_client_close(c);
	assert_int_equal(tbh_stop(b2, TBH_MS(10000)), 0);
	f->passed = true;
}

// make_tls_material runs gen.sh into a fresh temporary directory.
static int
group_setup(void **state)
{
	const char *d = getenv("TB_TEST_DATA");
	char        gen[TBH_PATH + 32];
	char        log[TBH_PATH + 32];
	pid_t       pid;

	(void) state;
	if (d == NULL) {
		print_error("TB_TEST_DATA is not set\n");
		return (-1);
	}
	snprintf(tls_dir, sizeof(tls_dir), "/tmp/tbremote-XXXXXX");
	if (mkdtemp(tls_dir) == NULL) {
		print_error("mkdtemp: %s\n", strerror(errno));
		return (-1);
	}
	snprintf(gen, sizeof(gen), "%s/remote_tls/gen.sh", d);
	snprintf(log, sizeof(log), "%s/gen.log", tls_dir);
	{
		char *const argv[] = { "/bin/sh", gen, tls_dir, NULL };
		if (tbh_spawn(&pid, argv, log, log) != 0 ||
		    tbh_waitpid(pid, 30000) != 0) {
			print_error("%s failed; see %s (is openssl "
			            "installed?)\n",
			    gen, log);
			return (-1);
		}
	}
#define TLS_FILE(var, name) snprintf(var, sizeof(var), "%s/" name, tls_dir)
	TLS_FILE(ca, "ca.pem");
	TLS_FILE(other_ca, "other_ca.pem");
	TLS_FILE(server_cert, "server.pem");
	TLS_FILE(server_key, "server.key");
	TLS_FILE(client_cert, "client.pem");
	TLS_FILE(client_key, "client.key");
	TLS_FILE(rogue_cert, "rogue.pem");
	TLS_FILE(rogue_key, "rogue.key");
#undef TLS_FILE
	// The tests choose every setting themselves.
	unsetenv("TASKBROKER_TOKEN");
	unsetenv("TASKBROKER_TOKEN_FILE");
	unsetenv("TASKBROKER_TLS_CA");
	unsetenv("TASKBROKER_TLS_CERT");
	unsetenv("TASKBROKER_TLS_KEY");
	unsetenv("TASKBROKER_TLS_SERVER_NAME");
	return (0);
}

static int
group_teardown(void **state)
{
	(void) state;
	if (tls_dir[0] != '\0' && getenv("TBH_KEEP") == NULL) {
		tbh_rmtree(tls_dir);
	}
	return (0);
}

static int
teardown(void **state)
{
	tbh_fix *f = *state;

	if (second.dir[0] != '\0') {
		tbh_cleanup(&second, f == NULL || !f->passed);
		memset(&second, 0, sizeof(second));
	}
	if (f != NULL) {
		f->b.conn = NULL; // it pointed into the test's frame
	}
	return (tbh_teardown(state));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_tls_serves_requests_and_events),
		T(test_tls_listeners_survive_a_storm),
		T(test_tls_untrusted_broker_fails_clearly),
		T(test_mutual_tls_requires_a_client_certificate),
		T(test_token_is_required_on_tcp),
		T(test_refusals_are_logged_once_per_peer),
		T(test_unsafe_configurations_are_refused),
		T(test_loopback_and_token_listeners_start),
	};

	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, group_setup, group_teardown));
}
