// cmd_tasks.c: the commands on tasks: submit, status, wait, ls and cancel,
// and how a task is shown (text, JSON, its result).

#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <msgpack.h>

#include "output.h"
#include "tbtime.h"

// task_json builds the JSON object of a task (keys as in the usage text).
static json_t *
task_json(const tb_task *t)
{
	const void *res;
	size_t      rlen;
	json_t     *o;

	res = tb_task_result(t, &rlen);
	o   = json_object();
	if (o == NULL) {
		return (NULL);
	}
	json_object_set_new(o, "id", json_integer((json_int_t) tb_task_id(t)));
	json_object_set_new(
	    o, "state", json_string(tb_state_name(tb_task_state(t))));
	json_object_set_new(o, "attempts", json_integer(tb_task_attempts(t)));
	json_object_set_new(
	    o, "max_attempts", json_integer(tb_task_max_attempts(t)));
	json_object_set_new(o, "crashes", json_integer(tb_task_crashes(t)));
	json_object_set_new(
	    o, "max_crashes", json_integer(tb_task_max_crashes(t)));
	json_object_set_new(o, "queue", json_str_or_null(tb_task_queue(t)));
	json_object_set_new(
	    o, "handler", json_str_or_null(tb_task_handler(t)));
	json_object_set_new(o, "priority", json_integer(tb_task_priority(t)));
	json_object_set_new(o, "created_at", json_time(tb_task_created_at(t)));
	json_object_set_new(o, "started_at", json_time(tb_task_started_at(t)));
	json_object_set_new(
	    o, "finished_at", json_time(tb_task_finished_at(t)));
	json_object_set_new(o, "run_at", json_time(tb_task_run_at(t)));
	json_object_set_new(
	    o, "timeout_ms", json_integer(tb_task_timeout_ms(t)));
	json_object_set_new(o, "forever", json_boolean(tb_task_forever(t)));
	json_object_set_new(o, "key", json_str_or_null(tb_task_key(t)));
	json_object_set_new(o, "result", json_bytes(res, rlen));
	json_object_set_new(o, "error", json_str_or_null(tb_task_error(t)));
	return (o);
}

// print_result prints a result in human form: a msgpack string as it is
// (with a newline added if it has none), anything else as a line of JSON.
static void
print_result(const void *p, size_t n)
{
	msgpack_unpacked u;
	size_t           off = 0;
	json_t          *j;

	if (p == NULL || n == 0) {
		return;
	}
	msgpack_unpacked_init(&u);
	// A string result is one str object; check that before converting.
	// Only the first bytes are read: a str header is short.
	if ((((const uint8_t *) p)[0] & 0xe0) == 0xa0 ||
	    ((const uint8_t *) p)[0] == 0xd9 ||
	    ((const uint8_t *) p)[0] == 0xda ||
	    ((const uint8_t *) p)[0] == 0xdb) {
		if (msgpack_unpack_next(&u, p, n, &off) ==
		        MSGPACK_UNPACK_SUCCESS &&
		    off == n && u.data.type == MSGPACK_OBJECT_STR) {
			const msgpack_object_str *s = &u.data.via.str;

			fwrite(s->ptr, 1, s->size, stdout);
			if (s->size == 0 || s->ptr[s->size - 1] != '\n') {
				fputc('\n', stdout);
			}
			msgpack_unpacked_destroy(&u);
			return;
		}
	}
	msgpack_unpacked_destroy(&u);
	j = json_bytes(p, n);
	print_json(j);
}

