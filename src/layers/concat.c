/* Concat: joins its bottoms along one axis (axis, or the legacy concat_dim); all other axes must
 * agree. With a single bottom the top views it. When the memory planner has made a bottom view
 * its run of the top (its producer writes the top directly; its diff is the top's), that bottom
 * costs nothing in forward or backward. */
#include <stdlib.h>

#include "layers/concat.h"
#include "layers/layer.h"

typedef struct concat {
  int axis; /* canonical, set in reshape */
} concat;

static const Caffe__ConcatParameter *params(const ct_layer *l) {
  static const Caffe__ConcatParameter dflt = CAFFE__CONCAT_PARAMETER__INIT;
  return l->lp->concat_param ? l->lp->concat_param : &dflt;
}

/* The canonical concat axis for bottom 0's shape, -1 when out of range. */
static int axis_of(const ct_layer *l) {
  const Caffe__ConcatParameter *cp = params(l);
  const ct_tensor *b0 = l->bottom[0];
  if (cp->has_concat_dim) return cp->concat_dim < (uint32_t)b0->naxes ? (int)cp->concat_dim : -1;
  return ct_tensor_axis(b0, cp->axis);
}

/* Joined along an axis after the batch, each image's rows are the images' own: a range of images
 * joins alone. Along the batch the bottoms' images are the top's in turn: it runs whole. */
static bool concat_splits(const ct_layer *l) { return axis_of(l) > 0; }

static ct_status concat_setup(ct_layer *l, ct_error *err) {
  const Caffe__ConcatParameter *cp = params(l);
  if (cp->has_axis && cp->has_concat_dim)
    return ct_layer_fail(l, err, CT_EINVAL, "give either axis or concat_dim, not both");
  concat *p = calloc(1, sizeof *p);
  if (!p) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = p;
  return CT_OK;
}

static ct_status concat_reshape(ct_layer *l, ct_error *err) {
  concat *p = l->priv;
  const Caffe__ConcatParameter *cp = params(l);
  const ct_tensor *b0 = l->bottom[0];
  char s0[128], si[128];
  int axis = axis_of(l);
  if (axis < 0) {
    if (cp->has_concat_dim)
      return ct_layer_fail(l, err, CT_EINVAL, "concat_dim %u is out of range for bottom 0 of shape %s", cp->concat_dim,
                           ct_tensor_shape_str(b0, s0, sizeof s0));
    return ct_layer_fail(l, err, CT_EINVAL, "axis %d is out of range for bottom 0 of shape %s", cp->axis,
                         ct_tensor_shape_str(b0, s0, sizeof s0));
  }
  p->axis = axis;
  int shape[CT_MAX_AXES];
  for (int i = 0; i < b0->naxes; i++) shape[i] = b0->shape[i];
  for (int k = 1; k < l->nbottom; k++) {
    const ct_tensor *b = l->bottom[k];
    bool fits = b->naxes == b0->naxes;
    for (int i = 0; fits && i < b0->naxes; i++) fits = i == axis || b->shape[i] == b0->shape[i];
    if (!fits)
      return ct_layer_fail(l, err, CT_ESHAPE,
                           "bottom %d (%s) does not match bottom 0 (%s) on every axis but the concat axis %d", k,
                           ct_tensor_shape_str(b, si, sizeof si), ct_tensor_shape_str(b0, s0, sizeof s0), axis);
    if (b->shape[axis] > INT32_MAX - shape[axis])
      return ct_layer_fail(l, err, CT_ESHAPE, "the concatenated axis %d is too large", axis);
    shape[axis] += b->shape[axis];
  }
  CT_TRY(ct_tensor_reshape(l->top[0], b0->naxes, shape, err));
  if (l->nbottom == 1) ct_tensor_share(l->top[0], b0);
  return CT_OK;
}

