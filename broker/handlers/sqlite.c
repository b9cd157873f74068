// handlers/sqlite.c: the "sqlite" handler; see sqlite.h.
//
// DESIGN. Each configured database has one connection, owned by one writer
// thread. The run function (loop thread) validates the payload, keeps a
// copy of it with views into it for each statement (a job), appends the job
// to the database's queue and returns; the attempt ends later, when the
// writer calls tb_run_finish. The writer swaps the whole queue out under
// the lock and works through it unlocked, up to SQLH_BATCH_MAX tasks per
// transaction (group commit, as store.c does for the task table):
//
//     BEGIN IMMEDIATE
//     per task: applied record for task_id?  yes: succeed with its result
//               SAVEPOINT; its statements; INSERT the applied record;
//               RELEASE  (on error: ROLLBACK TO; RELEASE; the task fails)
//     COMMIT, then tb_run_set_result / tb_run_set_error + tb_run_finish
//
// The task's writes and its applied record commit together, so a task that
// runs again after a crash between this COMMIT and the broker's own "done"
// record finds the record and is not applied twice. Outcomes are reported
// only after the COMMIT: if it fails, every task of the batch fails and
// nothing was applied.
//
// Some errors end the whole transaction, not just the statement (disk full,
// I/O error, out of memory, a trigger's RAISE(ROLLBACK)): the work of the
// tasks before the failing one in the batch is gone too. For a constraint
// (RAISE(ROLLBACK) reports SQLITE_CONSTRAINT_TRIGGER) the failing task
// fails alone and the batch starts over without it; for the others, the
// rest of the batch fails with the error and is retried per each task's
// policy.
//
// The task's SQL is run as given, under an authorizer that refuses what
// would break the batch or escape the configured file: transaction control
// (BEGIN, COMMIT, SAVEPOINT, ...), ATTACH/DETACH, PRAGMAs that change
// settings (except user_version and application_id), and writes to the
// _taskbroker_* tables. Defensive mode is on and the schema is untrusted.
//
// Cancellation. A job whose attempt is cancelled (timeout, tb_cancel,
// shutdown) before its batch starts is skipped and ends with the error
// "cancelled". A read-only statement already running is interrupted from a
// progress handler (an interrupted read-only statement leaves the
// transaction alone). A statement that writes is left to finish, because
// interrupting it would roll back the whole batch's transaction. The
// handler therefore has no cancel function: the writer reads
// tb_run_cancelled itself.
//
// Applied records are kept; pruning them is left to a later change (they
// matter only while the task has not ended, but the handler does not know
// when the broker has recorded that).
//
// Locking. Each database has one mutex, d->mtx, protecting its queue
// (q_head, q_tail) and d->stopping. It is a leaf lock, never held while
// SQLite runs or while tb_run_* is called. Everything else in sqlh_db is
// set up on the loop thread before the writer starts and then belongs to
// the writer, except name and path (read-only) and started (loop thread).
// The globals in sqlh are loop-thread only.

#include "handlers/sqlite.h"

#include "fault.h"
#include "handlers/handlers.h"
#include <tbp.h>
#include "log.h"
#include "util.h"
#include <taskbroker/defs.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

#define SQLH_NAME_MAX 64            // bytes of a database name
#define SQLH_SQL_MAX (256u << 10)   // bytes of one statement's SQL
#define SQLH_STMTS_MAX 256          // statements per task
#define SQLH_PARAMS_MAX 999         // parameters per statement
#define SQLH_PARAM_NAME_MAX 128     // bytes of a parameter name
#define SQLH_BATCH_MAX 1000         // tasks per transaction
#define SQLH_ROWS_MAX 1000          // rows kept in a result
#define SQLH_ROWS_BYTES (60u << 10) // msgpack bytes of rows kept
#define SQLH_BUSY_MS 5000           // wait for another process's lock
#define SQLH_PROGRESS_OPS 10000     // VM steps between cancel checks

#define SQLH_SHUTTING_DOWN "broker shutting down"

enum sqlh_state {
	SQLH_PENDING = 0,
	SQLH_OK      = 1,
	SQLH_FAILED  = 2,
};

// sqlh_stmt is one statement of a task: views into the job's payload copy.
typedef struct sqlh_stmt {
	const char           *sql;
	size_t                sql_len;
	const msgpack_object *params; // NULL, an array or a map
} sqlh_stmt;

// sqlh_job is one attempt queued for a writer. Built on the loop thread;
// the writer owns it once queued, and frees it after tb_run_finish.
typedef struct sqlh_job {
	struct sqlh_job *next;
	tb_run          *run;
	uint64_t         task_id;
	uint64_t         hash;    // of the payload, kept in the applied record
	char            *payload; // a copy; up and stmts point into it
	msgpack_unpacked up;
	sqlh_stmt       *stmts;
	size_t           nstmts;

	// Outcome; writer thread only.
	int      state; // enum sqlh_state
	bool     final; // a failure retrying cannot help
	uint8_t *result;
	size_t   result_len;
	char    *error;
} sqlh_job;

typedef struct sqlh_db {
	char    *name;
	char    *path;
	sqlite3 *db;

	sqlite3_stmt *st_begin;
	sqlite3_stmt *st_commit;
	sqlite3_stmt *st_rollback;
	sqlite3_stmt *st_savepoint;
	sqlite3_stmt *st_release;
	sqlite3_stmt *st_rollback_to;
	sqlite3_stmt *st_applied_get;
	sqlite3_stmt *st_applied_put;

	pthread_t thread;
	bool      started; // the writer thread exists

	pthread_mutex_t mtx; // protects q_head, q_tail and stopping
	pthread_cond_t  cv;  // signalled when a job is queued or on stop
	bool            sync_init;
	sqlh_job       *q_head;
	sqlh_job      **q_tail;
	bool            stopping;

	// Writer thread only.
	bool        task_sql;     // the authorizer checks what is prepared
	const char *deny;         // why the authorizer refused, or NULL
	tb_run     *cur_run;      // the attempt whose statement runs
	bool        cur_readonly; // and that statement only reads
	bool        lost_restart; // see sqlh_apply
	sqlh_job  **batch;        // SQLH_BATCH_MAX slots
} sqlh_db;

// The handler's state. Loop thread only (the writers get their sqlh_db).
static struct {
	sqlh_db *dbs;
	size_t   n;
	bool     inited;
	bool     stopped;
} sqlh;

static int sqlh_run(tb_run *r, void *hdata);

static const tb_handler_def sqlh_def = {
	.name   = "sqlite",
	.mode   = TB_HANDLER_LOOP,
	.run    = sqlh_run,
	.cancel = NULL, // see "Cancellation" above
	.hdata  = NULL,
};

// sqlh_rv converts a SQLite result code at the module edge.
static int
sqlh_rv(int src)
{
	return ((src & 0xff) == SQLITE_NOMEM ? TB_ENOMEM : TB_ESTORE);
}

// sqlh_hash is 64-bit FNV-1a; it tells a reused task id from a re-run.
static uint64_t
sqlh_hash(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t       h = 14695981039346656037ull;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return (h);
}

