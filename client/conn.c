// conn.c: what a client or a subscription proves to a broker that asks
// (tb_conn_opts): the token, and the TLS settings of tls+tcp:// dials.
//
// The settings are resolved once, at open, from the options and the
// environment, and the files they name are read then, so that a missing
// file is reported by tb_client_open_opts and not by the first request.
// None of this touches nng (nng must not be used before the first real
// request, see client.c); tbc_dial does, in the process that uses the
// socket.
//
// Threads: tbc_conn_init and tbc_conn_fini by the opener; tbc_dial from
// any thread, the tbc_conn being read-only after init.
// Lock order: no locks.
// Ownership: a tbc_conn owns copies of every string and file it holds.

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

#include <taskbroker.h>

#include "client_impl.h"
#include "tbp.h"

// CONN_FILE_MAX bounds a certificate, key or token file.
#define CONN_FILE_MAX (1u << 20)

// CONN_SYSTEM_CA is Debian's bundle of the system's trusted CAs, the
// default for verifying a tls+tcp:// broker.
#define CONN_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"

// conn_pick returns the option if the caller gave one (even ""), else the
// environment variable, else NULL. An empty result is NULL: none.
static const char *
conn_pick(const char *opt, const char *env)
{
	const char *v = opt != NULL ? opt : getenv(env);

	return ((v != NULL && v[0] != '\0') ? v : NULL);
}

// conn_read_file reads path (at most CONN_FILE_MAX bytes) into a malloc'd
// NUL-terminated buffer. Returns TB_OK, TB_EINVAL (missing, unreadable,
// too big) or TB_ENOMEM.
static int
conn_read_file(const char *path, char **bufp, size_t *lenp)
{
	struct stat st;
	char       *buf;
	size_t      len = 0;
	ssize_t     n;
	int         fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		return (TB_EINVAL);
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > (off_t) CONN_FILE_MAX) {
		close(fd);
		return (TB_EINVAL);
	}
	if ((buf = malloc((size_t) st.st_size + 1)) == NULL) {
		close(fd);
		return (TB_ENOMEM);
	}
	while (len < (size_t) st.st_size &&
	    (n = read(fd, buf + len, (size_t) st.st_size - len)) != 0) {
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			free(buf);
			close(fd);
			return (TB_EINVAL);
		}
		len += (size_t) n;
	}
	close(fd);
	buf[len] = '\0';
	*bufp    = buf;
	*lenp    = len;
	return (TB_OK);
}

// conn_set_token takes the token from the first line of text[0..len)
// (the broker's token file holds one line). It must be 1..TBP_MAX_TOKEN
// bytes without NUL.
static int
conn_set_token(tbc_conn *cn, const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '\n' || text[i] == '\r') {
			len = i;
		}
	}
	if (len == 0 || len > TBP_MAX_TOKEN || memchr(text, 0, len) != NULL) {
		return (TB_EINVAL);
	}
	if ((cn->token = malloc(len + 1)) == NULL) {
		return (TB_ENOMEM);
	}
	memcpy(cn->token, text, len);
	cn->token[len] = '\0';
	cn->token_len  = len;
	return (TB_OK);
}

static int
conn_dup(char **dst, const char *src)
{
	if (src == NULL) {
		*dst = NULL;
		return (TB_OK);
	}
	return ((*dst = strdup(src)) == NULL ? TB_ENOMEM : TB_OK);
}

int
tbc_conn_init(tbc_conn *cn, const tb_conn_opts *o)
{
	static const tb_conn_opts dflt = TB_CONN_OPTS_INIT;
	const char               *token, *token_file, *ca, *cert, *key, *name;
	char                     *buf;
	size_t                    len;
	int                       rv;

	memset(cn, 0, sizeof(*cn));
	if (o == NULL) {
		o = &dflt;
	}
	token      = conn_pick(o->token, "TASKBROKER_TOKEN");
	token_file = conn_pick(o->token_file, "TASKBROKER_TOKEN_FILE");
	ca         = conn_pick(o->tls_ca_file, "TASKBROKER_TLS_CA");
	cert       = conn_pick(o->tls_cert_file, "TASKBROKER_TLS_CERT");
	key        = conn_pick(o->tls_key_file, "TASKBROKER_TLS_KEY");
	name = conn_pick(o->tls_server_name, "TASKBROKER_TLS_SERVER_NAME");

	if (token != NULL) {
		rv = conn_set_token(cn, token, strlen(token));
	} else if (token_file != NULL) {
		if ((rv = conn_read_file(token_file, &buf, &len)) == TB_OK) {
			rv = conn_set_token(cn, buf, len);
			explicit_bzero(buf, len);
			free(buf);
		}
	} else {
		rv = TB_OK;
	}
	if (rv != TB_OK) {
		goto fail;
	}
	if ((cert == NULL) != (key == NULL)) {
		rv =
		    TB_EINVAL; // a certificate without its key, or the reverse
		goto fail;
	}
	if (cert != NULL &&
	    ((rv = conn_read_file(cert, &cn->cert_pem, &len)) != TB_OK ||
	        (rv = conn_read_file(key, &cn->key_pem, &cn->key_len)) !=
	            TB_OK)) {
		goto fail;
	}
	if (ca != NULL && access(ca, R_OK) != 0) {
		rv = TB_EINVAL;
		goto fail;
	}
	if ((rv = conn_dup(&cn->ca_file, ca)) != TB_OK ||
	    (rv = conn_dup(&cn->server_name, name)) != TB_OK) {
		goto fail;
	}
	return (TB_OK);
fail:
	tbc_conn_fini(cn);
	return (rv);
}

