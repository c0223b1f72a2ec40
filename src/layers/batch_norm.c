/* BatchNorm (Caffe's): y = (x - mean) / sqrt(var + eps) per channel (axis 1), no scale or shift
 * (a Scale layer follows in Caffe nets). Blobs, as Caffe stores them: [0] the running mean sum,
 * [1] the running variance sum, [2] the scale factor (shape [1]); the statistics are the sums
 * divided by the factor. They are state, not parameters: param_propagate_down is false for all
 * three and their diffs are never written.
 *
 * TRAIN (use_global_stats false): batch statistics (the biased variance normalises) and, as
 * Caffe does, factor = factor * f + 1, mean_sum = mean + f * mean_sum,
 * var_sum = m/(m-1) * var + f * var_sum with f = moving_average_fraction, m = values per channel.
 * TEST (use_global_stats true, the default there): the stored statistics. */
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"

typedef struct bn_priv {
  bool global;
  float maf, eps;
  int C;
  size_t num, spatial;
  float *mean, *std;  /* C each */
  float *xnorm;       /* y, kept for backward (the top may be overwritten in place downstream) */
  size_t xnorm_cap;
} bn_priv;

static const Caffe__BatchNormParameter default_param = CAFFE__BATCH_NORM_PARAMETER__INIT;

static int channels_of(const ct_tensor *x) { return x->naxes == 1 ? 1 : x->shape[1]; }

static ct_status bn_setup(ct_layer *l, ct_error *err) {
  const Caffe__BatchNormParameter *p = l->lp->batch_norm_param ? l->lp->batch_norm_param : &default_param;
  const ct_tensor *x = l->bottom[0];
  char buf[128];
  if (x->naxes < 1)
    return ct_layer_fail(l, err, CT_ESHAPE, "bottom must have at least one axis, got shape %s",
                         ct_tensor_shape_str(x, buf, sizeof buf));
  if (!(p->eps > 0.0f))
    return ct_layer_fail(l, err, CT_EINVAL, "eps must be positive, got %g", p->eps);
  bn_priv *bp = calloc(1, sizeof *bp);
  if (!bp) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = bp;
  bp->global = p->has_use_global_stats ? p->use_global_stats : l->phase == CAFFE__PHASE__TEST;
  bp->maf = p->moving_average_fraction;
  bp->eps = p->eps;
  bp->C = channels_of(x);
  if (bp->C <= 0) return ct_layer_fail(l, err, CT_ESHAPE, "bottom has no channels");
  size_t cap = 0;
  CT_TRY(ct_layer_grow(l, &bp->mean, &cap, (size_t)bp->C, err));
  cap = 0;
  CT_TRY(ct_layer_grow(l, &bp->std, &cap, (size_t)bp->C, err));
  const ct_driver *d = ct_layer_driver(l);
  d->ops->memset(d, bp->mean, 0, (size_t)bp->C * sizeof(float));
  d->ops->memset(d, bp->std, 0, (size_t)bp->C * sizeof(float));
  CT_TRY(ct_layer_alloc_blobs(l, 3, err));
  int one = 1;
  CT_TRY(ct_tensor_reshape(l->blobs[0], 1, &bp->C, err));
  CT_TRY(ct_tensor_reshape(l->blobs[1], 1, &bp->C, err));
  CT_TRY(ct_tensor_reshape(l->blobs[2], 1, &one, err));
  for (int i = 0; i < 3; i++) {
    memset(l->blobs[i]->data, 0, l->blobs[i]->count * sizeof(float));
    l->param_propagate_down[i] = false;
  }
  return CT_OK;
}

static ct_status bn_reshape(ct_layer *l, ct_error *err) {
  bn_priv *bp = l->priv;
  const ct_tensor *x = l->bottom[0];
  char buf[128];
  if (x->naxes < 1 || channels_of(x) != bp->C)
    return ct_layer_fail(l, err, CT_ESHAPE, "bottom shape %s does not have the %d channels set up",
                         ct_tensor_shape_str(x, buf, sizeof buf), bp->C);
  bp->num = (size_t)x->shape[0];
  bp->spatial = bp->num ? x->count / (bp->num * (size_t)bp->C) : 0;
  if (l->top[0] != x) CT_TRY(ct_tensor_reshape_like(l->top[0], x, err));
  return ct_layer_grow(l, &bp->xnorm, &bp->xnorm_cap, x->count, err);
}

static ct_batchnorm params_of(const bn_priv *bp) {
  ct_batchnorm p = {bp->num, (size_t)bp->C, bp->spatial, bp->global, bp->maf, bp->eps};
  return p;
}

static ct_status bn_forward(ct_layer *l, ct_error *err) {
  (void)err;
  bn_priv *bp = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  const ct_batchnorm p = params_of(bp);
  d->ops->batchnorm_forward(d, &p, l->bottom[0]->data, l->top[0]->data, bp->xnorm, bp->mean, bp->std,
                            l->blobs[0]->data, l->blobs[1]->data, l->blobs[2]->data);
  return CT_OK;
}

static void bn_backward(ct_layer *l) {
  if (!l->propagate_down[0]) return;
  bn_priv *bp = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  const ct_batchnorm p = params_of(bp);
  /* dx may be dy (in place) */
  d->ops->batchnorm_backward(d, &p, l->top[0]->diff, bp->xnorm, bp->std, l->bottom[0]->diff);
}

static void bn_destroy(ct_layer *l) {
  bn_priv *bp = l->priv;
  if (bp) {
    ct_layer_release(l, bp->mean);
    ct_layer_release(l, bp->std);
    ct_layer_release(l, bp->xnorm);
  }
  free(bp);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_BatchNorm = {
    .type = "BatchNorm",
    .min_bottom = 1,
    .max_bottom = 1,
    .min_top = 1,
    .max_top = 1,
    .in_place = true,
    .has_backward = true,
    .setup = bn_setup,
    .reshape = bn_reshape,
    .forward = bn_forward,
    .backward = bn_backward,
    .destroy = bn_destroy,
};
