// pidlock.c: see pidlock.h.

#include "pidlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "log.h"

// pidlock_holder reads the pid written in the lock file fd, or 0.
static long
pidlock_holder(int fd)
{
	char    buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	if (n <= 0) {
		return (0);
	}
	buf[n] = '\0';
	return (strtol(buf, NULL, 10));
}

int
pidlock_take(const char *path, const char *what)
{
	char buf[32];
	int  fd;
	int  n;

	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0) {
		log_err("cannot open the lock file %s of %s: %s", path, what,
		    strerror(errno));
		return (-1);
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int  err    = errno;
		long holder = pidlock_holder(fd);
		if (err == EWOULDBLOCK) {
			log_err(
			    "%s is in use by taskbrokerd pid %ld (it holds "
			    "%s); not starting a second broker on it",
			    what, holder, path);
		} else {
			log_err("cannot lock %s (%s): %s", path, what,
			    strerror(err));
		}
		close(fd);
		return (-1);
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long) getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t) n, 0) != n) {
		// The lock holds all the same; only the pid in it is missing.
		log_warn(
		    "cannot write the pid into %s: %s", path, strerror(errno));
	}
	return (fd);
}

char *
pidlock_url_path(const char *url, int *errp)
{
	char *path;

	*errp = 0;
	if (strncmp(url, "ipc://", 6) != 0) {
		return (NULL);
	}
	if (asprintf(&path, "%s.lock", url + 6) < 0) {
		*errp = -1;
		return (NULL);
	}
	return (path);
}

void
pidlock_release(int fd)
{
	if (fd >= 0) {
		close(fd); // closing the descriptor drops the flock
	}
}
