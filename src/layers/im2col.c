#include "layers/im2col.h"

#include <string.h>

/* The outputs o in [0, n_out) that read input o*stride + off inside [0, n_in) form one range
 * [*lo, *hi); everything outside it reads padding. */
static void valid_range(int off, int stride, int n_in, int n_out, int *lo, int *hi) {
  int a = off >= 0 ? 0 : (-off + stride - 1) / stride;
  int b = n_in - 1 - off < 0 ? 0 : (n_in - 1 - off) / stride + 1;
  if (a > n_out) a = n_out;
  if (b > n_out) b = n_out;
  if (b < a) b = a;
  *lo = a;
  *hi = b;
}

void ct_im2col(const ct_im2col_geom *g, const float *restrict x, float *restrict col) {
  const int H = g->H, W = g->W, OH = g->OH, OW = g->OW, sw = g->sw;
  for (int c = 0; c < g->C; c++) {
    const float *xc = x + (size_t)c * H * W;
    for (int i = 0; i < g->kh; i++) {
      int hoff = i * g->dh - g->ph, oh_lo, oh_hi;
      valid_range(hoff, g->sh, H, OH, &oh_lo, &oh_hi);
      for (int j = 0; j < g->kw; j++) {
        int woff = j * g->dw - g->pw, ow_lo, ow_hi;
        valid_range(woff, sw, W, OW, &ow_lo, &ow_hi);
        float *restrict row = col + ((size_t)(c * g->kh + i) * g->kw + j) * OH * OW;
        memset(row, 0, (size_t)oh_lo * OW * sizeof(float));
        for (int oh = oh_lo; oh < oh_hi; oh++) {
          float *restrict out = row + (size_t)oh * OW;
          /* the first valid input of this output row; never before xc */
          const float *restrict in = xc + (size_t)(oh * g->sh + hoff) * W + (ow_lo * sw + woff);
          const int n = ow_hi - ow_lo;
          for (int ow = 0; ow < ow_lo; ow++) out[ow] = 0.0f;
          if (sw == 1) {
            memcpy(out + ow_lo, in, (size_t)n * sizeof(float));
          } else {
            for (int k = 0; k < n; k++) out[ow_lo + k] = in[k * sw];
          }
          for (int ow = ow_hi; ow < OW; ow++) out[ow] = 0.0f;
        }
        memset(row + (size_t)oh_hi * OW, 0, (size_t)(OH - oh_hi) * OW * sizeof(float));
      }
    }
  }
}

void ct_col2im(const ct_im2col_geom *g, const float *restrict col, float *restrict x) {
  const int H = g->H, W = g->W, OH = g->OH, OW = g->OW, sw = g->sw;
  memset(x, 0, (size_t)g->C * H * W * sizeof(float));
  for (int c = 0; c < g->C; c++) {
    float *xc = x + (size_t)c * H * W;
    for (int i = 0; i < g->kh; i++) {
      int hoff = i * g->dh - g->ph, oh_lo, oh_hi;
      valid_range(hoff, g->sh, H, OH, &oh_lo, &oh_hi);
      for (int j = 0; j < g->kw; j++) {
        int woff = j * g->dw - g->pw, ow_lo, ow_hi;
        valid_range(woff, sw, W, OW, &ow_lo, &ow_hi);
        const float *restrict row = col + ((size_t)(c * g->kh + i) * g->kw + j) * OH * OW;
        for (int oh = oh_lo; oh < oh_hi; oh++) {
          const float *restrict in = row + (size_t)oh * OW + ow_lo;
          float *restrict out = xc + (size_t)(oh * g->sh + hoff) * W + (ow_lo * sw + woff);
          const int n = ow_hi - ow_lo;
          if (sw == 1) {
            for (int k = 0; k < n; k++) out[k] += in[k];
          } else {
            for (int k = 0; k < n; k++) out[k * sw] += in[k];
          }
        }
      }
    }
  }
}
