// test_config.c: taskbrokerd's command line (broker/config.c).

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "store.h"

// parse runs config_parse on a NULL-terminated argument list; the messages
// it prints land in *outp / *errp (malloc'd, caller frees).
static int
parse(config *cfg, char **outp, char **errp, ...)
{
	char   *argv[32];
	int     argc = 0;
	va_list ap;
	size_t  on, en;
	FILE   *out = open_memstream(outp, &on);
	FILE   *err = open_memstream(errp, &en);
	int     rv;

	argv[argc++] = "taskbrokerd";
	va_start(ap, errp);
	for (char *a; (a = va_arg(ap, char *)) != NULL;) {
		argv[argc++] = a;
	}
	va_end(ap);
	argv[argc] = NULL;
	config_init(cfg);
	rv = config_parse(cfg, argc, argv, out, err);
	fclose(out);
	fclose(err);
	return (rv);
}

static void
test_defaults_need_no_arguments(void **state)
{
	config cfg;
	char  *out, *err;

	(void) state;
	assert_int_equal(parse(&cfg, &out, &err, NULL), CONFIG_OK);
	assert_string_equal(cfg.data_dir, "data");
	assert_string_equal(cfg.listen, "ipc://run/taskbroker.sock");
	assert_string_equal(cfg.events, "ipc://run/taskbroker-events.sock");
	assert_int_equal(cfg.workers, 4);
	assert_int_equal(cfg.shutdown_timeout, 30);
	assert_int_equal(cfg.durability, STORE_FULL);
	assert_int_equal(cfg.max_attempts, 1);
	assert_int_equal(cfg.max_crashes, 3);
	config_fini(&cfg);
	free(out);
	free(err);
}

static void
test_flags_override_defaults_in_both_spellings(void **state)
{
	config cfg;
	char  *out, *err;

	(void) state;
	assert_int_equal(
	    parse(&cfg, &out, &err, "--data-dir", "/tmp/x", "--workers=8",
	        "--durability", "normal", "--shutdown-timeout=1", "--listen",
	        "tcp://127.0.0.1:0", NULL),
	    CONFIG_OK);
	assert_string_equal(cfg.data_dir, "/tmp/x");
	assert_string_equal(cfg.listen, "tcp://127.0.0.1:0");
	assert_int_equal(cfg.workers, 8);
	assert_int_equal(cfg.shutdown_timeout, 1);
	assert_int_equal(cfg.durability, STORE_NORMAL);
	config_fini(&cfg);
	free(out);
	free(err);
}

static void
test_out_of_range_number_is_a_usage_error(void **state)
{
	config cfg;
	char  *out, *err;

	(void) state;
	assert_int_equal(
	    parse(&cfg, &out, &err, "--workers", "0", NULL), CONFIG_BAD);
	assert_non_null(strstr(err, "--workers"));
	config_fini(&cfg);
	free(out);
	free(err);
	assert_int_equal(
	    parse(&cfg, &out, &err, "--workers", "4x", NULL), CONFIG_BAD);
	config_fini(&cfg);
	free(out);
	free(err);
}

static void
test_unknown_choice_lists_the_choices(void **state)
{
	config cfg;
	char  *out, *err;

	(void) state;
	assert_int_equal(
	    parse(&cfg, &out, &err, "--durability", "sometimes", NULL),
	    CONFIG_BAD);
	assert_non_null(strstr(err, "full"));
	assert_non_null(strstr(err, "normal"));
	config_fini(&cfg);
	free(out);
	free(err);
}

static void
test_unknown_option_and_stray_argument_are_usage_errors(void **state)
{
	config cfg;
	char  *out, *err;

	(void) state;
	assert_int_equal(
	    parse(&cfg, &out, &err, "--no-such", NULL), CONFIG_BAD);
	assert_non_null(strstr(err, "--no-such"));
	config_fini(&cfg);
	free(out);
	free(err);
	assert_int_equal(parse(&cfg, &out, &err, "stray", NULL), CONFIG_BAD);
	assert_non_null(strstr(err, "stray"));
	config_fini(&cfg);
	free(out);
	free(err);
}

static void
test_help_lists_every_option_and_exits(void **state)
{
	config cfg;
	char  *out, *err;

	(void) state;
	assert_int_equal(parse(&cfg, &out, &err, "--help", NULL), CONFIG_EXIT);
	const char *names[] = { "--data-dir", "--listen", "--events",
		"--workers", "--max-running", "--shutdown-timeout",
		"--durability", "--log-level", "--max-crashes", "--version" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		assert_non_null(strstr(out, names[i]));
	}
	config_fini(&cfg);
	free(out);
	free(err);
	assert_int_equal(
	    parse(&cfg, &out, &err, "--version", NULL), CONFIG_EXIT);
	assert_non_null(strstr(out, "taskbrokerd"));
	config_fini(&cfg);
	free(out);
	free(err);
}

// --max-crashes: on the command line, in [broker] and per [queue NAME];
// the command line wins over the file, and 0 is refused (a task must not
// loop on crashes for ever).
static void
test_max_crashes_from_flags_file_and_queue(void **state)
{
	config              cfg;
	const config_queue *q;
	char               *out, *err;
	char                path[] = "/tmp/tb_config_XXXXXX";
	int                 fd;
	FILE               *fp;

	(void) state;
	assert_int_equal(
	    parse(&cfg, &out, &err, "--max-crashes", "7", NULL), CONFIG_OK);
	assert_int_equal(cfg.max_crashes, 7);
	config_fini(&cfg);
	free(out);
	free(err);
	assert_int_equal(
	    parse(&cfg, &out, &err, "--max-crashes=0", NULL), CONFIG_BAD);
	assert_non_null(strstr(err, "--max-crashes"));
	config_fini(&cfg);
	free(out);
	free(err);

	assert_true((fd = mkstemp(path)) >= 0);
	assert_non_null(fp = fdopen(fd, "w"));
	fputs("[broker]\nmax-crashes = 5\n[queue risky]\nmax_crashes = 1\n"
	      "[queue other]\nconcurrency = 2\n",
	    fp);
	fclose(fp);
	assert_int_equal(
	    parse(&cfg, &out, &err, "--config", path, NULL), CONFIG_OK);
	assert_int_equal(cfg.max_crashes, 5);
	assert_non_null(q = config_queue_find(&cfg, "risky"));
	assert_int_equal(q->max_crashes, 1);
	assert_non_null(q = config_queue_find(&cfg, "other"));
	assert_int_equal(q->max_crashes, -1); // the broker's
	config_fini(&cfg);
	free(out);
	free(err);
	assert_int_equal(parse(&cfg, &out, &err, "--config", path,
	                     "--max-crashes", "2", NULL),
	    CONFIG_OK);
	assert_int_equal(cfg.max_crashes, 2);
	config_fini(&cfg);
	free(out);
	free(err);
	unlink(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_need_no_arguments),
		cmocka_unit_test(
		    test_flags_override_defaults_in_both_spellings),
		cmocka_unit_test(test_out_of_range_number_is_a_usage_error),
		cmocka_unit_test(test_unknown_choice_lists_the_choices),
		cmocka_unit_test(
		    test_unknown_option_and_stray_argument_are_usage_errors),
		cmocka_unit_test(test_help_lists_every_option_and_exits),
		cmocka_unit_test(test_max_crashes_from_flags_file_and_queue),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
