// bench.c: taskbroker-bench, throughput and latency of taskbrokerd next to
// the same machine's raw limits.
//
// DESIGN. One run measures, each scenario against a fresh broker started
// with posix_spawn in a fresh mkdtemp directory:
//   single  P producer processes, C threads each, one tb_submit per request;
//   batch   the same with tb_submit_batch of B tasks per request;
//   paced   one producer, open loop at R submits/s for S seconds, C threads
//           so that one slow ack does not hold up the schedule;
//   workers the batch scenario's tasks for "bench_job", run by 1, then 2
//           worker processes (this binary, --worker) of 64 slots that
//           complete each job at once: end-to-end throughput;
//   recovery a held task on one of two workers, which is killed with
//           SIGKILL: the time to the task's start on the other, 20 times;
//   serial  one producer, one thread, one blocking tb_submit at a time;
//   async   one producer, one thread keeping A single-task
//           tb_submit_async in flight, waiting on the client's completion
//           descriptor (poll) as an event loop would;
// and the raw limits of the machine:
//   nng     REQ/REP round trips of 100 bytes over ipc, against an echo
//           server process, with the same P x C pattern (req0 contexts);
//   sqlite  insert-and-commit of task-shaped rows into a WAL database with
//           the broker's synchronous setting, 1 and B rows per transaction.
// --runs K repeats the whole run K times; the report gives the median, min
// and max of each figure, and the ratio of each task rate to the nng round
// trip rate and to the SQLite batched row rate.
//
// Processes. nng is not fork-safe, so this program never forks: producers
// and the echo server are this same binary started with posix_spawn in a
// hidden mode (--producer, --echo). A producer connects, writes one byte to
// its stdout (a pipe) to say it is ready, then reads the common start time
// (CLOCK_MONOTONIC, shared by all processes) from its stdin and sleeps until
// then, so every producer starts at the same moment. It writes its
// per-request ack latencies and its first-send / last-ack times to a file
// the parent merges. End-to-end time runs from the first submit until the
// broker's stats.completed reaches the number of accepted tasks; the parent
// polls tb_stats_get every 5 ms (events would be lighter, but PUB drops
// messages under load).
//
// CPU time per task of the broker and of the producers comes from wait4's
// rusage; it moves less than the rates when the machine is shared, and the
// report says how much CPU other processes took during the run. Before
// each measurement the temporary filesystem is synced, so one scenario's
// dirty pages are not flushed during the next one's fsyncs.
//
// Every wait has a deadline and every child is stopped by pid (SIGTERM,
// then SIGKILL) on every path, including errors and Ctrl-C.

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <sqlite3.h>

#include <taskbroker.h>

#ifndef TB_BENCH_BROKER_BIN
#define TB_BENCH_BROKER_BIN "taskbrokerd"
#endif

extern char **environ;

#define NS_PER_MS 1000000LL
#define NS_PER_S 1000000000LL
#define MAX_RUNS 99
#define MAX_PRODUCERS 64
#define MAX_INFLIGHT 1024
#define LAT_NONE UINT64_MAX // a request that failed or was never sent
#define PROD_MAGIC 0x7462656e63680001ULL
#define RTT_MSG_SIZE 100
#define ECHO_CONTEXTS 256
#define STATS_POLL_NS (5 * NS_PER_MS)
#define BROKER_START_MS 10000
#define BROKER_STOP_MS 15000
#define CHILD_STOP_MS 5000
#define SHUTDOWN_TIMEOUT_S "5"

// g_stop is set by SIGINT/SIGTERM in the parent; every wait loop checks it
// and unwinds through its cleanup.
static volatile sig_atomic_t g_stop;

// The measurements of a run, in order; --only picks some.
enum {
	S_SINGLE,
	S_BATCH,
	S_PACED,
	S_NNG,
	S_SQLITE,
	S_SERIAL,
	S_ASYNC,
	S_WORKERS,
	S_RECOVERY,
	S_COUNT
};
static const char *scen_names[] = { "single", "batch", "paced", "nng",
	"sqlite", "serial", "async", "workers", "recovery" };

// bench_cfg: the command line.
typedef struct bench_cfg {
	const char *broker_bin;
	const char *tmpdir;
	const char *durability;
	const char *broker_log_level; // NULL: the broker's default
	int         workers;          // 0: the broker's default
	int         producers;
	int         inflight;
	long        tasks;          // single scenario
	long        batch_tasks;    // batch scenario
	long        serial_tasks;   // serial scenario
	int         async_inflight; // async scenario
	int         batch;
	int         rate;
	int         paced_secs;
	int         sqlite_ms; // per SQLite mode
	int         runs;
	unsigned    only; // bit (1 << S_*) per measurement to run
	bool        json;
	bool        keep;
	char        self[PATH_MAX];
} bench_cfg;

// prod_hdr heads a producer's result file; nreq latencies (ns, LAT_NONE
// for a failed request) follow.
typedef struct prod_hdr {
	uint64_t magic;
	uint64_t nreq;
	uint64_t ok_tasks;
	uint64_t errors;
	int64_t  first_send; // CLOCK_MONOTONIC ns; 0 if nothing was sent
	int64_t  last_ack;
	int32_t  first_err; // tb_err or nng error of the first failure
	int32_t  pad;
} prod_hdr;

// scen_result: what one scenario measured. Rates are per second, latencies
// in milliseconds; NAN when not measured.
typedef struct scen_result {
	double   submit_rate;
	double   e2e_rate;
	double   p50, p99, p999, max;
	uint64_t ok_tasks;
	uint64_t errors;
	int      first_err;
	bool     dup_warning; // broker stats.submitted != accepted tasks
	double   client_cpu;  // all producers' CPU time, microseconds
	double   broker_cpu;  // the broker's, microseconds
} scen_result;

// Figures of one run, in report order.
enum {
	F_NNG_RATE,
	F_NNG_P50,
	F_NNG_P99,
	F_NNG_SCPU,
	F_NNG_CCPU,
	F_SQL1_ROWS,
	F_SQLPC_ROWS,
	F_SQLB_ROWS,
	F_SQLB_COMMITS,
	F_SINGLE_SUBMIT,
	F_SINGLE_P50,
	F_SINGLE_P99,
	F_SINGLE_E2E,
	F_SINGLE_BCPU,
	F_SINGLE_CCPU,
	F_SERIAL_SUBMIT,
	F_SERIAL_P50,
	F_SERIAL_P99,
	F_ASYNC_SUBMIT,
	F_ASYNC_P50,
	F_ASYNC_P99,
	F_ASYNC_E2E,
	F_ASYNC_CCPU,
	F_BATCH_SUBMIT,
	F_BATCH_P50,
	F_BATCH_P99,
	F_BATCH_E2E,
	F_BATCH_BCPU,
	F_BATCH_CCPU,
	F_PACED_RATE,
	F_PACED_P50,
	F_PACED_P99,
	F_PACED_P999,
	F_PACED_MAX,
	F_WK1_E2E,
	F_WK2_E2E,
	F_RECOVER_P50,
	F_RECOVER_P99,
	F_COUNT
};

// fig_info: key (JSON), label (table), unit, and whether the figure is a
// task rate to be put next to the raw limits.
static const struct fig_info {
	const char *key;
	const char *label;
	const char *unit;
	bool        is_rate;
	bool        ours;
} figs[F_COUNT] = {
	[F_NNG_RATE]      = { "nng_rtt_rate", "nng REQ/REP round trips", "/s",
	         false, false },
	[F_NNG_P50]       = { "nng_rtt_p50", "nng round trip p50", "ms", false,
	          false },
	[F_NNG_P99]       = { "nng_rtt_p99", "nng round trip p99", "ms", false,
	          false },
	[F_NNG_SCPU]      = { "nng_server_cpu_per_rtt",
	         "nng echo server CPU per round trip", "us", false, false },
	[F_NNG_CCPU]      = { "nng_client_cpu_per_rtt",
	         "nng client CPU per round trip", "us", false, false },
	[F_SQL1_ROWS]     = { "sqlite_rows_txn1",
	        "SQLite insert+commit, 1 row/txn", "rows/s", false, false },
	[F_SQLPC_ROWS]    = { "sqlite_rows_txnPC",
	       "SQLite insert+commit, P*C rows/txn", "rows/s", false, false },
	[F_SQLB_ROWS]     = { "sqlite_rows_txnB",
	        "SQLite insert+commit, B rows/txn", "rows/s", false, false },
	[F_SQLB_COMMITS]  = { "sqlite_commits_txnB",
	     "SQLite commits, B rows/txn", "commits/s", false, false },
	[F_SINGLE_SUBMIT] = { "single_submit_rate",
	    "single: submit throughput", "tasks/s", true, true },
	[F_SINGLE_P50]  = { "single_ack_p50", "single: ack latency p50", "ms",
	     false, true },
	[F_SINGLE_P99]  = { "single_ack_p99", "single: ack latency p99", "ms",
	     false, true },
	[F_SINGLE_E2E]  = { "single_e2e_rate", "single: end-to-end throughput",
	     "tasks/s", true, true },
	[F_SINGLE_BCPU] = { "single_broker_cpu_per_task",
	    "single: broker CPU per task", "us", false, true },
	[F_SINGLE_CCPU] = { "single_client_cpu_per_task",
	    "single: producer CPU per task", "us", false, true },
	[F_SERIAL_SUBMIT] = { "serial_submit_rate",
	    "serial: submit throughput (1 thread, blocking)", "tasks/s", true,
	    true },
	[F_SERIAL_P50]   = { "serial_ack_p50", "serial: ack latency p50", "ms",
	      false, true },
	[F_SERIAL_P99]   = { "serial_ack_p99", "serial: ack latency p99", "ms",
	      false, true },
	[F_ASYNC_SUBMIT] = { "async_submit_rate",
	    "async: submit throughput (1 thread, A in flight)", "tasks/s",
	    true, true },
	[F_ASYNC_P50]    = { "async_ack_p50", "async: ack latency p50", "ms",
	       false, true },
	[F_ASYNC_P99]    = { "async_ack_p99", "async: ack latency p99", "ms",
	       false, true },
	[F_ASYNC_E2E]    = { "async_e2e_rate", "async: end-to-end throughput",
	       "tasks/s", true, true },
	[F_ASYNC_CCPU]   = { "async_client_cpu_per_task",
	      "async: producer CPU per task", "us", false, true },
	[F_BATCH_SUBMIT] = { "batch_submit_rate", "batch: submit throughput",
	    "tasks/s", true, true },
	[F_BATCH_P50]    = { "batch_ack_p50",
	       "batch: ack latency p50 (per batch)", "ms", false, true },
	[F_BATCH_P99]    = { "batch_ack_p99",
	       "batch: ack latency p99 (per batch)", "ms", false, true },
	[F_BATCH_E2E]    = { "batch_e2e_rate", "batch: end-to-end throughput",
	       "tasks/s", true, true },
	[F_BATCH_BCPU]   = { "batch_broker_cpu_per_task",
	      "batch: broker CPU per task", "us", false, true },
	[F_BATCH_CCPU]   = { "batch_client_cpu_per_task",
	      "batch: producer CPU per task", "us", false, true },
	[F_PACED_RATE]   = { "paced_rate", "paced: achieved submit rate",
	      "tasks/s", false, true },
	[F_PACED_P50]    = { "paced_ack_p50", "paced: ack latency p50", "ms",
	       false, true },
	[F_PACED_P99]    = { "paced_ack_p99", "paced: ack latency p99", "ms",
	       false, true },
	[F_PACED_P999]  = { "paced_ack_p999", "paced: ack latency p99.9", "ms",
	     false, true },
	[F_PACED_MAX]   = { "paced_ack_max", "paced: ack latency max", "ms",
	      false, true },
	[F_WK1_E2E]     = { "workers1_e2e_rate",
	        "workers: end-to-end throughput, 1 worker", "tasks/s", true,
	        true },
	[F_WK2_E2E]     = { "workers2_e2e_rate",
	        "workers: end-to-end throughput, 2 workers", "tasks/s", true,
	        true },
	[F_RECOVER_P50] = { "worker_recovery_p50",
	    "workers: kill -9 of a worker to its task's start elsewhere, p50",
	    "ms", false, true },
	[F_RECOVER_P99] = { "worker_recovery_p99",
	    "workers: kill -9 of a worker to its task's start elsewhere, p99",
	    "ms", false, true },
};

// vals[f][run] holds each figure of each run; NAN if the run failed it.
static double vals[F_COUNT][MAX_RUNS];

// Problems seen during the runs, summed over runs, for the report.
static struct {
	uint64_t errors[S_COUNT]; // by scenario (single, batch, paced, ...)
	int      first_err[S_COUNT];
	int      failed_scenarios;
	int      dup_warnings;
	int      broker_bad_exits;
	uint64_t nng_errors;
} probs;

static char broker_version[64] = "?";

// ---------------------------------------------------------------------------
// Time

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t) ts.tv_sec * NS_PER_S + ts.tv_nsec);
}

static void
sleep_until(int64_t t)
{
	struct timespec ts;

	ts.tv_sec  = t / NS_PER_S;
	ts.tv_nsec = t % NS_PER_S;
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	    EINTR) {
		if (g_stop) {
			return;
		}
	}
}

static void
sleep_ms(int ms)
{
	sleep_until(now_ns() + (int64_t) ms * NS_PER_MS);
}

