// async.c: asynchronous requests on a tb_client (tb_op): submit, batch
// submit and wait without blocking the caller, completed through a
// callback or a completion queue with a readiness descriptor.
//
// DESIGN. An op is one request/reply exchange driven by an nng aio with a
// callback (async_cb) on an nng context of its own on the client's req0
// socket: the same exchange as client.c's client_call_run, whose pieces
// it shares (tbc_call_msg, tbc_call_resend, tbc_call_decode and the
// per-op encoders and decoders), with the two nng_aio_waits replaced by
// the two stages of the callback: send done -> start the receive; reply
// in -> decode and deliver. Timeouts, resends after a reconnection and
// the first dial are therefore those of the blocking calls.
//
// Ops (with their aio and context) are kept on a free list when their
// receiver frees them, up to ASYNC_FREE_MAX, so a steady stream of
// requests allocates no op, aio or context per call. The socket of a
// client never changes while it is open (client.c), so a cached context
// stays valid.
//
// Delivery: an op with a callback is handed to it (on the nng thread
// that completed it); one without is appended to the completion queue.
// The queue's eventfd holds a non-zero count exactly while the queue is
// not empty (written on the empty -> non-empty step, read back to zero
// when the last op is taken, both under the mutex), which makes it a
// level-triggered readiness descriptor.
//
// Close: tbc_async_shutdown marks the state closing (no op starts from
// then on), aborts every op in flight with NNG_ECLOSED under the mutex
// (an op between its two stages sees the flag when it takes the mutex,
// and ends instead of starting its receive), and waits until no op is in
// flight and no callback runs. Only then is the socket closed, so an op
// never depends on nng_close, which can hang in nng 1.5.2 (sockclose.c).
// Ops delivered to the caller may outlive the client: each holds the
// client's memory (nops), and the last tb_op_free after the close frees
// it (tbc_client_free).
//
// Threads: the starting calls, tb_client_next_completed and tb_op_free
// from any thread; async_cb on nng's threads.
// Lock order: tbc_async.mtx is a leaf: it is never held while the
// client's own mutex is taken (tbc_acquire is called before it), and no
// nng call that waits for another thread (nng_aio_free, nng_close) is made
// while it is held. nng calls made under it (nng_ctx_send, nng_ctx_recv,
// nng_aio_abort) never run our callback on the calling thread: nng
// dispatches completions to its task threads.
// Ownership: see taskbroker.h: an op is the library's until delivered,
// then its receiver's.

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <nng/nng.h>

#include <taskbroker.h>

#include "client_impl.h"
#include "tbp.h"

// ASYNC_FREE_MAX bounds the ops cached for reuse per client; a freed op
// beyond it is destroyed.
#define ASYNC_FREE_MAX 256
#define ASYNC_MAX_INFLIGHT_LIMIT 65536

struct tb_op {
	tb_client *c;
	tbc_async *as;
	pid_t      pid; // the process whose nng owns aio and ctx
	nng_aio   *aio;
	nng_ctx    ctx;

	// The request, set when the op starts.
	uint32_t op; // TBP_OP_SUBMIT or TBP_OP_WAIT
	uint64_t req_id;
	int64_t  deadline; // tbc_now_ms() by which the reply is due
	bool     recv;     // the send is done; the reply is awaited
	tb_op_cb cb;       // NULL: the completion queue
	void    *arg;

	// The outcome, set before delivery.
	int      status;
	size_t   n;   // tasks submitted
	tb_id   *ids; // n ids (&id1 for one task); valid if status is TB_OK
	tb_id    id1;
	tb_task *task; // a wait's task; NULL: none (or taken)

	tb_op *next; // in the active list, the queue or the free list
	tb_op *prev; // in the active list only
};

struct tbc_async {
	tb_client *c;

	pthread_mutex_t mtx;  // protects everything below
	pthread_cond_t  idle; // inflight and ncb both reached 0 while closing
	bool            closing;      // tbc_async_shutdown has started
	bool            closed;       // tbc_async_fini has run
	unsigned        max_inflight; // bound of inflight for new ops
	unsigned        inflight;     // ops started and not yet delivered
	unsigned        ncb;          // callbacks running
	unsigned        nops;         // ops allocated and not destroyed
	unsigned        nfree;
	tb_op          *active;  // ops in flight (doubly linked)
	tb_op          *free;    // ops cached for reuse
	tb_op          *cq_head; // completed, waiting for the caller
	tb_op          *cq_tail;
	int             efd; // eventfd of the queue; -1 until asked for
};

