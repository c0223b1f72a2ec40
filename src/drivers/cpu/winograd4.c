/* Winograd's minimal filtering F(4x4, 3x3) (Lavin and Gray, 2016; interpolation points 0, 1, -1,
 * 2, -2 and infinity), the CPU's WINOGRAD4 (lowering.h): each 6x6 input tile d (its corner at
 * 4 th - ph, 4 tw - pw) becomes V = B^T d B, each kernel g becomes U = G g G^T, and the 4x4
 * output tile is A^T (U . V) A: 36 GEMMs per group over a block's tiles, 36 K C T multiply-adds
 * for 16 T outputs, against 9 per output summed directly (4 times fewer; F(2x2, 3x3): 2.25).
 *
 *   B^T = | 4  0 -5  0  1  0 |   G = |  1/4    0     0   |   A^T = | 1  1  1  1  1  0 |
 *         | 0 -4 -4  1  1  0 |       | -1/6  -1/6  -1/6  |         | 0  1 -1  2 -2  0 |
 *         | 0  4 -4 -1  1  0 |       | -1/6   1/6  -1/6  |         | 0  1  1  4  4  0 |
 *         | 0 -2 -1  2  1  0 |       |  1/24  1/12  1/6  |         | 0  1 -1  8 -8  1 |
 *         | 0  2 -1 -2  1  0 |       |  1/24 -1/12  1/6  |
 *         | 0  4  0 -5  0  1 |       |  0     0     1    |
 *
 * Backward is the chain rule through the same maps: dM = A dY A^T per tile, the GEMMs give dU
 * and dV, dx = the tiles' B dV B^T added where they overlap (two rows and two columns with each
 * neighbour), dw += G^T dU G. Every step runs in a fixed order, so results are reproducible.
 * The larger coefficients round more than F(2x2, 3x3) does (lowering.h).
 *
 * Layout: ct_lower_wino4_block; xi = 6 i + j for row i, column j of a tile. The row steps run
 * eight tiles of a row at once (ct_v8f lanes, one tile each; the last step of a row four), the
 * tiles' columns gathered from (or scattered to) a row buffer by shuffles: tile t's columns
 * are the buffer's 4 t .. 4 t + 5. As in winograd.c, the row steps are always-inline bodies
 * instantiated for the baseline and for AVX2 (this file is built with -Wno-psabi: the 8-lane
 * vectors never cross a call between the two); both give the same floats. */
#include <string.h>

#include "core/simd.h"
#include "drivers/cpu/kernels.h"

#define AI static inline __attribute__((always_inline))

/* ---------------------------------------------------------------- the 1-D maps */

/* r = B^T d (6 -> 6) */
#define BT6(d, r)                                                                                 \
  do {                                                                                            \
    const VT t1_ = d[4] - 4.0f * d[2], t2_ = d[3] - 4.0f * d[1];                                  \
    const VT t3_ = d[4] - d[2], t4_ = 2.0f * (d[3] - d[1]);                                       \
    r[0] = 4.0f * (d[0] - d[2]) + t3_;                                                            \
    r[1] = t1_ + t2_;                                                                             \
    r[2] = t1_ - t2_;                                                                             \
    r[3] = t3_ + t4_;                                                                             \
    r[4] = t3_ - t4_;                                                                             \
    r[5] = 4.0f * (d[1] - d[3]) + (d[5] - d[3]);                                                  \
  } while (0)

/* d = B v, the adjoint (6 -> 6) */
#define B6(v, d)                                                                                  \
  do {                                                                                            \
    const VT a_ = v[1] + v[2], b_ = v[3] + v[4], c_ = v[1] - v[2], e_ = v[3] - v[4];              \
    d[0] = 4.0f * v[0];                                                                           \
    d[1] = 4.0f * (v[5] - c_) - 2.0f * e_;                                                        \
    d[2] = -(5.0f * v[0] + 4.0f * a_ + b_);                                                       \
    d[3] = c_ + 2.0f * e_ - 5.0f * v[5];                                                          \
    d[4] = v[0] + a_ + b_;                                                                        \
    d[5] = v[5];                                                                                  \
  } while (0)

/* o = A^T m (6 -> 4) */
#define AT6(m, o)                                                                                 \
  do {                                                                                            \
    const VT s12_ = m[1] + m[2], d12_ = m[1] - m[2], s34_ = m[3] + m[4], d34_ = m[3] - m[4];      \
    o[0] = m[0] + s12_ + s34_;                                                                    \
    o[1] = d12_ + 2.0f * d34_;                                                                    \
    o[2] = s12_ + 4.0f * s34_;                                                                    \
    o[3] = d12_ + 8.0f * d34_ + m[5];                                                             \
  } while (0)

