// config.c: see config.h.

#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>
#include <taskbroker/defs.h>
#include <tbtime.h>

#include "log.h"
#include "store.h"

enum config_type {
	CFG_STR,
	CFG_INT,  // int field
	CFG_ENUM, // int field holding an index into values
	CFG_LONG, // long field
	CFG_MS,   // long field: a duration ("30s", "5m", plain ms)
	CFG_LIST, // config_list field: the option may be repeated
};

typedef struct config_entry {
	const char *name;
	int         type;
	const char *def;
	long        min;
	long        max;
	size_t      offset;
	const char *values[5]; // CFG_ENUM: names, index = value
	const char *help;
} config_entry;

#define OFF(f) offsetof(config, f)

static const config_entry config_table[] = {
	{ "config", CFG_STR, "", 0, 0, OFF(config_file), { NULL },
	    "INI file with a [broker] section (these options) and [queue "
	    "NAME] sections; options given on the command line win" },
	{ "data-dir", CFG_STR, "data", 0, 0, OFF(data_dir), { NULL },
	    "directory of the task database (created if missing)" },
	{ "listen", CFG_STR, TB_DEFAULT_URL, 0, 0, OFF(listen), { NULL },
	    "request endpoint (ipc://PATH, tcp://HOST:PORT, "
	    "tls+tcp://HOST:PORT); on a non-loopback address it needs "
	    "--token-file or tls+tcp with --tls-ca" },
	{ "events", CFG_STR, TB_DEFAULT_EVENTS_URL, 0, 0, OFF(events),
	    { NULL },
	    "event publisher endpoint (the same schemes); on a non-loopback "
	    "address it needs tls+tcp with --tls-ca" },
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
	{ "log-format", CFG_ENUM, "text", 0, 1, OFF(log_format),
	    { "text", "json", NULL },
	    "text: one line \"TIME LEVEL MESSAGE\" (under systemd's journal "
	    "with the priority prefix instead of the time); json: one JSON "
	    "object per line {\"time\", \"level\", \"msg\"}, for log "
	    "shippers" },
	{ "max-attempts", CFG_LONG, "1", 1, 1000000, OFF(max_attempts),
	    { NULL }, "attempts of a task that does not say" },
	{ "max-crashes", CFG_LONG, "3", 1, 1000000, OFF(max_crashes), { NULL },
	    "interrupted attempts (cut short by the death of the broker or "
	    "of a worker; they do not count as attempts) before a task that "
	    "does not say is quarantined as a likely cause: dead, with that "
	    "error" },
	{ "timeout", CFG_MS, "0", 0, 31536000000L, OFF(timeout_ms), { NULL },
	    "time limit of an attempt of a task that does not say; 0: none" },
	{ "retry-backoff", CFG_MS, "100ms", 1, 86400000, OFF(retry_backoff_ms),
	    { NULL },
	    "delay before the first retry; doubles per attempt, with jitter" },
	{ "retry-backoff-max", CFG_MS, "1m", 1, 604800000,
	    OFF(retry_backoff_max_ms), { NULL },
	    "longest delay between retries" },
	{ "max-pending", CFG_LONG, "1000000", 0, 1000000000L, OFF(max_pending),
	    { NULL },
	    "tasks waiting to run, all queues together, past which a submit "
	    "gets queue_full; 0: no limit" },
	{ "queue-max-pending", CFG_LONG, "0", 0, 1000000000L,
	    OFF(queue_max_pending), { NULL },
	    "the same limit per queue; 0: no limit" },
	{ "retention", CFG_MS, "7d", 0, 315360000000L, OFF(retention_ms),
	    { NULL },
	    "how long ended tasks (and their results) are kept before they "
	    "are pruned" },
	{ "forever-backoff", CFG_MS, "1s", 0, 86400000,
	    OFF(forever_backoff_ms), { NULL },
	    "delay before a forever task is restarted; doubles per "
	    "quick restart" },
	{ "forever-backoff-max", CFG_MS, "5m", 0, 86400000,
	    OFF(forever_backoff_max_ms), { NULL },
	    "longest delay between restarts of a forever task" },
	{ "forever-reset", CFG_MS, "1m", 0, 86400000, OFF(forever_reset_ms),
	    { NULL }, "a forever task that ran this long restarts at once" },
	{ "crashloop-restarts", CFG_LONG, "5", 1, 1000000,
	    OFF(crashloop_restarts), { NULL },
	    "restarts of a forever task within crashloop-window that count as "
	    "a crash loop" },
	{ "crashloop-window", CFG_MS, "1m", 1, 86400000,
	    OFF(crashloop_window_ms), { NULL }, "see crashloop-restarts" },
	{ "exec-kill-grace", CFG_MS, "5s", 0, 3600000, OFF(exec_kill_grace_ms),
	    { NULL },
	    "an exec task being stopped gets SIGTERM, then SIGKILL after "
	    "this" },
	// Both tails and the map around them must fit in a task's result
	// (64 KiB): hence the maximum.
	{ "exec-output-max", CFG_LONG, "4096", 0, 32000, OFF(exec_output_max),
	    { NULL },
	    "bytes of an exec task's stdout and of its stderr kept "
	    "(the last ones)" },
	{ "exec-allow", CFG_LIST, "", 0, 0, OFF(exec_allow), { NULL },
	    "a program, or a directory ending in /, that exec tasks may run; "
	    "repeatable; none given: any program" },
	{ "sqlite-db", CFG_LIST, "", 0, 0, OFF(sqlite_dbs), { NULL },
	    "NAME=PATH: a database sqlite tasks may name; repeatable" },
	{ "plugin", CFG_LIST, "", 0, 0, OFF(plugins), { NULL },
	    "a handler plugin (.so) to load at start; repeatable" },
	{ "http-allow-host", CFG_LIST, "", 0, 0, OFF(http_allow), { NULL },
	    "a host http tasks may call; repeatable; none given: any host" },
	{ "http-allow-internal", CFG_LIST, "", 0, 0, OFF(http_allow_internal),
	    { NULL },
	    "ADDR or ADDR/BITS: a loopback, link-local or unspecified address "
	    "(127.0.0.0/8, ::1, 169.254.0.0/16, fe80::/10, 0.0.0.0, ::) http "
	    "tasks may still connect to; repeatable; none given: none" },
	{ "worker-handler", CFG_LIST, "", 0, 0, OFF(worker_handlers), { NULL },
	    "a handler name (or several: a,b) served by worker processes, "
	    "accepted by submit while no worker serving it is connected; "
	    "repeatable. Names workers have served are remembered anyway" },
	{ "worker-heartbeat", CFG_MS, "5s", 10, 3600000,
	    OFF(worker_heartbeat_ms), { NULL },
	    "a worker's held take is answered (empty, if nothing is to be "
	    "sent) after at most this long" },
	{ "worker-timeout", CFG_MS, "15s", 10, 86400000,
	    OFF(worker_timeout_ms), { NULL },
	    "a worker that has sent no new take this long after its last "
	    "one was answered is treated as gone: its connection is closed "
	    "and its tasks run elsewhere (dead tcp peers)" },
	{ "worker-cancel-grace", CFG_MS, "5s", 0, 3600000,
	    OFF(worker_cancel_grace_ms), { NULL },
	    "a worker told to stop a task (cancel, timeout, shutdown) has "
	    "this long to end it before the broker ends the attempt anyway "
	    "(a late result is refused)" },
	{ "http-ca-file", CFG_STR, "", 0, 0, OFF(http_ca_file), { NULL },
	    "CA certificates (PEM) for https; empty: the system's store" },
	{ "socket-mode", CFG_STR, "0660", 0, 0, OFF(socket_mode), { NULL },
	    "permissions (octal) of the ipc sockets: who may connect" },
	{ "admin-group", CFG_STR, "", 0, 0, OFF(admin_group), { NULL },
	    "group (name or number) whose members may also send admin "
	    "requests over ipc (shutdown, retry, pause, resume, purge, "
	    "schedule changes); always: the broker's user and root" },
	{ "socket-group", CFG_STR, "", 0, 0, OFF(socket_group), { NULL },
	    "group (name or number) of the ipc sockets and of the directory "
	    "the broker creates for them; empty: the broker's own" },
	{ "token-file", CFG_STR, "", 0, 0, OFF(token_file), { NULL },
	    "file holding the token (one line, 16 to 256 printable "
	    "characters) that every request on a tcp:// or tls+tcp:// "
	    "--listen must carry (others get unauthorized); not readable by "
	    "other users; such peers may then also send admin requests" },
	{ "tls-cert", CFG_STR, "", 0, 0, OFF(tls_cert), { NULL },
	    "certificate chain (PEM) of the tls+tcp:// endpoints" },
	{ "tls-key", CFG_STR, "", 0, 0, OFF(tls_key), { NULL },
	    "private key (PEM, unencrypted) of --tls-cert; not readable by "
	    "other users" },
	{ "tls-ca", CFG_STR, "", 0, 0, OFF(tls_ca), { NULL },
	    "CA certificates (PEM): tls+tcp:// clients and subscribers must "
	    "present a certificate signed by one (mutual TLS); such peers "
	    "may then also send admin requests" },
};

