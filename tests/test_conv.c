/* Every lowering type (CcT's types 1, 2, 3 and the 1x1 path) against the naive direct loops on a
 * zoo of shapes, whole and in partitions: forward, data gradient, weight gradient, bias
 * gradient. Also the layer (through the harness) against the reference, and its errors. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "harness.h"
#include "layers/conv.h"
#include "proto/prototxt.h"

typedef struct {
  int N, C, H, W, K, G, kh, kw, sh, sw, ph, pw, dh, dw;
} zoo_shape;

static const zoo_shape zoo[] = {
    /*N C  H   W  K  G kh kw sh sw ph pw dh dw */
    {2, 3, 5, 5, 4, 1, 3, 3, 1, 1, 0, 0, 1, 1},    {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1},
    {2, 3, 7, 6, 5, 1, 3, 3, 2, 2, 1, 1, 1, 1},    {1, 4, 9, 9, 6, 2, 3, 3, 1, 1, 1, 1, 1, 1},
    {3, 6, 5, 7, 6, 3, 3, 2, 1, 2, 1, 0, 1, 1},    {2, 4, 8, 8, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1},
    {1, 2, 9, 9, 3, 1, 3, 3, 1, 1, 2, 2, 2, 2},    {2, 3, 11, 7, 2, 1, 3, 3, 2, 1, 0, 1, 2, 3},
    {2, 5, 4, 6, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1},    {2, 6, 4, 6, 4, 2, 1, 1, 1, 1, 0, 0, 1, 1},
    {2, 3, 5, 5, 4, 1, 1, 1, 2, 2, 0, 0, 1, 1},    {1, 3, 5, 5, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1},
    {2, 3, 5, 5, 4, 1, 5, 5, 1, 1, 0, 0, 1, 1},    {1, 2, 4, 6, 3, 1, 4, 6, 1, 1, 0, 0, 1, 1},
    {1, 3, 13, 13, 8, 1, 11, 11, 4, 4, 0, 0, 1, 1}, {1, 3, 17, 17, 4, 1, 7, 7, 2, 2, 3, 3, 1, 1},
    {2, 8, 6, 6, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1},    {1, 4, 6, 6, 4, 2, 3, 3, 3, 3, 2, 2, 1, 1},
    {3, 1, 7, 5, 2, 1, 2, 4, 1, 3, 1, 2, 1, 1},    {1, 2, 3, 3, 2, 1, 3, 3, 1, 1, 2, 2, 1, 1},
    {1, 2, 5, 5, 3, 1, 3, 3, 1, 1, 4, 4, 3, 3},    {1, 2, 1, 9, 2, 1, 1, 3, 1, 1, 0, 1, 1, 1},
    {1, 2, 9, 1, 2, 1, 3, 1, 2, 1, 1, 0, 1, 1},    {4, 3, 6, 5, 6, 3, 2, 2, 2, 2, 0, 0, 1, 1},
    {1, 16, 8, 8, 32, 1, 3, 3, 1, 1, 1, 1, 1, 1},  {2, 3, 10, 10, 4, 1, 3, 3, 3, 2, 0, 1, 1, 2},
    {1, 1, 8, 8, 1, 1, 2, 2, 2, 2, 0, 0, 1, 1},    {1, 5, 7, 7, 10, 5, 3, 3, 1, 1, 1, 1, 2, 2},
    {2, 3, 6, 6, 3, 1, 6, 1, 1, 1, 0, 0, 1, 1},    {1, 2, 8, 7, 4, 2, 4, 3, 2, 3, 2, 1, 1, 2},
    /* batches that partitions do not divide, kernels equal to the input, wide and deep */
    {5, 3, 6, 6, 4, 1, 3, 3, 1, 1, 1, 1, 1, 1},    {7, 2, 5, 4, 3, 1, 5, 4, 1, 1, 0, 0, 1, 1},
    {3, 8, 4, 4, 2, 2, 3, 3, 1, 1, 1, 1, 1, 1},    {4, 12, 5, 5, 3, 1, 3, 3, 2, 2, 1, 1, 1, 1},
    {5, 4, 6, 6, 8, 4, 1, 1, 1, 1, 0, 0, 1, 1},    {3, 3, 9, 9, 6, 3, 5, 5, 2, 2, 2, 2, 1, 1},
    {2, 2, 7, 7, 2, 1, 7, 7, 1, 1, 3, 3, 1, 1},    {6, 1, 10, 3, 2, 1, 3, 3, 1, 1, 1, 1, 3, 1},
    {1, 3, 5, 5, 2, 1, 3, 3, 5, 5, 1, 1, 1, 1},    {2, 4, 3, 4, 2, 1, 2, 2, 1, 1, 1, 1, 2, 2},
    {1, 3, 6, 6, 3, 3, 1, 1, 1, 1, 0, 0, 1, 1},    {2, 2, 12, 3, 4, 2, 5, 1, 2, 1, 2, 0, 2, 1},
    /* output planes of CT_LOWER_DIRECT_PLANE or more: type 1 runs per-image GEMMs into y; and
     * H*OW of CT_LOWER_IMAGE_COLS or more with 2 images or more: type 2 runs image by image */
    {3, 3, 36, 34, 4, 1, 3, 3, 1, 1, 1, 1, 1, 1},  {2, 4, 70, 66, 6, 2, 5, 5, 2, 2, 2, 2, 1, 1},
    {1, 2, 40, 40, 3, 1, 3, 3, 1, 1, 2, 2, 2, 2},
    /* ... whose lowered image passes CT_LOWER_BAND_FLOATS: type 1 runs it in bands of output
     * rows (27 + 5; 29 + 21, grouped; 31 + 3, the last with the bottom padding) */
    {2, 3, 64, 64, 4, 1, 7, 7, 2, 2, 3, 3, 1, 1},  {1, 4, 50, 45, 6, 2, 5, 5, 1, 1, 2, 2, 1, 1},
    {1, 3, 67, 40, 4, 1, 7, 5, 2, 1, 3, 2, 1, 1},
    /* lowered data of CT_LOWER_CHUNK_FLOATS or more on small planes: type 1 runs a partition
     * in chunks of images (8 + 2 and 6 + 3 in one partition) */
    {10, 64, 12, 12, 8, 1, 5, 5, 1, 1, 0, 0, 1, 1}, {9, 96, 10, 10, 6, 2, 3, 3, 1, 1, 1, 1, 1, 1},
    /* WINOGRAD's tiles: odd planes (a last tile half outside), rows of four tiles and more with
     * a rest, no padding and a padding of 2 */
    {2, 5, 13, 13, 7, 1, 3, 3, 1, 1, 1, 1, 1, 1},  {2, 3, 19, 21, 4, 1, 3, 3, 1, 1, 0, 0, 1, 1},
    {1, 4, 11, 17, 6, 2, 3, 3, 1, 1, 2, 2, 1, 1},
};

