/* The CUDA driver's layer entries (drivers/driver.h has each contract): lowering type 1 and the
 * 1x1 path as kernels (types 2, 3 and WINOGRAD staged, cuda/staged.c), pooling, LRN, softmax,
 * the losses, accuracy, ArgMax, the LSTM cell and the solver update; and the table. Entries
 * that return values to the host run a kernel per position and add its results up on the host
 * in the CPU's order. */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "drivers/cuda/entry.h"

/* ---------------------------------------------------------------- lowering */

static bool on_gpu(ct_lowering t) { return t != CT_LOWER_TYPE2 && t != CT_LOWER_TYPE3 && t != CT_LOWER_WINOGRAD; }

static ct_status cuda_conv_lower(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *x,
                                 const float *w, float *ws) {
  BEGIN("conv_lower");
  if (!on_gpu(t))
    CHECK_CT(ct_cuda_staged_conv(c, CT_CUDA_LOWER, g, t, nb, x, w, ws, NULL, NULL));
  else if (t != CT_LOWER_POINTWISE)
    LAUNCH(lower1, (size_t)g->C * g->kh * g->kw * nb * g->OH * g->OW, *g, nb, x,
           ws + ct_lower_layout_of(g, t, nb).data);
  END
}

static ct_status cuda_conv_lift(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, float *ws,
                                const float *b, float *y) {
  BEGIN("conv_lift");
  if (!on_gpu(t))
    CHECK_CT(ct_cuda_staged_conv(c, CT_CUDA_LIFT, g, t, nb, b, NULL, ws, y, NULL));
  else if (t == CT_LOWER_POINTWISE) {
    if (b) LAUNCH(lift_pw, (size_t)nb * g->K * g->H * g->W, *g, b, y);
  } else
    LAUNCH(lift1, (size_t)nb * g->K * g->OH * g->OW, *g, nb, ws + ct_lower_layout_of(g, t, nb).product, b, y);
  END
}

static ct_status cuda_conv_lift_grad(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *dy,
                                     float *ws) {
  BEGIN("conv_lift_grad");
  if (!on_gpu(t))
    CHECK_CT(ct_cuda_staged_conv(c, CT_CUDA_LIFT_GRAD, g, t, nb, dy, NULL, ws, NULL, NULL));
  else if (t != CT_LOWER_POINTWISE)
    LAUNCH(lift_grad1, (size_t)nb * g->K * g->OH * g->OW, *g, nb, dy, ws + ct_lower_layout_of(g, t, nb).product);
  END
}

static ct_status cuda_conv_bias_grad(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *dy,
                                     const float *ws, float *db) {
  BEGIN("conv_bias_grad");
  /* type 1: the rows of the lowered dy (K x nb OH OW); else dy itself (nb x K x OH OW) */
  const size_t P = (size_t)g->OH * g->OW;
  if (t == CT_LOWER_TYPE1)
    CHECK_CT(ct_cuda_channel_sums_add(c, 1, (size_t)g->K, (size_t)nb * P, ws + ct_lower_layout_of(g, t, nb).product, db));
  else
    CHECK_CT(ct_cuda_channel_sums_add(c, (size_t)nb, (size_t)g->K, P, dy, db));
  END
}

static ct_status cuda_conv_lower_grad(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, float *ws,
                                      float *dx, float *dw) {
  BEGIN("conv_lower_grad");
  if (!on_gpu(t))
    CHECK_CT(ct_cuda_staged_conv(c, CT_CUDA_LOWER_GRAD, g, t, nb, NULL, NULL, ws, dx, dw));
  else if (t != CT_LOWER_POINTWISE && dx)
    LAUNCH(col2im1, (size_t)nb * g->C * g->H * g->W, *g, nb, ws + ct_lower_layout_of(g, t, nb).data, dx);
  END
}

/* ---------------------------------------------------------------- pooling, LRN, softmax */

static ct_status cuda_pool_forward(const ct_driver *d, const ct_pool_geom *g, size_t planes, const float *x, float *y,
                                   int *argmax, float *mask) {
  BEGIN("pool_forward");
  LAUNCH(pool_fwd, planes * g->OH * g->OW, *g, x, y, argmax, mask);
  END
}

static ct_status cuda_pool_backward(const ct_driver *d, const ct_pool_geom *g, size_t planes, const float *x,
                                    const float *dy, const int *argmax, float *dx) {
  BEGIN("pool_backward");
  LAUNCH(pool_bwd, planes * g->H * g->W, *g, x, dy, argmax, dx);
  END
}

