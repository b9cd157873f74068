// taskbroker.h: the public API of libtaskbroker, the client library for
// taskbrokerd.
//
// A producer opens a client (tb_client_open), submits tasks (tb_submit,
// tb_submit_batch), and may ask for their state (tb_status), wait for them
// to end (tb_wait) or cancel them (tb_cancel). A consumer of outcomes opens
// a subscription (tb_sub_open) and receives events (tb_sub_recv). A worker
// process runs tasks of its own handlers (tb_worker_open, tb_worker_next,
// tb_job_complete; "workers" below).
//
// Conventions, kept on every call so that bindings (ctypes, cffi) are easy:
// - Every function that can fail returns an int error code: TB_OK (0) or
//   one of TB_E*; tb_strerror() describes it, tb_errname() gives its stable
//   wire name ("not_found", "shutting_down", ...).
// - Handles are opaque. Constructors write the new object through their
//   first argument and transfer ownership to the caller only on success.
//   Everything the library returns has a matching free/close, and each of
//   those accepts NULL.
// - A tb_client is safe to use from many threads at once. A tb_sub is used
//   by one thread at a time.
// - The library never aborts or exits and prints nothing.
// - Error codes (TB_E*), task states (TB_STATE_*), limits and the default
//   endpoints are defined in <taskbroker/defs.h>, which this header
//   includes.
// - nng is not fork-safe: a client opened (or first used) in one process and
//   then used in a child after fork() returns TB_EFORK instead of touching
//   its sockets. Open a new client in the child.

#ifndef TASKBROKER_H
#define TASKBROKER_H

#include <stddef.h>
#include <stdint.h>

#include <taskbroker/defs.h> // error codes, states, limits, default urls

