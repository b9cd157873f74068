// tbtime.c: durations, absolute times and cron schedules (see tbtime.h).
//
// Calendar conversions use Howard Hinnant's days_from_civil and
// civil_from_days, which are exact for the proleptic Gregorian calendar
// over the whole int64 range we need, rather than timegm/gmtime_r: they
// need no TZ state, cannot fail, and let tbt_cron_next walk the calendar
// field by field without converting back and forth.

#include <stdio.h>
#include <string.h>

#include "tbtime.h"

#define MS_PER_S 1000ull
#define MS_PER_M (60ull * MS_PER_S)
#define MS_PER_H (60ull * MS_PER_M)
#define MS_PER_D (24ull * MS_PER_H)
#define US_PER_S INT64_C(1000000)
#define US_PER_MIN (60 * US_PER_S)
#define US_PER_DAY (1440 * US_PER_MIN)
#define MIN_PER_DAY 1440

// Five years, counted generously so that a leap day inside the window
// never shortens it.
#define CRON_HORIZON_DAYS (5 * 366)

// Calendar helpers.

static bool
is_leap(int64_t y)
{
	return ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0);
}

static int
days_in_month(int64_t y, int m)
{
	static const int dim[13] = { 0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
		30, 31 };

	if (m == 2 && is_leap(y)) {
		return (29);
	}
	return (dim[m]);
}

// days_from_civil returns the days from 1970-01-01 to y-m-d.
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (era * 146097 + doe - 719468);
}

// civil_from_days is the inverse of days_from_civil.
static void
civil_from_days(int64_t z, int64_t *yp, int *mp, int *dp)
{
	int64_t era, doe, yoe, doy, mp5;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp5 = (5 * doy + 2) / 153;
	*dp = (int) (doy - (153 * mp5 + 2) / 5 + 1);
	*mp = (int) (mp5 < 10 ? mp5 + 3 : mp5 - 9);
	*yp = yoe + era * 400 + (*mp <= 2);
}

// floor_div rounds towards minus infinity, so that a time before 1970
// still lands in the minute (and day) that contains it.
static int64_t
floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	if ((a % b != 0) && ((a < 0) != (b < 0))) {
		q--;
	}
	return (q);
}

// Durations.

// parse_digits reads one or more decimal digits at *sp into *vp, failing
// on overflow of uint64; *sp is left after the digits.
static int
parse_digits(const char **sp, uint64_t *vp)
{
	const char *s = *sp;
	uint64_t    v = 0;

	if (*s < '0' || *s > '9') {
		return (TB_EINVAL);
	}
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned dig = (unsigned) (*s - '0');

		if (v > (UINT64_MAX - dig) / 10) {
			return (TB_EINVAL);
		}
		v = v * 10 + dig;
	}
	*sp = s;
	*vp = v;
	return (TB_OK);
}

// The units, largest first; a compound must use them in this order. "ms"
// comes before "m" in the match below, not here, because order here is the
// order of size.
static const struct {
	const char *name;
	uint64_t    ms;
} dur_units[] = {
	{ "d", MS_PER_D },
	{ "h", MS_PER_H },
	{ "m", MS_PER_M },
	{ "s", MS_PER_S },
	{ "ms", 1 },
};
#define DUR_NUNITS (sizeof(dur_units) / sizeof(dur_units[0]))

// dur_unit returns the index in dur_units of the unit at *sp, advancing
// *sp past it, or -1.
static int
dur_unit(const char **sp)
{
	const char *s = *sp;

	if (s[0] == 'm' && s[1] == 's') {
		*sp = s + 2;
		return (4);
	}
	switch (s[0]) {
	case 'd':
		*sp = s + 1;
		return (0);
	case 'h':
		*sp = s + 1;
		return (1);
	case 'm':
		*sp = s + 1;
		return (2);
	case 's':
		*sp = s + 1;
		return (3);
	default:
		return (-1);
	}
}

