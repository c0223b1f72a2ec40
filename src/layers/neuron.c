/* The simple element-wise neuron layers: ReLU, ELU, Sigmoid, TanH, AbsVal, Power, Exp, Log, BNLL.
 *
 * Each is a pair of kernels over n elements, y = f(x) and dx = dy * f'(x), sharing one skeleton.
 * All may run in place (top == bottom). Backward then no longer sees x, so a kernel is written
 * to need only y where f allows it (Sigmoid, TanH, Exp, BNLL; ReLU and ELU whenever the sign of y
 * is the sign of x); the others keep a copy of x, made at the start of forward into storage
 * sized in reshape. */
#include <math.h>
#include <string.h>

#include "layers/layer.h"
#include "sched/partition.h"
#include "layers/scratch.h"

typedef struct neuron neuron;
/* y[i] = f(x[i]); x and y may alias. */
typedef void (*neuron_fwd)(const neuron *p, const float *x, float *y, size_t n);
/* dx[i] = dy[i] * f'(x[i]); x is the input, or the output y when keep_input is false and the
 * layer runs in place (the kernel must then give the same answer from y). dy and dx may alias. */
typedef void (*neuron_bwd)(const neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n);

struct neuron {
  neuron_fwd fwd;
  neuron_bwd bwd;
  bool keep_input;                /* backward needs x itself: in place, keep a copy */
  ct_scratch saved;               /* that copy (n floats) */
  float negative_slope;           /* ReLU */
  float alpha;                    /* ELU */
  float power, scale, shift;      /* Power; Log and Exp use scale and shift too */
  float inner_scale, outer_scale; /* Exp: y = outer_scale * e^(inner_scale * x) */
  float base_scale;               /* Log: 1 / ln(base) */
};

static bool in_place(const ct_layer *l) { return l->top[0] == l->bottom[0]; }

/* ---------------------------------------------------------------- the skeleton */

static ct_status neuron_alloc(ct_layer *l, neuron_fwd fwd, neuron_bwd bwd, neuron **out, ct_error *err) {
  neuron *p = calloc(1, sizeof *p);
  if (!p) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  p->fwd = fwd;
  p->bwd = bwd;
  l->priv = p;
  *out = p;
  return CT_OK;
}

static ct_status neuron_reshape(ct_layer *l, ct_error *err) {
  neuron *p = l->priv;
  if (in_place(l)) {
    if (p->keep_input) return ct_scratch_reserve(&p->saved, l->bottom[0]->count, sizeof(float), l, err);
    return CT_OK;
  }
  return ct_tensor_reshape_like(l->top[0], l->bottom[0], err);
}

/* Element-wise work split over the net's partitions (each element is independent). */
typedef struct neuron_run {
  const neuron *p;
  const float *x, *y, *dy;
  float *out, *saved;
} neuron_run;

static void forward_range(void *ctx, int part, size_t b, size_t e) {
  (void)part;
  const neuron_run *r = ctx;
  if (r->saved) memcpy(r->saved + b, r->x + b, (e - b) * sizeof(float));
  r->p->fwd(r->p, r->x + b, r->out + b, e - b);
}

static void backward_range(void *ctx, int part, size_t b, size_t e) {
  (void)part;
  const neuron_run *r = ctx;
  r->p->bwd(r->p, r->x + b, r->y + b, r->dy + b, r->out + b, e - b);
}

static ct_status neuron_forward(ct_layer *l, ct_error *err) {
  (void)err;
  neuron *p = l->priv;
  const ct_tensor *b = l->bottom[0];
  neuron_run r = {p, b->data, NULL, NULL, l->top[0]->data, in_place(l) && p->keep_input ? p->saved.p : NULL};
  ct_parallel_for(l, b->count, 1024, forward_range, &r);
  return CT_OK;
}

static void neuron_backward(ct_layer *l) {
  if (!l->propagate_down[0]) return;
  neuron *p = l->priv;
  const ct_tensor *b = l->bottom[0], *t = l->top[0];
  neuron_run r = {p, in_place(l) && p->keep_input ? p->saved.p : b->data, t->data, t->diff, b->diff, NULL};
  ct_parallel_for(l, b->count, 1024, backward_range, &r);
}

static void neuron_destroy(ct_layer *l) {
  neuron *p = l->priv;
  if (!p) return;
  ct_scratch_free(&p->saved);
  free(p);
  l->priv = NULL;
}