static void
sqlh_job_free(sqlh_job *j)
{
	if (j == NULL) {
		return;
	}
	msgpack_unpacked_destroy(&j->up);
	free(j->payload);
	free(j->stmts);
	free(j->result);
	free(j->error);
	free(j);
}

// sqlh_fail records a failure of j (the first one wins while pending; a
// later call replaces an earlier outcome, e.g. success before a failed
// COMMIT).
static void sqlh_fail(sqlh_job *j, bool final, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
sqlh_fail(sqlh_job *j, bool final, const char *fmt, ...)
{
	va_list ap;
	char   *msg = NULL;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0) {
		msg = NULL;
	}
	va_end(ap);
	free(j->error);
	free(j->result);
	j->result     = NULL;
	j->result_len = 0;
	j->error      = msg; // NULL: "failed" is reported
	j->final      = final;
	j->state      = SQLH_FAILED;
}

// sqlh_reset forgets an outcome so the job runs again in a new transaction.
static void
sqlh_reset(sqlh_job *j)
{
	free(j->error);
	free(j->result);
	j->error      = NULL;
	j->result     = NULL;
	j->result_len = 0;
	j->final      = false;
	j->state      = SQLH_PENDING;
}

// sqlh_finish reports j's outcome and ends the attempt; frees j. Any
// thread (tb_run_finish allows it).
static void
sqlh_finish(sqlh_job *j)
{
	tb_run *r = j->run;

	if (j->state == SQLH_OK) {
		if (tb_run_set_result(r, j->result, j->result_len) != 0) {
			tb_run_set_error(
			    r, "out of memory storing the result");
		}
	} else {
		log_debug("sqlite: task %" PRIu64 ": %s", j->task_id,
		    j->error ? j->error : "failed");
		tb_run_set_error(r, "%s", j->error ? j->error : "failed");
		if (j->final) {
			tb_run_set_no_retry(r);
		}
	}
	sqlh_job_free(j);
	tb_run_finish(r); // the run may be freed from here
}

// Payload parsing (loop thread).

// sqlh_scalar_ok is true for the msgpack types a parameter may have.
static bool
sqlh_scalar_ok(const msgpack_object *v)
{
	switch (v->type) {
	case MSGPACK_OBJECT_NIL:
	case MSGPACK_OBJECT_BOOLEAN:
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
	case MSGPACK_OBJECT_STR:
	case MSGPACK_OBJECT_BIN:
		return (true);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		return (v->via.u64 <= (uint64_t) INT64_MAX);
	default:
		return (false);
	}
}

// sqlh_parse_stmt checks one statement's sql and params into s. On error
// writes a message to err and returns -1.
static int
sqlh_parse_stmt(sqlh_stmt *s, const msgpack_object *sql,
    const msgpack_object *params, const char *where, char *err, size_t errlen)
{
	if (sql == NULL || sql->type != MSGPACK_OBJECT_STR) {
		snprintf(err, errlen, "%ssql must be a string", where);
		return (-1);
	}
	if (sql->via.str.size == 0 || sql->via.str.size > SQLH_SQL_MAX) {
		snprintf(err, errlen, "%ssql must be 1 to %u bytes", where,
		    SQLH_SQL_MAX);
		return (-1);
	}
	s->sql     = sql->via.str.ptr;
	s->sql_len = sql->via.str.size;
	s->params  = NULL;
	if (params == NULL || params->type == MSGPACK_OBJECT_NIL) {
		return (0);
	}
	if (params->type == MSGPACK_OBJECT_ARRAY) {
		if (params->via.array.size > SQLH_PARAMS_MAX) {
			snprintf(err, errlen, "%sparams: more than %d values",
			    where, SQLH_PARAMS_MAX);
			return (-1);
		}
		for (uint32_t i = 0; i < params->via.array.size; i++) {
			if (!sqlh_scalar_ok(&params->via.array.ptr[i])) {
				snprintf(err, errlen,
				    "%sparams[%u]: a value must be nil, a "
				    "bool, an integer within int64, a float, "
				    "a string or binary",
				    where, i);
				return (-1);
			}
		}
	} else if (params->type == MSGPACK_OBJECT_MAP) {
		if (params->via.map.size > SQLH_PARAMS_MAX) {
			snprintf(err, errlen, "%sparams: more than %d values",
			    where, SQLH_PARAMS_MAX);
			return (-1);
		}
		for (uint32_t i = 0; i < params->via.map.size; i++) {
			const msgpack_object_kv *kv = &params->via.map.ptr[i];

			if (kv->key.type != MSGPACK_OBJECT_STR ||
			    kv->key.via.str.size == 0 ||
			    kv->key.via.str.size > SQLH_PARAM_NAME_MAX) {
				snprintf(err, errlen,
				    "%sparams: keys must be names of 1 to %d "
				    "bytes",
				    where, SQLH_PARAM_NAME_MAX);
				return (-1);
			}
			if (!sqlh_scalar_ok(&kv->val)) {
				snprintf(err, errlen,
				    "%sparams[\"%.*s\"]: a value must be nil, "
				    "a bool, an integer within int64, a "
				    "float, a string or binary",
				    where, (int) kv->key.via.str.size,
				    kv->key.via.str.ptr);
				return (-1);
			}
		}
	} else {
		snprintf(err, errlen,
		    "%sparams must be an array (positional) or a map (named)",
		    where);
		return (-1);
	}
	s->params = params;
	return (0);
}

// sqlh_find_db returns the database named name, or NULL.
static sqlh_db *
sqlh_find_db(const char *name, size_t len)
{
	for (size_t i = 0; i < sqlh.n; i++) {
		if (strlen(sqlh.dbs[i].name) == len &&
		    memcmp(sqlh.dbs[i].name, name, len) == 0) {
			return (&sqlh.dbs[i]);
		}
	}
	return (NULL);
}

