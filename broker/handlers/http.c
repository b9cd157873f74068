// handlers/http.c: the "http" handler, one HTTP(S) request per attempt;
// see http.h.
//
// DESIGN. An attempt is one request (http_req) driven by one nng aio through
// five steps: resolve the host, connect (TCP, plus TLS for https), write
// the request, read the response head, read the body. Each nng step ends
// in http_cb on an nng thread, which starts the next one; no thread waits
// for the server.
//
// Internal addresses. The host is resolved here, once, on one of the
// module's resolver threads (getaddrinfo blocks, and neither the loop nor
// an nng callback may block); the first address that may be reached is
// the one connected to, by handing nng a numeric URL, so nng resolves
// nothing and what was checked is what is connected to (no second lookup
// that DNS could answer differently). Loopback (127.0.0.0/8, ::1),
// link-local (169.254.0.0/16, fe80::/10) and unspecified (0.0.0.0/8, ::)
// addresses, IPv4-mapped ones included, are refused unless an
// --http-allow-internal entry covers them. The Host header, TLS server
// name and certificate check keep the name from the URL. A redirect that
// the payload lets us follow ("max_redirects") is a new hop: its host is
// checked against --http-allow-host, and it is resolved and checked the
// same way before anything connects to it. The body is read by
// hand rather than with nng_http_client_transact, because transact
// allocates whatever Content-Length the server claims (and any chunked
// total); here at most HTTP_BODY_MAX bytes are ever kept. The last step
// sets the outcome and calls tb_run_finish from the nng thread.
//
// Cancel (timeout, cancel, shutdown) runs on the loop thread: it marks the
// request and aborts its aio; the step in flight ends with NNG_ECANCELED
// and the callback ends the attempt with "cancelled". Both sides hold
// http_mtx while they read or set cancelled and start or abort the aio, so
// an abort cannot fall between two steps and be lost. nng does the same in
// its own http_txn_cb / http_txn_cancel (src/supplemental/http/
// http_client.c): an aborted aio completes on nng's task threads, never
// inside the abort call, so holding http_mtx there cannot deadlock.
//
// A request is on the http_live list from run until its callback ends the
// attempt; cancel finds it there. It leaves the list under http_mtx before
// tb_run_finish, so cancel never touches a finished attempt. The callback
// then frees what the request holds and puts the rest on http_dead, where
// the loop thread frees its aio and client at the next run or at stop.
//
// TLS: an nng_tls_config becomes read-only once a connection has used it,
// and it holds the server name (SNI and the name the certificate must
// match), so each host gets its own config, made on the loop thread in run
// and kept in a small cache (parsing the system CA bundle takes a few
// milliseconds). Peer verification is always NNG_TLS_AUTH_MODE_REQUIRED;
// there is no setting to turn it off.
//
// Lock order: http_mtx and http_tls_mtx are leaves, never held together;
// nng's locks are taken inside nng calls made with either held, never the
// other way round. The TLS cache is under http_tls_mtx (resolver threads
// make the configs); the other settings are written by the loop thread at
// init and stop only, while no request is in flight.

#include "handlers/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/supplemental/util/platform.h>

#include <taskbroker/defs.h>

#include "handlers/handlers.h"
#include <tbp.h>
#include "log.h"

#define HTTP_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"
#define HTTP_DEFAULT_TIMEOUT_MS 30000u // when the task has no timeout
#define HTTP_STOP_WAIT_S 10            // for aborted requests at stop
#define HTTP_TLS_CACHE 16              // hosts with a TLS config kept
#define HTTP_RESOLVERS 4               // threads that run getaddrinfo
#define HTTP_REDIRECTS_MAX 10          // "max_redirects" at most
#define HTTP_NETS_MAX 64               // --http-allow-internal entries

// http_next's and http_outcome's codes beside nng's errors.
#define HTTP_DONE (-1)     // a whole response
#define HTTP_EREFUSED (-2) // h->errmsg says why; never retried
#define HTTP_EFAILED (-3)  // h->errmsg says why; retried

// Limits. A result over HANDLER_RESULT_MAX would fail the attempt
// (run_set_result); the body leaves 4 KiB of it for the status and the
// selected headers, so a result always fits.
#define HTTP_BODY_MAX (HANDLER_RESULT_MAX - 4096u)
#define HTTP_HDR_VALUE_MAX 512u // per selected response header
#define HTTP_URL_MAX 8192u
#define HTTP_METHOD_MAX 32u
#define HTTP_REQ_HEADERS_MAX 64u
#define HTTP_REQ_HEADER_MAX 8192u // one request header's name or value
#define HTTP_ERR_BODY_MAX 256u    // body bytes quoted in an error
#define HTTP_LINE_MAX 8192u       // chunk size and trailer lines
#define HTTP_READ_SIZE 4096u

// The response headers copied into the result, lower case.
static const char *const http_result_headers[] = {
	"content-type",
	"content-length",
	"location",
	"retry-after",
	"etag",
	"last-modified",
};

enum http_step {
	HTTP_RESOLVE,
	HTTP_CONNECT,
	HTTP_SEND,
	HTTP_HEAD,
	HTTP_BODY,
};

static const char *const http_step_names[] = {
	"resolve host",
	"connect",
	"send request",
	"read response",
	"read body",
};

enum http_body_mode {
	BODY_NONE,
	BODY_LENGTH,  // Content-Length
	BODY_CHUNKED, // Transfer-Encoding: chunked
	BODY_EOF,     // neither: until the server closes
};

// Chunked decoding states (RFC 9112 section 7.1).
enum http_chunk_state {
	CH_SIZE,    // hex digits
	CH_EXT,     // ;extensions up to CR LF
	CH_SIZE_LF, // the LF after the size line's CR
	CH_DATA,    // chunk bytes
	CH_DATA_CR, // CR LF after the data
	CH_DATA_LF, //
	CH_TRAILER, // trailer lines up to an empty line
	CH_DONE,    //
};

typedef struct http_req http_req;
struct http_req {
	http_req *next; // on http_live, under http_mtx
	http_req *prev;
	http_req *rnext; // on the resolver queue, under http_mtx

	tb_run          *run; // NULL once the attempt has ended
	nng_aio         *aio;
	nng_url         *url;
	nng_http_client *client;
	nng_http_conn   *conn;
	nng_http_req    *req;
	nng_http_res    *res;
	bool             https;
	char            *ca_path; // the CA file for https; NULL: none
	char             method[HTTP_METHOD_MAX + 1]; // "": GET
	bool             head;      // HEAD: no body comes back
	bool             with_body; // this hop sends the payload's body
	uint32_t         redirects_left;
	uint32_t         hops;                    // redirects followed
	nng_http_client *old[HTTP_REDIRECTS_MAX]; // earlier hops' clients
	char             addr[INET6_ADDRSTRLEN];  // the one connected to
	char             errmsg[2048]; // with HTTP_EREFUSED, HTTP_EFAILED
	bool             retry_4xx;    // from the payload
	bool             cancelled;    // under http_mtx
	enum http_step   step;         // the callback's, once started
	nng_time         deadline;     // nng_clock() ms
	uint32_t         timeout_ms;

	// Body.
	enum http_body_mode   mode;
	enum http_chunk_state chunk;
	uint64_t              left; // of Content-Length, or of this chunk
	size_t                line; // bytes in the current size/trailer line
	int                   ndigits;
	uint8_t              *body;
	size_t                body_len;
	size_t                body_cap;
	bool                  truncated;
	const char           *proto_err; // a malformed response
	nng_iov               iov;
	uint8_t               rbuf[HTTP_READ_SIZE];
};

typedef struct http_tls {
	char           *host;
	nng_tls_config *cfg;
} http_tls;

// An --http-allow-internal entry: a network, IPv4-mapped IPv6 as IPv4.
typedef struct http_net {
	int      family; // AF_INET or AF_INET6
	uint8_t  addr[16];
	unsigned bits;
} http_net;

static pthread_mutex_t http_mtx = PTHREAD_MUTEX_INITIALIZER; // below
static pthread_cond_t  http_cv  = PTHREAD_COND_INITIALIZER;  // nlive, nres
static pthread_cond_t  http_rcv = PTHREAD_COND_INITIALIZER;  // rq_head
static http_req       *http_live;    // requests in flight
static http_req       *http_dead;    // ended, their aios to be freed
static size_t          http_nlive;   // requests not yet freed
static bool            http_open;    // between init and stop
static http_req       *http_rq_head; // waiting for a resolver
static http_req       *http_rq_tail;
static size_t          http_nresolvers; // resolver threads running
static const config   *http_cfg;        // also read by nng threads

static pthread_mutex_t http_tls_mtx = PTHREAD_MUTEX_INITIALIZER; // below
static char           *http_ca_path; // NULL: no usable CA store (or stopped)
static http_tls        http_tls_cache[HTTP_TLS_CACHE];
static size_t          http_tls_next; // the slot replaced next