static ct_status cuda_lrn_forward(const ct_driver *d, const ct_lrn_geom *g, size_t nimg, const float *x, float *y,
                                  float *scale, float *spow, float *tmp) {
  (void)tmp;
  BEGIN("lrn_forward");
  LAUNCH(lrn_fwd, nimg * g->C * g->H * g->W, *g, x, y, scale, spow);
  END
}

static ct_status cuda_lrn_backward(const ct_driver *d, const ct_lrn_geom *g, size_t nimg, const float *x,
                                   const float *y, const float *dy, const float *scale, const float *spow, float *dx,
                                   float *tmp) {
  (void)tmp;
  BEGIN("lrn_backward");
  LAUNCH(lrn_bwd, nimg * g->C * g->H * g->W, *g, x, y, dy, scale, spow, dx);
  END
}

static ct_status cuda_softmax_forward(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *x,
                                      float *y, float *scratch) {
  (void)scratch;
  BEGIN("softmax_forward");
  LAUNCH(softmax_fwd, outer * inner, C, inner, x, y);
  END
}

static ct_status cuda_softmax_backward(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *y,
                                       const float *dy, float *dx, float *scratch) {
  (void)scratch;
  BEGIN("softmax_backward");
  LAUNCH(softmax_bwd, outer * inner, C, inner, y, dy, dx);
  END
}

/* ---------------------------------------------------------------- losses and evaluation */

/* Device scratch for n doubles and n ints, and host room for both (plus `extra` bytes). */
static ct_status per_position(cuda_ctx *c, size_t n, size_t extra, double **dl, int **ds, double **hl, int **hs,
                              void **hx) {
  char *dev = NULL, *host = NULL;
  const size_t bl = (n * sizeof(double) + 255) & ~(size_t)255, bs = (n * sizeof(int) + 255) & ~(size_t)255;
  CT_TRY(ct_cuda_scratch(c, bl + bs + 256, (void **)&dev));
  CT_TRY(ct_cuda_host(c, bl + bs + extra + 256, (void **)&host));
  *dl = (double *)dev;
  *ds = (int *)(dev + bl);
  *hl = (double *)host;
  *hs = (int *)(host + bl);
  if (hx) *hx = host + bl + bs;
  return CT_OK;
}

static ct_status cuda_softmax_loss_forward(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *prob,
                                           const float *labels, bool has_ignore, int ignore, double *loss,
                                           size_t *valid, ptrdiff_t *bad) {
  BEGIN("softmax_loss_forward");
  const size_t n = outer * inner;
  double *dl, *hl;
  int *ds, *hs;
  CHECK_CT(per_position(c, n, 0, &dl, &ds, &hl, &hs, NULL));
  LAUNCH(softmax_loss_pos, n, C, inner, prob, labels, has_ignore, ignore, dl, ds);
  if (n) {
    CHECK_CUDA(cudaMemcpyAsync(hl, dl, n * sizeof(double), cudaMemcpyDeviceToHost, c->stream));
    CHECK_CUDA(cudaMemcpyAsync(hs, ds, n * sizeof(int), cudaMemcpyDeviceToHost, c->stream));
  }
  SYNC();
  *bad = -1;
  double sum = 0.0;
  size_t count = 0;
  for (size_t i = 0; i < n; i++) {
    if (hs[i] == CTK_BAD) {
      *bad = (ptrdiff_t)i;
      goto out;
    }
    if (hs[i] != CTK_COUNTED) continue;
    sum += hl[i];
    count++;
  }
  *loss = sum;
  *valid = count;
  END
}

static ct_status cuda_softmax_loss_backward(const ct_driver *d, size_t outer, size_t C, size_t inner,
                                            const float *prob, const float *labels, bool has_ignore, int ignore,
                                            float scale, float *dx) {
  BEGIN("softmax_loss_backward");
  LAUNCH(softmax_loss_bwd, outer * C * inner, C, inner, prob, labels, has_ignore, ignore, scale, dx);
  END
}

