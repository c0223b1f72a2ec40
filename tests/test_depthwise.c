/* The direct (depthwise and many-group) convolution and the 1x1 paths against naive loops
 * written here in double, on a zoo of shapes: odd sizes, channel counts and widths that are not
 * a multiple of the vector width (8), batch 1, strides 1, 2 and 3, padding, dilation, channel
 * multipliers; forward, data gradient, weight and bias gradients, through the CPU driver's
 * conv_direct_* entries and through the lowering's dispatch (ct_lower_forward / backward) with
 * the batch split into partitions. Then the cost model: DIRECT for group == channels (and for
 * many thin groups), GEMMs for group 2; for 1x1 layers POINTWISE or TYPE1's packing, both held
 * to the loops (the per-image path, the one-GEMM path of 1x1 images, the CPU driver's conv_pw
 * for all images at once, with and without bias). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "drivers/driver.h"
#include "lowering/lowering.h"

typedef struct shape {
  int N, C, H, W, K, G, kh, kw, sh, sw, ph, pw, dh, dw;
} shape;

static const shape zoo[] = {
    /* N  C   H   W   K   G  kh kw sh sw ph pw dh dw */
    {2, 8, 12, 12, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1},    /* MobileNet's 3x3 depthwise, stride 1 */
    {2, 8, 13, 13, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1},    /* stride 2 on an odd plane */
    {1, 5, 7, 7, 5, 5, 3, 3, 1, 1, 1, 1, 1, 1},      /* batch 1, 5 channels, 7x7 (MobileNet's last) */
    {3, 3, 9, 17, 3, 3, 3, 3, 1, 1, 0, 0, 1, 1},     /* no padding, a width of two vectors and one */
    {2, 6, 11, 5, 12, 6, 3, 3, 1, 1, 1, 1, 1, 1},    /* channel multiplier 2 */
    {2, 4, 10, 9, 4, 4, 5, 5, 2, 2, 2, 2, 1, 1},     /* 5x5 stride 2 (wider than the 9 registers) */
    {1, 4, 12, 11, 4, 4, 3, 3, 1, 1, 2, 2, 2, 2},    /* dilation 2 */
    {2, 3, 14, 13, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1},    /* stride 3 */
    {2, 12, 8, 9, 12, 3, 3, 3, 1, 1, 1, 1, 1, 1},    /* many-group: 3 groups of 4 in, 4 out */
    {2, 8, 6, 7, 16, 4, 3, 3, 2, 2, 1, 1, 1, 1},     /* groups of 2 in, 4 out, stride 2 */
    {1, 2, 1, 1, 2, 2, 3, 3, 1, 1, 1, 1, 1, 1},      /* a 1x1 plane padded to 3x3 */
    {2, 4, 20, 3, 4, 4, 3, 1, 2, 1, 1, 0, 1, 1},     /* a 3x1 kernel, strides 2 and 1 */
    {2, 3, 9, 10, 3, 3, 2, 4, 1, 2, 0, 3, 1, 1},     /* padding wider than half the kernel */
    {1, 16, 33, 35, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1}, /* wider planes */
    {1, 5, 28, 28, 5, 5, 3, 3, 2, 2, 1, 1, 1, 1},    /* stride 2 on an even plane (MobileNet's) */
    {2, 3, 15, 40, 3, 3, 3, 3, 2, 2, 0, 0, 1, 1},    /* stride 2 unpadded, rows of several vectors */
    {1, 2, 9, 9, 2, 2, 3, 3, 2, 2, 2, 2, 1, 1},      /* stride 2, padding 2 */
    {2, 4, 11, 6, 4, 4, 3, 3, 2, 2, 1, 0, 1, 1},     /* stride 2, padding on rows only */
    /* output rows a whole number of vectors long, which the weight gradient reads where they lie */
    {2, 6, 16, 16, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1},    /* 16 wide */
    {2, 4, 32, 32, 4, 4, 3, 3, 2, 2, 1, 1, 1, 1},    /* 16 wide at stride 2 */
    {2, 8, 8, 8, 16, 4, 3, 3, 1, 1, 1, 1, 1, 1},     /* 8 wide, many-group */
};

