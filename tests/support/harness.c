// harness.c: see harness.h. Every child process is started with
// posix_spawn (nng is not fork-safe), remembered in a small registry, and
// reaped by its pid; an atexit hook kills whatever a crashed test left.

#include <dirent.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

#include "harness.h"

#include <nng/protocol/reqrep0/req.h>

extern char **environ;

// The registry of children not yet reaped, so that exit kills them all.
#define TBH_MAX_CHILDREN 64
static pid_t tbh_children[TBH_MAX_CHILDREN];
static bool  tbh_atexit_set;

static void
tbh_atexit_kill(void)
{
	for (int i = 0; i < TBH_MAX_CHILDREN; i++) {
		if (tbh_children[i] > 0) {
			kill(tbh_children[i], SIGKILL);
			(void) waitpid(tbh_children[i], NULL, 0);
			tbh_children[i] = 0;
		}
	}
}

static void
tbh_child_add(pid_t pid)
{
	if (!tbh_atexit_set) {
		atexit(tbh_atexit_kill);
		tbh_atexit_set = true;
	}
	for (int i = 0; i < TBH_MAX_CHILDREN; i++) {
		if (tbh_children[i] == 0) {
			tbh_children[i] = pid;
			return;
		}
	}
}

static void
tbh_child_del(pid_t pid)
{
	for (int i = 0; i < TBH_MAX_CHILDREN; i++) {
		if (tbh_children[i] == pid) {
			tbh_children[i] = 0;
		}
	}
}

int
tbh_scale(void)
{
	static int  scale;
	const char *s;

	if (scale == 0) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
		scale = 3;
#else
		scale = 1;
#endif
		if ((s = getenv("TBH_TIME_SCALE")) != NULL && atoi(s) > 0) {
			scale = atoi(s);
		}
	}
	return (scale);
}

int64_t
tbh_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

void
tbh_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) { }
}

// Processes.

static int
tbh_exit_code_of(int wstatus)
{
	if (WIFEXITED(wstatus)) {
		return (WEXITSTATUS(wstatus));
	}
	if (WIFSIGNALED(wstatus)) {
		return (128 + WTERMSIG(wstatus));
	}
	return (255);
}

int
tbh_spawn(pid_t *pidp, char *const argv[], const char *out_path,
    const char *err_path)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t          at;
	sigset_t                   none, dfl;
	int                        rv;

	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (out_path != NULL) {
		posix_spawn_file_actions_addopen(
		    &fa, 1, out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	}
	if (err_path != NULL) {
		if (out_path != NULL && strcmp(out_path, err_path) == 0) {
			posix_spawn_file_actions_adddup2(&fa, 1, 2);
		} else {
			posix_spawn_file_actions_addopen(&fa, 2, err_path,
			    O_WRONLY | O_CREAT | O_APPEND, 0644);
		}
	}
	// A child must not inherit our signal mask or ignored signals
	// (cmocka and nng threads may change them).
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGCHLD);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &dfl);
	posix_spawnattr_setflags(
	    &at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

	rv = posix_spawn(pidp, argv[0], &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (rv != 0) {
		fprintf(stderr, "harness: posix_spawn %s: %s\n", argv[0],
		    strerror(rv));
		return (-1);
	}
	tbh_child_add(*pidp);
	return (0);
}

int
tbh_spawn_self(pid_t *pidp, const char *const *args, const char *out_path,
    const char *err_path)
{
	static char self[TBH_PATH];
	char       *argv[TBH_MAX_ARGS + 2];
	int         n = 0;
	ssize_t     len;

	if ((len = readlink("/proc/self/exe", self, sizeof(self) - 1)) < 0) {
		fprintf(stderr, "harness: readlink /proc/self/exe: %s\n",
		    strerror(errno));
		return (-1);
	}
	self[len] = '\0';
	argv[n++] = self;
	for (int i = 0; args != NULL && args[i] != NULL && i < TBH_MAX_ARGS;
	     i++) {
		argv[n++] = (char *) args[i];
	}
	argv[n] = NULL;
	return (tbh_spawn(pidp, argv, out_path, err_path));
}

int
tbh_waitpid(pid_t pid, int timeout_ms)
{
	int64_t deadline = tbh_now_ms() + timeout_ms;
	int     st;
	pid_t   r;

	for (;;) {
		r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			tbh_child_del(pid);
			return (tbh_exit_code_of(st));
		}
		if (r < 0 && errno != EINTR) {
			tbh_child_del(pid);
			return (255);
		}
		if (tbh_now_ms() >= deadline) {
			return (-1);
		}
		tbh_sleep_ms(5);
	}
}

void
tbh_kill_reap(pid_t pid)
{
	if (pid <= 0) {
		return;
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) { }
	tbh_child_del(pid);
}

char *
tbh_read_file(const char *path, size_t *lenp)
{
	FILE  *f;
	char  *buf = NULL;
	size_t n = 0, cap = 0, r;

	if ((f = fopen(path, "rb")) == NULL) {
		return (NULL);
	}
	for (;;) {
		if (cap - n < 4096) {
			char *nb;
			cap = cap == 0 ? 8192 : cap * 2;
			if ((nb = realloc(buf, cap + 1)) == NULL) {
				free(buf);
				fclose(f);
				return (NULL);
			}
			buf = nb;
		}
		if ((r = fread(buf + n, 1, cap - n, f)) == 0) {
			break;
		}
		n += r;
	}
	fclose(f);
	if (buf == NULL && (buf = malloc(1)) == NULL) {
		return (NULL);
	}
	buf[n] = '\0';
	if (lenp != NULL) {
		*lenp = n;
	}
	return (buf);
}

