/* SPP (Caffe's "SPP", spatial pyramid pooling): pyramid_height levels; level i pools each
 * channel into 2^i x 2^i bins with Caffe's window for the level: kernel = ceil(side / bins),
 * stride = kernel, pad = (kernel bins - side + 1) / 2 per axis. Each level's output (N x C x bins
 * x bins) is flattened and the levels are concatenated: the top is N x C (1 + 4 + 16 + ...). With
 * pyramid_height 1 the top is the single level's N x C x 1 x 1, as in Caffe. MAX, AVE, and
 * STOCHASTIC in the TEST phase, as the Pooling layer (whose driver entries it uses).
 *
 * Backward: each level's slice of the top's gradient is unpooled, and the levels' input
 * gradients are summed. Planes are independent: partitions split the batch. */
#include <math.h>
#include <stdlib.h>

#include "layers/layer.h"

_Static_assert(sizeof(int) == sizeof(float), "argmax ints live in a float tensor");

#define SPP_MAX_LEVELS 16

typedef struct spp {
  int levels;
  ct_pool_method method;
  int N, C, H, W;
  ct_pool_geom g[SPP_MAX_LEVELS];
  size_t off[SPP_MAX_LEVELS]; /* the level's first column in a top row */
  size_t width;               /* the top's row: C times the bins of all levels */
  ct_tensor *out[SPP_MAX_LEVELS];    /* N x C x bins x bins: a level's output, then its gradient */
  ct_tensor *argmax[SPP_MAX_LEVELS]; /* MAX: like out, ints */
  ct_tensor *sum;                    /* bottom-shaped: a level's input gradient, before adding */
} spp;

static ct_status spp_setup(ct_layer *l, ct_error *err) {
  static const Caffe__SPPParameter dflt = CAFFE__SPPPARAMETER__INIT;
  const Caffe__SPPParameter *sp = l->lp->spp_param ? l->lp->spp_param : &dflt;
  if (!sp->has_pyramid_height || sp->pyramid_height < 1 || sp->pyramid_height > SPP_MAX_LEVELS)
    return ct_layer_fail(l, err, CT_EINVAL, "pyramid_height must be given, from 1 to %d", SPP_MAX_LEVELS);
  spp *s = calloc(1, sizeof *s);
  if (!s) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = s;
  s->levels = (int)sp->pyramid_height;
  switch (sp->pool) {
    case CAFFE__SPPPARAMETER__POOL_METHOD__MAX: s->method = CT_POOL_MAX; break;
    case CAFFE__SPPPARAMETER__POOL_METHOD__AVE: s->method = CT_POOL_AVE; break;
    case CAFFE__SPPPARAMETER__POOL_METHOD__STOCHASTIC:
      if (l->phase == CAFFE__PHASE__TRAIN)
        return ct_layer_fail(l, err, CT_EUNSUPPORTED, "STOCHASTIC pooling is supported only in the TEST phase");
      s->method = CT_POOL_STOCHASTIC;
      break;
    default: return ct_layer_fail(l, err, CT_EINVAL, "unknown pooling method %d", (int)sp->pool);
  }
  for (int i = 0; i < s->levels; i++)
    if (!(s->out[i] = ct_tensor_create()) || !(s->argmax[i] = ct_tensor_create()))
      return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  if (!(s->sum = ct_tensor_create())) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  return CT_OK;
}

/* Caffe's pooled size (CEIL rounding; with padding the last window starts inside image + pad). */
static int pooled(int in, int k, int pad, int stride) {
  int out = (int)ceilf((float)(in + 2 * pad - k) / (float)stride) + 1;
  if (pad && (out - 1) * stride >= in + pad) out--;
  return out;
}

/* Level `level`'s window along one axis of `side` pixels. */
static ct_status window(const ct_layer *l, int level, int side, const char *axis, int *k, int *pad, ct_error *err) {
  const int bins = 1 << level;
  *k = (side + bins - 1) / bins;
  *pad = (*k * bins - side + 1) / 2;
  if (*pad >= *k || pooled(side, *k, *pad, *k) != bins)
    return ct_layer_fail(l, err, CT_ESHAPE,
                         "pyramid level %d (%dx%d bins) does not fit an input %s of %d: window %d, pad %d (Caffe "
                         "fails here too); lower pyramid_height or enlarge the input",
                         level, bins, bins, axis, side, *k, *pad);
  return CT_OK;
}

