/* Slice: cuts its bottom along one axis (axis, or the legacy slice_dim) into its tops, at the
 * given slice_points (increasing, one fewer than the tops) or into equal parts. With a single
 * top the top views the bottom. */
#include <stdlib.h>

#include "layers/layer.h"

typedef struct slice {
  int axis; /* canonical, set in reshape */
} slice;

static const Caffe__SliceParameter *params(const ct_layer *l) {
  static const Caffe__SliceParameter dflt = CAFFE__SLICE_PARAMETER__INIT;
  return l->lp->slice_param ? l->lp->slice_param : &dflt;
}

/* The canonical slice axis for the bottom's shape, -1 when out of range. */
static int axis_of(const ct_layer *l) {
  const Caffe__SliceParameter *sp = params(l);
  const ct_tensor *b = l->bottom[0];
  if (sp->has_slice_dim) return sp->slice_dim < (uint32_t)b->naxes ? (int)sp->slice_dim : -1;
  return ct_tensor_axis(b, sp->axis);
}

/* Cut along an axis after the batch, each image's rows are the images' own: a range of images is
 * cut alone. Along the batch the tops take the bottom's images in turn: it runs whole. */
static bool slice_splits(const ct_layer *l) { return axis_of(l) > 0; }

static ct_status slice_setup(ct_layer *l, ct_error *err) {
  const Caffe__SliceParameter *sp = params(l);
  if (sp->has_axis && sp->has_slice_dim)
    return ct_layer_fail(l, err, CT_EINVAL, "give either axis or slice_dim, not both");
  if (sp->n_slice_point && sp->n_slice_point != (size_t)l->ntop - 1)
    return ct_layer_fail(l, err, CT_EINVAL, "%zu slice_point values need %zu tops, got %d", sp->n_slice_point,
                         sp->n_slice_point + 1, l->ntop);
  for (size_t i = 1; i < sp->n_slice_point; i++)
    if (sp->slice_point[i] <= sp->slice_point[i - 1])
      return ct_layer_fail(l, err, CT_EINVAL, "slice_point values must increase: %u follows %u", sp->slice_point[i],
                           sp->slice_point[i - 1]);
  if (sp->n_slice_point && sp->slice_point[0] == 0)
    return ct_layer_fail(l, err, CT_EINVAL, "slice_point values must be positive, got 0");
  slice *p = calloc(1, sizeof *p);
  if (!p) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = p;
  return CT_OK;
}

static ct_status slice_reshape(ct_layer *l, ct_error *err) {
  slice *p = l->priv;
  const Caffe__SliceParameter *sp = params(l);
  const ct_tensor *b = l->bottom[0];
  char sb[128];
  int axis = axis_of(l);
  if (axis < 0) {
    if (sp->has_slice_dim)
      return ct_layer_fail(l, err, CT_EINVAL, "slice_dim %u is out of range for a bottom of shape %s", sp->slice_dim,
                           ct_tensor_shape_str(b, sb, sizeof sb));
    return ct_layer_fail(l, err, CT_EINVAL, "axis %d is out of range for a bottom of shape %s", sp->axis,
                         ct_tensor_shape_str(b, sb, sizeof sb));
  }
  p->axis = axis;
  int dim = b->shape[axis];
  int shape[CT_MAX_AXES];
  for (int i = 0; i < b->naxes; i++) shape[i] = b->shape[i];
  if (sp->n_slice_point) {
    uint32_t last = sp->slice_point[sp->n_slice_point - 1];
    if (last > (uint32_t)dim)
      return ct_layer_fail(l, err, CT_EINVAL, "slice_point %u is beyond the size of axis %d (%d) of shape %s", last,
                           axis, dim, ct_tensor_shape_str(b, sb, sizeof sb));
    int prev = 0;
    for (int k = 0; k < l->ntop; k++) {
      int end = k < (int)sp->n_slice_point ? (int)sp->slice_point[k] : dim;
      shape[axis] = end - prev;
      CT_TRY(ct_tensor_reshape(l->top[k], b->naxes, shape, err));
      prev = end;
    }
  } else {
    if (dim % l->ntop)
      return ct_layer_fail(l, err, CT_EINVAL, "%d tops do not divide axis %d of size %d evenly (shape %s)", l->ntop,
                           axis, dim, ct_tensor_shape_str(b, sb, sizeof sb));
    shape[axis] = dim / l->ntop;
    for (int k = 0; k < l->ntop; k++) CT_TRY(ct_tensor_reshape(l->top[k], b->naxes, shape, err));
  }
  if (l->ntop == 1) ct_tensor_share(l->top[0], b);
  return CT_OK;
}

