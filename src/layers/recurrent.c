/* The machinery RNN and LSTM share (layers/recurrent.h). */
#include "layers/recurrent.h"

#include <stdlib.h>
#include <string.h>

#include "core/filler.h"

static const char *type_of(const ct_recurrent *r) { return r->lstm ? "LSTM" : "RNN"; }

static ct_status new_tensor(ct_layer *l, ct_tensor **t, ct_error *err) {
  if (!(*t = ct_tensor_create())) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  return CT_OK;
}

static ct_status make_blob(ct_layer *l, int j, int rows, int cols, const Caffe__FillerParameter *f, const char *what,
                           ct_error *err) {
  const ct_recurrent *r = l->priv;
  const int shape[2] = {rows, cols};
  CT_TRY(ct_tensor_reshape(l->blobs[j], cols ? 2 : 1, shape, err));
  if (ct_fill(f, l->blobs[j], &l->rng, what, err)) return ct_error_prefix(err, "layer \"%s\" (%s)", l->name, type_of(r));
  return CT_OK;
}

ct_status ct_recurrent_setup(ct_layer *l, bool lstm, ct_error *err) {
  const Caffe__RecurrentParameter *rp = l->lp->recurrent_param;
  ct_recurrent *r = calloc(1, sizeof *r);
  if (!r) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = r;
  r->lstm = lstm;
  r->state_n = -1;
  if (!rp || !rp->has_num_output || rp->num_output == 0 || rp->num_output > (1u << 20))
    return ct_layer_fail(l, err, CT_EINVAL, "recurrent_param.num_output must be given and positive");
  if (rp->debug_info)
    return ct_layer_fail(l, err, CT_EUNSUPPORTED,
                         "debug_info prints Caffe's unrolled net, which cortado does not build; remove it");
  r->D = (int)rp->num_output;
  r->G = lstm ? 4 * r->D : r->D;
  r->expose = rp->expose_hidden;
  const int recur = lstm ? 2 : 1, extra = l->nbottom - 2;
  const int want_tops = 1 + (r->expose ? recur : 0);
  if (l->ntop != want_tops)
    return ct_layer_fail(l, err, CT_EINVAL, "needs %d top%s (the output%s), got %d", want_tops, want_tops > 1 ? "s" : "",
                         r->expose ? (lstm ? ", h_T and c_T with expose_hidden" : " and h_T with expose_hidden") : "",
                         l->ntop);
  bool has_static;
  if (r->expose) {
    if (extra != recur && extra != recur + 1)
      return ct_layer_fail(l, err, CT_EINVAL,
                           "with expose_hidden the bottoms are x, cont, [x_static], %s; got %d bottoms",
                           lstm ? "h_0, c_0" : "h_0", l->nbottom);
    has_static = extra == recur + 1;
  } else {
    if (extra > 1)
      return ct_layer_fail(l, err, CT_EINVAL,
                           "the bottoms are x, cont and optionally x_static (%s with expose_hidden); got %d bottoms",
                           lstm ? "then h_0, c_0" : "then h_0", l->nbottom);
    has_static = extra == 1;
  }
  r->b_static = has_static ? 2 : -1;
  r->b_h0 = r->expose ? 2 + has_static : -1;
  r->b_c0 = r->expose && lstm ? 3 + has_static : -1;
  const ct_tensor *x = l->bottom[0];
  char buf[128];
  if (x->naxes < 2)
    return ct_layer_fail(l, err, CT_ESHAPE, "x must have at least 2 axes (time steps, streams, ...), got %s",
                         ct_tensor_shape_str(x, buf, sizeof buf));
  const size_t I = ct_tensor_count_range(x, 2, x->naxes), Is = has_static ? ct_tensor_inner(l->bottom[2]) : 0;
  if (I == 0 || I > (1u << 30) || (has_static && (Is == 0 || Is > (1u << 30))))
    return ct_layer_fail(l, err, CT_ESHAPE, "the inputs must have a positive width");
  r->I = (int)I;
  r->Is = (int)Is;
  const int nblobs = 3 + has_static + (lstm ? 0 : 2);
  CT_TRY(ct_layer_alloc_blobs(l, nblobs, err));
  int j = 0;
  CT_TRY(make_blob(l, j++, r->G, r->I, rp->weight_filler, "weight_filler", err));
  CT_TRY(make_blob(l, j++, r->G, 0, rp->bias_filler, "bias_filler", err));
  if (has_static) CT_TRY(make_blob(l, j++, r->G, r->Is, rp->weight_filler, "weight_filler", err));
  CT_TRY(make_blob(l, j++, r->G, r->D, rp->weight_filler, "weight_filler", err));
  if (!lstm) {
    CT_TRY(make_blob(l, j++, r->D, r->D, rp->weight_filler, "weight_filler", err));
    CT_TRY(make_blob(l, j++, r->D, 0, rp->bias_filler, "bias_filler", err));
  }
  ct_tensor **ts[] = {&r->xg, &r->hc, &r->h, &r->cell, &r->dg, &r->dh, &r->work, &r->ss, &r->state_h, &r->state_c};
  for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) CT_TRY(new_tensor(l, ts[i], err));
  return CT_OK;
}

