// store.c: the durable task table in SQLite; see store.h for the design.
//
// Locking. There is one mutex, s->mtx. It protects the submit queue
// (q_head, q_tail), the done list (done_head, done_tail), the stopping flag
// and the counters. It is a leaf lock: nothing else is locked while it is
// held, and it is never held while SQLite runs or while notify is called, so
// a submitter never waits for a commit (lock order: s->mtx alone; callers'
// own locks may be held around store_submit and store_take_done, and notify
// is called with s->mtx released, so notify may take the caller's locks).
//
// Kept ops (store.h, Store errors) live on s->kept, which only the writer
// thread touches; s->nkept mirrors its length under s->mtx for store_kept.
// The retry delay is a timed wait on s->cv (CLOCK_MONOTONIC), so a new op
// or store_stop still wakes the writer at once.
//
// Connections. s->wdb is used by the thread that calls store_open and
// store_recover until store_start, then only by the writer thread. s->rdb is
// used only by the loop thread (store_get, store_list). Both are opened
// with SQLITE_OPEN_NOMUTEX because each one is used by one thread at a
// time; the handoff of s->wdb to the writer happens at pthread_create.

#include "store.h"

#include "fault.h"
#include "log.h"
#include "util.h"
#include <taskbroker/defs.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// STORE_RETRY_MIN_MS and STORE_RETRY_MAX_MS bound the delay before the
// writer runs kept ops again when nothing new comes: it starts short, so
// that a one-off I/O error costs little, and doubles up to the maximum, so
// that a full disk is tried about once a second. STORE_STOP_RETRIES is how
// many more batches store_stop lets kept ops fail before it gives up on
// them (their tasks then restart from their last stored state).
#define STORE_RETRY_MIN_MS 10
#define STORE_RETRY_MAX_MS 1000
#define STORE_STOP_RETRIES 3

// STORE_ERRMSG is room for SQLite's message of a failed batch.
#define STORE_ERRMSG 256

// STORE_BUSY_MS is how long a connection waits for a lock held by another
// connection (the reader during a checkpoint, another process, a backup)
// before giving up with SQLITE_BUSY.
#define STORE_BUSY_MS 5000

// migrations[i] takes the schema from user_version i to i + 1. To change the
// schema, append one step and bump STORE_SCHEMA_VERSION in store.h; never
// edit a step that has shipped, since databases in the field already ran it.
// Each step runs in the same transaction as the user_version update.
static const char *const migrations[] = {
	// 0 -> 1: the task table.
	"CREATE TABLE tasks("
	"  id INTEGER PRIMARY KEY,"
	"  sid BLOB NOT NULL UNIQUE,"
	"  queue TEXT NOT NULL,"
	"  handler TEXT NOT NULL,"
	"  payload BLOB,"
	"  priority INTEGER NOT NULL,"
	"  state INTEGER NOT NULL,"
	"  attempts INTEGER NOT NULL,"
	"  max_attempts INTEGER NOT NULL,"
	"  timeout_ms INTEGER NOT NULL,"
	"  run_at INTEGER NOT NULL,"
	"  created_at INTEGER NOT NULL,"
	"  started_at INTEGER NOT NULL,"
	"  finished_at INTEGER NOT NULL,"
	"  result BLOB,"
	"  error TEXT);"
	// Recovery reads only tasks that have not ended (pending 0, running 1,
	// failed 3); the partial index keeps it off the finished rows. Queries
	// must repeat the index's WHERE term verbatim for SQLite to use it.
	// The term is a range, not "state IN (0, 1, 3)": with an IN list every
	// UPDATE of a task's state builds two ephemeral tables to test it,
	// which doubled the cost of the hot-path updates.
	"CREATE INDEX tasks_unfinished ON tasks(state)"
	"  WHERE (state < 2 OR state = 3);"
	// store_list by queue, or queue and state; the implicit trailing rowid
	// serves both "id > after_id" and the id order.
	"CREATE INDEX tasks_queue_state ON tasks(queue, state);",

	// 1 -> 2: idempotency keys, forever tasks, queue flags, schedules.
	// Old rows get key NULL and forever 0.
	"ALTER TABLE tasks ADD COLUMN key TEXT;"
	"ALTER TABLE tasks ADD COLUMN forever INTEGER NOT NULL DEFAULT 0;"
	"CREATE TABLE queues("
	"  name TEXT PRIMARY KEY,"
	"  paused INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE schedules("
	"  name TEXT PRIMARY KEY,"
	"  handler TEXT NOT NULL,"
	"  queue TEXT NOT NULL,"
	"  payload BLOB,"
	"  priority INTEGER NOT NULL,"
	"  max_attempts INTEGER NOT NULL,"
	"  timeout_ms INTEGER NOT NULL,"
	"  every_ms INTEGER NOT NULL,"
	"  cron TEXT,"
	"  catch_up INTEGER NOT NULL,"
	"  paused INTEGER NOT NULL,"
	"  created_at INTEGER NOT NULL,"
	"  next_at INTEGER NOT NULL,"
	"  last_at INTEGER NOT NULL,"
	"  fired INTEGER NOT NULL,"
	"  last_task INTEGER NOT NULL);"
	// The highest id ever stored, written before every delete, so that
	// deleting the newest rows never lets an id be used twice.
	"CREATE TABLE meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL);"
	// STORE_OP_DELETE's pruning: a range on finished_at within one queue
	// and state (st_delete_finished names it). It does not replace
	// tasks_queue_state, whose trailing rowid gives store_list its id
	// order without a sort; this one would need a temporary B-tree for
	// ORDER BY id. No index on created_at: its filters scan.
	"CREATE INDEX tasks_queue_state_finished"
	"  ON tasks(queue, state, finished_at);",

	// 2 -> 3: a crash is not a failure. crashes counts the attempts cut
	// short by the death of the broker (or of a worker), apart from
	// attempts; max_crashes is the task's limit, 0 for the rows of older
	// brokers: the loop reads 0 as its queue's setting.
	"ALTER TABLE tasks ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE tasks ADD COLUMN max_crashes INTEGER NOT NULL DEFAULT 0;",

	// 3 -> 4: handler names workers have served, so that a submit for
	// one is accepted while no worker is connected.
	"CREATE TABLE worker_handlers("
	"  name TEXT PRIMARY KEY,"
	"  first_seen INTEGER NOT NULL);",
};

_Static_assert(
    sizeof(migrations) / sizeof(migrations[0]) == STORE_SCHEMA_VERSION,
    "one migration step per schema version");

// STORE_COLS is the column list store_read_row expects.
#define STORE_COLS                                                      \
	"id, sid, queue, handler, payload, priority, state, attempts, " \
	"max_attempts, timeout_ms, run_at, created_at, started_at, "    \
	"finished_at, result, error, key, forever, crashes, max_crashes"

// STORE_SCHED_COLS is the column list store_read_sched expects, and the
// order of st_sched_put's parameters.
#define STORE_SCHED_COLS                                             \
	"name, handler, queue, payload, priority, max_attempts, "    \
	"timeout_ms, every_ms, cron, catch_up, paused, created_at, " \
	"next_at, last_at, fired, last_task"

// STORE_LIST_REST ends every list statement: ?5 handler (NULL: any), ?6
// created_after and ?7 created_before (0: any), ?4 the limit.
#define STORE_LIST_REST                     \
	"AND (?5 IS NULL OR handler = ?5) " \
	"AND (?6 = 0 OR created_at > ?6) "  \
	"AND (?7 = 0 OR created_at < ?7) ORDER BY id LIMIT ?4"

struct store {
	sqlite3 *wdb; // writer connection; see the top of the file
	sqlite3 *rdb; // reader connection; loop thread only

	// Writer connection statements.
	sqlite3_stmt *st_begin;
	sqlite3_stmt *st_commit;
	sqlite3_stmt *st_rollback;
	sqlite3_stmt *st_insert;
	sqlite3_stmt *st_find_sid;
	sqlite3_stmt *st_update;
	sqlite3_stmt *st_rec_unfinished;
	sqlite3_stmt *st_rec_max_id;
	sqlite3_stmt *st_keep_max_id;
	sqlite3_stmt *st_rec_counts;
	sqlite3_stmt *st_delete_id;
	sqlite3_stmt *st_delete_filter;
	sqlite3_stmt *st_delete_finished;
	sqlite3_stmt *st_queue_set;
	sqlite3_stmt *st_sched_put;
	sqlite3_stmt *st_sched_del;
	sqlite3_stmt *st_whandler_put;