static void
print_task_human(const tb_task *t)
{
	const void *res;
	size_t      rlen;
	char        b1[64];

	printf("id:           %" PRIu64 "\n", tb_task_id(t));
	printf("state:        %s\n", tb_state_name(tb_task_state(t)));
	printf("queue:        %s\n", tb_task_queue(t));
	printf("handler:      %s\n", tb_task_handler(t));
	printf("priority:     %" PRId32 "\n", tb_task_priority(t));
	printf("attempts:     %" PRIu32 "/%" PRIu32 "\n", tb_task_attempts(t),
	    tb_task_max_attempts(t));
	printf("crashes:      %" PRIu32 "/%" PRIu32 "\n", tb_task_crashes(t),
	    tb_task_max_crashes(t));
	printf("created_at:   %s\n",
	    fmt_time(tb_task_created_at(t), b1, sizeof(b1), true));
	printf("started_at:   %s\n",
	    fmt_time(tb_task_started_at(t), b1, sizeof(b1), true));
	printf("finished_at:  %s\n",
	    fmt_time(tb_task_finished_at(t), b1, sizeof(b1), true));
	printf("run_at:       %s\n",
	    fmt_time(tb_task_run_at(t), b1, sizeof(b1), true));
	if (tb_task_timeout_ms(t) > 0) {
		printf("timeout:      %s\n",
		    tbt_format_duration(
		        tb_task_timeout_ms(t), b1, sizeof(b1)));
	} else {
		printf("timeout:      -\n");
	}
	printf("forever:      %s\n", tb_task_forever(t) ? "yes" : "no");
	printf("key:          %s\n",
	    tb_task_key(t) != NULL ? tb_task_key(t) : "-");
	res = tb_task_result(t, &rlen);
	if (res != NULL && rlen > 0) {
		json_t *j = json_bytes(res, rlen);
		char   *s = j != NULL
		      ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY)
		      : NULL;

		printf("result:       %s\n", s != NULL ? s : "?");
		free(s);
		json_decref(j);
	} else {
		printf("result:       -\n");
	}
	printf("error:        %s\n",
	    tb_task_error(t) != NULL ? tb_task_error(t) : "-");
}

// report_end reports the outcome of waiting for task id: rv and t from
// tb_wait. Returns the exit status: 0 only if the task ended done.
static int
report_end(cli *c, tb_id id, int rv, const tb_task *t, bool print_res)
{
	int state;

	if (t == NULL) {
		return (fail(c, rv, "wait for task %" PRIu64, id));
	}
	state = tb_task_state(t);
	if (c->json) {
		print_json(task_json(t));
	} else if (print_res && state == TB_STATE_DONE) {
		size_t      n;
		const void *p = tb_task_result(t, &n);

		print_result(p, n);
	}
	if (rv == TB_ETIMEDOUT) {
		errorf("task %" PRIu64 ": did not end in time (still %s)", id,
		    tb_state_name(state));
		return (EXIT_FAIL);
	}
	if (state != TB_STATE_DONE) {
		if (tb_task_error(t) != NULL) {
			errorf("task %" PRIu64 " %s: %s", id,
			    tb_state_name(state), tb_task_error(t));
		} else {
			errorf(
			    "task %" PRIu64 " %s", id, tb_state_name(state));
		}
		return (EXIT_FAIL);
	}
	return (EXIT_OK);
}

static const char submit_help[] =
    "Usage: taskbroker submit HANDLER [OPTIONS] [-- ARGV...]\n"
    "\n"
    "Submit a task for HANDLER and print its id. Words after '--' make the\n"
    "payload {\"argv\": [ARGV...]}, merged into the --payload-json object if\n"
    "both are given:  taskbroker submit exec --wait -- /bin/echo hi\n"
    "\n"
    "Options:\n"
    "  -q, --queue Q             queue (default: default)\n"
    "  -p, --priority N          higher runs first within a queue (default "
    "0)\n"
    "  -m, --max-attempts N      attempts before the task is dead (default:\n"
    "                            the broker's)\n"
    "  -C, --max-crashes N       attempts cut short by a crash of the broker\n"
    "                            or of a worker (not counted as attempts)\n"
    "                            before the task is quarantined: dead\n"
    "                            (default: the broker's, 3)\n"
    "  -t, --timeout DURATION    time limit per attempt (default: none)\n"
    "  -d, --delay DURATION      earliest start after acceptance (default 0)\n"
    "  -r, --run-at TIME         earliest start: 2026-11-21T10:00:00Z (UTC\n"
    "                            without a zone; +01:00 allowed), @UNIXSECS,\n"
    "                            or +DURATION from now\n"
    "  -k, --key KEY             idempotency key: while a task with this key\n"
    "                            has not ended, submitting again returns its\n"
    "                            id, marked '(existing)', and adds nothing\n"
    "  -f, --forever             restart the task whenever it ends, until it\n"
    "                            is cancelled\n"
    "  -P, --payload-json JSON   the payload as JSON (sent as msgpack)\n"
    "  -w, --wait                wait for the task to end and print its\n"
    "                            result: a string as it is, anything else as\n"
    "                            one line of JSON\n"
    "  -W, --wait-timeout DURATION  with --wait, give up after that long\n"
    "                            (default: one hour)\n"
    "  -j, --json                print {\"id\": N, \"existing\": BOOL}, or "
    "with\n"
    "                            --wait the task\n"
    "  -h, --help                show this help\n"
    "\n"
    "With --wait the exit status is 0 only if the task ended done; otherwise\n"
    "its error goes to stderr and the status is 1. A broker whose queue is\n"
    "full refuses the task (exit 1).\n";

