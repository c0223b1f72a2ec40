/* test_cuda_kernels.c's second half: the layer bodies (lowering type 1, pooling, LRN, softmax,
 * the losses, accuracy, ArgMax) against the CPU driver, and the CUDA driver's table. */

/* ================================================================ lowering type 1 */

static void test_conv(void) {
  /* N C H W K kh kw sh sw ph pw dh dw */
  const int zoo[][13] = {{2, 3, 7, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1}, {2, 2, 9, 8, 3, 3, 2, 2, 3, 0, 1, 1, 1},
                         {1, 3, 11, 11, 2, 5, 5, 2, 2, 2, 2, 2, 2}, {3, 4, 6, 6, 5, 1, 1, 1, 1, 0, 0, 1, 1},
                         {1, 3, 23, 23, 4, 11, 11, 4, 4, 0, 0, 1, 1}, {2, 1, 5, 9, 2, 2, 4, 1, 2, 1, 2, 1, 1}};
  for (size_t z = 0; z < sizeof zoo / sizeof *zoo; z++) {
    const int *q = zoo[z];
    ct_conv_geom g = {.N = q[0], .C = q[1], .H = q[2], .W = q[3], .K = q[4], .G = 1, .kh = q[5], .kw = q[6],
                      .sh = q[7], .sw = q[8], .ph = q[9], .pw = q[10], .dh = q[11], .dw = q[12]};
    if (!ct_conv_geom_finish(&g)) {
      CHECK(false, "conv zoo %zu does not fit", z);
      continue;
    }
    const int nb = g.N;
    const size_t X = (size_t)nb * g.C * g.H * g.W, P = (size_t)g.OH * g.OW, Y = (size_t)nb * g.K * P;
    const size_t rows = (size_t)g.C * g.kh * g.kw, cols = (size_t)nb * P, WS = ct_lower_workspace(&g, CT_LOWER_TYPE1, nb);
    const ct_lower_layout lay = ct_lower_layout_of(&g, CT_LOWER_TYPE1, nb);
    float *x = gauss(X, 1), *w = gauss((size_t)g.K * rows, 1), *b = gauss(g.K, 1);
    float *ws = fbuf(WS), *rws = fbuf(WS);
    char what[96];
    FOR(i, rows * cols) ctk_lower1(i, &g, nb, x, ws + lay.data);
    ct_cpu_conv_lower(CPU, &g, CT_LOWER_TYPE1, nb, x, w, rws);
    snprintf(what, sizeof what, "conv zoo %zu: lowering type 1", z), near(ws + lay.data, rws + lay.data, rows * cols, 0, what);
    /* lift from a product */
    float *R = gauss((size_t)g.K * cols, 1), *y = fbuf(Y), *ry = fbuf(Y);
    memcpy(ws + lay.product, R, (size_t)g.K * cols * sizeof(float));
    memcpy(rws + lay.product, R, (size_t)g.K * cols * sizeof(float));
    for (int withb = 0; withb < 2; withb++) {
      FOR(i, Y) ctk_lift1(i, &g, nb, ws + lay.product, withb ? b : NULL, y);
      ct_cpu_conv_lift(CPU, &g, CT_LOWER_TYPE1, nb, rws, withb ? b : NULL, ry);
      snprintf(what, sizeof what, "conv zoo %zu: lift type 1 (bias %d)", z, withb), near(y, ry, Y, 1e-6, what);
    }
    /* backward: lift_grad, bias_grad, lower_grad (col2im) */
    float *dy = gauss(Y, 1);
    FOR(i, Y) ctk_lift_grad1(i, &g, nb, dy, ws + lay.product);
    ct_cpu_conv_lift_grad(CPU, &g, CT_LOWER_TYPE1, nb, dy, rws);
    snprintf(what, sizeof what, "conv zoo %zu: lift_grad type 1", z);
    near(ws + lay.product, rws + lay.product, (size_t)g.K * cols, 0, what);
    float *db = unif(g.K, -1, 1), *rdb = dup(db, g.K), *db2 = dup(db, g.K), *rdb2 = dup(db, g.K);
    chan_sums_add(1, (size_t)g.K, cols, ws + lay.product, db);
    ct_cpu_conv_bias_grad(CPU, &g, CT_LOWER_TYPE1, nb, dy, rws, rdb);
    snprintf(what, sizeof what, "conv zoo %zu: bias_grad type 1", z), near(db, rdb, g.K, 1e-5, what);
    chan_sums_add((size_t)nb, (size_t)g.K, (size_t)g.OH * g.OW, dy, db2);
    ct_cpu_conv_bias_grad(CPU, &g, CT_LOWER_POINTWISE, nb, dy, NULL, rdb2);
    snprintf(what, sizeof what, "conv zoo %zu: bias_grad from dy", z), near(db2, rdb2, g.K, 1e-5, what);
    float *D = gauss(rows * cols, 1), *dx = fbuf(X), *rdx = fbuf(X);
    memcpy(ws + lay.data, D, rows * cols * sizeof(float));
    memcpy(rws + lay.data, D, rows * cols * sizeof(float));
    FOR(i, X) ctk_col2im1(i, &g, nb, ws + lay.data, dx);
    ct_cpu_conv_lower_grad(CPU, &g, CT_LOWER_TYPE1, nb, rws, rdx, NULL);
    snprintf(what, sizeof what, "conv zoo %zu: col2im (lower_grad type 1)", z), near(dx, rdx, X, 1e-5, what);
    if (ct_conv_is_pointwise(&g)) {
      float *yp = gauss(Y, 1), *ryp = dup(yp, Y);
      FOR(i, Y) ctk_lift_pw(i, &g, b, yp);
      ct_cpu_conv_lift(CPU, &g, CT_LOWER_POINTWISE, nb, rws, b, ryp);
      snprintf(what, sizeof what, "conv zoo %zu: 1x1 lift", z), near(yp, ryp, Y, 0, what);
      free(yp), free(ryp);
    }
    free(x), free(w), free(b), free(ws), free(rws), free(R), free(y), free(ry), free(dy), free(db), free(rdb);
    free(db2), free(rdb2), free(D), free(dx), free(rdx);
  }
}

