// test_badinput.c: malformed and hostile requests on a raw nng req0
// socket get an error reply (or, over the transport's size limit, a dropped
// connection), never a crash or a hang; the broker keeps serving and loses
// nothing. Also: a resent submission (same sid) creates one task, within a
// run and across a restart.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>
#include <tbp.h>

#include "harness.h"

#define RAW_MS TBH_MS(5000)

static void
expect_healthy(tbh_fix *f, const char *after)
{
	tb_task *t;
	tb_id    id = 0;
	int      rv;

	if (!tbh_running(&f->b)) {
		print_error("after %s: the broker exited (code %d)\n", after,
		    tbh_exit_code(&f->b));
		fail();
	}
	if ((rv = tb_ping(f->c, NULL)) != TB_OK) {
		print_error("after %s: tb_ping: %s\n", after, tb_errname(rv));
		fail();
	}
	if ((rv = tb_submit(f->c, "noop", NULL, 0, NULL, &id)) != TB_OK) {
		print_error("after %s: submit: %s\n", after, tb_errname(rv));
		fail();
	}
	t = tbh_wait_final(f->c, id, TBH_MS(10000));
	if (tb_task_state(t) != TB_STATE_DONE) {
		print_error("after %s: a noop ended %s\n", after,
		    tb_state_name(tb_task_state(t)));
		tb_task_free(t);
		fail();
	}
	tb_task_free(t);
}

// raw_send sends buf on a new raw socket and decodes the reply into rep
// (call tbp_rep_fini after). Returns the nng error (0: a reply came and
// decoded; NNG_EINVAL: it came but did not decode).
static int
raw_send(tbh_fix *f, const void *buf, size_t len, int timeout_ms, tbp_rep *rep)
{
	nng_socket s;
	void      *r;
	size_t     rlen;
	int        rv;

	memset(rep, 0, sizeof(*rep));
	if ((rv = tbh_raw_open(&s, f->b.url, timeout_ms)) != 0) {
		print_error("raw socket: %s\n", nng_strerror(rv));
		fail();
	}
	rv = tbh_raw_call(s, buf, len, &r, &rlen);
	nng_close(s);
	if (rv != 0) {
		return (rv);
	}
	if ((rv = tbp_rep_decode(rep, r, rlen)) != TB_OK) {
		print_error("reply of %zu bytes does not decode: %s\n", rlen,
		    tb_errname(rv));
		free(r);
		return (NNG_EINVAL);
	}
	free(r);
	return (0);
}

// expect_error sends buf and checks that the reply's status is want or
// want2 (-1: no alternative) and, if req_id is non-zero, that the reply
// mirrors it.
static void
expect_error(tbh_fix *f, const char *what, const void *buf, size_t len,
    int want, int want2, uint64_t req_id)
{
	tbp_rep rep;
	int     rv = raw_send(f, buf, len, RAW_MS, &rep);

	if (rv != 0) {
		print_error(
		    "%s: no decodable reply: %s\n", what, nng_strerror(rv));
		tbp_rep_fini(&rep);
		fail();
	}
	print_message("%s -> status %d (%s), req_id %llu\n", what, rep.status,
	    tb_errname(rep.status), (unsigned long long) rep.req_id);
	if (rep.status != want && rep.status != want2) {
		print_error("%s: reply status %d (%s), want %s%s%s\n", what,
		    rep.status, tb_errname(rep.status), tb_errname(want),
		    want2 >= 0 ? " or " : "",
		    want2 >= 0 ? tb_errname(want2) : "");
		tbp_rep_fini(&rep);
		fail();
	}
	if (req_id != 0 && rep.req_id != req_id) {
		print_error("%s: reply req_id %llu, want %llu (mirrored)\n",
		    what, (unsigned long long) rep.req_id,
		    (unsigned long long) req_id);
		tbp_rep_fini(&rep);
		fail();
	}
	if (rep.errname.n == 0) {
		print_error(
		    "%s: error reply without an \"error\" name\n", what);
		tbp_rep_fini(&rep);
		fail();
	}
	tbp_rep_fini(&rep);
	expect_healthy(f, what);
}

// pack_envelope starts [version, op, req_id, ...] with the body to follow.
static void
pack_envelope(
    msgpack_packer *pk, uint64_t version, uint64_t op, uint64_t req_id)
{
	msgpack_pack_array(pk, 4);
	msgpack_pack_uint64(pk, version);
	msgpack_pack_uint64(pk, op);
	msgpack_pack_uint64(pk, req_id);
}

