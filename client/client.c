// client.c: the request side of libtaskbroker (tb_client and tb_task) and
// the small stateless helpers (errors, states, default urls).
//
// DESIGN. A tb_client holds one nng req0 socket, opened lazily by the first
// request in the process that opened the client, because nng is not
// fork-safe: any nng call in a forked child aborts. The pid of the opening
// process is recorded once in tb_client_open and every call compares it
// with getpid() before it touches nng; a mismatch is TB_EFORK (and
// tb_client_close then only frees memory).
//
// The first use dials synchronously, so a broker that is not there is
// reported at once as TB_EUNREACHABLE; the socket is then closed again and
// the next call retries. After one successful dial nng reconnects by
// itself, and req0 resends a pending request after a reconnect (the broker
// deduplicates submissions by their submission id).
//
// Each call opens its own nng context on the shared socket, so many threads
// can have requests in flight at once. nng 1.5.2 has no synchronous
// nng_ctx_sendmsg/nng_ctx_recvmsg, so a call drives an aio of its own with
// an explicit timeout and waits on it.
//
// tb_client_close may run while calls are in flight in other threads: it
// marks the client closing, closes the socket (their aios then end with
// NNG_ECLOSED, which they return as TB_ECLOSED) and waits until the last of
// them has let go of the client before it frees it.
//
// The asynchronous requests (async.c) make the same exchange with an aio
// callback instead of nng_aio_wait, through the same pieces (tbc_call_*,
// the submit and task encoders and decoders below). tb_client_close ends
// them first (TB_ECLOSED) while the socket is open, and leaves the
// client's memory to the last op the caller still holds.
////
// Threads: any thread, on one tb_client at once.
// Ownership: every tb_task and list the library returns is the caller's,
// with a matching free.

// Lock order: only one lock, tb_client.mtx. No nng call that waits for
// another thread's progress is made while it is held, except the first dial
// (which does not depend on other calls).

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#include <taskbroker.h>

#include "client_impl.h"
#include "tbp.h"

// A reply carries up to TBP_MAX_LIST tasks. Reconnect fast so that a
// restarted broker is found at once, and leave resending to nng's
// resend-on-reconnect rather than to a timer.
#define CLIENT_DEFAULT_TIMEOUT_MS 10000
#define CLIENT_RECVMAXSZ (64u << 20)
#define CLIENT_RECONNMINT_MS 10
// A first dial that is refused is tried again for this long (see
// client_dial_locked) before the broker is reported unreachable.
#define CLIENT_DIAL_RETRY_MS 250
#define CLIENT_RECONNMAXT_MS 1000
#define CLIENT_RESENDTIME_MS 60000
#define CLIENT_RESEND_MS 2000      // per request; see client_call_run
#define CLIENT_WAIT_MAX_MS 3600000 // tb_wait with timeout < 0
// A request that finds no connection waits for one in slices of
// CLIENT_SEND_SLICE_MS; after each, a dialer with no connection is
// replaced, at most once per TBC_REDIAL_MS (see client_redial).
#define CLIENT_SEND_SLICE_MS 500

struct tb_client {
	pid_t    pid; // the process that opened the client; never changes
	char    *url;
	tbc_conn conn; // token and TLS settings; read-only after open

	pthread_mutex_t mtx;  // protects sock, open, closing, busy
	pthread_cond_t  idle; // signalled when busy drops to 0 while closing
	nng_socket      sock;
	tbc_redialer    redial;  // sock's one dialer
	bool            open;    // sock is open and dialled
	bool            closing; // tb_client_close has started
	unsigned        busy;    // calls currently using sock

	atomic_int           timeout_ms;
	atomic_uint_fast64_t next_req_id;

	tbc_async *async; // the asynchronous requests (async.c)
};

struct tb_task {
	tb_id    id;
	int      state;
	uint32_t attempts;
	uint32_t max_attempts;
	uint32_t crashes;
	uint32_t max_crashes;
	int32_t  priority;
	int64_t  created_at;
	int64_t  started_at;
	int64_t  finished_at;
	char    *queue;
	char    *handler;
	char    *error;  // NULL: none
	uint8_t *result; // NULL: none
	size_t   result_len;
	int64_t  run_at;
	uint32_t timeout_ms;
	int      forever;
	char    *key; // NULL: none
};

// ---- errors, states, urls -------------------------------------------------

const char *
tb_strerror(int code)
{
	return (tbp_err_message(code));
}

const char *
tb_errname(int code)
{
	return (tbp_err_name(code));
}

// Error codes are dense and only ever appended, so a status at or above
// NERRS is one this library does not know.
#define TB_ERR_VAL_(c, v, n, m) v,
static const int err_values[] = { TB_ERRORS(TB_ERR_VAL_) };
#undef TB_ERR_VAL_
#define NERRS ((int) (sizeof(err_values) / sizeof(err_values[0])))

// The state names and the nng error map are proto's (tbp_state_*,
// tbp_nng_err), shared with the broker.
const char *
tb_state_name(int state)
{
	return (tbp_state_name(state));
}

int
tb_state_parse(const char *name, int *statep)
{
	return (tbp_state_parse(name, statep));
}

int
tb_state_is_final(int state)
{
	return (tbp_state_final(state) ? 1 : 0);
}

static const char *
env_or(const char *name, const char *dflt)
{
	const char *v = getenv(name);

	return ((v != NULL && v[0] != '\0') ? v : dflt);
}

const char *
tb_default_url(void)
{
	return (env_or("TASKBROKER_URL", TB_DEFAULT_URL));
}

const char *
tb_default_events_url(void)
{
	return (env_or("TASKBROKER_EVENTS_URL", TB_DEFAULT_EVENTS_URL));
}

bool
tbc_url_ok(const char *url)
{
	const char *sep;

	if (url == NULL || (sep = strstr(url, "://")) == NULL) {
		return (false);
	}
	return (sep != url && sep[3] != '\0');
}

// ---- the client -----------------------------------------------------------

int
tb_client_open(tb_client **cp, const char *url)
{
	return (tb_client_open_opts(cp, url, NULL));
}

