/* tests/test_cuda_kernels.c, continued: the two-stage reductions (cuda/kern_red.h) and the
 * entries built on them, BatchNorm alone and as the fused chain, the Scale and PReLU parameter
 * gradients, the convolutions' bias gradients (test_cuda_kernels_nn.h uses chan_sums_add), and
 * DIRECT convolution (cuda/kern_dw.h), each stage's body run over every index and
 * the result held to the CPU driver's entry on a zoo of shapes. Stage 1 also runs with its
 * indices in reverse order and must give the same bits: the partials are independent of the
 * order a GPU runs them in, and stage 2 sums them in a fixed order.
 *
 * Tolerances: the elementwise bodies compute what the CPU computes in its order (1e-6); sums
 * that the CPU takes in float lanes and the bodies in double partials (statistics, gradients of
 * parameters) within 1e-5 of the largest magnitude. */

/* Stage 1 of a channel reduction, over every index, forwards or backwards. */
static double *chan_partials(const ctk_chan_red *r, const float *u, const float *v, const float *w, const float *mean,
                             bool reverse) {
  const size_t n = r->C * r->T;
  double *part = calloc(2 * n + 2, sizeof(double));
  if (!part) abort();
  FOR(j, n) ctk_chan_partial(reverse ? n - 1 - j : j, r, u, v, w, mean, part);
  return part;
}

/* Stage 1 run both ways gives the same partials; returns the forward run's. */
static double *chan_partials_checked(const ctk_chan_red *r, const float *u, const float *v, const float *w,
                                     const float *mean, const char *what) {
  double *a = chan_partials(r, u, v, w, mean, false), *b = chan_partials(r, u, v, w, mean, true);
  CHECK(!memcmp(a, b, 2 * r->C * r->T * sizeof(double)), "%s: partials depend on the order of the indices", what);
  free(b);
  return a;
}

/* out[c] += the sum of channel c of x (N x C x S), both stages: the CUDA driver's
 * ct_cuda_channel_sums_add (the convolutions' bias gradients). */
static void chan_sums_add(size_t N, size_t C, size_t S, const float *x, float *out) {
  const ctk_chan_red r = ctk_chan_red_of(CTK_RED_SUM, N, C, S);
  double *part = chan_partials_checked(&r, x, NULL, NULL, NULL, "channel sums");
  FOR(c, C) ctk_red_fin_add(c, r.T, part, out);
  free(part);
}

/* The CUDA driver's chain_forward (cuda/driver_red.c), on the host. */
static void host_chain_forward(const ct_bn_chain *p, const float *x, float *y, float *z, float *mean, float *std,
                               float *rm, float *rv, float *rf, const float *s, const float *b) {
  const ct_batchnorm *bn = &p->bn;
  if (bn->global) {
    FOR(c, bn->C) ctk_bn_global_stats(c, bn, mean, std, rm, rv, rf);
  } else {
    ctk_chan_red r = ctk_chan_red_of(CTK_RED_SUM, bn->N, bn->C, bn->S);
    double *part = chan_partials_checked(&r, x, NULL, NULL, NULL, "batchnorm sum");
    FOR(c, bn->C) ctk_bn_fin_mean(c, bn, r.T, part, mean);
    free(part);
    r.op = CTK_RED_SQDEV;
    part = chan_partials_checked(&r, x, NULL, NULL, mean, "batchnorm squared deviations");
    FOR(c, bn->C) ctk_bn_fin_var(c, bn, r.T, part, mean, std, rm, rv, rf);
    free(part);
  }
  FOR(i, bn->N * bn->C * bn->S) ctk_chain_fwd(i, p, x, y, z, mean, std, s, b);
}

