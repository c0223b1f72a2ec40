/* ContrastiveLoss (Caffe's, Hadsell et al. 2006): over N pairs of feature vectors a_n, b_n
 * (dim each) and a similarity label y_n (nonzero: similar),
 *   E = 1/(2N) sum_n  y_n d_n^2 + (1 - y_n) max(margin - d_n, 0)^2,   d_n = ||a_n - b_n||
 * or, with legacy_version, (1 - y_n) max(margin - d_n^2, 0) for the dissimilar pairs. The
 * gradient is Caffe's, including its 1e-4 beside d_n in the non-legacy dissimilar term (so the
 * gradient stays finite at d = 0); a takes +, b takes - of it, the label none.
 *
 * Per-pair decisions on a label are host logic: the layer runs on the CPU whatever the plan
 * (ops.host), unsplit (the loss sums the batch). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"

typedef struct contrastive {
  float margin;
  bool legacy;
  ct_tensor *diff;    /* a - b */
  ct_tensor *dist_sq; /* N: ||a_n - b_n||^2 */
} contrastive;

static ct_status cl_setup(ct_layer *l, ct_error *err) {
  static const Caffe__ContrastiveLossParameter dflt = CAFFE__CONTRASTIVE_LOSS_PARAMETER__INIT;
  const Caffe__ContrastiveLossParameter *cp = l->lp->contrastive_loss_param ? l->lp->contrastive_loss_param : &dflt;
  if (!isfinite(cp->margin)) return ct_layer_fail(l, err, CT_EINVAL, "margin must be a finite number, got %g", cp->margin);
  contrastive *c = calloc(1, sizeof *c);
  if (!c) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = c;
  c->margin = cp->margin;
  c->legacy = cp->legacy_version;
  if (!(c->diff = ct_tensor_create()) || !(c->dist_sq = ct_tensor_create()))
    return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  return CT_OK;
}

static ct_status cl_reshape(ct_layer *l, ct_error *err) {
  contrastive *c = l->priv;
  const ct_tensor *a = l->bottom[0], *b = l->bottom[1], *y = l->bottom[2];
  char s0[128], s1[128];
  if (a->naxes < 1 || !ct_tensor_same_shape(a, b))
    return ct_layer_fail(l, err, CT_ESHAPE, "the two feature bottoms must have the same shape, got %s and %s",
                         ct_tensor_shape_str(a, s0, sizeof s0), ct_tensor_shape_str(b, s1, sizeof s1));
  if (y->naxes < 1 || y->shape[0] != a->shape[0] || y->count != (size_t)y->shape[0])
    return ct_layer_fail(l, err, CT_ESHAPE, "the similarity label must hold one value per pair (%d), got %s",
                         a->shape[0], ct_tensor_shape_str(y, s1, sizeof s1));
  CT_TRY(ct_tensor_reshape_like(c->diff, a, err));
  CT_TRY(ct_tensor_reshape(c->dist_sq, 1, a->shape, err));
  return ct_tensor_reshape(l->top[0], 0, NULL, err);
}

static ct_status cl_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  contrastive *c = l->priv;
  const int N = l->bottom[0]->shape[0];
  const size_t dim = N ? l->bottom[0]->count / (size_t)N : 0;
  const float *a, *b, *y;
  float *diff, *dsq;
  CT_TRY(ct_read(l, p, l->bottom[0], &a, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &b, err));
  CT_TRY(ct_read(l, p, l->bottom[2], &y, err));
  CT_TRY(ct_write(l, p, c->diff, &diff, err));
  CT_TRY(ct_write(l, p, c->dist_sq, &dsq, err));
  double loss = 0;
  for (int n = 0; n < N; n++) {
    double s = 0;
    for (size_t j = (size_t)n * dim; j < (size_t)(n + 1) * dim; j++) {
      diff[j] = a[j] - b[j];
      s += (double)diff[j] * diff[j];
    }
    dsq[n] = (float)s;
    if ((int)y[n]) {
      loss += dsq[n];
    } else if (c->legacy) {
      loss += fmaxf(c->margin - dsq[n], 0.0f);
    } else {
      const float m = fmaxf(c->margin - sqrtf(dsq[n]), 0.0f);
      loss += (double)m * m;
    }
  }
  return ct_layer_set_scalar(l, l->top[0], N ? (float)(loss / N / 2) : 0.0f, err);
}

static ct_status cl_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  contrastive *c = l->priv;
  const int N = l->bottom[0]->shape[0];
  const size_t dim = N ? l->bottom[0]->count / (size_t)N : 0;
  if (l->propagate_down[2]) {
    float *dl;
    CT_TRY(ct_write_diff(l, p, l->bottom[2], &dl, err));
    memset(dl, 0, l->bottom[2]->count * sizeof(float));
  }
  if ((!l->propagate_down[0] && !l->propagate_down[1]) || N == 0) return CT_OK;
  float top_diff;
  CT_TRY(ct_layer_loss_scale(l, &top_diff, err));
  const float *y, *diff, *dsq;
  CT_TRY(ct_read(l, p, l->bottom[2], &y, err));
  CT_TRY(ct_read(l, p, c->diff, &diff, err));
  CT_TRY(ct_read(l, p, c->dist_sq, &dsq, err));
  for (int k = 0; k < 2; k++) {
    if (!l->propagate_down[k]) continue;
    const float alpha = (k == 0 ? 1.0f : -1.0f) * top_diff / (float)N;
    float *dx;
    CT_TRY(ct_write_diff(l, p, l->bottom[k], &dx, err));
    for (int n = 0; n < N; n++) {
      float beta = 0;
      if ((int)y[n]) {
        beta = alpha;
      } else {
        float mdist;
        if (c->legacy) {
          mdist = c->margin - dsq[n];
          beta = -alpha;
        } else {
          const float d = sqrtf(dsq[n]);
          mdist = c->margin - d;
          beta = -alpha * mdist / (d + 1e-4f);
        }
        if (!(mdist > 0)) beta = 0;
      }
      for (size_t j = (size_t)n * dim; j < (size_t)(n + 1) * dim; j++) dx[j] = beta * diff[j];
    }
  }
  return CT_OK;
}

static void cl_destroy(ct_layer *l) {
  contrastive *c = l->priv;
  if (!c) return;
  ct_tensor_free(c->diff);
  ct_tensor_free(c->dist_sq);
  free(c);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_ContrastiveLoss = {.type = "ContrastiveLoss",
                                               .min_bottom = 3,
                                               .max_bottom = 3,
                                               .min_top = 1,
                                               .max_top = 1,
                                               .is_loss = true,
                                               .has_backward = true,
                                               .label_bottoms = 1u << 2,
                                               .splits = NULL,
                                               .host = true,
                                               .kind = CT_WORK_MEMORY,
                                               .setup = cl_setup,
                                               .reshape = cl_reshape,
                                               .forward = cl_forward,
                                               .backward = cl_backward,
                                               .destroy = cl_destroy};
