// taskbroker.c: the taskbroker command-line tool, built only on the public
// client API (taskbroker.h) plus JSON <-> msgpack conversion (json_mp.h).
//
// Global options come before the command (getopt_long with "+" stops at the
// command name); each command parses its own options afterwards. Output is
// a small human format by default and JSON with --json. Exit codes are
// listed in the usage text and follow EXIT_* below.

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <msgpack.h>

#include <taskbroker.h>

#include "json_mp.h"

#define PROG "taskbroker"

enum {
	EXIT_OK      = 0, // success
	EXIT_FAIL    = 1, // the task or the operation failed
	EXIT_USAGE   = 2, // bad command line
	EXIT_UNREACH = 3, // broker unreachable or timed out talking to it
};

// cli is the state of one run: global options and the lazily opened client.
typedef struct cli {
	const char *url;
	const char *events_url;
	bool        json;
	int         timeout_ms; // 0: the library's default
	tb_client  *client;
} cli;

typedef struct command {
	const char *name;
	int (*run)(cli *, int, char **);
	const char *summary; // synopsis for the main usage
	const char *desc;    // what it does, for the main usage
	const char *help;    // the full text for COMMAND --help
} command;

static const char usage_text[] =
    "Usage: taskbroker [OPTIONS] COMMAND [ARGS...]\n"
    "\n"
    "Submit tasks to a taskbrokerd broker, inspect them, wait for them and\n"
    "watch its events.\n"
    "\n"
    "Options (before COMMAND):\n"
    "  -b, --broker URL   request endpoint (default: $TASKBROKER_URL, else\n"
    "                     " TB_DEFAULT_URL ")\n"
    "  -e, --events URL   events endpoint for watch (default:\n"
    "                     $TASKBROKER_EVENTS_URL, else\n"
    "                     " TB_DEFAULT_EVENTS_URL ")\n"
    "  -j, --json         print JSON instead of text (also accepted after\n"
    "                     COMMAND)\n"
    "  -t, --timeout MS   how long to wait for each reply of the broker\n"
    "                     (default 10000)\n"
    "  -h, --help         show this help\n"
    "  -V, --version      show the version\n"
    "\n"
    "Commands:\n"
    "%s" // the command list
    "\n"
    "Run 'taskbroker COMMAND --help' for a command's options. Durations are\n"
    "in milliseconds.\n"
    "\n"
    "Exit status:\n"
    "  0  success\n"
    "  1  the task or the operation failed: the task ended dead, cancelled\n"
    "     or failed, or did not end in time; no such task; wrong state;\n"
    "     refused by the broker\n"
    "  2  usage error: unknown command or option, bad number, bad JSON\n"
    "  3  broker unreachable, or timed out talking to it\n";

// ---- messages -------------------------------------------------------------

static void errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
errorf(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

// usage_error prints a usage error for cmd (NULL: global) and returns 2.
static int usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": ");
	if (cmd != NULL) {
		fprintf(stderr, "%s: ", cmd);
	}
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '" PROG " %s%s--help'.\n",
	    cmd != NULL ? cmd : "", cmd != NULL ? " " : "");
	return (EXIT_USAGE);
}

// exit_for maps a library error to the tool's exit status.
static int
exit_for(int rv)
{
	switch (rv) {
	case TB_OK:
		return (EXIT_OK);
	case TB_EUNREACHABLE:
	case TB_ETIMEDOUT:
		return (EXIT_UNREACH);
	default:
		return (EXIT_FAIL);
	}
}

// fail reports a failed library call as "taskbroker: WHAT: message" and
// returns the exit status for it.
static int fail(const cli *c, int rv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(const cli *c, int rv, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s", tb_strerror(rv));
	if (rv == TB_EUNREACHABLE) {
		fprintf(stderr, " at %s", c->url);
	}
	fputc('\n', stderr);
	if (rv == TB_EINVAL) {
		// Arguments are checked here first, so what the library
		// refuses is most likely the URL (e.g. an unknown scheme).
		fprintf(stderr, PROG ": check the broker URL '%s'\n", c->url);
		return (EXIT_USAGE);
	}
	return (exit_for(rv));
}

// ---- parsing --------------------------------------------------------------

// parse_i64 parses a whole decimal number in [min, max].
static bool
parse_i64(const char *s, int64_t min, int64_t max, int64_t *vp)
{
	char     *end;
	long long v;

	if (s == NULL || *s == '\0') {
		return (false);
	}
	errno = 0;
	v     = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max) {
		return (false);
	}
	*vp = v;
	return (true);
}

