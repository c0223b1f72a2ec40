/* The fused Eltwise SUM -> ReLU entries (eltwise_relu_forward / _backward, driver.h) against
 * naive loops in double, on sizes that are and are not a multiple of the vector width (n = 1
 * included), 2, 3 and 5 inputs, with and without coefficients, slopes 0 and 0.1, each bottom's
 * gradient asked for or not, the ReLU's gradient (dz) written or not, in place over dy or not;
 * and bit for bit what the two unfused layers' entries give (eltwise_forward then neuron_forward
 * in place; neuron_backward in place then eltwise_backward), which net/fuse.c promises. On the
 * CPU and emu (emu bit for bit, driver_check.h); a backend without the entries (they are
 * optional) skips them. */
#include "driver_check.h"

static const size_t sizes[] = {1, 3, 4, 7, 8, 13, 64, 1031};

/* what the fused entries must reproduce exactly: the unfused layers' kernels on D */
static void unfused_forward(const ct_driver *D, size_t n, int nx, const float *const *dX, const float *dC, float slope,
                            float *dY) {
  ct_neuron relu = {.kind = CT_NEURON_RELU, .negative_slope = slope};
  OK(D->ops->eltwise_forward(D, CT_ELTWISE_SUM, n, nx, dX, dC, dY, NULL));
  OK(D->ops->neuron_forward(D, &relu, n, dY, dY));
}

static void pair_case(const ct_driver *D, size_t n, int nx, bool coeff, float slope, unsigned want, bool dz,
                      bool dz_in_place) {
  char what[160];
  snprintf(what, sizeof what, "eltwise relu n %zu nx %d coeff %d slope %g want %#x dz %d in place %d", n, nx, coeff,
           slope, want, dz, dz_in_place);
  float *x[5], *dXs[5], c[5];
  for (int k = 0; k < nx; k++) {
    x[k] = gauss(n);
    c[k] = coeff ? 0.5f + 0.75f * (float)k - (k == 2 ? 2.0f : 0.0f) : 1.0f; /* 0.5, 1.25, 0, 2.75, 3.5 */
  }
  if (n > 2) /* an exact zero sum there: y = 0 takes the slope's side */
    for (int k = 0; k < nx; k++) x[k][2] = k == 0 ? 1.0f : k == 1 ? -c[0] / c[1] : 0.0f;
  for (int k = 0; k < nx; k++) dXs[k] = up(D, x[k], n);
  float *dC = coeff ? up(D, c, (size_t)nx) : NULL;
  /* forward: y = relu(sum c_k x_k) */
  double *ry = dbuf(n);
  for (size_t i = 0; i < n; i++) {
    double s = 0;
    for (int k = 0; k < nx; k++) s += (double)c[k] * x[k][i];
    ry[i] = s > 0 ? s : slope * s;
  }
  float *y = hbuf(n * sizeof(float)), *y2 = hbuf(n * sizeof(float));
  float *dY = up(D, y, n), *dY2 = up(D, y, n);
  RUN(eltwise_relu_forward, n, nx, (const float *const *)dXs, coeff ? dC : NULL, slope, dY);
  fetch(D, y, dY, n, "%s: y", what);
  same(y, ry, n, 1e-6, what);
  unfused_forward(D, n, nx, (const float *const *)dXs, coeff ? dC : NULL, slope, dY2);
  fetch_bytes(D, y2, dY2, n * sizeof(float), "%s: y unfused", what);
  CHECK(!memcmp(y, y2, n * sizeof(float)), "%s: forward is bit for bit the unfused pair's", what);

  /* backward on its own y (exact zeros among it) and dy: g = y > 0 ? dy : slope dy */
  float *yb = gauss(n), *dy = gauss(n);
  for (size_t i = 0; i < n; i += 3) yb[i] = 0.0f;
  double *rg = dbuf(n), *rdx = dbuf(n);
  for (size_t i = 0; i < n; i++) rg[i] = yb[i] > 0 ? dy[i] : slope * (double)dy[i];
  float *dYB = up(D, yb, n), *dDY = up(D, dy, n);
  float *dDX[5], *dx = hbuf(n * sizeof(float));
  for (int k = 0; k < nx; k++) dDX[k] = want >> k & 1 ? up(D, gauss(n), n) : NULL;
  float *dDZ = !dz ? NULL : dz_in_place ? dDY : up(D, gauss(n), n);
  RUN(eltwise_relu_backward, n, nx, coeff ? dC : NULL, slope, dYB, dDY, dDX, dDZ);
  /* the unfused pair: ReLU in place on a copy of dy, then Eltwise into fresh buffers */
  ct_neuron relu = {.kind = CT_NEURON_RELU, .negative_slope = slope};
  float *dG = up(D, dy, n), *g = hbuf(n * sizeof(float)), *ux = hbuf(n * sizeof(float));
  OK(D->ops->neuron_backward(D, &relu, n, dYB, dYB, dG, dG));
  fetch_bytes(D, g, dG, n * sizeof(float), "%s: g unfused", what);
  for (int k = 0; k < nx; k++) {
    if (!dDX[k]) continue;
    fetch(D, dx, dDX[k], n, "%s: dx %d", what, k);
    for (size_t i = 0; i < n; i++) rdx[i] = c[k] * rg[i];
    same(dx, rdx, n, 1e-6, what);
    float *dU = up(D, gauss(n), n);
    OK(D->ops->eltwise_backward(D, CT_ELTWISE_SUM, n, nx, (const float *const *)dXs, k, coeff ? dC : NULL, true,
                                NULL, dG, NULL, dU));
    fetch_bytes(D, ux, dU, n * sizeof(float), "%s: dx %d unfused", what, k);
    CHECK(!memcmp(dx, ux, n * sizeof(float)), "%s: dx %d is bit for bit the unfused pair's", what, k);
  }
  float *z = hbuf(n * sizeof(float)), *dyl = hbuf(n * sizeof(float));
  if (dz) {
    fetch(D, z, dDZ, n, "%s: dz", what);
    same(z, rg, n, 1e-6, what);
    CHECK(!memcmp(z, g, n * sizeof(float)), "%s: dz is bit for bit the unfused ReLU's", what);
  }
  if (!dz_in_place) { /* dy itself untouched */
    fetch_bytes(D, dyl, dDY, n * sizeof(float), "%s: dy after", what);
    CHECK(!memcmp(dyl, dy, n * sizeof(float)), "%s: dy is left as it was", what);
  }
}