// ---------------------------------------------------------------------------
// Statistics

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *) a;
	uint64_t y = *(const uint64_t *) b;

	return ((x > y) - (x < y));
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *) a;
	double y = *(const double *) b;

	return ((x > y) - (x < y));
}

// pct_ms returns the nearest-rank p-quantile of sorted[0..n) in ms.
static double
pct_ms(const uint64_t *sorted, size_t n, double p)
{
	size_t k;

	if (n == 0) {
		return (NAN);
	}
	k = (size_t) (p * (double) n);
	if ((double) k < p * (double) n) {
		k++;
	}
	if (k < 1) {
		k = 1;
	}
	if (k > n) {
		k = n;
	}
	return ((double) sorted[k - 1] / (double) NS_PER_MS);
}

// summarize writes the median, min and max of the non-NAN values of v[0..n)
// and returns how many there were.
static int
summarize(const double *v, int n, double *medp, double *minp, double *maxp)
{
	double s[MAX_RUNS];
	int    m = 0;

	for (int i = 0; i < n; i++) {
		if (!isnan(v[i])) {
			s[m++] = v[i];
		}
	}
	*medp = *minp = *maxp = NAN;
	if (m == 0) {
		return (0);
	}
	qsort(s, (size_t) m, sizeof(s[0]), cmp_double);
	*minp = s[0];
	*maxp = s[m - 1];
	*medp = (m % 2) ? s[m / 2] : (s[m / 2 - 1] + s[m / 2]) / 2;
	return (m);
}

// ---------------------------------------------------------------------------
// Files and processes

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void) sb;
	(void) flag;
	(void) ftw;
	if (remove(path) != 0 && errno != ENOENT) {
		fprintf(
		    stderr, "bench: remove %s: %s\n", path, strerror(errno));
	}
	return (0);
}

static void
rmtree(const char *dir)
{
	if (dir[0] != '\0') {
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	}
}

// make_tmpdir creates a fresh directory under cfg->tmpdir in buf.
static int
make_tmpdir(const bench_cfg *cfg, char *buf, size_t len, const char *what)
{
	snprintf(buf, len, "%s/tb-bench-%s.XXXXXX", cfg->tmpdir, what);
	if (mkdtemp(buf) == NULL) {
		fprintf(
		    stderr, "bench: mkdtemp %s: %s\n", buf, strerror(errno));
		buf[0] = '\0';
		return (-1);
	}
	return (0);
}

static void
remove_tmpdir(const bench_cfg *cfg, char *dir)
{
	if (dir[0] == '\0') {
		return;
	}
	if (cfg->keep) {
		fprintf(stderr, "bench: kept %s\n", dir);
	} else {
		rmtree(dir);
	}
	dir[0] = '\0';
}

