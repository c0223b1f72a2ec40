/* The CUDA driver's kernel bodies, each written once as a plain function of one index: the
 * CUDA kernels (cuda/kernels.cu) call them from a grid-stride loop, and tests/test_cuda_kernels.c
 * calls them from a plain loop over every index on the host and holds the results to the CPU
 * driver's entries. So CI checks every kernel's arithmetic and indexing without a GPU; only
 * the launch configuration and the library calls (cuBLAS, cudaMemcpy) are GPU-only.
 *
 * Rules for a body: it reads its arguments and writes only the outputs that belong to its
 * index (so any order of indices gives the same result, as a GPU's would); index spaces are
 * named in the comment above each body. Sums that Caffe accumulates in double stay double.
 * Parameter structs (ct_neuron, ct_update_step, ...) are passed by pointer to the kernel's
 * own copy. The header is C11 and C++ (nvcc), and uses no CUDA type. */
#ifndef CT_DRIVERS_CUDA_KERN_H
#define CT_DRIVERS_CUDA_KERN_H

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/philox.h"
#include "drivers/driver.h"

#ifdef __CUDACC__
#define CT_HD __host__ __device__ static inline
#else
#define CT_HD static inline
#endif

/* ================================================================ element-wise: i < n */

CT_HD void ctk_add(size_t i, const float *a, const float *b, float *y) { y[i] = a[i] + b[i]; }
CT_HD void ctk_sub(size_t i, const float *a, const float *b, float *y) { y[i] = a[i] - b[i]; }
CT_HD void ctk_mul(size_t i, const float *a, const float *b, float *y) { y[i] = a[i] * b[i]; }
CT_HD void ctk_axpy(size_t i, float alpha, const float *x, float *y) { y[i] += alpha * x[i]; }
CT_HD void ctk_scal(size_t i, float alpha, const float *x, float *y) { y[i] = alpha * x[i]; }
CT_HD void ctk_fill(size_t i, float v, float *y) { y[i] = v; }

/* ================================================================ neurons: i < n */

CT_HD float ctk_logistic(float v) {
  if (v >= 0) return 1.0f / (1.0f + expf(-v));
  const float e = expf(v);
  return e / (1.0f + e);
}

CT_HD void ctk_neuron_fwd(size_t i, const ct_neuron *p, const float *x, float *y) {
  const float v = x[i];
  float r = 0.0f;
  switch (p->kind) {
    case CT_NEURON_RELU: r = v > 0 ? v : p->negative_slope * v; break;
    case CT_NEURON_ELU: r = v > 0 ? v : p->alpha * expm1f(v); break;
    case CT_NEURON_SIGMOID: r = ctk_logistic(v); break;
    case CT_NEURON_TANH: r = tanhf(v); break;
    case CT_NEURON_ABSVAL: r = fabsf(v); break;
    case CT_NEURON_POWER: {
      const float a = p->scale, b = p->shift, e = p->power;
      if (e * a == 0)
        r = e == 0 ? 1.0f : powf(b, e);
      else if (e == 1)
        r = a * v + b;
      else if (e == 2) {
        const float u = a * v + b;
        r = u * u;
      } else
        r = powf(a * v + b, e);
      break;
    }
    case CT_NEURON_EXP: r = p->outer_scale * expf(p->inner_scale * v); break;
    case CT_NEURON_LOG: r = p->base_scale * logf(p->scale * v + p->shift); break;
    case CT_NEURON_BNLL: r = v > 0 ? v + log1pf(expf(-v)) : log1pf(expf(v)); break;
    case CT_NEURON_THRESHOLD: r = v > p->threshold ? 1.0f : 0.0f; break;
    case CT_NEURON_CLIP: r = fmaxf(p->lo, fminf(v, p->hi)); break;
    case CT_NEURON_SWISH: r = v * ctk_logistic(p->beta * v); break;
  }
  y[i] = r;
}

/* x may be y (the layer ran in place) where driver.h allows it; dy may be dx. */
CT_HD void ctk_neuron_bwd(size_t i, const ct_neuron *p, const float *x, const float *y, const float *dy, float *dx) {
  const float g = dy[i];
  float r = 0.0f;
  switch (p->kind) {
    case CT_NEURON_RELU: r = x[i] > 0 ? g : p->negative_slope * g; break;
    case CT_NEURON_ELU: r = x[i] > 0 ? g : g * (y[i] + p->alpha); break;
    case CT_NEURON_SIGMOID: r = g * y[i] * (1.0f - y[i]); break;
    case CT_NEURON_TANH: r = g * (1.0f - y[i] * y[i]); break;
    case CT_NEURON_ABSVAL: r = x[i] > 0 ? g : x[i] < 0 ? -g : 0.0f; break;
    case CT_NEURON_POWER: {
      const float a = p->scale, b = p->shift, e = p->power, d = e * a;
      if (d == 0)
        r = 0.0f;
      else if (e == 1)
        r = d * g;
      else if (e == 2)
        r = d * (a * x[i] + b) * g;
      else
        r = d * powf(a * x[i] + b, e - 1) * g;
      break;
    }
    case CT_NEURON_EXP: r = g * y[i] * p->inner_scale; break;
    case CT_NEURON_LOG: r = g * (p->scale * p->base_scale) / (p->scale * x[i] + p->shift); break;
    case CT_NEURON_BNLL: r = -expm1f(-y[i]) * g; break;
    case CT_NEURON_THRESHOLD: r = 0.0f; break;
    case CT_NEURON_CLIP: r = x[i] >= p->lo && x[i] <= p->hi ? g : 0.0f; break;
    case CT_NEURON_SWISH: {
      const float s = ctk_logistic(p->beta * x[i]), by = p->beta * y[i];
      r = g * (by + s * (1.0f - by));
      break;
    }
  }
  dx[i] = r;
}