/* ================================================================ pooling */

/* Caffe's output size: ceil, the last window starting inside the image or its left padding. */
static int pooled(int in, int k, int p, int s) {
  int o = (int)ceil((double)(in + 2 * p - k) / s) + 1;
  if (p > 0 && (o - 1) * s >= in + p) o--;
  return o;
}

static void test_pool(void) {
  /* H W kh kw sh sw ph pw */
  const int zoo[][8] = {{6, 6, 2, 2, 2, 2, 0, 0}, {7, 9, 3, 3, 2, 2, 1, 1}, {13, 13, 3, 3, 2, 2, 0, 0},
                        {5, 5, 1, 1, 3, 3, 0, 0}, {8, 5, 4, 2, 1, 1, 2, 1}, {4, 4, 4, 4, 1, 1, 0, 0}};
  const size_t planes = 6;
  for (size_t z = 0; z < sizeof zoo / sizeof *zoo; z++)
    for (int method = CT_POOL_MAX; method <= CT_POOL_STOCHASTIC; method++) {
      const int *q = zoo[z];
      ct_pool_geom g = {.method = (ct_pool_method)method, .H = q[0], .W = q[1], .kh = q[2], .kw = q[3], .sh = q[4],
                        .sw = q[5], .ph = q[6], .pw = q[7]};
      g.OH = pooled(g.H, g.kh, g.ph, g.sh), g.OW = pooled(g.W, g.kw, g.pw, g.sw);
      const size_t X = planes * g.H * g.W, Y = planes * g.OH * g.OW;
      float *x = method == CT_POOL_STOCHASTIC ? unif(X, 0.1f, 1) : gauss(X, 1);
      if (method == CT_POOL_MAX) x[1] = x[0]; /* a tie: the first wins */
      float *y = fbuf(Y), *ry = fbuf(Y), *mask = fbuf(Y), *rmask = fbuf(Y);
      int *am = calloc(Y, sizeof(int)), *ram = calloc(Y, sizeof(int));
      char what[96];
      FOR(i, Y) ctk_pool_fwd(i, &g, x, y, am, mask);
      ct_cpu_pool_forward(CPU, &g, planes, x, ry, ram, rmask);
      snprintf(what, sizeof what, "pool zoo %zu method %d forward", z, method), near(y, ry, Y, 1e-6, what);
      if (method == CT_POOL_MAX) {
        same_ints(am, ram, Y, "pool argmax");
        near(mask, rmask, Y, 0, "pool mask");
      }
      float *dy = gauss(Y, 1), *dx = fbuf(X), *rdx = fbuf(X);
      FOR(i, X) ctk_pool_bwd(i, &g, x, dy, ram, dx);
      ct_cpu_pool_backward(CPU, &g, planes, x, dy, ram, rdx);
      snprintf(what, sizeof what, "pool zoo %zu method %d backward", z, method), near(dx, rdx, X, 1e-5, what);
      free(x), free(y), free(ry), free(mask), free(rmask), free(am), free(ram), free(dy), free(dx), free(rdx);
    }
}

