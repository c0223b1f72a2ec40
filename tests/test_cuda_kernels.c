/* The CUDA driver's kernel bodies (src/drivers/cuda/kern.h) on the host: each body is run over
 * every index of its index space, in a plain loop, and the result held to the CPU driver's
 * entry on the same inputs, over a zoo of shapes. The CUDA kernels are these bodies in a
 * grid-stride loop (cuda/kernels.cu), so this checks every kernel's arithmetic and indexing in
 * CI, where there is no GPU; tests/gpu/run.sh checks the launches and cuBLAS on one. It runs in
 * every build (kern.h is plain C). It also checks the row-major to column-major mapping of the
 * cuBLAS calls (cuda/blas_map.h) with a column-major reference GEMM, and, in a CUDA build, that
 * the driver's table has every entry of ct_driver_ops.
 *
 * Tolerances: a body that computes what the CPU computes, in the same order, must match it
 * closely (1e-6 relative); reductions that sum in another order (col2im, pooling's backward,
 * LRN's window sums, the bias gradient) within 1e-5 of the largest magnitude. The two-stage
 * reductions (BatchNorm, the chain, the Scale and PReLU gradients, DIRECT convolution) are in
 * tests/test_cuda_kernels_red.h. The dropout mask must equal the CPU driver's bit for bit (both
 * draw from core/philox.h); the generator itself is checked for determinism, its keep rate and
 * uniformity. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "drivers/cpu/kernels.h"
#include "drivers/cuda/blas_map.h"
#include "drivers/cuda/kern.h"

static ct_rng R;
static const ct_driver *CPU;

#define FOR(i, n) for (size_t i = 0; i < (size_t)(n); i++)

static float *fbuf(size_t n) {
  float *p = calloc(n ? n : 1, sizeof(float));
  if (!p) abort();
  return p;
}
static float *gauss(size_t n, float s) {
  float *p = fbuf(n);
  FOR(i, n) p[i] = ct_rng_gaussian(&R, 0, s);
  return p;
}
static float *unif(size_t n, float lo, float hi) {
  float *p = fbuf(n);
  FOR(i, n) p[i] = lo + (hi - lo) * (float)ct_rng_uniform01(&R);
  return p;
}
static float *dup(const float *x, size_t n) {
  float *p = fbuf(n);
  memcpy(p, x, n * sizeof(float));
  return p;
}

/* max |a - b| <= tol * max(1, max |b|), NaNs equal only to NaNs */
static void near(const float *a, const float *b, size_t n, double tol, const char *what) {
  double scale = 1.0, worst = 0.0;
  size_t at = 0;
  FOR(i, n) if (fabs(b[i]) > scale) scale = fabs(b[i]);
  FOR(i, n) {
    if (isnan(a[i]) && isnan(b[i])) continue;
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= worst)) {
      worst = d;
      at = i;
    }
  }
  CHECK(worst <= tol * scale, "%s: element %zu of %zu: %.9g vs the CPU's %.9g", what, at, n, n ? a[at] : 0.0,
        n ? b[at] : 0.0);
}

static void same_ints(const int *a, const int *b, size_t n, const char *what) {
  size_t at = 0;
  while (at < n && a[at] == b[at]) at++;
  CHECK(at == n, "%s: element %zu of %zu: %d vs the CPU's %d", what, at, n, at < n ? a[at] : 0, at < n ? b[at] : 0);
}

/* ================================================================ element-wise, neurons */

