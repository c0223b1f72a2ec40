/* Every entry of the CPU driver (ct_driver_cpu) against a naive reference loop written here, in
 * double where it matters: memory, BLAS (GEMM in all four transpose combinations), element-wise,
 * activations, broadcast layers, BatchNorm, the lowering steps (by their adjoints and by a
 * direct convolution, for every lowering type), pooling, LRN, softmax, losses, evaluation and
 * every solver update rule. Every status an entry returns is checked (the CPU's is CT_OK). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "drivers/cpu/kernels.h"
#include "drivers/driver.h"
#include "lowering/lowering.h"

static const ct_driver *D;
static ct_rng R;

static float *gauss(size_t n) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = ct_rng_gaussian(&R, 0, 1);
  return p;
}

static float *uniform(size_t n, float lo, float hi) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * (float)ct_rng_uniform01(&R);
  return p;
}

static float *copy_of(const float *x, size_t n) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  memcpy(p, x, n * sizeof(float));
  return p;
}

/* max |a - b| <= tol * max(1, max |b|), one CHECK for the whole buffer */
static void same(const float *a, const double *b, size_t n, double tol, const char *what) {
  double scale = 1.0, worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < n; i++)
    if (fabs(b[i]) > scale) scale = fabs(b[i]);
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= worst)) {
      worst = d;
      at = i;
    }
  }
  CHECK(worst <= tol * scale, "%s: element %zu: %.8g vs reference %.8g (scale %g)", what, at, n ? a[at] : 0.0,
        n ? b[at] : 0.0, scale);
}

static double *dbuf(size_t n) { return calloc(n ? n : 1, sizeof(double)); }