#ifdef __cplusplus
extern "C" {
#endif

// tb_strerror returns a static human-readable message for code; unknown
// codes get a generic message. Any thread.
const char *tb_strerror(int code);

// tb_errname returns the static wire name of code ("not_found"), or
// "unknown" for a code this library does not know. Any thread.
const char *tb_errname(int code);

// tb_state_name returns the static name of state ("pending"), or "unknown".
const char *tb_state_name(int state);

// tb_state_parse writes the state named name to *statep; TB_EINVAL if the
// name is not a state.
int tb_state_parse(const char *name, int *statep);

// tb_state_is_final is 1 for done, dead and cancelled, else 0.
int tb_state_is_final(int state);

// tb_default_url returns the request endpoint the client uses when given
// NULL: $TASKBROKER_URL if set and non-empty, else the broker's default
// (TB_DEFAULT_URL).
const char *tb_default_url(void);

// tb_default_events_url is the same for the events endpoint
// ($TASKBROKER_EVENTS_URL, TB_DEFAULT_EVENTS_URL).
const char *tb_default_events_url(void);

typedef uint64_t         tb_id;
typedef struct tb_client tb_client;
typedef struct tb_task   tb_task;
typedef struct tb_sub    tb_sub;
typedef struct tb_event  tb_event;

// tb_client_open creates a client for the broker at url (NULL: the
// default, see tb_default_url). No connection is made here: sockets are
// opened on first use in the calling process. On success *cp owns a client
// to be released with tb_client_close. Returns TB_OK, TB_EINVAL (bad url) or
// TB_ENOMEM. The token and TLS settings come from the environment (see
// tb_conn_opts), so a bad $TASKBROKER_TOKEN_FILE, for one, is TB_EINVAL.
// Any thread.
int tb_client_open(tb_client **cp, const char *url);

// tb_conn_opts: what a client or a subscription proves to a broker whose
// listener asks for it (a tcp:// or tls+tcp:// one, see the README's
// "Remote access"), and how it checks the broker. Always start from
// TB_CONN_OPTS_INIT so fields added later get their defaults. Each field
// left NULL is taken from the environment variable named beside it; ""
// means none, whatever the environment says. Files are read when the
// client or subscription is opened.
typedef struct tb_conn_opts {
	// token is sent with every request ($TASKBROKER_TOKEN); it wins over
	// token_file, a file whose first line is the token
	// ($TASKBROKER_TOKEN_FILE). Prefer the file: a variable or argument
	// may be seen by others (ps, /proc). Subscriptions send nothing.
	const char *token;
	const char *token_file;
	// For tls+tcp:// urls only: the CA certificates (PEM) the broker's
	// certificate must verify against ($TASKBROKER_TLS_CA; default: the
	// system's store, /etc/ssl/certs/ca-certificates.crt); the client's
	// own certificate chain and unencrypted private key (PEM), for a
	// broker that asks for one ($TASKBROKER_TLS_CERT,
	// $TASKBROKER_TLS_KEY; both or neither); and the name the broker's
	// certificate must carry ($TASKBROKER_TLS_SERVER_NAME; default: the
	// url's host). The broker is always verified.
	const char *tls_ca_file;
	const char *tls_cert_file;
	const char *tls_key_file;
	const char *tls_server_name;
} tb_conn_opts;

#define TB_CONN_OPTS_INIT                          \
	{                                          \
		NULL, NULL, NULL, NULL, NULL, NULL \
	}

// tb_client_open_opts is tb_client_open with connection options (NULL:
// all from the environment, which is what tb_client_open does). Returns
// TB_OK, TB_EINVAL (bad url; a file of opts missing or unreadable; a
// certificate without its key or the reverse; a token that is empty,
// longer than 256 bytes or holds a NUL) or TB_ENOMEM. A broker that
// refuses the token answers each request with TB_EUNAUTHORIZED; a TLS
// handshake that fails (the broker's certificate does not verify or does
// not name the server, or the broker wants a client certificate that is
// missing or not signed by its CA) makes requests fail with TB_ETLS.
// Any thread.
int tb_client_open_opts(
    tb_client **cp, const char *url, const tb_conn_opts *opts);

// tb_client_close closes the client; calls still running in other threads
// return TB_ECLOSED, and asynchronous ops in flight complete with
// TB_ECLOSED before it returns (see tb_submit_async). Accepts NULL. No
// call may start on c afterwards, and it must not be called from an op's
// callback. It
// never blocks on the socket's close for more than about 2 s, even where
// nng 1.5.2's own close would hang (a close racing the reconnection to a
// broker that has gone); the socket is then closed in the background.
void tb_client_close(tb_client *c);

// tb_client_set_timeout sets how long a request waits for its reply, in
// milliseconds (default 10000; tb_wait adds its own timeout to this).
// Returns TB_EINVAL for ms <= 0.
int tb_client_set_timeout(tb_client *c, int ms);

// tb_submit_opts: options for one submitted task. Always start from
// TB_SUBMIT_OPTS_INIT so fields added later get their defaults.
typedef struct tb_submit_opts {
	const char *queue;        // NULL: "default"
	int32_t     priority;     // higher first within a queue; default 0
	uint32_t    max_attempts; // 0: the broker's default (1)
	uint32_t    timeout_ms;   // per attempt; 0: none
	uint32_t    delay_ms;     // earliest start after acceptance; 0: now
	int64_t     run_at;       // earliest start, Unix µs; 0: use delay_ms
	const char *key;          // idempotency key; NULL: none
	int         forever;      // non-zero: restart whenever it ends
	// max_crashes: attempts that may be cut short by the death of the
	// broker or of a worker (they do not count in max_attempts) before
	// the task is quarantined: dead, as a likely cause. 0: the queue's
	// default (the broker's --max-crashes, 3).
	uint32_t max_crashes;
} tb_submit_opts;

#define TB_SUBMIT_OPTS_INIT                     \
	{                                       \
		NULL, 0, 0, 0, 0, 0, NULL, 0, 0 \
	}

// tb_task_spec describes one task of a batch submit. payload is msgpack
// bytes (one object) handed to the handler as they are; payload_len 0 means
// an empty map. opts may be NULL for the defaults.
typedef struct tb_task_spec {
	const char           *handler;
	const void           *payload;
	size_t                payload_len;
	const tb_submit_opts *opts;
} tb_task_spec;

// tb_submit submits one task and returns after the broker has written it to
// its store; *idp (may be NULL) receives the task's id. The request carries
// a fresh submission id, so a copy resent by the transport after a broker
// restart is recognised and creates nothing. Errors: TB_EINVAL,
// TB_ENOHANDLER, TB_ETOOBIG, TB_ESHUTTINGDOWN, TB_ETIMEDOUT,
// TB_EUNREACHABLE, TB_EFORK, TB_ESTORE, ... Any thread.
int tb_submit(tb_client *c, const char *handler, const void *payload,
    size_t payload_len, const tb_submit_opts *opts, tb_id *idp);

// tb_submit_batch submits n tasks (1..TB_MAX_BATCH) in one request and one
// durable commit; ids (n entries, may be NULL) receive their ids in order.
// All or nothing: on error no task of the batch was accepted.
int tb_submit_batch(
    tb_client *c, const tb_task_spec *specs, size_t n, tb_id *ids);

// Flags tb_submit_batch_flags reports per task.
#define TB_SUBMIT_DUP 1u      // a resent copy of an earlier submission
#define TB_SUBMIT_EXISTING 2u // its key matched an unfinished task

// tb_submit_batch_flags is tb_submit_batch that also reports, in flags (n
// entries, may be NULL), whether each id is a new task or an existing one
// (TB_SUBMIT_EXISTING: the idempotency key matched a task that has not
// ended; its id is returned and nothing new was created).
int tb_submit_batch_flags(tb_client *c, const tb_task_spec *specs, size_t n,
    tb_id *ids, uint32_t *flags);

// tb_status fetches a task. On success *tp owns a tb_task (tb_task_free).
// TB_ENOTFOUND if there is no such task (or it was pruned).
int tb_status(tb_client *c, tb_id id, tb_task **tp);

// tb_wait waits up to timeout_ms (< 0: the broker's maximum, one hour) for
// the task to reach a final state, then fetches it as tb_status does.
// Returns TB_ETIMEDOUT if the task had not ended in time; *tp is then still
// set to the task as it was (free it).
int tb_wait(tb_client *c, tb_id id, int timeout_ms, tb_task **tp);

// tb_cancel cancels a task that has not ended: a pending (or delayed, or
// waiting for a retry) task ends as cancelled at once; a running one is
// stopped as for a timeout and ends as cancelled, without a retry (the
// reply comes once it has stopped). A forever task stops for good.
// TB_ESTATE if the task has already ended. On success, *tp (may be NULL)
// receives the task after the change.
int tb_cancel(tb_client *c, tb_id id, tb_task **tp);

// tb_list_opts filters a listing; start from TB_LIST_OPTS_INIT.
typedef struct tb_list_opts {
	const char *queue;      // NULL: all queues
	int         state;      // -1: all states
	uint32_t    limit;      // 0: 100; at most 1000
	tb_id       after_id;   // paging: only ids greater than this
	const char *handler;    // NULL: all handlers
	uint64_t    min_age_ms; // created at least this long ago; 0: any
	uint64_t    max_age_ms; // created at most this long ago; 0: any
} tb_list_opts;

#define TB_LIST_OPTS_INIT                  \
	{                                  \
		NULL, -1, 0, 0, NULL, 0, 0 \
	}

// tb_list returns up to opts->limit tasks in id order. On success *tasksp is
// an array of *np task pointers to release with tb_task_list_free(tasks, n).
int tb_list(
    tb_client *c, const tb_list_opts *opts, tb_task ***tasksp, size_t *np);

// tb_task_list_free frees an array returned by tb_list. Accepts NULL.
void tb_task_list_free(tb_task **tasks, size_t n);

// Task accessors. Strings and bytes stay valid until tb_task_free. Times are
// Unix microseconds, 0 when not reached. result is msgpack bytes (NULL with
// *lenp 0 if none); error is NULL if the last attempt did not fail.
// attempts counts the attempts that ran to an outcome (or run now);
// crashes counts apart the attempts cut short by the death of the broker or
// of a worker, which are run again without spending an attempt; at
// max_crashes the task is quarantined (dead). A broker older than these
// figures reports 0 for both.
tb_id       tb_task_id(const tb_task *t);
int         tb_task_state(const tb_task *t);
uint32_t    tb_task_attempts(const tb_task *t);
uint32_t    tb_task_max_attempts(const tb_task *t);
uint32_t    tb_task_crashes(const tb_task *t);
uint32_t    tb_task_max_crashes(const tb_task *t);
int32_t     tb_task_priority(const tb_task *t);
const char *tb_task_queue(const tb_task *t);
const char *tb_task_handler(const tb_task *t);
const void *tb_task_result(const tb_task *t, size_t *lenp);
const char *tb_task_error(const tb_task *t);
int64_t     tb_task_created_at(const tb_task *t);
int64_t     tb_task_started_at(const tb_task *t);
int64_t     tb_task_finished_at(const tb_task *t);
int64_t     tb_task_run_at(const tb_task *t);     // earliest (next) start
uint32_t    tb_task_timeout_ms(const tb_task *t); // 0: none
int         tb_task_forever(const tb_task *t);    // 1 for forever tasks
const char *tb_task_key(const tb_task *t);        // NULL: none

// tb_task_free frees a task. Accepts NULL.
void tb_task_free(tb_task *t);

// tb_stats: broker-wide figures. Counts by state cover the tasks in the
// store; submitted/completed count since the broker started.
typedef struct tb_stats {
	uint64_t pending;
	uint64_t running;
	uint64_t done;
	uint64_t failed;
	uint64_t dead;
	uint64_t cancelled;
	uint64_t submitted;
	uint64_t completed;
	uint64_t uptime_ms;
	uint32_t workers;
	uint32_t pid;
	uint64_t schedules; // periodic schedules defined
	uint64_t forever;   // forever tasks not ended
	uint64_t crashloop; // forever tasks restarting too often
} tb_stats;

// tb_stats_get fills *st.
int tb_stats_get(tb_client *c, tb_stats *st);

// tb_ping checks that the broker answers; *versionp (may be NULL) receives
// a malloc'd broker version string to free().
int tb_ping(tb_client *c, char **versionp);

// tb_shutdown asks the broker to shut down gracefully; it returns once the
// broker has acknowledged the request, not once it has exited.
int tb_shutdown(tb_client *c);

// tb_retry puts task id, which must be dead (also quarantined) or
// cancelled, back to pending with its attempts and crashes reset.
// TB_ESTATE for a task in another state.
int tb_retry(tb_client *c, tb_id id);

// tb_retry_queue does the same for every task of queue (NULL: all queues)
// in state (TB_STATE_DEAD or TB_STATE_CANCELLED; -1: dead); *countp (may
// be NULL) receives how many.
int tb_retry_queue(
    tb_client *c, const char *queue, int state, uint64_t *countp);

// tb_pause stops queue from starting tasks (it still accepts them);
// tb_resume lets it start them again. Both are persisted.
int tb_pause(tb_client *c, const char *queue);
int tb_resume(tb_client *c, const char *queue);

// tb_drain waits up to timeout_ms (< 0: an hour) until queue (NULL: every
// queue) has nothing pending, waiting for a retry or running. Returns
// TB_OK, or TB_ETIMEDOUT if that did not happen in time. A paused queue
// with tasks never drains.
int tb_drain(tb_client *c, const char *queue, int timeout_ms);

// tb_purge deletes tasks of queue (NULL: all) in state (pending, done,
// dead or cancelled) created at least min_age_ms ago; *countp (may be
// NULL) receives how many.
int tb_purge(tb_client *c, const char *queue, int state, uint64_t min_age_ms,
    uint64_t *countp);

// tb_schedule_spec defines a periodic schedule; start from
// TB_SCHEDULE_SPEC_INIT. Exactly one of every_ms and cron must be set.
// Each due time fires one task, even across restarts; a broker that was
// down over several due times fires once when it comes back, or once per
// missed time if catch_up is set.
typedef struct tb_schedule_spec {
	const char *name;
	const char *handler;
	const char *queue; // NULL: "default"
	const void *payload;
	size_t      payload_len;
	int32_t     priority;
	uint32_t    max_attempts;
	uint32_t    timeout_ms;
	uint64_t    every_ms;
	const char *cron; // 5 fields or @daily etc., evaluated in UTC
	int         catch_up;
} tb_schedule_spec;

#define TB_SCHEDULE_SPEC_INIT                                  \
	{                                                      \
		NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0, NULL, 0 \
	}

// tb_schedule_add adds the schedule, or replaces the one with its name.
int tb_schedule_add(tb_client *c, const tb_schedule_spec *spec);

// tb_schedule_rm removes a schedule; TB_ENOTFOUND if there is none.
int tb_schedule_rm(tb_client *c, const char *name);

// tb_schedule_pause pauses (paused != 0) or resumes a schedule.
int tb_schedule_pause(tb_client *c, const char *name, int paused);

// tb_schedule_info is a schedule as the broker reports it. All strings are
// owned by the array returned from tb_schedule_list.
typedef struct tb_schedule_info {
	char    *name;
	char    *handler;
	char    *queue;
	char    *cron; // NULL when every_ms is used
	uint64_t every_ms;
	int32_t  priority;
	uint32_t max_attempts;
	uint32_t timeout_ms;
	int      catch_up;
	int      paused;
	int64_t  next_at; // Unix µs
	int64_t  last_at; // 0: never fired
	uint64_t fired;
	tb_id    last_task;
} tb_schedule_info;

// tb_schedule_list returns every schedule; free with tb_schedule_list_free.
int  tb_schedule_list(tb_client *c, tb_schedule_info **listp, size_t *np);
void tb_schedule_list_free(tb_schedule_info *list, size_t n);

// tb_queue_info is one queue's figures.
typedef struct tb_queue_info {
	char    *name;
	uint64_t pending;
	uint64_t running;
	uint64_t failed;
	uint64_t dead;
	uint64_t done;
	uint64_t cancelled;
	int      paused;
	uint32_t concurrency; // 0: no limit
	uint64_t max_pending; // 0: no limit
	uint64_t done_last_min;
	uint64_t oldest_pending_ms;
	uint32_t forever;
	uint32_t crashloop;
} tb_queue_info;

// tb_queues returns every known queue; free with tb_queues_free.
int  tb_queues(tb_client *c, tb_queue_info **listp, size_t *np);
void tb_queues_free(tb_queue_info *list, size_t n);

// ---- asynchronous requests ------------------------------------------------
//
// tb_submit_async, tb_submit_batch_async and tb_wait_async send their
// request and return at once, so that one thread (an event loop) can keep
// many requests in flight on one client. Each started request is a tb_op
// that completes exactly once, with the same outcome the blocking call
// would have returned (same encoding, timeouts, resends after a broker
// restart and reconnection), delivered in one of two ways chosen per op:
//
// - cb != NULL: cb(op, arg) is called once, on one of nng's threads (not
//   inside the starting call, though possibly before the starting call
//   has returned to its caller). It must not block:
//   no blocking tb_* call, no waiting on locks held for long, and never
//   tb_client_close. It may call the tb_op_* accessors, start new
//   asynchronous ops, and free op (tb_op_free), in the callback or later
//   from any thread: the op is the callback's from the moment it is called.
// - cb == NULL: the op is appended to the client's completion queue, from
//   which tb_client_next_completed takes it (and hands it to the caller).
//   tb_client_completion_fd gives a descriptor to wait on.
//
// Ownership: an op belongs to the library until it is delivered (its
// callback called, or taken from the queue); the receiver then frees it
// with tb_op_free, before or after tb_client_close. *opp (may be NULL)
// gets the op's handle before the request is sent, for matching only:
// in callback mode the op may already have been delivered and freed when
// the starting call returns. If a starting call fails, no op exists, the
// callback is never called and nothing is queued. Everything the call
// takes (handler, payload, opts, specs) is copied before it returns.
//
// Bound: at most a client's max_inflight ops (default
// TB_ASYNC_MAX_INFLIGHT, see tb_client_set_max_inflight) are in flight
// at once; a call over it fails with TB_EBUSY without sending anything.
// An op counts from its start until it is delivered.
//
// tb_client_close with ops in flight aborts them: each completes with
// TB_ECLOSED (as does any op the broker had not answered), its callback
// is called before tb_client_close returns, and ops still in the
// completion queue are freed by tb_client_close (nobody can take them
// afterwards). TB_ECLOSED and TB_ETIMEDOUT on a submit mean the outcome
// is unknown: the broker may have accepted the tasks.
//
// Threads: every call here may be made from many threads at once on one
// client. The first request of a client in a process (blocking or not)
// dials the broker synchronously, which takes up to about 250 ms when
// the broker is not there (then TB_EUNREACHABLE). After fork(), every
// call fails with TB_EFORK as the blocking calls do.

#define TB_ASYNC_MAX_INFLIGHT 1024 // default bound of ops in flight

typedef struct tb_op tb_op;

// tb_op_cb is called once when op completes; see above for the rules.
typedef void (*tb_op_cb)(tb_op *op, void *arg);

// tb_client_set_max_inflight sets how many asynchronous ops may be in
// flight on c at once (1..65536; default TB_ASYNC_MAX_INFLIGHT). Lowering
// it does not touch ops already in flight. TB_EINVAL out of range.
int tb_client_set_max_inflight(tb_client *c, int n);

// tb_submit_async submits one task as tb_submit does, without waiting.
// On completion tb_op_status is tb_submit's result and tb_op_id the id.
// Returns TB_OK (the op is in flight), or an error and no op: TB_EINVAL,
// TB_ETOOBIG, TB_EBUSY (max_inflight reached), TB_ECLOSED (the client is
// closing), TB_EUNREACHABLE (first dial), TB_EFORK, TB_ENOMEM.
int tb_submit_async(tb_client *c, const char *handler, const void *payload,
    size_t payload_len, const tb_submit_opts *opts, tb_op_cb cb, void *arg,
    tb_op **opp);

// tb_submit_batch_async submits n tasks (1..TB_MAX_BATCH) in one request
// as tb_submit_batch does; tb_op_ids gives their ids in order. Returns as
// tb_submit_async.
int tb_submit_batch_async(tb_client *c, const tb_task_spec *specs, size_t n,
    tb_op_cb cb, void *arg, tb_op **opp);

// tb_wait_async waits as tb_wait does (timeout_ms < 0: an hour) without
// blocking. On completion tb_op_status is TB_OK when the task has ended,
// TB_ETIMEDOUT when it had not in time (tb_op_task is then the task as it
// was), or an error (TB_ENOTFOUND, ...). Returns as tb_submit_async.
int tb_wait_async(tb_client *c, tb_id id, int timeout_ms, tb_op_cb cb,
    void *arg, tb_op **opp);

// tb_client_completion_fd writes to *fdp a descriptor (an eventfd, made on
// the first call) that is readable whenever c's completion queue holds at
// least one op: level-triggered, it stays readable until
// tb_client_next_completed has taken the last op. Watch it for reading
// only (poll, epoll, asyncio's add_reader, libuv's uv_poll); never read,
// write or close it. It stays valid until tb_client_close, which closes
// it: stop watching it first. Returns TB_OK, TB_EINVAL, TB_EFORK or
// TB_ESYSTEM.
int tb_client_completion_fd(tb_client *c, int *fdp);

// tb_client_next_completed takes the oldest op from c's completion queue
// without blocking: *opp is then the caller's (tb_op_free). Returns TB_OK,
// or TB_ETIMEDOUT with *opp NULL when the queue is empty (TB_EINVAL,
// TB_EFORK). Drain it until TB_ETIMEDOUT each time the descriptor is
// readable.
int tb_client_next_completed(tb_client *c, tb_op **opp);

// Op accessors, for a delivered op (any thread, one at a time).
// tb_op_status is the op's result (a TB_E* code, TB_OK on success).
// tb_op_id is the first (for tb_submit_async the only) id of a successful
// submit, else 0; tb_op_ids gives all n of them (NULL, *np 0 if none; np
// may be NULL), valid until tb_op_free. tb_op_task is the task of a wait
// that returned one (TB_OK or TB_ETIMEDOUT), else NULL; it belongs to the
// op and is freed with it, unless taken with tb_op_take_task, which hands
// it to the caller (tb_task_free) and leaves NULL in the op. tb_op_arg is
// the arg given at the start.
int            tb_op_status(const tb_op *op);
tb_id          tb_op_id(const tb_op *op);
const tb_id   *tb_op_ids(const tb_op *op, size_t *np);
const tb_task *tb_op_task(const tb_op *op);
tb_task       *tb_op_take_task(tb_op *op);
void          *tb_op_arg(const tb_op *op);

// tb_op_free frees a delivered op and what it still holds. Accepts NULL.
// Any thread, also in the op's own callback; never on an op that has not
// been delivered.
void tb_op_free(tb_op *op);

// tb_sub_open subscribes to the broker's events at url (NULL: default) for
// topics starting with prefix (NULL or "": all; e.g. "tb.done."). Topics are
// "tb.<event>.<queue>.<handler>"; events: start, done, retry (an attempt
// failed and a retry is scheduled), dead, cancelled, timeout (an attempt
// ran out of time), interrupted (an attempt was cut short by the death of
// the broker or of a worker; the task is pending again, its crashes one
// more), restart (a forever task is started again), crashloop, fired (a
// schedule created a task), shutdown. Events are best effort: a
// slow subscriber may miss some; tb_status always tells the truth. On success
// *sp owns the subscription (tb_sub_close).
int tb_sub_open(tb_sub **sp, const char *url, const char *prefix);

// tb_sub_open_opts is tb_sub_open with connection options (NULL: all from
// the environment, which is what tb_sub_open does). Only the TLS fields
// matter: PUB hears nothing from its subscribers, so a broker guards a
// remote events endpoint with client certificates, not the token. Returns
// as tb_sub_open, and TB_EINVAL as tb_client_open_opts for bad options.
// The dial is made in the background, so a TLS handshake that fails shows
// only as events that never come (tb_sub_recv times out); a tb_client
// with the same options reports it as TB_ETLS.
int tb_sub_open_opts(tb_sub **sp, const char *url, const char *prefix,
    const tb_conn_opts *opts);

// tb_sub_recv waits up to timeout_ms (< 0: forever) for the next event. On
// success *ep owns it (tb_event_free). TB_ETIMEDOUT when none came.
int tb_sub_recv(tb_sub *s, int timeout_ms, tb_event **ep);

// tb_sub_close closes the subscription. Accepts NULL. Bounded as
// tb_client_close is.
void tb_sub_close(tb_sub *s);

// Event accessors; strings and bytes stay valid until tb_event_free.
const char *tb_event_topic(const tb_event *e); // "tb.done.default.noop"
const char *tb_event_name(const tb_event *e);  // "done"
uint64_t    tb_event_seq(const tb_event *e);   // increases by 1 per event
tb_id       tb_event_task_id(const tb_event *e);
int         tb_event_state(const tb_event *e);
uint32_t    tb_event_attempt(const tb_event *e);
uint32_t    tb_event_crashes(const tb_event *e); // the task's crashes
uint64_t    tb_event_duration_us(const tb_event *e);
int64_t     tb_event_time(const tb_event *e); // Unix µs of the change
const char *tb_event_queue(const tb_event *e);
const char *tb_event_handler(const tb_event *e);
const void *tb_event_result(const tb_event *e, size_t *lenp);
const char *tb_event_error(const tb_event *e);

// tb_event_free frees an event. Accepts NULL.
void tb_event_free(tb_event *e);

// ---- workers: run your own code ------------------------------------------
//
// A worker is a process of yours that serves handler names: the broker
// sends it the tasks submitted for those names and stores what it answers,
// with everything else (durability, retries, timeouts, cancel, keys,
// schedules) staying in the broker. A worker's tasks belong to its
// connection: if the process dies, its tasks run again elsewhere at once
// and the attempt is not spent. Every job carries (task id, attempt); a
// result for an attempt that is no longer current (the broker gave it up
// after a cancel or timeout grace, or the connection dropped meanwhile)
// is refused with TB_ESTALE. See the README, "Run your own code in a
// worker".
//
// A tb_worker may be used from many threads at once. The library keeps
// one request outstanding on its own thread to receive jobs and cancel
// notices, and reconnects (saying hello again) by itself after the broker
// restarts. Like a tb_client it must be used in the process that opened
// it (TB_EFORK otherwise).

typedef struct tb_worker tb_worker;
typedef struct tb_job    tb_job;

// tb_worker_opts: what a worker serves. Always start from
// TB_WORKER_OPTS_INIT so fields added later get their defaults.
typedef struct tb_worker_opts {
	const char *const  *handlers; // names served, 1..64 (required)
	size_t              nhandlers;
	const char *const  *queues; // only these queues; NULL/0: any
	size_t              nqueues;
	unsigned            slots; // jobs at once, 1..1024 (default 1)
	const char         *name;  // shown by `taskbroker workers`
	const tb_conn_opts *conn;  // token and TLS (NULL: environment)
} tb_worker_opts;

#define TB_WORKER_OPTS_INIT                     \
	{                                       \
		NULL, 0, NULL, 0, 1, NULL, NULL \
	}

// tb_worker_open starts a worker for the broker at url (NULL: the
// default) with o. It returns at once: the worker connects (and says
// hello) in the background, and keeps trying while the broker is not
// there. On success *wp owns the worker (tb_worker_close). Returns TB_OK,
// TB_EINVAL (bad url, no handlers, a name empty or over 128 bytes, slots
// over 1024, bad connection options), TB_ENOMEM or TB_ESYSTEM. Any thread.
int tb_worker_open(tb_worker **wp, const char *url, const tb_worker_opts *o);

// tb_worker_next waits up to timeout_ms (< 0: for ever, 0: not at all)
// for the next job and writes it to *jp; the caller owns it until
// tb_job_complete or tb_job_fail. Returns TB_OK, TB_ETIMEDOUT (nothing
// came), TB_ECLOSED (the worker is stopping or closed) or TB_EFORK. Any
// thread; many may wait at once.
int tb_worker_next(tb_worker *w, int timeout_ms, tb_job **jp);

// tb_worker_try_next is tb_worker_next(w, 0, jp): it never blocks, and
// when it returns TB_ETIMEDOUT (nothing ready) it also resets the
// readiness descriptor of tb_worker_fd.
int tb_worker_try_next(tb_worker *w, tb_job **jp);

// tb_worker_fd writes to *fdp a descriptor (an eventfd) that is readable
// when a job may be ready or a cancel notice has arrived, for an event
// loop (asyncio's add_reader, libuv's uv_poll): when it is readable, call
// tb_worker_try_next until TB_ETIMEDOUT, and check your jobs'
// tb_job_cancelled. Do not read or close it; it stays valid until
// tb_worker_close. Returns TB_OK or TB_EINVAL.
int tb_worker_fd(tb_worker *w, int *fdp);

// tb_worker_stop stops taking jobs, waits up to grace_ms for the jobs
// handed out to end (tb_job_complete or tb_job_fail), then tells the
// broker goodbye, handing back every job not ended: those go back to
// pending with the attempt refunded. A job that ends after that gets
// TB_ESTALE. Returns TB_OK, TB_ETIMEDOUT (jobs were handed back),
// TB_EUNREACHABLE (the goodbye did not reach the broker: it counts the
// jobs as interrupted when the worker closes) or TB_EFORK. Any thread,
// once; then tb_worker_next returns TB_ECLOSED.
int tb_worker_stop(tb_worker *w, int grace_ms);

// tb_worker_close closes the connection (the broker interrupts whatever
// this worker still runs unless tb_worker_stop handed it back) and frees
// the worker once every job it handed out has been ended; those then end
// with TB_ECLOSED. Never waits for the broker. Accepts NULL. Any thread,
// once, with no call on w running or made afterwards.
void tb_worker_close(tb_worker *w);

// Job accessors: views valid until the job is ended. Any thread.
tb_id       tb_job_id(const tb_job *j);
uint32_t    tb_job_attempt(const tb_job *j); // from 1
uint32_t    tb_job_crashes(const tb_job *j); // attempts cut short before
const char *tb_job_handler(const tb_job *j);
const char *tb_job_queue(const tb_job *j);
const void *tb_job_payload(const tb_job *j, size_t *lenp); // msgpack
int64_t     tb_job_deadline(const tb_job *j); // Unix ms; 0: no timeout

// tb_job_cancelled is 1 once the broker asked for the job to stop (a
// cancel, its timeout, a shutdown), else 0. Stop soon: after the broker's
// grace (taskbrokerd --worker-cancel-grace) the attempt ends without you
// and your result is refused. Any thread.
int tb_job_cancelled(const tb_job *j);

// tb_job_cancel_fn is called once when the broker asks for j to stop, on
// the library's thread and with the worker's lock held: it must not block
// and may call only the tb_job_* accessors (set a flag, wake your code).
typedef void (*tb_job_cancel_fn)(tb_job *j, void *arg);

// tb_job_on_cancel sets j's cancel callback (NULL: none). If j has been
// cancelled already, cb is called at once on the calling thread. Returns
// TB_OK or TB_EINVAL.
int tb_job_on_cancel(tb_job *j, tb_job_cancel_fn cb, void *arg);

// tb_worker_info is one connected worker as tb_workers reports it.
typedef struct tb_worker_info {
	uint64_t id;
	uint64_t pid;
	char    *host;
	char    *name;
	char    *handlers; // comma-separated
	char    *queues;   // comma-separated; "": any queue
	uint32_t slots;
	uint32_t running; // jobs it has now
	uint64_t done;    // results it sent that were taken
	int64_t  since;   // Unix µs of its hello
} tb_worker_info;

// tb_workers lists the workers connected to the broker: *listp (n
// entries) is the caller's, freed with tb_workers_free. Returns TB_OK or
// a request error. Any thread.
int  tb_workers(tb_client *c, tb_worker_info **listp, size_t *np);
void tb_workers_free(tb_worker_info *list, size_t n);

// tb_whandler_info is one worker handler's figures (tb_worker_handlers).
typedef struct tb_whandler_info {
	char    *name;
	uint32_t workers; // connected workers serving it
	uint64_t waiting; // its tasks ready to start, waiting for a worker
} tb_whandler_info;

// tb_worker_handlers lists the handler names the broker knows as worker
// handlers, with their figures; freed with tb_worker_handlers_free.
int  tb_worker_handlers(tb_client *c, tb_whandler_info **listp, size_t *np);
void tb_worker_handlers_free(tb_whandler_info *list, size_t n);

// tb_job_complete ends j with a result (len bytes, at most 64 KiB; by
// convention one msgpack object; NULL/0: none), tells the broker and
// frees j whatever the outcome. Returns TB_OK (stored), TB_ESTALE (the
// broker refused it: the attempt is no longer current, for instance it
// was given up after a cancel, or the connection dropped; the task runs
// or ran elsewhere), TB_ETOOBIG (the result is over the limit: the task
// fails without a retry), TB_ECLOSED, TB_ETIMEDOUT. Any thread.
int tb_job_complete(tb_job *j, const void *result, size_t len);

// tb_job_fail ends j as failed with error (text, cut to 4 KiB; NULL:
// "failed"); retryable 0 forbids a retry, else the task's retry policy
// applies. Frees j; returns as tb_job_complete.
int tb_job_fail(tb_job *j, const char *error, int retryable);

#ifdef __cplusplus
}
#endif

#endif // TASKBROKER_H
