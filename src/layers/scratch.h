/* Growable private storage for layers (masks, saved inputs, index buffers), in the memory of the
 * layer's driver: it grows in reshape and is only read and written in forward/backward, so
 * steady-state training allocates nothing. A zeroed ct_scratch is empty; ct_scratch_free
 * releases it (to the driver that allocated it). */
#ifndef CT_LAYER_SCRATCH_H
#define CT_LAYER_SCRATCH_H

#include "layers/layer.h"

typedef struct ct_scratch {
  void *p;
  size_t bytes;
  const ct_driver *driver; /* that p came from */
} ct_scratch;

static inline void ct_scratch_free(ct_scratch *s) {
  if (s->driver) s->driver->ops->free(s->driver, s->p);
  s->p = NULL;
  s->bytes = 0;
  s->driver = NULL;
}

/* Makes s hold at least n elements of elem_size bytes; the old contents are not kept. */
static inline ct_status ct_scratch_reserve(ct_scratch *s, size_t n, size_t elem_size, const ct_layer *l,
                                           ct_error *err) {
  if (n && elem_size > (size_t)-1 / n) return ct_layer_fail(l, err, CT_ENOMEM, "scratch buffer size overflows");
  size_t bytes = n * elem_size;
  const ct_driver *d = ct_layer_driver(l);
  if (bytes <= s->bytes && s->p && s->driver == d) return CT_OK;
  void *p = d->ops->alloc(d, bytes);
  if (!p) return ct_layer_fail(l, err, CT_ENOMEM, "cannot allocate %zu bytes of scratch", bytes);
  ct_scratch_free(s);
  s->p = p;
  s->bytes = bytes;
  s->driver = d;
  return CT_OK;
}

#endif
