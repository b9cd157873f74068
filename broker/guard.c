// guard.c: see guard.h.

#include "guard.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <taskbroker/defs.h>
#include <tbp.h>

#include "log.h"
#include "util.h"

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
	// A connection that was accepted and then closes in the ordinary
	// way (a client exits) is counted as an "other" error by nng 1.5.2
	// too. Without telling the two apart, any client's exit followed by
	// 250 ms without a new connection replaced the listener, which
	// closed every connection it had accepted: every worker's, whose
	// tasks were then interrupted. So the errors a look sees are first
	// reduced by the connections that closed since the last look
	// (accepts less the open "pipes" gauge), and only what remains
	// counts as failed handshakes (fails).
	uint64_t seen_errors; // other + oom at the last look
	uint64_t seen_closed; // accepts - pipes at the last look
	uint64_t fails;       // errors not explained by closed connections
	guard   *next;
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
guard_counts(nng_stat *root, const guard *g, uint64_t *errp, uint64_t *accp,
    uint64_t *pipesp)
{
	nng_stat *ls;
	int       found = 0;

	if ((ls = guard_find(root, g->l)) == NULL) {
		return (false);
	}
	*errp = *accp = *pipesp = 0;
	for (nng_stat *st = nng_stat_child(ls); st != NULL;
	     st           = nng_stat_next(st)) {
		const char *name = nng_stat_name(st);
		if (strcmp(name, "other") == 0 || strcmp(name, "oom") == 0) {
			*errp += nng_stat_value(st);
			found++;
		} else if (strcmp(name, "accept") == 0) {
			*accp = nng_stat_value(st);
			found++;
		} else if (strcmp(name, "pipes") == 0) {
			*pipesp = nng_stat_value(st);
		}
	}
	return (found == 3);
}

// guard_fails turns one look's counts into g->fails, the errors that
// closed connections do not explain (see struct guard), and returns it.
static uint64_t
guard_fails(guard *g, uint64_t errors, uint64_t accepts, uint64_t pipes)
{
	uint64_t closed = accepts >= pipes ? accepts - pipes : 0;
	uint64_t d_err  = errors - g->seen_errors;
	uint64_t d_cl   = closed - g->seen_closed;

	if (errors < g->seen_errors || closed < g->seen_closed) {
		d_err = d_cl = 0; // a new listener: counts start again
	}
	g->seen_errors = errors;
	g->seen_closed = closed;
	if (d_err > d_cl) {
		g->fails += d_err - d_cl;
	}
	return (g->fails);
}

// guard_look decides, from one look at the statistics, whether g's
// listener has stopped: its errors grew (a suspicion), and it accepted
// nothing for GUARD_CONFIRM_MS after.
static bool
guard_look(nng_stat *root, guard *g, int64_t now)
{
	uint64_t errors;
	uint64_t accepts;
	uint64_t pipes;

	if (!guard_counts(root, g, &errors, &accepts, &pipes)) {
		return (false);
	}
	errors = guard_fails(g, errors, accepts, pipes);
	if (g->suspect) {
		if (accepts != g->accepts) {
			// It accepted since the suspicion began; if it also
			// failed again meanwhile, the order is unknown:
			// suspect it afresh from now rather than lose that
			// failure.
			g->suspect    = errors != g->errors;
			g->suspect_us = now;
			g->accepts    = accepts;
			g->errors     = errors;
			return (false);
		}
		return (
		    now - g->suspect_us >= (int64_t) GUARD_CONFIRM_MS * 1000);
	}
	if (errors == g->errors) {
		return (false);
	}
	g->suspect    = true;
	g->suspect_us = now;
	g->accepts    = accepts;
	g->errors     = errors;
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
	g->l           = l;
	g->errors      = 0; // a new listener's counts start at zero
	g->fails       = 0;
	g->seen_errors = 0;
	g->seen_closed = 0;
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
		log_warn("%s: the listener on %s accepted nothing for %d ms "
		         "after a failed handshake (nng 1.5.2's listener "
		         "bug, or no descriptors or memory); started a new "
		         "one (%" PRIu64 " time%s since the last such line, "
		         "%" PRIu64 " in all)",
		    g->what, g->url, GUARD_CONFIRM_MS, g->unlogged,
		    g->unlogged == 1 ? "" : "s", g->restarts);
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
	free(g->url);
	free(g);
	if (watch.list == NULL && watch.inited) {
		uv_timer_stop(&watch.timer);
		watch.inited  = false;
		watch.closing = true;
		uv_close((uv_handle_t *) &watch.timer, watch_closed);
	}
}
