/* The CUDA kernels' launchers, declared for the C side of the driver (cuda/driver.c) and
 * defined by cuda/kernels.cu from the same list: each launches the body ctk_<name> of
 * cuda/kern.h over n indices on `stream` (a cudaStream_t) and returns the launch's cudaError_t
 * (0: launched; the kernel itself runs asynchronously). Struct parameters pass by value: the
 * kernel gets its own copy. */
#ifndef CT_DRIVERS_CUDA_LAUNCH_H
#define CT_DRIVERS_CUDA_LAUNCH_H

#include <stdint.h>

#include "drivers/cuda/kern.h"

#define CT_UNPAREN(...) __VA_ARGS__

/* X(name, (parameters), (arguments), the body's call for index i) */
#define CTL_KERNELS(X)                                                                                              \
  X(add, (const float *a, const float *b, float *y), (a, b, y), ctk_add(i, a, b, y))                                 \
  X(sub, (const float *a, const float *b, float *y), (a, b, y), ctk_sub(i, a, b, y))                                 \
  X(mul, (const float *a, const float *b, float *y), (a, b, y), ctk_mul(i, a, b, y))                                 \
  X(axpy, (float alpha, const float *x, float *y), (alpha, x, y), ctk_axpy(i, alpha, x, y))                          \
  X(scal, (float alpha, const float *x, float *y), (alpha, x, y), ctk_scal(i, alpha, x, y))                          \
  X(fill, (float v, float *y), (v, y), ctk_fill(i, v, y))                                                           \
  X(neuron_fwd, (ct_neuron p, const float *x, float *y), (p, x, y), ctk_neuron_fwd(i, &p, x, y))                     \
  X(neuron_bwd, (ct_neuron p, const float *x, const float *y, const float *dy, float *dx), (p, x, y, dy, dx),        \
    ctk_neuron_bwd(i, &p, x, y, dy, dx))                                                                             \
  X(prelu_fwd, (size_t C, size_t D, bool shared, const float *x, const float *a, float *y), (C, D, shared, x, a, y), \
    ctk_prelu_fwd(i, C, D, shared, x, a, y))                                                                         \
  X(prelu_bwd_dx, (size_t C, size_t D, bool shared, const float *x, const float *dy, const float *a, float *dx),     \
    (C, D, shared, x, dy, a, dx), ctk_prelu_bwd_dx(i, C, D, shared, x, dy, a, dx))                                   \
  X(eltwise_fwd, (ct_eltwise_op op, int nx, ctk_inputs in, float *y, int *winner), (op, nx, in, y, winner),          \
    ctk_eltwise_fwd(i, op, nx, &in, y, winner))                                                                      \
  X(eltwise_bwd,                                                                                                     \
    (ct_eltwise_op op, int nx, ctk_inputs in, int k, bool stable_prod, const float *y, const float *dy,              \
     const int *winner, float *dx),                                                                                  \
    (op, nx, in, k, stable_prod, y, dy, winner, dx), ctk_eltwise_bwd(i, op, nx, &in, k, stable_prod, y, dy, winner, dx)) \
  X(bias_fwd, (size_t dim, size_t inner, const float *x, const float *b, float *y), (dim, inner, x, b, y),           \
    ctk_bias_fwd(i, dim, inner, x, b, y))                                                                            \
  X(scale_fwd, (size_t dim, size_t inner, const float *x, const float *s, const float *b, float *y),                 \
    (dim, inner, x, s, b, y), ctk_scale_fwd(i, dim, inner, x, s, b, y))                                              \
  X(scale_bwd_dx, (size_t dim, size_t inner, const float *dy, const float *s, float *dx), (dim, inner, dy, s, dx),    \
    ctk_scale_bwd_dx(i, dim, inner, dy, s, dx))                                                                      \
  X(bn_global_stats,                                                                                                 \
    (ct_batchnorm p, float *mean, float *std, const float *rm, const float *rv, const float *rf),                    \
    (p, mean, std, rm, rv, rf), ctk_bn_global_stats(i, &p, mean, std, rm, rv, rf))                                   \
  X(update, (ct_update_step s, float *w, float *g, float *h0, float *h1), (s, w, g, h0, h1),                         \
    ctk_update(i, &s, w, g, h0, h1))                                                                                 \
  X(lstm_fwd, (size_t D, const float *cp, const float *x, const float *cont, float *c, float *h),                    \
    (D, cp, x, cont, c, h), ctk_lstm_fwd(i, D, cp, x, cont, c, h))                                                   \
  X(lstm_bwd,                                                                                                        \
    (size_t D, const float *cp, const float *x, const float *cont, const float *c, const float *dc, const float *dh,  \
     float *dcp, float *dx),                                                                                         \
    (D, cp, x, cont, c, dc, dh, dcp, dx), ctk_lstm_bwd(i, D, cp, x, cont, c, dc, dh, dcp, dx))                       \
  X(dropout_mask, (uint64_t seed, uint64_t offset, float ratio, float scale, float *mask),                          \
    (seed, offset, ratio, scale, mask), ctk_dropout_mask(i, seed, offset, ratio, scale, mask))                       \
  X(lower1, (ct_conv_geom g, int nb, const float *x, float *D), (g, nb, x, D), ctk_lower1(i, &g, nb, x, D))          \
  X(lift1, (ct_conv_geom g, int nb, const float *R, const float *b, float *y), (g, nb, R, b, y),                     \
    ctk_lift1(i, &g, nb, R, b, y))                                                                                   \
  X(lift_grad1, (ct_conv_geom g, int nb, const float *dy, float *Gm), (g, nb, dy, Gm),                               \
    ctk_lift_grad1(i, &g, nb, dy, Gm))                                                                               \
  X(lift_pw, (ct_conv_geom g, const float *b, float *y), (g, b, y), ctk_lift_pw(i, &g, b, y))                        \
  X(col2im1, (ct_conv_geom g, int nb, const float *D, float *dx), (g, nb, D, dx), ctk_col2im1(i, &g, nb, D, dx))     \
  X(pool_fwd, (ct_pool_geom g, const float *x, float *y, int *argmax, float *mask), (g, x, y, argmax, mask),         \
    ctk_pool_fwd(i, &g, x, y, argmax, mask))                                                                         \
  X(pool_bwd, (ct_pool_geom g, const float *x, const float *dy, const int *argmax, float *dx),                       \
    (g, x, dy, argmax, dx), ctk_pool_bwd(i, &g, x, dy, argmax, dx))                                                  \
  X(lrn_fwd, (ct_lrn_geom g, const float *x, float *y, float *s, float *spow), (g, x, y, s, spow),                   \
    ctk_lrn_fwd(i, &g, x, y, s, spow))                                                                               \
  X(lrn_bwd,                                                                                                         \
    (ct_lrn_geom g, const float *x, const float *y, const float *dy, const float *s, const float *spow, float *dx),  \
    (g, x, y, dy, s, spow, dx), ctk_lrn_bwd(i, &g, x, y, dy, s, spow, dx))                                           \
  X(softmax_fwd, (size_t C, size_t inner, const float *x, float *y), (C, inner, x, y),                               \
    ctk_softmax_fwd(i, C, inner, x, y))                                                                              \
  X(softmax_bwd, (size_t C, size_t inner, const float *y, const float *dy, float *dx), (C, inner, y, dy, dx),        \
    ctk_softmax_bwd(i, C, inner, y, dy, dx))                                                                         \
  X(softmax_loss_pos,                                                                                                \
    (size_t C, size_t inner, const float *prob, const float *labels, bool has_ignore, int ignore, double *loss,      \
     int *state),                                                                                                    \
    (C, inner, prob, labels, has_ignore, ignore, loss, state),                                                       \
    ctk_softmax_loss_pos(i, C, inner, prob, labels, has_ignore, ignore, loss, state))                                \
  X(softmax_loss_bwd,                                                                                                \
    (size_t C, size_t inner, const float *prob, const float *labels, bool has_ignore, int ignore, float scale,       \
     float *dx),                                                                                                     \
    (C, inner, prob, labels, has_ignore, ignore, scale, dx),                                                         \
    ctk_softmax_loss_bwd(i, C, inner, prob, labels, has_ignore, ignore, scale, dx))                                  \
  X(sigmoid_xent_fwd,                                                                                                \
    (const float *x, const float *t, bool has_ignore, int ignore, float *sig, double *loss, int *state),             \
    (x, t, has_ignore, ignore, sig, loss, state), ctk_sigmoid_xent_fwd(i, x, t, has_ignore, ignore, sig, loss, state)) \
  X(sigmoid_xent_bwd, (const float *sig, const float *t, bool has_ignore, int ignore, float w, float *dx),           \
    (sig, t, has_ignore, ignore, w, dx), ctk_sigmoid_xent_bwd(i, sig, t, has_ignore, ignore, w, dx))                 \
  X(accuracy_pos,                                                                                                    \
    (size_t C, size_t inner, const float *score, const float *labels, int top_k, bool has_ignore, int ignore,        \
     int *state),                                                                                                    \
    (C, inner, score, labels, top_k, has_ignore, ignore, state),                                                     \
    ctk_accuracy_pos(i, C, inner, score, labels, top_k, has_ignore, ignore, state))                                  \
  X(argmax_pos,                                                                                                      \
    (size_t dim, size_t stride, int top_k, bool out_max_val, bool has_axis, const float *x, float *y),               \
    (dim, stride, top_k, out_max_val, has_axis, x, y), ctk_argmax_pos(i, dim, stride, top_k, out_max_val, has_axis, x, y)) \
  X(chan_partial, (ctk_chan_red r, const float *u, const float *v, const float *w, const float *mean, double *part),  \
    (r, u, v, w, mean, part), ctk_chan_partial(i, &r, u, v, w, mean, part))                                          \
  X(red_fin_add, (size_t T, const double *part, float *out), (T, part, out), ctk_red_fin_add(i, T, part, out))         \
  X(bn_fin_mean, (ct_batchnorm p, size_t T, const double *part, float *mean), (p, T, part, mean),                    \
    ctk_bn_fin_mean(i, &p, T, part, mean))                                                                           \
  X(bn_fin_var,                                                                                                      \
    (ct_batchnorm p, size_t T, const double *part, const float *mean, float *std, float *rm, float *rv, float *rf),  \
    (p, T, part, mean, std, rm, rv, rf), ctk_bn_fin_var(i, &p, T, part, mean, std, rm, rv, rf))                      \
  X(grad_fin,                                                                                                        \
    (ct_batchnorm p, size_t T, const double *part, const float *s, bool batch, float *ab, float *ds, float *db),      \
    (p, T, part, s, batch, ab, ds, db), ctk_grad_fin(i, &p, T, part, s, batch, ab, ds, db))                          \
  X(chain_fwd,                                                                                                       \
    (ct_bn_chain p, const float *x, float *y, float *z, const float *mean, const float *std, const float *s,          \
     const float *b),                                                                                                \
    (p, x, y, z, mean, std, s, b), ctk_chain_fwd(i, &p, x, y, z, mean, std, s, b))                                   \
  X(chain_bwd,                                                                                                       \
    (ct_bn_chain p, bool batch, const float *y, const float *dy, const float *z, const float *std, const float *s,   \
     const float *ab, float *dx, float *dz),                                                                         \
    (p, batch, y, dy, z, std, s, ab, dx, dz), ctk_chain_bwd(i, &p, batch, y, dy, z, std, s, ab, dx, dz))             \
  X(direct_fwd, (ct_conv_geom g, const float *x, const float *w, const float *b, float *y), (g, x, w, b, y),         \
    ctk_direct_fwd(i, &g, x, w, b, y))                                                                               \
  X(direct_bwd_data, (ct_conv_geom g, const float *w, const float *dy, float *dx), (g, w, dy, dx),                   \
    ctk_direct_bwd_data(i, &g, w, dy, dx))                                                                           \
  X(direct_wgrad_partial, (ct_conv_geom g, int nb, size_t T, const float *x, const float *dy, double *part),         \
    (g, nb, T, x, dy, part), ctk_direct_wgrad_partial(i, &g, nb, T, x, dy, part))

#ifdef __cplusplus
extern "C" {
#endif
#define CTL_DECLARE(name, params, args, call) int ctl_##name(void *stream, size_t n, CT_UNPAREN params);
CTL_KERNELS(CTL_DECLARE)
#undef CTL_DECLARE
#ifdef __cplusplus
}
#endif

#endif
