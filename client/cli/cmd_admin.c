// cmd_admin.c: the operator's commands on queues and on the broker: stats,
// ping, shutdown, and the bulk lifecycle: retry, pause, resume, drain and
// purge.

#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <time.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "output.h"
#include "tbtime.h"

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
	tb_client        *tc;
	tb_stats          st;
	tb_queue_info    *qs  = NULL;
	size_t            nq  = 0;
	tb_whandler_info *wh  = NULL;
	size_t            nwh = 0;
	int               rv;

	if ((rv = simple_opts(c, "stats", stats_help, argc, argv)) >= 0 ||
	    (rv = no_args("stats", argc, argv)) >= 0) {
		return (rv);
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
	// Worker handlers: an older broker has none to report.
	if (tb_worker_handlers(tc, &wh, &nwh) != TB_OK) {
		wh  = NULL;
		nwh = 0;
	}
	if (c->json) {
		json_t *o =
		    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
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
		arr = json_array();
		for (size_t i = 0; arr != NULL && i < nwh; i++) {
			json_array_append_new(arr,
			    json_pack("{s:s, s:I, s:I}", "name", wh[i].name,
			        "workers", (json_int_t) wh[i].workers,
			        "waiting", (json_int_t) wh[i].waiting));
		}
		if (o != NULL && arr != NULL) {
			json_object_set_new(o, "worker_handlers", arr);
		} else {
			json_decref(arr);
		}
		tb_queues_free(qs, nq);
		tb_worker_handlers_free(wh, nwh);
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
	if (nwh > 0) {
		printf("\n%-24s %8s %8s%s\n", "WORKER HANDLER", "WORKERS",
		    "WAITING", "");
		for (size_t i = 0; i < nwh; i++) {
			printf("%-24s %8" PRIu32 " %8" PRIu64 "%s\n",
			    wh[i].name, wh[i].workers, wh[i].waiting,
			    wh[i].workers == 0 && wh[i].waiting > 0
			        ? "  (no worker connected)"
			        : "");
		}
	}
	tb_queues_free(qs, nq);
	tb_worker_handlers_free(wh, nwh);
	return (EXIT_OK);
}

static const char workers_help[] =
    "Usage: taskbroker workers [--json]\n"
    "\n"
    "List the workers connected to the broker, one line each:\n"
    "  ID PID HOST NAME SLOTS RUNNING DONE SINCE HANDLERS [QUEUES]\n"
    "where RUNNING is the jobs it has now, DONE the results it sent that\n"
    "were taken, SINCE how long ago it said hello, HANDLERS the names it\n"
    "serves and QUEUES the queues it takes them from (all if none).\n"
    "--json prints an array of objects with the keys id, pid, host, name,\n"
    "handlers, queues (arrays), slots, running, done and since (Unix µs).\n";

// split_json turns "a,b" into a JSON array of strings ("" is []).
static json_t *
split_json(const char *s)
{
	json_t *a = json_array();

	while (a != NULL && s != NULL && *s != '\0') {
		size_t n = strcspn(s, ",");
		json_array_append_new(a, json_stringn(s, n));
		s += n;
		s += *s == ',';
	}
	return (a);
}

static int
cmd_workers(cli *c, int argc, char **argv)
{
	tb_client      *tc;
	tb_worker_info *ws = NULL;
	size_t          n  = 0;
	int64_t         now;
	int             rv;

	if ((rv = simple_opts(c, "workers", workers_help, argc, argv)) >= 0 ||
	    (rv = no_args("workers", argc, argv)) >= 0) {
		return (rv);
	}
	if ((rv = cli_client(c, &tc)) != EXIT_OK) {
		return (rv);
	}
	if ((rv = tb_workers(tc, &ws, &n)) != TB_OK) {
		return (fail(c, rv, "workers"));
	}
	if (c->json) {
		json_t *arr = json_array();
		for (size_t i = 0; arr != NULL && i < n; i++) {
			json_array_append_new(arr,
			    json_pack("{s:I, s:I, s:s, s:s, s:o, s:o, s:I, "
			              "s:I, s:I, s:I}",
			        "id", (json_int_t) ws[i].id, "pid",
			        (json_int_t) ws[i].pid, "host", ws[i].host,
			        "name", ws[i].name, "handlers",
			        split_json(ws[i].handlers), "queues",
			        split_json(ws[i].queues), "slots",
			        (json_int_t) ws[i].slots, "running",
			        (json_int_t) ws[i].running, "done",
			        (json_int_t) ws[i].done, "since",
			        (json_int_t) ws[i].since));
		}
		tb_workers_free(ws, n);
		return (print_json(arr));
	}
	{
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		now = (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	}
	printf("%-20s %8s %-16s %-12s %5s %7s %8s %8s %s\n", "ID", "PID",
	    "HOST", "NAME", "SLOTS", "RUNNING", "DONE", "SINCE", "HANDLERS");
	for (size_t i = 0; i < n; i++) {
		printf("%-20" PRIu64 " %8" PRIu64 " %-16s %-12s %5" PRIu32
		       " %7" PRIu32 " %8" PRIu64 " %7llds %s%s%s\n",
		    ws[i].id, ws[i].pid, ws[i].host, ws[i].name, ws[i].slots,
		    ws[i].running, ws[i].done,
		    (long long) ((now - ws[i].since) / 1000000),
		    ws[i].handlers, ws[i].queues[0] != '\0' ? " queues " : "",
		    ws[i].queues);
	}
	tb_workers_free(ws, n);
	return (EXIT_OK);
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

	if ((rv = simple_opts(c, "ping", ping_help, argc, argv)) >= 0 ||
	    (rv = no_args("ping", argc, argv)) >= 0) {
		return (rv);
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
	        0 ||
	    (rv = no_args("shutdown", argc, argv)) >= 0) {
		return (rv);
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

// print_count prints the count of a retry or purge: "VERB N task(s)" or
// {"count": N}.
static int
print_count(const cli *c, const char *verb, uint64_t n)
{
	if (c->json) {
		return (
		    print_json(json_pack("{s:I}", "count", (json_int_t) n)));
	}
	printf("%s %" PRIu64 " task%s\n", verb, n, n == 1 ? "" : "s");
	return (EXIT_OK);
}

static const char retry_help[] =
    "Usage: taskbroker retry [--json] ID\n"
    "       taskbroker retry --queue Q [--state dead|cancelled] [--json]\n"
    "       taskbroker retry --all [--state dead|cancelled] [--json]\n"
    "\n"
    "Put a dead (also quarantined) or cancelled task back to pending with\n"
    "its attempts and crashes reset, or every such task of queue Q, or of\n"
    "all queues; --state picks which (default dead). Prints how many tasks\n"
    "were retried (--json: {\"count\": N}). Retrying a task that is not dead\n"
    "or cancelled, or that does not exist, fails (exit 1).\n"
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
		{ "queue", required_argument, NULL, 'q' },
		{ "all", no_argument, NULL, 'a' },
		{ "state", required_argument, NULL, 's' },
		CLI_OPTS_END,
	};
	const char *queue = NULL;
	bool        all   = false;
	int         state = -1, ch, rv;
	uint64_t    n     = 0;
	tb_client  *tc;
	tb_id       id;

	optind = 0;
	opterr = 0;
	while (
	    (ch = getopt_long(argc, argv, ":q:as:jh", longopts, NULL)) != -1) {
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
		default:
			if ((rv = opt_common(
			         c, "retry", retry_help, ch, argv)) >= 0) {
				return (rv);
			}
			break;
		}
	}
	if (queue != NULL && all) {
		return (
		    usage_error("retry", "give --queue or --all, not both"));
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

static const char resume_help[] = "Usage: taskbroker resume [--json] QUEUE\n"
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

	if ((rv = simple_opts(
	         c, cmd, pause ? pause_help : resume_help, argc, argv)) >= 0 ||
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
		return (print_json(
		    json_pack("{s:s, s:b}", "queue", queue, "paused", pause)));
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
	const char *queue   = NULL;
	int64_t     timeout = -1, start, reply_ms;
	tb_client  *tc;
	int         rv;

	if ((rv = timeout_opts(
	         c, "drain", drain_help, argc, argv, &timeout)) >= 0) {
		return (rv);
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
		{ "state", required_argument, NULL, 's' },
		{ "queue", required_argument, NULL, 'q' },
		{ "older-than", required_argument, NULL, 'o' },
		CLI_OPTS_END,
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
		default:
			if ((rv = opt_common(
			         c, "purge", purge_help, ch, argv)) >= 0) {
				return (rv);
			}
			break;
		}
	}
	if ((rv = no_args("purge", argc, argv)) >= 0) {
		return (rv);
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

// The table entries of these commands (cli.h); main.c lists them.
const command stats_cmd = {
	.name    = "stats",
	.run     = cmd_stats,
	.summary = "stats",
	.desc    = "show the broker's and queues' figures",
	.help    = stats_help,
};

const command workers_cmd = {
	.name    = "workers",
	.run     = cmd_workers,
	.summary = "workers",
	.desc    = "list the connected workers",
	.help    = workers_help,
};

const command ping_cmd = {
	.name    = "ping",
	.run     = cmd_ping,
	.summary = "ping",
	.desc    = "show the broker's version",
	.help    = ping_help,
};

const command shutdown_cmd = {
	.name    = "shutdown",
	.run     = cmd_shutdown,
	.summary = "shutdown",
	.desc    = "ask the broker to shut down",
	.help    = shutdown_help,
};

const command retry_cmd = {
	.name    = "retry",
	.run     = cmd_retry,
	.summary = "retry ID | --queue Q | --all",
	.desc    = "retry dead or cancelled tasks",
	.help    = retry_help,
};

const command pause_cmd = {
	.name    = "pause",
	.run     = cmd_pause,
	.summary = "pause QUEUE",
	.desc    = "stop a queue from starting tasks",
	.help    = pause_help,
};

const command resume_cmd = {
	.name    = "resume",
	.run     = cmd_resume,
	.summary = "resume QUEUE",
	.desc    = "let a paused queue start tasks",
	.help    = resume_help,
};

const command drain_cmd = {
	.name    = "drain",
	.run     = cmd_drain,
	.summary = "drain [--timeout DURATION] [QUEUE]",
	.desc    = "wait until a queue has no work left",
	.help    = drain_help,
};

const command purge_cmd = {
	.name    = "purge",
	.run     = cmd_purge,
	.summary = "purge --state S [OPTIONS]",
	.desc    = "delete tasks in a state",
	.help    = purge_help,
};
