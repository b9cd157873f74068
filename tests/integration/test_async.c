// test_async.c: the asynchronous requests of the client library
// (tb_submit_async, tb_submit_batch_async, tb_wait_async) against the real
// broker: hundreds in flight from one thread, completion through the
// callback and through the completion descriptor, waits that end with
// their task, close with ops in flight, error replies, the in-flight
// bound, and fork.
//
// Waiting is always poll(2) on the completion descriptor, or a condition
// variable signalled by the callbacks, each with a deadline.

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define NFLIGHT 500
#define NTHREADS 4
#define PER_THREAD 200
#define NHELD 20
#define CLOSE_MAX_MS 3000

static int
cmp_id(const void *a, const void *b)
{
	tb_id x = *(const tb_id *) a;
	tb_id y = *(const tb_id *) b;

	return (x < y ? -1 : x > y);
}

// expect_distinct fails unless ids[0..n) are non-zero and distinct (it
// sorts them).
static void
expect_distinct(tb_id *ids, size_t n)
{
	qsort(ids, n, sizeof(*ids), cmp_id);
	for (size_t i = 0; i < n; i++) {
		if (ids[i] == 0 || (i > 0 && ids[i] == ids[i - 1])) {
			print_error(
			    "id %zu of %zu is %llu (zero or repeated)\n", i, n,
			    (unsigned long long) ids[i]);
			fail();
		}
	}
}

// fd_readable polls fd for up to ms (0: just look). 1 readable, 0 not.
static int
fd_readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int           rv;

	while ((rv = poll(&p, 1, ms)) < 0 && errno == EINTR) { }
	assert_true(rv >= 0);
	return (rv > 0 && (p.revents & POLLIN) != 0);
}

// collect takes n completed ops from c's queue into ops, polling its
// descriptor until the deadline (ms from now); fails the test if they do
// not all come. Each time the descriptor is readable the queue must give
// at least one op (level-triggered, no spurious readiness).
static void
collect(tb_client *c, tb_op **ops, size_t n, int ms)
{
	int64_t deadline = tbh_now_ms() + ms;
	size_t  got      = 0;
	int     fd;

	TBH_OK(tb_client_completion_fd(c, &fd));
	while (got < n) {
		int64_t left = deadline - tbh_now_ms();
		size_t  before;

		if (left <= 0 || !fd_readable(fd, (int) left)) {
			print_error(
			    "%zu of %zu ops completed in %d ms\n", got, n, ms);
			fail();
		}
		before = got;
		while (got < n &&
		    tb_client_next_completed(c, &ops[got]) == TB_OK) {
			got++;
		}
		assert_true(got > before);
	}
}

// async_noop_ok submits one noop asynchronously through the queue and
// fails unless it is acknowledged.
static void
async_noop_ok(tb_client *c)
{
	tb_op *op;

	TBH_OK(tb_submit_async(c, "noop", NULL, 0, NULL, NULL, NULL, NULL));
	collect(c, &op, 1, TBH_MS(10000));
	TBH_OK(tb_op_status(op));
	tb_op_free(op);
}

