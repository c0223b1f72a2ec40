/* InnerProduct (Caffe's fully-connected layer): y (M x N) = x (M x K) * W^T + b, where the axes
 * before `axis` form M and the rest form K. W is N x K, or K x N with transpose: true.
 *
 * A partition runs its images' rows. On the CPU alone the layer is not split over the cores by
 * images (every thread would stream the whole weight matrix and sum a whole weight gradient):
 * it runs as one partition, and the CPU driver splits each GEMM over its threads by the
 * columns of its output, so every element is computed as on one thread. Across devices the
 * rows split like any batch, and the executor sums the partitions' weight gradients. */
#include <stdlib.h>

#include "core/filler.h"
#include "layers/layer.h"

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

/* The rows of x (and y) that partition p owns: the images' rows, each image holding `per`
 * rows (the axes between the batch and `axis`). */
static void ip_rows(const ct_layer *l, const ct_part *p, int *m0, int *m) {
  const ip_priv *ip = l->priv;
  if (p->whole) {
    *m0 = 0;
    *m = ip->M;
    return;
  }
  int per = (int)ct_tensor_count_range(l->bottom[0], 1, ip->axis);
  *m0 = p->begin * per;
  *m = (p->end - p->begin) * per;
}

static bool ip_splits(const ct_layer *l) { return ((const ip_priv *)l->priv)->axis >= 1; }

static ct_status ip_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  ip_priv *ip = l->priv;
  const ct_driver *d = p->d;
  const float *x, *w, *b = NULL;
  float *y;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_read_param(l, p, 0, &w, err));
  if (ip->bias) CT_TRY(ct_read_param(l, p, 1, &b, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  int m0, M;
  ip_rows(l, p, &m0, &M);
  if (M == 0) return CT_OK; /* an empty batch: no rows */
  const int N = ip->N, K = ip->K;
  x += (size_t)m0 * K;
  y += (size_t)m0 * N;
  if (ip->transpose) /* y = x W, W K x N */
    CT_TRY(d->ops->gemm(d, false, false, M, N, K, 1.0f, x, w, 0.0f, y));
  else /* y = x W^T, W N x K */
    CT_TRY(d->ops->gemm(d, false, true, M, N, K, 1.0f, x, w, 0.0f, y));
  if (ip->bias) CT_TRY(d->ops->bias_forward(d, (size_t)M, (size_t)N, 1, y, b, y));
  return CT_OK;
}

static ct_status ip_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  ip_priv *ip = l->priv;
  const ct_driver *d = p->d;
  const float *x, *dy;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  int m0, M;
  ip_rows(l, p, &m0, &M);
  if (M == 0) return CT_OK; /* an empty batch adds nothing to the gradients */
  const int N = ip->N, K = ip->K;
  x += (size_t)m0 * K;
  dy += (size_t)m0 * N;
  if (l->param_propagate_down[0]) {
    float *dw;
    CT_TRY(ct_part_param_grad(l, p, 0, &dw, err));
    if (ip->transpose) /* dW (K x N) += x^T dy */
      CT_TRY(d->ops->gemm(d, true, false, K, N, M, 1.0f, x, dy, 1.0f, dw));
    else /* dW (N x K) += dy^T x */
      CT_TRY(d->ops->gemm(d, true, false, N, K, M, 1.0f, dy, x, 1.0f, dw));
  }
  if (ip->bias && l->param_propagate_down[1]) { /* db += the rows of dy, in row order */
    float *db;
    CT_TRY(ct_part_param_grad(l, p, 1, &db, err));
    for (int m = 0; m < M; m++) CT_TRY(d->ops->axpy(d, (size_t)N, 1.0f, dy + (size_t)m * N, db));
  }
  if (l->propagate_down[0]) {
    const float *w;
    float *dx;
    CT_TRY(ct_read_param(l, p, 0, &w, err));
    CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
    dx += (size_t)m0 * K;
    if (ip->transpose) /* dx = dy W^T, W K x N */
      CT_TRY(d->ops->gemm(d, false, true, M, K, N, 1.0f, dy, w, 0.0f, dx));
    else /* dx = dy W, W N x K */
      CT_TRY(d->ops->gemm(d, false, false, M, K, N, 1.0f, dy, w, 0.0f, dx));
  }
  return CT_OK;
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
    .splits = ip_splits,
    .gains = false,
    .kind = CT_WORK_GEMM,
    .setup = ip_setup,
    .reshape = ip_reshape,
    .forward = ip_forward,
    .backward = ip_backward,
    .destroy = ip_destroy,
    .flops = ip_flops,
};
