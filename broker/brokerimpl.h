// brokerimpl.h: the broker's private header, shared by the loop-thread
// files (loop.c, task.c, queue.c, attempt.c, submit.c, held.c,
// store_ops.c, reply.c, periodic.c, prune.c, shutdown.c and ops/).
//
// DESIGN. One libuv loop thread owns every structure declared here: the
// task table, the queues, the scheduler's heaps, the schedules, the held
// requests and the figures. Nothing here locks. Other threads reach the
// loop only by posting to a list and waking it with uv_async_send, and the
// loop works through the whole list on its own thread.
//
// The files depend on each other one way, each only on those below it:
//
//   ops/        the request handlers and the op table (ops.c)
//   periodic.c  periodic schedules fire tasks through submit
//   shutdown.c  phases, deadline, teardown; stops attempts
//   attempt.c   dispatch, start, launch, timeouts, stop, end of attempts,
//               interrupted attempts (crashes, quarantine)
//   submit.c    accepting tasks: dedupe, keys, backpressure, reply
//   prune.c     retention: deleting ended tasks in small batches
//   store_ops.c store ops with the loop's context; their hand-back
//   held.c      requests held past their handler: waiters, drainers,
//               multi-part replies
//   reply.c     where an error code becomes a wire reply
//   task.c      the task table and the conversions between task shapes
//   queue.c     queue records and figures
//   scheduler.c heaps and pure decisions (prefix sched_)
//   store.c, server.c, pool.c, events.c, handlers/, log.c, util.c
//
// loop.c sits above all of them: it opens, runs and closes the loop and
// wires the async wake-ups, the prepare pass and recovery at start.
//
// Threads of the broker:
//
//   thread            runs                          touches loop state
//   loop (main)       everything in this header     owns it
//   nng threads       server.c receive/decode,      no: post to the
//                     send completions; http        server's inbox
//   store writer      store.c transactions          no: done list
//   pool workers      pool handlers' run calls      no: done list
//   sqlite writers    handlers/sqlite.c batches     no: tb_run_finish
//   http resolvers    handlers/http.c getaddrinfo   no: tb_run_finish
//   exec reaper       none: libuv's signal pipe     n/a
//
// Lock order: the loop holds no lock while it calls into another module.
// The leaf locks are srv.mtx (server inbox), store.mtx (submit queue and
// done list), pool.mtx (job queue and done list) and the handlers' own;
// none is held while another is taken.

#ifndef BROKERIMPL_H
#define BROKERIMPL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <uthash.h>
#include <uv.h>

#include <tbp.h>
#include <tbtime.h>

#include "config.h"
#include "events.h"
#include "handlers/handlers.h"
#include "loop.h"
#include "pool.h"
#include "remote.h"
#include "scheduler.h"
#include "server.h"
#include "store.h"
#include "task.h"

#define WAIT_MAX_MS 3600000LL // a held wait, cancel or drain: an hour

enum broker_phase {
	PHASE_RUNNING   = 0,
	PHASE_DRAINING  = 1, // running attempts may finish
	PHASE_FINISHING = 2, // waiting for the last writes
	PHASE_CLOSING   = 3, // sockets closing
};

typedef struct sop        sop;
typedef struct submit_ctx submit_ctx;
typedef struct multi_ctx  multi_ctx;
typedef struct drainer    drainer;
typedef struct whandler   whandler;
typedef struct worker     worker;

// queue is one named queue: its settings, its ready tasks and its figures.
// Queues are created on first use and live as long as the broker.
typedef struct queue {
	char          *name;
	bool           paused;
	uint32_t       concurrency; // 0: no limit
	uint64_t       max_pending; // 0: no limit
	uint32_t       max_attempts;
	uint32_t       max_crashes;
	uint32_t       timeout_ms;
	int64_t        backoff_us;
	int64_t        backoff_max_us;
	sched_heapq    ready;      // loop-handler tasks that may start
	sched_heapq    ready_pool; // pool-handler tasks that may start
	struct wheap  *wheaps;     // worker handlers' ready heaps (worker.c)
	uint64_t       counts[TB_STATE_CANCELLED + 1];
	uint32_t       running;
	uint64_t       inflight; // accepted, insert not yet committed
	uint32_t       forever;
	uint32_t       crashloop;
	uint64_t       scratch;      // a pass's per-queue figure (see users)
	int64_t        ring_sec[60]; // tasks done per second, last minute
	uint32_t       ring_n[60];
	UT_hash_handle hh;
} queue;

