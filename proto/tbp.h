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
//             "finished_at" (Unix µs), "result"?: bin, "error"?: str}
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

#ifndef TBP_H
#define TBP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include <taskbroker.h>

#define TBP_VERSION 1

// Limits, enforced at decode time.
#define TBP_MAX_MSG (8u << 20)      // one request or reply, in bytes
#define TBP_MAX_PAYLOAD (1u << 20)  // a task's payload
#define TBP_MAX_RESULT (64u << 10)  // a task's result
#define TBP_MAX_ERROR 4096u         // a task's error text
#define TBP_MAX_NAME 128u           // queue and handler names
#define TBP_MAX_TASKS TB_MAX_BATCH  // tasks in one submit
#define TBP_MAX_LIST 1000u          // tasks in one list reply
#define TBP_MAX_DEPTH 32u           // nesting of arrays and maps
#define TBP_SID_LEN 16u             // a submission id

// TBP_OPS is the one list of operations: X(NAME, value, "name").
#define TBP_OPS(X)                                                          \
	X(PING, 0, "ping")                                                  \
	X(SUBMIT, 1, "submit")                                              \
	X(STATUS, 2, "status")                                              \
	X(WAIT, 3, "wait")                                                  \
	X(CANCEL, 4, "cancel")                                              \
	X(LIST, 5, "list")                                                  \
	X(STATS, 6, "stats")                                                \
	X(SHUTDOWN, 7, "shutdown")

#define TBP_OP_ENUM_(n, v, s) TBP_OP_##n = v,
enum tbp_op { TBP_OPS(TBP_OP_ENUM_) TBP_OP_COUNT };
#undef TBP_OP_ENUM_

// tbp_op_name returns the static name of op, or "unknown".
const char *tbp_op_name(uint32_t op);

// tbp_err_name and tbp_err_message return static texts for a tb_err code
// (the same texts as tb_errname and tb_strerror).
const char *tbp_err_name(int code);
const char *tbp_err_message(int code);

// tbp_bytes is a view of a string or byte string inside a decoded message.
// Strings are NOT NUL-terminated. A view stays valid until the message
// (tbp_req, tbp_rep, tbp_event) it came from is finished.
typedef struct tbp_bytes {
	const uint8_t *p;
	uint32_t       n;
} tbp_bytes;

// tbp_task_in is one task of a submit.
typedef struct tbp_task_in {
	tbp_bytes sid;     // TBP_SID_LEN bytes
	tbp_bytes handler; // 1..TBP_MAX_NAME bytes
	tbp_bytes queue;   // 0..TBP_MAX_NAME bytes; empty means "default"
	tbp_bytes payload; // one msgpack object, or empty
	int32_t   priority;
	uint32_t  max_attempts; // 0: broker default
	uint32_t  timeout_ms;   // 0: none
	uint32_t  delay_ms;     // 0: now
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
} tbp_task_info;

// tbp_stats mirrors tb_stats.
typedef struct tbp_stats {
	uint64_t pending, running, done, failed, dead, cancelled;
	uint64_t submitted, completed, uptime_ms;
	uint32_t workers, pid;
} tbp_stats;

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
	uint32_t       nids;
	bool           have_task; // status, wait, cancel
	tbp_task_info  task;
	bool           timed_out; // wait
	tbp_task_info *tasks;     // list
	uint32_t       ntasks;
	tbp_stats      stats;   // stats
	tbp_bytes      version_str; // ping
	uint64_t       pid;     // ping

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

int tbp_enc_submit(msgpack_sbuffer *b, uint64_t req_id,
    const tbp_task_in *tasks, uint32_t n);
// tbp_enc_req_id encodes status or cancel: {"id": id}.
int tbp_enc_req_id(
    msgpack_sbuffer *b, uint32_t op, uint64_t req_id, uint64_t id);
int tbp_enc_wait(
    msgpack_sbuffer *b, uint64_t req_id, uint64_t id, int64_t timeout_ms);
// tbp_enc_list: queue may be NULL, state < 0 for all, limit 0 for default.
int tbp_enc_list(msgpack_sbuffer *b, uint64_t req_id, const char *queue,
    int32_t state, uint32_t limit, uint64_t after_id);
// tbp_enc_req_empty encodes ping, stats or shutdown.
int tbp_enc_req_empty(msgpack_sbuffer *b, uint32_t op, uint64_t req_id);

// tbp_enc_rep_error encodes an error reply: status code, its wire name and
// message (NULL: tbp_err_message(status)).
int tbp_enc_rep_error(msgpack_sbuffer *b, uint32_t op, uint64_t req_id,
    int status, const char *message);
int tbp_enc_rep_submit(msgpack_sbuffer *b, uint64_t req_id,
    const uint64_t *ids, const bool *dup, uint32_t n);
// tbp_enc_rep_task encodes a status, cancel or wait reply; timed_out is
// written only for TBP_OP_WAIT.
int tbp_enc_rep_task(msgpack_sbuffer *b, uint32_t op, uint64_t req_id,
    const tbp_task_info *t, bool timed_out);
int tbp_enc_rep_tasks(msgpack_sbuffer *b, uint64_t req_id,
    const tbp_task_info *tasks, uint32_t n);
int tbp_enc_rep_stats(
    msgpack_sbuffer *b, uint64_t req_id, const tbp_stats *st);
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
