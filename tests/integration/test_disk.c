// test_disk.c: the real broker on a real full disk. Each test mounts a
// small tmpfs (2 MiB) on the broker's data dir, fills it with a file until
// the kernel says ENOSPC, and checks the promises of README "Full disk":
// submits get store_error with the cause, reads keep working, a task that
// ends meanwhile keeps its outcome in memory and has it written once space
// returns, the broker recovers without a restart when the file is removed,
// and every acknowledged task is on disk after a restart.
//
// Mounting needs root (CAP_SYS_ADMIN); where mount is not permitted the
// tests are skipped with a message saying so. The tmpfs is unmounted at
// the end, also after a failure (teardown), once the broker has stopped.
// The WAL never resets within one test (its size stays far below the
// auto-checkpoint's 1000 pages), so once the tmpfs is full every commit
// needs a page the filesystem does not have, and fails.

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include <tbp.h>

#include "harness.h"

#define WAIT_MS TBH_MS(10000)
#define FILL_CHUNK 65536
#define SLEEP_MS 1500 // the task that ends while the disk is full

// disk_fix is the harness fixture plus the mount.
typedef struct disk_fix {
	tbh_fix f; // first: tbh_teardown frees it as a tbh_fix
	char    filler[TBH_PATH + 16];
	bool    mounted;
} disk_fix;

static int
disk_setup(void **state)
{
	disk_fix *d = calloc(1, sizeof(*d));

	if (d == NULL) {
		return (-1);
	}
	*state = d;
	return (0);
}

// disk_teardown stops the broker, unmounts the tmpfs, then leaves the rest
// to the harness (which removes the dir, now on the real disk again).
static int
disk_teardown(void **state)
{
	disk_fix *d = *state;

	tb_sub_close(d->f.sub);
	d->f.sub = NULL;
	tb_client_close(d->f.c); // while the broker still answers
	d->f.c = NULL;
	if (d->f.b.pid != 0 && tbh_stop(&d->f.b, TBH_MS(15000)) < 0) {
		(void) tbh_kill9(&d->f.b);
	}
	if (d->mounted && umount2(d->f.b.data_dir, MNT_DETACH) != 0) {
		fprintf(stderr, "umount %s: %s\n", d->f.b.data_dir,
		    strerror(errno));
	}
	return (tbh_teardown(state));
}

// disk_mount makes the broker's dir and mounts a 2 MiB tmpfs on its data
// dir; skips the test if mounting is not permitted here.
static void
disk_mount(disk_fix *d)
{
	char cfg[TBH_PATH + 32];

	assert_int_equal(
	    tbh_write_config(&d->f.b, "unused.ini", "", cfg, sizeof(cfg)), 0);
	if (mount("tmpfs", d->f.b.data_dir, "tmpfs", 0, "size=2m,mode=0755") !=
	    0) {
		int err = errno;

		print_message("test_disk: skipped: cannot mount a tmpfs on "
		              "%s: %s (needs root or CAP_SYS_ADMIN)\n",
		    d->f.b.data_dir, strerror(err));
		assert_true(err == EPERM || err == EACCES);
		d->f.passed = true;
		skip();
	}
	d->mounted = true;
	snprintf(d->filler, sizeof(d->filler), "%s/filler", d->f.b.data_dir);
}