/* m = A y, the adjoint (4 -> 6) */
#define A4(y, m)                                                                                  \
  do {                                                                                            \
    const VT e_ = y[0] + y[2], o_ = y[1] + y[3], e2_ = y[0] + 4.0f * y[2], o2_ = 2.0f * y[1] + 8.0f * y[3]; \
    m[0] = y[0];                                                                                  \
    m[1] = e_ + o_;                                                                               \
    m[2] = e_ - o_;                                                                               \
    m[3] = e2_ + o2_;                                                                             \
    m[4] = e2_ - o2_;                                                                             \
    m[5] = y[3];                                                                                  \
  } while (0)

/* u = G g (3 -> 6) */
#define G3(g, u)                                                                                  \
  do {                                                                                            \
    const VT p_ = g[0] + g[2], q_ = (1.0f / 24) * g[0] + (1.0f / 6) * g[2], r_ = (1.0f / 12) * g[1]; \
    u[0] = 0.25f * g[0];                                                                          \
    u[1] = (-1.0f / 6) * (p_ + g[1]);                                                             \
    u[2] = (-1.0f / 6) * (p_ - g[1]);                                                             \
    u[3] = q_ + r_;                                                                               \
    u[4] = q_ - r_;                                                                               \
    u[5] = g[2];                                                                                  \
  } while (0)

/* o = G^T u, the adjoint (6 -> 3) */
#define GT6(u, o)                                                                                 \
  do {                                                                                            \
    const VT s12_ = u[1] + u[2], d12_ = u[2] - u[1], s34_ = u[3] + u[4], d34_ = u[3] - u[4];      \
    o[0] = 0.25f * u[0] - (1.0f / 6) * s12_ + (1.0f / 24) * s34_;                                 \
    o[1] = (1.0f / 6) * d12_ + (1.0f / 12) * d34_;                                                \
    o[2] = (1.0f / 6) * (s34_ - s12_) + u[5];                                                     \
  } while (0)

/* ---------------------------------------------------------------- tiles <-> row buffers */

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
/* c[k] lane t = p[4 t + k], k < 6, for 8 (4) tiles: reads p[0, 40) (p[0, 20)) */
AI void tiles_in8(const float *p, ct_v8f c[6]) {
  const ct_v8f X = ct_v8f_load(p), Y = ct_v8f_load(p + 8), Z = ct_v8f_load(p + 16), W = ct_v8f_load(p + 24);
  const ct_v8f Q = ct_v8f_load(p + 32);
  const ct_v8f a0 = __builtin_shufflevector(X, Y, 0, 4, 8, 12, 1, 5, 9, 13);
  const ct_v8f a1 = __builtin_shufflevector(X, Y, 2, 6, 10, 14, 3, 7, 11, 15);
  const ct_v8f b0 = __builtin_shufflevector(Z, W, 0, 4, 8, 12, 1, 5, 9, 13);
  const ct_v8f b1 = __builtin_shufflevector(Z, W, 2, 6, 10, 14, 3, 7, 11, 15);
  c[0] = __builtin_shufflevector(a0, b0, 0, 1, 2, 3, 8, 9, 10, 11);
  c[1] = __builtin_shufflevector(a0, b0, 4, 5, 6, 7, 12, 13, 14, 15);
  c[2] = __builtin_shufflevector(a1, b1, 0, 1, 2, 3, 8, 9, 10, 11);
  c[3] = __builtin_shufflevector(a1, b1, 4, 5, 6, 7, 12, 13, 14, 15);
  c[4] = __builtin_shufflevector(c[0], Q, 1, 2, 3, 4, 5, 6, 7, 8);
  c[5] = __builtin_shufflevector(c[1], Q, 1, 2, 3, 4, 5, 6, 7, 9);
}
AI void tiles_in4(const float *p, ct_v4f c[6]) {
  const ct_v4f X = ct_v4f_load(p), Y = ct_v4f_load(p + 4), Z = ct_v4f_load(p + 8), W = ct_v4f_load(p + 12);
  const ct_v4f Q = ct_v4f_load(p + 16);
  const ct_v4f xl = __builtin_shufflevector(X, Y, 0, 4, 1, 5), xh = __builtin_shufflevector(X, Y, 2, 6, 3, 7);
  const ct_v4f zl = __builtin_shufflevector(Z, W, 0, 4, 1, 5), zh = __builtin_shufflevector(Z, W, 2, 6, 3, 7);
  c[0] = __builtin_shufflevector(xl, zl, 0, 1, 4, 5);
  c[1] = __builtin_shufflevector(xl, zl, 2, 3, 6, 7);
  c[2] = __builtin_shufflevector(xh, zh, 0, 1, 4, 5);
  c[3] = __builtin_shufflevector(xh, zh, 2, 3, 6, 7);
  c[4] = __builtin_shufflevector(c[0], Q, 1, 2, 3, 4);
  c[5] = __builtin_shufflevector(c[1], Q, 1, 2, 3, 5);
}

