// worker.c: the worker side of libtaskbroker (tb_worker, tb_job).
//
// DESIGN. A tb_worker owns one nng req0 socket with one dialer, so all
// its requests travel on one connection (nng pipe), the one the broker
// binds the worker to at hello. A thread of the library's (the taker)
// keeps one worker_take outstanding at all times: it says hello when it
// has no worker id (first, and again after the broker answers not_found
// or the connection drops), then sends takes with the number of free
// slots and queues the jobs of each reply for tb_worker_next, setting the
// flag (and calling the callback) of each job a cancel notice names. The
// takes are sent without nng's resend timer: a take the broker holds must
// not be sent twice, and with no resend nng ends a request whose
// connection drops (NNG_ECONNRESET) instead of sending it again, which
// tells the taker to say hello again. worker_done goes out from the
// threads that end jobs, on a context of its own, as a group commit: the
// first thread with a result sends every result waiting then in one
// request, and the others wait for its reply, which gives each its own
// status (fencing is per result).
//
// Slots. A take carries free = slots - held (jobs received and not yet
// ended) and dones, the number of worker_done begun so far; each done
// carries its number, so the broker can count a done that arrives while
// the take is held as one more free slot of that take (tbp.h).
//
// Readiness: an eventfd is written whenever a job is queued or a cancel
// notice arrives, and read back (reset) by tb_worker_try_next when it
// finds nothing, both under the mutex, so it is readable exactly when a
// job may be ready.
//
// Lifetime: the worker is reference counted: tb_worker_close drops one
// reference and each job handed out holds one, so a job ended after the
// close still finds its worker (and gets TB_ECLOSED).
//
// Threads: every call from any thread; the taker thread; nng's.
// Lock order: one lock, tb_worker.mtx (with its condition variables cv and
// dcv), never held during an nng call
// that waits, except the socket's close in tb_worker_close (the taker does
// not take the lock while a request of its is in flight).
// Ownership: queued jobs are the worker's; a job handed out is the
// caller's until it is ended.

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#include <taskbroker.h>

#include "client_impl.h"
#include "tbp.h"

#define WORKER_CALL_MS 10000      // hello, done, bye
#define WORKER_TAKE_SLACK_MS 5000 // a take's reply: heartbeat + this
#define WORKER_RETRY_MS 50        // after a failed hello or take
#define WORKER_RETRY_MAX_MS 1000

struct tb_job {
	tb_worker       *w;
	uint64_t         wid; // the worker id it came to
	uint64_t         id;
	uint32_t         attempt;
	uint32_t         crashes;
	char            *handler;
	char            *queue;
	uint8_t         *payload;
	size_t           payload_len;
	int64_t          deadline;
	atomic_int       cancelled;
	tb_job_cancel_fn cancel_cb; // under w->mtx
	void            *cancel_arg;
	bool             handed; // given to the caller
	tb_job          *next;   // on the ready queue or the held list
	tb_job          *prev;
};

typedef struct done_entry done_entry;

struct tb_worker {
	pid_t      pid;
	char      *url;
	tbc_conn   conn;
	nng_socket sock;
	bool       sock_open;
	pthread_t  thread;
	bool       thread_started;
	int        efd;

	// Read-only after open.
	char   **handlers;
	size_t   nhandlers;
	char   **queues;
	size_t   nqueues;
	unsigned slots;
	char    *name;
	char     host[256];

	pthread_mutex_t      mtx; // protects everything below
	pthread_cond_t       cv;  // ready queue, held count, closing
	tb_job              *ready_head;
	tb_job              *ready_tail;
	tb_job              *held;    // handed out (doubly linked)
	unsigned             nheld;   // ready + handed out
	uint64_t             wid;     // 0: no hello answered yet
	uint64_t             dones;   // worker_done begun
	uint32_t             hb_ms;   // the broker's heartbeat
	pthread_cond_t       dcv;     // results sent: their threads go on
	done_entry          *dq_head; // results waiting to be sent
	done_entry         **dq_tail;
	bool                 dsending; // a thread is sending results
	bool                 stopping;
	bool                 stopped; // goodbye said: the taker ends
	bool                 closing;
	unsigned             refs;
	atomic_uint_fast64_t next_req_id;
	tbc_redialer         redial; // taker thread only, after open
};

// ---- small helpers
// ----------------------------------------------------------