// periodic is one periodic schedule; sc holds its definition and state.
typedef struct periodic {
	store_sched   *sc;
	tbt_cron       cron;
	UT_hash_handle hh;
} periodic;

// sop_done_fn is a store op's completion: called on the loop thread once
// the op's transaction has committed or failed (w->op.rv says which), in
// the order the ops were submitted. The op is freed after it returns.
typedef void (*sop_done_fn)(struct broker *b, sop *w);

// sop is one store op with the loop's context. The prefix is sop_ rather
// than store_ops_, which would read as store.c's own.
struct sop {
	store_op     op; // op.arg points back at the sop
	sop_done_fn  done;
	task        *t;        // the task the op writes, if any
	submit_ctx  *sc;       // a submit's context
	multi_ctx   *mc;       // a multi-part reply this op is one part of
	queue       *q;        // a delete by queue: whose figures to adjust
	uint64_t    *ids;      // a delete by ids: owned
	store_sched *sc_own;   // a schedule copy owned by the op
	uint8_t     *result;   // a task write's copy of the result: owned
	char        *error;    // and of the error text: owned
	srv_req     *req;      // answered once committed
	const char  *event;    // published once committed
	uint32_t     ev_state; // state and attempt the event reports
	uint32_t     ev_attempt;
	uint64_t     ev_dur;
};

struct broker {
	const config *cfg;
	uv_loop_t     loop;
	store        *st;
	pool         *pl;
	srv          *sv;
	events       *ev;
	remote       *rem; // token, TLS, refusal log (remote.h)
	uv_async_t    store_async;
	uv_async_t    pool_async;
	uv_signal_t   sigterm;
	uv_signal_t   sigint;
	uv_timer_t    due_timer;
	uv_timer_t    shutdown_timer;
	uv_timer_t    linger_timer;
	uv_timer_t    sched_timer;
	uv_timer_t    prune_timer;
	uv_timer_t    worker_timer;
	uv_timer_t    notify_timer;   // STATUS to systemd (notify.c)
	uv_timer_t    watchdog_timer; // WATCHDOG=1 to systemd (notify.c)
	uv_prepare_t  prepare;
	bool          st_stopped;
	atomic_bool   pool_gone; // the pool no longer wakes the loop

	task       *by_id;  // uthash, hh
	task       *by_sid; // uthash, hh_sid
	task       *by_key; // uthash, hh_key
	queue      *queues; // uthash, hh
	periodic   *scheds; // uthash, hh
	drainer    *drainers;
	whandler   *whandlers; // uthash, hh (worker.c)
	worker     *workers;   // connected workers, a list (worker.c)
	uint64_t    next_worker_id;
	bool        worker_flush; // a worker has something to be sent
	sched_heapq due;
	uint64_t    inflight;   // accepted, insert not yet committed
	uint32_t    prunes;     // prune ops in flight
	bool        prune_more; // the last pass hit its limit
	bool        check_drain;
	bool        need_dispatch;
	bool        req_held;       // the request being handled is held
	const char *shutdown_why;   // a shutdown to begin at the next pass
	int64_t     admin_gid;      // --admin-group's gid; -1: none
	int64_t     refused_log_us; // when a refusal was last logged
	uint64_t    next_id;
	uint64_t    counts[TB_STATE_CANCELLED + 1];
	uint64_t    submitted;
	uint64_t    completed;
	uint32_t    running;      // tasks in state running
	uint32_t    running_pool; // of those, on pool handlers
	int64_t     start_mono;
	int         phase; // enum broker_phase
	int         linger_ticks;
	int         exit_code;
};

// ---- task.c: the task table and the conversions between task shapes ----

// task_free frees t and everything it owns. Accepts NULL.
void task_free(task *t);

// task_find returns the task with id, or NULL.
task *task_find(broker *b, uint64_t id);

// task_find_key returns the unfinished task with key[0..len), or NULL.
task *task_find_key(broker *b, const char *key, size_t len);

// task_known finds the task a submitted entry refers to: the same
// submission (a resent copy) or, with a key, an unfinished task with that
// key. *existingp says which (true: by key).
task *task_known(broker *b, const tbp_task_in *in, bool *existingp);

