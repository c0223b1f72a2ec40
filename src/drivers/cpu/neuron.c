/* The CPU driver's element-wise layers: the neuron activations (each a forward and a backward
 * kernel over n elements), PReLU, Eltwise, and Eltwise SUM fused with ReLU. */
#include <math.h>
#include <string.h>

#include "core/philox.h"
#include "core/simd.h"
#include "drivers/cpu/kernels.h"

/* ---------------------------------------------------------------- ReLU */

/* Four lanes at a time (simd.h: gcc leaves a loop with a select scalar, and branches on the sign
 * of each element); a vector is loaded before its result is stored, so y may be x. */
static void relu_fwd(const ct_neuron *p, const float *x, float *y, size_t n) {
  const float s = p->negative_slope;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const ct_v4f v = ct_v4f_load(x + i);
    ct_v4f_store(y + i, ct_v4f_select(v > 0.0f, v, s * v));
  }
  for (; i < n; i++) y[i] = x[i] > 0 ? x[i] : s * x[i];
}

/* x > 0 exactly when y > 0 for a slope >= 0 (x = 0 gives y = 0 and the slope either way). */
static void relu_bwd(const ct_neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)y;
  const float s = p->negative_slope;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const ct_v4f g = ct_v4f_load(dy + i);
    ct_v4f_store(dx + i, ct_v4f_select(ct_v4f_load(x + i) > 0.0f, g, s * g));
  }
  for (; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : s * dy[i];
}

/* ---------------------------------------------------------------- ELU */

static void elu_fwd(const ct_neuron *p, const float *x, float *y, size_t n) {
  float a = p->alpha;
  for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : a * expm1f(x[i]);
}

/* For x <= 0, f'(x) = alpha * e^x = y + alpha; y > 0 exactly when x > 0 for alpha >= 0. */
static void elu_bwd(const ct_neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  float a = p->alpha;
  for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : dy[i] * (y[i] + a);
}

/* ---------------------------------------------------------------- Sigmoid */

static void sigmoid_fwd(const ct_neuron *p, const float *x, float *y, size_t n) {
  (void)p;
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    if (v >= 0) {
      y[i] = 1.0f / (1.0f + expf(-v));
    } else {
      float e = expf(v); /* no overflow for very negative inputs */
      y[i] = e / (1.0f + e);
    }
  }
}

static void sigmoid_bwd(const ct_neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)p;
  (void)x;
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

/* ---------------------------------------------------------------- TanH */

static void tanh_fwd(const ct_neuron *p, const float *x, float *y, size_t n) {
  (void)p;
  for (size_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
}

static void tanh_bwd(const ct_neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)p;
  (void)x;
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

/* ---------------------------------------------------------------- AbsVal */

static void abs_fwd(const ct_neuron *p, const float *x, float *y, size_t n) {
  (void)p;
  for (size_t i = 0; i < n; i++) y[i] = fabsf(x[i]);
}

static void abs_bwd(const ct_neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)p;
  (void)y;
  for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : x[i] < 0 ? -dy[i] : 0.0f;
}

/* ---------------------------------------------------------------- Power: y = (shift + scale x)^power */

static void power_fwd(const ct_neuron *p, const float *x, float *y, size_t n) {
  float a = p->scale, b = p->shift, e = p->power;
  if (e * a == 0) {
    /* y does not depend on x (Caffe's special case: power 0 gives 1 even for a zero base). */
    float c = e == 0 ? 1.0f : powf(b, e);
    for (size_t i = 0; i < n; i++) y[i] = c;
  } else if (e == 1) {
    for (size_t i = 0; i < n; i++) y[i] = a * x[i] + b;
  } else if (e == 2) {
    for (size_t i = 0; i < n; i++) {
      float u = a * x[i] + b;
      y[i] = u * u;
    }
  } else {
    for (size_t i = 0; i < n; i++) y[i] = powf(a * x[i] + b, e);
  }
}