	// Reader connection statements.
	sqlite3_stmt *st_get;
	sqlite3_stmt *st_list_all;
	sqlite3_stmt *st_list_queue;
	sqlite3_stmt *st_list_state;
	sqlite3_stmt *st_list_queue_state;
	sqlite3_stmt *st_load_queues;
	sqlite3_stmt *st_load_scheds;
	sqlite3_stmt *st_load_whandlers;
	sqlite3_stmt *st_queue_counts;

	void (*notify)(void *arg); // set before the writer starts
	void     *notify_arg;
	pthread_t thread;
	bool      started; // the writer thread exists (loop thread only)
	bool      joined;  // and has been joined (loop thread only)

	pthread_mutex_t mtx; // protects everything down to the counters
	pthread_cond_t  cv;  // signalled when work is queued or on stop
	bool            mtx_init;
	store_op       *q_head; // submitted, not yet taken by the writer
	store_op      **q_tail;
	store_op       *done_head; // completed, not yet taken by the loop
	store_op      **done_tail;
	bool            stopping;
	uint64_t        commits; // transactions committed by the writer
	uint64_t        ops;     // ops completed by the writer with TB_OK
	uint32_t        nkept;   // ops on s->kept

	// The writer thread's own (store_stop's before start): no lock.
	store_op  *kept; // kept ops, oldest first, run again at the next batch
	store_op **kept_tail;
	bool       failing;    // the last batch failed with a transient error
	int        retry_ms;   // the delay before the next retry
	int        stop_tries; // batches that failed since stopping
	int64_t    fail_since; // util_mono_us() of the first failure
	uint64_t   fail_batches;   // batches failed since then
	uint64_t   refused;        // ops failed since then
	char errmsg[STORE_ERRMSG]; // SQLite's message of the last failure
};

// store_stmt_def lists every statement; all are prepared once at open.
typedef struct {
	size_t      off; // offset of the sqlite3_stmt * in struct store
	bool        reader;
	const char *sql;
} store_stmt_def;

#define STORE_STMT(field, reader, sql)                     \
	{                                                  \
		offsetof(struct store, field), reader, sql \
	}

static const store_stmt_def store_stmts[] = {
	STORE_STMT(st_begin, false, "BEGIN IMMEDIATE"),
	STORE_STMT(st_commit, false, "COMMIT"),
	STORE_STMT(st_rollback, false, "ROLLBACK"),
	STORE_STMT(st_insert, false,
	    "INSERT INTO tasks(id, sid, queue, handler, payload, priority, "
	    "state, attempts, max_attempts, timeout_ms, run_at, created_at, "
	    "started_at, finished_at, result, error, key, forever, crashes, "
	    "max_crashes) "
	    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
	    "?14, ?15, ?16, ?17, ?18, ?19, ?20) ON CONFLICT(sid) DO NOTHING"),
	STORE_STMT(st_find_sid, false, "SELECT id FROM tasks WHERE sid = ?1"),
	STORE_STMT(st_update, false,
	    "UPDATE tasks SET state = ?2, attempts = ?3, run_at = ?4, "
	    "started_at = ?5, finished_at = ?6, result = ?7, error = ?8, "
	    "crashes = ?9, max_crashes = ?10 WHERE id = ?1"),
	STORE_STMT(st_rec_unfinished, false,
	    // Without statistics the planner would rather scan the table in
	    // id order; recovery must not read the finished rows.
	    "SELECT " STORE_COLS " FROM tasks INDEXED BY tasks_unfinished "
	    "WHERE (state < 2 OR state = 3) ORDER BY id"),
	STORE_STMT(st_rec_max_id, false,
	    "SELECT max(coalesce((SELECT max(id) FROM tasks), 0), "
	    "coalesce((SELECT v FROM meta WHERE k = 'max_id'), 0))"),
	STORE_STMT(st_keep_max_id, false,
	    "INSERT INTO meta(k, v) "
	    "VALUES('max_id', coalesce((SELECT max(id) FROM tasks), 0)) "
	    "ON CONFLICT(k) DO UPDATE SET v = max(v, excluded.v)"),
	STORE_STMT(st_rec_counts, false,
	    "SELECT state, count(*) FROM tasks GROUP BY state"),
	// Deletes record the highest id in meta first (st_keep_max_id), so
	// store_recover still reports it when its row is gone.
	STORE_STMT(st_delete_id, false, "DELETE FROM tasks WHERE id = ?1"),
	// ?3, ?4: 0 for no bound; ?5: -1 for no limit. The planner serves
	// this from tasks_queue_state in id order, which is cheap when rows
	// match early but reads every row of the queue and state when few do.
	STORE_STMT(st_delete_filter, false,
	    "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks "
	    "WHERE queue = ?1 AND state = ?2 "
	    "AND (?3 = 0 OR created_at < ?3) "
	    "AND (?4 = 0 OR finished_at < ?4) "
	    "ORDER BY id LIMIT ?5)"),
	// The same with a finished_at bound (?4 != 0). A periodic prune
	// mostly finds little to delete; left to itself the planner still
	// picks the id-order plan above (measured: 35 ms per 270k done rows
	// with nothing to delete, against 0.04 ms through this index; a large
	// backlog costs an index-only scan of the candidates plus a top-N
	// sort, 25 ms per 1000-row batch at 270k).
	STORE_STMT(st_delete_finished, false,
	    "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks "
	    "INDEXED BY tasks_queue_state_finished "
	    "WHERE queue = ?1 AND state = ?2 AND finished_at < ?4 "
	    "AND (?3 = 0 OR created_at < ?3) "
	    "ORDER BY id LIMIT ?5)"),
	STORE_STMT(st_queue_set, false,
	    "INSERT INTO queues(name, paused) VALUES(?1, ?2) "
	    "ON CONFLICT(name) DO UPDATE SET paused = excluded.paused"),
	STORE_STMT(st_sched_put, false,
	    "INSERT OR REPLACE INTO schedules(" STORE_SCHED_COLS ") "
	    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
	    "?14, ?15, ?16)"),
	STORE_STMT(
	    st_sched_del, false, "DELETE FROM schedules WHERE name = ?1"),
	STORE_STMT(st_whandler_put, false,
	    "INSERT OR IGNORE INTO worker_handlers(name, first_seen) "
	    "VALUES(?1, ?2)"),
	STORE_STMT(st_load_whandlers, true,
	    "SELECT name FROM worker_handlers ORDER BY name"),
	STORE_STMT(
	    st_get, true, "SELECT " STORE_COLS " FROM tasks WHERE id = ?1"),
	// The list statements differ in the terms an index can serve (queue
	// and state); the other filters are checked on each row read.
	STORE_STMT(st_list_all, true,
	    "SELECT " STORE_COLS " FROM tasks WHERE id > ?3 " STORE_LIST_REST),
	STORE_STMT(st_list_queue, true,
	    "SELECT " STORE_COLS
	    " FROM tasks WHERE queue = ?1 AND id > ?3 " STORE_LIST_REST),
	STORE_STMT(st_list_state, true,
	    "SELECT " STORE_COLS
	    " FROM tasks WHERE state = ?2 AND id > ?3 " STORE_LIST_REST),
	STORE_STMT(st_list_queue_state, true,
	    "SELECT " STORE_COLS " FROM tasks WHERE queue = ?1 AND state = ?2 "
	    "AND id > ?3 " STORE_LIST_REST),
	STORE_STMT(st_load_queues, true,
	    "SELECT name, paused FROM queues ORDER BY name"),
	STORE_STMT(st_load_scheds, true,
	    "SELECT " STORE_SCHED_COLS " FROM schedules ORDER BY name"),
	STORE_STMT(st_queue_counts, true,
	    "SELECT queue, state, count(*) FROM tasks GROUP BY queue, state"),
};

#define STORE_NSTMTS (sizeof(store_stmts) / sizeof(store_stmts[0]))

static sqlite3_stmt **
store_stmt_slot(store *s, size_t i)
{
	return ((sqlite3_stmt **) (void *) ((char *) s + store_stmts[i].off));
}

// store_rv converts a SQLite result code at the module edge.
static int
store_rv(int src)
{
	return ((src & 0xff) == SQLITE_NOMEM ? TB_ENOMEM : TB_ESTORE);
}

