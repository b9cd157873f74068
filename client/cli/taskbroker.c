// taskbroker.c: the taskbroker command-line tool, built only on the public
// client API (taskbroker.h) plus JSON <-> msgpack conversion (json_mp.h).
//
// Global options come before the command (getopt_long with "+" stops at the
// command name); each command parses its own options afterwards. Output is
// a small human format by default and JSON with --json. Exit codes are
// listed in the usage text and follow EXIT_* below.

#include <assert.h>
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
#include "tbtime.h"

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
    "  -t, --timeout DURATION\n"
    "                     how long to wait for each reply of the broker\n"
    "                     (default 10s)\n"
    "  -h, --help         show this help\n"
    "  -V, --version      show the version\n"
    "\n"
    "Commands:\n"
    "%s" // the command list
    "\n"
    "Run 'taskbroker COMMAND --help' for a command's options. A DURATION is\n"
    "a number of milliseconds or units d, h, m, s, ms in that order: 500ms,\n"
    "30s, 5m, 1h30m, 1d.\n"
    "\n"
    "Exit status:\n"
    "  0  success\n"
    "  1  the task or the operation failed: the task ended dead, cancelled\n"
    "     or failed, or did not end in time; a drain timed out; no such task\n"
    "     or schedule; wrong state; queue full; refused by the broker\n"
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

// parse_dur parses a DURATION (tbt_parse_duration: "1500", "500ms",
// "1h30m") of at most max milliseconds.
static bool
parse_dur(const char *s, uint64_t max, uint64_t *msp)
{
	uint64_t v;

	if (tbt_parse_duration(s, &v) != TB_OK || v > max) {
		return (false);
	}
	*msp = v;
	return (true);
}

// parse_dur_int is parse_dur into an int64_t, for timeouts up to INT_MAX.
static bool
parse_dur_int(const char *s, int64_t *msp)
{
	uint64_t v;

	if (!parse_dur(s, INT_MAX, &v)) {
		return (false);
	}
	*msp = (int64_t) v;
	return (true);
}

#define BAD_DUR "not a duration (e.g. 1500, 500ms, 30s, 1h30m)"

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
	json_object_set_new(o, "run_at", json_time(tb_task_run_at(t)));
	json_object_set_new(
	    o, "timeout_ms", json_integer(tb_task_timeout_ms(t)));
	json_object_set_new(o, "forever", json_boolean(tb_task_forever(t)));
	json_object_set_new(o, "key", json_str_or_null(tb_task_key(t)));
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
	printf("run_at:       %s\n",
	    fmt_time(tb_task_run_at(t), b1, sizeof(b1), true));
	if (tb_task_timeout_ms(t) > 0) {
		printf("timeout:      %s\n",
		    tbt_format_duration(tb_task_timeout_ms(t), b1, sizeof(b1)));
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

// table collects the cells of a text table, row by row, so that columns
// can be as wide as their widest cell. Out of memory only loses cells.
typedef struct table {
	int     ncols;
	size_t  ncells, cap;
	char  **cells;
} table;

static void
table_init(table *t, int ncols)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
}

static void table_cell(table *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
table_cell(table *t, const char *fmt, ...)
{
	va_list ap;
	char   *s = NULL;

	if (t->ncells == t->cap) {
		size_t cap   = t->cap == 0 ? 64 : t->cap * 2;
		char **cells = realloc(t->cells, cap * sizeof(*cells));

		if (cells == NULL) {
			return;
		}
		t->cells = cells;
		t->cap   = cap;
	}
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0) {
		s = NULL;
	}
	va_end(ap);
	t->cells[t->ncells++] = s; // NULL prints as "?"
}

// table_row adds a whole row of ncols plain strings (a header).
static void
table_row(table *t, ...)
{
	va_list ap;

	va_start(ap, t);
	for (int i = 0; i < t->ncols; i++) {
		table_cell(t, "%s", va_arg(ap, const char *));
	}
	va_end(ap);
}

static void
table_print(const table *t)
{
	int w[16] = {0};

	assert(t->ncols <= 16);
	for (size_t i = 0; i < t->ncells; i++) {
		const char *s = t->cells[i] != NULL ? t->cells[i] : "?";
		int         k = (int) strlen(s);

		if (k > w[i % (size_t) t->ncols]) {
			w[i % (size_t) t->ncols] = k;
		}
	}
	for (size_t i = 0; i < t->ncells; i++) {
		const char *s   = t->cells[i] != NULL ? t->cells[i] : "?";
		int         col = (int) (i % (size_t) t->ncols);

		if (col == t->ncols - 1 || i + 1 == t->ncells) {
			printf("%s\n", s);
		} else {
			printf("%-*s  ", w[col], s);
		}
	}
}

