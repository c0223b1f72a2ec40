/* The fused Eltwise SUM -> in-place ReLU pair (net/fuse.c picks where it runs; ResNet's blocks
 * end in one): one hidden layer, never in a net's layer list and not reachable from a prototxt,
 * that computes both layers in one pass over memory each way (the driver's eltwise_relu
 * entries) on their own blobs. The member layers stay in the net as they are. */
#ifndef CT_LAYERS_ELTWISE_RELU_H
#define CT_LAYERS_ELTWISE_RELU_H

#include "layers/layer.h"

/* Whether eltwise and relu may run as one pair, parameters alone: Eltwise SUM (any coeff) and a
 * ReLU with a slope >= 0 (a negative slope makes the unfused ReLU keep a copy of its input, whose
 * sign y no longer tells). Which blobs permit it is net/fuse.c's question. */
bool ct_eltwise_relu_fits(const ct_layer *eltwise, const ct_layer *relu);

/* Builds the hidden layer over the (set up) members into *out, on the Eltwise's placement and
 * partition spec: bottoms the Eltwise's, top the ReLU's (the Eltwise's top). propagate_down is
 * taken from the members, so call it after the net's backward analysis. Freed with
 * ct_eltwise_relu_free. */
ct_status ct_eltwise_relu_create(ct_layer *eltwise, ct_layer *relu, ct_layer **out, ct_error *err);
void ct_eltwise_relu_free(ct_layer *l);
/* Whether every driver of the layer's current plan has the (optional) fused entries; where one
 * does not, the net runs the two layers instead (fuse.c). */
bool ct_eltwise_relu_runs(const ct_layer *l);
/* Whether the backward leaves the ReLU's input gradient in the top's diff, as the member layers
 * would (default); the memory planner turns it off where that diff is planned storage, which
 * nobody reads after the pair's backward: a write stream saved. */
void ct_eltwise_relu_set_top_grad(ct_layer *l, bool wanted);

#endif
