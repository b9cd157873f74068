// guard.c: see guard.h.

#include "guard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <taskbroker/defs.h>
#include <tbp.h>

#include "log.h"
#include "util.h"

typedef struct probe probe;

// probe is a connection of the guard's own to a suspected listener (ipc
// and tcp; see guard.h). The transport negotiates it whether or not the
// core still accepts; only a core that accepts counts it.
struct probe {
	union {
		uv_handle_t h;
		uv_stream_t s;
		uv_pipe_t   pipe;
		uv_tcp_t    tcp;
	} u;
	uv_connect_t conn;
	uv_write_t   wr;
	guard       *g;       // NULL once the guard has let it go
	uint8_t      head[8]; // our SP header
	uint8_t      buf[64]; // what the broker sends, read and dropped
	size_t       got;     // bytes read: 8 and more is negotiated
	int64_t      neg_us;  // when it was negotiated
	bool         failed;  // refused or closed before it was negotiated
	bool         retry;   // the connect found the backlog full
	probe       *next;    // in watch.orphans, once let go
};

struct guard {
	nng_socket      sock;
	nng_listener    l;
	char           *url;
	const char     *what;
	guard_access    access;
	bool            has_access;
	nng_tls_config *tls;
	uint64_t        errors;   // the listener's other + oom when last read
	uint64_t        restarts; // times the listener was started again
	uint64_t        unlogged; // restarts since the last log line
	int64_t         logged_us;
	bool            down;       // no listener: the last start failed
	bool            suspect;    // errors grew: is the listener stopped?
	int64_t         suspect_us; // since when
	uint64_t        accepts;    // the listener's accepts when suspected
	uv_loop_t      *loop;
	int             peer;  // the SP protocol a peer of the socket speaks
	probe          *probe; // the open probe of this suspicion, or NULL
	guard          *next;
};

// The watch: one timer for every guard of the process, because each look
// at the statistics copies all of nng's (every socket's and connection's:
// about 14 ms with 1,000 connections on these machines), so one copy
// serves every listener, and the period grows with what a copy costs.
// Loop thread only; a broker is one per process.
static struct {
	uv_timer_t timer;
	bool       inited;  // timer initialised and not closing
	bool       closing; // uv_close called, callback not yet run
	guard     *list;
	probe     *orphans; // probes let go, not yet closed
} watch;

int
guard_access_parse(const char *mode, const char *group, guard_access *a)
{
	char   *end;
	long    v;
	int64_t gid;

	errno = 0;
	v     = strtol(mode, &end, 8);
	if (errno != 0 || end == mode || *end != '\0' || v < 0 || v > 0777) {
		log_err("--socket-mode %s: want octal permissions, 0 to 0777",
		    mode);
		return (-1);
	}
	a->mode = (mode_t) v;
	a->gid  = (gid_t) -1;
	if (group[0] == '\0') {
		return (0);
	}
	if (util_group_id(group, &gid) != 0) {
		log_err("--socket-group %s: no such group", group);
		return (-1);
	}
	a->gid = (gid_t) gid;
	return (0);
}

// guard_find returns the statistics scope of listener l in root, or NULL.
// nng_stat_find_listener cannot be used: in nng 1.5.2 its search below the
// top level matches by name only, so it returns the first listener's.
static nng_stat *
guard_find(nng_stat *root, nng_listener l)
{
	int id = nng_listener_id(l);

	for (nng_stat *s = nng_stat_child(root); s != NULL;
	     s           = nng_stat_next(s)) {
		nng_stat *idst;
		if (nng_stat_type(s) == NNG_STAT_SCOPE &&
		    strcmp(nng_stat_name(s), "listener") == 0 &&
		    (idst = nng_stat_find(s, "id")) != NULL &&
		    nng_stat_value(idst) == (uint64_t) id) {
			return (s);
		}
	}
	return (NULL);
}

