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
  float *saved_x; /* in place: x, kept for the gradient of s */
  size_t saved_cap;
} scale_priv;

static const Caffe__ScaleParameter default_param = CAFFE__SCALE_PARAMETER__INIT;

static const Caffe__ScaleParameter *param_of(const ct_layer *l) {
  return l->lp->scale_param ? l->lp->scale_param : &default_param;
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
      for (size_t i = 0; i < l->blobs[0]->count; i++) l->blobs[0]->data[i] = 1.0f;
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
  return ct_layer_grow(l, &sp->saved_x, &sp->saved_cap, x->count, err);
}

static ct_status scale_forward(ct_layer *l, ct_error *err) {
  (void)err;
  scale_priv *sp = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  const float *x = l->bottom[0]->data, *s = l->nbottom > 1 ? l->bottom[1]->data : l->blobs[0]->data;
  const float *b = sp->bias ? l->blobs[sp->bias_blob]->data : NULL;
  if (l->top[0] == l->bottom[0]) {
    d->ops->copy(d, sp->saved_x, x, l->bottom[0]->count * sizeof(float));
    x = sp->saved_x;
  }
  d->ops->scale_forward(d, sp->outer, sp->dim, sp->inner, x, s, b, l->top[0]->data);
  return CT_OK;
}

static void scale_backward(ct_layer *l) {
  scale_priv *sp = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  const float *x = l->top[0] == l->bottom[0] ? sp->saved_x : l->bottom[0]->data;
  const bool two = l->nbottom > 1;
  const float *s = two ? l->bottom[1]->data : l->blobs[0]->data;
  float *ds = NULL;
  if (two && l->propagate_down[1]) {
    ds = l->bottom[1]->diff;
    d->ops->memset(d, ds, 0, sp->dim * sizeof(float));
  } else if (!two && l->param_propagate_down[0]) {
    ds = l->blobs[0]->diff;
  }
  float *db = sp->bias && l->param_propagate_down[sp->bias_blob] ? l->blobs[sp->bias_blob]->diff : NULL;
  /* the parameter gradients come first inside: in place, dx overwrites dy */
  d->ops->scale_backward(d, sp->outer, sp->dim, sp->inner, x, l->top[0]->diff, s, ds, db,
                         l->propagate_down[0] ? l->bottom[0]->diff : NULL);
}

static void scale_destroy(ct_layer *l) {
  scale_priv *sp = l->priv;
  if (sp) ct_layer_release(l, sp->saved_x);
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
    .setup = scale_setup,
    .reshape = scale_reshape,
    .forward = scale_forward,
    .backward = scale_backward,
    .destroy = scale_destroy,
};
