/* Split: hands one bottom to several consumers (the net inserts it where a blob fans out). The
 * tops view the bottom's data; each has its own diff, and backward sums them. */
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
    /* Data only: t->diff stays its own (it was sized by the reshape above). */
    ct_tensor_view(t, b->data, t->diff);
  }
  return CT_OK;
}

static ct_status split_forward(ct_layer *l, ct_error *err) {
  (void)l;
  (void)err;
  return CT_OK;
}

static void split_backward(ct_layer *l) {
  if (!l->propagate_down[0]) return;
  const ct_driver *d = ct_layer_driver(l);
  float *dx = l->bottom[0]->diff;
  size_t n = l->bottom[0]->count;
  d->ops->copy(d, dx, l->top[0]->diff, n * sizeof(float));
  for (int k = 1; k < l->ntop; k++) d->ops->add(d, n, dx, l->top[k]->diff, dx);
}

const ct_layer_ops ct_layer_Split = {.type = "Split",
                                     .min_bottom = 1,
                                     .max_bottom = 1,
                                     .min_top = 1,
                                     .max_top = -1,
                                     .has_backward = true,
                                     .setup = split_setup,
                                     .reshape = split_reshape,
                                     .forward = split_forward,
                                     .backward = split_backward};