int
tbt_parse_duration(const char *s, uint64_t *msp)
{
	uint64_t total = 0;
	uint64_t v;
	int      next = 0; // smallest unit index still allowed
	int      u;

	if (s == NULL || msp == NULL || *s == '\0') {
		return (TB_EINVAL);
	}
	if (parse_digits(&s, &v) != TB_OK) {
		return (TB_EINVAL);
	}
	if (*s == '\0') {
		*msp = v; // a bare number is milliseconds
		return (TB_OK);
	}
	for (;;) {
		if ((u = dur_unit(&s)) < 0 || u < next) {
			return (TB_EINVAL);
		}
		next = u + 1;
		if (v > UINT64_MAX / dur_units[u].ms) {
			return (TB_EINVAL);
		}
		v *= dur_units[u].ms;
		if (total > UINT64_MAX - v) {
			return (TB_EINVAL);
		}
		total += v;
		if (*s == '\0') {
			break;
		}
		// A number must follow, and it must carry a unit: "1h30" is
		// more likely a typo than 1h and 30 ms.
		if (parse_digits(&s, &v) != TB_OK || *s == '\0') {
			return (TB_EINVAL);
		}
	}
	*msp = total;
	return (TB_OK);
}

const char *
tbt_format_duration(uint64_t ms, char *buf, size_t n)
{
	size_t off = 0;

	if (buf == NULL || n == 0) {
		return (buf);
	}
	buf[0] = '\0';
	if (ms == 0) {
		snprintf(buf, n, "0s");
		return (buf);
	}
	for (size_t i = 0; i < DUR_NUNITS && ms != 0; i++) {
		uint64_t q = ms / dur_units[i].ms;
		int      w;

		if (q == 0) {
			continue;
		}
		ms -= q * dur_units[i].ms;
		w = snprintf(buf + off, n - off, "%llu%s",
		    (unsigned long long) q, dur_units[i].name);
		if (w < 0 || (size_t) w >= n - off) {
			break; // cut short; snprintf has NUL-terminated it
		}
		off += (size_t) w;
	}
	return (buf);
}

// Absolute times.

// fixed_num reads exactly ndig digits at *sp into *vp.
static int
fixed_num(const char **sp, int ndig, int *vp)
{
	const char *s = *sp;
	int         v = 0;

	for (int i = 0; i < ndig; i++) {
		if (s[i] < '0' || s[i] > '9') {
			return (TB_EINVAL);
		}
		v = v * 10 + (s[i] - '0');
	}
	*sp = s + ndig;
	*vp = v;
	return (TB_OK);
}

// frac_us reads the digits after a decimal point (1 to 9 of them) as
// microseconds, cutting off anything finer.
static int
frac_us(const char **sp, int64_t *usp)
{
	const char *s  = *sp;
	int64_t     us = 0;
	int         i;

	for (i = 0; s[i] >= '0' && s[i] <= '9'; i++) {
		if (i >= 9) {
			return (TB_EINVAL);
		}
		if (i < 6) {
			us = us * 10 + (s[i] - '0');
		}
	}
	if (i == 0) {
		return (TB_EINVAL);
	}
	for (int k = i; k < 6; k++) {
		us *= 10;
	}
	*sp  = s + i;
	*usp = us;
	return (TB_OK);
}

// parse_unix reads "<seconds>[.<fraction>]" after the '@'.
static int
parse_unix(const char *s, int64_t *usp)
{
	uint64_t sec;
	int64_t  frac = 0;

	if (parse_digits(&s, &sec) != TB_OK) {
		return (TB_EINVAL);
	}
	if (*s == '.') {
		s++;
		if (frac_us(&s, &frac) != TB_OK) {
			return (TB_EINVAL);
		}
	}
	if (*s != '\0') {
		return (TB_EINVAL);
	}
	if (sec > (uint64_t) INT64_MAX / US_PER_S ||
	    (int64_t) sec * US_PER_S > INT64_MAX - frac) {
		return (TB_EINVAL);
	}
	*usp = (int64_t) sec * US_PER_S + frac;
	return (TB_OK);
}

