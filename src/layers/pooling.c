/* Pooling (Caffe's "Pooling"): MAX (with the optional argmax top), AVE (Caffe's divisor: the
 * window clipped to the padded image, so padded positions count), global pooling, CEIL/FLOOR
 * rounding. STOCHASTIC runs only in TEST (Caffe's test-time rule: sum x^2 / sum x); training
 * with it is unsupported, as on Caffe's CPU. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "sched/partition.h"

typedef struct pool_priv {
  Caffe__PoolingParameter__PoolMethod method;
  bool global;
  bool ceil_mode;
  int kh, kw, sh, sw, ph, pw;
  int N, C, H, W, OH, OW;
  int *argmax; /* MAX: the flat index h*W + w in its plane of each output's maximum */
  size_t argmax_cap;
} pool_priv;

static const Caffe__PoolingParameter default_param = CAFFE__POOLING_PARAMETER__INIT;

static ct_status pool_setup(ct_layer *l, ct_error *err) {
  const Caffe__PoolingParameter *p = l->lp->pooling_param ? l->lp->pooling_param : &default_param;
  pool_priv *pp = calloc(1, sizeof *pp);
  if (!pp) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = pp;
  pp->method = p->pool;
  pp->global = p->global_pooling;
  pp->ceil_mode = p->round_mode != CAFFE__POOLING_PARAMETER__ROUND_MODE__FLOOR;
  if (pp->method != CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX &&
      pp->method != CAFFE__POOLING_PARAMETER__POOL_METHOD__AVE &&
      pp->method != CAFFE__POOLING_PARAMETER__POOL_METHOD__STOCHASTIC)
    return ct_layer_fail(l, err, CT_EINVAL, "unknown pooling method %d", (int)pp->method);
  if (pp->method == CAFFE__POOLING_PARAMETER__POOL_METHOD__STOCHASTIC && l->phase == CAFFE__PHASE__TRAIN)
    return ct_layer_fail(l, err, CT_EUNSUPPORTED, "STOCHASTIC pooling is supported only in the TEST phase");
  if (l->ntop > 1 && pp->method != CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX)
    return ct_layer_fail(l, err, CT_EINVAL, "a second top (the argmax mask) exists only for MAX pooling");
  if (pp->global) {
    if (p->has_kernel_size || p->has_kernel_h || p->has_kernel_w)
      return ct_layer_fail(l, err, CT_EINVAL, "with global_pooling: true, the filter size cannot be specified");
  } else {
    if (p->has_kernel_size && (p->has_kernel_h || p->has_kernel_w))
      return ct_layer_fail(l, err, CT_EINVAL, "filter size is kernel_size OR kernel_h and kernel_w; not both");
    if (!p->has_kernel_size && !(p->has_kernel_h && p->has_kernel_w))
      return ct_layer_fail(l, err, CT_EINVAL,
                           "kernel_size must be specified (for non-square filters both kernel_h and kernel_w)");
    pp->kh = (int)(p->has_kernel_size ? p->kernel_size : p->kernel_h);
    pp->kw = (int)(p->has_kernel_size ? p->kernel_size : p->kernel_w);
    if (p->kernel_size > 65535 || p->kernel_h > 65535 || p->kernel_w > 65535 || pp->kh <= 0 || pp->kw <= 0)
      return ct_layer_fail(l, err, CT_EINVAL, "filter dimensions must be positive, got %d x %d", pp->kh, pp->kw);
  }
  if (p->has_pad ? (p->has_pad_h || p->has_pad_w) : (p->has_pad_h != p->has_pad_w))
    return ct_layer_fail(l, err, CT_EINVAL, "pad is pad OR pad_h and pad_w are required");
  if (p->has_stride ? (p->has_stride_h || p->has_stride_w) : (p->has_stride_h != p->has_stride_w))
    return ct_layer_fail(l, err, CT_EINVAL, "stride is stride OR stride_h and stride_w are required");
  uint32_t ph = p->has_pad_h ? p->pad_h : p->pad, pw = p->has_pad_h ? p->pad_w : p->pad;
  uint32_t sh = p->has_stride_h ? p->stride_h : p->stride, sw = p->has_stride_h ? p->stride_w : p->stride;
  if (ph > 65535 || pw > 65535 || sh > 65535 || sw > 65535 || sh == 0 || sw == 0)
    return ct_layer_fail(l, err, CT_EINVAL, "stride must be positive and pad/stride sane (pad %u x %u, stride %u x %u)",
                         ph, pw, sh, sw);
  pp->ph = (int)ph, pp->pw = (int)pw, pp->sh = (int)sh, pp->sw = (int)sw;
  if (pp->global && (ph || pw || sh != 1 || sw != 1))
    return ct_layer_fail(l, err, CT_EINVAL, "with global_pooling: true, only pad = 0 and stride = 1 are allowed");
  if (ph || pw) {
    if (pp->method == CAFFE__POOLING_PARAMETER__POOL_METHOD__STOCHASTIC)
      return ct_layer_fail(l, err, CT_EINVAL, "padding is implemented only for average and max pooling");
    if (!pp->global && (pp->ph >= pp->kh || pp->pw >= pp->kw))
      return ct_layer_fail(l, err, CT_EINVAL, "pad (%d x %d) must be smaller than the kernel (%d x %d)", pp->ph,
                           pp->pw, pp->kh, pp->kw);
  }
  return CT_OK;
}

