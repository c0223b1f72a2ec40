/* The CUDA driver's entries (drivers/driver.h has each contract): cuBLAS for GEMM, GEMV, dot and
 * asum; every other entry launches the bodies of cuda/kern.h (cuda/kernels.cu), which
 * tests/test_cuda_kernels.c holds to the CPU driver on the host. The entries built on
 * reductions (BatchNorm, the fused chain, Scale and PReLU gradients, DIRECT convolution) are
 * cuda/driver_red.c's; lowering types 2, 3 and WINOGRAD run staged through the host
 * (cuda/staged.c).
 *
 * Each driver has its own stream and cuBLAS handle; entries queue work on the stream and
 * return, except those that hand a value back to the host (dot, asum, sumsq, the losses,
 * accuracy) and upload/download, which wait for it. A failure is a ct_status and the CUDA
 * error's text through error_message; nothing aborts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/cuda/blas_map.h"
#include "drivers/cuda/entry.h"

/* ---------------------------------------------------------------- lifecycle and memory */

static void cuda_destroy(ct_driver *d) {
  cuda_ctx *c = d->ctx;
  if (!c) return;
  (void)cudaSetDevice(c->dev->index);
  (void)cudaStreamSynchronize(c->stream);
  c->bl->destroy(c->blas);
  (void)cudaStreamDestroy(c->stream);
  (void)cudaFree(c->scratch);
  (void)cudaFreeHost(c->host);
  pthread_mutex_destroy(&c->mu);
  free(c);
  d->ctx = NULL;
}

static void cuda_error_message(const ct_driver *d, char *buf, size_t n) {
  cuda_ctx *c = d->ctx;
  pthread_mutex_lock(&c->mu);
  snprintf(buf, n, "%s", c->error[0] ? c->error : "no error");
  pthread_mutex_unlock(&c->mu);
}

static void *cuda_alloc(const ct_driver *d, size_t bytes) { return d->mem->alloc(d->mem, bytes); }
static void cuda_free(const ct_driver *d, void *p) { d->mem->free(d->mem, p); }

static ct_status cuda_memset(const ct_driver *d, void *p, int byte, size_t bytes) {
  BEGIN("memset");
  if (bytes) CHECK_CUDA(cudaMemsetAsync(p, byte, bytes, c->stream));
  END
}

static ct_status cuda_copy(const ct_driver *d, void *dst, const void *src, size_t bytes) {
  BEGIN("copy");
  if (bytes) CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream));
  END
}

static ct_status cuda_copy_2d(const ct_driver *d, size_t rows, size_t row_bytes, void *dst, size_t dst_pitch,
                              const void *src, size_t src_pitch) {
  BEGIN("copy_2d");
  if (rows && row_bytes)
    CHECK_CUDA(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, row_bytes, rows, cudaMemcpyDeviceToDevice, c->stream));
  END
}

/* The host buffer may be reused as soon as these return: they wait for the copy. */
static ct_status cuda_upload(const ct_driver *d, void *dst, const void *host_src, size_t bytes) {
  BEGIN("upload");
  if (bytes) {
    CHECK_CUDA(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, c->stream));
    SYNC();
  }
  END
}