int
tb_client_open_opts(tb_client **cp, const char *url, const tb_conn_opts *opts)
{
	tb_client *c;
	int        rv;

	if (cp == NULL) {
		return (TB_EINVAL);
	}
	if (url == NULL) {
		url = tb_default_url();
	}
	if (!tbc_url_ok(url)) {
		return (TB_EINVAL);
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		return (TB_ENOMEM);
	}
	if ((c->url = strdup(url)) == NULL) {
		free(c);
		return (TB_ENOMEM);
	}
	if ((rv = tbc_conn_init(&c->conn, opts)) != TB_OK) {
		free(c->url);
		free(c);
		return (rv);
	}
	if ((rv = tbc_async_alloc(&c->async, c)) != TB_OK) {
		tbc_conn_fini(&c->conn);
		free(c->url);
		free(c);
		return (rv);
	}
	pthread_mutex_init(&c->mtx, NULL);
	pthread_cond_init(&c->idle, NULL);
	c->pid = getpid();
	atomic_init(&c->timeout_ms, CLIENT_DEFAULT_TIMEOUT_MS);
	atomic_init(&c->next_req_id, 1);
	*cp = c;
	return (TB_OK);
}

void
tb_client_close(tb_client *c)
{
	bool was_open;

	if (c == NULL) {
		return;
	}
	if (getpid() != c->pid) {
		// A forked child: the socket belongs to the parent and any nng
		// call here would abort. Free our memory only.
		tbc_async_free(c->async);
		tbc_conn_fini(&c->conn);
		free(c->url);
		free(c);
		return;
	}
	// First the asynchronous ops: each in flight completes with
	// TB_ECLOSED while the socket is still there to abort it on.
	tbc_async_shutdown(c->async);

	pthread_mutex_lock(&c->mtx);
	c->closing = true;
	was_open   = c->open;
	c->open    = false;
	pthread_mutex_unlock(&c->mtx);

	// Closing the socket makes the aios of calls in flight end with
	// NNG_ECLOSED; they then release the client.
	if (was_open) {
		tbc_close_socket(c->sock);
	}

	pthread_mutex_lock(&c->mtx);
	while (c->busy > 0) {
		pthread_cond_wait(&c->idle, &c->mtx);
	}
	pthread_mutex_unlock(&c->mtx);

	// Ops the caller still holds keep the client's memory until the
	// last of them is freed (tb_op_free).
	if (tbc_async_fini(c->async)) {
		tbc_client_free(c);
	}
}

void
tbc_client_free(tb_client *c)
{
	pthread_cond_destroy(&c->idle);
	pthread_mutex_destroy(&c->mtx);
	tbc_async_free(c->async);
	tbc_conn_fini(&c->conn);
	free(c->url);
	free(c);
}

tbc_async *
tbc_client_async(tb_client *c)
{
	return (c->async);
}

bool
tbc_client_forked(const tb_client *c)
{
	return (getpid() != c->pid);
}

int
tb_client_set_timeout(tb_client *c, int ms)
{
	if (c == NULL || ms <= 0) {
		return (TB_EINVAL);
	}
	atomic_store(&c->timeout_ms, ms);
	return (TB_OK);
}

// client_dial_locked opens and dials the socket. Called with c->mtx held.
static int
client_dial_locked(tb_client *c)
{
	nng_socket s;
	int        rv;

	if ((rv = nng_req0_open(&s)) != 0) {
		return (tbp_nng_err(rv, TBP_NNG_CLIENT));
	}
	// Option failures are not fatal for correctness, but they mean
	// something is badly wrong with nng, so report them.
	if ((rv = nng_socket_set_size(
	         s, NNG_OPT_RECVMAXSZ, CLIENT_RECVMAXSZ)) != 0 ||
	    (rv = nng_socket_set_ms(
	         s, NNG_OPT_RECONNMINT, CLIENT_RECONNMINT_MS)) != 0 ||
	    (rv = nng_socket_set_ms(
	         s, NNG_OPT_RECONNMAXT, CLIENT_RECONNMAXT_MS)) != 0 ||
	    (rv = nng_socket_set_ms(
	         s, NNG_OPT_REQ_RESENDTIME, CLIENT_RESENDTIME_MS)) != 0) {
		tbc_close_socket(s);
		return (tbp_nng_err(rv, TBP_NNG_CLIENT));
	}
	// Flags 0: dial synchronously, so that a missing broker is reported
	// now instead of every request timing out. An unreachable broker is
	// tried again for CLIENT_DIAL_RETRY_MS: a broker that is starting,
	// or replacing a listener (broker/guard.h), has no listener for a
	// moment, and that must not fail the request.
	for (int wait_ms = 1, waited = 0;; waited += wait_ms, wait_ms *= 2) {
		if ((rv = tbc_dial(s, c->url, &c->conn, 0,
		         &c->redial.dialer)) == TB_OK) {
			break;
		}
		// TB_ECLOSED: the connection was closed during its handshake.
		if ((rv != TB_EUNREACHABLE && rv != TB_ECLOSED) ||
		    waited >= CLIENT_DIAL_RETRY_MS) {
			tbc_close_socket(s);
			return (rv);
		}
		nng_msleep((nng_duration) wait_ms);
	}
	c->sock        = s;
	c->redial.last = tbc_now_ms();
	c->open        = true;
	return (TB_OK);
}

// client_redial replaces c's dialer if it has stopped (tbc_redial).
static void
client_redial(tb_client *c)
{
	pthread_mutex_lock(&c->mtx);
	if (c->open && !c->closing) {
		tbc_redial(&c->redial, c->sock, c->url, &c->conn);
	}
	pthread_mutex_unlock(&c->mtx);
}

int
tbc_acquire(tb_client *c, nng_socket *sp)
{
	int rv = TB_OK;

	if (c == NULL) {
		return (TB_EINVAL);
	}
	if (getpid() != c->pid) {
		return (TB_EFORK);
	}
	pthread_mutex_lock(&c->mtx);
	if (c->closing) {
		rv = TB_ECLOSED;
	} else if (!c->open) {
		rv = client_dial_locked(c);
	}
	if (rv == TB_OK) {
		*sp = c->sock;
		c->busy++;
	}
	pthread_mutex_unlock(&c->mtx);
	return (rv);
}

void
tbc_release(tb_client *c)
{
	pthread_mutex_lock(&c->mtx);
	if (--c->busy == 0 && c->closing) {
		pthread_cond_broadcast(&c->idle);
	}
	pthread_mutex_unlock(&c->mtx);
}

int64_t
tbc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

nng_duration
tbc_clamp_ms(int64_t ms)
{
	if (ms < 1) {
		return (1);
	}
	if (ms > INT32_MAX) {
		return (INT32_MAX);
	}
	return ((nng_duration) ms);
}

