// test_fault.c: the fault-injection seam itself (broker/fault.c): a
// disarmed site never fires, a countdown fires exactly once at its Nth
// hit, a persistent one at every hit from the Nth, sites count apart, and
// the TB_FAULT spec parser arms all or nothing, and the SQLite VFS shim
// (broker/fault_vfs.c) fails a WAL write or an fsync where it is armed and
// leaves the database usable.

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault.h"

static int
reset(void **state)
{
	(void) state;
	tb_fault_reset();
	return (0);
}

// hits calls tb_fault(id) n times and returns how many fired.
static int
hits(int id, int n)
{
	int fired = 0;

	for (int i = 0; i < n; i++) {
		fired += tb_fault(id) != 0;
	}
	return (fired);
}

static void
test_fault_disarmed_never_fires_nor_counts(void **state)
{
	(void) state;
	for (int id = 1; id < TB_FAULT_END; id++) {
		assert_int_equal(hits(id, 100), 0);
		assert_int_equal(tb_fault_hits(id), 0);
		assert_int_equal(tb_fault_fired(id), 0);
	}
}

static void
test_fault_countdown_fires_once_at_n(void **state)
{
	(void) state;
	for (uint32_t n = 1; n <= 6; n++) {
		assert_int_equal(
		    tb_fault_set(TB_FAULT_STORE_COMMIT, n, false), 0);
		for (uint32_t i = 1; i < n; i++) {
			assert_int_equal(tb_fault(TB_FAULT_STORE_COMMIT), 0);
		}
		assert_int_not_equal(tb_fault(TB_FAULT_STORE_COMMIT), 0);
		assert_int_equal(hits(TB_FAULT_STORE_COMMIT, 50), 0);
		assert_int_equal(tb_fault_hits(TB_FAULT_STORE_COMMIT), n + 50);
		assert_int_equal(tb_fault_fired(TB_FAULT_STORE_COMMIT), 1);
	}
}

static void
test_fault_persistent_fires_at_every_hit_from_n(void **state)
{
	(void) state;
	assert_int_equal(tb_fault_set(TB_FAULT_STORE_BEGIN, 3, true), 0);
	assert_int_equal(tb_fault(TB_FAULT_STORE_BEGIN), 0);
	assert_int_equal(tb_fault(TB_FAULT_STORE_BEGIN), 0);
	assert_int_equal(hits(TB_FAULT_STORE_BEGIN, 20), 20);
	assert_int_equal(tb_fault_hits(TB_FAULT_STORE_BEGIN), 22);
	assert_int_equal(tb_fault_fired(TB_FAULT_STORE_BEGIN), 20);
}

static void
test_fault_zero_countdown_disarms(void **state)
{
	(void) state;
	assert_int_equal(tb_fault_set(TB_FAULT_STORE_INSERT, 1, true), 0);
	assert_int_equal(hits(TB_FAULT_STORE_INSERT, 3), 3);
	assert_int_equal(tb_fault_set(TB_FAULT_STORE_INSERT, 0, true), 0);
	assert_int_equal(hits(TB_FAULT_STORE_INSERT, 10), 0);
	assert_int_equal(tb_fault_hits(TB_FAULT_STORE_INSERT), 0);
}

static void
test_fault_rearming_restarts_the_count(void **state)
{
	(void) state;
	assert_int_equal(tb_fault_set(TB_FAULT_STORE_COMMIT, 3, false), 0);
	assert_int_equal(hits(TB_FAULT_STORE_COMMIT, 2), 0);
	// Armed again before it fired: the 3rd hit from now, not the next.
	assert_int_equal(tb_fault_set(TB_FAULT_STORE_COMMIT, 3, false), 0);
	assert_int_equal(hits(TB_FAULT_STORE_COMMIT, 2), 0);
	assert_int_not_equal(tb_fault(TB_FAULT_STORE_COMMIT), 0);
}

static void
test_fault_sites_count_apart(void **state)
{
	(void) state;
	assert_int_equal(tb_fault_set(TB_FAULT_STORE_COMMIT, 2, false), 0);
	assert_int_equal(hits(TB_FAULT_STORE_BEGIN, 5), 0);
	assert_int_equal(hits(TB_FAULT_SQLITE_EXIT_AFTER_COMMIT, 5), 0);
	assert_int_equal(tb_fault(TB_FAULT_STORE_COMMIT), 0);
	assert_int_not_equal(tb_fault(TB_FAULT_STORE_COMMIT), 0);
	assert_int_equal(tb_fault_hits(TB_FAULT_STORE_BEGIN), 0);
}

