/* WINOGRAD's two heaviest transforms, lower_rows (V = B^T d B) and lower_grad_rows (dx from
 * B dV B^T), as always-inline bodies that winograd.c instantiates for the baseline and for AVX2
 * and dispatches at run time (as depthwise.c does: clang wants the 8-lane helpers inlined into
 * each instance, not called across the two). Eight tiles per step where eight are left
 * (ct_v8f: one AVX register, two SSE ones on the baseline), then four; every lane computes the
 * same operations in the same order either way, so both builds give the same floats. See
 * winograd.c for the layout. */

/* Four or eight tiles' V from the row z_i, along the row through B (tw, zi, v0..v3 in scope) */
#define WINO_V_STEP(VT, LOAD_STRIDE, STORE)                                                       \
  do {                                                                                            \
    VT e0 = LOAD_STRIDE(zi + 2 * tw, 2), o0 = LOAD_STRIDE(zi + 2 * tw + 1, 2);                    \
    VT e1 = LOAD_STRIDE(zi + 2 * tw + 2, 2), o1 = LOAD_STRIDE(zi + 2 * tw + 3, 2);                \
    STORE(v0 + tw, e0 - e1);                                                                      \
    STORE(v1 + tw, o0 + e1);                                                                      \
    STORE(v2 + tw, e1 - o0);                                                                      \
    STORE(v3 + tw, o0 - o1);                                                                      \
  } while (0)

/* V for every channel and row of tiles r in [r0, r1) (r = n TH + th), tile (r - r0) TW + tw
 * at column t of rows ld floats apart, the 16 blocks sV apart. The four input rows go through
 * B^T (z_i, along padded rows: column j holds input column j - pw, zero outside the image; read
 * from x where they lie), then along the row through B. scratch: 8 rows of rw floats (z, and
 * one row kept zero for the rows of a tile above or below the image). */
static inline __attribute__((always_inline)) void lower_rows_body(const ct_conv_geom *g, const ct_wino_strides *wg,
                                                                  const float *x, int r0, int r1, float *V, size_t ld,
                                                                  size_t sV, float *scratch) {
  const size_t plane = (size_t)g->H * g->W;
  float *z[4];
  const float *zero = scratch + (size_t)4 * wg->rw;
  for (int i = 0; i < 4; i++) z[i] = scratch + (size_t)i * wg->rw;
  /* z's padded columns stay 0: only columns [pw, pw + W) are ever written */
  memset(scratch, 0, 5 * wg->rw * sizeof(float));
  const int lo = g->pw, W = g->W;
  for (int c = 0; c < g->C; c++)
    for (int row = r0; row < r1; row++) {
      const int n = row / wg->TH, th = row % wg->TH;
      const float *xp = x + ((size_t)n * g->C + c) * plane, *r[4];
      for (int i = 0; i < 4; i++) {
        const int iy = 2 * th - g->ph + i;
        r[i] = iy < 0 || iy >= g->H ? zero : xp + (size_t)iy * W;
        /* the next channel's same rows, a channel's rows of the block ahead: a channel's few
         * rows are too short a stream for the hardware's prefetcher */
        if (r[i] != zero && c + 1 < g->C)
          for (int q = 0; q < W; q += 16) __builtin_prefetch(r[i] + plane + q);
      }
      float *z0 = z[0] + lo, *z1 = z[1] + lo, *z2 = z[2] + lo, *z3 = z[3] + lo;
      int j = 0;
      for (; j + 8 <= W; j += 8) {
        ct_v8f a = ct_v8f_load(r[0] + j), b = ct_v8f_load(r[1] + j), cc = ct_v8f_load(r[2] + j),
               d = ct_v8f_load(r[3] + j);
        ct_v8f_store(z0 + j, a - cc);
        ct_v8f_store(z1 + j, b + cc);
        ct_v8f_store(z2 + j, cc - b);
        ct_v8f_store(z3 + j, b - d);
      }
      for (; j < W; j++) {
        const float a = r[0][j], b = r[1][j], cc = r[2][j], d = r[3][j];
        z0[j] = a - cc, z1[j] = b + cc, z2[j] = cc - b, z3[j] = b - d;
      }
      const size_t t0 = (size_t)(row - r0) * wg->TW;
      for (int i = 0; i < 4; i++) {
        float *v0 = V + (size_t)(4 * i) * sV + (size_t)c * ld + t0, *v1 = v0 + sV, *v2 = v1 + sV, *v3 = v2 + sV;
        const float *zi = z[i];
        /* the tiles' padded columns 2 tw .. 2 tw + 3; a step of four reads up to 2 TWv + 1 */
        int tw = 0;
        for (; tw + 8 <= wg->TWv; tw += 8) WINO_V_STEP(ct_v8f, ct_v8f_load_stride, ct_v8f_store);
        for (; tw < wg->TW; tw += 4) WINO_V_STEP(ct_v4f, ct_v4f_load_stride, ct_v4f_store);
      }
    }
}

/* The 16 rows of terms of tiles tw .. tw + L - 1 from dV (lanes of tiles past TW zeroed through
 * `live`, a step's lanes below `keep`). */
