// output.c: see output.h.

#include "output.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json_mp.h"

void
errorf(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int
usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": ");
	if (cmd != NULL) {
		fprintf(stderr, "%s: ", cmd);
	}
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '" PROG " %s%s--help'.\n",
	    cmd != NULL ? cmd : "", cmd != NULL ? " " : "");
	return (EXIT_USAGE);
}

int
exit_for(int rv)
{
	switch (rv) {
	case TB_OK:
		return (EXIT_OK);
	case TB_EUNREACHABLE:
	case TB_ETIMEDOUT:
	case TB_ETLS:
		return (EXIT_UNREACH);
	default:
		return (EXIT_FAIL);
	}
}

int
fail(const cli *c, int rv, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s", tb_strerror(rv));
	if (rv == TB_EUNREACHABLE || rv == TB_ETLS) {
		fprintf(stderr, " at %s", c->url);
	}
	if (rv == TB_EUNAUTHORIZED) {
		fprintf(stderr,
		    " (a tcp:// or tls+tcp:// broker wants its "
		    "token: --token-file or $TASKBROKER_TOKEN_FILE; "
		    "admin requests over ipc need an admin user)");
	}
	fputc('\n', stderr);
	if (rv == TB_EINVAL) {
		// Arguments are checked here first, so what the library
		// refuses is most likely the URL (e.g. an unknown scheme).
		fprintf(stderr, PROG ": check the broker URL '%s'\n", c->url);
		return (EXIT_USAGE);
	}
	if (rv == TB_ETLS) {
		fprintf(stderr,
		    PROG ": check --tls-ca (the CA that signed the broker's "
		         "certificate), --tls-server-name, and whether the "
		         "broker wants a client certificate (--tls-cert, "
		         "--tls-key)\n");
	}
	return (exit_for(rv));
}

const char *
fmt_time(int64_t us, char *buf, size_t len, bool millis)
{
	struct tm tm;
	time_t    secs;
	size_t    n;

	if (us <= 0) {
		snprintf(buf, len, "-");
		return (buf);
	}
	secs = (time_t) (us / 1000000);
	if (gmtime_r(&secs, &tm) == NULL ||
	    (n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm)) == 0) {
		snprintf(buf, len, "%" PRId64, us);
		return (buf);
	}
	if (millis) {
		snprintf(buf + n, len - n, ".%03dZ", (int) (us / 1000 % 1000));
	} else {
		snprintf(buf + n, len - n, "Z");
	}
	return (buf);
}

json_t *
json_time(int64_t us)
{
	return (us == 0 ? json_null() : json_real((double) us / 1e6));
}

json_t *
json_bytes(const void *p, size_t n)
{
	json_t *j;

	if (p == NULL || n == 0) {
		return (json_null());
	}
	if (jmp_to_json(&j, p, n) == JMP_OK) {
		return (j);
	}
	return (jmp_base64_json(p, n));
}

json_t *
json_str_or_null(const char *s)
{
	json_t *j;

	if (s == NULL) {
		return (json_null());
	}
	// Broker text should be UTF-8; if not, do not lose it.
	if ((j = json_string(s)) == NULL) {
		j = json_bytes(NULL, 0);
	}
	return (j);
}

int
print_json(json_t *j)
{
	int rv = EXIT_OK;

	if (j == NULL ||
	    json_dumpf(j, stdout, JSON_COMPACT | JSON_ENCODE_ANY) != 0) {
		errorf("cannot write JSON output");
		rv = EXIT_FAIL;
	} else {
		fputc('\n', stdout);
	}
	json_decref(j);
	return (rv);
}

void
table_init(table *t, int ncols)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
}

void
table_cell(table *t, const char *fmt, ...)
{
	va_list ap;
	char   *s = NULL;

	if (t->ncells == t->cap) {
		size_t cap   = t->cap == 0 ? 64 : t->cap * 2;
		char **cells = realloc(t->cells, cap * sizeof(*cells));

		if (cells == NULL) {
			return;
		}
		t->cells = cells;
		t->cap   = cap;
	}
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0) {
		s = NULL;
	}
	va_end(ap);
	t->cells[t->ncells++] = s; // NULL prints as "?"
}

void
table_row(table *t, ...)
{
	va_list ap;

	va_start(ap, t);
	for (int i = 0; i < t->ncols; i++) {
		table_cell(t, "%s", va_arg(ap, const char *));
	}
	va_end(ap);
}

void
table_print(const table *t)
{
	int w[16] = { 0 };

	assert(t->ncols <= 16);
	for (size_t i = 0; i < t->ncells; i++) {
		const char *s = t->cells[i] != NULL ? t->cells[i] : "?";
		int         k = (int) strlen(s);

		if (k > w[i % (size_t) t->ncols]) {
			w[i % (size_t) t->ncols] = k;
		}
	}
	for (size_t i = 0; i < t->ncells; i++) {
		const char *s   = t->cells[i] != NULL ? t->cells[i] : "?";
		int         col = (int) (i % (size_t) t->ncols);

		if (col == t->ncols - 1 || i + 1 == t->ncells) {
			printf("%s\n", s);
		} else {
			printf("%-*s  ", w[col], s);
		}
	}
}

void
table_fini(table *t)
{
	for (size_t i = 0; i < t->ncells; i++) {
		free(t->cells[i]);
	}
	free(t->cells);
}
