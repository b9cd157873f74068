// test_tbtime.c: unit tests of durations, absolute times and cron
// schedules (proto/tbtime.c).
//
// Nothing here reads a clock or sleeps: "now" is an argument, so each test
// fixes it. Expected instants come from timegm(), which is independent of
// the day arithmetic under test. Nothing is allocated, so there is no
// fixture.

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <time.h>

#include "tbtime.h"

#define US INT64_C(1000000)

// utc returns the Unix microseconds of a UTC calendar time.
static int64_t
utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm = { 0 };

	tm.tm_year = y - 1900;
	tm.tm_mon  = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min  = mi;
	tm.tm_sec  = s;
	return ((int64_t) timegm(&tm) * US);
}

static uint64_t
dur(const char *s)
{
	uint64_t ms = 12345;

	assert_int_equal(tbt_parse_duration(s, &ms), TB_OK);
	return (ms);
}

static void
assert_dur_rejected(const char *s)
{
	uint64_t ms = 777;

	if (tbt_parse_duration(s, &ms) != TB_EINVAL) {
		fail_msg("duration \"%s\" was accepted", s);
	}
	assert_int_equal(ms, 777); // untouched on error
}

static int64_t
ptime(const char *s, int64_t now)
{
	int64_t us = -1;

	assert_int_equal(tbt_parse_time(s, now, &us), TB_OK);
	return (us);
}

static void
assert_time_rejected(const char *s)
{
	int64_t us = 777;

	if (tbt_parse_time(s, 0, &us) != TB_EINVAL) {
		fail_msg("time \"%s\" was accepted", s);
	}
	assert_int_equal(us, 777);
}

static tbt_cron
cron(const char *expr)
{
	tbt_cron    c;
	const char *why = NULL;

	if (tbt_cron_parse(&c, expr, &why) != TB_OK) {
		fail_msg("cron \"%s\" rejected: %s", expr, why);
	}
	return (c);
}

static int64_t
next(const char *expr, int64_t after)
{
	tbt_cron c = cron(expr);

	return (tbt_cron_next(&c, after));
}

static void
assert_cron_same(const char *a, const char *b)
{
	tbt_cron ca = cron(a);
	tbt_cron cb = cron(b);

	assert_true(ca.minute == cb.minute);
	assert_int_equal(ca.hour, cb.hour);
	assert_int_equal(ca.mday, cb.mday);
	assert_int_equal(ca.month, cb.month);
	assert_int_equal(ca.wday, cb.wday);
	assert_int_equal(ca.mday_star, cb.mday_star);
	assert_int_equal(ca.wday_star, cb.wday_star);
}

// Durations.

static void
test_duration_parses_each_unit(void **state)
{
	assert_int_equal(dur("500ms"), 500);
	assert_int_equal(dur("30s"), 30000);
	assert_int_equal(dur("5m"), 300000);
	assert_int_equal(dur("2h"), 7200000);
	assert_int_equal(dur("1d"), 86400000);
	assert_int_equal(dur("0s"), 0);
}

static void
test_duration_plain_number_is_milliseconds(void **state)
{
	assert_int_equal(dur("1500"), 1500);
	assert_int_equal(dur("0"), 0);
	assert_int_equal(dur("007"), 7);
}

static void
test_duration_parses_compounds(void **state)
{
	assert_int_equal(dur("1h30m"), 5400000);
	assert_int_equal(dur("1m30s"), 90000);
	assert_int_equal(dur("1s500ms"), 1500);
	assert_int_equal(dur("1d2h3m4s5ms"),
	    86400000 + 2 * 3600000 + 3 * 60000 + 4 * 1000 + 5);
	assert_int_equal(dur("1d30m"), 86400000 + 1800000); // units may skip
}

static void
test_duration_rejects_malformed(void **state)
{
	static const char *bad[] = { "", "5x", "-1s", "+1s", "1.5s", "h", "ms",
		"1h30", "30m1h", "1m1m", "1s1s", " 1s", "1s ", "1h 30m", "1S",
		"5M", "1H", "1sec", "1mss", "0x10", "1_000" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_dur_rejected(bad[i]);
	}
	assert_int_equal(
	    tbt_parse_duration(NULL, &(uint64_t) { 0 }), TB_EINVAL);
	assert_int_equal(tbt_parse_duration("1s", NULL), TB_EINVAL);
}

