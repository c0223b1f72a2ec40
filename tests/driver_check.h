/* The harness of the driver tests (test_driver.c, test_driver_nn.c): each test is a function of
 * one driver, run once per backend (the CPU driver, then emu:0) on the same random inputs. A
 * test keeps its inputs on the host, uploads them into the backend's memory (up), runs entries
 * there (RUN), and downloads every result (fetch) or passes a host-side value (agree) to the
 * recorder: the CPU pass records each result, the emu pass must reproduce every one bit for bit
 * (emu runs the CPU's kernels on its own memory, so nothing may differ; a CUDA backend would need
 * a tolerance here instead). Each pass also checks its results against the naive references, so
 * the CPU is held to the references and emu to the CPU.
 *
 * Coverage: DC_ENTRIES lists every member of ct_driver_ops with the binary that tests it; a
 * member missing from the list (a new entry) fails both binaries, and an entry of this binary's
 * part that did not run on every backend fails it.
 *
 * Every buffer a test takes from these helpers (host or device) lives until its pass ends. */
#ifndef CT_TESTS_DRIVER_CHECK_H
#define CT_TESTS_DRIVER_CHECK_H

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "drivers/driver.h"

enum { DC_EXCLUDED, DC_CORE, DC_NN, DC_FUSE, DC_FUSE_ELTWISE };

/* Every member of ct_driver_ops and who tests it: DC_CORE is test_driver.c (memory, BLAS,
 * element-wise, normalisation, the update), DC_NN test_driver_nn.c (convolution steps, pooling,
 * LRN, softmax, losses, evaluation), DC_FUSE test_bn_chain.c (the fused BatchNorm chain),
 * DC_FUSE_ELTWISE test_eltwise_relu.c (Eltwise SUM fused with ReLU). Left out on purpose:
 *   destroy        lifecycle, run by ct_driver_free (NULL on both backends)
 *   error_message  says something only after a failure; test_emu.c checks emu's
 *   region         process-wide settings (OpenBLAS's threads) around a pass, no results
 *   enter, leave   thread-count hints around a partition, no results to compare
 *   calibration    a measured rate, different on every run; test_driver.c checks it is positive */
#define DC_ENTRIES(X)                                                                               \
  X(destroy, DC_EXCLUDED) X(error_message, DC_EXCLUDED) X(region, DC_EXCLUDED) X(enter, DC_EXCLUDED)  \
  X(leave, DC_EXCLUDED)                                                                             \
  X(alloc, DC_CORE) X(free, DC_CORE) X(memset, DC_CORE) X(copy, DC_CORE) X(copy_2d, DC_CORE)        \
  X(upload, DC_CORE) X(download, DC_CORE) X(calibration, DC_EXCLUDED) X(gemm, DC_CORE)              \
  X(gemm_ld, DC_CORE) X(gemv, DC_CORE) X(axpy, DC_CORE) X(scal, DC_CORE) X(dot, DC_CORE)            \
  X(asum, DC_CORE) X(sumsq, DC_CORE) X(add, DC_CORE) X(sub, DC_CORE) X(mul, DC_CORE)                \
  X(neuron_forward, DC_CORE) X(neuron_backward, DC_CORE) X(prelu_forward, DC_CORE)                  \
  X(prelu_backward, DC_CORE) X(eltwise_forward, DC_CORE) X(eltwise_backward, DC_CORE)               \
  X(eltwise_relu_forward, DC_FUSE_ELTWISE) X(eltwise_relu_backward, DC_FUSE_ELTWISE)                \
  X(bias_forward, DC_CORE) X(scale_forward, DC_CORE) X(scale_backward, DC_CORE)                     \
  X(batchnorm_forward, DC_CORE) X(batchnorm_backward, DC_CORE) X(bn_chain_forward, DC_FUSE)          \
  X(bn_chain_backward, DC_FUSE) X(bn_chain_backward_x, DC_FUSE) X(bn_chain_backward_y, DC_FUSE)     \
  X(bn_chain_forward_add, DC_FUSE)                                                                  \
  X(conv_lower, DC_NN) X(conv_lift, DC_NN) X(conv_lift_grad, DC_NN) X(conv_bias_grad, DC_NN)       \
  X(conv_lower_grad, DC_NN) X(conv_wino_block, DC_NN) X(conv_wino4_block, DC_NN)                    \
  X(conv_direct_forward, DC_NN) X(conv_direct_backward_data, DC_NN)                                 \
  X(conv_direct_backward_weight, DC_NN) X(conv_pw, DC_CORE)                                         \
  X(pool_forward, DC_NN) X(pool_backward, DC_NN) X(lrn_forward, DC_NN) X(lrn_backward, DC_NN)       \
  X(softmax_forward, DC_NN) X(softmax_backward, DC_NN) X(softmax_loss_forward, DC_NN)               \
  X(softmax_loss_backward, DC_NN) X(sigmoid_xent_forward, DC_NN) X(sigmoid_xent_backward, DC_NN)    \
  X(accuracy, DC_NN) X(argmax, DC_NN) X(lstm_unit_forward, DC_NN) X(lstm_unit_backward, DC_NN)      \
  X(dropout_mask, DC_CORE) X(update, DC_CORE)

