// cmd_watch.c: the watch command: the broker's events, one line each, from
// the events endpoint (tb_sub), the only command that does not use the
// request endpoint.

#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include <jansson.h>

#include "output.h"

static const char watch_help[] =
    "Usage: taskbroker watch [--prefix P] [--count N] [--timeout DURATION]\n"
    "                        [--json]\n"
    "\n"
    "Print the broker's events as they come, one per line:\n"
    "  SEQ EVENT ID QUEUE HANDLER STATE ATTEMPT DURATION\n"
    "or with --json one object per line with the keys seq, event, topic, id,\n"
    "queue, handler, state, attempt, crashes, duration_us, time (Unix\n"
    "seconds), result and error. Events are best effort: a slow watcher may\n"
    "miss some. EVENT is one of start, done, retry (an attempt failed, a\n"
    "retry is scheduled), dead, cancelled, timeout (an attempt ran out of\n"
    "time), interrupted (an attempt was cut short by the death of the broker\n"
    "or of a worker: the task runs again, one more crash, no attempt\n"
    "spent), restart (a forever task started again), crashloop, fired (a\n"
    "schedule created a task) and shutdown.\n"
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
		json_object_set_new(
		    o, "crashes", json_integer(tb_event_crashes(e)));
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
		{ "prefix", required_argument, NULL, 'p' },
		{ "count", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		CLI_OPTS_END,
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
			if ((rv = opt_wait_timeout(
			         "watch", "timeout", optarg, &timeout)) >= 0) {
				return (rv);
			}
			break;
		default:
			if ((rv = opt_common(
			         c, "watch", watch_help, ch, argv)) >= 0) {
				return (rv);
			}
			break;
		}
	}
	if ((rv = no_args("watch", argc, argv)) >= 0) {
		return (rv);
	}
	if ((rv = tb_sub_open_opts(&s, c->events_url, prefix, &c->conn)) !=
	    TB_OK) {
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

// The table entries of these commands (cli.h); main.c lists them.
const command watch_cmd = {
	.name    = "watch",
	.run     = cmd_watch,
	.summary = "watch [OPTIONS]",
	.desc    = "print events as they come",
	.help    = watch_help,
};
