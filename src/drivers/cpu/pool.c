/* The CPU driver's pooling: MAX (with argmax), AVE (Caffe's divisor: the window clipped to the
 * padded image), STOCHASTIC at test time (sum x^2 / sum x), plane by plane.
 *
 * Each plane splits into its interior, the outputs whose window lies wholly inside the image (no
 * clipping; the AVE divisor is kh kw), and its border, which keeps the generic loop that clips
 * each window (window_at). The interior's ranges of oh and ow are found once per call. MAX and
 * AVE forward compute the interior in blocks of four outputs side by side and two output rows
 * (simd.h), specialised for 2x2 and 3x3 windows of stride 2 and for strides 1 and 2; each lane
 * scans its window in the scalar loop's order, so outputs and argmaxes are bit for bit the scalar
 * loop's: the first maximum in row-major window order wins (strict >), NaNs never win. Backward
 * zeroes dx once and adds each output's gradient in output order, as the scalar loop did (MAX:
 * dx[argmax] += dy; AVE: interior windows column by column, the last column first, so each dx
 * element still gets its terms in output order). */
#include <float.h>
#include <stdbool.h>
#include <string.h>

#include "drivers/cpu/kernels.h"
#include "core/simd.h"

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* The window of output (oh, ow) clipped to the image, and Caffe's AVE divisor (the window clipped
 * only to the padded image). */
typedef struct window {
  int h0, h1, w0, w1;
  int pool_size;
} window;

static inline window window_at(const ct_pool_geom *pp, int oh, int ow) {
  window w;
  int h0 = oh * pp->sh - pp->ph, w0 = ow * pp->sw - pp->pw;
  int h1 = h0 + pp->kh < pp->H + pp->ph ? h0 + pp->kh : pp->H + pp->ph;
  int w1 = w0 + pp->kw < pp->W + pp->pw ? w0 + pp->kw : pp->W + pp->pw;
  w.pool_size = (h1 - h0) * (w1 - w0);
  w.h0 = h0 > 0 ? h0 : 0;
  w.w0 = w0 > 0 ? w0 : 0;
  w.h1 = h1 < pp->H ? h1 : pp->H;
  w.w1 = w1 < pp->W ? w1 : pp->W;
  return w;
}

/* The outputs o in [lo, hi) along one axis whose window [o s - p, o s - p + k) lies in [0, in). */
typedef struct span {
  int lo, hi;
} span;

static span interior(int in, int out, int k, int s, int p) {
  span r;
  r.lo = (p + s - 1) / s;
  r.hi = in + p - k < 0 ? 0 : (in + p - k) / s + 1;
  if (r.hi > out) r.hi = out;
  if (r.lo > r.hi) r.lo = r.hi;
  return r;
}

static inline bool in_span(span r, int o) { return o >= r.lo && o < r.hi; }

/* ---------------------------------------------------------------- MAX forward */

static void max_one(const ct_pool_geom *pp, const float *restrict x, int oh, int ow, float *restrict y,
                    int *restrict am) {
  const int W = pp->W;
  const window w = window_at(pp, oh, ow);
  float best = -FLT_MAX;
  int arg = -1;
  for (int h = w.h0; h < w.h1; h++)
    for (int c = w.w0; c < w.w1; c++) {
      const float v = x[h * W + c];
      arg = v > best ? h * W + c : arg;
      best = v > best ? v : best;
    }
  /* Caffe's CEIL rule without padding can leave a last window wholly past the image
   * (stride > kernel); Caffe then outputs -FLT_MAX (MAX) or 0/0 (AVE). 0 is kinder. */
  *y = arg >= 0 ? best : 0.0f;
  *am = arg;
}

/* The window offsets i W + j of a kh x kw window, broadcast, for the kernels below (NULL where
 * the window has more than CT_OFFSETS elements: they then compute them). */
#define CT_OFFSETS 16

static const ct_v4i *offsets(ct_v4i *tab, int W, int kh, int kw) {
  if (kh * kw > CT_OFFSETS) return NULL;
  for (int i = 0; i < kh; i++)
    for (int j = 0; j < kw; j++) tab[i * kw + j] = ct_v4i_splat(i * W + j);
  return tab;
}

