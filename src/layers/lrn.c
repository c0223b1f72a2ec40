/* Local response normalisation (Caffe's "LRN"), y = x * s^-beta:
 *  ACROSS_CHANNELS: s = k + alpha/n * sum of x^2 over the n channels centred on x's (clipped);
 *  WITHIN_CHANNEL:  s = 1 + alpha/n^2 * sum of x^2 over the n x n spatial window centred on x's,
 *    clipped to the image. Caffe builds this one from AVE pooling of x^2 (pad (n-1)/2, stride 1,
 *    whose divisor is always n^2 there) and a Power layer with shift 1, so k plays no part.
 * The window is symmetric, so the gradient is
 *   dx = dy * s^-beta - (2 alpha beta / n or n^2) * x * sum over the window of dy * y / s. */
#include <stdlib.h>

#include "layers/layer.h"
#include "sched/partition.h"

typedef struct lrn_priv {
  bool across;
  int size;
  float alpha, beta, k;
  int N, C, H, W;
  float *scale; /* s, bottom-shaped */
  float *spow;  /* s^-beta, bottom-shaped */
  float *tmp;   /* per partition, tmp_each floats: WITHIN: one row-summed plane; ACROSS: one
                   dy*y/s channel stack */
  size_t tmp_each;
  size_t scale_cap, spow_cap, tmp_cap;
  ct_layer *l;  /* the region being run */
} lrn_priv;

static const Caffe__LRNParameter default_param = CAFFE__LRNPARAMETER__INIT;

static ct_status lrn_setup(ct_layer *l, ct_error *err) {
  const Caffe__LRNParameter *p = l->lp->lrn_param ? l->lp->lrn_param : &default_param;
  if (p->local_size > 65535)
    return ct_layer_fail(l, err, CT_EINVAL, "local_size %u is too large (at most 65535)", p->local_size);
  if (p->local_size % 2 == 0)
    return ct_layer_fail(l, err, CT_EINVAL, "LRN only supports odd values for local_size, got %u", p->local_size);
  if (p->norm_region != CAFFE__LRNPARAMETER__NORM_REGION__ACROSS_CHANNELS &&
      p->norm_region != CAFFE__LRNPARAMETER__NORM_REGION__WITHIN_CHANNEL)
    return ct_layer_fail(l, err, CT_EINVAL, "unknown norm_region %d", (int)p->norm_region);
  lrn_priv *lp = calloc(1, sizeof *lp);
  if (!lp) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = lp;
  lp->across = p->norm_region == CAFFE__LRNPARAMETER__NORM_REGION__ACROSS_CHANNELS;
  lp->size = (int)p->local_size;
  lp->alpha = p->alpha;
  lp->beta = p->beta;
  lp->k = p->k;
  return CT_OK;
}

static ct_status lrn_reshape(ct_layer *l, ct_error *err) {
  lrn_priv *lp = l->priv;
  const ct_tensor *x = l->bottom[0];
  char buf[128];
  if (x->naxes != 4)
    return ct_layer_fail(l, err, CT_ESHAPE, "input must have 4 axes (num, channels, height, width), got shape %s",
                         ct_tensor_shape_str(x, buf, sizeof buf));
  lp->N = x->shape[0], lp->C = x->shape[1], lp->H = x->shape[2], lp->W = x->shape[3];
  CT_TRY(ct_tensor_reshape_like(l->top[0], x, err));
  CT_TRY(ct_layer_grow(l, &lp->scale, &lp->scale_cap, x->count, err));
  CT_TRY(ct_layer_grow(l, &lp->spow, &lp->spow_cap, x->count, err));
  size_t plane = (size_t)lp->H * lp->W;
  lp->tmp_each = lp->across ? plane * lp->C : plane;
  return ct_layer_grow(l, &lp->tmp, &lp->tmp_cap, lp->tmp_each * (size_t)ct_parallel_parts(l), err);
}

static ct_lrn_geom geom_of(const lrn_priv *lp) {
  ct_lrn_geom g = {lp->across, lp->size, lp->alpha, lp->beta, lp->k, lp->C, lp->H, lp->W};
  return g;
}

/* Images are independent: forward and backward run over image ranges split across the net's
 * partitions, each with its own scratch, the driver normalising each range. */
static void forward_images(void *ctx, int part, size_t b0, size_t b1) {
  lrn_priv *lp = ctx;
  const ct_layer *l = lp->l;
  const ct_driver *d = ct_layer_driver(l);
  const ct_lrn_geom g = geom_of(lp);
  const size_t o = b0 * (size_t)lp->H * lp->W * lp->C;
  d->ops->lrn_forward(d, &g, b1 - b0, l->bottom[0]->data + o, l->top[0]->data + o, lp->scale + o, lp->spow + o,
                      lp->tmp + (size_t)part * lp->tmp_each);
}

static ct_status lrn_forward(ct_layer *l, ct_error *err) {
  (void)err;
  lrn_priv *lp = l->priv;
  lp->l = l;
  ct_parallel_for(l, (size_t)lp->N, 1, forward_images, lp);
  return CT_OK;
}

static void backward_images(void *ctx, int part, size_t b0, size_t b1) {
  lrn_priv *lp = ctx;
  const ct_layer *l = lp->l;
  const ct_driver *d = ct_layer_driver(l);
  const ct_lrn_geom g = geom_of(lp);
  const size_t o = b0 * (size_t)lp->H * lp->W * lp->C;
  d->ops->lrn_backward(d, &g, b1 - b0, l->bottom[0]->data + o, l->top[0]->data + o, l->top[0]->diff + o,
                       lp->scale + o, lp->spow + o, l->bottom[0]->diff + o, lp->tmp + (size_t)part * lp->tmp_each);
}

static void lrn_backward(ct_layer *l) {
  if (!l->propagate_down[0]) return;
  lrn_priv *lp = l->priv;
  lp->l = l;
  ct_parallel_for(l, (size_t)lp->N, 1, backward_images, lp);
}

static void lrn_destroy(ct_layer *l) {
  lrn_priv *lp = l->priv;
  if (lp) {
    ct_layer_release(l, lp->scale);
    ct_layer_release(l, lp->spow);
    ct_layer_release(l, lp->tmp);
  }
  free(lp);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_LRN = {
    .type = "LRN",
    .min_bottom = 1,
    .max_bottom = 1,
    .min_top = 1,
    .max_top = 1,
    .has_backward = true,
    .setup = lrn_setup,
    .reshape = lrn_reshape,
    .forward = lrn_forward,
    .backward = lrn_backward,
    .destroy = lrn_destroy,
};
