/* Filter (Caffe's "Filter"): the last bottom is a selector (N values, one per item, singleton on
 * every other axis); each other bottom i passes to top i the items whose selector is nonzero, in
 * order, so the tops' batch is the number selected. Backward: each bottom's diff is the top's at
 * the selected items and 0 elsewhere; the selector takes no gradient.
 *
 * The selection is made in reshape (which runs before every forward), from the selector read on
 * the host, as Caffe does; before the selector has values (the first reshape, at setup) every
 * item passes, as in Caffe. The items move with the driver's copies on the plan's device; the
 * tops' batch is not the bottoms', so the layer runs unsplit. */
#include <stdlib.h>

#include "layers/layer.h"

typedef struct filter {
  bool first;    /* the setup reshape: no selector values yet */
  int *picked;   /* the selected items */
  int npicked;
} filter;

static ct_status filter_setup(ct_layer *l, ct_error *err) {
  if (l->ntop != l->nbottom - 1)
    return ct_layer_fail(l, err, CT_EINVAL, "needs one top per filtered bottom: %d bottoms (the last the selector) "
                         "and %d tops", l->nbottom, l->ntop);
  filter *f = calloc(1, sizeof *f);
  if (!f) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = f;
  f->first = true;
  return CT_OK;
}

static ct_status filter_reshape(ct_layer *l, ct_error *err) {
  filter *f = l->priv;
  ct_tensor *sel = l->bottom[l->nbottom - 1];
  char b0[128], b1[128];
  if (sel->naxes < 1)
    return ct_layer_fail(l, err, CT_ESHAPE, "the selector needs a batch axis, got %s",
                         ct_tensor_shape_str(sel, b0, sizeof b0));
  for (int i = 1; i < sel->naxes; i++)
    if (sel->shape[i] != 1)
      return ct_layer_fail(l, err, CT_ESHAPE, "the selector must be 1 on every axis but the first, got %s",
                           ct_tensor_shape_str(sel, b0, sizeof b0));
  const int N = sel->shape[0];
  for (int i = 0; i < l->nbottom - 1; i++)
    if (l->bottom[i]->naxes < 1 || l->bottom[i]->shape[0] != N)
      return ct_layer_fail(l, err, CT_ESHAPE, "bottom %d (%s) must have the selector's first axis (%s)", i,
                           ct_tensor_shape_str(l->bottom[i], b0, sizeof b0), ct_tensor_shape_str(sel, b1, sizeof b1));
  int *picked = realloc(f->picked, (size_t)(N ? N : 1) * sizeof *picked);
  if (!picked) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  f->picked = picked;
  f->npicked = 0;
  if (f->first) {
    for (int n = 0; n < N; n++) f->picked[f->npicked++] = n;
    f->first = false;
  } else {
    float *s;
    CT_TRY(ct_tensor_deref(sel, CT_DATA, &ct_mem_host, CT_READ, 0, sel->count, l->place ? &l->place->stats : NULL, &s,
                           err));
    for (int n = 0; n < N; n++)
      if (s[n] != 0) f->picked[f->npicked++] = n;
  }
  for (int i = 0; i < l->ntop; i++) {
    const ct_tensor *x = l->bottom[i];
    int shape[CT_MAX_AXES];
    for (int k = 0; k < x->naxes; k++) shape[k] = x->shape[k];
    shape[0] = f->npicked;
    CT_TRY(ct_tensor_reshape(l->top[i], x->naxes, shape, err));
  }
  return CT_OK;
}

static ct_status filter_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  filter *f = l->priv;
  const ct_driver *d = p->d;
  for (int i = 0; i < l->ntop; i++) {
    const float *x;
    float *y;
    CT_TRY(ct_read(l, p, l->bottom[i], &x, err));
    CT_TRY(ct_write(l, p, l->top[i], &y, err));
    const size_t inner = ct_tensor_inner(l->bottom[i]);
    for (int k = 0; k < f->npicked; k++)
      CT_TRY(d->ops->copy(d, y + (size_t)k * inner, x + (size_t)f->picked[k] * inner, inner * sizeof(float)));
  }
  return CT_OK;
}

static ct_status filter_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  filter *f = l->priv;
  const ct_driver *d = p->d;
  for (int i = 0; i < l->nbottom; i++) {
    if (!l->propagate_down[i]) continue;
    float *dx;
    CT_TRY(ct_write_diff(l, p, l->bottom[i], &dx, err));
    CT_TRY(d->ops->memset(d, dx, 0, l->bottom[i]->count * sizeof(float)));
    if (i == l->nbottom - 1) continue; /* the selector takes none */
    const float *dy;
    CT_TRY(ct_read_diff(l, p, l->top[i], &dy, err));
    const size_t inner = ct_tensor_inner(l->bottom[i]);
    for (int k = 0; k < f->npicked; k++)
      CT_TRY(d->ops->copy(d, dx + (size_t)f->picked[k] * inner, dy + (size_t)k * inner, inner * sizeof(float)));
  }
  return CT_OK;
}

static void filter_destroy(ct_layer *l) {
  filter *f = l->priv;
  if (f) free(f->picked);
  free(f);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Filter = {.type = "Filter",
                                      .min_bottom = 2,
                                      .max_bottom = -1,
                                      .min_top = 1,
                                      .max_top = -1,
                                      .has_backward = true,
                                      .splits = NULL,
                                      .kind = CT_WORK_MEMORY,
                                      .setup = filter_setup,
                                      .reshape = filter_reshape,
                                      .forward = filter_forward,
                                      .backward = filter_backward,
                                      .destroy = filter_destroy};
