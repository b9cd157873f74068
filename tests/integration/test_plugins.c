// test_plugins.c: handler plugins loaded with --plugin. The example plugin
// (examples/plugin/hello.c) end to end through the client library and the
// CLI, its configuration section, cancel and timeout; and the plugins the
// broker must refuse at start: a missing file, no entry point, another
// ABI, a handler name that is taken. Each test starts its own broker.
//
// The plugin paths come from the build (TB_HELLO_SO etc., set by
// CMakeLists.txt with $<TARGET_FILE:...>).

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "harness.h"

#define WAIT_MS TBH_MS(10000)
#define STOP_MS TBH_MS(3000) // a cancel or timeout ends an attempt by then

// expect_str_result fails unless t's result is the msgpack string want.
static void
expect_str_result(tb_task *t, const char *want)
{
	size_t           len = 0;
	const char      *r   = tb_task_result(t, &len);
	msgpack_unpacked up;
	bool             ok;

	msgpack_unpacked_init(&up);
	ok = r != NULL &&
	    msgpack_unpack_next(&up, r, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
	    up.data.type == MSGPACK_OBJECT_STR &&
	    up.data.via.str.size == strlen(want) &&
	    memcmp(up.data.via.str.ptr, want, strlen(want)) == 0;
	if (!ok) {
		print_error("task %llu: result (%zu bytes) is not the msgpack "
		            "string \"%s\"\n",
		    (unsigned long long) tb_task_id(t), len, want);
		if (r != NULL && up.data.type == MSGPACK_OBJECT_STR) {
			print_error("  it is \"%.*s\"\n",
			    (int) up.data.via.str.size, up.data.via.str.ptr);
		}
	}
	msgpack_unpacked_destroy(&up);
	if (!ok) {
		tb_task_free(t);
		fail();
	}
}

// pack_upper packs {"text": text, "ms": ms}.
static void *
pack_upper(const char *text, uint64_t ms, size_t *lenp)
{
	msgpack_sbuffer sb;
	msgpack_packer  pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str_with_body(&pk, "text", 4);
	msgpack_pack_str_with_body(&pk, text, strlen(text));
	msgpack_pack_str_with_body(&pk, "ms", 2);
	msgpack_pack_uint64(&pk, ms);
	*lenp = sb.size;
	return (sb.data); // the caller frees it
}

// expect_refused starts the broker with args and checks that it exits
// with status 1 without ever answering, and that its log has every string
// of want (NULL-terminated).
static void
expect_refused(tbh_fix *f, const char *const *args, const char *const *want)
{
	char *log;

	if (tbh_start(&f->b, args) == 0) {
		print_error("the broker started; want it to refuse\n");
		fail();
	}
	if (!f->b.exited) {
		print_error("the broker did not exit by itself\n");
		fail();
	}
	assert_int_equal(tbh_exit_code(&f->b), 1);
	log = tbh_read_file(f->b.log_path, NULL);
	assert_non_null(log);
	for (int i = 0; want[i] != NULL; i++) {
		if (strstr(log, want[i]) == NULL) {
			print_error("the broker log lacks \"%s\"\n", want[i]);
			free(log);
			fail();
		}
	}
	free(log);
}

static void
test_pool_handler_returns_text_upper_cased(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--plugin", TB_HELLO_SO, NULL };
	size_t            len;
	void             *p = pack_upper("Hello, plugin 42", 100, &len);
	tb_id             id;
	tb_task          *t;

	tbh_fix_start(f, args);
	id = tbh_submit(f->c, "hello.slow_upper", p, len, NULL);
	free(p);
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	expect_str_result(t, "HELLO, PLUGIN 42");
	// It blocked for its 100 ms on a worker thread.
	assert_true(tb_task_finished_at(t) - tb_task_started_at(t) >= 90000);
	tb_task_free(t);
	f->passed = true;
}

static void
test_pool_handler_without_text_ends_dead_without_retry(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--plugin", TB_HELLO_SO, NULL };
	tb_submit_opts    o      = TB_SUBMIT_OPTS_INIT;
	size_t            len;
	void             *p = tbh_pack_ms(10, &len);
	tb_id             id;
	tb_task          *t;

	tbh_fix_start(f, args);
	o.max_attempts = 3;
	id             = tbh_submit(f->c, "hello.slow_upper", p, len, &o);
	free(p);
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 1); // tb_run_set_no_retry
	assert_non_null(tb_task_error(t));
	assert_non_null(strstr(tb_task_error(t), "text"));
	tb_task_free(t);
	f->passed = true;
}

