// test_sqlite.c: the sqlite handler end to end: parameters of every type,
// several statements in one transaction, a failing task in a shared batch,
// refused payloads, many producers writing into one database, and
// exactly-once across a crash between the target's commit and the
// broker's "done" record. Each test starts its own broker with
// --sqlite-db app=DIR/app.db and checks the database with SQLite directly.
//
// The producers are this binary re-executed with argv[1] = "--producer"
// (see main), each with its own tb_client, as in test_producers.c.

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <msgpack.h>
#include <sqlite3.h>

#include "harness.h"

#define WAIT_MS TBH_MS(20000)

#define NPRODUCERS 8
#define PER_PRODUCER 5000
#define PRODUCER_BATCH 100

// Packing payloads.

typedef struct mp {
	msgpack_sbuffer sb;
	msgpack_packer  pk;
} mp;

static void
mp_init(mp *m)
{
	msgpack_sbuffer_init(&m->sb);
	msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void
mp_str(mp *m, const char *s)
{
	tbh_pack_cstr(&m->pk, s);
}

// mp_sql_head starts {"db": db, "sql": sql, "params": ...}; the caller packs
// the params value (a map of 3 keys) or nothing (2 keys).
static void
mp_sql_head(mp *m, const char *db, const char *sql, bool with_params)
{
	msgpack_pack_map(&m->pk, with_params ? 3 : 2);
	mp_str(m, "db");
	mp_str(m, db);
	mp_str(m, "sql");
	mp_str(m, sql);
	if (with_params) {
		mp_str(m, "params");
	}
}

// sql_task submits {"db": db, "sql": sql} and waits for it to end.
static tb_task *
sql_task(
    tb_client *c, const char *db, const char *sql, const tb_submit_opts *opts)
{
	mp    m;
	tb_id id;

	mp_init(&m);
	mp_sql_head(&m, db, sql, false);
	id = tbh_submit(c, "sqlite", m.sb.data, m.sb.size, opts);
	msgpack_sbuffer_destroy(&m.sb);
	return (tbh_wait_final(c, id, WAIT_MS));
}

static void
expect_error_has(tb_task *t, const char *part)
{
	const char *e = tb_task_error(t);

	if (e == NULL || strstr(e, part) == NULL) {
		print_error("task %llu: error \"%s\" lacks \"%s\"\n",
		    (unsigned long long) tb_task_id(t), e ? e : "(none)",
		    part);
		tb_task_free(t);
		fail();
	}
}

// Reading results.

static int64_t
obj_int(const msgpack_object *o)
{
	assert_non_null(o);
	assert_true(o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
	    o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER);
	return (o->via.i64);
}

static void
expect_str(const msgpack_object *o, const char *s)
{
	assert_non_null(o);
	assert_int_equal(o->type, MSGPACK_OBJECT_STR);
	assert_int_equal(o->via.str.size, strlen(s));
	assert_memory_equal(o->via.str.ptr, s, strlen(s));
}

// Direct database access.

static char *
db_path(const tbh_fix *f)
{
	static char path[TBH_PATH];

	snprintf(path, sizeof(path), "%s/app.db", f->b.dir);
	return (path);
}

// db_count returns the single integer sql yields on the app database.
static int64_t
db_count(const tbh_fix *f, const char *sql)
{
	sqlite3      *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t       n  = -1;

	assert_int_equal(
	    sqlite3_open_v2(db_path(f), &db, SQLITE_OPEN_READONLY, NULL),
	    SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		print_error("%s: %s\n", sql, sqlite3_errmsg(db));
	} else if (sqlite3_step(st) == SQLITE_ROW) {
		n = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return (n);
}

// make_dir makes the broker's temp dir before the start (through
// tbh_write_config, which sets up the harness's paths as tbh_start would),
// so that a --sqlite-db path can name a file in it.
static void
make_dir(tbh_broker *b)
{
	char note[TBH_PATH];

	assert_int_equal(tbh_write_config(b, "sqlite-test.txt",
	                     "app.db is the sqlite handler's database\n", note,
	                     sizeof(note)),
	    0);
}

// start_with_db starts the fixture's broker with --sqlite-db app=DIR/app.db
// (the dir is made first so the path can name it), and --log-level debug
// if debug.
static void
start_with_db(tbh_fix *f, bool debug)
{
	char arg[TBH_PATH + 8];

	make_dir(&f->b);
	snprintf(arg, sizeof(arg), "app=%s/app.db", f->b.dir);
	const char *const args[] = { "--sqlite-db", arg,
		debug ? "--log-level" : NULL, "debug", NULL };
	tbh_fix_start(f, args);
}

// max_batch returns the largest batch the writer committed, from the
// broker's debug log.
static long
max_batch(const tbh_fix *f)
{
	const char *key = "committed a batch of ";
	char       *log = tbh_read_file(f->b.log_path, NULL);
	long        max = 0;

	assert_non_null(log);
	for (const char *p = log; (p = strstr(p, key)) != NULL;) {
		long n;

		p += strlen(key);
		n   = strtol(p, NULL, 10);
		max = n > max ? n : max;
	}
	free(log);
	return (max);
}

static void
test_sqlite_insert_select_round_trip_every_type(void **state)
{
	tbh_fix          *f = *state;
	tb_task          *t;
	mp                m;
	tb_id             id;
	msgpack_unpacked  up;
	const void       *res;
	size_t            len, off = 0;
	static const char blob[] = { 0, 1, 2, (char) 0xff };

	start_with_db(f, false);
	t = sql_task(f->c, "app",
	    "CREATE TABLE v(id INTEGER PRIMARY KEY, n, i, neg, fl, s, b, "
	    "yes, no)",
	    NULL);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);

	// Positional: one of each msgpack type.
	mp_init(&m);
	mp_sql_head(&m, "app",
	    "INSERT INTO v(n, i, neg, fl, s, b, yes, no) "
	    "VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
	    true);
	msgpack_pack_array(&m.pk, 8);
	msgpack_pack_nil(&m.pk);
	msgpack_pack_uint64(&m.pk, 9007199254740993ull);
	msgpack_pack_int64(&m.pk, -42);
	msgpack_pack_double(&m.pk, 2.5);
	mp_str(&m, "h\xc3\xa9llo");
	msgpack_pack_bin(&m.pk, sizeof(blob));
	msgpack_pack_bin_body(&m.pk, blob, sizeof(blob));
	msgpack_pack_true(&m.pk);
	msgpack_pack_false(&m.pk);
	id = tbh_submit(f->c, "sqlite", m.sb.data, m.sb.size, NULL);
	msgpack_sbuffer_destroy(&m.sb);
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	msgpack_unpacked_init(&up);
	res = tb_task_result(t, &len);
	assert_int_equal(
	    msgpack_unpack_next(&up, res, len, &off), MSGPACK_UNPACK_SUCCESS);
	assert_int_equal(obj_int(tbh_map_get(&up.data, "changes")), 1);
	assert_int_equal(
	    obj_int(tbh_map_get(&up.data, "last_insert_rowid")), 1);
	assert_null(tbh_map_get(&up.data, "rows")); // an INSERT returns none
	msgpack_unpacked_destroy(&up);
	tb_task_free(t);

	// Named: with the prefix as written, and without (':' added).
	mp_init(&m);
	mp_sql_head(&m, "app",
	    "INSERT INTO v(n, i, s, b) VALUES(:n, @i, $s, :b) RETURNING id, s",
	    true);
	msgpack_pack_map(&m.pk, 4);
	mp_str(&m, ":n");
	msgpack_pack_nil(&m.pk);
	mp_str(&m, "@i");
	msgpack_pack_int64(&m.pk, 7);
	mp_str(&m, "$s");
	mp_str(&m, "");
	mp_str(&m, "b");
	msgpack_pack_bin(&m.pk, 0);
	id = tbh_submit(f->c, "sqlite", m.sb.data, m.sb.size, NULL);
	msgpack_sbuffer_destroy(&m.sb);
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);

	// Read both rows back through the handler: every SQLite type.
	t = sql_task(f->c, "app",
	    "SELECT id, n, i, neg, fl, s, b, yes, no, typeof(b) FROM v "
	    "ORDER BY id",
	    NULL);
	tbh_expect_state(t, TB_STATE_DONE);
	msgpack_unpacked_init(&up);
	off = 0;
	res = tb_task_result(t, &len);
	assert_int_equal(
	    msgpack_unpack_next(&up, res, len, &off), MSGPACK_UNPACK_SUCCESS);
	const msgpack_object *cols = tbh_map_get(&up.data, "columns");
	const msgpack_object *rows = tbh_map_get(&up.data, "rows");
	assert_non_null(cols);
	assert_int_equal(cols->via.array.size, 10);
	expect_str(&cols->via.array.ptr[5], "s");
	assert_non_null(rows);
	assert_int_equal(rows->type, MSGPACK_OBJECT_ARRAY);
	assert_int_equal(rows->via.array.size, 2);
	assert_int_equal(
	    tbh_map_get(&up.data, "truncated")->via.boolean, false);
	const msgpack_object *r0 = rows->via.array.ptr[0].via.array.ptr;
	const msgpack_object *r1 = rows->via.array.ptr[1].via.array.ptr;
	assert_int_equal(r0[1].type, MSGPACK_OBJECT_NIL);
	assert_int_equal(obj_int(&r0[2]), 9007199254740993ll);
	assert_int_equal(obj_int(&r0[3]), -42);
	assert_true(
	    r0[4].type == MSGPACK_OBJECT_FLOAT64 && r0[4].via.f64 == 2.5);
	expect_str(&r0[5], "h\xc3\xa9llo");
	assert_int_equal(r0[6].type, MSGPACK_OBJECT_BIN);
	assert_int_equal(r0[6].via.bin.size, sizeof(blob));
	assert_memory_equal(r0[6].via.bin.ptr, blob, sizeof(blob));
	assert_int_equal(obj_int(&r0[7]), 1);
	assert_int_equal(obj_int(&r0[8]), 0);
	assert_int_equal(r1[1].type, MSGPACK_OBJECT_NIL);
	assert_int_equal(obj_int(&r1[2]), 7);
	expect_str(&r1[5], "");     // an empty string stays text, not NULL
	expect_str(&r1[9], "blob"); // and empty binary stays a blob
	msgpack_unpacked_destroy(&up);
	tb_task_free(t);

	// A big result is cut at 1000 rows and says so.
	t = sql_task(f->c, "app",
	    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
	    "WHERE x < 5000) SELECT x FROM c",
	    NULL);
	tbh_expect_state(t, TB_STATE_DONE);
	msgpack_unpacked_init(&up);
	off = 0;
	res = tb_task_result(t, &len);
	assert_int_equal(
	    msgpack_unpack_next(&up, res, len, &off), MSGPACK_UNPACK_SUCCESS);
	assert_int_equal(tbh_map_get(&up.data, "rows")->via.array.size, 1000);
	assert_int_equal(
	    tbh_map_get(&up.data, "truncated")->via.boolean, true);
	msgpack_unpacked_destroy(&up);
	tb_task_free(t);

	assert_int_equal(db_count(f, "SELECT count(*) FROM v"), 2);
	f->passed = true;
}

