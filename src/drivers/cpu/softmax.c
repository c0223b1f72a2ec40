/* The CPU driver's softmax over C of outer x C x inner, numerically stable (the maximum is
 * subtracted first). */
#include <math.h>

#include "drivers/cpu/kernels.h"

ct_status ct_cpu_softmax_forward(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *x, float *y,
                                 float *scratch) {
  (void)d;
  for (size_t o = 0; o < outer; o++) {
    const float *xo = x + o * C * inner;
    float *yo = y + o * C * inner;
    if (inner == 1) {
      float mx = xo[0], s = 0.0f;
      for (size_t c = 1; c < C; c++) mx = xo[c] > mx ? xo[c] : mx;
      for (size_t c = 0; c < C; c++) {
        yo[c] = expf(xo[c] - mx);
        s += yo[c];
      }
      const float inv = 1.0f / s;
      for (size_t c = 0; c < C; c++) yo[c] *= inv;
      continue;
    }
    float *restrict m = scratch;
    for (size_t i = 0; i < inner; i++) m[i] = xo[i];
    for (size_t c = 1; c < C; c++) {
      const float *restrict xc = xo + c * inner;
      for (size_t i = 0; i < inner; i++) m[i] = xc[i] > m[i] ? xc[i] : m[i];
    }
    for (size_t c = 0; c < C; c++) {
      const float *xc = xo + c * inner;
      float *yc = yo + c * inner;
      for (size_t i = 0; i < inner; i++) yc[i] = expf(xc[i] - m[i]);
    }
    /* the maxima are no longer needed: reuse scratch for the sums */
    for (size_t i = 0; i < inner; i++) m[i] = 0.0f;
    for (size_t c = 0; c < C; c++) {
      const float *restrict yc = yo + c * inner;
      for (size_t i = 0; i < inner; i++) m[i] += yc[i];
    }
    for (size_t i = 0; i < inner; i++) m[i] = 1.0f / m[i];
    for (size_t c = 0; c < C; c++) {
      float *restrict yc = yo + c * inner;
      for (size_t i = 0; i < inner; i++) yc[i] *= m[i];
    }
  }
  return CT_OK;
}

ct_status ct_cpu_softmax_backward(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *y,
                                  const float *dy, float *dx, float *scratch) {
  (void)d;
  for (size_t o = 0; o < outer; o++) {
    const float *yo = y + o * C * inner, *dyo = dy + o * C * inner;
    float *dxo = dx + o * C * inner;
    if (inner == 1) {
      float dot = 0.0f;
      for (size_t c = 0; c < C; c++) dot += dyo[c] * yo[c];
      for (size_t c = 0; c < C; c++) dxo[c] = yo[c] * (dyo[c] - dot);
      continue;
    }
    float *restrict dot = scratch;
    for (size_t i = 0; i < inner; i++) dot[i] = 0.0f;
    for (size_t c = 0; c < C; c++) {
      const float *restrict yc = yo + c * inner, *restrict dyc = dyo + c * inner;
      for (size_t i = 0; i < inner; i++) dot[i] += dyc[i] * yc[i];
    }
    for (size_t c = 0; c < C; c++) {
      const float *yc = yo + c * inner, *dyc = dyo + c * inner;
      float *dxc = dxo + c * inner;
      for (size_t i = 0; i < inner; i++) dxc[i] = yc[i] * (dyc[i] - dot[i]);
    }
  }
  return CT_OK;
}
