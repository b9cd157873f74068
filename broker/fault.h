// fault.h: the one fault-injection seam (STYLE.md section 10), for tests.
//
// DESIGN. A fault site is one place in the broker that asks
// tb_fault(TB_FAULT_X) and, when the answer is non-zero, behaves exactly
// as if the real operation had failed there (or the process had died
// there). Each site has its own id in TB_FAULTS below, used at that site
// only. Ids are never reused or renumbered: a retired site keeps its
// number, commented out, so a spec in an old test cannot arm a new site.
// As SQLite's sqlite3FaultSim, the seam exists only in test builds: without
// TB_FAULT_INJECTION (CMake option; ON when TB_TESTS is ON, forced OFF
// otherwise, as in `deploy/bootstrap.sh start`) tb_fault is an inline
// function returning 0, every site compiles to its normal path, and
// nothing reads the environment.
//
// Each site counts its hits while it is armed. Armed with countdown N it
// fires at the Nth hit after arming, once, or with persistent at the Nth
// and every later hit. A countdown test (SQLite's test_malloc.c) arms
// N = 1, 2, 3, ... in turn, until a run where the fault never fires.
//
// Arming a broker process: at start (tb_fault_init_env, from main.c) the
// environment variable TB_FAULT holds a spec, a comma-separated list of
// entries NAME:N (fire at the Nth hit, once) or NAME:N+ (the Nth hit and
// every later one), NAME being a site's name below, N 1..2147483647:
//
//     TB_FAULT=store_commit:3                the 3rd store commit fails
//     TB_FAULT=store_commit:3+               every one from the 3rd fails
//     TB_FAULT=store_begin:1,store_insert:5  two sites at once
//
// A malformed spec stops the start (the broker logs why and exits 2).
// Unit tests arm sites in-process with tb_fault_set. Every armed site and
// every fault that fires is logged as a warning ("fault: ..."), so a test
// can tell from the log whether its fault fired.
//
// Threads: tb_fault may be called from any thread (sites run on the loop,
// the store writer and the sqlite writers); the counters are atomics.
// tb_fault_set, tb_fault_reset and tb_fault_init_env are for one thread
// while no site can be hit concurrently (at start, or a unit test's main
// thread).
// Lock order: no locks.
// Ownership: nothing is kept but the counters.

#ifndef FAULT_H
#define FAULT_H

#include <stdbool.h>
#include <stdint.h>

// TB_FAULTS(X) lists every site as X(ID, number, "name"). Add a new site
// at the end with the next number. The sites:
//
//   store_begin   store.c store_run_batch: BEGIN fails (as SQLITE_IOERR);
//                 every op of the batch completes with TB_ESTORE.
//   store_insert  store.c store_run_batch: the INSERT of one task row
//                 fails (one hit per row); the batch rolls back, TB_ESTORE.
//   store_commit  store.c store_run_batch: COMMIT fails; the batch rolls
//                 back and every op of it completes with TB_ESTORE.
//   sqlite_exit_after_commit
//                 handlers/sqlite.c: the process calls _exit(137) right
//                 after a sqlite writer's COMMIT, before the outcome is
//                 reported (the exactly-once test).
//   store_wal_write
//                 fault_vfs.c: one xWrite to the task store's WAL file
//                 fails with SQLITE_IOERR_WRITE, nothing written (one hit
//                 per write call: a frame header and its page are two).
//   store_wal_full
//                 fault_vfs.c: the same write fails with SQLITE_FULL, as
//                 on a full disk (its own hit count).
//   store_fsync   fault_vfs.c: one xSync of the task store's database or
//                 WAL file fails with SQLITE_IOERR_FSYNC after the data
//                 was written (so a refused commit may still be on disk).
//   nng_epipe     nngfix.c: the broker's sendmsg leaves one EPIPE as it
//                 is (one hit per EPIPE), so nng 1.5.2's listener bug
//                 stops a listener again (the guard's test).
#define TB_FAULTS(X)                                                        \
	X(TB_FAULT_STORE_BEGIN, 1, "store_begin")                           \
	X(TB_FAULT_STORE_INSERT, 2, "store_insert")                         \
	X(TB_FAULT_STORE_COMMIT, 3, "store_commit")                         \
	X(TB_FAULT_SQLITE_EXIT_AFTER_COMMIT, 4, "sqlite_exit_after_commit") \
	X(TB_FAULT_STORE_WAL_WRITE, 5, "store_wal_write")                   \
	X(TB_FAULT_STORE_WAL_FULL, 6, "store_wal_full")                     \
	X(TB_FAULT_STORE_FSYNC, 7, "store_fsync")                           \
	X(TB_FAULT_NNG_EPIPE, 8, "nng_epipe")

enum tb_fault_id {
#define TB_FAULT_ENUM_(id, n, name) id = n,
	TB_FAULTS(TB_FAULT_ENUM_)
#undef TB_FAULT_ENUM_
	    TB_FAULT_END // one past the highest id
};

#ifdef TB_FAULT_INJECTION

// tb_fault counts a hit of site id and returns non-zero when the fault
// must fire there (logging it), 0 otherwise (also for an unknown id or a
// site that is not armed). Any thread.
int tb_fault(int id);

// tb_fault_set arms site id to fire at the countdown-th hit from now (1:
// the next), once, or at that hit and every later one if persistent;
// countdown 0 disarms it. Its hit and fire counts restart at 0. Returns 0,
// or -1 for an unknown id.
int tb_fault_set(int id, uint32_t countdown, bool persistent);

// tb_fault_reset disarms every site and zeroes its counts.
void tb_fault_reset(void);

// tb_fault_hits returns how many times site id was hit since it was last
// armed (hits of a site that is not armed are not counted); tb_fault_fired
// how many of those fired. 0 for an unknown id.
uint64_t tb_fault_hits(int id);
uint64_t tb_fault_fired(int id);

// tb_fault_arm arms the sites a spec names (the syntax above; NULL or ""
// arms nothing). All or nothing: on a malformed entry or an unknown name
// nothing is armed and it returns -1 after a log line naming the entry;
// else 0.
int tb_fault_arm(const char *spec);

// tb_fault_init_env arms the sites named by the environment variable
// TB_FAULT, as tb_fault_arm does. Returns 0 or -1. At start, before any
// thread that may hit a site.
int tb_fault_init_env(void);

// tb_fault_vfs returns the name of a SQLite VFS that wraps the default
// one ("unix") and adds the sites store_wal_write, store_wal_full and
// store_fsync (fault_vfs.c), registering it on the first call (not as the
// default: only connections that name it, the task store's, go through
// it). NULL, after a log line, if it cannot be registered; a NULL name
// opens with the default VFS. Any thread.
const char *tb_fault_vfs(void);

#else // !TB_FAULT_INJECTION: no seam, every site takes its normal path.

static inline int
tb_fault(int id)
{
	(void) id;
	return (0);
}

static inline int
tb_fault_init_env(void)
{
	return (0);
}

static inline const char *
tb_fault_vfs(void)
{
	return (NULL); // the default VFS
}

#endif // TB_FAULT_INJECTION

#endif // FAULT_H
