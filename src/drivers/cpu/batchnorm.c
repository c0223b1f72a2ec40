/* The CPU driver's BatchNorm, alone and as the head of the fused BatchNorm -> Scale (-> ReLU)
 * chain (net/fuse.c picks the chains, layers/bn_chain.c runs them).
 *
 * Every channel is independent (its statistics, its running sums, its Scale gradients), so each
 * entry is a loop over a range of channels; the CPU driver's table splits the channels over the
 * partition's threads (the *_pooled entries), emu runs them on one. A range runs GROUP channels
 * at a time, and every pass over a group visits its planes in memory order (image by image, the
 * group's channels in turn: one long stream, where a channel at a time reads N short planes far
 * apart, which the hardware's prefetchers follow poorly: 1.3-2x slower on MobileNet's and
 * ResNet's shapes); each channel's sums still take its planes in image order, so the values do
 * not depend on the grouping. Per channel:
 *  - statistics: one pass over the channel's N planes, STAT_BLOCK elements at a time: each
 *    block's sum and squared deviations from its own shift in eight float lanes (two sweeps
 *    while it is in L1), moved to the channel's shift and summed in doubles;
 *  - forward: one pass writing xnorm (when kept) and y = relu(xnorm s + b);
 *  - backward: one pass for the sums the gradient needs (batch statistics, or ds and db), one
 *    more writing dx (with global statistics the two are the same pass); xnorm is read where
 *    the forward kept it, or recomputed from x with the forward's mean and std (the *_x
 *    entries: the same float operations, so the same values); with the ReLU, where z is read
 *    the ReLU's mask comes from z s + b recomputed as the forward computed it (mask_from_z), so
 *    y is not read at all: two streams instead of three in both passes (on channels larger
 *    than the cache; on smaller ones reading y costs less).
 * Each pass is compiled twice, for the baseline and for AVX2 (eight lanes in one register
 * instead of two), and picked at run time; the lanes compute the same operations either way,
 * and sums over lanes keep their four-lane order, so the results do not depend on the pick.
 * The normalisation is written as the unfused layers compute it ((x - mean) * (1 / std), then
 * times s plus b, then the ReLU select), so a fused chain's forward matches the three layers up
 * to the order of the statistics' sums. */
#include <math.h>
#include <string.h>

#include "core/pool.h"
#include "core/simd.h"
#include "drivers/cpu.h"
#include "drivers/cpu/kernels.h"

enum { STAT_BLOCK = 1024, GROUP = 64 /* channels swept together in memory order */ };

static float hsum(ct_v4f v) { return (v[0] + v[1]) + (v[2] + v[3]); }

#define ALWAYS_INLINE inline __attribute__((always_inline))
/* the eight-lane helpers pass 32-byte vectors by value; they are always inlined, never called
 * across the baseline / AVX2 boundary (as core/simd.h's) */
#pragma GCC diagnostic ignored "-Wpsabi"

/* ct_bn_chain_relu_input on four and eight lanes: the same expression, so the same rounding */
static inline ct_v4f relu_input(ct_v4f v, ct_v4f s, ct_v4f b) { return v * s + b; }
static ALWAYS_INLINE ct_v8f relu_input8(ct_v8f v, ct_v8f s, ct_v8f b) { return v * s + b; }

/* A channel's moments about a shift K (its first block's mu): the sums of x - K and of its
 * square, in doubles. */
typedef struct chan_moments {
  double K, s1, s2;
  bool started;
} chan_moments;

/* Adds one block of at most STAT_BLOCK elements (inv_n: 1 / n), read from memory once: a first
 * sweep sums it for a shift mu near its mean (in L1 after it), a second sums u = x - mu and u^2,
 * eight float lanes each, four or two accumulators, added pairwise in a fixed order (lanes 0-3
 * and 4-7 first, then those four as hsum does). u is as small as the spread, so the float sums
 * lose no digits to the mean; moving them to the channel's shift K is exact algebra in double
 * (no division): sum(x - K) = sum(u) + n d, sum((x - K)^2) = sum(u^2) + 2 d sum(u) + n d^2,
 * d = mu - K. */
