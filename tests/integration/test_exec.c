// test_exec.c: the exec handler through the real broker: the child's
// environment (what the task gives, not the broker's own), PATH lookup,
// cwd, stdin (text, binary, large), bounded output tails, exit statuses and
// signals as failed attempts, descriptors the child inherits, its own
// process group, SIGTERM then SIGKILL of the group on a timeout,
// --exec-allow, and a thousand children without a thread each. Each test
// starts its own broker.

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <msgpack.h>

#include "harness.h"

#define WAIT_MS TBH_MS(10000)

// exec_spec is an exec payload: argv (NULL-terminated), env as NAME, value
// pairs (NULL-terminated, may be NULL), cwd (may be NULL) and stdin
// (has_in; as a msgpack bin if in_bin, else a str).
typedef struct exec_spec {
	const char *const *argv;
	const char *const *env;
	const char        *cwd;
	const void        *in;
	size_t             in_len;
	bool               has_in;
	bool               in_bin;
} exec_spec;

// exec_res is an exec task's result map.
typedef struct exec_res {
	int64_t exit_status;
	int64_t term_signal;
	char   *out; // NUL-terminated copy
	size_t  out_len;
	char   *err;
	size_t  err_len;
	bool    out_cut;
	bool    err_cut;
} exec_res;

// pack_exec packs spec as an exec payload; the caller frees the buffer.
static void *
pack_exec(const exec_spec *spec, size_t *lenp)
{
	msgpack_sbuffer sb;
	msgpack_packer  pk;
	size_t          nargv = 0, nenv = 0;
	int             nkeys = 1;

	while (spec->argv[nargv] != NULL) {
		nargv++;
	}
	while (spec->env != NULL && spec->env[2 * nenv] != NULL) {
		nenv++;
	}
	nkeys += (spec->env != NULL) + (spec->cwd != NULL) + spec->has_in;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, nkeys);
	tbh_pack_cstr(&pk, "argv");
	msgpack_pack_array(&pk, nargv);
	for (size_t i = 0; i < nargv; i++) {
		tbh_pack_cstr(&pk, spec->argv[i]);
	}
	if (spec->env != NULL) {
		tbh_pack_cstr(&pk, "env");
		msgpack_pack_map(&pk, nenv);
		for (size_t i = 0; i < nenv; i++) {
			tbh_pack_cstr(&pk, spec->env[2 * i]);
			tbh_pack_cstr(&pk, spec->env[2 * i + 1]);
		}
	}
	if (spec->cwd != NULL) {
		tbh_pack_cstr(&pk, "cwd");
		tbh_pack_cstr(&pk, spec->cwd);
	}
	if (spec->has_in) {
		tbh_pack_cstr(&pk, "stdin");
		if (spec->in_bin) {
			msgpack_pack_bin_with_body(
			    &pk, spec->in, spec->in_len);
		} else {
			msgpack_pack_str_with_body(
			    &pk, spec->in, spec->in_len);
		}
	}
	*lenp = sb.size;
	return (sb.data);
}

// submit_exec submits spec as an exec task with opts (may be NULL).
static tb_id
submit_exec(tbh_fix *f, const exec_spec *spec, const tb_submit_opts *opts)
{
	size_t len;
	void  *p = pack_exec(spec, &len);
	tb_id  id;

	id = tbh_submit(f->c, "exec", p, len, opts);
	free(p);
	return (id);
}

// run_exec submits spec and waits for the task to end.
static tb_task *
run_exec(tbh_fix *f, const exec_spec *spec, const tb_submit_opts *opts)
{
	return (tbh_wait_final(f->c, submit_exec(f, spec, opts), WAIT_MS));
}

// run_argv runs argv (no env, cwd or stdin) to its end.
static tb_task *
run_argv(tbh_fix *f, const char *const *argv, const tb_submit_opts *opts)
{
	exec_spec s = { .argv = argv };

	return (run_exec(f, &s, opts));
}

static void
res_free(exec_res *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

static bool
obj_bytes(const msgpack_object *o, char **pp, size_t *np)
{
	const char *p;
	size_t      n;

	if (o->type == MSGPACK_OBJECT_BIN) {
		p = o->via.bin.ptr;
		n = o->via.bin.size;
	} else if (o->type == MSGPACK_OBJECT_STR) {
		p = o->via.str.ptr;
		n = o->via.str.size;
	} else {
		return (false);
	}
	if ((*pp = malloc(n + 1)) == NULL) {
		return (false);
	}
	memcpy(*pp, p, n);
	(*pp)[n] = '\0';
	*np      = n;
	return (true);
}

static bool
obj_int(const msgpack_object *o, int64_t *vp)
{
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		*vp = (int64_t) o->via.u64;
	} else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		*vp = o->via.i64;
	} else {
		return (false);
	}
	return (true);
}

