/* The driver entries of the layers: the convolution's lowering steps (by their adjoints and by a
 * direct convolution, for every lowering type), pooling, LRN, softmax, losses and evaluation,
 * against naive reference loops written here, on every backend: inputs uploaded, the entry run
 * there, results downloaded, and emu's held to the CPU's bit for bit (tests/driver_check.h).
 * test_driver.c does the same for memory, BLAS, element-wise, normalisation and the update. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "driver_check.h"
#include "lowering/lowering.h"
#include "wino4_tol.h"

/* ================================================================ the lowering steps */

static void conv_ref(const ct_conv_geom *g, const float *x, const float *w, const float *b, const float *dy,
                     double *y, double *dx, double *dw, double *db) {
  const int Cg = g->C / g->G, Kg = g->K / g->G;
  for (int n = 0; n < g->N; n++)
    for (int k = 0; k < g->K; k++)
      for (int oy = 0; oy < g->OH; oy++)
        for (int ox = 0; ox < g->OW; ox++) {
          size_t yi = (((size_t)n * g->K + k) * g->OH + oy) * g->OW + ox;
          double acc = b ? b[k] : 0;
          for (int c = 0; c < Cg; c++)
            for (int i = 0; i < g->kh; i++)
              for (int j = 0; j < g->kw; j++) {
                int iy = oy * g->sh - g->ph + i * g->dh, ix = ox * g->sw - g->pw + j * g->dw;
                if (iy < 0 || iy >= g->H || ix < 0 || ix >= g->W) continue;
                size_t xi = (((size_t)n * g->C + (k / Kg) * Cg + c) * g->H + iy) * g->W + ix;
                size_t wi = (((size_t)k * Cg + c) * g->kh + i) * g->kw + j;
                acc += (double)w[wi] * x[xi];
                dx[xi] += (double)w[wi] * dy[yi];
                dw[wi] += (double)x[xi] * dy[yi];
              }
          y[yi] = acc;
          db[k] += dy[yi];
        }
}

/* WINOGRAD's blocks hold padding (rows of Tp floats for T tiles, blocks `stride` apart, `used`
 * floats of each in use; Tp = 0: no rows) that its steps leave alone: zeroed in the vectors the
 * adjoint checks multiply them by. */
static void wino_mask(float *p, size_t n, size_t stride, size_t used, size_t Tp, size_t T) {
  for (size_t i = 0; i < n; i++) {
    size_t r = i % stride;
    if (r >= used || (Tp && r % Tp >= T)) p[i] = 0;
  }
}

/* WINOGRAD4's entry is optional (CUDA's driver has none): its results are compared only where
 * every backend has it, so the passes record the same results in the same order. */
static bool wino4_everywhere(void) {
  for (int b = 0; b < DC_BACKENDS; b++)
    if (dc_backends[b] && !dc_backends[b]->ops->conv_wino4_block) return false;
  return true;
}

