/* Four-lane float and int vectors for the host loops (CPU driver, lowering) the compiler does
 * not vectorise by itself.
 * GCC 12 at the project's -O2 vectorises only loops whose trip count it knows to be a multiple of
 * the vector width, and never one with a select (x > 0 ? x : s x): -ftrapping-math forbids
 * if-converting it. These kernels (ReLU, pooling) are written with GNU C vector extensions
 * instead, which gcc and clang both accept under -std=c11 for every target (SSE on x86-64, NEON
 * on arm64, plain scalar code elsewhere); each lane computes exactly what the scalar loop did. */
#ifndef CT_DRIVERS_CPU_SIMD_H
#define CT_DRIVERS_CPU_SIMD_H

#include <string.h>

typedef float ct_v4f __attribute__((vector_size(16)));
typedef int ct_v4i __attribute__((vector_size(16)));

/* unaligned loads and stores (movups) */
static inline ct_v4f ct_v4f_load(const float *p) {
  ct_v4f v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void ct_v4f_store(float *p, ct_v4f v) { memcpy(p, &v, sizeof v); }
static inline void ct_v4i_store(int *p, ct_v4i v) { memcpy(p, &v, sizeof v); }
static inline ct_v4i ct_v4i_load(const int *p) {
  ct_v4i v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline ct_v4f ct_v4f_splat(float a) { return (ct_v4f){a, a, a, a}; }
static inline ct_v4i ct_v4i_splat(int a) { return (ct_v4i){a, a, a, a}; }

/* m ? a : b lane by lane, m a comparison's result (all ones or all zeros) */
static inline ct_v4f ct_v4f_select(ct_v4i m, ct_v4f a, ct_v4f b) {
  return (ct_v4f)((m & (ct_v4i)a) | (~m & (ct_v4i)b));
}
static inline ct_v4i ct_v4i_select(ct_v4i m, ct_v4i a, ct_v4i b) { return (m & a) | (~m & b); }

/* p[0], p[s], p[2 s], p[3 s]; s = 2 reads p[0..6] only (two loads and a shuffle) */
static inline ct_v4f ct_v4f_load_stride(const float *p, int s) {
  if (s == 1) return ct_v4f_load(p);
  if (s == 2) return __builtin_shufflevector(ct_v4f_load(p), ct_v4f_load(p + 3), 0, 2, 5, 7);
  return (ct_v4f){p[0], p[s], p[2 * s], p[3 * s]};
}

/* Eight-lane floats for the direct (depthwise) convolution: one AVX register where the caller
 * is compiled for AVX (a target attribute), two SSE registers elsewhere; each lane's arithmetic
 * is the same either way, so the results do not depend on which one ran. */
typedef float ct_v8f __attribute__((vector_size(32)));
/* gcc notes that a 32-byte vector passed by value has another ABI with AVX than without: these
 * are static inline and never cross a call boundary between the two */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
static inline ct_v8f ct_v8f_load(const float *p) {
  ct_v8f v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void ct_v8f_store(float *p, ct_v8f v) { memcpy(p, &v, sizeof v); }
static inline ct_v8f ct_v8f_splat(float a) { return (ct_v8f){a, a, a, a, a, a, a, a}; }
/* p[0], p[s], ..., p[7 s]; s = 2 reads p[0..16) (two loads and a shuffle) */
static inline ct_v8f ct_v8f_load_stride(const float *p, int s) {
  if (s == 1) return ct_v8f_load(p);
  if (s == 2) return __builtin_shufflevector(ct_v8f_load(p), ct_v8f_load(p + 8), 0, 2, 4, 6, 8, 10, 12, 14);
  return (ct_v8f){p[0], p[s], p[2 * s], p[3 * s], p[4 * s], p[5 * s], p[6 * s], p[7 * s]};
}
typedef int ct_v8i __attribute__((vector_size(32)));
/* m ? a : b lane by lane, m a comparison's result */
static inline ct_v8f ct_v8f_select(ct_v8i m, ct_v8f a, ct_v8f b) {
  return (ct_v8f)((m & (ct_v8i)a) | (~m & (ct_v8i)b));
}
/* the four low and the four high lanes */
static inline ct_v4f ct_v8f_lo(ct_v8f v) { return __builtin_shufflevector(v, v, 0, 1, 2, 3); }
static inline ct_v4f ct_v8f_hi(ct_v8f v) { return __builtin_shufflevector(v, v, 4, 5, 6, 7); }
/* the lanes' sum in a fixed order: pairs, then pairs of pairs */
static inline float ct_v8f_sum(ct_v8f v) {
  return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}
#pragma GCC diagnostic pop

#endif
