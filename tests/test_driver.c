/* The driver entries for memory, BLAS (GEMM in all four transpose combinations, the thin GEMM),
 * element-wise arithmetic, activations, broadcast layers, BatchNorm, every solver update rule and
 * Dropout's mask, against naive reference loops written here (in double where it matters, the
 * mask by its statistics), on every backend:
 * inputs uploaded, the entry run there, results downloaded, and emu's held to the CPU's bit for
 * bit (tests/driver_check.h). test_driver_nn.c does the same for the layer entries. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "driver_check.h"
#include "drivers/cpu/kernels.h"

/* ================================================================ memory */

static void test_memory(const ct_driver *D) {
  const ct_driver_ops *o = D->ops;
  COVER(alloc), COVER(free);
  float *a = o->alloc(D, 100 * sizeof(float)), *b = o->alloc(D, 100 * sizeof(float));
  void *z = o->alloc(D, 0);
  CHECK(a && b && z, "alloc on %s", D->name);
  if (!a || !b || !z) abort();
  CHECK(((uintptr_t)a & 63) == 0 && ((uintptr_t)b & 63) == 0, "alloc on %s is 64-byte aligned", D->name);
  float host[100], back[100];
  for (int i = 0; i < 100; i++) host[i] = (float)i * 0.5f;
  RUN(upload, a, host, sizeof host);
  RUN(copy, b, a, sizeof host);
  RUN(download, back, b, sizeof back);
  agree(D, back, sizeof back, "copy");
  CHECK(memcmp(host, back, sizeof host) == 0, "upload, copy, download round trip on %s", D->name);
  RUN(memset, b, 0, 50 * sizeof(float));
  fetch(D, back, b, 100, "memset");
  bool ok = true;
  for (int i = 0; i < 100; i++) ok &= back[i] == (i < 50 ? 0.0f : host[i]);
  CHECK(ok, "memset on %s covers exactly its bytes", D->name);
  /* 2-D: 4 rows of 3 floats from pitch 10 into pitch 5 */
  RUN(memset, b, 0, 100 * sizeof(float));
  RUN(copy_2d, 4, 3 * sizeof(float), b + 1, 5 * sizeof(float), a + 2, 10 * sizeof(float));
  fetch(D, back, b, 100, "copy_2d");
  ok = true;
  for (int r = 0; r < 20; r++)
    for (int c = 0; c < 5; c++) {
      float want = r < 4 && c >= 1 && c < 4 ? host[r * 10 + 2 + (c - 1)] : 0.0f;
      ok &= back[r * 5 + c] == want;
    }
  CHECK(ok, "copy_2d on %s moves rows between pitches", D->name);
  o->free(D, a);
  o->free(D, b);
  o->free(D, z);
  o->free(D, NULL);
  double gf = 0, gb = 0;
  o->calibration(D, &gf, &gb);
  CHECK(gf > 0 && gb > 0 && isfinite(gf) && isfinite(gb), "calibration on %s: %g GFLOP/s %g GB/s", D->name, gf, gb);
  if (!dc_is_reference(D)) {
    CHECK(strcmp(D->name, dc_backend_names[1]) == 0, "the second backend is %s: %s", dc_backend_names[1], D->name);
    return;
  }
  ct_driver *own = NULL;
  ct_error err = {0};
  CHECK(ct_driver_create("cpu", NULL, &own, &err) == CT_OK && own && strcmp(own->device, "cpu") == 0, "create cpu");
  ct_driver_free(own);
  char why[300];
  if (ct_driver_cuda_devices(why, sizeof why) == 0) { /* no build of the CUDA driver, or no GPU */
    CHECK(ct_driver_create("cuda:0", NULL, &own, &err) == CT_EUNSUPPORTED && !own, "cuda:0 is refused: %s", why);
    CHECK(strstr(err.msg, "cuda:0") != NULL, "the message names the device: %s", err.msg);
  } else {
    CHECK(ct_driver_create("cuda:0", NULL, &own, &err) == CT_OK && own, "cuda:0 is created: %s", err.msg);
    ct_driver_free(own);
  }
  CHECK(strcmp(D->device, "cpu") == 0 && D->index == 0, "the shared CPU driver");
}

/* ================================================================ BLAS and element-wise */

