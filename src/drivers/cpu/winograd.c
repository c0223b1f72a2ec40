/* Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, 2016) as a fourth way to lower a
 * 3x3, stride-1 convolution: each 4x4 input tile d (its corner at 2*th - ph, 2*tw - pw) becomes
 * V = B^T d B, each kernel g becomes U = G g G^T, and the 2x2 output tile is A^T (U . V) A.
 * The elementwise products over a partition's tiles, summed over input channels, are 16 GEMMs
 * per group, M_xi (Kg x T) = U_xi (Kg x Cg) . V_xi (Cg x T): 16 * 2 K C T multiply-adds instead
 * of 9 * 4 K C T, 2.25 times fewer.
 *
 *   B^T = | 1  0 -1  0 |    G = | 1    0    0   |    A^T = | 1  1  1  0 |
 *         | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
 *         | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
 *         | 0  1  0 -1 |        | 0    0    1   |
 *
 * Backward is the chain rule through the same linear maps: dM = A dY A^T per tile,
 * dU_xi = dM_xi V_xi^T and dV_xi = U_xi^T dM_xi (GEMMs), dx = the tiles' B dV B^T added where
 * they overlap, dw += G^T dU G. Every step runs in a fixed order, so results are reproducible;
 * they differ from the direct sums by rounding only (the transforms add at most four terms and
 * multiply by 1/2).
 *
 * Layout in a partition's workspace (ct_lower_layout_of, ct_lower_wino_strides): V [16][C][T],
 * U [16][K][C/G], M (dM backward) [16][K][T], dU [16][K][C/G], then row scratch. T = nb * TH * TW
 * tiles, tile t = (n * TH + th) * TW + tw; xi = 4 i + j for row i, column j of the 4x4 tile. The
 * inner loops run four tiles of a row at once (GNU C vectors, core/simd.h; lower_rows and
 * lower_grad_rows eight where eight are left, in winograd_rows.h). These are the CPU
 * driver's transforms, behind its conv_* entries for WINOGRAD (cpu/conv.c), and behind its
 * conv_wino_block entry (the end of this file), where each step runs over a block of rows of
 * tiles (row r = n TH + th) in the block layout of ct_lower_wino_block: the same loops over a
 * range of rows, V and M with the block's row length and strides. */
#include <string.h>

#include "core/simd.h"
#include "drivers/cpu/kernels.h"

/* ---------------------------------------------------------------- forward */

/* lower_rows and lower_grad_rows, for the baseline and for AVX2 (built with -Wno-psabi, as
 * depthwise.c: their 8-lane vectors never cross a call between the two) */
#include "drivers/cpu/winograd_rows.h"

#define ROWS_PARAMS (const ct_conv_geom *g, const ct_wino_strides *wg, const float *x, int r0, int r1, float *V, \
                     size_t ld, size_t sV, float *scratch)
#define GRAD_PARAMS (const ct_conv_geom *g, const ct_wino_strides *wg, const float *dV, size_t ld, size_t sV, int r0, \
                     int r1, float *dx, float *scratch, size_t prow)
static void base_lower_rows ROWS_PARAMS { lower_rows_body(g, wg, x, r0, r1, V, ld, sV, scratch); }
__attribute__((target("avx2"))) static void avx2_lower_rows ROWS_PARAMS {
  lower_rows_body(g, wg, x, r0, r1, V, ld, sV, scratch);
}
static void base_lower_grad_rows GRAD_PARAMS { lower_grad_rows_body(g, wg, dV, ld, sV, r0, r1, dx, scratch, prow); }
__attribute__((target("avx2"))) static void avx2_lower_grad_rows GRAD_PARAMS {
  lower_grad_rows_body(g, wg, dV, ld, sV, r0, r1, dx, scratch, prow);
}

static void lower_rows(const ct_conv_geom *g, const ct_wino_strides *wg, const float *x, int r0, int r1, float *V,
                       size_t ld, size_t sV, float *scratch) {
  (ct_cpu_has_avx2() ? avx2_lower_rows : base_lower_rows)(g, wg, x, r0, r1, V, ld, sV, scratch);
}

static void lower_grad_rows(const ct_conv_geom *g, const ct_wino_strides *wg, const float *dV, size_t ld, size_t sV,
                            int r0, int r1, float *dx, float *scratch, size_t prow) {
  (ct_cpu_has_avx2() ? avx2_lower_grad_rows : base_lower_grad_rows)(g, wg, dV, ld, sV, r0, r1, dx, scratch, prow);
}

