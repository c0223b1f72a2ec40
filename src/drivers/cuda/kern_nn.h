/* The CUDA driver's kernel bodies for the layer entries (included by cuda/kern.h; the same rules):
 * lowering type 1 (im2col, lift, col2im), the bias gradient, pooling, LRN, softmax, the losses,
 * accuracy and ArgMax. */
#ifndef CT_DRIVERS_CUDA_KERN_NN_H
#define CT_DRIVERS_CUDA_KERN_NN_H

/* ================================================================ lowering type 1 */

/* i < (C kh kw) x (nb OH OW): D[(c,ky,kx)][(n,oy,ox)] = x[n][c][oy sh - ph + ky dh][ox sw - pw + kx dw] */
CT_HD void ctk_lower1(size_t i, const ct_conv_geom *g, int nb, const float *x, float *D) {
  const size_t P = (size_t)g->OH * g->OW, cols = (size_t)nb * P;
  const size_t row = i / cols, col = i % cols;
  const int kx = (int)(row % g->kw), ky = (int)(row / g->kw % g->kh), c = (int)(row / g->kw / g->kh);
  const size_t n = col / P, p = col % P;
  const int oy = (int)(p / g->OW), ox = (int)(p % g->OW);
  const int iy = oy * g->sh - g->ph + ky * g->dh, ix = ox * g->sw - g->pw + kx * g->dw;
  D[i] = iy >= 0 && iy < g->H && ix >= 0 && ix < g->W ? x[((n * g->C + c) * g->H + iy) * g->W + ix] : 0.0f;
}

/* i < nb K OH OW: y[n][k][p] = R[k][(n, p)] + b[k] (b may be NULL) */
CT_HD void ctk_lift1(size_t i, const ct_conv_geom *g, int nb, const float *R, const float *b, float *y) {
  const size_t P = (size_t)g->OH * g->OW, cols = (size_t)nb * P;
  const size_t p = i % P, k = i / P % g->K, n = i / P / g->K;
  y[i] = R[k * cols + n * P + p] + (b ? b[k] : 0.0f);
}

/* i < nb K OH OW: the adjoint: Gm[k][(n, p)] = dy[n][k][p] */
CT_HD void ctk_lift_grad1(size_t i, const ct_conv_geom *g, int nb, const float *dy, float *Gm) {
  const size_t P = (size_t)g->OH * g->OW, cols = (size_t)nb * P;
  const size_t p = i % P, k = i / P % g->K, n = i / P / g->K;
  Gm[k * cols + n * P + p] = dy[i];
}

/* i < nb K H W (POINTWISE: before the GEMMs, which add onto it): y = b */
CT_HD void ctk_lift_pw(size_t i, const ct_conv_geom *g, const float *b, float *y) {
  y[i] = b[i / ((size_t)g->H * g->W) % g->K];
}

/* The bias gradient is a two-stage channel sum (cuda/kern_red.h). */

/* i < nb C H W: col2im, the adjoint of ctk_lower1, gathered: dx[n][c][iy][ix] = the sum of the
 * lowered entries that read it (overwritten) */
CT_HD void ctk_col2im1(size_t i, const ct_conv_geom *g, int nb, const float *D, float *dx) {
  const size_t P = (size_t)g->OH * g->OW, cols = (size_t)nb * P;
  const int ix = (int)(i % g->W), iy = (int)(i / g->W % g->H), c = (int)(i / g->W / g->H % g->C);
  const size_t n = i / g->W / g->H / g->C;
  float s = 0.0f;
  for (int ky = 0; ky < g->kh; ky++) {
    const int ty = iy + g->ph - ky * g->dh;
    if (ty < 0 || ty % g->sh) continue;
    const int oy = ty / g->sh;
    if (oy >= g->OH) continue;
    for (int kx = 0; kx < g->kw; kx++) {
      const int tx = ix + g->pw - kx * g->dw;
      if (tx < 0 || tx % g->sw) continue;
      const int ox = tx / g->sw;
      if (ox >= g->OW) continue;
      const size_t row = ((size_t)c * g->kh + ky) * g->kw + kx;
      s += D[row * cols + n * P + (size_t)oy * g->OW + ox];
    }
  }
  dx[i] = s;
}