// ---- the state ------------------------------------------------------------

int
tbc_async_alloc(tbc_async **asp, tb_client *c)
{
	tbc_async *as;

	if ((as = calloc(1, sizeof(*as))) == NULL) {
		return (TB_ENOMEM);
	}
	pthread_mutex_init(&as->mtx, NULL);
	pthread_cond_init(&as->idle, NULL);
	as->c            = c;
	as->max_inflight = TB_ASYNC_MAX_INFLIGHT;
	as->efd          = -1;
	*asp             = as;
	return (TB_OK);
}

// op_clear frees what an op's outcome holds, so it can be reused.
static void
op_clear(tb_op *op)
{
	if (op->ids != &op->id1) {
		free(op->ids);
	}
	op->ids = NULL;
	op->n   = 0;
	tb_task_free(op->task);
	op->task = NULL;
}

// op_destroy releases an op's nng objects and memory. reap: the op's own
// callback may be running (nng_aio_free would wait for it forever).
static void
op_destroy(tb_op *op, bool reap)
{
	op_clear(op);
	(void) nng_ctx_close(op->ctx); // ENOENT once the socket is closed
	if (reap) {
		nng_aio_reap(op->aio);
	} else {
		nng_aio_free(op->aio);
	}
	free(op);
}

void
tbc_async_shutdown(tbc_async *as)
{
	pthread_mutex_lock(&as->mtx);
	as->closing = true;
	for (tb_op *op = as->active; op != NULL; op = op->next) {
		// Completes the aio (with NNG_ECLOSED) on an nng thread, if
		// it is at nng; an op between its stages ends on the flag.
		nng_aio_abort(op->aio, NNG_ECLOSED);
	}
	while (as->inflight > 0 || as->ncb > 0) {
		pthread_cond_wait(&as->idle, &as->mtx);
	}
	pthread_mutex_unlock(&as->mtx);
}

bool
tbc_async_fini(tbc_async *as)
{
	tb_op   *ops[2];
	unsigned gone = 0;
	bool     last;

	pthread_mutex_lock(&as->mtx);
	ops[0]      = as->free;
	ops[1]      = as->cq_head; // undelivered: still the library's
	as->free    = NULL;
	as->cq_head = NULL;
	as->cq_tail = NULL;
	as->nfree   = 0;
	as->closed  = true;
	pthread_mutex_unlock(&as->mtx);

	// No callback runs any more (tbc_async_shutdown), so the aios can be
	// freed here and now.
	for (int i = 0; i < 2; i++) {
		while (ops[i] != NULL) {
			tb_op *op = ops[i];
			ops[i]    = op->next;
			op_destroy(op, false);
			gone++;
		}
	}

	pthread_mutex_lock(&as->mtx);
	as->nops -= gone;
	last = as->nops == 0;
	if (as->efd >= 0) {
		close(as->efd);
		as->efd = -1;
	}
	pthread_mutex_unlock(&as->mtx);
	return (last);
}

void
tbc_async_free(tbc_async *as)
{
	if (as == NULL) {
		return;
	}
	// In a forked child the aios belong to the parent's nng: only the
	// memory of the ops still here is freed.
	for (int i = 0; i < 2; i++) {
		tb_op *op = i == 0 ? as->free : as->cq_head;
		while (op != NULL) {
			tb_op *next = op->next;
			op_clear(op);
			free(op);
			op = next;
		}
	}
	if (as->efd >= 0) {
		close(as->efd);
	}
	pthread_cond_destroy(&as->idle);
	pthread_mutex_destroy(&as->mtx);
	free(as);
}

int
tb_client_set_max_inflight(tb_client *c, int n)
{
	tbc_async *as;

	if (c == NULL || n < 1 || n > ASYNC_MAX_INFLIGHT_LIMIT) {
		return (TB_EINVAL);
	}
	as = tbc_client_async(c);
	pthread_mutex_lock(&as->mtx);
	as->max_inflight = (unsigned) n;
	pthread_mutex_unlock(&as->mtx);
	return (TB_OK);
}

