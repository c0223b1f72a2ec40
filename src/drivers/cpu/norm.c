/* The CPU driver's broadcast layers: Bias, Scale (and InnerProduct's bias), BatchNorm. */
#include <math.h>

#include "drivers/cpu/kernels.h"

/* ---------------------------------------------------------------- Bias and Scale */

ct_status ct_cpu_bias_forward(const ct_driver *d, size_t outer, size_t dim, size_t inner, const float *x,
                              const float *b, float *y) {
  (void)d;
  if (inner == 1) { /* a bias per column of rows (InnerProduct): one vectorisable pass per row */
    for (size_t o = 0; o < outer; o++) {
      const float *xo = x + o * dim;
      float *yo = y + o * dim;
      for (size_t k = 0; k < dim; k++) yo[k] = xo[k] + b[k];
    }
    return CT_OK;
  }
  for (size_t o = 0; o < outer; o++)
    for (size_t k = 0; k < dim; k++) {
      const size_t off = (o * dim + k) * inner;
      const float *xi = x + off; /* may be yi (in place) */
      float *yi = y + off;
      const float bv = b[k];
      for (size_t i = 0; i < inner; i++) yi[i] = xi[i] + bv;
    }
  return CT_OK;
}

ct_status ct_cpu_scale_forward(const ct_driver *d, size_t outer, size_t dim, size_t inner, const float *x,
                               const float *s, const float *b, float *y) {
  (void)d;
  for (size_t o = 0; o < outer; o++)
    for (size_t k = 0; k < dim; k++) {
      const size_t off = (o * dim + k) * inner;
      const float *restrict xi = x + off;
      float *restrict yi = y + off;
      const float sv = s[k], bv = b ? b[k] : 0.0f;
      for (size_t i = 0; i < inner; i++) yi[i] = xi[i] * sv + bv;
    }
  return CT_OK;
}

/* Parameter gradients first: in place, dx overwrites dy. */
ct_status ct_cpu_scale_backward(const ct_driver *d, size_t outer, size_t dim, size_t inner, const float *x,
                                const float *dy, const float *s, float *ds, float *db, float *dx) {
  (void)d;
  if (ds) {
    for (size_t k = 0; k < dim; k++) {
      double gs = 0.0, gb = 0.0;
      for (size_t o = 0; o < outer; o++) {
        const size_t off = (o * dim + k) * inner;
        const float *restrict xi = x + off, *restrict dyi = dy + off;
        float as = 0.0f, ab = 0.0f;
        for (size_t i = 0; i < inner; i++) {
          as += dyi[i] * xi[i];
          ab += dyi[i];
        }
        gs += as;
        gb += ab;
      }
      ds[k] += (float)gs;
      if (db) db[k] += (float)gb;
    }
  } else if (db) {
    for (size_t k = 0; k < dim; k++) {
      double g = 0.0;
      for (size_t o = 0; o < outer; o++) {
        const float *restrict dyi = dy + (o * dim + k) * inner;
        float a = 0.0f;
        for (size_t i = 0; i < inner; i++) a += dyi[i];
        g += a;
      }
      db[k] += (float)g;
    }
  }
  if (dx) {
    for (size_t o = 0; o < outer; o++)
      for (size_t k = 0; k < dim; k++) {
        const size_t off = (o * dim + k) * inner;
        const float *dyi = dy + off; /* may be dxi */
        float *dxi = dx + off;
        const float sv = s[k];
        for (size_t i = 0; i < inner; i++) dxi[i] = dyi[i] * sv;
      }
  }
  return CT_OK;
}

/* ---------------------------------------------------------------- BatchNorm */

ct_status ct_cpu_batchnorm_forward(const ct_driver *d, const ct_batchnorm *p, const float *x, float *y, float *xnorm,
                                   float *mean, float *std, float *run_mean, float *run_var, float *run_factor) {
  (void)d;
  const size_t C = p->C, S = p->S, N = p->N;
  const double m = (double)(N * S);
  if (p->global) {
    const float f = run_factor[0], sf = f == 0.0f ? 0.0f : 1.0f / f;
    for (size_t c = 0; c < C; c++) {
      mean[c] = sf * run_mean[c];
      std[c] = sqrtf(sf * run_var[c] + p->eps);
    }
  } else {
    for (size_t c = 0; c < C; c++) {
      double s = 0.0;
      for (size_t n = 0; n < N; n++) {
        const float *restrict xc = x + (n * C + c) * S;
        for (size_t i = 0; i < S; i++) s += xc[i];
      }
      mean[c] = m > 0 ? (float)(s / m) : 0.0f;
      double v = 0.0;
      for (size_t n = 0; n < N; n++) {
        const float *restrict xc = x + (n * C + c) * S;
        const float mu = mean[c];
        for (size_t i = 0; i < S; i++) v += (double)(xc[i] - mu) * (xc[i] - mu);
      }
      float var = m > 0 ? (float)(v / m) : 0.0f;
      std[c] = sqrtf(var + p->eps);
      const float corr = m > 1 ? (float)(m / (m - 1)) : 1.0f;
      run_mean[c] = mean[c] + p->maf * run_mean[c];
      run_var[c] = corr * var + p->maf * run_var[c];
    }
    run_factor[0] = run_factor[0] * p->maf + 1.0f;
  }
  for (size_t n = 0; n < N; n++)
    for (size_t c = 0; c < C; c++) {
      const float *xc = x + (n * C + c) * S; /* may be yc (in place) */
      float *yc = y + (n * C + c) * S, *restrict zc = xnorm + (n * C + c) * S;
      const float mu = mean[c], inv = 1.0f / std[c];
      for (size_t i = 0; i < S; i++) {
        const float v = (xc[i] - mu) * inv;
        zc[i] = v;
        yc[i] = v;
      }
    }
  return CT_OK;
}

/* dx = (dy - mean(dy) - mean(dy * xnorm) * xnorm) / std in training; dy / std with global
 * statistics. dy may be dx: each element is read before it is written. */
ct_status ct_cpu_batchnorm_backward(const ct_driver *d, const ct_batchnorm *p, const float *dy, const float *z,
                                    const float *std, float *dx) {
  (void)d;
  const size_t C = p->C, S = p->S, N = p->N;
  const double m = (double)(N * S);
  for (size_t c = 0; c < C; c++) {
    const float inv = 1.0f / std[c];
    float a = 0.0f, b = 0.0f;
    if (!p->global && m > 0) {
      double sa = 0.0, sb = 0.0;
      for (size_t n = 0; n < N; n++) {
        const float *dc = dy + (n * C + c) * S, *zc = z + (n * C + c) * S;
        for (size_t i = 0; i < S; i++) {
          sa += dc[i];
          sb += (double)dc[i] * zc[i];
        }
      }
      a = (float)(sa / m);
      b = (float)(sb / m);
    }
    for (size_t n = 0; n < N; n++) {
      const float *dc = dy + (n * C + c) * S, *zc = z + (n * C + c) * S;
      float *xc = dx + (n * C + c) * S;
      for (size_t i = 0; i < S; i++) xc[i] = (dc[i] - a - b * zc[i]) * inv;
    }
  }
  return CT_OK;
}
