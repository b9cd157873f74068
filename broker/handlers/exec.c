// handlers/exec.c: the "exec" handler; see exec.h. Loop thread only.

#include "handlers/exec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/close_range.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <taskbroker/defs.h>

#include "handlers/handlers.h"
#include "log.h"

// Settings of exec, from the configuration at start (exec_handler_init).
static uint64_t exec_grace_ms   = 5000;
static size_t   exec_output_max = 4096;
static char   **exec_allow; // resolved entries; a directory keeps its '/'
static size_t   exec_nallow;

#define EXEC_MAX_ARGS 4096
#define EXEC_MAX_ENV 1024
#define EXEC_PATH "/usr/local/bin:/usr/bin:/bin"

typedef struct exec_tail {
	char  *buf; // exec_output_max bytes
	size_t len;
	bool   cut; // earlier output was dropped
} exec_tail;

typedef struct exec_state {
	run          *r;
	uv_process_t  proc;
	uv_pipe_t     in;
	uv_pipe_t     out;
	uv_pipe_t     err;
	uv_timer_t    grace;
	uv_timer_t    kill; // SIGKILL after a SIGTERM's grace period
	uv_write_t    wreq;
	uv_shutdown_t sreq;
	char         *stdin_buf;
	size_t        stdin_len;
	exec_tail     tout;
	exec_tail     terr;
	int           open; // handles not yet closed
	int64_t       exit_status;
	int           term_signal;
	bool          exited;
	bool          cancelled;
} exec_state;

// How long output pipes may stay open after the child exited (a grandchild
// may hold them) before we stop reading.
#define EXEC_PIPE_GRACE_MS 250

static void
exec_tail_add(exec_tail *t, const char *p, size_t n)
{
	size_t max = exec_output_max;

	if (t->buf == NULL || max == 0) {
		t->cut = t->cut || n > 0;
		return;
	}
	if (n >= max) {
		memcpy(t->buf, p + n - max, max);
		t->len = max;
		t->cut = true;
		return;
	}
	if (t->len + n > max) {
		size_t drop = t->len + n - max;
		memmove(t->buf, t->buf + drop, t->len - drop);
		t->len -= drop;
		t->cut = true;
	}
	memcpy(t->buf + t->len, p, n);
	t->len += n;
}

static void
exec_free(exec_state *x)
{
	free(x->tout.buf);
	free(x->terr.buf);
	free(x->stdin_buf);
	free(x);
}

static void
exec_finish(exec_state *x)
{
	run            *r = x->r;
	msgpack_sbuffer sb;
	msgpack_packer  pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 6);
	msgpack_pack_str_with_body(&pk, "exit_status", 11);
	msgpack_pack_int64(&pk, x->exit_status);
	msgpack_pack_str_with_body(&pk, "term_signal", 11);
	msgpack_pack_int(&pk, x->term_signal);
	msgpack_pack_str_with_body(&pk, "stdout", 6);
	msgpack_pack_bin_with_body(&pk, x->tout.buf, x->tout.len);
	msgpack_pack_str_with_body(&pk, "stderr", 6);
	msgpack_pack_bin_with_body(&pk, x->terr.buf, x->terr.len);
	msgpack_pack_str_with_body(&pk, "stdout_cut", 10);
	if (x->tout.cut) {
		msgpack_pack_true(&pk);
	} else {
		msgpack_pack_false(&pk);
	}
	msgpack_pack_str_with_body(&pk, "stderr_cut", 10);
	if (x->terr.cut) {
		msgpack_pack_true(&pk);
	} else {
		msgpack_pack_false(&pk);
	}
	run_set_result(r, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);

	if (x->cancelled) {
		run_set_error(r, "cancelled");
	} else if (x->term_signal != 0) {
		run_set_error(r, "killed by signal %d", x->term_signal);
	} else if (x->exit_status != 0) {
		run_set_error(
		    r, "exit status %lld", (long long) x->exit_status);
	}
	r->hdata = NULL;
	exec_free(x);
	run_finish(r);
}

static void exec_close(uv_handle_t *h);