/* ================================================================ pooling */

/* Output (oh, ow)'s window clipped to the image, and Caffe's AVE divisor (clipped to the padded
 * image only). */
typedef struct ctk_window {
  int h0, h1, w0, w1, size;
} ctk_window;

CT_HD ctk_window ctk_window_at(const ct_pool_geom *g, int oh, int ow) {
  ctk_window w;
  const int h0 = oh * g->sh - g->ph, w0 = ow * g->sw - g->pw;
  const int h1 = h0 + g->kh < g->H + g->ph ? h0 + g->kh : g->H + g->ph;
  const int w1 = w0 + g->kw < g->W + g->pw ? w0 + g->kw : g->W + g->pw;
  w.size = (h1 - h0) * (w1 - w0);
  w.h0 = h0 > 0 ? h0 : 0;
  w.w0 = w0 > 0 ? w0 : 0;
  w.h1 = h1 < g->H ? h1 : g->H;
  w.w1 = w1 < g->W ? w1 : g->W;
  return w;
}

/* i < planes OH OW. MAX: the first maximum in row-major window order (strict >), argmax its
 * flat index in the plane (-1 and y = 0 for an empty window), mask (may be NULL) the same as a
 * float; AVE: the window sum / the divisor; STOCHASTIC (test time): sum x^2 / sum x. */
CT_HD void ctk_pool_fwd(size_t i, const ct_pool_geom *g, const float *x, float *y, int *argmax, float *mask) {
  const size_t out_plane = (size_t)g->OH * g->OW;
  const size_t pl = i / out_plane, o = i % out_plane;
  const int oh = (int)(o / g->OW), ow = (int)(o % g->OW);
  const float *xp = x + pl * (size_t)g->H * g->W;
  const ctk_window w = ctk_window_at(g, oh, ow);
  if (g->method == CT_POOL_MAX) {
    float best = -FLT_MAX;
    int arg = -1;
    for (int h = w.h0; h < w.h1; h++)
      for (int c = w.w0; c < w.w1; c++) {
        const float v = xp[h * g->W + c];
        if (v > best) {
          best = v;
          arg = h * g->W + c;
        }
      }
    y[i] = arg >= 0 ? best : 0.0f;
    argmax[i] = arg;
    if (mask) mask[i] = (float)arg;
  } else if (g->method == CT_POOL_AVE) {
    float s = 0.0f;
    for (int h = w.h0; h < w.h1; h++)
      for (int c = w.w0; c < w.w1; c++) s += xp[h * g->W + c];
    y[i] = w.h0 < w.h1 && w.w0 < w.w1 ? s / (float)w.size : 0.0f;
  } else {
    float s = FLT_MIN, q = 0.0f;
    for (int h = w.h0; h < w.h1; h++)
      for (int c = w.w0; c < w.w1; c++) {
        const float v = xp[h * g->W + c];
        s += v;
        q += v * v;
      }
    y[i] = w.h0 < w.h1 && w.w0 < w.w1 ? q / s : 0.0f;
  }
}

/* i < planes H W: dx gathered from the outputs whose windows hold the element, in output order
 * (overwritten). */
