/* The simple element-wise neuron layers: ReLU, ELU, Sigmoid, TanH, AbsVal, Power, Exp, Log, BNLL.
 *
 * Each is a pair of driver kernels over n elements (neuron_forward / neuron_backward), y = f(x)
 * and dx = dy * f'(x), sharing one skeleton. All may run in place (top == bottom). Backward then
 * no longer sees x, so a kernel is written to need only y where f allows it (Sigmoid, TanH, Exp,
 * BNLL; ReLU and ELU whenever the sign of y is the sign of x); the others keep a copy of x, made
 * at the start of forward into storage sized in reshape. */
#include <math.h>
#include <stdlib.h>

#include "layers/neuron.h"

static bool in_place(const ct_layer *l) { return l->top[0] == l->bottom[0]; }

/* ---------------------------------------------------------------- the skeleton */

ct_status ct_neuron_layer_alloc(ct_layer *l, ct_neuron_kind kind, neuron **out, ct_error *err) {
  neuron *p = calloc(1, sizeof *p);
  if (!p) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  p->f.kind = kind;
  l->priv = p;
  *out = p;
  return CT_OK;
}

ct_status ct_neuron_layer_reshape(ct_layer *l, ct_error *err) {
  neuron *p = l->priv;
  if (in_place(l)) {
    if (!p->keep_input) return CT_OK;
    if (!p->saved && !(p->saved = ct_tensor_create())) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
    return ct_tensor_reshape_like(p->saved, l->bottom[0], err);
  }
  return ct_tensor_reshape_like(l->top[0], l->bottom[0], err);
}

/* Each partition runs its images' elements on its driver. */
ct_status ct_neuron_layer_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  neuron *n = l->priv;
  const ct_driver *d = p->d;
  size_t first, count;
  ct_part_span(p, l->bottom[0], &first, &count);
  const float *x;
  float *y;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  if (in_place(l) && n->keep_input) {
    float *s;
    CT_TRY(ct_write(l, p, n->saved, &s, err));
    CT_TRY(d->ops->copy(d, s + first, x + first, count * sizeof(float)));
  }
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  return d->ops->neuron_forward(d, &n->f, count, x + first, y + first);
}

ct_status ct_neuron_layer_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  if (!l->propagate_down[0]) return CT_OK;
  neuron *n = l->priv;
  const ct_driver *d = p->d;
  size_t first, count;
  ct_part_span(p, l->bottom[0], &first, &count);
  const float *x, *y, *dy;
  float *dx;
  CT_TRY(ct_read(l, p, in_place(l) && n->keep_input ? n->saved : l->bottom[0], &x, err));
  CT_TRY(ct_read(l, p, l->top[0], &y, err));
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  return d->ops->neuron_backward(d, &n->f, count, x + first, y + first, dy + first, dx + first);
}

void ct_neuron_layer_destroy(ct_layer *l) {
  neuron *p = l->priv;
  if (!p) return;
  ct_tensor_free(p->saved);
  free(p);
  l->priv = NULL;
}

/* ---------------------------------------------------------------- ReLU */

static ct_status ReLU_setup(ct_layer *l, ct_error *err) {
  static const Caffe__ReLUParameter dflt = CAFFE__RE_LUPARAMETER__INIT;
  const Caffe__ReLUParameter *rp = l->lp->relu_param ? l->lp->relu_param : &dflt;
  neuron *p = NULL;
  CT_TRY(ct_neuron_layer_alloc(l, CT_NEURON_RELU, &p, err));
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
  CT_TRY(ct_neuron_layer_alloc(l, CT_NEURON_ELU, &p, err));
  p->f.alpha = ep->alpha;
  p->keep_input = ep->alpha < 0;
  return CT_OK;
}
NEURON_OPS(ELU);

/* ---------------------------------------------------------------- Sigmoid */

static ct_status Sigmoid_setup(ct_layer *l, ct_error *err) {
  neuron *p = NULL;
  return ct_neuron_layer_alloc(l, CT_NEURON_SIGMOID, &p, err);
}
NEURON_OPS(Sigmoid);

/* ---------------------------------------------------------------- TanH */

static ct_status TanH_setup(ct_layer *l, ct_error *err) {
  neuron *p = NULL;
  return ct_neuron_layer_alloc(l, CT_NEURON_TANH, &p, err);
}
NEURON_OPS(TanH);

/* ---------------------------------------------------------------- AbsVal */

static ct_status AbsVal_setup(ct_layer *l, ct_error *err) {
  neuron *p = NULL;
  CT_TRY(ct_neuron_layer_alloc(l, CT_NEURON_ABSVAL, &p, err));
  p->keep_input = true;
  return CT_OK;
}
NEURON_OPS(AbsVal);

/* ---------------------------------------------------------------- Power: y = (shift + scale x)^power */

static ct_status Power_setup(ct_layer *l, ct_error *err) {
  static const Caffe__PowerParameter dflt = CAFFE__POWER_PARAMETER__INIT;
  const Caffe__PowerParameter *pp = l->lp->power_param ? l->lp->power_param : &dflt;
  neuron *p = NULL;
  CT_TRY(ct_neuron_layer_alloc(l, CT_NEURON_POWER, &p, err));
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
  CT_TRY(ct_neuron_layer_alloc(l, CT_NEURON_EXP, &p, err));
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
  CT_TRY(ct_neuron_layer_alloc(l, CT_NEURON_LOG, &p, err));
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
  return ct_neuron_layer_alloc(l, CT_NEURON_BNLL, &p, err);
}
NEURON_OPS(BNLL);