// pack_statements packs {"db": "app", "statements": [{"sql": "INSERT INTO
// kv(k) VALUES(?)", "params": [k]} for each of ks]}.
static void
pack_statements(mp *m, const int64_t *ks, size_t n)
{
	mp_init(m);
	msgpack_pack_map(&m->pk, 2);
	mp_str(m, "db");
	mp_str(m, "app");
	mp_str(m, "statements");
	msgpack_pack_array(&m->pk, n);
	for (size_t i = 0; i < n; i++) {
		msgpack_pack_map(&m->pk, 2);
		mp_str(m, "sql");
		mp_str(m, "INSERT INTO kv(k) VALUES(?)");
		mp_str(m, "params");
		msgpack_pack_array(&m->pk, 1);
		msgpack_pack_int64(&m->pk, ks[i]);
	}
}

static void
test_sqlite_statements_of_a_task_commit_together(void **state)
{
	tbh_fix             *f = *state;
	tb_task             *t;
	mp                   m;
	tb_id                id;
	static const int64_t ok[]  = { 1, 2, 3 };
	static const int64_t bad[] = { 4, 5, 1 }; // 1 is taken

	start_with_db(f, false);
	t = sql_task(f->c, "app", "CREATE TABLE kv(k INTEGER UNIQUE)", NULL);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);

	pack_statements(&m, ok, 3);
	id = tbh_submit(f->c, "sqlite", m.sb.data, m.sb.size, NULL);
	msgpack_sbuffer_destroy(&m.sb);
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);
	assert_int_equal(db_count(f, "SELECT count(*) FROM kv"), 3);

	// The third statement fails: the first two are undone with it.
	pack_statements(&m, bad, 3);
	id = tbh_submit(f->c, "sqlite", m.sb.data, m.sb.size, NULL);
	msgpack_sbuffer_destroy(&m.sb);
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DEAD);
	expect_error_has(t, "statements[2]: UNIQUE constraint failed");
	tb_task_free(t);
	assert_int_equal(db_count(f, "SELECT count(*) FROM kv"), 3);
	assert_int_equal(
	    db_count(f, "SELECT count(*) FROM kv WHERE k > 3"), 0);
	f->passed = true;
}

