/* Deconvolution (Caffe's "Deconvolution"): the transpose of a convolution. Its forward is a
 * convolution's data gradient and its backward that convolution's forward (for the bottom's
 * gradient) and weight gradient, so it runs on the same lowering (src/lowering/): every
 * lowering type, the cost model, the workspace cap and the turns of the Convolution layer.
 *
 * The convolution it transposes, cg, runs from the deconvolution's top to its bottom:
 *   cg.C = num_output, cg.H x cg.W = the top's plane; cg.K = the bottom's channels,
 *   cg.OH x cg.OW = the bottom's plane.
 * So the weights are C_in x num_output/group x kh x kw, as in Caffe, and the top's plane is
 * stride (in - 1) + dilation (kernel - 1) + 1 - 2 pad per axis. The bias, one per output
 * channel, is added after the lowering. */
#include <stdlib.h>

#include "core/filler.h"
#include "layers/conv.h"
#include "layers/layer.h"

typedef struct deconv_priv {
  ct_conv_geom cg; /* the transposed convolution, top -> bottom */
  bool bias;
  ct_lowering forced, type;
  int chunk;          /* images per lowering call (ct_conv_fit_workspace) */
  ct_part_scratch ws; /* each partition's workspace */
} deconv_priv;

static const Caffe__ConvolutionParameter default_param = CAFFE__CONVOLUTION_PARAMETER__INIT;

static ct_status deconv_setup(ct_layer *l, ct_error *err) {
  if (l->nbottom != l->ntop)
    return ct_layer_fail(l, err, CT_EINVAL, "needs as many tops as bottoms (got %d bottoms, %d tops)", l->nbottom,
                         l->ntop);
  const Caffe__ConvolutionParameter *p = l->lp->convolution_param ? l->lp->convolution_param : &default_param;
  ct_conv_geom g; /* as a convolution of the bottom would read it: C = bottom channels, K = num_output */
  CT_TRY(ct_conv_read_param(l, &g, err));
  deconv_priv *dp = calloc(1, sizeof *dp);
  if (!dp) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = dp;
  dp->cg = g;
  dp->cg.C = g.K;
  dp->cg.K = g.C;
  dp->bias = p->bias_term;
  CT_TRY(ct_conv_read_lowering(l, &dp->cg, &dp->forced, err));
  CT_TRY(ct_layer_alloc_blobs(l, dp->bias ? 2 : 1, err));
  int wshape[4] = {g.C, g.K / g.G, g.kh, g.kw};
  CT_TRY(ct_tensor_reshape(l->blobs[0], 4, wshape, err));
  if (ct_fill(p->weight_filler, l->blobs[0], &l->rng, "weight_filler", err))
    return ct_error_prefix(err, "layer \"%s\" (Deconvolution)", l->name);
  if (dp->bias) {
    CT_TRY(ct_tensor_reshape(l->blobs[1], 1, &g.K, err));
    if (ct_fill(p->bias_filler, l->blobs[1], &l->rng, "bias_filler", err))
      return ct_error_prefix(err, "layer \"%s\" (Deconvolution)", l->name);
  }
  return CT_OK;
}

/* The top's extent along one axis, or <= 0 when the padding eats the whole of it. */
static long deconv_out(int in, int k, int s, int p, int dil) {
  return (long)s * (in - 1) + (long)dil * (k - 1) + 1 - 2L * p;
}

static ct_status deconv_reshape(ct_layer *l, ct_error *err) {
  deconv_priv *dp = l->priv;
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
  ct_conv_geom g = dp->cg;
  if (x->shape[1] != g.K)
    return ct_layer_fail(l, err, CT_ESHAPE, "input size incompatible with the kernel: %d channels, expected %d",
                         x->shape[1], g.K);
  const long H = deconv_out(x->shape[2], g.kh, g.sh, g.ph, g.dh), W = deconv_out(x->shape[3], g.kw, g.sw, g.pw, g.dw);
  if (H <= 0 || W <= 0 || H > (1L << 24) || W > (1L << 24))
    return ct_layer_fail(l, err, CT_ESHAPE,
                         "the output would be %ldx%ld: an input of %dx%d with kernel %dx%d, stride %dx%d, dilation "
                         "%dx%d and pad %dx%d",
                         H, W, x->shape[2], x->shape[3], g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.ph, g.pw);
  g.N = x->shape[0];
  g.H = (int)H;
  g.W = (int)W;
  /* the transposed convolution maps the top back onto exactly the bottom's plane */
  if (!ct_conv_geom_finish(&g) || g.OH != x->shape[2] || g.OW != x->shape[3])
    return ct_layer_fail(l, err, CT_ESHAPE, "internal: the %ldx%ld output does not convolve back to %dx%d", H, W,
                         x->shape[2], x->shape[3]);
  dp->cg = g;
  for (int i = 0; i < l->ntop; i++) CT_TRY(ct_tensor_reshape4(l->top[i], g.N, g.C, g.H, g.W, err));
  return ct_conv_fit_workspace(l, &g, dp->forced, &dp->type, &dp->chunk, &dp->ws, err);
}

