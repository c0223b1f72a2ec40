/* Helpers the C benchmarks in bench/ share: a monotonic clock, quantiles of a
 * sample, and the CPU time the hypervisor took from this machine (steal, from
 * /proc/stat). */
#ifndef CT_BENCH_H
#define CT_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "core/blas.h"

/* After a multi-threaded call, OpenBLAS's threads wait for the next one spinning in
 * sched_yield for about 2^28 cycles (a tenth of a second): in a benchmark that alternates
 * SGEMMs on all cores with cortado's passes, they spin through the start of every cortado turn,
 * on the cores its partitions run on (perf: 5% of LeNet's paired scaling run in the scheduler).
 * A partitioned training run never wakes them. OPENBLAS_THREAD_TIMEOUT=4 makes them sleep at
 * once; OpenBLAS reads it when it loads, so the benchmark starts itself again with it set
 * (unless the caller set it). */
static inline void bench_quiet_blas_threads(char **argv) {
  if (getenv("OPENBLAS_THREAD_TIMEOUT")) return;
  setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
  execv("/proc/self/exe", argv);
  /* no /proc: go on with the spinning threads */
}

/* seconds on the monotonic clock */
static inline double bench_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline int bench_cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Sorts v[0..n) and returns its value at fraction q, interpolated (0.5: the
 * median). */
static inline double bench_quantile(double *v, int n, double q) {
  qsort(v, (size_t)n, sizeof *v, bench_cmp);
  double pos = q * (n - 1);
  int i = (int)pos;
  return i + 1 < n ? v[i] + (pos - i) * (v[i + 1] - v[i]) : v[i];
}

/* reps SGEMMs C = A B of n x n matrices on the BLAS's current thread count; seconds */
static inline double bench_sgemms(int n, int reps, const float *a, const float *b, float *c) {
  double t0 = bench_now();
  for (int r = 0; r < reps; r++) ct_sgemm(0, 0, n, n, n, 1.0f, a, b, 0.0f, c);
  return bench_now() - t0;
}

/* The machine's CPU ticks so far and those the hypervisor took (steal): the
 * first eight counters of /proc/stat's "cpu" line and the eighth. 0 where there
 * is no such file. */
static inline int bench_ticks(unsigned long long *total, unsigned long long *steal) {
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return 0;
  unsigned long long v[8];
  int got =
      fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
  fclose(f);
  if (got != 8) return 0;
  *total = 0;
  for (int i = 0; i < 8; i++) *total += v[i];
  *steal = v[7];
  return 1;
}

#endif