void
tbc_call_fini(tbc_call *call)
{
	if (call->decoded) {
		tbp_rep_fini(&call->rep);
		call->decoded = false;
	}
	if (call->msg != NULL) {
		nng_msg_free(call->msg);
		call->msg = NULL;
	}
}

static uint64_t
client_next_req_id(tb_client *c)
{
	return (atomic_fetch_add(&c->next_req_id, 1));
}

int64_t
tbc_timeout(tb_client *c)
{
	return (atomic_load(&c->timeout_ms));
}

int
tbc_call_msg(tb_client *c, msgpack_sbuffer *b, nng_msg **msgp)
{
	nng_msg *msg;
	int      rv;

	if (c->conn.token != NULL) {
		tbp_bytes tok = { (const uint8_t *) c->conn.token,
			(uint32_t) c->conn.token_len };
		if ((rv = tbp_req_add_token(b, 0, tok)) != TB_OK) {
			return (rv);
		}
	}
	if ((rv = nng_msg_alloc(&msg, 0)) != 0) {
		return (tbp_nng_err(rv, TBP_NNG_CLIENT));
	}
	if ((rv = nng_msg_append(msg, b->data, b->size)) != 0) {
		nng_msg_free(msg);
		return (tbp_nng_err(rv, TBP_NNG_CLIENT));
	}
	*msgp = msg;
	return (TB_OK);
}

void
tbc_call_resend(tb_client *c, nng_ctx ctx, int64_t timeout)
{
	// A request can be lost with its connection (a broker killed just
	// as it was sent); nng resends it after reconnecting, and also after
	// this long without a reply. Resending is safe: submits carry their
	// submission ids and the other ops can be repeated. A wait may last
	// its whole timeout before the broker answers, so it is resent only
	// after that.
	int64_t extra  = timeout - tbc_timeout(c);
	int64_t resend = CLIENT_RESEND_MS + (extra > 0 ? extra : 0);

	(void) nng_ctx_set_ms(
	    ctx, NNG_OPT_REQ_RESENDTIME, tbc_clamp_ms(resend));
}

int
tbc_call_decode(tbc_call *call, nng_msg *msg, uint32_t op, uint64_t req_id)
{
	int rv;

	call->msg     = msg;
	call->decoded = true;
	if (tbp_rep_decode(&call->rep, nng_msg_body(msg), nng_msg_len(msg)) !=
	        TB_OK ||
	    call->rep.req_id != req_id || call->rep.op != op) {
		return (TB_EPROTO);
	}
	rv = call->rep.status;
	if (rv < 0 || rv >= NERRS) {
		rv = TB_EPROTO; // a status this library does not know
	}
	return (rv);
}

// client_call_run sends the encoded request in b (adding the client's
// token to it first, if it has one) and waits up to timeout milliseconds
// in all for the reply, which it decodes into call. Returns
// TB_OK only if the broker answered with status ok; with a broker error,
// call->rep still holds the decoded reply. tbc_call_fini(call) must be
// called afterwards whatever the result. async.c makes the same exchange
// with a callback on the aio instead of nng_aio_wait.
static int
client_call_run(tb_client *c, msgpack_sbuffer *b, uint32_t op, uint64_t req_id,
    int64_t timeout, tbc_call *call)
{
	nng_socket sock;
	nng_ctx    ctx;
	nng_aio   *aio      = NULL;
	nng_msg   *msg      = NULL;
	bool       have_ctx = false;
	int64_t    deadline;
	int        rv;

	memset(call, 0, sizeof(*call));
	if ((rv = tbc_acquire(c, &sock)) != TB_OK) {
		return (rv);
	}
	deadline = tbc_now_ms() + timeout;
	if ((rv = tbc_call_msg(c, b, &msg)) != TB_OK) {
		goto out;
	}
	if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0 ||
	    (rv = nng_ctx_open(&ctx, sock)) != 0) {
		rv = tbp_nng_err(rv, TBP_NNG_CLIENT);
		goto out;
	}
	have_ctx = true;
	tbc_call_resend(c, ctx, timeout);

	// req0 completes the send once the request is handed to a pipe, so
	// with no broker connected this is where the time goes: in slices,
	// replacing a dialer that has stopped (client_redial) after each.
	for (;;) {
		int64_t left = deadline - tbc_now_ms();

		nng_aio_set_timeout(aio,
		    tbc_clamp_ms(left < CLIENT_SEND_SLICE_MS
		            ? left
		            : CLIENT_SEND_SLICE_MS));
		nng_aio_set_msg(aio, msg);
		nng_ctx_send(ctx, aio);
		nng_aio_wait(aio);
		if ((rv = nng_aio_result(aio)) == 0) {
			break;
		}
		// msg is still ours: sent again, or freed below.
		if (rv != NNG_ETIMEDOUT || tbc_now_ms() >= deadline) {
			rv = tbp_nng_err(rv, TBP_NNG_CLIENT);
			goto out;
		}
		client_redial(c);
	}
	msg = NULL; // nng owns the request from here

	nng_aio_set_timeout(aio, tbc_clamp_ms(deadline - tbc_now_ms()));
	nng_ctx_recv(ctx, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0) {
		rv = tbp_nng_err(rv, TBP_NNG_CLIENT);
		goto out;
	}
	rv = tbc_call_decode(call, nng_aio_get_msg(aio), op, req_id);
out:
	if (aio != NULL) {
		nng_aio_free(aio);
	}
	if (have_ctx) {
		nng_ctx_close(ctx);
	}
	if (msg != NULL) {
		nng_msg_free(msg);
	}
	tbc_release(c);
	return (rv);
}

// fill_random writes n random bytes: getrandom(2), else /dev/urandom.
static int
fill_random(uint8_t *p, size_t n)
{
	size_t  got = 0;
	ssize_t k;
	int     fd;

	while (got < n) {
		k = getrandom(p + got, n - got, 0);
		if (k < 0 && errno == EINTR) {
			continue;
		}
		if (k <= 0) {
			break;
		}
		got += (size_t) k;
	}
	if (got == n) {
		return (TB_OK);
	}
	if ((fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)) < 0) {
		return (TB_ESYSTEM);
	}
	while (got < n) {
		k = read(fd, p + got, n - got);
		if (k < 0 && errno == EINTR) {
			continue;
		}
		if (k <= 0) {
			close(fd);
			return (TB_ESYSTEM);
		}
		got += (size_t) k;
	}
	close(fd);
	return (TB_OK);
}

// ---- tasks ----------------------------------------------------------------

