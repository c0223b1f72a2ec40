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

static ct_status silence_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  (void)l;
  (void)p;
  (void)err;
  return CT_OK;
}

static ct_status silence_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  const ct_driver *d = p->d;
  for (int k = 0; k < l->nbottom; k++) {
    if (!l->propagate_down[k]) continue;
    size_t first, n;
    float *dx;
    ct_part_span(p, l->bottom[k], &first, &n);
    CT_TRY(ct_write_diff(l, p, l->bottom[k], &dx, err));
    CT_TRY(d->ops->memset(d, dx + first, 0, n * sizeof(float)));
  }
  return CT_OK;
}

const ct_layer_ops ct_layer_Silence = {.type = "Silence",
                                       .min_bottom = 1,
                                       .max_bottom = -1,
                                       .min_top = 0,
                                       .max_top = 0,
                                       .has_backward = true,
                                       .splits = ct_layer_splits_always,
                                       .gains = false,
                                       .kind = CT_WORK_MEMORY,
                                       .setup = silence_setup,
                                       .reshape = silence_reshape,
                                       .forward = silence_forward,
                                       .backward = silence_backward};