/* A driver entry's status: anything but CT_OK fails the test, naming the call. */
#define OK(call)                                                       \
  do {                                                                 \
    const ct_status ok_ = (call);                                      \
    CHECK(ok_ == CT_OK, "%s returned %s", #call, ct_status_name(ok_)); \
  } while (0)

/* ================================================================ memory */

static void test_memory(void) {
  const ct_driver_ops *o = D->ops;
  float *a = o->alloc(D, 100 * sizeof(float)), *b = o->alloc(D, 100 * sizeof(float));
  void *z = o->alloc(D, 0);
  CHECK(a && b && z, "alloc");
  CHECK(((uintptr_t)a & 63) == 0 && ((uintptr_t)b & 63) == 0, "alloc is 64-byte aligned");
  float host[100], back[100];
  for (int i = 0; i < 100; i++) host[i] = (float)i * 0.5f;
  OK(o->upload(D, a, host, sizeof host));
  OK(o->copy(D, b, a, sizeof host));
  OK(o->download(D, back, b, sizeof back));
  CHECK(memcmp(host, back, sizeof host) == 0, "upload, copy, download round trip");
  OK(o->memset(D, b, 0, 50 * sizeof(float)));
  OK(o->download(D, back, b, sizeof back));
  bool ok = true;
  for (int i = 0; i < 100; i++) ok &= back[i] == (i < 50 ? 0.0f : host[i]);
  CHECK(ok, "memset covers exactly its bytes");
  /* 2-D: 4 rows of 3 floats from pitch 10 into pitch 5 */
  OK(o->memset(D, b, 0, 100 * sizeof(float)));
  OK(o->copy_2d(D, 4, 3 * sizeof(float), b + 1, 5 * sizeof(float), a + 2, 10 * sizeof(float)));
  OK(o->download(D, back, b, sizeof back));
  ok = true;
  for (int r = 0; r < 20; r++)
    for (int c = 0; c < 5; c++) {
      float want = r < 4 && c >= 1 && c < 4 ? host[r * 10 + 2 + (c - 1)] : 0.0f;
      ok &= back[r * 5 + c] == want;
    }
  CHECK(ok, "copy_2d moves rows between pitches");
  o->free(D, a);
  o->free(D, b);
  o->free(D, z);
  o->free(D, NULL);
  double gf = 0, gb = 0;
  o->calibration(D, &gf, &gb);
  CHECK(gf > 0 && gb > 0 && isfinite(gf) && isfinite(gb), "calibration %g GFLOP/s %g GB/s", gf, gb);
  ct_driver *own = NULL;
  ct_error err = {0};
  CHECK(ct_driver_create("cpu", NULL, &own, &err) == CT_OK && own && strcmp(own->device, "cpu") == 0, "create cpu");
  ct_driver_free(own);
  CHECK(ct_driver_create("cuda:0", NULL, &own, &err) == CT_EUNSUPPORTED && !own, "no CUDA driver in this build");
  CHECK(strstr(err.msg, "cuda:0") != NULL, "the message names the device: %s", err.msg);
  CHECK(strcmp(D->device, "cpu") == 0 && D->index == 0, "the shared CPU driver");
}

/* ================================================================ BLAS and element-wise */

static void test_blas(void) {
  const int shapes[][3] = {{1, 1, 1}, {5, 7, 3}, {33, 17, 40}, {2, 64, 9}};
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
        OK(D->ops->gemm(D, ta, tb, M, N, K, alpha, A, B, beta, C));
        char what[64];
        snprintf(what, sizeof what, "gemm %dx%dx%d trans %d%d", M, N, K, ta, tb);
        same(C, ref, (size_t)M * N, 1e-5, what);
        free(A), free(B), free(C), free(ref);
      }
    /* gemm_ld: the same product on blocks of larger matrices (3 spare columns each side);
     * what lies outside C's block must stay as it was */
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        const int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
        const int lda = ac + 3, ldb = bc + 3, ldc = N + 3;
        float *A = gauss((size_t)ar * lda), *B = gauss((size_t)br * ldb), *C = gauss((size_t)M * ldc);
        float *C0 = malloc((size_t)M * ldc * sizeof(float));
        memcpy(C0, C, (size_t)M * ldc * sizeof(float));
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
        OK(D->ops->gemm_ld(D, ta, tb, M, N, K, 1.25f, A + 2, lda, B, ldb, -0.5f, C + 1, ldc));
        char what[64];
        snprintf(what, sizeof what, "gemm_ld %dx%dx%d trans %d%d", M, N, K, ta, tb);
        same(C, ref, (size_t)M * ldc, 1e-5, what);
        free(A), free(B), free(C), free(C0), free(ref);
      }
    for (int ta = 0; ta < 2; ta++) {
      float *A = gauss((size_t)M * N), *x = gauss(ta ? (size_t)M : (size_t)N), *y = gauss(ta ? (size_t)N : (size_t)M);
      int ny = ta ? N : M;
      double *ref = dbuf((size_t)ny);
      for (int i = 0; i < ny; i++) {
        double s = 0;
        for (int j = 0; j < (ta ? M : N); j++) s += (double)(ta ? A[(size_t)j * N + i] : A[(size_t)i * N + j]) * x[j];
        ref[i] = 1.5 * s + 0.25 * y[i];
      }
      OK(D->ops->gemv(D, ta, M, N, 1.5f, A, x, 0.25f, y));
      same(y, ref, (size_t)ny, 1e-5, ta ? "gemv trans" : "gemv");
      free(A), free(x), free(y), free(ref);
    }
  }
  const size_t n = 1003;
  float *x = gauss(n), *y = gauss(n), *y0 = copy_of(y, n), *out = gauss(n);
  double *ref = dbuf(n);
  for (size_t i = 0; i < n; i++) ref[i] = y0[i] + 0.3 * (double)x[i];
  OK(D->ops->axpy(D, n, 0.3f, x, y));
  same(y, ref, n, 1e-6, "axpy");
  for (size_t i = 0; i < n; i++) ref[i] = -2.5 * (double)x[i];
  OK(D->ops->scal(D, n, -2.5f, x, out));
  same(out, ref, n, 1e-6, "scal");
  OK(D->ops->scal(D, n, -2.5f, out, out));
  for (size_t i = 0; i < n; i++) ref[i] = 6.25 * (double)x[i];
  same(out, ref, n, 1e-6, "scal in place");
  double dot = 0, asum = 0, ss = 1.25;
  for (size_t i = 0; i < n; i++) dot += (double)x[i] * y0[i], asum += fabs((double)x[i]), ss += (double)x[i] * x[i];
  float got_dot = NAN, got_asum = NAN;
  double got_ss = NAN, first = NAN, both = NAN;
  OK(D->ops->dot(D, n, x, y0, &got_dot));
  CHECK_CLOSE(got_dot, dot, 1e-5, 1e-5, "dot");
  OK(D->ops->asum(D, n, x, &got_asum));
  CHECK_CLOSE(got_asum, asum, 1e-5, 1e-5, "asum");
  OK(D->ops->sumsq(D, n, x, 1.25, &got_ss));
  CHECK_CLOSE(got_ss, ss, 1e-12, 0, "sumsq from an accumulator");
  OK(D->ops->sumsq(D, 500, x, 1.25, &first));
  OK(D->ops->sumsq(D, n - 500, x + 500, first, &both));
  CHECK(both == got_ss, "sumsq over two ranges is one running sum");
  for (int op = 0; op < 3; op++) {
    for (size_t i = 0; i < n; i++)
      ref[i] = op == 0 ? (double)x[i] + y0[i] : op == 1 ? (double)x[i] - y0[i] : (double)x[i] * y0[i];
    if (op == 0) OK(D->ops->add(D, n, x, y0, out));
    if (op == 1) OK(D->ops->sub(D, n, x, y0, out));
    if (op == 2) OK(D->ops->mul(D, n, x, y0, out));
    same(out, ref, n, 1e-6, op == 0 ? "add" : op == 1 ? "sub" : "mul");
  }
  memcpy(out, x, n * sizeof(float));
  OK(D->ops->add(D, n, out, y0, out));
  for (size_t i = 0; i < n; i++) ref[i] = (double)x[i] + y0[i];
  same(out, ref, n, 1e-6, "add in place");
  free(x), free(y), free(y0), free(out), free(ref);
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
  }
  return 0;
}

/* The thin GEMM (cpu/thin_gemm.c, a fully-connected layer's C = x W^T for 24 to 32 rows):
 * through gemm_ld on blocks of larger matrices, with C's block full of NaN (beta 0 must not
 * read it), for row counts and column counts that reach every tile width (12, 4, 1). On a CPU
 * with AVX-512 the thin kernel must take these shapes; elsewhere they go to OpenBLAS and the
 * comparison still holds. */
