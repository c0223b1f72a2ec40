/* Convolution internals shared by the layer and its tests: the naive direct loops, the
 * reference that every lowering type is held to (the fast paths are in src/lowering/).
 *
 * Shapes: x N x C x H x W; w K x C/G x kh x kw; b K; y N x K x OH x OW. Channel group g
 * (0 <= g < G) maps input channels [g*C/G, (g+1)*C/G) to outputs [g*K/G, (g+1)*K/G). */
#ifndef CT_CONV_H
#define CT_CONV_H

#include <stdbool.h>
#include <stddef.h>

#include "layers/layer.h"
#include "lowering/lowering.h"

/* Reference: direct loops. y = conv(x, w) + b; b may be NULL. */
void ct_conv_forward_naive(const ct_conv_geom *g, const float *x, const float *w, const float *b, float *y);
/* Reference backward from dy: dx = (overwritten), dw += , db += ; any output may be NULL. */
void ct_conv_backward_naive(const ct_conv_geom *g, const float *x, const float *w, const float *dy, float *dx,
                            float *dw, float *db);

/* Images per lowering call in a Convolution layer's partitions after its reshape: the largest
 * partition's, unless a workspace for that many would pass the cap (CT_CONV_WORKSPACE_MB in the
 * environment, else 1 GiB), then fewer, in turns. */
int ct_conv_layer_turn_images(const ct_layer *l);

#endif