#define NEURON_OPS(T)                                             \
  const ct_layer_ops ct_layer_##T = {.type = #T,                  \
                                     .min_bottom = 1,             \
                                     .max_bottom = 1,             \
                                     .min_top = 1,                \
                                     .max_top = 1,                \
                                     .in_place = true,            \
                                     .has_backward = true,        \
                                     .setup = T##_setup,          \
                                     .reshape = neuron_reshape,   \
                                     .forward = neuron_forward,   \
                                     .backward = neuron_backward, \
                                     .destroy = neuron_destroy}

/* ---------------------------------------------------------------- ReLU */

static void relu_fwd(const neuron *p, const float *x, float *y, size_t n) {
  float s = p->negative_slope;
  for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : s * x[i];
}

/* x > 0 exactly when y > 0 for a slope >= 0 (x = 0 gives y = 0 and the slope either way). */
static void relu_bwd(const neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)y;
  float s = p->negative_slope;
  for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : s * dy[i];
}

static ct_status ReLU_setup(ct_layer *l, ct_error *err) {
  static const Caffe__ReLUParameter dflt = CAFFE__RE_LUPARAMETER__INIT;
  const Caffe__ReLUParameter *rp = l->lp->relu_param ? l->lp->relu_param : &dflt;
  neuron *p = NULL;
  CT_TRY(neuron_alloc(l, relu_fwd, relu_bwd, &p, err));
  p->negative_slope = rp->negative_slope;
  p->keep_input = rp->negative_slope < 0;
  return CT_OK;
}
NEURON_OPS(ReLU);

/* ---------------------------------------------------------------- ELU */

static void elu_fwd(const neuron *p, const float *x, float *y, size_t n) {
  float a = p->alpha;
  for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : a * expm1f(x[i]);
}

/* For x <= 0, f'(x) = alpha * e^x = y + alpha; y > 0 exactly when x > 0 for alpha >= 0. */
static void elu_bwd(const neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  float a = p->alpha;
  for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : dy[i] * (y[i] + a);
}

static ct_status ELU_setup(ct_layer *l, ct_error *err) {
  static const Caffe__ELUParameter dflt = CAFFE__ELUPARAMETER__INIT;
  const Caffe__ELUParameter *ep = l->lp->elu_param ? l->lp->elu_param : &dflt;
  neuron *p = NULL;
  CT_TRY(neuron_alloc(l, elu_fwd, elu_bwd, &p, err));
  p->alpha = ep->alpha;
  p->keep_input = ep->alpha < 0;
  return CT_OK;
}
NEURON_OPS(ELU);

/* ---------------------------------------------------------------- Sigmoid */