static void power_bwd(const ct_neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)y;
  float a = p->scale, b = p->shift, e = p->power, d = e * a; /* dy/dx = d * (a x + b)^(e - 1) */
  if (d == 0) {
    for (size_t i = 0; i < n; i++) dx[i] = 0;
  } else if (e == 1) {
    for (size_t i = 0; i < n; i++) dx[i] = d * dy[i];
  } else if (e == 2) {
    for (size_t i = 0; i < n; i++) dx[i] = d * (a * x[i] + b) * dy[i];
  } else {
    for (size_t i = 0; i < n; i++) dx[i] = d * powf(a * x[i] + b, e - 1) * dy[i];
  }
}

/* ---------------------------------------------------------------- Exp: y = base^(shift + scale x) */

static void exp_fwd(const ct_neuron *p, const float *x, float *y, size_t n) {
  float in = p->inner_scale, out = p->outer_scale;
  for (size_t i = 0; i < n; i++) y[i] = out * expf(in * x[i]);
}

static void exp_bwd(const ct_neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)x;
  float in = p->inner_scale;
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] * in;
}

/* ---------------------------------------------------------------- Log: y = log_base(shift + scale x) */

static void log_fwd(const ct_neuron *p, const float *x, float *y, size_t n) {
  float a = p->scale, b = p->shift, c = p->base_scale;
  for (size_t i = 0; i < n; i++) y[i] = c * logf(a * x[i] + b);
}

static void log_bwd(const ct_neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)y;
  float a = p->scale, b = p->shift, num = a * p->base_scale;
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * num / (a * x[i] + b);
}

/* ---------------------------------------------------------------- BNLL: y = log(1 + e^x) */

static void bnll_fwd(const ct_neuron *p, const float *x, float *y, size_t n) {
  (void)p;
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    y[i] = v > 0 ? v + log1pf(expf(-v)) : log1pf(expf(v));
  }
}

/* f'(x) = sigmoid(x) = 1 - e^-y, computed from y alone. */
static void bnll_bwd(const ct_neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)p;
  (void)x;
  for (size_t i = 0; i < n; i++) dx[i] = -expm1f(-y[i]) * dy[i];
}

/* ---------------------------------------------------------------- Threshold: y = x > t ? 1 : 0 */

static void threshold_fwd(const ct_neuron *p, const float *x, float *y, size_t n) {
  const float t = p->threshold;
  for (size_t i = 0; i < n; i++) y[i] = x[i] > t ? 1.0f : 0.0f;
}

/* A step: its derivative is 0 wherever it has one (Caffe leaves backward unimplemented; a zero
 * gradient lets a net that passes through it train instead of failing). */
static void threshold_bwd(const ct_neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)p, (void)x, (void)y, (void)dy;
  memset(dx, 0, n * sizeof(float));
}

/* ---------------------------------------------------------------- Clip: y = min(max(x, lo), hi) */

static void clip_fwd(const ct_neuron *p, const float *x, float *y, size_t n) {
  const float lo = p->lo, hi = p->hi;
  for (size_t i = 0; i < n; i++) y[i] = fmaxf(lo, fminf(x[i], hi));
}

/* Caffe's rule: the gradient passes where lo <= x <= hi, the bounds included. */
static void clip_bwd(const ct_neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)y;
  const float lo = p->lo, hi = p->hi;
  for (size_t i = 0; i < n; i++) dx[i] = x[i] >= lo && x[i] <= hi ? dy[i] : 0.0f;
}

/* ---------------------------------------------------------------- Swish: y = x sigmoid(beta x) */

static float logistic(float v) {
  if (v >= 0) return 1.0f / (1.0f + expf(-v));
  const float e = expf(v); /* no overflow for very negative inputs */
  return e / (1.0f + e);
}

static void swish_fwd(const ct_neuron *p, const float *x, float *y, size_t n) {
  const float b = p->beta;
  for (size_t i = 0; i < n; i++) y[i] = x[i] * logistic(b * x[i]);
}

