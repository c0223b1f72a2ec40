/* The CPU's DIRECT convolution (lowering.h: DIRECT; the padded layout: ct_direct_layout):
 * depthwise and many-group layers, whose per-group GEMMs are one or a few rows deep and run at a
 * tenth of the GEMM rate (MobileNet v2's 3x3 depthwise layers: 12-24 GFLOP/s as one GEMM per
 * group). Here each output row is a run of 8-lane vectors, each vector summing its taps in
 * registers, over a zero-padded copy of the group's planes: no loop tests a border, every plane
 * width runs vectorised (the last vector's spare lanes are computed and not stored).
 *
 * Each output's sum has a fixed order (forward: bias, then channel, kernel row, kernel column;
 * data gradient: output channel, row, column; weight gradient: rows of dy in order, eight running
 * sums in lanes, added pairwise, then image by image), the same whichever instance runs: the
 * bodies are compiled for the baseline (SSE: a vector is two registers) and for AVX2 (one),
 * picked at run time, and ISO C does not contract a * b + c into an FMA, so both give the same
 * bits. Instances with the kernel and stride as constants (3x3 at stride 1 and 2, MobileNet's
 * and ResNeXt's) let the compiler unroll the taps. */
#include <stddef.h>
#include <string.h>

#include "core/simd.h"
#include "drivers/cpu/kernels.h"

