// ops.c: the op table, generated from TBP_OPS, and the dispatcher: the
// only place a handler's return code becomes a reply (see ops.h).
//
// Threads: loop thread only.

#include <inttypes.h>

#include <unistd.h>

#include "../log.h"
#include "../util.h"
#include "ops.h"

// ops_entry is one row of the op table.
typedef struct ops_entry {
	ops_handler fn;
	int         flags; // TBP_RO, TBP_ADMIN
} ops_entry;

#define OPS_ENTRY_(n, v, s, id, fl) [TBP_OP_##n] = { handle_##id, fl },
static const ops_entry ops_table[] = { TBP_OPS(OPS_ENTRY_) };
#undef OPS_ENTRY_

_Static_assert(sizeof(ops_table) / sizeof(ops_table[0]) == TBP_OP_COUNT,
    "the op table has one row per op in TBP_OPS");

// ops_admin_peer says whether req's peer may send admin requests: over
// ipc, the broker's own user, root, or a member (by primary group) of
// --admin-group. A peer without credentials (tcp) may if it has proved
// itself (remote_admin_ok: the token, or a client certificate), else not.
// A refusal is logged at most once a second.
static bool
ops_admin_peer(broker *b, const srv_req *req)
{
	uint64_t uid   = 0;
	uint64_t gid   = 0;
	bool     known = srv_req_peer(req, &uid, &gid);
	int64_t  now;

	if (known &&
	    (uid == 0 || uid == (uint64_t) geteuid() ||
	        (b->admin_gid >= 0 && gid == (uint64_t) b->admin_gid))) {
		return (true);
	}
	if (!known && remote_admin_ok(b->rem)) {
		return (true);
	}
	now = util_mono_us();
	if (now - b->refused_log_us >= 1000000) {
		b->refused_log_us = now;
		if (known) {
			log_warn("request %s refused: uid %" PRIu64
			         " gid %" PRIu64
			         " is not an admin (--admin-group)",
			    tbp_op_name(req->req.op), uid, gid);
		} else {
			log_warn(
			    "request %s refused: admin requests need an "
			    "ipc peer, or a tcp listener with --token-file "
			    "or --tls-ca",
			    tbp_op_name(req->req.op));
		}
	}
	return (false);
}

void
ops_dispatch(srv_req *req, void *arg)
{
	broker          *b = arg;
	const ops_entry *e;
	int              rv;

	// The token first: a peer without it learns nothing else, not even
	// whether its request was well formed (tbp.h reads the token even
	// from a request of a newer version).
	if (!remote_token_ok(b->rem, &req->req)) {
		remote_refused(b->rem, req->pipe, req->req.op, util_mono_us());
		reply_error(req, TB_EUNAUTHORIZED, "missing or wrong token");
		return;
	}
	if (req->decode_rv != TB_OK) {
		log_warn("request %s (op %u, req %" PRIu64 ", %zu bytes): %s",
		    req->req.have_envelope ? tbp_op_name(req->req.op) : "?",
		    req->req.op, req->req.req_id, req->raw_len,
		    tbp_err_message(req->decode_rv));
		reply_error(req, req->decode_rv, NULL);
		return;
	}
	e = &ops_table[req->req.op];
	msgpack_sbuffer_clear(&req->out);
	if ((e->flags & TBP_ADMIN) != 0 && !ops_admin_peer(b, req)) {
		reply_error(req, TB_EUNAUTHORIZED, NULL);
		return;
	}
	if (b->phase >= PHASE_FINISHING && (e->flags & TBP_RO) == 0) {
		// The last writes are being flushed and the socket closes
		// soon: a request held now (wait, drain, cancel) or answered
		// after a commit would outlive the server's records.
		reply_error(req, TB_ESHUTTINGDOWN, NULL);
		return;
	}
	b->req_held = false;
	rv          = e->fn(b, req);
	if (b->req_held) {
		// Whoever holds it answers it; it may have been answered
		// already, so req is not to be read from here on.
		b->req_held = false;
		return;
	}
	if (rv != TB_OK && rv != TB_ENOTFOUND && rv != TB_ESTATE) {
		log_warn("request %s (req %" PRIu64 "): %s",
		    tbp_op_name(req->req.op), req->req.req_id,
		    tbp_err_message(rv));
	}
	reply_send(req, rv);
}
