/* The CUDA driver's entries built on two-stage reductions (cuda/kern_red.h): BatchNorm alone and
 * as the fused BatchNorm -> Scale (-> ReLU) chain, the Scale and PReLU parameter gradients, and
 * DIRECT convolution (cuda/kern_dw.h: depthwise and many-group layers). Each reduction queues
 * its partials kernel, then its finals kernel, on the driver's stream; the partials live in the
 * driver's device scratch. Since the number of partials depends on the shape alone, a result
 * is the same on every run and every GPU. */
#include "drivers/cuda/entry.h"

/* The scratch for `pairs` partial pairs (doubles), then `floats` floats after them. */
static ct_status red_scratch(cuda_ctx *c, size_t pairs, size_t floats, double **part, float **extra) {
  void *p = NULL;
  const size_t head = (2 * pairs * sizeof(double) + 255) & ~(size_t)255;
  CT_TRY(ct_cuda_scratch(c, head + floats * sizeof(float) + 64, &p));
  *part = p;
  if (extra) *extra = (float *)((char *)p + head);
  return CT_OK;
}

ct_status ct_cuda_channel_sums_add(cuda_ctx *c, size_t N, size_t C, size_t S, const float *x, float *out) {
  const ctk_chan_red r = ctk_chan_red_of(CTK_RED_SUM, N, C, S);
  double *part = NULL;
  CT_TRY(red_scratch(c, C * r.T, 0, &part, NULL));
  cudaError_t e = (cudaError_t)ctl_chan_partial(c->stream, C * r.T, r, x, NULL, NULL, NULL, part);
  if (e == cudaSuccess) e = (cudaError_t)ctl_red_fin_add(c->stream, C, r.T, part, out);
  return e == cudaSuccess ? CT_OK : ct_cuda_fail(c, e, "channel sums");
}

/* ---------------------------------------------------------------- BatchNorm and the chain */

/* s NULL: BatchNorm alone (no Scale, no ReLU in p). */
static ct_status chain_forward(const ct_driver *d, const char *what, const ct_bn_chain *p, const float *x, float *y,
                               float *xnorm, float *mean, float *std, float *run_mean, float *run_var,
                               float *run_factor, const float *s, const float *b) {
  BEGIN(what);
  const ct_batchnorm *bn = &p->bn;
  if (bn->global) {
    LAUNCH(bn_global_stats, bn->C, *bn, mean, std, run_mean, run_var, run_factor);
  } else {
    ctk_chan_red r = ctk_chan_red_of(CTK_RED_SUM, bn->N, bn->C, bn->S);
    double *part = NULL;
    CHECK_CT(red_scratch(c, bn->C * r.T, 0, &part, NULL));
    LAUNCH(chan_partial, bn->C * r.T, r, x, NULL, NULL, NULL, part);
    LAUNCH(bn_fin_mean, bn->C, *bn, r.T, part, mean);
    r.op = CTK_RED_SQDEV;
    LAUNCH(chan_partial, bn->C * r.T, r, x, NULL, NULL, mean, part);
    LAUNCH(bn_fin_var, bn->C, *bn, r.T, part, mean, std, run_mean, run_var, run_factor);
  }
  LAUNCH(chain_fwd, bn->N * bn->C * bn->S, *p, x, y, xnorm, mean, std, s, b);
  END
}

/* s NULL: BatchNorm alone (y is then not read). The sums first (dx may overwrite dy). */
static ct_status chain_backward(const ct_driver *d, const char *what, const ct_bn_chain *p, const float *y,
                                const float *dy, const float *xnorm, const float *std, const float *s, float *ds,
                                float *db, float *dx, float *dz) {
  BEGIN(what);
  const ct_batchnorm *bn = &p->bn;
  const bool batch = !bn->global && bn->N * bn->S > 0 && dx;
  float *ab = NULL;
  if (batch || ds || db) {
    ctk_chan_red r = ctk_chan_red_of(CTK_RED_GRAD, bn->N, bn->C, bn->S);
    r.relu = p->relu;
    r.slope = p->slope;
    double *part = NULL;
    CHECK_CT(red_scratch(c, bn->C * r.T, 2 * bn->C, &part, &ab));
    LAUNCH(chan_partial, bn->C * r.T, r, dy, y, batch || ds ? xnorm : NULL, NULL, part);
    LAUNCH(grad_fin, bn->C, *bn, r.T, part, s, batch, ab, ds, db);
  }
  if (dx) LAUNCH(chain_bwd, bn->N * bn->C * bn->S, *p, batch, y, dy, xnorm, std, s, ab, dx, dz);
  END
}

static ct_status cuda_batchnorm_forward(const ct_driver *d, const ct_batchnorm *p, const float *x, float *y,
                                        float *xnorm, float *mean, float *std, float *run_mean, float *run_var,
                                        float *run_factor) {
  const ct_bn_chain ch = {.bn = *p};
  return chain_forward(d, "batchnorm_forward", &ch, x, y, xnorm, mean, std, run_mean, run_var, run_factor, NULL,
                       NULL);
}

static ct_status cuda_batchnorm_backward(const ct_driver *d, const ct_batchnorm *p, const float *dy,
                                         const float *xnorm, const float *std, float *dx) {
  const ct_bn_chain ch = {.bn = *p};
  return chain_backward(d, "batchnorm_backward", &ch, NULL, dy, xnorm, std, NULL, NULL, NULL, dx, NULL);
}