static int
task_copy(tb_task **tp, const tbp_task_info *in)
{
	tb_task *t;

	if ((t = calloc(1, sizeof(*t))) == NULL) {
		return (TB_ENOMEM);
	}
	t->id           = in->id;
	t->state        = (int) in->state;
	t->attempts     = in->attempts;
	t->max_attempts = in->max_attempts;
	t->crashes      = in->crashes;
	t->max_crashes  = in->max_crashes;
	t->priority     = in->priority;
	t->created_at   = in->created_at;
	t->started_at   = in->started_at;
	t->finished_at  = in->finished_at;
	t->run_at       = in->run_at;
	t->timeout_ms   = in->timeout_ms;
	t->forever      = in->forever ? 1 : 0;
	if ((t->queue = tbp_bytes_dup(in->queue)) == NULL ||
	    (t->handler = tbp_bytes_dup(in->handler)) == NULL) {
		goto fail;
	}
	if (in->error.n > 0 && (t->error = tbp_bytes_dup(in->error)) == NULL) {
		goto fail;
	}
	if (in->key.n > 0 && (t->key = tbp_bytes_dup(in->key)) == NULL) {
		goto fail;
	}
	if (in->result.n > 0) {
		if ((t->result = malloc(in->result.n)) == NULL) {
			goto fail;
		}
		memcpy(t->result, in->result.p, in->result.n);
		t->result_len = in->result.n;
	}
	*tp = t;
	return (TB_OK);
fail:
	tb_task_free(t);
	return (TB_ENOMEM);
}

void
tb_task_free(tb_task *t)
{
	if (t == NULL) {
		return;
	}
	free(t->queue);
	free(t->handler);
	free(t->error);
	free(t->result);
	free(t->key);
	free(t);
}

void
tb_task_list_free(tb_task **tasks, size_t n)
{
	if (tasks == NULL) {
		return;
	}
	for (size_t i = 0; i < n; i++) {
		tb_task_free(tasks[i]);
	}
	free(tasks);
}

tb_id
tb_task_id(const tb_task *t)
{
	return (t->id);
}

int
tb_task_state(const tb_task *t)
{
	return (t->state);
}

uint32_t
tb_task_attempts(const tb_task *t)
{
	return (t->attempts);
}

uint32_t
tb_task_max_attempts(const tb_task *t)
{
	return (t->max_attempts);
}

uint32_t
tb_task_crashes(const tb_task *t)
{
	return (t->crashes);
}

uint32_t
tb_task_max_crashes(const tb_task *t)
{
	return (t->max_crashes);
}

int32_t
tb_task_priority(const tb_task *t)
{
	return (t->priority);
}

const char *
tb_task_queue(const tb_task *t)
{
	return (t->queue);
}

const char *
tb_task_handler(const tb_task *t)
{
	return (t->handler);
}

const void *
tb_task_result(const tb_task *t, size_t *lenp)
{
	if (lenp != NULL) {
		*lenp = t->result_len;
	}
	return (t->result);
}

const char *
tb_task_error(const tb_task *t)
{
	return (t->error);
}

int64_t
tb_task_created_at(const tb_task *t)
{
	return (t->created_at);
}

int64_t
tb_task_started_at(const tb_task *t)
{
	return (t->started_at);
}

int64_t
tb_task_finished_at(const tb_task *t)
{
	return (t->finished_at);
}

int64_t
tb_task_run_at(const tb_task *t)
{
	return (t->run_at);
}

uint32_t
tb_task_timeout_ms(const tb_task *t)
{
	return (t->timeout_ms);
}

int
tb_task_forever(const tb_task *t)
{
	return (t->forever);
}

const char *
tb_task_key(const tb_task *t)
{
	return (t->key);
}

// ---- requests -------------------------------------------------------------

int
tb_submit(tb_client *c, const char *handler, const void *payload,
    size_t payload_len, const tb_submit_opts *opts, tb_id *idp)
{
	tb_task_spec spec;

	spec.handler     = handler;
	spec.payload     = payload;
	spec.payload_len = payload_len;
	spec.opts        = opts;
	return (tb_submit_batch(c, &spec, 1, idp));
}

int
tb_submit_batch(tb_client *c, const tb_task_spec *specs, size_t n, tb_id *ids)
{
	return (tb_submit_batch_flags(c, specs, n, ids, NULL));
}

int
tbc_submit_encode(tb_client *c, const tb_task_spec *specs, size_t n,
    msgpack_sbuffer *b, uint64_t *req_idp)
{
	static const tb_submit_opts dflt = TB_SUBMIT_OPTS_INIT;
	tbp_task_in                *in   = NULL;
	uint8_t                    *sids = NULL;
	int                         rv;

	if (c == NULL || specs == NULL || n == 0 || n > TB_MAX_BATCH) {
		return (TB_EINVAL);
	}
	for (size_t i = 0; i < n; i++) {
		const tb_task_spec   *s = &specs[i];
		const tb_submit_opts *o = s->opts;

		if (s->handler == NULL || s->handler[0] == '\0' ||
		    (s->payload == NULL && s->payload_len > 0)) {
			return (TB_EINVAL);
		}
		if (o != NULL &&
		    (o->run_at < 0 || (o->key != NULL && o->key[0] == '\0'))) {
			return (TB_EINVAL);
		}
		if (o != NULL && o->key != NULL &&
		    strlen(o->key) > TBP_MAX_KEY) {
			return (TB_ETOOBIG);
		}
		if (s->payload_len > UINT32_MAX) {
			return (TB_ETOOBIG);
		}
	}
	if ((in = calloc(n, sizeof(*in))) == NULL ||
	    (sids = malloc(n * TB_SID_LEN)) == NULL) {
		rv = TB_ENOMEM;
		goto out;
	}
	// Each task gets its own submission id, so the broker can recognise a
	// copy resent after a reconnect task by task.
	if ((rv = fill_random(sids, n * TB_SID_LEN)) != TB_OK) {
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const tb_task_spec   *s = &specs[i];
		const tb_submit_opts *o = s->opts != NULL ? s->opts : &dflt;

		in[i].sid.p        = sids + i * TB_SID_LEN;
		in[i].sid.n        = TB_SID_LEN;
		in[i].handler      = tbp_str(s->handler);
		in[i].queue        = tbp_str(o->queue); // NULL: "default"
		in[i].payload.p    = s->payload_len > 0 ? s->payload : NULL;
		in[i].payload.n    = (uint32_t) s->payload_len;
		in[i].priority     = o->priority;
		in[i].max_attempts = o->max_attempts;
		in[i].timeout_ms   = o->timeout_ms;
		in[i].delay_ms     = o->delay_ms;
		in[i].run_at       = o->run_at;
		in[i].key          = tbp_str(o->key); // NULL: none
		in[i].forever      = o->forever != 0;
		in[i].max_crashes  = o->max_crashes;
	}
	*req_idp = client_next_req_id(c);
	rv       = tbp_enc_submit(b, *req_idp, in, (uint32_t) n);
out:
	free(sids);
	free(in);
	return (rv);
}