// disk_fill writes the filler until the filesystem has no byte left.
static void
disk_fill(disk_fix *d)
{
	static const char chunk[FILL_CHUNK];
	int               fd;
	size_t            total = 0;

	fd = open(d->filler, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	for (;;) {
		ssize_t n = write(fd, chunk, sizeof(chunk));

		if (n > 0) {
			total += (size_t) n;
			continue;
		}
		assert_true(n < 0 && errno == ENOSPC);
		// A short chunk may still fit byte by byte at the end.
		while (write(fd, chunk, 1) == 1) {
			total++;
		}
		break;
	}
	assert_int_equal(close(fd), 0);
	tbh_log_note(
	    &d->f.b, "=== test: disk full (%zu filler bytes) ===", total);
}

// disk_free removes the filler.
static void
disk_free(disk_fix *d)
{
	assert_int_equal(unlink(d->filler), 0);
	tbh_log_note(&d->f.b, "=== test: filler removed ===");
}

// log_count returns how many times needle occurs in the broker's log.
static int
log_count(const tbh_fix *f, const char *needle)
{
	char       *log = tbh_read_file(f->b.log_path, NULL);
	const char *p;
	int         n = 0;

	assert_non_null(log);
	for (p = log; (p = strstr(p, needle)) != NULL; p += strlen(needle)) {
		n++;
	}
	free(log);
	return (n);
}

static void
expect_log(const tbh_fix *f, const char *needle, int want)
{
	int n = log_count(f, needle);

	if (n != want) {
		print_error(
		    "broker log: \"%s\" %d times, want %d\n", needle, n, want);
		fail();
	}
}

// raw_submit_refused sends one submit on a raw socket and checks the
// reply: store_error, with the cause in its message (the client library
// returns the code only).
static void
raw_submit_refused(tbh_fix *f)
{
	msgpack_sbuffer sb;
	tbp_task_in     t;
	tbp_rep         rep;
	nng_socket      s;
	uint8_t         sid[TB_SID_LEN] = { 0xd1, 0x5c };
	void           *r;
	size_t          rlen;

	memset(&t, 0, sizeof(t));
	t.sid     = (tbp_bytes) { sid, sizeof(sid) };
	t.handler = tbp_str("noop");
	msgpack_sbuffer_init(&sb);
	TBH_OK(tbp_enc_submit(&sb, 77, &t, 1));
	assert_int_equal(tbh_raw_open(&s, f->b.url, WAIT_MS), 0);
	assert_int_equal(tbh_raw_call(s, sb.data, sb.size, &r, &rlen), 0);
	nng_close(s);
	msgpack_sbuffer_destroy(&sb);
	memset(&rep, 0, sizeof(rep));
	TBH_OK(tbp_rep_decode(&rep, r, rlen));
	print_message("refused submit: %.*s: %.*s\n", (int) rep.errname.n,
	    (const char *) rep.errname.p, (int) rep.message.n,
	    (const char *) rep.message.p);
	assert_int_equal(rep.status, TB_ESTORE);
	assert_true(rep.message.n > 0);
	assert_non_null(
	    memmem(rep.message.p, rep.message.n, "SQLITE_FULL", 11));
	tbp_rep_fini(&rep);
	free(r);
}

// expect_done_stored fails unless task id is done after attempts attempts.
static void
expect_done(tbh_fix *f, tb_id id, uint32_t attempts)
{
	tb_task *t = tbh_status(f->c, id);

	tbh_expect_state(t, TB_STATE_DONE);
	assert_int_equal(tb_task_attempts(t), attempts);
	tb_task_free(t);
}

static void
test_disk_full_refuses_submits_keeps_outcomes_and_recovers(void **state)
{
	disk_fix      *d = *state;
	tbh_fix       *f = &d->f;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_id          acked[16];
	size_t         nacked = 0;
	size_t         base;
	tb_id          sleeper;
	tb_id          id = 0;
	tb_task       *t  = NULL;
	tb_event      *ev;
	tb_stats       st;
	void          *p;
	size_t         len;
	int64_t        deadline;
	int            rv;
	const char    *args[] = { "--retention", "0", NULL };

	disk_mount(d);
	tbh_fix_start(f, args);
	f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	base   = tbh_count(f->c, NULL, -1); // the subscription's probes

	// Before: tasks that ran, and one that runs across the full disk,
	// its start committed (the start event follows the commit).
	for (int i = 0; i < 3; i++) {
		acked[nacked] = tbh_submit(f->c, "noop", NULL, 0, NULL);
		t             = tbh_wait_final(f->c, acked[nacked++], WAIT_MS);
		tb_task_free(t);
	}
	o.max_attempts = 1;
	p              = tbh_pack_ms(SLEEP_MS, &len);
	sleeper        = tbh_submit(f->c, "sleep", p, len, &o);
	free(p);
	acked[nacked++] = sleeper;
	assert_non_null(
	    ev = tbh_sub_expect(f->sub, sleeper, "start", WAIT_MS));
	tb_event_free(ev);

	// The disk fills up: every submit is refused with store_error and
	// the cause; nothing of it exists.
	disk_fill(d);
	raw_submit_refused(f);
	for (int i = 0; i < 5; i++) {
		TBH_RV(tb_submit(f->c, "noop", NULL, 0, NULL, &id), TB_ESTORE);
	}

	// Reads keep working: status (from memory and from the store),
	// list, stats, ping.
	expect_done(f, acked[0], 1);
	assert_int_equal(tbh_count(f->c, NULL, -1), base + nacked);
	TBH_OK(tb_stats_get(f->c, &st));
	assert_int_equal(st.done, base + 3);
	TBH_OK(tb_ping(f->c, NULL));

	// The sleeper ends meanwhile: done in memory (status), but not yet
	// stored, so a wait, answered only once the end is committed, times
	// out.
	assert_int_equal(tbh_wait_state(f->c, sleeper, TB_STATE_DONE,
	                     TBH_MS(SLEEP_MS) + WAIT_MS),
	    0);
	TBH_RV(tb_wait(f->c, sleeper, 300, &t), TB_ETIMEDOUT);
	tb_task_free(t);
	t = NULL;
	TBH_RV(tb_submit(f->c, "noop", NULL, 0, NULL, &id), TB_ESTORE);
	// One line for the outage, not one per failed write.
	expect_log(f, "store: cannot write: database or disk is full", 1);
	expect_log(f, "store: writing again", 0);

	// Space returns: with no restart, the kept end is written (the
	// wait is answered, the done event published) and submits work.
	disk_free(d);
	TBH_OK(tb_wait(f->c, sleeper, WAIT_MS, &t));
	tbh_expect_state(t, TB_STATE_DONE);
	tb_task_free(t);
	assert_non_null(ev = tbh_sub_expect(f->sub, sleeper, "done", WAIT_MS));
	tb_event_free(ev);
	deadline = tbh_now_ms() + WAIT_MS;
	while ((rv = tb_submit(f->c, "noop", NULL, 0, NULL, &id)) != TB_OK) {
		TBH_RV(rv, TB_ESTORE);
		assert_true(tbh_now_ms() < deadline);
		tbh_sleep_ms(20);
	}
	acked[nacked++] = id;
	acked[nacked++] = tbh_submit(f->c, "noop", NULL, 0, NULL);
	for (size_t i = nacked - 2; i < nacked; i++) {
		t = tbh_wait_final(f->c, acked[i], WAIT_MS);
		tb_task_free(t);
	}
	expect_log(f, "store: cannot write: ", 1);
	expect_log(f, "store: writing again after", 1);
	expect_log(f, "store could not record state", 0);

	// Everything acknowledged is on disk, and nothing else: after a
	// restart every task is there, done after its one attempt. (No
	// subscription across it: reopening one submits probe tasks.)
	tb_sub_close(f->sub);
	f->sub = NULL;
	tbh_fix_restart(f);
	for (size_t i = 0; i < nacked; i++) {
		expect_done(f, acked[i], 1);
	}
	assert_int_equal(tbh_count(f->c, NULL, -1), base + nacked);
	f->passed = true;
}

static void
test_disk_full_at_shutdown_exits_cleanly_and_keeps_acked(void **state)
{
	disk_fix      *d = *state;
	tbh_fix       *f = &d->f;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_id          sleeper;
	tb_id          done_id;
	size_t         base;
	tb_id          id = 0;
	tb_task       *t;
	tb_event      *ev;
	void          *p;
	size_t         len;
	int            code;
	const char    *args[] = { "--retention", "0", NULL };

	// The disk stays full through a shutdown: the broker gives the kept
	// end of a task a few more tries, says what it could not write, and
	// exits 0. The task's stored state is its start, so after the
	// restart it counts as interrupted and runs again (at-least-once),
	// its attempt refunded and a crash counted instead; everything
	// acknowledged is there.
	disk_mount(d);
	tbh_fix_start(f, args);
	f->sub  = tbh_sub_open(&f->b, f->c, "tb.");
	base    = tbh_count(f->c, NULL, -1); // the subscription's probes
	done_id = tbh_submit(f->c, "noop", NULL, 0, NULL);
	t       = tbh_wait_final(f->c, done_id, WAIT_MS);
	tb_task_free(t);
	o.max_attempts = 2;
	p              = tbh_pack_ms(300, &len);
	sleeper        = tbh_submit(f->c, "sleep", p, len, &o);
	free(p);
	assert_non_null(
	    ev = tbh_sub_expect(f->sub, sleeper, "start", WAIT_MS));
	tb_event_free(ev);
	disk_fill(d);
	TBH_RV(tb_submit(f->c, "noop", NULL, 0, NULL, &id), TB_ESTORE);
	assert_int_equal(
	    tbh_wait_state(f->c, sleeper, TB_STATE_DONE, WAIT_MS), 0);

	tb_sub_close(f->sub);
	f->sub = NULL;
	tbh_log_note(&f->b, "=== test: SIGTERM with the disk full ===");
	code = tbh_stop(&f->b, TBH_MS(15000));
	assert_int_equal(code, 0);
	expect_log(f, "state changes could not be written", 1);
	disk_free(d);
	assert_int_equal(tbh_restart(&f->b), 0);
	expect_done(f, done_id, 1);
	t = tbh_wait_final(f->c, sleeper, WAIT_MS);
	tbh_expect_state(t, TB_STATE_DONE);
	assert_int_equal(tb_task_attempts(t), 1);
	assert_int_equal(tb_task_crashes(t), 1);
	tb_task_free(t);
	assert_int_equal(tbh_count(f->c, NULL, -1), base + 2);
	f->passed = true;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, disk_setup, disk_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_disk_full_refuses_submits_keeps_outcomes_and_recovers),
		T(test_disk_full_at_shutdown_exits_cleanly_and_keeps_acked),
	};

	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