// spawn_child starts argv[0] (an absolute path) with posix_spawn. in_fd
// and out_fd (-1: /dev/null and inherit) become the child's stdin and
// stdout; log_path (NULL: inherit) receives its stdout and stderr instead.
// Signals the parent ignores or catches go back to their defaults.
static int
spawn_child(pid_t *pidp, char *const argv[], int in_fd, int out_fd,
    const char *log_path)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t          attr;
	sigset_t                   def, none;
	int                        rv;

	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	if (in_fd >= 0) {
		posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
	} else {
		posix_spawn_file_actions_addopen(
		    &fa, 0, "/dev/null", O_RDONLY, 0);
	}
	if (log_path != NULL) {
		posix_spawn_file_actions_addopen(
		    &fa, 1, log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		posix_spawn_file_actions_adddup2(&fa, 1, 2);
	} else if (out_fd >= 0) {
		posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	}
	sigemptyset(&none);
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	sigaddset(&def, SIGINT);
	sigaddset(&def, SIGTERM);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &def);
	posix_spawnattr_setflags(
	    &attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	rv = posix_spawn(pidp, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (rv != 0) {
		fprintf(
		    stderr, "bench: spawn %s: %s\n", argv[0], strerror(rv));
		return (-1);
	}
	return (0);
}

// cpu_us is the user plus system time in a rusage, in microseconds.
static double
cpu_us(const struct rusage *ru)
{
	return ((double) (ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1e6 +
	    (double) (ru->ru_utime.tv_usec + ru->ru_stime.tv_usec));
}

// child_stop sends sig (0: none) to pid and waits up to wait_ms for it to
// exit, then kills it with SIGKILL and reaps it. *statusp (may be NULL)
// receives the wait status, *cpup (may be NULL) the child's CPU time in
// microseconds. Returns 0 if the child exited by itself in time, -1 if it
// had to be killed.
static int
child_stop(pid_t pid, int sig, int wait_ms, int *statusp, double *cpup)
{
	int64_t       deadline = now_ns() + (int64_t) wait_ms * NS_PER_MS;
	int           status   = 0;
	pid_t         r;
	struct rusage ru;

	if (pid <= 0) {
		return (0);
	}
	if (sig != 0) {
		kill(pid, sig);
	}
	for (;;) {
		memset(&ru, 0, sizeof(ru));
		r = wait4(pid, &status, WNOHANG, &ru);
		if (r == pid || (r < 0 && errno != EINTR)) {
			break;
		}
		if (now_ns() > deadline) {
			fprintf(stderr,
			    "bench: pid %d did not exit in %d ms; "
			    "SIGKILL\n",
			    (int) pid, wait_ms);
			kill(pid, SIGKILL);
			while (
			    waitpid(pid, &status, 0) < 0 && errno == EINTR) { }
			if (statusp != NULL) {
				*statusp = status;
			}
			return (-1);
		}
		sleep_ms(2);
	}
	if (statusp != NULL) {
		*statusp = status;
	}
	if (cpup != NULL) {
		*cpup = cpu_us(&ru);
	}
	return (0);
}

static bool
status_ok(int status)
{
	return (WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void
describe_status(char *buf, size_t len, int status)
{
	if (WIFEXITED(status)) {
		snprintf(buf, len, "exit %d", WEXITSTATUS(status));
	} else if (WIFSIGNALED(status)) {
		snprintf(buf, len, "signal %d", WTERMSIG(status));
	} else {
		snprintf(buf, len, "status %#x", status);
	}
}

// print_tail prints the last lines of a log file to stderr.
static void
print_tail(const char *path, int lines)
{
	char   buf[8192];
	FILE  *f;
	long   size;
	size_t n;
	char  *p;
	int    seen = 0;

	if ((f = fopen(path, "r")) == NULL) {
		return;
	}
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f,
	    size > (long) sizeof(buf) - 1 ? size - (long) sizeof(buf) + 1 : 0,
	    SEEK_SET);
	n      = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	p = buf + n;
	while (p > buf && seen <= lines) {
		p--;
		if (*p == '\n') {
			seen++;
		}
	}
	fprintf(stderr, "---- last lines of %s ----\n%s\n----\n", path,
	    p == buf ? p : p + 1);
}

// ---------------------------------------------------------------------------
// Broker

typedef struct broker {
	pid_t      pid;
	char       dir[PATH_MAX];
	char       url[PATH_MAX + 16];
	char       evurl[PATH_MAX + 16];
	char       log[PATH_MAX + 16];
	tb_client *c;   // the parent's client: ping, stats
	double     cpu; // OUT of broker_stop: its CPU time, microseconds
} broker;

// broker_stop closes the parent's client, stops the broker with SIGTERM
// (SIGKILL after BROKER_STOP_MS), and removes its directory. It reports a
// broker that did not exit 0. Accepts a half-started broker.
static void
broker_stop(const bench_cfg *cfg, broker *b)
{
	int  status = 0;
	char desc[64];

	tb_client_close(b->c);
	b->c = NULL;
	if (b->pid > 0) {
		b->cpu = NAN;
		if (child_stop(b->pid, SIGTERM, BROKER_STOP_MS, &status,
		        &b->cpu) != 0 ||
		    !status_ok(status)) {
			describe_status(desc, sizeof(desc), status);
			fprintf(stderr,
			    "bench: broker pid %d ended badly (%s)\n",
			    (int) b->pid, desc);
			probs.broker_bad_exits++;
			print_tail(b->log, 20);
		}
		b->pid = 0;
	}
	remove_tmpdir(cfg, b->dir);
}

// broker_start starts a broker on a fresh data directory and waits until
// it answers tb_ping. On failure everything is undone.
static int
broker_start(const bench_cfg *cfg, broker *b)
{
	char    datadir[PATH_MAX + 16];
	char   *argv[24];
	int     argc = 0;
	int64_t deadline;
	int     rv, status;
	char   *version = NULL;
	char    workers[16];

	memset(b, 0, sizeof(*b));
	if (make_tmpdir(cfg, b->dir, sizeof(b->dir), "broker") != 0) {
		return (-1);
	}
	snprintf(datadir, sizeof(datadir), "%s/data", b->dir);
	snprintf(b->url, sizeof(b->url), "ipc://%s/tb.sock", b->dir);
	snprintf(b->evurl, sizeof(b->evurl), "ipc://%s/ev.sock", b->dir);
	snprintf(b->log, sizeof(b->log), "%s/broker.log", b->dir);
	if (mkdir(datadir, 0700) != 0) {
		fprintf(
		    stderr, "bench: mkdir %s: %s\n", datadir, strerror(errno));
		goto fail;
	}

	argv[argc++] = (char *) cfg->broker_bin;
	argv[argc++] = "--data-dir";
	argv[argc++] = datadir;
	argv[argc++] = "--listen";
	argv[argc++] = b->url;
	argv[argc++] = "--events";
	argv[argc++] = b->evurl;
	argv[argc++] = "--durability";
	argv[argc++] = (char *) cfg->durability;
	// The workers scenario's handler, served by worker processes.
	argv[argc++] = "--worker-handler";
	argv[argc++] = "bench_job";
	argv[argc++] = "--shutdown-timeout";
	argv[argc++] = SHUTDOWN_TIMEOUT_S;
	if (cfg->workers > 0) {
		snprintf(workers, sizeof(workers), "%d", cfg->workers);
		argv[argc++] = "--workers";
		argv[argc++] = workers;
	}
	if (cfg->broker_log_level != NULL) {
		argv[argc++] = "--log-level";
		argv[argc++] = (char *) cfg->broker_log_level;
	}
	argv[argc] = NULL;
	if (spawn_child(&b->pid, argv, -1, -1, b->log) != 0) {
		b->pid = 0;
		goto fail;
	}

	if ((rv = tb_client_open(&b->c, b->url)) != TB_OK) {
		fprintf(stderr, "bench: tb_client_open %s: %s\n", b->url,
		    tb_strerror(rv));
		goto fail;
	}
	tb_client_set_timeout(b->c, 250);
	deadline = now_ns() + (int64_t) BROKER_START_MS * NS_PER_MS;
	for (;;) {
		if ((rv = tb_ping(b->c, &version)) == TB_OK) {
			break;
		}
		if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
			char desc[64];

			describe_status(desc, sizeof(desc), status);
			fprintf(stderr, "bench: broker exited at start (%s)\n",
			    desc);
			b->pid = 0;
			print_tail(b->log, 20);
			goto fail;
		}
		if (now_ns() > deadline || g_stop) {
			fprintf(stderr,
			    "bench: broker did not answer ping in "
			    "%d ms (last: %s)\n",
			    BROKER_START_MS, tb_strerror(rv));
			print_tail(b->log, 20);
			goto fail;
		}
		sleep_ms(10);
	}
	if (version != NULL) {
		snprintf(
		    broker_version, sizeof(broker_version), "%s", version);
		free(version);
	}
	tb_client_set_timeout(b->c, 5000);
	return (0);
fail:
	broker_stop(cfg, b);
	return (-1);
}

// ---------------------------------------------------------------------------
// Producers: the parent side

typedef struct prod_run {
	const char *kind; // "tb" or "nng"
	const char *url;
	int         nprod;
	int         threads;
	long        tasks; // in all
	int         batch;
	int         rate; // 0: closed loop
	int         deadline_s;
	tb_client  *stats; // NULL: no end-to-end figure
	const char *dir;   // for the result files
} prod_run;

// write_full and read_full move exactly len bytes or fail.
static int
write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t     n;

	while (len > 0) {
		if ((n = write(fd, p, len)) < 0) {
			if (errno == EINTR) {
				continue;
			}
			return (-1);
		}
		p += n;
		len -= (size_t) n;
	}
	return (0);
}

static int
read_full(int fd, void *buf, size_t len)
{
	char   *p = buf;
	ssize_t n;

	while (len > 0) {
		if ((n = read(fd, p, len)) < 0) {
			if (errno == EINTR) {
				continue;
			}
			return (-1);
		}
		if (n == 0) {
			return (-1);
		}
		p += n;
		len -= (size_t) n;
	}
	return (0);
}

// wait_ready waits until every producer has written its ready byte, or
// one closed its pipe, or the deadline passed.
static int
wait_ready(const int *fds, int n, int ms)
{
	int64_t deadline             = now_ns() + (int64_t) ms * NS_PER_MS;
	bool    ready[MAX_PRODUCERS] = { false };
	int     left                 = n;
	char    c;
	ssize_t r;

	for (int i = 0; i < n; i++) {
		fcntl(fds[i], F_SETFL, O_NONBLOCK);
	}
	while (left > 0) {
		for (int i = 0; i < n; i++) {
			if (ready[i]) {
				continue;
			}
			r = read(fds[i], &c, 1);
			if (r == 1 && c == 'R') {
				ready[i] = true;
				left--;
			} else if (r == 0 ||
			    (r < 0 && errno != EAGAIN && errno != EINTR)) {
				fprintf(stderr,
				    "bench: producer %d failed to "
				    "start\n",
				    i);
				return (-1);
			}
		}
		if (left == 0) {
			break;
		}
		if (now_ns() > deadline || g_stop) {
			fprintf(stderr,
			    "bench: producers not ready in %d ms\n", ms);
			return (-1);
		}
		sleep_ms(1);
	}
	return (0);
}

// read_results reads one producer's result file and appends its latencies
// to lat (capacity cap, count *np).
static int
read_results(
    const char *path, prod_hdr *h, uint64_t *lat, size_t cap, size_t *np)
{
	FILE *f;
	int   rv = -1;

	if ((f = fopen(path, "rb")) == NULL) {
		fprintf(stderr, "bench: open %s: %s\n", path, strerror(errno));
		return (-1);
	}
	if (fread(h, sizeof(*h), 1, f) != 1 || h->magic != PROD_MAGIC ||
	    h->nreq > cap - *np) {
		fprintf(stderr, "bench: bad result file %s\n", path);
		goto out;
	}
	if (fread(lat + *np, sizeof(uint64_t), h->nreq, f) != h->nreq) {
		fprintf(stderr, "bench: short result file %s\n", path);
		goto out;
	}
	*np += h->nreq;
	rv = 0;
out:
	fclose(f);
	return (rv);
}

// run_producers runs one measured scenario: spawns the producers, starts
// them together, polls the broker's stats for the end-to-end time (if
// pr->stats), waits for them, merges their results into *r.
static int
run_producers(const bench_cfg *cfg, const prod_run *pr, scen_result *r)
{
	pid_t     pids[MAX_PRODUCERS] = { 0 };
	int       status[MAX_PRODUCERS];
	int       rd[MAX_PRODUCERS], wr[MAX_PRODUCERS];
	bool      exited[MAX_PRODUCERS] = { false };
	char      outs[MAX_PRODUCERS][PATH_MAX + 32];
	uint64_t *lat  = NULL;
	size_t    nlat = 0, cap = 0, nvalid;
	tb_stats  st;
	uint64_t  base_completed = 0, base_submitted = 0, target;
	int64_t   start, t_done = 0, deadline, first = 0, last = 0;
	int       nexited = 0, rv = -1;
	bool      have_results = false;
	prod_hdr  h;

	memset(r, 0, sizeof(*r));
	r->submit_rate = r->e2e_rate = r->broker_cpu = NAN;
	r->p50 = r->p99 = r->p999 = r->max = NAN;
	for (int i = 0; i < pr->nprod; i++) {
		rd[i] = wr[i] = -1;
	}
	for (int i = 0; i < pr->nprod; i++) {
		long tasks =
		    pr->tasks / pr->nprod + (i < pr->tasks % pr->nprod);
		cap += (size_t) ((tasks + pr->batch - 1) / pr->batch);
	}
	if ((lat = malloc(cap * sizeof(*lat))) == NULL) {
		fprintf(stderr, "bench: out of memory\n");
		return (-1);
	}
	if (pr->stats != NULL) {
		if (tb_stats_get(pr->stats, &st) != TB_OK) {
			fprintf(stderr, "bench: tb_stats_get failed\n");
			goto out;
		}
		base_completed = st.completed;
		base_submitted = st.submitted;
	}

	for (int i = 0; i < pr->nprod; i++) {
		int   to_child[2], from_child[2];
		char  threads[16], tasks[24], batch[16], rate[16], dl[16];
		long  n = pr->tasks / pr->nprod + (i < pr->tasks % pr->nprod);
		char *argv[] = { (char *) cfg->self, "--producer",
			(char *) pr->kind, (char *) pr->url, threads, tasks,
			batch, rate, dl, outs[i], NULL };

		snprintf(threads, sizeof(threads), "%d", pr->threads);
		snprintf(tasks, sizeof(tasks), "%ld", n);
		snprintf(batch, sizeof(batch), "%d", pr->batch);
		snprintf(rate, sizeof(rate), "%d", pr->rate);
		snprintf(dl, sizeof(dl), "%d", pr->deadline_s);
		snprintf(outs[i], sizeof(outs[i]), "%s/producer-%d.bin",
		    pr->dir, i);
		if (pipe2(to_child, O_CLOEXEC) != 0) {
			goto out;
		}
		if (pipe2(from_child, O_CLOEXEC) != 0) {
			close(to_child[0]);
			close(to_child[1]);
			goto out;
		}
		rv = spawn_child(
		    &pids[i], argv, to_child[0], from_child[1], NULL);
		close(to_child[0]);
		close(from_child[1]);
		wr[i] = to_child[1];
		rd[i] = from_child[0];
		if (rv != 0) {
			pids[i] = 0;
			rv      = -1;
			goto out;
		}
		rv = -1;
	}
	if (wait_ready(rd, pr->nprod, 15000) != 0) {
		goto out;
	}
	// Give the sleepers a moment so none starts late.
	start = now_ns() + 20 * NS_PER_MS;
	for (int i = 0; i < pr->nprod; i++) {
		if (write_full(wr[i], &start, sizeof(start)) != 0) {
			fprintf(
			    stderr, "bench: cannot start producer %d\n", i);
			goto out;
		}
	}

	target   = base_completed + (uint64_t) pr->tasks;
	deadline = start + ((int64_t) pr->deadline_s + 15) * NS_PER_S;
	for (;;) {
		int64_t t = now_ns();

		for (int i = 0; i < pr->nprod; i++) {
			struct rusage ru;

			if (!exited[i] &&
			    wait4(pids[i], &status[i], WNOHANG, &ru) ==
			        pids[i]) {
				r->client_cpu += cpu_us(&ru);
				exited[i] = true;
				pids[i]   = 0;
				nexited++;
				if (!status_ok(status[i])) {
					char desc[64];

					describe_status(
					    desc, sizeof(desc), status[i]);
					fprintf(stderr,
					    "bench: producer %d "
					    "ended badly (%s)\n",
					    i, desc);
					goto out;
				}
			}
		}
		if (nexited == pr->nprod && !have_results) {
			for (int i = 0; i < pr->nprod; i++) {
				if (read_results(
				        outs[i], &h, lat, cap, &nlat) != 0) {
					goto out;
				}
				r->ok_tasks += h.ok_tasks;
				r->errors += h.errors;
				if (h.errors > 0 && r->first_err == 0) {
					r->first_err = h.first_err;
				}
				if (h.first_send != 0 &&
				    (first == 0 || h.first_send < first)) {
					first = h.first_send;
				}
				if (h.last_ack > last) {
					last = h.last_ack;
				}
			}
			have_results = true;
			// Only accepted tasks can complete.
			target = base_completed + r->ok_tasks;
		}
		if (pr->stats != NULL && t_done == 0 &&
		    tb_stats_get(pr->stats, &st) == TB_OK &&
		    st.completed >= target) {
			t_done = now_ns();
		}
		if (have_results && (pr->stats == NULL || t_done != 0)) {
			break;
		}
		if (g_stop) {
			goto out;
		}
		if (t > deadline) {
			fprintf(stderr,
			    "bench: scenario did not finish in time "
			    "(completed %" PRIu64 " of %" PRIu64 ")\n",
			    pr->stats != NULL ? st.completed - base_completed
			                      : 0,
			    target - base_completed);
			goto out;
		}
		sleep_until(t + STATS_POLL_NS);
	}

	if (pr->stats != NULL && tb_stats_get(pr->stats, &st) == TB_OK &&
	    st.submitted - base_submitted != r->ok_tasks) {
		fprintf(stderr,
		    "bench: broker counts %" PRIu64 " submitted, "
		    "producers %" PRIu64 " accepted\n",
		    st.submitted - base_submitted, r->ok_tasks);
		r->dup_warning = true;
	}
	qsort(lat, nlat, sizeof(*lat), cmp_u64);
	for (nvalid = 0; nvalid < nlat && lat[nvalid] != LAT_NONE; nvalid++) {
	}
	if (nvalid > 0 && last > first) {
		r->submit_rate =
		    (double) r->ok_tasks * NS_PER_S / (double) (last - first);
		r->p50  = pct_ms(lat, nvalid, 0.50);
		r->p99  = pct_ms(lat, nvalid, 0.99);
		r->p999 = pct_ms(lat, nvalid, 0.999);
		r->max  = (double) lat[nvalid - 1] / NS_PER_MS;
	}
	if (t_done != 0 && t_done > first && first != 0) {
		r->e2e_rate = (double) r->ok_tasks * NS_PER_S /
		    (double) (t_done - first);
	}
	rv = 0;
out:
	for (int i = 0; i < pr->nprod; i++) {
		if (wr[i] >= 0) {
			close(wr[i]); // EOF makes a waiting producer quit
		}
		if (rd[i] >= 0) {
			close(rd[i]);
		}
		if (pids[i] > 0) {
			child_stop(pids[i], rv == 0 ? 0 : SIGTERM,
			    CHILD_STOP_MS, NULL, NULL);
		}
	}
	free(lat);
	return (rv);
}

// ---------------------------------------------------------------------------
// Workers: the child side (--worker url slots): a tb_worker with one
// thread per slot that completes every job at once with no result. It
// runs until the parent stops it (SIGTERM).

static void *
bench_worker_slot(void *arg)
{
	tb_worker *w = arg;
	tb_job    *j;

	for (;;) {
		int    rv  = tb_worker_next(w, 1000, &j);
		size_t len = 0;
		if (rv == TB_OK) {
			// A job with a payload is held until it is cancelled
			// (the recovery scenario's); the others end at once.
			(void) tb_job_payload(j, &len);
			while (len > 0 && !tb_job_cancelled(j)) {
				usleep(1000);
			}
			(void) tb_job_complete(j, NULL, 0);
		} else if (rv != TB_ETIMEDOUT) {
			break;
		}
	}
	return (NULL);
}

static int
worker_main(int argc, char **argv)
{
	const char    *handlers[] = { "bench_job" };
	tb_worker_opts o          = TB_WORKER_OPTS_INIT;
	tb_worker     *w;
	pthread_t      tid;
	int            slots;
	int            rv;

	if (argc != 2 || (slots = atoi(argv[1])) < 1 || slots > 1024) {
		fprintf(stderr, "worker: bad arguments\n");
		return (2);
	}
	o.handlers  = handlers;
	o.nhandlers = 1;
	o.slots     = (unsigned) slots;
	o.name      = "bench";
	if ((rv = tb_worker_open(&w, argv[0], &o)) != TB_OK) {
		fprintf(stderr, "worker: %s\n", tb_strerror(rv));
		return (1);
	}
	for (int i = 0; i < slots; i++) {
		if (pthread_create(&tid, NULL, bench_worker_slot, w) != 0) {
			return (1);
		}
		pthread_detach(tid);
	}
	for (;;) {
		pause(); // SIGTERM ends the process
	}
}

// Producers: the child side (--producer)

typedef struct prod {
	const char      *handler;  // "noop", or "bench_job" for workers
	bool             nng;      // raw nng round trips instead of tb_submit
	bool             async;    // one thread, tb_submit_async
	int              inflight; // async: submits in flight
	const char      *url;
	int              threads;
	long             tasks;
	int              batch;
	int              rate;
	uint64_t         nreq;
	int64_t          start;
	int64_t          deadline;
	_Atomic uint64_t next; // the next request index to take
	uint64_t        *lat;
	tb_client       *c;
	nng_socket       sock;
} prod;

typedef struct prod_thr {
	prod     *p;
	pthread_t tid;
	uint64_t  ok_tasks;
	uint64_t  errors;
	int       first_err;
	int64_t   first_send;
	int64_t   last_ack;
	nng_ctx   ctx;
	nng_aio  *aio;
} prod_thr;

// rtt_once sends one 100-byte request on the thread's context and waits
// for the echo.
static int
rtt_once(prod_thr *t)
{
	nng_msg *m;
	int      rv;

	if ((rv = nng_msg_alloc(&m, RTT_MSG_SIZE)) != 0) {
		return (rv);
	}
	memset(nng_msg_body(m), 'x', RTT_MSG_SIZE);
	nng_aio_set_msg(t->aio, m);
	nng_ctx_send(t->ctx, t->aio);
	nng_aio_wait(t->aio);
	if ((rv = nng_aio_result(t->aio)) != 0) {
		nng_msg_free(m); // a failed send leaves the message with us
		return (rv);
	}
	nng_ctx_recv(t->ctx, t->aio);
	nng_aio_wait(t->aio);
	if ((rv = nng_aio_result(t->aio)) != 0) {
		return (rv);
	}
	nng_msg_free(nng_aio_get_msg(t->aio));
	return (0);
}

// prod_error counts a failed request of thread t (and says the first).
static void
prod_error(prod_thr *t, int rv)
{
	if (t->errors++ == 0) {
		t->first_err = rv;
		fprintf(stderr, "producer %d: %s\n", (int) getpid(),
		    t->p->nng ? nng_strerror(rv) : tb_strerror(rv));
	}
}

static void *
prod_thread(void *arg)
{
	prod_thr    *t = arg;
	prod        *p = t->p;
	tb_task_spec specs[TB_MAX_BATCH];
	uint64_t     i;
	int64_t      sched, t0, t1;
	long         n;
	int          rv;

	for (int k = 0; k < p->batch; k++) {
		specs[k].handler     = p->handler;
		specs[k].payload     = NULL;
		specs[k].payload_len = 0;
		specs[k].opts        = NULL;
	}
	// Every thread of every producer begins at the common start time.
	sleep_until(p->start);
	for (;;) {
		i = atomic_fetch_add(&p->next, 1);
		if (i >= p->nreq) {
			break;
		}
		n = p->tasks - (long) i * p->batch;
		if (n > p->batch) {
			n = p->batch;
		}
		sched = 0;
		if (p->rate > 0) {
			// Open loop: request i is due at start + i/rate and
			// its latency counts from then, so time spent waiting
			// for a free thread is not hidden.
			sched = p->start +
			    (int64_t) ((double) i * NS_PER_S / p->rate);
			sleep_until(sched);
		}
		t0 = now_ns();
		if (t0 > p->deadline) {
			break;
		}
		if (p->nng) {
			rv = rtt_once(t);
		} else if (p->batch == 1) {
			rv = tb_submit(
			    t->p->c, t->p->handler, NULL, 0, NULL, NULL);
		} else {
			rv = tb_submit_batch(t->p->c, specs, (size_t) n, NULL);
		}
		t1 = now_ns();
		if (t->first_send == 0) {
			t->first_send = t0;
		}
		t->last_ack = t1;
		if (rv == 0) {
			p->lat[i] =
			    (uint64_t) (t1 - (sched != 0 ? sched : t0));
			t->ok_tasks += (uint64_t) n;
		} else {
			prod_error(t, rv);
		}
	}
	return (NULL);
}

// prod_async keeps p->inflight single-task tb_submit_async in flight from
// this one thread: it starts submits up to the bound, then waits on the
// client's completion descriptor with poll(2) and drains the queue, as an
// event loop does. Latency counts from each submit's start.
static void *
prod_async(void *arg)
{
	prod_thr     *t = arg;
	prod         *p = t->p;
	int64_t      *sent;
	uint64_t      started = 0, inflight = 0;
	struct pollfd pfd = { .events = POLLIN };
	tb_op        *op;
	int           rv;

	if ((sent = calloc(p->nreq + 1, sizeof(*sent))) == NULL ||
	    (rv = tb_client_completion_fd(p->c, &pfd.fd)) != TB_OK) {
		prod_error(t, sent == NULL ? TB_ENOMEM : rv);
		free(sent);
		return (NULL);
	}
	sleep_until(p->start);
	for (;;) {
		while (
		    started < p->nreq && inflight < (uint64_t) p->inflight) {
			int64_t t0 = now_ns();

			if (t0 > p->deadline) {
				break;
			}
			rv = tb_submit_async(p->c, p->handler, NULL, 0, NULL,
			    NULL, (void *) (uintptr_t) started, NULL);
			if (t->first_send == 0) {
				t->first_send = t0;
			}
			if (rv != TB_OK) {
				prod_error(t, rv);
			} else {
				sent[started] = t0;
				inflight++;
			}
			started++;
		}
		if (inflight == 0 || now_ns() > p->deadline) {
			break;
		}
		if (poll(&pfd, 1, 1000) < 0 && errno != EINTR) {
			prod_error(t, TB_ESYSTEM);
			break;
		}
		while (tb_client_next_completed(p->c, &op) == TB_OK) {
			uint64_t i  = (uintptr_t) tb_op_arg(op);
			int64_t  t1 = now_ns();

			inflight--;
			t->last_ack = t1;
			if ((rv = tb_op_status(op)) == TB_OK) {
				p->lat[i] = (uint64_t) (t1 - sent[i]);
				t->ok_tasks++;
			} else {
				prod_error(t, rv);
			}
			tb_op_free(op);
		}
	}
	// Ops still in flight at the deadline count as errors; close frees
	// them.
	t->errors += inflight;
	atomic_store(&p->next, started);
	free(sent);
	return (NULL);
}

static int
producer_connect(prod *p)
{
	int64_t deadline = now_ns() + 10 * NS_PER_S;
	int     rv;

	if (p->nng) {
		if ((rv = nng_req0_open(&p->sock)) != 0) {
			fprintf(stderr, "producer: req0_open: %s\n",
			    nng_strerror(rv));
			return (-1);
		}
		if ((rv = nng_dial(p->sock, p->url, NULL, 0)) != 0) {
			fprintf(stderr, "producer: dial %s: %s\n", p->url,
			    nng_strerror(rv));
			return (-1);
		}
		return (0);
	}
	if ((rv = tb_client_open(&p->c, p->url)) != TB_OK) {
		fprintf(stderr, "producer: tb_client_open %s: %s\n", p->url,
		    tb_strerror(rv));
		return (-1);
	}
	tb_client_set_timeout(p->c, 10000);
	// The first call opens the sockets; ping until connected so the
	// measured time holds no connection setup.
	while ((rv = tb_ping(p->c, NULL)) != TB_OK) {
		if (now_ns() > deadline) {
			fprintf(stderr, "producer: ping %s: %s\n", p->url,
			    tb_strerror(rv));
			return (-1);
		}
		sleep_ms(10);
	}
	return (0);
}

// producer_main: argv = kind url threads tasks batch rate deadline_s out.
static int
producer_main(int argc, char **argv)
{
	prod      p;
	prod_thr *thr = NULL;
	prod_hdr  h;
	FILE     *f;
	int       rv = 1, started = 0;

	if (argc != 8) {
		fprintf(stderr, "producer: bad arguments\n");
		return (2);
	}
	memset(&p, 0, sizeof(p));
	p.nng     = strcmp(argv[0], "nng") == 0;
	p.handler = strcmp(argv[0], "tbw") == 0 ? "bench_job" : "noop";
	p.async   = strcmp(argv[0], "async") == 0;
	p.url     = argv[1];
	p.threads = atoi(argv[2]);
	if (p.async) {
		// One thread keeps that many submits in flight.
		p.inflight = p.threads;
		p.threads  = 1;
	}
	p.tasks = atol(argv[3]);
	p.batch = atoi(argv[4]);
	p.rate  = atoi(argv[5]);
	if (p.threads < 1 || p.tasks < 0 || p.batch < 1 ||
	    p.batch > TB_MAX_BATCH) {
		fprintf(stderr, "producer: bad arguments\n");
		return (2);
	}
	p.nreq = (uint64_t) ((p.tasks + p.batch - 1) / p.batch);
	atomic_init(&p.next, 0);
	if ((p.lat = malloc((p.nreq + 1) * sizeof(*p.lat))) == NULL ||
	    (thr = calloc((size_t) p.threads, sizeof(*thr))) == NULL) {
		goto out;
	}
	for (uint64_t i = 0; i < p.nreq; i++) {
		p.lat[i] = LAT_NONE;
	}
	if (producer_connect(&p) != 0) {
		goto out;
	}
	for (int i = 0; i < p.threads; i++) {
		thr[i].p = &p;
		if (p.nng) {
			if (nng_ctx_open(&thr[i].ctx, p.sock) != 0 ||
			    nng_aio_alloc(&thr[i].aio, NULL, NULL) != 0) {
				fprintf(stderr, "producer: nng ctx/aio\n");
				goto out;
			}
			nng_aio_set_timeout(thr[i].aio, 10000);
		}
	}
	if (write_full(1, "R", 1) != 0 ||
	    read_full(0, &p.start, sizeof(p.start)) != 0) {
		goto out; // the parent gave up
	}
	p.deadline = p.start + (int64_t) atoi(argv[6]) * NS_PER_S;
	for (int i = 0; i < p.threads; i++) {
		if (pthread_create(&thr[i].tid, NULL,
		        p.async ? prod_async : prod_thread, &thr[i]) != 0) {
			fprintf(stderr, "producer: pthread_create failed\n");
			p.deadline = 0; // the started ones stop at once
			break;
		}
		started++;
	}
	for (int i = 0; i < started; i++) {
		pthread_join(thr[i].tid, NULL);
	}
	if (started < p.threads) {
		goto out;
	}

	memset(&h, 0, sizeof(h));
	h.magic = PROD_MAGIC;
	h.nreq  = p.nreq;
	for (int i = 0; i < p.threads; i++) {
		h.ok_tasks += thr[i].ok_tasks;
		h.errors += thr[i].errors;
		if (thr[i].errors > 0 && h.first_err == 0) {
			h.first_err = thr[i].first_err;
		}
		if (thr[i].first_send != 0 &&
		    (h.first_send == 0 || thr[i].first_send < h.first_send)) {
			h.first_send = thr[i].first_send;
		}
		if (thr[i].last_ack > h.last_ack) {
			h.last_ack = thr[i].last_ack;
		}
	}
	// Requests never sent (deadline) count as errors too.
	for (uint64_t i = atomic_load(&p.next); i < p.nreq; i++) {
		h.errors++;
	}
	if ((f = fopen(argv[7], "wb")) == NULL) {
		fprintf(stderr, "producer: open %s: %s\n", argv[7],
		    strerror(errno));
		goto out;
	}
	if (fwrite(&h, sizeof(h), 1, f) != 1 ||
	    fwrite(p.lat, sizeof(*p.lat), p.nreq, f) != p.nreq) {
		fprintf(stderr, "producer: write %s failed\n", argv[7]);
		fclose(f);
		goto out;
	}
	if (fclose(f) != 0) {
		goto out;
	}
	rv = 0;
out:
	if (thr != NULL) {
		for (int i = 0; i < p.threads; i++) {
			if (thr[i].aio != NULL) {
				nng_aio_free(thr[i].aio);
			}
		}
	}
	if (p.nng) {
		nng_close(p.sock);
	}
	tb_client_close(p.c);
	free(thr);
	free(p.lat);
	return (rv);
}

// ---------------------------------------------------------------------------
// Echo server (--echo url readyfile)

enum { ECHO_RECV, ECHO_SEND };

typedef struct echo_ctx {
	nng_ctx  ctx;
	nng_aio *aio;
	int      state;
} echo_ctx;

static atomic_bool echo_closing;

// echo_cb runs on nng's threads: receive, send the same message back,
// repeat. It never blocks.
static void
echo_cb(void *arg)
{
	echo_ctx *e = arg;
	nng_msg  *m;

	if (atomic_load(&echo_closing)) {
		if (e->state == ECHO_SEND && nng_aio_result(e->aio) != 0) {
			nng_msg_free(nng_aio_get_msg(e->aio));
		}
		return;
	}
	switch (e->state) {
	case ECHO_RECV:
		if (nng_aio_result(e->aio) != 0) {
			return; // closed
		}
		m = nng_aio_get_msg(e->aio);
		nng_aio_set_msg(e->aio, m);
		e->state = ECHO_SEND;
		nng_ctx_send(e->ctx, e->aio);
		break;
	case ECHO_SEND:
		if (nng_aio_result(e->aio) != 0) {
			nng_msg_free(nng_aio_get_msg(e->aio));
		}
		e->state = ECHO_RECV;
		nng_ctx_recv(e->ctx, e->aio);
		break;
	}
}

static int
echo_main(int argc, char **argv)
{
	nng_socket      sock;
	echo_ctx       *ctxs;
	sigset_t        set;
	int             rv, fd, sig;
	struct timespec limit = { 600, 0 };

	if (argc != 2) {
		fprintf(stderr, "echo: bad arguments\n");
		return (2);
	}
	// Block the stop signals before nng starts its threads, so only
	// sigtimedwait below receives them.
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if ((ctxs = calloc(ECHO_CONTEXTS, sizeof(*ctxs))) == NULL) {
		return (1);
	}
	if ((rv = nng_rep0_open(&sock)) != 0) {
		fprintf(stderr, "echo: rep0_open: %s\n", nng_strerror(rv));
		return (1);
	}
	for (int i = 0; i < ECHO_CONTEXTS; i++) {
		if ((rv = nng_ctx_open(&ctxs[i].ctx, sock)) != 0 ||
		    (rv = nng_aio_alloc(&ctxs[i].aio, echo_cb, &ctxs[i])) !=
		        0) {
			fprintf(stderr, "echo: ctx: %s\n", nng_strerror(rv));
			return (1);
		}
	}
	if ((rv = nng_listen(sock, argv[0], NULL, 0)) != 0) {
		fprintf(stderr, "echo: listen %s: %s\n", argv[0],
		    nng_strerror(rv));
		return (1);
	}
	for (int i = 0; i < ECHO_CONTEXTS; i++) {
		ctxs[i].state = ECHO_RECV;
		nng_ctx_recv(ctxs[i].ctx, ctxs[i].aio);
	}
	if ((fd = open(argv[1], O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) < 0) {
		fprintf(stderr, "echo: %s: %s\n", argv[1], strerror(errno));
		return (1);
	}
	close(fd);
	// A parent that died leaves us here at most ten minutes.
	sig = sigtimedwait(&set, NULL, &limit);
	(void) sig;
	atomic_store(&echo_closing, true);
	nng_close(sock);
	for (int i = 0; i < ECHO_CONTEXTS; i++) {
		nng_aio_free(ctxs[i].aio); // waits for its callback
	}
	free(ctxs);
	return (0);
}

// ---------------------------------------------------------------------------
// Raw limits

// bench_nng measures REQ/REP round trips over ipc with the P x C pattern.
static int
bench_nng(const bench_cfg *cfg, scen_result *r)
{
	char        dir[PATH_MAX], url[PATH_MAX + 16], ready[PATH_MAX + 16];
	pid_t       pid = 0;
	int64_t     deadline;
	int         rv = -1;
	prod_run    pr;
	struct stat sb;

	if (make_tmpdir(cfg, dir, sizeof(dir), "nng") != 0) {
		return (-1);
	}
	snprintf(url, sizeof(url), "ipc://%s/echo.sock", dir);
	snprintf(ready, sizeof(ready), "%s/echo.ready", dir);
	{
		char *argv[] = { (char *) cfg->self, "--echo", url, ready,
			NULL };

		if (spawn_child(&pid, argv, -1, -1, NULL) != 0) {
			pid = 0;
			goto out;
		}
	}
	deadline = now_ns() + 5 * NS_PER_S;
	while (stat(ready, &sb) != 0) {
		if (now_ns() > deadline || g_stop ||
		    waitpid(pid, NULL, WNOHANG) == pid) {
			fprintf(stderr, "bench: echo server did not start\n");
			goto out;
		}
		sleep_ms(2);
	}
	memset(&pr, 0, sizeof(pr));
	pr.kind       = "nng";
	pr.url        = url;
	pr.nprod      = cfg->producers;
	pr.threads    = cfg->inflight;
	pr.tasks      = cfg->tasks;
	pr.batch      = 1;
	pr.deadline_s = 60;
	pr.dir        = dir;
	rv            = run_producers(cfg, &pr, r);
	probs.nng_errors += r->errors;
out:
	if (pid > 0) {
		child_stop(pid, SIGTERM, CHILD_STOP_MS, NULL, &r->broker_cpu);
	}
	remove_tmpdir(cfg, dir);
	return (rv);
}

static int
sql_exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		fprintf(stderr, "bench: sqlite: %s: %s\n", sql,
		    err != NULL ? err : "?");
		sqlite3_free(err);
		return (-1);
	}
	return (0);
}