static void test_blas(const ct_driver *D) {
  const int shapes[][3] = {{1, 1, 1}, {5, 7, 3}, {33, 17, 40}, {2, 64, 9}};
  char what[64];
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        float *A = gauss((size_t)M * K), *B = gauss((size_t)K * N), *C = gauss((size_t)M * N);
        double *ref = dbuf((size_t)M * N);
        const float alpha = 0.75f, beta = -0.5f;
        for (int m = 0; m < M; m++)
          for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
              double a = ta ? A[(size_t)k * M + m] : A[(size_t)m * K + k];
              double b = tb ? B[(size_t)n * K + k] : B[(size_t)k * N + n];
              s += a * b;
            }
            ref[(size_t)m * N + n] = alpha * s + beta * C[(size_t)m * N + n];
          }
        float *dC = up(D, C, (size_t)M * N);
        RUN(gemm, ta, tb, M, N, K, alpha, up(D, A, (size_t)M * K), up(D, B, (size_t)K * N), beta, dC);
        snprintf(what, sizeof what, "gemm %dx%dx%d trans %d%d", M, N, K, ta, tb);
        fetch(D, C, dC, (size_t)M * N, "%s", what);
        same(C, ref, (size_t)M * N, 1e-5, what);
      }
    /* gemm_ld: the same product on blocks of larger matrices (3 spare columns each side);
     * what lies outside C's block must stay as it was */
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        const int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
        const int lda = ac + 3, ldb = bc + 3, ldc = N + 3;
        float *A = gauss((size_t)ar * lda), *B = gauss((size_t)br * ldb), *C = gauss((size_t)M * ldc);
        float *C0 = copy_of(C, (size_t)M * ldc);
        double *ref = dbuf((size_t)M * ldc);
        for (int m = 0; m < M; m++)
          for (int j = 0; j < ldc; j++) {
            const int n = j - 1; /* C's block starts at column 1 */
            if (n < 0 || n >= N) {
              ref[(size_t)m * ldc + j] = C0[(size_t)m * ldc + j];
              continue;
            }
            double s = 0;
            for (int k = 0; k < K; k++) {
              double a = ta ? A[(size_t)k * lda + m + 2] : A[(size_t)m * lda + k + 2];
              double b = tb ? B[(size_t)n * ldb + k] : B[(size_t)k * ldb + n];
              s += a * b;
            }
            ref[(size_t)m * ldc + j] = 1.25 * s - 0.5 * C0[(size_t)m * ldc + j];
          }
        float *dA = up(D, A, (size_t)ar * lda), *dC = up(D, C, (size_t)M * ldc);
        RUN(gemm_ld, ta, tb, M, N, K, 1.25f, dA + 2, lda, up(D, B, (size_t)br * ldb), ldb, -0.5f, dC + 1, ldc);
        snprintf(what, sizeof what, "gemm_ld %dx%dx%d trans %d%d", M, N, K, ta, tb);
        fetch(D, C, dC, (size_t)M * ldc, "%s", what);
        same(C, ref, (size_t)M * ldc, 1e-5, what);
      }
    for (int ta = 0; ta < 2; ta++) {
      const size_t nx = ta ? (size_t)M : (size_t)N, ny = ta ? (size_t)N : (size_t)M;
      float *A = gauss((size_t)M * N), *x = gauss(nx), *y = gauss(ny);
      double *ref = dbuf(ny);
      for (size_t i = 0; i < ny; i++) {
        double s = 0;
        for (size_t j = 0; j < nx; j++) s += (double)(ta ? A[j * N + i] : A[i * N + j]) * x[j];
        ref[i] = 1.5 * s + 0.25 * y[i];
      }
      float *dy = up(D, y, ny);
      RUN(gemv, ta, M, N, 1.5f, up(D, A, (size_t)M * N), up(D, x, nx), 0.25f, dy);
      snprintf(what, sizeof what, "gemv %dx%d%s", M, N, ta ? " trans" : "");
      fetch(D, y, dy, ny, "%s", what);
      same(y, ref, ny, 1e-5, what);
    }
  }
  const size_t n = 1003;
  float *x = gauss(n), *y = gauss(n), *y0 = copy_of(y, n), *out = gauss(n);
  float *dx = up(D, x, n), *dy = up(D, y, n), *dy0 = up(D, y0, n), *dout = up(D, out, n);
  double *ref = dbuf(n);
  for (size_t i = 0; i < n; i++) ref[i] = y0[i] + 0.3 * (double)x[i];
  RUN(axpy, n, 0.3f, dx, dy);
  fetch(D, y, dy, n, "axpy");
  same(y, ref, n, 1e-6, "axpy");
  for (size_t i = 0; i < n; i++) ref[i] = -2.5 * (double)x[i];
  RUN(scal, n, -2.5f, dx, dout);
  fetch(D, out, dout, n, "scal");
  same(out, ref, n, 1e-6, "scal");
  RUN(scal, n, -2.5f, dout, dout);
  fetch(D, out, dout, n, "scal in place");
  for (size_t i = 0; i < n; i++) ref[i] = 6.25 * (double)x[i];
  same(out, ref, n, 1e-6, "scal in place");
  double dot = 0, asum = 0, ss = 1.25;
  for (size_t i = 0; i < n; i++) dot += (double)x[i] * y0[i], asum += fabs((double)x[i]), ss += (double)x[i] * x[i];
  float got_dot = NAN, got_asum = NAN;
  double got_ss = NAN, first = NAN, both = NAN;
  RUN(dot, n, dx, dy0, &got_dot);
  agree_f32(D, &got_dot, "dot");
  CHECK_CLOSE(got_dot, dot, 1e-5, 1e-5, "dot on %s", D->name);
  RUN(asum, n, dx, &got_asum);
  agree_f32(D, &got_asum, "asum");
  CHECK_CLOSE(got_asum, asum, 1e-5, 1e-5, "asum on %s", D->name);
  RUN(sumsq, n, dx, 1.25, &got_ss);
  agree_f64(D, &got_ss, "sumsq");
  CHECK_CLOSE(got_ss, ss, 1e-12, 0, "sumsq from an accumulator on %s", D->name);
  RUN(sumsq, 500, dx, 1.25, &first);
  agree_f64(D, &first, "sumsq of the first range");
  RUN(sumsq, n - 500, dx + 500, first, &both);
  agree_f64(D, &both, "sumsq in two ranges");
  CHECK(both == got_ss, "sumsq over two ranges is one running sum on %s", D->name);
  static const char *const ops[3] = {"add", "sub", "mul"};
  for (int op = 0; op < 3; op++) {
    for (size_t i = 0; i < n; i++)
      ref[i] = op == 0 ? (double)x[i] + y0[i] : op == 1 ? (double)x[i] - y0[i] : (double)x[i] * y0[i];
    if (op == 0) RUN(add, n, dx, dy0, dout);
    if (op == 1) RUN(sub, n, dx, dy0, dout);
    if (op == 2) RUN(mul, n, dx, dy0, dout);
    fetch(D, out, dout, n, "%s", ops[op]);
    same(out, ref, n, 1e-6, ops[op]);
  }
  put(D, dout, x, n);
  RUN(add, n, dout, dy0, dout);
  fetch(D, out, dout, n, "add in place");
  for (size_t i = 0; i < n; i++) ref[i] = (double)x[i] + y0[i];
  same(out, ref, n, 1e-6, "add in place");
}

/* The thin GEMM (cpu/thin_gemm.c, a fully-connected layer's C = x W^T for 24 to 32 rows):
 * through gemm_ld on blocks of larger matrices, with C's block full of NaN (beta 0 must not
 * read it), for row counts and column counts that reach every tile width (12, 4, 1). On a CPU
 * with AVX-512 the thin kernel must take these shapes; elsewhere they go to OpenBLAS and the
 * comparison still holds (as with CT_THIN_GEMM=0 in the environment, which turns the kernel off). */
