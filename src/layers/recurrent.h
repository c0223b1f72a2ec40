/* What Caffe's recurrent layers (RNN, LSTM; layers/rnn.c, layers/lstm.c) share. Caffe builds
 * them as unrolled nets; cortado runs the same math directly, forward over the time steps and
 * backward through them, with Caffe's blob layout:
 *
 *   bottoms  x (T x N x ...: T time steps of N streams), cont (T x N: 0 where a sequence starts,
 *            which flushes the state), optionally x_static (N x ...: added at every step), and
 *            with expose_hidden the initial states (RNN: h_0; LSTM: h_0, c_0; each 1 x N x D)
 *   tops     the output (T x N x D) and, with expose_hidden, the final states (h_T[, c_T])
 *   blobs    W_x (G x I), b_x (G), [W_static (G x I_static)], W_h (G x D), then the RNN's W_o
 *            (D x D) and b_o (D), in Caffe's order; G = D (RNN) or 4 D (LSTM's gates i, f, o, g)
 *
 * Without expose_hidden the initial state of a forward is the final state of the previous one
 * (zero at first and whenever N changes), as in Caffe: truncated backpropagation through time,
 * no gradient flowing into the carried state.
 *
 * The whole of a layer runs as one partition (its batch is axis 1), on any driver, through GEMMs,
 * element-wise entries and the LSTM cell entry. */
#ifndef CT_LAYERS_RECURRENT_H
#define CT_LAYERS_RECURRENT_H

#include "layers/layer.h"
#include "layers/ones.h"

typedef struct ct_recurrent {
  bool lstm;
  int D, G;          /* num_output; gate width */
  int T, N, I, Is;   /* steps, streams, input and static input widths (Is 0: no static input) */
  bool expose;
  int b_static, b_h0, b_c0; /* bottom indices (-1: none) */
  ct_tensor *xg;     /* T x N x G: the input transform, then the full step inputs (pre-activations) */
  ct_tensor *hc;     /* T x N x D: cont_t h_{t-1}, the recurrent GEMM's input */
  ct_tensor *h;      /* RNN: T x N x D, the hidden states */
  ct_tensor *cell;   /* LSTM: (T + 1) x N x D, c_0 .. c_T */
  ct_tensor *dg;     /* T x N x G: gradients of the step inputs */
  ct_tensor *dh;     /* RNN: T x N x D, the output transform's input gradient */
  ct_tensor *work;   /* 4 x N x G: per-step scratch (carried gradients, sums) */
  ct_tensor *ss;     /* N x G: the static input's transform, then its gradient */
  ct_tensor *state_h, *state_c; /* 1 x N x D: the last forward's final states */
  int state_n;       /* N the states were zeroed for (-1: never) */
  ct_ones ones;      /* T of them */
} ct_recurrent;

/* Setup for RNN (lstm false) or LSTM: checks the bottoms and tops against recurrent_param and
 * creates the blobs with their fillers. */
ct_status ct_recurrent_setup(ct_layer *l, bool lstm, ct_error *err);
/* Shapes the tops and buffers for the bottoms' T and N; zeroes the carried states when N
 * changes. */
ct_status ct_recurrent_reshape(ct_layer *l, ct_error *err);
void ct_recurrent_destroy(ct_layer *l);

/* Forward's start: xg = W_x x + b_x (+ W_static x_static at every step). */
ct_status ct_recurrent_inputs_forward(ct_layer *l, const ct_part *p, float *xg, ct_error *err);
/* The initial states (h_0, and c_0 for the LSTM): the exposed bottoms or the carried states. */
ct_status ct_recurrent_initial(ct_layer *l, const ct_part *p, const float **h0, const float **c0, ct_error *err);
/* Forward's end: the final states to the exposed tops, or kept for the next forward. */
ct_status ct_recurrent_final(ct_layer *l, const ct_part *p, const float *hT, const float *cT, ct_error *err);
/* Backward's end, from the step inputs' gradients dg: the input transform's weight gradients
 * (accumulated), x's and x_static's gradients, and the initial states' (dh0, dc0) to the
 * exposed bottoms. */
ct_status ct_recurrent_inputs_backward(ct_layer *l, const ct_part *p, const float *dg, const float *dh0,
                                       const float *dc0, ct_error *err);
/* The gradients arriving at the final states: the exposed tops' diffs, or zero. */
ct_status ct_recurrent_final_grads(ct_layer *l, const ct_part *p, float *dhT, float *dcT, ct_error *err);

/* Blob indices: W_x, b_x, [W_static], W_h, then (RNN) W_o, b_o. */
static inline int ct_recurrent_blob_wh(const ct_recurrent *r) { return r->Is ? 3 : 2; }

#endif
