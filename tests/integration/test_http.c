// test_http.c: the "http" handler end to end. The test process runs a real
// HTTP server (and an HTTPS one) on 127.0.0.1 with nng's HTTP server; the
// real broker calls it. Each test starts its own broker; the servers live
// for the whole group and count the requests they see.
//
// The servers are on loopback, which the handler refuses unless
// --http-allow-internal covers it: start_broker allows 127.0.0.1 (and
// only it) for every test; the internal-address tests start their own.
// A second plain server listens on 127.0.0.2, a loopback address that
// 127.0.0.1 does not cover, as a redirect's target.
//
// TLS material: made afresh for each run by tests/data/http_tls/gen.sh
// (openssl) in a temporary directory: ca.pem signs the server's
// certificate for 127.0.0.1; other_ca.pem does not.

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <msgpack.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/supplemental/util/platform.h>

#include "harness.h"

#define WAIT_MS TBH_MS(15000)
#define SLOW_DELAY_MS 1500 // /slow answers after this
#define BIG_BODY 100000    // /big's body, more than a result holds

// The paths the servers serve; hits[] counts requests per path.
enum path_id {
	P_OK,
	P_CREATED,
	P_MISSING,
	P_BOOM,
	P_SLOW,
	P_ECHO,
	P_BIG,
	P_REDIR, // 302 to redir_target
	P_COUNT,
};

static const char *const paths[P_COUNT] = {
	"/ok",
	"/created",
	"/missing",
	"/boom",
	"/slow",
	"/echo",
	"/big",
	"/redir",
};

static atomic_int hits[P_COUNT];
static atomic_int slow_pending; // /slow replies not yet sent

typedef struct server {
	nng_http_server *s;
	nng_tls_config  *tls;
	char             base[64]; // "http://127.0.0.1:PORT"
} server;

static server http_srv;
static server https_srv;
static server lo2_srv;               // http on 127.0.0.2
static char   redir_target[96];      // /redir's Location: lo2_srv's /ok
static char   data_dir[TBH_PATH];    // the generated TLS material
static char   ca_arg[TBH_PATH + 32]; // its ca.pem
static char   other_ca_arg[TBH_PATH + 32];

static int
hits_total(void)
{
	int n = 0;
	for (int i = 0; i < P_COUNT; i++) {
		n += atomic_load(&hits[i]);
	}
	return (n);
}

static void
hits_reset(void)
{
	for (int i = 0; i < P_COUNT; i++) {
		atomic_store(&hits[i], 0);
	}
}

// reply finishes a server handler's aio with a response.
static void
reply(nng_aio *aio, uint16_t status, const char *ctype, const void *body,
    size_t len, const char *hname, const char *hval)
{
	nng_http_res *res;
	int           rv;

	if ((rv = nng_http_res_alloc(&res)) != 0) {
		nng_aio_finish(aio, rv);
		return;
	}
	if ((rv = nng_http_res_set_status(res, status)) != 0 ||
	    (ctype != NULL &&
	        (rv = nng_http_res_set_header(res, "Content-Type", ctype)) !=
	            0) ||
	    (hname != NULL &&
	        (rv = nng_http_res_set_header(res, hname, hval)) != 0) ||
	    (len > 0 && (rv = nng_http_res_copy_data(res, body, len)) != 0)) {
		nng_http_res_free(res);
		nng_aio_finish(aio, rv);
		return;
	}
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, 0);
}

static void
on_ok(nng_aio *aio)
{
	static const char body[] = "{\"ok\":true}";

	atomic_fetch_add(&hits[P_OK], 1);
	reply(aio, 200, "application/json", body, strlen(body), "ETag",
	    "\"v1\"");
}

static void
on_created(nng_aio *aio)
{
	atomic_fetch_add(&hits[P_CREATED], 1);
	reply(aio, 201, "text/plain", "made", 4, "Location", "/things/1");
}

static void
on_missing(nng_aio *aio)
{
	atomic_fetch_add(&hits[P_MISSING], 1);
	reply(aio, 404, "text/plain", "no such thing", 13, NULL, NULL);
}

static void
on_boom(nng_aio *aio)
{
	atomic_fetch_add(&hits[P_BOOM], 1);
	reply(aio, 500, "text/plain", "boom", 4, NULL, NULL);
}

// A /slow request waits on a timer aio; its callback replies.
typedef struct slow {
	nng_aio *timer;
	nng_aio *uaio; // the server's
} slow;

static void
slow_fire(void *arg)
{
	slow *s = arg;

	reply(s->uaio, 200, "text/plain", "late", 4, NULL, NULL);
	nng_aio_reap(s->timer); // from its own callback
	free(s);
	atomic_fetch_sub(&slow_pending, 1);
}

static void
on_slow(nng_aio *aio)
{
	slow *s;

	atomic_fetch_add(&hits[P_SLOW], 1);
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    nng_aio_alloc(&s->timer, slow_fire, s) != 0) {
		free(s);
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	s->uaio = aio;
	atomic_fetch_add(&slow_pending, 1);
	nng_sleep_aio(SLOW_DELAY_MS, s->timer);
}