// Keys of a [queue NAME] section; each overrides the broker-wide option of
// the same name for that queue.
typedef struct config_qkey {
	const char *name;
	int         type; // CFG_LONG or CFG_MS
	long        min;
	long        max;
	size_t      offset;
	const char *help;
} config_qkey;

#define QOFF(f) offsetof(config_queue, f)

static const config_qkey config_qkeys[] = {
	{ "concurrency", CFG_LONG, 0, 1000000, QOFF(concurrency),
	    "tasks of the queue running at once; 0: no limit" },
	{ "max-pending", CFG_LONG, 0, 1000000000L, QOFF(max_pending),
	    "tasks waiting in the queue past which a submit gets queue_full" },
	{ "max-attempts", CFG_LONG, 1, 1000000, QOFF(max_attempts),
	    "attempts of a task that does not say" },
	{ "max-crashes", CFG_LONG, 1, 1000000, QOFF(max_crashes),
	    "interrupted attempts of a task that does not say before it is "
	    "quarantined" },
	{ "timeout", CFG_MS, 0, 31536000000L, QOFF(timeout_ms),
	    "time limit of an attempt of a task that does not say" },
	{ "retry-backoff", CFG_MS, 1, 86400000, QOFF(retry_backoff_ms),
	    "delay before the first retry" },
	{ "retry-backoff-max", CFG_MS, 1, 604800000,
	    QOFF(retry_backoff_max_ms), "longest delay between retries" },
};