static void
table_fini(table *t)
{
	for (size_t i = 0; i < t->ncells; i++) {
		free(t->cells[i]);
	}
	free(t->cells);
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
    "  -j, --json                print {\"id\": N, \"existing\": BOOL}, or with\n"
    "                            --wait the task\n"
    "  -h, --help                show this help\n"
    "\n"
    "With --wait the exit status is 0 only if the task ended done; otherwise\n"
    "its error goes to stderr and the status is 1. A broker whose queue is\n"
    "full refuses the task (exit 1).\n";

// build_payload makes the msgpack payload from --payload-json and ARGV
// into b; *emptyp is set when there is no payload at all.
static int
build_payload(const char *cmd, const char *pjson, int nargs, char **args,
    msgpack_sbuffer *b, bool *emptyp)
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
			return (usage_error(cmd,
			    "bad --payload-json: line %d, column %d: %s",
			    je.line, je.column, je.text));
		}
	}
	if (nargs > 0) {
		if (j == NULL) {
			j = json_object();
		} else if (!json_is_object(j)) {
			json_decref(j);
			return (usage_error(cmd,
			    "--payload-json must be an object when ARGV is "
			    "given"));
		}
		if (j == NULL || (arr = json_array()) == NULL ||
		    json_object_set_new(j, "argv", arr) != 0) {
			json_decref(j);
			errorf("%s: out of memory", cmd);
			return (EXIT_FAIL);
		}
		for (int i = 0; i < nargs; i++) {
			json_t *s = json_stringn(args[i], strlen(args[i]));

			if (s == NULL) {
				json_decref(j);
				return (usage_error(cmd,
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
			    cmd, "bad payload: %s", jmp_strerror(rv)));
		}
		errorf("%s: payload: %s", cmd, jmp_strerror(rv));
		return (EXIT_FAIL);
	}
	return (EXIT_OK);
}

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
	    {"queue", required_argument, NULL, 'q'},
	    {"priority", required_argument, NULL, 'p'},
	    {"max-attempts", required_argument, NULL, 'm'},
	    {"timeout", required_argument, NULL, 't'},
	    {"delay", required_argument, NULL, 'd'},
	    {"run-at", required_argument, NULL, 'r'},
	    {"key", required_argument, NULL, 'k'},
	    {"forever", no_argument, NULL, 'f'},
	    {"payload-json", required_argument, NULL, 'P'},
	    {"wait", no_argument, NULL, 'w'},
	    {"wait-timeout", required_argument, NULL, 'W'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	tb_submit_opts  o       = TB_SUBMIT_OPTS_INIT;
	const char     *pjson   = NULL;
	bool            wait    = false, have_delay = false;
	int64_t         wait_ms = -1, v;
	uint64_t        delay = 0, ms;
	int             nopt = argc, nargs = 0, ch, rv;
	char          **args = NULL;
	msgpack_sbuffer b;
	bool            empty;
	tb_client      *tc;
	tb_task        *t = NULL;
	tb_task_spec    spec;
	uint32_t        flags = 0;
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
	while ((ch = getopt_long(nopt, argv, ":q:p:m:t:d:r:k:fP:wW:jh",
	            longopts, NULL)) != -1) {
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
			if (!parse_dur(optarg, UINT32_MAX, &ms)) {
				return (usage_error("submit",
				    "bad --timeout '%s': " BAD_DUR
				    " of at most 49d",
				    optarg));
			}
			o.timeout_ms = (uint32_t) ms;
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
			if (!parse_dur_int(optarg, &wait_ms)) {
				return (usage_error("submit",
				    "bad --wait-timeout '%s': " BAD_DUR,
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
	if (have_delay && o.run_at != 0) {
		return (usage_error(
		    "submit", "give --delay or --run-at, not both"));
	}
	if (wait && o.forever) {
		return (usage_error("submit",
		    "--wait with --forever would never end"));
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
			if (!parse_dur_int(optarg, &timeout)) {
				return (usage_error("wait",
				    "bad --timeout '%s': " BAD_DUR, optarg));
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
	    {"queue", required_argument, NULL, 'q'},
	    {"state", required_argument, NULL, 's'},
	    {"limit", required_argument, NULL, 'n'},
	    {"after", required_argument, NULL, 'a'},
	    {"handler", required_argument, NULL, 'H'},
	    {"older-than", required_argument, NULL, 'o'},
	    {"newer-than", required_argument, NULL, 'N'},
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
    "submitted and completed since it started, uptime, workers, pid,\n"
    "schedules, forever tasks not ended and those restarting too often\n"
    "(crashloop); then one line per queue:\n"
    "  QUEUE PENDING RUNNING FAILED DEAD DONE CANCELLED PAUSED CONC DONE/MIN\n"
    "  OLDEST\n"
    "where CONC is the queue's concurrency limit, DONE/MIN the tasks done in\n"
    "the last minute and OLDEST the age of its oldest pending task.\n"
    "--json prints one object with the keys pending, running, done, failed,\n"
    "dead, cancelled, submitted, completed, uptime_ms, workers, pid,\n"
    "schedules, forever, crashloop and queues: an array of objects with the\n"
    "keys name, pending, running, failed, dead, done, cancelled, paused,\n"
    "concurrency (0: no limit), max_pending (0: none), done_last_min,\n"
    "oldest_pending_ms, forever and crashloop.\n";

static json_t *
queue_json(const tb_queue_info *q)
{
	return (json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:I, s:I, "
	                  "s:I, s:I, s:I, s:I}",
	    "name", q->name, "pending", (json_int_t) q->pending, "running",
	    (json_int_t) q->running, "failed", (json_int_t) q->failed, "dead",
	    (json_int_t) q->dead, "done", (json_int_t) q->done, "cancelled",
	    (json_int_t) q->cancelled, "paused", q->paused, "concurrency",
	    (json_int_t) q->concurrency, "max_pending",
	    (json_int_t) q->max_pending, "done_last_min",
	    (json_int_t) q->done_last_min, "oldest_pending_ms",
	    (json_int_t) q->oldest_pending_ms, "forever",
	    (json_int_t) q->forever, "crashloop", (json_int_t) q->crashloop));
}

static void
print_queues(const tb_queue_info *qs, size_t nq)
{
	table t;

	table_init(&t, 11);
	table_row(&t, "QUEUE", "PENDING", "RUNNING", "FAILED", "DEAD", "DONE",
	    "CANCELLED", "PAUSED", "CONC", "DONE/MIN", "OLDEST");
	for (size_t i = 0; i < nq; i++) {
		const tb_queue_info *q = &qs[i];
		char                 d[TBT_DURATION_BUFSZ];

		table_cell(&t, "%s", q->name);
		table_cell(&t, "%" PRIu64, q->pending);
		table_cell(&t, "%" PRIu64, q->running);
		table_cell(&t, "%" PRIu64, q->failed);
		table_cell(&t, "%" PRIu64, q->dead);
		table_cell(&t, "%" PRIu64, q->done);
		table_cell(&t, "%" PRIu64, q->cancelled);
		table_cell(&t, "%s", q->paused ? "yes" : "no");
		if (q->concurrency > 0) {
			table_cell(&t, "%" PRIu32, q->concurrency);
		} else {
			table_cell(&t, "-");
		}
		table_cell(&t, "%" PRIu64, q->done_last_min);
		if (q->pending > 0) {
			table_cell(&t, "%s",
			    tbt_format_duration(
			        q->oldest_pending_ms, d, sizeof(d)));
		} else {
			table_cell(&t, "-");
		}
	}
	table_print(&t);
	table_fini(&t);
}

static int
cmd_stats(cli *c, int argc, char **argv)
{
	tb_client     *tc;
	tb_stats       st;
	tb_queue_info *qs = NULL;
	size_t         nq = 0;
	int            rv;

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
	// A broker from before the task lifecycle has no "queues" op: show
	// what it has rather than nothing.
	if ((rv = tb_queues(tc, &qs, &nq)) != TB_OK && rv != TB_EUNKNOWNOP) {
		return (fail(c, rv, "stats: queues"));
	}
	if (c->json) {
		json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
		                      "s:I, s:I, s:I, s:I, s:I, s:I}",
		    "pending", (json_int_t) st.pending, "running",
		    (json_int_t) st.running, "done", (json_int_t) st.done,
		    "failed", (json_int_t) st.failed, "dead",
		    (json_int_t) st.dead, "cancelled",
		    (json_int_t) st.cancelled, "submitted",
		    (json_int_t) st.submitted, "completed",
		    (json_int_t) st.completed, "uptime_ms",
		    (json_int_t) st.uptime_ms, "workers",
		    (json_int_t) st.workers, "pid", (json_int_t) st.pid,
		    "schedules", (json_int_t) st.schedules, "forever",
		    (json_int_t) st.forever, "crashloop",
		    (json_int_t) st.crashloop);
		json_t *arr = json_array();

		for (size_t i = 0; arr != NULL && i < nq; i++) {
			json_array_append_new(arr, queue_json(&qs[i]));
		}
		if (o != NULL && arr != NULL) {
			json_object_set_new(o, "queues", arr);
		} else {
			json_decref(arr);
			json_decref(o);
			o = NULL;
		}
		tb_queues_free(qs, nq);
		return (print_json(o));
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
	printf("schedules  %" PRIu64 "\n", st.schedules);
	printf("forever    %" PRIu64 "\n", st.forever);
	printf("crashloop  %" PRIu64 "\n", st.crashloop);
	if (nq > 0) {
		printf("\n");
		print_queues(qs, nq);
	}
	tb_queues_free(qs, nq);
	return (EXIT_OK);
}

static const char watch_help[] =
    "Usage: taskbroker watch [--prefix P] [--count N] [--timeout DURATION]\n"
    "                        [--json]\n"
    "\n"
    "Print the broker's events as they come, one per line:\n"
    "  SEQ EVENT ID QUEUE HANDLER STATE ATTEMPT DURATION\n"
    "or with --json one object per line with the keys seq, event, topic, id,\n"
    "queue, handler, state, attempt, duration_us, time (Unix seconds),\n"
    "result and error. Events are best effort: a slow watcher may miss some.\n"
    "EVENT is one of start, done, retry (an attempt failed, a retry is\n"
    "scheduled), dead, cancelled, timeout (an attempt ran out of time),\n"
    "restart (a forever task started again), crashloop, fired (a schedule\n"
    "created a task) and shutdown.\n"
    "\n"
    "Options:\n"
    "  -p, --prefix P     only topics starting with P; topics are\n"
    "                     tb.<event>.<queue>.<handler>, e.g. tb.done.\n"
    "  -n, --count N      stop after N events\n"
    "  -t, --timeout DURATION  stop when no event came for that long;\n"
    "                     exits 1 if --count was given and not reached\n"
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
			if (!parse_dur_int(optarg, &timeout)) {
				return (usage_error("watch",
				    "bad --timeout '%s': " BAD_DUR, optarg));
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

// ---- the task lifecycle ---------------------------------------------------

// one_name parses the single NAME argument of pause, resume and the
// schedule commands; what is its name in messages. Returns -1 to go on,
// else an exit status.
static int
one_name(const char *cmd, const char *what, int argc, char **argv,
    const char **namep)
{
	if (optind >= argc) {
		return (usage_error(cmd, "missing %s", what));
	}
	if (optind + 1 < argc) {
		return (usage_error(
		    cmd, "unexpected argument '%s'", argv[optind + 1]));
	}
	if (argv[optind][0] == '\0') {
		return (usage_error(cmd, "empty %s", what));
	}
	*namep = argv[optind];
	return (-1);
}

// print_count prints the count of a retry or purge: "VERB N task(s)" or
// {"count": N}.
static int
print_count(const cli *c, const char *verb, uint64_t n)
{
	if (c->json) {
		return (print_json(json_pack("{s:I}", "count", (json_int_t) n)));
	}
	printf("%s %" PRIu64 " task%s\n", verb, n, n == 1 ? "" : "s");
	return (EXIT_OK);
}

static const char retry_help[] =
    "Usage: taskbroker retry [--json] ID\n"
    "       taskbroker retry --queue Q [--state dead|cancelled] [--json]\n"
    "       taskbroker retry --all [--state dead|cancelled] [--json]\n"
    "\n"
    "Put a dead or cancelled task back to pending with its attempts reset,\n"
    "or every such task of queue Q, or of all queues; --state picks which\n"
    "(default dead). Prints how many tasks were retried (--json:\n"
    "{\"count\": N}). Retrying a task that is not dead or cancelled, or that\n"
    "does not exist, fails (exit 1).\n"
    "\n"
    "Options:\n"
    "  -q, --queue Q    retry the tasks of queue Q\n"
    "  -a, --all        retry the tasks of every queue\n"
    "  -s, --state S    dead (default) or cancelled\n"
    "  -j, --json       print JSON\n"
    "  -h, --help       show this help\n";

static int
cmd_retry(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"queue", required_argument, NULL, 'q'},
	    {"all", no_argument, NULL, 'a'},
	    {"state", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *queue = NULL;
	bool        all   = false;
	int         state = -1, ch, rv;
	uint64_t    n     = 0;
	tb_client  *tc;
	tb_id       id;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":q:as:jh", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 'q':
			queue = optarg;
			break;
		case 'a':
			all = true;
			break;
		case 's':
			if (tb_state_parse(optarg, &state) != TB_OK ||
			    (state != TB_STATE_DEAD &&
			        state != TB_STATE_CANCELLED)) {
				return (usage_error("retry",
				    "bad --state '%s': dead or cancelled",
				    optarg));
			}
			break;
		case 'j':
			c->json = true;
			break;
		case 'h':
			fputs(retry_help, stdout);
			return (EXIT_OK);
		default:
			return (getopt_fail("retry", ch, argv));
		}
	}
	if (queue != NULL && all) {
		return (usage_error("retry", "give --queue or --all, not both"));
	}
	if (queue == NULL && !all) {
		if (optind >= argc) {
			return (usage_error(
			    "retry", "missing ID (or --queue Q, or --all)"));
		}
		if ((rv = one_id("retry", argc, argv, &id)) >= 0) {
			return (rv);
		}
		if (state != -1) {
			return (usage_error("retry",
			    "--state goes with --queue or --all, not an ID"));
		}
	} else if (optind < argc) {
		return (usage_error("retry",
		    "unexpected argument '%s' (an ID goes without --queue "
		    "and --all)",
		    argv[optind]));
	}
	if ((rv = cli_client(c, &tc)) != EXIT_OK) {
		return (rv);
	}
	if (queue == NULL && !all) {
		if ((rv = tb_retry(tc, id)) != TB_OK) {
			return (fail(c, rv, "retry %" PRIu64, id));
		}
		n = 1;
	} else if ((rv = tb_retry_queue(tc, queue, state, &n)) != TB_OK) {
		return (fail(c, rv, "retry"));
	}
	return (print_count(c, "retried", n));
}

static const char pause_help[] =
    "Usage: taskbroker pause [--json] QUEUE\n"
    "\n"
    "Stop QUEUE from starting tasks; it still accepts them, and running\n"
    "tasks go on. The pause survives a broker restart. Undo with 'resume'.\n";

static const char resume_help[] =
    "Usage: taskbroker resume [--json] QUEUE\n"
    "\n"
    "Let a paused QUEUE start tasks again.\n";

// queue_cmd runs pause or resume.
static int
queue_cmd(cli *c, int argc, char **argv, bool pause)
{
	const char *cmd = pause ? "pause" : "resume";
	const char *queue;
	tb_client  *tc;
	int         rv;

	if ((rv = simple_opts(c, cmd, pause ? pause_help : resume_help, argc,
	         argv)) >= 0 ||
	    (rv = one_name(cmd, "QUEUE", argc, argv, &queue)) >= 0) {
		return (rv);
	}
	if ((rv = cli_client(c, &tc)) != EXIT_OK) {
		return (rv);
	}
	rv = pause ? tb_pause(tc, queue) : tb_resume(tc, queue);
	if (rv != TB_OK) {
		return (fail(c, rv, "%s %s", cmd, queue));
	}
	if (c->json) {
		return (print_json(json_pack(
		    "{s:s, s:b}", "queue", queue, "paused", pause)));
	}
	printf("%s %s\n", queue, pause ? "paused" : "resumed");
	return (EXIT_OK);
}

static int
cmd_pause(cli *c, int argc, char **argv)
{
	return (queue_cmd(c, argc, argv, true));
}

static int
cmd_resume(cli *c, int argc, char **argv)
{
	return (queue_cmd(c, argc, argv, false));
}

static const char drain_help[] =
    "Usage: taskbroker drain [--timeout DURATION] [--json] [QUEUE]\n"
    "\n"
    "Wait until QUEUE (default: every queue) has nothing pending, waiting\n"
    "for a retry or running. Exits 0 once drained, 1 if that did not happen\n"
    "in time. A paused queue with tasks never drains. --json prints\n"
    "{\"drained\": BOOL}.\n"
    "\n"
    "Options:\n"
    "  -t, --timeout DURATION  give up after that long (default: one hour)\n"
    "  -j, --json              print JSON\n"
    "  -h, --help              show this help\n";

static int
cmd_drain(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"timeout", required_argument, NULL, 't'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *queue   = NULL;
	int64_t     timeout = -1, start, reply_ms;
	tb_client  *tc;
	int         ch, rv;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":t:jh", longopts, NULL)) != -1) {
		switch (ch) {
		case 't':
			if (!parse_dur_int(optarg, &timeout)) {
				return (usage_error("drain",
				    "bad --timeout '%s': " BAD_DUR, optarg));
			}
			break;
		case 'j':
			c->json = true;
			break;
		case 'h':
			fputs(drain_help, stdout);
			return (EXIT_OK);
		default:
			return (getopt_fail("drain", ch, argv));
		}
	}
	if (optind + 1 < argc) {
		return (usage_error(
		    "drain", "unexpected argument '%s'", argv[optind + 1]));
	}
	if (optind < argc) {
		if (argv[optind][0] == '\0') {
			return (usage_error("drain", "empty QUEUE"));
		}
		queue = argv[optind];
	}
	if ((rv = cli_client(c, &tc)) != EXIT_OK) {
		return (rv);
	}
	start = mono_ms();
	rv    = tb_drain(tc, queue, (int) timeout);
	if (rv == TB_ETIMEDOUT) {
		// tb_drain gives TB_ETIMEDOUT both for the broker's "not
		// drained in time" and for a reply that never came; the
		// latter only after the drain timeout plus the reply
		// timeout, so the time taken tells them apart.
		reply_ms = c->timeout_ms > 0 ? c->timeout_ms : 10000;
		if (mono_ms() - start >=
		    (timeout < 0 ? 3600000 : timeout) + reply_ms) {
			return (fail(c, rv, "drain"));
		}
		if (c->json) {
			print_json(json_pack("{s:b}", "drained", 0));
		} else {
			errorf("drain: %s did not drain in time",
			    queue != NULL ? queue : "the broker");
		}
		return (EXIT_FAIL);
	}
	if (rv != TB_OK) {
		return (fail(c, rv, "drain"));
	}
	if (c->json) {
		return (print_json(json_pack("{s:b}", "drained", 1)));
	}
	printf("drained\n");
	return (EXIT_OK);
}

static const char purge_help[] =
    "Usage: taskbroker purge --state S [--queue Q] [--older-than DURATION]\n"
    "                        [--json]\n"
    "\n"
    "Delete the tasks in state S (pending, done, dead or cancelled), of\n"
    "queue Q or of every queue, created at least DURATION ago. Prints how\n"
    "many were deleted (--json: {\"count\": N}).\n"
    "\n"
    "Options:\n"
    "  -s, --state S               required: pending, done, dead, cancelled\n"
    "  -q, --queue Q               only tasks of queue Q\n"
    "  -o, --older-than DURATION   only tasks created at least that long ago\n"
    "  -j, --json                  print JSON\n"
    "  -h, --help                  show this help\n";

static int
cmd_purge(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"state", required_argument, NULL, 's'},
	    {"queue", required_argument, NULL, 'q'},
	    {"older-than", required_argument, NULL, 'o'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *queue = NULL;
	int         state = -1, ch, rv;
	uint64_t    age = 0, n = 0;
	tb_client  *tc;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":s:q:o:jh", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 's':
			if (tb_state_parse(optarg, &state) != TB_OK ||
			    state == TB_STATE_RUNNING ||
			    state == TB_STATE_FAILED) {
				return (usage_error("purge",
				    "bad --state '%s': pending, done, dead or "
				    "cancelled",
				    optarg));
			}
			break;
		case 'q':
			queue = optarg;
			break;
		case 'o':
			if (!parse_dur(optarg, UINT64_MAX, &age)) {
				return (usage_error("purge",
				    "bad --older-than '%s': " BAD_DUR,
				    optarg));
			}
			break;
		case 'j':
			c->json = true;
			break;
		case 'h':
			fputs(purge_help, stdout);
			return (EXIT_OK);
		default:
			return (getopt_fail("purge", ch, argv));
		}
	}
	if (optind < argc) {
		return (usage_error(
		    "purge", "unexpected argument '%s'", argv[optind]));
	}
	if (state < 0) {
		return (usage_error("purge", "missing --state"));
	}
	if ((rv = cli_client(c, &tc)) != EXIT_OK) {
		return (rv);
	}
	if ((rv = tb_purge(tc, queue, state, age, &n)) != TB_OK) {
		return (fail(c, rv, "purge"));
	}
	return (print_count(c, "purged", n));
}

