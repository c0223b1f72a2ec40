/* Local response normalisation (Caffe's "LRN"), y = x * s^-beta:
 *  ACROSS_CHANNELS: s = k + alpha/n * sum of x^2 over the n channels centred on x's (clipped);
 *  WITHIN_CHANNEL:  s = 1 + alpha/n^2 * sum of x^2 over the n x n spatial window centred on x's,
 *    clipped to the image. Caffe builds this one from AVE pooling of x^2 (pad (n-1)/2, stride 1,
 *    whose divisor is always n^2 there) and a Power layer with shift 1, so k plays no part.
 * The window is symmetric, so the gradient is
 *   dx = dy * s^-beta - (2 alpha beta / n or n^2) * x * sum over the window of dy * y / s. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "sched/partition.h"

typedef struct lrn_priv {
  bool across;
  int size, pre_pad;
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
  if (p->local_size % 2 == 0 || p->local_size > 65535)
    return ct_layer_fail(l, err, CT_EINVAL, "LRN only supports odd values for local_size, got %u", p->local_size);
  if (p->norm_region != CAFFE__LRNPARAMETER__NORM_REGION__ACROSS_CHANNELS &&
      p->norm_region != CAFFE__LRNPARAMETER__NORM_REGION__WITHIN_CHANNEL)
    return ct_layer_fail(l, err, CT_EINVAL, "unknown norm_region %d", (int)p->norm_region);
  lrn_priv *lp = calloc(1, sizeof *lp);
  if (!lp) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = lp;
  lp->across = p->norm_region == CAFFE__LRNPARAMETER__NORM_REGION__ACROSS_CHANNELS;
  lp->size = (int)p->local_size;
  lp->pre_pad = (lp->size - 1) / 2;
  lp->alpha = p->alpha;
  lp->beta = p->beta;
  lp->k = p->k;
  return CT_OK;
}

static ct_status grow(const ct_layer *l, float **buf, size_t *cap, size_t need, ct_error *err) {
  if (need <= *cap) return CT_OK;
  float *b = malloc(need * sizeof(float));
  if (!b) return ct_layer_fail(l, err, CT_ENOMEM, "cannot allocate %zu floats", need);
  free(*buf);
  *buf = b;
  *cap = need;
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
  CT_TRY(grow(l, &lp->scale, &lp->scale_cap, x->count, err));
  CT_TRY(grow(l, &lp->spow, &lp->spow_cap, x->count, err));
  size_t plane = (size_t)lp->H * lp->W;
  lp->tmp_each = lp->across ? plane * lp->C : plane;
  return grow(l, &lp->tmp, &lp->tmp_cap, lp->tmp_each * (size_t)ct_parallel_parts(l), err);
}

/* out[c] = sum of in[c'] over |c' - c| <= r, c' in [0, C), for C channel planes of `plane`. */
static void window_sum_channels(const float *restrict in, float *restrict out, int C, size_t plane, int r,
                                float scale, float shift) {
  for (int c = 0; c < C; c++) {
    float *restrict o = out + c * plane;
    for (size_t i = 0; i < plane; i++) o[i] = 0.0f;
    int lo = c - r > 0 ? c - r : 0, hi = c + r < C - 1 ? c + r : C - 1;
    for (int cc = lo; cc <= hi; cc++) {
      const float *restrict v = in + cc * plane;
      for (size_t i = 0; i < plane; i++) o[i] += v[i];
    }
    for (size_t i = 0; i < plane; i++) o[i] = shift + scale * o[i];
  }
}

/* out = shift + scale * (box sum of in over (2r+1)^2, clipped), one H x W plane; tmp holds a plane.
 * in may equal out: in is read completely (into tmp) before out is written. */
static void window_sum_plane(const float *in, float *out, float *restrict tmp, int H, int W,
                             int r, float scale, float shift) {
  for (int h = 0; h < H; h++) {
    const float *restrict row = in + (size_t)h * W;
    float *restrict t = tmp + (size_t)h * W;
    for (int w = 0; w < W; w++) {
      int lo = w - r > 0 ? w - r : 0, hi = w + r < W - 1 ? w + r : W - 1;
      float s = 0.0f;
      for (int c = lo; c <= hi; c++) s += row[c];
      t[w] = s;
    }
  }
  for (int h = 0; h < H; h++) {
    float *restrict o = out + (size_t)h * W;
    int lo = h - r > 0 ? h - r : 0, hi = h + r < H - 1 ? h + r : H - 1;
    for (int w = 0; w < W; w++) o[w] = 0.0f;
    for (int hh = lo; hh <= hi; hh++) {
      const float *restrict t = tmp + (size_t)hh * W;
      for (int w = 0; w < W; w++) o[w] += t[w];
    }
    for (int w = 0; w < W; w++) o[w] = shift + scale * o[w];
  }
}