int
tbh_read_ids(const char *path, tb_id **idsp, size_t *np)
{
	char  *buf, *p, *nl;
	size_t len, n = 0, cap = 0;
	tb_id *ids = NULL;

	*idsp = NULL;
	*np   = 0;
	if ((buf = tbh_read_file(path, &len)) == NULL) {
		return (-1);
	}
	for (p = buf; (nl = memchr(p, '\n', len - (size_t) (p - buf))) != NULL;
	     p = nl + 1) {
		if (nl == p) {
			continue;
		}
		if (n == cap) {
			tb_id *ni;
			cap = cap == 0 ? 1024 : cap * 2;
			if ((ni = realloc(ids, cap * sizeof(*ids))) == NULL) {
				free(ids);
				free(buf);
				return (-1);
			}
			ids = ni;
		}
		ids[n++] = strtoull(p, NULL, 10);
	}
	free(buf);
	*idsp = ids;
	*np   = n;
	return (0);
}

int
tbh_run(char *const argv[], int timeout_ms, char **outp, char **errp,
    const char *tmpdir)
{
	char  out[TBH_PATH], err[TBH_PATH];
	pid_t pid;
	int   fd, code;

	snprintf(out, sizeof(out), "%s/run-out-XXXXXX",
	    tmpdir != NULL ? tmpdir : "/tmp");
	snprintf(err, sizeof(err), "%s/run-err-XXXXXX",
	    tmpdir != NULL ? tmpdir : "/tmp");
	if ((fd = mkstemp(out)) < 0) {
		return (-1);
	}
	close(fd);
	if ((fd = mkstemp(err)) < 0) {
		unlink(out);
		return (-1);
	}
	close(fd);
	if (tbh_spawn(&pid, argv, out, err) != 0) {
		unlink(out);
		unlink(err);
		return (-1);
	}
	if ((code = tbh_waitpid(pid, timeout_ms)) < 0) {
		fprintf(stderr, "harness: %s did not exit within %d ms\n",
		    argv[0], timeout_ms);
		tbh_kill_reap(pid);
	}
	if (outp != NULL) {
		*outp = tbh_read_file(out, NULL);
	}
	if (errp != NULL) {
		*errp = tbh_read_file(err, NULL);
	}
	unlink(out);
	unlink(err);
	return (code);
}

// The broker.

void
tbh_log_note(const tbh_broker *b, const char *fmt, ...)
{
	FILE   *f;
	va_list ap;

	if (b->log_path[0] == '\0' || (f = fopen(b->log_path, "a")) == NULL) {
		return;
	}
	fprintf(f, "=== harness: ");
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fprintf(f, "\n");
	fclose(f);
}

void
tbh_print_log(const tbh_broker *b, int max_lines)
{
	char  *buf, *p;
	size_t len;
	int    lines = 0;

	if ((buf = tbh_read_file(b->log_path, &len)) == NULL) {
		fprintf(stderr, "harness: no broker log at %s\n", b->log_path);
		return;
	}
	p = buf + len;
	while (p > buf) {
		p--;
		if (*p == '\n' && p != buf + len - 1 && ++lines >= max_lines) {
			p++;
			break;
		}
	}
	fprintf(stderr,
	    "----- tail of %s (broker pid %d, started %d times) -----\n%s"
	    "----- end of broker log -----\n",
	    b->log_path, (int) b->pid, b->starts, p);
	free(buf);
}

bool
tbh_running(tbh_broker *b)
{
	int   st;
	pid_t r;

	if (b->pid <= 0) {
		return (false);
	}
	r = waitpid(b->pid, &st, WNOHANG);
	if (r == 0) {
		return (true);
	}
	if (r == b->pid) {
		b->wstatus = st;
		b->exited  = true;
		tbh_log_note(b, "broker pid %d exited: code %d", (int) b->pid,
		    tbh_exit_code_of(st));
	}
	tbh_child_del(b->pid);
	b->pid = 0;
	return (false);
}

int
tbh_exit_code(const tbh_broker *b)
{
	return (b->exited ? tbh_exit_code_of(b->wstatus) : -1);
}

int
tbh_signal(tbh_broker *b, int sig)
{
	if (!tbh_running(b)) {
		return (-1);
	}
	return (kill(b->pid, sig) == 0 ? 0 : -1);
}

int
tbh_wait_exit(tbh_broker *b, int timeout_ms)
{
	int64_t deadline = tbh_now_ms() + timeout_ms;

	while (tbh_running(b)) {
		if (tbh_now_ms() >= deadline) {
			return (-1);
		}
		tbh_sleep_ms(5);
	}
	return (0);
}

int
tbh_stop(tbh_broker *b, int timeout_ms)
{
	if (tbh_running(b)) {
		tbh_log_note(b, "SIGTERM to pid %d", (int) b->pid);
		kill(b->pid, SIGTERM);
		if (tbh_wait_exit(b, timeout_ms) != 0) {
			return (-1);
		}
	}
	return (tbh_exit_code(b));
}

int
tbh_kill9(tbh_broker *b)
{
	if (!tbh_running(b)) {
		return (-1);
	}
	tbh_log_note(b, "SIGKILL to pid %d", (int) b->pid);
	kill(b->pid, SIGKILL);
	return (tbh_wait_exit(b, 10000));
}

