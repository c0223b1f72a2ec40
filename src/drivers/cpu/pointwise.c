/* A convolution's GEMM for a whole partition at once (driver.h's conv_pw; the lowering runs a
 * 1x1 layer's forward and data gradient through it): y_n = op(w) x_n (+ b) for every image n of
 * the partition, with op(w) packed once per call instead of once per image, as one OpenBLAS call
 * per image packs it. x and y may each lie as images or as one lowered matrix (the strides).
 *
 * The images' columns are taken as one row of nb P columns (image after image), cut into
 * panels of 64: a 7x7 layer's 49 columns no longer leave most of a 16-lane vector idle, and a
 * panel may straddle two images (it is gathered when packed and scattered when stored). The
 * kernel holds a 6 x 64 block of y in 24 AVX-512 accumulators: for each of the Kd products, four
 * vector loads of the packed x and six broadcasts of the packed w feed 24 multiply-adds. Panels
 * are packed a block at a time (about 512 KB: the core's L2) and each 6-row block of w sweeps
 * the whole block, so each row of y is written in long runs (writing 64 columns of many rows
 * at a time made the stores the bottleneck at 56x56).
 *
 * Each output is b (or 0) plus its Kd products added in order: results do not depend on the
 * blocking, on nb or on how a batch is split between partitions; they differ from OpenBLAS's
 * (which sums in blocks) in the last bits.
 *
 * AVX-512 (checked at run time) on x86-64; elsewhere, or with CT_PW_KERNEL=0 in the
 * environment (for comparisons; a Convolution layer refuses any value but 0 or 1), it declines
 * and the caller runs its own GEMMs. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/cpu/kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define PW_TARGET __attribute__((target("avx512f")))
#define PW_MR 6              /* rows of y per tile: broadcasts of w */
#define PW_NR 64             /* columns per tile and panel: four vectors */
#define PW_BLOCK_WORDS 131072 /* packed x per block: 512 KB */
#define PW_BLOCK_MAX 2048    /* columns per block at most */

static int pw_enabled(void) {
  static atomic_int state = -1;
  return ct_cpu_avx512_kernel_on(&state, "CT_PW_KERNEL");
}

/* wp: ceil(M / 6) blocks of Kd x 6 (row m0 + i of op(w) at [k][i]), zero past row M */
static void pack_w(bool trans, int M, int Kd, const float *w, float *wp) {
  for (int m0 = 0; m0 < M; m0 += PW_MR) {
    float *dst = wp + (size_t)m0 * (size_t)Kd;
    const int rows = M - m0 < PW_MR ? M - m0 : PW_MR;
    for (int k = 0; k < Kd; k++) {
      for (int i = 0; i < rows; i++)
        dst[(size_t)k * PW_MR + (size_t)i] =
            trans ? w[(size_t)k * (size_t)M + (size_t)(m0 + i)] : w[(size_t)(m0 + i) * (size_t)Kd + (size_t)k];
      for (int i = rows; i < PW_MR; i++) dst[(size_t)k * PW_MR + (size_t)i] = 0.0f;
    }
  }
}

/* The panel of columns [j0, j0 + 64) of the images' row of columns, Kd x 64, zero past the end */
static void pack_x(int Kd, int P, int nb, const float *x, size_t x_img, size_t x_row, long j0, float *dst) {
  const long total = (long)nb * P;
  struct {
    const float *src;
    int at, len;
  } piece[PW_NR + 1];
  int pieces = 0, filled = 0;
  for (long j = j0; filled < PW_NR && j < total;) {
    const long n = j / P, p = j % P;
    const int len = (int)(P - p < PW_NR - filled ? P - p : PW_NR - filled);
    piece[pieces].src = x + (size_t)n * x_img + (size_t)p;
    piece[pieces].at = filled;
    piece[pieces++].len = len;
    filled += len;
    j += len;
  }
  for (int k = 0; k < Kd; k++) {
    float *d = dst + (size_t)k * PW_NR;
    for (int q = 0; q < pieces; q++)
      memcpy(d + piece[q].at, piece[q].src + (size_t)k * x_row, (size_t)piece[q].len * sizeof(float));
    if (filled < PW_NR) memset(d + filled, 0, (size_t)(PW_NR - filled) * sizeof(float));
  }
}

/* c (6 x 16 nv) += the Kd products of a packed w block and a packed x panel (nv vectors of it:
 * the row's last panel may need fewer than four) */
static inline __attribute__((always_inline)) PW_TARGET void tile(int nv, int Kd, const float *wp, const float *xp,
                                                                 __m512 c[PW_MR][4]) {
  for (int k = 0; k < Kd; k++) {
    __m512 xv[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++)
      if (v < nv) xv[v] = _mm512_load_ps(xp + 16 * v);
#pragma GCC unroll 6
    for (int i = 0; i < PW_MR; i++) {
      const __m512 a = _mm512_set1_ps(wp[i]);
#pragma GCC unroll 4
      for (int v = 0; v < 4; v++)
        if (v < nv) c[i][v] = _mm512_fmadd_ps(a, xv[v], c[i][v]);
    }
    wp += PW_MR;
    xp += PW_NR;
  }
}

