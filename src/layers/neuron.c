/* The simple element-wise neuron layers: ReLU, ELU, Sigmoid, TanH, AbsVal, Power, Exp, Log, BNLL.
 *
 * Each is a pair of driver kernels over n elements (neuron_forward / neuron_backward), y = f(x)
 * and dx = dy * f'(x), sharing one skeleton. All may run in place (top == bottom). Backward then
 * no longer sees x, so a kernel is written to need only y where f allows it (Sigmoid, TanH, Exp,
 * BNLL; ReLU and ELU whenever the sign of y is the sign of x); the others keep a copy of x, made
 * at the start of forward into storage sized in reshape. */
#include <math.h>
#include <stdlib.h>

#include "layers/layer.h"
#include "sched/partition.h"
#include "layers/scratch.h"

typedef struct neuron {
  ct_neuron f;      /* which activation, with its parameters */
  bool keep_input;  /* backward needs x itself: in place, keep a copy */
  ct_scratch saved; /* that copy (n floats) */
} neuron;

static bool in_place(const ct_layer *l) { return l->top[0] == l->bottom[0]; }

/* ---------------------------------------------------------------- the skeleton */

static ct_status neuron_alloc(ct_layer *l, ct_neuron_kind kind, neuron **out, ct_error *err) {
  neuron *p = calloc(1, sizeof *p);
  if (!p) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  p->f.kind = kind;
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

/* Element-wise work split over the net's partitions (each element is independent); the driver
 * runs each partition's range. */
typedef struct neuron_run {
  const ct_driver *d;
  const ct_neuron *f;
  const float *x, *y, *dy;
  float *out, *saved;
} neuron_run;

static void forward_range(void *ctx, int part, size_t b, size_t e) {
  (void)part;
  const neuron_run *r = ctx;
  if (r->saved) r->d->ops->copy(r->d, r->saved + b, r->x + b, (e - b) * sizeof(float));
  r->d->ops->neuron_forward(r->d, r->f, e - b, r->x + b, r->out + b);
}

static void backward_range(void *ctx, int part, size_t b, size_t e) {
  (void)part;
  const neuron_run *r = ctx;
  r->d->ops->neuron_backward(r->d, r->f, e - b, r->x + b, r->y + b, r->dy + b, r->out + b);
}

static ct_status neuron_forward(ct_layer *l, ct_error *err) {
  (void)err;
  neuron *p = l->priv;
  const ct_tensor *b = l->bottom[0];
  neuron_run r = {ct_layer_driver(l), &p->f, b->data, NULL, NULL, l->top[0]->data,
                  in_place(l) && p->keep_input ? p->saved.p : NULL};
  ct_parallel_for(l, b->count, 1024, forward_range, &r);
  return CT_OK;
}

static void neuron_backward(ct_layer *l) {
  if (!l->propagate_down[0]) return;
  neuron *p = l->priv;
  const ct_tensor *b = l->bottom[0], *t = l->top[0];
  neuron_run r = {ct_layer_driver(l), &p->f, in_place(l) && p->keep_input ? p->saved.p : b->data, t->data,
                  t->diff, b->diff, NULL};
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

static ct_status ReLU_setup(ct_layer *l, ct_error *err) {
  static const Caffe__ReLUParameter dflt = CAFFE__RE_LUPARAMETER__INIT;
  const Caffe__ReLUParameter *rp = l->lp->relu_param ? l->lp->relu_param : &dflt;
  neuron *p = NULL;
  CT_TRY(neuron_alloc(l, CT_NEURON_RELU, &p, err));
  p->f.negative_slope = rp->negative_slope;
  p->keep_input = rp->negative_slope < 0;
  return CT_OK;
}
NEURON_OPS(ReLU);

/* ---------------------------------------------------------------- ELU */

static ct_status ELU_setup(ct_layer *l, ct_error *err) {
  static const Caffe__ELUParameter dflt = CAFFE__ELUPARAMETER__INIT;
  const Caffe__ELUParameter *ep = l->lp->elu_param ? l->lp->elu_param : &dflt;
  neuron *p = NULL;
  CT_TRY(neuron_alloc(l, CT_NEURON_ELU, &p, err));
  p->f.alpha = ep->alpha;
  p->keep_input = ep->alpha < 0;
  return CT_OK;
}
NEURON_OPS(ELU);

/* ---------------------------------------------------------------- Sigmoid */

static ct_status Sigmoid_setup(ct_layer *l, ct_error *err) {
  neuron *p = NULL;
  return neuron_alloc(l, CT_NEURON_SIGMOID, &p, err);
}
NEURON_OPS(Sigmoid);

/* ---------------------------------------------------------------- TanH */

static ct_status TanH_setup(ct_layer *l, ct_error *err) {
  neuron *p = NULL;
  return neuron_alloc(l, CT_NEURON_TANH, &p, err);
}
NEURON_OPS(TanH);

/* ---------------------------------------------------------------- AbsVal */

static ct_status AbsVal_setup(ct_layer *l, ct_error *err) {
  neuron *p = NULL;
  CT_TRY(neuron_alloc(l, CT_NEURON_ABSVAL, &p, err));
  p->keep_input = true;
  return CT_OK;
}
NEURON_OPS(AbsVal);

/* ---------------------------------------------------------------- Power: y = (shift + scale x)^power */

static ct_status Power_setup(ct_layer *l, ct_error *err) {
  static const Caffe__PowerParameter dflt = CAFFE__POWER_PARAMETER__INIT;
  const Caffe__PowerParameter *pp = l->lp->power_param ? l->lp->power_param : &dflt;
  neuron *p = NULL;
  CT_TRY(neuron_alloc(l, CT_NEURON_POWER, &p, err));
  p->f.power = pp->power;
  p->f.scale = pp->scale;
  p->f.shift = pp->shift;
  p->keep_input = !(pp->power == 1 || pp->power * pp->scale == 0);
  return CT_OK;
}
NEURON_OPS(Power);

/* ---------------------------------------------------------------- Exp: y = base^(shift + scale x) */

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
  CT_TRY(neuron_alloc(l, CT_NEURON_EXP, &p, err));
  p->f.inner_scale = (float)(ln_base * xp->scale);
  p->f.outer_scale = xp->shift == 0 ? 1.0f : (float)exp(ln_base * xp->shift);
  return CT_OK;
}
NEURON_OPS(Exp);

/* ---------------------------------------------------------------- Log: y = log_base(shift + scale x) */

static ct_status Log_setup(ct_layer *l, ct_error *err) {
  static const Caffe__LogParameter dflt = CAFFE__LOG_PARAMETER__INIT;
  const Caffe__LogParameter *gp = l->lp->log_param ? l->lp->log_param : &dflt;
  double ln_base = 1;
  CT_TRY(log_of_base(l, gp->base_, &ln_base, err));
  if (ln_base == 0) return ct_layer_fail(l, err, CT_EINVAL, "base 1 has no logarithm");
  neuron *p = NULL;
  CT_TRY(neuron_alloc(l, CT_NEURON_LOG, &p, err));
  p->f.scale = gp->scale;
  p->f.shift = gp->shift;
  p->f.base_scale = (float)(1.0 / ln_base);
  p->keep_input = true;
  return CT_OK;
}
NEURON_OPS(Log);

/* ---------------------------------------------------------------- BNLL: y = log(1 + e^x) */

static ct_status BNLL_setup(ct_layer *l, ct_error *err) {
  neuron *p = NULL;
  return neuron_alloc(l, CT_NEURON_BNLL, &p, err);
}
NEURON_OPS(BNLL);