// Written by the loop thread at init, before the resolver threads start;
// read-only afterwards.
static http_net http_nets[HTTP_NETS_MAX];
static size_t   http_nnets;

// Loop thread only.
static bool  http_inited;
static char *http_ca_error; // why there is no CA store, for the error

// http_tls_alloc makes a client config that verifies the server against
// path and name. Returns an nng error.
static int
http_tls_alloc(nng_tls_config **cfgp, const char *path, const char *name)
{
	nng_tls_config *cfg;
	int             rv;

	if ((rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT)) != 0) {
		return (rv);
	}
	if ((rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) !=
	        0 ||
	    (rv = nng_tls_config_ca_file(cfg, path)) != 0 ||
	    (name != NULL &&
	        (rv = nng_tls_config_server_name(cfg, name)) != 0)) {
		nng_tls_config_free(cfg);
		return (rv);
	}
	*cfgp = cfg;
	return (0);
}

static int http_tls_get_locked(nng_tls_config **cfgp, const char *host);

// http_tls_get returns the config for host (a reference the caller frees
// with nng_tls_config_free), from the cache or made now. Returns an nng
// error (NNG_ECLOSED once the handler has stopped). Resolver threads.
static int
http_tls_get(nng_tls_config **cfgp, const char *host)
{
	int rv;

	pthread_mutex_lock(&http_tls_mtx);
	rv = http_tls_get_locked(cfgp, host);
	pthread_mutex_unlock(&http_tls_mtx);
	return (rv);
}

static int
http_tls_get_locked(nng_tls_config **cfgp, const char *host)
{
	http_tls       *slot;
	nng_tls_config *cfg;
	char           *h;
	int             rv;

	if (http_ca_path == NULL) {
		return (NNG_ECLOSED);
	}
	for (size_t i = 0; i < HTTP_TLS_CACHE; i++) {
		slot = &http_tls_cache[i];
		if (slot->host != NULL && strcasecmp(slot->host, host) == 0) {
			nng_tls_config_hold(slot->cfg);
			*cfgp = slot->cfg;
			return (0);
		}
	}
	if ((h = strdup(host)) == NULL) {
		return (NNG_ENOMEM);
	}
	if ((rv = http_tls_alloc(&cfg, http_ca_path, host)) != 0) {
		free(h);
		return (rv);
	}
	// The evicted config lives on in the dialers still using it.
	slot          = &http_tls_cache[http_tls_next];
	http_tls_next = (http_tls_next + 1) % HTTP_TLS_CACHE;
	if (slot->cfg != NULL) {
		nng_tls_config_free(slot->cfg);
	}
	free(slot->host);
	slot->host = h;
	slot->cfg  = cfg;
	nng_tls_config_hold(cfg);
	*cfgp = cfg;
	return (0);
}

static void
http_tls_cache_free(void)
{
	for (size_t i = 0; i < HTTP_TLS_CACHE; i++) {
		if (http_tls_cache[i].cfg != NULL) {
			nng_tls_config_free(http_tls_cache[i].cfg);
		}
		free(http_tls_cache[i].host);
		http_tls_cache[i].host = NULL;
		http_tls_cache[i].cfg  = NULL;
	}
	http_tls_next = 0;
}

// http_req_free releases everything a request holds. in_cb: called from
// the request's own aio callback, where the aio can only be reaped.
static void
http_req_free(http_req *h, bool in_cb)
{
	if (h->conn != NULL) {
		nng_http_conn_close(h->conn); // also frees it
	}
	// nng 1.5.2's free functions do not all accept NULL. The client
	// (its dialer) is freed by http_reap, on the loop thread: freed
	// in the callback, nng's reaper raced with it under TSan.
	if (h->client != NULL && !in_cb) {
		nng_http_client_free(h->client);
	}
	if (h->req != NULL) {
		nng_http_req_free(h->req);
	}
	if (h->res != NULL) {
		nng_http_res_free(h->res);
	}
	if (h->url != NULL) {
		nng_url_free(h->url);
	}
	free(h->body);
	free(h->ca_path);
	if (in_cb) {
		// nng_aio_reap from the aio's own callback raced with nng's
		// task bookkeeping under TSan (nng 1.5.2), so the shell goes
		// to http_dead; the loop thread frees it with nng_aio_free,
		// which waits until this callback has returned.
		pthread_mutex_lock(&http_mtx);
		h->next   = http_dead;
		http_dead = h;
		http_nlive--;
		pthread_cond_broadcast(&http_cv);
		pthread_mutex_unlock(&http_mtx);
		return;
	}
	if (h->aio != NULL) {
		nng_aio_free(h->aio);
	}
	free(h);
}

// http_reap frees the requests whose callbacks have ended. Loop thread.
static void
http_reap(void)
{
	http_req *h;

	pthread_mutex_lock(&http_mtx);
	h         = http_dead;
	http_dead = NULL;
	pthread_mutex_unlock(&http_mtx);
	while (h != NULL) {
		http_req *next = h->next;
		nng_aio_free(h->aio); // waits for the callback to return
		if (h->client != NULL) {
			nng_http_client_free(h->client);
		}
		for (uint32_t i = 0; i < h->hops; i++) {
			if (h->old[i] != NULL) {
				nng_http_client_free(h->old[i]);
			}
		}
		free(h);
		h = next;
	}
}

// Payload parsing. Each helper writes a message into err and returns
// TB_EBADREQ for input that can never work (the attempt is not retried).

static bool
http_token_char(unsigned char c)
{
	return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool
http_is_token(const char *p, size_t n)
{
	if (n == 0) {
		return (false);
	}
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\0' || !http_token_char((unsigned char) p[i])) {
			return (false);
		}
	}
	return (true);
}

// http_is_value is true for a header value nng can send as is: no CR, LF
// or NUL (which would let a payload inject headers) and no other control
// characters but tab.
static bool
http_is_value(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char) p[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			return (false);
		}
	}
	return (true);
}

// Request headers that nng or this handler set; a payload may not.
static const char *const http_reserved_headers[] = {
	"host",
	"content-length",
	"transfer-encoding",
	"connection",
};

// http_allowed_host checks a URL's host, as written, against
// --http-allow-host. The loop thread, or any thread with http_mtx held.
static bool
http_allowed_host(const char *host)
{
	const config_list *allow = &http_cfg->http_allow;

	if (allow->n == 0) {
		return (true);
	}
	for (size_t i = 0; i < allow->n; i++) {
		if (strcasecmp(allow->v[i], host) == 0) {
			return (true);
		}
	}
	return (false);
}

// Internal addresses.

// http_addr_norm copies sa's address into a (4 or 16 bytes) and returns
// its family; an IPv4-mapped IPv6 address (::ffff:a.b.c.d) counts as the
// IPv4 address it reaches. Returns AF_UNSPEC for another family.
static int
http_addr_norm(const struct sockaddr *sa, uint8_t a[16])
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff,
		0xff };

	if (sa->sa_family == AF_INET) {
		memcpy(a,
		    &((const struct sockaddr_in *) (const void *) sa)
		         ->sin_addr,
		    4);
		return (AF_INET);
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(a,
		    &((const struct sockaddr_in6 *) (const void *) sa)
		         ->sin6_addr,
		    16);
		if (memcmp(a, mapped, sizeof(mapped)) == 0) {
			memmove(a, a + 12, 4);
			return (AF_INET);
		}
		return (AF_INET6);
	}
	return (AF_UNSPEC);
}

// http_addr_kind names the kind of internal address a is (family fam, as
// http_addr_norm left it), or returns NULL for any other address.
static const char *
http_addr_kind(int fam, const uint8_t *a)
{
	static const uint8_t zero[16];

	if (fam == AF_INET) {
		if (a[0] == 127) {
			return ("loopback");
		}
		if (a[0] == 169 && a[1] == 254) {
			return ("link-local");
		}
		if (a[0] == 0) {
			return ("unspecified"); // 0.0.0.0 reaches this host
		}
		return (NULL);
	}
	if (memcmp(a, zero, 16) == 0) {
		return ("unspecified");
	}
	if (memcmp(a, zero, 15) == 0 && a[15] == 1) {
		return ("loopback");
	}
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) {
		return ("link-local");
	}
	if (memcmp(a, zero, 12) == 0) {
		// IPv4-compatible (::a.b.c.d, deprecated): judged as IPv4.
		return (http_addr_kind(AF_INET, a + 12));
	}
	return (NULL);
}