#define NBATCH 300

static void
test_sqlite_failing_task_fails_alone_in_a_shared_batch(void **state)
{
	tbh_fix     *f = *state;
	tb_task     *t;
	tb_task_spec specs[NBATCH];
	mp           ms[NBATCH];
	tb_id        ids[NBATCH];
	size_t       ndone = 0, ndead = 0;
	char        *log;

	start_with_db(f, true);
	mp_init(&ms[0]);
	msgpack_pack_map(&ms[0].pk, 2);
	mp_str(&ms[0], "db");
	mp_str(&ms[0], "app");
	mp_str(&ms[0], "statements");
	msgpack_pack_array(&ms[0].pk, 2);
	msgpack_pack_map(&ms[0].pk, 1);
	mp_str(&ms[0], "sql");
	mp_str(&ms[0], "CREATE TABLE u(k INTEGER UNIQUE)");
	msgpack_pack_map(&ms[0].pk, 1);
	mp_str(&ms[0], "sql");
	// A trigger that ends the whole transaction, not just the statement:
	// the batch must start over without the task that fired it.
	mp_str(&ms[0],
	    "CREATE TRIGGER u_neg BEFORE INSERT ON u "
	    "WHEN NEW.k < 0 BEGIN "
	    "SELECT RAISE(ROLLBACK, 'negative k'); END");
	t = tbh_wait_final(f->c,
	    tbh_submit(f->c, "sqlite", ms[0].sb.data, ms[0].sb.size, NULL),
	    WAIT_MS);
	msgpack_sbuffer_destroy(&ms[0].sb);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);

	// One request, so the tasks reach the writer together: k = i, except
	// that 100 and 200 repeat k = 0 (a constraint violation) and 150 is
	// negative (the trigger rolls back the transaction).
	for (int i = 0; i < NBATCH; i++) {
		int64_t k = i == 100 || i == 200 ? 0 : i == 150 ? -1 : i;

		mp_init(&ms[i]);
		mp_sql_head(&ms[i], "app", "INSERT INTO u(k) VALUES(?)", true);
		msgpack_pack_array(&ms[i].pk, 1);
		msgpack_pack_int64(&ms[i].pk, k);
		specs[i] = (tb_task_spec) { "sqlite", ms[i].sb.data,
			ms[i].sb.size, NULL };
	}
	TBH_OK(tb_submit_batch(f->c, specs, NBATCH, ids));
	for (int i = 0; i < NBATCH; i++) {
		msgpack_sbuffer_destroy(&ms[i].sb);
	}
	for (int i = 0; i < NBATCH; i++) {
		t = tbh_wait_final(f->c, ids[i], WAIT_MS);
		if (i == 100 || i == 200) {
			tbh_expect_state(t, TB_STATE_DEAD);
			expect_error_has(t, "UNIQUE constraint failed: u.k");
			ndead++;
		} else if (i == 150) {
			tbh_expect_state(t, TB_STATE_DEAD);
			expect_error_has(t, "negative k");
			ndead++;
		} else {
			tbh_expect_state(t, TB_STATE_DONE);
			ndone++;
		}
		tb_task_free(t);
	}
	assert_int_equal(ndone, NBATCH - 3);
	assert_int_equal(ndead, 3);
	assert_int_equal(db_count(f, "SELECT count(*) FROM u"), NBATCH - 3);
	assert_int_equal(
	    db_count(f, "SELECT count(DISTINCT k) FROM u"), NBATCH - 3);
	// One applied record per task that took effect.
	assert_int_equal(
	    db_count(f, "SELECT count(*) FROM _taskbroker_applied"),
	    NBATCH - 3 + 1);
	// The tasks did share transactions, and the trigger's task made one
	// start over.
	print_message("largest batch: %ld tasks\n", max_batch(f));
	assert_true(max_batch(f) >= 2);
	assert_non_null(log = tbh_read_file(f->b.log_path, NULL));
	assert_non_null(strstr(log, "rolled back the batch's transaction"));
	free(log);
	f->passed = true;
}

