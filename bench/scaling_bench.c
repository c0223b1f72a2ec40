/* Partition scaling, paired: the same training run built twice in one process, once with one
 * partition on one core (single-threaded BLAS) and once with N partitions on the cores, whose
 * iterations then alternate (AB BA AB ...). Each pair's ratio (1-partition time / N-partition
 * time) sees the host as it was within a second or two, so the drift of a shared virtual
 * machine, which separate runs minutes apart see in full, cancels; prints each side's median
 * iteration, the median ratio and its quartiles, the same ratio for OpenBLAS's SGEMM (2048^3,
 * one thread against N, after each pair: what the host's cores themselves give at those
 * moments), and the CPU time the hypervisor took.
 *
 *   scaling_bench solver.prototxt [pairs] [partitions]   (default 10 pairs, one partition per core)
 *
 * A short iteration leaves caches warm for the next, which alternating single iterations would
 * take away from both sides (LeNet's took 12 ms instead of 10): where an iteration takes under
 * 100 ms, each turn runs a block of iterations lasting about 300 ms, the first untimed, and
 * counts the block's mean.
 *
 * Whole training iterations (forward, backward, gradient check, update), as `cortado train`
 * runs them; the solver's display, test and snapshot settings apply to both runs alike, so
 * give it a solver without them. Run it with the OpenBLAS core cortado runs (the `cortado time`
 * line "OpenBLAS core: ..."), e.g. OPENBLAS_CORETYPE=SkylakeX: on a CPU OpenBLAS 0.3.21 does not
 * know, cortado restarts itself with the core that serves it, and this program does not. */
#include "bench.h"
#include "core/pool.h"
#include "cortado.h"
#include "drivers/cpu.h"

/* `n` training iterations of s with the BLAS on `threads` threads, after `warm` untimed ones;
 * their mean in ms, or -1 on error */
static double step(ct_solver *s, int threads, int warm, int n) {
  ct_error err = {0};
  ct_blas_set_threads(threads);
  if (warm && ct_solver_step(s, warm, &err) != CT_OK) goto fail;
  double t0 = bench_now();
  if (ct_solver_step(s, n, &err) != CT_OK) goto fail;
  return 1e3 * (bench_now() - t0) / n;
fail:
  fprintf(stderr, "scaling_bench: %s\n", err.msg);
  return -1;
}

/* reps SGEMMs of GEMM_N x GEMM_N x GEMM_N on `threads` threads; ms */
#define GEMM_N 2048
static double sgemms(int threads, int reps, const float *a, const float *b, float *c) {
  ct_blas_set_threads(threads);
  return 1e3 * bench_sgemms(GEMM_N, reps, a, b, c);
}

int main(int argc, char **argv) {
  bench_quiet_blas_threads(argv);
  if (argc < 2) {
    fprintf(stderr, "usage: scaling_bench solver.prototxt [pairs] [partitions]\n");
    return 2;
  }
  const int pairs = argc > 2 ? atoi(argv[2]) : 10, cores = ct_cpu_count();
  const int parts = argc > 3 ? atoi(argv[3]) : cores;
  if (pairs < 1 || parts < 1) {
    fprintf(stderr, "scaling_bench: pairs and partitions must be positive\n");
    return 2;
  }
  ct_solver *one = NULL, *many = NULL;
  ct_error err = {0};
  ct_solver_options o1 = {.quiet = 1, .partitions = 1}, on = {.quiet = 1, .partitions = parts};
  if (ct_solver_create(argv[1], &o1, &one, &err) != CT_OK || ct_solver_create(argv[1], &on, &many, &err) != CT_OK) {
    fprintf(stderr, "scaling_bench: %s\n", err.msg);
    ct_solver_free(one);
    return 1;
  }
  const int many_threads = parts < cores ? parts : cores;
  double *t1 = malloc(sizeof(double) * (size_t)pairs), *tn = malloc(sizeof(double) * (size_t)pairs),
         *ratio = malloc(sizeof(double) * (size_t)pairs), *gratio = malloc(sizeof(double) * (size_t)pairs);
  const size_t gn = (size_t)GEMM_N * GEMM_N;
  float *a = malloc(gn * sizeof(float)), *b = malloc(gn * sizeof(float)), *c = malloc(gn * sizeof(float));
  int rc = 1;
  if (!t1 || !tn || !ratio || !gratio || !a || !b || !c) goto done;
  for (size_t i = 0; i < gn; i++) a[i] = b[i] = c[i] = (float)(i % 11) * 0.1f;
  /* untimed: page faults and lazily grown buffers (two iterations each: the first update
   * allocates the solver's history); then the length of a turn */
  if (step(one, 1, 0, 2) < 0 || step(many, many_threads, 0, 2) < 0) goto done;
  const double first = step(many, many_threads, 0, 1);
  if (first < 0) goto done;
  const int block = first >= 100 ? 1 : first * 100 < 300 ? 100 : (int)(300 / first) + 1, warm = block > 1;
  /* SGEMM's own scaling at the same moments: after each pair of the net, the same SGEMMs on
   * one thread and on the N partitions' threads, the N-thread turn about as long as the net's */
  const double t_gemm = sgemms(many_threads, 1, a, b, c);
  int greps = (int)(first * block / t_gemm + 0.5);
  if (greps < 1) greps = 1;
  unsigned long long tick0 = 0, steal0 = 0, tick1 = 0, steal1 = 0;
  int have_ticks = bench_ticks(&tick0, &steal0);
  for (int i = 0; i < pairs; i++) {
    if (i % 2 == 0) {
      t1[i] = step(one, 1, warm, block);
      tn[i] = step(many, many_threads, warm, block);
    } else {
      tn[i] = step(many, many_threads, warm, block);
      t1[i] = step(one, 1, warm, block);
    }
    if (t1[i] < 0 || tn[i] < 0) goto done;
    ratio[i] = t1[i] / tn[i];
    if (i % 2 == 0) {
      double g1 = sgemms(1, greps, a, b, c);
      gratio[i] = g1 / sgemms(many_threads, greps, a, b, c);
    } else {
      double gn_ms = sgemms(many_threads, greps, a, b, c);
      gratio[i] = sgemms(1, greps, a, b, c) / gn_ms;
    }
  }
  have_ticks = have_ticks && bench_ticks(&tick1, &steal1) && tick1 > tick0;
  printf("scaling_bench: core=%s pairs=%d block=%d 1-partition=%.2fms %d-partitions=%.2fms ratio=%.3f q1=%.3f q3=%.3f",
         ct_blas_core_name(), pairs, block, bench_quantile(t1, pairs, 0.5), parts, bench_quantile(tn, pairs, 0.5),
         bench_quantile(ratio, pairs, 0.5), bench_quantile(ratio, pairs, 0.25), bench_quantile(ratio, pairs, 0.75));
  printf(" sgemm_ratio=%.3f", bench_quantile(gratio, pairs, 0.5));
  if (have_ticks) printf(" steal=%.1f%%", 100.0 * (double)(steal1 - steal0) / (double)(tick1 - tick0));
  printf("\n");
  rc = 0;
done:
  free(t1);
  free(tn);
  free(ratio);
  free(gratio);
  free(a);
  free(b);
  free(c);
  ct_solver_free(one);
  ct_solver_free(many);
  return rc;
}
