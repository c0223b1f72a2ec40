/* Crop (Caffe's "Crop"): bottom 0 cut to the shape of bottom 1 (the reference, whose values are
 * never read) on every axis from crop_param.axis on, starting at crop_param.offset: none (0),
 * one for all cropped axes, or one per cropped axis. The axes before `axis` keep bottom 0's
 * extent. Backward: bottom 0's gradient is the top's in the cropped window and 0 elsewhere; the
 * reference takes none (as in Caffe).
 *
 * The copies run plane by plane (the last two axes, a pitched 2-D copy each). With axis >= 1
 * image n of the top is cut from image n of bottom 0, so partitions split the batch. */
#include <stdlib.h>

#include "layers/layer.h"

typedef struct crop {
  int axis;                 /* canonical */
  size_t off[CT_MAX_AXES];  /* per axis of bottom 0 (0 before axis) */
} crop;

static const Caffe__CropParameter *params(const ct_layer *l) {
  static const Caffe__CropParameter dflt = CAFFE__CROP_PARAMETER__INIT;
  return l->lp->crop_param ? l->lp->crop_param : &dflt;
}

static bool crop_splits(const ct_layer *l) { return ct_tensor_axis(l->bottom[0], params(l)->axis) > 0; }

static ct_status crop_setup(ct_layer *l, ct_error *err) {
  crop *c = calloc(1, sizeof *c);
  if (!c) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = c;
  return CT_OK;
}

static ct_status crop_reshape(ct_layer *l, ct_error *err) {
  crop *c = l->priv;
  const Caffe__CropParameter *cp = params(l);
  const ct_tensor *x = l->bottom[0], *ref = l->bottom[1];
  char b0[128], b1[128];
  if (x->naxes != ref->naxes || x->naxes == 0)
    return ct_layer_fail(l, err, CT_ESHAPE, "the bottom (%s) and the reference (%s) must have the same number of axes",
                         ct_tensor_shape_str(x, b0, sizeof b0), ct_tensor_shape_str(ref, b1, sizeof b1));
  const int axis = ct_tensor_axis(x, cp->axis);
  if (axis < 0)
    return ct_layer_fail(l, err, CT_EINVAL, "axis %d is out of range for bottom shape %s", cp->axis,
                         ct_tensor_shape_str(x, b0, sizeof b0));
  const int ncrop = x->naxes - axis;
  if (cp->n_offset > 1 && (int)cp->n_offset != ncrop)
    return ct_layer_fail(l, err, CT_EINVAL,
                         "give one offset for all cropped axes or one per cropped axis: %zu offsets for %d axes "
                         "(from axis %d of %s)",
                         cp->n_offset, ncrop, axis, ct_tensor_shape_str(x, b0, sizeof b0));
  c->axis = axis;
  int shape[CT_MAX_AXES];
  for (int i = 0; i < x->naxes; i++) {
    if (i < axis) {
      c->off[i] = 0;
      shape[i] = x->shape[i];
      continue;
    }
    const uint32_t o = cp->n_offset == 0 ? 0 : cp->offset[cp->n_offset == 1 ? 0 : i - axis];
    if ((uint64_t)o + (uint64_t)ref->shape[i] > (uint64_t)x->shape[i])
      return ct_layer_fail(l, err, CT_ESHAPE,
                           "invalid crop in axis %d: offset %u plus the reference's %d passes the bottom's %d "
                           "(bottom %s, reference %s)",
                           i, o, ref->shape[i], x->shape[i], ct_tensor_shape_str(x, b0, sizeof b0),
                           ct_tensor_shape_str(ref, b1, sizeof b1));
    c->off[i] = o;
    shape[i] = ref->shape[i];
  }
  return ct_tensor_reshape(l->top[0], x->naxes, shape, err);
}

/* Moves the window between bottom 0 (big) and the top (small) for top indices with axis 0 in
 * [n0, n0 + nn): to the top (forward) or back into the bottom's gradient. Plane by plane: the
 * last two axes are one pitched copy (a 1-axis tensor is one row). */
