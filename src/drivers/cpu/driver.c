/* The CPU driver's table and context. The context is the pool the driver may split a
 * partition's GEMMs over; the thread running a partition tells the driver (enter) how many of
 * the pool's threads are its to use. OpenBLAS's own threads are the driver's business: a net
 * partitioned over several threads keeps OpenBLAS single-threaded inside every partition (its
 * threads would otherwise spin for a tenth of a second after each call, on the cores the next
 * layer's partitions need) and splits a whole-CPU partition's GEMMs itself; a net with one
 * thread leaves OpenBLAS its own. */
#include <stdio.h>
#include <stdlib.h>

#include "core/pool.h"
#include "drivers/cpu.h"
#include "drivers/cpu/kernels.h"

static _Thread_local int tls_threads = 1;

static ct_status cpu_upload(const ct_driver *d, void *dst, const void *src, size_t bytes) {
  return ct_cpu_copy(d, dst, src, bytes);
}
static ct_status cpu_download(const ct_driver *d, void *dst, const void *src, size_t bytes) {
  return ct_cpu_copy(d, dst, src, bytes);
}

static void cpu_error_message(const ct_driver *d, char *buf, size_t n) {
  (void)d;
  snprintf(buf, n, "the CPU driver does not fail");
}

struct ct_pool *ct_cpu_driver_pool(const ct_driver *d) { return d->ctx; }
int ct_cpu_driver_threads(void) { return tls_threads; }

static void cpu_enter(const ct_driver *d, int threads) {
  struct ct_pool *pool = d->ctx;
  tls_threads = pool && threads > 1 ? threads : 1;
}

static void cpu_leave(const ct_driver *d) {
  (void)d;
  tls_threads = 1;
}

/* A net split over several threads keeps OpenBLAS to one thread for the whole pass. */
static void cpu_region(const ct_driver *d, bool begin) {
  struct ct_pool *pool = d->ctx;
  if (!pool || ct_pool_size(pool) < 2) return;
  if (begin)
    ct_blas_single_begin();
  else
    ct_blas_single_end();
}

/* ---- GEMMs split over the partition's threads: by the columns of C (or its rows, when those
 * are more), in blocks of whole 16-float panels, at least 64 wide; each element of C is
 * computed by one thread over the whole K, as on one thread. */
typedef struct gemm_split {
  bool ta, tb, by_rows;
  int M, N, K, parts;
  float alpha, beta;
  const float *A, *B;
  float *C;
  int lda, ldb, ldc;
  ct_status st;
} gemm_split;

static void gemm_block(void *ctx, int i) {
  gemm_split *g = ctx;
  const int n = g->by_rows ? g->M : g->N;
  int b = (int)((long long)n * i / g->parts) & ~15, e = i + 1 == g->parts ? n : (int)((long long)n * (i + 1) / g->parts) & ~15;
  if (e <= b) return;
  ct_status s;
  if (g->by_rows) /* rows [b, e) of C: rows of op(A) */
    s = ct_cpu_gemm_ld(NULL, g->ta, g->tb, e - b, g->N, g->K, g->alpha, g->ta ? g->A + b : g->A + (size_t)b * g->lda,
                       g->lda, g->B, g->ldb, g->beta, g->C + (size_t)b * g->ldc, g->ldc);
  else /* columns [b, e) of C: columns of op(B) */
    s = ct_cpu_gemm_ld(NULL, g->ta, g->tb, g->M, e - b, g->K, g->alpha, g->A, g->lda,
                       g->tb ? g->B + (size_t)b * g->ldb : g->B + b, g->ldb, g->beta, g->C + b, g->ldc);
  if (s) g->st = s;
}

/* Splits when the calling partition owns several of the pool's threads and C is wide enough;
 * false: run it as one call. */
static bool gemm_on_pool(const ct_driver *d, gemm_split *g) {
  struct ct_pool *pool = d->ctx;
  int parts = ct_cpu_driver_threads();
  if (!pool || parts < 2) return false;
  if (parts > ct_pool_size(pool)) parts = ct_pool_size(pool);
  g->by_rows = g->M > g->N;
  const int n = g->by_rows ? g->M : g->N;
  if (parts < 2 || n < 64 * parts) return false;
  g->parts = parts;
  g->st = CT_OK;
  ct_pool_run(pool, parts, gemm_block, g);
  return true;
}

