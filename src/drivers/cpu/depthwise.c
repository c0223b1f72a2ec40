/* The CPU's DIRECT convolution (lowering.h: DIRECT; the padded layout: ct_direct_layout):
 * depthwise and many-group layers, whose per-group GEMMs are one or a few rows deep and run at a
 * tenth of the GEMM rate (MobileNet v2's 3x3 depthwise layers: 12-24 GFLOP/s as one GEMM per
 * group). Here each output row is a run of 8-lane vectors, each vector summing its taps in
 * registers, over a zero-padded copy of the group's planes: no loop tests a border, every plane
 * width runs vectorised (the last vector's spare lanes are computed and not stored).
 *
 * Each output's sum has a fixed order (forward: bias, then channel, kernel row, kernel column;
 * data gradient: output channel, row, column; weight gradient: rows of dy in order, eight running
 * sums in lanes, added pairwise, then image by image), the same whichever instance runs: the
 * bodies are compiled for the baseline (SSE: a vector is two registers) and for AVX2 (one),
 * picked at run time, and ISO C does not contract a * b + c into an FMA, so both give the same
 * bits. Instances with the kernel and stride as constants (3x3 at stride 1 and 2, MobileNet's
 * and ResNeXt's) let the compiler unroll the taps. */
#include <stdatomic.h>
#include <string.h>

#include "core/simd.h"
#include "drivers/cpu/kernels.h"

#define LANES CT_DIRECT_LANES
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* P (XR x XC) = the plane x (H x W) moved down ph rows and right pw columns, zero around it. */
static ALWAYS_INLINE void pad_plane(const float *x, int H, int W, int top, int left, float *P, int R, int Cols) {
  for (int r = 0; r < R; r++) {
    float *dst = P + (size_t)r * Cols;
    const int iy = r - top;
    if (iy < 0 || iy >= H) {
      memset(dst, 0, (size_t)Cols * sizeof(float));
      continue;
    }
    const int c0 = left < Cols ? left : Cols;
    int n = Cols - c0 < W ? Cols - c0 : W;
    memset(dst, 0, (size_t)c0 * sizeof(float));
    memcpy(dst + c0, x + (size_t)iy * W, (size_t)n * sizeof(float));
    memset(dst + c0 + n, 0, (size_t)(Cols - c0 - n) * sizeof(float));
  }
}

/* The first n (>= 1) lanes of v to p. */
static ALWAYS_INLINE void store_lanes(float *p, ct_v8f v, int n) {
  if (n >= LANES) {
    ct_v8f_store(p, v);
    return;
  }
  for (int i = 0; i < n; i++) p[i] = v[i];
}

/* ---------------------------------------------------------------- forward */

static ALWAYS_INLINE void forward_body(const ct_conv_geom *g, int nb, const float *x, const float *w, const float *b,
                                       float *y, float *ws, const int sw, const int kh, const int kw) {
  const ct_direct_layout lay = ct_lower_direct_layout(g);
  const int Cg = g->C / g->G, Kg = g->K / g->G, KK = kh * kw;
  const size_t plane = (size_t)lay.XR * lay.XC, HW = (size_t)g->H * g->W, P = (size_t)g->OH * g->OW;
  for (int n = 0; n < nb; n++)
    for (int gi = 0; gi < g->G; gi++) {
      for (int c = 0; c < Cg; c++)
        pad_plane(x + ((size_t)n * g->C + (size_t)gi * Cg + c) * HW, g->H, g->W, g->ph, g->pw, ws + c * plane,
                  lay.XR, lay.XC);
      for (int kg = 0; kg < Kg; kg++) {
        const int k = gi * Kg + kg;
        const float *wk = w + (size_t)k * Cg * KK;
        const float bk = b ? b[k] : 0.0f;
        float *yk = y + ((size_t)n * g->K + k) * P;
        for (int oy = 0; oy < g->OH; oy++)
          for (int ox0 = 0; ox0 < g->OW; ox0 += LANES) {
            ct_v8f acc = ct_v8f_splat(bk);
            for (int c = 0; c < Cg; c++)
#pragma GCC unroll 4
              for (int i = 0; i < kh; i++) {
                const float *row = ws + c * plane + (size_t)(oy * g->sh + i * g->dh) * lay.XC + (size_t)ox0 * sw;
                const float *wr = wk + (c * kh + i) * kw;
#pragma GCC unroll 4
                for (int j = 0; j < kw; j++) acc += ct_v8f_splat(wr[j]) * ct_v8f_load_stride(row + j * g->dw, sw);
              }
            store_lanes(yk + (size_t)oy * g->OW + ox0, acc, g->OW - ox0);
          }
      }
    }
}

