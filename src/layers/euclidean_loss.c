/* EuclideanLoss: E = 1/(2N) * sum_i (a_i - b_i)^2 over two bottoms of N items each. Both
 * bottoms receive a gradient (b's is the negative of a's), as in Caffe. */
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/scratch.h"

typedef struct euclid {
  ct_scratch diff; /* a - b, kept for backward */
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
  return ct_scratch_reserve(&p->diff, a->count, sizeof(float), l, err);
}

static ct_status euclid_forward(ct_layer *l, ct_error *err) {
  (void)err;
  euclid *p = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  const ct_tensor *a = l->bottom[0], *b = l->bottom[1];
  d->ops->sub(d, a->count, a->data, b->data, p->diff.p);
  double sum = d->ops->sumsq(d, a->count, p->diff.p, 0.0);
  int N = a->shape[0];
  float out = N > 0 ? (float)(sum / N / 2) : 0.0f;
  d->ops->upload(d, l->top[0]->data, &out, sizeof out);
  return CT_OK;
}

static void euclid_backward(ct_layer *l) {
  euclid *p = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  int N = l->bottom[0]->shape[0];
  if (N <= 0) return;
  float top_diff;
  d->ops->download(d, &top_diff, l->top[0]->diff, sizeof top_diff);
  for (int k = 0; k < 2; k++) {
    if (!l->propagate_down[k]) continue;
    float alpha = (k == 0 ? 1.0f : -1.0f) * top_diff / (float)N;
    d->ops->scal(d, l->bottom[k]->count, alpha, p->diff.p, l->bottom[k]->diff);
  }
}

static void euclid_destroy(ct_layer *l) {
  euclid *p = l->priv;
  if (!p) return;
  ct_scratch_free(&p->diff);
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
                                             .setup = euclid_setup,
                                             .reshape = euclid_reshape,
                                             .forward = euclid_forward,
                                             .backward = euclid_backward,
                                             .destroy = euclid_destroy};
