/* Bias (Caffe's): y = x + b, with b broadcast over x's axes [axis, axis + b's axes). b is
 * bottom[1] when given, else the learnable blob 0 (shape from axis and num_axes, filler default
 * constant 0). */
#include <stdlib.h>

#include "core/filler.h"
#include "layers/layer.h"

typedef struct bias_priv {
  size_t outer, dim, inner;
} bias_priv;

static const Caffe__BiasParameter default_param = CAFFE__BIAS_PARAMETER__INIT;

static const Caffe__BiasParameter *param_of(const ct_layer *l) {
  return l->lp->bias_param ? l->lp->bias_param : &default_param;
}

/* Broadcast from an axis after the batch, each image's elements meet the same b: a range of
 * images runs alone, its b gradient summed by the executor. A second bottom's b (its gradient
 * written, not accumulated) and a scalar b (broadcast over one outer row) run whole. */
static bool bias_splits(const ct_layer *l) {
  return l->nbottom == 1 && l->blobs[0]->naxes > 0 && ct_tensor_axis(l->bottom[0], param_of(l)->axis) >= 1;
}

static ct_status bias_setup(ct_layer *l, ct_error *err) {
  const Caffe__BiasParameter *p = param_of(l);
  const ct_tensor *x = l->bottom[0];
  char buf[128];
  bias_priv *bp = calloc(1, sizeof *bp);
  if (!bp) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = bp;
  if (l->nbottom > 1) return CT_OK;
  int axis = ct_tensor_axis(x, p->axis);
  if (axis < 0 && !(x->naxes == 0 && p->axis == 0))
    return ct_layer_fail(l, err, CT_EINVAL, "axis %d is out of range for bottom shape %s", p->axis,
                         ct_tensor_shape_str(x, buf, sizeof buf));
  if (axis < 0) axis = 0;
  if (p->num_axes < -1)
    return ct_layer_fail(l, err, CT_EINVAL, "num_axes must be non-negative, or -1 to extend to the end of bottom[0]");
  if (p->num_axes >= 0 && x->naxes < axis + p->num_axes)
    return ct_layer_fail(l, err, CT_EINVAL,
                         "bias blob's shape extends past bottom[0]'s shape %s when applied starting with axis %d "
                         "(num_axes %d)",
                         ct_tensor_shape_str(x, buf, sizeof buf), axis, p->num_axes);
  int naxes = p->num_axes == -1 ? x->naxes - axis : p->num_axes;
  CT_TRY(ct_layer_alloc_blobs(l, 1, err));
  CT_TRY(ct_tensor_reshape(l->blobs[0], naxes, x->shape + axis, err));
  if (ct_fill(p->filler, l->blobs[0], &l->rng, "filler", err))
    return ct_error_prefix(err, "layer \"%s\" (Bias)", l->name);
  return CT_OK;
}

static ct_status bias_reshape(ct_layer *l, ct_error *err) {
  bias_priv *bp = l->priv;
  const Caffe__BiasParameter *p = param_of(l);
  const ct_tensor *x = l->bottom[0], *b = l->nbottom > 1 ? l->bottom[1] : l->blobs[0];
  CT_TRY(ct_layer_broadcast_axes(l, x, b, p->axis, "bias", &bp->outer, &bp->dim, &bp->inner, err));
  if (l->top[0] != x) CT_TRY(ct_tensor_reshape_like(l->top[0], x, err));
  return CT_OK;
}

/* Partition p's outer rows (outer / N per image) and its elements of x. */
static size_t outer_of(const ct_layer *l, const ct_part *p, size_t *first, size_t *n) {
  const bias_priv *bp = l->priv;
  const ct_tensor *x = l->bottom[0];
  ct_part_span(p, x, first, n);
  return p->whole ? bp->outer : bp->outer / (size_t)x->shape[0] * (size_t)(p->end - p->begin);
}

/* b on p's driver: bottom[1] whole, or the blob. */
static ct_status operand(ct_layer *l, const ct_part *p, const float **b, ct_error *err) {
  if (l->nbottom == 1) return ct_read_param(l, p, 0, b, err);
  float *v;
  CT_TRY(ct_part_all(l, p, l->bottom[1], CT_DATA, CT_READ, &v, err));
  *b = v;
  return CT_OK;
}

static ct_status bias_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  bias_priv *bp = l->priv;
  const ct_driver *d = p->d;
  size_t first, n, outer = outer_of(l, p, &first, &n);
  const float *x, *b;
  float *y;
  CT_TRY(operand(l, p, &b, err));
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  return d->ops->bias_forward(d, outer, bp->dim, bp->inner, x + first, b, y + first);
}

static ct_status bias_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  bias_priv *bp = l->priv;
  const ct_driver *d = p->d;
  size_t first, n, outer = outer_of(l, p, &first, &n);
  const float *dy;
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  dy += first;
  float *db = NULL;
  if (l->nbottom > 1 && l->propagate_down[1]) {
    CT_TRY(ct_part_all(l, p, l->bottom[1], CT_DIFF, CT_WRITE, &db, err));
    CT_TRY(d->ops->memset(d, db, 0, bp->dim * sizeof(float)));
  } else if (l->nbottom == 1 && l->param_propagate_down[0]) {
    CT_TRY(ct_part_param_grad(l, p, 0, &db, err));
  }
  if (db) CT_TRY(d->ops->scale_backward(d, outer, bp->dim, bp->inner, NULL, dy, NULL, NULL, db, NULL));
  if (!l->propagate_down[0]) return CT_OK;
  float *dx;
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  dx += first;
  /* in place, dx is dy already */
  if (dx != dy) CT_TRY(d->ops->copy(d, dx, dy, n * sizeof(float)));
  return CT_OK;
}

static void bias_destroy(ct_layer *l) {
  free(l->priv);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Bias = {
    .type = "Bias",
    .min_bottom = 1,
    .max_bottom = 2,
    .min_top = 1,
    .max_top = 1,
    .in_place = true,
    .has_backward = true,
    .splits = bias_splits,
    .gains = true,
    .kind = CT_WORK_MEMORY,
    .setup = bias_setup,
    .reshape = bias_reshape,
    .forward = bias_forward,
    .backward = bias_backward,
    .destroy = bias_destroy,
};