/* out = s^-beta, with the common exponents (Caffe's default 0.75) as vectorisable square roots */
static void neg_pow(const float *restrict s, float *restrict out, size_t n, float beta) {
  if (beta == 0.75f) {
    for (size_t i = 0; i < n; i++) {
      const float r = sqrtf(s[i]);
      out[i] = 1.0f / (r * sqrtf(r));
    }
  } else if (beta == 0.5f) {
    for (size_t i = 0; i < n; i++) out[i] = 1.0f / sqrtf(s[i]);
  } else if (beta == 1.0f) {
    for (size_t i = 0; i < n; i++) out[i] = 1.0f / s[i];
  } else {
    for (size_t i = 0; i < n; i++) out[i] = powf(s[i], -beta);
  }
}

/* Images are independent: forward and backward run over image ranges split across the net's
 * partitions, each with its own scratch plane. */
static void forward_images(void *ctx, int part, size_t b0, size_t b1) {
  lrn_priv *lp = ctx;
  const ct_layer *l = lp->l;
  const size_t plane = (size_t)lp->H * lp->W, img = plane * lp->C;
  const float *x = l->bottom[0]->data;
  float *y = l->top[0]->data, *s = lp->scale, *tmp = lp->tmp + (size_t)part * lp->tmp_each;
  /* x^2 into y first (y is not x: the layer is not in-place), then the window sums into s */
  for (size_t i = b0 * img; i < b1 * img; i++) y[i] = x[i] * x[i];
  for (size_t b = b0; b < b1; b++) {
    if (lp->across) {
      window_sum_channels(y + b * img, s + b * img, lp->C, plane, lp->pre_pad, lp->alpha / (float)lp->size, lp->k);
    } else {
      const float a = lp->alpha / (float)(lp->size * lp->size);
      for (int c = 0; c < lp->C; c++)
        window_sum_plane(y + b * img + c * plane, s + b * img + c * plane, tmp, lp->H, lp->W, lp->pre_pad, a, 1.0f);
    }
  }
  float *restrict sp = lp->spow + b0 * img;
  neg_pow(s + b0 * img, sp, (b1 - b0) * img, lp->beta);
  for (size_t i = 0; i < (b1 - b0) * img; i++) y[b0 * img + i] = x[b0 * img + i] * sp[i];
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
  const size_t plane = (size_t)lp->H * lp->W, img = plane * lp->C;
  const float *x = l->bottom[0]->data, *y = l->top[0]->data, *dy = l->top[0]->diff, *s = lp->scale;
  float *dx = l->bottom[0]->diff, *tmp = lp->tmp + (size_t)part * lp->tmp_each;
  /* dx temporarily holds dy * y / s; the window sum of it goes to tmp (ACROSS) or back into dx */
  for (size_t i = b0 * img; i < b1 * img; i++) dx[i] = dy[i] * y[i] / s[i];
  for (size_t b = b0; b < b1; b++) {
    float *dxb = dx + b * img;
    const float *xb = x + b * img, *dyb = dy + b * img, *sb = lp->spow + b * img;
    if (lp->across) {
      const float ratio = 2.0f * lp->alpha * lp->beta / (float)lp->size;
      window_sum_channels(dxb, tmp, lp->C, plane, lp->pre_pad, 1.0f, 0.0f);
      for (size_t i = 0; i < img; i++) dxb[i] = dyb[i] * sb[i] - ratio * xb[i] * tmp[i];
    } else {
      const float ratio = 2.0f * lp->alpha * lp->beta / (float)(lp->size * lp->size);
      for (int c = 0; c < lp->C; c++) {
        float *d = dxb + c * plane;
        /* in-place box sum: window_sum_plane reads `in` fully into tmp before writing `out` */
        window_sum_plane(d, d, tmp, lp->H, lp->W, lp->pre_pad, 1.0f, 0.0f);
        const float *xc = xb + c * plane, *dyc = dyb + c * plane, *sc = sb + c * plane;
        for (size_t i = 0; i < plane; i++) d[i] = dyc[i] * sc[i] - ratio * xc[i] * d[i];
      }
    }
  }
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
    free(lp->scale);
    free(lp->spow);
    free(lp->tmp);
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
