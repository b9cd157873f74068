// ops.c: the op table, generated from TBP_OPS, and the dispatcher: the
// only place a handler's return code becomes a reply (see ops.h).
//
// Threads: loop thread only.

#include <inttypes.h>

#include "../log.h"
#include "ops.h"

// ops_entry is one row of the op table.
typedef struct ops_entry {
	ops_handler fn;
	bool        read_only; // writes nothing and answers at once
} ops_entry;

#define OPS_ENTRY_(n, v, s, id, ro) [TBP_OP_##n] = { handle_##id, ro },
static const ops_entry ops_table[] = { TBP_OPS(OPS_ENTRY_) };
#undef OPS_ENTRY_

_Static_assert(sizeof(ops_table) / sizeof(ops_table[0]) == TBP_OP_COUNT,
    "the op table has one row per op in TBP_OPS");

void
ops_dispatch(srv_req *req, void *arg)
{
	broker          *b = arg;
	const ops_entry *e;
	int              rv;

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
	if (b->phase >= PHASE_FINISHING && !e->read_only) {
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