// ---- schedules ------------------------------------------------------------

static const char schedule_help[] =
    "Usage: taskbroker schedule add NAME HANDLER (--every DURATION | --cron EXPR)\n"
    "                           [OPTIONS] [-- ARGV...]\n"
    "       taskbroker schedule ls [--json]\n"
    "       taskbroker schedule rm NAME\n"
    "       taskbroker schedule pause NAME\n"
    "       taskbroker schedule resume NAME\n"
    "\n"
    "Manage periodic schedules: each due time of a schedule submits one\n"
    "task, even across broker restarts. Run 'taskbroker schedule add --help'\n"
    "for the options of add.\n"
    "\n"
    "  add      add a schedule, or replace the one named NAME\n"
    "  ls       list schedules: NAME HANDLER QUEUE EVERY/CRON NEXT LAST FIRED\n"
    "           PAUSED (times in UTC); --json prints an array of objects\n"
    "           with the keys name, handler, queue, every_ms (null with\n"
    "           cron), cron (null with every), priority, max_attempts,\n"
    "           timeout_ms, catch_up, paused, next_at, last_at (Unix\n"
    "           seconds, null if none), fired and last_task (null if none)\n"
    "  rm       remove a schedule\n"
    "  pause    stop a schedule from firing (persisted)\n"
    "  resume   let a paused schedule fire again\n";