bool
store_error_transient(int src)
{
	switch (src & 0xff) {
	case SQLITE_FULL:     // the disk or a quota is full
	case SQLITE_IOERR:    // the OS failed a read, write, fsync, ...
	case SQLITE_READONLY: // the file or its filesystem became read-only
	case SQLITE_CANTOPEN: // the WAL or a temporary file could not open
	case SQLITE_BUSY:     // another process holds the lock
	case SQLITE_LOCKED:
	case SQLITE_NOMEM:
	case SQLITE_PROTOCOL: // WAL lock races
		return (true);
	default:
		return (false); // constraint, corruption, misuse: acting again
		                // on the same data fails the same way
	}
}

// store_code_texts describes the result codes a failed write is likely to
// report (SQLite 3.40 has no sqlite3_errname); other extended codes are
// described by their primary code.
static const struct {
	int         src;
	const char *text;
} store_code_texts[] = {
	{ SQLITE_FULL, "database or disk is full (SQLITE_FULL)" },
	{ SQLITE_IOERR_WRITE, "disk I/O error (SQLITE_IOERR_WRITE)" },
	{ SQLITE_IOERR_FSYNC, "disk I/O error (SQLITE_IOERR_FSYNC)" },
	{ SQLITE_IOERR_DIR_FSYNC, "disk I/O error (SQLITE_IOERR_DIR_FSYNC)" },
	{ SQLITE_IOERR_TRUNCATE, "disk I/O error (SQLITE_IOERR_TRUNCATE)" },
	{ SQLITE_IOERR_READ, "disk I/O error (SQLITE_IOERR_READ)" },
	{ SQLITE_IOERR_SHORT_READ,
	    "disk I/O error (SQLITE_IOERR_SHORT_READ)" },
	{ SQLITE_IOERR_NOMEM, "out of memory (SQLITE_IOERR_NOMEM)" },
	{ SQLITE_IOERR_SHMOPEN, "disk I/O error (SQLITE_IOERR_SHMOPEN)" },
	{ SQLITE_IOERR_SHMSIZE, "disk I/O error (SQLITE_IOERR_SHMSIZE)" },
	{ SQLITE_IOERR_SHMMAP, "disk I/O error (SQLITE_IOERR_SHMMAP)" },
	{ SQLITE_IOERR_LOCK, "disk I/O error (SQLITE_IOERR_LOCK)" },
	{ SQLITE_IOERR, "disk I/O error (SQLITE_IOERR)" },
	{ SQLITE_READONLY_DBMOVED,
	    "the database file was moved or deleted "
	    "(SQLITE_READONLY_DBMOVED)" },
	{ SQLITE_READONLY, "the database is read-only (SQLITE_READONLY)" },
	{ SQLITE_CANTOPEN,
	    "unable to open a database file "
	    "(SQLITE_CANTOPEN)" },
	{ SQLITE_BUSY, "the database is locked (SQLITE_BUSY)" },
	{ SQLITE_LOCKED, "a table is locked (SQLITE_LOCKED)" },
	{ SQLITE_NOMEM, "out of memory (SQLITE_NOMEM)" },
	{ SQLITE_PROTOCOL, "locking protocol error (SQLITE_PROTOCOL)" },
	{ SQLITE_CONSTRAINT, "constraint failed (SQLITE_CONSTRAINT)" },
	{ SQLITE_CORRUPT, "the database is malformed (SQLITE_CORRUPT)" },
	{ SQLITE_NOTADB, "not a database (SQLITE_NOTADB)" },
	{ SQLITE_ERROR, "SQL error (SQLITE_ERROR)" },
};

const char *
store_errstr(int src)
{
	size_t n = sizeof(store_code_texts) / sizeof(store_code_texts[0]);

	for (size_t i = 0; i < n; i++) {
		if (store_code_texts[i].src == src) {
			return (store_code_texts[i].text);
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (store_code_texts[i].src == (src & 0xff)) {
			return (store_code_texts[i].text);
		}
	}
	return ("storage error");
}

// store_exec runs sql (no results expected) on db; used only at open.
static int
store_exec(sqlite3 *db, const char *what, const char *sql)
{
	char *msg = NULL;
	int   src;

	if ((src = sqlite3_exec(db, sql, NULL, NULL, &msg)) != SQLITE_OK) {
		log_err(
		    "store: %s: %s", what, msg ? msg : sqlite3_errstr(src));
		sqlite3_free(msg);
		return (store_rv(src));
	}
	return (TB_OK);
}

// store_pragma_text runs a pragma that returns one text value and copies
// it into buf (empty when there is no row).
static int
store_pragma_text(sqlite3 *db, const char *sql, char *buf, size_t len)
{
	sqlite3_stmt *st = NULL;
	int           src;

	buf[0] = '\0';
	if ((src = sqlite3_prepare_v2(db, sql, -1, &st, NULL)) != SQLITE_OK) {
		log_err("store: %s: %s", sql, sqlite3_errmsg(db));
		return (store_rv(src));
	}
	src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);
		snprintf(buf, len, "%s", t ? (const char *) t : "");
		src = SQLITE_DONE;
	}
	if (src != SQLITE_DONE) {
		log_err("store: %s: %s", sql, sqlite3_errmsg(db));
		sqlite3_finalize(st);
		return (store_rv(src));
	}
	sqlite3_finalize(st);
	return (TB_OK);
}

static int
store_conn_open(sqlite3 **dbp, const char *path, const char *which)
{
	int src;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;

	if (strcmp(which, "writer") == 0) {
		flags |= SQLITE_OPEN_CREATE;
	}
	// Test builds open the store through the fault seam's VFS, which
	// can fail the WAL's writes and the fsyncs (fault.h); elsewhere it
	// is NULL, the default VFS.
	if ((src = sqlite3_open_v2(path, dbp, flags, tb_fault_vfs())) !=
	    SQLITE_OK) {
		log_err("store: open %s (%s): %s", path, which,
		    *dbp ? sqlite3_errmsg(*dbp) : sqlite3_errstr(src));
		return (store_rv(src));
	}
	sqlite3_extended_result_codes(*dbp, 1);
	sqlite3_busy_timeout(*dbp, STORE_BUSY_MS);
	return (TB_OK);
}

// store_migrate brings the schema to STORE_SCHEMA_VERSION in one
// transaction. The version is read inside the transaction so that two
// processes opening a new file at once do not both run step 0.
static int
store_migrate(store *s, const char *path)
{
	char buf[32];
	long v;
	int  rv;

	if ((rv = store_exec(s->wdb, "begin migration", "BEGIN IMMEDIATE")) !=
	    TB_OK) {
		return (rv);
	}
	if ((rv = store_pragma_text(
	         s->wdb, "PRAGMA user_version", buf, sizeof(buf))) != TB_OK) {
		goto fail;
	}
	v = strtol(buf, NULL, 10);
	if (v > STORE_SCHEMA_VERSION || v < 0) {
		log_err(
		    "store: %s has schema version %ld, newer than this "
		    "broker's %d; refusing to open it (use a newer broker)",
		    path, v, STORE_SCHEMA_VERSION);
		rv = TB_ESTORE;
		goto fail;
	}
	for (; v < STORE_SCHEMA_VERSION; v++) {
		char pragma[64];

		if ((rv = store_exec(s->wdb, "migration", migrations[v])) !=
		    TB_OK) {
			goto fail;
		}
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %ld",
		    v + 1);
		if ((rv = store_exec(s->wdb, "migration", pragma)) != TB_OK) {
			goto fail;
		}
		log_info(
		    "store: %s migrated to schema version %ld", path, v + 1);
	}
	if ((rv = store_exec(s->wdb, "commit migration", "COMMIT")) != TB_OK) {
		goto fail;
	}
	return (TB_OK);
fail:
	if (!sqlite3_get_autocommit(s->wdb)) {
		sqlite3_exec(s->wdb, "ROLLBACK", NULL, NULL, NULL);
	}
	return (rv);
}

static int
store_prepare_all(store *s)
{
	for (size_t i = 0; i < STORE_NSTMTS; i++) {
		sqlite3 *db = store_stmts[i].reader ? s->rdb : s->wdb;
		int      src;

		src = sqlite3_prepare_v3(db, store_stmts[i].sql, -1,
		    SQLITE_PREPARE_PERSISTENT, store_stmt_slot(s, i), NULL);
		if (src != SQLITE_OK) {
			log_err("store: prepare \"%s\": %s",
			    store_stmts[i].sql, sqlite3_errmsg(db));
			return (store_rv(src));
		}
	}
	return (TB_OK);
}

