/* The BLAS cortado uses (OpenBLAS's CBLAS). Row-major everywhere. */
#ifndef CT_BLAS_H
#define CT_BLAS_H

#include <cblas.h>

/* C(MxN) = alpha * op(A)(MxK) * op(B)(KxN) + beta * C, all row-major and contiguous. */
static inline void ct_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                            const float *B, float beta, float *C) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N,
              K, alpha, A, trans_a ? M : K, B, trans_b ? K : N, beta, C, N);
}

/* y = alpha * op(A)(MxN) * x + beta * y */
static inline void ct_sgemv(int trans_a, int M, int N, float alpha, const float *A, const float *x, float beta,
                            float *y) {
  cblas_sgemv(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, M, N, alpha, A, N, x, 1, beta, y, 1);
}

#endif
