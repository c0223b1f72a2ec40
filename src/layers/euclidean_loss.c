/* EuclideanLoss: E = 1/(2N) * sum_i (a_i - b_i)^2 over two bottoms of N items each. Both
 * bottoms receive a gradient (b's is the negative of a's), as in Caffe. */
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
  const ct_tensor *a = l->bottom[0], *b = l->bottom[1];
  float *d = p->diff.p;
  double sum = 0;
  for (size_t i = 0; i < a->count; i++) {
    d[i] = a->data[i] - b->data[i];
    sum += (double)d[i] * d[i];
  }
  int N = a->shape[0];
  l->top[0]->data[0] = N > 0 ? (float)(sum / N / 2) : 0.0f;
  return CT_OK;
}

static void euclid_backward(ct_layer *l) {
  euclid *p = l->priv;
  int N = l->bottom[0]->shape[0];
  if (N <= 0) return;
  const float *d = p->diff.p;
  for (int k = 0; k < 2; k++) {
    if (!l->propagate_down[k]) continue;
    float alpha = (k == 0 ? 1.0f : -1.0f) * l->top[0]->diff[0] / (float)N;
    float *dx = l->bottom[k]->diff;
    for (size_t i = 0; i < l->bottom[k]->count; i++) dx[i] = alpha * d[i];
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
