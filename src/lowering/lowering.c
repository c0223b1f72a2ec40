/* Lowering types 1, 2 and 3 with their liftings, forward and backward, over a partition of nb
 * images at once (see lowering.h for the shapes). Every routine writes plain row-major buffers;
 * the GEMMs are the only calls out. */
#include "lowering/lowering.h"

#include <string.h>

#include "core/blas.h"

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
    default: return "auto";
  }
}

/* The output columns ox whose input column ix = ox*s + off lies in [0, W): [*lo, *hi). */
static void valid_range(int OW, int W, int s, int off, int *lo, int *hi) {
  int a = off >= 0 ? 0 : (-off + s - 1) / s;
  int b = off > W - 1 ? 0 : (W - 1 - off) / s + 1;
  if (b > OW) b = OW;
  if (a > b) a = b;
  *lo = a;
  *hi = b;
}

/* dst[ox] = src[ox*s + off] for valid ox, 0 elsewhere (src is one input row of width W). */
static inline void gather_row(float *restrict dst, const float *restrict src, int OW, int W, int s, int off) {
  int lo, hi;
  valid_range(OW, W, s, off, &lo, &hi);
  for (int o = 0; o < lo; o++) dst[o] = 0;
  if (s == 1) {
    memcpy(dst + lo, src + lo + off, (size_t)(hi - lo) * sizeof(float));
  } else {
    for (int o = lo; o < hi; o++) dst[o] = src[o * s + off];
  }
  for (int o = hi; o < OW; o++) dst[o] = 0;
}

/* dst[ox*s + off] += src[ox] for valid ox. */
static inline void scatter_add_row(float *restrict dst, const float *restrict src, int OW, int W, int s, int off) {
  int lo, hi;
  valid_range(OW, W, s, off, &lo, &hi);
  if (s == 1) {
    for (int o = lo; o < hi; o++) dst[o + off] += src[o];
  } else {
    for (int o = lo; o < hi; o++) dst[o * s + off] += src[o];
  }
}

/* db[k] += the sum of dy over images and positions (the layout of y: nb x K x OH x OW). */
static void bias_grad(const ct_conv_geom *g, int nb, const float *dy, float *db) {
  const size_t P = (size_t)g->OH * g->OW;
  for (int n = 0; n < nb; n++)
    for (int k = 0; k < g->K; k++) {
      const float *restrict d = dy + ((size_t)n * g->K + k) * P;
      float s = 0;
      for (size_t p = 0; p < P; p++) s += d[p];
      db[k] += s;
    }
}

double ct_conv_flops(const ct_conv_geom *g, int nb) {
  return 2.0 * g->K * (double)(g->C / g->G) * g->kh * g->kw * g->OH * g->OW * nb;
}

/* ================================================================ type 1 */

/* D[(c,ky,kx)][(img,oy,ox)] = x[img][c][oy*sh-ph+ky*dh][ox*sw-pw+kx*dw] (0 outside). */
static void lower1(const ct_conv_geom *g, int nb, const float *x, float *D) {
  const size_t HW = (size_t)g->H * g->W, P = (size_t)g->OH * g->OW, cols = (size_t)nb * P;
  for (int c = 0; c < g->C; c++)
    for (int ky = 0; ky < g->kh; ky++)
      for (int kx = 0; kx < g->kw; kx++) {
        float *row = D + ((size_t)(c * g->kh + ky) * g->kw + kx) * cols;
        const int off = kx * g->dw - g->pw;
        for (int n = 0; n < nb; n++) {
          const float *xi = x + ((size_t)n * g->C + c) * HW;
          for (int oy = 0; oy < g->OH; oy++) {
            float *dst = row + (size_t)n * P + (size_t)oy * g->OW;
            int iy = oy * g->sh - g->ph + ky * g->dh;
            if (iy < 0 || iy >= g->H)
              memset(dst, 0, (size_t)g->OW * sizeof(float));
            else
              gather_row(dst, xi + (size_t)iy * g->W, g->OW, g->W, g->sw, off);
          }
        }
      }
}

