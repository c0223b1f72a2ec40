/* Convolution internals shared by the layer and its tests: the geometry, the naive direct loops
 * (the reference) and the im2col + GEMM path the layer runs.
 *
 * Shapes: x N x C x H x W; w K x C/G x kh x kw; b K; y N x K x OH x OW. Channel group g
 * (0 <= g < G) maps input channels [g*C/G, (g+1)*C/G) to outputs [g*K/G, (g+1)*K/G). */
#ifndef CT_CONV_H
#define CT_CONV_H

#include <stdbool.h>
#include <stddef.h>

#include "layers/im2col.h"

typedef struct ct_conv_geom {
  int N, C, H, W; /* input */
  int K, G;       /* outputs, groups */
  int kh, kw, sh, sw, ph, pw, dh, dw;
  int OH, OW;     /* output, from ct_conv_geom_finish */
} ct_conv_geom;

/* Computes OH, OW from the rest. False when the dilated kernel does not fit the padded input
 * (the output would be empty). */
bool ct_conv_geom_finish(ct_conv_geom *g);
/* True when the lowering is the identity: 1x1 kernel, stride 1, no padding. */
bool ct_conv_is_pointwise(const ct_conv_geom *g);
/* Floats of the column buffer the GEMM path needs (one image); 0 for a pointwise convolution. */
size_t ct_conv_col_size(const ct_conv_geom *g);

/* Reference: direct loops. y = conv(x, w) + b; b may be NULL. */
void ct_conv_forward_naive(const ct_conv_geom *g, const float *x, const float *w, const float *b, float *y);
/* Reference backward from dy: dx = (overwritten), dw += , db += ; any output may be NULL. */
void ct_conv_backward_naive(const ct_conv_geom *g, const float *x, const float *w, const float *dy, float *dx,
                            float *dw, float *db);

/* The same through im2col + one GEMM per group and image. col holds ct_conv_col_size floats
 * (may be NULL for a pointwise convolution). Same conventions as the naive pair. */
void ct_conv_forward_gemm(const ct_conv_geom *g, const float *x, const float *w, const float *b, float *y,
                          float *col);
void ct_conv_backward_gemm(const ct_conv_geom *g, const float *x, const float *w, const float *dy, float *dx,
                           float *dw, float *db, float *col);

#endif
