/* The fused BatchNorm -> Scale (-> ReLU) entries (bn_chain_forward / bn_chain_backward) held to
 * naive double-precision loops written here, on a zoo of shapes (batch 1, odd spatial sizes,
 * one spatial element, channel counts that are no multiple of the vector width, planes longer
 * than the kernels' summing blocks), in TRAIN (batch statistics) and with the stored
 * statistics, with and without the ReLU (slope 0 and 0.1), the bias, xnorm (the affine fold),
 * each gradient, and in place; on the CPU and emu (emu bit for bit, driver_check.h); the backward
 * with xnorm recomputed from x (bn_chain_backward_x) bit for bit what the kept xnorm gives, and
 * from y (z_from_y, bn_chain_backward_y; without the ReLU, or with one of slope 0 on the stored
 * statistics): within 1e-5 of it, bit for bit in the channels whose Scale keeps xnorm (a tiny
 * factor, a bias far larger than it). Also
 * BatchNorm alone without xnorm (its affine fold), and a chain feeding an Eltwise SUM -> ReLU
 * (bn_chain_forward_add; then bn_chain_backward_x with z_via_y): the pair's output within 1e-5 of
 * the double loops and bit for bit what bn_chain_forward + eltwise_relu_forward give, x left as
 * it was, and the gradients bit for bit those of bn_chain_backward_y after the unfed forward. */
#include "driver_check.h"
#include "drivers/cpu.h"

typedef struct shape {
  size_t N, C, S;
} shape;

/* the last two: more channels than the CPU's passes take at a time (64), ranges of several groups */
static const shape zoo[] = {{1, 3, 7}, {2, 5, 9}, {1, 1, 1},  {3, 7, 1},  {2, 6, 25},
                            {1, 9, 13}, {4, 5, 1030}, {2, 4, 16}, {2, 70, 9}, {1, 131, 5}};
/* channels large enough for the CPU's mask from xnorm (CT_CPU_BN_MASK_Z_MIN) */
static const shape large = {2, 3, 65539};

typedef struct ref {
  double *mu, *sd, *z, *u, *y, *rm, *rv;
} ref;

/* The chain in double: statistics, z = (x - mu) / sd, u = z s + b, y = relu(u). */
static ref forward_ref(const shape *sh, bool global, bool relu, float slope, const float *x, const float *s,
                       const float *b, const float *rm0, const float *rv0, float rf) {
  const size_t N = sh->N, C = sh->C, S = sh->S, n = N * C * S;
  const double m = (double)(N * S);
  ref r = {dbuf(C), dbuf(C), dbuf(n), dbuf(n), dbuf(n), dbuf(C), dbuf(C)};
  for (size_t c = 0; c < C; c++) {
    if (global) {
      r.mu[c] = rm0[c] / rf;
      r.sd[c] = sqrt(rv0[c] / rf + 1e-5);
      continue;
    }
    double sum = 0, v = 0;
    for (size_t a = 0; a < N; a++)
      for (size_t i = 0; i < S; i++) sum += x[(a * C + c) * S + i];
    r.mu[c] = sum / m;
    for (size_t a = 0; a < N; a++)
      for (size_t i = 0; i < S; i++) v += pow(x[(a * C + c) * S + i] - r.mu[c], 2);
    r.sd[c] = sqrt(v / m + 1e-5);
    r.rm[c] = r.mu[c] + 0.9 * rm0[c];
    r.rv[c] = (m > 1 ? m / (m - 1) : 1.0) * (v / m) + 0.9 * rv0[c];
  }
  for (size_t a = 0; a < N; a++)
    for (size_t c = 0; c < C; c++)
      for (size_t i = 0; i < S; i++) {
        const size_t k = (a * C + c) * S + i;
        r.z[k] = (x[k] - r.mu[c]) / r.sd[c];
        r.u[k] = r.z[k] * s[c] + (b ? b[c] : 0.0);
        r.y[k] = !relu || r.u[k] > 0 ? r.u[k] : slope * r.u[k];
      }
  return r;
}

