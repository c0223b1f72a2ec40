/* Reduction (Caffe's "Reduction"): every axis from reduction_param.axis on is reduced to one
 * number, so the top's shape is the bottom's axes before `axis` (a scalar for axis 0):
 *   SUM    coeff sum x          ASUM  coeff sum |x|
 *   SUMSQ  coeff sum x^2        MEAN  coeff / dim sum x
 * over the dim trailing elements of each of the `num` leading positions. Backward broadcasts
 * the top's gradient back: coeff (SUM), coeff sign(x) (ASUM), 2 coeff x (SUMSQ), coeff / dim
 * (MEAN).
 *
 * On the driver: a GEMV of the num x dim rows with a vector of ones (after |x| or x^2 into a
 * bottom-shaped buffer), and backward a rank-1 GEMM (the gradients times a row of ones) and,
 * for ASUM and SUMSQ, an element-wise pass. With axis >= 1 each image reduces alone, so
 * partitions split the batch; axis 0 runs whole. */
#include <math.h>
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/ones.h"

typedef struct reduction {
  Caffe__ReductionParameter__ReductionOp op;
  int axis;         /* canonical, from reshape */
  float coeff;
  size_t num, dim;  /* leading positions, elements reduced per position */
  ct_ones ones;     /* dim of them */
  ct_tensor *tmp;   /* bottom-shaped: |x| or x^2 (ASUM, SUMSQ) */
} reduction;

static const Caffe__ReductionParameter *params(const ct_layer *l) {
  static const Caffe__ReductionParameter dflt = CAFFE__REDUCTION_PARAMETER__INIT;
  return l->lp->reduction_param ? l->lp->reduction_param : &dflt;
}

static bool reduction_splits(const ct_layer *l) { return ct_tensor_axis(l->bottom[0], params(l)->axis) > 0; }

static ct_status reduction_setup(ct_layer *l, ct_error *err) {
  const Caffe__ReductionParameter *rp = params(l);
  switch (rp->operation) {
    case CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__SUM:
    case CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__ASUM:
    case CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__SUMSQ:
    case CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__MEAN: break;
    default: return ct_layer_fail(l, err, CT_EINVAL, "operation must be SUM, ASUM, SUMSQ or MEAN (got %d)", rp->operation);
  }
  if (!isfinite(rp->coeff))
    return ct_layer_fail(l, err, CT_EINVAL, "coeff must be a finite number, got %g", rp->coeff);
  reduction *r = calloc(1, sizeof *r);
  if (!r) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = r;
  r->op = rp->operation;
  r->coeff = rp->coeff;
  if (!(r->tmp = ct_tensor_create()))
    return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  return CT_OK;
}

static ct_status reduction_reshape(ct_layer *l, ct_error *err) {
  reduction *r = l->priv;
  const ct_tensor *x = l->bottom[0];
  char buf[128];
  /* Caffe's axis may also be naxes (nothing reduced) only through CanonicalAxisIndex's range:
   * [-naxes, naxes) */
  const int axis = ct_tensor_axis(x, params(l)->axis);
  if (axis < 0)
    return ct_layer_fail(l, err, CT_EINVAL, "axis %d is out of range for bottom shape %s", params(l)->axis,
                         ct_tensor_shape_str(x, buf, sizeof buf));
  r->axis = axis;
  r->num = ct_tensor_count_range(x, 0, axis);
  r->dim = ct_tensor_count_range(x, axis, x->naxes);
  CT_TRY(ct_tensor_reshape(l->top[0], axis, x->shape, err));
  CT_TRY(ct_ones_fit(&r->ones, r->dim, err));
  if (r->op == CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__ASUM || r->op == CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__SUMSQ)
    CT_TRY(ct_tensor_reshape_like(r->tmp, x, err));
  return CT_OK;
}