// One thread starts NFLIGHT single-task submits before it takes any
// completion, then gets them all through poll(2) on the completion
// descriptor: each acknowledged, ids distinct, each arg back once. Then
// NFLIGHT waits, again all in flight at once, see every task end done.
// Drained, the descriptor is no longer readable.
static void
test_500_submits_in_flight_from_one_thread(void **state)
{
	tbh_fix *f = *state;
	tb_op  **ops;
	tb_op   *op;
	tb_id   *ids;
	bool    *seen;
	int      fd;

	tbh_fix_start(f, NULL);
	ops  = calloc(NFLIGHT, sizeof(*ops));
	ids  = calloc(NFLIGHT, sizeof(*ids));
	seen = calloc(NFLIGHT, sizeof(*seen));
	assert_true(ops != NULL && ids != NULL && seen != NULL);
	TBH_OK(tb_client_completion_fd(f->c, &fd));
	assert_false(fd_readable(fd, 0));
	TBH_RV(tb_client_next_completed(f->c, &op), TB_ETIMEDOUT);
	assert_null(op);

	for (uintptr_t i = 0; i < NFLIGHT; i++) {
		TBH_OK(tb_submit_async(
		    f->c, "noop", NULL, 0, NULL, NULL, (void *) i, NULL));
	}
	collect(f->c, ops, NFLIGHT, TBH_MS(20000));
	for (size_t i = 0; i < NFLIGHT; i++) {
		uintptr_t k = (uintptr_t) tb_op_arg(ops[i]);
		size_t    n = 0;

		TBH_OK(tb_op_status(ops[i]));
		assert_true(k < NFLIGHT && !seen[k]);
		seen[k] = true;
		ids[k]  = tb_op_id(ops[i]);
		assert_non_null(tb_op_ids(ops[i], &n));
		assert_int_equal(n, 1);
		assert_null(tb_op_task(ops[i]));
		tb_op_free(ops[i]);
	}
	// Drained: not readable any more, and nothing to take.
	assert_false(fd_readable(fd, 0));
	TBH_RV(tb_client_next_completed(f->c, &op), TB_ETIMEDOUT);

	for (size_t i = 0; i < NFLIGHT; i++) {
		TBH_OK(tb_wait_async(f->c, ids[i], TBH_MS(10000), NULL,
		    (void *) (uintptr_t) i, NULL));
	}
	collect(f->c, ops, NFLIGHT, TBH_MS(30000));
	for (size_t i = 0; i < NFLIGHT; i++) {
		uintptr_t      k = (uintptr_t) tb_op_arg(ops[i]);
		const tb_task *t = tb_op_task(ops[i]);

		TBH_OK(tb_op_status(ops[i]));
		assert_non_null(t);
		assert_int_equal(tb_task_id(t), ids[k]);
		assert_int_equal(tb_task_state(t), TB_STATE_DONE);
		assert_int_equal(tb_op_id(ops[i]), 0);
		tb_op_free(ops[i]);
	}
	assert_false(fd_readable(fd, 0));
	expect_distinct(ids, NFLIGHT);
	free(seen);
	free(ids);
	free(ops);
	f->passed = true;
}

// cb_box collects the ops delivered to on_done.
typedef struct cb_box {
	pthread_mutex_t mtx;
	pthread_cond_t  cv;
	size_t          n;
	size_t          want;
	tb_id          *ids;    // by arg, for submits
	int            *status; // by arg
	bool            keep;   // keep the ops (in ops) instead of freeing
	tb_op         **ops;
	bool            on_caller_thread; // a callback ran on main
	pthread_t       main;
} cb_box;

static void
box_init(cb_box *b, size_t want)
{
	memset(b, 0, sizeof(*b));
	pthread_mutex_init(&b->mtx, NULL);
	pthread_cond_init(&b->cv, NULL);
	b->want   = want;
	b->ids    = calloc(want, sizeof(*b->ids));
	b->status = calloc(want, sizeof(*b->status));
	b->ops    = calloc(want, sizeof(*b->ops));
	b->main   = pthread_self();
	assert_true(b->ids != NULL && b->status != NULL && b->ops != NULL);
}

static void
box_fini(cb_box *b)
{
	free(b->ids);
	free(b->status);
	free(b->ops);
	pthread_cond_destroy(&b->cv);
	pthread_mutex_destroy(&b->mtx);
}

// The callback: records the op's outcome under its arg (an index into the
// box; the box itself is global to the test through box_of).
static cb_box *box_of;