static void test_thin_gemm(void) {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const int shapes[][3] = {{32, 521, 2048}, {24, 77, 13700}, {31, 64, 16384}, {27, 137, 8000}};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
    const int lda = K + 3, ldb = K + 5, ldc = N + 2;
    float *A = gauss((size_t)M * lda), *B = gauss((size_t)N * ldb), *C = malloc((size_t)M * ldc * sizeof(float));
    double *ref = dbuf((size_t)M * ldc);
    for (size_t i = 0; i < (size_t)M * ldc; i++) C[i] = NAN;
    for (int m = 0; m < M; m++) {
      ref[(size_t)m * ldc] = NAN, ref[(size_t)m * ldc + N + 1] = NAN; /* outside the block: untouched */
      for (int n = 0; n < N; n++) {
        double acc = 0;
        for (int k = 0; k < K; k++) acc += (double)A[(size_t)m * lda + k] * B[(size_t)n * ldb + k];
        ref[(size_t)m * ldc + n + 1] = acc;
      }
    }
    OK(D->ops->gemm_ld(D, false, true, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C + 1, ldc));
    char what[80];
    snprintf(what, sizeof what, "thin gemm_ld %dx%dx%d", M, N, K);
    int bad = 0; /* NaN must stay exactly where it was, and nowhere else */
    for (size_t i = 0; i < (size_t)M * ldc; i++) bad += isnan(C[i]) != isnan(ref[i]);
    CHECK(bad == 0, "%s: %d elements NaN where they should not be, or written outside the block", what, bad);
    for (size_t i = 0; i < (size_t)M * ldc; i++)
      if (isnan(ref[i])) C[i] = 0, ref[i] = 0;
    same(C, ref, (size_t)M * ldc, 1e-5, what);
    /* the kernel itself takes the shape where the CPU allows */
    for (size_t i = 0; i < (size_t)M * ldc; i++) C[i] = NAN;
    bool took = ct_cpu_gemm_thin(false, true, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C + 1, ldc);
    CHECK(took == avx512, "%s: thin kernel %s on a CPU %s AVX-512", what, took ? "taken" : "declined",
          avx512 ? "with" : "without");
    free(A), free(B), free(C), free(ref);
  }
  /* shapes and arguments it must leave to OpenBLAS */
  float *A = gauss((size_t)64 * 4096), *B = gauss((size_t)512 * 4096), *C = gauss((size_t)64 * 512);
  CHECK(!ct_cpu_gemm_thin(false, true, 23, 512, 4096, 1.0f, A, 4096, B, 4096, 0.0f, C, 512), "23 rows declined");
  CHECK(!ct_cpu_gemm_thin(false, true, 33, 512, 4096, 1.0f, A, 4096, B, 4096, 0.0f, C, 512), "33 rows declined");
  CHECK(!ct_cpu_gemm_thin(false, true, 32, 512, 4096, 0.5f, A, 4096, B, 4096, 0.0f, C, 512), "alpha 0.5 declined");
  CHECK(!ct_cpu_gemm_thin(false, true, 32, 512, 4096, 1.0f, A, 4096, B, 4096, 1.0f, C, 512), "beta 1 declined");
  CHECK(!ct_cpu_gemm_thin(false, false, 32, 512, 4096, 1.0f, A, 4096, B, 512, 0.0f, C, 512), "B not transposed");
  CHECK(!ct_cpu_gemm_thin(true, true, 32, 512, 4096, 1.0f, A, 32, B, 4096, 0.0f, C, 512), "A transposed declined");
  CHECK(!ct_cpu_gemm_thin(false, true, 32, 512, 200, 1.0f, A, 200, B, 200, 0.0f, C, 512), "short K declined");
  free(A), free(B), free(C);
}

static void test_neurons(void) {
  ct_neuron cases[12];
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
  const size_t n = 517;
  for (int c = 0; c < nc; c++) {
    const ct_neuron *p = &cases[c];
    /* positive inputs where f needs a positive base */
    bool positive = p->kind == CT_NEURON_LOG || (p->kind == CT_NEURON_POWER && p->power == 2.5f);
    float *x = positive ? uniform(n, 0.05f, 3.0f) : gauss(n), *y = gauss(n), *dy = gauss(n), *dx = gauss(n);
    double *ry = dbuf(n), *rdx = dbuf(n);
    for (size_t i = 0; i < n; i++) ry[i] = ref_f(p, x[i]), rdx[i] = dy[i] * ref_df(p, x[i]);
    OK(D->ops->neuron_forward(D, p, n, x, y));
    OK(D->ops->neuron_backward(D, p, n, x, y, dy, dx));
    char what[64];
    snprintf(what, sizeof what, "neuron kind %d case %d forward", (int)p->kind, c);
    same(y, ry, n, 2e-6, what);
    snprintf(what, sizeof what, "neuron kind %d case %d backward", (int)p->kind, c);
    same(dx, rdx, n, 2e-5, what);
    /* in place: x becomes y, dy becomes dx */
    float *xy = copy_of(x, n), *d = copy_of(dy, n);
    OK(D->ops->neuron_forward(D, p, n, xy, xy));
    same(xy, ry, n, 2e-6, "neuron forward in place");
    bool reads_y = p->kind == CT_NEURON_SIGMOID || p->kind == CT_NEURON_TANH || p->kind == CT_NEURON_EXP ||
                   p->kind == CT_NEURON_BNLL || (p->kind == CT_NEURON_RELU) || p->kind == CT_NEURON_ELU;
    if (reads_y) {
      OK(D->ops->neuron_backward(D, p, n, xy, xy, d, d));
      same(d, rdx, n, 2e-5, "neuron backward in place from y");
    }
    free(x), free(y), free(dy), free(dx), free(ry), free(rdx), free(xy), free(d);
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
    OK(D->ops->neuron_forward(D, &p, 11, xs, y));
    OK(D->ops->neuron_backward(D, &p, 11, xs, y, dy, dx));
    CHECK(memcmp(y, ry, sizeof y) == 0 && memcmp(dx, rdx, sizeof dx) == 0, "ReLU slope %g bit for bit", (double)slope);
  }
}

