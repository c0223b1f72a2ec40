/* The CPU driver's lowering steps (the conv_* entries; drivers/driver.h has each step's
 * contract, lowering/lowering.h the shapes, ct_lower_layout_of where each part of ws lies):
 * lowering types 1, 2 and 3 and the 1x1 path as loops over a partition of nb images, and
 * WINOGRAD through its transforms in cpu/winograd.c (DIRECT, no lowering: cpu/depthwise.c). Every routine reads and writes plain
 * row-major buffers. No GEMM here: ct_lower_forward_on and ct_lower_backward_on run those
 * between the steps, on whichever driver runs the steps. */
#include <string.h>

#include "core/simd.h"
#include "drivers/cpu/kernels.h"

#define MAX_SPANS 64 /* kernel columns whose spans lower1_strided keeps (wider kernels: worked out per row) */

/* The output columns ox whose input column ix = ox*s + off lies in [0, W): [*lo, *hi). */
static void valid_range(int OW, int W, int s, int off, int *lo, int *hi) {
  int a = off >= 0 ? 0 : (-off + s - 1) / s;
  int b = off > W - 1 ? 0 : (W - 1 - off) / s + 1;
  if (b > OW) b = OW;
  if (a > b) a = b;
  *lo = a;
  *hi = b;
}

/* One kernel column's walk along an output row: output columns ox in [lo, hi) read input
 * column ox*s + off, the rest fall in the padding. The same for every row, image and channel,
 * so the callers work it out once per kernel column (it takes two divisions). */
typedef struct span {
  int lo, hi, off, s, OW;
} span;

static inline span row_span(int OW, int W, int s, int off) {
  span r = {0, 0, off, s, OW};
  valid_range(OW, W, s, off, &r.lo, &r.hi);
  return r;
}

/* dst[0..n) = src[0..n). Lowering copies rows as short as a kernel's output row (LeNet's conv2:
 * 8 floats, 128 000 rows per partition and pass), where a call to memcpy costs more than the
 * copy: those are copied inline, four lanes at a time, the last four lanes ending at n (they
 * may write some floats twice, with the same values). The empty asm keeps the compiler from
 * turning the loop back into a call to memmove. */
static inline void copy_row(float *restrict dst, const float *restrict src, size_t n) {
  if (n >= 64) {
    memcpy(dst, src, n * sizeof(float));
    return;
  }
  if (n < 4) {
    for (size_t i = 0; i < n; i++) {
      dst[i] = src[i];
      __asm__ volatile("" ::: "memory");
    }
    return;
  }
  for (size_t i = 0; i + 4 < n; i += 4) {
    ct_v4f_store(dst + i, ct_v4f_load(src + i));
    __asm__ volatile("" ::: "memory");
  }
  ct_v4f_store(dst + n - 4, ct_v4f_load(src + n - 4));
}

/* dst[ox] = src[ox*s + off] for valid ox, 0 elsewhere (src is one input row). */
static inline void gather_row(float *restrict dst, const float *restrict src, const span *sp) {
  const int lo = sp->lo, hi = sp->hi, s = sp->s, off = sp->off;
  for (int o = 0; o < lo; o++) dst[o] = 0;
  if (s == 1) {
    if (hi > lo) copy_row(dst + lo, src + lo + off, (size_t)(hi - lo));
  } else {
    for (int o = lo; o < hi; o++) dst[o] = src[o * s + off];
  }
  for (int o = hi; o < sp->OW; o++) dst[o] = 0;
}

/* dst[i] = src[i] + b (src may be dst), four lanes at a time. */
static inline void add_scalar(float *dst, const float *src, float b, size_t n) {
  const ct_v4f bv = ct_v4f_splat(b);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) ct_v4f_store(dst + i, ct_v4f_load(src + i) + bv);
  for (; i < n; i++) dst[i] = src[i] + b;
}