/* One block of interior outputs: four side by side in a row (sw apart), and when rows is 2 the
 * same four in the next output row too (sh input rows down), whose chains of compares interleave
 * with the first's. x is the top-left corner of the first output's window, at flat index i0 in
 * its plane; y and am are that output's, output rows OW apart. Each lane scans its window in the
 * scalar loop's order and keeps its first maximum (strict >). */
static ALWAYS_INLINE void max_block(const float *x, int W, int i0, int kh, int kw, int sw, int sh, int rows,
                                    const ct_v4i *off, float *y, int *am, int OW) {
  ct_v4f b0 = ct_v4f_splat(-FLT_MAX), b1 = b0;
  ct_v4i a0 = ct_v4i_splat(-1), a1 = a0;
#pragma GCC unroll 4
  for (int i = 0; i < kh; i++)
#pragma GCC unroll 4
    for (int j = 0; j < kw; j++) {
      const ct_v4i o = off ? off[i * kw + j] : ct_v4i_splat(i * W + j);
      const ct_v4f v0 = ct_v4f_load_stride(x + i * W + j, sw);
      ct_v4i m = v0 > b0;
      a0 = ct_v4i_select(m, o, a0);
      b0 = ct_v4f_select(m, v0, b0);
      if (rows == 2) {
        const ct_v4f v1 = ct_v4f_load_stride(x + (i + sh) * W + j, sw);
        m = v1 > b1;
        a1 = ct_v4i_select(m, o, a1);
        b1 = ct_v4f_select(m, v1, b1);
      }
    }
  const ct_v4f zero = ct_v4f_splat(0.0f);
  const ct_v4i at = ct_v4i_splat(i0) + sw * (ct_v4i){0, 1, 2, 3};
  ct_v4i m = a0 >= 0;
  ct_v4f_store(y, ct_v4f_select(m, b0, zero));
  ct_v4i_store(am, ct_v4i_select(m, at + a0, a0));
  if (rows == 2) {
    m = a1 >= 0;
    ct_v4f_store(y + OW, ct_v4f_select(m, b1, zero));
    ct_v4i_store(am + OW, ct_v4i_select(m, at + sh * W + a1, a1));
  }
}

/* The interior outputs [rw.lo, rw.hi) (at least 4) of output row oh (and of the next when rows is
 * 2), four at a time; the last four overlap the previous ones when the count is not a multiple of
 * 4 (recomputing an output gives the same result). */
static ALWAYS_INLINE void max_interior(const ct_pool_geom *pp, span rw, int oh, int rows, const ct_v4i *off,
                                       const float *x, float *y, int *am, int kh, int kw, int sw) {
  const int W = pp->W, h0 = oh * pp->sh - pp->ph;
  for (int ow = rw.lo;; ow += 4) {
    if (ow > rw.hi - 4) ow = rw.hi - 4;
    const int i0 = h0 * W + ow * sw - pp->pw;
    if (rows == 2)
      max_block(x + i0, W, i0, kh, kw, sw, pp->sh, 2, off, y + ow, am + ow, pp->OW);
    else
      max_block(x + i0, W, i0, kh, kw, sw, pp->sh, 1, off, y + ow, am + ow, pp->OW);
    if (ow == rw.hi - 4) break;
  }
}

static ALWAYS_INLINE void max_rows(const ct_pool_geom *pp, span rh, span rw, const ct_v4i *off,
                                   const float *restrict x, float *restrict y, int *restrict am, int kh, int kw,
                                   int sw) {
  const int OW = pp->OW;
  const bool wide = rw.hi - rw.lo >= 4;
  for (int oh = 0; oh < pp->OH;) {
    float *yr = y + (size_t)oh * OW;
    int *ar = am + (size_t)oh * OW;
    if (!wide || !in_span(rh, oh)) {
      for (int ow = 0; ow < OW; ow++) max_one(pp, x, oh, ow, yr + ow, ar + ow);
      oh++;
      continue;
    }
    const int rows = in_span(rh, oh + 1) ? 2 : 1;
    for (int r = 0; r < rows; r++) {
      for (int ow = 0; ow < rw.lo; ow++) max_one(pp, x, oh + r, ow, yr + r * OW + ow, ar + r * OW + ow);
      for (int ow = rw.hi; ow < OW; ow++) max_one(pp, x, oh + r, ow, yr + r * OW + ow, ar + r * OW + ow);
    }
    max_interior(pp, rw, oh, rows, off, x, yr, ar, kh, kw, sw);
    oh += rows;
  }
}