static void
test_fault_unknown_id_is_refused_and_never_fires(void **state)
{
	(void) state;
	assert_int_equal(tb_fault_set(0, 1, true), -1);
	assert_int_equal(tb_fault_set(TB_FAULT_END, 1, true), -1);
	assert_int_equal(tb_fault_set(-1, 1, true), -1);
	assert_int_equal(tb_fault(0), 0);
	assert_int_equal(tb_fault(TB_FAULT_END), 0);
	assert_int_equal(tb_fault(-7), 0);
	assert_int_equal(tb_fault_hits(TB_FAULT_END), 0);
}

static void
test_fault_ids_never_change(void **state)
{
	(void) state;
	// Specs in tests and scripts name sites; their numbers are fixed.
	assert_int_equal(TB_FAULT_STORE_BEGIN, 1);
	assert_int_equal(TB_FAULT_STORE_INSERT, 2);
	assert_int_equal(TB_FAULT_STORE_COMMIT, 3);
	assert_int_equal(TB_FAULT_SQLITE_EXIT_AFTER_COMMIT, 4);
	assert_int_equal(TB_FAULT_STORE_WAL_WRITE, 5);
	assert_int_equal(TB_FAULT_STORE_WAL_FULL, 6);
	assert_int_equal(TB_FAULT_STORE_FSYNC, 7);
}

// vfs_insert runs one INSERT in its own transaction on db and returns the
// SQLite code of the commit (the statement's, if it failed first).
static int
vfs_insert(sqlite3 *db, int v)
{
	char sql[64];

	snprintf(sql, sizeof(sql), "INSERT INTO t VALUES(%d)", v);
	return (sqlite3_exec(db, sql, NULL, NULL, NULL));
}

static int
vfs_count(sqlite3 *db)
{
	sqlite3_stmt *st;
	int           n = -1;

	assert_int_equal(
	    sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL),
	    SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW) {
		n = sqlite3_column_int(st, 0);
	}
	sqlite3_finalize(st);
	return (n);
}

static void
test_fault_vfs_fails_wal_writes_and_fsyncs(void **state)
{
	char        dir[] = "/tmp/tbfault-XXXXXX";
	char        path[64];
	char        other[80];
	const char *vfs = tb_fault_vfs();
	sqlite3    *db  = NULL;

	(void) state;
	assert_non_null(vfs);
	assert_string_equal(vfs, tb_fault_vfs()); // registered once
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/t.db", dir);
	assert_int_equal(sqlite3_open_v2(path, &db,
	                     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
	    SQLITE_OK);
	sqlite3_extended_result_codes(db, 1);
	assert_int_equal(sqlite3_exec(db,
	                     "PRAGMA journal_mode = WAL; PRAGMA synchronous = "
	                     "FULL; CREATE TABLE t(v)",
	                     NULL, NULL, NULL),
	    SQLITE_OK);

	// Each site fails its first hit; the transaction rolls back, and the
	// next one works on the same connection.
	assert_int_equal(tb_fault_set(TB_FAULT_STORE_WAL_FULL, 1, false), 0);
	assert_int_equal(vfs_insert(db, 1), SQLITE_FULL);
	assert_int_equal(tb_fault_fired(TB_FAULT_STORE_WAL_FULL), 1);
	assert_int_equal(vfs_insert(db, 2), SQLITE_OK);
	assert_int_equal(tb_fault_set(TB_FAULT_STORE_WAL_WRITE, 1, false), 0);
	assert_int_equal(vfs_insert(db, 3), SQLITE_IOERR_WRITE);
	assert_int_equal(vfs_insert(db, 4), SQLITE_OK);
	assert_int_equal(tb_fault_set(TB_FAULT_STORE_FSYNC, 1, false), 0);
	assert_int_equal(vfs_insert(db, 5), SQLITE_IOERR_FSYNC);
	assert_int_equal(vfs_insert(db, 6), SQLITE_OK);
	assert_true(sqlite3_get_autocommit(db));
	assert_int_equal(vfs_count(db), 3); // 2, 4, 6
	// Disarmed, the shim writes through: the rows are there for a
	// connection through the default VFS too.
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	assert_int_equal(
	    sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL),
	    SQLITE_OK);
	assert_int_equal(vfs_count(db), 3);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	unlink(path);
	snprintf(other, sizeof(other), "%s-wal", path);
	unlink(other);
	snprintf(other, sizeof(other), "%s-shm", path);
	unlink(other);
	assert_int_equal(rmdir(dir), 0);
}