int
tbc_submit_decode(const tbp_rep *rep, size_t n, tb_id *ids, uint32_t *flags)
{
	if (rep->nids != n || rep->ids == NULL) {
		return (TB_EPROTO);
	}
	for (size_t i = 0; i < n; i++) {
		if (ids != NULL) {
			ids[i] = rep->ids[i];
		}
		if (flags != NULL) {
			// An older broker sends no "existing": all new.
			flags[i] = 0;
			if (rep->dup != NULL && rep->dup[i]) {
				flags[i] |= TB_SUBMIT_DUP;
			}
			if (rep->existing != NULL && rep->existing[i]) {
				flags[i] |= TB_SUBMIT_EXISTING;
			}
		}
	}
	return (TB_OK);
}

int
tb_submit_batch_flags(tb_client *c, const tb_task_spec *specs, size_t n,
    tb_id *ids, uint32_t *flags)
{
	msgpack_sbuffer b;
	tbc_call        call;
	uint64_t        req_id;
	int             rv;

	msgpack_sbuffer_init(&b);
	memset(&call, 0, sizeof(call));
	if ((rv = tbc_submit_encode(c, specs, n, &b, &req_id)) == TB_OK &&
	    (rv = client_call_run(c, &b, TBP_OP_SUBMIT, req_id, tbc_timeout(c),
	         &call)) == TB_OK) {
		rv = tbc_submit_decode(&call.rep, n, ids, flags);
	}
	tbc_call_fini(&call);
	msgpack_sbuffer_destroy(&b);
	return (rv);
}

int
tbc_task_encode(tb_client *c, uint32_t op, tb_id id, int64_t wait_ms,
    msgpack_sbuffer *b, uint64_t *req_idp, int64_t *timeoutp)
{
	*req_idp  = client_next_req_id(c);
	*timeoutp = tbc_timeout(c);
	if (op != TBP_OP_WAIT) {
		return (tbp_enc_req_id(b, op, *req_idp, id));
	}
	if (wait_ms < 0) {
		wait_ms = CLIENT_WAIT_MAX_MS;
	}
	*timeoutp += wait_ms;
	return (tbp_enc_wait(b, *req_idp, id, wait_ms));
}

int
tbc_task_decode(const tbp_rep *rep, uint32_t op, tb_task **tp)
{
	int rv = TB_OK;

	if (!rep->have_task) {
		return (TB_EPROTO);
	}
	if (tp != NULL && (rv = task_copy(tp, &rep->task)) != TB_OK) {
		return (rv);
	}
	if (op == TBP_OP_WAIT && rep->timed_out) {
		rv = TB_ETIMEDOUT; // *tp stays set: the caller frees it
	}
	return (rv);
}

// task_request runs status, cancel or wait and copies the reply's task to
// *tp (may be NULL), as tbc_task_decode does.
static int
task_request(
    tb_client *c, uint32_t op, tb_id id, int64_t wait_ms, tb_task **tp)
{
	msgpack_sbuffer b;
	tbc_call        call;
	uint64_t        req_id;
	int64_t         timeout;
	int             rv;

	msgpack_sbuffer_init(&b);
	memset(&call, 0, sizeof(call));
	if ((rv = tbc_task_encode(
	         c, op, id, wait_ms, &b, &req_id, &timeout)) == TB_OK &&
	    (rv = client_call_run(c, &b, op, req_id, timeout, &call)) ==
	        TB_OK) {
		rv = tbc_task_decode(&call.rep, op, tp);
	}
	tbc_call_fini(&call);
	msgpack_sbuffer_destroy(&b);
	return (rv);
}

int
tb_status(tb_client *c, tb_id id, tb_task **tp)
{
	if (c == NULL || tp == NULL) {
		return (TB_EINVAL);
	}
	*tp = NULL;
	return (task_request(c, TBP_OP_STATUS, id, 0, tp));
}

int
tb_wait(tb_client *c, tb_id id, int timeout_ms, tb_task **tp)
{
	if (c == NULL || tp == NULL) {
		return (TB_EINVAL);
	}
	*tp = NULL;
	return (task_request(c, TBP_OP_WAIT, id, timeout_ms, tp));
}

int
tb_cancel(tb_client *c, tb_id id, tb_task **tp)
{
	if (c == NULL) {
		return (TB_EINVAL);
	}
	if (tp != NULL) {
		*tp = NULL;
	}
	return (task_request(c, TBP_OP_CANCEL, id, 0, tp));
}

int
tb_list(tb_client *c, const tb_list_opts *opts, tb_task ***tasksp, size_t *np)
{
	static const tb_list_opts dflt = TB_LIST_OPTS_INIT;
	msgpack_sbuffer           b;
	tbc_call                  call;
	tb_task                 **tasks = NULL;
	size_t                    n     = 0;
	uint64_t                  req_id;
	int                       rv;

	if (c == NULL || tasksp == NULL || np == NULL) {
		return (TB_EINVAL);
	}
	if (opts == NULL) {
		opts = &dflt;
	}
	if (opts->limit > TBP_MAX_LIST || opts->state >= TBP_NSTATES) {
		return (TB_EINVAL);
	}
	msgpack_sbuffer_init(&b);
	memset(&call, 0, sizeof(call));
	req_id = client_next_req_id(c);
	if ((rv = tbp_enc_list(&b, req_id, opts->queue,
	         opts->state < 0 ? -1 : opts->state, opts->limit,
	         opts->after_id, opts->handler, opts->min_age_ms,
	         opts->max_age_ms)) != TB_OK) {
		goto out;
	}
	rv =
	    client_call_run(c, &b, TBP_OP_LIST, req_id, tbc_timeout(c), &call);
	if (rv != TB_OK) {
		goto out;
	}
	if (call.rep.ntasks > 0 && call.rep.tasks == NULL) {
		rv = TB_EPROTO;
		goto out;
	}
	// One extra slot so that an empty listing is still a valid array.
	if ((tasks = calloc((size_t) call.rep.ntasks + 1, sizeof(*tasks))) ==
	    NULL) {
		rv = TB_ENOMEM;
		goto out;
	}
	for (n = 0; n < call.rep.ntasks; n++) {
		if ((rv = task_copy(&tasks[n], &call.rep.tasks[n])) != TB_OK) {
			goto out;
		}
	}
	*tasksp = tasks;
	*np     = n;
	tasks   = NULL; // the caller owns the array from here
out:
	tb_task_list_free(tasks, n);
	tbc_call_fini(&call);
	msgpack_sbuffer_destroy(&b);
	return (rv);
}

