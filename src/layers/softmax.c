/* Softmax (Caffe's) over one axis, numerically stable (the driver's softmax entries). */
#include <stdlib.h>

#include "layers/layer.h"

typedef struct softmax_priv {
  size_t outer, C, inner;
  float *scratch;
  size_t scratch_cap;
} softmax_priv;

static const Caffe__SoftmaxParameter default_param = CAFFE__SOFTMAX_PARAMETER__INIT;

static ct_status softmax_setup(ct_layer *l, ct_error *err) {
  l->priv = calloc(1, sizeof(softmax_priv));
  if (!l->priv) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  return CT_OK;
}

static ct_status softmax_reshape(ct_layer *l, ct_error *err) {
  softmax_priv *sp = l->priv;
  const Caffe__SoftmaxParameter *p = l->lp->softmax_param ? l->lp->softmax_param : &default_param;
  const ct_tensor *x = l->bottom[0];
  char buf[128];
  int axis = ct_tensor_axis(x, p->axis);
  if (axis < 0)
    return ct_layer_fail(l, err, CT_EINVAL, "axis %d is out of range for bottom shape %s", p->axis,
                         ct_tensor_shape_str(x, buf, sizeof buf));
  sp->outer = ct_tensor_count_range(x, 0, axis);
  sp->C = (size_t)x->shape[axis];
  sp->inner = ct_tensor_count_range(x, axis + 1, x->naxes);
  if (l->top[0] != x) CT_TRY(ct_tensor_reshape_like(l->top[0], x, err));
  return ct_layer_grow(l, &sp->scratch, &sp->scratch_cap, sp->inner, err);
}

static ct_status softmax_forward(ct_layer *l, ct_error *err) {
  (void)err;
  softmax_priv *sp = l->priv;
  if (sp->C == 0) return CT_OK;
  const ct_driver *d = ct_layer_driver(l);
  d->ops->softmax_forward(d, sp->outer, sp->C, sp->inner, l->bottom[0]->data, l->top[0]->data, sp->scratch);
  return CT_OK;
}

static void softmax_backward(ct_layer *l) {
  softmax_priv *sp = l->priv;
  if (!l->propagate_down[0] || sp->C == 0) return;
  const ct_driver *d = ct_layer_driver(l);
  d->ops->softmax_backward(d, sp->outer, sp->C, sp->inner, l->top[0]->data, l->top[0]->diff, l->bottom[0]->diff,
                           sp->scratch);
}

static void softmax_destroy(ct_layer *l) {
  softmax_priv *sp = l->priv;
  if (sp) ct_layer_release(l, sp->scratch);
  free(sp);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Softmax = {
    .type = "Softmax",
    .min_bottom = 1,
    .max_bottom = 1,
    .min_top = 1,
    .max_top = 1,
    .in_place = true,
    .has_backward = true,
    .setup = softmax_setup,
    .reshape = softmax_reshape,
    .forward = softmax_forward,
    .backward = softmax_backward,
    .destroy = softmax_destroy,
};