static void
on_done(tb_op *op, void *arg)
{
	cb_box   *b = box_of;
	uintptr_t k = (uintptr_t) arg;

	pthread_mutex_lock(&b->mtx);
	if (pthread_equal(pthread_self(), b->main)) {
		b->on_caller_thread = true;
	}
	if (k < b->want) {
		b->ids[k]    = tb_op_id(op);
		b->status[k] = tb_op_status(op);
	}
	if (b->keep && b->n < b->want) {
		b->ops[b->n] = op;
	} else {
		tb_op_free(op); // in the op's own callback
	}
	b->n++;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mtx);
}

// box_wait waits until want callbacks have run or ms pass; returns how
// many ran.
static size_t
box_wait(cb_box *b, int ms)
{
	struct timespec ts;
	size_t          n;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long) (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&b->mtx);
	while (b->n < b->want &&
	    pthread_cond_timedwait(&b->cv, &b->mtx, &ts) != ETIMEDOUT) { }
	n = b->n;
	pthread_mutex_unlock(&b->mtx);
	return (n);
}

// NFLIGHT submits from one thread completed through the callback, which
// runs on an nng thread and frees each op: every one acknowledged with a
// distinct id, every task ends done.
static void
test_500_submits_completed_by_callback(void **state)
{
	tbh_fix *f = *state;
	cb_box   b;

	tbh_fix_start(f, NULL);
	box_init(&b, NFLIGHT);
	box_of = &b;
	for (uintptr_t i = 0; i < NFLIGHT; i++) {
		TBH_OK(tb_submit_async(
		    f->c, "noop", NULL, 0, NULL, on_done, (void *) i, NULL));
	}
	assert_int_equal(box_wait(&b, TBH_MS(20000)), NFLIGHT);
	assert_false(b.on_caller_thread);
	for (size_t i = 0; i < NFLIGHT; i++) {
		TBH_OK(b.status[i]);
	}
	for (size_t i = 0; i < NFLIGHT; i++) {
		tb_task *t = tbh_wait_final(f->c, b.ids[i], TBH_MS(10000));
		assert_int_equal(tb_task_state(t), TB_STATE_DONE);
		tb_task_free(t);
	}
	expect_distinct(b.ids, NFLIGHT);
	assert_int_equal(tbh_count(f->c, NULL, TB_STATE_DONE), NFLIGHT);
	box_fini(&b);
	f->passed = true;
}

typedef struct thr_arg {
	tb_client *c;
	uintptr_t  base;
	int        rv;
} thr_arg;

static void *
thr_submit(void *arg)
{
	thr_arg *a = arg;

	a->rv = TB_OK;
	for (uintptr_t i = 0; i < PER_THREAD && a->rv == TB_OK; i++) {
		a->rv = tb_submit_async(a->c, "noop", NULL, 0, NULL, on_done,
		    (void *) (a->base + i), NULL);
	}
	return (NULL);
}

