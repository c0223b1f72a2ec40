/* The fused BatchNorm -> Scale (-> ReLU) chain (net/fuse.c picks where it runs): one hidden
 * layer, never in a net's layer list and not reachable from a prototxt, that computes the
 * chain's layers together (the driver's bn_chain entries) on their own blobs: BatchNorm's
 * running sums (updated as BatchNorm does), Scale's factor and bias (their gradients accumulated
 * as Scale does). The member layers stay in the net as they are, for weights, names, the
 * Python module and a run that starts inside the chain. */
#ifndef CT_LAYERS_BN_CHAIN_H
#define CT_LAYERS_BN_CHAIN_H

#include "layers/layer.h"

/* Whether bn (BatchNorm), scale (Scale) and relu (ReLU, or NULL) may run as one chain, shapes
 * and parameters alone: Scale with one bottom and a factor per channel of BatchNorm's bottom,
 * ReLU with a slope >= 0. (Which blobs permit it is net/fuse.c's question.) */
bool ct_bn_chain_fits(const ct_layer *bn, const ct_layer *scale, const ct_layer *relu);

/* Builds the hidden layer over the (set up) members into *out, on the BatchNorm's placement and
 * partition spec: bottom BatchNorm's bottom, top the last member's top, blobs BatchNorm's three
 * then Scale's. Its propagate_down / param_propagate_down are taken from the members, so call it
 * after the net's backward analysis. x_kept: the chain's input still holds, at its backward,
 * what its forward read (BatchNorm not in place, no later layer writing it): the backward then
 * recomputes the normalised input from it where the drivers can (bn_chain_backward_x) instead
 * of the forward writing and keeping a copy. y_kept: likewise the chain's output (no later layer
 * writes it); for a chain without the ReLU, or one on the stored statistics
 * (ct_bn_chain_z_from_y_applies), the backward recomputes the normalised input as (y - b) / s
 * in the channels where that is accurate (bn_chain_backward_y; ResNet's chains before the
 * Eltwise, in place on a convolution's output, where x is gone). Freed with ct_bn_chain_free. */
ct_status ct_bn_chain_create(ct_layer *bn, ct_layer *scale, ct_layer *relu, bool x_kept, bool y_kept,
                             ct_layer **out, ct_error *err);
void ct_bn_chain_free(ct_layer *l);
/* Whether the chain's backward leaves the gradient of BatchNorm's output in the diff of its own
 * top, as the member layers would (default); the memory planner turns it off where that diff is
 * planned storage, which nobody reads after the chain's backward: a write pass saved. */
void ct_bn_chain_set_top_grad(ct_layer *chain, bool wanted);

/* ResNet's block ends: a chain without the ReLU whose output is one of two bottoms of an Eltwise
 * SUM -> ReLU pair (net/fuse.c) may compute the pair's output itself, relu(c_self y + c_add add)
 * into out, and leave its own output y unwritten (the bottom, in place, keeps x, from which the
 * backward recomputes what it needs: the same gradients bit for bit). Two streams of the
 * forward's six: for net/fuse.c, where the chain's blob is planned storage nobody reads after the
 * pass. set_feed names the pair's other bottom and top; can_feed: the chain and its drivers
 * can (no ReLU in the chain, the driver entries, and no backward reading xnorm after a folded
 * forward on the stored statistics); feed: whether the next forward does. */
void ct_bn_chain_set_feed(ct_layer *chain, ct_tensor *add, ct_tensor *out, float c_self, float c_add, float slope);
bool ct_bn_chain_can_feed(const ct_layer *chain);
void ct_bn_chain_feed(ct_layer *chain, bool on);

#endif
