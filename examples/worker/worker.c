// worker.c: an example worker. It serves the handler "upper": a task's
// payload is a msgpack map {"text": str}; the result is {"text": the same
// text in capitals}. A task whose text is empty fails without a retry.
//
//   example-worker [URL]      (default: $TASKBROKER_URL, else the broker's
//                              default endpoint)
//
// It shows the event-loop way of waiting: one thread, poll(2) on
// tb_worker_fd and on a signal pipe, tb_worker_try_next until nothing is
// ready. SIGTERM or SIGINT stop it gracefully: tb_worker_stop lets the
// job in hand finish (5 s at most) and hands back what was not started.
//
// Threads: one (the library has its own). Ownership: each job is ours from
// tb_worker_try_next until tb_job_complete or tb_job_fail.

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>
#include <taskbroker.h>

static int sig_pipe[2] = { -1, -1 };

static void
on_signal(int sig)
{
	char c = (char) sig;

	(void) !write(sig_pipe[1], &c, 1);
}

// upper runs one job: {"text": s} -> {"text": S}.
static int
upper(tb_job *j)
{
	size_t                len;
	const void           *p = tb_job_payload(j, &len);
	msgpack_unpacked      up;
	msgpack_sbuffer       sb;
	msgpack_packer        pk;
	const msgpack_object *text = NULL;
	int                   rv;

	msgpack_unpacked_init(&up);
	if (p != NULL &&
	    msgpack_unpack_next(&up, p, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
	    up.data.type == MSGPACK_OBJECT_MAP) {
		for (uint32_t i = 0; i < up.data.via.map.size; i++) {
			const msgpack_object_kv *kv = &up.data.via.map.ptr[i];
			if (kv->key.type == MSGPACK_OBJECT_STR &&
			    kv->key.via.str.size == 4 &&
			    memcmp(kv->key.via.str.ptr, "text", 4) == 0 &&
			    kv->val.type == MSGPACK_OBJECT_STR) {
				text = &kv->val;
			}
		}
	}
	if (text == NULL || text->via.str.size == 0) {
		msgpack_unpacked_destroy(&up);
		// Retrying would not help: the payload stays what it is.
		return (
		    tb_job_fail(j, "payload needs a non-empty \"text\"", 0));
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	msgpack_pack_str(&pk, 4);
	msgpack_pack_str_body(&pk, "text", 4);
	msgpack_pack_str(&pk, text->via.str.size);
	for (uint32_t i = 0; i < text->via.str.size; i++) {
		char c = (char) toupper((unsigned char) text->via.str.ptr[i]);
		msgpack_pack_str_body(&pk, &c, 1);
	}
	msgpack_unpacked_destroy(&up);
	rv = tb_job_complete(j, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	return (rv);
}

int
main(int argc, char **argv)
{
	const char    *handlers[] = { "upper" };
	tb_worker_opts o          = TB_WORKER_OPTS_INIT;
	tb_worker     *w;
	struct pollfd  pfd[2];
	int            rv;

	o.handlers  = handlers;
	o.nhandlers = 1;
	o.slots     = 1; // one job at a time: this loop runs them itself
	o.name      = "example-worker";
	if (pipe(sig_pipe) != 0) {
		perror("pipe");
		return (1);
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	if ((rv = tb_worker_open(&w, argc > 1 ? argv[1] : NULL, &o)) !=
	    TB_OK) {
		fprintf(stderr, "example-worker: %s\n", tb_strerror(rv));
		return (1);
	}
	pfd[0].events = POLLIN;
	pfd[1].fd     = sig_pipe[0];
	pfd[1].events = POLLIN;
	(void) tb_worker_fd(w, &pfd[0].fd);
	fprintf(
	    stderr, "example-worker %d: serving 'upper'\n", (int) getpid());
	for (;;) {
		tb_job *j;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
			perror("poll");
			break;
		}
		if (pfd[1].revents & POLLIN) {
			break; // a signal: stop
		}
		// Readable: take every job that is ready.
		while (tb_worker_try_next(w, &j) == TB_OK) {
			tb_id id = tb_job_id(j);
			rv       = upper(j);
			fprintf(stderr, "example-worker: task %llu: %s\n",
			    (unsigned long long) id, tb_errname(rv));
		}
	}
	rv = tb_worker_stop(w, 5000);
	fprintf(stderr, "example-worker: stopped (%s)\n", tb_errname(rv));
	tb_worker_close(w);
	return (0);
}