// DELAY_MAX_MS bounds --delay so that now + delay fits in Unix µs.
#define DELAY_MAX_MS (100ull * 366 * 86400 * 1000)

// now_us is the wall clock in Unix microseconds, for --run-at.
static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

static int
cmd_submit(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "queue", required_argument, NULL, 'q' },
		{ "priority", required_argument, NULL, 'p' },
		{ "max-attempts", required_argument, NULL, 'm' },
		{ "max-crashes", required_argument, NULL, 'C' },
		{ "timeout", required_argument, NULL, 't' },
		{ "delay", required_argument, NULL, 'd' },
		{ "run-at", required_argument, NULL, 'r' },
		{ "key", required_argument, NULL, 'k' },
		{ "forever", no_argument, NULL, 'f' },
		{ "payload-json", required_argument, NULL, 'P' },
		{ "wait", no_argument, NULL, 'w' },
		{ "wait-timeout", required_argument, NULL, 'W' },
		CLI_OPTS_END,
	};
	tb_submit_opts  o     = TB_SUBMIT_OPTS_INIT;
	const char     *pjson = NULL;
	bool            wait = false, have_delay = false;
	int64_t         wait_ms = -1;
	uint64_t        delay   = 0;
	int             nopt, nargs, ch, rv;
	char          **args;
	msgpack_sbuffer b;
	bool            empty;
	tb_client      *tc;
	tb_task        *t = NULL;
	tb_task_spec    spec;
	uint32_t        flags = 0;
	tb_id           id;

	// Everything after the first "--" is ARGV; getopt only sees what
	// comes before it.
	nopt   = argv_split(argc, argv, &args, &nargs);
	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(nopt, argv, ":q:p:m:C:t:d:r:k:fP:wW:jh",
	            longopts, NULL)) != -1) {
		switch (ch) {
		case 'q':
			o.queue = optarg;
			break;
		case 'p':
			if ((rv = opt_priority(
			         "submit", optarg, &o.priority)) >= 0) {
				return (rv);
			}
			break;
		case 'm':
			if ((rv = opt_max_attempts(
			         "submit", optarg, &o.max_attempts)) >= 0) {
				return (rv);
			}
			break;
		case 'C':
			if ((rv = opt_max_crashes(
			         "submit", optarg, &o.max_crashes)) >= 0) {
				return (rv);
			}
			break;
		case 't':
			if ((rv = opt_attempt_timeout(
			         "submit", optarg, &o.timeout_ms)) >= 0) {
				return (rv);
			}
			break;
		case 'd':
			if (!parse_dur(optarg, DELAY_MAX_MS, &delay)) {
				return (usage_error("submit",
				    "bad --delay '%s': " BAD_DUR
				    " of at most 100 years",
				    optarg));
			}
			have_delay = true;
			break;
		case 'r':
			if (tbt_parse_time(optarg, now_us(), &o.run_at) !=
			        TB_OK ||
			    o.run_at < 0) {
				return (usage_error("submit",
				    "bad --run-at '%s': not a time (e.g. "
				    "2026-11-21T10:00:00Z, @1795250532, +30s)",
				    optarg));
			}
			break;
		case 'k':
			if (optarg[0] == '\0') {
				return (usage_error("submit", "empty --key"));
			}
			o.key = optarg;
			break;
		case 'f':
			o.forever = 1;
			break;
		case 'P':
			pjson = optarg;
			break;
		case 'w':
			wait = true;
			break;
		case 'W':
			if ((rv = opt_wait_timeout("submit", "wait-timeout",
			         optarg, &wait_ms)) >= 0) {
				return (rv);
			}
			break;
		default:
			if ((rv = opt_common(
			         c, "submit", submit_help, ch, argv)) >= 0) {
				return (rv);
			}
			break;
		}
	}
	if (optind >= nopt) {
		return (usage_error("submit", "missing HANDLER"));
	}
	if (optind + 1 < nopt) {
		return (usage_error("submit",
		    "unexpected argument '%s' (put ARGV after '--')",
		    argv[optind + 1]));
	}
	if (argv[optind][0] == '\0') {
		return (usage_error("submit", "empty HANDLER"));
	}
	if (have_delay && o.run_at != 0) {
		return (usage_error(
		    "submit", "give --delay or --run-at, not both"));
	}
	if (wait && o.forever) {
		return (usage_error(
		    "submit", "--wait with --forever would never end"));
	}
	if (have_delay && delay > UINT32_MAX) {
		// The wire's delay_ms is 32 bits (49 days); a longer delay
		// is sent as an absolute start time instead.
		o.run_at = now_us() + (int64_t) (delay * 1000);
	} else {
		o.delay_ms = (uint32_t) delay;
	}

	msgpack_sbuffer_init(&b);
	if ((rv = build_payload("submit", pjson, nargs, args, &b, &empty)) !=
	    EXIT_OK) {
		goto out;
	}
	if ((rv = cli_client(c, &tc)) != EXIT_OK) {
		goto out;
	}
	spec.handler     = argv[optind];
	spec.payload     = empty ? NULL : b.data;
	spec.payload_len = empty ? 0 : b.size;
	spec.opts        = &o;
	rv               = tb_submit_batch_flags(tc, &spec, 1, &id, &flags);
	if (rv != TB_OK) {
		rv = fail(c, rv, "submit");
		goto out;
	}
	if (!wait) {
		bool existing = (flags & TB_SUBMIT_EXISTING) != 0;

		if (c->json) {
			rv = print_json(json_pack("{s:I, s:b}", "id",
			    (json_int_t) id, "existing", existing));
		} else {
			printf("%" PRIu64 "%s\n", id,
			    existing ? " (existing)" : "");
			rv = EXIT_OK;
		}
		goto out;
	}
	rv = tb_wait(tc, id, (int) wait_ms, &t);
	rv = report_end(c, id, rv, t, true);
