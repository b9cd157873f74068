// server.c: see server.h.

#include "server.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <nng/protocol/reqrep0/rep.h>

#include "guard.h"
#include "log.h"

enum srv_phase {
	SRV_RECV = 0,
	SRV_LOOP = 1,
	SRV_SEND = 2,
};

struct srv {
	nng_socket sock;
	guard     *guard;
	uv_async_t async;
	void (*handle)(srv_req *, void *);
	void *arg;

	pthread_mutex_t mtx; // protects inbox, inbox_tail and gone*
	srv_req        *inbox;
	srv_req        *inbox_tail;
	uint32_t       *gone; // ids of pipes that closed, for pipe_gone
	size_t          ngone;
	size_t          gone_cap;
	bool            gone_lost; // out of memory for gone: rescan

	void (*pipe_gone)(uint32_t pipe_id, void *arg); // loop thread
	void *pipe_arg;

	atomic_int  receiving; // contexts with a receive outstanding
	atomic_int  sending;   // replies being sent
	atomic_bool closing;
	int         ncontexts; // loop thread
	srv_req    *all;       // loop thread
	srv_req    *surplus;   // loop thread: surplus records to free
};

static void srv_aio_cb(void *arg);

// srv_pipe_cb runs on an nng thread when a connection has gone: the id is
// posted to the loop, which tells pipe_gone.
static void
srv_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	srv *s = arg;

	(void) ev;
	if (atomic_load(&s->closing)) {
		return;
	}
	pthread_mutex_lock(&s->mtx);
	if (s->ngone == s->gone_cap) {
		size_t    cap = s->gone_cap ? s->gone_cap * 2 : 16;
		uint32_t *g   = realloc(s->gone, cap * sizeof(*g));
		if (g != NULL) {
			s->gone     = g;
			s->gone_cap = cap;
		}
	}
	if (s->ngone < s->gone_cap) {
		s->gone[s->ngone++] = (uint32_t) nng_pipe_id(p);
	} else {
		s->gone_lost = true;
	}
	pthread_mutex_unlock(&s->mtx);
	uv_async_send(&s->async);
}

static void
srv_post(srv *s, srv_req *r)
{
	r->next = NULL;
	pthread_mutex_lock(&s->mtx);
	if (s->inbox_tail != NULL) {
		s->inbox_tail->next = r;
	} else {
		s->inbox = r;
	}
	s->inbox_tail = r;
	pthread_mutex_unlock(&s->mtx);
	uv_async_send(&s->async);
}

static void
srv_recv(srv_req *r)
{
	r->phase = SRV_RECV;
	atomic_fetch_add(&r->srv->receiving, 1);
	nng_ctx_recv(r->ctx, r->aio);
}

static void
srv_req_free(srv_req *r)
{
	nng_aio_free(r->aio); // waits for a running callback
	nng_ctx_close(r->ctx);
	tbp_req_fini(&r->req);
	msgpack_sbuffer_destroy(&r->out);
	free(r);
}

// srv_add opens one more receiving context. Loop thread.
static int
srv_add(srv *s)
{
	srv_req *r;
	int      rv;

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		return (TB_ENOMEM);
	}
	r->srv = s;
	msgpack_sbuffer_init(&r->out);
	if ((rv = nng_aio_alloc(&r->aio, srv_aio_cb, r)) != 0) {
		free(r);
		return (tbp_nng_err(rv, TBP_NNG_BROKER));
	}
	if ((rv = nng_ctx_open(&r->ctx, s->sock)) != 0) {
		nng_aio_free(r->aio);
		free(r);
		return (tbp_nng_err(rv, TBP_NNG_BROKER));
	}
	r->all_next = s->all;
	if (s->all != NULL) {
		s->all->all_prev = r;
	}
	s->all = r;
	s->ncontexts++;
	srv_recv(r);
	return (TB_OK);
}