// get_res decodes t's result into *r, failing the test (and freeing t) if
// it is missing or not the documented map.
static void
get_res(tb_task *t, exec_res *r)
{
	msgpack_unpacked up;
	const void      *p;
	size_t           len = 0, off = 0;
	int              seen = 0;

	memset(r, 0, sizeof(*r));
	p = tb_task_result(t, &len);
	msgpack_unpacked_init(&up);
	if (p == NULL || len == 0 ||
	    msgpack_unpack_next(&up, p, len, &off) != MSGPACK_UNPACK_SUCCESS ||
	    up.data.type != MSGPACK_OBJECT_MAP) {
		print_error("task %llu (%s, error %s): the result (%zu bytes) "
		            "is not one msgpack map\n",
		    (unsigned long long) tb_task_id(t),
		    tb_state_name(tb_task_state(t)),
		    tb_task_error(t) != NULL ? tb_task_error(t) : "(none)",
		    p != NULL ? len : 0);
		msgpack_unpacked_destroy(&up);
		tb_task_free(t);
		fail();
	}
	for (uint32_t i = 0; i < up.data.via.map.size; i++) {
		const msgpack_object *k = &up.data.via.map.ptr[i].key;
		const msgpack_object *v = &up.data.via.map.ptr[i].val;
		char                  name[16];

		if (k->type != MSGPACK_OBJECT_STR ||
		    k->via.str.size >= sizeof(name)) {
			continue;
		}
		memcpy(name, k->via.str.ptr, k->via.str.size);
		name[k->via.str.size] = '\0';
		if (strcmp(name, "exit_status") == 0) {
			seen += obj_int(v, &r->exit_status);
		} else if (strcmp(name, "term_signal") == 0) {
			seen += obj_int(v, &r->term_signal);
		} else if (strcmp(name, "stdout") == 0) {
			seen += obj_bytes(v, &r->out, &r->out_len);
		} else if (strcmp(name, "stderr") == 0) {
			seen += obj_bytes(v, &r->err, &r->err_len);
		} else if (strcmp(name, "stdout_cut") == 0 &&
		    v->type == MSGPACK_OBJECT_BOOLEAN) {
			r->out_cut = v->via.boolean;
			seen++;
		} else if (strcmp(name, "stderr_cut") == 0 &&
		    v->type == MSGPACK_OBJECT_BOOLEAN) {
			r->err_cut = v->via.boolean;
			seen++;
		}
	}
	msgpack_unpacked_destroy(&up);
	if (seen != 6) {
		print_error("task %llu: result has %d of the 6 fields\n",
		    (unsigned long long) tb_task_id(t), seen);
		res_free(r);
		tb_task_free(t);
		fail();
	}
}

// expect_end fails unless t ended in state with attempts attempts (0: any)
// and, if err_has is not NULL, an error containing it; on failure it
// frees t.
static void
expect_end(tb_task *t, int state, uint32_t attempts, const char *err_has)
{
	const char *e = tb_task_error(t);

	if (tb_task_state(t) != state ||
	    (attempts != 0 && tb_task_attempts(t) != attempts) ||
	    (err_has != NULL && (e == NULL || strstr(e, err_has) == NULL))) {
		print_error("task %llu is %s after %u attempts, error \"%s\"; "
		            "want %s after %u, error containing \"%s\"\n",
		    (unsigned long long) tb_task_id(t),
		    tb_state_name(tb_task_state(t)), tb_task_attempts(t),
		    e != NULL ? e : "(none)", tb_state_name(state), attempts,
		    err_has != NULL ? err_has : "(any)");
		tb_task_free(t);
		fail();
	}
}

// run_ok runs spec, expects it done in one attempt and returns its result.
static void
run_ok(tbh_fix *f, const exec_spec *spec, exec_res *r)
{
	tb_task *t = run_exec(f, spec, NULL);

	expect_end(t, TB_STATE_DONE, 1, NULL);
	get_res(t, r);
	tb_task_free(t);
	if (r->exit_status != 0 || r->term_signal != 0) {
		print_error("%s: exit_status %lld, term_signal %lld\n",
		    spec->argv[0], (long long) r->exit_status,
		    (long long) r->term_signal);
		fail();
	}
}

// expect_out fails unless the result's stdout is exactly want (text).
static void
expect_out(exec_res *r, const char *want)
{
	if (r->out_len != strlen(want) || memcmp(r->out, want, r->out_len)) {
		print_error("stdout is \"%s\" (%zu bytes), want \"%s\"; "
		            "stderr \"%s\"\n",
		    r->out, r->out_len, want, r->err != NULL ? r->err : "");
		res_free(r);
		fail();
	}
}

// write_script writes an executable shell script with body to path.
static void
write_script(const char *path, const char *body)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fprintf(fp, "#!/bin/sh\n%s\n", body);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(chmod(path, 0755), 0);
}

// has_line tells whether text has the line line.
static bool
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; p != NULL && *p != '\0';) {
		const char *nl  = strchr(p, '\n');
		size_t      len = nl != NULL ? (size_t) (nl - p) : strlen(p);
		if (len == n && memcmp(p, line, n) == 0) {
			return (true);
		}
		p = nl != NULL ? nl + 1 : NULL;
	}
	return (false);
}

// count_lines counts the lines of text.
static int
count_lines(const char *text)
{
	int n = 0;

	for (const char *p = text; *p != '\0'; p++) {
		n += *p == '\n';
	}
	return (n);
}