// store_cond_init makes a condition variable whose timed waits use
// CLOCK_MONOTONIC, so a change of the wall clock does not stretch a retry.
static int
store_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t a;
	int                err;

	if ((err = pthread_condattr_init(&a)) != 0) {
		return (err);
	}
	if ((err = pthread_condattr_setclock(&a, CLOCK_MONOTONIC)) == 0) {
		err = pthread_cond_init(cv, &a);
	}
	pthread_condattr_destroy(&a);
	return (err);
}

int
store_open(store **sp, const char *path, int durability)
{
	store *s;
	char   mode[32];
	int    rv;

	if (path == NULL ||
	    (durability != STORE_FULL && durability != STORE_NORMAL)) {
		return (TB_EINVAL);
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		return (TB_ENOMEM);
	}
	s->q_tail    = &s->q_head;
	s->done_tail = &s->done_head;
	s->kept_tail = &s->kept;
	s->retry_ms  = STORE_RETRY_MIN_MS;
	if (pthread_mutex_init(&s->mtx, NULL) != 0) {
		free(s);
		return (TB_ESYSTEM);
	}
	if (store_cond_init(&s->cv) != 0) {
		pthread_mutex_destroy(&s->mtx);
		free(s);
		return (TB_ESYSTEM);
	}
	s->mtx_init = true;

	if ((rv = store_conn_open(&s->wdb, path, "writer")) != TB_OK) {
		goto fail;
	}
	// The first statement reads the header: a file that is not a database
	// fails here with SQLITE_NOTADB.
	if ((rv = store_pragma_text(s->wdb, "PRAGMA journal_mode = WAL", mode,
	         sizeof(mode))) != TB_OK) {
		log_err(
		    "store: %s: cannot use this file as the task store", path);
		goto fail;
	}
	if (strcmp(mode, "wal") != 0) {
		log_err("store: %s: journal_mode is \"%s\", WAL is required",
		    path, mode);
		rv = TB_ESTORE;
		goto fail;
	}
	if ((rv = store_exec(s->wdb, "set synchronous",
	         durability == STORE_FULL ? "PRAGMA synchronous = FULL"
	                                  : "PRAGMA synchronous = NORMAL")) !=
	    TB_OK) {
		goto fail;
	}
	if ((rv = store_migrate(s, path)) != TB_OK) {
		goto fail;
	}
	if ((rv = store_conn_open(&s->rdb, path, "reader")) != TB_OK) {
		goto fail;
	}
	// The reader never writes; make a mistake fail instead of taking the
	// write lock away from the writer.
	if ((rv = store_exec(s->rdb, "reader query_only",
	         "PRAGMA query_only = 1")) != TB_OK) {
		goto fail;
	}
	if ((rv = store_prepare_all(s)) != TB_OK) {
		goto fail;
	}
	*sp = s;
	return (TB_OK);
fail:
	store_close(s); // copes with a half-built store
	return (rv);
}

void
store_rec_fini(store_rec *r)
{
	free(r->queue);
	free(r->handler);
	free(r->payload);
	free(r->result);
	free(r->error);
	free(r->key);
}

void
store_rec_free(store_rec *r)
{
	if (r != NULL) {
		store_rec_fini(r);
		free(r);
	}
}

void
store_sched_free(store_sched *sc)
{
	if (sc == NULL) {
		return;
	}
	free(sc->name);
	free(sc->handler);
	free(sc->queue);
	free(sc->payload);
	free(sc->cron);
	free(sc);
}

// store_col_blob copies column i into *bufp (NULL for NULL or empty).
static int
store_col_blob(sqlite3_stmt *st, int i, uint8_t **bufp, size_t *lenp)
{
	const void *p;
	int         n;

	*bufp = NULL;
	*lenp = 0;
	if (sqlite3_column_type(st, i) == SQLITE_NULL) {
		return (TB_OK);
	}
	p = sqlite3_column_blob(st, i);
	n = sqlite3_column_bytes(st, i);
	if (n <= 0) {
		return (TB_OK);
	}
	if (p == NULL || (*bufp = malloc((size_t) n)) == NULL) {
		return (TB_ENOMEM);
	}
	memcpy(*bufp, p, (size_t) n);
	*lenp = (size_t) n;
	return (TB_OK);
}

// store_col_text copies column i into *sp (NULL for NULL).
static int
store_col_text(sqlite3_stmt *st, int i, char **sp)
{
	const unsigned char *p;
	int                  n;

	*sp = NULL;
	if (sqlite3_column_type(st, i) == SQLITE_NULL) {
		return (TB_OK);
	}
	p = sqlite3_column_text(st, i);
	n = sqlite3_column_bytes(st, i);
	if (p == NULL || (*sp = malloc((size_t) n + 1)) == NULL) {
		return (TB_ENOMEM);
	}
	memcpy(*sp, p, (size_t) n);
	(*sp)[n] = '\0';
	return (TB_OK);
}

// store_read_row copies the current row (STORE_COLS) into a new record,
// so that the statement can be reset afterwards.
static int
store_read_row(sqlite3_stmt *st, store_rec **rp)
{
	store_rec  *r;
	const void *sid;
	int         n;
	int         rv;

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		return (TB_ENOMEM);
	}
	r->id = (uint64_t) sqlite3_column_int64(st, 0);
	sid   = sqlite3_column_blob(st, 1);
	n     = sqlite3_column_bytes(st, 1);
	if (sid != NULL && n > 0) {
		memcpy(r->sid, sid,
		    (size_t) n < TB_SID_LEN ? (size_t) n : TB_SID_LEN);
	}
	if ((rv = store_col_text(st, 2, &r->queue)) != TB_OK ||
	    (rv = store_col_text(st, 3, &r->handler)) != TB_OK ||
	    (rv = store_col_blob(st, 4, &r->payload, &r->payload_len)) !=
	        TB_OK ||
	    (rv = store_col_blob(st, 14, &r->result, &r->result_len)) !=
	        TB_OK ||
	    (rv = store_col_text(st, 15, &r->error)) != TB_OK ||
	    (rv = store_col_text(st, 16, &r->key)) != TB_OK) {
		store_rec_free(r);
		return (rv);
	}
	r->forever      = sqlite3_column_int64(st, 17) != 0;
	r->crashes      = (uint32_t) sqlite3_column_int64(st, 18);
	r->max_crashes  = (uint32_t) sqlite3_column_int64(st, 19);
	r->priority     = (int32_t) sqlite3_column_int64(st, 5);
	r->state        = (uint32_t) sqlite3_column_int64(st, 6);
	r->attempts     = (uint32_t) sqlite3_column_int64(st, 7);
	r->max_attempts = (uint32_t) sqlite3_column_int64(st, 8);
	r->timeout_ms   = (uint32_t) sqlite3_column_int64(st, 9);
	r->run_at       = sqlite3_column_int64(st, 10);
	r->created_at   = sqlite3_column_int64(st, 11);
	r->started_at   = sqlite3_column_int64(st, 12);
	r->finished_at  = sqlite3_column_int64(st, 13);
	*rp             = r;
	return (TB_OK);
}

// store_read_sched copies the current row (STORE_SCHED_COLS) into a new
// schedule.
static int
store_read_sched(sqlite3_stmt *st, store_sched **scp)
{
	store_sched *sc;
	int          rv;

	if ((sc = calloc(1, sizeof(*sc))) == NULL) {
		return (TB_ENOMEM);
	}
	if ((rv = store_col_text(st, 0, &sc->name)) != TB_OK ||
	    (rv = store_col_text(st, 1, &sc->handler)) != TB_OK ||
	    (rv = store_col_text(st, 2, &sc->queue)) != TB_OK ||
	    (rv = store_col_blob(st, 3, &sc->payload, &sc->payload_len)) !=
	        TB_OK ||
	    (rv = store_col_text(st, 8, &sc->cron)) != TB_OK) {
		store_sched_free(sc);
		return (rv);
	}
	sc->priority     = (int32_t) sqlite3_column_int64(st, 4);
	sc->max_attempts = (uint32_t) sqlite3_column_int64(st, 5);
	sc->timeout_ms   = (uint32_t) sqlite3_column_int64(st, 6);
	sc->every_ms     = (uint64_t) sqlite3_column_int64(st, 7);
	sc->catch_up     = sqlite3_column_int64(st, 9) != 0;
	sc->paused       = sqlite3_column_int64(st, 10) != 0;
	sc->created_at   = sqlite3_column_int64(st, 11);
	sc->next_at      = sqlite3_column_int64(st, 12);
	sc->last_at      = sqlite3_column_int64(st, 13);
	sc->fired        = (uint64_t) sqlite3_column_int64(st, 14);
	sc->last_task    = (uint64_t) sqlite3_column_int64(st, 15);
	*scp             = sc;
	return (TB_OK);
}

