/* worker.c - thread pool with completion on the event loop (see worker.h). */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../lib/log.h"

#define WORKERS_MAX 16

struct worker_pool {
	struct loop *loop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *todo_head, *todo_tail; /* FIFO: creates are answered in order */
	struct job *finished;		   /* LIFO, reversed when drained */
	bool stopping;
	int pending;
	int nthreads;
	pthread_t threads[WORKERS_MAX];
	int efd;
	struct loop_io io;
};

static struct job *take_job(struct worker_pool *p)
{
	pthread_mutex_lock(&p->mu);
	while (!p->todo_head && !p->stopping)
		pthread_cond_wait(&p->cv, &p->mu);
	struct job *j = p->todo_head;
	if (j) {
		p->todo_head = j->next;
		if (!p->todo_head)
			p->todo_tail = NULL;
	}
	pthread_mutex_unlock(&p->mu);
	return j;
}

static void wake_loop(struct worker_pool *p)
{
	uint64_t one = 1;
	while (write(p->efd, &one, sizeof one) < 0 && errno == EINTR)
		;
}

static void *worker_main(void *arg)
{
	struct worker_pool *p = arg;
	struct job *j;
	while ((j = take_job(p)) != NULL) {
		j->run(j);
		pthread_mutex_lock(&p->mu);
		j->next = p->finished;
		p->finished = j;
		pthread_mutex_unlock(&p->mu);
		wake_loop(p);
	}
	return NULL;
}

/* Runs the done() of every finished job, oldest first. */
static void drain_finished(struct worker_pool *p)
{
	pthread_mutex_lock(&p->mu);
	struct job *list = p->finished, *rev = NULL;
	p->finished = NULL;
	pthread_mutex_unlock(&p->mu);
	while (list) {
		struct job *n = list->next;
		list->next = rev;
		rev = list;
		list = n;
	}
	while (rev) {
		struct job *n = rev->next;
		p->pending--;
		rev->done(rev);
		rev = n;
	}
}

static void on_eventfd(void *arg, uint32_t events)
{
	struct worker_pool *p = arg;
	uint64_t v;
	while (read(p->efd, &v, sizeof v) < 0 && errno == EINTR)
		;
	drain_finished(p);
}

struct worker_pool *worker_pool_new(struct loop *l, int threads)
{
	struct worker_pool *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->loop = l;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->efd < 0 || loop_io_add(l, &p->io, p->efd, EPOLLIN, on_eventfd, p) < 0) {
		log_error("worker.init", "eventfd: %m");
		if (p->efd >= 0)
			close(p->efd);
		free(p);
		return NULL;
	}
	if (threads < 1)
		threads = 1;
	if (threads > WORKERS_MAX)
		threads = WORKERS_MAX;
	for (int i = 0; i < threads; i++) {
		if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
			log_error("worker.init", "pthread_create failed after %d thread(s)", i);
			break;
		}
		p->nthreads++;
	}
	return p;
}

void worker_submit(struct worker_pool *p, struct job *j)
{
	p->pending++;
	j->next = NULL;
	pthread_mutex_lock(&p->mu);
	if (p->stopping || p->nthreads == 0) {
		pthread_mutex_unlock(&p->mu);
		j->run(j);
		p->pending--;
		j->done(j);
		return;
	}
	if (p->todo_tail)
		p->todo_tail->next = j;
	else
		p->todo_head = j;
	p->todo_tail = j;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

int worker_pending(const struct worker_pool *p)
{
	return p->pending;
}

void worker_pool_free(struct worker_pool *p)
{
	if (!p)
		return;
	/* take_job hands out what is queued before it reports stopping, so
	 * every submitted job still runs. */
	pthread_mutex_lock(&p->mu);
	p->stopping = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	drain_finished(p);
	loop_io_del(p->loop, &p->io);
	close(p->efd);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p);
}
