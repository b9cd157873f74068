// pool.h: the worker threads for handlers that block.
//
// DESIGN. N threads wait on one job queue. The loop submits jobs
// (pool_submit); a worker runs job->fn(job) and then moves the job to the
// done list and calls notify, which wakes the loop; the loop takes the done
// list (pool_take_done) and finishes each job on its own thread. So a job
// is touched by a worker only between pool_submit and its appearance on the
// done list. We use our own threads rather than uv_queue_work because the
// libuv pool is process-wide and also serves libuv's file work.
//
// Lock order: only pool.mtx exists.
//
// Threads: pool_open, pool_submit, pool_take_done, pool_stop and
// pool_close on the loop thread; job->fn and notify on a worker.
// Ownership: a submitted job stays the caller's; the pool borrows it until
// pool_take_done (or pool_stop's unrun list) hands it back.

#ifndef POOL_H
#define POOL_H

#include <stdint.h>

typedef struct pool pool;

// pool_job is embedded in the caller's record.
typedef struct pool_job {
	struct pool_job *next; // the pool's link
	void (*fn)(struct pool_job *job);
} pool_job;

// pool_open starts n worker threads and returns once all are running. On
// success *pp owns the pool. notify(arg) is called on a worker thread after
// each job lands on the done list; it must not block. Returns TB_OK,
// TB_ENOMEM or TB_ESYSTEM. Loop thread.
int pool_open(pool **pp, int n, void (*notify)(void *arg), void *arg);

// pool_submit queues job. Loop thread.
void pool_submit(pool *p, pool_job *job);

// pool_take_done returns the finished jobs, oldest first, or NULL.
pool_job *pool_take_done(pool *p);

// pool_busy returns the number of jobs queued or running.
uint32_t pool_busy(pool *p);

// pool_stop asks the workers to exit once idle and waits up to timeout_ms
// for them. Jobs still queued are not run: they are returned through
// *unrunp (linked list, may be NULL). Returns 0 if every thread was joined,
// or the number still busy in a job (those threads are detached and the
// jobs they hold must not be freed by the caller). Loop thread.
int pool_stop(pool *p, int timeout_ms, pool_job **unrunp);

// pool_close frees the pool after pool_stop returned 0. If threads were
// left running, the memory is left too (the process is about to exit).
void pool_close(pool *p);

#endif // POOL_H