// on_echo answers "METHOD|X-Test header|body".
static void
on_echo(nng_aio *aio)
{
	nng_http_req *req = nng_aio_get_input(aio, 0);
	const char   *xt  = nng_http_req_get_header(req, "X-Test");
	void         *data;
	size_t        len;
	char          out[1024];
	int           n;

	atomic_fetch_add(&hits[P_ECHO], 1);
	nng_http_req_get_data(req, &data, &len);
	n = snprintf(out, sizeof(out), "%s|%s|%.*s",
	    nng_http_req_get_method(req), xt != NULL ? xt : "", (int) len,
	    (const char *) data);
	reply(aio, 200, "text/plain", out, (size_t) n, NULL, NULL);
}

static void
on_big(nng_aio *aio)
{
	char *body = malloc(BIG_BODY);

	atomic_fetch_add(&hits[P_BIG], 1);
	if (body == NULL) {
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	memset(body, 'a', BIG_BODY);
	reply(
	    aio, 200, "application/octet-stream", body, BIG_BODY, NULL, NULL);
	free(body);
}

static void
on_redir(nng_aio *aio)
{
	atomic_fetch_add(&hits[P_REDIR], 1);
	reply(aio, 302, "text/plain", "moved", 5, "Location", redir_target);
}

static void (*const path_cbs[P_COUNT])(nng_aio *) = {
	on_ok,
	on_created,
	on_missing,
	on_boom,
	on_slow,
	on_echo,
	on_big,
	on_redir,
};

// server_start serves every path on scheme://ip:0 (with TLS from
// tests/data/http_tls when tls) and writes its base URL. Returns an nng
// error.
static int
server_start(server *sv, bool tls, const char *ip)
{
	char u[64];

	nng_url     *url;
	nng_sockaddr sa;
	char         cert[TBH_PATH + 32], key[TBH_PATH + 32];
	char        *certpem = NULL, *keypem = NULL;
	int          rv;

	snprintf(u, sizeof(u), "%s://%s:0", tls ? "https" : "http", ip);
	rv = nng_url_parse(&url, u);
	if (rv != 0) {
		return (rv);
	}
	rv = nng_http_server_hold(&sv->s, url);
	nng_url_free(url);
	if (rv != 0) {
		return (rv);
	}
	for (int i = 0; i < P_COUNT; i++) {
		nng_http_handler *h;
		if ((rv = nng_http_handler_alloc(&h, paths[i], path_cbs[i])) !=
		    0) {
			return (rv);
		}
		// Any method, with the request body collected (echo).
		if ((rv = nng_http_handler_set_method(h, NULL)) != 0 ||
		    (rv = nng_http_handler_collect_body(h, true, 65536)) !=
		        0 ||
		    (rv = nng_http_server_add_handler(sv->s, h)) != 0) {
			nng_http_handler_free(h);
			return (rv);
		}
	}
	if (tls) {
		snprintf(cert, sizeof(cert), "%s/server.pem", data_dir);
		snprintf(key, sizeof(key), "%s/server.key", data_dir);
		if ((certpem = tbh_read_file(cert, NULL)) == NULL ||
		    (keypem = tbh_read_file(key, NULL)) == NULL) {
			free(certpem);
			return (NNG_ENOENT);
		}
		if ((rv = nng_tls_config_alloc(
		         &sv->tls, NNG_TLS_MODE_SERVER)) != 0 ||
		    (rv = nng_tls_config_own_cert(
		         sv->tls, certpem, keypem, NULL)) != 0 ||
		    (rv = nng_http_server_set_tls(sv->s, sv->tls)) != 0) {
			free(certpem);
			free(keypem);
			return (rv);
		}
		free(certpem);
		free(keypem);
	}
	if ((rv = nng_http_server_start(sv->s)) != 0 ||
	    (rv = nng_http_server_get_addr(sv->s, &sa)) != 0) {
		return (rv);
	}
	snprintf(sv->base, sizeof(sv->base), "%s://%s:%u",
	    tls ? "https" : "http", ip, (unsigned) ntohs(sa.s_in.sa_port));
	return (0);
}

static void
server_stop(server *sv)
{
	int64_t deadline = tbh_now_ms() + 5000;

	// Slow replies still due would finish an aio of a stopped server.
	while (atomic_load(&slow_pending) > 0 && tbh_now_ms() < deadline) {
		tbh_sleep_ms(10);
	}
	if (sv->s != NULL) {
		nng_http_server_stop(sv->s);
		nng_http_server_release(sv->s);
		sv->s = NULL;
	}
	if (sv->tls != NULL) {
		nng_tls_config_free(sv->tls);
		sv->tls = NULL;
	}
}

// The raw server: a thread on plain sockets that answers with responses
// nng's server never sends (chunked, no length, malformed), each split
// into several writes so the handler's decoder sees them in pieces.
static int        raw_fd = -1;
static int        raw_port;
static atomic_int raw_accepts; // connections the raw server accepted
static pthread_t  raw_thread;

static void
raw_send_pieces(int fd, const char *s)
{
	size_t len = strlen(s);

	for (size_t off = 0; off < len; off += 7) {
		size_t n = len - off < 7 ? len - off : 7;
		if (send(fd, s + off, n, MSG_NOSIGNAL) < 0) {
			return;
		}
		tbh_sleep_ms(2);
	}
}

static void *
raw_main(void *arg)
{
	int fd;

	(void) arg;
	while ((fd = accept(raw_fd, NULL, NULL)) >= 0) {
		char req[4096];
		atomic_fetch_add(&raw_accepts, 1);
		ssize_t n = recv(fd, req, sizeof(req) - 1, 0);

		req[n > 0 ? n : 0] = '\0';
		if (strncmp(req, "GET /chunked ", 13) == 0) {
			raw_send_pieces(fd,
			    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
			    "Transfer-Encoding: chunked\r\n\r\n"
			    "5;ext=1\r\nhello\r\n7\r\n, world\r\n"
			    "0\r\nX-Trailer: t\r\n\r\n");
		} else if (strncmp(req, "GET /eof ", 9) == 0) {
			raw_send_pieces(fd,
			    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
			    "\r\nuntil the end");
		} else {
			raw_send_pieces(fd,
			    "HTTP/1.1 200 OK\r\n"
			    "Transfer-Encoding: chunked\r\n\r\n"
			    "zz\r\nnot hex\r\n0\r\n\r\n");
		}
		close(fd);
	}
	return (NULL);
}

static int
raw_start(void)
{
	struct sockaddr_in sa;
	socklen_t          len = sizeof(sa);

	memset(&sa, 0, sizeof(sa));
	sa.sin_family      = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((raw_fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    bind(raw_fd, (struct sockaddr *) &sa, sizeof(sa)) != 0 ||
	    listen(raw_fd, 16) != 0 ||
	    getsockname(raw_fd, (struct sockaddr *) &sa, &len) != 0 ||
	    pthread_create(&raw_thread, NULL, raw_main, NULL) != 0) {
		return (-1);
	}
	raw_port = ntohs(sa.sin_port);
	return (0);
}

static void
raw_stop(void)
{
	if (raw_fd >= 0) {
		shutdown(raw_fd, SHUT_RDWR); // accept fails: the thread ends
		pthread_join(raw_thread, NULL);
		close(raw_fd);
		raw_fd = -1;
	}
}

// make_tls_material runs gen.sh into a fresh temporary directory: a test
// CA, a server certificate it signs, and an unrelated CA.
static int
make_tls_material(const char *test_data)
{
	char  gen[TBH_PATH + 32];
	char  log[TBH_PATH + 32];
	pid_t pid;
	int   status = 0;

	snprintf(data_dir, sizeof(data_dir), "/tmp/tbtls-XXXXXX");
	if (mkdtemp(data_dir) == NULL) {
		print_error("mkdtemp: %s\n", strerror(errno));
		return (-1);
	}
	snprintf(gen, sizeof(gen), "%s/http_tls/gen.sh", test_data);
	snprintf(log, sizeof(log), "%s/gen.log", data_dir);
	char *const argv[] = { "/bin/sh", gen, data_dir, NULL };
	(void) status;
	if (tbh_spawn(&pid, argv, log, log) != 0 ||
	    tbh_waitpid(pid, 30000) != 0) {
		print_error(
		    "%s failed; see %s (is openssl installed?)\n", gen, log);
		return (-1);
	}
	return (0);
}

static int
group_setup(void **state)
{
	const char *d = getenv("TB_TEST_DATA");
	int         rv;

	(void) state;
	if (d == NULL) {
		print_error("TB_TEST_DATA is not set\n");
		return (-1);
	}
	if (make_tls_material(d) != 0) {
		return (-1);
	}
	snprintf(ca_arg, sizeof(ca_arg), "%s/ca.pem", data_dir);
	snprintf(
	    other_ca_arg, sizeof(other_ca_arg), "%s/other_ca.pem", data_dir);
	if ((rv = server_start(&http_srv, false, "127.0.0.1")) != 0 ||
	    (rv = server_start(&https_srv, true, "127.0.0.1")) != 0 ||
	    (rv = server_start(&lo2_srv, false, "127.0.0.2")) != 0) {
		print_error("test servers: %s\n", nng_strerror(rv));
		return (-1);
	}
	snprintf(redir_target, sizeof(redir_target), "%s/ok", lo2_srv.base);
	if (raw_start() != 0) {
		print_error("raw test server: %s\n", strerror(errno));
		return (-1);
	}
	return (0);
}

static int
group_teardown(void **state)
{
	(void) state;
	raw_stop();
	server_stop(&lo2_srv);
	server_stop(&https_srv);
	server_stop(&http_srv);
	if (data_dir[0] != '\0') {
		tbh_rmtree(data_dir);
	}
	return (0);
}

// start_broker starts the fixture's broker with --http-allow-internal
// 127.0.0.1 (the test servers' address) before args (may be NULL).
static void
start_broker(tbh_fix *f, const char *const *args)
{
	const char *all[16] = { "--http-allow-internal", "127.0.0.1" };
	size_t      n       = 2;

	for (; args != NULL && *args != NULL; args++) {
		assert_true(n + 1 < sizeof(all) / sizeof(all[0]));
		all[n++] = *args;
	}
	all[n] = NULL;
	tbh_fix_start(f, all);
}

// req_opts: the fields of one http payload; NULL/false fields are left
// out.
typedef struct req_opts {
	const char *url;
	const char *method;
	const char *hname; // one request header
	const char *hval;
	const char *body;
	bool        retry_4xx;
	int         max_redirects; // 0: left out
} req_opts;

static void *
pack_req(const req_opts *o, size_t *lenp)
{
	msgpack_sbuffer sb;
	msgpack_packer  pk;
	uint32_t        n = 1;

	n += o->method != NULL;
	n += o->hname != NULL;
	n += o->body != NULL;
	n += o->retry_4xx;
	n += o->max_redirects > 0;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, n);
	msgpack_pack_str_with_body(&pk, "url", 3);
	msgpack_pack_str_with_body(&pk, o->url, strlen(o->url));
	if (o->method != NULL) {
		msgpack_pack_str_with_body(&pk, "method", 6);
		msgpack_pack_str_with_body(&pk, o->method, strlen(o->method));
	}
	if (o->hname != NULL) {
		msgpack_pack_str_with_body(&pk, "headers", 7);
		msgpack_pack_map(&pk, 1);
		msgpack_pack_str_with_body(&pk, o->hname, strlen(o->hname));
		msgpack_pack_str_with_body(&pk, o->hval, strlen(o->hval));
	}
	if (o->body != NULL) {
		msgpack_pack_str_with_body(&pk, "body", 4);
		msgpack_pack_str_with_body(&pk, o->body, strlen(o->body));
	}
	if (o->retry_4xx) {
		msgpack_pack_str_with_body(&pk, "retry_4xx", 9);
		msgpack_pack_true(&pk);
	}
	if (o->max_redirects > 0) {
		msgpack_pack_str_with_body(&pk, "max_redirects", 13);
		msgpack_pack_int(&pk, o->max_redirects);
	}
	*lenp = sb.size;
	return (sb.data); // the caller frees it
}

// run_req submits one http task and waits for its end.
static tb_task *
run_req(
    tbh_fix *f, const req_opts *o, uint32_t max_attempts, uint32_t timeout_ms)
{
	tb_submit_opts so = TB_SUBMIT_OPTS_INIT;
	size_t         len;
	void          *p = pack_req(o, &len);
	tb_id          id;
	tb_task       *t;

	so.max_attempts = max_attempts;
	so.timeout_ms   = timeout_ms;
	id              = tbh_submit(f->c, "http", p, len, &so);
	free(p);
	t = tbh_wait_final(f->c, id, WAIT_MS);
	print_message("  %s: %s after %u attempts, error: %s\n", o->url,
	    tb_state_name(tb_task_state(t)), tb_task_attempts(t),
	    tb_task_error(t) != NULL ? tb_task_error(t) : "(none)");
	return (t);
}

static void
expect_state(tb_task *t, int want)
{
	if (tb_task_state(t) != want) {
		print_error("task %llu is %s, want %s (attempts %u, error "
		            "%s)\n",
		    (unsigned long long) tb_task_id(t),
		    tb_state_name(tb_task_state(t)), tb_state_name(want),
		    tb_task_attempts(t),
		    tb_task_error(t) != NULL ? tb_task_error(t) : "(none)");
		tb_task_free(t);
		fail();
	}
}

// expect_error fails unless the task's error contains want.
static void
expect_error(tb_task *t, const char *want)
{
	const char *e = tb_task_error(t);

	if (e == NULL || strstr(e, want) == NULL) {
		print_error("task error \"%s\" does not mention \"%s\"\n",
		    e != NULL ? e : "(none)", want);
		tb_task_free(t);
		fail();
	}
}

static const msgpack_object *
map_get(const msgpack_object *m, const char *key)
{
	size_t klen = strlen(key);

	if (m->type != MSGPACK_OBJECT_MAP) {
		return (NULL);
	}
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *k = &m->via.map.ptr[i].key;
		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
		    memcmp(k->via.str.ptr, key, klen) == 0) {
			return (&m->via.map.ptr[i].val);
		}
	}
	return (NULL);
}