// sqlh_parse builds j's statements from its payload and finds its
// database. On error writes a message to err and returns -1; all such
// errors are final.
static int
sqlh_parse(sqlh_job *j, sqlh_db **dp, char *err, size_t errlen)
{
	const msgpack_object *root = &j->up.data;
	const msgpack_object *db, *sql, *params, *list;

	if (root->type != MSGPACK_OBJECT_MAP) {
		snprintf(err, errlen,
		    "payload must be a map: {db, sql, params} or "
		    "{db, statements: [{sql, params}, ...]}");
		return (-1);
	}
	db = payload_get(root, "db");
	if (db == NULL || db->type != MSGPACK_OBJECT_STR ||
	    db->via.str.size == 0) {
		snprintf(err, errlen,
		    "db must be the name of a database configured with "
		    "--sqlite-db NAME=PATH");
		return (-1);
	}
	if ((*dp = sqlh_find_db(db->via.str.ptr, db->via.str.size)) == NULL) {
		const char *p     = db->via.str.ptr;
		size_t      n     = db->via.str.size;
		int         shown = n > 200 ? 200 : (int) n;

		// Only names are accepted, so say so when it looks like a
		// path rather than listing names.
		if (memchr(p, '/', n) != NULL || memchr(p, '\\', n) != NULL ||
		    p[0] == '.' || p[0] == '~') {
			snprintf(err, errlen,
			    "db \"%.*s\" looks like a path; db must name a "
			    "database configured with --sqlite-db NAME=PATH",
			    shown, p);
		} else if (sqlh.n == 0) {
			snprintf(err, errlen,
			    "unknown database \"%.*s\": no sqlite databases "
			    "are configured (--sqlite-db NAME=PATH)",
			    shown, p);
		} else {
			size_t off        = 0;
			char   names[256] = "";

			for (size_t i = 0; i < sqlh.n && off < sizeof(names);
			     i++) {
				int w = snprintf(names + off,
				    sizeof(names) - off, "%s%s", i ? ", " : "",
				    sqlh.dbs[i].name);
				off += w > 0 ? (size_t) w : 0;
			}
			snprintf(err, errlen,
			    "unknown database \"%.*s\" (configured: %s)",
			    shown, p, names);
		}
		return (-1);
	}
	sql    = payload_get(root, "sql");
	params = payload_get(root, "params");
	list   = payload_get(root, "statements");
	if ((sql == NULL) == (list == NULL)) {
		snprintf(err, errlen,
		    "give either sql (with params) or statements, not %s",
		    sql == NULL ? "neither" : "both");
		return (-1);
	}
	if (sql != NULL) {
		if ((j->stmts = calloc(1, sizeof(*j->stmts))) == NULL) {
			snprintf(err, errlen, "out of memory");
			return (-1);
		}
		j->nstmts = 1;
		return (sqlh_parse_stmt(
		    &j->stmts[0], sql, params, "", err, errlen));
	}
	if (params != NULL) {
		snprintf(
		    err, errlen, "params belongs inside each of statements");
		return (-1);
	}
	if (list->type != MSGPACK_OBJECT_ARRAY || list->via.array.size == 0 ||
	    list->via.array.size > SQLH_STMTS_MAX) {
		snprintf(err, errlen,
		    "statements must be an array of 1 to %d maps {sql, "
		    "params}",
		    SQLH_STMTS_MAX);
		return (-1);
	}
	j->nstmts = list->via.array.size;
	if ((j->stmts = calloc(j->nstmts, sizeof(*j->stmts))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (-1);
	}
	for (size_t i = 0; i < j->nstmts; i++) {
		const msgpack_object *m = &list->via.array.ptr[i];
		char                  where[48];

		snprintf(where, sizeof(where), "statements[%zu]: ", i);
		if (m->type != MSGPACK_OBJECT_MAP) {
			snprintf(err, errlen, "%smust be a map {sql, params}",
			    where);
			return (-1);
		}
		if (sqlh_parse_stmt(&j->stmts[i], payload_get(m, "sql"),
		        payload_get(m, "params"), where, err, errlen) != 0) {
			return (-1);
		}
	}
	return (0);
}

// sqlh_run is the handler's run function: it queues the attempt on its
// database's writer. Loop thread.
static int
sqlh_run(tb_run *r, void *hdata)
{
	const void *payload;
	size_t      len = 0;
	size_t      off = 0;
	sqlh_job   *j;
	sqlh_db    *d = NULL;
	char        err[512];

	(void) hdata;
	if (sqlh.stopped) {
		tb_run_set_error(r, SQLH_SHUTTING_DOWN);
		return (TB_ESHUTTINGDOWN);
	}
	payload = tb_run_payload(r, &len);
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		tb_run_set_error(r, "out of memory");
		return (TB_ENOMEM);
	}
	msgpack_unpacked_init(&j->up);
	j->run     = r;
	j->task_id = tb_run_task_id(r);
	j->hash    = sqlh_hash(payload, len);
	// The run's payload stays valid until the attempt ends, but a copy
	// keeps the job independent of how the loop stores it.
	if (len > 0 && (j->payload = malloc(len)) == NULL) {
		sqlh_job_free(j);
		tb_run_set_error(r, "out of memory");
		return (TB_ENOMEM);
	}
	if (len > 0) {
		memcpy(j->payload, payload, len);
	}
	if (len == 0 ||
	    msgpack_unpack_next(&j->up, j->payload, len, &off) !=
	        MSGPACK_UNPACK_SUCCESS) {
		snprintf(err, sizeof(err),
		    "payload must be a map: {db, sql, params} or "
		    "{db, statements: [{sql, params}, ...]}");
		goto bad;
	}
	if (sqlh_parse(j, &d, err, sizeof(err)) != 0) {
		goto bad;
	}
	pthread_mutex_lock(&d->mtx);
	if (d->stopping) {
		pthread_mutex_unlock(&d->mtx);
		sqlh_job_free(j);
		tb_run_set_error(r, SQLH_SHUTTING_DOWN);
		return (TB_ESHUTTINGDOWN);
	}
	*d->q_tail = j;
	d->q_tail  = &j->next;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mtx);
	return (TB_OK); // the writer owns j and finishes the attempt
bad:
	// The loop logs the attempt's failure; this line is for debugging.
	log_debug("sqlite: task %" PRIu64 ": %s", j->task_id, err);
	sqlh_job_free(j);
	tb_run_set_error(r, "%s", err);
	tb_run_set_no_retry(r); // the same payload would fail the same way
	return (TB_EINVAL);
}

// Writer thread.

// sqlh_step1 steps a statement that returns no rows and resets it.
static int
sqlh_step1(sqlite3_stmt *st)
{
	int src = sqlite3_step(st);

	sqlite3_reset(st);
	return (src == SQLITE_ROW ? SQLITE_DONE : src);
}

// sqlh_pragma_readonly is true for PRAGMAs whose argument names what to
// read, or that write only inside the transaction.
static bool
sqlh_pragma_readonly(const char *name)
{
	static const char *const ok[] = { "table_info", "table_xinfo",
		"table_list", "index_list", "index_info", "index_xinfo",
		"foreign_key_list", "foreign_key_check", "integrity_check",
		"quick_check", "user_version", "application_id" };

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (strcasecmp(name, ok[i]) == 0) {
			return (true);
		}
	}
	return (false);
}

static bool
sqlh_protected(const char *table)
{
	return (table != NULL && strncasecmp(table, "_taskbroker_", 12) == 0);
}

