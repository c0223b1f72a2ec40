/* Tile (Caffe's "Tile"): the block of every axis from tile_param.axis on, repeated `tiles` times
 * along that axis: top[o, t, :] = bottom[o, :] for each of the outer positions o (the axes
 * before `axis`) and t < tiles. Backward sums the tiles: dx[o, :] = sum over t of dy[o, t, :].
 *
 * Forward is one pitched copy per tile. Backward gathers the top's gradient tile by tile into a
 * tiles x (outer x inner) buffer (a pitched copy each) and sums its rows with one GEMV against
 * a vector of ones. With axis >= 1 images tile alone and partitions split the batch. */
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/ones.h"

typedef struct tile {
  int axis, tiles;
  size_t outer, inner; /* positions before axis; elements of one block */
  ct_ones ones;        /* `tiles` of them */
  ct_tensor *gather;   /* top-shaped: the gradient laid out tile-major for the sum */
} tile;

static const Caffe__TileParameter *params(const ct_layer *l) {
  static const Caffe__TileParameter dflt = CAFFE__TILE_PARAMETER__INIT;
  return l->lp->tile_param ? l->lp->tile_param : &dflt;
}

static bool tile_splits(const ct_layer *l) { return ct_tensor_axis(l->bottom[0], params(l)->axis) > 0; }

static ct_status tile_setup(ct_layer *l, ct_error *err) {
  const Caffe__TileParameter *tp = params(l);
  if (!tp->has_tiles) return ct_layer_fail(l, err, CT_EINVAL, "tile_param.tiles must be given");
  if (tp->tiles < 1) return ct_layer_fail(l, err, CT_EINVAL, "tiles must be positive, got %d", tp->tiles);
  tile *t = calloc(1, sizeof *t);
  if (!t) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = t;
  t->tiles = tp->tiles;
  if (!(t->gather = ct_tensor_create())) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  return ct_ones_fit(&t->ones, (size_t)t->tiles, err);
}

static ct_status tile_reshape(ct_layer *l, ct_error *err) {
  tile *t = l->priv;
  const ct_tensor *x = l->bottom[0];
  char buf[128];
  const int axis = ct_tensor_axis(x, params(l)->axis);
  if (axis < 0)
    return ct_layer_fail(l, err, CT_EINVAL, "axis %d is out of range for bottom shape %s", params(l)->axis,
                         ct_tensor_shape_str(x, buf, sizeof buf));
  if ((long long)x->shape[axis] * t->tiles > (1LL << 31) - 1)
    return ct_layer_fail(l, err, CT_ESHAPE, "axis %d (%d) times %d tiles is too large", axis, x->shape[axis],
                         t->tiles);
  t->axis = axis;
  t->outer = ct_tensor_count_range(x, 0, axis);
  t->inner = ct_tensor_count_range(x, axis, x->naxes);
  int shape[CT_MAX_AXES];
  for (int i = 0; i < x->naxes; i++) shape[i] = x->shape[i];
  shape[axis] *= t->tiles;
  CT_TRY(ct_tensor_reshape(l->top[0], x->naxes, shape, err));
  return l->propagate_down[0] ? ct_tensor_reshape_like(t->gather, l->top[0], err) : CT_OK;
}

/* The partition's outer positions: [*o0, *o0 + *no). */
static void outer_of(const ct_layer *l, const ct_part *p, size_t *o0, size_t *no) {
  const tile *t = l->priv;
  if (p->whole) {
    *o0 = 0;
    *no = t->outer;
    return;
  }
  const size_t per = t->outer / (size_t)l->bottom[0]->shape[0];
  *o0 = (size_t)p->begin * per;
  *no = (size_t)(p->end - p->begin) * per;
}

static ct_status tile_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  tile *t = l->priv;
  const ct_driver *d = p->d;
  size_t o0, no;
  outer_of(l, p, &o0, &no);
  const float *x;
  float *y;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  if (no == 0 || t->inner == 0) return CT_OK;
  const size_t row = t->inner * sizeof(float);
  x += o0 * t->inner;
  y += o0 * t->inner * (size_t)t->tiles;
  for (int k = 0; k < t->tiles; k++)
    CT_TRY(d->ops->copy_2d(d, no, row, y + (size_t)k * t->inner, row * (size_t)t->tiles, x, row));
  return CT_OK;
}

static ct_status tile_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  if (!l->propagate_down[0]) return CT_OK;
  tile *t = l->priv;
  const ct_driver *d = p->d;
  size_t o0, no;
  outer_of(l, p, &o0, &no);
  const float *dy, *ones;
  float *dx, *g;
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  CT_TRY(ct_write(l, p, t->gather, &g, err));
  CT_TRY(ct_part_all(l, p, t->ones.t, CT_DATA, CT_READ, (float **)&ones, err));
  if (no == 0 || t->inner == 0) return CT_OK;
  const size_t row = t->inner * sizeof(float), block = no * t->inner;
  dy += o0 * t->inner * (size_t)t->tiles;
  dx += o0 * t->inner;
  g += o0 * t->inner * (size_t)t->tiles; /* the partition's part of the buffer: tiles x block */
  for (int k = 0; k < t->tiles; k++)
    CT_TRY(d->ops->copy_2d(d, no, row, g + (size_t)k * block, row, dy + (size_t)k * t->inner, row * (size_t)t->tiles));
  /* dx (block) = g^T (block x tiles) . ones */
  return d->ops->gemv(d, true, t->tiles, (int)block, 1.0f, g, ones, 0.0f, dx);
}

static void tile_destroy(ct_layer *l) {
  tile *t = l->priv;
  if (!t) return;
  ct_ones_free(&t->ones);
  ct_tensor_free(t->gather);
  free(t);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Tile = {.type = "Tile",
                                    .min_bottom = 1,
                                    .max_bottom = 1,
                                    .min_top = 1,
                                    .max_top = 1,
                                    .has_backward = true,
                                    .splits = tile_splits,
                                    .gains = true,
                                    .kind = CT_WORK_MEMORY,
                                    .setup = tile_setup,
                                    .reshape = tile_reshape,
                                    .forward = tile_forward,
                                    .backward = tile_backward,
                                    .destroy = tile_destroy};