static void max_plane(const ct_pool_geom *pp, span rh, span rw, const ct_v4i *off, const float *restrict x,
                      float *restrict y, int *restrict am) {
  const int kh = pp->kh, kw = pp->kw, sw = pp->sw;
  if (kh == 2 && kw == 2 && sw == 2)
    max_rows(pp, rh, rw, off, x, y, am, 2, 2, 2);
  else if (kh == 3 && kw == 3 && sw == 2)
    max_rows(pp, rh, rw, off, x, y, am, 3, 3, 2);
  else if (sw == 1)
    max_rows(pp, rh, rw, off, x, y, am, kh, kw, 1);
  else if (sw == 2)
    max_rows(pp, rh, rw, off, x, y, am, kh, kw, 2);
  else
    max_rows(pp, rh, rw, off, x, y, am, kh, kw, sw);
}

/* ---------------------------------------------------------------- AVE forward */

static void ave_one(const ct_pool_geom *pp, const float *restrict x, int oh, int ow, float *restrict y) {
  const int W = pp->W;
  const window w = window_at(pp, oh, ow);
  float s = 0.0f;
  for (int h = w.h0; h < w.h1; h++)
    for (int c = w.w0; c < w.w1; c++) s += x[h * W + c];
  *y = w.h0 < w.h1 && w.w0 < w.w1 ? s / (float)w.pool_size : 0.0f;
}

/* Like max_block: four interior outputs, and the same four of the next row when rows is 2, each
 * lane summing its window in the scalar loop's order. */
static ALWAYS_INLINE void ave_block(const float *x, int W, int kh, int kw, int sw, int sh, int rows, float *y,
                                    int OW) {
  ct_v4f s0 = ct_v4f_splat(0.0f), s1 = s0;
#pragma GCC unroll 4
  for (int i = 0; i < kh; i++)
#pragma GCC unroll 4
    for (int j = 0; j < kw; j++) {
      s0 += ct_v4f_load_stride(x + i * W + j, sw);
      if (rows == 2) s1 += ct_v4f_load_stride(x + (i + sh) * W + j, sw);
    }
  const float size = (float)(kh * kw);
  ct_v4f_store(y, s0 / size);
  if (rows == 2) ct_v4f_store(y + OW, s1 / size);
}

static ALWAYS_INLINE void ave_rows(const ct_pool_geom *pp, span rh, span rw, const float *restrict x,
                                   float *restrict y, int kh, int kw, int sw) {
  const int W = pp->W, OW = pp->OW;
  const bool wide = rw.hi - rw.lo >= 4;
  for (int oh = 0; oh < pp->OH;) {
    float *yr = y + (size_t)oh * OW;
    if (!wide || !in_span(rh, oh)) {
      for (int ow = 0; ow < OW; ow++) ave_one(pp, x, oh, ow, yr + ow);
      oh++;
      continue;
    }
    const int rows = in_span(rh, oh + 1) ? 2 : 1;
    for (int r = 0; r < rows; r++) {
      for (int ow = 0; ow < rw.lo; ow++) ave_one(pp, x, oh + r, ow, yr + r * OW + ow);
      for (int ow = rw.hi; ow < OW; ow++) ave_one(pp, x, oh + r, ow, yr + r * OW + ow);
    }
    const int h0 = oh * pp->sh - pp->ph;
    for (int ow = rw.lo;; ow += 4) {
      if (ow > rw.hi - 4) ow = rw.hi - 4;
      const float *xb = x + h0 * W + ow * sw - pp->pw;
      if (rows == 2)
        ave_block(xb, W, kh, kw, sw, pp->sh, 2, yr + ow, OW);
      else
        ave_block(xb, W, kh, kw, sw, pp->sh, 1, yr + ow, OW);
      if (ow == rw.hi - 4) break;
    }
    oh += rows;
  }
}

