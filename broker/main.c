// main.c: taskbrokerd's entry point: settings, directories, then the loop.

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <taskbroker/defs.h>

#include "config.h"
#include "fault.h"
#include "guard.h"
#include "log.h"
#include "loop.h"
#include "pidlock.h"
#include "remote.h"
#include "util.h"

#include <tbp.h>

// mkdir_p creates dir and its parents (mode 0750). Returns 0 or -1 (errno).
static int
mkdir_p(const char *dir)
{
	char *p;
	char *s;
	int   rv = 0;

	if ((p = strdup(dir)) == NULL) {
		return (-1);
	}
	for (s = p + 1; rv == 0; s++) {
		if (*s != '/' && *s != '\0') {
			continue;
		}
		char c = *s;
		*s     = '\0';
		if (mkdir(p, 0750) != 0 && errno != EEXIST) {
			rv = -1;
		}
		*s = c;
		if (c == '\0') {
			break;
		}
	}
	free(p);
	return (rv);
}

// ipc_dir creates the directory of an ipc:// endpoint's socket file, so
// the default ./run works on a fresh checkout. A directory it creates
// (not one that was there) gets the sockets' group, and lets through
// whom the socket mode lets connect.
static int
ipc_dir(const char *url, const guard_access *a)
{
	const char *path;
	const char *slash;
	char       *dir;
	int         rv = 0;
	bool        existed;
	mode_t      mode = 0750;

	if (strncmp(url, "ipc://", 6) != 0) {
		return (0);
	}
	path = url + 6;
	if ((slash = strrchr(path, '/')) == NULL || slash == path) {
		return (0);
	}
	if ((dir = strndup(path, (size_t) (slash - path))) == NULL) {
		return (-1);
	}
	existed = access(dir, F_OK) == 0;
	if (mkdir_p(dir) != 0) {
		log_err(
		    "cannot create %s for %s: %s", dir, url, strerror(errno));
		rv = -1;
	} else if (!existed) {
		if ((a->mode & 0007) != 0) {
			mode |= 0001; // others may connect: let them through
		}
		if ((a->gid != (gid_t) -1 &&
		        chown(dir, (uid_t) -1, a->gid) != 0) ||
		    chmod(dir, mode) != 0) {
			log_err("cannot set the group or mode of %s: %s", dir,
			    strerror(errno));
			rv = -1;
		}
	}
	free(dir);
	return (rv);
}

// raise_fd_limit lifts the soft limit on open files to the hard one: each
// running exec task holds three pipes, and the common soft limit of 1024
// would cap them at a few hundred.
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
			log_warn("cannot raise the open-file limit: %s",
			    strerror(errno));
		}
	}
}

// remote_url is true for an endpoint other hosts may reach (tcp, tls+tcp).
static bool
remote_url(const char *url)
{
	remote_kind k = remote_url_kind(url);

	return (k == REMOTE_TCP || k == REMOTE_TLS);
}

// check_remote_exec refuses a configuration in which a tcp listener would
// let any host that reaches it run any program as this user: with a tcp
// or tls+tcp endpoint, exec must be limited by --exec-allow. Returns 0 or
// -1 after saying why.
static int
check_remote_exec(const config *cfg)
{
	const char *url = remote_url(cfg->listen) ? cfg->listen
	    : remote_url(cfg->events)             ? cfg->events
	                                          : NULL;

	if (url == NULL || cfg->exec_allow.n > 0) {
		return (0);
	}
	log_err("%s can be reached from other hosts, and the exec handler "
	        "would run any program for them as this user: name the "
	        "programs it may run with --exec-allow (or listen on ipc://)",
	    url);
	return (-1);
}

// LOCKS_MAX is the number of locks a broker holds: its data directory and
// the socket paths of its two ipc endpoints.
#define LOCKS_MAX 3

// take_locks makes the data directory and each ipc socket path this
// broker's (pidlock.h); fds receives the locks. Returns 0, or -1 after
// logging why (every lock taken is released then).
static int
take_locks(const config *cfg, int fds[LOCKS_MAX])
{
	const char *urls[2] = { cfg->listen, cfg->events };
	char       *path;
	char       *what = NULL;
	int         n    = 0;
	int         err;

	for (int i = 0; i < LOCKS_MAX; i++) {
		fds[i] = -1;
	}
	if (asprintf(&path, "%s/taskbroker.lock", cfg->data_dir) < 0) {
		goto oom;
	}
	if (asprintf(&what, "data directory %s", cfg->data_dir) < 0) {
		free(path);
		goto oom;
	}
	fds[n] = pidlock_take(path, what);
	free(path);
	free(what);
	if (fds[n++] < 0) {
		goto fail;
	}
	for (int i = 0; i < 2; i++) {
		if ((path = pidlock_url_path(urls[i], &err)) == NULL) {
			if (err != 0) {
				goto oom;
			}
			continue;
		}
		fds[n] = pidlock_take(path, urls[i]);
		free(path);
		if (fds[n++] < 0) {
			goto fail;
		}
	}
	return (0);
oom:
	log_err("out of memory taking the broker's locks");
fail:
	for (int i = 0; i < LOCKS_MAX; i++) {
		pidlock_release(fds[i]);
		fds[i] = -1;
	}
	return (-1);
}

int
main(int argc, char **argv)
{
	config       cfg;
	broker      *b;
	int          locks[LOCKS_MAX];
	guard_access access_cfg;
	int          rv;

	config_init(&cfg);
	if ((rv = config_parse(&cfg, argc, argv, stdout, stderr)) !=
	    CONFIG_OK) {
		config_fini(&cfg);
		return (rv == CONFIG_EXIT ? 0 : 2);
	}
	log_threshold = cfg.log_level;
	log_setup(cfg.log_format == 1 ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT);
	// Test builds only: arm the fault sites $TB_FAULT names (fault.h).
	if (tb_fault_init_env() != 0) {
		config_fini(&cfg);
		return (2);
	}
	// Before anything is created or bound: who could reach the broker,
	// and what they must prove (remote.h).
	if (remote_check(&cfg) != 0 || check_remote_exec(&cfg) != 0) {
		config_fini(&cfg);
		return (2);
	}
	// A client that disappears mid-write must not kill the broker.
	signal(SIGPIPE, SIG_IGN);

	if (mkdir_p(cfg.data_dir) != 0) {
		log_err("cannot create data directory %s: %s", cfg.data_dir,
		    strerror(errno));
		config_fini(&cfg);
		return (1);
	}
	if (guard_access_parse(
	        cfg.socket_mode, cfg.socket_group, &access_cfg) != 0) {
		config_fini(&cfg);
		return (2);
	}
	if (ipc_dir(cfg.listen, &access_cfg) != 0 ||
	    ipc_dir(cfg.events, &access_cfg) != 0) {
		config_fini(&cfg);
		return (1);
	}
	if (take_locks(&cfg, locks) != 0) {
		config_fini(&cfg);
		return (1);
	}
	raise_fd_limit();
	if ((rv = broker_open(&b, &cfg)) != TB_OK) {
		log_err("taskbrokerd: not started (%s; the reason is logged "
		        "above)",
		    tbp_err_message(rv));
		rv = 1;
	} else {
		rv = broker_run(b);
		broker_close(b);
		log_info("taskbrokerd: stopped");
	}
	for (int i = 0; i < LOCKS_MAX; i++) {
		pidlock_release(locks[i]);
	}
	config_fini(&cfg);
	return (rv);
}
