/* InnerProduct (Caffe's fully-connected layer): y (M x N) = x (M x K) * W^T + b, where the axes
 * before `axis` form M and the rest form K. W is N x K, or K x N with transpose: true.
 *
 * With several partitions, the layer is split on its neurons rather than its batch (a batch
 * split would have every thread stream the whole weight matrix and sum whole weight gradients):
 * thread i computes the columns [n0, n1) of y and the rows of dW that belong to them, and the
 * columns [k0, k1) of dx, each a single-threaded GEMM on blocks of the shared matrices. No two
 * threads write the same element and no sum is split, so every element is computed as in a
 * one-partition run. OpenBLAS's own threads are then never used, and do not spin on the cores
 * the next layer's partitions need. */
#include <stdlib.h>

#include "core/filler.h"
#include "layers/layer.h"
#include "sched/partition.h"

typedef struct ip_priv {
  int M, K, N, axis;
  bool bias, transpose;
} ip_priv;

static const Caffe__InnerProductParameter default_param = CAFFE__INNER_PRODUCT_PARAMETER__INIT;

static ct_status ip_axis(const ct_layer *l, int axis_param, int *axis, ct_error *err) {
  char buf[128];
  *axis = ct_tensor_axis(l->bottom[0], axis_param);
  if (*axis < 0)
    return ct_layer_fail(l, err, CT_EINVAL, "axis %d is out of range for bottom shape %s", axis_param,
                         ct_tensor_shape_str(l->bottom[0], buf, sizeof buf));
  return CT_OK;
}

static ct_status ip_setup(ct_layer *l, ct_error *err) {
  const Caffe__InnerProductParameter *p = l->lp->inner_product_param ? l->lp->inner_product_param : &default_param;
  if (p->num_output > (1u << 30))
    return ct_layer_fail(l, err, CT_EINVAL, "num_output %u is too large (at most %u)", p->num_output, 1u << 30);
  if (!p->has_num_output || p->num_output == 0)
    return ct_layer_fail(l, err, CT_EINVAL, "num_output must be specified and positive");
  ip_priv *ip = calloc(1, sizeof *ip);
  if (!ip) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = ip;
  ip->N = (int)p->num_output;
  ip->bias = p->bias_term;
  ip->transpose = p->transpose;
  CT_TRY(ip_axis(l, p->axis, &ip->axis, err));
  size_t K = ct_tensor_count_range(l->bottom[0], ip->axis, l->bottom[0]->naxes);
  if (K == 0 || K > (1u << 30)) return ct_layer_fail(l, err, CT_ESHAPE, "input dimension %zu is unusable", K);
  ip->K = (int)K;
  CT_TRY(ct_layer_alloc_blobs(l, ip->bias ? 2 : 1, err));
  int wshape[2] = {ip->transpose ? ip->K : ip->N, ip->transpose ? ip->N : ip->K};
  CT_TRY(ct_tensor_reshape(l->blobs[0], 2, wshape, err));
  if (ct_fill(p->weight_filler, l->blobs[0], &l->rng, "weight_filler", err))
    return ct_error_prefix(err, "layer \"%s\" (InnerProduct)", l->name);
  if (ip->bias) {
    CT_TRY(ct_tensor_reshape(l->blobs[1], 1, &ip->N, err));
    if (ct_fill(p->bias_filler, l->blobs[1], &l->rng, "bias_filler", err))
      return ct_error_prefix(err, "layer \"%s\" (InnerProduct)", l->name);
  }
  return CT_OK;
}

static ct_status ip_reshape(ct_layer *l, ct_error *err) {
  ip_priv *ip = l->priv;
  const ct_tensor *x = l->bottom[0];
  const Caffe__InnerProductParameter *p = l->lp->inner_product_param ? l->lp->inner_product_param : &default_param;
  CT_TRY(ip_axis(l, p->axis, &ip->axis, err));
  size_t K = ct_tensor_count_range(x, ip->axis, x->naxes);
  if (K != (size_t)ip->K)
    return ct_layer_fail(l, err, CT_ESHAPE,
                         "input size incompatible with inner product parameters: %zu inputs per row, expected %d", K,
                         ip->K);
  size_t M = ct_tensor_count_range(x, 0, ip->axis);
  if (M > (1u << 30)) return ct_layer_fail(l, err, CT_ESHAPE, "too many rows (%zu)", M);
  ip->M = (int)M;
  int shape[CT_MAX_AXES];
  for (int i = 0; i < ip->axis; i++) shape[i] = x->shape[i];
  shape[ip->axis] = ip->N;
  return ct_tensor_reshape(l->top[0], ip->axis + 1, shape, err);
}

/* The GEMMs of one block of neurons [n0, n1) or inputs [k0, k1); lda/ldb/ldc are those of the
 * whole matrices, so a block is named by its first element. */
