/* WINOGRAD4 (F(4x4, 3x3), lowering.h) against the direct loops (layers/conv.c's naive reference):
 * forward, data gradient, weight and bias gradients on a zoo of shapes (planes of 1 to 30 rows
 * and columns, square and not, padding 0-2, channels not multiples of 8, groups 1 and 2,
 * batches 1 and 3), whole and in partitions, in blocks of the default size and of 1, 3 and 7
 * tiles (blocks that split an image, blocks that hold several), backward with and without the
 * forward's workspace (`reuse`), each gradient alone. Within wino4_tol.h's tolerance. Then the
 * layer: `lowering: WINOGRAD4` (CPU, and CPU + emu partitions, Convolution and Deconvolution)
 * against the reference and TYPE1, its refusals, the cost model's switches, and a plan on a
 * driver without conv_wino4_block. (The emu driver runs the steps bit for bit as the CPU:
 * test_driver_nn.c.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "harness.h"
#include "layers/conv.h"
#include "wino4_tol.h"

static const ct_lowering W4 = CT_LOWER_WINOGRAD4;

static float *rand_buf(size_t n, ct_rng *r) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = ct_rng_gaussian(r, 0, 1);
  return p;
}

static float *nan_buf(size_t n) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = NAN;
  return p;
}

/* The worst |a - ref| over sqrt(L) max |ref|: what WINO4_TOL bounds for outputs that sum L
 * products (a NaN counts as infinitely wrong). */
static double err_ratio(const float *a, const float *ref, size_t n, double L, size_t *at) {
  double scale = 0, worst = 0;
  *at = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)ref[i]));
  for (size_t i = 0; i < n; i++) {
    const double d = fabs((double)a[i] - ref[i]);
    if (!(d <= worst)) {
      worst = d != d ? INFINITY : d;
      *at = i;
    }
  }
  return worst / (sqrt(L) * (scale > 0 ? scale : 1));
}

static double worst_seen; /* over every comparison: the margin WINO4_TOL leaves */

static void expect_close(const float *a, const float *ref, size_t n, double L, const char *what) {
  size_t at;
  const double e = err_ratio(a, ref, n, L, &at);
  if (e > worst_seen) worst_seen = e;
  CHECK(e <= WINO4_TOL, "%s: element %zu is %g, reference %g (%.3g sqrt(%g) max|ref|, allowed %g)", what, at,
        n ? a[at] : 0.0, n ? ref[at] : 0.0, e, L, WINO4_TOL);
}

/* ---------------------------------------------------------------- the steps, on the CPU */

typedef struct zshape {
  int N, C, H, W, K, G, pad;
} zshape;

typedef struct refs {
  ct_conv_geom g;
  size_t nx, ny, nw;
  float *x, *w, *b, *dy, *dw_init, *db_init; /* inputs; the gradients accumulate onto *_init */
  float *y, *dx, *dw, *db;                   /* the reference's */
} refs;

static bool refs_make(const zshape *z, uint64_t seed, refs *r) {
  ct_conv_geom g = {z->N, z->C, z->H, z->W, z->K, z->G, 3, 3, 1, 1, z->pad, z->pad, 1, 1, 0, 0};
  if (!ct_conv_geom_finish(&g)) return false;
  ct_rng rng;
  ct_rng_seed(&rng, seed);
  r->g = g;
  r->nx = (size_t)g.N * g.C * g.H * g.W, r->ny = (size_t)g.N * g.K * g.OH * g.OW;
  r->nw = (size_t)g.K * (g.C / g.G) * 9;
  r->x = rand_buf(r->nx, &rng), r->w = rand_buf(r->nw, &rng), r->b = rand_buf((size_t)g.K, &rng);
  r->dy = rand_buf(r->ny, &rng);
  r->dw_init = rand_buf(r->nw, &rng), r->db_init = rand_buf((size_t)g.K, &rng);
  r->y = malloc(r->ny * sizeof(float)), r->dx = malloc(r->nx * sizeof(float));
  r->dw = malloc(r->nw * sizeof(float)), r->db = malloc((size_t)g.K * sizeof(float));
  memcpy(r->dw, r->dw_init, r->nw * sizeof(float));
  memcpy(r->db, r->db_init, (size_t)g.K * sizeof(float));
  ct_conv_forward_naive(&g, r->x, r->w, r->b, r->y);
  ct_conv_backward_naive(&g, r->x, r->w, r->dy, r->dx, r->dw, r->db);
  return true;
}