static ALWAYS_INLINE void block_moments(chan_moments *acc, const float *x, size_t n, float inv_n) {
  const ct_v8f zero = ct_v8f_splat(0.0f);
  ct_v8f a0 = zero, a1 = zero, a2 = zero, a3 = zero;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 += ct_v8f_load(x + i), a1 += ct_v8f_load(x + i + 8);
    a2 += ct_v8f_load(x + i + 16), a3 += ct_v8f_load(x + i + 24);
  }
  for (; i + 8 <= n; i += 8) a0 += ct_v8f_load(x + i);
  const ct_v8f a = (a0 + a1) + (a2 + a3);
  float t = hsum(ct_v8f_lo(a) + ct_v8f_hi(a));
  for (; i < n; i++) t += x[i];
  const float mu = t * inv_n;
  const ct_v8f m = ct_v8f_splat(mu);
  ct_v8f s0 = zero, s1 = zero, q0 = zero, q1 = zero;
  for (i = 0; i + 16 <= n; i += 16) {
    const ct_v8f u = ct_v8f_load(x + i) - m, v = ct_v8f_load(x + i + 8) - m;
    s0 += u, q0 += u * u;
    s1 += v, q1 += v * v;
  }
  for (; i + 8 <= n; i += 8) {
    const ct_v8f u = ct_v8f_load(x + i) - m;
    s0 += u, q0 += u * u;
  }
  s0 += s1, q0 += q1;
  float su = hsum(ct_v8f_lo(s0) + ct_v8f_hi(s0)), q = hsum(ct_v8f_lo(q0) + ct_v8f_hi(q0));
  for (; i < n; i++) {
    const float u = x[i] - mu;
    su += u;
    q += u * u;
  }
  if (!acc->started) acc->K = mu, acc->started = true;
  const double d = (double)mu - acc->K, dn = (double)n;
  acc->s1 += (double)su + dn * d;
  acc->s2 += (double)q + 2.0 * d * (double)su + dn * d * d;
}

/* A plane of S elements, STAT_BLOCK at a time (inv_full, inv_tail: 1 / the block lengths). */
static ALWAYS_INLINE void plane_moments(chan_moments *acc, const float *x, size_t S, float inv_full, float inv_tail) {
  size_t b = 0;
  for (; b + STAT_BLOCK <= S; b += STAT_BLOCK) block_moments(acc, x + b, STAT_BLOCK, inv_full);
  if (b < S) block_moments(acc, x + b, S - b, inv_tail);
}

/* A group of channels' means and stds, from the batch (updating the running sums, Caffe's rule)
 * or from the running sums (sf: 1 / the running factor). Each channel's moments take its planes
 * in image order, block by block, as one channel at a time would; the planes are visited in
 * memory order (image by image, the group's channels in turn), one stream instead of a short
 * one per plane, and once (block_moments: as accurate as two passes over the whole channel, a
 * third less memory traffic in the forward). */
static ALWAYS_INLINE void group_stats(const ct_batchnorm *p, size_t c0, size_t c1, const float *x, float *mean,
                                      float *std, float *run_mean, float *run_var, float sf) {
  const size_t C = p->C, S = p->S, N = p->N;
  if (p->global) {
    for (size_t c = c0; c < c1; c++) {
      mean[c] = sf * run_mean[c];
      std[c] = sqrtf(sf * run_var[c] + p->eps);
    }
    return;
  }
  const double m = (double)(N * S);
  chan_moments acc[GROUP];
  for (size_t c = c0; c < c1; c++) acc[c - c0] = (chan_moments){0.0, 0.0, 0.0, false};
  const float inv_full = 1.0f / (float)STAT_BLOCK, inv_tail = S % STAT_BLOCK ? 1.0f / (float)(S % STAT_BLOCK) : 0.0f;
  for (size_t n = 0; n < N; n++)
    for (size_t c = c0; c < c1; c++) plane_moments(&acc[c - c0], x + (n * C + c) * S, S, inv_full, inv_tail);
  const float corr = m > 1 ? (float)(m / (m - 1)) : 1.0f;
  for (size_t c = c0; c < c1; c++) {
    const chan_moments *k = &acc[c - c0];
    mean[c] = m > 0 ? (float)(k->K + k->s1 / m) : 0.0f;
    const double v = m > 0 ? (k->s2 - k->s1 * k->s1 / m) / m : 0.0;
    const float var = v > 0 ? (float)v : 0.0f;
    std[c] = sqrtf(var + p->eps);
    run_mean[c] = mean[c] + p->maf * run_mean[c];
    run_var[c] = corr * var + p->maf * run_var[c];
  }
}

/* The Eltwise SUM -> ReLU a chain feeds (bn_chain_forward_add): out = relu(cs y + ca add), as
 * eltwise_relu_forward computes it (two terms: their order does not change the sum). */
typedef struct feed {
  const float *add;
  float cs, ca, slope;
} feed;

static ALWAYS_INLINE ct_v8f fed8(const feed *f, ct_v8f y, size_t i) {
  const ct_v8f v = ct_v8f_splat(f->cs) * y + ct_v8f_splat(f->ca) * ct_v8f_load(f->add + i);
  return ct_v8f_select(v > 0.0f, v, f->slope * v);
}
static inline float fed1(const feed *f, float y, size_t i) {
  const float v = f->cs * y + f->ca * f->add[i];
  return v > 0 ? v : f->slope * v;
}

/* One plane: z = (x - mu) inv (kept when z is not NULL), y = relu(z s + b) (affine: else y = z;
 * relu: else no select), written as it is or, with f (the plane's add), fed on. x may be y; z is
 * neither. */
