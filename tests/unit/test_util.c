// test_util.c: broker/util.c's thread start, and that the threads the
// broker starts through it (pool workers here) have every signal blocked,
// so that SIGTERM and SIGINT reach only the loop thread.

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>

#include "pool.h"
#include "util.h"

// blocked_all says whether the calling thread blocks SIGTERM, SIGINT,
// SIGCHLD and SIGUSR1.
static bool
blocked_all(void)
{
	sigset_t cur;

	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	return (sigismember(&cur, SIGTERM) == 1 &&
	    sigismember(&cur, SIGINT) == 1 &&
	    sigismember(&cur, SIGCHLD) == 1 &&
	    sigismember(&cur, SIGUSR1) == 1);
}

static void *
thread_fn(void *arg)
{
	*(bool *) arg = blocked_all();
	return (NULL);
}

static void
test_thread_start_blocks_signals_and_keeps_callers_mask(void **state)
{
	pthread_t t;
	bool      blocked = false;
	sigset_t  before;
	sigset_t  after;

	(void) state;
	pthread_sigmask(SIG_BLOCK, NULL, &before);
	assert_false(sigismember(&before, SIGTERM) == 1); // the test's own
	assert_int_equal(util_thread_start(&t, thread_fn, &blocked), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_true(blocked);
	pthread_sigmask(SIG_BLOCK, NULL, &after);
	assert_false(sigismember(&after, SIGTERM) == 1);
	assert_false(sigismember(&after, SIGINT) == 1);
}

// A pool job that records its worker's mask; the notify wakes the test.
typedef struct mask_job {
	pool_job        job;
	bool            blocked;
	pthread_mutex_t mtx;
	pthread_cond_t  cv;
	bool            done;
} mask_job;

static void
mask_job_run(pool_job *j)
{
	((mask_job *) j)->blocked = blocked_all();
}

static void
mask_job_notify(void *arg)
{
	mask_job *m = arg;

	pthread_mutex_lock(&m->mtx);
	m->done = true;
	pthread_cond_signal(&m->cv);
	pthread_mutex_unlock(&m->mtx);
}

static void
test_pool_workers_block_signals(void **state)
{
	mask_job        m = { .blocked = false, .done = false };
	pool           *p;
	struct timespec deadline;

	(void) state;
	pthread_mutex_init(&m.mtx, NULL);
	pthread_cond_init(&m.cv, NULL);
	m.job.fn = mask_job_run;
	assert_int_equal(pool_open(&p, 2, mask_job_notify, &m), 0);
	pool_submit(p, &m.job);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 10;
	pthread_mutex_lock(&m.mtx);
	while (!m.done) {
		assert_int_not_equal(
		    pthread_cond_timedwait(&m.cv, &m.mtx, &deadline),
		    ETIMEDOUT);
	}
	pthread_mutex_unlock(&m.mtx);
	assert_ptr_equal(pool_take_done(p), &m.job);
	assert_true(m.blocked);
	assert_int_equal(pool_stop(p, 1000, NULL), 0);
	pool_close(p);
	pthread_cond_destroy(&m.cv);
	pthread_mutex_destroy(&m.mtx);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
		    test_thread_start_blocks_signals_and_keeps_callers_mask),
		cmocka_unit_test(test_pool_workers_block_signals),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