static void
test_fault_spec_once_and_persistent(void **state)
{
	(void) state;
	assert_int_equal(tb_fault_arm("store_commit:3,store_begin:2+"), 0);
	assert_int_equal(hits(TB_FAULT_STORE_COMMIT, 2), 0);
	assert_int_not_equal(tb_fault(TB_FAULT_STORE_COMMIT), 0);
	assert_int_equal(hits(TB_FAULT_STORE_COMMIT, 10), 0);
	assert_int_equal(tb_fault(TB_FAULT_STORE_BEGIN), 0);
	assert_int_equal(hits(TB_FAULT_STORE_BEGIN, 10), 10);
	assert_int_equal(hits(TB_FAULT_STORE_INSERT, 10), 0);
}

static void
test_fault_spec_empty_arms_nothing(void **state)
{
	(void) state;
	assert_int_equal(tb_fault_arm(NULL), 0);
	assert_int_equal(tb_fault_arm(""), 0);
	assert_int_equal(hits(TB_FAULT_STORE_COMMIT, 10), 0);
}

static void
test_fault_spec_rejects_bad_entries_and_arms_nothing(void **state)
{
	static const char *const bad[] = {
		"store_commit",
		"store_commit:",
		"store_commit:0",
		"store_commit:x",
		"store_commit:3++",
		"store_commit:+",
		"store_commit:-1",
		"store_commit:2147483648",
		"store_commit:99999999999",
		"nosuch:1",
		":1",
		"store_commit:1,",
		"store_commit:1,bogus:2", // the good entry is not armed either
		"store_commit:1 ",
	};

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (tb_fault_arm(bad[i]) != -1) {
			fail_msg("spec \"%s\" was accepted", bad[i]);
		}
		assert_int_equal(hits(TB_FAULT_STORE_COMMIT, 3), 0);
	}
	assert_int_equal(tb_fault_arm("store_commit:2147483647"), 0);
}

static void
test_fault_spec_from_environment(void **state)
{
	(void) state;
	assert_int_equal(setenv("TB_FAULT", "store_insert:2", 1), 0);
	assert_int_equal(tb_fault_init_env(), 0);
	unsetenv("TB_FAULT");
	assert_int_equal(tb_fault(TB_FAULT_STORE_INSERT), 0);
	assert_int_not_equal(tb_fault(TB_FAULT_STORE_INSERT), 0);
	assert_int_equal(setenv("TB_FAULT", "store_insert", 1), 0);
	assert_int_equal(tb_fault_init_env(), -1);
	unsetenv("TB_FAULT");
}

#define NTHREADS 4
#define PER_THREAD 20000

static void *
hammer(void *arg)
{
	int *fired = arg;

	*fired = hits(TB_FAULT_STORE_COMMIT, PER_THREAD);
	return (NULL);
}

static void
test_fault_countdown_fires_once_under_concurrent_hits(void **state)
{
	pthread_t t[NTHREADS];
	int       fired[NTHREADS];
	int       total = 0;

	(void) state;
	assert_int_equal(
	    tb_fault_set(TB_FAULT_STORE_COMMIT, PER_THREAD, false), 0);
	for (int i = 0; i < NTHREADS; i++) {
		assert_int_equal(
		    pthread_create(&t[i], NULL, hammer, &fired[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		total += fired[i];
	}
	assert_int_equal(total, 1);
	assert_int_equal(
	    tb_fault_hits(TB_FAULT_STORE_COMMIT), NTHREADS * PER_THREAD);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, reset, reset)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_fault_disarmed_never_fires_nor_counts),
		T(test_fault_countdown_fires_once_at_n),
		T(test_fault_persistent_fires_at_every_hit_from_n),
		T(test_fault_zero_countdown_disarms),
		T(test_fault_rearming_restarts_the_count),
		T(test_fault_sites_count_apart),
		T(test_fault_unknown_id_is_refused_and_never_fires),
		T(test_fault_ids_never_change),
		T(test_fault_spec_once_and_persistent),
		T(test_fault_spec_empty_arms_nothing),
		T(test_fault_spec_rejects_bad_entries_and_arms_nothing),
		T(test_fault_spec_from_environment),
		T(test_fault_countdown_fires_once_under_concurrent_hits),
		T(test_fault_vfs_fails_wal_writes_and_fsyncs),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