void
tbc_conn_fini(tbc_conn *cn)
{
	if (cn->token != NULL) {
		explicit_bzero(cn->token, cn->token_len);
	}
	if (cn->key_pem != NULL) {
		explicit_bzero(cn->key_pem, cn->key_len);
	}
	free(cn->token);
	free(cn->key_pem);
	free(cn->cert_pem);
	free(cn->ca_file);
	free(cn->server_name);
	memset(cn, 0, sizeof(*cn));
}

bool
tbc_url_tls(const char *url)
{
	return (strncmp(url, "tls+tcp://", 10) == 0 ||
	    strncmp(url, "tls+tcp4://", 11) == 0 ||
	    strncmp(url, "tls+tcp6://", 11) == 0);
}

// conn_url_host copies the host of "scheme://HOST:PORT" (without the
// brackets of "[v6]") into buf. Returns TB_OK or TB_EINVAL.
static int
conn_url_host(const char *url, char *buf, size_t size)
{
	const char *h = strstr(url, "://");
	const char *end;
	size_t      n;

	if (h == NULL) {
		return (TB_EINVAL);
	}
	h += 3;
	if (*h == '[') {
		h++;
		end = strchr(h, ']');
	} else {
		end = strrchr(h, ':');
	}
	if (end == NULL || (n = (size_t) (end - h)) == 0 || n >= size) {
		return (TB_EINVAL);
	}
	memcpy(buf, h, n);
	buf[n] = '\0';
	return (TB_OK);
}

// conn_tls_config makes the client TLS configuration of cn for url: the
// broker's certificate must verify against the CA file (default: the
// system's) and name the server (default: the url's host).
static int
conn_tls_config(const tbc_conn *cn, const char *url, nng_tls_config **cfgp)
{
	nng_tls_config *cfg;
	char            host[256];
	const char *ca   = cn->ca_file != NULL ? cn->ca_file : CONN_SYSTEM_CA;
	const char *name = cn->server_name;
	int         rv;

	if (name == NULL) {
		if ((rv = conn_url_host(url, host, sizeof(host))) != TB_OK) {
			return (rv);
		}
		name = host;
	}
	if ((rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT)) != 0) {
		return (tbp_nng_err(rv, TBP_NNG_CLIENT));
	}
	if ((rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) !=
	        0 ||
	    (rv = nng_tls_config_server_name(cfg, name)) != 0) {
		nng_tls_config_free(cfg);
		return (tbp_nng_err(rv, TBP_NNG_CLIENT));
	}
	// A CA file or certificate nng cannot use is the caller's to fix.
	if (nng_tls_config_ca_file(cfg, ca) != 0 ||
	    (cn->cert_pem != NULL &&
	        nng_tls_config_own_cert(
	            cfg, cn->cert_pem, cn->key_pem, NULL) != 0)) {
		nng_tls_config_free(cfg);
		return (TB_EINVAL);
	}
	*cfgp = cfg;
	return (TB_OK);
}

int
tbc_dial(nng_socket s, const char *url, const tbc_conn *cn, int flags,
    nng_dialer *dp)
{
	nng_dialer      d;
	nng_tls_config *cfg;
	int             rv;

	if (!tbc_url_tls(url)) {
		return (
		    tbp_nng_err(nng_dial(s, url, dp, flags), TBP_NNG_DIAL));
	}
	if ((rv = conn_tls_config(cn, url, &cfg)) != TB_OK) {
		return (rv);
	}
	if ((rv = nng_dialer_create(&d, s, url)) != 0) {
		nng_tls_config_free(cfg);
		return (tbp_nng_err(rv, TBP_NNG_DIAL));
	}
	// The dialer takes its own hold on cfg.
	rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg);
	nng_tls_config_free(cfg);
	if (rv != 0) {
		nng_dialer_close(d);
		return (tbp_nng_err(rv, TBP_NNG_CLIENT));
	}
	if ((rv = nng_dialer_start(d, flags)) != 0) {
		nng_dialer_close(d);
		// A broker that wants a client certificate and gets none (or
		// one it cannot verify) just closes the connection during
		// the handshake, which nng reports as a shutdown.
		return (rv == NNG_ECONNSHUT ? TB_ETLS
		                            : tbp_nng_err(rv, TBP_NNG_DIAL));
	}
	if (dp != NULL) {
		*dp = d;
	}
	return (TB_OK);
}
// tbc_dialer_pipes returns how many connections dialer d has open
// (nng's "pipes" statistic), or -1 if the statistics do not say.
int64_t
tbc_dialer_pipes(nng_dialer d)
{
	nng_stat *root;
	int64_t   pipes = -1;
	int       id    = nng_dialer_id(d);

	if (nng_stats_get(&root) != 0) {
		return (-1);
	}
	for (nng_stat *s = nng_stat_child(root); s != NULL;
	     s           = nng_stat_next(s)) {
		nng_stat *idst, *p;
		if (nng_stat_type(s) == NNG_STAT_SCOPE &&
		    strcmp(nng_stat_name(s), "dialer") == 0 &&
		    (idst = nng_stat_find(s, "id")) != NULL &&
		    nng_stat_value(idst) == (uint64_t) id &&
		    (p = nng_stat_find(s, "pipes")) != NULL) {
			pipes = (int64_t) nng_stat_value(p);
			break;
		}
	}
	nng_stats_free(root);
	return (pipes);
}

void
tbc_redial(tbc_redialer *r, nng_socket s, const char *url, const tbc_conn *cn)
{
	int64_t    now = tbc_now_ms();
	nng_dialer d;

	if (now - r->last < TBC_REDIAL_MS ||
	    tbc_dialer_pipes(r->dialer) != 0) {
		return;
	}
	r->last = now;
	nng_dialer_close(r->dialer);
	if (tbc_dial(s, url, cn, NNG_FLAG_NONBLOCK, &d) == TB_OK) {
		r->dialer = d;
	}
}