static ALWAYS_INLINE void forward_plane(const float *x, float *y, float *z, size_t S, float mu, float inv, bool affine,
                                        float s, float b, bool relu, float slope, const feed *f) {
  const ct_v8f wm = ct_v8f_splat(mu), wi = ct_v8f_splat(inv), ws = ct_v8f_splat(s), wb = ct_v8f_splat(b);
  size_t i = 0;
  for (; i + 8 <= S; i += 8) {
    const ct_v8f v = (ct_v8f_load(x + i) - wm) * wi;
    if (z) ct_v8f_store(z + i, v);
    ct_v8f o = affine ? relu_input8(v, ws, wb) : v;
    if (relu) o = ct_v8f_select(o > 0.0f, o, slope * o);
    ct_v8f_store(y + i, f ? fed8(f, o, i) : o);
  }
  for (; i < S; i++) { /* the same operations, element by element */
    const float v = (x[i] - mu) * inv;
    if (z) z[i] = v;
    float o = affine ? ct_bn_chain_relu_input(v, s, b) : v;
    if (relu) o = o > 0 ? o : slope * o;
    y[i] = f ? fed1(f, o, i) : o;
  }
}

/* With the stored statistics and no xnorm to keep: y = relu(x a + c), one affine per channel. */
static ALWAYS_INLINE void affine_plane(const float *x, float *y, size_t S, float a, float c, bool relu, float slope,
                                       const feed *f) {
  const ct_v8f wa = ct_v8f_splat(a), wc = ct_v8f_splat(c);
  size_t i = 0;
  for (; i + 8 <= S; i += 8) {
    ct_v8f o = ct_v8f_load(x + i) * wa + wc;
    if (relu) o = ct_v8f_select(o > 0.0f, o, slope * o);
    ct_v8f_store(y + i, f ? fed8(f, o, i) : o);
  }
  for (; i < S; i++) {
    float o = x[i] * a + c;
    if (relu) o = o > 0 ? o : slope * o;
    y[i] = f ? fed1(f, o, i) : o;
  }
}

/* ---------------------------------------------------------------- one range of channels */

typedef struct chain_args {
  ct_bn_chain p;
  bool affine; /* a Scale follows (s, b); else BatchNorm alone */
  const float *x, *y_in, *dy, *z_in, *s, *b, *std_in;
  const float *zmean; /* backward: z_in is the chain's input x, z = (x - zmean) / std */
  const float *zb;    /* backward with zy: Scale's bias (NULL: none) */
  bool zy;            /* backward: z = (y_in - b) / s in the channels ct_bn_chain_y_recovers */
  feed fd;            /* forward with fd.add: y fed on into an Eltwise SUM -> ReLU */
  float *y, *z, *mean, *std, *run_mean, *run_var, *ds, *db, *dx, *dz;
  float sf; /* 1 / the running factor (global) */
  size_t C;
  int parts;
} chain_args;

static ALWAYS_INLINE void forward_range_body(const chain_args *a, size_t c0, size_t c1) {
  const ct_batchnorm *p = &a->p.bn;
  const size_t C = p->C, S = p->S, N = p->N;
  for (size_t g0 = c0; g0 < c1; g0 += GROUP) {
    const size_t g1 = c1 - g0 < GROUP ? c1 : g0 + GROUP;
    group_stats(p, g0, g1, a->x, a->mean, a->std, a->run_mean, a->run_var, a->sf);
    struct {
      float mu, inv, s, b;
      bool z, fold;
    } k[GROUP];
    for (size_t c = g0; c < g1; c++) {
      const float s = a->affine ? a->s[c] : 1.0f, b = a->affine && a->b ? a->b[c] : 0.0f;
      /* z_from_y: this channel's backward recomputes z from y instead */
      const bool z =
          a->z && !(a->p.z_from_y && a->affine && ct_bn_chain_z_from_y_applies(&a->p) && ct_bn_chain_y_recovers(s, b));
      k[c - g0].mu = a->mean[c], k[c - g0].inv = 1.0f / a->std[c], k[c - g0].s = s, k[c - g0].b = b;
      k[c - g0].z = z, k[c - g0].fold = p->global && !z;
    }
    for (size_t n = 0; n < N; n++) /* in memory order, as the statistics */
      for (size_t c = g0; c < g1; c++) {
        const size_t o = (n * C + c) * S;
        const float mu = k[c - g0].mu, inv = k[c - g0].inv, s = k[c - g0].s, b = k[c - g0].b;
        const feed f = {a->fd.add ? a->fd.add + o : NULL, a->fd.cs, a->fd.ca, a->fd.slope};
        if (k[c - g0].fold) {
          const float m = a->affine ? s * inv : inv;
          affine_plane(a->x + o, a->y + o, S, m, (a->affine ? b : 0.0f) - mu * m, a->p.relu, a->p.slope,
                       f.add ? &f : NULL);
        } else {
          forward_plane(a->x + o, a->y + o, k[c - g0].z ? a->z + o : NULL, S, mu, inv, a->affine, s, b, a->p.relu,
                        a->p.slope, f.add ? &f : NULL);
        }
      }
  }
}

