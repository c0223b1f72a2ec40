/* The driver: one device's primitives as a vtable plus a context (CcT's DeviceDriver, ggml's
 * backend). Layers (src/layers/), the lowering (src/lowering/) and the solver update
 * (src/solvers/update.c) do all their arithmetic through it, so a second device is a second
 * table, not a second copy of the layers. The CPU driver (src/drivers/cpu/) runs on OpenBLAS.
 *
 * The contract of every entry:
 *  - float and int buffers passed to an entry are the driver's memory (from its alloc, or the
 *    net's tensors on its device); only upload's source and download's destination are host
 *    memory. Geometry structs, scalars, pointer arrays (not what they point to) and results
 *    returned through scalar pointers (loss, counts) are on the host.
 *  - sizes count elements (floats) unless they are named bytes; buffers are dense and row-major.
 *  - an output may alias an input only where the entry says so.
 *  - entries allocate nothing. They return CT_OK, or a failure of the device itself (CT_EDEVICE,
 *    CT_ENOMEM), whose reason error_message then gives: the layer checks shapes in reshape and
 *    sizes every buffer there, so bad arguments are bugs, not errors. alloc returns NULL when the
 *    device has no memory left. Results that are values (dot, losses, counts) come back through
 *    host pointers.
 *  - entries run on the calling thread, and several threads may call them at once on disjoint
 *    outputs: the net runs each layer's partitions (src/sched/) concurrently, each on its own
 *    driver and slice. enter/leave bracket one partition on the thread that runs it.
 *  - memory reaches the host only through upload/download, which the storage layer
 *    (core/storage.h, through the driver's `mem`) calls and counts.
 * Accumulating outputs (+=) say so; everything else is overwritten. */
#ifndef CT_DRIVER_H
#define CT_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/storage.h"
#include "cortado.h"
#include "lowering/lowering.h"

typedef struct ct_driver ct_driver;

/* ---------------------------------------------------------------- parameter structs */

/* The element-wise neuron activations (Caffe's NeuronLayer family). */
typedef enum ct_neuron_kind {
  CT_NEURON_RELU,    /* y = x > 0 ? x : negative_slope x */
  CT_NEURON_ELU,     /* y = x > 0 ? x : alpha (e^x - 1) */
  CT_NEURON_SIGMOID, /* y = 1 / (1 + e^-x) */
  CT_NEURON_TANH,
  CT_NEURON_ABSVAL,
  CT_NEURON_POWER, /* y = (shift + scale x)^power */
  CT_NEURON_EXP,   /* y = outer_scale e^(inner_scale x) */
  CT_NEURON_LOG,   /* y = base_scale ln(shift + scale x) */
  CT_NEURON_BNLL,  /* y = ln(1 + e^x) */
  CT_NEURON_THRESHOLD, /* y = x > threshold ? 1 : 0; dx = 0 (the step's derivative almost everywhere) */
  CT_NEURON_CLIP,      /* y = min(max(x, lo), hi); dx = dy where lo <= x <= hi (Caffe's rule), else 0 */
  CT_NEURON_SWISH      /* y = x sigmoid(beta x) */
} ct_neuron_kind;

typedef struct ct_neuron {
  ct_neuron_kind kind;
  float negative_slope;           /* ReLU */
  float alpha;                    /* ELU */
  float power, scale, shift;      /* Power; Log uses scale and shift too */
  float inner_scale, outer_scale; /* Exp */
  float base_scale;               /* Log: 1 / ln(base) */
  float threshold;                /* Threshold */
  float lo, hi;                   /* Clip */
  float beta;                     /* Swish */
} ct_neuron;

typedef enum ct_eltwise_op { CT_ELTWISE_PROD, CT_ELTWISE_SUM, CT_ELTWISE_MAX } ct_eltwise_op;

/* BatchNorm over x as N x C x S (S: the product of the axes after 1). */
typedef struct ct_batchnorm {
  size_t N, C, S;
  bool global; /* normalise by the stored statistics instead of the batch's */
  float maf;   /* moving_average_fraction */
  float eps;
} ct_batchnorm;

/* BatchNorm, then Scale by a factor s (and a bias b) per channel, then, when relu, ReLU with a
 * negative slope >= 0: Caffe's three layers over N x C x S as one chain (net/fuse.c). */