// ---- completion -----------------------------------------------------------

static void
active_unlink_locked(tbc_async *as, tb_op *op)
{
	if (op->prev != NULL) {
		op->prev->next = op->next;
	} else {
		as->active = op->next;
	}
	if (op->next != NULL) {
		op->next->prev = op->prev;
	}
	op->next = op->prev = NULL;
}

static void
idle_check_locked(tbc_async *as)
{
	if (as->closing && as->inflight == 0 && as->ncb == 0) {
		pthread_cond_broadcast(&as->idle);
	}
}

// async_deliver hands a completed op to its callback or to the queue.
// nng_failed: the status came from nng, not from the broker, which makes
// it TB_ECLOSED if the client is closing (an abort).
static void
async_deliver(tb_op *op, bool nng_failed)
{
	tbc_async *as = op->as;
	tb_op_cb   cb = op->cb;

	pthread_mutex_lock(&as->mtx);
	active_unlink_locked(as, op);
	if (nng_failed && as->closing) {
		op->status = TB_ECLOSED;
	}
	as->inflight--;
	if (cb == NULL) {
		if (as->cq_tail != NULL) {
			as->cq_tail->next = op;
		} else {
			as->cq_head = op;
			if (as->efd >= 0) {
				(void) eventfd_write(as->efd, 1);
			}
		}
		as->cq_tail = op; // the queue owns op from here
		idle_check_locked(as);
		pthread_mutex_unlock(&as->mtx);
		return;
	}
	as->ncb++;
	pthread_mutex_unlock(&as->mtx);

	cb(op, op->arg); // op is the callback's from here: not touched again

	pthread_mutex_lock(&as->mtx);
	as->ncb--;
	idle_check_locked(as);
	pthread_mutex_unlock(&as->mtx);
}

// async_reply decodes the reply msg into op's outcome (op->status).
static void
async_reply(tb_op *op, nng_msg *msg)
{
	tbc_call call;
	int      rv;

	memset(&call, 0, sizeof(call));
	rv = tbc_call_decode(&call, msg, op->op, op->req_id); // owns msg
	if (op->op == TBP_OP_SUBMIT) {
		if (rv == TB_OK) {
			rv =
			    tbc_submit_decode(&call.rep, op->n, op->ids, NULL);
		}
	} else if (rv == TB_OK) {
		rv = tbc_task_decode(&call.rep, op->op, &op->task);
	}
	tbc_call_fini(&call);
	op->status = rv;
}

// async_cb is the aio callback of every op: the end of the send, then the
// end of the receive. nng thread.
static void
async_cb(void *arg)
{
	tb_op     *op = arg;
	tbc_async *as = op->as;
	nng_msg   *msg;
	int        rv = nng_aio_result(op->aio);

	msg = nng_aio_get_msg(op->aio);
	nng_aio_set_msg(op->aio, NULL);
	if (rv != 0) {
		nng_msg_free(msg); // a failed send gives the request back
		op->status = tbp_nng_err(rv, TBP_NNG_CLIENT);
		async_deliver(op, true);
		return;
	}
	if (op->recv) {
		async_reply(op, msg);
		async_deliver(op, false);
		return;
	}
	pthread_mutex_lock(&as->mtx);
	if (as->closing) {
		pthread_mutex_unlock(&as->mtx);
		op->status = TB_ECLOSED;
		async_deliver(op, true);
		return;
	}
	op->recv = true;
	nng_aio_set_timeout(
	    op->aio, tbc_clamp_ms(op->deadline - tbc_now_ms()));
	nng_ctx_recv(op->ctx, op->aio);
	pthread_mutex_unlock(&as->mtx);
}

// ---- starting -------------------------------------------------------------

