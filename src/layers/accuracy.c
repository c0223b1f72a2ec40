/* Accuracy: the fraction of items whose true label is among the top_k scores along `axis`
 * (ties count against: a score equal to the true class's score ranks above it, as in Caffe).
 * Items labelled ignore_label (when set) are skipped. An optional second top gets the accuracy
 * per class, [C] (0 for a class with no items). Bottoms: scores (outer x C x inner), labels
 * (outer * inner values). No backward. */
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/scratch.h"

typedef struct accuracy {
  int top_k;
  int axis; /* canonical, set in reshape */
  bool has_ignore;
  int ignore_label;
  ct_scratch class_count; /* [C] items per class, for the second top */
} accuracy;

static ct_status accuracy_setup(ct_layer *l, ct_error *err) {
  static const Caffe__AccuracyParameter dflt = CAFFE__ACCURACY_PARAMETER__INIT;
  const Caffe__AccuracyParameter *ap = l->lp->accuracy_param ? l->lp->accuracy_param : &dflt;
  if (ap->top_k > (uint32_t)INT32_MAX)
    return ct_layer_fail(l, err, CT_EINVAL, "top_k %u is too large (at most %d)", ap->top_k, INT32_MAX);
  if (ap->top_k < 1)
    return ct_layer_fail(l, err, CT_EINVAL, "top_k must be at least 1, got %u", ap->top_k);
  accuracy *p = calloc(1, sizeof *p);
  if (!p) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = p;
  p->top_k = (int)ap->top_k;
  p->axis = ap->axis;
  p->has_ignore = ap->has_ignore_label;
  p->ignore_label = ap->ignore_label;
  return CT_OK;
}

static ct_status accuracy_reshape(ct_layer *l, ct_error *err) {
  static const Caffe__AccuracyParameter dflt = CAFFE__ACCURACY_PARAMETER__INIT;
  const Caffe__AccuracyParameter *ap = l->lp->accuracy_param ? l->lp->accuracy_param : &dflt;
  accuracy *p = l->priv;
  const ct_tensor *s = l->bottom[0], *lab = l->bottom[1];
  char ss[128], sl[128];
  int axis = ct_tensor_axis(s, ap->axis);
  if (axis < 0)
    return ct_layer_fail(l, err, CT_EINVAL, "axis %d is out of range for scores of shape %s", ap->axis,
                         ct_tensor_shape_str(s, ss, sizeof ss));
  p->axis = axis;
  int C = s->shape[axis];
  if (p->top_k > C)
    return ct_layer_fail(l, err, CT_EINVAL, "top_k (%d) must not exceed the number of classes (%d)", p->top_k, C);
  if (ct_tensor_count_range(s, 0, axis) * ct_tensor_count_range(s, axis + 1, s->naxes) != lab->count)
    return ct_layer_fail(l, err, CT_ESHAPE, "scores %s along axis %d need one label per item, got labels %s",
                         ct_tensor_shape_str(s, ss, sizeof ss), axis, ct_tensor_shape_str(lab, sl, sizeof sl));
  CT_TRY(ct_tensor_reshape(l->top[0], 0, NULL, err));
  if (l->ntop > 1) {
    CT_TRY(ct_tensor_reshape(l->top[1], 1, &C, err));
    CT_TRY(ct_scratch_reserve(&p->class_count, (size_t)C, sizeof(size_t), l, err));
  }
  return CT_OK;
}

static ct_status accuracy_forward(ct_layer *l, ct_error *err) {
  accuracy *p = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  const ct_tensor *s = l->bottom[0];
  int C = s->shape[p->axis];
  size_t outer = ct_tensor_count_range(s, 0, p->axis), inner = ct_tensor_count_range(s, p->axis + 1, s->naxes);
  size_t hits = 0, counted = 0;
  ptrdiff_t bad = d->ops->accuracy(d, outer, (size_t)C, inner, s->data, l->bottom[1]->data, p->top_k, p->has_ignore,
                                   p->ignore_label, l->ntop > 1 ? l->top[1]->data : NULL, p->class_count.p, &hits,
                                   &counted);
  if (bad >= 0) {
    float lv;
    d->ops->download(d, &lv, l->bottom[1]->data + bad, sizeof lv);
    return ct_layer_fail(l, err, CT_EINVAL, "label %g (item %td) is outside the %d classes [0, %d)", lv, bad, C, C);
  }
  float out = counted ? (float)((double)hits / (double)counted) : 0.0f;
  d->ops->upload(d, l->top[0]->data, &out, sizeof out);
  return CT_OK;
}

static void accuracy_destroy(ct_layer *l) {
  accuracy *p = l->priv;
  if (!p) return;
  ct_scratch_free(&p->class_count);
  free(p);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Accuracy = {.type = "Accuracy",
                                        .min_bottom = 2,
                                        .max_bottom = 2,
                                        .min_top = 1,
                                        .max_top = 2,
                                        .has_backward = false,
                                        .setup = accuracy_setup,
                                        .reshape = accuracy_reshape,
                                        .forward = accuracy_forward,
                                        .destroy = accuracy_destroy};