static int pooled_size(int in, int k, int pad, int stride, bool ceil_mode) {
  float span = (float)(in + 2 * pad - k) / (float)stride;
  int out = (int)(ceil_mode ? ceilf(span) : floorf(span)) + 1;
  /* Caffe: with padding, the last window must start inside the image + pad. */
  if (pad && (out - 1) * stride >= in + pad) out--;
  return out;
}

static ct_status pool_reshape(ct_layer *l, ct_error *err) {
  pool_priv *pp = l->priv;
  const ct_tensor *x = l->bottom[0];
  char buf[128];
  if (x->naxes != 4)
    return ct_layer_fail(l, err, CT_ESHAPE, "input must have 4 axes (num, channels, height, width), got shape %s",
                         ct_tensor_shape_str(x, buf, sizeof buf));
  pp->N = x->shape[0], pp->C = x->shape[1], pp->H = x->shape[2], pp->W = x->shape[3];
  if (pp->global) {
    pp->kh = pp->H;
    pp->kw = pp->W;
    if (pp->kh <= 0 || pp->kw <= 0) return ct_layer_fail(l, err, CT_ESHAPE, "global pooling of an empty image");
  }
  pp->OH = pooled_size(pp->H, pp->kh, pp->ph, pp->sh, pp->ceil_mode);
  pp->OW = pooled_size(pp->W, pp->kw, pp->pw, pp->sw, pp->ceil_mode);
  if (pp->OH <= 0 || pp->OW <= 0)
    return ct_layer_fail(l, err, CT_ESHAPE, "the %dx%d kernel leaves no output on a %dx%d input padded by %dx%d",
                         pp->kh, pp->kw, pp->H, pp->W, pp->ph, pp->pw);
  for (int i = 0; i < l->ntop; i++) CT_TRY(ct_tensor_reshape4(l->top[i], pp->N, pp->C, pp->OH, pp->OW, err));
  size_t need = pp->method == CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX ? l->top[0]->count : 0;
  if (need > pp->argmax_cap) {
    int *a = malloc(need * sizeof *a);
    if (!a) return ct_layer_fail(l, err, CT_ENOMEM, "cannot allocate the argmax buffer of %zu ints", need);
    free(pp->argmax);
    pp->argmax = a;
    pp->argmax_cap = need;
  }
  return CT_OK;
}

/* The window of output (oh, ow) clipped to the image, and Caffe's AVE divisor (the window clipped
 * only to the padded image). */
typedef struct window {
  int h0, h1, w0, w1;
  int pool_size;
} window;

static inline window window_at(const pool_priv *pp, int oh, int ow) {
  window w;
  int h0 = oh * pp->sh - pp->ph, w0 = ow * pp->sw - pp->pw;
  int h1 = h0 + pp->kh < pp->H + pp->ph ? h0 + pp->kh : pp->H + pp->ph;
  int w1 = w0 + pp->kw < pp->W + pp->pw ? w0 + pp->kw : pp->W + pp->pw;
  w.pool_size = (h1 - h0) * (w1 - w0);
  w.h0 = h0 > 0 ? h0 : 0;
  w.w0 = w0 > 0 ? w0 : 0;
  w.h1 = h1 < pp->H ? h1 : pp->H;
  w.w1 = w1 < pp->W ? w1 : pp->W;
  return w;
}

static void max_plane(const pool_priv *pp, const float *restrict x, float *restrict y, int *restrict am) {
  const int W = pp->W;
  for (int oh = 0; oh < pp->OH; oh++)
    for (int ow = 0; ow < pp->OW; ow++) {
      const window w = window_at(pp, oh, ow);
      const int o = oh * pp->OW + ow;
      float best = -FLT_MAX;
      int arg = -1;
      for (int h = w.h0; h < w.h1; h++)
        for (int c = w.w0; c < w.w1; c++) {
          const float v = x[h * W + c];
          arg = v > best ? h * W + c : arg;
          best = v > best ? v : best;
        }
      /* Caffe's CEIL rule without padding can leave a last window wholly past the image
       * (stride > kernel); Caffe then outputs -FLT_MAX (MAX) or 0/0 (AVE). 0 is kinder. */
      y[o] = arg >= 0 ? best : 0.0f;
      am[o] = arg;
    }
}

static void ave_plane(const pool_priv *pp, const float *restrict x, float *restrict y) {
  const int W = pp->W;
  for (int oh = 0; oh < pp->OH; oh++)
    for (int ow = 0; ow < pp->OW; ow++) {
      const window w = window_at(pp, oh, ow);
      float s = 0.0f;
      for (int h = w.h0; h < w.h1; h++)
        for (int c = w.w0; c < w.w1; c++) s += x[h * W + c];
      y[oh * pp->OW + ow] = w.h0 < w.h1 && w.w0 < w.w1 ? s / (float)w.pool_size : 0.0f;
    }
}

