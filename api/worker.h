/*
 * worker.h - a small thread pool for the blocking backend calls.
 *
 * Starting, pausing or stopping a VMM takes from milliseconds to seconds and
 * blocks; the event loop must never wait for it. A job's run() executes on a
 * worker thread and must only touch the job's own data; its done() then runs
 * on the loop thread (woken through an eventfd), where it may use daemon
 * state and answer HTTP connections. Jobs are structs embedded in the
 * caller's objects, like loop watchers.
 */
#ifndef CUBE_API_WORKER_H
#define CUBE_API_WORKER_H

#include "../lib/loop.h"

struct job {
	void (*run)(struct job *j);  /* worker thread */
	void (*done)(struct job *j); /* loop thread, after run */
	struct job *next;
};

struct worker_pool;

struct worker_pool *worker_pool_new(struct loop *l, int threads);
void worker_submit(struct worker_pool *p, struct job *j);
/* Number of jobs submitted whose done() has not run yet. */
int worker_pending(const struct worker_pool *p);
/* Finishes every queued job (run, then done on the calling thread), joins
 * the threads and frees the pool. Jobs submitted from a done() meanwhile run
 * inline. */
void worker_pool_free(struct worker_pool *p);

#endif
