/* Split's backward gradient sum (dx = dy0 + dy1) on a 51 MB blob, the size where Scale's
 * backward was measured at 4x off the bandwidth: the CPU driver's add against a plain scalar
 * loop (what -O2 made of the driver's add before it was written with vectors), alternating run
 * by run in one process; prints each side's median GB/s (three streams of n floats) and the
 * ratio. Single thread, as one Split partition runs.
 *
 *   split_sum_bench [rounds]     (default 15) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drivers/driver.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The loop -O2 leaves scalar (y may alias a or b). */
__attribute__((noinline)) static void scalar_add(size_t n, const float *a, const float *b, float *y) {
  for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  const int rounds = argc > 1 ? atoi(argv[1]) : 15;
  const size_t n = 51u * 1000 * 1000 / 4;
  float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *y = malloc(n * sizeof *y);
  double *ts = calloc((size_t)rounds, sizeof *ts), *tv = calloc((size_t)rounds, sizeof *tv);
  if (!a || !b || !y || !ts || !tv || rounds < 1) return 1;
  for (size_t i = 0; i < n; i++) {
    a[i] = (float)(i % 1000) * 0.001f;
    b[i] = (float)(i % 777) * 0.002f;
    y[i] = 0;
  }
  const ct_driver *d = ct_driver_cpu();
  for (int r = 0; r < rounds; r++) {
    double t0 = now();
    scalar_add(n, a, b, y);
    double t1 = now();
    d->ops->add(d, n, a, b, y);
    double t2 = now();
    ts[r] = t1 - t0;
    tv[r] = t2 - t1;
  }
  qsort(ts, (size_t)rounds, sizeof *ts, cmp);
  qsort(tv, (size_t)rounds, sizeof *tv, cmp);
  const double bytes = 3.0 * (double)n * sizeof(float);
  printf("split sum, %zu floats: scalar loop %.2f GB/s, driver add %.2f GB/s, ratio %.2f\n", n,
         bytes / ts[rounds / 2] / 1e9, bytes / tv[rounds / 2] / 1e9, ts[rounds / 2] / tv[rounds / 2]);
  free(a);
  free(b);
  free(y);
  free(ts);
  free(tv);
  return 0;
}