static void test_elementwise(void) {
  const size_t sizes[] = {1, 7, 1000, 10000};
  for (size_t s = 0; s < 4; s++) {
    const size_t n = sizes[s];
    float *a = gauss(n, 1), *b = gauss(n, 1), *y = fbuf(n), *r = fbuf(n);
    char what[80];
    FOR(i, n) ctk_add(i, a, b, y);
    ct_cpu_add(CPU, n, a, b, r);
    snprintf(what, sizeof what, "add n=%zu", n), near(y, r, n, 0, what);
    FOR(i, n) ctk_sub(i, a, b, y);
    ct_cpu_sub(CPU, n, a, b, r);
    snprintf(what, sizeof what, "sub n=%zu", n), near(y, r, n, 0, what);
    FOR(i, n) ctk_mul(i, a, b, y);
    ct_cpu_mul(CPU, n, a, b, r);
    snprintf(what, sizeof what, "mul n=%zu", n), near(y, r, n, 0, what);
    memcpy(y, b, n * sizeof(float)), memcpy(r, b, n * sizeof(float));
    FOR(i, n) ctk_axpy(i, -0.75f, a, y);
    ct_cpu_axpy(CPU, n, -0.75f, a, r);
    snprintf(what, sizeof what, "axpy n=%zu", n), near(y, r, n, 1e-6, what);
    FOR(i, n) ctk_fill(i, 2.5f, y);
    bool filled = true;
    FOR(i, n) filled &= y[i] == 2.5f;
    CHECK(filled, "fill n=%zu", n);
    FOR(i, n) ctk_scal(i, 1.5f, a, y);
    ct_cpu_scal(CPU, n, 1.5f, a, r);
    snprintf(what, sizeof what, "scal n=%zu", n), near(y, r, n, 1e-6, what);
    free(a), free(b), free(y), free(r);
  }
}

static void test_neurons(void) {
  ct_neuron zoo[] = {
      {.kind = CT_NEURON_RELU},
      {.kind = CT_NEURON_RELU, .negative_slope = 0.1f},
      {.kind = CT_NEURON_ELU, .alpha = 0.7f},
      {.kind = CT_NEURON_SIGMOID},
      {.kind = CT_NEURON_TANH},
      {.kind = CT_NEURON_ABSVAL},
      {.kind = CT_NEURON_POWER, .power = 2, .scale = 0.5f, .shift = 1},
      {.kind = CT_NEURON_POWER, .power = 1, .scale = 2, .shift = -1},
      {.kind = CT_NEURON_POWER, .power = 0.5f, .scale = 0.3f, .shift = 4},
      {.kind = CT_NEURON_POWER, .power = 0, .scale = 1, .shift = 0},
      {.kind = CT_NEURON_EXP, .inner_scale = 0.5f, .outer_scale = 2},
      {.kind = CT_NEURON_LOG, .scale = 0.5f, .shift = 5, .base_scale = 1.4427f},
      {.kind = CT_NEURON_BNLL},
      {.kind = CT_NEURON_THRESHOLD, .threshold = 0.2f},
      {.kind = CT_NEURON_CLIP, .lo = -0.5f, .hi = 0.8f},
      {.kind = CT_NEURON_SWISH, .beta = 1.3f},
  };
  const size_t n = 2000;
  for (size_t z = 0; z < sizeof zoo / sizeof *zoo; z++) {
    const ct_neuron *p = &zoo[z];
    float *x = gauss(n, 3), *dy = gauss(n, 1), *y = fbuf(n), *r = fbuf(n), *dx = fbuf(n), *rd = fbuf(n);
    x[0] = 0.0f, x[1] = -0.5f, x[2] = 0.8f, x[3] = 0.2f; /* the kinks and bounds */
    char what[80];
    FOR(i, n) ctk_neuron_fwd(i, p, x, y);
    ct_cpu_neuron_forward(CPU, p, n, x, r);
    snprintf(what, sizeof what, "neuron %d (zoo %zu) forward", p->kind, z), near(y, r, n, 1e-6, what);
    FOR(i, n) ctk_neuron_bwd(i, p, x, r, dy, dx);
    ct_cpu_neuron_backward(CPU, p, n, x, r, dy, rd);
    snprintf(what, sizeof what, "neuron %d (zoo %zu) backward", p->kind, z), near(dx, rd, n, 1e-6, what);
    /* in place: y is x, dx is dy */
    float *xi = dup(x, n), *gi = dup(dy, n);
    FOR(i, n) ctk_neuron_fwd(i, p, xi, xi);
    snprintf(what, sizeof what, "neuron %d (zoo %zu) forward in place", p->kind, z), near(xi, r, n, 1e-6, what);
    free(xi), free(gi), free(x), free(dy), free(y), free(r), free(dx), free(rd);
  }
}