static double dotf(const float *a, const float *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

/* The steps one by one: lower and lift against their adjoints (lift_grad, lower_grad), for
 * every type; then the whole convolution run on the driver against the direct loops. */

static void test_lowering(const ct_driver *D) {
  const int shapes[][14] = {
      /*N C  H  W  K  G kh kw sh sw ph pw dh dw */
      {2, 3, 7, 6, 4, 1, 3, 3, 1, 1, 1, 1, 1, 1},
      {3, 4, 9, 8, 6, 2, 3, 2, 2, 1, 1, 0, 1, 2},
      {1, 2, 5, 5, 2, 1, 1, 1, 1, 1, 0, 0, 1, 1},
      {2, 6, 6, 5, 4, 2, 1, 1, 1, 1, 0, 0, 1, 1},
      {2, 2, 11, 9, 3, 1, 5, 3, 3, 2, 2, 1, 1, 1},
      {2, 4, 13, 11, 6, 2, 3, 3, 1, 1, 1, 1, 1, 1}, /* WINOGRAD: rows of four tiles and a rest */
      {2, 5, 9, 11, 5, 5, 3, 3, 2, 2, 1, 1, 1, 1},  /* depthwise, stride 2 */
      {1, 6, 7, 10, 12, 3, 3, 3, 1, 1, 1, 1, 1, 1}, /* thin groups, channel multiplier 2 */
  };
  const ct_lowering types[] = {CT_LOWER_TYPE1,    CT_LOWER_TYPE2,  CT_LOWER_TYPE3,    CT_LOWER_POINTWISE,
                               CT_LOWER_WINOGRAD, CT_LOWER_DIRECT, CT_LOWER_WINOGRAD4};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const int *s = shapes[si];
    ct_conv_geom g = {s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11], s[12], s[13], 0, 0};
    CHECK(ct_conv_geom_finish(&g), "shape %zu fits", si);
    const int nb = g.N;
    const size_t nx = (size_t)g.N * g.C * g.H * g.W, ny = (size_t)g.N * g.K * g.OH * g.OW;
    const size_t nw = (size_t)g.K * (g.C / g.G) * g.kh * g.kw;
    float *x = gauss(nx), *w = gauss(nw), *b = gauss((size_t)g.K), *dy = gauss(ny);
    double *ry = dbuf(ny), *rdx = dbuf(nx), *rdw = dbuf(nw), *rdb = dbuf((size_t)g.K);
    conv_ref(&g, x, w, b, dy, ry, rdx, rdw, rdb);
    float *dX = up(D, x, nx), *dW = up(D, w, nw), *dB = up(D, b, (size_t)g.K), *dDY = up(D, dy, ny);
    float *zeros = hbuf((nx > nw ? nx : nw) * sizeof(float));
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
      const ct_lowering t = types[ti];
      if (t == CT_LOWER_POINTWISE && !ct_conv_is_pointwise(&g)) continue;
      const bool four = t == CT_LOWER_WINOGRAD4; /* blocked only: no staged steps to check */
      if ((t == CT_LOWER_WINOGRAD || four) && !ct_lower_wino_applies(&g)) continue;
      /* F(4x4, 3x3) rounds more (test_wino4.c): its tolerance grows with the sums' length */
      const double tol = four ? WINO4_TOL * sqrt(9.0 * (g.C / g.G)) : 1e-5;
      const double tol_dx = four ? WINO4_TOL * sqrt(9.0 * (g.K / g.G)) : 1e-5;
      const double tol_dw = four ? WINO4_TOL * sqrt((double)g.N * g.OH * g.OW) : 1e-5;
      char what[96];
      snprintf(what, sizeof what, "shape %zu %s", si, ct_lowering_name(t));
      const size_t nws = ct_lower_workspace(&g, t, nb) + 1;
      const ct_lower_layout lay = ct_lower_layout_of(&g, t, nb);
      float *ws = gauss(nws), *ws2 = gauss(nws), *dWS = up(D, ws, nws), *dWS2 = up(D, ws2, nws);
      if (t == CT_LOWER_DIRECT) {
        /* no steps: the three entries against the loops, then through the dispatch below */
        float *y = gauss(ny), *dx = gauss(nx), *dwv = hbuf(nw * sizeof(float)), *dbv = hbuf((size_t)g.K * sizeof(float));
        float *dY = up(D, y, ny), *dDX = up(D, dx, nx), *dDW = up(D, zeros, nw), *dDB = up(D, zeros, (size_t)g.K);
        char m[200];
        RUN(conv_direct_forward, &g, nb, dX, dW, dB, dY, dWS);
        snprintf(m, sizeof m, "%s: conv_direct_forward", what);
        fetch(D, y, dY, ny, "%s", m);
        same(y, ry, ny, 1e-5, m);
        RUN(conv_direct_backward_data, &g, nb, dW, dDY, dDX, dWS);
        snprintf(m, sizeof m, "%s: conv_direct_backward_data", what);
        fetch(D, dx, dDX, nx, "%s", m);
        same(dx, rdx, nx, 1e-5, m);
        RUN(conv_direct_backward_weight, &g, nb, dX, dDY, dDW, dDB, dWS);
        snprintf(m, sizeof m, "%s: conv_direct_backward_weight's dw", what);
        fetch(D, dwv, dDW, nw, "%s", m);
        same(dwv, rdw, nw, 1e-5, m);
        snprintf(m, sizeof m, "%s: conv_direct_backward_weight's db", what);
        fetch(D, dbv, dDB, (size_t)g.K, "%s", m);
        same(dbv, rdb, (size_t)g.K, 1e-5, m);
      }
      if (t != CT_LOWER_POINTWISE && t != CT_LOWER_DIRECT && !four) {
        /* lower's data part against lower_grad's dx: <lower(x), Dr> = <x, lower_grad(Dr)> */
        size_t ndata = t == CT_LOWER_TYPE1 ? lay.product : lay.kernel;
        RUN(conv_lower, &g, t, nb, dX, dW, dWS);
        fetch(D, ws, dWS, nws, "%s: conv_lower's workspace", what);
        float *dr = gauss(ndata), *back = gauss(nx), *dBack = up(D, back, nx);
        const bool wino = t == CT_LOWER_WINOGRAD;
        const ct_wino_strides st = wino ? ct_lower_wino_strides(&g, nb) : (ct_wino_strides){0};
        if (wino) wino_mask(dr, ndata, st.sV, (size_t)g.C * st.Tp, st.Tp, st.T);
        put(D, dWS2 + lay.data, dr, ndata);
        RUN(conv_lower_grad, &g, t, nb, dWS2, dBack, NULL);
        fetch(D, back, dBack, nx, "%s: conv_lower_grad's dx", what);
        CHECK_CLOSE(dotf(ws + lay.data, dr, ndata), dotf(x, back, nx), 1e-4, 1e-4, "%s: lower_grad is lower's adjoint",
                    what);
        if (t != CT_LOWER_TYPE1) {
          /* the lowered kernel against lower_grad's dw (dw accumulates onto zeros) */
          size_t nk = lay.product - lay.kernel;
          float *kr = gauss(nk), *dwb = hbuf(nw * sizeof(float)), *dDWB = up(D, zeros, nw);
          if (wino) wino_mask(kr, nk, st.sU, (size_t)g.K * (g.C / g.G), 0, 0);
          put(D, dWS2 + lay.kernel_grad, kr, nk);
          RUN(conv_lower_grad, &g, t, nb, dWS2, NULL, dDWB);
          fetch(D, dwb, dDWB, nw, "%s: conv_lower_grad's dw", what);
          CHECK_CLOSE(dotf(ws + lay.kernel, kr, nk), dotf(w, dwb, nw), 1e-4, 1e-4,
                      "%s: the kernel's lowering and its adjoint", what);
        }
        /* lift (no bias) against lift_grad: <lift(Pr), dy> = <Pr, lift_grad(dy)> */
        size_t nprod = (t == CT_LOWER_TYPE1     ? (size_t)g.K * nb * g.OH * g.OW
                        : t == CT_LOWER_TYPE2   ? (size_t)g.kh * g.K * nb * g.H * g.OW
                        : t == CT_LOWER_WINOGRAD ? 16 * st.sM
                                                 : (size_t)g.kh * g.kw * g.K * nb * g.H * g.W);
        float *pr = gauss(nprod), *yl = gauss(ny), *dYL = up(D, yl, ny);
        if (wino) wino_mask(pr, nprod, st.sM, (size_t)g.K * st.Tp, st.Tp, st.T);
        put(D, dWS + lay.product, pr, nprod);
        RUN(conv_lift, &g, t, nb, dWS, NULL, dYL);
        RUN(conv_lift_grad, &g, t, nb, dDY, dWS2);
        fetch(D, yl, dYL, ny, "%s: conv_lift", what);
        fetch(D, ws2, dWS2, nws, "%s: conv_lift_grad's workspace", what);
        CHECK_CLOSE(dotf(yl, dy, ny), dotf(pr, ws2 + lay.product, nprod), 1e-4, 1e-4, "%s: lift_grad is lift's adjoint",
                    what);
        /* with a bias, lift adds it per output channel */
        float *yb = gauss(ny), *dYB = up(D, yb, ny);
        RUN(conv_lift, &g, t, nb, dWS, dB, dYB);
        fetch(D, yb, dYB, ny, "%s: conv_lift with a bias", what);
        double worst = 0;
        for (size_t i = 0; i < ny; i++) {
          int k = (int)(i / ((size_t)g.OH * g.OW) % (size_t)g.K);
          worst = fmax(worst, fabs((double)yb[i] - yl[i] - b[k]));
        }
        CHECK(worst < 1e-5, "%s: lift adds the bias (off by %g)", what, worst);
      }
      /* bias_grad (type 1 reads dy as lift_grad laid it out) */
      float *dbv = hbuf((size_t)g.K * sizeof(float)), *dDBV = up(D, zeros, (size_t)g.K);
      char m[128];
      if (t != CT_LOWER_DIRECT && !four) { /* DIRECT's bias gradient is conv_direct_backward_weight's */
        if (t != CT_LOWER_POINTWISE) RUN(conv_lift_grad, &g, t, nb, dDY, dWS);
        RUN(conv_bias_grad, &g, t, nb, dDY, dWS, dDBV);
        snprintf(m, sizeof m, "%s: conv_bias_grad", what);
        fetch(D, dbv, dDBV, (size_t)g.K, "%s", m);
        same(dbv, rdb, (size_t)g.K, 1e-5, m);
      }
      /* the whole convolution on the driver; WINOGRAD blocked (conv_wino_block) in blocks of the
       * default size and of one row of tiles, then staged (a copy of the driver without that
       * entry, as the CUDA driver is); WINOGRAD4 likewise, where the copy without
       * conv_wino4_block refuses it, and a backend without that (optional) entry runs none */
      const bool wino = t == CT_LOWER_WINOGRAD || four;
      if (four && !wino4_everywhere()) {
        COVER(conv_wino4_block); /* optional: nothing to run (every pass skips it, to stay in step) */
        continue;
      }
      for (int variant = 0; variant < (wino ? 3 : 1); variant++) {
        ct_driver_ops staged_ops = *D->ops;
        ct_driver staged = *D;
        staged_ops.conv_wino_block = NULL;
        staged_ops.conv_wino4_block = NULL;
        staged.ops = &staged_ops;
        const ct_driver *DV = variant == 2 ? &staged : D;
        if (variant == 1) ct_lower_wino_settings(1, true);
        if (t == CT_LOWER_WINOGRAD && variant < 2) COVER(conv_wino_block);
        if (four && variant < 2) COVER(conv_wino4_block);
        static const char *const vname[] = {"", " (blocks of one row)", " (staged)"};
        float *y = gauss(ny), *dx = gauss(nx), *dwv = hbuf(nw * sizeof(float));
        float *dY = up(D, y, ny), *dDX = up(D, dx, nx), *dDW = up(D, zeros, nw);
        if (four && variant == 2) {
          CHECK(ct_lower_forward_on(DV, &g, t, nb, dX, dW, dB, dY, dWS) == CT_EUNSUPPORTED &&
                    ct_lower_backward_on(DV, &g, t, nb, dX, dW, dDY, dDX, dDW, NULL, dWS, false) == CT_EUNSUPPORTED,
                "%s: refused on a driver without conv_wino4_block", what);
          continue;
        }
        put(D, dDBV, zeros, (size_t)g.K);
        OK(ct_lower_forward_on(DV, &g, t, nb, dX, dW, dB, dY, dWS));
        snprintf(m, sizeof m, "%s: forward%s", what, vname[variant]);
        fetch(D, y, dY, ny, "%s", m);
        same(y, ry, ny, tol, m);
        OK(ct_lower_backward_on(DV, &g, t, nb, dX, dW, dDY, dDX, dDW, dDBV, dWS, true));
        snprintf(m, sizeof m, "%s: backward dx%s", what, vname[variant]);
        fetch(D, dx, dDX, nx, "%s", m);
        same(dx, rdx, nx, tol_dx, m);
        snprintf(m, sizeof m, "%s: backward dw%s", what, vname[variant]);
        fetch(D, dwv, dDW, nw, "%s", m);
        same(dwv, rdw, nw, tol_dw, m);
        snprintf(m, sizeof m, "%s: backward db%s", what, vname[variant]);
        fetch(D, dbv, dDBV, (size_t)g.K, "%s", m);
        same(dbv, rdb, (size_t)g.K, 1e-5, m);
        ct_lower_wino_settings(0, true);
      }
    }
  }
}