static void test_thin_gemm(const ct_driver *D) {
  __builtin_cpu_init();
  const char *off = getenv("CT_THIN_GEMM");
  const bool avx512 = __builtin_cpu_supports("avx512f") && !(off && !strcmp(off, "0"));
  const int shapes[][3] = {{32, 521, 2048}, {24, 77, 13700}, {31, 64, 16384}, {27, 137, 8000}};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
    const int lda = K + 3, ldb = K + 5, ldc = N + 2;
    const size_t nc = (size_t)M * ldc;
    float *A = gauss((size_t)M * lda), *B = gauss((size_t)N * ldb), *C = hbuf(nc * sizeof(float));
    double *ref = dbuf(nc);
    for (size_t i = 0; i < nc; i++) C[i] = NAN;
    for (int m = 0; m < M; m++) {
      ref[(size_t)m * ldc] = NAN, ref[(size_t)m * ldc + N + 1] = NAN; /* outside the block: untouched */
      for (int n = 0; n < N; n++) {
        double acc = 0;
        for (int k = 0; k < K; k++) acc += (double)A[(size_t)m * lda + k] * B[(size_t)n * ldb + k];
        ref[(size_t)m * ldc + n + 1] = acc;
      }
    }
    float *dC = up(D, C, nc);
    RUN(gemm_ld, false, true, M, N, K, 1.0f, up(D, A, (size_t)M * lda), lda, up(D, B, (size_t)N * ldb), ldb, 0.0f,
        dC + 1, ldc);
    char what[80];
    snprintf(what, sizeof what, "thin gemm_ld %dx%dx%d", M, N, K);
    fetch(D, C, dC, nc, "%s", what);
    int bad = 0; /* NaN must stay exactly where it was, and nowhere else */
    for (size_t i = 0; i < nc; i++) bad += isnan(C[i]) != isnan(ref[i]);
    CHECK(bad == 0, "%s: %d elements NaN where they should not be, or written outside the block", what, bad);
    for (size_t i = 0; i < nc; i++)
      if (isnan(ref[i])) C[i] = 0, ref[i] = 0;
    same(C, ref, nc, 1e-5, what);
    if (!dc_is_reference(D)) continue;
    /* the kernel itself (host memory, no driver) takes the shape where the CPU allows */
    for (size_t i = 0; i < nc; i++) C[i] = NAN;
    bool took = ct_cpu_gemm_thin(false, true, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C + 1, ldc);
    CHECK(took == avx512, "%s: thin kernel %s on a CPU %s AVX-512", what, took ? "taken" : "declined",
          avx512 ? "with" : "without (or with CT_THIN_GEMM=0)");
  }
  if (!dc_is_reference(D)) return;
  /* shapes and arguments it must leave to OpenBLAS */
  float *A = gauss((size_t)64 * 4096), *B = gauss((size_t)512 * 4096), *C = gauss((size_t)64 * 512);
  CHECK(!ct_cpu_gemm_thin(false, true, 23, 512, 4096, 1.0f, A, 4096, B, 4096, 0.0f, C, 512), "23 rows declined");
  CHECK(!ct_cpu_gemm_thin(false, true, 33, 512, 4096, 1.0f, A, 4096, B, 4096, 0.0f, C, 512), "33 rows declined");
  CHECK(!ct_cpu_gemm_thin(false, true, 32, 512, 4096, 0.5f, A, 4096, B, 4096, 0.0f, C, 512), "alpha 0.5 declined");
  CHECK(!ct_cpu_gemm_thin(false, true, 32, 512, 4096, 1.0f, A, 4096, B, 4096, 1.0f, C, 512), "beta 1 declined");
  CHECK(!ct_cpu_gemm_thin(false, false, 32, 512, 4096, 1.0f, A, 4096, B, 512, 0.0f, C, 512), "B not transposed");
  CHECK(!ct_cpu_gemm_thin(true, true, 32, 512, 4096, 1.0f, A, 32, B, 4096, 0.0f, C, 512), "A transposed declined");
  CHECK(!ct_cpu_gemm_thin(false, true, 32, 512, 200, 1.0f, A, 200, B, 200, 0.0f, C, 512), "short K declined");
}

/* conv_pw, a convolution's GEMM over several images (optional: CUDA's driver has none; the CPU's
 * declines without AVX-512): 37 x 20 weights over 3 images of 49 columns (tiles straddle
 * images), with a bias; the transposed product; x and y each as images and as one lowered
 * matrix. Compared only where every backend has the entry, so the passes stay in step. */