static void test_prelu_eltwise(void) {
  const size_t shapes[][3] = {{2, 3, 5}, {1, 1, 7}, {4, 6, 1}};
  for (size_t s = 0; s < 3; s++)
    for (int shared = 0; shared < 2; shared++) {
      const size_t N = shapes[s][0], C = shapes[s][1], D = shapes[s][2], n = N * C * D;
      float *x = gauss(n, 1), *a = unif(C, 0.05f, 0.5f), *dy = gauss(n, 1), *y = fbuf(n), *r = fbuf(n);
      x[0] = 0.0f;
      FOR(i, n) ctk_prelu_fwd(i, C, D, shared, x, a, y);
      ct_cpu_prelu_forward(CPU, N, C, D, shared, x, a, r);
      near(y, r, n, 0, "prelu forward");
      free(x), free(a), free(dy), free(y), free(r);
    }
  const size_t n = 513;
  const int nx = 3;
  for (int op = 0; op < 3; op++)
    for (int coef = 0; coef < 2; coef++) {
      const float *xs[3];
      float *own[3];
      for (int k = 0; k < nx; k++) xs[k] = own[k] = gauss(n, 1);
      own[1][5] = own[0][5], own[2][6] = own[1][6] = own[0][6]; /* ties for MAX */
      const float coeff[3] = {0.5f, -1.0f, 2.0f};
      ctk_inputs in;
      memset(&in, 0, sizeof in);
      for (int k = 0; k < nx; k++) in.x[k] = xs[k], in.coeff[k] = coeff[k];
      in.has_coeff = coef;
      float *y = fbuf(n), *r = fbuf(n), *dy = gauss(n, 1), *dx = fbuf(n), *rdx = fbuf(n);
      int *w = calloc(n, sizeof(int)), *rw = calloc(n, sizeof(int));
      char what[80];
      FOR(i, n) ctk_eltwise_fwd(i, (ct_eltwise_op)op, nx, &in, y, w);
      ct_cpu_eltwise_forward(CPU, (ct_eltwise_op)op, n, nx, xs, coef ? coeff : NULL, r, rw);
      snprintf(what, sizeof what, "eltwise %d forward", op), near(y, r, n, 1e-6, what);
      if (op == CT_ELTWISE_MAX) same_ints(w, rw, n, "eltwise max winners");
      for (int k = 0; k < nx; k++)
        for (int stable = 0; stable < 2; stable++) {
          FOR(i, n) ctk_eltwise_bwd(i, (ct_eltwise_op)op, nx, &in, k, stable, r, dy, rw, dx);
          ct_cpu_eltwise_backward(CPU, (ct_eltwise_op)op, n, nx, xs, k, coef ? coeff : NULL, stable, r, dy, rw, rdx);
          snprintf(what, sizeof what, "eltwise %d backward input %d stable %d", op, k, stable);
          near(dx, rdx, n, 1e-6, what);
        }
      for (int k = 0; k < nx; k++) free(own[k]);
      free(y), free(r), free(dy), free(dx), free(rdx), free(w), free(rw);
    }
}

/* ================================================================ Bias, Scale, BatchNorm */

static void test_norm(void) {
  const size_t shapes[][3] = {{2, 3, 4}, {5, 7, 1}, {1, 1, 9}, {3, 16, 25}};
  for (size_t s = 0; s < 4; s++) {
    const size_t outer = shapes[s][0], dim = shapes[s][1], inner = shapes[s][2], n = outer * dim * inner;
    float *x = gauss(n, 1), *b = gauss(dim, 1), *sc = gauss(dim, 1), *dy = gauss(n, 1), *y = fbuf(n), *r = fbuf(n);
    FOR(i, n) ctk_bias_fwd(i, dim, inner, x, b, y);
    ct_cpu_bias_forward(CPU, outer, dim, inner, x, b, r);
    near(y, r, n, 0, "bias forward");
    for (int withb = 0; withb < 2; withb++) {
      FOR(i, n) ctk_scale_fwd(i, dim, inner, x, sc, withb ? b : NULL, y);
      ct_cpu_scale_forward(CPU, outer, dim, inner, x, sc, withb ? b : NULL, r);
      near(y, r, n, 1e-6, "scale forward");
    }
    free(x), free(b), free(sc), free(dy), free(y), free(r);
  }
}