static void
test_duration_rejects_overflow(void **state)
{
	assert_int_equal(dur("18446744073709551615"), UINT64_MAX);
	assert_int_equal(dur("18446744073709551615ms"), UINT64_MAX);
	assert_dur_rejected("18446744073709551616");
	assert_dur_rejected("99999999999999999999999s");
	assert_dur_rejected("18446744073709552s"); // overflows on * 1000
	assert_dur_rejected("213503982335d");
	assert_int_equal(dur("213503982334d"), 213503982334ull * 86400000);
	assert_dur_rejected("213503982334d23h"); // overflows on the sum
}

// Formatting.

static void
test_format_is_compact(void **state)
{
	char buf[TBT_DURATION_BUFSZ];

	assert_string_equal(tbt_format_duration(0, buf, sizeof(buf)), "0s");
	assert_string_equal(
	    tbt_format_duration(500, buf, sizeof(buf)), "500ms");
	assert_string_equal(
	    tbt_format_duration(5400000, buf, sizeof(buf)), "1h30m");
	assert_string_equal(
	    tbt_format_duration(1500, buf, sizeof(buf)), "1s500ms");
	assert_string_equal(
	    tbt_format_duration(86400000, buf, sizeof(buf)), "1d");
	assert_string_equal(
	    tbt_format_duration(90061001, buf, sizeof(buf)), "1d1h1m1s1ms");
	assert_ptr_equal(tbt_format_duration(1, buf, sizeof(buf)), buf);
}

static void
test_format_round_trips(void **state)
{
	static const uint64_t vals[] = { 0, 1, 999, 1000, 59999, 60000,
		3599999, 3600000, 86399999, 86400000, 90061001, 1234567890123,
		UINT64_MAX - 1, UINT64_MAX };
	char                  buf[TBT_DURATION_BUFSZ];

	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		uint64_t back = 0;

		tbt_format_duration(vals[i], buf, sizeof(buf));
		assert_int_equal(tbt_parse_duration(buf, &back), TB_OK);
		assert_true(back == vals[i]);
	}
}

static void
test_format_longest_fits_bufsz(void **state)
{
	char buf[TBT_DURATION_BUFSZ];

	tbt_format_duration(UINT64_MAX, buf, sizeof(buf));
	assert_string_equal(buf, "213503982334d14h25m51s615ms");
	assert_true(strlen(buf) < TBT_DURATION_BUFSZ);
}

static void
test_format_truncates_small_buffer(void **state)
{
	char buf[6];

	memset(buf, 'x', sizeof(buf));
	tbt_format_duration(90061001, buf, sizeof(buf)); // "1d1h1m1s1ms"
	assert_true(strlen(buf) < sizeof(buf));
	assert_memory_equal(buf, "1d1h1", strlen(buf));
	// n == 0 writes nothing at all.
	buf[0] = 'q';
	tbt_format_duration(5, buf, 0);
	assert_int_equal(buf[0], 'q');
}

// Absolute times.

static void
test_time_parses_rfc3339_utc(void **state)
{
	int64_t want = utc(2026, 11, 21, 10, 0, 0);

	assert_true(ptime("2026-11-21T10:00:00Z", 0) == want);
	assert_true(ptime("2026-11-21t10:00:00z", 0) == want);
	assert_true(ptime("2026-11-21T10:00Z", 0) == want);
}

static void
test_time_parses_fraction(void **state)
{
	int64_t base = utc(2026, 11, 21, 10, 0, 0);

	assert_true(ptime("2026-11-21T10:00:00.250Z", 0) == base + 250000);
	assert_true(ptime("2026-11-21T10:00:00.5Z", 0) == base + 500000);
	assert_true(ptime("2026-11-21T10:00:00.000001Z", 0) == base + 1);
	// Nanoseconds are cut to microseconds, never rounded up.
	assert_true(
	    ptime("2026-11-21T10:00:00.123456789Z", 0) == base + 123456);
}

