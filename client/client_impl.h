// client_impl.h: helpers shared by the files of libtaskbroker. Private: not
// installed, not exported.
//
// Threads: any thread. Lock order: tbc_async's mutex (async.c) is never
// held while tb_client's own is taken, and the reverse: each is a leaf.
// Ownership: nothing kept, except as said per function.

#ifndef TB_CLIENT_IMPL_H
#define TB_CLIENT_IMPL_H

#include <stdbool.h>
#include <stddef.h>

#include <nng/nng.h>

#include <taskbroker.h>

#include "tbp.h"

// tbc_url_ok is true if url looks like "scheme://rest". nng itself checks
// the rest at dial time; this only rejects garbage early without calling
// into nng (which must not be touched before the first real use, see
// tb_client_open). Any thread.
bool tbc_url_ok(const char *url);

// tbc_close_socket closes s as nng_close does, but returns after at most a
// couple of seconds even if nng_close hangs (nng 1.5.2 can, when the close
// races a reconnection to a peer that has gone; see sockclose.c). Any
// thread; s must not be used afterwards.
void tbc_close_socket(nng_socket s);

// tbc_conn is what a client or a subscription proves to the broker, as
// resolved from tb_conn_opts and the environment (conn.c). Every field is
// NULL (0) when not set.
typedef struct tbc_conn {
	char  *token; // sent with every request
	size_t token_len;
	char  *ca_file;     // verifies the broker; NULL: the system's store
	char  *cert_pem;    // the client's certificate chain (mutual TLS)
	char  *key_pem;     // its private key
	size_t key_len;     // of key_pem, for wiping it
	char  *server_name; // NULL: the url's host
} tbc_conn;

// tbc_conn_init resolves o (NULL: every field from the environment) into
// cn and reads the files it names. Returns TB_OK, TB_EINVAL (a file is
// missing or unreadable, a certificate without its key or the reverse, a
// token that is empty, over TBP_MAX_TOKEN bytes or holds a NUL) or
// TB_ENOMEM; on an error cn holds nothing. Does not touch nng. Any thread.
int tbc_conn_init(tbc_conn *cn, const tb_conn_opts *o);

// tbc_conn_fini wipes and frees what cn holds. Safe on a zeroed cn.
void tbc_conn_fini(tbc_conn *cn);

// tbc_url_tls is true for a tls+tcp:// (tls+tcp4, tls+tcp6) url.
bool tbc_url_tls(const char *url);

// tbc_dial dials url on s as nng_dial(s, url, dp, flags) does, with
// cn's TLS settings if url is tls+tcp; *dp (dp may be NULL) is the new
// dialer. Returns a tb_err: nng's codes mapped as tbp_nng_err does for a
// dial, and TB_EINVAL for TLS material nng cannot use or a url without a
// host to verify. Any thread.
int tbc_dial(nng_socket s, const char *url, const tbc_conn *cn, int flags,
    nng_dialer *dp);

// tbc_dialer_pipes returns how many connections dialer d has open
// (nng's "pipes" statistic), or -1 if the statistics do not say. It
// copies all of nng's statistics: for a dialer suspected to have
// stopped, not for every call. Any thread.
int64_t tbc_dialer_pipes(nng_dialer d);

// tbc_redialer is a socket's one dialer and when it was last replaced.
typedef struct tbc_redialer {
	nng_dialer dialer;
	int64_t    last; // tbc_now_ms of its making or last replacement
} tbc_redialer;

// TBC_REDIAL_MS: a dialer is replaced at most this often.
#define TBC_REDIAL_MS 1000

// tbc_redial replaces r's dialer on s by a new non-blocking one for url
// (cn's settings) when it has no connection, at most once per
// TBC_REDIAL_MS. nng 1.5.2's dialer stops for good when a connection it
// made is closed during the SP handshake (it reads the NNG_ECLOSED it gets
// as "dialer closed"; the listener's side of the same bug is
// broker/guard.h's), which a broker stopping while its peers reconnect
// can cause: the socket would then never reach the restarted broker. With
// no connection open, closing the dialer disturbs nothing; one that was
// only retrying is replaced by one that retries too. The caller
// serialises calls for one r.
void tbc_redial(
    tbc_redialer *r, nng_socket s, const char *url, const tbc_conn *cn);

// ---- requests, shared by the blocking calls (client.c) and the
// asynchronous ones (async.c) ----------------------------------------------

// tbc_call is one request/reply exchange: the decoded reply and the
// message whose bytes it may point into.
typedef struct tbc_call {
	tbp_rep  rep;
	nng_msg *msg;
	bool     decoded;
} tbc_call;

// tbc_call_fini frees what call holds and leaves it empty. Safe on a
// zeroed or already finished call.
void tbc_call_fini(tbc_call *call);