/* The adjoint of lower1: dx += D scattered back (dx must be zeroed by the caller). */
static void lift_back1(const ct_conv_geom *g, int nb, const float *D, float *dx) {
  const size_t HW = (size_t)g->H * g->W, P = (size_t)g->OH * g->OW, cols = (size_t)nb * P;
  for (int c = 0; c < g->C; c++)
    for (int ky = 0; ky < g->kh; ky++)
      for (int kx = 0; kx < g->kw; kx++) {
        const float *row = D + ((size_t)(c * g->kh + ky) * g->kw + kx) * cols;
        const int off = kx * g->dw - g->pw;
        for (int n = 0; n < nb; n++) {
          float *xi = dx + ((size_t)n * g->C + c) * HW;
          for (int oy = 0; oy < g->OH; oy++) {
            int iy = oy * g->sh - g->ph + ky * g->dh;
            if (iy < 0 || iy >= g->H) continue;
            scatter_add_row(xi + (size_t)iy * g->W, row + (size_t)n * P + (size_t)oy * g->OW, g->OW, g->W, g->sw, off);
          }
        }
      }
}

static void forward1(const ct_conv_geom *g, int nb, const float *x, const float *w, const float *b, float *y,
                     float *ws) {
  const int Kg = g->K / g->G, CgKK = g->C / g->G * g->kh * g->kw;
  const size_t P = (size_t)g->OH * g->OW, cols = (size_t)nb * P;
  float *D = ws, *R = ws + (size_t)g->C * g->kh * g->kw * cols;
  lower1(g, nb, x, D);
  for (int gi = 0; gi < g->G; gi++)
    ct_sgemm(0, 0, Kg, (int)cols, CgKK, 1.0f, w + (size_t)gi * Kg * CgKK, D + (size_t)gi * CgKK * cols, 0.0f,
             R + (size_t)gi * Kg * cols);
  /* lift: K x (nb P) -> nb x K x P */
  for (int n = 0; n < nb; n++)
    for (int k = 0; k < g->K; k++) {
      const float *restrict src = R + (size_t)k * cols + (size_t)n * P;
      float *restrict dst = y + ((size_t)n * g->K + k) * P;
      const float bk = b ? b[k] : 0.0f;
      for (size_t p = 0; p < P; p++) dst[p] = src[p] + bk;
    }
}

static void backward1(const ct_conv_geom *g, int nb, const float *x, const float *w, const float *dy, float *dx,
                      float *dw, float *db, float *ws, bool fresh) {
  const int Kg = g->K / g->G, CgKK = g->C / g->G * g->kh * g->kw;
  const size_t P = (size_t)g->OH * g->OW, cols = (size_t)nb * P;
  float *D = ws, *Gm = ws + (size_t)g->C * g->kh * g->kw * cols;
  /* dy lowered: K x (nb P) */
  for (int n = 0; n < nb; n++)
    for (int k = 0; k < g->K; k++)
      memcpy(Gm + (size_t)k * cols + (size_t)n * P, dy + ((size_t)n * g->K + k) * P, P * sizeof(float));
  if (db)
    for (int k = 0; k < g->K; k++) {
      const float *restrict r = Gm + (size_t)k * cols;
      float s = 0;
      for (size_t p = 0; p < cols; p++) s += r[p];
      db[k] += s;
    }
  if (dw) {
    if (!fresh) lower1(g, nb, x, D);
    for (int gi = 0; gi < g->G; gi++)
      ct_sgemm(0, 1, Kg, CgKK, (int)cols, 1.0f, Gm + (size_t)gi * Kg * cols, D + (size_t)gi * CgKK * cols, 1.0f,
               dw + (size_t)gi * Kg * CgKK);
  }
  if (dx) {
    for (int gi = 0; gi < g->G; gi++)
      ct_sgemm(1, 0, CgKK, (int)cols, Kg, 1.0f, w + (size_t)gi * Kg * CgKK, Gm + (size_t)gi * Kg * cols, 0.0f,
               D + (size_t)gi * CgKK * cols);
    memset(dx, 0, (size_t)nb * g->C * g->H * g->W * sizeof(float));
    lift_back1(g, nb, D, dx);
  }
}

/* ================================================================ type 2 */