tb_client *
tbh_client(const tbh_broker *b, int timeout_ms)
{
	tb_client *c;
	int        rv;

	if ((rv = tb_client_open_opts(&c, b->url, b->conn)) != TB_OK) {
		fprintf(stderr, "harness: tb_client_open %s: %s\n", b->url,
		    tb_errname(rv));
		return (NULL);
	}
	if (timeout_ms > 0 &&
	    (rv = tb_client_set_timeout(c, timeout_ms)) != TB_OK) {
		fprintf(stderr, "harness: tb_client_set_timeout: %s\n",
		    tb_errname(rv));
		tb_client_close(c);
		return (NULL);
	}
	return (c);
}

int
tbh_spawn_broker(tbh_broker *b)
{
	const char *bin = getenv("TB_BROKER_BIN");
	char       *argv[TBH_MAX_ARGS + 10];
	char       *more;
	int         n = 0;
	int         rv;

	if (bin == NULL || bin[0] == '\0') {
		fprintf(stderr, "harness: TB_BROKER_BIN is not set\n");
		return (-1);
	}
	argv[n++] = (char *) bin;
	argv[n++] = "--data-dir";
	argv[n++] = b->data_dir;
	argv[n++] = "--listen";
	argv[n++] = b->url;
	argv[n++] = "--events";
	argv[n++] = b->events_url;
	for (int i = 0; i < b->nextra; i++) {
		argv[n++] = b->extra[i];
	}
	// TBH_BROKER_ARGS: more arguments for every broker, split at
	// spaces (e.g. "--log-level debug" to see what a failing test's
	// broker decided).
	if ((more = getenv("TBH_BROKER_ARGS")) != NULL &&
	    (more = strdup(more)) != NULL) {
		char *save = NULL;
		for (char *a = strtok_r(more, " ", &save);
		     a != NULL && n < TBH_MAX_ARGS + 9;
		     a = strtok_r(NULL, " ", &save)) {
			argv[n++] = a;
		}
	}
	argv[n] = NULL;

	b->exited = false;
	b->starts++;
	tbh_log_note(b, "start #%d", b->starts);
	rv = tbh_spawn(&b->pid, argv, b->log_path, b->log_path);
	free(more);
	if (rv != 0) {
		b->pid = 0;
		return (-1);
	}
	tbh_log_note(b, "pid %d", (int) b->pid);
	return (0);
}

int
tbh_wait_ready(tbh_broker *b, int timeout_ms)
{
	int64_t deadline = tbh_now_ms() + timeout_ms;
	int     rv       = TB_EUNREACHABLE;

	for (;;) {
		tb_client *c;

		if (!tbh_running(b)) {
			fprintf(stderr,
			    "harness: broker exited (code %d) before it "
			    "answered a ping\n",
			    tbh_exit_code(b));
			return (-1);
		}
		if ((c = tbh_client(b, 300)) != NULL) {
			rv = tb_ping(c, NULL);
			tb_client_close(c);
			if (rv == TB_OK) {
				return (0);
			}
		}
		if (tbh_now_ms() >= deadline) {
			fprintf(stderr,
			    "harness: broker did not answer a ping on %s "
			    "within %d ms (last: %s)\n",
			    b->url, timeout_ms, tb_errname(rv));
			return (-1);
		}
		tbh_sleep_ms(20);
	}
}

int
tbh_restart(tbh_broker *b)
{
	if (tbh_running(b)) {
		fprintf(stderr, "harness: restart while running\n");
		return (-1);
	}
	if (tbh_spawn_broker(b) != 0) {
		return (-1);
	}
	if (tbh_wait_ready(b, TBH_MS(10000)) != 0) {
		tbh_print_log(b, 40);
		if (tbh_running(b)) {
			tbh_kill9(b);
		}
		return (-1);
	}
	return (0);
}

const char *
tbh_tmp_root(void)
{
	const char *root = getenv("TBH_TMPDIR");

	return (root == NULL || root[0] == '\0' ? "/tmp" : root);
}

char *
tbh_mkdtemp(char *buf, size_t len)
{
	snprintf(buf, len, "%s/tbh-XXXXXX", tbh_tmp_root());
	return (mkdtemp(buf));
}

int
tbh_broker_paths(tbh_broker *b)
{
	if (b->dir[0] != '\0') {
		return (0);
	}
	if (tbh_mkdtemp(b->dir, sizeof(b->dir)) == NULL) {
		fprintf(stderr, "harness: mkdtemp: %s\n", strerror(errno));
		b->dir[0] = '\0';
		return (-1);
	}
	snprintf(b->data_dir, sizeof(b->data_dir), "%s/data", b->dir);
	snprintf(b->url, sizeof(b->url), "ipc://%s/tb.sock", b->dir);
	snprintf(
	    b->events_url, sizeof(b->events_url), "ipc://%s/ev.sock", b->dir);
	snprintf(b->log_path, sizeof(b->log_path), "%s/broker.log", b->dir);
	// The broker should create its data dir itself; the harness makes
	// it so that every test does not depend on that.
	(void) mkdir(b->data_dir, 0755);
	return (0);
}

int
tbh_start(tbh_broker *b, const char *const *args)
{
	if (tbh_broker_paths(b) != 0) {
		return (-1);
	}
	for (int i = 0; i < b->nextra; i++) {
		free(b->extra[i]);
	}
	b->nextra = 0;
	for (; args != NULL && args[b->nextra] != NULL &&
	     b->nextra < TBH_MAX_ARGS;) {
		b->extra[b->nextra] = strdup(args[b->nextra]);
		b->nextra++;
	}
	return (tbh_restart(b));
}