/* f'(x) = s + beta y (1 - s) with s = sigmoid(beta x) (Caffe's form: beta y + s (1 - beta y)). */
static void swish_bwd(const ct_neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  const float b = p->beta;
  for (size_t i = 0; i < n; i++) {
    const float s = logistic(b * x[i]), by = b * y[i];
    dx[i] = dy[i] * (by + s * (1.0f - by));
  }
}

/* ---------------------------------------------------------------- dispatch */

ct_status ct_cpu_neuron_forward(const ct_driver *d, const ct_neuron *p, size_t n, const float *x, float *y) {
  (void)d;
  switch (p->kind) {
    case CT_NEURON_RELU: relu_fwd(p, x, y, n); break;
    case CT_NEURON_ELU: elu_fwd(p, x, y, n); break;
    case CT_NEURON_SIGMOID: sigmoid_fwd(p, x, y, n); break;
    case CT_NEURON_TANH: tanh_fwd(p, x, y, n); break;
    case CT_NEURON_ABSVAL: abs_fwd(p, x, y, n); break;
    case CT_NEURON_POWER: power_fwd(p, x, y, n); break;
    case CT_NEURON_EXP: exp_fwd(p, x, y, n); break;
    case CT_NEURON_LOG: log_fwd(p, x, y, n); break;
    case CT_NEURON_BNLL: bnll_fwd(p, x, y, n); break;
    case CT_NEURON_THRESHOLD: threshold_fwd(p, x, y, n); break;
    case CT_NEURON_CLIP: clip_fwd(p, x, y, n); break;
    case CT_NEURON_SWISH: swish_fwd(p, x, y, n); break;
  }
  return CT_OK;
}

ct_status ct_cpu_neuron_backward(const ct_driver *d, const ct_neuron *p, size_t n, const float *x, const float *y,
                                 const float *dy, float *dx) {
  (void)d;
  switch (p->kind) {
    case CT_NEURON_RELU: relu_bwd(p, x, y, dy, dx, n); break;
    case CT_NEURON_ELU: elu_bwd(p, x, y, dy, dx, n); break;
    case CT_NEURON_SIGMOID: sigmoid_bwd(p, x, y, dy, dx, n); break;
    case CT_NEURON_TANH: tanh_bwd(p, x, y, dy, dx, n); break;
    case CT_NEURON_ABSVAL: abs_bwd(p, x, y, dy, dx, n); break;
    case CT_NEURON_POWER: power_bwd(p, x, y, dy, dx, n); break;
    case CT_NEURON_EXP: exp_bwd(p, x, y, dy, dx, n); break;
    case CT_NEURON_LOG: log_bwd(p, x, y, dy, dx, n); break;
    case CT_NEURON_BNLL: bnll_bwd(p, x, y, dy, dx, n); break;
    case CT_NEURON_THRESHOLD: threshold_bwd(p, x, y, dy, dx, n); break;
    case CT_NEURON_CLIP: clip_bwd(p, x, y, dy, dx, n); break;
    case CT_NEURON_SWISH: swish_bwd(p, x, y, dy, dx, n); break;
  }
  return CT_OK;
}

/* ---------------------------------------------------------------- PReLU */

ct_status ct_cpu_prelu_forward(const ct_driver *d, size_t N, size_t C, size_t D, bool shared, const float *x,
                               const float *a, float *y) {
  (void)d;
  for (size_t n = 0; n < N; n++)
    for (size_t c = 0; c < C; c++) {
      float s = a[shared ? 0 : c];
      size_t o = (n * C + c) * D;
      for (size_t i = o; i < o + D; i++) y[i] = x[i] > 0 ? x[i] : s * x[i];
    }
  return CT_OK;
}