/* ================================================================ PReLU over N x C x D */

/* i < N C D */
CT_HD void ctk_prelu_fwd(size_t i, size_t C, size_t D, bool shared, const float *x, const float *a, float *y) {
  const float s = a[shared ? 0 : (i / D) % C];
  y[i] = x[i] > 0 ? x[i] : s * x[i];
}
CT_HD void ctk_prelu_bwd_dx(size_t i, size_t C, size_t D, bool shared, const float *x, const float *dy, const float *a,
                            float *dx) {
  const float s = a[shared ? 0 : (i / D) % C];
  dx[i] = x[i] > 0 ? dy[i] : s * dy[i];
}
/* ================================================================ Eltwise: i < n */

/* The inputs' pointers, by value (a kernel argument; the host's array is copied into it). */
#define CTK_MAX_INPUTS 16
typedef struct ctk_inputs {
  const float *x[CTK_MAX_INPUTS];
  float coeff[CTK_MAX_INPUTS];
  bool has_coeff;
} ctk_inputs;

CT_HD void ctk_eltwise_fwd(size_t i, ct_eltwise_op op, int nx, const ctk_inputs *in, float *y, int *winner) {
  switch (op) {
    case CT_ELTWISE_PROD: {
      float v = in->x[0][i];
      for (int k = 1; k < nx; k++) v *= in->x[k][i];
      y[i] = v;
      break;
    }
    case CT_ELTWISE_SUM: {
      float v = 0.0f;
      for (int k = 0; k < nx; k++) v += (in->has_coeff ? in->coeff[k] : 1.0f) * in->x[k][i];
      y[i] = v;
      break;
    }
    case CT_ELTWISE_MAX: {
      const float a = in->x[0][i], b = in->x[1][i];
      const bool first = a > b;
      float v = first ? a : b;
      int w = first ? 0 : 1;
      for (int k = 2; k < nx; k++)
        if (in->x[k][i] > v) {
          v = in->x[k][i];
          w = k;
        }
      y[i] = v;
      winner[i] = w;
      break;
    }
  }
}

CT_HD void ctk_eltwise_bwd(size_t i, ct_eltwise_op op, int nx, const ctk_inputs *in, int k, bool stable_prod,
                           const float *y, const float *dy, const int *winner, float *dx) {
  switch (op) {
    case CT_ELTWISE_PROD:
      if (stable_prod) {
        float v = dy[i];
        for (int j = 0; j < nx; j++)
          if (j != k) v *= in->x[j][i];
        dx[i] = v;
      } else {
        dx[i] = dy[i] * y[i] / in->x[k][i];
      }
      break;
    case CT_ELTWISE_SUM: dx[i] = (in->has_coeff ? in->coeff[k] : 1.0f) * dy[i]; break;
    case CT_ELTWISE_MAX: dx[i] = winner[i] == k ? dy[i] : 0.0f; break;
  }
}

/* ================================================================ Bias, Scale over outer x dim x inner */

/* i < outer dim inner */
CT_HD void ctk_bias_fwd(size_t i, size_t dim, size_t inner, const float *x, const float *b, float *y) {
  y[i] = x[i] + b[(i / inner) % dim];
}
CT_HD void ctk_scale_fwd(size_t i, size_t dim, size_t inner, const float *x, const float *s, const float *b,
                         float *y) {
  const size_t k = (i / inner) % dim;
  y[i] = x[i] * s[k] + (b ? b[k] : 0.0f);
}
/* i < outer dim inner; dy may be dx */
CT_HD void ctk_scale_bwd_dx(size_t i, size_t dim, size_t inner, const float *dy, const float *s, float *dx) {
  dx[i] = dy[i] * s[(i / inner) % dim];
}

/* ================================================================ BatchNorm over N x C x S (the batch's
 * statistics and the chain: cuda/kern_red.h) */

/* c < C: the stored statistics (global) */
CT_HD void ctk_bn_global_stats(size_t c, const ct_batchnorm *p, float *mean, float *std, const float *run_mean,
                               const float *run_var, const float *run_factor) {
  const float f = run_factor[0], sf = f == 0.0f ? 0.0f : 1.0f / f;
  mean[c] = sf * run_mean[c];
  std[c] = sqrtf(sf * run_var[c] + p->eps);
}
/* ================================================================ the solver update: i < n */

