/* Eltwise: combines bottoms of one shape element by element.
 *  - SUM: y = sum_k coeff_k x_k (coeff: none, or one per bottom; default 1)
 *  - PROD: y = prod_k x_k; the gradient is the product of the other bottoms (stable_prod_grad,
 *    the default) or y / x_k
 *  - MAX: y = max_k x_k; the winner of each element (the later bottom on ties between the
 *    first two, the earlier one after that, as in Caffe) gets the whole gradient. */
#include <float.h>
#include <string.h>

#include "layers/layer.h"
#include "layers/scratch.h"

typedef struct eltwise {
  Caffe__EltwiseParameter__EltwiseOp op;
  bool stable_prod_grad;
  const float *coeff; /* nbottom values for SUM, or NULL for all 1 */
  ct_scratch winner;  /* MAX: int per element, the bottom that won */
} eltwise;

static const char *op_name(Caffe__EltwiseParameter__EltwiseOp op) {
  switch (op) {
    case CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__PROD:
      return "PROD";
    case CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__SUM:
      return "SUM";
    case CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__MAX:
      return "MAX";
    default:
      return "?";
  }
}

static ct_status eltwise_setup(ct_layer *l, ct_error *err) {
  static const Caffe__EltwiseParameter dflt = CAFFE__ELTWISE_PARAMETER__INIT;
  const Caffe__EltwiseParameter *ep = l->lp->eltwise_param ? l->lp->eltwise_param : &dflt;
  if (ep->operation != CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__PROD &&
      ep->operation != CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__SUM &&
      ep->operation != CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__MAX)
    return ct_layer_fail(l, err, CT_EINVAL, "unknown operation %d", (int)ep->operation);
  if (ep->n_coeff && ep->operation != CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__SUM)
    return ct_layer_fail(l, err, CT_EINVAL, "coeff applies to SUM only, not to %s", op_name(ep->operation));
  if (ep->n_coeff && ep->n_coeff != (size_t)l->nbottom)
    return ct_layer_fail(l, err, CT_EINVAL, "takes one coeff per bottom: %zu coeff for %d bottoms", ep->n_coeff,
                         l->nbottom);
  eltwise *p = calloc(1, sizeof *p);
  if (!p) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = p;
  p->op = ep->operation;
  p->stable_prod_grad = ep->stable_prod_grad;
  p->coeff = ep->n_coeff ? ep->coeff : NULL;
  return CT_OK;
}

static ct_status eltwise_reshape(ct_layer *l, ct_error *err) {
  eltwise *p = l->priv;
  const ct_tensor *b0 = l->bottom[0];
  char s0[128], sk[128];
  for (int k = 1; k < l->nbottom; k++)
    if (!ct_tensor_same_shape(l->bottom[k], b0))
      return ct_layer_fail(l, err, CT_ESHAPE, "bottom %d has shape %s, bottom 0 has %s; all must agree", k,
                           ct_tensor_shape_str(l->bottom[k], sk, sizeof sk), ct_tensor_shape_str(b0, s0, sizeof s0));
  for (int k = 0; k < l->nbottom; k++)
    if (l->top[0] == l->bottom[k]) return ct_layer_fail(l, err, CT_EINVAL, "Eltwise cannot run in place");
  CT_TRY(ct_tensor_reshape_like(l->top[0], b0, err));
  if (p->op == CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__MAX)
    return ct_scratch_reserve(&p->winner, b0->count, sizeof(int), l, err);
  return CT_OK;
}

static ct_status eltwise_forward(ct_layer *l, ct_error *err) {
  (void)err;
  eltwise *p = l->priv;
  float *y = l->top[0]->data;
  size_t n = l->top[0]->count;
  switch (p->op) {
    case CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__PROD:
      memcpy(y, l->bottom[0]->data, n * sizeof(float));
      for (int k = 1; k < l->nbottom; k++) {
        const float *x = l->bottom[k]->data;
        for (size_t i = 0; i < n; i++) y[i] *= x[i];
      }
      break;
    case CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__SUM:
      memset(y, 0, n * sizeof(float));
      for (int k = 0; k < l->nbottom; k++) {
        const float *x = l->bottom[k]->data;
        float c = p->coeff ? p->coeff[k] : 1.0f;
        for (size_t i = 0; i < n; i++) y[i] += c * x[i];
      }
      break;
    default: {
      int *w = p->winner.p;
      const float *x0 = l->bottom[0]->data, *x1 = l->bottom[1]->data;
      for (size_t i = 0; i < n; i++) {
        bool first = x0[i] > x1[i];
        y[i] = first ? x0[i] : x1[i];
        w[i] = first ? 0 : 1;
      }
      for (int k = 2; k < l->nbottom; k++) {
        const float *x = l->bottom[k]->data;
        for (size_t i = 0; i < n; i++)
          if (x[i] > y[i]) {
            y[i] = x[i];
            w[i] = k;
          }
      }
      break;
    }
  }
  return CT_OK;
}

static void eltwise_backward(ct_layer *l) {
  eltwise *p = l->priv;
  const float *y = l->top[0]->data, *dy = l->top[0]->diff;
  size_t n = l->top[0]->count;
  for (int k = 0; k < l->nbottom; k++) {
    if (!l->propagate_down[k]) continue;
    float *dx = l->bottom[k]->diff;
    switch (p->op) {
      case CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__PROD:
        if (p->stable_prod_grad) {
          for (size_t i = 0; i < n; i++) dx[i] = dy[i];
          for (int j = 0; j < l->nbottom; j++) {
            if (j == k) continue;
            const float *x = l->bottom[j]->data;
            for (size_t i = 0; i < n; i++) dx[i] *= x[i];
          }
        } else {
          const float *x = l->bottom[k]->data;
          for (size_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] / x[i];
        }
        break;
      case CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__SUM: {
        float c = p->coeff ? p->coeff[k] : 1.0f;
        for (size_t i = 0; i < n; i++) dx[i] = c * dy[i];
        break;
      }
      default: {
        const int *w = p->winner.p;
        for (size_t i = 0; i < n; i++) dx[i] = w[i] == k ? dy[i] : 0.0f;
        break;
      }
    }
  }
}

static void eltwise_destroy(ct_layer *l) {
  eltwise *p = l->priv;
  if (!p) return;
  ct_scratch_free(&p->winner);
  free(p);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Eltwise = {.type = "Eltwise",
                                       .min_bottom = 2,
                                       .max_bottom = -1,
                                       .min_top = 1,
                                       .max_top = 1,
                                       .has_backward = true,
                                       .setup = eltwise_setup,
                                       .reshape = eltwise_reshape,
                                       .forward = eltwise_forward,
                                       .backward = eltwise_backward,
                                       .destroy = eltwise_destroy};