static void
test_time_applies_zone_offset(void **state)
{
	assert_true(ptime("2026-11-21T10:00:00+01:00", 0) ==
	    utc(2026, 11, 21, 9, 0, 0));
	assert_true(ptime("2026-11-21T10:00:00-05:30", 0) ==
	    utc(2026, 11, 21, 15, 30, 0));
	assert_true(ptime("2026-11-21T10:00:00-00:00", 0) ==
	    utc(2026, 11, 21, 10, 0, 0));
	// An offset can move the instant into the previous day.
	assert_true(ptime("2026-01-01T00:30:00+01:00", 0) ==
	    utc(2025, 12, 31, 23, 30, 0));
}

static void
test_time_without_zone_is_utc(void **state)
{
	assert_true(
	    ptime("2026-11-21 10:00:00", 0) == utc(2026, 11, 21, 10, 0, 0));
	assert_true(
	    ptime("2026-11-21T10:00:00", 0) == utc(2026, 11, 21, 10, 0, 0));
	assert_true(
	    ptime("2026-11-21 10:00", 0) == utc(2026, 11, 21, 10, 0, 0));
}

static void
test_time_parses_unix_seconds(void **state)
{
	assert_true(ptime("@1795250532", 0) == 1795250532 * US);
	assert_true(ptime("@1795250532.5", 0) == 1795250532 * US + 500000);
	assert_true(ptime("@0", 0) == 0);
	assert_true(ptime("@1795250532", 0) == utc(2026, 11, 21, 8, 42, 12));
}

static void
test_time_relative_adds_to_now(void **state)
{
	int64_t now = utc(2026, 11, 21, 10, 0, 0) + 123;

	assert_true(ptime("+30s", now) == now + 30 * US);
	assert_true(ptime("+1h30m", now) == now + 5400 * US);
	assert_true(ptime("+0s", now) == now);
	assert_true(ptime("+250", now) == now + 250000); // plain ms
}

static void
test_time_handles_leap_days(void **state)
{
	assert_true(
	    ptime("2028-02-29T12:00:00Z", 0) == utc(2028, 2, 29, 12, 0, 0));
	assert_true(
	    ptime("2000-02-29T00:00:00Z", 0) == utc(2000, 2, 29, 0, 0, 0));
	assert_time_rejected("2026-02-29T00:00:00Z");
	assert_time_rejected("2100-02-29T00:00:00Z");
}

static void
test_time_rejects_garbage(void **state)
{
	static const char *bad[] = { "", "tomorrow", "now", "2026-11-21",
		"2026-11-21T10", "2026-11-21T10:00:00ZZ",
		"2026-11-21T10:00:00 ", " 2026-11-21T10:00:00Z",
		"2026-11-21X10:00:00Z", "26-11-21T10:00:00Z",
		"2026-1-21T10:00:00Z", "2026-11-21T10:00:00.Z",
		"2026-11-21T10:00:00.1234567890Z", "2026-11-21T10:00.5Z",
		"2026-11-21T10:00:00+0100", "2026-11-21T10:00:00+01",
		"2026-11-21T10:00:00 UTC", "@", "@12.", "@-5", "@+5", "@1.5s",
		"@abc", "+", "+5x", "-30s", "+-5s", "+1.5s" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_time_rejected(bad[i]);
	}
	assert_int_equal(tbt_parse_time(NULL, 0, &(int64_t) { 0 }), TB_EINVAL);
	assert_int_equal(tbt_parse_time("@1", 0, NULL), TB_EINVAL);
}

static void
test_time_rejects_out_of_range_fields(void **state)
{
	static const char *bad[] = { "2026-00-21T10:00:00Z",
		"2026-13-21T10:00:00Z", "2026-11-00T10:00:00Z",
		"2026-11-31T10:00:00Z", "2026-11-21T24:00:00Z",
		"2026-11-21T10:60:00Z", "2026-11-21T10:00:60Z",
		"2026-11-21T10:00:00+24:00", "2026-11-21T10:00:00+01:60" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_time_rejected(bad[i]);
	}
}