// task_index adds t to the table (and to the key index while it has not
// ended and no other task holds its key); task_unindex takes it out.
void task_index(broker *b, task *t);
void task_unindex(broker *b, task *t);

// task_key_index puts t in the key index if its key is free.
void task_key_index(broker *b, task *t);

// task_set_state moves t to state, keeping the broker's and its queue's
// figures. A task that ends leaves the key index: its key may be used
// again.
void task_set_state(broker *b, task *t, uint32_t state);

// task_end moves t to a final state now; why (may be NULL: keep it)
// replaces its error text.
void task_end(broker *b, task *t, uint32_t state, const char *why);

// task_forget takes t out of the table and frees it.
void task_forget(broker *b, task *t);

// task_info fills ti with views of c (valid while c is unchanged).
void task_info(const taskrec *c, tbp_task_info *ti);

// task_from_rec builds a task from a stored row, taking over the row's
// memory (r is freed). NULL when out of memory (r is freed too).
task *task_from_rec(broker *b, store_rec *r);

// task_from_in builds a new pending task of queue q from a submitted
// entry, with the next id. NULL when out of memory.
task *task_from_in(broker *b, queue *q, const tbp_task_in *in, int64_t now);

// task_schedule puts a durable, waiting task in the heap its run_at calls
// for and asks for a dispatch; out of memory it logs that the task runs
// after a restart.
void task_schedule(broker *b, task *t);

// task_push puts t in the heap its run_at calls for at now. Returns 0 or
// -1 when out of memory.
int task_push(broker *b, task *t, int64_t now);

// task_unschedule takes a waiting task out of whichever heap holds it.
void task_unschedule(broker *b, task *t);

// ---- queue.c: queue records and figures ---------------------------------

// queue_get returns the queue named name, creating it with the settings of
// its [queue NAME] section (or the broker-wide ones) on first use. NULL
// only when out of memory.
queue *queue_get(broker *b, const char *name);

// queue_of_in returns the queue a submitted entry names ("default" if
// none), or NULL (out of memory, or a name over the limit).
queue *queue_of_in(broker *b, const tbp_task_in *in);

// queue_free frees q and its heaps (not the tasks).
void queue_free(queue *q);

// queue_note_done counts a task that ended done, for "done in the last
// minute".
void queue_note_done(queue *q, int64_t now_us);

// queue_waiting is how many of q's tasks wait to run (backpressure counts
// these and the inserts not yet committed).
uint64_t queue_waiting(const queue *q);

// queue_can_start says whether q may start another task now.
bool queue_can_start(const queue *q);

// queue_deleted takes n tasks in state that the store deleted off q's
// and the broker's figures.
void queue_deleted(broker *b, queue *q, uint32_t state, uint64_t n);

// queue_info fills s with q's figures at now; q->scratch must hold the
// created_at of its oldest waiting task (0: none).
void queue_info(const queue *q, int64_t now, tbp_qstat *s);

// ---- reply.c: the one place an error code becomes a wire reply ----------

// reply_send answers req: with req->out when rv is TB_OK, else with the
// error reply for rv. The loop must not touch req afterwards.
void reply_send(srv_req *req, int rv);

// reply_error answers req with the error reply for code (msg NULL: the
// code's message).
void reply_error(srv_req *req, int code, const char *msg);

// reply_task answers a status, wait or cancel request with ti.
void reply_task(srv_req *req, const tbp_task_info *ti, bool timed_out);

// reply_count answers a retry or purge request with count.
void reply_count(srv_req *req, uint64_t count);

// reply_empty answers req with an empty ok body.
void reply_empty(srv_req *req);

// ---- held.c: requests held past their handler ---------------------------

// held_keep tells the dispatcher that the request it is handling is
// answered later (after a commit, an event or a timeout), by whoever holds
// it now. Called from an op handler that returns TB_OK.
void held_keep(broker *b, srv_req *req);

// held_wait holds req until t ends (its final state committed) or ms
// pass; the reply is the task either way. Returns TB_OK or TB_ENOMEM.
int held_wait(broker *b, task *t, srv_req *req, int64_t ms);

// held_wake answers every wait held on t, which has ended.
void held_wake(broker *b, task *t);

// held_drained says whether queue (NULL: every queue) has nothing
// waiting, being inserted or running.
bool held_drained(broker *b, const char *queue);