/* z_from_y: the forward leaves xnorm unwritten in the channels ct_bn_chain_y_recovers (the rest
 * as before: channel 0 gets a tiny factor and channel 1 a bias 40 times its factor, which keep
 * it), and bn_chain_backward_y's gradients from y are those of bn_chain_backward on the kept
 * xnorm: within 1e-5 where recomputed, bit for bit where kept. */
static void from_y_case(const ct_driver *D, const ct_bn_chain *p0, const char *what, const float *x, const float *s0,
                        const float *b0, const float *dy, const float *ds0, const float *db0, bool want_dx,
                        bool want_ds, bool want_db) {
  const size_t N = p0->bn.N, C = p0->bn.C, S = p0->bn.S, n = N * C * S;
  if (!D->ops->bn_chain_backward_y) {
    COVER(bn_chain_backward_y); /* optional: nothing to run on this backend */
    return;
  }
  float *s = hbuf(C * sizeof(float)), *b = b0 ? hbuf(C * sizeof(float)) : NULL, rf = 2.5f;
  memcpy(s, s0, C * sizeof(float));
  if (b) memcpy(b, b0, C * sizeof(float));
  s[0] = 1e-31f;
  if (C > 1 && b) b[1] = 40.0f * s[1];
  float *rm = uniform(C, 0.0f, 1.0f), *rv = uniform(C, 0.5f, 2.0f), *sentinel = hbuf(n * sizeof(float));
  for (size_t k = 0; k < n; k++) sentinel[k] = 777.0f;
  float *dS = up(D, s, C), *dB = b ? up(D, b, C) : NULL;
  float *outs[2][6]; /* per run: y, xnorm, dx, ds, db, std */
  for (int run = 0; run < 2; run++) {
    ct_bn_chain p = *p0;
    p.z_from_y = run == 1;
    float *dX = up(D, x, n), *dY = up(D, x, n), *dZ = up(D, sentinel, n), *dMean = up(D, rm, C), *dStd = up(D, rv, C);
    RUN(bn_chain_forward, &p, dX, dY, dZ, dMean, dStd, up(D, rm, C), up(D, rv, C), up(D, &rf, 1), dS, dB);
    float *dDY = up(D, dy, n), *dDX = want_dx ? up(D, dy, n) : NULL;
    float *dDS = want_ds ? up(D, ds0, C) : NULL, *dDB = want_db ? up(D, db0, C) : NULL;
    if (run == 0)
      RUN(bn_chain_backward, &p, p.relu ? dY : NULL, dDY, dZ, dStd, dS, dDS, dDB, dDX, NULL);
    else
      RUN(bn_chain_backward_y, &p, dY, dDY, dZ, dStd, dS, dB, dDS, dDB, dDX, NULL);
    float *const dev[6] = {dY, dZ, dDX, dDS, dDB, dStd};
    const size_t cnt[6] = {n, n, n, C, C, C};
    for (int k = 0; k < 6; k++) {
      outs[run][k] = NULL;
      if (!dev[k]) continue;
      outs[run][k] = hbuf(cnt[k] * sizeof(float));
      fetch(D, outs[run][k], dev[k], cnt[k], "%s from y: output %d", what, k);
    }
  }
  /* forward: y as before (global: within rounding, the affine fold); xnorm where kept */
  double *ref = dbuf(n);
  for (size_t k = 0; k < n; k++) ref[k] = outs[0][0][k];
  same(outs[1][0], ref, n, 1e-5, what);
  for (size_t a = 0; a < N; a++)
    for (size_t c = 0; c < C; c++) {
      const bool kept = !ct_bn_chain_y_recovers(s[c], b ? b[c] : 0.0f);
      CHECK(kept == (c == 0 || (c == 1 && b)), "%s: channel %zu (s %g, b %g) %s", what, c, s[c], b ? b[c] : 0.0f,
            kept ? "keeps xnorm" : "recovers it from y");
      const float *z0 = outs[0][1] + (a * C + c) * S, *z1 = outs[1][1] + (a * C + c) * S;
      for (size_t i = 0; i < S; i++)
        CHECK(kept ? z1[i] == z0[i] : z1[i] == 777.0f, "%s from y: xnorm [%zu, %zu, %zu] %g, kept %g", what, a, c, i,
              z1[i], z0[i]);
    }
  /* backward: the gradients within 1e-5, bit for bit in the channels that kept xnorm */
  for (int k = 2; k < 5; k++) {
    if (!outs[0][k]) continue;
    const size_t cnt = k == 2 ? n : C;
    double *r = dbuf(cnt);
    for (size_t q = 0; q < cnt; q++) r[q] = outs[0][k][q];
    same(outs[1][k], r, cnt, 1e-5, what);
    for (size_t q = 0; q < cnt; q++) {
      const size_t c = k == 2 ? q / S % C : q;
      if (c == 0 || (c == 1 && b))
        CHECK(outs[1][k][q] == outs[0][k][q], "%s from y: gradient %d [%zu] %g, kept %g", what, k, q, outs[1][k][q],
              outs[0][k][q]);
    }
  }
}

