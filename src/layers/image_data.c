/* ImageData: mini-batches from an image list (Caffe's image_data_param { source root_folder
 * new_height new_width is_color shuffle batch_size rand_skip }). Each line is "<path> <label>";
 * images are decoded (JPEG, PNG), resized bilinearly when new_height/new_width are set, and go
 * through the transform on the prefetch thread (data_param.prefetch, default 4). shuffle draws a
 * fresh order every epoch from the layer's seed and the epoch number, so the cursor alone
 * restores the stream. */
#include <stdio.h>

#include "core/status.h"
#include "data/source.h"
#include "layers/data_layer.h"

static ct_status image_data_setup(ct_layer *l, ct_error *err) {
  const Caffe__ImageDataParameter *p = l->lp->image_data_param;
  const Caffe__DataParameter *dp = l->lp->data_param;
  if (!p || !p->source)
    return ct_layer_fail(l, err, CT_EINVAL, "needs image_data_param { source: \"<list file>\" batch_size: N }");
  int batch = (int)p->batch_size;
  if (batch <= 0) return ct_layer_fail(l, err, CT_EINVAL, "batch_size must be positive");
  if (p->new_height > 1u << 16 || p->new_width > 1u << 16)
    return ct_layer_fail(l, err, CT_EINVAL, "new_height/new_width %u x %u is implausible", p->new_height, p->new_width);
  uint64_t seed = p->shuffle ? ct_rng_next(&l->rng) : 0;
  char list[4096], root[4096];
  ct_data_layer_resolve(l, p->source, list, sizeof list);
  snprintf(root, sizeof root, "%s", p->root_folder ? p->root_folder : "");
  if (root[0] && root[0] != '/' && l->dir && l->dir[0]) { /* as for the list: as given, else beside the prototxt */
    char alt[4096];
    ct_data_layer_resolve(l, p->root_folder, alt, sizeof alt);
    snprintf(root, sizeof root, "%s", alt);
  }
  ct_source *src = NULL;
  if (ct_source_open_list(list, root, (int)p->new_height, (int)p->new_width, p->is_color, p->shuffle, seed, &src, err))
    return ct_error_prefix(err, "layer \"%s\" (ImageData)", l->name);
  Caffe__TransformationParameter tp;
  ct_transform_param_merge(l->lp->transform_param, p->has_scale, p->scale, p->mean_file, p->crop_size, p->mirror, &tp);
  return ct_data_layer_start(l, src, &tp, batch, dp ? (int)dp->prefetch : 4, p->rand_skip, 0, 0, 0, err);
}

const ct_layer_ops ct_layer_ImageData = {
    .type = "ImageData", .min_bottom = 0, .max_bottom = 0, .min_top = 1, .max_top = 2,
    .splits = NULL, .gains = false, .kind = CT_WORK_MEMORY, .host = true,
    .setup = image_data_setup, .reshape = ct_data_layer_reshape, .forward = ct_data_layer_forward,
    .destroy = ct_data_layer_destroy, .get_cursor = ct_data_layer_get_cursor, .set_cursor = ct_data_layer_set_cursor,
};
