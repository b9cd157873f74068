// cli.h: what the files of the taskbroker tool share: the state of a run,
// the command table entry, the exit statuses, the parsing of command
// arguments (args.c) and the commands (cmd_*.c). Private to the tool, which
// is built only on the public client API (taskbroker.h).
//
// Global options come before the command (getopt_long with "+" stops at the
// command name, main.c); each command then parses its own options from an
// argv that starts at its name. Output is a small human format by default
// and JSON with --json (output.h). Exit codes are listed in the usage text
// and follow EXIT_* below.
//
// Threads: the tool has one thread.

#ifndef TB_CLI_H
#define TB_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <msgpack.h>

#include <taskbroker.h>

// PROG is the tool's name, the first word of every message it prints.
#define PROG "taskbroker"

// CLI_OPTS_END ends the getopt_long table of a command that takes the
// --json and --help every command shares (opt_common handles them), with
// the table's terminator.
// clang-format off
#define CLI_OPTS_END                                                        \
	{ "json", no_argument, NULL, 'j' },                                 \
	{ "help", no_argument, NULL, 'h' },                                 \
	{ NULL, 0, NULL, 0 }
// clang-format on

// EXIT_OK, EXIT_FAIL, EXIT_USAGE and EXIT_UNREACH are the exit statuses of
// the tool, as the usage text lists them.
enum {
	EXIT_OK      = 0, // success
	EXIT_FAIL    = 1, // the task or the operation failed
	EXIT_USAGE   = 2, // bad command line
	EXIT_UNREACH = 3, // broker unreachable or timed out talking to it
};

// cli is the state of one run: global options and the lazily opened client.
typedef struct cli {
	const char  *url;
	const char  *events_url;
	tb_conn_opts conn; // --token-file, --tls-*; NULL fields: environment
	bool         json;
	int          timeout_ms; // 0: the library's default
	tb_client   *client;
} cli;

// command is one entry of the command table (main.c): run gets the run's
// state and the arguments from the command's name on (argv[0] is the
// name) and returns the exit status.
typedef struct command {
	const char *name;
	int (*run)(cli *, int, char **);
	const char *summary; // synopsis for the main usage
	const char *desc;    // what it does, for the main usage
	const char *help;    // the full text for COMMAND --help
} command;

// cli_client gives the run's client through *cp, opening it on first use
// with the global --broker URL and --timeout. The client stays owned by c
// (main closes it). Returns EXIT_OK, else the exit status after saying why
// on stderr (a bad URL is a usage error). Defined in main.c.
int cli_client(cli *c, tb_client **cp);

// mono_ms returns the monotonic clock in milliseconds, for deadlines.
static inline int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

// ---- args.c: parsing the arguments of a command ---------------------------

// BAD_DUR is the usage message for a value that is not a DURATION.
#define BAD_DUR "not a duration (e.g. 1500, 500ms, 30s, 1h30m)"

// parse_i64 parses a whole decimal number in [min, max] into *vp. Returns
// false, with *vp unchanged, for anything else.
bool parse_i64(const char *s, int64_t min, int64_t max, int64_t *vp);

// parse_id parses a task id, a whole unsigned decimal number, into *idp.
// Returns false, with *idp unchanged, for anything else.
bool parse_id(const char *s, tb_id *idp);

// parse_dur parses a DURATION (tbt_parse_duration: "1500", "500ms",
// "1h30m") of at most max milliseconds into *msp. Returns false, with *msp
// unchanged, for anything else.
bool parse_dur(const char *s, uint64_t max, uint64_t *msp);

// parse_dur_int is parse_dur into an int64_t, for timeouts up to INT_MAX.
bool parse_dur_int(const char *s, int64_t *msp);

// getopt_fail reports what getopt_long rejected (opterr is 0) as a usage
// error of cmd (NULL: the global options) and returns EXIT_USAGE.
int getopt_fail(const char *cmd, int ch, char **argv);

// opt_common handles what the getopt loops of all commands share: -j,
// --json sets c->json; -h, --help prints help (the command's text); and
// anything getopt_long rejected is a usage error of cmd (getopt_fail). A
// loop calls it for every option it does not handle itself. Returns -1 to
// go on, else an exit status.
int opt_common(cli *c, const char *cmd, const char *help, int ch, char **argv);

