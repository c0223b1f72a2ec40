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

/* Shared with Deconvolution (a convolution's data gradient run forward):
 * ct_conv_read_param reads l's convolution_param for its bottom 0 (4 axes, channels on axis 1)
 * into g: kernel, stride, pad, dilation, group, g->C = the bottom's channels, g->K = num_output;
 * every bad value is refused with a message naming the layer. */
ct_status ct_conv_read_param(const ct_layer *l, ct_conv_geom *g, ct_error *err);
/* The same without num_output and group (Im2col): g->K = g->G = 1. */
ct_status ct_conv_read_window(const ct_layer *l, ct_conv_geom *g, ct_error *err);
/* The prototxt's `lowering:` for geometry g (AUTO when absent; WINOGRAD and WINOGRAD4 only where
 * they apply). */
ct_status ct_conv_read_lowering(const ct_layer *l, const ct_conv_geom *g, ct_lowering *forced, ct_error *err);
/* For reshape, g complete: the lowering type (forced, or the cost model's for the driver of l's
 * plan) and the images per lowering call (*chunk: the largest partition's, or fewer in turns when
 * the workspace would pass the cap), and each partition's workspace reserved in ws. WINOGRAD4
 * needs every partition's driver to run it (ct_lower_runs_on): forced on a plan where one does
 * not, CT_EUNSUPPORTED naming the layer; the model then picks among the other types. */
ct_status ct_conv_fit_workspace(const ct_layer *l, const ct_conv_geom *g, ct_lowering forced, ct_lowering *type,
                                int *chunk, ct_part_scratch *ws, ct_error *err);

#endif
