/* A single layer outside any net, for gradient checks and reference comparisons (also built as
 * libct_testkit.so for the PyTorch tests, through ctypes). */
#ifndef CT_HARNESS_H
#define CT_HARNESS_H

#include "layers/layer.h"

typedef struct ct_harness ct_harness;

/* Parses `layer_text` (a LayerParameter body: `type: "Convolution" convolution_param {...}`),
 * creates nbottom bottoms with the given shapes (naxes[i] axes each, shapes concatenated),
 * runs setup and reshape. phase: 0 TRAIN, 1 TEST. seed seeds the layer's rng (fillers).
 * Returns NULL and fills errbuf (errlen bytes) on failure. */
ct_harness *ctk_create(const char *layer_text, int nbottom, const int *naxes, const int *shapes, int phase,
                       unsigned long long seed, char *errbuf, int errlen);
/* The same on a plan over devices (a list as ct_placement_set_devices takes it: "emu:0",
 * "cpu=0.3,emu:0=0.7"); NULL: the CPU, one partition. */
ct_harness *ctk_create_on(const char *layer_text, int nbottom, const int *naxes, const int *shapes, int phase,
                          unsigned long long seed, const char *devices, char *errbuf, int errlen);
void ctk_free(ct_harness *h);
/* The layer's plan as text. */
const char *ctk_plan(ct_harness *h, char *buf, int n);
ct_layer *ctk_layer(ct_harness *h);
int ctk_num_tops(ct_harness *h);
int ctk_num_blobs(ct_harness *h);
/* which: 0 bottom, 1 top, 2 blob. Returns naxes, fills shape[8]. ctk_data/ctk_diff give the host
 * copy, brought up to date and made the one the layer reads next: call them again after a
 * forward or backward rather than keeping the pointer. */
int ctk_shape(ct_harness *h, int which, int i, int *shape);
float *ctk_data(ct_harness *h, int which, int i);
float *ctk_diff(ct_harness *h, int which, int i);
/* Forward; 0 on success, else fills errbuf. */
int ctk_forward(ct_harness *h, char *errbuf, int errlen);
/* Zeroes blob diffs, then backward from the current top diffs into bottom diffs (all bottoms
 * with propagate mask bit i set) and blob diffs; 0 on success. */
int ctk_backward(ct_harness *h, unsigned propagate_mask);
/* Reseeds the layer's rng (for dropout: the same mask before each forward). */
void ctk_reseed(ct_harness *h, unsigned long long seed);

#endif
