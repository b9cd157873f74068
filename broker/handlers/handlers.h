// handlers/handlers.h: the handler registry, and one attempt of a task
// (run) as the broker and its handlers see it.
//
// DESIGN. A handler's run function is called once per attempt, either on
// the loop (HANDLER_LOOP: it must not block; the attempt ends with exactly
// one run_finish call, from a libuv callback or before run returns, or one
// tb_run_finish call from any thread) or on a worker thread (HANDLER_POOL:
// run does the work, may block, sets the outcome with run_set_result /
// run_set_error and returns; it should check run_is_cancelled now and
// then). Every handler registers the same way, with handlers_register: the
// built-ins (builtin.h: noop, sleep, fail, block; exec.h: exec), sqlite
// (sqlite.h), http (http.h) and the plugins' (plugins.h). registry.c holds
// the registry and the run calls.
//
// Threads: the registry is written on the loop thread at start only and
// read by it afterwards. A run belongs to the loop thread, except that a
// pool handler touches it inside run on its worker thread, and
// tb_run_finish may be called from any thread (it posts the run to the
// loop).
// Lock order: one leaf mutex inside registry.c (the cross-thread finish
// queue), never held while calling out.
// Ownership: the registry copies each handler's name and keeps the rest of
// the definition as given (a plugin's functions stay valid until
// plugins_unload). A run is the loop's (attempt.c allocates and frees it);
// its result and error belong to the run until the loop takes them.

#ifndef HANDLERS_H
#define HANDLERS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>
#include <uv.h>

#include <taskbroker/handler.h>

#include "config.h"
#include "pool.h"

#define HANDLER_RESULT_MAX (64u << 10) // TBP_MAX_RESULT
#define HANDLER_ERROR_MAX 4096u        // TBP_MAX_ERROR

// A handler is a tb_handler_def (taskbroker/handler.h): built-ins, the
// sqlite and http handlers and plugins all register the same way.
typedef tb_handler_def handler;

// RUN_FMT and RUN_ARGS(r) name the task of run r in a log line as
// TASK_FMT does (task.h): "task 7 (queue default, handler exec)".
#define RUN_FMT "task %" PRIu64 " (queue %s, handler %s)"
#define RUN_ARGS(r) tb_run_task_id(r), tb_run_queue(r), tb_run_handler(r)
typedef struct tb_run run;

#define HANDLER_LOOP TB_HANDLER_LOOP
#define HANDLER_POOL TB_HANDLER_POOL
// HANDLER_WORKER is the broker's own third mode: the tasks run in worker
// processes (worker.c). No handler registers with it; a run's h points to
// the worker handler's definition.
#define HANDLER_WORKER 2

// run is one attempt of a task. The loop owns it; a pool handler touches it
// only inside its run function.
struct tb_run {
	pool_job job; // first, so a pool_job* is a run*

	// Inputs, set by the loop before run; read-only for the handler.
	uint64_t       task_id;
	const char    *queue; // the task's, which outlives the run
	uint32_t       attempt;
	const uint8_t *payload; // one msgpack object, or empty
	size_t         payload_len;
	uv_loop_t     *loop;
	const handler *h;
	uint32_t       timeout_ms;

	// Outcome.
	bool     failed;
	bool     no_retry; // a failure that must not be retried
	uint8_t *result;
	size_t   result_len;
	char    *error;

	atomic_bool cancelled; // set by the loop; pool handlers poll it
	bool        finished;  // run_finish has been called
	int64_t     t_start;   // µs, monotonic

	void *hdata; // the handler's

	// Owner callback: called by run_finish on the loop thread.
	void (*done)(run *r);
	void *owner; // the task; NULL once the loop has given up on the run
	void *ctx;   // the loop's

	// Per-attempt timeout, owned by the loop.
	uv_timer_t *timer;
	bool        timed_out;
};

// handlers_init registers the built-in handlers (builtin_register,
// exec_handler_init) and prepares tb_run_finish for calls from other
// threads; loop is the broker's loop, whose thread calls this. The
// built-ins read their settings from cfg (exec: allow-list, output limit,
// kill grace). Returns TB_OK or an error after logging why.
int handlers_init(uv_loop_t *loop, const config *cfg);

// handlers_register adds a handler (its name is copied). Returns TB_OK,
// TB_EBUSY (the name is taken), TB_EINVAL (bad name or mode, no run) or
// TB_ENOMEM. Start-up only, loop thread.
int handlers_register(const tb_handler_def *def);

// handlers_stop closes the cross-thread finish handle, so the loop can
// end; attempts finished from other threads afterwards are dropped (their
// tasks run again after the next start). Loop thread, at shutdown, after
// sqlite_handler_stop and http_handler_stop.
void handlers_stop(void);

// handlers_fini forgets every handler and the built-ins' settings. After
// the loop has ended.
void handlers_fini(void);

// handlers_find returns the handler named name (len bytes), or NULL. The
// handler stays valid until handlers_fini. Loop thread.
const handler *handlers_find(const char *name, size_t len);

// The run calls. registry.c also defines the handler ABI's tb_run_*
// accessors (taskbroker/handler.h) on the same struct.

// run_set_result stores a copy of the result bytes and clears failed. A
// result over HANDLER_RESULT_MAX is not kept (cut msgpack would not
// decode): the attempt fails instead, without a retry, saying why. The
// thread that runs the attempt (tb_run_set_result is the plugins' name).
void run_set_result(run *r, const void *buf, size_t len);

// run_set_error marks the attempt failed with a formatted message (cut to
// HANDLER_ERROR_MAX). The thread that runs the attempt.
void run_set_error(run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// run_finish ends a LOOP attempt; the run may be freed before it returns.
// Loop thread.
void run_finish(run *r);

// run_is_cancelled tells a pool handler to stop early. Any thread.
bool run_is_cancelled(run *r);

// run_payload unpacks the payload into *up (msgpack_unpacked, initialised
// by the caller, destroyed by the caller). An empty payload unpacks as nil.
// Returns TB_OK or TB_EBADREQ. The thread that runs the attempt.
int run_payload(run *r, msgpack_unpacked *up);

// payload_get returns the value of key in the msgpack map m (a view into
// m), or NULL. Any thread.
const msgpack_object *payload_get(const msgpack_object *m, const char *key);

#endif // HANDLERS_H
