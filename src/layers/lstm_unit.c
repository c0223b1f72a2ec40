/* LSTMUnit (Caffe's "LSTMUnit"): one step of the LSTM cell. Bottoms c_{t-1} (1 x N x D), the
 * gate inputs (1 x N x 4D: i, f, o, g) and cont (1 x N); tops c_t and h_t (1 x N x D); the
 * math is the driver's lstm_unit_forward / lstm_unit_backward (driver.h). cont takes no
 * gradient. The streams lie on axis 1, so the layer runs unsplit. */
#include "layers/layer.h"

static ct_status unit_setup(ct_layer *l, ct_error *err) {
  (void)l, (void)err;
  return CT_OK;
}

static ct_status unit_reshape(ct_layer *l, ct_error *err) {
  const ct_tensor *c = l->bottom[0], *x = l->bottom[1], *cont = l->bottom[2];
  char b0[128], b1[128], b2[128];
  const bool ok = c->naxes == 3 && x->naxes == 3 && cont->naxes == 2 && c->shape[0] == 1 && x->shape[0] == 1 &&
                  cont->shape[0] == 1 && x->shape[1] == c->shape[1] && cont->shape[1] == c->shape[1] &&
                  (long long)x->shape[2] == 4LL * c->shape[2];
  if (!ok)
    return ct_layer_fail(l, err, CT_ESHAPE,
                         "the bottoms must be c_prev 1 x N x D, gates 1 x N x 4D and cont 1 x N; got %s, %s and %s",
                         ct_tensor_shape_str(c, b0, sizeof b0), ct_tensor_shape_str(x, b1, sizeof b1),
                         ct_tensor_shape_str(cont, b2, sizeof b2));
  CT_TRY(ct_tensor_reshape_like(l->top[0], c, err));
  return ct_tensor_reshape_like(l->top[1], c, err);
}

static ct_status unit_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  const ct_driver *d = p->d;
  const float *cp, *x, *cont;
  float *c, *h;
  CT_TRY(ct_read(l, p, l->bottom[0], &cp, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &x, err));
  CT_TRY(ct_read(l, p, l->bottom[2], &cont, err));
  CT_TRY(ct_write(l, p, l->top[0], &c, err));
  CT_TRY(ct_write(l, p, l->top[1], &h, err));
  return d->ops->lstm_unit_forward(d, (size_t)l->bottom[0]->shape[1], (size_t)l->bottom[0]->shape[2], cp, x, cont, c,
                                   h);
}

static ct_status unit_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  const ct_driver *d = p->d;
  if (l->propagate_down[2]) {
    float *dk;
    CT_TRY(ct_write_diff(l, p, l->bottom[2], &dk, err));
    CT_TRY(d->ops->memset(d, dk, 0, l->bottom[2]->count * sizeof(float)));
  }
  if (!l->propagate_down[0] && !l->propagate_down[1]) return CT_OK;
  const float *cp, *x, *cont, *c, *dc, *dh;
  float *dcp = NULL, *dx = NULL;
  CT_TRY(ct_read(l, p, l->bottom[0], &cp, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &x, err));
  CT_TRY(ct_read(l, p, l->bottom[2], &cont, err));
  CT_TRY(ct_read(l, p, l->top[0], &c, err));
  CT_TRY(ct_read_diff(l, p, l->top[0], &dc, err));
  CT_TRY(ct_read_diff(l, p, l->top[1], &dh, err));
  if (l->propagate_down[0]) CT_TRY(ct_write_diff(l, p, l->bottom[0], &dcp, err));
  if (l->propagate_down[1]) CT_TRY(ct_write_diff(l, p, l->bottom[1], &dx, err));
  return d->ops->lstm_unit_backward(d, (size_t)l->bottom[0]->shape[1], (size_t)l->bottom[0]->shape[2], cp, x, cont, c,
                                    dc, dh, dcp, dx);
}

const ct_layer_ops ct_layer_LSTMUnit = {.type = "LSTMUnit",
                                        .min_bottom = 3,
                                        .max_bottom = 3,
                                        .min_top = 2,
                                        .max_top = 2,
                                        .has_backward = true,
                                        .label_bottoms = 1u << 2,
                                        .splits = NULL,
                                        .kind = CT_WORK_MEMORY,
                                        .setup = unit_setup,
                                        .reshape = unit_reshape,
                                        .forward = unit_forward,
                                        .backward = unit_backward,
                                        .destroy = NULL};