// held_drain holds req until queue (owned from then on on success; NULL:
// every queue) drains or ms pass. Returns TB_OK or TB_ENOMEM.
int held_drain(broker *b, srv_req *req, char *queue, int64_t ms);

// held_drain_check answers the drain requests whose queues have drained.
void held_drain_check(broker *b);

// held_fail_all answers every held wait and drain with code (shutdown).
void held_fail_all(broker *b, int code);

// held_multi_new starts gathering a request answered with a count once
// several store ops have committed (purge, retry). NULL without memory.
multi_ctx *held_multi_new(srv_req *req);

// held_multi_add adds one part (an op still to commit) and count to mc.
void held_multi_add(multi_ctx *mc, uint64_t count);

// held_multi_done completes one part with the op's rv and the count it
// adds. The last part answers the request and frees mc.
void held_multi_done(multi_ctx *mc, int rv, uint64_t count);

// held_multi_seal holds mc's request once every part has been added, with
// rv the handler's own result; if every part has committed already it
// answers now.
void held_multi_seal(broker *b, multi_ctx *mc, int rv);

// held_multi_free drops mc before any part was added (the handler then
// returns an error and the dispatcher answers).
void held_multi_free(multi_ctx *mc);

// ---- store_ops.c: store ops with the loop's context ---------------------

// sop_alloc returns a zeroed op that calls done when committed, or NULL.
sop *sop_alloc(sop_done_fn done, task *t);

// sop_submit queues w with the store; its done runs on a later pass.
void sop_submit(broker *b, sop *w);

// sop_write_task queues an UPDATE with t's current fields (the op keeps
// copies of the result and error: the task may change them before the
// write commits); done runs once it has committed. The op is marked keep:
// while the store cannot write, the store keeps it and writes it when it
// can again (store.h, Store errors), and done waits until then. event (may
// be NULL) is published then, with dur, and req (may be NULL) answered
// with the task. Returns the op (to attach more context), or NULL when out
// of memory (req is then answered with out_of_memory).
sop *sop_write_task(broker *b, task *t, sop_done_fn done, const char *event,
    uint64_t dur, srv_req *req);

// sop_task_written is the done of a task's state write: publish its
// event, answer its request, answer waiters and forget the task once it
// has ended and nothing refers to it, complete its multi-part reply.
void sop_task_written(broker *b, sop *w);

// sop_done_nothing is the done of an op whose commit needs no action.
void sop_done_nothing(broker *b, sop *w);

// sop_reply queues a copy of tmpl that answers req with an empty ok once
// committed (an error if it failed); own (may be NULL) is a schedule the
// op owns and writes. Holds req. Returns TB_OK or TB_ENOMEM (own freed).
int sop_reply(broker *b, srv_req *req, const store_op *tmpl, store_sched *own);

// sop_complete_all runs the done of every op the store has handed back.
void sop_complete_all(broker *b);

// sop_errmsg writes into buf (size bytes) the message a request refused
// because op failed gets: "store cannot write: <cause>". Returns buf, or
// NULL (the error's own message) when op did not fail in the store.
const char *sop_errmsg(const store_op *op, char *buf, size_t size);

// sop_discard frees w and what it owns without running its done (at
// close, after the loop has stopped).
void sop_discard(sop *w);

// ---- submit.c: accepting tasks ------------------------------------------

// submit_tasks accepts n tasks: from a client's submit (req, which it
// holds) or from a schedule (req NULL, sched_name set). All or nothing:
// every task is checked before any is created. The reply (or, for a
// schedule, the fired event) follows the commit. Returns TB_OK, or the
// error for the dispatcher to answer (nothing was created).
int submit_tasks(broker *b, srv_req *req, const tbp_task_in *tasks, uint32_t n,
    const char *sched_name);

// submit_ctx_free frees a submit's context (at close).
void submit_ctx_free(submit_ctx *sc);

// submit_ackwaits_free frees the duplicates parked on t (at close).
void submit_ackwaits_free(task *t);

// ---- attempt.c: dispatch and the life of an attempt ---------------------

// attempt_dispatch starts ready tasks while slots are free: round robin
// over the queues, priority then FIFO within one.
void attempt_dispatch(broker *b);

// attempt_arm_due keeps the one timer set for the earliest delayed task.
void attempt_arm_due(broker *b);

