/* What the data layers (Data, ImageData, MemoryData) share: a feed (source -> transform ->
 * optional prefetch queue) and the consumer's stream position, which is the cursor saved in
 * snapshots. Each layer's setup opens its source and calls ct_data_layer_start; the rest of
 * the contract is common. */
#ifndef CT_DATA_LAYER_H
#define CT_DATA_LAYER_H

#include "data/feed.h"
#include "layers/layer.h"

typedef struct ct_data_layer {
  ct_feed *feed;
  int batch;
  uint64_t cursor; /* stream position of the next batch the net will see */
} ct_data_layer;

/* Resolves a data path as data.c always has: as given when it exists (Caffe resolves from the
 * working directory), else relative to the prototxt's directory. */
void ct_data_layer_resolve(const ct_layer *l, const char *path, char *out, size_t n);

/* Finishes setup: peeks the first record for the image shape (or takes C, H, W when C > 0),
 * builds the transform from tp and the feed (taking ownership of src in every case), skips a
 * random number of records in [0, rand_skip) as Caffe does, and stores the state in l->priv. */
ct_status ct_data_layer_start(ct_layer *l, ct_source *src, const Caffe__TransformationParameter *tp, int batch,
                              int depth, unsigned rand_skip, int C, int H, int W, ct_error *err);

ct_status ct_data_layer_reshape(ct_layer *l, ct_error *err);
/* Fills the tops on the host: a data layer is ops->host, so its one partition is the CPU's. */
ct_status ct_data_layer_forward(ct_layer *l, const ct_part *p, ct_error *err);
void ct_data_layer_destroy(ct_layer *l);
uint64_t ct_data_layer_get_cursor(const ct_layer *l);
void ct_data_layer_set_cursor(ct_layer *l, uint64_t cursor);

/* Milliseconds layer l has waited for data so far; false when l is not a data layer. */
bool ct_data_layer_wait_ms(const ct_layer *l, double *ms);
void ct_data_layer_reset_wait(ct_layer *l);

/* The layer types that keep a ct_data_layer in priv. */
bool ct_is_data_layer(const ct_layer *l);

/* For code outside the layers (src/dist) that spreads one record stream over several workers:
 * whether l is a set-up data layer with a feed of its own, and telling that feed to skip
 * `records` after each batch (ct_feed_set_skip). set_skip does nothing and returns false when
 * l has no feed. */
bool ct_data_layer_has_feed(const ct_layer *l);
bool ct_data_layer_set_skip(ct_layer *l, uint64_t records);

#endif
