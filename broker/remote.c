// remote.c: see remote.h.

#include "remote.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

// REMOTE_FILE_MAX bounds what remote_open reads of a certificate or key.
#define REMOTE_FILE_MAX (1u << 20)

// REMOTE_TOKEN_MIN is the shortest token the broker accepts: 16 printable
// characters (openssl rand -hex 32 gives 64).
#define REMOTE_TOKEN_MIN 16u

// remote_peer is one row of the refusal log's table.
typedef struct remote_peer {
	int      family; // NNG_AF_INET, NNG_AF_INET6; 0: free row
	uint8_t  key[16];
	int64_t  logged_us; // when its last line was written
	uint64_t suppressed;
} remote_peer;

struct remote {
	char            token[TBP_MAX_TOKEN + 1];
	uint32_t        token_len;  // 0: no --token-file
	bool            need_token; // the request listener is tcp or tls
	bool            admin_ok;   // see remote_admin_ok
	nng_tls_config *tls;        // server side; NULL without --tls-cert
	remote_peer     peers[REMOTE_LOG_PEERS];
	remote_peer     others; // peers the table has no room for
};

remote_kind
remote_url_kind(const char *url)
{
	static const char *const tcp[] = { "tcp://", "tcp4://", "tcp6://" };
	static const char *const tls[] = { "tls+tcp://", "tls+tcp4://",
		"tls+tcp6://" };

	if (url == NULL) {
		return (REMOTE_OTHER);
	}
	if (strncmp(url, "ipc://", 6) == 0) {
		return (REMOTE_IPC);
	}
	for (size_t i = 0; i < 3; i++) {
		if (strncmp(url, tcp[i], strlen(tcp[i])) == 0) {
			return (REMOTE_TCP);
		}
		if (strncmp(url, tls[i], strlen(tls[i])) == 0) {
			return (REMOTE_TLS);
		}
	}
	return (REMOTE_OTHER);
}

// remote_url_host copies the host of "scheme://HOST:PORT" (brackets of
// "[v6]" removed) into buf. Returns 0, or -1 if it does not fit.
static int
remote_url_host(const char *url, char *buf, size_t size)
{
	const char *h = strstr(url, "://");
	const char *end;
	size_t      n;

	if (h == NULL) {
		return (-1);
	}
	h += 3;
	if (*h == '[') {
		h++;
		if ((end = strchr(h, ']')) == NULL) {
			return (-1);
		}
	} else if ((end = strrchr(h, ':')) == NULL) {
		end = h + strlen(h);
	}
	if ((n = (size_t) (end - h)) >= size) {
		return (-1);
	}
	memcpy(buf, h, n);
	buf[n] = '\0';
	return (0);
}

bool
remote_url_loopback(const char *url)
{
	char            host[256];
	struct in_addr  a4;
	struct in6_addr a6;

	if (remote_url_host(url, host, sizeof(host)) != 0 || host[0] == '\0') {
		return (false);
	}
	if (strcasecmp(host, "localhost") == 0) {
		return (true);
	}
	if (inet_pton(AF_INET, host, &a4) == 1) {
		return ((ntohl(a4.s_addr) >> 24) == 127);
	}
	if (inet_pton(AF_INET6, host, &a6) == 1) {
		return (IN6_IS_ADDR_LOOPBACK(&a6) ||
		    (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127));
	}
	return (false);
}

// remote_check_scheme refuses an endpoint of a scheme the broker does not
// serve: ws://, inproc://, abstract:// and the like would bypass both the
// ipc permissions and the checks below.
static int
remote_check_scheme(const char *what, const char *url)
{
	if (remote_url_kind(url) != REMOTE_OTHER) {
		return (0);
	}
	log_err("--%s %s: the broker listens on ipc://PATH, tcp://HOST:PORT "
	        "or tls+tcp://HOST:PORT only",
	    what, url);
	return (-1);
}