/* ================================================================ LRN */

static void test_lrn(void) {
  /* across size C H W beta */
  const struct {
    bool across;
    int size, C, H, W;
    float beta;
  } zoo[] = {{true, 5, 7, 4, 3, 0.75f}, {true, 3, 2, 5, 5, 0.6f}, {true, 9, 12, 2, 2, 1.0f},
             {false, 3, 2, 6, 6, 0.75f}, {false, 5, 3, 4, 7, 0.5f}};
  const size_t nimg = 2;
  for (size_t z = 0; z < sizeof zoo / sizeof *zoo; z++) {
    ct_lrn_geom g = {.across = zoo[z].across, .size = zoo[z].size, .alpha = 1e-2f, .beta = zoo[z].beta, .k = 2.0f,
                     .C = zoo[z].C, .H = zoo[z].H, .W = zoo[z].W};
    const size_t n = nimg * g.C * g.H * g.W;
    float *x = gauss(n, 3), *y = fbuf(n), *s = fbuf(n), *sp = fbuf(n), *ry = fbuf(n), *rs = fbuf(n), *rsp = fbuf(n);
    float *tmp = fbuf((size_t)g.C * g.H * g.W);
    char what[80];
    FOR(i, n) ctk_lrn_fwd(i, &g, x, y, s, sp);
    ct_cpu_lrn_forward(CPU, &g, nimg, x, ry, rs, rsp, tmp);
    snprintf(what, sizeof what, "lrn zoo %zu forward y", z), near(y, ry, n, 1e-5, what);
    snprintf(what, sizeof what, "lrn zoo %zu forward scale", z), near(s, rs, n, 1e-5, what);
    snprintf(what, sizeof what, "lrn zoo %zu forward s^-beta", z), near(sp, rsp, n, 1e-5, what);
    float *dy = gauss(n, 1), *dx = fbuf(n), *rdx = fbuf(n);
    FOR(i, n) ctk_lrn_bwd(i, &g, x, ry, dy, rs, rsp, dx);
    ct_cpu_lrn_backward(CPU, &g, nimg, x, ry, dy, rs, rsp, rdx, tmp);
    snprintf(what, sizeof what, "lrn zoo %zu backward", z), near(dx, rdx, n, 1e-5, what);
    free(x), free(y), free(s), free(sp), free(ry), free(rs), free(rsp), free(tmp), free(dy), free(dx), free(rdx);
  }
}

/* ================================================================ softmax, losses, accuracy */