static void
test_sqlite_refuses_names_that_are_not_configured(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_task       *t;
	char           outside[TBH_PATH];
	char           other[TBH_PATH + 16];
	struct stat    sb;
	struct {
		const char *db, *sql, *error;
	} cases[] = {
		{ "nope", "SELECT 1",
		    "unknown database \"nope\" (configured: app, other)" },
		{ outside, "CREATE TABLE x(a)", "looks like a path" },
		{ "app", "COMMIT", "transaction control" },
		{ "app", "BEGIN", "transaction control" },
		{ "app", "SAVEPOINT a", "transaction control" },
		{ "app", "SELECT 1; SELECT 2", "more than one statement" },
		{ "app", "ATTACH 'x.db' AS o", "ATTACH" },
		{ "app", "PRAGMA synchronous = OFF", "PRAGMA" },
		{ "app", "DELETE FROM _taskbroker_applied", "_taskbroker_" },
		{ "app", "SELEC 1", "syntax error" },
		{ "app", "SELECT ?", "1 parameters but no params" },
	};

	make_dir(&f->b);
	snprintf(outside, sizeof(outside), "%s/outside.db", f->b.dir);
	snprintf(other, sizeof(other), "other=%s/other.db", f->b.dir);
	{
		char app[TBH_PATH + 8];

		snprintf(app, sizeof(app), "app=%s/app.db", f->b.dir);
		const char *const args[] = { "--sqlite-db", app, "--sqlite-db",
			other, NULL };
		tbh_fix_start(f, args);
	}
	// Three attempts allowed, yet each ends dead after one: retrying
	// cannot help any of these.
	o.max_attempts = 3;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		t = sql_task(f->c, cases[i].db, cases[i].sql, &o);
		tbh_expect_state(t, TB_STATE_DEAD);
		expect_error_has(t, cases[i].error);
		assert_int_equal(tb_task_attempts(t), 1);
		tb_task_free(t);
	}
	// The path in db was never opened or created.
	assert_int_equal(stat(outside, &sb), -1);
	assert_int_equal(errno, ENOENT);
	f->passed = true;
}