/* The vtable holds nothing but function pointers, so its size counts them. */
#define DC_SLOT_SIZE sizeof(void (*)(void))
#define DC_SLOTS (sizeof(ct_driver_ops) / DC_SLOT_SIZE)
_Static_assert(sizeof(ct_driver_ops) % DC_SLOT_SIZE == 0, "ct_driver_ops holds only function pointers");

enum { DC_BACKENDS = 2, DC_MAX_SLOTS = 128 };
/* The second backend is emu:0, or the device named by CT_DC_BACKEND (tests/gpu/run.sh: cuda:0).
 * emu runs the CPU's kernels, so it must match bit for bit; another device (its own kernels, and
 * cuBLAS) within DC_TOLERANCE of the largest magnitude of each float result, while byte results
 * (indices, counts) stay exact. */
static const char *dc_backend_names[DC_BACKENDS] = {"cpu", "emu:0"};
static bool dc_exact = true;
#define DC_TOLERANCE 1e-4
#define CT_DC_STR2(x) #x
#define CT_DC_STR(x) CT_DC_STR2(x)
static const ct_driver *dc_backends[DC_BACKENDS];
static bool dc_covered[DC_BACKENDS][DC_MAX_SLOTS];
static ct_rng R;

static inline int dc_backend_of(const ct_driver *D) {
  for (int b = 0; b < DC_BACKENDS; b++)
    if (dc_backends[b] == D) return b;
  fprintf(stderr, "driver_check: %s is not one of the backends\n", D->name);
  abort();
}

/* The reference backend: its pass records, the others' compare. */
static inline bool dc_is_reference(const ct_driver *D) { return dc_backend_of(D) == 0; }

static inline void dc_cover(const ct_driver *D, size_t offset) {
  dc_covered[dc_backend_of(D)][offset / DC_SLOT_SIZE] = true;
}
#define COVER(entry) dc_cover(D, offsetof(ct_driver_ops, entry))