/* ================================================================ pooling */

/* Caffe's output size (CEIL or FLOOR; with padding the last window must start inside image + pad) */
static int pool_out(int in, int k, int pad, int stride, bool ceil_mode) {
  float span = (float)(in + 2 * pad - k) / (float)stride;
  int out = (int)(ceil_mode ? ceilf(span) : floorf(span)) + 1;
  if (pad && (out - 1) * stride >= in + pad) out--;
  return out;
}

/* The scalar loops the driver had before its kernels split planes into interior and border, in
 * float and in the same order: MAX and AVE must match them bit for bit (argmax included). */
static void pool_scalar(const ct_pool_geom *g, int planes, const float *x, const float *dy, float *y, int *am,
                        float *dx) {
  const int H = g->H, W = g->W;
  memset(dx, 0, (size_t)planes * H * W * sizeof(float));
  for (int p = 0; p < planes; p++)
    for (int oh = 0; oh < g->OH; oh++)
      for (int ow = 0; ow < g->OW; ow++) {
        int h0 = oh * g->sh - g->ph, w0 = ow * g->sw - g->pw;
        int h1 = h0 + g->kh < H + g->ph ? h0 + g->kh : H + g->ph, w1 = w0 + g->kw < W + g->pw ? w0 + g->kw : W + g->pw;
        const int size = (h1 - h0) * (w1 - w0);
        h0 = h0 < 0 ? 0 : h0, w0 = w0 < 0 ? 0 : w0, h1 = h1 > H ? H : h1, w1 = w1 > W ? W : w1;
        const float *xp = x + (size_t)p * H * W;
        float *dxp = dx + (size_t)p * H * W;
        const size_t o = ((size_t)p * g->OH + oh) * g->OW + ow;
        if (g->method == CT_POOL_MAX) {
          float best = -FLT_MAX;
          int arg = -1;
          for (int h = h0; h < h1; h++)
            for (int c = w0; c < w1; c++)
              if (xp[h * W + c] > best) best = xp[h * W + c], arg = h * W + c;
          y[o] = arg >= 0 ? best : 0.0f;
          am[o] = arg;
          if (arg >= 0) dxp[arg] += dy[o];
        } else {
          float s = 0.0f;
          for (int h = h0; h < h1; h++)
            for (int c = w0; c < w1; c++) s += xp[h * W + c];
          const bool any = h0 < h1 && w0 < w1;
          y[o] = any ? s / (float)size : 0.0f;
          if (!any) continue;
          const float gr = dy[o] / (float)size;
          for (int h = h0; h < h1; h++)
            for (int c = w0; c < w1; c++) dxp[h * W + c] += gr;
        }
      }
}

