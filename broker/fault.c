// fault.c: the fault-injection seam; see fault.h. Compiled only into test
// builds (TB_FAULT_INJECTION).

#include "fault.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define FAULT_ENV "TB_FAULT"
#define FAULT_NAME_MAX 64    // bytes of an entry quoted in a log line
#define FAULT_ENTRIES_MAX 16 // entries in one spec

// fault_site is one site's arming and counts. at 0: not armed.
typedef struct fault_site {
	atomic_uint_least32_t at;
	atomic_bool           persistent;
	atomic_uint_least64_t hits;
	atomic_uint_least64_t fired;
} fault_site;

static fault_site fault_sites[TB_FAULT_END];

static const char *const fault_names[TB_FAULT_END] = {
#define FAULT_NAME_(id, n, name) [n] = name,
	TB_FAULTS(FAULT_NAME_)
#undef FAULT_NAME_
};

// Ids are 1, 2, 3, ... with no gap, so TB_FAULT_END - 1 is their number.
#define FAULT_COUNT_(id, n, name) +1
_Static_assert(TB_FAULT_END == 1 TB_FAULTS(FAULT_COUNT_),
    "fault ids must be numbered 1, 2, 3, ... without gaps");
#undef FAULT_COUNT_

static bool
fault_id_ok(int id)
{
	return (id > 0 && id < TB_FAULT_END);
}

int
tb_fault(int id)
{
	fault_site *s;
	uint32_t    at;
	uint64_t    hit;

	if (!fault_id_ok(id)) {
		return (0);
	}
	s = &fault_sites[id];
	if ((at = atomic_load(&s->at)) == 0) {
		return (0);
	}
	hit = atomic_fetch_add(&s->hits, 1) + 1;
	if (hit < at || (hit > at && !atomic_load(&s->persistent))) {
		return (0);
	}
	atomic_fetch_add(&s->fired, 1);
	log_warn("fault: %s fires at hit %" PRIu64, fault_names[id], hit);
	return (1);
}

int
tb_fault_set(int id, uint32_t countdown, bool persistent)
{
	fault_site *s;

	if (!fault_id_ok(id)) {
		return (-1);
	}
	s = &fault_sites[id];
	atomic_store(&s->at, 0); // no hit counts while the counts restart
	atomic_store(&s->hits, 0);
	atomic_store(&s->fired, 0);
	atomic_store(&s->persistent, persistent);
	atomic_store(&s->at, countdown);
	return (0);
}

void
tb_fault_reset(void)
{
	for (int id = 1; id < TB_FAULT_END; id++) {
		(void) tb_fault_set(id, 0, false);
	}
}

uint64_t
tb_fault_hits(int id)
{
	return (fault_id_ok(id) ? atomic_load(&fault_sites[id].hits) : 0);
}

uint64_t
tb_fault_fired(int id)
{
	return (fault_id_ok(id) ? atomic_load(&fault_sites[id].fired) : 0);
}

// fault_lookup returns the id of the site named by name (len bytes), or 0.
static int
fault_lookup(const char *name, size_t len)
{
	for (int id = 1; id < TB_FAULT_END; id++) {
		if (strlen(fault_names[id]) == len &&
		    memcmp(fault_names[id], name, len) == 0) {
			return (id);
		}
	}
	return (0);
}

// fault_parse_entry parses one NAME:N or NAME:N+ entry of len bytes.
// Returns 0 and the site in *idp, *atp, *persistentp, or -1.
static int
fault_parse_entry(
    const char *e, size_t len, int *idp, uint32_t *atp, bool *persistentp)
{
	const char   *colon = memchr(e, ':', len);
	const char   *num;
	size_t        nlen;
	unsigned long v = 0;

	if (colon == NULL ||
	    (*idp = fault_lookup(e, (size_t) (colon - e))) == 0) {
		return (-1);
	}
	num          = colon + 1;
	nlen         = len - (size_t) (num - e);
	*persistentp = nlen > 0 && num[nlen - 1] == '+';
	if (*persistentp) {
		nlen--;
	}
	if (nlen == 0 || nlen > 10) {
		return (-1);
	}
	for (size_t i = 0; i < nlen; i++) {
		if (num[i] < '0' || num[i] > '9') {
			return (-1);
		}
		v = v * 10 + (unsigned long) (num[i] - '0');
	}
	if (v == 0 || v > 2147483647UL) {
		return (-1);
	}
	*atp = (uint32_t) v;
	return (0);
}

int
tb_fault_arm(const char *spec)
{
	int      ids[FAULT_ENTRIES_MAX];
	uint32_t ats[FAULT_ENTRIES_MAX];
	bool     pers[FAULT_ENTRIES_MAX];
	size_t   n = 0;

	if (spec == NULL || spec[0] == '\0') {
		return (0);
	}
	// Parse all entries first, so a bad one arms nothing.
	for (const char *p = spec;;) {
		const char *end = strchr(p, ',');
		size_t      len = end != NULL ? (size_t) (end - p) : strlen(p);

		if (n == FAULT_ENTRIES_MAX ||
		    fault_parse_entry(p, len, &ids[n], &ats[n], &pers[n]) !=
		        0) {
			size_t shown =
			    len < FAULT_NAME_MAX ? len : FAULT_NAME_MAX;

			log_err("fault: bad %s entry \"%.*s\": want NAME:N or "
			        "NAME:N+ (N from 1), NAME one of the sites in "
			        "fault.h",
			    FAULT_ENV, (int) shown, p);
			return (-1);
		}
		n++;
		if (end == NULL) {
			break;
		}
		p = end + 1;
	}
	for (size_t i = 0; i < n; i++) {
		(void) tb_fault_set(ids[i], ats[i], pers[i]);
		log_warn("fault: %s armed: fires at hit %" PRIu32 "%s",
		    fault_names[ids[i]], ats[i],
		    pers[i] ? " and every later one" : ", once");
	}
	return (0);
}

int
tb_fault_init_env(void)
{
	return (tb_fault_arm(getenv(FAULT_ENV)));
}