// sqlh_authorize refuses, in a task's SQL, what would end or escape the
// batch's transaction, reach another file, or touch the applied records.
static int
sqlh_authorize(void *arg, int action, const char *a1, const char *a2,
    const char *dbname, const char *trigger)
{
	sqlh_db *d = arg;

	(void) dbname;
	(void) trigger;
	if (!d->task_sql) {
		return (SQLITE_OK);
	}
	switch (action) {
	case SQLITE_TRANSACTION:
	case SQLITE_SAVEPOINT:
		d->deny = "transaction control (BEGIN, COMMIT, ROLLBACK, "
		          "SAVEPOINT, RELEASE) is not allowed: each task runs "
		          "in a transaction of its own; use statements for "
		          "several statements that must commit together";
		return (SQLITE_DENY);
	case SQLITE_ATTACH:
	case SQLITE_DETACH:
		d->deny = "ATTACH and DETACH are not allowed";
		return (SQLITE_DENY);
	case SQLITE_PRAGMA:
		if (a2 == NULL || sqlh_pragma_readonly(a1)) {
			return (SQLITE_OK);
		}
		d->deny = "PRAGMAs that change settings are not allowed";
		return (SQLITE_DENY);
	case SQLITE_INSERT:
	case SQLITE_UPDATE:
	case SQLITE_DELETE:
	case SQLITE_DROP_TABLE:
		if (sqlh_protected(a1)) {
			d->deny = "the _taskbroker_ tables are the broker's";
			return (SQLITE_DENY);
		}
		return (SQLITE_OK);
	case SQLITE_ALTER_TABLE:
	case SQLITE_CREATE_TRIGGER:
	case SQLITE_CREATE_TEMP_TRIGGER:
		if (sqlh_protected(a2)) {
			d->deny = "the _taskbroker_ tables are the broker's";
			return (SQLITE_DENY);
		}
		return (SQLITE_OK);
	default:
		return (SQLITE_OK);
	}
}

// sqlh_progress interrupts a read-only statement of a cancelled attempt.
static int
sqlh_progress(void *arg)
{
	sqlh_db *d = arg;

	return (d->cur_run != NULL && d->cur_readonly &&
	    tb_run_cancelled(d->cur_run));
}

// sqlh_bind binds s's params to st. On error writes a message to err and
// returns -1.
static int
sqlh_bind(sqlite3_stmt *st, const sqlh_stmt *s, char *err, size_t errlen)
{
	int                   count = sqlite3_bind_parameter_count(st);
	const msgpack_object *p     = s->params;
	bool                 *bound = NULL;
	int                   rv    = -1;

	if (p == NULL) {
		if (count > 0) {
			snprintf(err, errlen,
			    "the statement has %d parameters but no params "
			    "were given",
			    count);
			return (-1);
		}
		return (0);
	}
	if (p->type == MSGPACK_OBJECT_ARRAY) {
		if ((int) p->via.array.size != count) {
			snprintf(err, errlen,
			    "the statement has %d parameters, params has %u "
			    "values",
			    count, p->via.array.size);
			return (-1);
		}
		for (int i = 0; i < count; i++) {
			const msgpack_object *v = &p->via.array.ptr[i];
			int                   src;

			switch (v->type) {
			case MSGPACK_OBJECT_NIL:
				src = sqlite3_bind_null(st, i + 1);
				break;
			case MSGPACK_OBJECT_BOOLEAN:
				src = sqlite3_bind_int(
				    st, i + 1, v->via.boolean);
				break;
			case MSGPACK_OBJECT_POSITIVE_INTEGER:
			case MSGPACK_OBJECT_NEGATIVE_INTEGER:
				src =
				    sqlite3_bind_int64(st, i + 1, v->via.i64);
				break;
			case MSGPACK_OBJECT_FLOAT32:
			case MSGPACK_OBJECT_FLOAT64:
				src =
				    sqlite3_bind_double(st, i + 1, v->via.f64);
				break;
			case MSGPACK_OBJECT_STR:
				// A NULL pointer would bind NULL, not "".
				src = sqlite3_bind_text(st, i + 1,
				    v->via.str.size ? v->via.str.ptr : "",
				    (int) v->via.str.size, SQLITE_STATIC);
				break;
			case MSGPACK_OBJECT_BIN:
				src = v->via.bin.size == 0
				    ? sqlite3_bind_zeroblob(st, i + 1, 0)
				    : sqlite3_bind_blob(st, i + 1,
				          v->via.bin.ptr,
				          (int) v->via.bin.size,
				          SQLITE_STATIC);
				break;
			default:
				src = SQLITE_MISMATCH; // checked at parse
				break;
			}
			if (src != SQLITE_OK) {
				snprintf(err, errlen, "params[%d]: %s", i,
				    sqlite3_errstr(src));
				return (-1);
			}
		}
		return (0);
	}

	// Named: the key as given if it starts with :, @ or $, else the
	// first of :key, @key, $key the statement has.
	if (count > 0 && (bound = calloc((size_t) count + 1, 1)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (-1);
	}
	for (uint32_t k = 0; k < p->via.map.size; k++) {
		const msgpack_object_kv *kv   = &p->via.map.ptr[k];
		const char              *key  = kv->key.via.str.ptr;
		int                      klen = (int) kv->key.via.str.size;
		char                     name[SQLH_PARAM_NAME_MAX + 2];
		int                      idx = 0;
		int                      src;

		if (key[0] == ':' || key[0] == '@' || key[0] == '$') {
			snprintf(name, sizeof(name), "%.*s", klen, key);
			idx = sqlite3_bind_parameter_index(st, name);
		} else {
			for (const char *pre = ":@$"; *pre && idx == 0;
			     pre++) {
				snprintf(name, sizeof(name), "%c%.*s", *pre,
				    klen, key);
				idx = sqlite3_bind_parameter_index(st, name);
			}
		}
		if (idx == 0) {
			snprintf(err, errlen,
			    "params[\"%.*s\"]: the statement has no such "
			    "parameter",
			    klen, key);
			goto out;
		}
		bound[idx]              = true;
		const msgpack_object *v = &kv->val;
		switch (v->type) {
		case MSGPACK_OBJECT_NIL:
			src = sqlite3_bind_null(st, idx);
			break;
		case MSGPACK_OBJECT_BOOLEAN:
			src = sqlite3_bind_int(st, idx, v->via.boolean);
			break;
		case MSGPACK_OBJECT_POSITIVE_INTEGER:
		case MSGPACK_OBJECT_NEGATIVE_INTEGER:
			src = sqlite3_bind_int64(st, idx, v->via.i64);
			break;
		case MSGPACK_OBJECT_FLOAT32:
		case MSGPACK_OBJECT_FLOAT64:
			src = sqlite3_bind_double(st, idx, v->via.f64);
			break;
		case MSGPACK_OBJECT_STR:
			src = sqlite3_bind_text(st, idx,
			    v->via.str.size ? v->via.str.ptr : "",
			    (int) v->via.str.size, SQLITE_STATIC);
			break;
		case MSGPACK_OBJECT_BIN:
			src = v->via.bin.size == 0
			    ? sqlite3_bind_zeroblob(st, idx, 0)
			    : sqlite3_bind_blob(st, idx, v->via.bin.ptr,
			          (int) v->via.bin.size, SQLITE_STATIC);
			break;
		default:
			src = SQLITE_MISMATCH; // checked at parse
			break;
		}
		if (src != SQLITE_OK) {
			snprintf(err, errlen, "params[\"%.*s\"]: %s", klen,
			    key, sqlite3_errstr(src));
			goto out;
		}
	}
	for (int i = 1; i <= count; i++) {
		if (!bound[i]) {
			const char *n = sqlite3_bind_parameter_name(st, i);

			snprintf(err, errlen,
			    "parameter %s%s has no value in params",
			    n ? n : "?", n ? "" : " (positional)");
			goto out;
		}
	}
	rv = 0;
out:
	free(bound);
	return (rv);
}

// sqlh_pack_column packs column i of the current row.
static void
sqlh_pack_column(msgpack_packer *pk, sqlite3_stmt *st, int i)
{
	switch (sqlite3_column_type(st, i)) {
	case SQLITE_INTEGER:
		msgpack_pack_int64(pk, sqlite3_column_int64(st, i));
		break;
	case SQLITE_FLOAT:
		msgpack_pack_double(pk, sqlite3_column_double(st, i));
		break;
	case SQLITE_TEXT: {
		const unsigned char *t = sqlite3_column_text(st, i);
		size_t               n = (size_t) sqlite3_column_bytes(st, i);

		msgpack_pack_str(pk, n);
		msgpack_pack_str_body(pk, t ? (const char *) t : "", n);
		break;
	}
	case SQLITE_BLOB: {
		const void *b = sqlite3_column_blob(st, i);
		size_t      n = (size_t) sqlite3_column_bytes(st, i);

		msgpack_pack_bin(pk, n);
		msgpack_pack_bin_body(pk, b ? b : "", n);
		break;
	}
	default:
		msgpack_pack_nil(pk);
		break;
	}
}

static void
sqlh_pack_key(msgpack_packer *pk, const char *k)
{
	msgpack_pack_str(pk, strlen(k));
	msgpack_pack_str_body(pk, k, strlen(k));
}

// sqlh_pack_result packs the task's result map into out: changes,
// last_insert_rowid and, if st (the last statement) has columns, columns,
// rows (rows_n rows already packed in rows) and truncated.
static void
sqlh_pack_result(msgpack_sbuffer *out, sqlite3_stmt *st, int64_t changes,
    int64_t rowid, const msgpack_sbuffer *rows, uint32_t rows_n,
    bool truncated)
{
	msgpack_packer pk;
	int            ncol = sqlite3_column_count(st);

	msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, ncol > 0 ? 5 : 2);
	sqlh_pack_key(&pk, "changes");
	msgpack_pack_int64(&pk, changes);
	sqlh_pack_key(&pk, "last_insert_rowid");
	msgpack_pack_int64(&pk, rowid);
	if (ncol == 0) {
		return;
	}
	sqlh_pack_key(&pk, "columns");
	msgpack_pack_array(&pk, (size_t) ncol);
	for (int i = 0; i < ncol; i++) {
		const char *n = sqlite3_column_name(st, i);

		sqlh_pack_key(&pk, n ? n : "");
	}
	sqlh_pack_key(&pk, "rows");
	msgpack_pack_array(&pk, rows_n);
	if (rows != NULL && rows->size > 0) {
		msgpack_sbuffer_write(out, rows->data, rows->size);
	}
	sqlh_pack_key(&pk, "truncated");
	if (truncated) {
		msgpack_pack_true(&pk);
	} else {
		msgpack_pack_false(&pk);
	}
}