// parse_relative reads the duration after the '+' and adds it to now_us.
static int
parse_relative(const char *s, int64_t now_us, int64_t *usp)
{
	uint64_t ms;
	int64_t  us;

	if (tbt_parse_duration(s, &ms) != TB_OK) {
		return (TB_EINVAL);
	}
	if (ms > (uint64_t) INT64_MAX / 1000) {
		return (TB_EINVAL);
	}
	us = (int64_t) ms * 1000;
	if (now_us > INT64_MAX - us) {
		return (TB_EINVAL);
	}
	*usp = now_us + us;
	return (TB_OK);
}

// parse_rfc3339 reads "YYYY-MM-DD[T ]HH:MM[:SS[.frac]][Z|+HH:MM|-HH:MM]".
// A four-digit year keeps every result far inside int64 microseconds.
static int
parse_rfc3339(const char *s, int64_t *usp)
{
	int     y, mo, d, h, mi, sec = 0, oh, om;
	int64_t frac    = 0;
	int64_t off_min = 0;
	int64_t days;

	if (fixed_num(&s, 4, &y) != TB_OK || *s++ != '-' ||
	    fixed_num(&s, 2, &mo) != TB_OK || *s++ != '-' ||
	    fixed_num(&s, 2, &d) != TB_OK) {
		return (TB_EINVAL);
	}
	if (*s != 'T' && *s != 't' && *s != ' ') {
		return (TB_EINVAL);
	}
	s++;
	if (fixed_num(&s, 2, &h) != TB_OK || *s++ != ':' ||
	    fixed_num(&s, 2, &mi) != TB_OK) {
		return (TB_EINVAL);
	}
	if (*s == ':') {
		s++;
		if (fixed_num(&s, 2, &sec) != TB_OK) {
			return (TB_EINVAL);
		}
		if (*s == '.') {
			s++;
			if (frac_us(&s, &frac) != TB_OK) {
				return (TB_EINVAL);
			}
		}
	}
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		int sign = *s++ == '-' ? -1 : 1;

		if (fixed_num(&s, 2, &oh) != TB_OK || *s++ != ':' ||
		    fixed_num(&s, 2, &om) != TB_OK || oh > 23 || om > 59) {
			return (TB_EINVAL);
		}
		off_min = sign * (oh * 60 + om);
	}
	if (*s != '\0') {
		return (TB_EINVAL);
	}
	if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 ||
	    mi > 59 || sec > 59) {
		return (TB_EINVAL);
	}
	days = days_from_civil(y, mo, d);
	// Local time minus its offset is UTC: 10:00+01:00 is 09:00Z.
	*usp = days * US_PER_DAY +
	    ((int64_t) h * 60 + mi - off_min) * US_PER_MIN + sec * US_PER_S +
	    frac;
	return (TB_OK);
}

int
tbt_parse_time(const char *s, int64_t now_us, int64_t *usp)
{
	int64_t us;
	int     rv;

	if (s == NULL || usp == NULL) {
		return (TB_EINVAL);
	}
	switch (s[0]) {
	case '@':
		rv = parse_unix(s + 1, &us);
		break;
	case '+':
		rv = parse_relative(s + 1, now_us, &us);
		break;
	default:
		rv = parse_rfc3339(s, &us);
		break;
	}
	if (rv != TB_OK) {
		return (rv);
	}
	*usp = us;
	return (TB_OK);
}

// Cron.

typedef struct cron_field {
	int                lo, hi;
	const char *const *names; // names[i] is value lo + i, or NULL
	int                nnames;
} cron_field;

static const char *const month_names[] = { "jan", "feb", "mar", "apr", "may",
	"jun", "jul", "aug", "sep", "oct", "nov", "dec" };