static const char schedule_add_help[] =
    "Usage: taskbroker schedule add NAME HANDLER (--every DURATION | --cron EXPR)\n"
    "                           [OPTIONS] [-- ARGV...]\n"
    "\n"
    "Add schedule NAME, or replace the one with that name, which submits a\n"
    "task for HANDLER at each due time. Words after '--' make the payload\n"
    "{\"argv\": [ARGV...]}, merged into the --payload-json object.\n"
    "\n"
    "Options:\n"
    "  -e, --every DURATION      fire every DURATION (at least 1ms)\n"
    "  -c, --cron EXPR           fire on a cron schedule, in UTC: five fields\n"
    "                            'MIN HOUR DAY MONTH WEEKDAY' (e.g.\n"
    "                            '*/15 9-17 * * MON-FRI') or @hourly, @daily,\n"
    "                            @weekly, @monthly, @yearly\n"
    "  -q, --queue Q             queue of the tasks (default: default)\n"
    "  -P, --payload-json JSON   the tasks' payload as JSON\n"
    "  -p, --priority N          the tasks' priority (default 0)\n"
    "  -m, --max-attempts N      the tasks' attempts (default: the broker's)\n"
    "  -t, --timeout DURATION    time limit per attempt (default: none)\n"
    "  -C, --catch-up            after the broker was down over several due\n"
    "                            times, fire once per missed time (default:\n"
    "                            once in all)\n"
    "  -j, --json                print {\"name\": NAME}\n"
    "  -h, --help                show this help\n";

