/* BatchNorm -> Scale -> ReLU, fused (net/fuse.c) against unfused (CT_FUSE=0), on the shapes of
 * ResNet-50's chains at batch 16 (or one given shape), in one process: the two nets alternate
 * within every round, so a slow spell of this shared host hits both alike, and each figure is
 * the median over the rounds. Forward and backward separately, batch statistics (TRAIN) and the
 * stored statistics (use_global_stats), on the default partitions (one per core).
 *
 *   build/bn_chain_bench [rounds] [N C H W]          (default 9 rounds, the ResNet-50 list)
 *
 * Prints ms per pass and the unfused / fused ratio, and the share of the machine's CPU time
 * the hypervisor took (steal). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cortado.h"
#include "net/net.h"

static ct_net *make(int N, int C, int H, int W, bool global, bool fused) {
  char text[1024];
  snprintf(text, sizeof text,
           "name: 'chain' force_backward: true\n"
           "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: %d dim: %d dim: %d dim: %d } } }\n"
           "layer { name: 'bn' type: 'BatchNorm' bottom: 'x' top: 'x' %s }\n"
           "layer { name: 'sc' type: 'Scale' bottom: 'x' top: 'x' scale_param { bias_term: true } }\n"
           "layer { name: 'relu' type: 'ReLU' bottom: 'x' top: 'x' }\n",
           N, C, H, W, global ? "batch_norm_param { use_global_stats: true }" : "");
  if (fused)
    unsetenv("CT_FUSE");
  else
    setenv("CT_FUSE", "0", 1);
  ct_net *net = NULL;
  ct_error err = {0};
  if (ct_net_create_from_text(text, "chain", "", CT_TRAIN, &net, &err)) {
    fprintf(stderr, "bn_chain_bench: %s\n", err.msg);
    exit(1);
  }
  unsetenv("CT_FUSE");
  float *x = ct_net_blob_data(net, "x");
  size_t n = (size_t)N * C * H * W;
  unsigned s = 12345;
  for (size_t i = 0; i < n; i++) x[i] = (float)((s = s * 1103515245u + 12345u) >> 8) / (float)(1u << 24) - 0.5f;
  float *v = ct_net_param_data(net, "bn", 1), *f = ct_net_param_data(net, "bn", 2);
  for (int c = 0; c < C; c++) v[c] = 1.0f;
  f[0] = 1.0f;
  return net;
}

/* one forward and one backward; seconds of each */
static void pass(ct_net *net, double *fwd, double *bwd) {
  ct_error err = {0};
  double t0 = bench_now();
  if (ct_net_forward(net, NULL, &err)) fprintf(stderr, "%s\n", err.msg), exit(1);
  double t1 = bench_now();
  if (ct_net_backward(net, &err)) fprintf(stderr, "%s\n", err.msg), exit(1);
  *fwd = t1 - t0;
  *bwd = bench_now() - t1;
}

static void run(int rounds, int N, int C, int H, int W, bool global) {
  ct_net *nets[2] = {make(N, C, H, W, global, true), make(N, C, H, W, global, false)};
  double *t[2][2];
  for (int k = 0; k < 2; k++)
    for (int d = 0; d < 2; d++) t[k][d] = calloc((size_t)rounds, sizeof(double));
  double f, b;
  for (int k = 0; k < 2; k++) pass(nets[k], &f, &b); /* first touch */
  for (int r = 0; r < rounds; r++)
    for (int k = 0; k < 2; k++) pass(nets[k], &t[k][0][r], &t[k][1][r]);
  double m[2][2];
  for (int k = 0; k < 2; k++)
    for (int d = 0; d < 2; d++) m[k][d] = 1e3 * bench_quantile(t[k][d], rounds, 0.5);
  const double mb = 4.0 * N * C * H * W / 1e6;
  printf("%2dx%4dx%3dx%3d %-6s %6.0f MB  fwd %7.2f / %7.2f ms (x%.2f)  bwd %7.2f / %7.2f ms (x%.2f)\n", N, C, H, W,
         global ? "global" : "batch", mb, m[0][0], m[1][0], m[1][0] / m[0][0], m[0][1], m[1][1], m[1][1] / m[0][1]);
  for (int k = 0; k < 2; k++) {
    ct_net_free(nets[k]);
    for (int d = 0; d < 2; d++) free(t[k][d]);
  }
}

int main(int argc, char **argv) {
  bench_quiet_blas_threads(argv);
  int rounds = argc > 1 ? atoi(argv[1]) : 9;
  if (rounds < 1) rounds = 1;
  static const int resnet[][4] = {{16, 64, 112, 112}, {16, 64, 56, 56}, {16, 256, 56, 56}, {16, 128, 28, 28},
                                  {16, 512, 28, 28},  {16, 256, 14, 14}, {16, 1024, 14, 14}, {16, 512, 7, 7},
                                  {16, 2048, 7, 7}};
  unsigned long long t0 = 0, s0 = 0, t1 = 0, s1 = 0;
  int have = bench_ticks(&t0, &s0);
  printf("shape          stats    blob   forward fused / unfused (ratio)  backward fused / unfused (ratio); medians "
         "of %d rounds\n", rounds);
  for (int g = 0; g < 2; g++) {
    if (argc > 5)
      run(rounds, atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), g);
    else
      for (size_t i = 0; i < sizeof resnet / sizeof resnet[0]; i++)
        run(rounds, resnet[i][0], resnet[i][1], resnet[i][2], resnet[i][3], g);
  }
  if (have && bench_ticks(&t1, &s1) && t1 > t0)
    printf("steal: %.1f%% of the machine's CPU time\n", 100.0 * (double)(s1 - s0) / (double)(t1 - t0));
  return 0;
}
