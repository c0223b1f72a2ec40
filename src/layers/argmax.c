/* ArgMax: the indices (or, with out_max_val, the values) of the top_k largest entries.
 *  - with axis: along that axis; the top has the bottom's shape with that axis set to top_k.
 *  - without: over all of each item's entries (axes 1...); the top is N x 1 x top_k (x 1 ...,
 *    at least 3 axes), or N x 2 x top_k with out_max_val: indices, then values.
 * Ordering as Caffe's: by value, descending; equal values by index, descending. No backward.
 * Every item ranks on its own, so the layer splits by image unless it ranks along axis 0. */
#include <stdlib.h>

#include "layers/layer.h"

typedef struct argmax {
  bool out_max_val;
  int top_k;
  bool has_axis;
  int axis;           /* canonical, when has_axis */
  ct_part_scratch entries; /* dim ct_rank_entry per partition */
} argmax;

static const Caffe__ArgMaxParameter *params(const ct_layer *l) {
  static const Caffe__ArgMaxParameter dflt = CAFFE__ARG_MAX_PARAMETER__INIT;
  return l->lp->argmax_param ? l->lp->argmax_param : &dflt;
}

/* Called before reshape, with the bottom shaped: the axis is canonicalised here itself. */
static bool argmax_splits(const ct_layer *l) {
  return !params(l)->has_axis || ct_tensor_axis(l->bottom[0], params(l)->axis) > 0;
}

static ct_status argmax_setup(ct_layer *l, ct_error *err) {
  const Caffe__ArgMaxParameter *ap = params(l);
  if (ap->top_k > (uint32_t)INT32_MAX)
    return ct_layer_fail(l, err, CT_EINVAL, "top_k %u is too large (at most %d)", ap->top_k, INT32_MAX);
  if (ap->top_k < 1)
    return ct_layer_fail(l, err, CT_EINVAL, "top_k must be at least 1, got %u", ap->top_k);
  argmax *p = calloc(1, sizeof *p);
  if (!p) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = p;
  p->out_max_val = ap->out_max_val;
  p->top_k = (int)ap->top_k;
  p->has_axis = ap->has_axis;
  return CT_OK;
}

/* dim: the entries ranked together; stride: the distance between two of them. */
static void geometry(const ct_layer *l, size_t *dim, size_t *stride) {
  const argmax *p = l->priv;
  const ct_tensor *b = l->bottom[0];
  if (p->has_axis) {
    *dim = (size_t)b->shape[p->axis];
    *stride = ct_tensor_count_range(b, p->axis + 1, b->naxes);
  } else {
    *dim = ct_tensor_count_range(b, 1, b->naxes);
    *stride = 1;
  }
}

static ct_status argmax_reshape(ct_layer *l, ct_error *err) {
  argmax *p = l->priv;
  const ct_tensor *b = l->bottom[0];
  char sb[128];
  int shape[CT_MAX_AXES];
  int naxes;
  if (p->has_axis) {
    int axis = ct_tensor_axis(b, params(l)->axis);
    if (axis < 0)
      return ct_layer_fail(l, err, CT_EINVAL, "axis %d is out of range for a bottom of shape %s", params(l)->axis,
                           ct_tensor_shape_str(b, sb, sizeof sb));
    p->axis = axis;
    if (p->top_k > b->shape[axis])
      return ct_layer_fail(l, err, CT_EINVAL, "top_k (%d) must not exceed the size of axis %d (%d)", p->top_k, axis,
                           b->shape[axis]);
    naxes = b->naxes;
    for (int i = 0; i < naxes; i++) shape[i] = b->shape[i];
    shape[axis] = p->top_k;
  } else {
    if (b->naxes < 1 || ct_tensor_count_range(b, 1, b->naxes) < (size_t)p->top_k)
      return ct_layer_fail(l, err, CT_EINVAL, "top_k (%d) must not exceed the number of entries per item of %s",
                           p->top_k, ct_tensor_shape_str(b, sb, sizeof sb));
    naxes = b->naxes < 3 ? 3 : b->naxes;
    for (int i = 0; i < naxes; i++) shape[i] = 1;
    shape[0] = b->shape[0];
    shape[1] = p->out_max_val ? 2 : 1;
    shape[2] = p->top_k;
  }
  CT_TRY(ct_tensor_reshape(l->top[0], naxes, shape, err));
  size_t dim, stride;
  geometry(l, &dim, &stride);
  if (dim > (size_t)-1 / sizeof(ct_rank_entry))
    return ct_layer_fail(l, err, CT_ENOMEM, "scratch buffer size overflows");
  return ct_part_scratch_reserve(&p->entries, l, dim * sizeof(ct_rank_entry), err);
}

static ct_status argmax_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  argmax *a = l->priv;
  const ct_driver *d = p->d;
  size_t dim, stride, xfirst, xn, yfirst, yn;
  geometry(l, &dim, &stride);
  ct_part_span(p, l->bottom[0], &xfirst, &xn);
  ct_part_span(p, l->top[0], &yfirst, &yn);
  /* stride is 0 only when the bottom is empty (an axis after the ranked one of size 0) */
  size_t outer = dim && stride ? xn / dim / stride : 0;
  const float *x;
  float *y;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  return d->ops->argmax(d, outer, dim, stride, a->top_k, a->out_max_val, a->has_axis, x + xfirst, y + yfirst,
                        ct_part_scratch_of(&a->entries, p));
}

static void argmax_destroy(ct_layer *l) {
  argmax *p = l->priv;
  if (!p) return;
  ct_part_scratch_free(&p->entries);
  free(p);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_ArgMax = {.type = "ArgMax",
                                      .min_bottom = 1,
                                      .max_bottom = 1,
                                      .min_top = 1,
                                      .max_top = 1,
                                      .has_backward = false,
                                      .splits = argmax_splits,
                                      .gains = true,
                                      .kind = CT_WORK_MEMORY,
                                      .setup = argmax_setup,
                                      .reshape = argmax_reshape,
                                      .forward = argmax_forward,
                                      .destroy = argmax_destroy};