// result is a task's decoded result.
typedef struct result {
	msgpack_unpacked up;
	uint64_t         status;
	const char      *body; // not NUL-terminated
	size_t           body_len;
	bool             truncated;
} result;

// result_get decodes t's result {"status", "headers", "body"}; asserts
// its shape. Destroy r->up afterwards.
static void
result_get(const tb_task *t, result *r)
{
	const void           *p;
	size_t                len, off = 0;
	const msgpack_object *v;

	memset(r, 0, sizeof(*r));
	msgpack_unpacked_init(&r->up);
	p = tb_task_result(t, &len);
	assert_non_null(p);
	assert_int_equal(
	    msgpack_unpack_next(&r->up, p, len, &off), MSGPACK_UNPACK_SUCCESS);
	assert_int_equal(r->up.data.type, MSGPACK_OBJECT_MAP);
	assert_non_null(v = map_get(&r->up.data, "status"));
	assert_int_equal(v->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	r->status = v->via.u64;
	assert_non_null(v = map_get(&r->up.data, "headers"));
	assert_int_equal(v->type, MSGPACK_OBJECT_MAP);
	assert_non_null(v = map_get(&r->up.data, "body"));
	assert_int_equal(v->type, MSGPACK_OBJECT_BIN);
	r->body     = v->via.bin.ptr;
	r->body_len = v->via.bin.size;
	if ((v = map_get(&r->up.data, "truncated")) != NULL) {
		assert_int_equal(v->type, MSGPACK_OBJECT_BOOLEAN);
		r->truncated = v->via.boolean;
	}
}

// expect_header checks one of the result's headers.
static void
expect_header(result *r, const char *name, const char *want)
{
	const msgpack_object *h = map_get(&r->up.data, "headers");
	const msgpack_object *v = map_get(h, name);

	if (v == NULL || v->type != MSGPACK_OBJECT_STR ||
	    v->via.str.size != strlen(want) ||
	    memcmp(v->via.str.ptr, want, v->via.str.size) != 0) {
		print_error("result header %s: want \"%s\"\n", name, want);
		fail();
	}
}

static void
url_of(char *out, size_t n, const server *sv, const char *path)
{
	snprintf(out, n, "%s%s", sv->base, path);
}

static void
test_get_200_gives_status_headers_and_body(void **state)
{
	tbh_fix *f = *state;
	char     url[128];
	req_opts o = { 0 };
	tb_task *t;
	result   r;

	hits_reset();
	start_broker(f, NULL);
	url_of(url, sizeof(url), &http_srv, "/ok");
	o.url = url;
	t     = run_req(f, &o, 1, 0);
	expect_state(t, TB_STATE_DONE);
	result_get(t, &r);
	assert_int_equal(r.status, 200);
	expect_header(&r, "content-type", "application/json");
	expect_header(&r, "etag", "\"v1\"");
	expect_header(&r, "content-length", "11");
	assert_int_equal(r.body_len, 11);
	assert_memory_equal(r.body, "{\"ok\":true}", 11);
	assert_false(r.truncated);
	msgpack_unpacked_destroy(&r.up);
	tb_task_free(t);
	assert_int_equal(atomic_load(&hits[P_OK]), 1);
	f->passed = true;
}

static void
test_201_is_success_with_location(void **state)
{
	tbh_fix *f = *state;
	char     url[128];
	req_opts o = { 0 };
	tb_task *t;
	result   r;

	start_broker(f, NULL);
	url_of(url, sizeof(url), &http_srv, "/created");
	o.url    = url;
	o.method = "PUT";
	t        = run_req(f, &o, 1, 0);
	expect_state(t, TB_STATE_DONE);
	result_get(t, &r);
	assert_int_equal(r.status, 201);
	expect_header(&r, "location", "/things/1");
	msgpack_unpacked_destroy(&r.up);
	tb_task_free(t);
	f->passed = true;
}

static void
test_post_sends_method_headers_and_body(void **state)
{
	tbh_fix   *f = *state;
	char       url[128];
	req_opts   o = { 0 };
	tb_task   *t;
	result     r;
	const char want[] = "POST|hello there|{\"a\": 1}";

	start_broker(f, NULL);
	url_of(url, sizeof(url), &http_srv, "/echo");
	o.url    = url;
	o.method = "POST";
	o.hname  = "X-Test";
	o.hval   = "hello there";
	o.body   = "{\"a\": 1}";
	t        = run_req(f, &o, 1, 0);
	expect_state(t, TB_STATE_DONE);
	result_get(t, &r);
	assert_int_equal(r.status, 200);
	print_message("  echo: %.*s\n", (int) r.body_len, r.body);
	assert_int_equal(r.body_len, strlen(want));
	assert_memory_equal(r.body, want, strlen(want));
	msgpack_unpacked_destroy(&r.up);
	tb_task_free(t);
	f->passed = true;
}

static void
test_404_is_dead_after_one_attempt(void **state)
{
	tbh_fix *f = *state;
	char     url[128];
	req_opts o = { 0 };
	tb_task *t;

	hits_reset();
	start_broker(f, NULL);
	url_of(url, sizeof(url), &http_srv, "/missing");
	o.url = url;
	t     = run_req(f, &o, 3, 0);
	expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 1);
	expect_error(t, "HTTP 404");
	expect_error(t, "no such thing");
	tb_task_free(t);
	assert_int_equal(atomic_load(&hits[P_MISSING]), 1);
	f->passed = true;
}

