// pool.c: see pool.h.

#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include <taskbroker/defs.h>

#include "log.h"
#include "util.h"

struct pool {
	pthread_mutex_t mtx;  // protects everything below but threads/n
	pthread_cond_t  cv;   // workers wait here for jobs or stop
	pthread_cond_t  gone; // pool_stop waits here for workers to exit
	pool_job       *head; // queued, not started
	pool_job       *tail;
	pool_job       *done; // finished, for the loop
	pool_job       *done_tail;
	uint32_t        busy;    // queued + running
	int             running; // jobs inside fn
	int             alive;   // threads that have not exited
	bool            stop;
	void (*notify)(void *);
	void      *arg;
	pthread_t *threads;
	int        n;
};

static void *
pool_worker(void *argp)
{
	pool     *p = argp;
	pool_job *j;

	pthread_mutex_lock(&p->mtx);
	for (;;) {
		while (p->head == NULL && !p->stop) {
			pthread_cond_wait(&p->cv, &p->mtx);
		}
		if (p->stop) {
			break;
		}
		j       = p->head;
		p->head = j->next;
		if (p->head == NULL) {
			p->tail = NULL;
		}
		p->running++;
		pthread_mutex_unlock(&p->mtx);

		j->fn(j);

		pthread_mutex_lock(&p->mtx);
		p->running--;
		p->busy--;
		j->next = NULL;
		if (p->done_tail != NULL) {
			p->done_tail->next = j;
		} else {
			p->done = j;
		}
		p->done_tail = j;
		pthread_mutex_unlock(&p->mtx);
		p->notify(p->arg);
		pthread_mutex_lock(&p->mtx);
	}
	p->alive--;
	pthread_cond_broadcast(&p->gone);
	pthread_mutex_unlock(&p->mtx);
	return (NULL);
}

int
pool_open(pool **pp, int n, void (*notify)(void *arg), void *arg)
{
	pool *p;
	int   rv;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		return (TB_ENOMEM);
	}
	if ((p->threads = calloc((size_t) n, sizeof(pthread_t))) == NULL) {
		free(p);
		return (TB_ENOMEM);
	}
	pthread_mutex_init(&p->mtx, NULL);
	pthread_cond_init(&p->cv, NULL);
	pthread_cond_init(&p->gone, NULL);
	p->notify = notify;
	p->arg    = arg;
	for (int i = 0; i < n; i++) {
		if ((rv = util_thread_start(&p->threads[i], pool_worker, p)) !=
		    0) {
			log_err("pool: cannot start worker %d: %d", i, rv);
			p->n = i;
			pool_stop(p, 1000, NULL);
			pool_close(p);
			return (TB_ESYSTEM);
		}
		pthread_mutex_lock(&p->mtx);
		p->alive++;
		pthread_mutex_unlock(&p->mtx);
		p->n = i + 1;
	}
	*pp = p;
	return (TB_OK);
}

void
pool_submit(pool *p, pool_job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&p->mtx);
	if (p->tail != NULL) {
		p->tail->next = job;
	} else {
		p->head = job;
	}
	p->tail = job;
	p->busy++;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mtx);
}

pool_job *
pool_take_done(pool *p)
{
	pool_job *j;

	pthread_mutex_lock(&p->mtx);
	j            = p->done;
	p->done      = NULL;
	p->done_tail = NULL;
	pthread_mutex_unlock(&p->mtx);
	return (j);
}

uint32_t
pool_busy(pool *p)
{
	uint32_t n;

	pthread_mutex_lock(&p->mtx);
	n = p->busy;
	pthread_mutex_unlock(&p->mtx);
	return (n);
}

int
pool_stop(pool *p, int timeout_ms, pool_job **unrunp)
{
	struct timespec deadline;
	int             left;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}

	pthread_mutex_lock(&p->mtx);
	p->stop = true;
	if (unrunp != NULL) {
		*unrunp = p->head;
	}
	p->head = p->tail = NULL;
	pthread_cond_broadcast(&p->cv);
	while (p->alive > 0) {
		if (pthread_cond_timedwait(&p->gone, &p->mtx, &deadline) ==
		    ETIMEDOUT) {
			break;
		}
	}
	left = p->alive;
	pthread_mutex_unlock(&p->mtx);

	if (left == 0) {
		for (int i = 0; i < p->n; i++) {
			pthread_join(p->threads[i], NULL);
		}
		p->n = 0;
	} else {
		// A handler that ignores its cancel flag keeps its thread;
		// we cannot kill a thread safely, so it is left behind and
		// ends with the process.
		for (int i = 0; i < p->n; i++) {
			pthread_detach(p->threads[i]);
		}
		p->n = -1;
	}
	return (left);
}

void
pool_close(pool *p)
{
	if (p == NULL || p->n < 0) {
		return;
	}
	pthread_mutex_destroy(&p->mtx);
	pthread_cond_destroy(&p->cv);
	pthread_cond_destroy(&p->gone);
	free(p->threads);
	free(p);
}
