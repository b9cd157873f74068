// cmd_schedules.c: the schedule command and its subcommands add, ls, rm,
// pause and resume.

#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

#include "output.h"
#include "tbtime.h"

static const char schedule_help[] =
    "Usage: taskbroker schedule add NAME HANDLER (--every DURATION | --cron "
    "EXPR)\n"
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
    "  ls       list schedules: NAME HANDLER QUEUE EVERY/CRON NEXT LAST "
    "FIRED\n"
    "           PAUSED (times in UTC); --json prints an array of objects\n"
    "           with the keys name, handler, queue, every_ms (null with\n"
    "           cron), cron (null with every), priority, max_attempts,\n"
    "           timeout_ms, catch_up, paused, next_at, last_at (Unix\n"
    "           seconds, null if none), fired and last_task (null if none)\n"
    "  rm       remove a schedule\n"
    "  pause    stop a schedule from firing (persisted)\n"
    "  resume   let a paused schedule fire again\n";

static const char schedule_add_help[] =
    "Usage: taskbroker schedule add NAME HANDLER (--every DURATION | --cron "
    "EXPR)\n"
    "                           [OPTIONS] [-- ARGV...]\n"
    "\n"
    "Add schedule NAME, or replace the one with that name, which submits a\n"
    "task for HANDLER at each due time. Words after '--' make the payload\n"
    "{\"argv\": [ARGV...]}, merged into the --payload-json object.\n"
    "\n"
    "Options:\n"
    "  -e, --every DURATION      fire every DURATION (at least 1ms)\n"
    "  -c, --cron EXPR           fire on a cron schedule, in UTC: five "
    "fields\n"
    "                            'MIN HOUR DAY MONTH WEEKDAY' (e.g.\n"
    "                            '*/15 9-17 * * MON-FRI') or @hourly, "
    "@daily,\n"
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
		{ "every", required_argument, NULL, 'e' },
		{ "cron", required_argument, NULL, 'c' },
		{ "queue", required_argument, NULL, 'q' },
		{ "payload-json", required_argument, NULL, 'P' },
		{ "priority", required_argument, NULL, 'p' },
		{ "max-attempts", required_argument, NULL, 'm' },
		{ "timeout", required_argument, NULL, 't' },
		{ "catch-up", no_argument, NULL, 'C' },
		CLI_OPTS_END,
	};
	static const char *cmd   = "schedule add";
	tb_schedule_spec   spec  = TB_SCHEDULE_SPEC_INIT;
	const char        *pjson = NULL, *why = NULL;
	int                nopt, nargs, ch, rv;
	char             **args;
	tbt_cron           cron;
	msgpack_sbuffer    b;
	bool               empty;
	tb_client         *tc;

	nopt   = argv_split(argc, argv, &args, &nargs); // ARGV as for submit
	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(
	            nopt, argv, ":e:c:q:P:p:m:t:Cjh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'e':
			if (!parse_dur(optarg, UINT64_MAX, &spec.every_ms) ||
			    spec.every_ms == 0) {
				return (usage_error(cmd,
				    "bad --every '%s': " BAD_DUR " above zero",
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
			if ((rv = opt_priority(cmd, optarg, &spec.priority)) >=
			    0) {
				return (rv);
			}
			break;
		case 'm':
			if ((rv = opt_max_attempts(
			         cmd, optarg, &spec.max_attempts)) >= 0) {
				return (rv);
			}
			break;
		case 't':
			if ((rv = opt_attempt_timeout(
			         cmd, optarg, &spec.timeout_ms)) >= 0) {
				return (rv);
			}
			break;
		case 'C':
			spec.catch_up = 1;
			break;
		default:
			if ((rv = opt_common(
			         c, cmd, schedule_add_help, ch, argv)) >= 0) {
				return (rv);
			}
			break;
		}
	}
	if (optind + 2 > nopt) {
		return (usage_error(
		    cmd, optind >= nopt ? "missing NAME" : "missing HANDLER"));
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
		return (usage_error(
		    cmd, "give exactly one of --every and --cron"));
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

	if ((rv = simple_opts(
	         c, "schedule ls", schedule_ls_help, argc, argv)) >= 0 ||
	    (rv = no_args("schedule ls", argc, argv)) >= 0) {
		return (rv);
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
		table_cell(
		    &t, "%s", fmt_time(s->last_at, b, sizeof(b), false));
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

// The table entries of these commands (cli.h); main.c lists them.
const command schedule_cmd = {
	.name    = "schedule",
	.run     = cmd_schedule,
	.summary = "schedule add|ls|rm|pause|resume ...",
	.desc    = "manage periodic schedules",
	.help    = schedule_help,
};