// http_internal_allowed is true when an --http-allow-internal entry covers
// the address a of family fam. Any thread (http_nets is read-only).
static bool
http_internal_allowed(int fam, const uint8_t *a)
{
	for (size_t i = 0; i < http_nnets; i++) {
		const http_net *n    = &http_nets[i];
		unsigned        full = n->bits / 8;
		unsigned        rest = n->bits % 8;
		uint8_t         mask = (uint8_t) (0xff00u >> rest);

		if (n->family != fam || memcmp(n->addr, a, full) != 0) {
			continue;
		}
		if (rest == 0 || ((n->addr[full] ^ a[full]) & mask) == 0) {
			return (true);
		}
	}
	return (false);
}

// http_net_parse reads one --http-allow-internal entry: ADDR or
// ADDR/BITS. Returns TB_OK or TB_EINVAL.
static int
http_net_parse(http_net *n, const char *s)
{
	struct sockaddr_in6 sa6;
	struct sockaddr_in  sa4;
	char                buf[INET6_ADDRSTRLEN + 8];
	char               *slash;
	char               *end;
	unsigned long       bits;
	unsigned            max;

	if (strlen(s) >= sizeof(buf)) {
		return (TB_EINVAL);
	}
	strcpy(buf, s);
	if ((slash = strchr(buf, '/')) != NULL) {
		*slash = '\0';
	}
	memset(&sa4, 0, sizeof(sa4));
	memset(&sa6, 0, sizeof(sa6));
	if (inet_pton(AF_INET, buf, &sa4.sin_addr) == 1) {
		sa4.sin_family = AF_INET;
		n->family      = http_addr_norm(
		         (const struct sockaddr *) (const void *) &sa4, n->addr);
		max = 32;
	} else if (inet_pton(AF_INET6, buf, &sa6.sin6_addr) == 1) {
		sa6.sin6_family = AF_INET6;
		n->family       = http_addr_norm(
		          (const struct sockaddr *) (const void *) &sa6, n->addr);
		max = 128;
	} else {
		return (TB_EINVAL);
	}
	bits = max;
	if (slash != NULL) {
		errno = 0;
		bits  = strtoul(slash + 1, &end, 10);
		if (slash[1] < '0' || slash[1] > '9' || *end != '\0' ||
		    errno != 0 || bits > max) {
			return (TB_EINVAL);
		}
	}
	if (max == 128 && n->family == AF_INET) {
		// ::ffff:a.b.c.d/BITS: the mapped prefix must be whole.
		if (bits < 96) {
			return (TB_EINVAL);
		}
		bits -= 96;
	}
	n->bits = (unsigned) bits;
	return (TB_OK);
}

// http_add_headers copies the payload's "headers" map into the request.
static int
http_add_headers(http_req *h, const msgpack_object *m, char *err, size_t n)
{
	char name[HTTP_REQ_HEADER_MAX + 1];
	char value[HTTP_REQ_HEADER_MAX + 1];
	int  rv;

	if (m->type != MSGPACK_OBJECT_MAP) {
		snprintf(err, n, "\"headers\" must be a map of strings");
		return (TB_EBADREQ);
	}
	if (m->via.map.size > HTTP_REQ_HEADERS_MAX) {
		snprintf(err, n, "\"headers\" has more than %u entries",
		    HTTP_REQ_HEADERS_MAX);
		return (TB_EBADREQ);
	}
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *k = &m->via.map.ptr[i].key;
		const msgpack_object *v = &m->via.map.ptr[i].val;

		if (k->type != MSGPACK_OBJECT_STR ||
		    v->type != MSGPACK_OBJECT_STR) {
			snprintf(
			    err, n, "\"headers\" must be a map of strings");
			return (TB_EBADREQ);
		}
		if (k->via.str.size > HTTP_REQ_HEADER_MAX ||
		    !http_is_token(k->via.str.ptr, k->via.str.size)) {
			snprintf(err, n, "header name \"%.*s\" is not valid",
			    (int) (k->via.str.size > 64 ? 64
			                                : k->via.str.size),
			    k->via.str.ptr);
			return (TB_EBADREQ);
		}
		if (v->via.str.size > HTTP_REQ_HEADER_MAX ||
		    !http_is_value(v->via.str.ptr, v->via.str.size)) {
			snprintf(err, n,
			    "header \"%.*s\": the value is too long or has "
			    "control characters",
			    (int) k->via.str.size, k->via.str.ptr);
			return (TB_EBADREQ);
		}
		memcpy(name, k->via.str.ptr, k->via.str.size);
		name[k->via.str.size] = '\0';
		memcpy(value, v->via.str.ptr, v->via.str.size);
		value[v->via.str.size] = '\0';
		for (size_t j = 0; j < sizeof(http_reserved_headers) /
		         sizeof(http_reserved_headers[0]);
		     j++) {
			if (strcasecmp(name, http_reserved_headers[j]) == 0) {
				snprintf(err, n,
				    "header \"%.200s\" is set by the handler",
				    name);
				return (TB_EBADREQ);
			}
		}
		if ((rv = nng_http_req_add_header(h->req, name, value)) != 0) {
			snprintf(err, n, "header \"%.200s\": %s", name,
			    nng_strerror(rv));
			return (rv == NNG_ENOMEM ? TB_ENOMEM : TB_EBADREQ);
		}
	}
	return (TB_OK);
}

static int http_req_prepare(
    http_req *h, const msgpack_object *m, char *err, size_t n);

// http_req_build checks the payload and builds the request (not yet
// started). On an error *hp is untouched and err says why. Loop thread.
static int
http_req_build(http_req **hp, tb_run *r, char *err, size_t n)
{
	msgpack_unpacked      up;
	const msgpack_object *m;
	const msgpack_object *v;
	const void           *payload;
	size_t                plen;
	size_t                off = 0;
	http_req             *h;
	char                  buf[HTTP_URL_MAX + 1];
	int                   rv;

	if ((h = calloc(1, sizeof(*h))) == NULL) {
		snprintf(err, n, "out of memory");
		return (TB_ENOMEM);
	}
	h->run = r;
	msgpack_unpacked_init(&up);
	payload = tb_run_payload(r, &plen);
	// The broker checked the payload at submit (one object within the
	// limits), so unpacking cannot be made to reserve a hostile size.
	if (plen == 0 ||
	    msgpack_unpack_next(&up, payload, plen, &off) !=
	        MSGPACK_UNPACK_SUCCESS ||
	    up.data.type != MSGPACK_OBJECT_MAP) {
		snprintf(err, n, "payload must be a map with a \"url\"");
		rv = TB_EBADREQ;
		goto fail;
	}
	m = &up.data;
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object    *k       = &m->via.map.ptr[i].key;
		static const char *const known[] = { "url", "method",
			"headers", "body", "retry_4xx", "max_redirects" };
		bool                     ok      = false;

		for (size_t j = 0; k->type == MSGPACK_OBJECT_STR &&
		     j < sizeof(known) / sizeof(known[0]);
		     j++) {
			ok = ok ||
			    (k->via.str.size == strlen(known[j]) &&
			        memcmp(k->via.str.ptr, known[j],
			            k->via.str.size) == 0);
		}
		if (!ok) {
			snprintf(err, n,
			    "unknown payload field (known: url, method, "
			    "headers, body, retry_4xx, max_redirects)");
			rv = TB_EBADREQ;
			goto fail;
		}
	}

	if ((v = payload_get(m, "url")) == NULL ||
	    v->type != MSGPACK_OBJECT_STR || v->via.str.size == 0 ||
	    v->via.str.size > HTTP_URL_MAX ||
	    memchr(v->via.str.ptr, '\0', v->via.str.size) != NULL) {
		snprintf(err, n, "\"url\" must be a string of 1..%u bytes",
		    HTTP_URL_MAX);
		rv = TB_EBADREQ;
		goto fail;
	}
	memcpy(buf, v->via.str.ptr, v->via.str.size);
	buf[v->via.str.size] = '\0';
	if ((rv = nng_url_parse(&h->url, buf)) != 0) {
		snprintf(err, n, "\"url\" %.200s: %s", buf, nng_strerror(rv));
		rv = rv == NNG_ENOMEM ? TB_ENOMEM : TB_EBADREQ;
		goto fail;
	}
	if (strcasecmp(h->url->u_scheme, "http") == 0) {
		h->https = false;
	} else if (strcasecmp(h->url->u_scheme, "https") == 0) {
		h->https = true;
	} else {
		snprintf(err, n,
		    "\"url\" %.200s: the scheme must be http or https", buf);
		rv = TB_EBADREQ;
		goto fail;
	}
	if (h->url->u_hostname == NULL || h->url->u_hostname[0] == '\0') {
		snprintf(err, n, "\"url\" %.200s has no host", buf);
		rv = TB_EBADREQ;
		goto fail;
	}
	// Checked before anything touches the network.
	if (!http_allowed_host(h->url->u_hostname)) {
		snprintf(err, n,
		    "host \"%s\" is not allowed (not in --http-allow-host); "
		    "no request was made",
		    h->url->u_hostname);
		rv = TB_EBADREQ;
		goto fail;
	}

	if ((v = payload_get(m, "method")) != NULL &&
	    v->type != MSGPACK_OBJECT_NIL) {
		if (v->type != MSGPACK_OBJECT_STR ||
		    v->via.str.size > HTTP_METHOD_MAX ||
		    !http_is_token(v->via.str.ptr, v->via.str.size)) {
			snprintf(err, n,
			    "\"method\" must be an HTTP method token of 1..%u "
			    "bytes",
			    HTTP_METHOD_MAX);
			rv = TB_EBADREQ;
			goto fail;
		}
		memcpy(h->method, v->via.str.ptr, v->via.str.size);
		h->method[v->via.str.size] = '\0';
		h->head                    = strcmp(h->method, "HEAD") == 0;
	}
	if ((v = payload_get(m, "body")) != NULL &&
	    v->type != MSGPACK_OBJECT_NIL) {
		if (v->type != MSGPACK_OBJECT_STR &&
		    v->type != MSGPACK_OBJECT_BIN) {
			snprintf(
			    err, n, "\"body\" must be a string or binary");
			rv = TB_EBADREQ;
			goto fail;
		}
		h->with_body = true;
	}
	if ((v = payload_get(m, "retry_4xx")) != NULL &&
	    v->type != MSGPACK_OBJECT_NIL) {
		if (v->type != MSGPACK_OBJECT_BOOLEAN) {
			snprintf(err, n, "\"retry_4xx\" must be a boolean");
			rv = TB_EBADREQ;
			goto fail;
		}
		h->retry_4xx = v->via.boolean;
	}
	if ((v = payload_get(m, "max_redirects")) != NULL &&
	    v->type != MSGPACK_OBJECT_NIL) {
		if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
		    v->via.u64 > HTTP_REDIRECTS_MAX) {
			snprintf(err, n,
			    "\"max_redirects\" must be an integer 0..%u",
			    HTTP_REDIRECTS_MAX);
			rv = TB_EBADREQ;
			goto fail;
		}
		h->redirects_left = (uint32_t) v->via.u64;
	}
	if (h->https && http_ca_path == NULL) {
		snprintf(err, n,
		    "https: no CA certificates to verify the server (%s); set "
		    "--http-ca-file",
		    http_ca_error != NULL ? http_ca_error : "none");
		rv = TB_EBADREQ;
		goto fail;
	}
	// For https on any hop and for the error text; the global may be
	// freed by http_handler_stop while a callback runs.
	if (http_ca_path != NULL &&
	    (h->ca_path = strdup(http_ca_path)) == NULL) {
		snprintf(err, n, "out of memory");
		rv = TB_ENOMEM;
		goto fail;
	}
	if ((rv = http_req_prepare(h, m, err, n)) != TB_OK) {
		goto fail;
	}
	msgpack_unpacked_destroy(&up);
	*hp = h;
	return (TB_OK);

