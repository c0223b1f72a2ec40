/* Making datasets, as Caffe's convert_imageset, convert_mnist_data and compute_image_mean do:
 * an image list or IDX files -> a database of Datum records; a database -> its mean image as a
 * .binaryproto BlobProto (legacy num/channels/height/width, as Caffe writes it). */
#ifndef CT_CONVERT_H
#define CT_CONVERT_H

#include <stdbool.h>
#include <stdint.h>

#include "cortado.h"
#include "data/db.h"

typedef struct ct_convert_opts {
  /* an image list ("<path> <label>" lines; paths relative to root, which is prefixed as given) */
  const char *list, *root;
  /* or IDX files (labels may be NULL) */
  const char *images, *labels;
  const char *db; /* the database to create; must not exist */
  ct_db_backend backend;
  int resize_h, resize_w; /* both 0: keep the size */
  bool shuffle;           /* image lists: shuffle the lines first (a fixed seed: reproducible) */
  bool gray;              /* image lists: decode as 1-channel gray (else 3-channel BGR) */
  bool encoded;           /* image lists: store the JPEG/PNG bytes (re-encoded as PNG when resized or
                             when the channel count changes) instead of raw pixels */
  void (*log)(void *ctx, const char *line); /* progress lines (may be NULL) */
  void *log_ctx;
} ct_convert_opts;

/* Writes the database; a failure leaves nothing at o->db. *written (may be NULL) gets the count.
 * Keys are Caffe's: "%08d_<path>" for image lists, "%08d" for IDX. */
ct_status ct_convert(const ct_convert_opts *o, int64_t *written, ct_error *err);

/* Averages every record of a database (raw, float or encoded) into out_path (NULL: the channel
 * means are logged, nothing is written). */
ct_status ct_compute_mean(const char *db, ct_db_backend backend, const char *out_path,
                          void (*log)(void *ctx, const char *line), void *log_ctx, int64_t *count, ct_error *err);

#endif