static float *rand_buf(size_t n, ct_rng *r) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = ct_rng_gaussian(r, 0, 1);
  return p;
}

/* Worst |a - b| relative to the largest |b| (1 at least): one CHECK per tensor. */
static void check_same(const float *a, const float *b, size_t n, const char *what, int idx) {
  double scale = 1.0, worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < n; i++)
    if (fabs(b[i]) > scale) scale = fabs(b[i]);
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= worst)) {
      worst = d;
      at = i;
    }
  }
  CHECK(worst <= 1e-4 * scale, "zoo %d %s: element %zu differs by %g (scale %g): %g vs %g", idx, what, at, worst,
        scale, n ? a[at] : 0.0, n ? b[at] : 0.0);
}

static ct_conv_geom geom_of(const zoo_shape *z) {
  ct_conv_geom g = {z->N, z->C, z->H, z->W, z->K, z->G, z->kh, z->kw, z->sh, z->sw, z->ph, z->pw, z->dh, z->dw, 0, 0};
  return g;
}

/* Every lowering type (and the 1x1 path where it applies) against the naive loops, run the way
 * the layer runs it: the batch split into partitions of unequal size, each with its own
 * workspace, partition weight gradients summed afterwards. */
static void run_type(const ct_conv_geom *g, ct_lowering t, int nparts, const float *x, const float *w, const float *b,
                     const float *dy, float *y, float *dx, float *dw, float *db) {
  int sizes[3], n0 = 0;
  for (int i = 0; i < nparts; i++) sizes[i] = g->N / nparts + (i < g->N % nparts);
  size_t nw = (size_t)g->K * (g->C / g->G) * g->kh * g->kw;
  float *ws = malloc((ct_lower_workspace(g, t, sizes[0]) + 1) * sizeof(float));
  float *pw = calloc(nw + (size_t)g->K, sizeof(float));
  for (int i = 0; i < nparts; i++) {
    size_t xo = (size_t)n0 * g->C * g->H * g->W, yo = (size_t)n0 * g->K * g->OH * g->OW;
    ct_status s;
    if (y) {
      s = ct_lower_forward(g, t, sizes[i], x + xo, w, b, y + yo, ws);
      CHECK(s == CT_OK, "%s forward of partition %d: %s", ct_lowering_name(t), i, ct_status_name(s));
    }
    if (dy) {
      memset(pw, 0, (nw + (size_t)g->K) * sizeof(float));
      /* reuse the forward lowering when the forward of this partition just ran */
      s = ct_lower_backward(g, t, sizes[i], x + xo, w, dy + yo, dx ? dx + xo : NULL, dw ? pw : NULL,
                            db ? pw + nw : NULL, ws, y != NULL);
      CHECK(s == CT_OK, "%s backward of partition %d: %s", ct_lowering_name(t), i, ct_status_name(s));
      for (size_t k = 0; dw && k < nw; k++) dw[k] += pw[k];
      for (int k = 0; db && k < g->K; k++) db[k] += pw[nw + (size_t)k];
    }
    n0 += sizes[i];
  }
  free(ws);
  free(pw);
}