/* dst[i] += src[i], four lanes at a time (each element's sum is the scalar one). */
static inline void add_to(float *restrict dst, const float *restrict src, size_t n) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) ct_v4f_store(dst + i, ct_v4f_load(dst + i) + ct_v4f_load(src + i));
  for (; i < n; i++) dst[i] += src[i];
}

/* dst[ox*s + off] += src[ox] for valid ox. */
static inline void scatter_add_row(float *restrict dst, const float *restrict src, const span *sp) {
  const int lo = sp->lo, hi = sp->hi, s = sp->s, off = sp->off;
  if (s == 1) {
    if (hi > lo) add_to(dst + lo + off, src + lo, (size_t)(hi - lo));
  } else {
    for (int o = lo; o < hi; o++) dst[o * s + off] += src[o];
  }
}

/* The sum of x[0..n): four running sums in lanes (x[i] goes to lane i mod 4), then the lanes
 * pairwise, then the tail - a fixed order, so the result is reproducible. */
static inline float sum_of(const float *x, size_t n) {
  ct_v4f acc = ct_v4f_splat(0.0f);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) acc += ct_v4f_load(x + i);
  float s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  for (; i < n; i++) s += x[i];
  return s;
}

/* db[k] += the sum of dy over images and positions (the layout of y: nb x K x OH x OW). */
static void bias_grad(const ct_conv_geom *g, int nb, const float *dy, float *db) {
  const size_t P = (size_t)g->OH * g->OW;
  for (int n = 0; n < nb; n++)
    for (int k = 0; k < g->K; k++) db[k] += sum_of(dy + ((size_t)n * g->K + k) * P, P);
}

/* ================================================================ type 1 */

/* D[(c,ky,kx)][(img,oy,ox)] = x[img][c][oy*sh-ph+ky*dh][ox*sw-pw+kx*dw] (0 outside).
 *
 * With a horizontal stride, the rows of kx and kx + t, where t*dw is the smallest multiple of
 * sw, read the same input columns shifted by q = t*dw/sw outputs: row kx+t is row kx moved q
 * places left, and only its last q entries need the strided gather. So all rows of one output
 * row (n, oy) are written together, kx innermost, and each copies from the one written t rows
 * before while it is still in L1 (CaffeNet's conv1, 11x11 stride 4: 4 gathers and 7 copies
 * instead of 11 gathers). */
static void lower1_strided(const ct_conv_geom *g, int nb, const float *x, float *D) {
  const size_t HW = (size_t)g->H * g->W, P = (size_t)g->OH * g->OW, cols = (size_t)nb * P;
  int a = g->dw, b = g->sw; /* t = sw / gcd(dw, sw) */
  while (b) {
    int r = a % b;
    a = b;
    b = r;
  }
  const int t = g->sw / a, q = t * g->dw / g->sw, OW = g->OW;
  span spans[MAX_SPANS];
  for (int kx = 0; kx < g->kw && kx < MAX_SPANS; kx++) spans[kx] = row_span(OW, g->W, g->sw, kx * g->dw - g->pw);
  for (int c = 0; c < g->C; c++)
    for (int ky = 0; ky < g->kh; ky++) {
      float *rows = D + (size_t)(c * g->kh + ky) * g->kw * cols;
      for (int n = 0; n < nb; n++) {
        const float *xi = x + ((size_t)n * g->C + c) * HW;
        for (int oy = 0; oy < g->OH; oy++) {
          const size_t at = (size_t)n * P + (size_t)oy * OW;
          const int iy = oy * g->sh - g->ph + ky * g->dh;
          for (int kx = 0; kx < g->kw; kx++) {
            float *dst = rows + (size_t)kx * cols + at;
            const int off = kx * g->dw - g->pw;
            if (iy < 0 || iy >= g->H) {
              memset(dst, 0, (size_t)OW * sizeof(float));
            } else if (kx >= t && q < OW) {
              const float *src = xi + (size_t)iy * g->W;
              memcpy(dst, rows + (size_t)(kx - t) * cols + at + q, (size_t)(OW - q) * sizeof(float));
              for (int o = OW - q; o < OW; o++) {
                const int ix = o * g->sw + off;
                dst[o] = ix >= 0 && ix < g->W ? src[ix] : 0.0f;
              }
            } else {
              const span sp = kx < MAX_SPANS ? spans[kx] : row_span(OW, g->W, g->sw, off);
              gather_row(dst, xi + (size_t)iy * g->W, &sp);
            }
          }
        }
      }
    }
}