static void ave_plane(const ct_pool_geom *pp, span rh, span rw, const float *restrict x, float *restrict y) {
  const int kh = pp->kh, kw = pp->kw, sw = pp->sw;
  if (kh == 2 && kw == 2 && sw == 2)
    ave_rows(pp, rh, rw, x, y, 2, 2, 2);
  else if (kh == 3 && kw == 3 && sw == 2)
    ave_rows(pp, rh, rw, x, y, 3, 3, 2);
  else if (sw == 1)
    ave_rows(pp, rh, rw, x, y, kh, kw, 1);
  else if (sw == 2)
    ave_rows(pp, rh, rw, x, y, kh, kw, 2);
  else
    ave_rows(pp, rh, rw, x, y, kh, kw, sw);
}

/* ---------------------------------------------------------------- STOCHASTIC (test time) */

/* The activation-weighted average sum x^2 / sum x (no padding). */
static void stochastic_plane(const ct_pool_geom *pp, const float *restrict x, float *restrict y) {
  const int W = pp->W;
  for (int oh = 0; oh < pp->OH; oh++)
    for (int ow = 0; ow < pp->OW; ow++) {
      const window w = window_at(pp, oh, ow);
      float s = FLT_MIN, q = 0.0f;
      for (int h = w.h0; h < w.h1; h++)
        for (int c = w.w0; c < w.w1; c++) {
          s += x[h * W + c];
          q += x[h * W + c] * x[h * W + c];
        }
      y[oh * pp->OW + ow] = q / s;
    }
}

ct_status ct_cpu_pool_forward(const ct_driver *d, const ct_pool_geom *pp, size_t planes, const float *x0, float *y0,
                              int *argmax, float *mask0) {
  (void)d;
  const size_t in_plane = (size_t)pp->H * pp->W, out_plane = (size_t)pp->OH * pp->OW;
  const span rh = interior(pp->H, pp->OH, pp->kh, pp->sh, pp->ph), rw = interior(pp->W, pp->OW, pp->kw, pp->sw, pp->pw);
  ct_v4i tab[CT_OFFSETS];
  const ct_v4i *off = offsets(tab, pp->W, pp->kh, pp->kw);
  for (size_t pl = 0; pl < planes; pl++) {
    const float *x = x0 + pl * in_plane;
    float *y = y0 + pl * out_plane;
    switch (pp->method) {
      case CT_POOL_MAX: max_plane(pp, rh, rw, off, x, y, argmax + pl * out_plane); break;
      case CT_POOL_AVE: ave_plane(pp, rh, rw, x, y); break;
      default: stochastic_plane(pp, x, y); break;
    }
  }
  if (pp->method == CT_POOL_MAX && mask0) {
    const size_t n = planes * out_plane, n4 = n & ~(size_t)3;
    const int *restrict am = argmax;
    float *restrict mask = mask0;
    for (size_t o = 0; o < n4; o++) mask[o] = (float)am[o];
    for (size_t o = n4; o < n; o++) mask[o] = (float)am[o];
  }
  return CT_OK;
}

/* ---------------------------------------------------------------- backward */

/* AVE: each output adds dy / divisor over its window. Every dx element sums its terms in output
 * order, as the scalar loop did, so the results are bit for bit the same: each output row's
 * border outputs left of the interior first, then the interior ones, then those right of it.
 * Interior windows skip the clipping and go column by column of the window, the last first. */
static void ave_one_backward(const ct_pool_geom *pp, int oh, int ow, float dv, float *restrict dx) {
  const window w = window_at(pp, oh, ow);
  if (w.h0 >= w.h1 || w.w0 >= w.w1) return;
  const float g = dv / (float)w.pool_size;
  for (int h = w.h0; h < w.h1; h++)
    for (int c = w.w0; c < w.w1; c++) dx[h * pp->W + c] += g;
}

#define CT_AVE_CHUNK 64

