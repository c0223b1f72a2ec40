/* RNN (Caffe's "RNN"; the shared machinery and blob layout are in layers/recurrent.h):
 *   h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h [+ W_xh_static x_static])
 *   o_t = tanh(W_ho h_t + b_o)
 * The top is o (T x N x num_output); backward runs through time from the last step. */
#include "layers/recurrent.h"

static ct_status rnn_setup(ct_layer *l, ct_error *err) { return ct_recurrent_setup(l, false, err); }

static ct_status rnn_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  ct_recurrent *r = l->priv;
  const ct_driver *d = p->d;
  const int N = r->N, D = r->D, TN = r->T * r->N;
  const size_t step = (size_t)N * D;
  const ct_neuron tanh_f = {.kind = CT_NEURON_TANH};
  float *a, *hc, *h, *o;
  const float *h0, *c0, *cont, *whh, *who, *bo;
  CT_TRY(ct_write(l, p, r->xg, &a, err));
  CT_TRY(ct_write(l, p, r->hc, &hc, err));
  CT_TRY(ct_write(l, p, r->h, &h, err));
  CT_TRY(ct_write(l, p, l->top[0], &o, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &cont, err));
  const int j = ct_recurrent_blob_wh(r);
  CT_TRY(ct_read_param(l, p, j, &whh, err));
  CT_TRY(ct_read_param(l, p, j + 1, &who, err));
  CT_TRY(ct_read_param(l, p, j + 2, &bo, err));
  CT_TRY(ct_recurrent_inputs_forward(l, p, a, err));
  CT_TRY(ct_recurrent_initial(l, p, &h0, &c0, err));
  const float *prev = h0;
  for (int t = 0; t < r->T; t++) {
    float *hct = hc + t * step, *at = a + t * step, *ht = h + t * step;
    CT_TRY(d->ops->scale_forward(d, 1, (size_t)N, (size_t)D, prev, cont + (size_t)t * N, NULL, hct));
    CT_TRY(d->ops->gemm(d, false, true, N, D, D, 1.0f, hct, whh, 1.0f, at));
    CT_TRY(d->ops->neuron_forward(d, &tanh_f, step, at, ht));
    prev = ht;
  }
  CT_TRY(d->ops->gemm(d, false, true, TN, D, D, 1.0f, h, who, 0.0f, o));
  CT_TRY(d->ops->bias_forward(d, (size_t)TN, (size_t)D, 1, o, bo, o));
  CT_TRY(d->ops->neuron_forward(d, &tanh_f, (size_t)TN * D, o, o));
  return ct_recurrent_final(l, p, h + (size_t)(r->T - 1) * step, NULL, err);
}

static ct_status rnn_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  ct_recurrent *r = l->priv;
  const ct_driver *d = p->d;
  const int N = r->N, D = r->D, TN = r->T * r->N;
  const size_t step = (size_t)N * D;
  const ct_neuron tanh_f = {.kind = CT_NEURON_TANH};
  const float *o, *dout, *hc, *h, *cont, *whh, *who;
  float *dopre, *dh, *dg, *work;
  const int j = ct_recurrent_blob_wh(r);
  CT_TRY(ct_read(l, p, l->top[0], &o, err));
  CT_TRY(ct_read_diff(l, p, l->top[0], &dout, err));
  CT_TRY(ct_read(l, p, r->hc, &hc, err));
  CT_TRY(ct_read(l, p, r->h, &h, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &cont, err));
  CT_TRY(ct_read_param(l, p, j, &whh, err));
  CT_TRY(ct_read_param(l, p, j + 1, &who, err));
  CT_TRY(ct_write(l, p, r->dh, &dh, err));
  CT_TRY(ct_write(l, p, r->dg, &dg, err));
  CT_TRY(ct_write(l, p, r->work, &work, err));
  float *dnext = work, *dsum = work + step, *dhc = work + 2 * step;
  /* the output layer: dopre = dout (1 - o^2), kept in dg's storage until the loop needs it */
  dopre = dg;
  CT_TRY(d->ops->neuron_backward(d, &tanh_f, (size_t)TN * D, o, o, dout, dopre));
  if (l->param_propagate_down[j + 1]) {
    float *dwho;
    CT_TRY(ct_part_param_grad(l, p, j + 1, &dwho, err));
    CT_TRY(d->ops->gemm(d, true, false, D, D, TN, 1.0f, dopre, h, 1.0f, dwho));
  }
  if (l->param_propagate_down[j + 2]) {
    float *dbo;
    CT_TRY(ct_part_param_grad(l, p, j + 2, &dbo, err));
    CT_TRY(d->ops->scale_backward(d, (size_t)TN, (size_t)D, 1, NULL, dopre, NULL, NULL, dbo, NULL));
  }
  CT_TRY(d->ops->gemm(d, false, false, TN, D, D, 1.0f, dopre, who, 0.0f, dh));
  /* through time: dg_t = (dh_t + dh_next) (1 - h_t^2); dh_next = cont_t (dg_t W_hh) */
  float *dwhh = NULL;
  if (l->param_propagate_down[j]) CT_TRY(ct_part_param_grad(l, p, j, &dwhh, err));
  CT_TRY(ct_recurrent_final_grads(l, p, dnext, NULL, err));
  for (int t = r->T - 1; t >= 0; t--) {
    const float *ht = h + t * step, *hct = hc + t * step;
    float *dgt = dg + t * step;
    CT_TRY(d->ops->add(d, step, dh + t * step, dnext, dsum));
    CT_TRY(d->ops->neuron_backward(d, &tanh_f, step, ht, ht, dsum, dgt));
    if (dwhh) CT_TRY(d->ops->gemm(d, true, false, D, D, N, 1.0f, dgt, hct, 1.0f, dwhh));
    CT_TRY(d->ops->gemm(d, false, false, N, D, D, 1.0f, dgt, whh, 0.0f, dhc));
    CT_TRY(d->ops->scale_forward(d, 1, (size_t)N, (size_t)D, dhc, cont + (size_t)t * N, NULL, dnext));
  }
  return ct_recurrent_inputs_backward(l, p, dg, dnext, NULL, err);
}

const ct_layer_ops ct_layer_RNN = {.type = "RNN",
                                   .min_bottom = 2,
                                   .max_bottom = 4,
                                   .min_top = 1,
                                   .max_top = 2,
                                   .has_backward = true,
                                   .label_bottoms = 1u << 1,
                                   .splits = NULL,
                                   .kind = CT_WORK_GEMM,
                                   .setup = rnn_setup,
                                   .reshape = ct_recurrent_reshape,
                                   .forward = rnn_forward,
                                   .backward = rnn_backward,
                                   .destroy = ct_recurrent_destroy};