/* rows [m0, m0 + rows) of the tile at columns [j0, j0 + 64) into the images' y */
static inline __attribute__((always_inline)) PW_TARGET void store(__m512 c[PW_MR][4], int rows, int m0, int P,
                                                                  long total, long j0, float *y, size_t y_img,
                                                                  size_t y_row) {
  for (int v = 0; v < 4; v++) {
    const long j = j0 + 16 * v;
    if (j >= total) break;
    const long n = j / P, p = j % P;
    if (P - p >= 16 && total - j >= 16) {
      float *dst = y + (size_t)n * y_img + (size_t)m0 * y_row + (size_t)p;
      for (int i = 0; i < rows; i++) _mm512_storeu_ps(dst + (size_t)i * y_row, c[i][v]);
      continue;
    }
    float t[16]; /* the vector straddles images, or ends the row: column by column */
    const int lanes = total - j < 16 ? (int)(total - j) : 16;
    for (int i = 0; i < rows; i++) {
      _mm512_storeu_ps(t, c[i][v]);
      for (int l = 0; l < lanes; l++) {
        const long jj = j + l;
        y[(size_t)(jj / P) * y_img + (size_t)(m0 + i) * y_row + (size_t)(jj % P)] = t[l];
      }
    }
  }
}

PW_TARGET static void run(int M, int Kd, int P, int nb, const float *wp, const float *x, size_t x_img, size_t x_row,
                          const float *b, float *y, size_t y_img, size_t y_row, float *xp, long block) {
  const long total = (long)nb * P;
  for (long jc = 0; jc < total; jc += block) {
    const long cols = total - jc < block ? total - jc : block;
    for (long jr = 0; jr < cols; jr += PW_NR) pack_x(Kd, P, nb, x, x_img, x_row, jc + jr, xp + (size_t)jr * (size_t)Kd);
    for (int m0 = 0; m0 < M; m0 += PW_MR) {
      const int rows = M - m0 < PW_MR ? M - m0 : PW_MR;
      for (long jr = 0; jr < cols; jr += PW_NR) {
        __m512 c[PW_MR][4];
        for (int i = 0; i < PW_MR; i++) {
          const __m512 init = _mm512_set1_ps(b && i < rows ? b[m0 + i] : 0.0f);
          for (int v = 0; v < 4; v++) c[i][v] = init;
        }
        const long left = total - (jc + jr);
        const float *wm = wp + (size_t)m0 * (size_t)Kd, *xr = xp + (size_t)jr * (size_t)Kd;
        if (left > 48)
          tile(4, Kd, wm, xr, c);
        else if (left > 32)
          tile(3, Kd, wm, xr, c);
        else if (left > 16)
          tile(2, Kd, wm, xr, c);
        else
          tile(1, Kd, wm, xr, c);
        store(c, rows, m0, P, total, jc + jr, y, y_img, y_row);
      }
    }
  }
}

ct_status ct_cpu_conv_pw(const ct_driver *d, bool trans_w, int M, int Kd, int P, int nb, const float *w,
                         const float *x, size_t x_img, size_t x_row, const float *b, float *y, size_t y_img,
                         size_t y_row) {
  (void)d;
  /* one output column per image is a single GEMM as the data lies (the caller's); below 16
   * rows or products, packing costs more than the tile saves */
  if (P < 2 || M < 16 || Kd < 16 || nb < 1 || !pw_enabled()) return CT_EUNSUPPORTED;
  long block = (PW_BLOCK_WORDS / Kd) / PW_NR * PW_NR;
  if (block < PW_NR) block = PW_NR;
  if (block > PW_BLOCK_MAX) block = PW_BLOCK_MAX;
  const size_t mp = ((size_t)M + PW_MR - 1) / PW_MR * PW_MR;
  float *wp = ct_cpu_pack_space(1, mp * (size_t)Kd), *xp = ct_cpu_pack_space(2, (size_t)block * (size_t)Kd);
  if (!wp || !xp) return CT_EUNSUPPORTED;
  pack_w(trans_w, M, Kd, w, wp);
  run(M, Kd, P, nb, wp, x, x_img, x_row, b, y, y_img, y_row, xp, block);
  return CT_OK;
}

#else

ct_status ct_cpu_conv_pw(const ct_driver *d, bool trans_w, int M, int Kd, int P, int nb, const float *w,
                         const float *x, size_t x_img, size_t x_row, const float *b, float *y, size_t y_img,
                         size_t y_row) {
  (void)d, (void)trans_w, (void)M, (void)Kd, (void)P, (void)nb, (void)w, (void)x, (void)x_img, (void)x_row, (void)b;
  (void)y, (void)y_img, (void)y_row;
  return CT_EUNSUPPORTED;
}

#endif
