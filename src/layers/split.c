/* Split: hands one bottom to several consumers (the net inserts it where a blob fans out). The
 * tops view the bottom's data (forward does nothing); each has its own diff, and backward sums
 * them (the memory planner may give the bottom's diff top 0's or top 1's storage). */
#include "layers/layer.h"

static ct_status split_setup(ct_layer *l, ct_error *err) {
  (void)l;
  (void)err;
  return CT_OK;
}

static ct_status split_reshape(ct_layer *l, ct_error *err) {
  const ct_tensor *b = l->bottom[0];
  for (int k = 0; k < l->ntop; k++) {
    ct_tensor *t = l->top[k];
    if (t == b) return ct_layer_fail(l, err, CT_EINVAL, "top %d is the bottom itself; Split cannot run in place", k);
    CT_TRY(ct_tensor_reshape_like(t, b, err));
    /* Data only: t's diff stays its own (it was sized by the reshape above). */
    ct_tensor_share_side(t, CT_DATA, b);
  }
  return CT_OK;
}

static ct_status split_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  (void)l;
  (void)p;
  (void)err;
  return CT_OK;
}

/* A partition sums its images' elements of the tops' diffs, in top order: dx = dy0 + dy1, then
 * dx += dy2, ... (one pass over memory per top after the first; the driver's add runs at memory
 * bandwidth). The sum's order never changes, so a planned net (whose bottom diff may be top 0's
 * own storage) adds the same floats in the same order. */
static ct_status split_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  if (!l->propagate_down[0]) return CT_OK;
  const ct_driver *d = p->d;
  size_t first, n;
  ct_part_span(p, l->bottom[0], &first, &n);
  const float *dy0, *dy;
  float *dx;
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy0, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err)); /* after the read: when dx is dy0 it stays */
  dx += first;
  dy0 += first;
  if (l->ntop == 1) {
    if (dx != dy0) CT_TRY(d->ops->copy(d, dx, dy0, n * sizeof(float)));
    return CT_OK;
  }
  CT_TRY(ct_read_diff(l, p, l->top[1], &dy, err));
  CT_TRY(d->ops->add(d, n, dy0, dy + first, dx));
  for (int k = 2; k < l->ntop; k++) {
    CT_TRY(ct_read_diff(l, p, l->top[k], &dy, err));
    CT_TRY(d->ops->add(d, n, dx, dy + first, dx));
  }
  return CT_OK;
}

const ct_layer_ops ct_layer_Split = {.type = "Split",
                                     .min_bottom = 1,
                                     .max_bottom = 1,
                                     .min_top = 1,
                                     .max_top = -1,
                                     .has_backward = true,
                                     .splits = ct_layer_splits_always,
                                     .gains = true,
                                     .kind = CT_WORK_MEMORY,
                                     .setup = split_setup,
                                     .reshape = split_reshape,
                                     .forward = split_forward,
                                     .backward = split_backward};