static ct_status cuda_download(const ct_driver *d, void *host_dst, const void *src, size_t bytes) {
  BEGIN("download");
  if (bytes) {
    CHECK_CUDA(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    SYNC();
  }
  END
}

static void cuda_calibration(const ct_driver *d, double *gflops, double *gbytes) {
  cuda_ctx *c = d->ctx;
  pthread_mutex_lock(&c->mu);
  (void)cudaSetDevice(c->dev->index);
  ct_cuda_calibrate(c, gflops, gbytes);
  pthread_mutex_unlock(&c->mu);
}

/* ---------------------------------------------------------------- BLAS (row-major over cuBLAS's column-major:
 * cuda/blas_map.h) */

static ct_status cuda_gemm_ld(const ct_driver *d, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
  BEGIN("gemm");
  const ct_cuda_gemm_call g = ct_cuda_gemm_map(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (M > 0 && N > 0)
    CHECK_BLAS(c->bl->sgemm(c->blas, g.trans_first ? CUBLAS_OP_T : CUBLAS_OP_N, g.trans_second ? CUBLAS_OP_T : CUBLAS_OP_N,
                           g.m, g.n, g.k, &alpha, B, g.ld_first, A, g.ld_second, &beta, C, g.ldc));
  END
}

static ct_status cuda_gemm(const ct_driver *d, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                           const float *A, const float *B, float beta, float *C) {
  return cuda_gemm_ld(d, trans_a, trans_b, M, N, K, alpha, A, trans_a ? M : K, B, trans_b ? K : N, beta, C, N);
}

static ct_status cuda_gemv(const ct_driver *d, bool trans_a, int M, int N, float alpha, const float *A, const float *x,
                           float beta, float *y) {
  BEGIN("gemv");
  const ct_cuda_gemv_call g = ct_cuda_gemv_map(trans_a, M, N);
  if (M > 0 && N > 0)
    CHECK_BLAS(c->bl->sgemv(c->blas, g.trans ? CUBLAS_OP_T : CUBLAS_OP_N, g.m, g.n, &alpha, A, g.lda, x, 1, &beta, y, 1));
  END
}

static ct_status cuda_axpy(const ct_driver *d, size_t n, float alpha, const float *x, float *y) {
  BEGIN("axpy");
  LAUNCH(axpy, n, alpha, x, y);
  END
}

static ct_status cuda_scal(const ct_driver *d, size_t n, float alpha, const float *x, float *y) {
  BEGIN("scal");
  LAUNCH(scal, n, alpha, x, y);
  END
}

#define BLAS_CHUNK ((size_t)1 << 30)

static ct_status cuda_dot(const ct_driver *d, size_t n, const float *x, const float *y, float *out) {
  BEGIN("dot");
  float acc = 0.0f;
  for (size_t b = 0; b < n; b += BLAS_CHUNK) {
    float part = 0.0f;
    CHECK_BLAS(c->bl->sdot(c->blas, (int)(n - b < BLAS_CHUNK ? n - b : BLAS_CHUNK), x + b, 1, y + b, 1, &part));
    acc += part;
  }
  *out = acc;
  END
}

static ct_status cuda_asum(const ct_driver *d, size_t n, const float *x, float *out) {
  BEGIN("asum");
  float acc = 0.0f;
  for (size_t b = 0; b < n; b += BLAS_CHUNK) {
    float part = 0.0f;
    CHECK_BLAS(c->bl->sasum(c->blas, (int)(n - b < BLAS_CHUNK ? n - b : BLAS_CHUNK), x + b, 1, &part));
    acc += part;
  }
  *out = acc;
  END
}

/* The contract is one running sum in index order from acc (so ranges summed one after another
 * equal the whole), which a parallel reduction would break: the floats come to pinned host memory
 * a few megabytes at a time and are summed there. Only clip_gradients calls it, once an
 * iteration. */
#define SUMSQ_CHUNK ((size_t)1 << 22)

static ct_status cuda_sumsq(const ct_driver *d, size_t n, const float *x, double acc, double *out) {
  BEGIN("sumsq");
  float *host = NULL;
  CHECK_CT(ct_cuda_host(c, (n < SUMSQ_CHUNK ? n : SUMSQ_CHUNK) * sizeof(float) + 64, (void **)&host));
  for (size_t b = 0; b < n; b += SUMSQ_CHUNK) {
    const size_t m = n - b < SUMSQ_CHUNK ? n - b : SUMSQ_CHUNK;
    CHECK_CUDA(cudaMemcpyAsync(host, x + b, m * sizeof(float), cudaMemcpyDeviceToHost, c->stream));
    SYNC();
    for (size_t i = 0; i < m; i++) acc += (double)host[i] * host[i];
  }
  *out = acc;
  END
}

/* ---------------------------------------------------------------- element-wise */

static ct_status cuda_add(const ct_driver *d, size_t n, const float *a, const float *b, float *y) {
  BEGIN("add");
  LAUNCH(add, n, a, b, y);
  END
}
static ct_status cuda_sub(const ct_driver *d, size_t n, const float *a, const float *b, float *y) {
  BEGIN("sub");
  LAUNCH(sub, n, a, b, y);
  END
}
static ct_status cuda_mul(const ct_driver *d, size_t n, const float *a, const float *b, float *y) {
  BEGIN("mul");
  LAUNCH(mul, n, a, b, y);
  END
}

static ct_status cuda_neuron_forward(const ct_driver *d, const ct_neuron *p, size_t n, const float *x, float *y) {
  BEGIN("neuron_forward");
  LAUNCH(neuron_fwd, n, *p, x, y);
  END
}

static ct_status cuda_neuron_backward(const ct_driver *d, const ct_neuron *p, size_t n, const float *x, const float *y,
                                      const float *dy, float *dx) {
  BEGIN("neuron_backward");
  LAUNCH(neuron_bwd, n, *p, x, y, dy, dx);
  END
}

static ct_status cuda_prelu_forward(const ct_driver *d, size_t N, size_t C, size_t D, bool shared, const float *x,
                                    const float *a, float *y) {
  BEGIN("prelu_forward");
  LAUNCH(prelu_fwd, N * C * D, C, D, shared, x, a, y);
  END
}

/* The inputs' pointers (on the host) and coefficients (device memory, read back: a few
 * floats) into the kernel's argument. */
static ct_status inputs_of(cuda_ctx *c, int nx, const float *const *x, const float *coeff, ctk_inputs *in) {
  memset(in, 0, sizeof *in);
  if (nx > CTK_MAX_INPUTS) {
    snprintf(c->error, sizeof c->error, "Eltwise over %d inputs: the CUDA driver takes at most %d", nx,
             CTK_MAX_INPUTS);
    return CT_EUNSUPPORTED;
  }
  for (int k = 0; k < nx; k++) in->x[k] = x[k];
  if (coeff) {
    in->has_coeff = true;
    cudaError_t e = cudaMemcpyAsync(in->coeff, coeff, (size_t)nx * sizeof(float), cudaMemcpyDefault, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) return ct_cuda_fail(c, e, "eltwise coefficients");
  }
  return CT_OK;
}

static ct_status cuda_eltwise_forward(const ct_driver *d, ct_eltwise_op op, size_t n, int nx, const float *const *x,
                                      const float *coeff, float *y, int *winner) {
  BEGIN("eltwise_forward");
  ctk_inputs in;
  CHECK_CT(inputs_of(c, nx, x, coeff, &in));
  LAUNCH(eltwise_fwd, n, op, nx, in, y, winner);
  END
}

static ct_status cuda_eltwise_backward(const ct_driver *d, ct_eltwise_op op, size_t n, int nx, const float *const *x,
                                       int k, const float *coeff, bool stable_prod, const float *y, const float *dy,
                                       const int *winner, float *dx) {
  BEGIN("eltwise_backward");
  ctk_inputs in;
  CHECK_CT(inputs_of(c, nx, x, coeff, &in));
  LAUNCH(eltwise_bwd, n, op, nx, in, k, stable_prod, y, dy, winner, dx);
  END
}

static ct_status cuda_bias_forward(const ct_driver *d, size_t outer, size_t dim, size_t inner, const float *x,
                                   const float *b, float *y) {
  BEGIN("bias_forward");
  LAUNCH(bias_fwd, outer * dim * inner, dim, inner, x, b, y);
  END
}

static ct_status cuda_scale_forward(const ct_driver *d, size_t outer, size_t dim, size_t inner, const float *x,
                                    const float *s, const float *b, float *y) {
  BEGIN("scale_forward");
  LAUNCH(scale_fwd, outer * dim * inner, dim, inner, x, s, b, y);
  END
}

/* ---------------------------------------------------------------- the table's first half */

void ct_cuda_core_ops(ct_driver_ops *o) {
  o->destroy = cuda_destroy;
  o->error_message = cuda_error_message;
  o->alloc = cuda_alloc;
  o->free = cuda_free;
  o->memset = cuda_memset;
  o->copy = cuda_copy;
  o->copy_2d = cuda_copy_2d;
  o->upload = cuda_upload;
  o->download = cuda_download;
  o->calibration = cuda_calibration;
  o->gemm = cuda_gemm;
  o->gemm_ld = cuda_gemm_ld;
  o->gemv = cuda_gemv;
  o->axpy = cuda_axpy;
  o->scal = cuda_scal;
  o->dot = cuda_dot;
  o->asum = cuda_asum;
  o->sumsq = cuda_sumsq;
  o->add = cuda_add;
  o->sub = cuda_sub;
  o->mul = cuda_mul;
  o->neuron_forward = cuda_neuron_forward;
  o->neuron_backward = cuda_neuron_backward;
  o->prelu_forward = cuda_prelu_forward;
  o->eltwise_forward = cuda_eltwise_forward;
  o->eltwise_backward = cuda_eltwise_backward;
  o->bias_forward = cuda_bias_forward;
  o->scale_forward = cuda_scale_forward;
}