static void test_softmax_losses(void) {
  const size_t shapes[][3] = {{3, 10, 1}, {2, 5, 7}, {1, 1, 3}, {4, 1000, 1}};
  for (size_t s = 0; s < 4; s++) {
    const size_t outer = shapes[s][0], C = shapes[s][1], inner = shapes[s][2], n = outer * C * inner,
                 pos = outer * inner;
    float *x = gauss(n, 4), *y = fbuf(n), *ry = fbuf(n), *scr = fbuf(inner);
    FOR(i, pos) ctk_softmax_fwd(i, C, inner, x, y);
    ct_cpu_softmax_forward(CPU, outer, C, inner, x, ry, scr);
    near(y, ry, n, 1e-6, "softmax forward");
    float *xi = dup(x, n);
    FOR(i, pos) ctk_softmax_fwd(i, C, inner, xi, xi);
    near(xi, ry, n, 1e-6, "softmax forward in place");
    float *dy = gauss(n, 1), *dx = fbuf(n), *rdx = fbuf(n);
    FOR(i, pos) ctk_softmax_bwd(i, C, inner, ry, dy, dx);
    ct_cpu_softmax_backward(CPU, outer, C, inner, ry, dy, rdx, scr);
    near(dx, rdx, n, 1e-6, "softmax backward");
    /* SoftmaxWithLoss: labels with an ignored one, then a bad one */
    float *lab = fbuf(pos);
    FOR(i, pos) lab[i] = (float)(ct_rng_uniform01(&R) * C);
    FOR(i, pos) lab[i] = floorf(lab[i]);
    if (pos > 1) lab[1] = 255;
    for (int bad = 0; bad < 2; bad++) {
      if (bad) lab[pos - 1] = (float)C + 1;
      double *pl = calloc(pos, sizeof(double));
      int *st = calloc(pos, sizeof(int));
      FOR(i, pos) ctk_softmax_loss_pos(i, C, inner, ry, lab, true, 255, pl, st);
      double loss = 0, rloss = -1;
      size_t valid = 0, rvalid = 0;
      ptrdiff_t first_bad = -1, rbad = -2;
      FOR(i, pos) {
        if (st[i] == CTK_BAD && first_bad < 0) first_bad = (ptrdiff_t)i;
        if (first_bad < 0 && st[i] == CTK_COUNTED) loss += pl[i], valid++;
      }
      ct_cpu_softmax_loss_forward(CPU, outer, C, inner, ry, lab, true, 255, &rloss, &rvalid, &rbad);
      CHECK(first_bad == rbad, "softmax loss: first bad label at %td, the CPU's %td", first_bad, rbad);
      if (!bad) {
        CHECK(loss == rloss && valid == rvalid, "softmax loss %.17g over %zu, the CPU's %.17g over %zu", loss, valid,
              rloss, rvalid);
        float *g = fbuf(n), *rg = fbuf(n);
        FOR(i, n) ctk_softmax_loss_bwd(i, C, inner, ry, lab, true, 255, 0.25f, g);
        ct_cpu_softmax_loss_backward(CPU, outer, C, inner, ry, lab, true, 255, 0.25f, rg);
        near(g, rg, n, 0, "softmax loss backward");
        free(g), free(rg);
      }
      free(pl), free(st);
    }
    /* Accuracy, top 1 and top 3, with ties against the true class, per class */
    FOR(i, pos) lab[i] = floorf((float)(ct_rng_uniform01(&R) * C));
    if (pos > 2) lab[2] = 255;
    if (C > 1) x[1] = x[0]; /* a tie */
    for (int topk = 1; topk <= 3; topk += 2) {
      int *st = calloc(pos, sizeof(int));
      FOR(i, pos) ctk_accuracy_pos(i, C, inner, x, lab, topk, true, 255, st);
      size_t hits = 0, counted = 0, rh = 0, rc = 0;
      float *pc = fbuf(C), *rpc = fbuf(C);
      size_t *cc = calloc(C, sizeof(size_t)), *rcc = calloc(C, sizeof(size_t));
      FOR(i, pos) {
        if (st[i] == CTK_IGNORED) continue;
        cc[(int)lab[i]]++, counted++;
        if (st[i] == CTK_HIT) hits++, pc[(int)lab[i]] += 1;
      }
      FOR(k, C) pc[k] = cc[k] ? pc[k] / (float)cc[k] : 0.0f;
      ptrdiff_t rbad = -2;
      ct_cpu_accuracy(CPU, outer, C, inner, x, lab, topk, true, 255, rpc, rcc, &rh, &rc, &rbad);
      CHECK(rbad == -1 && hits == rh && counted == rc, "accuracy top %d: %zu of %zu, the CPU's %zu of %zu", topk, hits,
            counted, rh, rc);
      near(pc, rpc, C, 0, "accuracy per class");
      free(st), free(pc), free(rpc), free(cc), free(rcc);
    }
    free(x), free(y), free(ry), free(scr), free(xi), free(dy), free(dx), free(rdx), free(lab);
  }
  /* SigmoidCrossEntropyLoss */
  const size_t n = 777;
  float *x = gauss(n, 5), *t = unif(n, 0, 1), *sig = fbuf(n), *rsig = fbuf(n);
  FOR(i, n) t[i] = i % 5 == 0 ? 255.0f : t[i];
  double *pl = calloc(n, sizeof(double)), loss = 0, rloss = 0;
  int *st = calloc(n, sizeof(int));
  size_t valid = 0, rvalid = 0;
  FOR(i, n) ctk_sigmoid_xent_fwd(i, x, t, true, 255, sig, pl, st);
  FOR(i, n) if (st[i] == CTK_COUNTED) loss += pl[i], valid++;
  ct_cpu_sigmoid_xent_forward(CPU, n, x, t, true, 255, rsig, &rloss, &rvalid);
  near(sig, rsig, n, 0, "sigmoid cross-entropy: the logistic");
  CHECK_CLOSE(loss, rloss, 1e-12, 0, "sigmoid cross-entropy loss");
  CHECK(valid == rvalid, "sigmoid cross-entropy counted %zu, the CPU %zu", valid, rvalid);
  float *dx = fbuf(n), *rdx = fbuf(n);
  FOR(i, n) ctk_sigmoid_xent_bwd(i, rsig, t, true, 255, 0.3f, dx);
  ct_cpu_sigmoid_xent_backward(CPU, n, rsig, t, true, 255, 0.3f, rdx);
  near(dx, rdx, n, 0, "sigmoid cross-entropy backward");
  free(x), free(t), free(sig), free(rsig), free(pl), free(st), free(dx), free(rdx);
}

