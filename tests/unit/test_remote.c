// test_remote.c: broker/remote.c's pure parts: which urls count as
// remote and as loopback, the start-up policy on configurations (no file
// is read: the policy looks only at the settings), and the bound on the
// refusal log (one line per peer per period, a bounded table, peers
// beyond it sharing one line).

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "config.h"
#include "log.h"
#include "remote.h"

static void
test_url_kinds(void **state)
{
	(void) state;
	assert_int_equal(remote_url_kind("ipc:///run/x.sock"), REMOTE_IPC);
	assert_int_equal(remote_url_kind("tcp://1.2.3.4:5"), REMOTE_TCP);
	assert_int_equal(remote_url_kind("tcp6://[::1]:5"), REMOTE_TCP);
	assert_int_equal(remote_url_kind("tls+tcp://h:5"), REMOTE_TLS);
	assert_int_equal(remote_url_kind("tls+tcp4://h:5"), REMOTE_TLS);
	assert_int_equal(remote_url_kind("ws://h:5/x"), REMOTE_OTHER);
	assert_int_equal(remote_url_kind("inproc://x"), REMOTE_OTHER);
	assert_int_equal(remote_url_kind("abstract://x"), REMOTE_OTHER);
}

static void
test_loopback_hosts(void **state)
{
	(void) state;
	assert_true(remote_url_loopback("tcp://127.0.0.1:7000"));
	assert_true(remote_url_loopback("tcp://127.9.8.7:7000"));
	assert_true(remote_url_loopback("tls+tcp://localhost:7000"));
	assert_true(remote_url_loopback("tcp://LocalHost:7000"));
	assert_true(remote_url_loopback("tcp://[::1]:7000"));
	assert_true(remote_url_loopback("tcp://[::ffff:127.0.0.1]:7000"));
	assert_false(remote_url_loopback("tcp://0.0.0.0:7000"));
	assert_false(remote_url_loopback("tcp://*:7000"));
	assert_false(remote_url_loopback("tcp://:7000"));
	assert_false(remote_url_loopback("tcp://[::]:7000"));
	assert_false(remote_url_loopback("tcp://128.0.0.1:7000"));
	assert_false(remote_url_loopback("tcp://10.1.2.3:7000"));
	assert_false(remote_url_loopback("tcp://localhost.example.com:1"));
	assert_false(remote_url_loopback("tcp://[::1:7000"));
}

// check runs remote_check on the defaults changed by pairs of (option,
// value) given as a NULL-terminated list.
static int
check(const char *const *kv)
{
	config cfg;
	int    rv;
	char  *argv[32] = { "taskbrokerd" };
	int    argc     = 1;

	config_init(&cfg);
	for (int i = 0; kv[i] != NULL; i += 2) {
		char *a;
		assert_int_not_equal(
		    asprintf(&a, "--%s=%s", kv[i], kv[i + 1]), -1);
		argv[argc++] = a;
	}
	assert_int_equal(config_parse(&cfg, argc, argv, stdout, stderr), 0);
	rv = remote_check(&cfg);
	for (int i = 1; i < argc; i++) {
		free(argv[i]);
	}
	config_fini(&cfg);
	return (rv);
}

static void
test_policy(void **state)
{
	(void) state;
	log_threshold = -1; // the refusals are the point: keep them quiet
	{
		const char *const kv[] = { NULL };
		assert_int_equal(check(kv), 0); // ipc
	}
	{
		const char *const kv[] = { "listen", "tcp://127.0.0.1:1",
			"events", "tcp://[::1]:2", NULL };
		assert_int_equal(check(kv), 0);
	}
	{
		const char *const kv[] = { "listen", "tcp://0.0.0.0:1", NULL };
		assert_int_equal(check(kv), -1);
	}
	{
		const char *const kv[] = { "listen", "tcp://0.0.0.0:1",
			"token-file", "/x", NULL };
		assert_int_equal(check(kv), 0);
	}
	{
		const char *const kv[] = { "listen", "tls+tcp://10.0.0.1:1",
			"tls-cert", "/c", "tls-key", "/k", NULL };
		assert_int_equal(check(kv), -1); // no token, no client certs
	}
	{
		const char *const kv[] = { "listen", "tls+tcp://10.0.0.1:1",
			"events", "tls+tcp://10.0.0.1:2", "tls-cert", "/c",
			"tls-key", "/k", "tls-ca", "/ca", NULL };
		assert_int_equal(check(kv), 0);
	}
	{
		const char *const kv[] = { "events", "tls+tcp://10.0.0.1:2",
			"tls-cert", "/c", "tls-key", "/k", "token-file", "/t",
			NULL };
		assert_int_equal(check(kv), -1); // a token does not guard PUB
	}
	{
		const char *const kv[] = { "events", "tcp://10.0.0.1:2",
			"tls-ca", "/ca", NULL };
		assert_int_equal(check(kv), -1);
	}
	{
		const char *const kv[] = { "listen", "tls+tcp://127.0.0.1:1",
			"tls-cert", "/c", NULL };
		assert_int_equal(check(kv), -1); // no key
	}
	{
		const char *const kv[] = { "tls-ca", "/ca", NULL };
		assert_int_equal(check(kv), -1); // no tls endpoint
	}
	{
		const char *const kv[] = { "listen", "ws://127.0.0.1:1/x",
			NULL };
		assert_int_equal(check(kv), -1);
	}
	log_threshold = LOG_INFO;
}

static void
test_refusal_log_is_bounded(void **state)
{
	config   cfg;
	remote  *r;
	uint8_t  key[16] = { 10, 0, 0, 1 };
	uint64_t sup     = 99;
	int64_t  t       = 1000;
	int      lines   = 0;

	(void) state;
	config_init(&cfg);
	assert_int_equal(remote_open(&r, &cfg), 0);
	// One peer: one line, then silence for the period, then a line that
	// counts what was not logged.
	assert_true(remote_log_due(r, NNG_AF_INET, key, t, &sup));
	assert_int_equal(sup, 0);
	for (int i = 0; i < 19; i++) {
		assert_false(remote_log_due(r, NNG_AF_INET, key, t + i, &sup));
	}
	t += REMOTE_LOG_PERIOD_US;
	assert_true(remote_log_due(r, NNG_AF_INET, key, t, &sup));
	assert_int_equal(sup, 19);
	// Many peers within one period: a line each while the table has
	// room, then one shared line for all the others.
	for (int i = 0; i < 3 * REMOTE_LOG_PEERS; i++) {
		key[2] = (uint8_t) (i >> 8);
		key[3] = (uint8_t) i;
		key[1] = 1;
		lines += remote_log_due(r, NNG_AF_INET, key, t + 1, &sup);
	}
	assert_int_equal(lines, REMOTE_LOG_PEERS - 1 + 1);
	remote_close(r);
	config_fini(&cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_kinds),
		cmocka_unit_test(test_loopback_hosts),
		cmocka_unit_test(test_policy),
		cmocka_unit_test(test_refusal_log_is_bounded),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
