/* Scale (Caffe's): y = x * s (+ b), with s broadcast over x's axes [axis, axis + s's axes).
 * s is bottom[1] when given, else the learnable blob 0 (shape from axis and num_axes, filler
 * default constant 1). bias_term adds a learnable b of s's shape (bias_filler, default 0) as the
 * last blob. */
#include <stdlib.h>
#include <string.h>

#include "core/filler.h"
#include "layers/layer.h"

typedef struct scale_priv {
  bool bias;
  int bias_blob;
  size_t outer, dim, inner;
  ct_tensor *saved_x; /* in place: x, kept for the gradient of s (bottom-shaped: each partition
                         keeps its images) */
} scale_priv;

static const Caffe__ScaleParameter default_param = CAFFE__SCALE_PARAMETER__INIT;

static const Caffe__ScaleParameter *param_of(const ct_layer *l) {
  return l->lp->scale_param ? l->lp->scale_param : &default_param;
}

/* Broadcast from an axis after the batch, each image's elements meet the same s: a range of
 * images runs alone, its s and b gradients summed by the executor. A second bottom's s (its
 * gradient written, not accumulated) and a scalar s (broadcast over one outer row) run whole. */
static bool scale_splits(const ct_layer *l) {
  return l->nbottom == 1 && l->blobs[0]->naxes > 0 && ct_tensor_axis(l->bottom[0], param_of(l)->axis) >= 1;
}

static ct_status scale_setup(ct_layer *l, ct_error *err) {
  const Caffe__ScaleParameter *p = param_of(l);
  const ct_tensor *x = l->bottom[0];
  char buf[128];
  scale_priv *sp = calloc(1, sizeof *sp);
  if (!sp) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = sp;
  sp->bias = p->bias_term;
  int nblobs = (l->nbottom == 1) + (sp->bias ? 1 : 0);
  sp->bias_blob = l->nbottom == 1 ? 1 : 0;
  CT_TRY(ct_layer_alloc_blobs(l, nblobs, err));
  int shape[CT_MAX_AXES], naxes;
  if (l->nbottom == 1) {
    int axis = ct_tensor_axis(x, p->axis);
    if (axis < 0 && !(x->naxes == 0 && p->axis == 0))
      return ct_layer_fail(l, err, CT_EINVAL, "axis %d is out of range for bottom shape %s", p->axis,
                           ct_tensor_shape_str(x, buf, sizeof buf));
    if (axis < 0) axis = 0;
    if (p->num_axes < -1)
      return ct_layer_fail(l, err, CT_EINVAL, "num_axes must be non-negative, or -1 to extend to the end of bottom[0]");
    if (p->num_axes >= 0 && x->naxes < axis + p->num_axes)
      return ct_layer_fail(l, err, CT_EINVAL,
                           "scale blob's shape extends past bottom[0]'s shape %s when applied starting with axis %d "
                           "(num_axes %d)",
                           ct_tensor_shape_str(x, buf, sizeof buf), axis, p->num_axes);
    naxes = p->num_axes == -1 ? x->naxes - axis : p->num_axes;
    for (int i = 0; i < naxes; i++) shape[i] = x->shape[axis + i];
    CT_TRY(ct_tensor_reshape(l->blobs[0], naxes, shape, err));
    if (p->filler) {
      if (ct_fill(p->filler, l->blobs[0], &l->rng, "filler", err))
        return ct_error_prefix(err, "layer \"%s\" (Scale)", l->name);
    } else {
      float *w;
      CT_TRY(ct_tensor_host(l->blobs[0], CT_DATA, CT_WRITE, &w, err));
      for (size_t i = 0; i < l->blobs[0]->count; i++) w[i] = 1.0f;
    }
  } else {
    naxes = l->bottom[1]->naxes;
    memcpy(shape, l->bottom[1]->shape, sizeof(int) * (size_t)naxes);
  }
  if (sp->bias) {
    ct_tensor *b = l->blobs[sp->bias_blob];
    CT_TRY(ct_tensor_reshape(b, naxes, shape, err));
    if (ct_fill(p->bias_filler, b, &l->rng, "bias_filler", err))
      return ct_error_prefix(err, "layer \"%s\" (Scale)", l->name);
  }
  return CT_OK;
}

