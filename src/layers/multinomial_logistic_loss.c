/* MultinomialLogisticLoss (Caffe's): E = -1/N sum_n ln(max(p[n, label_n], 1e-20)) over N items
 * of probabilities p (N x dim, e.g. a Softmax's output) and one integer label per item. The
 * gradient is -1/N / max(p, 1e-20) at each item's label and 0 elsewhere; labels take none.
 *
 * A label picks one element per item, which is host logic: the layer runs on the CPU whatever
 * the plan (ops.host), unsplit (the loss sums the batch). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"

#define LOG_THRESHOLD 1e-20f /* Caffe's kLOG_THRESHOLD */

static ct_status mll_setup(ct_layer *l, ct_error *err) {
  (void)l, (void)err;
  return CT_OK;
}

static ct_status mll_reshape(ct_layer *l, ct_error *err) {
  const ct_tensor *x = l->bottom[0], *lab = l->bottom[1];
  char b0[128], b1[128];
  if (x->naxes < 1 || lab->naxes < 1 || x->shape[0] != lab->shape[0])
    return ct_layer_fail(l, err, CT_ESHAPE, "the data and label should have the same first dimension: %s vs %s",
                         ct_tensor_shape_str(x, b0, sizeof b0), ct_tensor_shape_str(lab, b1, sizeof b1));
  if (lab->count != (size_t)lab->shape[0])
    return ct_layer_fail(l, err, CT_ESHAPE, "the label must hold one value per item, got %s",
                         ct_tensor_shape_str(lab, b1, sizeof b1));
  return ct_tensor_reshape(l->top[0], 0, NULL, err);
}

/* Item n's label as an index into its dim probabilities, or a failure naming it. */
static ct_status label_at(const ct_layer *l, const float *lab, int n, size_t dim, size_t *out, ct_error *err) {
  const float v = lab[n];
  if (!(v >= 0 && v < (float)dim) || v != floorf(v))
    return ct_layer_fail(l, err, CT_EINVAL, "label %g of item %d is not a class in [0, %zu)", v, n, dim);
  *out = (size_t)v;
  return CT_OK;
}

static ct_status mll_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  const ct_tensor *x = l->bottom[0];
  const int N = x->shape[0];
  const size_t dim = N ? x->count / (size_t)N : 0;
  const float *prob, *lab;
  CT_TRY(ct_read(l, p, l->bottom[0], &prob, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &lab, err));
  double loss = 0;
  for (int n = 0; n < N; n++) {
    size_t k;
    CT_TRY(label_at(l, lab, n, dim, &k, err));
    loss -= log(fmaxf(prob[(size_t)n * dim + k], LOG_THRESHOLD));
  }
  return ct_layer_set_scalar(l, l->top[0], N ? (float)(loss / N) : 0.0f, err);
}

static ct_status mll_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  const ct_tensor *x = l->bottom[0];
  const int N = x->shape[0];
  const size_t dim = N ? x->count / (size_t)N : 0;
  if (l->propagate_down[1]) { /* labels take no gradient; keep their diff defined */
    float *dl;
    CT_TRY(ct_write_diff(l, p, l->bottom[1], &dl, err));
    memset(dl, 0, l->bottom[1]->count * sizeof(float));
  }
  if (!l->propagate_down[0] || N == 0) return CT_OK;
  float top_diff;
  CT_TRY(ct_layer_loss_scale(l, &top_diff, err));
  const float scale = -top_diff / (float)N;
  const float *prob, *lab;
  float *dx;
  CT_TRY(ct_read(l, p, l->bottom[0], &prob, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &lab, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  memset(dx, 0, x->count * sizeof(float));
  for (int n = 0; n < N; n++) {
    size_t k;
    CT_TRY(label_at(l, lab, n, dim, &k, err));
    const size_t i = (size_t)n * dim + k;
    dx[i] = scale / fmaxf(prob[i], LOG_THRESHOLD);
  }
  return CT_OK;
}

const ct_layer_ops ct_layer_MultinomialLogisticLoss = {.type = "MultinomialLogisticLoss",
                                                       .min_bottom = 2,
                                                       .max_bottom = 2,
                                                       .min_top = 1,
                                                       .max_top = 1,
                                                       .is_loss = true,
                                                       .has_backward = true,
                                                       .label_bottoms = 1u << 1,
                                                       .splits = NULL,
                                                       .host = true,
                                                       .kind = CT_WORK_MEMORY,
                                                       .setup = mll_setup,
                                                       .reshape = mll_reshape,
                                                       .forward = mll_forward,
                                                       .backward = mll_backward};