void ct_cpu_wino_lower(const ct_conv_geom *g, int nb, const float *x, float *V, float *scratch) {
  const ct_wino_strides wg = ct_lower_wino_strides(g, nb);
  lower_rows(g, &wg, x, 0, nb * wg.TH, V, wg.Tp, wg.sV, scratch);
}

/* U_xi[k][c] = (G w[k][c] G^T)[i][j], four kernels at a time (each lane one kernel: the same
 * operations in the same order as the scalar rest) */
#define WINO_KERNEL(T, k3_at)                                                                       \
  do {                                                                                              \
    T t[4][3];                                                                                      \
    for (int b = 0; b < 3; b++) {                                                                   \
      const T r0 = k3_at(b), r1 = k3_at(3 + b), r2 = k3_at(6 + b);                                  \
      t[0][b] = r0;                                                                                 \
      t[1][b] = half * (r0 + r1 + r2);                                                              \
      t[2][b] = half * (r0 - r1 + r2);                                                              \
      t[3][b] = r2;                                                                                 \
    }                                                                                               \
    for (int i = 0; i < 4; i++) {                                                                   \
      u[4 * i + 0] = t[i][0];                                                                       \
      u[4 * i + 1] = half * (t[i][0] + t[i][1] + t[i][2]);                                          \
      u[4 * i + 2] = half * (t[i][0] - t[i][1] + t[i][2]);                                          \
      u[4 * i + 3] = t[i][2];                                                                       \
    }                                                                                               \
  } while (0)

void ct_cpu_wino_kernel(const ct_conv_geom *g, const float *w, float *U) {
  const size_t KC = (size_t)g->K * (g->C / g->G), sU = ct_lower_wino_strides(g, 1).sU;
  size_t kc = 0;
  for (; kc + 4 <= KC; kc += 4) {
    const float *k3 = w + kc * 9;
    const ct_v4f half = ct_v4f_splat(0.5f);
    ct_v4f u[16];
#define AT4(e) ct_v4f_load_stride(k3 + (e), 9)
    WINO_KERNEL(ct_v4f, AT4);
#undef AT4
    for (int x = 0; x < 16; x++) ct_v4f_store(U + (size_t)x * sU + kc, u[x]);
  }
  for (; kc < KC; kc++) {
    const float *k3 = w + kc * 9;
    const float half = 0.5f;
    float u[16];
#define AT1(e) k3[e]
    WINO_KERNEL(float, AT1);
#undef AT1
    for (int x = 0; x < 16; x++) U[(size_t)x * sU + kc] = u[x];
  }
}

/* y = A^T M A per tile, plus the bias, for the rows of tiles [r0, r1) (M laid out as lower_rows
 * lays out V): a row of tiles goes into two row buffers rb (2 rw floats), whose first OW
 * columns are copied out. */
static void lift_rows(const ct_conv_geom *g, const ct_wino_strides *wg, const float *M, size_t ld, size_t sM, int r0,
                      int r1, const float *b, float *y, float *rb) {
  const size_t oplane = (size_t)g->OH * g->OW;
  float *rb0 = rb, *rb1 = rb0 + wg->rw;
  for (int k = 0; k < g->K; k++) {
    const ct_v4f bv = ct_v4f_splat(b ? b[k] : 0.0f);
    for (int row = r0; row < r1; row++) {
      const int n = row / wg->TH, th = row % wg->TH;
      float *yp = y + ((size_t)n * g->K + k) * oplane;
      const float *m = M + (size_t)k * ld + (size_t)(row - r0) * wg->TW;
      for (int tw = 0; tw < wg->TW; tw += 4) {
        ct_v4f p0[4], p1[4];
        for (int j = 0; j < 4; j++) {
          ct_v4f a = ct_v4f_load(m + (size_t)j * sM + tw), bb = ct_v4f_load(m + (size_t)(4 + j) * sM + tw);
          ct_v4f c = ct_v4f_load(m + (size_t)(8 + j) * sM + tw), d = ct_v4f_load(m + (size_t)(12 + j) * sM + tw);
          p0[j] = a + bb + c;
          p1[j] = bb - c - d;
        }
        ct_v4f q00 = p0[0] + p0[1] + p0[2] + bv, q01 = p0[1] - p0[2] - p0[3] + bv;
        ct_v4f q10 = p1[0] + p1[1] + p1[2] + bv, q11 = p1[1] - p1[2] - p1[3] + bv;
        ct_v4f_store(rb0 + 2 * tw, __builtin_shufflevector(q00, q01, 0, 4, 1, 5));
        ct_v4f_store(rb0 + 2 * tw + 4, __builtin_shufflevector(q00, q01, 2, 6, 3, 7));
        ct_v4f_store(rb1 + 2 * tw, __builtin_shufflevector(q10, q11, 0, 4, 1, 5));
        ct_v4f_store(rb1 + 2 * tw + 4, __builtin_shufflevector(q10, q11, 2, 6, 3, 7));
      }
      memcpy(yp + (size_t)(2 * th) * g->OW, rb0, (size_t)g->OW * sizeof(float));
      if (2 * th + 1 < g->OH) memcpy(yp + (size_t)(2 * th + 1) * g->OW, rb1, (size_t)g->OW * sizeof(float));
    }
  }
}