static void lower1(const ct_conv_geom *g, int nb, const float *x, float *D) {
  if (g->sw > 1) {
    lower1_strided(g, nb, x, D);
    return;
  }
  const size_t HW = (size_t)g->H * g->W, P = (size_t)g->OH * g->OW, cols = (size_t)nb * P;
  for (int c = 0; c < g->C; c++)
    for (int ky = 0; ky < g->kh; ky++)
      for (int kx = 0; kx < g->kw; kx++) {
        float *row = D + ((size_t)(c * g->kh + ky) * g->kw + kx) * cols;
        const span sp = row_span(g->OW, g->W, g->sw, kx * g->dw - g->pw);
        for (int n = 0; n < nb; n++) {
          const float *xi = x + ((size_t)n * g->C + c) * HW;
          for (int oy = 0; oy < g->OH; oy++) {
            float *dst = row + (size_t)n * P + (size_t)oy * g->OW;
            int iy = oy * g->sh - g->ph + ky * g->dh;
            if (iy < 0 || iy >= g->H)
              memset(dst, 0, (size_t)g->OW * sizeof(float));
            else
              gather_row(dst, xi + (size_t)iy * g->W, &sp);
          }
        }
      }
}

/* The adjoint of lower1: dx += D scattered back (dx must be zeroed by the caller). */
static void lift_back1(const ct_conv_geom *g, int nb, const float *D, float *dx) {
  const size_t HW = (size_t)g->H * g->W, P = (size_t)g->OH * g->OW, cols = (size_t)nb * P;
  for (int c = 0; c < g->C; c++)
    for (int ky = 0; ky < g->kh; ky++)
      for (int kx = 0; kx < g->kw; kx++) {
        const float *row = D + ((size_t)(c * g->kh + ky) * g->kw + kx) * cols;
        const span sp = row_span(g->OW, g->W, g->sw, kx * g->dw - g->pw);
        for (int n = 0; n < nb; n++) {
          float *xi = dx + ((size_t)n * g->C + c) * HW;
          for (int oy = 0; oy < g->OH; oy++) {
            int iy = oy * g->sh - g->ph + ky * g->dh;
            if (iy < 0 || iy >= g->H) continue;
            scatter_add_row(xi + (size_t)iy * g->W, row + (size_t)n * P + (size_t)oy * g->OW, &sp);
          }
        }
      }
}

/* lift: R (K x (nb P)) -> y (nb x K x P), plus b */
static void lift1(const ct_conv_geom *g, int nb, const float *R, const float *b, float *y) {
  const size_t P = (size_t)g->OH * g->OW, cols = (size_t)nb * P;
  for (int n = 0; n < nb; n++)
    for (int k = 0; k < g->K; k++) {
      const float *restrict src = R + (size_t)k * cols + (size_t)n * P;
      float *restrict dst = y + ((size_t)n * g->K + k) * P;
      add_scalar(dst, src, b ? b[k] : 0.0f, P);
    }
}

/* dy lowered: Gm (K x (nb P)) */
static void lift_grad1(const ct_conv_geom *g, int nb, const float *dy, float *Gm) {
  const size_t P = (size_t)g->OH * g->OW, cols = (size_t)nb * P;
  for (int n = 0; n < nb; n++)
    for (int k = 0; k < g->K; k++)
      memcpy(Gm + (size_t)k * cols + (size_t)n * P, dy + ((size_t)n * g->K + k) * P, P * sizeof(float));
}