static void test_pooling(const ct_driver *D) {
  /* H, W, kh, kw, sh, sw, ph, pw, ceil: shapes whose planes split into interior and border every
   * way: odd sizes, padding, stride > kernel (CEIL leaving a last window partly or wholly past
   * the image), kernel == input, interiors narrower than 4 and not a multiple of 4, the
   * specialised 2x2/2 and 3x3/2 and the generic kernels with strides 1, 2 and 3 */
  static const int shapes[][9] = {
      {7, 6, 3, 2, 2, 1, 1, 1, 1},    {24, 24, 2, 2, 2, 2, 0, 0, 1},  {8, 8, 2, 2, 2, 2, 0, 0, 1},
      {55, 55, 3, 3, 2, 2, 0, 0, 1},  {13, 13, 3, 3, 2, 2, 0, 0, 1},  {13, 17, 3, 3, 2, 2, 1, 1, 1},
      {14, 15, 3, 3, 2, 2, 1, 1, 0},  {11, 10, 2, 2, 3, 3, 0, 0, 1},  {8, 8, 2, 2, 4, 4, 0, 0, 1},
      {9, 23, 2, 2, 2, 2, 0, 0, 1},   {5, 7, 5, 7, 1, 1, 0, 0, 1},    {6, 9, 5, 7, 1, 1, 0, 0, 1},
      {20, 30, 3, 3, 1, 1, 1, 1, 1},  {12, 19, 4, 4, 2, 2, 1, 2, 1},  {16, 25, 3, 3, 3, 3, 0, 0, 1},
      {10, 31, 3, 5, 2, 3, 2, 1, 1},  {3, 40, 3, 3, 1, 2, 1, 0, 0},   {17, 9, 2, 3, 1, 1, 0, 2, 1},
      {6, 6, 5, 5, 1, 1, 4, 4, 1},    {30, 12, 7, 1, 3, 1, 3, 0, 1},
  };
  const int nshapes = (int)(sizeof shapes / sizeof shapes[0]), planes = 3;
  for (int si = 0; si < nshapes; si++) {
    const int *sh = shapes[si];
    const int H = sh[0], W = sh[1];
    for (int m = 0; m < 3; m++) {
      const bool stochastic = m == CT_POOL_STOCHASTIC;
      if (stochastic && (sh[6] || sh[7])) continue; /* no padding for STOCHASTIC */
      ct_pool_geom g = {(ct_pool_method)m, H, W, 0, 0, sh[2], sh[3], sh[4], sh[5], sh[6], sh[7]};
      g.OH = pool_out(H, g.kh, g.ph, g.sh, sh[8]);
      g.OW = pool_out(W, g.kw, g.pw, g.sw, sh[8]);
      const size_t nin = (size_t)planes * H * W, nout = (size_t)planes * g.OH * g.OW;
      float *x = stochastic ? uniform(nin, 0.1f, 1.0f) : gauss(nin);
      if (m == CT_POOL_MAX && si % 2) /* ties: few distinct values, and zeros of both signs */
        for (size_t i = 0; i < nin; i++) x[i] = i % 7 == 3 ? -0.0f : floorf(x[i] * 1.5f);
      float *y = gauss(nout), *mask = gauss(nout), *dy = gauss(nout), *dx = gauss(nin);
      int *am = hbuf(nout * sizeof(int)), *sam = hbuf(nout * sizeof(int)), *ram = hbuf(nout * sizeof(int));
      float *sy = gauss(nout), *sdx = gauss(nin);
      double *ry = dbuf(nout), *rdx = dbuf(nin);
      for (int p = 0; p < planes; p++)
        for (int oh = 0; oh < g.OH; oh++)
          for (int ow = 0; ow < g.OW; ow++) {
            int h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
            int h1 = h0 + g.kh < H + g.ph ? h0 + g.kh : H + g.ph, w1 = w0 + g.kw < W + g.pw ? w0 + g.kw : W + g.pw;
            int size = (h1 - h0) * (w1 - w0);
            h0 = h0 < 0 ? 0 : h0, w0 = w0 < 0 ? 0 : w0, h1 = h1 > H ? H : h1, w1 = w1 > W ? W : w1;
            const float *xp = x + (size_t)p * H * W;
            size_t o = ((size_t)p * g.OH + oh) * g.OW + ow;
            double best = -INFINITY, sum = 0, sq = 0;
            int arg = -1;
            for (int h = h0; h < h1; h++)
              for (int c = w0; c < w1; c++) {
                double v = xp[h * W + c];
                if (v > best) best = v, arg = h * W + c;
                sum += v, sq += v * v;
              }
            double *dxp = rdx + (size_t)p * H * W;
            ram[o] = arg;
            if (m == CT_POOL_MAX) {
              ry[o] = arg >= 0 ? best : 0;
              if (arg >= 0) dxp[arg] += dy[o];
            } else if (m == CT_POOL_AVE) {
              ry[o] = h0 < h1 && w0 < w1 ? sum / size : 0;
              for (int h = h0; h < h1; h++)
                for (int c = w0; c < w1; c++) dxp[h * W + c] += dy[o] / size;
            } else {
              ry[o] = h0 < h1 && w0 < w1 ? sq / sum : 0; /* a window wholly past the image: 0 */
              for (int h = h0; h < h1; h++)
                for (int c = w0; c < w1; c++) dxp[h * W + c] += dy[o] * (2 * xp[h * W + c] * sum - sq) / (sum * sum);
            }
          }
      const char *name = m == 0 ? "MAX" : m == 1 ? "AVE" : "STOCHASTIC";
      char what[128];
      snprintf(what, sizeof what, "pool %s %dx%d k%dx%d s%dx%d p%dx%d %s", name, H, W, g.kh, g.kw, g.sh, g.sw, g.ph,
               g.pw, sh[8] ? "CEIL" : "FLOOR");
      float *dX = up(D, x, nin), *dY = up(D, y, nout), *dMask = up(D, mask, nout), *dDX = up(D, dx, nin);
      int *dAM = up_bytes(D, am, nout * sizeof(int));
      RUN(pool_forward, &g, (size_t)planes, dX, dY, dAM, m == CT_POOL_MAX ? dMask : NULL);
      RUN(pool_backward, &g, (size_t)planes, dX, up(D, dy, nout), dAM, dDX);
      fetch(D, y, dY, nout, "%s forward", what);
      fetch(D, dx, dDX, nin, "%s backward", what);
      same(y, ry, nout, 1e-5, what);
      same(dx, rdx, nin, 1e-5, what);
      if (m == CT_POOL_MAX) {
        fetch_bytes(D, am, dAM, nout * sizeof(int), "%s argmax", what);
        fetch(D, mask, dMask, nout, "%s mask", what);
        bool ok = true;
        for (size_t o = 0; o < nout; o++) ok &= mask[o] == (float)am[o];
        CHECK(ok, "%s on %s: the mask holds the argmax", what, D->name);
        CHECK(memcmp(am, ram, nout * sizeof(int)) == 0, "%s on %s: the first maximum wins", what, D->name);
      }
      if (!stochastic) {
        pool_scalar(&g, planes, x, dy, sy, sam, sdx);
        CHECK(memcmp(y, sy, nout * sizeof(float)) == 0, "%s on %s: forward bit for bit", what, D->name);
        CHECK(memcmp(dx, sdx, nin * sizeof(float)) == 0, "%s on %s: backward bit for bit", what, D->name);
      }
    }
  }
  /* special values: NaNs never win, and a window of nothing above -FLT_MAX has no argmax */
  const int H = 6, W = 12;
  ct_pool_geom g = {CT_POOL_MAX, H, W, 3, 6, 2, 2, 2, 2, 0, 0};
  float x[6 * 12], y[18], dy[18], dx[6 * 12], sy[18], sdx[6 * 12];
  int am[18], sam[18];
  for (int i = 0; i < H * W; i++) x[i] = (float)((i * 5) % 11) - 5.0f;
  x[0] = x[1] = x[W] = NAN, x[W + 1] = 2.0f;       /* window 0: the one number wins */
  x[2] = x[3] = x[W + 2] = x[W + 3] = NAN;         /* window 1: all NaN */
  x[4] = x[5] = -INFINITY, x[W + 4] = -FLT_MAX;    /* window 2: nothing above -FLT_MAX */
  x[W + 5] = -INFINITY;
  x[6] = -0.0f, x[7] = 0.0f, x[W + 6] = 0.0f, x[W + 7] = -1.0f; /* window 3: the -0 first */
  for (int o = 0; o < 18; o++) dy[o] = (float)o + 1.0f;
  float *dX = up(D, x, 6 * 12), *dY = dalloc(D, sizeof y), *dDX = dalloc(D, sizeof dx);
  int *dAM = dalloc(D, sizeof am);
  RUN(pool_forward, &g, 1, dX, dY, dAM, NULL);
  RUN(pool_backward, &g, 1, dX, up(D, dy, 18), dAM, dDX);
  fetch(D, y, dY, 18, "pool MAX special values forward");
  fetch(D, dx, dDX, 6 * 12, "pool MAX special values backward");
  fetch_bytes(D, am, dAM, sizeof am, "pool MAX special values argmax");
  pool_scalar(&g, 1, x, dy, sy, sam, sdx);
  CHECK(am[0] == W + 1 && y[0] == 2.0f, "pool MAX on %s: NaN never wins (%d)", D->name, am[0]);
  CHECK(am[1] == -1 && y[1] == 0.0f && am[2] == -1 && y[2] == 0.0f, "pool MAX on %s: no argmax (%d %d)", D->name,
        am[1], am[2]);
  CHECK(am[3] == 6 && signbit(y[3]), "pool MAX on %s: of equal zeros the first wins (%d)", D->name, am[3]);
  CHECK(memcmp(y, sy, sizeof y) == 0 && memcmp(am, sam, sizeof am) == 0 && memcmp(dx, sdx, sizeof dx) == 0,
        "pool MAX special values bit for bit on %s", D->name);
}