static ct_status scale_reshape(ct_layer *l, ct_error *err) {
  scale_priv *sp = l->priv;
  const Caffe__ScaleParameter *p = param_of(l);
  const ct_tensor *x = l->bottom[0], *s = l->nbottom > 1 ? l->bottom[1] : l->blobs[0];
  CT_TRY(ct_layer_broadcast_axes(l, x, s, p->axis, "scale", &sp->outer, &sp->dim, &sp->inner, err));
  char buf[128], buf2[128];
  if (sp->bias && !ct_tensor_same_shape(l->blobs[sp->bias_blob], s))
    return ct_layer_fail(l, err, CT_ESHAPE, "bias shape %s differs from scale shape %s",
                         ct_tensor_shape_str(l->blobs[sp->bias_blob], buf, sizeof buf),
                         ct_tensor_shape_str(s, buf2, sizeof buf2));
  if (l->top[0] != x) return ct_tensor_reshape_like(l->top[0], x, err);
  if (!sp->saved_x && !(sp->saved_x = ct_tensor_create())) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  ct_layer_plan_saved(l, sp->saved_x); /* only this layer's backward reads it */
  return ct_tensor_reshape_like(sp->saved_x, x, err);
}

/* Partition p's outer rows (outer / N per image) and its elements of x. */
static size_t outer_of(const ct_layer *l, const ct_part *p, size_t *first, size_t *n) {
  const scale_priv *sp = l->priv;
  const ct_tensor *x = l->bottom[0];
  ct_part_span(p, x, first, n);
  return p->whole ? sp->outer : sp->outer / (size_t)x->shape[0] * (size_t)(p->end - p->begin);
}

/* s on p's driver: bottom[1] whole, or blob 0. */
static ct_status operand(ct_layer *l, const ct_part *p, const float **s, ct_error *err) {
  if (l->nbottom == 1) return ct_read_param(l, p, 0, s, err);
  float *v;
  CT_TRY(ct_part_all(l, p, l->bottom[1], CT_DATA, CT_READ, &v, err));
  *s = v;
  return CT_OK;
}

static ct_status scale_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  scale_priv *sp = l->priv;
  const ct_driver *d = p->d;
  size_t first, n, outer = outer_of(l, p, &first, &n);
  const float *x, *s, *b = NULL;
  float *y;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(operand(l, p, &s, err));
  if (sp->bias) CT_TRY(ct_read_param(l, p, sp->bias_blob, &b, err));
  if (l->top[0] == l->bottom[0]) {
    float *saved;
    CT_TRY(ct_write(l, p, sp->saved_x, &saved, err));
    CT_TRY(d->ops->copy(d, saved + first, x + first, n * sizeof(float)));
    x = saved;
  }
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  return d->ops->scale_forward(d, outer, sp->dim, sp->inner, x + first, s, b, y + first);
}

static ct_status scale_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  scale_priv *sp = l->priv;
  const ct_driver *d = p->d;
  size_t first, n, outer = outer_of(l, p, &first, &n);
  const bool two = l->nbottom > 1;
  const float *s, *dy, *x = NULL;
  float *ds = NULL, *db = NULL, *dx = NULL;
  CT_TRY(operand(l, p, &s, err));
  if (two && l->propagate_down[1]) {
    CT_TRY(ct_part_all(l, p, l->bottom[1], CT_DIFF, CT_WRITE, &ds, err));
    CT_TRY(d->ops->memset(d, ds, 0, sp->dim * sizeof(float)));
  } else if (!two && l->param_propagate_down[0]) {
    CT_TRY(ct_part_param_grad(l, p, 0, &ds, err));
  }
  if (sp->bias && l->param_propagate_down[sp->bias_blob]) CT_TRY(ct_part_param_grad(l, p, sp->bias_blob, &db, err));
  /* the kernel reads x only for ds */
  if (ds) {
    CT_TRY(ct_read(l, p, l->top[0] == l->bottom[0] ? sp->saved_x : l->bottom[0], &x, err));
    x += first;
  }
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  if (l->propagate_down[0]) {
    CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
    dx += first;
  }
  /* the parameter gradients come first inside: in place, dx overwrites dy */
  return d->ops->scale_backward(d, outer, sp->dim, sp->inner, x, dy + first, s, ds, db, dx);
}

static void scale_destroy(ct_layer *l) {
  scale_priv *sp = l->priv;
  if (sp) ct_tensor_free(sp->saved_x);
  free(sp);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Scale = {
    .type = "Scale",
    .min_bottom = 1,
    .max_bottom = 2,
    .min_top = 1,
    .max_top = 1,
    .in_place = true,
    .has_backward = true,
    .splits = scale_splits,
    .gains = true,
    .kind = CT_WORK_MEMORY,
    .setup = scale_setup,
    .reshape = scale_reshape,
    .forward = scale_forward,
    .backward = scale_backward,
    .destroy = scale_destroy,
};