// parse_id parses a task id: a whole unsigned decimal number.
static bool
parse_id(const char *s, tb_id *idp)
{
	char              *end;
	unsigned long long v;

	if (s == NULL || *s < '0' || *s > '9') {
		return (false); // strtoull would accept "-1" and " 1"
	}
	errno = 0;
	v     = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0') {
		return (false);
	}
	*idp = v;
	return (true);
}

// getopt_fail reports what getopt_long rejected (opterr is 0).
static int
getopt_fail(const char *cmd, int ch, char **argv)
{
	const char *arg = argv[optind - 1];

	if (ch == ':') {
		return (usage_error(cmd, "option '%s' needs a value", arg));
	}
	if (optopt != 0) {
		return (usage_error(cmd, "unknown option '-%c'", optopt));
	}
	return (usage_error(cmd, "unknown option '%s'", arg));
}

// ---- output helpers -------------------------------------------------------

// fmt_time writes a Unix µs time as UTC ISO 8601, or "-" for 0.
static const char *
fmt_time(int64_t us, char *buf, size_t len, bool millis)
{
	struct tm tm;
	time_t    secs;
	size_t    n;

	if (us <= 0) {
		snprintf(buf, len, "-");
		return (buf);
	}
	secs = (time_t) (us / 1000000);
	if (gmtime_r(&secs, &tm) == NULL ||
	    (n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm)) == 0) {
		snprintf(buf, len, "%" PRId64, us);
		return (buf);
	}
	if (millis) {
		snprintf(buf + n, len - n, ".%03dZ", (int) (us / 1000 % 1000));
	} else {
		snprintf(buf + n, len - n, "Z");
	}
	return (buf);
}

// json_time is a Unix µs time as JSON seconds with a fraction; null for 0.
static json_t *
json_time(int64_t us)
{
	return (us == 0 ? json_null() : json_real((double) us / 1e6));
}

// json_bytes converts msgpack bytes (a result) to JSON; null if there are
// none. Bytes that do not convert are given as their base64 text.
static json_t *
json_bytes(const void *p, size_t n)
{
	json_t *j;
	char   *b64;

	if (p == NULL || n == 0) {
		return (json_null());
	}
	if (jmp_to_json(&j, p, n) == JMP_OK) {
		return (j);
	}
	if ((b64 = jmp_base64(p, n)) == NULL) {
		return (NULL);
	}
	j = json_string(b64);
	free(b64);
	return (j);
}

static json_t *
json_str_or_null(const char *s)
{
	json_t *j;

	if (s == NULL) {
		return (json_null());
	}
	// Broker text should be UTF-8; if not, do not lose it.
	if ((j = json_string(s)) == NULL) {
		j = json_bytes(NULL, 0);
	}
	return (j);
}

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
	json_object_set_new(o, "queue", json_str_or_null(tb_task_queue(t)));
	json_object_set_new(
	    o, "handler", json_str_or_null(tb_task_handler(t)));
	json_object_set_new(o, "priority", json_integer(tb_task_priority(t)));
	json_object_set_new(o, "created_at", json_time(tb_task_created_at(t)));
	json_object_set_new(o, "started_at", json_time(tb_task_started_at(t)));
	json_object_set_new(
	    o, "finished_at", json_time(tb_task_finished_at(t)));
	json_object_set_new(o, "result", json_bytes(res, rlen));
	json_object_set_new(o, "error", json_str_or_null(tb_task_error(t)));
	return (o);
}

