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
// Connections. s->wdb is used by the thread that calls store_open and
// store_recover until store_start, then only by the writer thread. s->rdb is
// used only by the loop thread (store_get, store_list). Both are opened
// with SQLITE_OPEN_NOMUTEX because each one is used by one thread at a
// time; the handoff of s->wdb to the writer happens at pthread_create.

#include "store.h"

#include "log.h"
#include "taskbroker.h"

#include <assert.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) ==
        STORE_SCHEMA_VERSION,
    "one migration step per schema version");

// STORE_COLS is the column list store_read_row expects.
#define STORE_COLS                                                          \
	"id, sid, queue, handler, payload, priority, state, attempts, "     \
	"max_attempts, timeout_ms, run_at, created_at, started_at, "        \
	"finished_at, result, error"

#define STORE_INTERRUPTED                                                   \
	"interrupted: the broker stopped during the last attempt"

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
	sqlite3_stmt *st_rec_dead;
	sqlite3_stmt *st_rec_pending;
	sqlite3_stmt *st_rec_unfinished;
	sqlite3_stmt *st_rec_max_id;
	sqlite3_stmt *st_rec_counts;

	// Reader connection statements.
	sqlite3_stmt *st_get;
	sqlite3_stmt *st_list_all;
	sqlite3_stmt *st_list_queue;
	sqlite3_stmt *st_list_state;
	sqlite3_stmt *st_list_queue_state;

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
};

// store_stmt_def lists every statement; all are prepared once at open.
typedef struct {
	size_t      off; // offset of the sqlite3_stmt * in struct store
	bool        reader;
	const char *sql;
} store_stmt_def;

#define STORE_STMT(field, reader, sql)                                      \
	{                                                                   \
		offsetof(struct store, field), reader, sql                  \
	}

