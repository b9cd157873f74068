// log.c: see log.h.

#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int log_threshold = LOG_INFO;

static const char *log_names[] = { "error", "warn", "info", "debug" };

int
log_set_level(const char *name)
{
	for (int i = 0; i < 4; i++) {
		if (strcmp(name, log_names[i]) == 0) {
			log_threshold = i;
			return (0);
		}
	}
	return (-1);
}

void
log_write(int level, const char *fmt, ...)
{
	char           line[2048];
	struct timeval tv;
	struct tm      tm;
	size_t         n;
	int            rv;
	va_list        ap;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n  = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	rv = snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s ",
	    (long) (tv.tv_usec / 1000), log_names[level]);
	n += (size_t) rv;
	va_start(ap, fmt);
	rv = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	// A line longer than the buffer is cut, never split.
	if (rv < 0) {
		rv = 0;
	}
	n += (size_t) rv < sizeof(line) - n - 1 ? (size_t) rv
	                                        : sizeof(line) - n - 2;
	line[n++] = '\n';
	// One write per line keeps lines from different threads whole; a
	// failed write to stderr has nowhere to be reported.
	if (write(STDERR_FILENO, line, n) < 0) {
		return;
	}
}