/* The slope gradient first: in place, dx overwrites dy. */
ct_status ct_cpu_prelu_backward(const ct_driver *d, size_t N, size_t C, size_t D, bool shared, const float *x,
                                const float *dy, const float *a, float *dx, float *da) {
  (void)d;
  if (da) {
    for (size_t c = 0; c < C; c++) {
      double g = 0;
      for (size_t n = 0; n < N; n++) {
        size_t o = (n * C + c) * D;
        for (size_t i = o; i < o + D; i++)
          if (x[i] <= 0) g += (double)dy[i] * x[i];
      }
      da[shared ? 0 : c] += (float)g;
    }
  }
  if (dx) {
    for (size_t n = 0; n < N; n++)
      for (size_t c = 0; c < C; c++) {
        float s = a[shared ? 0 : c];
        size_t o = (n * C + c) * D;
        for (size_t i = o; i < o + D; i++) dx[i] = x[i] > 0 ? dy[i] : s * dy[i];
      }
  }
  return CT_OK;
}

/* ---------------------------------------------------------------- Eltwise */

/* y = a x + b z (z NULL: y = a x), or y += a x when acc; four lanes at a time. Each element is
 * what SUM's scalar loop gave: (0 + a x0) + b x1, then + c xk for the later inputs. */
static void sum_pass(float *y, bool acc, float a, const float *x, float b, const float *z, size_t n) {
  const ct_v4f va = ct_v4f_splat(a), vb = ct_v4f_splat(b);
  size_t i = 0;
  if (acc)
    for (; i + 4 <= n; i += 4) ct_v4f_store(y + i, ct_v4f_load(y + i) + va * ct_v4f_load(x + i));
  else if (z)
    for (; i + 4 <= n; i += 4) ct_v4f_store(y + i, va * ct_v4f_load(x + i) + vb * ct_v4f_load(z + i));
  else
    for (; i + 4 <= n; i += 4) ct_v4f_store(y + i, va * ct_v4f_load(x + i));
  for (; i < n; i++) y[i] = acc ? y[i] + a * x[i] : z ? a * x[i] + b * z[i] : a * x[i];
}

/* y = a b, four lanes at a time (y may be a). */
static void prod_pass(float *y, const float *a, const float *b, size_t n) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) ct_v4f_store(y + i, ct_v4f_load(a + i) * ct_v4f_load(b + i));
  for (; i < n; i++) y[i] = a[i] * b[i];
}

/* MAX of the first two inputs: the first wins only where it is greater (ties and NaNs: the
 * second), as the scalar rule x0 > x1 ? x0 : x1. */
static void max_first(float *y, int *w, const float *x0, const float *x1, size_t n) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const ct_v4f a = ct_v4f_load(x0 + i), b = ct_v4f_load(x1 + i);
    const ct_v4i first = a > b;
    ct_v4f_store(y + i, ct_v4f_select(first, a, b));
    ct_v4i_store(w + i, ct_v4i_select(first, ct_v4i_splat(0), ct_v4i_splat(1)));
  }
  for (; i < n; i++) {
    const bool first = x0[i] > x1[i];
    y[i] = first ? x0[i] : x1[i];
    w[i] = first ? 0 : 1;
  }
}

/* A later input k takes an element only where it is greater than the running maximum. */
static void max_next(float *y, int *w, const float *x, int k, size_t n) {
  const ct_v4i vk = ct_v4i_splat(k);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const ct_v4f v = ct_v4f_load(x + i), m = ct_v4f_load(y + i);
    const ct_v4i gt = v > m;
    ct_v4f_store(y + i, ct_v4f_select(gt, v, m));
    ct_v4i_store(w + i, ct_v4i_select(gt, vk, ct_v4i_load(w + i)));
  }
  for (; i < n; i++)
    if (x[i] > y[i]) {
      y[i] = x[i];
      w[i] = k;
    }
}

