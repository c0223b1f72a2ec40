/* A counter-based random generator: 32 random bits from (seed, index) alone, so any thread of any
 * device draws element i's number without a stream state, and a range of elements drawn in
 * pieces (the partitions of a layer, on the CPU and on GPUs) is the same as drawn whole. Used by
 * every driver's dropout_mask (drivers/driver.h), and compiled for the GPU too (CT_PHILOX_FN),
 * so the CPU and CUDA drivers draw the same masks bit for bit.
 *
 * Philox-2x32's round (a Feistel step: the product's high half, xored with the key and the other
 * word, becomes the word the next round multiplies), ten rounds keyed by the seed's low word,
 * then ten by its high word, with a Weyl key schedule. */
#ifndef CT_CORE_PHILOX_H
#define CT_CORE_PHILOX_H

#include <stdint.h>

#ifdef __CUDACC__
#define CT_PHILOX_FN __host__ __device__ static inline
#else
#define CT_PHILOX_FN static inline
#endif

CT_PHILOX_FN void ct_philox_2x32(uint32_t *x0, uint32_t *x1, uint32_t k) {
  for (int r = 0; r < 10; r++) {
    const uint64_t p = (uint64_t)0xD256D193u * *x0;
    const uint32_t next = (uint32_t)(p >> 32) ^ k ^ *x1;
    *x1 = (uint32_t)p;
    *x0 = next;
    k += 0x9E3779B9u;
  }
}

CT_PHILOX_FN uint32_t ct_philox_random32(uint64_t seed, uint64_t index) {
  uint32_t x0 = (uint32_t)index, x1 = (uint32_t)(index >> 32);
  ct_philox_2x32(&x0, &x1, (uint32_t)seed);
  ct_philox_2x32(&x0, &x1, (uint32_t)(seed >> 32));
  return x0;
}

/* A uniform float in [0, 1) from the top 24 bits (exact: the same float on every device). */
CT_PHILOX_FN float ct_philox_uniform01(uint64_t seed, uint64_t index) {
  return (float)(ct_philox_random32(seed, index) >> 8) * (1.0f / 16777216.0f);
}

/* Caffe's dropout multiplier for element `index`: scale where kept (u >= ratio), 0 where dropped. */
CT_PHILOX_FN float ct_philox_dropout(uint64_t seed, uint64_t index, float ratio, float scale) {
  return ct_philox_uniform01(seed, index) >= ratio ? scale : 0.0f;
}

#endif