static void
test_time_rejects_overflow(void **state)
{
	int64_t us = 777;

	assert_time_rejected("@9223372036855");        // * 10^6 > INT64_MAX
	assert_time_rejected("@9223372036854.775808"); // one µs too many
	assert_true(ptime("@9223372036854.775807", 0) == INT64_MAX);
	assert_time_rejected("@99999999999999999999"); // > UINT64_MAX
	assert_true(ptime("@9223372036854", 0) == 9223372036854 * US);
	assert_int_equal(
	    tbt_parse_time("+1s", INT64_MAX - 999999, &us), TB_EINVAL);
	assert_int_equal(
	    tbt_parse_time("+18446744073709551615", 0, &us), TB_EINVAL);
	assert_int_equal(us, 777);
}

// Cron parsing.

static void
test_cron_parses_lists_ranges_steps(void **state)
{
	tbt_cron c = cron("0,15,30-32 */6 1-31/10 * 1-5");

	assert_true(c.minute ==
	    ((1ull << 0) | (1ull << 15) | (1ull << 30) | (1ull << 31) |
	        (1ull << 32)));
	assert_int_equal(
	    c.hour, (1u << 0) | (1u << 6) | (1u << 12) | (1u << 18));
	assert_int_equal(
	    c.mday, (1u << 1) | (1u << 11) | (1u << 21) | (1u << 31));
	assert_int_equal(c.month, 0x1ffe);
	assert_int_equal(c.wday, 0x3e);
	assert_true(c.mday_star == false);
	assert_true(c.wday_star == false);
}

static void
test_cron_single_value_step_runs_to_max(void **state)
{
	tbt_cron c = cron("50/4 * * * *");

	assert_true(c.minute == ((1ull << 50) | (1ull << 54) | (1ull << 58)));
}

static void
test_cron_star_flags_follow_vixie(void **state)
{
	tbt_cron c = cron("* * * * *");

	assert_true(c.mday_star && c.wday_star);
	c = cron("* * */2 * 1");
	assert_true(c.mday_star); // "*/2" begins with '*'
	assert_false(c.wday_star);
}

static void
test_cron_seven_is_sunday(void **state)
{
	tbt_cron c = cron("0 0 * * 7");

	assert_int_equal(c.wday, 1);
	assert_cron_same("0 0 * * 7", "0 0 * * 0");
	assert_cron_same("0 0 * * 7", "0 0 * * SUN");
	assert_cron_same("0 0 * * 5-7", "0 0 * * 0,5,6");
	assert_true(next("0 0 * * 7", utc(2026, 11, 18, 12, 0, 0)) ==
	    utc(2026, 11, 22, 0, 0, 0)); // Wednesday -> Sunday
}

static void
test_cron_accepts_names_any_case(void **state)
{
	assert_cron_same("0 0 1 jan,Jul *", "0 0 1 1,7 *");
	assert_cron_same("0 0 1 MAR-may *", "0 0 1 3-5 *");
	assert_cron_same("0 9 * * MON-FRI", "0 9 * * 1-5");
	assert_cron_same("0 9 * * sat,Sun", "0 9 * * 0,6");
	assert_true(next("0 0 1 jan,jul *", utc(2026, 2, 10, 0, 0, 0)) ==
	    utc(2026, 7, 1, 0, 0, 0));
}

static void
test_cron_macros_expand(void **state)
{
	assert_cron_same("@hourly", "0 * * * *");
	assert_cron_same("@daily", "0 0 * * *");
	assert_cron_same("@midnight", "0 0 * * *");
	assert_cron_same("@weekly", "0 0 * * 0");
	assert_cron_same("@monthly", "0 0 1 * *");
	assert_cron_same("@yearly", "0 0 1 1 *");
	assert_cron_same("@annually", "0 0 1 1 *");
	assert_cron_same("  @DAILY  ", "0 0 * * *");
}

static void
test_cron_macros_next(void **state)
{
	int64_t t = utc(2026, 11, 18, 10, 3, 20); // a Wednesday

	assert_true(next("@hourly", t) == utc(2026, 11, 18, 11, 0, 0));
	assert_true(next("@daily", t) == utc(2026, 11, 19, 0, 0, 0));
	assert_true(next("@weekly", t) == utc(2026, 11, 22, 0, 0, 0));
	assert_true(next("@monthly", t) == utc(2026, 12, 1, 0, 0, 0));
	assert_true(next("@yearly", t) == utc(2027, 1, 1, 0, 0, 0));
}