/* ---------------------------------------------------------------- data gradient */

static ALWAYS_INLINE void data_body(const ct_conv_geom *g, int nb, const float *w, const float *dy, float *dx,
                                    float *ws, const int sw, const int kh, const int kw) {
  const ct_direct_layout lay = ct_lower_direct_layout(g);
  const int Cg = g->C / g->G, Kg = g->K / g->G, KK = kh * kw, sh = g->sh;
  const size_t plane = (size_t)lay.QR * lay.QC, HW = (size_t)g->H * g->W, P = (size_t)g->OH * g->OW;
  float *tmp = ws + Kg * plane; /* one phase of an input row, sw > 1 */
  for (int n = 0; n < nb; n++)
    for (int gi = 0; gi < g->G; gi++) {
      for (int kg = 0; kg < Kg; kg++)
        pad_plane(dy + ((size_t)n * g->K + (size_t)gi * Kg + kg) * P, g->OH, g->OW, lay.RT, lay.CL, ws + kg * plane,
                  lay.QR, lay.QC);
      for (int cl = 0; cl < Cg; cl++) {
        float *dxc = dx + ((size_t)n * g->C + (size_t)gi * Cg + cl) * HW;
        for (int iy = 0; iy < g->H; iy++) {
          if (sw == 1 && sh == 1) {
            /* every tap reaches every input (the padding of dy is zeros): the forward's loops on
             * dy with the kernel turned around */
            for (int m0 = 0; m0 < g->W; m0 += LANES) {
              ct_v8f acc = ct_v8f_splat(0.0f);
              for (int kg = 0; kg < Kg; kg++) {
                const float *wk = w + ((size_t)(gi * Kg + kg) * Cg + cl) * KK;
                const float *Qk = ws + kg * plane + lay.CL + g->pw + m0;
#pragma GCC unroll 4
                for (int i = 0; i < kh; i++) {
                  const float *row = Qk + (size_t)(iy + g->ph - i * g->dh + lay.RT) * lay.QC;
#pragma GCC unroll 4
                  for (int j = 0; j < kw; j++) acc += ct_v8f_splat(wk[i * kw + j]) * ct_v8f_load(row - j * g->dw);
                }
              }
              store_lanes(dxc + (size_t)iy * g->W + m0, acc, g->W - m0);
            }
            continue;
          }
          /* the kernel rows that reach this input row, and the dy rows they read (as offsets) */
          int ri[CT_DIRECT_MAX_KERNEL], roff[CT_DIRECT_MAX_KERNEL], nr = 0;
          for (int i = 0; i < kh; i++) {
            const int num = iy + g->ph - i * g->dh;
            if (num % sh) continue;
            ri[nr] = i;
            roff[nr++] = (num / sh + lay.RT) * lay.QC + lay.CL;
          }
          for (int q = 0; q < sw && q < g->W; q++) {
            /* the kernel columns that reach this phase, and the dy column shift of each */
            int cj[CT_DIRECT_MAX_KERNEL], coff[CT_DIRECT_MAX_KERNEL], nc = 0;
            for (int j = 0; j < kw; j++) {
              const int numj = q + g->pw - j * g->dw;
              if (numj % sw) continue;
              cj[nc] = j;
              coff[nc++] = numj / sw;
            }
            const int Mq = (g->W - q + sw - 1) / sw;
            float *out = sw == 1 ? dxc + (size_t)iy * g->W : tmp;
            for (int m0 = 0; m0 < Mq; m0 += LANES) {
              ct_v8f acc = ct_v8f_splat(0.0f);
              for (int kg = 0; kg < Kg; kg++) {
                const float *wk = w + ((size_t)(gi * Kg + kg) * Cg + cl) * KK, *Qk = ws + kg * plane + m0;
                for (int a = 0; a < nr; a++) {
                  const float *row = Qk + roff[a], *wr = wk + ri[a] * kw;
                  for (int c = 0; c < nc; c++) acc += ct_v8f_splat(wr[cj[c]]) * ct_v8f_load(row + coff[c]);
                }
              }
              if (sw == 1)
                store_lanes(out + m0, acc, Mq - m0);
              else
                ct_v8f_store(out + m0, acc);
            }
            if (sw > 1) {
              float *dr = dxc + (size_t)iy * g->W + q;
              for (int m = 0; m < Mq; m++) dr[(size_t)m * sw] = tmp[m];
            }
          }
        }
      }
    }
}

