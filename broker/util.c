// util.c: see util.h.

#include "util.h"

#include <signal.h>
#include <time.h>

#include <nng/nng.h>
#include <taskbroker/defs.h>

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
util_nng_err(int rv)
{
	switch (rv) {
	case 0:
		return (TB_OK);
	case NNG_ENOMEM:
		return (TB_ENOMEM);
	case NNG_EINVAL:
	case NNG_EADDRINVAL:
	case NNG_ENOTSUP:
		return (TB_EINVAL);
	case NNG_EADDRINUSE:
		return (TB_EBUSY);
	case NNG_ETIMEDOUT:
		return (TB_ETIMEDOUT);
	case NNG_ECLOSED:
		return (TB_ECLOSED);
	default:
		return (TB_ESYSTEM);
	}
}

const char *
util_state_name(int state)
{
#define UTIL_STATE_(c, v, n) case v: return (n);
	switch (state) {
		TB_STATES(UTIL_STATE_)
	}
#undef UTIL_STATE_
	return ("unknown");
}

int
util_state_final(int state)
{
	return (state == TB_STATE_DONE || state == TB_STATE_DEAD ||
	    state == TB_STATE_CANCELLED);
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