static void
test_sqlite_without_databases_tasks_end_dead(void **state)
{
	tbh_fix *f = *state;
	tb_task *t;

	tbh_fix_start(f, NULL);
	t = sql_task(f->c, "app", "SELECT 1", NULL);
	tbh_expect_state(t, TB_STATE_DEAD);
	expect_error_has(t, "no sqlite databases are configured");
	tb_task_free(t);
	f->passed = true;
}

static void
test_sqlite_bad_configuration_stops_the_start(void **state)
{
	tbh_fix *f = *state;
	char     ok[TBH_PATH + 8];
	char     dup[TBH_PATH + 8];
	char    *log;

	make_dir(&f->b);
	snprintf(ok, sizeof(ok), "app=%s/app.db", f->b.dir);
	snprintf(dup, sizeof(dup), "app=%s/b.db", f->b.dir);
	{
		const char *const args[] = { "--sqlite-db", "no-equals-sign",
			NULL };
		assert_int_equal(tbh_start(&f->b, args), -1);
	}
	{
		const char *const args[] = { "--sqlite-db", ok, "--sqlite-db",
			dup, NULL };
		assert_int_equal(tbh_start(&f->b, args), -1);
	}
	{
		const char *const args[] = { "--sqlite-db",
			"app=/nonexistent-dir/app.db", NULL };
		assert_int_equal(tbh_start(&f->b, args), -1);
	}
	assert_non_null(log = tbh_read_file(f->b.log_path, NULL));
	assert_non_null(strstr(log, "bad --sqlite-db \"no-equals-sign\""));
	assert_non_null(strstr(log, "the name \"app\" is given twice"));
	assert_non_null(strstr(log,
	    "cannot open database \"app\" at "
	    "/nonexistent-dir/app.db"));
	free(log);
	f->passed = true;
}