typedef struct out_pair {
  const float *first, *second; /* device buffers; first NULL: nothing to compare */
  size_t count;
  const char *name;
} out_pair;

/* Each pair's two buffers bit for bit: `how` (the second) against the plain backward */
static void same_bits(const ct_driver *D, const char *what, const char *how, const out_pair *o, size_t k, size_t n) {
  float *a = hbuf(n * sizeof(float)), *b = hbuf(n * sizeof(float));
  for (size_t i = 0; i < k; i++) {
    if (!o[i].first) continue;
    fetch(D, a, o[i].first, o[i].count, "%s: %s", what, o[i].name);
    fetch(D, b, o[i].second, o[i].count, "%s: %s %s", what, o[i].name, how);
    CHECK(!memcmp(a, b, o[i].count * sizeof(float)), "%s on %s: %s %s differs from the plain backward's", what,
          D->name, o[i].name, how);
  }
}

/* *pm: p with the ReLU's mask from xnorm (Scale's bias dB); returns the y to pass its backward:
 * dY, or where the driver takes the mask from xnorm and reads it (z_read), a y of zeros, which
 * would mask every element if it were read (CPU and emu, on channels of CT_CPU_BN_MASK_Z_MIN) */
static float *mask_setup(const ct_driver *D, const ct_bn_chain *p, float *dB, float *dY, bool z_read,
                         ct_bn_chain *pm) {
  *pm = *p;
  pm->mask_from_z = true;
  pm->mask_b = dB;
  const size_t n = p->bn.N * p->bn.C * p->bn.S;
  const bool cpu = !strcmp(D->device, "cpu") || !strcmp(D->device, "emu");
  const bool takes = cpu && p->bn.N * p->bn.S >= CT_CPU_BN_MASK_Z_MIN;
  if (!takes || !z_read) return dY;
  float *zeros = hbuf(n * sizeof(float));
  memset(zeros, 0, n * sizeof(float));
  return up(D, zeros, n);
}

