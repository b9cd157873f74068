// loop.h: the broker itself: one libuv loop thread that owns every task.
//
// DESIGN. The loop thread owns the task table, the scheduler heaps, the
// counters and the store's reader connection. Other threads reach it only
// through libuv async handles: the server's inbox (requests decoded on nng
// threads), the store's done list (ops the writer committed), the pool's
// done list (attempts that ran on worker threads) and the handlers'
// finish list (tb_run_finish from other threads).
//
// A task's path: a submit creates a task record (not yet durable) and
// queues its INSERT; when the store reports the commit, the loop replies
// with the id and puts the task in the ready heap (or the due heap when it
// is delayed). Dispatch takes ready tasks while fewer than max-running run,
// marks each running with its attempt counted, and queues that UPDATE; only
// when it has committed does the handler start, so an attempt that crashes
// the broker is still noticed: at the next start the store says the task
// is running, and recovery ends that attempt as interrupted (refunded, one
// crash counted; quarantined at max_crashes; attempt_interrupted). When the
// attempt ends, the loop queues the end state; once that commits it
// publishes the event, answers waiters and forgets the task (status then
// reads the store).
//
// Shutdown (SIGTERM, SIGINT, the shutdown op): new submits get
// shutting_down, nothing new starts, running attempts get shutdown-timeout
// seconds; then they are cancelled and put back to pending with their
// attempt refunded. When every write has committed, the broker publishes a
// final event, closes its sockets and broker_run returns 0.
//
// The work is split by subject over the files listed in brokerimpl.h,
// their private header; this one is what main.c needs.
//
// Threads: every call on the main thread, which becomes the loop thread.
// Lock order: see brokerimpl.h.
// Ownership: broker_open returns a broker the caller frees with
// broker_close.

#ifndef LOOP_H
#define LOOP_H

#include "config.h"

typedef struct broker broker;

// broker_open opens the store (recovering what an earlier run left), the
// pool, the server and the event socket. On success *bp owns the broker.
// Returns TB_OK or an error code after logging why. Main thread, which
// becomes the loop thread.
int broker_open(broker **bp, const config *cfg);

// broker_run runs the loop until shutdown completes. Returns the process
// exit status (0 after a clean shutdown).
int broker_run(broker *b);

// broker_close frees the broker after broker_run (or a failed run).
void broker_close(broker *b);

#endif // LOOP_H
