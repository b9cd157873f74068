// tbp.h: the taskbroker wire protocol, shared by broker and client. No I/O.
//
// Every request is one msgpack array [version, op, req_id, body] and every
// reply is [version, op, req_id, status, body]; body is always a map whose
// keys are strings. status is a tb_err code (0 = ok); an error reply's body
// is {"error": <wire name>, "message": <text>}. Unknown body keys are
// ignored, so fields can be added without a version bump. A request with a
// newer version gets a TB_EVERSION reply, an unknown op TB_EUNKNOWNOP.
//
// Bodies (fields marked ? may be absent):
//   submit   req {"tasks": [task_in...]}           1..TBP_MAX_TASKS
//            rep {"ids": [uint...], "dup": [bool...]}
//   task_in  {"sid": bin(16), "handler": str, "queue"?: str,
//             "payload"?: bin (one msgpack object), "priority"?: int,
//             "max_attempts"?: uint, "timeout_ms"?: uint, "delay_ms"?: uint}
//   status   req {"id": uint}                      rep {"task": task}
//   cancel   req {"id": uint}                      rep {"task": task}
//   wait     req {"id": uint, "timeout_ms"?: int}  rep {"task": task,
//                                                       "timed_out": bool}
//   list     req {"queue"?: str, "state"?: uint, "limit"?: uint,
//                 "after_id"?: uint}              rep {"tasks": [task...]}
//   stats    req {}  rep {"pending", "running", "done", "failed", "dead",
//                         "cancelled", "submitted", "completed",
//                         "uptime_ms", "workers", "pid"} (all uint)
//   ping     req {}  rep {"version": str, "pid": uint}
//   shutdown req {}  rep {}
//   task     {"id", "queue", "handler", "state", "attempts",
//             "max_attempts", "priority", "created_at", "started_at",
//             "finished_at" (Unix µs), "result"?: bin, "error"?: str,
//             "run_at": int (µs), "timeout_ms": uint, "forever": bool,
//             "key"?: str}
//
// Added for the task lifecycle (protocol version 1 still: old peers ignore
// the new keys):
//   task_in  + "run_at"?: int (Unix µs; wins over delay_ms), "key"?: str
//              (idempotency key, 1..TBP_MAX_KEY), "forever"?: bool
//   submit   rep + "existing": [bool...] (the key matched an unfinished
//              task, whose id is returned)
//   list     req + "handler"?: str, "min_age_ms"?: uint, "max_age_ms"?:
//              uint (age = now - created_at)
//   retry    req {"id"?: uint, "queue"?: str, "state"?: uint}
//            rep {"count": uint}   (by id, or every task of queue (any if
//            absent) in state (dead if absent); dead/cancelled only)
//   pause    req {"queue": str}    rep {}
//   resume   req {"queue": str}    rep {}
//   drain    req {"queue"?: str, "timeout_ms"?: int}
//            rep {"timed_out": bool} (when the queue, or every queue, has
//            nothing pending, failed or running, or at the timeout)
//   purge    req {"queue"?: str, "state": uint, "min_age_ms"?: uint}
//            rep {"count": uint}   (pending, done, dead or cancelled)
//   schedule_add   req {"schedule": sched}          rep {}
//   schedule_list  req {}          rep {"schedules": [sched...]}
//   schedule_rm    req {"name": str}                rep {}
//   schedule_pause req {"name": str, "paused": bool} rep {}
//   queues   req {}                rep {"queues": [qstat...]}
//   stats    rep + "schedules", "forever", "crashloop" (uint)
//   sched    {"name", "handler", "queue"?, "payload"?: bin,
//             "priority"?: int, "max_attempts"?: uint, "timeout_ms"?: uint,
//             "every_ms"?: uint, "cron"?: str (exactly one of the two),
//             "catch_up"?: bool, "paused"?: bool, and in replies
//             "next_at", "last_at": int (µs, 0: never), "fired": uint,
//             "last_task": uint}
//   qstat    {"name", "pending", "running", "failed", "dead", "done",
//             "cancelled", "paused": bool, "concurrency": uint (0: no
//             limit), "max_pending": uint (0: none), "done_last_min",
//             "oldest_pending_ms", "forever", "crashloop": uint}
//
// Added for remote access (version 1 still; a broker that does not check
// tokens ignores the key):
//   any req + "token"?: str (1..TBP_MAX_TOKEN bytes, no NUL): the shared
//              secret a broker asks of peers on its tcp and tls+tcp
//              listeners (taskbrokerd --token-file). A wrong or missing
//              one gets TB_EUNAUTHORIZED whatever the rest of the request
//              says. Read for every op, also when the version or the op
//              is unknown.
//
// Added for "a crash is not a failure" (version 1 still: old peers ignore
// the new keys, and a broker that does not send them means 0):
//   task_in  + "max_crashes"?: uint (0 or absent: the queue's default)
//   task     + "crashes": uint (attempts cut short by the death of the
//              broker or of a worker, not counted in attempts),
//              "max_crashes": uint (the crashes that quarantine it)
//   event    + "crashes": uint
//
// Added for workers (version 1 still). A worker is a process that runs
// tasks of the handlers it names; see broker/worker.c for the model.
//   worker_hello req {"handlers": [str...] (1..TBP_MAX_WNAMES),
//                     "queues"?: [str...] (absent or empty: any queue),
//                     "slots": uint (1..TBP_MAX_SLOTS), "pid"?: uint,
//                     "host"?: str, "name"?: str}
//                rep {"worker_id": uint, "heartbeat_ms": uint,
//                     "timeout_ms": uint}
//                The broker binds the worker to the connection (nng pipe)
//                the hello came on; when it closes, the worker is gone.
//   worker_take  req {"worker_id": uint, "free": uint, "dones"?: uint}
//                rep {"jobs": [job...], "cancels": [{"id", "attempt"}...],
//                     "stop": bool}
//                Held by the broker until it has a job (at most free) or
//                a cancel to send, a stop notice (broker shutdown), or
//                heartbeat_ms pass (then an empty reply). A worker keeps
//                one take outstanding at all times, free 0 included.
//                free is its slots less the jobs it holds; dones the
//                number of worker_done it had begun to send when it
//                computed free, so that a done numbered above it while the
//                take is held frees one more slot of that take.
//   job          {"id", "attempt", "crashes": uint, "handler", "queue":
//                 str, "payload"?: bin, "deadline_ms": int (Unix ms; 0:
//                 no timeout)}
//   worker_done  req {"worker_id", "id": uint, "attempt": uint, "ok": bool,
//                     "seq"?: uint (1, 2, ... per worker handle),
//                     "result"?: bin (ok; <= TBP_MAX_RESULT), "error"?: str
//                     (failed; <= TBP_MAX_ERROR), "retryable"?: bool
//                     (failed; default true)}
//                rep {}, or the error stale when (id, attempt) is not an
//                attempt of that worker's that is still running (fencing)
//                Or several results at once: req {"worker_id", "results":
//                [{"id", "attempt", "ok", "result"?, "error"?,
//                "retryable"?, "seq"?}...] (1..TBP_MAX_SLOTS)}
//                rep {"status": [uint...]} (one tb_err per result, in
//                order: 0 taken, stale refused)
//   worker_bye   req {"worker_id", "hand_back"?: [uint...]} rep {}
//                (a graceful stop: the tasks handed back go back to
//                pending, their attempts refunded; the worker is gone)
//   workers      req {}  rep {"workers": [winfo...]}
//   winfo        {"id", "pid", "host", "name", "handlers": [str...],
//                 "queues": [str...], "slots", "running", "done": uint,
//                 "since": int (Unix µs)}
//   stats        rep + "whandlers": [{"name": str, "workers": uint,
//                 "waiting": uint}] (per worker handler: connected
//                 workers, tasks waiting to start)
// A take or done naming a worker the broker does not know (it restarted,
// or the worker's connection closed) gets not_found: say hello again.
//
// Events (PUB): the topic "tb.<event>.<queue>.<handler>" as raw bytes, one
// NUL byte, then a msgpack map {"seq", "event", "id", "queue", "handler",
// "state", "attempt", "duration_us", "time" (Unix µs), "result"?: bin,
// "error"?: str}. The topic comes first because SUB filters on a prefix.
//
// Decoding never trusts a length prefix: tbp_check walks the bytes without
// allocating and rejects any length that runs past the end of the buffer or
// over a limit, and only then does msgpack-c unpack the message, so memory
// use is bounded by the message's real size.
//
// Threads: any thread; nothing here keeps state between calls.
// Lock order: no locks.
// Ownership: a decoded message owns the memory behind its views until its
// _fini; encoders append to a buffer the caller owns.