CT_HD void ctk_pool_bwd(size_t i, const ct_pool_geom *g, const float *x, const float *dy, const int *argmax,
                        float *dx) {
  const size_t in_plane = (size_t)g->H * g->W, out_plane = (size_t)g->OH * g->OW;
  const size_t pl = i / in_plane, at = i % in_plane;
  const int h = (int)(at / g->W), c = (int)(at % g->W);
  const float *dyp = dy + pl * out_plane, *xp = x ? x + pl * in_plane : NULL;
  /* outputs o with o s - p <= h < o s - p + k */
  const int oh0 = h + g->ph < g->kh ? 0 : (h + g->ph - g->kh) / g->sh + 1;
  const int ow0 = c + g->pw < g->kw ? 0 : (c + g->pw - g->kw) / g->sw + 1;
  int oh1 = (h + g->ph) / g->sh + 1, ow1 = (c + g->pw) / g->sw + 1;
  if (oh1 > g->OH) oh1 = g->OH;
  if (ow1 > g->OW) ow1 = g->OW;
  float s = 0.0f;
  for (int oh = oh0; oh < oh1; oh++)
    for (int ow = ow0; ow < ow1; ow++) {
      const size_t o = (size_t)oh * g->OW + ow;
      if (g->method == CT_POOL_MAX) {
        if (argmax[pl * out_plane + o] == (int)at) s += dyp[o];
        continue;
      }
      const ctk_window w = ctk_window_at(g, oh, ow);
      if (w.h0 >= w.h1 || w.w0 >= w.w1) continue;
      if (g->method == CT_POOL_AVE) {
        s += dyp[o] / (float)w.size;
      } else {
        float sx = FLT_MIN, q = 0.0f;
        for (int hh = w.h0; hh < w.h1; hh++)
          for (int cc = w.w0; cc < w.w1; cc++) {
            const float v = xp[hh * g->W + cc];
            sx += v;
            q += v * v;
          }
        s += dyp[o] * (2.0f * xp[at] * sx - q) / (sx * sx);
      }
    }
  dx[i] = s;
}

/* ================================================================ LRN over nimg x C x H x W */

CT_HD float ctk_neg_pow(float s, float beta) {
  if (beta == 0.75f) {
    const float r = sqrtf(s);
    return 1.0f / (r * sqrtf(r));
  }
  if (beta == 0.5f) return 1.0f / sqrtf(s);
  if (beta == 1.0f) return 1.0f / s;
  return powf(s, -beta);
}

/* The clipped window of element (c, h, w): channels [c0, c1], rows [h0, h1], columns [w0, w1]
 * (ACROSS: one plane position; WITHIN: one channel). */
typedef struct ctk_lrn_win {
  int c0, c1, h0, h1, w0, w1;
} ctk_lrn_win;

CT_HD ctk_lrn_win ctk_lrn_window(const ct_lrn_geom *g, int c, int h, int w) {
  const int r = (g->size - 1) / 2;
  ctk_lrn_win v;
  if (g->across) {
    v.c0 = c - r > 0 ? c - r : 0;
    v.c1 = c + r < g->C - 1 ? c + r : g->C - 1;
    v.h0 = v.h1 = h;
    v.w0 = v.w1 = w;
  } else {
    v.c0 = v.c1 = c;
    v.h0 = h - r > 0 ? h - r : 0;
    v.h1 = h + r < g->H - 1 ? h + r : g->H - 1;
    v.w0 = w - r > 0 ? w - r : 0;
    v.w1 = w + r < g->W - 1 ? w + r : g->W - 1;
  }
  return v;
}

/* i < nimg C H W: s = k + alpha/size sum x^2 (ACROSS), 1 + alpha/size^2 box sum (WITHIN);
 * spow = s^-beta; y = x spow */
CT_HD void ctk_lrn_fwd(size_t i, const ct_lrn_geom *g, const float *x, float *y, float *s, float *spow) {
  const size_t plane = (size_t)g->H * g->W, img = plane * g->C;
  const size_t b = i / img, r = i % img;
  const int c = (int)(r / plane), h = (int)(r % plane / g->W), w = (int)(r % g->W);
  const ctk_lrn_win v = ctk_lrn_window(g, c, h, w);
  const float *xb = x + b * img;
  float acc = 0.0f;
  for (int cc = v.c0; cc <= v.c1; cc++)
    for (int hh = v.h0; hh <= v.h1; hh++)
      for (int ww = v.w0; ww <= v.w1; ww++) {
        const float t = xb[((size_t)cc * g->H + hh) * g->W + ww];
        acc += t * t;
      }
  const float sv = g->across ? g->k + g->alpha / (float)g->size * acc
                             : 1.0f + g->alpha / (float)(g->size * g->size) * acc;
  const float p = ctk_neg_pow(sv, g->beta);
  s[i] = sv;
  spow[i] = p;
  y[i] = x[i] * p;
}