#define WINO_TERMS(VT, LOAD, STORE, SELECT, masked)                                                              \
  do {                                                                                                           \
    VT R[4][4];                                                                                                  \
    for (int j = 0; j < 4; j++) {                                                                                \
      VT a = LOAD(v + (size_t)j * sV + tw), b = LOAD(v + (size_t)(4 + j) * sV + tw);                             \
      VT cc = LOAD(v + (size_t)(8 + j) * sV + tw), d = LOAD(v + (size_t)(12 + j) * sV + tw);                     \
      if (masked) a = SELECT(a), b = SELECT(b), cc = SELECT(cc), d = SELECT(d);                                  \
      R[0][j] = a, R[1][j] = b - cc + d, R[2][j] = b + cc - a, R[3][j] = -d;                                     \
    }                                                                                                            \
    for (int r = 0; r < 4; r++) {                                                                                \
      STORE(tr[r][0] + tw, R[r][0]);                                                                             \
      STORE(tr[r][1] + tw, R[r][1] - R[r][2] + R[r][3]);                                                         \
      STORE(tr[r][2] + tw, R[r][1] + R[r][2] - R[r][0]);                                                         \
      STORE(tr[r][3] + tw, -R[r][3]);                                                                            \
    }                                                                                                            \
  } while (0)

/* dx = the sum over tiles of B dV B^T, each added at its tile's place (the adjoint of
 * lower_rows), for the rows of tiles [r0, r1): per channel and per image the block meets (rows
 * th_a .. th_b - 1 of it), the tiles of a row go into 16 rows of terms, which are then added
 * along the padded rows of a plane buffer P (rows 2 th_a .. 2 th_b + 1), columns 2 tw .. 2 tw + 3;
 * the part inside the image is copied to dx, except P's first two rows where th_a > 0: the
 * block before wrote those rows of dx (its last row of tiles reaches them), and they are added
 * to. P: prow rows of rw floats, at least 2 (th_b - th_a) + 2; then 4 rows of rw and the terms. */
static inline __attribute__((always_inline)) void lower_grad_rows_body(const ct_conv_geom *g,
                                                                       const ct_wino_strides *wg, const float *dV,
                                                                       size_t ld, size_t sV, int r0, int r1, float *dx,
                                                                       float *scratch, size_t prow) {
  const size_t plane = (size_t)g->H * g->W;
  float *P = scratch, *terms = scratch + (prow + 4) * wg->rw;
  const size_t tl = (size_t)wg->TWv + 12; /* one row of terms: 4 zeros, then TWv + 8 */
  float *tr[4][4];
  for (int r = 0; r < 4; r++)
    for (int s = 0; s < 4; s++) tr[r][s] = terms + (size_t)(4 * r + s) * tl + 4;
  memset(terms, 0, 16 * tl * sizeof(float));
  /* the last step of four reads tiles past the row's end: their lanes are dropped */
  const int last = (wg->TW - 1) & ~3, keep = wg->TW - last;
  const ct_v4i lane = {0, 1, 2, 3}, live = lane < ct_v4i_splat(keep);
  const ct_v4f zero = ct_v4f_splat(0.0f);
#define WINO_LIVE4(u) ct_v4f_select(live, u, zero)
#define WINO_NONE(u) (u)
  for (int c = 0; c < g->C; c++)
    for (int row = r0; row < r1;) {
      const int n = row / wg->TH, tha = row % wg->TH, thb = tha + (r1 - row) < wg->TH ? tha + (r1 - row) : wg->TH;
      memset(P, 0, (size_t)(2 * (thb - tha) + 2) * wg->rw * sizeof(float));
      for (int th = tha; th < thb; th++) {
        const float *v = dV + (size_t)c * ld + (size_t)(row - r0 + th - tha) * wg->TW;
        int tw = 0;
        for (; tw + 8 <= wg->TW; tw += 8) WINO_TERMS(ct_v8f, ct_v8f_load, ct_v8f_store, WINO_NONE, false);
        for (; tw < wg->TW; tw += 4) WINO_TERMS(ct_v4f, ct_v4f_load, ct_v4f_store, WINO_LIVE4, tw == last);
        /* padded column 2 u takes tile u's column 0 and tile u-1's column 2; 2 u + 1 takes
         * tile u's 1 and tile u-1's 3 (entries past TW - 1 and before 0 are zeros) */
        for (int r = 0; r < 4; r++) {
          float *prow_r = P + (size_t)(2 * (th - tha) + r) * wg->rw;
          int u = 0;
          for (; u + 7 <= wg->TW; u += 8) {
            ct_v8f e = ct_v8f_load(tr[r][0] + u) + ct_v8f_load(tr[r][2] + u - 1);
            ct_v8f o = ct_v8f_load(tr[r][1] + u) + ct_v8f_load(tr[r][3] + u - 1);
            ct_v8f lo = __builtin_shufflevector(e, o, 0, 8, 1, 9, 2, 10, 3, 11);
            ct_v8f hi = __builtin_shufflevector(e, o, 4, 12, 5, 13, 6, 14, 7, 15);
            ct_v8f_store(prow_r + 2 * u, ct_v8f_load(prow_r + 2 * u) + lo);
            ct_v8f_store(prow_r + 2 * u + 8, ct_v8f_load(prow_r + 2 * u + 8) + hi);
          }
          for (; u <= wg->TW; u += 4) {
            ct_v4f e = ct_v4f_load(tr[r][0] + u) + ct_v4f_load(tr[r][2] + u - 1);
            ct_v4f o = ct_v4f_load(tr[r][1] + u) + ct_v4f_load(tr[r][3] + u - 1);
            ct_v4f lo = __builtin_shufflevector(e, o, 0, 4, 1, 5), hi = __builtin_shufflevector(e, o, 2, 6, 3, 7);
            ct_v4f_store(prow_r + 2 * u, ct_v4f_load(prow_r + 2 * u) + lo);
            ct_v4f_store(prow_r + 2 * u + 4, ct_v4f_load(prow_r + 2 * u + 4) + hi);
          }
        }
      }
      ct_cpu_wino_plane_out(g, P, wg->rw, 2 * (thb - tha) + 2, 2 * tha, tha > 0, dx + ((size_t)n * g->C + c) * plane);
      row += thb - tha;
    }
#undef WINO_LIVE4
#undef WINO_NONE
}