// bench_sqlite inserts task-shaped rows in transactions of per_txn rows
// for about cfg->sqlite_ms into a fresh WAL database, and reports rows/s
// and commits/s. The unique index on sid stands for the broker's
// submission-id deduplication.
static int
bench_sqlite(
    const bench_cfg *cfg, int per_txn, double *rowsp, double *commitsp)
{
	char          dir[PATH_MAX], path[PATH_MAX + 16];
	sqlite3      *db  = NULL;
	sqlite3_stmt *ins = NULL, *begin = NULL, *commit = NULL;
	uint8_t       sid[16];
	uint64_t      rows = 0, commits = 0;
	int64_t       t0, t1, end;
	int           rv   = -1;
	bool          full = strcmp(cfg->durability, "full") == 0;

	if (make_tmpdir(cfg, dir, sizeof(dir), "sqlite") != 0) {
		return (-1);
	}
	snprintf(path, sizeof(path), "%s/bench.db", dir);
	if (sqlite3_open(path, &db) != SQLITE_OK) {
		fprintf(stderr, "bench: sqlite open %s\n", path);
		goto out;
	}
	if (sql_exec(db, "PRAGMA journal_mode=WAL") != 0 ||
	    sql_exec(db,
	        full ? "PRAGMA synchronous=FULL"
	             : "PRAGMA synchronous=NORMAL") != 0 ||
	    sql_exec(db,
	        "CREATE TABLE tasks(id INTEGER PRIMARY KEY, sid BLOB NOT NULL,"
	        " queue TEXT NOT NULL, handler TEXT NOT NULL, payload BLOB,"
	        " priority INTEGER, state INTEGER, attempts INTEGER,"
	        " max_attempts INTEGER, timeout_ms INTEGER, run_at INTEGER,"
	        " created_at INTEGER);"
	        "CREATE UNIQUE INDEX tasks_sid ON tasks(sid)") != 0) {
		goto out;
	}
	if (sqlite3_prepare_v2(db,
	        "INSERT INTO tasks(sid, queue, handler, payload, priority,"
	        " state, attempts, max_attempts, timeout_ms, run_at,"
	        " created_at) VALUES(?, 'default', 'noop', x'80', 0, 0, 0,"
	        " 1, 0, ?, ?)",
	        -1, &ins, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL) !=
	        SQLITE_OK ||
	    sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL) != SQLITE_OK) {
		fprintf(
		    stderr, "bench: sqlite prepare: %s\n", sqlite3_errmsg(db));
		goto out;
	}
	memset(sid, 0, sizeof(sid));
	t0  = now_ns();
	end = t0 + (int64_t) cfg->sqlite_ms * NS_PER_MS;
	do {
		if (sqlite3_step(begin) != SQLITE_DONE) {
			goto step_fail;
		}
		sqlite3_reset(begin);
		for (int k = 0; k < per_txn; k++) {
			uint64_t n  = rows + 1;
			int64_t  us = now_ns() / 1000;

			memcpy(sid, &n, sizeof(n)); // unique, like a random id
			sid[15] = (uint8_t) (n * 131);
			sqlite3_bind_blob(
			    ins, 1, sid, sizeof(sid), SQLITE_STATIC);
			sqlite3_bind_int64(ins, 2, us);
			sqlite3_bind_int64(ins, 3, us);
			if (sqlite3_step(ins) != SQLITE_DONE) {
				goto step_fail;
			}
			sqlite3_reset(ins);
			rows++;
		}
		if (sqlite3_step(commit) != SQLITE_DONE) {
			goto step_fail;
		}
		sqlite3_reset(commit);
		commits++;
		t1 = now_ns();
	} while (t1 < end && !g_stop);
	*rowsp    = (double) rows * NS_PER_S / (double) (t1 - t0);
	*commitsp = (double) commits * NS_PER_S / (double) (t1 - t0);
	rv        = 0;
	goto out;
