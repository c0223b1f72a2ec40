/* The CPU side of the machine: OpenBLAS threading and the one-time calibration behind the CPU
 * driver's calibration entry (see drivers/cpu.h). */
#include "drivers/cpu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/blas.h"

static pthread_once_t calib_once = PTHREAD_ONCE_INIT;
static double calib_gflops = 20, calib_gbytes = 5; /* fallbacks if memory is short */

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A single-threaded SGEMM's rate (after a warm-up, so the core is at speed) and a large copy's
 * bandwidth, each the best of five; false (and nothing set) when memory is short. */
static bool measure(double *gflops, double *gbytes) {
  const int n = 384;
  const size_t mem = (size_t)8 << 20; /* floats: 32 MiB, past the caches */
  float *a = malloc((size_t)n * n * sizeof(float) * 3), *src = malloc(mem * sizeof(float)),
        *dst = malloc(mem * sizeof(float));
  bool ok = a && src && dst;
  if (ok) {
    float *b = a + (size_t)n * n, *c = b + (size_t)n * n;
    for (size_t i = 0; i < (size_t)n * n * 3; i++) a[i] = (float)(i % 7) * 0.1f;
    int saved = openblas_get_num_threads();
    openblas_set_num_threads(1); /* the rate one partition sees */
    const double warm = now_s();
    do
      ct_sgemm(0, 0, n, n, n, 1.0f, a, b, 0.0f, c);
    while (now_s() - warm < 0.03);
    double best = 1e9;
    for (int r = 0; r < 5; r++) {
      double t0 = now_s();
      ct_sgemm(0, 0, n, n, n, 1.0f, a, b, 0.0f, c);
      double t = now_s() - t0;
      if (t < best) best = t;
    }
    openblas_set_num_threads(saved);
    const double g = best > 0 ? 2.0 * n * n * n / best / 1e9 : 0;
    memset(src, 1, mem * sizeof(float));
    memcpy(dst, src, mem * sizeof(float)); /* first touch */
    best = 1e9;
    for (int r = 0; r < 5; r++) {
      double t0 = now_s();
      memcpy(dst, src, mem * sizeof(float));
      double t = now_s() - t0;
      if (t < best) best = t;
    }
    const double bw = best > 0 ? 2.0 * (double)mem * sizeof(float) / best / 1e9 : 0;
    ok = g > 0 && bw > 0;
    if (ok) *gflops = g, *gbytes = bw;
  }
  free(a);
  free(src);
  free(dst);
  return ok;
}

static char calib_file[4096]; /* where the rates came from or went to; empty: not kept */
static atomic_bool calib_done;

static void calibrate(void) {
  char path[sizeof calib_file];
  if (ct_cpu_calibration_path(path, sizeof path)) {
    if (ct_cpu_calibration_cached(path, &calib_gflops, &calib_gbytes, measure) != CT_CALIB_MEASURED)
      memcpy(calib_file, path, sizeof path);
  } else {
    measure(&calib_gflops, &calib_gbytes);
  }
  atomic_store_explicit(&calib_done, true, memory_order_release);
}

void ct_cpu_calibration(double *gflops, double *gbytes) {
  pthread_once(&calib_once, calibrate);
  *gflops = calib_gflops;
  *gbytes = calib_gbytes;
}

bool ct_cpu_calibration_taken(double *gflops, double *gbytes, const char **file) {
  if (!atomic_load_explicit(&calib_done, memory_order_acquire)) return false;
  *gflops = calib_gflops;
  *gbytes = calib_gbytes;
  *file = calib_file[0] ? calib_file : NULL;
  return true;
}

bool ct_cpu_has_avx2(void) {
  static atomic_int state = -1; /* -1: not yet known; every thread works out the same answer */
  int s = atomic_load_explicit(&state, memory_order_relaxed);
  if (s < 0) {
    __builtin_cpu_init();
    s = __builtin_cpu_supports("avx2") ? 1 : 0;
    atomic_store_explicit(&state, s, memory_order_relaxed);
  }
  return s;
}

bool ct_cpu_avx512_kernel_on(atomic_int *state, const char *env) {
  int s = atomic_load_explicit(state, memory_order_relaxed);
  if (s < 0) {
    const char *e = getenv(env);
    __builtin_cpu_init();
    s = __builtin_cpu_supports("avx512f") && !(e && strcmp(e, "0") == 0);
    atomic_store_explicit(state, s, memory_order_relaxed);
  }
  return s;
}

int ct_blas_threads(void) { return openblas_get_num_threads(); }

static _Thread_local int single_depth, single_saved;

void ct_blas_single_begin(void) {
  if (single_depth++ == 0) {
    single_saved = openblas_get_num_threads();
    openblas_set_num_threads(1);
  }
}

void ct_blas_single_end(void) {
  if (single_depth > 0 && --single_depth == 0) openblas_set_num_threads(single_saved);
}
void ct_blas_set_threads(int n) { openblas_set_num_threads(n); }
const char *ct_blas_core_name(void) { return openblas_get_corename(); }

const char *ct_blas_core_advice(void) {
  const char *core = openblas_get_corename();
  if (!core) return NULL;
  static const char *const generic[] = {"Prescott", "Core2", "Katmai", "Coppermine", "Northwood", "Banias", "Penryn",
                                        "Dunnington", "Nehalem", "Atom"};
  bool is_generic = false;
  for (size_t i = 0; i < sizeof generic / sizeof *generic; i++) is_generic |= strcasecmp(core, generic[i]) == 0;
  if (!is_generic) return NULL;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return NULL;
}