static void chain_case(const ct_driver *D, const shape *sh, bool global, bool relu, float slope, bool bias,
                       bool keep, bool in_place, int grads) {
  const size_t N = sh->N, C = sh->C, S = sh->S, n = N * C * S;
  const double m = (double)(N * S);
  char what[160];
  snprintf(what, sizeof what, "chain %zux%zux%zu global %d relu %d slope %g bias %d xnorm %d in place %d grads %d",
           N, C, S, global, relu, slope, bias, keep, in_place, grads);
  ct_bn_chain p = {{N, C, S, global, 0.9f, 1e-5f}, relu, slope, false, false, NULL, false, NULL};
  float *x = gauss(n), *s = uniform(C, 0.5f, 1.5f), *b = gauss(C), *rm = gauss(C), *rv = uniform(C, 0.5f, 2.0f);
  float rf = 2.5f;
  if (global && N * S > 1) /* stored statistics near the data's, so the ReLU cuts somewhere */
    for (size_t c = 0; c < C; c++) rm[c] = rf * 0.1f * (float)c;
  const ref r = forward_ref(sh, global, relu, slope, x, s, bias ? b : NULL, rm, rv, rf);
  float *y = hbuf(n * sizeof(float)), *z = hbuf(n * sizeof(float)), *mean = gauss(C), *std = gauss(C);
  float *dX = up(D, x, n), *dY = in_place ? dX : up(D, y, n), *dZ = keep ? up(D, z, n) : NULL;
  float *dMean = up(D, mean, C), *dStd = up(D, std, C), *dRM = up(D, rm, C), *dRV = up(D, rv, C), *dRF = up(D, &rf, 1);
  float *dS = up(D, s, C), *dB = bias ? up(D, b, C) : NULL;
  RUN(bn_chain_forward, &p, dX, dY, dZ, dMean, dStd, dRM, dRV, dRF, dS, dB);
  fetch(D, y, dY, n, "%s: y", what);
  same(y, r.y, n, 1e-5, what);
  if (keep) {
    fetch(D, z, dZ, n, "%s: xnorm", what);
    same(z, r.z, n, 1e-5, what);
  }
  fetch(D, std, dStd, C, "%s: std", what);
  same(std, r.sd, C, 1e-5, what);
  float *rm1 = hbuf(C * sizeof(float)), *rv1 = hbuf(C * sizeof(float)), rf1;
  fetch(D, rm1, dRM, C, "%s: running mean", what);
  fetch(D, rv1, dRV, C, "%s: running variance", what);
  fetch(D, &rf1, dRF, 1, "%s: running factor", what);
  if (global) {
    CHECK(!memcmp(rm1, rm, C * sizeof(float)) && !memcmp(rv1, rv, C * sizeof(float)) && rf1 == rf,
          "%s: the stored statistics are left alone", what);
  } else {
    same(rm1, r.rm, C, 1e-5, what);
    same(rv1, r.rv, C, 1e-5, what);
    CHECK_CLOSE(rf1, 2.5 * 0.9 + 1, 1e-6, 0, "%s: running factor on %s", what, D->name);
  }
  /* without xnorm (the stored statistics only) backward still gives dx and db */

  /* backward: grads bit 0 dx, bit 1 ds, bit 2 db */
  const bool want_dx = grads & 1, want_ds = keep && (grads & 2), want_db = bias && (grads & 4);
  float *dy = gauss(n), *ds0 = gauss(C), *db0 = gauss(C), *dx = hbuf(n * sizeof(float));
  double *rdx = dbuf(n), *rds = dbuf(C), *rdb = dbuf(C), *rdz = dbuf(n);
  for (size_t c = 0; c < C; c++) {
    double sg = 0, sgz = 0;
    for (size_t a = 0; a < N; a++)
      for (size_t i = 0; i < S; i++) {
        const size_t k = (a * C + c) * S + i;
        const double g = !relu || r.u[k] > 0 ? dy[k] : slope * dy[k];
        sg += g, sgz += g * r.z[k];
      }
    rds[c] = ds0[c] + sgz;
    rdb[c] = db0[c] + sg;
    for (size_t a = 0; a < N; a++)
      for (size_t i = 0; i < S; i++) {
        const size_t k = (a * C + c) * S + i;
        const double g = !relu || r.u[k] > 0 ? dy[k] : slope * dy[k], dz = g * s[c];
        rdz[k] = dz;
        rdx[k] = global ? dz / r.sd[c] : (dz - s[c] * sg / m - s[c] * sgz / m * r.z[k]) / r.sd[c];
      }
  }
  float *dDY = up(D, dy, n), *dDX = want_dx ? (in_place ? dDY : up(D, dx, n)) : NULL;
  float *dDS = want_ds ? up(D, ds0, C) : NULL, *dDB = want_db ? up(D, db0, C) : NULL;
  /* BatchNorm's own top (not in place): dz over dy */
  float *dDZ = want_dx && !in_place ? dDY : NULL;
  RUN(bn_chain_backward, &p, relu ? dY : NULL, dDY, dZ, dStd, dS, dDS, dDB, dDX, dDZ);
  if (dDZ) {
    float *dzv = hbuf(n * sizeof(float));
    fetch(D, dzv, dDZ, n, "%s: dz", what);
    same(dzv, rdz, n, 1e-5, what);
  }
  if (want_dx) {
    fetch(D, dx, dDX, n, "%s: dx", what);
    same(dx, rdx, n, 1e-4, what);
  }
  if (want_ds) {
    float *ds = hbuf(C * sizeof(float));
    fetch(D, ds, dDS, C, "%s: ds", what);
    same(ds, rds, C, 1e-4, what);
  }
  if (want_db) {
    float *db = hbuf(C * sizeof(float));
    fetch(D, db, dDB, C, "%s: db", what);
    same(db, rdb, C, 1e-4, what);
  }
  /* the ReLU's mask from xnorm s + b (mask_from_z): bit for bit the mask from y; where xnorm is
   * read (dx with batch statistics, or ds wanted), not even y is read (mask_setup) */
  if (relu && keep) {
    ct_bn_chain pm;
    float *dYm = mask_setup(D, &p, dB, dY, (!global && want_dx) || want_ds, &pm);
    float *dDY3 = up(D, dy, n), *dDX3 = want_dx ? (in_place ? dDY3 : up(D, dx, n)) : NULL;
    float *dDS3 = want_ds ? up(D, ds0, C) : NULL, *dDB3 = want_db ? up(D, db0, C) : NULL;
    float *dDZ3 = want_dx && !in_place ? dDY3 : NULL;
    RUN(bn_chain_backward, &pm, dYm, dDY3, dZ, dStd, dS, dDS3, dDB3, dDX3, dDZ3);
    const out_pair o[] = {{dDZ, dDZ3, n, "dz"}, {dDX, dDX3, n, "dx"}, {dDS, dDS3, C, "ds"}, {dDB, dDB3, C, "db"}};
    same_bits(D, what, "with the mask from xnorm", o, sizeof o / sizeof o[0], n);
  }
  if (ct_bn_chain_z_from_y_applies(&p) && keep && !in_place)
    from_y_case(D, &p, what, x, s, bias ? b : NULL, dy, ds0, db0, want_dx, want_ds, want_db);
  /* the same backward with xnorm recomputed from x and the forward's mean (the optional
   * bn_chain_backward_x), where x is still there: bit for bit what the kept xnorm gave */
  if (!keep || in_place) return;
  if (!D->ops->bn_chain_backward_x) {
    COVER(bn_chain_backward_x); /* optional: nothing to run on this backend */
    return;
  }
  float *dDY2 = up(D, dy, n), *dDX2 = want_dx ? up(D, dx, n) : NULL;
  float *dDS2 = want_ds ? up(D, ds0, C) : NULL, *dDB2 = want_db ? up(D, db0, C) : NULL;
  RUN(bn_chain_backward_x, &p, relu ? dY : NULL, dDY2, dX, dMean, dStd, dS, dDS2, dDB2, dDX2, want_dx ? dDY2 : NULL);
  const out_pair o[] = {{dDZ, want_dx ? dDY2 : NULL, n, "dz"}, {dDX, dDX2, n, "dx"}, {dDS, dDS2, C, "ds"},
                        {dDB, dDB2, C, "db"}};
  same_bits(D, what, "from x", o, sizeof o / sizeof o[0], n);
  /* ... and from x with the ReLU's mask from xnorm recomputed from x (y of zeros: not read) */
  if (!relu) return;
  ct_bn_chain pm;
  float *dYm = mask_setup(D, &p, dB, dY, (!global && want_dx) || want_ds, &pm);
  float *dDY4 = up(D, dy, n), *dDX4 = want_dx ? up(D, dx, n) : NULL;
  float *dDS4 = want_ds ? up(D, ds0, C) : NULL, *dDB4 = want_db ? up(D, db0, C) : NULL;
  RUN(bn_chain_backward_x, &pm, dYm, dDY4, dX, dMean, dStd, dS, dDS4, dDB4, dDX4, want_dx ? dDY4 : NULL);
  const out_pair o4[] = {{dDZ, want_dx ? dDY4 : NULL, n, "dz"}, {dDX, dDX4, n, "dx"}, {dDS, dDS4, C, "ds"},
                         {dDB, dDB4, C, "db"}};
  same_bits(D, what, "from x with the mask from xnorm", o4, sizeof o4 / sizeof o4[0], n);
}