static int64_t
worker_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static void
worker_signal_locked(tb_worker *w)
{
	uint64_t one = 1;

	(void) !write(w->efd, &one, sizeof(one));
	pthread_cond_broadcast(&w->cv);
}

static void
job_free(tb_job *j)
{
	if (j != NULL) {
		free(j->handler);
		free(j->queue);
		free(j->payload);
		free(j);
	}
}

static void
worker_free(tb_worker *w)
{
	while (w->ready_head != NULL) {
		tb_job *j     = w->ready_head;
		w->ready_head = j->next;
		job_free(j);
	}
	for (size_t i = 0; w->handlers != NULL && i < w->nhandlers; i++) {
		free(w->handlers[i]);
	}
	for (size_t i = 0; w->queues != NULL && i < w->nqueues; i++) {
		free(w->queues[i]);
	}
	free(w->handlers);
	free(w->queues);
	free(w->name);
	free(w->url);
	tbc_conn_fini(&w->conn);
	if (w->efd >= 0) {
		close(w->efd);
	}
	pthread_cond_destroy(&w->cv);
	pthread_cond_destroy(&w->dcv);
	pthread_mutex_destroy(&w->mtx);
	free(w);
}

// worker_unref drops one reference, taken with w->mtx held; it frees w
// (and unlocks) when it was the last.
static void
worker_unref_locked(tb_worker *w)
{
	if (--w->refs == 0) {
		pthread_mutex_unlock(&w->mtx);
		worker_free(w);
		return;
	}
	pthread_mutex_unlock(&w->mtx);
}

