// handlers.c: the built-in handlers and the run helpers. Loop thread,
// except block_start, which runs on a worker thread.

#include "handlers.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <taskbroker.h>

#include "log.h"

void
run_set_result(run *r, const void *buf, size_t len)
{
	free(r->result);
	r->result     = NULL;
	r->result_len = 0;
	r->failed     = false;
	if (len > HANDLER_RESULT_MAX) {
		len = HANDLER_RESULT_MAX;
	}
	if (len > 0 && (r->result = malloc(len)) != NULL) {
		memcpy(r->result, buf, len);
		r->result_len = len;
	}
}

void
run_set_error(run *r, const char *fmt, ...)
{
	va_list ap;
	char   *e;

	r->failed = true;
	if ((e = malloc(HANDLER_ERROR_MAX)) == NULL) {
		return; // the failure stands; only its text is lost
	}
	va_start(ap, fmt);
	vsnprintf(e, HANDLER_ERROR_MAX, fmt, ap);
	va_end(ap);
	free(r->error);
	r->error = e;
}

void
run_finish(run *r)
{
	r->finished = true;
	r->done(r);
}

bool
run_is_cancelled(run *r)
{
	return (atomic_load(&r->cancelled));
}

int
run_payload(run *r, msgpack_unpacked *up)
{
	size_t off = 0;

	if (r->payload_len == 0) {
		up->data.type = MSGPACK_OBJECT_NIL;
		return (TB_OK);
	}
	// The broker checked the payload at submit (one object, within the
	// limits), so unpacking cannot be made to reserve a hostile size.
	if (msgpack_unpack_next(up, (const char *) r->payload, r->payload_len,
	        &off) != MSGPACK_UNPACK_SUCCESS) {
		return (TB_EBADREQ);
	}
	return (TB_OK);
}

const msgpack_object *
payload_get(const msgpack_object *m, const char *key)
{
	size_t klen = strlen(key);

	if (m->type != MSGPACK_OBJECT_MAP) {
		return (NULL);
	}
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object_kv *kv = &m->via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_STR &&
		    kv->key.via.str.size == klen &&
		    memcmp(kv->key.via.str.ptr, key, klen) == 0) {
			return (&kv->val);
		}
	}
	return (NULL);
}

// payload_ms reads the non-negative integer "ms" of the payload into *msp.
static int
payload_ms(run *r, uint64_t *msp)
{
	msgpack_unpacked      up;
	const msgpack_object *v;
	int                   rv = TB_OK;

	msgpack_unpacked_init(&up);
	if (run_payload(r, &up) != TB_OK) {
		rv = TB_EBADREQ;
	} else if ((v = payload_get(&up.data, "ms")) == NULL ||
	    v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
		rv = TB_EBADREQ;
	} else {
		*msp = v->via.u64;
	}
	msgpack_unpacked_destroy(&up);
	if (rv != TB_OK) {
		run_set_error(r, "payload must be a map with a non-negative "
		                 "integer \"ms\"");
	}
	return (rv);
}

// noop: succeeds at once.
static int
noop_start(run *r)
{
	run_finish(r);
	return (TB_OK);
}

// fail: fails at once, with the payload's "message" if it has one.
static int
fail_start(run *r)
{
	msgpack_unpacked      up;
	const msgpack_object *v;

	msgpack_unpacked_init(&up);
	if (run_payload(r, &up) == TB_OK &&
	    (v = payload_get(&up.data, "message")) != NULL &&
	    v->type == MSGPACK_OBJECT_STR) {
		run_set_error(r, "%.*s", (int) v->via.str.size, v->via.str.ptr);
	} else {
		run_set_error(r, "failed on purpose");
	}
	msgpack_unpacked_destroy(&up);
	run_finish(r);
	return (TB_OK);
}

// sleep: a loop timer; costs no thread while it waits.
static void
sleep_closed(uv_handle_t *h)
{
	run *r = h->data;

	free(h);
	r->hdata = NULL;
	run_finish(r);
}

static void
sleep_fired(uv_timer_t *t)
{
	uv_close((uv_handle_t *) t, sleep_closed);
}

static int
sleep_start(run *r)
{
	uv_timer_t *t;
	uint64_t    ms;
	int         rv;

	if ((rv = payload_ms(r, &ms)) != TB_OK) {
		return (rv);
	}
	if ((t = malloc(sizeof(*t))) == NULL) {
		run_set_error(r, "out of memory");
		return (TB_ENOMEM);
	}
	uv_timer_init(r->loop, t);
	t->data  = r;
	r->hdata = t;
	uv_timer_start(t, sleep_fired, ms, 0);
	return (TB_OK);
}

