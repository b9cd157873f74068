// handlers.h: what a task runs, and one attempt of it (run).
//
// A handler runs either on the loop (HANDLER_LOOP: start must not block; the
// attempt ends with exactly one run_finish call, from a libuv callback or
// before start returns) or on a worker thread (HANDLER_POOL: start does the
// work, may block, sets the outcome with run_set_result / run_set_error and
// returns; it should check run_cancelled now and then).
//
// The built-ins: noop, sleep {"ms"} (a loop timer), fail {"message"}, block
// {"ms"} (sleeps on a worker thread), exec {"argv"} (a child process started
// with uv_spawn; its exit comes back as a loop callback, so no thread waits).

#ifndef HANDLERS_H
#define HANDLERS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>
#include <uv.h>

#include "pool.h"

#define HANDLER_RESULT_MAX (64u << 10) // TBP_MAX_RESULT
#define HANDLER_ERROR_MAX 4096u         // TBP_MAX_ERROR
#define EXEC_TAIL_MAX 4096u             // bytes of stdout/stderr kept

enum handler_mode {
	HANDLER_LOOP = 0,
	HANDLER_POOL = 1,
};

typedef struct run run;

typedef struct handler {
	const char *name;
	int         mode;
	// start begins the attempt. LOOP: returns TB_OK once the attempt is
	// under way (run_finish follows, maybe already called), or an error
	// code after run_set_error, in which case run_finish must not be
	// called and the attempt has failed. POOL: the return value is
	// ignored; the outcome is what run_set_* recorded.
	int (*start)(run *r);
	// cancel (LOOP only, may be NULL) asks a running attempt to end
	// early; it must still end with run_finish.
	void (*cancel)(run *r);
} handler;

// run is one attempt of a task. The loop owns it; a pool handler touches it
// only inside start.
struct run {
	pool_job job; // first, so a pool_job* is a run*

	// Inputs, set by the loop before start; read-only for the handler.
	uint64_t       task_id;
	uint32_t       attempt;
	const uint8_t *payload; // one msgpack object, or empty
	size_t         payload_len;
	uv_loop_t     *loop;
	const handler *h;

	// Outcome.
	bool     failed;
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

// handlers_set_exec_grace sets how long a stopped exec child gets between
// SIGTERM and SIGKILL (0: SIGKILL at once). Start-up only.
void handlers_set_exec_grace(uint64_t ms);

// handlers_find returns the handler named name (a C string), or NULL.
const handler *handlers_find(const char *name, size_t len);

// handlers_count / handlers_get enumerate the registered handlers.
size_t         handlers_count(void);
const handler *handlers_get(size_t i);

// run_set_result stores a copy of the result bytes (cut to
// HANDLER_RESULT_MAX). Clears failed.
void run_set_result(run *r, const void *buf, size_t len);

// run_set_error marks the attempt failed with a formatted message (cut to
// HANDLER_ERROR_MAX).
void run_set_error(run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// run_finish ends a LOOP attempt; the run may be freed before it returns.
// Loop thread.
void run_finish(run *r);

// run_is_cancelled tells a pool handler to stop early.
bool run_is_cancelled(run *r);

// run_payload unpacks the payload into *up (msgpack_unpacked, initialised
// by the caller, destroyed by the caller). An empty payload unpacks as nil.
// Returns TB_OK or TB_EBADREQ.
int run_payload(run *r, msgpack_unpacked *up);

// payload_get returns the value of key in the msgpack map m, or NULL.
const msgpack_object *payload_get(const msgpack_object *m, const char *key);

#endif // HANDLERS_H