/* D2[(c,kx)][(img,iy,ox)] = x[img][c][iy][ox*sw-pw+kx*dw] (0 outside). */
static void lower2(const ct_conv_geom *g, int nb, const float *x, float *D) {
  const size_t cols = (size_t)nb * g->H * g->OW;
  for (int c = 0; c < g->C; c++)
    for (int kx = 0; kx < g->kw; kx++) {
      float *row = D + ((size_t)c * g->kw + kx) * cols;
      const int off = kx * g->dw - g->pw;
      for (int n = 0; n < nb; n++)
        for (int iy = 0; iy < g->H; iy++)
          gather_row(row + ((size_t)n * g->H + iy) * g->OW, x + (((size_t)n * g->C + c) * g->H + iy) * g->W, g->OW,
                     g->W, g->sw, off);
    }
}

/* W2 per group: rows (ky, kg), columns (c in group, kx). */
static void kernel2(const ct_conv_geom *g, const float *w, float *W2) {
  const int Kg = g->K / g->G, Cg = g->C / g->G;
  for (int gi = 0; gi < g->G; gi++)
    for (int ky = 0; ky < g->kh; ky++)
      for (int kg = 0; kg < Kg; kg++) {
        float *dst = W2 + (((size_t)gi * g->kh + ky) * Kg + kg) * Cg * g->kw;
        const float *src = w + (size_t)(gi * Kg + kg) * Cg * g->kh * g->kw;
        for (int c = 0; c < Cg; c++)
          for (int kx = 0; kx < g->kw; kx++) dst[c * g->kw + kx] = src[((size_t)c * g->kh + ky) * g->kw + kx];
      }
}

static void forward2(const ct_conv_geom *g, int nb, const float *x, const float *w, const float *b, float *y,
                     float *ws) {
  const int Kg = g->K / g->G, Cg = g->C / g->G;
  const size_t cols = (size_t)nb * g->H * g->OW, P = (size_t)g->OH * g->OW;
  float *D = ws, *W2 = D + (size_t)g->C * g->kw * cols, *R = W2 + (size_t)g->kh * g->K * Cg * g->kw;
  lower2(g, nb, x, D);
  kernel2(g, w, W2);
  const int M = g->kh * Kg, KK = Cg * g->kw;
  for (int gi = 0; gi < g->G; gi++)
    ct_sgemm(0, 0, M, (int)cols, KK, 1.0f, W2 + (size_t)gi * M * KK, D + (size_t)gi * KK * cols, 0.0f,
             R + (size_t)gi * M * cols);
  /* lift: y[n][k][oy][ox] = b[k] + sum_ky R[(g,ky,kg)][(n, oy*sh-ph+ky*dh, ox)] */
  for (int n = 0; n < nb; n++)
    for (int k = 0; k < g->K; k++) {
      float *yk = y + ((size_t)n * g->K + k) * P;
      const float bk = b ? b[k] : 0.0f;
      for (size_t p = 0; p < P; p++) yk[p] = bk;
      const int gi = k / Kg, kg = k % Kg;
      for (int ky = 0; ky < g->kh; ky++) {
        const float *row = R + (((size_t)gi * g->kh + ky) * Kg + kg) * cols + (size_t)n * g->H * g->OW;
        for (int oy = 0; oy < g->OH; oy++) {
          int iy = oy * g->sh - g->ph + ky * g->dh;
          if (iy < 0 || iy >= g->H) continue;
          float *restrict dst = yk + (size_t)oy * g->OW;
          const float *restrict src = row + (size_t)iy * g->OW;
          for (int ox = 0; ox < g->OW; ox++) dst[ox] += src[ox];
        }
      }
    }
}