/* c[0..3] alone: reads p[0, 4 L) */
AI void tiles_in8_4(const float *p, ct_v8f c[4]) {
  const ct_v8f X = ct_v8f_load(p), Y = ct_v8f_load(p + 8), Z = ct_v8f_load(p + 16), W = ct_v8f_load(p + 24);
  const ct_v8f a0 = __builtin_shufflevector(X, Y, 0, 4, 8, 12, 1, 5, 9, 13);
  const ct_v8f a1 = __builtin_shufflevector(X, Y, 2, 6, 10, 14, 3, 7, 11, 15);
  const ct_v8f b0 = __builtin_shufflevector(Z, W, 0, 4, 8, 12, 1, 5, 9, 13);
  const ct_v8f b1 = __builtin_shufflevector(Z, W, 2, 6, 10, 14, 3, 7, 11, 15);
  c[0] = __builtin_shufflevector(a0, b0, 0, 1, 2, 3, 8, 9, 10, 11);
  c[1] = __builtin_shufflevector(a0, b0, 4, 5, 6, 7, 12, 13, 14, 15);
  c[2] = __builtin_shufflevector(a1, b1, 0, 1, 2, 3, 8, 9, 10, 11);
  c[3] = __builtin_shufflevector(a1, b1, 4, 5, 6, 7, 12, 13, 14, 15);
}
AI void tiles_in4_4(const float *p, ct_v4f c[4]) {
  const ct_v4f X = ct_v4f_load(p), Y = ct_v4f_load(p + 4), Z = ct_v4f_load(p + 8), W = ct_v4f_load(p + 12);
  const ct_v4f xl = __builtin_shufflevector(X, Y, 0, 4, 1, 5), xh = __builtin_shufflevector(X, Y, 2, 6, 3, 7);
  const ct_v4f zl = __builtin_shufflevector(Z, W, 0, 4, 1, 5), zh = __builtin_shufflevector(Z, W, 2, 6, 3, 7);
  c[0] = __builtin_shufflevector(xl, zl, 0, 1, 4, 5);
  c[1] = __builtin_shufflevector(xl, zl, 2, 3, 6, 7);
  c[2] = __builtin_shufflevector(xh, zh, 0, 1, 4, 5);
  c[3] = __builtin_shufflevector(xh, zh, 2, 3, 6, 7);
}

/* v with its lanes from n on zeroed */
typedef int v8i_t __attribute__((vector_size(32)));
AI ct_v8f keep8(ct_v8f v, int n) {
  const v8i_t lane = {0, 1, 2, 3, 4, 5, 6, 7}, m = lane < (v8i_t){n, n, n, n, n, n, n, n};
  return (ct_v8f)((v8i_t)v & m);
}
AI ct_v4f keep4(ct_v4f v, int n) {
  const ct_v4i lane = {0, 1, 2, 3}, m = lane < ct_v4i_splat(n);
  return (ct_v4f)((ct_v4i)v & m);
}

/* o[0..L/2) = 4 L floats, float 4 t + k = q[k] lane t (k < 4): the inverse of tiles_in */
AI void tiles_out8(const ct_v8f q[4], ct_v8f o[4]) {
  const ct_v8f a0 = __builtin_shufflevector(q[0], q[1], 0, 8, 1, 9, 2, 10, 3, 11);
  const ct_v8f a1 = __builtin_shufflevector(q[0], q[1], 4, 12, 5, 13, 6, 14, 7, 15);
  const ct_v8f b0 = __builtin_shufflevector(q[2], q[3], 0, 8, 1, 9, 2, 10, 3, 11);
  const ct_v8f b1 = __builtin_shufflevector(q[2], q[3], 4, 12, 5, 13, 6, 14, 7, 15);
  o[0] = __builtin_shufflevector(a0, b0, 0, 1, 8, 9, 2, 3, 10, 11);
  o[1] = __builtin_shufflevector(a0, b0, 4, 5, 12, 13, 6, 7, 14, 15);
  o[2] = __builtin_shufflevector(a1, b1, 0, 1, 8, 9, 2, 3, 10, 11);
  o[3] = __builtin_shufflevector(a1, b1, 4, 5, 12, 13, 6, 7, 14, 15);
}
AI void tiles_out4(const ct_v4f q[4], ct_v4f o[4]) {
  const ct_v4f l01 = __builtin_shufflevector(q[0], q[1], 0, 4, 1, 5), h01 = __builtin_shufflevector(q[0], q[1], 2, 6, 3, 7);
  const ct_v4f l23 = __builtin_shufflevector(q[2], q[3], 0, 4, 1, 5), h23 = __builtin_shufflevector(q[2], q[3], 2, 6, 3, 7);
  o[0] = __builtin_shufflevector(l01, l23, 0, 1, 4, 5);
  o[1] = __builtin_shufflevector(l01, l23, 2, 3, 6, 7);
  o[2] = __builtin_shufflevector(h01, h23, 0, 1, 4, 5);
  o[3] = __builtin_shufflevector(h01, h23, 2, 3, 6, 7);
}

