// handlers/registry.c: the handler registry, and the run calls: the
// broker's (run_*) and the handler ABI's (tb_run_*, taskbroker/handler.h).
//
// DESIGN. The registry is an array of handler definitions, filled at
// start (handlers_init registers the built-ins, then sqlite, http and the
// plugins register theirs) and read afterwards. An attempt of a LOOP
// handler may end from another thread (the sqlite writer, an nng
// callback): tb_run_finish then links the run onto finish_q and wakes the
// loop through finish_async, whose callback calls run_finish for each, so
// the run's done function always runs on the loop thread. handlers_stop
// closes that handle at shutdown; a run finished afterwards is dropped
// and its task runs again after the next start.
//
// Threads: loop thread, except tb_run_finish and tb_run_cancelled (any
// thread) and the accessors and outcome setters, which the thread running
// the attempt calls (a worker thread for a POOL handler).
// Lock order: finish_mtx protects finish_open and finish_q; a leaf lock,
// held across uv_async_send (which is thread-safe) and uv_close in
// handlers_stop only, so a late tb_run_finish never signals a closed
// handle.
// Ownership: the registry owns a copy of each name; the rest of a
// definition is the registrant's. A queued run stays the loop's; finish_q
// only links it through its unused pool link.

#include "handlers/handlers.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <taskbroker/defs.h>

#include "handlers/builtin.h"
#include "handlers/exec.h"
#include "log.h"

void
run_set_result(run *r, const void *buf, size_t len)
{
	free(r->result);
	r->result     = NULL;
	r->result_len = 0;
	r->failed     = false;
	if (len > HANDLER_RESULT_MAX) {
		// Cutting msgpack bytes would leave them undecodable: the
		// attempt fails instead, saying why.
		run_set_error(r,
		    "result of %zu bytes is over the %u-byte limit", len,
		    HANDLER_RESULT_MAX);
		r->no_retry = true;
		return;
	}
	if (len > 0 && (r->result = malloc(len)) != NULL) {
		memcpy(r->result, buf, len);
		r->result_len = len;
	}
}