// guard_counts reads, from the statistics root, the listener's accepts
// and its count of the accept errors that can leave it stopped. False when
// the statistics do not have the listener.
static bool
guard_counts(nng_stat *root, const guard *g, uint64_t *errp, uint64_t *accp)
{
	nng_stat *ls;
	int       found = 0;

	if ((ls = guard_find(root, g->l)) == NULL) {
		return (false);
	}
	*errp = *accp = 0;
	for (nng_stat *st = nng_stat_child(ls); st != NULL;
	     st           = nng_stat_next(st)) {
		const char *name = nng_stat_name(st);
		if (strcmp(name, "other") == 0 || strcmp(name, "oom") == 0) {
			*errp += nng_stat_value(st);
			found++;
		} else if (strcmp(name, "accept") == 0) {
			*accp = nng_stat_value(st);
			found++;
		}
	}
	return (found == 3);
}

static void
probe_closed(uv_handle_t *h)
{
	probe *p = h->data;

	for (probe **pp = &watch.orphans; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	free(p);
}

// probe_settled: the probe can be closed without failing a handshake of
// the listener's: the broker's header has arrived (ours went first), or
// there is no connection (refused, closed, or the backlog was full).
static bool
probe_settled(const probe *p)
{
	return (p->got >= sizeof(p->head) || p->failed || p->retry);
}

// probe_drop closes a probe its guard has let go, once it is settled.
static void
probe_drop(probe *p)
{
	if (p->g == NULL && probe_settled(p) && !uv_is_closing(&p->u.h)) {
		uv_close(&p->u.h, probe_closed);
	}
}

// probe_end lets g's probe go: closed as soon as it is settled (at once,
// or when the broker's header or its close arrives; nng gives up on a
// handshake after 10 s), freed when libuv is done with it.
static void
probe_end(guard *g)
{
	probe *p = g->probe;

	if (p == NULL) {
		return;
	}
	g->probe      = NULL;
	p->g          = NULL;
	p->next       = watch.orphans;
	watch.orphans = p;
	probe_drop(p);
}

static void
probe_alloc(uv_handle_t *h, size_t want, uv_buf_t *buf)
{
	probe *p = h->data;

	(void) want;
	*buf = uv_buf_init((char *) p->buf, sizeof(p->buf));
}

static void
probe_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	probe *p = st->data;

	(void) buf;
	if (n < 0) {
		// Closed by the broker: before negotiation that is a
		// listener that is not there (a verdict); after it, the
		// accept count alone decides.
		p->failed = p->got < sizeof(p->head);
		uv_read_stop(st);
	} else {
		if (p->got < sizeof(p->head) &&
		    p->got + (size_t) n >= sizeof(p->head)) {
			p->neg_us = util_mono_us();
		}
		p->got += (size_t) n;
	}
	probe_drop(p);
}

static void
probe_written(uv_write_t *wr, int status)
{
	probe *p = wr->data;

	if (status != 0 && status != UV_ECANCELED) {
		p->failed = true;
		probe_drop(p);
	}
}

static void
probe_connected(uv_connect_t *conn, int status)
{
	probe   *p = conn->data;
	uv_buf_t b = uv_buf_init((char *) p->head, sizeof(p->head));

	if (status == UV_ECANCELED) {
		return; // closed (the broker is stopping)
	}
	if (status == UV_EAGAIN) {
		// A unix socket's backlog is full: a busy listener, not a
		// verdict. The next look probes again.
		p->retry = true;
	} else if (status != 0 ||
	    uv_write(&p->wr, &p->u.s, &b, 1, probe_written) != 0 ||
	    uv_read_start(&p->u.s, probe_alloc, probe_read) != 0) {
		// The header goes first, then the broker's is read, even
		// for a probe let go meanwhile: closing before the broker
		// has both is what stops a listener.
		p->failed = true;
	}
	probe_drop(p);
}

