/* The zoo nets' depthwise and 1x1 convolutions, one partition as a run at batch B over P
 * partitions gives it (single-threaded BLAS, as in a partition): forward and backward (data and
 * weight gradients) of each type that applies, in GFLOP/s of useful work (2 multiply-adds per
 * MAC of the convolution's definition), and the type the cost model picks. Depthwise layers:
 * DIRECT against TYPE1 (one GEMM per group: the path before DIRECT); 1x1 layers: POINTWISE (the
 * CPU driver's conv_pw where the CPU has AVX-512, per-image GEMMs with CT_PW_KERNEL=0, one GEMM
 * for 1x1 images) against TYPE1 (packed); ResNet's 3x3 layers: WINOGRAD
 * blocked (the CPU driver's conv_wino_block) against WINOGRAD staged (the same driver without
 * that entry: the path before blocking, and the CUDA driver's), WINOGRAD4 (F(4x4, 3x3), blocked
 * only) and TYPE1.
 *
 *
 * `model` checks the cost model instead: every type that applies to the zoo's dense 3x3 layers
 * (ResNet-50's, DenseNet-121's 128->32), dense 1x1 layers and first layers, timed
 * forward+backward, against the
 * seconds ct_lower_cost predicts for it (model / measured: 1 is a perfect fit), and the type the
 * model picks against the fastest measured.
 *
 *   zoo_bench_conv [batch-per-partition [3x3 | model]]   (default 16: b32 over 2 partitions;
 *                                                         3x3: only the 3x3 layers) */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drivers/cpu.h"
#include "drivers/driver.h"
#include "lowering/lowering.h"

typedef struct layer_shape {
  const char *name;
  int C, H, W, K, G, k, s, p;
} layer_shape;

