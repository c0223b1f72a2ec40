/* Eltwise SUM -> in-place ReLU, fused (net/fuse.c) against the two layers (CT_FUSE=0), on the
 * shapes of ResNet-50's block ends at batch 16, in one process: the two nets alternate within
 * every round, so a slow spell of this shared host hits both alike, and each figure is the
 * median over the rounds. Forward and backward separately, on the default partitions (one per
 * core); the last line weighs each shape by how many blocks of ResNet-50 end in it (3, 4, 6, 3).
 *
 *   build/eltwise_relu_pair_bench [rounds]          (default 9 rounds)
 *
 * Prints ms per pass and the two-layer / fused ratio, and the share of the machine's CPU time
 * the hypervisor took (steal). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cortado.h"
#include "net/net.h"

static ct_net *make(int N, int C, int H, int W, bool fused) {
  char text[1024];
  snprintf(text, sizeof text,
           "name: 'pair' force_backward: true\n"
           "layer { name: 'in' type: 'Input' top: 'a' top: 'b' input_param { shape { dim: %d dim: %d dim: %d dim: %d } "
           "shape { dim: %d dim: %d dim: %d dim: %d } } }\n"
           "layer { name: 'sum' type: 'Eltwise' bottom: 'a' bottom: 'b' top: 'y' }\n"
           "layer { name: 'relu' type: 'ReLU' bottom: 'y' top: 'y' }\n",
           N, C, H, W, N, C, H, W);
  setenv("CT_FUSE", fused ? "1" : "0", 1);
  ct_net *net = NULL;
  ct_error err = {0};
  if (ct_net_create_from_text(text, "pair", "", CT_TRAIN, &net, &err)) {
    fprintf(stderr, "eltwise_relu_pair_bench: %s\n", err.msg);
    exit(1);
  }
  unsetenv("CT_FUSE");
  if (ct_net_fused_eltwise(net) != (fused ? 1 : 0)) {
    fprintf(stderr, "eltwise_relu_pair_bench: the pair is %sfused\n", fused ? "not " : "");
    exit(1);
  }
  const size_t n = (size_t)N * C * H * W;
  unsigned s = 12345;
  const char *in[2] = {"a", "b"};
  for (int k = 0; k < 2; k++) {
    float *x = ct_net_blob_data(net, in[k]);
    for (size_t i = 0; i < n; i++) x[i] = (float)((s = s * 1103515245u + 12345u) >> 8) / (float)(1u << 24) - 0.5f;
  }
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

/* medians m[fused, two-layer][fwd, bwd] in ms */
static void run(int rounds, int N, int C, int H, int W, double m[2][2]) {
  ct_net *nets[2] = {make(N, C, H, W, true), make(N, C, H, W, false)};
  double *t[2][2];
  for (int k = 0; k < 2; k++)
    for (int d = 0; d < 2; d++) t[k][d] = calloc((size_t)rounds, sizeof(double));
  double f, b;
  for (int k = 0; k < 2; k++) pass(nets[k], &f, &b); /* first touch */
  for (int r = 0; r < rounds; r++)
    for (int k = 0; k < 2; k++) pass(nets[k], &t[k][0][r], &t[k][1][r]);
  for (int k = 0; k < 2; k++)
    for (int d = 0; d < 2; d++) m[k][d] = 1e3 * bench_quantile(t[k][d], rounds, 0.5);
  printf("%2dx%4dx%3dx%3d %5.0f MB  fwd %7.2f / %7.2f ms (x%.2f)  bwd %7.2f / %7.2f ms (x%.2f)\n", N, C, H, W,
         4.0 * N * C * H * W / 1e6, m[0][0], m[1][0], m[1][0] / m[0][0], m[0][1], m[1][1], m[1][1] / m[0][1]);
  for (int k = 0; k < 2; k++) {
    ct_net_free(nets[k]);
    for (int d = 0; d < 2; d++) free(t[k][d]);
  }
}

int main(int argc, char **argv) {
  bench_quiet_blas_threads(argv);
  int rounds = argc > 1 ? atoi(argv[1]) : 9;
  if (rounds < 1) rounds = 1;
  static const int resnet[][5] = {{16, 256, 56, 56, 3}, {16, 512, 28, 28, 4}, {16, 1024, 14, 14, 6}, {16, 2048, 7, 7, 3}};
  unsigned long long t0 = 0, s0 = 0, t1 = 0, s1 = 0;
  int have = bench_ticks(&t0, &s0);
  printf("OpenBLAS core: %s (no GEMM here)\n", ct_blas_core_name());
  printf("shape          blob     forward fused / two-layer (ratio)  backward fused / two-layer (ratio); medians of "
         "%d rounds\n", rounds);
  double sum[2][2] = {{0, 0}, {0, 0}};
  for (size_t i = 0; i < sizeof resnet / sizeof resnet[0]; i++) {
    double m[2][2];
    run(rounds, resnet[i][0], resnet[i][1], resnet[i][2], resnet[i][3], m);
    for (int k = 0; k < 2; k++)
      for (int d = 0; d < 2; d++) sum[k][d] += resnet[i][4] * m[k][d];
  }
  printf("ResNet-50's 16 pairs: fwd %.1f / %.1f ms (saves %.1f)  bwd %.1f / %.1f ms (saves %.1f)\n", sum[0][0],
         sum[1][0], sum[1][0] - sum[0][0], sum[0][1], sum[1][1], sum[1][1] - sum[0][1]);
  if (have && bench_ticks(&t1, &s1) && t1 > t0)
    printf("steal: %.1f%% of the machine's CPU time\n", 100.0 * (double)(s1 - s0) / (double)(t1 - t0));
  return 0;
}
