// ops.h: the request handlers, one file per family (tasks.c, admin.c,
// schedules.c), and the op table in ops.c that TBP_OPS generates.
//
// DESIGN. Every op in proto's TBP_OPS list has one handler,
// handle_<ident>, with one signature. The dispatcher (ops_dispatch in
// ops.c) decodes, refuses writes while the broker flushes its last ones,
// refuses admin ops (TBP_ADMIN) from a peer that is not an admin, calls
// the handler and answers from its return code: TB_OK sends
// req->out (which the handler filled), any other code the error reply for
// it. A handler that keeps the request past its return (until a commit, a
// task's end, a timeout) holds it through held.c and returns TB_OK; the
// dispatcher then leaves it alone. Handlers never send replies nor pick
// wire codes.
//
// Threads: loop thread only.

#ifndef OPS_H
#define OPS_H

#include "../brokerimpl.h"

// ops_handler is the signature of every handle_<ident>: it handles req on
// broker b and returns TB_OK (req->out filled, or req held) or the error
// the dispatcher answers.
typedef int (*ops_handler)(broker *b, srv_req *req);

#define OPS_DECLARE_(n, v, s, id, fl) int handle_##id(broker *b, srv_req *req);
TBP_OPS(OPS_DECLARE_)
#undef OPS_DECLARE_

#endif // OPS_H