// store_step1 steps a statement that returns no rows (or whose rows are
// ignored) and resets it, returning the SQLite code of the step.
static int
store_step1(sqlite3_stmt *st)
{
	int src = sqlite3_step(st);

	sqlite3_reset(st);
	return (src == SQLITE_ROW ? SQLITE_DONE : src);
}

int
store_recover(store *s, uint64_t *max_idp, uint64_t *counts,
    int (*cb)(void *arg, store_rec *r), void *arg)
{
	sqlite3_stmt *st;
	int           src;
	int           rv;

	if (s == NULL || s->started) {
		return (TB_EINVAL); // the writer thread owns the connection
	}
	// Nothing is changed here: a task found running is handed to cb as
	// it is, and the loop records what becomes of it (attempt.c,
	// attempt_interrupted) with the same update as any state change.
	st = s->st_rec_unfinished;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		store_rec *r;

		if ((rv = store_read_row(st, &r)) != TB_OK) {
			sqlite3_reset(st);
			return (rv);
		}
		if (cb != NULL) {
			if ((rv = cb(arg, r)) != 0) { // cb owns r from here
				sqlite3_reset(st);
				return (rv);
			}
		} else {
			store_rec_free(r);
		}
	}
	sqlite3_reset(st);
	if (src != SQLITE_DONE) {
		goto sqlfail;
	}

	st = s->st_rec_max_id;
	if ((src = sqlite3_step(st)) == SQLITE_ROW) {
		if (max_idp != NULL) {
			*max_idp = (uint64_t) sqlite3_column_int64(st, 0);
		}
		src = SQLITE_DONE;
	}
	sqlite3_reset(st);
	if (src != SQLITE_DONE) {
		goto sqlfail;
	}

	if (counts != NULL) {
		memset(counts, 0, sizeof(*counts) * (TB_STATE_CANCELLED + 1));
	}
	st = s->st_rec_counts;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t state = sqlite3_column_int64(st, 0);
		int64_t n     = sqlite3_column_int64(st, 1);

		if (state < 0 || state > TB_STATE_CANCELLED) {
			log_warn("store: recovery: %lld tasks have unknown "
			         "state %lld",
			    (long long) n, (long long) state);
		} else if (counts != NULL) {
			counts[state] = (uint64_t) n;
		}
	}
	sqlite3_reset(st);
	if (src != SQLITE_DONE) {
		goto sqlfail;
	}
	return (TB_OK);
sqlfail:
	log_err("store: recovery: %s", sqlite3_errmsg(s->wdb));
	if (!sqlite3_get_autocommit(s->wdb)) {
		store_step1(s->st_rollback);
	}
	return (store_rv(src));
}

// store_op_valid checks what the writer would otherwise dereference blindly.
// An invalid op is a bug in the caller; it fails alone (TB_EINVAL) rather
// than taking its batch down.
static bool
store_op_valid(const store_op *op)
{
	switch (op->kind) {
	case STORE_OP_INSERT:
		if (op->nrecs > 0 &&
		    (op->recs == NULL || op->dup_ids == NULL)) {
			return (false);
		}
		for (uint32_t i = 0; i < op->nrecs; i++) {
			const store_rec *r = op->recs[i];
			// The loop assigns ids (from store_recover's max id):
			// the store never reports one back, so 0 is a bug.
			if (r == NULL || r->id == 0 || r->id > INT64_MAX ||
			    r->queue == NULL || r->handler == NULL ||
			    (r->payload == NULL && r->payload_len > 0)) {
				return (false);
			}
		}
		return (true);
	case STORE_OP_UPDATE:
		return (op->result != NULL || op->result_len == 0);
	case STORE_OP_BARRIER:
		return (true);
	case STORE_OP_DELETE:
		if (op->nids > 0) {
			return (op->ids != NULL);
		}
		return (op->queue != NULL && op->del_state >= 0);
	case STORE_OP_QUEUE_SET:
		return (op->queue != NULL);
	case STORE_OP_WHANDLER_PUT:
		return (op->name != NULL);
	case STORE_OP_SCHED_PUT:
		return (op->sched != NULL && op->sched->name != NULL &&
		    op->sched->handler != NULL && op->sched->queue != NULL &&
		    (op->sched->payload != NULL ||
		        op->sched->payload_len == 0));
	case STORE_OP_SCHED_DEL:
		return (op->name != NULL);
	default:
		return (false);
	}
}

// store_bind_text binds NULL for a NULL string; the text is borrowed.
static void
store_bind_text(sqlite3_stmt *st, int i, const char *p)
{
	if (p == NULL) {
		sqlite3_bind_null(st, i);
	} else {
		sqlite3_bind_text(st, i, p, -1, SQLITE_STATIC);
	}
}

// store_bind_blob binds NULL for an empty blob so that NULL and empty read
// back the same way (NULL, 0).
static void
store_bind_blob(sqlite3_stmt *st, int i, const void *p, size_t len)
{
	if (p == NULL || len == 0) {
		sqlite3_bind_null(st, i);
	} else {
		sqlite3_bind_blob64(st, i, p, len, SQLITE_STATIC);
	}
}

// store_insert_rec inserts one record; *dupp gets the existing id if the sid
// is already stored (by an earlier batch or earlier in this one). Writer
// connection, inside the batch transaction.
static int
store_insert_rec(store *s, const store_rec *r, uint64_t *dupp)
{
	sqlite3_stmt *st = s->st_insert;
	int           src;

	*dupp = 0;
	sqlite3_bind_int64(st, 1, (sqlite3_int64) r->id);
	sqlite3_bind_blob(st, 2, r->sid, TB_SID_LEN, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, r->queue, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, r->handler, -1, SQLITE_STATIC);
	store_bind_blob(st, 5, r->payload, r->payload_len);
	sqlite3_bind_int64(st, 6, r->priority);
	sqlite3_bind_int64(st, 7, r->state);
	sqlite3_bind_int64(st, 8, r->attempts);
	sqlite3_bind_int64(st, 9, r->max_attempts);
	sqlite3_bind_int64(st, 10, r->timeout_ms);
	sqlite3_bind_int64(st, 11, r->run_at);
	sqlite3_bind_int64(st, 12, r->created_at);
	sqlite3_bind_int64(st, 13, r->started_at);
	sqlite3_bind_int64(st, 14, r->finished_at);
	store_bind_blob(st, 15, r->result, r->result_len);
	store_bind_text(st, 16, r->error);
	store_bind_text(st, 17, r->key);
	sqlite3_bind_int(st, 18, r->forever ? 1 : 0);
	sqlite3_bind_int64(st, 19, r->crashes);
	sqlite3_bind_int64(st, 20, r->max_crashes);
	src = sqlite3_step(st);
	sqlite3_clear_bindings(st); // drop the borrowed pointers
	sqlite3_reset(st);
	if (src != SQLITE_DONE) {
		return (src);
	}
	if (sqlite3_changes(s->wdb) > 0) {
		return (SQLITE_DONE);
	}
	// ON CONFLICT(sid) DO NOTHING skipped it: report the stored id.
	st = s->st_find_sid;
	sqlite3_bind_blob(st, 1, r->sid, TB_SID_LEN, SQLITE_STATIC);
	if ((src = sqlite3_step(st)) == SQLITE_ROW) {
		*dupp = (uint64_t) sqlite3_column_int64(st, 0);
		src   = SQLITE_DONE;
	} else if (src == SQLITE_DONE) {
		src = SQLITE_CORRUPT; // skipped, yet no row has the sid
	}
	sqlite3_clear_bindings(st);
	sqlite3_reset(st);
	return (src);
}