/* ---------------------------------------------------------------- the row steps */

/* One step of L tiles from tw in each body below: VT the vector, L its lanes, LD / ST its
 * unaligned load and store, TIN / TOUT tiles_in / tiles_out for it. */

/* V: row i of the tiles (after B^T down the columns, in z_i) through B along the row */
#define LOWER_STEP(VT, L, LD, ST, TIN, TIN4, TOUT, KEEP)                                                      \
  do {                                                                                            \
    VT c[6], r[6];                                                                                \
    TIN(zi + 4 * tw, c);                                                                          \
    BT6(c, r);                                                                                    \
    for (int j = 0; j < 6; j++) ST(vi + (size_t)j * sV + tw, r[j]);                               \
  } while (0)

/* y: the tiles' 36 products through A^T down and along, plus the bias, into 4 row buffers */
#define LIFT_STEP(VT, L, LD, ST, TIN, TIN4, TOUT, KEEP)                                                       \
  do {                                                                                            \
    VT p[4][6];                                                                                   \
    for (int j = 0; j < 6; j++) {                                                                 \
      VT mm[6], o[4];                                                                             \
      for (int i = 0; i < 6; i++) mm[i] = LD(m + (size_t)(6 * i + j) * sM + tw);                  \
      AT6(mm, o);                                                                                 \
      for (int a = 0; a < 4; a++) p[a][j] = o[a];                                                 \
    }                                                                                             \
    for (int a = 0; a < 4; a++) {                                                                 \
      VT q[4], o[4];                                                                              \
      AT6(p[a], q);                                                                               \
      for (int k = 0; k < 4; k++) q[k] += bias;                                                   \
      TOUT(q, o);                                                                                 \
      float *dst_ = (4 * tw < direct && ya[a] ? ya[a] : rbuf[a]) + 4 * tw;                        \
      for (int k = 0; k < 4; k++) ST(dst_ + k * L, o[k]);                                         \
    }                                                                                             \
  } while (0)

/* dM: the tiles' 4x4 of dy (from 4 row buffers) through A along and down */
#define LIFT_GRAD_STEP(VT, L, LD, ST, TIN, TIN4, TOUT, KEEP)                                                  \
  do {                                                                                            \
    VT h[4][6];                                                                                   \
    for (int a = 0; a < 4; a++) {                                                                 \
      VT c[4];                                                                                    \
      TIN4((4 * tw < direct ? src[a] : rsrc[a]) + 4 * tw, c);                                     \
      A4(c, h[a]);                                                                                \
    }                                                                                             \
    for (int j = 0; j < 6; j++) {                                                                 \
      VT col[4] = {h[0][j], h[1][j], h[2][j], h[3][j]}, mm[6];                                    \
      A4(col, mm);                                                                                \
      for (int i = 0; i < 6; i++) ST(m + (size_t)(6 * i + j) * sM + tw, mm[i]);                   \
    }                                                                                             \
  } while (0)

/* dx's terms: the tiles' dV through B down and along, into the 36 rows of terms */
#define TERMS_STEP(VT, L, LD, ST, TIN, TIN4, TOUT, KEEP)                                                      \
  do {                                                                                            \
    VT h[6][6];                                                                                   \
    for (int j = 0; j < 6; j++) {                                                                 \
      VT vv[6], dd[6];                                                                            \
      for (int i = 0; i < 6; i++) vv[i] = LD(v + (size_t)(6 * i + j) * sV + tw);                  \
      if (tw + L > wg->TW) /* lanes past the row's tiles: dropped */                              \
        for (int i = 0; i < 6; i++) vv[i] = KEEP(vv[i], wg->TW - tw);                             \
      B6(vv, dd);                                                                                 \
      for (int k = 0; k < 6; k++) h[k][j] = dd[k];                                                \
    }                                                                                             \
    for (int k = 0; k < 6; k++) {                                                                 \
      VT dd[6];                                                                                   \
      B6(h[k], dd);                                                                               \
      for (int l = 0; l < 6; l++) ST(tr[k][l] + tw, dd[l]);                                       \
    }                                                                                             \
  } while (0)

