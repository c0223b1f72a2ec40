/* The CPU driver's local response normalisation (see src/layers/lrn.c for the two regions and
 * the gradient), image by image.
 *
 * ACROSS_CHANNELS goes channel by channel, each step a pass or two over one plane while the
 * window's planes are in cache: s (the window sum of x^2, in registers for windows of up to 5
 * channels), then s^-beta and y; backward likewise. s^-beta for Caffe's beta = 0.75 is
 * 1 / (sqrt(s) sqrt(sqrt(s))), for 0.5 and 1 a root or a division, powf only for other betas.
 * Each sum still runs in channel order from 0, so every output is bit for bit that of the
 * scalar loops (a running sum over channels, as Caffe's CPU code has, is no faster here once
 * the passes are fused, and it would change s by some ulps and carry a large x^2 into the
 * channels after it). The element loops run in blocks of 4 (FOR4), which gcc 12 vectorises at
 * the project's -O2, where a plain loop of unknown length stays scalar. */
#include <math.h>
#include <stdbool.h>

#include "drivers/cpu/kernels.h"

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* for (size_t i = 0; i < n; i++) body, the first n - n % 4 in blocks of 4 */
#define FOR4(i, n, ...)                                                \
  do {                                                                 \
    const size_t n_ = (n);                                             \
    size_t b_ = 0;                                                     \
    for (; b_ + 4 <= n_; b_ += 4)                                      \
      for (size_t j_ = 0; j_ < 4; j_++) {                              \
        const size_t i = b_ + j_;                                      \
        __VA_ARGS__;                                                   \
      }                                                                \
    for (; b_ < n_; b_++) {                                            \
      const size_t i = b_;                                             \
      __VA_ARGS__;                                                     \
    }                                                                  \
  } while (0)

/* The exponents with a vectorisable s^-beta; the rest call powf. */
typedef enum pow_kind { POW_075, POW_05, POW_1, POW_ANY } pow_kind;

static pow_kind pow_kind_of(float beta) {
  return beta == 0.75f ? POW_075 : beta == 0.5f ? POW_05 : beta == 1.0f ? POW_1 : POW_ANY;
}

static ALWAYS_INLINE float neg_pow1(float s, pow_kind k, float beta) {
  switch (k) {
    case POW_075: {
      const float r = sqrtf(s);
      return 1.0f / (r * sqrtf(r));
    }
    case POW_05: return 1.0f / sqrtf(s);
    case POW_1: return 1.0f / s;
    default: return powf(s, -beta);
  }
}

/* sp = s^-beta, y = x sp over n elements */
static ALWAYS_INLINE void pow_mul_k(size_t n, const float *restrict s, const float *restrict x, float *restrict sp,
                                    float *restrict y, pow_kind k, float beta) {
  FOR4(i, n, const float p = neg_pow1(s[i], k, beta); sp[i] = p; y[i] = x[i] * p);
}

static void pow_mul(size_t n, const float *s, const float *x, float *sp, float *y, float beta) {
  switch (pow_kind_of(beta)) {
    case POW_075: pow_mul_k(n, s, x, sp, y, POW_075, beta); break;
    case POW_05: pow_mul_k(n, s, x, sp, y, POW_05, beta); break;
    case POW_1: pow_mul_k(n, s, x, sp, y, POW_1, beta); break;
    default: pow_mul_k(n, s, x, sp, y, POW_ANY, beta); break;
  }
}

/* ---------------------------------------------------------------- ACROSS_CHANNELS */

/* Windows of up to 5 channels (Caffe's usual local_size and the clipped windows at the ends)
 * are summed in one pass, each element's sum in registers: the kernels below are instantiated
 * for each count. Wider windows add one channel per pass. Either way each element sums its
 * window in channel order from 0, as the scalar loop did. */

/* s = k + a * (0 + the sum of v[q plane]^2 for q < count), over n elements */
static ALWAYS_INLINE float sq(float v) { return v * v; }

static ALWAYS_INLINE void sum_squares_k(size_t n, size_t plane, const float *restrict v, float *restrict s, int count,
                                        float a, float k) {
  const float *restrict v1 = v + plane, *restrict v2 = v1 + plane, *restrict v3 = v2 + plane, *restrict v4 = v3 + plane;
  FOR4(i, n, float t = 0.0f + sq(v[i]); if (count > 1) t += sq(v1[i]); if (count > 2) t += sq(v2[i]);
       if (count > 3) t += sq(v3[i]); if (count > 4) t += sq(v4[i]); s[i] = k + a * t);
}

/* acc = 0 + v^2 (first) or acc += v^2, over n elements: a window wider than 5 */
static void add_squares(size_t n, const float *restrict v, float *restrict acc, bool first) {
  if (first)
    FOR4(i, n, acc[i] = 0.0f + v[i] * v[i]);
  else
    FOR4(i, n, acc[i] += v[i] * v[i]);
}