/* The CUDA driver's chain_backward, on the host. */
static void host_chain_backward(const ct_bn_chain *p, const float *y, const float *dy, const float *z,
                                const float *std, const float *s, float *ds, float *db, float *dx, float *dz) {
  const ct_batchnorm *bn = &p->bn;
  const bool batch = !bn->global && bn->N * bn->S > 0 && dx;
  float *ab = NULL;
  if (batch || ds || db) {
    ctk_chan_red r = ctk_chan_red_of(CTK_RED_GRAD, bn->N, bn->C, bn->S);
    r.relu = p->relu, r.slope = p->slope;
    double *part = chan_partials_checked(&r, dy, y, batch || ds ? z : NULL, NULL, "chain gradient sums");
    ab = fbuf(2 * bn->C);
    FOR(c, bn->C) ctk_grad_fin(c, bn, r.T, part, s, batch, ab, ds, db);
    free(part);
  }
  if (dx) FOR(i, bn->N * bn->C * bn->S) ctk_chain_bwd(i, p, batch, y, dy, z, std, s, ab, dx, dz);
  free(ab);
}

static void test_bn_chain_red(void) {
  /* N, C, S: channels not a multiple of 8, batch 1, one position, and ranges of several partials
   * (N S = 900, 3136, 70000, 2100: T = 8, 25, 512, and 17, a step longer than a plane) */
  const size_t shapes[][3] = {{4, 3, 5},   {2, 8, 1},    {1, 2, 16},    {8, 4, 49},
                              {3, 13, 300}, {4, 5, 784}, {1, 3, 70000}, {300, 3, 7}};
  for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++)
    for (int global = 0; global < 2; global++)
      for (int variant = 0; variant < 5; variant++) {
        /* 0: BatchNorm alone; 1: + Scale with bias; 2: + Scale without bias + ReLU; 3: + Scale
         * + leaky ReLU, in place; 4: as 1 without xnorm kept (global: the folded affine) */
        ct_bn_chain p = {.bn = {.N = shapes[sh][0], .C = shapes[sh][1], .S = shapes[sh][2], .global = global,
                                .maf = 0.9f, .eps = 1e-5f},
                         .relu = variant == 2 || variant == 3, .slope = variant == 3 ? 0.1f : 0.0f};
        const size_t n = p.bn.N * p.bn.C * p.bn.S, C = p.bn.C;
        const bool alone = variant == 0, inplace = variant == 3, keep_z = variant != 4;
        char what[128];
        float *x = gauss(n, 2), *s = unif(C, 0.5f, 1.5f), *b = gauss(C, 1);
        FOR(i, n) x[i] += 0.5f * (float)(i / p.bn.S % C); /* channels with different means */
        float *y = inplace ? dup(x, n) : fbuf(n), *z = fbuf(n), *mean = fbuf(C), *sd = fbuf(C);
        float *ry = inplace ? dup(x, n) : fbuf(n), *rz = fbuf(n), *rmean = fbuf(C), *rsd = fbuf(C);
        float *rm = unif(C, -1, 1), *rv = unif(C, 0.5f, 2), *rf = unif(1, 1, 3);
        float *rm2 = dup(rm, C), *rv2 = dup(rv, C), *rf2 = dup(rf, 1);
        const float *sb = alone ? NULL : s, *bb = alone || variant == 2 ? NULL : b;
        host_chain_forward(&p, inplace ? y : x, y, keep_z ? z : NULL, mean, sd, rm, rv, rf, sb, bb);
        if (alone)
          ct_cpu_batchnorm_forward(CPU, &p.bn, x, ry, rz, rmean, rsd, rm2, rv2, rf2);
        else
          ct_cpu_bn_chain_forward(CPU, &p, inplace ? ry : x, ry, keep_z ? rz : NULL, rmean, rsd, rm2, rv2, rf2, sb,
                                  bb);
#define SAY(part) snprintf(what, sizeof what, "bn chain %zux%zux%zu global %d variant %d: %s", p.bn.N, C, p.bn.S, \
                           global, variant, part)
        SAY("y"), near(y, ry, n, 1e-5, what);
        if (keep_z) SAY("xnorm"), near(z, rz, n, 1e-5, what);
        SAY("mean"), near(mean, rmean, C, 1e-5, what);
        SAY("std"), near(sd, rsd, C, 1e-5, what);
        SAY("running mean"), near(rm, rm2, C, 1e-5, what);
        SAY("running var"), near(rv, rv2, C, 1e-5, what);
        SAY("running factor"), near(rf, rf2, 1, 1e-6, what);
        /* backward from the CPU's forward (the same y and xnorm for both). bw 0: ds, db, dx, dz;
         * 1: dx only, in place of dy; 2: ds and db only; 3: db, and dx and dz both in place of dy */
        for (int bw = 0; bw < 4; bw++) {
          const bool want_ds = bw == 0 || bw == 2, want_dx = bw != 2;
          if (alone && bw != 1) continue;                             /* BatchNorm alone: dx only */
          if (!keep_z && (want_ds || (!global && want_dx))) continue; /* these read xnorm */
          float *dy = gauss(n, 1), *ds = unif(C, -1, 1), *db = unif(C, -1, 1), *rds = dup(ds, C), *rdb = dup(db, C);
          float *dyc = dup(dy, n), *rdyc = dup(dy, n); /* the in-place runs' dy, overwritten */
          float *dx = fbuf(n), *rdx = fbuf(n), *dz = fbuf(n), *rdz = fbuf(n);
          const bool inpl = bw == 1 || bw == 3;
          float *pdx = !want_dx ? NULL : inpl ? dyc : dx, *rpdx = !want_dx ? NULL : inpl ? rdyc : rdx;
          float *pdz = bw == 0 ? dz : bw == 3 ? dyc : NULL, *rpdz = bw == 0 ? rdz : bw == 3 ? rdyc : NULL;
          const float *in = inpl ? dyc : dy, *rin = inpl ? rdyc : dy, *zin = keep_z ? rz : NULL;
          if (alone) {
            host_chain_backward(&p, NULL, in, zin, rsd, NULL, NULL, NULL, pdx, NULL);
            ct_cpu_batchnorm_backward(CPU, &p.bn, rin, zin, rsd, rpdx);
          } else {
            host_chain_backward(&p, ry, in, zin, rsd, s, want_ds ? ds : NULL, bw != 1 ? db : NULL, pdx, pdz);
            ct_cpu_bn_chain_backward(CPU, &p, ry, rin, zin, rsd, s, want_ds ? rds : NULL, bw != 1 ? rdb : NULL, rpdx,
                                     rpdz);
          }
          char part[48];
          snprintf(part, sizeof part, "backward %d dx", bw);
          if (want_dx) SAY(part), near(pdx, rpdx, n, 1e-5, what);
          snprintf(part, sizeof part, "backward %d dz", bw);
          if (bw == 0) SAY(part), near(dz, rdz, n, 1e-6, what);
          snprintf(part, sizeof part, "backward %d ds", bw);
          if (want_ds) SAY(part), near(ds, rds, C, 1e-5, what);
          snprintf(part, sizeof part, "backward %d db", bw);
          if (bw != 1) SAY(part), near(db, rdb, C, 1e-5, what);
          free(dy), free(ds), free(db), free(rds), free(rdb), free(dyc), free(rdyc), free(dx), free(rdx), free(dz);
          free(rdz);
        }
