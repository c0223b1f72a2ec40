/* SoftmaxWithLoss (Caffe's): the mean (by loss_param.normalization) of -log softmax(x)[label]
 * over the positions of bottom[0] (outer x C x inner, softmax over softmax_param.axis), with
 * integer labels in bottom[1] (outer x inner values). Positions labelled ignore_label count for
 * nothing. An optional second top receives the probabilities. Labels outside [0, C) are a forward
 * error. The loss sums over the whole batch, so the layer never splits (one partition, p->whole,
 * on whichever driver the plan names). */
#include <stdlib.h>

#include "layers/layer.h"

typedef struct sml_priv {
  bool has_ignore;
  int ignore;
  Caffe__LossParameter__NormalizationMode mode;
  size_t outer, C, inner;
  float normalizer;        /* of the last forward */
  ct_tensor *prob;         /* shaped like bottom[0], when there is no second top */
  ct_part_scratch scratch; /* inner floats */
} sml_priv;

static const Caffe__LossParameter default_loss = CAFFE__LOSS_PARAMETER__INIT;
static const Caffe__SoftmaxParameter default_softmax = CAFFE__SOFTMAX_PARAMETER__INIT;

static ct_status sml_setup(ct_layer *l, ct_error *err) {
  const Caffe__LossParameter *p = l->lp->loss_param ? l->lp->loss_param : &default_loss;
  sml_priv *sp = calloc(1, sizeof *sp);
  if (!sp) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = sp;
  sp->has_ignore = p->has_ignore_label;
  sp->ignore = p->ignore_label;
  sp->mode = p->normalization;
  if (!p->has_normalization && p->has_normalize)
    sp->mode = p->normalize ? CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__VALID
                            : CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__BATCH_SIZE;
  switch (sp->mode) {
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__FULL:
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__VALID:
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__BATCH_SIZE:
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__NONE: break;
    default: return ct_layer_fail(l, err, CT_EINVAL, "unknown normalization mode %d", (int)sp->mode);
  }
  return CT_OK;
}

static ct_status sml_reshape(ct_layer *l, ct_error *err) {
  sml_priv *sp = l->priv;
  const Caffe__SoftmaxParameter *p = l->lp->softmax_param ? l->lp->softmax_param : &default_softmax;
  const ct_tensor *x = l->bottom[0], *lab = l->bottom[1];
  char buf[128], buf2[128];
  int axis = ct_tensor_axis(x, p->axis);
  if (axis < 0)
    return ct_layer_fail(l, err, CT_EINVAL, "axis %d is out of range for bottom shape %s", p->axis,
                         ct_tensor_shape_str(x, buf, sizeof buf));
  if (x->naxes > 0 && lab->naxes > 0 && x->shape[0] != lab->shape[0])
    return ct_layer_fail(l, err, CT_ESHAPE, "the data and label should have the same first dimension: %s vs %s",
                         ct_tensor_shape_str(x, buf, sizeof buf), ct_tensor_shape_str(lab, buf2, sizeof buf2));
  sp->outer = ct_tensor_count_range(x, 0, axis);
  sp->C = (size_t)x->shape[axis];
  sp->inner = ct_tensor_count_range(x, axis + 1, x->naxes);
  if (sp->outer * sp->inner != lab->count)
    return ct_layer_fail(l, err, CT_ESHAPE,
                         "number of labels must match number of predictions: predictions %s with softmax axis %d "
                         "need %zu labels, got %s",
                         ct_tensor_shape_str(x, buf, sizeof buf), axis, sp->outer * sp->inner,
                         ct_tensor_shape_str(lab, buf2, sizeof buf2));
  CT_TRY(ct_tensor_reshape(l->top[0], 0, NULL, err));
  if (l->ntop > 1) {
    CT_TRY(ct_tensor_reshape_like(l->top[1], x, err));
  } else {
    if (!sp->prob && !(sp->prob = ct_tensor_create())) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
    CT_TRY(ct_tensor_reshape_like(sp->prob, x, err));
  }
  return ct_part_scratch_reserve(&sp->scratch, l, sp->inner * sizeof(float), err);
}