/* a bottom's gradient written over dy itself (the entry allows it) */
static void aliased_dx(const ct_driver *D) {
  const size_t n = 13;
  float *yb = gauss(n), *dy = gauss(n), *dx = hbuf(n * sizeof(float));
  float *dDY = up(D, dy, n), *dDX[2] = {dDY, NULL};
  const float c[2] = {3.0f, 1.0f};
  RUN(eltwise_relu_backward, n, 2, up(D, c, 2), 0.25f, up(D, yb, n), dDY, dDX, NULL);
  fetch(D, dx, dDY, n, "dx over dy");
  double *r = dbuf(n);
  for (size_t i = 0; i < n; i++) r[i] = 3.0 * (yb[i] > 0 ? dy[i] : 0.25 * (double)dy[i]);
  same(dx, r, n, 1e-6, "dx over dy");
}

static void test_pair(const ct_driver *D) {
  if (!D->ops->eltwise_relu_forward || !D->ops->eltwise_relu_backward) {
    COVER(eltwise_relu_forward); /* optional: nothing to run on this backend */
    COVER(eltwise_relu_backward);
    return;
  }
  static const int nxs[] = {2, 3, 5};
  static const float slopes[] = {0.0f, 0.1f};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
    for (int a = 0; a < 3; a++)
      for (int coeff = 0; coeff < 2; coeff++)
        for (int sl = 0; sl < 2; sl++) {
          const int nx = nxs[a];
          const unsigned all = (1u << nx) - 1;
          pair_case(D, sizes[s], nx, coeff, slopes[sl], all, true, true);
          pair_case(D, sizes[s], nx, coeff, slopes[sl], all & ~1u, false, false); /* bottom 0 does not propagate */
          pair_case(D, sizes[s], nx, coeff, slopes[sl], 2u, true, false);
        }
  aliased_dx(D);
}

int main(void) {
  static const dc_test tests[] = {{"eltwise relu", test_pair}};
  return dc_main(tests, sizeof tests / sizeof tests[0], DC_FUSE_ELTWISE, 777);
}
