// sockclose.c: closing an nng socket without ever hanging the caller.
//
// DESIGN. With nng 1.5.2, nng_close can block for good when it races the
// socket's own reconnection attempts to a peer that has gone (seen in
// tb_sub_close and tb_client_close after the broker exited: the close
// waits on a condition that nothing signals). A client library must not
// hang its caller on close, so tbc_close_socket runs nng_close on a
// thread of its own and waits for it at most TBC_CLOSE_WAIT_MS. In the
// normal case that is the time nng_close takes; in the stuck case the
// caller goes on, and the thread is left behind (detached, with every
// signal blocked so it never runs the application's handlers), holding
// only that socket.
//
// Threads: any thread. Lock order: the closer's own mutex, a leaf.
// Ownership: the closer record is shared by the caller and the thread,
// each dropping one reference; the last frees it.

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include <nng/nng.h>

#include "client_impl.h"

#define TBC_CLOSE_WAIT_MS 2000

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
	pthread_t t;
	sigset_t  all;
	sigset_t  old;
	int       err;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&t, NULL, tbc_closer_main, k);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err == 0) {
		pthread_detach(t);
	}
	return (err);
}

void
tbc_close_socket(nng_socket s)
{
	pthread_condattr_t attr;
	struct timespec    deadline;
	tbc_closer        *k;

	if ((k = calloc(1, sizeof(*k))) == NULL) {
		nng_close(s); // no memory for the guard: close as nng does
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
		nng_close(s);
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
	while (!k->done &&
	    pthread_cond_timedwait(&k->cv, &k->mtx, &deadline) != ETIMEDOUT) {
	}
	pthread_mutex_unlock(&k->mtx);
	tbc_closer_rele(k);
}
