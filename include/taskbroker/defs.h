// taskbroker/defs.h: the vocabulary that the client library, the wire
// protocol library (proto/) and the broker share: error codes, task states,
// limits, default endpoints, the submission id length and the version.
//
// Macros and enums only: nothing here needs linking, so the lower layers
// include it without depending on the client API. Clients get it through
// <taskbroker.h>, which includes it; it is installed beside
// <taskbroker/handler.h>. The values of codes and states are also their
// values on the wire and in the store, so rows are only ever appended.
//
// Threads, Lock order, Ownership: none; definitions only.

#ifndef TASKBROKER_DEFS_H
#define TASKBROKER_DEFS_H

// TB_VERSION_MAJOR, TB_VERSION_MINOR, TB_VERSION_PATCH and
// TB_VERSION_STRING: the taskbroker release these headers belong to.
#define TB_VERSION_MAJOR 0
#define TB_VERSION_MINOR 1
#define TB_VERSION_PATCH 0
#define TB_VERSION_STRING "0.1.0"

// TB_ERRORS is the one list of error codes. Each row is
// X(CONSTANT, value, wire name, message). The value is also the status code
// of a reply on the wire, so rows are only ever appended.
#define TB_ERRORS(X)                                                        \
	X(TB_OK, 0, "ok", "success")                                        \
	X(TB_EINVAL, 1, "invalid_argument", "invalid argument")             \
	X(TB_ENOMEM, 2, "out_of_memory", "out of memory")                   \
	X(TB_ETIMEDOUT, 3, "timed_out", "timed out")                        \
	X(TB_EUNREACHABLE, 4, "unreachable", "broker unreachable")          \
	X(TB_ECLOSED, 5, "closed", "object closed")                         \
	X(TB_EFORK, 6, "forked",                                            \
	    "client used in a child process after fork(); open a new one")  \
	X(TB_EPROTO, 7, "protocol_error", "protocol error")                 \
	X(TB_EVERSION, 8, "unsupported_version",                            \
	    "unsupported protocol version")                                 \
	X(TB_EUNKNOWNOP, 9, "unknown_op", "unknown operation")              \
	X(TB_EBADREQ, 10, "bad_request", "malformed request")               \
	X(TB_ETOOBIG, 11, "too_big", "message or field over its limit")     \
	X(TB_ENOTFOUND, 12, "not_found", "no such task")                    \
	X(TB_ENOHANDLER, 13, "unknown_handler", "no such handler")          \
	X(TB_ESHUTTINGDOWN, 14, "shutting_down", "broker is shutting down") \
	X(TB_ESTATE, 15, "wrong_state",                                     \
	    "operation not allowed in the task's state")                    \
	X(TB_ESTORE, 16, "store_error", "storage error")                    \
	X(TB_EINTERNAL, 17, "internal_error", "internal error")             \
	X(TB_EBUSY, 18, "busy", "broker busy, try again")                   \
	X(TB_ESYSTEM, 19, "system_error", "system call failed")             \
	X(TB_EQUEUEFULL, 20, "queue_full",                                  \
	    "too many pending tasks; try again later")                      \
	X(TB_EUNAUTHORIZED, 21, "unauthorized",                             \
	    "not allowed for this client")                                  \
	X(TB_ETLS, 22, "tls_error",                                         \
	    "TLS handshake failed: the broker's certificate did not "       \
	    "verify, or the broker refused the client's (or its absence)")  \
	X(TB_ESTALE, 23, "stale",                                           \
	    "result refused: the attempt is no longer current (fencing)")

#define TB_ERR_ENUM_(c, v, n, m) c = v,
// tb_err: the error codes. TB_OK is 0.
typedef enum tb_err { TB_ERRORS(TB_ERR_ENUM_) } tb_err;
#undef TB_ERR_ENUM_

// TB_STATES lists task states: X(CONSTANT, value, name).
#define TB_STATES(X)                      \
	X(TB_STATE_PENDING, 0, "pending") \
	X(TB_STATE_RUNNING, 1, "running") \
	X(TB_STATE_DONE, 2, "done")       \
	X(TB_STATE_FAILED, 3, "failed")   \
	X(TB_STATE_DEAD, 4, "dead")       \
	X(TB_STATE_CANCELLED, 5, "cancelled")

#define TB_STATE_ENUM_(c, v, n) c = v,
// tb_state: a task's state. pending and failed (waiting for a retry) and
// running are not ended; done, dead and cancelled are final.
typedef enum tb_state { TB_STATES(TB_STATE_ENUM_) } tb_state;
#undef TB_STATE_ENUM_

// TB_MAX_BATCH is the most tasks one submit may carry (tb_submit_batch;
// TBP_MAX_TASKS on the wire).
#define TB_MAX_BATCH 1000

// TB_SID_LEN is the length in bytes of a submission id: the random bytes a
// client puts on each submitted task so that the broker recognises a copy
// the transport resent after a reconnect.
#define TB_SID_LEN 16

// TB_DEFAULT_URL and TB_DEFAULT_EVENTS_URL are the broker's built-in
// request and events endpoints, relative to its working directory; the
// client uses them too unless $TASKBROKER_URL / $TASKBROKER_EVENTS_URL or
// an explicit url says otherwise.
#define TB_DEFAULT_URL "ipc://run/taskbroker.sock"
#define TB_DEFAULT_EVENTS_URL "ipc://run/taskbroker-events.sock"

#endif // TASKBROKER_DEFS_H