static void test_zoo(void) {
  int nzoo = (int)(sizeof zoo / sizeof zoo[0]);
  CHECK(nzoo >= 40, "the zoo has %d shapes", nzoo);
  int direct = 0, image2 = 0, chunk1 = 0; /* shapes on type 1's and type 2's per-image paths, type 1's chunks */
  int band1 = 0;                          /* ... type 1's bands */
  int wino = 0;
  for (int z = 0; z < nzoo; z++) {
    ct_conv_geom gz = geom_of(&zoo[z]);
    direct += ct_conv_geom_finish(&gz) && ct_lower_direct1(&gz);
    image2 += ct_conv_geom_finish(&gz) && ct_lower_by_image2(&gz, gz.N);
    chunk1 += ct_conv_geom_finish(&gz) && !ct_lower_direct1(&gz) && ct_lower_chunk1(&gz, gz.N) < gz.N;
    band1 += ct_conv_geom_finish(&gz) && ct_lower_direct1(&gz) && ct_lower_band1(&gz) < gz.OH;
    wino += ct_conv_geom_finish(&gz) && ct_lower_wino_applies(&gz);
  }
  CHECK(wino >= 10, "%d zoo shapes take WINOGRAD", wino);
  CHECK(direct >= 3, "%d zoo shapes reach type 1's per-image path", direct);
  CHECK(image2 >= 2, "%d zoo shapes reach type 2's per-image path", image2);
  CHECK(chunk1 >= 2, "%d zoo shapes reach type 1's chunks", chunk1);
  CHECK(band1 >= 3, "%d zoo shapes reach type 1's bands", band1);
  for (int z = 0; z < nzoo; z++) {
    ct_conv_geom g = geom_of(&zoo[z]);
    if (!ct_conv_geom_finish(&g)) {
      CHECK(0, "zoo %d does not fit", z);
      continue;
    }
    ct_rng r;
    ct_rng_seed(&r, 1000 + (uint64_t)z);
    size_t nx = (size_t)g.N * g.C * g.H * g.W, ny = (size_t)g.N * g.K * g.OH * g.OW;
    size_t nw = (size_t)g.K * (g.C / g.G) * g.kh * g.kw;
    float *x = rand_buf(nx, &r), *w = rand_buf(nw, &r), *b = rand_buf((size_t)g.K, &r), *dy = rand_buf(ny, &r);
    float *y0 = rand_buf(ny, &r), *y1 = rand_buf(ny, &r);
    float *dx0 = rand_buf(nx, &r), *dx1 = rand_buf(nx, &r);
    float *dw0 = rand_buf(nw, &r), *dw1 = malloc(nw * sizeof(float)), *dwinit = malloc(nw * sizeof(float));
    float *db0 = rand_buf((size_t)g.K, &r), *db1 = malloc((size_t)g.K * sizeof(float));
    float *dbinit = malloc((size_t)g.K * sizeof(float));
    memcpy(dwinit, dw0, nw * sizeof(float));
    memcpy(dbinit, db0, (size_t)g.K * sizeof(float));
    ct_conv_forward_naive(&g, x, w, b, y0);
    ct_conv_backward_naive(&g, x, w, dy, dx0, dw0, db0);
    const ct_lowering types[] = {CT_LOWER_TYPE1, CT_LOWER_TYPE2, CT_LOWER_TYPE3, CT_LOWER_POINTWISE,
                                 CT_LOWER_WINOGRAD, CT_LOWER_DIRECT};
    for (int ti = 0; ti < 6; ti++) {
      ct_lowering t = types[ti];
      if (t == CT_LOWER_POINTWISE && !ct_conv_is_pointwise(&g)) continue;
      if (t == CT_LOWER_WINOGRAD && !ct_lower_wino_applies(&g)) continue;
      for (int nparts = 1; nparts <= 3 && nparts <= g.N; nparts += 2) {
        char what[96];
        /* the weight and bias gradients accumulate: both start from the same nonzero values */
        memcpy(dw1, dwinit, nw * sizeof(float));
        memcpy(db1, dbinit, (size_t)g.K * sizeof(float));
        run_type(&g, t, nparts, x, w, b, dy, y1, dx1, dw1, db1);
        snprintf(what, sizeof what, "%s, %d partition(s): forward", ct_lowering_name(t), nparts);
        check_same(y1, y0, ny, what, z);
        snprintf(what, sizeof what, "%s, %d partition(s): data gradient", ct_lowering_name(t), nparts);
        check_same(dx1, dx0, nx, what, z);
        snprintf(what, sizeof what, "%s, %d partition(s): weight gradient", ct_lowering_name(t), nparts);
        check_same(dw1, dw0, nw, what, z);
        snprintf(what, sizeof what, "%s, %d partition(s): bias gradient", ct_lowering_name(t), nparts);
        check_same(db1, db0, (size_t)g.K, what, z);
      }
      /* each output alone, and no bias */
      float *y2 = rand_buf(ny, &r), *dx2 = rand_buf(nx, &r);
      ct_conv_forward_naive(&g, x, w, NULL, y0);
      run_type(&g, t, 1, x, w, NULL, NULL, y2, NULL, NULL, NULL);
      check_same(y2, y0, ny, "forward without bias", z);
      run_type(&g, t, 1, x, w, NULL, dy, NULL, dx2, NULL, NULL);
      check_same(dx2, dx0, nx, "data gradient alone", z);
      /* the weight and bias gradients alone (a first layer's: no data gradient) */
      memcpy(dw1, dwinit, nw * sizeof(float));
      memcpy(db1, dbinit, (size_t)g.K * sizeof(float));
      run_type(&g, t, g.N > 1 ? 2 : 1, x, w, NULL, dy, NULL, NULL, dw1, db1);
      check_same(dw1, dw0, nw, "weight gradient alone", z);
      check_same(db1, db0, (size_t)g.K, "bias gradient alone", z);
      ct_conv_forward_naive(&g, x, w, b, y0);
      free(y2);
      free(dx2);
    }
    free(x), free(w), free(b), free(dy), free(y0), free(y1), free(dx0), free(dx1);
    free(dw0), free(dw1), free(db0), free(db1), free(dwinit), free(dbinit);
  }
}

