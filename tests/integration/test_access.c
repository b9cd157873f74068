// test_access.c: who may connect over ipc, and who may send admin
// requests. The sockets get --socket-mode
// (default 0660) and --socket-group, so a client running as another user
// connects when it is in that group and is refused when it is not. The
// clients here are the real CLI started as uid 65534 (nobody) with
// setpriv. Bad values stop the start with a clear message.

#include "harness.h"

#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// copy_to copies the file from into dir (mode 0755): the build tree may
// lie below a directory uid 65534 cannot enter, the test's own cannot.
static void
copy_to(const char *dir, const char *from, const char *name)
{
	char   to[TBH_PATH + 64];
	size_t n;
	char  *buf = tbh_read_file(from, &n);
	FILE  *fp;

	assert_non_null(buf);
	snprintf(to, sizeof(to), "%s/%s", dir, name);
	assert_non_null(fp = fopen(to, "wb"));
	assert_int_equal(fwrite(buf, 1, n, fp), n);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(chmod(to, 0755), 0);
	free(buf);
}

// cli_as runs the CLI with args (NULL-terminated, at most 8) as uid 65534
// with group gid only, from a copy of the CLI and its library in the
// test's directory; *errp (may be NULL) receives its stderr. Returns its
// exit code.
static int
cli_as(tbh_fix *f, const char *gid, const char *const *args, char **errp)
{
	const char *cli = getenv("TB_CLI_BIN");
	char        lib[TBH_PATH + 32];
	char        bin[TBH_PATH + 16];
	char        regid[32];
	char       *slash;
	char       *argv[20] = { "/usr/bin/setpriv", "--reuid=65534", regid,
		      "--clear-groups", bin, "--broker", f->b.url, "--timeout",
		      "3s" };
	int         n        = 9;

	assert_non_null(cli);
	snprintf(lib, sizeof(lib), "%s", cli);
	assert_non_null(slash = strrchr(lib, '/'));
	snprintf(slash + 1, sizeof(lib) - (size_t) (slash + 1 - lib),
	    "libtaskbroker.so.0");
	copy_to(f->b.dir, cli, "taskbroker");
	copy_to(f->b.dir, lib, "libtaskbroker.so.0");
	snprintf(bin, sizeof(bin), "%s/taskbroker", f->b.dir);
	snprintf(regid, sizeof(regid), "--regid=%s", gid);
	for (int i = 0; args[i] != NULL && n < 19; i++) {
		argv[n++] = (char *) args[i];
	}
	argv[n] = NULL;
	setenv("LD_LIBRARY_PATH", f->b.dir, 1); // for the children only
	return (tbh_run(argv, TBH_MS(10000), NULL, errp, f->b.dir));
}

// ping_as is cli_as with ping.
static int
ping_as(tbh_fix *f, const char *gid)
{
	const char *const args[] = { "ping", NULL };

	return (cli_as(f, gid, args, NULL));
}

static void
expect_socket(const char *url, mode_t mode, gid_t gid)
{
	struct stat st;

	assert_int_equal(stat(url + 6, &st), 0);
	if ((st.st_mode & 0777) != mode || st.st_gid != gid) {
		print_error("%s: mode %03o group %u, want %03o group %u\n",
		    url, (unsigned) (st.st_mode & 0777), (unsigned) st.st_gid,
		    (unsigned) mode, (unsigned) gid);
		fail();
	}
}

static void
test_socket_group_lets_its_members_in_and_no_one_else(void **state)
{
	const char *const args[] = { "--socket-group", "65534", NULL };
	tbh_fix          *f      = *state;
	int               code;

	tbh_fix_start(f, args);
	// The harness's directory is the sockets' own: let others through.
	assert_int_equal(chmod(f->b.dir, 0711), 0);
	expect_socket(f->b.url, 0660, 65534);
	expect_socket(f->b.events_url, 0660, 65534);
	if ((code = ping_as(f, "65534")) != 0) {
		print_error(
		    "a member of the socket group: ping exit %d\n", code);
		fail();
	}
	if ((code = ping_as(f, "65533")) != 3) {
		print_error("not a member: ping exit %d, want 3\n", code);
		fail();
	}
	f->passed = true;
}

static void
test_default_mode_is_0660_with_the_brokers_group(void **state)
{
	tbh_fix *f = *state;
	int      code;

	tbh_fix_start(f, NULL);
	assert_int_equal(chmod(f->b.dir, 0711), 0);
	expect_socket(f->b.url, 0660, getegid());
	if ((code = ping_as(f, "65534")) != 3) {
		print_error(
		    "another user, another group: ping exit %d, want 3\n",
		    code);
		fail();
	}
	f->passed = true;
}