// tbc_acquire checks the process (TB_EFORK in a forked child), opens and
// dials the client's socket on first use (synchronously: this may take
// up to about CLIENT_DIAL_RETRY_MS against a broker that is not there)
// and marks the client busy, so that tb_client_close waits for it. On
// TB_OK *sp is the socket and the caller must tbc_release(c).
int  tbc_acquire(tb_client *c, nng_socket *sp);
void tbc_release(tb_client *c);

// tbc_timeout is the client's request timeout in milliseconds.
int64_t tbc_timeout(tb_client *c);

// tbc_now_ms is CLOCK_MONOTONIC in milliseconds; tbc_clamp_ms bounds ms to
// 1..INT32_MAX for an nng timeout.
int64_t      tbc_now_ms(void);
nng_duration tbc_clamp_ms(int64_t ms);

// tbc_call_msg adds the client's token (if any) to the request encoded in
// b and copies it into a new message *msgp (the caller's). Returns a
// tb_err code.
int tbc_call_msg(tb_client *c, msgpack_sbuffer *b, nng_msg **msgp);

// tbc_call_resend sets ctx's resend time for a request that may wait up
// to timeout milliseconds for its reply (see client.c).
void tbc_call_resend(tb_client *c, nng_ctx ctx, int64_t timeout);

// tbc_call_decode decodes the reply msg to the request (op, req_id) into
// call, which owns msg from here whatever the result. Returns the broker's
// status (TB_OK only if it answered ok; call->rep then holds the reply,
// and also with a broker error), or TB_EPROTO.
int tbc_call_decode(
    tbc_call *call, nng_msg *msg, uint32_t op, uint64_t req_id);

// tbc_submit_encode checks specs[0..n) as tb_submit_batch does and
// encodes them with fresh submission ids into b (initialised by the
// caller, who destroys it); *req_idp receives the request id. Returns a
// tb_err code (TB_EINVAL, TB_ETOOBIG, TB_ENOMEM, TB_ESYSTEM).
int tbc_submit_encode(tb_client *c, const tb_task_spec *specs, size_t n,
    msgpack_sbuffer *b, uint64_t *req_idp);

// tbc_submit_decode copies the ids of a submit reply of n tasks to ids
// and their flags (TB_SUBMIT_*) to flags; either may be NULL. TB_EPROTO
// if the reply does not carry n ids.
int tbc_submit_decode(
    const tbp_rep *rep, size_t n, tb_id *ids, uint32_t *flags);

// tbc_task_encode encodes status, cancel or wait (for wait_ms; < 0: the
// broker's maximum) of task id into b; *req_idp receives the request id
// and *timeoutp how long the reply may take in all.
int tbc_task_encode(tb_client *c, uint32_t op, tb_id id, int64_t wait_ms,
    msgpack_sbuffer *b, uint64_t *req_idp, int64_t *timeoutp);

// tbc_task_decode copies the task of a status, cancel or wait reply to
// *tp (may be NULL; the caller's, to tb_task_free). For a wait whose
// reply says the task had not ended in time it returns TB_ETIMEDOUT with
// *tp set. TB_EPROTO without a task.
int tbc_task_decode(const tbp_rep *rep, uint32_t op, tb_task **tp);

// ---- the asynchronous side (async.c) --------------------------------------

typedef struct tbc_async tbc_async;

// tbc_async_alloc makes the asynchronous state of client c (no nng, no
// file descriptor yet). Returns TB_OK or TB_ENOMEM. Opener's thread.
int tbc_async_alloc(tbc_async **asp, tb_client *c);

// tbc_async_shutdown is tb_client_close's first pass: no new asynchronous
// op starts; every op in flight is aborted and completes with TB_ECLOSED
// (callback called, or queued); returns once no op is in flight and no
// callback runs. The socket is still open.
void tbc_async_shutdown(tbc_async *as);

// tbc_async_fini is tb_client_close's last pass, after the socket is
// closed: frees the ops cached and those completed but never taken from
// the queue, and closes the completion descriptor. Returns true if the
// client may be freed now; false if ops delivered to the caller are still
// alive, in which case the last tb_op_free calls tbc_client_free.
bool tbc_async_fini(tbc_async *as);

// tbc_async_free frees as without touching nng (a forked child, or a
// client that never started an op) .
void tbc_async_free(tbc_async *as);

// tbc_client_async returns c's asynchronous state.
tbc_async *tbc_client_async(tb_client *c);

// tbc_client_forked is true in a process other than the one that opened c.
bool tbc_client_forked(const tb_client *c);

// tbc_client_free frees c's memory after tb_client_close (and as with it).
void tbc_client_free(tb_client *c);

#endif // TB_CLIENT_IMPL_H