int
remote_check(const config *cfg)
{
	remote_kind lk      = remote_url_kind(cfg->listen);
	remote_kind ek      = remote_url_kind(cfg->events);
	bool        cert    = cfg->tls_cert[0] != '\0';
	bool        key     = cfg->tls_key[0] != '\0';
	bool        ca      = cfg->tls_ca[0] != '\0';
	bool        token   = cfg->token_file[0] != '\0';
	bool        any_tls = lk == REMOTE_TLS || ek == REMOTE_TLS;

	if (remote_check_scheme("listen", cfg->listen) != 0 ||
	    remote_check_scheme("events", cfg->events) != 0) {
		return (-1);
	}
	if (cert != key) {
		log_err("--tls-cert and --tls-key go together: give both (the "
		        "certificate chain and its private key, PEM)");
		return (-1);
	}
	if (any_tls && !cert) {
		log_err("%s is a TLS endpoint: give the broker's certificate "
		        "and key with --tls-cert FILE and --tls-key FILE",
		    lk == REMOTE_TLS ? cfg->listen : cfg->events);
		return (-1);
	}
	if ((cert || ca) && !any_tls) {
		log_err("--tls-cert, --tls-key and --tls-ca apply to "
		        "tls+tcp:// endpoints, and neither --listen %s nor "
		        "--events %s is one: use tls+tcp://HOST:PORT, or drop "
		        "the TLS options",
		    cfg->listen, cfg->events);
		return (-1);
	}
	if ((lk == REMOTE_TCP || lk == REMOTE_TLS) &&
	    !remote_url_loopback(cfg->listen) && !token &&
	    !(lk == REMOTE_TLS && ca)) {
		log_err(
		    "--listen %s can be reached from other hosts and "
		    "nothing would authenticate them: add --token-file FILE "
		    "(every client then sends that token), or use "
		    "tls+tcp:// with --tls-ca FILE (clients then need a "
		    "certificate signed by that CA), or listen on a "
		    "loopback address (127.0.0.1, ::1, localhost) or "
		    "ipc://",
		    cfg->listen);
		return (-1);
	}
	if (ek == REMOTE_TCP && !remote_url_loopback(cfg->events)) {
		log_err(
		    "--events %s can be reached from other hosts, and a "
		    "plain tcp:// publisher cannot authenticate its "
		    "subscribers (they send nothing a token could ride on): "
		    "use tls+tcp:// with --tls-cert, --tls-key and --tls-ca "
		    "FILE (subscribers then need a certificate signed by "
		    "that CA), or a loopback address, or ipc://",
		    cfg->events);
		return (-1);
	}
	if (ek == REMOTE_TLS && !ca && !remote_url_loopback(cfg->events)) {
		log_err(
		    "--events %s can be reached from other hosts, and TLS "
		    "without client certificates lets any of them "
		    "subscribe: add --tls-ca FILE (subscribers then need a "
		    "certificate signed by that CA), or use a loopback "
		    "address or ipc://",
		    cfg->events);
		return (-1);
	}
	if (token && lk != REMOTE_TCP && lk != REMOTE_TLS) {
		log_warn("--token-file is not used: requests come over %s, "
		         "whose peers are known by their credentials",
		    cfg->listen);
	}
	if (token && lk == REMOTE_TCP && !remote_url_loopback(cfg->listen)) {
		log_warn("--listen %s: the token crosses the network in clear "
		         "text; anyone who can watch it can use it. Prefer "
		         "tls+tcp://",
		    cfg->listen);
	}
	return (0);
}

// remote_read_file reads path (at most REMOTE_FILE_MAX bytes) into a
// malloc'd, NUL-terminated buffer; *lenp gets its length. With secret,
// a file that other users may read is refused. Returns 0 or -1 after
// logging why.
static int
remote_read_file(
    const char *what, const char *path, bool secret, char **bufp, size_t *lenp)
{
	struct stat st;
	char       *buf = NULL;
	size_t      len = 0;
	ssize_t     n;
	int         fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		log_err("--%s %s: %s", what, path, strerror(errno));
		return (-1);
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > (off_t) REMOTE_FILE_MAX) {
		log_err("--%s %s: not a regular file of at most %u bytes",
		    what, path, REMOTE_FILE_MAX);
		goto fail;
	}
	if (secret && (st.st_mode & 0007) != 0) {
		log_err("--%s %s: other users may read it (mode %04o): "
		        "chmod o-rwx %s",
		    what, path, (unsigned) (st.st_mode & 07777), path);
		goto fail;
	}
	if ((buf = malloc((size_t) st.st_size + 1)) == NULL) {
		log_err("--%s %s: out of memory", what, path);
		goto fail;
	}
	while (len < (size_t) st.st_size &&
	    (n = read(fd, buf + len, (size_t) st.st_size - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			log_err("--%s %s: %s", what, path, strerror(errno));
			goto fail;
		}
		len += (size_t) n;
	}
	buf[len] = '\0';
	close(fd);
	*bufp = buf;
	*lenp = len;
	return (0);
fail:
	free(buf);
	close(fd);
	return (-1);
}