static void refs_free(refs *r) {
  free(r->x), free(r->w), free(r->b), free(r->dy), free(r->dw_init), free(r->db_init);
  free(r->y), free(r->dx), free(r->dw), free(r->db);
}

/* One run of WINOGRAD4 the way the layer runs it: the batch in nparts partitions of unequal
 * size, each with its own workspace (NaN where nothing was written), partition gradients summed
 * afterwards. fwd: the forward runs first (and backward reuses its workspace when `reuse`);
 * without it, or without reuse, the workspace is NaN again before backward. Outputs that are
 * NULL are not asked for. */
static void run4(const refs *r, int nparts, bool fwd, bool reuse, float *y, float *dx, float *dw, float *db) {
  const ct_conv_geom *g = &r->g;
  int sizes[3], n0 = 0;
  for (int i = 0; i < nparts; i++) sizes[i] = g->N / nparts + (i < g->N % nparts);
  const size_t nws = ct_lower_workspace(g, W4, sizes[0]);
  CHECK(ct_lower_workspace_on(ct_driver_cpu(), g, W4, sizes[0]) == nws &&
            nws == ct_lower_wino4_block(g, sizes[0]).workspace,
        "the CPU's WINOGRAD4 workspace is its block's");
  float *ws = malloc((nws + 1) * sizeof(float));
  float *pw = malloc((r->nw + (size_t)g->K) * sizeof(float));
  for (int i = 0; i < nparts; i++) {
    const size_t xo = (size_t)n0 * g->C * g->H * g->W, yo = (size_t)n0 * g->K * g->OH * g->OW;
    for (size_t k = 0; k <= nws; k++) ws[k] = NAN;
    ct_status s;
    if (fwd) {
      s = ct_lower_forward(g, W4, sizes[i], r->x + xo, r->w, r->b, y + yo, ws);
      CHECK(s == CT_OK, "forward of partition %d: %s", i, ct_status_name(s));
      if (!reuse)
        for (size_t k = 0; k <= nws; k++) ws[k] = NAN;
    }
    if (dx || dw || db) {
      memset(pw, 0, (r->nw + (size_t)g->K) * sizeof(float));
      s = ct_lower_backward(g, W4, sizes[i], r->x + xo, r->w, r->dy + yo, dx ? dx + xo : NULL, dw ? pw : NULL,
                            db ? pw + r->nw : NULL, ws, fwd && reuse);
      CHECK(s == CT_OK, "backward of partition %d: %s", i, ct_status_name(s));
      for (size_t k = 0; dw && k < r->nw; k++) dw[k] += pw[k];
      for (int k = 0; db && k < g->K; k++) db[k] += pw[r->nw + (size_t)k];
    }
    n0 += sizes[i];
  }
  free(ws);
  free(pw);
}

/* Every output of one run against the reference; `what` names the run. */
static void check_run(const refs *r, int nparts, bool fwd, bool reuse, const char *what) {
  const ct_conv_geom *g = &r->g;
  float *y = nan_buf(r->ny), *dx = nan_buf(r->nx), *dw = malloc(r->nw * sizeof(float));
  float *db = malloc((size_t)g->K * sizeof(float));
  memcpy(dw, r->dw_init, r->nw * sizeof(float));
  memcpy(db, r->db_init, (size_t)g->K * sizeof(float));
  run4(r, nparts, fwd, reuse, fwd ? y : NULL, dx, dw, db);
  char m[256];
  const double Cg = g->C / g->G, Kg = g->K / g->G, P = (double)g->N * g->OH * g->OW;
  if (fwd) {
    snprintf(m, sizeof m, "%s: forward", what);
    expect_close(y, r->y, r->ny, 9 * Cg, m);
  }
  snprintf(m, sizeof m, "%s: data gradient", what);
  expect_close(dx, r->dx, r->nx, 9 * Kg, m);
  snprintf(m, sizeof m, "%s: weight gradient", what);
  expect_close(dw, r->dw, r->nw, P, m);
  snprintf(m, sizeof m, "%s: bias gradient", what);
  expect_close(db, r->db, (size_t)g->K, P, m);
  /* each gradient alone (nothing of the others' steps to lean on) */
  for (size_t i = 0; i < r->nx; i++) dx[i] = NAN;
  run4(r, nparts, false, false, NULL, dx, NULL, NULL);
  snprintf(m, sizeof m, "%s: data gradient alone", what);
  expect_close(dx, r->dx, r->nx, 9 * Kg, m);
  memcpy(dw, r->dw_init, r->nw * sizeof(float));
  run4(r, nparts, false, false, NULL, NULL, dw, NULL);
  snprintf(m, sizeof m, "%s: weight gradient alone", what);
  expect_close(dw, r->dw, r->nw, P, m);
  free(y), free(dx), free(dw), free(db);
}