static void backward2(const ct_conv_geom *g, int nb, const float *x, const float *w, const float *dy, float *dx,
                      float *dw, float *db, float *ws, bool fresh) {
  const int Kg = g->K / g->G, Cg = g->C / g->G;
  const size_t cols = (size_t)nb * g->H * g->OW;
  float *D = ws, *W2 = D + (size_t)g->C * g->kw * cols, *R = W2 + (size_t)g->kh * g->K * Cg * g->kw;
  float *dW2 = R + (size_t)g->kh * g->K * cols;
  const int M = g->kh * Kg, KK = Cg * g->kw;
  if (db) bias_grad(g, nb, dy, db);
  if (!dw && !dx) return;
  /* dy lowered: R[(g,ky,kg)][(n,iy,ox)] = dy[n][k][oy][ox] where iy = oy*sh-ph+ky*dh */
  memset(R, 0, (size_t)g->kh * g->K * cols * sizeof(float));
  for (int n = 0; n < nb; n++)
    for (int k = 0; k < g->K; k++) {
      const int gi = k / Kg, kg = k % Kg;
      for (int ky = 0; ky < g->kh; ky++) {
        float *row = R + (((size_t)gi * g->kh + ky) * Kg + kg) * cols + (size_t)n * g->H * g->OW;
        for (int oy = 0; oy < g->OH; oy++) {
          int iy = oy * g->sh - g->ph + ky * g->dh;
          if (iy < 0 || iy >= g->H) continue;
          memcpy(row + (size_t)iy * g->OW, dy + (((size_t)n * g->K + k) * g->OH + oy) * g->OW,
                 (size_t)g->OW * sizeof(float));
        }
      }
    }
  if (!fresh) {
    lower2(g, nb, x, D);
    kernel2(g, w, W2);
  }
  if (dw) {
    for (int gi = 0; gi < g->G; gi++)
      ct_sgemm(0, 1, M, KK, (int)cols, 1.0f, R + (size_t)gi * M * cols, D + (size_t)gi * KK * cols, 0.0f,
               dW2 + (size_t)gi * M * KK);
    for (int gi = 0; gi < g->G; gi++)
      for (int ky = 0; ky < g->kh; ky++)
        for (int kg = 0; kg < Kg; kg++) {
          const float *src = dW2 + (((size_t)gi * g->kh + ky) * Kg + kg) * KK;
          float *dst = dw + (size_t)(gi * Kg + kg) * Cg * g->kh * g->kw;
          for (int c = 0; c < Cg; c++)
            for (int kx = 0; kx < g->kw; kx++) dst[((size_t)c * g->kh + ky) * g->kw + kx] += src[c * g->kw + kx];
        }
  }
  if (dx) {
    for (int gi = 0; gi < g->G; gi++)
      ct_sgemm(1, 0, KK, (int)cols, M, 1.0f, W2 + (size_t)gi * M * KK, R + (size_t)gi * M * cols, 0.0f,
               D + (size_t)gi * KK * cols);
    memset(dx, 0, (size_t)nb * g->C * g->H * g->W * sizeof(float));
    for (int c = 0; c < g->C; c++)
      for (int kx = 0; kx < g->kw; kx++) {
        const float *row = D + ((size_t)c * g->kw + kx) * cols;
        const int off = kx * g->dw - g->pw;
        for (int n = 0; n < nb; n++)
          for (int iy = 0; iy < g->H; iy++)
            scatter_add_row(dx + (((size_t)n * g->C + c) * g->H + iy) * g->W, row + ((size_t)n * g->H + iy) * g->OW,
                            g->OW, g->W, g->sw, off);
      }
  }
}

/* ================================================================ type 3 */

/* X[c][(img, q)] = x[img][c][q]: the input with channels outermost. */
static void transpose_in(const ct_conv_geom *g, int nb, const float *x, float *X) {
  const size_t HW = (size_t)g->H * g->W, cols = (size_t)nb * HW;
  for (int n = 0; n < nb; n++)
    for (int c = 0; c < g->C; c++) memcpy(X + (size_t)c * cols + (size_t)n * HW, x + ((size_t)n * g->C + c) * HW, HW * sizeof(float));
}

/* W3 per group: rows (ky, kx, kg), columns c in group. */
static void kernel3(const ct_conv_geom *g, const float *w, float *W3) {
  const int Kg = g->K / g->G, Cg = g->C / g->G, KK = g->kh * g->kw;
  for (int gi = 0; gi < g->G; gi++)
    for (int t = 0; t < KK; t++)
      for (int kg = 0; kg < Kg; kg++) {
        float *dst = W3 + (((size_t)gi * KK + t) * Kg + kg) * Cg;
        const float *src = w + (size_t)(gi * Kg + kg) * Cg * KK + t;
        for (int c = 0; c < Cg; c++) dst[c] = src[(size_t)c * KK];
      }
}

