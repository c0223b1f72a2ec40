/* Im2col (Caffe's "Im2col"): each image's patches as columns: top n is (C kh kw) x OH x OW, row
 * (c, i, j) holding input channel c at kernel offset (i, j) for every output position (zero where
 * the window reaches into the padding). The window comes from convolution_param (kernel, stride,
 * pad, dilation; num_output and group play no part). Backward is col2im: each input element
 * sums the gradients of every column it was copied to.
 *
 * This is exactly the lowered data of CcT's type 1 (src/lowering/), so the layer runs the
 * driver's conv_lower and conv_lower_grad on a chunk of images and moves each image's block of
 * columns between the lowering's layout (C kh kw x nb OH OW) and the top's with pitched copies.
 * Images are independent: partitions split the batch. */
#include <stdlib.h>

#include "layers/conv.h"
#include "layers/layer.h"

typedef struct im2col {
  ct_conv_geom g;     /* K = G = 1: only the window and the lowered data matter */
  ct_lowering type;   /* TYPE1 */
  int chunk;          /* images per lowering call */
  ct_part_scratch ws; /* each partition's lowering workspace */
} im2col;

static ct_status im2col_setup(ct_layer *l, ct_error *err) {
  im2col *m = calloc(1, sizeof *m);
  if (!m) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = m;
  return ct_conv_read_window(l, &m->g, err);
}

static ct_status im2col_reshape(ct_layer *l, ct_error *err) {
  im2col *m = l->priv;
  const ct_tensor *x = l->bottom[0];
  char buf[128];
  if (x->naxes != 4)
    return ct_layer_fail(l, err, CT_ESHAPE, "bottom must have 4 axes (N, C, H, W), got shape %s",
                         ct_tensor_shape_str(x, buf, sizeof buf));
  ct_conv_geom g = m->g;
  g.N = x->shape[0], g.C = x->shape[1], g.H = x->shape[2], g.W = x->shape[3];
  if (!ct_conv_geom_finish(&g))
    return ct_layer_fail(l, err, CT_ESHAPE,
                         "the kernel %dx%d (dilation %dx%d) does not fit the input %dx%d padded by %dx%d", g.kh, g.kw,
                         g.dh, g.dw, g.H, g.W, g.ph, g.pw);
  if ((long long)g.C * g.kh * g.kw > (1LL << 31) - 1)
    return ct_layer_fail(l, err, CT_ESHAPE, "%d channels times a %dx%d kernel is too many rows", g.C, g.kh, g.kw);
  m->g = g;
  CT_TRY(ct_tensor_reshape4(l->top[0], g.N, g.C * g.kh * g.kw, g.OH, g.OW, err));
  return ct_conv_fit_workspace(l, &g, CT_LOWER_TYPE1, &m->type, &m->chunk, &m->ws, err);
}

/* Moves nb images' columns between the lowered data D (rows of nb P columns) and the top (each
 * image rows x P). */
static ct_status move(const ct_driver *d, const ct_conv_geom *g, int nb, float *D, float *top, bool to_top) {
  const size_t rows = (size_t)g->C * g->kh * g->kw, P = (size_t)g->OH * g->OW;
  const size_t row = P * sizeof(float), pitch = (size_t)nb * row;
  for (int n = 0; n < nb; n++) {
    float *t = top + (size_t)n * rows * P, *dn = D + (size_t)n * P;
    CT_TRY(to_top ? d->ops->copy_2d(d, rows, row, t, row, dn, pitch) : d->ops->copy_2d(d, rows, row, dn, pitch, t, row));
  }
  return CT_OK;
}

static ct_status im2col_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  im2col *m = l->priv;
  const ct_conv_geom *g = &m->g;
  const ct_driver *d = p->d;
  const float *x;
  float *y;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  float *ws = ct_part_scratch_of(&m->ws, p);
  const size_t xs = (size_t)g->C * g->H * g->W, ys = (size_t)g->C * g->kh * g->kw * g->OH * g->OW;
  for (int n0 = p->begin; n0 < p->end; n0 += m->chunk) {
    const int nb = p->end - n0 < m->chunk ? p->end - n0 : m->chunk;
    float *D = ws + ct_lower_layout_of(g, CT_LOWER_TYPE1, nb).data;
    CT_TRY(d->ops->conv_lower(d, g, CT_LOWER_TYPE1, nb, x + (size_t)n0 * xs, NULL, ws));
    CT_TRY(move(d, g, nb, D, y + (size_t)n0 * ys, true));
  }
  return CT_OK;
}

static ct_status im2col_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  if (!l->propagate_down[0]) return CT_OK;
  im2col *m = l->priv;
  const ct_conv_geom *g = &m->g;
  const ct_driver *d = p->d;
  const float *dy;
  float *dx;
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  float *ws = ct_part_scratch_of(&m->ws, p);
  const size_t xs = (size_t)g->C * g->H * g->W, ys = (size_t)g->C * g->kh * g->kw * g->OH * g->OW;
  for (int n0 = p->begin; n0 < p->end; n0 += m->chunk) {
    const int nb = p->end - n0 < m->chunk ? p->end - n0 : m->chunk;
    float *D = ws + ct_lower_layout_of(g, CT_LOWER_TYPE1, nb).data;
    CT_TRY(move(d, g, nb, D, (float *)dy + (size_t)n0 * ys, false));
    CT_TRY(d->ops->conv_lower_grad(d, g, CT_LOWER_TYPE1, nb, ws, dx + (size_t)n0 * xs, NULL));
  }
  return CT_OK;
}

static void im2col_destroy(ct_layer *l) {
  im2col *m = l->priv;
  if (m) ct_part_scratch_free(&m->ws);
  free(m);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Im2col = {.type = "Im2col",
                                      .min_bottom = 1,
                                      .max_bottom = 1,
                                      .min_top = 1,
                                      .max_top = 1,
                                      .has_backward = true,
                                      .splits = ct_layer_splits_always,
                                      .gains = true,
                                      .kind = CT_WORK_MEMORY,
                                      .setup = im2col_setup,
                                      .reshape = im2col_reshape,
                                      .forward = im2col_forward,
                                      .backward = im2col_backward,
                                      .destroy = im2col_destroy};