fail:
	msgpack_unpacked_destroy(&up);
	http_req_free(h, false);
	return (rv);
}

// http_req_prepare (re)makes the request and the response for the hop to
// h->url from the payload map m: method, the payload's headers, and the
// body when this hop sends it. The client is made later, once the host
// has been resolved (http_resolve). Returns TB_OK, or an error with err
// saying why. The loop thread for the first hop; an nng thread, with
// http_mtx held, for a redirect.
static int
http_req_prepare(http_req *h, const msgpack_object *m, char *err, size_t n)
{
	const msgpack_object *v;
	int                   rv;

	if (h->req != NULL) {
		nng_http_req_free(h->req);
		h->req = NULL;
	}
	if (h->res != NULL) {
		nng_http_res_free(h->res);
		h->res = NULL;
	}
	if ((rv = nng_http_req_alloc(&h->req, h->url)) != 0 ||
	    (rv = nng_http_res_alloc(&h->res)) != 0) {
		goto nng_fail;
	}
	if (h->method[0] != '\0' &&
	    (rv = nng_http_req_set_method(h->req, h->method)) != 0) {
		goto nng_fail;
	}
	if ((v = payload_get(m, "headers")) != NULL &&
	    v->type != MSGPACK_OBJECT_NIL &&
	    (rv = http_add_headers(h, v, err, n)) != TB_OK) {
		return (rv);
	}
	if (nng_http_req_get_header(h->req, "User-Agent") == NULL &&
	    (rv = nng_http_req_set_header(
	         h->req, "User-Agent", "taskbroker/" TB_VERSION_STR)) != 0) {
		goto nng_fail;
	}
	// One request per connection, and nothing pooled across attempts;
	// but the handler, not the server, closes it once the response has
	// been read. A server asked to close ("Connection: close") may do so
	// as it sends the last bytes, and nng 1.5.2's TLS can then fail the
	// read of a complete body with "connection shutdown". A response
	// without a length still ends with the server's close.
	if (h->with_body && (v = payload_get(m, "body")) != NULL &&
	    (rv = nng_http_req_copy_data(h->req,
	         v->type == MSGPACK_OBJECT_STR ? v->via.str.ptr
	                                       : v->via.bin.ptr,
	         v->type == MSGPACK_OBJECT_STR ? v->via.str.size
	                                       : v->via.bin.size)) != 0) {
		goto nng_fail;
	}
	return (TB_OK);

nng_fail:
	snprintf(err, n, "building the request: %s", nng_strerror(rv));
	return (rv == NNG_ENOMEM ? TB_ENOMEM : TB_EINTERNAL);
}

// Body reading.

// http_body_add keeps up to HTTP_BODY_MAX body bytes; more marks the
// body truncated.
static int
http_body_add(http_req *h, const uint8_t *p, size_t n)
{
	size_t room = HTTP_BODY_MAX - h->body_len;

	if (n > room) {
		n            = room;
		h->truncated = true;
	}
	if (h->body_len + n > h->body_cap) {
		size_t   cap = h->body_cap == 0 ? HTTP_READ_SIZE : h->body_cap;
		uint8_t *nb;

		while (cap < h->body_len + n) {
			cap *= 2;
		}
		if (cap > HTTP_BODY_MAX) {
			cap = HTTP_BODY_MAX;
		}
		if ((nb = realloc(h->body, cap)) == NULL) {
			return (NNG_ENOMEM);
		}
		h->body     = nb;
		h->body_cap = cap;
	}
	memcpy(h->body + h->body_len, p, n);
	h->body_len += n;
	return (0);
}

static int
http_hex(unsigned char c)
{
	if (c >= '0' && c <= '9') {
		return (c - '0');
	}
	if (c >= 'a' && c <= 'f') {
		return (c - 'a' + 10);
	}
	if (c >= 'A' && c <= 'F') {
		return (c - 'A' + 10);
	}
	return (-1);
}

// http_chunk_next expects the next chunk's size line.
static void
http_chunk_next(http_req *h)
{
	h->chunk   = CH_SIZE;
	h->left    = 0;
	h->ndigits = 0;
	h->line    = 0;
}

// http_chunked_feed decodes chunked bytes. Returns 0, or an nng error
// (NNG_EPROTO with h->proto_err set for a malformed stream).
static int
http_chunked_feed(http_req *h, const uint8_t *p, size_t n)
{
	size_t i = 0;
	int    rv;

	while (i < n && h->chunk != CH_DONE && !h->truncated) {
		unsigned char c = p[i];
		int           d;

		switch (h->chunk) {
		case CH_SIZE:
			if ((d = http_hex(c)) >= 0) {
				if (h->left > (UINT64_MAX >> 4)) {
					h->proto_err = "chunk size too big";
					return (NNG_EPROTO);
				}
				h->left = h->left * 16 + (uint64_t) d;
				h->ndigits++;
				i++;
				break;
			}
			if (h->ndigits == 0) {
				h->proto_err = "bad chunk size line";
				return (NNG_EPROTO);
			}
			h->chunk = CH_EXT;
			break;
		case CH_EXT:
			i++;
			if (++h->line > HTTP_LINE_MAX) {
				h->proto_err = "chunk size line too long";
				return (NNG_EPROTO);
			}
			if (c == '\r') {
				h->chunk = CH_SIZE_LF;
			} else if (c == '\n') {
				h->line  = 0;
				h->chunk = h->left == 0 ? CH_TRAILER : CH_DATA;
			}
			break;
		case CH_SIZE_LF:
			if (c != '\n') {
				h->proto_err = "bad chunk size line";
				return (NNG_EPROTO);
			}
			i++;
			h->line  = 0;
			h->chunk = h->left == 0 ? CH_TRAILER : CH_DATA;
			break;
		case CH_DATA: {
			size_t take = n - i;
			if (take > h->left) {
				take = (size_t) h->left;
			}
			if ((rv = http_body_add(h, p + i, take)) != 0) {
				return (rv);
			}
			i += take;
			h->left -= take;
			if (h->left == 0) {
				h->chunk = CH_DATA_CR;
			} else if (h->body_len == HTTP_BODY_MAX) {
				h->truncated = true;
			}
			break;
		}
		case CH_DATA_CR:
			i++;
			if (c == '\r') {
				h->chunk = CH_DATA_LF;
			} else if (c == '\n') {
				http_chunk_next(h); // a bare LF, tolerated
			} else {
				h->proto_err = "chunk not followed by CRLF";
				return (NNG_EPROTO);
			}
			break;
		case CH_DATA_LF:
			i++;
			if (c != '\n') {
				h->proto_err = "chunk not followed by CRLF";
				return (NNG_EPROTO);
			}
			http_chunk_next(h);
			break;
		case CH_TRAILER:
			i++;
			if (c == '\n') {
				if (h->line == 0) {
					h->chunk = CH_DONE;
				}
				h->line = 0;
			} else if (c != '\r' && ++h->line > HTTP_LINE_MAX) {
				h->proto_err = "trailer line too long";
				return (NNG_EPROTO);
			}
			break;
		case CH_DONE:
			break;
		}
	}
	return (0);
}