// proc_threads reads "Threads:" of /proc/PID/status, or -1.
static int
proc_threads(pid_t pid)
{
	char  path[64], line[256];
	FILE *fp;
	int   n = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
	if ((fp = fopen(path, "r")) == NULL) {
		return (-1);
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (sscanf(line, "Threads: %d", &n) == 1) {
			break;
		}
	}
	fclose(fp);
	return (n);
}

// The env a task gives is what the child sees, on top of PATH and LANG;
// nothing of the broker's own environment gets through, and the task may
// replace LANG.
static void
test_env_is_the_tasks_on_a_minimal_base(void **state)
{
	tbh_fix          *f      = *state;
	const char *const argv[] = { "/usr/bin/env", NULL };
	const char *const env1[] = { "TBX_ONE", "a b=c", "TBX_EMPTY", "",
		NULL };
	const char *const env2[] = { "LANG", "C", NULL };
	exec_spec         s      = { .argv = argv, .env = env1 };
	char              secret[64], path[64];
	exec_res          r;
	char             *benv;
	size_t            blen;
	bool              in_broker = false;

	// The broker inherits this variable; its children must not.
	snprintf(
	    secret, sizeof(secret), "TBX_BROKER_SECRET_%d", (int) getpid());
	assert_int_equal(setenv(secret, "leaked", 1), 0);
	tbh_fix_start(f, NULL);
	unsetenv(secret);
	snprintf(path, sizeof(path), "/proc/%d/environ", (int) f->b.pid);
	benv = tbh_read_file(path, &blen);
	assert_non_null(benv);
	for (size_t i = 0; i < blen; i += strlen(benv + i) + 1) {
		in_broker = in_broker ||
		    strncmp(benv + i, secret, strlen(secret)) == 0;
	}
	free(benv);
	assert_true(in_broker); // else the check below proves nothing

	run_ok(f, &s, &r);
	if (!has_line(r.out, "TBX_ONE=a b=c") ||
	    !has_line(r.out, "TBX_EMPTY=") ||
	    !has_line(r.out, "PATH=/usr/local/bin:/usr/bin:/bin") ||
	    !has_line(r.out, "LANG=C.UTF-8") ||
	    strstr(r.out, secret) != NULL || count_lines(r.out) != 4) {
		print_error("env of the child:\n%s\nwant exactly TBX_ONE, "
		            "TBX_EMPTY, PATH and LANG (and not %s)\n",
		    r.out, secret);
		res_free(&r);
		fail();
	}
	res_free(&r);

	s.env = env2;
	run_ok(f, &s, &r);
	if (!has_line(r.out, "LANG=C") || strstr(r.out, "LANG=C.UTF-8") ||
	    !has_line(r.out, "PATH=/usr/local/bin:/usr/bin:/bin") ||
	    count_lines(r.out) != 2) {
		print_error("env of the child with LANG=C:\n%s\n", r.out);
		res_free(&r);
		fail();
	}
	res_free(&r);
	f->passed = true;
}

// A task's PATH is the child's, and a bare argv[0] is looked up in it, not
// in the broker's.
static void
test_path_override_is_used_for_lookup_and_seen_by_child(void **state)
{
	tbh_fix          *f         = *state;
	const char *const argv[]    = { "tbx-tool", NULL };
	const char *const envargv[] = { "env", NULL };
	char              bin[TBH_PATH], tool[TBH_PATH + 16];
	char              pathval[TBH_PATH + 32], want[TBH_PATH + 64];
	const char       *env[] = { "PATH", pathval, NULL };
	exec_spec         s     = { .argv = argv, .env = env };
	exec_res          r;
	tb_task          *t;

	tbh_fix_start(f, NULL);
	snprintf(bin, sizeof(bin), "%s/bin", f->b.dir);
	assert_int_equal(mkdir(bin, 0755), 0);
	snprintf(tool, sizeof(tool), "%s/tbx-tool", bin);
	write_script(tool, "echo \"tool $PATH\"");
	snprintf(pathval, sizeof(pathval), "%s:/usr/bin:/bin", bin);
	snprintf(want, sizeof(want), "tool %s\n", pathval);

	run_ok(f, &s, &r);
	expect_out(&r, want);
	res_free(&r);

	// "env" is in the broker's PATH but not in this one.
	snprintf(pathval, sizeof(pathval), "%s", bin);
	s.argv = envargv;
	t      = run_exec(f, &s, NULL);
	expect_end(t, TB_STATE_DEAD, 1, "not found");
	tb_task_free(t);
	f->passed = true;
}

// cwd is the child's working directory.
static void
test_cwd_is_the_childs_working_directory(void **state)
{
	tbh_fix          *f      = *state;
	const char *const argv[] = { "/bin/pwd", NULL };
	char              real[PATH_MAX], want[PATH_MAX + 2];
	exec_spec         s = { .argv = argv };
	exec_res          r;

	tbh_fix_start(f, NULL);
	assert_non_null(realpath(f->b.dir, real));
	snprintf(want, sizeof(want), "%s\n", real);
	s.cwd = f->b.dir;
	run_ok(f, &s, &r);
	expect_out(&r, want);
	res_free(&r);
	f->passed = true;
}

