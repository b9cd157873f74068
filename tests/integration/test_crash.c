// test_crash.c: kill -9 the broker under a flood of submissions; after a
// restart on the same data dir every acknowledged task exists and ends
// done (acknowledged-but-lost = 0).
//
// The flooding producer is this binary re-executed with argv[1] = "--flood"
// (see main). It writes the ids of each acknowledged request to a file with
// write(2) right after the reply, so the file holds every acknowledgement
// the producer saw even though the broker dies mid-stream.

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define FLOOD_BATCH 20
#define MIN_ACKED 20000 // ids acknowledged before the kill
#define MAX_ACKED 1000000

// write_ids appends one line per id to fd in one write.
static int
write_ids(int fd, const tb_id *ids, size_t n)
{
	char   buf[FLOOD_BATCH * 24];
	size_t len = 0;

	for (size_t i = 0; i < n; i++) {
		len += (size_t) snprintf(buf + len, sizeof(buf) - len,
		    "%llu\n", (unsigned long long) ids[i]);
	}
	return (write(fd, buf, len) == (ssize_t) len ? 0 : -1);
}

// flood_main submits noop and sleep(1 ms) tasks to url, alternating one
// per request and batches of FLOOD_BATCH, until a submit fails (the broker
// died) or MAX_ACKED ids. Exit status 0 when it stopped on a broker error.
static int
flood_main(const char *url, const char *outfile)
{
	tb_client     *c;
	tb_task_spec   specs[FLOOD_BATCH];
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	tb_id          ids[FLOOD_BATCH];
	void          *sleep1;
	size_t         sleep1_len;
	long           acked = 0;
	int            fd, rv = TB_OK;

	if ((fd = open(outfile, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC,
	         0644)) < 0) {
		fprintf(stderr, "flood: %s: %s\n", outfile, strerror(errno));
		return (1);
	}
	if ((rv = tb_client_open(&c, url)) != TB_OK ||
	    (rv = tb_client_set_timeout(c, 1000)) != TB_OK) {
		fprintf(stderr, "flood: open %s: %s\n", url, tb_errname(rv));
		return (1);
	}
	// Enough attempts that a task interrupted by the kill still ends
	// done after the restart.
	o.max_attempts = 5;
	sleep1         = tbh_pack_ms(1, &sleep1_len);
	for (int i = 0; i < FLOOD_BATCH; i++) {
		specs[i].handler     = i % 2 == 0 ? "noop" : "sleep";
		specs[i].payload     = i % 2 == 0 ? NULL : sleep1;
		specs[i].payload_len = i % 2 == 0 ? 0 : sleep1_len;
		specs[i].opts        = &o;
	}
	for (long round = 0; acked < MAX_ACKED; round++) {
		size_t n = round % 2 == 0 ? 1 : FLOOD_BATCH;

		if (n == 1) {
			rv = tb_submit(c, "noop", NULL, 0, &o, &ids[0]);
		} else {
			rv = tb_submit_batch(c, specs, n, ids);
		}
		if (rv != TB_OK) {
			break;
		}
		if (write_ids(fd, ids, n) != 0) {
			fprintf(stderr, "flood: write: %s\n", strerror(errno));
			rv = -1;
			break;
		}
		acked += (long) n;
	}
	fprintf(stderr, "flood: stopped after %ld acknowledged ids: %s\n",
	    acked, rv >= 0 ? tb_errname(rv) : "write error");
	close(fd);
	free(sleep1);
	tb_client_close(c);
	return (rv > 0 ? 0 : 1);
}

// count_lines counts the complete lines in path.
static size_t
count_lines(const char *path)
{
	size_t len, n = 0;
	char  *buf = tbh_read_file(path, &len);

	for (size_t i = 0; buf != NULL && i < len; i++) {
		n += buf[i] == '\n';
	}
	free(buf);
	return (n);
}