// print_json prints j on one line and drops the reference. Returns
// EXIT_FAIL if j is NULL (out of memory) or stdout fails.
static int
print_json(json_t *j)
{
	int rv = EXIT_OK;

	if (j == NULL ||
	    json_dumpf(j, stdout, JSON_COMPACT | JSON_ENCODE_ANY) != 0) {
		errorf("cannot write JSON output");
		rv = EXIT_FAIL;
	} else {
		fputc('\n', stdout);
	}
	json_decref(j);
	return (rv);
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
	printf("created_at:   %s\n",
	    fmt_time(tb_task_created_at(t), b1, sizeof(b1), true));
	printf("started_at:   %s\n",
	    fmt_time(tb_task_started_at(t), b1, sizeof(b1), true));
	printf("finished_at:  %s\n",
	    fmt_time(tb_task_finished_at(t), b1, sizeof(b1), true));
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

// ---- the client -----------------------------------------------------------

static int
cli_client(cli *c, tb_client **cp)
{
	int rv;

	if (c->client == NULL) {
		if ((rv = tb_client_open(&c->client, c->url)) != TB_OK) {
			c->client = NULL;
			if (rv == TB_EINVAL) {
				return (usage_error(
				    NULL, "bad broker URL '%s'", c->url));
			}
			return (fail(c, rv, "open client"));
		}
		if (c->timeout_ms > 0) {
			tb_client_set_timeout(c->client, c->timeout_ms);
		}
	}
	*cp = c->client;
	return (EXIT_OK);
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

// ---- commands -------------------------------------------------------------

static int cmd_help(cli *c, int argc, char **argv);

static const char submit_help[] =
    "Usage: taskbroker submit HANDLER [OPTIONS] [-- ARGV...]\n"
    "\n"
    "Submit a task for HANDLER and print its id. Words after '--' make the\n"
    "payload {\"argv\": [ARGV...]}, merged into the --payload-json object if\n"
    "both are given:  taskbroker submit exec --wait -- /bin/echo hi\n"
    "\n"
    "Options:\n"
    "  -q, --queue Q             queue (default: default)\n"
    "  -p, --priority N          higher runs first within a queue (default 0)\n"
    "  -m, --max-attempts N      attempts before the task is dead (default:\n"
    "                            the broker's)\n"
    "  -t, --timeout MS          time limit per attempt (default: none)\n"
    "  -d, --delay MS            earliest start after acceptance (default 0)\n"
    "  -P, --payload-json JSON   the payload as JSON (sent as msgpack)\n"
    "  -w, --wait                wait for the task to end and print its\n"
    "                            result: a string as it is, anything else as\n"
    "                            one line of JSON\n"
    "  -W, --wait-timeout MS     with --wait, give up after MS (default: one\n"
    "                            hour)\n"
    "  -j, --json                print {\"id\": N}, or with --wait the task\n"
    "  -h, --help                show this help\n"
    "\n"
    "With --wait the exit status is 0 only if the task ended done; otherwise\n"
    "its error goes to stderr and the status is 1.\n";

// build_payload makes the msgpack payload from --payload-json and ARGV
// into b; *emptyp is set when there is no payload at all.
static int
build_payload(const char *pjson, int nargs, char **args, msgpack_sbuffer *b,
    bool *emptyp)
{
	json_error_t je;
	json_t      *j = NULL, *arr;
	int          rv;

	*emptyp = false;
	if (pjson == NULL && nargs == 0) {
		*emptyp = true;
		return (EXIT_OK);
	}
	if (pjson != NULL) {
		j = json_loads(pjson,
		    JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
		    &je);
		if (j == NULL) {
			return (usage_error("submit",
			    "bad --payload-json: line %d, column %d: %s",
			    je.line, je.column, je.text));
		}
	}
	if (nargs > 0) {
		if (j == NULL) {
			j = json_object();
		} else if (!json_is_object(j)) {
			json_decref(j);
			return (usage_error("submit",
			    "--payload-json must be an object when ARGV is "
			    "given"));
		}
		if (j == NULL || (arr = json_array()) == NULL ||
		    json_object_set_new(j, "argv", arr) != 0) {
			json_decref(j);
			errorf("submit: out of memory");
			return (EXIT_FAIL);
		}
		for (int i = 0; i < nargs; i++) {
			json_t *s = json_stringn(args[i], strlen(args[i]));

			if (s == NULL) {
				json_decref(j);
				return (usage_error("submit",
				    "argument '%s' is not valid UTF-8",
				    args[i]));
			}
			json_array_append_new(arr, s);
		}
	}
	rv = jmp_pack_json(b, j);
	json_decref(j);
	if (rv != JMP_OK) {
		if (rv == JMP_EDEPTH) {
			return (usage_error(
			    "submit", "bad payload: %s", jmp_strerror(rv)));
		}
		errorf("submit: payload: %s", jmp_strerror(rv));
		return (EXIT_FAIL);
	}
	return (EXIT_OK);
}

static int
cmd_submit(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"queue", required_argument, NULL, 'q'},
	    {"priority", required_argument, NULL, 'p'},
	    {"max-attempts", required_argument, NULL, 'm'},
	    {"timeout", required_argument, NULL, 't'},
	    {"delay", required_argument, NULL, 'd'},
	    {"payload-json", required_argument, NULL, 'P'},
	    {"wait", no_argument, NULL, 'w'},
	    {"wait-timeout", required_argument, NULL, 'W'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	tb_submit_opts  o       = TB_SUBMIT_OPTS_INIT;
	const char     *pjson   = NULL;
	bool            wait    = false;
	int64_t         wait_ms = -1, v;
	int             nopt = argc, nargs = 0, ch, rv;
	char          **args = NULL;
	msgpack_sbuffer b;
	bool            empty;
	tb_client      *tc;
	tb_task        *t = NULL;
	tb_id           id;

	// Everything after the first "--" is ARGV; getopt only sees what
	// comes before it.
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			nopt  = i;
			args  = argv + i + 1;
			nargs = argc - i - 1;
			break;
		}
	}
	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(
	            nopt, argv, ":q:p:m:t:d:P:wW:jh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'q':
			o.queue = optarg;
			break;
		case 'p':
			if (!parse_i64(optarg, INT32_MIN, INT32_MAX, &v)) {
				return (usage_error("submit",
				    "bad --priority '%s': not an integer",
				    optarg));
			}
			o.priority = (int32_t) v;
			break;
		case 'm':
			if (!parse_i64(optarg, 1, UINT32_MAX, &v)) {
				return (usage_error("submit",
				    "bad --max-attempts '%s': not a positive "
				    "integer",
				    optarg));
			}
			o.max_attempts = (uint32_t) v;
			break;
		case 't':
		case 'd':
			if (!parse_i64(optarg, 0, UINT32_MAX, &v)) {
				return (usage_error("submit",
				    "bad --%s '%s': not a number of "
				    "milliseconds",
				    ch == 't' ? "timeout" : "delay", optarg));
			}
			if (ch == 't') {
				o.timeout_ms = (uint32_t) v;
			} else {
				o.delay_ms = (uint32_t) v;
			}
			break;
		case 'P':
			pjson = optarg;
			break;
		case 'w':
			wait = true;
			break;
		case 'W':
			if (!parse_i64(optarg, 0, INT_MAX, &wait_ms)) {
				return (usage_error("submit",
				    "bad --wait-timeout '%s': not a number of "
				    "milliseconds",
				    optarg));
			}
			break;
		case 'j':
			c->json = true;
			break;
		case 'h':
			fputs(submit_help, stdout);
			return (EXIT_OK);
		default:
			return (getopt_fail("submit", ch, argv));
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

	msgpack_sbuffer_init(&b);
	if ((rv = build_payload(pjson, nargs, args, &b, &empty)) != EXIT_OK) {
		goto out;
	}
	if ((rv = cli_client(c, &tc)) != EXIT_OK) {
		goto out;
	}
	rv = tb_submit(tc, argv[optind], empty ? NULL : b.data,
	    empty ? 0 : b.size, &o, &id);
	if (rv != TB_OK) {
		rv = fail(c, rv, "submit");
		goto out;
	}
	if (!wait) {
		if (c->json) {
			rv = print_json(
			    json_pack("{s:I}", "id", (json_int_t) id));
		} else {
			printf("%" PRIu64 "\n", id);
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

// simple_opts parses the options of a command that has only --json and
// --help; returns -1 to go on, else an exit status.
static int
simple_opts(cli *c, const char *cmd, const char *help, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int ch;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":jh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'j':
			c->json = true;
			break;
		case 'h':
			fputs(help, stdout);
			return (EXIT_OK);
		default:
			return (getopt_fail(cmd, ch, argv));
		}
	}
	return (-1);
}

// one_id parses the single ID argument of status and cancel.
static int
one_id(const char *cmd, int argc, char **argv, tb_id *idp)
{
	if (optind >= argc) {
		return (usage_error(cmd, "missing ID"));
	}
	if (optind + 1 < argc) {
		return (usage_error(
		    cmd, "unexpected argument '%s'", argv[optind + 1]));
	}
	if (!parse_id(argv[optind], idp)) {
		return (usage_error(
		    cmd, "bad ID '%s': not a task id", argv[optind]));
	}
	return (-1);
}

static const char status_help[] =
    "Usage: taskbroker status [--json] ID\n"
    "\n"
    "Show task ID. With --json, print one object with the keys id, state,\n"
    "attempts, max_attempts, queue, handler, priority, created_at,\n"
    "started_at, finished_at (Unix seconds, null if not reached), result\n"
    "(the result as JSON, null if none) and error (null if none).\n"
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
    "Usage: taskbroker wait [--timeout MS] [--json] ID...\n"
    "\n"
    "Wait for each task to end and print 'ID STATE' per task (--json: an\n"
    "array of task objects, as 'status --json' prints them). Exits 0 if all\n"
    "ended done, 1 if any ended otherwise or did not end in time.\n"
    "\n"
    "Options:\n"
    "  -t, --timeout MS   wait at most MS for all of them (default: one hour\n"
    "                     per task)\n"
    "  -j, --json         print JSON\n"
    "  -h, --help         show this help\n";

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static int
cmd_wait(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"timeout", required_argument, NULL, 't'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int64_t    timeout = -1, deadline = 0, left;
	json_t    *arr = NULL;
	tb_client *tc;
	int        ch, rv, worst = EXIT_OK, first;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":t:jh", longopts, NULL)) != -1) {
		switch (ch) {
		case 't':
			if (!parse_i64(optarg, 0, INT_MAX, &timeout)) {
				return (usage_error("wait",
				    "bad --timeout '%s': not a number of "
				    "milliseconds",
				    optarg));
			}
			break;
		case 'j':
			c->json = true;
			break;
		case 'h':
			fputs(wait_help, stdout);
			return (EXIT_OK);
		default:
			return (getopt_fail("wait", ch, argv));
		}
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
    "Usage: taskbroker ls [--queue Q] [--state S] [--limit N] [--after ID]\n"
    "                     [--json]\n"
    "\n"
    "List tasks in id order: ID STATE QUEUE HANDLER ATTEMPTS CREATED (UTC),\n"
    "or with --json an array of task objects as 'status --json' prints them.\n"
    "\n"
    "Options:\n"
    "  -q, --queue Q    only tasks of queue Q\n"
    "  -s, --state S    only tasks in state S (pending, running, done,\n"
    "                   failed, dead, cancelled)\n"
    "  -n, --limit N    at most N tasks, 1..1000 (default 100)\n"
    "  -a, --after ID   only tasks with ids above ID (paging)\n"
    "  -j, --json       print JSON\n"
    "  -h, --help       show this help\n";

static int
cmd_ls(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"queue", required_argument, NULL, 'q'},
	    {"state", required_argument, NULL, 's'},
	    {"limit", required_argument, NULL, 'n'},
	    {"after", required_argument, NULL, 'a'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	tb_list_opts o = TB_LIST_OPTS_INIT;
	tb_client   *tc;
	tb_task    **tasks = NULL;
	size_t       n     = 0;
	int64_t      v;
	int          ch, rv;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":q:s:n:a:jh", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 'q':
			o.queue = optarg;
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
		case 'j':
			c->json = true;
			break;
		case 'h':
			fputs(ls_help, stdout);
			return (EXIT_OK);
		default:
			return (getopt_fail("ls", ch, argv));
		}
	}
	if (optind < argc) {
		return (usage_error(
		    "ls", "unexpected argument '%s'", argv[optind]));
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
		int  wid = 2, wst = 5, wq = 5, wh = 7, wa = 8;
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
		}
		printf("%-*s  %-*s  %-*s  %-*s  %-*s  %s\n", wid, "ID", wst,
		    "STATE", wq, "QUEUE", wh, "HANDLER", wa, "ATTEMPTS",
		    "CREATED");
		for (size_t i = 0; i < n; i++) {
			const tb_task *t = tasks[i];
			char           att[32], when[64];

			snprintf(att, sizeof(att), "%" PRIu32 "/%" PRIu32,
			    tb_task_attempts(t), tb_task_max_attempts(t));
			printf("%-*" PRIu64 "  %-*s  %-*s  %-*s  %-*s  %s\n",
			    wid, tb_task_id(t), wst,
			    tb_state_name(tb_task_state(t)), wq,
			    tb_task_queue(t), wh, tb_task_handler(t), wa, att,
			    fmt_time(tb_task_created_at(t), when, sizeof(when),
			        false));
		}
		rv = EXIT_OK;
	}
	tb_task_list_free(tasks, n);
	return (rv);
}