static void
test_sqlite_cancelled_long_read_ends_and_frees_the_writer(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_task       *t;
	int64_t        t0;

	start_with_db(f, false);
	// An endless read-only query: the attempt's timeout cancels it and
	// the progress handler interrupts it.
	o.timeout_ms = 300;
	t0           = tbh_now_ms();
	t            = sql_task(f->c, "app",
	               "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
	                          "SELECT count(*) FROM c",
	               &o);
	if (tb_task_state(t) == TB_STATE_DONE) {
		print_error("an endless query ended done\n");
		tb_task_free(t);
		fail();
	}
	tb_task_free(t);
	assert_true(tbh_now_ms() - t0 < TBH_MS(5000));
	// The writer is free for the next task.
	t = sql_task(f->c, "app", "SELECT 1", NULL);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);
	f->passed = true;
}

#define NSHUT 3000

static void
test_sqlite_shutdown_midway_then_restart_applies_each_once(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_task_spec   specs[1000];
	mp             ms[1000];
	tb_task       *t;
	tb_stats       st;

	start_with_db(f, false);
	t = sql_task(f->c, "app", "CREATE TABLE r(i INTEGER NOT NULL)", NULL);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);

	// No constraint on r: a task applied twice would show as a second
	// row.
	o.max_attempts = 5;
	for (int b = 0; b < NSHUT / 1000; b++) {
		for (int i = 0; i < 1000; i++) {
			mp_init(&ms[i]);
			mp_sql_head(
			    &ms[i], "app", "INSERT INTO r(i) VALUES(?)", true);
			msgpack_pack_array(&ms[i].pk, 1);
			msgpack_pack_int(&ms[i].pk, b * 1000 + i);
			specs[i] = (tb_task_spec) { "sqlite", ms[i].sb.data,
				ms[i].sb.size, &o };
		}
		TBH_OK(tb_submit_batch(f->c, specs, 1000, NULL));
		for (int i = 0; i < 1000; i++) {
			msgpack_sbuffer_destroy(&ms[i].sb);
		}
	}
	assert_int_equal(tbh_stop(&f->b, TBH_MS(20000)), 0);
	print_message("after shutdown: %lld of %d rows\n",
	    (long long) db_count(f, "SELECT count(*) FROM r"), NSHUT);
	assert_int_equal(tbh_restart(&f->b), 0);
	TBH_OK(tb_drain(f->c, NULL, TBH_MS(60000)));
	TBH_OK(tb_stats_get(f->c, &st));
	assert_int_equal(st.done, NSHUT + 1);
	assert_int_equal(st.dead + st.cancelled, 0);
	assert_int_equal(db_count(f, "SELECT count(*) FROM r"), NSHUT);
	assert_int_equal(
	    db_count(f, "SELECT count(DISTINCT i) FROM r"), NSHUT);
	f->passed = true;
}