// empty_request runs a request with an empty body (ping, stats, shutdown,
// schedule_list, queues); the caller reads call->rep and
// must tbc_call_fini(call) whatever the result.
static int
empty_request(tb_client *c, uint32_t op, tbc_call *call)
{
	msgpack_sbuffer b;
	uint64_t        req_id;
	int             rv;

	memset(call, 0, sizeof(*call));
	if (c == NULL) {
		return (TB_EINVAL);
	}
	msgpack_sbuffer_init(&b);
	req_id = client_next_req_id(c);
	if ((rv = tbp_enc_req_empty(&b, op, req_id)) == TB_OK) {
		rv = client_call_run(c, &b, op, req_id, tbc_timeout(c), call);
	}
	msgpack_sbuffer_destroy(&b);
	return (rv);
}

int
tb_stats_get(tb_client *c, tb_stats *st)
{
	tbc_call call;
	int      rv;

	if (st == NULL) {
		return (TB_EINVAL);
	}
	if ((rv = empty_request(c, TBP_OP_STATS, &call)) == TB_OK) {
		const tbp_stats *s = &call.rep.stats;

		memset(st, 0, sizeof(*st));
		st->pending   = s->pending;
		st->running   = s->running;
		st->done      = s->done;
		st->failed    = s->failed;
		st->dead      = s->dead;
		st->cancelled = s->cancelled;
		st->submitted = s->submitted;
		st->completed = s->completed;
		st->uptime_ms = s->uptime_ms;
		st->workers   = s->workers;
		st->pid       = s->pid;
		st->schedules = s->schedules;
		st->forever   = s->forever;
		st->crashloop = s->crashloop;
	}
	tbc_call_fini(&call);
	return (rv);
}

int
tb_ping(tb_client *c, char **versionp)
{
	tbc_call call;
	int      rv;

	if (versionp != NULL) {
		*versionp = NULL;
	}
	if ((rv = empty_request(c, TBP_OP_PING, &call)) == TB_OK &&
	    versionp != NULL) {
		if ((*versionp = tbp_bytes_dup(call.rep.version_str)) ==
		    NULL) {
			rv = TB_ENOMEM;
		}
	}
	tbc_call_fini(&call);
	return (rv);
}

int
tb_shutdown(tb_client *c)
{
	tbc_call call;
	int      rv;

	rv = empty_request(c, TBP_OP_SHUTDOWN, &call);
	tbc_call_fini(&call);
	return (rv);
}

// ---- the task lifecycle ---------------------------------------------------

// encoded_request runs the request encoded in b (by the caller, with
// req_id) and waits up to timeout for its reply; the caller reads call->rep
// and must tbc_call_fini(call) whatever the result. b is destroyed here.
static int
encoded_request(tb_client *c, msgpack_sbuffer *b, int enc_rv, uint32_t op,
    uint64_t req_id, int64_t timeout, tbc_call *call)
{
	int rv = enc_rv;

	memset(call, 0, sizeof(*call));
	if (rv == TB_OK) {
		rv = client_call_run(c, b, op, req_id, timeout, call);
	}
	msgpack_sbuffer_destroy(b);
	return (rv);
}

// count_request finishes a retry or purge: *countp (may be NULL) receives
// the reply's count.
static int
count_request(tb_client *c, msgpack_sbuffer *b, int enc_rv, uint32_t op,
    uint64_t req_id, uint64_t *countp)
{
	tbc_call call;
	int      rv;

	rv = encoded_request(c, b, enc_rv, op, req_id, tbc_timeout(c), &call);
	if (rv == TB_OK && countp != NULL) {
		*countp = call.rep.count;
	}
	tbc_call_fini(&call);
	return (rv);
}

int
tb_retry(tb_client *c, tb_id id)
{
	msgpack_sbuffer b;
	uint64_t        req_id;
	int             rv;

	if (c == NULL) {
		return (TB_EINVAL);
	}
	msgpack_sbuffer_init(&b);
	req_id = client_next_req_id(c);
	rv     = tbp_enc_retry(&b, req_id, true, id, NULL, -1);
	return (count_request(c, &b, rv, TBP_OP_RETRY, req_id, NULL));
}

int
tb_retry_queue(tb_client *c, const char *queue, int state, uint64_t *countp)
{
	msgpack_sbuffer b;
	uint64_t        req_id;
	int             rv;

	if (c == NULL ||
	    (state != -1 && state != TB_STATE_DEAD &&
	        state != TB_STATE_CANCELLED)) {
		return (TB_EINVAL);
	}
	msgpack_sbuffer_init(&b);
	req_id = client_next_req_id(c);
	rv     = tbp_enc_retry(&b, req_id, false, 0, queue, state);
	return (count_request(c, &b, rv, TBP_OP_RETRY, req_id, countp));
}

// queue_op runs pause or resume.
static int
queue_op(tb_client *c, uint32_t op, const char *queue)
{
	msgpack_sbuffer b;
	tbc_call        call;
	uint64_t        req_id;
	int             rv;

	if (c == NULL || queue == NULL || queue[0] == '\0') {
		return (TB_EINVAL);
	}
	msgpack_sbuffer_init(&b);
	req_id = client_next_req_id(c);
	rv     = tbp_enc_queue_op(&b, op, req_id, queue);
	rv     = encoded_request(c, &b, rv, op, req_id, tbc_timeout(c), &call);
	tbc_call_fini(&call);
	return (rv);
}

int
tb_pause(tb_client *c, const char *queue)
{
	return (queue_op(c, TBP_OP_PAUSE, queue));
}

int
tb_resume(tb_client *c, const char *queue)
{
	return (queue_op(c, TBP_OP_RESUME, queue));
}