// worker_call sends the request in b on a context of its own and waits up
// to timeout_ms for the reply, decoded into *rep (its bytes in *msgp,
// which the caller frees after tbp_rep_fini). No resend: a request whose
// connection drops fails. Returns TB_OK or the broker's error status (rep
// decoded), or the transport's error.
static int
worker_call(tb_worker *w, msgpack_sbuffer *b, uint32_t op, uint64_t req_id,
    int64_t timeout_ms, tbp_rep *rep, nng_msg **msgp)
{
	nng_ctx  ctx;
	nng_aio *aio = NULL;
	nng_msg *msg = NULL;
	int      rv;

	*msgp = NULL;
	memset(rep, 0, sizeof(*rep));
	if (w->conn.token != NULL) {
		tbp_bytes tok = { (const uint8_t *) w->conn.token,
			(uint32_t) w->conn.token_len };
		if ((rv = tbp_req_add_token(b, 0, tok)) != TB_OK) {
			return (rv);
		}
	}
	if ((rv = nng_msg_alloc(&msg, 0)) != 0 ||
	    (rv = nng_msg_append(msg, b->data, b->size)) != 0 ||
	    (rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
		nng_msg_free(msg);
		return (tbp_nng_err(rv, TBP_NNG_CLIENT));
	}
	if ((rv = nng_ctx_open(&ctx, w->sock)) != 0) {
		nng_msg_free(msg);
		nng_aio_free(aio);
		return (tbp_nng_err(rv, TBP_NNG_CLIENT));
	}
	(void) nng_ctx_set_ms(
	    ctx, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	nng_aio_set_timeout(aio, (nng_duration) timeout_ms);
	nng_aio_set_msg(aio, msg);
	nng_ctx_send(ctx, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0) {
		nng_msg_free(msg);
		goto out;
	}
	nng_ctx_recv(ctx, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0) {
		goto out;
	}
	*msgp = nng_aio_get_msg(aio);
	if (tbp_rep_decode(rep, nng_msg_body(*msgp), nng_msg_len(*msgp)) !=
	        TB_OK ||
	    rep->req_id != req_id || rep->op != op) {
		rv = -1;
		goto out;
	}
	nng_ctx_close(ctx);
	nng_aio_free(aio);
	return (rep->status);
out:
	nng_ctx_close(ctx);
	nng_aio_free(aio);
	if (rv == -1) {
		return (TB_EPROTO);
	}
	return (tbp_nng_err(rv, TBP_NNG_CLIENT));
}

static void
worker_call_fini(tbp_rep *rep, nng_msg *msg)
{
	tbp_rep_fini(rep);
	if (msg != NULL) {
		nng_msg_free(msg);
	}
}

static char *
bytes_dup(tbp_bytes v)
{
	char *s = malloc(v.n + 1);

	if (s != NULL) {
		if (v.n > 0) {
			memcpy(s, v.p, v.n);
		}
		s[v.n] = '\0';
	}
	return (s);
}

// ---- the taker thread
// -------------------------------------------------------

// worker_hello says hello; on success the worker has a (new) id and the
// jobs still queued from an earlier connection are dropped: the broker
// gave them up when that connection closed.
static int
worker_hello(tb_worker *w)
{
	tbp_bytes       hs[TBP_MAX_WNAMES];
	tbp_bytes       qs[TBP_MAX_WNAMES];
	tbp_hello       h;
	msgpack_sbuffer b;
	tbp_rep         rep;
	nng_msg        *msg;
	uint64_t        req_id = atomic_fetch_add(&w->next_req_id, 1);
	int             rv;

	for (size_t i = 0; i < w->nhandlers; i++) {
		hs[i] = tbp_str(w->handlers[i]);
	}
	for (size_t i = 0; i < w->nqueues; i++) {
		qs[i] = tbp_str(w->queues[i]);
	}
	h = (tbp_hello) {
		.handlers  = hs,
		.nhandlers = (uint32_t) w->nhandlers,
		.queues    = qs,
		.nqueues   = (uint32_t) w->nqueues,
		.slots     = w->slots,
		.pid       = (uint64_t) getpid(),
		.host      = tbp_str(w->host),
		.name      = tbp_str(w->name),
	};
	msgpack_sbuffer_init(&b);
	if ((rv = tbp_enc_worker_hello(&b, req_id, &h)) == TB_OK) {
		rv = worker_call(w, &b, TBP_OP_WORKER_HELLO, req_id,
		    WORKER_CALL_MS, &rep, &msg);
		if (rv == TB_OK) {
			pthread_mutex_lock(&w->mtx);
			w->wid   = rep.worker_id;
			w->hb_ms = rep.heartbeat_ms;
			while (w->ready_head != NULL) {
				tb_job *j     = w->ready_head;
				w->ready_head = j->next;
				w->nheld--;
				job_free(j);
			}
			w->ready_tail = NULL;
			pthread_mutex_unlock(&w->mtx);
		}
		worker_call_fini(&rep, msg);
	}
	msgpack_sbuffer_destroy(&b);
	return (rv);
}

// worker_job_new copies a job of a take reply.
static tb_job *
worker_job_new(tb_worker *w, uint64_t wid, const tbp_job *in)
{
	tb_job *j = calloc(1, sizeof(*j));

	if (j == NULL) {
		return (NULL);
	}
	j->w           = w;
	j->wid         = wid;
	j->id          = in->id;
	j->attempt     = in->attempt;
	j->crashes     = in->crashes;
	j->deadline    = in->deadline_ms;
	j->handler     = bytes_dup(in->handler);
	j->queue       = bytes_dup(in->queue);
	j->payload_len = in->payload.n;
	if (in->payload.n > 0 &&
	    (j->payload = malloc(in->payload.n)) != NULL) {
		memcpy(j->payload, in->payload.p, in->payload.n);
	}
	atomic_init(&j->cancelled, 0);
	if (j->handler == NULL || j->queue == NULL ||
	    (in->payload.n > 0 && j->payload == NULL)) {
		job_free(j);
		return (NULL);
	}
	return (j);
}

// worker_cancel_locked marks the job (id, attempt) cancelled and returns
// it if it has a callback to call (after the lock is dropped).
static tb_job *
worker_cancel_locked(tb_worker *w, const tbp_job *c)
{
	for (tb_job *j = w->held; j != NULL; j = j->next) {
		if (j->id == c->id && j->attempt == c->attempt) {
			atomic_store(&j->cancelled, 1);
			return (j->cancel_cb != NULL ? j : NULL);
		}
	}
	for (tb_job *j = w->ready_head; j != NULL; j = j->next) {
		if (j->id == c->id && j->attempt == c->attempt) {
			atomic_store(&j->cancelled, 1);
		}
	}
	return (NULL);
}

// worker_take sends one take and queues what its reply brings. Returns
// TB_OK, or the error that decides what the taker does next.
static int
worker_take(tb_worker *w)
{
	msgpack_sbuffer b;
	tbp_rep         rep;
	nng_msg        *msg;
	uint64_t        req_id = atomic_fetch_add(&w->next_req_id, 1);
	uint64_t        wid;
	uint64_t        dones;
	uint32_t        free_slots;
	int64_t         wait_ms;
	int             rv;

	pthread_mutex_lock(&w->mtx);
	wid        = w->wid;
	dones      = w->dones;
	free_slots = (w->stopping || w->nheld >= w->slots)
	    ? 0
	    : (uint32_t) (w->slots - w->nheld);
	wait_ms    = (int64_t) w->hb_ms + WORKER_TAKE_SLACK_MS;
	pthread_mutex_unlock(&w->mtx);

	msgpack_sbuffer_init(&b);
	if ((rv = tbp_enc_worker_take(&b, req_id, wid, free_slots, dones)) !=
	    TB_OK) {
		msgpack_sbuffer_destroy(&b);
		return (rv);
	}
	rv = worker_call(
	    w, &b, TBP_OP_WORKER_TAKE, req_id, wait_ms, &rep, &msg);
	msgpack_sbuffer_destroy(&b);
	if (rv == TB_OK) {
		tb_job *cbs[TBP_MAX_SLOTS * 4];
		size_t  ncb = 0;

		pthread_mutex_lock(&w->mtx);
		for (uint32_t i = 0; i < rep.njobs; i++) {
			tb_job *j = worker_job_new(w, wid, &rep.jobs[i]);
			if (j == NULL) {
				continue; // its attempt ends with the grace
			}
			j->prev = w->ready_tail;
			if (w->ready_tail != NULL) {
				w->ready_tail->next = j;
			} else {
				w->ready_head = j;
			}
			w->ready_tail = j;
			w->nheld++;
		}
		for (uint32_t i = 0; i < rep.ncancels; i++) {
			tb_job *j = worker_cancel_locked(w, &rep.cancels[i]);
			if (j != NULL && ncb < sizeof(cbs) / sizeof(cbs[0])) {
				cbs[ncb++] = j;
			}
		}
		if (rep.njobs > 0 || rep.ncancels > 0) {
			uint64_t one = 1;
			(void) !write(w->efd, &one, sizeof(one));
		}
		// One waiter per job, not all of them: a worker with many
		// slot threads would wake every one for each reply.
		for (uint32_t i = 0; i < rep.njobs; i++) {
			pthread_cond_signal(&w->cv);
		}
		// The callbacks run with the lock held, so that no other
		// thread can end (and free) their job meanwhile; hence the
		// contract of tb_job_cancel_fn.
		for (size_t i = 0; i < ncb; i++) {
			tb_job_cancel_fn fn  = cbs[i]->cancel_cb;
			void            *arg = cbs[i]->cancel_arg;
			fn(cbs[i], arg);
		}
		pthread_mutex_unlock(&w->mtx);
	}
	worker_call_fini(&rep, msg);
	return (rv);
}

static void *
worker_thread(void *arg)
{
	tb_worker *w     = arg;
	int        delay = WORKER_RETRY_MS;

	for (;;) {
		bool hello;
		int  rv;

		pthread_mutex_lock(&w->mtx);
		if (w->closing || w->stopped) {
			pthread_mutex_unlock(&w->mtx);
			break;
		}
		hello = w->wid == 0;
		pthread_mutex_unlock(&w->mtx);

		rv = hello ? worker_hello(w) : worker_take(w);
		if (rv == TB_OK) {
			delay = WORKER_RETRY_MS;
			continue;
		}
		if (rv == TB_ECLOSED) {
			break; // the socket is closing
		}
		if (rv == TB_ETIMEDOUT && !hello) {
			continue; // a slow broker: take again
		}
		if (!hello && rv != TB_ESHUTTINGDOWN && rv != TB_EBUSY) {
			// not_found (the broker does not know us: it
			// restarted) or a dropped connection: hello again.
			pthread_mutex_lock(&w->mtx);
			w->wid = 0;
			pthread_mutex_unlock(&w->mtx);
		}
		if (hello) { // a dialer that has stopped is replaced
			tbc_redial(&w->redial, w->sock, w->url, &w->conn);
		}
		nng_msleep((nng_duration) delay);
		delay = delay * 2 > WORKER_RETRY_MAX_MS ? WORKER_RETRY_MAX_MS
		                                        : delay * 2;
	}
	return (NULL);
}

// ---- the worker
// -------------------------------------------------------------

static int
strv_dup(char ***dstp, const char *const *src, size_t n, bool names)
{
	char **v;

	*dstp = NULL;
	if (n == 0) {
		return (TB_OK);
	}
	if (src == NULL || n > TBP_MAX_WNAMES ||
	    (v = calloc(n, sizeof(*v))) == NULL) {
		return (
		    src == NULL || n > TBP_MAX_WNAMES ? TB_EINVAL : TB_ENOMEM);
	}
	*dstp = v;
	for (size_t i = 0; i < n; i++) {
		size_t len = src[i] != NULL ? strlen(src[i]) : 0;
		if (names && (len == 0 || len > TBP_MAX_NAME)) {
			return (TB_EINVAL);
		}
		if ((v[i] = strdup(src[i])) == NULL) {
			return (TB_ENOMEM);
		}
	}
	return (TB_OK);
}

int
tb_worker_open(tb_worker **wp, const char *url, const tb_worker_opts *o)
{
	tb_worker *w;
	int        rv;

	if (wp == NULL || o == NULL || o->nhandlers == 0 ||
	    o->nhandlers > TBP_MAX_WNAMES || o->nqueues > TBP_MAX_WNAMES ||
	    o->slots == 0 || o->slots > TBP_MAX_SLOTS ||
	    (o->name != NULL && strlen(o->name) > TBP_MAX_NAME)) {
		return (TB_EINVAL);
	}
	if (url == NULL) {
		url = tb_default_url();
	}
	if (!tbc_url_ok(url)) {
		return (TB_EINVAL);
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		return (TB_ENOMEM);
	}
	w->efd = -1;
	pthread_mutex_init(&w->mtx, NULL);
	pthread_cond_init(&w->cv, NULL);
	pthread_cond_init(&w->dcv, NULL);
	w->dq_tail   = &w->dq_head;
	w->nhandlers = o->nhandlers;
	w->nqueues   = o->nqueues;
	w->slots     = o->slots;
	w->refs      = 1;
	w->pid       = getpid();
	w->hb_ms     = 5000;
	atomic_init(&w->next_req_id, 1);
	if (gethostname(w->host, sizeof(w->host) - 1) != 0) {
		w->host[0] = '\0';
	}
	w->host[TBP_MAX_NAME] = '\0';
	if ((rv = strv_dup(&w->handlers, o->handlers, o->nhandlers, true)) !=
	        TB_OK ||
	    (rv = strv_dup(&w->queues, o->queues, o->nqueues, true)) !=
	        TB_OK) {
		goto fail;
	}
	if ((w->name = strdup(o->name != NULL ? o->name : "")) == NULL ||
	    (w->url = strdup(url)) == NULL) {
		rv = TB_ENOMEM;
		goto fail;
	}
	if ((rv = tbc_conn_init(&w->conn, o->conn)) != TB_OK) {
		goto fail;
	}
	if ((w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		rv = TB_ESYSTEM;
		goto fail;
	}
	if ((rv = nng_req0_open(&w->sock)) != 0) {
		rv = tbp_nng_err(rv, TBP_NNG_CLIENT);
		goto fail;
	}
	w->sock_open = true;
	(void) nng_socket_set_size(w->sock, NNG_OPT_RECVMAXSZ, 64u << 20);
	(void) nng_socket_set_ms(w->sock, NNG_OPT_RECONNMINT, 10);
	(void) nng_socket_set_ms(w->sock, NNG_OPT_RECONNMAXT, 1000);
	// Non-blocking: a worker started before its broker waits for it.
	if ((rv = tbc_dial(w->sock, w->url, &w->conn, NNG_FLAG_NONBLOCK,
	         &w->redial.dialer)) != TB_OK) {
		goto fail;
	}
	w->redial.last = tbc_now_ms();
	if (pthread_create(&w->thread, NULL, worker_thread, w) != 0) {
		rv = TB_ESYSTEM;
		goto fail;
	}
	w->thread_started = true;
	*wp               = w;
	return (TB_OK);
fail:
	if (w->sock_open) {
		tbc_close_socket(w->sock);
	}
	worker_free(w); // copes with a half-built worker
	return (rv);
}

int
tb_worker_fd(tb_worker *w, int *fdp)
{
	if (w == NULL || fdp == NULL) {
		return (TB_EINVAL);
	}
	*fdp = w->efd;
	return (TB_OK);
}

int
tb_worker_next(tb_worker *w, int timeout_ms, tb_job **jp)
{
	struct timespec dl;
	tb_job         *j  = NULL;
	int             rv = TB_OK;

	if (w == NULL || jp == NULL) {
		return (TB_EINVAL);
	}
	if (getpid() != w->pid) {
		return (TB_EFORK);
	}
	if (timeout_ms > 0) {
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += timeout_ms / 1000;
		dl.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
		if (dl.tv_nsec >= 1000000000L) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&w->mtx);
	for (;;) {
		if (w->closing || w->stopping) {
			rv = TB_ECLOSED; // what is queued is handed back
			break;
		}
		if ((j = w->ready_head) != NULL) {
			break;
		}
		if (timeout_ms == 0) {
			uint64_t v;
			(void) !read(w->efd, &v, sizeof(v)); // reset readiness
			rv = TB_ETIMEDOUT;
			break;
		}
		if (timeout_ms < 0) {
			pthread_cond_wait(&w->cv, &w->mtx);
		} else if (pthread_cond_timedwait(&w->cv, &w->mtx, &dl) ==
		        ETIMEDOUT &&
		    w->ready_head == NULL) {
			rv = TB_ETIMEDOUT;
			break;
		}
	}
	if (j != NULL && rv == TB_OK) {
		w->ready_head = j->next;
		if (w->ready_head == NULL) {
			w->ready_tail = NULL;
		} else {
			w->ready_head->prev = NULL;
		}
		j->handed = true;
		j->prev   = NULL;
		j->next   = w->held;
		if (w->held != NULL) {
			w->held->prev = j;
		}
		w->held = j;
		w->refs++; // the job holds the worker
		*jp = j;
	}
	pthread_mutex_unlock(&w->mtx);
	return (rv);
}

int
tb_worker_try_next(tb_worker *w, tb_job **jp)
{
	return (tb_worker_next(w, 0, jp));
}

// done_entry is one result waiting to be sent, on the stack of the thread
// that ends the job; the views in d point to that thread's memory, which
// stays valid because it waits until done.
struct done_entry {
	tbp_done           d;
	uint64_t           wid;
	int                rv;
	bool               done;
	struct done_entry *next;
};

// DONE_BATCH_BYTES bounds the results in one request (TBP_MAX_MSG is
// 8 MiB; every result is at most 64 KiB).
#define DONE_BATCH_BYTES (4u << 20)

// done_status maps what the broker said about one result to what
// tb_job_complete returns.
static int
done_status(int rv)
{
	if (rv == TB_ENOTFOUND || rv == TB_EUNREACHABLE) {
		// The broker does not know that worker (any more), or the
		// connection dropped with the request: the attempt was
		// interrupted; either way, not taken.
		return (TB_ESTALE);
	}
	return (rv);
}

// done_send sends the results of batch[0..n) (one worker id) in one
// request and writes each one's status. No lock held.
static void
done_send(tb_worker *w, done_entry **batch, uint32_t n)
{
	tbp_done       *all = NULL;
	msgpack_sbuffer b;
	tbp_rep         rep;
	nng_msg        *msg    = NULL;
	uint64_t        req_id = atomic_fetch_add(&w->next_req_id, 1);
	int             rv;

	memset(&rep, 0, sizeof(rep));
	msgpack_sbuffer_init(&b);
	if (n == 1) {
		rv = tbp_enc_worker_done(
		    &b, req_id, batch[0]->wid, &batch[0]->d);
	} else if ((all = malloc(n * sizeof(*all))) == NULL) {
		rv = TB_ENOMEM;
	} else {
		for (uint32_t i = 0; i < n; i++) {
			all[i] = batch[i]->d;
		}
		rv = tbp_enc_worker_dones(&b, req_id, batch[0]->wid, all, n);
		free(all);
	}
	if (rv == TB_OK) {
		rv = worker_call(w, &b, TBP_OP_WORKER_DONE, req_id,
		    WORKER_CALL_MS, &rep, &msg);
	}
	for (uint32_t i = 0; i < n; i++) {
		int st = rv;
		if (rv == TB_OK && n > 1) {
			st = rep.nstatuses == n ? (int) rep.statuses[i]
			                        : TB_EPROTO;
		}
		batch[i]->rv = done_status(st);
	}
	worker_call_fini(&rep, msg);
	msgpack_sbuffer_destroy(&b);
}

// job_end unlinks j from its worker, sends its result d (with whatever
// other results are waiting then: one thread sends, the others wait for
// its reply, as in a group commit) and frees j. Any thread.
static int
job_end(tb_job *j, tbp_done *d)
{
	tb_worker  *w = j->w;
	done_entry  me;
	done_entry *batch[TBP_MAX_SLOTS];
	int         rv;

	pthread_mutex_lock(&w->mtx);
	if (j->prev != NULL) {
		j->prev->next = j->next;
	} else {
		w->held = j->next;
	}
	if (j->next != NULL) {
		j->next->prev = j->prev;
	}
	w->nheld--;
	d->seq     = ++w->dones;
	d->id      = j->id;
	d->attempt = j->attempt;
	if (w->closing || getpid() != w->pid) {
		rv = getpid() != w->pid ? TB_EFORK : TB_ECLOSED;
		goto out;
	}
	memset(&me, 0, sizeof(me));
	me.d        = *d;
	me.wid      = j->wid;
	*w->dq_tail = &me;
	w->dq_tail  = &me.next;
	while (!me.done) {
		uint32_t n     = 0;
		size_t   bytes = 0;
		uint64_t wid;

		if (w->dsending) {
			pthread_cond_wait(&w->dcv, &w->mtx);
			continue;
		}
		// This thread sends what is queued for the first entry's
		// worker id, its own result among them or not.
		w->dsending = true;
		wid         = w->dq_head->wid;
		for (done_entry **pp = &w->dq_head; *pp != NULL &&
		     n < TBP_MAX_SLOTS && bytes < DONE_BATCH_BYTES;) {
			done_entry *e = *pp;
			if (e->wid != wid) {
				pp = &e->next;
				continue;
			}
			batch[n++] = e;
			bytes += e->d.result.n + e->d.error.n + 64;
			*pp = e->next; // off the queue
		}
		// The tail: the last entry left, or the head.
		w->dq_tail = &w->dq_head;
		while (*w->dq_tail != NULL) {
			w->dq_tail = &(*w->dq_tail)->next;
		}
		pthread_mutex_unlock(&w->mtx);
		done_send(w, batch, n);
		pthread_mutex_lock(&w->mtx);
		for (uint32_t i = 0; i < n; i++) {
			batch[i]->done = true;
		}
		w->dsending = false;
		pthread_cond_broadcast(&w->dcv);
	}
	rv = me.rv;
out:
	pthread_mutex_unlock(&w->mtx);
	job_free(j);
	pthread_mutex_lock(&w->mtx);
	pthread_cond_broadcast(&w->cv); // tb_worker_stop counts held jobs
	worker_unref_locked(w);
	return (rv);
}

int
tb_job_complete(tb_job *j, const void *result, size_t len)
{
	tbp_done d;
	char     text[96];
	int      rv;

	if (j == NULL || (result == NULL && len > 0)) {
		return (TB_EINVAL);
	}
	memset(&d, 0, sizeof(d));
	if (len > TBP_MAX_RESULT) {
		snprintf(text, sizeof(text),
		    "result of %zu bytes is over the limit of %u", len,
		    TBP_MAX_RESULT);
		d.error = tbp_str(text);
		rv      = job_end(j, &d);
		return (rv == TB_OK ? TB_ETOOBIG : rv);
	}
	d.ok     = true;
	d.result = (tbp_bytes) { result, (uint32_t) len };
	return (job_end(j, &d));
}

int
tb_job_fail(tb_job *j, const char *error, int retryable)
{
	tbp_done d;
	size_t   n;

	if (j == NULL) {
		return (TB_EINVAL);
	}
	memset(&d, 0, sizeof(d));
	if (error == NULL || error[0] == '\0') {
		error = "failed";
	}
	n = strlen(error);
	if (n > TBP_MAX_ERROR) {
		n = TBP_MAX_ERROR; // cut, as the broker's own errors are
	}
	d.error     = (tbp_bytes) { (const uint8_t *) error, (uint32_t) n };
	d.retryable = retryable != 0;
	return (job_end(j, &d));
}

tb_id
tb_job_id(const tb_job *j)
{
	return (j != NULL ? j->id : 0);
}

uint32_t
tb_job_attempt(const tb_job *j)
{
	return (j != NULL ? j->attempt : 0);
}

uint32_t
tb_job_crashes(const tb_job *j)
{
	return (j != NULL ? j->crashes : 0);
}

const char *
tb_job_handler(const tb_job *j)
{
	return (j != NULL ? j->handler : NULL);
}

const char *
tb_job_queue(const tb_job *j)
{
	return (j != NULL ? j->queue : NULL);
}

const void *
tb_job_payload(const tb_job *j, size_t *lenp)
{
	if (lenp != NULL) {
		*lenp = j != NULL ? j->payload_len : 0;
	}
	return (j != NULL ? j->payload : NULL);
}

int64_t
tb_job_deadline(const tb_job *j)
{
	return (j != NULL ? j->deadline : 0);
}

int
tb_job_cancelled(const tb_job *j)
{
	return (j != NULL && atomic_load(&j->cancelled) ? 1 : 0);
}

int
tb_job_on_cancel(tb_job *j, tb_job_cancel_fn cb, void *arg)
{
	bool now;

	if (j == NULL) {
		return (TB_EINVAL);
	}
	pthread_mutex_lock(&j->w->mtx);
	j->cancel_cb  = cb;
	j->cancel_arg = arg;
	now           = cb != NULL && atomic_load(&j->cancelled);
	pthread_mutex_unlock(&j->w->mtx);
	if (now) {
		cb(j, arg);
	}
	return (TB_OK);
}

int
tb_worker_stop(tb_worker *w, int grace_ms)
{
	uint64_t ids[TBP_MAX_SLOTS];
	uint32_t n = 0;
	uint64_t wid;
	int64_t  deadline = worker_now_ms() + (grace_ms > 0 ? grace_ms : 0);
	msgpack_sbuffer b;
	tbp_rep         rep;
	nng_msg        *msg = NULL;
	uint64_t        req_id;
	int             rv;

	if (w == NULL) {
		return (TB_EINVAL);
	}
	if (getpid() != w->pid) {
		return (TB_EFORK);
	}
	pthread_mutex_lock(&w->mtx);
	w->stopping = true;
	worker_signal_locked(w); // waiters in tb_worker_next: TB_ECLOSED
	// Jobs not handed out yet are handed back at once.
	while (w->held != NULL || w->ready_head != NULL) {
		int64_t         left = deadline - worker_now_ms();
		struct timespec ts;
		if (w->held == NULL || left <= 0) {
			break;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += left / 1000;
		ts.tv_nsec += (long) (left % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		(void) pthread_cond_timedwait(&w->cv, &w->mtx, &ts);
	}
	for (tb_job *j = w->ready_head; j != NULL && n < TBP_MAX_SLOTS;
	     j         = j->next) {
		ids[n++] = j->id;
	}
	for (tb_job *j = w->held; j != NULL && n < TBP_MAX_SLOTS;
	     j         = j->next) {
		ids[n++] = j->id;
	}
	wid        = w->wid;
	w->stopped = true;
	pthread_mutex_unlock(&w->mtx);

	rv = TB_OK;
	if (wid != 0) {
		req_id = atomic_fetch_add(&w->next_req_id, 1);
		msgpack_sbuffer_init(&b);
		rv = tbp_enc_worker_bye(&b, req_id, wid, ids, n);
		if (rv == TB_OK) {
			rv = worker_call(w, &b, TBP_OP_WORKER_BYE, req_id,
			    WORKER_CALL_MS, &rep, &msg);
			worker_call_fini(&rep, msg);
		}
		msgpack_sbuffer_destroy(&b);
		if (rv != TB_OK) {
			rv = TB_EUNREACHABLE;
		}
	}
	return (rv == TB_OK && n > 0 ? TB_ETIMEDOUT : rv);
}

void
tb_worker_close(tb_worker *w)
{
	if (w == NULL) {
		return;
	}
	if (getpid() != w->pid) {
		// A forked child: nng belongs to the parent.
		return;
	}
	pthread_mutex_lock(&w->mtx);
	w->closing = true;
	worker_signal_locked(w);
	pthread_mutex_unlock(&w->mtx);
	// The taker's request ends with NNG_ECLOSED.
	tbc_close_socket(w->sock);
	if (w->thread_started) {
		pthread_join(w->thread, NULL);
	}
	pthread_mutex_lock(&w->mtx);
	worker_unref_locked(w);
}
