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
static _Thread_local int tls_saved_blas = -1;

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
  if (pool && ct_pool_size(pool) > 1) {
    tls_saved_blas = ct_blas_threads();
    ct_blas_set_threads(1);
  }
}

static void cpu_leave(const ct_driver *d) {
  (void)d;
  tls_threads = 1;
  if (tls_saved_blas > 0) ct_blas_set_threads(tls_saved_blas);
  tls_saved_blas = -1;
}

static const ct_driver_ops cpu_ops = {
    .destroy = NULL,
    .error_message = cpu_error_message,
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
    .gemm = ct_cpu_gemm,
    .gemm_ld = ct_cpu_gemm_ld,
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
    .bias_forward = ct_cpu_bias_forward,
    .scale_forward = ct_cpu_scale_forward,
    .scale_backward = ct_cpu_scale_backward,
    .batchnorm_forward = ct_cpu_batchnorm_forward,
    .batchnorm_backward = ct_cpu_batchnorm_backward,
    .conv_lower = ct_cpu_conv_lower,
    .conv_lift = ct_cpu_conv_lift,
    .conv_lift_grad = ct_cpu_conv_lift_grad,
    .conv_bias_grad = ct_cpu_conv_bias_grad,
    .conv_lower_grad = ct_cpu_conv_lower_grad,
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
    .update = ct_cpu_update,
};

static const ct_driver cpu_driver = {.ops = &cpu_ops, .device = "cpu", .index = 0, .name = "cpu", .mem = &ct_mem_host, .ctx = NULL};

const ct_driver *ct_driver_cpu(void) { return &cpu_driver; }

const ct_driver_ops *ct_driver_cpu_ops(void) { return &cpu_ops; }

void ct_cpu_driver_set_pool(ct_driver *d, struct ct_pool *pool) { d->ctx = pool; }
