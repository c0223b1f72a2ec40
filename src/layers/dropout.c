/* Dropout (inverted): in TRAIN each element is kept with probability 1 - p and scaled by
 * 1 / (1 - p), so TEST is the identity. Each forward draws one seed from the layer's own rng
 * (its resumable state); each partition then draws its elements' part of the mask on its own
 * device (the driver's dropout_mask: a counter-based generator over the element index, the same
 * on every driver), so the mask never crosses to the host and does not depend on how the batch
 * is split. The mask is kept (as the multiplier 0 or 1 / (1 - p)) for backward. */
#include <stdlib.h>

#include "layers/layer.h"

typedef struct dropout {
  float ratio;     /* p: the probability of dropping */
  float scale;     /* 1 / (1 - p) */
  uint64_t seed;   /* this forward's */
  ct_tensor *mask; /* TRAIN: per element, 0 or scale; bottom-shaped, each partition's images
                      drawn and read on its device */
  int c0, cn, whole; /* a shard on dim 1: its channels of the whole blob's (whole 0: none) */
} dropout;

void ct_dropout_set_channels(ct_layer *l, int c0, int cn, int whole) {
  dropout *p = l->priv;
  p->c0 = c0, p->cn = cn, p->whole = whole;
}

/* A shard's mask: each image's elements are one run of the whole blob's indices (its channels
 * c0 .. c0 + cn of whole, each of `plane` elements), drawn there. */
static ct_status shard_mask(const ct_driver *d, const dropout *dp, const ct_tensor *x, size_t first, size_t n,
                            float *mw) {
  const size_t inner = ct_tensor_inner(x), plane = inner / (size_t)dp->cn;
  const size_t whole_inner = plane * (size_t)dp->whole, off = plane * (size_t)dp->c0;
  for (size_t img = first / inner; inner && img * inner < first + n; img++)
    CT_TRY(d->ops->dropout_mask(d, dp->seed, img * whole_inner + off, inner, dp->ratio, dp->scale, mw + img * inner));
  return CT_OK;
}

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
  if (!p->mask && !(p->mask = ct_tensor_create())) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  return ct_tensor_reshape_like(p->mask, l->bottom[0], err);
}

/* One seed per forward, from the layer's own stream, before the partitions run. */
static ct_status dropout_begin_forward(ct_layer *l, ct_error *err) {
  (void)err;
  if (l->phase != CAFFE__PHASE__TRAIN) return CT_OK;
  dropout *p = l->priv;
  p->seed = ct_rng_next(&l->rng);
  return CT_OK;
}

static ct_status dropout_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  dropout *dp = l->priv;
  const ct_driver *d = p->d;
  size_t first, n;
  ct_part_span(p, l->bottom[0], &first, &n);
  const float *x, *m;
  float *y;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  x += first;
  y += first;
  if (l->phase != CAFFE__PHASE__TRAIN) {
    if (y != x) CT_TRY(d->ops->copy(d, y, x, n * sizeof(float)));
    return CT_OK;
  }
  float *mw;
  CT_TRY(ct_write(l, p, dp->mask, &mw, err));
  if (dp->whole > 0)
    CT_TRY(shard_mask(d, dp, l->bottom[0], first, n, mw));
  else
    CT_TRY(d->ops->dropout_mask(d, dp->seed, first, n, dp->ratio, dp->scale, mw + first));
  m = mw;
  return d->ops->mul(d, n, x, m + first, y);
}

static ct_status dropout_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  if (!l->propagate_down[0]) return CT_OK;
  dropout *dp = l->priv;
  const ct_driver *d = p->d;
  size_t first, n;
  ct_part_span(p, l->bottom[0], &first, &n);
  const float *dy, *m;
  float *dx;
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  dy += first;
  dx += first;
  if (l->phase != CAFFE__PHASE__TRAIN) {
    if (dx != dy) CT_TRY(d->ops->copy(d, dx, dy, n * sizeof(float)));
    return CT_OK;
  }
  CT_TRY(ct_read(l, p, dp->mask, &m, err));
  return d->ops->mul(d, n, dy, m + first, dx);
}

static void dropout_destroy(ct_layer *l) {
  dropout *p = l->priv;
  if (!p) return;
  ct_tensor_free(p->mask);
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
                                       .splits = ct_layer_splits_always,
                                       .gains = true,
                                       .kind = CT_WORK_MEMORY,
                                       .setup = dropout_setup,
                                       .reshape = dropout_reshape,
                                       .begin_forward = dropout_begin_forward,
                                       .forward = dropout_forward,
                                       .backward = dropout_backward,
                                       .destroy = dropout_destroy};