static float *rnd(size_t n, ct_rng *r) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = ct_rng_uniform(r, -1.0f, 1.0f);
  return p;
}

/* y, dx, dw, db in double: the definition, loop by loop */
static void reference(const ct_conv_geom *g, const float *x, const float *w, const float *b, const float *dy,
                      double *y, double *dx, double *dw, double *db) {
  const int Cg = g->C / g->G, Kg = g->K / g->G;
  memset(dx, 0, (size_t)g->N * g->C * g->H * g->W * sizeof(double));
  memset(dw, 0, (size_t)g->K * Cg * g->kh * g->kw * sizeof(double));
  memset(db, 0, (size_t)g->K * sizeof(double));
  for (int n = 0; n < g->N; n++)
    for (int k = 0; k < g->K; k++)
      for (int oy = 0; oy < g->OH; oy++)
        for (int ox = 0; ox < g->OW; ox++) {
          const size_t yi = (((size_t)n * g->K + k) * g->OH + oy) * g->OW + ox;
          double acc = b ? b[k] : 0.0;
          for (int c = 0; c < Cg; c++)
            for (int i = 0; i < g->kh; i++)
              for (int j = 0; j < g->kw; j++) {
                const int iy = oy * g->sh - g->ph + i * g->dh, ix = ox * g->sw - g->pw + j * g->dw;
                if (iy < 0 || iy >= g->H || ix < 0 || ix >= g->W) continue;
                const size_t xi = (((size_t)n * g->C + (k / Kg) * Cg + c) * g->H + iy) * g->W + ix;
                const size_t wi = (((size_t)k * Cg + c) * g->kh + i) * g->kw + j;
                acc += (double)w[wi] * x[xi];
                dx[xi] += (double)w[wi] * dy[yi];
                dw[wi] += (double)x[xi] * dy[yi];
              }
          y[yi] = acc;
          db[k] += dy[yi];
        }
}

static void near(const float *got, const double *want, const double *base, size_t n, const char *what, int z) {
  double worst = 0, scale = 1;
  size_t at = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
  for (size_t i = 0; i < n; i++) {
    const double d = fabs(got[i] - (want[i] + (base ? base[i] : 0)));
    if (!(d <= worst)) worst = d, at = i;
  }
  CHECK(worst <= 2e-5 * scale, "shape %d %s: element %zu off by %g (scale %g)", z, what, at, worst, scale);
}

static ct_conv_geom geom(const shape *s) {
  ct_conv_geom g = {s->N, s->C, s->H, s->W, s->K, s->G, s->kh, s->kw, s->sh, s->sw, s->ph, s->pw, s->dh, s->dw, 0, 0};
  return g;
}

/* One geometry through the driver entries and through the dispatch of type t (partitions of
 * unequal size, the weight gradients summed afterwards). */