static ct_status check_state_bottom(const ct_layer *l, int b, const char *name, ct_error *err) {
  const ct_recurrent *r = l->priv;
  const ct_tensor *t = l->bottom[b];
  char buf[128];
  if (t->naxes != 3 || t->shape[0] != 1 || t->shape[1] != r->N || t->shape[2] != r->D)
    return ct_layer_fail(l, err, CT_ESHAPE, "%s must be 1 x %d x %d (1 x streams x num_output), got %s", name, r->N,
                         r->D, ct_tensor_shape_str(t, buf, sizeof buf));
  return CT_OK;
}

static ct_status zero_host(ct_tensor *t, ct_error *err) {
  float *p;
  CT_TRY(ct_tensor_host(t, CT_DATA, CT_WRITE, &p, err));
  memset(p, 0, t->count * sizeof(float));
  return CT_OK;
}

ct_status ct_recurrent_reshape(ct_layer *l, ct_error *err) {
  ct_recurrent *r = l->priv;
  const ct_tensor *x = l->bottom[0], *cont = l->bottom[1];
  char b0[128], b1[128];
  if (x->naxes < 2)
    return ct_layer_fail(l, err, CT_ESHAPE, "x must have at least 2 axes (time steps, streams, ...), got %s",
                         ct_tensor_shape_str(x, b0, sizeof b0));
  r->T = x->shape[0];
  r->N = x->shape[1];
  if (ct_tensor_count_range(x, 2, x->naxes) != (size_t)r->I)
    return ct_layer_fail(l, err, CT_ESHAPE, "x's items changed width: %s holds %zu per step and stream, set up for %d",
                         ct_tensor_shape_str(x, b0, sizeof b0), ct_tensor_count_range(x, 2, x->naxes), r->I);
  if (cont->naxes != 2 || cont->shape[0] != r->T || cont->shape[1] != r->N)
    return ct_layer_fail(l, err, CT_ESHAPE, "cont must be T x N (%d x %d), as x (%s); got %s", r->T, r->N,
                         ct_tensor_shape_str(x, b0, sizeof b0), ct_tensor_shape_str(cont, b1, sizeof b1));
  if (r->b_static >= 0) {
    const ct_tensor *s = l->bottom[r->b_static];
    if (s->naxes < 1 || s->shape[0] != r->N || ct_tensor_inner(s) != (size_t)r->Is)
      return ct_layer_fail(l, err, CT_ESHAPE, "x_static must be N x ... (N = %d, %d per stream), got %s", r->N, r->Is,
                           ct_tensor_shape_str(s, b0, sizeof b0));
  }
  if (r->b_h0 >= 0) CT_TRY(check_state_bottom(l, r->b_h0, "h_0", err));
  if (r->b_c0 >= 0) CT_TRY(check_state_bottom(l, r->b_c0, "c_0", err));
  const int T = r->T, N = r->N, D = r->D, G = r->G;
  int s3[3] = {T, N, D};
  CT_TRY(ct_tensor_reshape(l->top[0], 3, s3, err));
  int s1[3] = {1, N, D};
  for (int i = 1; i < l->ntop; i++) CT_TRY(ct_tensor_reshape(l->top[i], 3, s1, err));
  int sg[3] = {T, N, G}, sc[3] = {T + 1, N, D}, sw[3] = {4, N, G}, ss[2] = {N, G};
  CT_TRY(ct_tensor_reshape(r->xg, 3, sg, err));
  CT_TRY(ct_tensor_reshape(r->dg, 3, sg, err));
  CT_TRY(ct_tensor_reshape(r->hc, 3, s3, err));
  CT_TRY(ct_tensor_reshape(r->work, 3, sw, err));
  CT_TRY(ct_tensor_reshape(r->ss, 2, ss, err));
  if (r->lstm) {
    CT_TRY(ct_tensor_reshape(r->cell, 3, sc, err));
  } else {
    CT_TRY(ct_tensor_reshape(r->h, 3, s3, err));
    CT_TRY(ct_tensor_reshape(r->dh, 3, s3, err));
  }
  if (!r->expose && r->state_n != N) {
    CT_TRY(ct_tensor_reshape(r->state_h, 3, s1, err));
    CT_TRY(zero_host(r->state_h, err));
    if (r->lstm) {
      CT_TRY(ct_tensor_reshape(r->state_c, 3, s1, err));
      CT_TRY(zero_host(r->state_c, err));
    }
    r->state_n = N;
  }
  return ct_ones_fit(&r->ones, (size_t)T, err);
}

