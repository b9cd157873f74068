// task.h: the loop's record of one task.
//
// DESIGN. The loop thread keeps a task record for every task that has not
// ended, and for ended tasks whose final write is still in flight or that
// a request still refers to. The record begins with the stored fields
// (taskrec.h), then what the scheduler and the loop keep about it. The
// table that finds records (by id, submission id and key) is in task.c.
//
// Threads: loop thread only; nothing here locks.
// Ownership: strings and bytes of the core are owned by the record; q, run,
// waiters and ackwaits belong to the loop modules that name them.

#ifndef TASK_H
#define TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uthash.h>

#include "scheduler.h"
#include "taskrec.h"

struct tb_run;
struct queue;
struct waiter;
struct ackwait;
struct wheap;
struct wjob;
typedef struct wheap wheap;
typedef struct wjob  wjob;

// TASK_FMT and TASK_ARGS(t) name task t in a log line with its queue and
// handler, so that every line about a task can be found by any of them:
// log_info(TASK_FMT ": cancelled", TASK_ARGS(t)).
#define TASK_FMT "task %" PRIu64 " (queue %s, handler %s)"
#define TASK_ARGS(t) (t)->id, (t)->queue, (t)->handler

// task is the loop's record of one task.
typedef struct task {
	union {
		taskrec core; // the stored fields as one struct
		struct {
			TASKREC_FIELDS
		};
	};

	// Scheduler state (scheduler.c).
	int    heap; // enum sched_heap
	size_t heap_idx;

	// Bookkeeping of the loop.
	bool            durable;  // its insert has committed
	bool            starting; // start write in flight, handler not yet run
	bool            slot;     // counted in b->running and q->running
	bool            requeue;  // shutdown interrupted it: give it back
	bool            pool;     // its handler runs on the worker pool
	bool            cancelling;  // a cancel stops the running attempt
	bool            key_indexed; // in the loop's by-key index
	sched_forever   fv;          // forever: restart history, crash loop
	struct queue   *q;           // its queue
	uint32_t        writes;      // store ops in flight that name this task
	struct tb_run  *run;         // the attempt in progress, if any
	wheap          *wq;   // a worker handler's: its ready heap (worker.c)
	wjob           *wjob; // its place on a worker, from dispatch to end
	struct waiter  *waiters;  // wait requests for its end
	struct ackwait *ackwaits; // duplicate submits waiting for its insert
	UT_hash_handle  hh;       // by id
	UT_hash_handle  hh_sid;   // by sid
	UT_hash_handle  hh_key;   // by key, while it has not ended
} task;

#endif // TASK_H