static void check_type(const ct_conv_geom *g, ct_lowering t, int z, bool entries) {
  ct_rng r;
  ct_rng_seed(&r, 77 + (uint64_t)z);
  const size_t nx = (size_t)g->N * g->C * g->H * g->W, ny = (size_t)g->N * g->K * g->OH * g->OW;
  const size_t nw = (size_t)g->K * (g->C / g->G) * g->kh * g->kw, K = (size_t)g->K;
  float *x = rnd(nx, &r), *w = rnd(nw, &r), *b = rnd(K, &r), *dy = rnd(ny, &r);
  double *ry = malloc(ny * sizeof(double)), *rdx = malloc(nx * sizeof(double));
  double *rdw = malloc(nw * sizeof(double)), *rdb = malloc(K * sizeof(double));
  double *dw0 = malloc(nw * sizeof(double)), *db0 = malloc(K * sizeof(double));
  reference(g, x, w, b, dy, ry, rdx, rdw, rdb);
  float *y = rnd(ny, &r), *dx = rnd(nx, &r), *dw = rnd(nw, &r), *db = rnd(K, &r);
  for (size_t i = 0; i < nw; i++) dw0[i] = dw[i]; /* the gradients accumulate onto these */
  for (size_t i = 0; i < K; i++) db0[i] = db[i];
  const size_t nws = ct_lower_workspace(g, t, g->N) + 1;
  float *ws = rnd(nws, &r); /* garbage: nothing may read the workspace before writing it */
  char what[96];
  const ct_driver *d = ct_driver_cpu();
  if (entries) {
    CHECK(d->ops->conv_direct_forward(d, g, g->N, x, w, b, y, ws) == CT_OK, "forward");
    snprintf(what, sizeof what, "conv_direct_forward");
    near(y, ry, NULL, ny, what, z);
    CHECK(d->ops->conv_direct_backward_data(d, g, g->N, w, dy, dx, ws) == CT_OK, "data");
    near(dx, rdx, NULL, nx, "conv_direct_backward_data", z);
    CHECK(d->ops->conv_direct_backward_weight(d, g, g->N, x, dy, dw, db, ws) == CT_OK, "weight");
    near(dw, rdw, dw0, nw, "conv_direct_backward_weight's dw", z);
    near(db, rdb, db0, K, "conv_direct_backward_weight's db", z);
    /* each gradient alone: the bias alone, the weights alone */
    float *db2 = calloc(K, sizeof(float)), *dw2 = calloc(nw, sizeof(float));
    CHECK(d->ops->conv_direct_backward_weight(d, g, g->N, x, dy, NULL, db2, ws) == CT_OK, "bias alone");
    near(db2, rdb, NULL, K, "db alone", z);
    CHECK(d->ops->conv_direct_backward_weight(d, g, g->N, x, dy, dw2, NULL, ws) == CT_OK, "weights alone");
    near(dw2, rdw, NULL, nw, "dw alone", z);
    free(db2), free(dw2);
  }
  /* the dispatch, in two partitions (first one image, then the rest) */
  for (size_t i = 0; i < nw; i++) dw[i] = (float)dw0[i];
  for (size_t i = 0; i < K; i++) db[i] = (float)db0[i];
  const int parts[2] = {1, g->N - 1};
  for (int p = 0, n0 = 0; p < 2; n0 += parts[p], p++) {
    if (!parts[p]) continue;
    const size_t xo = (size_t)n0 * g->C * g->H * g->W, yo = (size_t)n0 * g->K * g->OH * g->OW;
    CHECK(ct_lower_forward(g, t, parts[p], x + xo, w, b, y + yo, ws) == CT_OK, "dispatch forward");
    CHECK(ct_lower_backward(g, t, parts[p], x + xo, w, dy + yo, dx + xo, dw, db, ws, true) == CT_OK,
          "dispatch backward");
  }
  snprintf(what, sizeof what, "%s: forward", ct_lowering_name(t));
  near(y, ry, NULL, ny, what, z);
  snprintf(what, sizeof what, "%s: data gradient", ct_lowering_name(t));
  near(dx, rdx, NULL, nx, what, z);
  snprintf(what, sizeof what, "%s: weight gradient", ct_lowering_name(t));
  near(dw, rdw, dw0, nw, what, z);
  snprintf(what, sizeof what, "%s: bias gradient", ct_lowering_name(t));
  near(db, rdb, db0, K, what, z);
  /* without a bias */
  reference(g, x, w, NULL, dy, ry, rdx, rdw, rdb);
  CHECK(ct_lower_forward(g, t, g->N, x, w, NULL, y, ws) == CT_OK, "forward without bias");
  snprintf(what, sizeof what, "%s: forward without bias", ct_lowering_name(t));
  near(y, ry, NULL, ny, what, z);
  free(x), free(w), free(b), free(dy), free(ry), free(rdx), free(rdw), free(rdb), free(dw0), free(db0);
  free(y), free(dx), free(dw), free(db), free(ws);
}

static void test_direct(void) {
  for (int z = 0; z < (int)(sizeof zoo / sizeof zoo[0]); z++) {
    ct_conv_geom g = geom(&zoo[z]);
    CHECK(ct_conv_geom_finish(&g), "shape %d fits", z);
    check_type(&g, CT_LOWER_DIRECT, z, true);
  }
}

/* 1x1 convolutions: the per-image GEMMs over the bias, the one GEMM of single-pixel images, and
 * TYPE1's packing, each against the loops */