static void
test_random_garbage_gets_bad_request(void **state)
{
	tbh_fix *f = *state;
	uint8_t  buf[256];
	uint32_t x = 12345;

	tbh_fix_start(f, NULL);
	// 0xc1 is never valid msgpack; the rest is a fixed pseudo-random
	// sequence so a failure reproduces.
	buf[0] = 0xc1;
	for (size_t i = 1; i < sizeof(buf); i++) {
		x      = x * 1103515245u + 12345u;
		buf[i] = (uint8_t) (x >> 16);
	}
	expect_error(f, "garbage", buf, sizeof(buf), TB_EBADREQ, -1, 0);
	// Not msgpack at all: plain text.
	expect_error(
	    f, "text", "GET / HTTP/1.0\r\n\r\n", 18, TB_EBADREQ, -1, 0);
	// An empty message.
	expect_error(f, "empty message", "", 0, TB_EBADREQ, -1, 0);
	// Valid msgpack, wrong shape: a map instead of the array.
	expect_error(f, "map as request", "\x80", 1, TB_EBADREQ, -1, 0);
	f->passed = true;
}

static void
test_truncated_submit_gets_bad_request(void **state)
{
	tbh_fix        *f = *state;
	msgpack_sbuffer sb;
	tbp_task_in     t;
	uint8_t         sid[TB_SID_LEN] = { 1, 2, 3 };

	tbh_fix_start(f, NULL);
	memset(&t, 0, sizeof(t));
	t.sid     = (tbp_bytes) { sid, sizeof(sid) };
	t.handler = tbp_str("noop");
	msgpack_sbuffer_init(&sb);
	TBH_OK(tbp_enc_submit(&sb, 31, &t, 1));
	expect_error(
	    f, "truncated submit", sb.data, sb.size / 2, TB_EBADREQ, -1, 0);
	expect_error(
	    f, "submit minus 1 byte", sb.data, sb.size - 1, TB_EBADREQ, -1, 0);
	msgpack_sbuffer_destroy(&sb);
	f->passed = true;
}

static void
test_version_99_gets_version_error_with_req_id(void **state)
{
	tbh_fix        *f = *state;
	msgpack_sbuffer sb;
	msgpack_packer  pk;

	tbh_fix_start(f, NULL);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	pack_envelope(&pk, 99, TBP_OP_PING, 12345);
	msgpack_pack_map(&pk, 0);
	expect_error(
	    f, "version 99", sb.data, sb.size, TB_EVERSION, -1, 12345);
	msgpack_sbuffer_destroy(&sb);
	f->passed = true;
}

static void
test_unknown_op_gets_unknown_op_with_req_id(void **state)
{
	tbh_fix        *f = *state;
	msgpack_sbuffer sb;
	msgpack_packer  pk;

	tbh_fix_start(f, NULL);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	pack_envelope(&pk, TBP_VERSION, 200, 777);
	msgpack_pack_map(&pk, 0);
	expect_error(f, "op 200", sb.data, sb.size, TB_EUNKNOWNOP, -1, 777);
	msgpack_sbuffer_destroy(&sb);
	f->passed = true;
}

static void
test_array32_claiming_4_billion_elements_is_rejected(void **state)
{
	tbh_fix        *f = *state;
	msgpack_sbuffer sb;
	msgpack_packer  pk;
	// An array32 header claiming 0xffffffff elements, then a few bytes.
	static const uint8_t top[]   = { 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01,
		  0x01, 0x07, 0x80 };
	static const uint8_t arr32[] = { 0xdd, 0xff, 0xff, 0xff, 0xff };

	tbh_fix_start(f, NULL);
	expect_error(f, "top-level array32 of 4G", top, sizeof(top),
	    TB_EBADREQ, TB_ETOOBIG, 0);

	// The same inside a submit body: {"tasks": array32(4G)}.
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	pack_envelope(&pk, TBP_VERSION, TBP_OP_SUBMIT, 4242);
	msgpack_pack_map(&pk, 1);
	tbh_pack_cstr(&pk, "tasks");
	msgpack_sbuffer_write(&sb, (const char *) arr32, sizeof(arr32));
	expect_error(f, "tasks array32 of 4G", sb.data, sb.size, TB_EBADREQ,
	    TB_ETOOBIG, 0);
	msgpack_sbuffer_destroy(&sb);

	// A map32 claiming 4G pairs as the body.
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	pack_envelope(&pk, TBP_VERSION, TBP_OP_STATS, 4343);
	msgpack_sbuffer_write(&sb, "\xdf\xff\xff\xff\xff", 5);
	expect_error(f, "body map32 of 4G", sb.data, sb.size, TB_EBADREQ,
	    TB_ETOOBIG, 0);
	msgpack_sbuffer_destroy(&sb);

	// Nesting deeper than the limit: 100 nested arrays in the body.
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	pack_envelope(&pk, TBP_VERSION, TBP_OP_STATS, 4444);
	msgpack_pack_map(&pk, 1);
	tbh_pack_cstr(&pk, "x");
	for (int i = 0; i < 100; i++) {
		msgpack_pack_array(&pk, 1);
	}
	msgpack_pack_nil(&pk);
	expect_error(f, "nesting 100 deep", sb.data, sb.size, TB_ETOOBIG,
	    TB_EBADREQ, 0);
	msgpack_sbuffer_destroy(&sb);
	f->passed = true;
}