typedef struct ct_bn_chain {
  ct_batchnorm bn;
  bool relu;
  float slope;
  /* Where ct_bn_chain_z_from_y_applies, on a driver with bn_chain_backward_y only: the forward
   * leaves xnorm unwritten in the channels whose Scale ct_bn_chain_y_recovers, whose backward
   * recomputes it from the chain's output as (y - b) / s. */
  bool z_from_y;
  /* With the ReLU, in the backward entries: where they read xnorm anyway, they may take the
   * ReLU's mask (y > 0) as xnorm s + b > 0, recomputed exactly as the forward computed it (the
   * same float, so the same mask; ct_bn_chain_relu_input), instead of reading y as well.
   * mask_b is Scale's bias (NULL: none); drivers that do not read it use y. */
  bool mask_from_z;
  const float *mask_b;
  /* In bn_chain_backward_x after a forward through bn_chain_forward_add (which leaves the chain's
   * own output unwritten): in the channels ct_bn_chain_y_recovers, xnorm is taken as
   * bn_chain_backward_y takes it from that output, (y - b) / s, with y = xnorm s + b recomputed
   * from x as the forward computes it, so the gradients equal those of the unfed chain bit for
   * bit; y_b is Scale's bias (NULL: none). */
  bool z_via_y;
  const float *y_b;
} ct_bn_chain;

/* The ReLU's input in a chain, from xnorm v: the one expression that both the forward and a
 * backward that recomputes the ReLU's mask evaluate (so that both round it alike). */
static inline float ct_bn_chain_relu_input(float v, float s, float b) { return v * s + b; }

/* Whether xnorm is recomputed from y = xnorm s + b (b: 0 without a bias) in a channel: s is a
 * normal float and |b| <= 16 |s|, so that (y - b) / s loses at most a few bits of xnorm to the
 * cancellation (ResNet's trained chains: |b| / |s| below 5); other channels keep xnorm. */
static inline bool ct_bn_chain_y_recovers(float s, float b) {
  const float as = s < 0 ? -s : s, ab = b < 0 ? -b : b;
  return as >= 1e-30f && as <= 1e30f && ab <= 16.0f * as;
}

/* Whether a chain's backward can take xnorm from its output y = ReLU(xnorm s + b) at all: without
 * the ReLU; or with a ReLU of slope 0 on the stored statistics, whose gradient reads xnorm only
 * for Scale's factor and only where y > 0 (where y is xnorm s + b): where the ReLU clipped, the
 * gradient is 0 whatever xnorm is. With the batch's statistics every xnorm enters dx. */
static inline bool ct_bn_chain_z_from_y_applies(const ct_bn_chain *p) {
  return !p->relu || (p->bn.global && p->slope == 0.0f);
}

typedef enum ct_pool_method { CT_POOL_MAX, CT_POOL_AVE, CT_POOL_STOCHASTIC } ct_pool_method;

/* One pooled plane: H x W in, OH x OW out. */
typedef struct ct_pool_geom {
  ct_pool_method method;
  int H, W, OH, OW;
  int kh, kw, sh, sw, ph, pw;
} ct_pool_geom;

/* LRN over images of C x H x W (size odd; see src/layers/lrn.c for the two regions). */
typedef struct ct_lrn_geom {
  bool across; /* ACROSS_CHANNELS, else WITHIN_CHANNEL */
  int size;
  float alpha, beta, k;
  int C, H, W;
} ct_lrn_geom;

/* One entry of ArgMax's ranking. */
typedef struct ct_rank_entry {
  float value;
  int index;
} ct_rank_entry;

typedef enum ct_update_rule {
  CT_RULE_SGD,
  CT_RULE_NESTEROV,
  CT_RULE_ADAGRAD,
  CT_RULE_RMSPROP,
  CT_RULE_ADADELTA,
  CT_RULE_ADAM
} ct_update_rule;