/* The data moves as `outer` rows per top; a top's row is shape[axis] * inner floats. A
 * partition moves its images' rows: outer / N of them per image. */
static size_t rows_of(const ct_part *p, const ct_tensor *t, int axis) {
  size_t outer = ct_tensor_count_range(t, 0, axis);
  return p->whole ? outer : outer / (size_t)t->shape[0] * (size_t)(p->end - p->begin);
}

static size_t first_of(const ct_part *p, const ct_tensor *t) {
  size_t first, n;
  ct_part_span(p, t, &first, &n);
  return first;
}

static ct_status slice_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  if (l->ntop == 1) return CT_OK;
  slice *sl = l->priv;
  ct_tensor *b = l->bottom[0];
  const ct_driver *d = p->d;
  size_t outer = rows_of(p, b, sl->axis), inner = ct_tensor_count_range(b, sl->axis + 1, b->naxes);
  size_t bottom_row = (size_t)b->shape[sl->axis] * inner, offset = 0;
  const float *x;
  CT_TRY(ct_read(l, p, b, &x, err));
  x += first_of(p, b);
  for (int k = 0; k < l->ntop; k++) {
    ct_tensor *t = l->top[k];
    size_t row = (size_t)t->shape[sl->axis] * inner;
    float *y;
    CT_TRY(ct_write(l, p, t, &y, err));
    CT_TRY(d->ops->copy_2d(d, outer, row * sizeof(float), y + first_of(p, t), row * sizeof(float), x + offset,
                           bottom_row * sizeof(float)));
    offset += row;
  }
  return CT_OK;
}

static ct_status slice_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  if (l->ntop == 1 || !l->propagate_down[0]) return CT_OK;
  slice *sl = l->priv;
  ct_tensor *b = l->bottom[0];
  const ct_driver *d = p->d;
  size_t outer = rows_of(p, b, sl->axis), inner = ct_tensor_count_range(b, sl->axis + 1, b->naxes);
  size_t bottom_row = (size_t)b->shape[sl->axis] * inner, offset = 0;
  float *dx;
  CT_TRY(ct_write_diff(l, p, b, &dx, err));
  dx += first_of(p, b);
  for (int k = 0; k < l->ntop; k++) {
    ct_tensor *t = l->top[k];
    size_t row = (size_t)t->shape[sl->axis] * inner;
    const float *dy;
    CT_TRY(ct_read_diff(l, p, t, &dy, err));
    CT_TRY(d->ops->copy_2d(d, outer, row * sizeof(float), dx + offset, bottom_row * sizeof(float), dy + first_of(p, t),
                           row * sizeof(float)));
    offset += row;
  }
  return CT_OK;
}

static void slice_destroy(ct_layer *l) {
  free(l->priv);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Slice = {.type = "Slice",
                                     .min_bottom = 1,
                                     .max_bottom = 1,
                                     .min_top = 1,
                                     .max_top = -1,
                                     .has_backward = true,
                                     .splits = slice_splits,
                                     .gains = true,
                                     .kind = CT_WORK_MEMORY,
                                     .setup = slice_setup,
                                     .reshape = slice_reshape,
                                     .forward = slice_forward,
                                     .backward = slice_backward,
                                     .destroy = slice_destroy};