typedef struct block_counts {
  int split, several, mixed; /* runs whose blocks split an image; hold several; and a block after */
} block_counts;

/* One shape: default blocks whole and in partitions, then blocks of 1, 3 and 7 tiles with and
 * without reuse. */
static void run_shape(const zshape *z, uint64_t seed, block_counts *bc) {
  refs r;
  if (!refs_make(z, seed, &r)) {
    CHECK(0, "shape N%d C%d %dx%d does not fit", z->N, z->C, z->H, z->W);
    return;
  }
  const ct_wino_strides s = ct_lower_wino4_strides(&r.g, r.g.N);
  char what[160];
  ct_lower_wino_settings(0, true);
  for (int nparts = 1; nparts <= r.g.N; nparts += 2) {
    snprintf(what, sizeof what, "N%d C%d %dx%d K%d G%d pad %d, %d partition(s), default blocks", z->N, z->C, z->H,
             z->W, z->K, z->G, z->pad, nparts);
    check_run(&r, nparts, true, true, what);
  }
  static const long tiles[] = {1, 3, 7};
  for (int t = 0; t < 3; t++) {
    ct_lower_wino_settings(tiles[t], true);
    const ct_wino_block B = ct_lower_wino4_block(&r.g, r.g.N);
    bc->split += B.rows < s.TH;
    bc->several += B.rows > s.TH && r.g.N > 1;
    bc->mixed += B.rows > s.TH && s.TH * r.g.N > B.rows;
    for (int reuse = 1; reuse >= 0; reuse--) {
      snprintf(what, sizeof what, "N%d C%d %dx%d K%d G%d pad %d, blocks of %ld tiles (%d rows), reuse %d", z->N,
               z->C, z->H, z->W, z->K, z->G, z->pad, tiles[t], B.rows, reuse);
      check_run(&r, 1, true, reuse, what);
    }
  }
  ct_lower_wino_settings(0, true);
  refs_free(&r);
}

static void test_zoo(void) {
  static const int sizes[] = {1, 2, 3, 5, 7, 8, 13, 14, 17, 30};
  /* (C, K) for one group and for two (C/G, K/G: 3, 5, 17, 32) */
  static const int ck1[][2] = {{3, 5}, {5, 17}, {17, 3}, {64, 64}, {3, 64}, {64, 17}};
  static const int ck2[][2] = {{6, 10}, {34, 6}, {10, 34}, {64, 64}};
  block_counts bc = {0, 0, 0};
  for (int i = 0; i < 10; i++)
    for (int v = 0; v < 2; v++) {
      zshape z;
      z.H = sizes[i];
      z.W = v ? sizes[(7 * i + 3) % 10] : z.H; /* square, then not */
      z.pad = (i + v) % 3;
      while (z.H + 2 * z.pad < 3 || z.W + 2 * z.pad < 3) z.pad++;
      z.G = (i + v) % 2 ? 2 : 1;
      const int *ck = z.G == 1 ? ck1[(2 * i + v) % 6] : ck2[(i + v) % 4];
      z.C = ck[0], z.K = ck[1];
      z.N = (i / 2 + v) % 2 ? 3 : 1;
      run_shape(&z, 7000 + 10 * (uint64_t)i + (uint64_t)v, &bc);
    }
  /* deep layers, where F(4x4, 3x3)'s rounding is largest (sums of 9 x 256 and 9 x 512 products);
   * a plane of 30 x 30 with 64 channels in and out */
  static const zshape deep[] = {{2, 256, 14, 14, 96, 1, 1}, {1, 512, 7, 7, 64, 1, 1}, {3, 64, 30, 30, 64, 1, 1}};
  for (int i = 0; i < 3; i++) run_shape(&deep[i], 7500 + (uint64_t)i, &bc);
  CHECK(bc.split >= 5 && bc.several >= 5 && bc.mixed >= 3,
        "blocks that split an image: %d runs; that hold several images: %d runs, %d with more blocks after", bc.split,
        bc.several, bc.mixed);
}

