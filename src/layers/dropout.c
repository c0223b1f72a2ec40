/* Dropout (inverted): in TRAIN each element is kept with probability 1 - p and scaled by
 * 1 / (1 - p), so TEST is the identity. The mask is drawn from the layer's own rng in forward
 * and kept (as the multiplier 0 or 1 / (1 - p)) for backward. */
#include <string.h>

#include "layers/layer.h"
#include "layers/scratch.h"

typedef struct dropout {
  float ratio;     /* p: the probability of dropping */
  float scale;     /* 1 / (1 - p) */
  ct_scratch mask; /* per element: 0 or scale */
} dropout;

static ct_status dropout_setup(ct_layer *l, ct_error *err) {
  static const Caffe__DropoutParameter dflt = CAFFE__DROPOUT_PARAMETER__INIT;
  const Caffe__DropoutParameter *dp = l->lp->dropout_param ? l->lp->dropout_param : &dflt;
  if (!(dp->dropout_ratio >= 0 && dp->dropout_ratio < 1))
    return ct_layer_fail(l, err, CT_EINVAL, "dropout_ratio must be in [0, 1), got %g", dp->dropout_ratio);
  dropout *p = calloc(1, sizeof *p);
  if (!p) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  p->ratio = dp->dropout_ratio;
  p->scale = 1.0f / (1.0f - p->ratio);
  l->priv = p;
  return CT_OK;
}

static ct_status dropout_reshape(ct_layer *l, ct_error *err) {
  dropout *p = l->priv;
  if (l->top[0] != l->bottom[0]) CT_TRY(ct_tensor_reshape_like(l->top[0], l->bottom[0], err));
  if (l->phase == CAFFE__PHASE__TRAIN) return ct_scratch_reserve(&p->mask, l->bottom[0]->count, sizeof(float), l, err);
  return CT_OK;
}

static ct_status dropout_forward(ct_layer *l, ct_error *err) {
  (void)err;
  dropout *p = l->priv;
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data;
  size_t n = l->bottom[0]->count;
  if (l->phase != CAFFE__PHASE__TRAIN) {
    if (y != x) memcpy(y, x, n * sizeof(float));
    return CT_OK;
  }
  float *m = p->mask.p;
  for (size_t i = 0; i < n; i++) {
    m[i] = ct_rng_uniform01(&l->rng) >= p->ratio ? p->scale : 0.0f;
    y[i] = x[i] * m[i];
  }
  return CT_OK;
}

static void dropout_backward(ct_layer *l) {
  if (!l->propagate_down[0]) return;
  dropout *p = l->priv;
  const float *dy = l->top[0]->diff;
  float *dx = l->bottom[0]->diff;
  size_t n = l->bottom[0]->count;
  if (l->phase != CAFFE__PHASE__TRAIN) {
    if (dx != dy) memcpy(dx, dy, n * sizeof(float));
    return;
  }
  const float *m = p->mask.p;
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * m[i];
}

static void dropout_destroy(ct_layer *l) {
  dropout *p = l->priv;
  if (!p) return;
  ct_scratch_free(&p->mask);
  free(p);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Dropout = {.type = "Dropout",
                                       .min_bottom = 1,
                                       .max_bottom = 1,
                                       .min_top = 1,
                                       .max_top = 1,
                                       .in_place = true,
                                       .has_backward = true,
                                       .setup = dropout_setup,
                                       .reshape = dropout_reshape,
                                       .forward = dropout_forward,
                                       .backward = dropout_backward,
                                       .destroy = dropout_destroy};