// op_get_locked takes a cached op or makes one on sock. Returns a tb_err.
static int
op_get_locked(tbc_async *as, nng_socket sock, tb_op **opp)
{
	tb_op *op;
	int    rv;

	if ((op = as->free) != NULL) {
		as->free = op->next;
		as->nfree--;
		op->next = NULL;
		*opp     = op;
		return (TB_OK);
	}
	if ((op = calloc(1, sizeof(*op))) == NULL) {
		return (TB_ENOMEM);
	}
	if ((rv = nng_aio_alloc(&op->aio, async_cb, op)) != 0) {
		free(op);
		return (tbp_nng_err(rv, TBP_NNG_CLIENT));
	}
	if ((rv = nng_ctx_open(&op->ctx, sock)) != 0) {
		nng_aio_free(op->aio);
		free(op);
		return (tbp_nng_err(rv, TBP_NNG_CLIENT));
	}
	op->c   = as->c;
	op->as  = as;
	op->pid = getpid();
	as->nops++;
	*opp = op;
	return (TB_OK);
}

// async_start sends the request encoded in b (by the caller, who destroys
// b) as an op of n tasks whose reply may take timeout ms. ids: an array of
// n ids for n > 1, which the op takes on success.
static int
async_start(tb_client *c, msgpack_sbuffer *b, uint32_t opcode, uint64_t req_id,
    int64_t timeout, size_t n, tb_id *ids, tb_op_cb cb, void *arg, tb_op **opp)
{
	tbc_async *as = tbc_client_async(c);
	nng_socket sock;
	nng_msg   *msg = NULL;
	tb_op     *op  = NULL;
	int        rv;

	if ((rv = tbc_acquire(c, &sock)) != TB_OK) {
		return (rv);
	}
	if ((rv = tbc_call_msg(c, b, &msg)) != TB_OK) {
		tbc_release(c);
		return (rv);
	}
	pthread_mutex_lock(&as->mtx);
	if (as->closing) {
		rv = TB_ECLOSED;
	} else if (as->inflight >= as->max_inflight) {
		rv = TB_EBUSY;
	} else {
		rv = op_get_locked(as, sock, &op);
	}
	if (rv == TB_OK) {
		op->op       = opcode;
		op->req_id   = req_id;
		op->deadline = tbc_now_ms() + timeout;
		op->recv     = false;
		op->cb       = cb;
		op->arg      = arg;
		op->status   = TB_OK;
		op->n        = n;
		op->ids      = n > 1 ? ids : &op->id1;
		op->id1      = 0;
		op->task     = NULL;
		op->prev     = NULL;
		op->next     = as->active;
		if (as->active != NULL) {
			as->active->prev = op;
		}
		as->active = op;
		as->inflight++;
		if (opp != NULL) {
			*opp = op;
		}
		tbc_call_resend(c, op->ctx, timeout);
		nng_aio_set_timeout(op->aio, tbc_clamp_ms(timeout));
		nng_aio_set_msg(op->aio, msg);
		msg = NULL; // the op owns the request from here
		nng_ctx_send(op->ctx, op->aio);
	}
	pthread_mutex_unlock(&as->mtx);
	tbc_release(c);
	nng_msg_free(msg); // NULL on success
	return (rv);
}

int
tb_submit_batch_async(tb_client *c, const tb_task_spec *specs, size_t n,
    tb_op_cb cb, void *arg, tb_op **opp)
{
	msgpack_sbuffer b;
	uint64_t        req_id;
	tb_id          *ids = NULL;
	int             rv;

	msgpack_sbuffer_init(&b);
	if ((rv = tbc_submit_encode(c, specs, n, &b, &req_id)) == TB_OK &&
	    n > 1 && (ids = calloc(n, sizeof(*ids))) == NULL) {
		rv = TB_ENOMEM;
	}
	if (rv == TB_OK) {
		rv = async_start(c, &b, TBP_OP_SUBMIT, req_id, tbc_timeout(c),
		    n, ids, cb, arg, opp);
	}
	if (rv != TB_OK) {
		free(ids);
	}
	msgpack_sbuffer_destroy(&b);
	return (rv);
}

int
tb_submit_async(tb_client *c, const char *handler, const void *payload,
    size_t payload_len, const tb_submit_opts *opts, tb_op_cb cb, void *arg,
    tb_op **opp)
{
	tb_task_spec spec;

	spec.handler     = handler;
	spec.payload     = payload;
	spec.payload_len = payload_len;
	spec.opts        = opts;
	return (tb_submit_batch_async(c, &spec, 1, cb, arg, opp));
}