// stdin, as a string or as bytes with NULs, reaches the child; 200 KiB of
// it reach the child whole (cmp), and cat's copy of it comes back as its
// last --exec-output-max bytes (the largest allowed: both tails must fit
// in a 64 KiB result).
static void
test_stdin_bytes_reach_the_child(void **state)
{
	const char *const args[] = { "--exec-output-max", "32000", NULL };
	const size_t      keep   = 32000;
	tbh_fix          *f      = *state;
	const char *const argv[] = { "/bin/cat", NULL };
	const char   bin[] = { 'a', '\0', 'b', '\xff', '\0', '\n', '\x01' };
	const size_t big_n = 200 * 1024;
	exec_spec    s     = { .argv = argv, .has_in = true };
	char         copy[TBH_PATH + 8];
	const char *const cmp[] = { "/usr/bin/cmp", "-", copy, NULL };
	FILE             *fp;
	char             *big;
	exec_res          r;

	tbh_fix_start(f, args);
	s.in     = "hello, stdin\n";
	s.in_len = strlen(s.in);
	run_ok(f, &s, &r);
	expect_out(&r, "hello, stdin\n");
	assert_false(r.out_cut);
	res_free(&r);

	s.in     = bin;
	s.in_len = sizeof(bin);
	s.in_bin = true;
	run_ok(f, &s, &r);
	if (r.out_len != sizeof(bin) || memcmp(r.out, bin, sizeof(bin)) != 0) {
		print_error("binary stdin: %zu bytes came back, want the %zu "
		            "sent\n",
		    r.out_len, sizeof(bin));
		res_free(&r);
		fail();
	}
	res_free(&r);

	big = malloc(big_n);
	assert_non_null(big);
	for (size_t i = 0; i < big_n; i++) {
		big[i] = (char) ((i * 7 + i / 251) % 256);
	}
	// All of it reaches the child: cmp finds it equal to a copy.
	snprintf(copy, sizeof(copy), "%s/big", f->b.dir);
	fp = fopen(copy, "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(big, 1, big_n, fp), big_n);
	assert_int_equal(fclose(fp), 0);
	s.argv   = cmp;
	s.in     = big;
	s.in_len = big_n;
	run_ok(f, &s, &r);
	res_free(&r);

	// And cat's output is kept as its last bytes, marked cut.
	s.argv = argv;
	run_ok(f, &s, &r);
	if (r.out_len != keep ||
	    memcmp(r.out, big + big_n - keep, keep) != 0 || !r.out_cut) {
		print_error("large stdin: %zu bytes came back (cut %d), want "
		            "the last %zu of the %zu sent, cut\n",
		    r.out_len, (int) r.out_cut, keep, big_n);
		free(big);
		res_free(&r);
		fail();
	}
	free(big);
	res_free(&r);
	f->passed = true;
}

// Output beyond --exec-output-max (default 4096) keeps only the last bytes
// and says it was cut; a short stream is whole and not cut.
static void
test_output_keeps_the_last_bytes(void **state)
{
	tbh_fix          *f      = *state;
	const char *const argv[] = { "/bin/sh", "-c",
		"seq 1 20000; seq 1 10 >&2", NULL };
	exec_spec         s      = { .argv = argv };
	char             *all;
	size_t            n = 0;
	exec_res          r;

	// What seq prints: more than 100 KiB.
	all = malloc(20000 * 6 + 1);
	assert_non_null(all);
	for (int i = 1; i <= 20000; i++) {
		n += (size_t) sprintf(all + n, "%d\n", i);
	}
	assert_true(n > 100 * 1024);

	tbh_fix_start(f, NULL);
	run_ok(f, &s, &r);
	{
		// Decide before freeing: fail() does not return.
		bool last_equal = r.out_len >= 4096 &&
		    memcmp(r.out, all + n - 4096, 4096) == 0;
		free(all);
		if (r.out_len != 4096 || !r.out_cut || !last_equal) {
			print_error(
			    "stdout: %zu bytes, cut %d, last bytes %s; "
			    "want the last 4096 of %zu, cut\n",
			    r.out_len, (int) r.out_cut,
			    last_equal ? "equal" : "differ", n);
			res_free(&r);
			fail();
		}
	}
	if (r.err_cut || r.err_len != 21 ||
	    memcmp(r.err, "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", 21) != 0) {
		print_error("stderr: \"%s\" cut %d; want 1..10, not cut\n",
		    r.err, (int) r.err_cut);
		res_free(&r);
		fail();
	}
	res_free(&r);
	f->passed = true;
}

// A non-zero exit status is a failed attempt, retried up to max_attempts;
// the result carries the status.
static void
test_exit_status_is_a_failed_attempt_and_retried(void **state)
{
	tbh_fix          *f      = *state;
	const char *const argv[] = { "/bin/sh", "-c", "echo out; exit 3",
		NULL };
	tb_submit_opts    o      = TB_SUBMIT_OPTS_INIT;
	exec_res          r;
	tb_task          *t;

	tbh_fix_start(f, NULL);
	o.max_attempts = 2;
	t              = run_argv(f, argv, &o);
	expect_end(t, TB_STATE_DEAD, 2, "exit status 3");
	assert_string_equal(tb_task_error(t), "exit status 3");
	get_res(t, &r);
	tb_task_free(t);
	assert_int_equal(r.exit_status, 3);
	assert_int_equal(r.term_signal, 0);
	expect_out(&r, "out\n");
	res_free(&r);
	f->passed = true;
}

// A child killed by a signal is a failed attempt whose error names it.
static void
test_killed_by_signal_is_a_failed_attempt(void **state)
{
	tbh_fix          *f      = *state;
	const char *const argv[] = { "/bin/sh", "-c", "kill -USR1 $$", NULL };
	char              want[32];
	exec_res          r;
	tb_task          *t;

	tbh_fix_start(f, NULL);
	t = run_argv(f, argv, NULL);
	snprintf(want, sizeof(want), "signal %d", SIGUSR1);
	expect_end(t, TB_STATE_DEAD, 1, want);
	get_res(t, &r);
	tb_task_free(t);
	assert_int_equal(r.term_signal, SIGUSR1);
	res_free(&r);
	f->passed = true;
}

// The child has stdin, stdout and stderr and nothing else of the broker's;
// without "stdin" its stdin is /dev/null.
static void
test_child_inherits_no_broker_descriptor(void **state)
{
	tbh_fix          *f    = *state;
	const char *const ls[] = { "/bin/ls", "/proc/self/fd", NULL };
	const char *const rl[] = { "/usr/bin/readlink", "/proc/self/fd/0",
		NULL };
	int               fds[64], n = 0;
	exec_res          r;

	tbh_fix_start(f, NULL);
	// Give the broker more descriptors: a subscriber and a client.
	f->sub = tbh_sub_open(&f->b, f->c, "tb.");
	{
		exec_spec s = { .argv = ls };
		run_ok(f, &s, &r);
	}
	for (char *p = r.out; *p != '\0' && n < 64;) {
		char *end;
		long  v = strtol(p, &end, 10);
		if (end == p || *end != '\n') {
			break;
		}
		fds[n++] = (int) v;
		p        = end + 1;
	}
	// ls itself opens one: the /proc/self/fd directory it lists.
	{
		bool ok = n == 4;
		for (int want = 0; ok && want <= 2; want++) {
			bool found = false;
			for (int i = 0; i < n; i++) {
				found = found || fds[i] == want;
			}
			ok = found;
		}
		if (!ok) {
			print_error("descriptors of the child:\n%swant 0, "
			            "1, 2 and the one ls opens\n",
			    r.out);
			res_free(&r);
			fail();
		}
	}
	res_free(&r);

	{
		exec_spec s = { .argv = rl };
		run_ok(f, &s, &r);
	}
	expect_out(&r, "/dev/null\n");
	res_free(&r);
	f->passed = true;
}

// The child leads its own process group and session.
static void
test_child_runs_in_its_own_process_group(void **state)
{
	tbh_fix          *f      = *state;
	const char *const argv[] = { "/bin/cat", "/proc/self/stat", NULL };
	exec_spec         s      = { .argv = argv };
	long              pid, ppid, pgrp, sid;
	char              st;
	const char       *p;
	exec_res          r;

	tbh_fix_start(f, NULL);
	run_ok(f, &s, &r);
	// pid (comm) state ppid pgrp session ...
	p = strrchr(r.out, ')');
	if (p == NULL || sscanf(r.out, "%ld", &pid) != 1 ||
	    sscanf(p + 1, " %c %ld %ld %ld", &st, &ppid, &pgrp, &sid) != 4) {
		print_error("cannot parse /proc/self/stat: %s\n", r.out);
		res_free(&r);
		fail();
	}
	if (pgrp != pid || sid != pid || ppid != (long) f->b.pid) {
		print_error("child %ld: pgrp %ld, session %ld, parent %ld; "
		            "want pgrp = session = pid, parent the broker "
		            "%d\n",
		    pid, pgrp, sid, ppid, (int) f->b.pid);
		res_free(&r);
		fail();
	}
	res_free(&r);
	f->passed = true;
}

// A timeout sends SIGTERM to the whole group first: a shell that traps it
// writes its marker and exits by itself (no SIGKILL), and its background
// child, which got the SIGTERM too, is gone.
static void
test_timeout_sends_sigterm_to_the_group_first(void **state)
{
	tbh_fix       *f = *state;
	tb_submit_opts o = TB_SUBMIT_OPTS_INIT;
	char           marker[64], mfile[TBH_PATH + 16], script[512];
	const char    *argv[] = { "/bin/sh", "-c", script, NULL };
	int64_t        t0;
	exec_res       r;
	tb_task       *t;
	char          *got;
	int            n;

	tbh_marker_make(marker, sizeof(marker));
	tbh_fix_start(f, NULL); // --exec-kill-grace 5s: TERM must do it
	snprintf(mfile, sizeof(mfile), "%s/termed", f->b.dir);
	snprintf(script, sizeof(script),
	    "trap 'echo term > %s; exit 0' TERM; sleep %s & wait", mfile,
	    marker);
	o.timeout_ms = 1000;
	t0           = tbh_now_ms();
	{
		exec_spec s  = { .argv = argv };
		tb_id     id = submit_exec(f, &s, &o);
		if ((n = tbh_marker_wait(marker, 1, TBH_MS(3000))) < 1) {
			print_error(
			    "the shell's sleep %s never ran\n", marker);
			fail();
		}
		t = tbh_wait_final(f->c, id, WAIT_MS);
	}
	if (tbh_now_ms() - t0 > TBH_MS(3500)) {
		print_error("the task took %lld ms to end; SIGTERM should end "
		            "it well before the 5 s kill grace\n",
		    (long long) (tbh_now_ms() - t0));
		tbh_marker_kill(marker);
		tb_task_free(t);
		fail();
	}
	expect_end(t, TB_STATE_DEAD, 1, "timed out");
	get_res(t, &r);
	tb_task_free(t);
	if (r.term_signal != 0 || r.exit_status != 0) {
		print_error("the shell: exit_status %lld, term_signal %lld; "
		            "want 0, 0 (it exits from its TERM trap)\n",
		    (long long) r.exit_status, (long long) r.term_signal);
		res_free(&r);
		tbh_marker_kill(marker);
		fail();
	}
	res_free(&r);
	got = tbh_read_file(mfile, NULL);
	if (got == NULL || strcmp(got, "term\n") != 0) {
		print_error("the TERM trap's file %s: %s\n", mfile,
		    got != NULL ? got : "(missing)");
		free(got);
		tbh_marker_kill(marker);
		fail();
	}
	free(got);
	if ((n = tbh_marker_wait(marker, 0, TBH_MS(2000))) != 0) {
		print_error("%d processes with argument %s survive the "
		            "group's SIGTERM\n",
		    n, marker);
		tbh_marker_kill(marker);
		fail();
	}
	f->passed = true;
}

// A group that ignores SIGTERM gets SIGKILL after --exec-kill-grace: the
// task ends soon after the timeout and nothing of it survives.
static void
test_group_ignoring_sigterm_is_killed_after_grace(void **state)
{
	const char *const args[] = { "--exec-kill-grace", "300ms", NULL };
	tbh_fix          *f      = *state;
	tb_submit_opts    o      = TB_SUBMIT_OPTS_INIT;
	char              marker[64], script[256];
	const char       *argv[] = { "/bin/sh", "-c", script, NULL };
	int64_t           t0, took;
	exec_res          r;
	tb_task          *t;
	tb_id             id;
	int               n;

	tbh_marker_make(marker, sizeof(marker));
	snprintf(script, sizeof(script), "trap '' TERM; sleep %s; sleep %s",
	    marker, marker);
	tbh_fix_start(f, args);
	o.timeout_ms = 500;
	{
		exec_spec s = { .argv = argv };
		id          = submit_exec(f, &s, &o);
	}
	if ((n = tbh_marker_wait(marker, 1, TBH_MS(3000))) < 1) {
		print_error("sleep %s never ran\n", marker);
		fail();
	}
	t0   = tbh_now_ms();
	t    = tbh_wait_final(f->c, id, WAIT_MS);
	took = tbh_now_ms() - t0;
	if (took > TBH_MS(1200)) {
		print_error("the task ended %lld ms after its child started; "
		            "want ~0.8 s (timeout 500 ms + grace 300 ms)\n",
		    (long long) took);
		tb_task_free(t);
		tbh_marker_kill(marker);
		fail();
	}
	expect_end(t, TB_STATE_DEAD, 1, "timed out");
	get_res(t, &r);
	tb_task_free(t);
	if (r.term_signal != SIGKILL) {
		print_error("the shell: term_signal %lld, exit_status %lld; "
		            "want SIGKILL\n",
		    (long long) r.term_signal, (long long) r.exit_status);
		res_free(&r);
		tbh_marker_kill(marker);
		fail();
	}
	res_free(&r);
	if ((n = tbh_marker_wait(marker, 0, TBH_MS(1000))) != 0) {
		print_error("%d processes with argument %s survive the "
		            "group's SIGKILL\n",
		    n, marker);
		tbh_marker_kill(marker);
		fail();
	}
	f->passed = true;
}

// --exec-allow PROGRAM allows that program (by any path that resolves to
// it) and refuses any other at once: dead after one attempt whatever
// max_attempts, and nothing runs.
static void
test_exec_allow_program_refuses_others(void **state)
{
	const char *const  args[] = { "--exec-allow", "/bin/echo", NULL };
	tbh_fix           *f      = *state;
	const char *const  echo[] = { "/bin/echo", "allowed", NULL };
	const char *const  cat[]  = { "/bin/cat", "/etc/hostname", NULL };
	const char *const  dots[] = { "/usr/bin/../bin/cat", "/etc/hostname",
		 NULL };
	char               ran[TBH_PATH + 8];
	const char *const  touch[]   = { "/usr/bin/touch", ran, NULL };
	const char *const *refused[] = { cat, dots, touch };
	tb_submit_opts     o         = TB_SUBMIT_OPTS_INIT;
	exec_res           r;
	tb_task           *t;

	tbh_fix_start(f, args);
	snprintf(ran, sizeof(ran), "%s/ran", f->b.dir);
	o.max_attempts = 3;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		t = run_argv(f, refused[i], &o);
		expect_end(t, TB_STATE_DEAD, 1, "not allowed");
		tb_task_free(t);
	}
	if (access(ran, F_OK) == 0) {
		print_error("a refused program ran (%s exists)\n", ran);
		fail();
	}

	{
		exec_spec s = { .argv = echo };
		run_ok(f, &s, &r);
	}
	expect_out(&r, "allowed\n");
	res_free(&r);
	f->passed = true;
}

