/* The data-source interface behind every data layer: a stream of records (an image of C x H x W
 * bytes or floats, and a label) that wraps at the end, with a position that can be sought for
 * exact resumption.
 *
 * A source's position counts records served since the start of the stream (it does not wrap),
 * so epoch e covers positions [e*count, (e+1)*count). Sources that shuffle derive the order of
 * epoch e from their seed and e alone; seeking to a position therefore restores the stream.
 *
 * A source is used by one thread at a time (the prefetch thread while it runs).
 *
 * Database and image-list sources serve records of one size, the first one's (an image list
 * that resizes excepted): a record of another size is an error naming it, raised before an
 * encoded image is decoded. */
#ifndef CT_SOURCE_H
#define CT_SOURCE_H

#include <stdbool.h>
#include <stdint.h>

#include "cortado.h"
#include "data/db.h"
#include "data/image.h"

typedef struct ct_record {
  int C, H, W;
  const uint8_t *u8; /* C*H*W bytes, or NULL */
  const float *f32;  /* C*H*W floats when u8 is NULL */
  float label;
  const char *what;  /* names the record in messages: DB key, file path, "image 12 of x.idx" */
} ct_record;

typedef struct ct_source ct_source;

typedef struct ct_source_ops {
  /* Serves the record at the current position and advances by one (wrapping at the end). The
   * record's buffers stay valid until the next call. */
  ct_status (*next)(ct_source *s, ct_record *r, ct_error *err);
  /* Moves to stream position pos. */
  ct_status (*seek)(ct_source *s, uint64_t pos, ct_error *err);
  void (*close)(ct_source *s);
} ct_source_ops;

struct ct_source {
  const ct_source_ops *ops;
  int64_t count; /* records in one epoch; -1 while unknown (LevelDB before its first pass) */
  uint64_t pos;  /* stream position of the next record */
};

static inline ct_status ct_source_next(ct_source *s, ct_record *r, ct_error *err) { return s->ops->next(s, r, err); }
static inline ct_status ct_source_seek(ct_source *s, uint64_t pos, ct_error *err) { return s->ops->seek(s, pos, err); }
static inline void ct_source_close(ct_source *s) {
  if (s) s->ops->close(s);
}

/* MNIST-style IDX images (1 to 4 dims: N [C] [H] [W]) and labels (may be NULL). shuffle: a fresh
 * permutation per epoch from `seed`. */
ct_status ct_source_open_idx(const char *images, const char *labels, bool shuffle, uint64_t seed, ct_source **out,
                             ct_error *err);

/* Caffe Datum records of an LMDB or LevelDB in key order. Encoded records are decoded in `mode`
 * (Caffe's force_color / force_gray; NATIVE otherwise). */
ct_status ct_source_open_db(const char *path, ct_db_backend backend, ct_image_mode mode, ct_source **out,
                            ct_error *err);

/* An image list: lines "<path> <label>" (the path is everything before the last space), paths
 * relative to root (prefixed as given, as Caffe does). Images are decoded COLOR or GRAY and
 * resized when new_h and new_w are set. shuffle: a fresh permutation per epoch from `seed`. */
ct_status ct_source_open_list(const char *list, const char *root, int new_h, int new_w, bool color, bool shuffle,
                              uint64_t seed, ct_source **out, ct_error *err);

/* Float records held in memory, set (copied) by ct_source_memory_set; until then next() fails.
 * labels may be NULL (all 0). */
ct_status ct_source_open_memory(int C, int H, int W, ct_source **out, ct_error *err);
ct_status ct_source_memory_set(ct_source *s, const float *data, const float *labels, int n, ct_error *err);

/* An image list file: lines "<path> <label>", the path being everything before the last space;
 * blank lines are skipped. Errors name the file and line. */
typedef struct ct_image_list {
  char *text;    /* the file, split in place */
  char **paths;  /* n entries, into text */
  int *labels;
  int64_t n;
} ct_image_list;
ct_status ct_image_list_read(const char *path, ct_image_list *out, ct_error *err);
void ct_image_list_free(ct_image_list *l);

/* Turns one Datum value into a record: raw bytes and float_data are checked against channels x
 * height x width; encoded images are decoded in `mode`. `what` names the record in errors. The
 * record's buffers live in the reader (or in val) until the next call. */
typedef struct ct_datum_reader {
  ct_image_mode mode;
  float *fbuf;
  size_t fcap;
  ct_image img;
} ct_datum_reader;
ct_status ct_datum_read(ct_datum_reader *r, const void *val, size_t vlen, const char *what, ct_record *rec,
                        ct_error *err);
void ct_datum_reader_free(ct_datum_reader *r);

/* Fisher-Yates permutation of n indices for epoch `epoch` of a stream seeded with `seed`. */
void ct_source_permutation(uint32_t *perm, size_t n, uint64_t seed, uint64_t epoch);

#endif