// http_body_feed takes n bytes just read. Sets *donep when the body is
// complete (or cut). Returns 0 or an nng error.
static int
http_body_feed(http_req *h, const uint8_t *p, size_t n, bool *donep)
{
	int rv = 0;

	switch (h->mode) {
	case BODY_LENGTH:
		if (n > h->left) {
			n = (size_t) h->left; // bytes past the body: ignored
		}
		rv = http_body_add(h, p, n);
		h->left -= n;
		if (h->left > 0 && h->body_len == HTTP_BODY_MAX) {
			h->truncated = true;
		}
		*donep = h->left == 0 || h->truncated;
		break;
	case BODY_CHUNKED:
		rv     = http_chunked_feed(h, p, n);
		*donep = h->chunk == CH_DONE || h->truncated;
		break;
	case BODY_EOF:
		rv     = http_body_add(h, p, n);
		*donep = h->truncated;
		break;
	case BODY_NONE:
		*donep = true;
		break;
	}
	return (rv);
}

// http_body_mode_set decides how the body is delimited, from the head.
static int
http_body_mode_set(http_req *h)
{
	uint16_t    status = nng_http_res_get_status(h->res);
	const char *s;
	char       *end;

	if (h->head || status < 200 || status == 204 || status == 304) {
		h->mode = BODY_NONE;
		return (0);
	}
	if ((s = nng_http_res_get_header(h->res, "Transfer-Encoding")) !=
	        NULL &&
	    strcasestr(s, "chunked") != NULL) {
		h->mode  = BODY_CHUNKED;
		h->chunk = CH_SIZE;
		return (0);
	}
	if ((s = nng_http_res_get_header(h->res, "Content-Length")) != NULL) {
		errno = 0;
		if (*s < '0' || *s > '9' ||
		    (h->left = strtoull(s, &end, 10), errno != 0) ||
		    *end != '\0') {
			h->proto_err = "bad Content-Length";
			return (NNG_EPROTO);
		}
		h->mode = h->left == 0 ? BODY_NONE : BODY_LENGTH;
		return (0);
	}
	h->mode = BODY_EOF;
	return (0);
}

// http_method is the current hop's method, for messages.
static const char *
http_method(const http_req *h)
{
	return (h->method[0] != '\0' ? h->method : "GET");
}

// http_resolve_queue_locked hands the current hop to a resolver thread.
// http_mtx held.
static void
http_resolve_queue_locked(http_req *h)
{
	h->step  = HTTP_RESOLVE;
	h->rnext = NULL;
	if (http_rq_tail != NULL) {
		http_rq_tail->rnext = h;
	} else {
		http_rq_head = h;
	}
	http_rq_tail = h;
	pthread_cond_signal(&http_rcv);
}

// http_redirect follows a redirect response (the head has been read):
// the Location, made absolute, becomes the next hop, checked against
// --http-allow-host here and resolved and checked for internal addresses
// by http_resolve. Returns 0 (the hop is queued), 1 (not a redirect to
// follow: the response is the outcome), HTTP_EREFUSED or HTTP_EFAILED
// with h->errmsg set. nng thread, http_mtx held.
static int
http_redirect(http_req *h)
{
	uint16_t         status = nng_http_res_get_status(h->res);
	const char      *loc;
	const char      *dir;
	char             buf[HTTP_URL_MAX + 1];
	nng_url         *u;
	msgpack_unpacked up;
	const void      *payload;
	size_t           plen;
	size_t           off = 0;
	int              len;
	int              rv;

	if ((status != 301 && status != 302 && status != 303 &&
	        status != 307 && status != 308) ||
	    (loc = nng_http_res_get_header(h->res, "Location")) == NULL ||
	    loc[0] == '\0') {
		return (1);
	}
	// RFC 9110 section 10.2.2: Location is a URI reference, resolved
	// against the URL of the request.
	if (strncasecmp(loc, "http://", 7) == 0 ||
	    strncasecmp(loc, "https://", 8) == 0 ||
	    strstr(loc, "://") != NULL) {
		len = snprintf(buf, sizeof(buf), "%s", loc);
	} else if (loc[0] == '/' && loc[1] == '/') {
		len =
		    snprintf(buf, sizeof(buf), "%s:%s", h->url->u_scheme, loc);
	} else if (loc[0] == '/') {
		len = snprintf(buf, sizeof(buf), "%s://%s%s", h->url->u_scheme,
		    h->url->u_host, loc);
	} else {
		dir = strrchr(h->url->u_path, '/');
		len = snprintf(buf, sizeof(buf), "%s://%s%.*s/%s",
		    h->url->u_scheme, h->url->u_host,
		    dir != NULL ? (int) (dir - h->url->u_path) : 0,
		    h->url->u_path, loc);
	}
	if (len < 0 || (size_t) len >= sizeof(buf)) {
		snprintf(h->errmsg, sizeof(h->errmsg),
		    "%s %s: HTTP %u: the Location is longer than %u bytes",
		    http_method(h), h->url->u_rawurl, (unsigned) status,
		    HTTP_URL_MAX);
		return (HTTP_EREFUSED);
	}
	if ((rv = nng_url_parse(&u, buf)) != 0) {
		snprintf(h->errmsg, sizeof(h->errmsg),
		    "%s %s: HTTP %u to \"%.200s\": %s", http_method(h),
		    h->url->u_rawurl, (unsigned) status, buf,
		    nng_strerror(rv));
		return (rv == NNG_ENOMEM ? HTTP_EFAILED : HTTP_EREFUSED);
	}
	if ((strcasecmp(u->u_scheme, "http") != 0 &&
	        strcasecmp(u->u_scheme, "https") != 0) ||
	    u->u_hostname == NULL || u->u_hostname[0] == '\0') {
		snprintf(h->errmsg, sizeof(h->errmsg),
		    "%s %s: redirect to %.200s: not an http or https URL with "
		    "a host; not followed",
		    http_method(h), h->url->u_rawurl, buf);
		nng_url_free(u);
		return (HTTP_EREFUSED);
	}
	if (!http_allowed_host(u->u_hostname)) {
		snprintf(h->errmsg, sizeof(h->errmsg),
		    "%s %s: redirect to %.200s: host \"%s\" is not allowed "
		    "(not in --http-allow-host); no request was made to it",
		    http_method(h), h->url->u_rawurl, buf, u->u_hostname);
		nng_url_free(u);
		return (HTTP_EREFUSED);
	}
	log_debug(RUN_FMT ": http %s %s: HTTP %u, redirect to %s",
	    RUN_ARGS(h->run), http_method(h), h->url->u_rawurl,
	    (unsigned) status, u->u_rawurl);

	// The next hop. 303, and 301 or 302 after a POST, continue with a
	// GET without the body (RFC 9110 section 15.4); 307 and 308 repeat
	// the method and the body.
	nng_url_free(h->url);
	h->url   = u;
	h->https = strcasecmp(u->u_scheme, "https") == 0;
	h->redirects_left--;
	h->hops++;
	if ((status == 303 && !h->head) ||
	    ((status == 301 || status == 302) &&
	        strcmp(http_method(h), "POST") == 0)) {
		strcpy(h->method, "GET");
		h->with_body = false;
	}
	nng_http_conn_close(h->conn); // one request per connection
	h->conn      = NULL;
	h->addr[0]   = '\0';
	h->mode      = BODY_NONE;
	h->body_len  = 0;
	h->truncated = false;
	h->proto_err = NULL;

	// The broker checked the payload at submit; the first hop parsed it.
	msgpack_unpacked_init(&up);
	payload = tb_run_payload(h->run, &plen);
	if (msgpack_unpack_next(&up, payload, plen, &off) !=
	        MSGPACK_UNPACK_SUCCESS ||
	    (rv = http_req_prepare(
	         h, &up.data, h->errmsg, sizeof(h->errmsg))) != TB_OK) {
		msgpack_unpacked_destroy(&up);
		if (h->errmsg[0] == '\0') {
			snprintf(h->errmsg, sizeof(h->errmsg),
			    "redirect: the payload no longer decodes");
		}
		return (HTTP_EFAILED);
	}
	msgpack_unpacked_destroy(&up);
	http_resolve_queue_locked(h);
	return (0);
}

