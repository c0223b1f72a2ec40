#include "layers/layer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

ct_status ct_layer_alloc_blobs(ct_layer *l, int n, ct_error *err) {
  l->blobs = calloc((size_t)(n ? n : 1), sizeof *l->blobs);
  l->param_propagate_down = calloc((size_t)(n ? n : 1), sizeof *l->param_propagate_down);
  if (!l->blobs || !l->param_propagate_down) return ct_fail(err, CT_ENOMEM, "out of memory");
  l->nblobs = n;
  for (int i = 0; i < n; i++) {
    l->blobs[i] = ct_tensor_create();
    if (!l->blobs[i]) return ct_fail(err, CT_ENOMEM, "out of memory");
    l->param_propagate_down[i] = true;
  }
  return CT_OK;
}

ct_status ct_layer_fail(const ct_layer *l, ct_error *err, ct_status s, const char *fmt, ...) {
  char msg[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return ct_fail(err, s, "layer \"%s\" (%s): %s", l->name ? l->name : "?", l->ops->type, msg);
}

ct_status ct_layer_check_axes(const ct_layer *l, int i, int naxes, ct_error *err) {
  if (l->bottom[i]->naxes != naxes) {
    char buf[128];
    return ct_layer_fail(l, err, CT_ESHAPE, "bottom %d must have %d axes, got shape %s", i, naxes,
                         ct_tensor_shape_str(l->bottom[i], buf, sizeof buf));
  }
  return CT_OK;
}

ct_status ct_layer_broadcast_axes(const ct_layer *l, const ct_tensor *x, const ct_tensor *b, int axis_param,
                                  const char *what, size_t *outer, size_t *dim, size_t *inner, ct_error *err) {
  char buf[128], buf2[128];
  int axis = 0;
  if (b->naxes > 0) {
    axis = ct_tensor_axis(x, axis_param);
    if (axis < 0)
      return ct_layer_fail(l, err, CT_EINVAL, "axis %d is out of range for bottom shape %s", axis_param,
                           ct_tensor_shape_str(x, buf, sizeof buf));
  }
  bool fits = x->naxes >= axis + b->naxes;
  for (int i = 0; fits && i < b->naxes; i++) fits = x->shape[axis + i] == b->shape[i];
  if (!fits)
    return ct_layer_fail(l, err, CT_ESHAPE, "%s shape %s does not match bottom[0] shape %s from axis %d", what,
                         ct_tensor_shape_str(b, buf, sizeof buf), ct_tensor_shape_str(x, buf2, sizeof buf2), axis);
  *outer = ct_tensor_count_range(x, 0, axis);
  *dim = b->count;
  *inner = ct_tensor_count_range(x, axis + b->naxes, x->naxes);
  return CT_OK;
}

const ct_driver *ct_layer_driver(const ct_layer *l) { return l->driver ? l->driver : ct_driver_cpu(); }

ct_status ct_layer_grow(const ct_layer *l, float **buf, size_t *cap, size_t need, ct_error *err) {
  if (need <= *cap && *buf) return CT_OK;
  const ct_driver *d = ct_layer_driver(l);
  float *b = need <= (size_t)-1 / sizeof(float) ? d->ops->alloc(d, need * sizeof(float)) : NULL;
  if (!b) return ct_layer_fail(l, err, CT_ENOMEM, "cannot allocate %zu floats", need);
  d->ops->free(d, *buf);
  *buf = b;
  *cap = need;
  return CT_OK;
}

void ct_layer_release(const ct_layer *l, void *p) {
  const ct_driver *d = ct_layer_driver(l);
  d->ops->free(d, p);
}