static ct_status cpu_gemm_ld(const ct_driver *d, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                             const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
  gemm_split g = {.ta = trans_a, .tb = trans_b, .M = M, .N = N, .K = K, .alpha = alpha, .beta = beta, .A = A,
                  .B = B, .C = C, .lda = lda, .ldb = ldb, .ldc = ldc};
  if (gemm_on_pool(d, &g)) return g.st;
  return ct_cpu_gemm_ld(d, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static ct_status cpu_gemm(const ct_driver *d, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                          const float *A, const float *B, float beta, float *C) {
  gemm_split g = {.ta = trans_a, .tb = trans_b, .M = M, .N = N, .K = K, .alpha = alpha, .beta = beta, .A = A,
                  .B = B, .C = C, .lda = trans_a ? M : K, .ldb = trans_b ? K : N, .ldc = N};
  if (gemm_on_pool(d, &g)) return g.st;
  return ct_cpu_gemm(d, trans_a, trans_b, M, N, K, alpha, A, B, beta, C);
}

static const ct_driver_ops cpu_ops = {
    .destroy = NULL,
    .error_message = cpu_error_message,
    .region = cpu_region,
    .enter = cpu_enter,
    .leave = cpu_leave,
    .alloc = ct_cpu_alloc,
    .free = ct_cpu_free,
    .memset = ct_cpu_memset,
    .copy = ct_cpu_copy,
    .copy_2d = ct_cpu_copy_2d,
    .upload = cpu_upload,
    .download = cpu_download,
    .calibration = ct_cpu_rates,
    .gemm = cpu_gemm,
    .gemm_ld = cpu_gemm_ld,
    .gemv = ct_cpu_gemv,
    .axpy = ct_cpu_axpy,
    .scal = ct_cpu_scal,
    .dot = ct_cpu_dot,
    .asum = ct_cpu_asum,
    .sumsq = ct_cpu_sumsq,
    .add = ct_cpu_add,
    .sub = ct_cpu_sub,
    .mul = ct_cpu_mul,
    .neuron_forward = ct_cpu_neuron_forward,
    .neuron_backward = ct_cpu_neuron_backward,
    .prelu_forward = ct_cpu_prelu_forward,
    .prelu_backward = ct_cpu_prelu_backward,
    .eltwise_forward = ct_cpu_eltwise_forward,
    .eltwise_backward = ct_cpu_eltwise_backward,
    .eltwise_relu_forward = ct_cpu_eltwise_relu_forward,
    .eltwise_relu_backward = ct_cpu_eltwise_relu_backward,
    .bias_forward = ct_cpu_bias_forward,
    .scale_forward = ct_cpu_scale_forward,
    .scale_backward = ct_cpu_scale_backward,
    .batchnorm_forward = ct_cpu_batchnorm_forward_pooled,
    .batchnorm_backward = ct_cpu_batchnorm_backward_pooled,
    .bn_chain_forward = ct_cpu_bn_chain_forward_pooled,
    .bn_chain_backward = ct_cpu_bn_chain_backward_pooled,
    .bn_chain_backward_x = ct_cpu_bn_chain_backward_x_pooled,
    .bn_chain_backward_y = ct_cpu_bn_chain_backward_y_pooled,
    .bn_chain_forward_add = ct_cpu_bn_chain_forward_add_pooled,
    .conv_lower = ct_cpu_conv_lower,
    .conv_lift = ct_cpu_conv_lift,
    .conv_lift_grad = ct_cpu_conv_lift_grad,
    .conv_bias_grad = ct_cpu_conv_bias_grad,
    .conv_lower_grad = ct_cpu_conv_lower_grad,
    .conv_wino_block = ct_cpu_conv_wino_block,
    .conv_wino4_block = ct_cpu_conv_wino4_block,
    .conv_direct_forward = ct_cpu_conv_direct_forward,
    .conv_direct_backward_data = ct_cpu_conv_direct_backward_data,
    .conv_direct_backward_weight = ct_cpu_conv_direct_backward_weight,
    .conv_pw = ct_cpu_conv_pw,
    .pool_forward = ct_cpu_pool_forward,
    .pool_backward = ct_cpu_pool_backward,
    .lrn_forward = ct_cpu_lrn_forward,
    .lrn_backward = ct_cpu_lrn_backward,
    .softmax_forward = ct_cpu_softmax_forward,
    .softmax_backward = ct_cpu_softmax_backward,
    .softmax_loss_forward = ct_cpu_softmax_loss_forward,
    .softmax_loss_backward = ct_cpu_softmax_loss_backward,
    .sigmoid_xent_forward = ct_cpu_sigmoid_xent_forward,
    .sigmoid_xent_backward = ct_cpu_sigmoid_xent_backward,
    .accuracy = ct_cpu_accuracy,
    .argmax = ct_cpu_argmax,
    .lstm_unit_forward = ct_cpu_lstm_unit_forward,
    .lstm_unit_backward = ct_cpu_lstm_unit_backward,
    .dropout_mask = ct_cpu_dropout_mask,
    .update = ct_cpu_update,
};

static const ct_driver cpu_driver = {.ops = &cpu_ops, .device = "cpu", .index = 0, .name = "cpu", .mem = &ct_mem_host, .ctx = NULL};

const ct_driver *ct_driver_cpu(void) { return &cpu_driver; }

const ct_driver_ops *ct_driver_cpu_ops(void) { return &cpu_ops; }

void ct_cpu_driver_set_pool(ct_driver *d, struct ct_pool *pool) { d->ctx = pool; }
