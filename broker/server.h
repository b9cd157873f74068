// server.h: the request socket.
//
// DESIGN. One nng REP socket with many contexts, each with its own aio and
// one srv_req record. A context's life is a cycle: receive (nng thread:
// decode the request, post the record to the inbox, wake the loop), handle
// (loop thread: srv's handle callback; the reply may be sent at once or
// much later, e.g. after a store commit or when a waited-for task ends),
// send (srv_reply on the loop thread starts an async send), and on send
// completion (nng thread) receive again. Decoding happens on the nng thread
// because it needs no shared state; nothing else does. The server keeps
// SRV_RECEIVERS contexts receiving: when the loop holds many requests (long
// waits), it opens more, so held requests never starve new ones; surplus
// contexts are closed when their send completes.
//
// Connections that close (NNG_PIPE_EV_REM_POST, an nng thread) are posted
// to the loop the same way, for the owner of pipe_gone (workers: a
// worker's attempts belong to its connection).
//
// Lock order: only srv.mtx (the inbox) exists.
//
// Threads: srv_open, srv_reply, srv_sending and srv_close on the loop
// thread; receive, decode and send completions on nng threads.
// Ownership: the server owns every srv_req; the loop borrows one from its
// handle callback until srv_reply.

#ifndef SERVER_H
#define SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include <msgpack.h>
#include <nng/nng.h>
#include <uv.h>

#include <tbp.h>

#include "guard.h"
#include "remote.h"

#define SRV_RECEIVERS 64       // contexts kept receiving
#define SRV_MAX_CONTEXTS 65536 // hard cap on contexts (memory bound)

typedef struct srv srv;

typedef struct srv_req {
	srv     *srv;
	nng_ctx  ctx;
	nng_aio *aio;
	int      phase; // internal

	tbp_req         req;       // the decoded request
	int             decode_rv; // TB_OK or why decoding failed
	size_t          raw_len;   // its size on the wire
	nng_pipe        pipe;      // the connection it came on
	msgpack_sbuffer out;       // the reply, filled by the loop

	void *data; // the loop's

	struct srv_req *next;                // inbox link
	struct srv_req *all_prev, *all_next; // every record (loop thread)
} srv_req;

// srv_open listens on url (through a guard: see guard.h; access applies
// to an ipc url, rem's TLS configuration to tls+tcp; rem may be NULL for
// none) and starts receiving. handle(req, arg) is called on the loop
// thread for each request, including undecodable ones (req->decode_rv !=
// TB_OK); it must lead to exactly one srv_reply(req). Returns TB_OK,
// TB_EINVAL, TB_EBUSY (address in use) or TB_ESYSTEM.
int srv_open(srv **sp, uv_loop_t *loop, const char *url,
    const guard_access *access, const remote      *rem,
    void (*handle)(srv_req *req, void *arg), void *arg);

// srv_reply sends req->out as the reply. The loop must not touch req
// afterwards. Loop thread.
void srv_reply(srv_req *req);

// srv_req_peer writes the user and primary group of the process that sent
// req, where the transport knows them (ipc), and returns true; false for a
// peer without credentials (tcp) or one that has gone. Loop thread; read
// only when an op needs it, not on every request.
bool srv_req_peer(const srv_req *req, uint64_t *uidp, uint64_t *gidp);

// srv_on_pipe_gone asks for cb(pipe_id, arg) on the loop thread whenever a
// connection to the socket closes (after the requests that came on it
// before have been handled); pipe_id 0 means "some pipes closed, check
// every one you know" (out of memory for the list). Loop thread, once,
// after srv_open. Returns TB_OK or TB_ESYSTEM.
int srv_on_pipe_gone(
    srv *s, void (*cb)(uint32_t pipe_id, void *arg), void *arg);

// srv_req_pipe returns the id of the connection req came on (never 0).
uint32_t srv_req_pipe(const srv_req *req);

// srv_pipe_alive says whether the connection pipe_id is still open.
bool srv_pipe_alive(uint32_t pipe_id);

// srv_pipe_close closes the connection pipe_id (a peer that stopped
// answering); pipe_gone follows. Loop thread.
void srv_pipe_close(uint32_t pipe_id);

// srv_sending returns the number of replies still being sent.
int srv_sending(srv *s);

// srv_close stops the socket and frees every record, including requests
// the loop still holds: the loop must forget them first. Loop thread; the
// loop must run once more afterwards for libuv close callbacks.
void srv_close(srv *s);

#endif // SERVER_H
