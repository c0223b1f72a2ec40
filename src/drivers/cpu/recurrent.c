/* The CPU driver's LSTM cell (Caffe's LSTMUnit; driver.h gives the formulas). */
#include <math.h>

#include "drivers/cpu/kernels.h"

static float sigm(float v) {
  if (v >= 0) return 1.0f / (1.0f + expf(-v));
  const float e = expf(v); /* no overflow for very negative inputs */
  return e / (1.0f + e);
}

ct_status ct_cpu_lstm_unit_forward(const ct_driver *d, size_t N, size_t D, const float *c_prev, const float *x,
                                  const float *cont, float *c, float *h) {
  (void)d;
  for (size_t n = 0; n < N; n++) {
    const float *xn = x + n * 4 * D, *cp = c_prev + n * D;
    float *cn = c + n * D, *hn = h + n * D;
    const float k = cont[n];
    for (size_t j = 0; j < D; j++) {
      const float i = sigm(xn[j]), f = k == 0 ? 0.0f : k * sigm(xn[D + j]), o = sigm(xn[2 * D + j]);
      const float g = tanhf(xn[3 * D + j]);
      const float cv = f * cp[j] + i * g;
      cn[j] = cv;
      hn[j] = o * tanhf(cv);
    }
  }
  return CT_OK;
}

ct_status ct_cpu_lstm_unit_backward(const ct_driver *d, size_t N, size_t D, const float *c_prev, const float *x,
                                   const float *cont, const float *c, const float *dc, const float *dh,
                                   float *dc_prev, float *dx) {
  (void)d;
  for (size_t n = 0; n < N; n++) {
    const float *xn = x + n * 4 * D, *cp = c_prev + n * D, *cn = c + n * D, *dcn = dc + n * D, *dhn = dh + n * D;
    float *dxn = dx ? dx + n * 4 * D : NULL, *dcp = dc_prev ? dc_prev + n * D : NULL;
    const float k = cont[n];
    for (size_t j = 0; j < D; j++) {
      const float i = sigm(xn[j]), f = k == 0 ? 0.0f : k * sigm(xn[D + j]), o = sigm(xn[2 * D + j]);
      const float g = tanhf(xn[3 * D + j]), tc = tanhf(cn[j]);
      const float t = dcn[j] + dhn[j] * o * (1.0f - tc * tc);
      if (dxn) {
        dxn[j] = t * g * i * (1.0f - i);
        dxn[D + j] = t * cp[j] * f * (1.0f - f);
        dxn[2 * D + j] = dhn[j] * tc * o * (1.0f - o);
        dxn[3 * D + j] = t * i * (1.0f - g * g);
      }
      if (dcp) dcp[j] = t * f; /* after reading dc: dc_prev may be dc */
    }
  }
  return CT_OK;
}