#define NQKEYS (sizeof(config_qkeys) / sizeof(config_qkeys[0]))

#define NCONFIG (sizeof(config_table) / sizeof(config_table[0]))

// config_number parses val as a whole number (CFG_INT, CFG_LONG) or a
// duration in milliseconds (CFG_MS) within [min, max].
static int
config_number(const char *name, int type, const char *val, long min, long max,
    long *vp, FILE *err)
{
	char    *end;
	long     v;
	uint64_t ms;

	if (type == CFG_MS) {
		if (tbt_parse_duration(val, &ms) != TB_OK ||
		    ms > (uint64_t) max || (long) ms < min) {
			fprintf(err,
			    "taskbrokerd: %s: '%s' is not a duration from %ld "
			    "to %ld ms (e.g. 500ms, 30s, 5m, 1h30m)\n",
			    name, val, min, max);
			return (CONFIG_BAD);
		}
		*vp = (long) ms;
		return (CONFIG_OK);
	}
	errno = 0;
	v     = strtol(val, &end, 10);
	if (errno != 0 || end == val || *end != '\0' || v < min || v > max) {
		fprintf(err,
		    "taskbrokerd: %s: '%s' is not a whole number from %ld to "
		    "%ld\n",
		    name, val, min, max);
		return (CONFIG_BAD);
	}
	*vp = v;
	return (CONFIG_OK);
}

