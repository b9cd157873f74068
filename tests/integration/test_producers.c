// test_producers.c: several producer processes submit at once; every
// acknowledged task exists once, runs once and ends done.
//
// The producers are this binary re-executed with argv[1] = "--producer"
// (see main), each with its own tb_client, as real producers would be.

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define NPRODUCERS 4
#define PER_PRODUCER 10000

// producer_main submits n noop tasks to url, batch at a time (1: one per
// request), and writes each acknowledged id on its own line to outfile.
// Exit status 0 when all were acknowledged, 1 at the first error.
static int
producer_main(const char *url, long n, long batch, const char *outfile)
{
	tb_client   *c;
	FILE        *out;
	tb_task_spec specs[TB_MAX_BATCH];
	tb_id        ids[TB_MAX_BATCH];
	long         done = 0;
	int          rv;

	if (batch < 1 || batch > TB_MAX_BATCH) {
		return (2);
	}
	if ((out = fopen(outfile, "w")) == NULL) {
		fprintf(
		    stderr, "producer: %s: %s\n", outfile, strerror(errno));
		return (1);
	}
	if ((rv = tb_client_open(&c, url)) != TB_OK ||
	    (rv = tb_client_set_timeout(c, 60000)) != TB_OK) {
		fprintf(
		    stderr, "producer: open %s: %s\n", url, tb_errname(rv));
		return (1);
	}
	memset(specs, 0, sizeof(specs));
	for (long i = 0; i < batch; i++) {
		specs[i].handler = "noop";
	}
	while (done < n) {
		long k = n - done < batch ? n - done : batch;

		if (batch == 1) {
			rv = tb_submit(c, "noop", NULL, 0, NULL, &ids[0]);
		} else {
			rv = tb_submit_batch(c, specs, (size_t) k, ids);
		}
		if (rv != TB_OK) {
			fprintf(stderr,
			    "producer %d: submit after %ld acknowledged: %s "
			    "(%s)\n",
			    (int) getpid(), done, tb_errname(rv),
			    tb_strerror(rv));
			fclose(out);
			tb_client_close(c);
			return (1);
		}
		for (long i = 0; i < k; i++) {
			fprintf(out, "%llu\n", (unsigned long long) ids[i]);
		}
		done += k;
	}
	tb_client_close(c);
	return (fclose(out) == 0 ? 0 : 1);
}

static int
cmp_id(const void *a, const void *b)
{
	tb_id x = *(const tb_id *) a, y = *(const tb_id *) b;

	return (x < y ? -1 : x > y);
}