static void test_prelu(void) {
  const size_t N = 3, C = 4, Dd = 10, n = N * C * Dd;
  for (int shared = 0; shared < 2; shared++) {
    float *x = gauss(n), *a = uniform(C, 0.1f, 0.5f), *y = gauss(n), *dy = gauss(n), *dx = gauss(n);
    float *da = uniform(C, -1, 1), *da0 = copy_of(da, C);
    double *ry = dbuf(n), *rdx = dbuf(n), *rda = dbuf(C);
    for (size_t c = 0; c < C; c++) rda[c] = da0[c];
    for (size_t nn = 0; nn < N; nn++)
      for (size_t c = 0; c < C; c++)
        for (size_t i = 0; i < Dd; i++) {
          size_t k = (nn * C + c) * Dd + i, ai = shared ? 0 : c;
          ry[k] = x[k] > 0 ? x[k] : (double)a[ai] * x[k];
          rdx[k] = x[k] > 0 ? dy[k] : (double)a[ai] * dy[k];
          if (x[k] <= 0) rda[ai] += (double)dy[k] * x[k];
        }
    OK(D->ops->prelu_forward(D, N, C, Dd, shared, x, a, y));
    OK(D->ops->prelu_backward(D, N, C, Dd, shared, x, dy, a, dx, da));
    same(y, ry, n, 1e-6, "prelu forward");
    same(dx, rdx, n, 1e-6, "prelu dx");
    same(da, rda, shared ? 1 : C, 1e-5, "prelu da");
    free(x), free(a), free(y), free(dy), free(dx), free(da), free(da0), free(ry), free(rdx), free(rda);
  }
}

static void test_eltwise(void) {
  const size_t n = 301;
  const int nx = 3;
  float *xs[3] = {gauss(n), gauss(n), gauss(n)};
  xs[1][7] = xs[0][7]; /* a tie between the first two: the later wins */
  xs[2][7] = xs[0][7] - 1.0f; /* (and the third does not beat them) */
  xs[2][9] = xs[0][9] = 5.0f; /* a tie with a later input: the earlier keeps it */
  const float *cx[3] = {xs[0], xs[1], xs[2]};
  const float coeff[3] = {0.5f, -1.0f, 2.0f};
  float *y = gauss(n), *dy = gauss(n), *dx = gauss(n);
  int *win = malloc(n * sizeof(int));
  double *ry = dbuf(n), *rdx = dbuf(n);
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
    OK(D->ops->eltwise_forward(D, (ct_eltwise_op)op, n, nx, cx, op == CT_ELTWISE_SUM ? coeff : NULL, y, win));
    same(y, ry, n, 1e-6, op == 0 ? "eltwise PROD" : op == 1 ? "eltwise SUM" : "eltwise MAX");
    if (op == CT_ELTWISE_MAX) CHECK(win[7] == 1 && win[9] == 0, "eltwise MAX ties: %d %d", win[7], win[9]);
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
        OK(D->ops->eltwise_backward(D, (ct_eltwise_op)op, n, nx, cx, k, op == CT_ELTWISE_SUM ? coeff : NULL, stable, y,
                                    dy, win, dx));
        same(dx, rdx, n, 1e-4, "eltwise backward");
      }
  }
  for (int k = 0; k < 3; k++) free(xs[k]);
  free(y), free(dy), free(dx), free(win), free(ry), free(rdx);
}

/* ================================================================ Bias, Scale, BatchNorm */

