// notify.c: the broker's side of systemd's service notification
// (Type=notify): READY once the store is open, recovery done and every
// listener bound; STATUS with the counts every NOTIFY_STATUS_MS;
// STOPPING when a shutdown begins; WATCHDOG=1 at half the WatchdogSec
// period when the unit sets one. libsystemd's sd_notify does the sending
// (Debian's libsystemd-dev): without $NOTIFY_SOCKET every call does
// nothing, so a broker not started by systemd behaves as before.
//
// Threads: loop thread only. Ownership: the timers are the broker's and
// are closed with its other handles.

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "brokerimpl.h"
#include "log.h"

#define NOTIFY_STATUS_MS 5000 // how often STATUS is refreshed

// notify_status sends STATUS= with the broker's counts, and READY=1 as
// well when ready is set.
static void
notify_status(broker *b, bool ready)
{
	int rv;

	rv = sd_notifyf(0,
	    "%sSTATUS=%s: %" PRIu64 " pending, %u running, %u worker(s)",
	    ready ? "READY=1\n" : "",
	    b->phase == PHASE_RUNNING ? "serving" : "shutting down",
	    b->counts[TB_STATE_PENDING], b->running, worker_count(b));
	if (rv < 0 && ready) {
		log_warn(
		    "systemd: cannot notify readiness: %s", strerror(-rv));
	}
}

static void
notify_status_tick(uv_timer_t *t)
{
	notify_status(t->data, false);
}

static void
notify_watchdog_tick(uv_timer_t *t)
{
	(void) t;
	(void) sd_notify(0, "WATCHDOG=1");
}

void
notify_ready(broker *b)
{
	uint64_t usec = 0;

	if (getenv("NOTIFY_SOCKET") == NULL) {
		return; // not under systemd's notification: nothing to do
	}
	notify_status(b, true);
	uv_timer_init(&b->loop, &b->notify_timer);
	b->notify_timer.data = b;
	uv_timer_start(&b->notify_timer, notify_status_tick, NOTIFY_STATUS_MS,
	    NOTIFY_STATUS_MS);
	uv_unref((uv_handle_t *) &b->notify_timer);
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		uint64_t ms = usec / 2000 > 0 ? usec / 2000 : 1;
		uv_timer_init(&b->loop, &b->watchdog_timer);
		uv_timer_start(
		    &b->watchdog_timer, notify_watchdog_tick, 0, ms);
		uv_unref((uv_handle_t *) &b->watchdog_timer);
		log_info("systemd: watchdog every %" PRIu64 " ms (WatchdogSec "
		         "%" PRIu64 " ms)",
		    ms, usec / 1000);
	}
}

void
notify_stopping(broker *b)
{
	(void) b;
	(void) sd_notify(0, "STOPPING=1\nSTATUS=shutting down");
}
