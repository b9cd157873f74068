// log.h: the broker's log, one line per event, to stderr.
//
// Each line is "<ISO time> <level> <message>"; when stderr is systemd's
// journal ($JOURNAL_STREAM names it), "<N><level> <message>" instead, N
// the syslog priority as sd-daemon(3) says, so that journalctl -p err
// picks out the errors (the journal keeps its own time); with the json
// format, {"time":..,"level":..,"msg":..} (and "priority" in the
// journal). The macros check the level
// before formatting, so a debug line costs a comparison when it is off.
// Any thread: each line is written with one write(2), so lines from
// different threads do not interleave.
//
// Threads: any thread.
// Lock order: no locks (one write(2) per line).
// Ownership: nothing is kept; the message is formatted on the stack.

#ifndef LOG_H
#define LOG_H

enum log_level {
	LOG_ERR   = 0,
	LOG_WARN  = 1,
	LOG_INFO  = 2,
	LOG_DEBUG = 3,
};

enum log_format {
	LOG_FORMAT_TEXT = 0,
	LOG_FORMAT_JSON = 1,
};

// log_setup chooses the format and whether stderr is the journal (read
// from $JOURNAL_STREAM and stderr's device and inode). Call once at
// start, before any thread logs.
void log_setup(int format);

// log_threshold is the most verbose level written; set by log_set_level.
extern int log_threshold;

// log_set_level sets the threshold. Returns 0, or -1 for an unknown name.
// Names: "error", "warn", "info", "debug".
int log_set_level(const char *name);

// log_write formats and writes one line at level. Use the macros.
void log_write(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_at_(lvl, ...)                              \
	do {                                           \
		if ((lvl) <= log_threshold) {          \
			log_write((lvl), __VA_ARGS__); \
		}                                      \
	} while (0)

#define log_err(...) log_at_(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_at_(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_at_(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_at_(LOG_DEBUG, __VA_ARGS__)

#endif // LOG_H