#ifndef TBP_H
#define TBP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include <taskbroker/defs.h>

#define TBP_VERSION 1

// Limits, enforced at decode time.
#define TBP_MAX_MSG (8u << 20)     // one request or reply, in bytes
#define TBP_MAX_PAYLOAD (1u << 20) // a task's payload
#define TBP_MAX_RESULT (64u << 10) // a task's result
#define TBP_MAX_ERROR 4096u        // a task's error text
#define TBP_MAX_NAME 128u          // queue and handler names
#define TBP_MAX_TASKS TB_MAX_BATCH // tasks in one submit
#define TBP_MAX_LIST 1000u         // tasks in one list reply
#define TBP_MAX_DEPTH 32u          // nesting of arrays and maps
#define TBP_MAX_KEY 256u           // an idempotency key
#define TBP_MAX_CRON 128u          // a cron expression
#define TBP_MAX_SCHEDULES 1000u    // schedules in one list reply
#define TBP_MAX_QUEUES 1000u       // queues in one queues reply
#define TBP_MAX_TOKEN 256u         // a request's token
#define TBP_MAX_WNAMES 64u         // handlers or queues one worker names
#define TBP_MAX_SLOTS 1024u        // a worker's slots; jobs in one take
#define TBP_MAX_WORKERS 1000u      // workers in one workers reply
// TBP_MAX_DURATION_MS bounds every duration a request carries (ages,
// periods, wait and drain timeouts): 100 years, so that the broker's
// arithmetic in microseconds (now - age * 1000) cannot overflow.
#define TBP_MAX_DURATION_MS 3155760000000LL
// TBP_MAX_TIME_US bounds every absolute time (run_at) on both sides of the
// epoch: the end of year 9999 in Unix microseconds.
#define TBP_MAX_TIME_US 253402300799999999LL
// TBP_MIN_TIMEOUT_MS is the lowest wait or drain timeout: any negative
// value means "the broker's maximum", but only down to an int's range.
#define TBP_MIN_TIMEOUT_MS (-2147483647LL - 1)

