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

#define REQUIRE(cond)                                                       \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__,  \
			    #cond);                                         \
			abort();                                            \
		}                                                           \
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

// reencode_req writes r back with the encoders.
static int
reencode_req(msgpack_sbuffer *b, const tbp_req *r)
{
	char *queue;
	int   rv;

	switch (r->op) {
	case TBP_OP_SUBMIT:
		return (tbp_enc_submit(b, r->req_id, r->tasks, r->ntasks));
	case TBP_OP_STATUS:
	case TBP_OP_CANCEL:
		return (tbp_enc_req_id(b, r->op, r->req_id, r->id));
	case TBP_OP_WAIT:
		return (tbp_enc_wait(b, r->req_id, r->id, r->timeout_ms));
	case TBP_OP_LIST:
		if ((queue = tbp_bytes_dup(r->queue)) == NULL) {
			return (TB_ENOMEM);
		}
		rv = tbp_enc_list(b, r->req_id, queue, r->state, r->limit,
		    r->after_id);
		free(queue);
		return (rv);
	default:
		return (tbp_enc_req_empty(b, r->op, r->req_id));
	}
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

		REQUIRE(t->sid.n == TBP_SID_LEN);
		REQUIRE(t->handler.n >= 1 && t->handler.n <= TBP_MAX_NAME);
		REQUIRE(t->queue.n <= TBP_MAX_NAME);
		REQUIRE(t->payload.n <= TBP_MAX_PAYLOAD);
		sum += touch(t->sid) + touch(t->handler) + touch(t->queue) +
		    touch(t->payload);
	}
	sum += touch(r.queue);
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
	return (touch(t->queue) + touch(t->handler) + touch(t->result) +
	    touch(t->error));
}

static bool
task_same(const tbp_task_info *a, const tbp_task_info *b)
{
	return (a->id == b->id && bytes_same(a->queue, b->queue) &&
	    bytes_same(a->handler, b->handler) && a->state == b->state &&
	    a->attempts == b->attempts && a->max_attempts == b->max_attempts &&
	    a->priority == b->priority && a->created_at == b->created_at &&
	    a->started_at == b->started_at &&
	    a->finished_at == b->finished_at &&
	    bytes_same(a->result, b->result) && bytes_same(a->error, b->error));
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
		sum += (unsigned) r.ids[i] + r.dup[i];
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