// probe_start connects a probe to g's listener, at the address it is
// bound to (a wildcard address is reached through loopback). Returns
// false if there is nothing to probe with (tls+tcp, an address family
// not known here, no memory): then time alone decides, as before.
static bool
probe_start(guard *g)
{
	nng_sockaddr            sa;
	struct sockaddr_storage ss;
	probe                  *p;
	int                     rv;

	if (g->tls != NULL || g->peer < 0 ||
	    nng_listener_get_addr(g->l, NNG_OPT_LOCADDR, &sa) != 0 ||
	    (p = calloc(1, sizeof(*p))) == NULL) {
		return (false);
	}
	memset(&ss, 0, sizeof(ss));
	p->g         = g;
	p->head[1]   = 'S';
	p->head[2]   = 'P';
	p->head[4]   = (uint8_t) (g->peer >> 8);
	p->head[5]   = (uint8_t) g->peer;
	p->conn.data = p->wr.data = p;
	switch (sa.s_family) {
	case NNG_AF_IPC:
		rv = uv_pipe_init(g->loop, &p->u.pipe, 0);
		if (rv == 0) {
			p->u.h.data = p;
			uv_pipe_connect(&p->conn, &p->u.pipe, sa.s_ipc.sa_path,
			    probe_connected);
		}
		break;
	case NNG_AF_INET: {
		struct sockaddr_in *in = (struct sockaddr_in *) &ss;
		in->sin_family         = AF_INET;
		in->sin_port           = sa.s_in.sa_port; // network order
		in->sin_addr.s_addr    = sa.s_in.sa_addr == 0
		       ? htonl(INADDR_LOOPBACK)
		       : sa.s_in.sa_addr;
		goto tcp;
	}
	case NNG_AF_INET6: {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
		static const uint8_t any[16];
		in6->sin6_family = AF_INET6;
		in6->sin6_port   = sa.s_in6.sa_port;
		memcpy(&in6->sin6_addr, sa.s_in6.sa_addr, 16);
		if (memcmp(sa.s_in6.sa_addr, any, 16) == 0) {
			in6->sin6_addr = in6addr_loopback;
		}
		in6->sin6_scope_id = sa.s_in6.sa_scope;
		goto tcp;
	}
	default:
		free(p);
		return (false);
	tcp:
		rv = uv_tcp_init(g->loop, &p->u.tcp);
		if (rv == 0) {
			p->u.h.data = p;
			rv          = uv_tcp_connect(&p->conn, &p->u.tcp,
			             (struct sockaddr *) &ss, probe_connected);
		}
		break;
	}
	if (rv != 0) {
		if (p->u.h.data == p) {
			uv_close(&p->u.h, probe_closed); // initialised
		} else {
			free(p);
		}
		return (false);
	}
	g->probe = p;
	return (true);
}

// guard_suspect starts a suspicion of g's listener (its errors grew) at
// now, with a probe where one can be made.
static void
guard_suspect(guard *g, int64_t now, uint64_t errors, uint64_t accepts)
{
	probe_end(g);
	g->suspect    = true;
	g->suspect_us = now;
	g->accepts    = accepts;
	g->errors     = errors;
	(void) probe_start(g);
}

// guard_verdict says whether a suspected listener that has accepted
// nothing since the suspicion began has stopped: with a probe, when the
// probe was refused, or was negotiated by the transport and not accepted
// by the core for GUARD_CONFIRM_MS (which outlasts the core's pause of
// 100 ms after a failed handshake), or was not negotiated within
// GUARD_PROBE_MAX_MS of the last failed handshake the core heard of
// (guard_look); without one, when GUARD_CONFIRM_MS passed.
static bool
guard_verdict(const guard *g, int64_t now)
{
	const probe *p       = g->probe;
	int64_t      confirm = (int64_t) GUARD_CONFIRM_MS * 1000;

	if (p == NULL) {
		return (now - g->suspect_us >= confirm);
	}
	if (p->failed) {
		return (true);
	}
	if (p->got >= sizeof(p->head)) {
		return (now - p->neg_us >= confirm);
	}
	return (now - g->suspect_us >= (int64_t) GUARD_PROBE_MAX_MS * 1000);
}

