/* The CPU driver's solver update: Caffe 1.0's Normalize, Regularize, each rule's
 * ComputeUpdateValue and Update (data -= diff) fused over one range of parameters, in Caffe's
 * order of operations (float throughout). */
#include <math.h>

#include "drivers/cpu/kernels.h"

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

void ct_cpu_update(const ct_driver *d, const ct_update_step *s, size_t n, float *w, float *g, float *h0, float *h1) {
  (void)d;
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
}
