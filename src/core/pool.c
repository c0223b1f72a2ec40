#include "core/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "core/status.h"

struct ct_pool {
  int size;
  pthread_t *threads;
  pthread_mutex_t mu;
  pthread_cond_t start, done;
  atomic_ulong generation; /* bumped for every region (release: the region's fields are set) */
  atomic_int pending;       /* workers (not counting the caller) still running this region */
  atomic_bool quit;
  int n;
  atomic_int next; /* the region's next unclaimed task */
  void (*fn)(void *, int);
  void *ctx;
};


/* Tasks are claimed one at a time, so a thread that finishes early (its core was faster, or
 * the hypervisor took the other's) takes the next task instead of waiting. What a task computes
 * depends only on its index, never on the thread that runs it. */
static void run_share(ct_pool *p) {
  for (int i; (i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed)) < p->n;) p->fn(p->ctx, i);
}

/* Waking a sleeping thread through the kernel takes tens of microseconds, and a net runs a
 * region per layer and pass (LeNet: about 30 in 10 ms); so a thread that runs out of work
 * first watches for the next region (or for the last task's end) for up to SPIN_NS before it
 * sleeps. Short enough that a core shared with other processes loses little; and not at all
 * while more of this process's pool threads are awake than the machine has cores (worker
 * groups as threads, each net with its own pool), where a spinning thread would hold a core
 * another needs. Pools whose threads sleep (a solver's test net during training) don't count. */
#define SPIN_NS 50000L

static atomic_int awake; /* pool threads not asleep on a condition variable, callers in a region included */
static atomic_int cores; /* ct_cpu_count(), once */

static long elapsed_ns(const struct timespec *t0) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (t.tv_sec - t0->tv_sec) * 1000000000L + (t.tv_nsec - t0->tv_nsec);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* Spins until done(p, arg) or SPIN_NS pass; true if done. */
static bool spin_until(ct_pool *p, bool (*done)(ct_pool *, unsigned long), unsigned long arg) {
  if (atomic_load_explicit(&awake, memory_order_relaxed) > atomic_load_explicit(&cores, memory_order_relaxed))
    return done(p, arg);
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (unsigned i = 1;; i++) {
    if (done(p, arg)) return true;
    cpu_relax();
    if (i % 64 == 0 && elapsed_ns(&t0) > SPIN_NS) return done(p, arg);
  }
}

static bool region_started(ct_pool *p, unsigned long seen) {
  return atomic_load_explicit(&p->quit, memory_order_acquire) ||
         atomic_load_explicit(&p->generation, memory_order_acquire) != seen;
}

static bool workers_done(ct_pool *p, unsigned long unused) {
  (void)unused;
  return atomic_load_explicit(&p->pending, memory_order_acquire) == 0;
}

/* Blocks on cv (under p->mu) until done(p, arg), counted as asleep meanwhile. */
static void sleep_until(ct_pool *p, pthread_cond_t *cv, bool (*done)(ct_pool *, unsigned long), unsigned long arg) {
  atomic_fetch_sub_explicit(&awake, 1, memory_order_relaxed);
  pthread_mutex_lock(&p->mu);
  while (!done(p, arg)) pthread_cond_wait(cv, &p->mu);
  pthread_mutex_unlock(&p->mu);
  atomic_fetch_add_explicit(&awake, 1, memory_order_relaxed);
}

static void *worker(void *arg) {
  ct_pool *p = arg;
  unsigned long seen = 0;
  atomic_fetch_add_explicit(&awake, 1, memory_order_relaxed);
  for (;;) {
    if (!spin_until(p, region_started, seen)) sleep_until(p, &p->start, region_started, seen);
    if (atomic_load_explicit(&p->quit, memory_order_acquire)) break;
    seen = atomic_load_explicit(&p->generation, memory_order_acquire);
    run_share(p);
    if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
      pthread_mutex_lock(&p->mu); /* the caller may be asleep: it checks pending under mu */
      pthread_cond_signal(&p->done);
      pthread_mutex_unlock(&p->mu);
    }
  }
  atomic_fetch_sub_explicit(&awake, 1, memory_order_relaxed);
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
  atomic_init(&p->generation, 0);
  atomic_init(&p->pending, 0);
  atomic_init(&p->quit, false);
  atomic_init(&p->next, 0);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->start, NULL);
  pthread_cond_init(&p->done, NULL);
  p->threads = calloc((size_t)nthreads, sizeof *p->threads);
  if (!p->threads) {
    ct_pool_free(p);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  for (int i = 1; i < nthreads; i++) {
    if (pthread_create(&p->threads[i], NULL, worker, p) != 0) {
      p->size = i;
      ct_pool_free(p);
      return ct_fail(err, CT_EINTERNAL, "cannot start worker thread %d", i);
    }
  }
  atomic_store_explicit(&cores, ct_cpu_count(), memory_order_relaxed);
  *out = p;
  return CT_OK;
}

void ct_pool_free(ct_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  atomic_store_explicit(&p->quit, true, memory_order_release);
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
  atomic_fetch_add_explicit(&awake, 1, memory_order_relaxed);
  pthread_mutex_lock(&p->mu);
  p->n = n;
  p->fn = fn;
  p->ctx = ctx;
  atomic_store_explicit(&p->next, 0, memory_order_relaxed);
  atomic_store_explicit(&p->pending, p->size - 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&p->generation, 1, memory_order_release); /* publishes n, fn, ctx */
  pthread_cond_broadcast(&p->start);
  pthread_mutex_unlock(&p->mu);
  run_share(p);
  if (!spin_until(p, workers_done, 0)) sleep_until(p, &p->done, workers_done, 0);
  atomic_fetch_sub_explicit(&awake, 1, memory_order_relaxed);
}