static const layer_shape shapes[] = {
    {"mobilenet_v2 conv2_1/dwise", 32, 112, 112, 32, 32, 3, 1, 1},
    {"mobilenet_v2 conv2_2/dwise", 96, 112, 112, 96, 96, 3, 2, 1},
    {"mobilenet_v2 conv3_1/dwise", 144, 56, 56, 144, 144, 3, 1, 1},
    {"mobilenet_v2 conv3_2/dwise", 144, 56, 56, 144, 144, 3, 2, 1},
    {"mobilenet_v2 conv4_1/dwise", 192, 28, 28, 192, 192, 3, 1, 1},
    {"mobilenet_v2 conv5_1/dwise", 576, 14, 14, 576, 576, 3, 1, 1},
    {"mobilenet_v2 conv6_1/dwise", 960, 7, 7, 960, 960, 3, 1, 1},
    {"mobilenet_v2 conv2_1/expand", 32, 112, 112, 32, 1, 1, 1, 0},
    {"mobilenet_v2 conv3_1/expand", 24, 56, 56, 144, 1, 1, 1, 0},
    {"mobilenet_v2 conv6_4 (320->1280)", 320, 7, 7, 1280, 1, 1, 1, 0},
    {"mobilenet_v2 fc7 (1x1 images)", 1280, 1, 1, 1000, 1, 1, 1, 0},
    {"resnet50 res2a_branch2c", 64, 56, 56, 256, 1, 1, 1, 0},
    {"resnet50 res4a_branch2a", 1024, 14, 14, 256, 1, 1, 1, 0},
    {"resnet50 res5a_branch2c", 512, 7, 7, 2048, 1, 1, 1, 0},
    {"resnet50 res2a_branch2b", 64, 56, 56, 64, 1, 3, 1, 1},
    {"resnet50 res3a_branch2b", 128, 28, 28, 128, 1, 3, 1, 1},
    {"resnet50 res4a_branch2b", 256, 14, 14, 256, 1, 3, 1, 1},
    {"resnet50 res5a_branch2b", 512, 7, 7, 512, 1, 3, 1, 1},
    {"densenet121 conv2_1/x2", 128, 56, 56, 32, 1, 3, 1, 1},
    {"densenet121 conv3_1/x2", 128, 28, 28, 32, 1, 3, 1, 1},
    {"densenet121 conv4_1/x2", 128, 14, 14, 32, 1, 3, 1, 1},
    {"densenet121 conv5_1/x2", 128, 7, 7, 32, 1, 3, 1, 1},
    {"resnet50 res4b_branch2c", 256, 14, 14, 1024, 1, 1, 1, 0},
    {"resnet50 res3b_branch2a", 512, 28, 28, 128, 1, 1, 1, 0},
    {"resnet50 res5b_branch2a", 2048, 7, 7, 512, 1, 1, 1, 0},
    {"densenet121 conv4_24/x1", 992, 14, 14, 128, 1, 1, 1, 0},
    {"densenet121 conv5_16/x1", 992, 7, 7, 128, 1, 1, 1, 0},
    {"resnet50 conv1 (7x7/2)", 3, 224, 224, 64, 1, 7, 2, 3},
    {"mobilenet conv1 (3x3/2)", 3, 224, 224, 32, 1, 3, 2, 1},
};

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* best of 3 rounds: forward seconds, backward seconds */
static void time_type(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, double *fwd, double *bwd) {
  const size_t nx = (size_t)nb * g->C * g->H * g->W, ny = (size_t)nb * g->K * g->OH * g->OW;
  const size_t nw = (size_t)g->K * (g->C / g->G) * g->kh * g->kw;
  float *x = malloc(nx * sizeof(float)), *y = malloc(ny * sizeof(float)), *dx = malloc(nx * sizeof(float));
  float *dy = malloc(ny * sizeof(float)), *w = malloc(nw * sizeof(float)), *dw = calloc(nw, sizeof(float));
  float *b = calloc((size_t)g->K, sizeof(float)), *db = calloc((size_t)g->K, sizeof(float));
  float *ws = malloc((ct_lower_workspace(g, t, nb) + 16) * sizeof(float));
  for (size_t i = 0; i < nx; i++) x[i] = (float)(i % 17) * 0.1f - 0.8f;
  for (size_t i = 0; i < ny; i++) dy[i] = (float)(i % 13) * 0.1f - 0.6f;
  for (size_t i = 0; i < nw; i++) w[i] = (float)(i % 7) * 0.1f - 0.3f;
  *fwd = *bwd = 1e30;
  for (int r = 0; r < 4; r++) { /* the first round touches the memory: not counted */
    double t0 = now();
    ct_lower_forward_on(d, g, t, nb, x, w, b, y, ws);
    double t1 = now();
    ct_lower_backward_on(d, g, t, nb, x, w, dy, dx, dw, db, ws, true);
    double t2 = now();
    if (r && t1 - t0 < *fwd) *fwd = t1 - t0;
    if (r && t2 - t1 < *bwd) *bwd = t2 - t1;
  }
  free(x), free(y), free(dx), free(dy), free(w), free(dw), free(b), free(db), free(ws);
}

/* `model`: measured against predicted, for the dense layers: TYPE1-3, WINOGRAD and WINOGRAD4, or
 * for a 1x1 POINTWISE and TYPE1 */
static void check_model(const ct_driver *cpu, int nb, double gf, double gb) {
  printf("%-34s %-10s %10s %10s %7s\n", "layer", "type", "fb ms", "model ms", "ratio");
  int right = 0, layers = 0;
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    const layer_shape *s = &shapes[i];
    ct_conv_geom g = {nb, s->C, s->H, s->W, s->K, s->G, s->k, s->k, s->s, s->s, s->p, s->p, 1, 1, 0, 0};
    if (!ct_conv_geom_finish(&g) || g.G > 1 || (s->k == 1 && !ct_conv_is_pointwise(&g))) continue;
    const bool pw = ct_conv_is_pointwise(&g);
    const ct_lowering types[] = {CT_LOWER_TYPE1, pw ? CT_LOWER_POINTWISE : CT_LOWER_TYPE2,
                                 pw ? CT_LOWER_AUTO : CT_LOWER_TYPE3, pw ? CT_LOWER_AUTO : CT_LOWER_WINOGRAD,
                                 pw ? CT_LOWER_AUTO : CT_LOWER_WINOGRAD4};
    ct_lowering fastest = CT_LOWER_TYPE1;
    double best = 1e30;
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
      if (types[t] == CT_LOWER_AUTO) continue;
      const double model = ct_lower_cost(&g, types[t], nb, gf, gb, CT_LOWER_MAX_WORKSPACE);
      if (model >= 1e29) continue; /* does not apply (or too much workspace) */
      double f, b;
      time_type(cpu, &g, types[t], nb, &f, &b);
      if (f + b < best) best = f + b, fastest = types[t];
      printf("%-34s %-10s %10.2f %10.2f %7.2f\n", s->name, ct_lowering_name(types[t]), (f + b) * 1e3, model * 1e3,
             model / (f + b));
    }
    const ct_lowering pick = ct_lower_choose(&g, nb, gf, gb, CT_LOWER_MAX_WORKSPACE);
    printf("%-34s model picks %s, fastest measured %s\n", s->name, ct_lowering_name(pick), ct_lowering_name(fastest));
    right += pick == fastest, layers++;
  }
  printf("model's pick the fastest type: %d of %d layers\n", right, layers);
}

