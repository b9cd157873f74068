// main.c: the taskbroker command-line tool: the global options, the
// command table and its dispatch, and the usage text (--help and 'help').
// The commands themselves are in cmd_*.c; see cli.h.

#include "cli.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <taskbroker.h>

#include "output.h"

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
    "      --token-file FILE\n"
    "                     send the token in FILE (its first line) with\n"
    "                     every request, for a tcp:// or tls+tcp:// broker\n"
    "                     started with --token-file (default:\n"
    "                     $TASKBROKER_TOKEN, else $TASKBROKER_TOKEN_FILE);\n"
    "                     there is no option for the token itself, which\n"
    "                     others could read in the process list\n"
    "      --tls-ca FILE  CA certificates (PEM) that a tls+tcp:// broker's\n"
    "                     certificate must verify against (default:\n"
    "                     $TASKBROKER_TLS_CA, else the system's store)\n"
    "      --tls-cert FILE, --tls-key FILE\n"
    "                     this client's certificate and unencrypted key\n"
    "                     (PEM), for a broker started with --tls-ca\n"
    "                     (default: $TASKBROKER_TLS_CERT,\n"
    "                     $TASKBROKER_TLS_KEY)\n"
    "      --tls-server-name NAME\n"
    "                     the name the broker's certificate must carry\n"
    "                     (default: $TASKBROKER_TLS_SERVER_NAME, else the\n"
    "                     URL's host)\n"
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
    "  3  broker unreachable, or timed out talking to it, or the TLS\n"
    "     handshake failed\n";

// Long-only global options.
enum {
	OPT_TOKEN_FILE = 256,
	OPT_TLS_CA,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_TLS_SERVER_NAME,
};

int
cli_client(cli *c, tb_client **cp)
{
	int rv;

	if (c->client == NULL) {
		if ((rv = tb_client_open_opts(&c->client, c->url, &c->conn)) !=
		    TB_OK) {
			c->client = NULL;
			if (rv == TB_EINVAL) {
				return (usage_error(NULL,
				    "bad broker URL '%s', or a --token-file "
				    "or "
				    "--tls-* file (or $TASKBROKER_TOKEN*, "
				    "$TASKBROKER_TLS_*) that cannot be read, "
				    "or "
				    "a --tls-cert without --tls-key",
				    c->url));
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

static int cmd_help(cli *c, int argc, char **argv);

static const char help_help[] =
    "Usage: taskbroker help [COMMAND]\n"
    "\n"
    "Show the usage of taskbroker or of COMMAND.\n";

static const command help_cmd = {
	.name    = "help",
	.run     = cmd_help,
	.summary = "help [COMMAND]",
	.desc    = "show help",
	.help    = help_help,
};

// commands is the command table, in the order of the usage text.
static const command *const commands[] = {
	&submit_cmd,
	&status_cmd,
	&wait_cmd,
	&ls_cmd,
	&cancel_cmd,
	&retry_cmd,
	&pause_cmd,
	&resume_cmd,
	&drain_cmd,
	&purge_cmd,
	&schedule_cmd,
	&stats_cmd,
	&workers_cmd,
	&watch_cmd,
	&ping_cmd,
	&shutdown_cmd,
	&help_cmd,
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const command *
find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcmp(commands[i]->name, name) == 0) {
			return (commands[i]);
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
		    "  %-38s  %s\n", commands[i]->summary, commands[i]->desc);
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
		{ "broker", required_argument, NULL, 'b' },
		{ "events", required_argument, NULL, 'e' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "token-file", required_argument, NULL, OPT_TOKEN_FILE },
		{ "tls-ca", required_argument, NULL, OPT_TLS_CA },
		{ "tls-cert", required_argument, NULL, OPT_TLS_CERT },
		{ "tls-key", required_argument, NULL, OPT_TLS_KEY },
		{ "tls-server-name", required_argument, NULL,
		    OPT_TLS_SERVER_NAME },
		{ NULL, 0, NULL, 0 },
	};
	static const tb_conn_opts conn_init = TB_CONN_OPTS_INIT;
	cli                       c         = { 0 };
	const command            *cmd;
	int64_t                   v;
	int                       ch, rv;

	c.conn       = conn_init;
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
		case OPT_TOKEN_FILE:
			c.conn.token      = ""; // the file wins over the env
			c.conn.token_file = optarg;
			break;
		case OPT_TLS_CA:
			c.conn.tls_ca_file = optarg;
			break;
		case OPT_TLS_CERT:
			c.conn.tls_cert_file = optarg;
			break;
		case OPT_TLS_KEY:
			c.conn.tls_key_file = optarg;
			break;
		case OPT_TLS_SERVER_NAME:
			c.conn.tls_server_name = optarg;
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
