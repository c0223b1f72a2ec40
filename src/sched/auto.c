#include "sched/auto.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What a partition costs besides its work: waking a thread, its driver calls' fixed part. */
#define PART_OVERHEAD_S 30e-6

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static pthread_mutex_t link_mu = PTHREAD_MUTEX_INITIALIZER;
static double link_rate[CT_MAX_MEMS];

double ct_auto_link_rate(const ct_driver *d) {
  const ct_mem *m = d->mem;
  if (m->id == CT_MEM_HOST) return 1e15;
  pthread_mutex_lock(&link_mu);
  double r = link_rate[m->id];
  if (r <= 0) {
    /* 4 MB there and back, twice; the faster round counts */
    const size_t bytes = (size_t)4 << 20;
    void *host = malloc(bytes), *dev = m->alloc(m, bytes);
    r = 1e9; /* a guess when the measurement cannot run */
    if (host && dev) {
      memset(host, 0, bytes);
      double best = 0;
      for (int k = 0; k < 2; k++) {
        double t0 = now_s();
        if (m->upload(m, dev, host, bytes, NULL) || m->download(m, host, dev, bytes, NULL)) break;
        double t = now_s() - t0;
        if (t > 0 && (best == 0 || t < best)) best = t;
      }
      if (best > 0) r = 2.0 * (double)bytes / best;
    }
    if (dev) m->free(m, dev);
    free(host);
    link_rate[m->id] = r;
  }
  pthread_mutex_unlock(&link_mu);
  return r;
}

/* Seconds per image of rq's layer on d, copies of its inputs included when the previous layer
 * left none of them on d. */
static double per_image(const ct_plan_request *rq, const ct_driver *d) {
  double gflops = 1, gbytes = 1;
  d->ops->calibration(d, &gflops, &gbytes);
  const double N = rq->N > 0 ? rq->N : 1;
  double t = rq->kind == CT_WORK_GEMM ? rq->flops / N / (gflops * 1e9) + rq->bytes / N / (gbytes * 1e9)
                                       : rq->bytes / N / (gbytes * 1e9) + rq->flops / N / (gflops * 1e9);
  bool there = !rq->prev;
  for (int i = 0; rq->prev && i < rq->prev->n; i++) there |= rq->prev->part[i].d->mem == d->mem;
  if (!there) t += rq->copy_bytes / ct_auto_link_rate(d);
  return t > 1e-12 ? t : 1e-12;
}

double ct_auto_predict(const ct_placement *pl, const ct_plan_request *rq, const ct_plan_spec *spec,
                       const double *share) {
  double worst = 0, total = 0;
  for (int i = 0; i < spec->n; i++) total += share[i];
  for (int i = 0; i < spec->n; i++) {
    if (share[i] <= 0) continue;
    double t = share[i] / total * rq->N * per_image(rq, pl->driver[spec->driver[i]]) + PART_OVERHEAD_S;
    if (t > worst) worst = t;
  }
  return worst;
}

void ct_auto_shares(const ct_placement *pl, const ct_plan_request *rq, const ct_plan_spec *spec, double *share) {
  double total = 0;
  for (int i = 0; i < spec->n; i++) total += share[i] = 1.0 / per_image(rq, pl->driver[spec->driver[i]]);
  for (int i = 0; i < spec->n; i++) share[i] /= total;
  if (spec->n < 2) return;
  /* one device alone, when the prediction says it finishes first */
  const double mixed = ct_auto_predict(pl, rq, spec, share);
  int best = -1;
  double best_t = mixed;
  double one[CT_MAX_PARTITIONS];
  for (int i = 0; i < spec->n; i++) {
    for (int k = 0; k < spec->n; k++) one[k] = k == i;
    double t = ct_auto_predict(pl, rq, spec, one);
    if (t < best_t) best = i, best_t = t;
  }
  if (best >= 0)
    for (int k = 0; k < spec->n; k++) share[k] = k == best;
}
