/* SigmoidCrossEntropyLoss: E = -1/norm * sum_i [t_i log s(x_i) + (1 - t_i) log(1 - s(x_i))],
 * s the logistic function, targets t in [0, 1], computed in the form that cannot overflow:
 *   -(x (t - [x >= 0]) - log(1 + e^(x - 2 x [x >= 0]))).
 * Elements whose target equals loss_param.ignore_label (when set) count neither in the loss nor
 * in the gradient. The normalizer follows Caffe's choice for this layer: the normalization
 * field if set, else the legacy normalize flag (true: VALID, false: BATCH_SIZE), else
 * BATCH_SIZE (note: not LossParameter's VALID default, which applies to Softmax). The target
 * bottom gets no gradient. */
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/scratch.h"

typedef struct sce {
  Caffe__LossParameter__NormalizationMode mode;
  bool has_ignore;
  int ignore_label;
  ct_scratch sig; /* s(x), kept for backward */
  double normalizer;
} sce;

static ct_status sce_setup(ct_layer *l, ct_error *err) {
  const Caffe__LossParameter *lp = l->lp->loss_param;
  sce *p = calloc(1, sizeof *p);
  if (!p) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = p;
  p->mode = CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__BATCH_SIZE;
  if (lp && lp->has_normalization)
    p->mode = lp->normalization;
  else if (lp && lp->has_normalize)
    p->mode = lp->normalize ? CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__VALID
                            : CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__BATCH_SIZE;
  if (p->mode < CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__FULL ||
      p->mode > CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__NONE)
    return ct_layer_fail(l, err, CT_EINVAL, "unknown normalization mode %d", (int)p->mode);
  p->has_ignore = lp && lp->has_ignore_label;
  p->ignore_label = p->has_ignore ? lp->ignore_label : 0;
  return CT_OK;
}

static ct_status sce_reshape(ct_layer *l, ct_error *err) {
  sce *p = l->priv;
  const ct_tensor *x = l->bottom[0], *t = l->bottom[1];
  char sx[128], st[128];
  if (x->naxes < 1 || t->naxes < 1 || x->shape[0] != t->shape[0] || x->count != t->count)
    return ct_layer_fail(l, err, CT_ESHAPE,
                         "predictions and targets must have the same first axis and the same count, got %s and %s",
                         ct_tensor_shape_str(x, sx, sizeof sx), ct_tensor_shape_str(t, st, sizeof st));
  CT_TRY(ct_tensor_reshape(l->top[0], 0, NULL, err));
  return ct_scratch_reserve(&p->sig, x->count, sizeof(float), l, err);
}

static double normalizer(const sce *p, const ct_tensor *x, size_t valid) {
  double n;
  switch (p->mode) {
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__FULL:
      n = (double)x->count;
      break;
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__VALID:
      n = (double)valid;
      break;
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__BATCH_SIZE:
      n = x->shape[0];
      break;
    default:
      n = 1;
      break;
  }
  return n > 1 ? n : 1; /* Caffe: never divide by less than one */
}

static ct_status sce_forward(ct_layer *l, ct_error *err) {
  (void)err;
  sce *p = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  const ct_tensor *xt = l->bottom[0];
  double loss = 0;
  size_t valid = 0;
  d->ops->sigmoid_xent_forward(d, xt->count, xt->data, l->bottom[1]->data, p->has_ignore, p->ignore_label, p->sig.p,
                               &loss, &valid);
  p->normalizer = normalizer(p, xt, valid);
  float out = (float)(loss / p->normalizer);
  d->ops->upload(d, l->top[0]->data, &out, sizeof out);
  return CT_OK;
}

static void sce_backward(ct_layer *l) {
  sce *p = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  /* targets are not differentiated */
  if (l->propagate_down[1]) d->ops->memset(d, l->bottom[1]->diff, 0, l->bottom[1]->count * sizeof(float));
  if (!l->propagate_down[0]) return;
  float top_diff;
  d->ops->download(d, &top_diff, l->top[0]->diff, sizeof top_diff);
  float w = (float)(top_diff / p->normalizer);
  d->ops->sigmoid_xent_backward(d, l->bottom[0]->count, p->sig.p, l->bottom[1]->data, p->has_ignore, p->ignore_label,
                                w, l->bottom[0]->diff);
}

static void sce_destroy(ct_layer *l) {
  sce *p = l->priv;
  if (!p) return;
  ct_scratch_free(&p->sig);
  free(p);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_SigmoidCrossEntropyLoss = {.type = "SigmoidCrossEntropyLoss",
                                                       .min_bottom = 2,
                                                       .max_bottom = 2,
                                                       .min_top = 1,
                                                       .max_top = 1,
                                                       .label_bottoms = 1u << 1,
                                                       .is_loss = true,
                                                       .has_backward = true,
                                                       .setup = sce_setup,
                                                       .reshape = sce_reshape,
                                                       .forward = sce_forward,
                                                       .backward = sce_backward,
                                                       .destroy = sce_destroy};