#define LANES CT_DIRECT_LANES
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* dst[0..n) = src[0..n), inline: rows here are as short as 7 floats (MobileNet's last planes),
 * where a call to memcpy costs more than the copy. The empty asm keeps the compiler from turning
 * the loops back into that call. */
static ALWAYS_INLINE void copy_floats(float *restrict dst, const float *restrict src, int n) {
  int i = 0;
  for (; i + LANES <= n; i += LANES) {
    ct_v8f_store(dst + i, ct_v8f_load(src + i));
    __asm__ volatile("" ::: "memory");
  }
  for (; i < n; i++) {
    dst[i] = src[i];
    __asm__ volatile("" ::: "memory");
  }
}

/* The plane x (H x W) into P (R rows of Cols floats) at row top, column left, as far as it fits.
 * The rest of P is not written: each entry clears its planes once (the padding is the same
 * for every plane it places), then places plane after plane over them. */
static ALWAYS_INLINE void place_plane(const float *x, int H, int W, int top, int left, float *P, int R, int Cols) {
  const int r1 = top + H < R ? top + H : R, n = Cols - left < W ? Cols - left : W;
  if (n <= 0) return;
  for (int r = top; r < r1; r++) copy_floats(P + (size_t)r * Cols + left, x + (size_t)(r - top) * W, n);
}

/* Stride 2 along rows (depthwise, no dilation): each padded row of Cols floats is kept as its
 * even columns, then its odd ones (E = (Cols + 1) / 2 floats in, where the odd ones start), so
 * a tap's eight outputs read eight neighbours instead of every second of sixteen. Padded column
 * pc lies at pc / 2 (even) or E + pc / 2 (odd); tap j of outputs ox.. at (j odd ? E : 0) + j / 2
 * + ox. */
static ALWAYS_INLINE void place_plane_split(const float *x, int H, int W, int top, int left, float *P, int R,
                                            int Cols) {
  const int r1 = top + H < R ? top + H : R, n = Cols - left < W ? Cols - left : W, E = (Cols + 1) / 2;
  if (n <= 0) return;
  /* input column c (padded left + c): even c goes to the half of left's parity */
  const int even_at = left % 2 ? E + (left - 1) / 2 : left / 2, odd_at = left % 2 ? (left + 1) / 2 : E + left / 2;
  for (int r = top; r < r1; r++) {
    const float *xr = x + (size_t)(r - top) * W;
    float *pe = P + (size_t)r * Cols + even_at, *po = P + (size_t)r * Cols + odd_at;
    int c = 0;
    for (; c + 2 * LANES <= n; c += 2 * LANES) {
      const ct_v8f v0 = ct_v8f_load(xr + c), v1 = ct_v8f_load(xr + c + LANES);
      ct_v8f_store(pe + c / 2, __builtin_shufflevector(v0, v1, 0, 2, 4, 6, 8, 10, 12, 14));
      ct_v8f_store(po + c / 2, __builtin_shufflevector(v0, v1, 1, 3, 5, 7, 9, 11, 13, 15));
    }
    for (; c < n; c++) {
      if (c % 2)
        po[c / 2] = xr[c];
      else
        pe[c / 2] = xr[c];
      __asm__ volatile("" ::: "memory");
    }
  }
}

/* The first n (>= 1) lanes of v to p. */
static ALWAYS_INLINE void store_lanes(float *p, ct_v8f v, int n) {
  if (n >= LANES) {
    ct_v8f_store(p, v);
    return;
  }
  for (int i = 0; i < n; i++) p[i] = v[i];
}

/* ---------------------------------------------------------------- forward */

static ALWAYS_INLINE void forward_body(const ct_conv_geom *g, int nb, const float *x, const float *w, const float *b,
                                       float *y, float *ws, const int sw, const int kh, const int kw) {
  const ct_direct_layout lay = ct_lower_direct_layout(g);
  const int Cg = g->C / g->G, Kg = g->K / g->G, KK = kh * kw;
  const size_t plane = (size_t)lay.XR * lay.XC, HW = (size_t)g->H * g->W, P = (size_t)g->OH * g->OW;
  /* depthwise at stride 2: the planes split by column parity (place_plane_split), every tap a
   * plain load */
  const bool split = sw == 2 && g->dw == 1 && Cg == 1 && KK <= 9;
  int toff[9]; /* tap j's offset in a split row */
  for (int j = 0; j < kw && j < 9; j++) toff[j] = (j % 2 ? (lay.XC + 1) / 2 : 0) + j / 2;
  memset(ws, 0, Cg * plane * sizeof(float));
  for (int n = 0; n < nb; n++)
    for (int gi = 0; gi < g->G; gi++) {
      for (int c = 0; c < Cg; c++) {
        const float *xc = x + ((size_t)n * g->C + (size_t)gi * Cg + c) * HW;
        if (split)
          place_plane_split(xc, g->H, g->W, g->ph, g->pw, ws + c * plane, lay.XR, lay.XC);
        else
          place_plane(xc, g->H, g->W, g->ph, g->pw, ws + c * plane, lay.XR, lay.XC);
      }
      for (int kg = 0; kg < Kg; kg++) {
        const int k = gi * Kg + kg;
        const float *wk = w + (size_t)k * Cg * KK;
        const float bk = b ? b[k] : 0.0f;
        float *yk = y + ((size_t)n * g->K + k) * P;
        if (Cg == 1 && KK <= 9) {
          /* depthwise: the taps in registers, two vectors at a time (the same sums in the same
           * order as below) */
          ct_v8f wv[9];
          for (int t = 0; t < 9; t++) wv[t] = ct_v8f_splat(t < KK ? wk[t] : 0.0f);
          for (int oy = 0; oy < g->OH; oy++) {
            const float *r0 = ws + (size_t)(oy * g->sh) * lay.XC;
            float *yr = yk + (size_t)oy * g->OW;
            int ox0 = 0;
            if (split) { /* the same sums, read from the split rows */
              for (; ox0 + 2 * LANES <= g->OW; ox0 += 2 * LANES) {
                ct_v8f a0 = ct_v8f_splat(bk), a1 = a0;
#pragma GCC unroll 3
                for (int i = 0; i < kh; i++) {
                  const float *row = r0 + (size_t)(i * g->dh) * lay.XC + ox0;
#pragma GCC unroll 3
                  for (int j = 0; j < kw; j++) {
                    a0 += wv[i * kw + j] * ct_v8f_load(row + toff[j]);
                    a1 += wv[i * kw + j] * ct_v8f_load(row + toff[j] + LANES);
                  }
                }
                ct_v8f_store(yr + ox0, a0);
                ct_v8f_store(yr + ox0 + LANES, a1);
              }
              for (; ox0 < g->OW; ox0 += LANES) {
                ct_v8f a0 = ct_v8f_splat(bk);
#pragma GCC unroll 3
                for (int i = 0; i < kh; i++) {
                  const float *row = r0 + (size_t)(i * g->dh) * lay.XC + ox0;
#pragma GCC unroll 3
                  for (int j = 0; j < kw; j++) a0 += wv[i * kw + j] * ct_v8f_load(row + toff[j]);
                }
                store_lanes(yr + ox0, a0, g->OW - ox0);
              }
              continue;
            }
            for (; ox0 + 2 * LANES <= g->OW; ox0 += 2 * LANES) {
              ct_v8f a0 = ct_v8f_splat(bk), a1 = a0;
#pragma GCC unroll 3
              for (int i = 0; i < kh; i++) {
                const float *row = r0 + (size_t)(i * g->dh) * lay.XC + (size_t)ox0 * sw;
#pragma GCC unroll 3
                for (int j = 0; j < kw; j++) {
                  a0 += wv[i * kw + j] * ct_v8f_load_stride(row + j * g->dw, sw);
                  a1 += wv[i * kw + j] * ct_v8f_load_stride(row + j * g->dw + LANES * sw, sw);
                }
              }
              ct_v8f_store(yr + ox0, a0);
              ct_v8f_store(yr + ox0 + LANES, a1);
            }
            for (; ox0 < g->OW; ox0 += LANES) {
              ct_v8f a0 = ct_v8f_splat(bk);
#pragma GCC unroll 3
              for (int i = 0; i < kh; i++) {
                const float *row = r0 + (size_t)(i * g->dh) * lay.XC + (size_t)ox0 * sw;
#pragma GCC unroll 3
                for (int j = 0; j < kw; j++) a0 += wv[i * kw + j] * ct_v8f_load_stride(row + j * g->dw, sw);
              }
              store_lanes(yr + ox0, a0, g->OW - ox0);
            }
          }
          continue;
        }
        for (int oy = 0; oy < g->OH; oy++)
          for (int ox0 = 0; ox0 < g->OW; ox0 += LANES) {
            ct_v8f acc = ct_v8f_splat(bk);
            for (int c = 0; c < Cg; c++)
#pragma GCC unroll 4
              for (int i = 0; i < kh; i++) {
                const float *row = ws + c * plane + (size_t)(oy * g->sh + i * g->dh) * lay.XC + (size_t)ox0 * sw;
                const float *wr = wk + (c * kh + i) * kw;
#pragma GCC unroll 4
                for (int j = 0; j < kw; j++) acc += ct_v8f_splat(wr[j]) * ct_v8f_load_stride(row + j * g->dw, sw);
              }
            store_lanes(yk + (size_t)oy * g->OW + ox0, acc, g->OW - ox0);
          }
      }
    }
}

/* ---------------------------------------------------------------- data gradient */

/* A stride-2 3x3 kernel's taps by row parity p ((iy + ph) mod 2: kernel rows ri with
 * iy + ph - ri even) and by column phase q (kernel columns cj with q + pw - cj even, reading dy
 * column m + coff for input column 2 m + q): one or two each. */
typedef struct s2_taps {
  int nr[2], ri[2][2], nc[2], cj[2][2];
  int coff[2][CT_DIRECT_MAX_KERNEL];
} s2_taps;

static bool s2_taps_of(const ct_conv_geom *g, s2_taps *t) {
  for (int p = 0; p < 2; p++) {
    t->nr[p] = t->nc[p] = 0;
    for (int i = 0; i < 3; i++)
      if ((p - i) % 2 == 0) t->ri[p][t->nr[p]++] = i;
    for (int j = 0; j < 3; j++) {
      const int numj = p + g->pw - j;
      if (numj % 2) continue;
      t->cj[p][t->nc[p]] = j;
      t->coff[p][t->nc[p]++] = numj / 2;
    }
    if (t->nr[p] < 1 || t->nr[p] > 2 || t->nc[p] < 1 || t->nc[p] > 2) return false;
  }
  return true;
}

/* One input row of a depthwise 3x3 stride-2 data gradient: its NR (1 or 2) kernel rows and, per
 * column phase, NC0 / NC1 (1 or 2) kernel columns, with their weights already in registers; the
 * counts are constants where this is expanded, so the taps unroll. The sums are the general
 * stride-2 loop's, in its order (kernel row, then column), so both give the same bits. */
static ALWAYS_INLINE void dw_s2_row(float *dr, int W, const float *Q, const int *roff,
                                    const int coff[2][CT_DIRECT_MAX_KERNEL], const ct_v8f wv[2][2][2], const int NR,
                                    const int NC0, const int NC1) {
  for (int m0 = 0; 2 * m0 < W; m0 += LANES) {
    ct_v8f a0 = ct_v8f_splat(0.0f), a1 = a0;
    for (int r = 0; r < NR; r++) {
      const float *row = Q + roff[r] + m0;
      for (int c = 0; c < NC0; c++) a0 += wv[r][0][c] * ct_v8f_load(row + coff[0][c]);
      for (int c = 0; c < NC1; c++) a1 += wv[r][1][c] * ct_v8f_load(row + coff[1][c]);
    }
    const ct_v8f lo = __builtin_shufflevector(a0, a1, 0, 8, 1, 9, 2, 10, 3, 11);
    const ct_v8f hi = __builtin_shufflevector(a0, a1, 4, 12, 5, 13, 6, 14, 7, 15);
    const int left = W - 2 * m0;
    if (left >= 2 * LANES) {
      ct_v8f_store(dr + 2 * m0, lo);
      ct_v8f_store(dr + 2 * m0 + LANES, hi);
    } else {
      store_lanes(dr + 2 * m0, lo, left);
      if (left > LANES) store_lanes(dr + 2 * m0 + LANES, hi, left - LANES);
    }
  }
}

static ALWAYS_INLINE void data_body(const ct_conv_geom *g, int nb, const float *w, const float *dy, float *dx,
                                    float *ws, const int sw, const int kh, const int kw) {
  const ct_direct_layout lay = ct_lower_direct_layout(g);
  const int Cg = g->C / g->G, Kg = g->K / g->G, KK = kh * kw, sh = g->sh;
  const size_t plane = (size_t)lay.QR * lay.QC, HW = (size_t)g->H * g->W, P = (size_t)g->OH * g->OW;
  float *tmp = ws + Kg * plane; /* one phase of an input row, sw > 1 */
  memset(ws, 0, Kg * plane * sizeof(float));
  /* depthwise 3x3 at stride 2: the taps that reach an input row depend only on its parity, and
   * those that reach a column only on its phase, so they are found once here */
  s2_taps s2;
  const bool dw_s2 = Kg == 1 && Cg == 1 && kh == 3 && kw == 3 && sw == 2 && sh == 2 && g->dh == 1 && g->dw == 1 &&
                     s2_taps_of(g, &s2);
  for (int n = 0; n < nb; n++)
    for (int gi = 0; gi < g->G; gi++) {
      for (int kg = 0; kg < Kg; kg++)
        place_plane(dy + ((size_t)n * g->K + (size_t)gi * Kg + kg) * P, g->OH, g->OW, lay.RT, lay.CL,
                    ws + kg * plane, lay.QR, lay.QC);
      for (int cl = 0; cl < Cg; cl++) {
        float *dxc = dx + ((size_t)n * g->C + (size_t)gi * Cg + cl) * HW;
        if (dw_s2) { /* depthwise 3x3 at stride 2 (MobileNet's downsampling layers) */
          const float *wk = w + ((size_t)gi * Cg + cl) * KK;
          ct_v8f wv[2][2][2][2]; /* [row parity][kernel row][column phase][kernel column] */
          for (int p = 0; p < 2; p++)
            for (int r = 0; r < s2.nr[p]; r++)
              for (int q = 0; q < 2; q++)
                for (int c = 0; c < s2.nc[q]; c++) wv[p][r][q][c] = ct_v8f_splat(wk[s2.ri[p][r] * kw + s2.cj[q][c]]);
          for (int iy = 0; iy < g->H; iy++) {
            const int p = (iy + g->ph) & 1;
            int roff[2];
            for (int r = 0; r < s2.nr[p]; r++) roff[r] = ((iy + g->ph - s2.ri[p][r]) / 2 + lay.RT) * lay.QC + lay.CL;
            float *dr = dxc + (size_t)iy * g->W;
            switch ((s2.nr[p] - 1) * 4 + (s2.nc[0] - 1) * 2 + (s2.nc[1] - 1)) {
              case 0: dw_s2_row(dr, g->W, ws, roff, s2.coff, wv[p], 1, 1, 1); break;
              case 1: dw_s2_row(dr, g->W, ws, roff, s2.coff, wv[p], 1, 1, 2); break;
              case 2: dw_s2_row(dr, g->W, ws, roff, s2.coff, wv[p], 1, 2, 1); break;
              case 3: dw_s2_row(dr, g->W, ws, roff, s2.coff, wv[p], 1, 2, 2); break;
              case 4: dw_s2_row(dr, g->W, ws, roff, s2.coff, wv[p], 2, 1, 1); break;
              case 5: dw_s2_row(dr, g->W, ws, roff, s2.coff, wv[p], 2, 1, 2); break;
              case 6: dw_s2_row(dr, g->W, ws, roff, s2.coff, wv[p], 2, 2, 1); break;
              default: dw_s2_row(dr, g->W, ws, roff, s2.coff, wv[p], 2, 2, 2); break;
            }
          }
          continue;
        }
        for (int iy = 0; iy < g->H; iy++) {
          if (sw == 1 && sh == 1 && Kg == 1 && KK <= 9) { /* depthwise: as the forward's */
            const float *wk = w + ((size_t)gi * Cg + cl) * KK;
            const float *Qk = ws + lay.CL + g->pw + (size_t)(iy + g->ph + lay.RT) * lay.QC;
            ct_v8f wv[9];
            for (int t = 0; t < 9; t++) wv[t] = ct_v8f_splat(t < KK ? wk[t] : 0.0f);
            float *dr = dxc + (size_t)iy * g->W;
            int m0 = 0;
            for (; m0 + 2 * LANES <= g->W; m0 += 2 * LANES) {
              ct_v8f a0 = ct_v8f_splat(0.0f), a1 = a0;
#pragma GCC unroll 3
              for (int i = 0; i < kh; i++) {
                const float *row = Qk - (ptrdiff_t)(i * g->dh) * lay.QC + m0;
#pragma GCC unroll 3
                for (int j = 0; j < kw; j++) {
                  a0 += wv[i * kw + j] * ct_v8f_load(row - j * g->dw);
                  a1 += wv[i * kw + j] * ct_v8f_load(row - j * g->dw + LANES);
                }
              }
              ct_v8f_store(dr + m0, a0);
              ct_v8f_store(dr + m0 + LANES, a1);
            }
            for (; m0 < g->W; m0 += LANES) {
              ct_v8f a0 = ct_v8f_splat(0.0f);
#pragma GCC unroll 3
              for (int i = 0; i < kh; i++) {
                const float *row = Qk - (ptrdiff_t)(i * g->dh) * lay.QC + m0;
#pragma GCC unroll 3
                for (int j = 0; j < kw; j++) a0 += wv[i * kw + j] * ct_v8f_load(row - j * g->dw);
              }
              store_lanes(dr + m0, a0, g->W - m0);
            }
            continue;
          }
          if (sw == 1 && sh == 1) {
            /* every tap reaches every input (the padding of dy is zeros): the forward's loops on
             * dy with the kernel turned around */
            for (int m0 = 0; m0 < g->W; m0 += LANES) {
              ct_v8f acc = ct_v8f_splat(0.0f);
              for (int kg = 0; kg < Kg; kg++) {
                const float *wk = w + ((size_t)(gi * Kg + kg) * Cg + cl) * KK;
                const float *Qk = ws + kg * plane + lay.CL + g->pw + m0;
#pragma GCC unroll 4
                for (int i = 0; i < kh; i++) {
                  const float *row = Qk + (size_t)(iy + g->ph - i * g->dh + lay.RT) * lay.QC;
#pragma GCC unroll 4
                  for (int j = 0; j < kw; j++) acc += ct_v8f_splat(wk[i * kw + j]) * ct_v8f_load(row - j * g->dw);
                }
              }
              store_lanes(dxc + (size_t)iy * g->W + m0, acc, g->W - m0);
            }
            continue;
          }
          /* the kernel rows that reach this input row, and the dy rows they read (as offsets) */
          int ri[CT_DIRECT_MAX_KERNEL], roff[CT_DIRECT_MAX_KERNEL], nr = 0;
          for (int i = 0; i < kh; i++) {
            const int num = iy + g->ph - i * g->dh;
            if (num % sh) continue;
            ri[nr] = i;
            roff[nr++] = (num / sh + lay.RT) * lay.QC + lay.CL;
          }
          if (sw == 2) {
            /* both phases side by side, interleaved into the row: (e0 o0 e1 o1 ...) */
            int cj[2][CT_DIRECT_MAX_KERNEL], coff[2][CT_DIRECT_MAX_KERNEL], nc[2] = {0, 0};
            for (int q = 0; q < 2; q++)
              for (int j = 0; j < kw; j++) {
                const int numj = q + g->pw - j * g->dw;
                if (numj % 2) continue;
                cj[q][nc[q]] = j;
                coff[q][nc[q]++] = numj / 2;
              }
            float *dr = dxc + (size_t)iy * g->W;
            for (int m0 = 0; 2 * m0 < g->W; m0 += LANES) {
              ct_v8f a[2] = {ct_v8f_splat(0.0f), ct_v8f_splat(0.0f)};
              for (int kg = 0; kg < Kg; kg++) {
                const float *wk = w + ((size_t)(gi * Kg + kg) * Cg + cl) * KK, *Qk = ws + kg * plane + m0;
                for (int r = 0; r < nr; r++) {
                  const float *row = Qk + roff[r], *wr = wk + ri[r] * kw;
                  for (int q = 0; q < 2; q++)
                    for (int c = 0; c < nc[q]; c++) a[q] += ct_v8f_splat(wr[cj[q][c]]) * ct_v8f_load(row + coff[q][c]);
                }
              }
              const ct_v8f lo = __builtin_shufflevector(a[0], a[1], 0, 8, 1, 9, 2, 10, 3, 11);
              const ct_v8f hi = __builtin_shufflevector(a[0], a[1], 4, 12, 5, 13, 6, 14, 7, 15);
              const int left = g->W - 2 * m0;
              store_lanes(dr + 2 * m0, lo, left);
              if (left > LANES) store_lanes(dr + 2 * m0 + LANES, hi, left - LANES);
            }
            continue;
          }
          for (int q = 0; q < sw && q < g->W; q++) {
            /* the kernel columns that reach this phase, and the dy column shift of each */
            int cj[CT_DIRECT_MAX_KERNEL], coff[CT_DIRECT_MAX_KERNEL], nc = 0;
            for (int j = 0; j < kw; j++) {
              const int numj = q + g->pw - j * g->dw;
              if (numj % sw) continue;
              cj[nc] = j;
              coff[nc++] = numj / sw;
            }
            const int Mq = (g->W - q + sw - 1) / sw;
            float *out = sw == 1 ? dxc + (size_t)iy * g->W : tmp;
            for (int m0 = 0; m0 < Mq; m0 += LANES) {
              ct_v8f acc = ct_v8f_splat(0.0f);
              for (int kg = 0; kg < Kg; kg++) {
                const float *wk = w + ((size_t)(gi * Kg + kg) * Cg + cl) * KK, *Qk = ws + kg * plane + m0;
                for (int a = 0; a < nr; a++) {
                  const float *row = Qk + roff[a], *wr = wk + ri[a] * kw;
                  for (int c = 0; c < nc; c++) acc += ct_v8f_splat(wr[cj[c]]) * ct_v8f_load(row + coff[c]);
                }
              }
              if (sw == 1)
                store_lanes(out + m0, acc, Mq - m0);
              else
                ct_v8f_store(out + m0, acc);
            }
            if (sw > 1) {
              float *dr = dxc + (size_t)iy * g->W + q;
              for (int m = 0; m < Mq; m++) dr[(size_t)m * sw] = tmp[m];
            }
          }
        }
      }
    }
}

/* ---------------------------------------------------------------- weight gradient */

static ALWAYS_INLINE void weight_body(const ct_conv_geom *g, int nb, const float *x, const float *dy, float *dw,
                                      float *db, float *ws, const int sw, const int kh, const int kw) {
  const ct_direct_layout lay = ct_lower_direct_layout(g);
  const int Cg = g->C / g->G, Kg = g->K / g->G, KK = kh * kw;
  const size_t plane = (size_t)lay.XR * lay.XC, HW = (size_t)g->H * g->W, P = (size_t)g->OH * g->OW;
  float *Dbuf = ws + Cg * plane; /* dy's plane in rows of OWr floats, when its own rows are not whole vectors */
  const bool split = sw == 2 && g->dw == 1 && Cg == 1 && KK <= 9; /* as the forward's */
  int toff[9];
  for (int j = 0; j < kw && j < 9; j++) toff[j] = (j % 2 ? (lay.XC + 1) / 2 : 0) + j / 2;
  memset(ws, 0, (Cg * plane + (lay.OWr != g->OW ? (size_t)g->OH * lay.OWr : 0)) * sizeof(float));
  for (int n = 0; n < nb; n++)
    for (int gi = 0; gi < g->G; gi++) {
      if (dw)
        for (int c = 0; c < Cg; c++) {
          const float *xc = x + ((size_t)n * g->C + (size_t)gi * Cg + c) * HW;
          if (split)
            place_plane_split(xc, g->H, g->W, g->ph, g->pw, ws + c * plane, lay.XR, lay.XC);
          else
            place_plane(xc, g->H, g->W, g->ph, g->pw, ws + c * plane, lay.XR, lay.XC);
        }
      for (int kg = 0; kg < Kg; kg++) {
        const int k = gi * Kg + kg;
        /* rows a whole number of vectors long (MobileNet's 112 and 56) are read where they lie */
        const float *dyk = dy + ((size_t)n * g->K + k) * P, *D = dyk;
        if (lay.OWr != g->OW) {
          place_plane(dyk, g->OH, g->OW, 0, 0, Dbuf, g->OH, lay.OWr);
          D = Dbuf;
        }
        if (db) {
          ct_v8f s = ct_v8f_splat(0.0f);
          for (size_t i = 0; i < (size_t)g->OH * lay.OWr; i += LANES) s += ct_v8f_load(D + i);
          db[k] += ct_v8f_sum(s);
        }
        if (!dw) continue;
        for (int cl = 0; cl < Cg; cl++) {
          const float *Pc = ws + cl * plane;
          float *dwk = dw + ((size_t)k * Cg + cl) * KK;
          if (KK <= 9) { /* every tap's running sums in registers, one pass over dy */
            ct_v8f acc[9];
            for (int t = 0; t < 9; t++) acc[t] = ct_v8f_splat(0.0f);
            for (int oy = 0; oy < g->OH; oy++)
              for (int ox0 = 0; ox0 < g->OW; ox0 += LANES) {
                const ct_v8f d = ct_v8f_load(D + (size_t)oy * lay.OWr + ox0);
                if (split) { /* the same sums, read from the split rows */
#pragma GCC unroll 3
                  for (int i = 0; i < kh; i++) {
                    const float *row = Pc + (size_t)(oy * g->sh + i * g->dh) * lay.XC + ox0;
#pragma GCC unroll 3
                    for (int j = 0; j < kw; j++) acc[i * kw + j] += d * ct_v8f_load(row + toff[j]);
                  }
                  continue;
                }
#pragma GCC unroll 3
                for (int i = 0; i < kh; i++) {
                  const float *row = Pc + (size_t)(oy * g->sh + i * g->dh) * lay.XC + (size_t)ox0 * sw;
#pragma GCC unroll 3
                  for (int j = 0; j < kw; j++) acc[i * kw + j] += d * ct_v8f_load_stride(row + j * g->dw, sw);
                }
              }
            for (int t = 0; t < KK; t++) dwk[t] += ct_v8f_sum(acc[t]);
          } else { /* tap by tap: the same sums in the same order, one pass over dy each */
            for (int i = 0; i < kh; i++)
              for (int j = 0; j < kw; j++) {
                ct_v8f acc = ct_v8f_splat(0.0f);
                for (int oy = 0; oy < g->OH; oy++) {
                  const float *row = Pc + (size_t)(oy * g->sh + i * g->dh) * lay.XC + (size_t)j * g->dw;
                  for (int ox0 = 0; ox0 < g->OW; ox0 += LANES)
                    acc += ct_v8f_load(D + (size_t)oy * lay.OWr + ox0) * ct_v8f_load_stride(row + (size_t)ox0 * sw, sw);
                }
                dwk[i * kw + j] += ct_v8f_sum(acc);
              }
          }
        }
      }
    }
}

/* ---------------------------------------------------------------- instances and dispatch */

#define AVX2 __attribute__((target("avx2")))

/* name_s1k3, name_s2k3 (3x3 kernels at stride 1 and 2 along x), name_any; each for the baseline
 * and, prefixed avx2_, for AVX2. K names the parameter and argument lists (K##_PARAMS, K##_ARGS). */
#define INSTANCES(ATTR, prefix, name, body, K)                                      \
  ATTR static void prefix##name##_s1k3 K##_PARAMS { body(K##_ARGS, 1, 3, 3); }      \
  ATTR static void prefix##name##_s2k3 K##_PARAMS { body(K##_ARGS, 2, 3, 3); }      \
  ATTR static void prefix##name##_any K##_PARAMS { body(K##_ARGS, g->sw, g->kh, g->kw); }

#define FWD_PARAMS (const ct_conv_geom *g, int nb, const float *x, const float *w, const float *b, float *y, float *ws)
#define FWD_ARGS g, nb, x, w, b, y, ws
#define DATA_PARAMS (const ct_conv_geom *g, int nb, const float *w, const float *dy, float *dx, float *ws)
#define DATA_ARGS g, nb, w, dy, dx, ws
#define WEIGHT_PARAMS \
  (const ct_conv_geom *g, int nb, const float *x, const float *dy, float *dw, float *db, float *ws)
#define WEIGHT_ARGS g, nb, x, dy, dw, db, ws

INSTANCES(, , fwd, forward_body, FWD)
INSTANCES(AVX2, avx2_, fwd, forward_body, FWD)
INSTANCES(, , data, data_body, DATA)
INSTANCES(AVX2, avx2_, data, data_body, DATA)
INSTANCES(, , weight, weight_body, WEIGHT)
INSTANCES(AVX2, avx2_, weight, weight_body, WEIGHT)

/* 0: the 3x3 stride-1 instance, 1: 3x3 stride 2, 2: any geometry */
static int instance_of(const ct_conv_geom *g) {
  if (g->kh == 3 && g->kw == 3 && g->sw == 1) return 0;
  if (g->kh == 3 && g->kw == 3 && g->sw == 2) return 1;
  return 2;
}

#define DISPATCH(name, args)                                    \
  do {                                                          \
    const int which_ = instance_of(g);                          \
    if (ct_cpu_has_avx2()) {                                    \
      if (which_ == 0) avx2_##name##_s1k3 args;                 \
      else if (which_ == 1) avx2_##name##_s2k3 args;            \
      else avx2_##name##_any args;                              \
    } else {                                                    \
      if (which_ == 0) name##_s1k3 args;                        \
      else if (which_ == 1) name##_s2k3 args;                   \
      else name##_any args;                                     \
    }                                                           \
  } while (0)

ct_status ct_cpu_conv_direct_forward(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x,
                                     const float *w, const float *b, float *y, float *ws) {
  (void)d;
  DISPATCH(fwd, (FWD_ARGS));
  return CT_OK;
}

ct_status ct_cpu_conv_direct_backward_data(const ct_driver *d, const ct_conv_geom *g, int nb, const float *w,
                                           const float *dy, float *dx, float *ws) {
  (void)d;
  DISPATCH(data, (DATA_ARGS));
  return CT_OK;
}

ct_status ct_cpu_conv_direct_backward_weight(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x,
                                             const float *dy, float *dw, float *db, float *ws) {
  (void)d;
  if (!dw && !db) return CT_OK;
  DISPATCH(weight, (WEIGHT_ARGS));
  return CT_OK;
}