static const char *const wday_names[]  = { "sun", "mon", "tue", "wed", "thu",
	 "fri", "sat" };

enum { F_MIN, F_HOUR, F_MDAY, F_MONTH, F_WDAY, F_COUNT };

static const cron_field cron_fields[F_COUNT] = {
	[F_MIN]   = { 0, 59, NULL, 0 },
	[F_HOUR]  = { 0, 23, NULL, 0 },
	[F_MDAY]  = { 1, 31, NULL, 0 },
	[F_MONTH] = { 1, 12, month_names, 12 },
	[F_WDAY]  = { 0, 7, wday_names, 7 }, // 7 is Sunday again
};

static const struct {
	const char *name;
	const char *expr;
} cron_macros[] = {
	{ "@yearly", "0 0 1 1 *" },
	{ "@annually", "0 0 1 1 *" },
	{ "@monthly", "0 0 1 * *" },
	{ "@weekly", "0 0 * * 0" },
	{ "@daily", "0 0 * * *" },
	{ "@midnight", "0 0 * * *" },
	{ "@hourly", "0 * * * *" },
};

static bool
is_blank(char ch)
{
	return (ch == ' ' || ch == '\t');
}

static bool
at_field_end(char ch)
{
	return (ch == '\0' || is_blank(ch));
}

static char
lower(char ch)
{
	return ((ch >= 'A' && ch <= 'Z') ? (char) (ch - 'A' + 'a') : ch);
}

// cron_value reads one number or name for field f at *sp.
static int
cron_value(const char **sp, const cron_field *f, int *vp, const char **whyp)
{
	const char *s = *sp;
	int         v = 0;

	if (*s >= '0' && *s <= '9') {
		for (; *s >= '0' && *s <= '9'; s++) {
			v = v * 10 + (*s - '0');
			if (v > f->hi) {
				*whyp = "value out of range";
				return (TB_EINVAL);
			}
		}
		if (v < f->lo) {
			*whyp = "value out of range";
			return (TB_EINVAL);
		}
		*sp = s;
		*vp = v;
		return (TB_OK);
	}
	for (int i = 0; i < f->nnames; i++) {
		const char *n = f->names[i];

		if (lower(s[0]) == n[0] && lower(s[1]) == n[1] &&
		    lower(s[2]) == n[2]) {
			// "MONDAY" must not pass as "MON".
			if ((s[3] >= 'a' && s[3] <= 'z') ||
			    (s[3] >= 'A' && s[3] <= 'Z')) {
				break;
			}
			*sp = s + 3;
			*vp = f->lo + i;
			return (TB_OK);
		}
	}
	*whyp =
	    f->nnames > 0 ? "expected a number or name" : "expected a number";
	return (TB_EINVAL);
}

// cron_item reads one list item ("*", "N", "N-M", each with an optional
// "/S") and sets its bits in *bitsp.
static int
cron_item(
    const char **sp, const cron_field *f, uint64_t *bitsp, const char **whyp)
{
	const char *s = *sp;
	int         lo, hi, step = 1;
	bool        single = false;

	if (*s == '*') {
		s++;
		lo = f->lo;
		hi = f->hi;
	} else {
		if (cron_value(&s, f, &lo, whyp) != TB_OK) {
			return (TB_EINVAL);
		}
		hi     = lo;
		single = true;
		if (*s == '-') {
			s++;
			if (cron_value(&s, f, &hi, whyp) != TB_OK) {
				return (TB_EINVAL);
			}
			if (hi < lo) {
				*whyp = "range runs backwards";
				return (TB_EINVAL);
			}
			single = false;
		}
	}
	if (*s == '/') {
		s++;
		if (*s < '0' || *s > '9') {
			*whyp = "expected a step";
			return (TB_EINVAL);
		}
		step = 0;
		for (; *s >= '0' && *s <= '9'; s++) {
			step = step * 10 + (*s - '0');
			if (step > f->hi) {
				*whyp = "step too large";
				return (TB_EINVAL);
			}
		}
		if (step == 0) {
			*whyp = "step must be 1 or more";
			return (TB_EINVAL);
		}
		if (single) {
			hi = f->hi; // "N/S" is N to the maximum, as in cronie
		}
	}
	for (int v = lo; v <= hi; v += step) {
		*bitsp |= UINT64_C(1) << v;
	}
	*sp = s;
	return (TB_OK);
}