static void test_chain(const ct_driver *D) {
  for (size_t z = 0; z < sizeof zoo / sizeof zoo[0]; z++)
    for (int global = 0; global < 2; global++)
      for (int relu = 0; relu < 3; relu++)
        for (int variant = 0; variant < 4; variant++) {
          const bool bias = variant != 1, keep = variant != 2, in_place = variant == 3;
          const int grads = variant == 1 ? 3 : variant == 2 ? 5 : 7;
          /* with batch statistics xnorm is always kept for a backward; the fold is for global */
          if (!keep && !global) continue;
          chain_case(D, &zoo[z], global, relu > 0, relu == 2 ? 0.1f : 0.0f, bias, keep, in_place, grads);
        }
  for (int global = 0; global < 2; global++)
    for (int in_place = 0; in_place < 2; in_place++) chain_case(D, &large, global, true, 0.0f, true, true, in_place, 7);
  /* gradients one at a time */
  for (int grads = 1; grads <= 4; grads <<= 1)
    for (int global = 0; global < 2; global++) chain_case(D, &zoo[4], global, true, 0.0f, true, true, false, grads);
}

/* BatchNorm alone with the stored statistics and no xnorm: y = x / std - mean / std. */
static void test_batchnorm_fold(const ct_driver *D) {
  const shape sh = {2, 5, 11};
  const size_t n = sh.N * sh.C * sh.S;
  ct_batchnorm p = {sh.N, sh.C, sh.S, true, 0.9f, 1e-5f};
  float *x = gauss(n), *rm = gauss(sh.C), *rv = uniform(sh.C, 0.5f, 2.0f), rf = 2.0f, *ones = hbuf(sh.C * 4);
  for (size_t c = 0; c < sh.C; c++) ones[c] = 1.0f;
  const ref r = forward_ref(&sh, true, false, 0.0f, x, ones, NULL, rm, rv, rf);
  float *y = hbuf(n * sizeof(float));
  float *dY = up(D, y, n), *dMean = up(D, rm, sh.C), *dStd = up(D, rv, sh.C);
  RUN(batchnorm_forward, &p, up(D, x, n), dY, NULL, dMean, dStd, up(D, rm, sh.C), up(D, rv, sh.C), up(D, &rf, 1));
  fetch(D, y, dY, n, "batchnorm global without xnorm");
  same(y, r.y, n, 1e-5, "batchnorm global without xnorm");
}

