// util.c: see util.h.

#include "util.h"

#include <signal.h>
#include <time.h>

int64_t
util_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

int64_t
util_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

int
util_thread_start(pthread_t *tp, void *(*fn)(void *), void *arg)
{
	sigset_t all;
	sigset_t old;
	int      err;

	// The new thread inherits the mask: block everything around the
	// create, then restore the caller's.
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(tp, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return (err);
}