// A directory entry ("/usr/bin/") allows every program below it; a symbolic
// link or a ".." path that leads out of the listed directories is refused.
static void
test_exec_allow_directory_resolves_links_and_dots(void **state)
{
	tbh_fix          *f = *state;
	char              allowed[TBH_PATH], outside[TBH_PATH];
	char              ok_sh[TBH_PATH + 16], tool[TBH_PATH + 16];
	char              link[TBH_PATH + 16], dots[TBH_PATH + 32];
	char              ran[TBH_PATH + 16], cfg[TBH_PATH];
	char              allow_arg[TBH_PATH + 2];
	char              body[TBH_PATH + 32];
	const char *const env[]      = { "/usr/bin/env", NULL };
	const char *const ok[]       = { ok_sh, NULL };
	const char *const viaslink[] = { link, NULL };
	const char *const viadots[]  = { dots, NULL };
	const char *const args[]     = { "--exec-allow", "/usr/bin/",
		    "--exec-allow", allow_arg, NULL };
	tb_submit_opts    o          = TB_SUBMIT_OPTS_INIT;
	exec_res          r;
	tb_task          *t;

	// The temp dir exists before the start: tbh_write_config makes it.
	assert_int_equal(
	    tbh_write_config(&f->b, "unused.ini", "", cfg, sizeof(cfg)), 0);
	snprintf(allowed, sizeof(allowed), "%s/allowed", f->b.dir);
	snprintf(outside, sizeof(outside), "%s/outside", f->b.dir);
	assert_int_equal(mkdir(allowed, 0755), 0);
	assert_int_equal(mkdir(outside, 0755), 0);
	snprintf(allow_arg, sizeof(allow_arg), "%s/", allowed);
	snprintf(ok_sh, sizeof(ok_sh), "%s/ok.sh", allowed);
	write_script(ok_sh, "echo ok");
	snprintf(ran, sizeof(ran), "%s/ran", f->b.dir);
	snprintf(tool, sizeof(tool), "%s/tool.sh", outside);
	snprintf(body, sizeof(body), "touch %s", ran);
	write_script(tool, body);
	snprintf(link, sizeof(link), "%s/link", allowed);
	assert_int_equal(symlink(tool, link), 0);
	snprintf(dots, sizeof(dots), "%s/../outside/tool.sh", allowed);

	tbh_fix_start(f, args);
	{
		exec_spec s = { .argv = env };
		run_ok(f, &s, &r);
	}
	assert_true(has_line(r.out, "LANG=C.UTF-8"));
	res_free(&r);
	{
		exec_spec s = { .argv = ok };
		run_ok(f, &s, &r);
	}
	expect_out(&r, "ok\n");
	res_free(&r);

	o.max_attempts = 3;
	t              = run_argv(f, viaslink, &o);
	expect_end(t, TB_STATE_DEAD, 1, "not allowed");
	tb_task_free(t);
	t = run_argv(f, viadots, &o);
	expect_end(t, TB_STATE_DEAD, 1, "not allowed");
	tb_task_free(t);
	if (access(ran, F_OK) == 0) {
		print_error("a refused program ran (%s exists)\n", ran);
		fail();
	}
	f->passed = true;
}

