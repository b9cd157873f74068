// store.h: the durable task table, in SQLite.
//
// DESIGN. One database file in WAL mode, two connections. The writer
// connection belongs to one writer thread: other threads queue store_op
// records (store_submit) and the writer takes the whole queue at once, runs
// every op in one transaction and commits (group commit: whatever is queued
// while a commit runs goes into the next one). After each commit it moves
// the batch to a done list and calls the notify function, which wakes the
// loop; the loop takes the done list (store_take_done) and acts on each op
// in the order it completed (the order it was submitted, but for kept ops;
// see Store errors). A submit is acknowledged only from there,
// so an acknowledged task is on disk. The reader connection belongs to the
// loop thread and serves status and list queries for tasks the loop no
// longer keeps in memory.
//
// Store errors. A batch that fails (a full disk, an I/O error, a file
// that became read-only, ...) is rolled back whole. What happens to its
// ops then depends on the error and on each op's keep flag. When the error
// may pass (store_error_transient: SQLITE_FULL, SQLITE_IOERR_*,
// SQLITE_READONLY_*, SQLITE_BUSY, ...), an op with keep set is not failed:
// the writer keeps it, in order, and runs it again at the head of the next
// batch, which comes with the next submitted op or after a retry delay
// (store.c: STORE_RETRY_MIN_MS doubling to STORE_RETRY_MAX_MS), until it
// commits. Every other op of the batch completes at once with TB_ESTORE and
// the SQLite code in src. So the loop marks the writes it cannot take back (a
// task's state changes) keep, and refuses the ones a client can be told about
// (a submit's INSERT). After any other error, or when the store stops while
// kept ops still fail (STORE_STOP_RETRIES more tries), every op fails with
// TB_ESTORE. The writer logs one line when the store starts failing and one
// when it writes again, not one per failed batch.
//
// Durability: STORE_FULL sets synchronous=FULL (each commit is fsynced and
// survives power loss); STORE_NORMAL sets synchronous=NORMAL (survives a
// crash of the broker, not of the machine).
//
// Schema version lives in PRAGMA user_version. To change the schema, add a
// migration step to store.c's migrations[] and bump STORE_SCHEMA_VERSION;
// never edit a step that has shipped.
//
// Threads: store_open, store_recover, store_start, store_stop, store_close,
// store_take_done and the read calls are for the loop thread (or the only
// thread before store_start). store_submit may be called from any thread.
//
// Lock order: one leaf mutex inside the store (see store.c); notify is
// called without it.
// Ownership: a submitted op and what it points to stay the caller's; the
// store borrows them until store_take_done hands the op back. Records read
// (store_get, store_list, recovery) belong to the caller.

#ifndef STORE_H
#define STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "taskrec.h"

#define STORE_SCHEMA_VERSION 4

typedef struct store store;

enum store_durability {
	STORE_FULL   = 0,
	STORE_NORMAL = 1,
};

// store_rec is one row of the task table: a task's stored fields
// (taskrec.h). Every pointer is owned by the record (freed by
// store_rec_free) unless the holder says it is a view.
typedef taskrec store_rec;

// store_sched is one periodic schedule (schema 2). Owned strings and bytes,
// freed by store_sched_free.
typedef struct store_sched {
	char    *name;
	char    *handler;
	char    *queue;
	uint8_t *payload;
	size_t   payload_len;
	int32_t  priority;
	uint32_t max_attempts;
	uint32_t timeout_ms;
	uint64_t every_ms; // 0 when cron is used
	char    *cron;     // NULL when every_ms is used
	bool     catch_up;
	bool     paused;
	int64_t  created_at; // Unix µs
	int64_t  next_at;    // the next due time
	int64_t  last_at;    // the last due time that fired; 0: never
	uint64_t fired;
	uint64_t last_task;
} store_sched;

// store_sched_free frees sc and everything it owns. Accepts NULL.
void store_sched_free(store_sched *sc);

// store_filter selects tasks for store_list. Zero values mean "any".
typedef struct store_filter {
	const char *queue;
	int         state; // < 0: any
	const char *handler;
	int64_t     created_after;  // created_at > this (µs); 0: any
	int64_t     created_before; // created_at < this (µs); 0: any
	uint64_t    after_id;
	uint32_t    limit;
} store_filter;