static void test_conv_pw(const ct_driver *D) {
  for (int b = 0; b < DC_BACKENDS; b++)
    if (dc_backends[b] && !dc_backends[b]->ops->conv_pw) return;
  COVER(conv_pw);
  const int N = 3, Kd = 20, P = 49, M = 37;
  const size_t nx = (size_t)N * Kd * P, ny = (size_t)N * M * P, cols = (size_t)N * P;
  float *w = gauss((size_t)M * Kd), *x = gauss(nx), *bias = gauss((size_t)M), *y = gauss(ny), *dx = gauss(nx);
  float *xl = hbuf(nx * sizeof(float));
  double *ry = dbuf(ny), *rdx = dbuf(nx), *ryl = dbuf(ny);
  for (int n = 0; n < N; n++)
    for (int m = 0; m < M; m++)
      for (int p = 0; p < P; p++) {
        double s = bias[m];
        for (int k = 0; k < Kd; k++) s += (double)w[(size_t)m * Kd + k] * x[((size_t)n * Kd + k) * P + p];
        ry[((size_t)n * M + m) * P + p] = s;
        ryl[(size_t)m * cols + (size_t)n * P + p] = s;
      }
  for (int n = 0; n < N; n++)
    for (int k = 0; k < Kd; k++)
      memcpy(xl + (size_t)k * cols + (size_t)n * P, x + ((size_t)n * Kd + k) * P, (size_t)P * sizeof(float));
  float *dW = up(D, w, (size_t)M * Kd), *dB = up(D, bias, (size_t)M), *dY = up(D, y, ny);
  const struct {
    const float *in;
    size_t in_img, in_row, out_img, out_row;
    const double *ref;
    const char *what;
  } runs[] = {{up(D, x, nx), (size_t)Kd * P, (size_t)P, (size_t)M * P, (size_t)P, ry, "conv_pw"},
              {up(D, xl, nx), (size_t)P, cols, (size_t)M * P, (size_t)P, ry, "conv_pw, x lowered"},
              {up(D, x, nx), (size_t)Kd * P, (size_t)P, (size_t)P, cols, ryl, "conv_pw, y lowered"}};
  for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
    const ct_status st = D->ops->conv_pw(D, false, M, Kd, P, N, dW, runs[r].in, runs[r].in_img, runs[r].in_row, dB,
                                         dY, runs[r].out_img, runs[r].out_row);
    CHECK(st == CT_OK || st == CT_EUNSUPPORTED, "%s on %s: %s", runs[r].what, D->name, ct_status_name(st));
    if (st != CT_OK) return; /* declined (no AVX-512): the same on every backend that runs the CPU's kernels */
    fetch(D, y, dY, ny, "%s", runs[r].what);
    same(y, runs[r].ref, ny, 1e-5, runs[r].what);
  }
  /* dx = w^T dy for images' gradients dy (the last product will do): the entry's M and Kd swap */
  float *dYg = up(D, y, ny), *dDX = up(D, dx, nx);
  for (size_t i = 0; i < nx; i++) rdx[i] = 0;
  for (int n = 0; n < N; n++)
    for (int k = 0; k < Kd; k++)
      for (int p = 0; p < P; p++)
        for (int m = 0; m < M; m++)
          rdx[((size_t)n * Kd + k) * P + p] += (double)w[(size_t)m * Kd + k] * y[((size_t)n * M + m) * P + p];
  OK(D->ops->conv_pw(D, true, Kd, M, P, N, dW, dYg, (size_t)M * P, (size_t)P, NULL, dDX, (size_t)Kd * P, (size_t)P));
  fetch(D, dx, dDX, nx, "conv_pw transposed");
  same(dx, rdx, nx, 1e-5, "conv_pw transposed");
}

/* ================================================================ activations */

static double ref_f(const ct_neuron *p, double x) {
  switch (p->kind) {
    case CT_NEURON_RELU: return x > 0 ? x : p->negative_slope * x;
    case CT_NEURON_ELU: return x > 0 ? x : p->alpha * (exp(x) - 1);
    case CT_NEURON_SIGMOID: return 1 / (1 + exp(-x));
    case CT_NEURON_TANH: return tanh(x);
    case CT_NEURON_ABSVAL: return fabs(x);
    case CT_NEURON_POWER: return pow(p->shift + p->scale * x, p->power);
    case CT_NEURON_EXP: return p->outer_scale * exp(p->inner_scale * x);
    case CT_NEURON_LOG: return p->base_scale * log(p->shift + p->scale * x);
    case CT_NEURON_BNLL: return log1p(exp(x));
    case CT_NEURON_THRESHOLD: return x > p->threshold ? 1 : 0;
    case CT_NEURON_CLIP: return x < p->lo ? p->lo : x > p->hi ? p->hi : x;
    case CT_NEURON_SWISH: return x / (1 + exp(-p->beta * x));
  }
  return 0;
}

static double ref_df(const ct_neuron *p, double x) {
  switch (p->kind) {
    case CT_NEURON_RELU: return x > 0 ? 1 : p->negative_slope;
    case CT_NEURON_ELU: return x > 0 ? 1 : p->alpha * exp(x);
    case CT_NEURON_SIGMOID: {
      double s = 1 / (1 + exp(-x));
      return s * (1 - s);
    }
    case CT_NEURON_TANH: return 1 - tanh(x) * tanh(x);
    case CT_NEURON_ABSVAL: return x > 0 ? 1 : x < 0 ? -1 : 0;
    case CT_NEURON_POWER: return p->power * p->scale * pow(p->shift + p->scale * x, p->power - 1);
    case CT_NEURON_EXP: return p->inner_scale * p->outer_scale * exp(p->inner_scale * x);
    case CT_NEURON_LOG: return p->base_scale * p->scale / (p->shift + p->scale * x);
    case CT_NEURON_BNLL: return 1 / (1 + exp(-x));
    case CT_NEURON_THRESHOLD: return 0;
    case CT_NEURON_CLIP: return x >= p->lo && x <= p->hi ? 1 : 0;
    case CT_NEURON_SWISH: {
      double s = 1 / (1 + exp(-p->beta * x));
      return s + p->beta * x * s * (1 - s);
    }
  }
  return 0;
}