out:
	tb_task_free(t);
	msgpack_sbuffer_destroy(&b);
	return (rv);
}

static const char status_help[] =
    "Usage: taskbroker status [--json] ID\n"
    "\n"
    "Show task ID. With --json, print one object with the keys id, state,\n"
    "attempts, max_attempts, crashes (attempts cut short by a crash of the\n"
    "broker or of a worker, not counted in attempts), max_crashes (the\n"
    "crashes that quarantine it), queue, handler, priority, created_at,\n"
    "started_at, finished_at, run_at (Unix seconds with a fraction, null if\n"
    "not reached; run_at is the earliest next start), timeout_ms (0: none),\n"
    "forever (bool), key (null if none), result (the result as JSON, null\n"
    "if none) and error (null if none).\n"
    "\n"
    "Results convert from msgpack to JSON as expected, except: binary data\n"
    "(and text that is not UTF-8) is a JSON string if it is valid UTF-8,\n"
    "else its base64; map keys that are not strings are stringified;\n"
    "integers above 2^63-1 become reals; NaN and infinities become null.\n";

static int
cmd_status(cli *c, int argc, char **argv)
{
	tb_client *tc;
	tb_task   *t;
	tb_id      id;
	int        rv;

	if ((rv = simple_opts(c, "status", status_help, argc, argv)) >= 0 ||
	    (rv = one_id("status", argc, argv, &id)) >= 0) {
		return (rv);
	}
	if ((rv = cli_client(c, &tc)) != EXIT_OK) {
		return (rv);
	}
	if ((rv = tb_status(tc, id, &t)) != TB_OK) {
		return (fail(c, rv, "status %" PRIu64, id));
	}
	if (c->json) {
		rv = print_json(task_json(t));
	} else {
		print_task_human(t);
	}
	tb_task_free(t);
	return (rv);
}