/* Runs STEP over a row's tiles: eight at a time while eight fit in TWv, then four. */
#define ROW_STEPS(STEP)                                                                           \
  do {                                                                                            \
    int tw = 0;                                                                                   \
    for (; tw + 8 <= wg->TWv; tw += 8) {                                                          \
      typedef ct_v8f VT;                                                                          \
      const VT bias = ct_v8f_splat(bk);                                                           \
      (void)bias;                                                                                 \
      STEP(VT, 8, ct_v8f_load, ct_v8f_store, tiles_in8, tiles_in8_4, tiles_out8, keep8);                              \
    }                                                                                             \
    for (; tw < wg->TW; tw += 4) {                                                                \
      typedef ct_v4f VT;                                                                          \
      const VT bias = ct_v4f_splat(bk);                                                           \
      (void)bias;                                                                                 \
      STEP(VT, 4, ct_v4f_load, ct_v4f_store, tiles_in4, tiles_in4_4, tiles_out4, keep4);                              \
    }                                                                                             \
  } while (0)

/* V for every channel and row of tiles r in [r0, r1) (r = n TH + th), tile (r - r0) TW + tw at
 * column t of rows ld floats apart, the 36 blocks sV apart. The six input rows (read from x
 * where they lie; a zero row above or below the image) go through B^T into z_0..z_5, padded
 * rows whose column q holds input column q - pw (zero outside the image), then each along the
 * row through B. scratch: 7 rows of rw floats. */
AI void lower_rows_body(const ct_conv_geom *g, const ct_wino_strides *wg, const float *x, int r0, int r1, float *V,
                        size_t ld, size_t sV, float *scratch) {
  const size_t plane = (size_t)g->H * g->W;
  float *z[6];
  const float *zero = scratch + (size_t)6 * wg->rw;
  for (int i = 0; i < 6; i++) z[i] = scratch + (size_t)i * wg->rw;
  memset(scratch, 0, 7 * wg->rw * sizeof(float)); /* only columns [pw, pw + W) are written */
  const float bk = 0.0f;
  (void)bk;
  const int W = g->W;
  for (int c = 0; c < g->C; c++)
    for (int row = r0; row < r1; row++) {
      const int n = row / wg->TH, th = row % wg->TH;
      const float *xp = x + ((size_t)n * g->C + c) * plane, *rr[6];
      for (int i = 0; i < 6; i++) {
        const int iy = 4 * th - g->ph + i;
        rr[i] = iy < 0 || iy >= g->H ? zero : xp + (size_t)iy * W;
        if (rr[i] != zero && c + 1 < g->C) /* the next channel's rows (short streams) */
          for (int q = 0; q < W; q += 16) __builtin_prefetch(rr[i] + plane + q);
      }
      int j = 0;
      for (; j + 8 <= W; j += 8) {
        typedef ct_v8f VT;
        VT d[6], r[6];
        for (int i = 0; i < 6; i++) d[i] = ct_v8f_load(rr[i] + j);
        BT6(d, r);
        for (int i = 0; i < 6; i++) ct_v8f_store(z[i] + g->pw + j, r[i]);
      }
      for (; j + 4 <= W; j += 4) {
        typedef ct_v4f VT;
        VT d[6], r[6];
        for (int i = 0; i < 6; i++) d[i] = ct_v4f_load(rr[i] + j);
        BT6(d, r);
        for (int i = 0; i < 6; i++) ct_v4f_store(z[i] + g->pw + j, r[i]);
      }
      for (; j < W; j++) {
        typedef float VT;
        VT d[6], r[6];
        for (int i = 0; i < 6; i++) d[i] = rr[i][j];
        BT6(d, r);
        for (int i = 0; i < 6; i++) z[i][g->pw + j] = r[i];
      }
      const size_t t0 = (size_t)(row - r0) * wg->TW;
      for (int i = 0; i < 6; i++) {
        float *vi = V + (size_t)(6 * i) * sV + (size_t)c * ld + t0;
        const float *zi = z[i];
        ROW_STEPS(LOWER_STEP);
      }
    }
}

/* The columns of an output row the row steps cover whole, left to right (the steps of ROW_STEPS
 * that end at or before OW): those are read from or written to dy or y where they lie. */
static int direct_cols(const ct_wino_strides *wg, int OW) {
  int tw = 0, done = 0;
  for (; tw + 8 <= wg->TWv; tw += 8) {
    if (4 * (tw + 8) > OW) return done;
    done = 4 * (tw + 8);
  }
  for (; tw < wg->TW; tw += 4) {
    if (4 * (tw + 4) > OW) return done;
    done = 4 * (tw + 4);
  }
  return done;
}