// TBP_RO and TBP_ADMIN are the flags of an op in TBP_OPS. TBP_RO: it
// writes nothing and is answered at once, so a broker that is flushing its
// last writes still serves it. TBP_ADMIN: it changes the broker or its
// queues for everyone (shutdown, retry, pause, purge, schedules), so only
// an admin peer may send it.
#define TBP_RO 1
#define TBP_ADMIN 2

// TBP_OPS is the one list of operations: X(NAME, value, "name", ident,
// flags). ident names the op in generated identifiers (the broker's
// handle_<ident>); flags are TBP_RO and TBP_ADMIN.
#define TBP_OPS(X)                                                   \
	X(PING, 0, "ping", ping, TBP_RO)                             \
	X(SUBMIT, 1, "submit", submit, 0)                            \
	X(STATUS, 2, "status", status, TBP_RO)                       \
	X(WAIT, 3, "wait", wait, 0)                                  \
	X(CANCEL, 4, "cancel", cancel, 0)                            \
	X(LIST, 5, "list", list, TBP_RO)                             \
	X(STATS, 6, "stats", stats, TBP_RO)                          \
	X(SHUTDOWN, 7, "shutdown", shutdown, TBP_RO | TBP_ADMIN)     \
	X(RETRY, 8, "retry", retry, TBP_ADMIN)                       \
	X(PAUSE, 9, "pause", pause, TBP_ADMIN)                       \
	X(RESUME, 10, "resume", resume, TBP_ADMIN)                   \
	X(DRAIN, 11, "drain", drain, 0)                              \
	X(PURGE, 12, "purge", purge, TBP_ADMIN)                      \
	X(SCHED_ADD, 13, "schedule_add", sched_add, TBP_ADMIN)       \
	X(SCHED_LIST, 14, "schedule_list", sched_list, TBP_RO)       \
	X(SCHED_RM, 15, "schedule_rm", sched_rm, TBP_ADMIN)          \
	X(SCHED_PAUSE, 16, "schedule_pause", sched_pause, TBP_ADMIN) \
	X(QUEUES, 17, "queues", queues, TBP_RO)                      \
	X(WORKER_HELLO, 18, "worker_hello", worker_hello, 0)         \
	X(WORKER_TAKE, 19, "worker_take", worker_take, 0)            \
	X(WORKER_DONE, 20, "worker_done", worker_done, 0)            \
	X(WORKER_BYE, 21, "worker_bye", worker_bye, 0)               \
	X(WORKERS, 22, "workers", workers, TBP_RO)

#define TBP_OP_ENUM_(n, v, s, id, fl) TBP_OP_##n = v,
enum tbp_op { TBP_OPS(TBP_OP_ENUM_) TBP_OP_COUNT };
#undef TBP_OP_ENUM_

// tbp_op_name returns the static name of op, or "unknown".
const char *tbp_op_name(uint32_t op);

// tbp_err_name and tbp_err_message return static texts for a tb_err code
// (the same texts as tb_errname and tb_strerror).
const char *tbp_err_name(int code);
const char *tbp_err_message(int code);