static float normalizer(const sml_priv *sp, size_t valid) {
  double n;
  switch (sp->mode) {
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__FULL: n = (double)(sp->outer * sp->inner); break;
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__VALID: n = (double)valid; break;
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__BATCH_SIZE: n = (double)sp->outer; break;
    default: n = 1.0; break;
  }
  return (float)(n > 1.0 ? n : 1.0);
}

static ct_tensor *prob_of(ct_layer *l) {
  sml_priv *sp = l->priv;
  return l->ntop > 1 ? l->top[1] : sp->prob;
}

static ct_status sml_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  sml_priv *sp = l->priv;
  const ct_driver *d = p->d;
  const size_t C = sp->C, inner = sp->inner;
  const float *x, *labels;
  float *prob;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &labels, err));
  CT_TRY(ct_write(l, p, prob_of(l), &prob, err));
  if (C > 0) CT_TRY(d->ops->softmax_forward(d, sp->outer, C, inner, x, prob, ct_part_scratch_of(&sp->scratch, p)));
  double loss = 0.0;
  size_t valid = 0;
  ptrdiff_t bad = -1;
  CT_TRY(d->ops->softmax_loss_forward(d, sp->outer, C, inner, prob, labels, sp->has_ignore, sp->ignore, &loss, &valid,
                                      &bad));
  if (bad >= 0) {
    float v;
    CT_TRY(ct_layer_host_value(l, l->bottom[1], (size_t)bad, &v, err));
    if (!(v > -2147483648.0f && v < 2147483648.0f))
      return ct_layer_fail(l, err, CT_EINVAL, "label %g at position %td is not an integer class", v, bad);
    return ct_layer_fail(l, err, CT_EINVAL, "label %d at position %td is outside [0, %zu)", (int)v, bad, C);
  }
  sp->normalizer = normalizer(sp, valid);
  float out = (float)(loss / sp->normalizer);
  return ct_layer_set_scalar(l, l->top[0], out, err);
}

static ct_status sml_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  sml_priv *sp = l->priv;
  const ct_driver *d = p->d;
  /* Labels take no gradient (Caffe refuses to propagate to them); keep their diff defined. */
  if (l->propagate_down[1]) {
    float *dl;
    CT_TRY(ct_write_diff(l, p, l->bottom[1], &dl, err));
    CT_TRY(d->ops->memset(d, dl, 0, l->bottom[1]->count * sizeof(float)));
  }
  if (!l->propagate_down[0]) return CT_OK;
  float top_diff;
  CT_TRY(ct_layer_loss_scale(l, &top_diff, err));
  const float scale = top_diff / sp->normalizer;
  const float *prob, *labels;
  float *dx;
  CT_TRY(ct_read(l, p, prob_of(l), &prob, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &labels, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  return d->ops->softmax_loss_backward(d, sp->outer, sp->C, sp->inner, prob, labels, sp->has_ignore, sp->ignore,
                                       scale, dx);
}

static void sml_destroy(ct_layer *l) {
  sml_priv *sp = l->priv;
  if (sp) {
    ct_tensor_free(sp->prob);
    ct_part_scratch_free(&sp->scratch);
  }
  free(sp);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_SoftmaxWithLoss = {
    .type = "SoftmaxWithLoss",
    .min_bottom = 2,
    .max_bottom = 2,
    .min_top = 1,
    .max_top = 2,
    .is_loss = true,
    .has_backward = true,
    .label_bottoms = 1u << 1,
    .splits = NULL,
    .gains = false,
    .kind = CT_WORK_MEMORY,
    .setup = sml_setup,
    .reshape = sml_reshape,
    .forward = sml_forward,
    .backward = sml_backward,
    .destroy = sml_destroy,
};
