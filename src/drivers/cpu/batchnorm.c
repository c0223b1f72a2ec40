/* The CPU driver's BatchNorm, alone and as the head of the fused BatchNorm -> Scale (-> ReLU)
 * chain (net/fuse.c picks the chains, layers/bn_chain.c runs them).
 *
 * Every channel is independent (its statistics, its running sums, its Scale gradients), so each
 * entry is a loop over a range of channels; the CPU driver's table splits the channels over the
 * partition's threads (the *_pooled entries), emu runs them on one. Per channel:
 *  - statistics: two passes over the channel's N planes (the mean, then the squared
 *    deviations), four float lanes summed into a double every STAT_BLOCK elements;
 *  - forward: one pass writing xnorm (when kept) and y = relu(xnorm s + b);
 *  - backward: one pass for the sums the gradient needs (batch statistics, or ds and db), one
 *    more writing dx (with global statistics the two are the same pass); xnorm is read where
 *    the forward kept it, or recomputed from x with the forward's mean and std (the *_x
 *    entries: the same float operations, so the same values); with the ReLU, where z is read
 *    the ReLU's mask comes from z s + b recomputed as the forward computed it (mask_from_z), so
 *    y is not read at all: two streams instead of three in both passes (on channels larger
 *    than the cache; on smaller ones reading y costs less).
 * The normalisation is written as the unfused layers compute it ((x - mean) * (1 / std), then
 * times s plus b, then the ReLU select), so a fused chain's forward matches the three layers up
 * to the order of the statistics' sums. */
#include <math.h>
#include <string.h>

#include "core/pool.h"
#include "core/simd.h"
#include "drivers/cpu.h"
#include "drivers/cpu/kernels.h"

enum { STAT_BLOCK = 1024 };

static float hsum(ct_v4f v) { return (v[0] + v[1]) + (v[2] + v[3]); }

/* ct_bn_chain_relu_input on four lanes: the same expression, so the same rounding */
static inline ct_v4f relu_input(ct_v4f v, ct_v4f s, ct_v4f b) { return v * s + b; }

/* The next channel's plane at the same offsets, a channel ahead of its use: a channel's planes
 * are short streams far apart, which the hardware's prefetcher does not run ahead of. */
static inline void prefetch_ahead(const float *next, size_t i) {
  if (next && (i & 15) == 0) __builtin_prefetch(next + i);
}

static double plane_sum(const float *x, size_t n, const float *next) {
  double acc = 0.0;
  for (size_t b = 0; b < n; b += STAT_BLOCK) {
    const size_t e = b + STAT_BLOCK < n ? b + STAT_BLOCK : n;
    ct_v4f a0 = ct_v4f_splat(0.0f), a1 = a0;
    size_t i = b;
    for (; i + 8 <= e; i += 8) {
      prefetch_ahead(next, i);
      a0 += ct_v4f_load(x + i);
      a1 += ct_v4f_load(x + i + 4);
    }
    float t = hsum(a0 + a1);
    for (; i < e; i++) t += x[i];
    acc += t;
  }
  return acc;
}

static double plane_sqdev(const float *x, size_t n, float mu) {
  double acc = 0.0;
  const ct_v4f m = ct_v4f_splat(mu);
  for (size_t b = 0; b < n; b += STAT_BLOCK) {
    const size_t e = b + STAT_BLOCK < n ? b + STAT_BLOCK : n;
    ct_v4f a0 = ct_v4f_splat(0.0f), a1 = a0;
    size_t i = b;
    for (; i + 8 <= e; i += 8) {
      const ct_v4f u = ct_v4f_load(x + i) - m, v = ct_v4f_load(x + i + 4) - m;
      a0 += u * u;
      a1 += v * v;
    }
    float t = hsum(a0 + a1);
    for (; i < e; i++) t += (x[i] - mu) * (x[i] - mu);
    acc += t;
  }
  return acc;
}

/* Channel c's mean and std, from the batch (updating the running sums, Caffe's rule) or from
 * the running sums. */
static void channel_stats(const ct_batchnorm *p, size_t c, const float *x, float *mean, float *std, float *run_mean,
                          float *run_var, float sf) {
  const size_t C = p->C, S = p->S, N = p->N;
  if (p->global) {
    mean[c] = sf * run_mean[c];
    std[c] = sqrtf(sf * run_var[c] + p->eps);
    return;
  }
  const double m = (double)(N * S);
  double s = 0.0;
  for (size_t n = 0; n < N; n++) s += plane_sum(x + (n * C + c) * S, S, c + 1 < C ? x + (n * C + c + 1) * S : NULL);
  mean[c] = m > 0 ? (float)(s / m) : 0.0f;
  double v = 0.0;
  for (size_t n = 0; n < N; n++) v += plane_sqdev(x + (n * C + c) * S, S, mean[c]);
  const float var = m > 0 ? (float)(v / m) : 0.0f;
  std[c] = sqrtf(var + p->eps);
  const float corr = m > 1 ? (float)(m / (m - 1)) : 1.0f;
  run_mean[c] = mean[c] + p->maf * run_mean[c];
  run_var[c] = corr * var + p->maf * run_var[c];
}