static const char schedule_ls_help[] =
    "Usage: taskbroker schedule ls [--json]\n"
    "\n"
    "List schedules: NAME HANDLER QUEUE EVERY/CRON NEXT LAST FIRED PAUSED\n"
    "(times in UTC). --json prints an array of objects with the keys name,\n"
    "handler, queue, every_ms (null with cron), cron (null with every),\n"
    "priority, max_attempts, timeout_ms, catch_up, paused, next_at, last_at\n"
    "(Unix seconds, null if none), fired and last_task (null if none).\n";

static const char schedule_rm_help[] =
    "Usage: taskbroker schedule rm [--json] NAME\n"
    "\n"
    "Remove schedule NAME; tasks it already submitted are not touched.\n";

static const char schedule_pause_help[] =
    "Usage: taskbroker schedule pause [--json] NAME\n"
    "\n"
    "Stop schedule NAME from firing until 'schedule resume'. Persisted.\n";

static const char schedule_resume_help[] =
    "Usage: taskbroker schedule resume [--json] NAME\n"
    "\n"
    "Let paused schedule NAME fire again from its next due time.\n";

static int
sched_add(cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"every", required_argument, NULL, 'e'},
	    {"cron", required_argument, NULL, 'c'},
	    {"queue", required_argument, NULL, 'q'},
	    {"payload-json", required_argument, NULL, 'P'},
	    {"priority", required_argument, NULL, 'p'},
	    {"max-attempts", required_argument, NULL, 'm'},
	    {"timeout", required_argument, NULL, 't'},
	    {"catch-up", no_argument, NULL, 'C'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static const char *cmd  = "schedule add";
	tb_schedule_spec   spec = TB_SCHEDULE_SPEC_INIT;
	const char        *pjson = NULL, *why = NULL;
	int                nopt = argc, nargs = 0, ch, rv;
	char             **args = NULL;
	int64_t            v;
	uint64_t           ms;
	tbt_cron           cron;
	msgpack_sbuffer    b;
	bool               empty;
	tb_client         *tc;

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
	while ((ch = getopt_long(nopt, argv, ":e:c:q:P:p:m:t:Cjh", longopts,
	            NULL)) != -1) {
		switch (ch) {
		case 'e':
			if (!parse_dur(optarg, UINT64_MAX, &spec.every_ms) ||
			    spec.every_ms == 0) {
				return (usage_error(cmd,
				    "bad --every '%s': " BAD_DUR
				    " above zero",
				    optarg));
			}
			break;
		case 'c':
			// Checked here for a helpful message; the broker
			// checks again with the same parser.
			if (tbt_cron_parse(&cron, optarg, &why) != TB_OK) {
				return (usage_error(cmd, "bad --cron '%s': %s",
				    optarg, why != NULL ? why : "invalid"));
			}
			spec.cron = optarg;
			break;
		case 'q':
			spec.queue = optarg;
			break;
		case 'P':
			pjson = optarg;
			break;
		case 'p':
			if (!parse_i64(optarg, INT32_MIN, INT32_MAX, &v)) {
				return (usage_error(cmd,
				    "bad --priority '%s': not an integer",
				    optarg));
			}
			spec.priority = (int32_t) v;
			break;
		case 'm':
			if (!parse_i64(optarg, 1, UINT32_MAX, &v)) {
				return (usage_error(cmd,
				    "bad --max-attempts '%s': not a positive "
				    "integer",
				    optarg));
			}
			spec.max_attempts = (uint32_t) v;
			break;
		case 't':
			if (!parse_dur(optarg, UINT32_MAX, &ms)) {
				return (usage_error(cmd,
				    "bad --timeout '%s': " BAD_DUR
				    " of at most 49d",
				    optarg));
			}
			spec.timeout_ms = (uint32_t) ms;
			break;
		case 'C':
			spec.catch_up = 1;
			break;
		case 'j':
			c->json = true;
			break;
		case 'h':
			fputs(schedule_add_help, stdout);
			return (EXIT_OK);
		default:
			return (getopt_fail(cmd, ch, argv));
		}
	}
	if (optind + 2 > nopt) {
		return (usage_error(cmd,
		    optind >= nopt ? "missing NAME" : "missing HANDLER"));
	}
	if (optind + 2 < nopt) {
		return (usage_error(cmd,
		    "unexpected argument '%s' (put ARGV after '--')",
		    argv[optind + 2]));
	}
	spec.name    = argv[optind];
	spec.handler = argv[optind + 1];
	if (spec.name[0] == '\0' || spec.handler[0] == '\0') {
		return (usage_error(cmd, "empty NAME or HANDLER"));
	}
	if ((spec.cron != NULL) == (spec.every_ms > 0)) {
		return (usage_error(cmd, "give exactly one of --every and --cron"));
	}
	msgpack_sbuffer_init(&b);
	if ((rv = build_payload(cmd, pjson, nargs, args, &b, &empty)) !=
	    EXIT_OK) {
		goto out;
	}
	spec.payload     = empty ? NULL : b.data;
	spec.payload_len = empty ? 0 : b.size;
	if ((rv = cli_client(c, &tc)) != EXIT_OK) {
		goto out;
	}
	if ((rv = tb_schedule_add(tc, &spec)) != TB_OK) {
		rv = fail(c, rv, "schedule add %s", spec.name);
		goto out;
	}
	if (c->json) {
		rv = print_json(json_pack("{s:s}", "name", spec.name));
	} else {
		printf("schedule %s saved\n", spec.name);
		rv = EXIT_OK;
	}
out:
	msgpack_sbuffer_destroy(&b);
	return (rv);
}