/* g = dy relu'(y): dy where y > 0, else slope dy (y > 0 exactly when the ReLU's input was, for a
 * slope >= 0). */
static inline ct_v4f grad_in(const chain_args *a, ct_v4f dy, ct_v4f y) {
  return a->p.relu ? ct_v4f_select(y > 0.0f, dy, a->p.slope * dy) : dy;
}
static ALWAYS_INLINE ct_v8f grad_in8(const chain_args *a, ct_v8f dy, ct_v8f y) {
  return a->p.relu ? ct_v8f_select(y > 0.0f, dy, a->p.slope * dy) : dy;
}
static inline float grad_in1(const chain_args *a, float dy, float y) {
  return a->p.relu ? (y > 0 ? dy : a->p.slope * dy) : dy;
}

/* The same from z, where the ReLU's mask is taken from its input z s + b (mask_from_z): y > 0
 * exactly where that is, and it is the forward's own value */
static inline ct_v4f grad_in_z(const chain_args *a, ct_v4f dy, ct_v4f z, ct_v4f vs, ct_v4f vb) {
  return ct_v4f_select(relu_input(z, vs, vb) > 0.0f, dy, a->p.slope * dy);
}
static ALWAYS_INLINE ct_v8f grad_in_z8(const chain_args *a, ct_v8f dy, ct_v8f z, ct_v8f vs, ct_v8f vb) {
  return ct_v8f_select(relu_input8(z, vs, vb) > 0.0f, dy, a->p.slope * dy);
}
static inline float grad_in_z1(const chain_args *a, float dy, float z, float s, float b) {
  return ct_bn_chain_relu_input(z, s, b) > 0 ? dy : a->p.slope * dy;
}

/* Whether the backward takes the ReLU's mask from z (read anyway) instead of y: on channels
 * too large for the cache (CT_CPU_BN_MASK_Z_MIN) */
static inline bool mask_from_z(const chain_args *a, bool z_read) {
  return z_read && a->p.relu && a->p.mask_from_z && a->affine && a->p.bn.N * a->p.bn.S >= CT_CPU_BN_MASK_Z_MIN;
}

/* z at z_in + i: kept, or recomputed from x exactly as the forward computed it */
static inline ct_v4f z_at(const float *z, size_t i, ct_v4f vm, ct_v4f vi, bool from_x) {
  return from_x ? (ct_v4f_load(z + i) - vm) * vi : ct_v4f_load(z + i);
}
static ALWAYS_INLINE ct_v8f z_at8(const float *z, size_t i, ct_v8f vm, ct_v8f vi, bool from_x) {
  return from_x ? (ct_v8f_load(z + i) - vm) * vi : ct_v8f_load(z + i);
}
static inline float z_at1(const float *z, size_t i, float mu, float inv, bool from_x) {
  return from_x ? (z[i] - mu) * inv : z[i];
}

/* Where channel c's z lies in backward: at *base (z_in: the kept xnorm or x; or y_in), as it is
 * or, when this returns true, as (v - *mu) * *zinv: from x, (x - mean) / std; from y in the
 * channels whose Scale recovers it (zy), (y - b) / s. */
static inline bool z_source(const chain_args *a, size_t c, const float **base, float *mu, float *zinv) {
  *base = a->z_in;
  *mu = 0.0f;
  *zinv = 1.0f;
  if (a->zy) {
    const float s = a->s[c], b = a->zb ? a->zb[c] : 0.0f;
    if (!ct_bn_chain_y_recovers(s, b)) return false;
    *base = a->y_in;
    *mu = b;
    *zinv = 1.0f / s;
    return true;
  }
  if (!a->zmean) return false;
  *mu = a->zmean[c];
  *zinv = 1.0f / a->std_in[c];
  return true;
}

/* A channel's constants in backward: where z lies (z_source), the ReLU's Scale factor and bias
 * (the mask from z), and, for dx, s, 1 / std and the BatchNorm gradient's two means; fy: z goes
 * on through y = z ys + yb to (y - yb) yi (z_via_y). */
typedef struct chan_grad {
  const float *zbase;
  float mu, zinv, s, rb, inv, ma, mb, ys, yb, yi;
  bool fx, fy;
} chan_grad;

/* z as bn_chain_backward_y takes it from the output the forward would have written (fy) */
static inline ct_v4f zy4(const chan_grad *k, ct_v4f z) {
  if (!k->fy) return z;
  const ct_v4f yb = ct_v4f_splat(k->yb);
  return (relu_input(z, ct_v4f_splat(k->ys), yb) - yb) * ct_v4f_splat(k->yi);
}
static ALWAYS_INLINE ct_v8f zy8(const chan_grad *k, ct_v8f z) {
  if (!k->fy) return z;
  const ct_v8f yb = ct_v8f_splat(k->yb);
  return (relu_input8(z, ct_v8f_splat(k->ys), yb) - yb) * ct_v8f_splat(k->yi);
}
static inline float zy1(const chan_grad *k, float z) {
  return k->fy ? (ct_bn_chain_relu_input(z, k->ys, k->yb) - k->yb) * k->yi : z;
}