/* One plane: z = (x - mu) inv (kept when z is not NULL), y = relu(z s + b) (affine: else y = z;
 * relu: else no select). x may be y; z is neither. */
static void forward_plane(const float *x, float *y, float *z, size_t S, float mu, float inv, bool affine, float s,
                          float b, bool relu, float slope) {
  const ct_v4f vm = ct_v4f_splat(mu), vi = ct_v4f_splat(inv), vs = ct_v4f_splat(s), vb = ct_v4f_splat(b);
  size_t i = 0;
  for (; i + 4 <= S; i += 4) {
    const ct_v4f v = (ct_v4f_load(x + i) - vm) * vi;
    if (z) ct_v4f_store(z + i, v);
    ct_v4f o = affine ? relu_input(v, vs, vb) : v;
    if (relu) o = ct_v4f_select(o > 0.0f, o, slope * o);
    ct_v4f_store(y + i, o);
  }
  for (; i < S; i++) {
    const float v = (x[i] - mu) * inv;
    if (z) z[i] = v;
    float o = affine ? ct_bn_chain_relu_input(v, s, b) : v;
    if (relu) o = o > 0 ? o : slope * o;
    y[i] = o;
  }
}

/* With the stored statistics and no xnorm to keep: y = relu(x a + c), one affine per channel. */
static void affine_plane(const float *x, float *y, size_t S, float a, float c, bool relu, float slope) {
  const ct_v4f va = ct_v4f_splat(a), vc = ct_v4f_splat(c);
  size_t i = 0;
  for (; i + 4 <= S; i += 4) {
    ct_v4f o = ct_v4f_load(x + i) * va + vc;
    if (relu) o = ct_v4f_select(o > 0.0f, o, slope * o);
    ct_v4f_store(y + i, o);
  }
  for (; i < S; i++) {
    float o = x[i] * a + c;
    if (relu) o = o > 0 ? o : slope * o;
    y[i] = o;
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
  float *y, *z, *mean, *std, *run_mean, *run_var, *ds, *db, *dx, *dz;
  float sf; /* 1 / the running factor (global) */
  size_t C;
  int parts;
} chain_args;

static void forward_range(const chain_args *a, size_t c0, size_t c1) {
  const ct_batchnorm *p = &a->p.bn;
  const size_t C = p->C, S = p->S, N = p->N;
  for (size_t c = c0; c < c1; c++) {
    channel_stats(p, c, a->x, a->mean, a->std, a->run_mean, a->run_var, a->sf);
    const float mu = a->mean[c], inv = 1.0f / a->std[c];
    const float s = a->affine ? a->s[c] : 1.0f, b = a->affine && a->b ? a->b[c] : 0.0f;
    /* z_from_y: this channel's backward recomputes z from y instead */
    float *z = a->z && !(a->p.z_from_y && a->affine && !a->p.relu && ct_bn_chain_y_recovers(s, b)) ? a->z : NULL;
    const bool fold = p->global && !z;
    for (size_t n = 0; n < N; n++) {
      const size_t o = (n * C + c) * S;
      if (fold) {
        const float m = a->affine ? s * inv : inv;
        affine_plane(a->x + o, a->y + o, S, m, (a->affine ? b : 0.0f) - mu * m, a->p.relu, a->p.slope);
      } else {
        forward_plane(a->x + o, a->y + o, z ? z + o : NULL, S, mu, inv, a->affine, s, b, a->p.relu, a->p.slope);
      }
    }
  }
}

/* g = dy relu'(y): dy where y > 0, else slope dy (y > 0 exactly when the ReLU's input was, for a
 * slope >= 0). */
static inline ct_v4f grad_in(const chain_args *a, ct_v4f dy, ct_v4f y) {
  return a->p.relu ? ct_v4f_select(y > 0.0f, dy, a->p.slope * dy) : dy;
}
static inline float grad_in1(const chain_args *a, float dy, float y) {
  return a->p.relu ? (y > 0 ? dy : a->p.slope * dy) : dy;
}

/* The same from z, where the ReLU's mask is taken from its input z s + b (mask_from_z): y > 0
 * exactly where that is, and it is the forward's own value */
static inline ct_v4f grad_in_z(const chain_args *a, ct_v4f dy, ct_v4f z, ct_v4f vs, ct_v4f vb) {
  return ct_v4f_select(relu_input(z, vs, vb) > 0.0f, dy, a->p.slope * dy);
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

/* Channel c's sums of g and g z (double). */
static void backward_sums(const chain_args *a, size_t c, bool want_gz, double *sg, double *sgz) {
  const ct_batchnorm *p = &a->p.bn;
  const size_t C = p->C, S = p->S, N = p->N;
  const float *zbase;
  float mu, inv;
  const bool fx = z_source(a, c, &zbase, &mu, &inv);
  const ct_v4f vm = ct_v4f_splat(mu), vi = ct_v4f_splat(inv);
  const bool zm = mask_from_z(a, want_gz);
  const float ms = a->affine ? a->s[c] : 1.0f, rb = a->p.mask_b ? a->p.mask_b[c] : 0.0f;
  const ct_v4f vms = ct_v4f_splat(ms), vrb = ct_v4f_splat(rb);
  const bool ahead = c + 1 < C;
  double tg = 0.0, tgz = 0.0;
  for (size_t n = 0; n < N; n++) {
    const size_t o = (n * C + c) * S;
    const float *dy = a->dy + o, *y = a->y_in + o, *z = want_gz ? zbase + o : NULL;
    for (size_t b0 = 0; b0 < S; b0 += STAT_BLOCK) {
      const size_t e = b0 + STAT_BLOCK < S ? b0 + STAT_BLOCK : S;
      ct_v4f ag = ct_v4f_splat(0.0f), agz = ag;
      size_t i = b0;
      for (; i + 4 <= e; i += 4) {
        if (ahead) {
          prefetch_ahead(dy + S, i);
          if (y != dy && !zm) prefetch_ahead(y + S, i);
          if (z) prefetch_ahead(z + S, i);
        }
        if (zm) {
          const ct_v4f zv = z_at(z, i, vm, vi, fx), g = grad_in_z(a, ct_v4f_load(dy + i), zv, vms, vrb);
          ag += g;
          agz += g * zv;
          continue;
        }
        const ct_v4f g = grad_in(a, ct_v4f_load(dy + i), ct_v4f_load(y + i));
        ag += g;
        if (z) agz += g * z_at(z, i, vm, vi, fx);
      }
      float fg = hsum(ag), fgz = hsum(agz);
      for (; i < e; i++) {
        const float zv = z ? z_at1(z, i, mu, inv, fx) : 0.0f;
        const float g = zm ? grad_in_z1(a, dy[i], zv, ms, rb) : grad_in1(a, dy[i], y[i]);
        fg += g;
        if (z) fgz += g * zv;
      }
      tg += fg;
      tgz += fgz;
    }
  }
  *sg = tg;
  *sgz = tgz;
}

static void backward_range(const chain_args *a, size_t c0, size_t c1) {
  const ct_batchnorm *p = &a->p.bn;
  const size_t C = p->C, S = p->S, N = p->N;
  const double m = (double)(N * S);
  for (size_t c = c0; c < c1; c++) {
    const float s = a->affine ? a->s[c] : 1.0f, inv = 1.0f / a->std_in[c];
    const bool batch = !p->global && m > 0 && a->dx;
    /* batch statistics: dx needs the sums first (a pass of their own); otherwise the sums for
     * ds and db are taken in the pass that writes dx */
    const bool sums_inline = !batch && a->dx && (a->ds || a->db);
    double sg = 0.0, sgz = 0.0;
    if (batch || (!a->dx && (a->ds || a->db))) backward_sums(a, c, batch || a->ds, &sg, &sgz);
    if (a->dx) {
      /* the BatchNorm gradient of dz = g s: (dz - mean(dz) - mean(dz z) z) / std */
      const float ma = batch ? (float)(s * sg / m) : 0.0f, mb = batch ? (float)(s * sgz / m) : 0.0f;
      const ct_v4f vs = ct_v4f_splat(s), va = ct_v4f_splat(ma), vb = ct_v4f_splat(mb), vi = ct_v4f_splat(inv);
      const float *zbase;
      float mu, zinv;
      const bool fx = z_source(a, c, &zbase, &mu, &zinv);
      const ct_v4f vm = ct_v4f_splat(mu), vzi = ct_v4f_splat(zinv);
      const bool want_z = batch || (sums_inline && a->ds);
      const bool zm = mask_from_z(a, want_z);
      const float rb = a->p.mask_b ? a->p.mask_b[c] : 0.0f;
      const ct_v4f vrb = ct_v4f_splat(rb);
      double tg = 0.0, tgz = 0.0;
      for (size_t n = 0; n < N; n++) {
        const size_t o = (n * C + c) * S;
        const float *dy = a->dy + o, *y = a->y_in + o, *z = want_z ? zbase + o : NULL;
        float *dx = a->dx + o, *dz = a->dz ? a->dz + o : NULL; /* either may be dy */
        for (size_t b0 = 0; b0 < S; b0 += STAT_BLOCK) {
          const size_t e = b0 + STAT_BLOCK < S ? b0 + STAT_BLOCK : S;
          ct_v4f ag = ct_v4f_splat(0.0f), agz = ag;
          float fg = 0.0f, fgz = 0.0f;
          size_t i = b0;
          for (; i + 4 <= e; i += 4) {
            const ct_v4f zv = z ? z_at(z, i, vm, vzi, fx) : ct_v4f_splat(0.0f);
            const ct_v4f g = zm ? grad_in_z(a, ct_v4f_load(dy + i), zv, vs, vrb)
                                : grad_in(a, ct_v4f_load(dy + i), ct_v4f_load(y + i)),
                         gs = g * vs;
            ct_v4f_store(dx + i, (batch ? gs - va - vb * zv : gs) * vi);
            if (dz) ct_v4f_store(dz + i, gs);
            if (sums_inline) ag += g, agz += g * zv;
          }
          for (; i < e; i++) {
            const float zv = z ? z_at1(z, i, mu, zinv, fx) : 0.0f;
            const float g = zm ? grad_in_z1(a, dy[i], zv, s, rb) : grad_in1(a, dy[i], y[i]), gs = g * s;
            dx[i] = (batch ? gs - ma - mb * zv : gs) * inv;
            if (dz) dz[i] = gs;
            if (sums_inline) fg += g, fgz += g * zv;
          }
          if (sums_inline) tg += hsum(ag) + fg, tgz += hsum(agz) + fgz;
        }
      }
      if (sums_inline) sg = tg, sgz = tgz;
    }
    if (a->ds) a->ds[c] += (float)sgz;
    if (a->db) a->db[c] += (float)sg;
  }
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
                               float *run_factor, const float *s, const float *b) {
  const float f = run_factor[0];
  chain_args a = {.p = *p, .affine = affine, .x = x, .s = s, .b = b, .y = y, .z = xnorm, .mean = mean, .std = std,
                  .run_mean = run_mean, .run_var = run_var, .sf = f == 0.0f ? 0.0f : 1.0f / f, .C = p->bn.C};
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
  return chain_forward(d, false, &c, false, x, y, xnorm, mean, std, run_mean, run_var, run_factor, NULL, NULL);
}

ct_status ct_cpu_batchnorm_backward(const ct_driver *d, const ct_batchnorm *p, const float *dy, const float *xnorm,
                                    const float *std, float *dx) {
  const ct_bn_chain c = {.bn = *p};
  return chain_backward(d, false, &c, false, NULL, dy, xnorm, NULL, std, NULL, NULL, false, NULL, NULL, dx, NULL);
}

ct_status ct_cpu_bn_chain_forward(const ct_driver *d, const ct_bn_chain *p, const float *x, float *y, float *xnorm,
                                  float *mean, float *std, float *run_mean, float *run_var, float *run_factor,
                                  const float *s, const float *b) {
  return chain_forward(d, false, p, true, x, y, xnorm, mean, std, run_mean, run_var, run_factor, s, b);
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
  return chain_forward(d, true, &c, false, x, y, xnorm, mean, std, run_mean, run_var, run_factor, NULL, NULL);
}

ct_status ct_cpu_batchnorm_backward_pooled(const ct_driver *d, const ct_batchnorm *p, const float *dy,
                                           const float *xnorm, const float *std, float *dx) {
  const ct_bn_chain c = {.bn = *p};
  return chain_backward(d, true, &c, false, NULL, dy, xnorm, NULL, std, NULL, NULL, false, NULL, NULL, dx, NULL);
}

ct_status ct_cpu_bn_chain_forward_pooled(const ct_driver *d, const ct_bn_chain *p, const float *x, float *y,
                                         float *xnorm, float *mean, float *std, float *run_mean, float *run_var,
                                         float *run_factor, const float *s, const float *b) {
  return chain_forward(d, true, p, true, x, y, xnorm, mean, std, run_mean, run_var, run_factor, s, b);
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