/* db from the rows of the lowered dy */
static void bias_grad1(const ct_conv_geom *g, int nb, const float *Gm, float *db) {
  const size_t cols = (size_t)nb * g->OH * g->OW;
  for (int k = 0; k < g->K; k++) db[k] += sum_of(Gm + (size_t)k * cols, cols);
}

/* ================================================================ type 2 */

/* D2[(c,kx)][(img,iy,ox)] = x[img][c][iy][ox*sw-pw+kx*dw] (0 outside). */
static void lower2(const ct_conv_geom *g, int nb, const float *x, float *D) {
  const size_t cols = (size_t)nb * g->H * g->OW;
  for (int c = 0; c < g->C; c++)
    for (int kx = 0; kx < g->kw; kx++) {
      float *row = D + ((size_t)c * g->kw + kx) * cols;
      const span sp = row_span(g->OW, g->W, g->sw, kx * g->dw - g->pw);
      for (int n = 0; n < nb; n++)
        for (int iy = 0; iy < g->H; iy++)
          gather_row(row + ((size_t)n * g->H + iy) * g->OW, x + (((size_t)n * g->C + c) * g->H + iy) * g->W, &sp);
    }
}

/* W2 per group: rows (ky, kg), columns (c in group, kx). */
static void kernel2(const ct_conv_geom *g, const float *w, float *W2) {
  const int Kg = g->K / g->G, Cg = g->C / g->G;
  for (int gi = 0; gi < g->G; gi++)
    for (int ky = 0; ky < g->kh; ky++)
      for (int kg = 0; kg < Kg; kg++) {
        float *dst = W2 + (((size_t)gi * g->kh + ky) * Kg + kg) * Cg * g->kw;
        const float *src = w + (size_t)(gi * Kg + kg) * Cg * g->kh * g->kw;
        for (int c = 0; c < Cg; c++)
          for (int kx = 0; kx < g->kw; kx++) dst[c * g->kw + kx] = src[((size_t)c * g->kh + ky) * g->kw + kx];
      }
}

/* With a vertical stride of 1, the output rows oy that kernel row ky reaches read the input
 * rows iy = oy - ph + ky*dh: one contiguous run [*oy0, *oy1) of both (rows of OW entries). */
static void rows_reached(const ct_conv_geom *g, int ky, int *oy0, int *oy1) {
  const int shift = ky * g->dh - g->ph; /* iy = oy + shift */
  int a = shift < 0 ? -shift : 0, b = g->H - shift;
  if (b > g->OH) b = g->OH;
  if (a > b) a = b;
  *oy0 = a;
  *oy1 = b;
}

/* lift: y[n][k][oy][ox] = b[k] + sum_ky R[(g,ky,kg)][(n, oy*sh-ph+ky*dh, ox)] */
static void lift2(const ct_conv_geom *g, int nb, const float *R, const float *b, float *y) {
  const int Kg = g->K / g->G;
  const size_t cols = (size_t)nb * g->H * g->OW, P = (size_t)g->OH * g->OW;
  for (int n = 0; n < nb; n++)
    for (int k = 0; k < g->K; k++) {
      float *yk = y + ((size_t)n * g->K + k) * P;
      const float bk = b ? b[k] : 0.0f;
      for (size_t p = 0; p < P; p++) yk[p] = bk;
      const int gi = k / Kg, kg = k % Kg;
      for (int ky = 0; ky < g->kh; ky++) {
        const float *row = R + (((size_t)gi * g->kh + ky) * Kg + kg) * cols + (size_t)n * g->H * g->OW;
        if (g->sh == 1) { /* the rows reached are one run: one vector add */
          int oy0, oy1;
          rows_reached(g, ky, &oy0, &oy1);
          if (oy1 > oy0)
            add_to(yk + (size_t)oy0 * g->OW, row + (size_t)(oy0 + ky * g->dh - g->ph) * g->OW,
                   (size_t)(oy1 - oy0) * g->OW);
          continue;
        }
        for (int oy = 0; oy < g->OH; oy++) {
          int iy = oy * g->sh - g->ph + ky * g->dh;
          if (iy < 0 || iy >= g->H) continue;
          float *restrict dst = yk + (size_t)oy * g->OW;
          const float *restrict src = row + (size_t)iy * g->OW;
          for (int ox = 0; ox < g->OW; ox++) dst[ox] += src[ox];
        }
      }
    }
}

