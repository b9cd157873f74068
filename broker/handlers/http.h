// handlers/http.h: the built-in "http" handler, one HTTP(S) request per
// attempt through nng's HTTP client.
//
// DESIGN. An attempt is one request driven by one nng aio through its
// steps (resolve, connect, write, read the head, read the body, and again
// for each redirect the payload lets it follow) on the module's resolver
// threads and nng's threads, which end the attempt with tb_run_finish;
// cancel aborts the aio. The host is resolved once per hop and the
// connection goes to the very address that passed the internal-address
// check (--http-allow-internal). http.c says more; README.md's section on
// the http handler describes the payload, the result and which failures
// are retried.
//
// Threads: init, stop, run and cancel on the loop thread; getaddrinfo and
// the start of each connection on HTTP_RESOLVERS detached resolver
// threads; the request's callbacks on nng's threads.
// Lock order: two leaf mutexes (the requests in flight and the resolver
// queue; the TLS cache), never held together; nng's locks are taken
// inside nng calls made with either held, never the other way round.
// Ownership: a request belongs to its attempt until the callback ends it;
// its aio and client are then freed on the loop thread. The TLS settings
// are this module's until http_handler_stop.

#ifndef HANDLER_HTTP_H
#define HANDLER_HTTP_H

#include "config.h"

// http_handler_init prepares the TLS settings (peer verification always
// required, CAs from cfg->http_ca_file or else the system store) and
// registers "http" (a loop handler) with handlers_register, parses
// --http-allow-internal and starts the resolver threads. cfg must outlive
// the handler (it is read at each attempt and redirect for
// --http-allow-host). Returns TB_OK, or an error after a log line (an
// unreadable --http-ca-file, a bad --http-allow-internal entry, a taken
// name, no memory or threads). Loop thread, at start, after
// handlers_init.
int http_handler_init(const config *cfg);

// http_handler_stop aborts the requests in flight (their attempts end with
// the error "cancelled"), waits (at most HTTP_STOP_WAIT_S) until no nng
// callback of this module runs and the resolver threads have ended, and
// frees the TLS settings. Attempts started afterwards fail at once.
// Idempotent; a no-op before http_handler_init. Loop thread, at shutdown.
void http_handler_stop(void);

#endif // HANDLER_HTTP_H
