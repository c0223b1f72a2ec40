/* Reshape: gives the bottom's data a new shape without moving it; the top views the bottom's
 * data and diff. reshape_param.shape replaces the axes [axis, axis + num_axes) of the bottom
 * (num_axes -1: to the end; a negative axis counts from past the end, so -1 appends). In the
 * new shape, 0 copies the bottom's size at that position and one -1 is inferred from the
 * count. */
#include <stdlib.h>

#include "layers/layer.h"

typedef struct reshape {
  int inferred; /* index of the -1 in the new shape, or -1 */
} reshape;

static const Caffe__ReshapeParameter *params(const ct_layer *l) {
  static const Caffe__ReshapeParameter dflt = CAFFE__RESHAPE_PARAMETER__INIT;
  return l->lp->reshape_param ? l->lp->reshape_param : &dflt;
}

static ct_status reshape_setup(ct_layer *l, ct_error *err) {
  const Caffe__ReshapeParameter *rp = params(l);
  size_t ndim = rp->shape ? rp->shape->n_dim : 0;
  const int64_t *dim = rp->shape ? rp->shape->dim : NULL;
  if (ndim > CT_MAX_AXES)
    return ct_layer_fail(l, err, CT_EINVAL, "the new shape has %zu axes; at most %d are supported", ndim, CT_MAX_AXES);
  if (rp->num_axes < -1)
    return ct_layer_fail(l, err, CT_EINVAL, "num_axes must be >= 0, or -1 for all, got %d", rp->num_axes);
  int inferred = -1;
  for (size_t i = 0; i < ndim; i++) {
    if (dim[i] == -1) {
      if (inferred >= 0)
        return ct_layer_fail(l, err, CT_EINVAL,
                             "the new shape has more than one -1 (axes %d and %zu); at most one may be inferred",
                             inferred, i);
      inferred = (int)i;
    } else if (dim[i] < -1 || dim[i] > INT32_MAX) {
      return ct_layer_fail(l, err, CT_EINVAL, "the new shape has size %lld at axis %zu; sizes are >= 0, or -1 to infer",
                           (long long)dim[i], i);
    }
  }
  reshape *p = calloc(1, sizeof *p);
  if (!p) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = p;
  p->inferred = inferred;
  return CT_OK;
}

static ct_status reshape_reshape(ct_layer *l, ct_error *err) {
  const reshape *p = l->priv;
  const Caffe__ReshapeParameter *rp = params(l);
  const ct_tensor *b = l->bottom[0];
  size_t ndim = rp->shape ? rp->shape->n_dim : 0;
  const int64_t *dim = rp->shape ? rp->shape->dim : NULL;
  char sb[128];
  if (l->top[0] == b) return ct_layer_fail(l, err, CT_EINVAL, "Reshape cannot run in place");
  int start = rp->axis >= 0 ? rp->axis : b->naxes + rp->axis + 1;
  if (start < 0 || start > b->naxes)
    return ct_layer_fail(l, err, CT_EINVAL, "axis %d is out of range for a bottom of shape %s", rp->axis,
                         ct_tensor_shape_str(b, sb, sizeof sb));
  int end = rp->num_axes == -1 ? b->naxes : start + rp->num_axes;
  if (end > b->naxes)
    return ct_layer_fail(l, err, CT_EINVAL, "axis %d + num_axes %d is out of range for a bottom of shape %s", rp->axis,
                         rp->num_axes, ct_tensor_shape_str(b, sb, sizeof sb));
  int naxes = b->naxes - (end - start) + (int)ndim;
  if (naxes > CT_MAX_AXES)
    return ct_layer_fail(l, err, CT_ESHAPE, "the top would have %d axes; at most %d are supported", naxes, CT_MAX_AXES);
  int shape[CT_MAX_AXES], n = 0;
  for (int i = 0; i < start; i++) shape[n++] = b->shape[i];
  for (size_t i = 0; i < ndim; i++) {
    if (dim[i] == 0) {
      if (start + (int)i >= b->naxes)
        return ct_layer_fail(l, err, CT_EINVAL,
                             "the new shape has a 0 at axis %zu, but the bottom (%s) has no axis %d to copy", i,
                             ct_tensor_shape_str(b, sb, sizeof sb), start + (int)i);
      shape[n++] = b->shape[start + i];
    } else {
      shape[n++] = (int)dim[i]; /* -1 is filled in below */
    }
  }
  for (int i = end; i < b->naxes; i++) shape[n++] = b->shape[i];
  if (p->inferred >= 0) {
    size_t known = 1;
    for (int i = 0; i < naxes; i++)
      if (i != start + p->inferred) known *= (size_t)shape[i];
    if (known == 0 || b->count % known)
      return ct_layer_fail(l, err, CT_ESHAPE,
                           "cannot infer the -1: the bottom's count %zu is not a multiple of %zu (shape %s)", b->count,
                           known, ct_tensor_shape_str(b, sb, sizeof sb));
    if (b->count / known > INT32_MAX) return ct_layer_fail(l, err, CT_ESHAPE, "the inferred axis is too large");
    shape[start + p->inferred] = (int)(b->count / known);
  }
  size_t count = 1;
  for (int i = 0; i < naxes; i++) count *= (size_t)shape[i];
  if (count != b->count)
    return ct_layer_fail(l, err, CT_ESHAPE, "the new shape holds %zu values but the bottom (%s) holds %zu", count,
                         ct_tensor_shape_str(b, sb, sizeof sb), b->count);
  CT_TRY(ct_tensor_reshape(l->top[0], naxes, shape, err));
  ct_tensor_share(l->top[0], b);
  return CT_OK;
}

static ct_status reshape_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  (void)l;
  (void)p;
  (void)err;
  return CT_OK;
}

static ct_status reshape_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  (void)l;
  (void)p;
  (void)err;
  return CT_OK;
}

static void reshape_destroy(ct_layer *l) {
  free(l->priv);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Reshape = {.type = "Reshape",
                                       .min_bottom = 1,
                                       .max_bottom = 1,
                                       .min_top = 1,
                                       .max_top = 1,
                                       .has_backward = true,
                                       .splits = ct_layer_splits_always,
                                       .gains = false,
                                       .kind = CT_WORK_MEMORY,
                                       .setup = reshape_setup,
                                       .reshape = reshape_reshape,
                                       .forward = reshape_forward,
                                       .backward = reshape_backward,
                                       .destroy = reshape_destroy};