/* The data moves as `outer` rows per bottom; a bottom's row is shape[axis] * inner floats. A
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

extern const ct_layer_ops ct_layer_Concat;

bool ct_concat_region(const ct_layer *l, int k, size_t *offset) {
  if (l->ops != &ct_layer_Concat || k < 0 || k >= l->nbottom) return false;
  const int axis = axis_of(l);
  if (axis < 0 || ct_tensor_count_range(l->top[0], 0, axis) != 1) return false;
  const size_t inner = ct_tensor_count_range(l->top[0], axis + 1, l->top[0]->naxes);
  *offset = 0;
  for (int j = 0; j < k; j++) *offset += (size_t)l->bottom[j]->shape[axis] * inner;
  return true;
}

/* Bottom k already lies in its run of the top on this side (the planner put it there). */
static bool in_place(const ct_layer *l, int k, ct_side side) {
  const ct_tensor *b = l->bottom[k], *t = l->top[0];
  size_t off;
  return b->st[side] && b->st[side] == t->st[side] && ct_concat_region(l, k, &off) &&
         b->off[side] == t->off[side] + off;
}

static ct_status concat_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  if (l->nbottom == 1) return CT_OK;
  concat *c = l->priv;
  ct_tensor *t = l->top[0];
  const ct_driver *d = p->d;
  size_t outer = rows_of(p, t, c->axis), inner = ct_tensor_count_range(t, c->axis + 1, t->naxes);
  size_t top_row = (size_t)t->shape[c->axis] * inner, offset = 0;
  int placed = 0;
  for (int k = 0; k < l->nbottom; k++) placed += in_place(l, k, CT_DATA);
  if (placed == l->nbottom) return CT_OK; /* the producers wrote the top */
  float *y;
  /* with some bottoms in place, the top's other runs must stay as their producers left them */
  CT_TRY(ct_part_io(l, p, t, CT_DATA, placed ? CT_READWRITE : CT_WRITE, &y, err));
  y += first_of(p, t);
  for (int k = 0; k < l->nbottom; k++) {
    ct_tensor *b = l->bottom[k];
    size_t row = (size_t)b->shape[c->axis] * inner;
    if (in_place(l, k, CT_DATA)) {
      offset += row;
      continue;
    }
    const float *x;
    CT_TRY(ct_read(l, p, b, &x, err));
    CT_TRY(d->ops->copy_2d(d, outer, row * sizeof(float), y + offset, top_row * sizeof(float), x + first_of(p, b),
                           row * sizeof(float)));
    offset += row;
  }
  return CT_OK;
}

static ct_status concat_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  if (l->nbottom == 1) return CT_OK;
  concat *c = l->priv;
  ct_tensor *t = l->top[0];
  const ct_driver *d = p->d;
  size_t outer = rows_of(p, t, c->axis), inner = ct_tensor_count_range(t, c->axis + 1, t->naxes);
  size_t top_row = (size_t)t->shape[c->axis] * inner, offset = 0;
  bool copies = false;
  for (int k = 0; k < l->nbottom; k++) copies |= l->propagate_down[k] && !in_place(l, k, CT_DIFF);
  if (!copies) return CT_OK;
  const float *dy;
  CT_TRY(ct_read_diff(l, p, t, &dy, err));
  dy += first_of(p, t);
  for (int k = 0; k < l->nbottom; k++) {
    ct_tensor *b = l->bottom[k];
    size_t row = (size_t)b->shape[c->axis] * inner;
    if (l->propagate_down[k] && !in_place(l, k, CT_DIFF)) { /* in place: the top's diff is the bottom's */
      float *dx;
      CT_TRY(ct_write_diff(l, p, b, &dx, err));
      CT_TRY(d->ops->copy_2d(d, outer, row * sizeof(float), dx + first_of(p, b), row * sizeof(float), dy + offset,
                             top_row * sizeof(float)));
    }
    offset += row;
  }
  return CT_OK;
}

static void concat_destroy(ct_layer *l) {
  free(l->priv);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Concat = {.type = "Concat",
                                      .min_bottom = 1,
                                      .max_bottom = -1,
                                      .min_top = 1,
                                      .max_top = 1,
                                      .has_backward = true,
                                      .splits = concat_splits,
                                      .gains = true,
                                      .kind = CT_WORK_MEMORY,
                                      .setup = concat_setup,
                                      .reshape = concat_reshape,
                                      .forward = concat_forward,
                                      .backward = concat_backward,
                                      .destroy = concat_destroy};
