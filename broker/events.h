// events.h: the PUB socket that announces task state changes.
//
// Each message is the topic "tb.<event>.<queue>.<handler>", a NUL byte and
// a msgpack map (see proto/tbp.h). PUB is best effort: a slow subscriber
// loses messages rather than slowing the broker, and clients can always ask
// for a task's state. Loop thread only.
//
// Threads: loop thread only.
// Lock order: no locks of ours (nng's PUB socket has its own).
// Ownership: the publisher owns its socket; events_publish copies what it
// sends.

#ifndef EVENTS_H
#define EVENTS_H

#include <stdint.h>

#include <uv.h>

#include "guard.h"
#include "remote.h"
#include "taskrec.h"

typedef struct events events;

// events_open listens on url (through a guard: see guard.h; access
// applies to an ipc url, rem's TLS configuration to tls+tcp; rem may be
// NULL for none). On success *ep owns the publisher. Returns TB_OK,
// TB_EINVAL (bad url), TB_EBUSY (address in use) or TB_ESYSTEM.
int events_open(events **ep, uv_loop_t *loop, const char *url,
    const guard_access *access, const remote *rem);

// events_publish announces event ("start", "done", ...) for the task t,
// reporting state and attempt as given (the task may have moved on since),
// t's crashes as they are now, and duration_us, the attempt's running time
// (0 if none).
void events_publish(events *ev, const char *event, const taskrec *t,
    uint32_t state, uint32_t attempt, uint64_t duration_us);

// events_close closes the socket. Accepts NULL.
void events_close(events *ev);

#endif // EVENTS_H