/* WINOGRAD in blocks of tile rows (ct_wino_block, the CPU driver's path): blocks of one row of
 * tiles, of a few rows that do not divide an image's rows (a block ends inside an image and the
 * next one adds onto the two rows of dx they share), of several whole small images, and the
 * whole partition; odd planes, padding 0, 1 and 2, batch 1, channels not a multiple of 16,
 * many groups. Forward and every gradient against the naive loops, whole and in partitions;
 * the weight gradient, summed over the blocks in a fixed order, the same bit for bit when run
 * again. */
static void test_wino_blocks(void) {
  ct_lower_wino_settings(0, true); /* the blocked path, whatever the environment asked for */
  static const zoo_shape shapes[] = {
      /*N  C   H   W   K  G kh kw sh sw ph pw dh dw */
      {1, 17, 15, 15, 19, 1, 3, 3, 1, 1, 1, 1, 1, 1}, {3, 20, 9, 13, 12, 1, 3, 3, 1, 1, 0, 0, 1, 1},
      {2, 24, 14, 14, 16, 8, 3, 3, 1, 1, 1, 1, 1, 1}, {4, 6, 7, 7, 10, 2, 3, 3, 1, 1, 1, 1, 1, 1},
      {2, 3, 3, 3, 2, 1, 3, 3, 1, 1, 0, 0, 1, 1},     {2, 9, 28, 30, 7, 1, 3, 3, 1, 1, 1, 1, 1, 1},
      {1, 5, 6, 40, 4, 1, 3, 3, 1, 1, 2, 2, 1, 1},    {5, 33, 5, 6, 18, 3, 3, 3, 1, 1, 1, 0, 1, 1},
  };
  static const char *const tiles[] = {"1", "7", "13", "40", "100000", NULL};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    ct_conv_geom g = geom_of(&shapes[si]);
    CHECK(ct_conv_geom_finish(&g) && ct_lower_wino_applies(&g), "wino block shape %zu fits", si);
    ct_rng r;
    ct_rng_seed(&r, 5000 + (uint64_t)si);
    const size_t nx = (size_t)g.N * g.C * g.H * g.W, ny = (size_t)g.N * g.K * g.OH * g.OW;
    const size_t nw = (size_t)g.K * (g.C / g.G) * 9;
    float *x = rand_buf(nx, &r), *w = rand_buf(nw, &r), *b = rand_buf((size_t)g.K, &r), *dy = rand_buf(ny, &r);
    float *y0 = malloc(ny * sizeof(float)), *dx0 = malloc(nx * sizeof(float));
    float *dw0 = calloc(nw, sizeof(float)), *db0 = calloc((size_t)g.K, sizeof(float));
    ct_conv_forward_naive(&g, x, w, b, y0);
    ct_conv_backward_naive(&g, x, w, dy, dx0, dw0, db0);
    float *y1 = malloc(ny * sizeof(float)), *dx1 = malloc(nx * sizeof(float));
    float *dw1 = malloc(nw * sizeof(float)), *db1 = malloc((size_t)g.K * sizeof(float));
    float *dw2 = malloc(nw * sizeof(float));
    for (int ti = 0; ti < (int)(sizeof tiles / sizeof tiles[0]); ti++) {
      ct_lower_wino_settings(tiles[ti] ? strtol(tiles[ti], NULL, 10) : 0, true);
      const ct_wino_block B = ct_lower_wino_block(&g, g.N);
      CHECK(B.workspace <= ct_lower_workspace(&g, CT_LOWER_WINOGRAD, g.N), "shape %zu: blocked workspace", si);
      CHECK(ct_lower_workspace_on(ct_driver_cpu(), &g, CT_LOWER_WINOGRAD, g.N) == B.workspace,
            "shape %zu: the CPU asks for the blocked workspace", si);
      for (int nparts = 1; nparts <= 3 && nparts <= g.N; nparts += 2) {
        char what[128];
        memset(dw1, 0, nw * sizeof(float));
        memset(db1, 0, (size_t)g.K * sizeof(float));
        for (size_t i = 0; i < ny; i++) y1[i] = NAN;
        for (size_t i = 0; i < nx; i++) dx1[i] = NAN; /* dx is overwritten: every element */
        run_type(&g, CT_LOWER_WINOGRAD, nparts, x, w, b, dy, y1, dx1, dw1, db1);
        const int z = 100 + (int)si;
        snprintf(what, sizeof what, "wino blocks of %s tiles (%d rows), %d partition(s): forward",
                 tiles[ti] ? tiles[ti] : "default", B.rows, nparts);
        check_same(y1, y0, ny, what, z);
        snprintf(what, sizeof what, "wino blocks of %s tiles, %d partition(s): data gradient",
                 tiles[ti] ? tiles[ti] : "default", nparts);
        check_same(dx1, dx0, nx, what, z);
        snprintf(what, sizeof what, "wino blocks of %s tiles, %d partition(s): weight gradient",
                 tiles[ti] ? tiles[ti] : "default", nparts);
        check_same(dw1, dw0, nw, what, z);
        snprintf(what, sizeof what, "wino blocks of %s tiles, %d partition(s): bias gradient",
                 tiles[ti] ? tiles[ti] : "default", nparts);
        check_same(db1, db0, (size_t)g.K, what, z);
        /* again, without the forward before it (the kernel transformed by the backward) */
        memset(dw2, 0, nw * sizeof(float));
        run_type(&g, CT_LOWER_WINOGRAD, nparts, x, w, b, dy, NULL, NULL, dw2, NULL);
        CHECK(memcmp(dw1, dw2, nw * sizeof(float)) == 0, "shape %zu, %s tiles: the weight gradient is reproducible",
              si, tiles[ti] ? tiles[ti] : "default");
        for (size_t i = 0; i < nx; i++) dx1[i] = NAN;
        run_type(&g, CT_LOWER_WINOGRAD, nparts, x, w, b, dy, NULL, dx1, NULL, NULL);
        snprintf(what, sizeof what, "wino blocks of %s tiles, %d partition(s): data gradient alone",
                 tiles[ti] ? tiles[ti] : "default", nparts);
        check_same(dx1, dx0, nx, what, z);
      }
    }
    ct_lower_wino_settings(0, true);
    free(x), free(w), free(b), free(dy), free(y0), free(dx0), free(dw0), free(db0);
    free(y1), free(dx1), free(dw1), free(db1), free(dw2);
  }
}

