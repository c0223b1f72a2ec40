/* The geometry, the workspace layout, the order of steps and GEMMs of each lowering type run
 * on a driver, and the cost model that picks a type (see lowering.h). The loops of the steps
 * themselves are each driver's, behind its conv_* entries (the CPU's: drivers/cpu/conv.c). */
#include "lowering/lowering.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "drivers/driver.h"

bool ct_conv_geom_finish(ct_conv_geom *g) {
  int ext_h = g->dh * (g->kh - 1) + 1, ext_w = g->dw * (g->kw - 1) + 1;
  if (g->H + 2 * g->ph < ext_h || g->W + 2 * g->pw < ext_w) return false;
  g->OH = (g->H + 2 * g->ph - ext_h) / g->sh + 1;
  g->OW = (g->W + 2 * g->pw - ext_w) / g->sw + 1;
  return true;
}

bool ct_conv_is_pointwise(const ct_conv_geom *g) {
  return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

const char *ct_lowering_name(ct_lowering t) {
  switch (t) {
    case CT_LOWER_TYPE1: return "type1";
    case CT_LOWER_TYPE2: return "type2";
    case CT_LOWER_TYPE3: return "type3";
    case CT_LOWER_POINTWISE: return "1x1";
    case CT_LOWER_WINOGRAD: return "wino";
    case CT_LOWER_WINOGRAD4: return "wino4";
    case CT_LOWER_DIRECT: return "direct";
    default: return "auto";
  }
}

double ct_conv_flops(const ct_conv_geom *g, int nb) {
  return 2.0 * g->K * (double)(g->C / g->G) * g->kh * g->kw * g->OH * g->OW * nb;
}

/* ================================================================ WINOGRAD's layout */

/* Rows of tiles run four tiles at a time and may run up to three tiles past a row's end into
 * the next row's tiles (written again when that row's turn comes) or, after the last row, into
 * the padding of Tp. The 16 blocks of V, U and M lie 64 bytes off a multiple of their size
 * apart: at CaffeNet's sizes (C T floats a multiple of 1024) the 16 rows one tile writes would
 * otherwise fall into the same L1 cache set. */
ct_wino_strides ct_lower_wino_strides(const ct_conv_geom *g, int nb) {
  ct_wino_strides w;
  w.TH = (g->OH + 1) / 2;
  w.TW = (g->OW + 1) / 2;
  w.TWv = (w.TW + 3) & ~3;
  w.rw = 2 * (size_t)w.TWv + 8;
  w.prow = 2 * (size_t)w.TH + 2 > 8 ? 2 * (size_t)w.TH + 2 : 8;
  w.T = (size_t)nb * w.TH * w.TW;
  w.Tp = (w.T + 4 + 15) & ~(size_t)15;
  w.sV = (size_t)g->C * w.Tp + 16;
  w.sU = (size_t)g->K * (g->C / g->G) + 16;
  w.sM = (size_t)g->K * w.Tp + 16;
  return w;
}

bool ct_lower_wino_applies(const ct_conv_geom *g) {
  return g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1;
}

size_t ct_lower_wino_scratch(const ct_conv_geom *g, int nb) {
  const ct_wino_strides w = ct_lower_wino_strides(g, nb);
  /* what the CPU's transforms (drivers/cpu/winograd.c) use: the plane buffer (forward: 8 rows),
   * 4 more rows, and 16 rows of per-tile terms with 4 zeros before each */
  return (w.prow + 4) * w.rw + 16 * ((size_t)w.TWv + 12);
}

/* CT_WINO_BLOCK_TILES (0 when unset) and CT_WINO_BLOCKED, read at the first use */
static atomic_long wino_tiles_set = -1;
static atomic_int wino_blocked_set = -1;

static long wino_env_tiles(void) {
  long v = atomic_load_explicit(&wino_tiles_set, memory_order_relaxed);
  if (v < 0) {
    const char *e = getenv("CT_WINO_BLOCK_TILES");
    const long et = e ? strtol(e, NULL, 10) : 0;
    v = et > 0 ? et : 0;
    long expected = -1; /* the first reader's value stands */
    if (!atomic_compare_exchange_strong(&wino_tiles_set, &expected, v)) v = expected;
  }
  return v;
}

static bool wino_env_blocked(void) {
  int v = atomic_load_explicit(&wino_blocked_set, memory_order_relaxed);
  if (v < 0) {
    const char *e = getenv("CT_WINO_BLOCKED");
    int expected = -1;
    v = !(e && strcmp(e, "0") == 0);
    if (!atomic_compare_exchange_strong(&wino_blocked_set, &expected, v)) v = expected;
  }
  return v;
}

void ct_lower_wino_settings(long block_tiles, bool blocked) {
  atomic_store(&wino_tiles_set, block_tiles > 0 ? block_tiles : 0);
  atomic_store(&wino_blocked_set, blocked ? 1 : 0);
}

/* The rows of tiles of a block, for tiles of X positions (16 or 36) in rows of TW of them: those
 * whose V and M (X (C + K) floats a tile) fill CT_WINO_BLOCK_BYTES, but at least
 * CT_WINO_BLOCK_MIN_TILES tiles (the GEMMs' width), and enough that U and dU (X K C/G floats
 * each, which every block's GEMMs read, and dU's write) move at most a quarter of what the
 * block's V and M do: in deep layers (ResNet's 14x14x256, 7x7x512) the backward ran slower in
 * smaller blocks; at most the partition (`all` rows). CT_WINO_BLOCK_TILES in the environment sets
 * the tiles instead (tests, benchmarks). */
static size_t block_rows(const ct_conv_geom *g, size_t X, int TW, size_t all) {
  const size_t C = (size_t)g->C, K = (size_t)g->K, per_tile = X * sizeof(float) * (C + K);
  /* where U is larger than L2 it streams from memory for every block: then an eighth (CaffeNet's
   * 13x13 conv3-5 at 16 images, 2 blocks under the quarter, ran their backward 10% slower than
   * in one block) */
  const size_t u_bytes = X * sizeof(float) * K * (C / (size_t)g->G);
  const size_t for_u = (u_bytes > ((size_t)1 << 20) ? 8 : 4) * K * (C / (size_t)g->G) / (C + K);
  size_t tiles = CT_WINO_BLOCK_BYTES / per_tile;
  if (tiles < CT_WINO_BLOCK_MIN_TILES) tiles = CT_WINO_BLOCK_MIN_TILES;
  if (tiles < for_u) tiles = for_u;
  const long et = wino_env_tiles();
  if (et > 0) tiles = (size_t)et;
  size_t rows = (tiles + (size_t)TW / 2) / (size_t)TW;
  if (rows < 1) rows = 1;
  /* two blocks would move U (and dU) twice for little cache gain: the partition in one */
  if (rows > all || (et <= 0 && 2 * rows >= all)) rows = all;
  return rows;
}

/* A block's layout for tiles of X positions and m x m outputs (WINOGRAD: 16, 2; WINOGRAD4: 36,
 * 4) in the strides s; `scratch`: the floats after the plane buffer (prow rows of s.rw). */
static ct_wino_block block_of(const ct_conv_geom *g, const ct_wino_strides *s, int nb, size_t X, size_t m,
                              size_t scratch_rows, size_t scratch) {
  ct_wino_block B;
  const size_t rows = block_rows(g, X, s->TW, (size_t)nb * s->TH);
  B.rows = (int)rows;
  B.ld = (rows * (size_t)s->TW + 4 + 15) & ~(size_t)15;
  B.sV = (size_t)g->C * B.ld + 16;
  B.sM = (size_t)g->K * B.ld + 16;
  /* a block meets an image in at most min(rows, TH) rows of tiles: m of those + 2 padded rows */
  const size_t seg = rows < (size_t)s->TH ? rows : (size_t)s->TH;
  B.prow = m * seg + 2 > 8 ? m * seg + 2 : 8;
  B.U = 0;
  B.dU = X * s->sU;
  B.V = B.dU + X * s->sU;
  B.M = B.V + X * B.sV;
  B.scratch = B.M + X * B.sM;
  B.workspace = B.scratch + (B.prow + scratch_rows) * s->rw + scratch;
  return B;
}

ct_wino_block ct_lower_wino_block(const ct_conv_geom *g, int nb) {
  const ct_wino_strides s = ct_lower_wino_strides(g, nb);
  /* the plane buffer, 4 more rows, 16 rows of per-tile terms with 4 zeros before each */
  return block_of(g, &s, nb, 16, 2, 4, 16 * ((size_t)s.TWv + 12));
}

/* ================================================================ WINOGRAD4's layout */

/* As WINOGRAD's, with 4x4 output tiles of 6x6 inputs (36 positions); the transforms run eight
 * tiles of a row at a time, then four, so a step reads and writes up to three tiles past a
 * row's end (V, M: into the next row's tiles or the padding of ld). Row buffers: 4 TWv padded
 * columns, plus what a step's loads reach past its tiles (eight floats), rounded to 16. */
ct_wino_strides ct_lower_wino4_strides(const ct_conv_geom *g, int nb) {
  ct_wino_strides w;
  w.TH = (g->OH + 3) / 4;
  w.TW = (g->OW + 3) / 4;
  w.TWv = (w.TW + 3) & ~3;
  w.rw = 4 * (size_t)w.TWv + 48;
  w.prow = 4 * (size_t)w.TH + 2 > 8 ? 4 * (size_t)w.TH + 2 : 8;
  w.T = (size_t)nb * w.TH * w.TW;
  w.Tp = (w.T + 4 + 15) & ~(size_t)15;
  w.sV = (size_t)g->C * w.Tp + 16;
  w.sU = (size_t)g->K * (g->C / g->G) + 16;
  w.sM = (size_t)g->K * w.Tp + 16;
  return w;
}

ct_wino_block ct_lower_wino4_block(const ct_conv_geom *g, int nb) {
  const ct_wino_strides s = ct_lower_wino4_strides(g, nb);
  /* the plane buffer (or the forward's 7 rows), then 36 rows of terms of TWv + 16 floats */
  return block_of(g, &s, nb, 36, 4, 0, 36 * ((size_t)s.TWv + 16));
}

/* ================================================================ DIRECT's layout */

bool ct_lower_direct_applies(const ct_conv_geom *g) {
  return g->kh <= CT_DIRECT_MAX_KERNEL && g->kw <= CT_DIRECT_MAX_KERNEL;
}

static int round_lanes(int n) { return (n + CT_DIRECT_LANES - 1) / CT_DIRECT_LANES * CT_DIRECT_LANES; }

ct_direct_layout ct_lower_direct_layout(const ct_conv_geom *g) {
  ct_direct_layout L;
  L.OWr = round_lanes(g->OW);
  L.XR = (g->OH - 1) * g->sh + (g->kh - 1) * g->dh + 1;
  /* a stride-2 vector reads 16 floats from its first input column: one past its last lane */
  L.XC = (L.OWr - 1) * g->sw + (g->kw - 1) * g->dw + 2;
  /* dy rows reached: oy = (iy + ph - i dh) / sh from above -((kh-1) dh) / sh to (H-1+ph) / sh */
  L.RT = (g->kh - 1) * g->dh / g->sh + 1;
  const int last_oy = (g->H - 1 + g->ph) / g->sh;
  L.QR = L.RT + (g->OH > last_oy + 1 ? g->OH : last_oy + 1);
  L.Mr = round_lanes((g->W + g->sw - 1) / g->sw);
  L.CL = (g->kw - 1) * g->dw / g->sw + 1;
  const int reach = L.Mr + (g->sw - 1 + g->pw) / g->sw;
  L.QC = L.CL + (g->OW > reach ? g->OW : reach);
  const size_t Cg = (size_t)(g->C / g->G), Kg = (size_t)(g->K / g->G);
  const size_t fwd = Cg * L.XR * L.XC + (size_t)g->OH * L.OWr, bwd = Kg * L.QR * L.QC + (size_t)L.Mr;
  L.scratch = fwd > bwd ? fwd : bwd;
  return L;
}

/* ================================================================ dispatch */

bool ct_lower_direct1(const ct_conv_geom *g) { return (size_t)g->OH * g->OW >= CT_LOWER_DIRECT_PLANE; }

int ct_lower_chunk1(const ct_conv_geom *g, int nb) {
  const size_t P = (size_t)g->OH * g->OW, per_image = (size_t)g->C * g->kh * g->kw * P;
  size_t chunk = per_image ? CT_LOWER_CHUNK_FLOATS / per_image : (size_t)nb;
  const size_t min_images = P ? (CT_LOWER_IMAGE_COLS + P - 1) / P : 1;
  if (chunk < min_images) chunk = min_images;
  return chunk >= (size_t)nb ? nb : (int)chunk;
}

int ct_lower_band1(const ct_conv_geom *g) {
  const size_t row = (size_t)g->C * g->kh * g->kw * g->OW; /* lowered floats per output row */
  size_t rows = row ? CT_LOWER_BAND_FLOATS / row : (size_t)g->OH;
  const size_t min_rows = g->OW ? (CT_LOWER_IMAGE_COLS + (size_t)g->OW - 1) / (size_t)g->OW : 1;
  if (rows < min_rows) rows = min_rows;
  return rows >= (size_t)g->OH ? g->OH : (int)rows;
}

/* Output rows [oy0, oy0 + rows) of g as a geometry of their own (see ct_lower_band1) */
static ct_conv_geom band_of(const ct_conv_geom *g, int oy0, int rows) {
  ct_conv_geom b = *g;
  b.OH = g->OH - oy0 < rows ? g->OH - oy0 : rows;
  b.ph = g->ph - oy0 * g->sh;
  return b;
}

size_t ct_lower_workspace(const ct_conv_geom *g, ct_lowering t, int nb) {
  const size_t Cg = (size_t)(g->C / g->G), K = (size_t)g->K, C = (size_t)g->C;
  const size_t kh = (size_t)g->kh, kw = (size_t)g->kw, n = (size_t)nb;
  switch (t) {
    case CT_LOWER_TYPE1: return (C * kh * kw + (ct_lower_direct1(g) ? 0 : K)) * n * (size_t)g->OH * g->OW;
    case CT_LOWER_TYPE2: {
      size_t cols = n * (size_t)g->H * g->OW;
      return C * kw * cols + 2 * kh * K * Cg * kw + kh * K * cols;
    }
    case CT_LOWER_TYPE3: {
      size_t cols = n * (size_t)g->H * g->W;
      return C * cols + 2 * kh * kw * K * Cg + kh * kw * K * cols;
    }
    case CT_LOWER_WINOGRAD: {
      const ct_wino_strides s = ct_lower_wino_strides(g, nb);
      return 16 * (s.sV + 2 * s.sU + s.sM) + ct_lower_wino_scratch(g, nb);
    }
    case CT_LOWER_WINOGRAD4: return ct_lower_wino4_block(g, nb).workspace; /* blocked only */
    case CT_LOWER_DIRECT: return ct_lower_direct_layout(g).scratch;
    default: return 0;
  }
}

/* WINOGRAD runs blocked on d: d has conv_wino_block, and CT_WINO_BLOCKED=0 is not in the
 * environment (benchmarks compare with the staged path on the same driver) */
bool ct_lower_wino_blocked_on(const ct_driver *d) { return d->ops->conv_wino_block && wino_env_blocked(); }

size_t ct_lower_workspace_on(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb) {
  if (t == CT_LOWER_WINOGRAD && ct_lower_wino_blocked_on(d)) return ct_lower_wino_block(g, nb).workspace;
  return ct_lower_workspace(g, t, nb);
}

bool ct_lower_runs_on(const ct_driver *d, ct_lowering t) {
  return t != CT_LOWER_WINOGRAD4 || d->ops->conv_wino4_block != NULL;
}

bool ct_lower_blocked_on(const ct_driver *d, ct_lowering t) {
  if (t == CT_LOWER_WINOGRAD4) return d->ops->conv_wino4_block != NULL;
  return t == CT_LOWER_WINOGRAD && ct_lower_wino_blocked_on(d);
}

ct_lower_layout ct_lower_layout_of(const ct_conv_geom *g, ct_lowering t, int nb) {
  const size_t Cg = (size_t)(g->C / g->G), K = (size_t)g->K, C = (size_t)g->C;
  const size_t kh = (size_t)g->kh, kw = (size_t)g->kw, n = (size_t)nb;
  ct_lower_layout lay = {0, 0, 0, 0, 0};
  switch (t) {
    case CT_LOWER_POINTWISE:
    case CT_LOWER_DIRECT: break;
    case CT_LOWER_TYPE2: {
      size_t cols = n * (size_t)g->H * g->OW;
      lay.kernel = C * kw * cols;
      lay.product = lay.kernel + kh * K * Cg * kw;
      lay.kernel_grad = lay.product + kh * K * cols;
      break;
    }
    case CT_LOWER_TYPE3: {
      size_t cols = n * (size_t)g->H * g->W;
      lay.kernel = C * cols;
      lay.product = lay.kernel + kh * kw * K * Cg;
      lay.kernel_grad = lay.product + kh * kw * K * cols;
      break;
    }
    case CT_LOWER_WINOGRAD: {
      const ct_wino_strides s = ct_lower_wino_strides(g, nb);
      lay.kernel = 16 * s.sV;
      lay.product = lay.kernel + 16 * s.sU;
      lay.kernel_grad = lay.product + 16 * s.sM;
      lay.scratch = lay.kernel_grad + 16 * s.sU;
      break;
    }
    case CT_LOWER_WINOGRAD4: { /* no staged steps: the block's parts */
      const ct_wino_block B = ct_lower_wino4_block(g, nb);
      lay.data = B.V, lay.kernel = B.U, lay.product = B.M, lay.kernel_grad = B.dU, lay.scratch = B.scratch;
      break;
    }
    default: lay.product = C * kh * kw * n * (size_t)g->OH * g->OW; break; /* type 1 */
  }
  return lay;
}

bool ct_lower_by_image2(const ct_conv_geom *g, int nb) {
  return nb > 1 && (size_t)g->H * g->OW >= CT_LOWER_IMAGE_COLS;
}

/* A one-image workspace view of ws whose product lies where the nb-image product does: steps
 * run for one image at a time (nb = 1) then read and write the start of the partition's R. */
static float *image_ws(const ct_conv_geom *g, ct_lowering t, int nb, float *ws) {
  return ws + ct_lower_layout_of(g, t, nb).product - ct_lower_layout_of(g, t, 1).product;
}

/* The steps of each type, with the GEMMs between them (one per group). The lowering and
 * lifting are the driver's; the order of the steps and of the GEMMs is what the layer's
 * results depend on, so it is the same for every driver. */

static ct_status forward_lowered(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *x,
                                 const float *w, const float *b, float *y, float *ws) {
  const ct_lower_layout lay = ct_lower_layout_of(g, t, nb);
  const int Kg = g->K / g->G, Cg = g->C / g->G;
  float *D = ws + lay.data, *R = ws + lay.product;
  const float *Wl = t == CT_LOWER_TYPE1 ? w : ws + lay.kernel;
  int M, KK;
  size_t cols;
  switch (t) {
    case CT_LOWER_TYPE2: M = g->kh * Kg, KK = Cg * g->kw, cols = (size_t)nb * g->H * g->OW; break;
    case CT_LOWER_TYPE3: M = g->kh * g->kw * Kg, KK = Cg, cols = (size_t)nb * g->H * g->W; break;
    default: M = Kg, KK = Cg * g->kh * g->kw, cols = (size_t)nb * g->OH * g->OW; break;
  }
  CT_TRY(d->ops->conv_lower(d, g, t, nb, x, w, ws));
  if (t == CT_LOWER_TYPE2 && ct_lower_by_image2(g, nb)) {
    /* image by image, where an image has columns enough for a GEMM of its own: each image's
     * product (kh*Kg x H*OW per group, a megabyte or two) is lifted while it is still in
     * cache, instead of the partition's (tens of MB) going out to memory and back. The
     * product sits at the start of R, laid out as for one image, so the one-image lift finds
     * it there. */
    const size_t icols = (size_t)g->H * g->OW, yimg = (size_t)g->K * g->OH * g->OW;
    float *ws1 = image_ws(g, t, nb, ws);
    for (int n = 0; n < nb; n++) {
      for (int gi = 0; gi < g->G; gi++)
        CT_TRY(d->ops->gemm_ld(d, false, false, M, (int)icols, KK, 1.0f, Wl + (size_t)gi * M * KK, KK,
                               D + (size_t)gi * KK * cols + (size_t)n * icols, (int)cols, 0.0f,
                               R + (size_t)gi * M * icols, (int)icols));
      CT_TRY(d->ops->conv_lift(d, g, t, 1, ws1, b, y + (size_t)n * yimg));
    }
    return CT_OK;
  }
  for (int gi = 0; gi < g->G; gi++)
    CT_TRY(d->ops->gemm(d, false, false, M, (int)cols, KK, 1.0f, Wl + (size_t)gi * M * KK, D + (size_t)gi * KK * cols,
                        0.0f, R + (size_t)gi * M * cols));
  return d->ops->conv_lift(d, g, t, nb, ws, b, y);
}

/* The bias laid down over one image's outputs yn first, the GEMMs adding onto it (no clearing
 * pass of their own): the 1x1 path's bias step, over the OH x OW outputs */
static ct_status bias_first(const ct_driver *d, const ct_conv_geom *g, const float *b, float *yn) {
  ct_conv_geom plane = *g;
  plane.H = g->OH, plane.W = g->OW;
  return d->ops->conv_lift(d, &plane, CT_LOWER_POINTWISE, 1, NULL, b, yn);
}

/* Type 1 per image in bands of output rows (ct_lower_band1): y's rows of a band = W . D_band,
 * over the bias laid down first; the weight gradient's likewise, dW += dy_band . D_band^T. */
static ct_status run1_banded(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x, const float *w,
                             const float *b, float *y, const float *dy, float *dw, float *ws) {
  const int Kg = g->K / g->G, CgKK = g->C / g->G * g->kh * g->kw, P = g->OH * g->OW, R = ct_lower_band1(g);
  const size_t xn = (size_t)g->C * g->H * g->W, yn = (size_t)g->K * P;
  for (int n = 0; n < nb; n++) {
    if (y && b) CT_TRY(bias_first(d, g, b, y + (size_t)n * yn));
    for (int oy0 = 0; oy0 < g->OH; oy0 += R) {
      const ct_conv_geom band = band_of(g, oy0, R);
      const int cols = band.OH * g->OW;
      const size_t at = (size_t)n * yn + (size_t)oy0 * g->OW;
      const float *D = ws + ct_lower_layout_of(&band, CT_LOWER_TYPE1, 1).data;
      CT_TRY(d->ops->conv_lower(d, &band, CT_LOWER_TYPE1, 1, x + (size_t)n * xn, w, ws));
      for (int gi = 0; gi < g->G; gi++) {
        const float *Dg = D + (size_t)gi * CgKK * cols;
        if (y)
          CT_TRY(d->ops->gemm_ld(d, false, false, Kg, cols, CgKK, 1.0f, w + (size_t)gi * Kg * CgKK, CgKK, Dg, cols,
                                 b ? 1.0f : 0.0f, y + at + (size_t)gi * Kg * P, P));
        else
          CT_TRY(d->ops->gemm_ld(d, false, true, Kg, CgKK, cols, 1.0f, dy + at + (size_t)gi * Kg * P, P, Dg, cols,
                                 1.0f, dw + (size_t)gi * Kg * CgKK, CgKK));
      }
    }
  }
  return CT_OK;
}

/* Type 1 per image, when the planes are large: y_n = W . D_n over its bias, D_n being the
 * image's columns of D (ldb = the partition's columns). */
static ct_status forward1_direct(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x, const float *w,
                                 const float *b, float *y, float *ws) {
  if (ct_lower_band1(g) < g->OH) return run1_banded(d, g, nb, x, w, b, y, NULL, NULL, ws);
  const int Kg = g->K / g->G, CgKK = g->C / g->G * g->kh * g->kw, P = g->OH * g->OW;
  const size_t cols = (size_t)nb * P;
  const float *D = ws + ct_lower_layout_of(g, CT_LOWER_TYPE1, nb).data;
  CT_TRY(d->ops->conv_lower(d, g, CT_LOWER_TYPE1, nb, x, w, ws));
  for (int n = 0; n < nb; n++) {
    float *yn = y + (size_t)n * g->K * P;
    if (b) CT_TRY(bias_first(d, g, b, yn));
    for (int gi = 0; gi < g->G; gi++)
      CT_TRY(d->ops->gemm_ld(d, false, false, Kg, P, CgKK, 1.0f, w + (size_t)gi * Kg * CgKK, CgKK,
                             D + (size_t)gi * CgKK * cols + (size_t)n * P, (int)cols, b ? 1.0f : 0.0f,
                             yn + (size_t)gi * Kg * P, P));
  }
  return CT_OK;
}

/* Its backward: dW += dy_n . D_n^T and D_n = W^T dy_n image by image, dy read where it lies. */
static ct_status backward1_direct(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x, const float *w,
                                  const float *dy, float *dx, float *dw, float *db, float *ws, bool fresh) {
  const int Kg = g->K / g->G, CgKK = g->C / g->G * g->kh * g->kw, P = g->OH * g->OW;
  const size_t cols = (size_t)nb * P;
  float *D = ws + ct_lower_layout_of(g, CT_LOWER_TYPE1, nb).data;
  if (db) CT_TRY(d->ops->conv_bias_grad(d, g, CT_LOWER_POINTWISE, nb, dy, NULL, db));
  if (ct_lower_band1(g) < g->OH) { /* the forward left no lowering of the partition */
    if (!dx) return dw ? run1_banded(d, g, nb, x, w, NULL, NULL, dy, dw, ws) : CT_OK;
    fresh = false;
  }
  if (dw) {
    if (!fresh) CT_TRY(d->ops->conv_lower(d, g, CT_LOWER_TYPE1, nb, x, w, ws));
    for (int n = 0; n < nb; n++)
      for (int gi = 0; gi < g->G; gi++)
        CT_TRY(d->ops->gemm_ld(d, false, true, Kg, CgKK, P, 1.0f, dy + ((size_t)n * g->K + (size_t)gi * Kg) * P, P,
                               D + (size_t)gi * CgKK * cols + (size_t)n * P, (int)cols, 1.0f,
                               dw + (size_t)gi * Kg * CgKK, CgKK));
  }
  if (dx) {
    for (int n = 0; n < nb; n++)
      for (int gi = 0; gi < g->G; gi++)
        CT_TRY(d->ops->gemm_ld(d, true, false, CgKK, P, Kg, 1.0f, w + (size_t)gi * Kg * CgKK, CgKK,
                               dy + ((size_t)n * g->K + (size_t)gi * Kg) * P, P, 0.0f,
                               D + (size_t)gi * CgKK * cols + (size_t)n * P, (int)cols));
    CT_TRY(d->ops->conv_lower_grad(d, g, CT_LOWER_TYPE1, nb, ws, dx, NULL));
  }
  return CT_OK;
}

static ct_status backward1(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x, const float *w,
                           const float *dy, float *dx, float *dw, float *db, float *ws, bool fresh) {
  const ct_lowering t = CT_LOWER_TYPE1;
  const ct_lower_layout lay = ct_lower_layout_of(g, t, nb);
  const int Kg = g->K / g->G, CgKK = g->C / g->G * g->kh * g->kw;
  const size_t cols = (size_t)nb * g->OH * g->OW;
  float *D = ws + lay.data, *Gm = ws + lay.product;
  CT_TRY(d->ops->conv_lift_grad(d, g, t, nb, dy, ws));
  if (db) CT_TRY(d->ops->conv_bias_grad(d, g, t, nb, dy, ws, db));
  if (dw) {
    if (!fresh) CT_TRY(d->ops->conv_lower(d, g, t, nb, x, w, ws));
    for (int gi = 0; gi < g->G; gi++)
      CT_TRY(d->ops->gemm(d, false, true, Kg, CgKK, (int)cols, 1.0f, Gm + (size_t)gi * Kg * cols,
                          D + (size_t)gi * CgKK * cols, 1.0f, dw + (size_t)gi * Kg * CgKK));
  }
  if (dx) {
    for (int gi = 0; gi < g->G; gi++)
      CT_TRY(d->ops->gemm(d, true, false, CgKK, (int)cols, Kg, 1.0f, w + (size_t)gi * Kg * CgKK,
                          Gm + (size_t)gi * Kg * cols, 0.0f, D + (size_t)gi * CgKK * cols));
    CT_TRY(d->ops->conv_lower_grad(d, g, t, nb, ws, dx, NULL));
  }
  return CT_OK;
}

/* Types 2 and 3: dy is laid out in the product's shape; both GEMMs produce lowered gradients
 * that lower_grad maps back. */
static ct_status backward23(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *x,
                            const float *w, const float *dy, float *dx, float *dw, float *db, float *ws, bool fresh) {
  const ct_lower_layout lay = ct_lower_layout_of(g, t, nb);
  const int Kg = g->K / g->G, Cg = g->C / g->G;
  int M, KK;
  size_t cols;
  if (t == CT_LOWER_TYPE2)
    M = g->kh * Kg, KK = Cg * g->kw, cols = (size_t)nb * g->H * g->OW;
  else
    M = g->kh * g->kw * Kg, KK = Cg, cols = (size_t)nb * g->H * g->W;
  float *D = ws + lay.data, *Wl = ws + lay.kernel, *R = ws + lay.product, *dWl = ws + lay.kernel_grad;
  if (db) CT_TRY(d->ops->conv_bias_grad(d, g, t, nb, dy, ws, db));
  if (!dw && !dx) return CT_OK;
  if (t == CT_LOWER_TYPE2 && ct_lower_by_image2(g, nb)) {
    /* image by image, as forward: dy's image laid out as the product, then both GEMMs on it
     * while it is in cache; the kernel gradient sums the images in order */
    const size_t icols = (size_t)g->H * g->OW, yimg = (size_t)g->K * g->OH * g->OW;
    float *ws1 = image_ws(g, t, nb, ws);
    if (!fresh) CT_TRY(d->ops->conv_lower(d, g, t, nb, x, w, ws));
    for (int n = 0; n < nb; n++) {
      CT_TRY(d->ops->conv_lift_grad(d, g, t, 1, dy + (size_t)n * yimg, ws1));
      for (int gi = 0; gi < g->G; gi++) {
        float *Rg = R + (size_t)gi * M * icols, *Dn = D + (size_t)gi * KK * cols + (size_t)n * icols;
        if (dw)
          CT_TRY(d->ops->gemm_ld(d, false, true, M, KK, (int)icols, 1.0f, Rg, (int)icols, Dn, (int)cols,
                                 n ? 1.0f : 0.0f, dWl + (size_t)gi * M * KK, KK));
        if (dx) /* after the kernel gradient has read this image's D */
          CT_TRY(d->ops->gemm_ld(d, true, false, KK, (int)icols, M, 1.0f, Wl + (size_t)gi * M * KK, KK, Rg, (int)icols,
                                 0.0f, Dn, (int)cols));
      }
    }
    if (dw) CT_TRY(d->ops->conv_lower_grad(d, g, t, nb, ws, NULL, dw));
    if (dx) CT_TRY(d->ops->conv_lower_grad(d, g, t, nb, ws, dx, NULL));
    return CT_OK;
  }
  CT_TRY(d->ops->conv_lift_grad(d, g, t, nb, dy, ws));
  if (!fresh) CT_TRY(d->ops->conv_lower(d, g, t, nb, x, w, ws));
  if (dw) {
    for (int gi = 0; gi < g->G; gi++)
      CT_TRY(d->ops->gemm(d, false, true, M, KK, (int)cols, 1.0f, R + (size_t)gi * M * cols, D + (size_t)gi * KK * cols,
                          0.0f, dWl + (size_t)gi * M * KK));
    CT_TRY(d->ops->conv_lower_grad(d, g, t, nb, ws, NULL, dw));
  }
  if (dx) {
    for (int gi = 0; gi < g->G; gi++)
      CT_TRY(d->ops->gemm(d, true, false, KK, (int)cols, M, 1.0f, Wl + (size_t)gi * M * KK, R + (size_t)gi * M * cols,
                          0.0f, D + (size_t)gi * KK * cols));
    CT_TRY(d->ops->conv_lower_grad(d, g, t, nb, ws, dx, NULL));
  }
  return CT_OK;
}

/* WINOGRAD: the transforms are the driver's lower / lift steps; between them, 16 GEMMs per
 * group, one per position xi of the 4x4 tile: M_xi = U_xi V_xi. */
static ct_status forward_wino(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x, const float *w,
                              const float *b, float *y, float *ws) {
  const ct_lower_layout lay = ct_lower_layout_of(g, CT_LOWER_WINOGRAD, nb);
  const ct_wino_strides s = ct_lower_wino_strides(g, nb);
  const int Kg = g->K / g->G, Cg = g->C / g->G, T = (int)s.T, Tp = (int)s.Tp;
  const float *V = ws + lay.data, *U = ws + lay.kernel;
  float *M = ws + lay.product;
  CT_TRY(d->ops->conv_lower(d, g, CT_LOWER_WINOGRAD, nb, x, w, ws));
  for (int xi = 0; xi < 16; xi++)
    for (int gi = 0; gi < g->G; gi++)
      CT_TRY(d->ops->gemm_ld(d, false, false, Kg, T, Cg, 1.0f, U + xi * s.sU + (size_t)gi * Kg * Cg, Cg,
                             V + xi * s.sV + (size_t)gi * Cg * s.Tp, Tp, 0.0f, M + xi * s.sM + (size_t)gi * Kg * s.Tp,
                             Tp));
  return d->ops->conv_lift(d, g, CT_LOWER_WINOGRAD, nb, ws, b, y);
}

/* Its backward: dM from dy; per xi, dU_xi = dM_xi V_xi^T, then dV_xi = U_xi^T dM_xi over V_xi,
 * which the kernel gradient has read by then. */
static ct_status backward_wino(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x, const float *w,
                               const float *dy, float *dx, float *dw, float *db, float *ws, bool fresh) {
  const ct_lower_layout lay = ct_lower_layout_of(g, CT_LOWER_WINOGRAD, nb);
  const ct_wino_strides s = ct_lower_wino_strides(g, nb);
  const int Kg = g->K / g->G, Cg = g->C / g->G, T = (int)s.T, Tp = (int)s.Tp;
  float *V = ws + lay.data, *dM = ws + lay.product, *dU = ws + lay.kernel_grad;
  const float *U = ws + lay.kernel;
  if (db) CT_TRY(d->ops->conv_bias_grad(d, g, CT_LOWER_WINOGRAD, nb, dy, ws, db));
  if (!dw && !dx) return CT_OK;
  if (!fresh) CT_TRY(d->ops->conv_lower(d, g, CT_LOWER_WINOGRAD, nb, x, w, ws));
  CT_TRY(d->ops->conv_lift_grad(d, g, CT_LOWER_WINOGRAD, nb, dy, ws));
  for (int xi = 0; xi < 16; xi++)
    for (int gi = 0; gi < g->G; gi++) {
      const size_t uo = xi * s.sU + (size_t)gi * Kg * Cg, mo = xi * s.sM + (size_t)gi * Kg * s.Tp;
      const size_t vo = xi * s.sV + (size_t)gi * Cg * s.Tp;
      if (dw) CT_TRY(d->ops->gemm_ld(d, false, true, Kg, Cg, T, 1.0f, dM + mo, Tp, V + vo, Tp, 0.0f, dU + uo, Cg));
      if (dx) CT_TRY(d->ops->gemm_ld(d, true, false, Cg, T, Kg, 1.0f, U + uo, Cg, dM + mo, Tp, 0.0f, V + vo, Tp));
    }
  if (dw) CT_TRY(d->ops->conv_lower_grad(d, g, CT_LOWER_WINOGRAD, nb, ws, NULL, dw));
  if (dx) CT_TRY(d->ops->conv_lower_grad(d, g, CT_LOWER_WINOGRAD, nb, ws, dx, NULL));
  return CT_OK;
}

/* Blocked Winograd of either tile size: WINOGRAD's F(2x2, 3x3) (16 positions, ct_lower_wino_block,
 * conv_wino_block) or WINOGRAD4's F(4x4, 3x3) (36, ct_lower_wino4_block, conv_wino4_block). The
 * order of the steps and GEMMs is the same for both; only the layout and the driver's entry
 * differ. */
typedef ct_status (*wino_step_fn)(const ct_driver *d, const ct_conv_geom *g, ct_wino_step step, int nb, int r0, int r1,
                                  const float *in, const float *b, float *out, float *scratch);
typedef struct wino_run {
  int X; /* positions of a tile: 16 or 36 */
  ct_wino_strides s;
  ct_wino_block B;
  wino_step_fn step; /* the driver's entry */
} wino_run;

static wino_run wino_run_of(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb) {
  if (t == CT_LOWER_WINOGRAD4)
    return (wino_run){36, ct_lower_wino4_strides(g, nb), ct_lower_wino4_block(g, nb), d->ops->conv_wino4_block};
  return (wino_run){16, ct_lower_wino_strides(g, nb), ct_lower_wino_block(g, nb), d->ops->conv_wino_block};
}

/* U once, then per block of tile rows its V, the X GEMMs per group into its M and its lift into
 * y, while V and M are still in cache. */
static ct_status forward_wino_blocked(const ct_driver *d, const ct_conv_geom *g, const wino_run *k, int nb,
                                      const float *x, const float *w, const float *b, float *y, float *ws) {
  const ct_wino_block B = k->B;
  const ct_wino_strides s = k->s;
  const int Kg = g->K / g->G, Cg = g->C / g->G, ld = (int)B.ld, rows = nb * s.TH;
  float *U = ws + B.U, *V = ws + B.V, *M = ws + B.M, *scratch = ws + B.scratch;
  CT_TRY(k->step(d, g, CT_WINO_KERNEL, nb, 0, 0, w, NULL, U, scratch));
  for (int r0 = 0; r0 < rows; r0 += B.rows) {
    const int r1 = r0 + B.rows < rows ? r0 + B.rows : rows, T = (r1 - r0) * s.TW;
    CT_TRY(k->step(d, g, CT_WINO_LOWER, nb, r0, r1, x, NULL, V, scratch));
    for (int xi = 0; xi < k->X; xi++)
      for (int gi = 0; gi < g->G; gi++)
        CT_TRY(d->ops->gemm_ld(d, false, false, Kg, T, Cg, 1.0f, U + xi * s.sU + (size_t)gi * Kg * Cg, Cg,
                               V + xi * B.sV + (size_t)gi * Cg * B.ld, ld, 0.0f,
                               M + xi * B.sM + (size_t)gi * Kg * B.ld, ld));
    CT_TRY(k->step(d, g, CT_WINO_LIFT, nb, r0, r1, M, b, y, scratch));
  }
  return CT_OK;
}

/* Its backward, block by block in order: dM from dy, dU += dM V^T (the first block's GEMM
 * overwrites dU), dV = U^T dM over V, then dV into the block's rows of dx. `reuse`: U is still
 * where the forward left it, and so is V where the partition is one block. The bias gradient
 * reads dy as it lies, as WINOGRAD's staged one does (the driver's conv_bias_grad for WINOGRAD,
 * whichever tile size runs). */
static ct_status backward_wino_blocked(const ct_driver *d, const ct_conv_geom *g, const wino_run *k, int nb,
                                       const float *x, const float *w, const float *dy, float *dx, float *dw, float *db,
                                       float *ws, bool reuse) {
  const ct_wino_block B = k->B;
  const ct_wino_strides s = k->s;
  const int Kg = g->K / g->G, Cg = g->C / g->G, ld = (int)B.ld, rows = nb * s.TH;
  float *U = ws + B.U, *dU = ws + B.dU, *V = ws + B.V, *dM = ws + B.M, *scratch = ws + B.scratch;
  if (db) CT_TRY(d->ops->conv_bias_grad(d, g, CT_LOWER_WINOGRAD, nb, dy, ws, db));
  if (!dw && !dx) return CT_OK;
  if (dx && !reuse) CT_TRY(k->step(d, g, CT_WINO_KERNEL, nb, 0, 0, w, NULL, U, scratch));
  for (int r0 = 0; r0 < rows; r0 += B.rows) {
    const int r1 = r0 + B.rows < rows ? r0 + B.rows : rows, T = (r1 - r0) * s.TW;
    /* one block for the partition: the forward's V is still there to reuse */
    if (dw && !(reuse && r1 - r0 == rows)) CT_TRY(k->step(d, g, CT_WINO_LOWER, nb, r0, r1, x, NULL, V, scratch));
    CT_TRY(k->step(d, g, CT_WINO_LIFT_GRAD, nb, r0, r1, dy, NULL, dM, scratch));
    for (int xi = 0; xi < k->X; xi++)
      for (int gi = 0; gi < g->G; gi++) {
        const size_t uo = xi * s.sU + (size_t)gi * Kg * Cg, mo = xi * B.sM + (size_t)gi * Kg * B.ld;
        const size_t vo = xi * B.sV + (size_t)gi * Cg * B.ld;
        if (dw)
          CT_TRY(d->ops->gemm_ld(d, false, true, Kg, Cg, T, 1.0f, dM + mo, ld, V + vo, ld, r0 ? 1.0f : 0.0f, dU + uo,
                                 Cg));
        if (dx) CT_TRY(d->ops->gemm_ld(d, true, false, Cg, T, Kg, 1.0f, U + uo, Cg, dM + mo, ld, 0.0f, V + vo, ld));
      }
    if (dx) CT_TRY(k->step(d, g, CT_WINO_LOWER_GRAD, nb, r0, r1, V, NULL, dx, scratch));
  }
  if (dw) CT_TRY(k->step(d, g, CT_WINO_KERNEL_GRAD, nb, 0, 0, dU, NULL, dw, scratch));
  return CT_OK;
}

/* 1x1: the input as it lies is the GEMM's right-hand side. Where the driver has conv_pw, one
 * call runs the partition's images (and the data gradient's) with the weights packed once;
 * otherwise, and for the weight gradient, one GEMM per image. The driver's
 * POINTWISE lift first writes the bias over the image's output and the GEMMs add onto it (beta 1):
 * a BLAS clears C in a pass of its own for beta 0, so the bias costs no pass. Where an image is
 * one pixel, the partition's input is nb x C as it lies: one GEMM for all of it. */
bool ct_lower_pw_one_gemm(const ct_conv_geom *g) { return g->H * g->W == 1 && g->G == 1; }

static ct_status forward_pw(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x, const float *w,
                            const float *b, float *y) {
  const int Kg = g->K / g->G, Cg = g->C / g->G;
  const size_t HW = (size_t)g->H * g->W;
  if (ct_lower_pw_one_gemm(g)) { /* y (nb x K) = x (nb x C) w^T */
    if (b) CT_TRY(d->ops->conv_lift(d, g, CT_LOWER_POINTWISE, nb, NULL, b, y));
    return d->ops->gemm(d, false, true, nb, g->K, g->C, 1.0f, x, w, b ? 1.0f : 0.0f, y);
  }
  if (g->G == 1 && d->ops->conv_pw) { /* all images at once, where the driver can */
    const ct_status s = d->ops->conv_pw(d, false, g->K, g->C, (int)HW, nb, w, x, g->C * HW, HW, b, y, g->K * HW, HW);
    if (s != CT_EUNSUPPORTED) return s;
  }
  for (int n = 0; n < nb; n++) {
    const float *xn = x + (size_t)n * g->C * HW;
    float *yn = y + (size_t)n * g->K * HW;
    if (b) CT_TRY(d->ops->conv_lift(d, g, CT_LOWER_POINTWISE, 1, NULL, b, yn));
    for (int gi = 0; gi < g->G; gi++)
      CT_TRY(d->ops->gemm(d, false, false, Kg, (int)HW, Cg, 1.0f, w + (size_t)gi * Kg * Cg, xn + (size_t)gi * Cg * HW,
                          b ? 1.0f : 0.0f, yn + (size_t)gi * Kg * HW));
  }
  return CT_OK;
}

static ct_status backward_pw(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x, const float *w,
                             const float *dy, float *dx, float *dw, float *db) {
  const int Kg = g->K / g->G, Cg = g->C / g->G;
  const size_t HW = (size_t)g->H * g->W;
  if (db) CT_TRY(d->ops->conv_bias_grad(d, g, CT_LOWER_POINTWISE, nb, dy, NULL, db));
  if (ct_lower_pw_one_gemm(g)) { /* dw += dy^T x, dx = dy w */
    if (dw) CT_TRY(d->ops->gemm(d, true, false, g->K, g->C, nb, 1.0f, dy, x, 1.0f, dw));
    if (dx) CT_TRY(d->ops->gemm(d, false, false, nb, g->C, g->K, 1.0f, dy, w, 0.0f, dx));
    return CT_OK;
  }
  if (dx && g->G == 1 && d->ops->conv_pw) { /* dx = w^T dy for all images at once, where the driver can */
    const ct_status s = d->ops->conv_pw(d, true, g->C, g->K, (int)HW, nb, w, dy, g->K * HW, HW, NULL, dx, g->C * HW, HW);
    if (s == CT_OK)
      dx = NULL;
    else if (s != CT_EUNSUPPORTED)
      return s;
  }
  for (int n = 0; n < nb; n++) {
    const float *xn = x + (size_t)n * g->C * HW, *dyn = dy + (size_t)n * g->K * HW;
    for (int gi = 0; gi < g->G; gi++) {
      if (dw)
        CT_TRY(d->ops->gemm(d, false, true, Kg, Cg, (int)HW, 1.0f, dyn + (size_t)gi * Kg * HW,
                            xn + (size_t)gi * Cg * HW, 1.0f, dw + (size_t)gi * Kg * Cg));
      if (dx)
        CT_TRY(d->ops->gemm(d, true, false, Cg, (int)HW, Kg, 1.0f, w + (size_t)gi * Kg * Cg, dyn + (size_t)gi * Kg * HW,
                            0.0f, dx + (size_t)n * g->C * HW + (size_t)gi * Cg * HW));
    }
  }
  return CT_OK;
}

ct_status ct_lower_forward_on(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *x,
                              const float *w, const float *b, float *y, float *ws) {
  if (nb <= 0) return CT_OK;
  switch (t) {
    case CT_LOWER_TYPE2:
    case CT_LOWER_TYPE3: return forward_lowered(d, g, t, nb, x, w, b, y, ws);
    case CT_LOWER_WINOGRAD:
    case CT_LOWER_WINOGRAD4:
      if (!ct_lower_runs_on(d, t)) return CT_EUNSUPPORTED; /* before any step runs */
      if (ct_lower_blocked_on(d, t)) {
        const wino_run k = wino_run_of(d, g, t, nb);
        return forward_wino_blocked(d, g, &k, nb, x, w, b, y, ws);
      }
      return forward_wino(d, g, nb, x, w, b, y, ws);
    case CT_LOWER_POINTWISE: return forward_pw(d, g, nb, x, w, b, y);
    case CT_LOWER_DIRECT: return d->ops->conv_direct_forward(d, g, nb, x, w, b, y, ws);
    default:
      if (ct_lower_direct1(g)) return forward1_direct(d, g, nb, x, w, b, y, ws);
      for (int n0 = 0, m = ct_lower_chunk1(g, nb); n0 < nb; n0 += m) { /* chunk by chunk */
        const int k = nb - n0 < m ? nb - n0 : m;
        const size_t xo = (size_t)n0 * g->C * g->H * g->W, yo = (size_t)n0 * g->K * g->OH * g->OW;
        CT_TRY(forward_lowered(d, g, CT_LOWER_TYPE1, k, x + xo, w, b, y + yo,
                               ws + (size_t)n0 * ct_lower_workspace(g, CT_LOWER_TYPE1, 1)));
      }
      return CT_OK;
  }
}

ct_status ct_lower_backward_on(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *x,
                               const float *w, const float *dy, float *dx, float *dw, float *db, float *ws,
                               bool reuse) {
  if (nb <= 0) return CT_OK;
  switch (t) {
    case CT_LOWER_TYPE2:
    case CT_LOWER_TYPE3: return backward23(d, g, t, nb, x, w, dy, dx, dw, db, ws, reuse);
    case CT_LOWER_WINOGRAD:
    case CT_LOWER_WINOGRAD4:
      if (!ct_lower_runs_on(d, t)) return CT_EUNSUPPORTED;
      if (ct_lower_blocked_on(d, t)) {
        const wino_run k = wino_run_of(d, g, t, nb);
        return backward_wino_blocked(d, g, &k, nb, x, w, dy, dx, dw, db, ws, reuse);
      }
      return backward_wino(d, g, nb, x, w, dy, dx, dw, db, ws, reuse);
    case CT_LOWER_POINTWISE: return backward_pw(d, g, nb, x, w, dy, dx, dw, db);
    case CT_LOWER_DIRECT:
      if (dw || db) CT_TRY(d->ops->conv_direct_backward_weight(d, g, nb, x, dy, dw, db, ws));
      return dx ? d->ops->conv_direct_backward_data(d, g, nb, w, dy, dx, ws) : CT_OK;
    default:
      if (ct_lower_direct1(g)) return backward1_direct(d, g, nb, x, w, dy, dx, dw, db, ws, reuse);
      for (int n0 = 0, m = ct_lower_chunk1(g, nb); n0 < nb; n0 += m) { /* as forward chunked it */
        const int k = nb - n0 < m ? nb - n0 : m;
        const size_t xo = (size_t)n0 * g->C * g->H * g->W, yo = (size_t)n0 * g->K * g->OH * g->OW;
        CT_TRY(backward1(d, g, k, x + xo, w, dy + yo, dx ? dx + xo : NULL, dw, db,
                         ws + (size_t)n0 * ct_lower_workspace(g, CT_LOWER_TYPE1, 1), reuse));
      }
      return CT_OK;
  }
}

ct_status ct_lower_forward(const ct_conv_geom *g, ct_lowering t, int nb, const float *x, const float *w, const float *b,
                           float *y, float *ws) {
  return ct_lower_forward_on(ct_driver_cpu(), g, t, nb, x, w, b, y, ws);
}

ct_status ct_lower_backward(const ct_conv_geom *g, ct_lowering t, int nb, const float *x, const float *w,
                            const float *dy, float *dx, float *dw, float *db, float *ws, bool reuse) {
  return ct_lower_backward_on(ct_driver_cpu(), g, t, nb, x, w, dy, dx, dw, db, ws, reuse);
}