int
tb_drain(tb_client *c, const char *queue, int timeout_ms)
{
	msgpack_sbuffer b;
	tbc_call        call;
	uint64_t        req_id;
	int             rv;

	if (c == NULL) {
		return (TB_EINVAL);
	}
	if (timeout_ms < 0) {
		timeout_ms = CLIENT_WAIT_MAX_MS;
	}
	msgpack_sbuffer_init(&b);
	req_id = client_next_req_id(c);
	rv     = tbp_enc_drain(&b, req_id, queue, timeout_ms);
	// The broker answers at its own deadline at the latest; give the
	// reply the usual time on top, as tb_wait does.
	rv = encoded_request(c, &b, rv, TBP_OP_DRAIN, req_id,
	    (int64_t) timeout_ms + tbc_timeout(c), &call);
	if (rv == TB_OK && call.rep.timed_out) {
		rv = TB_ETIMEDOUT;
	}
	tbc_call_fini(&call);
	return (rv);
}

int
tb_purge(tb_client *c, const char *queue, int state, uint64_t min_age_ms,
    uint64_t *countp)
{
	msgpack_sbuffer b;
	uint64_t        req_id;
	int             rv;

	if (c == NULL ||
	    (state != TB_STATE_PENDING && state != TB_STATE_DONE &&
	        state != TB_STATE_DEAD && state != TB_STATE_CANCELLED)) {
		return (TB_EINVAL);
	}
	msgpack_sbuffer_init(&b);
	req_id = client_next_req_id(c);
	rv     = tbp_enc_purge(&b, req_id, queue, state, min_age_ms);
	return (count_request(c, &b, rv, TBP_OP_PURGE, req_id, countp));
}

// ---- schedules and queues -------------------------------------------------

int
tb_schedule_add(tb_client *c, const tb_schedule_spec *spec)
{
	msgpack_sbuffer b;
	tbc_call        call;
	tbp_sched       s;
	uint64_t        req_id;
	bool            have_cron;
	int             rv;

	if (c == NULL || spec == NULL || spec->name == NULL ||
	    spec->name[0] == '\0' || spec->handler == NULL ||
	    spec->handler[0] == '\0' ||
	    (spec->payload == NULL && spec->payload_len > 0)) {
		return (TB_EINVAL);
	}
	have_cron = spec->cron != NULL && spec->cron[0] != '\0';
	if (have_cron == (spec->every_ms > 0)) {
		return (TB_EINVAL); // exactly one of the two
	}
	if (spec->payload_len > UINT32_MAX) {
		return (TB_ETOOBIG);
	}
	memset(&s, 0, sizeof(s));
	s.name         = tbp_str(spec->name);
	s.handler      = tbp_str(spec->handler);
	s.queue        = tbp_str(spec->queue); // NULL: "default"
	s.payload.p    = spec->payload_len > 0 ? spec->payload : NULL;
	s.payload.n    = (uint32_t) spec->payload_len;
	s.priority     = spec->priority;
	s.max_attempts = spec->max_attempts;
	s.timeout_ms   = spec->timeout_ms;
	s.every_ms     = spec->every_ms;
	s.cron         = tbp_str(have_cron ? spec->cron : NULL);
	s.catch_up     = spec->catch_up != 0;
	msgpack_sbuffer_init(&b);
	req_id = client_next_req_id(c);
	rv     = tbp_enc_sched_add(&b, req_id, &s);
	rv     = encoded_request(
	        c, &b, rv, TBP_OP_SCHED_ADD, req_id, tbc_timeout(c), &call);
	tbc_call_fini(&call);
	return (rv);
}

// sched_name_op runs schedule_rm or schedule_pause.
static int
sched_name_op(tb_client *c, uint32_t op, const char *name, bool paused)
{
	msgpack_sbuffer b;
	tbc_call        call;
	uint64_t        req_id;
	int             rv;

	if (c == NULL || name == NULL || name[0] == '\0') {
		return (TB_EINVAL);
	}
	msgpack_sbuffer_init(&b);
	req_id = client_next_req_id(c);
	rv     = tbp_enc_sched_name(&b, op, req_id, name, paused);
	rv     = encoded_request(c, &b, rv, op, req_id, tbc_timeout(c), &call);
	tbc_call_fini(&call);
	return (rv);
}

int
tb_schedule_rm(tb_client *c, const char *name)
{
	return (sched_name_op(c, TBP_OP_SCHED_RM, name, false));
}

int
tb_schedule_pause(tb_client *c, const char *name, int paused)
{
	return (sched_name_op(c, TBP_OP_SCHED_PAUSE, name, paused != 0));
}

void
tb_schedule_list_free(tb_schedule_info *list, size_t n)
{
	if (list == NULL) {
		return;
	}
	for (size_t i = 0; i < n; i++) {
		free(list[i].name);
		free(list[i].handler);
		free(list[i].queue);
		free(list[i].cron);
	}
	free(list);
}

static int
sched_copy(tb_schedule_info *out, const tbp_sched *in)
{
	out->every_ms     = in->every_ms;
	out->priority     = in->priority;
	out->max_attempts = in->max_attempts;
	out->timeout_ms   = in->timeout_ms;
	out->catch_up     = in->catch_up ? 1 : 0;
	out->paused       = in->paused ? 1 : 0;
	out->next_at      = in->next_at;
	out->last_at      = in->last_at;
	out->fired        = in->fired;
	out->last_task    = in->last_task;
	if ((out->name = tbp_bytes_dup(in->name)) == NULL ||
	    (out->handler = tbp_bytes_dup(in->handler)) == NULL ||
	    (out->queue = tbp_bytes_dup(in->queue)) == NULL) {
		return (TB_ENOMEM);
	}
	if (in->cron.n > 0 && (out->cron = tbp_bytes_dup(in->cron)) == NULL) {
		return (TB_ENOMEM);
	}
	return (TB_OK);
}

int
tb_schedule_list(tb_client *c, tb_schedule_info **listp, size_t *np)
{
	tbc_call          call;
	tb_schedule_info *list = NULL;
	size_t            n    = 0;
	int               rv;

	if (listp == NULL || np == NULL) {
		return (TB_EINVAL);
	}
	if ((rv = empty_request(c, TBP_OP_SCHED_LIST, &call)) != TB_OK) {
		goto out;
	}
	if (call.rep.nscheds > 0 && call.rep.scheds == NULL) {
		rv = TB_EPROTO;
		goto out;
	}
	// One extra slot so that an empty listing is still a valid array.
	if ((list = calloc((size_t) call.rep.nscheds + 1, sizeof(*list))) ==
	    NULL) {
		rv = TB_ENOMEM;
		goto out;
	}
	for (n = 0; n < call.rep.nscheds; n++) {
		// Count the entry before copying so a half copy is freed.
		if ((rv = sched_copy(&list[n], &call.rep.scheds[n])) !=
		    TB_OK) {
			n++;
			goto out;
		}
	}
	*listp = list;
	*np    = n;
	list   = NULL; // the caller owns the array from here
out:
	tb_schedule_list_free(list, n);
	tbc_call_fini(&call);
	return (rv);
}