/* ================================================================ LRN */

/* The scalar loops the driver had before its kernels were fused, in float and in the same order:
 * both regions must match them bit for bit. */
static void lrn_box(const float *in, float *out, float *tmp, int H, int W, int r, float scale, float shift) {
  for (int h = 0; h < H; h++)
    for (int w = 0; w < W; w++) {
      float s = 0.0f;
      for (int c = w - r; c <= w + r; c++)
        if (c >= 0 && c < W) s += in[h * W + c];
      tmp[h * W + w] = s;
    }
  for (int h = 0; h < H; h++)
    for (int w = 0; w < W; w++) {
      float o = 0.0f;
      for (int hh = h - r; hh <= h + r; hh++)
        if (hh >= 0 && hh < H) o += tmp[hh * W + w];
      out[h * W + w] = shift + scale * o;
    }
}

static void lrn_channels(const float *in, float *out, int C, size_t plane, int r, float scale, float shift) {
  for (int c = 0; c < C; c++)
    for (size_t i = 0; i < plane; i++) {
      float o = 0.0f;
      for (int cc = c - r; cc <= c + r; cc++)
        if (cc >= 0 && cc < C) o += in[cc * plane + i];
      out[c * plane + i] = shift + scale * o;
    }
}

static void lrn_scalar(const ct_lrn_geom *g, int nimg, const float *x, const float *dy, float *y, float *s, float *sp,
                       float *dx) {
  const size_t plane = (size_t)g->H * g->W, img = plane * g->C, n = img * nimg;
  const int r = (g->size - 1) / 2;
  float *sq = malloc(n * sizeof(float)), *t = malloc(n * sizeof(float)), *box = malloc(plane * sizeof(float));
  for (size_t i = 0; i < n; i++) sq[i] = x[i] * x[i];
  for (int b = 0; b < nimg; b++) {
    if (g->across)
      lrn_channels(sq + b * img, s + b * img, g->C, plane, r, g->alpha / (float)g->size, g->k);
    else
      for (int c = 0; c < g->C; c++)
        lrn_box(sq + b * img + c * plane, s + b * img + c * plane, box, g->H, g->W, r,
                g->alpha / (float)(g->size * g->size), 1.0f);
  }
  for (size_t i = 0; i < n; i++) {
    if (g->beta == 0.75f) {
      const float q = sqrtf(s[i]);
      sp[i] = 1.0f / (q * sqrtf(q));
    } else if (g->beta == 0.5f) {
      sp[i] = 1.0f / sqrtf(s[i]);
    } else if (g->beta == 1.0f) {
      sp[i] = 1.0f / s[i];
    } else {
      sp[i] = powf(s[i], -g->beta);
    }
    y[i] = x[i] * sp[i];
  }
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] / s[i];
  for (int b = 0; b < nimg; b++) {
    if (g->across)
      lrn_channels(dx + b * img, t + b * img, g->C, plane, r, 1.0f, 0.0f);
    else
      for (int c = 0; c < g->C; c++)
        lrn_box(dx + b * img + c * plane, t + b * img + c * plane, box, g->H, g->W, r, 1.0f, 0.0f);
  }
  const float ratio = 2.0f * g->alpha * g->beta / (float)(g->across ? g->size : g->size * g->size);
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * sp[i] - ratio * x[i] * t[i];
  free(sq), free(t), free(box);
}