/* The layer (parsed parameters, blobs, the GEMM path) against the reference loops. */
static void test_layer(void) {
  static const struct {
    const char *text;
    int shape[4];
    int G, kh, kw, sh, sw, ph, pw, dh, dw;
  } cases[] = {
      {"num_output: 4 kernel_size: 3", {2, 3, 6, 5}, 1, 3, 3, 1, 1, 0, 0, 1, 1},
      {"num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 3", {2, 3, 7, 7}, 3, 3, 3, 2, 2, 1, 1, 1, 1},
      {"num_output: 2 kernel_size: 3 kernel_size: 2 stride: 1 stride: 2 pad: 2 pad: 0 dilation: 2",
       {1, 2, 6, 7}, 1, 3, 2, 1, 2, 2, 0, 2, 2},
      {"num_output: 3 kernel_h: 1 kernel_w: 3 stride_h: 2 stride_w: 1 pad_h: 0 pad_w: 1 dilation: 3",
       {2, 2, 5, 8}, 1, 1, 3, 2, 1, 0, 1, 3, 3},
      {"num_output: 5 kernel_size: 1", {2, 4, 3, 3}, 1, 1, 1, 1, 1, 0, 0, 1, 1},
  };
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    char text[512], eb[1024];
    snprintf(text, sizeof text,
             "type: \"Convolution\" convolution_param { %s weight_filler { type: \"gaussian\" std: 1 } "
             "bias_filler { type: \"gaussian\" std: 1 } }",
             cases[ci].text);
    int naxes = 4;
    ct_harness *h = ctk_create(text, 1, &naxes, cases[ci].shape, 0, 5, eb, sizeof eb);
    CHECK(h != NULL, "layer case %zu: %s", ci, eb);
    if (!h) continue;
    ct_conv_geom g = {cases[ci].shape[0], cases[ci].shape[1], cases[ci].shape[2], cases[ci].shape[3],
                      0, cases[ci].G, cases[ci].kh, cases[ci].kw, cases[ci].sh, cases[ci].sw,
                      cases[ci].ph, cases[ci].pw, cases[ci].dh, cases[ci].dw, 0, 0};
    int wshape[8], bshape[8], yshape[8];
    ctk_shape(h, 2, 0, wshape);
    ctk_shape(h, 2, 1, bshape);
    g.K = wshape[0];
    ct_conv_geom_finish(&g);
    int ny_axes = ctk_shape(h, 1, 0, yshape);
    CHECK(ny_axes == 4 && yshape[0] == g.N && yshape[1] == g.K && yshape[2] == g.OH && yshape[3] == g.OW &&
              wshape[1] == g.C / g.G && wshape[2] == g.kh && wshape[3] == g.kw && bshape[0] == g.K,
          "layer case %zu: shapes (top %dx%dx%dx%d, expected %dx%dx%dx%d)", ci, yshape[0], yshape[1], yshape[2],
          yshape[3], g.N, g.K, g.OH, g.OW);
    ct_rng r;
    ct_rng_seed(&r, 31 + ci);
    size_t nx = (size_t)g.N * g.C * g.H * g.W, ny = (size_t)g.N * g.K * g.OH * g.OW;
    size_t nw = (size_t)g.K * (g.C / g.G) * g.kh * g.kw;
    float *x = ctk_data(h, 0, 0);
    for (size_t i = 0; i < nx; i++) x[i] = ct_rng_gaussian(&r, 0, 1);
    CHECK(ctk_forward(h, eb, sizeof eb) == 0, "layer case %zu forward: %s", ci, eb);
    float *y0 = malloc(ny * sizeof(float)), *dx0 = malloc(nx * sizeof(float));
    float *dw0 = calloc(nw, sizeof(float)), *db0 = calloc((size_t)g.K, sizeof(float));
    const float *w = ctk_data(h, 2, 0), *b = ctk_data(h, 2, 1);
    ct_conv_forward_naive(&g, x, w, b, y0);
    check_same(ctk_data(h, 1, 0), y0, ny, "layer forward", (int)ci);
    float *dy = ctk_diff(h, 1, 0);
    for (size_t i = 0; i < ny; i++) dy[i] = ct_rng_gaussian(&r, 0, 1);
    ctk_backward(h, 1);
    ct_conv_backward_naive(&g, x, w, dy, dx0, dw0, db0);
    check_same(ctk_diff(h, 0, 0), dx0, nx, "layer data gradient", (int)ci);
    check_same(ctk_diff(h, 2, 0), dw0, nw, "layer weight gradient", (int)ci);
    check_same(ctk_diff(h, 2, 1), db0, (size_t)g.K, "layer bias gradient", (int)ci);
    free(y0), free(dx0), free(dw0), free(db0);
    ctk_free(h);
  }
}

