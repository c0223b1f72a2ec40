/* Pooling (Caffe's "Pooling"): MAX (with the optional argmax top), AVE (Caffe's divisor: the
 * window clipped to the padded image, so padded positions count), global pooling, CEIL/FLOOR
 * rounding. STOCHASTIC runs only in TEST (Caffe's test-time rule: sum x^2 / sum x); training
 * with it is unsupported, as on Caffe's CPU. */
#include <math.h>
#include <stdlib.h>

#include "layers/layer.h"

/* argmax is kept as ints in a float tensor of the same element count */
_Static_assert(sizeof(int) == sizeof(float), "argmax ints live in a float tensor");

typedef struct pool_priv {
  Caffe__PoolingParameter__PoolMethod method;
  bool global;
  bool ceil_mode;
  int kh, kw, sh, sw, ph, pw;
  int N, C, H, W, OH, OW;
  ct_tensor *argmax; /* MAX: the flat index h*W + w in its plane of each output's maximum (int),
                        top-shaped so that each partition keeps its images' part on its driver */
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
      return ct_layer_fail(l, err, CT_EINVAL, "pad (%d x %d) must be smaller than the kernel (%d x %d)", pp->ph, pp->pw,
                           pp->kh, pp->kw);
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
  if (pp->method != CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX) return CT_OK;
  if (!pp->argmax && !(pp->argmax = ct_tensor_create())) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  return ct_tensor_reshape_like(pp->argmax, l->top[0], err);
}

static ct_pool_geom geom_of(const pool_priv *pp) {
  ct_pool_method m = pp->method == CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX   ? CT_POOL_MAX
                     : pp->method == CAFFE__POOLING_PARAMETER__POOL_METHOD__AVE ? CT_POOL_AVE
                                                                                : CT_POOL_STOCHASTIC;
  ct_pool_geom g = {m, pp->H, pp->W, pp->OH, pp->OW, pp->kh, pp->kw, pp->sh, pp->sw, pp->ph, pp->pw};
  return g;
}

static size_t first_of(const ct_part *p, const ct_tensor *t) {
  size_t first, n;
  ct_part_span(p, t, &first, &n);
  return first;
}

static size_t planes_of(const ct_part *p, const ct_tensor *x) {
  int img0, nimg;
  ct_part_images(p, x, &img0, &nimg);
  return (size_t)nimg * (size_t)x->shape[1];
}

/* Planes are independent: a partition pools its images' planes on its driver. */
static ct_status pool_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  pool_priv *pp = l->priv;
  const ct_driver *d = p->d;
  const ct_pool_geom g = geom_of(pp);
  const bool max = g.method == CT_POOL_MAX, mask = max && l->ntop > 1;
  const size_t planes = planes_of(p, l->bottom[0]), in0 = first_of(p, l->bottom[0]), out0 = first_of(p, l->top[0]);
  const float *x;
  float *y, *am = NULL, *m = NULL;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  if (max) CT_TRY(ct_write(l, p, pp->argmax, &am, err));
  if (mask) CT_TRY(ct_write(l, p, l->top[1], &m, err));
  return d->ops->pool_forward(d, &g, planes, x + in0, y + out0, max ? (int *)(am + out0) : NULL,
                              mask ? m + out0 : NULL);
}

static ct_status pool_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  if (!l->propagate_down[0]) return CT_OK;
  pool_priv *pp = l->priv;
  const ct_driver *d = p->d;
  const ct_pool_geom g = geom_of(pp);
  const size_t planes = planes_of(p, l->bottom[0]), in0 = first_of(p, l->bottom[0]), out0 = first_of(p, l->top[0]);
  const float *dy, *x = NULL, *am = NULL;
  float *dx;
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  /* the kernel reads argmax for MAX only and x for STOCHASTIC only: fetch nothing it ignores */
  if (g.method == CT_POOL_MAX) CT_TRY(ct_read(l, p, pp->argmax, &am, err));
  if (g.method == CT_POOL_STOCHASTIC) CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  return d->ops->pool_backward(d, &g, planes, x ? x + in0 : NULL, dy + out0, am ? (const int *)(am + out0) : NULL,
                               dx + in0);
}

static void pool_destroy(ct_layer *l) {
  pool_priv *pp = l->priv;
  if (pp) ct_tensor_free(pp->argmax);
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
    .splits = ct_layer_splits_always,
    .gains = true,
    .kind = CT_WORK_MEMORY,
    .setup = pool_setup,
    .reshape = pool_reshape,
    .forward = pool_forward,
    .backward = pool_backward,
    .destroy = pool_destroy,
};
