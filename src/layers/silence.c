/* Silence: consumes blobs nobody else reads, so that they are not net outputs. It has no tops;
 * backward gives its bottoms a zero gradient. */
#include "layers/layer.h"

static ct_status silence_setup(ct_layer *l, ct_error *err) {
  (void)l;
  (void)err;
  return CT_OK;
}

/* A caller that hands Silence tops anyway (the single-layer test harness always makes one) gets
 * them as constant zero scalars (zero-filled when allocated, never written) rather than unsized. */
static ct_status silence_reshape(ct_layer *l, ct_error *err) {
  for (int k = 0; k < l->ntop; k++) CT_TRY(ct_tensor_reshape(l->top[k], 0, NULL, err));
  return CT_OK;
}

static ct_status silence_forward(ct_layer *l, ct_error *err) {
  (void)l;
  (void)err;
  return CT_OK;
}

static void silence_backward(ct_layer *l) {
  const ct_driver *d = ct_layer_driver(l);
  for (int k = 0; k < l->nbottom; k++)
    if (l->propagate_down[k]) d->ops->memset(d, l->bottom[k]->diff, 0, l->bottom[k]->count * sizeof(float));
}

const ct_layer_ops ct_layer_Silence = {.type = "Silence",
                                       .min_bottom = 1,
                                       .max_bottom = -1,
                                       .min_top = 0,
                                       .max_top = 0,
                                       .has_backward = true,
                                       .setup = silence_setup,
                                       .reshape = silence_reshape,
                                       .forward = silence_forward,
                                       .backward = silence_backward};