static int
config_set(config *cfg, const config_entry *e, const char *val, FILE *err)
{
	char *p = (char *) cfg + e->offset;
	long  v;

	switch (e->type) {
	case CFG_LIST: {
		config_list *l = (config_list *) (void *) p;
		char       **nv;
		if (*val == '\0') {
			return (CONFIG_OK); // the default: an empty list
		}
		if ((nv = realloc(l->v, (l->n + 2) * sizeof(char *))) ==
		        NULL ||
		    (nv[l->n] = strdup(val)) == NULL) {
			if (nv != NULL) {
				l->v = nv;
			}
			fprintf(err, "taskbrokerd: out of memory\n");
			return (CONFIG_BAD);
		}
		l->v         = nv;
		l->v[++l->n] = NULL;
		return (CONFIG_OK);
	}
	case CFG_STR:
		if (*val == '\0' && e->offset != OFF(config_file) &&
		    e->offset != OFF(http_ca_file) &&
		    e->offset != OFF(socket_group) &&
		    e->offset != OFF(admin_group) &&
		    e->offset != OFF(token_file) &&
		    e->offset != OFF(tls_cert) && e->offset != OFF(tls_key) &&
		    e->offset != OFF(tls_ca)) {
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
	case CFG_LONG:
	case CFG_MS: {
		// A block: a declaration may not follow a label before C23
		// (gcc allows it, clang 14 does not).
		char what[64];
		snprintf(what, sizeof(what), "--%s", e->name);
		if (config_number(what, e->type, val, e->min, e->max, &v,
		        err) != CONFIG_OK) {
			return (CONFIG_BAD);
		}
		if (e->type == CFG_INT) {
			*(int *) p = (int) v;
		} else {
			*(long *) p = v;
		}
		return (CONFIG_OK);
	}
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
		(void) config_set(
		    cfg, &config_table[i], config_table[i].def, stderr);
	}
}

void
config_fini(config *cfg)
{
	for (size_t i = 0; i < NCONFIG; i++) {
		if (config_table[i].type == CFG_STR) {
			char **p =
			    (char **) ((char *) cfg + config_table[i].offset);
			free(*p);
			*p = NULL;
		}
	}
	for (size_t i = 0; i < NCONFIG; i++) {
		if (config_table[i].type == CFG_LIST) {
			config_list *l =
			    (config_list *) (void *) ((char *) cfg +
			        config_table[i].offset);
			for (size_t j = 0; j < l->n; j++) {
				free(l->v[j]);
			}
			free(l->v);
			l->v = NULL;
			l->n = 0;
		}
	}
	while (cfg->plugin_kv != NULL) {
		config_kv *kv  = cfg->plugin_kv;
		cfg->plugin_kv = kv->next;
		free(kv->section);
		free(kv->key);
		free(kv->value);
		free(kv);
	}
	while (cfg->queues != NULL) {
		config_queue *q = cfg->queues;
		cfg->queues     = q->next;
		free(q->name);
		free(q);
	}
}

const char *
config_plugin_value(const config *cfg, const char *section, const char *key)
{
	for (const config_kv *kv = cfg->plugin_kv; kv != NULL; kv = kv->next) {
		if (strcmp(kv->section, section) == 0 &&
		    strcmp(kv->key, key) == 0) {
			return (kv->value);
		}
	}
	return (NULL);
}

const config_queue *
config_queue_find(const config *cfg, const char *name)
{
	for (const config_queue *q = cfg->queues; q != NULL; q = q->next) {
		if (strcmp(q->name, name) == 0) {
			return (q);
		}
	}
	return (NULL);
}

// config_file_ctx carries state through inih's callback.
typedef struct config_file_ctx {
	config     *cfg;
	FILE       *err;
	const char *path;
	bool        failed;
} config_file_ctx;

// config_key_eq compares option names, treating '_' as '-'.
static bool
config_key_eq(const char *a, const char *b)
{
	for (; *a != '\0' && *b != '\0'; a++, b++) {
		char ca = *a == '_' ? '-' : *a;
		char cb = *b == '_' ? '-' : *b;
		if (ca != cb) {
			return (false);
		}
	}
	return (*a == *b);
}

static config_queue *
config_queue_get(config *cfg, const char *name)
{
	config_queue *q;

	for (q = cfg->queues; q != NULL; q = q->next) {
		if (strcmp(q->name, name) == 0) {
			return (q);
		}
	}
	if ((q = calloc(1, sizeof(*q))) == NULL ||
	    (q->name = strdup(name)) == NULL) {
		free(q);
		return (NULL);
	}
	q->concurrency = q->max_pending = q->max_attempts = -1;
	q->max_crashes                                    = -1;
	q->timeout_ms = q->retry_backoff_ms = q->retry_backoff_max_ms = -1;
	q->next     = cfg->queues;
	cfg->queues = q;
	return (q);
}

static int
config_ini_cb(void *arg, const char *section, const char *key, const char *val)
{
	config_file_ctx *x = arg;
	char             what[300];

	if (strcmp(section, "broker") == 0 || section[0] == '\0') {
		for (size_t i = 0; i < NCONFIG; i++) {
			const config_entry *e = &config_table[i];
			if (!config_key_eq(e->name, key)) {
				continue;
			}
			if (e->offset == OFF(config_file)) {
				break; // no nesting of config files
			}
			if (config_set(x->cfg, e, val, x->err) != CONFIG_OK) {
				fprintf(x->err, "taskbrokerd: in %s [%s]\n",
				    x->path, section);
				x->failed = true;
				return (0);
			}
			return (1);
		}
	} else if (strncmp(section, "queue ", 6) == 0 && section[6] != '\0') {
		config_queue *q;
		if ((q = config_queue_get(x->cfg, section + 6)) == NULL) {
			fprintf(x->err, "taskbrokerd: out of memory\n");
			x->failed = true;
			return (0);
		}
		for (size_t i = 0; i < NQKEYS; i++) {
			const config_qkey *k = &config_qkeys[i];
			long               v;
			if (!config_key_eq(k->name, key)) {
				continue;
			}
			snprintf(what, sizeof(what), "%s [%s] %s", x->path,
			    section, k->name);
			if (config_number(what, k->type, val, k->min, k->max,
			        &v, x->err) != CONFIG_OK) {
				x->failed = true;
				return (0);
			}
			*(long *) ((char *) q + k->offset) = v;
			return (1);
		}
	} else if (strncmp(section, "plugin ", 7) == 0 && section[7] != '\0') {
		config_kv *kv;
		if ((kv = calloc(1, sizeof(*kv))) == NULL ||
		    (kv->section = strdup(section + 7)) == NULL ||
		    (kv->key = strdup(key)) == NULL ||
		    (kv->value = strdup(val)) == NULL) {
			if (kv != NULL) {
				free(kv->section);
				free(kv->key);
				free(kv);
			}
			fprintf(x->err, "taskbrokerd: out of memory\n");
			x->failed = true;
			return (0);
		}
		// Kept in file order; a later duplicate key is shadowed.
		config_kv **tail = &x->cfg->plugin_kv;
		while (*tail != NULL) {
			tail = &(*tail)->next;
		}
		*tail = kv;
		return (1);
	} else {
		fprintf(x->err,
		    "taskbrokerd: %s: unknown section [%s]; sections are "
		    "[broker], [queue NAME] and [plugin NAME]\n",
		    x->path, section);
		x->failed = true;
		return (0);
	}
	fprintf(x->err, "taskbrokerd: %s: [%s] has no option '%s'\n", x->path,
	    section, key);
	x->failed = true;
	return (0);
}

// config_load reads the INI file at path into cfg.
static int
config_load(config *cfg, const char *path, FILE *err)
{
	config_file_ctx x = { cfg, err, path, false };
	int             rv;

	rv = ini_parse(path, config_ini_cb, &x);
	if (rv < 0) {
		fprintf(
		    err, "taskbrokerd: cannot read config file %s\n", path);
		return (CONFIG_BAD);
	}
	if (rv > 0 || x.failed) {
		fprintf(err, "taskbrokerd: config file %s: error on line %d\n",
		    path, rv);
		return (CONFIG_BAD);
	}
	return (CONFIG_OK);
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
		    e->type == CFG_INT || e->type == CFG_LONG ? "N"
		        : e->type == CFG_MS                   ? "DURATION"
		        : e->type == CFG_LIST                 ? "VALUE"
		        : e->type == CFG_STR                  ? "VALUE"
		                                              : "CHOICE",
		    e->help);
		if (e->type == CFG_ENUM) {
			fprintf(out, " (");
			for (int j = 0; e->values[j] != NULL; j++) {
				fprintf(
				    out, "%s%s", j ? "|" : "", e->values[j]);
			}
			fprintf(out, ")");
		} else if (e->type == CFG_INT || e->type == CFG_LONG) {
			fprintf(out, " (%ld..%ld)", e->min, e->max);
		}
		fprintf(out, "; default %s\n", e->def[0] ? e->def : "none");
	}

	fprintf(out,
	    "  --print-config  print the effective settings and exit\n"
	    "  --help      show this help and exit\n"
	    "  --version   show the version and exit\n\n"
	    "Signals: SIGTERM or SIGINT shut down gracefully (exit 0).\n"
	    "Exit status: 0 after a clean shutdown, 1 on a start-up or "
	    "runtime error, 2 on a usage error.\n");
	fprintf(out, "\nKeys of a [queue NAME] section in the config file:\n");
	for (size_t i = 0; i < NQKEYS; i++) {
		fprintf(out, "  %-18s %s\n", config_qkeys[i].name,
		    config_qkeys[i].help);
	}
}

