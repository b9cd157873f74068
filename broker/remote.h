// remote.h: access control for the listeners other hosts can reach
// (tcp:// and tls+tcp://): the start-up policy, the token, the TLS
// material, and the rate-limited log of refused requests.
//
// DESIGN. An ipc peer is known by its credentials (server.h srv_req_peer);
// a tcp peer is known only by what it proves: the shared token every
// request carries (--token-file), or a client certificate signed by
// --tls-ca, which nng's TLS checks during the handshake, before any
// request arrives (the listener requires one when --tls-ca is given). The
// broker refuses to start with a listener on a non-loopback address that
// would take requests from peers who prove neither (remote_check). Events
// cannot be guarded by a token, as PUB never hears from its subscribers,
// so a non-loopback events listener needs mutual TLS.
//
// Threads: remote_check, remote_open and remote_close on the main thread
// before the loop runs or after it has stopped; the rest on the loop
// thread. remote_tls on any thread (it only reads).
// Lock order: no locks.
// Ownership: the broker owns the remote (remote_open, remote_close); the
// TLS configuration it hands to listeners is held by nng for as long as
// they need it.

#ifndef REMOTE_H
#define REMOTE_H

#include <stdbool.h>
#include <stdint.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

#include <tbp.h>

#include "config.h"

// remote_kind is what a url's scheme says about who can reach it.
typedef enum remote_kind {
	REMOTE_IPC   = 0, // ipc://: local, peers have credentials
	REMOTE_TCP   = 1, // tcp://, tcp4://, tcp6://
	REMOTE_TLS   = 2, // tls+tcp://, tls+tcp4://, tls+tcp6://
	REMOTE_OTHER = 3, // anything else: the broker refuses it
} remote_kind;

// remote_url_kind classifies url by its scheme. Any thread.
remote_kind remote_url_kind(const char *url);

// remote_url_loopback is true if url (tcp or tls+tcp) names a loopback
// host: an address in 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z) or the
// name localhost. Other names are not resolved and count as remote, and so
// do an empty host and "*" (every interface). Any thread.
bool remote_url_loopback(const char *url);

// remote_check refuses a configuration in which a tcp or tls+tcp listener
// on a non-loopback address would serve peers that prove nothing, an
// endpoint of another scheme, or TLS options that do not fit the
// endpoints. It reads no file and binds nothing. Returns 0, or -1 after
// logging why and what to add. Main thread, before anything listens.
int remote_check(const config *cfg);

typedef struct remote remote;

// remote_open reads the token file and the TLS certificate and key that
// cfg names (checked by remote_check first) and makes the server TLS
// configuration. A token file or key readable by other users is refused.
// On success *rp owns them. Returns TB_OK, TB_EINVAL (a file is missing,
// unreadable, too open or malformed: logged) or TB_ENOMEM. Main thread.
int remote_open(remote **rp, const config *cfg);

// remote_close frees r. Listeners that use its TLS configuration keep
// their own hold on it. Accepts NULL.
void remote_close(remote *r);

// remote_tls returns r's TLS configuration for tls+tcp listeners (owned
// by r), or NULL for none or a NULL r.
nng_tls_config *remote_tls(const remote *r);

// remote_token_ok is true if req may be served as far as the token goes:
// the request listener needs no token (ipc, or no --token-file), or req
// carries the right one (compared in constant time). Loop thread.
bool remote_token_ok(const remote *r, const tbp_req *req);

// remote_admin_ok is true if a peer without ipc credentials may send
// admin requests: the request listener is tcp or tls+tcp and each of its
// peers has proved itself (a token checked on every request, or a client
// certificate checked at the handshake). Loop thread.
bool remote_admin_ok(const remote *r);

// remote_refused logs that a request of op from the peer on pipe was
// refused for want of the right token: at most one line per peer address
// per REMOTE_LOG_PERIOD_US, each saying how many were not logged since;
// the table of peers is bounded (REMOTE_LOG_PEERS), and peers beyond it
// share one line per period. now_us is a monotonic time. Loop thread.
void remote_refused(remote *r, nng_pipe pipe, uint32_t op, int64_t now_us);

#define REMOTE_LOG_PERIOD_US (60 * 1000000LL)
#define REMOTE_LOG_PEERS 256

// remote_log_due is remote_refused's decision for the peer whose address
// is the key[0..16) of family: true if a line is due at now_us, with the
// count of refusals not logged before it in *suppressedp. Exposed for
// the unit test. Loop thread.
bool remote_log_due(remote *r, int family, const uint8_t key[16],
    int64_t now_us, uint64_t *suppressedp);

#endif // REMOTE_H
