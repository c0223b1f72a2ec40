/* The cost model against the clock: for each convolution of CaffeNet (batch 32) and LeNet
 * (batch 64), split into the partitions a run would use, time forward + backward of one
 * partition with every lowering type (single-threaded BLAS, as in a partition), and report the
 * type the cost model picks, the fastest measured, and how far the pick is from the fastest.
 *
 *   lowering_bench [partitions]      (default 2) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "core/blas.h"
#include "drivers/cpu.h"
#include "lowering/lowering.h"

typedef struct layer_shape {
  const char *name;
  int N, C, H, W, K, G, k, s, p;
} layer_shape;

static const layer_shape shapes[] = {
    {"caffenet conv1", 32, 3, 227, 227, 96, 1, 11, 4, 0},  {"caffenet conv2", 32, 96, 27, 27, 256, 2, 5, 1, 2},
    {"caffenet conv3", 32, 256, 13, 13, 384, 1, 3, 1, 1},  {"caffenet conv4", 32, 384, 13, 13, 384, 2, 3, 1, 1},
    {"caffenet conv5", 32, 384, 13, 13, 256, 2, 3, 1, 1},  {"lenet conv1", 64, 1, 28, 28, 20, 1, 5, 1, 0},
    {"lenet conv2", 64, 20, 12, 12, 50, 1, 5, 1, 0},
};

#define REPS 5 /* timed rounds per layer; each type keeps its best */

/* the types timed (-1 in a column: the type does not apply, or needs more workspace than the
 * cost model allows) */
#define NTYPES 4
static const ct_lowering types[NTYPES] = {CT_LOWER_TYPE1, CT_LOWER_TYPE2, CT_LOWER_TYPE3, CT_LOWER_WINOGRAD};

static bool usable(const ct_conv_geom *g, ct_lowering t, int nb) {
  if (t == CT_LOWER_WINOGRAD && !ct_lower_wino_applies(g)) return false;
  return ct_lower_workspace(g, t, nb) <= CT_LOWER_MAX_WORKSPACE;
}

/* One forward + backward of one partition with type t, in seconds; -1 when the driver failed. */
static double time_once(const ct_conv_geom *g, ct_lowering t, int nb, float *x, float *w, float *b, float *y,
                        float *dx, float *dw, float *db, float *ws) {
  double t0 = bench_now();
  ct_status s = ct_lower_forward(g, t, nb, x, w, b, y, ws);
  if (s == CT_OK) s = ct_lower_backward(g, t, nb, x, w, y, dx, dw, db, ws, true);
  if (s != CT_OK) {
    fprintf(stderr, "lowering_bench: %s: %s\n", ct_lowering_name(t), ct_status_name(s));
    return -1;
  }
  return bench_now() - t0;
}

int main(int argc, char **argv) {
  int parts = argc > 1 ? atoi(argv[1]) : 2;
  if (parts < 1) parts = 1;
  double gflops, gbytes;
  ct_cpu_calibration(&gflops, &gbytes);
  ct_blas_set_threads(1);
  printf("OpenBLAS core: %s; calibration: %.1f GFLOP/s single-thread SGEMM, %.1f GB/s copy\n", ct_blas_core_name(),
         gflops, gbytes);
  printf("%-16s %5s %9s %9s %9s %9s %8s %8s %7s\n", "layer", "nb", "type1 ms", "type2 ms", "type3 ms", "wino ms",
         "chosen", "fastest", "excess");
  int within = 0, total = 0;
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
    const layer_shape *L = &shapes[i];
    ct_conv_geom g = {L->N, L->C, L->H, L->W, L->K, L->G, L->k, L->k, L->s, L->s, L->p, L->p, 1, 1, 0, 0};
    ct_conv_geom_finish(&g);
    int nb = (L->N + parts - 1) / parts;
    size_t nx = (size_t)nb * g.C * g.H * g.W, ny = (size_t)nb * g.K * g.OH * g.OW;
    size_t nw = (size_t)g.K * (g.C / g.G) * g.kh * g.kw;
    size_t nws = 0;
    for (int ti = 0; ti < NTYPES; ti++) {
      size_t w = usable(&g, types[ti], nb) ? ct_lower_workspace(&g, types[ti], nb) : 0;
      if (w > nws) nws = w;
    }
    float *x = calloc(nx, 4), *dx = calloc(nx, 4), *y = calloc(ny, 4), *w = calloc(nw, 4), *dw = calloc(nw, 4);
    float *b = calloc((size_t)g.K, 4), *db = calloc((size_t)g.K, 4), *ws = calloc(nws + 16, 4);
    for (size_t k = 0; k < nx; k++) x[k] = (float)(k % 13) * 0.01f;
    for (size_t k = 0; k < nw; k++) w[k] = (float)(k % 7) * 0.01f;
    /* The types take turns, REPS rounds of one pass each (after an untimed one that touches the
     * buffers), and each keeps its best round: a slow spell of this shared host then costs every
     * type a round instead of handing one type all its repetitions. */
    double ms[NTYPES] = {1e30, 1e30, 1e30, 1e30};
    for (int r = -1; r < REPS; r++)
      for (int ti = 0; ti < NTYPES; ti++) {
        if (!usable(&g, types[ti], nb)) continue;
        double dt = 1e3 * time_once(&g, types[ti], nb, x, w, b, y, dx, dw, db, ws);
        if (dt < 0) return 1;
        if (r >= 0 && dt < ms[ti]) ms[ti] = dt;
      }
    int fastest = 0, pick = 0;
    for (int ti = 1; ti < NTYPES; ti++)
      if (ms[ti] < ms[fastest]) fastest = ti;
    ct_lowering chosen = ct_lower_choose(&g, nb, gflops, gbytes, CT_LOWER_MAX_WORKSPACE);
    for (int ti = 0; ti < NTYPES; ti++)
      if (types[ti] == chosen) pick = ti;
    double excess = ms[pick] / ms[fastest] - 1;
    within += excess <= 0.10;
    total++;
    printf("%-16s %5d", L->name, nb);
    for (int ti = 0; ti < NTYPES; ti++) printf(" %9.2f", ms[ti] < 1e29 ? ms[ti] : -1);
    printf(" %8s %8s %6.1f%%\n", ct_lowering_name(chosen), ct_lowering_name(types[fastest]), 100 * excess);
    free(x), free(dx), free(y), free(w), free(dw), free(b), free(db), free(ws);
  }
  printf("cost model within 10%% of the fastest type on %d of %d layers\n", within, total);
  return 0;
}