// http_next starts the step after the one that just ended with rv. Returns
// 0 when a step is in flight, or the error that ends the attempt (-1: the
// response is complete). http_mtx held.
static int
http_next(http_req *h, int rv)
{
	nng_time now = nng_clock();
	bool     done;

	if (rv == 0 && h->cancelled) {
		rv = NNG_ECANCELED; // the abort came after the step ended
	}
	if (rv != 0) {
		if (h->step == HTTP_BODY &&
		    (rv == NNG_ECLOSED || rv == NNG_ECONNSHUT)) {
			// The server closed the connection. Bytes that came
			// with the close still count; without a length, the
			// body ends where the connection does.
			size_t n = nng_aio_count(h->aio);
			done     = false;
			if (n > 0 &&
			    http_body_feed(h, h->rbuf, n, &done) != 0) {
				return (rv);
			}
			if (done || h->mode == BODY_EOF) {
				return (-1);
			}
		}
		return (rv);
	}
	switch (h->step) {
	case HTTP_CONNECT:
		h->conn = nng_aio_get_output(h->aio, 0);
		h->step = HTTP_SEND;
		break;
	case HTTP_SEND:
		h->step = HTTP_HEAD;
		break;
	case HTTP_RESOLVE:
		break; // not an nng step
	case HTTP_HEAD:
		if (h->redirects_left > 0 && (rv = http_redirect(h)) != 1) {
			return (rv); // the next hop is queued, or refused
		}
		if ((rv = http_body_mode_set(h)) != 0) {
			return (rv);
		}
		if (h->mode == BODY_NONE) {
			return (-1);
		}
		h->step = HTTP_BODY;
		break;
	case HTTP_BODY:
		if ((rv = http_body_feed(
		         h, h->rbuf, nng_aio_count(h->aio), &done)) != 0) {
			return (rv);
		}
		if (done) {
			return (-1);
		}
		break;
	}
	if (now >= h->deadline) {
		return (NNG_ETIMEDOUT);
	}
	nng_aio_set_timeout(h->aio, (nng_duration) (h->deadline - now));
	switch (h->step) {
	case HTTP_RESOLVE:
	case HTTP_CONNECT:
		break; // started by http_resolve
	case HTTP_SEND:
		nng_http_conn_write_req(h->conn, h->req, h->aio);
		break;
	case HTTP_HEAD:
		nng_http_conn_read_res(h->conn, h->res, h->aio);
		break;
	case HTTP_BODY:
		h->iov.iov_buf = h->rbuf;
		h->iov.iov_len = sizeof(h->rbuf);
		nng_aio_set_iov(h->aio, 1, &h->iov);
		nng_http_conn_read(h->conn, h->aio);
		break;
	}
	return (0);
}

// http_quote copies up to max bytes of p into out (size n): line breaks
// and tabs become spaces, other bytes outside printable ASCII '?'.
static void
http_quote(char *out, size_t n, const uint8_t *p, size_t len, size_t max)
{
	size_t i;

	if (len > max) {
		len = max;
	}
	for (i = 0; i < len && i + 1 < n; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f) {
			out[i] = (char) p[i];
		} else {
			out[i] = strchr("\r\n\t", p[i]) != NULL && p[i] != 0
			    ? ' '
			    : '?';
		}
	}
	out[i] = '\0';
}

// http_pack_result packs {"status", "headers", "body"[, "truncated"]}.
static int
http_pack_result(http_req *h, msgpack_sbuffer *sb)
{
	msgpack_packer pk;
	const char *
	    vals[sizeof(http_result_headers) / sizeof(http_result_headers[0])];
	uint32_t     nh = 0;
	const size_t nsel =
	    sizeof(http_result_headers) / sizeof(http_result_headers[0]);

	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	for (size_t i = 0; i < nsel; i++) {
		vals[i] =
		    nng_http_res_get_header(h->res, http_result_headers[i]);
		nh += vals[i] != NULL;
	}
	if (msgpack_pack_map(&pk, h->truncated ? 4 : 3) != 0 ||
	    msgpack_pack_str_with_body(&pk, "status", 6) != 0 ||
	    msgpack_pack_unsigned_int(&pk, nng_http_res_get_status(h->res)) !=
	        0 ||
	    msgpack_pack_str_with_body(&pk, "headers", 7) != 0 ||
	    msgpack_pack_map(&pk, nh) != 0) {
		return (TB_ENOMEM);
	}
	for (size_t i = 0; i < nsel; i++) {
		size_t len;
		if (vals[i] == NULL) {
			continue;
		}
		len = strlen(vals[i]);
		if (len > HTTP_HDR_VALUE_MAX) {
			len = HTTP_HDR_VALUE_MAX;
		}
		if (msgpack_pack_str_with_body(&pk, http_result_headers[i],
		        strlen(http_result_headers[i])) != 0 ||
		    msgpack_pack_str_with_body(&pk, vals[i], len) != 0) {
			return (TB_ENOMEM);
		}
	}
	if (msgpack_pack_str_with_body(&pk, "body", 4) != 0 ||
	    msgpack_pack_bin_with_body(&pk, h->body, h->body_len) != 0) {
		return (TB_ENOMEM);
	}
	if (h->truncated &&
	    (msgpack_pack_str_with_body(&pk, "truncated", 9) != 0 ||
	        msgpack_pack_true(&pk) != 0)) {
		return (TB_ENOMEM);
	}
	return (TB_OK);
}

// http_outcome sets the attempt's outcome from how the request ended:
// rv is -1 (a whole response) or the nng error. nng thread.
static void
http_outcome(http_req *h, int rv)
{
	tb_run     *r    = h->run;
	const char *host = h->url->u_hostname;
	const char *step = http_step_names[h->step];
	uint16_t    status;
	char        quoted[HTTP_ERR_BODY_MAX + 1];

	if (rv == NNG_ECANCELED) {
		tb_run_set_error(r, "cancelled");
		return;
	}
	if (rv == HTTP_EREFUSED || rv == HTTP_EFAILED) {
		tb_run_set_error(r, "%s", h->errmsg);
		if (rv == HTTP_EREFUSED) {
			tb_run_set_no_retry(r);
		}
		return;
	}
	if (rv == NNG_ETIMEDOUT) {
		tb_run_set_error(r,
		    "%s %s: timed out after %" PRIu32 " ms (%s)",
		    http_method(h), h->url->u_rawurl, h->timeout_ms, step);
		return;
	}
	if (rv == NNG_EPROTO && h->proto_err != NULL) {
		tb_run_set_error(r, "%s %s: malformed response: %s",
		    http_method(h), h->url->u_rawurl, h->proto_err);
		return;
	}
	if (rv == NNG_EPEERAUTH || (h->https && rv == NNG_ECRYPTO)) {
		// nng 1.5.2 reports a certificate that does not verify
		// (and any other handshake failure) as NNG_ECRYPTO. Neither
		// fixes itself within the retry backoff: the task ends here.
		tb_run_set_error(r,
		    "https %s: TLS handshake failed: the server certificate "
		    "did not verify against the CA file %s, or TLS could not "
		    "be negotiated (%s)",
		    host, h->ca_path, nng_strerror(rv));
		tb_run_set_no_retry(r);
		return;
	}
	if (rv != -1 && h->step == HTTP_CONNECT) {
		tb_run_set_error(r, "%s %s: connect to %s: %s", http_method(h),
		    h->url->u_rawurl, h->addr, nng_strerror(rv));
		return;
	}
	if (rv != -1) {
		tb_run_set_error(r, "%s %s: %s: %s", http_method(h),
		    h->url->u_rawurl, step, nng_strerror(rv));
		return;
	}

	status = nng_http_res_get_status(h->res);
	if (status >= 200 && status <= 299) {
		msgpack_sbuffer sb;

		msgpack_sbuffer_init(&sb);
		if (http_pack_result(h, &sb) != TB_OK ||
		    tb_run_set_result(r, sb.data, sb.size) != 0) {
			tb_run_set_error(r, "out of memory for the result");
		}
		msgpack_sbuffer_destroy(&sb);
		return;
	}
	http_quote(
	    quoted, sizeof(quoted), h->body, h->body_len, HTTP_ERR_BODY_MAX);
	tb_run_set_error(r, "%s %s: HTTP %u %s%s%s%s%s", http_method(h),
	    h->url->u_rawurl, (unsigned) status,
	    nng_http_res_get_reason(h->res),
	    status < 300 || status > 399 ? ""
	        : h->hops > 0 && h->redirects_left == 0
	        ? " (max_redirects reached)"
	        : h->redirects_left == 0
	        ? " (redirects are not followed without max_redirects)"
	        : " (not a redirect that can be followed)",
	    quoted[0] != '\0' ? ": " : "", quoted,
	    h->body_len > HTTP_ERR_BODY_MAX || h->truncated ? "..." : "");
	if ((status >= 400 && status <= 499 && !h->retry_4xx) ||
	    (status >= 300 && status <= 399)) {
		tb_run_set_no_retry(r);
	}
}

