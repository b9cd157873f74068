// handler_http.h: the "http" handler, one HTTP(S) request per attempt
// through nng's HTTP client (handler_http.md describes the payload, the
// result and which failures are retried).

#ifndef HANDLER_HTTP_H
#define HANDLER_HTTP_H

#include "config.h"

// http_handler_init prepares the TLS settings (peer verification always
// required, CAs from cfg->http_ca_file or else the system store) and
// registers "http" (a loop handler) with handlers_register. cfg must
// outlive the handler (it is read at each attempt for --http-allow-host).
// Returns TB_OK, or an error after a log line (an unreadable
// --http-ca-file, a taken name, no memory). Loop thread, at start, after
// handlers_init.
int http_handler_init(const config *cfg);

// http_handler_stop aborts the requests in flight (their attempts end with
// the error "cancelled"), waits until no nng callback of this module runs,
// and frees the TLS settings. Attempts started afterwards fail at once.
// Idempotent; a no-op before http_handler_init. Loop thread, at shutdown.
void http_handler_stop(void);

#endif // HANDLER_HTTP_H