static void forward3(const ct_conv_geom *g, int nb, const float *x, const float *w, const float *b, float *y,
                     float *ws) {
  const int Kg = g->K / g->G, Cg = g->C / g->G, KK = g->kh * g->kw;
  const size_t HW = (size_t)g->H * g->W, cols = (size_t)nb * HW, P = (size_t)g->OH * g->OW;
  float *X = ws, *W3 = X + (size_t)g->C * cols, *R = W3 + (size_t)KK * g->K * Cg;
  transpose_in(g, nb, x, X);
  kernel3(g, w, W3);
  const int M = KK * Kg;
  for (int gi = 0; gi < g->G; gi++)
    ct_sgemm(0, 0, M, (int)cols, Cg, 1.0f, W3 + (size_t)gi * M * Cg, X + (size_t)gi * Cg * cols, 0.0f,
             R + (size_t)gi * M * cols);
  /* lift: y[n][k][oy][ox] = b[k] + sum_{ky,kx} R[(g,ky,kx,kg)][(n, iy, ix)] */
  for (int n = 0; n < nb; n++)
    for (int k = 0; k < g->K; k++) {
      float *yk = y + ((size_t)n * g->K + k) * P;
      const float bk = b ? b[k] : 0.0f;
      for (size_t p = 0; p < P; p++) yk[p] = bk;
      const int gi = k / Kg, kg = k % Kg;
      for (int ky = 0; ky < g->kh; ky++)
        for (int kx = 0; kx < g->kw; kx++) {
          const float *plane = R + (((size_t)gi * KK + ky * g->kw + kx) * Kg + kg) * cols + (size_t)n * HW;
          const int off = kx * g->dw - g->pw;
          int lo, hi;
          valid_range(g->OW, g->W, g->sw, off, &lo, &hi);
          for (int oy = 0; oy < g->OH; oy++) {
            int iy = oy * g->sh - g->ph + ky * g->dh;
            if (iy < 0 || iy >= g->H) continue;
            float *restrict dst = yk + (size_t)oy * g->OW;
            const float *restrict src = plane + (size_t)iy * g->W; /* column ix = ox*sw + off */
            if (g->sw == 1)
              for (int ox = lo; ox < hi; ox++) dst[ox] += src[ox + off];
            else
              for (int ox = lo; ox < hi; ox++) dst[ox] += src[ox * g->sw + off];
          }
        }
    }
}

static void backward3(const ct_conv_geom *g, int nb, const float *x, const float *w, const float *dy, float *dx,
                      float *dw, float *db, float *ws, bool fresh) {
  const int Kg = g->K / g->G, Cg = g->C / g->G, KK = g->kh * g->kw;
  const size_t HW = (size_t)g->H * g->W, cols = (size_t)nb * HW, P = (size_t)g->OH * g->OW;
  float *X = ws, *W3 = X + (size_t)g->C * cols, *R = W3 + (size_t)KK * g->K * Cg;
  float *dW3 = R + (size_t)KK * g->K * cols;
  const int M = KK * Kg;
  if (db) bias_grad(g, nb, dy, db);
  if (!dw && !dx) return;
  /* dy lowered: R[(g,ky,kx,kg)][(n,iy,ix)] = dy[n][k][oy][ox] at iy = oy*sh-ph+ky*dh, ix = ... */
  memset(R, 0, (size_t)KK * g->K * cols * sizeof(float));
  for (int n = 0; n < nb; n++)
    for (int k = 0; k < g->K; k++) {
      const int gi = k / Kg, kg = k % Kg;
      const float *dk = dy + ((size_t)n * g->K + k) * P;
      for (int ky = 0; ky < g->kh; ky++)
        for (int kx = 0; kx < g->kw; kx++) {
          float *plane = R + (((size_t)gi * KK + ky * g->kw + kx) * Kg + kg) * cols + (size_t)n * HW;
          const int off = kx * g->dw - g->pw;
          int lo, hi;
          valid_range(g->OW, g->W, g->sw, off, &lo, &hi);
          for (int oy = 0; oy < g->OH; oy++) {
            int iy = oy * g->sh - g->ph + ky * g->dh;
            if (iy < 0 || iy >= g->H) continue;
            float *dst = plane + (size_t)iy * g->W;
            const float *src = dk + (size_t)oy * g->OW;
            for (int ox = lo; ox < hi; ox++) dst[ox * g->sw + off] = src[ox];
          }
        }
    }
  if (!fresh) {
    transpose_in(g, nb, x, X);
    kernel3(g, w, W3);
  }
  if (dw) {
    for (int gi = 0; gi < g->G; gi++)
      ct_sgemm(0, 1, M, Cg, (int)cols, 1.0f, R + (size_t)gi * M * cols, X + (size_t)gi * Cg * cols, 0.0f,
               dW3 + (size_t)gi * M * Cg);
    for (int gi = 0; gi < g->G; gi++)
      for (int t = 0; t < KK; t++)
        for (int kg = 0; kg < Kg; kg++) {
          const float *src = dW3 + (((size_t)gi * KK + t) * Kg + kg) * Cg;
          float *dst = dw + (size_t)(gi * Kg + kg) * Cg * KK + t;
          for (int c = 0; c < Cg; c++) dst[(size_t)c * KK] += src[c];
        }
  }
  if (dx) {
    for (int gi = 0; gi < g->G; gi++)
      ct_sgemm(1, 0, Cg, (int)cols, M, 1.0f, W3 + (size_t)gi * M * Cg, R + (size_t)gi * M * cols, 0.0f,
               X + (size_t)gi * Cg * cols);
    for (int n = 0; n < nb; n++)
      for (int c = 0; c < g->C; c++)
        memcpy(dx + ((size_t)n * g->C + c) * HW, X + (size_t)c * cols + (size_t)n * HW, HW * sizeof(float));
  }
}

