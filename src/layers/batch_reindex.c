/* BatchReindex (Caffe's "BatchReindex"): top[i] = bottom[permut[i]] for the M indices of the
 * second bottom, each an item of the first bottom's batch (N x ...); the top is M x the item's
 * shape. Backward sums: bottom's diff[j] = sum of top diff[i] over the i with permut[i] = j; the
 * indices take no gradient (as in Caffe).
 *
 * The indices steer the copies: they are read on the host (a counted copy when they live
 * elsewhere) and the items move with the driver's copy and axpy, on the plan's device. The top's
 * batch is not the bottom's, so the layer runs unsplit. */
#include <math.h>
#include <string.h>

#include "layers/layer.h"

static ct_status br_setup(ct_layer *l, ct_error *err) {
  (void)l, (void)err;
  return CT_OK;
}

static ct_status br_reshape(ct_layer *l, ct_error *err) {
  const ct_tensor *x = l->bottom[0], *idx = l->bottom[1];
  char b0[128], b1[128];
  if (x->naxes < 1)
    return ct_layer_fail(l, err, CT_ESHAPE, "the data bottom needs a batch axis, got %s",
                         ct_tensor_shape_str(x, b0, sizeof b0));
  if (idx->naxes != 1)
    return ct_layer_fail(l, err, CT_ESHAPE, "the index bottom must have one axis, got %s",
                         ct_tensor_shape_str(idx, b1, sizeof b1));
  int shape[CT_MAX_AXES];
  for (int i = 0; i < x->naxes; i++) shape[i] = x->shape[i];
  shape[0] = idx->shape[0];
  return ct_tensor_reshape(l->top[0], x->naxes, shape, err);
}

static ct_status read_indices(ct_layer *l, const float **idx, ct_error *err) {
  ct_tensor *t = l->bottom[1];
  float *h;
  CT_TRY(ct_tensor_deref(t, CT_DATA, &ct_mem_host, CT_READ, 0, t->count, l->place ? &l->place->stats : NULL, &h, err));
  const int N = l->bottom[0]->shape[0];
  for (size_t i = 0; i < t->count; i++)
    if (!(h[i] >= 0 && h[i] < (float)N) || h[i] != floorf(h[i]))
      return ct_layer_fail(l, err, CT_EINVAL, "index %g at position %zu is not an item of the batch [0, %d)", h[i], i,
                           N);
  *idx = h;
  return CT_OK;
}

static ct_status br_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  const ct_driver *d = p->d;
  const float *idx, *x;
  float *y;
  CT_TRY(read_indices(l, &idx, err));
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  const size_t inner = ct_tensor_inner(l->bottom[0]), M = l->bottom[1]->count;
  for (size_t i = 0; i < M; i++) CT_TRY(d->ops->copy(d, y + i * inner, x + (size_t)idx[i] * inner, inner * sizeof(float)));
  return CT_OK;
}

static ct_status br_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  const ct_driver *d = p->d;
  if (l->propagate_down[1]) { /* the indices take no gradient; keep their diff defined */
    float *di;
    CT_TRY(ct_write_diff(l, p, l->bottom[1], &di, err));
    CT_TRY(d->ops->memset(d, di, 0, l->bottom[1]->count * sizeof(float)));
  }
  if (!l->propagate_down[0]) return CT_OK;
  const float *idx, *dy;
  float *dx;
  CT_TRY(read_indices(l, &idx, err));
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  const size_t inner = ct_tensor_inner(l->bottom[0]), M = l->bottom[1]->count;
  CT_TRY(d->ops->memset(d, dx, 0, l->bottom[0]->count * sizeof(float)));
  for (size_t i = 0; i < M; i++) CT_TRY(d->ops->axpy(d, inner, 1.0f, dy + i * inner, dx + (size_t)idx[i] * inner));
  return CT_OK;
}

const ct_layer_ops ct_layer_BatchReindex = {.type = "BatchReindex",
                                            .min_bottom = 2,
                                            .max_bottom = 2,
                                            .min_top = 1,
                                            .max_top = 1,
                                            .has_backward = true,
                                            .label_bottoms = 1u << 1,
                                            .splits = NULL,
                                            .kind = CT_WORK_MEMORY,
                                            .setup = br_setup,
                                            .reshape = br_reshape,
                                            .forward = br_forward,
                                            .backward = br_backward};