/* dy lowered: R[(g,ky,kg)][(n,iy,ox)] = dy[n][k][oy][ox] where iy = oy*sh-ph+ky*dh */
static void lift_grad2(const ct_conv_geom *g, int nb, const float *dy, float *R) {
  const int Kg = g->K / g->G;
  const size_t cols = (size_t)nb * g->H * g->OW;
  if (g->sh == 1) { /* each (n, k, ky) block: zero rows, one run of dy's rows, zero rows */
    const size_t OW = (size_t)g->OW, HOW = (size_t)g->H * OW;
    for (int n = 0; n < nb; n++)
      for (int k = 0; k < g->K; k++) {
        const int gi = k / Kg, kg = k % Kg;
        const float *dyk = dy + ((size_t)n * g->K + k) * g->OH * OW;
        for (int ky = 0; ky < g->kh; ky++) {
          float *blk = R + (((size_t)gi * g->kh + ky) * Kg + kg) * cols + (size_t)n * HOW;
          int oy0, oy1;
          rows_reached(g, ky, &oy0, &oy1);
          const size_t i0 = oy1 > oy0 ? (size_t)(oy0 + ky * g->dh - g->ph) * OW : 0;
          const size_t len = oy1 > oy0 ? (size_t)(oy1 - oy0) * OW : 0;
          memset(blk, 0, i0 * sizeof(float));
          memcpy(blk + i0, dyk + (size_t)oy0 * OW, len * sizeof(float));
          memset(blk + i0 + len, 0, (HOW - i0 - len) * sizeof(float));
        }
      }
    return;
  }
  memset(R, 0, (size_t)g->kh * g->K * cols * sizeof(float));
  for (int n = 0; n < nb; n++)
    for (int k = 0; k < g->K; k++) {
      const int gi = k / Kg, kg = k % Kg;
      for (int ky = 0; ky < g->kh; ky++) {
        float *row = R + (((size_t)gi * g->kh + ky) * Kg + kg) * cols + (size_t)n * g->H * g->OW;
        for (int oy = 0; oy < g->OH; oy++) {
          int iy = oy * g->sh - g->ph + ky * g->dh;
          if (iy < 0 || iy >= g->H) continue;
          memcpy(row + (size_t)iy * g->OW, dy + (((size_t)n * g->K + k) * g->OH + oy) * g->OW,
                 (size_t)g->OW * sizeof(float));
        }
      }
    }
}

/* dw += dW2 reordered back to K x C/G x kh x kw */
static void kernel_grad2(const ct_conv_geom *g, const float *dW2, float *dw) {
  const int Kg = g->K / g->G, Cg = g->C / g->G, KK = Cg * g->kw;
  for (int gi = 0; gi < g->G; gi++)
    for (int ky = 0; ky < g->kh; ky++)
      for (int kg = 0; kg < Kg; kg++) {
        const float *src = dW2 + (((size_t)gi * g->kh + ky) * Kg + kg) * KK;
        float *dst = dw + (size_t)(gi * Kg + kg) * Cg * g->kh * g->kw;
        for (int c = 0; c < Cg; c++)
          for (int kx = 0; kx < g->kw; kx++) dst[((size_t)c * g->kh + ky) * g->kw + kx] += src[c * g->kw + kx];
      }
}