// http_end_locked ends the attempt with rv (as http_outcome takes it) and
// gives the request up. Entered with http_mtx held, which it releases. An
// nng or resolver thread.
static void
http_end_locked(http_req *h, int rv)
{
	// Off the list first: cancel must not see an ended attempt.
	if (h->prev != NULL) {
		h->prev->next = h->next;
	} else {
		http_live = h->next;
	}
	if (h->next != NULL) {
		h->next->prev = h->prev;
	}
	pthread_mutex_unlock(&http_mtx);

	log_debug(RUN_FMT ": http %s %s ended (%s)", RUN_ARGS(h->run),
	    http_method(h), h->url->u_rawurl,
	    rv == HTTP_DONE ? "response"
	        : rv == HTTP_EREFUSED || rv == HTTP_EFAILED
	        ? h->errmsg
	        : nng_strerror(rv));
	http_outcome(h, rv);
	tb_run_finish(h->run); // the run may be gone from here
	h->run = NULL;
	http_req_free(h, true); // no touching h from here
}

// http_cb runs when a step ends. nng thread.
static void
http_cb(void *arg)
{
	http_req *h = arg;
	int       rv;

	pthread_mutex_lock(&http_mtx);
	if ((rv = http_next(h, nng_aio_result(h->aio))) == 0) {
		pthread_mutex_unlock(&http_mtx);
		return; // the next step is in flight, or queued
	}
	http_end_locked(h, rv);
}

// http_pick chooses, among the addresses the hop's host resolved to, the
// first one that may be reached, and writes it to h->addr and its numeric
// URL to url. Returns 0, or HTTP_EREFUSED with h->errmsg set when every
// address is internal and not allowed. Resolver thread.
static int
http_pick(http_req *h, const struct addrinfo *res, char *url, size_t n)
{
	const struct addrinfo *ai;
	const struct addrinfo *refused = NULL;
	const char            *kind    = NULL;
	const char            *article;
	char                   text[INET6_ADDRSTRLEN];
	char                   what[600];
	uint8_t                a[16];
	int                    fam;

	for (ai = res; ai != NULL; ai = ai->ai_next) {
		const char *k;

		if ((fam = http_addr_norm(ai->ai_addr, a)) == AF_UNSPEC) {
			continue;
		}
		if ((k = http_addr_kind(fam, a)) == NULL ||
		    http_internal_allowed(fam, a)) {
			inet_ntop(fam, a, h->addr, sizeof(h->addr));
			snprintf(url, n, "%s://%s%s%s:%s", h->url->u_scheme,
			    fam == AF_INET6 ? "[" : "", h->addr,
			    fam == AF_INET6 ? "]" : "", h->url->u_port);
			return (0);
		}
		if (refused == NULL) {
			refused = ai;
			kind    = k;
			inet_ntop(fam, a, text, sizeof(text));
		}
	}
	if (refused == NULL) {
		snprintf(h->errmsg, sizeof(h->errmsg),
		    "%s %s: resolve %s: no IPv4 or IPv6 address",
		    http_method(h), h->url->u_rawurl, h->url->u_hostname);
		return (HTTP_EFAILED);
	}
	article = kind[0] == 'u' ? "an" : "a"; // "an unspecified"
	if (strcmp(h->url->u_hostname, text) == 0) {
		snprintf(what, sizeof(what), "%s is %s %s address", text,
		    article, kind);
	} else {
		snprintf(what, sizeof(what),
		    "%.256s resolves to %s, %s %s address", h->url->u_hostname,
		    text, article, kind);
	}
	snprintf(h->errmsg, sizeof(h->errmsg),
	    "%s %.1024s: %shost %s, which is not allowed (no "
	    "--http-allow-internal entry covers it); no request was made",
	    http_method(h), h->url->u_rawurl,
	    h->hops > 0 ? "redirected there: " : "", what);
	return (HTTP_EREFUSED);
}

