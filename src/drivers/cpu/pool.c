/* The CPU driver's pooling: MAX (with argmax), AVE (Caffe's divisor: the window clipped to the
 * padded image), STOCHASTIC at test time (sum x^2 / sum x), plane by plane. */
#include <float.h>
#include <string.h>

#include "drivers/cpu/kernels.h"

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

static void max_plane(const ct_pool_geom *pp, const float *restrict x, float *restrict y, int *restrict am) {
  const int W = pp->W;
  for (int oh = 0; oh < pp->OH; oh++)
    for (int ow = 0; ow < pp->OW; ow++) {
      const window w = window_at(pp, oh, ow);
      const int o = oh * pp->OW + ow;
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
      y[o] = arg >= 0 ? best : 0.0f;
      am[o] = arg;
    }
}

static void ave_plane(const ct_pool_geom *pp, const float *restrict x, float *restrict y) {
  const int W = pp->W;
  for (int oh = 0; oh < pp->OH; oh++)
    for (int ow = 0; ow < pp->OW; ow++) {
      const window w = window_at(pp, oh, ow);
      float s = 0.0f;
      for (int h = w.h0; h < w.h1; h++)
        for (int c = w.w0; c < w.w1; c++) s += x[h * W + c];
      y[oh * pp->OW + ow] = w.h0 < w.h1 && w.w0 < w.w1 ? s / (float)w.pool_size : 0.0f;
    }
}

/* STOCHASTIC at test time: the activation-weighted average sum x^2 / sum x (no padding). */
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

void ct_cpu_pool_forward(const ct_driver *d, const ct_pool_geom *pp, size_t planes, const float *x0, float *y0,
                         int *argmax, float *mask0) {
  (void)d;
  const size_t in_plane = (size_t)pp->H * pp->W, out_plane = (size_t)pp->OH * pp->OW;
  for (size_t pl = 0; pl < planes; pl++) {
    const float *x = x0 + pl * in_plane;
    float *y = y0 + pl * out_plane;
    switch (pp->method) {
      case CT_POOL_MAX: {
        int *am = argmax + pl * out_plane;
        max_plane(pp, x, y, am);
        if (mask0) {
          float *restrict mask = mask0 + pl * out_plane;
          for (size_t o = 0; o < out_plane; o++) mask[o] = (float)am[o];
        }
        break;
      }
      case CT_POOL_AVE: ave_plane(pp, x, y); break;
      default: stochastic_plane(pp, x, y); break;
    }
  }
}

void ct_cpu_pool_backward(const ct_driver *d, const ct_pool_geom *pp, size_t planes, const float *x0,
                          const float *dy0, const int *argmax, float *dx0) {
  (void)d;
  const int H = pp->H, W = pp->W, OH = pp->OH, OW = pp->OW;
  for (size_t pl = 0; pl < planes; pl++) {
    const float *restrict dy = dy0 + pl * OH * OW;
    const float *restrict x = x0 + pl * H * W;
    float *restrict dx = dx0 + pl * H * W;
    memset(dx, 0, (size_t)H * W * sizeof(float));
    if (pp->method == CT_POOL_MAX) {
      const int *restrict am = argmax + pl * OH * OW;
      for (int o = 0; o < OH * OW; o++)
        if (am[o] >= 0) dx[am[o]] += dy[o];
      continue;
    }
    for (int oh = 0; oh < OH; oh++)
      for (int ow = 0; ow < OW; ow++) {
        window w = window_at(pp, oh, ow);
        const float dv = dy[oh * OW + ow];
        if (w.h0 >= w.h1 || w.w0 >= w.w1) continue;
        if (pp->method == CT_POOL_AVE) {
          const float g = dv / (float)w.pool_size;
          for (int h = w.h0; h < w.h1; h++)
            for (int c = w.w0; c < w.w1; c++) dx[h * W + c] += g;
        } else { /* d(q/s)/dx = (2 x s - q) / s^2 */
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
  }
}