static const char stats_help[] =
    "Usage: taskbroker stats [--json]\n"
    "\n"
    "Show the broker's figures: tasks in the store by state, tasks\n"
    "submitted and completed since it started, uptime, workers and pid.\n"
    "--json prints one object with the keys pending, running, done, failed,\n"
    "dead, cancelled, submitted, completed, uptime_ms, workers and pid.\n";

static int
cmd_stats(cli *c, int argc, char **argv)
{
	tb_client *tc;
	tb_stats   st;
	int        rv;

	if ((rv = simple_opts(c, "stats", stats_help, argc, argv)) >= 0) {
		return (rv);
	}
	if (optind < argc) {
		return (usage_error(
		    "stats", "unexpected argument '%s'", argv[optind]));
	}
	if ((rv = cli_client(c, &tc)) != EXIT_OK) {
		return (rv);
	}
	if ((rv = tb_stats_get(tc, &st)) != TB_OK) {
		return (fail(c, rv, "stats"));
	}
	if (c->json) {
		return (print_json(json_pack(
		    "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
		    "pending", (json_int_t) st.pending, "running",
		    (json_int_t) st.running, "done", (json_int_t) st.done,
		    "failed", (json_int_t) st.failed, "dead",
		    (json_int_t) st.dead, "cancelled",
		    (json_int_t) st.cancelled, "submitted",
		    (json_int_t) st.submitted, "completed",
		    (json_int_t) st.completed, "uptime_ms",
		    (json_int_t) st.uptime_ms, "workers",
		    (json_int_t) st.workers, "pid", (json_int_t) st.pid)));
	}
	printf("pending    %" PRIu64 "\n", st.pending);
	printf("running    %" PRIu64 "\n", st.running);
	printf("done       %" PRIu64 "\n", st.done);
	printf("failed     %" PRIu64 "\n", st.failed);
	printf("dead       %" PRIu64 "\n", st.dead);
	printf("cancelled  %" PRIu64 "\n", st.cancelled);
	printf("submitted  %" PRIu64 "\n", st.submitted);
	printf("completed  %" PRIu64 "\n", st.completed);
	printf("uptime     %" PRIu64 ".%03us\n", st.uptime_ms / 1000,
	    (unsigned) (st.uptime_ms % 1000));
	printf("workers    %" PRIu32 "\n", st.workers);
	printf("pid        %" PRIu32 "\n", st.pid);
	return (EXIT_OK);
}

