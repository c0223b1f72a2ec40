/* The CPU driver's solver update: Caffe 1.0's Normalize, Regularize, each rule's
 * ComputeUpdateValue and Update (data -= diff) fused over one range of parameters, in Caffe's
 * order of operations (float throughout). */
#include <math.h>

#include "drivers/cpu/kernels.h"
#include "core/simd.h"

static void scale(size_t n, float *restrict g, float a) {
  for (size_t i = 0; i < n; i++) g[i] *= a;
}

static void decay_l2(size_t n, float *restrict g, const float *restrict w, float decay) {
  for (size_t i = 0; i < n; i++) g[i] += decay * w[i];
}

static void decay_l1(size_t n, float *restrict g, const float *restrict w, float decay) {
  for (size_t i = 0; i < n; i++) g[i] += decay * (float)((w[i] > 0.f) - (w[i] < 0.f));
}

static void rule_sgd(size_t n, float *restrict g, float *restrict h, float lr, float momentum) {
  for (size_t i = 0; i < n; i++) {
    float v = momentum * h[i] + lr * g[i];
    h[i] = v;
    g[i] = v;
  }
}

static void rule_nesterov(size_t n, float *restrict g, float *restrict h, float lr, float momentum) {
  for (size_t i = 0; i < n; i++) {
    float prev = h[i];
    float v = momentum * prev + lr * g[i];
    h[i] = v;
    g[i] = (1.f + momentum) * v - momentum * prev;
  }
}

static void rule_adagrad(size_t n, float *restrict g, float *restrict h, float lr, float delta) {
  for (size_t i = 0; i < n; i++) {
    float v = h[i] + g[i] * g[i];
    h[i] = v;
    g[i] = lr * (g[i] / (sqrtf(v) + delta));
  }
}

static void rule_rmsprop(size_t n, float *restrict g, float *restrict h, float lr, float decay, float delta) {
  for (size_t i = 0; i < n; i++) {
    float v = decay * h[i] + (1.f - decay) * (g[i] * g[i]);
    h[i] = v;
    g[i] = lr * (g[i] / (sqrtf(v) + delta));
  }
}

/* h: running mean of g², x: running mean of the update's square. */
static void rule_adadelta(size_t n, float *restrict g, float *restrict h, float *restrict x, float lr,
                          float momentum, float delta) {
  for (size_t i = 0; i < n; i++) {
    float hv = momentum * h[i] + (1.f - momentum) * (g[i] * g[i]);
    h[i] = hv;
    float step = g[i] * sqrtf((x[i] + delta) / (hv + delta));
    x[i] = momentum * x[i] + (1.f - momentum) * (step * step);
    g[i] = lr * step;
  }
}

static void rule_adam(size_t n, float *restrict g, float *restrict m, float *restrict v, float lr_corr,
                      float beta1, float beta2, float eps) {
  for (size_t i = 0; i < n; i++) {
    float mv = beta1 * m[i] + (1.f - beta1) * g[i];
    float vv = beta2 * v[i] + (1.f - beta2) * (g[i] * g[i]);
    m[i] = mv;
    v[i] = vv;
    g[i] = lr_corr * (mv / (sqrtf(vv) + eps));
  }
}

static void subtract(size_t n, float *restrict w, const float *restrict g) {
  for (size_t i = 0; i < n; i++) w[i] -= g[i];
}

/* SGD and Nesterov with L2 or no decay (the usual CaffeNet-style solvers) in one pass, four
 * lanes at a time: each element goes through the same float operations in the same order as in
 * the separate passes below, so the result is bit-identical; it reads and writes each array
 * once instead of once per step. */
static void sgd_fused(const ct_update_step *s, size_t n, float *restrict w, float *restrict g,
                      float *restrict h) {
  const bool scaled = s->grad_scale != 1.f, decayed = s->decay != 0.f, nesterov = s->rule == CT_RULE_NESTEROV;
  const ct_v4f gs = ct_v4f_splat(s->grad_scale), dec = ct_v4f_splat(s->decay), lr = ct_v4f_splat(s->rate);
  const ct_v4f mom = ct_v4f_splat(s->momentum), mom1 = ct_v4f_splat(1.f + s->momentum), zero = ct_v4f_splat(0.f);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    ct_v4f gi = ct_v4f_load(g + i), wi = ct_v4f_load(w + i), prev = ct_v4f_load(h + i);
    if (scaled) gi *= gs;
    if (decayed) gi += dec * wi;
    ct_v4f v = mom * prev + lr * gi;
    ct_v4f_store(h + i, v);
    ct_v4f up = nesterov ? mom1 * v - mom * prev : v;
    ct_v4f_store(w + i, wi - up);
    ct_v4f_store(g + i, s->zero_grad ? zero : up);
  }
  for (; i < n; i++) {
    float gi = g[i], prev = h[i];
    if (scaled) gi *= s->grad_scale;
    if (decayed) gi += s->decay * w[i];
    float v = s->momentum * prev + s->rate * gi;
    h[i] = v;
    float up = nesterov ? (1.f + s->momentum) * v - s->momentum * prev : v;
    w[i] -= up;
    g[i] = s->zero_grad ? 0.f : up;
  }
}

ct_status ct_cpu_update(const ct_driver *d, const ct_update_step *s, size_t n, float *w, float *g, float *h0,
                        float *h1) {
  (void)d;
  if ((s->rule == CT_RULE_SGD || s->rule == CT_RULE_NESTEROV) && !(s->decay != 0.f && s->l1)) {
    sgd_fused(s, n, w, g, h0);
    return CT_OK;
  }
  if (s->grad_scale != 1.f) scale(n, g, s->grad_scale);
  if (s->decay != 0.f) {
    if (s->l1)
      decay_l1(n, g, w, s->decay);
    else
      decay_l2(n, g, w, s->decay);
  }
  switch (s->rule) {
    case CT_RULE_SGD: rule_sgd(n, g, h0, s->rate, s->momentum); break;
    case CT_RULE_NESTEROV: rule_nesterov(n, g, h0, s->rate, s->momentum); break;
    case CT_RULE_ADAGRAD: rule_adagrad(n, g, h0, s->rate, s->delta); break;
    case CT_RULE_RMSPROP: rule_rmsprop(n, g, h0, s->rate, s->rms_decay, s->delta); break;
    case CT_RULE_ADADELTA: rule_adadelta(n, g, h0, h1, s->rate, s->momentum, s->delta); break;
    case CT_RULE_ADAM: rule_adam(n, g, h0, h1, s->rate, s->momentum, s->momentum2, s->delta); break;
  }
  subtract(n, w, g);
  if (s->zero_grad)
    for (size_t i = 0; i < n; i++) g[i] = 0.f;
  return CT_OK;
}