static ct_status cuda_bn_chain_forward(const ct_driver *d, const ct_bn_chain *p, const float *x, float *y,
                                       float *xnorm, float *mean, float *std, float *run_mean, float *run_var,
                                       float *run_factor, const float *s, const float *b) {
  return chain_forward(d, "bn_chain_forward", p, x, y, xnorm, mean, std, run_mean, run_var, run_factor, s, b);
}

static ct_status cuda_bn_chain_backward(const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy,
                                        const float *xnorm, const float *std, const float *s, float *ds, float *db,
                                        float *dx, float *dz) {
  return chain_backward(d, "bn_chain_backward", p, y, dy, xnorm, std, s, ds, db, dx, dx ? dz : NULL);
}

/* ---------------------------------------------------------------- Scale and PReLU gradients */

static ct_status cuda_scale_backward(const ct_driver *d, size_t outer, size_t dim, size_t inner, const float *x,
                                     const float *dy, const float *s, float *ds, float *db, float *dx) {
  BEGIN("scale_backward");
  if (ds || db) {
    const ctk_chan_red r = ctk_chan_red_of(CTK_RED_GRAD, outer, dim, inner);
    const ct_batchnorm shape = {.N = outer, .C = dim, .S = inner};
    double *part = NULL;
    CHECK_CT(red_scratch(c, dim * r.T, 0, &part, NULL));
    LAUNCH(chan_partial, dim * r.T, r, dy, NULL, ds ? x : NULL, NULL, part);
    LAUNCH(grad_fin, dim, shape, r.T, part, NULL, false, NULL, ds, db);
  }
  if (dx) LAUNCH(scale_bwd_dx, outer * dim * inner, dim, inner, dy, s, dx);
  END
}

/* The slope gradient first: dx may overwrite dy. One shared slope sums N x 1 x C D. */
static ct_status cuda_prelu_backward(const ct_driver *d, size_t N, size_t C, size_t D, bool shared, const float *x,
                                     const float *dy, const float *a, float *dx, float *da) {
  BEGIN("prelu_backward");
  if (da) {
    const ctk_chan_red r = ctk_chan_red_of(CTK_RED_PRELU, N, shared ? 1 : C, shared ? C * D : D);
    double *part = NULL;
    CHECK_CT(red_scratch(c, r.C * r.T, 0, &part, NULL));
    LAUNCH(chan_partial, r.C * r.T, r, x, dy, NULL, NULL, part);
    LAUNCH(red_fin_add, r.C, r.T, part, da);
  }
  if (dx) LAUNCH(prelu_bwd_dx, N * C * D, C, D, shared, x, dy, a, dx);
  END
}

/* ---------------------------------------------------------------- DIRECT convolution */

/* ws (the CPU's padded planes) is not needed: the bodies test the borders. */
static ct_status cuda_conv_direct_forward(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x,
                                          const float *w, const float *b, float *y, float *ws) {
  BEGIN("conv_direct_forward");
  (void)ws;
  LAUNCH(direct_fwd, (size_t)nb * g->K * g->OH * g->OW, *g, x, w, b, y);
  END
}

static ct_status cuda_conv_direct_backward_data(const ct_driver *d, const ct_conv_geom *g, int nb, const float *w,
                                                const float *dy, float *dx, float *ws) {
  BEGIN("conv_direct_backward_data");
  (void)ws;
  LAUNCH(direct_bwd_data, (size_t)nb * g->C * g->H * g->W, *g, w, dy, dx);
  END
}

static ct_status cuda_conv_direct_backward_weight(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x,
                                                  const float *dy, float *dw, float *db, float *ws) {
  BEGIN("conv_direct_backward_weight");
  (void)ws;
  const size_t P = (size_t)g->OH * g->OW, T = ctk_red_parts((size_t)nb * P);
  const size_t rows = (size_t)g->K * (g->C / g->G) * g->kh * g->kw;
  if (dw) {
    double *part = NULL;
    CHECK_CT(red_scratch(c, rows * T, 0, &part, NULL));
    LAUNCH(direct_wgrad_partial, rows * T, *g, nb, T, x, dy, part);
    LAUNCH(red_fin_add, rows, T, part, dw);
  }
  /* the scratch is reused in stream order (a larger one waits for the stream first) */
  if (db) CHECK_CT(ct_cuda_channel_sums_add(c, (size_t)nb, (size_t)g->K, P, dy, db));
  END
}

void ct_cuda_red_ops(ct_driver_ops *o) {
  o->batchnorm_forward = cuda_batchnorm_forward;
  o->batchnorm_backward = cuda_batchnorm_backward;
  o->bn_chain_forward = cuda_bn_chain_forward;
  o->bn_chain_backward = cuda_bn_chain_backward;
  o->scale_backward = cuda_scale_backward;
  o->prelu_backward = cuda_prelu_backward;
  o->conv_direct_forward = cuda_conv_direct_forward;
  o->conv_direct_backward_data = cuda_conv_direct_backward_data;
  o->conv_direct_backward_weight = cuda_conv_direct_backward_weight;
}