// guard_look decides, from one look at the statistics, whether g's
// listener has stopped: its errors grew (a suspicion), and then it
// accepted nothing, not even the guard's probe (guard_verdict).
static bool
guard_look(nng_stat *root, guard *g, int64_t now)
{
	uint64_t errors;
	uint64_t accepts;

	if (!guard_counts(root, g, &errors, &accepts)) {
		return (false);
	}
	if (g->suspect) {
		if (accepts != g->accepts) {
			// It accepted since the suspicion began; if it also
			// failed again meanwhile, the order is unknown:
			// suspect it afresh from now rather than lose that
			// failure.
			log_debug("%s: the listener on %s accepts after a "
			          "failed handshake; it is kept",
			    g->what, g->url);
			probe_end(g);
			g->suspect = false;
			if (errors != g->errors) {
				guard_suspect(g, now, errors, accepts);
			}
			g->accepts = accepts;
			g->errors  = errors;
			return (false);
		}
		if (g->probe != NULL && g->probe->retry) {
			probe_end(g);
			(void) probe_start(g);
		}
		if (errors != g->errors && g->probe != NULL &&
		    g->probe->got < sizeof(g->probe->head)) {
			// The core still hears of failed handshakes, so it
			// had an accept pending: alive when they failed. The
			// probe waits behind their connections; wait on.
			g->errors     = errors;
			g->suspect_us = now;
			return (false);
		}
		return (guard_verdict(g, now));
	}
	if (errors != g->errors) {
		guard_suspect(g, now, errors, accepts);
	}
	return (false);
}

// guard_start creates, configures and starts a listener on g->url.
// Returns 0 or an nng error; what failed is in *stepp.
static int
guard_start(guard *g, const char **stepp)
{
	nng_listener l;
	bool         ipc = strncmp(g->url, "ipc://", 6) == 0;
	int          rv;

	*stepp = "listen";
	if ((rv = nng_listener_create(&l, g->sock, g->url)) != 0) {
		return (rv);
	}
	*stepp = "set the socket mode";
	if (ipc && g->has_access &&
	    (rv = nng_listener_set_int(
	         l, NNG_OPT_IPC_PERMISSIONS, (int) g->access.mode)) != 0) {
		nng_listener_close(l);
		return (rv);
	}
	*stepp = "set the TLS configuration";
	if (g->tls != NULL && strncmp(g->url, "tls+", 4) == 0 &&
	    (rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, g->tls)) != 0) {
		nng_listener_close(l);
		return (rv);
	}
	*stepp = "listen";
	if ((rv = nng_listener_start(l, 0)) != 0) {
		nng_listener_close(l);
		return (rv);
	}
	// The group cannot be set before the file exists; until it is, the
	// mode alone keeps others out (the group's bits apply to the
	// broker's own group meanwhile).
	if (ipc && g->has_access && g->access.gid != (gid_t) -1 &&
	    chown(g->url + 6, (uid_t) -1, g->access.gid) != 0) {
		rv     = NNG_ESYSERR + errno; // nng_strerror says the cause
		*stepp = "set the socket group";
		nng_listener_close(l);
		return (rv);
	}
	g->l      = l;
	g->errors = 0; // a new listener's counts start at zero
	return (0);
}

// guard_restart replaces a listener that may have stopped accepting.
static void
guard_restart(guard *g)
{
	const char *step;
	int64_t     now = util_mono_us();
	int         rv;

	g->suspect = false;
	if (!g->down) {
		nng_listener_close(g->l);
	}
	probe_end(g); // after the close: the listener can no longer fail on it
	if ((rv = guard_start(g, &step)) != 0) {
		if (!g->down) {
			log_err("%s: cannot %s on %s again: %s; trying every "
			        "%d ms",
			    g->what, step, g->url, nng_strerror(rv),
			    GUARD_EVERY_MS);
		}
		g->down = true;
		return;
	}
	g->restarts++;
	if (g->down) {
		log_info("%s: listening on %s again", g->what, g->url);
		g->down = false;
		return;
	}
	log_debug("%s: new listener on %s (%" PRIu64 " in all)", g->what,
	    g->url, g->restarts);
	g->unlogged++;
	if (g->logged_us == 0 ||
	    now - g->logged_us >= (int64_t) GUARD_LOG_EVERY_MS * 1000) {
		log_warn("%s: the listener on %s stopped accepting after a "
		         "failed handshake (nng 1.5.2's listener bug, or no "
		         "descriptors or memory): it accepted %s for %d ms; "
		         "started a new one (%" PRIu64 " time%s since the "
		         "last such line, %" PRIu64 " in all)",
		    g->what, g->url,
		    g->tls == NULL ? "not even a probe" : "nothing",
		    GUARD_CONFIRM_MS, g->unlogged, g->unlogged == 1 ? "" : "s",
		    g->restarts);
		g->unlogged  = 0;
		g->logged_us = now;
	}
}

