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
  /* per partition, on its driver: mean then std (C each). Each partition computes its own from
   * the stored statistics (global), or the one whole partition from the batch; backward reads
   * the std its forward left. */
  ct_part_scratch stats;
  ct_tensor *xnorm; /* y, kept for backward (the top may be overwritten in place downstream);
                       bottom-shaped, so each partition keeps its images */
} bn_priv;

static const Caffe__BatchNormParameter default_param = CAFFE__BATCH_NORM_PARAMETER__INIT;

static int channels_of(const ct_tensor *x) { return x->naxes == 1 ? 1 : x->shape[1]; }

/* With the stored statistics every image is normalised alone; batch statistics reduce over the
 * batch, so the layer runs whole. */
static bool bn_splits(const ct_layer *l) { return ((const bn_priv *)l->priv)->global; }

static ct_status bn_setup(ct_layer *l, ct_error *err) {
  const Caffe__BatchNormParameter *p = l->lp->batch_norm_param ? l->lp->batch_norm_param : &default_param;
  const ct_tensor *x = l->bottom[0];
  char buf[128];
  if (x->naxes < 1)
    return ct_layer_fail(l, err, CT_ESHAPE, "bottom must have at least one axis, got shape %s",
                         ct_tensor_shape_str(x, buf, sizeof buf));
  if (!(p->eps > 0.0f)) return ct_layer_fail(l, err, CT_EINVAL, "eps must be positive, got %g", p->eps);
  bn_priv *bp = calloc(1, sizeof *bp);
  if (!bp) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = bp;
  bp->global = p->has_use_global_stats ? p->use_global_stats : l->phase == CAFFE__PHASE__TEST;
  bp->maf = p->moving_average_fraction;
  bp->eps = p->eps;
  bp->C = channels_of(x);
  if (bp->C <= 0) return ct_layer_fail(l, err, CT_ESHAPE, "bottom has no channels");
  CT_TRY(ct_layer_alloc_blobs(l, 3, err));
  int one = 1;
  CT_TRY(ct_tensor_reshape(l->blobs[0], 1, &bp->C, err));
  CT_TRY(ct_tensor_reshape(l->blobs[1], 1, &bp->C, err));
  CT_TRY(ct_tensor_reshape(l->blobs[2], 1, &one, err));
  for (int i = 0; i < 3; i++) {
    float *v;
    CT_TRY(ct_tensor_host(l->blobs[i], CT_DATA, CT_WRITE, &v, err));
    memset(v, 0, l->blobs[i]->count * sizeof(float));
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
  if (!bp->xnorm && !(bp->xnorm = ct_tensor_create())) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  CT_TRY(ct_tensor_reshape_like(bp->xnorm, x, err));
  ct_layer_plan_saved(l, bp->xnorm); /* only this layer's backward reads it */
  return ct_part_scratch_reserve(&bp->stats, l, 2 * (size_t)bp->C * sizeof(float), err);
}

/* Partition p's geometry (its images) and its first element of x. */
static ct_batchnorm params_of(const bn_priv *bp, const ct_layer *l, const ct_part *p, size_t *first) {
  int img0, nimg;
  size_t n;
  ct_part_images(p, l->bottom[0], &img0, &nimg);
  ct_part_span(p, l->bottom[0], first, &n);
  ct_batchnorm bn = {(size_t)nimg, (size_t)bp->C, bp->spatial, bp->global, bp->maf, bp->eps};
  return bn;
}

static ct_status bn_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  bn_priv *bp = l->priv;
  const ct_driver *d = p->d;
  size_t first;
  const ct_batchnorm bn = params_of(bp, l, p, &first);
  float *mean = ct_part_scratch_of(&bp->stats, p), *std = mean + bp->C;
  /* the stored statistics are only read with global stats; batch mode updates them (whole) */
  const ct_access run = bp->global ? CT_READ : CT_READWRITE;
  const float *x;
  float *y, *xnorm, *run_mean, *run_var, *run_factor;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_part_all(l, p, l->blobs[0], CT_DATA, run, &run_mean, err));
  CT_TRY(ct_part_all(l, p, l->blobs[1], CT_DATA, run, &run_var, err));
  CT_TRY(ct_part_all(l, p, l->blobs[2], CT_DATA, run, &run_factor, err));
  /* xnorm is for a backward that runs (BatchNorm learns nothing): without one, nothing is kept
   * and the stored statistics make y one affine pass */
  xnorm = NULL;
  if (l->propagate_down[0]) {
    CT_TRY(ct_write(l, p, bp->xnorm, &xnorm, err));
    xnorm += first;
  }
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  return d->ops->batchnorm_forward(d, &bn, x + first, y + first, xnorm, mean, std, run_mean, run_var, run_factor);
}

static ct_status bn_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  if (!l->propagate_down[0]) return CT_OK;
  bn_priv *bp = l->priv;
  const ct_driver *d = p->d;
  size_t first;
  const ct_batchnorm bn = params_of(bp, l, p, &first);
  const float *std = (const float *)ct_part_scratch_of(&bp->stats, p) + bp->C;
  const float *dy, *xnorm;
  float *dx;
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  CT_TRY(ct_read(l, p, bp->xnorm, &xnorm, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  /* dx may be dy (in place) */
  return d->ops->batchnorm_backward(d, &bn, dy + first, xnorm + first, std, dx + first);
}

static void bn_destroy(ct_layer *l) {
  bn_priv *bp = l->priv;
  if (bp) {
    ct_part_scratch_free(&bp->stats);
    ct_tensor_free(bp->xnorm);
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
    .splits = bn_splits,
    .gains = true,
    .kind = CT_WORK_MEMORY,
    .setup = bn_setup,
    .reshape = bn_reshape,
    .forward = bn_forward,
    .backward = bn_backward,
    .destroy = bn_destroy,
};