void ct_recurrent_destroy(ct_layer *l) {
  ct_recurrent *r = l->priv;
  if (!r) return;
  ct_tensor *ts[] = {r->xg, r->hc, r->h, r->cell, r->dg, r->dh, r->work, r->ss, r->state_h, r->state_c};
  for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) ct_tensor_free(ts[i]);
  ct_ones_free(&r->ones);
  free(r);
  l->priv = NULL;
}

ct_status ct_recurrent_inputs_forward(ct_layer *l, const ct_part *p, float *xg, ct_error *err) {
  ct_recurrent *r = l->priv;
  const ct_driver *d = p->d;
  const int TN = r->T * r->N, G = r->G;
  const float *x, *wx, *bx;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_read_param(l, p, 0, &wx, err));
  CT_TRY(ct_read_param(l, p, 1, &bx, err));
  CT_TRY(d->ops->gemm(d, false, true, TN, G, r->I, 1.0f, x, wx, 0.0f, xg));
  CT_TRY(d->ops->bias_forward(d, (size_t)TN, (size_t)G, 1, xg, bx, xg));
  if (r->b_static < 0) return CT_OK;
  const float *xs, *ws;
  float *ss;
  CT_TRY(ct_read(l, p, l->bottom[r->b_static], &xs, err));
  CT_TRY(ct_read_param(l, p, 2, &ws, err));
  CT_TRY(ct_write(l, p, r->ss, &ss, err));
  CT_TRY(d->ops->gemm(d, false, true, r->N, G, r->Is, 1.0f, xs, ws, 0.0f, ss));
  const size_t step = (size_t)r->N * G;
  for (int t = 0; t < r->T; t++) CT_TRY(d->ops->add(d, step, xg + (size_t)t * step, ss, xg + (size_t)t * step));
  return CT_OK;
}

ct_status ct_recurrent_initial(ct_layer *l, const ct_part *p, const float **h0, const float **c0, ct_error *err) {
  ct_recurrent *r = l->priv;
  *c0 = NULL;
  if (r->expose) {
    CT_TRY(ct_read(l, p, l->bottom[r->b_h0], h0, err));
    if (r->lstm) CT_TRY(ct_read(l, p, l->bottom[r->b_c0], c0, err));
    return CT_OK;
  }
  CT_TRY(ct_read(l, p, r->state_h, h0, err));
  if (r->lstm) CT_TRY(ct_read(l, p, r->state_c, c0, err));
  return CT_OK;
}

ct_status ct_recurrent_final(ct_layer *l, const ct_part *p, const float *hT, const float *cT, ct_error *err) {
  ct_recurrent *r = l->priv;
  const ct_driver *d = p->d;
  const size_t bytes = (size_t)r->N * r->D * sizeof(float);
  float *h, *c = NULL;
  if (r->expose) {
    CT_TRY(ct_write(l, p, l->top[1], &h, err));
    if (r->lstm) CT_TRY(ct_write(l, p, l->top[2], &c, err));
  } else {
    CT_TRY(ct_write(l, p, r->state_h, &h, err));
    if (r->lstm) CT_TRY(ct_write(l, p, r->state_c, &c, err));
  }
  CT_TRY(d->ops->copy(d, h, hT, bytes));
  if (c) CT_TRY(d->ops->copy(d, c, cT, bytes));
  return CT_OK;
}

