/* The machine's SGEMM roof: GFLOP/s of large square OpenBLAS SGEMMs on the given number of
 * threads (default: all cores), best of several runs, and the OpenBLAS core in use.
 *
 *   sgemm_roof [threads] [n] [seconds]
 *
 * With seconds, the rate is instead the mean over as many SGEMMs as fit in that time: what
 * the cores sustain over a stretch as long as a benchmark's, which on a shared virtual
 * machine can be well below the best moment. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/blas.h"
#include "core/pool.h"
#include "drivers/cpu.h"

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : ct_cpu_count();
  int n = argc > 2 ? atoi(argv[2]) : 2048;
  ct_blas_set_threads(threads);
  float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4), *c = malloc((size_t)n * n * 4);
  if (!a || !b || !c) return 1;
  for (size_t i = 0; i < (size_t)n * n; i++) a[i] = b[i] = c[i] = (float)(i % 11) * 0.1f;
  ct_sgemm(0, 0, n, n, n, 1.0f, a, b, 0.0f, c);
  const double secs = argc > 3 ? atof(argv[3]) : 0;
  if (secs > 0) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double dt = 0;
    int reps = 0;
    do {
      ct_sgemm(0, 0, n, n, n, 1.0f, a, b, 0.0f, c);
      reps++;
      clock_gettime(CLOCK_MONOTONIC, &t1);
      dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    } while (dt < secs);
    printf("sgemm_roof: core=%s threads=%d n=%d sustained=%.1fs gflops=%.1f\n", ct_blas_core_name(), threads, n, dt,
           2.0 * n * (double)n * n * reps / dt / 1e9);
    free(a);
    free(b);
    free(c);
    return 0;
  }
  double best = 1e30;
  for (int r = 0; r < 5; r++) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ct_sgemm(0, 0, n, n, n, 1.0f, a, b, 0.0f, c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (dt < best) best = dt;
  }
  printf("sgemm_roof: core=%s threads=%d n=%d gflops=%.1f\n", ct_blas_core_name(), threads, n,
         2.0 * n * (double)n * n / best / 1e9);
  free(a);
  free(b);
  free(c);
  return 0;
}