static ct_status crop_move(const ct_layer *l, const ct_driver *d, int n0, int nn, float *big, float *small,
                           bool to_small) {
  const crop *c = l->priv;
  const ct_tensor *x = l->bottom[0], *y = l->top[0];
  const int A = x->naxes;
  const int rows_axis = A >= 2 ? A - 2 : -1; /* the plane's row axis (none for one axis) */
  const size_t W = (size_t)x->shape[A - 1], w = (size_t)y->shape[A - 1];
  const size_t rows = rows_axis >= 0 ? (size_t)y->shape[rows_axis] : 1;
  /* strides of both tensors */
  size_t xs[CT_MAX_AXES], ys[CT_MAX_AXES];
  xs[A - 1] = ys[A - 1] = 1;
  for (int i = A - 2; i >= 0; i--) {
    xs[i] = xs[i + 1] * (size_t)x->shape[i + 1];
    ys[i] = ys[i + 1] * (size_t)y->shape[i + 1];
  }
  /* the plane's corner in the bottom, then the prefix axes (0 .. A-3) counted like an odometer */
  size_t corner = c->off[A - 1] + (rows_axis >= 0 ? c->off[rows_axis] * W : 0);
  const int nprefix = A - 2 > 0 ? A - 2 : 0;
  int idx[CT_MAX_AXES] = {0};
  if (nprefix > 0) idx[0] = n0;
  const int end0 = nprefix > 0 ? n0 + nn : 1;
  if (nprefix == 0 && rows_axis == 0) { /* 2 axes: the partition's rows of the one plane */
    const size_t xo = (c->off[0] + (size_t)n0) * W + c->off[1], yo = (size_t)n0 * w;
    return to_small ? d->ops->copy_2d(d, (size_t)nn, w * sizeof(float), small + yo, w * sizeof(float), big + xo,
                                      W * sizeof(float))
                    : d->ops->copy_2d(d, (size_t)nn, w * sizeof(float), big + xo, W * sizeof(float), small + yo,
                                      w * sizeof(float));
  }
  if (A == 1) {
    const size_t xo = c->off[0] + (size_t)n0;
    return to_small ? d->ops->copy(d, small + n0, big + xo, (size_t)nn * sizeof(float))
                    : d->ops->copy(d, big + xo, small + n0, (size_t)nn * sizeof(float));
  }
  while (idx[0] < end0) {
    size_t xo = corner, yo = 0;
    for (int i = 0; i < nprefix; i++) {
      xo += (idx[i] + c->off[i]) * xs[i];
      yo += (size_t)idx[i] * ys[i];
    }
    CT_TRY(to_small ? d->ops->copy_2d(d, rows, w * sizeof(float), small + yo, w * sizeof(float), big + xo,
                                      W * sizeof(float))
                    : d->ops->copy_2d(d, rows, w * sizeof(float), big + xo, W * sizeof(float), small + yo,
                                      w * sizeof(float)));
    int k = nprefix - 1;
    for (; k > 0; k--) {
      if (++idx[k] < y->shape[k]) break;
      idx[k] = 0;
    }
    if (k == 0) idx[0]++;
  }
  return CT_OK;
}

static ct_status crop_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  const float *x;
  float *y;
  int n0, nn;
  ct_part_images(p, l->top[0], &n0, &nn);
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  return crop_move(l, p->d, n0, nn, (float *)x, y, true);
}

static ct_status crop_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  if (!l->propagate_down[0]) return CT_OK;
  const ct_driver *d = p->d;
  const float *dy;
  float *dx;
  int n0, nn;
  ct_part_images(p, l->top[0], &n0, &nn);
  size_t first, count;
  ct_part_span(p, l->bottom[0], &first, &count);
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  CT_TRY(d->ops->memset(d, dx + first, 0, count * sizeof(float)));
  return crop_move(l, d, n0, nn, dx, (float *)dy, false);
}

static void crop_destroy(ct_layer *l) {
  free(l->priv);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Crop = {.type = "Crop",
                                    .min_bottom = 2,
                                    .max_bottom = 2,
                                    .min_top = 1,
                                    .max_top = 1,
                                    .has_backward = true,
                                    .label_bottoms = 1u << 1,
                                    .splits = crop_splits,
                                    .gains = true,
                                    .kind = CT_WORK_MEMORY,
                                    .setup = crop_setup,
                                    .reshape = crop_reshape,
                                    .forward = crop_forward,
                                    .backward = crop_backward,
                                    .destroy = crop_destroy};
