// util.c: see util.h.

#include "util.h"

#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

// util_clock_us reads clock id in microseconds.
static int64_t
util_clock_us(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return ((int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

int64_t
util_now_us(void)
{
	return (util_clock_us(CLOCK_REALTIME));
}

int64_t
util_mono_us(void)
{
	return (util_clock_us(CLOCK_MONOTONIC));
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

int
util_group_id(const char *name, int64_t *gidp)
{
	struct group *gr;
	char         *end;
	long          v;

	errno = 0;
	v     = strtol(name, &end, 10);
	if (errno == 0 && end != name && *end == '\0' && v >= 0) {
		*gidp = v;
		return (0);
	}
	if ((gr = getgrnam(name)) == NULL) {
		return (-1);
	}
	*gidp = (int64_t) gr->gr_gid;
	return (0);
}
