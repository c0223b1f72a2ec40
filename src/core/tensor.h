/* An N-D float32 array (NCHW order) with a gradient of the same shape — Caffe's Blob — as a shape
 * over two storages (core/storage.h), one for the values (data) and one for the gradient
 * (diff), each at an offset. Storage is separate from the shape so that tensors can share it:
 * Flatten and Reshape view their bottom's, the net's parameters view one flat storage each for
 * data and diff, and the memory planner lets tensors with disjoint lifetimes share.
 *
 * Memory is reached only through ct_tensor_deref (or ct_tensor_host for the host), which
 * returns a place-local pointer to element 0 with the requested elements valid there. Storage
 * grows only: reshape to a smaller count keeps it, so steady-state training allocates nothing.
 * A tensor that shares a storage and outgrows it gets one of its own. */
#ifndef CT_TENSOR_H
#define CT_TENSOR_H

#include <stdbool.h>
#include <stddef.h>

#include "core/storage.h"
#include "cortado.h"

#define CT_MAX_AXES 8

typedef enum ct_side { CT_DATA = 0, CT_DIFF = 1 } ct_side;

typedef struct ct_tensor {
  int naxes;
  int shape[CT_MAX_AXES];
  size_t count;      /* product of shape (1 for a scalar with naxes == 0) */
  ct_storage *st[2]; /* data, diff; each reference held by this tensor (NULL before reshape) */
  size_t off[2];     /* where the tensor starts in each, in elements */
} ct_tensor;

ct_tensor *ct_tensor_create(void);
void ct_tensor_free(ct_tensor *t);
/* Sets the shape; grows the owned buffers (zero-filled) when needed. A viewing tensor keeps
 * viewing if the new count fits the view, else it gets its own storage. */
ct_status ct_tensor_reshape(ct_tensor *t, int naxes, const int *shape, ct_error *err);
ct_status ct_tensor_reshape_like(ct_tensor *t, const ct_tensor *like, ct_error *err);
/* Shorthand for a 4-D shape (N, C, H, W). */
ct_status ct_tensor_reshape4(ct_tensor *t, int n, int c, int h, int w, ct_error *err);
/* Makes t view src's data and diff storages (t's shape must have src's count). */
void ct_tensor_share(ct_tensor *t, const ct_tensor *src);
/* Makes one side of t view `st` from element `off` (t's count elements must lie within it). */
void ct_tensor_view(ct_tensor *t, ct_side side, ct_storage *st, size_t off);
/* Makes one side of t view the same side of src. */
void ct_tensor_share_side(ct_tensor *t, ct_side side, const ct_tensor *src);

/* Elements [begin, end) of one side valid in place m for `mode` (storage.h); *out is element 0
 * there. stats may be NULL. */
ct_status ct_tensor_deref(ct_tensor *t, ct_side side, const ct_mem *m, ct_access mode, size_t begin, size_t end,
                          ct_copy_stats *stats, float **out, ct_error *err);
/* The whole of one side on the host (fillers, weights I/O, tests, the API's views). */
ct_status ct_tensor_host(ct_tensor *t, ct_side side, ct_access mode, float **out, ct_error *err);
/* Elements per index of the first axis (count / shape[0]; count for a scalar or empty axis). */
size_t ct_tensor_inner(const ct_tensor *t);

/* Caffe's axis helpers: a negative axis counts from the end. */
int ct_tensor_axis(const ct_tensor *t, int axis); /* -1 if out of range */
size_t ct_tensor_count_range(const ct_tensor *t, int start, int end);
int ct_tensor_dim(const ct_tensor *t, int axis); /* shape[axis], 1 past the last axis */
/* "2x3x4x5 (120)" into buf. */
const char *ct_tensor_shape_str(const ct_tensor *t, char *buf, size_t n);
bool ct_tensor_same_shape(const ct_tensor *a, const ct_tensor *b);

#endif