#undef SAY
        free(x), free(s), free(b), free(y), free(z), free(mean), free(sd), free(ry), free(rz), free(rmean), free(rsd);
        free(rm), free(rv), free(rf), free(rm2), free(rv2), free(rf2);
      }
}

static void test_param_grads_red(void) {
  const size_t shapes[][3] = {{2, 3, 4}, {5, 7, 1}, {1, 1, 9}, {3, 16, 25}, {1, 13, 4000}, {64, 3, 100}, {300, 5, 7}};
  for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++) {
    const size_t outer = shapes[sh][0], dim = shapes[sh][1], inner = shapes[sh][2], n = outer * dim * inner;
    float *x = gauss(n, 1), *dy = gauss(n, 1), *sc = gauss(dim, 1);
    char what[96];
    for (int mode = 0; mode < 3; mode++) { /* ds and db; db only; ds only */
      float *ds = unif(dim, -1, 1), *db = unif(dim, -1, 1), *rds = dup(ds, dim), *rdb = dup(db, dim);
      float *dx = fbuf(n), *rdx = fbuf(n);
      float *pds = mode != 1 ? ds : NULL, *pdb = mode != 2 ? db : NULL;
      const ctk_chan_red r = ctk_chan_red_of(CTK_RED_GRAD, outer, dim, inner);
      const ct_batchnorm shape = {.N = outer, .C = dim, .S = inner};
      double *part = chan_partials_checked(&r, dy, NULL, pds ? x : NULL, NULL, "scale gradient sums");
      FOR(k, dim) ctk_grad_fin(k, &shape, r.T, part, NULL, false, NULL, pds, pdb);
      free(part);
      FOR(i, n) ctk_scale_bwd_dx(i, dim, inner, dy, sc, dx);
      ct_cpu_scale_backward(CPU, outer, dim, inner, x, dy, sc, mode != 1 ? rds : NULL, mode != 2 ? rdb : NULL, rdx);
      snprintf(what, sizeof what, "scale backward %zux%zux%zu mode %d ds", outer, dim, inner, mode);
      near(ds, rds, dim, 1e-5, what);
      snprintf(what, sizeof what, "scale backward %zux%zux%zu mode %d db", outer, dim, inner, mode);
      near(db, rdb, dim, 1e-5, what);
      snprintf(what, sizeof what, "scale backward %zux%zux%zu mode %d dx", outer, dim, inner, mode);
      near(dx, rdx, n, 0, what);
      free(ds), free(db), free(rds), free(rdb), free(dx), free(rdx);
    }
    for (int shared = 0; shared < 2; shared++) {
      const size_t N = outer, C = dim, D = inner;
      float *a = unif(C, 0.05f, 0.5f), *dx = fbuf(n), *rdx = fbuf(n), *da = unif(C, -1, 1), *rda = dup(da, C);
      const ctk_chan_red r = ctk_chan_red_of(CTK_RED_PRELU, N, shared ? 1 : C, shared ? C * D : D);
      double *part = chan_partials_checked(&r, x, dy, NULL, NULL, "prelu slope sums");
      FOR(c, r.C) ctk_red_fin_add(c, r.T, part, da);
      free(part);
      FOR(i, n) ctk_prelu_bwd_dx(i, C, D, shared, x, dy, a, dx);
      ct_cpu_prelu_backward(CPU, N, C, D, shared, x, dy, a, rdx, rda);
      snprintf(what, sizeof what, "prelu backward %zux%zux%zu shared %d dx", N, C, D, shared);
      near(dx, rdx, n, 0, what);
      snprintf(what, sizeof what, "prelu backward %zux%zux%zu shared %d da", N, C, D, shared);
      near(da, rda, shared ? 1 : C, 1e-5, what);
      free(a), free(dx), free(rdx), free(da), free(rda);
    }
    free(x), free(dy), free(sc);
  }
}