static void test_broadcast(void) {
  const size_t shapes[][3] = {{3, 5, 7}, {4, 6, 1}, {1, 3, 11}};
  for (size_t si = 0; si < 3; si++) {
    const size_t O = shapes[si][0], Dm = shapes[si][1], I = shapes[si][2], n = O * Dm * I;
    float *x = gauss(n), *s = gauss(Dm), *b = gauss(Dm), *y = gauss(n), *dy = gauss(n), *dx = gauss(n);
    float *ds = gauss(Dm), *db = gauss(Dm), *ds0 = copy_of(ds, Dm), *db0 = copy_of(db, Dm);
    double *ry = dbuf(n), *rdx = dbuf(n), *rds = dbuf(Dm), *rdb = dbuf(Dm);
    for (size_t o = 0; o < O; o++)
      for (size_t d = 0; d < Dm; d++)
        for (size_t i = 0; i < I; i++) ry[(o * Dm + d) * I + i] = (double)x[(o * Dm + d) * I + i] + b[d];
    OK(D->ops->bias_forward(D, O, Dm, I, x, b, y));
    same(y, ry, n, 1e-6, "bias forward");
    float *xi = copy_of(x, n);
    OK(D->ops->bias_forward(D, O, Dm, I, xi, b, xi));
    same(xi, ry, n, 1e-6, "bias forward in place");
    for (int with_b = 0; with_b < 2; with_b++) {
      for (size_t o = 0; o < O; o++)
        for (size_t d = 0; d < Dm; d++)
          for (size_t i = 0; i < I; i++) {
            size_t k = (o * Dm + d) * I + i;
            ry[k] = (double)x[k] * s[d] + (with_b ? b[d] : 0);
          }
      OK(D->ops->scale_forward(D, O, Dm, I, x, s, with_b ? b : NULL, y));
      same(y, ry, n, 1e-6, with_b ? "scale forward with bias" : "scale forward");
    }
    for (size_t d = 0; d < Dm; d++) rds[d] = ds0[d], rdb[d] = db0[d];
    for (size_t o = 0; o < O; o++)
      for (size_t d = 0; d < Dm; d++)
        for (size_t i = 0; i < I; i++) {
          size_t k = (o * Dm + d) * I + i;
          rds[d] += (double)dy[k] * x[k];
          rdb[d] += dy[k];
          rdx[k] = (double)dy[k] * s[d];
        }
    OK(D->ops->scale_backward(D, O, Dm, I, x, dy, s, ds, db, dx));
    same(ds, rds, Dm, 1e-5, "scale backward ds");
    same(db, rdb, Dm, 1e-5, "scale backward db");
    same(dx, rdx, n, 1e-6, "scale backward dx");
    memcpy(db, db0, Dm * sizeof(float));
    OK(D->ops->scale_backward(D, O, Dm, I, NULL, dy, NULL, NULL, db, NULL)); /* Bias's use */
    same(db, rdb, Dm, 1e-5, "scale backward db alone");
    free(x), free(s), free(b), free(y), free(dy), free(dx), free(ds), free(db), free(ds0), free(db0), free(xi);
    free(ry), free(rdx), free(rds), free(rdb);
  }
}

static void test_batchnorm(void) {
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
    OK(D->ops->batchnorm_forward(D, &p, x, y, z, mean, std, rm, rv, &rf));
    same(y, ry, n, 1e-5, global ? "batchnorm forward (global)" : "batchnorm forward");
    same(z, ry, n, 1e-5, "batchnorm keeps xnorm");
    if (!global) {
      same(rm, rrm, C, 1e-5, "batchnorm running mean");
      same(rv, rrv, C, 1e-5, "batchnorm running variance");
      CHECK_CLOSE(rf, 2.5 * 0.9 + 1, 1e-6, 0, "batchnorm running factor");
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
    OK(D->ops->batchnorm_backward(D, &p, dy, z, std, dx));
    same(dx, rdx, n, 1e-4, global ? "batchnorm backward (global)" : "batchnorm backward");
    free(x), free(y), free(z), free(mean), free(std), free(rm), free(rv), free(rm0), free(rv0), free(dy), free(dx);
    free(ry), free(rdx), free(mu), free(sd), free(rrm), free(rrv);
  }
}

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