static void
sleep_cancel(run *r)
{
	uv_timer_t *t = r->hdata;

	if (t != NULL && !uv_is_closing((uv_handle_t *) t)) {
		uv_timer_stop(t);
		run_set_error(r, "cancelled");
		uv_close((uv_handle_t *) t, sleep_closed);
	}
}

// block: sleeps on a worker thread, in slices so a cancel is seen soon.
static int
block_start(run *r)
{
	uint64_t        ms;
	struct timespec ts;

	if (payload_ms(r, &ms) != TB_OK) {
		return (TB_EBADREQ);
	}
	while (ms > 0 && !run_is_cancelled(r)) {
		uint64_t slice = ms < 10 ? ms : 10;
		ts.tv_sec      = 0;
		ts.tv_nsec     = (long) slice * 1000000L;
		nanosleep(&ts, NULL);
		ms -= slice;
	}
	if (run_is_cancelled(r)) {
		run_set_error(r, "cancelled");
	}
	return (TB_OK);
}

// exec: a child process, never through a shell. The attempt ends when the
// process has exited and both output pipes are closed.
typedef struct exec_tail {
	char   buf[EXEC_TAIL_MAX];
	size_t len;
	bool   cut; // earlier output was dropped
} exec_tail;

typedef struct exec_state {
	run             *r;
	uv_process_t     proc;
	uv_pipe_t        out;
	uv_pipe_t        err;
	uv_timer_t       grace;
	uv_timer_t       kill; // SIGKILL after a SIGTERM's grace period
	exec_tail        tout;
	exec_tail        terr;
	int              open; // handles not yet closed
	int64_t          exit_status;
	int              term_signal;
	bool             exited;
	bool             cancelled;
} exec_state;

// How long output pipes may stay open after the child exited (a grandchild
// may hold them) before we stop reading.
#define EXEC_PIPE_GRACE_MS 250

static void
exec_tail_add(exec_tail *t, const char *p, size_t n)
{
	if (n >= EXEC_TAIL_MAX) {
		memcpy(t->buf, p + n - EXEC_TAIL_MAX, EXEC_TAIL_MAX);
		t->len = EXEC_TAIL_MAX;
		t->cut = true;
		return;
	}
	if (t->len + n > EXEC_TAIL_MAX) {
		size_t drop = t->len + n - EXEC_TAIL_MAX;
		memmove(t->buf, t->buf + drop, t->len - drop);
		t->len -= drop;
		t->cut = true;
	}
	memcpy(t->buf + t->len, p, n);
	t->len += n;
}