// opt_wait_timeout parses the value arg of option --NAME, a DURATION that
// bounds a wait (up to INT_MAX ms: --timeout of wait, drain and watch,
// --wait-timeout of submit), into *msp. Returns -1 to go on, else
// EXIT_USAGE after saying why. The opt_ functions below do the same for
// other options that several commands share.
int opt_wait_timeout(
    const char *cmd, const char *name, const char *arg, int64_t *msp);

// opt_priority parses the value of --priority of a task into *prip.
int opt_priority(const char *cmd, const char *arg, int32_t *prip);

// opt_max_attempts parses the value of --max-attempts of a task into *maxp.
int opt_max_attempts(const char *cmd, const char *arg, uint32_t *maxp);

// opt_max_crashes parses the value of --max-crashes of a task into *maxp.
int opt_max_crashes(const char *cmd, const char *arg, uint32_t *maxp);

// opt_attempt_timeout parses the value of --timeout of a task (the limit
// of each attempt, at most 49 days) into *msp.
int opt_attempt_timeout(const char *cmd, const char *arg, uint32_t *msp);

// argv_split finds the first "--" in argv: what follows it is ARGV (*argsp,
// *nargsp words; NULL and 0 without a "--"), and the count of words before
// it, which is what getopt is given, is returned.
int argv_split(int argc, char **argv, char ***argsp, int *nargsp);

// simple_opts parses the options of a command that has only --json and
// --help (help is its text). Returns -1 to go on, else an exit status.
int simple_opts(
    cli *c, const char *cmd, const char *help, int argc, char **argv);

// timeout_opts is simple_opts for a command that also has --timeout
// DURATION (opt_wait_timeout), stored in *msp when given.
int timeout_opts(cli *c, const char *cmd, const char *help, int argc,
    char **argv, int64_t *msp);

// no_args checks that no argument is left after the options of cmd.
// Returns -1 to go on, else EXIT_USAGE after saying why.
int no_args(const char *cmd, int argc, char **argv);

// one_id parses the single ID argument of cmd, at argv[optind], into *idp.
// Returns -1 to go on, else an exit status.
int one_id(const char *cmd, int argc, char **argv, tb_id *idp);

// one_name parses the single NAME argument of pause, resume and the
// schedule commands into *namep (a view into argv); what is its name in
// messages. Returns -1 to go on, else an exit status.
int one_name(const char *cmd, const char *what, int argc, char **argv,
    const char **namep);

// build_payload appends the msgpack payload made from --payload-json (pjson,
// may be NULL) and the nargs words of ARGV to b, an initialised buffer the
// caller owns; *emptyp is set when there is no payload at all. Returns
// EXIT_OK, else the exit status after saying why.
int build_payload(const char *cmd, const char *pjson, int nargs, char **args,
    msgpack_sbuffer *b, bool *emptyp);

// ---- the commands, in the order of the usage (main.c's table) -------------

// submit_cmd is 'taskbroker submit' (cmd_tasks.c).
extern const command submit_cmd;

// status_cmd is 'taskbroker status' (cmd_tasks.c).
extern const command status_cmd;

// wait_cmd is 'taskbroker wait' (cmd_tasks.c).
extern const command wait_cmd;

// ls_cmd is 'taskbroker ls' (cmd_tasks.c).
extern const command ls_cmd;

// cancel_cmd is 'taskbroker cancel' (cmd_tasks.c).
extern const command cancel_cmd;

// retry_cmd is 'taskbroker retry' (cmd_admin.c).
extern const command retry_cmd;

// pause_cmd is 'taskbroker pause' (cmd_admin.c).
extern const command pause_cmd;

// resume_cmd is 'taskbroker resume' (cmd_admin.c).
extern const command resume_cmd;

// drain_cmd is 'taskbroker drain' (cmd_admin.c).
extern const command drain_cmd;

// purge_cmd is 'taskbroker purge' (cmd_admin.c).
extern const command purge_cmd;

// schedule_cmd is 'taskbroker schedule' and its subcommands
// (cmd_schedules.c).
extern const command schedule_cmd;

// stats_cmd is 'taskbroker stats' (cmd_admin.c).
extern const command stats_cmd;

// workers_cmd is 'taskbroker workers' (cmd_admin.c).
extern const command workers_cmd;

// watch_cmd is 'taskbroker watch' (cmd_watch.c).
extern const command watch_cmd;

// ping_cmd is 'taskbroker ping' (cmd_admin.c).
extern const command ping_cmd;

// shutdown_cmd is 'taskbroker shutdown' (cmd_admin.c).
extern const command shutdown_cmd;

#endif // TB_CLI_H