static double dotf(const float *a, const float *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

/* The steps one by one: lower and lift against their adjoints (lift_grad, lower_grad), for
 * every type; then the whole convolution run on the driver against the direct loops. */
static void test_lowering(void) {
  const int shapes[][14] = {
      /*N C  H  W  K  G kh kw sh sw ph pw dh dw */
      {2, 3, 7, 6, 4, 1, 3, 3, 1, 1, 1, 1, 1, 1},
      {3, 4, 9, 8, 6, 2, 3, 2, 2, 1, 1, 0, 1, 2},
      {1, 2, 5, 5, 2, 1, 1, 1, 1, 1, 0, 0, 1, 1},
      {2, 6, 6, 5, 4, 2, 1, 1, 1, 1, 0, 0, 1, 1},
      {2, 2, 11, 9, 3, 1, 5, 3, 3, 2, 2, 1, 1, 1},
      {2, 4, 13, 11, 6, 2, 3, 3, 1, 1, 1, 1, 1, 1}, /* WINOGRAD: rows of four tiles and a rest */
  };
  const ct_lowering types[] = {CT_LOWER_TYPE1, CT_LOWER_TYPE2, CT_LOWER_TYPE3, CT_LOWER_POINTWISE,
                               CT_LOWER_WINOGRAD};
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
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
      const ct_lowering t = types[ti];
      if (t == CT_LOWER_POINTWISE && !ct_conv_is_pointwise(&g)) continue;
      if (t == CT_LOWER_WINOGRAD && !ct_lower_wino_applies(&g)) continue;
      char what[96];
      const size_t nws = ct_lower_workspace(&g, t, nb) + 1;
      const ct_lower_layout lay = ct_lower_layout_of(&g, t, nb);
      float *ws = gauss(nws), *ws2 = gauss(nws);
      if (t != CT_LOWER_POINTWISE) {
        /* lower's data part against lower_grad's dx: <lower(x), Dr> = <x, lower_grad(Dr)> */
        size_t ndata = t == CT_LOWER_TYPE1 ? lay.product : lay.kernel;
        OK(D->ops->conv_lower(D, &g, t, nb, x, w, ws));
        float *dr = gauss(ndata), *back = gauss(nx);
        const bool wino = t == CT_LOWER_WINOGRAD;
        const ct_wino_strides st = wino ? ct_lower_wino_strides(&g, nb) : (ct_wino_strides){0};
        if (wino) wino_mask(dr, ndata, st.sV, (size_t)g.C * st.Tp, st.Tp, st.T);
        memcpy(ws2 + lay.data, dr, ndata * sizeof(float));
        OK(D->ops->conv_lower_grad(D, &g, t, nb, ws2, back, NULL));
        snprintf(what, sizeof what, "shape %zu %s: lower_grad is lower's adjoint", si, ct_lowering_name(t));
        CHECK_CLOSE(dotf(ws + lay.data, dr, ndata), dotf(x, back, nx), 1e-4, 1e-4, "%s", what);
        if (t != CT_LOWER_TYPE1) {
          /* the lowered kernel against lower_grad's dw (dw accumulates onto zeros) */
          size_t nk = lay.product - lay.kernel;
          float *kr = gauss(nk), *dwb = calloc(nw, sizeof(float));
          if (wino) wino_mask(kr, nk, st.sU, (size_t)g.K * (g.C / g.G), 0, 0);
          memcpy(ws2 + lay.kernel_grad, kr, nk * sizeof(float));
          OK(D->ops->conv_lower_grad(D, &g, t, nb, ws2, NULL, dwb));
          snprintf(what, sizeof what, "shape %zu %s: the kernel's lowering and its adjoint", si, ct_lowering_name(t));
          CHECK_CLOSE(dotf(ws + lay.kernel, kr, nk), dotf(w, dwb, nw), 1e-4, 1e-4, "%s", what);
          free(kr), free(dwb);
        }
        /* lift (no bias) against lift_grad: <lift(Pr), dy> = <Pr, lift_grad(dy)> */
        size_t nprod = (t == CT_LOWER_TYPE1     ? (size_t)g.K * nb * g.OH * g.OW
                        : t == CT_LOWER_TYPE2   ? (size_t)g.kh * g.K * nb * g.H * g.OW
                        : t == CT_LOWER_WINOGRAD ? 16 * st.sM
                                                 : (size_t)g.kh * g.kw * g.K * nb * g.H * g.W);
        float *pr = gauss(nprod), *yl = gauss(ny);
        if (wino) wino_mask(pr, nprod, st.sM, (size_t)g.K * st.Tp, st.Tp, st.T);
        memcpy(ws + lay.product, pr, nprod * sizeof(float));
        OK(D->ops->conv_lift(D, &g, t, nb, ws, NULL, yl));
        OK(D->ops->conv_lift_grad(D, &g, t, nb, dy, ws2));
        snprintf(what, sizeof what, "shape %zu %s: lift_grad is lift's adjoint", si, ct_lowering_name(t));
        CHECK_CLOSE(dotf(yl, dy, ny), dotf(pr, ws2 + lay.product, nprod), 1e-4, 1e-4, "%s", what);
        /* with a bias, lift adds it per output channel */
        float *yb = gauss(ny);
        OK(D->ops->conv_lift(D, &g, t, nb, ws, b, yb));
        double worst = 0;
        for (size_t i = 0; i < ny; i++) {
          int k = (int)(i / ((size_t)g.OH * g.OW) % (size_t)g.K);
          worst = fmax(worst, fabs((double)yb[i] - yl[i] - b[k]));
        }
        CHECK(worst < 1e-5, "shape %zu %s: lift adds the bias (off by %g)", si, ct_lowering_name(t), worst);
        free(dr), free(back), free(pr), free(yl), free(yb);
      }
      /* bias_grad (type 1 reads dy as lift_grad laid it out) */
      float *dbv = calloc((size_t)g.K, sizeof(float));
      if (t != CT_LOWER_POINTWISE) OK(D->ops->conv_lift_grad(D, &g, t, nb, dy, ws));
      OK(D->ops->conv_bias_grad(D, &g, t, nb, dy, ws, dbv));
      snprintf(what, sizeof what, "shape %zu %s: bias_grad", si, ct_lowering_name(t));
      same(dbv, rdb, (size_t)g.K, 1e-5, what);
      /* the whole convolution on the driver */
      float *y = gauss(ny), *dx = gauss(nx), *dwv = calloc(nw, sizeof(float));
      memset(dbv, 0, (size_t)g.K * sizeof(float));
      OK(ct_lower_forward_on(D, &g, t, nb, x, w, b, y, ws));
      snprintf(what, sizeof what, "shape %zu %s: forward", si, ct_lowering_name(t));
      same(y, ry, ny, 1e-5, what);
      OK(ct_lower_backward_on(D, &g, t, nb, x, w, dy, dx, dwv, dbv, ws, true));
      snprintf(what, sizeof what, "shape %zu %s: backward dx", si, ct_lowering_name(t));
      same(dx, rdx, nx, 1e-5, what);
      snprintf(what, sizeof what, "shape %zu %s: backward dw", si, ct_lowering_name(t));
      same(dwv, rdw, nw, 1e-5, what);
      snprintf(what, sizeof what, "shape %zu %s: backward db", si, ct_lowering_name(t));
      same(dbv, rdb, (size_t)g.K, 1e-5, what);
      free(ws), free(ws2), free(dbv), free(y), free(dx), free(dwv);
    }
    free(x), free(w), free(b), free(dy), free(ry), free(rdx), free(rdw), free(rdb);
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

static void test_pooling(void) {
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
      int *am = malloc(nout * sizeof(int)), *sam = malloc(nout * sizeof(int));
      float *sy = gauss(nout), *sdx = gauss(nin);
      double *ry = dbuf(nout), *rdx = dbuf(nin);
      int *ram = malloc(nout * sizeof(int));
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
      OK(D->ops->pool_forward(D, &g, (size_t)planes, x, y, am, m == CT_POOL_MAX ? mask : NULL));
      OK(D->ops->pool_backward(D, &g, (size_t)planes, x, dy, am, dx));
      const char *name = m == 0 ? "MAX" : m == 1 ? "AVE" : "STOCHASTIC";
      char what[128];
      snprintf(what, sizeof what, "pool %s %dx%d k%dx%d s%dx%d p%dx%d %s forward", name, H, W, g.kh, g.kw, g.sh, g.sw,
               g.ph, g.pw, sh[8] ? "CEIL" : "FLOOR");
      same(y, ry, nout, 1e-5, what);
      snprintf(what, sizeof what, "pool %s %dx%d k%dx%d s%dx%d p%dx%d backward", name, H, W, g.kh, g.kw, g.sh, g.sw,
               g.ph, g.pw);
      same(dx, rdx, nin, 1e-5, what);
      if (m == CT_POOL_MAX) {
        bool ok = true;
        for (size_t o = 0; o < nout; o++) ok &= mask[o] == (float)am[o];
        CHECK(ok, "pool MAX %dx%d k%dx%d s%d: the mask holds the argmax", H, W, g.kh, g.kw, g.sh);
        CHECK(memcmp(am, ram, nout * sizeof(int)) == 0, "pool MAX %dx%d k%dx%d s%d: the first maximum wins", H, W,
              g.kh, g.kw, g.sh);
      }
      if (!stochastic) {
        pool_scalar(&g, planes, x, dy, sy, sam, sdx);
        CHECK(memcmp(y, sy, nout * sizeof(float)) == 0, "pool %s %dx%d k%dx%d s%dx%d p%dx%d: forward bit for bit",
              name, H, W, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw);
        CHECK(memcmp(dx, sdx, nin * sizeof(float)) == 0, "pool %s %dx%d k%dx%d s%dx%d p%dx%d: backward bit for bit",
              name, H, W, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw);
      }
      free(x), free(y), free(mask), free(dy), free(dx), free(am), free(sam), free(sy), free(sdx), free(ry),
          free(rdx), free(ram);
    }
  }
  /* special values: NaNs never win, and a window of nothing above -FLT_MAX has no argmax */
  {
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
    OK(D->ops->pool_forward(D, &g, 1, x, y, am, NULL));
    OK(D->ops->pool_backward(D, &g, 1, x, dy, am, dx));
    pool_scalar(&g, 1, x, dy, sy, sam, sdx);
    CHECK(am[0] == W + 1 && y[0] == 2.0f, "pool MAX: NaN never wins (%d)", am[0]);
    CHECK(am[1] == -1 && y[1] == 0.0f && am[2] == -1 && y[2] == 0.0f, "pool MAX: no argmax (%d %d)", am[1], am[2]);
    CHECK(am[3] == 6 && signbit(y[3]), "pool MAX: of equal zeros the first wins (%d)", am[3]);
    CHECK(memcmp(y, sy, sizeof y) == 0 && memcmp(am, sam, sizeof am) == 0 && memcmp(dx, sdx, sizeof dx) == 0,
          "pool MAX special values bit for bit");
  }
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