static const char watch_help[] =
    "Usage: taskbroker watch [--prefix P] [--count N] [--timeout MS] [--json]\n"
    "\n"
    "Print the broker's events as they come, one per line:\n"
    "  SEQ EVENT ID QUEUE HANDLER STATE ATTEMPT DURATION\n"
    "or with --json one object per line with the keys seq, event, topic, id,\n"
    "queue, handler, state, attempt, duration_us, time (Unix seconds),\n"
    "result and error. Events are best effort: a slow watcher may miss some.\n"
    "\n"
    "Options:\n"
    "  -p, --prefix P     only topics starting with P; topics are\n"
    "                     tb.<event>.<queue>.<handler>, e.g. tb.done.\n"
    "  -n, --count N      stop after N events\n"
    "  -t, --timeout MS   stop when no event came for MS; exits 1 if\n"
    "                     --count was given and not reached\n"
    "  -j, --json         print JSON lines\n"
    "  -h, --help         show this help\n";

static int
print_event(cli *c, const tb_event *e)
{
	const void *res;
	size_t      rlen;
	json_t     *o;

	if (!c->json) {
		printf("%" PRIu64 " %s %" PRIu64 " %s %s %s %" PRIu32
		       " %" PRIu64 ".%03ums\n",
		    tb_event_seq(e), tb_event_name(e), tb_event_task_id(e),
		    tb_event_queue(e), tb_event_handler(e),
		    tb_state_name(tb_event_state(e)), tb_event_attempt(e),
		    tb_event_duration_us(e) / 1000,
		    (unsigned) (tb_event_duration_us(e) % 1000));
		return (EXIT_OK);
	}
	res = tb_event_result(e, &rlen);
	if ((o = json_object()) != NULL) {
		json_object_set_new(
		    o, "seq", json_integer((json_int_t) tb_event_seq(e)));
		json_object_set_new(
		    o, "event", json_str_or_null(tb_event_name(e)));
		json_object_set_new(
		    o, "topic", json_str_or_null(tb_event_topic(e)));
		json_object_set_new(
		    o, "id", json_integer((json_int_t) tb_event_task_id(e)));
		json_object_set_new(
		    o, "queue", json_str_or_null(tb_event_queue(e)));
		json_object_set_new(
		    o, "handler", json_str_or_null(tb_event_handler(e)));
		json_object_set_new(
		    o, "state", json_string(tb_state_name(tb_event_state(e))));
		json_object_set_new(
		    o, "attempt", json_integer(tb_event_attempt(e)));
		json_object_set_new(o, "duration_us",
		    json_integer((json_int_t) tb_event_duration_us(e)));
		json_object_set_new(o, "time", json_time(tb_event_time(e)));
		json_object_set_new(o, "result", json_bytes(res, rlen));
		json_object_set_new(
		    o, "error", json_str_or_null(tb_event_error(e)));
	}
	return (print_json(o));
}