static void test_pointwise(void) {
  static const shape pw[] = {
      {3, 5, 7, 9, 6, 1, 1, 1, 1, 1, 0, 0, 1, 1},     /* odd everything */
      {1, 16, 4, 4, 24, 1, 1, 1, 1, 1, 0, 0, 1, 1},   /* batch 1 */
      {4, 12, 1, 1, 10, 1, 1, 1, 1, 1, 0, 0, 1, 1},   /* one pixel an image: one GEMM */
      {2, 12, 1, 1, 8, 2, 1, 1, 1, 1, 0, 0, 1, 1},    /* one pixel, two groups: per image */
      {2, 8, 5, 3, 12, 4, 1, 1, 1, 1, 0, 0, 1, 1},    /* grouped 1x1 */
      {2, 3, 40, 33, 7, 1, 1, 1, 1, 1, 0, 0, 1, 1},   /* a large plane */
      /* the CPU driver's conv_pw (16 or more rows and products): */
      {3, 20, 7, 7, 37, 1, 1, 1, 1, 1, 0, 0, 1, 1},   /* 7x7: panels straddle images; 37 rows */
      {2, 17, 3, 5, 16, 1, 1, 1, 1, 1, 0, 0, 1, 1},   /* 15 pixels: a vector spans three images */
      {1, 33, 9, 9, 70, 1, 1, 1, 1, 1, 0, 0, 1, 1},   /* batch 1, 81 columns: a panel and a part */
      {2, 512, 13, 11, 18, 1, 1, 1, 1, 1, 0, 0, 1, 1}, /* 512 products: blocks of 256 columns */
  };
  for (int z = 0; z < (int)(sizeof pw / sizeof pw[0]); z++) {
    ct_conv_geom g = geom(&pw[z]);
    CHECK(ct_conv_geom_finish(&g), "1x1 shape %d fits", z);
    check_type(&g, CT_LOWER_POINTWISE, 100 + z, false);
    check_type(&g, CT_LOWER_TYPE1, 100 + z, false);
  }
}

/* The CPU driver's conv_pw itself, where this CPU runs it: y = w x and dx = w^T dy against the
 * loops, and the same bits whether the images come in one call or two (results must not depend
 * on how a batch is split). */