// sqlh_stmt_run prepares, binds and steps statement i of j. For the last
// statement it also builds j's result. Returns 0, or -1 after sqlh_fail.
static int
sqlh_stmt_run(sqlh_db *d, sqlh_job *j, size_t i, int64_t changes0)
{
	const sqlh_stmt *s         = &j->stmts[i];
	bool             last      = i + 1 == j->nstmts;
	sqlite3_stmt    *st        = NULL;
	const char      *tail      = NULL;
	char             where[48] = "";
	char             err[512];
	msgpack_sbuffer  rows;
	uint32_t         rows_n    = 0;
	bool             truncated = false;
	int              src;
	int              rv = -1;

	msgpack_sbuffer_init(&rows);
	if (j->nstmts > 1) {
		snprintf(where, sizeof(where), "statements[%zu]: ", i);
	}
	d->task_sql = true;
	d->deny     = NULL;
	src = sqlite3_prepare_v2(d->db, s->sql, (int) s->sql_len, &st, &tail);
	if (src != SQLITE_OK) {
		// Retrying cannot make the SQL valid.
		sqlh_fail(j, true, "%s%s", where,
		    d->deny ? d->deny : sqlite3_errmsg(d->db));
		goto out;
	}
	if (st == NULL) {
		sqlh_fail(j, true, "%ssql holds no statement", where);
		goto out;
	}
	if (tail != NULL && tail < s->sql + s->sql_len) {
		sqlite3_stmt *more = NULL;

		// Only comments and white space may follow.
		src = sqlite3_prepare_v2(d->db, tail,
		    (int) (s->sql + s->sql_len - tail), &more, NULL);
		sqlite3_finalize(more);
		if (src != SQLITE_OK || more != NULL) {
			sqlh_fail(j, true,
			    "%ssql holds more than one statement; give each "
			    "its own entry in statements",
			    where);
			goto out;
		}
	}
	if (sqlh_bind(st, s, err, sizeof(err)) != 0) {
		sqlh_fail(j, true, "%s%s", where, err);
		goto out;
	}
	d->cur_run      = j->run;
	d->cur_readonly = sqlite3_stmt_readonly(st) != 0;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		msgpack_packer pk;
		size_t         mark = rows.size;
		int            ncol;

		if (!last || truncated) {
			continue;
		}
		if (rows_n >= SQLH_ROWS_MAX) {
			truncated = true;
			continue;
		}
		ncol = sqlite3_column_count(st);
		msgpack_packer_init(&pk, &rows, msgpack_sbuffer_write);
		msgpack_pack_array(&pk, (size_t) ncol);
		for (int c = 0; c < ncol; c++) {
			sqlh_pack_column(&pk, st, c);
		}
		if (rows.size > SQLH_ROWS_BYTES) {
			rows.size = mark; // drop the row that did not fit
			truncated = true;
			continue;
		}
		rows_n++;
	}
	d->cur_run = NULL;
	if (src != SQLITE_DONE) {
		if ((src & 0xff) == SQLITE_INTERRUPT &&
		    tb_run_cancelled(j->run)) {
			sqlh_fail(j, false, "cancelled");
		} else {
			sqlh_fail(
			    j, false, "%s%s", where, sqlite3_errmsg(d->db));
		}
		goto out;
	}
	if (last) {
		msgpack_sbuffer out;
		int64_t changes = sqlite3_total_changes64(d->db) - changes0;
		int64_t rowid   = sqlite3_last_insert_rowid(d->db);

		msgpack_sbuffer_init(&out);
		sqlh_pack_result(
		    &out, st, changes, rowid, &rows, rows_n, truncated);
		if (out.size > HANDLER_RESULT_MAX) {
			// Long column names: keep the counts only.
			msgpack_sbuffer_clear(&out);
			sqlh_pack_result(
			    &out, st, changes, rowid, NULL, 0, true);
		}
		if (out.size > HANDLER_RESULT_MAX) {
			msgpack_sbuffer_destroy(&out);
			sqlh_fail(j, true,
			    "%sthe result does not fit in %u bytes", where,
			    HANDLER_RESULT_MAX);
			goto out;
		}
		free(j->result);
		j->result_len = out.size;
		j->result     = (uint8_t *) msgpack_sbuffer_release(&out);
		msgpack_sbuffer_destroy(&out);
	}
	rv = 0;
