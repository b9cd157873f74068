// fuzz_tbp_decode.c: libFuzzer target for the decoders of proto/.
//
// Besides "no crash, no leak", it checks properties that only hold if the
// decoders are right: whatever tbp_check accepts, msgpack-c unpacks to the
// same length; whatever decodes re-encodes to a message that decodes to
// the same values; every view lies inside memory that ASan can see.
// A broken property calls abort(), which both libFuzzer and the ctest
// replay report.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tbp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                      \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, \
			    #cond);                                        \
			abort();                                           \
		}                                                          \
	} while (0)

// touch reads every byte of a view, so ASan sees a stale or short view.
static unsigned
touch(tbp_bytes v)
{
	unsigned sum = 0;

	REQUIRE(v.n == 0 || v.p != NULL);
	for (uint32_t i = 0; i < v.n; i++) {
		sum += v.p[i];
	}
	return (sum);
}

static bool
bytes_same(tbp_bytes a, tbp_bytes b)
{
	return (a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0));
}

static void
check_unpack_agrees(const uint8_t *data, size_t size)
{
	msgpack_unpacked u;
	size_t           used;
	size_t           off = 0;

	if (tbp_check(data, size, TBP_MAX_DEPTH, &used) != TB_OK) {
		return;
	}
	REQUIRE(used > 0 && used <= size);
	msgpack_unpacked_init(&u);
	REQUIRE(msgpack_unpack_next(&u, (const char *) data, used, &off) ==
	    MSGPACK_UNPACK_SUCCESS);
	REQUIRE(off == used);
	msgpack_unpacked_destroy(&u);
}

// reencode_req writes r back with the encoders. Names hold no NUL (the
// decoder refuses one), so they survive the trip through a C string.
static int
reencode_req(msgpack_sbuffer *b, const tbp_req *r)
{
	char *queue;
	char *handler;
	char *name;
	int   rv;

	queue   = tbp_bytes_dup(r->queue);
	handler = tbp_bytes_dup(r->handler);
	name    = tbp_bytes_dup(r->name);
	if (queue == NULL || handler == NULL || name == NULL) {
		rv = TB_ENOMEM;
		goto out;
	}
	switch (r->op) {
	case TBP_OP_SUBMIT:
		rv = tbp_enc_submit(b, r->req_id, r->tasks, r->ntasks);
		break;
	case TBP_OP_STATUS:
	case TBP_OP_CANCEL:
		rv = tbp_enc_req_id(b, r->op, r->req_id, r->id);
		break;
	case TBP_OP_WAIT:
		rv = tbp_enc_wait(b, r->req_id, r->id, r->timeout_ms);
		break;
	case TBP_OP_LIST:
		rv = tbp_enc_list(b, r->req_id, queue, r->state, r->limit,
		    r->after_id, handler, r->min_age_ms, r->max_age_ms);
		break;
	case TBP_OP_RETRY:
		rv = tbp_enc_retry(
		    b, r->req_id, r->have_id, r->id, queue, r->state);
		break;
	case TBP_OP_PAUSE:
	case TBP_OP_RESUME:
		rv = tbp_enc_queue_op(b, r->op, r->req_id, queue);
		break;
	case TBP_OP_DRAIN:
		rv = tbp_enc_drain(b, r->req_id, queue, r->timeout_ms);
		break;
	case TBP_OP_PURGE:
		rv = tbp_enc_purge(
		    b, r->req_id, queue, r->state, r->min_age_ms);
		break;
	case TBP_OP_SCHED_ADD:
		rv = tbp_enc_sched_add(b, r->req_id, &r->sched);
		break;
	case TBP_OP_SCHED_RM:
	case TBP_OP_SCHED_PAUSE:
		rv = tbp_enc_sched_name(b, r->op, r->req_id, name, r->paused);
		break;
	default:
		rv = tbp_enc_req_empty(b, r->op, r->req_id);
		break;
	}
out:
	free(queue);
	free(handler);
	free(name);
	return (rv);
}

// sched_same compares two schedules; reply adds the broker's bookkeeping.
static bool
sched_same(const tbp_sched *a, const tbp_sched *b, bool reply)
{
	if (!bytes_same(a->name, b->name) ||
	    !bytes_same(a->handler, b->handler) ||
	    !bytes_same(a->queue, b->queue) ||
	    !bytes_same(a->payload, b->payload) ||
	    !bytes_same(a->cron, b->cron) || a->priority != b->priority ||
	    a->max_attempts != b->max_attempts ||
	    a->timeout_ms != b->timeout_ms || a->every_ms != b->every_ms ||
	    a->catch_up != b->catch_up || a->paused != b->paused) {
		return (false);
	}
	return (!reply ||
	    (a->next_at == b->next_at && a->last_at == b->last_at &&
	        a->fired == b->fired && a->last_task == b->last_task));
}