/* One plane's sums of g and g z (at offset o), added block by block into *tg and *tgz. */
static ALWAYS_INLINE void plane_grad_sums(const chain_args *a, const chan_grad *k, size_t o, bool want_gz, bool zm,
                                          double *tg, double *tgz) {
  const size_t S = a->p.bn.S;
  const ct_v4f vm = ct_v4f_splat(k->mu), vi = ct_v4f_splat(k->zinv);
  const ct_v4f vms = ct_v4f_splat(k->s), vrb = ct_v4f_splat(k->rb);
  const ct_v8f wm = ct_v8f_splat(k->mu), wi = ct_v8f_splat(k->zinv);
  const ct_v8f wms = ct_v8f_splat(k->s), wrb = ct_v8f_splat(k->rb);
  const float *dy = a->dy + o, *y = a->y_in + o, *z = want_gz ? k->zbase + o : NULL;
  for (size_t b0 = 0; b0 < S; b0 += STAT_BLOCK) {
    const size_t e = b0 + STAT_BLOCK < S ? b0 + STAT_BLOCK : S;
    ct_v4f ag = ct_v4f_splat(0.0f), agz = ag;
    size_t i = b0;
    for (; i + 8 <= e; i += 8) { /* four lanes at a time into the sums, as below */
      ct_v8f g, gz = ct_v8f_splat(0.0f);
      if (zm) {
        const ct_v8f zv = zy8(k, z_at8(z, i, wm, wi, k->fx));
        g = grad_in_z8(a, ct_v8f_load(dy + i), zv, wms, wrb);
        gz = g * zv;
      } else {
        g = grad_in8(a, ct_v8f_load(dy + i), ct_v8f_load(y + i));
        if (z) gz = g * zy8(k, z_at8(z, i, wm, wi, k->fx));
      }
      ag += ct_v8f_lo(g);
      ag += ct_v8f_hi(g);
      if (z) { /* zm reads z too */
        agz += ct_v8f_lo(gz);
        agz += ct_v8f_hi(gz);
      }
    }
    for (; i + 4 <= e; i += 4) {
      if (zm) {
        const ct_v4f zv = zy4(k, z_at(z, i, vm, vi, k->fx)), g = grad_in_z(a, ct_v4f_load(dy + i), zv, vms, vrb);
        ag += g;
        agz += g * zv;
        continue;
      }
      const ct_v4f g = grad_in(a, ct_v4f_load(dy + i), ct_v4f_load(y + i));
      ag += g;
      if (z) agz += g * zy4(k, z_at(z, i, vm, vi, k->fx));
    }
    float fg = hsum(ag), fgz = hsum(agz);
    for (; i < e; i++) {
      const float zv = z ? zy1(k, z_at1(z, i, k->mu, k->zinv, k->fx)) : 0.0f;
      const float g = zm ? grad_in_z1(a, dy[i], zv, k->s, k->rb) : grad_in1(a, dy[i], y[i]);
      fg += g;
      if (z) fgz += g * zv;
    }
    *tg += fg;
    *tgz += fgz;
  }
}

/* One plane's dx (and dz) at offset o: the BatchNorm gradient of dz = g s, (dz - ma - mb z) /
 * std with batch statistics, else dz / std; with sums_inline, g's sums added into *tg, *tgz. */