out:
	d->task_sql = false;
	d->cur_run  = NULL;
	sqlite3_finalize(st);
	msgpack_sbuffer_destroy(&rows);
	return (rv);
}

enum {
	SQLH_KEPT = 0, // the transaction is intact (j succeeded or failed)
	SQLH_LOST = 1, // j's failure ended the whole transaction
};

// sqlh_lost records whether a lost transaction can start over without the
// failing task (a constraint, e.g. a trigger's RAISE(ROLLBACK)) or must
// fail the rest of the batch too (disk full, I/O error, out of memory).
static int
sqlh_lost(sqlh_db *d)
{
	int code = sqlite3_extended_errcode(d->db) & 0xff;

	d->lost_restart = code == SQLITE_CONSTRAINT;
	return (SQLH_LOST);
}

// sqlh_apply runs job j inside the open transaction.
static int
sqlh_apply(sqlh_db *d, sqlh_job *j)
{
	sqlite3_stmt *st = d->st_applied_get;
	int64_t       changes0;
	int           src;

	sqlite3_bind_int64(st, 1, (int64_t) j->task_id);
	src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		// An earlier attempt committed: report what it reported.
		uint64_t    hash = (uint64_t) sqlite3_column_int64(st, 1);
		const void *res  = sqlite3_column_blob(st, 0);
		int         n    = sqlite3_column_bytes(st, 0);

		if (hash != j->hash) {
			sqlh_fail(j, true,
			    "task %" PRIu64 " was already applied to database "
			    "\"%s\" with another payload: task ids were "
			    "reused (was the broker's data directory reset?); "
			    "not running it",
			    j->task_id, d->name);
		} else if (n > 0 && (j->result = malloc((size_t) n)) == NULL) {
			sqlh_fail(j, false, "out of memory");
		} else {
			if (n > 0) {
				memcpy(j->result, res, (size_t) n);
			}
			j->result_len = (size_t) (n > 0 ? n : 0);
			j->state      = SQLH_OK;
			log_info("sqlite: task %" PRIu64 ": already applied "
			         "to \"%s\" by an earlier attempt",
			    j->task_id, d->name);
		}
		sqlite3_reset(st);
		return (SQLH_KEPT);
	}
	sqlite3_reset(st);
	if (src != SQLITE_DONE) {
		sqlh_fail(j, false, "reading the applied record: %s",
		    sqlite3_errmsg(d->db));
		return (
		    sqlite3_get_autocommit(d->db) ? sqlh_lost(d) : SQLH_KEPT);
	}
	if ((src = sqlh_step1(d->st_savepoint)) != SQLITE_DONE) {
		sqlh_fail(j, false, "savepoint: %s", sqlite3_errmsg(d->db));
		return (
		    sqlite3_get_autocommit(d->db) ? sqlh_lost(d) : SQLH_KEPT);
	}
	// last_insert_rowid must not leak from the previous task.
	sqlite3_set_last_insert_rowid(d->db, 0);
	changes0 = sqlite3_total_changes64(d->db);
	for (size_t i = 0; i < j->nstmts; i++) {
		if (sqlh_stmt_run(d, j, i, changes0) != 0) {
			goto undo;
		}
	}
	st = d->st_applied_put;
	sqlite3_bind_int64(st, 1, (int64_t) j->task_id);
	sqlite3_bind_int64(st, 2, (int64_t) time(NULL));
	sqlite3_bind_int64(st, 3, (int64_t) j->hash);
	sqlite3_bind_blob(
	    st, 4, j->result, (int) j->result_len, SQLITE_STATIC);
	src = sqlh_step1(st);
	sqlite3_clear_bindings(st);
	if (src != SQLITE_DONE) {
		sqlh_fail(j, false, "recording the task as applied: %s",
		    sqlite3_errmsg(d->db));
		goto undo;
	}
	if ((src = sqlh_step1(d->st_release)) != SQLITE_DONE) {
		sqlh_fail(j, false, "release: %s", sqlite3_errmsg(d->db));
		goto undo;
	}
	j->state = SQLH_OK;
	return (SQLH_KEPT);
undo:
	if (sqlite3_get_autocommit(d->db)) {
		return (sqlh_lost(d));
	}
	if (sqlh_step1(d->st_rollback_to) != SQLITE_DONE ||
	    sqlh_step1(d->st_release) != SQLITE_DONE) {
		log_err("sqlite: %s: rollback to savepoint: %s", d->name,
		    sqlite3_errmsg(d->db));
		d->lost_restart = false;
		return (SQLH_LOST);
	}
	return (SQLH_KEPT);
}

// sqlh_fail_pending fails every job of the batch that has no outcome yet.
static void
sqlh_fail_pending(sqlh_job **jobs, size_t n, const char *what, const char *msg)
{
	for (size_t i = 0; i < n; i++) {
		if (jobs[i]->state == SQLH_PENDING) {
			sqlh_fail(jobs[i], false, "%s: %s", what, msg);
		}
	}
}

// sqlh_batch runs jobs[0..n) in one transaction and sets each outcome.
static void
sqlh_batch(sqlh_db *d, sqlh_job **jobs, size_t n)
{
	size_t npending;
	int    src;

	for (size_t i = 0; i < n; i++) {
		if (tb_run_cancelled(jobs[i]->run)) {
			sqlh_fail(jobs[i], false, "cancelled");
		}
	}
again:
	npending = 0;
	for (size_t i = 0; i < n; i++) {
		npending += jobs[i]->state == SQLH_PENDING;
	}
	if (npending == 0) {
		return;
	}
	if ((src = sqlh_step1(d->st_begin)) != SQLITE_DONE) {
		log_err(
		    "sqlite: %s: begin: %s", d->name, sqlite3_errmsg(d->db));
		sqlh_fail_pending(jobs, n, "begin", sqlite3_errmsg(d->db));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		sqlh_job *j = jobs[i];

		if (j->state != SQLH_PENDING) {
			continue;
		}
		if (sqlh_apply(d, j) == SQLH_KEPT) {
			continue;
		}
		// j's error ended the transaction; the tasks before it in this
		// batch lost their work too.
		log_warn("sqlite: %s: task %" PRIu64 " rolled back the "
		         "batch's transaction: %s",
		    d->name, j->task_id, j->error ? j->error : "?");
		if (!sqlite3_get_autocommit(d->db)) {
			sqlh_step1(d->st_rollback);
		}
		for (size_t k = 0; k < i; k++) {
			if (jobs[k]->state == SQLH_OK) {
				sqlh_reset(jobs[k]);
			}
		}
		if (j->state != SQLH_FAILED) {
			sqlh_fail(j, false, "the transaction was rolled back");
		}
		if (d->lost_restart) {
			goto again; // without j: each round ends one job
		}
		sqlh_fail_pending(jobs, n, "the transaction was rolled back",
		    j->error ? j->error : "?");
		return;
	}
	if ((src = sqlh_step1(d->st_commit)) != SQLITE_DONE) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", sqlite3_errmsg(d->db));
		log_err("sqlite: %s: commit of %zu tasks failed: %s", d->name,
		    npending, msg);
		if (!sqlite3_get_autocommit(d->db)) {
			sqlh_step1(d->st_rollback);
		}
		for (size_t i = 0; i < n; i++) {
			if (jobs[i]->state == SQLH_OK) {
				sqlh_fail(jobs[i], false,
				    "commit failed, nothing was applied: %s",
				    msg);
			}
		}
		return;
	}
	log_debug(
	    "sqlite: %s: committed a batch of %zu tasks", d->name, npending);
	if (tb_fault(TB_FAULT_SQLITE_EXIT_AFTER_COMMIT)) {
		// The broker dies between this commit and its own record of
		// the outcome: the case the applied records are for.
		log_warn(
		    "sqlite: %s: exiting after a commit (fault injection)",
		    d->name);
		_exit(137);
	}
}