static int
tbh_rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void) st;
	(void) flag;
	(void) f;
	(void) remove(path);
	return (0);
}

void
tbh_rmtree(const char *dir)
{
	nftw(dir, tbh_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

// tbh_sanitizer_marks are how AddressSanitizer, LeakSanitizer and
// UndefinedBehaviorSanitizer begin a report (they write to the broker's
// stderr, which is its log).
static const char *const tbh_sanitizer_marks[] = {
	"ERROR: AddressSanitizer",
	"ERROR: LeakSanitizer",
	": runtime error: ",
};

bool
tbh_sanitizer_report(const tbh_broker *b)
{
	char *log;
	bool  found = false;

	if (b->log_path[0] == '\0' ||
	    (log = tbh_read_file(b->log_path, NULL)) == NULL) {
		return (false);
	}
	for (size_t i = 0;
	     i < sizeof(tbh_sanitizer_marks) / sizeof(tbh_sanitizer_marks[0]);
	     i++) {
		const char *at = strstr(log, tbh_sanitizer_marks[i]);
		if (at != NULL) {
			fprintf(stderr,
			    "harness: the broker's log has a sanitizer "
			    "report:\n%.4000s\n",
			    at);
			found = true;
			break;
		}
	}
	free(log);
	return (found);
}

int
tbh_cleanup(tbh_broker *b, bool failed)
{
	int rv = 0;

	if (tbh_running(b)) {
		int code;

		// Stop it the way an operator would; kill it only if that
		// does not work in time (a failed test may have left it busy).
		if ((code = tbh_stop(b, TBH_MS(5000))) < 0) {
			fprintf(stderr,
			    "harness: broker pid %d did not exit within 5 s "
			    "of SIGTERM at cleanup; killing it\n",
			    (int) b->pid);
			tbh_kill9(b);
		} else if (code != 0) {
			fprintf(stderr,
			    "harness: broker exited with %d after SIGTERM "
			    "at cleanup\n",
			    code);
		}
	}
	if (b->dir[0] != '\0' && tbh_sanitizer_report(b)) {
		failed = true;
		rv     = -1;
	}
	if (failed && b->dir[0] != '\0') {
		tbh_print_log(b, 60);
	}
	for (int i = 0; i < b->nextra; i++) {
		free(b->extra[i]);
		b->extra[i] = NULL;
	}
	b->nextra = 0;
	if (b->dir[0] != '\0') {
		if (failed || getenv("TBH_KEEP") != NULL) {
			fprintf(stderr, "harness: kept %s\n", b->dir);
		} else {
			nftw(b->dir, tbh_rm_one, 16, FTW_DEPTH | FTW_PHYS);
		}
		b->dir[0] = '\0';
	}
	return (rv);
}

// Payloads.

static void *
tbh_sbuf_take(msgpack_sbuffer *sb, size_t *lenp)
{
	*lenp = sb->size;
	return (sb->data); // the caller owns the buffer from here
}

void *
tbh_pack_empty(size_t *lenp)
{
	msgpack_sbuffer sb;
	msgpack_packer  pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 0);
	return (tbh_sbuf_take(&sb, lenp));
}

void
tbh_pack_cstr(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);

	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

void *
tbh_pack_ms(uint64_t ms, size_t *lenp)
{
	msgpack_sbuffer sb;
	msgpack_packer  pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	tbh_pack_cstr(&pk, "ms");
	msgpack_pack_uint64(&pk, ms);
	return (tbh_sbuf_take(&sb, lenp));
}

void *
tbh_pack_message(const char *msg, size_t *lenp)
{
	msgpack_sbuffer sb;
	msgpack_packer  pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	tbh_pack_cstr(&pk, "message");
	tbh_pack_cstr(&pk, msg);
	return (tbh_sbuf_take(&sb, lenp));
}

void *
tbh_pack_argv(const char *const *argv, size_t *lenp)
{
	msgpack_sbuffer sb;
	msgpack_packer  pk;
	size_t          n = 0;

	while (argv[n] != NULL) {
		n++;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	tbh_pack_cstr(&pk, "argv");
	msgpack_pack_array(&pk, n);
	for (size_t i = 0; i < n; i++) {
		tbh_pack_cstr(&pk, argv[i]);
	}
	return (tbh_sbuf_take(&sb, lenp));
}

const msgpack_object *
tbh_map_get(const msgpack_object *m, const char *key)
{
	size_t klen = strlen(key);

	if (m->type != MSGPACK_OBJECT_MAP) {
		return (NULL);
	}
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *k = &m->via.map.ptr[i].key;

		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
		    memcmp(k->via.str.ptr, key, klen) == 0) {
			return (&m->via.map.ptr[i].val);
		}
	}
	return (NULL);
}

// Client conveniences.

tb_id
tbh_submit(tb_client *c, const char *handler, const void *payload, size_t len,
    const tb_submit_opts *opts)
{
	tb_id id = 0;

	TBH_OK(tb_submit(c, handler, payload, len, opts, &id));
	assert_true(id != 0);
	return (id);
}

