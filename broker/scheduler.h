// scheduler.h: the scheduler's heaps and its pure decisions (prefix
// sched_). Not named sched.h: with broker/ on the include path that name
// would hide the system <sched.h>, which <pthread.h> includes.
//
// DESIGN. Two kinds of binary heap order waiting tasks: a ready heap
// (higher priority first, then lower id, which is FIFO because ids
// increase) holds tasks that may start now; the due heap (earliest run_at
// first) holds tasks waiting for a delay or a retry backoff, so one timer
// for the earliest entry replaces any polling. A task is in at most one
// heap; task.heap says which and task.heap_idx where.
//
// The decisions the loop takes about a task are pure functions here, with
// every input an argument (the clock and the random jitter too), so they
// are unit-tested without a broker: how an ended attempt ends the task
// (sched_outcome), how an interrupted attempt ends it (sched_interrupted),
// the retry backoff (sched_backoff_us), a forever task's
// restart delay and crash-loop state (sched_forever_restart), backpressure
// (sched_admit), and a periodic schedule's due times (sched_next_due,
// sched_sid).
//
// Threads: loop thread only; nothing here locks.
// Ownership: a heap holds pointers to tasks it does not own.

#ifndef SCHEDULER_H
#define SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tbtime.h>

#include "taskrec.h"

struct task;

enum sched_heap {
	SCHED_NONE  = 0,
	SCHED_READY = 1,
	SCHED_DUE   = 2,
};

// sched_heapq is a binary heap of task pointers.
typedef struct sched_heapq {
	struct task **v;
	size_t        n;
	size_t        cap;
	int           kind; // SCHED_READY or SCHED_DUE
} sched_heapq;

// sched_heapq_init prepares an empty heap of the given kind.
void sched_heapq_init(sched_heapq *h, int kind);

// sched_heapq_fini frees the heap's array (not the tasks).
void sched_heapq_fini(sched_heapq *h);

// sched_push adds t (which must be in no heap). Returns 0, or -1 when out
// of memory (t is then in no heap).
int sched_push(sched_heapq *h, struct task *t);

// sched_peek returns the first task without removing it, or NULL.
struct task *sched_peek(const sched_heapq *h);

// sched_pop removes and returns the first task, or NULL when empty.
struct task *sched_pop(sched_heapq *h);

// sched_remove removes t, which must be in h.
void sched_remove(sched_heapq *h, struct task *t);

// sched_before is the heap order: true if a comes before b in a heap of
// the given kind.
bool sched_before(int kind, const struct task *a, const struct task *b);

// sched_backoff_us returns the delay before retry number `attempts` (the
// attempt that just failed, from 1): base * 2^(attempts-1), capped, with
// "equal jitter" (half fixed, half random from r in [0,1)).
int64_t sched_backoff_us(
    uint32_t attempts, int64_t base_us, int64_t cap_us, double r);

// sched_end is how an attempt ended, as far as the outcome depends on it.
typedef struct sched_end {
	bool     requeue;    // shutdown interrupted it
	bool     cancelling; // a cancel request stopped it
	bool     forever;    // the task restarts whenever it ends
	bool     failed;     // the attempt failed (a timeout counts)
	bool     no_retry;   // the handler marked the failure final
	uint32_t attempts;   // attempts counted, this one included
	uint32_t max_attempts;
} sched_end;

enum sched_outcome {
	SCHED_REQUEUE = 0, // back to pending, the attempt refunded
	SCHED_CANCELLED,   // ends cancelled
	SCHED_RESTART,     // a forever task starts again
	SCHED_DONE,        // ends done
	SCHED_RETRY,       // failed: pending again after a backoff
	SCHED_DEAD,        // failed for the last time
};

// sched_outcome returns what becomes of a task whose attempt ended as e
// says (an enum sched_outcome). In order: an interrupted attempt is given
// back; a cancel ends the task whatever the attempt did; a forever task
// restarts however it ended; success is done; a failure is retried while
// attempts remain and the handler did not forbid it; else the task is dead.
int sched_outcome(const sched_end *e);

// sched_crash is what becomes of a task whose attempt was interrupted: cut
// short by the death of the broker (found running at start) or of the
// worker that ran it, with no outcome of its own.
typedef struct sched_crash {
	uint32_t attempts; // the task's attempts, the interrupted one refunded
	uint32_t crashes;  // its crashes, this one counted
} sched_crash;

enum sched_crash_outcome {
	SCHED_CRASH_READY = 0,  // pending again, ready at once
	SCHED_CRASH_QUARANTINE, // crashed max_crashes times: ends dead
	SCHED_CRASH_CANCELLED,  // a cancel was asked for: ends cancelled
};

