// tbtime.h: durations, absolute times and cron schedules, for the broker
// and the CLI. Pure functions: no I/O, no clock reads, no locale, no time
// zone database. Whoever needs "now" passes it in, so every function here
// is safe from any thread and gives the same answer in every test.
//
// All calendar arithmetic is in UTC. Cron schedules are evaluated in UTC
// too: "0 9 * * *" fires at 09:00 UTC whatever the host's TZ says, so a
// broker moved between zones, or living through a DST change, keeps the
// same schedule.
//
// Threads: any thread; the clock is read only where a function says so.
// Lock order: no locks.
// Ownership: a parsed cron is a plain value the caller owns; nothing is
// allocated.

#ifndef TBTIME_H
#define TBTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <taskbroker/defs.h>

// TBT_DURATION_BUFSZ is a buffer size that tbt_format_duration never
// truncates: the longest output is "213503982334d14h25m51s615ms" (27
// bytes and a NUL, for UINT64_MAX).
#define TBT_DURATION_BUFSZ 32

// tbt_parse_duration parses s into milliseconds at *msp. A duration is a
// sequence of <digits><unit> with units "d", "h", "m", "s" and "ms", in
// that order, each at most once, with no spaces: "500ms", "30s", "1h30m",
// "1m30s", "1d2h3m4s5ms". A plain integer ("1500") means milliseconds.
// Units are lowercase only, so "5M" is never read as minutes or months.
// Rejected, with TB_EINVAL and *msp unchanged: NULL or empty s, a sign,
// fractions ("1.5s"; write "1s500ms"), unknown units, units out of order
// or repeated ("30m1h", "1m1m"), a trailing bare number ("1h30"), and a
// total over UINT64_MAX ms. Returns TB_OK on success.
int tbt_parse_duration(const char *s, uint64_t *msp);

// tbt_format_duration writes ms into buf (n bytes) in the form that
// tbt_parse_duration reads back to the same value, largest units first
// and zero units left out: "1h30m", "1s500ms", "2d"; zero is "0s". Output
// that does not fit is cut short but still NUL-terminated (when n > 0);
// TBT_DURATION_BUFSZ always fits. Returns buf.
const char *tbt_format_duration(uint64_t ms, char *buf, size_t n);

// tbt_parse_time parses an absolute time (for --run-at) into Unix
// microseconds at *usp. Accepted forms:
//   "2026-11-21T10:00:00Z"        RFC 3339; 'T' may be 't' or a space,
//   "2026-11-21 10:00:00.250Z"    'Z' may be 'z'; seconds may be left
//   "2026-11-21T10:00:00+01:00"   out ("2026-11-21 10:00"); a fraction of
//   "2026-11-21 10:00:00"         1-9 digits is cut to microseconds; the
//                                 zone is Z or +HH:MM / -HH:MM, and UTC
//                                 when there is none.
//   "@1795250532", "@1795250532.5"  Unix seconds, fraction as above.
//   "+30s", "+1h30m"              now_us plus a tbt_parse_duration value.
// Fields are range checked (month 1-12, day within the month, hour 0-23,
// minute and second 0-59; leap seconds are not accepted, as Unix time has
// none). Anything else, including surrounding spaces, a negative "@" or
// "-30s", and results that overflow int64, gives TB_EINVAL with *usp
// unchanged. Returns TB_OK on success.
int tbt_parse_time(const char *s, int64_t now_us, int64_t *usp);

// tbt_cron is a parsed cron schedule: one bit set per field. Bit i of
// minute (0-59), hour (0-23), mday (1-31) and month (1-12) means value i
// is allowed; wday bits are 0-6 with Sunday = 0 (a 7 in the expression is
// stored as bit 0). mday_star and wday_star record that the field began
// with '*', which decides how the two day fields combine (tbt_cron_next).
// A tbt_cron is plain data: copy it, compare it, keep it anywhere.
typedef struct tbt_cron {
	uint64_t minute;
	uint32_t hour;
	uint32_t mday;
	uint16_t month;
	uint8_t  wday;
	bool     mday_star, wday_star;
} tbt_cron;

// tbt_cron_parse parses a standard five-field expression
// "minute hour day-of-month month day-of-week" into *c. Fields are
// separated by spaces or tabs; each is a comma list of items, an item
// being "*", "N", "N-M", "*/S", "N-M/S" or "N/S" (N to the field's maximum,
// step S, as in cronie). Ranges: minute 0-59, hour 0-23, day 1-31,
// month 1-12 or JAN-DEC, day-of-week 0-7 or SUN-SAT (0 and 7 are Sunday);
// names are case-insensitive and may end ranges ("MON-FRI"). A range must
// not run backwards and a step must be at least 1. The macros @yearly,
// @annually, @monthly, @weekly, @daily, @midnight and @hourly stand for
// their usual expansions (@weekly is Sunday 00:00); @reboot is rejected.
// On error returns TB_EINVAL, leaves *c unchanged and, if whyp is not
// NULL, sets *whyp to a short static reason. Returns TB_OK on success.
int tbt_cron_parse(tbt_cron *c, const char *expr, const char **whyp);

// tbt_cron_next returns the first whole minute strictly after after_us
// (Unix µs, UTC) that c matches, in Unix µs. A minute matches when its
// minute, hour and month bits are set and its day matches. The day rule
// is Vixie cron's: if day-of-month or day-of-week began with '*', a day
// must match both fields; otherwise (both restricted) either one is
// enough, so "0 0 13 * FRI" fires on every 13th and on every Friday. Note
// that "*/2" counts as starting with '*', exactly as in Vixie cron.
// Returns INT64_MAX if nothing matches within five years (5 * 366 days)
// of after_us, as for "0 0 30 2 *"; that includes "0 0 29 2 *" across
// 2100, whose Feb 29 gap is eight years. The search skips whole months,
// days and hours that cannot match, so it costs a few thousand steps at
// most.
int64_t tbt_cron_next(const tbt_cron *c, int64_t after_us);

#endif // TBTIME_H