/* top = the data gradient of cg for "dy" = the bottom. That step lowers cg's input as well as its
 * kernel (types 2, 3 and WINOGRAD lower both in one call), an input that does not exist yet: the
 * top itself stands in for it, read whole before it is written, and what its lowering produces
 * is overwritten by the GEMMs unread. */
static ct_status deconv_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  deconv_priv *dp = l->priv;
  const ct_conv_geom *g = &dp->cg;
  const ct_driver *d = p->d;
  const float *w, *b = NULL;
  CT_TRY(ct_read_param(l, p, 0, &w, err));
  if (dp->bias) CT_TRY(ct_read_param(l, p, 1, &b, err));
  float *ws = ct_part_scratch_of(&dp->ws, p);
  const size_t xs = (size_t)g->K * g->OH * g->OW, ys = (size_t)g->C * g->H * g->W; /* per image */
  for (int i = 0; i < l->nbottom; i++) {
    const float *x;
    float *y;
    CT_TRY(ct_read(l, p, l->bottom[i], &x, err));
    CT_TRY(ct_write(l, p, l->top[i], &y, err));
    for (int n0 = p->begin; n0 < p->end; n0 += dp->chunk) {
      const int nb = p->end - n0 < dp->chunk ? p->end - n0 : dp->chunk;
      float *yn = y + (size_t)n0 * ys;
      CT_TRY(ct_lower_backward_on(d, g, dp->type, nb, yn, w, x + (size_t)n0 * xs, yn, NULL, NULL, ws, false));
      if (b) CT_TRY(d->ops->bias_forward(d, (size_t)nb, (size_t)g->C, (size_t)g->H * g->W, yn, b, yn));
    }
  }
  return CT_OK;
}

/* bottom diff = cg's forward of the top's diff; weight gradient = cg's, with the top's diff as
 * its input and the bottom as its output gradient, reusing the lowering the bottom diff just
 * made of the same input; bias gradient = the top's diff summed per channel. */
static ct_status deconv_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  deconv_priv *dp = l->priv;
  const ct_conv_geom *g = &dp->cg;
  const ct_driver *d = p->d;
  const float *w;
  float *dw = NULL, *db = NULL;
  CT_TRY(ct_read_param(l, p, 0, &w, err));
  if (l->param_propagate_down[0]) CT_TRY(ct_part_param_grad(l, p, 0, &dw, err));
  if (dp->bias && l->param_propagate_down[1]) CT_TRY(ct_part_param_grad(l, p, 1, &db, err));
  float *ws = ct_part_scratch_of(&dp->ws, p);
  const size_t xs = (size_t)g->K * g->OH * g->OW, ys = (size_t)g->C * g->H * g->W;
  for (int i = 0; i < l->nbottom; i++) {
    if (!l->propagate_down[i] && !dw && !db) continue;
    const float *x = NULL, *dy;
    float *dx = NULL;
    CT_TRY(ct_read_diff(l, p, l->top[i], &dy, err));
    if (dw) CT_TRY(ct_read(l, p, l->bottom[i], &x, err));
    if (l->propagate_down[i]) CT_TRY(ct_write_diff(l, p, l->bottom[i], &dx, err));
    for (int n0 = p->begin; n0 < p->end; n0 += dp->chunk) {
      const int nb = p->end - n0 < dp->chunk ? p->end - n0 : dp->chunk;
      const float *dyn = dy + (size_t)n0 * ys;
      if (dx) CT_TRY(ct_lower_forward_on(d, g, dp->type, nb, dyn, w, NULL, dx + (size_t)n0 * xs, ws));
      if (dw)
        CT_TRY(ct_lower_backward_on(d, g, dp->type, nb, dyn, w, x + (size_t)n0 * xs, NULL, dw, NULL, ws, dx != NULL));
      if (db)
        CT_TRY(d->ops->scale_backward(d, (size_t)nb, (size_t)g->C, (size_t)g->H * g->W, NULL, dyn, NULL, NULL, db,
                                      NULL));
    }
  }
  return CT_OK;
}

static double deconv_flops(const ct_layer *l) {
  const deconv_priv *dp = l->priv;
  return ct_conv_flops(&dp->cg, dp->cg.N) * l->nbottom;
}

static const char *deconv_describe(const ct_layer *l) {
  return ct_lowering_name(((const deconv_priv *)l->priv)->type);
}

static void deconv_destroy(ct_layer *l) {
  deconv_priv *dp = l->priv;
  if (dp) ct_part_scratch_free(&dp->ws);
  free(dp);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Deconvolution = {
    .type = "Deconvolution",
    .min_bottom = 1,
    .max_bottom = -1,
    .min_top = 1,
    .max_top = -1,
    .has_backward = true,
    .splits = ct_layer_splits_always,
    .gains = true,
    .kind = CT_WORK_GEMM,
    .setup = deconv_setup,
    .reshape = deconv_reshape,
    .forward = deconv_forward,
    .backward = deconv_backward,
    .destroy = deconv_destroy,
    .flops = deconv_flops,
    .describe = deconv_describe,
};