ct_status ct_recurrent_final_grads(ct_layer *l, const ct_part *p, float *dhT, float *dcT, ct_error *err) {
  ct_recurrent *r = l->priv;
  const ct_driver *d = p->d;
  const size_t bytes = (size_t)r->N * r->D * sizeof(float);
  if (!r->expose) {
    CT_TRY(d->ops->memset(d, dhT, 0, bytes));
    return dcT ? d->ops->memset(d, dcT, 0, bytes) : CT_OK;
  }
  const float *g;
  CT_TRY(ct_read_diff(l, p, l->top[1], &g, err));
  CT_TRY(d->ops->copy(d, dhT, g, bytes));
  if (!dcT) return CT_OK;
  CT_TRY(ct_read_diff(l, p, l->top[2], &g, err));
  return d->ops->copy(d, dcT, g, bytes);
}

ct_status ct_recurrent_inputs_backward(ct_layer *l, const ct_part *p, const float *dg, const float *dh0,
                                       const float *dc0, ct_error *err) {
  ct_recurrent *r = l->priv;
  const ct_driver *d = p->d;
  const int TN = r->T * r->N, G = r->G;
  const size_t state = (size_t)r->N * r->D;
  /* the states at the first step, to the exposed bottoms */
  if (r->expose) {
    const int b[2] = {r->b_h0, r->b_c0};
    const float *g[2] = {dh0, dc0};
    for (int k = 0; k < 2; k++) {
      if (b[k] < 0 || !l->propagate_down[b[k]]) continue;
      float *dx;
      CT_TRY(ct_write_diff(l, p, l->bottom[b[k]], &dx, err));
      CT_TRY(d->ops->copy(d, dx, g[k], state * sizeof(float)));
    }
  }
  if (l->propagate_down[1]) { /* cont takes no gradient; keep its diff defined */
    float *dc;
    CT_TRY(ct_write_diff(l, p, l->bottom[1], &dc, err));
    CT_TRY(d->ops->memset(d, dc, 0, l->bottom[1]->count * sizeof(float)));
  }
  const float *x, *wx;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_read_param(l, p, 0, &wx, err));
  if (l->param_propagate_down[0]) {
    float *dwx;
    CT_TRY(ct_part_param_grad(l, p, 0, &dwx, err));
    CT_TRY(d->ops->gemm(d, true, false, G, r->I, TN, 1.0f, dg, x, 1.0f, dwx));
  }
  if (l->param_propagate_down[1]) {
    float *dbx;
    CT_TRY(ct_part_param_grad(l, p, 1, &dbx, err));
    CT_TRY(d->ops->scale_backward(d, (size_t)TN, (size_t)G, 1, NULL, dg, NULL, NULL, dbx, NULL));
  }
  if (l->propagate_down[0]) {
    float *dx;
    CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
    CT_TRY(d->ops->gemm(d, false, false, TN, r->I, G, 1.0f, dg, wx, 0.0f, dx));
  }
  if (r->b_static < 0 || (!l->param_propagate_down[2] && !l->propagate_down[r->b_static])) return CT_OK;
  /* x_static was added at every step: its transform's gradient is the sum over the steps */
  const float *ones, *xs, *ws;
  float *dss;
  CT_TRY(ct_part_all(l, p, r->ones.t, CT_DATA, CT_READ, (float **)&ones, err));
  CT_TRY(ct_write(l, p, r->ss, &dss, err));
  CT_TRY(d->ops->gemv(d, true, r->T, r->N * G, 1.0f, dg, ones, 0.0f, dss));
  CT_TRY(ct_read(l, p, l->bottom[r->b_static], &xs, err));
  CT_TRY(ct_read_param(l, p, 2, &ws, err));
  if (l->param_propagate_down[2]) {
    float *dws;
    CT_TRY(ct_part_param_grad(l, p, 2, &dws, err));
    CT_TRY(d->ops->gemm(d, true, false, G, r->Is, r->N, 1.0f, dss, xs, 1.0f, dws));
  }
  if (l->propagate_down[r->b_static]) {
    float *dxs;
    CT_TRY(ct_write_diff(l, p, l->bottom[r->b_static], &dxs, err));
    CT_TRY(d->ops->gemm(d, false, false, r->N, r->Is, G, 1.0f, dss, ws, 0.0f, dxs));
  }
  return CT_OK;
}
