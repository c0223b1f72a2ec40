/* Pooling (Caffe's "Pooling"): MAX (with the optional argmax top), AVE (Caffe's divisor: the
 * window clipped to the padded image, so padded positions count), global pooling, CEIL/FLOOR
 * rounding. STOCHASTIC runs only in TEST (Caffe's test-time rule: sum x^2 / sum x); training
 * with it is unsupported, as on Caffe's CPU. */
#include <math.h>
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/scratch.h"
#include "sched/partition.h"

typedef struct pool_priv {
  Caffe__PoolingParameter__PoolMethod method;
  bool global;
  bool ceil_mode;
  int kh, kw, sh, sw, ph, pw;
  int N, C, H, W, OH, OW;
  ct_scratch argmax; /* MAX: the flat index h*W + w in its plane of each output's maximum */
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
    if (p->kernel_size > 65535 || p->kernel_h > 65535 || p->kernel_w > 65535)
      return ct_layer_fail(l, err, CT_EINVAL, "kernel size %u x %u is too large (at most 65535)", (unsigned)pp->kh,
                           (unsigned)pp->kw);
    if (pp->kh <= 0 || pp->kw <= 0)
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
  CT_TRY(ct_scratch_reserve(&pp->argmax, need, sizeof(int), l, err));
  return CT_OK;
}

/* Planes are independent: forward and backward run over plane ranges split across the net's
 * partitions, the driver pooling each range. */
static ct_pool_geom geom_of(const pool_priv *pp) {
  ct_pool_method m = pp->method == CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX   ? CT_POOL_MAX
                     : pp->method == CAFFE__POOLING_PARAMETER__POOL_METHOD__AVE ? CT_POOL_AVE
                                                                                : CT_POOL_STOCHASTIC;
  ct_pool_geom g = {m, pp->H, pp->W, pp->OH, pp->OW, pp->kh, pp->kw, pp->sh, pp->sw, pp->ph, pp->pw};
  return g;
}

static void forward_planes(void *ctx, int part, size_t begin, size_t end) {
  (void)part;
  const ct_layer *l = ctx;
  const pool_priv *pp = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  const ct_pool_geom g = geom_of(pp);
  const size_t in_plane = (size_t)pp->H * pp->W, out_plane = (size_t)pp->OH * pp->OW;
  const bool max = g.method == CT_POOL_MAX;
  d->ops->pool_forward(d, &g, end - begin, l->bottom[0]->data + begin * in_plane, l->top[0]->data + begin * out_plane,
                       max ? (int *)pp->argmax.p + begin * out_plane : NULL,
                       max && l->ntop > 1 ? l->top[1]->data + begin * out_plane : NULL);
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
  const ct_driver *d = ct_layer_driver(l);
  const ct_pool_geom g = geom_of(pp);
  const size_t in_plane = (size_t)pp->H * pp->W, out_plane = (size_t)pp->OH * pp->OW;
  d->ops->pool_backward(d, &g, end - begin, l->bottom[0]->data + begin * in_plane,
                        l->top[0]->diff + begin * out_plane,
                        g.method == CT_POOL_MAX ? (const int *)pp->argmax.p + begin * out_plane : NULL,
                        l->bottom[0]->diff + begin * in_plane);
}

static void pool_backward(ct_layer *l) {
  if (!l->propagate_down[0]) return;
  pool_priv *pp = l->priv;
  ct_parallel_for(l, (size_t)pp->N * pp->C, 1, backward_planes, l);
}
static void pool_destroy(ct_layer *l) {
  pool_priv *pp = l->priv;
  if (pp) ct_scratch_free(&pp->argmax);
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