/* One update of a parameter range (Caffe's Normalize, Regularize, ComputeUpdateValue, Update). */
typedef struct ct_update_step {
  ct_update_rule rule;
  float grad_scale; /* the gradient is first multiplied by this (1 / iter_size) unless it is 1 */
  float decay;      /* weight decay times decay_mult; 0: none */
  bool l1;          /* L1 decay, else L2 */
  float rate;       /* learning rate times lr_mult (times Adam's bias correction) */
  float momentum;   /* SGD, Nesterov, AdaDelta; Adam's beta1 */
  float momentum2;  /* Adam's beta2 */
  float rms_decay;  /* RMSProp */
  float delta;      /* AdaGrad, RMSProp, AdaDelta; Adam's epsilon */
  bool zero_grad;   /* leave g zeroed instead of holding the step (the next iteration's clear, done
                       while the range is in cache) */
} ct_update_step;

/* ---------------------------------------------------------------- the vtable */

/* The steps of blocked WINOGRAD (conv_wino_block). */
typedef enum ct_wino_step {
  CT_WINO_KERNEL,
  CT_WINO_LOWER,
  CT_WINO_LIFT,
  CT_WINO_LIFT_GRAD,
  CT_WINO_LOWER_GRAD,
  CT_WINO_KERNEL_GRAD
} ct_wino_step;