static void
exec_closed(uv_handle_t *h)
{
	exec_state *x = h->data;

	x->open--;
	if (x->open > 0 && uv_is_closing((uv_handle_t *) &x->proc) &&
	    uv_is_closing((uv_handle_t *) &x->out) &&
	    uv_is_closing((uv_handle_t *) &x->err)) {
		// The child and its output are done: close what is left.
		exec_close((uv_handle_t *) &x->in);
		exec_close((uv_handle_t *) &x->grace);
		exec_close((uv_handle_t *) &x->kill);
	} else if (x->open == 0) {
		if (x->r == NULL) {
			exec_free(x); // the start failed
		} else {
			exec_finish(x);
		}
	}
}

static void
exec_close(uv_handle_t *h)
{
	if (!uv_is_closing(h)) {
		uv_close(h, exec_closed);
	}
}

static void
exec_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char scratch[65536]; // loop thread only; consumed at once

	(void) h;
	(void) hint;
	buf->base = scratch;
	buf->len  = sizeof(scratch);
}

static void
exec_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	exec_state *x = s->data;

	if (n > 0) {
		exec_tail_add(
		    (uv_stream_t *) &x->out == s ? &x->tout : &x->terr,
		    buf->base, (size_t) n);
	} else if (n < 0) {
		exec_close((uv_handle_t *) s); // EOF or error
	}
}

static void
exec_stdin_done(uv_shutdown_t *req, int status)
{
	exec_state *x = req->data;

	(void) status;
	exec_close((uv_handle_t *) &x->in);
}

static void
exec_stdin_written(uv_write_t *req, int status)
{
	exec_state *x = req->data;

	// EPIPE when the child did not read it all: not the task's failure.
	if (status != 0 ||
	    uv_shutdown(&x->sreq, (uv_stream_t *) &x->in, exec_stdin_done) !=
	        0) {
		exec_close((uv_handle_t *) &x->in);
	}
}

static void
exec_grace_fired(uv_timer_t *t)
{
	exec_state *x = t->data;

	exec_close((uv_handle_t *) &x->out);
	exec_close((uv_handle_t *) &x->err);
	exec_close((uv_handle_t *) &x->grace);
}

static void
exec_exited(uv_process_t *p, int64_t status, int sig)
{
	exec_state *x = p->data;

	uv_timer_stop(&x->kill);
	x->exited      = true;
	x->exit_status = status;
	x->term_signal = sig;
	exec_close((uv_handle_t *) p);
	uv_timer_start(&x->grace, exec_grace_fired, EXEC_PIPE_GRACE_MS, 0);
}

// exec_str gives the bytes of a msgpack str or bin, or false.
static bool
exec_str(const msgpack_object *o, const char **pp, uint32_t *np)
{
	if (o->type == MSGPACK_OBJECT_STR) {
		*pp = o->via.str.ptr;
		*np = o->via.str.size;
		return (true);
	}
	if (o->type == MSGPACK_OBJECT_BIN) {
		*pp = o->via.bin.ptr;
		*np = o->via.bin.size;
		return (true);
	}
	return (false);
}

// exec_resolve finds the program argv0 names: as given when it contains a
// '/', else the first match in path. Writes a malloc'd path to *outp.
static int
exec_resolve(const char *argv0, const char *path, char **outp)
{
	char buf[PATH_MAX];

	if (strchr(argv0, '/') != NULL) {
		return ((*outp = strdup(argv0)) != NULL ? TB_OK : TB_ENOMEM);
	}
	while (path != NULL && *path != '\0') {
		const char *end = strchr(path, ':');
		size_t n = end != NULL ? (size_t) (end - path) : strlen(path);
		if (n > 0 &&
		    (size_t) snprintf(buf, sizeof(buf), "%.*s/%s", (int) n,
		        path, argv0) < sizeof(buf) &&
		    access(buf, X_OK) == 0) {
			return (
			    (*outp = strdup(buf)) != NULL ? TB_OK : TB_ENOMEM);
		}
		path = end != NULL ? end + 1 : NULL;
	}
	return (TB_ENOTFOUND);
}

// exec_allowed checks a resolved program against --exec-allow: an entry
// ending in '/' allows every program below that directory, any other
// entry exactly that program. Symbolic links and ".." are resolved first,
// so neither can escape the list.
static bool
exec_allowed(const char *prog)
{
	char real[PATH_MAX];

	if (exec_nallow == 0) {
		return (true);
	}
	if (realpath(prog, real) == NULL) {
		return (false);
	}
	for (size_t i = 0; i < exec_nallow; i++) {
		const char *a   = exec_allow[i];
		size_t      len = strlen(a);
		if (len > 0 && a[len - 1] == '/' ? strncmp(real, a, len) == 0
		                                 : strcmp(real, a) == 0) {
			return (true);
		}
	}
	return (false);
}