// srv_aio_cb runs on an nng thread when a receive or a send completes.
static void
srv_aio_cb(void *arg)
{
	srv_req *r = arg;
	srv     *s = r->srv;
	nng_msg *m;
	int      rv = nng_aio_result(r->aio);

	if (r->phase == SRV_SEND) {
		atomic_fetch_sub(&s->sending, 1);
		if (rv != 0) {
			// The peer went away; the reply is ours to free.
			nng_msg_free(nng_aio_get_msg(r->aio));
		}
		if (atomic_load(&s->closing)) {
			return;
		}
		if (atomic_load(&s->receiving) >= SRV_RECEIVERS) {
			// Enough contexts are receiving: hand this one back
			// to the loop to be freed (an aio cannot free itself).
			r->phase = SRV_LOOP;
			r->data  = s; // marks "surplus" for srv_async_cb
			srv_post(s, r);
			return;
		}
		srv_recv(r);
		return;
	}

	// A receive completed.
	atomic_fetch_sub(&s->receiving, 1);
	if (rv != 0) {
		if (rv != NNG_ECLOSED && !atomic_load(&s->closing)) {
			log_warn("server: receive: %s", nng_strerror(rv));
			srv_recv(r);
		}
		return;
	}
	m          = nng_aio_get_msg(r->aio);
	r->raw_len = nng_msg_len(m);
	r->pipe    = nng_msg_get_pipe(m); // for srv_req_peer
	tbp_req_fini(&r->req);
	r->decode_rv = tbp_req_decode(&r->req, nng_msg_body(m), r->raw_len);
	nng_msg_free(m);
	r->phase = SRV_LOOP;
	r->data  = NULL;
	srv_post(s, r);
}

static void
srv_unlink(srv *s, srv_req *r)
{
	if (r->all_prev != NULL) {
		r->all_prev->all_next = r->all_next;
	} else {
		s->all = r->all_next;
	}
	if (r->all_next != NULL) {
		r->all_next->all_prev = r->all_prev;
	}
	s->ncontexts--;
}

// srv_async_cb works through the inbox on the loop thread.
static void
srv_async_cb(uv_async_t *a)
{
	srv     *s = a->data;
	srv_req *r;
	srv_req *next;

	uint32_t *gone;
	size_t    ngone;
	bool      lost;

	pthread_mutex_lock(&s->mtx);
	r        = s->inbox;
	s->inbox = s->inbox_tail = NULL;
	gone                     = s->gone;
	ngone                    = s->ngone;
	lost                     = s->gone_lost;
	s->gone                  = NULL;
	s->ngone                 = 0;
	s->gone_cap              = 0;
	s->gone_lost             = false;
	pthread_mutex_unlock(&s->mtx);

	// Requests first: one that came on a connection before it closed
	// (a worker's last result) is handled before the close.
	for (; r != NULL; r = next) {
		next = r->next;
		if (atomic_load(&s->closing)) {
			continue; // srv_close frees every record
		}
		if (r->data == s) {
			srv_unlink(s, r);
			srv_req_free(r);
			continue;
		}
		s->handle(r, s->arg);
	}
	for (size_t i = 0; i < ngone; i++) {
		if (s->pipe_gone != NULL && !atomic_load(&s->closing)) {
			s->pipe_gone(gone[i], s->pipe_arg);
		}
	}
	free(gone);
	if (lost && s->pipe_gone != NULL && !atomic_load(&s->closing)) {
		// Out of memory for an id: the owner checks every pipe it
		// knows (0 is never a pipe's id).
		s->pipe_gone(0, s->pipe_arg);
	}
	// Keep enough contexts receiving while the loop holds requests.
	while (!atomic_load(&s->closing) &&
	    atomic_load(&s->receiving) < SRV_RECEIVERS &&
	    s->ncontexts < SRV_MAX_CONTEXTS) {
		if (srv_add(s) != TB_OK) {
			log_warn("server: cannot open another context");
			break;
		}
	}
}