static void
exec_finish(exec_state *x)
{
	run            *r = x->r;
	msgpack_sbuffer sb;
	msgpack_packer  pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 4);
	msgpack_pack_str_with_body(&pk, "exit_status", 11);
	msgpack_pack_int64(&pk, x->exit_status);
	msgpack_pack_str_with_body(&pk, "term_signal", 11);
	msgpack_pack_int(&pk, x->term_signal);
	msgpack_pack_str_with_body(&pk, "stdout", 6);
	msgpack_pack_bin_with_body(&pk, x->tout.buf, x->tout.len);
	msgpack_pack_str_with_body(&pk, "stderr", 6);
	msgpack_pack_bin_with_body(&pk, x->terr.buf, x->terr.len);
	run_set_result(r, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);

	if (x->cancelled) {
		run_set_error(r, "cancelled");
	} else if (x->term_signal != 0) {
		run_set_error(r, "killed by signal %d", x->term_signal);
	} else if (x->exit_status != 0) {
		run_set_error(r, "exit status %lld", (long long) x->exit_status);
	}
	r->hdata = NULL;
	free(x);
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
		// The child and its pipes are done: only timers are left.
		exec_close((uv_handle_t *) &x->grace);
		exec_close((uv_handle_t *) &x->kill);
	} else if (x->open == 0) {
		if (x->r == NULL) {
			free(x); // the start failed
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
		exec_tail_add((uv_stream_t *) &x->out == s ? &x->tout : &x->terr,
		    buf->base, (size_t) n);
	} else if (n < 0) {
		exec_close((uv_handle_t *) s); // EOF or error
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

static int
exec_start(run *r)
{
	msgpack_unpacked         up;
	const msgpack_object    *argv;
	char                   **args = NULL;
	exec_state              *x    = NULL;
	uv_process_options_t     opt;
	uv_stdio_container_t     stdio[3];
	// A minimal environment, not the broker's own.
	char *env[] = { "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8",
		NULL };
	int rv;

	msgpack_unpacked_init(&up);
	if (run_payload(r, &up) != TB_OK ||
	    (argv = payload_get(&up.data, "argv")) == NULL ||
	    argv->type != MSGPACK_OBJECT_ARRAY || argv->via.array.size == 0) {
		run_set_error(r, "payload must be a map with a non-empty "
		                 "array \"argv\" of strings");
		rv = TB_EBADREQ;
		goto out;
	}
	if ((args = calloc(argv->via.array.size + 1, sizeof(char *))) == NULL) {
		run_set_error(r, "out of memory");
		rv = TB_ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < argv->via.array.size; i++) {
		const msgpack_object *a = &argv->via.array.ptr[i];
		const char           *p;
		uint32_t              n;
		if (a->type == MSGPACK_OBJECT_STR) {
			p = a->via.str.ptr;
			n = a->via.str.size;
		} else if (a->type == MSGPACK_OBJECT_BIN) {
			p = a->via.bin.ptr;
			n = a->via.bin.size;
		} else {
			run_set_error(r, "argv[%u] is not a string", i);
			rv = TB_EBADREQ;
			goto out;
		}
		if (memchr(p, '\0', n) != NULL ||
		    (args[i] = strndup(p, n)) == NULL) {
			run_set_error(r, "argv[%u] is not a valid string", i);
			rv = TB_EBADREQ;
			goto out;
		}
	}
	if ((x = calloc(1, sizeof(*x))) == NULL) {
		run_set_error(r, "out of memory");
		rv = TB_ENOMEM;
		goto out;
	}
	x->r = r;
	uv_pipe_init(r->loop, &x->out, 0);
	uv_pipe_init(r->loop, &x->err, 0);
	uv_timer_init(r->loop, &x->grace);
	uv_timer_init(r->loop, &x->kill);
	x->out.data = x->err.data = x->grace.data = x->proc.data = x;
	x->kill.data                                              = x;
	x->open                                                   = 5;

	memset(&opt, 0, sizeof(opt));
	stdio[0].flags       = UV_IGNORE;
	stdio[1].flags       = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *) &x->out;
	stdio[2].flags       = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *) &x->err;
	opt.file             = args[0];
	opt.args             = args;
	opt.env              = env;
	opt.exit_cb          = exec_exited;
	opt.stdio            = stdio;
	opt.stdio_count      = 3;
	// DETACHED makes the child a session and process-group leader, so a
	// cancel can signal the whole group.
	opt.flags = UV_PROCESS_DETACHED;

	if ((rv = uv_spawn(r->loop, &x->proc, &opt)) != 0) {
		run_set_error(r, "cannot run %s: %s", args[0], uv_strerror(rv));
		// The handles are initialised and must be closed. With x->r
		// cleared, the last close frees x instead of finishing the
		// run, which a failed start must not do.
		x->r = NULL;
		exec_close((uv_handle_t *) &x->proc);
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
	rv = TB_OK;
out:
	if (args != NULL) {
		for (uint32_t i = 0; args[i] != NULL; i++) {
			free(args[i]);
		}
		free(args);
	}
	msgpack_unpacked_destroy(&up);
	return (rv);
}

// exec_grace_ms is how long a cancelled child gets between SIGTERM and
// SIGKILL; set once at start-up (handlers_set_exec_grace).
static uint64_t exec_grace_ms = 5000;

void
handlers_set_exec_grace(uint64_t ms)
{
	exec_grace_ms = ms;
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
exec_cancel(run *r)
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
			uv_timer_start(&x->kill, exec_kill_fired, exec_grace_ms, 0);
		}
	}
}

static const handler builtin_handlers[] = {
	{ "noop", HANDLER_LOOP, noop_start, NULL },
	{ "sleep", HANDLER_LOOP, sleep_start, sleep_cancel },
	{ "fail", HANDLER_LOOP, fail_start, NULL },
	{ "block", HANDLER_POOL, block_start, NULL },
	{ "exec", HANDLER_LOOP, exec_start, exec_cancel },
};

#define NHANDLERS (sizeof(builtin_handlers) / sizeof(builtin_handlers[0]))

const handler *
handlers_find(const char *name, size_t len)
{
	for (size_t i = 0; i < NHANDLERS; i++) {
		if (strlen(builtin_handlers[i].name) == len &&
		    memcmp(builtin_handlers[i].name, name, len) == 0) {
			return (&builtin_handlers[i]);
		}
	}
	return (NULL);
}

size_t
handlers_count(void)
{
	return (NHANDLERS);
}

const handler *
handlers_get(size_t i)
{
	return (i < NHANDLERS ? &builtin_handlers[i] : NULL);
}