ct_status ct_cpu_eltwise_forward(const ct_driver *d, ct_eltwise_op op, size_t n, int nx, const float *const *xs,
                                 const float *coeff, float *y, int *winner) {
  (void)d;
  switch (op) {
    case CT_ELTWISE_PROD:
      /* the first two inputs in one pass (nx >= 2), the others multiplied in one by one */
      prod_pass(y, xs[0], xs[1], n);
      for (int k = 2; k < nx; k++) prod_pass(y, y, xs[k], n);
      break;
    case CT_ELTWISE_SUM:
      /* the first two inputs in one pass (nx >= 2), the others added one by one */
      sum_pass(y, false, coeff ? coeff[0] : 1.0f, xs[0], coeff ? coeff[1] : 1.0f, xs[1], n);
      for (int k = 2; k < nx; k++) sum_pass(y, true, coeff ? coeff[k] : 1.0f, xs[k], 0.0f, NULL, n);
      break;
    case CT_ELTWISE_MAX:
      max_first(y, winner, xs[0], xs[1], n);
      for (int k = 2; k < nx; k++) max_next(y, winner, xs[k], k, n);
      break;
  }
  return CT_OK;
}

ct_status ct_cpu_eltwise_backward(const ct_driver *d, ct_eltwise_op op, size_t n, int nx, const float *const *xs, int k,
                                  const float *coeff, bool stable_prod, const float *y, const float *dy,
                                  const int *winner, float *dx) {
  (void)d;
  switch (op) {
    case CT_ELTWISE_PROD:
      if (stable_prod) { /* dy times the other inputs, in their order */
        const float *src = dy;
        for (int j = 0; j < nx; j++) {
          if (j == k) continue;
          prod_pass(dx, src, xs[j], n);
          src = dx;
        }
        if (src == dy && dx != dy) memcpy(dx, dy, n * sizeof(float)); /* a single input */
      } else {
        const float *x = xs[k];
        size_t i = 0;
        for (; i + 4 <= n; i += 4)
          ct_v4f_store(dx + i, ct_v4f_load(dy + i) * ct_v4f_load(y + i) / ct_v4f_load(x + i));
        for (; i < n; i++) dx[i] = dy[i] * y[i] / x[i];
      }
      break;
    case CT_ELTWISE_SUM: {
      const float c = coeff ? coeff[k] : 1.0f;
      if (c == 1.0f) {
        if (dx != dy) memcpy(dx, dy, n * sizeof(float));
      } else {
        sum_pass(dx, false, c, dy, 0.0f, NULL, n);
      }
      break;
    }
    case CT_ELTWISE_MAX: {
      const int *w = winner;
      const ct_v4i vk = ct_v4i_splat(k);
      const ct_v4f zero = ct_v4f_splat(0.0f);
      size_t i = 0;
      for (; i + 4 <= n; i += 4)
        ct_v4f_store(dx + i, ct_v4f_select(ct_v4i_load(w + i) == vk, ct_v4f_load(dy + i), zero));
      for (; i < n; i++) dx[i] = w[i] == k ? dy[i] : 0.0f;
      break;
    }
  }
  return CT_OK;
}

/* ---------------------------------------------------------------- Eltwise SUM -> ReLU */

/* Four lanes of the sum at i, as eltwise_forward's passes compute each element: (a0 x0 + a1 x1),
 * then + ak xk in order; no value leaves the register between the terms, and none would change
 * by a store (float arithmetic, no contraction at the project's flags). */
static inline ct_v4f sum_lanes(int nx, const float *const *x, const float *coeff, size_t i) {
  ct_v4f s = ct_v4f_splat(coeff ? coeff[0] : 1.0f) * ct_v4f_load(x[0] + i) +
             ct_v4f_splat(coeff ? coeff[1] : 1.0f) * ct_v4f_load(x[1] + i);
  for (int k = 2; k < nx; k++) s = s + ct_v4f_splat(coeff ? coeff[k] : 1.0f) * ct_v4f_load(x[k] + i);
  return s;
}

