/* The CUDA driver's DIRECT convolution bodies (included by cuda/kern.h; the same rules):
 * depthwise and many-group layers, no lowering and no GEMM, any geometry (stride, pad,
 * dilation, groups, channel multipliers Kg = K / G). x is nb x C x H x W, w is K x Cg x kh x kw
 * (Cg = C / G), y and dy are nb x K x OH x OW; output channel k reads the input channels of
 * group k / Kg.
 *
 * Each output's sum runs in the CPU driver's order (drivers/cpu/depthwise.c): forward bias,
 * then input channel, kernel row, kernel column; data gradient output channel, kernel row,
 * kernel column. Taps that fall in the padding are skipped where the CPU adds a product with
 * zero, which leaves the sum's bits unchanged. The weight gradient is a reduction over nb OH OW
 * products per weight: two stages (cuda/kern_red.h), so it is deterministic. */
#ifndef CT_DRIVERS_CUDA_KERN_DW_H
#define CT_DRIVERS_CUDA_KERN_DW_H

/* i < nb K OH OW: y = b[k] (b may be NULL) + the taps over the group's input channels */
CT_HD void ctk_direct_fwd(size_t i, const ct_conv_geom *g, const float *x, const float *w, const float *b, float *y) {
  const size_t P = (size_t)g->OH * g->OW;
  const int ox = (int)(i % g->OW), oy = (int)(i / g->OW % g->OH), k = (int)(i / P % g->K);
  const size_t n = i / P / g->K;
  const int Cg = g->C / g->G, Kg = g->K / g->G, gi = k / Kg;
  const float *wk = w + (size_t)k * Cg * g->kh * g->kw;
  float acc = b ? b[k] : 0.0f;
  for (int c = 0; c < Cg; c++) {
    const float *xc = x + ((n * g->C + (size_t)gi * Cg + c) * g->H) * g->W;
    for (int ki = 0; ki < g->kh; ki++) {
      const int iy = oy * g->sh - g->ph + ki * g->dh;
      if (iy < 0 || iy >= g->H) continue;
      for (int kj = 0; kj < g->kw; kj++) {
        const int ix = ox * g->sw - g->pw + kj * g->dw;
        if (ix < 0 || ix >= g->W) continue;
        acc += wk[(c * g->kh + ki) * g->kw + kj] * xc[(size_t)iy * g->W + ix];
      }
    }
  }
  y[i] = acc;
}

/* i < nb C H W: dx (overwritten) = the sum over the group's output channels and the taps that
 * reach this input of w dy */
CT_HD void ctk_direct_bwd_data(size_t i, const ct_conv_geom *g, const float *w, const float *dy, float *dx) {
  const size_t P = (size_t)g->OH * g->OW;
  const int ix = (int)(i % g->W), iy = (int)(i / g->W % g->H), c = (int)(i / ((size_t)g->H * g->W) % g->C);
  const size_t n = i / ((size_t)g->H * g->W) / g->C;
  const int Cg = g->C / g->G, Kg = g->K / g->G, gi = c / Cg, cl = c % Cg, KK = g->kh * g->kw;
  float acc = 0.0f;
  for (int kg = 0; kg < Kg; kg++) {
    const int k = gi * Kg + kg;
    const float *wk = w + ((size_t)k * Cg + cl) * KK, *dyk = dy + (n * g->K + k) * P;
    for (int ki = 0; ki < g->kh; ki++) {
      const int ty = iy + g->ph - ki * g->dh;
      if (ty < 0 || ty % g->sh) continue;
      const int oy = ty / g->sh;
      if (oy >= g->OH) continue;
      for (int kj = 0; kj < g->kw; kj++) {
        const int tx = ix + g->pw - kj * g->dw;
        if (tx < 0 || tx % g->sw) continue;
        const int ox = tx / g->sw;
        if (ox >= g->OW) continue;
        acc += wk[ki * g->kw + kj] * dyk[(size_t)oy * g->OW + ox];
      }
    }
  }
  dx[i] = acc;
}

/* The weight gradient's stage 1, j < K Cg kh kw T with T = ctk_red_parts(nb OH OW): partial t of
 * weight r = j / T (k, cl, ki, kj) sums dy x over the positions e = t, t + T, ... of the nb OH OW
 * outputs of channel k, into part[2j] (part[2j + 1] = 0; ctk_red_fin_add adds them into dw). */
CT_HD void ctk_direct_wgrad_partial(size_t j, const ct_conv_geom *g, int nb, size_t T, const float *x,
                                    const float *dy, double *part) {
  const size_t P = (size_t)g->OH * g->OW, m = (size_t)nb * P, r = j / T, t = j % T;
  const int Cg = g->C / g->G, Kg = g->K / g->G, KK = g->kh * g->kw;
  const int tap = (int)(r % KK), cl = (int)(r / KK % Cg), k = (int)(r / KK / Cg);
  const int ki = tap / g->kw, kj = tap % g->kw, c = k / Kg * Cg + cl;
  /* output e = n P + p, stepped by T without a 64-bit division per element */
  const size_t dn = T / P, dp = T % P;
  size_t n = t / P, p = t % P;
  double a = 0.0;
  for (size_t e = t; e < m; e += T, n += dn, p += dp) {
    if (p >= P) p -= P, n++;
    const int oy = (int)p / g->OW, ox = (int)p % g->OW;
    const int iy = oy * g->sh - g->ph + ki * g->dh, ix = ox * g->sw - g->pw + kj * g->dw;
    if (iy < 0 || iy >= g->H || ix < 0 || ix >= g->W) continue;
    a += (double)dy[(n * g->K + k) * P + p] * x[((n * g->C + c) * g->H + iy) * g->W + ix];
  }
  part[2 * j] = a;
  part[2 * j + 1] = 0.0;
}

#endif