// http_resolve resolves the current hop's host once, picks the address
// (http_pick), makes a client that connects to exactly that address (a
// numeric URL: nng resolves nothing more) with TLS for the host's name,
// and starts the connection; or ends the attempt. Resolver thread.
static void
http_resolve(http_req *h)
{
	struct addrinfo  hints;
	struct addrinfo *res = NULL;
	nng_url         *nu  = NULL;
	nng_tls_config  *tls;
	char             url[INET6_ADDRSTRLEN + 64];
	bool             cancelled;
	nng_time         now;
	int              gai;
	int              rv = 0;

	// After a redirect, the callback that queued this hop may not have
	// returned yet; then neither its aio nor the old client is ours.
	nng_aio_wait(h->aio);
	if (h->client != NULL) {
		// Freed with the request on the loop thread (http_reap):
		// freed here, nng 1.5.2's reaper raced with the free of its
		// dialer under TSan, as it did when the callback freed one.
		h->old[h->hops - 1] = h->client;
		h->client           = NULL;
	}
	pthread_mutex_lock(&http_mtx);
	cancelled = h->cancelled;
	pthread_mutex_unlock(&http_mtx);
	if (cancelled) {
		rv = NNG_ECANCELED;
		goto end;
	}

	memset(&hints, 0, sizeof(hints));
	hints.ai_family   = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags    = AI_NUMERICSERV;
	if ((gai = getaddrinfo(
	         h->url->u_hostname, h->url->u_port, &hints, &res)) != 0) {
		snprintf(h->errmsg, sizeof(h->errmsg), "%s %s: resolve %s: %s",
		    http_method(h), h->url->u_rawurl, h->url->u_hostname,
		    gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
		rv = HTTP_EFAILED; // DNS may answer on the next attempt
		goto end;
	}
	if ((rv = http_pick(h, res, url, sizeof(url))) != 0) {
		goto end;
	}
	if ((rv = nng_url_parse(&nu, url)) != 0 ||
	    (rv = nng_http_client_alloc(&h->client, nu)) != 0) {
		goto end;
	}
	if (h->https) {
		if (h->ca_path == NULL) {
			snprintf(h->errmsg, sizeof(h->errmsg),
			    "%s %s: https: no CA certificates to verify the "
			    "server; set --http-ca-file",
			    http_method(h), h->url->u_rawurl);
			rv = HTTP_EREFUSED;
			goto end;
		}
		if ((rv = http_tls_get(&tls, h->url->u_hostname)) != 0) {
			snprintf(h->errmsg, sizeof(h->errmsg),
			    "https: TLS setup for %s (CA %s): %s",
			    h->url->u_hostname, h->ca_path, nng_strerror(rv));
			rv = rv == NNG_ENOMEM ? HTTP_EFAILED : HTTP_EREFUSED;
			goto end;
		}
		rv = nng_http_client_set_tls(h->client, tls);
		nng_tls_config_free(tls); // the client holds its own
		if (rv != 0) {
			goto end;
		}
	}
end:
	if (res != NULL) {
		freeaddrinfo(res);
	}
	if (nu != NULL) {
		nng_url_free(nu);
	}
	pthread_mutex_lock(&http_mtx);
	now = nng_clock();
	if (rv == 0 && h->cancelled) {
		rv = NNG_ECANCELED;
	}
	if (rv == 0 && now >= h->deadline) {
		rv = NNG_ETIMEDOUT;
	}
	if (rv != 0) {
		http_end_locked(h, rv);
		return;
	}
	h->step = HTTP_CONNECT;
	nng_aio_set_timeout(h->aio, (nng_duration) (h->deadline - now));
	nng_http_client_connect(h->client, h->aio);
	pthread_mutex_unlock(&http_mtx);
}

// http_resolver_main takes hops off the resolver queue until the handler
// stops and the queue is empty. The threads are detached: one stuck in a
// slow DNS lookup at stop must not hold the broker's exit (stop waits for
// them for a bounded time).
static void *
http_resolver_main(void *arg)
{
	(void) arg;
	pthread_mutex_lock(&http_mtx);
	for (;;) {
		http_req *h;

		while ((h = http_rq_head) == NULL && http_open) {
			pthread_cond_wait(&http_rcv, &http_mtx);
		}
		if (h == NULL) {
			break;
		}
		if ((http_rq_head = h->rnext) == NULL) {
			http_rq_tail = NULL;
		}
		h->rnext = NULL;
		pthread_mutex_unlock(&http_mtx);
		http_resolve(h);
		pthread_mutex_lock(&http_mtx);
	}
	http_nresolvers--;
	pthread_cond_broadcast(&http_cv);
	pthread_mutex_unlock(&http_mtx);
	return (NULL);
}

// http_run starts one attempt. Loop thread.
static int
http_run(tb_run *r, void *hdata)
{
	http_req *h;
	char      err[512];
	uint32_t  tmo;
	int       rv;

	(void) hdata;
	http_reap();
	if ((rv = http_req_build(&h, r, err, sizeof(err))) != TB_OK) {
		log_info(RUN_FMT ": http: %s", RUN_ARGS(r), err);
		tb_run_set_error(r, "%s", err);
		if (rv == TB_EBADREQ) {
			tb_run_set_no_retry(r);
		}
		tb_run_finish(r);
		return (0);
	}
	tmo           = tb_run_timeout_ms(r);
	h->timeout_ms = tmo != 0 ? tmo : HTTP_DEFAULT_TIMEOUT_MS;
	h->deadline   = nng_clock() + h->timeout_ms;
	if ((rv = nng_aio_alloc(&h->aio, http_cb, h)) != 0) {
		http_req_free(h, false);
		tb_run_set_error(r, "http: %s", nng_strerror(rv));
		tb_run_finish(r);
		return (0);
	}

	pthread_mutex_lock(&http_mtx);
	if (!http_open) {
		pthread_mutex_unlock(&http_mtx);
		http_req_free(h, false);
		tb_run_set_error(r, "cancelled (the http handler is stopped)");
		tb_run_finish(r);
		return (0);
	}
	h->next = http_live;
	if (http_live != NULL) {
		http_live->prev = h;
	}
	http_live = h;
	http_nlive++;
	http_resolve_queue_locked(h); // a resolver thread connects
	pthread_mutex_unlock(&http_mtx);
	log_debug(RUN_FMT ": http %s %s started", RUN_ARGS(r), http_method(h),
	    h->url->u_rawurl);
	return (0);
}

// http_cancel aborts the attempt's request; its callback ends the attempt
// (or, while the host is being resolved, the resolver thread does once it
// sees the mark). Loop thread.
static void
http_cancel(tb_run *r, void *hdata)
{
	(void) hdata;
	pthread_mutex_lock(&http_mtx);
	for (http_req *h = http_live; h != NULL; h = h->next) {
		if (h->run == r && !h->cancelled) {
			h->cancelled = true;
			nng_aio_abort(h->aio, NNG_ECANCELED);
			break;
		}
	}
	pthread_mutex_unlock(&http_mtx);
}

int
http_handler_init(const config *cfg)
{
	static const tb_handler_def def = {
		.name   = "http",
		.mode   = TB_HANDLER_LOOP,
		.run    = http_run,
		.cancel = http_cancel,
		.hdata  = NULL,
	};
	nng_tls_config *tls;
	const char     *path;
	int             rv;

	if (http_inited) {
		return (TB_EBUSY);
	}
	if (cfg->http_allow_internal.n > HTTP_NETS_MAX) {
		log_err("http: more than %d --http-allow-internal entries",
		    HTTP_NETS_MAX);
		return (TB_EINVAL);
	}
	for (size_t i = 0; i < cfg->http_allow_internal.n; i++) {
		const char *e = cfg->http_allow_internal.v[i];
		if (http_net_parse(&http_nets[i], e) != TB_OK) {
			log_err(
			    "http: --http-allow-internal %s: not an IPv4 or "
			    "IPv6 address, or ADDR/BITS",
			    e);
			return (TB_EINVAL);
		}
	}
	http_nnets = cfg->http_allow_internal.n;
	pthread_mutex_lock(&http_mtx);
	http_cfg = cfg;
	pthread_mutex_unlock(&http_mtx);
	// Load the CA file once now, so a bad --http-ca-file stops the
	// start instead of failing every https task later.
	if (cfg->http_ca_file != NULL && cfg->http_ca_file[0] != '\0') {
		path = cfg->http_ca_file;
		if ((rv = http_tls_alloc(&tls, path, NULL)) != 0) {
			log_err("http: --http-ca-file %s: cannot load CA "
			        "certificates: %s",
			    path, nng_strerror(rv));
			return (rv == NNG_ENOMEM ? TB_ENOMEM : TB_EINVAL);
		}
		nng_tls_config_free(tls);
	} else {
		path = HTTP_SYSTEM_CA;
		if ((rv = http_tls_alloc(&tls, path, NULL)) != 0) {
			// http:// still works; https:// attempts fail with
			// this reason. Verification is never skipped.
			char msg[256];
			snprintf(msg, sizeof(msg), "system store %s: %s", path,
			    nng_strerror(rv));
			log_warn("http: %s; https tasks will fail until "
			         "--http-ca-file is set",
			    msg);
			if ((http_ca_error = strdup(msg)) == NULL) {
				return (TB_ENOMEM);
			}
			path = NULL;
		} else {
			nng_tls_config_free(tls);
		}
	}
	pthread_mutex_lock(&http_tls_mtx);
	http_ca_path = path != NULL ? strdup(path) : NULL;
	pthread_mutex_unlock(&http_tls_mtx);
	if (path != NULL && http_ca_path == NULL) {
		rv = TB_ENOMEM;
		goto fail;
	}
	if ((rv = handlers_register(&def)) != TB_OK) {
		log_err("http: cannot register the handler: %s",
		    tbp_err_message(rv));
		goto fail;
	}
	pthread_mutex_lock(&http_mtx);
	http_open = true;
	for (int i = 0; i < HTTP_RESOLVERS; i++) {
		pthread_attr_t attr;
		pthread_t      tid;

		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rv = pthread_create(&tid, &attr, http_resolver_main, NULL);
		pthread_attr_destroy(&attr);
		if (rv != 0) {
			// The registered handler stays; with no resolver its
			// tasks would wait until their timeout, so fail the
			// start instead.
			pthread_mutex_unlock(&http_mtx);
			log_err("http: cannot start a resolver thread: %s",
			    strerror(rv));
			http_inited = true; // http_handler_stop undoes it all
			http_handler_stop();
			return (TB_ENOMEM);
		}
		http_nresolvers++;
	}
	pthread_mutex_unlock(&http_mtx);
	http_inited = true;
	log_info("http: handler ready (CA %s; %s; %zu internal address "
	         "ranges allowed)",
	    http_ca_path != NULL ? http_ca_path : "none",
	    cfg->http_allow.n == 0 ? "any host" : "allowed hosts only",
	    http_nnets);
	return (TB_OK);
fail:
	pthread_mutex_lock(&http_tls_mtx);
	free(http_ca_path);
	http_ca_path = NULL;
	pthread_mutex_unlock(&http_tls_mtx);
	free(http_ca_error);
	http_ca_error = NULL;
	return (rv);
}

void
http_handler_stop(void)
{
	struct timespec until;
	int             rv = 0;

	if (!http_inited) {
		return;
	}
	pthread_mutex_lock(&http_mtx);
	http_open = false;
	for (http_req *h = http_live; h != NULL; h = h->next) {
		if (!h->cancelled) {
			h->cancelled = true;
			nng_aio_abort(h->aio, NNG_ECANCELED);
		}
	}
	pthread_cond_broadcast(&http_rcv); // idle resolvers end
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += HTTP_STOP_WAIT_S;
	while ((http_nlive > 0 || http_nresolvers > 0) && rv != ETIMEDOUT) {
		rv = pthread_cond_timedwait(&http_cv, &http_mtx, &until);
	}
	if (http_nlive > 0 || http_nresolvers > 0) {
		// Not expected: aborted aios complete promptly, and only a
		// DNS lookup can keep a resolver this long. The stragglers
		// free themselves and need nothing freed below (the TLS
		// cache refuses them once closed).
		log_warn("http: %zu requests still ending at stop (%zu in a "
		         "DNS lookup)",
		    http_nlive, http_nresolvers);
	}
	http_cfg = NULL;
	pthread_mutex_unlock(&http_mtx);
	http_reap();
	pthread_mutex_lock(&http_tls_mtx);
	http_tls_cache_free();
	free(http_ca_path);
	http_ca_path = NULL;
	pthread_mutex_unlock(&http_tls_mtx);
	free(http_ca_error);
	http_ca_error = NULL;
	http_inited   = false;
}