// producer_main submits n sqlite tasks, each inserting one row (p, i), to
// url in batches. Exit status 0 when all were acknowledged, 1 at the first
// error.
static int
producer_main(const char *url, int p, long n, long batch)
{
	tb_client   *c;
	tb_task_spec specs[TB_MAX_BATCH];
	mp           ms[TB_MAX_BATCH];
	long         done = 0;
	int          rv;

	if (batch < 1 || batch > TB_MAX_BATCH) {
		return (2);
	}
	if ((rv = tb_client_open(&c, url)) != TB_OK ||
	    (rv = tb_client_set_timeout(c, 60000)) != TB_OK) {
		fprintf(
		    stderr, "producer: open %s: %s\n", url, tb_errname(rv));
		return (1);
	}
	while (done < n) {
		long k = n - done < batch ? n - done : batch;

		for (long i = 0; i < k; i++) {
			mp_init(&ms[i]);
			mp_sql_head(&ms[i], "app",
			    "INSERT INTO rows(p, i) VALUES(?, ?)", true);
			msgpack_pack_array(&ms[i].pk, 2);
			msgpack_pack_int(&ms[i].pk, p);
			msgpack_pack_int64(&ms[i].pk, done + i);
			specs[i] = (tb_task_spec) { "sqlite", ms[i].sb.data,
				ms[i].sb.size, NULL };
		}
		rv = tb_submit_batch(c, specs, (size_t) k, NULL);
		for (long i = 0; i < k; i++) {
			msgpack_sbuffer_destroy(&ms[i].sb);
		}
		if (rv != TB_OK) {
			fprintf(stderr,
			    "producer %d: submit after %ld acknowledged: %s\n",
			    p, done, tb_errname(rv));
			tb_client_close(c);
			return (1);
		}
		done += k;
	}
	tb_client_close(c);
	return (0);
}

static void
test_sqlite_eight_producers_5000_rows_each_none_lost_none_locked(void **state)
{
	tbh_fix *f = *state;
	tb_task *t;
	pid_t    pids[NPRODUCERS];
	char     nstr[16], bstr[16], pstr[NPRODUCERS][8];
	int64_t  t0, t_sub;
	tb_stats st;
	char    *log;

	start_with_db(f, false);
	t = sql_task(f->c, "app",
	    "CREATE TABLE rows(p INTEGER NOT NULL, i INTEGER NOT NULL, "
	    "PRIMARY KEY(p, i))",
	    NULL);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);

	snprintf(nstr, sizeof(nstr), "%d", PER_PRODUCER);
	snprintf(bstr, sizeof(bstr), "%d", PRODUCER_BATCH);
	t0 = tbh_now_ms();
	for (int i = 0; i < NPRODUCERS; i++) {
		snprintf(pstr[i], sizeof(pstr[i]), "%d", i);
		const char *const args[] = { "--producer", f->b.url, pstr[i],
			nstr, bstr, NULL };
		if (tbh_spawn_self(&pids[i], args, NULL, NULL) != 0) {
			for (int j = 0; j < i; j++) {
				tbh_kill_reap(pids[j]);
			}
			fail();
		}
	}
	for (int i = 0; i < NPRODUCERS; i++) {
		int code = tbh_waitpid(pids[i], TBH_MS(120000));
		if (code != 0) {
			print_error("producer %d exit %d\n", i, code);
			for (int j = i; j < NPRODUCERS; j++) {
				tbh_kill_reap(pids[j]);
			}
			fail();
		}
	}
	t_sub = tbh_now_ms() - t0;
	TBH_OK(tb_drain(f->c, NULL, TBH_MS(120000)));
	print_message("%d producers x %d sqlite inserts (batches of %d): "
	              "submitted in %lld ms, all ended after %lld ms\n",
	    NPRODUCERS, PER_PRODUCER, PRODUCER_BATCH, (long long) t_sub,
	    (long long) (tbh_now_ms() - t0));

	TBH_OK(tb_stats_get(f->c, &st));
	assert_int_equal(st.dead + st.failed + st.cancelled, 0);
	assert_int_equal(st.done, NPRODUCERS * PER_PRODUCER + 1);
	assert_int_equal(db_count(f, "SELECT count(*) FROM rows"),
	    NPRODUCERS * PER_PRODUCER);
	assert_int_equal(db_count(f,
	                     "SELECT count(*) FROM (SELECT p FROM "
	                     "rows GROUP BY p HAVING count(*) = 5000 "
	                     "AND min(i) = 0 AND max(i) = 4999)"),
	    NPRODUCERS);
	assert_non_null(log = tbh_read_file(f->b.log_path, NULL));
	assert_null(strstr(log, "database is locked"));
	free(log);
	f->passed = true;
}