typedef struct ct_driver_ops {
  /* Releases d->ctx (not d itself); may be NULL. */
  void (*destroy)(ct_driver *d);
  /* The reason for the last failure an entry returned on this driver (for messages). */
  void (*error_message)(const ct_driver *d, char *buf, size_t n);
  /* Around one layer pass (all its partitions), on the thread that starts them, once per driver
   * in the plan, ended in reverse order: process-wide settings (OpenBLAS's threads) are made
   * here, never by the partitions themselves, which run at the same time. May be NULL. */
  void (*region)(const ct_driver *d, bool begin);
  /* Around one partition, on the thread that runs it: `threads` cores are its to use (the CPU
   * driver splits its GEMMs over its pool when it has several). May be NULL. */
  void (*enter)(const ct_driver *d, int threads);
  void (*leave)(const ct_driver *d);

  /* ---- memory. alloc: 64-byte aligned, NULL when out of memory; free(NULL) is a no-op. copy
   * and copy_2d move within the device (regions must not overlap); upload copies host to
   * device, download device to host. copy_2d moves `rows` rows of row_bytes each between
   * pitched buffers (pitches in bytes). */
  void *(*alloc)(const ct_driver *d, size_t bytes);
  void (*free)(const ct_driver *d, void *p);
  ct_status (*memset)(const ct_driver *d, void *p, int byte, size_t bytes);
  ct_status (*copy)(const ct_driver *d, void *dst, const void *src, size_t bytes);
  ct_status (*copy_2d)(const ct_driver *d, size_t rows, size_t row_bytes, void *dst, size_t dst_pitch, const void *src,
                  size_t src_pitch);
  ct_status (*upload)(const ct_driver *d, void *dst, const void *host_src, size_t bytes);
  ct_status (*download)(const ct_driver *d, void *host_dst, const void *src, size_t bytes);

  /* The rate one partition sees (GFLOP/s of a single-threaded SGEMM, GB/s of a large copy),
   * measured once, for the lowering cost model. */
  void (*calibration)(const ct_driver *d, double *gflops, double *gbytes);

  /* ---- BLAS, row-major. gemm: C (M x N) = alpha op(A) op(B) + beta C, op(A) M x K, op(B)
   * K x N, all contiguous. gemv: y = alpha op(A) x + beta y, A M x N. */
  ct_status (*gemm)(const ct_driver *d, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
               const float *B, float beta, float *C);
  /* The same on sub-matrices: row i of the stored A starts at A + i lda (likewise B, C), so a
   * block of a larger matrix is named without copying it. */
  ct_status (*gemm_ld)(const ct_driver *d, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc);
  ct_status (*gemv)(const ct_driver *d, bool trans_a, int M, int N, float alpha, const float *A, const float *x, float beta,
               float *y);
  ct_status (*axpy)(const ct_driver *d, size_t n, float alpha, const float *x, float *y); /* y += alpha x */
  ct_status (*scal)(const ct_driver *d, size_t n, float alpha, const float *x, float *y); /* y = alpha x; x may be y */
  ct_status (*dot)(const ct_driver *d, size_t n, const float *x, const float *y, float *out);
  ct_status (*asum)(const ct_driver *d, size_t n, const float *x, float *out); /* sum |x| */
  /* acc + sum of x^2, accumulated in double in index order from acc (so a sum over several
   * ranges, each starting from the last one's result, is one running sum). */
  ct_status (*sumsq)(const ct_driver *d, size_t n, const float *x, double acc, double *out);

  /* ---- element-wise. y = a + b, a - b, a * b; y may be a or b. */
  ct_status (*add)(const ct_driver *d, size_t n, const float *a, const float *b, float *y);
  ct_status (*sub)(const ct_driver *d, size_t n, const float *a, const float *b, float *y);
  ct_status (*mul)(const ct_driver *d, size_t n, const float *a, const float *b, float *y);
  /* y = f(x), x may be y. Backward: dx = dy f'(x); x is the input, or y itself when the layer
   * ran in place and f allows it (ReLU and ELU with a slope/alpha >= 0, Sigmoid, TanH, Exp,
   * BNLL read only y, or x's sign; Threshold reads neither); dy may be dx. */
  ct_status (*neuron_forward)(const ct_driver *d, const ct_neuron *p, size_t n, const float *x, float *y);
  ct_status (*neuron_backward)(const ct_driver *d, const ct_neuron *p, size_t n, const float *x, const float *y,
                          const float *dy, float *dx);
  /* PReLU over N x C x D with slopes a (C of them, or one when shared): y = x > 0 ? x : a x.
   * Backward: da += sum of dy x over x <= 0 (da may be NULL), then dx (may be NULL, may be dy). */
  ct_status (*prelu_forward)(const ct_driver *d, size_t N, size_t C, size_t D, bool shared, const float *x,
                        const float *a, float *y);
  ct_status (*prelu_backward)(const ct_driver *d, size_t N, size_t C, size_t D, bool shared, const float *x,
                         const float *dy, const float *a, float *dx, float *da);
  /* Eltwise over nx >= 2 inputs x[0..nx) of n each: PROD, SUM (coeff: nx factors, NULL for all
   * 1) or MAX (winner[i]: the input that won, the later of the first two on a tie, the earlier
   * after that). Backward writes input k's gradient dx (PROD: the product of the other inputs
   * when stable_prod, else y / x[k]). y is not one of the inputs. */
  ct_status (*eltwise_forward)(const ct_driver *d, ct_eltwise_op op, size_t n, int nx, const float *const *x,
                          const float *coeff, float *y, int *winner);
  ct_status (*eltwise_backward)(const ct_driver *d, ct_eltwise_op op, size_t n, int nx, const float *const *x, int k,
                           const float *coeff, bool stable_prod, const float *y, const float *dy, const int *winner,
                           float *dx);
  /* Optional (NULL: the pair runs as its two layers): Eltwise SUM of nx >= 2 inputs (coeff as
   * above) and then ReLU with a slope >= 0, in one pass: y = relu(sum), the sum in
   * eltwise_forward's order (so the same floats; y is not one of the inputs). Backward from y
   * and its gradient dy, with g = y > 0 ? dy : slope dy (the in-place ReLU's rule; for a slope
   * >= 0 the sign of y is that of the sum): dx[k] = coeff_k g for each k whose dx[k] is not NULL
   * and, when dz is not NULL, dz = g (what the in-place ReLU leaves in the top's diff). dz may
   * be dy; a dx[k] may be dy. */
  ct_status (*eltwise_relu_forward)(const ct_driver *d, size_t n, int nx, const float *const *x, const float *coeff,
                                    float slope, float *y);
  ct_status (*eltwise_relu_backward)(const ct_driver *d, size_t n, int nx, const float *coeff, float slope,
                                     const float *y, const float *dy, float *const *dx, float *dz);
  /* Broadcasts over x as outer x dim x inner, the operand indexed by dim. bias: y = x + b (x
   * may be y). scale: y = x s + b (b NULL reads as 0; x is not y). scale_backward: ds += sum of
   * dy x and db += sum of dy over outer and inner (either may be NULL; x is read only for ds),
   * then dx = dy s (dx may be NULL, may be dy). */
  ct_status (*bias_forward)(const ct_driver *d, size_t outer, size_t dim, size_t inner, const float *x, const float *b,
                       float *y);
  ct_status (*scale_forward)(const ct_driver *d, size_t outer, size_t dim, size_t inner, const float *x, const float *s,
                        const float *b, float *y);
  ct_status (*scale_backward)(const ct_driver *d, size_t outer, size_t dim, size_t inner, const float *x, const float *dy,
                         const float *s, float *ds, float *db, float *dx);
  /* BatchNorm forward: mean and std (C each) from the batch, updating the running sums (C, C
   * and one factor; Caffe's rule), or from the running sums when global; then y = xnorm =
   * (x - mean) / std (x may be y). Backward: dx from dy and xnorm (dy may be dx). */
  ct_status (*batchnorm_forward)(const ct_driver *d, const ct_batchnorm *p, const float *x, float *y, float *xnorm,
                            float *mean, float *std, float *run_mean, float *run_var, float *run_factor);
  ct_status (*batchnorm_backward)(const ct_driver *d, const ct_batchnorm *p, const float *dy, const float *xnorm,
                             const float *std, float *dx);
  /* The chain BatchNorm -> Scale (-> ReLU). Forward: mean, std and the running sums as
   * batchnorm_forward, then xnorm (when not NULL) and y = relu(xnorm s + b) (b NULL reads as 0;
   * x may be y; with the stored statistics and no xnorm, one affine per channel). Backward from
   * the chain's output y and its gradient dy, with g = dy relu'(y): ds += sum of g xnorm, db +=
   * sum of g (either may be NULL), then dx = the BatchNorm gradient of g s (dx may be NULL, may
   * be dy) and, when dz is not NULL, dz = g s (the gradient of BatchNorm's output, which Caffe's
   * layers leave in a BatchNorm top of its own; only with dx, may be dy). xnorm is read for ds
   * and, with batch statistics, for dx. batchnorm_forward's xnorm
   * may be NULL too (nothing kept for a backward that does not run). */
  ct_status (*bn_chain_forward)(const ct_driver *d, const ct_bn_chain *p, const float *x, float *y, float *xnorm,
                                float *mean, float *std, float *run_mean, float *run_var, float *run_factor,
                                const float *s, const float *b);
  ct_status (*bn_chain_backward)(const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy,
                                 const float *xnorm, const float *std, const float *s, float *ds, float *db,
                                 float *dx, float *dz);
  /* Optional (NULL: the chain keeps xnorm for bn_chain_backward): the same gradient with xnorm
   * recomputed as (x - mean) / std from the chain's input x, still unchanged since the forward,
   * and the forward's mean and std; the values are those bn_chain_backward gives on the kept
   * xnorm. */
  ct_status (*bn_chain_backward_x)(const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy,
                                   const float *x, const float *mean, const float *std, const float *s, float *ds,
                                   float *db, float *dx, float *dz);
  /* Optional (NULL: p->z_from_y is never set for this driver): the same gradient of a chain
   * (ct_bn_chain_z_from_y_applies) after a forward with p->z_from_y, from its output y, still
   * unchanged since that forward: xnorm recomputed as (y - b) / s in the channels
   * ct_bn_chain_y_recovers (b may be NULL: 0), read from xnorm in the others; the ReLU's mask
   * from y (p->mask_from_z unset). */
  ct_status (*bn_chain_backward_y)(const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy,
                                   const float *xnorm, const float *std, const float *s, const float *b, float *ds,
                                   float *db, float *dx, float *dz);
  /* Optional (NULL: no chain feeds an Eltwise on this driver): bn_chain_forward of a chain
   * without the ReLU and without xnorm, whose output y goes straight on into an Eltwise SUM of
   * two bottoms and an in-place ReLU (net/fuse.c: ResNet's block ends): out = relu(c_self y +
   * c_add add) with the slope, computed as eltwise_relu_forward computes it from y as
   * bn_chain_forward writes it, and y itself is not written (x stays as it is). */
  ct_status (*bn_chain_forward_add)(const ct_driver *d, const ct_bn_chain *p, const float *x, const float *add,
                                    float c_self, float c_add, float slope, float *out, float *mean, float *std,
                                    float *run_mean, float *run_var, float *run_factor, const float *s,
                                    const float *b);

  /* ---- CcT's lowering for type t over nb images (lowering.h: shapes; ct_lower_layout: where
   * the parts of ws lie). The GEMMs between these steps are the caller's (ct_lower_forward_on).
   * lower: x into the lowered data and, types 2 and 3, w into the lowered kernel.
   * lift: the GEMM product in ws into y, plus b (b may be NULL); POINTWISE: y = b per output
   *   channel (b not NULL; ws unused), which the GEMMs then add onto.
   * lift_grad: the adjoint of lift: dy laid out as the GEMM product in ws (not POINTWISE).
   * bias_grad: db += the sum of dy per output channel (type 1 reads dy as lift_grad left it).
   * lower_grad: the adjoint of lower: dx = the lowered data gradient lifted back (overwritten),
   *   dw += the lowered kernel gradient (types 2 and 3, WINOGRAD); either may be NULL.
   * lift and lower_grad may write the workspace's scratch part (WINOGRAD), nothing else of it. */
  ct_status (*conv_lower)(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *x, const float *w,
                     float *ws);
  ct_status (*conv_lift)(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, float *ws, const float *b,
                    float *y);
  ct_status (*conv_lift_grad)(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *dy,
                         float *ws);
  ct_status (*conv_bias_grad)(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *dy,
                         const float *ws, float *db);
  ct_status (*conv_lower_grad)(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, float *ws,
                          float *dx, float *dw);

  /* ---- WINOGRAD blocked (optional: NULL runs WINOGRAD through the staged entries above). One
   * step over the block of tile rows [r0, r1) of a partition of nb images, in the block layout
   * of ct_lower_wino_block(g, nb) (lowering.h); ct_lower_forward_on / ct_lower_backward_on run
   * the GEMMs between the steps. scratch: the layout's scratch part.
   *   KERNEL: w into U (r0, r1 unused).     KERNEL_GRAD: dw += dU lifted back (r0, r1 unused).
   *   LOWER: x's tiles into the block's V.   LIFT: the block's M into its rows of y, plus b.
   *   LIFT_GRAD: dy into the block's dM.
   *   LOWER_GRAD: the block's dV into dx: the rows of dx only its tiles reach are written, the
   *     two rows it shares with the block before it in the same image are added to.
   * b: LIFT's bias (may be NULL), NULL otherwise. Blocks run in order, first to last. */
  ct_status (*conv_wino_block)(const ct_driver *d, const ct_conv_geom *g, ct_wino_step step, int nb, int r0, int r1,
                               const float *in, const float *b, float *out, float *scratch);

  /* ---- WINOGRAD4 (optional: NULL where the driver does not run F(4x4, 3x3)): the steps of
   * conv_wino_block, with the same meaning, in the layout of ct_lower_wino4_block(g, nb): 6x6
   * input tiles 4 apart, 36 positions; LOWER_GRAD adds to the two rows of dx a block shares with
   * the one before it in the same image. */
  ct_status (*conv_wino4_block)(const ct_driver *d, const ct_conv_geom *g, ct_wino_step step, int nb, int r0, int r1,
                                const float *in, const float *b, float *out, float *scratch);

  /* ---- DIRECT convolution (no lowering, no GEMM: depthwise and many-group layers) over nb
   * images, any geometry; ws: ct_lower_direct_layout(g).scratch floats of scratch.
   * forward: y = conv(x, w) + b (b may be NULL). backward_data: dx = the data gradient from dy
   * (overwritten). backward_weight: dw += the weight gradient, db += the sum of dy per output
   * channel (either may be NULL). Each output's sum runs in a fixed order, so results do not
   * depend on the vector width the CPU picked. */
  ct_status (*conv_direct_forward)(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x, const float *w,
                                   const float *b, float *y, float *ws);
  ct_status (*conv_direct_backward_data)(const ct_driver *d, const ct_conv_geom *g, int nb, const float *w,
                                         const float *dy, float *dx, float *ws);
  ct_status (*conv_direct_backward_weight)(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x,
                                           const float *dy, float *dw, float *db, float *ws);

  /* ---- a convolution's GEMM over nb images at once, its right operand and its result each laid
   * out as images or as one lowered matrix (optional: NULL where the driver has none;
   * CT_EUNSUPPORTED, nothing written, where the CPU or the shape does not suit it, and the caller
   * runs its own GEMMs). y_n (M x P) = op(w) x_n (Kd x P) + b for n < nb: row k, column p of x_n
   * at x[n x_img + k x_row + p] (nb images: x_img Kd P, x_row P; a lowered Kd x nb P matrix:
   * x_img P, x_row nb P), likewise y (overwritten); op(w) = w (M x Kd), or its transpose where
   * trans_w (w then Kd x M); b: M floats, may be NULL. Each output is b (or 0) plus its Kd
   * products added in order, so results do not depend on nb or on how a batch is split. */
  ct_status (*conv_pw)(const ct_driver *d, bool trans_w, int M, int Kd, int P, int nb, const float *w, const float *x,
                       size_t x_img, size_t x_row, const float *b, float *y, size_t y_img, size_t y_row);

  /* ---- pooling over `planes` planes. Forward: y; MAX also argmax (the flat index h W + w of
   * each output's maximum in its plane, -1 for an empty window) and, when mask is not NULL,
   * the same as floats. Backward: dx (overwritten) from dy (x is read for STOCHASTIC only,
   * argmax for MAX only). */
  ct_status (*pool_forward)(const ct_driver *d, const ct_pool_geom *g, size_t planes, const float *x, float *y, int *argmax,
                       float *mask);
  ct_status (*pool_backward)(const ct_driver *d, const ct_pool_geom *g, size_t planes, const float *x, const float *dy,
                        const int *argmax, float *dx);

  /* ---- LRN over nimg images (x is not y). Forward also writes scale (s) and spow (s^-beta),
   * image-shaped, for backward. tmp: H W floats (WITHIN) or C H W (ACROSS) of scratch. */
  ct_status (*lrn_forward)(const ct_driver *d, const ct_lrn_geom *g, size_t nimg, const float *x, float *y, float *scale,
                      float *spow, float *tmp);
  ct_status (*lrn_backward)(const ct_driver *d, const ct_lrn_geom *g, size_t nimg, const float *x, const float *y,
                       const float *dy, const float *scale, const float *spow, float *dx, float *tmp);

  /* ---- softmax over C of outer x C x inner, numerically stable; x may be y, dy may be dx.
   * scratch: inner floats. Backward: dx = y (dy - sum over C of dy y). */
  ct_status (*softmax_forward)(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *x, float *y,
                          float *scratch);
  ct_status (*softmax_backward)(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *y, const float *dy,
                           float *dx, float *scratch);

  /* ---- losses and evaluation. Labels are floats holding class numbers; has_ignore skips the
   * positions labelled `ignore`. Entries that validate labels return the position of the first
   * invalid one (the caller reports it), else -1. */
  /* *loss = sum of -ln(max(prob at the label, FLT_MIN)) over the outer x inner positions (in
   * double), *valid = the positions counted. A label must be an integer in [0, C). */
  ct_status (*softmax_loss_forward)(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *prob,
                                    const float *labels, bool has_ignore, int ignore, double *loss, size_t *valid,
                                    ptrdiff_t *bad);
  /* dx = scale (prob - onehot(label)), 0 at ignored positions. */
  ct_status (*softmax_loss_backward)(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *prob,
                                const float *labels, bool has_ignore, int ignore, float scale, float *dx);
  /* sig = the logistic of x; *loss = the cross-entropy against targets t summed in double,
   * *valid = the elements counted (ignore compares (int)t). Backward: dx = w (sig - t), 0 where
   * ignored. */
  ct_status (*sigmoid_xent_forward)(const ct_driver *d, size_t n, const float *x, const float *t, bool has_ignore,
                               int ignore, float *sig, double *loss, size_t *valid);
  ct_status (*sigmoid_xent_backward)(const ct_driver *d, size_t n, const float *sig, const float *t, bool has_ignore,
                                int ignore, float w, float *dx);
  /* Top-k accuracy over outer x C x inner scores (ties rank against the true class): *hits and
   * *counted; per_class (C, may be NULL) gets the accuracy per class, with class_count (C) as
   * scratch. A label must lie in [0, C). */
  ct_status (*accuracy)(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *score,
                        const float *labels, int top_k, bool has_ignore, int ignore, float *per_class,
                        size_t *class_count, size_t *hits, size_t *counted, ptrdiff_t *bad);
  /* ArgMax: for each of outer x stride positions, the top_k of its dim entries (stride apart)
   * by value descending, ties by index descending. has_axis: y is outer x top_k x stride of
   * indices (or values with out_max_val); else y is outer x top_k indices, or outer x 2 x top_k
   * (indices, then values) with out_max_val. scratch: dim entries. */
  ct_status (*argmax)(const ct_driver *d, size_t outer, size_t dim, size_t stride, int top_k, bool out_max_val,
                 bool has_axis, const float *x, float *y, ct_rank_entry *scratch);

  /* ---- recurrent: the LSTM cell (Caffe's LSTMUnit) over N streams of D units. x holds each
   * stream's 4D gate inputs (i, f, o, g), c_prev its previous cell, cont its continuation
   * indicator: i, f', o = sigmoid, g = tanh of their inputs, f = cont f' (0 where cont is 0),
   * c = f c_prev + i g, h = o tanh(c). Backward, Caffe's formula from dc and dh (the gradients of
   * c and h): with t = dc + dh o (1 - tanh(c)^2): dc_prev = t f, and dx's i, f, o, g parts t g i
   * (1 - i), t c_prev f (1 - f), dh tanh(c) o (1 - o), t i (1 - g^2). dc_prev or dx may be NULL;
   * dc_prev may be dc. */
  ct_status (*lstm_unit_forward)(const ct_driver *d, size_t N, size_t D, const float *c_prev, const float *x,
                                 const float *cont, float *c, float *h);
  ct_status (*lstm_unit_backward)(const ct_driver *d, size_t N, size_t D, const float *c_prev, const float *x,
                                  const float *cont, const float *c, const float *dc, const float *dh, float *dc_prev,
                                  float *dx);

  /* ---- Dropout's mask: mask[i] = scale where the uniform number of element offset + i in seed's
   * stream (core/philox.h: counter-based) is >= ratio, else 0, for i < n. Every driver draws the
   * same numbers, so partitions that draw their own ranges make the single partition's mask. */
  ct_status (*dropout_mask)(const ct_driver *d, uint64_t seed, size_t offset, size_t n, float ratio, float scale,
                            float *mask);

  /* ---- the solver: one update of n parameters w with gradients g (left holding the step
   * taken) and history h0 (and h1 for AdaDelta and Adam). */
  ct_status (*update)(const ct_driver *d, const ct_update_step *s, size_t n, float *w, float *g, float *h0, float *h1);
} ct_driver_ops;

