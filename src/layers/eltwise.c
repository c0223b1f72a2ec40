/* Eltwise: combines bottoms of one shape element by element.
 *  - SUM: y = sum_k coeff_k x_k (coeff: none, or one per bottom; default 1)
 *  - PROD: y = prod_k x_k; the gradient is the product of the other bottoms (stable_prod_grad,
 *    the default) or y / x_k
 *  - MAX: y = max_k x_k; the winner of each element (the later bottom on ties between the
 *    first two, the earlier one after that, as in Caffe) gets the whole gradient. */
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/scratch.h"

typedef struct eltwise {
  ct_eltwise_op op;
  bool stable_prod_grad;
  float *coeff;       /* nbottom values for SUM (driver memory), or NULL for all 1 */
  ct_scratch winner;  /* MAX: int per element, the bottom that won */
  const float **x;    /* the bottoms' data, gathered for the driver (host) */
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
  p->op = ep->operation == CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__PROD  ? CT_ELTWISE_PROD
          : ep->operation == CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__SUM ? CT_ELTWISE_SUM
                                                                       : CT_ELTWISE_MAX;
  p->stable_prod_grad = ep->stable_prod_grad;
  p->x = calloc((size_t)l->nbottom, sizeof *p->x);
  if (!p->x) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  if (ep->n_coeff) {
    const ct_driver *d = ct_layer_driver(l);
    p->coeff = d->ops->alloc(d, ep->n_coeff * sizeof(float));
    if (!p->coeff) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
    d->ops->upload(d, p->coeff, ep->coeff, ep->n_coeff * sizeof(float));
  }
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
  if (p->op == CT_ELTWISE_MAX) return ct_scratch_reserve(&p->winner, b0->count, sizeof(int), l, err);
  return CT_OK;
}

static ct_status eltwise_forward(ct_layer *l, ct_error *err) {
  (void)err;
  eltwise *p = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  for (int k = 0; k < l->nbottom; k++) p->x[k] = l->bottom[k]->data;
  d->ops->eltwise_forward(d, p->op, l->top[0]->count, l->nbottom, p->x, p->coeff, l->top[0]->data, p->winner.p);
  return CT_OK;
}

static void eltwise_backward(ct_layer *l) {
  eltwise *p = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  for (int k = 0; k < l->nbottom; k++) p->x[k] = l->bottom[k]->data;
  for (int k = 0; k < l->nbottom; k++) {
    if (!l->propagate_down[k]) continue;
    d->ops->eltwise_backward(d, p->op, l->top[0]->count, l->nbottom, p->x, k, p->coeff, p->stable_prod_grad,
                             l->top[0]->data, l->top[0]->diff, p->winner.p, l->bottom[k]->diff);
  }
}

static void eltwise_destroy(ct_layer *l) {
  eltwise *p = l->priv;
  if (!p) return;
  ct_scratch_free(&p->winner);
  ct_layer_release(l, p->coeff);
  free(p->x);
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
