// tbworker.c: the worker process the worker tests start (test_worker.c).
// It serves the handlers named with --handler through libtaskbroker's
// tb_worker and does what each task's payload says:
//
//   {"sleep_ms": N}        work for N ms (in 2 ms steps, stopping early
//                          when the broker cancels the job, unless
//                          "ignore_cancel": true)
//   {"kill": true}         kill this process (SIGKILL) when the job starts
//   {"fail": "text"}       fail with text ("retryable": false forbids a
//                          retry)
//
// A job's result is the msgpack map {"pid": <this pid>}. Everything it
// does goes, one line each, to the --report file (appended, flushed):
//
//   start <id> <attempt> <mono_us> <pid>  a job began (CLOCK_MONOTONIC)
//   end <id> <attempt> <errname>          tb_job_complete/fail returned
//   cancel <id> <attempt>                 the broker cancelled it
//   max <n>                               at exit: most jobs at once
//
// Options: --url URL, --handler NAME (repeatable), --queue NAME
// (repeatable), --slots N, --name NAME, --report PATH, --stop-grace MS
// (SIGTERM: tb_worker_stop with this grace, then exit 0).
//
// Threads: one per slot, each in tb_worker_next; one waits for SIGTERM.

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <taskbroker.h>

#define MAX_NAMES 16

static tb_worker      *worker;
static FILE           *report;
static pthread_mutex_t report_mtx = PTHREAD_MUTEX_INITIALIZER;
static atomic_int      running;
static atomic_int      most;
static atomic_bool     stopping;

static int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
say(const char *fmt, ...)
{
	va_list ap;

	if (report == NULL) {
		return;
	}
	pthread_mutex_lock(&report_mtx);
	va_start(ap, fmt);
	vfprintf(report, fmt, ap);
	va_end(ap);
	fflush(report);
	pthread_mutex_unlock(&report_mtx);
}

static const msgpack_object *
get(const msgpack_object *m, const char *key)
{
	size_t n = strlen(key);

	if (m->type != MSGPACK_OBJECT_MAP) {
		return (NULL);
	}
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *k = &m->via.map.ptr[i].key;
		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
		    memcmp(k->via.str.ptr, key, n) == 0) {
			return (&m->via.map.ptr[i].val);
		}
	}
	return (NULL);
}

static void
on_cancel(tb_job *j, void *arg)
{
	(void) arg;
	say("cancel %llu %u\n", (unsigned long long) tb_job_id(j),
	    tb_job_attempt(j));
}

static void
run_job(tb_job *j)
{
	msgpack_unpacked      up;
	const msgpack_object *v;
	const void           *p;
	size_t                len;
	int64_t               sleep_ms = 0;
	bool                  ignore   = false;
	char                  fail[256];
	bool                  retryable = true;
	int                   now       = atomic_fetch_add(&running, 1) + 1;
	int                   rv;
	tb_id                 id      = tb_job_id(j);
	uint32_t              attempt = tb_job_attempt(j);

	for (int m = atomic_load(&most); now > m;) {
		if (atomic_compare_exchange_weak(&most, &m, now)) {
			break;
		}
	}
	fail[0] = '\0';
	say("start %llu %u %lld %d\n", (unsigned long long) id, attempt,
	    (long long) mono_us(), (int) getpid());
	tb_job_on_cancel(j, on_cancel, NULL);
	p = tb_job_payload(j, &len);
	msgpack_unpacked_init(&up);
	if (len > 0 &&
	    msgpack_unpack_next(&up, p, len, NULL) == MSGPACK_UNPACK_SUCCESS) {
		if ((v = get(&up.data, "kill")) != NULL &&
		    v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean) {
			kill(getpid(), SIGKILL);
		}
		if ((v = get(&up.data, "sleep_ms")) != NULL &&
		    v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
			sleep_ms = (int64_t) v->via.u64;
		}
		if ((v = get(&up.data, "ignore_cancel")) != NULL &&
		    v->type == MSGPACK_OBJECT_BOOLEAN) {
			ignore = v->via.boolean;
		}
		if ((v = get(&up.data, "retryable")) != NULL &&
		    v->type == MSGPACK_OBJECT_BOOLEAN) {
			retryable = v->via.boolean;
		}
		if ((v = get(&up.data, "fail")) != NULL &&
		    v->type == MSGPACK_OBJECT_STR) {
			snprintf(fail, sizeof(fail), "%.*s",
			    (int) v->via.str.size, v->via.str.ptr);
		}
	}
	msgpack_unpacked_destroy(&up);
	for (int64_t end = mono_us() + sleep_ms * 1000; mono_us() < end;) {
		if (!ignore && tb_job_cancelled(j)) {
			break;
		}
		usleep(2000);
	}
	atomic_fetch_sub(&running, 1);
	if (fail[0] != '\0') {
		rv = tb_job_fail(j, fail, retryable);
	} else if (!ignore && tb_job_cancelled(j)) {
		rv = tb_job_fail(j, "cancelled", false);
	} else {
		msgpack_sbuffer sb;
		msgpack_packer  pk;
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_map(&pk, 1);
		msgpack_pack_str(&pk, 3);
		msgpack_pack_str_body(&pk, "pid", 3);
		msgpack_pack_int(&pk, (int) getpid());
		rv = tb_job_complete(j, sb.data, sb.size);
		msgpack_sbuffer_destroy(&sb);
	}
	say("end %llu %u %s\n", (unsigned long long) id, attempt,
	    tb_errname(rv));
}

