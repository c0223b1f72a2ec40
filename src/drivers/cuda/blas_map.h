/* Row-major GEMM and GEMV (drivers/driver.h's) as cuBLAS's column-major calls: a row-major
 * M x N matrix with row stride ld is its transpose to a column-major library, so
 * C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T: the operands swap, and M and N with them.
 * Plain C (no CUDA types), so tests/test_cuda_kernels.c checks the mapping against the CPU
 * driver with a column-major reference GEMM written there; cuda/driver.c passes the result to
 * cublasSgemm / cublasSgemv. */
#ifndef CT_DRIVERS_CUDA_BLAS_MAP_H
#define CT_DRIVERS_CUDA_BLAS_MAP_H

#include <stdbool.h>

/* cublasSgemm(handle, trans_first, trans_second, m, n, k, alpha, B, ld_first, A, ld_second, beta,
 * C, ldc): the caller's B is the library's first operand, A its second. */
typedef struct ct_cuda_gemm_call {
  bool trans_first, trans_second;
  int m, n, k;
  int ld_first, ld_second, ldc;
} ct_cuda_gemm_call;

static inline ct_cuda_gemm_call ct_cuda_gemm_map(bool trans_a, bool trans_b, int M, int N, int K, int lda, int ldb,
                                                 int ldc) {
  ct_cuda_gemm_call c = {trans_b, trans_a, N, M, K, ldb, lda, ldc};
  return c;
}

/* cublasSgemv(handle, trans, m, n, alpha, A, lda, x, 1, beta, y, 1) for row-major A (M x N,
 * contiguous): to the library A is N x M, so op(A) = A is its transpose. */
typedef struct ct_cuda_gemv_call {
  bool trans;
  int m, n, lda;
} ct_cuda_gemv_call;

static inline ct_cuda_gemv_call ct_cuda_gemv_map(bool trans_a, int M, int N) {
  ct_cuda_gemv_call c = {!trans_a, N, M, N};
  return c;
}

#endif
