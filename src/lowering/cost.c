/* The cost model that picks a lowering type (lowering.h's ct_lower_cost, ct_lower_choose): the
 * predicted time of one forward and backward from each type's GEMM FLOPs, the rate its GEMMs'
 * shapes reach, and the bytes its lowering and lifting move. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lowering/lowering.h"

/* A GEMM's rate falls off when a dimension is small (panels do not fill the kernel, and a thin
 * operand streamed from memory is reused less): m / (m + knee) per dimension. */
static double dim_eff(double x, double knee) { return x / (x + knee); }
static double knee_eff(double m, double n, double k, double knee) {
  return dim_eff(m, knee) * dim_eff(n, knee) * dim_eff(k, knee);
}
static double shape_eff(double m, double n, double k) { return knee_eff(m, n, k, 24.0); }

/* Blocked Winograd with X positions a tile (WINOGRAD: 16, WINOGRAD4: 36) in the layout s, B: X
 * GEMMs per group of K/G x C/G by a block's tiles. V and M are each written and read five times
 * over forward and backward (the transforms are that much more than a copy, which this charges
 * nothing for), a block at a time: in cache, CT_WINO_CACHE_GAIN times faster than memory, where
 * a block's V and M fit CT_WINO_BLOCK_BYTES; U and dU go through memory once a block (three
 * passes). */
static void wino_cost(const ct_conv_geom *g, double X, const ct_wino_strides *s, const ct_wino_block *B,
                      double *flops, double *bytes, double *eff) {
  const double K = g->K, C = g->C, Cg = C / g->G, Kg = K / g->G;
  const double T = (double)s->T, Tb = (double)B->rows * s->TW, blocks = ceil(T / Tb);
  *flops = X * 2 * K * Cg * T;
  const double vm = 4.0 * X * (C + K) * Tb;
  const double gain = vm <= (double)CT_WINO_BLOCK_BYTES ? CT_WINO_CACHE_GAIN : 1.0;
  *bytes = 5 * 4.0 * X * (C + K) * T / gain + blocks * 3 * 4.0 * X * K * Cg;
  *eff = knee_eff(Kg, Tb, Cg, CT_WINO_KNEE) * CT_WINO_EFF;
}

double ct_lower_cost(const ct_conv_geom *g, ct_lowering t, int nb, double gflops, double gbytes, size_t max_ws) {
  /* WINOGRAD as the CPU runs it, blocked (a plan with a GPU never picks it: ct_conv_fit_workspace) */
  const size_t need = t == CT_LOWER_WINOGRAD && ct_lower_wino_applies(g) ? ct_lower_wino_block(g, nb).workspace
                                                                         : ct_lower_workspace(g, t, nb);
  if (need > max_ws) return 1e30;
  const double G = g->G, K = g->K, C = g->C, Cg = C / G, Kg = K / G, kh = g->kh, kw = g->kw, n = nb;
  const double H = g->H, W = g->W, OH = g->OH, OW = g->OW;
  double flops, bytes, eff;
  switch (t) {
    case CT_LOWER_TYPE1:
      flops = 2 * K * Cg * kh * kw * n * OH * OW;
      /* lower (write + read in the GEMM), lift, and the same again backward with col2im; on
       * large planes the per-image GEMMs write y and read dy where they lie: no lifting */
      if (ct_lower_direct1(g)) {
        bytes = 4.0 * 3 * C * kh * kw * n * OH * OW;
        eff = shape_eff(Kg, OH * OW, Cg * kh * kw);
      } else {
        bytes = 4.0 * (3 * C * kh * kw * n * OH * OW + 3 * K * n * OH * OW);
        eff = shape_eff(Kg, n * OH * OW, Cg * kh * kw);
      }
      break;
    case CT_LOWER_TYPE2:
      flops = 2 * kh * K * Cg * kw * n * H * OW;
      bytes = 4.0 * (3 * C * kw * n * H * OW + 3 * kh * K * n * H * OW);
      eff = shape_eff(kh * Kg, n * H * OW, Cg * kw) * dim_eff(OW, CT_TYPE2_ROW_KNEE);
      break;
    case CT_LOWER_TYPE3:
      flops = 2 * kh * kw * K * Cg * n * H * W;
      bytes = 4.0 * (3 * C * n * H * W + 3 * kh * kw * K * n * H * W);
      eff = shape_eff(kh * kw * Kg, n * H * W, Cg) * CT_TYPE3_EFF;
      break;
    case CT_LOWER_WINOGRAD: {
      if (!ct_lower_wino_applies(g)) return 1e30;
      const ct_wino_strides s = ct_lower_wino_strides(g, nb);
      const ct_wino_block B = ct_lower_wino_block(g, nb);
      wino_cost(g, 16, &s, &B, &flops, &bytes, &eff);
      break;
    }
    case CT_LOWER_WINOGRAD4: {
      /* as WINOGRAD, with 36 positions on a quarter of the tiles: 4 (not 2.25) times fewer
       * multiply-adds than the direct sums, V and M 2.25 times the input and output */
      if (!ct_lower_wino_applies(g) || g->OH < CT_WINO4_MIN_PLANE || g->OW < CT_WINO4_MIN_PLANE ||
          g->C / g->G < CT_WINO4_MIN_CHANNELS)
        return 1e30;
      const ct_wino_strides s = ct_lower_wino4_strides(g, nb);
      const ct_wino_block B = ct_lower_wino4_block(g, nb);
      wino_cost(g, 36, &s, &B, &flops, &bytes, &eff);
      break;
    }
    case CT_LOWER_POINTWISE:
      if (!ct_conv_is_pointwise(g)) return 1e30;
      flops = 2 * K * Cg * n * H * W;
      bytes = 0; /* nothing but the GEMMs (the bias takes the place of their clearing pass) */
      /* per image: x's plane is the GEMM's whole right operand, read as it lies, so a small
       * plane costs less (CT_POINTWISE_KNEE) than the streaming knee says */
      eff = ct_lower_pw_one_gemm(g) ? shape_eff(K, n, C)
                                    : dim_eff(Kg, 24.0) * dim_eff(H * W, CT_POINTWISE_KNEE) * dim_eff(Cg, 24.0);
      break;
    case CT_LOWER_DIRECT:
      if (!ct_lower_direct_applies(g)) return 1e30;
      /* no GEMM: every tap a vector multiply and add, CT_DIRECT_EFF of the GEMM rate whatever
       * the shape; the padded copies of x (forward, weight gradient) and dy (both gradients) */
      flops = 2 * K * Cg * kh * kw * n * OH * OW;
      bytes = 4.0 * (4 * C * n * H * W + 5 * K * n * OH * OW);
      eff = CT_DIRECT_EFF;
      break;
    default: return 1e30;
  }
  /* forward and backward: three GEMMs of the same size */
  return 3 * flops / (gflops * 1e9 * eff) + bytes / (gbytes * 1e9);
}