static void *
slot_main(void *arg)
{
	(void) arg;
	for (;;) {
		tb_job *j;
		int     rv = tb_worker_next(worker, 100, &j);
		if (rv == TB_OK) {
			run_job(j);
		} else if (rv != TB_ETIMEDOUT) {
			break;
		}
	}
	return (NULL);
}

int
main(int argc, char **argv)
{
	const char    *handlers[MAX_NAMES];
	const char    *queues[MAX_NAMES];
	size_t         nh = 0, nq = 0;
	const char    *url         = NULL;
	const char    *report_path = NULL;
	int            grace       = 5000;
	tb_worker_opts o           = TB_WORKER_OPTS_INIT;
	pthread_t      slots[64];
	sigset_t       set;
	int            sig;
	int            rv;

	o.slots = 1;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--url") == 0) {
			url = argv[i + 1];
		} else if (strcmp(argv[i], "--handler") == 0 &&
		    nh < MAX_NAMES) {
			handlers[nh++] = argv[i + 1];
		} else if (strcmp(argv[i], "--queue") == 0 && nq < MAX_NAMES) {
			queues[nq++] = argv[i + 1];
		} else if (strcmp(argv[i], "--slots") == 0) {
			o.slots = (unsigned) atoi(argv[i + 1]);
		} else if (strcmp(argv[i], "--name") == 0) {
			o.name = argv[i + 1];
		} else if (strcmp(argv[i], "--report") == 0) {
			report_path = argv[i + 1];
		} else if (strcmp(argv[i], "--stop-grace") == 0) {
			grace = atoi(argv[i + 1]);
		} else {
			fprintf(
			    stderr, "tbworker: unknown option %s\n", argv[i]);
			return (2);
		}
	}
	if (o.slots == 0 || o.slots > 64 || nh == 0) {
		fprintf(stderr, "tbworker: --handler and --slots 1..64\n");
		return (2);
	}
	if (report_path != NULL &&
	    (report = fopen(report_path, "a")) == NULL) {
		fprintf(stderr, "tbworker: %s: %s\n", report_path,
		    strerror(errno));
		return (1);
	}
	// SIGTERM is taken by sigwait below, in no other thread.
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	o.handlers  = handlers;
	o.nhandlers = nh;
	o.queues    = nq > 0 ? queues : NULL;
	o.nqueues   = nq;
	if ((rv = tb_worker_open(&worker, url, &o)) != TB_OK) {
		fprintf(stderr, "tbworker: open: %s\n", tb_strerror(rv));
		return (1);
	}
	for (unsigned i = 0; i < o.slots; i++) {
		pthread_create(&slots[i], NULL, slot_main, NULL);
	}
	sigwait(&set, &sig);
	atomic_store(&stopping, true);
	rv = tb_worker_stop(worker, grace);
	fprintf(
	    stderr, "tbworker %d: stop: %s\n", (int) getpid(), tb_errname(rv));
	for (unsigned i = 0; i < o.slots; i++) {
		pthread_join(slots[i], NULL);
	}
	say("max %d\n", atomic_load(&most));
	tb_worker_close(worker);
	if (report != NULL) {
		fclose(report);
	}
	return (0);
}