static void ip_forward_cols(const ct_layer *l, int n0, int n1) {
  const ip_priv *ip = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  const float *x = l->bottom[0]->data, *w = l->blobs[0]->data;
  float *y = l->top[0]->data + n0;
  const int N = ip->N, K = ip->K;
  if (ip->transpose) /* y = x W, W K x N */
    d->ops->gemm_ld(d, false, false, ip->M, n1 - n0, K, 1.0f, x, K, w + n0, N, 0.0f, y, N);
  else /* y = x W^T, W N x K */
    d->ops->gemm_ld(d, false, true, ip->M, n1 - n0, K, 1.0f, x, K, w + (size_t)n0 * K, K, 0.0f, y, N);
}

static void ip_weight_grad_cols(const ct_layer *l, int n0, int n1) {
  const ip_priv *ip = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  const float *x = l->bottom[0]->data, *dy = l->top[0]->diff + n0;
  float *dw = l->blobs[0]->diff;
  const int N = ip->N, K = ip->K;
  if (ip->transpose) /* dW (K x N) += x^T dy */
    d->ops->gemm_ld(d, true, false, K, n1 - n0, ip->M, 1.0f, x, K, dy, N, 1.0f, dw + n0, N);
  else /* dW (N x K) += dy^T x */
    d->ops->gemm_ld(d, true, false, n1 - n0, K, ip->M, 1.0f, dy, N, x, K, 1.0f, dw + (size_t)n0 * K, K);
}

static void ip_data_grad_cols(const ct_layer *l, int k0, int k1) {
  const ip_priv *ip = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  const float *w = l->blobs[0]->data, *dy = l->top[0]->diff;
  float *dx = l->bottom[0]->diff + k0;
  const int N = ip->N, K = ip->K;
  if (ip->transpose) /* dx = dy W^T, W K x N */
    d->ops->gemm_ld(d, false, true, ip->M, k1 - k0, N, 1.0f, dy, N, w + (size_t)k0 * N, N, 0.0f, dx, K);
  else /* dx = dy W, W N x K */
    d->ops->gemm_ld(d, false, false, ip->M, k1 - k0, N, 1.0f, dy, N, w + k0, K, 0.0f, dx, K);
}

/* A split of n columns into the layer's partitions at multiples of 16 (whole cache lines and
 * GEMM panels); one part when there are too few columns to be worth it. */
static void ip_split(const ct_layer *l, int n, ct_partition *p) {
  int parts = ct_parallel_parts(l);
  if (!l->pool || n < 64 * parts) parts = 1;
  p->n = parts;
  for (int i = 0; i < parts; i++) {
    int b = (int)((long long)n * i / parts) & ~15, e = i + 1 == parts ? n : (int)((long long)n * (i + 1) / parts) & ~15;
    p->start[i] = b;
    p->size[i] = e - b;
  }
}

typedef struct ip_job {
  ct_layer *l;
  const ct_partition *p;
  void (*cols)(const ct_layer *l, int c0, int c1);
} ip_job;

static void ip_job_part(void *ctx, int i) {
  const ip_job *j = ctx;
  if (j->p->size[i] > 0) j->cols(j->l, j->p->start[i], j->p->start[i] + j->p->size[i]);
}

static void ip_run(ct_layer *l, int ncols, void (*cols)(const ct_layer *l, int c0, int c1)) {
  ct_partition p;
  ip_split(l, ncols, &p);
  ip_job j = {l, &p, cols};
  ct_partition_run(l, &p, ip_job_part, &j);
}

static ct_status ip_forward(ct_layer *l, ct_error *err) {
  (void)err;
  ip_priv *ip = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  float *y = l->top[0]->data;
  if (ip->M == 0) return CT_OK; /* an empty batch: no rows, and NULL buffers that take no offsets */
  ip_run(l, ip->N, ip_forward_cols);
  if (ip->bias) d->ops->bias_forward(d, (size_t)ip->M, (size_t)ip->N, 1, y, l->blobs[1]->data, y);
  return CT_OK;
}

static void ip_backward(ct_layer *l) {
  ip_priv *ip = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  const float *dy = l->top[0]->diff;
  if (ip->M == 0) return; /* an empty batch adds nothing to the gradients */
  if (l->param_propagate_down[0]) ip_run(l, ip->N, ip_weight_grad_cols);
  if (ip->bias && l->param_propagate_down[1]) /* db += the rows of dy, in row order */
    for (int m = 0; m < ip->M; m++) d->ops->axpy(d, (size_t)ip->N, 1.0f, dy + (size_t)m * ip->N, l->blobs[1]->diff);
  if (l->propagate_down[0]) ip_run(l, ip->K, ip_data_grad_cols);
}

static void ip_destroy(ct_layer *l) {
  free(l->priv);
  l->priv = NULL;
}

static double ip_flops(const ct_layer *l) {
  const ip_priv *ip = l->priv;
  return 2.0 * ip->M * (double)ip->K * ip->N;
}

const ct_layer_ops ct_layer_InnerProduct = {
    .type = "InnerProduct",
    .min_bottom = 1,
    .max_bottom = 1,
    .min_top = 1,
    .max_top = 1,
    .has_backward = true,
    .setup = ip_setup,
    .reshape = ip_reshape,
    .forward = ip_forward,
    .backward = ip_backward,
    .destroy = ip_destroy,
    .flops = ip_flops,
};