// sqlh_drain ends jobs the writer will not run because the broker stops:
// each fails with "broker shutting down", unless an earlier attempt
// applied it (then it succeeds with the stored result).
static void
sqlh_drain(sqlh_db *d, sqlh_job *list)
{
	while (list != NULL) {
		sqlh_job     *j  = list;
		sqlite3_stmt *st = d->st_applied_get;

		list = j->next;
		sqlite3_bind_int64(st, 1, (int64_t) j->task_id);
		if (sqlite3_step(st) == SQLITE_ROW &&
		    (uint64_t) sqlite3_column_int64(st, 1) == j->hash) {
			int n = sqlite3_column_bytes(st, 0);

			if (n > 0 &&
			    (j->result = malloc((size_t) n)) != NULL) {
				memcpy(j->result, sqlite3_column_blob(st, 0),
				    (size_t) n);
				j->result_len = (size_t) n;
				j->state      = SQLH_OK;
			}
		}
		sqlite3_reset(st);
		if (j->state != SQLH_OK) {
			sqlh_fail(j, false, SQLH_SHUTTING_DOWN);
		}
		sqlh_finish(j);
	}
}

static bool
sqlh_is_stopping(sqlh_db *d)
{
	bool s;

	pthread_mutex_lock(&d->mtx);
	s = d->stopping;
	pthread_mutex_unlock(&d->mtx);
	return (s);
}

static void *
sqlh_writer(void *arg)
{
	sqlh_db *d = arg;

	for (;;) {
		sqlh_job *list;
		bool      stopping;

		pthread_mutex_lock(&d->mtx);
		while (d->q_head == NULL && !d->stopping) {
			pthread_cond_wait(&d->cv, &d->mtx);
		}
		list      = d->q_head;
		d->q_head = NULL;
		d->q_tail = &d->q_head;
		stopping  = d->stopping;
		pthread_mutex_unlock(&d->mtx);
		if (list == NULL) {
			break; // stopping, and sqlh_run queues nothing more
		}
		if (stopping) {
			sqlh_drain(d, list);
			continue;
		}
		while (list != NULL) {
			size_t n = 0;

			while (list != NULL && n < SQLH_BATCH_MAX) {
				d->batch[n++] = list;
				list          = list->next;
			}
			sqlh_batch(d, d->batch, n);
			for (size_t i = 0; i < n; i++) {
				sqlh_finish(d->batch[i]); // frees the job
			}
			if (list != NULL && sqlh_is_stopping(d)) {
				sqlh_drain(d, list);
				list = NULL;
			}
		}
	}
	return (NULL);
}

// Open and close (loop thread).

// sqlh_exec runs sql (no rows expected) at open.
static int
sqlh_exec(sqlh_db *d, const char *sql)
{
	char *msg = NULL;
	int   src;

	if ((src = sqlite3_exec(d->db, sql, NULL, NULL, &msg)) != SQLITE_OK) {
		log_err("sqlite: database \"%s\" (%s): %s: %s", d->name,
		    d->path, sql, msg ? msg : sqlite3_errstr(src));
		sqlite3_free(msg);
		return (sqlh_rv(src));
	}
	return (TB_OK);
}

static int
sqlh_prepare(sqlh_db *d, sqlite3_stmt **stp, const char *sql)
{
	int src = sqlite3_prepare_v3(
	    d->db, sql, -1, SQLITE_PREPARE_PERSISTENT, stp, NULL);

	if (src != SQLITE_OK) {
		log_err("sqlite: database \"%s\" (%s): prepare \"%s\": %s",
		    d->name, d->path, sql, sqlite3_errmsg(d->db));
		return (sqlh_rv(src));
	}
	return (TB_OK);
}