// exec_cloexec marks every descriptor above stderr close-on-exec, so no
// child inherits one of the broker's (sockets, the database, pipes of
// other children), whatever the library that opened it did.
static void
exec_cloexec(void)
{
	DIR           *d;
	struct dirent *e;

	// One system call where the kernel has it (Linux 5.11)...
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0) {
		return;
	}
	// ...else only the descriptors that are open.
	if ((d = opendir("/proc/self/fd")) == NULL) {
		return;
	}
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name);
		int fl;
		if (fd > 2 && fd != dirfd(d) &&
		    (fl = fcntl(fd, F_GETFD)) >= 0 && !(fl & FD_CLOEXEC)) {
			(void) fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
		}
	}
	closedir(d);
}

static int
exec_start(run *r, void *hdata)
{
	msgpack_unpacked      up;
	const msgpack_object *argv, *env, *cwd, *in;
	char                **args = NULL;
	char                **envp = NULL;
	char                 *dir  = NULL;
	char                 *prog = NULL;
	exec_state           *x    = NULL;
	uv_process_options_t  opt;
	uv_stdio_container_t  stdio[3];
	const char           *path = EXEC_PATH;
	uint32_t              nenv = 0;
	int                   rv;

	(void) hdata;
	msgpack_unpacked_init(&up);
	if (run_payload(r, &up) != TB_OK ||
	    (argv = payload_get(&up.data, "argv")) == NULL ||
	    argv->type != MSGPACK_OBJECT_ARRAY || argv->via.array.size == 0 ||
	    argv->via.array.size > EXEC_MAX_ARGS) {
		run_set_error(r,
		    "payload must be a map with a non-empty "
		    "array \"argv\" of strings");
		rv = TB_EBADREQ;
		goto out;
	}
	env = payload_get(&up.data, "env");
	cwd = payload_get(&up.data, "cwd");
	in  = payload_get(&up.data, "stdin");
	if ((env != NULL && env->type != MSGPACK_OBJECT_NIL &&
	        (env->type != MSGPACK_OBJECT_MAP ||
	            env->via.map.size > EXEC_MAX_ENV)) ||
	    (cwd != NULL && cwd->type != MSGPACK_OBJECT_NIL &&
	        cwd->type != MSGPACK_OBJECT_STR) ||
	    (in != NULL && in->type != MSGPACK_OBJECT_NIL &&
	        in->type != MSGPACK_OBJECT_STR &&
	        in->type != MSGPACK_OBJECT_BIN)) {
		run_set_error(r,
		    "payload: \"env\" must be a map of strings, "
		    "\"cwd\" a string, \"stdin\" bytes or a string");
		rv = TB_EBADREQ;
		goto out;
	}
	if ((args = calloc(argv->via.array.size + 1, sizeof(char *))) ==
	    NULL) {
		run_set_error(r, "out of memory");
		rv = TB_ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < argv->via.array.size; i++) {
		const char *p;
		uint32_t    n;
		if (!exec_str(&argv->via.array.ptr[i], &p, &n) ||
		    memchr(p, '\0', n) != NULL ||
		    (args[i] = strndup(p, n)) == NULL) {
			run_set_error(r, "argv[%u] is not a valid string", i);
			rv = TB_EBADREQ;
			goto out;
		}
	}
	// A minimal environment, not the broker's own; the task's entries
	// are added to it (and may replace PATH or LANG).
	nenv = env != NULL && env->type == MSGPACK_OBJECT_MAP
	    ? env->via.map.size
	    : 0;
	if ((envp = calloc(nenv + 3, sizeof(char *))) == NULL) {
		run_set_error(r, "out of memory");
		rv = TB_ENOMEM;
		goto out;
	}
	{
		uint32_t k         = 0;
		bool     have_path = false, have_lang = false;
		for (uint32_t i = 0; i < nenv; i++) {
			const char *kp, *vp;
			uint32_t    kn, vn;
			if (!exec_str(&env->via.map.ptr[i].key, &kp, &kn) ||
			    !exec_str(&env->via.map.ptr[i].val, &vp, &vn) ||
			    kn == 0 || memchr(kp, '=', kn) != NULL ||
			    memchr(kp, '\0', kn) != NULL ||
			    memchr(vp, '\0', vn) != NULL ||
			    asprintf(&envp[k], "%.*s=%.*s", (int) kn, kp,
			        (int) vn, vp) < 0) {
				envp[k] = NULL;
				run_set_error(
				    r, "env entry %u is not NAME: string", i);
				rv = TB_EBADREQ;
				goto out;
			}
			if (kn == 4 && memcmp(kp, "PATH", 4) == 0) {
				have_path = true;
				path      = envp[k] + 5;
			}
			have_lang = have_lang ||
			    (kn == 4 && memcmp(kp, "LANG", 4) == 0);
			k++;
		}
		if (!have_path &&
		    (envp[k++] = strdup("PATH=" EXEC_PATH)) == NULL) {
			rv = TB_ENOMEM;
			goto out;
		}
		if (!have_lang &&
		    (envp[k++] = strdup("LANG=C.UTF-8")) == NULL) {
			rv = TB_ENOMEM;
			goto out;
		}
	}
	if (cwd != NULL && cwd->type == MSGPACK_OBJECT_STR &&
	    (memchr(cwd->via.str.ptr, '\0', cwd->via.str.size) != NULL ||
	        (dir = strndup(cwd->via.str.ptr, cwd->via.str.size)) ==
	            NULL)) {
		run_set_error(r, "cwd is not a valid string");
		rv = TB_EBADREQ;
		goto out;
	}
	if ((rv = exec_resolve(args[0], path, &prog)) != TB_OK) {
		run_set_error(r, "cannot run %s: %s", args[0],
		    rv == TB_ENOTFOUND ? "not found in PATH"
		                       : "out of memory");
		goto out;
	}
	if (!exec_allowed(prog)) {
		run_set_error(
		    r, "program %s is not allowed (--exec-allow)", prog);
		r->no_retry = true; // the same program is refused every time
		log_warn(RUN_FMT ": exec of %s refused by --exec-allow",
		    RUN_ARGS(r), prog);
		rv = TB_EINVAL;
		goto out;
	}
	if ((x = calloc(1, sizeof(*x))) == NULL ||
	    (exec_output_max > 0 &&
	        ((x->tout.buf = malloc(exec_output_max)) == NULL ||
	            (x->terr.buf = malloc(exec_output_max)) == NULL))) {
		if (x != NULL) {
			exec_free(x);
			x = NULL;
		}
		run_set_error(r, "out of memory");
		rv = TB_ENOMEM;
		goto out;
	}
	{
		const char *ip;
		uint32_t    in_n;
		if (in != NULL && exec_str(in, &ip, &in_n)) {
			// Copied: the payload's memory goes when we return.
			if ((x->stdin_buf = malloc(in_n > 0 ? in_n : 1)) ==
			    NULL) {
				exec_free(x);
				x = NULL;
				run_set_error(r, "out of memory");
				rv = TB_ENOMEM;
				goto out;
			}
			memcpy(x->stdin_buf, ip, in_n);
			x->stdin_len = in_n;
		}
	}
	x->r = r;
	uv_pipe_init(r->loop, &x->in, 0);
	uv_pipe_init(r->loop, &x->out, 0);
	uv_pipe_init(r->loop, &x->err, 0);
	uv_timer_init(r->loop, &x->grace);
	uv_timer_init(r->loop, &x->kill);
	x->in.data = x->out.data = x->err.data = x->proc.data = x;
	x->grace.data = x->kill.data = x->wreq.data = x->sreq.data = x;
	x->open                                                    = 6;

	memset(&opt, 0, sizeof(opt));
	if (x->stdin_buf != NULL) {
		stdio[0].flags       = UV_CREATE_PIPE | UV_READABLE_PIPE;
		stdio[0].data.stream = (uv_stream_t *) &x->in;
	} else {
		stdio[0].flags = UV_IGNORE; // /dev/null
	}
	stdio[1].flags       = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *) &x->out;
	stdio[2].flags       = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *) &x->err;
	opt.file             = prog;
	opt.args             = args;
	opt.env              = envp;
	opt.cwd              = dir;
	opt.exit_cb          = exec_exited;
	opt.stdio            = stdio;
	opt.stdio_count      = 3;
	// DETACHED makes the child a session and process-group leader, so a
	// cancel can signal the whole group.
	opt.flags = UV_PROCESS_DETACHED;

	exec_cloexec();
	if ((rv = uv_spawn(r->loop, &x->proc, &opt)) != 0) {
		run_set_error(r, "cannot run %s: %s", prog, uv_strerror(rv));
		// The handles are initialised and must be closed. With x->r
		// cleared, the last close frees x instead of finishing the
		// run, which a failed start must not do.
		x->r = NULL;
		exec_close((uv_handle_t *) &x->proc);
		exec_close((uv_handle_t *) &x->in);
		exec_close((uv_handle_t *) &x->out);
		exec_close((uv_handle_t *) &x->err);
		exec_close((uv_handle_t *) &x->grace);
		exec_close((uv_handle_t *) &x->kill);
		x  = NULL;
		rv = TB_ESYSTEM;
		goto out;
	}
	r->hdata = x;
	uv_read_start((uv_stream_t *) &x->out, exec_alloc, exec_read);
	uv_read_start((uv_stream_t *) &x->err, exec_alloc, exec_read);
	if (x->stdin_buf != NULL) {
		uv_buf_t b =
		    uv_buf_init(x->stdin_buf, (unsigned) x->stdin_len);
		if (uv_write(&x->wreq, (uv_stream_t *) &x->in, &b, 1,
		        exec_stdin_written) != 0) {
			exec_close((uv_handle_t *) &x->in);
		}
	}
	rv = TB_OK;