/* The tolerance is tight enough to see a small error: one output off by 1% of the largest. */
static void test_tolerance_sees(void) {
  const zshape z = {3, 64, 14, 13, 64, 1, 1};
  refs r;
  if (!refs_make(&z, 99, &r)) return;
  float *y = malloc(r.ny * sizeof(float));
  run4(&r, 1, true, true, y, NULL, NULL, NULL);
  size_t at, peak = 0;
  for (size_t i = 0; i < r.ny; i++)
    if (fabs(r.y[i]) > fabs(r.y[peak])) peak = i;
  const double ok = err_ratio(y, r.y, r.ny, 9.0 * z.C, &at);
  y[r.ny / 2] += 0.01f * fabsf(r.y[peak]);
  const double off = err_ratio(y, r.y, r.ny, 9.0 * z.C, &at);
  CHECK(ok <= WINO4_TOL && off > WINO4_TOL, "an output off by 1%% of the largest stands out (%.3g, then %.3g)", ok,
        off);
  free(y);
  refs_free(&r);
}

/* ---------------------------------------------------------------- the layer */

/* One layer (text's body, `lowering: X` put in) on a plan over `devices` (NULL: the CPU) with
 * bottom shape s, after a forward and a backward from seeded inputs: its top, bottom diff and
 * parameter diffs, in *out (freed with ctk_free). */
static ct_harness *layer_run(const char *body, const char *lowering, const int s[4], const char *devices) {
  char text[1024], eb[1024];
  snprintf(text, sizeof text, "name: \"lw\" lowering: %s %s", lowering, body);
  int naxes = 4;
  ct_harness *h = ctk_create_on(text, 1, &naxes, s, 0, 11, devices, eb, sizeof eb);
  CHECK(h != NULL, "%s on %s: %s", lowering, devices ? devices : "cpu", eb);
  if (!h) return NULL;
  ct_rng r;
  ct_rng_seed(&r, 12);
  const size_t nx = (size_t)s[0] * s[1] * s[2] * s[3];
  float *x = ctk_data(h, 0, 0);
  for (size_t i = 0; i < nx; i++) x[i] = ct_rng_gaussian(&r, 0, 1);
  CHECK(ctk_forward(h, eb, sizeof eb) == 0, "%s forward: %s", lowering, eb);
  int ys[8];
  const int na = ctk_shape(h, 1, 0, ys);
  size_t ny = 1;
  for (int i = 0; i < na; i++) ny *= (size_t)ys[i];
  float *dy = ctk_diff(h, 1, 0);
  for (size_t i = 0; i < ny; i++) dy[i] = ct_rng_gaussian(&r, 0, 1);
  CHECK(ctk_backward(h, 1) == 0, "%s backward", lowering);
  return h;
}

static size_t count_of(ct_harness *h, int which, int i) {
  int s[8];
  const int na = ctk_shape(h, which, i, s);
  size_t n = 1;
  for (int k = 0; k < na; k++) n *= (size_t)s[k];
  return n;
}

/* `lowering: WINOGRAD4` against TYPE1 (the same weights, inputs and top diffs): Convolution and
 * Deconvolution, on the CPU and on a CPU + emu plan; the layer says it runs "wino4". L: the
 * length of the forward's and data gradient's sums (the larger), P: the weight gradient's. */