static void shift_scale(size_t n, float *restrict s, float a, float k) { FOR4(i, n, s[i] = k + a * s[i]); }

/* s = k + a * the window sum of x^2 over the `count` channel planes from xw */
static void window_squares(size_t plane, const float *xw, int count, float *s, float a, float k) {
  switch (count) {
    case 1: sum_squares_k(plane, plane, xw, s, 1, a, k); return;
    case 2: sum_squares_k(plane, plane, xw, s, 2, a, k); return;
    case 3: sum_squares_k(plane, plane, xw, s, 3, a, k); return;
    case 4: sum_squares_k(plane, plane, xw, s, 4, a, k); return;
    case 5: sum_squares_k(plane, plane, xw, s, 5, a, k); return;
    default:
      for (int q = 0; q < count; q++) add_squares(plane, xw + (size_t)q * plane, s, q == 0);
      shift_scale(plane, s, a, k);
  }
}

/* One image, channel by channel: s[c], then y[c] and sp[c] while s[c] is in cache. */
static void across_forward(const ct_lrn_geom *lp, const float *x, float *y, float *s, float *sp) {
  const size_t plane = (size_t)lp->H * lp->W;
  const int C = lp->C, r = (lp->size - 1) / 2;
  const float a = lp->alpha / (float)lp->size;
  for (int c = 0; c < C; c++) {
    const int lo = c - r > 0 ? c - r : 0, hi = c + r < C - 1 ? c + r : C - 1;
    const size_t o = (size_t)c * plane;
    window_squares(plane, x + (size_t)lo * plane, hi - lo + 1, s + o, a, lp->k);
    pow_mul(plane, s + o, x + o, sp + o, y + o, lp->beta);
  }
}

/* t = dy y / s */
static void grad_term(size_t n, const float *restrict dy, const float *restrict y, const float *restrict s,
                      float *restrict t) {
  FOR4(i, n, t[i] = dy[i] * y[i] / s[i]);
}

/* dx = dy sp - ratio x (0 + the sum of t[q plane] for q < count) */
static ALWAYS_INLINE void grad_k(size_t n, size_t plane, const float *restrict t, int count,
                                 const float *restrict dy, const float *restrict sp, const float *restrict x,
                                 float *restrict dx, float ratio) {
  const float *restrict t1 = t + plane, *restrict t2 = t1 + plane, *restrict t3 = t2 + plane, *restrict t4 = t3 + plane;
  FOR4(i, n, float w = 0.0f + t[i]; if (count > 1) w += t1[i]; if (count > 2) w += t2[i]; if (count > 3) w += t3[i];
       if (count > 4) w += t4[i]; dx[i] = dy[i] * sp[i] - ratio * x[i] * w);
}

/* acc = 0 + v (first) or acc += v; then dx = dy sp - ratio x dx: a window wider than 5 */
static void add_plane(size_t n, const float *restrict v, float *restrict acc, bool first) {
  if (first)
    FOR4(i, n, acc[i] = 0.0f + v[i]);
  else
    FOR4(i, n, acc[i] += v[i]);
}

static void finish_grad(size_t n, const float *restrict dy, const float *restrict sp, const float *restrict x,
                        float *restrict dx, float ratio) {
  FOR4(i, n, dx[i] = dy[i] * sp[i] - ratio * x[i] * dx[i]);
}

static void window_grad(size_t plane, const float *tw, int count, const float *dy, const float *sp, const float *x,
                        float *dx, float ratio) {
  switch (count) {
    case 1: grad_k(plane, plane, tw, 1, dy, sp, x, dx, ratio); return;
    case 2: grad_k(plane, plane, tw, 2, dy, sp, x, dx, ratio); return;
    case 3: grad_k(plane, plane, tw, 3, dy, sp, x, dx, ratio); return;
    case 4: grad_k(plane, plane, tw, 4, dy, sp, x, dx, ratio); return;
    case 5: grad_k(plane, plane, tw, 5, dy, sp, x, dx, ratio); return;
    default:
      for (int q = 0; q < count; q++) add_plane(plane, tw + (size_t)q * plane, dx, q == 0);
      finish_grad(plane, dy, sp, x, dx, ratio);
  }
}

/* One image, channel by channel: tmp (C planes) gets each channel's term dy y / s as it enters
 * the window of the channel being done (dx is not dy). */