/* y = A^T M A + b per tile for the rows of tiles [r0, r1) (M laid out as V): the steps that end
 * within OW write y where it lies, the rest into four row buffers rb (4 rw floats), whose
 * columns up to OW are copied out. */
AI void lift_rows_body(const ct_conv_geom *g, const ct_wino_strides *wg, const float *M, size_t ld, size_t sM,
                       int r0, int r1, const float *b, float *y, float *rb) {
  const size_t oplane = (size_t)g->OH * g->OW;
  const int direct = direct_cols(wg, g->OW);
  float *rbuf[4];
  for (int a = 0; a < 4; a++) rbuf[a] = rb + (size_t)a * wg->rw;
  for (int k = 0; k < g->K; k++) {
    const float bk = b ? b[k] : 0.0f;
    for (int row = r0; row < r1; row++) {
      const int n = row / wg->TH, th = row % wg->TH;
      float *yp = y + ((size_t)n * g->K + k) * oplane, *ya[4];
      for (int a = 0; a < 4; a++) ya[a] = 4 * th + a < g->OH ? yp + (size_t)(4 * th + a) * g->OW : NULL;
      const float *m = M + (size_t)k * ld + (size_t)(row - r0) * wg->TW;
      ROW_STEPS(LIFT_STEP);
      if (direct < g->OW)
        for (int a = 0; a < 4 && ya[a]; a++)
          memcpy(ya[a] + direct, rbuf[a] + direct, (size_t)(g->OW - direct) * sizeof(float));
    }
  }
}

/* dM = A dY A^T per tile (the adjoint of lift_rows) for the rows of tiles [r0, r1): the steps
 * that end within OW read dy where it lies, the rest the columns past those copied into
 * zero-padded row buffers rb (5 rw floats); a row past OH reads the fifth, all zeros. */
AI void lift_grad_rows_body(const ct_conv_geom *g, const ct_wino_strides *wg, const float *dy, int r0, int r1,
                            float *dM, size_t ld, size_t sM, float *rb) {
  const size_t oplane = (size_t)g->OH * g->OW;
  const int direct = direct_cols(wg, g->OW);
  float *rbuf[4];
  for (int a = 0; a < 4; a++) rbuf[a] = rb + (size_t)a * wg->rw;
  const float *rbz = rb + (size_t)4 * wg->rw, bk = 0.0f;
  (void)bk;
  memset(rb, 0, 5 * wg->rw * sizeof(float));
  for (int k = 0; k < g->K; k++)
    for (int row = r0; row < r1; row++) {
      const int n = row / wg->TH, th = row % wg->TH;
      const float *dp = dy + ((size_t)n * g->K + k) * oplane, *src[4], *rsrc[4];
      float *m = dM + (size_t)k * ld + (size_t)(row - r0) * wg->TW;
      for (int a = 0; a < 4; a++) {
        src[a] = rsrc[a] = rbz;
        if (4 * th + a < g->OH) {
          src[a] = dp + (size_t)(4 * th + a) * g->OW;
          if (direct < g->OW) memcpy(rbuf[a] + direct, src[a] + direct, (size_t)(g->OW - direct) * sizeof(float));
          rsrc[a] = rbuf[a];
        }
      }
      ROW_STEPS(LIFT_GRAD_STEP);
    }
}

/* dx = the sum over tiles of B dV B^T, each added at its tile's place (the adjoint of
 * lower_rows), for the rows of tiles [r0, r1): per channel and per image the block meets (rows
 * th_a .. th_b - 1 of it), a row of tiles goes into 36 rows of terms (row 6 k + l: the tiles'
 * row k, column l), which are added along the padded rows of a plane buffer P (rows 4 th_a ..
 * 4 th_b + 1), padded column 4 u + l taking tile u's column l and, for l < 2, tile u - 1's
 * column l + 4. The part inside the image is copied to dx, except P's first two rows where
 * th_a > 0: the block before wrote those rows of dx, and they are added to. scratch: P (prow
 * rows of rw floats), then the terms (36 rows of TWv + 16 floats, eight zeros first). */