/* ---------------------------------------------------------------- weight gradient */

static ALWAYS_INLINE void weight_body(const ct_conv_geom *g, int nb, const float *x, const float *dy, float *dw,
                                      float *db, float *ws, const int sw, const int kh, const int kw) {
  const ct_direct_layout lay = ct_lower_direct_layout(g);
  const int Cg = g->C / g->G, Kg = g->K / g->G, KK = kh * kw;
  const size_t plane = (size_t)lay.XR * lay.XC, HW = (size_t)g->H * g->W, P = (size_t)g->OH * g->OW;
  float *D = ws + Cg * plane; /* dy's plane, rows of OWr floats */
  for (int n = 0; n < nb; n++)
    for (int gi = 0; gi < g->G; gi++) {
      if (dw)
        for (int c = 0; c < Cg; c++)
          pad_plane(x + ((size_t)n * g->C + (size_t)gi * Cg + c) * HW, g->H, g->W, g->ph, g->pw, ws + c * plane,
                    lay.XR, lay.XC);
      for (int kg = 0; kg < Kg; kg++) {
        const int k = gi * Kg + kg;
        pad_plane(dy + ((size_t)n * g->K + k) * P, g->OH, g->OW, 0, 0, D, g->OH, lay.OWr);
        if (db) {
          ct_v8f s = ct_v8f_splat(0.0f);
          for (size_t i = 0; i < (size_t)g->OH * lay.OWr; i += LANES) s += ct_v8f_load(D + i);
          db[k] += ct_v8f_sum(s);
        }
        if (!dw) continue;
        for (int cl = 0; cl < Cg; cl++) {
          const float *Pc = ws + cl * plane;
          float *dwk = dw + ((size_t)k * Cg + cl) * KK;
          if (KK <= 9) { /* every tap's running sums in registers, one pass over dy */
            ct_v8f acc[9];
            for (int t = 0; t < 9; t++) acc[t] = ct_v8f_splat(0.0f);
            for (int oy = 0; oy < g->OH; oy++)
              for (int ox0 = 0; ox0 < g->OW; ox0 += LANES) {
                const ct_v8f d = ct_v8f_load(D + (size_t)oy * lay.OWr + ox0);
#pragma GCC unroll 3
                for (int i = 0; i < kh; i++) {
                  const float *row = Pc + (size_t)(oy * g->sh + i * g->dh) * lay.XC + (size_t)ox0 * sw;
#pragma GCC unroll 3
                  for (int j = 0; j < kw; j++) acc[i * kw + j] += d * ct_v8f_load_stride(row + j * g->dw, sw);
                }
              }
            for (int t = 0; t < KK; t++) dwk[t] += ct_v8f_sum(acc[t]);
          } else { /* tap by tap: the same sums in the same order, one pass over dy each */
            for (int i = 0; i < kh; i++)
              for (int j = 0; j < kw; j++) {
                ct_v8f acc = ct_v8f_splat(0.0f);
                for (int oy = 0; oy < g->OH; oy++) {
                  const float *row = Pc + (size_t)(oy * g->sh + i * g->dh) * lay.XC + (size_t)j * g->dw;
                  for (int ox0 = 0; ox0 < g->OW; ox0 += LANES)
                    acc += ct_v8f_load(D + (size_t)oy * lay.OWr + ox0) * ct_v8f_load_stride(row + (size_t)ox0 * sw, sw);
                }
                dwk[i * kw + j] += ct_v8f_sum(acc);
              }
          }
        }
      }
    }
}

