/* Softmax (Caffe's) over one axis, numerically stable (the driver's softmax entries).
 *
 * Each item of the axes before the softmax axis is independent, so the layer splits by image
 * when that axis is not the batch's (axis 0 would mix images). Each partition has its own
 * `inner`-float scratch on its driver. */
#include <stdlib.h>

#include "layers/layer.h"

typedef struct softmax_priv {
  size_t outer, C, inner;
  ct_part_scratch scratch; /* inner floats per partition */
} softmax_priv;

static const Caffe__SoftmaxParameter default_param = CAFFE__SOFTMAX_PARAMETER__INIT;

static const Caffe__SoftmaxParameter *params(const ct_layer *l) {
  return l->lp->softmax_param ? l->lp->softmax_param : &default_param;
}

/* Called before reshape, with the bottom shaped: the axis is canonicalised here itself. */
static bool softmax_splits(const ct_layer *l) { return ct_tensor_axis(l->bottom[0], params(l)->axis) > 0; }

static ct_status softmax_setup(ct_layer *l, ct_error *err) {
  l->priv = calloc(1, sizeof(softmax_priv));
  if (!l->priv) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  return CT_OK;
}

static ct_status softmax_reshape(ct_layer *l, ct_error *err) {
  softmax_priv *sp = l->priv;
  const Caffe__SoftmaxParameter *p = params(l);
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
  return ct_part_scratch_reserve(&sp->scratch, l, sp->inner * sizeof(float), err);
}

/* Partition p's elements of the bottom, and how many softmax rows (of C x inner) they hold. */
static void rows_of(const ct_layer *l, const ct_part *p, size_t *first, size_t *outer) {
  const softmax_priv *sp = l->priv;
  size_t n, row = sp->C * sp->inner;
  ct_part_span(p, l->bottom[0], first, &n);
  *outer = p->whole ? sp->outer : row ? n / row : 0;
}

static ct_status softmax_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  softmax_priv *sp = l->priv;
  if (sp->C == 0) return CT_OK;
  const ct_driver *d = p->d;
  size_t first, outer;
  rows_of(l, p, &first, &outer);
  const float *x;
  float *y;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  return d->ops->softmax_forward(d, outer, sp->C, sp->inner, x + first, y + first,
                                 ct_part_scratch_of(&sp->scratch, p));
}

static ct_status softmax_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  softmax_priv *sp = l->priv;
  if (!l->propagate_down[0] || sp->C == 0) return CT_OK;
  const ct_driver *d = p->d;
  size_t first, outer;
  rows_of(l, p, &first, &outer);
  const float *y, *dy;
  float *dx;
  CT_TRY(ct_read(l, p, l->top[0], &y, err));
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  return d->ops->softmax_backward(d, outer, sp->C, sp->inner, y + first, dy + first, dx + first,
                                  ct_part_scratch_of(&sp->scratch, p));
}

static void softmax_destroy(ct_layer *l) {
  softmax_priv *sp = l->priv;
  if (sp) ct_part_scratch_free(&sp->scratch);
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
    .splits = softmax_splits,
    .gains = true,
    .kind = CT_WORK_MEMORY,
    .setup = softmax_setup,
    .reshape = softmax_reshape,
    .forward = softmax_forward,
    .backward = softmax_backward,
    .destroy = softmax_destroy,
};