// store_rec_free frees r and everything it owns. Accepts NULL.
void store_rec_free(store_rec *r);

// store_rec_fini frees what r owns, not r itself (a record embedded in
// another, as the loop's task record embeds its core).
void store_rec_fini(store_rec *r);

enum store_op_kind {
	// STORE_OP_INSERT inserts recs[0..nrecs). A rec whose sid already
	// exists is not inserted; dup_ids[i] receives the existing row's id
	// (0 when rec i was inserted).
	STORE_OP_INSERT = 0,
	// STORE_OP_UPDATE sets state, attempts, crashes, max_crashes,
	// run_at, started_at, finished_at, result and error of the row with
	// id (all of them, as given: a NULL result/error stores NULL).
	STORE_OP_UPDATE = 1,
	// STORE_OP_BARRIER does nothing; it completes once everything
	// submitted before it has committed.
	STORE_OP_BARRIER = 2,
	// STORE_OP_DELETE deletes tasks: the ids[0..nids) when nids > 0,
	// else up to limit (0: no limit) tasks of queue (required) in state
	// (required, >= 0) with created_at < created_before and finished_at <
	// finished_before (each 0: no bound), oldest id first. The highest id
	// is remembered before rows go, so ids are never reused after a
	// restart. count receives how many rows went.
	STORE_OP_DELETE = 3,
	// STORE_OP_QUEUE_SET records queue's paused flag (upsert).
	STORE_OP_QUEUE_SET = 4,
	// STORE_OP_SCHED_PUT inserts or replaces the schedule sched->name.
	STORE_OP_SCHED_PUT = 5,
	// STORE_OP_SCHED_DEL deletes the schedule name; count is 1 or 0.
	STORE_OP_SCHED_DEL = 6,
	// STORE_OP_WHANDLER_PUT records name as a worker handler (schema 4),
	// first seen at run_at (Unix µs); a name already there is kept.
	STORE_OP_WHANDLER_PUT = 7,
};

// store_op is one unit of work for the writer. The caller allocates it and
// everything it points to, and keeps all of it alive until the op comes
// back from store_take_done; the store only reads the inputs and writes rv
// and dup_ids.
typedef struct store_op {
	struct store_op *next; // the store's link; do not touch while queued
	int              kind;
	int              rv;  // OUT: TB_OK, or TB_ESTORE if the batch failed
	int              src; // OUT: with TB_ESTORE, the SQLite result code
	void            *arg; // the caller's
	// keep: on an error that may pass, keep the op and run it again
	// until it commits, instead of failing it (see Store errors above).
	bool keep;

	// STORE_OP_INSERT
	store_rec **recs;
	uint32_t    nrecs;
	uint64_t   *dup_ids; // OUT: nrecs entries, provided by the caller

	// STORE_OP_UPDATE
	uint64_t       id;
	uint32_t       state;
	uint32_t       attempts;
	uint32_t       crashes;
	uint32_t       max_crashes;
	int64_t        run_at;
	int64_t        started_at;
	int64_t        finished_at;
	const uint8_t *result; // borrowed
	size_t         result_len;
	const char    *error; // borrowed

	// STORE_OP_DELETE, STORE_OP_QUEUE_SET, STORE_OP_SCHED_*; all borrowed.
	const char        *queue;
	int32_t            del_state;
	int64_t            created_before;
	int64_t            finished_before;
	uint32_t           limit;
	const uint64_t    *ids;
	uint32_t           nids;
	bool               paused;
	const char        *name;
	const store_sched *sched;
	uint64_t           count; // OUT
} store_op;

// store_error_transient says whether a batch that failed with SQLite code
// src may succeed later without anyone acting on the database itself: a
// full disk, an I/O error, a read-only file or lock, a busy database, no
// memory. Any thread.
bool store_error_transient(int src);

// store_errstr returns a static text for SQLite code src that names the
// cause and the code, e.g. "database or disk is full (SQLITE_FULL)", for
// replies and log lines. Any thread.
const char *store_errstr(int src);

