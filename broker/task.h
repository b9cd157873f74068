// task.h: the in-memory task record and the scheduler's two queues.
//
// DESIGN. The loop thread keeps a small record (task) for every task that
// has not ended, plus tasks whose final state is still being written. Two
// binary heaps order them: the ready heap (higher priority first, then lower
// id, which is FIFO because ids increase) holds tasks that may start now;
// the due heap (earliest run_at first) holds tasks waiting for a delay or a
// retry backoff, so one timer for the earliest entry replaces any polling.
// A task is in at most one heap; task.heap says which and task.heap_idx
// where. Loop thread only; nothing here locks.

#ifndef TASK_H
#define TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uthash.h>

#include <tbtime.h>

#define SCHED_SID_LEN 16

struct tb_run;
struct handler;
struct queue;
struct waiter;
struct ackwait;

enum sched_heap {
	SCHED_NONE  = 0,
	SCHED_READY = 1,
	SCHED_DUE   = 2,
};

// task is the loop's record of one task. Strings and bytes are owned.
typedef struct task {
	uint64_t id;
	uint8_t  sid[SCHED_SID_LEN];
	char    *queue;
	char    *handler;
	uint8_t *payload;
	size_t   payload_len;
	int32_t  priority;
	uint32_t state; // tb_state
	uint32_t attempts;
	uint32_t max_attempts;
	uint32_t timeout_ms;
	int64_t  run_at; // Unix µs
	int64_t  created_at;
	int64_t  started_at;
	int64_t  finished_at;
	uint8_t *result;
	size_t   result_len;
	char    *error;
	char    *key;     // idempotency key, or NULL
	bool     forever; // started again whenever it ends

	// Scheduler state.
	int    heap; // enum sched_heap
	size_t heap_idx;

	// Bookkeeping of the loop (loop.c).
	bool            durable;   // its insert has committed
	bool            starting;  // start write in flight, handler not yet run
	bool            requeue;   // shutdown interrupted it: give it back
	bool            pool;      // its handler runs on the worker pool
	bool            cancelling; // a cancel stops the running attempt
	bool            key_indexed; // in the loop's by-key index
	bool            crashloop;   // forever task restarting too often
	uint32_t        quick_restarts; // forever: restarts since a long run
	uint32_t        window_restarts; // forever: restarts in the window
	int64_t         window_start;    // forever: µs, monotonic
	struct queue   *q;          // its queue
	uint32_t        writes;    // store ops in flight that name this task
	struct tb_run  *run;       // the attempt in progress, if any
	struct waiter  *waiters;   // wait requests for its end
	struct ackwait *ackwaits;  // duplicate submits waiting for its insert
	UT_hash_handle  hh;        // by id
	UT_hash_handle  hh_sid;    // by sid
	UT_hash_handle  hh_key;    // by key, while it has not ended
} task;

// sched_heap_t is a binary heap of task pointers.
typedef struct sched_heapq {
	task  **v;
	size_t  n;
	size_t  cap;
	int     kind; // SCHED_READY or SCHED_DUE
} sched_heapq;

// sched_heapq_init prepares an empty heap of the given kind.
void sched_heapq_init(sched_heapq *h, int kind);

// sched_heapq_fini frees the heap's array (not the tasks).
void sched_heapq_fini(sched_heapq *h);

// sched_push adds t (which must be in no heap). Returns 0, or -1 when out
// of memory (t is then in no heap).
int sched_push(sched_heapq *h, task *t);

// sched_peek returns the first task without removing it, or NULL.
task *sched_peek(const sched_heapq *h);

// sched_pop removes and returns the first task, or NULL when empty.
task *sched_pop(sched_heapq *h);

// sched_remove removes t, which must be in h.
void sched_remove(sched_heapq *h, task *t);

// sched_before is the heap order: true if a comes before b in a heap of
// the given kind.
bool sched_before(int kind, const task *a, const task *b);

// sched_backoff_us returns the delay before retry number `attempts` (the
// attempt that just failed, from 1): base * 2^(attempts-1), capped, with
// "equal jitter" (half fixed, half random from r in [0,1)).
int64_t sched_backoff_us(uint32_t attempts, int64_t base_us, int64_t cap_us,
    double r);

// sched_next_due returns a periodic schedule's first due time strictly
// after t (Unix µs): with every_us > 0, on the grid due + k * every_us
// (due being a due time of the schedule); otherwise the cron's next time.
// To fire every missed time (catch up), pass t = due; to skip missed ones,
// pass t = now.
int64_t sched_next_due(
    int64_t every_us, const tbt_cron *cron, int64_t due, int64_t t);

// sched_sid writes the submission id of the task a schedule named name
// fires for due time due: always the same for the same pair, so a fire
// repeated after a crash is recognised by the store as the same task.
void sched_sid(const char *name, int64_t due, uint8_t sid[SCHED_SID_LEN]);

#endif // TASK_H