/* i < nimg C H W: dx = dy spow - ratio x (the window sum of dy y / s); LRN's windows are
 * symmetric, so the elements whose windows hold i are those of i's own window. */
CT_HD void ctk_lrn_bwd(size_t i, const ct_lrn_geom *g, const float *x, const float *y, const float *dy,
                       const float *s, const float *spow, float *dx) {
  const size_t plane = (size_t)g->H * g->W, img = plane * g->C;
  const size_t b = i / img, r = i % img;
  const int c = (int)(r / plane), h = (int)(r % plane / g->W), w = (int)(r % g->W);
  const ctk_lrn_win v = ctk_lrn_window(g, c, h, w);
  float acc = 0.0f;
  for (int cc = v.c0; cc <= v.c1; cc++)
    for (int hh = v.h0; hh <= v.h1; hh++)
      for (int ww = v.w0; ww <= v.w1; ww++) {
        const size_t k = b * img + ((size_t)cc * g->H + hh) * g->W + ww;
        acc += dy[k] * y[k] / s[k];
      }
  const float ratio = g->across ? 2.0f * g->alpha * g->beta / (float)g->size
                                : 2.0f * g->alpha * g->beta / (float)(g->size * g->size);
  dx[i] = dy[i] * spow[i] - ratio * x[i] * acc;
}

/* ================================================================ softmax over outer x C x inner */

/* pos < outer inner (x may be y) */
CT_HD void ctk_softmax_fwd(size_t pos, size_t C, size_t inner, const float *x, float *y) {
  const size_t o = pos / inner, in = pos % inner, base = o * C * inner + in;
  float mx = x[base];
  for (size_t c = 1; c < C; c++) mx = x[base + c * inner] > mx ? x[base + c * inner] : mx;
  float s = 0.0f;
  for (size_t c = 0; c < C; c++) {
    const float e = expf(x[base + c * inner] - mx);
    y[base + c * inner] = e;
    s += e;
  }
  const float inv = 1.0f / s;
  for (size_t c = 0; c < C; c++) y[base + c * inner] *= inv;
}

/* pos < outer inner (dy may be dx) */
CT_HD void ctk_softmax_bwd(size_t pos, size_t C, size_t inner, const float *y, const float *dy, float *dx) {
  const size_t o = pos / inner, in = pos % inner, base = o * C * inner + in;
  float dot = 0.0f;
  for (size_t c = 0; c < C; c++) dot += dy[base + c * inner] * y[base + c * inner];
  for (size_t c = 0; c < C; c++) dx[base + c * inner] = y[base + c * inner] * (dy[base + c * inner] - dot);
}

/* ================================================================ losses and evaluation */

/* What one labelled position is: counted, ignored, or an invalid label (the caller reports the
 * first). */
enum { CTK_COUNTED = 0, CTK_IGNORED = 1, CTK_BAD = 2, CTK_HIT = 3 };

/* pos < outer inner: the position's -ln(max(p, FLT_MIN)) and its state; the host sums the
 * counted ones in position order (the CPU's order). */
CT_HD void ctk_softmax_loss_pos(size_t pos, size_t C, size_t inner, const float *prob, const float *labels,
                                bool has_ignore, int ignore, double *loss, int *state) {
  const float v = labels[pos];
  loss[pos] = 0.0;
  if (!(v > -2147483648.0f && v < 2147483648.0f)) {
    state[pos] = CTK_BAD;
    return;
  }
  const int lab = (int)v;
  if (has_ignore && lab == ignore) {
    state[pos] = CTK_IGNORED;
    return;
  }
  if (lab < 0 || (size_t)lab >= C) {
    state[pos] = CTK_BAD;
    return;
  }
  const size_t o = pos / inner, in = pos % inner;
  const float pr = prob[(o * C + (size_t)lab) * inner + in];
  loss[pos] = -log(pr > FLT_MIN ? pr : FLT_MIN);
  state[pos] = CTK_COUNTED;
}