// store_open opens (creating if needed) the database at path, sets WAL and
// the durability, and migrates the schema to STORE_SCHEMA_VERSION. A
// database with a newer user_version, or a file that is not a database,
// fails with a log line. On success *sp owns the store (store_close).
// Returns TB_OK, TB_ENOMEM or TB_ESTORE.
int store_open(store **sp, const char *path, int durability);

// store_recover runs once at start, before store_start. It changes
// nothing: each task that has not ended (pending, failed or running) is
// passed to cb in id order, as stored; cb owns the record from then on. A
// task the database says is running belongs to an earlier run of the
// broker that stopped during its attempt (its attempt and crash figures
// were stored before that attempt began); what becomes of it is the
// loop's decision (attempt_interrupted), written as an update. If cb returns
// non-zero, recovery stops and returns that code. *max_idp receives the
// highest id ever stored (0 for none); counts[] (TB_STATE_CANCELLED + 1
// entries) receives the number of tasks in each state afterwards.
int store_recover(store *s, uint64_t *max_idp, uint64_t *counts,
    int (*cb)(void *arg, store_rec *r), void *arg);

// store_load_queues passes each queue recorded by STORE_OP_QUEUE_SET to cb
// (name borrowed for the call). Before store_start. Returns TB_OK, cb's
// non-zero code, or TB_ESTORE.
int store_load_queues(
    store *s, int (*cb)(void *arg, const char *name, bool paused), void *arg);

// store_load_whandlers passes each recorded worker handler name to cb
// (borrowed for the call). Before store_start. Returns TB_OK, cb's
// non-zero code, or TB_ESTORE.
int store_load_whandlers(
    store *s, int (*cb)(void *arg, const char *name), void *arg);

// store_load_schedules passes each schedule to cb, which owns it from then
// on (also when it returns non-zero, which stops the load). Before
// store_start.
int store_load_schedules(
    store *s, int (*cb)(void *arg, store_sched *sc), void *arg);

// store_queue_counts passes, for every (queue, state) pair present in the
// table, its number of tasks to cb (queue borrowed for the call). Before
// store_start; used once to seed the per-queue figures.
int store_queue_counts(store *s,
    int (*cb)(void *arg, const char *queue, int state, uint64_t n), void *arg);

// store_start starts the writer thread. notify(arg) is called on the writer
// thread after each batch has moved to the done list; it must not block.
// Returns TB_OK or TB_ESYSTEM.
int store_start(store *s, void (*notify)(void *arg), void *arg);

// store_submit queues op for the writer. Any thread. The store owns the op's
// link until it is returned by store_take_done. After store_stop the op
// completes at once with rv TB_ECLOSED (and notify is called).
void store_submit(store *s, store_op *op);

// store_take_done returns the list of completed ops in the order they
// completed, linked through next (NULL when none): the order they were
// submitted, except that an op kept after a failed batch (see Store
// errors) completes after the later ops refused while it was kept. Loop
// thread.
store_op *store_take_done(store *s);

// store_stop commits everything queued, then stops the writer thread and
// returns when it is gone. Ops submitted afterwards fail with TB_ECLOSED.
void store_stop(store *s);

// store_close closes the connections and frees the store; call store_stop
// first if store_start succeeded. Accepts NULL.
void store_close(store *s);

// store_get reads task id through the reader connection. On success *rp
// owns a new record. Returns TB_OK, TB_ENOTFOUND or TB_ESTORE.
int store_get(store *s, uint64_t id, store_rec **rp);

// store_counters writes the number of transactions the store has committed
// and of ops it has completed with TB_OK so far (either pointer may be
// NULL). Group commit shows as *commitsp well below *opsp; a batch of
// barriers only commits nothing. For tests and the benchmark. Any thread.
void store_counters(store *s, uint64_t *commitsp, uint64_t *opsp);

// store_kept returns how many ops the writer keeps for a retry now (0
// while the store writes). For tests. Any thread.
uint32_t store_kept(store *s);

// store_list reads up to f->limit tasks (0: 100) with id > f->after_id in
// id order, filtered as f says (store_filter). Loop thread. On success
// *recsp is a malloc'd array of *np owned records (free each, then the
// array). Returns TB_OK or TB_ESTORE.
int store_list(
    store *s, const store_filter *f, store_rec ***recsp, size_t *np);

#endif // STORE_H