step_fail:
	fprintf(stderr, "bench: sqlite step: %s\n", sqlite3_errmsg(db));
out:
	sqlite3_finalize(ins);
	sqlite3_finalize(begin);
	sqlite3_finalize(commit);
	sqlite3_close(db);
	remove_tmpdir(cfg, dir);
	return (rv);
}

// ---------------------------------------------------------------------------
// Our scenarios

// bench_broker runs one scenario against a fresh broker.
static int
bench_broker(const bench_cfg *cfg, int which, scen_result *r)
{
	broker   b;
	prod_run pr;
	int      rv;

	if (broker_start(cfg, &b) != 0) {
		return (-1);
	}
	memset(&pr, 0, sizeof(pr));
	pr.kind    = "tb";
	pr.url     = b.url;
	pr.dir     = b.dir;
	pr.threads = cfg->inflight;
	pr.stats   = b.c;
	switch (which) {
	case S_SINGLE:
		pr.nprod = cfg->producers;
		pr.tasks = cfg->tasks;
		pr.batch = 1;
		break;
	case S_BATCH:
		pr.nprod = cfg->producers;
		pr.tasks = cfg->batch_tasks;
		pr.batch = cfg->batch;
		break;
	case S_SERIAL:
		pr.nprod   = 1;
		pr.threads = 1;
		pr.tasks   = cfg->serial_tasks;
		pr.batch   = 1;
		break;
	case S_ASYNC:
		pr.kind    = "async";
		pr.nprod   = 1;
		pr.threads = cfg->async_inflight; // in flight, one thread
		pr.tasks   = cfg->tasks;
		pr.batch   = 1;
		break;
	default:
		pr.nprod = 1;
		pr.tasks = (long) cfg->rate * cfg->paced_secs;
		pr.batch = 1;
		pr.rate  = cfg->rate;
		break;
	}
	// A generous bound: 30 s plus 1 s per 2,000 tasks.
	pr.deadline_s = 30 + (int) (pr.tasks / 2000);
	rv            = run_producers(cfg, &pr, r);
	broker_stop(cfg, &b);
	r->broker_cpu = b.cpu;
	if (rv == 0) {
		probs.errors[which] += r->errors;
		if (r->errors > 0 && probs.first_err[which] == 0) {
			probs.first_err[which] = r->first_err;
		}
		if (r->dup_warning) {
			probs.dup_warnings++;
		}
	}
	return (rv);
}

// BENCH_WORKER_SLOTS is each bench worker's slots: enough to cover the
// commit latency each task start waits for.
#define BENCH_WORKER_SLOTS 64

// bench_workers runs the batch scenario with its tasks for "bench_job",
// run by nworkers worker processes (--worker) that complete each job at
// once: end-to-end throughput through workers.
static int
bench_workers(const bench_cfg *cfg, int nworkers, scen_result *r)
{
	broker   b;
	prod_run pr;
	pid_t    wp[2] = { 0, 0 };
	char     slots[16];
	char     log[PATH_MAX + 32];
	int64_t  deadline;
	int      rv = -1;

	if (broker_start(cfg, &b) != 0) {
		return (-1);
	}
	snprintf(slots, sizeof(slots), "%d", BENCH_WORKER_SLOTS);
	snprintf(log, sizeof(log), "%s/workers.log", b.dir);
	for (int i = 0; i < nworkers; i++) {
		char *argv[] = { (char *) cfg->self, "--worker", b.url, slots,
			NULL };
		if (spawn_child(&wp[i], argv, -1, -1, log) != 0) {
			goto out;
		}
	}
	// Wait until the broker lists them all.
	deadline = now_ns() + (int64_t) BROKER_START_MS * NS_PER_MS;
	for (;;) {
		tb_worker_info *l;
		size_t          n = 0;
		if (tb_workers(b.c, &l, &n) == TB_OK) {
			tb_workers_free(l, n);
		}
		if (n == (size_t) nworkers) {
			break;
		}
		if (now_ns() > deadline || g_stop) {
			fprintf(stderr,
			    "bench: %d worker(s) did not connect\n", nworkers);
			goto out;
		}
		usleep(5000);
	}
	memset(&pr, 0, sizeof(pr));
	pr.kind       = "tbw";
	pr.url        = b.url;
	pr.dir        = b.dir;
	pr.threads    = cfg->inflight;
	pr.stats      = b.c;
	pr.nprod      = cfg->producers;
	pr.tasks      = cfg->batch_tasks;
	pr.batch      = cfg->batch;
	pr.deadline_s = 30 + (int) (pr.tasks / 2000);
	rv            = run_producers(cfg, &pr, r);
out:
	for (int i = 0; i < nworkers; i++) {
		child_stop(wp[i], SIGTERM, CHILD_STOP_MS, NULL, NULL);
	}
	broker_stop(cfg, &b);
	r->broker_cpu = b.cpu;
	return (rv);
}

// RECOVERY_ROUNDS is how many kill -9s the recovery scenario measures.
#define RECOVERY_ROUNDS 20

// wait_start waits for the start event of task id on sub; its arrival
// time in *atp. Returns 0, or -1 after timeout_ms.
static int
wait_start(tb_sub *sub, tb_id id, int timeout_ms, int64_t *atp)
{
	int64_t deadline = now_ns() + (int64_t) timeout_ms * NS_PER_MS;

	while (now_ns() < deadline && !g_stop) {
		tb_event *e = NULL;
		if (tb_sub_recv(sub, 100, &e) != TB_OK) {
			continue;
		}
		if (tb_event_task_id(e) == id &&
		    strcmp(tb_event_name(e), "start") == 0) {
			*atp = now_ns();
			tb_event_free(e);
			return (0);
		}
		tb_event_free(e);
	}
	return (-1);
}

// bench_recovery: two workers of one slot; a held task starts on one,
// which is killed with SIGKILL; the time until the task's start event
// (dispatched to the other) is one sample. The killed worker is started
// again for the next round.
static int
bench_recovery(const bench_cfg *cfg, double *p50p, double *p99p)
{
	broker   b;
	pid_t    wp[2] = { 0, 0 };
	char     log[PATH_MAX + 32];
	char    *argv[] = { (char *) cfg->self, "--worker", NULL, "1", NULL };
	uint64_t lat[RECOVERY_ROUNDS];
	int      n   = 0;
	int      rv  = -1;
	tb_sub  *sub = NULL;
	int64_t  t0, t1;

	if (broker_start(cfg, &b) != 0) {
		return (-1);
	}
	argv[2] = b.url;
	snprintf(log, sizeof(log), "%s/workers.log", b.dir);
	if (tb_sub_open(&sub, b.evurl, "tb.start.") != TB_OK) {
		goto out;
	}
	for (int k = 0; k < RECOVERY_ROUNDS && !g_stop; k++) {
		tb_worker_info *l  = NULL;
		size_t          nl = 0;
		tb_id           id;
		pid_t           victim = 0;
		int64_t         deadline;

		for (int i = 0; i < 2; i++) {
			if (wp[i] == 0 &&
			    spawn_child(&wp[i], argv, -1, -1, log) != 0) {
				goto out;
			}
		}
		for (deadline = now_ns() + 10 * NS_PER_S;;) {
			nl = 0;
			if (tb_workers(b.c, &l, &nl) == TB_OK) {
				tb_workers_free(l, nl);
			}
			if (nl == 2) {
				break;
			}
			if (now_ns() > deadline || g_stop) {
				goto out;
			}
			usleep(2000);
		}
		// The subscription must be live: PUB drops events for pipes
		// not yet attached; the first round's start may be missed,
		// so that round's task is found through the workers list.
		if (tb_submit(b.c, "bench_job", "\xc3", 1, NULL, &id) !=
		    TB_OK) {
			goto out;
		}
		// Its first start, so that the one after the kill is the next.
		(void) wait_start(sub, id, 2000, &t1);
		for (deadline = now_ns() + 10 * NS_PER_S; victim == 0;) {
			if (tb_workers(b.c, &l, &nl) == TB_OK) {
				for (size_t i = 0; i < nl; i++) {
					if (l[i].running > 0) {
						victim = (pid_t) l[i].pid;
					}
				}
				tb_workers_free(l, nl);
			}
			if (victim == 0 && (now_ns() > deadline || g_stop)) {
				goto out;
			}
			if (victim == 0) {
				usleep(500);
			}
		}
		t0 = now_ns();
		kill(victim, SIGKILL);
		if (wait_start(sub, id, 10000, &t1) == 0) {
			lat[n++] = (uint64_t) (t1 - t0);
		}
		for (int i = 0; i < 2; i++) {
			if (wp[i] == victim) {
				child_stop(
				    wp[i], 0, CHILD_STOP_MS, NULL, NULL);
				wp[i] = 0;
			}
		}
		(void) tb_cancel(b.c, id, NULL); // the survivor lets it go
	}
	if (n > 0) {
		qsort(lat, (size_t) n, sizeof(lat[0]), cmp_u64);
		*p50p = (double) lat[(n - 1) / 2] / 1e6;
		*p99p = (double) lat[n - 1 - (n - 1) / 100] / 1e6;
		rv    = 0;
	}
out:
	tb_sub_close(sub);
	for (int i = 0; i < 2; i++) {
		child_stop(wp[i], SIGTERM, CHILD_STOP_MS, NULL, NULL);
	}
	broker_stop(cfg, &b);
	return (rv);
}