static const store_stmt_def store_stmts[] = {
	STORE_STMT(st_begin, false, "BEGIN IMMEDIATE"),
	STORE_STMT(st_commit, false, "COMMIT"),
	STORE_STMT(st_rollback, false, "ROLLBACK"),
	STORE_STMT(st_insert, false,
	    "INSERT INTO tasks(id, sid, queue, handler, payload, priority, "
	    "state, attempts, max_attempts, timeout_ms, run_at, created_at, "
	    "started_at, finished_at, result, error) "
	    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
	    "?14, ?15, ?16) ON CONFLICT(sid) DO NOTHING"),
	STORE_STMT(st_find_sid, false, "SELECT id FROM tasks WHERE sid = ?1"),
	STORE_STMT(st_update, false,
	    "UPDATE tasks SET state = ?2, attempts = ?3, run_at = ?4, "
	    "started_at = ?5, finished_at = ?6, result = ?7, error = ?8 "
	    "WHERE id = ?1"),
	STORE_STMT(st_rec_dead, false,
	    "UPDATE tasks SET state = 4, finished_at = ?1, error = ?2 "
	    "WHERE (state < 2 OR state = 3) AND state = 1 "
	    "AND attempts >= max_attempts"),
	STORE_STMT(st_rec_pending, false,
	    "UPDATE tasks SET state = 0 "
	    "WHERE (state < 2 OR state = 3) AND state = 1"),
	STORE_STMT(st_rec_unfinished, false,
	    // Without statistics the planner would rather scan the table in
	    // id order; recovery must not read the finished rows.
	    "SELECT " STORE_COLS " FROM tasks INDEXED BY tasks_unfinished "
	    "WHERE (state < 2 OR state = 3) ORDER BY id"),
	STORE_STMT(st_rec_max_id, false, "SELECT max(id) FROM tasks"),
	STORE_STMT(st_rec_counts, false,
	    "SELECT state, count(*) FROM tasks GROUP BY state"),
	STORE_STMT(st_get, true, "SELECT " STORE_COLS " FROM tasks WHERE id = ?1"),
	STORE_STMT(st_list_all, true,
	    "SELECT " STORE_COLS " FROM tasks WHERE id > ?3 "
	    "ORDER BY id LIMIT ?4"),
	STORE_STMT(st_list_queue, true,
	    "SELECT " STORE_COLS " FROM tasks WHERE queue = ?1 AND id > ?3 "
	    "ORDER BY id LIMIT ?4"),
	STORE_STMT(st_list_state, true,
	    "SELECT " STORE_COLS " FROM tasks WHERE state = ?2 AND id > ?3 "
	    "ORDER BY id LIMIT ?4"),
	STORE_STMT(st_list_queue_state, true,
	    "SELECT " STORE_COLS " FROM tasks WHERE queue = ?1 AND state = ?2 "
	    "AND id > ?3 ORDER BY id LIMIT ?4"),
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

static int64_t
store_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

// store_exec runs sql (no results expected) on db; used only at open.
static int
store_exec(sqlite3 *db, const char *what, const char *sql)
{
	char *msg = NULL;
	int   src;

	if ((src = sqlite3_exec(db, sql, NULL, NULL, &msg)) != SQLITE_OK) {
		log_err("store: %s: %s", what, msg ? msg : sqlite3_errstr(src));
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
	if ((src = sqlite3_open_v2(path, dbp, flags, NULL)) != SQLITE_OK) {
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
	if ((rv = store_pragma_text(s->wdb, "PRAGMA user_version", buf,
	         sizeof(buf))) != TB_OK) {
		goto fail;
	}
	v = strtol(buf, NULL, 10);
	if (v > STORE_SCHEMA_VERSION || v < 0) {
		log_err("store: %s has schema version %ld, newer than this "
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
		log_info("store: %s migrated to schema version %ld", path,
		    v + 1);
	}
	if ((rv = store_exec(s->wdb, "commit migration", "COMMIT")) !=
	    TB_OK) {
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
			log_err("store: prepare \"%s\": %s", store_stmts[i].sql,
			    sqlite3_errmsg(db));
			return (store_rv(src));
		}
	}
	return (TB_OK);
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
	if (pthread_mutex_init(&s->mtx, NULL) != 0) {
		free(s);
		return (TB_ESYSTEM);
	}
	if (pthread_cond_init(&s->cv, NULL) != 0) {
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
		log_err("store: %s: cannot use this file as the task store",
		    path);
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
store_rec_free(store_rec *r)
{
	if (r == NULL) {
		return;
	}
	free(r->queue);
	free(r->handler);
	free(r->payload);
	free(r->result);
	free(r->error);
	free(r);
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
		memcpy(r->sid, sid, n < STORE_SID_LEN ? (size_t) n : STORE_SID_LEN);
	}
	if ((rv = store_col_text(st, 2, &r->queue)) != TB_OK ||
	    (rv = store_col_text(st, 3, &r->handler)) != TB_OK ||
	    (rv = store_col_blob(st, 4, &r->payload, &r->payload_len)) !=
	        TB_OK ||
	    (rv = store_col_blob(st, 14, &r->result, &r->result_len)) !=
	        TB_OK ||
	    (rv = store_col_text(st, 15, &r->error)) != TB_OK) {
		store_rec_free(r);
		return (rv);
	}
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
	// One transaction: every interrupted task changes, or none does.
	if ((src = store_step1(s->st_begin)) != SQLITE_DONE) {
		goto sqlfail;
	}
	sqlite3_bind_int64(s->st_rec_dead, 1, store_now_us());
	sqlite3_bind_text(
	    s->st_rec_dead, 2, STORE_INTERRUPTED, -1, SQLITE_STATIC);
	if ((src = store_step1(s->st_rec_dead)) != SQLITE_DONE) {
		goto sqlfail;
	}
	if (sqlite3_changes(s->wdb) > 0) {
		log_warn("store: recovery: %d interrupted tasks had no attempts "
		         "left and are dead",
		    sqlite3_changes(s->wdb));
	}
	if ((src = store_step1(s->st_rec_pending)) != SQLITE_DONE) {
		goto sqlfail;
	}
	if (sqlite3_changes(s->wdb) > 0) {
		log_info("store: recovery: %d interrupted tasks are pending "
		         "again",
		    sqlite3_changes(s->wdb));
	}
	if ((src = store_step1(s->st_commit)) != SQLITE_DONE) {
		goto sqlfail;
	}

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
		if (op->nrecs > 0 && (op->recs == NULL || op->dup_ids == NULL)) {
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
	default:
		return (false);
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
	sqlite3_bind_blob(st, 2, r->sid, STORE_SID_LEN, SQLITE_STATIC);
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
	if (r->error == NULL) {
		sqlite3_bind_null(st, 16);
	} else {
		sqlite3_bind_text(st, 16, r->error, -1, SQLITE_STATIC);
	}
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
	sqlite3_bind_blob(st, 1, r->sid, STORE_SID_LEN, SQLITE_STATIC);
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

// store_run_batch runs every op of the list in one transaction and sets
// each op's rv. Returns the number of transactions committed (0 or 1).
// Writer connection (the writer thread, or store_stop before start).
static int
store_run_batch(store *s, store_op *batch, uint64_t *okp)
{
	store_op *op;
	bool      write = false;
	uint32_t  n     = 0;
	int       src   = SQLITE_DONE;

	*okp = 0;
	for (op = batch; op != NULL; op = op->next) {
		n++;
		if (!store_op_valid(op)) {
			log_err("store: invalid op (kind %d); rejected", op->kind);
			op->rv = TB_EINVAL;
			continue;
		}
		op->rv = TB_OK;
		if (op->kind != STORE_OP_BARRIER) {
			write = true;
		}
	}
	if (!write) {
		// Barriers alone: everything before them has committed,
		// because batches run in order.
		for (op = batch; op != NULL; op = op->next) {
			*okp += op->rv == TB_OK;
		}
		return (0);
	}

	if ((src = store_step1(s->st_begin)) != SQLITE_DONE) {
		goto fail;
	}
	for (op = batch; op != NULL; op = op->next) {
		if (op->rv != TB_OK) {
			continue;
		}
		switch (op->kind) {
		case STORE_OP_INSERT:
			for (uint32_t i = 0; i < op->nrecs; i++) {
				src = store_insert_rec(
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
		default:
			break;
		}
	}
	if ((src = store_step1(s->st_commit)) != SQLITE_DONE) {
		goto fail;
	}
	for (op = batch; op != NULL; op = op->next) {
		*okp += op->rv == TB_OK;
	}
	return (1);
fail:
	// Log once, with SQLite's message, before ROLLBACK replaces it.
	log_err("store: batch of %u ops failed, nothing written: %s", n,
	    sqlite3_errmsg(s->wdb));
	// Some errors (SQLITE_FULL, SQLITE_IOERR...) roll back on their own.
	if (!sqlite3_get_autocommit(s->wdb) &&
	    store_step1(s->st_rollback) != SQLITE_DONE) {
		log_err("store: rollback: %s", sqlite3_errmsg(s->wdb));
	}
	for (op = batch; op != NULL; op = op->next) {
		if (op->rv != TB_OK) {
			continue; // invalid ops keep TB_EINVAL
		}
		op->rv = TB_ESTORE;
		if (op->kind == STORE_OP_INSERT && op->nrecs > 0) {
			memset(op->dup_ids, 0, sizeof(uint64_t) * op->nrecs);
		}
	}
	return (0);
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

static void *
store_writer(void *arg)
{
	store *s = arg;

	pthread_mutex_lock(&s->mtx);
	for (;;) {
		store_op *batch;
		uint64_t  ok;
		int       committed;

		while (s->q_head == NULL && !s->stopping) {
			pthread_cond_wait(&s->cv, &s->mtx);
		}
		if (s->q_head == NULL) {
			break; // stopping, and everything queued is done
		}
		// Take the whole queue: everything submitted while the last
		// commit ran goes into this transaction.
		batch     = s->q_head;
		s->q_head = NULL;
		s->q_tail = &s->q_head;
		pthread_mutex_unlock(&s->mtx);

		committed = store_run_batch(s, batch, &ok);

		pthread_mutex_lock(&s->mtx);
		store_done_locked(s, batch); // the loop owns the ops again
		s->commits += (uint64_t) committed;
		s->ops += ok;
		pthread_mutex_unlock(&s->mtx);
		if (s->notify != NULL) {
			s->notify(s->notify_arg);
		}
		pthread_mutex_lock(&s->mtx);
	}
	pthread_mutex_unlock(&s->mtx);
	return (NULL);
}

int
store_start(store *s, void (*notify)(void *arg), void *arg)
{
	sigset_t all;
	sigset_t old;
	int      err;

	if (s == NULL || s->started) {
		return (TB_EINVAL);
	}
	s->notify     = notify;
	s->notify_arg = arg;
	// Signals go to the loop thread, never to the writer: block them all
	// in the new thread (it inherits the mask).
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&s->thread, NULL, store_writer, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
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
	uint64_t  ok;
	int       committed;

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
	// commits what was queued itself.
	pthread_mutex_lock(&s->mtx);
	batch     = s->q_head;
	s->q_head = NULL;
	s->q_tail = &s->q_head;
	pthread_mutex_unlock(&s->mtx);
	if (batch == NULL) {
		return;
	}
	committed = store_run_batch(s, batch, &ok);
	pthread_mutex_lock(&s->mtx);
	store_done_locked(s, batch);
	s->commits += (uint64_t) committed;
	s->ops += ok;
	pthread_mutex_unlock(&s->mtx);
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
		store_stop(s); // the caller forgot; never free under the writer
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
store_list(store *s, const char *queue, int state, uint64_t after_id,
    uint32_t limit, store_rec ***recsp, size_t *np)
{
	sqlite3_stmt *st;
	store_rec   **recs = NULL;
	size_t        n    = 0;
	size_t        cap  = 0;
	int           src;
	int           rv = TB_OK;

	if (queue != NULL && state >= 0) {
		st = s->st_list_queue_state;
	} else if (queue != NULL) {
		st = s->st_list_queue;
	} else if (state >= 0) {
		st = s->st_list_state;
	} else {
		st = s->st_list_all;
	}
	if (queue != NULL) {
		sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
	}
	if (state >= 0) {
		sqlite3_bind_int64(st, 2, state);
	}
	sqlite3_bind_int64(st, 3, (sqlite3_int64) after_id);
	sqlite3_bind_int64(st, 4, limit);
	src = SQLITE_DONE;
	// Grow the array as rows come: limit is the caller's bound, not a
	// size to allocate up front.
	while (n < limit && (src = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			size_t     ncap = cap == 0 ? 16 : cap * 2;
			store_rec **nr  = realloc(recs, ncap * sizeof(*recs));
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
