/* Data: mini-batches of images and labels from a dataset, through the transform, prefetched by
 * a background thread (data_param.prefetch batches ahead; 0 turns the thread off).
 *
 * Sources:
 *  - data_param { source backend: LMDB | LEVELDB }: Caffe Datum records in key order, wrapping at
 *    the end (raw bytes, float_data, or encoded JPEG/PNG), as Caffe's Data layer reads them;
 *  - idx_data_param { images labels shuffle }: MNIST-style IDX files, gzipped or plain, in file
 *    order or a fresh permutation every epoch (a function of the layer's seed and the epoch).
 * data_param.rand_skip skips a random number of records in [0, rand_skip) at the start.
 * The position in the record stream (the cursor, saved in snapshots) is all that exact
 * resumption needs besides the layer's random stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/status.h"
#include "data/source.h"
#include "layers/data_layer.h"

extern const ct_layer_ops ct_layer_Data, ct_layer_ImageData, ct_layer_MemoryData;

void ct_data_layer_resolve(const ct_layer *l, const char *path, char *out, size_t n) {
  if (path[0] == '/' || access(path, F_OK) == 0 || !l->dir || !l->dir[0]) {
    snprintf(out, n, "%s", path);
    return;
  }
  snprintf(out, n, "%s%s", l->dir, path);
  if (access(out, F_OK) != 0) snprintf(out, n, "%s", path);
}

bool ct_is_data_layer(const ct_layer *l) {
  return l && (l->ops == &ct_layer_Data || l->ops == &ct_layer_ImageData || l->ops == &ct_layer_MemoryData);
}

bool ct_data_layer_has_feed(const ct_layer *l) { return ct_is_data_layer(l) && l->priv; }

bool ct_data_layer_set_skip(ct_layer *l, uint64_t records) {
  if (!ct_data_layer_has_feed(l)) return false;
  ct_feed_set_skip(((ct_data_layer *)l->priv)->feed, records);
  return true;
}

bool ct_data_layer_wait_ms(const ct_layer *l, double *ms) {
  if (!ct_is_data_layer(l) || !l->priv) return false;
  *ms = ct_feed_wait_ms(((const ct_data_layer *)l->priv)->feed);
  return true;
}

void ct_data_layer_reset_wait(ct_layer *l) {
  if (ct_is_data_layer(l) && l->priv) ct_feed_reset_wait(((ct_data_layer *)l->priv)->feed);
}

ct_status ct_data_layer_start(ct_layer *l, ct_source *src, const Caffe__TransformationParameter *tp, int batch,
                              int depth, unsigned rand_skip, int C, int H, int W, ct_error *err) {
  char who[300];
  snprintf(who, sizeof who, "layer \"%s\" (%s)", l->name, l->ops->type);
  if (batch <= 0) {
    ct_source_close(src);
    return ct_layer_fail(l, err, CT_EINVAL, "batch_size must be positive");
  }
  if (C <= 0) { /* the first record gives the shape, as in Caffe */
    ct_record r;
    ct_status st = ct_source_next(src, &r, err);
    if (st) {
      ct_source_close(src);
      return ct_error_prefix(err, "%s", who);
    }
    C = r.C;
    H = r.H;
    W = r.W;
  }
  ct_transform tf;
  char mean[4096];
  if (tp && tp->mean_file) ct_data_layer_resolve(l, tp->mean_file, mean, sizeof mean);
  ct_status st = ct_transform_init(&tf, tp, l->phase == CAFFE__PHASE__TRAIN, C, H, W,
                                   tp && tp->mean_file ? mean : NULL, who, err);
  if (st) {
    ct_source_close(src);
    return st;
  }
  ct_data_layer *d = calloc(1, sizeof *d);
  if (!d) {
    ct_source_close(src);
    ct_transform_free(&tf);
    return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  }
  l->priv = d;
  d->batch = batch;
  CT_TRY(ct_feed_create(src, &tf, batch, depth, who, &d->feed, err));
  if (rand_skip) d->cursor = ct_rng_below(&l->rng, rand_skip);
  return CT_OK;
}

ct_status ct_data_layer_reshape(ct_layer *l, ct_error *err) {
  ct_data_layer *d = l->priv;
  const ct_transform *t = ct_feed_transform(d->feed);
  CT_TRY(ct_tensor_reshape4(l->top[0], d->batch, t->C, ct_transform_out_height(t), ct_transform_out_width(t), err));
  if (l->ntop > 1) CT_TRY(ct_tensor_reshape(l->top[1], 1, &d->batch, err));
  return CT_OK;
}