/* dx = the lowered data gradient D scattered back */
static void data_grad2(const ct_conv_geom *g, int nb, const float *D, float *dx) {
  const size_t cols = (size_t)nb * g->H * g->OW;
  memset(dx, 0, (size_t)nb * g->C * g->H * g->W * sizeof(float));
  for (int c = 0; c < g->C; c++)
    for (int kx = 0; kx < g->kw; kx++) {
      const float *row = D + ((size_t)c * g->kw + kx) * cols;
      const span sp = row_span(g->OW, g->W, g->sw, kx * g->dw - g->pw);
      for (int n = 0; n < nb; n++)
        for (int iy = 0; iy < g->H; iy++)
          scatter_add_row(dx + (((size_t)n * g->C + c) * g->H + iy) * g->W, row + ((size_t)n * g->H + iy) * g->OW,
                          &sp);
    }
}

/* ================================================================ type 3 */

/* X[c][(img, q)] = x[img][c][q]: the input with channels outermost. */
static void transpose_in(const ct_conv_geom *g, int nb, const float *x, float *X) {
  const size_t HW = (size_t)g->H * g->W, cols = (size_t)nb * HW;
  for (int n = 0; n < nb; n++)
    for (int c = 0; c < g->C; c++)
      memcpy(X + (size_t)c * cols + (size_t)n * HW, x + ((size_t)n * g->C + c) * HW, HW * sizeof(float));
}

/* W3 per group: rows (ky, kx, kg), columns c in group. */
static void kernel3(const ct_conv_geom *g, const float *w, float *W3) {
  const int Kg = g->K / g->G, Cg = g->C / g->G, KK = g->kh * g->kw;
  for (int gi = 0; gi < g->G; gi++)
    for (int t = 0; t < KK; t++)
      for (int kg = 0; kg < Kg; kg++) {
        float *dst = W3 + (((size_t)gi * KK + t) * Kg + kg) * Cg;
        const float *src = w + (size_t)(gi * Kg + kg) * Cg * KK + t;
        for (int c = 0; c < Cg; c++) dst[c] = src[(size_t)c * KK];
      }
}

/* lift: y[n][k][oy][ox] = b[k] + sum_{ky,kx} R[(g,ky,kx,kg)][(n, iy, ix)] */
static void lift3(const ct_conv_geom *g, int nb, const float *R, const float *b, float *y) {
  const int Kg = g->K / g->G, KK = g->kh * g->kw;
  const size_t HW = (size_t)g->H * g->W, cols = (size_t)nb * HW, P = (size_t)g->OH * g->OW;
  for (int n = 0; n < nb; n++)
    for (int k = 0; k < g->K; k++) {
      float *yk = y + ((size_t)n * g->K + k) * P;
      const float bk = b ? b[k] : 0.0f;
      for (size_t p = 0; p < P; p++) yk[p] = bk;
      const int gi = k / Kg, kg = k % Kg;
      for (int ky = 0; ky < g->kh; ky++)
        for (int kx = 0; kx < g->kw; kx++) {
          const float *plane = R + (((size_t)gi * KK + ky * g->kw + kx) * Kg + kg) * cols + (size_t)n * HW;
          const int off = kx * g->dw - g->pw;
          int lo, hi;
          valid_range(g->OW, g->W, g->sw, off, &lo, &hi);
          for (int oy = 0; oy < g->OH; oy++) {
            int iy = oy * g->sh - g->ph + ky * g->dh;
            if (iy < 0 || iy >= g->H) continue;
            float *restrict dst = yk + (size_t)oy * g->OW;
            const float *restrict src = plane + (size_t)iy * g->W; /* column ix = ox*sw + off */
            if (g->sw == 1)
              for (int ox = lo; ox < hi; ox++) dst[ox] += src[ox + off];
            else
              for (int ox = lo; ox < hi; ox++) dst[ox] += src[ox * g->sw + off];
          }
        }
    }
}

