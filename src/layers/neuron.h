/* The skeleton every element-wise neuron layer shares (layers/neuron.c): a driver kernel pair
 * (neuron_forward / neuron_backward) over each partition's elements, in place or not, keeping a
 * copy of x for backward when the layer runs in place and the kernel needs x. A neuron layer is
 * its setup (which fills `f` and `keep_input`) plus NEURON_OPS(T). */
#ifndef CT_LAYERS_NEURON_H
#define CT_LAYERS_NEURON_H

#include "layers/layer.h"

typedef struct neuron {
  ct_neuron f;       /* which activation, with its parameters */
  bool keep_input;   /* backward needs x itself: in place, keep a copy */
  ct_tensor *saved;  /* that copy, shaped like the bottom */
} neuron;

/* Allocates l->priv for activation `kind` (for setup); *out is it. */
ct_status ct_neuron_layer_alloc(ct_layer *l, ct_neuron_kind kind, neuron **out, ct_error *err);
ct_status ct_neuron_layer_reshape(ct_layer *l, ct_error *err);
ct_status ct_neuron_layer_forward(ct_layer *l, const ct_part *p, ct_error *err);
ct_status ct_neuron_layer_backward(ct_layer *l, const ct_part *p, ct_error *err);
void ct_neuron_layer_destroy(ct_layer *l);

#define NEURON_OPS(T)                                                     \
  const ct_layer_ops ct_layer_##T = {.type = #T,                          \
                                     .min_bottom = 1,                     \
                                     .max_bottom = 1,                     \
                                     .min_top = 1,                        \
                                     .max_top = 1,                        \
                                     .in_place = true,                    \
                                     .has_backward = true,                \
                                     .splits = ct_layer_splits_always,    \
                                     .gains = true,                       \
                                     .kind = CT_WORK_MEMORY,              \
                                     .setup = T##_setup,                  \
                                     .reshape = ct_neuron_layer_reshape,  \
                                     .forward = ct_neuron_layer_forward,  \
                                     .backward = ct_neuron_layer_backward, \
                                     .destroy = ct_neuron_layer_destroy}

#endif
