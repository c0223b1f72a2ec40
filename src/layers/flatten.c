/* Flatten: merges axes axis..end_axis into one; the top views the bottom's data and diff, so
 * forward and backward move nothing. */
#include "layers/layer.h"

static const Caffe__FlattenParameter *params(const ct_layer *l) {
  static const Caffe__FlattenParameter dflt = CAFFE__FLATTEN_PARAMETER__INIT;
  return l->lp->flatten_param ? l->lp->flatten_param : &dflt;
}

static ct_status flatten_setup(ct_layer *l, ct_error *err) {
  (void)l;
  (void)err;
  return CT_OK;
}

static ct_status flatten_reshape(ct_layer *l, ct_error *err) {
  const Caffe__FlattenParameter *fp = params(l);
  const ct_tensor *b = l->bottom[0];
  char sb[128];
  if (l->top[0] == b) return ct_layer_fail(l, err, CT_EINVAL, "Flatten cannot run in place");
  int start = ct_tensor_axis(b, fp->axis), end = ct_tensor_axis(b, fp->end_axis);
  if (start < 0 || end < 0)
    return ct_layer_fail(l, err, CT_EINVAL, "axis %d or end_axis %d is out of range for a bottom of shape %s", fp->axis,
                         fp->end_axis, ct_tensor_shape_str(b, sb, sizeof sb));
  if (end < start - 1)
    return ct_layer_fail(l, err, CT_EINVAL, "end_axis %d comes before axis %d", fp->end_axis, fp->axis);
  if (b->naxes - (end - start) > CT_MAX_AXES)
    return ct_layer_fail(l, err, CT_ESHAPE, "the top would have more than %d axes", CT_MAX_AXES);
  int shape[CT_MAX_AXES], n = 0;
  for (int i = 0; i < start; i++) shape[n++] = b->shape[i];
  size_t merged = ct_tensor_count_range(b, start, end + 1);
  if (merged > INT32_MAX)
    return ct_layer_fail(l, err, CT_ESHAPE, "the flattened axis of shape %s is too large",
                         ct_tensor_shape_str(b, sb, sizeof sb));
  shape[n++] = (int)merged;
  for (int i = end + 1; i < b->naxes; i++) shape[n++] = b->shape[i];
  CT_TRY(ct_tensor_reshape(l->top[0], n, shape, err));
  ct_tensor_share(l->top[0], b);
  return CT_OK;
}

static ct_status flatten_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  (void)l;
  (void)p;
  (void)err;
  return CT_OK;
}

static ct_status flatten_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  (void)l;
  (void)p;
  (void)err;
  return CT_OK;
}

const ct_layer_ops ct_layer_Flatten = {.type = "Flatten",
                                       .min_bottom = 1,
                                       .max_bottom = 1,
                                       .min_top = 1,
                                       .max_top = 1,
                                       .has_backward = true,
                                       .splits = ct_layer_splits_always,
                                       .gains = false,
                                       .kind = CT_WORK_MEMORY,
                                       .setup = flatten_setup,
                                       .reshape = flatten_reshape,
                                       .forward = flatten_forward,
                                       .backward = flatten_backward};