/* ================================================================ the solver's update, LSTM */

static void test_update(void) {
  const size_t n = 1031;
  for (int rule = CT_RULE_SGD; rule <= CT_RULE_ADAM; rule++)
    for (int decay = 0; decay < 3; decay++)
      for (int variant = 0; variant < 2; variant++) {
        ct_update_step s = {.rule = (ct_update_rule)rule, .grad_scale = variant ? 0.5f : 1.0f,
                            .decay = decay ? 5e-4f : 0.0f, .l1 = decay == 2, .rate = 0.01f, .momentum = 0.9f,
                            .momentum2 = 0.999f, .rms_decay = 0.98f, .delta = 1e-6f, .zero_grad = variant};
        float *w = gauss(n, 1), *g = gauss(n, 1), *h0 = unif(n, 0, 1), *h1 = unif(n, 0, 1);
        w[0] = 0.0f;
        float *w2 = dup(w, n), *g2 = dup(g, n), *a0 = dup(h0, n), *a1 = dup(h1, n);
        FOR(i, n) ctk_update(i, &s, w, g, h0, h1);
        ct_cpu_update(CPU, &s, n, w2, g2, a0, a1);
        char what[96];
        snprintf(what, sizeof what, "update rule %d decay %d variant %d: w", rule, decay, variant);
        near(w, w2, n, 1e-6, what);
        snprintf(what, sizeof what, "update rule %d decay %d variant %d: g", rule, decay, variant);
        near(g, g2, n, 1e-6, what);
        snprintf(what, sizeof what, "update rule %d decay %d variant %d: history", rule, decay, variant);
        near(h0, a0, n, 1e-6, what);
        if (rule == CT_RULE_ADADELTA || rule == CT_RULE_ADAM) near(h1, a1, n, 1e-6, what);
        free(w), free(g), free(h0), free(h1), free(w2), free(g2), free(a0), free(a1);
      }
}

static void test_lstm(void) {
  const size_t N = 5, D = 7;
  float *cp = gauss(N * D, 1), *x = gauss(N * 4 * D, 1.5f), *cont = fbuf(N);
  const float conts[5] = {1, 0, 1, 0.5f, 1};
  FOR(k, N) cont[k] = conts[k];
  float *c = fbuf(N * D), *h = fbuf(N * D), *rc = fbuf(N * D), *rh = fbuf(N * D);
  FOR(i, N * D) ctk_lstm_fwd(i, D, cp, x, cont, c, h);
  ct_cpu_lstm_unit_forward(CPU, N, D, cp, x, cont, rc, rh);
  near(c, rc, N * D, 1e-6, "lstm forward c");
  near(h, rh, N * D, 1e-6, "lstm forward h");
  float *dc = gauss(N * D, 1), *dh = gauss(N * D, 1), *dcp = fbuf(N * D), *dx = fbuf(N * 4 * D);
  float *rdcp = fbuf(N * D), *rdx = fbuf(N * 4 * D);
  FOR(i, N * D) ctk_lstm_bwd(i, D, cp, x, cont, rc, dc, dh, dcp, dx);
  ct_cpu_lstm_unit_backward(CPU, N, D, cp, x, cont, rc, dc, dh, rdcp, rdx);
  near(dcp, rdcp, N * D, 1e-6, "lstm backward dc_prev");
  near(dx, rdx, N * 4 * D, 1e-6, "lstm backward dx");
  /* dc_prev may be dc */
  float *dc2 = dup(dc, N * D);
  FOR(i, N * D) ctk_lstm_bwd(i, D, cp, x, cont, rc, dc2, dh, dc2, NULL);
  near(dc2, rdcp, N * D, 1e-6, "lstm backward dc_prev in place of dc");
  free(cp), free(x), free(cont), free(c), free(h), free(rc), free(rh), free(dc), free(dh), free(dcp), free(dx);
  free(rdcp), free(rdx), free(dc2);
}

/* ================================================================ dropout's generator */

