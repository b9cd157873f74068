// config.h: the broker's settings.
//
// One table (config.c) names every setting with its type, default, range
// and help; it drives command-line parsing, validation and --help, so a new
// setting is one row.

#ifndef CONFIG_H
#define CONFIG_H

#include <stdio.h>

typedef struct config {
	char *data_dir;
	char *listen;
	char *events;
	int   workers;
	int   shutdown_timeout; // seconds
	int   durability;       // enum store_durability
	int   max_running;
	int   log_level;
} config;

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