static json_t *
sched_json(const tb_schedule_info *s)
{
	json_t *o = json_object();

	if (o == NULL) {
		return (NULL);
	}
	json_object_set_new(o, "name", json_str_or_null(s->name));
	json_object_set_new(o, "handler", json_str_or_null(s->handler));
	json_object_set_new(o, "queue", json_str_or_null(s->queue));
	json_object_set_new(o, "every_ms",
	    s->cron == NULL ? json_integer((json_int_t) s->every_ms)
	                    : json_null());
	json_object_set_new(o, "cron", json_str_or_null(s->cron));
	json_object_set_new(o, "priority", json_integer(s->priority));
	json_object_set_new(o, "max_attempts", json_integer(s->max_attempts));
	json_object_set_new(o, "timeout_ms", json_integer(s->timeout_ms));
	json_object_set_new(o, "catch_up", json_boolean(s->catch_up));
	json_object_set_new(o, "paused", json_boolean(s->paused));
	// INT64_MAX is the broker's "never" (a cron that cannot match).
	json_object_set_new(o, "next_at",
	    s->next_at == INT64_MAX ? json_null() : json_time(s->next_at));
	json_object_set_new(o, "last_at", json_time(s->last_at));
	json_object_set_new(o, "fired", json_integer((json_int_t) s->fired));
	json_object_set_new(o, "last_task",
	    s->last_task == 0 ? json_null()
	                      : json_integer((json_int_t) s->last_task));
	return (o);
}

