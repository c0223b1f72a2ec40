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
 * inner loops run four tiles of a row at once (GNU C vectors, core/simd.h). These are the CPU
 * driver's transforms, behind its conv_* entries for WINOGRAD (cpu/conv.c), and behind its
 * conv_wino_block entry (the end of this file), where each step runs over a block of rows of
 * tiles (row r = n TH + th) in the block layout of ct_lower_wino_block: the same loops over a
 * range of rows, V and M with the block's row length and strides. */
#include <string.h>

#include "core/simd.h"
#include "drivers/cpu/kernels.h"

/* ---------------------------------------------------------------- forward */

/* V for every channel and row of tiles r in [r0, r1) (r = n TH + th), tile (r - r0) TW + tw
 * at column t of rows ld floats apart, the 16 blocks sV apart: the four input rows, padded,
 * go through B^T (z_i, whole rows at a time), then along the row through B, four tiles per
 * step. scratch: 8 rows of rw floats. */
static void lower_rows(const ct_conv_geom *g, const ct_wino_strides *wg, const float *x, int r0, int r1, float *V,
                       size_t ld, size_t sV, float *scratch) {
  const size_t plane = (size_t)g->H * g->W;
  float *r[4], *z[4];
  for (int i = 0; i < 4; i++) r[i] = scratch + (size_t)i * wg->rw, z[i] = scratch + (size_t)(4 + i) * wg->rw;
  /* padded row j holds input column j - pw; columns outside the image stay 0. The tiles read
   * padded columns [0, 2 TW + 2), and the last step of a row up to 2 TWv + 2. */
  memset(scratch, 0, 8 * wg->rw * sizeof(float));
  const int lo = g->pw, used = 2 * wg->TW + 2;
  for (int c = 0; c < g->C; c++)
    for (int row = r0; row < r1; row++) {
      const int n = row / wg->TH, th = row % wg->TH;
      const float *xp = x + ((size_t)n * g->C + c) * plane;
      for (int i = 0; i < 4; i++) {
        const int iy = 2 * th - g->ph + i;
        if (iy < 0 || iy >= g->H)
          memset(r[i] + lo, 0, (size_t)g->W * sizeof(float));
        else
          memcpy(r[i] + lo, xp + (size_t)iy * g->W, (size_t)g->W * sizeof(float));
      }
      for (int j = 0; j < used; j += 4) {
        ct_v4f a = ct_v4f_load(r[0] + j), b = ct_v4f_load(r[1] + j), cc = ct_v4f_load(r[2] + j),
               d = ct_v4f_load(r[3] + j);
        ct_v4f_store(z[0] + j, a - cc);
        ct_v4f_store(z[1] + j, b + cc);
        ct_v4f_store(z[2] + j, cc - b);
        ct_v4f_store(z[3] + j, b - d);
      }
      const size_t t0 = (size_t)(row - r0) * wg->TW;
      for (int i = 0; i < 4; i++) {
        float *v0 = V + (size_t)(4 * i) * sV + (size_t)c * ld + t0, *v1 = v0 + sV, *v2 = v1 + sV, *v3 = v2 + sV;
        const float *zi = z[i];
        for (int tw = 0; tw < wg->TW; tw += 4) {
          ct_v4f e0 = ct_v4f_load_stride(zi + 2 * tw, 2), o0 = ct_v4f_load_stride(zi + 2 * tw + 1, 2);
          ct_v4f e1 = ct_v4f_load_stride(zi + 2 * tw + 2, 2), o1 = ct_v4f_load_stride(zi + 2 * tw + 3, 2);
          ct_v4f_store(v0 + tw, e0 - e1);
          ct_v4f_store(v1 + tw, o0 + e1);
          ct_v4f_store(v2 + tw, e1 - o0);
          ct_v4f_store(v3 + tw, o0 - o1);
        }
      }
    }
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

/* dx = the sum over tiles of B dV B^T, each added at its tile's place (the adjoint of
 * lower_rows), for the rows of tiles [r0, r1): per channel and per image the block meets (rows
 * th_a .. th_b - 1 of it), the tiles of a row go into 16 rows of terms, which are then added
 * along the padded rows of a plane buffer P (rows 2 th_a .. 2 th_b + 1), columns 2 tw .. 2 tw + 3;
 * the part inside the image is copied to dx, except P's first two rows where th_a > 0: the
 * block before wrote those rows of dx (its last row of tiles reaches them), and they are added
 * to. P: prow rows of rw floats, at least 2 (th_b - th_a) + 2; then 4 rows of rw and the terms. */
static void lower_grad_rows(const ct_conv_geom *g, const ct_wino_strides *wg, const float *dV, size_t ld, size_t sV,
                            int r0, int r1, float *dx, float *scratch, size_t prow) {
  const size_t plane = (size_t)g->H * g->W;
  float *P = scratch, *terms = scratch + (prow + 4) * wg->rw;
  const size_t tl = (size_t)wg->TWv + 12; /* one row of terms: 4 zeros, then TWv + 8 */
  float *tr[4][4];
  for (int r = 0; r < 4; r++)
    for (int s = 0; s < 4; s++) tr[r][s] = terms + (size_t)(4 * r + s) * tl + 4;
  memset(terms, 0, 16 * tl * sizeof(float));
  /* the last step of a row reads tiles past its end: their lanes are dropped */
  const int last = (wg->TW - 1) & ~3, keep = wg->TW - last;
  const ct_v4i lane = {0, 1, 2, 3}, live = lane < ct_v4i_splat(keep);
  const ct_v4f zero = ct_v4f_splat(0.0f);
  for (int c = 0; c < g->C; c++)
    for (int row = r0; row < r1;) {
      const int n = row / wg->TH, tha = row % wg->TH, thb = tha + (r1 - row) < wg->TH ? tha + (r1 - row) : wg->TH;
      memset(P, 0, (size_t)(2 * (thb - tha) + 2) * wg->rw * sizeof(float));
      for (int th = tha; th < thb; th++) {
        const float *v = dV + (size_t)c * ld + (size_t)(row - r0 + th - tha) * wg->TW;
        for (int tw = 0; tw < wg->TW; tw += 4) {
          ct_v4f R[4][4];
          for (int j = 0; j < 4; j++) {
            ct_v4f a = ct_v4f_load(v + (size_t)j * sV + tw), b = ct_v4f_load(v + (size_t)(4 + j) * sV + tw);
            ct_v4f cc = ct_v4f_load(v + (size_t)(8 + j) * sV + tw), d = ct_v4f_load(v + (size_t)(12 + j) * sV + tw);
            if (tw == last) {
              a = ct_v4f_select(live, a, zero), b = ct_v4f_select(live, b, zero);
              cc = ct_v4f_select(live, cc, zero), d = ct_v4f_select(live, d, zero);
            }
            R[0][j] = a, R[1][j] = b - cc + d, R[2][j] = b + cc - a, R[3][j] = -d;
          }
          for (int r = 0; r < 4; r++) {
            ct_v4f_store(tr[r][0] + tw, R[r][0]);
            ct_v4f_store(tr[r][1] + tw, R[r][1] - R[r][2] + R[r][3]);
            ct_v4f_store(tr[r][2] + tw, R[r][1] + R[r][2] - R[r][0]);
            ct_v4f_store(tr[r][3] + tw, -R[r][3]);
          }
        }
        /* padded column 2 u takes tile u's column 0 and tile u-1's column 2; 2 u + 1 takes
         * tile u's 1 and tile u-1's 3 (entries past TW - 1 and before 0 are zeros) */
        for (int r = 0; r < 4; r++) {
          float *prow_r = P + (size_t)(2 * (th - tha) + r) * wg->rw;
          for (int u = 0; u <= wg->TW; u += 4) {
            ct_v4f e = ct_v4f_load(tr[r][0] + u) + ct_v4f_load(tr[r][2] + u - 1);
            ct_v4f o = ct_v4f_load(tr[r][1] + u) + ct_v4f_load(tr[r][3] + u - 1);
            ct_v4f lo = __builtin_shufflevector(e, o, 0, 4, 1, 5), hi = __builtin_shufflevector(e, o, 2, 6, 3, 7);
            ct_v4f_store(prow_r + 2 * u, ct_v4f_load(prow_r + 2 * u) + lo);
            ct_v4f_store(prow_r + 2 * u + 4, ct_v4f_load(prow_r + 2 * u + 4) + hi);
          }
        }
      }
      /* the padding's terms are dropped: input row iy is padded row iy + ph, column ix is
       * ix + pw (the tiles cover rows and columns up to H + 2 ph and W + 2 pw) */
      float *dxp = dx + ((size_t)n * g->C + c) * plane;
      for (int q = 0; q < 2 * (thb - tha) + 2; q++) {
        const int iy = 2 * tha + q - g->ph;
        if (iy < 0 || iy >= g->H) continue;
        const float *src = P + (size_t)q * wg->rw + g->pw;
        float *dst = dxp + (size_t)iy * g->W;
        if (q < 2 && tha > 0) {
          int ix = 0;
          for (; ix + 4 <= g->W; ix += 4) ct_v4f_store(dst + ix, ct_v4f_load(dst + ix) + ct_v4f_load(src + ix));
          for (; ix < g->W; ix++) dst[ix] += src[ix];
        } else {
          memcpy(dst, src, (size_t)g->W * sizeof(float));
        }
      }
      row += thb - tha;
    }
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