static int
store_update(store *s, const store_op *op)
{
	sqlite3_stmt *st = s->st_update;
	int           src;

	sqlite3_bind_int64(st, 1, (sqlite3_int64) op->id);
	sqlite3_bind_int64(st, 2, op->state);
	sqlite3_bind_int64(st, 3, op->attempts);
	sqlite3_bind_int64(st, 4, op->run_at);
	sqlite3_bind_int64(st, 5, op->started_at);
	sqlite3_bind_int64(st, 6, op->finished_at);
	store_bind_blob(st, 7, op->result, op->result_len);
	if (op->error == NULL) {
		sqlite3_bind_null(st, 8);
	} else {
		sqlite3_bind_text(st, 8, op->error, -1, SQLITE_STATIC);
	}
	sqlite3_bind_int64(st, 9, op->crashes);
	sqlite3_bind_int64(st, 10, op->max_crashes);
	src = sqlite3_step(st);
	sqlite3_clear_bindings(st);
	sqlite3_reset(st);
	if (src == SQLITE_DONE && sqlite3_changes(s->wdb) == 0) {
		// The loop updates only tasks it inserted; not fatal for the
		// rest of the batch.
		log_warn("store: update of task %llu: no such task",
		    (unsigned long long) op->id);
	}
	return (src);
}

// store_delete runs STORE_OP_DELETE and sets op->count. Writer connection,
// inside the batch transaction.
static int
store_delete(store *s, store_op *op)
{
	sqlite3_stmt *st;
	int           src;

	op->count = 0;
	st        = s->st_keep_max_id;
	src       = sqlite3_step(st);
	sqlite3_reset(st);
	if (src != SQLITE_DONE) {
		return (src);
	}
	if (op->nids > 0) {
		st = s->st_delete_id;
		for (uint32_t i = 0; i < op->nids; i++) {
			sqlite3_bind_int64(st, 1, (sqlite3_int64) op->ids[i]);
			src = sqlite3_step(st);
			sqlite3_reset(st);
			if (src != SQLITE_DONE) {
				return (src);
			}
			op->count += (uint64_t) sqlite3_changes(s->wdb);
		}
		return (SQLITE_DONE);
	}
	st = op->finished_before != 0 ? s->st_delete_finished
	                              : s->st_delete_filter;
	sqlite3_bind_text(st, 1, op->queue, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, op->del_state);
	sqlite3_bind_int64(st, 3, op->created_before);
	sqlite3_bind_int64(st, 4, op->finished_before);
	sqlite3_bind_int64(st, 5, op->limit == 0 ? -1 : (int64_t) op->limit);
	src = sqlite3_step(st);
	sqlite3_clear_bindings(st);
	sqlite3_reset(st);
	if (src == SQLITE_DONE) {
		op->count = (uint64_t) sqlite3_changes(s->wdb);
	}
	return (src);
}

static int
store_queue_set(store *s, const store_op *op)
{
	sqlite3_stmt *st = s->st_queue_set;
	int           src;

	sqlite3_bind_text(st, 1, op->queue, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, op->paused ? 1 : 0);
	src = sqlite3_step(st);
	sqlite3_clear_bindings(st);
	sqlite3_reset(st);
	return (src);
}

static int
store_whandler_put(store *s, const store_op *op)
{
	sqlite3_stmt *st = s->st_whandler_put;
	int           src;

	sqlite3_bind_text(st, 1, op->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, op->run_at);
	src = sqlite3_step(st);
	sqlite3_clear_bindings(st);
	sqlite3_reset(st);
	return (src);
}

static int
store_sched_put(store *s, const store_sched *sc)
{
	sqlite3_stmt *st = s->st_sched_put;
	int           src;

	// The uint64_t fields go in as their int64_t bit patterns and come
	// back the same way in store_read_sched.
	sqlite3_bind_text(st, 1, sc->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, sc->handler, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, sc->queue, -1, SQLITE_STATIC);
	store_bind_blob(st, 4, sc->payload, sc->payload_len);
	sqlite3_bind_int64(st, 5, sc->priority);
	sqlite3_bind_int64(st, 6, sc->max_attempts);
	sqlite3_bind_int64(st, 7, sc->timeout_ms);
	sqlite3_bind_int64(st, 8, (sqlite3_int64) sc->every_ms);
	store_bind_text(st, 9, sc->cron);
	sqlite3_bind_int(st, 10, sc->catch_up ? 1 : 0);
	sqlite3_bind_int(st, 11, sc->paused ? 1 : 0);
	sqlite3_bind_int64(st, 12, sc->created_at);
	sqlite3_bind_int64(st, 13, sc->next_at);
	sqlite3_bind_int64(st, 14, sc->last_at);
	sqlite3_bind_int64(st, 15, (sqlite3_int64) sc->fired);
	sqlite3_bind_int64(st, 16, (sqlite3_int64) sc->last_task);
	src = sqlite3_step(st);
	sqlite3_clear_bindings(st);
	sqlite3_reset(st);
	return (src);
}

static int
store_sched_del(store *s, store_op *op)
{
	sqlite3_stmt *st = s->st_sched_del;
	int           src;

	sqlite3_bind_text(st, 1, op->name, -1, SQLITE_STATIC);
	src = sqlite3_step(st);
	sqlite3_clear_bindings(st);
	sqlite3_reset(st);
	op->count = 0;
	if (src == SQLITE_DONE) {
		op->count = (uint64_t) sqlite3_changes(s->wdb);
	}
	return (src);
}

// store_run_batch runs every op of the list in one transaction and sets
// each op's rv (and src). Returns the SQLite code of the batch:
// SQLITE_DONE when it committed or had nothing to write, else the error
// that failed it, after the rollback (SQLite's message is in s->errmsg).
// Writer connection (the writer thread, or store_stop before start).
static int
store_run_batch(store *s, store_op *batch, bool *committedp)
{
	store_op *op;
	bool      write = false;
	int       src   = SQLITE_DONE;

	*committedp = false;
	for (op = batch; op != NULL; op = op->next) {
		op->src = 0;
		if (!store_op_valid(op)) {
			log_err(
			    "store: invalid op (kind %d); rejected", op->kind);
			op->rv = TB_EINVAL;
			continue;
		}
		op->rv = TB_OK;
		if (op->kind != STORE_OP_BARRIER) {
			write = true;
		}
	}
	if (!write) {
		// Barriers alone: everything before them has completed,
		// because batches run in order (kept ops aside: they are
		// never behind a barrier, they are in every batch).
		return (SQLITE_DONE);
	}

	// A rollback that failed after the last batch left the transaction
	// open; end it first, or BEGIN fails.
	if (!sqlite3_get_autocommit(s->wdb)) {
		(void) store_step1(s->st_rollback);
	}
	// Fault sites (fault.h): each fails as SQLite would, on the same path.
	if ((src = tb_fault(TB_FAULT_STORE_BEGIN)
	            ? SQLITE_IOERR
	            : store_step1(s->st_begin)) != SQLITE_DONE) {
		goto fail;
	}
	for (op = batch; op != NULL; op = op->next) {
		if (op->rv != TB_OK) {
			continue;
		}
		switch (op->kind) {
		case STORE_OP_INSERT:
			for (uint32_t i = 0; i < op->nrecs; i++) {
				src = tb_fault(TB_FAULT_STORE_INSERT)
				    ? SQLITE_IOERR
				    : store_insert_rec(
				          s, op->recs[i], &op->dup_ids[i]);
				if (src != SQLITE_DONE) {
					goto fail;
				}
			}
			break;
		case STORE_OP_UPDATE:
			if ((src = store_update(s, op)) != SQLITE_DONE) {
				goto fail;
			}
			break;
		case STORE_OP_DELETE:
			if ((src = store_delete(s, op)) != SQLITE_DONE) {
				goto fail;
			}
			break;
		case STORE_OP_QUEUE_SET:
			if ((src = store_queue_set(s, op)) != SQLITE_DONE) {
				goto fail;
			}
			break;
		case STORE_OP_WHANDLER_PUT:
			if ((src = store_whandler_put(s, op)) != SQLITE_DONE) {
				goto fail;
			}
			break;
		case STORE_OP_SCHED_PUT:
			if ((src = store_sched_put(s, op->sched)) !=
			    SQLITE_DONE) {
				goto fail;
			}
			break;
		case STORE_OP_SCHED_DEL:
			if ((src = store_sched_del(s, op)) != SQLITE_DONE) {
				goto fail;
			}
			break;
		default:
			break;
		}
	}
	if ((src = tb_fault(TB_FAULT_STORE_COMMIT)
	            ? SQLITE_IOERR
	            : store_step1(s->st_commit)) != SQLITE_DONE) {
		goto fail;
	}
	*committedp = true;
	return (SQLITE_DONE);
fail:
	// Keep SQLite's message before ROLLBACK replaces it. A fault site
	// leaves SQLite's own message alone; name the fault instead.
	snprintf(s->errmsg, sizeof(s->errmsg), "%s",
	    sqlite3_errcode(s->wdb) == src ? sqlite3_errmsg(s->wdb)
	                                   : "injected fault");
	// Some errors (SQLITE_FULL, SQLITE_IOERR...) roll back on their own;
	// after others the transaction is still open and must be rolled
	// back here, or every later BEGIN would fail ("cannot start a
	// transaction within a transaction") and the writer would wedge.
	if (!sqlite3_get_autocommit(s->wdb) &&
	    store_step1(s->st_rollback) != SQLITE_DONE) {
		log_err("store: rollback: %s", sqlite3_errmsg(s->wdb));
	}
	for (op = batch; op != NULL; op = op->next) {
		if (op->rv != TB_OK) {
			continue; // invalid ops keep TB_EINVAL
		}
		op->rv    = TB_ESTORE;
		op->src   = src;
		op->count = 0; // rolled back with the rest
		if (op->kind == STORE_OP_INSERT && op->nrecs > 0) {
			memset(op->dup_ids, 0, sizeof(uint64_t) * op->nrecs);
		}
	}
	return (src);
}