AI void lower_grad_rows_body(const ct_conv_geom *g, const ct_wino_strides *wg, const float *dV, size_t ld, size_t sV,
                             int r0, int r1, float *dx, float *scratch, size_t prow) {
  const size_t plane = (size_t)g->H * g->W, tl = (size_t)wg->TWv + 16;
  float *P = scratch, *terms = scratch + prow * wg->rw;
  float *tr[6][6];
  for (int k = 0; k < 6; k++)
    for (int l = 0; l < 6; l++) tr[k][l] = terms + (size_t)(6 * k + l) * tl + 8;
  memset(terms, 0, 36 * tl * sizeof(float));
  const float bk = 0.0f;
  (void)bk;
  for (int c = 0; c < g->C; c++)
    for (int row = r0; row < r1;) {
      const int n = row / wg->TH, tha = row % wg->TH, thb = tha + (r1 - row) < wg->TH ? tha + (r1 - row) : wg->TH;
      memset(P, 0, (size_t)(4 * (thb - tha) + 2) * wg->rw * sizeof(float));
      for (int th = tha; th < thb; th++) {
        const float *v = dV + (size_t)c * ld + (size_t)(row - r0 + th - tha) * wg->TW;
        ROW_STEPS(TERMS_STEP);
        for (int k = 0; k < 6; k++) {
          float *pr = P + (size_t)(4 * (th - tha) + k) * wg->rw;
          for (int u = 0; u <= wg->TW; u += 8) {
            ct_v8f q[4], o[4];
            q[0] = ct_v8f_load(tr[k][0] + u) + ct_v8f_load(tr[k][4] + u - 1);
            q[1] = ct_v8f_load(tr[k][1] + u) + ct_v8f_load(tr[k][5] + u - 1);
            q[2] = ct_v8f_load(tr[k][2] + u);
            q[3] = ct_v8f_load(tr[k][3] + u);
            tiles_out8(q, o);
            for (int e = 0; e < 4; e++) ct_v8f_store(pr + 4 * u + 8 * e, ct_v8f_load(pr + 4 * u + 8 * e) + o[e]);
          }
        }
      }
      ct_cpu_wino_plane_out(g, P, wg->rw, 4 * (thb - tha) + 2, 4 * tha, tha > 0, dx + ((size_t)n * g->C + c) * plane);
      row += thb - tha;
    }
}
#pragma GCC diagnostic pop

#define ROWS_PARAMS (const ct_conv_geom *g, const ct_wino_strides *wg, const float *x, int r0, int r1, float *V, \
                     size_t ld, size_t sV, float *scratch)
#define LIFT_PARAMS (const ct_conv_geom *g, const ct_wino_strides *wg, const float *M, size_t ld, size_t sM, int r0, \
                     int r1, const float *b, float *y, float *rb)
#define LIFTG_PARAMS (const ct_conv_geom *g, const ct_wino_strides *wg, const float *dy, int r0, int r1, float *dM, \
                      size_t ld, size_t sM, float *rb)
#define GRAD_PARAMS (const ct_conv_geom *g, const ct_wino_strides *wg, const float *dV, size_t ld, size_t sV, int r0, \
                     int r1, float *dx, float *scratch, size_t prow)
#define AVX2 __attribute__((target("avx2")))
static void base_lower_rows ROWS_PARAMS { lower_rows_body(g, wg, x, r0, r1, V, ld, sV, scratch); }
AVX2 static void avx2_lower_rows ROWS_PARAMS { lower_rows_body(g, wg, x, r0, r1, V, ld, sV, scratch); }
static void base_lift_rows LIFT_PARAMS { lift_rows_body(g, wg, M, ld, sM, r0, r1, b, y, rb); }
AVX2 static void avx2_lift_rows LIFT_PARAMS { lift_rows_body(g, wg, M, ld, sM, r0, r1, b, y, rb); }
static void base_lift_grad_rows LIFTG_PARAMS { lift_grad_rows_body(g, wg, dy, r0, r1, dM, ld, sM, rb); }
AVX2 static void avx2_lift_grad_rows LIFTG_PARAMS { lift_grad_rows_body(g, wg, dy, r0, r1, dM, ld, sM, rb); }
static void base_lower_grad_rows GRAD_PARAMS { lower_grad_rows_body(g, wg, dV, ld, sV, r0, r1, dx, scratch, prow); }
AVX2 static void avx2_lower_grad_rows GRAD_PARAMS {
  lower_grad_rows_body(g, wg, dV, ld, sV, r0, r1, dx, scratch, prow);
}

/* ---------------------------------------------------------------- kernels */

/* U_xi[k][c] = (G w[k][c] G^T)[i][j], four kernels at a time (each lane one kernel: the same
 * operations in the same order as the scalar rest) */
#define KERNEL_STEP(AT)                                                                           \
  do {                                                                                            \
    VT t[6][3], u[36];                                                                            \
    for (int b = 0; b < 3; b++) {                                                                 \
      VT col[3] = {AT(b), AT(3 + b), AT(6 + b)}, o[6];                                            \
      G3(col, o);                                                                                 \
      for (int i = 0; i < 6; i++) t[i][b] = o[i];                                                 \
    }                                                                                             \
    for (int i = 0; i < 6; i++) G3(t[i], (u + 6 * i));                                            \
    for (int x = 0; x < 36; x++) STORE(x, u[x]);                                                  \
  } while (0)