int
tb_wait_async(tb_client *c, tb_id id, int timeout_ms, tb_op_cb cb, void *arg,
    tb_op **opp)
{
	msgpack_sbuffer b;
	uint64_t        req_id;
	int64_t         timeout;
	int             rv;

	if (c == NULL) {
		return (TB_EINVAL);
	}
	msgpack_sbuffer_init(&b);
	if ((rv = tbc_task_encode(c, TBP_OP_WAIT, id, timeout_ms, &b, &req_id,
	         &timeout)) == TB_OK) {
		rv = async_start(c, &b, TBP_OP_WAIT, req_id, timeout, 0, NULL,
		    cb, arg, opp);
	}
	msgpack_sbuffer_destroy(&b);
	return (rv);
}

// ---- the completion queue -------------------------------------------------

// queue_of checks the arguments of the queue's calls and the process.
static int
queue_of(tb_client *c, const void *outp, tbc_async **asp)
{
	if (c == NULL || outp == NULL) {
		return (TB_EINVAL);
	}
	if (tbc_client_forked(c)) {
		return (TB_EFORK);
	}
	*asp = tbc_client_async(c);
	return (TB_OK);
}

int
tb_client_completion_fd(tb_client *c, int *fdp)
{
	tbc_async *as;
	int        rv;

	if ((rv = queue_of(c, fdp, &as)) != TB_OK) {
		return (rv);
	}
	pthread_mutex_lock(&as->mtx);
	if (as->efd < 0) {
		if ((as->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
			rv = TB_ESYSTEM;
		} else if (as->cq_head != NULL) {
			(void) eventfd_write(as->efd, 1);
		}
	}
	if (rv == TB_OK) {
		*fdp = as->efd;
	}
	pthread_mutex_unlock(&as->mtx);
	return (rv);
}

int
tb_client_next_completed(tb_client *c, tb_op **opp)
{
	tbc_async *as;
	tb_op     *op;
	int        rv;

	if (opp != NULL) {
		*opp = NULL;
	}
	if ((rv = queue_of(c, opp, &as)) != TB_OK) {
		return (rv);
	}
	pthread_mutex_lock(&as->mtx);
	if ((op = as->cq_head) != NULL) {
		if ((as->cq_head = op->next) == NULL) {
			as->cq_tail = NULL;
			if (as->efd >= 0) {
				eventfd_t v;
				// Empty: the descriptor is no longer readable.
				(void) eventfd_read(as->efd, &v);
			}
		}
		op->next = NULL;
	}
	pthread_mutex_unlock(&as->mtx);
	*opp = op; // the caller's from here
	return (op != NULL ? TB_OK : TB_ETIMEDOUT);
}

// ---- ops ------------------------------------------------------------------

int
tb_op_status(const tb_op *op)
{
	return (op->status);
}

tb_id
tb_op_id(const tb_op *op)
{
	return (op->status == TB_OK && op->n > 0 ? op->ids[0] : 0);
}

const tb_id *
tb_op_ids(const tb_op *op, size_t *np)
{
	bool ok = op->status == TB_OK && op->n > 0;

	if (np != NULL) {
		*np = ok ? op->n : 0;
	}
	return (ok ? op->ids : NULL);
}

const tb_task *
tb_op_task(const tb_op *op)
{
	return (op->task);
}

tb_task *
tb_op_take_task(tb_op *op)
{
	tb_task *t = op->task;

	op->task = NULL; // the caller's from here
	return (t);
}

void *
tb_op_arg(const tb_op *op)
{
	return (op->arg);
}

void
tb_op_free(tb_op *op)
{
	tbc_async *as;
	bool       last;

	if (op == NULL) {
		return;
	}
	if (getpid() != op->pid) {
		// A forked child: its aio and context are the parent's nng.
		op_clear(op);
		free(op);
		return;
	}
	as = op->as;
	op_clear(op);
	pthread_mutex_lock(&as->mtx);
	if (!as->closing && as->nfree < ASYNC_FREE_MAX) {
		op->next = as->free;
		as->free = op;
		as->nfree++;
		pthread_mutex_unlock(&as->mtx);
		return;
	}
	as->nops--;
	last = as->closed && as->nops == 0;
	pthread_mutex_unlock(&as->mtx);

	// This may be the op's own callback: reap its aio, do not wait.
	op_destroy(op, true);
	if (last) {
		tbc_client_free(as->c); // the client was closed before
	}
}
