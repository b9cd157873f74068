// test_store.c: unit tests for broker/store.c, each in a fresh temp dir.
//
// The test's main thread plays the loop: it submits ops and takes them back
// with store_take_done after notify signals a condition variable. Every
// wait has a deadline; nothing sleeps and hopes.

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "store.h"
#include <taskbroker/defs.h>

#define WAIT_MS 20000 // generous: a loaded CI box fsyncs slowly
#define MAX_DONE 4096

typedef struct fixture {
	char            dir[64];
	char            path[128];
	store          *s;
	pthread_mutex_t mtx; // protects notified
	pthread_cond_t  cv;
	uint64_t        notified;
	store_op       *done[MAX_DONE]; // ops taken back, in order
	size_t          ndone;
} fixture;

// list_by lists through store_list with a filter of queue (NULL: any),
// state (< 0: any), after_id and limit.
static int
list_by(store *s, const char *queue, int state, uint64_t after_id,
    uint32_t limit, store_rec ***recsp, size_t *np)
{
	store_filter f = {
		.queue    = queue,
		.state    = state,
		.after_id = after_id,
		.limit    = limit,
	};

	return (store_list(s, &f, recsp, np));
}

static void
notify_cb(void *arg)
{
	fixture *fx = arg;

	pthread_mutex_lock(&fx->mtx);
	fx->notified++;
	pthread_cond_broadcast(&fx->cv);
	pthread_mutex_unlock(&fx->mtx);
}

// collect moves the store's done list into fx->done.
static void
collect(fixture *fx)
{
	store_op *op = store_take_done(fx->s);

	while (op != NULL) {
		store_op *next = op->next;
		assert_true(fx->ndone < MAX_DONE);
		fx->done[fx->ndone++] = op;
		op                    = next;
	}
}

// wait_done waits until fx->done holds at least n ops, or fails the test.
static void
wait_done(fixture *fx, size_t n)
{
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += WAIT_MS / 1000;
	for (;;) {
		uint64_t seen;

		pthread_mutex_lock(&fx->mtx);
		seen = fx->notified;
		pthread_mutex_unlock(&fx->mtx);
		collect(fx);
		if (fx->ndone >= n) {
			return;
		}
		pthread_mutex_lock(&fx->mtx);
		while (fx->notified == seen) {
			int rv = pthread_cond_timedwait(
			    &fx->cv, &fx->mtx, &deadline);
			if (rv == ETIMEDOUT) {
				pthread_mutex_unlock(&fx->mtx);
				fail_msg("timed out: %zu of %zu ops done",
				    fx->ndone, n);
			}
		}
		pthread_mutex_unlock(&fx->mtx);
	}
}

static store_rec *
rec_new(uint64_t id, uint8_t sid, const char *queue, uint32_t state)
{
	store_rec *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	r->id = id;
	memset(r->sid, 0, sizeof(r->sid));
	r->sid[0]       = sid;
	r->sid[15]      = 0xA5;
	r->queue        = strdup(queue);
	r->handler      = strdup("noop");
	r->priority     = (int32_t) id - 3;
	r->state        = state;
	r->attempts     = 0;
	r->max_attempts = 3;
	r->max_crashes  = 3;
	r->timeout_ms   = 1000;
	r->run_at       = 1700000000000000 + (int64_t) id;
	r->created_at   = 1700000000000001 + (int64_t) id;
	return (r);
}

// op_insert makes an insert op owning n records (passed as varargs).
static store_op *
op_insert(uint32_t n, ...)
{
	store_op *op = calloc(1, sizeof(*op));
	va_list   ap;

	assert_non_null(op);
	op->kind    = STORE_OP_INSERT;
	op->nrecs   = n;
	op->recs    = calloc(n, sizeof(*op->recs));
	op->dup_ids = calloc(n, sizeof(*op->dup_ids));
	op->rv      = -1;
	va_start(ap, n);
	for (uint32_t i = 0; i < n; i++) {
		op->recs[i] = va_arg(ap, store_rec *);
	}
	va_end(ap);
	return (op);
}

static store_op *
op_new(int kind)
{
	store_op *op = calloc(1, sizeof(*op));

	assert_non_null(op);
	op->kind = kind;
	op->rv   = -1;
	return (op);
}

static void
op_free(store_op *op)
{
	if (op == NULL) {
		return;
	}
	for (uint32_t i = 0; i < op->nrecs; i++) {
		store_rec_free(op->recs[i]);
	}
	free(op->recs);
	free(op->dup_ids);
	free(op);
}

// insert_sync inserts one record through a running store and waits.
static void
insert_sync(fixture *fx, store_rec *r)
{
	size_t    n  = fx->ndone;
	store_op *op = op_insert(1, r);

	store_submit(fx->s, op);
	wait_done(fx, n + 1);
	assert_ptr_equal(fx->done[n], op);
	assert_int_equal(op->rv, TB_OK);
	assert_int_equal(op->dup_ids[0], 0);
}

static void
open_started(fixture *fx)
{
	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	assert_int_equal(store_start(fx->s, notify_cb, fx), TB_OK);
}

static void
close_store(fixture *fx)
{
	store_stop(fx->s);
	collect(fx);
	store_close(fx->s);
	fx->s = NULL;
}

static int
setup(void **state)
{
	fixture *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/tb_store_XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->path, sizeof(fx->path), "%s/tasks.db", fx->dir);
	pthread_mutex_init(&fx->mtx, NULL);
	pthread_cond_init(&fx->cv, NULL);
	*state = fx;
	return (0);
}

static int
teardown(void **state)
{
	fixture       *fx = *state;
	DIR           *d;
	struct dirent *e;

#ifdef TB_FAULT_INJECTION
	tb_fault_reset(); // a failed test may have left a site armed
#endif
	if (fx->s != NULL) {
		close_store(fx);
	}
	for (size_t i = 0; i < fx->ndone; i++) {
		op_free(fx->done[i]);
	}
	if ((d = opendir(fx->dir)) != NULL) {
		while ((e = readdir(d)) != NULL) {
			char p[512];
			if (strcmp(e->d_name, ".") == 0 ||
			    strcmp(e->d_name, "..") == 0) {
				continue;
			}
			snprintf(p, sizeof(p), "%s/%s", fx->dir, e->d_name);
			unlink(p);
		}
		closedir(d);
	}
	rmdir(fx->dir);
	pthread_cond_destroy(&fx->cv);
	pthread_mutex_destroy(&fx->mtx);
	free(fx);
	return (0);
}

// sql_int runs a query returning one integer on a private connection.
static int64_t
sql_int(const char *path, const char *sql)
{
	sqlite3      *db;
	sqlite3_stmt *st;
	int64_t       v;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return (v);
}

