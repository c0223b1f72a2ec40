/* The CPU driver's entries, one function per vtable member (see drivers/driver.h for each
 * contract); cpu/driver.c puts them in the table, and the emu driver runs them on its own
 * memory. Memory is host memory, so upload, download and copy are memcpy; GEMM (but for
 * thin_gemm.c's shape and pointwise.c's conv_pw) and GEMV are OpenBLAS's; everything else is
 * the loop each layer (and the lowering) ran before the driver existed, moved unchanged (same
 * order of operations, so the same results, and plain loops the compiler vectorises). Nothing
 * here fails: the entries that return a status return CT_OK, but for conv_pw, which may decline
 * (CT_EUNSUPPORTED, nothing written). */
#ifndef CT_DRIVERS_CPU_KERNELS_H
#define CT_DRIVERS_CPU_KERNELS_H

#include <stdatomic.h>

#include "drivers/driver.h"

/* cpu/calibrate.c: whether the CPU runs AVX2 (the kernels compiled for it as well as for the
 * baseline: depthwise.c, winograd.c) */
bool ct_cpu_has_avx2(void);
/* An AVX-512 kernel's switch (cpu/calibrate.c): on where the CPU has AVX-512 and the environment
 * does not set `env` to 0; worked out at the first call into *state (-1 until then), the same
 * answer on every thread. */
bool ct_cpu_avx512_kernel_on(atomic_int *state, const char *env);

/* cpu/blas.c: memory, BLAS, element-wise arithmetic */
void *ct_cpu_alloc(const ct_driver *d, size_t bytes);
void ct_cpu_free(const ct_driver *d, void *p);
ct_status ct_cpu_memset(const ct_driver *d, void *p, int byte, size_t bytes);
ct_status ct_cpu_copy(const ct_driver *d, void *dst, const void *src, size_t bytes);
ct_status ct_cpu_copy_2d(const ct_driver *d, size_t rows, size_t row_bytes, void *dst, size_t dst_pitch,
                         const void *src, size_t src_pitch);
