// config.h: the broker's settings.
//
// One table (config.c) names every setting with its type, default, range
// and help; it drives command-line parsing, validation and --help, so a new
// setting is one row.
//
// Threads: the main thread parses before anything starts; afterwards the
// settings are read-only, so any thread may read them.
// Lock order: no locks.
// Ownership: the caller owns the config (config_init, then config_fini);
// config_parse fills it, and its strings live as long as it.

#ifndef CONFIG_H
#define CONFIG_H

#include <stdio.h>

// config_queue holds one [queue NAME] section; -1 in a field means "use
// the broker-wide value".
typedef struct config_queue {
	char                *name;
	long                 concurrency; // 0: no limit
	long                 max_pending; // 0: no limit
	long                 max_attempts;
	long                 max_crashes;
	long                 timeout_ms; // 0: none
	long                 retry_backoff_ms;
	long                 retry_backoff_max_ms;
	struct config_queue *next;
} config_queue;

// config_kv is one key = value of a [plugin NAME] section.
typedef struct config_kv {
	char             *section; // the plugin's NAME
	char             *key;
	char             *value;
	struct config_kv *next;
} config_kv;

// config_list is a repeatable option's values, in the order given.
typedef struct config_list {
	char **v;
	size_t n;
} config_list;

typedef struct config {
	char *config_file;
	char *data_dir;
	char *listen;
	char *events;
	int   workers;
	int   shutdown_timeout; // seconds
	int   durability;       // enum store_durability
	int   max_running;
	int   log_level;
	int   log_format;           // 0 text, 1 json (log.h)
	long  max_attempts;         // default per task
	long  max_crashes;          // interrupted attempts that quarantine
	long  timeout_ms;           // default per attempt; 0: none
	long  retry_backoff_ms;     // first retry delay (before jitter)
	long  retry_backoff_max_ms; // cap
	long  max_pending;          // all queues together; 0: no limit
	long  queue_max_pending;    // per queue; 0: no limit
	long  retention_ms;         // how long ended tasks are kept
	long  forever_backoff_ms;   // first restart delay of a forever task
	long  forever_backoff_max_ms;
	long  forever_reset_ms;    // a run this long resets the backoff
	long  crashloop_restarts;  // this many restarts...
	long  crashloop_window_ms; // ...within this window is a crash loop
	long  exec_kill_grace_ms;  // SIGTERM, then SIGKILL after this
	long  exec_output_max;     // bytes of stdout/stderr kept per stream
	config_list exec_allow;    // programs or directories exec may run
	config_list sqlite_dbs;    // NAME=PATH
	config_list plugins;       // shared objects to load at start
	config_list http_allow;    // hosts the http handler may call
	// Internal addresses (loopback, link-local) http tasks may reach.
	config_list   http_allow_internal;
	config_list   worker_handlers;     // names served by workers (a,b)
	long          worker_heartbeat_ms; // a held take is answered by then
	long          worker_timeout_ms;   // no take for this long: gone
	long          worker_cancel_grace_ms; // a cancelled job's grace
	char         *http_ca_file; // CA bundle for https (empty: system)
	char         *socket_mode;  // ipc socket permissions, octal text
	char         *socket_group; // ipc socket group; "": the broker's
	char         *admin_group;  // also admin over ipc; "": none
	char         *token_file;   // the tcp/tls request token; "": none
	char         *tls_cert;     // tls+tcp certificate chain; "": none
	char         *tls_key;      // its private key; "": none
	char         *tls_ca;       // client certificates' CA; "": none
	config_queue *queues;
	config_kv    *plugin_kv;
} config;

// config_plugin_value returns the value of key in [plugin section], or
// NULL.
const char *config_plugin_value(
    const config *cfg, const char *section, const char *key);

// config_queue_find returns the section for queue name, or NULL.
const config_queue *config_queue_find(const config *cfg, const char *name);

// config_init sets every field to its default. Strings are owned by cfg.
void config_init(config *cfg);

// config_fini frees cfg's strings.
void config_fini(config *cfg);

enum config_result {
	CONFIG_OK   = 0, // run the broker
	CONFIG_EXIT = 1, // --help or --version was printed: exit 0
	CONFIG_BAD  = 2, // a usage error was printed: exit 2
};

// config_parse applies the command line to cfg. Messages go to out (help,
// version) or err (usage errors).
int config_parse(config *cfg, int argc, char **argv, FILE *out, FILE *err);

// config_print writes the effective settings, one "name = value" a line.
void config_print(const config *cfg, FILE *out);

#endif // CONFIG_H
