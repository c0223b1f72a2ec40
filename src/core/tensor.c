#include "core/tensor.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

/* The largest tensor we accept: 2^34 floats (64 GiB), far beyond any sane layer, so that a
 * corrupt shape is an error rather than an allocation attempt. */
#define CT_TENSOR_MAX_COUNT ((size_t)1 << 34)

ct_tensor *ct_tensor_create(void) { return calloc(1, sizeof(ct_tensor)); }

void ct_tensor_free(ct_tensor *t) {
  if (!t) return;
  free(t->own_data);
  free(t->own_diff);
  free(t);
}

static float *alloc_floats(size_t n) {
  /* 64-byte alignment for vector loads; zeroed so a fresh blob is deterministic. */
  size_t bytes = ((n * sizeof(float)) + 63) & ~(size_t)63;
  if (bytes == 0) bytes = 64;
  float *p = aligned_alloc(64, bytes);
  if (p) memset(p, 0, bytes);
  return p;
}

ct_status ct_tensor_reshape(ct_tensor *t, int naxes, const int *shape, ct_error *err) {
  if (naxes < 0 || naxes > CT_MAX_AXES)
    return ct_fail(err, CT_ESHAPE, "a tensor has %d axes; at most %d are supported", naxes, CT_MAX_AXES);
  size_t count = 1;
  for (int i = 0; i < naxes; i++) {
    if (shape[i] < 0) return ct_fail(err, CT_ESHAPE, "axis %d has negative size %d", i, shape[i]);
    if (shape[i] > 0 && count > CT_TENSOR_MAX_COUNT / (size_t)shape[i])
      return ct_fail(err, CT_ENOMEM, "a tensor of more than %zu elements was requested", CT_TENSOR_MAX_COUNT);
    count *= (size_t)shape[i];
  }
  bool viewing = t->data && t->data != t->own_data;
  if (viewing && count <= t->count) {
    /* A view shrinking within what it views stays a view. */
  } else if (count > t->capacity || viewing) {
    if (count > t->capacity) {
      float *d = alloc_floats(count), *g = alloc_floats(count);
      if (!d || !g) {
        free(d);
        free(g);
        return ct_fail(err, CT_ENOMEM, "cannot allocate a tensor of %zu floats", count);
      }
      free(t->own_data);
      free(t->own_diff);
      t->own_data = d;
      t->own_diff = g;
      t->capacity = count;
    }
    t->data = t->own_data;
    t->diff = t->own_diff;
  }
  t->naxes = naxes;
  for (int i = 0; i < CT_MAX_AXES; i++) t->shape[i] = i < naxes ? shape[i] : 0;
  t->count = count;
  return CT_OK;
}

ct_status ct_tensor_reshape_like(ct_tensor *t, const ct_tensor *like, ct_error *err) {
  return ct_tensor_reshape(t, like->naxes, like->shape, err);
}

ct_status ct_tensor_reshape4(ct_tensor *t, int n, int c, int h, int w, ct_error *err) {
  int s[4] = {n, c, h, w};
  return ct_tensor_reshape(t, 4, s, err);
}

void ct_tensor_share(ct_tensor *t, const ct_tensor *src) {
  t->data = src->data;
  t->diff = src->diff;
}

void ct_tensor_view(ct_tensor *t, float *data, float *diff) {
  t->data = data;
  t->diff = diff;
}

int ct_tensor_axis(const ct_tensor *t, int axis) {
  if (axis < -t->naxes || axis >= t->naxes) return -1;
  return axis < 0 ? axis + t->naxes : axis;
}

size_t ct_tensor_count_range(const ct_tensor *t, int start, int end) {
  size_t c = 1;
  for (int i = start; i < end && i < t->naxes; i++) c *= (size_t)t->shape[i];
  return c;
}

int ct_tensor_dim(const ct_tensor *t, int axis) { return axis < t->naxes ? t->shape[axis] : 1; }

const char *ct_tensor_shape_str(const ct_tensor *t, char *buf, size_t n) {
  size_t used = 0;
  buf[0] = 0;
  for (int i = 0; i < t->naxes && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, "%s%d", i ? " " : "", t->shape[i]);
  if (used < n) snprintf(buf + used, n - used, " (%zu)", t->count);
  return buf;
}

bool ct_tensor_same_shape(const ct_tensor *a, const ct_tensor *b) {
  if (a->naxes != b->naxes) return false;
  for (int i = 0; i < a->naxes; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}