int
config_parse(config *cfg, int argc, char **argv, FILE *out, FILE *err)
{
	struct option opts[NCONFIG + 4];
	bool          print = false;
	int           rv;
	int           c;
	int           idx;

	for (size_t i = 0; i < NCONFIG; i++) {
		opts[i].name    = config_table[i].name;
		opts[i].has_arg = required_argument;
		opts[i].flag    = NULL;
		opts[i].val     = 0;
	}
	opts[NCONFIG] = (struct option) { "help", no_argument, NULL, 'h' };
	opts[NCONFIG + 1] =
	    (struct option) { "version", no_argument, NULL, 'V' };
	opts[NCONFIG + 2] =
	    (struct option) { "print-config", no_argument, NULL, 'P' };
	opts[NCONFIG + 3] = (struct option) { NULL, 0, NULL, 0 };

	// First pass: only --config, so the file is read before the other
	// options, which then override it.
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "hV", opts, &idx)) != -1) {
		if (c == 0 && config_table[idx].offset == OFF(config_file)) {
			if ((rv = config_set(cfg, &config_table[idx], optarg,
			         err)) != CONFIG_OK) {
				return (rv);
			}
		}
	}
	if (cfg->config_file != NULL && cfg->config_file[0] != '\0' &&
	    (rv = config_load(cfg, cfg->config_file, err)) != CONFIG_OK) {
		return (rv);
	}

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
		case 'P':
			print = true;
			break;
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
	if (print) {
		config_print(cfg, out);
		return (CONFIG_EXIT);
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
			fprintf(out, "%s = %s\n", e->name,
			    *(char *const *) p != NULL ? *(char *const *) p
			                               : "");
		} else if (e->type == CFG_INT) {
			fprintf(out, "%s = %d\n", e->name, *(const int *) p);
		} else if (e->type == CFG_LIST) {
			const config_list *l =
			    (const config_list *) (const void *) p;
			for (size_t j = 0; j < l->n; j++) {
				fprintf(out, "%s = %s\n", e->name, l->v[j]);
			}
		} else if (e->type == CFG_LONG || e->type == CFG_MS) {
			fprintf(out, "%s = %ld\n", e->name, *(const long *) p);
		} else {
			fprintf(out, "%s = %s\n", e->name,
			    e->values[*(const int *) p]);
		}
	}
}
