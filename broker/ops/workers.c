// ops/workers.c: the worker ops (worker_hello, worker_take, worker_done,
// worker_bye) and the workers list; the logic is in worker.c, whose
// DESIGN paragraph describes the model.
//
// Threads: loop thread only.

#include "ops.h"

// handle_worker_hello registers a worker bound to req's connection.
int
handle_worker_hello(broker *b, srv_req *req)
{
	return (worker_hello(b, req));
}

// handle_worker_take holds req until there is a job, a cancel notice or
// a stop notice for the worker, or a heartbeat passes.
int
handle_worker_take(broker *b, srv_req *req)
{
	return (worker_take(b, req));
}

// handle_worker_done applies a worker's result if its attempt is current
// (fencing), else refuses it with TB_ESTALE.
int
handle_worker_done(broker *b, srv_req *req)
{
	return (worker_done(b, req));
}

// handle_worker_bye ends a worker gracefully, taking back what it hands
// back without counting the attempts.
int
handle_worker_bye(broker *b, srv_req *req)
{
	return (worker_bye(b, req));
}

// handle_workers lists the connected workers.
int
handle_workers(broker *b, srv_req *req)
{
	return (worker_list(b, req));
}