// quiesce flushes the temporary filesystem, so dirty pages left by one
// measurement are not written back during the next one's fsyncs (ext4
// data=ordered flushes them on any journal commit).
static void
quiesce(const bench_cfg *cfg)
{
	int fd;

	if ((fd = open(cfg->tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >=
	    0) {
		syncfs(fd);
		close(fd);
	}
}

static void
progress_rate(const char *what, double rate, double p50, double p99)
{
	fprintf(stderr, "  %-8s %10.0f /s   p50 %7.3f ms   p99 %7.3f ms\n",
	    what, rate, p50, p99);
}

// run_once runs every measurement once and fills vals[*][run].
static void
run_once(const bench_cfg *cfg, int run)
{
	scen_result r;
	double      rows, commits;

	for (int f = 0; f < F_COUNT; f++) {
		vals[f][run] = NAN;
	}
	fprintf(stderr, "run %d/%d\n", run + 1, cfg->runs);

	quiesce(cfg);
	if (!(cfg->only & (1u << S_NNG))) {
		// skipped
	} else if (!g_stop && bench_nng(cfg, &r) == 0) {
		vals[F_NNG_RATE][run] = r.submit_rate;
		vals[F_NNG_P50][run]  = r.p50;
		vals[F_NNG_P99][run]  = r.p99;
		vals[F_NNG_SCPU][run] = r.broker_cpu / (double) r.ok_tasks;
		vals[F_NNG_CCPU][run] = r.client_cpu / (double) r.ok_tasks;
		progress_rate("nng", r.submit_rate, r.p50, r.p99);
	} else {
		probs.failed_scenarios++;
	}
	quiesce(cfg);
	if (!(cfg->only & (1u << S_SQLITE))) {
		// skipped
	} else if (!g_stop && bench_sqlite(cfg, 1, &rows, &commits) == 0) {
		vals[F_SQL1_ROWS][run] = rows;
		fprintf(stderr, "  sqlite/1 %10.0f rows/s\n", rows);
	} else {
		probs.failed_scenarios++;
	}
	// P x C rows per commit is the most a group commit can gather in
	// the single scenario: the ceiling of its rate on this disk.
	quiesce(cfg);
	if (!(cfg->only & (1u << S_SQLITE))) {
		// skipped
	} else if (!g_stop &&
	    bench_sqlite(
	        cfg, cfg->producers * cfg->inflight, &rows, &commits) == 0) {
		vals[F_SQLPC_ROWS][run] = rows;
		fprintf(stderr, "  sqlite/%d %8.0f rows/s\n",
		    cfg->producers * cfg->inflight, rows);
	} else {
		probs.failed_scenarios++;
	}
	quiesce(cfg);
	if (!(cfg->only & (1u << S_SQLITE))) {
		// skipped
	} else if (!g_stop &&
	    bench_sqlite(cfg, cfg->batch, &rows, &commits) == 0) {
		vals[F_SQLB_ROWS][run]    = rows;
		vals[F_SQLB_COMMITS][run] = commits;
		fprintf(stderr, "  sqlite/%d %8.0f rows/s %8.0f commits/s\n",
		    cfg->batch, rows, commits);
	} else {
		probs.failed_scenarios++;
	}
	quiesce(cfg);
	if (!(cfg->only & (1u << S_SINGLE))) {
		// skipped
	} else if (!g_stop && bench_broker(cfg, S_SINGLE, &r) == 0) {
		vals[F_SINGLE_SUBMIT][run] = r.submit_rate;
		vals[F_SINGLE_P50][run]    = r.p50;
		vals[F_SINGLE_P99][run]    = r.p99;
		vals[F_SINGLE_E2E][run]    = r.e2e_rate;
		vals[F_SINGLE_BCPU][run] = r.broker_cpu / (double) r.ok_tasks;
		vals[F_SINGLE_CCPU][run] = r.client_cpu / (double) r.ok_tasks;
		progress_rate("single", r.submit_rate, r.p50, r.p99);
		fprintf(stderr,
		    "  single   %10.0f /s end-to-end; CPU per task: "
		    "broker %.1f us, producers %.1f us\n",
		    r.e2e_rate, vals[F_SINGLE_BCPU][run],
		    vals[F_SINGLE_CCPU][run]);
	} else {
		probs.failed_scenarios++;
	}
	quiesce(cfg);
	if (!(cfg->only & (1u << S_SERIAL))) {
		// skipped
	} else if (!g_stop && bench_broker(cfg, S_SERIAL, &r) == 0) {
		vals[F_SERIAL_SUBMIT][run] = r.submit_rate;
		vals[F_SERIAL_P50][run]    = r.p50;
		vals[F_SERIAL_P99][run]    = r.p99;
		progress_rate("serial", r.submit_rate, r.p50, r.p99);
	} else {
		probs.failed_scenarios++;
	}
	quiesce(cfg);
	if (!(cfg->only & (1u << S_ASYNC))) {
		// skipped
	} else if (!g_stop && bench_broker(cfg, S_ASYNC, &r) == 0) {
		vals[F_ASYNC_SUBMIT][run] = r.submit_rate;
		vals[F_ASYNC_P50][run]    = r.p50;
		vals[F_ASYNC_P99][run]    = r.p99;
		vals[F_ASYNC_E2E][run]    = r.e2e_rate;
		vals[F_ASYNC_CCPU][run]   = r.client_cpu / (double) r.ok_tasks;
		progress_rate("async", r.submit_rate, r.p50, r.p99);
	} else {
		probs.failed_scenarios++;
	}
	quiesce(cfg);
	if (!(cfg->only & (1u << S_BATCH))) {
		// skipped
	} else if (!g_stop && bench_broker(cfg, S_BATCH, &r) == 0) {
		vals[F_BATCH_SUBMIT][run] = r.submit_rate;
		vals[F_BATCH_P50][run]    = r.p50;
		vals[F_BATCH_P99][run]    = r.p99;
		vals[F_BATCH_E2E][run]    = r.e2e_rate;
		vals[F_BATCH_BCPU][run]   = r.broker_cpu / (double) r.ok_tasks;
		vals[F_BATCH_CCPU][run]   = r.client_cpu / (double) r.ok_tasks;
		progress_rate("batch", r.submit_rate, r.p50, r.p99);
		fprintf(stderr,
		    "  batch    %10.0f /s end-to-end; CPU per task: "
		    "broker %.1f us, producers %.1f us\n",
		    r.e2e_rate, vals[F_BATCH_BCPU][run],
		    vals[F_BATCH_CCPU][run]);
	} else {
		probs.failed_scenarios++;
	}
	for (int nw = 1; nw <= 2; nw++) {
		quiesce(cfg);
		if (!(cfg->only & (1u << S_WORKERS))) {
			break; // skipped
		}
		if (!g_stop && bench_workers(cfg, nw, &r) == 0) {
			vals[nw == 1 ? F_WK1_E2E : F_WK2_E2E][run] =
			    r.e2e_rate;
			fprintf(stderr,
			    "  workers  %10.0f /s end-to-end through %d "
			    "worker(s) of %d slots\n",
			    r.e2e_rate, nw, BENCH_WORKER_SLOTS);
		} else {
			probs.failed_scenarios++;
		}
	}
	quiesce(cfg);
	if (cfg->only & (1u << S_RECOVERY)) {
		double p50 = NAN, p99 = NAN;
		if (!g_stop && bench_recovery(cfg, &p50, &p99) == 0) {
			vals[F_RECOVER_P50][run] = p50;
			vals[F_RECOVER_P99][run] = p99;
			fprintf(stderr,
			    "  recovery kill -9 to start elsewhere: p50 %.3f "
			    "ms, p99 %.3f ms\n",
			    p50, p99);
		} else {
			probs.failed_scenarios++;
		}
	}
	quiesce(cfg);
	if (!(cfg->only & (1u << S_PACED))) {
		// skipped
	} else if (!g_stop && bench_broker(cfg, S_PACED, &r) == 0) {
		vals[F_PACED_RATE][run] = r.submit_rate;
		vals[F_PACED_P50][run]  = r.p50;
		vals[F_PACED_P99][run]  = r.p99;
		vals[F_PACED_P999][run] = r.p999;
		vals[F_PACED_MAX][run]  = r.max;
		progress_rate("paced", r.submit_rate, r.p50, r.p99);
	} else {
		probs.failed_scenarios++;
	}
}

// ---------------------------------------------------------------------------
// Report

typedef struct machine {
	long   ncpu;
	char   model[128];
	double mem_gib;
	char   kernel[256];
	char   fstype[32];
	double load_start, load_end; // 1-minute load averages
	double other_cpu;            // share of all CPUs used by others
	double steal;                // share of all CPUs stolen by the host
} machine;

// cpu_sample: the machine's busy and steal time (/proc/stat, seconds) and
// our own CPU time (this process and its reaped children), at one moment.
typedef struct cpu_sample {
	double  busy;
	double  steal;
	double  ours;
	int64_t t;
} cpu_sample;

static void
cpu_sample_take(cpu_sample *cs)
{
	unsigned long long v[8] = { 0 };
	struct rusage      self, kids;
	double             hz = (double) sysconf(_SC_CLK_TCK);
	FILE              *f;

	memset(cs, 0, sizeof(*cs));
	if ((f = fopen("/proc/stat", "r")) != NULL) {
		// cpu user nice system idle iowait irq softirq steal
		if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu",
		        &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
		        &v[7]) == 8) {
			cs->busy =
			    (double) (v[0] + v[1] + v[2] + v[5] + v[6]) / hz;
			cs->steal = (double) v[7] / hz;
		}
		fclose(f);
	}
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	cs->ours = (cpu_us(&self) + cpu_us(&kids)) / 1e6;
	cs->t    = now_ns();
}

static double
loadavg1(void)
{
	double l = NAN;
	FILE  *f;

	if ((f = fopen("/proc/loadavg", "r")) != NULL) {
		if (fscanf(f, "%lf", &l) != 1) {
			l = NAN;
		}
		fclose(f);
	}
	return (l);
}

// machine_load_end fills in what others did to the machine since a.
static void
machine_load_end(machine *m, const cpu_sample *a)
{
	cpu_sample b;
	double     wall;

	cpu_sample_take(&b);
	m->load_end = loadavg1();
	wall        = (double) (b.t - a->t) / NS_PER_S * (double) m->ncpu;
	m->other_cpu =
	    wall > 0 ? ((b.busy - a->busy) - (b.ours - a->ours)) / wall : NAN;
	if (m->other_cpu < 0) {
		m->other_cpu = 0;
	}
	m->steal = wall > 0 ? (b.steal - a->steal) / wall : NAN;
}

