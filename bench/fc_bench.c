/* A fully-connected layer's forward GEMM, y = x W^T at batch 32, as cortado runs it: the output
 * columns split between the partition threads, each a single-threaded GEMM. OpenBLAS's SGEMM
 * against the thin kernel (src/drivers/cpu/thin_gemm.c), alternating call by call in one
 * process, so that the host's drift hits both alike; prints each side's median and the ratio
 * of the medians, per layer and thread count.
 *
 *   fc_bench [rounds] [threads]        (default 15 rounds, threads 1 and all cores)
 *
 * Run it with the OpenBLAS core cortado runs (the `cortado time` line "OpenBLAS core: ..."): on
 * a CPU OpenBLAS 0.3.21 does not know, cortado restarts itself with the core that serves it, and
 * this program does not; e.g. OPENBLAS_CORETYPE=SkylakeX. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "core/blas.h"
#include "core/pool.h"
#include "drivers/cpu.h"
#include "drivers/cpu/kernels.h"

typedef struct job {
  int M, N, K, parts;
  const float *x, *w;
  float *y;
  int thin;
  int took; /* parts the thin kernel took */
} job;

static void part(void *ctx, int i) {
  job *j = ctx;
  /* the split of the InnerProduct layer: at multiples of 16 columns */
  int n0 = (int)((long long)j->N * i / j->parts) & ~15;
  int n1 = i + 1 == j->parts ? j->N : (int)((long long)j->N * (i + 1) / j->parts) & ~15;
  const float *w = j->w + (size_t)n0 * j->K;
  float *y = j->y + n0;
  if (j->thin && ct_cpu_gemm_thin(false, true, j->M, n1 - n0, j->K, 1.0f, j->x, j->K, w, j->K, 0.0f, y, j->N)) {
    __atomic_fetch_add(&j->took, 1, __ATOMIC_RELAXED);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->M, n1 - n0, j->K, 1.0f, j->x, j->K, w, j->K, 0.0f, y, j->N);
}

int main(int argc, char **argv) {
  const int rounds = argc > 1 ? atoi(argv[1]) : 15;
  const int maxthreads = argc > 2 ? atoi(argv[2]) : ct_cpu_count();
  if (rounds < 1 || rounds > 1000 || maxthreads < 1 || maxthreads > 64) {
    fprintf(stderr, "usage: fc_bench [rounds 1-1000] [threads 1-64]\n");
    return 2;
  }
  static const struct {
    const char *name;
    int N, K;
  } layers[] = {{"caffenet fc6", 4096, 9216}, {"caffenet fc7", 4096, 4096}, {"caffenet fc8", 1000, 4096}};
  const int M = 32;
  ct_blas_set_threads(1);
  printf("fc_bench: OpenBLAS core %s, batch %d, %d rounds, each side's median\n", ct_blas_core_name(), M, rounds);
  if (strcmp(ct_blas_core_name(), "Prescott") == 0)
    printf("fc_bench: Prescott is OpenBLAS's generic fallback; set OPENBLAS_CORETYPE to the core cortado uses\n");
  for (int threads = 1; threads <= maxthreads; threads = threads == maxthreads ? maxthreads + 1 : maxthreads) {
    ct_pool *pool = NULL;
    ct_error err = {0};
    if (ct_pool_create(threads, &pool, &err) != CT_OK) {
      fprintf(stderr, "fc_bench: %s\n", err.msg);
      return 1;
    }
    for (size_t l = 0; l < sizeof layers / sizeof *layers; l++) {
      const int N = layers[l].N, K = layers[l].K;
      float *x = malloc((size_t)M * K * sizeof(float)), *w = malloc((size_t)N * K * sizeof(float));
      float *y0 = malloc((size_t)M * N * sizeof(float)), *y1 = malloc((size_t)M * N * sizeof(float));
      double *t0 = malloc((size_t)rounds * sizeof(double)), *t1 = malloc((size_t)rounds * sizeof(double));
      if (!x || !w || !y0 || !y1 || !t0 || !t1) return 1;
      for (size_t i = 0; i < (size_t)M * K; i++) x[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
      for (size_t i = 0; i < (size_t)N * K; i++) w[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
      job jb = {M, N, K, threads, x, w, y0, 0, 0}, jt = {M, N, K, threads, x, w, y1, 1, 0};
      ct_pool_run(pool, threads, part, &jb); /* warm-up: pages, caches, OpenBLAS's buffers */
      ct_pool_run(pool, threads, part, &jt);
      jt.took = 0;
      for (int r = 0; r < rounds; r++) {
        double a = bench_now();
        ct_pool_run(pool, threads, part, &jb);
        double b = bench_now();
        ct_pool_run(pool, threads, part, &jt);
        double c = bench_now();
        t0[r] = b - a, t1[r] = c - b;
      }
      double worst = 0, scale = 1;
      for (size_t i = 0; i < (size_t)M * N; i++) {
        double d = y0[i] - y1[i];
        worst = d > worst ? d : -d > worst ? -d : worst;
        scale = y0[i] > scale ? y0[i] : -y0[i] > scale ? -y0[i] : scale;
      }
      const double m0 = bench_quantile(t0, rounds, 0.5), m1 = bench_quantile(t1, rounds, 0.5), flop = 2.0 * M * N * K;
      printf("%-13s %d thread%s  OpenBLAS %7.2f ms %6.1f GFLOP/s   thin %7.2f ms %6.1f GFLOP/s   %.2fx%s"
             "   max diff %.1e\n",
             layers[l].name, threads, threads > 1 ? "s" : " ", m0 * 1e3, flop / m0 / 1e9, m1 * 1e3, flop / m1 / 1e9,
             m0 / m1, jt.took == threads * rounds ? "" : " (thin kernel declined: OpenBLAS both sides)",
             worst / scale);
      free(x), free(w), free(y0), free(y1), free(t0), free(t1);
    }
    ct_pool_free(pool);
  }
  return 0;
}
