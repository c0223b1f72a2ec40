#include "sched/partition.h"

#include <math.h>
#include <string.h>

#include "core/pool.h"
#include "drivers/cpu.h"

ct_status ct_partition_plan(const ct_layer *l, int N, ct_partition *p, ct_error *err) {
  const Caffe__LayerParameter *lp = l->lp;
  double share[CT_MAX_PARTITIONS];
  int n;
  if (lp && lp->n_partition) {
    if (lp->n_partition > CT_MAX_PARTITIONS)
      return ct_layer_fail(l, err, CT_EINVAL, "has %zu partitions; at most %d are supported", lp->n_partition,
                           CT_MAX_PARTITIONS);
    n = (int)lp->n_partition;
    double total = 0;
    bool all_shares = true;
    for (int i = 0; i < n; i++) {
      const Caffe__PartitionSpec *ps = lp->partition[i];
      if (ps->device && strcmp(ps->device, "cpu") != 0)
        return ct_layer_fail(l, err, CT_EUNSUPPORTED,
                             "partition %d names device \"%s\"; this build drives only \"cpu\" partitions", i,
                             ps->device);
      if (ps->has_share && !(ps->share > 0 && isfinite(ps->share)))
        return ct_layer_fail(l, err, CT_EINVAL, "partition %d has share %g; shares must be positive", i, ps->share);
      all_shares &= ps->has_share != 0;
      share[i] = ps->has_share ? ps->share : 1.0;
      total += share[i];
    }
    for (int i = 0; i < n; i++) share[i] = all_shares ? share[i] / total : 1.0 / n;
  } else {
    n = l->partitions > 0 ? l->partitions : 1;
    if (n > CT_MAX_PARTITIONS) n = CT_MAX_PARTITIONS;
    for (int i = 0; i < n; i++) share[i] = 1.0 / n;
  }
  if (n > N) {
    /* fewer images than partitions: one image each, equal shares */
    n = N > 0 ? N : 1;
    for (int i = 0; i < n; i++) share[i] = 1.0 / n;
  }
  /* largest remainder: sizes sum to N exactly */
  int given = 0;
  double rem[CT_MAX_PARTITIONS];
  for (int i = 0; i < n; i++) {
    double want = share[i] * N;
    p->size[i] = (int)floor(want);
    rem[i] = want - p->size[i];
    given += p->size[i];
  }
  while (given < N) {
    int best = 0;
    for (int i = 1; i < n; i++)
      if (rem[i] > rem[best]) best = i;
    p->size[best]++;
    rem[best] = -1;
    given++;
  }
  p->n = n;
  for (int i = 0, s = 0; i < n; i++) {
    p->start[i] = s;
    s += p->size[i];
  }
  return CT_OK;
}

int ct_partition_max(const ct_partition *p) {
  int m = 0;
  for (int i = 0; i < p->n; i++)
    if (p->size[i] > m) m = p->size[i];
  return m;
}

void ct_partition_run(ct_layer *l, const ct_partition *p, void (*fn)(void *ctx, int i), void *ctx) {
  if (p->n < 1) return;
  /* A net run on one partition leaves OpenBLAS its threads. A partitioned one never hands it
   * work, not even a GEMM too small to split (LeNet's ip2): OpenBLAS's threads would then spin
   * in sched_yield for a tenth of a second after each call, on the cores the next layers'
   * partitions run on. */
  if (p->n == 1 && ct_parallel_parts(l) <= 1) {
    fn(ctx, 0);
    return;
  }
  int saved = ct_blas_threads();
  ct_blas_set_threads(1);
  if (p->n == 1)
    fn(ctx, 0);
  else
    ct_pool_run(l->pool, p->n, fn, ctx);
  ct_blas_set_threads(saved);
}

int ct_parallel_parts(const ct_layer *l) {
  int n = l->partitions > 0 ? l->partitions : 1;
  return n > CT_MAX_PARTITIONS ? CT_MAX_PARTITIONS : n;
}

typedef struct pfor {
  size_t n, align;
  int parts;
  void (*fn)(void *ctx, int part, size_t begin, size_t end);
  void *ctx;
} pfor;

static void pfor_task(void *arg, int i) {
  const pfor *p = arg;
  size_t units = (p->n + p->align - 1) / p->align;
  size_t b = units * (size_t)i / (size_t)p->parts * p->align, e = units * (size_t)(i + 1) / (size_t)p->parts * p->align;
  if (e > p->n) e = p->n;
  if (b < e) p->fn(p->ctx, i, b, e);
}

void ct_parallel_for(ct_layer *l, size_t n, size_t align, void (*fn)(void *ctx, int part, size_t begin, size_t end),
                     void *ctx) {
  if (align == 0) align = 1;
  int parts = ct_parallel_parts(l);
  /* fewer than two units of work: not worth waking the workers */
  if (parts <= 1 || !l->pool || n < 2 * align) {
    fn(ctx, 0, 0, n);
    return;
  }
  pfor p = {n, align, parts, fn, ctx};
  ct_pool_run(l->pool, parts, pfor_task, &p);
}