/* A switch in the environment that keeps a type out of the model's picks: set to "0". */
static bool env_off(const char *name) {
  const char *e = getenv(name);
  return e && strcmp(e, "0") == 0;
}

ct_lowering ct_lower_choose_for(const ct_conv_geom *g, int nb, double gflops, double gbytes, size_t max_ws,
                                bool wino4) {
  /* a 1x1: its own GEMMs on the input as it lies, or TYPE1 packing small planes into one GEMM */
  if (ct_conv_is_pointwise(g)) {
    const double pw = ct_lower_cost(g, CT_LOWER_POINTWISE, nb, gflops, gbytes, max_ws);
    return ct_lower_cost(g, CT_LOWER_TYPE1, nb, gflops, gbytes, max_ws) < pw ? CT_LOWER_TYPE1 : CT_LOWER_POINTWISE;
  }
  ct_lowering best = CT_LOWER_TYPE1;
  double best_cost = ct_lower_cost(g, CT_LOWER_TYPE1, nb, gflops, gbytes, max_ws);
  /* CT_WINOGRAD=0 (both Winograd types), CT_WINOGRAD4=0 and CT_DIRECT=0 in the environment keep
   * those types out of the model's picks (benchmarks compare with and without; a layer's
   * `lowering:` still applies) */
  const bool wino = !env_off("CT_WINOGRAD"), direct = !env_off("CT_DIRECT");
  wino4 = wino4 && wino && !env_off("CT_WINOGRAD4");
  const ct_lowering others[] = {CT_LOWER_TYPE2, CT_LOWER_TYPE3, CT_LOWER_WINOGRAD, CT_LOWER_WINOGRAD4,
                                CT_LOWER_DIRECT};
  for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
    const ct_lowering t = others[i];
    /* DIRECT for grouped layers only: a dense layer thin enough for it (LeNet's, a first
     * layer's 3 channels) is left to the lowering it had, whose GEMM shares the input */
    if ((t == CT_LOWER_WINOGRAD && !wino) || (t == CT_LOWER_WINOGRAD4 && !wino4) ||
        (t == CT_LOWER_DIRECT && (!direct || g->G == 1)))
      continue;
    double c = ct_lower_cost(g, t, nb, gflops, gbytes, max_ws);
    if (c < best_cost) {
      best_cost = c;
      best = t;
    }
  }
  return best;
}

ct_lowering ct_lower_choose(const ct_conv_geom *g, int nb, double gflops, double gbytes, size_t max_ws) {
  return ct_lower_choose_for(g, nb, gflops, gbytes, max_ws, true);
}