/* Runs setup + reshape of a Convolution layer by hand, for the status code the harness hides. */
static void expect_error(const char *param, int naxes, const int *shape, ct_status want, const char *needle) {
  char text[512];
  snprintf(text, sizeof text, "name: \"c1\" type: \"Convolution\" convolution_param { %s }", param);
  ct_error err = {0};
  ProtobufCMessage *m = NULL;
  if (ct_prototxt_parse(text, strlen(text), "<test>", &caffe__layer_parameter__descriptor, &m, &err)) {
    CHECK(0, "{%s} does not parse: %s", param, err.msg);
    return;
  }
  ct_tensor *bottom = ct_tensor_create(), *top = ct_tensor_create();
  bool prop = true;
  ct_layer l = {0};
  l.ops = ct_layer_find("Convolution");
  l.lp = (Caffe__LayerParameter *)m;
  l.name = "c1";
  l.nbottom = l.ntop = 1;
  l.bottom = &bottom;
  l.top = &top;
  l.propagate_down = &prop;
  ct_status s = ct_tensor_reshape(bottom, naxes, shape, &err);
  if (s == CT_OK) s = l.ops->setup(&l, &err);
  if (s == CT_OK) s = l.ops->reshape(&l, &err);
  CHECK(s == want && strstr(err.msg, needle) && strstr(err.msg, "c1"),
        "{%s} should fail with %s (\"%s\"), got %s: \"%s\"", param, ct_status_name(want), needle,
        ct_status_name(s), err.msg);
  if (l.ops->destroy) l.ops->destroy(&l);
  for (int i = 0; i < l.nblobs; i++) ct_tensor_free(l.blobs[i]);
  free(l.blobs);
  free(l.param_propagate_down);
  ct_tensor_free(bottom);
  ct_tensor_free(top);
  protobuf_c_message_free_unpacked(m, NULL);
}

