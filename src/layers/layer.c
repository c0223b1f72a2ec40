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