static void
test_pool_handler_cancel_ends_it_cancelled_soon(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--plugin", TB_HELLO_SO, NULL };
	size_t            len;
	void             *p = pack_upper("never", 60000, &len);
	tb_id             id;
	tb_task          *t;
	int64_t           t0;

	tbh_fix_start(f, args);
	id = tbh_submit(f->c, "hello.slow_upper", p, len, NULL);
	free(p);
	assert_int_equal(
	    tbh_wait_state(f->c, id, TB_STATE_RUNNING, WAIT_MS), 0);
	t0 = tbh_now_ms();
	TBH_OK(tb_cancel(f->c, id, NULL));
	t = tbh_wait_final(f->c, id, STOP_MS);
	tbh_expect_state(t, TB_STATE_CANCELLED);
	tb_task_free(t);
	assert_true(tbh_now_ms() - t0 < STOP_MS);
	// The worker saw tb_run_cancelled and is free again: a second task
	// runs to the end. (The broker has one worker per CPU, so this does
	// not prove much alone; the clean stop below does.)
	p  = pack_upper("again", 0, &len);
	id = tbh_submit(f->c, "hello.slow_upper", p, len, NULL);
	free(p);
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	expect_str_result(t, "AGAIN");
	tb_task_free(t);
	assert_int_equal(tbh_stop(&f->b, TBH_MS(10000)), 0);
	f->passed = true;
}

static void
test_pool_handler_timeout_fails_the_attempt(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--plugin", TB_HELLO_SO, NULL };
	tb_submit_opts    o      = TB_SUBMIT_OPTS_INIT;
	size_t            len;
	void             *p = pack_upper("never", 60000, &len);
	tb_id             id;
	tb_task          *t;

	tbh_fix_start(f, args);
	o.timeout_ms = 200;
	id           = tbh_submit(f->c, "hello.slow_upper", p, len, &o);
	free(p);
	t = tbh_wait_final(f->c, id, STOP_MS);
	tbh_expect_state(t, TB_STATE_DEAD);
	assert_non_null(tb_task_error(t));
	assert_non_null(strstr(tb_task_error(t), "timed out"));
	assert_true(tb_task_finished_at(t) - tb_task_started_at(t) <
	    (int64_t) STOP_MS * 1000);
	tb_task_free(t);
	assert_int_equal(tbh_stop(&f->b, TBH_MS(10000)), 0);
	f->passed = true;
}

static void
test_loop_handler_greets_world_by_default(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--plugin", TB_HELLO_SO, NULL };
	size_t            len;
	void             *p = tbh_pack_ms(100, &len);
	tb_id             id;
	tb_task          *t;

	tbh_fix_start(f, args);
	id = tbh_submit(f->c, "hello.greet", p, len, NULL);
	free(p);
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	expect_str_result(t, "hello, world");
	assert_true(tb_task_finished_at(t) - tb_task_started_at(t) >= 90000);
	tb_task_free(t);
	f->passed = true;
}

static void
test_loop_handler_greets_the_name_of_its_config_section(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--plugin", TB_HELLO_SO, NULL };
	size_t            len;
	void             *p = tbh_pack_ms(50, &len);
	tb_id             id;
	tb_task          *t;

	tbh_fix_start_config(f,
	    "[plugin hello]\n"
	    "greeting_name = plugin tester\n"
	    "\n"
	    "[plugin other]\n"
	    "greeting_name = someone else\n",
	    args);
	id = tbh_submit(f->c, "hello.greet", p, len, NULL);
	free(p);
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	expect_str_result(t, "hello, plugin tester");
	tb_task_free(t);
	f->passed = true;
}

static void
test_loop_handler_cancel_stops_its_timer(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--plugin", TB_HELLO_SO, NULL };
	size_t            len;
	void             *p = tbh_pack_ms(60000, &len);
	tb_id             id;
	tb_task          *t;

	tbh_fix_start(f, args);
	id = tbh_submit(f->c, "hello.greet", p, len, NULL);
	free(p);
	assert_int_equal(
	    tbh_wait_state(f->c, id, TB_STATE_RUNNING, WAIT_MS), 0);
	TBH_OK(tb_cancel(f->c, id, NULL));
	t = tbh_wait_final(f->c, id, STOP_MS);
	tbh_expect_state(t, TB_STATE_CANCELLED);
	tb_task_free(t);
	// A timer left running would keep the loop, and the broker, alive.
	assert_int_equal(tbh_stop(&f->b, TBH_MS(10000)), 0);
	f->passed = true;
}

static void
test_loop_handler_timeout_fails_the_attempt(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--plugin", TB_HELLO_SO, NULL };
	tb_submit_opts    o      = TB_SUBMIT_OPTS_INIT;
	size_t            len;
	void             *p = tbh_pack_ms(60000, &len);
	tb_id             id;
	tb_task          *t;

	tbh_fix_start(f, args);
	o.timeout_ms = 200;
	id           = tbh_submit(f->c, "hello.greet", p, len, &o);
	free(p);
	t = tbh_wait_final(f->c, id, STOP_MS);
	tbh_expect_state(t, TB_STATE_DEAD);
	assert_non_null(tb_task_error(t));
	assert_non_null(strstr(tb_task_error(t), "timed out"));
	tb_task_free(t);
	assert_int_equal(tbh_stop(&f->b, TBH_MS(10000)), 0);
	f->passed = true;
}