static void test_pw_entry(void) {
  const ct_driver *d = ct_driver_cpu();
  const char *off = getenv("CT_PW_KERNEL");
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool runs = __builtin_cpu_supports("avx512f") && !(off && strcmp(off, "0") == 0);
#else
  const bool runs = false;
  (void)off;
#endif
  static const int sh[][4] = {{3, 20, 49, 37}, {4, 17, 15, 16}, {2, 300, 143, 24}, {1, 16, 2, 64}}; /* N Kd P M */
  for (int z = 0; z < (int)(sizeof sh / sizeof sh[0]); z++) {
    const int N = sh[z][0], Kd = sh[z][1], P = sh[z][2], M = sh[z][3];
    ct_rng r;
    ct_rng_seed(&r, 500 + (uint64_t)z);
    const size_t nx = (size_t)N * Kd * P, ny = (size_t)N * M * P, img_x = (size_t)Kd * P, img_y = (size_t)M * P;
    float *w = rnd((size_t)M * Kd, &r), *x = rnd(nx, &r), *b = rnd((size_t)M, &r);
    float *y = rnd(ny, &r), *y2 = rnd(ny, &r), *dx = rnd(nx, &r);
    double *ry = malloc(ny * sizeof(double)), *rdx = malloc(nx * sizeof(double));
    for (int n = 0; n < N; n++)
      for (int m = 0; m < M; m++)
        for (int p = 0; p < P; p++) {
          double acc = b[m];
          for (int k = 0; k < Kd; k++) acc += (double)w[(size_t)m * Kd + k] * x[((size_t)n * Kd + k) * P + p];
          ry[((size_t)n * M + m) * P + p] = acc;
        }
    const ct_status s = d->ops->conv_pw(d, false, M, Kd, P, N, w, x, img_x, P, b, y, img_y, P);
    CHECK(s == (runs ? CT_OK : CT_EUNSUPPORTED), "conv_pw %d: status %d, %s", z, (int)s,
          runs ? "this CPU runs it" : "declined here");
    if (s == CT_OK) {
      near(y, ry, NULL, ny, "conv_pw forward", 200 + z);
      /* the first image alone, then the rest: the same bits */
      CHECK(d->ops->conv_pw(d, false, M, Kd, P, 1, w, x, img_x, P, b, y2, img_y, P) == CT_OK, "first image");
      if (N > 1)
        CHECK(d->ops->conv_pw(d, false, M, Kd, P, N - 1, w, x + img_x, img_x, P, b, y2 + img_y, img_y, P) == CT_OK,
              "the rest");
      CHECK(memcmp(y, y2, ny * sizeof(float)) == 0, "conv_pw %d: a split batch gives other bits", z);
      /* x as one lowered Kd x N P matrix, and y written as one: the same sums, the same bits */
      const size_t cols = (size_t)N * P;
      float *xl = malloc(nx * sizeof(float)), *yl = malloc(ny * sizeof(float));
      for (int n = 0; n < N; n++)
        for (int k = 0; k < Kd; k++)
          memcpy(xl + (size_t)k * cols + (size_t)n * P, x + n * img_x + (size_t)k * P, (size_t)P * sizeof(float));
      CHECK(d->ops->conv_pw(d, false, M, Kd, P, N, w, xl, P, cols, b, y2, img_y, P) == CT_OK, "lowered x");
      CHECK(memcmp(y, y2, ny * sizeof(float)) == 0, "conv_pw %d: lowered x gives other bits", z);
      CHECK(d->ops->conv_pw(d, false, M, Kd, P, N, w, x, img_x, P, b, yl, P, cols) == CT_OK, "lowered y");
      bool same = true;
      for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++)
          same = same && !memcmp(yl + (size_t)m * cols + (size_t)n * P, y + n * img_y + (size_t)m * P,
                                 (size_t)P * sizeof(float));
      CHECK(same, "conv_pw %d: y written lowered differs", z);
      free(xl), free(yl);
      /* dx = w^T y, y standing for a gradient: the entry with Kd rows and M products, w read transposed */
      for (int n = 0; n < N; n++)
        for (int k = 0; k < Kd; k++)
          for (int p = 0; p < P; p++) {
            double acc = 0;
            for (int m = 0; m < M; m++) acc += (double)w[(size_t)m * Kd + k] * y[((size_t)n * M + m) * P + p];
            rdx[((size_t)n * Kd + k) * P + p] = acc;
          }
      CHECK(d->ops->conv_pw(d, true, Kd, M, P, N, w, y, img_y, P, NULL, dx, img_x, P) == CT_OK, "conv_pw %d transposed", z);
      near(dx, rdx, NULL, nx, "conv_pw transposed", 200 + z);
    }
    free(w), free(x), free(b), free(y), free(y2), free(dx), free(ry), free(rdx);
  }
}