static unsigned
touch_sched(const tbp_sched *s)
{
	REQUIRE(s->name.n >= 1 && s->name.n <= TBP_MAX_NAME);
	REQUIRE(s->handler.n >= 1 && s->handler.n <= TBP_MAX_NAME);
	REQUIRE(s->queue.n <= TBP_MAX_NAME && s->cron.n <= TBP_MAX_CRON);
	REQUIRE(s->payload.n <= TBP_MAX_PAYLOAD);
	return (touch(s->name) + touch(s->handler) + touch(s->queue) +
	    touch(s->payload) + touch(s->cron));
}

static void
check_req(const uint8_t *data, size_t size)
{
	tbp_req         r;
	tbp_req         r2;
	msgpack_sbuffer b;
	unsigned        sum = 0;
	int             rv;

	rv = tbp_req_decode(&r, data, size);
	if (rv != TB_OK) {
		REQUIRE(rv == TB_EBADREQ || rv == TB_ETOOBIG ||
		    rv == TB_EVERSION || rv == TB_EUNKNOWNOP);
		tbp_req_fini(&r);
		return;
	}
	REQUIRE(r.have_envelope && r.version == TBP_VERSION);
	REQUIRE(r.op < TBP_OP_COUNT);
	for (uint32_t i = 0; i < r.ntasks; i++) {
		const tbp_task_in *t = &r.tasks[i];

		REQUIRE(t->sid.n == TB_SID_LEN);
		REQUIRE(t->handler.n >= 1 && t->handler.n <= TBP_MAX_NAME);
		REQUIRE(t->queue.n <= TBP_MAX_NAME);
		REQUIRE(t->payload.n <= TBP_MAX_PAYLOAD);
		REQUIRE(t->key.n <= TBP_MAX_KEY);
		sum += touch(t->sid) + touch(t->handler) + touch(t->queue) +
		    touch(t->payload) + touch(t->key);
	}
	sum += touch(r.queue) + touch(r.handler) + touch(r.name);
	if (r.op == TBP_OP_SCHED_ADD) {
		sum += touch_sched(&r.sched);
		REQUIRE((r.sched.every_ms != 0) != (r.sched.cron.n > 0));
	}
	if (r.op == TBP_OP_PAUSE || r.op == TBP_OP_RESUME) {
		REQUIRE(r.queue.n >= 1);
	}
	(void) sum;

	// The encoders must write back what the decoder read.
	msgpack_sbuffer_init(&b);
	REQUIRE(reencode_req(&b, &r) == TB_OK);
	REQUIRE(tbp_req_decode(&r2, b.data, b.size) == TB_OK);
	REQUIRE(r2.op == r.op && r2.req_id == r.req_id);
	REQUIRE(r2.ntasks == r.ntasks && r2.id == r.id);
	REQUIRE(r2.state == r.state && r2.limit == r.limit);
	REQUIRE(r2.after_id == r.after_id);
	REQUIRE(r2.timeout_ms == (r.timeout_ms < 0 ? -1 : r.timeout_ms));
	REQUIRE(bytes_same(r2.queue, r.queue));
	REQUIRE(bytes_same(r2.handler, r.handler));
	REQUIRE(bytes_same(r2.name, r.name));
	REQUIRE(r2.min_age_ms == r.min_age_ms);
	REQUIRE(r2.max_age_ms == r.max_age_ms);
	REQUIRE(r2.have_id == r.have_id && r2.paused == r.paused);
	REQUIRE(sched_same(&r2.sched, &r.sched, false));
	for (uint32_t i = 0; i < r.ntasks; i++) {
		const tbp_task_in *a = &r.tasks[i];
		const tbp_task_in *c = &r2.tasks[i];

		REQUIRE(bytes_same(a->sid, c->sid));
		REQUIRE(bytes_same(a->handler, c->handler));
		REQUIRE(bytes_same(a->queue, c->queue));
		REQUIRE(bytes_same(a->payload, c->payload));
		REQUIRE(a->priority == c->priority);
		REQUIRE(a->max_attempts == c->max_attempts);
		REQUIRE(a->timeout_ms == c->timeout_ms);
		REQUIRE(a->delay_ms == c->delay_ms);
		REQUIRE(a->run_at == c->run_at);
		REQUIRE(bytes_same(a->key, c->key));
		REQUIRE(a->forever == c->forever);
		REQUIRE(a->max_crashes == c->max_crashes);
	}
	tbp_req_fini(&r2);
	msgpack_sbuffer_destroy(&b);
	tbp_req_fini(&r);
}