static void test_lrn(void) {
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
    OK(D->ops->lrn_forward(D, &g, (size_t)nimg, x, y, s, sp, tmp));
    same(s, rs, n, 1e-5, what);
    same(y, ry, n, 1e-5, what);
    bool ok = true;
    for (size_t i = 0; i < n; i++) ok &= fabs(sp[i] - pow(rs[i], -g.beta)) <= 1e-5 * pow(rs[i], -g.beta);
    CHECK(ok, "%s: s^-beta", what);
    OK(D->ops->lrn_backward(D, &g, (size_t)nimg, x, y, dy, s, sp, dx, tmp));
    same(dx, rdx, n, 1e-4, what);
    float *sy = malloc(n * sizeof(float)), *ss = malloc(n * sizeof(float)), *ssp = malloc(n * sizeof(float));
    float *sdx = malloc(n * sizeof(float));
    lrn_scalar(&g, nimg, x, dy, sy, ss, ssp, sdx);
    CHECK(memcmp(s, ss, n * sizeof(float)) == 0 && memcmp(sp, ssp, n * sizeof(float)) == 0 &&
              memcmp(y, sy, n * sizeof(float)) == 0,
          "%s: forward bit for bit", what);
    CHECK(memcmp(dx, sdx, n * sizeof(float)) == 0, "%s: backward bit for bit", what);
    free(sy), free(ss), free(ssp), free(sdx);
    free(x), free(y), free(s), free(sp), free(dy), free(dx), free(tmp), free(rs), free(ry), free(rdx);
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

static void test_softmax(void) {
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
    OK(D->ops->softmax_forward(D, O, C, I, x, y, scratch));
    same(y, ry, n, 1e-5, "softmax forward");
    OK(D->ops->softmax_backward(D, O, C, I, y, dy, dx, scratch));
    same(dx, rdx, n, 1e-5, "softmax backward");
    /* the loss: labels in [0, C), one ignored */
    float *lab = malloc(O * I * sizeof(float));
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
    OK(D->ops->softmax_loss_forward(D, O, C, I, y, lab, true, 2, &loss, &valid, &bad));
    CHECK(bad == -1, "softmax loss: every label valid (%td)", bad);
    CHECK_CLOSE(loss, rloss, 1e-5, 1e-6, "softmax loss");
    CHECK(valid == rvalid, "softmax loss counted %zu of %zu", valid, rvalid);
    OK(D->ops->softmax_loss_backward(D, O, C, I, y, lab, true, 2, 0.5f, dx));
    same(dx, rdx, n, 1e-5, "softmax loss backward");
    lab[3] = (float)C;
    OK(D->ops->softmax_loss_forward(D, O, C, I, y, lab, false, 0, &loss, &valid, &bad));
    CHECK(bad == 3, "label C is refused (%td)", bad);
    lab[3] = NAN;
    OK(D->ops->softmax_loss_forward(D, O, C, I, y, lab, false, 0, &loss, &valid, &bad));
    CHECK(bad == 3, "NaN label is refused (%td)", bad);
    free(x), free(y), free(dy), free(dx), free(scratch), free(ry), free(rdx), free(lab);
  }
}