// watch_period returns the next period after a look that took cost_us:
// GUARD_COST_SHARE of one core at most, within the bounds in guard.h.
static uint64_t
watch_period(int64_t cost_us)
{
	int64_t ms = cost_us * GUARD_COST_SHARE / 1000;

	if (ms < GUARD_EVERY_MS) {
		return (GUARD_EVERY_MS);
	}
	return (ms > GUARD_MAX_MS ? GUARD_MAX_MS : (uint64_t) ms);
}

static void
watch_tick(uv_timer_t *timer)
{
	nng_stat *root;
	guard    *stopped[8];
	int       n  = 0;
	int64_t   t0 = util_mono_us();
	int64_t   cost;

	// First look (what the period pays for), then act: a restart waits
	// for nng to close connections and must not lengthen the period.
	if (nng_stats_get(&root) != 0) {
		root = NULL; // no memory: only listeners already down retry
	}
	for (guard *g = watch.list; g != NULL && n < 8; g = g->next) {
		if (g->down || (root != NULL && guard_look(root, g, t0))) {
			stopped[n++] = g;
		}
	}
	if (root != NULL) {
		nng_stats_free(root);
	}
	cost = util_mono_us() - t0;
	for (int i = 0; i < n; i++) {
		guard_restart(stopped[i]);
	}
	uv_timer_start(timer, watch_tick, watch_period(cost), 0);
}

static void
watch_closed(uv_handle_t *h)
{
	(void) h;
	watch.closing = false;
}

int
guard_listen(guard **gp, uv_loop_t *loop, nng_socket sock, const char *url,
    const char *what, const guard_access *access, nng_tls_config *tls)
{
	guard      *g;
	const char *step;
	int         rv;

	if (watch.closing || (watch.inited && watch.timer.loop != loop)) {
		log_err(
		    "%s: listener guard already in use by another loop", what);
		return (TB_ESYSTEM);
	}
	if ((g = calloc(1, sizeof(*g))) == NULL ||
	    (g->url = strdup(url)) == NULL) {
		free(g);
		return (TB_ENOMEM);
	}
	g->sock = sock;
	g->what = what;
	g->tls  = tls;
	g->loop = loop;
	if (nng_socket_get_int(sock, NNG_OPT_PEER, &g->peer) != 0) {
		g->peer = -1; // no probe: a wrong header fails a handshake
	}
	if (access != NULL) {
		g->access     = *access;
		g->has_access = true;
	}
	if ((rv = guard_start(g, &step)) != 0) {
		log_err("%s: cannot %s on %s: %s", what, step, url,
		    nng_strerror(rv));
		free(g->url);
		free(g);
		return (tbp_nng_err(rv, TBP_NNG_BROKER));
	}
	if (!watch.inited) {
		uv_timer_init(loop, &watch.timer);
		watch.inited = true;
		uv_timer_start(&watch.timer, watch_tick, GUARD_EVERY_MS, 0);
	}
	g->next    = watch.list;
	watch.list = g;
	*gp        = g;
	return (TB_OK);
}

uint64_t
guard_restarts(const guard *g)
{
	return (g->restarts);
}

void
guard_close(guard *g)
{
	guard **pp;

	if (g == NULL) {
		return;
	}
	for (pp = &watch.list; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == g) {
			*pp = g->next;
			break;
		}
	}
	probe_end(g);
	free(g->url);
	free(g);
	if (watch.list == NULL) {
		// The last listener is closing: so is the broker, and no
		// handshake matters now.
		for (probe *p = watch.orphans; p != NULL; p = p->next) {
			if (!uv_is_closing(&p->u.h)) {
				uv_close(&p->u.h, probe_closed);
			}
		}
	}
	if (watch.list == NULL && watch.inited) {
		uv_timer_stop(&watch.timer);
		watch.inited  = false;
		watch.closing = true;
		uv_close((uv_handle_t *) &watch.timer, watch_closed);
	}
}