/* Caffe's order per element: scale, decay, the rule, w -= step; g keeps the step (or 0). */
CT_HD void ctk_update(size_t i, const ct_update_step *s, float *w, float *g, float *h0, float *h1) {
  float gi = g[i];
  if (s->grad_scale != 1.f) gi *= s->grad_scale;
  if (s->decay != 0.f) gi += s->l1 ? s->decay * (float)((w[i] > 0.f) - (w[i] < 0.f)) : s->decay * w[i];
  float up = 0.0f;
  switch (s->rule) {
    case CT_RULE_SGD: {
      const float v = s->momentum * h0[i] + s->rate * gi;
      h0[i] = v;
      up = v;
      break;
    }
    case CT_RULE_NESTEROV: {
      const float prev = h0[i], v = s->momentum * prev + s->rate * gi;
      h0[i] = v;
      up = (1.f + s->momentum) * v - s->momentum * prev;
      break;
    }
    case CT_RULE_ADAGRAD: {
      const float v = h0[i] + gi * gi;
      h0[i] = v;
      up = s->rate * (gi / (sqrtf(v) + s->delta));
      break;
    }
    case CT_RULE_RMSPROP: {
      const float v = s->rms_decay * h0[i] + (1.f - s->rms_decay) * (gi * gi);
      h0[i] = v;
      up = s->rate * (gi / (sqrtf(v) + s->delta));
      break;
    }
    case CT_RULE_ADADELTA: {
      const float hv = s->momentum * h0[i] + (1.f - s->momentum) * (gi * gi);
      h0[i] = hv;
      const float step = gi * sqrtf((h1[i] + s->delta) / (hv + s->delta));
      h1[i] = s->momentum * h1[i] + (1.f - s->momentum) * (step * step);
      up = s->rate * step;
      break;
    }
    case CT_RULE_ADAM: {
      const float mv = s->momentum * h0[i] + (1.f - s->momentum) * gi;
      const float vv = s->momentum2 * h1[i] + (1.f - s->momentum2) * (gi * gi);
      h0[i] = mv;
      h1[i] = vv;
      up = s->rate * (mv / (sqrtf(vv) + s->delta));
      break;
    }
  }
  w[i] -= up;
  g[i] = s->zero_grad ? 0.f : up;
}

/* ================================================================ LSTM unit: i < N D */

CT_HD void ctk_lstm_fwd(size_t idx, size_t D, const float *c_prev, const float *x, const float *cont, float *c,
                        float *h) {
  const size_t n = idx / D, j = idx % D;
  const float *xn = x + n * 4 * D;
  const float k = cont[n];
  const float i = ctk_logistic(xn[j]), f = k == 0 ? 0.0f : k * ctk_logistic(xn[D + j]),
              o = ctk_logistic(xn[2 * D + j]), g = tanhf(xn[3 * D + j]);
  const float cv = f * c_prev[idx] + i * g;
  c[idx] = cv;
  h[idx] = o * tanhf(cv);
}

CT_HD void ctk_lstm_bwd(size_t idx, size_t D, const float *c_prev, const float *x, const float *cont, const float *c,
                        const float *dc, const float *dh, float *dc_prev, float *dx) {
  const size_t n = idx / D, j = idx % D;
  const float *xn = x + n * 4 * D;
  const float k = cont[n];
  const float i = ctk_logistic(xn[j]), f = k == 0 ? 0.0f : k * ctk_logistic(xn[D + j]),
              o = ctk_logistic(xn[2 * D + j]), g = tanhf(xn[3 * D + j]), tc = tanhf(c[idx]);
  const float t = dc[idx] + dh[idx] * o * (1.0f - tc * tc);
  if (dx) {
    float *dxn = dx + n * 4 * D;
    dxn[j] = t * g * i * (1.0f - i);
    dxn[D + j] = t * c_prev[idx] * f * (1.0f - f);
    dxn[2 * D + j] = dh[idx] * tc * o * (1.0f - o);
    dxn[3 * D + j] = t * i * (1.0f - g * g);
  }
  if (dc_prev) dc_prev[idx] = t * f;
}

/* ================================================================ dropout's device RNG */

/* The generator is core/philox.h's, shared with the CPU driver's dropout_mask (the same masks). */
/* i < n: Caffe's dropout mask, scale where kept (u >= ratio), 0 where dropped; `offset`
 * numbers this call's elements within a longer stream (the partitions of one layer). */
CT_HD void ctk_dropout_mask(size_t i, uint64_t seed, uint64_t offset, float ratio, float scale, float *mask) {
  mask[i] = ct_philox_dropout(seed, offset + i, ratio, scale);
}

#include "drivers/cuda/kern_nn.h"
#include "drivers/cuda/kern_red.h"
#include "drivers/cuda/kern_dw.h"

#endif