static void test_lrn(const ct_driver *D) {
  /* C, H, W, size, beta: planes of a multiple of 4 elements and not, windows wider than C, one
   * channel, and each exponent with its own kernel (0.75, 0.5, 1) or powf */
  static const float cases[][5] = {{5, 4, 6, 3, 0.75f}, {7, 3, 5, 5, 0.75f}, {3, 2, 3, 7, 0.75f}, {1, 5, 5, 3, 0.75f},
                                   {6, 3, 3, 5, 0.5f},  {4, 5, 3, 3, 1.0f},  {9, 3, 7, 5, 0.6f}};
  const int ncases = (int)(sizeof cases / sizeof cases[0]);
  for (int ci = 0; ci < 2 * ncases; ci++) {
    const int across = ci % 2, C = (int)cases[ci / 2][0], H = (int)cases[ci / 2][1], W = (int)cases[ci / 2][2];
    const int nimg = 2;
    const size_t plane = (size_t)H * W, img = plane * C, n = img * nimg;
    ct_lrn_geom g = {across, (int)cases[ci / 2][3], 0.3f, cases[ci / 2][4], 1.5f, C, H, W};
    float *x = gauss(n), *y = gauss(n), *s = gauss(n), *sp = gauss(n), *dy = gauss(n), *dx = gauss(n);
    float *tmp = gauss(img);
    double *rs = dbuf(n), *ry = dbuf(n), *rdx = dbuf(n);
    const int r = (g.size - 1) / 2;
    const double a = across ? g.alpha / g.size : g.alpha / (g.size * g.size), k = across ? g.k : 1.0;
    /* the window of element (b, c, h, w): the same for its sum and for the gradient's */
#define WINDOW(body)                                                                        \
  for (int cc = across ? c - r : c; cc <= (across ? c + r : c); cc++)                       \
    for (int hh = across ? h : h - r; hh <= (across ? h : h + r); hh++)                     \
      for (int ww = across ? w : w - r; ww <= (across ? w : w + r); ww++) {                 \
        if (cc < 0 || cc >= C || hh < 0 || hh >= H || ww < 0 || ww >= W) continue;          \
        size_t j = (size_t)bi * img + (size_t)cc * plane + (size_t)hh * W + (size_t)ww;     \
        body;                                                                               \
      }
    for (int bi = 0; bi < nimg; bi++)
      for (int c = 0; c < C; c++)
        for (int h = 0; h < H; h++)
          for (int w = 0; w < W; w++) {
            size_t i = (size_t)bi * img + (size_t)c * plane + (size_t)h * W + (size_t)w;
            double sum = 0;
            WINDOW(sum += (double)x[j] * x[j]);
            rs[i] = k + a * sum;
            ry[i] = x[i] * pow(rs[i], -g.beta);
          }
    for (int bi = 0; bi < nimg; bi++)
      for (int c = 0; c < C; c++)
        for (int h = 0; h < H; h++)
          for (int w = 0; w < W; w++) {
            size_t i = (size_t)bi * img + (size_t)c * plane + (size_t)h * W + (size_t)w;
            double sum = 0;
            WINDOW(sum += dy[j] * ry[j] / rs[j]);
            rdx[i] = dy[i] * pow(rs[i], -g.beta) - 2 * a * g.beta * x[i] * sum;
          }
#undef WINDOW
    char what[96];
    snprintf(what, sizeof what, "lrn %s %dx%dx%d size %d beta %g", across ? "ACROSS" : "WITHIN", C, H, W, g.size,
             (double)g.beta);
    float *dX = up(D, x, n), *dY = up(D, y, n), *dS = up(D, s, n), *dSP = up(D, sp, n), *dTmp = up(D, tmp, img);
    float *dDX = up(D, dx, n);
    RUN(lrn_forward, &g, (size_t)nimg, dX, dY, dS, dSP, dTmp);
    fetch(D, y, dY, n, "%s: y", what);
    fetch(D, s, dS, n, "%s: scale", what);
    fetch(D, sp, dSP, n, "%s: scale^-beta", what);
    same(s, rs, n, 1e-5, what);
    same(y, ry, n, 1e-5, what);
    bool ok = true;
    for (size_t i = 0; i < n; i++) ok &= fabs(sp[i] - pow(rs[i], -g.beta)) <= 1e-5 * pow(rs[i], -g.beta);
    CHECK(ok, "%s on %s: s^-beta", what, D->name);
    RUN(lrn_backward, &g, (size_t)nimg, dX, dY, up(D, dy, n), dS, dSP, dDX, dTmp);
    fetch(D, dx, dDX, n, "%s: dx", what);
    same(dx, rdx, n, 1e-4, what);
    float *sy = hbuf(n * sizeof(float)), *ss = hbuf(n * sizeof(float)), *ssp = hbuf(n * sizeof(float));
    float *sdx = hbuf(n * sizeof(float));
    lrn_scalar(&g, nimg, x, dy, sy, ss, ssp, sdx);
    CHECK(memcmp(s, ss, n * sizeof(float)) == 0 && memcmp(sp, ssp, n * sizeof(float)) == 0 &&
              memcmp(y, sy, n * sizeof(float)) == 0,
          "%s on %s: forward bit for bit", what, D->name);
    CHECK(memcmp(dx, sdx, n * sizeof(float)) == 0, "%s on %s: backward bit for bit", what, D->name);
  }
}

/* ================================================================ softmax, losses, evaluation */

static void softmax_ref(size_t outer, size_t C, size_t inner, const float *x, double *y) {
  for (size_t o = 0; o < outer; o++)
    for (size_t i = 0; i < inner; i++) {
      double mx = -INFINITY, s = 0;
      for (size_t c = 0; c < C; c++) mx = fmax(mx, x[(o * C + c) * inner + i]);
      for (size_t c = 0; c < C; c++) s += exp(x[(o * C + c) * inner + i] - mx);
      for (size_t c = 0; c < C; c++) y[(o * C + c) * inner + i] = exp(x[(o * C + c) * inner + i] - mx) / s;
    }
}

