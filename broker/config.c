// config.c: see config.h.

#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <taskbroker.h>

#include "log.h"
#include "store.h"

enum config_type {
	CFG_STR,
	CFG_INT,
	CFG_ENUM,
};

typedef struct config_entry {
	const char  *name;
	int          type;
	const char  *def;
	long         min;
	long         max;
	size_t       offset;
	const char  *values[5]; // CFG_ENUM: names, index = value
	const char  *help;
} config_entry;

#define OFF(f) offsetof(config, f)

static const config_entry config_table[] = {
	{ "data-dir", CFG_STR, "data", 0, 0, OFF(data_dir), { NULL },
	    "directory of the task database (created if missing)" },
	{ "listen", CFG_STR, TB_DEFAULT_URL, 0, 0, OFF(listen), { NULL },
	    "request endpoint (ipc://PATH, tcp://HOST:PORT)" },
	{ "events", CFG_STR, TB_DEFAULT_EVENTS_URL, 0, 0, OFF(events),
	    { NULL }, "event publisher endpoint" },
	{ "workers", CFG_INT, "4", 1, 1024, OFF(workers), { NULL },
	    "threads for handlers that block" },
	{ "max-running", CFG_INT, "1000", 1, 1000000, OFF(max_running),
	    { NULL }, "tasks running at once, all handlers together" },
	{ "shutdown-timeout", CFG_INT, "30", 0, 86400, OFF(shutdown_timeout),
	    { NULL },
	    "seconds running tasks get to finish at shutdown before they are "
	    "cancelled and put back to pending" },
	{ "durability", CFG_ENUM, "full", 0, 1, OFF(durability),
	    { "full", "normal", NULL },
	    "full: every commit is fsynced (survives power loss); normal: "
	    "survives a broker crash" },
	{ "log-level", CFG_ENUM, "info", 0, 3, OFF(log_level),
	    { "error", "warn", "info", "debug", NULL }, "log verbosity" },
};

#define NCONFIG (sizeof(config_table) / sizeof(config_table[0]))

static int
config_set(config *cfg, const config_entry *e, const char *val, FILE *err)
{
	char *p = (char *) cfg + e->offset;
	char *end;
	long  v;

	switch (e->type) {
	case CFG_STR:
		if (*val == '\0') {
			fprintf(err, "taskbrokerd: --%s must not be empty\n",
			    e->name);
			return (CONFIG_BAD);
		}
		free(*(char **) p);
		if ((*(char **) p = strdup(val)) == NULL) {
			fprintf(err, "taskbrokerd: out of memory\n");
			return (CONFIG_BAD);
		}
		return (CONFIG_OK);
	case CFG_INT:
		errno = 0;
		v     = strtol(val, &end, 10);
		if (errno != 0 || end == val || *end != '\0' || v < e->min ||
		    v > e->max) {
			fprintf(err,
			    "taskbrokerd: --%s: '%s' is not a whole number "
			    "from %ld to %ld\n",
			    e->name, val, e->min, e->max);
			return (CONFIG_BAD);
		}
		*(int *) p = (int) v;
		return (CONFIG_OK);
	default:
		for (int i = 0; e->values[i] != NULL; i++) {
			if (strcmp(val, e->values[i]) == 0) {
				*(int *) p = i;
				return (CONFIG_OK);
			}
		}
		fprintf(err, "taskbrokerd: --%s: '%s' is not one of:", e->name,
		    val);
		for (int i = 0; e->values[i] != NULL; i++) {
			fprintf(err, " %s", e->values[i]);
		}
		fprintf(err, "\n");
		return (CONFIG_BAD);
	}
}

void
config_init(config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < NCONFIG; i++) {
		// Defaults are valid by construction.
		(void) config_set(cfg, &config_table[i], config_table[i].def,
		    stderr);
	}
}

