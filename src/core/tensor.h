/* An N-D float32 array (NCHW order) with a gradient of the same shape — Caffe's Blob.
 *
 * Storage grows only: reshape to a smaller count keeps the buffer, so steady-state training
 * allocates nothing. A tensor may instead view another's storage (ct_tensor_share), as Flatten,
 * Reshape and the parameter packing of the net do; a viewing tensor never frees what it views. */
#ifndef CT_TENSOR_H
#define CT_TENSOR_H

#include <stdbool.h>
#include <stddef.h>

#include "cortado.h"

#define CT_MAX_AXES 8

typedef struct ct_tensor {
  int naxes;
  int shape[CT_MAX_AXES];
  size_t count;    /* product of shape (1 for a scalar with naxes == 0) */
  size_t capacity; /* elements the owned buffers hold */
  float *data;
  float *diff;
  float *own_data; /* buffers this tensor allocated (NULL while it views another's) */
  float *own_diff;
} ct_tensor;

ct_tensor *ct_tensor_create(void);
void ct_tensor_free(ct_tensor *t);
/* Sets the shape; grows the owned buffers (zero-filled) when needed. A viewing tensor keeps
 * viewing if the new count fits the view, else it gets its own storage. */
ct_status ct_tensor_reshape(ct_tensor *t, int naxes, const int *shape, ct_error *err);
ct_status ct_tensor_reshape_like(ct_tensor *t, const ct_tensor *like, ct_error *err);
/* Shorthand for a 4-D shape (N, C, H, W). */
ct_status ct_tensor_reshape4(ct_tensor *t, int n, int c, int h, int w, ct_error *err);
/* Makes t view src's data and diff (t's shape must have src's count). */
void ct_tensor_share(ct_tensor *t, const ct_tensor *src);
/* Makes t view external memory of at least t->count floats each. */
void ct_tensor_view(ct_tensor *t, float *data, float *diff);

/* Caffe's axis helpers: a negative axis counts from the end. */
int ct_tensor_axis(const ct_tensor *t, int axis); /* -1 if out of range */
size_t ct_tensor_count_range(const ct_tensor *t, int start, int end);
int ct_tensor_dim(const ct_tensor *t, int axis); /* shape[axis], 1 past the last axis */
/* "2x3x4x5 (120)" into buf. */
const char *ct_tensor_shape_str(const ct_tensor *t, char *buf, size_t n);
bool ct_tensor_same_shape(const ct_tensor *a, const ct_tensor *b);

#endif