static const char wait_help[] =
    "Usage: taskbroker wait [--timeout DURATION] [--json] ID...\n"
    "\n"
    "Wait for each task to end and print 'ID STATE' per task (--json: an\n"
    "array of task objects, as 'status --json' prints them). Exits 0 if all\n"
    "ended done, 1 if any ended otherwise or did not end in time.\n"
    "\n"
    "Options:\n"
    "  -t, --timeout DURATION  wait at most that long for all of them\n"
    "                     (default: one hour per task)\n"
    "  -j, --json         print JSON\n"
    "  -h, --help         show this help\n";

static int
cmd_wait(cli *c, int argc, char **argv)
{
	int64_t    timeout = -1, deadline = 0, left;
	json_t    *arr = NULL;
	tb_client *tc;
	int        rv, worst = EXIT_OK, first;

	if ((rv = timeout_opts(c, "wait", wait_help, argc, argv, &timeout)) >=
	    0) {
		return (rv);
	}
	if (optind >= argc) {
		return (usage_error("wait", "missing ID"));
	}
	first = optind;
	for (int i = first; i < argc; i++) {
		tb_id id;

		if (!parse_id(argv[i], &id)) {
			return (usage_error(
			    "wait", "bad ID '%s': not a task id", argv[i]));
		}
	}
	if ((rv = cli_client(c, &tc)) != EXIT_OK) {
		return (rv);
	}
	if (timeout >= 0) {
		deadline = mono_ms() + timeout;
	}
	if (c->json && (arr = json_array()) == NULL) {
		errorf("wait: out of memory");
		return (EXIT_FAIL);
	}
	for (int i = first; i < argc; i++) {
		tb_task *t = NULL;
		tb_id    id;
		int      st;

		parse_id(argv[i], &id);
		left = -1;
		if (timeout >= 0 && (left = deadline - mono_ms()) < 0) {
			left = 0;
		}
		rv = tb_wait(tc, id, (int) left, &t);
		if (t == NULL) {
			st = fail(c, rv, "wait for task %" PRIu64, id);
		} else {
			int state = tb_task_state(t);

			if (c->json) {
				json_array_append_new(arr, task_json(t));
			} else if (rv == TB_ETIMEDOUT) {
				printf("%" PRIu64 " %s (timed out)\n", id,
				    tb_state_name(state));
			} else if (tb_task_error(t) != NULL) {
				printf("%" PRIu64 " %s: %s\n", id,
				    tb_state_name(state), tb_task_error(t));
			} else {
				printf("%" PRIu64 " %s\n", id,
				    tb_state_name(state));
			}
			st = (rv == TB_OK && state == TB_STATE_DONE)
			    ? EXIT_OK
			    : EXIT_FAIL;
		}
		// Unreachable (3) outranks a failed task (1).
		if (st > worst) {
			worst = st;
		}
		tb_task_free(t);
	}
	if (c->json && print_json(arr) != EXIT_OK && worst == EXIT_OK) {
		worst = EXIT_FAIL;
	}
	return (worst);
}

