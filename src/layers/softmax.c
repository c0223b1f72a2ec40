/* Softmax (Caffe's) over one axis, numerically stable (the maximum is subtracted first). */
#include "layers/softmax.h"

#include <math.h>
#include <stdlib.h>

#include "layers/layer.h"

void ct_softmax_forward(size_t outer, size_t C, size_t inner, const float *x, float *y, float *scratch) {
  for (size_t o = 0; o < outer; o++) {
    const float *xo = x + o * C * inner;
    float *yo = y + o * C * inner;
    if (inner == 1) {
      float mx = xo[0], s = 0.0f;
      for (size_t c = 1; c < C; c++) mx = xo[c] > mx ? xo[c] : mx;
      for (size_t c = 0; c < C; c++) {
        yo[c] = expf(xo[c] - mx);
        s += yo[c];
      }
      const float inv = 1.0f / s;
      for (size_t c = 0; c < C; c++) yo[c] *= inv;
      continue;
    }
    float *restrict m = scratch;
    for (size_t i = 0; i < inner; i++) m[i] = xo[i];
    for (size_t c = 1; c < C; c++) {
      const float *restrict xc = xo + c * inner;
      for (size_t i = 0; i < inner; i++) m[i] = xc[i] > m[i] ? xc[i] : m[i];
    }
    for (size_t c = 0; c < C; c++) {
      const float *xc = xo + c * inner;
      float *yc = yo + c * inner;
      for (size_t i = 0; i < inner; i++) yc[i] = expf(xc[i] - m[i]);
    }
    /* the maxima are no longer needed: reuse scratch for the sums */
    for (size_t i = 0; i < inner; i++) m[i] = 0.0f;
    for (size_t c = 0; c < C; c++) {
      const float *restrict yc = yo + c * inner;
      for (size_t i = 0; i < inner; i++) m[i] += yc[i];
    }
    for (size_t i = 0; i < inner; i++) m[i] = 1.0f / m[i];
    for (size_t c = 0; c < C; c++) {
      float *restrict yc = yo + c * inner;
      for (size_t i = 0; i < inner; i++) yc[i] *= m[i];
    }
  }
}

void ct_softmax_backward(size_t outer, size_t C, size_t inner, const float *y, const float *dy, float *dx,
                         float *scratch) {
  for (size_t o = 0; o < outer; o++) {
    const float *yo = y + o * C * inner, *dyo = dy + o * C * inner;
    float *dxo = dx + o * C * inner;
    if (inner == 1) {
      float dot = 0.0f;
      for (size_t c = 0; c < C; c++) dot += dyo[c] * yo[c];
      for (size_t c = 0; c < C; c++) dxo[c] = yo[c] * (dyo[c] - dot);
      continue;
    }
    float *restrict dot = scratch;
    for (size_t i = 0; i < inner; i++) dot[i] = 0.0f;
    for (size_t c = 0; c < C; c++) {
      const float *restrict yc = yo + c * inner, *restrict dyc = dyo + c * inner;
      for (size_t i = 0; i < inner; i++) dot[i] += dyc[i] * yc[i];
    }
    for (size_t c = 0; c < C; c++) {
      const float *yc = yo + c * inner, *dyc = dyo + c * inner;
      float *dxc = dxo + c * inner;
      for (size_t i = 0; i < inner; i++) dxc[i] = yc[i] * (dyc[i] - dot[i]);
    }
  }
}

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
  if (sp->inner > sp->scratch_cap) {
    float *s = malloc(sp->inner * sizeof(float));
    if (!s) return ct_layer_fail(l, err, CT_ENOMEM, "cannot allocate %zu floats", sp->inner);
    free(sp->scratch);
    sp->scratch = s;
    sp->scratch_cap = sp->inner;
  }
  return CT_OK;
}

static ct_status softmax_forward(ct_layer *l, ct_error *err) {
  (void)err;
  softmax_priv *sp = l->priv;
  if (sp->C == 0) return CT_OK;
  ct_softmax_forward(sp->outer, sp->C, sp->inner, l->bottom[0]->data, l->top[0]->data, sp->scratch);
  return CT_OK;
}

static void softmax_backward(ct_layer *l) {
  softmax_priv *sp = l->priv;
  if (!l->propagate_down[0] || sp->C == 0) return;
  ct_softmax_backward(sp->outer, sp->C, sp->inner, l->top[0]->data, l->top[0]->diff, l->bottom[0]->diff,
                      sp->scratch);
}

static void softmax_destroy(ct_layer *l) {
  softmax_priv *sp = l->priv;
  if (sp) free(sp->scratch);
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