void
tb_queues_free(tb_queue_info *list, size_t n)
{
	if (list == NULL) {
		return;
	}
	for (size_t i = 0; i < n; i++) {
		free(list[i].name);
	}
	free(list);
}

int
tb_queues(tb_client *c, tb_queue_info **listp, size_t *np)
{
	tbc_call       call;
	tb_queue_info *list = NULL;
	size_t         n    = 0;
	int            rv;

	if (listp == NULL || np == NULL) {
		return (TB_EINVAL);
	}
	if ((rv = empty_request(c, TBP_OP_QUEUES, &call)) != TB_OK) {
		goto out;
	}
	if (call.rep.nqueues > 0 && call.rep.queues == NULL) {
		rv = TB_EPROTO;
		goto out;
	}
	if ((list = calloc((size_t) call.rep.nqueues + 1, sizeof(*list))) ==
	    NULL) {
		rv = TB_ENOMEM;
		goto out;
	}
	for (n = 0; n < call.rep.nqueues; n++) {
		const tbp_qstat *q = &call.rep.queues[n];
		tb_queue_info   *o = &list[n];

		if ((o->name = tbp_bytes_dup(q->name)) == NULL) {
			rv = TB_ENOMEM;
			goto out;
		}
		o->pending           = q->pending;
		o->running           = q->running;
		o->failed            = q->failed;
		o->dead              = q->dead;
		o->done              = q->done;
		o->cancelled         = q->cancelled;
		o->paused            = q->paused ? 1 : 0;
		o->concurrency       = q->concurrency;
		o->max_pending       = q->max_pending;
		o->done_last_min     = q->done_last_min;
		o->oldest_pending_ms = q->oldest_pending_ms;
		o->forever           = q->forever;
		o->crashloop         = q->crashloop;
	}
	*listp = list;
	*np    = n;
	list   = NULL; // the caller owns the array from here
out:
	tb_queues_free(list, n);
	tbc_call_fini(&call);
	return (rv);
}

// ---- workers (the list; the worker side is worker.c) ----------------------

// join_names returns a malloc'd "a,b,c" of v[0..n), or NULL.
static char *
join_names(const tbp_bytes *v, uint32_t n)
{
	size_t len = 1;
	char  *s;
	char  *p;

	for (uint32_t i = 0; i < n; i++) {
		len += v[i].n + 1;
	}
	if ((s = malloc(len)) == NULL) {
		return (NULL);
	}
	p = s;
	for (uint32_t i = 0; i < n; i++) {
		if (i > 0) {
			*p++ = ',';
		}
		memcpy(p, v[i].p, v[i].n);
		p += v[i].n;
	}
	*p = '\0';
	return (s);
}

void
tb_workers_free(tb_worker_info *list, size_t n)
{
	if (list == NULL) {
		return;
	}
	for (size_t i = 0; i < n; i++) {
		free(list[i].host);
		free(list[i].name);
		free(list[i].handlers);
		free(list[i].queues);
	}
	free(list);
}

int
tb_workers(tb_client *c, tb_worker_info **listp, size_t *np)
{
	tbc_call        call;
	tb_worker_info *list = NULL;
	size_t          n    = 0;
	int             rv;

	if (listp == NULL || np == NULL) {
		return (TB_EINVAL);
	}
	if ((rv = empty_request(c, TBP_OP_WORKERS, &call)) != TB_OK) {
		goto out;
	}
	if ((list = calloc((size_t) call.rep.nworkers + 1, sizeof(*list))) ==
	    NULL) {
		rv = TB_ENOMEM;
		goto out;
	}
	for (n = 0; n < call.rep.nworkers; n++) {
		const tbp_winfo *w = &call.rep.workers[n];
		tb_worker_info  *o = &list[n];

		o->host     = tbp_bytes_dup(w->host);
		o->name     = tbp_bytes_dup(w->name);
		o->handlers = join_names(w->handlers, w->nhandlers);
		o->queues   = join_names(w->queues, w->nqueues);
		if (o->host == NULL || o->name == NULL ||
		    o->handlers == NULL || o->queues == NULL) {
			n++;
			rv = TB_ENOMEM;
			goto out;
		}
		o->id      = w->id;
		o->pid     = w->pid;
		o->slots   = w->slots;
		o->running = w->running;
		o->done    = w->done;
		o->since   = w->since;
	}
	*listp = list;
	*np    = n;
	list   = NULL;
out:
	tb_workers_free(list, n);
	tbc_call_fini(&call);
	return (rv);
}

void
tb_worker_handlers_free(tb_whandler_info *list, size_t n)
{
	if (list == NULL) {
		return;
	}
	for (size_t i = 0; i < n; i++) {
		free(list[i].name);
	}
	free(list);
}

int
tb_worker_handlers(tb_client *c, tb_whandler_info **listp, size_t *np)
{
	tbc_call          call;
	tb_whandler_info *list = NULL;
	size_t            n    = 0;
	int               rv;

	if (listp == NULL || np == NULL) {
		return (TB_EINVAL);
	}
	if ((rv = empty_request(c, TBP_OP_STATS, &call)) != TB_OK) {
		goto out;
	}
	if ((list = calloc((size_t) call.rep.nwhstats + 1, sizeof(*list))) ==
	    NULL) {
		rv = TB_ENOMEM;
		goto out;
	}
	for (n = 0; n < call.rep.nwhstats; n++) {
		const tbp_whstat *s = &call.rep.whstats[n];

		if ((list[n].name = tbp_bytes_dup(s->name)) == NULL) {
			rv = TB_ENOMEM;
			goto out;
		}
		list[n].workers = s->workers;
		list[n].waiting = s->waiting;
	}
	*listp = list;
	*np    = n;
	list   = NULL;
out:
	tb_worker_handlers_free(list, n);
	tbc_call_fini(&call);
	return (rv);
}