static void test_sigmoid_xent(void) {
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
  OK(D->ops->sigmoid_xent_forward(D, n, x, t, true, -1, sig, &loss, &valid));
  same(sig, rsig, n, 1e-6, "sigmoid cross-entropy: sigmoid");
  CHECK_CLOSE(loss, rloss, 1e-5, 1e-5, "sigmoid cross-entropy loss");
  CHECK(valid == rvalid, "sigmoid cross-entropy counted %zu of %zu", valid, rvalid);
  OK(D->ops->sigmoid_xent_backward(D, n, sig, t, true, -1, 0.25f, dx));
  same(dx, rdx, n, 1e-6, "sigmoid cross-entropy backward");
  free(x), free(t), free(sig), free(dx), free(rsig), free(rdx);
}

static void test_accuracy(void) {
  const size_t O = 6, C = 5, I = 3, n = O * C * I;
  float *score = gauss(n), *lab = malloc(O * I * sizeof(float)), per[5];
  size_t counts[5];
  for (size_t i = 0; i < O * I; i++) lab[i] = (float)ct_rng_below(&R, C);
  lab[4] = 9; /* ignored */
  score[(0 * C + 1) * I + 0] = score[(0 * C + (size_t)lab[0]) * I + 0]; /* a tie with the truth counts against */
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
    OK(D->ops->accuracy(D, O, C, I, score, lab, k, true, 9, per, counts, &hits, &counted, &bad));
    CHECK(bad == -1 && hits == rh && counted == rc, "accuracy top-%d: %zu/%zu vs %zu/%zu", k, hits, counted, rh, rc);
    bool ok = true;
    for (size_t c = 0; c < C; c++) ok &= fabs(per[c] - (rcnt[c] ? (double)rper[c] / rcnt[c] : 0.0)) < 1e-6;
    CHECK(ok, "accuracy top-%d per class", k);
  }
  lab[2] = -1;
  size_t h, c;
  ptrdiff_t bad = 0;
  OK(D->ops->accuracy(D, O, C, I, score, lab, 1, true, 9, NULL, counts, &h, &c, &bad));
  CHECK(bad == 2, "label -1 is refused (%td)", bad);
  free(score), free(lab);
}

static void test_argmax(void) {
  const size_t O = 3, Dm = 7, S = 4, n = O * Dm * S;
  float *x = gauss(n);
  x[(0 * Dm + 2) * S + 0] = x[(0 * Dm + 5) * S + 0] = 9.0f; /* equal values: the higher index first */
  ct_rank_entry *scratch = malloc(Dm * S * sizeof *scratch);
  for (int has_axis = 0; has_axis < 2; has_axis++)
    for (int omv = 0; omv < 2; omv++)
      for (int k = 1; k <= 3; k += 2) {
        const size_t dim = has_axis ? Dm : Dm * S, stride = has_axis ? S : 1, outer = n / dim / stride;
        const size_t ny = has_axis ? outer * (size_t)k * stride : outer * (size_t)k * (omv ? 2 : 1);
        float *y = gauss(ny);
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
        OK(D->ops->argmax(D, outer, dim, stride, k, omv, has_axis, x, y, scratch));
        char what[64];
        snprintf(what, sizeof what, "argmax axis %d out_max_val %d top %d", has_axis, omv, k);
        same(y, ry, ny, 0, what);
        free(y), free(ry);
      }
  free(x), free(scratch);
}

/* ================================================================ the solver update */

static void test_update(void) {
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
      OK(D->ops->update(D, &st, n, w, g, h0, two ? h1 : NULL));
      char what[64];
      snprintf(what, sizeof what, "update rule %d variant %d: data", rule, variant);
      same(w, rw, n, 1e-5, what);
      snprintf(what, sizeof what, "update rule %d variant %d: step", rule, variant);
      same(g, rg, n, 1e-4, what);
      snprintf(what, sizeof what, "update rule %d variant %d: history", rule, variant);
      same(h0, rh0, n, 1e-5, what);
      if (two) same(h1, rh1, n, 1e-5, what);
      free(w), free(g), free(h0), free(h1), free(rw), free(rg), free(rh0), free(rh1);
    }
}

int main(void) {
  D = ct_driver_cpu();
  ct_rng_seed(&R, 20240);
  test_memory();
  test_blas();
  test_thin_gemm();
  test_neurons();
  test_prelu();
  test_eltwise();
  test_broadcast();
  test_batchnorm();
  test_lowering();
  test_pooling();
  test_lrn();
  test_softmax();
  test_sigmoid_xent();
  test_accuracy();
  test_argmax();
  test_update();
  return ct_check_report();
}