static void
test_cron_tolerates_extra_blanks(void **state)
{
	assert_cron_same(" \t0  9\t* *   1 ", "0 9 * * 1");
}

static void
test_cron_rejects_with_reason(void **state)
{
	static const char *bad[] = { "60 * * * *", "* * *", "*/0 * * * *",
		"5-3 * * * *", "garbage", "", "   ", "* * * * * *",
		"* 24 * * *", "* * 0 * *", "* * 32 * *", "* * * 0 *",
		"* * * 13 *", "* * * * 8", "* * * FOO *", "MON * * * *",
		"* * * * MONDAY", "1,,2 * * * *", "1, * * * *", ",1 * * * *",
		"1- * * * *", "-1 * * * *", "*/ * * * *", "*/x * * * *",
		"*/60 * * * *", "** * * * *", "1-2-3 * * * *", "1/2/3 * * * *",
		"* * * * FRI-MON", "@reboot", "@every", "@daily *",
		"99999999999999999999 * * * *", "*/99999999999 * * * *" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tbt_cron    c;
		const char *why = NULL;

		if (tbt_cron_parse(&c, bad[i], &why) != TB_EINVAL) {
			fail_msg("cron \"%s\" was accepted", bad[i]);
		}
		if (why == NULL || why[0] == '\0') {
			fail_msg(
			    "cron \"%s\" rejected without a reason", bad[i]);
		}
	}
}

static void
test_cron_reasons_name_the_problem(void **state)
{
	tbt_cron    c;
	const char *why;

	assert_int_equal(tbt_cron_parse(&c, "60 * * * *", &why), TB_EINVAL);
	assert_string_equal(why, "value out of range");
	assert_int_equal(tbt_cron_parse(&c, "* * *", &why), TB_EINVAL);
	assert_string_equal(why, "expected 5 fields");
	assert_int_equal(tbt_cron_parse(&c, "*/0 * * * *", &why), TB_EINVAL);
	assert_string_equal(why, "step must be 1 or more");
	assert_int_equal(tbt_cron_parse(&c, "5-3 * * * *", &why), TB_EINVAL);
	assert_string_equal(why, "range runs backwards");
	assert_int_equal(tbt_cron_parse(&c, "@reboot", &why), TB_EINVAL);
	assert_string_equal(why, "unknown macro");
}

static void
test_cron_error_leaves_output_untouched(void **state)
{
	tbt_cron c      = cron("1 2 3 4 5");
	tbt_cron before = c;

	assert_int_equal(tbt_cron_parse(&c, "1 2 3 4 99", NULL), TB_EINVAL);
	assert_memory_equal(&c, &before, sizeof(c));
	assert_int_equal(tbt_cron_parse(NULL, "* * * * *", NULL), TB_EINVAL);
	assert_int_equal(tbt_cron_parse(&c, NULL, NULL), TB_EINVAL);
}

// Cron evaluation.

static void
test_cron_every_minute_is_next_whole_minute(void **state)
{
	assert_true(next("* * * * *", utc(2026, 11, 18, 10, 3, 20) + 5) ==
	    utc(2026, 11, 18, 10, 4, 0));
	assert_true(next("* * * * *", utc(2026, 12, 31, 23, 59, 59)) ==
	    utc(2027, 1, 1, 0, 0, 0));
}

static void
test_cron_is_strictly_after(void **state)
{
	int64_t mon9 = utc(2026, 11, 23, 9, 0, 0);

	assert_true(next("* * * * *", utc(2026, 11, 18, 10, 4, 0)) ==
	    utc(2026, 11, 18, 10, 5, 0));
	assert_true(
	    next("0 9 * * MON-FRI", mon9) == utc(2026, 11, 24, 9, 0, 0));
	// One microsecond earlier, the match itself is next.
	assert_true(next("0 9 * * MON-FRI", mon9 - 1) == mon9);
}

static void
test_cron_step_five(void **state)
{
	assert_true(next("*/5 * * * *", utc(2026, 11, 18, 10, 3, 20)) ==
	    utc(2026, 11, 18, 10, 5, 0));
	assert_true(next("*/5 * * * *", utc(2026, 11, 18, 10, 57, 0)) ==
	    utc(2026, 11, 18, 11, 0, 0));
}

