// loop.c: the loop's lifecycle: open (with recovery at start), run, close;
// the async wake-ups from the store and the pool, and the prepare pass.
// Everything here runs on the loop thread; see brokerimpl.h for the files
// that do the rest and loop.h for the design.

#include <inttypes.h>
#include <stdlib.h>
#include <unistd.h>

#include "brokerimpl.h"
#include "handlers/http.h"
#include "handlers/plugins.h"
#include "handlers/sqlite.h"
#include "log.h"
#include "ops/ops.h"
#include "util.h"

// loop_store_async is woken by the store writer after each commit.
static void
loop_store_async(uv_async_t *a)
{
	sop_complete_all(a->data);
}

// loop_pool_async is woken by a worker after each pool run.
static void
loop_pool_async(uv_async_t *a)
{
	broker   *b = a->data;
	pool_job *j;
	pool_job *next;

	for (j = pool_take_done(b->pl); j != NULL; j = next) {
		next = j->next;
		attempt_run_done((run *) j);
	}
}

// loop_wake_store is the store's notify; writer thread.
static void
loop_wake_store(void *arg)
{
	uv_async_send(arg);
}

// loop_wake_pool is the pool's notify; worker thread. A worker abandoned
// at shutdown may finish after the loop has closed its async; it must not
// touch it then.
static void
loop_wake_pool(void *arg)
{
	broker *b = arg;

	if (!atomic_load(&b->pool_gone)) {
		uv_async_send(&b->pool_async);
	}
}

// loop_prepare runs before the loop waits for I/O: the work that requests,
// completions and timers of this pass asked for, done once.
static void
loop_prepare(uv_prepare_t *p)
{
	broker *b = p->data;

	if (b->shutdown_why != NULL) {
		// Asked for by a request whose reply has now been sent.
		shutdown_begin(b, b->shutdown_why);
		b->shutdown_why = NULL;
	}
	if (b->need_dispatch) {
		attempt_dispatch(b);
	}
	if (b->worker_flush) {
		worker_flush(b);
	}
	if (b->check_drain) {
		held_drain_check(b);
	}
	shutdown_check(b);
	if (b->prune_more && b->prunes == 0) {
		prune_pass(b);
	}
	attempt_arm_due(b);
}

// ---- recovery at start ----------------------------------------------------

static int
loop_recover_cb(void *arg, store_rec *r)
{
	broker *b = arg;
	task   *t;

	if ((t = task_from_rec(b, r)) == NULL) {
		return (TB_ENOMEM);
	}
	task_index(b, t);
	if (t->forever) {
		t->q->forever++;
	}
	if (t->state == TB_STATE_RUNNING) {
		return (TB_OK); // interrupted: see loop_interrupt_all
	}
	if (task_push(b, t, util_now_us()) != 0) {
		return (TB_ENOMEM);
	}
	return (TB_OK);
}

static int
loop_queue_counts_cb(void *arg, const char *name, int state, uint64_t n)
{
	queue *q = queue_get(arg, name);

	if (q == NULL) {
		return (TB_ENOMEM);
	}
	if (state >= 0 && state <= TB_STATE_CANCELLED) {
		q->counts[state] = n;
	}
	return (TB_OK);
}

static int
loop_queue_paused_cb(void *arg, const char *name, bool paused)
{
	queue *q = queue_get(arg, name);

	if (q == NULL) {
		return (TB_ENOMEM);
	}
	q->paused = paused;
	if (paused) {
		log_info("queue %s: paused (as it was left)", name);
	}
	return (TB_OK);
}

static int
loop_schedule_cb(void *arg, store_sched *sc)
{
	return (periodic_load(arg, sc));
}

// loop_interrupt_all ends, as interrupted, the attempt of every task the
// store says is running: it belongs to an earlier run of the broker, which
// died during it (a clean stop leaves none running). Runs once the figures
// are loaded, which it adjusts; the writes go out when the store starts.
static void
loop_interrupt_all(broker *b)
{
	task    *t;
	task    *tmp;
	uint64_t n = 0, quarantined = 0;

	HASH_ITER (hh, b->by_id, t, tmp) {
		if (t->state != TB_STATE_RUNNING) {
			continue;
		}
		attempt_interrupted(b, t, "the broker stopped");
		n++;
		quarantined += t->state == TB_STATE_DEAD;
	}
	if (n > 0) {
		log_warn("store: recovery: %" PRIu64 " task(s) were running "
		         "when the broker stopped: %" PRIu64
		         " pending again, %" PRIu64 " quarantined",
		    n, n - quarantined, quarantined);
	}
}