static void ave_interior_backward(const ct_pool_geom *pp, span rw, int oh, const float *restrict dy,
                                  float *restrict dx) {
  const int W = pp->W, kh = pp->kh, kw = pp->kw, sw = pp->sw, pw = pp->pw, h0 = oh * pp->sh - pp->ph;
  const float size = (float)(kh * kw);
  float g[CT_AVE_CHUNK];
  for (int c0 = rw.lo; c0 < rw.hi; c0 += CT_AVE_CHUNK) {
    const int c1 = c0 + CT_AVE_CHUNK < rw.hi ? c0 + CT_AVE_CHUNK : rw.hi;
    for (int ow = c0; ow < c1; ow++) g[ow - c0] = dy[ow] / size;
    for (int i = 0; i < kh; i++) {
      float *restrict row = dx + (h0 + i) * W + c0 * sw - pw;
      /* column ow sw + j of window ow is column (ow + 1) sw + j - sw of window ow + 1: taking the
       * j from the last down, each element's terms arrive in output order */
      for (int j = kw - 1; j >= 0; j--) {
        float *restrict p = row + j;
        for (int o = 0; o < c1 - c0; o++) p[o * sw] += g[o];
      }
    }
  }
}

static void ave_backward_plane(const ct_pool_geom *pp, span rh, span rw, const float *restrict dy,
                               float *restrict dx) {
  const int OW = pp->OW;
  for (int oh = 0; oh < pp->OH; oh++) {
    const float *dyr = dy + (size_t)oh * OW;
    if (!in_span(rh, oh) || rw.lo == rw.hi) {
      for (int ow = 0; ow < OW; ow++) ave_one_backward(pp, oh, ow, dyr[ow], dx);
      continue;
    }
    for (int ow = 0; ow < rw.lo; ow++) ave_one_backward(pp, oh, ow, dyr[ow], dx);
    ave_interior_backward(pp, rw, oh, dyr, dx);
    for (int ow = rw.hi; ow < OW; ow++) ave_one_backward(pp, oh, ow, dyr[ow], dx);
  }
}

/* STOCHASTIC: d(q/s)/dx = (2 x s - q) / s^2 */
static void stochastic_backward_plane(const ct_pool_geom *pp, const float *restrict x, const float *restrict dy,
                                      float *restrict dx) {
  const int W = pp->W, OW = pp->OW;
  for (int oh = 0; oh < pp->OH; oh++)
    for (int ow = 0; ow < OW; ow++) {
      const window w = window_at(pp, oh, ow);
      const float dv = dy[oh * OW + ow];
      if (w.h0 >= w.h1 || w.w0 >= w.w1) continue;
      float s = FLT_MIN, q = 0.0f;
      for (int h = w.h0; h < w.h1; h++)
        for (int c = w.w0; c < w.w1; c++) {
          s += x[h * W + c];
          q += x[h * W + c] * x[h * W + c];
        }
      for (int h = w.h0; h < w.h1; h++)
        for (int c = w.w0; c < w.w1; c++) dx[h * W + c] += dv * (2.0f * x[h * W + c] * s - q) / (s * s);
    }
}

ct_status ct_cpu_pool_backward(const ct_driver *d, const ct_pool_geom *pp, size_t planes, const float *x0,
                               const float *dy0, const int *argmax, float *dx0) {
  (void)d;
  const size_t in_plane = (size_t)pp->H * pp->W, out_plane = (size_t)pp->OH * pp->OW;
  const span rh = interior(pp->H, pp->OH, pp->kh, pp->sh, pp->ph), rw = interior(pp->W, pp->OW, pp->kw, pp->sw, pp->pw);
  for (size_t pl = 0; pl < planes; pl++) {
    const float *restrict dy = dy0 + pl * out_plane;
    float *restrict dx = dx0 + pl * in_plane;
    memset(dx, 0, in_plane * sizeof(float));
    switch (pp->method) {
      case CT_POOL_MAX: {
        const int *restrict am = argmax + pl * out_plane;
        for (size_t o = 0; o < out_plane; o++)
          if (am[o] >= 0) dx[am[o]] += dy[o];
        break;
      }
      case CT_POOL_AVE: ave_backward_plane(pp, rh, rw, dy, dx); break;
      default: stochastic_backward_plane(pp, x0 + pl * in_plane, dy, dx); break;
    }
  }
  return CT_OK;
}