static void test_dropout(void) {
  const size_t n = 200000;
  const float ratio = 0.3f, scale = 1.0f / 0.7f;
  float *m = fbuf(n), *m2 = fbuf(n), *m3 = fbuf(n);
  FOR(i, n) ctk_dropout_mask(i, 1234, 0, ratio, scale, m);
  FOR(i, n) ctk_dropout_mask(i, 1234, 0, ratio, scale, m2);
  CHECK(!memcmp(m, m2, n * sizeof(float)), "the same seed draws the same mask");
  /* two partitions of one layer: [0, k) and [k, n) with offset k draw the whole mask */
  const size_t k = 77777;
  FOR(i, k) ctk_dropout_mask(i, 1234, 0, ratio, scale, m3);
  FOR(i, n - k) ctk_dropout_mask(i, 1234, k, ratio, scale, m3 + k);
  CHECK(!memcmp(m, m3, n * sizeof(float)), "partitions with offsets draw the single partition's mask");
  /* the CPU driver's entry draws the same mask, whole and in pieces (a CPU partition and a GPU
   * partition of one layer) */
  ct_cpu_dropout_mask(CPU, 1234, 0, n, ratio, scale, m2);
  CHECK(!memcmp(m, m2, n * sizeof(float)), "the CPU driver's dropout_mask is the kernel's");
  ct_cpu_dropout_mask(CPU, 1234, 0, k, ratio, scale, m2);
  FOR(i, n - k) ctk_dropout_mask(i, 1234, k, ratio, scale, m2 + k);
  CHECK(!memcmp(m, m2, n * sizeof(float)), "a CPU partition and a kernel partition draw the whole mask");
  FOR(i, n) ctk_dropout_mask(i, 1235, 0, ratio, scale, m2);
  size_t kept = 0, differ = 0;
  FOR(i, n) {
    kept += m[i] != 0.0f;
    differ += (m[i] != 0.0f) != (m2[i] != 0.0f);
    CHECK(m[i] == 0.0f || m[i] == scale, "mask values are 0 or the scale");
  }
  const double rate = (double)kept / n, sd = sqrt(0.7 * 0.3 / n);
  CHECK(fabs(rate - 0.7) < 5 * sd, "keep rate %.5f, expected 0.7 +- %.5f", rate, 5 * sd);
  /* another seed: independent masks disagree on 2 p (1 - p) of the elements */
  CHECK(fabs((double)differ / n - 0.42) < 0.01, "seeds 1234 and 1235 disagree on %.4f of the elements", (double)differ / n);
  /* uniformity of the floats: 64 buckets, chi-square with 63 degrees of freedom below its 99.99th percentile */
  double count[64] = {0};
  FOR(i, n) count[(int)(ct_philox_uniform01(42, i) * 64)]++;
  double chi = 0, e = (double)n / 64;
  FOR(b, 64) chi += (count[b] - e) * (count[b] - e) / e;
  CHECK(chi < 120, "uniform01's chi-square over 64 buckets: %.1f", chi);
  /* neighbouring indices are uncorrelated */
  double sxy = 0, sx = 0, sxx = 0;
  FOR(i, n - 1) {
    double a = ct_philox_uniform01(7, i), b = ct_philox_uniform01(7, i + 1);
    sxy += a * b, sx += a, sxx += a * a;
  }
  const double mx = sx / (n - 1), corr = (sxy / (n - 1) - mx * mx) / (sxx / (n - 1) - mx * mx);
  CHECK(fabs(corr) < 0.02, "lag-1 correlation %.4f", corr);
  free(m), free(m2), free(m3);
}

#include "test_cuda_kernels_red.h"
#include "test_cuda_kernels_nn.h"

int main(void) {
  CPU = ct_driver_cpu();
  ct_rng_seed(&R, 18);
  test_elementwise();
  test_neurons();
  test_prelu_eltwise();
  test_norm();
  test_update();
  test_lstm();
  test_dropout();
  test_conv();
  test_bn_chain_red();
  test_param_grads_red();
  test_direct();
  test_pool();
  test_lrn();
  test_softmax_losses();
  test_argmax();
  test_blas_map();
  test_table();
  return ct_check_report();
}