static void
test_socket_mode_0666_lets_everyone_in(void **state)
{
	const char *const args[] = { "--socket-mode", "0666", NULL };
	tbh_fix          *f      = *state;

	tbh_fix_start(f, args);
	assert_int_equal(chmod(f->b.dir, 0711), 0);
	expect_socket(f->b.url, 0666, getegid());
	assert_int_equal(ping_as(f, "65533"), 0);
	f->passed = true;
}

static void
test_bad_mode_or_group_stops_the_start(void **state)
{
	tbh_fix *f = *state;
	char     data[TBH_PATH];
	char    *err      = NULL;
	char    *bin      = getenv("TB_BROKER_BIN");
	char    *bad[][3] = { { "--socket-mode", "999", "--socket-mode" },
		   { "--socket-mode", "rw", "--socket-mode" },
		   { "--socket-group", "no-such-group-here", "no such group" } };

	tbh_fix_start(f, NULL); // for its directory
	snprintf(data, sizeof(data), "%s/other", f->b.dir);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char  url[TBH_PATH + 16];
		char *argv[] = { bin, "--data-dir", data, "--listen", url,
			bad[i][0], bad[i][1], NULL };
		int   code;
		snprintf(url, sizeof(url), "ipc://%s/other.sock", f->b.dir);
		code = tbh_run(argv, TBH_MS(10000), NULL, &err, f->b.dir);
		if (code != 2 || err == NULL ||
		    strstr(err, bad[i][2]) == NULL) {
			print_error("%s %s: exit %d, log:\n%s\n", bad[i][0],
			    bad[i][1], code, err != NULL ? err : "");
			free(err);
			fail();
		}
		free(err);
		err = NULL;
	}
	f->passed = true;
}

// Admin requests (here pause, retry, shutdown) need an admin peer: the
// broker's user, root, or --admin-group. Anyone else who may connect may
// submit, query and wait, and gets unauthorized for the rest.
static void
test_admin_requests_need_an_admin_peer(void **state)
{
	const char *const  args[]    = { "--socket-group", "65534", NULL };
	const char *const  pause[]   = { "pause", "q", NULL };
	const char *const  retry[]   = { "retry", "--all", NULL };
	const char *const  shut[]    = { "shutdown", NULL };
	const char *const  submit[]  = { "submit", "noop", "--wait", NULL };
	const char *const  stats[]   = { "stats", NULL };
	const char *const *refused[] = { pause, retry, shut };
	tbh_fix           *f         = *state;
	char              *err       = NULL;
	int                code;

	tbh_fix_start(f, args);
	assert_int_equal(chmod(f->b.dir, 0711), 0);
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		code = cli_as(f, "65534", refused[i], &err);
		if (code != 1 || err == NULL ||
		    strstr(err, "not allowed for this client") == NULL) {
			print_error("%s as a non-admin: exit %d, stderr %s\n",
			    refused[i][0], code, err != NULL ? err : "");
			free(err);
			fail();
		}
		free(err);
		err = NULL;
	}
	assert_int_equal(cli_as(f, "65534", submit, NULL), 0);
	assert_int_equal(cli_as(f, "65534", stats, NULL), 0);
	// Still running and not paused: the refusals changed nothing.
	TBH_OK(tb_ping(f->c, NULL));
	// The broker's own user (root here) may.
	TBH_OK(tb_pause(f->c, "q"));
	TBH_OK(tb_resume(f->c, "q"));
	f->passed = true;
}

static void
test_admin_group_widens_admin_rights(void **state)
{
	const char *const args[]   = { "--socket-group", "65534",
		  "--admin-group", "65534", NULL };
	const char *const pause[]  = { "pause", "q", NULL };
	const char *const resume[] = { "resume", "q", NULL };
	tbh_fix          *f        = *state;

	tbh_fix_start(f, args);
	assert_int_equal(chmod(f->b.dir, 0711), 0);
	assert_int_equal(cli_as(f, "65534", pause, NULL), 0);
	assert_int_equal(cli_as(f, "65534", resume, NULL), 0);
	f->passed = true;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, tbh_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_socket_group_lets_its_members_in_and_no_one_else),
		T(test_default_mode_is_0660_with_the_brokers_group),
		T(test_socket_mode_0666_lets_everyone_in),
		T(test_bad_mode_or_group_stops_the_start),
		T(test_admin_requests_need_an_admin_peer),
		T(test_admin_group_widens_admin_rights),
	};

	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
