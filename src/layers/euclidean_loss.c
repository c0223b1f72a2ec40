/* EuclideanLoss: E = 1/(2N) * sum_i (a_i - b_i)^2 over two bottoms of N items each. Both
 * bottoms receive a gradient (b's is the negative of a's), as in Caffe. The loss sums over the
 * whole batch (in one running sum), so the layer never splits. */
#include <stdlib.h>

#include "layers/layer.h"

typedef struct euclid {
  ct_tensor *delta; /* a - b, shaped like a, kept for backward */
} euclid;

static ct_status euclid_setup(ct_layer *l, ct_error *err) {
  euclid *p = calloc(1, sizeof *p);
  if (!p) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = p;
  return CT_OK;
}

static ct_status euclid_reshape(ct_layer *l, ct_error *err) {
  euclid *p = l->priv;
  const ct_tensor *a = l->bottom[0], *b = l->bottom[1];
  char sa[128], sb[128];
  if (a->naxes < 1 || b->naxes < 1 || a->shape[0] != b->shape[0] || a->count != b->count)
    return ct_layer_fail(l, err, CT_ESHAPE,
                         "the two bottoms must have the same first axis and the same count, got %s and %s",
                         ct_tensor_shape_str(a, sa, sizeof sa), ct_tensor_shape_str(b, sb, sizeof sb));
  CT_TRY(ct_tensor_reshape(l->top[0], 0, NULL, err));
  if (!p->delta && !(p->delta = ct_tensor_create())) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  return ct_tensor_reshape_like(p->delta, a, err);
}

static ct_status euclid_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  euclid *e = l->priv;
  const ct_driver *d = p->d;
  const ct_tensor *at = l->bottom[0];
  const float *a, *b;
  float *diff;
  CT_TRY(ct_read(l, p, l->bottom[0], &a, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &b, err));
  CT_TRY(ct_write(l, p, e->delta, &diff, err));
  CT_TRY(d->ops->sub(d, at->count, a, b, diff));
  double sum = 0.0;
  CT_TRY(d->ops->sumsq(d, at->count, diff, 0.0, &sum));
  int N = at->shape[0];
  float out = N > 0 ? (float)(sum / N / 2) : 0.0f;
  return ct_layer_set_scalar(l, l->top[0], out, err);
}

static ct_status euclid_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  euclid *e = l->priv;
  const ct_driver *d = p->d;
  int N = l->bottom[0]->shape[0];
  if (N <= 0) return CT_OK;
  float top_diff;
  CT_TRY(ct_layer_loss_scale(l, &top_diff, err));
  const float *diff;
  CT_TRY(ct_read(l, p, e->delta, &diff, err));
  for (int k = 0; k < 2; k++) {
    if (!l->propagate_down[k]) continue;
    float alpha = (k == 0 ? 1.0f : -1.0f) * top_diff / (float)N;
    float *dx;
    CT_TRY(ct_write_diff(l, p, l->bottom[k], &dx, err));
    CT_TRY(d->ops->scal(d, l->bottom[k]->count, alpha, diff, dx));
  }
  return CT_OK;
}

static void euclid_destroy(ct_layer *l) {
  euclid *p = l->priv;
  if (!p) return;
  ct_tensor_free(p->delta);
  free(p);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_EuclideanLoss = {.type = "EuclideanLoss",
                                             .min_bottom = 2,
                                             .max_bottom = 2,
                                             .min_top = 1,
                                             .max_top = 1,
                                             .is_loss = true,
                                             .has_backward = true,
                                             .splits = NULL,
                                             .gains = false,
                                             .kind = CT_WORK_MEMORY,
                                             .setup = euclid_setup,
                                             .reshape = euclid_reshape,
                                             .forward = euclid_forward,
                                             .backward = euclid_backward,
                                             .destroy = euclid_destroy};