// A thousand children at once cost no thread each: the broker's thread
// count stays small while they run, and all of them end done.
static void
test_thousand_children_without_a_thread_each(void **state)
{
	const char *const args[] = { "--max-running", "2000", NULL };
	tbh_fix          *f      = *state;
	enum { N = 1000, BATCH = 250 };
	char              secs[32];
	const char *const argv[] = { "/bin/sleep", secs, NULL };
	tb_task_spec      specs[BATCH];
	tb_stats          st;
	exec_spec         s = { .argv = argv };
	int64_t           deadline;
	int               base, th, max_th = 0, max_procs = 0, n;
	uint64_t          max_running = 0;
	size_t            len;
	void             *p;

	// About two seconds (so that hundreds overlap even when spawning is
	// slow), and an argument no other process has.
	snprintf(secs, sizeof(secs), "2.%09d", (int) getpid() % 1000000000);
	tbh_fix_start(f, args);
	base = proc_threads(f->b.pid);
	assert_true(base > 0);
	p = pack_exec(&s, &len);
	for (int i = 0; i < BATCH; i++) {
		specs[i] = (tb_task_spec) { "exec", p, len, NULL };
	}
	for (int i = 0; i < N / BATCH; i++) {
		TBH_OK(tb_submit_batch(f->c, specs, BATCH, NULL));
	}
	free(p);
	deadline = tbh_now_ms() + TBH_MS(20000);
	for (;;) {
		TBH_OK(tb_stats_get(f->c, &st));
		if ((th = proc_threads(f->b.pid)) > max_th) {
			max_th = th;
		}
		if ((n = tbh_procs_with_arg(secs, NULL, 0)) > max_procs) {
			max_procs = n;
		}
		if (st.running > max_running) {
			max_running = st.running;
		}
		if (st.done + st.dead + st.failed >= N && st.running == 0 &&
		    st.pending == 0) {
			break;
		}
		if (tbh_now_ms() >= deadline) {
			print_error("after 20 s: %llu done, %llu running, "
			            "%llu pending, %llu dead\n",
			    (unsigned long long) st.done,
			    (unsigned long long) st.running,
			    (unsigned long long) st.pending,
			    (unsigned long long) st.dead);
			fail();
		}
		tbh_sleep_ms(20);
	}
	print_message("1000 sleeps: threads %d at rest, at most %d; at most "
	              "%llu running, %d sleep processes at once\n",
	    base, max_th, (unsigned long long) max_running, max_procs);
	if (st.done != N || st.dead != 0) {
		print_error("%llu done, %llu dead; want %d done\n",
		    (unsigned long long) st.done, (unsigned long long) st.dead,
		    N);
		fail();
	}
	if (max_th >= 40) {
		print_error("the broker ran %d threads (%d at rest) with up "
		            "to %d children\n",
		    max_th, base, max_procs);
		fail();
	}
	// Else the check above says nothing: many children ran at once.
	if (max_procs < 100) {
		print_error("at most %d children ran at once; want hundreds\n",
		    max_procs);
		fail();
	}
	f->passed = true;
}

