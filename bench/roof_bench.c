/* A net's forward+backward against the SGEMM roof at the same moments: the net (one partition
 * per core, as `cortado time` runs it) and OpenBLAS's SGEMM on square n x n matrices (all cores,
 * as bench/sgemm_roof.c probes it) take turns (AB BA AB ...), each turn lasting about as long as
 * the other (several SGEMMs, or several passes of a small net), and each pair gives the fraction
 * net GFLOP/s / SGEMM GFLOP/s. On a shared virtual machine whose speed drifts by tens of percent
 * within minutes, that fraction is the engine's, where the net's median set against the best
 * probe of a whole run also carries the host's best moment. Prints each side's median GFLOP/s,
 * the median fraction and its quartiles.
 *
 *   roof_bench model.prototxt [pairs] [n]     (default 10 pairs, n = 2048)
 *
 * The net's FLOPs are the useful ones `cortado time` counts (its "Whole iteration" line). Run
 * it with the OpenBLAS core cortado runs (the `cortado time` line "OpenBLAS core: ..."), e.g.
 * OPENBLAS_CORETYPE=SkylakeX: on a CPU OpenBLAS 0.3.21 does not know, cortado restarts itself
 * with the core that serves it, and this program does not. */
#include "bench.h"
#include "core/pool.h"
#include "cortado.h"
#include "drivers/cpu.h"

/* reps forwards+backwards; seconds, or -1 on error */
static double passes(ct_net *net, int reps) {
  ct_error err = {0};
  float loss;
  double t0 = bench_now();
  for (int r = 0; r < reps; r++)
    if (ct_net_forward(net, &loss, &err) != CT_OK || ct_net_backward(net, &err) != CT_OK) {
      fprintf(stderr, "roof_bench: %s\n", err.msg);
      return -1;
    }
  return bench_now() - t0;
}

int main(int argc, char **argv) {
  bench_quiet_blas_threads(argv);
  if (argc < 2) {
    fprintf(stderr, "usage: roof_bench model.prototxt [pairs] [n]\n");
    return 2;
  }
  const int pairs = argc > 2 ? atoi(argv[2]) : 10, n = argc > 3 ? atoi(argv[3]) : 2048;
  if (pairs < 1 || n < 64) {
    fprintf(stderr, "roof_bench: pairs must be positive and n at least 64\n");
    return 2;
  }
  ct_net *net = NULL;
  ct_error err = {0};
  if (ct_net_create(argv[1], CT_TRAIN, 0, NULL, NULL, &net, &err) != CT_OK) {
    fprintf(stderr, "roof_bench: %s\n", err.msg);
    return 1;
  }
  double flops = 0;
  for (int i = 0; i < ct_net_num_layers(net); i++)
    flops += ct_net_layer_flops(net, i) + ct_net_layer_backward_flops(net, i);
  const int cores = ct_cpu_count();
  ct_blas_set_threads(cores);
  float *a = malloc((size_t)n * n * sizeof(float)), *b = malloc((size_t)n * n * sizeof(float)),
        *c = malloc((size_t)n * n * sizeof(float));
  double *fnet = malloc(sizeof(double) * (size_t)pairs), *fgemm = malloc(sizeof(double) * (size_t)pairs),
         *frac = malloc(sizeof(double) * (size_t)pairs);
  int rc = 1;
  if (!a || !b || !c || !fnet || !fgemm || !frac) goto done;
  for (size_t i = 0; i < (size_t)n * n; i++) a[i] = b[i] = c[i] = (float)(i % 11) * 0.1f;
  /* untimed: page faults, lazily grown buffers; then turns of equal length: several SGEMMs
   * against one CaffeNet pass, several LeNet passes against one SGEMM */
  double t_net = 0;
  for (int w = 0; w < 2; w++)
    if ((t_net = passes(net, 1)) < 0) goto done;
  const double t_gemm = bench_sgemms(n, 1, a, b, c);
  int reps = (int)(t_net / t_gemm + 0.5), net_reps = (int)(t_gemm / t_net + 0.5);
  if (reps < 1) reps = 1;
  if (net_reps < 1 || reps > 1) net_reps = 1;
  const double gemm_flops = 2.0 * n * (double)n * n * reps;
  for (int i = 0; i < pairs; i++) {
    double tn, tg;
    if (i % 2 == 0) {
      tn = passes(net, net_reps);
      tg = bench_sgemms(n, reps, a, b, c);
    } else {
      tg = bench_sgemms(n, reps, a, b, c);
      tn = passes(net, net_reps);
    }
    if (tn < 0) goto done;
    fnet[i] = flops * net_reps / tn / 1e9;
    fgemm[i] = gemm_flops / tg / 1e9;
    frac[i] = fnet[i] / fgemm[i];
  }
  printf("roof_bench: core=%s threads=%d pairs=%d turn=%dx%d-sgemm/%dxnet net=%.1fGFLOP/s sgemm=%.1fGFLOP/s "
         "fraction=%.3f q1=%.3f q3=%.3f\n",
         ct_blas_core_name(), cores, pairs, reps, n, net_reps, bench_quantile(fnet, pairs, 0.5),
         bench_quantile(fgemm, pairs, 0.5), bench_quantile(frac, pairs, 0.5), bench_quantile(frac, pairs, 0.25),
         bench_quantile(frac, pairs, 0.75));
  rc = 0;
done:
  free(a);
  free(b);
  free(c);
  free(fnet);
  free(fgemm);
  free(frac);
  ct_net_free(net);
  return rc;
}