static ct_status spp_reshape(ct_layer *l, ct_error *err) {
  spp *s = l->priv;
  const ct_tensor *x = l->bottom[0];
  char buf[128];
  if (x->naxes != 4)
    return ct_layer_fail(l, err, CT_ESHAPE, "bottom must have 4 axes (N, C, H, W), got shape %s",
                         ct_tensor_shape_str(x, buf, sizeof buf));
  s->N = x->shape[0], s->C = x->shape[1], s->H = x->shape[2], s->W = x->shape[3];
  if (s->H <= 0 || s->W <= 0) return ct_layer_fail(l, err, CT_ESHAPE, "an empty input plane");
  s->width = 0;
  for (int i = 0; i < s->levels; i++) {
    ct_pool_geom *g = &s->g[i];
    const int bins = 1 << i;
    g->method = s->method;
    g->H = s->H, g->W = s->W, g->OH = g->OW = bins;
    CT_TRY(window(l, i, s->H, "height", &g->kh, &g->ph, err));
    CT_TRY(window(l, i, s->W, "width", &g->kw, &g->pw, err));
    g->sh = g->kh, g->sw = g->kw;
    if ((g->ph || g->pw) && s->method == CT_POOL_STOCHASTIC)
      return ct_layer_fail(l, err, CT_EINVAL,
                           "STOCHASTIC pooling cannot pad, and level %d of a %dx%d input needs padding %dx%d", i, s->H,
                           s->W, g->ph, g->pw);
    s->off[i] = s->width;
    s->width += (size_t)s->C * bins * bins;
    CT_TRY(ct_tensor_reshape4(s->out[i], s->N, s->C, bins, bins, err));
    if (s->method == CT_POOL_MAX) CT_TRY(ct_tensor_reshape_like(s->argmax[i], s->out[i], err));
  }
  if (s->levels > 1) CT_TRY(ct_tensor_reshape_like(s->sum, x, err));
  if (s->levels == 1) return ct_tensor_reshape4(l->top[0], s->N, s->C, 1, 1, err);
  const int shape[2] = {s->N, (int)s->width};
  return ct_tensor_reshape(l->top[0], 2, shape, err);
}

static ct_status spp_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  spp *s = l->priv;
  const ct_driver *d = p->d;
  int n0, nn;
  ct_part_images(p, l->bottom[0], &n0, &nn);
  const size_t planes = (size_t)nn * s->C, x0 = (size_t)n0 * s->C * s->H * s->W;
  const float *x;
  float *y;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  for (int i = 0; i < s->levels; i++) {
    const size_t per = (size_t)s->C << (2 * i), o0 = (size_t)n0 * per; /* a level's floats per image */
    float *out, *am = NULL;
    CT_TRY(ct_write(l, p, s->out[i], &out, err));
    if (s->method == CT_POOL_MAX) CT_TRY(ct_write(l, p, s->argmax[i], &am, err));
    CT_TRY(d->ops->pool_forward(d, &s->g[i], planes, x + x0, out + o0, am ? (int *)(am + o0) : NULL, NULL));
    CT_TRY(d->ops->copy_2d(d, (size_t)nn, per * sizeof(float), y + (size_t)n0 * s->width + s->off[i],
                           s->width * sizeof(float), out + o0, per * sizeof(float)));
  }
  return CT_OK;
}

static ct_status spp_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  if (!l->propagate_down[0]) return CT_OK;
  spp *s = l->priv;
  const ct_driver *d = p->d;
  int n0, nn;
  ct_part_images(p, l->bottom[0], &n0, &nn);
  const size_t planes = (size_t)nn * s->C, x0 = (size_t)n0 * s->C * s->H * s->W;
  const size_t xn = (size_t)nn * s->C * s->H * s->W;
  const float *x = NULL, *dy;
  float *dx, *sum = NULL;
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  if (s->method == CT_POOL_STOCHASTIC) CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  if (s->levels > 1) CT_TRY(ct_write(l, p, s->sum, &sum, err));
  for (int i = 0; i < s->levels; i++) {
    const size_t per = (size_t)s->C << (2 * i), o0 = (size_t)n0 * per;
    float *g;
    const float *am = NULL;
    CT_TRY(ct_write(l, p, s->out[i], &g, err)); /* the level's output buffer now holds its gradient */
    if (s->method == CT_POOL_MAX) CT_TRY(ct_read(l, p, s->argmax[i], &am, err));
    CT_TRY(d->ops->copy_2d(d, (size_t)nn, per * sizeof(float), g + o0, per * sizeof(float),
                           dy + (size_t)n0 * s->width + s->off[i], s->width * sizeof(float)));
    float *into = i == 0 ? dx + x0 : sum + x0;
    CT_TRY(d->ops->pool_backward(d, &s->g[i], planes, x ? x + x0 : NULL, g + o0, am ? (const int *)(am + o0) : NULL,
                                 into));
    if (i > 0) CT_TRY(d->ops->add(d, xn, dx + x0, sum + x0, dx + x0));
  }
  return CT_OK;
}

static void spp_destroy(ct_layer *l) {
  spp *s = l->priv;
  if (!s) return;
  for (int i = 0; i < SPP_MAX_LEVELS; i++) {
    ct_tensor_free(s->out[i]);
    ct_tensor_free(s->argmax[i]);
  }
  ct_tensor_free(s->sum);
  free(s);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_SPP = {.type = "SPP",
                                   .min_bottom = 1,
                                   .max_bottom = 1,
                                   .min_top = 1,
                                   .max_top = 1,
                                   .has_backward = true,
                                   .splits = ct_layer_splits_always,
                                   .gains = true,
                                   .kind = CT_WORK_MEMORY,
                                   .setup = spp_setup,
                                   .reshape = spp_reshape,
                                   .forward = spp_forward,
                                   .backward = spp_backward,
                                   .destroy = spp_destroy};
