/* The CUDA driver's reductions as two stages of bodies (included by cuda/kern.h; the same rules),
 * and the element bodies of the fused BatchNorm -> Scale (-> ReLU) chain that use them.
 *
 * A reduction of m elements into each of R outputs (a channel's statistics, a parameter's
 * gradient) runs as:
 *  1. partials, j < R T: partial t of output r (j = r T + t) sums the elements t, t + T,
 *     t + 2T, ... of its range in double, in that order, into part[2j] (and, for the pairs
 *     that one pass gives, part[2j + 1]); on a GPU neighbouring threads read neighbouring
 *     elements.
 *  2. finals, r < R: the T partials of output r summed in order t = 0, 1, ..., then the
 *     entry's own finishing arithmetic (a mean, a std, += into a gradient).
 * T = ctk_red_parts(m) depends on m alone, never on the device or the launch, so every GPU and
 * the host harness (tests/test_cuda_kernels_red.h) sum in the same order and get the same bits:
 * the result is deterministic, and both stages are checked on the CPU. */
#ifndef CT_DRIVERS_CUDA_KERN_RED_H
#define CT_DRIVERS_CUDA_KERN_RED_H

/* Elements per partial, and the most partials per output: enough threads to fill a GPU for a
 * BatchNorm of 64 channels, few enough partials that the final sums stay short. */
#define CTK_RED_PER_PART 128
#define CTK_RED_MAX_PARTS 512

CT_HD size_t ctk_red_parts(size_t m) {
  const size_t t = (m + CTK_RED_PER_PART - 1) / CTK_RED_PER_PART;
  return t < 1 ? 1 : t > CTK_RED_MAX_PARTS ? CTK_RED_MAX_PARTS : t;
}

/* The sums of one pass over x as N x C x S, per channel c (the range of channel c: its N planes
 * of S, plane after plane). */
typedef enum ctk_red_op {
  CTK_RED_SUM,   /* a: u */
  CTK_RED_SQDEV, /* a: (u - mean[c])^2, the difference in float as the CPU takes it */
  CTK_RED_GRAD,  /* a: g, b: g w (w may be NULL: b = 0), g = u, or with relu g = v > 0 ? u : slope u */
  CTK_RED_PRELU  /* a: v u where u <= 0 (u: x, v: dy) */
} ctk_red_op;

typedef struct ctk_chan_red {
  ctk_red_op op;
  size_t N, C, S, T; /* T = ctk_red_parts(N S) */
  bool relu;
  float slope;
} ctk_chan_red;

CT_HD ctk_chan_red ctk_chan_red_of(ctk_red_op op, size_t N, size_t C, size_t S) {
  ctk_chan_red r;
  r.op = op;
  r.N = N;
  r.C = C;
  r.S = S;
  r.T = ctk_red_parts(N * S);
  r.relu = false;
  r.slope = 0.0f;
  return r;
}

/* Stage 1, j < C T. */
CT_HD void ctk_chan_partial(size_t j, const ctk_chan_red *r, const float *u, const float *v, const float *w,
                            const float *mean, double *part) {
  const size_t c = j / r->T, t = j % r->T, m = r->N * r->S, S = r->S, C = r->C;
  /* element e = n S + s of the channel, stepped by T without a division per element */
  const size_t dn = r->T / S, ds = r->T % S;
  size_t n = t / S, s = t % S;
  double a = 0.0, b = 0.0;
  for (size_t e = t; e < m; e += r->T) {
    const size_t k = (n * C + c) * S + s;
    n += dn, s += ds;
    if (s >= S) s -= S, n++;
    switch (r->op) {
      case CTK_RED_SUM: a += u[k]; break;
      case CTK_RED_SQDEV: {
        const float d = u[k] - mean[c];
        a += (double)d * d;
        break;
      }
      case CTK_RED_GRAD: {
        const float g = r->relu ? (v[k] > 0 ? u[k] : r->slope * u[k]) : u[k];
        a += g;
        if (w) b += (double)g * w[k];
        break;
      }
      case CTK_RED_PRELU:
        if (u[k] <= 0) a += (double)v[k] * u[k];
        break;
    }
  }
  part[2 * j] = a;
  part[2 * j + 1] = b;
}

/* Stage 2's sums: output r's T partials in order. */
CT_HD void ctk_part_sums(const double *part, size_t r, size_t T, double *a, double *b) {
  double sa = 0.0, sb = 0.0;
  for (size_t t = 0; t < T; t++) {
    sa += part[2 * (r * T + t)];
    sb += part[2 * (r * T + t) + 1];
  }
  *a = sa;
  *b = sb;
}

