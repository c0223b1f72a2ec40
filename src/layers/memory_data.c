/* MemoryData: mini-batches from float images the program hands over through
 * ct_net_set_memory_data (memory_data_param { batch_size channels height width }). Records are
 * served in order, wrapping at the end, through the same transform as every other source;
 * there is no prefetch thread (the data is already in memory). */
#include <string.h>

#include "core/status.h"
#include "data/source.h"
#include "layers/data_layer.h"
#include "net/net.h"

extern const ct_layer_ops ct_layer_MemoryData;

static ct_status memory_data_setup(ct_layer *l, ct_error *err) {
  const Caffe__MemoryDataParameter *p = l->lp->memory_data_param;
  if (!p) return ct_layer_fail(l, err, CT_EINVAL, "needs memory_data_param { batch_size channels height width }");
  if (p->batch_size > (uint32_t)INT32_MAX || p->channels > 1u << 16 || p->height > 1u << 20 || p->width > 1u << 20 ||
      (uint64_t)p->channels * p->height * p->width > 1u << 30)
    return ct_layer_fail(l, err, CT_EINVAL,
                         "batch_size %u, channels %u, height %u, width %u: too large (at most %d, 65536, 2^20, 2^20, "
                         "and 2^30 values per image)", p->batch_size, p->channels, p->height, p->width, INT32_MAX);
  if (!p->batch_size || !p->channels || !p->height || !p->width)
    return ct_layer_fail(l, err, CT_EINVAL, "batch_size, channels, height and width must be positive (got %u %u %u %u)",
                         p->batch_size, p->channels, p->height, p->width);
  ct_source *src = NULL;
  CT_TRY(ct_source_open_memory((int)p->channels, (int)p->height, (int)p->width, &src, err));
  return ct_data_layer_start(l, src, l->lp->transform_param, (int)p->batch_size, 0, 0, (int)p->channels,
                             (int)p->height, (int)p->width, err);
}

ct_status ct_net_set_memory_data(ct_net *net, const char *layer, const float *data, const float *labels, int n,
                                 ct_error *err) {
  if (!net || !layer) return ct_fail(err, CT_EINVAL, "ct_net_set_memory_data: no net or layer name");
  for (int i = 0; i < ct_net_num_layers(net); i++) {
    ct_layer *l = ct_net_layer(net, i);
    if (strcmp(l->name, layer)) continue;
    if (l->ops != &ct_layer_MemoryData)
      return ct_fail(err, CT_EINVAL, "layer \"%s\" is a %s layer, not MemoryData", layer, l->ops->type);
    ct_data_layer *d = l->priv;
    ct_feed_stop(d->feed);
    if (ct_source_memory_set(ct_feed_source(d->feed), data, labels, n, err))
      return ct_error_prefix(err, "layer \"%s\" (MemoryData)", layer);
    d->cursor = 0;
    return CT_OK;
  }
  return ct_fail(err, CT_ENOTFOUND, "no layer named \"%s\" in the net", layer);
}

const ct_layer_ops ct_layer_MemoryData = {
    .type = "MemoryData", .min_bottom = 0, .max_bottom = 0, .min_top = 1, .max_top = 2,
    .splits = NULL, .gains = false, .kind = CT_WORK_MEMORY, .host = true,
    .setup = memory_data_setup, .reshape = ct_data_layer_reshape, .forward = ct_data_layer_forward,
    .destroy = ct_data_layer_destroy, .get_cursor = ct_data_layer_get_cursor, .set_cursor = ct_data_layer_set_cursor,
};