static void test_neurons(const ct_driver *D) {
  ct_neuron cases[16];
  memset(cases, 0, sizeof cases);
  int nc = 0;
  cases[nc].kind = CT_NEURON_RELU, cases[nc++].negative_slope = 0;
  cases[nc].kind = CT_NEURON_RELU, cases[nc++].negative_slope = 0.2f;
  cases[nc].kind = CT_NEURON_ELU, cases[nc++].alpha = 0.7f;
  cases[nc++].kind = CT_NEURON_SIGMOID;
  cases[nc++].kind = CT_NEURON_TANH;
  cases[nc++].kind = CT_NEURON_ABSVAL;
  cases[nc].kind = CT_NEURON_POWER, cases[nc].power = 2.5f, cases[nc].scale = 0.5f, cases[nc++].shift = 1.0f;
  cases[nc].kind = CT_NEURON_POWER, cases[nc].power = 2.0f, cases[nc].scale = -1.5f, cases[nc++].shift = 0.25f;
  cases[nc].kind = CT_NEURON_POWER, cases[nc].power = 1.0f, cases[nc].scale = 3.0f, cases[nc++].shift = -1.0f;
  cases[nc].kind = CT_NEURON_EXP, cases[nc].inner_scale = 0.6f, cases[nc++].outer_scale = 1.5f;
  cases[nc].kind = CT_NEURON_LOG, cases[nc].scale = 2.0f, cases[nc].shift = 0.5f, cases[nc++].base_scale = 0.7f;
  cases[nc++].kind = CT_NEURON_BNLL;
  cases[nc].kind = CT_NEURON_THRESHOLD, cases[nc++].threshold = 0.3f;
  cases[nc].kind = CT_NEURON_CLIP, cases[nc].lo = -0.5f, cases[nc++].hi = 0.8f;
  cases[nc].kind = CT_NEURON_SWISH, cases[nc++].beta = 1.0f;
  cases[nc].kind = CT_NEURON_SWISH, cases[nc++].beta = -1.7f;
  const size_t n = 517;
  char what[64];
  for (int c = 0; c < nc; c++) {
    const ct_neuron *p = &cases[c];
    /* positive inputs where f needs a positive base */
    bool positive = p->kind == CT_NEURON_LOG || (p->kind == CT_NEURON_POWER && p->power == 2.5f);
    float *x = positive ? uniform(n, 0.05f, 3.0f) : gauss(n), *y = gauss(n), *dy = gauss(n), *dx = gauss(n);
    double *ry = dbuf(n), *rdx = dbuf(n);
    for (size_t i = 0; i < n; i++) ry[i] = ref_f(p, x[i]), rdx[i] = dy[i] * ref_df(p, x[i]);
    float *dX = up(D, x, n), *dY = up(D, y, n), *dDY = up(D, dy, n), *dDX = up(D, dx, n);
    RUN(neuron_forward, p, n, dX, dY);
    RUN(neuron_backward, p, n, dX, dY, dDY, dDX);
    snprintf(what, sizeof what, "neuron kind %d case %d forward", (int)p->kind, c);
    fetch(D, y, dY, n, "%s", what);
    same(y, ry, n, 2e-6, what);
    snprintf(what, sizeof what, "neuron kind %d case %d backward", (int)p->kind, c);
    fetch(D, dx, dDX, n, "%s", what);
    same(dx, rdx, n, 2e-5, what);
    /* in place: x becomes y, dy becomes dx */
    float *xy = copy_of(x, n), *d = copy_of(dy, n), *dXY = up(D, x, n), *dD = up(D, dy, n);
    RUN(neuron_forward, p, n, dXY, dXY);
    fetch(D, xy, dXY, n, "neuron case %d forward in place", c);
    same(xy, ry, n, 2e-6, "neuron forward in place");
    bool reads_y = p->kind == CT_NEURON_SIGMOID || p->kind == CT_NEURON_TANH || p->kind == CT_NEURON_EXP ||
                   p->kind == CT_NEURON_BNLL || (p->kind == CT_NEURON_RELU) || p->kind == CT_NEURON_ELU ||
                   p->kind == CT_NEURON_THRESHOLD;
    if (reads_y) {
      RUN(neuron_backward, p, n, dXY, dXY, dD, dD);
      fetch(D, d, dD, n, "neuron case %d backward in place", c);
      same(d, rdx, n, 2e-5, "neuron backward in place from y");
    }
  }
  /* ReLU bit for bit against x > 0 ? x : slope x, special values in the vector lanes and the tail */
  const float xs[11] = {-0.0f, 0.0f, NAN, INFINITY, -INFINITY, 1e-40f, -1e-40f, 3.5f, -2.0f, FLT_MAX, -FLT_MIN};
  for (int c = 0; c < 2; c++) {
    const float slope = c ? 0.2f : 0.0f;
    ct_neuron p = {0};
    p.kind = CT_NEURON_RELU, p.negative_slope = slope;
    float y[11], dx[11], dy[11], ry[11], rdx[11];
    for (int i = 0; i < 11; i++) {
      dy[i] = xs[10 - i];
      ry[i] = xs[i] > 0 ? xs[i] : slope * xs[i];
      rdx[i] = xs[i] > 0 ? dy[i] : slope * dy[i];
    }
    float *dX = up(D, xs, 11), *dY = dalloc(D, sizeof y), *dDX = dalloc(D, sizeof dx);
    RUN(neuron_forward, &p, 11, dX, dY);
    RUN(neuron_backward, &p, 11, dX, dY, up(D, dy, 11), dDX);
    fetch(D, y, dY, 11, "ReLU slope %g special values forward", (double)slope);
    fetch(D, dx, dDX, 11, "ReLU slope %g special values backward", (double)slope);
    CHECK(memcmp(y, ry, sizeof y) == 0 && memcmp(dx, rdx, sizeof dx) == 0, "ReLU slope %g bit for bit on %s",
          (double)slope, D->name);
  }
}

static void test_prelu(const ct_driver *D) {
  const size_t N = 3, C = 4, Dd = 10, n = N * C * Dd;
  for (int shared = 0; shared < 2; shared++) {
    float *x = gauss(n), *a = uniform(C, 0.1f, 0.5f), *y = gauss(n), *dy = gauss(n), *dx = gauss(n);
    float *da = uniform(C, -1, 1);
    double *ry = dbuf(n), *rdx = dbuf(n), *rda = dbuf(C);
    for (size_t c = 0; c < C; c++) rda[c] = da[c];
    for (size_t nn = 0; nn < N; nn++)
      for (size_t c = 0; c < C; c++)
        for (size_t i = 0; i < Dd; i++) {
          size_t k = (nn * C + c) * Dd + i, ai = shared ? 0 : c;
          ry[k] = x[k] > 0 ? x[k] : (double)a[ai] * x[k];
          rdx[k] = x[k] > 0 ? dy[k] : (double)a[ai] * dy[k];
          if (x[k] <= 0) rda[ai] += (double)dy[k] * x[k];
        }
    float *dX = up(D, x, n), *dA = up(D, a, C), *dY = up(D, y, n), *dDX = up(D, dx, n), *dDA = up(D, da, C);
    RUN(prelu_forward, N, C, Dd, shared, dX, dA, dY);
    RUN(prelu_backward, N, C, Dd, shared, dX, up(D, dy, n), dA, dDX, dDA);
    fetch(D, y, dY, n, "prelu shared %d forward", shared);
    fetch(D, dx, dDX, n, "prelu shared %d dx", shared);
    fetch(D, da, dDA, C, "prelu shared %d da", shared);
    same(y, ry, n, 1e-6, "prelu forward");
    same(dx, rdx, n, 1e-6, "prelu dx");
    same(da, rda, shared ? 1 : C, 1e-5, "prelu da");
  }
}