static void test_layer(void) {
  static const struct {
    const char *body;
    int shape[4];
    double L, P;
  } cases[] = {
      {"type: \"Convolution\" convolution_param { num_output: 10 kernel_size: 3 pad: 1 group: 2 weight_filler { "
       "type: \"gaussian\" std: 1 } bias_filler { type: \"gaussian\" std: 1 } }",
       {3, 6, 9, 11}, 9 * 5, 3 * 9 * 11},
      {"type: \"Convolution\" convolution_param { num_output: 17 kernel_size: 3 weight_filler { type: \"gaussian\" "
       "std: 1 } bias_filler { type: \"gaussian\" std: 1 } }",
       {2, 20, 13, 6}, 9 * 20, 2 * 11 * 4},
      {"type: \"Deconvolution\" convolution_param { num_output: 5 kernel_size: 3 pad: 1 weight_filler { type: "
       "\"gaussian\" std: 1 } bias_filler { type: \"gaussian\" std: 1 } }",
       {2, 7, 8, 10}, 9 * 7, 2 * 8 * 10},
  };
  static const char *const devices[] = {NULL, "cpu=0.5,emu:0=0.5"};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
    for (int di = 0; di < 2; di++) {
      ct_harness *h1 = layer_run(cases[ci].body, "TYPE1", cases[ci].shape, devices[di]);
      ct_harness *h4 = layer_run(cases[ci].body, "WINOGRAD4", cases[ci].shape, devices[di]);
      if (h1 && h4) {
        const ct_layer *l = ctk_layer(h4);
        CHECK(strcmp(l->ops->describe(l), "wino4") == 0, "case %zu: the layer runs %s", ci, l->ops->describe(l));
        char what[128];
        snprintf(what, sizeof what, "layer case %zu on %s, against TYPE1", ci, devices[di] ? devices[di] : "cpu");
        CHECK(!memcmp(ctk_data(h1, 2, 0), ctk_data(h4, 2, 0), count_of(h1, 2, 0) * sizeof(float)),
              "%s: the same weights", what);
        expect_close(ctk_data(h4, 1, 0), ctk_data(h1, 1, 0), count_of(h1, 1, 0), cases[ci].L, what);
        expect_close(ctk_diff(h4, 0, 0), ctk_diff(h1, 0, 0), count_of(h1, 0, 0), cases[ci].L, what);
        expect_close(ctk_diff(h4, 2, 0), ctk_diff(h1, 2, 0), count_of(h1, 2, 0), cases[ci].P, what);
        expect_close(ctk_diff(h4, 2, 1), ctk_diff(h1, 2, 1), count_of(h1, 2, 1), cases[ci].P, what);
      }
      ctk_free(h1);
      ctk_free(h4);
    }
}