int
srv_open(srv **sp, uv_loop_t *loop, const char *url,
    const guard_access *access, const remote      *rem,
    void (*handle)(srv_req *req, void *arg), void *arg)
{
	srv *s;
	int  rv;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		return (TB_ENOMEM);
	}
	s->handle = handle;
	s->arg    = arg;
	pthread_mutex_init(&s->mtx, NULL);
	if ((rv = nng_rep0_open(&s->sock)) != 0) {
		log_err("server: open rep socket: %s", nng_strerror(rv));
		pthread_mutex_destroy(&s->mtx);
		free(s);
		return (TB_ESYSTEM);
	}
	// Anything larger is dropped by the transport before we allocate
	// for it.
	nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, TBP_MAX_MSG);
	if ((rv = guard_listen(&s->guard, loop, s->sock, url, "requests",
	         access, remote_tls(rem))) != TB_OK) {
		nng_close(s->sock);
		pthread_mutex_destroy(&s->mtx);
		free(s);
		return (rv);
	}
	uv_async_init(loop, &s->async, srv_async_cb);
	s->async.data = s;
	for (int i = 0; i < SRV_RECEIVERS; i++) {
		if ((rv = srv_add(s)) != TB_OK) {
			srv_close(s);
			return (rv);
		}
	}
	*sp = s;
	return (TB_OK);
}

void
srv_reply(srv_req *r)
{
	srv     *s = r->srv;
	nng_msg *m;
	int      rv;

	tbp_req_fini(&r->req);
	if (atomic_load(&s->closing)) {
		return;
	}
	if ((rv = nng_msg_alloc(&m, r->out.size)) != 0) {
		log_err(
		    "server: no memory for a reply of %zu bytes", r->out.size);
		// Drop the reply; the client times out and may retry.
		srv_recv(r);
		return;
	}
	memcpy(nng_msg_body(m), r->out.data, r->out.size);
	msgpack_sbuffer_clear(&r->out);
	r->phase = SRV_SEND;
	atomic_fetch_add(&s->sending, 1);
	nng_aio_set_msg(r->aio, m);
	nng_ctx_send(r->ctx, r->aio);
}

int
srv_on_pipe_gone(srv *s, void (*cb)(uint32_t pipe_id, void *arg), void *arg)
{
	int rv;

	s->pipe_gone = cb;
	s->pipe_arg  = arg;
	if ((rv = nng_pipe_notify(
	         s->sock, NNG_PIPE_EV_REM_POST, srv_pipe_cb, s)) != 0) {
		log_err("server: pipe notify: %s", nng_strerror(rv));
		return (TB_ESYSTEM);
	}
	return (TB_OK);
}

uint32_t
srv_req_pipe(const srv_req *req)
{
	return ((uint32_t) nng_pipe_id(req->pipe));
}

bool
srv_pipe_alive(uint32_t pipe_id)
{
	nng_pipe     p = NNG_PIPE_INITIALIZER;
	nng_sockaddr sa;

	p.id = pipe_id;
	return (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) == 0);
}

void
srv_pipe_close(uint32_t pipe_id)
{
	nng_pipe p = NNG_PIPE_INITIALIZER;

	p.id = pipe_id;
	(void) nng_pipe_close(p); // its REM_POST follows
}

bool
srv_req_peer(const srv_req *req, uint64_t *uidp, uint64_t *gidp)
{
	return (
	    nng_pipe_get_uint64(req->pipe, NNG_OPT_IPC_PEER_UID, uidp) == 0 &&
	    nng_pipe_get_uint64(req->pipe, NNG_OPT_IPC_PEER_GID, gidp) == 0);
}

int
srv_sending(srv *s)
{
	return (atomic_load(&s->sending));
}

static void
srv_async_closed(uv_handle_t *h)
{
	free(h->data);
}

void
srv_close(srv *s)
{
	srv_req *r;

	if (s == NULL) {
		return;
	}
	atomic_store(&s->closing, true);
	guard_close(s->guard);
	(void) nng_pipe_notify(s->sock, NNG_PIPE_EV_REM_POST, NULL, NULL);
	nng_close(s->sock);
	while ((r = s->all) != NULL) {
		srv_unlink(s, r);
		srv_req_free(r);
	}
	pthread_mutex_destroy(&s->mtx);
	free(s->gone);
	s->gone = NULL;
	if (uv_is_active((uv_handle_t *) &s->async) || s->async.loop != NULL) {
		uv_close((uv_handle_t *) &s->async, srv_async_closed);
	} else {
		free(s);
	}
}
