/* Convolution (Caffe's "Convolution"): 2-D, with groups, padding, stride and dilation.
 * The layer runs im2col + GEMM; the naive loops stay as the reference the tests hold it to. */
#include "layers/conv.h"

#include <stdlib.h>
#include <string.h>

#include "core/blas.h"
#include "core/filler.h"
#include "layers/layer.h"

bool ct_conv_geom_finish(ct_conv_geom *g) {
  int ext_h = g->dh * (g->kh - 1) + 1, ext_w = g->dw * (g->kw - 1) + 1;
  if (g->H + 2 * g->ph < ext_h || g->W + 2 * g->pw < ext_w) return false;
  g->OH = (g->H + 2 * g->ph - ext_h) / g->sh + 1;
  g->OW = (g->W + 2 * g->pw - ext_w) / g->sw + 1;
  return true;
}

bool ct_conv_is_pointwise(const ct_conv_geom *g) {
  return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

size_t ct_conv_col_size(const ct_conv_geom *g) {
  if (ct_conv_is_pointwise(g)) return 0;
  return (size_t)g->C * g->kh * g->kw * g->OH * g->OW;
}

static ct_im2col_geom lowering_geom(const ct_conv_geom *g) {
  ct_im2col_geom m = {g->C, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->dh, g->dw, g->OH, g->OW};
  return m;
}

/* ---------------------------------------------------------------- reference loops */

void ct_conv_forward_naive(const ct_conv_geom *g, const float *x, const float *w, const float *b, float *y) {
  const int Cg = g->C / g->G, Kg = g->K / g->G;
  for (int n = 0; n < g->N; n++)
    for (int k = 0; k < g->K; k++) {
      const int c0 = (k / Kg) * Cg;
      for (int oh = 0; oh < g->OH; oh++)
        for (int ow = 0; ow < g->OW; ow++) {
          double acc = b ? b[k] : 0.0;
          for (int c = 0; c < Cg; c++)
            for (int i = 0; i < g->kh; i++) {
              int ih = oh * g->sh - g->ph + i * g->dh;
              if (ih < 0 || ih >= g->H) continue;
              for (int j = 0; j < g->kw; j++) {
                int iw = ow * g->sw - g->pw + j * g->dw;
                if (iw < 0 || iw >= g->W) continue;
                acc += (double)w[((size_t)(k * Cg + c) * g->kh + i) * g->kw + j] *
                       x[(((size_t)n * g->C + c0 + c) * g->H + ih) * g->W + iw];
              }
            }
          y[(((size_t)n * g->K + k) * g->OH + oh) * g->OW + ow] = (float)acc;
        }
    }
}

void ct_conv_backward_naive(const ct_conv_geom *g, const float *x, const float *w, const float *dy, float *dx,
                            float *dw, float *db) {
  const int Cg = g->C / g->G, Kg = g->K / g->G;
  if (dx) memset(dx, 0, (size_t)g->N * g->C * g->H * g->W * sizeof(float));
  for (int n = 0; n < g->N; n++)
    for (int k = 0; k < g->K; k++) {
      const int c0 = (k / Kg) * Cg;
      for (int oh = 0; oh < g->OH; oh++)
        for (int ow = 0; ow < g->OW; ow++) {
          float d = dy[(((size_t)n * g->K + k) * g->OH + oh) * g->OW + ow];
          if (db) db[k] += d;
          for (int c = 0; c < Cg; c++)
            for (int i = 0; i < g->kh; i++) {
              int ih = oh * g->sh - g->ph + i * g->dh;
              if (ih < 0 || ih >= g->H) continue;
              for (int j = 0; j < g->kw; j++) {
                int iw = ow * g->sw - g->pw + j * g->dw;
                if (iw < 0 || iw >= g->W) continue;
                size_t wi = ((size_t)(k * Cg + c) * g->kh + i) * g->kw + j;
                size_t xi = (((size_t)n * g->C + c0 + c) * g->H + ih) * g->W + iw;
                if (dw) dw[wi] += d * x[xi];
                if (dx) dx[xi] += d * w[wi];
              }
            }
        }
    }
}

/* ---------------------------------------------------------------- im2col + GEMM */

static void add_bias(int K, int P, const float *restrict b, float *restrict y) {
  for (int k = 0; k < K; k++) {
    float *restrict yk = y + (size_t)k * P;
    const float bk = b[k];
    for (int p = 0; p < P; p++) yk[p] += bk;
  }
}

void ct_conv_forward_gemm(const ct_conv_geom *g, const float *x, const float *w, const float *b, float *y,
                          float *col) {
  const int Kg = g->K / g->G, Cg = g->C / g->G, P = g->OH * g->OW;
  const int CgKK = Cg * g->kh * g->kw;
  const size_t xstride = (size_t)g->C * g->H * g->W, ystride = (size_t)g->K * P;
  const bool pointwise = ct_conv_is_pointwise(g);
  const ct_im2col_geom m = lowering_geom(g);
  for (int n = 0; n < g->N; n++) {
    const float *xn = x + n * xstride;
    float *yn = y + n * ystride;
    const float *lowered = xn;
    if (!pointwise) {
      ct_im2col(&m, xn, col);
      lowered = col;
    }
    for (int gi = 0; gi < g->G; gi++)
      ct_sgemm(0, 0, Kg, P, CgKK, 1.0f, w + (size_t)gi * Kg * CgKK, lowered + (size_t)gi * CgKK * P, 0.0f,
               yn + (size_t)gi * Kg * P);
    if (b) add_bias(g->K, P, b, yn);
  }
}

void ct_conv_backward_gemm(const ct_conv_geom *g, const float *x, const float *w, const float *dy, float *dx,
                           float *dw, float *db, float *col) {
  const int Kg = g->K / g->G, Cg = g->C / g->G, P = g->OH * g->OW;
  const int CgKK = Cg * g->kh * g->kw;
  const size_t xstride = (size_t)g->C * g->H * g->W, ystride = (size_t)g->K * P;
  const bool pointwise = ct_conv_is_pointwise(g);
  const ct_im2col_geom m = lowering_geom(g);
  for (int n = 0; n < g->N; n++) {
    const float *xn = x + n * xstride, *dyn = dy + n * ystride;
    if (db)
      for (int k = 0; k < g->K; k++) {
        const float *restrict d = dyn + (size_t)k * P;
        float s = 0.0f;
        for (int p = 0; p < P; p++) s += d[p];
        db[k] += s;
      }
    if (dw) {
      const float *lowered = xn;
      if (!pointwise) {
        ct_im2col(&m, xn, col);
        lowered = col;
      }
      for (int gi = 0; gi < g->G; gi++)
        ct_sgemm(0, 1, Kg, CgKK, P, 1.0f, dyn + (size_t)gi * Kg * P, lowered + (size_t)gi * CgKK * P, 1.0f,
                 dw + (size_t)gi * Kg * CgKK);
    }
    if (dx) {
      float *dxn = dx + n * xstride;
      float *target = pointwise ? dxn : col;
      for (int gi = 0; gi < g->G; gi++)
        ct_sgemm(1, 0, CgKK, P, Kg, 1.0f, w + (size_t)gi * Kg * CgKK, dyn + (size_t)gi * Kg * P, 0.0f,
                 target + (size_t)gi * CgKK * P);
      if (!pointwise) ct_col2im(&m, col, dxn);
    }
  }
}

/* ---------------------------------------------------------------- the layer */

typedef struct conv_priv {
  ct_conv_geom geom; /* N, H, W, OH, OW refreshed by reshape */
  bool bias;
  float *col;
  size_t col_cap;
} conv_priv;

static const Caffe__ConvolutionParameter default_param = CAFFE__CONVOLUTION_PARAMETER__INIT;

/* Caffe's rule for pad/stride/dilation-like repeated fields: none (default), one for both
 * spatial axes, or one per axis. */
static ct_status pick_dims(const ct_layer *l, const char *what, size_t n, const uint32_t *v, int dflt, int out[2],
                           ct_error *err) {
  if (n > 2)
    return ct_layer_fail(l, err, CT_EINVAL,
                         "%s must be specified once, or once per spatial dimension (%s specified %zu times; 2 "
                         "spatial dims)",
                         what, what, n);
  for (int i = 0; i < 2; i++) out[i] = n == 0 ? dflt : (int)v[n == 1 ? 0 : i];
  return CT_OK;
}

static ct_status conv_setup(ct_layer *l, ct_error *err) {
  const Caffe__ConvolutionParameter *p = l->lp->convolution_param ? l->lp->convolution_param : &default_param;
  const ct_tensor *x = l->bottom[0];
  char buf[128];
  if (l->nbottom != l->ntop)
    return ct_layer_fail(l, err, CT_EINVAL, "needs as many tops as bottoms (got %d bottoms, %d tops)", l->nbottom,
                         l->ntop);
  int axis = ct_tensor_axis(x, p->axis);
  if (axis < 0)
    return ct_layer_fail(l, err, CT_EINVAL, "axis %d is out of range for bottom shape %s", p->axis,
                         ct_tensor_shape_str(x, buf, sizeof buf));
  if (axis != 1)
    return ct_layer_fail(l, err, CT_EUNSUPPORTED, "only axis 1 (channels after the batch) is supported, got %d",
                         p->axis);
  if (x->naxes != 4)
    return ct_layer_fail(l, err, CT_EUNSUPPORTED,
                         "only 2-D convolution is supported: bottom must have 4 axes (N, C, H, W), got shape %s",
                         ct_tensor_shape_str(x, buf, sizeof buf));
  ct_conv_geom g = {0};
  int kernel[2], stride[2], pad[2], dil[2];
  if (p->has_kernel_h || p->has_kernel_w) {
    if (p->n_kernel_size)
      return ct_layer_fail(l, err, CT_EINVAL, "either kernel_size or kernel_h/w should be specified; not both");
    if (!p->has_kernel_h || !p->has_kernel_w)
      return ct_layer_fail(l, err, CT_EINVAL, "kernel_h and kernel_w must be given together");
    kernel[0] = (int)p->kernel_h;
    kernel[1] = (int)p->kernel_w;
  } else {
    if (p->n_kernel_size == 0)
      return ct_layer_fail(l, err, CT_EINVAL, "kernel_size (or kernel_h and kernel_w) must be specified");
    CT_TRY(pick_dims(l, "kernel_size", p->n_kernel_size, p->kernel_size, 0, kernel, err));
  }
  if (p->has_stride_h || p->has_stride_w) {
    if (p->n_stride)
      return ct_layer_fail(l, err, CT_EINVAL, "either stride or stride_h/w should be specified; not both");
    if (!p->has_stride_h || !p->has_stride_w)
      return ct_layer_fail(l, err, CT_EINVAL, "stride_h and stride_w must be given together");
    stride[0] = (int)p->stride_h;
    stride[1] = (int)p->stride_w;
  } else {
    CT_TRY(pick_dims(l, "stride", p->n_stride, p->stride, 1, stride, err));
  }
  if (p->has_pad_h || p->has_pad_w) {
    if (p->n_pad) return ct_layer_fail(l, err, CT_EINVAL, "either pad or pad_h/w should be specified; not both");
    if (!p->has_pad_h || !p->has_pad_w)
      return ct_layer_fail(l, err, CT_EINVAL, "pad_h and pad_w must be given together");
    pad[0] = (int)p->pad_h;
    pad[1] = (int)p->pad_w;
  } else {
    CT_TRY(pick_dims(l, "pad", p->n_pad, p->pad, 0, pad, err));
  }
  CT_TRY(pick_dims(l, "dilation", p->n_dilation, p->dilation, 1, dil, err));
  for (int i = 0; i < 2; i++) {
    /* uint32 fields read as int: anything past 2^16 is nonsense for an image anyway */
    if (kernel[i] <= 0 || kernel[i] > 65535)
      return ct_layer_fail(l, err, CT_EINVAL, "filter dimensions must be nonzero (and sane), got %d x %d",
                           kernel[0], kernel[1]);
    if (stride[i] <= 0 || stride[i] > 65535)
      return ct_layer_fail(l, err, CT_EINVAL, "stride dimensions must be nonzero, got %d x %d", stride[0],
                           stride[1]);
    if (dil[i] <= 0 || dil[i] > 65535)
      return ct_layer_fail(l, err, CT_EINVAL, "dilation dimensions must be nonzero, got %d x %d", dil[0], dil[1]);
    if (pad[i] < 0 || pad[i] > 65535)
      return ct_layer_fail(l, err, CT_EINVAL, "pad %d x %d is out of range", pad[0], pad[1]);
  }
  g.kh = kernel[0], g.kw = kernel[1], g.sh = stride[0], g.sw = stride[1];
  g.ph = pad[0], g.pw = pad[1], g.dh = dil[0], g.dw = dil[1];
  if (!p->has_num_output || p->num_output == 0 || p->num_output > (1u << 24))
    return ct_layer_fail(l, err, CT_EINVAL, "num_output must be specified and positive");
  if (p->group == 0 || p->group > (1u << 24)) return ct_layer_fail(l, err, CT_EINVAL, "group must be positive");
  g.K = (int)p->num_output;
  g.G = (int)p->group;
  g.C = x->shape[1];
  if (g.C % g.G)
    return ct_layer_fail(l, err, CT_EINVAL, "the number of input channels (%d) must be a multiple of group (%d)", g.C,
                         g.G);
  if (g.K % g.G)
    return ct_layer_fail(l, err, CT_EINVAL, "num_output (%d) must be a multiple of group (%d)", g.K, g.G);

  conv_priv *cp = calloc(1, sizeof *cp);
  if (!cp) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = cp;
  cp->geom = g;
  cp->bias = p->bias_term;
  CT_TRY(ct_layer_alloc_blobs(l, cp->bias ? 2 : 1, err));
  int wshape[4] = {g.K, g.C / g.G, g.kh, g.kw};
  CT_TRY(ct_tensor_reshape(l->blobs[0], 4, wshape, err));
  if (ct_fill(p->weight_filler, l->blobs[0], &l->rng, "weight_filler", err))
    return ct_error_prefix(err, "layer \"%s\" (Convolution)", l->name);
  if (cp->bias) {
    CT_TRY(ct_tensor_reshape(l->blobs[1], 1, &g.K, err));
    if (ct_fill(p->bias_filler, l->blobs[1], &l->rng, "bias_filler", err))
      return ct_error_prefix(err, "layer \"%s\" (Convolution)", l->name);
  }
  return CT_OK;
}

static ct_status conv_reshape(ct_layer *l, ct_error *err) {
  conv_priv *cp = l->priv;
  const ct_tensor *x = l->bottom[0];
  char buf[128], buf2[128];
  if (x->naxes != 4)
    return ct_layer_fail(l, err, CT_ESHAPE, "bottom must have 4 axes (N, C, H, W), got shape %s",
                         ct_tensor_shape_str(x, buf, sizeof buf));
  for (int i = 1; i < l->nbottom; i++)
    if (!ct_tensor_same_shape(l->bottom[i], x))
      return ct_layer_fail(l, err, CT_ESHAPE, "all bottoms must have the same shape: bottom 0 is %s, bottom %d is %s",
                           ct_tensor_shape_str(x, buf, sizeof buf), i,
                           ct_tensor_shape_str(l->bottom[i], buf2, sizeof buf2));
  ct_conv_geom g = cp->geom;
  if (x->shape[1] != g.C)
    return ct_layer_fail(l, err, CT_ESHAPE, "input size incompatible with convolution kernel: %d channels, expected %d",
                         x->shape[1], g.C);
  g.N = x->shape[0];
  g.H = x->shape[2];
  g.W = x->shape[3];
  if (!ct_conv_geom_finish(&g))
    return ct_layer_fail(l, err, CT_ESHAPE,
                         "the kernel %dx%d (dilation %dx%d) does not fit the input %dx%d padded by %dx%d", g.kh, g.kw,
                         g.dh, g.dw, g.H, g.W, g.ph, g.pw);
  cp->geom = g;
  for (int i = 0; i < l->ntop; i++) CT_TRY(ct_tensor_reshape4(l->top[i], g.N, g.K, g.OH, g.OW, err));
  size_t need = ct_conv_col_size(&g);
  if (need > cp->col_cap) {
    float *c = malloc(need * sizeof(float));
    if (!c) return ct_layer_fail(l, err, CT_ENOMEM, "cannot allocate a column buffer of %zu floats", need);
    free(cp->col);
    cp->col = c;
    cp->col_cap = need;
  }
  return CT_OK;
}

static ct_status conv_forward(ct_layer *l, ct_error *err) {
  (void)err;
  conv_priv *cp = l->priv;
  const float *b = cp->bias ? l->blobs[1]->data : NULL;
  for (int i = 0; i < l->nbottom; i++)
    ct_conv_forward_gemm(&cp->geom, l->bottom[i]->data, l->blobs[0]->data, b, l->top[i]->data, cp->col);
  return CT_OK;
}

static void conv_backward(ct_layer *l) {
  conv_priv *cp = l->priv;
  float *dw = l->param_propagate_down[0] ? l->blobs[0]->diff : NULL;
  float *db = cp->bias && l->param_propagate_down[1] ? l->blobs[1]->diff : NULL;
  for (int i = 0; i < l->nbottom; i++) {
    float *dx = l->propagate_down[i] ? l->bottom[i]->diff : NULL;
    if (!dx && !dw && !db) continue;
    ct_conv_backward_gemm(&cp->geom, l->bottom[i]->data, l->blobs[0]->data, l->top[i]->diff, dx, dw, db, cp->col);
  }
}

static void conv_destroy(ct_layer *l) {
  conv_priv *cp = l->priv;
  if (cp) free(cp->col);
  free(cp);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Convolution = {
    .type = "Convolution",
    .min_bottom = 1,
    .max_bottom = -1,
    .min_top = 1,
    .max_top = -1,
    .has_backward = true,
    .setup = conv_setup,
    .reshape = conv_reshape,
    .forward = conv_forward,
    .backward = conv_backward,
    .destroy = conv_destroy,
};