/* ================================================================ DIRECT convolution */

static void test_direct(void) {
  /* nb, C, H, W, K, G, kh, kw, sh, sw, ph, pw, dh, dw */
  const int zoo[][14] = {
      {2, 13, 9, 9, 13, 13, 3, 3, 1, 1, 1, 1, 1, 1},    /* depthwise 3x3, 13 channels */
      {1, 11, 15, 15, 11, 11, 3, 3, 2, 2, 1, 1, 1, 1},  /* depthwise stride 2, batch 1 */
      {3, 6, 7, 10, 12, 6, 3, 3, 1, 1, 1, 1, 1, 1},     /* channel multiplier 2, odd sizes */
      {2, 8, 13, 13, 6, 2, 5, 5, 2, 2, 2, 2, 1, 1},     /* groups of 4 in, 3 out, 5x5 stride 2 */
      {2, 5, 12, 12, 5, 5, 5, 5, 1, 1, 4, 4, 2, 2},     /* dilation 2 */
      {2, 7, 9, 11, 14, 7, 1, 3, 1, 2, 0, 1, 1, 1},     /* 1x3, stride 1 x 2 */
      {4, 8, 28, 28, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1},     /* several partials per weight (T = 25) */
      {1, 9, 17, 13, 9, 3, 4, 4, 3, 3, 0, 2, 1, 1},     /* even kernel, stride 3, pad on one axis */
      {2, 12, 8, 8, 24, 12, 3, 3, 2, 2, 0, 0, 1, 1},    /* stride 2 no pad, multiplier 2 */
      {1, 4, 6, 6, 4, 4, 7, 7, 1, 1, 3, 3, 1, 1},       /* a kernel larger than 3x3 */
      {160, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1},     /* T = 12 partials step over 9-output planes */
  };
  for (size_t z = 0; z < sizeof zoo / sizeof *zoo; z++) {
    const int *q = zoo[z];
    ct_conv_geom g = {.N = q[0], .C = q[1], .H = q[2], .W = q[3], .K = q[4], .G = q[5], .kh = q[6], .kw = q[7],
                      .sh = q[8], .sw = q[9], .ph = q[10], .pw = q[11], .dh = q[12], .dw = q[13]};
    CHECK(ct_conv_geom_finish(&g) && ct_lower_direct_applies(&g), "direct zoo %zu: a valid geometry", z);
    const int nb = g.N;
    const size_t X = (size_t)nb * g.C * g.H * g.W, Y = (size_t)nb * g.K * g.OH * g.OW,
                 Wn = (size_t)g.K * (g.C / g.G) * g.kh * g.kw, WS = ct_lower_direct_layout(&g).scratch + 64;
    float *x = gauss(X, 1), *w = gauss(Wn, 0.5f), *b = gauss(g.K, 1), *ws = fbuf(WS);
    float *y = fbuf(Y), *ry = fbuf(Y);
    char what[96];
    for (int withb = 0; withb < 2; withb++) {
      FOR(i, Y) ctk_direct_fwd(i, &g, x, w, withb ? b : NULL, y);
      ct_cpu_conv_direct_forward(CPU, &g, nb, x, w, withb ? b : NULL, ry, ws);
      snprintf(what, sizeof what, "direct zoo %zu forward (bias %d)", z, withb);
      near(y, ry, Y, 1e-6, what);
    }
    float *dy = gauss(Y, 1), *dx = fbuf(X), *rdx = fbuf(X);
    FOR(i, X) dx[i] = 7.0f, rdx[i] = -7.0f; /* overwritten */
    FOR(i, X) ctk_direct_bwd_data(i, &g, w, dy, dx);
    ct_cpu_conv_direct_backward_data(CPU, &g, nb, w, dy, rdx, ws);
    snprintf(what, sizeof what, "direct zoo %zu data gradient", z);
    near(dx, rdx, X, 1e-6, what);
    for (int mode = 0; mode < 3; mode++) { /* dw and db; dw only; db only */
      float *dw = unif(Wn, -1, 1), *db = unif(g.K, -1, 1), *rdw = dup(dw, Wn), *rdb = dup(db, g.K);
      float *pdw = mode != 2 ? dw : NULL, *pdb = mode != 1 ? db : NULL;
      const size_t P = (size_t)g.OH * g.OW, T = ctk_red_parts((size_t)nb * P), rows = Wn;
      if (pdw) {
        double *pa = calloc(2 * rows * T, sizeof(double)), *pb = calloc(2 * rows * T, sizeof(double));
        if (!pa || !pb) abort();
        FOR(j, rows * T) ctk_direct_wgrad_partial(j, &g, nb, T, x, dy, pa);
        FOR(j, rows * T) ctk_direct_wgrad_partial(rows * T - 1 - j, &g, nb, T, x, dy, pb);
        CHECK(!memcmp(pa, pb, 2 * rows * T * sizeof(double)), "direct zoo %zu: weight partials depend on the order", z);
        FOR(r, rows) ctk_red_fin_add(r, T, pa, dw);
        free(pa), free(pb);
      }
      if (pdb) chan_sums_add((size_t)nb, (size_t)g.K, P, dy, db);
      ct_cpu_conv_direct_backward_weight(CPU, &g, nb, x, dy, pdw ? rdw : NULL, pdb ? rdb : NULL, ws);
      snprintf(what, sizeof what, "direct zoo %zu weight gradient (mode %d)", z, mode);
      near(dw, rdw, Wn, 1e-5, what);
      snprintf(what, sizeof what, "direct zoo %zu bias gradient (mode %d)", z, mode);
      near(db, rdb, g.K, 1e-5, what);
      free(dw), free(db), free(rdw), free(rdb);
    }
    free(x), free(w), free(b), free(ws), free(y), free(ry), free(dy), free(dx), free(rdx);
  }
}
