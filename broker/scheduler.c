// scheduler.c: the scheduler's heaps and decisions; see scheduler.h.

#include "scheduler.h"

#include <assert.h>
#include <stdlib.h>

#include <tbp.h>

#include "task.h"

bool
sched_before(int kind, const task *a, const task *b)
{
	if (kind == SCHED_DUE) {
		if (a->run_at != b->run_at) {
			return (a->run_at < b->run_at);
		}
		return (a->id < b->id);
	}
	if (a->priority != b->priority) {
		return (a->priority > b->priority);
	}
	return (a->id < b->id);
}

void
sched_heapq_init(sched_heapq *h, int kind)
{
	h->v    = NULL;
	h->n    = 0;
	h->cap  = 0;
	h->kind = kind;
}

void
sched_heapq_fini(sched_heapq *h)
{
	free(h->v);
	h->v   = NULL;
	h->n   = 0;
	h->cap = 0;
}

static void
sched_set(sched_heapq *h, size_t i, task *t)
{
	h->v[i]     = t;
	t->heap_idx = i;
}

static void
sched_up(sched_heapq *h, size_t i)
{
	task *t = h->v[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!sched_before(h->kind, t, h->v[p])) {
			break;
		}
		sched_set(h, i, h->v[p]);
		i = p;
	}
	sched_set(h, i, t);
}

static void
sched_down(sched_heapq *h, size_t i)
{
	task *t = h->v[i];

	for (;;) {
		size_t l = 2 * i + 1;
		size_t m;
		if (l >= h->n) {
			break;
		}
		m = l;
		if (l + 1 < h->n &&
		    sched_before(h->kind, h->v[l + 1], h->v[l])) {
			m = l + 1;
		}
		if (!sched_before(h->kind, h->v[m], t)) {
			break;
		}
		sched_set(h, i, h->v[m]);
		i = m;
	}
	sched_set(h, i, t);
}

int
sched_push(sched_heapq *h, task *t)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		task **v   = realloc(h->v, cap * sizeof(*v));
		if (v == NULL) {
			return (-1);
		}
		h->v   = v;
		h->cap = cap;
	}
	t->heap = h->kind;
	h->n++;
	sched_set(h, h->n - 1, t);
	sched_up(h, h->n - 1);
	return (0);
}

task *
sched_peek(const sched_heapq *h)
{
	return (h->n > 0 ? h->v[0] : NULL);
}

void
sched_remove(sched_heapq *h, task *t)
{
	size_t i = t->heap_idx;

	h->n--;
	if (i != h->n) {
		sched_set(h, i, h->v[h->n]);
		// The moved entry may belong above or below its new place.
		sched_up(h, i);
		sched_down(h, h->v[i]->heap_idx);
	}
	t->heap     = SCHED_NONE;
	t->heap_idx = 0;
}

task *
sched_pop(sched_heapq *h)
{
	task *t = sched_peek(h);

	if (t != NULL) {
		sched_remove(h, t);
	}
	return (t);
}

int64_t
sched_backoff_us(uint32_t attempts, int64_t base_us, int64_t cap_us, double r)
{
	int64_t d = base_us;

	for (uint32_t i = 1; i < attempts && d < cap_us; i++) {
		d *= 2;
	}
	if (d > cap_us) {
		d = cap_us;
	}
	return (d / 2 + (int64_t) ((double) (d / 2) * r));
}

int64_t
sched_next_due(int64_t every_us, const tbt_cron *cron, int64_t due, int64_t t)
{
	if (cron != NULL) {
		return (tbt_cron_next(cron, t));
	}
	if (t < due) {
		return (due);
	}
	return (due + ((t - due) / every_us + 1) * every_us);
}

int64_t
sched_age_cutoff(int64_t now, uint64_t age_ms)
{
	assert(now >= -TBP_MAX_TIME_US && now <= TBP_MAX_TIME_US);
	assert(age_ms <= (uint64_t) TBP_MAX_DURATION_MS);
	return (now - (int64_t) age_ms * 1000);
}