static unsigned
touch_task(const tbp_task_info *t)
{
	REQUIRE(t->queue.n <= TBP_MAX_NAME && t->handler.n <= TBP_MAX_NAME);
	REQUIRE(t->result.n <= TBP_MAX_RESULT && t->error.n <= TBP_MAX_ERROR);
	REQUIRE(t->key.n <= TBP_MAX_KEY);
	return (touch(t->queue) + touch(t->handler) + touch(t->result) +
	    touch(t->error) + touch(t->key));
}

static bool
task_same(const tbp_task_info *a, const tbp_task_info *b)
{
	return (a->id == b->id && bytes_same(a->queue, b->queue) &&
	    bytes_same(a->handler, b->handler) && a->state == b->state &&
	    a->attempts == b->attempts && a->max_attempts == b->max_attempts &&
	    a->crashes == b->crashes && a->max_crashes == b->max_crashes &&
	    a->priority == b->priority && a->created_at == b->created_at &&
	    a->started_at == b->started_at &&
	    a->finished_at == b->finished_at &&
	    bytes_same(a->result, b->result) &&
	    bytes_same(a->error, b->error) && a->run_at == b->run_at &&
	    a->timeout_ms == b->timeout_ms && a->forever == b->forever &&
	    bytes_same(a->key, b->key));
}

static void
check_rep(const uint8_t *data, size_t size)
{
	tbp_rep         r;
	tbp_rep         r2;
	msgpack_sbuffer b;
	unsigned        sum = 0;
	int             rv;

	rv = tbp_rep_decode(&r, data, size);
	if (rv != TB_OK) {
		REQUIRE(rv == TB_EPROTO || rv == TB_ETOOBIG);
		tbp_rep_fini(&r);
		return;
	}
	sum += touch(r.errname) + touch(r.message) + touch(r.version_str);
	if (r.have_task) {
		sum += touch_task(&r.task);
	}
	for (uint32_t i = 0; i < r.ntasks; i++) {
		sum += touch_task(&r.tasks[i]);
	}
	for (uint32_t i = 0; i < r.nids; i++) {
		sum += (unsigned) r.ids[i] + r.dup[i] + r.existing[i];
	}
	REQUIRE(r.nscheds <= TBP_MAX_SCHEDULES);
	for (uint32_t i = 0; i < r.nscheds; i++) {
		sum += touch_sched(&r.scheds[i]);
	}
	REQUIRE(r.nqueues <= TBP_MAX_QUEUES);
	for (uint32_t i = 0; i < r.nqueues; i++) {
		REQUIRE(r.queues[i].name.n <= TBP_MAX_NAME);
		sum += touch(r.queues[i].name);
	}
	(void) sum;

	// Round-trip the replies whose every field the encoders can write.
	msgpack_sbuffer_init(&b);
	if (r.status == TB_OK && r.op == TBP_OP_LIST) {
		REQUIRE(tbp_enc_rep_tasks(&b, r.req_id, r.tasks, r.ntasks) ==
		    TB_OK);
		REQUIRE(tbp_rep_decode(&r2, b.data, b.size) == TB_OK);
		REQUIRE(r2.ntasks == r.ntasks);
		for (uint32_t i = 0; i < r.ntasks; i++) {
			REQUIRE(task_same(&r.tasks[i], &r2.tasks[i]));
		}
		tbp_rep_fini(&r2);
	} else if (r.status == TB_OK && r.have_task) {
		REQUIRE(tbp_enc_rep_task(&b, r.op, r.req_id, &r.task,
		            r.timed_out) == TB_OK);
		REQUIRE(tbp_rep_decode(&r2, b.data, b.size) == TB_OK);
		REQUIRE(r2.have_task && task_same(&r.task, &r2.task));
		REQUIRE(r2.timed_out == r.timed_out);
		tbp_rep_fini(&r2);
	} else if (r.status == TB_OK && r.op == TBP_OP_SUBMIT) {
		REQUIRE(tbp_enc_rep_submit(&b, r.req_id, r.ids, r.dup,
		            r.existing, r.nids) == TB_OK);
		REQUIRE(tbp_rep_decode(&r2, b.data, b.size) == TB_OK);
		REQUIRE(r2.nids == r.nids);
		for (uint32_t i = 0; i < r.nids; i++) {
			REQUIRE(
			    r2.ids[i] == r.ids[i] && r2.dup[i] == r.dup[i]);
			REQUIRE(r2.existing[i] == r.existing[i]);
		}
		tbp_rep_fini(&r2);
	} else if (r.status == TB_OK && r.op == TBP_OP_STATS) {
		REQUIRE(tbp_enc_rep_stats(&b, r.req_id, &r.stats) == TB_OK);
		REQUIRE(tbp_rep_decode(&r2, b.data, b.size) == TB_OK);
		REQUIRE(memcmp(&r2.stats, &r.stats, sizeof(r.stats)) == 0);
		tbp_rep_fini(&r2);
	} else if (r.status == TB_OK &&
	    (r.op == TBP_OP_RETRY || r.op == TBP_OP_PURGE)) {
		REQUIRE(
		    tbp_enc_rep_count(&b, r.op, r.req_id, r.count) == TB_OK);
		REQUIRE(tbp_rep_decode(&r2, b.data, b.size) == TB_OK);
		REQUIRE(r2.op == r.op && r2.count == r.count);
		tbp_rep_fini(&r2);
	} else if (r.status == TB_OK && r.op == TBP_OP_DRAIN) {
		REQUIRE(tbp_enc_rep_drain(&b, r.req_id, r.timed_out) == TB_OK);
		REQUIRE(tbp_rep_decode(&r2, b.data, b.size) == TB_OK);
		REQUIRE(r2.timed_out == r.timed_out);
		tbp_rep_fini(&r2);
	} else if (r.status == TB_OK && r.op == TBP_OP_SCHED_LIST) {
		REQUIRE(tbp_enc_rep_scheds(
		            &b, r.req_id, r.scheds, r.nscheds) == TB_OK);
		REQUIRE(tbp_rep_decode(&r2, b.data, b.size) == TB_OK);
		REQUIRE(r2.nscheds == r.nscheds);
		for (uint32_t i = 0; i < r.nscheds; i++) {
			REQUIRE(sched_same(&r.scheds[i], &r2.scheds[i], true));
		}
		tbp_rep_fini(&r2);
	} else if (r.status == TB_OK && r.op == TBP_OP_QUEUES) {
		REQUIRE(tbp_enc_rep_queues(
		            &b, r.req_id, r.queues, r.nqueues) == TB_OK);
		REQUIRE(tbp_rep_decode(&r2, b.data, b.size) == TB_OK);
		REQUIRE(r2.nqueues == r.nqueues);
		for (uint32_t i = 0; i < r.nqueues; i++) {
			const tbp_qstat *x = &r.queues[i];
			const tbp_qstat *y = &r2.queues[i];

			REQUIRE(bytes_same(x->name, y->name));
			REQUIRE(x->pending == y->pending &&
			    x->running == y->running &&
			    x->failed == y->failed && x->dead == y->dead &&
			    x->done == y->done &&
			    x->cancelled == y->cancelled);
			REQUIRE(x->paused == y->paused &&
			    x->concurrency == y->concurrency &&
			    x->max_pending == y->max_pending &&
			    x->done_last_min == y->done_last_min &&
			    x->oldest_pending_ms == y->oldest_pending_ms &&
			    x->forever == y->forever &&
			    x->crashloop == y->crashloop);
		}
		tbp_rep_fini(&r2);
	}
	msgpack_sbuffer_destroy(&b);
	tbp_rep_fini(&r);
}