static void test_eltwise(const ct_driver *D) {
  const size_t n = 301;
  const int nx = 3;
  float *xs[3] = {gauss(n), gauss(n), gauss(n)};
  xs[1][7] = xs[0][7]; /* a tie between the first two: the later wins */
  xs[2][7] = xs[0][7] - 1.0f; /* (and the third does not beat them) */
  xs[2][9] = xs[0][9] = 5.0f; /* a tie with a later input: the earlier keeps it */
  const float *cx[3] = {up(D, xs[0], n), up(D, xs[1], n), up(D, xs[2], n)};
  const float coeff[3] = {0.5f, -1.0f, 2.0f};
  float *y = gauss(n), *dy = gauss(n), *dx = gauss(n);
  int *win = hbuf(n * sizeof(int));
  float *dY = up(D, y, n), *dDY = up(D, dy, n), *dDX = up(D, dx, n), *dCoeff = up(D, coeff, 3);
  int *dWin = up_bytes(D, win, n * sizeof(int));
  double *ry = dbuf(n), *rdx = dbuf(n);
  static const char *const names[3] = {"eltwise PROD", "eltwise SUM", "eltwise MAX"};
  for (int op = 0; op < 3; op++) {
    for (size_t i = 0; i < n; i++) {
      if (op == CT_ELTWISE_PROD) ry[i] = (double)xs[0][i] * xs[1][i] * xs[2][i];
      if (op == CT_ELTWISE_SUM) ry[i] = 0.5 * xs[0][i] - 1.0 * xs[1][i] + 2.0 * xs[2][i];
      if (op == CT_ELTWISE_MAX) {
        int w = xs[0][i] > xs[1][i] ? 0 : 1;
        if (xs[2][i] > xs[w][i]) w = 2;
        ry[i] = xs[w][i];
      }
    }
    RUN(eltwise_forward, (ct_eltwise_op)op, n, nx, cx, op == CT_ELTWISE_SUM ? dCoeff : NULL, dY, dWin);
    fetch(D, y, dY, n, "%s forward", names[op]);
    same(y, ry, n, 1e-6, names[op]);
    if (op == CT_ELTWISE_MAX) {
      fetch_bytes(D, win, dWin, n * sizeof(int), "eltwise MAX winners");
      CHECK(win[7] == 1 && win[9] == 0, "eltwise MAX ties on %s: %d %d", D->name, win[7], win[9]);
    }
    for (int k = 0; k < nx; k++)
      for (int stable = 0; stable < (op == CT_ELTWISE_PROD ? 2 : 1); stable++) {
        for (size_t i = 0; i < n; i++) {
          if (op == CT_ELTWISE_PROD) {
            double p = dy[i];
            for (int j = 0; j < nx; j++)
              if (j != k) p *= xs[j][i];
            rdx[i] = p;
          }
          if (op == CT_ELTWISE_SUM) rdx[i] = coeff[k] * (double)dy[i];
          if (op == CT_ELTWISE_MAX) rdx[i] = win[i] == k ? dy[i] : 0;
        }
        RUN(eltwise_backward, (ct_eltwise_op)op, n, nx, cx, k, op == CT_ELTWISE_SUM ? dCoeff : NULL, stable, dY,
            dDY, dWin, dDX);
        fetch(D, dx, dDX, n, "%s backward input %d stable %d", names[op], k, stable);
        same(dx, rdx, n, 1e-4, "eltwise backward");
      }
  }
}

/* ================================================================ Bias, Scale, BatchNorm */

static void test_broadcast(const ct_driver *D) {
  const size_t shapes[][3] = {{3, 5, 7}, {4, 6, 1}, {1, 3, 11}};
  for (size_t si = 0; si < 3; si++) {
    const size_t O = shapes[si][0], Dm = shapes[si][1], I = shapes[si][2], n = O * Dm * I;
    float *x = gauss(n), *s = gauss(Dm), *b = gauss(Dm), *y = gauss(n), *dy = gauss(n), *dx = gauss(n);
    float *ds = gauss(Dm), *db = gauss(Dm), *db0 = copy_of(db, Dm);
    double *ry = dbuf(n), *rdx = dbuf(n), *rds = dbuf(Dm), *rdb = dbuf(Dm);
    float *dX = up(D, x, n), *dS = up(D, s, Dm), *dB = up(D, b, Dm), *dY = up(D, y, n), *dDY = up(D, dy, n);
    for (size_t o = 0; o < O; o++)
      for (size_t d = 0; d < Dm; d++)
        for (size_t i = 0; i < I; i++) ry[(o * Dm + d) * I + i] = (double)x[(o * Dm + d) * I + i] + b[d];
    RUN(bias_forward, O, Dm, I, dX, dB, dY);
    fetch(D, y, dY, n, "bias forward shape %zu", si);
    same(y, ry, n, 1e-6, "bias forward");
    float *xi = copy_of(x, n), *dXI = up(D, x, n);
    RUN(bias_forward, O, Dm, I, dXI, dB, dXI);
    fetch(D, xi, dXI, n, "bias forward in place shape %zu", si);
    same(xi, ry, n, 1e-6, "bias forward in place");
    for (int with_b = 0; with_b < 2; with_b++) {
      for (size_t o = 0; o < O; o++)
        for (size_t d = 0; d < Dm; d++)
          for (size_t i = 0; i < I; i++) {
            size_t k = (o * Dm + d) * I + i;
            ry[k] = (double)x[k] * s[d] + (with_b ? b[d] : 0);
          }
      RUN(scale_forward, O, Dm, I, dX, dS, with_b ? dB : NULL, dY);
      fetch(D, y, dY, n, "scale forward shape %zu bias %d", si, with_b);
      same(y, ry, n, 1e-6, with_b ? "scale forward with bias" : "scale forward");
    }
    for (size_t d = 0; d < Dm; d++) rds[d] = ds[d], rdb[d] = db[d];
    for (size_t o = 0; o < O; o++)
      for (size_t d = 0; d < Dm; d++)
        for (size_t i = 0; i < I; i++) {
          size_t k = (o * Dm + d) * I + i;
          rds[d] += (double)dy[k] * x[k];
          rdb[d] += dy[k];
          rdx[k] = (double)dy[k] * s[d];
        }
    float *dDS = up(D, ds, Dm), *dDB = up(D, db, Dm), *dDX = up(D, dx, n);
    RUN(scale_backward, O, Dm, I, dX, dDY, dS, dDS, dDB, dDX);
    fetch(D, ds, dDS, Dm, "scale backward ds shape %zu", si);
    fetch(D, db, dDB, Dm, "scale backward db shape %zu", si);
    fetch(D, dx, dDX, n, "scale backward dx shape %zu", si);
    same(ds, rds, Dm, 1e-5, "scale backward ds");
    same(db, rdb, Dm, 1e-5, "scale backward db");
    same(dx, rdx, n, 1e-6, "scale backward dx");
    put(D, dDB, db0, Dm);
    RUN(scale_backward, O, Dm, I, NULL, dDY, NULL, NULL, dDB, NULL); /* Bias's use */
    fetch(D, db, dDB, Dm, "scale backward db alone shape %zu", si);
    same(db, rdb, Dm, 1e-5, "scale backward db alone");
  }
}

