/* Dropout (inverted): in TRAIN each element is kept with probability 1 - p and scaled by
 * 1 / (1 - p), so TEST is the identity. The mask is drawn from the layer's own rng in forward
 * and kept (as the multiplier 0 or 1 / (1 - p)) for backward. */
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/scratch.h"

typedef struct dropout {
  float ratio;      /* p: the probability of dropping */
  float scale;      /* 1 / (1 - p) */
  ct_scratch mask;  /* per element: 0 or scale (driver memory) */
  float *host_mask; /* where it is drawn */
  size_t host_cap;
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
  if (l->phase != CAFFE__PHASE__TRAIN) return CT_OK;
  size_t n = l->bottom[0]->count;
  CT_TRY(ct_scratch_reserve(&p->mask, n, sizeof(float), l, err));
  if (n > p->host_cap || !p->host_mask) {
    float *m = malloc((n ? n : 1) * sizeof(float));
    if (!m) return ct_layer_fail(l, err, CT_ENOMEM, "cannot allocate %zu floats", n);
    free(p->host_mask);
    p->host_mask = m;
    p->host_cap = n;
  }
  return CT_OK;
}

/* The mask is drawn from the layer's own random stream (on the host: the stream is part of the
 * layer's resumable state) and applied by the driver. */
static ct_status dropout_forward(ct_layer *l, ct_error *err) {
  (void)err;
  dropout *p = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data;
  size_t n = l->bottom[0]->count;
  if (l->phase != CAFFE__PHASE__TRAIN) {
    if (y != x) d->ops->copy(d, y, x, n * sizeof(float));
    return CT_OK;
  }
  float *m = p->host_mask;
  for (size_t i = 0; i < n; i++) m[i] = ct_rng_uniform01(&l->rng) >= p->ratio ? p->scale : 0.0f;
  d->ops->upload(d, p->mask.p, m, n * sizeof(float));
  d->ops->mul(d, n, x, p->mask.p, y);
  return CT_OK;
}

static void dropout_backward(ct_layer *l) {
  if (!l->propagate_down[0]) return;
  dropout *p = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  const float *dy = l->top[0]->diff;
  float *dx = l->bottom[0]->diff;
  size_t n = l->bottom[0]->count;
  if (l->phase != CAFFE__PHASE__TRAIN) {
    if (dx != dy) d->ops->copy(d, dx, dy, n * sizeof(float));
    return;
  }
  d->ops->mul(d, n, dy, p->mask.p, dx);
}

static void dropout_destroy(ct_layer *l) {
  dropout *p = l->priv;
  if (!p) return;
  ct_scratch_free(&p->mask);
  free(p->host_mask);
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