tb_task *
tbh_wait_final(tb_client *c, tb_id id, int timeout_ms)
{
	tb_task *t  = NULL;
	int      rv = tb_wait(c, id, timeout_ms, &t);

	if (rv != TB_OK) {
		print_error("tb_wait(%llu, %d ms) returned %s; task state %s, "
		            "attempts %u\n",
		    (unsigned long long) id, timeout_ms, tb_errname(rv),
		    t != NULL ? tb_state_name(tb_task_state(t)) : "?",
		    t != NULL ? tb_task_attempts(t) : 0);
		tb_task_free(t);
		fail();
	}
	assert_non_null(t);
	if (!tb_state_is_final(tb_task_state(t))) {
		print_error("tb_wait(%llu) returned OK in state %s\n",
		    (unsigned long long) id, tb_state_name(tb_task_state(t)));
		tb_task_free(t);
		fail();
	}
	return (t);
}

int
tbh_wait_state(tb_client *c, tb_id id, int state, int timeout_ms)
{
	int64_t deadline = tbh_now_ms() + timeout_ms;

	for (;;) {
		tb_task *t  = NULL;
		int      st = -1;

		if (tb_status(c, id, &t) == TB_OK) {
			st = tb_task_state(t);
			tb_task_free(t);
			if (st == state) {
				return (0);
			}
		}
		if (tbh_now_ms() >= deadline) {
			fprintf(stderr,
			    "harness: task %llu not %s within %d ms (is %s)\n",
			    (unsigned long long) id, tb_state_name(state),
			    timeout_ms, tb_state_name(st));
			return (-1);
		}
		tbh_sleep_ms(10);
	}
}

int
tbh_list_all(tb_client *c, tbh_row **rowsp, size_t *np)
{
	tb_list_opts o    = TB_LIST_OPTS_INIT;
	tbh_row     *rows = NULL;
	size_t       n = 0, cap = 0;
	int          rv;

	*rowsp  = NULL;
	*np     = 0;
	o.limit = 1000;
	for (;;) {
		tb_task **ts = NULL;
		size_t    k  = 0;

		if ((rv = tb_list(c, &o, &ts, &k)) != TB_OK) {
			free(rows);
			return (rv);
		}
		if (k == 0) {
			tb_task_list_free(ts, k);
			break;
		}
		if (n + k > cap) {
			tbh_row *nr;
			cap = (n + k) * 2;
			if ((nr = realloc(rows, cap * sizeof(*rows))) ==
			    NULL) {
				tb_task_list_free(ts, k);
				free(rows);
				return (TB_ENOMEM);
			}
			rows = nr;
		}
		for (size_t i = 0; i < k; i++) {
			rows[n].id       = tb_task_id(ts[i]);
			rows[n].state    = tb_task_state(ts[i]);
			rows[n].attempts = tb_task_attempts(ts[i]);
			rows[n].crashes  = tb_task_crashes(ts[i]);
			if (n > 0 && rows[n].id <= rows[n - 1].id) {
				fprintf(stderr,
				    "harness: tb_list not in id order: %llu "
				    "after %llu\n",
				    (unsigned long long) rows[n].id,
				    (unsigned long long) rows[n - 1].id);
			}
			n++;
		}
		o.after_id = tb_task_id(ts[k - 1]);
		tb_task_list_free(ts, k);
	}
	*rowsp = rows;
	*np    = n;
	return (TB_OK);
}

const tbh_row *
tbh_find_row(const tbh_row *rows, size_t n, tb_id id)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (rows[mid].id == id) {
			return (&rows[mid]);
		}
		if (rows[mid].id < id) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	return (NULL);
}

tb_event *
tbh_sub_expect(tb_sub *s, tb_id id, const char *name, int timeout_ms)
{
	int64_t deadline = tbh_now_ms() + timeout_ms;

	for (;;) {
		tb_event *e    = NULL;
		int64_t   left = deadline - tbh_now_ms();
		int       rv;

		if (left <= 0) {
			return (NULL);
		}
		if ((rv = tb_sub_recv(s, (int) left, &e)) != TB_OK) {
			if (rv != TB_ETIMEDOUT) {
				fprintf(stderr, "harness: tb_sub_recv: %s\n",
				    tb_errname(rv));
			}
			return (NULL);
		}
		if (tb_event_task_id(e) == id &&
		    (name == NULL || strcmp(tb_event_name(e), name) == 0)) {
			return (e);
		}
		tb_event_free(e);
	}
}

tb_sub *
tbh_sub_open(const tbh_broker *b, tb_client *c, const char *prefix)
{
	tb_sub *s = NULL;
	int64_t deadline;

	TBH_OK(tb_sub_open_opts(&s, b->events_url, prefix, b->conn));
	assert_non_null(s);
	// Until the SUB pipe is attached, PUB drops what it sends; submit
	// noops until one of their events gets through.
	deadline = tbh_now_ms() + TBH_MS(10000);
	while (tbh_now_ms() < deadline) {
		tb_id     id = tbh_submit(c, "noop", NULL, 0, NULL);
		tb_event *e  = tbh_sub_expect(s, id, NULL, 300);

		if (e != NULL) {
			tb_event_free(e);
			return (s);
		}
	}
	tb_sub_close(s);
	print_error("no event arrived on %s (prefix %s) within 10 s of "
	            "submitting noop tasks\n",
	    b->events_url, prefix != NULL ? prefix : "(all)");
	fail();
	return (NULL);
}

// Raw requests.