static void test_batchnorm(const ct_driver *D) {
  const size_t N = 3, C = 4, S = 6, n = N * C * S;
  for (int global = 0; global < 2; global++) {
    ct_batchnorm p = {N, C, S, global, 0.9f, 1e-5f};
    float *x = gauss(n), *y = gauss(n), *z = gauss(n), *mean = gauss(C), *std = gauss(C);
    float *rm = gauss(C), *rv = uniform(C, 0.5f, 2.0f), rf = 2.5f;
    float *rm0 = copy_of(rm, C), *rv0 = copy_of(rv, C), *dy = gauss(n), *dx = gauss(n);
    double *ry = dbuf(n), *rdx = dbuf(n), *mu = dbuf(C), *sd = dbuf(C), *rrm = dbuf(C), *rrv = dbuf(C);
    const double m = (double)(N * S);
    for (size_t c = 0; c < C; c++) {
      if (global) {
        mu[c] = rm0[c] / rf;
        sd[c] = sqrt(rv0[c] / rf + p.eps);
        continue;
      }
      double s = 0, v = 0;
      for (size_t a = 0; a < N; a++)
        for (size_t i = 0; i < S; i++) s += x[(a * C + c) * S + i];
      mu[c] = s / m;
      for (size_t a = 0; a < N; a++)
        for (size_t i = 0; i < S; i++) v += pow(x[(a * C + c) * S + i] - mu[c], 2);
      sd[c] = sqrt(v / m + p.eps);
      rrm[c] = mu[c] + 0.9 * rm0[c];
      rrv[c] = m / (m - 1) * (v / m) + 0.9 * rv0[c];
    }
    for (size_t a = 0; a < N; a++)
      for (size_t c = 0; c < C; c++)
        for (size_t i = 0; i < S; i++) {
          size_t k = (a * C + c) * S + i;
          ry[k] = (x[k] - mu[c]) / sd[c];
        }
    float *dY = up(D, y, n), *dZ = up(D, z, n), *dMean = up(D, mean, C), *dStd = up(D, std, C);
    float *dRM = up(D, rm, C), *dRV = up(D, rv, C), *dRF = up(D, &rf, 1);
    RUN(batchnorm_forward, &p, up(D, x, n), dY, dZ, dMean, dStd, dRM, dRV, dRF);
    const char *fw = global ? "batchnorm forward (global)" : "batchnorm forward";
    fetch(D, y, dY, n, "%s: y", fw);
    fetch(D, z, dZ, n, "%s: xnorm", fw);
    fetch(D, mean, dMean, C, "%s: mean", fw);
    fetch(D, std, dStd, C, "%s: std", fw);
    fetch(D, rm, dRM, C, "%s: running mean", fw);
    fetch(D, rv, dRV, C, "%s: running variance", fw);
    fetch(D, &rf, dRF, 1, "%s: running factor", fw);
    same(y, ry, n, 1e-5, fw);
    same(z, ry, n, 1e-5, "batchnorm keeps xnorm");
    if (!global) {
      same(rm, rrm, C, 1e-5, "batchnorm running mean");
      same(rv, rrv, C, 1e-5, "batchnorm running variance");
      CHECK_CLOSE(rf, 2.5 * 0.9 + 1, 1e-6, 0, "batchnorm running factor on %s", D->name);
    }
    for (size_t c = 0; c < C; c++) {
      double a = 0, b = 0;
      for (size_t q = 0; q < N; q++)
        for (size_t i = 0; i < S; i++) {
          size_t k = (q * C + c) * S + i;
          a += dy[k], b += (double)dy[k] * ry[k];
        }
      a /= m, b /= m;
      for (size_t q = 0; q < N; q++)
        for (size_t i = 0; i < S; i++) {
          size_t k = (q * C + c) * S + i;
          rdx[k] = global ? dy[k] / sd[c] : (dy[k] - a - b * ry[k]) / sd[c];
        }
    }
    float *dDX = up(D, dx, n);
    RUN(batchnorm_backward, &p, up(D, dy, n), dZ, dStd, dDX);
    const char *bw = global ? "batchnorm backward (global)" : "batchnorm backward";
    fetch(D, dx, dDX, n, "%s", bw);
    same(dx, rdx, n, 1e-4, bw);
  }
}

/* ================================================================ the solver update */