// loop_recover loads what an earlier run left: unfinished tasks (a task
// that was running is interrupted by definition), queue figures and flags,
// schedules.
static int
loop_recover(broker *b, const char *path)
{
	uint64_t max_id = 0;
	int      rv;

	if ((rv = store_recover(
	         b->st, &max_id, b->counts, loop_recover_cb, b)) != TB_OK) {
		log_err("store: recovery of %s failed", path);
		return (rv);
	}
	b->next_id = max_id + 1;
	log_info("store: %s: %" PRIu64 " task(s) to run from an earlier "
	         "start, next id %" PRIu64,
	    path, (uint64_t) HASH_CNT(hh, b->by_id), b->next_id);
	if ((rv = store_queue_counts(b->st, loop_queue_counts_cb, b)) !=
	        TB_OK ||
	    (rv = store_load_queues(b->st, loop_queue_paused_cb, b)) !=
	        TB_OK ||
	    (rv = store_load_schedules(b->st, loop_schedule_cb, b)) != TB_OK) {
		log_err("store: cannot load queues and schedules of %s", path);
		return (rv);
	}
	loop_interrupt_all(b);
	return (TB_OK);
}

// ---- open / run / close ---------------------------------------------------

// loop_admin_group resolves --admin-group (a name or a number). Returns
// TB_OK or TB_EINVAL after logging why.
static int
loop_admin_group(broker *b)
{
	const char *name = b->cfg->admin_group;

	b->admin_gid = -1;
	if (name != NULL && name[0] != '\0' &&
	    util_group_id(name, &b->admin_gid) != 0) {
		log_err("--admin-group %s: no such group", name);
		return (TB_EINVAL);
	}
	return (TB_OK);
}

// loop_init_handles initialises the loop's own handles.
static void
loop_init_handles(broker *b)
{
	uv_async_init(&b->loop, &b->store_async, loop_store_async);
	uv_async_init(&b->loop, &b->pool_async, loop_pool_async);
	uv_timer_init(&b->loop, &b->due_timer);
	uv_timer_init(&b->loop, &b->shutdown_timer);
	uv_timer_init(&b->loop, &b->linger_timer);
	uv_timer_init(&b->loop, &b->sched_timer);
	uv_timer_init(&b->loop, &b->prune_timer);
	uv_prepare_init(&b->loop, &b->prepare);
	uv_signal_init(&b->loop, &b->sigterm);
	uv_signal_init(&b->loop, &b->sigint);
	b->store_async.data = b->pool_async.data = b;
	b->due_timer.data = b->shutdown_timer.data = b->linger_timer.data = b;
	b->sched_timer.data = b->prune_timer.data = b;
	b->prepare.data = b->sigterm.data = b->sigint.data = b;
}

