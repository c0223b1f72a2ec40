/* HingeLoss (Caffe's): the one-vs-all hinge over N items of dim scores x and one integer label
 * each. With t = +1 at the label and -1 elsewhere, the margins m = max(0, 1 - t x) give
 *   L1:  E = 1/N sum m             dE/dx = -t [m > 0] / N
 *   L2:  E = 1/N sum m^2           dE/dx = -2 t m / N
 * (Caffe's norms: L2 is the squared hinge, without a factor 1/2). Labels take no gradient.
 *
 * A label picks one element per item, which is host logic: the layer runs on the CPU whatever
 * the plan (ops.host), unsplit (the loss sums the batch). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"

typedef struct hinge {
  bool l2;
} hinge;

static ct_status hinge_setup(ct_layer *l, ct_error *err) {
  static const Caffe__HingeLossParameter dflt = CAFFE__HINGE_LOSS_PARAMETER__INIT;
  const Caffe__HingeLossParameter *hp = l->lp->hinge_loss_param ? l->lp->hinge_loss_param : &dflt;
  if (hp->norm != CAFFE__HINGE_LOSS_PARAMETER__NORM__L1 && hp->norm != CAFFE__HINGE_LOSS_PARAMETER__NORM__L2)
    return ct_layer_fail(l, err, CT_EINVAL, "norm must be L1 or L2 (got %d)", (int)hp->norm);
  hinge *h = calloc(1, sizeof *h);
  if (!h) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  h->l2 = hp->norm == CAFFE__HINGE_LOSS_PARAMETER__NORM__L2;
  l->priv = h;
  return CT_OK;
}

static ct_status hinge_reshape(ct_layer *l, ct_error *err) {
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

static ct_status label_at(const ct_layer *l, const float *lab, int n, size_t dim, size_t *out, ct_error *err) {
  const float v = lab[n];
  if (!(v >= 0 && v < (float)dim) || v != floorf(v))
    return ct_layer_fail(l, err, CT_EINVAL, "label %g of item %d is not a class in [0, %zu)", v, n, dim);
  *out = (size_t)v;
  return CT_OK;
}

/* The margin of element j of item n (k: the item's label). */
static float margin(const float *x, size_t j, size_t k) { return fmaxf(0.0f, 1.0f + (j == k ? -x[j] : x[j])); }

static ct_status hinge_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  const hinge *h = l->priv;
  const ct_tensor *xt = l->bottom[0];
  const int N = xt->shape[0];
  const size_t dim = N ? xt->count / (size_t)N : 0;
  const float *x, *lab;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &lab, err));
  double loss = 0;
  for (int n = 0; n < N; n++) {
    size_t k;
    CT_TRY(label_at(l, lab, n, dim, &k, err));
    const float *xn = x + (size_t)n * dim;
    for (size_t j = 0; j < dim; j++) {
      const double m = margin(xn, j, k);
      loss += h->l2 ? m * m : m;
    }
  }
  return ct_layer_set_scalar(l, l->top[0], N ? (float)(loss / N) : 0.0f, err);
}

static ct_status hinge_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  const hinge *h = l->priv;
  const ct_tensor *xt = l->bottom[0];
  const int N = xt->shape[0];
  const size_t dim = N ? xt->count / (size_t)N : 0;
  if (l->propagate_down[1]) {
    float *dl;
    CT_TRY(ct_write_diff(l, p, l->bottom[1], &dl, err));
    memset(dl, 0, l->bottom[1]->count * sizeof(float));
  }
  if (!l->propagate_down[0] || N == 0) return CT_OK;
  float top_diff;
  CT_TRY(ct_layer_loss_scale(l, &top_diff, err));
  const float scale = top_diff / (float)N * (h->l2 ? 2.0f : 1.0f);
  const float *x, *lab;
  float *dx;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &lab, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  for (int n = 0; n < N; n++) {
    size_t k;
    CT_TRY(label_at(l, lab, n, dim, &k, err));
    const float *xn = x + (size_t)n * dim;
    float *dn = dx + (size_t)n * dim;
    for (size_t j = 0; j < dim; j++) {
      const float m = margin(xn, j, k), sign = j == k ? -1.0f : 1.0f;
      dn[j] = h->l2 ? scale * sign * m : (m > 0 ? scale * sign : 0.0f);
    }
  }
  return CT_OK;
}

static void hinge_destroy(ct_layer *l) {
  free(l->priv);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_HingeLoss = {.type = "HingeLoss",
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
                                         .setup = hinge_setup,
                                         .reshape = hinge_reshape,
                                         .forward = hinge_forward,
                                         .backward = hinge_backward,
                                         .destroy = hinge_destroy};