// attempt_stop asks a running attempt to end now (timeout, cancel,
// shutdown). A loop handler is cancelled and ends as usual; a pool run is
// given up at once and its late result discarded.
void attempt_stop(broker *b, task *t, run *r);

// attempt_run_done is the owner callback of every run: tb_run_finish for
// loop handlers, the pool's done list for pool handlers.
void attempt_run_done(run *r);

// attempt_timer_stop stops and closes r's timeout timer, if any.
void attempt_timer_stop(run *r);

// attempt_run_free frees a run and what it owns.
void attempt_run_free(run *r);

// attempt_interrupted ends the attempt of t as interrupted: cut short by
// the death of the broker (recovery: t was found running in the store) or
// of the worker that ran it (its connection closed), with no outcome of
// its own. A crash is not a failure: the attempt is refunded (attempts - 1)
// and a crash counted (crashes + 1) instead (sched_interrupted). At the
// task's max_crashes it is quarantined: dead, with the error "quarantined:
// WHY during N attempts of this task (max-crashes N); it may be what kills
// it". Otherwise it is pending and ready at once (event "interrupted"). A
// cancel asked for meanwhile (t->cancelling) ends it cancelled instead.
// One task write records the new state and figures; its event is
// published once that has committed. why says what died, as a clause:
// "the broker stopped", "its worker's connection closed"; it goes into
// the log line and the error text.
// The caller must have ended the attempt's run first: t is in state
// running, t->run is NULL (no handler still holds the attempt) and its
// start write has committed (!t->starting). A running slot the attempt
// held (t->slot) is given back here. Loop thread.
void attempt_interrupted(broker *b, task *t, const char *why);

// attempt_abandon ends t's run with no outcome (its worker has gone or
// handed it back): the run's timer is stopped and the run freed; t->run is
// NULL afterwards, the attempt still counted and its slot still held, for
// attempt_interrupted or attempt_handed_back. Worker runs only (a pool run
// must be given up with attempt_stop). Loop thread.
void attempt_abandon(broker *b, task *t);

// attempt_handed_back ends t's running attempt that its worker gave back
// (a graceful stop) or never received (its connection closed before the
// job was sent): its run is abandoned, the task is pending again, the
// attempt refunded, no crash counted. Loop thread.
void attempt_handed_back(broker *b, task *t);

// ---- notify.c: systemd's service notification ---------------------------

// notify_ready tells systemd the broker is ready (store open, recovery
// done, listeners bound) and starts the STATUS and watchdog timers. Does
// nothing without $NOTIFY_SOCKET.
void notify_ready(broker *b);

// notify_stopping tells systemd a shutdown has begun.
void notify_stopping(broker *b);

// ---- worker.c: workers and the worker handler mode -----------------------

// worker_count returns how many workers are connected.
uint32_t worker_count(const broker *b);

// worker_load declares the worker handlers of the configuration and the
// ones workers have served before (from the store). Before recovery, so
// recovered tasks find their handler. Returns TB_OK, TB_EINVAL (a name
// that is a built-in's, or too long) or TB_ENOMEM/TB_ESTORE.
int worker_load(broker *b);

// worker_start starts the heartbeat and liveness tick and asks the
// server for connection closes. After srv_open.
int worker_start(broker *b);

// worker_handler_find returns the worker handler name[0..len), or NULL.
whandler *worker_handler_find(broker *b, const char *name, size_t len);

// worker_heap_of returns the ready heap of worker handler handler in q
// (created on first use), or NULL when handler is no worker handler (or
// out of memory).
wheap *worker_heap_of(broker *b, const char *handler, queue *q);

// worker_handler_def is the definition a run of h's handler points to
// (mode HANDLER_WORKER).
const handler *worker_handler_def(const wheap *h);

// worker_heap_ready is h's heap of ready tasks.
sched_heapq *worker_heap_ready(wheap *h);

// worker_heap_next is the next worker heap of the same queue, or NULL.
wheap *worker_heap_next(const wheap *h);

// worker_dispatch_heap takes the first task of h if a worker serving it
// has room, reserving that room (t->wjob), and returns it; NULL if none.
task *worker_dispatch_heap(broker *b, wheap *h);