void ct_cpu_rates(const ct_driver *d, double *gflops, double *gbytes); /* the calibration entry */
ct_status ct_cpu_gemm(const ct_driver *d, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                      const float *B, float beta, float *C);
ct_status ct_cpu_gemm_ld(const ct_driver *d, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                         const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
/* cpu/thin_gemm.c: C = A B^T for 24 to 32 rows of A and a large B without OpenBLAS's packing
 * of B; false (nothing done) where the shape, alpha, beta or the CPU do not suit it */
bool ct_cpu_gemm_thin(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc);
/* Per-thread packing space (cpu/thin_gemm.c): slot's buffer of at least `words` floats, 64-byte
 * aligned, kept for the thread's next call; NULL when out of memory. */
#define CT_CPU_PACK_SLOTS 3
float *ct_cpu_pack_space(int slot, size_t words);
/* cpu/pointwise.c: a 1x1 convolution's GEMMs over nb images at once (driver.h's conv_pw) */
ct_status ct_cpu_conv_pw(const ct_driver *d, bool trans_w, int M, int Kd, int P, int nb, const float *w,
                         const float *x, size_t x_img, size_t x_row, const float *b, float *y, size_t y_img,
                         size_t y_row);
ct_status ct_cpu_gemv(const ct_driver *d, bool trans_a, int M, int N, float alpha, const float *A, const float *x,
                      float beta, float *y);
ct_status ct_cpu_axpy(const ct_driver *d, size_t n, float alpha, const float *x, float *y);
ct_status ct_cpu_scal(const ct_driver *d, size_t n, float alpha, const float *x, float *y);
ct_status ct_cpu_dot(const ct_driver *d, size_t n, const float *x, const float *y, float *out);
ct_status ct_cpu_asum(const ct_driver *d, size_t n, const float *x, float *out);
ct_status ct_cpu_sumsq(const ct_driver *d, size_t n, const float *x, double acc, double *out);
ct_status ct_cpu_add(const ct_driver *d, size_t n, const float *a, const float *b, float *y);
ct_status ct_cpu_sub(const ct_driver *d, size_t n, const float *a, const float *b, float *y);
ct_status ct_cpu_mul(const ct_driver *d, size_t n, const float *a, const float *b, float *y);

/* cpu/neuron.c: activations, PReLU, Eltwise */
ct_status ct_cpu_neuron_forward(const ct_driver *d, const ct_neuron *p, size_t n, const float *x, float *y);
ct_status ct_cpu_neuron_backward(const ct_driver *d, const ct_neuron *p, size_t n, const float *x, const float *y,
                                 const float *dy, float *dx);
ct_status ct_cpu_prelu_forward(const ct_driver *d, size_t N, size_t C, size_t D, bool shared, const float *x,
                               const float *a, float *y);
ct_status ct_cpu_prelu_backward(const ct_driver *d, size_t N, size_t C, size_t D, bool shared, const float *x,
                                const float *dy, const float *a, float *dx, float *da);
ct_status ct_cpu_eltwise_forward(const ct_driver *d, ct_eltwise_op op, size_t n, int nx, const float *const *x,
                                 const float *coeff, float *y, int *winner);
ct_status ct_cpu_eltwise_backward(const ct_driver *d, ct_eltwise_op op, size_t n, int nx, const float *const *x, int k,
                                  const float *coeff, bool stable_prod, const float *y, const float *dy,
                                  const int *winner, float *dx);
ct_status ct_cpu_eltwise_relu_forward(const ct_driver *d, size_t n, int nx, const float *const *x, const float *coeff,
                                      float slope, float *y);
ct_status ct_cpu_eltwise_relu_backward(const ct_driver *d, size_t n, int nx, const float *coeff, float slope,
                                       const float *y, const float *dy, float *const *dx, float *dz);

/* cpu/norm.c: Bias, Scale */
ct_status ct_cpu_bias_forward(const ct_driver *d, size_t outer, size_t dim, size_t inner, const float *x,
                              const float *b, float *y);
ct_status ct_cpu_scale_forward(const ct_driver *d, size_t outer, size_t dim, size_t inner, const float *x,
                               const float *s, const float *b, float *y);
ct_status ct_cpu_scale_backward(const ct_driver *d, size_t outer, size_t dim, size_t inner, const float *x,
                                const float *dy, const float *s, float *ds, float *db, float *dx);
/* cpu/batchnorm.c: BatchNorm and the BatchNorm -> Scale (-> ReLU) chain; the _pooled entries
 * (the CPU driver's table) split the channels over the partition's threads */
ct_status ct_cpu_batchnorm_forward(const ct_driver *d, const ct_batchnorm *p, const float *x, float *y, float *xnorm,
                                   float *mean, float *std, float *run_mean, float *run_var, float *run_factor);
ct_status ct_cpu_batchnorm_backward(const ct_driver *d, const ct_batchnorm *p, const float *dy, const float *xnorm,
                                    const float *std, float *dx);
ct_status ct_cpu_bn_chain_forward(const ct_driver *d, const ct_bn_chain *p, const float *x, float *y, float *xnorm,
                                  float *mean, float *std, float *run_mean, float *run_var, float *run_factor,
                                  const float *s, const float *b);
ct_status ct_cpu_bn_chain_backward(const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy,
                                   const float *xnorm, const float *std, const float *s, float *ds, float *db,
                                   float *dx, float *dz);
ct_status ct_cpu_batchnorm_forward_pooled(const ct_driver *d, const ct_batchnorm *p, const float *x, float *y,
                                          float *xnorm, float *mean, float *std, float *run_mean, float *run_var,
                                          float *run_factor);
ct_status ct_cpu_batchnorm_backward_pooled(const ct_driver *d, const ct_batchnorm *p, const float *dy,
                                           const float *xnorm, const float *std, float *dx);
ct_status ct_cpu_bn_chain_forward_pooled(const ct_driver *d, const ct_bn_chain *p, const float *x, float *y,
                                         float *xnorm, float *mean, float *std, float *run_mean, float *run_var,
                                         float *run_factor, const float *s, const float *b);
ct_status ct_cpu_bn_chain_backward_pooled(const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy,
                                          const float *xnorm, const float *std, const float *s, float *ds, float *db,
                                          float *dx, float *dz);
/* bn_chain_backward with xnorm recomputed from the chain's input x (the optional entry) */
ct_status ct_cpu_bn_chain_backward_x(const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy,
                                     const float *x, const float *mean, const float *std, const float *s, float *ds,
                                     float *db, float *dx, float *dz);
ct_status ct_cpu_bn_chain_backward_x_pooled(const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy,
                                            const float *x, const float *mean, const float *std, const float *s,
                                            float *ds, float *db, float *dx, float *dz);
/* bn_chain_forward fed on into an Eltwise SUM -> ReLU (the optional bn_chain_forward_add) */
ct_status ct_cpu_bn_chain_forward_add(const ct_driver *d, const ct_bn_chain *p, const float *x, const float *add,
                                      float c_self, float c_add, float slope, float *out, float *mean, float *std,
                                      float *run_mean, float *run_var, float *run_factor, const float *s,
                                      const float *b);
ct_status ct_cpu_bn_chain_forward_add_pooled(const ct_driver *d, const ct_bn_chain *p, const float *x,
                                             const float *add, float c_self, float c_add, float slope, float *out,
                                             float *mean, float *std, float *run_mean, float *run_var,
                                             float *run_factor, const float *s, const float *b);
/* ... and from the chain's output y (bn_chain_backward_y) */
ct_status ct_cpu_bn_chain_backward_y(const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy,
                                     const float *xnorm, const float *std, const float *s, const float *b, float *ds,
                                     float *db, float *dx, float *dz);
ct_status ct_cpu_bn_chain_backward_y_pooled(const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy,
                                            const float *xnorm, const float *std, const float *s, const float *b,
                                            float *ds, float *db, float *dx, float *dz);

/* cpu/conv.c: the lowering steps */
ct_status ct_cpu_conv_lower(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *x,
                            const float *w, float *ws);
ct_status ct_cpu_conv_lift(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, float *ws, const float *b,
                           float *y);
ct_status ct_cpu_conv_lift_grad(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *dy,
                                float *ws);
ct_status ct_cpu_conv_bias_grad(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *dy,
                                const float *ws, float *db);
ct_status ct_cpu_conv_lower_grad(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, float *ws, float *dx,
                                 float *dw);

/* cpu/depthwise.c: the DIRECT convolution entries */
ct_status ct_cpu_conv_direct_forward(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x,
                                     const float *w, const float *b, float *y, float *ws);
ct_status ct_cpu_conv_direct_backward_data(const ct_driver *d, const ct_conv_geom *g, int nb, const float *w,
                                           const float *dy, float *dx, float *ws);
ct_status ct_cpu_conv_direct_backward_weight(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x,
                                             const float *dy, float *dw, float *db, float *ws);

/* cpu/winograd.c: F(2x2, 3x3)'s transforms behind cpu/conv.c's WINOGRAD steps (the layout:
 * ct_lower_wino_strides): input tiles into V, the kernel into U, M into y (+ bias), dy into dM,
 * dV into dx (overwritten), dU into dw (+=). scratch: ct_lower_wino_scratch floats. */
void ct_cpu_wino_lower(const ct_conv_geom *g, int nb, const float *x, float *V, float *scratch);
void ct_cpu_wino_kernel(const ct_conv_geom *g, const float *w, float *U);
void ct_cpu_wino_lift(const ct_conv_geom *g, int nb, const float *M, const float *b, float *y, float *scratch);
void ct_cpu_wino_lift_grad(const ct_conv_geom *g, int nb, const float *dy, float *dM, float *scratch);
void ct_cpu_wino_lower_grad(const ct_conv_geom *g, int nb, const float *dV, float *dx, float *scratch);
void ct_cpu_wino_kernel_grad(const ct_conv_geom *g, const float *dU, float *dw);
/* The rows [0, rows) of a padded plane buffer P (rows rw floats apart; its row q is padded row
 * top + q of a channel's plane) into that channel's plane of dx, dxp: the part inside the image,
 * copied, but added to in P's first two rows where add_first2 (a block before wrote them). The
 * last step of both tile sizes' LOWER_GRAD. */
void ct_cpu_wino_plane_out(const ct_conv_geom *g, const float *P, size_t rw, int rows, int top, bool add_first2,
                           float *dxp);
/* The blocked steps (driver.h's conv_wino_block, the layout of ct_lower_wino_block). */
ct_status ct_cpu_conv_wino_block(const ct_driver *d, const ct_conv_geom *g, ct_wino_step step, int nb, int r0, int r1,
                                 const float *in, const float *b, float *out, float *scratch);
/* cpu/winograd4.c: F(4x4, 3x3)'s blocked steps (driver.h's conv_wino4_block, the layout of
 * ct_lower_wino4_block). */
ct_status ct_cpu_conv_wino4_block(const ct_driver *d, const ct_conv_geom *g, ct_wino_step step, int nb, int r0,
                                  int r1, const float *in, const float *b, float *out, float *scratch);

/* cpu/pool.c, cpu/lrn.c, cpu/softmax.c */
ct_status ct_cpu_pool_forward(const ct_driver *d, const ct_pool_geom *g, size_t planes, const float *x, float *y,
                              int *argmax, float *mask);
ct_status ct_cpu_pool_backward(const ct_driver *d, const ct_pool_geom *g, size_t planes, const float *x,
                               const float *dy, const int *argmax, float *dx);
ct_status ct_cpu_lrn_forward(const ct_driver *d, const ct_lrn_geom *g, size_t nimg, const float *x, float *y,
                             float *scale, float *spow, float *tmp);
ct_status ct_cpu_lrn_backward(const ct_driver *d, const ct_lrn_geom *g, size_t nimg, const float *x, const float *y,
                              const float *dy, const float *scale, const float *spow, float *dx, float *tmp);
ct_status ct_cpu_softmax_forward(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *x, float *y,
                                 float *scratch);
ct_status ct_cpu_softmax_backward(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *y,
                                  const float *dy, float *dx, float *scratch);

/* cpu/loss.c: losses and evaluation */
ct_status ct_cpu_softmax_loss_forward(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *prob,
                                      const float *labels, bool has_ignore, int ignore, double *loss, size_t *valid,
                                      ptrdiff_t *bad);
ct_status ct_cpu_softmax_loss_backward(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *prob,
                                       const float *labels, bool has_ignore, int ignore, float scale, float *dx);
ct_status ct_cpu_sigmoid_xent_forward(const ct_driver *d, size_t n, const float *x, const float *t, bool has_ignore,
                                      int ignore, float *sig, double *loss, size_t *valid);
ct_status ct_cpu_sigmoid_xent_backward(const ct_driver *d, size_t n, const float *sig, const float *t, bool has_ignore,
                                       int ignore, float w, float *dx);
ct_status ct_cpu_accuracy(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *score,
                          const float *labels, int top_k, bool has_ignore, int ignore, float *per_class,
                          size_t *class_count, size_t *hits, size_t *counted, ptrdiff_t *bad);
ct_status ct_cpu_lstm_unit_forward(const ct_driver *d, size_t N, size_t D, const float *c_prev, const float *x,
                                  const float *cont, float *c, float *h);
ct_status ct_cpu_lstm_unit_backward(const ct_driver *d, size_t N, size_t D, const float *c_prev, const float *x,
                                   const float *cont, const float *c, const float *dc, const float *dh,
                                   float *dc_prev, float *dx);
ct_status ct_cpu_argmax(const ct_driver *d, size_t outer, size_t dim, size_t stride, int top_k, bool out_max_val,
                        bool has_axis, const float *x, float *y, ct_rank_entry *scratch);

/* cpu/neuron.c: Dropout's mask (core/philox.h) */
ct_status ct_cpu_dropout_mask(const ct_driver *d, uint64_t seed, size_t offset, size_t n, float ratio, float scale,
                              float *mask);
/* cpu/update.c: the solver's update rules */
ct_status ct_cpu_update(const ct_driver *d, const ct_update_step *s, size_t n, float *w, float *g, float *h0,
                        float *h1);

#endif