static void test_argmax(void) {
  const size_t shapes[][3] = {{3, 10, 1}, {2, 6, 5}, {1, 4, 1}};
  for (size_t s = 0; s < 3; s++)
    for (int topk = 1; topk <= 3; topk += 2)
      for (int variant = 0; variant < 3; variant++) { /* axis; no axis; no axis with values */
        const size_t outer = shapes[s][0], dim = shapes[s][1], stride = shapes[s][2];
        if ((size_t)topk > dim) continue;
        const bool has_axis = variant == 0, out_max_val = variant == 2;
        const size_t inner = has_axis ? stride : 1, n = outer * dim * inner;
        float *x = gauss(n, 1);
        FOR(i, n) x[i] = roundf(x[i] * 2) / 2; /* ties */
        if (n > 3) x[3] = NAN;
        const size_t ny = has_axis ? outer * topk * inner : outer * (out_max_val ? 2 : 1) * topk;
        float *y = fbuf(ny), *ry = fbuf(ny);
        ct_rank_entry *scratch = calloc(dim, sizeof *scratch);
        FOR(i, outer * inner) ctk_argmax_pos(i, dim, inner, topk, out_max_val, has_axis, x, y);
        ct_cpu_argmax(CPU, outer, dim, inner, topk, out_max_val, has_axis, x, ry, scratch);
        char what[80];
        snprintf(what, sizeof what, "argmax shape %zu top %d variant %d", s, topk, variant);
        near(y, ry, ny, 0, what);
        free(x), free(y), free(ry), free(scratch);
      }
}

/* ================================================================ cuBLAS's arguments */

/* Column-major SGEMM by BLAS's definition: X(i, j) is X[i + j ld]; C = alpha op(A) op(B) + beta C
 * with op(A) m x k, op(B) k x n. */
static void colmajor_sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B,
                           int ldb, float beta, float *C, int ldc) {
  for (int j = 0; j < n; j++)
    for (int i = 0; i < m; i++) {
      double s = 0;
      for (int l = 0; l < k; l++)
        s += (double)(ta ? A[l + (size_t)i * lda] : A[i + (size_t)l * lda]) *
             (tb ? B[j + (size_t)l * ldb] : B[l + (size_t)j * ldb]);
      C[i + (size_t)j * ldc] = (float)(alpha * s + beta * C[i + (size_t)j * ldc]);
    }
}

/* Column-major SGEMV: A is m x n; y = alpha op(A) x + beta y. */
static void colmajor_sgemv(bool t, int m, int n, float alpha, const float *A, int lda, const float *x, float beta,
                           float *y) {
  const int rows = t ? n : m, inner = t ? m : n;
  for (int i = 0; i < rows; i++) {
    double s = 0;
    for (int l = 0; l < inner; l++) s += (double)(t ? A[l + (size_t)i * lda] : A[i + (size_t)l * lda]) * x[l];
    y[i] = (float)(alpha * s + beta * y[i]);
  }
}