static ALWAYS_INLINE void plane_dx(const chain_args *a, const chan_grad *k, size_t o, bool batch, bool want_z, bool zm,
                                   bool sums_inline, double *tg, double *tgz) {
  const size_t S = a->p.bn.S;
  const ct_v4f vs = ct_v4f_splat(k->s), va = ct_v4f_splat(k->ma), vb = ct_v4f_splat(k->mb), vi = ct_v4f_splat(k->inv);
  const ct_v4f vm = ct_v4f_splat(k->mu), vzi = ct_v4f_splat(k->zinv), vrb = ct_v4f_splat(k->rb);
  const ct_v8f ws = ct_v8f_splat(k->s), wa = ct_v8f_splat(k->ma), wb = ct_v8f_splat(k->mb), wi = ct_v8f_splat(k->inv);
  const ct_v8f wm = ct_v8f_splat(k->mu), wzi = ct_v8f_splat(k->zinv), wrb = ct_v8f_splat(k->rb);
  const float *dy = a->dy + o, *y = a->y_in + o, *z = want_z ? k->zbase + o : NULL;
  float *dx = a->dx + o, *dz = a->dz ? a->dz + o : NULL; /* either may be dy */
  for (size_t b0 = 0; b0 < S; b0 += STAT_BLOCK) {
    const size_t e = b0 + STAT_BLOCK < S ? b0 + STAT_BLOCK : S;
    ct_v4f ag = ct_v4f_splat(0.0f), agz = ag;
    float fg = 0.0f, fgz = 0.0f;
    size_t i = b0;
    for (; i + 8 <= e; i += 8) { /* the sums four lanes at a time, as below */
      const ct_v8f zv = z ? zy8(k, z_at8(z, i, wm, wzi, k->fx)) : ct_v8f_splat(0.0f);
      const ct_v8f g = zm ? grad_in_z8(a, ct_v8f_load(dy + i), zv, ws, wrb)
                          : grad_in8(a, ct_v8f_load(dy + i), ct_v8f_load(y + i)),
                   gs = g * ws;
      ct_v8f_store(dx + i, (batch ? gs - wa - wb * zv : gs) * wi);
      if (dz) ct_v8f_store(dz + i, gs);
      if (sums_inline) {
        const ct_v8f gz = g * zv;
        ag += ct_v8f_lo(g), ag += ct_v8f_hi(g);
        agz += ct_v8f_lo(gz), agz += ct_v8f_hi(gz);
      }
    }
    for (; i + 4 <= e; i += 4) {
      const ct_v4f zv = z ? zy4(k, z_at(z, i, vm, vzi, k->fx)) : ct_v4f_splat(0.0f);
      const ct_v4f g = zm ? grad_in_z(a, ct_v4f_load(dy + i), zv, vs, vrb)
                          : grad_in(a, ct_v4f_load(dy + i), ct_v4f_load(y + i)),
                   gs = g * vs;
      ct_v4f_store(dx + i, (batch ? gs - va - vb * zv : gs) * vi);
      if (dz) ct_v4f_store(dz + i, gs);
      if (sums_inline) ag += g, agz += g * zv;
    }
    for (; i < e; i++) {
      const float zv = z ? zy1(k, z_at1(z, i, k->mu, k->zinv, k->fx)) : 0.0f;
      const float g = zm ? grad_in_z1(a, dy[i], zv, k->s, k->rb) : grad_in1(a, dy[i], y[i]), gs = g * k->s;
      dx[i] = (batch ? gs - k->ma - k->mb * zv : gs) * k->inv;
      if (dz) dz[i] = gs;
      if (sums_inline) fg += g, fgz += g * zv;
    }
    if (sums_inline) *tg += hsum(ag) + fg, *tgz += hsum(agz) + fgz;
  }
}

/* Channels c0..c1, a group at a time, each pass over the group's planes in memory order (image
 * by image, the group's channels in turn): the sums of g and g z that dx needs with batch
 * statistics (a pass of their own), or that ds and db need (taken in the pass that writes dx
 * when there is one); each channel's sums still take its planes in image order. */
static ALWAYS_INLINE void backward_range_body(const chain_args *a, size_t c0, size_t c1) {
  const ct_batchnorm *p = &a->p.bn;
  const size_t C = p->C, S = p->S, N = p->N;
  const double m = (double)(N * S);
  const bool batch = !p->global && m > 0 && a->dx;
  const bool sums_inline = !batch && a->dx && (a->ds || a->db);
  const bool sums_pass = batch || (!a->dx && (a->ds || a->db)), want_gz = batch || a->ds;
  const bool want_z = batch || (sums_inline && a->ds);
  const bool zm_sums = mask_from_z(a, want_gz), zm_dx = mask_from_z(a, want_z);
  for (size_t g0 = c0; g0 < c1; g0 += GROUP) {
    const size_t g1 = c1 - g0 < GROUP ? c1 : g0 + GROUP;
    chan_grad k[GROUP];
    double tg[GROUP], tgz[GROUP];
    for (size_t c = g0; c < g1; c++) {
      chan_grad *kc = &k[c - g0];
      kc->fx = z_source(a, c, &kc->zbase, &kc->mu, &kc->zinv);
      kc->s = a->affine ? a->s[c] : 1.0f;
      kc->yb = a->p.y_b ? a->p.y_b[c] : 0.0f;
      kc->fy = a->p.z_via_y && a->zmean && a->affine && ct_bn_chain_y_recovers(kc->s, kc->yb);
      kc->ys = kc->s;
      kc->yi = 1.0f / kc->s;
      kc->rb = a->p.mask_b ? a->p.mask_b[c] : 0.0f;
      kc->inv = 1.0f / a->std_in[c];
      tg[c - g0] = tgz[c - g0] = 0.0;
    }
    if (sums_pass)
      for (size_t n = 0; n < N; n++)
        for (size_t c = g0; c < g1; c++)
          plane_grad_sums(a, &k[c - g0], (n * C + c) * S, want_gz, zm_sums, &tg[c - g0], &tgz[c - g0]);
    if (a->dx) {
      for (size_t c = g0; c < g1; c++) {
        chan_grad *kc = &k[c - g0];
        kc->ma = batch ? (float)(kc->s * tg[c - g0] / m) : 0.0f;
        kc->mb = batch ? (float)(kc->s * tgz[c - g0] / m) : 0.0f;
      }
      for (size_t n = 0; n < N; n++)
        for (size_t c = g0; c < g1; c++)
          plane_dx(a, &k[c - g0], (n * C + c) * S, batch, want_z, zm_dx, sums_inline, &tg[c - g0], &tgz[c - g0]);
    }
    for (size_t c = g0; c < g1; c++) {
      if (a->ds) a->ds[c] += (float)tgz[c - g0];
      if (a->db) a->db[c] += (float)tg[c - g0];
    }
  }
}