static void
test_404_with_retry_4xx_is_retried(void **state)
{
	tbh_fix *f = *state;
	char     url[128];
	req_opts o = { 0 };
	tb_task *t;

	hits_reset();
	start_broker(f, NULL);
	url_of(url, sizeof(url), &http_srv, "/missing");
	o.url       = url;
	o.retry_4xx = true;
	t           = run_req(f, &o, 3, 0);
	expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 3);
	expect_error(t, "HTTP 404");
	tb_task_free(t);
	assert_int_equal(atomic_load(&hits[P_MISSING]), 3);
	f->passed = true;
}

static void
test_500_is_retried_until_dead(void **state)
{
	tbh_fix *f = *state;
	char     url[128];
	req_opts o = { 0 };
	tb_task *t;

	hits_reset();
	start_broker(f, NULL);
	url_of(url, sizeof(url), &http_srv, "/boom");
	o.url = url;
	t     = run_req(f, &o, 3, 0);
	expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 3);
	expect_error(t, "HTTP 500");
	tb_task_free(t);
	assert_int_equal(atomic_load(&hits[P_BOOM]), 3);
	f->passed = true;
}

// closed_port finds a port on 127.0.0.1 that nothing listens on: it binds
// one and closes it again.
static int
closed_port(void)
{
	nng_stream_listener *l;
	int                  port = 0;

	assert_int_equal(
	    nng_stream_listener_alloc(&l, "tcp://127.0.0.1:0"), 0);
	assert_int_equal(nng_stream_listener_listen(l), 0);
	assert_int_equal(
	    nng_stream_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port), 0);
	nng_stream_listener_free(l);
	return (port);
}

