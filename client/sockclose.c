// sockclose.c: closing an nng socket without ever hanging the caller.
//
// DESIGN. With nng 1.5.2 (Debian 12's), nng_close can block for good. The
// cause, found with a debug build of Debian's nng under test_wedge: a
// connection closed by this side just as data arrives on it. The
// transport's read completes, and before its callback runs the pipe's
// close stops the read aio; the callback then starts the next read on
// the stopped aio, which nng 1.5.2 refuses without completing it
// (nni_aio_begin), so the protocol's receive waits on that connection's
// list for ever, with no cancel function. nng's single reaper thread then
// waits in pipe_destroy for that receive to end (nni_aio_stop), and every
// later nng_close in the process waits for the reaper: each one hangs.
// Upstream fixed the tcp side after 1.5.2 (nanomsg/nng#1636, checking the
// pipe's closed flag in the read callback) and the general case in 2024
// (nni_aio_stop aborts an aio that was begun and never scheduled); Debian
// 12 ships neither. A subscription closed while events flow is the usual
// trigger; a client closed while a late reply arrives can be one.
//
// A client library must not hang its caller on close, so
// tbc_close_socket runs nng_close on a thread of its own and waits for it
// at most TBC_CLOSE_WAIT_MS. In the normal case that is the time nng_close
// takes. A close that outlasts it means the reaper is stuck, and it stays
// stuck for the life of the process: no later close can finish either,
// so from then on the caller does not wait at all (tbc_reaper_stuck).
// Each such close's thread is left behind (detached, on a small stack,
// with every signal blocked so it never runs the application's handlers),
// holding only its socket: nng_close has by then closed the socket's
// connections, which is what the broker sees.
//
// Threads: any thread. Lock order: the closer's own mutex, a leaf.
// Ownership: the closer record is shared by the caller and the thread,
// each dropping one reference; the last frees it.

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include <nng/nng.h>

#include "client_impl.h"

#define TBC_CLOSE_WAIT_MS 2000
#define TBC_CLOSER_STACK (256 * 1024) // nng_close's depth, with ASan's

// tbc_reaper_stuck: a close has outlasted TBC_CLOSE_WAIT_MS (see above).
static atomic_bool tbc_reaper_stuck;

typedef struct tbc_closer {
	pthread_mutex_t mtx; // protects done and refs
	pthread_cond_t  cv;
	nng_socket      sock;
	bool            done;
	int             refs;
} tbc_closer;

static void
tbc_closer_rele(tbc_closer *k)
{
	int left;

	pthread_mutex_lock(&k->mtx);
	left = --k->refs;
	pthread_mutex_unlock(&k->mtx);
	if (left == 0) {
		pthread_cond_destroy(&k->cv);
		pthread_mutex_destroy(&k->mtx);
		free(k);
	}
}

static void *
tbc_closer_main(void *arg)
{
	tbc_closer *k = arg;

	nng_close(k->sock);
	pthread_mutex_lock(&k->mtx);
	k->done = true;
	pthread_cond_signal(&k->cv);
	pthread_mutex_unlock(&k->mtx);
	tbc_closer_rele(k);
	return (NULL);
}

// tbc_closer_start runs the closer thread with every signal blocked.
// Returns 0 or a pthread error.
static int
tbc_closer_start(tbc_closer *k)
{
	pthread_t      t;
	pthread_attr_t attr;
	sigset_t       all;
	sigset_t       old;
	int            err;

	pthread_attr_init(&attr);
	(void) pthread_attr_setstacksize(&attr, TBC_CLOSER_STACK);
	(void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&t, &attr, tbc_closer_main, k);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return (err);
}

// tbc_close_unguarded closes s on the caller's thread, when no closer
// thread can be had (no memory, no threads): as nng does, unless nng's
// reaper is known to be stuck, where that would hang for good; then the
// socket is left open (its memory and connections leak).
static void
tbc_close_unguarded(nng_socket s)
{
	if (!atomic_load(&tbc_reaper_stuck)) {
		nng_close(s);
	}
}

void
tbc_close_socket(nng_socket s)
{
	pthread_condattr_t attr;
	struct timespec    deadline;
	tbc_closer        *k;

	if ((k = calloc(1, sizeof(*k))) == NULL) {
		tbc_close_unguarded(s);
		return;
	}
	pthread_mutex_init(&k->mtx, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&k->cv, &attr);
	pthread_condattr_destroy(&attr);
	k->sock = s;
	k->refs = 2; // the caller's and the thread's
	if (tbc_closer_start(k) != 0) {
		k->refs = 1;
		tbc_closer_rele(k);
		tbc_close_unguarded(s);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += TBC_CLOSE_WAIT_MS / 1000;
	deadline.tv_nsec += (long) (TBC_CLOSE_WAIT_MS % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&k->mtx);
	while (!k->done && !atomic_load(&tbc_reaper_stuck)) {
		if (pthread_cond_timedwait(&k->cv, &k->mtx, &deadline) ==
		    ETIMEDOUT) {
			atomic_store(&tbc_reaper_stuck, !k->done);
			break;
		}
	}
	pthread_mutex_unlock(&k->mtx);
	tbc_closer_rele(k);
}