/* dy lowered: R[(g,ky,kx,kg)][(n,iy,ix)] = dy[n][k][oy][ox] at iy = oy*sh-ph+ky*dh, ix = ... */
static void lift_grad3(const ct_conv_geom *g, int nb, const float *dy, float *R) {
  const int Kg = g->K / g->G, KK = g->kh * g->kw;
  const size_t HW = (size_t)g->H * g->W, cols = (size_t)nb * HW, P = (size_t)g->OH * g->OW;
  memset(R, 0, (size_t)KK * g->K * cols * sizeof(float));
  for (int n = 0; n < nb; n++)
    for (int k = 0; k < g->K; k++) {
      const int gi = k / Kg, kg = k % Kg;
      const float *dk = dy + ((size_t)n * g->K + k) * P;
      for (int ky = 0; ky < g->kh; ky++)
        for (int kx = 0; kx < g->kw; kx++) {
          float *plane = R + (((size_t)gi * KK + ky * g->kw + kx) * Kg + kg) * cols + (size_t)n * HW;
          const int off = kx * g->dw - g->pw;
          int lo, hi;
          valid_range(g->OW, g->W, g->sw, off, &lo, &hi);
          for (int oy = 0; oy < g->OH; oy++) {
            int iy = oy * g->sh - g->ph + ky * g->dh;
            if (iy < 0 || iy >= g->H) continue;
            float *dst = plane + (size_t)iy * g->W;
            const float *src = dk + (size_t)oy * g->OW;
            for (int ox = lo; ox < hi; ox++) dst[ox * g->sw + off] = src[ox];
          }
        }
    }
}

/* dw += dW3 reordered back to K x C/G x kh x kw */
static void kernel_grad3(const ct_conv_geom *g, const float *dW3, float *dw) {
  const int Kg = g->K / g->G, Cg = g->C / g->G, KK = g->kh * g->kw;
  for (int gi = 0; gi < g->G; gi++)
    for (int t = 0; t < KK; t++)
      for (int kg = 0; kg < Kg; kg++) {
        const float *src = dW3 + (((size_t)gi * KK + t) * Kg + kg) * Cg;
        float *dst = dw + (size_t)(gi * Kg + kg) * Cg * KK + t;
        for (int c = 0; c < Cg; c++) dst[(size_t)c * KK] += src[c];
      }
}

/* dx = X (C x (nb H W)) transposed back */
static void data_grad3(const ct_conv_geom *g, int nb, const float *X, float *dx) {
  const size_t HW = (size_t)g->H * g->W, cols = (size_t)nb * HW;
  for (int n = 0; n < nb; n++)
    for (int c = 0; c < g->C; c++)
      memcpy(dx + ((size_t)n * g->C + c) * HW, X + (size_t)c * cols + (size_t)n * HW, HW * sizeof(float));
}

/* ================================================================ pointwise */

/* y = b per output channel, for the GEMMs to add onto (the layout of y: nb x K x H x W) */
static void lift_pw(const ct_conv_geom *g, int nb, const float *b, float *y) {
  const size_t HW = (size_t)g->H * g->W;
  if (!b) return;
  for (int n = 0; n < nb; n++) {
    float *yn = y + (size_t)n * g->K * HW;
    for (int k = 0; k < g->K; k++) {
      const ct_v4f bv = ct_v4f_splat(b[k]);
      float *yk = yn + (size_t)k * HW;
      size_t i = 0;
      for (; i + 4 <= HW; i += 4) ct_v4f_store(yk + i, bv);
      for (; i < HW; i++) yk[i] = b[k];
    }
  }
}

/* ================================================================ dispatch */

