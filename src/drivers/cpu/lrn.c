/* The CPU driver's local response normalisation (see src/layers/lrn.c for the two regions and
 * the gradient), image by image. */
#include <math.h>

#include "drivers/cpu/kernels.h"

/* out[c] = sum of in[c'] over |c' - c| <= r, c' in [0, C), for C channel planes of `plane`. */
static void window_sum_channels(const float *restrict in, float *restrict out, int C, size_t plane, int r,
                                float scale, float shift) {
  for (int c = 0; c < C; c++) {
    float *restrict o = out + c * plane;
    for (size_t i = 0; i < plane; i++) o[i] = 0.0f;
    int lo = c - r > 0 ? c - r : 0, hi = c + r < C - 1 ? c + r : C - 1;
    for (int cc = lo; cc <= hi; cc++) {
      const float *restrict v = in + cc * plane;
      for (size_t i = 0; i < plane; i++) o[i] += v[i];
    }
    for (size_t i = 0; i < plane; i++) o[i] = shift + scale * o[i];
  }
}

/* out = shift + scale * (box sum of in over (2r+1)^2, clipped), one H x W plane; tmp holds a plane.
 * in may equal out: in is read completely (into tmp) before out is written. */
static void window_sum_plane(const float *in, float *out, float *restrict tmp, int H, int W,
                             int r, float scale, float shift) {
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

/* out = s^-beta, with the common exponents (Caffe's default 0.75) as vectorisable square roots */
static void neg_pow(const float *restrict s, float *restrict out, size_t n, float beta) {
  if (beta == 0.75f) {
    for (size_t i = 0; i < n; i++) {
      const float r = sqrtf(s[i]);
      out[i] = 1.0f / (r * sqrtf(r));
    }
  } else if (beta == 0.5f) {
    for (size_t i = 0; i < n; i++) out[i] = 1.0f / sqrtf(s[i]);
  } else if (beta == 1.0f) {
    for (size_t i = 0; i < n; i++) out[i] = 1.0f / s[i];
  } else {
    for (size_t i = 0; i < n; i++) out[i] = powf(s[i], -beta);
  }
}

void ct_cpu_lrn_forward(const ct_driver *d, const ct_lrn_geom *lp, size_t nimg, const float *x, float *y, float *s,
                        float *spow, float *tmp) {
  (void)d;
  const size_t plane = (size_t)lp->H * lp->W, img = plane * lp->C;
  const int pre_pad = (lp->size - 1) / 2;
  /* x^2 into y first (y is not x: the layer is not in-place), then the window sums into s */
  for (size_t i = 0; i < nimg * img; i++) y[i] = x[i] * x[i];
  for (size_t b = 0; b < nimg; b++) {
    if (lp->across) {
      window_sum_channels(y + b * img, s + b * img, lp->C, plane, pre_pad, lp->alpha / (float)lp->size, lp->k);
    } else {
      const float a = lp->alpha / (float)(lp->size * lp->size);
      for (int c = 0; c < lp->C; c++)
        window_sum_plane(y + b * img + c * plane, s + b * img + c * plane, tmp, lp->H, lp->W, pre_pad, a, 1.0f);
    }
  }
  float *restrict sp = spow;
  neg_pow(s, sp, nimg * img, lp->beta);
  for (size_t i = 0; i < nimg * img; i++) y[i] = x[i] * sp[i];
}

void ct_cpu_lrn_backward(const ct_driver *d, const ct_lrn_geom *lp, size_t nimg, const float *x, const float *y,
                         const float *dy, const float *s, const float *spow, float *dx, float *tmp) {
  (void)d;
  const size_t plane = (size_t)lp->H * lp->W, img = plane * lp->C;
  const int pre_pad = (lp->size - 1) / 2;
  /* dx temporarily holds dy * y / s; the window sum of it goes to tmp (ACROSS) or back into dx */
  for (size_t i = 0; i < nimg * img; i++) dx[i] = dy[i] * y[i] / s[i];
  for (size_t b = 0; b < nimg; b++) {
    float *dxb = dx + b * img;
    const float *xb = x + b * img, *dyb = dy + b * img, *sb = spow + b * img;
    if (lp->across) {
      const float ratio = 2.0f * lp->alpha * lp->beta / (float)lp->size;
      window_sum_channels(dxb, tmp, lp->C, plane, pre_pad, 1.0f, 0.0f);
      for (size_t i = 0; i < img; i++) dxb[i] = dyb[i] * sb[i] - ratio * xb[i] * tmp[i];
    } else {
      const float ratio = 2.0f * lp->alpha * lp->beta / (float)(lp->size * lp->size);
      for (int c = 0; c < lp->C; c++) {
        float *dd = dxb + c * plane;
        /* in-place box sum: window_sum_plane reads `in` fully into tmp before writing `out` */
        window_sum_plane(dd, dd, tmp, lp->H, lp->W, pre_pad, 1.0f, 0.0f);
        const float *xc = xb + c * plane, *dyc = dyb + c * plane, *sc = sb + c * plane;
        for (size_t i = 0; i < plane; i++) dd[i] = dyc[i] * sc[i] - ratio * xc[i] * dd[i];
      }
    }
  }
}