static ct_status cuda_sigmoid_xent_forward(const ct_driver *d, size_t n, const float *x, const float *t,
                                           bool has_ignore, int ignore, float *sig, double *loss, size_t *valid) {
  BEGIN("sigmoid_xent_forward");
  double *dl, *hl;
  int *ds, *hs;
  CHECK_CT(per_position(c, n, 0, &dl, &ds, &hl, &hs, NULL));
  LAUNCH(sigmoid_xent_fwd, n, x, t, has_ignore, ignore, sig, dl, ds);
  if (n) {
    CHECK_CUDA(cudaMemcpyAsync(hl, dl, n * sizeof(double), cudaMemcpyDeviceToHost, c->stream));
    CHECK_CUDA(cudaMemcpyAsync(hs, ds, n * sizeof(int), cudaMemcpyDeviceToHost, c->stream));
  }
  SYNC();
  double sum = 0.0;
  size_t count = 0;
  for (size_t i = 0; i < n; i++)
    if (hs[i] == CTK_COUNTED) {
      sum += hl[i];
      count++;
    }
  *loss = sum;
  *valid = count;
  END
}

static ct_status cuda_sigmoid_xent_backward(const ct_driver *d, size_t n, const float *sig, const float *t,
                                            bool has_ignore, int ignore, float w, float *dx) {
  BEGIN("sigmoid_xent_backward");
  LAUNCH(sigmoid_xent_bwd, n, sig, t, has_ignore, ignore, w, dx);
  END
}

/* The states per position come back with the labels; the counts and the per-class accuracy
 * are made on the host and per_class and class_count (device memory) written back. */
static ct_status cuda_accuracy(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *score,
                               const float *labels, int top_k, bool has_ignore, int ignore, float *per_class,
                               size_t *class_count, size_t *hits, size_t *counted, ptrdiff_t *bad) {
  BEGIN("accuracy");
  const size_t n = outer * inner;
  double *dl, *hl;
  int *ds, *hs;
  char *hx;
  const size_t lab_bytes = (n * sizeof(float) + 63) & ~(size_t)63;
  CHECK_CT(per_position(c, n, lab_bytes + C * (sizeof(float) + sizeof(size_t)) + 64, &dl, &ds, &hl, &hs,
                        (void **)&hx));
  float *hlab = (float *)hx, *hpc = (float *)(hx + lab_bytes);
  size_t *hcc = (size_t *)(hx + lab_bytes + ((C * sizeof(float) + 63) & ~(size_t)63));
  LAUNCH(accuracy_pos, n, C, inner, score, labels, top_k, has_ignore, ignore, ds);
  if (n) {
    CHECK_CUDA(cudaMemcpyAsync(hs, ds, n * sizeof(int), cudaMemcpyDeviceToHost, c->stream));
    CHECK_CUDA(cudaMemcpyAsync(hlab, labels, n * sizeof(float), cudaMemcpyDeviceToHost, c->stream));
  }
  SYNC();
  (void)hl;
  for (size_t k = 0; k < C; k++) {
    hpc[k] = 0;
    hcc[k] = 0;
  }
  size_t h = 0, cnt = 0;
  *bad = -1;
  for (size_t i = 0; i < n; i++) {
    if (hs[i] == CTK_IGNORED) continue;
    if (hs[i] == CTK_BAD) {
      *bad = (ptrdiff_t)i;
      goto out;
    }
    const int y = (int)hlab[i];
    hcc[y]++;
    if (hs[i] == CTK_HIT) {
      h++;
      hpc[y] += 1;
    }
    cnt++;
  }
  for (size_t k = 0; k < C; k++) hpc[k] = hcc[k] ? hpc[k] / (float)hcc[k] : 0.0f;
  if (per_class) CHECK_CUDA(cudaMemcpyAsync(per_class, hpc, C * sizeof(float), cudaMemcpyDefault, c->stream));
  if (class_count) CHECK_CUDA(cudaMemcpyAsync(class_count, hcc, C * sizeof(size_t), cudaMemcpyDefault, c->stream));
  if (per_class || class_count) SYNC(); /* the staging is reused by the next call */
  *hits = h;
  *counted = cnt;
  END
}

static ct_status cuda_argmax(const ct_driver *d, size_t outer, size_t dim, size_t stride, int top_k, bool out_max_val,
                             bool has_axis, const float *x, float *y, ct_rank_entry *scratch) {
  (void)scratch;
  BEGIN("argmax");
  LAUNCH(argmax_pos, outer * stride, dim, stride, top_k, out_max_val, has_axis, x, y);
  END
}

/* ---------------------------------------------------------------- recurrent, update */

static ct_status cuda_lstm_unit_forward(const ct_driver *d, size_t N, size_t D, const float *c_prev, const float *x,
                                        const float *cont, float *cc, float *h) {
  BEGIN("lstm_unit_forward");
  LAUNCH(lstm_fwd, N * D, D, c_prev, x, cont, cc, h);
  END
}