/* r < R: out[r] += the sum (a gradient: PReLU's slopes, a bias, a weight). */
CT_HD void ctk_red_fin_add(size_t r, size_t T, const double *part, float *out) {
  double a, b;
  ctk_part_sums(part, r, T, &a, &b);
  out[r] += (float)a;
}

/* ================================================================ BatchNorm's statistics */

/* c < C: the batch's mean from the partials of CTK_RED_SUM over x. */
CT_HD void ctk_bn_fin_mean(size_t c, const ct_batchnorm *p, size_t T, const double *part, float *mean) {
  const double m = (double)(p->N * p->S);
  double a, b;
  ctk_part_sums(part, c, T, &a, &b);
  mean[c] = m > 0 ? (float)(a / m) : 0.0f;
}

/* c < C: std and the running sums (Caffe's rule) from the partials of CTK_RED_SQDEV; c == 0
 * also the running factor, which nothing else reads in this pass. */
CT_HD void ctk_bn_fin_var(size_t c, const ct_batchnorm *p, size_t T, const double *part, const float *mean,
                          float *std, float *run_mean, float *run_var, float *run_factor) {
  const double m = (double)(p->N * p->S);
  double a, b;
  ctk_part_sums(part, c, T, &a, &b);
  const float var = m > 0 ? (float)(a / m) : 0.0f;
  std[c] = sqrtf(var + p->eps);
  const float corr = m > 1 ? (float)(m / (m - 1)) : 1.0f;
  run_mean[c] = mean[c] + p->maf * run_mean[c];
  run_var[c] = corr * var + p->maf * run_var[c];
  if (c == 0) run_factor[0] = run_factor[0] * p->maf + 1.0f;
}

/* c < C, from the partials of CTK_RED_GRAD (a = sum g, b = sum g xnorm): with batch statistics
 * ab[c] and ab[C + c] = the means of g s and g s xnorm that dx subtracts (s: 1 when NULL),
 * else 0 (ab may be NULL when not batch); ds += sum g xnorm, db += sum g (either may be NULL). */
CT_HD void ctk_grad_fin(size_t c, const ct_batchnorm *p, size_t T, const double *part, const float *s, bool batch,
                        float *ab, float *ds, float *db) {
  const double m = (double)(p->N * p->S);
  double sg, sgz;
  ctk_part_sums(part, c, T, &sg, &sgz);
  const float sc = s ? s[c] : 1.0f;
  if (ab) {
    ab[c] = batch ? (float)(sc * sg / m) : 0.0f;
    ab[p->C + c] = batch ? (float)(sc * sgz / m) : 0.0f;
  }
  if (ds) ds[c] += (float)sgz;
  if (db) db[c] += (float)sg;
}

/* ================================================================ the chain's element bodies */

/* i < N C S: z = (x - mean) / std (kept when z is not NULL), y = relu(z s + b) (s NULL: y = z,
 * BatchNorm alone; b NULL reads as 0; relu per the chain); with the stored statistics and no z,
 * one affine per channel (the CPU's fold). x may be y. */
CT_HD void ctk_chain_fwd(size_t i, const ct_bn_chain *p, const float *x, float *y, float *z, const float *mean,
                         const float *std, const float *s, const float *b) {
  const size_t c = (i / p->bn.S) % p->bn.C;
  const float mu = mean[c], inv = 1.0f / std[c];
  const bool affine = s != NULL;
  const float sc = affine ? s[c] : 1.0f, bc = affine && b ? b[c] : 0.0f;
  float o;
  if (p->bn.global && !z) {
    const float m = affine ? sc * inv : inv;
    o = x[i] * m + ((affine ? bc : 0.0f) - mu * m);
  } else {
    const float v = (x[i] - mu) * inv;
    if (z) z[i] = v;
    o = affine ? v * sc + bc : v;
  }
  if (p->relu) o = o > 0 ? o : p->slope * o;
  y[i] = o;
}

/* i < N C S: with g = dy relu'(y) (y read only with relu) and gs = g s (s NULL: 1):
 * dx = (gs - ab[c] - ab[C + c] z) / std with batch statistics, else gs / std; dz = gs when dz is
 * not NULL. dx and dz may be dy. */
CT_HD void ctk_chain_bwd(size_t i, const ct_bn_chain *p, bool batch, const float *y, const float *dy, const float *z,
                         const float *std, const float *s, const float *ab, float *dx, float *dz) {
  const size_t C = p->bn.C, c = (i / p->bn.S) % C;
  const float d = dy[i], g = p->relu ? (y[i] > 0 ? d : p->slope * d) : d, gs = g * (s ? s[c] : 1.0f);
  const float inv = 1.0f / std[c];
  const float v = batch ? gs - ab[c] - ab[C + c] * z[i] : gs;
  dx[i] = v * inv;
  if (dz) dz[i] = gs;
}

#endif