// A tcp listener can be reached from other hosts: without --exec-allow the
// broker refuses to start (any of them could run any program as its
// user); with it, it starts, serves over tcp and runs what is allowed.
static void
test_tcp_listener_requires_exec_allow(void **state)
{
	tbh_fix          *f = *state;
	char              data[TBH_PATH], events[TBH_PATH], url[64];
	char              log[TBH_PATH];
	char             *err    = NULL;
	const char *const echo[] = { "/bin/echo", "over tcp", NULL };
	tb_client        *c      = NULL;
	pid_t             pid;
	int               code;

	tbh_fix_start(f, NULL); // for its directory
	snprintf(data, sizeof(data), "%s/tcpdata", f->b.dir);
	snprintf(events, sizeof(events), "ipc://%s/tcp-ev.sock", f->b.dir);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", tbh_free_tcp_port());
	snprintf(log, sizeof(log), "%s/tcp.log", f->b.dir);
	{
		char *argv[] = { getenv("TB_BROKER_BIN"), "--data-dir", data,
			"--listen", url, "--events", events, NULL };
		code = tbh_run(argv, TBH_MS(10000), NULL, &err, f->b.dir);
	}
	if (code != 2 || err == NULL || strstr(err, "--exec-allow") == NULL) {
		print_error("tcp without --exec-allow: exit %d, log:\n%s\n",
		    code, err != NULL ? err : "");
		free(err);
		fail();
	}
	free(err);

	{
		char *argv[] = { getenv("TB_BROKER_BIN"), "--data-dir", data,
			"--listen", url, "--events", events, "--exec-allow",
			"/bin/echo", NULL };
		assert_int_equal(tbh_spawn(&pid, argv, log, log), 0);
	}
	TBH_OK(tb_client_open(&c, url));
	for (int64_t end = tbh_now_ms() + TBH_MS(10000);
	     tb_ping(c, NULL) != TB_OK;) {
		if (tbh_now_ms() > end) {
			tbh_kill_reap(pid);
			tb_client_close(c);
			print_error("the broker on %s did not answer\n", url);
			fail();
		}
		tbh_sleep_ms(20);
	}
	{
		size_t   n;
		void    *p  = tbh_pack_argv(echo, &n);
		tb_id    id = tbh_submit(c, "exec", p, n, NULL);
		tb_task *t  = tbh_wait_final(c, id, TBH_MS(10000));
		free(p);
		tbh_expect_state(t, TB_STATE_DONE);
		tb_task_free(t);
	}
	tb_client_close(c);
	kill(pid, SIGTERM);
	assert_int_equal(tbh_waitpid(pid, TBH_MS(15000)), 0);
	f->passed = true;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, tbh_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_env_is_the_tasks_on_a_minimal_base),
		T(test_path_override_is_used_for_lookup_and_seen_by_child),
		T(test_cwd_is_the_childs_working_directory),
		T(test_stdin_bytes_reach_the_child),
		T(test_output_keeps_the_last_bytes),
		T(test_exit_status_is_a_failed_attempt_and_retried),
		T(test_killed_by_signal_is_a_failed_attempt),
		T(test_child_inherits_no_broker_descriptor),
		T(test_child_runs_in_its_own_process_group),
		T(test_timeout_sends_sigterm_to_the_group_first),
		T(test_group_ignoring_sigterm_is_killed_after_grace),
		T(test_exec_allow_program_refuses_others),
		T(test_exec_allow_directory_resolves_links_and_dots),
		T(test_thousand_children_without_a_thread_each),
		T(test_tcp_listener_requires_exec_allow),
	};

	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
