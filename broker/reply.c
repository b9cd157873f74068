// reply.c: the one place an error code becomes a wire reply, and the
// replies the loop sends after a request's handler has returned.
//
// Threads: loop thread only.
// Ownership: each call ends the loop's use of req: the server owns it
// again once the reply is on its way.

#include "brokerimpl.h"

void
reply_error(srv_req *req, int code, const char *msg)
{
	msgpack_sbuffer_clear(&req->out);
	if (tbp_enc_rep_error(
	        &req->out, req->req.op, req->req.req_id, code, msg) != TB_OK) {
		msgpack_sbuffer_clear(&req->out);
	}
	srv_reply(req);
}

void
reply_send(srv_req *req, int rv)
{
	if (rv != TB_OK) {
		reply_error(req, rv, NULL);
		return;
	}
	srv_reply(req);
}

// reply_encoded sends what an encoder just wrote to req->out, or
// out_of_memory if it could not.
static void
reply_encoded(srv_req *req, int rv)
{
	reply_send(req, rv == TB_OK ? TB_OK : TB_ENOMEM);
}

void
reply_task(srv_req *req, const tbp_task_info *ti, bool timed_out)
{
	msgpack_sbuffer_clear(&req->out);
	reply_encoded(req,
	    tbp_enc_rep_task(
	        &req->out, req->req.op, req->req.req_id, ti, timed_out));
}

void
reply_count(srv_req *req, uint64_t count)
{
	msgpack_sbuffer_clear(&req->out);
	reply_encoded(req,
	    tbp_enc_rep_count(&req->out, req->req.op, req->req.req_id, count));
}

void
reply_empty(srv_req *req)
{
	msgpack_sbuffer_clear(&req->out);
	reply_encoded(
	    req, tbp_enc_rep_empty(&req->out, req->req.op, req->req.req_id));
}