// A loop attempt still running when the shutdown timeout (1 s) expires
// gets its cancel call, and the broker stops; the task runs again after
// the next start, where it may finish.
static void
test_loop_handler_is_cancelled_at_shutdown(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--plugin", TB_HELLO_SO,
		"--shutdown-timeout", "1", NULL };
	size_t            len;
	void             *p = tbh_pack_ms(60000, &len);
	tb_id             id;
	int64_t           t0;

	tbh_fix_start(f, args);
	id = tbh_submit(f->c, "hello.greet", p, len, NULL);
	free(p);
	assert_int_equal(
	    tbh_wait_state(f->c, id, TB_STATE_RUNNING, WAIT_MS), 0);
	t0 = tbh_now_ms();
	assert_int_equal(tbh_stop(&f->b, TBH_MS(10000)), 0);
	assert_true(tbh_now_ms() - t0 < TBH_MS(5000));
	f->passed = true;
}

// The README's example, through the CLI.
static void
test_cli_submit_wait_prints_the_greeting(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--plugin", TB_HELLO_SO, NULL };
	const char *const cli[]  = { "submit", "hello.greet", "--payload-json",
		 "{\"ms\": 100}", "--wait", NULL };
	const char *const cli2[] = { "submit", "hello.slow_upper",
		"--payload-json", "{\"text\": \"shout\", \"ms\": 10}",
		"--wait", NULL };
	char             *out;

	tbh_fix_start_config(
	    f, "[plugin hello]\ngreeting_name = README\n", args);
	out = tbh_cli_ok(&f->b, cli);
	assert_non_null(out);
	assert_string_equal(out, "hello, README\n");
	free(out);
	out = tbh_cli_ok(&f->b, cli2);
	assert_non_null(out);
	assert_string_equal(out, "SHOUT\n");
	free(out);
	f->passed = true;
}

static void
test_missing_plugin_file_refuses_to_start(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--plugin", "/nonexistent/dir/gone.so",
		NULL };
	const char *const want[] = { "plugin gone", "/nonexistent/dir/gone.so",
		"No such file", NULL };

	expect_refused(f, args, want);
	f->passed = true;
}

// The example loads, then the second plugin fails: the start still stops.
static void
test_plugin_registering_a_taken_name_refuses_to_start(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--plugin", TB_HELLO_SO, "--plugin",
		TB_PLUGIN_DUP_SO, NULL };
	const char *const want[] = { "plugin plugin_dup", "noop",
		"the name is taken", NULL };

	expect_refused(f, args, want);
	f->passed = true;
}

static void
test_plugin_without_entry_point_refuses_to_start(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--plugin", TB_PLUGIN_NOINIT_SO, NULL };
	const char *const want[] = { "plugin plugin_noinit",
		"does not export tb_plugin_init", NULL };

	expect_refused(f, args, want);
	f->passed = true;
}

static void
test_plugin_built_for_another_abi_refuses_to_start(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--plugin", TB_PLUGIN_BADABI_SO, NULL };
	const char *const want[] = { "plugin plugin_badabi", "handler ABI 999",
		NULL };

	expect_refused(f, args, want);
	f->passed = true;
}

static void
test_same_plugin_twice_refuses_to_start(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--plugin", TB_HELLO_SO, "--plugin",
		TB_HELLO_SO, NULL };
	const char *const want[] = { "plugin hello", NULL };

	expect_refused(f, args, want);
	f->passed = true;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, tbh_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_pool_handler_returns_text_upper_cased),
		T(test_pool_handler_without_text_ends_dead_without_retry),
		T(test_pool_handler_cancel_ends_it_cancelled_soon),
		T(test_pool_handler_timeout_fails_the_attempt),
		T(test_loop_handler_greets_world_by_default),
		T(test_loop_handler_greets_the_name_of_its_config_section),
		T(test_loop_handler_cancel_stops_its_timer),
		T(test_loop_handler_timeout_fails_the_attempt),
		T(test_loop_handler_is_cancelled_at_shutdown),
		T(test_cli_submit_wait_prints_the_greeting),
		T(test_missing_plugin_file_refuses_to_start),
		T(test_plugin_registering_a_taken_name_refuses_to_start),
		T(test_plugin_without_entry_point_refuses_to_start),
		T(test_plugin_built_for_another_abi_refuses_to_start),
		T(test_same_plugin_twice_refuses_to_start),
	};

	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