/* ---------------------------------------------------------------- instances and dispatch */

#define AVX2 __attribute__((target("avx2")))

/* name_s1k3, name_s2k3 (3x3 kernels at stride 1 and 2 along x), name_any; each for the baseline
 * and, prefixed avx2_, for AVX2. K names the parameter and argument lists (K##_PARAMS, K##_ARGS). */
#define INSTANCES(ATTR, prefix, name, body, K)                                      \
  ATTR static void prefix##name##_s1k3 K##_PARAMS { body(K##_ARGS, 1, 3, 3); }      \
  ATTR static void prefix##name##_s2k3 K##_PARAMS { body(K##_ARGS, 2, 3, 3); }      \
  ATTR static void prefix##name##_any K##_PARAMS { body(K##_ARGS, g->sw, g->kh, g->kw); }

#define FWD_PARAMS (const ct_conv_geom *g, int nb, const float *x, const float *w, const float *b, float *y, float *ws)
#define FWD_ARGS g, nb, x, w, b, y, ws
#define DATA_PARAMS (const ct_conv_geom *g, int nb, const float *w, const float *dy, float *dx, float *ws)
#define DATA_ARGS g, nb, w, dy, dx, ws
#define WEIGHT_PARAMS \
  (const ct_conv_geom *g, int nb, const float *x, const float *dy, float *dw, float *db, float *ws)
#define WEIGHT_ARGS g, nb, x, dy, dw, db, ws

INSTANCES(, , fwd, forward_body, FWD)
INSTANCES(AVX2, avx2_, fwd, forward_body, FWD)
INSTANCES(, , data, data_body, DATA)
INSTANCES(AVX2, avx2_, data, data_body, DATA)
INSTANCES(, , weight, weight_body, WEIGHT)
INSTANCES(AVX2, avx2_, weight, weight_body, WEIGHT)

static bool use_avx2(void) {
  static atomic_int state = -1; /* -1: not yet known; every thread works out the same answer */
  int s = atomic_load_explicit(&state, memory_order_relaxed);
  if (s < 0) {
    __builtin_cpu_init();
    s = __builtin_cpu_supports("avx2");
    atomic_store_explicit(&state, s, memory_order_relaxed);
  }
  return s;
}

/* 0: the 3x3 stride-1 instance, 1: 3x3 stride 2, 2: any geometry */
static int instance_of(const ct_conv_geom *g) {
  if (g->kh == 3 && g->kw == 3 && g->sw == 1) return 0;
  if (g->kh == 3 && g->kw == 3 && g->sw == 2) return 1;
  return 2;
}

#define DISPATCH(name, args)                                    \
  do {                                                          \
    const int which_ = instance_of(g);                          \
    if (use_avx2()) {                                           \
      if (which_ == 0) avx2_##name##_s1k3 args;                 \
      else if (which_ == 1) avx2_##name##_s2k3 args;            \
      else avx2_##name##_any args;                              \
    } else {                                                    \
      if (which_ == 0) name##_s1k3 args;                        \
      else if (which_ == 1) name##_s2k3 args;                   \
      else name##_any args;                                     \
    }                                                           \
  } while (0)

ct_status ct_cpu_conv_direct_forward(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x,
                                     const float *w, const float *b, float *y, float *ws) {
  (void)d;
  DISPATCH(fwd, (FWD_ARGS));
  return CT_OK;
}

ct_status ct_cpu_conv_direct_backward_data(const ct_driver *d, const ct_conv_geom *g, int nb, const float *w,
                                           const float *dy, float *dx, float *ws) {
  (void)d;
  DISPATCH(data, (DATA_ARGS));
  return CT_OK;
}

ct_status ct_cpu_conv_direct_backward_weight(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x,
                                             const float *dy, float *dw, float *db, float *ws) {
  (void)d;
  if (!dw && !db) return CT_OK;
  DISPATCH(weight, (WEIGHT_ARGS));
  return CT_OK;
}
