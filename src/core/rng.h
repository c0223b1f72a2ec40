/* A small, fast, reproducible random stream (xoshiro256**), one per consumer, so that the
 * numbers a layer sees do not depend on what other layers drew. Its state is four words and is
 * saved in snapshots for exact resumption. */
#ifndef CT_RNG_H
#define CT_RNG_H

#include <stdint.h>

typedef struct ct_rng {
  uint64_t s[4];
} ct_rng;

void ct_rng_seed(ct_rng *r, uint64_t seed);
uint64_t ct_rng_next(ct_rng *r);
/* Uniform in [0, 1). */
double ct_rng_uniform01(ct_rng *r);
/* Uniform in [a, b). */
float ct_rng_uniform(ct_rng *r, float a, float b);
float ct_rng_gaussian(ct_rng *r, float mean, float std);
/* Uniform integer in [0, n). */
uint64_t ct_rng_below(ct_rng *r, uint64_t n);
/* A seed derived from a base seed and a stream index (for per-layer streams). */
uint64_t ct_rng_derive(uint64_t seed, uint64_t stream);

#endif