static void
crash_case(tbh_fix *f, const char *durability)
{
	const char *const args[] = { "--durability", durability, NULL };
	char              ids_path[TBH_PATH];
	pid_t             pid;
	int64_t           deadline;
	tb_id            *ids;
	size_t            nids, nrows, missing, notdone;
	tbh_row          *rows;
	int               code;

	tbh_fix_start(f, args);
	snprintf(ids_path, sizeof(ids_path), "%s/acked.ids", f->b.dir);
	const char *const fargs[] = { "--flood", f->b.url, ids_path, NULL };
	if (tbh_spawn_self(&pid, fargs, NULL, NULL) != 0) {
		fail();
	}

	// Kill once enough submissions were acknowledged (a condition, not
	// a sleep); the flood keeps going while the broker dies.
	deadline = tbh_now_ms() + TBH_MS(30000);
	while (count_lines(ids_path) < MIN_ACKED) {
		if (tbh_waitpid(pid, 0) >= 0) {
			print_error("the flooding producer exited before %d "
			            "acknowledgements\n",
			    MIN_ACKED);
			fail();
		}
		if (tbh_now_ms() >= deadline) {
			print_error("fewer than %d acknowledgements in 30 s "
			            "(%zu)\n",
			    MIN_ACKED, count_lines(ids_path));
			tbh_kill_reap(pid);
			fail();
		}
		tbh_sleep_ms(20);
	}
	assert_int_equal(tbh_kill9(&f->b), 0);
	code = tbh_waitpid(pid, TBH_MS(15000));
	if (code != 0) {
		print_error("flooding producer exit %d after the kill%s\n",
		    code, code < 0 ? " (still running; killed)" : "");
		tbh_kill_reap(pid);
		fail();
	}

	tb_client_close(f->c);
	f->c = NULL;
	tbh_log_note(&f->b, "restart after kill -9");
	if (tbh_restart(&f->b) != 0) {
		print_error("the broker did not restart on its data dir\n");
		fail();
	}
	f->c = tbh_client(&f->b, 10000);
	assert_non_null(f->c);

	assert_int_equal(tbh_read_ids(ids_path, &ids, &nids), 0);
	print_message(
	    "%s: %zu ids acknowledged before kill -9\n", durability, nids);
	assert_true(nids >= MIN_ACKED);

	deadline = tbh_now_ms() + TBH_MS(60000);
	for (;;) {
		TBH_OK(tbh_list_all(f->c, &rows, &nrows));
		missing = notdone = 0;
		for (size_t i = 0; i < nids; i++) {
			const tbh_row *r = tbh_find_row(rows, nrows, ids[i]);
			if (r == NULL) {
				if (missing++ < 10) {
					print_error(
					    "acknowledged task %llu is "
					    "not in the store after "
					    "restart\n",
					    (unsigned long long) ids[i]);
				}
			} else if (r->state != TB_STATE_DONE) {
				notdone++;
			}
		}
		if (missing > 0 || notdone == 0 || tbh_now_ms() >= deadline) {
			break;
		}
		free(rows);
		tbh_sleep_ms(100);
	}
	print_message("%s: %zu tasks in the store, %zu acknowledged ids "
	              "missing, %zu not done\n",
	    durability, nrows, missing, notdone);
	if (notdone > 0) {
		for (size_t i = 0, shown = 0; i < nids && shown < 10; i++) {
			const tbh_row *r = tbh_find_row(rows, nrows, ids[i]);
			if (r != NULL && r->state != TB_STATE_DONE) {
				print_error("task %llu: %s, attempts %u\n",
				    (unsigned long long) r->id,
				    tb_state_name(r->state), r->attempts);
				shown++;
			}
		}
	}
	free(rows);
	free(ids);
	assert_int_equal(missing, 0);
	assert_int_equal(notdone, 0);
	assert_true(tbh_running(&f->b));
	f->passed = true;
}

static void
test_kill9_under_flood_loses_no_acknowledged_task_full(void **state)
{
	crash_case(*state, "full");
}

static void
test_kill9_under_flood_loses_no_acknowledged_task_normal(void **state)
{
	// synchronous=NORMAL survives a crash of the process (not of the
	// machine), so a kill -9 must lose nothing here either.
	crash_case(*state, "normal");
}

int
main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "--flood") == 0) {
		return (flood_main(argv[2], argv[3]));
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_kill9_under_flood_loses_no_acknowledged_task_full,
		    tbh_setup, tbh_teardown),
		cmocka_unit_test_setup_teardown(
		    test_kill9_under_flood_loses_no_acknowledged_task_normal,
		    tbh_setup, tbh_teardown),
	};
	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
