#include "core/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/status.h"

struct ct_pool {
  int size;
  pthread_t *threads;
  pthread_mutex_t mu;
  pthread_cond_t start, done;
  unsigned long generation; /* bumped for every region */
  int pending;              /* workers (not counting the caller) still running this region */
  bool quit;
  int n;
  atomic_int next; /* the region's next unclaimed task */
  void (*fn)(void *, int);
  void *ctx;
};

typedef struct worker_arg {
  ct_pool *p;
  int id;
} worker_arg;

/* Tasks are claimed one at a time, so a thread that finishes early (its core was faster, or
 * the hypervisor took the other's) takes the next task instead of waiting. What a task computes
 * depends only on its index, never on the thread that runs it. */
static void run_share(ct_pool *p, int id) {
  (void)id;
  for (int i; (i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed)) < p->n;) p->fn(p->ctx, i);
}

static void *worker(void *arg) {
  worker_arg *w = arg;
  ct_pool *p = w->p;
  int id = w->id;
  free(w);
  unsigned long seen = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->quit && p->generation == seen) pthread_cond_wait(&p->start, &p->mu);
    if (p->quit) break;
    seen = p->generation;
    pthread_mutex_unlock(&p->mu);
    run_share(p, id);
    pthread_mutex_lock(&p->mu);
    if (--p->pending == 0) pthread_cond_signal(&p->done);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

int ct_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

ct_status ct_pool_create(int nthreads, ct_pool **out, ct_error *err) {
  *out = NULL;
  if (nthreads < 1 || nthreads > 1024)
    return ct_fail(err, CT_EINVAL, "a thread pool needs 1 to 1024 threads, got %d", nthreads);
  ct_pool *p = calloc(1, sizeof *p);
  if (!p) return ct_fail(err, CT_ENOMEM, "out of memory");
  p->size = nthreads;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->start, NULL);
  pthread_cond_init(&p->done, NULL);
  p->threads = calloc((size_t)nthreads, sizeof *p->threads);
  if (!p->threads) {
    ct_pool_free(p);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  for (int i = 1; i < nthreads; i++) {
    worker_arg *w = malloc(sizeof *w);
    if (!w) {
      p->size = i;
      ct_pool_free(p);
      return ct_fail(err, CT_ENOMEM, "out of memory");
    }
    w->p = p;
    w->id = i;
    if (pthread_create(&p->threads[i], NULL, worker, w) != 0) {
      free(w);
      p->size = i;
      ct_pool_free(p);
      return ct_fail(err, CT_EINTERNAL, "cannot start worker thread %d", i);
    }
  }
  *out = p;
  return CT_OK;
}

void ct_pool_free(ct_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->quit = true;
  pthread_cond_broadcast(&p->start);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->size; i++)
    if (p->threads) pthread_join(p->threads[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->start);
  pthread_cond_destroy(&p->done);
  free(p->threads);
  free(p);
}

int ct_pool_size(const ct_pool *p) { return p ? p->size : 1; }

void ct_pool_run(ct_pool *p, int n, void (*fn)(void *ctx, int i), void *ctx) {
  if (!p || p->size == 1 || n <= 1) {
    for (int i = 0; i < n; i++) fn(ctx, i);
    return;
  }
  pthread_mutex_lock(&p->mu);
  p->n = n;
  p->fn = fn;
  p->ctx = ctx;
  atomic_store_explicit(&p->next, 0, memory_order_relaxed);
  p->pending = p->size - 1;
  p->generation++;
  pthread_cond_broadcast(&p->start);
  pthread_mutex_unlock(&p->mu);
  run_share(p, 0);
  pthread_mutex_lock(&p->mu);
  while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
}