struct ct_driver {
  const ct_driver_ops *ops;
  const char *device; /* "cpu", "emu", "cuda" */
  int index;          /* which device of that kind (0 for the CPU) */
  char name[24];      /* "cpu", "emu:0": for messages and plans */
  const ct_mem *mem;  /* the place its memory is (core/storage.h): ct_mem_host for the CPU */
  void *ctx;          /* the driver's own state */
};

/* Creates the driver for `device` ("cpu" or NULL, "emu:N", "cuda:N"); a device this build cannot
 * drive, or one that is not present, is CT_EUNSUPPORTED with a message saying which. `pool`
 * (may be NULL) is the thread pool the CPU driver may split a partition's GEMMs over. The
 * caller frees it with ct_driver_free (NULL is a no-op). */
struct ct_pool;
ct_status ct_driver_create(const char *device, struct ct_pool *pool, ct_driver **out, ct_error *err);
/* Whether `device` names a kind of device this build knows ("cpu", "emu:N", "cuda:N"), and
 * its canonical name ("emu" alone is "emu:0"). */
bool ct_driver_parse_name(const char *device, char *canon, size_t n);
/* The reason for d's last failure, as "<device>: <reason>". */
void ct_driver_error(const ct_driver *d, ct_error *err, ct_status s, const char *what);
void ct_driver_free(ct_driver *d);

/* CUDA devices (src/drivers/cuda/, built when nvcc is found): whether this build has the
 * driver; how many devices the runtime sees (0, with the reason in why, when none: no driver
 * built, no GPU, no NVIDIA driver); one line about device `index` (false when it is not there).
 * Nothing CUDA starts before one of these or a "cuda:N" driver is asked for. */
bool ct_driver_cuda_built(void);
int ct_driver_cuda_devices(char *why, size_t n);
bool ct_driver_cuda_describe(int index, char *buf, size_t n);

/* The CPU driver shared by code that runs outside a net (a single layer under test, an update
 * context of its own, ct_lower_forward). It has no state; never free it. */
const ct_driver *ct_driver_cpu(void);

#endif
