/* Data: mini-batches of images and labels from a dataset.
 *
 * Sources: MNIST-style IDX files (idx_data_param { images labels }, gzipped or plain). Records
 * are served in file order, wrapping at the end, or in a fresh permutation every epoch when
 * shuffle is set; the permutation of epoch e is a function of the layer's seed and e, so the
 * position (the cursor, saved in snapshots) is all that exact resumption needs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/idx.h"
#include "data/transform.h"
#include "layers/layer.h"

typedef struct data_priv {
  ct_idx images, labels;
  int C, H, W;
  size_t n;          /* records */
  int batch;
  bool shuffle;
  uint64_t cursor;   /* records served so far */
  uint64_t perm_seed;
  uint64_t perm_epoch;
  uint32_t *perm;    /* current epoch's order (shuffle only) */
  ct_transform tf;
} data_priv;

/* A path as given if it exists (Caffe resolves from the working directory), else relative to
 * the prototxt's directory. */
static void resolve(const ct_layer *l, const char *path, char *out, size_t n) {
  if (path[0] == '/' || access(path, F_OK) == 0 || !l->dir || !l->dir[0]) {
    snprintf(out, n, "%s", path);
    return;
  }
  snprintf(out, n, "%s%s", l->dir, path);
  if (access(out, F_OK) != 0) snprintf(out, n, "%s", path);
}

static void data_destroy(ct_layer *l) {
  data_priv *d = l->priv;
  if (!d) return;
  ct_idx_free(&d->images);
  ct_idx_free(&d->labels);
  free(d->perm);
  free(d);
  l->priv = NULL;
}

static void make_perm(data_priv *d, uint64_t epoch) {
  ct_rng r;
  ct_rng_seed(&r, ct_rng_derive(d->perm_seed, epoch));
  for (size_t i = 0; i < d->n; i++) d->perm[i] = (uint32_t)i;
  for (size_t i = d->n; i > 1; i--) {
    size_t j = (size_t)ct_rng_below(&r, i);
    uint32_t t = d->perm[i - 1];
    d->perm[i - 1] = d->perm[j];
    d->perm[j] = t;
  }
  d->perm_epoch = epoch;
}

static ct_status data_setup(ct_layer *l, ct_error *err) {
  const Caffe__IDXDataParameter *ip = l->lp->idx_data_param;
  const Caffe__DataParameter *dp = l->lp->data_param;
  if (!ip) {
    if (dp && dp->source)
      return ct_layer_fail(l, err, CT_EUNSUPPORTED,
                           "data_param source \"%s\": LMDB/LevelDB sources are not supported in this build yet; "
                           "use idx_data_param { images: \"...\" labels: \"...\" } for IDX files",
                           dp->source);
    return ct_layer_fail(l, err, CT_EINVAL, "needs idx_data_param { images: \"...\" labels: \"...\" batch_size: N }");
  }
  if (!ip->images) return ct_layer_fail(l, err, CT_EINVAL, "idx_data_param needs images: \"<file>\"");
  if (l->ntop > 1 && !ip->labels)
    return ct_layer_fail(l, err, CT_EINVAL, "has a label top but idx_data_param gives no labels file");
  data_priv *d = calloc(1, sizeof *d);
  if (!d) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = d;
  d->batch = ip->has_batch_size ? (int)ip->batch_size : (dp && dp->has_batch_size ? (int)dp->batch_size : 0);
  if (d->batch <= 0) return ct_layer_fail(l, err, CT_EINVAL, "batch_size must be positive");
  d->shuffle = ip->shuffle;
  char path[4096];
  resolve(l, ip->images, path, sizeof path);
  if (ct_idx_read(path, &d->images, err)) return ct_error_prefix(err, "layer \"%s\" (Data)", l->name);
  if (d->images.ndims < 1 || d->images.ndims > 4)
    return ct_layer_fail(l, err, CT_ESHAPE, "%s: IDX images need 1 to 4 dimensions", path);
  const int *dims = d->images.dims;
  d->n = (size_t)dims[0];
  d->C = d->images.ndims == 4 ? dims[1] : 1;
  d->H = d->images.ndims >= 3 ? dims[d->images.ndims - 2] : 1;
  d->W = d->images.ndims >= 2 ? dims[d->images.ndims - 1] : 1;
  if (ip->labels) {
    resolve(l, ip->labels, path, sizeof path);
    if (ct_idx_read(path, &d->labels, err)) return ct_error_prefix(err, "layer \"%s\" (Data)", l->name);
    if (d->labels.ndims != 1 || (size_t)d->labels.dims[0] != d->n)
      return ct_layer_fail(l, err, CT_ESHAPE, "%s holds %d labels for %zu images", path, d->labels.dims[0], d->n);
  }
  if (d->shuffle) {
    d->perm = malloc(d->n * sizeof *d->perm);
    if (!d->perm) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
    d->perm_seed = ct_rng_next(&l->rng);
    make_perm(d, 0);
  }
  char who[300];
  snprintf(who, sizeof who, "layer \"%s\" (Data)", l->name);
  CT_TRY(ct_transform_init(&d->tf, l->lp->transform_param, l->phase == CAFFE__PHASE__TRAIN, d->C, d->H, d->W, who,
                           err));
  return CT_OK;
}

static ct_status data_reshape(ct_layer *l, ct_error *err) {
  data_priv *d = l->priv;
  CT_TRY(ct_tensor_reshape4(l->top[0], d->batch, d->C, ct_transform_out_height(&d->tf, d->H),
                            ct_transform_out_width(&d->tf, d->W), err));
  if (l->ntop > 1) CT_TRY(ct_tensor_reshape(l->top[1], 1, &d->batch, err));
  return CT_OK;
}

static ct_status data_forward(ct_layer *l, ct_error *err) {
  (void)err;
  data_priv *d = l->priv;
  size_t img = (size_t)d->C * d->H * d->W;
  size_t out = l->top[0]->count / (size_t)d->batch;
  for (int b = 0; b < d->batch; b++, d->cursor++) {
    uint64_t epoch = d->cursor / d->n;
    size_t pos = (size_t)(d->cursor % d->n);
    if (d->shuffle && epoch != d->perm_epoch) make_perm(d, epoch);
    size_t rec = d->shuffle ? d->perm[pos] : pos;
    ct_transform_u8(&d->tf, d->images.data + rec * img, d->C, d->H, d->W, l->top[0]->data + (size_t)b * out, &l->rng);
    if (l->ntop > 1) l->top[1]->data[b] = (float)d->labels.data[rec];
  }
  return CT_OK;
}

static uint64_t data_get_cursor(const ct_layer *l) { return ((const data_priv *)l->priv)->cursor; }
static void data_set_cursor(ct_layer *l, uint64_t c) {
  data_priv *d = l->priv;
  d->cursor = c;
  if (d->shuffle) make_perm(d, c / d->n);
}

const ct_layer_ops ct_layer_Data = {
    .type = "Data", .min_bottom = 0, .max_bottom = 0, .min_top = 1, .max_top = 2,
    .setup = data_setup, .reshape = data_reshape, .forward = data_forward, .destroy = data_destroy,
    .get_cursor = data_get_cursor, .set_cursor = data_set_cursor,
};