static void
machine_describe(const bench_cfg *cfg, machine *m)
{
	char           line[512];
	FILE          *f;
	struct utsname u;
	struct statfs  sf;

	memset(m, 0, sizeof(*m));
	m->ncpu       = sysconf(_SC_NPROCESSORS_ONLN);
	m->load_start = loadavg1();
	snprintf(m->model, sizeof(m->model), "unknown");
	if ((f = fopen("/proc/cpuinfo", "r")) != NULL) {
		while (fgets(line, sizeof(line), f) != NULL) {
			char *p;

			if (strncmp(line, "model name", 10) == 0 &&
			    (p = strchr(line, ':')) != NULL) {
				p++;
				while (*p == ' ' || *p == '\t') {
					p++;
				}
				p[strcspn(p, "\n")] = '\0';
				snprintf(m->model, sizeof(m->model), "%s", p);
				break;
			}
		}
		fclose(f);
	}
	if ((f = fopen("/proc/meminfo", "r")) != NULL) {
		unsigned long kb;

		while (fgets(line, sizeof(line), f) != NULL) {
			if (sscanf(line, "MemTotal: %lu kB", &kb) == 1) {
				m->mem_gib = (double) kb / (1024.0 * 1024.0);
				break;
			}
		}
		fclose(f);
	}
	if (uname(&u) == 0) {
		snprintf(m->kernel, sizeof(m->kernel), "%s %s %s", u.sysname,
		    u.release, u.machine);
	}
	snprintf(m->fstype, sizeof(m->fstype), "unknown");
	if (statfs(cfg->tmpdir, &sf) == 0) {
		switch ((unsigned long) sf.f_type) {
		case 0xEF53:
			snprintf(m->fstype, sizeof(m->fstype), "ext4");
			break;
		case 0x01021994:
			snprintf(m->fstype, sizeof(m->fstype),
			    "tmpfs (fsync is free!)");
			break;
		case 0x58465342:
			snprintf(m->fstype, sizeof(m->fstype), "xfs");
			break;
		case 0x9123683E:
			snprintf(m->fstype, sizeof(m->fstype), "btrfs");
			break;
		case 0x794c7630:
			snprintf(m->fstype, sizeof(m->fstype), "overlayfs");
			break;
		default:
			snprintf(m->fstype, sizeof(m->fstype), "0x%lx",
			    (unsigned long) sf.f_type);
			break;
		}
	}
}

// fmt_val formats a figure for the table: rates as integers with
// thousands separators, latencies with three decimals.
static void
fmt_val(char *buf, size_t len, double v, const char *unit)
{
	char   digits[32], out[48];
	size_t n, o = 0;

	if (isnan(v)) {
		snprintf(buf, len, "n/a");
		return;
	}
	if (strcmp(unit, "ms") == 0) {
		snprintf(buf, len, "%.3f", v);
		return;
	}
	if (strcmp(unit, "us") == 0) {
		snprintf(buf, len, "%.1f", v);
		return;
	}
	snprintf(digits, sizeof(digits), "%.0f", v);
	n = strlen(digits);
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && (n - i) % 3 == 0 && digits[i - 1] != '-') {
			out[o++] = ',';
		}
		out[o++] = digits[i];
	}
	out[o] = '\0';
	snprintf(buf, len, "%s", out);
}

static void
fmt_ratio(char *buf, size_t len, double num, double den)
{
	if (isnan(num) || isnan(den) || den <= 0) {
		snprintf(buf, len, "n/a");
	} else {
		snprintf(buf, len, "%.2f", num / den);
	}
}

static void
print_human(const bench_cfg *cfg, const machine *m)
{
	double med[F_COUNT], mn[F_COUNT], mx[F_COUNT];
	char   a[48], b[48], c[48], d[48], e[48], g[48];
	char   label[96];

	for (int f = 0; f < F_COUNT; f++) {
		summarize(vals[f], cfg->runs, &med[f], &mn[f], &mx[f]);
	}
	printf("## taskbroker-bench\n\n");
	printf("- machine: %ld CPU, %s, %.1f GiB RAM, %s\n", m->ncpu, m->model,
	    m->mem_gib, m->kernel);
	printf(
	    "- data directory filesystem: %s (%s)\n", m->fstype, cfg->tmpdir);
	printf("- load average (1 min) %.2f at start, %.2f at end; other "
	       "processes used %.0f%% of the CPUs during the run, host steal "
	       "%.0f%%%s\n",
	    m->load_start, m->load_end, m->other_cpu * 100, m->steal * 100,
	    m->other_cpu > 0.10 ? " (NOT an idle machine: figures are low)"
	                        : "");
	printf("- taskbrokerd %s (%s), nng %s, SQLite %s\n", broker_version,
	    cfg->broker_bin, nng_version(), sqlite3_libversion());
	printf("- durability=%s; P=%d producer processes x C=%d requests in "
	       "flight; single: N=%ld; batch: B=%d, N=%ld; paced: %d/s for "
	       "%d s (1 producer, C=%d); serial: 1 producer, 1 thread, one "
	       "blocking tb_submit at a time, N=%ld; async: 1 producer, 1 "
	       "thread, A=%d tb_submit_async in flight, N=%ld; noop tasks, "
	       "empty payload\n",
	    cfg->durability, cfg->producers, cfg->inflight, cfg->tasks,
	    cfg->batch, cfg->batch_tasks, cfg->rate, cfg->paced_secs,
	    cfg->inflight, cfg->serial_tasks, cfg->async_inflight, cfg->tasks);
	printf("- %d run(s); each figure is the median (min-max) over runs; "
	       "every scenario starts a fresh broker on an empty data "
	       "directory\n\n",
	    cfg->runs);

	printf("### Raw limits of this machine\n\n");
	printf("| measure | median | min | max | unit |\n");
	printf("|---|---:|---:|---:|---|\n");
	for (int f = 0; f < F_COUNT; f++) {
		if (figs[f].ours) {
			continue;
		}
		snprintf(label, sizeof(label), "%s", figs[f].label);
		if (f == F_SQLB_ROWS || f == F_SQLB_COMMITS) {
			snprintf(label, sizeof(label), "%.*s%d rows/txn",
			    (int) (strlen(figs[f].label) -
			        strlen("B rows/txn")),
			    figs[f].label, cfg->batch);
		} else if (f == F_SQLPC_ROWS) {
			snprintf(label, sizeof(label), "%.*s%d (P*C) rows/txn",
			    (int) (strlen(figs[f].label) -
			        strlen("P*C rows/txn")),
			    figs[f].label, cfg->producers * cfg->inflight);
		}
		fmt_val(a, sizeof(a), med[f], figs[f].unit);
		fmt_val(b, sizeof(b), mn[f], figs[f].unit);
		fmt_val(c, sizeof(c), mx[f], figs[f].unit);
		printf("| %s | %s | %s | %s | %s |\n", label, a, b, c,
		    figs[f].unit);
	}
	printf("\nnng: 100-byte REQ/REP round trips over ipc to an echo "
	       "process, same P x C pattern. SQLite: WAL, synchronous=%s, "
	       "task-shaped rows with a unique submission-id index, one "
	       "connection; P*C rows per commit is the most one group commit "
	       "can gather in the single scenario, so it bounds that "
	       "scenario's rate.\n\n",
	    strcmp(cfg->durability, "full") == 0 ? "FULL" : "NORMAL");

	printf("### taskbroker\n\n");
	printf("| figure | median | min | max | unit | / nng RTT rate | "
	       "/ SQLite rows/s (%d per txn) | / SQLite rows/s (%d per txn) "
	       "|\n",
	    cfg->batch, cfg->producers * cfg->inflight);
	printf("|---|---:|---:|---:|---|---:|---:|---:|\n");
	for (int f = 0; f < F_COUNT; f++) {
		if (!figs[f].ours) {
			continue;
		}
		fmt_val(a, sizeof(a), med[f], figs[f].unit);
		fmt_val(b, sizeof(b), mn[f], figs[f].unit);
		fmt_val(c, sizeof(c), mx[f], figs[f].unit);
		if (figs[f].is_rate || f == F_PACED_RATE) {
			fmt_ratio(d, sizeof(d), med[f], med[F_NNG_RATE]);
			fmt_ratio(e, sizeof(e), med[f], med[F_SQLB_ROWS]);
			fmt_ratio(g, sizeof(g), med[f], med[F_SQLPC_ROWS]);
		} else {
			snprintf(d, sizeof(d), " ");
			snprintf(e, sizeof(e), " ");
			snprintf(g, sizeof(g), " ");
		}
		printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n",
		    figs[f].label, a, b, c, figs[f].unit, d, e, g);
	}
	printf("\nSubmit throughput = accepted tasks / (last ack - first "
	       "submit). End-to-end = accepted tasks / (first submit -> "
	       "broker stats.completed reaches the count, polled every "
	       "5 ms). Ack latency is per request (a batch of %d is one "
	       "request); paced latency counts from each request's "
	       "scheduled time (open loop).\n\n",
	    cfg->batch);
	fmt_ratio(a, sizeof(a), med[F_ASYNC_SUBMIT], med[F_SERIAL_SUBMIT]);
	fmt_ratio(b, sizeof(b), med[F_ASYNC_SUBMIT], med[F_SINGLE_SUBMIT]);
	printf("Submit throughput ratios: async (1 thread, A=%d in flight) / "
	       "serial (1 thread, blocking) = %s; async / single (P*C=%d "
	       "blocking threads) = %s.\n\n",
	    cfg->async_inflight, a, cfg->producers * cfg->inflight, b);

	printf("### Targets (2-core machine)\n\n");
	printf("| target | measured (median) | result |\n|---|---:|---|\n");
	fmt_val(a, sizeof(a), med[F_BATCH_E2E], "tasks/s");
	printf("| end-to-end >= 50,000 tasks/s, batched submits | %s | %s |\n",
	    a,
	    isnan(med[F_BATCH_E2E])         ? "n/a"
	        : med[F_BATCH_E2E] >= 50000 ? "PASS"
	                                    : "FAIL");
	{
		double wk = med[F_WK2_E2E];
		if (isnan(wk) ||
		    (!isnan(med[F_WK1_E2E]) && med[F_WK1_E2E] > wk)) {
			wk = med[F_WK1_E2E];
		}
		fmt_val(a, sizeof(a), wk, "tasks/s");
		printf(
		    "| end-to-end >= 50,000 tasks/s, batched submits, through "
		    "workers | %s | %s |\n",
		    a,
		    isnan(wk)         ? "n/a"
		        : wk >= 50000 ? "PASS"
		                      : "FAIL");
	}
	fmt_val(a, sizeof(a), med[F_RECOVER_P99], "ms");
	printf("| kill -9 of a worker to its task's start elsewhere, p99 <= "
	       "100 ms (ipc) | %s | %s |\n",
	    a,
	    isnan(med[F_RECOVER_P99])         ? "n/a"
	        : med[F_RECOVER_P99] <= 100.0 ? "PASS"
	                                      : "FAIL");
	fmt_val(a, sizeof(a), med[F_SINGLE_E2E], "tasks/s");
	printf("| end-to-end >= 20,000 tasks/s, one task per request | %s | "
	       "%s |\n",
	    a,
	    isnan(med[F_SINGLE_E2E])         ? "n/a"
	        : med[F_SINGLE_E2E] >= 20000 ? "PASS"
	                                     : "FAIL");
	fmt_val(a, sizeof(a), med[F_PACED_P99], "ms");
	printf("| ack p99 < 5 ms at 5,000 submits/s | %s ms at %d/s | %s |\n",
	    a, cfg->rate,
	    cfg->rate != 5000 || isnan(med[F_PACED_P99]) ? "n/a"
	        : med[F_PACED_P99] < 5.0                 ? "PASS"
	                                                 : "FAIL");

	if (probs.failed_scenarios || probs.dup_warnings ||
	    probs.broker_bad_exits || probs.nng_errors || probs.errors[0] ||
	    probs.errors[1] || probs.errors[2] || probs.errors[S_SERIAL] ||
	    probs.errors[S_ASYNC]) {
		printf("\n### Problems\n\n");
		if (probs.failed_scenarios) {
			printf("- %d scenario run(s) failed (see stderr)\n",
			    probs.failed_scenarios);
		}
		for (int s = 0; s < S_COUNT; s++) {
			if (probs.errors[s]) {
				printf("- %s: %" PRIu64 " failed requests "
				       "(first: %s)\n",
				    scen_names[s], probs.errors[s],
				    tb_strerror(probs.first_err[s]));
			}
		}
		if (probs.nng_errors) {
			printf("- nng: %" PRIu64 " failed round trips\n",
			    probs.nng_errors);
		}
		if (probs.dup_warnings) {
			printf(
			    "- %d run(s) where the broker's submitted count "
			    "differed from the accepted tasks\n",
			    probs.dup_warnings);
		}
		if (probs.broker_bad_exits) {
			printf("- %d broker(s) did not exit 0 on SIGTERM\n",
			    probs.broker_bad_exits);
		}
	}
}

static void
json_num(double v)
{
	if (isnan(v)) {
		printf("null");
	} else {
		printf("%.6g", v);
	}
}

static void
json_str(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\') {
			printf("\\%c", *s);
		} else if ((unsigned char) *s < 0x20) {
			printf("\\u%04x", *s);
		} else {
			putchar(*s);
		}
	}
	putchar('"');
}