/* The partition's positions: [*r0, *r0 + *nr) of the num, each dim elements. */
static void rows_of(const ct_layer *l, const ct_part *p, size_t *r0, size_t *nr) {
  const reduction *r = l->priv;
  if (p->whole) {
    *r0 = 0;
    *nr = r->num;
    return;
  }
  const size_t per = r->num / (size_t)l->bottom[0]->shape[0];
  *r0 = (size_t)p->begin * per;
  *nr = (size_t)(p->end - p->begin) * per;
}

static float scale_of(const reduction *r) {
  return r->op == CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__MEAN ? r->coeff / (float)r->dim : r->coeff;
}

static ct_status reduction_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  reduction *r = l->priv;
  const ct_driver *d = p->d;
  size_t r0, nr;
  rows_of(l, p, &r0, &nr);
  const float *x, *ones;
  float *y;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  CT_TRY(ct_part_all(l, p, r->ones.t, CT_DATA, CT_READ, (float **)&ones, err));
  x += r0 * r->dim;
  y += r0;
  if (nr == 0) return CT_OK;
  if (r->dim == 0) return d->ops->memset(d, y, 0, nr * sizeof(float));
  if (r->op == CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__ASUM ||
      r->op == CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__SUMSQ) {
    float *t;
    CT_TRY(ct_write(l, p, r->tmp, &t, err));
    t += r0 * r->dim;
    if (r->op == CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__ASUM) {
      const ct_neuron abs = {.kind = CT_NEURON_ABSVAL};
      CT_TRY(d->ops->neuron_forward(d, &abs, nr * r->dim, x, t));
    } else {
      CT_TRY(d->ops->mul(d, nr * r->dim, x, x, t));
    }
    x = t;
  }
  return d->ops->gemv(d, false, (int)nr, (int)r->dim, scale_of(r), x, ones, 0.0f, y);
}

static ct_status reduction_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  if (!l->propagate_down[0]) return CT_OK;
  reduction *r = l->priv;
  const ct_driver *d = p->d;
  size_t r0, nr;
  rows_of(l, p, &r0, &nr);
  const float *dy, *ones, *x = NULL;
  float *dx;
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  CT_TRY(ct_part_all(l, p, r->ones.t, CT_DATA, CT_READ, (float **)&ones, err));
  const bool needs_x =
      r->op == CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__ASUM || r->op == CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__SUMSQ;
  if (needs_x) CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  if (nr == 0 || r->dim == 0) return CT_OK;
  dy += r0;
  dx += r0 * r->dim;
  const size_t n = nr * r->dim;
  float alpha = scale_of(r);
  if (r->op == CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__SUMSQ) alpha *= 2.0f;
  /* dx (nr x dim) = alpha dy (nr x 1) . ones (1 x dim) */
  CT_TRY(d->ops->gemm(d, false, false, (int)nr, (int)r->dim, 1, alpha, dy, ones, 0.0f, dx));
  if (r->op == CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__ASUM) {
    const ct_neuron abs = {.kind = CT_NEURON_ABSVAL}; /* its backward: dx = dy sign(x) */
    return d->ops->neuron_backward(d, &abs, n, x + r0 * r->dim, x + r0 * r->dim, dx, dx);
  }
  if (r->op == CAFFE__REDUCTION_PARAMETER__REDUCTION_OP__SUMSQ) return d->ops->mul(d, n, dx, x + r0 * r->dim, dx);
  return CT_OK;
}

static void reduction_destroy(ct_layer *l) {
  reduction *r = l->priv;
  if (!r) return;
  ct_ones_free(&r->ones);
  ct_tensor_free(r->tmp);
  free(r);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Reduction = {.type = "Reduction",
                                         .min_bottom = 1,
                                         .max_bottom = 1,
                                         .min_top = 1,
                                         .max_top = 1,
                                         .has_backward = true,
                                         .splits = reduction_splits,
                                         .gains = true,
                                         .kind = CT_WORK_MEMORY,
                                         .setup = reduction_setup,
                                         .reshape = reduction_reshape,
                                         .forward = reduction_forward,
                                         .backward = reduction_backward,
                                         .destroy = reduction_destroy};