// worker_launch hands t's counted attempt, run r, to the worker reserved
// for it: it goes out with the worker's next take reply. TB_ECLOSED when
// that worker has gone in the meantime (nothing was done).
int worker_launch(broker *b, task *t, run *r);

// worker_stop_job asks t's worker to stop r (cancel notice, then the
// grace). Returns false when the worker has not been sent the job: the
// caller ends the attempt now.
bool worker_stop_job(broker *b, task *t, run *r);

// worker_job_drop frees a task's reservation or job record, giving the
// worker its room back. NULL is fine. worker_job_discard does the same at
// close, after the loop has stopped.
void worker_job_drop(wjob *j);
void worker_job_discard(wjob *j);

// worker_job_quiet stops j's grace timer, if any (the last teardown).
void worker_job_quiet(wjob *j);

// worker_flush answers the held takes of workers with something to send.
// From the prepare pass, when b->worker_flush is set.
void worker_flush(broker *b);

// worker_shutdown makes every worker's next reply carry the stop notice.
void worker_shutdown(broker *b);

// worker_fail_all answers every held take (shutdown's last phase).
void worker_fail_all(broker *b);

// worker_pipe_gone is the server's pipe_gone callback: the worker bound to
// pipe (0: any whose pipe is gone) is removed, its attempts interrupted.
void worker_pipe_gone(uint32_t pipe, void *arg);

// worker_fini frees the workers and worker handlers (at close, after the
// tasks).
void worker_fini(broker *b);

// The worker ops (ops/workers.c calls them): worker_hello, worker_take
// (held), worker_done (fencing: TB_ESTALE), worker_bye, worker_list. Each
// returns TB_OK with req->out filled (or req held) or an error code.
int worker_hello(broker *b, srv_req *req);
int worker_take(broker *b, srv_req *req);
int worker_done(broker *b, srv_req *req);
int worker_bye(broker *b, srv_req *req);
int worker_list(broker *b, srv_req *req);

// worker_stats writes to *vp a malloc'd array of every worker handler's
// figures (views valid until the loop changes them) and returns its
// length (0: none, *vp NULL).
uint32_t worker_stats(broker *b, tbp_whstat **vp);

// ---- prune.c: retention --------------------------------------------------

// prune_start starts the timer of the periodic prune pass.
void prune_start(broker *b);

// prune_pass deletes, in small batches, ended tasks past their retention.
void prune_pass(broker *b);

// ---- periodic.c: periodic schedules --------------------------------------

// periodic_load adds a stored or new schedule to the loop; it owns sc
// (freed, with a log line, when the definition cannot be used). Returns
// TB_OK or TB_ENOMEM.
int periodic_load(broker *b, store_sched *sc);

// periodic_free frees s and its definition.
void periodic_free(periodic *s);

// periodic_find returns the schedule named name, or NULL.
periodic *periodic_find(broker *b, tbp_bytes name);

// periodic_next returns the first due time of s strictly after t_us, on
// the grid of due.
int64_t periodic_next(const periodic *s, int64_t due, int64_t t_us);

// periodic_write records s's definition and state; req (may be NULL) is
// held and answered once that has committed.
int periodic_write(broker *b, periodic *s, srv_req *req);

// periodic_arm sets the one schedule timer for the earliest due time.
void periodic_arm(broker *b);

// periodic_info fills o with views of s.
void periodic_info(const periodic *s, tbp_sched *o);

// ---- shutdown.c: phases, deadline, teardown -----------------------------

// shutdown_begin starts a graceful shutdown (idempotent): new submits are
// refused, nothing new starts, running attempts get shutdown-timeout.
void shutdown_begin(broker *b, const char *why);

// shutdown_check moves on to the final flush once a draining broker has
// nothing running.
void shutdown_check(broker *b);

// shutdown_signal_cb handles SIGTERM and SIGINT: the first begins a
// shutdown, the second skips the rest of the grace time.
void shutdown_signal_cb(uv_signal_t *s, int signum);

// shutdown_teardown closes the sockets, stops the threads that post to the
// loop and the handlers: the part of closing shared by a clean shutdown
// and broker_close. Idempotent.
void shutdown_teardown(broker *b);

// ---- ops/ops.c: the request dispatcher -----------------------------------

// ops_dispatch is the server's handle callback: decode result in, one
// reply out, now or (held) later.
void ops_dispatch(srv_req *req, void *arg);

#endif // BROKERIMPL_H