int
broker_open(broker **bp, const config *cfg)
{
	broker      *b;
	char        *path = NULL;
	guard_access access;
	int          rv;

	if ((b = calloc(1, sizeof(*b))) == NULL) {
		return (TB_ENOMEM);
	}
	b->cfg = cfg;
	sched_heapq_init(&b->due, SCHED_DUE);
	b->start_mono = util_mono_us();
	if ((rv = uv_loop_init(&b->loop)) != 0) {
		log_err("loop: init: %s", uv_strerror(rv));
		free(b);
		return (TB_ESYSTEM);
	}

	if ((rv = loop_admin_group(b)) != TB_OK) {
		goto fail;
	}
	if (guard_access_parse(cfg->socket_mode, cfg->socket_group, &access) !=
	    0) {
		rv = TB_EINVAL;
		goto fail;
	}
	if (asprintf(&path, "%s/taskbroker.db", cfg->data_dir) < 0) {
		path = NULL;
		rv   = TB_ENOMEM;
		goto fail;
	}
	// Handlers first: built-ins, then sqlite and http, then plugins, so
	// a plugin cannot take a built-in's name. Any failure stops the start.
	if ((rv = handlers_init(&b->loop, cfg)) != TB_OK ||
	    (rv = sqlite_handler_init(cfg)) != TB_OK ||
	    (rv = http_handler_init(cfg)) != TB_OK ||
	    (rv = plugins_load(cfg)) != TB_OK) {
		goto fail;
	}
	if ((rv = store_open(&b->st, path, cfg->durability)) != TB_OK ||
	    (rv = worker_load(b)) != TB_OK ||
	    (rv = loop_recover(b, path)) != TB_OK) {
		goto fail;
	}
	loop_init_handles(b);
	if ((rv = store_start(b->st, loop_wake_store, &b->store_async)) !=
	        TB_OK ||
	    (rv = pool_open(&b->pl, cfg->workers, loop_wake_pool, b)) !=
	        TB_OK ||
	    (rv = remote_open(&b->rem, cfg)) != TB_OK ||
	    (rv = events_open(
	         &b->ev, &b->loop, cfg->events, &access, b->rem)) != TB_OK ||
	    (rv = srv_open(&b->sv, &b->loop, cfg->listen, &access, b->rem,
	         ops_dispatch, b)) != TB_OK ||
	    (rv = worker_start(b)) != TB_OK) {
		goto fail;
	}
	uv_prepare_start(&b->prepare, loop_prepare);
	prune_start(b);
	periodic_arm(b);
	uv_signal_start(&b->sigterm, shutdown_signal_cb, SIGTERM);
	uv_signal_start(&b->sigint, shutdown_signal_cb, SIGINT);
	b->need_dispatch = true;
	free(path);
	*bp = b;
	return (TB_OK);
fail:
	free(path);
	b->exit_code = 1;
	broker_close(b);
	return (rv);
}

int
broker_run(broker *b)
{
	log_info("taskbrokerd %s ready: requests on %s, events on %s, pid %d",
	    TB_VERSION_STR, b->cfg->listen, b->cfg->events, (int) getpid());
	notify_ready(b);
	uv_run(&b->loop, UV_RUN_DEFAULT);
	return (b->exit_code);
}

static void
loop_close_walk(uv_handle_t *h, void *arg)
{
	(void) arg;
	if (!uv_is_closing(h)) {
		uv_close(h, NULL);
	}
}

// loop_free_tables frees the tasks, queues and schedules, after the loop
// has stopped.
static void
loop_free_tables(broker *b)
{
	task     *t, *ttmp;
	queue    *q, *qtmp;
	periodic *s, *stmp;

	// The secondary indexes first: clearing one reads its head task.
	HASH_CLEAR(hh_sid, b->by_sid);
	HASH_CLEAR(hh_key, b->by_key);
	HASH_ITER (hh, b->by_id, t, ttmp) {
		submit_ackwaits_free(t);
		worker_job_discard(t->wjob);
		if (t->run != NULL && t->run->h->mode != HANDLER_POOL) {
			free(t->run->timer); // closed by the walk
			attempt_run_free(t->run);
		}
		HASH_DELETE(hh, b->by_id, t);
		task_free(t);
	}
	sched_heapq_fini(&b->due);
	HASH_ITER (hh, b->queues, q, qtmp) {
		HASH_DEL(b->queues, q);
		queue_free(q);
	}
	HASH_ITER (hh, b->scheds, s, stmp) {
		HASH_DEL(b->scheds, s);
		periodic_free(s);
	}
}

void
broker_close(broker *b)
{
	if (b == NULL) {
		return;
	}
	// Close all, stop all, then free.
	shutdown_teardown(b);
	// Whatever was opened on the loop (also on a failed start) closes
	// here, so the loop can be closed.
	uv_walk(&b->loop, loop_close_walk, NULL);
	uv_run(&b->loop, UV_RUN_DEFAULT);
	// Anything the store completed after the loop stopped is ours.
	if (b->st != NULL) {
		store_op *op = store_take_done(b->st);
		while (op != NULL) {
			store_op *next = op->next;
			sop      *w    = op->arg;
			if (w->sc != NULL) {
				submit_ctx_free(w->sc);
			}
			sop_discard(w);
			op = next;
		}
	}
	store_close(b->st);
	(void) uv_loop_close(&b->loop);
	loop_free_tables(b);
	worker_fini(b); // after the tasks, whose runs name the handlers
	handlers_fini();
	plugins_unload();
	free(b);
}
