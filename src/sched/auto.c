#include "sched/auto.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What a partition costs besides its work: waking a thread, its driver calls' fixed part. */
#define PART_OVERHEAD_S 30e-6
/* The previous layer's split is kept (no copies between the two) unless another is predicted
 * faster by more than this fraction: shares that differ by a few images gain less than the
 * copies and the imbalance of the prediction itself. */
#define STICKY 0.10

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

/* Seconds per image of rq's layer on d, its inputs already there. */
static double per_image(const ct_plan_request *rq, const ct_driver *d) {
  double gflops = 1, gbytes = 1;
  d->ops->calibration(d, &gflops, &gbytes);
  const double N = rq->N > 0 ? rq->N : 1;
  double t = rq->flops / N / (gflops * 1e9) + rq->bytes / N / (gbytes * 1e9);
  return t > 1e-12 ? t : 1e-12;
}

/* Images of [b, e) that the previous layer left on d's memory. */
static int images_there(const ct_plan *prev, const ct_driver *d, int b, int e) {
  if (!prev) return e - b;
  int there = 0;
  for (int i = 0; i < prev->n; i++) {
    const ct_part *p = &prev->part[i];
    if (p->d->mem != d->mem) continue;
    int lo = p->whole ? 0 : p->begin, hi = p->whole ? e : p->end;
    lo = lo > b ? lo : b;
    hi = hi < e ? hi : e;
    if (hi > lo) there += hi - lo;
  }
  return there;
}

double ct_auto_predict(const ct_placement *pl, const ct_plan_request *rq, const ct_plan_spec *spec,
                       const double *share) {
  int size[CT_MAX_PARTITIONS];
  ct_plan_split(rq->N, spec->n, share, size);
  double worst = 0;
  for (int i = 0, b = 0; i < spec->n; b += size[i], i++) {
    if (!size[i]) continue;
    const ct_driver *d = pl->driver[spec->driver[i]];
    const int fetch = size[i] - images_there(rq->prev, d, b, b + size[i]);
    double t = size[i] * per_image(rq, d) + fetch * rq->copy_bytes / ct_auto_link_rate(d) + PART_OVERHEAD_S;
    if (t > worst) worst = t;
  }
  return worst;
}

/* The previous layer's split as shares of this layer's spec, when it has the same batch and
 * the same devices in the same order; false otherwise. */
static bool prev_shares(const ct_plan_request *rq, const ct_placement *pl, const ct_plan_spec *spec, double *share) {
  const ct_plan *prev = rq->prev;
  if (!prev || prev->N != rq->N || prev->n != spec->n) return false;
  for (int i = 0; i < spec->n; i++) {
    if (prev->part[i].d != pl->driver[spec->driver[i]]) return false;
    share[i] = (double)(prev->part[i].end - prev->part[i].begin) / rq->N;
  }
  return true;
}

void ct_auto_shares(const ct_placement *pl, const ct_plan_request *rq, const ct_plan_spec *spec, double *share) {
  /* proportional to throughput (CcT's FLOP-proportional shares) */
  double total = 0;
  for (int i = 0; i < spec->n; i++) total += share[i] = 1.0 / per_image(rq, pl->driver[spec->driver[i]]);
  for (int i = 0; i < spec->n; i++) share[i] /= total;
  if (spec->n < 2 || rq->N <= 0) return;
  double best_t = ct_auto_predict(pl, rq, spec, share);
  double cand[CT_MAX_PARTITIONS];
  if (prev_shares(rq, pl, spec, cand)) {
    double t = ct_auto_predict(pl, rq, spec, cand);
    if (t <= best_t * (1 + STICKY)) {
      memcpy(share, cand, (size_t)spec->n * sizeof *share);
      best_t = t;
    }
  }
  /* one device alone, when the prediction says it finishes first */
  for (int i = 0; i < spec->n; i++) {
    for (int k = 0; k < spec->n; k++) cand[k] = k == i;
    double t = ct_auto_predict(pl, rq, spec, cand);
    if (t < best_t) {
      memcpy(share, cand, (size_t)spec->n * sizeof *share);
      best_t = t;
    }
  }
}