int
tbh_raw_open(nng_socket *sp, const char *url, int timeout_ms)
{
	int rv;

	if ((rv = nng_req0_open(sp)) != 0) {
		return (rv);
	}
	nng_socket_set_ms(*sp, NNG_OPT_RECVTIMEO, timeout_ms);
	nng_socket_set_ms(*sp, NNG_OPT_SENDTIMEO, timeout_ms);
	nng_socket_set_size(*sp, NNG_OPT_RECVMAXSZ, 16u << 20);
	if ((rv = nng_dial(*sp, url, NULL, 0)) != 0) {
		nng_close(*sp);
		return (rv);
	}
	return (0);
}

int
tbh_raw_call(
    nng_socket s, const void *buf, size_t len, void **repp, size_t *replenp)
{
	void  *p = NULL;
	size_t n = 0;
	int    rv;

	*repp    = NULL;
	*replenp = 0;
	if ((rv = nng_send(s, (void *) buf, len, 0)) != 0) {
		return (rv);
	}
	if ((rv = nng_recv(s, &p, &n, NNG_FLAG_ALLOC)) != 0) {
		return (rv);
	}
	if ((*repp = malloc(n > 0 ? n : 1)) == NULL) {
		nng_free(p, n);
		return (NNG_ENOMEM);
	}
	memcpy(*repp, p, n);
	*replenp = n;
	nng_free(p, n);
	return (0);
}

// The fixture.

void
tbh_filter_from_env(void)
{
	const char *s = getenv("TBH_FILTER");

	if (s != NULL && s[0] != '\0') {
		cmocka_set_test_filter(s);
	}
}

// A test that hangs would only show as a ctest timeout. The watchdog
// prints where this process is stuck first, then lets SIGALRM end it.
#define TBH_WATCHDOG_S 100

static void
tbh_watchdog(int sig)
{
	static const char msg[] = "\n=== harness: watchdog: this test has run "
	                          "for 100 s; stack of the stuck thread:\n";
	void             *frames[64];
	int               n;

	(void) !write(STDERR_FILENO, msg, sizeof(msg) - 1);
	n = backtrace(frames, 64);
	backtrace_symbols_fd(frames, n, STDERR_FILENO);
	signal(sig, SIG_DFL);
	raise(sig);
}

int
tbh_setup(void **state)
{
	tbh_fix *f;

	if ((f = calloc(1, sizeof(*f))) == NULL) {
		return (-1);
	}
	*state = f;
	signal(SIGALRM, tbh_watchdog);
	alarm((unsigned) (TBH_WATCHDOG_S * tbh_scale()));
	return (0);
}

int
tbh_teardown(void **state)
{
	tbh_fix *f = *state;
	int      rv;

	if (f == NULL) {
		alarm(0);
		return (0);
	}
	// nng 1.5.2's nng_close can hang when it races a dialer retrying a
	// broker that is gone. A test that left its broker dead gets it back
	// first, so the client and subscription close while connected.
	if ((f->c != NULL || f->sub != NULL) && f->b.starts > 0 &&
	    !tbh_running(&f->b) && f->passed) {
		(void) tbh_restart(&f->b);
	}
	tb_sub_close(f->sub);
	tb_client_close(f->c);
	alarm(0);
	rv = tbh_cleanup(&f->b, !f->passed);
	free(f);
	*state = NULL;
	return (rv); // -1 fails the test: the broker had a sanitizer report
}

void
tbh_fix_start(tbh_fix *f, const char *const *args)
{
	if (tbh_start(&f->b, args) != 0) {
		print_error("could not start the broker\n");
		fail();
	}
	f->c = tbh_client(&f->b, 10000);
	assert_non_null(f->c);
}

// Additions for the lifecycle, admin and schedule tests.

int
tbh_write_config(
    tbh_broker *b, const char *name, const char *text, char *path, size_t size)
{
	FILE *fp;

	if (b->dir[0] == '\0') {
		// As tbh_start does; it then leaves the dir as it is.
		if (tbh_mkdtemp(b->dir, sizeof(b->dir)) == NULL) {
			fprintf(
			    stderr, "harness: mkdtemp: %s\n", strerror(errno));
			b->dir[0] = '\0';
			return (-1);
		}
		snprintf(b->data_dir, sizeof(b->data_dir), "%s/data", b->dir);
		snprintf(b->url, sizeof(b->url), "ipc://%s/tb.sock", b->dir);
		snprintf(b->events_url, sizeof(b->events_url),
		    "ipc://%s/ev.sock", b->dir);
		snprintf(
		    b->log_path, sizeof(b->log_path), "%s/broker.log", b->dir);
		(void) mkdir(b->data_dir, 0755);
	}
	if ((size_t) snprintf(path, size, "%s/%s", b->dir, name) >= size) {
		fprintf(stderr, "harness: config path too long\n");
		return (-1);
	}
	if ((fp = fopen(path, "w")) == NULL) {
		fprintf(stderr, "harness: %s: %s\n", path, strerror(errno));
		return (-1);
	}
	fputs(text, fp);
	if (fclose(fp) != 0) {
		fprintf(stderr, "harness: %s: %s\n", path, strerror(errno));
		return (-1);
	}
	return (0);
}

int
tbh_count_tasks(tb_client *c, const char *queue, int state, size_t *np)
{
	tb_list_opts o     = TB_LIST_OPTS_INIT;
	size_t       total = 0;

	o.queue = queue;
	o.state = state;
	o.limit = 1000;
	for (;;) {
		tb_task **ts = NULL;
		size_t    n  = 0;
		int       rv;

		if ((rv = tb_list(c, &o, &ts, &n)) != TB_OK) {
			return (rv);
		}
		if (n == 0) {
			tb_task_list_free(ts, n);
			*np = total;
			return (TB_OK);
		}
		total += n;
		o.after_id = tb_task_id(ts[n - 1]);
		tb_task_list_free(ts, n);
	}
}

