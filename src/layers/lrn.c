/* Local response normalisation (Caffe's "LRN"), y = x * s^-beta:
 *  ACROSS_CHANNELS: s = k + alpha/n * sum of x^2 over the n channels centred on x's (clipped);
 *  WITHIN_CHANNEL:  s = 1 + alpha/n^2 * sum of x^2 over the n x n spatial window centred on x's,
 *    clipped to the image. Caffe builds this one from AVE pooling of x^2 (pad (n-1)/2, stride 1,
 *    whose divisor is always n^2 there) and a Power layer with shift 1, so k plays no part.
 * The window is symmetric, so the gradient is
 *   dx = dy * s^-beta - (2 alpha beta / n or n^2) * x * sum over the window of dy * y / s. */
#include <stdlib.h>

#include "layers/layer.h"

typedef struct lrn_priv {
  bool across;
  int size;
  float alpha, beta, k;
  int N, C, H, W;
  /* kept from forward to backward, bottom-shaped, so each partition's images stay on its driver */
  ct_tensor *scale;    /* s */
  ct_tensor *spow;     /* s^-beta */
  ct_part_scratch tmp; /* per partition: WITHIN: one row-summed plane; ACROSS: one dy*y/s channel
                          stack */
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
  if (!lp->scale && !(lp->scale = ct_tensor_create())) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  if (!lp->spow && !(lp->spow = ct_tensor_create())) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  CT_TRY(ct_tensor_reshape_like(lp->scale, x, err));
  CT_TRY(ct_tensor_reshape_like(lp->spow, x, err));
  size_t plane = (size_t)lp->H * lp->W;
  size_t tmp_each = lp->across ? plane * lp->C : plane;
  return ct_part_scratch_reserve(&lp->tmp, l, tmp_each * sizeof(float), err);
}

static ct_lrn_geom geom_of(const lrn_priv *lp) {
  ct_lrn_geom g = {lp->across, lp->size, lp->alpha, lp->beta, lp->k, lp->C, lp->H, lp->W};
  return g;
}

/* Images are independent: a partition normalises its images on its driver, with its own
 * scratch. */
static ct_status lrn_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  lrn_priv *lp = l->priv;
  const ct_driver *d = p->d;
  const ct_lrn_geom g = geom_of(lp);
  int img0, nimg;
  size_t o, n;
  ct_part_images(p, l->bottom[0], &img0, &nimg);
  ct_part_span(p, l->bottom[0], &o, &n);
  const float *x;
  float *y, *s, *spow;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  CT_TRY(ct_write(l, p, lp->scale, &s, err));
  CT_TRY(ct_write(l, p, lp->spow, &spow, err));
  return d->ops->lrn_forward(d, &g, (size_t)nimg, x + o, y + o, s + o, spow + o, ct_part_scratch_of(&lp->tmp, p));
}

static ct_status lrn_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  if (!l->propagate_down[0]) return CT_OK;
  lrn_priv *lp = l->priv;
  const ct_driver *d = p->d;
  const ct_lrn_geom g = geom_of(lp);
  int img0, nimg;
  size_t o, n;
  ct_part_images(p, l->bottom[0], &img0, &nimg);
  ct_part_span(p, l->bottom[0], &o, &n);
  const float *x, *y, *dy, *s, *spow;
  float *dx;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_read(l, p, l->top[0], &y, err));
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  CT_TRY(ct_read(l, p, lp->scale, &s, err));
  CT_TRY(ct_read(l, p, lp->spow, &spow, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  return d->ops->lrn_backward(d, &g, (size_t)nimg, x + o, y + o, dy + o, s + o, spow + o, dx + o,
                              ct_part_scratch_of(&lp->tmp, p));
}

static void lrn_destroy(ct_layer *l) {
  lrn_priv *lp = l->priv;
  if (lp) {
    ct_tensor_free(lp->scale);
    ct_tensor_free(lp->spow);
    ct_part_scratch_free(&lp->tmp);
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
    .splits = ct_layer_splits_always,
    .gains = true,
    .kind = CT_WORK_MEMORY,
    .setup = lrn_setup,
    .reshape = lrn_reshape,
    .forward = lrn_forward,
    .backward = lrn_backward,
    .destroy = lrn_destroy,
};