static void
test_cron_weekdays_skip_weekend(void **state)
{
	// 2026-11-20 is a Friday.
	assert_true(next("0 9 * * MON-FRI", utc(2026, 11, 20, 10, 0, 0)) ==
	    utc(2026, 11, 23, 9, 0, 0));
}

static void
test_cron_crosses_month_and_year_end(void **state)
{
	assert_true(next("30 2 1 * *", utc(2026, 1, 31, 12, 0, 0)) ==
	    utc(2026, 2, 1, 2, 30, 0));
	assert_true(next("30 2 1 * *", utc(2026, 12, 1, 2, 30, 0)) ==
	    utc(2027, 1, 1, 2, 30, 0));
}

static void
test_cron_day_31_skips_short_months(void **state)
{
	assert_true(next("0 0 31 * *", utc(2026, 3, 31, 0, 0, 0)) ==
	    utc(2026, 5, 31, 0, 0, 0));
}

static void
test_cron_feb_29_waits_for_leap_year(void **state)
{
	assert_true(next("0 0 29 2 *", utc(2026, 3, 1, 0, 0, 0)) ==
	    utc(2028, 2, 29, 0, 0, 0));
}

static void
test_cron_impossible_date_is_never(void **state)
{
	assert_true(next("0 0 30 2 *", utc(2026, 1, 1, 0, 0, 0)) == INT64_MAX);
	assert_true(next("0 0 31 4,6,9,11 *", 0) == INT64_MAX);
}

static void
test_cron_dom_or_dow_when_both_restricted(void **state)
{
	// May 2026: the 8th and 15th are Fridays, the 13th a Wednesday.
	assert_true(next("0 0 13 * FRI", utc(2026, 5, 2, 0, 0, 0)) ==
	    utc(2026, 5, 8, 0, 0, 0));
	assert_true(next("0 0 13 * FRI", utc(2026, 5, 8, 0, 0, 0)) ==
	    utc(2026, 5, 13, 0, 0, 0));
	assert_true(next("0 0 13 * FRI", utc(2026, 5, 13, 0, 0, 0)) ==
	    utc(2026, 5, 15, 0, 0, 0));
}

static void
test_cron_dom_and_dow_when_one_is_star(void **state)
{
	// "*/2" counts as '*', so a day must be odd AND a Friday: May 8 is
	// even, so May 1 (odd Friday) is followed by May 15.
	assert_true(next("0 0 */2 * FRI", utc(2026, 5, 1, 0, 0, 0)) ==
	    utc(2026, 5, 15, 0, 0, 0));
}

static void
test_cron_before_1970(void **state)
{
	assert_true(next("0 0 1 1 *", utc(1969, 6, 1, 0, 0, 0)) == 0);
	assert_true(next("* * * * *", -1) == 0);
	assert_true(next("* * * * *", -60 * US) == -60 * US + 60 * US);
}

static void
test_cron_end_of_time_does_not_overflow(void **state)
{
	assert_true(next("* * * * *", INT64_MAX) == INT64_MAX);
	assert_true(next("* * * * *", INT64_MAX - 120 * US) != INT64_MAX);
	assert_true(next("0 0 1 1 *", INT64_MIN) != INT64_MAX);
}

static void
test_cron_empty_schedule_is_never(void **state)
{
	tbt_cron c;

	memset(&c, 0, sizeof(c));
	assert_true(tbt_cron_next(&c, 0) == INT64_MAX);
	assert_true(tbt_cron_next(NULL, 0) == INT64_MAX);
}

// brute_matches decides whether the minute at us matches c using gmtime_r,
// independently of tbtime.c's calendar code.
static bool
brute_matches(const tbt_cron *c, int64_t us)
{
	time_t    secs = (time_t) (us / US);
	struct tm tm;
	bool      dom, dow, day;

	gmtime_r(&secs, &tm);
	dom = (c->mday >> tm.tm_mday) & 1;
	dow = (c->wday >> tm.tm_wday) & 1;
	day = (c->mday_star || c->wday_star) ? (dom && dow) : (dom || dow);
	return (((c->minute >> tm.tm_min) & 1) &&
	    ((c->hour >> tm.tm_hour) & 1) &&
	    ((c->month >> (tm.tm_mon + 1)) & 1) && day);
}