static void
test_payload_over_1mib_is_too_big(void **state)
{
	tbh_fix        *f = *state;
	msgpack_sbuffer sb, pb;
	msgpack_packer  pk;
	tbp_task_in     t;
	uint8_t         sid[TB_SID_LEN] = { 9, 9, 9 };
	char           *big;
	size_t          n  = TBP_MAX_PAYLOAD + 100;
	tb_id           id = 0;

	tbh_fix_start(f, NULL);
	// The payload is one valid msgpack object (bin32) over the limit.
	big = calloc(1, n);
	assert_non_null(big);
	msgpack_sbuffer_init(&pb);
	msgpack_packer_init(&pk, &pb, msgpack_sbuffer_write);
	msgpack_pack_bin(&pk, n);
	msgpack_pack_bin_body(&pk, big, n);
	free(big);

	memset(&t, 0, sizeof(t));
	t.sid     = (tbp_bytes) { sid, sizeof(sid) };
	t.handler = tbp_str("noop");
	t.payload =
	    (tbp_bytes) { (const uint8_t *) pb.data, (uint32_t) pb.size };
	msgpack_sbuffer_init(&sb);
	TBH_OK(tbp_enc_submit(&sb, 5150, &t, 1));
	expect_error(
	    f, "payload 1 MiB + 100", sb.data, sb.size, TB_ETOOBIG, -1, 0);
	msgpack_sbuffer_destroy(&sb);

	// Through the client library too (it may refuse it itself).
	TBH_RV(
	    tb_submit(f->c, "noop", pb.data, pb.size, NULL, &id), TB_ETOOBIG);
	msgpack_sbuffer_destroy(&pb);
	expect_healthy(f, "oversized payload through the client");
	f->passed = true;
}

static void
test_handler_name_of_10kb_is_too_big(void **state)
{
	tbh_fix        *f = *state;
	msgpack_sbuffer sb;
	tbp_task_in     t;
	uint8_t         sid[TB_SID_LEN] = { 7, 7, 7 };
	char           *name;
	size_t          n = 10 * 1024;

	tbh_fix_start(f, NULL);
	name = malloc(n + 1);
	assert_non_null(name);
	memset(name, 'h', n);
	name[n] = '\0';
	memset(&t, 0, sizeof(t));
	t.sid     = (tbp_bytes) { sid, sizeof(sid) };
	t.handler = (tbp_bytes) { (const uint8_t *) name, (uint32_t) n };
	msgpack_sbuffer_init(&sb);
	TBH_OK(tbp_enc_submit(&sb, 6160, &t, 1));
	expect_error(
	    f, "handler name 10 KiB", sb.data, sb.size, TB_ETOOBIG, -1, 0);
	msgpack_sbuffer_destroy(&sb);
	free(name);
	f->passed = true;
}

// raw_send_main is the child side of
// test_message_over_8mib_does_not_hurt_the_broker: it sends the bytes of file
// to url on a raw req0 socket and prints the reply's status. Exit 0: a reply
// came (status on stdout); 3: no reply. It leaves with _exit and never closes
// the socket: in nng 1.5.2, nng_close can hang after the peer dropped the pipe
// of an oversized message, and a hang must not take the test down with it (the
// parent kills us at its deadline).
static int
raw_send_main(const char *url, const char *file, int timeout_ms)
{
	nng_socket s;
	tbp_rep    rep;
	void      *buf, *r;
	size_t     len, rlen;
	int        rv;

	if ((buf = tbh_read_file(file, &len)) == NULL) {
		_exit(2);
	}
	if ((rv = tbh_raw_open(&s, url, timeout_ms)) != 0) {
		printf("open: %s\n", nng_strerror(rv));
		fflush(stdout);
		_exit(2);
	}
	if ((rv = tbh_raw_call(s, buf, len, &r, &rlen)) != 0) {
		printf("no reply: %s\n", nng_strerror(rv));
		fflush(stdout);
		_exit(3);
	}
	memset(&rep, 0, sizeof(rep));
	rv = tbp_rep_decode(&rep, r, rlen);
	printf("status %d decode %d\n", rv == TB_OK ? rep.status : -1, rv);
	fflush(stdout);
	_exit(0);
}