#define TBP_STATE_PLUS1_(c, v, n) +1
// TBP_NSTATES is the number of task states. Their values are dense, 0 to
// TBP_NSTATES - 1, so a value at or above it is no state.
enum { TBP_NSTATES = 0 TB_STATES(TBP_STATE_PLUS1_) };
#undef TBP_STATE_PLUS1_

// tbp_state_name returns the static name of a tb_state ("pending"), as
// TB_STATES spells it, or "unknown" for a value that is no state. The
// client's tb_state_name and the broker's logs both use it. Any thread.
const char *tbp_state_name(int state);

// tbp_state_parse writes the tb_state named name (exactly: "dead", not
// "DEAD") to *statep and returns TB_OK. It returns TB_EINVAL, leaving
// *statep alone, if name or statep is NULL or name is no state's. Any
// thread.
int tbp_state_parse(const char *name, int *statep);

// tbp_state_final is true for done, dead and cancelled, the states in which
// a task runs no more attempts unless a retry puts it back, and false for
// pending, running, failed and any value that is no state. Any thread.
bool tbp_state_final(int state);

// tbp_nng_ctx says where a failed nng call was made, for tbp_nng_err. The
// same nng code means different things on the two sides. To the broker,
// which listens on addresses from its configuration, an address that is
// malformed or taken is the operator's to fix (TB_EINVAL, TB_EBUSY) and a
// refused path a system error. To a client, an address that leads nowhere
// means the broker cannot be reached (TB_EUNREACHABLE).
typedef enum tbp_nng_ctx {
	TBP_NNG_BROKER = 0, // the broker's sockets: listen, contexts, aios
	TBP_NNG_CLIENT = 1, // a client's calls other than nng_dial
	TBP_NNG_DIAL   = 2, // a client's nng_dial
	TBP_NNG_CTX_COUNT
} tbp_nng_ctx;

// tbp_nng_err converts rv, the result of an nng call made in ctx, to a
// tb_err; 0 is TB_OK. The one map, for broker and client alike:
//
//   nng code                  BROKER        CLIENT           DIAL
//   NNG_ENOMEM                TB_ENOMEM     TB_ENOMEM        TB_ENOMEM
//   NNG_ETIMEDOUT             TB_ETIMEDOUT  TB_ETIMEDOUT     TB_ETIMEDOUT
//   NNG_ECLOSED               TB_ECLOSED    TB_ECLOSED       TB_ECLOSED
//   NNG_EINVAL                TB_EINVAL     TB_EINVAL        TB_EINVAL
//   NNG_ENOTSUP               TB_EINVAL     TB_ESYSTEM       TB_EINVAL
//   NNG_EADDRINVAL            TB_EINVAL     TB_EUNREACHABLE  TB_EUNREACHABLE
//   NNG_EADDRINUSE            TB_EBUSY      TB_ESYSTEM       TB_ESYSTEM
//   NNG_EPROTO                TB_ESYSTEM    TB_EPROTO        TB_EPROTO
//   NNG_ECONNREFUSED, NNG_ECONNRESET, NNG_ECONNSHUT, NNG_ECONNABORTED,
//   NNG_ENOENT, NNG_EUNREACHABLE, NNG_EPERM
//                             TB_ESYSTEM    TB_EUNREACHABLE  TB_EUNREACHABLE
//   NNG_EPEERAUTH, NNG_ECRYPTO
//                             TB_ESYSTEM    TB_ETLS          TB_ETLS
//   NNG_EAGAIN                TB_ESYSTEM    TB_ESYSTEM       TB_EUNREACHABLE
//   any other code            TB_ESYSTEM    TB_ESYSTEM       TB_ESYSTEM
//
// NNG_ENOTSUP from nng_dial or nng_listen is a url scheme this nng does
// not support, the caller's mistake; from a client's other calls it means
// the nng library lacks something, not the caller. NNG_EAGAIN from a
// dial is a listener whose backlog is full (a unix socket's connect(2)
// says EAGAIN then): for now, unreachable. A ctx out of range is a
// caller's bug and gets TB_EINTERNAL. Any thread.
int tbp_nng_err(int rv, tbp_nng_ctx ctx);

// tbp_bytes is a view of a string or byte string inside a decoded message.
// Strings are NOT NUL-terminated. A view stays valid until the message
// (tbp_req, tbp_rep, tbp_event) it came from is finished.
typedef struct tbp_bytes {
	const uint8_t *p;
	uint32_t       n;
} tbp_bytes;

