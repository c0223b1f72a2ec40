/* C = A B^T for a thin A: a fully-connected layer's forward pass, y (batch x outputs) = x W^T,
 * with a batch of 24 to 32 rows and a weight matrix of megabytes (CaffeNet's and VGG's fc6-fc8
 * at batch 32, where each partition thread takes a block of the outputs).
 *
 * OpenBLAS copies every element of W into its packed panels before its kernel reads it, and with
 * 32 rows a W element then serves only 32 multiply-adds: the copy costs as much as the
 * arithmetic (about 60 GFLOP/s of a core's 150 here). This kernel reads W once, where it lies,
 * and packs only x (transposed, K x 32: a megabyte for fc6): twelve rows of W at a time, each
 * element broadcast against the 32 batch values of its column of x, into 24 vector accumulators
 * that hold a 12 x 32 block of y^T. Each y element is the sum over k in increasing order, so
 * the result does not depend on how the caller splits the columns of C.
 *
 * AVX-512 (runtime-checked) on x86-64; elsewhere, or with CT_THIN_GEMM=0 in the environment
 * (for comparisons), ct_cpu_gemm_thin declines and the caller uses OpenBLAS. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/cpu/kernels.h"

/* Packing space, one buffer per thread and slot (partition threads live as long as the
 * process), grown to the largest size asked for and freed with its thread: no allocation per
 * call. Slot 0 is this file's packed x; cpu/pointwise.c packs into slots 1 and 2. */
static pthread_key_t pack_key[CT_CPU_PACK_SLOTS];
static pthread_once_t pack_once = PTHREAD_ONCE_INIT;
static bool pack_key_ok;
typedef struct {
  size_t cap;
  float f[] __attribute__((aligned(64)));
} pack_buf;

static void pack_key_make(void) {
  pack_key_ok = true;
  for (int i = 0; i < CT_CPU_PACK_SLOTS; i++) pack_key_ok = pack_key_ok && pthread_key_create(&pack_key[i], free) == 0;
}

float *ct_cpu_pack_space(int slot, size_t words) {
  pthread_once(&pack_once, pack_key_make);
  if (!pack_key_ok || slot < 0 || slot >= CT_CPU_PACK_SLOTS) return NULL;
  pack_buf *b = pthread_getspecific(pack_key[slot]);
  if (b && b->cap >= words) return b->f;
  pack_buf *nb = aligned_alloc(64, (sizeof *nb + words * sizeof(float) + 63) / 64 * 64);
  if (!nb) return NULL;
  nb->cap = words;
  if (pthread_setspecific(pack_key[slot], nb) != 0) {
    free(nb);
    return NULL;
  }
  free(b);
  return nb->f;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define THIN_TARGET __attribute__((target("avx512f")))
#define THIN_COLS 32 /* batch rows per panel: two 16-lane vectors */

/* ct (r x 32) = B (r rows, ldb) . at (K x 32), r <= 12, as 2 r accumulators */
static inline __attribute__((always_inline)) THIN_TARGET void tile(int r, int K, const float *B, size_t ldb,
                                                                   const float *at, float *ct) {
  __m512 lo[12], hi[12];
#pragma GCC unroll 12
  for (int i = 0; i < 12; i++)
    if (i < r) lo[i] = hi[i] = _mm512_setzero_ps();
  for (int k = 0; k < K; k++) {
    const float *ak = at + (size_t)k * THIN_COLS;
    const __m512 b0 = _mm512_loadu_ps(ak), b1 = _mm512_loadu_ps(ak + 16);
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++)
      if (i < r) {
        const __m512 a = _mm512_set1_ps(B[(size_t)i * ldb + (size_t)k]);
        lo[i] = _mm512_fmadd_ps(a, b0, lo[i]);
        hi[i] = _mm512_fmadd_ps(a, b1, hi[i]);
      }
  }
#pragma GCC unroll 12
  for (int i = 0; i < 12; i++)
    if (i < r) {
      _mm512_storeu_ps(ct + i * THIN_COLS, lo[i]);
      _mm512_storeu_ps(ct + i * THIN_COLS + 16, hi[i]);
    }
}

THIN_TARGET static void tile12(int K, const float *B, size_t ldb, const float *at, float *ct) {
  tile(12, K, B, ldb, at, ct);
}
THIN_TARGET static void tile4(int K, const float *B, size_t ldb, const float *at, float *ct) {
  tile(4, K, B, ldb, at, ct);
}
THIN_TARGET static void tile1(int K, const float *B, size_t ldb, const float *at, float *ct) {
  tile(1, K, B, ldb, at, ct);
}

/* C (mp x N) = A . B^T, at being A transposed (K x 32, zero past row mp) */
THIN_TARGET static void panel(int mp, int N, int K, const float *B, int ldb, const float *at, float *C, int ldc) {
  float ct[12 * THIN_COLS];
  for (int n = 0; n < N;) {
    int r = N - n >= 12 ? 12 : N - n >= 4 ? 4 : 1;
    const float *b = B + (size_t)n * (size_t)ldb;
    if (r == 12)
      tile12(K, b, (size_t)ldb, at, ct);
    else if (r == 4)
      tile4(K, b, (size_t)ldb, at, ct);
    else
      tile1(K, b, (size_t)ldb, at, ct);
    for (int m = 0; m < mp; m++)
      for (int i = 0; i < r; i++) C[(size_t)m * (size_t)ldc + (size_t)(n + i)] = ct[i * THIN_COLS + m];
    n += r;
  }
}

static int thin_enabled(void) {
  static atomic_int state = -1;
  return ct_cpu_avx512_kernel_on(&state, "CT_THIN_GEMM");
}

bool ct_cpu_gemm_thin(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc) {
  /* the shapes where it beats OpenBLAS: 24 to 32 rows (fewer would waste lanes; with more,
   * OpenBLAS's packing pays for itself), a long dot product and enough columns for the packing
   * of A to pay */
  if (trans_a || !trans_b || alpha != 1.0f || beta != 0.0f) return false;
  if (M < 24 || M > THIN_COLS) return false;
  if (K < 256 || N < 64 || (size_t)N * (size_t)K < ((size_t)1 << 20)) return false;
  if (!thin_enabled()) return false;
  float *at = ct_cpu_pack_space(0, (size_t)K * THIN_COLS);
  if (!at) return false;
  for (int k0 = 0; k0 < K; k0 += 16) { /* transposed in 16 x 32 blocks: both sides stay in cache */
    const int kb = K - k0 < 16 ? K - k0 : 16;
    for (int m = 0; m < THIN_COLS; m++)
      for (int k = k0; k < k0 + kb; k++)
        at[(size_t)k * THIN_COLS + (size_t)m] = m < M ? A[(size_t)m * (size_t)lda + (size_t)k] : 0.0f;
  }
  panel(M, N, K, B, ldb, at, C, ldc);
  return true;
}

#else

bool ct_cpu_gemm_thin(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc) {
  (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B, (void)ldb;
  (void)beta, (void)C, (void)ldc;
  return false;
}

#endif