static void
sql_exec(const char *path, const char *sql)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static void
test_open_creates_schema_v2(void **state)
{
	fixture *fx = *state;

	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	store_close(fx->s);
	fx->s = NULL;
	assert_int_equal(
	    sql_int(fx->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	assert_int_equal(sql_int(fx->path,
	                     "SELECT count(*) FROM sqlite_master WHERE "
	                     "type = 'table' AND name IN ('tasks', 'queues', "
	                     "'schedules')"),
	    3);
	assert_int_equal(sql_int(fx->path,
	                     "SELECT count(*) FROM sqlite_master WHERE "
	                     "type = 'index' AND name = "
	                     "'tasks_queue_state_finished'"),
	    1);
	assert_int_equal(sql_int(fx->path,
	                     "SELECT count(*) FROM sqlite_master WHERE "
	                     "type = 'index' AND name = 'tasks_unfinished'"),
	    1);
	// WAL is persistent in the file header (read/write versions 2).
	assert_int_equal(sql_int(fx->path,
	                     "SELECT count(*) FROM pragma_journal_mode "
	                     "WHERE journal_mode = 'wal'"),
	    1);
	// A second open of a current database migrates nothing.
	assert_int_equal(store_open(&fx->s, fx->path, STORE_NORMAL), TB_OK);
	store_close(fx->s);
	fx->s = NULL;
	assert_int_equal(
	    sql_int(fx->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
}

static void
test_open_rejects_bad_arguments(void **state)
{
	fixture *fx = *state;
	store   *s  = NULL;

	assert_int_equal(store_open(&s, NULL, STORE_FULL), TB_EINVAL);
	assert_int_equal(store_open(&s, fx->path, 7), TB_EINVAL);
	assert_null(s);
	store_close(NULL);
	store_rec_free(NULL);
}

static void
test_reopen_keeps_data(void **state)
{
	fixture   *fx = *state;
	store_rec *r;

	open_started(fx);
	insert_sync(fx, rec_new(7, 7, "q", TB_STATE_PENDING));
	close_store(fx);

	assert_int_equal(store_open(&fx->s, fx->path, STORE_NORMAL), TB_OK);
	assert_int_equal(store_get(fx->s, 7, &r), TB_OK);
	assert_int_equal(r->id, 7);
	assert_string_equal(r->queue, "q");
	store_rec_free(r);
}

static void
test_open_refuses_newer_schema(void **state)
{
	fixture *fx = *state;
	store   *s  = NULL;
	char     sql[128];

	snprintf(sql, sizeof(sql),
	    "CREATE TABLE x(y); PRAGMA user_version = %d;",
	    STORE_SCHEMA_VERSION + 1);
	sql_exec(fx->path, sql);
	assert_int_equal(store_open(&s, fx->path, STORE_FULL), TB_ESTORE);
	assert_null(s);
	// Untouched: still the newer version.
	assert_int_equal(sql_int(fx->path, "PRAGMA user_version"),
	    STORE_SCHEMA_VERSION + 1);
}

static void
test_open_refuses_non_database(void **state)
{
	fixture *fx = *state;
	store   *s  = NULL;
	FILE    *f;
	char     junk[8192];

	for (size_t i = 0; i < sizeof(junk); i++) {
		junk[i] = (char) ("this is not a database "[i % 23]);
	}
	assert_non_null(f = fopen(fx->path, "w"));
	assert_int_equal(fwrite(junk, 1, sizeof(junk), f), sizeof(junk));
	fclose(f);
	assert_int_equal(store_open(&s, fx->path, STORE_FULL), TB_ESTORE);
	assert_null(s);
}

static void
assert_rec_equal(const store_rec *a, const store_rec *b)
{
	assert_int_equal(a->id, b->id);
	assert_memory_equal(a->sid, b->sid, TB_SID_LEN);
	assert_string_equal(a->queue, b->queue);
	assert_string_equal(a->handler, b->handler);
	assert_int_equal(a->payload_len, b->payload_len);
	if (a->payload_len > 0) {
		assert_memory_equal(a->payload, b->payload, a->payload_len);
	} else {
		assert_null(b->payload);
	}
	assert_int_equal(a->priority, b->priority);
	assert_int_equal(a->state, b->state);
	assert_int_equal(a->attempts, b->attempts);
	assert_int_equal(a->max_attempts, b->max_attempts);
	assert_int_equal(a->crashes, b->crashes);
	assert_int_equal(a->max_crashes, b->max_crashes);
	assert_int_equal(a->timeout_ms, b->timeout_ms);
	assert_int_equal(a->run_at, b->run_at);
	assert_int_equal(a->created_at, b->created_at);
	assert_int_equal(a->started_at, b->started_at);
	assert_int_equal(a->finished_at, b->finished_at);
	assert_int_equal(a->result_len, b->result_len);
	if (a->result_len > 0) {
		assert_memory_equal(a->result, b->result, a->result_len);
	} else {
		assert_null(b->result);
	}
	if (a->error == NULL) {
		assert_null(b->error);
	} else {
		assert_string_equal(a->error, b->error);
	}
	if (a->key == NULL) {
		assert_null(b->key);
	} else {
		assert_string_equal(a->key, b->key);
	}
	assert_int_equal(a->forever, b->forever);
}

static void
test_insert_get_round_trips_every_field(void **state)
{
	fixture             *fx    = *state;
	static const uint8_t pl[]  = { 0x82, 0x00, 0x01, 0x00, 0x00, 0xff, 0 };
	static const uint8_t res[] = { 0xc0, 0x00, 0x7f };
	store_rec           *a = rec_new(41, 1, "emails", TB_STATE_PENDING);
	store_rec           *b = rec_new(42, 2, "", TB_STATE_DONE);
	store_rec           *got;
	store_op            *op;

	for (unsigned i = 0; i < TB_SID_LEN; i++) {
		a->sid[i] = (uint8_t) (i * 17); // includes a NUL byte
	}
	a->payload     = malloc(sizeof(pl));
	a->payload_len = sizeof(pl);
	memcpy(a->payload, pl, sizeof(pl));
	a->priority     = INT32_MIN;
	a->attempts     = 2;
	a->max_attempts = UINT32_MAX;
	a->crashes      = 7;
	a->max_crashes  = UINT32_MAX;
	a->timeout_ms   = UINT32_MAX;
	a->run_at       = INT64_MAX;
	a->created_at   = -5;
	// b: finished, with a result and an error; empty queue name.
	b->started_at  = 11;
	b->finished_at = 12;
	b->result      = malloc(sizeof(res));
	b->result_len  = sizeof(res);
	memcpy(b->result, res, sizeof(res));
	b->error = strdup("exit 3: \"quoted\" \xc3\xa9");

	open_started(fx);
	op = op_insert(2, a, b);
	store_submit(fx->s, op);
	wait_done(fx, 1);
	assert_int_equal(op->rv, TB_OK);

	assert_int_equal(store_get(fx->s, 41, &got), TB_OK);
	assert_rec_equal(a, got);
	assert_null(got->result);
	assert_null(got->error);
	store_rec_free(got);
	assert_int_equal(store_get(fx->s, 42, &got), TB_OK);
	assert_rec_equal(b, got);
	store_rec_free(got);
	assert_int_equal(store_get(fx->s, 43, &got), TB_ENOTFOUND);
}

static void
test_insert_duplicate_sid_across_batches(void **state)
{
	fixture    *fx = *state;
	store_op   *op;
	store_rec  *got;
	store_rec **recs;
	size_t      n;

	open_started(fx);
	insert_sync(fx, rec_new(1, 9, "q", TB_STATE_PENDING));
	op = op_insert(1, rec_new(2, 9, "other", TB_STATE_PENDING));
	store_submit(fx->s, op);
	wait_done(fx, 2);
	assert_int_equal(op->rv, TB_OK);
	assert_int_equal(op->dup_ids[0], 1);
	assert_int_equal(store_get(fx->s, 2, &got), TB_ENOTFOUND);
	assert_int_equal(store_get(fx->s, 1, &got), TB_OK);
	assert_string_equal(got->queue, "q"); // the first one stays
	store_rec_free(got);
	assert_int_equal(list_by(fx->s, NULL, -1, 0, 100, &recs, &n), TB_OK);
	assert_int_equal(n, 1);
	store_rec_free(recs[0]);
	free(recs);
}

static void
test_insert_duplicate_sid_within_batch(void **state)
{
	fixture    *fx = *state;
	store_op   *op1, *op2, *op3;
	store_rec **recs;
	size_t      n;

	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	// Submitted before start, so all three share one transaction.
	op1 = op_insert(1, rec_new(10, 1, "q", TB_STATE_PENDING));
	op2 = op_insert(2, rec_new(11, 1, "q", TB_STATE_PENDING),
	    rec_new(12, 2, "q", TB_STATE_PENDING));
	op3 = op_insert(3, rec_new(13, 3, "q", TB_STATE_PENDING),
	    rec_new(14, 3, "q", TB_STATE_PENDING),
	    rec_new(15, 2, "q", TB_STATE_PENDING));
	store_submit(fx->s, op1);
	store_submit(fx->s, op2);
	store_submit(fx->s, op3);
	assert_int_equal(store_start(fx->s, notify_cb, fx), TB_OK);
	wait_done(fx, 3);

	uint64_t c;
	store_counters(fx->s, &c, NULL);
	assert_int_equal(c, 1);
	assert_int_equal(op1->rv, TB_OK);
	assert_int_equal(op1->dup_ids[0], 0);
	assert_int_equal(op2->rv, TB_OK);
	assert_int_equal(op2->dup_ids[0], 10);
	assert_int_equal(op2->dup_ids[1], 0);
	assert_int_equal(op3->rv, TB_OK);
	assert_int_equal(op3->dup_ids[0], 0);
	assert_int_equal(op3->dup_ids[1], 13);
	assert_int_equal(op3->dup_ids[2], 12);

	assert_int_equal(list_by(fx->s, NULL, -1, 0, 100, &recs, &n), TB_OK);
	assert_int_equal(n, 3);
	assert_int_equal(recs[0]->id, 10);
	assert_int_equal(recs[1]->id, 12);
	assert_int_equal(recs[2]->id, 13);
	for (size_t i = 0; i < n; i++) {
		store_rec_free(recs[i]);
	}
	free(recs);
}

static void
test_update_changes_exactly_the_fields(void **state)
{
	fixture             *fx    = *state;
	static const uint8_t res[] = { 0x91, 0x00, 0x2a };
	store_rec           *orig  = rec_new(5, 5, "q", TB_STATE_PENDING);
	store_rec           *want;
	store_rec           *got;
	store_op            *op;

	orig->payload     = (uint8_t *) strdup("abc");
	orig->payload_len = 3;
	open_started(fx);
	assert_int_equal(store_get(fx->s, 5, &got), TB_ENOTFOUND);
	insert_sync(fx, orig);
	assert_int_equal(store_get(fx->s, 5, &want), TB_OK);

	op              = op_new(STORE_OP_UPDATE);
	op->id          = 5;
	op->state       = TB_STATE_DONE;
	op->attempts    = 1;
	op->crashes     = 2;
	op->max_crashes = 9;
	op->run_at      = 100;
	op->started_at  = 200;
	op->finished_at = 300;
	op->result      = res;
	op->result_len  = sizeof(res);
	op->error       = "warning text";
	store_submit(fx->s, op);
	wait_done(fx, 2);
	assert_int_equal(op->rv, TB_OK);

	want->state       = TB_STATE_DONE;
	want->attempts    = 1;
	want->crashes     = 2;
	want->max_crashes = 9;
	want->run_at      = 100;
	want->started_at  = 200;
	want->finished_at = 300;
	want->result      = malloc(sizeof(res));
	memcpy(want->result, res, sizeof(res));
	want->result_len = sizeof(res);
	want->error      = strdup("warning text");
	assert_int_equal(store_get(fx->s, 5, &got), TB_OK);
	assert_rec_equal(want, got);
	store_rec_free(got);

	// NULL result and error store NULL.
	op              = op_new(STORE_OP_UPDATE);
	op->id          = 5;
	op->state       = TB_STATE_FAILED;
	op->attempts    = 2;
	op->crashes     = 1;
	op->max_crashes = 9;
	op->run_at      = 101;
	op->started_at  = 201;
	op->finished_at = 0;
	store_submit(fx->s, op);
	// An update of a missing row is a no-op, not a batch failure.
	store_op *missing = op_new(STORE_OP_UPDATE);
	missing->id       = 999;
	store_submit(fx->s, missing);
	wait_done(fx, 4);
	assert_int_equal(op->rv, TB_OK);
	assert_int_equal(missing->rv, TB_OK);

	want->state       = TB_STATE_FAILED;
	want->attempts    = 2;
	want->crashes     = 1;
	want->run_at      = 101;
	want->started_at  = 201;
	want->finished_at = 0;
	free(want->result);
	want->result     = NULL;
	want->result_len = 0;
	free(want->error);
	want->error = NULL;
	assert_int_equal(store_get(fx->s, 5, &got), TB_OK);
	assert_rec_equal(want, got);
	store_rec_free(got);
	store_rec_free(want);
}

static void
test_barrier_completes_after_earlier_ops(void **state)
{
	fixture  *fx = *state;
	store_op *barrier;
	uint64_t  commits, ops;

	open_started(fx);
	for (uint64_t i = 1; i <= 50; i++) {
		store_submit(fx->s,
		    op_insert(
		        1, rec_new(i, (uint8_t) i, "q", TB_STATE_PENDING)));
	}
	barrier = op_new(STORE_OP_BARRIER);
	store_submit(fx->s, barrier);
	wait_done(fx, 51);
	assert_ptr_equal(fx->done[50], barrier);
	assert_int_equal(barrier->rv, TB_OK);
	// Everything before the barrier is committed and readable.
	for (uint64_t i = 1; i <= 50; i++) {
		store_rec *r;
		assert_int_equal(fx->done[i - 1]->rv, TB_OK);
		assert_int_equal(store_get(fx->s, i, &r), TB_OK);
		store_rec_free(r);
	}
	// A batch of barriers alone commits no transaction.
	store_counters(fx->s, &commits, &ops);
	store_submit(fx->s, op_new(STORE_OP_BARRIER));
	wait_done(fx, 52);
	uint64_t c2, o2;
	store_counters(fx->s, &c2, &o2);
	assert_int_equal(c2, commits);
	assert_int_equal(o2, ops + 1);
}

static void
test_done_list_keeps_submission_order(void **state)
{
	fixture *fx = *state;
	size_t   n  = 600;

	open_started(fx);
	for (size_t i = 0; i < n; i++) {
		store_op *op;
		if (i % 3 == 2) {
			op = op_new(STORE_OP_BARRIER);
		} else {
			op                  = op_insert(1,
			                     rec_new(
			                         i + 1, (uint8_t) i, "q", TB_STATE_PENDING));
			op->recs[0]->sid[1] = (uint8_t) (i >> 8);
		}
		op->arg = (void *) (uintptr_t) i;
		store_submit(fx->s, op);
	}
	wait_done(fx, n);
	assert_int_equal(fx->ndone, n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal((uintptr_t) fx->done[i]->arg, i);
		assert_int_equal(fx->done[i]->rv, TB_OK);
	}
}

#define GC_THREADS 4
#define GC_PER_THREAD 500

typedef struct {
	store             *s;
	pthread_barrier_t *go;
	int                t;
} gc_arg;

static void *
gc_submitter(void *p)
{
	gc_arg *a = p;

	pthread_barrier_wait(a->go);
	for (int i = 0; i < GC_PER_THREAD; i++) {
		uint64_t   id = (uint64_t) (a->t * GC_PER_THREAD + i + 1);
		store_rec *r =
		    rec_new(id, (uint8_t) id, "q", TB_STATE_PENDING);
		r->sid[1]    = (uint8_t) (id >> 8);
		store_op *op = op_insert(1, r);
		op->arg      = (void *) (uintptr_t) id;
		store_submit(a->s, op);
	}
	return (NULL);
}

static void
test_group_commit_under_load(void **state)
{
	fixture          *fx = *state;
	pthread_t         th[GC_THREADS];
	gc_arg            args[GC_THREADS];
	pthread_barrier_t go;
	uint64_t          commits, ops;
	size_t            total = GC_THREADS * GC_PER_THREAD;
	store_rec       **recs;
	size_t            n;

	open_started(fx);
	pthread_barrier_init(&go, NULL, GC_THREADS);
	for (int t = 0; t < GC_THREADS; t++) {
		args[t] = (gc_arg) { fx->s, &go, t };
		assert_int_equal(
		    pthread_create(&th[t], NULL, gc_submitter, &args[t]), 0);
	}
	for (int t = 0; t < GC_THREADS; t++) {
		pthread_join(th[t], NULL);
	}
	pthread_barrier_destroy(&go);
	wait_done(fx, total);
	for (size_t i = 0; i < total; i++) {
		assert_int_equal(fx->done[i]->rv, TB_OK);
		assert_int_equal(fx->done[i]->dup_ids[0], 0);
	}
	store_counters(fx->s, &commits, &ops);
	print_message("group commit: %llu commits for %llu ops\n",
	    (unsigned long long) commits, (unsigned long long) ops);
	assert_int_equal(ops, total);
	assert_true(commits >= 1);
	assert_true(commits < total / 2);
	assert_int_equal(list_by(fx->s, NULL, -1, 0, 5000, &recs, &n), TB_OK);
	assert_int_equal(n, total);
	for (size_t i = 0; i < n; i++) {
		store_rec_free(recs[i]);
	}
	free(recs);
}

static void
test_stop_commits_what_was_queued(void **state)
{
	fixture    *fx = *state;
	store_rec **recs;
	size_t      n;

	open_started(fx);
	for (uint64_t i = 1; i <= 100; i++) {
		store_submit(fx->s,
		    op_insert(
		        1, rec_new(i, (uint8_t) i, "q", TB_STATE_PENDING)));
	}
	store_stop(fx->s); // no wait before: stop itself must drain
	collect(fx);
	assert_int_equal(fx->ndone, 100);
	for (size_t i = 0; i < 100; i++) {
		assert_int_equal(fx->done[i]->rv, TB_OK);
	}
	store_close(fx->s);
	fx->s = NULL;

	// Queued before a start that never came: stop commits on its thread.
	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	store_submit(
	    fx->s, op_insert(1, rec_new(101, 101, "q", TB_STATE_PENDING)));
	store_stop(fx->s);
	collect(fx);
	assert_int_equal(fx->ndone, 101);
	assert_int_equal(fx->done[100]->rv, TB_OK);
	store_close(fx->s);
	fx->s = NULL;

	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	assert_int_equal(list_by(fx->s, "q", -1, 0, 1000, &recs, &n), TB_OK);
	assert_int_equal(n, 101);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(recs[i]->id, i + 1);
		store_rec_free(recs[i]);
	}
	free(recs);
}

static void
test_submit_after_stop_is_closed(void **state)
{
	fixture  *fx = *state;
	store_op *op;
	uint64_t  before;

	open_started(fx);
	store_stop(fx->s);
	store_stop(fx->s); // idempotent
	pthread_mutex_lock(&fx->mtx);
	before = fx->notified;
	pthread_mutex_unlock(&fx->mtx);
	op = op_insert(1, rec_new(1, 1, "q", TB_STATE_PENDING));
	store_submit(fx->s, op);
	// Completed at once, on this thread, with notify called.
	pthread_mutex_lock(&fx->mtx);
	assert_int_equal(fx->notified, before + 1);
	pthread_mutex_unlock(&fx->mtx);
	collect(fx);
	assert_int_equal(fx->ndone, 1);
	assert_ptr_equal(fx->done[0], op);
	assert_int_equal(op->rv, TB_ECLOSED);

	store_rec *r;
	assert_int_equal(store_get(fx->s, 1, &r), TB_ENOTFOUND);
}

typedef struct {
	store_rec *recs[16];
	size_t     n;
	int        stop_after; // return non-zero after this many (0: never)
} rec_sink;

static int
recover_cb(void *arg, store_rec *r)
{
	rec_sink *k = arg;

	assert_true(k->n < 16);
	k->recs[k->n++] = r;
	if (k->stop_after > 0 && k->n == (size_t) k->stop_after) {
		return (TB_EINTERNAL);
	}
	return (0);
}

// Recovery changes nothing: a task left running by a broker that died is
// handed back as it is, with its figures, for the loop to decide on
// (attempt_interrupted, which writes the outcome as an update); the
// figures by state are the stored ones.
static void
test_recover_hands_back_running_tasks_unchanged(void **state)
{
	fixture   *fx = *state;
	rec_sink   k  = { .n = 0 };
	uint64_t   counts[TB_STATE_CANCELLED + 1];
	uint64_t   max_id = 99;
	store_rec *r;

	// Ids out of order on purpose: recovery hands them back sorted.
	open_started(fx);
	store_rec *run_left  = rec_new(30, 1, "q", TB_STATE_RUNNING);
	run_left->attempts   = 1;
	run_left->crashes    = 2;
	run_left->started_at = 55;
	store_rec *run_last  = rec_new(20, 2, "q", TB_STATE_RUNNING);
	run_last->attempts   = 3; // of 3: a crash is no failure, not dead
	store_rec *failed    = rec_new(10, 3, "q", TB_STATE_FAILED);
	store_rec *pending   = rec_new(40, 4, "q", TB_STATE_PENDING);
	store_rec *done      = rec_new(50, 5, "q", TB_STATE_DONE);
	store_rec *dead      = rec_new(60, 6, "q", TB_STATE_DEAD);
	store_rec *cancel    = rec_new(45, 7, "q", TB_STATE_CANCELLED);
	store_submit(fx->s,
	    op_insert(
	        7, run_left, run_last, failed, pending, done, dead, cancel));
	wait_done(fx, 1);
	assert_int_equal(fx->done[0]->rv, TB_OK);
	close_store(fx);

	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	assert_int_equal(
	    store_recover(fx->s, &max_id, counts, recover_cb, &k), TB_OK);
	assert_int_equal(max_id, 60);
	assert_int_equal(k.n, 4);
	assert_int_equal(k.recs[0]->id, 10);
	assert_int_equal(k.recs[0]->state, TB_STATE_FAILED);
	assert_int_equal(k.recs[1]->id, 20);
	assert_int_equal(k.recs[1]->state, TB_STATE_RUNNING);
	assert_int_equal(k.recs[1]->attempts, 3);
	assert_int_equal(k.recs[1]->crashes, 0);
	assert_null(k.recs[1]->error);
	assert_int_equal(k.recs[2]->id, 30);
	assert_int_equal(k.recs[2]->state, TB_STATE_RUNNING);
	assert_int_equal(k.recs[2]->attempts, 1);
	assert_int_equal(k.recs[2]->crashes, 2);
	assert_int_equal(k.recs[2]->max_crashes, 3);
	assert_int_equal(k.recs[2]->started_at, 55);
	assert_string_equal(k.recs[2]->handler, "noop");
	assert_int_equal(k.recs[3]->id, 40);
	assert_int_equal(k.recs[3]->state, TB_STATE_PENDING);
	assert_int_equal(counts[TB_STATE_PENDING], 1);
	assert_int_equal(counts[TB_STATE_RUNNING], 2);
	assert_int_equal(counts[TB_STATE_DONE], 1);
	assert_int_equal(counts[TB_STATE_FAILED], 1);
	assert_int_equal(counts[TB_STATE_DEAD], 1);
	assert_int_equal(counts[TB_STATE_CANCELLED], 1);
	for (size_t i = 0; i < k.n; i++) {
		store_rec_free(k.recs[i]);
	}

	// Nothing was written: the rows are as they were stored.
	assert_int_equal(store_get(fx->s, 20, &r), TB_OK);
	assert_int_equal(r->state, TB_STATE_RUNNING);
	assert_int_equal(r->attempts, 3);
	assert_int_equal(r->finished_at, 0);
	store_rec_free(r);

	// The store still works after recovery.
	assert_int_equal(store_start(fx->s, notify_cb, fx), TB_OK);
	assert_int_equal(store_recover(fx->s, NULL, NULL, NULL, NULL),
	    TB_EINVAL); // the writer owns the connection now
	insert_sync(fx, rec_new(61, 61, "q", TB_STATE_PENDING));
}

static void
test_recover_stops_when_cb_fails(void **state)
{
	fixture *fx     = *state;
	rec_sink k      = { .n = 0, .stop_after = 2 };
	uint64_t max_id = 0;
	uint64_t counts[TB_STATE_CANCELLED + 1];

	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	// Empty database first.
	assert_int_equal(
	    store_recover(fx->s, &max_id, counts, recover_cb, &k), TB_OK);
	assert_int_equal(max_id, 0);
	assert_int_equal(k.n, 0);
	for (int i = 0; i <= TB_STATE_CANCELLED; i++) {
		assert_int_equal(counts[i], 0);
	}
	for (uint64_t i = 1; i <= 4; i++) {
		store_submit(fx->s,
		    op_insert(
		        1, rec_new(i, (uint8_t) i, "q", TB_STATE_PENDING)));
	}
	store_stop(fx->s); // commits on this thread: never started
	collect(fx);
	assert_int_equal(fx->ndone, 4);
	store_close(fx->s);
	fx->s = NULL;

	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	assert_int_equal(store_recover(fx->s, &max_id, counts, recover_cb, &k),
	    TB_EINTERNAL);
	assert_int_equal(k.n, 2);
	for (size_t i = 0; i < k.n; i++) {
		store_rec_free(k.recs[i]);
	}
}

static void
free_list(store_rec **recs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		store_rec_free(recs[i]);
	}
	free(recs);
}

static void
test_list_filters_queue_state_after_and_limit(void **state)
{
	fixture    *fx = *state;
	store_rec **recs;
	size_t      n;
	store_op   *op       = op_new(STORE_OP_INSERT);
	const char *queues[] = { "a", "b" };

	// ids 1..10: queue a for odd ids, b for even; state = id % 3.
	op->nrecs   = 10;
	op->recs    = calloc(10, sizeof(*op->recs));
	op->dup_ids = calloc(10, sizeof(*op->dup_ids));
	for (uint32_t i = 0; i < 10; i++) {
		op->recs[i] = rec_new(i + 1, (uint8_t) (i + 1),
		    queues[(i + 1) % 2 == 0], (i + 1) % 3);
	}
	open_started(fx);
	store_submit(fx->s, op);
	wait_done(fx, 1);
	assert_int_equal(op->rv, TB_OK);

	assert_int_equal(list_by(fx->s, NULL, -1, 0, 100, &recs, &n), TB_OK);
	assert_int_equal(n, 10);
	free_list(recs, n);

	assert_int_equal(list_by(fx->s, "a", -1, 0, 100, &recs, &n), TB_OK);
	assert_int_equal(n, 5); // 1 3 5 7 9
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(recs[i]->id, 2 * i + 1);
		assert_string_equal(recs[i]->queue, "a");
	}
	free_list(recs, n);

	assert_int_equal(list_by(fx->s, NULL, 1, 0, 100, &recs, &n), TB_OK);
	assert_int_equal(n, 4); // 1 4 7 10
	assert_int_equal(recs[0]->id, 1);
	assert_int_equal(recs[3]->id, 10);
	free_list(recs, n);

	assert_int_equal(list_by(fx->s, "b", 1, 0, 100, &recs, &n), TB_OK);
	assert_int_equal(n, 2); // 4 10
	assert_int_equal(recs[0]->id, 4);
	assert_int_equal(recs[1]->id, 10);
	free_list(recs, n);

	assert_int_equal(list_by(fx->s, NULL, -1, 4, 3, &recs, &n), TB_OK);
	assert_int_equal(n, 3); // 5 6 7
	assert_int_equal(recs[0]->id, 5);
	assert_int_equal(recs[2]->id, 7);
	free_list(recs, n);

	assert_int_equal(list_by(fx->s, "a", 0, 3, 1, &recs, &n), TB_OK);
	assert_int_equal(n, 1); // a with state 0: 3 9 -> after 3: 9
	assert_int_equal(recs[0]->id, 9);
	free_list(recs, n);

	assert_int_equal(list_by(fx->s, "none", -1, 0, 100, &recs, &n), TB_OK);
	assert_int_equal(n, 0);
	free_list(recs, n);
	// A limit of 0 means the default page of 100.
	assert_int_equal(list_by(fx->s, NULL, -1, 0, 0, &recs, &n), TB_OK);
	assert_int_equal(n, 10);
	free_list(recs, n);
}

static void
test_failing_batch_rolls_back_everything(void **state)
{
	fixture   *fx = *state;
	store_op  *good, *upd, *bad, *after, *invalid;
	store_rec *r;
	uint64_t   commits;

	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	sql_exec(fx->path,
	    "CREATE TRIGGER boom BEFORE INSERT ON tasks "
	    "WHEN NEW.queue = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END;");
	// Submitted before start: one batch.
	good       = op_insert(1, rec_new(1, 1, "q", TB_STATE_PENDING));
	upd        = op_new(STORE_OP_UPDATE);
	upd->id    = 1;
	upd->state = TB_STATE_RUNNING;
	upd->keep  = true; // not kept: the error is not one that may pass
	bad        = op_insert(2, rec_new(2, 2, "q", TB_STATE_PENDING),
	           rec_new(3, 3, "boom", TB_STATE_PENDING));
	invalid    = op_new(99); // a caller bug fails alone
	store_submit(fx->s, good);
	store_submit(fx->s, upd);
	store_submit(fx->s, invalid);
	store_submit(fx->s, bad);
	assert_int_equal(store_start(fx->s, notify_cb, fx), TB_OK);
	wait_done(fx, 4);
	assert_int_equal(good->rv, TB_ESTORE);
	assert_int_equal(upd->rv, TB_ESTORE);
	assert_int_equal(bad->rv, TB_ESTORE);
	assert_int_equal(bad->src & 0xff, SQLITE_CONSTRAINT);
	assert_int_equal(store_kept(fx->s), 0);
	assert_int_equal(invalid->rv, TB_EINVAL);
	assert_int_equal(bad->dup_ids[0], 0);
	assert_int_equal(store_get(fx->s, 1, &r), TB_ENOTFOUND);
	assert_int_equal(store_get(fx->s, 2, &r), TB_ENOTFOUND);
	store_counters(fx->s, &commits, NULL);
	assert_int_equal(commits, 0);

	// The next batch works.
	after = op_insert(1, rec_new(1, 1, "q", TB_STATE_PENDING));
	store_submit(fx->s, after);
	wait_done(fx, 5);
	assert_int_equal(after->rv, TB_OK);
	assert_int_equal(after->dup_ids[0], 0);
	assert_int_equal(store_get(fx->s, 1, &r), TB_OK);
	store_rec_free(r);
	store_counters(fx->s, &commits, NULL);
	assert_int_equal(commits, 1);
}

static void
test_insert_invalid_record_fails_alone(void **state)
{
	fixture   *fx = *state;
	store_op  *ok, *badrec, *noid;
	store_rec *nq = rec_new(2, 2, "q", TB_STATE_PENDING);
	store_rec *r;

	free(nq->queue);
	nq->queue = NULL;
	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	ok     = op_insert(1, rec_new(1, 1, "q", TB_STATE_PENDING));
	badrec = op_insert(1, nq);
	// Id 0: the loop assigns ids; the store never picks one.
	noid = op_insert(2, rec_new(3, 3, "q", TB_STATE_PENDING),
	    rec_new(0, 4, "q", TB_STATE_PENDING));
	store_submit(fx->s, ok);
	store_submit(fx->s, badrec);
	store_submit(fx->s, noid);
	assert_int_equal(store_start(fx->s, notify_cb, fx), TB_OK);
	wait_done(fx, 3);
	assert_int_equal(ok->rv, TB_OK);
	assert_int_equal(badrec->rv, TB_EINVAL);
	assert_int_equal(noid->rv, TB_EINVAL);
	assert_int_equal(store_get(fx->s, 3, &r), TB_ENOTFOUND); // all or none
	assert_int_equal(store_get(fx->s, 1, &r), TB_OK);
	store_rec_free(r);
}

// submit_sync submits op to a running store, waits for it and returns it.
static store_op *
submit_sync(fixture *fx, store_op *op)
{
	size_t n = fx->ndone;

	store_submit(fx->s, op);
	wait_done(fx, n + 1);
	assert_ptr_equal(fx->done[n], op);
	return (op);
}

// insert_many inserts the n records of recs (owned by the op from here).
static void
insert_many(fixture *fx, store_rec **recs, uint32_t n)
{
	store_op *op = op_new(STORE_OP_INSERT);

	op->nrecs   = n;
	op->recs    = calloc(n, sizeof(*op->recs));
	op->dup_ids = calloc(n, sizeof(*op->dup_ids));
	assert_non_null(op->recs);
	assert_non_null(op->dup_ids);
	memcpy(op->recs, recs, n * sizeof(*recs));
	submit_sync(fx, op);
	assert_int_equal(op->rv, TB_OK);
}

// list_ids lists with f and writes the ids into ids (at most max).
static size_t
list_ids(fixture *fx, const store_filter *f, uint64_t *ids, size_t max)
{
	store_rec **recs;
	size_t      n;

	assert_int_equal(store_list(fx->s, f, &recs, &n), TB_OK);
	assert_true(n <= max);
	for (size_t i = 0; i < n; i++) {
		ids[i] = recs[i]->id;
	}
	free_list(recs, n);
	return (n);
}

#define assert_ids(fx, f, ...)                                          \
	do {                                                            \
		const uint64_t want_[] = { __VA_ARGS__ };               \
		uint64_t       got_[256];                               \
		size_t         n_ = list_ids(fx, f, got_, 256);         \
		assert_int_equal(n_, sizeof(want_) / sizeof(want_[0])); \
		for (size_t i_ = 0; i_ < n_; i_++) {                    \
			assert_int_equal(got_[i_], want_[i_]);          \
		}                                                       \
	} while (0)

// whandler_cb counts the worker handler names store_load_whandlers passes.
static int
whandler_cb(void *arg, const char *name)
{
	int *n = arg;

	assert_string_equal(name, "resize");
	(*n)++;
	return (0);
}

// A worker handler name is recorded once and read back.
static void
test_whandler_put_is_kept_once_and_loaded(void **state)
{
	fixture  *fx = *state;
	store_op *op[2];
	int       n = 0;

	open_started(fx);
	for (int i = 0; i < 2; i++) {
		op[i]         = op_new(STORE_OP_WHANDLER_PUT);
		op[i]->name   = "resize";
		op[i]->run_at = 5;
		store_submit(fx->s, op[i]);
	}
	wait_done(fx, 2);
	assert_int_equal(op[0]->rv, TB_OK);
	assert_int_equal(op[1]->rv, TB_OK); // a second time: kept as it is
	assert_int_equal(store_load_whandlers(fx->s, whandler_cb, &n), TB_OK);
	assert_int_equal(n, 1);
}

static void
test_migrate_v1_keeps_rows(void **state)
{
	fixture    *fx = *state;
	store_rec  *r;
	store_rec **recs;
	size_t      n;

	// The schema exactly as version 1 shipped it, with one finished row.
	sql_exec(fx->path,
	    "CREATE TABLE tasks(id INTEGER PRIMARY KEY, sid BLOB NOT NULL "
	    "UNIQUE, queue TEXT NOT NULL, handler TEXT NOT NULL, payload "
	    "BLOB, "
	    "priority INTEGER NOT NULL, state INTEGER NOT NULL, attempts "
	    "INTEGER NOT NULL, max_attempts INTEGER NOT NULL, timeout_ms "
	    "INTEGER NOT NULL, run_at INTEGER NOT NULL, created_at INTEGER "
	    "NOT NULL, started_at INTEGER NOT NULL, finished_at INTEGER NOT "
	    "NULL, result BLOB, error TEXT);"
	    "CREATE INDEX tasks_unfinished ON tasks(state) "
	    "WHERE (state < 2 OR state = 3);"
	    "CREATE INDEX tasks_queue_state ON tasks(queue, state);"
	    "INSERT INTO tasks VALUES(17, "
	    "x'000102030405060708090a0b0c0d0e0f', "
	    "'mail', 'send', x'c0ff', -2, 2, 1, 3, 500, 10, 11, 12, 13, "
	    "x'2a', 'warned');"
	    "PRAGMA user_version = 1;");

	open_started(fx);
	assert_int_equal(
	    sql_int(fx->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	assert_int_equal(store_get(fx->s, 17, &r), TB_OK);
	assert_int_equal(r->sid[15], 0x0f);
	assert_string_equal(r->queue, "mail");
	assert_string_equal(r->handler, "send");
	assert_int_equal(r->payload_len, 2);
	assert_int_equal(r->payload[1], 0xff);
	assert_int_equal(r->priority, -2);
	assert_int_equal(r->state, TB_STATE_DONE);
	assert_int_equal(r->finished_at, 13);
	assert_int_equal(r->result_len, 1);
	assert_string_equal(r->error, "warned");
	assert_null(r->key);
	assert_false(r->forever);
	assert_int_equal(r->crashes, 0);
	assert_int_equal(r->max_crashes, 0);
	store_rec_free(r);

	// The migrated table takes schema-2 rows next to the old one.
	store_rec *k = rec_new(18, 18, "mail", TB_STATE_PENDING);
	k->key       = strdup("order-1");
	insert_sync(fx, k);
	assert_int_equal(list_by(fx->s, "mail", -1, 0, 10, &recs, &n), TB_OK);
	assert_int_equal(n, 2);
	assert_null(recs[0]->key);
	assert_string_equal(recs[1]->key, "order-1");
	free_list(recs, n);
	close_store(fx);

	// A second open finds the current version and migrates nothing.
	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	assert_int_equal(
	    sql_int(fx->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	assert_int_equal(store_get(fx->s, 17, &r), TB_OK);
	store_rec_free(r);
}

// SCHEMA_V2 is the database exactly as schema version 2 shipped it (the
// steps 0 -> 1 -> 2 of store.c's migrations[]), for the migration tests.
#define SCHEMA_V2                                                            \
	"CREATE TABLE tasks(id INTEGER PRIMARY KEY, sid BLOB NOT NULL "      \
	"UNIQUE, queue TEXT NOT NULL, handler TEXT NOT NULL, payload BLOB, " \
	"priority INTEGER NOT NULL, state INTEGER NOT NULL, attempts "       \
	"INTEGER NOT NULL, max_attempts INTEGER NOT NULL, timeout_ms "       \
	"INTEGER NOT NULL, run_at INTEGER NOT NULL, created_at INTEGER "     \
	"NOT NULL, started_at INTEGER NOT NULL, finished_at INTEGER NOT "    \
	"NULL, result BLOB, error TEXT);"                                    \
	"CREATE INDEX tasks_unfinished ON tasks(state) "                     \
	"WHERE (state < 2 OR state = 3);"                                    \
	"CREATE INDEX tasks_queue_state ON tasks(queue, state);"             \
	"ALTER TABLE tasks ADD COLUMN key TEXT;"                             \
	"ALTER TABLE tasks ADD COLUMN forever INTEGER NOT NULL DEFAULT 0;"   \
	"CREATE TABLE queues(name TEXT PRIMARY KEY, paused INTEGER NOT "     \
	"NULL DEFAULT 0);"                                                   \
	"CREATE TABLE schedules(name TEXT PRIMARY KEY, handler TEXT NOT "    \
	"NULL, queue TEXT NOT NULL, payload BLOB, priority INTEGER NOT "     \
	"NULL, max_attempts INTEGER NOT NULL, timeout_ms INTEGER NOT "       \
	"NULL, every_ms INTEGER NOT NULL, cron TEXT, catch_up INTEGER NOT "  \
	"NULL, paused INTEGER NOT NULL, created_at INTEGER NOT NULL, "       \
	"next_at INTEGER NOT NULL, last_at INTEGER NOT NULL, fired "         \
	"INTEGER NOT NULL, last_task INTEGER NOT NULL);"                     \
	"CREATE TABLE meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL);"         \
	"CREATE INDEX tasks_queue_state_finished"                            \
	"  ON tasks(queue, state, finished_at);"

// A database of schema version 2 (before crashes were counted) opens with
// every task kept: the new columns read 0 (max_crashes 0: "the queue's
// setting", which the loop fills in), a task the old broker left running is
// handed to recovery as it was, and the migrated rows take the new figures.
static void
test_migrate_v2_keeps_tasks_and_adds_crash_figures(void **state)
{
	fixture   *fx = *state;
	rec_sink   k  = { .n = 0 };
	uint64_t   counts[TB_STATE_CANCELLED + 1];
	uint64_t   max_id = 0;
	store_rec *r;
	store_op  *op;

	sql_exec(fx->path,
	    SCHEMA_V2
	    // A running task (interrupted by the old broker's death), a
	    // done one with a key, a pending forever one; a paused queue,
	    // a schedule and the highest id ever stored.
	    "INSERT INTO tasks VALUES(7, x'07000000000000000000000000000000', "
	    "'mail', 'send', x'c0', 0, 1, 1, 1, 0, 10, 11, 12, 0, NULL, "
	    "NULL, NULL, 0);"
	    "INSERT INTO tasks VALUES(8, x'08000000000000000000000000000000', "
	    "'mail', 'send', NULL, 4, 2, 1, 1, 250, 20, 21, 22, 23, x'2a', "
	    "NULL, 'order-8', 0);"
	    "INSERT INTO tasks VALUES(9, x'09000000000000000000000000000000', "
	    "'bg', 'tick', NULL, 0, 0, 0, 1, 0, 30, 31, 0, 0, NULL, NULL, "
	    "NULL, 1);"
	    "INSERT INTO queues VALUES('mail', 1);"
	    "INSERT INTO schedules VALUES('nightly', 'noop', 'default', NULL, "
	    "0, 1, 0, 0, '@daily', 0, 0, 1, 2, 0, 0, 0);"
	    "INSERT INTO meta VALUES('max_id', 12);"
	    "PRAGMA user_version = 2;");

	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	assert_int_equal(
	    sql_int(fx->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	assert_int_equal(
	    store_recover(fx->s, &max_id, counts, recover_cb, &k), TB_OK);
	assert_int_equal(max_id, 12);
	assert_int_equal(k.n, 2);
	assert_int_equal(k.recs[0]->id, 7);
	assert_int_equal(k.recs[0]->state, TB_STATE_RUNNING);
	assert_int_equal(k.recs[0]->attempts, 1);
	assert_int_equal(k.recs[0]->crashes, 0);
	assert_int_equal(k.recs[0]->max_crashes, 0);
	assert_int_equal(k.recs[0]->payload_len, 1);
	assert_int_equal(k.recs[1]->id, 9);
	assert_true(k.recs[1]->forever);
	assert_int_equal(k.recs[1]->crashes, 0);
	assert_int_equal(counts[TB_STATE_RUNNING], 1);
	assert_int_equal(counts[TB_STATE_DONE], 1);
	assert_int_equal(counts[TB_STATE_PENDING], 1);
	for (size_t i = 0; i < k.n; i++) {
		store_rec_free(k.recs[i]);
	}
	assert_int_equal(store_get(fx->s, 8, &r), TB_OK);
	assert_int_equal(r->state, TB_STATE_DONE);
	assert_int_equal(r->priority, 4);
	assert_int_equal(r->timeout_ms, 250);
	assert_int_equal(r->finished_at, 23);
	assert_int_equal(r->result_len, 1);
	assert_string_equal(r->key, "order-8");
	assert_int_equal(r->crashes, 0);
	assert_int_equal(r->max_crashes, 0);
	store_rec_free(r);
	assert_int_equal(
	    sql_int(fx->path, "SELECT count(*) FROM queues WHERE paused = 1"),
	    1);
	assert_int_equal(
	    sql_int(fx->path, "SELECT count(*) FROM schedules"), 1);

	// The loop's update of the interrupted task (pending again, the
	// attempt refunded, one crash, its queue's limit filled in) and new
	// rows with crash figures both go into the migrated table.
	assert_int_equal(store_start(fx->s, notify_cb, fx), TB_OK);
	op              = op_new(STORE_OP_UPDATE);
	op->id          = 7;
	op->state       = TB_STATE_PENDING;
	op->attempts    = 0;
	op->crashes     = 1;
	op->max_crashes = 3;
	op->run_at      = 10;
	op->started_at  = 12;
	submit_sync(fx, op);
	assert_int_equal(op->rv, TB_OK);
	store_rec *n = rec_new(13, 13, "mail", TB_STATE_PENDING);
	n->crashes   = 2;
	insert_sync(fx, n);
	assert_int_equal(store_get(fx->s, 7, &r), TB_OK);
	assert_int_equal(r->state, TB_STATE_PENDING);
	assert_int_equal(r->attempts, 0);
	assert_int_equal(r->crashes, 1);
	assert_int_equal(r->max_crashes, 3);
	assert_string_equal(r->queue, "mail");
	store_rec_free(r);
	assert_int_equal(store_get(fx->s, 13, &r), TB_OK);
	assert_int_equal(r->crashes, 2);
	assert_int_equal(r->max_crashes, 3);
	store_rec_free(r);
}

static void
test_insert_get_round_trips_key_and_forever(void **state)
{
	fixture   *fx = *state;
	store_rec *a  = rec_new(1, 1, "q", TB_STATE_PENDING);
	store_rec *b  = rec_new(2, 2, "q", TB_STATE_PENDING);
	store_rec *want;
	store_rec *got;
	rec_sink   k = { .n = 0 };

	a->key     = strdup("idem \xc3\xa9 key");
	a->forever = true;
	// b: no key, not forever.
	open_started(fx);
	insert_sync(fx, a);
	insert_sync(fx, b);

	want          = rec_new(1, 1, "q", TB_STATE_PENDING);
	want->key     = strdup("idem \xc3\xa9 key");
	want->forever = true;
	assert_int_equal(store_get(fx->s, 1, &got), TB_OK);
	assert_rec_equal(want, got);
	store_rec_free(got);
	store_rec_free(want);
	want = rec_new(2, 2, "q", TB_STATE_PENDING);
	assert_int_equal(store_get(fx->s, 2, &got), TB_OK);
	assert_rec_equal(want, got);
	store_rec_free(got);
	store_rec_free(want);

	// Recovery reads them too.
	close_store(fx);
	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	assert_int_equal(
	    store_recover(fx->s, NULL, NULL, recover_cb, &k), TB_OK);
	assert_int_equal(k.n, 2);
	assert_string_equal(k.recs[0]->key, "idem \xc3\xa9 key");
	assert_true(k.recs[0]->forever);
	assert_null(k.recs[1]->key);
	assert_false(k.recs[1]->forever);
	for (size_t i = 0; i < k.n; i++) {
		store_rec_free(k.recs[i]);
	}
}

static void
test_delete_by_ids_remembers_the_highest_id(void **state)
{
	fixture              *fx = *state;
	store_rec            *recs[5];
	store_op             *op;
	store_rec            *r;
	static const uint64_t ids[] = { 2, 5, 4, 99, 2 };
	store_filter          all   = { .state = -1 };
	uint64_t              max_id;

	for (uint32_t i = 0; i < 5; i++) {
		recs[i] =
		    rec_new(i + 1, (uint8_t) (i + 1), "q", TB_STATE_DONE);
	}
	open_started(fx);
	insert_many(fx, recs, 5);

	op        = op_new(STORE_OP_DELETE);
	op->ids   = ids;
	op->nids  = 5;
	op->count = 77;
	submit_sync(fx, op);
	assert_int_equal(op->rv, TB_OK);
	// 2, 5 and 4 go; 99 does not exist; the second 2 is already gone.
	assert_int_equal(op->count, 3);
	assert_ids(fx, &all, 1, 3);
	assert_int_equal(store_get(fx->s, 2, &r), TB_ENOTFOUND);

	// Recovery still sees the highest id ever stored, though its row is
	// gone, so no id is used twice.
	close_store(fx);
	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	assert_int_equal(
	    store_recover(fx->s, &max_id, NULL, NULL, NULL), TB_OK);
	assert_int_equal(max_id, 5);
}

static void
test_delete_finished_before_oldest_first(void **state)
{
	fixture     *fx = *state;
	store_rec   *recs[10];
	store_op    *op;
	store_filter all = { .state = -1 };

	// 1..8 done in q, finished at 100 + id, except 3 (dead); 9 done in
	// "other"; 10 done in q, finished long ago (and the newest row).
	for (uint32_t i = 0; i < 10; i++) {
		uint64_t id = i + 1;
		recs[i] = rec_new(id, (uint8_t) id, id == 9 ? "other" : "q",
		    id == 3 ? TB_STATE_DEAD : TB_STATE_DONE);
		recs[i]->finished_at = 100 + (int64_t) id;
	}
	recs[8]->finished_at = 1;
	recs[9]->finished_at = 1;
	// Out of id order in time: 6 finished before 1 and 2.
	recs[5]->finished_at = 50;
	open_started(fx);
	insert_many(fx, recs, 10);

	op                  = op_new(STORE_OP_DELETE);
	op->queue           = "q";
	op->del_state       = TB_STATE_DONE;
	op->finished_before = 105; // 1 2 4 6 10 qualify
	op->limit           = 2;
	submit_sync(fx, op);
	assert_int_equal(op->rv, TB_OK);
	assert_int_equal(op->count, 2);
	assert_ids(fx, &all, 3, 4, 5, 6, 7, 8, 9, 10); // lowest ids first

	op                  = op_new(STORE_OP_DELETE);
	op->queue           = "q";
	op->del_state       = TB_STATE_DONE;
	op->finished_before = 105;
	submit_sync(fx, op); // no limit
	assert_int_equal(op->rv, TB_OK);
	assert_int_equal(op->count, 3);
	assert_ids(fx, &all, 3, 5, 7, 8, 9);

	// Nothing left to prune: count 0, no error.
	op                  = op_new(STORE_OP_DELETE);
	op->queue           = "q";
	op->del_state       = TB_STATE_DONE;
	op->finished_before = 105;
	op->count           = 5;
	submit_sync(fx, op);
	assert_int_equal(op->rv, TB_OK);
	assert_int_equal(op->count, 0);
	assert_ids(fx, &all, 3, 5, 7, 8, 9);
}

static void
test_delete_created_before_and_unbounded(void **state)
{
	fixture     *fx = *state;
	store_rec   *recs[7];
	store_op    *op;
	store_filter all = { .state = -1 };

	// rec_new sets created_at = 1700000000000001 + id.
	for (uint32_t i = 0; i < 7; i++) {
		uint64_t id = i + 1;
		recs[i]     = rec_new(id, (uint8_t) id, "q",
                    id == 2 ? TB_STATE_PENDING : TB_STATE_CANCELLED);
	}
	open_started(fx);
	insert_many(fx, recs, 7);

	op                 = op_new(STORE_OP_DELETE);
	op->queue          = "q";
	op->del_state      = TB_STATE_CANCELLED;
	op->created_before = 1700000000000001 + 5; // ids 1..4
	submit_sync(fx, op);
	assert_int_equal(op->rv, TB_OK);
	assert_int_equal(op->count, 3); // 1 3 4; 2 is pending
	assert_ids(fx, &all, 2, 5, 6, 7);

	// No bounds, a limit: oldest first.
	op            = op_new(STORE_OP_DELETE);
	op->queue     = "q";
	op->del_state = TB_STATE_CANCELLED;
	op->limit     = 1;
	submit_sync(fx, op);
	assert_int_equal(op->count, 1);
	assert_ids(fx, &all, 2, 6, 7);

	// No bounds, no limit: all of them.
	op            = op_new(STORE_OP_DELETE);
	op->queue     = "q";
	op->del_state = TB_STATE_CANCELLED;
	submit_sync(fx, op);
	assert_int_equal(op->count, 2);
	assert_ids(fx, &all, 2);

	// Another queue matches nothing.
	op            = op_new(STORE_OP_DELETE);
	op->queue     = "nope";
	op->del_state = TB_STATE_PENDING;
	submit_sync(fx, op);
	assert_int_equal(op->rv, TB_OK);
	assert_int_equal(op->count, 0);
}

static void
test_schema2_invalid_ops_fail_alone(void **state)
{
	fixture    *fx = *state;
	store_op   *ops[9];
	store_sched nohandler = { .name = "n", .queue = "q" };
	store_sched nopayload = {
		.name = "n", .handler = "h", .queue = "q", .payload_len = 3
	};
	store_sched good = { .name = "g", .handler = "h", .queue = "q" };

	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	ops[0]            = op_new(STORE_OP_DELETE); // no ids, no queue
	ops[1]            = op_new(STORE_OP_DELETE);
	ops[1]->queue     = "q";
	ops[1]->del_state = -1; // no state
	ops[2]            = op_new(STORE_OP_DELETE);
	ops[2]->nids      = 3;                          // ids NULL
	ops[3]            = op_new(STORE_OP_QUEUE_SET); // no queue
	ops[4]            = op_new(STORE_OP_SCHED_PUT); // no sched
	ops[5]            = op_new(STORE_OP_SCHED_PUT);
	ops[5]->sched     = &nohandler;
	ops[6]            = op_new(STORE_OP_SCHED_PUT);
	ops[6]->sched     = &nopayload;
	ops[7]            = op_new(STORE_OP_SCHED_DEL); // no name
	ops[8]            = op_new(STORE_OP_SCHED_PUT);
	ops[8]->sched     = &good;
	for (size_t i = 0; i < 9; i++) {
		store_submit(fx->s, ops[i]); // one batch: not started yet
	}
	assert_int_equal(store_start(fx->s, notify_cb, fx), TB_OK);
	wait_done(fx, 9);
	for (size_t i = 0; i < 8; i++) {
		assert_int_equal(ops[i]->rv, TB_EINVAL);
	}
	assert_int_equal(ops[8]->rv, TB_OK);
	assert_int_equal(
	    sql_int(fx->path, "SELECT count(*) FROM schedules"), 1);
}

typedef struct {
	char   names[8][16];
	bool   paused[8];
	size_t n;
	size_t stop_after; // 0: never
} queue_sink;

static int
queue_cb(void *arg, const char *name, bool paused)
{
	queue_sink *k = arg;

	assert_true(k->n < 8);
	snprintf(k->names[k->n], sizeof(k->names[0]), "%s", name);
	k->paused[k->n++] = paused;
	return (k->stop_after > 0 && k->n == k->stop_after ? TB_EINTERNAL : 0);
}

static void
test_queue_set_then_load_queues(void **state)
{
	fixture   *fx = *state;
	queue_sink k  = { .n = 0 };
	static const struct {
		const char *q;
		bool        paused;
	} sets[] = { { "b", true }, { "a", true }, { "c", false },
		{ "b", false } };

	open_started(fx);
	assert_int_equal(store_load_queues(fx->s, queue_cb, &k), TB_OK);
	assert_int_equal(k.n, 0);
	for (size_t i = 0; i < 4; i++) {
		store_op *op = op_new(STORE_OP_QUEUE_SET);
		op->queue    = sets[i].q;
		op->paused   = sets[i].paused;
		submit_sync(fx, op);
		assert_int_equal(op->rv, TB_OK);
	}
	assert_int_equal(store_load_queues(fx->s, queue_cb, &k), TB_OK);
	assert_int_equal(k.n, 3); // by name; b updated in place
	assert_string_equal(k.names[0], "a");
	assert_true(k.paused[0]);
	assert_string_equal(k.names[1], "b");
	assert_false(k.paused[1]);
	assert_string_equal(k.names[2], "c");
	assert_false(k.paused[2]);

	// Survives a restart; a callback error stops the load.
	close_store(fx);
	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	k = (queue_sink) { .n = 0, .stop_after = 2 };
	assert_int_equal(store_load_queues(fx->s, queue_cb, &k), TB_EINTERNAL);
	assert_int_equal(k.n, 2);
	assert_string_equal(k.names[0], "a");
}

typedef struct {
	store_sched *scs[8];
	size_t       n;
	size_t       stop_after; // 0: never
} sched_sink;

static int
sched_cb(void *arg, store_sched *sc)
{
	sched_sink *k = arg;

	assert_true(k->n < 8);
	k->scs[k->n++] = sc; // ours from here
	return (k->stop_after > 0 && k->n == k->stop_after ? TB_EINTERNAL : 0);
}

static void
assert_sched_equal(const store_sched *a, const store_sched *b)
{
	assert_string_equal(a->name, b->name);
	assert_string_equal(a->handler, b->handler);
	assert_string_equal(a->queue, b->queue);
	assert_int_equal(a->payload_len, b->payload_len);
	if (a->payload_len > 0) {
		assert_memory_equal(a->payload, b->payload, a->payload_len);
	} else {
		assert_null(b->payload);
	}
	assert_int_equal(a->priority, b->priority);
	assert_int_equal(a->max_attempts, b->max_attempts);
	assert_int_equal(a->timeout_ms, b->timeout_ms);
	assert_true(a->every_ms == b->every_ms);
	if (a->cron == NULL) {
		assert_null(b->cron);
	} else {
		assert_string_equal(a->cron, b->cron);
	}
	assert_int_equal(a->catch_up, b->catch_up);
	assert_int_equal(a->paused, b->paused);
	assert_true(a->created_at == b->created_at);
	assert_true(a->next_at == b->next_at);
	assert_true(a->last_at == b->last_at);
	assert_true(a->fired == b->fired);
	assert_true(a->last_task == b->last_task);
}

static void
test_sched_put_replaces_and_loads_every_field(void **state)
{
	fixture       *fx   = *state;
	static uint8_t pl[] = { 0x93, 0x00, 0x01, 0xff };
	sched_sink     k    = { .n = 0 };
	store_op      *op;
	store_sched    first = {
		   .name         = "nightly",
		   .handler      = "old",
		   .queue        = "q0",
		   .every_ms     = 1000,
		   .priority     = 1,
		   .max_attempts = 1,
		   .timeout_ms   = 1,
		   .created_at   = 1,
		   .next_at      = 2,
	};
	store_sched every = {
		.name         = "nightly",
		.handler      = "report \xc3\xa9",
		.queue        = "reports",
		.payload      = pl,
		.payload_len  = sizeof(pl),
		.priority     = INT32_MIN,
		.max_attempts = UINT32_MAX,
		.timeout_ms   = UINT32_MAX,
		.every_ms     = UINT64_MAX, // the full range round-trips
		.cron         = NULL,
		.catch_up     = true,
		.paused       = true,
		.created_at   = -7,
		.next_at      = INT64_MAX,
		.last_at      = INT64_MIN,
		.fired        = UINT64_MAX - 1,
		.last_task    = (uint64_t) INT64_MAX + 2,
	};
	store_sched cron = {
		.name         = "a-cron",
		.handler      = "h",
		.queue        = "q",
		.priority     = 7,
		.max_attempts = 3,
		.timeout_ms   = 100,
		.every_ms     = 0,
		.cron         = "*/5 * * * *",
		.created_at   = 1700000000000000,
		.next_at      = 1700000000300000,
	};

	open_started(fx);
	assert_int_equal(store_load_schedules(fx->s, sched_cb, &k), TB_OK);
	assert_int_equal(k.n, 0);
	op        = op_new(STORE_OP_SCHED_PUT);
	op->sched = &first;
	assert_int_equal(submit_sync(fx, op)->rv, TB_OK);
	op        = op_new(STORE_OP_SCHED_PUT);
	op->sched = &cron;
	assert_int_equal(submit_sync(fx, op)->rv, TB_OK);
	op        = op_new(STORE_OP_SCHED_PUT); // same name: replaces
	op->sched = &every;
	assert_int_equal(submit_sync(fx, op)->rv, TB_OK);

	assert_int_equal(store_load_schedules(fx->s, sched_cb, &k), TB_OK);
	assert_int_equal(k.n, 2); // by name
	assert_sched_equal(&cron, k.scs[0]);
	assert_sched_equal(&every, k.scs[1]);
	for (size_t i = 0; i < k.n; i++) {
		store_sched_free(k.scs[i]);
	}
	store_sched_free(NULL);

	// After a restart; cb owns the schedule it stops on as well.
	close_store(fx);
	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	k = (sched_sink) { .n = 0, .stop_after = 1 };
	assert_int_equal(
	    store_load_schedules(fx->s, sched_cb, &k), TB_EINTERNAL);
	assert_int_equal(k.n, 1);
	assert_sched_equal(&cron, k.scs[0]);
	store_sched_free(k.scs[0]);
}

static void
test_sched_del_counts_one_then_zero(void **state)
{
	fixture    *fx = *state;
	store_sched sc = { .name = "x", .handler = "h", .queue = "q" };
	sched_sink  k  = { .n = 0 };
	store_op   *op;

	open_started(fx);
	op        = op_new(STORE_OP_SCHED_PUT);
	op->sched = &sc;
	assert_int_equal(submit_sync(fx, op)->rv, TB_OK);
	for (uint64_t want = 1;; want--) {
		op        = op_new(STORE_OP_SCHED_DEL);
		op->name  = "x";
		op->count = 9;
		submit_sync(fx, op);
		assert_int_equal(op->rv, TB_OK);
		assert_int_equal(op->count, want);
		if (want == 0) {
			break;
		}
	}
	assert_int_equal(store_load_schedules(fx->s, sched_cb, &k), TB_OK);
	assert_int_equal(k.n, 0);
}

typedef struct {
	char     queue[8][8];
	int      state[8];
	uint64_t n[8];
	size_t   len;
} count_sink;

static int
count_cb(void *arg, const char *queue, int state, uint64_t n)
{
	count_sink *k = arg;

	assert_true(k->len < 8);
	snprintf(k->queue[k->len], sizeof(k->queue[0]), "%s", queue);
	k->state[k->len] = state;
	k->n[k->len++]   = n;
	return (0);
}

static void
test_queue_counts_by_queue_and_state(void **state)
{
	fixture   *fx = *state;
	store_rec *recs[6];
	count_sink k = { .len = 0 };
	// (queue, state) for ids 1..6.
	static const char *qs[] = { "b", "a", "b", "a", "b", "b" };
	static const int   st[] = { 0, 2, 0, 2, 4, 0 };

	open_started(fx);
	assert_int_equal(store_queue_counts(fx->s, count_cb, &k), TB_OK);
	assert_int_equal(k.len, 0);
	for (uint32_t i = 0; i < 6; i++) {
		recs[i] = rec_new(i + 1, (uint8_t) (i + 1), qs[i], st[i]);
	}
	insert_many(fx, recs, 6);
	assert_int_equal(store_queue_counts(fx->s, count_cb, &k), TB_OK);
	assert_int_equal(k.len, 3);
	assert_string_equal(k.queue[0], "a");
	assert_int_equal(k.state[0], TB_STATE_DONE);
	assert_int_equal(k.n[0], 2);
	assert_string_equal(k.queue[1], "b");
	assert_int_equal(k.state[1], TB_STATE_PENDING);
	assert_int_equal(k.n[1], 3);
	assert_string_equal(k.queue[2], "b");
	assert_int_equal(k.state[2], TB_STATE_DEAD);
	assert_int_equal(k.n[2], 1);
}

static void
test_list2_applies_each_filter(void **state)
{
	fixture     *fx = *state;
	store_rec   *recs[120];
	store_filter f;
	uint64_t     ids[128];
	// base created_at of rec_new: 1700000000000001 + id.
	const int64_t c0 = 1700000000000001;

	// ids 1..120: queue a for odd ids, b for even; state id % 3;
	// handler "h5" for multiples of 5, else "noop".
	for (uint32_t i = 0; i < 120; i++) {
		uint64_t id = i + 1;
		recs[i]     = rec_new(
		        id, (uint8_t) id, id % 2 ? "a" : "b", (uint32_t) (id % 3));
		recs[i]->sid[1] = (uint8_t) (id >> 8);
		if (id % 5 == 0) {
			free(recs[i]->handler);
			recs[i]->handler = strdup("h5");
		}
	}
	open_started(fx);
	insert_many(fx, recs, 120);

	// Limit 0 means 100.
	f = (store_filter) { .state = -1 };
	assert_int_equal(list_ids(fx, &f, ids, 128), 100);
	assert_int_equal(ids[0], 1);
	assert_int_equal(ids[99], 100);

	f = (store_filter) { .state = -1, .after_id = 115 };
	assert_ids(fx, &f, 116, 117, 118, 119, 120);
	f = (store_filter) { .state = -1, .after_id = 10, .limit = 3 };
	assert_ids(fx, &f, 11, 12, 13);
	f = (store_filter) { .queue = "b", .state = -1, .after_id = 110 };
	assert_ids(fx, &f, 112, 114, 116, 118, 120);
	f = (store_filter) { .state = 0, .after_id = 105 };
	assert_ids(fx, &f, 108, 111, 114, 117, 120);
	f = (store_filter) { .state = -1, .handler = "h5", .limit = 4 };
	assert_ids(fx, &f, 5, 10, 15, 20);
	f = (store_filter) { .state = -1, .created_after = c0 + 117 };
	assert_ids(fx, &f, 118, 119, 120);
	f = (store_filter) { .state = -1, .created_before = c0 + 4 };
	assert_ids(fx, &f, 1, 2, 3);
	f = (store_filter) { .state = -1,
		.created_after      = c0 + 10,
		.created_before     = c0 + 13 };
	assert_ids(fx, &f, 11, 12);
	// All together: a, state 2, h5, created in (20, 100), after 30.
	f = (store_filter) {
		.queue          = "a",
		.state          = 2,
		.handler        = "h5",
		.created_after  = c0 + 20,
		.created_before = c0 + 100,
		.after_id       = 30,
	};
	assert_ids(fx, &f, 35, 65, 95);
	f = (store_filter) { .queue = "a", .state = 1, .handler = "h5" };
	assert_ids(fx, &f, 25, 55, 85, 115);
	f = (store_filter) { .state = -1, .handler = "none" };
	assert_int_equal(list_ids(fx, &f, ids, 128), 0);
}

static void
test_error_transient_and_errstr(void **state)
{
	(void) state;
	assert_true(store_error_transient(SQLITE_FULL));
	assert_true(store_error_transient(SQLITE_IOERR_WRITE));
	assert_true(store_error_transient(SQLITE_IOERR_FSYNC));
	assert_true(store_error_transient(SQLITE_READONLY_DBMOVED));
	assert_true(store_error_transient(SQLITE_BUSY));
	assert_false(store_error_transient(SQLITE_CONSTRAINT_TRIGGER));
	assert_false(store_error_transient(SQLITE_CORRUPT));
	assert_false(store_error_transient(SQLITE_MISUSE));
	assert_string_equal(store_errstr(SQLITE_FULL),
	    "database or disk is full (SQLITE_FULL)");
	assert_non_null(
	    strstr(store_errstr(SQLITE_IOERR_FSYNC), "(SQLITE_IOERR_FSYNC)"));
	// An extended code without its own text gets its primary code's.
	assert_non_null(
	    strstr(store_errstr(SQLITE_IOERR_ACCESS), "(SQLITE_IOERR)"));
	assert_string_equal(store_errstr(12345678), "storage error");
}

#ifdef TB_FAULT_INJECTION

// wait_kept polls store_kept until it is n (the writer keeps ops after a
// failed batch) or the deadline passes.
static void
wait_kept(fixture *fx, uint32_t n)
{
	for (int i = 0; store_kept(fx->s) != n; i++) {
		if (i >= WAIT_MS) {
			fail_msg(
			    "store_kept %u, want %u", store_kept(fx->s), n);
		}
		usleep(1000);
	}
}

static void
test_kept_op_survives_a_transient_failure(void **state)
{
	fixture   *fx = *state;
	store_op  *ins, *upd;
	store_rec *r;
	uint64_t   commits;

	open_started(fx);
	insert_sync(fx, rec_new(1, 1, "q", TB_STATE_PENDING));
	close_store(fx);

	// One batch (submitted before start) whose commit fails once, as
	// an I/O error would: the insert is refused, the update is kept and
	// committed by the retry.
	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	ins        = op_insert(1, rec_new(2, 2, "q", TB_STATE_PENDING));
	upd        = op_new(STORE_OP_UPDATE);
	upd->id    = 1;
	upd->state = TB_STATE_DONE;
	upd->keep  = true;
	store_submit(fx->s, ins);
	store_submit(fx->s, upd);
	assert_int_equal(tb_fault_set(TB_FAULT_STORE_COMMIT, 1, false), 0);
	assert_int_equal(store_start(fx->s, notify_cb, fx), TB_OK);
	wait_done(fx, 3);
	tb_fault_reset();
	// The refused insert comes back first, the kept update after it.
	assert_ptr_equal(fx->done[1], ins);
	assert_int_equal(ins->rv, TB_ESTORE);
	assert_int_equal(ins->src, SQLITE_IOERR);
	assert_int_equal(ins->dup_ids[0], 0);
	assert_ptr_equal(fx->done[2], upd);
	assert_int_equal(upd->rv, TB_OK);
	assert_int_equal(store_kept(fx->s), 0);
	assert_int_equal(store_get(fx->s, 2, &r), TB_ENOTFOUND);
	assert_int_equal(store_get(fx->s, 1, &r), TB_OK);
	assert_int_equal(r->state, TB_STATE_DONE);
	store_rec_free(r);
	store_counters(fx->s, &commits, NULL);
	assert_int_equal(commits, 1);
}

static void
test_kept_op_is_retried_without_new_ops(void **state)
{
	fixture   *fx = *state;
	store_op  *upd;
	store_rec *r;

	open_started(fx);
	insert_sync(fx, rec_new(1, 1, "q", TB_STATE_PENDING));
	// Three failed commits in a row: the writer retries on its own
	// (no new op comes) until the fourth commits.
	assert_int_equal(tb_fault_set(TB_FAULT_STORE_COMMIT, 1, true), 0);
	upd        = op_new(STORE_OP_UPDATE);
	upd->id    = 1;
	upd->state = TB_STATE_RUNNING;
	upd->keep  = true;
	store_submit(fx->s, upd);
	wait_kept(fx, 1);
	for (int i = 0; tb_fault_fired(TB_FAULT_STORE_COMMIT) < 3; i++) {
		assert_true(i < WAIT_MS);
		usleep(1000);
	}
	assert_int_equal(fx->ndone, 1); // still kept
	assert_int_equal(tb_fault_set(TB_FAULT_STORE_COMMIT, 0, false), 0);
	wait_done(fx, 2);
	assert_int_equal(upd->rv, TB_OK);
	assert_int_equal(store_get(fx->s, 1, &r), TB_OK);
	assert_int_equal(r->state, TB_STATE_RUNNING);
	store_rec_free(r);
}

static void
test_stop_gives_up_kept_ops(void **state)
{
	fixture  *fx = *state;
	store_op *upd;

	open_started(fx);
	insert_sync(fx, rec_new(1, 1, "q", TB_STATE_PENDING));
	assert_int_equal(tb_fault_set(TB_FAULT_STORE_COMMIT, 1, true), 0);
	upd        = op_new(STORE_OP_UPDATE);
	upd->id    = 1;
	upd->state = TB_STATE_RUNNING;
	upd->keep  = true;
	store_submit(fx->s, upd);
	wait_kept(fx, 1);
	// The store cannot write: store_stop tries a few more times, then
	// fails the kept op instead of hanging.
	store_stop(fx->s);
	tb_fault_reset();
	collect(fx);
	assert_int_equal(fx->ndone, 2);
	assert_ptr_equal(fx->done[1], upd);
	assert_int_equal(upd->rv, TB_ESTORE);
	assert_int_equal(store_kept(fx->s), 0);
}

#endif // TB_FAULT_INJECTION

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_open_creates_schema_v2),
		T(test_open_rejects_bad_arguments),
		T(test_reopen_keeps_data),
		T(test_open_refuses_newer_schema),
		T(test_open_refuses_non_database),
		T(test_insert_get_round_trips_every_field),
		T(test_insert_duplicate_sid_across_batches),
		T(test_insert_duplicate_sid_within_batch),
		T(test_update_changes_exactly_the_fields),
		T(test_barrier_completes_after_earlier_ops),
		T(test_done_list_keeps_submission_order),
		T(test_group_commit_under_load),
		T(test_stop_commits_what_was_queued),
		T(test_submit_after_stop_is_closed),
		T(test_recover_hands_back_running_tasks_unchanged),
		T(test_recover_stops_when_cb_fails),
		T(test_list_filters_queue_state_after_and_limit),
		T(test_failing_batch_rolls_back_everything),
		T(test_insert_invalid_record_fails_alone),
		T(test_migrate_v1_keeps_rows),
		T(test_migrate_v2_keeps_tasks_and_adds_crash_figures),
		T(test_whandler_put_is_kept_once_and_loaded),
		T(test_insert_get_round_trips_key_and_forever),
		T(test_delete_by_ids_remembers_the_highest_id),
		T(test_delete_finished_before_oldest_first),
		T(test_delete_created_before_and_unbounded),
		T(test_schema2_invalid_ops_fail_alone),
		T(test_queue_set_then_load_queues),
		T(test_sched_put_replaces_and_loads_every_field),
		T(test_sched_del_counts_one_then_zero),
		T(test_queue_counts_by_queue_and_state),
		T(test_list2_applies_each_filter),
		T(test_error_transient_and_errstr),
#ifdef TB_FAULT_INJECTION
		T(test_kept_op_survives_a_transient_failure),
		T(test_kept_op_is_retried_without_new_ops),
		T(test_stop_gives_up_kept_ops),
#endif
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
