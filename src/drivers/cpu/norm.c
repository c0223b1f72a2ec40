/* The CPU driver's broadcast layers: Bias, Scale (and InnerProduct's bias); BatchNorm is in
 * cpu/batchnorm.c. Rows are written four lanes at a time (simd.h: gcc leaves these loops scalar,
 * their trip count unknown); each lane computes what the scalar loop did, in the same order. */
#include "core/simd.h"
#include "drivers/cpu/kernels.h"

/* y = x + b over n (b: one per element, or bv for all when b is NULL); y may be x. */
static void add_row(const float *x, const float *b, float bv, float *y, size_t n) {
  const ct_v4f vb = ct_v4f_splat(bv);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) ct_v4f_store(y + i, ct_v4f_load(x + i) + (b ? ct_v4f_load(b + i) : vb));
  for (; i < n; i++) y[i] = x[i] + (b ? b[i] : bv);
}

/* y = x s + b over n; y may be x. */
static void affine_row(const float *x, float s, float b, float *y, size_t n) {
  const ct_v4f vs = ct_v4f_splat(s), vb = ct_v4f_splat(b);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) ct_v4f_store(y + i, ct_v4f_load(x + i) * vs + vb);
  for (; i < n; i++) y[i] = x[i] * s + b;
}

/* y = x s over n; y may be x. */
static void scale_row(const float *x, float s, float *y, size_t n) {
  const ct_v4f vs = ct_v4f_splat(s);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) ct_v4f_store(y + i, ct_v4f_load(x + i) * vs);
  for (; i < n; i++) y[i] = x[i] * s;
}

/* the sums of dy x (x not NULL) and of dy over n, in double lanes: a partition's share of a
 * gradient then rounds once, when it is stored, so partitions sum to the whole to float rounding */
typedef double v2d __attribute__((vector_size(16)));
static v2d lo2(ct_v4f v) { return __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1), v2d); }
static v2d hi2(ct_v4f v) { return __builtin_convertvector(__builtin_shufflevector(v, v, 2, 3), v2d); }

static void sums_row(const float *x, const float *dy, size_t n, double *sxy, double *sy) {
  v2d a = {0.0, 0.0}, b = a;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const ct_v4f g = ct_v4f_load(dy + i);
    if (x) {
      const ct_v4f p = g * ct_v4f_load(x + i);
      a += lo2(p) + hi2(p);
    }
    b += lo2(g) + hi2(g);
  }
  double fa = a[0] + a[1], fb = b[0] + b[1];
  for (; i < n; i++) {
    if (x) fa += dy[i] * x[i];
    fb += dy[i];
  }
  *sxy = fa;
  *sy = fb;
}

ct_status ct_cpu_bias_forward(const ct_driver *d, size_t outer, size_t dim, size_t inner, const float *x,
                              const float *b, float *y) {
  (void)d;
  if (inner == 1) { /* a bias per column of rows (InnerProduct): one vectorisable pass per row */
    for (size_t o = 0; o < outer; o++) add_row(x + o * dim, b, 0.0f, y + o * dim, dim);
    return CT_OK;
  }
  for (size_t o = 0; o < outer; o++)
    for (size_t k = 0; k < dim; k++) {
      const size_t off = (o * dim + k) * inner;
      add_row(x + off, NULL, b[k], y + off, inner); /* x may be y (in place) */
    }
  return CT_OK;
}

ct_status ct_cpu_scale_forward(const ct_driver *d, size_t outer, size_t dim, size_t inner, const float *x,
                               const float *s, const float *b, float *y) {
  (void)d;
  for (size_t o = 0; o < outer; o++)
    for (size_t k = 0; k < dim; k++) {
      const size_t off = (o * dim + k) * inner;
      affine_row(x + off, s[k], b ? b[k] : 0.0f, y + off, inner);
    }
  return CT_OK;
}

/* Parameter gradients first: in place, dx overwrites dy. */
ct_status ct_cpu_scale_backward(const ct_driver *d, size_t outer, size_t dim, size_t inner, const float *x,
                                const float *dy, const float *s, float *ds, float *db, float *dx) {
  (void)d;
  if (ds) {
    for (size_t k = 0; k < dim; k++) {
      double gs = 0.0, gb = 0.0;
      for (size_t o = 0; o < outer; o++) {
        const size_t off = (o * dim + k) * inner;
        double as, ab;
        sums_row(x + off, dy + off, inner, &as, &ab);
        gs += as;
        gb += ab;
      }
      ds[k] += (float)gs;
      if (db) db[k] += (float)gb;
    }
  } else if (db) {
    for (size_t k = 0; k < dim; k++) {
      double g = 0.0;
      for (size_t o = 0; o < outer; o++) {
        double unused, a;
        sums_row(NULL, dy + (o * dim + k) * inner, inner, &unused, &a);
        g += a;
      }
      db[k] += (float)g;
    }
  }
  if (dx) {
    for (size_t o = 0; o < outer; o++)
      for (size_t k = 0; k < dim; k++) {
        const size_t off = (o * dim + k) * inner;
        scale_row(dy + off, s[k], dx + off, inner); /* dy may be dx */
      }
  }
  return CT_OK;
}