static void
test_cron_next_matches_brute_force(void **state)
{
	// Compare the field-skipping search with a plain minute-by-minute
	// walk over a few weeks, for schedules that exercise each skip.
	static const char *exprs[] = { "*/7 3-5 * * *", "0 0 13 * FRI",
		"15 10 * 2,3 1", "59 23 28-31 * *", "0 */5 */3 * 2-4" };
	int64_t            t0      = utc(2027, 2, 20, 0, 0, 0);

	for (size_t i = 0; i < sizeof(exprs) / sizeof(exprs[0]); i++) {
		tbt_cron c     = cron(exprs[i]);
		int64_t  after = t0;

		for (int k = 0; k < 40; k++) {
			int64_t got = tbt_cron_next(&c, after);
			int64_t m   = (after / (60 * US) + 1) * 60 * US;

			while (!brute_matches(&c, m)) {
				m += 60 * US;
			}
			if (got != m) {
				fail_msg("%s after %lld: got %lld want %lld",
				    exprs[i], (long long) after,
				    (long long) got, (long long) m);
			}
			after = got;
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration_parses_each_unit),
		cmocka_unit_test(test_duration_plain_number_is_milliseconds),
		cmocka_unit_test(test_duration_parses_compounds),
		cmocka_unit_test(test_duration_rejects_malformed),
		cmocka_unit_test(test_duration_rejects_overflow),
		cmocka_unit_test(test_format_is_compact),
		cmocka_unit_test(test_format_round_trips),
		cmocka_unit_test(test_format_longest_fits_bufsz),
		cmocka_unit_test(test_format_truncates_small_buffer),
		cmocka_unit_test(test_time_parses_rfc3339_utc),
		cmocka_unit_test(test_time_parses_fraction),
		cmocka_unit_test(test_time_applies_zone_offset),
		cmocka_unit_test(test_time_without_zone_is_utc),
		cmocka_unit_test(test_time_parses_unix_seconds),
		cmocka_unit_test(test_time_relative_adds_to_now),
		cmocka_unit_test(test_time_handles_leap_days),
		cmocka_unit_test(test_time_rejects_garbage),
		cmocka_unit_test(test_time_rejects_out_of_range_fields),
		cmocka_unit_test(test_time_rejects_overflow),
		cmocka_unit_test(test_cron_parses_lists_ranges_steps),
		cmocka_unit_test(test_cron_single_value_step_runs_to_max),
		cmocka_unit_test(test_cron_star_flags_follow_vixie),
		cmocka_unit_test(test_cron_seven_is_sunday),
		cmocka_unit_test(test_cron_accepts_names_any_case),
		cmocka_unit_test(test_cron_macros_expand),
		cmocka_unit_test(test_cron_macros_next),
		cmocka_unit_test(test_cron_tolerates_extra_blanks),
		cmocka_unit_test(test_cron_rejects_with_reason),
		cmocka_unit_test(test_cron_reasons_name_the_problem),
		cmocka_unit_test(test_cron_error_leaves_output_untouched),
		cmocka_unit_test(test_cron_every_minute_is_next_whole_minute),
		cmocka_unit_test(test_cron_is_strictly_after),
		cmocka_unit_test(test_cron_step_five),
		cmocka_unit_test(test_cron_weekdays_skip_weekend),
		cmocka_unit_test(test_cron_crosses_month_and_year_end),
		cmocka_unit_test(test_cron_day_31_skips_short_months),
		cmocka_unit_test(test_cron_feb_29_waits_for_leap_year),
		cmocka_unit_test(test_cron_impossible_date_is_never),
		cmocka_unit_test(test_cron_dom_or_dow_when_both_restricted),
		cmocka_unit_test(test_cron_dom_and_dow_when_one_is_star),
		cmocka_unit_test(test_cron_before_1970),
		cmocka_unit_test(test_cron_end_of_time_does_not_overflow),
		cmocka_unit_test(test_cron_empty_schedule_is_never),
		cmocka_unit_test(test_cron_next_matches_brute_force),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