static void test_errors(void) {
  int s4[4] = {2, 4, 6, 6}, s5[5] = {2, 4, 3, 6, 6}, s3[3] = {2, 4, 6};
  expect_error("kernel_size: 3", 4, s4, CT_EINVAL, "num_output");
  expect_error("num_output: 4", 4, s4, CT_EINVAL, "kernel_size");
  expect_error("num_output: 4 kernel_size: 3 kernel_h: 3 kernel_w: 3", 4, s4, CT_EINVAL, "not both");
  expect_error("num_output: 4 kernel_h: 3", 4, s4, CT_EINVAL, "together");
  expect_error("num_output: 4 kernel_size: 3 kernel_size: 3 kernel_size: 3", 4, s4, CT_EINVAL, "once per spatial");
  expect_error("num_output: 4 kernel_size: 3 stride: 0", 4, s4, CT_EINVAL, "stride");
  expect_error("num_output: 4 kernel_size: 0", 4, s4, CT_EINVAL, "nonzero");
  expect_error("num_output: 4 kernel_size: 3 group: 3", 4, s4, CT_EINVAL, "multiple of group");
  expect_error("num_output: 5 kernel_size: 3 group: 2", 4, s4, CT_EINVAL, "multiple of group");
  expect_error("num_output: 4 kernel_size: 3 axis: 2", 4, s4, CT_EUNSUPPORTED, "axis");
  expect_error("num_output: 4 kernel_size: 3", 5, s5, CT_EUNSUPPORTED, "2-D");
  expect_error("num_output: 4 kernel_size: 3", 3, s3, CT_EUNSUPPORTED, "2-D");
  expect_error("num_output: 4 kernel_size: 7", 4, s4, CT_ESHAPE, "does not fit");
  expect_error("num_output: 4 kernel_size: 3 dilation: 3", 4, s4, CT_ESHAPE, "does not fit");
  expect_error("num_output: 4 kernel_size: 3 pad: 1 pad_h: 1 pad_w: 1", 4, s4, CT_EINVAL, "not both");
}

int main(void) {
  test_zoo();
  test_wino_blocks();
  test_layer();
  test_errors();
  return ct_check_report();
}