/* The picks, at a GEMM rate of 100 GFLOP/s and 10 GB/s (a core of the machines here). */
static void test_choice(void) {
  const double gf = 100, gb = 10;
  const size_t cap = CT_LOWER_MAX_WORKSPACE;
  /* MobileNet v2's depthwise layers: group == channels */
  const shape dws[] = {{16, 32, 112, 112, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1},
                       {16, 96, 112, 112, 96, 96, 3, 3, 2, 2, 1, 1, 1, 1},
                       {16, 960, 7, 7, 960, 960, 3, 3, 1, 1, 1, 1, 1, 1},
                       {1, 5, 7, 7, 5, 5, 3, 3, 1, 1, 1, 1, 1, 1},
                       /* ResNeXt's 32 groups of 4 */
                       {16, 128, 56, 56, 128, 32, 3, 3, 1, 1, 1, 1, 1, 1}};
  for (size_t i = 0; i < sizeof dws / sizeof dws[0]; i++) {
    ct_conv_geom g = geom(&dws[i]);
    CHECK(ct_conv_geom_finish(&g), "fits");
    const ct_lowering t = ct_lower_choose(&g, g.N, gf, gb, cap);
    CHECK(t == CT_LOWER_DIRECT, "C %d G %d %dx%d: the model picks %s, not direct", g.C, g.G, g.H, g.W,
          ct_lowering_name(t));
  }
  /* group 2 (CaffeNet's conv2, 4 and 5), and dense layers: GEMMs */
  const shape gemms[] = {{16, 96, 27, 27, 256, 2, 5, 5, 1, 1, 2, 2, 1, 1},
                         {16, 384, 13, 13, 384, 2, 3, 3, 1, 1, 1, 1, 1, 1},
                         {16, 64, 56, 56, 64, 1, 3, 3, 1, 1, 1, 1, 1, 1},
                         {16, 64, 28, 28, 128, 2, 3, 3, 2, 2, 1, 1, 1, 1}};
  for (size_t i = 0; i < sizeof gemms / sizeof gemms[0]; i++) {
    ct_conv_geom g = geom(&gemms[i]);
    CHECK(ct_conv_geom_finish(&g), "fits");
    const ct_lowering t = ct_lower_choose(&g, g.N, gf, gb, cap);
    CHECK(t != CT_LOWER_DIRECT && t != CT_LOWER_POINTWISE, "C %d K %d G %d: the model picks %s, expected a GEMM type",
          g.C, g.K, g.G, ct_lowering_name(t));
  }
  /* ResNet's 7x7x512 3x3 layers, 8 images a partition: not TYPE2, at the balance of either host
   * where bench/zoo_bench_conv measured it the slowest of TYPE1, TYPE2 and WINOGRAD there (a
   * Zen 5: 193 GFLOP/s and 29 GB/s, TYPE2 15% behind WINOGRAD, TYPE1 within 5% of it; a Xeon:
   * 166 and 14.7, WINOGRAD forced in-net 1.35x faster forward than the TYPE2 the model took) */
  ct_conv_geom r5 = geom(&(shape){8, 512, 7, 7, 512, 1, 3, 3, 1, 1, 1, 1, 1, 1});
  CHECK(ct_conv_geom_finish(&r5), "fits");
  const double bal[][2] = {{193, 29}, {166, 14.7}};
  for (size_t i = 0; i < sizeof bal / sizeof bal[0]; i++) {
    const ct_lowering t = ct_lower_choose(&r5, 8, bal[i][0], bal[i][1], cap);
    CHECK(t != CT_LOWER_TYPE2, "7x7x512 3x3 at %g GFLOP/s, %g GB/s: the model picks %s", bal[i][0], bal[i][1],
          ct_lowering_name(t));
  }
  /* 1x1: POINTWISE on a large plane; a 1x1 image is always POINTWISE's one GEMM */
  ct_conv_geom big = geom(&(shape){16, 64, 56, 56, 256, 1, 1, 1, 1, 1, 0, 0, 1, 1});
  ct_conv_geom one = geom(&(shape){32, 1280, 1, 1, 1000, 1, 1, 1, 1, 1, 0, 0, 1, 1});
  CHECK(ct_conv_geom_finish(&big) && ct_conv_geom_finish(&one), "fits");
  CHECK(ct_lower_choose(&big, 16, gf, gb, cap) == CT_LOWER_POINTWISE, "56x56 1x1: %s",
        ct_lowering_name(ct_lower_choose(&big, 16, gf, gb, cap)));
  CHECK(ct_lower_choose(&one, 32, gf, gb, cap) == CT_LOWER_POINTWISE, "1x1 images: %s",
        ct_lowering_name(ct_lower_choose(&one, 32, gf, gb, cap)));
  /* CT_DIRECT=0 keeps the model to the GEMM types */
  ct_conv_geom g = geom(&dws[0]);
  ct_conv_geom_finish(&g);
  setenv("CT_DIRECT", "0", 1);
  CHECK(ct_lower_choose(&g, g.N, gf, gb, cap) != CT_LOWER_DIRECT, "CT_DIRECT=0 is obeyed");
  unsetenv("CT_DIRECT");
}

int main(void) {
  test_direct();
  test_pointwise();
  test_pw_entry();
  test_choice();
  return ct_check_report();
}