static const char ls_help[] =
    "Usage: taskbroker ls [--queue Q] [--state S] [--handler H]\n"
    "                     [--older-than DURATION] [--newer-than DURATION]\n"
    "                     [--limit N] [--after ID] [--json]\n"
    "\n"
    "List tasks in id order: ID STATE QUEUE HANDLER ATTEMPTS CREATED (UTC),\n"
    "or with --json an array of task objects as 'status --json' prints them.\n"
    "\n"
    "Options:\n"
    "  -q, --queue Q    only tasks of queue Q\n"
    "  -s, --state S    only tasks in state S (pending, running, done,\n"
    "                   failed, dead, cancelled)\n"
    "  -H, --handler H  only tasks for handler H\n"
    "  -o, --older-than DURATION  only tasks created at least that long ago\n"
    "  -N, --newer-than DURATION  only tasks created at most that long ago\n"
    "  -n, --limit N    at most N tasks, 1..1000 (default 100)\n"
    "  -a, --after ID   only tasks with ids above ID (paging)\n"
    "  -j, --json       print JSON\n"
    "  -h, --help       show this help\n";

static int
cmd_ls(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "queue", required_argument, NULL, 'q' },
		{ "state", required_argument, NULL, 's' },
		{ "limit", required_argument, NULL, 'n' },
		{ "after", required_argument, NULL, 'a' },
		{ "handler", required_argument, NULL, 'H' },
		{ "older-than", required_argument, NULL, 'o' },
		{ "newer-than", required_argument, NULL, 'N' },
		CLI_OPTS_END,
	};
	tb_list_opts o = TB_LIST_OPTS_INIT;
	tb_client   *tc;
	tb_task    **tasks = NULL;
	size_t       n     = 0;
	int64_t      v;
	int          ch, rv;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(
	            argc, argv, ":q:s:n:a:H:o:N:jh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'q':
			o.queue = optarg;
			break;
		case 'H':
			o.handler = optarg;
			break;
		case 'o':
		case 'N':
			if (!parse_dur(optarg, UINT64_MAX,
			        ch == 'o' ? &o.min_age_ms : &o.max_age_ms)) {
				return (usage_error("ls",
				    "bad --%s '%s': " BAD_DUR,
				    ch == 'o' ? "older-than" : "newer-than",
				    optarg));
			}
			break;
		case 's':
			if (tb_state_parse(optarg, &o.state) != TB_OK) {
				return (usage_error("ls",
				    "bad --state '%s': not a task state",
				    optarg));
			}
			break;
		case 'n':
			if (!parse_i64(optarg, 1, 1000, &v)) {
				return (usage_error("ls",
				    "bad --limit '%s': not in 1..1000",
				    optarg));
			}
			o.limit = (uint32_t) v;
			break;
		case 'a':
			if (!parse_id(optarg, &o.after_id)) {
				return (usage_error("ls",
				    "bad --after '%s': not a task id",
				    optarg));
			}
			break;
		default:
			if ((rv = opt_common(c, "ls", ls_help, ch, argv)) >=
			    0) {
				return (rv);
			}
			break;
		}
	}
	if ((rv = no_args("ls", argc, argv)) >= 0) {
		return (rv);
	}
	if ((rv = cli_client(c, &tc)) != EXIT_OK) {
		return (rv);
	}
	if ((rv = tb_list(tc, &o, &tasks, &n)) != TB_OK) {
		return (fail(c, rv, "ls"));
	}
	if (c->json) {
		json_t *arr = json_array();

		for (size_t i = 0; arr != NULL && i < n; i++) {
			json_array_append_new(arr, task_json(tasks[i]));
		}
		rv = print_json(arr);
	} else {
		// Two passes: column widths first, then the rows.
		int  wid = 2, wst = 5, wq = 5, wh = 7, wa = 8, wc = 7;
		char b[64];

		for (size_t i = 0; i < n; i++) {
			const tb_task *t = tasks[i];
			int            k;

			k = snprintf(b, sizeof(b), "%" PRIu64, tb_task_id(t));
			wid = k > wid ? k : wid;
			k   = (int) strlen(tb_state_name(tb_task_state(t)));
			wst = k > wst ? k : wst;
			k   = (int) strlen(tb_task_queue(t));
			wq  = k > wq ? k : wq;
			k   = (int) strlen(tb_task_handler(t));
			wh  = k > wh ? k : wh;
			k   = snprintf(b, sizeof(b), "%" PRIu32 "/%" PRIu32,
			      tb_task_attempts(t), tb_task_max_attempts(t));
			wa  = k > wa ? k : wa;
			k   = snprintf(b, sizeof(b), "%" PRIu32 "/%" PRIu32,
			      tb_task_crashes(t), tb_task_max_crashes(t));
			wc  = k > wc ? k : wc;
		}
		printf("%-*s  %-*s  %-*s  %-*s  %-*s  %-*s  %s\n", wid, "ID",
		    wst, "STATE", wq, "QUEUE", wh, "HANDLER", wa, "ATTEMPTS",
		    wc, "CRASHES", "CREATED");
		for (size_t i = 0; i < n; i++) {
			const tb_task *t = tasks[i];
			char           att[32], cra[32], when[64];

			snprintf(att, sizeof(att), "%" PRIu32 "/%" PRIu32,
			    tb_task_attempts(t), tb_task_max_attempts(t));
			snprintf(cra, sizeof(cra), "%" PRIu32 "/%" PRIu32,
			    tb_task_crashes(t), tb_task_max_crashes(t));
			printf("%-*" PRIu64
			       "  %-*s  %-*s  %-*s  %-*s  %-*s  %s\n",
			    wid, tb_task_id(t), wst,
			    tb_state_name(tb_task_state(t)), wq,
			    tb_task_queue(t), wh, tb_task_handler(t), wa, att,
			    wc, cra,
			    fmt_time(tb_task_created_at(t), when, sizeof(when),
			        false));
		}
		rv = EXIT_OK;
	}
	tb_task_list_free(tasks, n);
	return (rv);
}