static void sigmoid_fwd(const neuron *p, const float *x, float *y, size_t n) {
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

static void sigmoid_bwd(const neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)p;
  (void)x;
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

static ct_status Sigmoid_setup(ct_layer *l, ct_error *err) {
  neuron *p = NULL;
  return neuron_alloc(l, sigmoid_fwd, sigmoid_bwd, &p, err);
}
NEURON_OPS(Sigmoid);

/* ---------------------------------------------------------------- TanH */

static void tanh_fwd(const neuron *p, const float *x, float *y, size_t n) {
  (void)p;
  for (size_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
}

static void tanh_bwd(const neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)p;
  (void)x;
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

static ct_status TanH_setup(ct_layer *l, ct_error *err) {
  neuron *p = NULL;
  return neuron_alloc(l, tanh_fwd, tanh_bwd, &p, err);
}
NEURON_OPS(TanH);

/* ---------------------------------------------------------------- AbsVal */

static void abs_fwd(const neuron *p, const float *x, float *y, size_t n) {
  (void)p;
  for (size_t i = 0; i < n; i++) y[i] = fabsf(x[i]);
}

static void abs_bwd(const neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)p;
  (void)y;
  for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : x[i] < 0 ? -dy[i] : 0.0f;
}

static ct_status AbsVal_setup(ct_layer *l, ct_error *err) {
  neuron *p = NULL;
  CT_TRY(neuron_alloc(l, abs_fwd, abs_bwd, &p, err));
  p->keep_input = true;
  return CT_OK;
}
NEURON_OPS(AbsVal);

/* ---------------------------------------------------------------- Power: y = (shift + scale x)^power */

static void power_fwd(const neuron *p, const float *x, float *y, size_t n) {
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

static void power_bwd(const neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
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

static ct_status Power_setup(ct_layer *l, ct_error *err) {
  static const Caffe__PowerParameter dflt = CAFFE__POWER_PARAMETER__INIT;
  const Caffe__PowerParameter *pp = l->lp->power_param ? l->lp->power_param : &dflt;
  neuron *p = NULL;
  CT_TRY(neuron_alloc(l, power_fwd, power_bwd, &p, err));
  p->power = pp->power;
  p->scale = pp->scale;
  p->shift = pp->shift;
  p->keep_input = !(pp->power == 1 || pp->power * pp->scale == 0);
  return CT_OK;
}
NEURON_OPS(Power);

/* ---------------------------------------------------------------- Exp: y = base^(shift + scale x) */

static void exp_fwd(const neuron *p, const float *x, float *y, size_t n) {
  float in = p->inner_scale, out = p->outer_scale;
  for (size_t i = 0; i < n; i++) y[i] = out * expf(in * x[i]);
}

static void exp_bwd(const neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)x;
  float in = p->inner_scale;
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] * in;
}

/* ln(base), with Caffe's -1 meaning e; fails on a base that is not a positive number. */
static ct_status log_of_base(ct_layer *l, float base, double *ln_base, ct_error *err) {
  if (base == -1) {
    *ln_base = 1;
    return CT_OK;
  }
  if (!(base > 0) || isinf(base))
    return ct_layer_fail(l, err, CT_EINVAL, "base must be a positive number, or -1 for e (got %g)", base);
  *ln_base = log(base);
  return CT_OK;
}

static ct_status Exp_setup(ct_layer *l, ct_error *err) {
  static const Caffe__ExpParameter dflt = CAFFE__EXP_PARAMETER__INIT;
  const Caffe__ExpParameter *xp = l->lp->exp_param ? l->lp->exp_param : &dflt;
  double ln_base = 1;
  CT_TRY(log_of_base(l, xp->base_, &ln_base, err));
  neuron *p = NULL;
  CT_TRY(neuron_alloc(l, exp_fwd, exp_bwd, &p, err));
  p->inner_scale = (float)(ln_base * xp->scale);
  p->outer_scale = xp->shift == 0 ? 1.0f : (float)exp(ln_base * xp->shift);
  return CT_OK;
}
NEURON_OPS(Exp);

/* ---------------------------------------------------------------- Log: y = log_base(shift + scale x) */

static void log_fwd(const neuron *p, const float *x, float *y, size_t n) {
  float a = p->scale, b = p->shift, c = p->base_scale;
  for (size_t i = 0; i < n; i++) y[i] = c * logf(a * x[i] + b);
}

static void log_bwd(const neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)y;
  float a = p->scale, b = p->shift, num = a * p->base_scale;
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * num / (a * x[i] + b);
}

static ct_status Log_setup(ct_layer *l, ct_error *err) {
  static const Caffe__LogParameter dflt = CAFFE__LOG_PARAMETER__INIT;
  const Caffe__LogParameter *gp = l->lp->log_param ? l->lp->log_param : &dflt;
  double ln_base = 1;
  CT_TRY(log_of_base(l, gp->base_, &ln_base, err));
  if (ln_base == 0) return ct_layer_fail(l, err, CT_EINVAL, "base 1 has no logarithm");
  neuron *p = NULL;
  CT_TRY(neuron_alloc(l, log_fwd, log_bwd, &p, err));
  p->scale = gp->scale;
  p->shift = gp->shift;
  p->base_scale = (float)(1.0 / ln_base);
  p->keep_input = true;
  return CT_OK;
}
NEURON_OPS(Log);

/* ---------------------------------------------------------------- BNLL: y = log(1 + e^x) */

static void bnll_fwd(const neuron *p, const float *x, float *y, size_t n) {
  (void)p;
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    y[i] = v > 0 ? v + log1pf(expf(-v)) : log1pf(expf(v));
  }
}

/* f'(x) = sigmoid(x) = 1 - e^-y, computed from y alone. */
static void bnll_bwd(const neuron *p, const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)p;
  (void)x;
  for (size_t i = 0; i < n; i++) dx[i] = -expm1f(-y[i]) * dy[i];
}

static ct_status BNLL_setup(ct_layer *l, ct_error *err) {
  neuron *p = NULL;
  return neuron_alloc(l, bnll_fwd, bnll_bwd, &p, err);
}
NEURON_OPS(BNLL);