void ct_cpu_wino_lift(const ct_conv_geom *g, int nb, const float *M, const float *b, float *y, float *scratch) {
  const ct_wino_strides wg = ct_lower_wino_strides(g, nb);
  lift_rows(g, &wg, M, wg.Tp, wg.sM, 0, nb * wg.TH, b, y, scratch + wg.prow * wg.rw);
}

/* ---------------------------------------------------------------- backward */

void ct_cpu_wino_plane_out(const ct_conv_geom *g, const float *P, size_t rw, int rows, int top, bool add_first2,
                           float *dxp) {
  /* the padding's terms are dropped: input row iy is padded row iy + ph, column ix is ix + pw */
  for (int q = 0; q < rows; q++) {
    const int iy = top + q - g->ph;
    if (iy < 0 || iy >= g->H) continue;
    const float *src = P + (size_t)q * rw + g->pw;
    float *dst = dxp + (size_t)iy * g->W;
    if (q < 2 && add_first2) {
      int ix = 0;
      for (; ix + 4 <= g->W; ix += 4) ct_v4f_store(dst + ix, ct_v4f_load(dst + ix) + ct_v4f_load(src + ix));
      for (; ix < g->W; ix++) dst[ix] += src[ix];
    } else {
      memcpy(dst, src, (size_t)g->W * sizeof(float));
    }
  }
}

/* dM = A dY A^T per tile (the adjoint of lift_rows) for the rows of tiles [r0, r1): dy's two
 * rows of a row of tiles are copied into zero-padded row buffers rb (3 rw floats; a row past OH
 * reads the third, all zeros). */
static void lift_grad_rows(const ct_conv_geom *g, const ct_wino_strides *wg, const float *dy, int r0, int r1,
                           float *dM, size_t ld, size_t sM, float *rb) {
  const size_t oplane = (size_t)g->OH * g->OW;
  float *rb0 = rb, *rb1 = rb0 + wg->rw, *rbz = rb1 + wg->rw;
  memset(rb0, 0, 3 * wg->rw * sizeof(float));
  for (int k = 0; k < g->K; k++)
    for (int row = r0; row < r1; row++) {
      const int n = row / wg->TH, th = row % wg->TH;
      const float *dp = dy + ((size_t)n * g->K + k) * oplane;
      float *m = dM + (size_t)k * ld + (size_t)(row - r0) * wg->TW;
      memcpy(rb0, dp + (size_t)(2 * th) * g->OW, (size_t)g->OW * sizeof(float));
      const float *d1 = rbz;
      if (2 * th + 1 < g->OH) {
        memcpy(rb1, dp + (size_t)(2 * th + 1) * g->OW, (size_t)g->OW * sizeof(float));
        d1 = rb1;
      }
      for (int tw = 0; tw < wg->TW; tw += 4) {
        ct_v4f a0 = ct_v4f_load_stride(rb0 + 2 * tw, 2), a1 = ct_v4f_load_stride(rb0 + 2 * tw + 1, 2);
        ct_v4f c0 = ct_v4f_load_stride(d1 + 2 * tw, 2), c1 = ct_v4f_load_stride(d1 + 2 * tw + 1, 2);
        ct_v4f q[4][2] = {{a0, a1}, {a0 + c0, a1 + c1}, {a0 - c0, a1 - c1}, {-c0, -c1}};
        for (int i = 0; i < 4; i++) {
          float *mi = m + (size_t)(4 * i) * sM + tw;
          ct_v4f_store(mi, q[i][0]);
          ct_v4f_store(mi + sM, q[i][0] + q[i][1]);
          ct_v4f_store(mi + 2 * sM, q[i][0] - q[i][1]);
          ct_v4f_store(mi + 3 * sM, -q[i][1]);
        }
      }
    }
}

