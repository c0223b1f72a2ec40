/* Accuracy: the fraction of items whose true label is among the top_k scores along `axis`
 * (ties count against: a score equal to the true class's score ranks above it, as in Caffe).
 * Items labelled ignore_label (when set) are skipped. An optional second top gets the accuracy
 * per class, [C] (0 for a class with no items). Bottoms: scores (outer x C x inner), labels
 * (outer * inner values). No backward. It counts over the whole batch, so it never splits. */
#include <stdlib.h>

#include "layers/layer.h"

typedef struct accuracy {
  int top_k;
  int axis; /* canonical, set in reshape */
  bool has_ignore;
  int ignore_label;
  ct_part_scratch class_count; /* [C] items per class, for the second top */
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
    CT_TRY(ct_part_scratch_reserve(&p->class_count, l, (size_t)C * sizeof(size_t), err));
  }
  return CT_OK;
}

/* One partition: the whole layer (it never splits), on p's driver. */
static ct_status accuracy_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  accuracy *a = l->priv;
  const ct_driver *d = p->d;
  const ct_tensor *s = l->bottom[0];
  int C = s->shape[a->axis];
  size_t outer = ct_tensor_count_range(s, 0, a->axis), inner = ct_tensor_count_range(s, a->axis + 1, s->naxes);
  const float *score, *labels;
  float *per_class = NULL;
  CT_TRY(ct_read(l, p, l->bottom[0], &score, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &labels, err));
  if (l->ntop > 1) CT_TRY(ct_write(l, p, l->top[1], &per_class, err));
  size_t hits = 0, counted = 0;
  ptrdiff_t bad = -1;
  CT_TRY(d->ops->accuracy(d, outer, (size_t)C, inner, score, labels, a->top_k, a->has_ignore, a->ignore_label,
                          per_class, l->ntop > 1 ? ct_part_scratch_of(&a->class_count, p) : NULL, &hits, &counted,
                          &bad));
  if (bad >= 0) {
    float lv;
    CT_TRY(ct_layer_host_value(l, l->bottom[1], (size_t)bad, &lv, err));
    return ct_layer_fail(l, err, CT_EINVAL, "label %g (item %td) is outside the %d classes [0, %d)", lv, bad, C, C);
  }
  float out = counted ? (float)((double)hits / (double)counted) : 0.0f;
  return ct_layer_set_scalar(l, l->top[0], out, err);
}

static void accuracy_destroy(ct_layer *l) {
  accuracy *p = l->priv;
  if (!p) return;
  ct_part_scratch_free(&p->class_count);
  free(p);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Accuracy = {.type = "Accuracy",
                                        .min_bottom = 2,
                                        .max_bottom = 2,
                                        .min_top = 1,
                                        .max_top = 2,
                                        .has_backward = false,
                                        .splits = NULL,
                                        .gains = false,
                                        .kind = CT_WORK_MEMORY,
                                        .setup = accuracy_setup,
                                        .reshape = accuracy_reshape,
                                        .forward = accuracy_forward,
                                        .destroy = accuracy_destroy};