out:
	if (args != NULL) {
		for (uint32_t i = 0; args[i] != NULL; i++) {
			free(args[i]);
		}
		free(args);
	}
	if (envp != NULL) {
		for (uint32_t i = 0; envp[i] != NULL; i++) {
			free(envp[i]);
		}
		free(envp);
	}
	free(dir);
	free(prog);
	msgpack_unpacked_destroy(&up);
	return (rv);
}

static void
exec_kill_fired(uv_timer_t *t)
{
	exec_state *x = t->data;

	if (!x->exited) {
		uv_kill(-x->proc.pid, SIGKILL);
	}
}

static void
exec_cancel(run *r, void *hdata)
{
	exec_state *x = r->hdata;

	if (x != NULL && !x->exited && !x->cancelled) {
		x->cancelled = true;
		// The negative pid names the child's process group: the
		// whole group gets SIGTERM, then SIGKILL if it lingers.
		if (exec_grace_ms == 0) {
			uv_kill(-x->proc.pid, SIGKILL);
		} else {
			uv_kill(-x->proc.pid, SIGTERM);
			uv_timer_start(
			    &x->kill, exec_kill_fired, exec_grace_ms, 0);
		}
	}
}

static const tb_handler_def exec_def = { "exec", TB_HANDLER_LOOP, exec_start,
	exec_cancel, NULL };