static int
cmd_watch(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"prefix", required_argument, NULL, 'p'},
	    {"count", required_argument, NULL, 'n'},
	    {"timeout", required_argument, NULL, 't'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *prefix = "";
	int64_t     count = -1, timeout = -1, seen = 0;
	tb_sub     *s;
	int         ch, rv;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":p:n:t:jh", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 'p':
			prefix = optarg;
			break;
		case 'n':
			if (!parse_i64(optarg, 1, INT64_MAX, &count)) {
				return (usage_error("watch",
				    "bad --count '%s': not a positive integer",
				    optarg));
			}
			break;
		case 't':
			if (!parse_i64(optarg, 0, INT_MAX, &timeout)) {
				return (usage_error("watch",
				    "bad --timeout '%s': not a number of "
				    "milliseconds",
				    optarg));
			}
			break;
		case 'j':
			c->json = true;
			break;
		case 'h':
			fputs(watch_help, stdout);
			return (EXIT_OK);
		default:
			return (getopt_fail("watch", ch, argv));
		}
	}
	if (optind < argc) {
		return (usage_error(
		    "watch", "unexpected argument '%s'", argv[optind]));
	}
	if ((rv = tb_sub_open(&s, c->events_url, prefix)) != TB_OK) {
		if (rv == TB_EINVAL) {
			return (usage_error(
			    NULL, "bad events URL '%s'", c->events_url));
		}
		errorf("watch %s: %s", c->events_url, tb_strerror(rv));
		return (exit_for(rv));
	}
	rv = EXIT_OK;
	while (count < 0 || seen < count) {
		tb_event *e;
		int       r = tb_sub_recv(s, (int) timeout, &e);

		if (r == TB_ETIMEDOUT) {
			rv = count >= 0 ? EXIT_FAIL : EXIT_OK;
			break;
		}
		if (r == TB_EPROTO) {
			errorf("watch: skipped a malformed event");
			continue;
		}
		if (r != TB_OK) {
			errorf("watch: %s", tb_strerror(r));
			rv = exit_for(r);
			break;
		}
		seen++;
		r = print_event(c, e);
		tb_event_free(e);
		if (r != EXIT_OK || fflush(stdout) != 0) {
			rv = EXIT_FAIL; // e.g. the reader of a pipe went away
			break;
		}
	}
	tb_sub_close(s);
	return (rv);
}

