// guard.h: a listener that comes back by itself after nng 1.5.2's listener
// bug has stopped it.
//
// DESIGN. With nng 1.5.2 (what Debian 12 ships), a peer that connects and
// leaves during the SP handshake can make the transport end the core
// listener's pending accept with NNG_ECLOSED, which the core reads as
// "listener closed": it never accepts again, says nothing, and every later
// client negotiates with the transport and then waits in a list no one
// reads (nanomsg/nng#1518, #1446; fixed upstream after 1.5.2). One raw
// connect() and close() by any local process was enough, on ipc, tcp and
// tls+tcp alike. The common cause, a failed write of the listener's header
// (EPIPE, which nng maps to NNG_ECLOSED), is removed by nngfix.c; the
// guard is for the rest (a connection that nng itself closed between two
// steps of the handshake gives NNG_ECLOSED too).
//
// Every accept error is counted in the listener's statistics, NNG_ECLOSED
// as an "other" error, and that is what the guard watches. Every
// GUARD_EVERY_MS one loop timer, for all guards, copies nng's statistics
// (which copies every connection's, so the period grows with what a copy
// costs: the guard spends at most 1/GUARD_COST_SHARE of a core, up to
// GUARD_MAX_MS between looks). When a listener's "other" or "oom" count
// has grown, the listener is suspect: errors the core survives count
// there too (a peer that shut down cleanly during the handshake makes it
// pause 100 ms, then accept again), so the count alone cannot say.
//
// The probe says. On a suspicion the guard connects to the listener's own
// address (ipc path, or tcp address and port; a wildcard address through
// loopback) with a libuv stream, sends the SP header of the socket's peer
// protocol, and reads the broker's. The transport negotiates every
// connection whether or not the core still accepts, but only a live core
// accepts the probe and counts it in "accept". So: the accept count moved
// (the probe's or anyone's) — the listener lives and is kept; the probe
// was negotiated and not accepted for GUARD_CONFIRM_MS (well past the
// 100 ms pause), or was refused, or not negotiated in GUARD_PROBE_MAX_MS
// — it has stopped, and it is closed and a new one is started on the same
// url, with a (rate-limited) log line. The probe is closed only after the
// broker has both headers (its own sent, ours read), so it cannot itself
// fail a handshake; a probe accepted and closed is a clean disconnect.
// Before the probe, an idle listener that had only paused was replaced
// too, which closed its clients' connections and made nng's REQ resend
// their requests in flight (a cancel then ran twice). A tls+tcp listener
// gets no probe (the probe would need a TLS client of its own): there the
// listener is replaced when it accepted nothing for GUARD_CONFIRM_MS
// after the errors, idle or not. With nngfix.c such errors are rare (1 in
// about 1,000 raw connect-and-close here).
//
// What a replacement leaks: nng 1.5.2 never frees the connections a
// closed listener's transport had negotiated and the stopped core never
// accepted (their memory, about 1 KiB each, and their descriptors), nor
// the listener itself then. Clients that connected while it was stopped
// are among them, and so is the guard's probe.
//
// Closing an nng listener closes the connections it accepted, so clients
// of that listener reconnect (the client library does so within
// CLIENT_RECONNMINT_MS and sends its request again; submits are
// idempotent by their submission id). nng closes the old listening socket
// itself only when it has reaped the listener, which can be later; it has
// no name by then, so no one new reaches it. A new ipc listener is made
// with the socket's mode already set (nng sets it before listen(2)) and
// given its group at once.
//
// Threads: loop thread only (the timer and every call).
// Lock order: no locks of ours; nng_stats_get takes nng's statistics lock
// and releases it before the guard acts.
// Ownership: the guard borrows the socket and the TLS configuration (NULL
// for none); their owner closes them after guard_close.

#ifndef GUARD_H
#define GUARD_H

#include <stdint.h>
#include <sys/types.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <uv.h>

#define GUARD_EVERY_MS 20        // how often the listeners' counts are read,
#define GUARD_COST_SHARE 50      // unless a look costs more than 1/50th of
#define GUARD_MAX_MS 2000        // the period; never less often than this
#define GUARD_CONFIRM_MS 250     // probe not accepted this long: stopped
#define GUARD_PROBE_MAX_MS 2000  // probe not even negotiated this long
#define GUARD_LOG_EVERY_MS 10000 // at most one restart line per period

// guard_access is what --socket-mode and --socket-group ask of an ipc
// socket.
typedef struct guard_access {
	mode_t mode; // of the socket file
	gid_t  gid;  // (gid_t) -1: leave the group alone
} guard_access;

// guard_access_parse reads an octal mode (0 to 0777) and a group name or
// number ("" for none) into *a. Returns 0, or -1 after logging which of
// them is wrong.
int guard_access_parse(const char *mode, const char *group, guard_access *a);

typedef struct guard guard;

// guard_listen listens on url with sock and starts watching the listener
// on loop. what names it in log lines ("requests", "events"); access
// applies to ipc urls (NULL: nng's defaults); tls configures tls+tcp urls
// (NULL: none). On success *gp owns the guard. Returns TB_OK, TB_ENOMEM,
// or the broker error of the first listen (logged here, with the url).
int guard_listen(guard **gp, uv_loop_t *loop, nng_socket sock, const char *url,
    const char *what, const guard_access *access, nng_tls_config *tls);

// guard_restarts returns how many times the guard brought its listener
// back.
uint64_t guard_restarts(const guard *g);

// guard_close stops watching; the listener itself closes with its socket.
// The guard is freed once the loop has run its timer's close. Accepts
// NULL.
void guard_close(guard *g);

#endif // GUARD_H