static void test_softmax(const ct_driver *D) {
  const size_t shapes[][3] = {{4, 7, 1}, {3, 5, 6}};
  for (int si = 0; si < 2; si++) {
    const size_t O = shapes[si][0], C = shapes[si][1], I = shapes[si][2], n = O * C * I;
    float *x = gauss(n), *y = gauss(n), *dy = gauss(n), *dx = gauss(n), *scratch = gauss(I);
    for (size_t i = 0; i < n; i++) x[i] *= 10; /* large logits: the maximum must be subtracted */
    double *ry = dbuf(n), *rdx = dbuf(n);
    softmax_ref(O, C, I, x, ry);
    for (size_t o = 0; o < O; o++)
      for (size_t i = 0; i < I; i++) {
        double d = 0;
        for (size_t c = 0; c < C; c++) d += dy[(o * C + c) * I + i] * ry[(o * C + c) * I + i];
        for (size_t c = 0; c < C; c++) {
          size_t k = (o * C + c) * I + i;
          rdx[k] = ry[k] * (dy[k] - d);
        }
      }
    float *dY = up(D, y, n), *dDX = up(D, dx, n), *dScratch = up(D, scratch, I);
    RUN(softmax_forward, O, C, I, up(D, x, n), dY, dScratch);
    fetch(D, y, dY, n, "softmax forward shape %d", si);
    same(y, ry, n, 1e-5, "softmax forward");
    RUN(softmax_backward, O, C, I, dY, up(D, dy, n), dDX, dScratch);
    fetch(D, dx, dDX, n, "softmax backward shape %d", si);
    same(dx, rdx, n, 1e-5, "softmax backward");
    /* the loss: labels in [0, C), one ignored */
    float *lab = hbuf(O * I * sizeof(float));
    for (size_t i = 0; i < O * I; i++) lab[i] = (float)ct_rng_below(&R, C);
    lab[1] = 2;
    double loss = 0, rloss = 0;
    size_t valid = 0, rvalid = 0;
    for (size_t o = 0; o < O; o++)
      for (size_t i = 0; i < I; i++) {
        int l = (int)lab[o * I + i];
        for (size_t c = 0; c < C; c++) {
          size_t k = (o * C + c) * I + i;
          rdx[k] = l == 2 ? 0 : 0.5 * (ry[k] - ((int)c == l));
        }
        if (l == 2) continue;
        rloss -= log(fmax(ry[(o * C + (size_t)l) * I + i], FLT_MIN));
        rvalid++;
      }
    ptrdiff_t bad = 0;
    float *dLab = up(D, lab, O * I);
    RUN(softmax_loss_forward, O, C, I, dY, dLab, true, 2, &loss, &valid, &bad);
    agree_f64(D, &loss, "softmax loss shape %d", si);
    agree(D, &valid, sizeof valid, "softmax loss shape %d: valid", si);
    agree(D, &bad, sizeof bad, "softmax loss shape %d: bad", si);
    CHECK(bad == -1, "softmax loss on %s: every label valid (%td)", D->name, bad);
    CHECK_CLOSE(loss, rloss, 1e-5, 1e-6, "softmax loss on %s", D->name);
    CHECK(valid == rvalid, "softmax loss on %s counted %zu of %zu", D->name, valid, rvalid);
    RUN(softmax_loss_backward, O, C, I, dY, dLab, true, 2, 0.5f, dDX);
    fetch(D, dx, dDX, n, "softmax loss backward shape %d", si);
    same(dx, rdx, n, 1e-5, "softmax loss backward");
    lab[3] = (float)C;
    put(D, dLab, lab, O * I);
    RUN(softmax_loss_forward, O, C, I, dY, dLab, false, 0, &loss, &valid, &bad);
    agree(D, &bad, sizeof bad, "softmax loss shape %d: label C", si);
    CHECK(bad == 3, "label C is refused on %s (%td)", D->name, bad);
    lab[3] = NAN;
    put(D, dLab, lab, O * I);
    RUN(softmax_loss_forward, O, C, I, dY, dLab, false, 0, &loss, &valid, &bad);
    agree(D, &bad, sizeof bad, "softmax loss shape %d: NaN label", si);
    CHECK(bad == 3, "NaN label is refused on %s (%td)", D->name, bad);
  }
}

static void test_sigmoid_xent(const ct_driver *D) {
  const size_t n = 211;
  float *x = gauss(n), *t = uniform(n, 0, 1), *sig = gauss(n), *dx = gauss(n);
  for (size_t i = 0; i < n; i++) x[i] *= 8;
  t[5] = -1; /* ignored */
  double loss = 0, rloss = 0;
  size_t valid = 0, rvalid = 0;
  double *rsig = dbuf(n), *rdx = dbuf(n);
  for (size_t i = 0; i < n; i++) {
    double s = 1 / (1 + exp(-(double)x[i]));
    rsig[i] = s;
    rdx[i] = (int)t[i] == -1 ? 0 : 0.25 * (s - t[i]);
    if ((int)t[i] == -1) continue;
    /* log s and log(1 - s) in a form that keeps its digits for large |x| */
    double log_s = -log1p(exp(-fabs((double)x[i]))) + fmin((double)x[i], 0.0);
    double log_1s = log_s - x[i];
    rloss -= t[i] * log_s + (1 - t[i]) * log_1s;
    rvalid++;
  }
  float *dT = up(D, t, n), *dSig = up(D, sig, n), *dDX = up(D, dx, n);
  RUN(sigmoid_xent_forward, n, up(D, x, n), dT, true, -1, dSig, &loss, &valid);
  fetch(D, sig, dSig, n, "sigmoid cross-entropy: sigmoid");
  agree_f64(D, &loss, "sigmoid cross-entropy loss");
  agree(D, &valid, sizeof valid, "sigmoid cross-entropy valid");
  same(sig, rsig, n, 1e-6, "sigmoid cross-entropy: sigmoid");
  CHECK_CLOSE(loss, rloss, 1e-5, 1e-5, "sigmoid cross-entropy loss on %s", D->name);
  CHECK(valid == rvalid, "sigmoid cross-entropy on %s counted %zu of %zu", D->name, valid, rvalid);
  RUN(sigmoid_xent_backward, n, dSig, dT, true, -1, 0.25f, dDX);
  fetch(D, dx, dDX, n, "sigmoid cross-entropy backward");
  same(dx, rdx, n, 1e-6, "sigmoid cross-entropy backward");
}

static void test_accuracy(const ct_driver *D) {
  const size_t O = 6, C = 5, I = 3, n = O * C * I;
  float *score = gauss(n), *lab = hbuf(O * I * sizeof(float)), per[5];
  for (size_t i = 0; i < O * I; i++) lab[i] = (float)ct_rng_below(&R, C);
  lab[4] = 9; /* ignored */
  score[(0 * C + 1) * I + 0] = score[(0 * C + (size_t)lab[0]) * I + 0]; /* a tie with the truth counts against */
  float *dScore = up(D, score, n), *dLab = up(D, lab, O * I), *dPer = up(D, gauss(C), C);
  size_t *dCounts = dalloc(D, C * sizeof(size_t));
  for (int k = 1; k <= 3; k++) {
    size_t hits = 0, counted = 0, rh = 0, rc = 0, rper[5] = {0}, rcnt[5] = {0};
    for (size_t o = 0; o < O; o++)
      for (size_t i = 0; i < I; i++) {
        int y = (int)lab[o * I + i];
        if (y == 9) continue;
        int above = 0;
        for (size_t c = 0; c < C; c++)
          above += (int)c != y && score[(o * C + c) * I + i] >= score[(o * C + (size_t)y) * I + i];
        rcnt[y]++, rc++;
        if (above < k) rh++, rper[y]++;
      }
    ptrdiff_t bad = 0;
    RUN(accuracy, O, C, I, dScore, dLab, k, true, 9, dPer, dCounts, &hits, &counted, &bad);
    fetch(D, per, dPer, C, "accuracy top-%d per class", k);
    size_t counts[5];
    fetch_bytes(D, counts, dCounts, sizeof counts, "accuracy top-%d class counts", k);
    agree(D, &hits, sizeof hits, "accuracy top-%d hits", k);
    agree(D, &counted, sizeof counted, "accuracy top-%d counted", k);
    agree(D, &bad, sizeof bad, "accuracy top-%d bad", k);
    CHECK(bad == -1 && hits == rh && counted == rc, "accuracy top-%d on %s: %zu/%zu vs %zu/%zu", k, D->name, hits,
          counted, rh, rc);
    bool ok = true;
    for (size_t c = 0; c < C; c++) ok &= fabs(per[c] - (rcnt[c] ? (double)rper[c] / rcnt[c] : 0.0)) < 1e-6;
    CHECK(ok, "accuracy top-%d per class on %s", k, D->name);
  }
  lab[2] = -1;
  put(D, dLab, lab, O * I);
  size_t h, c;
  ptrdiff_t bad = 0;
  RUN(accuracy, O, C, I, dScore, dLab, 1, true, 9, NULL, dCounts, &h, &c, &bad);
  agree(D, &bad, sizeof bad, "accuracy: label -1");
  CHECK(bad == 2, "label -1 is refused on %s (%td)", D->name, bad);
}