static const char cancel_help[] =
    "Usage: taskbroker cancel [--json] ID\n"
    "\n"
    "Cancel pending task ID: it ends cancelled. A running or ended task\n"
    "cannot be cancelled (exit 1, 'operation not allowed in the task's\n"
    "state'). --json prints the task after the change.\n";

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

static const char ping_help[] =
    "Usage: taskbroker ping [--json]\n"
    "\n"
    "Check that the broker answers and print its version (--json:\n"
    "{\"version\": V}).\n";

static int
cmd_ping(cli *c, int argc, char **argv)
{
	tb_client *tc;
	char      *version = NULL;
	int        rv;

	if ((rv = simple_opts(c, "ping", ping_help, argc, argv)) >= 0) {
		return (rv);
	}
	if (optind < argc) {
		return (usage_error(
		    "ping", "unexpected argument '%s'", argv[optind]));
	}
	if ((rv = cli_client(c, &tc)) != EXIT_OK) {
		return (rv);
	}
	if ((rv = tb_ping(tc, &version)) != TB_OK) {
		return (fail(c, rv, "ping"));
	}
	if (c->json) {
		rv = print_json(json_pack("{s:s}", "version", version));
	} else {
		printf("%s\n", version);
	}
	free(version);
	return (rv);
}

static const char shutdown_help[] =
    "Usage: taskbroker shutdown [--json]\n"
    "\n"
    "Ask the broker to shut down gracefully: it stops accepting tasks, lets\n"
    "running ones finish for a while, then exits. Returns once the broker\n"
    "has acknowledged the request, not once it has exited.\n";