// sqlh_db_open opens d->path and readies it for the writer.
static int
sqlh_db_open(sqlh_db *d)
{
	sqlite3_stmt *st = NULL;
	const char   *mode;
	int           src;
	int           rv;

	src = sqlite3_open_v2(d->path, &d->db,
	    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
	    NULL);
	if (src != SQLITE_OK) {
		log_err("sqlite: cannot open database \"%s\" at %s: %s",
		    d->name, d->path,
		    d->db ? sqlite3_errmsg(d->db) : sqlite3_errstr(src));
		return (TB_ESTORE);
	}
	sqlite3_extended_result_codes(d->db, 1);
	sqlite3_busy_timeout(d->db, SQLH_BUSY_MS);
	sqlite3_db_config(d->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	sqlite3_db_config(d->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
	sqlite3_limit(d->db, SQLITE_LIMIT_ATTACHED, 0);

	// The first statement reads the header: a file that is not a
	// database fails here.
	src = sqlite3_prepare_v2(
	    d->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
	if (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
		mode = (const char *) sqlite3_column_text(st, 0);
		if (mode == NULL || strcmp(mode, "wal") != 0) {
			log_err("sqlite: database \"%s\" (%s): journal_mode "
			        "is \"%s\", WAL is required",
			    d->name, d->path, mode ? mode : "?");
			sqlite3_finalize(st);
			return (TB_ESTORE);
		}
		src = SQLITE_OK;
	}
	if (src != SQLITE_OK) {
		log_err("sqlite: cannot use database \"%s\" at %s: %s",
		    d->name, d->path, sqlite3_errmsg(d->db));
		sqlite3_finalize(st);
		return (TB_ESTORE);
	}
	sqlite3_finalize(st);
	if ((rv = sqlh_exec(d, "PRAGMA synchronous = FULL")) != TB_OK ||
	    (rv = sqlh_exec(d,
	         "CREATE TABLE IF NOT EXISTS _taskbroker_applied("
	         "  task_id INTEGER PRIMARY KEY,"
	         "  applied_at INTEGER NOT NULL,"   // Unix seconds
	         "  payload_hash INTEGER NOT NULL," // FNV-1a 64 of the payload
	         "  result BLOB)")) != TB_OK) {
		return (rv);
	}
	if ((rv = sqlh_prepare(d, &d->st_begin, "BEGIN IMMEDIATE")) != TB_OK ||
	    (rv = sqlh_prepare(d, &d->st_commit, "COMMIT")) != TB_OK ||
	    (rv = sqlh_prepare(d, &d->st_rollback, "ROLLBACK")) != TB_OK ||
	    (rv = sqlh_prepare(d, &d->st_savepoint, "SAVEPOINT tb_task")) !=
	        TB_OK ||
	    (rv = sqlh_prepare(d, &d->st_release, "RELEASE tb_task")) !=
	        TB_OK ||
	    (rv = sqlh_prepare(
	         d, &d->st_rollback_to, "ROLLBACK TO tb_task")) != TB_OK ||
	    (rv = sqlh_prepare(d, &d->st_applied_get,
	         "SELECT result, payload_hash FROM _taskbroker_applied "
	         "WHERE task_id = ?1")) != TB_OK ||
	    (rv = sqlh_prepare(d, &d->st_applied_put,
	         "INSERT INTO _taskbroker_applied(task_id, applied_at, "
	         "payload_hash, result) VALUES(?1, ?2, ?3, ?4)")) != TB_OK) {
		return (rv);
	}
	sqlite3_set_authorizer(d->db, sqlh_authorize, d);
	sqlite3_progress_handler(d->db, SQLH_PROGRESS_OPS, sqlh_progress, d);
	if ((d->batch = calloc(SQLH_BATCH_MAX, sizeof(*d->batch))) == NULL) {
		return (TB_ENOMEM);
	}
	log_info("sqlite: database \"%s\" at %s", d->name, d->path);
	return (TB_OK);
}

// sqlh_db_close closes a database whose writer has stopped (or never
// started); copes with a half-built one.
static void
sqlh_db_close(sqlh_db *d)
{
	sqlite3_stmt **sts[] = { &d->st_begin, &d->st_commit, &d->st_rollback,
		&d->st_savepoint, &d->st_release, &d->st_rollback_to,
		&d->st_applied_get, &d->st_applied_put };

	for (size_t i = 0; i < sizeof(sts) / sizeof(sts[0]); i++) {
		sqlite3_finalize(*sts[i]);
		*sts[i] = NULL;
	}
	if (d->db != NULL && sqlite3_close(d->db) != SQLITE_OK) {
		log_err("sqlite: close \"%s\": %s", d->name,
		    sqlite3_errmsg(d->db));
	}
	d->db = NULL;
	if (d->sync_init) {
		pthread_cond_destroy(&d->cv);
		pthread_mutex_destroy(&d->mtx);
		d->sync_init = false;
	}
	free(d->batch);
	free(d->name);
	free(d->path);
	d->batch = NULL;
	d->name  = NULL;
	d->path  = NULL;
}

// sqlh_teardown stops the writers and closes every database: close all,
// stop all (join), then free (STYLE.md section 3).
static void
sqlh_teardown(void)
{
	for (size_t i = 0; i < sqlh.n; i++) {
		sqlh_db *d = &sqlh.dbs[i];

		if (d->sync_init) {
			pthread_mutex_lock(&d->mtx);
			d->stopping = true;
			pthread_cond_signal(&d->cv);
			pthread_mutex_unlock(&d->mtx);
		}
	}
	for (size_t i = 0; i < sqlh.n; i++) {
		if (sqlh.dbs[i].started) {
			pthread_join(sqlh.dbs[i].thread, NULL);
			sqlh.dbs[i].started = false;
		}
	}
	for (size_t i = 0; i < sqlh.n; i++) {
		sqlh_db_close(&sqlh.dbs[i]);
	}
	free(sqlh.dbs);
	sqlh.dbs = NULL;
	sqlh.n   = 0;
}

// sqlh_name_ok checks a configured database name.
static bool
sqlh_name_ok(const char *s, size_t n)
{
	if (n == 0 || n > SQLH_NAME_MAX) {
		return (false);
	}
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || c == '_' || c == '-')) {
			return (false);
		}
	}
	return (true);
}

int
sqlite_handler_init(const config *cfg)
{
	const config_list *l = &cfg->sqlite_dbs;
	int                rv;

	if (sqlh.inited) {
		return (TB_EINVAL);
	}
	sqlh.stopped = false;
	if (l->n > 0 && (sqlh.dbs = calloc(l->n, sizeof(*sqlh.dbs))) == NULL) {
		return (TB_ENOMEM);
	}
	for (size_t i = 0; i < l->n; i++) {
		const char *e  = l->v[i];
		const char *eq = strchr(e, '=');
		sqlh_db    *d  = &sqlh.dbs[sqlh.n];

		if (eq == NULL || !sqlh_name_ok(e, (size_t) (eq - e)) ||
		    eq[1] == '\0') {
			log_err(
			    "sqlite: bad --sqlite-db \"%s\": want NAME=PATH, "
			    "NAME 1 to %d of A-Z a-z 0-9 _ -",
			    e, SQLH_NAME_MAX);
			rv = TB_EINVAL;
			goto fail;
		}
		if (sqlh_find_db(e, (size_t) (eq - e)) != NULL) {
			log_err(
			    "sqlite: --sqlite-db \"%s\": the name \"%.*s\" "
			    "is given twice",
			    e, (int) (eq - e), e);
			rv = TB_EINVAL;
			goto fail;
		}
		d->name = strndup(e, (size_t) (eq - e));
		d->path = strdup(eq + 1);
		if (d->name == NULL || d->path == NULL) {
			sqlh.n++; // so sqlh_teardown frees them
			rv = TB_ENOMEM;
			goto fail;
		}
		d->q_tail = &d->q_head;
		if (pthread_mutex_init(&d->mtx, NULL) != 0) {
			sqlh.n++;
			rv = TB_ESYSTEM;
			goto fail;
		}
		if (pthread_cond_init(&d->cv, NULL) != 0) {
			pthread_mutex_destroy(&d->mtx);
			sqlh.n++;
			rv = TB_ESYSTEM;
			goto fail;
		}
		d->sync_init = true;
		sqlh.n++;
	}
	for (size_t i = 0; i < sqlh.n; i++) {
		if ((rv = sqlh_db_open(&sqlh.dbs[i])) != TB_OK) {
			goto fail;
		}
	}
	for (size_t i = 0; i < sqlh.n; i++) {
		sqlh_db *d = &sqlh.dbs[i];
		// Signals go to the loop thread, never to a writer.
		int err = util_thread_start(&d->thread, sqlh_writer, d);
		if (err != 0) {
			log_err("sqlite: cannot start the writer thread of "
			        "\"%s\": %s",
			    d->name, strerror(err));
			rv = TB_ESYSTEM;
			goto fail;
		}
		d->started = true; // d->db belongs to the writer from here
	}
	if ((rv = handlers_register(&sqlh_def)) != TB_OK) {
		log_err("sqlite: cannot register the handler: %s",
		    tbp_err_message(rv));
		goto fail;
	}
	if (sqlh.n == 0) {
		log_info("sqlite: no databases configured; sqlite tasks will "
		         "fail (--sqlite-db NAME=PATH)");
	}
	sqlh.inited = true;
	return (TB_OK);
fail:
	sqlh_teardown(); // copes with a half-built set
	return (rv);
}

void
sqlite_handler_stop(void)
{
	if (!sqlh.inited || sqlh.stopped) {
		return;
	}
	sqlh.stopped = true; // sqlh_run refuses new attempts from here
	sqlh_teardown();
}