// cron_list reads one whole field (a comma list) at *sp.
static int
cron_list(const char **sp, const cron_field *f, uint64_t *bitsp, bool *starp,
    const char **whyp)
{
	const char *s = *sp;

	*bitsp = 0;
	*starp = *s == '*'; // Vixie's rule: any field that begins with '*'
	for (;;) {
		if (cron_item(&s, f, bitsp, whyp) != TB_OK) {
			return (TB_EINVAL);
		}
		if (at_field_end(*s)) {
			break;
		}
		if (*s != ',') {
			*whyp = "unexpected character";
			return (TB_EINVAL);
		}
		s++;
	}
	*sp = s;
	return (TB_OK);
}

static int
cron_parse_fields(tbt_cron *c, const char *s, const char **whyp)
{
	uint64_t bits[F_COUNT];
	bool     star[F_COUNT];

	for (int i = 0; i < F_COUNT; i++) {
		while (is_blank(*s)) {
			s++;
		}
		if (*s == '\0') {
			*whyp = "expected 5 fields";
			return (TB_EINVAL);
		}
		if (cron_list(&s, &cron_fields[i], &bits[i], &star[i], whyp) !=
		    TB_OK) {
			return (TB_EINVAL);
		}
	}
	while (is_blank(*s)) {
		s++;
	}
	if (*s != '\0') {
		*whyp = "expected 5 fields";
		return (TB_EINVAL);
	}
	if (bits[F_WDAY] & (UINT64_C(1) << 7)) {
		bits[F_WDAY] = (bits[F_WDAY] | 1) & 0x7f; // 7 is Sunday
	}
	c->minute    = bits[F_MIN];
	c->hour      = (uint32_t) bits[F_HOUR];
	c->mday      = (uint32_t) bits[F_MDAY];
	c->month     = (uint16_t) bits[F_MONTH];
	c->wday      = (uint8_t) bits[F_WDAY];
	c->mday_star = star[F_MDAY];
	c->wday_star = star[F_WDAY];
	return (TB_OK);
}

// macro_is reports whether the len bytes at s spell name, ignoring case.
static bool
macro_is(const char *name, const char *s, size_t len)
{
	if (strlen(name) != len) {
		return (false);
	}
	for (size_t i = 0; i < len; i++) {
		if (lower(s[i]) != name[i]) {
			return (false);
		}
	}
	return (true);
}

int
tbt_cron_parse(tbt_cron *c, const char *expr, const char **whyp)
{
	const char *why = "invalid expression";
	tbt_cron    tmp;
	const char *s;

	if (c == NULL || expr == NULL) {
		if (whyp != NULL) {
			*whyp = "no expression";
		}
		return (TB_EINVAL);
	}
	s = expr;
	while (is_blank(*s)) {
		s++;
	}
	if (*s == '@') {
		size_t len = 0;

		while (!at_field_end(s[len])) {
			len++;
		}
		for (size_t i = 0; s[len + i] != '\0'; i++) {
			if (!is_blank(s[len + i])) {
				why = "unexpected text after macro";
				goto fail;
			}
		}
		why = "unknown macro";
		for (size_t i = 0;
		     i < sizeof(cron_macros) / sizeof(cron_macros[0]); i++) {
			if (macro_is(cron_macros[i].name, s, len)) {
				s   = cron_macros[i].expr;
				why = NULL;
				break;
			}
		}
		if (why != NULL) {
			goto fail;
		}
	}
	if (cron_parse_fields(&tmp, s, &why) != TB_OK) {
		goto fail;
	}
	*c = tmp;
	return (TB_OK);
fail:
	if (whyp != NULL) {
		*whyp = why;
	}
	return (TB_EINVAL);
}