static void
check_event(const uint8_t *data, size_t size)
{
	tbp_event       e;
	tbp_event       e2;
	msgpack_sbuffer b;
	unsigned        sum;
	int             rv;

	rv = tbp_event_decode(&e, data, size);
	if (rv != TB_OK) {
		REQUIRE(rv == TB_EPROTO);
		tbp_event_fini(&e);
		return;
	}
	sum = touch(e.topic) + touch(e.event) + touch(e.queue) +
	    touch(e.handler) + touch(e.result) + touch(e.error);
	(void) sum;
	REQUIRE(e.event.n >= 1);
	REQUIRE(memchr(e.topic.p, 0, e.topic.n) == NULL);

	msgpack_sbuffer_init(&b);
	REQUIRE(tbp_enc_event(&b, &e) == TB_OK);
	REQUIRE(tbp_event_decode(&e2, b.data, b.size) == TB_OK);
	REQUIRE(e2.seq == e.seq && e2.id == e.id && e2.state == e.state);
	REQUIRE(e2.attempt == e.attempt && e2.time == e.time);
	REQUIRE(e2.crashes == e.crashes);
	REQUIRE(e2.duration_us == e.duration_us);
	REQUIRE(bytes_same(e2.event, e.event));
	REQUIRE(bytes_same(e2.result, e.result));
	REQUIRE(bytes_same(e2.error, e.error));
	tbp_event_fini(&e2);
	msgpack_sbuffer_destroy(&b);
	tbp_event_fini(&e);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t used;

	if (tbp_check(data, size, TBP_MAX_DEPTH, &used) == TB_OK) {
		REQUIRE(used > 0 && used <= size);
	}
	check_unpack_agrees(data, size);
	check_req(data, size);
	check_rep(data, size);
	check_event(data, size);
	return (0);
}
