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
  ct_storage_release(t->st[CT_DATA]);
  ct_storage_release(t->st[CT_DIFF]);
  free(t);
}

/* Makes side `s` hold `count` elements from its offset: a storage of its own when it has none,
 * or when it shares one that is too short (sharing another's storage never grows it). */
static ct_status fit_side(ct_tensor *t, int s, size_t count, ct_error *err) {
  ct_storage *st = t->st[s];
  if (st && t->off[s] + count <= ct_storage_size(st)) return CT_OK;
  if (st && ct_storage_refs(st) == 1 && t->off[s] == 0) return ct_storage_reserve(st, count, err);
  ct_storage *own = ct_storage_create();
  if (!own) return ct_fail(err, CT_ENOMEM, "cannot allocate a tensor of %zu floats", count);
  ct_status r = ct_storage_reserve(own, count, err);
  if (r) {
    ct_storage_release(own);
    return r;
  }
  ct_storage_release(st);
  t->st[s] = own;
  t->off[s] = 0;
  return CT_OK;
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
  CT_TRY(fit_side(t, CT_DATA, count, err));
  CT_TRY(fit_side(t, CT_DIFF, count, err));
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

void ct_tensor_view(ct_tensor *t, ct_side side, ct_storage *st, size_t off) {
  if (st) ct_storage_retain(st);
  ct_storage_release(t->st[side]);
  t->st[side] = st;
  t->off[side] = off;
}

void ct_tensor_share_side(ct_tensor *t, ct_side side, const ct_tensor *src) {
  ct_tensor_view(t, side, src->st[side], src->off[side]);
}

void ct_tensor_share(ct_tensor *t, const ct_tensor *src) {
  ct_tensor_share_side(t, CT_DATA, src);
  ct_tensor_share_side(t, CT_DIFF, src);
}

ct_status ct_tensor_deref(ct_tensor *t, ct_side side, const ct_mem *m, ct_access mode, size_t begin, size_t end,
                          ct_copy_stats *stats, float **out, ct_error *err) {
  if (!t->st[side] || end > t->count || begin > end) {
    *out = NULL;
    return ct_fail(err, CT_EINTERNAL, "deref of elements [%zu, %zu) of a tensor of %zu%s", begin, end, t->count,
                   t->st[side] ? "" : " with no storage");
  }
  float *p;
  CT_TRY(ct_storage_deref(t->st[side], m, mode, t->off[side] + begin, t->off[side] + end, stats, &p, err));
  *out = p + t->off[side];
  return CT_OK;
}

ct_status ct_tensor_host(ct_tensor *t, ct_side side, ct_access mode, float **out, ct_error *err) {
  return ct_tensor_deref(t, side, &ct_mem_host, mode, 0, t->count, NULL, out, err);
}

size_t ct_tensor_inner(const ct_tensor *t) {
  return t->naxes > 0 && t->shape[0] > 0 ? t->count / (size_t)t->shape[0] : t->count;
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
