// prune.c: retention: deleting ended tasks whose retention has passed.
//
// DESIGN. Every PRUNE_EVERY_MS, one delete op per queue and final state
// removes at most PRUNE_BATCH rows, so no write holds the database for
// long; while a batch comes back full the next pass runs at once (from
// the loop's prepare pass) instead of waiting for the timer.
//
// Threads: loop thread only.

#include "brokerimpl.h"
#include "util.h"

#define PRUNE_BATCH 500 // rows one prune op deletes at most
#define PRUNE_EVERY_MS 1000

// prune_committed is the done of a prune op: adjust the figures.
static void
prune_committed(broker *b, sop *w)
{
	b->prunes--;
	if (w->op.count >= PRUNE_BATCH) {
		b->prune_more = true;
	}
	queue_deleted(b, w->q, (uint32_t) w->op.del_state, w->op.count);
}

void
prune_pass(broker *b)
{
	static const uint32_t finals[] = { TB_STATE_DONE, TB_STATE_DEAD,
		TB_STATE_CANCELLED };
	int64_t cutoff = util_now_us() - b->cfg->retention_ms * 1000LL;
	queue  *q;
	queue  *tmp;

	b->prune_more = false;
	if (b->cfg->retention_ms <= 0 || b->prunes > 0 ||
	    b->phase != PHASE_RUNNING) {
		return;
	}
	HASH_ITER (hh, b->queues, q, tmp) {
		for (size_t i = 0; i < 3; i++) {
			sop *w;
			if (q->counts[finals[i]] == 0 ||
			    (w = sop_alloc(prune_committed, NULL)) == NULL) {
				continue;
			}
			w->q                  = q;
			w->op.kind            = STORE_OP_DELETE;
			w->op.queue           = q->name;
			w->op.del_state       = (int32_t) finals[i];
			w->op.finished_before = cutoff;
			w->op.limit           = PRUNE_BATCH;
			b->prunes++;
			sop_submit(b, w);
		}
	}
}

static void
prune_tick(uv_timer_t *timer)
{
	prune_pass(timer->data);
}

void
prune_start(broker *b)
{
	uv_timer_start(
	    &b->prune_timer, prune_tick, PRUNE_EVERY_MS, PRUNE_EVERY_MS);
}