/* The driver's row-major GEMM (on sub-matrices: ld wider than the rows) and GEMV, mapped by
 * cuda/blas_map.h onto the column-major reference, against the CPU driver. */
static void test_blas_map(void) {
  const int shapes[][3] = {{1, 1, 1}, {5, 7, 3}, {33, 17, 40}, {2, 64, 9}, {96, 3025, 363}};
  for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++)
        for (int pad = 0; pad < 2; pad++) {
          const int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
          if (si == 4 && (ta || tb || pad)) continue; /* the large one once */
          const int lda = (ta ? M : K) + 3 * pad, ldb = (tb ? K : N) + 2 * pad, ldc = N + pad;
          float *A = gauss((size_t)(ta ? K : M) * lda, 1), *B = gauss((size_t)(tb ? N : K) * ldb, 1);
          float *C = gauss((size_t)M * ldc, 1), *R = dup(C, (size_t)M * ldc);
          const ct_cuda_gemm_call g = ct_cuda_gemm_map(ta, tb, M, N, K, lda, ldb, ldc);
          colmajor_sgemm(g.trans_first, g.trans_second, g.m, g.n, g.k, 0.75f, B, g.ld_first, A, g.ld_second, -0.5f, C,
                         g.ldc);
          ct_cpu_gemm_ld(CPU, ta, tb, M, N, K, 0.75f, A, lda, B, ldb, -0.5f, R, ldc);
          char what[96];
          snprintf(what, sizeof what, "gemm %dx%dx%d ta %d tb %d ld+%d through cuBLAS's arguments", M, N, K, ta, tb,
                   pad);
          near(C, R, (size_t)M * ldc, 1e-5, what);
          free(A), free(B), free(C), free(R);
        }
  const int gv[][2] = {{1, 1}, {7, 5}, {64, 300}};
  for (size_t si = 0; si < 3; si++)
    for (int ta = 0; ta < 2; ta++) {
      const int M = gv[si][0], N = gv[si][1], ny = ta ? N : M, nx = ta ? M : N;
      float *A = gauss((size_t)M * N, 1), *x = gauss(nx, 1), *y = gauss(ny, 1), *r = dup(y, ny);
      const ct_cuda_gemv_call g = ct_cuda_gemv_map(ta, M, N);
      colmajor_sgemv(g.trans, g.m, g.n, 1.25f, A, g.lda, x, 0.5f, y);
      ct_cpu_gemv(CPU, ta, M, N, 1.25f, A, x, 0.5f, r);
      char what[80];
      snprintf(what, sizeof what, "gemv %dx%d ta %d through cuBLAS's arguments", M, N, ta);
      near(y, r, ny, 1e-5, what);
      free(A), free(x), free(y), free(r);
    }
}

/* ================================================================ the driver's table */

int ct_cuda_ops_missing(void) __attribute__((weak));
struct ct_cublas_api;
const struct ct_cublas_api *ct_cublas(char *why, size_t n) __attribute__((weak));

static void test_table(void) {
  char why[256] = "";
  const int n = ct_driver_cuda_devices(why, sizeof why);
  printf("CUDA driver %s; %d device%s%s%s\n", ct_driver_cuda_built() ? "built" : "not built", n, n == 1 ? "" : "s",
         n ? "" : ": ", n ? "" : why);
  if (!ct_driver_cuda_built()) return;
  CHECK(ct_cuda_ops_missing && ct_cuda_ops_missing() < 0,
        "the CUDA driver implements every entry of ct_driver_ops (first missing: %d)",
        ct_cuda_ops_missing ? ct_cuda_ops_missing() : -2);
  /* cuBLAS is dlopen'ed by the first CUDA driver: the library and every function it uses are there */
  char blas_why[300] = "";
  CHECK(ct_cublas && ct_cublas(blas_why, sizeof blas_why), "cuBLAS loads: %s", blas_why);
  if (n == 0) {
    ct_driver *d = NULL;
    ct_error err = {0};
    CHECK(ct_driver_create("cuda:0", NULL, &d, &err) == CT_EUNSUPPORTED && !d, "cuda:0 without a GPU is refused");
    CHECK(strstr(err.msg, "cuda:0") != NULL, "the message names the device: %s", err.msg);
  }
}