static int
cmd_shutdown(cli *c, int argc, char **argv)
{
	tb_client *tc;
	int        rv;

	if ((rv = simple_opts(c, "shutdown", shutdown_help, argc, argv)) >=
	    0) {
		return (rv);
	}
	if (optind < argc) {
		return (usage_error(
		    "shutdown", "unexpected argument '%s'", argv[optind]));
	}
	if ((rv = cli_client(c, &tc)) != EXIT_OK) {
		return (rv);
	}
	if ((rv = tb_shutdown(tc)) != TB_OK) {
		return (fail(c, rv, "shutdown"));
	}
	if (c->json) {
		return (print_json(json_pack("{s:b}", "ok", 1)));
	}
	printf("shutdown requested\n");
	return (EXIT_OK);
}

static const char help_help[] =
    "Usage: taskbroker help [COMMAND]\n"
    "\n"
    "Show the usage of taskbroker or of COMMAND.\n";

static const command commands[] = {
    {"submit", cmd_submit, "submit HANDLER [OPTIONS] [-- ARGV...]",
        "submit a task, --wait for its result", submit_help},
    {"status", cmd_status, "status ID", "show a task", status_help},
    {"wait", cmd_wait, "wait [--timeout MS] ID...", "wait for tasks to end",
        wait_help},
    {"ls", cmd_ls, "ls [OPTIONS]", "list tasks", ls_help},
    {"cancel", cmd_cancel, "cancel ID", "cancel a pending task", cancel_help},
    {"stats", cmd_stats, "stats", "show the broker's figures", stats_help},
    {"watch", cmd_watch, "watch [OPTIONS]", "print events as they come",
        watch_help},
    {"ping", cmd_ping, "ping", "show the broker's version", ping_help},
    {"shutdown", cmd_shutdown, "shutdown", "ask the broker to shut down",
        shutdown_help},
    {"help", cmd_help, "help [COMMAND]", "show help", help_help},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const command *
find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcmp(commands[i].name, name) == 0) {
			return (&commands[i]);
		}
	}
	return (NULL);
}

static void
print_usage(FILE *f)
{
	char   list[2048];
	size_t n = 0;

	list[0] = '\0';
	for (size_t i = 0; i < NCOMMANDS && n < sizeof(list); i++) {
		n += (size_t) snprintf(list + n, sizeof(list) - n,
		    "  %-38s  %s\n", commands[i].summary, commands[i].desc);
	}
	fprintf(f, usage_text, list);
}

static int
cmd_help(cli *c, int argc, char **argv)
{
	const command *cmd;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0) {
		if (argc >= 2) {
			fputs(help_help, stdout);
		} else {
			print_usage(stdout);
		}
		return (EXIT_OK);
	}
	if ((cmd = find_command(argv[1])) == NULL) {
		return (usage_error(NULL, "unknown command '%s'", argv[1]));
	}
	fputs(cmd->help, stdout);
	return (EXIT_OK);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"broker", required_argument, NULL, 'b'},
	    {"events", required_argument, NULL, 'e'},
	    {"json", no_argument, NULL, 'j'},
	    {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	cli            c = {0};
	const command *cmd;
	int64_t        v;
	int            ch, rv;

	c.url        = tb_default_url();
	c.events_url = tb_default_events_url();
	opterr       = 0;
	// "+": stop at the command name; its options are its own.
	while ((ch = getopt_long(argc, argv, "+:b:e:jt:hV", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 'b':
			c.url = optarg;
			break;
		case 'e':
			c.events_url = optarg;
			break;
		case 'j':
			c.json = true;
			break;
		case 't':
			if (!parse_i64(optarg, 1, INT_MAX, &v)) {
				return (usage_error(NULL,
				    "bad --timeout '%s': not a positive number "
				    "of milliseconds",
				    optarg));
			}
			c.timeout_ms = (int) v;
			break;
		case 'h':
			print_usage(stdout);
			return (EXIT_OK);
		case 'V':
			printf(PROG " " TB_VERSION_STRING "\n");
			return (EXIT_OK);
		default:
			return (getopt_fail(NULL, ch, argv));
		}
	}
	if (optind >= argc) {
		return (usage_error(NULL, "missing COMMAND"));
	}
	if ((cmd = find_command(argv[optind])) == NULL) {
		return (
		    usage_error(NULL, "unknown command '%s'", argv[optind]));
	}
	rv = cmd->run(&c, argc - optind, argv + optind);
	tb_client_close(c.client);
	if (fflush(stdout) != 0 && rv == EXIT_OK) {
		rv = EXIT_FAIL;
	}
	return (rv);
}