ct_status ct_cpu_eltwise_relu_forward(const ct_driver *d, size_t n, int nx, const float *const *x, const float *coeff,
                                      float slope, float *y) {
  (void)d;
  size_t i = 0;
  if (nx == 2) { /* ResNet's case: the coefficients in registers (y might alias them) */
    const ct_v4f c0 = ct_v4f_splat(coeff ? coeff[0] : 1.0f), c1 = ct_v4f_splat(coeff ? coeff[1] : 1.0f);
    const float *x0 = x[0], *x1 = x[1];
    for (; i + 4 <= n; i += 4) {
      const ct_v4f v = c0 * ct_v4f_load(x0 + i) + c1 * ct_v4f_load(x1 + i);
      ct_v4f_store(y + i, ct_v4f_select(v > 0.0f, v, slope * v));
    }
  }
  for (; i + 4 <= n; i += 4) {
    const ct_v4f v = sum_lanes(nx, x, coeff, i);
    ct_v4f_store(y + i, ct_v4f_select(v > 0.0f, v, slope * v));
  }
  for (; i < n; i++) {
    float v = (coeff ? coeff[0] : 1.0f) * x[0][i] + (coeff ? coeff[1] : 1.0f) * x[1][i];
    for (int k = 2; k < nx; k++) v = v + (coeff ? coeff[k] : 1.0f) * x[k][i];
    y[i] = v > 0 ? v : slope * v;
  }
  return CT_OK;
}

/* g as the in-place ReLU's backward makes it, then coeff_k g as Eltwise's (a coefficient of 1
 * gives g itself, as its copy does). Every output of a group of lanes is stored after its loads,
 * so dz and any dx[k] may be dy. */
ct_status ct_cpu_eltwise_relu_backward(const ct_driver *d, size_t n, int nx, const float *coeff, float slope,
                                       const float *y, const float *dy, float *const *dx, float *dz) {
  (void)d;
  size_t i = 0;
  if (nx == 2 && dx[0] && dx[1]) { /* ResNet's case: pointers and coefficients in registers */
    const ct_v4f c0 = ct_v4f_splat(coeff ? coeff[0] : 1.0f), c1 = ct_v4f_splat(coeff ? coeff[1] : 1.0f);
    float *dx0 = dx[0], *dx1 = dx[1];
    for (; i + 4 <= n; i += 4) {
      const ct_v4f v = ct_v4f_load(dy + i);
      const ct_v4f g = ct_v4f_select(ct_v4f_load(y + i) > 0.0f, v, slope * v);
      if (dz) ct_v4f_store(dz + i, g);
      ct_v4f_store(dx0 + i, c0 * g);
      ct_v4f_store(dx1 + i, c1 * g);
    }
  }
  for (; i + 4 <= n; i += 4) {
    const ct_v4f v = ct_v4f_load(dy + i);
    const ct_v4f g = ct_v4f_select(ct_v4f_load(y + i) > 0.0f, v, slope * v);
    if (dz) ct_v4f_store(dz + i, g);
    for (int k = 0; k < nx; k++)
      if (dx[k]) ct_v4f_store(dx[k] + i, ct_v4f_splat(coeff ? coeff[k] : 1.0f) * g);
  }
  for (; i < n; i++) {
    const float g = y[i] > 0 ? dy[i] : slope * dy[i];
    if (dz) dz[i] = g;
    for (int k = 0; k < nx; k++)
      if (dx[k]) dx[k][i] = (coeff ? coeff[k] : 1.0f) * g;
  }
  return CT_OK;
}

/* Dropout's mask from the counter-based generator the CUDA driver's kernel uses (core/philox.h),
 * so a plan that splits a Dropout layer between the CPU and GPUs draws the CPU's mask. */
ct_status ct_cpu_dropout_mask(const ct_driver *d, uint64_t seed, size_t offset, size_t n, float ratio, float scale,
                              float *mask) {
  (void)d;
  for (size_t i = 0; i < n; i++) mask[i] = ct_philox_dropout(seed, offset + i, ratio, scale);
  return CT_OK;
}