// tbp_task_in is one task of a submit.
typedef struct tbp_task_in {
	tbp_bytes sid;     // TB_SID_LEN bytes
	tbp_bytes handler; // 1..TBP_MAX_NAME bytes
	tbp_bytes queue;   // 0..TBP_MAX_NAME bytes; empty means "default"
	tbp_bytes payload; // one msgpack object, or empty
	int32_t   priority;
	uint32_t  max_attempts; // 0: broker default
	uint32_t  timeout_ms;   // 0: none
	uint32_t  delay_ms;     // 0: now
	int64_t   run_at;       // Unix µs; 0: use delay_ms
	tbp_bytes key;          // empty: none
	bool      forever;
	uint32_t  max_crashes; // 0: the queue's default
} tbp_task_in;

// tbp_task_info is a task as status/wait/cancel/list report it.
typedef struct tbp_task_info {
	uint64_t  id;
	tbp_bytes queue;
	tbp_bytes handler;
	uint32_t  state;
	uint32_t  attempts;
	uint32_t  max_attempts;
	int32_t   priority;
	int64_t   created_at; // Unix µs; 0 if never
	int64_t   started_at;
	int64_t   finished_at;
	tbp_bytes result; // n == 0: none
	tbp_bytes error;  // n == 0: none
	int64_t   run_at;
	uint32_t  timeout_ms;
	bool      forever;
	tbp_bytes key;         // n == 0: none
	uint32_t  crashes;     // attempts cut short by a crash
	uint32_t  max_crashes; // crashes that quarantine it; 0: not known
} tbp_task_info;

// tbp_sched is a periodic schedule.
typedef struct tbp_sched {
	tbp_bytes name; // 1..TBP_MAX_NAME
	tbp_bytes handler;
	tbp_bytes queue;
	tbp_bytes payload;
	int32_t   priority;
	uint32_t  max_attempts;
	uint32_t  timeout_ms;
	uint64_t  every_ms; // exactly one of every_ms and cron is set
	tbp_bytes cron;     // 0..TBP_MAX_CRON
	bool      catch_up;
	bool      paused;
	int64_t   next_at; // replies only
	int64_t   last_at;
	uint64_t  fired;
	uint64_t  last_task;
} tbp_sched;

// tbp_qstat is one queue's figures.
typedef struct tbp_qstat {
	tbp_bytes name;
	uint64_t  pending, running, failed, dead, done, cancelled;
	bool      paused;
	uint32_t  concurrency;
	uint64_t  max_pending;
	uint64_t  done_last_min;
	uint64_t  oldest_pending_ms;
	uint32_t  forever;
	uint32_t  crashloop;
} tbp_qstat;

// tbp_stats mirrors tb_stats.
typedef struct tbp_stats {
	uint64_t pending, running, done, failed, dead, cancelled;
	uint64_t submitted, completed, uptime_ms;
	uint32_t workers, pid;
	uint64_t schedules, forever, crashloop;
} tbp_stats;

// tbp_hello is a worker_hello's body.
typedef struct tbp_hello {
	tbp_bytes *handlers; // nhandlers views
	uint32_t   nhandlers;
	tbp_bytes *queues; // nqueues views; 0: any queue
	uint32_t   nqueues;
	uint32_t   slots;
	uint64_t   pid;
	tbp_bytes  host;
	tbp_bytes  name;
} tbp_hello;

// tbp_done is a worker_done's body (worker_id apart).
typedef struct tbp_done {
	uint64_t  id;
	uint32_t  attempt;
	bool      ok;
	tbp_bytes result;
	tbp_bytes error;
	bool      retryable;
	uint64_t  seq;
} tbp_done;

// tbp_job is one dispatch of a take reply; a cancel notice uses only id
// and attempt.
typedef struct tbp_job {
	uint64_t  id;
	uint32_t  attempt;
	uint32_t  crashes;
	tbp_bytes handler;
	tbp_bytes queue;
	tbp_bytes payload;
	int64_t   deadline_ms; // Unix ms; 0: none
} tbp_job;

// tbp_winfo is one connected worker as the workers op reports it.
typedef struct tbp_winfo {
	uint64_t   id;
	uint64_t   pid;
	tbp_bytes  host;
	tbp_bytes  name;
	tbp_bytes *handlers;
	uint32_t   nhandlers;
	tbp_bytes *queues;
	uint32_t   nqueues;
	uint32_t   slots;
	uint32_t   running;
	uint64_t   done;
	int64_t    since; // Unix µs
} tbp_winfo;