/* The ranges compiled for the baseline (SSE: eight lanes in two registers) and for AVX2 (one),
 * picked at run time; every lane computes the same float operations either way, and the sums
 * take four lanes at a time as before, so both give the same bits. */
#define AVX2 __attribute__((target("avx2")))
static void forward_range_base(const chain_args *a, size_t c0, size_t c1) { forward_range_body(a, c0, c1); }
AVX2 static void forward_range_avx2(const chain_args *a, size_t c0, size_t c1) { forward_range_body(a, c0, c1); }
static void backward_range_base(const chain_args *a, size_t c0, size_t c1) { backward_range_body(a, c0, c1); }
AVX2 static void backward_range_avx2(const chain_args *a, size_t c0, size_t c1) { backward_range_body(a, c0, c1); }
static void forward_range(const chain_args *a, size_t c0, size_t c1) {
  (ct_cpu_has_avx2() ? forward_range_avx2 : forward_range_base)(a, c0, c1);
}
static void backward_range(const chain_args *a, size_t c0, size_t c1) {
  (ct_cpu_has_avx2() ? backward_range_avx2 : backward_range_base)(a, c0, c1);
}

/* ---------------------------------------------------------------- splitting the channels */

typedef struct split_job {
  const chain_args *a;
  bool backward;
} split_job;

static void run_block(void *ctx, int i) {
  const split_job *j = ctx;
  const size_t C = j->a->C, parts = (size_t)j->a->parts;
  const size_t c0 = C * (size_t)i / parts, c1 = C * (size_t)(i + 1) / parts;
  if (j->backward)
    backward_range(j->a, c0, c1);
  else
    forward_range(j->a, c0, c1);
}

/* Over the partition's threads when the driver has a pool and the partition owns several (the
 * CPU driver's table), else on the calling thread. Each channel is computed by one thread
 * exactly as on one thread, so the result does not depend on the split. */
static void run_channels(const ct_driver *d, bool pooled, chain_args *a, bool backward) {
  struct ct_pool *pool = pooled && d ? ct_cpu_driver_pool(d) : NULL;
  int parts = pool ? ct_cpu_driver_threads() : 1;
  if (pool && parts > ct_pool_size(pool)) parts = ct_pool_size(pool);
  const size_t work = a->p.bn.N * a->p.bn.C * a->p.bn.S;
  if (parts > (int)a->C) parts = (int)a->C;
  if (parts < 2 || work < 16384) {
    if (backward)
      backward_range(a, 0, a->C);
    else
      forward_range(a, 0, a->C);
    return;
  }
  a->parts = parts;
  split_job j = {a, backward};
  ct_pool_run(pool, parts, run_block, &j);
}

static ct_status chain_forward(const ct_driver *d, bool pooled, const ct_bn_chain *p, bool affine, const float *x,
                               float *y, float *xnorm, float *mean, float *std, float *run_mean, float *run_var,
                               float *run_factor, const float *s, const float *b, const feed *fd) {
  const float f = run_factor[0];
  chain_args a = {.p = *p, .affine = affine, .x = x, .s = s, .b = b, .y = y, .z = xnorm, .mean = mean, .std = std,
                  .run_mean = run_mean, .run_var = run_var, .sf = f == 0.0f ? 0.0f : 1.0f / f, .C = p->bn.C};
  if (fd) a.fd = *fd;
  run_channels(d, pooled, &a, false);
  if (!p->bn.global) run_factor[0] = run_factor[0] * p->bn.maf + 1.0f;
  return CT_OK;
}

static ct_status chain_backward(const ct_driver *d, bool pooled, const ct_bn_chain *p, bool affine, const float *y,
                                const float *dy, const float *xnorm, const float *mean, const float *std,
                                const float *s, const float *zb, bool zy, float *ds, float *db, float *dx, float *dz) {
  chain_args a = {.p = *p, .affine = affine, .y_in = y ? y : dy, .dy = dy, .z_in = xnorm, .zmean = mean,
                  .zb = zb, .zy = zy, .std_in = std, .s = s, .ds = ds, .db = db, .dx = dx, .dz = dx ? dz : NULL,
                  .C = p->bn.C};
  run_channels(d, pooled, &a, true);
  return CT_OK;
}

/* ---------------------------------------------------------------- the entries */

ct_status ct_cpu_batchnorm_forward(const ct_driver *d, const ct_batchnorm *p, const float *x, float *y, float *xnorm,
                                   float *mean, float *std, float *run_mean, float *run_var, float *run_factor) {
  const ct_bn_chain c = {.bn = *p};
  return chain_forward(d, false, &c, false, x, y, xnorm, mean, std, run_mean, run_var, run_factor, NULL, NULL, NULL);
}