/* The feed writes host memory: the tops must be whole on the host, as ops->host gives them. */
static ct_status host_part(const ct_layer *l, const ct_part *p, ct_error *err) {
  if (!p->whole)
    return ct_layer_fail(l, err, CT_EINTERNAL, "planned in parts (images %d to %d on %s); a data layer runs whole",
                         p->begin, p->end, p->d->name);
  if (p->d->mem != &ct_mem_host)
    return ct_layer_fail(l, err, CT_EINTERNAL, "planned on %s; a data layer runs on the host", p->d->name);
  return CT_OK;
}

ct_status ct_data_layer_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  ct_data_layer *d = l->priv;
  float *data, *labels = NULL;
  CT_TRY(host_part(l, p, err));
  CT_TRY(ct_write(l, p, l->top[0], &data, err));
  if (l->ntop > 1) CT_TRY(ct_write(l, p, l->top[1], &labels, err));
  return ct_feed_next(d->feed, data, labels, &l->rng, &d->cursor, err);
}

void ct_data_layer_destroy(ct_layer *l) {
  ct_data_layer *d = l->priv;
  if (!d) return;
  ct_feed_free(d->feed);
  free(d);
  l->priv = NULL;
}

uint64_t ct_data_layer_get_cursor(const ct_layer *l) { return ((const ct_data_layer *)l->priv)->cursor; }
void ct_data_layer_set_cursor(ct_layer *l, uint64_t c) { ((ct_data_layer *)l->priv)->cursor = c; }

static ct_status data_setup(ct_layer *l, ct_error *err) {
  const Caffe__IDXDataParameter *ip = l->lp->idx_data_param;
  const Caffe__DataParameter *dp = l->lp->data_param;
  int depth = dp ? (int)dp->prefetch : 4;
  unsigned rand_skip = dp ? dp->rand_skip : 0;
  char path[4096], path2[4096];
  ct_source *src = NULL;
  int batch;
  Caffe__TransformationParameter tp;
  if (ip) {
    if (!ip->images) return ct_layer_fail(l, err, CT_EINVAL, "idx_data_param needs images: \"<file>\"");
    if (l->ntop > 1 && !ip->labels)
      return ct_layer_fail(l, err, CT_EINVAL, "has a label top but idx_data_param gives no labels file");
    batch = ip->has_batch_size ? (int)ip->batch_size : (dp && dp->has_batch_size ? (int)dp->batch_size : 0);
    if (batch <= 0) return ct_layer_fail(l, err, CT_EINVAL, "batch_size must be positive");
    uint64_t seed = ip->shuffle ? ct_rng_next(&l->rng) : 0;
    ct_data_layer_resolve(l, ip->images, path, sizeof path);
    if (ip->labels) ct_data_layer_resolve(l, ip->labels, path2, sizeof path2);
    if (ct_source_open_idx(path, ip->labels ? path2 : NULL, ip->shuffle, seed, &src, err))
      return ct_error_prefix(err, "layer \"%s\" (Data)", l->name);
    ct_transform_param_merge(l->lp->transform_param, false, 1, NULL, 0, false, &tp);
  } else if (dp && dp->source) {
    batch = (int)dp->batch_size;
    if (batch <= 0) return ct_layer_fail(l, err, CT_EINVAL, "data_param needs batch_size: N (N > 0)");
    ct_transform_param_merge(l->lp->transform_param, dp->has_scale, dp->scale, dp->mean_file, dp->crop_size, dp->mirror,
                             &tp);
    ct_image_mode mode = tp.force_color ? CT_IMAGE_COLOR : tp.force_gray ? CT_IMAGE_GRAY : CT_IMAGE_NATIVE;
    if (dp->force_encoded_color) mode = CT_IMAGE_COLOR;
    ct_data_layer_resolve(l, dp->source, path, sizeof path);
    if (ct_source_open_db(path, (ct_db_backend)dp->backend, mode, &src, err))
      return ct_error_prefix(err, "layer \"%s\" (Data)", l->name);
  } else {
    return ct_layer_fail(l, err, CT_EINVAL,
                         "needs data_param { source: \"<db>\" backend: LMDB batch_size: N } or "
                         "idx_data_param { images: \"...\" labels: \"...\" batch_size: N }");
  }
  return ct_data_layer_start(l, src, &tp, batch, depth, rand_skip, 0, 0, 0, err);
}

const ct_layer_ops ct_layer_Data = {
    .type = "Data", .min_bottom = 0, .max_bottom = 0, .min_top = 1, .max_top = 2,
    .splits = NULL, .gains = false, .kind = CT_WORK_MEMORY, .host = true,
    .setup = data_setup, .reshape = ct_data_layer_reshape, .forward = ct_data_layer_forward,
    .destroy = ct_data_layer_destroy, .get_cursor = ct_data_layer_get_cursor, .set_cursor = ct_data_layer_set_cursor,
};