/* A chain without the ReLU feeding relu(cs y + ca add) (ResNet's block end), against the unfed
 * forward (z_from_y, as the net runs it) followed by the pair, and its backward from y. */
static void fed_case(const ct_driver *D, const shape *sh, bool bias, float cs, float ca, float slope) {
  const size_t N = sh->N, C = sh->C, S = sh->S, n = N * C * S;
  char what[160];
  snprintf(what, sizeof what, "fed chain %zux%zux%zu bias %d coeffs %g %g slope %g", N, C, S, bias, cs, ca, slope);
  if (!D->ops->bn_chain_forward_add) {
    COVER(bn_chain_forward_add); /* optional: nothing to run on this backend */
    return;
  }
  float *x = gauss(n), *add = gauss(n), *s = uniform(C, 0.5f, 1.5f), *b = bias ? gauss(C) : NULL;
  float *rm = uniform(C, 0.0f, 1.0f), *rv = uniform(C, 0.5f, 2.0f), rf = 2.5f, coeff[2] = {cs, ca};
  s[0] = 1e-31f; /* a channel that keeps xnorm, and one whose bias does (from_y_case) */
  if (C > 1 && b) b[1] = 40.0f * s[1];
  float *dy = gauss(n), *dS = up(D, s, C), *dB = b ? up(D, b, C) : NULL, *dAdd = up(D, add, n);
  ct_bn_chain p = {{N, C, S, false, 0.9f, 1e-5f}, false, 0.0f, true, false, NULL, false, NULL};
  /* unfed: the chain's y and xnorm, the pair's output from y; the backward from y */
  float *dX = up(D, x, n), *dY = up(D, x, n), *dZ = up(D, x, n), *dMean = up(D, rm, C), *dStd = up(D, rv, C);
  float *dRM = up(D, rm, C), *dRV = up(D, rv, C), *dOut = up(D, add, n);
  RUN(bn_chain_forward, &p, dX, dY, dZ, dMean, dStd, dRM, dRV, up(D, &rf, 1), dS, dB);
  const float *terms[2] = {dY, dAdd};
  OK(D->ops->eltwise_relu_forward(D, n, 2, terms, up(D, coeff, 2), slope, dOut));
  float *dDY = up(D, dy, n), *dDS = up(D, s, C), *dDB = b ? up(D, b, C) : NULL;
  RUN(bn_chain_backward_y, &p, dY, dDY, dZ, dStd, dS, dB, dDS, dDB, dDY, NULL);
  /* fed */
  ct_bn_chain q = p;
  q.z_from_y = false;
  float *dX2 = up(D, x, n), *dMean2 = up(D, rm, C), *dStd2 = up(D, rv, C), *dRM2 = up(D, rm, C), *dRV2 = up(D, rv, C);
  float *dOut2 = up(D, x, n);
  RUN(bn_chain_forward_add, &q, dX2, dAdd, cs, ca, slope, dOut2, dMean2, dStd2, dRM2, dRV2, up(D, &rf, 1), dS, dB);
  q.z_via_y = true;
  q.y_b = dB;
  float *dDY2 = up(D, dy, n), *dDS2 = up(D, s, C), *dDB2 = b ? up(D, b, C) : NULL;
  RUN(bn_chain_backward_x, &q, NULL, dDY2, dX2, dMean2, dStd2, dS, dDS2, dDB2, dDY2, NULL);
  const out_pair o[] = {{dOut, dOut2, n, "the pair's output"}, {dX, dX2, n, "x"},       {dMean, dMean2, C, "mean"},
                        {dStd, dStd2, C, "std"},             {dRM, dRM2, C, "running mean"}, {dRV, dRV2, C, "running var"},
                        {dDY, dDY2, n, "dx"},                {dDS, dDS2, C, "ds"},     {dDB, dDB2, C, "db"}};
  same_bits(D, what, "fed", o, sizeof o / sizeof o[0], n);
  /* and the output against the double loops */
  const ref r = forward_ref(sh, false, false, 0.0f, x, s, b, rm, rv, rf);
  double *want = dbuf(n);
  for (size_t k = 0; k < n; k++) {
    const double v = cs * r.y[k] + ca * add[k];
    want[k] = v > 0 ? v : slope * v;
  }
  float *out = hbuf(n * sizeof(float));
  fetch(D, out, dOut2, n, "%s: output", what);
  same(out, want, n, 1e-5, what);
}

static void test_fed(const ct_driver *D) {
  for (size_t z = 0; z < sizeof zoo / sizeof zoo[0]; z++)
    for (int bias = 0; bias < 2; bias++) fed_case(D, &zoo[z], bias, 1.0f, 1.0f, 0.0f);
  fed_case(D, &zoo[6], true, 0.5f, -2.0f, 0.1f);
  fed_case(D, &large, true, 1.0f, 1.0f, 0.0f);
}

int main(void) {
  static const dc_test tests[] = {
      {"bn chain", test_chain}, {"batchnorm fold", test_batchnorm_fold}, {"fed chain", test_fed}};
  return dc_main(tests, sizeof tests / sizeof tests[0], DC_FUSE, 4242);
}
