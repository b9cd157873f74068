// args.c: parsing the arguments of a command: numbers, task ids,
// durations, the single ID or NAME, --json and --help, and the payload
// made of --payload-json and ARGV. See cli.h.

#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "json_mp.h"
#include "output.h"
#include "tbtime.h"

bool
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

bool
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

bool
parse_dur(const char *s, uint64_t max, uint64_t *msp)
{
	uint64_t v;

	if (tbt_parse_duration(s, &v) != TB_OK || v > max) {
		return (false);
	}
	*msp = v;
	return (true);
}

bool
parse_dur_int(const char *s, int64_t *msp)
{
	uint64_t v;

	if (!parse_dur(s, INT_MAX, &v)) {
		return (false);
	}
	*msp = (int64_t) v;
	return (true);
}

int
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

int
opt_common(cli *c, const char *cmd, const char *help, int ch, char **argv)
{
	switch (ch) {
	case 'j':
		c->json = true;
		return (-1);
	case 'h':
		fputs(help, stdout);
		return (EXIT_OK);
	default:
		return (getopt_fail(cmd, ch, argv));
	}
}

int
opt_wait_timeout(
    const char *cmd, const char *name, const char *arg, int64_t *msp)
{
	if (!parse_dur_int(arg, msp)) {
		return (
		    usage_error(cmd, "bad --%s '%s': " BAD_DUR, name, arg));
	}
	return (-1);
}

int
opt_priority(const char *cmd, const char *arg, int32_t *prip)
{
	int64_t v;

	if (!parse_i64(arg, INT32_MIN, INT32_MAX, &v)) {
		return (usage_error(
		    cmd, "bad --priority '%s': not an integer", arg));
	}
	*prip = (int32_t) v;
	return (-1);
}

int
opt_max_attempts(const char *cmd, const char *arg, uint32_t *maxp)
{
	int64_t v;

	if (!parse_i64(arg, 1, UINT32_MAX, &v)) {
		return (usage_error(cmd,
		    "bad --max-attempts '%s': not a positive integer", arg));
	}
	*maxp = (uint32_t) v;
	return (-1);
}

int
opt_max_crashes(const char *cmd, const char *arg, uint32_t *maxp)
{
	int64_t v;

	if (!parse_i64(arg, 1, UINT32_MAX, &v)) {
		return (usage_error(cmd,
		    "bad --max-crashes '%s': not a positive integer", arg));
	}
	*maxp = (uint32_t) v;
	return (-1);
}

int
opt_attempt_timeout(const char *cmd, const char *arg, uint32_t *msp)
{
	uint64_t ms;

	if (!parse_dur(arg, UINT32_MAX, &ms)) {
		return (usage_error(cmd,
		    "bad --timeout '%s': " BAD_DUR " of at most 49d", arg));
	}
	*msp = (uint32_t) ms;
	return (-1);
}

int
argv_split(int argc, char **argv, char ***argsp, int *nargsp)
{
	*argsp  = NULL;
	*nargsp = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			*argsp  = argv + i + 1;
			*nargsp = argc - i - 1;
			return (i);
		}
	}
	return (argc);
}

int
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

// parse_opts is simple_opts and timeout_opts: --json, --help and, when
// timeoutp is not NULL, --timeout.
static int
parse_opts(cli *c, const char *cmd, const char *help, int argc, char **argv,
    int64_t *timeoutp)
{
	static const struct option json_help[] = {
		CLI_OPTS_END,
	};
	static const struct option with_timeout[] = {
		{ "timeout", required_argument, NULL, 't' },
		CLI_OPTS_END,
	};
	const struct option *longopts;
	const char          *optstr;
	int                  ch, rv;

	longopts = timeoutp != NULL ? with_timeout : json_help;
	optstr   = timeoutp != NULL ? ":t:jh" : ":jh";
	optind   = 0;
	opterr   = 0;
	while ((ch = getopt_long(argc, argv, optstr, longopts, NULL)) != -1) {
		switch (ch) {
		case 't':
			if ((rv = opt_wait_timeout(
			         cmd, "timeout", optarg, timeoutp)) >= 0) {
				return (rv);
			}
			break;
		default:
			if ((rv = opt_common(c, cmd, help, ch, argv)) >= 0) {
				return (rv);
			}
			break;
		}
	}
	return (-1);
}

int
simple_opts(cli *c, const char *cmd, const char *help, int argc, char **argv)
{
	return (parse_opts(c, cmd, help, argc, argv, NULL));
}

int
timeout_opts(cli *c, const char *cmd, const char *help, int argc, char **argv,
    int64_t *msp)
{
	return (parse_opts(c, cmd, help, argc, argv, msp));
}

int
no_args(const char *cmd, int argc, char **argv)
{
	if (optind < argc) {
		return (usage_error(
		    cmd, "unexpected argument '%s'", argv[optind]));
	}
	return (-1);
}

int
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

int
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