// A message over the transport's maximum (8 MiB): the broker may answer
// too_big or drop the connection at the transport level; either way it
// keeps running and answers others. The message is sent from a child
// process (see raw_send_main).
static void
test_message_over_8mib_does_not_hurt_the_broker(void **state)
{
	tbh_fix        *f = *state;
	msgpack_sbuffer sb;
	msgpack_packer  pk;
	char           *big, *out;
	char            file[TBH_PATH], outfile[TBH_PATH], ms[16];
	size_t          n = TBP_MAX_MSG + (1u << 20);
	FILE           *fp;
	pid_t           pid;
	int             code, status = -1, dec = -1;

	tbh_fix_start(f, NULL);
	big = calloc(1, n);
	assert_non_null(big);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	pack_envelope(&pk, TBP_VERSION, TBP_OP_PING, 7070);
	msgpack_pack_map(&pk, 1);
	tbh_pack_cstr(&pk, "junk");
	msgpack_pack_bin(&pk, n);
	msgpack_pack_bin_body(&pk, big, n);
	free(big);
	snprintf(file, sizeof(file), "%s/big.msg", f->b.dir);
	snprintf(outfile, sizeof(outfile), "%s/big.out", f->b.dir);
	assert_non_null(fp = fopen(file, "wb"));
	assert_int_equal(fwrite(sb.data, 1, sb.size, fp), sb.size);
	fclose(fp);
	msgpack_sbuffer_destroy(&sb);

	snprintf(ms, sizeof(ms), "%d", TBH_MS(3000));
	const char *const args[] = { "--raw-send", f->b.url, file, ms, NULL };
	assert_int_equal(tbh_spawn_self(&pid, args, outfile, NULL), 0);
	if ((code = tbh_waitpid(pid, TBH_MS(10000))) < 0) {
		print_message("9 MiB message: the sending process hung; "
		              "killed\n");
		tbh_kill_reap(pid);
	}
	out = tbh_read_file(outfile, NULL);
	print_message("9 MiB message -> sender exit %d: %s", code,
	    out != NULL ? out : "(no output)\n");
	if (code == 0 && out != NULL &&
	    sscanf(out, "status %d decode %d", &status, &dec) == 2 &&
	    status != TB_ETOOBIG) {
		print_error("9 MiB message: reply status %d (%s), decode %d; "
		            "want too_big or no reply\n",
		    status, tb_errname(status), dec);
		free(out);
		fail();
	}
	free(out);
	expect_healthy(f, "a 9 MiB message");
	f->passed = true;
}

// submit_sid sends a submit of one noop with the given sid on a raw socket
// and returns its id; *dupp receives the dup flag.
static tb_id
submit_sid(tbh_fix *f, const uint8_t *sid, uint64_t req_id, bool *dupp)
{
	msgpack_sbuffer sb;
	tbp_task_in     t;
	tbp_rep         rep;
	tb_id           id;
	int             rv;

	memset(&t, 0, sizeof(t));
	t.sid     = (tbp_bytes) { sid, TB_SID_LEN };
	t.handler = tbp_str("noop");
	msgpack_sbuffer_init(&sb);
	TBH_OK(tbp_enc_submit(&sb, req_id, &t, 1));
	rv = raw_send(f, sb.data, sb.size, RAW_MS, &rep);
	msgpack_sbuffer_destroy(&sb);
	if (rv != 0) {
		print_error("submit with a fixed sid: %s\n", nng_strerror(rv));
		fail();
	}
	if (rep.status != TB_OK || rep.nids != 1 || rep.dup == NULL ||
	    rep.req_id != req_id) {
		print_error("submit with a fixed sid: status %s, %u ids, dup "
		            "%s, req_id %llu (want %llu)\n",
		    tb_errname(rep.status), rep.nids,
		    rep.dup != NULL ? "present" : "absent",
		    (unsigned long long) rep.req_id,
		    (unsigned long long) req_id);
		tbp_rep_fini(&rep);
		fail();
	}
	id    = rep.ids[0];
	*dupp = rep.dup[0];
	tbp_rep_fini(&rep);
	return (id);
}

static size_t
count_tasks(tbh_fix *f)
{
	tbh_row *rows;
	size_t   n;

	TBH_OK(tbh_list_all(f->c, &rows, &n));
	free(rows);
	return (n);
}

static const uint8_t fixed_sid[TB_SID_LEN] = { 0x5e, 0x1d, 0xde, 0xad, 0xbe,
	0xef, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09 };