static int
sched_ls(cli *c, int argc, char **argv)
{
	tb_schedule_info *list = NULL;
	size_t            n    = 0;
	tb_client        *tc;
	table             t;
	int               rv;

	if ((rv = simple_opts(c, "schedule ls", schedule_ls_help, argc,
	         argv)) >= 0) {
		return (rv);
	}
	if (optind < argc) {
		return (usage_error(
		    "schedule ls", "unexpected argument '%s'", argv[optind]));
	}
	if ((rv = cli_client(c, &tc)) != EXIT_OK) {
		return (rv);
	}
	if ((rv = tb_schedule_list(tc, &list, &n)) != TB_OK) {
		return (fail(c, rv, "schedule ls"));
	}
	if (c->json) {
		json_t *arr = json_array();

		for (size_t i = 0; arr != NULL && i < n; i++) {
			json_array_append_new(arr, sched_json(&list[i]));
		}
		tb_schedule_list_free(list, n);
		return (print_json(arr));
	}
	table_init(&t, 8);
	table_row(&t, "NAME", "HANDLER", "QUEUE", "EVERY/CRON", "NEXT", "LAST",
	    "FIRED", "PAUSED");
	for (size_t i = 0; i < n; i++) {
		const tb_schedule_info *s = &list[i];
		char                    b[64];

		table_cell(&t, "%s", s->name);
		table_cell(&t, "%s", s->handler);
		table_cell(&t, "%s", s->queue);
		if (s->cron != NULL) {
			table_cell(&t, "%s", s->cron);
		} else {
			table_cell(&t, "every %s",
			    tbt_format_duration(s->every_ms, b, sizeof(b)));
		}
		table_cell(&t, "%s",
		    s->next_at == INT64_MAX
		        ? "never"
		        : fmt_time(s->next_at, b, sizeof(b), false));
		table_cell(&t, "%s", fmt_time(s->last_at, b, sizeof(b), false));
		table_cell(&t, "%" PRIu64, s->fired);
		table_cell(&t, "%s", s->paused ? "yes" : "no");
	}
	table_print(&t);
	table_fini(&t);
	tb_schedule_list_free(list, n);
	return (EXIT_OK);
}