// tbp_whstat is one worker handler's figures in a stats reply.
typedef struct tbp_whstat {
	tbp_bytes name;
	uint32_t  workers; // connected workers serving it
	uint64_t  waiting; // its tasks ready to start
} tbp_whstat;

// tbp_req is a decoded request. Fields not used by op are zero.
typedef struct tbp_req {
	uint32_t version;
	uint32_t op;
	uint64_t req_id;
	bool     have_envelope; // version, op and req_id were read

	tbp_task_in *tasks; // submit
	uint32_t     ntasks;
	uint64_t     id;         // status, wait, cancel
	int64_t      timeout_ms; // wait; -1 if absent
	tbp_bytes    queue;      // list
	int32_t      state;      // list; -1 if absent
	uint32_t     limit;      // list; 0 if absent
	uint64_t     after_id;   // list
	tbp_bytes    handler;    // list
	uint64_t     min_age_ms; // list, purge
	uint64_t     max_age_ms; // list; 0 if absent
	bool         have_id;    // retry: "id" was given
	tbp_sched    sched;      // schedule_add
	tbp_bytes    name;       // schedule_rm, schedule_pause
	bool         paused;     // schedule_pause
	tbp_bytes    token;      // any op; see have_token
	bool         have_token; // "token" was given (and well formed)
	tbp_hello    hello;      // worker_hello
	uint64_t     worker_id;  // worker_take, worker_done, worker_bye
	uint32_t     free;       // worker_take
	uint64_t     dones;      // worker_take
	tbp_done     done;       // worker_done
	uint64_t    *ids;        // worker_bye: hand_back
	uint32_t     nids;
	tbp_done    *results; // worker_done with "results"
	uint32_t     nresults;

	msgpack_unpacked priv_; // owns the memory behind the views
} tbp_req;

// tbp_req_decode decodes the request in buf[0..len). r is initialised
// first, so tbp_req_fini(r) must be called afterwards whatever the result.
// On an error, if r->have_envelope is true, version/op/req_id are valid and
// the caller can mirror them in an error reply. Returns TB_OK, TB_EBADREQ
// (malformed, truncated, wrong types, missing required field), TB_ETOOBIG
// (over a limit), TB_EVERSION (newer version), TB_EUNKNOWNOP. buf need not
// outlive r: views point into r's own memory. Any thread.
int tbp_req_decode(tbp_req *r, const void *buf, size_t len);

// tbp_req_add_token adds "token": token (1..TBP_MAX_TOKEN bytes) to the
// body of the request that an encoder above wrote to b, starting at offset
// start (b->size before the encoder ran); the request must be the last
// thing in b. The body map's header grows by at most 4 bytes. Returns
// TB_OK, TB_EINVAL (b holds no request there, or the token's length is
// out of range) or TB_ENOMEM; on an error b is unchanged. Any thread.
int tbp_req_add_token(msgpack_sbuffer *b, size_t start, tbp_bytes token);

// tbp_token_equal compares a token a request carried with the expected
// one in time that depends on neither's content or length (each at most
// TBP_MAX_TOKEN bytes; longer ones are never equal). Any thread.
bool tbp_token_equal(tbp_bytes got, tbp_bytes want);

// tbp_req_fini releases what tbp_req_decode allocated. Safe to call twice.
void tbp_req_fini(tbp_req *r);

// tbp_rep is a decoded reply.
typedef struct tbp_rep {
	uint32_t  version;
	uint32_t  op;
	uint64_t  req_id;
	int       status;  // tb_err
	tbp_bytes errname; // error replies
	tbp_bytes message; // error replies

	uint64_t      *ids; // submit
	bool          *dup;
	bool          *existing;
	uint32_t       nids;
	bool           have_task; // status, wait, cancel
	tbp_task_info  task;
	bool           timed_out; // wait
	tbp_task_info *tasks;     // list
	uint32_t       ntasks;
	tbp_stats      stats;       // stats
	tbp_bytes      version_str; // ping
	uint64_t       pid;         // ping
	uint64_t       count;       // retry, purge
	tbp_sched     *scheds;      // schedule_list
	uint32_t       nscheds;
	tbp_qstat     *queues; // queues
	uint32_t       nqueues;
	uint64_t       worker_id; // worker_hello
	uint32_t       heartbeat_ms;
	uint32_t       wtimeout_ms;
	tbp_job       *jobs; // worker_take
	uint32_t       njobs;
	tbp_job       *cancels;
	uint32_t       ncancels;
	bool           stop;
	tbp_winfo     *workers; // workers
	uint32_t       nworkers;
	tbp_whstat    *whstats; // stats
	uint32_t       nwhstats;
	uint32_t      *statuses; // worker_done with "results"
	uint32_t       nstatuses;

	msgpack_unpacked priv_;
	void            *priv_alloc_; // arrays owned by the reply
} tbp_rep;