static void
test_connection_refused_is_retried(void **state)
{
	tbh_fix *f = *state;
	char     url[128];
	req_opts o = { 0 };
	tb_task *t;

	start_broker(f, NULL);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/ok", closed_port());
	o.url = url;
	t     = run_req(f, &o, 2, 0);
	expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 2);
	expect_error(t, "refused");
	tb_task_free(t);
	f->passed = true;
}

static void
test_slow_server_times_out(void **state)
{
	tbh_fix *f = *state;
	char     url[128];
	req_opts o = { 0 };
	tb_task *t;
	int64_t  t0;

	hits_reset();
	start_broker(f, NULL);
	url_of(url, sizeof(url), &http_srv, "/slow");
	o.url = url;
	t0    = tbh_now_ms();
	t     = run_req(f, &o, 1, 300);
	expect_state(t, TB_STATE_DEAD);
	expect_error(t, "timed out");
	assert_true(tbh_now_ms() - t0 < SLOW_DELAY_MS);
	tb_task_free(t);
	assert_int_equal(atomic_load(&hits[P_SLOW]), 1);
	f->passed = true;
}

static void
test_cancel_aborts_a_request_in_flight(void **state)
{
	tbh_fix       *f  = *state;
	tb_submit_opts so = TB_SUBMIT_OPTS_INIT;
	char           url[128];
	req_opts       o = { 0 };
	size_t         len;
	void          *p;
	tb_id          id;
	tb_task       *t;

	hits_reset();
	start_broker(f, NULL);
	url_of(url, sizeof(url), &http_srv, "/slow");
	o.url           = url;
	p               = pack_req(&o, &len);
	so.max_attempts = 3;
	id              = tbh_submit(f->c, "http", p, len, &so);
	free(p);
	for (int64_t end = tbh_now_ms() + WAIT_MS;
	     atomic_load(&hits[P_SLOW]) == 0 && tbh_now_ms() < end;) {
		tbh_sleep_ms(5);
	}
	assert_int_equal(atomic_load(&hits[P_SLOW]), 1);
	TBH_OK(tb_cancel(f->c, id, NULL));
	t = tbh_wait_final(f->c, id, WAIT_MS);
	expect_state(t, TB_STATE_CANCELLED);
	tb_task_free(t);
	f->passed = true;
}