/* ================================================================ pointwise */

static void forward_pw(const ct_conv_geom *g, int nb, const float *x, const float *w, const float *b, float *y) {
  const int Kg = g->K / g->G, Cg = g->C / g->G;
  const size_t HW = (size_t)g->H * g->W;
  for (int n = 0; n < nb; n++) {
    const float *xn = x + (size_t)n * g->C * HW;
    float *yn = y + (size_t)n * g->K * HW;
    for (int gi = 0; gi < g->G; gi++)
      ct_sgemm(0, 0, Kg, (int)HW, Cg, 1.0f, w + (size_t)gi * Kg * Cg, xn + (size_t)gi * Cg * HW, 0.0f,
               yn + (size_t)gi * Kg * HW);
    if (b)
      for (int k = 0; k < g->K; k++) {
        float *restrict yk = yn + (size_t)k * HW;
        for (size_t p = 0; p < HW; p++) yk[p] += b[k];
      }
  }
}

static void backward_pw(const ct_conv_geom *g, int nb, const float *x, const float *w, const float *dy, float *dx,
                        float *dw, float *db) {
  const int Kg = g->K / g->G, Cg = g->C / g->G;
  const size_t HW = (size_t)g->H * g->W;
  if (db) bias_grad(g, nb, dy, db);
  for (int n = 0; n < nb; n++) {
    const float *xn = x + (size_t)n * g->C * HW, *dyn = dy + (size_t)n * g->K * HW;
    for (int gi = 0; gi < g->G; gi++) {
      if (dw)
        ct_sgemm(0, 1, Kg, Cg, (int)HW, 1.0f, dyn + (size_t)gi * Kg * HW, xn + (size_t)gi * Cg * HW, 1.0f,
                 dw + (size_t)gi * Kg * Cg);
      if (dx)
        ct_sgemm(1, 0, Cg, (int)HW, Kg, 1.0f, w + (size_t)gi * Kg * Cg, dyn + (size_t)gi * Kg * HW, 0.0f,
                 dx + (size_t)n * g->C * HW + (size_t)gi * Cg * HW);
    }
  }
}

/* ================================================================ dispatch */

size_t ct_lower_workspace(const ct_conv_geom *g, ct_lowering t, int nb) {
  const size_t Cg = (size_t)(g->C / g->G), K = (size_t)g->K, C = (size_t)g->C;
  const size_t kh = (size_t)g->kh, kw = (size_t)g->kw, n = (size_t)nb;
  switch (t) {
    case CT_LOWER_TYPE1: return (C * kh * kw + K) * n * (size_t)g->OH * g->OW;
    case CT_LOWER_TYPE2: {
      size_t cols = n * (size_t)g->H * g->OW;
      return C * kw * cols + 2 * kh * K * Cg * kw + kh * K * cols;
    }
    case CT_LOWER_TYPE3: {
      size_t cols = n * (size_t)g->H * g->W;
      return C * cols + 2 * kh * kw * K * Cg + kh * kw * K * cols;
    }
    default: return 0;
  }
}