// sched_interrupted decides what becomes of a task whose attempt was
// interrupted: attempts (that attempt included) and crashes are the task's
// figures before it, max_crashes its limit (0 counts as 1: a limit was
// never set, and the task must not loop). A crash is not a failure: the
// attempt is given back (attempts - 1, never below 0) and counted in
// crashes instead (+1, saturating). cancelling (a cancel stopped, or was
// about to stop, the attempt) ends the task cancelled; otherwise it is
// quarantined once crashes reaches max_crashes, else ready again. *cp
// receives the new figures. Returns an enum sched_crash_outcome.
int sched_interrupted(uint32_t attempts, uint32_t crashes,
    uint32_t max_crashes, bool cancelling, sched_crash *cp);

// sched_forever is a forever task's restart history.
typedef struct sched_forever {
	uint32_t quick_restarts;  // restarts since a run of at least reset_us
	uint32_t window_restarts; // restarts in the current window
	int64_t  window_start;    // µs, monotonic; 0: no window yet
	bool     crashloop;       // restarting too often
} sched_forever;

// sched_forever_cfg holds the broker's forever settings, in µs.
typedef struct sched_forever_cfg {
	int64_t  reset_us;           // a run this long resets the backoff
	int64_t  backoff_us;         // first restart delay (before jitter)
	int64_t  backoff_max_us;     // its cap
	int64_t  window_us;          // crash-loop window
	uint32_t crashloop_restarts; // restarts in a window that make a loop
} sched_forever_cfg;

// SCHED_FOREVER_* are the flags sched_forever_restart reports about
// crashloop; both are set when a long run ended a crash loop and the
// restart count of the window made it one again.
enum sched_forever_change {
	SCHED_FOREVER_RECOVERED = 1, // a long run ended the crash loop
	SCHED_FOREVER_LOOPING   = 2, // became a crash loop with this restart
};

// sched_forever_restart records in f that a run of dur_us ended at mono
// (monotonic µs) and returns the delay in µs before the next start: none
// after a run of at least cfg->reset_us (which also resets the backoff and
// ends a crash loop), else an exponential backoff with equal jitter from r
// in [0,1). cfg->crashloop_restarts restarts within cfg->window_us make it
// a crash loop. *changep (may be NULL) receives the SCHED_FOREVER_* flags
// of what changed (0: nothing).
int64_t sched_forever_restart(sched_forever *f, const sched_forever_cfg *cfg,
    uint64_t dur_us, int64_t mono, double r, int *changep);

// sched_admit is backpressure: TB_OK if fresh new tasks fit next to the
// waiting ones under limit (0: no limit), else TB_EQUEUEFULL.
int sched_admit(uint64_t waiting, uint64_t fresh, uint64_t limit);

// sched_next_due returns a periodic schedule's first due time strictly
// after t (Unix µs): with every_us > 0, on the grid due + k * every_us
// (due being a due time of the schedule); otherwise the cron's next time.
// To fire every missed time (catch up), pass t = due; to skip missed ones,
// pass t = now.
int64_t sched_next_due(
    int64_t every_us, const tbt_cron *cron, int64_t due, int64_t t);

// The broker's arithmetic on the numbers a request carries lives in the
// four functions below, so that tests/fuzz/fuzz_tbp_struct.c runs the very
// code the loop runs on every value the decoder lets through. Each relies
// on the decoder's range checks (tbp.h: TBP_MAX_DURATION_MS,
// TBP_MAX_TIME_US) and asserts them: within those bounds, and with a clock
// within TBP_MAX_TIME_US of the epoch, nothing overflows.

// sched_age_cutoff returns the creation time (Unix µs) of a task that is
// age_ms old at now: list's min_age_ms and max_age_ms filters, purge's
// min_age_ms.
int64_t sched_age_cutoff(int64_t now, uint64_t age_ms);

// sched_run_at returns when a submitted task may first start: its run_at
// if it gives one (> 0), else delay_ms after now.
int64_t sched_run_at(int64_t now, int64_t run_at, uint32_t delay_ms);

// sched_every_us is a periodic schedule's period, every_ms, in µs.
int64_t sched_every_us(uint64_t every_ms);

// sched_hold_ms returns how long a wait or drain is held: timeout_ms, or
// max_ms when timeout_ms is negative (the request's "as long as you
// allow") or above max_ms.
int64_t sched_hold_ms(int64_t timeout_ms, int64_t max_ms);

// sched_sid writes the submission id of the task a schedule named name
// fires for due time due: always the same for the same pair, so a fire
// repeated after a crash is recognised by the store as the same task.
void sched_sid(const char *name, int64_t due, uint8_t sid[TB_SID_LEN]);

#endif // SCHEDULER_H