static const char cancel_help[] =
    "Usage: taskbroker cancel [--json] ID\n"
    "\n"
    "Cancel task ID and print 'ID STATE' with its final state. A pending,\n"
    "delayed or retry-waiting task ends cancelled at once; a running one is\n"
    "stopped as for a timeout and ends cancelled without a retry (the\n"
    "command returns once it has stopped); a forever task stops for good.\n"
    "An ended task cannot be cancelled (exit 1, 'operation not allowed in\n"
    "the task's state'). --json prints the task after the change.\n";

static int
cmd_cancel(cli *c, int argc, char **argv)
{
	tb_client *tc;
	tb_task   *t = NULL;
	tb_id      id;
	int        rv;

	if ((rv = simple_opts(c, "cancel", cancel_help, argc, argv)) >= 0 ||
	    (rv = one_id("cancel", argc, argv, &id)) >= 0) {
		return (rv);
	}
	if ((rv = cli_client(c, &tc)) != EXIT_OK) {
		return (rv);
	}
	if ((rv = tb_cancel(tc, id, &t)) != TB_OK) {
		return (fail(c, rv, "cancel %" PRIu64, id));
	}
	if (c->json) {
		rv = print_json(task_json(t));
	} else {
		printf(
		    "%" PRIu64 " %s\n", id, tb_state_name(tb_task_state(t)));
	}
	tb_task_free(t);
	return (rv);
}

// The table entries of these commands (cli.h); main.c lists them.
const command submit_cmd = {
	.name    = "submit",
	.run     = cmd_submit,
	.summary = "submit HANDLER [OPTIONS] [-- ARGV...]",
	.desc    = "submit a task, --wait for its result",
	.help    = submit_help,
};

const command status_cmd = {
	.name    = "status",
	.run     = cmd_status,
	.summary = "status ID",
	.desc    = "show a task",
	.help    = status_help,
};

const command wait_cmd = {
	.name    = "wait",
	.run     = cmd_wait,
	.summary = "wait [--timeout DURATION] ID...",
	.desc    = "wait for tasks to end",
	.help    = wait_help,
};

const command ls_cmd = {
	.name    = "ls",
	.run     = cmd_ls,
	.summary = "ls [OPTIONS]",
	.desc    = "list tasks",
	.help    = ls_help,
};

const command cancel_cmd = {
	.name    = "cancel",
	.run     = cmd_cancel,
	.summary = "cancel ID",
	.desc    = "cancel a task, even a running one",
	.help    = cancel_help,
};