void ct_lower_forward(const ct_conv_geom *g, ct_lowering t, int nb, const float *x, const float *w, const float *b,
                      float *y, float *ws) {
  if (nb <= 0) return;
  switch (t) {
    case CT_LOWER_TYPE2: forward2(g, nb, x, w, b, y, ws); break;
    case CT_LOWER_TYPE3: forward3(g, nb, x, w, b, y, ws); break;
    case CT_LOWER_POINTWISE: forward_pw(g, nb, x, w, b, y); break;
    default: forward1(g, nb, x, w, b, y, ws); break;
  }
}

void ct_lower_backward(const ct_conv_geom *g, ct_lowering t, int nb, const float *x, const float *w, const float *dy,
                       float *dx, float *dw, float *db, float *ws, bool reuse) {
  if (nb <= 0) return;
  switch (t) {
    case CT_LOWER_TYPE2: backward2(g, nb, x, w, dy, dx, dw, db, ws, reuse); break;
    case CT_LOWER_TYPE3: backward3(g, nb, x, w, dy, dx, dw, db, ws, reuse); break;
    case CT_LOWER_POINTWISE: backward_pw(g, nb, x, w, dy, dx, dw, db); break;
    default: backward1(g, nb, x, w, dy, dx, dw, db, ws, reuse); break;
  }
}

/* ================================================================ cost model */

/* A GEMM's rate falls off when a dimension is small (panels do not fill the kernel). */
static double shape_eff(double m, double n, double k) {
  return (m / (m + 24.0)) * (n / (n + 24.0)) * (k / (k + 24.0));
}

double ct_lower_cost(const ct_conv_geom *g, ct_lowering t, int nb, double gflops, double gbytes, size_t max_ws) {
  if (ct_lower_workspace(g, t, nb) > max_ws) return 1e30;
  const double G = g->G, K = g->K, C = g->C, Cg = C / G, Kg = K / G, kh = g->kh, kw = g->kw, n = nb;
  const double H = g->H, W = g->W, OH = g->OH, OW = g->OW;
  double flops, bytes, eff;
  switch (t) {
    case CT_LOWER_TYPE1:
      flops = 2 * K * Cg * kh * kw * n * OH * OW;
      /* lower (write + read in the GEMM), lift, and the same again backward with col2im */
      bytes = 4.0 * (3 * C * kh * kw * n * OH * OW + 3 * K * n * OH * OW);
      eff = shape_eff(Kg, n * OH * OW, Cg * kh * kw);
      break;
    case CT_LOWER_TYPE2:
      flops = 2 * kh * K * Cg * kw * n * H * OW;
      bytes = 4.0 * (3 * C * kw * n * H * OW + 3 * kh * K * n * H * OW);
      eff = shape_eff(kh * Kg, n * H * OW, Cg * kw);
      break;
    case CT_LOWER_TYPE3:
      flops = 2 * kh * kw * K * Cg * n * H * W;
      bytes = 4.0 * (3 * C * n * H * W + 3 * kh * kw * K * n * H * W);
      eff = shape_eff(kh * kw * Kg, n * H * W, Cg);
      break;
    default: return 1e30;
  }
  /* forward and backward: three GEMMs of the same size */
  return 3 * flops / (gflops * 1e9 * eff) + bytes / (gbytes * 1e9);
}

ct_lowering ct_lower_choose(const ct_conv_geom *g, int nb, double gflops, double gbytes, size_t max_ws) {
  if (ct_conv_is_pointwise(g)) return CT_LOWER_POINTWISE;
  ct_lowering best = CT_LOWER_TYPE1;
  double best_cost = ct_lower_cost(g, CT_LOWER_TYPE1, nb, gflops, gbytes, max_ws);
  for (int t = CT_LOWER_TYPE2; t <= CT_LOWER_TYPE3; t++) {
    double c = ct_lower_cost(g, (ct_lowering)t, nb, gflops, gbytes, max_ws);
    if (c < best_cost) {
      best_cost = c;
      best = (ct_lowering)t;
    }
  }
  return best;
}
