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
#include <math.h>
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
  bp->mean = calloc((size_t)bp->C, sizeof(float));
  bp->std = calloc((size_t)bp->C, sizeof(float));
  if (!bp->mean || !bp->std) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
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
  if (x->count > bp->xnorm_cap) {
    float *b = malloc(x->count * sizeof(float));
    if (!b) return ct_layer_fail(l, err, CT_ENOMEM, "cannot allocate %zu floats", x->count);
    free(bp->xnorm);
    bp->xnorm = b;
    bp->xnorm_cap = x->count;
  }
  return CT_OK;
}

static ct_status bn_forward(ct_layer *l, ct_error *err) {
  (void)err;
  bn_priv *bp = l->priv;
  const size_t C = (size_t)bp->C, S = bp->spatial, N = bp->num;
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data;
  const double m = (double)(N * S);
  if (bp->global) {
    const float f = l->blobs[2]->data[0], sf = f == 0.0f ? 0.0f : 1.0f / f;
    for (size_t c = 0; c < C; c++) {
      bp->mean[c] = sf * l->blobs[0]->data[c];
      bp->std[c] = sqrtf(sf * l->blobs[1]->data[c] + bp->eps);
    }
  } else {
    for (size_t c = 0; c < C; c++) {
      double s = 0.0;
      for (size_t n = 0; n < N; n++) {
        const float *restrict xc = x + (n * C + c) * S;
        for (size_t i = 0; i < S; i++) s += xc[i];
      }
      bp->mean[c] = m > 0 ? (float)(s / m) : 0.0f;
      double v = 0.0;
      for (size_t n = 0; n < N; n++) {
        const float *restrict xc = x + (n * C + c) * S;
        const float mu = bp->mean[c];
        for (size_t i = 0; i < S; i++) v += (double)(xc[i] - mu) * (xc[i] - mu);
      }
      float var = m > 0 ? (float)(v / m) : 0.0f;
      bp->std[c] = sqrtf(var + bp->eps);
      const float corr = m > 1 ? (float)(m / (m - 1)) : 1.0f;
      l->blobs[0]->data[c] = bp->mean[c] + bp->maf * l->blobs[0]->data[c];
      l->blobs[1]->data[c] = corr * var + bp->maf * l->blobs[1]->data[c];
    }
    l->blobs[2]->data[0] = l->blobs[2]->data[0] * bp->maf + 1.0f;
  }
  for (size_t n = 0; n < N; n++)
    for (size_t c = 0; c < C; c++) {
      const float *xc = x + (n * C + c) * S; /* may be yc (in place) */
      float *yc = y + (n * C + c) * S, *restrict zc = bp->xnorm + (n * C + c) * S;
      const float mu = bp->mean[c], inv = 1.0f / bp->std[c];
      for (size_t i = 0; i < S; i++) {
        const float v = (xc[i] - mu) * inv;
        zc[i] = v;
        yc[i] = v;
      }
    }
  return CT_OK;
}

static void bn_backward(ct_layer *l) {
  if (!l->propagate_down[0]) return;
  bn_priv *bp = l->priv;
  const size_t C = (size_t)bp->C, S = bp->spatial, N = bp->num;
  const float *dy = l->top[0]->diff, *z = bp->xnorm;
  float *dx = l->bottom[0]->diff; /* may be dy (in place): each element is read before it is written */
  const double m = (double)(N * S);
  for (size_t c = 0; c < C; c++) {
    const float inv = 1.0f / bp->std[c];
    float a = 0.0f, b = 0.0f;
    if (!bp->global && m > 0) {
      /* dx = (dy - mean(dy) - mean(dy * y) * y) / std */
      double sa = 0.0, sb = 0.0;
      for (size_t n = 0; n < N; n++) {
        const float *dc = dy + (n * C + c) * S, *zc = z + (n * C + c) * S;
        for (size_t i = 0; i < S; i++) {
          sa += dc[i];
          sb += (double)dc[i] * zc[i];
        }
      }
      a = (float)(sa / m);
      b = (float)(sb / m);
    }
    for (size_t n = 0; n < N; n++) {
      const float *dc = dy + (n * C + c) * S, *zc = z + (n * C + c) * S;
      float *xc = dx + (n * C + c) * S;
      for (size_t i = 0; i < S; i++) xc[i] = (dc[i] - a - b * zc[i]) * inv;
    }
  }
}

static void bn_destroy(ct_layer *l) {
  bn_priv *bp = l->priv;
  if (bp) {
    free(bp->mean);
    free(bp->std);
    free(bp->xnorm);
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