// NTHREADS threads start async submits on one client at once: every one
// is acknowledged, all ids distinct.
static void
test_many_threads_submit_async_on_one_client(void **state)
{
	tbh_fix  *f = *state;
	pthread_t th[NTHREADS];
	thr_arg   a[NTHREADS];
	cb_box    b;

	tbh_fix_start(f, NULL);
	box_init(&b, NTHREADS * PER_THREAD);
	box_of = &b;
	for (int i = 0; i < NTHREADS; i++) {
		a[i].c    = f->c;
		a[i].base = (uintptr_t) i * PER_THREAD;
		assert_int_equal(
		    pthread_create(&th[i], NULL, thr_submit, &a[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		TBH_OK(a[i].rv);
	}
	assert_int_equal(box_wait(&b, TBH_MS(20000)), NTHREADS * PER_THREAD);
	for (size_t i = 0; i < NTHREADS * PER_THREAD; i++) {
		TBH_OK(b.status[i]);
	}
	expect_distinct(b.ids, NTHREADS * PER_THREAD);
	box_fini(&b);
	f->passed = true;
}

// A batch submitted asynchronously: n ids in the tasks' order (ids
// increase), through the queue.
static void
test_batch_async_gives_ids_in_order(void **state)
{
	tbh_fix     *f = *state;
	tb_task_spec specs[10];
	tb_op       *op;
	tb_op       *started = NULL;
	const tb_id *ids;
	size_t       n = 0;

	tbh_fix_start(f, NULL);
	for (int i = 0; i < 10; i++) {
		specs[i].handler     = "noop";
		specs[i].payload     = NULL;
		specs[i].payload_len = 0;
		specs[i].opts        = NULL;
	}
	TBH_OK(tb_submit_batch_async(f->c, specs, 10, NULL, NULL, &started));
	assert_non_null(started);
	collect(f->c, &op, 1, TBH_MS(10000));
	assert_ptr_equal(op, started);
	TBH_OK(tb_op_status(op));
	ids = tb_op_ids(op, &n);
	assert_int_equal(n, 10);
	for (size_t i = 1; i < n; i++) {
		assert_true(ids[i] > ids[i - 1]);
	}
	assert_int_equal(tb_op_id(op), ids[0]);
	tb_op_free(op);
	TBH_RV(tb_submit_batch_async(f->c, specs, 0, NULL, NULL, NULL),
	    TB_EINVAL);
	f->passed = true;
}

// tb_wait_async on a task that sleeps 300 ms completes when the task
// ends (not before), with the task done; one with a 200 ms timeout on a
// task that sleeps 5 s completes with TB_ETIMEDOUT and the task as it
// was, which the caller may take.
static void
test_wait_async_completes_when_the_task_ends(void **state)
{
	tbh_fix *f = *state;
	void    *p;
	size_t   len;
	tb_id    quick, slow;
	tb_op   *op;
	tb_task *t;
	int64_t  t0, took;

	tbh_fix_start(f, NULL);
	p     = tbh_pack_ms(300, &len);
	quick = tbh_submit(f->c, "sleep", p, len, NULL);
	free(p);
	p    = tbh_pack_ms(5000, &len);
	slow = tbh_submit(f->c, "sleep", p, len, NULL);
	free(p);

	t0 = tbh_now_ms();
	TBH_OK(tb_wait_async(f->c, quick, TBH_MS(10000), NULL, NULL, NULL));
	collect(f->c, &op, 1, TBH_MS(10000));
	took = tbh_now_ms() - t0;
	TBH_OK(tb_op_status(op));
	assert_int_equal(tb_task_id(tb_op_task(op)), quick);
	assert_int_equal(tb_task_state(tb_op_task(op)), TB_STATE_DONE);
	assert_true(tb_task_finished_at(tb_op_task(op)) > 0);
	if (took < 200) {
		print_error("the wait completed after %lld ms, before the "
		            "300 ms task could end\n",
		    (long long) took);
		fail();
	}
	tb_op_free(op);

	TBH_OK(tb_wait_async(f->c, slow, 200, NULL, NULL, NULL));
	collect(f->c, &op, 1, TBH_MS(10000));
	TBH_RV(tb_op_status(op), TB_ETIMEDOUT);
	t = tb_op_take_task(op);
	assert_non_null(t);
	assert_null(tb_op_task(op));
	tb_op_free(op); // the task is ours now, not freed with the op
	assert_int_equal(tb_task_id(t), slow);
	assert_false(tb_state_is_final(tb_task_state(t)));
	tb_task_free(t);
	f->passed = true;
}

// Error replies reach the op: an unknown handler is TB_ENOHANDLER (no
// ids), a wait on a task that does not exist TB_ENOTFOUND (no task).
// Bad arguments fail the starting call and deliver nothing.
static void
test_error_reply_reaches_the_op(void **state)
{
	tbh_fix *f = *state;
	tb_op   *ops[2];
	tb_op   *op;
	size_t   n = 1;
	int      fd;

	tbh_fix_start(f, NULL);
	TBH_OK(tb_submit_async(
	    f->c, "no_such_handler", NULL, 0, NULL, NULL, (void *) 1, NULL));
	TBH_OK(tb_wait_async(f->c, 999999999, 1000, NULL, (void *) 2, NULL));
	collect(f->c, ops, 2, TBH_MS(10000));
	for (int i = 0; i < 2; i++) {
		if (tb_op_arg(ops[i]) == (void *) 1) {
			TBH_RV(tb_op_status(ops[i]), TB_ENOHANDLER);
			assert_int_equal(tb_op_id(ops[i]), 0);
			assert_null(tb_op_ids(ops[i], &n));
			assert_int_equal(n, 0);
		} else {
			TBH_RV(tb_op_status(ops[i]), TB_ENOTFOUND);
			assert_null(tb_op_task(ops[i]));
		}
		tb_op_free(ops[i]);
	}
	TBH_RV(tb_submit_async(f->c, "", NULL, 0, NULL, NULL, NULL, NULL),
	    TB_EINVAL);
	TBH_RV(tb_submit_async(f->c, "noop", NULL, 5, NULL, NULL, NULL, NULL),
	    TB_EINVAL);
	TBH_RV(tb_wait_async(NULL, 1, 0, NULL, NULL, NULL), TB_EINVAL);
	TBH_RV(tb_client_completion_fd(f->c, NULL), TB_EINVAL);
	TBH_RV(tb_client_next_completed(f->c, NULL), TB_EINVAL);
	TBH_OK(tb_client_completion_fd(f->c, &fd));
	assert_false(fd_readable(fd, 0));
	TBH_RV(tb_client_next_completed(f->c, &op), TB_ETIMEDOUT);
	tb_op_free(NULL);
	f->passed = true;
}

// expect_limit holds n waits on a task that sleeps (the client's bound
// must be n): one more op, a wait or a submit, fails with TB_EBUSY and is
// never delivered; once the task is cancelled the n waits complete, and
// ops start again.
static void
expect_limit(tbh_fix *f, size_t n)
{
	tb_op **ops = calloc(n, sizeof(*ops));
	void   *p;
	size_t  len;
	tb_id   id;
	int     fd;

	assert_non_null(ops);
	p  = tbh_pack_ms(60000, &len);
	id = tbh_submit(f->c, "sleep", p, len, NULL);
	free(p);
	for (size_t i = 0; i < n; i++) {
		TBH_OK(
		    tb_wait_async(f->c, id, TBH_MS(60000), NULL, NULL, NULL));
	}
	TBH_RV(tb_wait_async(f->c, id, 1000, NULL, NULL, NULL), TB_EBUSY);
	TBH_RV(tb_submit_async(f->c, "noop", NULL, 0, NULL, NULL, NULL, NULL),
	    TB_EBUSY);
	// The blocking calls are not bounded by it.
	TBH_OK(tb_cancel(f->c, id, NULL));
	collect(f->c, ops, n, TBH_MS(20000));
	for (size_t i = 0; i < n; i++) {
		TBH_OK(tb_op_status(ops[i]));
		assert_int_equal(
		    tb_task_state(tb_op_task(ops[i])), TB_STATE_CANCELLED);
		tb_op_free(ops[i]);
	}
	free(ops);
	TBH_OK(tb_client_completion_fd(f->c, &fd));
	assert_false(fd_readable(fd, 0)); // the refused ops never came
	async_noop_ok(f->c);
}

// The bound of ops in flight: TB_ASYNC_MAX_INFLIGHT by default, then 4
// once set; out-of-range settings are refused.
static void
test_inflight_limit_gives_ebusy(void **state)
{
	tbh_fix *f = *state;

	tbh_fix_start(f, NULL);
	expect_limit(f, TB_ASYNC_MAX_INFLIGHT);
	TBH_RV(tb_client_set_max_inflight(f->c, 0), TB_EINVAL);
	TBH_RV(tb_client_set_max_inflight(f->c, 65537), TB_EINVAL);
	TBH_OK(tb_client_set_max_inflight(f->c, 4));
	expect_limit(f, 4);
	f->passed = true;
}

// A second client holds NHELD waits with callbacks and NHELD queued ones
// on a task that sleeps 30 s. Closing it returns within CLOSE_MAX_MS;
// before it returns every callback has run with TB_ECLOSED; the queued
// ops are freed by the close (ASan's leak check says so), one op kept by
// a callback is freed after the close, and the broker still answers.
static void
test_close_with_ops_in_flight_completes_them_eclosed(void **state)
{
	tbh_fix   *f = *state;
	tb_client *c;
	cb_box     b;
	void      *p;
	size_t     len;
	tb_id      id;
	int64_t    t0, took;

	tbh_fix_start(f, NULL);
	box_init(&b, NHELD);
	box_of = &b;
	b.keep = true;
	p      = tbh_pack_ms(30000, &len);
	id     = tbh_submit(f->c, "sleep", p, len, NULL);
	free(p);
	assert_int_equal(
	    tbh_wait_state(f->c, id, TB_STATE_RUNNING, TBH_MS(10000)), 0);

	c = tbh_client(&f->b, 0);
	assert_non_null(c);
	for (uintptr_t i = 0; i < NHELD; i++) {
		TBH_OK(tb_wait_async(
		    c, id, TBH_MS(60000), on_done, (void *) i, NULL));
		TBH_OK(tb_wait_async(c, id, TBH_MS(60000), NULL, NULL, NULL));
	}
	// One that completes before the close, kept in the queue.
	TBH_OK(tb_submit_async(c, "noop", NULL, 0, NULL, NULL, NULL, NULL));
	{
		int fd;
		TBH_OK(tb_client_completion_fd(c, &fd));
		assert_true(fd_readable(fd, TBH_MS(10000)));
	}
	assert_int_equal(box_wait(&b, 0), 0); // all still held

	t0 = tbh_now_ms();
	tb_client_close(c);
	took = tbh_now_ms() - t0;
	if (took > CLOSE_MAX_MS) {
		print_error("close took %lld ms\n", (long long) took);
		fail();
	}
	pthread_mutex_lock(&b.mtx);
	assert_int_equal(b.n, NHELD); // all before close returned
	pthread_mutex_unlock(&b.mtx);
	for (size_t i = 0; i < NHELD; i++) {
		TBH_RV(b.status[i], TB_ECLOSED);
		assert_null(tb_op_task(b.ops[i]));
	}
	// Delivered ops outlive their client; the last one frees it.
	for (size_t i = 0; i < NHELD; i++) {
		tb_op_free(b.ops[i]);
	}
	// The broker is fine, and the fixture's client unaffected.
	async_noop_ok(f->c);
	TBH_OK(tb_cancel(f->c, id, NULL));
	box_fini(&b);
	f->passed = true;
}

// A client whose broker is gone: ops in flight end (with TB_ETIMEDOUT at
// their deadline, or TB_ECLOSED at close) and close does not hang.
static void
test_close_after_the_broker_died_with_ops_in_flight(void **state)
{
	tbh_fix   *f = *state;
	tb_client *c;
	cb_box     b;
	int64_t    t0, took;

	tbh_fix_start(f, NULL);
	box_init(&b, NHELD);
	box_of = &b;
	c      = tbh_client(&f->b, 0);
	assert_non_null(c);
	TBH_OK(tb_ping(c, NULL));
	assert_int_equal(tbh_kill9(&f->b), 0);
	for (uintptr_t i = 0; i < NHELD; i++) {
		TBH_OK(tb_submit_async(
		    c, "noop", NULL, 0, NULL, on_done, (void *) i, NULL));
	}
	t0 = tbh_now_ms();
	tb_client_close(c);
	took = tbh_now_ms() - t0;
	if (took > CLOSE_MAX_MS) {
		print_error("close took %lld ms\n", (long long) took);
		fail();
	}
	assert_int_equal(box_wait(&b, 0), NHELD);
	for (size_t i = 0; i < NHELD; i++) {
		TBH_RV(b.status[i], TB_ECLOSED);
	}
	box_fini(&b);
	assert_int_equal(tbh_restart(&f->b), 0);
	f->passed = true;
}

// The broker is killed while NRESTART submits are started and started
// again: nng sends or resends each request after reconnecting, as for the
// blocking calls, so every op is acknowledged, the ids are distinct, and
// the store holds each task once (resent copies were recognised).
#define NRESTART 200

static void
test_async_submits_survive_a_broker_restart(void **state)
{
	tbh_fix *f = *state;
	tb_op   *ops[NRESTART];
	tb_id    ids[NRESTART];

	tbh_fix_start(f, NULL);
	TBH_OK(tb_client_set_timeout(f->c, TBH_MS(20000)));
	// Half just before the kill (in flight or answered as it comes),
	// half while no broker is there (they wait for the reconnection).
	for (int i = 0; i < NRESTART; i++) {
		if (i == NRESTART / 2) {
			assert_int_equal(tbh_kill9(&f->b), 0);
		}
		TBH_OK(tb_submit_async(
		    f->c, "noop", NULL, 0, NULL, NULL, NULL, NULL));
	}
	assert_int_equal(tbh_restart(&f->b), 0);
	collect(f->c, ops, NRESTART, TBH_MS(30000));
	for (int i = 0; i < NRESTART; i++) {
		TBH_OK(tb_op_status(ops[i]));
		ids[i] = tb_op_id(ops[i]);
		tb_op_free(ops[i]);
	}
	expect_distinct(ids, NRESTART);
	assert_int_equal(tbh_count(f->c, NULL, -1), NRESTART);
	f->passed = true;
}

// In a forked child every asynchronous call returns TB_EFORK, freeing an
// op delivered before the fork and closing the client do not abort; the
// parent's client keeps working.
static void
test_async_in_forked_child_returns_efork(void **state)
{
	tbh_fix *f = *state;
	tb_op   *op;
	pid_t    pid;
	int      status;

	tbh_fix_start(f, NULL);
	TBH_OK(tb_submit_async(f->c, "noop", NULL, 0, NULL, NULL, NULL, NULL));
	collect(f->c, &op, 1, TBH_MS(10000));
	pid = fork();
	if (pid == 0) {
		tb_client *c   = f->c;
		tb_op     *o2  = NULL;
		int        fd  = -1;
		int        bad = 0;

		bad |= tb_submit_async(c, "noop", NULL, 0, NULL, NULL, NULL,
		           NULL) != TB_EFORK;
		bad |= tb_wait_async(c, 1, 0, NULL, NULL, NULL) != TB_EFORK;
		bad |= tb_client_completion_fd(c, &fd) != TB_EFORK;
		bad |= tb_client_next_completed(c, &o2) != TB_EFORK;
		tb_op_free(op);
		tb_client_close(c);
		_exit(bad ? 1 : 0);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	tb_op_free(op);
	async_noop_ok(f->c);
	f->passed = true;
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, tbh_teardown)
	const struct CMUnitTest tests[] = {
		T(test_500_submits_in_flight_from_one_thread),
		T(test_500_submits_completed_by_callback),
		T(test_many_threads_submit_async_on_one_client),
		T(test_batch_async_gives_ids_in_order),
		T(test_wait_async_completes_when_the_task_ends),
		T(test_error_reply_reaches_the_op),
		T(test_inflight_limit_gives_ebusy),
		T(test_close_with_ops_in_flight_completes_them_eclosed),
		T(test_close_after_the_broker_died_with_ops_in_flight),
		T(test_async_submits_survive_a_broker_restart),
		T(test_async_in_forked_child_returns_efork),
	};
#undef T
	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