static void test_argmax(const ct_driver *D) {
  const size_t O = 3, Dm = 7, S = 4, n = O * Dm * S;
  float *x = gauss(n);
  x[(0 * Dm + 2) * S + 0] = x[(0 * Dm + 5) * S + 0] = 9.0f; /* equal values: the higher index first */
  float *dX = up(D, x, n);
  ct_rank_entry *scratch = dalloc(D, Dm * S * sizeof *scratch);
  for (int has_axis = 0; has_axis < 2; has_axis++)
    for (int omv = 0; omv < 2; omv++)
      for (int k = 1; k <= 3; k += 2) {
        const size_t dim = has_axis ? Dm : Dm * S, stride = has_axis ? S : 1, outer = n / dim / stride;
        const size_t ny = has_axis ? outer * (size_t)k * stride : outer * (size_t)k * (omv ? 2 : 1);
        float *y = gauss(ny), *dY = up(D, y, ny);
        double *ry = dbuf(ny);
        for (size_t o = 0; o < outer; o++)
          for (size_t s = 0; s < stride; s++) {
            bool taken[64] = {false};
            for (int j = 0; j < k; j++) {
              int best = -1;
              for (size_t e = 0; e < dim; e++) {
                if (taken[e]) continue;
                float v = x[(o * dim + e) * stride + s];
                float bv = best < 0 ? 0 : x[(o * dim + (size_t)best) * stride + s];
                if (best < 0 || v > bv || (v == bv && (int)e > best)) best = (int)e;
              }
              taken[best] = true;
              float v = x[(o * dim + (size_t)best) * stride + s];
              if (has_axis) {
                ry[(o * (size_t)k + (size_t)j) * stride + s] = omv ? v : best;
              } else if (omv) {
                ry[o * 2 * (size_t)k + (size_t)j] = best;
                ry[o * 2 * (size_t)k + (size_t)k + (size_t)j] = v;
              } else {
                ry[o * (size_t)k + (size_t)j] = best;
              }
            }
          }
        RUN(argmax, outer, dim, stride, k, omv, has_axis, dX, dY, scratch);
        char what[64];
        snprintf(what, sizeof what, "argmax axis %d out_max_val %d top %d", has_axis, omv, k);
        fetch(D, y, dY, ny, "%s", what);
        same(y, ry, ny, 0, what);
      }
}

/* The LSTM cell against a double-precision transcription of Caffe's LSTMUnit, with streams that
 * continue (cont 1), restart (cont 0) and a fractional cont; backward in place (dc_prev = dc). */
static void test_lstm_unit(const ct_driver *D) {
  const size_t N = 5, Dm = 7, n = N * Dm;
  float *cp = gauss(n), *x = gauss(4 * n), *cont = hbuf(N * sizeof(float)), *dc = gauss(n), *dh = gauss(n);
  const float conts[5] = {1, 0, 1, 0.5f, 1};
  for (size_t i = 0; i < N; i++) cont[i] = conts[i];
  for (size_t i = 0; i < 4 * n; i++) x[i] *= 2;
  double *rc = dbuf(n), *rh = dbuf(n), *rdcp = dbuf(n), *rdx = dbuf(4 * n);
  for (size_t s = 0; s < N; s++)
    for (size_t j = 0; j < Dm; j++) {
      const float *xs = x + s * 4 * Dm;
      const double i = 1 / (1 + exp(-(double)xs[j])), f = cont[s] * (1 / (1 + exp(-(double)xs[Dm + j])));
      const double o = 1 / (1 + exp(-(double)xs[2 * Dm + j])), g = tanh((double)xs[3 * Dm + j]);
      const double c = f * cp[s * Dm + j] + i * g, tc = tanh(c);
      rc[s * Dm + j] = c;
      rh[s * Dm + j] = o * tc;
      const double t = dc[s * Dm + j] + dh[s * Dm + j] * o * (1 - tc * tc);
      rdcp[s * Dm + j] = t * f;
      double *dxs = rdx + s * 4 * Dm;
      dxs[j] = t * g * i * (1 - i);
      dxs[Dm + j] = t * cp[s * Dm + j] * f * (1 - f);
      dxs[2 * Dm + j] = dh[s * Dm + j] * tc * o * (1 - o);
      dxs[3 * Dm + j] = t * i * (1 - g * g);
    }
  float *c = gauss(n), *h = gauss(n), *dcp = gauss(n), *dx = gauss(4 * n);
  float *dCP = up(D, cp, n), *dX = up(D, x, 4 * n), *dCont = up(D, cont, N), *dC = up(D, c, n), *dH = up(D, h, n);
  RUN(lstm_unit_forward, N, Dm, dCP, dX, dCont, dC, dH);
  fetch(D, c, dC, n, "lstm cell c");
  fetch(D, h, dH, n, "lstm cell h");
  same(c, rc, n, 2e-6, "lstm cell c");
  same(h, rh, n, 2e-6, "lstm cell h");
  float *dDC = up(D, dc, n), *dDX = up(D, dx, 4 * n);
  RUN(lstm_unit_backward, N, Dm, dCP, dX, dCont, dC, dDC, up(D, dh, n), dDC, dDX);
  fetch(D, dcp, dDC, n, "lstm cell dc_prev (in place over dc)");
  fetch(D, dx, dDX, 4 * n, "lstm cell dx");
  same(dcp, rdcp, n, 2e-5, "lstm cell dc_prev");
  same(dx, rdx, 4 * n, 2e-5, "lstm cell dx");
  /* either output may be NULL */
  RUN(lstm_unit_backward, N, Dm, dCP, dX, dCont, dC, up(D, dc, n), up(D, dh, n), NULL, dDX);
  fetch(D, dx, dDX, 4 * n, "lstm cell dx without dc_prev");
  same(dx, rdx, 4 * n, 2e-5, "lstm cell dx without dc_prev");
}

int main(void) {
  static const dc_test tests[] = {
      {"lstm cell", test_lstm_unit},
      {"lowering", test_lowering},
      {"pooling", test_pooling},
      {"lrn", test_lrn},
      {"softmax", test_softmax},
      {"sigmoid cross-entropy", test_sigmoid_xent},
      {"accuracy", test_accuracy},
      {"argmax", test_argmax},
  };
  return dc_main(tests, sizeof tests / sizeof tests[0], DC_NN, 20241);
}
