/* LSTM (Caffe's "LSTM"; the shared machinery and blob layout are in layers/recurrent.h), with
 * Caffe's gate order i, f, o, g:
 *   gates_t = W_hc (cont_t h_{t-1}) + W_xc x_t + b_c [+ W_xc_static x_static]
 *   (c_t, h_t) = the LSTM cell of (c_{t-1}, gates_t, cont_t)   (driver.h: lstm_unit_forward)
 * The top is h (T x N x num_output); backward runs through time from the last step. */
#include "layers/recurrent.h"

static ct_status lstm_setup(ct_layer *l, ct_error *err) { return ct_recurrent_setup(l, true, err); }

static ct_status lstm_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  ct_recurrent *r = l->priv;
  const ct_driver *d = p->d;
  const int N = r->N, D = r->D, G = r->G;
  const size_t step = (size_t)N * D, gstep = (size_t)N * G;
  float *xg, *hc, *cell, *h;
  const float *h0, *c0, *cont, *whc;
  CT_TRY(ct_write(l, p, r->xg, &xg, err));
  CT_TRY(ct_write(l, p, r->hc, &hc, err));
  CT_TRY(ct_write(l, p, r->cell, &cell, err));
  CT_TRY(ct_write(l, p, l->top[0], &h, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &cont, err));
  CT_TRY(ct_read_param(l, p, ct_recurrent_blob_wh(r), &whc, err));
  CT_TRY(ct_recurrent_inputs_forward(l, p, xg, err));
  CT_TRY(ct_recurrent_initial(l, p, &h0, &c0, err));
  CT_TRY(d->ops->copy(d, cell, c0, step * sizeof(float)));
  const float *prev = h0;
  for (int t = 0; t < r->T; t++) {
    float *hct = hc + t * step, *gt = xg + t * gstep, *ht = h + t * step;
    const float *contt = cont + (size_t)t * N;
    CT_TRY(d->ops->scale_forward(d, 1, (size_t)N, (size_t)D, prev, contt, NULL, hct));
    CT_TRY(d->ops->gemm(d, false, true, N, G, D, 1.0f, hct, whc, 1.0f, gt));
    CT_TRY(d->ops->lstm_unit_forward(d, (size_t)N, (size_t)D, cell + t * step, gt, contt, cell + (t + 1) * step, ht));
    prev = ht;
  }
  return ct_recurrent_final(l, p, h + (size_t)(r->T - 1) * step, cell + (size_t)r->T * step, err);
}

static ct_status lstm_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  ct_recurrent *r = l->priv;
  const ct_driver *d = p->d;
  const int N = r->N, D = r->D, G = r->G;
  const size_t step = (size_t)N * D, gstep = (size_t)N * G;
  const float *xg, *hc, *cell, *dh, *cont, *whc;
  float *dg, *work;
  const int j = ct_recurrent_blob_wh(r);
  CT_TRY(ct_read(l, p, r->xg, &xg, err));
  CT_TRY(ct_read(l, p, r->hc, &hc, err));
  CT_TRY(ct_read(l, p, r->cell, &cell, err));
  CT_TRY(ct_read_diff(l, p, l->top[0], &dh, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &cont, err));
  CT_TRY(ct_read_param(l, p, j, &whc, err));
  CT_TRY(ct_write(l, p, r->dg, &dg, err));
  CT_TRY(ct_write(l, p, r->work, &work, err));
  float *dh_next = work, *dc_next = work + gstep, *dsum = work + 2 * gstep, *dhc = work + 3 * gstep;
  float *dwhc = NULL;
  if (l->param_propagate_down[j]) CT_TRY(ct_part_param_grad(l, p, j, &dwhc, err));
  CT_TRY(ct_recurrent_final_grads(l, p, dh_next, dc_next, err));
  for (int t = r->T - 1; t >= 0; t--) {
    const float *contt = cont + (size_t)t * N, *hct = hc + t * step;
    float *dgt = dg + t * gstep;
    CT_TRY(d->ops->add(d, step, dh + t * step, dh_next, dsum));
    /* dc_next becomes the gradient of c_{t-1} in place */
    CT_TRY(d->ops->lstm_unit_backward(d, (size_t)N, (size_t)D, cell + t * step, xg + t * gstep, contt,
                                      cell + (t + 1) * step, dc_next, dsum, dc_next, dgt));
    if (dwhc) CT_TRY(d->ops->gemm(d, true, false, G, D, N, 1.0f, dgt, hct, 1.0f, dwhc));
    CT_TRY(d->ops->gemm(d, false, false, N, D, G, 1.0f, dgt, whc, 0.0f, dhc));
    CT_TRY(d->ops->scale_forward(d, 1, (size_t)N, (size_t)D, dhc, contt, NULL, dh_next));
  }
  return ct_recurrent_inputs_backward(l, p, dg, dh_next, dc_next, err);
}

const ct_layer_ops ct_layer_LSTM = {.type = "LSTM",
                                    .min_bottom = 2,
                                    .max_bottom = 5,
                                    .min_top = 1,
                                    .max_top = 3,
                                    .has_backward = true,
                                    .label_bottoms = 1u << 1,
                                    .splits = NULL,
                                    .kind = CT_WORK_GEMM,
                                    .setup = lstm_setup,
                                    .reshape = ct_recurrent_reshape,
                                    .forward = lstm_forward,
                                    .backward = lstm_backward,
                                    .destroy = ct_recurrent_destroy};