static void
test_sqlite_crash_after_commit_does_not_apply_twice(void **state)
{
	tbh_fix         *f = *state;
	tb_submit_opts   o = TB_SUBMIT_OPTS_INIT;
	tb_task         *t;
	tb_id            id;
	mp               m;
	char            *log;
	const void      *res;
	size_t           len, off = 0;
	msgpack_unpacked up;

#ifndef TBH_FAULTS
	skip(); // a build without the fault seam (TB_FAULT_INJECTION=OFF)
#endif
	// Commit 1 creates the table; the broker dies right after commit 2,
	// the insert, before it records the task as done (fault.h).
	setenv("TB_FAULT", "sqlite_exit_after_commit:2", 1);
	start_with_db(f, false);
	unsetenv("TB_FAULT"); // not for the restart
	t = sql_task(f->c, "app",
	    "CREATE TABLE once(id INTEGER PRIMARY KEY AUTOINCREMENT, v)",
	    NULL);
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);

	o.max_attempts = 3;
	mp_init(&m);
	mp_sql_head(&m, "app", "INSERT INTO once(v) VALUES(?)", true);
	msgpack_pack_array(&m.pk, 1);
	mp_str(&m, "exactly once");
	id = tbh_submit(f->c, "sqlite", m.sb.data, m.sb.size, &o);
	msgpack_sbuffer_destroy(&m.sb);
	assert_int_equal(tbh_wait_exit(&f->b, TBH_MS(10000)), 0);
	assert_int_equal(tbh_exit_code(&f->b), 137);
	assert_int_equal(db_count(f, "SELECT count(*) FROM once"), 1);

	tbh_log_note(&f->b, "restart without the fault hook");
	assert_int_equal(tbh_restart(&f->b), 0);
	t = tbh_wait_final(f->c, id, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	// The broker's death interrupted the first attempt: it was refunded
	// and counted as a crash, so the run after the restart is attempt 1
	// again, and it reports the first run's result.
	assert_int_equal(tb_task_attempts(t), 1);
	assert_int_equal(tb_task_crashes(t), 1);
	msgpack_unpacked_init(&up);
	res = tb_task_result(t, &len);
	assert_int_equal(
	    msgpack_unpack_next(&up, res, len, &off), MSGPACK_UNPACK_SUCCESS);
	assert_int_equal(obj_int(tbh_map_get(&up.data, "changes")), 1);
	assert_int_equal(
	    obj_int(tbh_map_get(&up.data, "last_insert_rowid")), 1);
	msgpack_unpacked_destroy(&up);
	tb_task_free(t);
	assert_int_equal(db_count(f, "SELECT count(*) FROM once"), 1);
	assert_non_null(log = tbh_read_file(f->b.log_path, NULL));
	assert_non_null(strstr(log, "already applied"));
	free(log);
	f->passed = true;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, tbh_teardown)

int
main(int argc, char **argv)
{
	if (argc == 6 && strcmp(argv[1], "--producer") == 0) {
		return (producer_main(
		    argv[2], atoi(argv[3]), atol(argv[4]), atol(argv[5])));
	}
	const struct CMUnitTest tests[] = {
		T(test_sqlite_insert_select_round_trip_every_type),
		T(test_sqlite_statements_of_a_task_commit_together),
		T(test_sqlite_failing_task_fails_alone_in_a_shared_batch),
		T(test_sqlite_refuses_names_that_are_not_configured),
		T(test_sqlite_without_databases_tasks_end_dead),
		T(test_sqlite_bad_configuration_stops_the_start),
		T(test_sqlite_cancelled_long_read_ends_and_frees_the_writer),
		T(test_sqlite_shutdown_midway_then_restart_applies_each_once),
		T(test_sqlite_eight_producers_5000_rows_each_none_lost_none_locked),
		T(test_sqlite_crash_after_commit_does_not_apply_twice),
	};

	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
