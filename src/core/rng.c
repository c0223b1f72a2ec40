#include "core/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void ct_rng_seed(ct_rng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ct_rng_next(ct_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double ct_rng_uniform01(ct_rng *r) { return (double)(ct_rng_next(r) >> 11) * 0x1.0p-53; }

float ct_rng_uniform(ct_rng *r, float a, float b) {
  float v = a + (b - a) * (float)ct_rng_uniform01(r);
  return v < b ? v : a; /* float rounding must not reach b */
}

float ct_rng_gaussian(ct_rng *r, float mean, float std) {
  /* Box–Muller; one value per call keeps the stream's state a plain function of draws. */
  double u1 = ct_rng_uniform01(r), u2 = ct_rng_uniform01(r);
  if (u1 < 1e-300) u1 = 1e-300;
  double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
  return (float)(mean + std * z);
}

uint64_t ct_rng_below(ct_rng *r, uint64_t n) {
  if (n <= 1) return 0;
  uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
  uint64_t v;
  do v = ct_rng_next(r);
  while (v >= limit);
  return v % n;
}

uint64_t ct_rng_derive(uint64_t seed, uint64_t stream) {
  uint64_t x = seed ^ (stream * 0xd1342543de82ef95ull);
  splitmix64(&x);
  return splitmix64(&x);
}
