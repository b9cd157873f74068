// log.c: see log.h.

#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int log_threshold = LOG_INFO;

static const char *log_names[] = { "error", "warn", "info", "debug" };
// sd-daemon(3)'s priorities: SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG.
static const int log_prio[] = { 3, 4, 6, 7 };

static int  log_format  = LOG_FORMAT_TEXT;
static bool log_journal = false; // stderr is the journal's stream

void
log_setup(int format)
{
	const char        *js = getenv("JOURNAL_STREAM");
	struct stat        st;
	unsigned long long dev, ino;

	log_format = format;
	// JOURNAL_STREAM is "DEV:INO" of the stream systemd connected; it
	// is inherited, so it counts only while stderr is that stream.
	log_journal = js != NULL && sscanf(js, "%llu:%llu", &dev, &ino) == 2 &&
	    fstat(STDERR_FILENO, &st) == 0 &&
	    (unsigned long long) st.st_dev == dev &&
	    (unsigned long long) st.st_ino == ino;
}

// log_json_str appends s to line[*n..len) as a JSON string's contents
// (quotes and backslashes escaped, control bytes as \u00XX), cutting it
// to fit.
static void
log_json_str(char *line, size_t *n, size_t len, const char *s)
{
	for (; *s != '\0' && *n + 7 < len; s++) {
		unsigned char c = (unsigned char) *s;
		if (c == '"' || c == '\\') {
			line[(*n)++] = '\\';
			line[(*n)++] = (char) c;
		} else if (c < 0x20) {
			*n += (size_t) snprintf(
			    line + *n, len - *n, "\\u%04x", c);
		} else {
			line[(*n)++] = (char) c;
		}
	}
}

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
	char           msg[2048];
	char           line[2400];
	char           stamp[40];
	struct timeval tv;
	struct tm      tm;
	size_t         n = 0;
	va_list        ap;

	va_start(ap, fmt);
	(void) vsnprintf(msg, sizeof(msg), fmt, ap); // cut, never split
	va_end(ap);
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ",
	    (long) (tv.tv_usec / 1000));
	n = 0;
	if (log_journal) {
		n = (size_t) snprintf(
		    line, sizeof(line), "<%d>", log_prio[level]);
	}
	if (log_format == LOG_FORMAT_JSON) {
		n += (size_t) snprintf(line + n, sizeof(line) - n,
		    "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"", stamp,
		    log_names[level]);
		log_json_str(line, &n, sizeof(line) - 3, msg);
		line[n++] = '"';
		line[n++] = '}';
	} else {
		int rv = log_journal
		    ? snprintf(line + n, sizeof(line) - n, "%-5s %s",
		          log_names[level], msg)
		    : snprintf(line + n, sizeof(line) - n, "%s %-5s %s", stamp,
		          log_names[level], msg);
		n += rv > 0 && (size_t) rv < sizeof(line) - n - 1
		    ? (size_t) rv
		    : sizeof(line) - n - 2;
	}
	line[n++] = '\n';
	// One write per line keeps lines from different threads whole; a
	// failed write to stderr has nowhere to be reported.
	if (write(STDERR_FILENO, line, n) < 0) {
		return;
	}
}