// exec_allow_init resolves the --exec-allow entries the way programs are
// resolved (realpath: symbolic links such as /bin -> usr/bin, ".."), so
// that an entry matches the program it names. An entry that does not
// exist stops the start: it is surely a mistake.
static int
exec_allow_init(const config_list *l)
{
	char real[PATH_MAX];

	if (l->n == 0) {
		return (TB_OK);
	}
	if ((exec_allow = calloc(l->n, sizeof(char *))) == NULL) {
		return (TB_ENOMEM);
	}
	for (size_t i = 0; i < l->n; i++) {
		const char *a   = l->v[i];
		size_t      len = strlen(a);
		bool        dir = len > 0 && a[len - 1] == '/';
		if (realpath(a, real) == NULL) {
			log_err("--exec-allow %s: %s", a, strerror(errno));
			return (TB_EINVAL);
		}
		if (asprintf(&exec_allow[i], "%s%s", real,
		        dir && strcmp(real, "/") != 0 ? "/" : "") < 0) {
			exec_allow[i] = NULL;
			return (TB_ENOMEM);
		}
		exec_nallow = i + 1;
	}
	return (TB_OK);
}

int
exec_handler_init(const config *cfg)
{
	int rv;

	exec_grace_ms   = (uint64_t) cfg->exec_kill_grace_ms;
	exec_output_max = (size_t) cfg->exec_output_max;
	if ((rv = exec_allow_init(&cfg->exec_allow)) != TB_OK) {
		return (rv);
	}
	return (handlers_register(&exec_def));
}

void
exec_handler_fini(void)
{
	for (size_t i = 0; i < exec_nallow; i++) {
		free(exec_allow[i]);
	}
	free(exec_allow);
	exec_allow  = NULL;
	exec_nallow = 0;
}