void ct_cpu_wino_lift_grad(const ct_conv_geom *g, int nb, const float *dy, float *dM, float *scratch) {
  const ct_wino_strides wg = ct_lower_wino_strides(g, nb);
  lift_grad_rows(g, &wg, dy, 0, nb * wg.TH, dM, wg.Tp, wg.sM, scratch + wg.prow * wg.rw);
}

void ct_cpu_wino_lower_grad(const ct_conv_geom *g, int nb, const float *dV, float *dx, float *scratch) {
  const ct_wino_strides wg = ct_lower_wino_strides(g, nb);
  lower_grad_rows(g, &wg, dV, wg.Tp, wg.sV, 0, nb * wg.TH, dx, scratch, wg.prow);
}

/* dw += G^T dU G, four kernels at a time like ct_cpu_wino_kernel */
#define WINO_KERNEL_GRAD(T, u_at)                                                                   \
  do {                                                                                              \
    T t[3][4];                                                                                      \
    for (int j = 0; j < 4; j++) {                                                                   \
      const T u0 = u_at(j), u1 = u_at(4 + j), u2 = u_at(8 + j), u3 = u_at(12 + j);                  \
      t[0][j] = u0 + half * (u1 + u2);                                                              \
      t[1][j] = half * (u1 - u2);                                                                   \
      t[2][j] = half * (u1 + u2) + u3;                                                              \
    }                                                                                               \
    for (int a = 0; a < 3; a++) {                                                                   \
      d[3 * a + 0] = t[a][0] + half * (t[a][1] + t[a][2]);                                          \
      d[3 * a + 1] = half * (t[a][1] - t[a][2]);                                                    \
      d[3 * a + 2] = half * (t[a][1] + t[a][2]) + t[a][3];                                          \
    }                                                                                               \
  } while (0)

void ct_cpu_wino_kernel_grad(const ct_conv_geom *g, const float *dU, float *dw) {
  const size_t KC = (size_t)g->K * (g->C / g->G), sU = ct_lower_wino_strides(g, 1).sU;
  size_t kc = 0;
  for (; kc + 4 <= KC; kc += 4) {
    const ct_v4f half = ct_v4f_splat(0.5f);
    ct_v4f d[9];
#define AT4(x) ct_v4f_load(dU + (size_t)(x) * sU + kc)
    WINO_KERNEL_GRAD(ct_v4f, AT4);
#undef AT4
    float *k3 = dw + kc * 9;
    for (int lane = 0; lane < 4; lane++)
      for (int e = 0; e < 9; e++) k3[9 * lane + e] += d[e][lane];
  }
  for (; kc < KC; kc++) {
    const float half = 0.5f;
    float d[9];
#define AT1(x) dU[(size_t)(x) * sU + kc]
    WINO_KERNEL_GRAD(float, AT1);
#undef AT1
    float *k3 = dw + kc * 9;
    for (int e = 0; e < 9; e++) k3[e] += d[e];
  }
}

/* ---------------------------------------------------------------- blocked (ct_wino_block) */

ct_status ct_cpu_conv_wino_block(const ct_driver *d, const ct_conv_geom *g, ct_wino_step step, int nb, int r0, int r1,
                                 const float *in, const float *b, float *out, float *scratch) {
  (void)d;
  const ct_wino_strides wg = ct_lower_wino_strides(g, nb);
  const ct_wino_block B = ct_lower_wino_block(g, nb);
  switch (step) {
    case CT_WINO_KERNEL: ct_cpu_wino_kernel(g, in, out); break;
    case CT_WINO_LOWER: lower_rows(g, &wg, in, r0, r1, out, B.ld, B.sV, scratch); break;
    case CT_WINO_LIFT: lift_rows(g, &wg, in, B.ld, B.sM, r0, r1, b, out, scratch); break;
    case CT_WINO_LIFT_GRAD: lift_grad_rows(g, &wg, in, r0, r1, out, B.ld, B.sM, scratch); break;
    case CT_WINO_LOWER_GRAD: lower_grad_rows(g, &wg, in, B.ld, B.sV, r0, r1, out, scratch, B.prow); break;
    case CT_WINO_KERNEL_GRAD: ct_cpu_wino_kernel_grad(g, in, out); break;
  }
  return CT_OK;
}
