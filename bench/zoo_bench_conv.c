/* The zoo nets' depthwise and 1x1 convolutions, one partition as a run at batch B over P
 * partitions gives it (single-threaded BLAS, as in a partition): forward and backward (data and
 * weight gradients) of each type that applies, in GFLOP/s of useful work (2 multiply-adds per
 * MAC of the convolution's definition), and the type the cost model picks. Depthwise layers:
 * DIRECT against TYPE1 (one GEMM per group: the path before DIRECT); 1x1 layers: POINTWISE (per
 * image, or one GEMM for 1x1 images) against TYPE1 (packed).
 *
 *   zoo_bench_conv [batch-per-partition]      (default 16: b32 over 2 partitions) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
};

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* best of 3 rounds: forward seconds, backward seconds */
static void time_type(const ct_conv_geom *g, ct_lowering t, int nb, double *fwd, double *bwd) {
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
    ct_lower_forward(g, t, nb, x, w, b, y, ws);
    double t1 = now();
    ct_lower_backward(g, t, nb, x, w, dy, dx, dw, db, ws, true);
    double t2 = now();
    if (r && t1 - t0 < *fwd) *fwd = t1 - t0;
    if (r && t2 - t1 < *bwd) *bwd = t2 - t1;
  }
  free(x), free(y), free(dx), free(dy), free(w), free(dw), free(b), free(db), free(ws);
}

int main(int argc, char **argv) {
  const int nb = argc > 1 ? atoi(argv[1]) : 16;
  double gf, gb;
  ct_driver_cpu()->ops->calibration(ct_driver_cpu(), &gf, &gb);
  printf("one partition of %d images, 1 thread; calibration %.0f GFLOP/s, %.1f GB/s\n", nb, gf, gb);
  printf("%-34s %-9s %10s %10s %10s %10s  %s\n", "layer", "type", "fwd ms", "fwd GF/s", "bwd ms", "bwd GF/s",
         "model pick");
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    const layer_shape *s = &shapes[i];
    ct_conv_geom g = {nb, s->C, s->H, s->W, s->K, s->G, s->k, s->k, s->s, s->s, s->p, s->p, 1, 1, 0, 0};
    if (!ct_conv_geom_finish(&g)) continue;
    const ct_lowering pick = ct_lower_choose(&g, nb, gf, gb, CT_LOWER_MAX_WORKSPACE);
    const ct_lowering cands[2] = {ct_conv_is_pointwise(&g) ? CT_LOWER_POINTWISE : CT_LOWER_DIRECT, CT_LOWER_TYPE1};
    const double flops = ct_conv_flops(&g, nb);
    for (int c = 0; c < 2; c++) {
      double f, b;
      time_type(&g, cands[c], nb, &f, &b);
      printf("%-34s %-9s %10.2f %10.1f %10.2f %10.1f  %s\n", s->name, ct_lowering_name(cands[c]), f * 1e3,
             flops / f / 1e9, b * 1e3, 2 * flops / b / 1e9, c == 0 ? ct_lowering_name(pick) : "");
    }
  }
  return 0;
}
