/* The CPU driver's memory, BLAS and element-wise arithmetic. GEMM (but for thin_gemm.c's
 * shape), GEMV, dot and asum are OpenBLAS's (its threading is the driver's: cpu/driver.c keeps
 * it to one thread inside a partitioned run). axpy, scal, sumsq and add/sub/mul are plain loops: they replace loops
 * the layers and the solver ran, and OpenBLAS's versions would round differently (fused
 * multiply-adds). */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/cpu.h"
#include "drivers/cpu/kernels.h"

void *ct_cpu_alloc(const ct_driver *d, size_t bytes) {
  (void)d;
  if (bytes > (size_t)-1 - 63) return NULL;
  size_t rounded = bytes ? (bytes + 63) & ~(size_t)63 : 64; /* aligned_alloc wants a multiple */
  return aligned_alloc(64, rounded);
}

void ct_cpu_free(const ct_driver *d, void *p) {
  (void)d;
  free(p);
}

ct_status ct_cpu_memset(const ct_driver *d, void *p, int byte, size_t bytes) {
  (void)d;
  if (bytes) memset(p, byte, bytes);
  return CT_OK;
}

ct_status ct_cpu_copy(const ct_driver *d, void *dst, const void *src, size_t bytes) {
  (void)d;
  if (bytes) memcpy(dst, src, bytes);
  return CT_OK;
}

ct_status ct_cpu_copy_2d(const ct_driver *d, size_t rows, size_t row_bytes, void *dst, size_t dst_pitch,
                         const void *src, size_t src_pitch) {
  (void)d;
  if (!row_bytes) return CT_OK;
  for (size_t r = 0; r < rows; r++)
    memcpy((char *)dst + r * dst_pitch, (const char *)src + r * src_pitch, row_bytes);
  return CT_OK;
}

void ct_cpu_rates(const ct_driver *d, double *gflops, double *gbytes) {
  (void)d;
  ct_cpu_calibration(gflops, gbytes);
}

/* One GEMM on the calling thread: the thin kernel where it takes the shape, else OpenBLAS. */
static void gemm_block(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc) {
  if (ct_cpu_gemm_thin(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
              alpha, A, lda, B, ldb, beta, C, ldc);
}

/* Dense operands are sub-matrices whose leading dimension is their width, so every GEMM of the
 * driver passes through ct_cpu_gemm_ld: where a partition's GEMM is split over threads. */
ct_status ct_cpu_gemm(const ct_driver *d, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                      const float *A, const float *B, float beta, float *C) {
  return ct_cpu_gemm_ld(d, trans_a, trans_b, M, N, K, alpha, A, trans_a ? M : K, B, trans_b ? K : N, beta, C, N);
}

ct_status ct_cpu_gemm_ld(const ct_driver *d, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                         const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
  (void)d;
  gemm_block(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  return CT_OK;
}

ct_status ct_cpu_gemv(const ct_driver *d, bool trans_a, int M, int N, float alpha, const float *A, const float *x,
                      float beta, float *y) {
  (void)d;
  cblas_sgemv(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, M, N, alpha, A, N, x, 1, beta, y, 1);
  return CT_OK;
}

ct_status ct_cpu_axpy(const ct_driver *d, size_t n, float alpha, const float *x, float *y) {
  (void)d;
  for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
  return CT_OK;
}

ct_status ct_cpu_scal(const ct_driver *d, size_t n, float alpha, const float *x, float *y) {
  (void)d;
  for (size_t i = 0; i < n; i++) y[i] = x[i] * alpha;
  return CT_OK;
}

/* OpenBLAS takes an int count: longer vectors go in pieces. */
#define BLAS_CHUNK ((size_t)1 << 30)

ct_status ct_cpu_dot(const ct_driver *d, size_t n, const float *x, const float *y, float *out) {
  (void)d;
  float s = 0.0f;
  for (size_t i = 0; i < n; i += BLAS_CHUNK) {
    size_t m = n - i < BLAS_CHUNK ? n - i : BLAS_CHUNK;
    s += cblas_sdot((int)m, x + i, 1, y + i, 1);
  }
  *out = s;
  return CT_OK;
}

ct_status ct_cpu_asum(const ct_driver *d, size_t n, const float *x, float *out) {
  (void)d;
  float s = 0.0f;
  for (size_t i = 0; i < n; i += BLAS_CHUNK) {
    size_t m = n - i < BLAS_CHUNK ? n - i : BLAS_CHUNK;
    s += cblas_sasum((int)m, x + i, 1);
  }
  *out = s;
  return CT_OK;
}

ct_status ct_cpu_sumsq(const ct_driver *d, size_t n, const float *x, double acc, double *out) {
  (void)d;
  for (size_t i = 0; i < n; i++) acc += (double)x[i] * x[i];
  *out = acc;
  return CT_OK;
}

/* y = a + b, 16 floats a step in 4-wide vectors (GCC's -O2 leaves this loop scalar: y may be a
 * or b, which is allowed, element by element). Split's gradient sum and Eltwise run on it, and
 * are bound by memory bandwidth with it. Each element is one float addition either way. */
typedef float ct_v4 __attribute__((vector_size(16)));
ct_status ct_cpu_add(const ct_driver *d, size_t n, const float *a, const float *b, float *y) {
  (void)d;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    ct_v4 x0, x1, x2, x3, z0, z1, z2, z3;
    memcpy(&x0, a + i, 16);
    memcpy(&x1, a + i + 4, 16);
    memcpy(&x2, a + i + 8, 16);
    memcpy(&x3, a + i + 12, 16);
    memcpy(&z0, b + i, 16);
    memcpy(&z1, b + i + 4, 16);
    memcpy(&z2, b + i + 8, 16);
    memcpy(&z3, b + i + 12, 16);
    x0 += z0;
    x1 += z1;
    x2 += z2;
    x3 += z3;
    memcpy(y + i, &x0, 16);
    memcpy(y + i + 4, &x1, 16);
    memcpy(y + i + 8, &x2, 16);
    memcpy(y + i + 12, &x3, 16);
  }
  for (; i < n; i++) y[i] = a[i] + b[i];
  return CT_OK;
}

ct_status ct_cpu_sub(const ct_driver *d, size_t n, const float *a, const float *b, float *y) {
  (void)d;
  for (size_t i = 0; i < n; i++) y[i] = a[i] - b[i];
  return CT_OK;
}

ct_status ct_cpu_mul(const ct_driver *d, size_t n, const float *a, const float *b, float *y) {
  (void)d;
  for (size_t i = 0; i < n; i++) y[i] = a[i] * b[i];
  return CT_OK;
}
