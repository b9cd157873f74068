// output.h: how the taskbroker tool prints: messages on stderr and the exit
// status that goes with them, times, JSON on stdout (one value per line)
// and text tables whose columns fit their cells.
//
// Threads: the tool has one thread.

#ifndef TB_CLI_OUTPUT_H
#define TB_CLI_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cli.h"

// errorf prints "taskbroker: MESSAGE" and a newline on stderr.
void errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// usage_error prints a usage error for cmd (NULL: the global options), with
// a pointer to its --help, and returns EXIT_USAGE.
int usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// exit_for maps a library error to the tool's exit status.
int exit_for(int rv);

// fail reports a failed library call as "taskbroker: WHAT: message" (with
// the broker URL when it was unreachable) and returns the exit status for
// it: TB_EINVAL, which after the tool's own checks means a bad URL, is a
// usage error.
int fail(const cli *c, int rv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// fmt_time writes a Unix µs time as UTC ISO 8601 into buf (with
// milliseconds if millis), or "-" for 0, and returns buf.
const char *fmt_time(int64_t us, char *buf, size_t len, bool millis);

// json_time returns a Unix µs time as JSON seconds with a fraction; null
// for 0. The caller owns the new reference (NULL when out of memory), as
// for every json_ function here.
json_t *json_time(int64_t us);

// json_bytes converts msgpack bytes (a result) to JSON; null if there are
// none. Bytes that do not convert are given as their base64 text.
json_t *json_bytes(const void *p, size_t n);

// json_str_or_null returns s as a JSON string, null for NULL (and for text
// that is not UTF-8).
json_t *json_str_or_null(const char *s);

// print_json prints j on one line of stdout and drops the reference.
// Returns EXIT_FAIL if j is NULL (out of memory) or stdout fails, else
// EXIT_OK.
int print_json(json_t *j);

// table collects the cells of a text table, row by row, so that columns
// can be as wide as their widest cell. Out of memory only loses cells.
typedef struct table {
	int    ncols;
	size_t ncells, cap;
	char **cells;
} table;

// table_init makes t an empty table of ncols columns (at most 16).
void table_init(table *t, int ncols);

// table_cell adds the next cell, formatted; rows fill left to right.
void table_cell(table *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// table_row adds a whole row of ncols plain strings (a header).
void table_row(table *t, ...);

// table_print prints the table on stdout, columns two spaces apart; a cell
// lost to a lack of memory prints as "?".
void table_print(const table *t);

// table_fini frees the cells of t.
void table_fini(table *t);

#endif // TB_CLI_OUTPUT_H