static void across_backward(const ct_lrn_geom *lp, const float *x, const float *y, const float *dy, const float *s,
                            const float *sp, float *dx, float *tmp) {
  const size_t plane = (size_t)lp->H * lp->W;
  const int C = lp->C, r = (lp->size - 1) / 2;
  const float ratio = 2.0f * lp->alpha * lp->beta / (float)lp->size;
  for (int c = 0; c < r && c < C; c++) {
    const size_t o = (size_t)c * plane;
    grad_term(plane, dy + o, y + o, s + o, tmp + o);
  }
  for (int c = 0; c < C; c++) {
    const int lo = c - r > 0 ? c - r : 0, hi = c + r < C - 1 ? c + r : C - 1;
    const size_t o = (size_t)c * plane;
    if (c + r < C) {
      const size_t h = (size_t)(c + r) * plane;
      grad_term(plane, dy + h, y + h, s + h, tmp + h);
    }
    window_grad(plane, tmp + (size_t)lo * plane, hi - lo + 1, dy + o, sp + o, x + o, dx + o, ratio);
  }
}

/* ---------------------------------------------------------------- WITHIN_CHANNEL */

static void squares(size_t n, const float *restrict x, float *restrict y) { FOR4(i, n, y[i] = x[i] * x[i]); }

/* out = shift + scale * (box sum of in over (2r+1)^2, clipped), one H x W plane; tmp holds a plane.
 * in may equal out: in is read completely (into tmp) before out is written. */
static void window_sum_plane(const float *in, float *out, float *restrict tmp, int H, int W, int r, float scale,
                             float shift) {
  for (int h = 0; h < H; h++) {
    const float *restrict row = in + (size_t)h * W;
    float *restrict t = tmp + (size_t)h * W;
    for (int w = 0; w < W; w++) {
      int lo = w - r > 0 ? w - r : 0, hi = w + r < W - 1 ? w + r : W - 1;
      float s = 0.0f;
      for (int c = lo; c <= hi; c++) s += row[c];
      t[w] = s;
    }
  }
  for (int h = 0; h < H; h++) {
    float *restrict o = out + (size_t)h * W;
    int lo = h - r > 0 ? h - r : 0, hi = h + r < H - 1 ? h + r : H - 1;
    for (int w = 0; w < W; w++) o[w] = 0.0f;
    for (int hh = lo; hh <= hi; hh++) {
      const float *restrict t = tmp + (size_t)hh * W;
      for (int w = 0; w < W; w++) o[w] += t[w];
    }
    for (int w = 0; w < W; w++) o[w] = shift + scale * o[w];
  }
}

ct_status ct_cpu_lrn_forward(const ct_driver *d, const ct_lrn_geom *lp, size_t nimg, const float *x, float *y, float *s,
                             float *spow, float *tmp) {
  (void)d;
  const size_t plane = (size_t)lp->H * lp->W, img = plane * lp->C;
  if (lp->across) {
    for (size_t b = 0; b < nimg; b++)
      across_forward(lp, x + b * img, y + b * img, s + b * img, spow + b * img);
    return CT_OK;
  }
  const int pre_pad = (lp->size - 1) / 2;
  const float a = lp->alpha / (float)(lp->size * lp->size);
  /* x^2 into y first (y is not x: the layer is not in-place), then the window sums into s */
  squares(nimg * img, x, y);
  for (size_t b = 0; b < nimg; b++)
    for (int c = 0; c < lp->C; c++)
      window_sum_plane(y + b * img + c * plane, s + b * img + c * plane, tmp, lp->H, lp->W, pre_pad, a, 1.0f);
  pow_mul(nimg * img, s, x, spow, y, lp->beta);
  return CT_OK;
}

ct_status ct_cpu_lrn_backward(const ct_driver *d, const ct_lrn_geom *lp, size_t nimg, const float *x, const float *y,
                              const float *dy, const float *s, const float *spow, float *dx, float *tmp) {
  (void)d;
  const size_t plane = (size_t)lp->H * lp->W, img = plane * lp->C;
  if (lp->across) {
    for (size_t b = 0; b < nimg; b++)
      across_backward(lp, x + b * img, y + b * img, dy + b * img, s + b * img, spow + b * img, dx + b * img, tmp);
    return CT_OK;
  }
  const int pre_pad = (lp->size - 1) / 2;
  const float ratio = 2.0f * lp->alpha * lp->beta / (float)(lp->size * lp->size);
  /* dx temporarily holds dy * y / s; its window sum goes back into dx */
  grad_term(nimg * img, dy, y, s, dx);
  for (size_t b = 0; b < nimg; b++) {
    float *dxb = dx + b * img;
    const float *xb = x + b * img, *dyb = dy + b * img, *sb = spow + b * img;
    for (int c = 0; c < lp->C; c++) {
      float *dd = dxb + c * plane;
      /* in-place box sum: window_sum_plane reads `in` fully into tmp before writing `out` */
      window_sum_plane(dd, dd, tmp, lp->H, lp->W, pre_pad, 1.0f, 0.0f);
      finish_grad(plane, dyb + c * plane, sb + c * plane, xb + c * plane, dd, ratio);
    }
  }
  return CT_OK;
}