static void
test_host_not_allowed_is_refused_without_a_request(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--http-allow-host", "127.0.0.1", NULL };
	char              url[128];
	req_opts          o = { 0 };
	tb_task          *t;
	const char       *port = strrchr(http_srv.base, ':') + 1;

	hits_reset();
	start_broker(f, args);
	snprintf(url, sizeof(url), "http://localhost:%s/ok", port);
	o.url = url;
	t     = run_req(f, &o, 3, 0);
	expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 1);
	expect_error(t, "not allowed");
	expect_error(t, "localhost");
	tb_task_free(t);
	assert_int_equal(hits_total(), 0);

	// The allowed host works on the same broker.
	url_of(url, sizeof(url), &http_srv, "/ok");
	t = run_req(f, &o, 1, 0);
	expect_state(t, TB_STATE_DONE);
	tb_task_free(t);
	assert_int_equal(hits_total(), 1);
	f->passed = true;
}

static void
test_bad_payloads_are_dead_without_retry(void **state)
{
	tbh_fix *f = *state;
	req_opts o = { 0 };
	tb_task *t;

	start_broker(f, NULL);
	o.url = "ftp://127.0.0.1/x";
	t     = run_req(f, &o, 3, 0);
	expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 1);
	expect_error(t, "scheme");
	tb_task_free(t);

	o.url   = "http://127.0.0.1:1/";
	o.hname = "X-Evil";
	o.hval  = "a\r\nInjected: yes";
	t       = run_req(f, &o, 3, 0);
	expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 1);
	expect_error(t, "control characters");
	tb_task_free(t);
	f->passed = true;
}

static void
test_big_body_is_cut_and_marked_truncated(void **state)
{
	tbh_fix *f = *state;
	char     url[128];
	req_opts o = { 0 };
	tb_task *t;
	result   r;

	start_broker(f, NULL);
	url_of(url, sizeof(url), &http_srv, "/big");
	o.url = url;
	t     = run_req(f, &o, 1, 0);
	expect_state(t, TB_STATE_DONE);
	result_get(t, &r);
	assert_int_equal(r.status, 200);
	assert_true(r.truncated);
	print_message("  body kept: %zu of %d bytes\n", r.body_len, BIG_BODY);
	assert_true(r.body_len > 32768 && r.body_len < 65536);
	assert_int_equal(r.body[0], 'a');
	assert_int_equal(r.body[r.body_len - 1], 'a');
	expect_header(&r, "content-length", "100000");
	msgpack_unpacked_destroy(&r.up);
	tb_task_free(t);
	f->passed = true;
}

static void
test_chunked_and_unframed_bodies_are_read(void **state)
{
	tbh_fix *f = *state;
	char     url[128];
	req_opts o = { 0 };
	tb_task *t;
	result   r;

	start_broker(f, NULL);
	o.url = url;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/chunked", raw_port);
	t = run_req(f, &o, 1, 0);
	expect_state(t, TB_STATE_DONE);
	result_get(t, &r);
	assert_int_equal(r.body_len, 12);
	assert_memory_equal(r.body, "hello, world", 12);
	msgpack_unpacked_destroy(&r.up);
	tb_task_free(t);

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/eof", raw_port);
	t = run_req(f, &o, 1, 0);
	expect_state(t, TB_STATE_DONE);
	result_get(t, &r);
	assert_int_equal(r.body_len, 13);
	assert_memory_equal(r.body, "until the end", 13);
	msgpack_unpacked_destroy(&r.up);
	tb_task_free(t);

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/bad", raw_port);
	t = run_req(f, &o, 2, 0);
	expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 2); // retried
	expect_error(t, "malformed response");
	tb_task_free(t);
	f->passed = true;
}