static void
test_same_sid_twice_creates_one_task(void **state)
{
	tbh_fix *f = *state;
	tb_id    id1, id2;
	bool     dup1, dup2;
	tb_stats st;

	tbh_fix_start(f, NULL);
	id1 = submit_sid(f, fixed_sid, 100, &dup1);
	id2 = submit_sid(f, fixed_sid, 101, &dup2);
	print_message("sid twice: ids %llu (dup %d), %llu (dup %d)\n",
	    (unsigned long long) id1, dup1, (unsigned long long) id2, dup2);
	assert_int_equal(id1, id2);
	assert_false(dup1);
	assert_true(dup2);
	tb_task_free(tbh_wait_final(f->c, id1, TBH_MS(10000)));
	assert_int_equal(count_tasks(f), 1);
	TBH_OK(tb_stats_get(f->c, &st));
	assert_int_equal(st.submitted, 1);
	assert_int_equal(st.done, 1);
	f->passed = true;
}

static void
test_same_sid_after_restart_returns_the_same_task(void **state)
{
	tbh_fix *f = *state;
	tb_id    id1, id2;
	bool     dup1, dup2;
	tb_task *t;
	int      code;

	tbh_fix_start(f, NULL);
	id1 = submit_sid(f, fixed_sid, 200, &dup1);
	assert_false(dup1);
	tb_task_free(tbh_wait_final(f->c, id1, TBH_MS(10000)));

	tb_client_close(f->c);
	f->c = NULL;
	code = tbh_stop(&f->b, TBH_MS(10000));
	if (code != 0) {
		print_error("SIGTERM: broker exit %d, want 0\n", code);
		fail();
	}
	if (tbh_restart(&f->b) != 0) {
		fail();
	}
	f->c = tbh_client(&f->b, 10000);
	assert_non_null(f->c);

	id2 = submit_sid(f, fixed_sid, 201, &dup2);
	print_message("sid across restart: ids %llu, %llu (dup %d)\n",
	    (unsigned long long) id1, (unsigned long long) id2, dup2);
	assert_int_equal(id1, id2);
	assert_true(dup2);
	assert_int_equal(count_tasks(f), 1);
	TBH_OK(tb_status(f->c, id1, &t));
	assert_int_equal(tb_task_state(t), TB_STATE_DONE);
	assert_int_equal(tb_task_attempts(t), 1);
	tb_task_free(t);
	f->passed = true;
}

// Numbers out of their range are refused before the broker computes with
// them: a list whose age filter is near 2^63 ms would overflow the
// broker's now - age * 1000 (undefined behaviour, which the sanitizer
// build aborts on). Through the client library: bad_request, and the
// broker goes on serving.
static void
test_list_with_an_age_near_2_63_ms_gets_bad_request(void **state)
{
	tbh_fix     *f  = *state;
	tb_list_opts o  = TB_LIST_OPTS_INIT;
	tb_task    **ts = NULL;
	size_t       n  = 0;

	tbh_fix_start(f, NULL);
	o.min_age_ms = (uint64_t) 1 << 62;
	TBH_RV(tb_list(f->c, &o, &ts, &n), TB_EBADREQ);
	o.min_age_ms = 0;
	o.max_age_ms = UINT64_MAX;
	TBH_RV(tb_list(f->c, &o, &ts, &n), TB_EBADREQ);
	TBH_RV(tb_purge(f->c, NULL, TB_STATE_DONE, UINT64_MAX / 2, NULL),
	    TB_EBADREQ);
	o.max_age_ms = 60000;
	TBH_OK(tb_list(f->c, &o, &ts, &n));
	tb_task_list_free(ts, n);
	TBH_OK(tb_ping(f->c, NULL));
	f->passed = true;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, tbh_teardown)

int
main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "--raw-send") == 0) {
		return (raw_send_main(argv[2], argv[3], atoi(argv[4])));
	}
	const struct CMUnitTest tests[] = {
		T(test_random_garbage_gets_bad_request),
		T(test_truncated_submit_gets_bad_request),
		T(test_version_99_gets_version_error_with_req_id),
		T(test_unknown_op_gets_unknown_op_with_req_id),
		T(test_list_with_an_age_near_2_63_ms_gets_bad_request),
		T(test_array32_claiming_4_billion_elements_is_rejected),
		T(test_payload_over_1mib_is_too_big),
		T(test_handler_name_of_10kb_is_too_big),
		T(test_message_over_8mib_does_not_hurt_the_broker),
		T(test_same_sid_twice_creates_one_task),
		T(test_same_sid_after_restart_returns_the_same_task),
	};

	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