static void
print_json(const bench_cfg *cfg, const machine *m)
{
	double med[F_COUNT], mn[F_COUNT], mx[F_COUNT];

	for (int f = 0; f < F_COUNT; f++) {
		summarize(vals[f], cfg->runs, &med[f], &mn[f], &mx[f]);
	}
	printf("{\n  \"machine\": {\"nproc\": %ld, \"model\": ", m->ncpu);
	json_str(m->model);
	printf(", \"mem_gib\": %.1f, \"kernel\": ", m->mem_gib);
	json_str(m->kernel);
	printf(", \"data_fs\": ");
	json_str(m->fstype);
	printf(", \"load_start\": ");
	json_num(m->load_start);
	printf(", \"load_end\": ");
	json_num(m->load_end);
	printf(", \"other_cpu_share\": ");
	json_num(m->other_cpu);
	printf(", \"steal_share\": ");
	json_num(m->steal);
	printf("},\n  \"versions\": {\"taskbrokerd\": ");
	json_str(broker_version);
	printf(", \"nng\": ");
	json_str(nng_version());
	printf(", \"sqlite\": ");
	json_str(sqlite3_libversion());
	printf("},\n  \"config\": {\"durability\": ");
	json_str(cfg->durability);
	printf(", \"producers\": %d, \"inflight\": %d, \"tasks\": %ld, "
	       "\"batch\": %d, \"batch_tasks\": %ld, \"rate\": %d, "
	       "\"paced_seconds\": %d, \"serial_tasks\": %ld, "
	       "\"async_inflight\": %d, \"runs\": %d},\n",
	    cfg->producers, cfg->inflight, cfg->tasks, cfg->batch,
	    cfg->batch_tasks, cfg->rate, cfg->paced_secs, cfg->serial_tasks,
	    cfg->async_inflight, cfg->runs);
	printf("  \"figures\": {\n");
	for (int f = 0; f < F_COUNT; f++) {
		printf("    \"%s\": {\"unit\": \"%s\", \"median\": ",
		    figs[f].key, figs[f].unit);
		json_num(med[f]);
		printf(", \"min\": ");
		json_num(mn[f]);
		printf(", \"max\": ");
		json_num(mx[f]);
		printf(", \"runs\": [");
		for (int i = 0; i < cfg->runs; i++) {
			if (i > 0) {
				printf(", ");
			}
			json_num(vals[f][i]);
		}
		printf("]");
		if (figs[f].is_rate || f == F_PACED_RATE) {
			printf(", \"ratio_nng_rtt\": ");
			json_num(med[f] / med[F_NNG_RATE]);
			printf(", \"ratio_sqlite_batch_rows\": ");
			json_num(med[f] / med[F_SQLB_ROWS]);
			printf(", \"ratio_sqlite_pc_rows\": ");
			json_num(med[f] / med[F_SQLPC_ROWS]);
		}
		printf("}%s\n", f + 1 < F_COUNT ? "," : "");
	}
	printf("  },\n  \"problems\": {\"failed_scenarios\": %d, "
	       "\"single_errors\": %" PRIu64 ", \"batch_errors\": %" PRIu64
	       ", \"paced_errors\": %" PRIu64 ", \"serial_errors\": %" PRIu64
	       ", \"async_errors\": %" PRIu64 ", \"nng_errors\": %" PRIu64
	       ", \"count_mismatches\": %d, \"broker_bad_exits\": %d}\n}\n",
	    probs.failed_scenarios, probs.errors[0], probs.errors[1],
	    probs.errors[2], probs.errors[S_SERIAL], probs.errors[S_ASYNC],
	    probs.nng_errors, probs.dup_warnings, probs.broker_bad_exits);
}

// ---------------------------------------------------------------------------
// Command line

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: taskbroker-bench [options]\n"
	    "\n"
	    "Measures taskbrokerd with noop tasks next to this machine's raw "
	    "limits\n"
	    "(nng REQ/REP round trips, SQLite insert+commit) and prints a "
	    "Markdown\n"
	    "report. Every scenario starts its own broker in a fresh "
	    "directory.\n"
	    "\n"
	    "  --broker-bin PATH      taskbrokerd to run (default: %s)\n"
	    "  --producers P          producer processes (default 2)\n"
	    "  --inflight C           requests in flight per producer, one "
	    "thread each\n"
	    "                         (default 32)\n"
	    "  --tasks N              tasks in the single-task scenario and "
	    "round trips\n"
	    "                         in the nng one (default 40000)\n"
	    "  --batch-tasks N        tasks in the batch scenario (default "
	    "200000)\n"
	    "  --batch B              tasks per batch request and rows per "
	    "SQLite\n"
	    "                         transaction (default 100, max %d)\n"
	    "  --rate R               paced scenario submits/s (default "
	    "5000)\n"
	    "  --paced-seconds S      paced scenario length (default 3)\n"
	    "  --serial-tasks N       tasks in the serial scenario (default "
	    "4000)\n"
	    "  --async-inflight A     submits the async scenario's one thread "
	    "keeps in\n"
	    "                         flight (default 100, max %d); its "
	    "tasks: --tasks\n"
	    "  --sqlite-ms MS         length of each SQLite measurement "
	    "(default 1500)\n"
	    "  --runs K               repeat everything K times, report "
	    "medians\n"
	    "                         (default 3)\n"
	    "  --durability full|normal  broker durability and SQLite "
	    "synchronous\n"
	    "                         (default full)\n"
	    "  --workers N            pass --workers N to the broker\n"
	    "  --broker-log-level L   pass --log-level L to the broker\n"
	    "  --tmpdir DIR           where the temporary directories go "
	    "(default\n"
	    "                         $TMPDIR or /tmp); its filesystem "
	    "decides fsync cost\n"
	    "  --only LIST            run only some of single,batch,paced,"
	    "nng,sqlite,\n"
	    "                         serial,async,workers,recovery\n"
	    "  --keep                 keep the temporary directories (broker "
	    "logs)\n"
	    "  --json                 print JSON instead of Markdown\n"
	    "  --help                 this text\n",
	    TB_BENCH_BROKER_BIN, TB_MAX_BATCH, TB_ASYNC_MAX_INFLIGHT);
}

static int
parse_int(const char *name, const char *s, long min, long max, long *vp)
{
	char *end;
	long  v;

	errno = 0;
	v     = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		fprintf(stderr,
		    "taskbroker-bench: %s must be an integer in "
		    "%ld..%ld\n",
		    name, min, max);
		return (-1);
	}
	*vp = v;
	return (0);
}

// parse_only turns "single,nng" into measurement bits.
static int
parse_only(const char *list, unsigned *onlyp)
{
	char     buf[256], *tok, *save;
	unsigned only = 0;
	int      s;

	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		for (s = 0; s < S_COUNT; s++) {
			if (strcmp(tok, scen_names[s]) == 0) {
				break;
			}
		}
		if (s == S_COUNT) {
			fprintf(stderr,
			    "taskbroker-bench: --only takes "
			    "single,batch,paced,nng,sqlite,serial,async,"
			    "workers,recovery\n");
			return (-1);
		}
		only |= 1u << s;
	}
	if (only == 0) {
		fprintf(stderr, "taskbroker-bench: --only is empty\n");
		return (-1);
	}
	*onlyp = only;
	return (0);
}

static int
parse_args(bench_cfg *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "broker-bin", required_argument, NULL, 'b' },
		{ "producers", required_argument, NULL, 'P' },
		{ "inflight", required_argument, NULL, 'C' },
		{ "tasks", required_argument, NULL, 'N' },
		{ "batch-tasks", required_argument, NULL, 'M' },
		{ "batch", required_argument, NULL, 'B' },
		{ "rate", required_argument, NULL, 'R' },
		{ "paced-seconds", required_argument, NULL, 'S' },
		{ "serial-tasks", required_argument, NULL, 's' },
		{ "async-inflight", required_argument, NULL, 'A' },
		{ "sqlite-ms", required_argument, NULL, 'Q' },
		{ "runs", required_argument, NULL, 'K' },
		{ "durability", required_argument, NULL, 'D' },
		{ "workers", required_argument, NULL, 'W' },
		{ "broker-log-level", required_argument, NULL, 'L' },
		{ "tmpdir", required_argument, NULL, 'T' },
		{ "only", required_argument, NULL, 'O' },
		{ "keep", no_argument, NULL, 'k' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *tmp;
	long        v;
	int         ch;

	cfg->broker_bin     = TB_BENCH_BROKER_BIN;
	cfg->durability     = "full";
	cfg->producers      = 2;
	cfg->inflight       = 32;
	cfg->tasks          = 40000;
	cfg->batch_tasks    = 200000;
	cfg->batch          = 100;
	cfg->rate           = 5000;
	cfg->paced_secs     = 3;
	cfg->serial_tasks   = 4000;
	cfg->async_inflight = 100;
	cfg->sqlite_ms      = 1500;
	cfg->runs           = 3;
	cfg->only           = (1u << S_COUNT) - 1;
	tmp                 = getenv("TMPDIR");
	cfg->tmpdir         = (tmp != NULL && tmp[0] != '\0') ? tmp : "/tmp";

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'b':
			cfg->broker_bin = optarg;
			break;
		case 'P':
			if (parse_int("--producers", optarg, 1, MAX_PRODUCERS,
			        &v) != 0) {
				return (-1);
			}
			cfg->producers = (int) v;
			break;
		case 'C':
			if (parse_int("--inflight", optarg, 1, MAX_INFLIGHT,
			        &v) != 0) {
				return (-1);
			}
			cfg->inflight = (int) v;
			break;
		case 'N':
			if (parse_int("--tasks", optarg, 1, 100000000, &v) !=
			    0) {
				return (-1);
			}
			cfg->tasks = v;
			break;
		case 's':
			if (parse_int("--serial-tasks", optarg, 1, 100000000,
			        &v) != 0) {
				return (-1);
			}
			cfg->serial_tasks = v;
			break;
		case 'A':
			if (parse_int("--async-inflight", optarg, 1,
			        TB_ASYNC_MAX_INFLIGHT, &v) != 0) {
				return (-1);
			}
			cfg->async_inflight = (int) v;
			break;
		case 'M':
			if (parse_int("--batch-tasks", optarg, 1, 100000000,
			        &v) != 0) {
				return (-1);
			}
			cfg->batch_tasks = v;
			break;
		case 'B':
			if (parse_int(
			        "--batch", optarg, 1, TB_MAX_BATCH, &v) != 0) {
				return (-1);
			}
			cfg->batch = (int) v;
			break;
		case 'R':
			if (parse_int("--rate", optarg, 1, 1000000, &v) != 0) {
				return (-1);
			}
			cfg->rate = (int) v;
			break;
		case 'S':
			if (parse_int("--paced-seconds", optarg, 1, 600, &v) !=
			    0) {
				return (-1);
			}
			cfg->paced_secs = (int) v;
			break;
		case 'Q':
			if (parse_int("--sqlite-ms", optarg, 10, 600000, &v) !=
			    0) {
				return (-1);
			}
			cfg->sqlite_ms = (int) v;
			break;
		case 'K':
			if (parse_int("--runs", optarg, 1, MAX_RUNS, &v) !=
			    0) {
				return (-1);
			}
			cfg->runs = (int) v;
			break;
		case 'D':
			if (strcmp(optarg, "full") != 0 &&
			    strcmp(optarg, "normal") != 0) {
				fprintf(stderr,
				    "taskbroker-bench: --durability "
				    "is full or normal\n");
				return (-1);
			}
			cfg->durability = optarg;
			break;
		case 'W':
			if (parse_int("--workers", optarg, 1, 4096, &v) != 0) {
				return (-1);
			}
			cfg->workers = (int) v;
			break;
		case 'L':
			cfg->broker_log_level = optarg;
			break;
		case 'T':
			cfg->tmpdir = optarg;
			break;
		case 'O':
			if (parse_only(optarg, &cfg->only) != 0) {
				return (-1);
			}
			break;
		case 'k':
			cfg->keep = true;
			break;
		case 'j':
			cfg->json = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return (-1);
		}
	}
	if (optind != argc) {
		fprintf(stderr, "taskbroker-bench: unexpected argument %s\n",
		    argv[optind]);
		return (-1);
	}
	// ipc paths live in sun_path (108 bytes).
	if (strlen(cfg->tmpdir) > 60) {
		fprintf(stderr,
		    "taskbroker-bench: --tmpdir path too long for "
		    "ipc sockets\n");
		return (-1);
	}
	if (access(cfg->broker_bin, X_OK) != 0) {
		fprintf(stderr, "taskbroker-bench: broker %s: %s\n",
		    cfg->broker_bin, strerror(errno));
		return (-1);
	}
	return (0);
}

static void
on_signal(int sig)
{
	(void) sig;
	g_stop = 1;
}

int
main(int argc, char **argv)
{
	bench_cfg        cfg;
	machine          m;
	cpu_sample       cs0;
	struct sigaction sa;
	ssize_t          n;

	// The hidden child modes come first; they take positional arguments.
	if (argc >= 2 && strcmp(argv[1], "--producer") == 0) {
		return (producer_main(argc - 2, argv + 2));
	}
	if (argc >= 2 && strcmp(argv[1], "--echo") == 0) {
		return (echo_main(argc - 2, argv + 2));
	}
	if (argc >= 2 && strcmp(argv[1], "--worker") == 0) {
		return (worker_main(argc - 2, argv + 2));
	}

	memset(&cfg, 0, sizeof(cfg));
	if (parse_args(&cfg, argc, argv) != 0) {
		return (2);
	}
	if ((n = readlink("/proc/self/exe", cfg.self, sizeof(cfg.self) - 1)) <
	    0) {
		fprintf(stderr, "taskbroker-bench: /proc/self/exe: %s\n",
		    strerror(errno));
		return (1);
	}
	cfg.self[n] = '\0';

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	machine_describe(&cfg, &m);
	cpu_sample_take(&cs0);
	fprintf(stderr, "taskbroker-bench: %ld CPU %s, %s; broker %s\n",
	    m.ncpu, m.model, m.kernel, cfg.broker_bin);
	for (int run = 0; run < cfg.runs && !g_stop; run++) {
		run_once(&cfg, run);
	}
	if (g_stop) {
		fprintf(stderr, "taskbroker-bench: interrupted\n");
		return (130);
	}
	machine_load_end(&m, &cs0);
	if (cfg.json) {
		print_json(&cfg, &m);
	} else {
		print_human(&cfg, &m);
	}
	return (probs.failed_scenarios > 0 ? 1 : 0);
}