// store_done_locked appends a list of completed ops to the done list.
static void
store_done_locked(store *s, store_op *list)
{
	*s->done_tail = list;
	while (*s->done_tail != NULL) {
		s->done_tail = &(*s->done_tail)->next;
	}
}

// store_settle sorts a batch that has run with result src: the ops that
// completed go to *donep in their order, the ones to run again to the end
// of s->kept (may_keep: keeping is allowed). It logs the store's changes
// between writing and failing, and returns how many ops completed with
// TB_OK. Writer thread, or store_stop before start.
static uint64_t
store_settle(store *s, store_op *batch, int src, bool committed, bool may_keep,
    store_op **donep)
{
	store_op **dtail   = donep;
	bool     transient = src != SQLITE_DONE && store_error_transient(src);
	uint64_t ok        = 0;
	uint32_t n = 0, nkept = 0, nrefused = 0, nlost = 0;

	*donep = NULL;
	while (batch != NULL) {
		store_op *op = batch;

		batch    = op->next;
		op->next = NULL;
		n++;
		if (transient && op->keep && op->rv == TB_ESTORE) {
			if (may_keep) {
				op->rv        = TB_OK;
				*s->kept_tail = op;
				s->kept_tail  = &op->next;
				nkept++;
				continue;
			}
			nlost++;
		}
		ok += op->rv == TB_OK;
		nrefused += op->rv == TB_ESTORE;
		*dtail = op;
		dtail  = &op->next;
	}

	if (src == SQLITE_DONE) {
		if (committed && s->failing) {
			log_warn("store: writing again after %.1f s: %" PRIu64
			         " failed batches, %" PRIu64
			         " writes refused meanwhile; the writes kept "
			         "in memory are committed",
			    (double) (util_mono_us() - s->fail_since) / 1e6,
			    s->fail_batches, s->refused);
			s->failing = false;
		}
		s->retry_ms = STORE_RETRY_MIN_MS;
		return (ok);
	}
	if (!transient) {
		// Acting again on the same data fails the same way: every op
		// fails, each time (nothing is kept that could wedge the
		// writer).
		log_err(
		    "store: batch of %u ops failed, nothing written: %s: %s",
		    n, store_errstr(src), s->errmsg);
		return (ok);
	}
	if (!s->failing) {
		// One line for the whole outage; store_settle logs the end.
		s->failing      = true;
		s->fail_since   = util_mono_us();
		s->fail_batches = 0;
		s->refused      = 0;
		log_err("store: cannot write: %s: %s; submits get store_error "
		        "and task state changes are kept in memory until the "
		        "store can write again",
		    store_errstr(src), s->errmsg);
	}
	s->fail_batches++;
	s->refused += nrefused;
	log_debug("store: batch of %u ops failed (%s): %u refused, %u kept", n,
	    store_errstr(src), nrefused, nkept);
	if (nlost > 0) {
		log_err("store: stopping; %u state changes could not be "
		        "written (%s): their tasks resume from their last "
		        "stored state at the next start",
		    nlost, store_errstr(src));
	}
	s->retry_ms = s->retry_ms * 2 > STORE_RETRY_MAX_MS ? STORE_RETRY_MAX_MS
	                                                   : s->retry_ms * 2;
	return (ok);
}

// store_take_batch detaches the kept ops and the queue, in that order
// (kept ops are older), as one list. s->mtx held.
static store_op *
store_take_batch_locked(store *s)
{
	store_op *batch;

	if (s->kept != NULL) {
		batch         = s->kept;
		*s->kept_tail = s->q_head;
	} else {
		batch = s->q_head;
	}
	s->kept      = NULL;
	s->kept_tail = &s->kept;
	s->q_head    = NULL;
	s->q_tail    = &s->q_head;
	return (batch);
}

// store_count counts a list.
static uint32_t
store_count(const store_op *op)
{
	uint32_t n = 0;

	for (; op != NULL; op = op->next) {
		n++;
	}
	return (n);
}

// store_wait_work waits until ops are queued or, with kept ops, until
// their retry is due. Returns false when the writer is to end: stopping,
// and nothing is queued or kept. s->mtx held.
static bool
store_wait_work_locked(store *s)
{
	struct timespec until;

	if (s->kept != NULL) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += s->retry_ms / 1000;
		until.tv_nsec += (long) (s->retry_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
	}
	while (s->q_head == NULL) {
		if (s->kept == NULL) {
			if (s->stopping) {
				return (false); // everything is done
			}
			pthread_cond_wait(&s->cv, &s->mtx);
		} else if (pthread_cond_timedwait(&s->cv, &s->mtx, &until) ==
		    ETIMEDOUT) {
			break; // time to run the kept ops again
		}
	}
	return (true);
}

static void *
store_writer(void *arg)
{
	store *s = arg;

	pthread_mutex_lock(&s->mtx);
	while (store_wait_work_locked(s)) {
		store_op *batch;
		store_op *done;
		uint64_t  ok;
		bool      committed;
		bool      may_keep = true;
		int       src;

		// Take the kept ops and the whole queue: everything submitted
		// while the last commit ran goes into this transaction.
		batch = store_take_batch_locked(s);
		if (s->stopping && ++s->stop_tries > STORE_STOP_RETRIES) {
			may_keep = false; // give the kept ops up, below
		}
		pthread_mutex_unlock(&s->mtx);

		src = store_run_batch(s, batch, &committed);
		ok  = store_settle(s, batch, src, committed, may_keep, &done);

		pthread_mutex_lock(&s->mtx);
		store_done_locked(s, done); // the loop owns these ops again
		s->commits += committed ? 1 : 0;
		s->ops += ok;
		s->nkept = store_count(s->kept);
		if (done != NULL && s->notify != NULL) {
			pthread_mutex_unlock(&s->mtx);
			s->notify(s->notify_arg);
			pthread_mutex_lock(&s->mtx);
		}
	}
	pthread_mutex_unlock(&s->mtx);
	return (NULL);
}

int
store_start(store *s, void (*notify)(void *arg), void *arg)
{
	int err;

	if (s == NULL || s->started) {
		return (TB_EINVAL);
	}
	s->notify     = notify;
	s->notify_arg = arg;
	err           = util_thread_start(&s->thread, store_writer, s);
	if (err != 0) {
		log_err("store: cannot start the writer thread: %s",
		    strerror(err));
		s->notify = NULL;
		return (TB_ESYSTEM);
	}
	s->started = true; // s->wdb belongs to the writer from here
	return (TB_OK);
}

void
store_submit(store *s, store_op *op)
{
	bool closed;

	op->next = NULL;
	pthread_mutex_lock(&s->mtx);
	if ((closed = s->stopping)) {
		op->rv = TB_ECLOSED;
		store_done_locked(s, op);
	} else {
		*s->q_tail = op;
		s->q_tail  = &op->next;
		pthread_cond_signal(&s->cv);
	}
	pthread_mutex_unlock(&s->mtx);
	// notify is set before the writer starts and never changes while it
	// runs; after store_stop it is read only by submitters.
	if (closed && s->notify != NULL) {
		s->notify(s->notify_arg);
	}
}

store_op *
store_take_done(store *s)
{
	store_op *list;

	pthread_mutex_lock(&s->mtx);
	list         = s->done_head;
	s->done_head = NULL;
	s->done_tail = &s->done_head;
	pthread_mutex_unlock(&s->mtx);
	return (list);
}