// remote_load_token reads --token-file: one line of REMOTE_TOKEN_MIN to
// TBP_MAX_TOKEN printable characters, without spaces; a final newline
// (\n or \r\n) is not part of it.
static int
remote_load_token(remote *r, const char *path)
{
	char  *buf;
	size_t len;
	int    rv = 0;

	if (remote_read_file("token-file", path, true, &buf, &len) != 0) {
		return (-1);
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) {
		len--;
	}
	for (size_t i = 0; i < len && rv == 0; i++) {
		if (buf[i] <= ' ' || buf[i] > '~') {
			rv = -1;
		}
	}
	if (rv != 0 || len < REMOTE_TOKEN_MIN || len > TBP_MAX_TOKEN) {
		log_err("--token-file %s: want one line of %u to %u printable "
		        "characters without spaces (e.g. made by openssl rand "
		        "-hex 32)",
		    path, REMOTE_TOKEN_MIN, TBP_MAX_TOKEN);
		rv = -1;
	} else {
		memcpy(r->token, buf, len);
		r->token[len] = '\0';
		r->token_len  = (uint32_t) len;
	}
	explicit_bzero(buf, len);
	free(buf);
	return (rv);
}

// remote_load_tls makes the server TLS configuration from --tls-cert,
// --tls-key and --tls-ca.
static int
remote_load_tls(remote *r, const config *cfg)
{
	char  *cert = NULL;
	char  *key  = NULL;
	size_t n;
	int    rv;

	if (remote_read_file("tls-cert", cfg->tls_cert, false, &cert, &n) !=
	        0 ||
	    remote_read_file("tls-key", cfg->tls_key, true, &key, &n) != 0) {
		free(cert);
		return (-1);
	}
	if ((rv = nng_tls_config_alloc(&r->tls, NNG_TLS_MODE_SERVER)) != 0) {
		log_err("tls: %s", nng_strerror(rv));
		r->tls = NULL;
	} else if ((rv = nng_tls_config_own_cert(r->tls, cert, key, NULL)) !=
	    0) {
		log_err("--tls-cert %s, --tls-key %s: %s (want PEM, the key "
		        "unencrypted and matching the certificate)",
		    cfg->tls_cert, cfg->tls_key, nng_strerror(rv));
	} else if (cfg->tls_ca[0] != '\0' &&
	    (rv = nng_tls_config_ca_file(r->tls, cfg->tls_ca)) != 0) {
		log_err("--tls-ca %s: %s (want PEM certificates)", cfg->tls_ca,
		    nng_strerror(rv));
	} else if ((rv = nng_tls_config_auth_mode(r->tls,
	                cfg->tls_ca[0] != '\0' ? NNG_TLS_AUTH_MODE_REQUIRED
	                                       : NNG_TLS_AUTH_MODE_NONE)) !=
	    0) {
		log_err("tls: auth mode: %s", nng_strerror(rv));
	}
	explicit_bzero(key, n);
	free(key);
	free(cert);
	return (rv == 0 ? 0 : -1);
}

int
remote_open(remote **rp, const config *cfg)
{
	remote     *r;
	remote_kind lk = remote_url_kind(cfg->listen);

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		return (TB_ENOMEM);
	}
	r->need_token = (lk == REMOTE_TCP || lk == REMOTE_TLS) &&
	    cfg->token_file[0] != '\0';
	r->admin_ok =
	    r->need_token || (lk == REMOTE_TLS && cfg->tls_ca[0] != '\0');
	if ((cfg->token_file[0] != '\0' &&
	        remote_load_token(r, cfg->token_file) != 0) ||
	    (cfg->tls_cert[0] != '\0' && remote_load_tls(r, cfg) != 0)) {
		remote_close(r);
		return (TB_EINVAL);
	}
	*rp = r;
	return (TB_OK);
}