// tbp_rep_decode decodes a reply; as tbp_req_decode, tbp_rep_fini must be
// called afterwards whatever the result. Returns TB_OK when the reply is
// well formed (check r->status for the broker's answer), else TB_EPROTO or
// TB_ETOOBIG.
int tbp_rep_decode(tbp_rep *r, const void *buf, size_t len);

// tbp_rep_fini releases what tbp_rep_decode allocated. Safe to call twice.
void tbp_rep_fini(tbp_rep *r);

// tbp_event is a published event.
typedef struct tbp_event {
	tbp_bytes topic; // without the NUL
	uint64_t  seq;
	tbp_bytes event; // "start", "done", ...
	uint64_t  id;
	tbp_bytes queue;
	tbp_bytes handler;
	uint32_t  state;
	uint32_t  attempt;
	uint32_t  crashes; // the task's crashes so far
	uint64_t  duration_us;
	int64_t   time; // Unix µs
	tbp_bytes result;
	tbp_bytes error;

	msgpack_unpacked priv_;
} tbp_event;

// tbp_event_decode decodes an event message (topic, NUL, map). Call
// tbp_event_fini afterwards whatever the result. Returns TB_OK or TB_EPROTO.
int tbp_event_decode(tbp_event *e, const void *buf, size_t len);

// tbp_event_fini releases what tbp_event_decode allocated.
void tbp_event_fini(tbp_event *e);

// tbp_check walks exactly one msgpack object at the start of buf[0..len)
// without allocating. It fails if the object is truncated, malformed, uses
// the reserved byte 0xc1, nests deeper than max_depth, or declares an array
// or map with more elements than bytes remain. On success *usedp (may be
// NULL) receives the object's length. Returns TB_OK, TB_EBADREQ or
// TB_ETOOBIG (depth).
int tbp_check(const void *buf, size_t len, unsigned max_depth, size_t *usedp);

// Encoders. Each appends one complete message to b (an initialised
// msgpack_sbuffer; the caller owns and frees it) and returns TB_OK or
// TB_ENOMEM. Strings are NUL-terminated C strings unless given as views.

int tbp_enc_submit(
    msgpack_sbuffer *b, uint64_t req_id, const tbp_task_in *tasks, uint32_t n);
// tbp_enc_req_id encodes status or cancel: {"id": id}.
int tbp_enc_req_id(
    msgpack_sbuffer *b, uint32_t op, uint64_t req_id, uint64_t id);
int tbp_enc_wait(
    msgpack_sbuffer *b, uint64_t req_id, uint64_t id, int64_t timeout_ms);
// tbp_enc_list: queue may be NULL (all), state < 0 for all, limit 0 for
// the default, handler NULL for any, ages 0 for no bound. Fields left at
// those values are not sent.
int tbp_enc_list(msgpack_sbuffer *b, uint64_t req_id, const char *queue,
    int32_t state, uint32_t limit, uint64_t after_id, const char *handler,
    uint64_t min_age_ms, uint64_t max_age_ms);
// tbp_enc_req_empty encodes ping, stats or shutdown.
int tbp_enc_req_empty(msgpack_sbuffer *b, uint32_t op, uint64_t req_id);
// tbp_enc_retry: by id (have_id), else by queue (NULL: all) and state.
int tbp_enc_retry(msgpack_sbuffer *b, uint64_t req_id, bool have_id,
    uint64_t id, const char *queue, int32_t state);
// tbp_enc_queue_op encodes pause or resume: {"queue": queue}.
int tbp_enc_queue_op(
    msgpack_sbuffer *b, uint32_t op, uint64_t req_id, const char *queue);
int tbp_enc_drain(msgpack_sbuffer *b, uint64_t req_id, const char *queue,
    int64_t timeout_ms);
int tbp_enc_purge(msgpack_sbuffer *b, uint64_t req_id, const char *queue,
    int32_t state, uint64_t min_age_ms);
int tbp_enc_sched_add(msgpack_sbuffer *b, uint64_t req_id, const tbp_sched *s);
// tbp_enc_sched_name encodes schedule_rm {"name"} or, for
// TBP_OP_SCHED_PAUSE, {"name", "paused"}.
int tbp_enc_sched_name(msgpack_sbuffer *b, uint32_t op, uint64_t req_id,
    const char *name, bool paused);

// Worker ops (see "Added for workers" above).
int tbp_enc_worker_hello(
    msgpack_sbuffer *b, uint64_t req_id, const tbp_hello *h);