void
store_stop(store *s)
{
	store_op *batch;
	store_op *done;
	uint64_t  ok;
	bool      committed;
	int       src;

	if (s == NULL) {
		return;
	}
	pthread_mutex_lock(&s->mtx);
	s->stopping = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mtx);
	if (s->started) {
		if (!s->joined) {
			pthread_join(s->thread, NULL); // it drains the queue
			s->joined = true;
		}
		return;
	}
	// Never started: this thread still owns the writer connection, so it
	// commits what was queued itself, once (nothing is kept).
	pthread_mutex_lock(&s->mtx);
	batch = store_take_batch_locked(s);
	pthread_mutex_unlock(&s->mtx);
	if (batch == NULL) {
		return;
	}
	src = store_run_batch(s, batch, &committed);
	ok  = store_settle(s, batch, src, committed, false, &done);
	pthread_mutex_lock(&s->mtx);
	store_done_locked(s, done);
	s->commits += committed ? 1 : 0;
	s->ops += ok;
	pthread_mutex_unlock(&s->mtx);
}

uint32_t
store_kept(store *s)
{
	uint32_t n;

	pthread_mutex_lock(&s->mtx);
	n = s->nkept;
	pthread_mutex_unlock(&s->mtx);
	return (n);
}

void
store_counters(store *s, uint64_t *commitsp, uint64_t *opsp)
{
	pthread_mutex_lock(&s->mtx);
	if (commitsp != NULL) {
		*commitsp = s->commits;
	}
	if (opsp != NULL) {
		*opsp = s->ops;
	}
	pthread_mutex_unlock(&s->mtx);
}

void
store_close(store *s)
{
	if (s == NULL) {
		return;
	}
	if (s->started && !s->joined) {
		store_stop(
		    s); // the caller forgot; never free under the writer
	}
	for (size_t i = 0; i < STORE_NSTMTS; i++) {
		sqlite3_finalize(*store_stmt_slot(s, i)); // accepts NULL
	}
	if (s->rdb != NULL && sqlite3_close(s->rdb) != SQLITE_OK) {
		log_err("store: close reader: %s", sqlite3_errmsg(s->rdb));
	}
	// The last connection to close checkpoints and removes the WAL.
	if (s->wdb != NULL && sqlite3_close(s->wdb) != SQLITE_OK) {
		log_err("store: close writer: %s", sqlite3_errmsg(s->wdb));
	}
	if (s->mtx_init) {
		pthread_cond_destroy(&s->cv);
		pthread_mutex_destroy(&s->mtx);
	}
	free(s);
}

int
store_get(store *s, uint64_t id, store_rec **rp)
{
	sqlite3_stmt *st = s->st_get;
	int           src;
	int           rv;

	sqlite3_bind_int64(st, 1, (sqlite3_int64) id);
	src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		rv = store_read_row(st, rp);
	} else if (src == SQLITE_DONE) {
		rv = TB_ENOTFOUND;
	} else {
		log_err("store: get task %llu: %s", (unsigned long long) id,
		    sqlite3_errmsg(s->rdb));
		rv = store_rv(src);
	}
	sqlite3_reset(st);
	return (rv);
}

int
store_list(store *s, const store_filter *f, store_rec ***recsp, size_t *np)
{
	sqlite3_stmt *st;
	store_rec   **recs  = NULL;
	size_t        n     = 0;
	size_t        cap   = 0;
	uint32_t      limit = f->limit == 0 ? 100 : f->limit;
	int           src;
	int           rv = TB_OK;

	if (f->queue != NULL && f->state >= 0) {
		st = s->st_list_queue_state;
	} else if (f->queue != NULL) {
		st = s->st_list_queue;
	} else if (f->state >= 0) {
		st = s->st_list_state;
	} else {
		st = s->st_list_all;
	}
	if (f->queue != NULL) {
		sqlite3_bind_text(st, 1, f->queue, -1, SQLITE_STATIC);
	}
	if (f->state >= 0) {
		sqlite3_bind_int64(st, 2, f->state);
	}
	sqlite3_bind_int64(st, 3, (sqlite3_int64) f->after_id);
	sqlite3_bind_int64(st, 4, limit);
	store_bind_text(st, 5, f->handler);
	sqlite3_bind_int64(st, 6, f->created_after);
	sqlite3_bind_int64(st, 7, f->created_before);
	src = SQLITE_DONE;
	// Grow the array as rows come: limit is the caller's bound, not a
	// size to allocate up front.
	while (n < limit && (src = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			size_t      ncap = cap == 0 ? 16 : cap * 2;
			store_rec **nr   = realloc(recs, ncap * sizeof(*recs));
			if (nr == NULL) {
				rv = TB_ENOMEM;
				goto fail;
			}
			recs = nr;
			cap  = ncap;
		}
		if ((rv = store_read_row(st, &recs[n])) != TB_OK) {
			goto fail;
		}
		n++;
	}
	if (src != SQLITE_DONE && src != SQLITE_ROW) {
		log_err("store: list: %s", sqlite3_errmsg(s->rdb));
		rv = store_rv(src);
		goto fail;
	}
	sqlite3_clear_bindings(st);
	sqlite3_reset(st);
	*recsp = recs;
	*np    = n;
	return (TB_OK);
fail:
	sqlite3_clear_bindings(st);
	sqlite3_reset(st);
	for (size_t i = 0; i < n; i++) {
		store_rec_free(recs[i]);
	}
	free(recs);
	return (rv);
}

// The loaders below read through the reader connection: they run on the
// loop thread, and the writer may already be running without harm.

int
store_load_queues(
    store *s, int (*cb)(void *arg, const char *name, bool paused), void *arg)
{
	sqlite3_stmt *st = s->st_load_queues;
	int           src;
	int           rv = TB_OK;

	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *) sqlite3_column_text(st, 0);

		if (name == NULL) {
			src = SQLITE_NOMEM; // the name is NOT NULL
			break;
		}
		if ((rv = cb(arg, name, sqlite3_column_int64(st, 1) != 0)) !=
		    0) {
			break;
		}
	}
	if (rv == TB_OK && src != SQLITE_DONE) {
		log_err("store: load queues: %s", sqlite3_errmsg(s->rdb));
		rv = store_rv(src);
	}
	sqlite3_reset(st);
	return (rv);
}

int
store_load_whandlers(
    store *s, int (*cb)(void *arg, const char *name), void *arg)
{
	sqlite3_stmt *st = s->st_load_whandlers;
	int           src;
	int           rv = TB_OK;

	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *) sqlite3_column_text(st, 0);

		if (name == NULL) {
			src = SQLITE_NOMEM; // the name is NOT NULL
			break;
		}
		if ((rv = cb(arg, name)) != 0) {
			break;
		}
	}
	if (rv == TB_OK && src != SQLITE_DONE) {
		log_err(
		    "store: load worker handlers: %s", sqlite3_errmsg(s->rdb));
		rv = store_rv(src);
	}
	sqlite3_reset(st);
	return (rv);
}

int
store_load_schedules(
    store *s, int (*cb)(void *arg, store_sched *sc), void *arg)
{
	sqlite3_stmt *st = s->st_load_scheds;
	int           src;
	int           rv = TB_OK;

	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		store_sched *sc;

		if ((rv = store_read_sched(st, &sc)) != TB_OK) {
			break;
		}
		if ((rv = cb(arg, sc)) != 0) { // cb owns sc from here
			break;
		}
	}
	if (rv == TB_OK && src != SQLITE_DONE) {
		log_err("store: load schedules: %s", sqlite3_errmsg(s->rdb));
		rv = store_rv(src);
	}
	sqlite3_reset(st);
	return (rv);
}

int
store_queue_counts(store *s,
    int (*cb)(void *arg, const char *queue, int state, uint64_t n), void *arg)
{
	sqlite3_stmt *st = s->st_queue_counts;
	int           src;
	int           rv = TB_OK;

	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *q = (const char *) sqlite3_column_text(st, 0);

		if (q == NULL) {
			src = SQLITE_NOMEM; // the queue is NOT NULL
			break;
		}
		rv = cb(arg, q, (int) sqlite3_column_int64(st, 1),
		    (uint64_t) sqlite3_column_int64(st, 2));
		if (rv != 0) {
			break;
		}
	}
	if (rv == TB_OK && src != SQLITE_DONE) {
		log_err("store: queue counts: %s", sqlite3_errmsg(s->rdb));
		rv = store_rv(src);
	}
	sqlite3_reset(st);
	return (rv);
}