// sched_name_cmd runs schedule rm, pause or resume.
static int
sched_name_cmd(cli *c, int argc, char **argv)
{
	const char *sub = argv[0], *help, *name, *done;
	char        cmd[32];
	tb_client  *tc;
	int         rv;

	snprintf(cmd, sizeof(cmd), "schedule %s", sub);
	if (strcmp(sub, "rm") == 0) {
		help = schedule_rm_help;
		done = "removed";
	} else if (strcmp(sub, "pause") == 0) {
		help = schedule_pause_help;
		done = "paused";
	} else {
		help = schedule_resume_help;
		done = "resumed";
	}
	if ((rv = simple_opts(c, cmd, help, argc, argv)) >= 0 ||
	    (rv = one_name(cmd, "NAME", argc, argv, &name)) >= 0) {
		return (rv);
	}
	if ((rv = cli_client(c, &tc)) != EXIT_OK) {
		return (rv);
	}
	if (strcmp(sub, "rm") == 0) {
		rv = tb_schedule_rm(tc, name);
	} else {
		rv = tb_schedule_pause(tc, name, strcmp(sub, "pause") == 0);
	}
	if (rv == TB_ENOTFOUND) {
		// tb_strerror speaks of tasks; say what is missing here.
		errorf("%s: no such schedule '%s'", cmd, name);
		return (EXIT_FAIL);
	}
	if (rv != TB_OK) {
		return (fail(c, rv, "%s %s", cmd, name));
	}
	if (c->json) {
		return (print_json(json_pack("{s:s}", "name", name)));
	}
	printf("schedule %s %s\n", name, done);
	return (EXIT_OK);
}

static int
cmd_schedule(cli *c, int argc, char **argv)
{
	const char *sub;

	if (argc < 2) {
		return (usage_error("schedule", "missing SUBCOMMAND"));
	}
	sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 ||
	    strcmp(sub, "help") == 0) {
		fputs(schedule_help, stdout);
		return (EXIT_OK);
	}
	// The subcommand's argv starts at its name, as a command's does.
	if (strcmp(sub, "add") == 0) {
		return (sched_add(c, argc - 1, argv + 1));
	}
	if (strcmp(sub, "ls") == 0 || strcmp(sub, "list") == 0) {
		return (sched_ls(c, argc - 1, argv + 1));
	}
	if (strcmp(sub, "rm") == 0 || strcmp(sub, "pause") == 0 ||
	    strcmp(sub, "resume") == 0) {
		return (sched_name_cmd(c, argc - 1, argv + 1));
	}
	return (usage_error("schedule", "unknown subcommand '%s'", sub));
}

static const char help_help[] =
    "Usage: taskbroker help [COMMAND]\n"
    "\n"
    "Show the usage of taskbroker or of COMMAND.\n";

static const command commands[] = {
    {"submit", cmd_submit, "submit HANDLER [OPTIONS] [-- ARGV...]",
        "submit a task, --wait for its result", submit_help},
    {"status", cmd_status, "status ID", "show a task", status_help},
    {"wait", cmd_wait, "wait [--timeout DURATION] ID...",
        "wait for tasks to end", wait_help},
    {"ls", cmd_ls, "ls [OPTIONS]", "list tasks", ls_help},
    {"cancel", cmd_cancel, "cancel ID", "cancel a task, even a running one",
        cancel_help},
    {"retry", cmd_retry, "retry ID | --queue Q | --all",
        "retry dead or cancelled tasks", retry_help},
    {"pause", cmd_pause, "pause QUEUE", "stop a queue from starting tasks",
        pause_help},
    {"resume", cmd_resume, "resume QUEUE", "let a paused queue start tasks",
        resume_help},
    {"drain", cmd_drain, "drain [--timeout DURATION] [QUEUE]",
        "wait until a queue has no work left", drain_help},
    {"purge", cmd_purge, "purge --state S [OPTIONS]",
        "delete tasks in a state", purge_help},
    {"schedule", cmd_schedule, "schedule add|ls|rm|pause|resume ...",
        "manage periodic schedules", schedule_help},
    {"stats", cmd_stats, "stats", "show the broker's and queues' figures",
        stats_help},
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
	char   list[4096];
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
			if (!parse_dur_int(optarg, &v) || v < 1) {
				return (usage_error(NULL,
				    "bad --timeout '%s': not a positive "
				    "duration (e.g. 1500, 500ms, 30s)",
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