static void
test_https_with_the_test_ca_succeeds(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--http-ca-file", ca_arg, NULL };
	char              url[128];
	req_opts          o = { 0 };
	tb_task          *t;
	result            r;

	hits_reset();
	start_broker(f, args);
	url_of(url, sizeof(url), &https_srv, "/ok");
	o.url = url;
	t     = run_req(f, &o, 1, 0);
	expect_state(t, TB_STATE_DONE);
	result_get(t, &r);
	assert_int_equal(r.status, 200);
	assert_memory_equal(r.body, "{\"ok\":true}", 11);
	msgpack_unpacked_destroy(&r.up);
	tb_task_free(t);
	assert_int_equal(atomic_load(&hits[P_OK]), 1);
	f->passed = true;
}

// https_must_fail runs /ok on the https server and expects a certificate
// failure: dead after one attempt, and no request reached the server.
static void
https_must_fail(tbh_fix *f)
{
	char     url[128];
	req_opts o = { 0 };
	tb_task *t;

	url_of(url, sizeof(url), &https_srv, "/ok");
	o.url = url;
	t     = run_req(f, &o, 3, 0);
	expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 1);
	expect_error(t, "certificate");
	tb_task_free(t);
	assert_int_equal(hits_total(), 0);
}

static void
test_https_with_the_system_store_fails_verification(void **state)
{
	tbh_fix *f = *state;

	hits_reset();
	start_broker(f, NULL);
	https_must_fail(f);
	f->passed = true;
}

static void
test_https_with_another_ca_fails_verification(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--http-ca-file", other_ca_arg, NULL };

	hits_reset();
	start_broker(f, args);
	https_must_fail(f);
	f->passed = true;
}

static void
test_unreadable_ca_file_stops_the_start(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--http-ca-file",
		"/nonexistent/taskbroker-test-ca.pem", NULL };
	char             *log;

	assert_int_equal(tbh_start(&f->b, args), -1);
	assert_false(tbh_running(&f->b));
	assert_non_null(log = tbh_read_file(f->b.log_path, NULL));
	if (strstr(log, "http-ca-file") == NULL) {
		print_error("the broker log does not name --http-ca-file\n");
		free(log);
		fail();
	}
	free(log);
	f->passed = true;
}

// expect_refused runs url on the broker and expects the internal-address
// refusal: dead after one attempt, its error containing want.
static void
expect_refused(tbh_fix *f, const char *url, const char *want)
{
	req_opts o = { 0 };
	tb_task *t;

	o.url = url;
	t     = run_req(f, &o, 3, 0);
	expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 1);
	expect_error(t, want);
	expect_error(t, "--http-allow-internal");
	expect_error(t, "no request was made");
	tb_task_free(t);
}

static void
test_internal_addresses_are_refused_by_default(void **state)
{
	tbh_fix    *f    = *state;
	const char *port = strrchr(http_srv.base, ':') + 1;
	char        url[128];
	int         accepts;

	hits_reset();
	tbh_fix_start(f, NULL); // no --http-allow-internal
	accepts = atomic_load(&raw_accepts);
	// A name that resolves to loopback: not even a connection is made.
	snprintf(url, sizeof(url), "http://localhost:%d/chunked", raw_port);
	expect_refused(
	    f, url, "localhost resolves to 127.0.0.1, a loopback address");
	assert_int_equal(atomic_load(&raw_accepts), accepts);
	snprintf(url, sizeof(url), "http://localhost:%s/ok", port);
	expect_refused(f, url, "a loopback address");
	url_of(url, sizeof(url), &http_srv, "/ok");
	expect_refused(f, url, "127.0.0.1 is a loopback address");
	snprintf(url, sizeof(url), "http://127.9.8.7:%s/ok", port);
	expect_refused(f, url, "127.9.8.7 is a loopback address");
	snprintf(url, sizeof(url), "http://[::ffff:127.0.0.1]:%s/ok", port);
	expect_refused(f, url, "resolves to 127.0.0.1, a loopback address");
	snprintf(url, sizeof(url), "http://0.0.0.0:%s/ok", port);
	expect_refused(f, url, "0.0.0.0 is an unspecified address");
	snprintf(url, sizeof(url), "http://[::]:%s/ok", port);
	expect_refused(f, url, ":: is an unspecified address");
	snprintf(url, sizeof(url), "http://[::1]:%s/ok", port);
	expect_refused(f, url, "::1 is a loopback address");
	snprintf(url, sizeof(url), "http://169.254.169.254:%s/ok", port);
	expect_refused(f, url, "169.254.169.254 is a link-local address");
	snprintf(url, sizeof(url), "http://[fe80::1]:%s/ok", port);
	expect_refused(f, url, "fe80::1 is a link-local address");
	assert_int_equal(hits_total(), 0);
	f->passed = true;
}

static void
test_allowed_internal_range_is_reached_by_name(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--http-allow-internal", "127.0.0.0/8",
		NULL };
	const char       *port   = strrchr(http_srv.base, ':') + 1;
	char              url[128];
	req_opts          o = { 0 };
	tb_task          *t;
	result            r;

	hits_reset();
	tbh_fix_start(f, args);
	snprintf(url, sizeof(url), "http://localhost:%s/ok", port);
	o.url = url;
	t     = run_req(f, &o, 1, 0);
	expect_state(t, TB_STATE_DONE);
	result_get(t, &r);
	assert_int_equal(r.status, 200);
	msgpack_unpacked_destroy(&r.up);
	tb_task_free(t);
	assert_int_equal(atomic_load(&hits[P_OK]), 1);
	f->passed = true;
}