int64_t
sched_run_at(int64_t now, int64_t run_at, uint32_t delay_ms)
{
	assert(now >= -TBP_MAX_TIME_US && now <= TBP_MAX_TIME_US);
	assert(run_at >= -TBP_MAX_TIME_US && run_at <= TBP_MAX_TIME_US);
	return (run_at > 0 ? run_at : now + (int64_t) delay_ms * 1000);
}

int64_t
sched_every_us(uint64_t every_ms)
{
	assert(every_ms <= (uint64_t) TBP_MAX_DURATION_MS);
	return ((int64_t) every_ms * 1000);
}

int64_t
sched_hold_ms(int64_t timeout_ms, int64_t max_ms)
{
	return (timeout_ms < 0 || timeout_ms > max_ms ? max_ms : timeout_ms);
}

void
sched_sid(const char *name, int64_t due, uint8_t sid[TB_SID_LEN])
{
	uint64_t h = 1469598103934665603ULL; // FNV-1a, 64 bits

	for (const char *p = name; *p != '\0'; p++) {
		h ^= (uint8_t) *p;
		h *= 1099511628211ULL;
	}
	// Half name, half due time: two schedules collide only if their
	// names hash alike and they fire at the same microsecond.
	for (int i = 0; i < 8; i++) {
		sid[i]     = (uint8_t) (h >> (8 * i));
		sid[8 + i] = (uint8_t) ((uint64_t) due >> (8 * i));
	}
}

int
sched_outcome(const sched_end *e)
{
	if (e->requeue) {
		return (SCHED_REQUEUE);
	}
	if (e->cancelling) {
		return (SCHED_CANCELLED);
	}
	if (e->forever) {
		return (SCHED_RESTART);
	}
	if (!e->failed) {
		return (SCHED_DONE);
	}
	if (e->attempts < e->max_attempts && !e->no_retry) {
		return (SCHED_RETRY);
	}
	return (SCHED_DEAD);
}

int
sched_interrupted(uint32_t attempts, uint32_t crashes, uint32_t max_crashes,
    bool cancelling, sched_crash *cp)
{
	cp->attempts = attempts > 0 ? attempts - 1 : 0;
	cp->crashes  = crashes < UINT32_MAX ? crashes + 1 : UINT32_MAX;
	if (cancelling) {
		return (SCHED_CRASH_CANCELLED);
	}
	if (cp->crashes >= (max_crashes > 0 ? max_crashes : 1)) {
		return (SCHED_CRASH_QUARANTINE);
	}
	return (SCHED_CRASH_READY);
}

int64_t
sched_forever_restart(sched_forever *f, const sched_forever_cfg *cfg,
    uint64_t dur_us, int64_t mono, double r, int *changep)
{
	int     change = 0;
	int64_t delay;

	if ((int64_t) dur_us >= cfg->reset_us) {
		f->quick_restarts = 0;
		if (f->crashloop) {
			f->crashloop = false;
			change |= SCHED_FOREVER_RECOVERED;
		}
	} else {
		f->quick_restarts++;
	}
	if (f->window_start == 0 || mono - f->window_start > cfg->window_us) {
		f->window_start    = mono;
		f->window_restarts = 0;
	}
	f->window_restarts++;
	// The backoff's equal jitter keeps half of the delay fixed: doubling
	// base and cap makes the fixed half the configured backoff.
	delay = f->quick_restarts == 0
	    ? 0
	    : sched_backoff_us(f->quick_restarts, cfg->backoff_us * 2,
	          cfg->backoff_max_us * 2, r);
	if (!f->crashloop && f->window_restarts >= cfg->crashloop_restarts) {
		f->crashloop = true;
		change |= SCHED_FOREVER_LOOPING;
	}
	if (changep != NULL) {
		*changep = change;
	}
	return (delay);
}

int
sched_admit(uint64_t waiting, uint64_t fresh, uint64_t limit)
{
	if (limit > 0 && waiting + fresh > limit) {
		return (TB_EQUEUEFULL);
	}
	return (TB_OK);
}
