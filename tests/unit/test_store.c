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

#include "store.h"
#include "taskbroker.h"

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
			int rv = pthread_cond_timedwait(&fx->cv, &fx->mtx, &deadline);
			if (rv == ETIMEDOUT) {
				pthread_mutex_unlock(&fx->mtx);
				fail_msg("timed out: %zu of %zu ops done", fx->ndone, n);
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
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
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
test_open_creates_schema_v1(void **state)
{
	fixture *fx = *state;

	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	store_close(fx->s);
	fx->s = NULL;
	assert_int_equal(sql_int(fx->path, "PRAGMA user_version"), 1);
	assert_int_equal(sql_int(fx->path,
	                     "SELECT count(*) FROM sqlite_master WHERE "
	                     "type = 'table' AND name = 'tasks'"),
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
	assert_int_equal(sql_int(fx->path, "PRAGMA user_version"), 1);
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

	sql_exec(fx->path, "CREATE TABLE x(y); PRAGMA user_version = 2;");
	assert_int_equal(store_open(&s, fx->path, STORE_FULL), TB_ESTORE);
	assert_null(s);
	// Untouched: still version 2.
	assert_int_equal(sql_int(fx->path, "PRAGMA user_version"), 2);
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
	assert_memory_equal(a->sid, b->sid, STORE_SID_LEN);
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
}

static void
test_insert_get_round_trips_every_field(void **state)
{
	fixture        *fx  = *state;
	static const uint8_t pl[] = { 0x82, 0x00, 0x01, 0x00, 0x00, 0xff, 0 };
	static const uint8_t res[] = { 0xc0, 0x00, 0x7f };
	store_rec      *a   = rec_new(41, 1, "emails", TB_STATE_PENDING);
	store_rec      *b   = rec_new(42, 2, "", TB_STATE_DONE);
	store_rec      *got;
	store_op       *op;

	for (int i = 0; i < STORE_SID_LEN; i++) {
		a->sid[i] = (uint8_t) (i * 17); // includes a NUL byte
	}
	a->payload     = malloc(sizeof(pl));
	a->payload_len = sizeof(pl);
	memcpy(a->payload, pl, sizeof(pl));
	a->priority = INT32_MIN;
	a->attempts = 2;
	a->max_attempts = UINT32_MAX;
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
	fixture   *fx = *state;
	store_op  *op;
	store_rec *got;
	store_rec **recs;
	size_t     n;

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
	assert_int_equal(store_list(fx->s, NULL, -1, 0, 100, &recs, &n), TB_OK);
	assert_int_equal(n, 1);
	store_rec_free(recs[0]);
	free(recs);
}

static void
test_insert_duplicate_sid_within_batch(void **state)
{
	fixture   *fx = *state;
	store_op  *op1, *op2, *op3;
	store_rec **recs;
	size_t     n;

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

	assert_int_equal(store_list(fx->s, NULL, -1, 0, 100, &recs, &n), TB_OK);
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
		    op_insert(1, rec_new(i, (uint8_t) i, "q", TB_STATE_PENDING)));
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
			op = op_insert(1,
			    rec_new(i + 1, (uint8_t) i, "q", TB_STATE_PENDING));
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
		store_rec *r  = rec_new(id, (uint8_t) id, "q", TB_STATE_PENDING);
		r->sid[1]     = (uint8_t) (id >> 8);
		store_op *op  = op_insert(1, r);
		op->arg       = (void *) (uintptr_t) id;
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
	assert_int_equal(store_list(fx->s, NULL, -1, 0, 5000, &recs, &n), TB_OK);
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
		    op_insert(1, rec_new(i, (uint8_t) i, "q", TB_STATE_PENDING)));
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
	store_submit(fx->s,
	    op_insert(1, rec_new(101, 101, "q", TB_STATE_PENDING)));
	store_stop(fx->s);
	collect(fx);
	assert_int_equal(fx->ndone, 101);
	assert_int_equal(fx->done[100]->rv, TB_OK);
	store_close(fx->s);
	fx->s = NULL;

	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	assert_int_equal(store_list(fx->s, "q", -1, 0, 1000, &recs, &n), TB_OK);
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

static void
test_recover_requeues_interrupted_tasks(void **state)
{
	fixture  *fx = *state;
	rec_sink  k  = { .n = 0 };
	uint64_t  counts[TB_STATE_CANCELLED + 1];
	uint64_t  max_id = 99;
	store_rec *r;

	// Ids out of order on purpose: recovery hands them back sorted.
	open_started(fx);
	store_rec *run_left = rec_new(30, 1, "q", TB_STATE_RUNNING);
	run_left->attempts  = 1; // of 3: may run again
	run_left->started_at = 55;
	store_rec *run_last = rec_new(20, 2, "q", TB_STATE_RUNNING);
	run_last->attempts  = 3; // of 3: used up
	store_rec *failed   = rec_new(10, 3, "q", TB_STATE_FAILED);
	store_rec *pending  = rec_new(40, 4, "q", TB_STATE_PENDING);
	store_rec *done     = rec_new(50, 5, "q", TB_STATE_DONE);
	store_rec *dead     = rec_new(60, 6, "q", TB_STATE_DEAD);
	store_rec *cancel   = rec_new(45, 7, "q", TB_STATE_CANCELLED);
	store_submit(fx->s, op_insert(7, run_left, run_last, failed, pending,
	                        done, dead, cancel));
	wait_done(fx, 1);
	assert_int_equal(fx->done[0]->rv, TB_OK);
	close_store(fx);

	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	int64_t t0 = (int64_t) time(NULL) * 1000000;
	assert_int_equal(store_recover(fx->s, &max_id, counts, recover_cb, &k),
	    TB_OK);
	assert_int_equal(max_id, 60);
	assert_int_equal(k.n, 3);
	assert_int_equal(k.recs[0]->id, 10);
	assert_int_equal(k.recs[0]->state, TB_STATE_FAILED);
	assert_int_equal(k.recs[1]->id, 30);
	assert_int_equal(k.recs[1]->state, TB_STATE_PENDING);
	assert_int_equal(k.recs[1]->attempts, 1); // the attempt stays spent
	assert_int_equal(k.recs[1]->started_at, 55);
	assert_string_equal(k.recs[1]->handler, "noop");
	assert_int_equal(k.recs[2]->id, 40);
	assert_int_equal(counts[TB_STATE_PENDING], 2);
	assert_int_equal(counts[TB_STATE_RUNNING], 0);
	assert_int_equal(counts[TB_STATE_DONE], 1);
	assert_int_equal(counts[TB_STATE_FAILED], 1);
	assert_int_equal(counts[TB_STATE_DEAD], 2);
	assert_int_equal(counts[TB_STATE_CANCELLED], 1);
	for (size_t i = 0; i < k.n; i++) {
		store_rec_free(k.recs[i]);
	}

	assert_int_equal(store_get(fx->s, 20, &r), TB_OK);
	assert_int_equal(r->state, TB_STATE_DEAD);
	assert_int_equal(r->attempts, 3);
	assert_non_null(r->error);
	assert_non_null(strstr(r->error, "interrupted"));
	assert_true(r->finished_at >= t0);
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
	fixture *fx = *state;
	rec_sink k  = { .n = 0, .stop_after = 2 };
	uint64_t max_id = 0;
	uint64_t counts[TB_STATE_CANCELLED + 1];

	assert_int_equal(store_open(&fx->s, fx->path, STORE_FULL), TB_OK);
	// Empty database first.
	assert_int_equal(store_recover(fx->s, &max_id, counts, recover_cb, &k),
	    TB_OK);
	assert_int_equal(max_id, 0);
	assert_int_equal(k.n, 0);
	for (int i = 0; i <= TB_STATE_CANCELLED; i++) {
		assert_int_equal(counts[i], 0);
	}
	for (uint64_t i = 1; i <= 4; i++) {
		store_submit(fx->s, op_insert(1,
		                        rec_new(i, (uint8_t) i, "q",
		                            TB_STATE_PENDING)));
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
	store_op   *op = op_new(STORE_OP_INSERT);
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

	assert_int_equal(store_list(fx->s, NULL, -1, 0, 100, &recs, &n), TB_OK);
	assert_int_equal(n, 10);
	free_list(recs, n);

	assert_int_equal(store_list(fx->s, "a", -1, 0, 100, &recs, &n), TB_OK);
	assert_int_equal(n, 5); // 1 3 5 7 9
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(recs[i]->id, 2 * i + 1);
		assert_string_equal(recs[i]->queue, "a");
	}
	free_list(recs, n);

	assert_int_equal(store_list(fx->s, NULL, 1, 0, 100, &recs, &n), TB_OK);
	assert_int_equal(n, 4); // 1 4 7 10
	assert_int_equal(recs[0]->id, 1);
	assert_int_equal(recs[3]->id, 10);
	free_list(recs, n);

	assert_int_equal(store_list(fx->s, "b", 1, 0, 100, &recs, &n), TB_OK);
	assert_int_equal(n, 2); // 4 10
	assert_int_equal(recs[0]->id, 4);
	assert_int_equal(recs[1]->id, 10);
	free_list(recs, n);

	assert_int_equal(store_list(fx->s, NULL, -1, 4, 3, &recs, &n), TB_OK);
	assert_int_equal(n, 3); // 5 6 7
	assert_int_equal(recs[0]->id, 5);
	assert_int_equal(recs[2]->id, 7);
	free_list(recs, n);

	assert_int_equal(store_list(fx->s, "a", 0, 3, 1, &recs, &n), TB_OK);
	assert_int_equal(n, 1); // a with state 0: 3 9 -> after 3: 9
	assert_int_equal(recs[0]->id, 9);
	free_list(recs, n);

	assert_int_equal(store_list(fx->s, "none", -1, 0, 100, &recs, &n), TB_OK);
	assert_int_equal(n, 0);
	free_list(recs, n);
	assert_int_equal(store_list(fx->s, NULL, -1, 0, 0, &recs, &n), TB_OK);
	assert_int_equal(n, 0);
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
	good = op_insert(1, rec_new(1, 1, "q", TB_STATE_PENDING));
	upd  = op_new(STORE_OP_UPDATE);
	upd->id    = 1;
	upd->state = TB_STATE_RUNNING;
	bad = op_insert(2, rec_new(2, 2, "q", TB_STATE_PENDING),
	    rec_new(3, 3, "boom", TB_STATE_PENDING));
	invalid       = op_new(99); // a caller bug fails alone
	store_submit(fx->s, good);
	store_submit(fx->s, upd);
	store_submit(fx->s, invalid);
	store_submit(fx->s, bad);
	assert_int_equal(store_start(fx->s, notify_cb, fx), TB_OK);
	wait_done(fx, 4);
	assert_int_equal(good->rv, TB_ESTORE);
	assert_int_equal(upd->rv, TB_ESTORE);
	assert_int_equal(bad->rv, TB_ESTORE);
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

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_open_creates_schema_v1),
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
		T(test_recover_requeues_interrupted_tasks),
		T(test_recover_stops_when_cb_fails),
		T(test_list_filters_queue_state_after_and_limit),
		T(test_failing_batch_rolls_back_everything),
		T(test_insert_invalid_record_fails_alone),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