int main(int argc, char **argv) {
  const int nb = argc > 1 ? atoi(argv[1]) : 16;
  const bool only3 = argc > 2 && strcmp(argv[2], "3x3") == 0, model = argc > 2 && strcmp(argv[2], "model") == 0;
  const ct_driver *cpu = ct_driver_cpu();
  ct_driver_ops staged_ops = *cpu->ops; /* the CPU driver without conv_wino_block */
  staged_ops.conv_wino_block = NULL;
  ct_driver staged = *cpu;
  staged.ops = &staged_ops;
  double gf, gb;
  cpu->ops->calibration(cpu, &gf, &gb);
  /* OpenBLAS on one thread, as in a partition of a net's run (part_run.c): without it the GEMM
   * types ran on every core against the CPU driver's own one-thread kernels */
  ct_blas_single_begin();
  printf("one partition of %d images, 1 thread; calibration %.0f GFLOP/s, %.1f GB/s\n", nb, gf, gb);
  if (model) {
    check_model(cpu, nb, gf, gb);
    return 0;
  }
  printf("%-34s %-12s %10s %10s %10s %10s %9s  %s\n", "layer", "type", "fwd ms", "fwd GF/s", "bwd ms", "bwd GF/s",
         "ws MB", "model pick");
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    const layer_shape *s = &shapes[i];
    ct_conv_geom g = {nb, s->C, s->H, s->W, s->K, s->G, s->k, s->k, s->s, s->s, s->p, s->p, 1, 1, 0, 0};
    if (!ct_conv_geom_finish(&g)) continue;
    /* (a depthwise 3x3 at stride 1 admits WINOGRAD too, but the table compares DIRECT there) */
    const bool wino = g.G == 1 && ct_lower_wino_applies(&g);
    if (only3 && !wino) continue;
    if (g.G == 1 && !wino && s->k > 1) continue; /* the first layers: `model` only */
    const ct_lowering pick = ct_lower_choose(&g, nb, gf, gb, CT_LOWER_MAX_WORKSPACE);
    /* 3x3: WINOGRAD blocked, staged, WINOGRAD4, TYPE1; else DIRECT or POINTWISE, TYPE1 */
    const ct_lowering cands[4] = {wino ? CT_LOWER_WINOGRAD : ct_conv_is_pointwise(&g) ? CT_LOWER_POINTWISE
                                                                                      : CT_LOWER_DIRECT,
                                  wino ? CT_LOWER_WINOGRAD : CT_LOWER_TYPE1, CT_LOWER_WINOGRAD4, CT_LOWER_TYPE1};
    const double flops = ct_conv_flops(&g, nb);
    for (int c = 0; c < (wino ? 4 : 2); c++) {
      double f, b;
      const ct_driver *d = wino && c == 1 ? &staged : cpu;
      time_type(d, &g, cands[c], nb, &f, &b);
      char name[24];
      snprintf(name, sizeof name, "%s%s", ct_lowering_name(cands[c]),
               !wino || cands[c] != CT_LOWER_WINOGRAD ? "" : c == 0 ? " blocked" : " staged");
      printf("%-34s %-12s %10.2f %10.1f %10.2f %10.1f %9.1f  %s\n", s->name, name, f * 1e3, flops / f / 1e9, b * 1e3,
             2 * flops / b / 1e9, ct_lower_workspace_on(d, &g, cands[c], nb) * 4.0 / (1 << 20),
             c == 0 ? ct_lowering_name(pick) : "");
    }
  }
  return 0;
}