// run_set_errorv is run_set_error with a va_list; tb_run_set_error, the
// plugins' name for it, shares it.
static void run_set_errorv(run *r, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
run_set_errorv(run *r, const char *fmt, va_list ap)
{
	char *e;

	r->failed = true;
	if ((e = malloc(HANDLER_ERROR_MAX)) == NULL) {
		return; // the failure stands; only its text is lost
	}
	vsnprintf(e, HANDLER_ERROR_MAX, fmt, ap);
	free(r->error);
	r->error = e;
}

void
run_set_error(run *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	run_set_errorv(r, fmt, ap);
	va_end(ap);
}

void
run_finish(run *r)
{
	r->finished = true;
	r->done(r);
}

// Attempts finished from other threads (tb_run_finish) come back to the
// loop through one async handle. finish_mtx is a leaf lock.
static uv_async_t      finish_async;
static bool            finish_open;
static pthread_t       loop_thread;
static pthread_mutex_t finish_mtx = PTHREAD_MUTEX_INITIALIZER; // finish_q
static run            *finish_q;

static void
finish_async_cb(uv_async_t *a)
{
	run *r;

	(void) a;
	pthread_mutex_lock(&finish_mtx);
	r        = finish_q;
	finish_q = NULL;
	pthread_mutex_unlock(&finish_mtx);
	while (r != NULL) {
		run *next = (run *) r->job.next;
		run_finish(r);
		r = next;
	}
}

void
tb_run_finish(tb_run *r)
{
	if (pthread_equal(pthread_self(), loop_thread)) {
		run_finish(r);
		return;
	}
	pthread_mutex_lock(&finish_mtx);
	if (!finish_open) {
		// The broker is exiting; the attempt is abandoned and the
		// task runs again after the next start.
		pthread_mutex_unlock(&finish_mtx);
		return;
	}
	// A loop run does not use its pool link: it carries the queue.
	r->job.next = (pool_job *) finish_q;
	finish_q    = r;
	// Sent under the lock: handlers_stop closes the handle under it too,
	// so a late caller can never signal a closed handle.
	uv_async_send(&finish_async);
	pthread_mutex_unlock(&finish_mtx);
}

uint64_t
tb_run_task_id(const tb_run *r)
{
	return (r->task_id);
}

const char *
tb_run_queue(const tb_run *r)
{
	return (r->queue != NULL ? r->queue : "");
}

const char *
tb_run_handler(const tb_run *r)
{
	return (r->h != NULL && r->h->name != NULL ? r->h->name : "");
}

uint32_t
tb_run_attempt(const tb_run *r)
{
	return (r->attempt);
}

const void *
tb_run_payload(const tb_run *r, size_t *lenp)
{
	if (lenp != NULL) {
		*lenp = r->payload_len;
	}
	return (r->payload);
}

void *
tb_run_loop(tb_run *r)
{
	return (r->loop);
}

uint32_t
tb_run_timeout_ms(const tb_run *r)
{
	return (r->timeout_ms);
}

int
tb_run_set_result(tb_run *r, const void *msgpack, size_t len)
{
	run_set_result(r, msgpack, len);
	return (len > 0 && r->result == NULL ? -1 : 0);
}

void
tb_run_set_error(tb_run *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	run_set_errorv(r, fmt, ap);
	va_end(ap);
}

// The per-attempt pointer is the run's hdata, which the built-ins use for
// the same purpose.
void
tb_run_set_data(tb_run *r, void *data)
{
	r->hdata = data;
}

void *
tb_run_data(const tb_run *r)
{
	return (r->hdata);
}

void
tb_run_set_no_retry(tb_run *r)
{
	r->no_retry = true;
}

int
tb_run_cancelled(const tb_run *r)
{
	return (atomic_load(&((tb_run *) r)->cancelled) ? 1 : 0);
}

int
tb_plugin_abi(void)
{
	return (TB_HANDLER_ABI);
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

// The registry: the built-ins, then the sqlite and http handlers, then
// the plugins' (loop.c calls their inits in that order, so a plugin cannot
// take a built-in's name). Written at start only, then read by the loop
// thread.
static handler *registry;
static size_t   nregistry;

int
handlers_register(const tb_handler_def *def)
{
	handler *nr;
	size_t   len;

	if (def == NULL || def->name == NULL || def->run == NULL ||
	    (def->mode != TB_HANDLER_LOOP && def->mode != TB_HANDLER_POOL) ||
	    (len = strlen(def->name)) == 0 || len > 128) {
		return (TB_EINVAL);
	}
	if (handlers_find(def->name, len) != NULL) {
		return (TB_EBUSY);
	}
	if ((nr = realloc(registry, (nregistry + 1) * sizeof(*nr))) == NULL) {
		return (TB_ENOMEM);
	}
	registry      = nr;
	nr[nregistry] = *def;
	if ((nr[nregistry].name = strdup(def->name)) == NULL) {
		return (TB_ENOMEM);
	}
	nregistry++;
	return (TB_OK);
}

int
handlers_init(uv_loop_t *loop, const config *cfg)
{
	int rv;

	// exec's settings first: a bad --exec-allow stops the start before
	// anything is opened.
	if ((rv = exec_handler_init(cfg)) != TB_OK) {
		return (rv);
	}
	loop_thread = pthread_self();
	if ((rv = uv_async_init(loop, &finish_async, finish_async_cb)) != 0) {
		log_err("handlers: async init: %s", uv_strerror(rv));
		return (TB_ESYSTEM);
	}
	pthread_mutex_lock(&finish_mtx);
	finish_open = true;
	pthread_mutex_unlock(&finish_mtx);
	return (builtin_register());
}

void
handlers_stop(void)
{
	pthread_mutex_lock(&finish_mtx);
	if (finish_open) {
		finish_open = false;
		uv_close((uv_handle_t *) &finish_async, NULL);
	}
	finish_q = NULL;
	pthread_mutex_unlock(&finish_mtx);
}

void
handlers_fini(void)
{
	exec_handler_fini();
	for (size_t i = 0; i < nregistry; i++) {
		free((char *) registry[i].name);
	}
	free(registry);
	registry  = NULL;
	nregistry = 0;
}

const handler *
handlers_find(const char *name, size_t len)
{
	for (size_t i = 0; i < nregistry; i++) {
		if (strlen(registry[i].name) == len &&
		    memcmp(registry[i].name, name, len) == 0) {
			return (&registry[i]);
		}
	}
	return (NULL);
}