size_t
tbh_count(tb_client *c, const char *queue, int state)
{
	size_t n = 0;

	TBH_OK(tbh_count_tasks(c, queue, state, &n));
	return (n);
}

int
tbh_list_every(tb_client *c, tb_list_opts o, tb_task ***tsp, size_t *np)
{
	tb_task **all = NULL;
	size_t    n   = 0;
	int       rv;

	*tsp    = NULL;
	*np     = 0;
	o.limit = 1000;
	for (;;) {
		tb_task **ts = NULL;
		tb_task **na;
		size_t    k = 0;

		if ((rv = tb_list(c, &o, &ts, &k)) != TB_OK) {
			tb_task_list_free(all, n);
			return (rv);
		}
		if (k == 0) {
			tb_task_list_free(ts, k);
			break;
		}
		if ((na = realloc(all, (n + k) * sizeof(*all))) == NULL) {
			tb_task_list_free(ts, k);
			tb_task_list_free(all, n);
			return (TB_ENOMEM);
		}
		all = na;
		memcpy(all + n, ts, k * sizeof(*ts));
		n += k;
		o.after_id = tb_task_id(ts[k - 1]);
		free(ts); // its tasks belong to all from here
	}
	*tsp = all;
	*np  = n;
	return (TB_OK);
}

int
tbh_cli(const tbh_broker *b, char **outp, char **errp, const char *const *args)
{
	const char *bin = getenv("TB_CLI_BIN");
	char       *argv[40];
	int         n = 0;

	if (bin == NULL || bin[0] == '\0') {
		fprintf(stderr, "harness: TB_CLI_BIN is not set\n");
		return (-1);
	}
	argv[n++] = (char *) bin;
	argv[n++] = "--broker";
	argv[n++] = (char *) b->url;
	for (int i = 0; args[i] != NULL && n < 39; i++) {
		argv[n++] = (char *) args[i];
	}
	argv[n] = NULL;
	return (tbh_run(argv, TBH_MS(30000), outp, errp,
	    b->dir[0] != '\0' ? b->dir : NULL));
}

int
tbh_procs_with_arg(const char *arg, pid_t *pids, int max)
{
	DIR           *d;
	struct dirent *de;
	int            found = 0;
	size_t         alen  = strlen(arg);

	if ((d = opendir("/proc")) == NULL) {
		return (0);
	}
	while ((de = readdir(d)) != NULL) {
		char    path[300];
		char    buf[4096];
		ssize_t len;
		int     fd;
		char   *end;
		long    pid = strtol(de->d_name, &end, 10);

		if (*end != '\0' || pid <= 0) {
			continue;
		}
		snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
		if ((fd = open(path, O_RDONLY)) < 0) {
			continue;
		}
		len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len <= 0) {
			continue;
		}
		buf[len] = '\0';
		for (char *p = buf; p < buf + len; p += strlen(p) + 1) {
			if (strlen(p) == alen && memcmp(p, arg, alen) == 0) {
				if (pids != NULL && found < max) {
					pids[found] = (pid_t) pid;
				}
				found++;
				break;
			}
		}
	}
	closedir(d);
	return (found);
}

// Shared checks.

int64_t
tbh_wall_us(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return ((int64_t) tv.tv_sec * 1000000 + tv.tv_usec);
}

void
tbh_expect_state(tb_task *t, int want)
{
	if (tb_task_state(t) != want) {
		print_error(
		    "task %llu is %s, want %s (attempts %u, error %s)\n",
		    (unsigned long long) tb_task_id(t),
		    tb_state_name(tb_task_state(t)), tb_state_name(want),
		    tb_task_attempts(t),
		    tb_task_error(t) != NULL ? tb_task_error(t) : "(none)");
		tb_task_free(t);
		fail();
	}
}

tb_task *
tbh_status(tb_client *c, tb_id id)
{
	tb_task *t = NULL;

	TBH_OK(tb_status(c, id, &t));
	assert_non_null(t);
	return (t);
}

void
tbh_fix_start_config(tbh_fix *f, const char *ini, const char *const *args)
{
	char        path[TBH_PATH];
	const char *all[TBH_MAX_ARGS + 1];
	int         n = 0;

	if (tbh_write_config(&f->b, "broker.ini", ini, path, sizeof(path)) !=
	    0) {
		print_error("could not write the config file\n");
		fail();
	}
	all[n++] = "--config";
	all[n++] = path;
	for (int i = 0; args != NULL && args[i] != NULL && n < TBH_MAX_ARGS;
	     i++) {
		all[n++] = args[i];
	}
	all[n] = NULL;
	tbh_fix_start(f, all);
}

void
tbh_fix_restart(tbh_fix *f)
{
	int code;

	bool resub = f->sub != NULL;

	tbh_log_note(&f->b, "=== test: SIGTERM and restart ===");
	if ((code = tbh_stop(&f->b, TBH_MS(15000))) != 0) {
		print_error("broker stop: exit %d, want 0\n", code);
		fail();
	}
	// The old subscription goes while no broker is up: closed after the
	// restart it could leave in the middle of the new broker's handshake,
	// which with nng 1.5.2 stops that listener for good. (It is NULL
	// before tbh_sub_open returns, so a failed open is not closed twice.)
	tb_sub_close(f->sub);
	f->sub = NULL;
	if (tbh_restart(&f->b) != 0) {
		print_error("broker did not come back after a restart\n");
		fail();
	}
	if (resub) {
		f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	}
}