void
config_fini(config *cfg)
{
	for (size_t i = 0; i < NCONFIG; i++) {
		if (config_table[i].type == CFG_STR) {
			char **p = (char **) ((char *) cfg +
			    config_table[i].offset);
			free(*p);
			*p = NULL;
		}
	}
}

static void
config_usage(FILE *out)
{
	fprintf(out,
	    "Usage: taskbrokerd [OPTION]...\n"
	    "Run the taskbroker daemon: accept tasks, store them durably, run "
	    "them, publish outcomes.\n"
	    "With no options it keeps its database in ./data and listens on "
	    "ipc sockets in ./run.\n\nOptions:\n");
	for (size_t i = 0; i < NCONFIG; i++) {
		const config_entry *e = &config_table[i];
		fprintf(out, "  --%s=%s\n      %s", e->name,
		    e->type == CFG_INT ? "N"
		    : e->type == CFG_STR ? "VALUE"
		                         : "CHOICE",
		    e->help);
		if (e->type == CFG_ENUM) {
			fprintf(out, " (");
			for (int j = 0; e->values[j] != NULL; j++) {
				fprintf(out, "%s%s", j ? "|" : "", e->values[j]);
			}
			fprintf(out, ")");
		} else if (e->type == CFG_INT) {
			fprintf(out, " (%ld..%ld)", e->min, e->max);
		}
		fprintf(out, "; default %s\n", e->def);
	}
	fprintf(out,
	    "  --help      show this help and exit\n"
	    "  --version   show the version and exit\n\n"
	    "Signals: SIGTERM or SIGINT shut down gracefully (exit 0).\n"
	    "Exit status: 0 after a clean shutdown, 1 on a start-up or "
	    "runtime error, 2 on a usage error.\n");
}

int
config_parse(config *cfg, int argc, char **argv, FILE *out, FILE *err)
{
	struct option opts[NCONFIG + 3];
	int           rv;
	int           c;
	int           idx;

	for (size_t i = 0; i < NCONFIG; i++) {
		opts[i].name    = config_table[i].name;
		opts[i].has_arg = required_argument;
		opts[i].flag    = NULL;
		opts[i].val     = 0;
	}
	opts[NCONFIG]     = (struct option) { "help", no_argument, NULL, 'h' };
	opts[NCONFIG + 1] = (struct option) { "version", no_argument, NULL,
		'V' };
	opts[NCONFIG + 2] = (struct option) { NULL, 0, NULL, 0 };

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "hV", opts, &idx)) != -1) {
		switch (c) {
		case 0:
			if ((rv = config_set(cfg, &config_table[idx], optarg,
			         err)) != CONFIG_OK) {
				return (rv);
			}
			break;
		case 'h':
			config_usage(out);
			return (CONFIG_EXIT);
		case 'V':
			fprintf(out, "taskbrokerd %s\n", TB_VERSION_STR);
			return (CONFIG_EXIT);
		default:
			fprintf(err,
			    "taskbrokerd: unknown or incomplete option '%s'; "
			    "see taskbrokerd --help\n",
			    argv[optind - 1]);
			return (CONFIG_BAD);
		}
	}
	if (optind < argc) {
		fprintf(err,
		    "taskbrokerd: unexpected argument '%s'; see "
		    "taskbrokerd --help\n",
		    argv[optind]);
		return (CONFIG_BAD);
	}
	return (CONFIG_OK);
}

void
config_print(const config *cfg, FILE *out)
{
	for (size_t i = 0; i < NCONFIG; i++) {
		const config_entry *e = &config_table[i];
		const char         *p = (const char *) cfg + e->offset;
		if (e->type == CFG_STR) {
			fprintf(out, "%s = %s\n", e->name, *(char *const *) p);
		} else if (e->type == CFG_INT) {
			fprintf(out, "%s = %d\n", e->name, *(const int *) p);
		} else {
			fprintf(out, "%s = %s\n", e->name,
			    e->values[*(const int *) p]);
		}
	}
}