// next_bit returns the smallest set bit of bits that is >= from and
// < limit, or -1.
static int
next_bit(uint64_t bits, int from, int limit)
{
	for (int i = from; i < limit; i++) {
		if (bits & (UINT64_C(1) << i)) {
			return (i);
		}
	}
	return (-1);
}

static bool
cron_day_matches(const tbt_cron *c, int64_t day, int mday)
{
	// 1970-01-01 was a Thursday (4).
	int  wday = (int) (day + 4 - floor_div(day + 4, 7) * 7);
	bool dom  = (c->mday >> mday) & 1;
	bool dow  = (c->wday >> wday) & 1;

	if (c->mday_star || c->wday_star) {
		return (dom && dow);
	}
	return (dom || dow);
}

// The search cursor: a day (days since 1970-01-01) with its civil date
// kept in step, and a minute within that day.
typedef struct cron_pos {
	int64_t day;
	int64_t y;
	int     m, d;
	int     hour, minute;
} cron_pos;

// pos_month_start moves p to midnight of the first day of the next month
// (p->day must already count the days that skips).
static void
pos_month_start(cron_pos *p)
{
	p->d = 1;
	if (++p->m > 12) {
		p->m = 1;
		p->y++;
	}
	p->hour   = 0;
	p->minute = 0;
}

static void
pos_next_day(cron_pos *p)
{
	p->day++;
	if (++p->d > days_in_month(p->y, p->m)) {
		pos_month_start(p);
		return;
	}
	p->hour   = 0;
	p->minute = 0;
}

static void
pos_next_month(cron_pos *p)
{
	p->day += days_in_month(p->y, p->m) - p->d + 1;
	pos_month_start(p);
}

int64_t
tbt_cron_next(const tbt_cron *c, int64_t after_us)
{
	cron_pos p;
	int64_t  start, last, min;
	int      h, mi;

	if (c == NULL) {
		return (INT64_MAX);
	}
	// The first candidate is the whole minute after the one holding
	// after_us; this is what makes the result strictly later.
	start    = floor_div(after_us, US_PER_MIN) + 1;
	p.day    = floor_div(start, MIN_PER_DAY);
	p.hour   = (int) (start - p.day * MIN_PER_DAY) / 60;
	p.minute = (int) (start - p.day * MIN_PER_DAY) % 60;
	civil_from_days(p.day, &p.y, &p.m, &p.d);
	last = p.day + CRON_HORIZON_DAYS;

	// Each step either returns or moves the cursor to the start of the
	// next month, day or hour that could match, so the loop runs at most
	// about (months + days + hours) in the horizon times.
	while (p.day <= last) {
		if (((c->month >> p.m) & 1) == 0) {
			pos_next_month(&p);
			continue;
		}
		if (!cron_day_matches(c, p.day, p.d)) {
			pos_next_day(&p);
			continue;
		}
		if ((h = next_bit(c->hour, p.hour, 24)) < 0) {
			pos_next_day(&p);
			continue;
		}
		if (h != p.hour) {
			p.hour   = h;
			p.minute = 0;
		}
		if ((mi = next_bit(c->minute, p.minute, 60)) < 0) {
			if (++p.hour == 24) {
				pos_next_day(&p);
			} else {
				p.minute = 0;
			}
			continue;
		}
		min = p.day * MIN_PER_DAY + p.hour * 60 + mi;
		if (min > INT64_MAX / US_PER_MIN) {
			return (INT64_MAX); // past the end of time
		}
		return (min * US_PER_MIN);
	}
	return (INT64_MAX);
}