static void kernel4(const ct_conv_geom *g, const float *w, float *U) {
  const size_t KC = (size_t)g->K * (g->C / g->G), sU = ct_lower_wino4_strides(g, 1).sU;
  size_t kc = 0;
  for (; kc + 4 <= KC; kc += 4) {
    typedef ct_v4f VT;
    const float *k3 = w + kc * 9;
#define AT4(e) ct_v4f_load_stride(k3 + (e), 9)
#define STORE(x, v) ct_v4f_store(U + (size_t)(x) * sU + kc, v)
    KERNEL_STEP(AT4);
#undef AT4
#undef STORE
  }
  for (; kc < KC; kc++) {
    typedef float VT;
    const float *k3 = w + kc * 9;
#define AT1(e) k3[e]
#define STORE(x, v) (U[(size_t)(x) * sU + kc] = (v))
    KERNEL_STEP(AT1);
#undef AT1
#undef STORE
  }
}

/* dw += G^T dU G, four kernels at a time like kernel4 */
#define KERNEL_GRAD_STEP(AT)                                                                      \
  do {                                                                                            \
    VT t[3][6], d[9];                                                                             \
    for (int j = 0; j < 6; j++) {                                                                 \
      VT col[6], o[3];                                                                            \
      for (int i = 0; i < 6; i++) col[i] = AT(6 * i + j);                                         \
      GT6(col, o);                                                                                \
      for (int a = 0; a < 3; a++) t[a][j] = o[a];                                                 \
    }                                                                                             \
    for (int a = 0; a < 3; a++) GT6(t[a], (d + 3 * a));                                           \
    ADD(d);                                                                                       \
  } while (0)

static void kernel_grad4(const ct_conv_geom *g, const float *dU, float *dw) {
  const size_t KC = (size_t)g->K * (g->C / g->G), sU = ct_lower_wino4_strides(g, 1).sU;
  size_t kc = 0;
  for (; kc + 4 <= KC; kc += 4) {
    typedef ct_v4f VT;
    float *k3 = dw + kc * 9;
#define AT4(x) ct_v4f_load(dU + (size_t)(x) * sU + kc)
#define ADD(d)                                                                                    \
  for (int lane = 0; lane < 4; lane++)                                                            \
    for (int e = 0; e < 9; e++) k3[9 * lane + e] += d[e][lane]
    KERNEL_GRAD_STEP(AT4);
#undef AT4
#undef ADD
  }
  for (; kc < KC; kc++) {
    typedef float VT;
    float *k3 = dw + kc * 9;
#define AT1(x) dU[(size_t)(x) * sU + kc]
#define ADD(d)                                                                                    \
  for (int e = 0; e < 9; e++) k3[e] += d[e]
    KERNEL_GRAD_STEP(AT1);
#undef AT1
#undef ADD
  }
}

/* ---------------------------------------------------------------- the driver's entry */

ct_status ct_cpu_conv_wino4_block(const ct_driver *d, const ct_conv_geom *g, ct_wino_step step, int nb, int r0,
                                  int r1, const float *in, const float *b, float *out, float *scratch) {
  (void)d;
  const ct_wino_strides wg = ct_lower_wino4_strides(g, nb);
  const ct_wino_block B = ct_lower_wino4_block(g, nb);
  const bool avx2 = ct_cpu_has_avx2();
  switch (step) {
    case CT_WINO_KERNEL: kernel4(g, in, out); break;
    case CT_WINO_LOWER: (avx2 ? avx2_lower_rows : base_lower_rows)(g, &wg, in, r0, r1, out, B.ld, B.sV, scratch); break;
    case CT_WINO_LIFT: (avx2 ? avx2_lift_rows : base_lift_rows)(g, &wg, in, B.ld, B.sM, r0, r1, b, out, scratch); break;
    case CT_WINO_LIFT_GRAD:
      (avx2 ? avx2_lift_grad_rows : base_lift_grad_rows)(g, &wg, in, r0, r1, out, B.ld, B.sM, scratch);
      break;
    case CT_WINO_LOWER_GRAD:
      (avx2 ? avx2_lower_grad_rows : base_lower_grad_rows)(g, &wg, in, B.ld, B.sV, r0, r1, out, scratch, B.prow);
      break;
    case CT_WINO_KERNEL_GRAD: kernel_grad4(g, in, out); break;
  }
  return CT_OK;
}
