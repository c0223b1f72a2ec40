/* SigmoidCrossEntropyLoss: E = -1/norm * sum_i [t_i log s(x_i) + (1 - t_i) log(1 - s(x_i))],
 * s the logistic function, targets t in [0, 1], computed in the form that cannot overflow:
 *   -(x (t - [x >= 0]) - log(1 + e^(x - 2 x [x >= 0]))).
 * Elements whose target equals loss_param.ignore_label (when set) count neither in the loss nor
 * in the gradient. The normalizer follows Caffe's choice for this layer: the normalization
 * field if set, else the legacy normalize flag (true: VALID, false: BATCH_SIZE), else
 * BATCH_SIZE (note: not LossParameter's VALID default, which applies to Softmax). The target
 * bottom gets no gradient. The loss sums over the whole batch, so the layer never splits. */
#include <stdlib.h>

#include "layers/layer.h"

typedef struct sce {
  Caffe__LossParameter__NormalizationMode mode;
  bool has_ignore;
  int ignore_label;
  ct_tensor *sig; /* s(x), shaped like bottom[0], kept for backward */
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
  if (!p->sig && !(p->sig = ct_tensor_create())) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  return ct_tensor_reshape_like(p->sig, x, err);
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

static ct_status sce_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  sce *s = l->priv;
  const ct_driver *d = p->d;
  const ct_tensor *xt = l->bottom[0];
  const float *x, *t;
  float *sig;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &t, err));
  CT_TRY(ct_write(l, p, s->sig, &sig, err));
  double loss = 0;
  size_t valid = 0;
  CT_TRY(d->ops->sigmoid_xent_forward(d, xt->count, x, t, s->has_ignore, s->ignore_label, sig, &loss, &valid));
  s->normalizer = normalizer(s, xt, valid);
  float out = (float)(loss / s->normalizer);
  return ct_layer_set_scalar(l, l->top[0], out, err);
}

static ct_status sce_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  sce *s = l->priv;
  const ct_driver *d = p->d;
  /* targets are not differentiated */
  if (l->propagate_down[1]) {
    float *dt;
    CT_TRY(ct_write_diff(l, p, l->bottom[1], &dt, err));
    CT_TRY(d->ops->memset(d, dt, 0, l->bottom[1]->count * sizeof(float)));
  }
  if (!l->propagate_down[0]) return CT_OK;
  float top_diff;
  CT_TRY(ct_layer_loss_scale(l, &top_diff, err));
  float w = (float)(top_diff / s->normalizer);
  const float *sig, *t;
  float *dx;
  CT_TRY(ct_read(l, p, s->sig, &sig, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &t, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  return d->ops->sigmoid_xent_backward(d, l->bottom[0]->count, sig, t, s->has_ignore, s->ignore_label, w, dx);
}

static void sce_destroy(ct_layer *l) {
  sce *p = l->priv;
  if (!p) return;
  ct_tensor_free(p->sig);
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
                                                       .splits = NULL,
                                                       .gains = false,
                                                       .kind = CT_WORK_MEMORY,
                                                       .setup = sce_setup,
                                                       .reshape = sce_reshape,
                                                       .forward = sce_forward,
                                                       .backward = sce_backward,
                                                       .destroy = sce_destroy};