/* STOCHASTIC at test time: the activation-weighted average sum x^2 / sum x (no padding). */
static void stochastic_plane(const pool_priv *pp, const float *restrict x, float *restrict y) {
  const int W = pp->W;
  for (int oh = 0; oh < pp->OH; oh++)
    for (int ow = 0; ow < pp->OW; ow++) {
      const window w = window_at(pp, oh, ow);
      float s = FLT_MIN, q = 0.0f;
      for (int h = w.h0; h < w.h1; h++)
        for (int c = w.w0; c < w.w1; c++) {
          s += x[h * W + c];
          q += x[h * W + c] * x[h * W + c];
        }
      y[oh * pp->OW + ow] = q / s;
    }
}

/* Planes are independent: forward and backward run over plane ranges split across the net's
 * partitions. */
static void forward_planes(void *ctx, int part, size_t begin, size_t end) {
  (void)part;
  const ct_layer *l = ctx;
  const pool_priv *pp = l->priv;
  const size_t in_plane = (size_t)pp->H * pp->W, out_plane = (size_t)pp->OH * pp->OW;
  for (size_t pl = begin; pl < end; pl++) {
    const float *x = l->bottom[0]->data + pl * in_plane;
    float *y = l->top[0]->data + pl * out_plane;
    switch (pp->method) {
      case CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX: {
        int *am = pp->argmax + pl * out_plane;
        max_plane(pp, x, y, am);
        if (l->ntop > 1) {
          float *restrict mask = l->top[1]->data + pl * out_plane;
          for (size_t o = 0; o < out_plane; o++) mask[o] = (float)am[o];
        }
        break;
      }
      case CAFFE__POOLING_PARAMETER__POOL_METHOD__AVE: ave_plane(pp, x, y); break;
      default: stochastic_plane(pp, x, y); break;
    }
  }
}

static ct_status pool_forward(ct_layer *l, ct_error *err) {
  (void)err;
  pool_priv *pp = l->priv;
  ct_parallel_for(l, (size_t)pp->N * pp->C, 1, forward_planes, l);
  return CT_OK;
}

static void backward_planes(void *ctx, int part, size_t begin, size_t end) {
  (void)part;
  const ct_layer *l = ctx;
  const pool_priv *pp = l->priv;
  const int H = pp->H, W = pp->W, OH = pp->OH, OW = pp->OW;
  for (size_t pl = begin; pl < end; pl++) {
    const float *restrict dy = l->top[0]->diff + pl * OH * OW;
    const float *restrict x = l->bottom[0]->data + pl * H * W;
    float *restrict dx = l->bottom[0]->diff + pl * H * W;
    memset(dx, 0, (size_t)H * W * sizeof(float));
    if (pp->method == CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX) {
      const int *restrict am = pp->argmax + pl * OH * OW;
      for (int o = 0; o < OH * OW; o++)
        if (am[o] >= 0) dx[am[o]] += dy[o];
      continue;
    }
    for (int oh = 0; oh < OH; oh++)
      for (int ow = 0; ow < OW; ow++) {
        window w = window_at(pp, oh, ow);
        const float d = dy[oh * OW + ow];
        if (w.h0 >= w.h1 || w.w0 >= w.w1) continue;
        if (pp->method == CAFFE__POOLING_PARAMETER__POOL_METHOD__AVE) {
          const float g = d / (float)w.pool_size;
          for (int h = w.h0; h < w.h1; h++)
            for (int c = w.w0; c < w.w1; c++) dx[h * W + c] += g;
        } else { /* d(q/s)/dx = (2 x s - q) / s^2 */
          float s = FLT_MIN, q = 0.0f;
          for (int h = w.h0; h < w.h1; h++)
            for (int c = w.w0; c < w.w1; c++) {
              s += x[h * W + c];
              q += x[h * W + c] * x[h * W + c];
            }
          for (int h = w.h0; h < w.h1; h++)
            for (int c = w.w0; c < w.w1; c++) dx[h * W + c] += d * (2.0f * x[h * W + c] * s - q) / (s * s);
        }
      }
  }
}

static void pool_backward(ct_layer *l) {
  if (!l->propagate_down[0]) return;
  pool_priv *pp = l->priv;
  ct_parallel_for(l, (size_t)pp->N * pp->C, 1, backward_planes, l);
}
static void pool_destroy(ct_layer *l) {
  pool_priv *pp = l->priv;
  if (pp) free(pp->argmax);
  free(pp);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Pooling = {
    .type = "Pooling",
    .min_bottom = 1,
    .max_bottom = 1,
    .min_top = 1,
    .max_top = 2,
    .has_backward = true,
    .setup = pool_setup,
    .reshape = pool_reshape,
    .forward = pool_forward,
    .backward = pool_backward,
    .destroy = pool_destroy,
};