int tbp_enc_worker_take(msgpack_sbuffer *b, uint64_t req_id,
    uint64_t worker_id, uint32_t free, uint64_t dones);
int tbp_enc_worker_done(msgpack_sbuffer *b, uint64_t req_id,
    uint64_t worker_id, const tbp_done *d);
// tbp_enc_worker_dones encodes a worker_done of n results ("results").
int tbp_enc_worker_dones(msgpack_sbuffer *b, uint64_t req_id,
    uint64_t worker_id, const tbp_done *d, uint32_t n);
// tbp_enc_rep_dones answers it with one status (tb_err) per result.
int tbp_enc_rep_dones(
    msgpack_sbuffer *b, uint64_t req_id, const uint32_t *st, uint32_t n);
int tbp_enc_worker_bye(msgpack_sbuffer *b, uint64_t req_id, uint64_t worker_id,
    const uint64_t *ids, uint32_t n);
int tbp_enc_rep_hello(msgpack_sbuffer *b, uint64_t req_id, uint64_t worker_id,
    uint32_t heartbeat_ms, uint32_t timeout_ms);
int tbp_enc_rep_take(msgpack_sbuffer *b, uint64_t req_id, const tbp_job *jobs,
    uint32_t njobs, const tbp_job *cancels, uint32_t ncancels, bool stop);
int tbp_enc_rep_workers(
    msgpack_sbuffer *b, uint64_t req_id, const tbp_winfo *w, uint32_t n);

// tbp_enc_rep_error encodes an error reply: status code, its wire name and
// message (NULL: tbp_err_message(status)).
int tbp_enc_rep_error(msgpack_sbuffer *b, uint32_t op, uint64_t req_id,
    int status, const char *message);
// tbp_enc_rep_submit encodes {"ids", "dup", "existing"} for n tasks; dup
// and existing may be NULL (all false).
int tbp_enc_rep_submit(msgpack_sbuffer *b, uint64_t req_id,
    const uint64_t *ids, const bool *dup, const bool *existing, uint32_t n);
// tbp_enc_rep_count encodes a retry or purge reply {"count"}.
int tbp_enc_rep_count(
    msgpack_sbuffer *b, uint32_t op, uint64_t req_id, uint64_t count);
// tbp_enc_rep_drain encodes {"timed_out"}.
int tbp_enc_rep_drain(msgpack_sbuffer *b, uint64_t req_id, bool timed_out);
int tbp_enc_rep_scheds(
    msgpack_sbuffer *b, uint64_t req_id, const tbp_sched *s, uint32_t n);
int tbp_enc_rep_queues(
    msgpack_sbuffer *b, uint64_t req_id, const tbp_qstat *q, uint32_t n);
// tbp_enc_rep_task encodes a status, cancel or wait reply; timed_out is
// written only for TBP_OP_WAIT.
int tbp_enc_rep_task(msgpack_sbuffer *b, uint32_t op, uint64_t req_id,
    const tbp_task_info *t, bool timed_out);
int tbp_enc_rep_tasks(msgpack_sbuffer *b, uint64_t req_id,
    const tbp_task_info *tasks, uint32_t n);
int tbp_enc_rep_stats(
    msgpack_sbuffer *b, uint64_t req_id, const tbp_stats *st);
// tbp_enc_rep_stats_wh is tbp_enc_rep_stats with the worker handlers'
// figures (wh[0..nwh)) added as "whandlers".
int tbp_enc_rep_stats_wh(msgpack_sbuffer *b, uint64_t req_id,
    const tbp_stats *st, const tbp_whstat *wh, uint32_t nwh);
int tbp_enc_rep_ping(
    msgpack_sbuffer *b, uint64_t req_id, const char *version, uint64_t pid);
// tbp_enc_rep_empty encodes an ok reply with an empty body (shutdown).
int tbp_enc_rep_empty(msgpack_sbuffer *b, uint32_t op, uint64_t req_id);

// tbp_enc_event encodes an event; e->topic is ignored: the topic is built
// as "tb.<event>.<queue>.<handler>".
int tbp_enc_event(msgpack_sbuffer *b, const tbp_event *e);

// tbp_bytes_eq is true if v holds exactly the C string s.
bool tbp_bytes_eq(tbp_bytes v, const char *s);

// tbp_bytes_dup returns a malloc'd NUL-terminated copy of v, or NULL.
char *tbp_bytes_dup(tbp_bytes v);

// tbp_str is a view of a C string (NULL gives an empty view).
tbp_bytes tbp_str(const char *s);

#endif // TBP_H