ct_status ct_cpu_batchnorm_backward(const ct_driver *d, const ct_batchnorm *p, const float *dy, const float *xnorm,
                                    const float *std, float *dx) {
  const ct_bn_chain c = {.bn = *p};
  return chain_backward(d, false, &c, false, NULL, dy, xnorm, NULL, std, NULL, NULL, false, NULL, NULL, dx, NULL);
}

ct_status ct_cpu_bn_chain_forward(const ct_driver *d, const ct_bn_chain *p, const float *x, float *y, float *xnorm,
                                  float *mean, float *std, float *run_mean, float *run_var, float *run_factor,
                                  const float *s, const float *b) {
  return chain_forward(d, false, p, true, x, y, xnorm, mean, std, run_mean, run_var, run_factor, s, b, NULL);
}

ct_status ct_cpu_bn_chain_backward(const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy,
                                   const float *xnorm, const float *std, const float *s, float *ds, float *db,
                                   float *dx, float *dz) {
  return chain_backward(d, false, p, true, y, dy, xnorm, NULL, std, s, NULL, false, ds, db, dx, dz);
}

ct_status ct_cpu_bn_chain_backward_x(const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy,
                                     const float *x, const float *mean, const float *std, const float *s, float *ds,
                                     float *db, float *dx, float *dz) {
  return chain_backward(d, false, p, true, y, dy, x, mean, std, s, NULL, false, ds, db, dx, dz);
}

ct_status ct_cpu_batchnorm_forward_pooled(const ct_driver *d, const ct_batchnorm *p, const float *x, float *y,
                                          float *xnorm, float *mean, float *std, float *run_mean, float *run_var,
                                          float *run_factor) {
  const ct_bn_chain c = {.bn = *p};
  return chain_forward(d, true, &c, false, x, y, xnorm, mean, std, run_mean, run_var, run_factor, NULL, NULL, NULL);
}

ct_status ct_cpu_batchnorm_backward_pooled(const ct_driver *d, const ct_batchnorm *p, const float *dy,
                                           const float *xnorm, const float *std, float *dx) {
  const ct_bn_chain c = {.bn = *p};
  return chain_backward(d, true, &c, false, NULL, dy, xnorm, NULL, std, NULL, NULL, false, NULL, NULL, dx, NULL);
}

ct_status ct_cpu_bn_chain_forward_pooled(const ct_driver *d, const ct_bn_chain *p, const float *x, float *y,
                                         float *xnorm, float *mean, float *std, float *run_mean, float *run_var,
                                         float *run_factor, const float *s, const float *b) {
  return chain_forward(d, true, p, true, x, y, xnorm, mean, std, run_mean, run_var, run_factor, s, b, NULL);
}

ct_status ct_cpu_bn_chain_backward_pooled(const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy,
                                          const float *xnorm, const float *std, const float *s, float *ds, float *db,
                                          float *dx, float *dz) {
  return chain_backward(d, true, p, true, y, dy, xnorm, NULL, std, s, NULL, false, ds, db, dx, dz);
}

ct_status ct_cpu_bn_chain_backward_x_pooled(const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy,
                                            const float *x, const float *mean, const float *std, const float *s,
                                            float *ds, float *db, float *dx, float *dz) {
  return chain_backward(d, true, p, true, y, dy, x, mean, std, s, NULL, false, ds, db, dx, dz);
}

ct_status ct_cpu_bn_chain_backward_y(const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy,
                                     const float *xnorm, const float *std, const float *s, const float *b, float *ds,
                                     float *db, float *dx, float *dz) {
  return chain_backward(d, false, p, true, y, dy, xnorm, NULL, std, s, b, true, ds, db, dx, dz);
}

ct_status ct_cpu_bn_chain_backward_y_pooled(const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy,
                                            const float *xnorm, const float *std, const float *s, const float *b,
                                            float *ds, float *db, float *dx, float *dz) {
  return chain_backward(d, true, p, true, y, dy, xnorm, NULL, std, s, b, true, ds, db, dx, dz);
}

ct_status ct_cpu_bn_chain_forward_add(const ct_driver *d, const ct_bn_chain *p, const float *x, const float *add,
                                      float c_self, float c_add, float slope, float *out, float *mean, float *std,
                                      float *run_mean, float *run_var, float *run_factor, const float *s,
                                      const float *b) {
  const feed fd = {add, c_self, c_add, slope};
  return chain_forward(d, false, p, true, x, out, NULL, mean, std, run_mean, run_var, run_factor, s, b, &fd);
}

ct_status ct_cpu_bn_chain_forward_add_pooled(const ct_driver *d, const ct_bn_chain *p, const float *x,
                                             const float *add, float c_self, float c_add, float slope, float *out,
                                             float *mean, float *std, float *run_mean, float *run_var,
                                             float *run_factor, const float *s, const float *b) {
  const feed fd = {add, c_self, c_add, slope};
  return chain_forward(d, true, p, true, x, out, NULL, mean, std, run_mean, run_var, run_factor, s, b, &fd);
}