/* i < outer C inner: dx = scale (prob - onehot(label)), 0 at ignored positions */
CT_HD void ctk_softmax_loss_bwd(size_t i, size_t C, size_t inner, const float *prob, const float *labels,
                                bool has_ignore, int ignore, float scale, float *dx) {
  const size_t in = i % inner, c = i / inner % C, o = i / inner / C;
  const int lab = (int)labels[o * inner + in];
  if (has_ignore && lab == ignore) {
    dx[i] = 0.0f;
    return;
  }
  float v = prob[i] * scale;
  if ((size_t)lab == c) v -= scale;
  dx[i] = v;
}

/* i < n: the logistic, and the element's cross-entropy (0 where ignored) and state */
CT_HD void ctk_sigmoid_xent_fwd(size_t i, const float *x, const float *t, bool has_ignore, int ignore, float *sig,
                                double *loss, int *state) {
  const float v = x[i], e = expf(-fabsf(v));
  sig[i] = v >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
  if (has_ignore && (int)t[i] == ignore) {
    loss[i] = 0.0;
    state[i] = CTK_IGNORED;
    return;
  }
  const float pos = v >= 0 ? 1.0f : 0.0f;
  loss[i] = -((double)v * (t[i] - pos) - log1p((double)e));
  state[i] = CTK_COUNTED;
}

/* i < n */
CT_HD void ctk_sigmoid_xent_bwd(size_t i, const float *sig, const float *t, bool has_ignore, int ignore, float w,
                                float *dx) {
  dx[i] = has_ignore && (int)t[i] == ignore ? 0.0f : w * (sig[i] - t[i]);
}

/* pos < outer inner: CTK_HIT, CTK_COUNTED (a miss), CTK_IGNORED or CTK_BAD; the host counts
 * (and fills per_class) in position order. */
CT_HD void ctk_accuracy_pos(size_t pos, size_t C, size_t inner, const float *score, const float *labels, int top_k,
                            bool has_ignore, int ignore, int *state) {
  const float lv = labels[pos];
  const int y = (int)lv;
  if (has_ignore && y == ignore) {
    state[pos] = CTK_IGNORED;
    return;
  }
  if (!(lv >= 0 && lv < (float)C)) {
    state[pos] = CTK_BAD;
    return;
  }
  const size_t o = pos / inner, in = pos % inner;
  const float *row = score + o * C * inner + in;
  const float truth = row[(size_t)y * inner];
  int above = 0;
  for (size_t c = 0; c < C; c++) above += (int)c != y && !(row[c * inner] < truth);
  state[pos] = above < top_k && truth == truth ? CTK_HIT : CTK_COUNTED;
}

/* ArgMax's order: value descending, NaN last, ties by index descending; true when (va, ia)
 * ranks before (vb, ib). */
CT_HD bool ctk_ranks_before(float va, int ia, float vb, int ib) {
  const bool na = va != va, nb = vb != vb;
  if (na != nb) return nb;
  if (!na && va != vb) return va > vb;
  return ia > ib;
}

/* pos < outer stride: the top_k of the position's dim entries, by selection (each pick the best
 * entry ranking after the previous pick). */
CT_HD void ctk_argmax_pos(size_t pos, size_t dim, size_t stride, int top_k, bool out_max_val, bool has_axis,
                          const float *x, float *y) {
  const size_t o = pos / stride, s = pos % stride, K = (size_t)top_k;
  float pv = 0.0f;
  int pi = -1;
  for (size_t j = 0; j < K; j++) {
    float bv = 0.0f;
    int bi = -1;
    for (size_t e = 0; e < dim; e++) {
      const float v = x[(o * dim + e) * stride + s];
      if (pi >= 0 && !ctk_ranks_before(pv, pi, v, (int)e)) continue;
      if (bi < 0 || ctk_ranks_before(v, (int)e, bv, bi)) {
        bv = v;
        bi = (int)e;
      }
    }
    if (has_axis)
      y[(o * K + j) * stride + s] = out_max_val ? bv : (float)bi;
    else if (out_max_val) {
      y[o * 2 * K + j] = (float)bi;
      y[o * 2 * K + K + j] = bv;
    } else
      y[o * K + j] = (float)bi;
    pv = bv;
    pi = bi;
  }
}

#endif