/* Where WINOGRAD does not apply, neither does WINOGRAD4: refused naming the layer and why. */
static void test_refused(void) {
  static const struct {
    const char *param, *needle;
  } cases[] = {{"num_output: 2 kernel_size: 5", "5x5"},
               {"num_output: 2 kernel_size: 3 stride: 2", "stride 2x2"},
               {"num_output: 2 kernel_size: 3 dilation: 2", "dilation 2x2"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char text[256], eb[1024] = "";
    snprintf(text, sizeof text, "name: \"c5\" type: \"Convolution\" lowering: WINOGRAD4 convolution_param { %s }",
             cases[i].param);
    int naxes = 4, shape[4] = {1, 2, 9, 9};
    ct_harness *h = ctk_create(text, 1, &naxes, shape, 0, 1, eb, sizeof eb);
    CHECK(!h && strstr(eb, "\"c5\"") && strstr(eb, "WINOGRAD4") && strstr(eb, cases[i].needle),
          "WINOGRAD4 with %s: %s", cases[i].param, eb);
    ctk_free(h);
  }
}

/* The cost model's switches, and a plan whose driver lacks conv_wino4_block (as CUDA's does): a
 * forced WINOGRAD4 refused naming the layer and the driver, AUTO picking among the other types;
 * WINOGRAD4's workspace shared only (as blocked WINOGRAD's). */
static void test_plans(void) {
  const int shape[4] = {4, 64, 28, 28};
  int naxes = 4;
  char eb[1024];
  ct_harness *h = ctk_create("name: \"cw\" type: \"Convolution\" convolution_param { num_output: 64 kernel_size: 3 "
                             "pad: 1 }",
                             1, &naxes, shape, 0, 1, eb, sizeof eb);
  CHECK(h != NULL, "the plan test's layer: %s", eb);
  if (!h) return;
  ct_layer *l = ctk_layer(h);
  ct_conv_geom g = {4, 64, 28, 28, 64, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0};
  ct_conv_geom_finish(&g);
  const ct_driver *cpu = ct_driver_cpu();
  double gf, gb;
  cpu->ops->calibration(cpu, &gf, &gb);
  const size_t cap = CT_LOWER_MAX_WORKSPACE;
  /* the model on this layer: WINOGRAD4, unless a switch leaves it out */
  const ct_lowering pick = ct_lower_choose(&g, 4, gf, gb, cap), pick3 = ct_lower_choose_for(&g, 4, gf, gb, cap, false);
  CHECK(pick == W4 && pick3 != W4, "the model picks %s for 64 -> 64 at 28x28, %s without WINOGRAD4",
        ct_lowering_name(pick), ct_lowering_name(pick3));
  setenv("CT_WINOGRAD4", "0", 1);
  CHECK(ct_lower_choose(&g, 4, gf, gb, cap) == pick3, "CT_WINOGRAD4=0 leaves WINOGRAD4 out");
  unsetenv("CT_WINOGRAD4");
  setenv("CT_WINOGRAD", "0", 1);
  const ct_lowering no_wino = ct_lower_choose(&g, 4, gf, gb, cap);
  CHECK(no_wino != W4 && no_wino != CT_LOWER_WINOGRAD, "CT_WINOGRAD=0 leaves both out (picked %s)",
        ct_lowering_name(no_wino));
  unsetenv("CT_WINOGRAD");
  CHECK(ct_lower_cost(&g, W4, 4, gf, gb, ct_lower_wino4_block(&g, 4).workspace - 1) >= 1e30,
        "WINOGRAD4 over the workspace cap costs too much");
  ct_conv_geom g5 = g;
  g5.kh = g5.kw = 5;
  ct_conv_geom_finish(&g5);
  CHECK(ct_lower_cost(&g5, W4, 4, gf, gb, cap) >= 1e30, "WINOGRAD4 does not apply to a 5x5 kernel");

  ct_part_scratch ws = {0};
  ct_lowering type = CT_LOWER_AUTO;
  int chunk = 0;
  ct_error err = {0};
  ct_status s = ct_conv_fit_workspace(l, &g, W4, &type, &chunk, &ws, &err);
  CHECK(s == CT_OK && type == W4 && ws.shared_only, "forced on the CPU: %s, %s, shared only %d", ct_status_name(s),
        ct_lowering_name(type), ws.shared_only);
  ct_part_scratch_free(&ws);
  ws = (ct_part_scratch){0};
  s = ct_conv_fit_workspace(l, &g, CT_LOWER_AUTO, &type, &chunk, &ws, &err);
  CHECK(s == CT_OK && type == pick && ws.shared_only, "AUTO on the CPU: %s, %s", ct_status_name(s),
        ct_lowering_name(type));
  ct_part_scratch_free(&ws);
  setenv("CT_WINOGRAD4", "yes", 1);
  ws = (ct_part_scratch){0};
  s = ct_conv_fit_workspace(l, &g, CT_LOWER_AUTO, &type, &chunk, &ws, &err);
  CHECK(s == CT_EINVAL && strstr(err.msg, "CT_WINOGRAD4=yes"), "a bad CT_WINOGRAD4 is refused by name: %s", err.msg);
  ct_part_scratch_free(&ws);
  unsetenv("CT_WINOGRAD4");

  /* the same layer on a driver without the entry */
  ct_driver_ops ops = *cpu->ops;
  ops.conv_wino4_block = NULL;
  ct_driver bare = *cpu;
  bare.ops = &ops;
  snprintf(bare.name, sizeof bare.name, "bare");
  CHECK(l->plan.n == 1, "the layer has one partition (%d)", l->plan.n);
  const ct_plan saved = l->plan;
  l->plan.part[0].d = &bare;
  ws = (ct_part_scratch){0};
  err = (ct_error){0};
  s = ct_conv_fit_workspace(l, &g, W4, &type, &chunk, &ws, &err);
  CHECK(s == CT_EUNSUPPORTED && strstr(err.msg, "\"cw\"") && strstr(err.msg, "WINOGRAD4") &&
            strstr(err.msg, "CPU driver only") && strstr(err.msg, "bare"),
        "forced on a driver without conv_wino4_block: %s: %s", ct_status_name(s), err.msg);
  ct_part_scratch_free(&ws);
  ws = (ct_part_scratch){0};
  s = ct_conv_fit_workspace(l, &g, CT_LOWER_AUTO, &type, &chunk, &ws, &err);
  CHECK(s == CT_OK && type == pick3, "AUTO on a driver without conv_wino4_block: %s, %s (the model's next: %s)",
        ct_status_name(s), ct_lowering_name(type), ct_lowering_name(pick3));
  ct_part_scratch_free(&ws);
  l->plan = saved;
  ctk_free(h);
}

int main(void) {
  test_zoo();
  test_tolerance_sees();
  test_layer();
  test_refused();
  test_plans();
  printf("worst WINOGRAD4 error: %.3g sqrt(L) max|ref| (tolerance %g)\n", worst_seen, WINO4_TOL);
  return ct_check_report();
}