ct_status ct_cpu_conv_lower(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *x,
                            const float *w, float *ws) {
  (void)d;
  const ct_lower_layout lay = ct_lower_layout_of(g, t, nb);
  switch (t) {
    case CT_LOWER_TYPE2:
      lower2(g, nb, x, ws + lay.data);
      kernel2(g, w, ws + lay.kernel);
      break;
    case CT_LOWER_TYPE3:
      transpose_in(g, nb, x, ws + lay.data);
      kernel3(g, w, ws + lay.kernel);
      break;
    case CT_LOWER_WINOGRAD:
      ct_cpu_wino_lower(g, nb, x, ws + lay.data, ws + lay.scratch);
      ct_cpu_wino_kernel(g, w, ws + lay.kernel);
      break;
    case CT_LOWER_POINTWISE: break;
    default: lower1(g, nb, x, ws + lay.data); break;
  }
  return CT_OK;
}

ct_status ct_cpu_conv_lift(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, float *ws,
                           const float *b, float *y) {
  (void)d;
  const ct_lower_layout lay = ct_lower_layout_of(g, t, nb);
  switch (t) {
    case CT_LOWER_TYPE2: lift2(g, nb, ws + lay.product, b, y); break;
    case CT_LOWER_TYPE3: lift3(g, nb, ws + lay.product, b, y); break;
    case CT_LOWER_WINOGRAD: ct_cpu_wino_lift(g, nb, ws + lay.product, b, y, ws + lay.scratch); break;
    case CT_LOWER_POINTWISE: lift_pw(g, nb, b, y); break;
    default: lift1(g, nb, ws + lay.product, b, y); break;
  }
  return CT_OK;
}

ct_status ct_cpu_conv_lift_grad(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *dy,
                                float *ws) {
  (void)d;
  const ct_lower_layout lay = ct_lower_layout_of(g, t, nb);
  switch (t) {
    case CT_LOWER_TYPE2: lift_grad2(g, nb, dy, ws + lay.product); break;
    case CT_LOWER_TYPE3: lift_grad3(g, nb, dy, ws + lay.product); break;
    case CT_LOWER_WINOGRAD: ct_cpu_wino_lift_grad(g, nb, dy, ws + lay.product, ws + lay.scratch); break;
    case CT_LOWER_POINTWISE: break;
    default: lift_grad1(g, nb, dy, ws + lay.product); break;
  }
  return CT_OK;
}

ct_status ct_cpu_conv_bias_grad(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *dy,
                                const float *ws, float *db) {
  (void)d;
  switch (t) {
    case CT_LOWER_TYPE2:
    case CT_LOWER_TYPE3:
    case CT_LOWER_WINOGRAD:
    case CT_LOWER_POINTWISE: bias_grad(g, nb, dy, db); break;
    default: bias_grad1(g, nb, ws + ct_lower_layout_of(g, t, nb).product, db); break;
  }
  return CT_OK;
}

ct_status ct_cpu_conv_lower_grad(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, float *ws,
                                 float *dx, float *dw) {
  (void)d;
  const ct_lower_layout lay = ct_lower_layout_of(g, t, nb);
  switch (t) {
    case CT_LOWER_TYPE2:
      if (dw) kernel_grad2(g, ws + lay.kernel_grad, dw);
      if (dx) data_grad2(g, nb, ws + lay.data, dx);
      break;
    case CT_LOWER_TYPE3:
      if (dw) kernel_grad3(g, ws + lay.kernel_grad, dw);
      if (dx) data_grad3(g, nb, ws + lay.data, dx);
      break;
    case CT_LOWER_WINOGRAD:
      if (dw) ct_cpu_wino_kernel_grad(g, ws + lay.kernel_grad, dw);
      if (dx) ct_cpu_wino_lower_grad(g, nb, ws + lay.data, dx, ws + lay.scratch);
      break;
    case CT_LOWER_POINTWISE: break;
    default:
      if (dx) {
        memset(dx, 0, (size_t)nb * g->C * g->H * g->W * sizeof(float));
        lift_back1(g, nb, ws + lay.data, dx);
      }
      break;
  }
  return CT_OK;
}