void
remote_close(remote *r)
{
	if (r == NULL) {
		return;
	}
	if (r->tls != NULL) {
		nng_tls_config_free(r->tls); // listeners hold their own
	}
	explicit_bzero(r->token, sizeof(r->token));
	free(r);
}

nng_tls_config *
remote_tls(const remote *r)
{
	return (r != NULL ? r->tls : NULL);
}

bool
remote_token_ok(const remote *r, const tbp_req *req)
{
	tbp_bytes want;

	if (!r->need_token) {
		return (true);
	}
	if (!req->have_token) {
		return (false);
	}
	want.p = (const uint8_t *) r->token;
	want.n = r->token_len;
	return (tbp_token_equal(req->token, want));
}

bool
remote_admin_ok(const remote *r)
{
	return (r->admin_ok);
}

bool
remote_log_due(remote *r, int family, const uint8_t key[16], int64_t now_us,
    uint64_t *suppressedp)
{
	remote_peer *p      = NULL;
	remote_peer *oldest = NULL;

	for (size_t i = 0; i < REMOTE_LOG_PEERS; i++) {
		remote_peer *q = &r->peers[i];
		if (q->family == family && memcmp(q->key, key, 16) == 0) {
			p = q;
			break;
		}
		if (oldest == NULL || q->family == 0 ||
		    (oldest->family != 0 &&
		        q->logged_us < oldest->logged_us)) {
			oldest = q;
		}
	}
	if (p == NULL) {
		if (oldest->family != 0 &&
		    now_us - oldest->logged_us < REMOTE_LOG_PERIOD_US) {
			// Every row logged within the period: a new peer
			// shares the overflow row, so the log stays bounded.
			p = &r->others;
		} else {
			// A free row, or one quiet for a whole period: its
			// peer starts afresh if it comes back.
			memset(oldest, 0, sizeof(*oldest));
			oldest->family = family;
			memcpy(oldest->key, key, 16);
			*suppressedp      = 0;
			oldest->logged_us = now_us;
			return (true);
		}
	}
	if (p->logged_us != 0 &&
	    now_us - p->logged_us < REMOTE_LOG_PERIOD_US) {
		p->suppressed++;
		return (false);
	}
	*suppressedp  = p->suppressed;
	p->suppressed = 0;
	p->logged_us  = now_us;
	if (p->logged_us == 0) {
		p->logged_us = 1; // 0 means "never"
	}
	return (true);
}

void
remote_refused(remote *r, nng_pipe pipe, uint32_t op, int64_t now_us)
{
	nng_sockaddr sa;
	uint8_t      key[16]                = { 0 };
	char         addr[INET6_ADDRSTRLEN] = "unknown";
	int          family                 = -1;
	uint64_t     suppressed;

	if (nng_pipe_get_addr(pipe, NNG_OPT_REMADDR, &sa) == 0) {
		if (sa.s_family == NNG_AF_INET) {
			family = NNG_AF_INET;
			memcpy(key, &sa.s_in.sa_addr, 4);
			inet_ntop(AF_INET, key, addr, sizeof(addr));
		} else if (sa.s_family == NNG_AF_INET6) {
			family = NNG_AF_INET6;
			memcpy(key, sa.s_in6.sa_addr, 16);
			inet_ntop(AF_INET6, key, addr, sizeof(addr));
		}
	}
	if (!remote_log_due(r, family, key, now_us, &suppressed)) {
		return;
	}
	if (suppressed > 0) {
		log_warn("request %s from %s refused: missing or wrong token "
		         "(%" PRIu64 " more refused since the last line; at "
		         "most one line a minute per peer)",
		    tbp_op_name(op), addr, suppressed);
	} else {
		log_warn("request %s from %s refused: missing or wrong token "
		         "(at most one line a minute per peer)",
		    tbp_op_name(op), addr);
	}
}