static void
test_bad_allow_internal_entry_stops_the_start(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--http-allow-internal", "127.0.0.1/33",
		NULL };
	char             *log;

	assert_int_equal(tbh_start(&f->b, args), -1);
	assert_false(tbh_running(&f->b));
	assert_non_null(log = tbh_read_file(f->b.log_path, NULL));
	if (strstr(log, "--http-allow-internal 127.0.0.1/33") == NULL) {
		print_error("the broker log does not name the bad entry\n");
		free(log);
		fail();
	}
	free(log);
	f->passed = true;
}

static void
test_redirect_is_not_followed_without_max_redirects(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--http-allow-internal", "127.0.0.2",
		NULL };
	char              url[128];
	req_opts          o = { 0 };
	tb_task          *t;

	hits_reset();
	start_broker(f, args);
	url_of(url, sizeof(url), &http_srv, "/redir");
	o.url = url;
	t     = run_req(f, &o, 3, 0);
	expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 1);
	expect_error(t, "HTTP 302");
	expect_error(t, "not followed");
	tb_task_free(t);
	assert_int_equal(atomic_load(&hits[P_REDIR]), 1);
	assert_int_equal(atomic_load(&hits[P_OK]), 0);
	f->passed = true;
}

static void
test_redirect_to_a_disallowed_loopback_address_is_refused(void **state)
{
	tbh_fix *f = *state;
	char     url[128];
	req_opts o = { 0 };
	tb_task *t;

	hits_reset();
	start_broker(f, NULL); // 127.0.0.1 allowed, 127.0.0.2 not
	url_of(url, sizeof(url), &http_srv, "/redir");
	o.url           = url;
	o.max_redirects = 3;
	t               = run_req(f, &o, 3, 0);
	expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 1);
	expect_error(t, "redirected there: host 127.0.0.2 is a loopback");
	expect_error(t, "--http-allow-internal");
	tb_task_free(t);
	assert_int_equal(atomic_load(&hits[P_REDIR]), 1);
	assert_int_equal(atomic_load(&hits[P_OK]), 0); // lo2 saw nothing
	f->passed = true;
}

static void
test_redirect_to_a_host_not_allowed_is_refused(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--http-allow-internal", "127.0.0.2",
		"--http-allow-host", "127.0.0.1", NULL };
	char              url[128];
	req_opts          o = { 0 };
	tb_task          *t;

	hits_reset();
	start_broker(f, args);
	url_of(url, sizeof(url), &http_srv, "/redir");
	o.url           = url;
	o.max_redirects = 3;
	t               = run_req(f, &o, 3, 0);
	expect_state(t, TB_STATE_DEAD);
	assert_int_equal(tb_task_attempts(t), 1);
	expect_error(t, "host \"127.0.0.2\" is not allowed");
	tb_task_free(t);
	assert_int_equal(atomic_load(&hits[P_REDIR]), 1);
	assert_int_equal(atomic_load(&hits[P_OK]), 0);
	f->passed = true;
}

static void
test_redirect_to_an_allowed_internal_address_is_followed(void **state)
{
	tbh_fix          *f      = *state;
	const char *const args[] = { "--http-allow-internal", "127.0.0.2",
		NULL };
	char              url[128];
	req_opts          o = { 0 };
	tb_task          *t;
	result            r;

	hits_reset();
	start_broker(f, args);
	url_of(url, sizeof(url), &http_srv, "/redir");
	o.url           = url;
	o.max_redirects = 1;
	t               = run_req(f, &o, 1, 0);
	expect_state(t, TB_STATE_DONE);
	result_get(t, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 11);
	assert_memory_equal(r.body, "{\"ok\":true}", 11);
	msgpack_unpacked_destroy(&r.up);
	tb_task_free(t);
	assert_int_equal(atomic_load(&hits[P_REDIR]), 1);
	assert_int_equal(atomic_load(&hits[P_OK]), 1);
	f->passed = true;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, tbh_setup, tbh_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_get_200_gives_status_headers_and_body),
		T(test_201_is_success_with_location),
		T(test_post_sends_method_headers_and_body),
		T(test_404_is_dead_after_one_attempt),
		T(test_404_with_retry_4xx_is_retried),
		T(test_500_is_retried_until_dead),
		T(test_connection_refused_is_retried),
		T(test_slow_server_times_out),
		T(test_cancel_aborts_a_request_in_flight),
		T(test_host_not_allowed_is_refused_without_a_request),
		T(test_bad_payloads_are_dead_without_retry),
		T(test_big_body_is_cut_and_marked_truncated),
		T(test_chunked_and_unframed_bodies_are_read),
		T(test_https_with_the_test_ca_succeeds),
		T(test_https_with_the_system_store_fails_verification),
		T(test_https_with_another_ca_fails_verification),
		T(test_unreadable_ca_file_stops_the_start),
		T(test_internal_addresses_are_refused_by_default),
		T(test_allowed_internal_range_is_reached_by_name),
		T(test_bad_allow_internal_entry_stops_the_start),
		T(test_redirect_is_not_followed_without_max_redirects),
		T(test_redirect_to_a_disallowed_loopback_address_is_refused),
		T(test_redirect_to_a_host_not_allowed_is_refused),
		T(test_redirect_to_an_allowed_internal_address_is_followed),
	};

	tbh_filter_from_env();
	return (cmocka_run_group_tests(tests, group_setup, group_teardown));
}
