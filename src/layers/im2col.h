/* Lowering one image for convolution (im2col) and lifting it back (col2im).
 *
 * The column matrix of an image x (C x H x W) has C*kh*kw rows and OH*OW columns, row-major:
 * row (c*kh + i)*kw + j, column oh*OW + ow holds x[c][oh*sh - ph + i*dh][ow*sw - pw + j*dw], or 0
 * where that position falls in the padding. A convolution with weights K x (C*kh*kw) is then one
 * GEMM: y (K x OH*OW) = w * col. These routines move to src/lowering/ when the batched lowering
 * types land. */
#ifndef CT_IM2COL_H
#define CT_IM2COL_H

typedef struct ct_im2col_geom {
  int C, H, W;    /* one image */
  int kh, kw;     /* kernel */
  int sh, sw;     /* stride */
  int ph, pw;     /* zero padding */
  int dh, dw;     /* dilation */
  int OH, OW;     /* output size, (H + 2ph - (dh(kh-1) + 1)) / sh + 1, likewise for W */
} ct_im2col_geom;

/* col (C*kh*kw x OH*OW) = lowered x (C x H x W). */
void ct_im2col(const ct_im2col_geom *g, const float *restrict x, float *restrict col);
/* x (C x H x W) = the sum, over col's entries, into the positions they were read from
 * (the adjoint of ct_im2col). x is overwritten, not accumulated into. */
void ct_col2im(const ct_im2col_geom *g, const float *restrict col, float *restrict x);

#endif