/* A driver entry's status: anything but CT_OK fails the test, naming the call and backend. */
#define OK(call)                                                                        \
  do {                                                                                  \
    const ct_status ok_ = (call);                                                       \
    CHECK(ok_ == CT_OK, "%s on %s returned %s", #call, D->name, ct_status_name(ok_)); \
  } while (0)

/* Runs an entry of D (a ct_driver * in scope) and marks it covered on D's backend. */
#define RUN(entry, ...)                         \
  do {                                          \
    COVER(entry);                               \
    OK(D->ops->entry(D, __VA_ARGS__));          \
  } while (0)

/* ---------------------------------------------------------------- buffers held for one pass */

static struct {
  void **host;
  size_t nhost, caphost;
  struct dc_dev_buf {
    const ct_driver *d;
    void *p;
  } *dev;
  size_t ndev, capdev;
} dc_held;

static inline void *dc_grow(void *p, size_t *cap, size_t need, size_t size) {
  if (need <= *cap) return p;
  size_t c = *cap ? *cap * 2 : 256;
  while (c < need) c *= 2;
  void *q = realloc(p, c * size);
  if (!q) abort();
  *cap = c;
  return q;
}

/* `bytes` of zeroed host memory, held until the pass ends. */
static inline void *hbuf(size_t bytes) {
  void *p = calloc(bytes ? bytes : 1, 1);
  if (!p) abort();
  dc_held.host = dc_grow(dc_held.host, &dc_held.caphost, dc_held.nhost + 1, sizeof *dc_held.host);
  dc_held.host[dc_held.nhost++] = p;
  return p;
}

static inline float *gauss(size_t n) {
  float *p = hbuf(n * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = ct_rng_gaussian(&R, 0, 1);
  return p;
}

static inline float *uniform(size_t n, float lo, float hi) {
  float *p = hbuf(n * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * (float)ct_rng_uniform01(&R);
  return p;
}

static inline float *copy_of(const float *x, size_t n) {
  float *p = hbuf(n * sizeof(float));
  memcpy(p, x, n * sizeof(float));
  return p;
}

static inline double *dbuf(size_t n) { return hbuf(n * sizeof(double)); }

/* `bytes` of D's memory (contents undefined), held until the pass ends. */
static inline void *dalloc(const ct_driver *D, size_t bytes) {
  void *p = D->ops->alloc(D, bytes);
  if (!p) {
    fprintf(stderr, "driver_check: %s cannot allocate %zu bytes\n", D->name, bytes);
    abort();
  }
  dc_held.dev = dc_grow(dc_held.dev, &dc_held.capdev, dc_held.ndev + 1, sizeof *dc_held.dev);
  dc_held.dev[dc_held.ndev++] = (struct dc_dev_buf){D, p};
  return p;
}

/* host -> D's memory at dev */
static inline void put_bytes(const ct_driver *D, void *dev, const void *host, size_t bytes) {
  OK(D->ops->upload(D, dev, host, bytes));
}
static inline void put(const ct_driver *D, float *dev, const float *host, size_t n) {
  put_bytes(D, dev, host, n * sizeof(float));
}

/* A copy of host data in D's memory. */
static inline void *up_bytes(const ct_driver *D, const void *host, size_t bytes) {
  void *p = dalloc(D, bytes);
  put_bytes(D, p, host, bytes);
  return p;
}
static inline float *up(const ct_driver *D, const float *host, size_t n) {
  return up_bytes(D, host, n * sizeof(float));
}

static inline void dc_release(void) {
  for (size_t i = 0; i < dc_held.ndev; i++) dc_held.dev[i].d->ops->free(dc_held.dev[i].d, dc_held.dev[i].p);
  for (size_t i = 0; i < dc_held.nhost; i++) free(dc_held.host[i]);
  dc_held.ndev = dc_held.nhost = 0;
}

/* ---------------------------------------------------------------- the recorder */

/* How a result compares off emu: byte for byte, or as floats or doubles within DC_TOLERANCE. */
enum { DC_BYTES, DC_F32, DC_F64 };

typedef struct dc_record {
  char what[160];
  size_t bytes;
  unsigned char *data;
} dc_record;

static struct {
  dc_record *r;
  size_t n, cap, pos;
  size_t compared, bytes_compared; /* over the whole run */
} dc_log;

/* A result of the current pass (bytes at host, named by what): recorded on the reference
 * backend, compared bit for bit with the recording elsewhere. */
/* Off emu: the largest difference, as a share of max(1, the largest |reference|). */
static inline double dc_float_gap(const void *got, const void *ref, size_t bytes, int kind, size_t *at) {
  const size_t n = bytes / (kind == DC_F32 ? sizeof(float) : sizeof(double));
  double scale = 1.0, worst = 0.0;
  for (size_t i = 0; i < n; i++) {
    double r = kind == DC_F32 ? ((const float *)ref)[i] : ((const double *)ref)[i];
    if (fabs(r) > scale) scale = fabs(r);
  }
  for (size_t i = 0; i < n; i++) {
    double g = kind == DC_F32 ? ((const float *)got)[i] : ((const double *)got)[i];
    double r = kind == DC_F32 ? ((const float *)ref)[i] : ((const double *)ref)[i];
    if (isnan(g) && isnan(r)) continue;
    double d = fabs(g - r);
    if (!(d <= worst)) worst = d, *at = i;
  }
  return worst / scale;
}

static inline void dc_result(const ct_driver *D, const void *host, size_t bytes, int kind, const char *what) {
  if (dc_is_reference(D)) {
    dc_log.r = dc_grow(dc_log.r, &dc_log.cap, dc_log.n + 1, sizeof *dc_log.r);
    dc_record *rec = &dc_log.r[dc_log.n++];
    snprintf(rec->what, sizeof rec->what, "%s", what);
    rec->bytes = bytes;
    rec->data = malloc(bytes ? bytes : 1);
    if (!rec->data) abort();
    memcpy(rec->data, host, bytes);
    return;
  }
  if (dc_log.pos >= dc_log.n) {
    CHECK(false, "%s on %s: a result the %s pass did not produce", what, D->name, dc_backend_names[0]);
    return;
  }
  const dc_record *rec = &dc_log.r[dc_log.pos++];
  if (strcmp(rec->what, what) != 0 || rec->bytes != bytes) {
    CHECK(false, "%s on %s: out of step with the %s pass, which had %s (%zu bytes) here", what, D->name,
          dc_backend_names[0], rec->what, rec->bytes);
    return;
  }
  if (!dc_exact && kind != DC_BYTES) {
    size_t at = 0;
    double gap = dc_float_gap(host, rec->data, bytes, kind, &at);
    CHECK(gap <= DC_TOLERANCE, "%s: %s differs from %s by %.3g of the largest value (element %zu)", what, D->name,
          dc_backend_names[0], gap, at);
  } else {
    size_t at = 0;
    while (at < bytes && ((const unsigned char *)host)[at] == rec->data[at]) at++;
    CHECK(at == bytes, "%s: %s differs from %s from byte %zu of %zu", what, D->name, dc_backend_names[0], at, bytes);
  }
  dc_log.compared++;
  dc_log.bytes_compared += bytes;
}

static inline void dc_resultf(const ct_driver *D, const void *host, size_t bytes, int kind, const char *fmt,
                              va_list ap) {
  char what[160];
  vsnprintf(what, sizeof what, fmt, ap);
  dc_result(D, host, bytes, kind, what);
}

/* Downloads `bytes` of D's memory at dev into host, and records or compares them. */
__attribute__((format(printf, 5, 6))) static inline void fetch_bytes(const ct_driver *D, void *host, const void *dev,
                                                                     size_t bytes, const char *fmt, ...) {
  OK(D->ops->download(D, host, dev, bytes));
  va_list ap;
  va_start(ap, fmt);
  dc_resultf(D, host, bytes, DC_BYTES, fmt, ap);
  va_end(ap);
}

/* The same for n floats. */
__attribute__((format(printf, 5, 6))) static inline void fetch(const ct_driver *D, float *host, const float *dev,
                                                               size_t n, const char *fmt, ...) {
  OK(D->ops->download(D, host, dev, n * sizeof(float)));
  va_list ap;
  va_start(ap, fmt);
  dc_resultf(D, host, n * sizeof(float), DC_F32, fmt, ap);
  va_end(ap);
}

/* A value an entry returned through a host pointer: recorded or compared. */
__attribute__((format(printf, 4, 5))) static inline void agree(const ct_driver *D, const void *value, size_t bytes,
                                                               const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  dc_resultf(D, value, bytes, DC_BYTES, fmt, ap);
  va_end(ap);
}

/* The same for a float or double value: within DC_TOLERANCE off emu. */
__attribute__((format(printf, 3, 4))) static inline void agree_f32(const ct_driver *D, const float *value,
                                                                   const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  dc_resultf(D, value, sizeof *value, DC_F32, fmt, ap);
  va_end(ap);
}
__attribute__((format(printf, 3, 4))) static inline void agree_f64(const ct_driver *D, const double *value,
                                                                   const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  dc_resultf(D, value, sizeof *value, DC_F64, fmt, ap);
  va_end(ap);
}

/* ---------------------------------------------------------------- the checks a test shares */

/* max |a - b| <= tol * max(1, max |b|), one CHECK for the whole buffer */
static inline void same(const float *a, const double *b, size_t n, double tol, const char *what) {
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

/* ---------------------------------------------------------------- the run */

typedef struct dc_test {
  const char *name;
  void (*run)(const ct_driver *D);
} dc_test;

/* Every member of ct_driver_ops is in DC_ENTRIES, once; every entry of `part` ran on every
 * backend. */
static inline void dc_check_coverage(int part) {
#define DC_ROW(entry, p) {offsetof(ct_driver_ops, entry), #entry, p},
  static const struct {
    size_t offset;
    const char *name;
    int part;
  } rows[] = {DC_ENTRIES(DC_ROW)};
#undef DC_ROW
  const size_t nrows = sizeof rows / sizeof rows[0];
  CHECK(nrows == DC_SLOTS && DC_SLOTS <= DC_MAX_SLOTS,
        "ct_driver_ops has %zu entries, tests/driver_check.h's DC_ENTRIES %zu: give a new entry a row there and a "
        "test on every backend",
        (size_t)DC_SLOTS, nrows);
  bool listed[DC_MAX_SLOTS] = {false};
  for (size_t i = 0; i < nrows; i++) {
    const size_t slot = rows[i].offset / DC_SLOT_SIZE;
    CHECK(slot < DC_MAX_SLOTS && !listed[slot], "DC_ENTRIES lists %s twice", rows[i].name);
    if (slot < DC_MAX_SLOTS) listed[slot] = true;
  }
  size_t covered = 0, expected = 0;
  for (size_t i = 0; i < nrows; i++) {
    if (rows[i].part != part) continue;
    for (int b = 0; b < DC_BACKENDS; b++) {
      const bool ran = dc_covered[b][rows[i].offset / DC_SLOT_SIZE];
      CHECK(ran, "entry %s never ran on %s", rows[i].name, dc_backend_names[b]);
      covered += ran, expected++;
    }
  }
  printf("%zu of %zu entry x backend pairs ran (%zu entries of ct_driver_ops's %zu here, %d backends); %zu results "
         "(%zu bytes) of %s matched %s %s\n",
         covered, expected, expected / DC_BACKENDS, (size_t)DC_SLOTS, DC_BACKENDS, dc_log.compared,
         dc_log.bytes_compared, dc_backend_names[1], dc_backend_names[0],
         dc_exact ? "bit for bit" : "within " CT_DC_STR(DC_TOLERANCE) " (indices and counts exactly)");
}

/* Runs every test on every backend (the same random inputs on each), then the coverage check;
 * returns main's status. */
static inline int dc_main(const dc_test *tests, size_t ntests, int part, uint64_t seed) {
  ct_error err = {0};
  ct_driver *emu = NULL;
  const char *other = getenv("CT_DC_BACKEND");
  if (other && *other) dc_backend_names[1] = other;
  /* CT_DC_TOLERANT=1: the tolerant comparison on emu too (a check of this harness without a GPU) */
  dc_exact = !strncmp(dc_backend_names[1], "emu", 3) && !getenv("CT_DC_TOLERANT");
  if (ct_driver_create(dc_backend_names[1], NULL, &emu, &err) != CT_OK) {
    fprintf(stderr, "cannot create %s: %s\n", dc_backend_names[1], err.msg);
    return 1;
  }
  dc_backends[0] = ct_driver_cpu();
  dc_backends[1] = emu;
  ct_rng_seed(&R, seed);
  for (size_t t = 0; t < ntests; t++) {
    const ct_rng start = R;
    for (int b = 0; b < DC_BACKENDS; b++) {
      R = start;
      dc_log.pos = 0;
      tests[t].run(dc_backends[b]);
      if (b) CHECK(dc_log.pos == dc_log.n, "%s on %s: %zu results of the %s pass never came", tests[t].name,
                   dc_backend_names[b], dc_log.n - dc_log.pos, dc_backend_names[0]);
      dc_release();
    }
    for (size_t i = 0; i < dc_log.n; i++) free(dc_log.r[i].data);
    dc_log.n = 0;
  }
  dc_check_coverage(part);
  free(dc_log.r);
  free(dc_held.host);
  free(dc_held.dev);
  ct_driver_free(emu);
  return ct_check_report();
}

#endif