static void test_update(const ct_driver *D) {
  const size_t n = 257;
  for (int rule = CT_RULE_SGD; rule <= CT_RULE_ADAM; rule++)
    for (int variant = 0; variant < 4; variant++) { /* 3: the gradient left zeroed */
      ct_update_step st = {(ct_update_rule)rule, variant == 1 ? 0.5f : 1.0f, variant ? 0.01f : 0.0f, variant == 2,
                           0.05f, rule == CT_RULE_ADAGRAD || rule == CT_RULE_RMSPROP ? 0.0f : 0.9f, 0.999f, 0.95f,
                           1e-6f, variant == 3};
      float *w = gauss(n), *g = gauss(n), *h0 = uniform(n, 0, 0.5f), *h1 = uniform(n, 0, 0.5f);
      double *rw = dbuf(n), *rg = dbuf(n), *rh0 = dbuf(n), *rh1 = dbuf(n);
      for (size_t i = 0; i < n; i++) {
        double gi = g[i] * (double)st.grad_scale, wi = w[i], a = h0[i], b = h1[i];
        gi += st.l1 ? st.decay * (double)((wi > 0) - (wi < 0)) : st.decay * wi;
        const double lr = st.rate, m = st.momentum, eps = st.delta;
        switch (st.rule) {
          case CT_RULE_SGD: a = m * a + lr * gi, gi = a; break;
          case CT_RULE_NESTEROV: {
            double prev = a;
            a = m * a + lr * gi;
            gi = (1 + m) * a - m * prev;
            break;
          }
          case CT_RULE_ADAGRAD: a += gi * gi, gi = lr * gi / (sqrt(a) + eps); break;
          case CT_RULE_RMSPROP:
            a = st.rms_decay * a + (1 - st.rms_decay) * gi * gi, gi = lr * gi / (sqrt(a) + eps);
            break;
          case CT_RULE_ADADELTA: {
            a = m * a + (1 - m) * gi * gi;
            double step = gi * sqrt((b + eps) / (a + eps));
            b = m * b + (1 - m) * step * step;
            gi = lr * step;
            break;
          }
          case CT_RULE_ADAM:
            a = m * a + (1 - m) * gi;
            b = st.momentum2 * b + (1 - st.momentum2) * gi * gi;
            gi = lr * a / (sqrt(b) + eps);
            break;
        }
        rw[i] = wi - gi, rg[i] = variant == 3 ? 0.0 : gi, rh0[i] = a, rh1[i] = b;
      }
      bool two = rule == CT_RULE_ADADELTA || rule == CT_RULE_ADAM;
      float *dW = up(D, w, n), *dG = up(D, g, n), *dH0 = up(D, h0, n), *dH1 = up(D, h1, n);
      RUN(update, &st, n, dW, dG, dH0, two ? dH1 : NULL);
      char what[64];
      snprintf(what, sizeof what, "update rule %d variant %d: data", rule, variant);
      fetch(D, w, dW, n, "%s", what);
      same(w, rw, n, 1e-5, what);
      snprintf(what, sizeof what, "update rule %d variant %d: step", rule, variant);
      fetch(D, g, dG, n, "%s", what);
      same(g, rg, n, 1e-4, what);
      snprintf(what, sizeof what, "update rule %d variant %d: history", rule, variant);
      fetch(D, h0, dH0, n, "%s", what);
      same(h0, rh0, n, 1e-5, what);
      if (two) {
        fetch(D, h1, dH1, n, "%s 2", what);
        same(h1, rh1, n, 1e-5, what);
      }
    }
}

/* ================================================================ dropout's mask */

/* The mask as a whole and drawn in two pieces (two partitions of one layer, offset by the first's
 * length) must agree, hold only 0 and the scale, keep 1 - p of the elements (within 5 standard
 * deviations), and change with the seed; across backends, fetch holds every mask to the CPU's. */
static void test_dropout_mask(const ct_driver *D) {
  const size_t n = 100003, k = 40001;
  const float ratio = 0.35f, scale = 1.0f / 0.65f;
  float *m = hbuf(n * sizeof(float)), *m2 = hbuf(n * sizeof(float)), *m3 = hbuf(n * sizeof(float));
  float *dM = dalloc(D, n * sizeof(float)), *dM2 = dalloc(D, n * sizeof(float));
  RUN(dropout_mask, 987654321ull, 0, n, ratio, scale, dM);
  fetch(D, m, dM, n, "dropout mask");
  RUN(dropout_mask, 987654321ull, 0, k, ratio, scale, dM2);
  RUN(dropout_mask, 987654321ull, k, n - k, ratio, scale, dM2 + k);
  fetch(D, m2, dM2, n, "dropout mask in two pieces");
  CHECK(!memcmp(m, m2, n * sizeof(float)), "dropout mask: two pieces with offsets draw the whole mask");
  RUN(dropout_mask, 987654322ull, 0, n, ratio, scale, dM2);
  fetch(D, m3, dM2, n, "dropout mask, another seed");
  size_t kept = 0, odd = 0, differ = 0;
  for (size_t i = 0; i < n; i++) {
    kept += m[i] != 0.0f;
    odd += m[i] != 0.0f && m[i] != scale;
    differ += (m[i] != 0.0f) != (m3[i] != 0.0f);
  }
  const double sd = sqrt(n * 0.65 * 0.35);
  CHECK(odd == 0, "dropout mask: %zu values neither 0 nor the scale", odd);
  CHECK(fabs((double)kept - n * 0.65) <= 5 * sd, "dropout mask kept %zu of %zu (expected %.0f +- %.0f)", kept, n,
        n * 0.65, 5 * sd);
  /* independent masks disagree on 2 p (1 - p) of the elements */
  CHECK(fabs((double)differ / n - 2 * 0.35 * 0.65) < 0.01, "seeds 1 apart disagree on %.4f of the elements",
        (double)differ / n);
}

int main(void) {
  static const dc_test tests[] = {
      {"memory", test_memory},
      {"blas", test_blas},
      {"thin gemm", test_thin_gemm},
      {"conv_pw", test_conv_pw},
      {"neurons", test_neurons},
      {"prelu", test_prelu},
      {"eltwise", test_eltwise},
      {"broadcast", test_broadcast},
      {"batchnorm", test_batchnorm},
      {"update", test_update},
      {"dropout mask", test_dropout_mask},
  };
  return dc_main(tests, sizeof tests / sizeof tests[0], DC_CORE, 20240);
}