static void
test_four_producers_all_tasks_acknowledged_once_and_done(void **state)
{
	tbh_fix *f = *state;
	pid_t    pids[NPRODUCERS];
	char     outs[NPRODUCERS][TBH_PATH];
	char     nstr[16];
	tb_id   *all  = NULL;
	size_t   nall = 0;
	int64_t  t0, deadline;
	size_t   total, ndone, bad;
	tb_stats st;

	tbh_fix_start(f, NULL);
	snprintf(nstr, sizeof(nstr), "%d", PER_PRODUCER);
	t0 = tbh_now_ms();
	for (int i = 0; i < NPRODUCERS; i++) {
		// Two submit one task per request, two in batches of 50.
		const char *batch = i < 2 ? "1" : "50";
		snprintf(outs[i], sizeof(outs[i]), "%s/producer-%d.ids",
		    f->b.dir, i);
		const char *const args[] = { "--producer", f->b.url, nstr,
			batch, outs[i], NULL };
		if (tbh_spawn_self(&pids[i], args, NULL, NULL) != 0) {
			for (int j = 0; j < i; j++) {
				tbh_kill_reap(pids[j]);
			}
			fail();
		}
	}
	for (int i = 0; i < NPRODUCERS; i++) {
		int code = tbh_waitpid(pids[i], TBH_MS(180000));
		if (code != 0) {
			print_error("producer %d (pid %d) exit %d%s\n", i,
			    (int) pids[i], code,
			    code < 0 ? " (timed out, killed)" : "");
			for (int j = i; j < NPRODUCERS; j++) {
				tbh_kill_reap(pids[j]);
			}
			fail();
		}
	}
	print_message("%d producers x %d submits: %lld ms\n", NPRODUCERS,
	    PER_PRODUCER, (long long) (tbh_now_ms() - t0));

	// Every producer got PER_PRODUCER acknowledgements.
	for (int i = 0; i < NPRODUCERS; i++) {
		tb_id *ids;
		size_t n;

		assert_int_equal(tbh_read_ids(outs[i], &ids, &n), 0);
		if (n != PER_PRODUCER) {
			print_error(
			    "producer %d acknowledged %zu ids, want %d\n", i,
			    n, PER_PRODUCER);
			free(ids);
			free(all);
			fail();
		}
		all = realloc(all, (nall + n) * sizeof(*all));
		assert_non_null(all);
		memcpy(all + nall, ids, n * sizeof(*ids));
		nall += n;
		free(ids);
	}
	assert_int_equal(nall, NPRODUCERS * PER_PRODUCER);
	qsort(all, nall, sizeof(*all), cmp_id);
	for (size_t i = 1; i < nall; i++) {
		if (all[i] == all[i - 1]) {
			print_error("id %llu acknowledged twice\n",
			    (unsigned long long) all[i]);
			free(all);
			fail();
		}
	}

	// Wait until every task in the store is final, then check each:
	// the store holds exactly the acknowledged ids, each done with one
	// attempt (none ran twice).
	deadline = tbh_now_ms() + TBH_MS(60000);
	for (;;) {
		tb_list_opts o        = TB_LIST_OPTS_INIT;
		size_t       notfinal = 0;

		total = ndone = bad = 0;
		o.limit             = 1000;
		for (;;) {
			tb_task **ts = NULL;
			size_t    n  = 0;

			TBH_OK(tb_list(f->c, &o, &ts, &n));
			if (n == 0) {
				tb_task_list_free(ts, n);
				break;
			}
			for (size_t i = 0; i < n; i++) {
				tb_id id = tb_task_id(ts[i]);
				int   s  = tb_task_state(ts[i]);

				total++;
				if (!tb_state_is_final(s)) {
					notfinal++;
					continue;
				}
				if (bsearch(&id, all, nall, sizeof(*all),
				        cmp_id) == NULL) {
					if (bad++ < 5) {
						print_error("task %llu in "
						            "the store was "
						            "never "
						            "acknowledged\n",
						    (unsigned long long) id);
					}
				} else if (s != TB_STATE_DONE ||
				    tb_task_attempts(ts[i]) != 1) {
					if (bad++ < 5) {
						print_error("task %llu: %s, "
						            "attempts %u\n",
						    (unsigned long long) id,
						    tb_state_name(s),
						    tb_task_attempts(ts[i]));
					}
				} else {
					ndone++;
				}
			}
			o.after_id = tb_task_id(ts[n - 1]);
			tb_task_list_free(ts, n);
		}
		if (notfinal == 0 && total >= nall) {
			break;
		}
		if (tbh_now_ms() >= deadline) {
			print_error("after 60 s: %zu tasks in the store, %zu "
			            "not final\n",
			    total, notfinal);
			free(all);
			fail();
		}
		tbh_sleep_ms(100);
	}
	print_message("store: %zu tasks, %zu done once, %zu bad; all done "
	              "after %lld ms\n",
	    total, ndone, bad, (long long) (tbh_now_ms() - t0));
	free(all);
	assert_int_equal(bad, 0);
	assert_int_equal(total, NPRODUCERS * PER_PRODUCER);
	assert_int_equal(ndone, NPRODUCERS * PER_PRODUCER);

	// The broker's own counters agree.
	TBH_OK(tb_stats_get(f->c, &st));
	assert_int_equal(st.done, NPRODUCERS * PER_PRODUCER);
	assert_int_equal(st.submitted, NPRODUCERS * PER_PRODUCER);
	assert_int_equal(st.pending + st.running + st.failed + st.dead, 0);
	assert_true(tbh_running(&f->b));
	f->passed = true;
}

int
main(int argc, char **argv)
{
	if (argc == 6 && strcmp(argv[1], "--producer") == 0) {
		return (producer_main(
		    argv[2], atol(argv[3]), atol(argv[4]), argv[5]));
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_four_producers_all_tasks_acknowledged_once_and_done,
		    tbh_setup, tbh_teardown),
	};
	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