static ct_status cuda_lstm_unit_backward(const ct_driver *d, size_t N, size_t D, const float *c_prev, const float *x,
                                         const float *cont, const float *cc, const float *dc, const float *dh,
                                         float *dc_prev, float *dx) {
  BEGIN("lstm_unit_backward");
  LAUNCH(lstm_bwd, N * D, D, c_prev, x, cont, cc, dc, dh, dc_prev, dx);
  END
}

static ct_status cuda_dropout_mask(const ct_driver *d, uint64_t seed, size_t offset, size_t n, float ratio,
                                   float scale, float *mask) {
  BEGIN("dropout_mask");
  LAUNCH(dropout_mask, n, seed, (uint64_t)offset, ratio, scale, mask);
  END
}

static ct_status cuda_update(const ct_driver *d, const ct_update_step *s, size_t n, float *w, float *g, float *h0,
                             float *h1) {
  BEGIN("update");
  LAUNCH(update, n, *s, w, g, h0, h1);
  END
}

/* ---------------------------------------------------------------- the table */

static ct_driver_ops ops;
static pthread_once_t ops_once = PTHREAD_ONCE_INIT;

static void ops_init(void) {
  ct_cuda_core_ops(&ops);
  ops.conv_lower = cuda_conv_lower;
  ops.conv_lift = cuda_conv_lift;
  ops.conv_lift_grad = cuda_conv_lift_grad;
  ops.conv_bias_grad = cuda_conv_bias_grad;
  ops.conv_lower_grad = cuda_conv_lower_grad;
  ops.pool_forward = cuda_pool_forward;
  ops.pool_backward = cuda_pool_backward;
  ops.lrn_forward = cuda_lrn_forward;
  ops.lrn_backward = cuda_lrn_backward;
  ops.softmax_forward = cuda_softmax_forward;
  ops.softmax_backward = cuda_softmax_backward;
  ops.softmax_loss_forward = cuda_softmax_loss_forward;
  ops.softmax_loss_backward = cuda_softmax_loss_backward;
  ops.sigmoid_xent_forward = cuda_sigmoid_xent_forward;
  ops.sigmoid_xent_backward = cuda_sigmoid_xent_backward;
  ops.accuracy = cuda_accuracy;
  ops.argmax = cuda_argmax;
  ops.lstm_unit_forward = cuda_lstm_unit_forward;
  ops.lstm_unit_backward = cuda_lstm_unit_backward;
  ops.dropout_mask = cuda_dropout_mask;
  ops.update = cuda_update;
  ct_cuda_red_ops(&ops);
}

const ct_driver_ops *ct_cuda_ops(void) {
  pthread_once(&ops_once, ops_init);
  return &ops;
}

/* Every member but region, enter and leave must be set: a NULL entry (one added to driver.h
 * after this driver was written) would crash at its first call, so ct_cuda_create refuses the
 * device instead, and tests/test_cuda_kernels.c fails in CI. Returns the first missing slot's
 * index, or -1. */
int ct_cuda_ops_missing(void) {
  const ct_driver_ops *o = ct_cuda_ops();
  const size_t slot = sizeof(void (*)(void)), n = sizeof *o / slot;
  for (size_t i = 0; i < n; i++) {
    const size_t off = i * slot;
    if (off == offsetof(ct_driver_ops, region) || off == offsetof(ct_driver_ops, enter) ||
        off == offsetof(ct_driver_ops, leave) || off == offsetof(ct_driver_ops, conv_wino_block) ||
        off == offsetof(ct_driver_ops, conv_wino4_block) || off == offsetof(ct_driver_ops, conv_pw) ||
        off == offsetof(ct_driver_ops, bn_chain_backward_x) || off == offsetof(ct_driver_ops, bn_chain_backward_y) ||
        off == offsetof(ct_driver_ops, eltwise_relu_forward) || off == offsetof(ct_driver_ops, eltwise_relu_backward) ||
        off == offsetof(ct_driver_ops, bn_chain_forward_add))
      continue; /* optional: WINOGRAD runs through the staged entries without it, WINOGRAD4 not at
                   all, a 1x1 convolution one GEMM per image, a BatchNorm chain keeps xnorm, an Eltwise -> ReLU pair runs as two layers,
                   a chain before such a pair writes its own output */
    void (*f)(void);
    memcpy(&f, (const char *)o + off, slot);
    if (!f) return (int)i;
  }
  return -1;
}
