/* The small net and solver the weight and state targets load into; gen_corpus.c writes the
 * seed corpus from the same text, so the seeds' layer names and shapes match. */
#ifndef CT_FUZZ_NETS_H
#define CT_FUZZ_NETS_H

/* Layers with 1, 2 and 3 blobs of ranks 1 to 4. */
static const char FUZZ_NET[] =
    "name: 'fuzz'\n"
    "layer { name: 'data' type: 'Input' top: 'data' input_param { shape { dim: 2 dim: 3 dim: 6 dim: 6 } } }\n"
    "layer { name: 'conv' type: 'Convolution' bottom: 'data' top: 'conv' convolution_param { num_output: 4 "
    "  kernel_size: 3 weight_filler { type: 'xavier' } } }\n"
    "layer { name: 'bn' type: 'BatchNorm' bottom: 'conv' top: 'conv' }\n"
    "layer { name: 'scale' type: 'Scale' bottom: 'conv' top: 'conv' scale_param { bias_term: true } }\n"
    "layer { name: 'prelu' type: 'PReLU' bottom: 'conv' top: 'conv' }\n"
    "layer { name: 'ip' type: 'InnerProduct' bottom: 'conv' top: 'ip' inner_product_param { num_output: 5 "
    "  weight_filler { type: 'gaussian' std: 0.1 } } }\n";

/* Adam keeps two history sets; Dropout and DummyData keep random streams. Snapshots are named
 * after prefix 'w', and the weights file beside a state is w.caffemodel. */
static const char FUZZ_SOLVER[] =
    "type: 'Adam' base_lr: 0.01 momentum: 0.9 momentum2: 0.999 lr_policy: 'fixed' max_iter: 10\n"
    "average_loss: 4 random_seed: 7 snapshot_prefix: 'w'\n"
    "net_param {\n"
    "  name: 'fuzz'\n"
    "  layer { name: 'data' type: 'DummyData' top: 'data' top: 'label' dummy_data_param {\n"
    "    shape { dim: 2 dim: 3 } shape { dim: 2 } data_filler { type: 'gaussian' } data_filler { type: 'constant' } } }\n"
    "  layer { name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip' inner_product_param { num_output: 4 "
    "    weight_filler { type: 'xavier' } } }\n"
    "  layer { name: 'drop' type: 'Dropout' bottom: 'ip' top: 'ip' }\n"
    "  layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' bottom: 'label' top: 'loss' }\n"
    "}\n";

#endif