char *
tbh_cli_expect(const tbh_broker *b, int want, const char *const *args)
{
	char *out = NULL, *err = NULL;
	int   code = tbh_cli(b, &out, &err, args);

	print_message("cli %s ... -> exit %d\n", args[0], code);
	if (code != want) {
		print_error("taskbroker %s: exit %d, want %d\nstdout: %s\n"
		            "stderr: %s\n",
		    args[0], code, want, out ? out : "", err ? err : "");
		free(out);
		free(err);
		fail();
	}
	free(err);
	return (out);
}

char *
tbh_cli_ok(const tbh_broker *b, const char *const *args)
{
	return (tbh_cli_expect(b, 0, args));
}

// Processes marked by an argument.

void
tbh_marker_make(char *buf, size_t size)
{
	static int n;

	n++;
	snprintf(buf, size, "1%03d.%d", n, (int) getpid());
}

int
tbh_marker_wait(const char *marker, int n, int timeout_ms)
{
	int64_t deadline = tbh_now_ms() + timeout_ms;
	int     got;

	for (;;) {
		got = tbh_procs_with_arg(marker, NULL, 0);
		if ((n == 0 && got == 0) || (n > 0 && got >= n) ||
		    tbh_now_ms() >= deadline) {
			return (got);
		}
		tbh_sleep_ms(10);
	}
}

void
tbh_marker_kill(const char *marker)
{
	pid_t pids[64];
	int   n = tbh_procs_with_arg(marker, pids, 64);

	for (int i = 0; i < n && i < 64; i++) {
		kill(pids[i], SIGKILL);
	}
}

// Raw connections.

// tbh_fd_wait_readable waits up to timeout_ms for fd to be readable:
// > 0 readable (or at its end), 0 timed out, < 0 error.
static int
tbh_fd_wait_readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int           rv;

	do {
		rv = poll(&p, 1, timeout_ms);
	} while (rv < 0 && errno == EINTR);
	return (rv);
}

// tbh_raw_addr fills ss with url's address (ipc://PATH, or
// tcp://127.0.0.1:PORT) and returns its length.
static socklen_t
tbh_raw_addr(const char *url, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strncmp(url, "ipc://", 6) == 0) {
		struct sockaddr_un *su = (struct sockaddr_un *) ss;
		su->sun_family         = AF_UNIX;
		snprintf(su->sun_path, sizeof(su->sun_path), "%s", url + 6);
		return (sizeof(*su));
	} else {
		struct sockaddr_in *si    = (struct sockaddr_in *) ss;
		const char         *colon = strrchr(url, ':');
		assert_non_null(colon);
		si->sin_family      = AF_INET;
		si->sin_port        = htons((uint16_t) atoi(colon + 1));
		si->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		return (sizeof(*si));
	}
}

void
tbh_storm(const char *url, int n)
{
	int64_t deadline = tbh_now_ms() + TBH_MS(20000);
	int     made     = 0;

	while (made < n) {
		struct sockaddr_storage ss;
		socklen_t               len = tbh_raw_addr(url, &ss);
		int                     fd;

		fd = socket(ss.ss_family, SOCK_STREAM, 0);
		assert_true(fd >= 0);
		if (connect(fd, (struct sockaddr *) &ss, len) == 0) {
			made++;
		} else if (errno != ECONNREFUSED && errno != ENOENT) {
			print_error("connect %s: %s\n", url, strerror(errno));
			fail();
		} else if (tbh_now_ms() > deadline) {
			print_error("%s refused connections for 20 s after "
			            "%d of the storm's\n",
			    url, made);
			fail();
		}
		close(fd);
	}
}

int
tbh_raw_negotiate(const char *url, uint16_t proto, int timeout_ms)
{
	struct sockaddr_storage ss;
	socklen_t               len = tbh_raw_addr(url, &ss);
	uint8_t head[8]             = { 0, 'S', 'P', 0, (uint8_t) (proto >> 8),
		            (uint8_t) proto, 0, 0 };
	uint8_t peer[8];
	size_t  got = 0;
	int     fd;

	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		return (-1);
	}
	if (connect(fd, (struct sockaddr *) &ss, len) != 0 ||
	    write(fd, head, sizeof(head)) != (ssize_t) sizeof(head)) {
		close(fd);
		return (-1);
	}
	while (got < sizeof(peer)) {
		ssize_t k;
		if (tbh_fd_wait_readable(fd, timeout_ms) <= 0 ||
		    (k = read(fd, peer + got, sizeof(peer) - got)) <= 0) {
			close(fd);
			return (-1);
		}
		got += (size_t) k;
	}
	return (fd);
}

bool
tbh_fd_wait_eof(int fd, int timeout_ms)
{
	int64_t deadline = tbh_now_ms() + timeout_ms;
	uint8_t buf[256];

	for (;;) {
		int64_t left = deadline - tbh_now_ms();
		ssize_t k;
		if (left <= 0 || tbh_fd_wait_readable(fd, (int) left) <= 0) {
			return (false);
		}
		if ((k = read(fd, buf, sizeof(buf))) == 0 ||
		    (k < 0 && errno != EINTR && errno != EAGAIN)) {
			return (true); // EOF, or reset
		}
	}
}

int
tbh_free_tcp_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t          n = sizeof(a);
	int                fd;
	int                port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true((fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &n), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return (port);
}
